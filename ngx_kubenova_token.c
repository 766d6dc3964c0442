/*
 * Bearer tokens at the edge (see the header).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <openssl/evp.h>
#include <openssl/crypto.h>

#include "ngx_kubenova_token.h"


ngx_int_t
ngx_kubenova_token_from_request(ngx_http_request_t *r, ngx_str_t *token)
{
    u_char     *p, *last;
    ngx_str_t  *value;

    if (r->headers_in.authorization == NULL) {
        return NGX_DECLINED;
    }

    value = &r->headers_in.authorization->value;

    if (value->len < sizeof("Bearer ") - 1
        || ngx_strncasecmp(value->data, (u_char *) "Bearer ",
                           sizeof("Bearer ") - 1) != 0)
    {
        return NGX_ERROR;
    }

    p = value->data + sizeof("Bearer ") - 1;
    last = value->data + value->len;

    while (p < last && *p == ' ') {
        p++;
    }

    while (last > p && last[-1] == ' ') {
        last--;
    }

    if (p == last || last - p > NGX_KUBENOVA_TOKEN_MAX_LEN) {
        return NGX_ERROR;
    }

    token->data = p;
    token->len = last - p;

    /* visible ASCII only: anything else cannot be a token we issued */

    for ( /* void */ ; p < last; p++) {
        if (*p <= ' ' || *p >= 0x7f) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


void
ngx_kubenova_token_hash(ngx_str_t *token, u_char *hex)
{
    u_char        md[EVP_MAX_MD_SIZE];
    unsigned int  len;

    len = 0;

    if (EVP_Digest(token->data, token->len, md, &len, EVP_sha256(), NULL)
        != 1 || len != NGX_KUBENOVA_TOKEN_HASH_LEN / 2)
    {
        /* cannot happen with a working libcrypto; never match anything */
        ngx_memset(hex, 'x', NGX_KUBENOVA_TOKEN_HASH_LEN);
        return;
    }

    ngx_hex_dump(hex, md, len);
}


ngx_uint_t
ngx_kubenova_token_hash_equal(const u_char *a, const u_char *b)
{
    return CRYPTO_memcmp(a, b, NGX_KUBENOVA_TOKEN_HASH_LEN) == 0;
}


char *
ngx_kubenova_token_load_file(ngx_conf_t *cf, ngx_str_t *path, u_char *hex)
{
    u_char      *buf, *p, *last;
    ssize_t      n;
    ngx_fd_t     fd;
    ngx_str_t    token;
    ngx_file_t   file;

    if (ngx_conf_full_name(cf->cycle, path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    fd = ngx_open_file(path->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%V\" failed", path);
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.fd = fd;
    file.name = *path;
    file.log = cf->log;

    buf = ngx_pnalloc(cf->temp_pool, NGX_KUBENOVA_TOKEN_MAX_LEN + 2);
    if (buf == NULL) {
        ngx_close_file(fd);
        return NGX_CONF_ERROR;
    }

    n = ngx_read_file(&file, buf, NGX_KUBENOVA_TOKEN_MAX_LEN + 2, 0);

    ngx_close_file(fd);

    if (n == NGX_ERROR) {
        return NGX_CONF_ERROR;
    }

    p = buf;
    last = buf + n;

    while (last > p && (last[-1] == '\n' || last[-1] == '\r'
                        || last[-1] == ' '))
    {
        last--;
    }

    token.data = p;
    token.len = last - p;

    if (token.len < 32 || token.len > NGX_KUBENOVA_TOKEN_MAX_LEN) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "admin token in \"%V\" must be 32 to %d "
                           "characters", path, NGX_KUBENOVA_TOKEN_MAX_LEN);
        return NGX_CONF_ERROR;
    }

    for ( /* void */ ; p < last; p++) {
        if (*p <= ' ' || *p >= 0x7f) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "admin token in \"%V\" has characters other "
                               "than visible ASCII", path);
            return NGX_CONF_ERROR;
        }
    }

    ngx_kubenova_token_hash(&token, hex);

    ngx_explicit_memzero(buf, n);

    return NGX_CONF_OK;
}
