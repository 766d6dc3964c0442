/*
 * Secrets at rest (see the header).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "ngx_kubenova_crypto.h"


#define NGX_KUBENOVA_SEAL_VERSION  1
#define NGX_KUBENOVA_NONCE_LEN     12
#define NGX_KUBENOVA_TAG_LEN       16


ngx_int_t
ngx_kubenova_crypto_kubeconfig_aad(ngx_pool_t *pool, const char *cluster,
    const char *tenant, const char *role, ngx_str_t *aad)
{
    size_t  len;

    len = sizeof("kubeconfig\n\n\n") - 1 + ngx_strlen(cluster)
          + ngx_strlen(tenant) + ngx_strlen(role);

    aad->data = ngx_pnalloc(pool, len + 1);
    if (aad->data == NULL) {
        return NGX_ERROR;
    }

    aad->len = ngx_sprintf(aad->data, "kubeconfig\n%s\n%s\n%s%Z",
                           cluster, tenant, role) - aad->data - 1;

    return NGX_OK;
}


ngx_int_t
ngx_kubenova_crypto_bootstrap_aad(ngx_pool_t *pool, const char *cluster,
    ngx_str_t *aad)
{
    aad->data = ngx_pnalloc(pool, sizeof("bootstrap\n") + ngx_strlen(cluster));
    if (aad->data == NULL) {
        return NGX_ERROR;
    }

    aad->len = ngx_sprintf(aad->data, "bootstrap\n%s%Z", cluster)
               - aad->data - 1;

    return NGX_OK;
}


char *
ngx_kubenova_crypto_load_key(ngx_conf_t *cf, ngx_str_t *path, u_char *key)
{
    u_char      *p, *last;
    ssize_t      n;
    ngx_fd_t     fd;
    ngx_str_t    text, decoded;
    ngx_file_t   file;
    u_char       buf[128];

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

    n = ngx_read_file(&file, buf, sizeof(buf), 0);
    ngx_close_file(fd);

    if (n == NGX_ERROR) {
        return NGX_CONF_ERROR;
    }

    if (n == NGX_KUBENOVA_KEY_LEN) {
        ngx_memcpy(key, buf, NGX_KUBENOVA_KEY_LEN);
        ngx_explicit_memzero(buf, sizeof(buf));
        return NGX_CONF_OK;
    }

    p = buf;
    last = buf + n;

    while (last > p && (last[-1] == '\n' || last[-1] == '\r'
                        || last[-1] == ' '))
    {
        last--;
    }

    text.data = p;
    text.len = last - p;

    if (text.len == 2 * NGX_KUBENOVA_KEY_LEN) {
        for (n = 0; n < NGX_KUBENOVA_KEY_LEN; n++) {
            ngx_int_t  hi, lo;

            hi = ngx_hextoi(&text.data[2 * n], 1);
            lo = ngx_hextoi(&text.data[2 * n + 1], 1);

            if (hi == NGX_ERROR || lo == NGX_ERROR) {
                goto invalid;
            }

            key[n] = (u_char) (hi << 4 | lo);
        }

        ngx_explicit_memzero(buf, sizeof(buf));
        return NGX_CONF_OK;
    }

    if (text.len == ngx_base64_encoded_length(NGX_KUBENOVA_KEY_LEN)) {
        u_char  raw[ngx_base64_decoded_length(
                        ngx_base64_encoded_length(NGX_KUBENOVA_KEY_LEN))];

        decoded.data = raw;

        if (ngx_decode_base64(&decoded, &text) == NGX_OK
            && decoded.len == NGX_KUBENOVA_KEY_LEN)
        {
            ngx_memcpy(key, raw, NGX_KUBENOVA_KEY_LEN);
            ngx_explicit_memzero(raw, sizeof(raw));
            ngx_explicit_memzero(buf, sizeof(buf));
            return NGX_CONF_OK;
        }

        ngx_explicit_memzero(raw, sizeof(raw));
    }

invalid:

    ngx_explicit_memzero(buf, sizeof(buf));

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"%V\" must hold a 256-bit key: 32 bytes, 64 hex "
                       "digits or 44 characters of base64 "
                       "(e.g. openssl rand -base64 32)", path);
    return NGX_CONF_ERROR;
}


ngx_int_t
ngx_kubenova_crypto_seal(const u_char *key, ngx_str_t *aad, const u_char *in,
    size_t len, u_char *out)
{
    int              n, rc;
    u_char          *nonce, *ct;
    EVP_CIPHER_CTX  *ctx;

    out[0] = NGX_KUBENOVA_SEAL_VERSION;
    nonce = out + 1;
    ct = nonce + NGX_KUBENOVA_NONCE_LEN;

    if (RAND_bytes(nonce, NGX_KUBENOVA_NONCE_LEN) != 1) {
        return NGX_ERROR;
    }

    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    rc = EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce) == 1
         && EVP_EncryptUpdate(ctx, NULL, &n, aad->data, (int) aad->len) == 1
         && EVP_EncryptUpdate(ctx, ct, &n, in, (int) len) == 1
         && EVP_EncryptFinal_ex(ctx, ct + n, &n) == 1
         && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG,
                                NGX_KUBENOVA_TAG_LEN, ct + len) == 1;

    EVP_CIPHER_CTX_free(ctx);

    return rc ? NGX_OK : NGX_ERROR;
}


ngx_int_t
ngx_kubenova_crypto_open(const u_char *key, ngx_str_t *aad, const u_char *in,
    size_t len, u_char *out)
{
    int              n, rc;
    size_t           ct_len;
    const u_char    *nonce, *ct;
    EVP_CIPHER_CTX  *ctx;

    if (len < NGX_KUBENOVA_SEAL_OVERHEAD
        || in[0] != NGX_KUBENOVA_SEAL_VERSION)
    {
        return NGX_DECLINED;
    }

    nonce = in + 1;
    ct = nonce + NGX_KUBENOVA_NONCE_LEN;
    ct_len = len - NGX_KUBENOVA_SEAL_OVERHEAD;

    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    rc = EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce) == 1
         && EVP_DecryptUpdate(ctx, NULL, &n, aad->data, (int) aad->len) == 1
         && EVP_DecryptUpdate(ctx, out, &n, ct, (int) ct_len) == 1
         && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG,
                                NGX_KUBENOVA_TAG_LEN,
                                (void *) (ct + ct_len)) == 1
         && EVP_DecryptFinal_ex(ctx, out + n, &n) == 1;

    EVP_CIPHER_CTX_free(ctx);

    return rc ? NGX_OK : NGX_DECLINED;
}
