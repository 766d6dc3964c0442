/*
 * Secrets at rest: AES-256-GCM with the key of kubenova_secret_key_file.
 * A sealed value is  0x01 | nonce (12) | ciphertext | tag (16);  the
 * associated data names what the value is (kind, cluster, tenant, role) so
 * a ciphertext moved to another row does not open.
 */

#ifndef _NGX_KUBENOVA_CRYPTO_H_INCLUDED_
#define _NGX_KUBENOVA_CRYPTO_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#define NGX_KUBENOVA_KEY_LEN        32
#define NGX_KUBENOVA_SEAL_OVERHEAD  (1 + 12 + 16)


/* what a kubeconfig's ciphertext is bound to */
ngx_int_t ngx_kubenova_crypto_kubeconfig_aad(ngx_pool_t *pool,
    const char *cluster, const char *tenant, const char *role,
    ngx_str_t *aad);

/* what a bootstrap kubeconfig is bound to: "bootstrap\n<cluster>" */
ngx_int_t ngx_kubenova_crypto_bootstrap_aad(ngx_pool_t *pool,
    const char *cluster, ngx_str_t *aad);

/* 32 raw bytes, 64 hex digits or base64 of 32 bytes; read in the master */
char *ngx_kubenova_crypto_load_key(ngx_conf_t *cf, ngx_str_t *path,
    u_char *key);

/* out: len + NGX_KUBENOVA_SEAL_OVERHEAD bytes */
ngx_int_t ngx_kubenova_crypto_seal(const u_char *key, ngx_str_t *aad,
    const u_char *in, size_t len, u_char *out);

/* out: len - NGX_KUBENOVA_SEAL_OVERHEAD bytes; NGX_DECLINED: does not open */
ngx_int_t ngx_kubenova_crypto_open(const u_char *key, ngx_str_t *aad,
    const u_char *in, size_t len, u_char *out);


#endif /* _NGX_KUBENOVA_CRYPTO_H_INCLUDED_ */
