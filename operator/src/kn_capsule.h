/*
 * Capsule (capsule.clastix.io), when it is installed: a tenant's Capsule
 * Tenant, in addition to the native objects the reconciler applies anyway
 * (docs/adr/0003-native-isolation-with-capsule.md).
 *
 * Installed means: the CRD tenants.capsule.clastix.io exists, is
 * Established and serves v1beta2.  The CRD is watched by name from
 * kn_capsule_start(), so Capsule installed (or removed) while the Operator
 * runs is noticed.
 *
 * A tenant's Capsule Tenant, applied by server-side apply (field manager
 * kubenova-operator) with kn_capsule_apply():
 *
 *   metadata   name <t>, the tenant's labels, owned by the NovaTenant
 *   owners     the ServiceAccount owner of <t>-owner
 *              (system:serviceaccount:<t>-owner:owner), bound by Capsule
 *              to admin only, as the native RoleBinding does (Capsule's
 *              default adds capsule-namespace-deleter)
 *   namespaceOptions.quota   2: <t>-owner and <t>-apps
 *   resourceQuotas           scope Tenant, the hard limits of the native
 *                            ResourceQuota
 *   limitRanges, networkPolicies   the native ones' specs
 *
 * then both namespaces join it the way Capsule counts a tenant's
 * namespaces: the label capsule.clastix.io/tenant and an owner reference to
 * the Capsule Tenant (not controller: the NovaTenant is).  That is a
 * strategic merge patch by field manager kubenova-capsule: it merges into
 * the owner references by uid, never creates a namespace, and the
 * reconciler's own apply of the namespaces (another manager) leaves it be.
 *
 * When Capsule appears, every NovaTenant the cluster holds gets its
 * Capsule Tenant (the catch-up), pass after pass, until a list of the
 * NovaTenants shows each one applied from its current spec (a tenant
 * changing meanwhile is applied again; failures are retried with backoff).
 */

#ifndef KN_CAPSULE_H
#define KN_CAPSULE_H


#include <jansson.h>

#include "kn_core.h"
#include "kn_kube.h"
#include "kn_log.h"
#include "kn_loop.h"


#define KN_CAPSULE_CRD            "tenants.capsule.clastix.io"
#define KN_CAPSULE_API_VERSION    "capsule.clastix.io/v1beta2"
#define KN_CAPSULE_LABEL          "capsule.clastix.io/tenant"
#define KN_CAPSULE_FIELD_MANAGER  "kubenova-capsule"


typedef struct kn_capsule_s  kn_capsule_t;


kn_rc kn_capsule_create(kn_loop_t *loop, const kn_log_t *log,
    kn_kube_t *kube, kn_capsule_t **out);
/* drops the work in progress without calling back; before kn_kube_destroy */
void kn_capsule_destroy(kn_capsule_t *capsule);

/* starts the watch on the CRD (it recovers from failures by itself) */
kn_rc kn_capsule_start(kn_capsule_t *capsule);

/* Capsule is installed, as far as the watch knows */
int kn_capsule_present(kn_capsule_t *capsule);

/*
 * The Capsule Tenant of tenant name (spec: the tenant's spec from the
 * Manager; uid: its NovaTenant's) and the joining of its namespaces.
 * KN_DECLINED when Capsule is not installed; KN_OK: done is called once,
 * from the loop, with res->error NULL or saying what failed; KN_AGAIN or
 * KN_ERROR: it could not be submitted (done is not called).
 */
kn_rc kn_capsule_apply(kn_capsule_t *capsule, const char *name,
    const char *uid, json_t *spec, kn_kube_done_pt done, void *data);


#endif /* KN_CAPSULE_H */
