/*
 * The Manager's certificate authority for Operators (kubenova_ca): it signs
 * the CSRs Operators send when they register and renew, and tells the
 * gateway who a verified client certificate names.  Operators' keys never
 * leave their clusters; the Manager only ever sees CSRs.
 *
 * A certificate it signs: subject CN=<cluster> and nothing else, a random
 * 128-bit serial (recorded in PostgreSQL with the cluster, see
 * sql/0007_registration.sql), client authentication only, short validity.
 */

#ifndef _NGX_KUBENOVA_CA_H_INCLUDED_
#define _NGX_KUBENOVA_CA_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <openssl/x509.h>


#define NGX_KUBENOVA_CA_SERIAL_LEN  32      /* hex digits of 16 bytes */
#define NGX_KUBENOVA_CA_CN_LEN      64      /* a cluster name: 63 at most */
#define NGX_KUBENOVA_CA_PEER_SERIAL_SIZE  65   /* another CA's: 32 bytes */


typedef struct {
    X509                *cert;
    EVP_PKEY            *key;
    ngx_str_t            cert_pem;          /* what Operators are given */
    time_t               validity;          /* of the certificates, s */
} ngx_kubenova_ca_t;


/* kubenova_ca <cert.pem> <key.pem> [validity=24h]; conf: the ca pointer */
char *ngx_kubenova_ca_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/*
 * A PEM CSR whose signature holds and whose subject is exactly one CN.
 * NGX_DECLINED with err set when it is not one (the client's fault).
 */
ngx_int_t ngx_kubenova_ca_parse_csr(const u_char *pem, size_t len,
    X509_REQ **req, char *cn, char *err, size_t err_len);

/* a new random serial, NGX_KUBENOVA_CA_SERIAL_LEN hex digits and a NUL */
ngx_int_t ngx_kubenova_ca_new_serial(u_char *hex);

/* signs req for cn with that serial, valid until not_after; pem in pool */
ngx_int_t ngx_kubenova_ca_sign(ngx_kubenova_ca_t *ca, X509_REQ *req,
    const char *cn, const u_char *serial_hex, time_t not_after,
    ngx_pool_t *pool, ngx_str_t *pem, ngx_log_t *log);

/*
 * The client certificate of a TLS connection: NGX_OK with its CN and
 * serial (lowercase hex, at most NGX_KUBENOVA_CA_PEER_SERIAL_SIZE bytes)
 * when it is there and verified against ssl_client_certificate;
 * NGX_DECLINED when there is none (or no TLS); NGX_ABORT when there is one
 * that did not verify (why in err).
 */
ngx_int_t ngx_kubenova_ca_peer(ngx_connection_t *c, char *cn, u_char *serial,
    char *err, size_t err_len);


#endif /* _NGX_KUBENOVA_CA_H_INCLUDED_ */
