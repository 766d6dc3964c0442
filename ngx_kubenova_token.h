/*
 * Bearer tokens at the edge: taken from "Authorization: Bearer ...", only
 * ever kept as their SHA-256 (the database stores nothing else), and the
 * bootstrap admin token of kubenova_admin_token_file.
 */

#ifndef _NGX_KUBENOVA_TOKEN_H_INCLUDED_
#define _NGX_KUBENOVA_TOKEN_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


#define NGX_KUBENOVA_TOKEN_HASH_LEN  64       /* lowercase hex SHA-256 */
#define NGX_KUBENOVA_TOKEN_MAX_LEN   512


/* NGX_OK: token set; NGX_DECLINED: no bearer token; NGX_ERROR: malformed */
ngx_int_t ngx_kubenova_token_from_request(ngx_http_request_t *r,
    ngx_str_t *token);

void ngx_kubenova_token_hash(ngx_str_t *token, u_char *hex);

/* reads the file at configuration time; the secret is kept only hashed */
char *ngx_kubenova_token_load_file(ngx_conf_t *cf, ngx_str_t *path,
    u_char *hex);

/* constant time */
ngx_uint_t ngx_kubenova_token_hash_equal(const u_char *a, const u_char *b);


#endif /* _NGX_KUBENOVA_TOKEN_H_INCLUDED_ */
