/*
 * The tenants' kubeconfigs.  For every tenant in place on the cluster (the
 * reconciler's listener, kn_tenant_on_ready) and each of its roles, owner
 * and readonly, a token of the ServiceAccount <role> in <tenant>-owner from
 * the TokenRequest API (authentication.k8s.io/v1, a bounded lifetime)
 * becomes a kubeconfig: the cluster's API server and CA, that token, the
 * default namespace <tenant>-apps.  It goes to the Manager, which stores it
 * encrypted and serves it to the tenant's members.
 *
 * The Manager acks each kubeconfig (KubeconfigAck: tenant and role, in the
 * order sent).  Until it does, the newest kubeconfig of each tenant and
 * role is kept (one per tenant and role, a newer one replacing it) and
 * sent again on every new stream; once acked it is forgotten (wiped).
 *
 * Each token is renewed renew_before its expiry (the expirationTimestamp
 * the API answers), or after four fifths of its lifetime; a failed request
 * is retried after 1 s, doubling up to 60 s.  One timer serves every
 * renewal and retry, so the number of tenants costs the loop nothing.
 * A tenant deleted is forgotten: its request cancelled, its kubeconfigs
 * wiped.
 */

#ifndef KN_CREDENTIALS_H
#define KN_CREDENTIALS_H


#include "kn_core.h"
#include "kn_grpc.h"
#include "kn_kube.h"
#include "kn_log.h"
#include "kn_loop.h"


typedef struct kn_credentials_s  kn_credentials_t;


typedef struct {
    const char  *cluster;           /* names the cluster in kubeconfigs */
    const char  *server;            /* the API server URL tenants use */
    const char  *ca_pem;            /* its CA bundle (PEM), NULL: system */
    size_t       ca_pem_len;
    int          insecure;          /* insecure-skip-tls-verify */
    uint64_t     ttl_ms;            /* lifetime asked for; at least 10 min */
    uint64_t     renew_before_ms;   /* 0: a fifth of the lifetime */
    size_t       max_tenants;
} kn_credentials_conf_t;


/* conf's strings are copied */
kn_rc kn_credentials_create(kn_loop_t *loop, const kn_log_t *log,
    kn_kube_t *kube, kn_grpc_t *grpc, const kn_credentials_conf_t *conf,
    kn_credentials_t **out);
/* cancels its requests; before kn_kube_destroy() */
void kn_credentials_destroy(kn_credentials_t *creds);

/* the kn_tenant listener (data: the kn_credentials_t) */
void kn_credentials_tenant(void *data, const char *tenant, int present);

/* a new stream is welcomed: what the Manager has not acked goes again */
void kn_credentials_connected(kn_credentials_t *creds);

/* the Manager's KubeconfigAck */
void kn_credentials_acked(kn_credentials_t *creds, const char *tenant,
    const char *role);

/*
 * The newest token of the tenant's role ("owner", "readonly") for the
 * kube proxy tunnel, kept in memory only, renewed with the kubeconfigs;
 * NULL when none is issued (yet).  Valid until the loop runs again.
 */
const char *kn_credentials_token(kn_credentials_t *creds, const char *tenant,
    const char *role);


#endif /* KN_CREDENTIALS_H */
