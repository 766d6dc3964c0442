/*
 * The Operator's identity kept in a kubernetes.io/tls Secret (in cluster:
 * --identity-secret NAMESPACE/NAME), keys tls.key, tls.crt and ca.crt.
 * The Role of install.yaml allows get, create and update of that one
 * Secret (resourceNames), nothing else.
 *
 * Load: KN_OK (found, id filled), KN_DECLINED (no Secret yet, or one
 * without a key), KN_ERROR (unusable, or Kubernetes failed; err says).
 * Save: a GET for the resourceVersion, then an update, or a create when
 * there is none.  Both call done once, from the loop.
 */

#ifndef KN_IDENTITY_SECRET_H
#define KN_IDENTITY_SECRET_H


#include "kn_core.h"
#include "kn_identity.h"
#include "kn_kube.h"


typedef struct kn_identity_secret_op_s  kn_identity_secret_op_t;

typedef void (*kn_identity_secret_pt)(void *data, kn_rc rc,
    const char *err);


/* *op: the operation, for kn_identity_secret_cancel() until done */
kn_rc kn_identity_secret_load(kn_kube_t *kube, const char *ns,
    const char *name, const char *cluster, kn_identity_t *id,
    kn_identity_secret_pt done, void *data, kn_identity_secret_op_t **op);

/* id must outlive the request */
kn_rc kn_identity_secret_save(kn_kube_t *kube, const char *ns,
    const char *name, const kn_identity_t *id, kn_identity_secret_pt done,
    void *data, kn_identity_secret_op_t **op);

/* drops an operation; done is not called.  NULL is ignored. */
void kn_identity_secret_cancel(kn_identity_secret_op_t *op);


#endif /* KN_IDENTITY_SECRET_H */
