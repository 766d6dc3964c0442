/*
 * The Operator's identity at the Manager: its own EC P-256 private key,
 * generated here and never sent anywhere, and the certificate the
 * Manager's CA signed for it (CN = the cluster name), with which the gRPC
 * stream is authenticated (mTLS).
 *
 * This file is the OpenSSL side only: generating the key, making a CSR,
 * checking a certificate against the key and the cluster, and when it
 * should be renewed; plus the out-of-cluster storage, a directory holding
 * tls.key and tls.crt (and ca.crt), written 0600 and replaced atomically.
 * The in-cluster storage, a kubernetes.io/tls Secret, is kn_identity_secret.
 */

#ifndef KN_IDENTITY_H
#define KN_IDENTITY_H


#include <time.h>

#include <openssl/evp.h>

#include "kn_core.h"


#define KN_IDENTITY_PEM_MAX  (64 * 1024)    /* a key, a cert, a CA bundle */


typedef struct {
    EVP_PKEY  *key;
    char      *key_pem;         /* NUL-terminated, as stored */
    size_t     key_pem_len;
    char      *cert_pem;        /* NULL: no certificate yet */
    size_t     cert_pem_len;
    char      *ca_pem;          /* the signing CA as the Manager sent it, */
    size_t     ca_pem_len;      /* or NULL */
    time_t     not_before;
    time_t     not_after;
    char       serial[80];      /* hex, for the log */
} kn_identity_t;


void kn_identity_init(kn_identity_t *id);
void kn_identity_free(kn_identity_t *id);

/* a fresh EC P-256 key; the certificate, if any, is dropped */
kn_rc kn_identity_generate(kn_identity_t *id, char *err, size_t err_size);

/* the key from its PEM (PKCS#8 or SEC1) */
kn_rc kn_identity_set_key(kn_identity_t *id, const char *pem, size_t len,
    char *err, size_t err_size);

/*
 * Takes a certificate (and the CA, may be NULL) after checking that it
 * parses, is for this key and names the cluster (CN).  id is unchanged on
 * error.
 */
kn_rc kn_identity_set_cert(kn_identity_t *id, const char *cert_pem,
    size_t cert_len, const char *ca_pem, size_t ca_len, const char *cluster,
    char *err, size_t err_size);

/* a CSR for the key, subject CN=cluster; *pem is malloc'd */
kn_rc kn_identity_csr(kn_identity_t *id, const char *cluster, char **pem,
    size_t *len, char *err, size_t err_size);

/* the certificate has expired (or is not valid yet) at now */
int kn_identity_expired(const kn_identity_t *id, time_t now);

/* when to ask for a new certificate: 2/3 of the way through its life */
time_t kn_identity_renew_at(const kn_identity_t *id);

/*
 * DIR/tls.key, DIR/tls.crt, DIR/ca.crt.  Load: KN_DECLINED when there is
 * no identity there yet (no tls.key); KN_ERROR when what is there is
 * unusable.  Save: each file written 0600 to a temporary name and renamed.
 */
kn_rc kn_identity_load_dir(kn_identity_t *id, const char *dir,
    const char *cluster, char *err, size_t err_size);
kn_rc kn_identity_save_dir(const kn_identity_t *id, const char *dir,
    char *err, size_t err_size);


#endif /* KN_IDENTITY_H */
