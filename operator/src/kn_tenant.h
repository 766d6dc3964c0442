/*
 * The tenant reconciler: the applier's backend for kind "Tenant".  A
 * Tenant from the Manager becomes, by server-side apply (field manager
 * kubenova-operator, force), in order:
 *
 *   1. the NovaTenant <t> (kubenova.io/v1alpha1, cluster-scoped): the spec
 *      the Manager sent, its generation in the annotation
 *      kubenova.io/generation;
 *   2. namespaces <t>-owner and <t>-apps, labelled kubenova.io/tenant and
 *      kubenova.io/tier, owned by the NovaTenant (garbage collection);
 *   3. in both: ResourceQuota kubenova-quota, LimitRange kubenova-defaults,
 *      NetworkPolicy kubenova-default-deny, ServiceAccounts owner and
 *      readonly, RoleBindings kubenova-owner (admin) and kubenova-readonly
 *      (view);
 *   4. the NovaTenant's status (Ready, observedGeneration and the Manager
 *      generation applied).
 *
 * A deletion deletes the NovaTenant (background propagation) and waits,
 * bounded, until both namespaces are gone.  The work for one tenant is
 * serialised (a queue per tenant); different tenants proceed at once.
 *
 * kn_tenant_start() prepares the cluster before the Manager stream is
 * used: the CRDs NovaTenant and NovaClusterConfig (applied, then waited
 * for until Established), the Kubernetes version (GET /version), and the
 * applied list rebuilt from the NovaTenants the cluster holds, so that a
 * restarted Operator's hello does not ask for its tenants again.
 */

#ifndef KN_TENANT_H
#define KN_TENANT_H


#include "kn_applier.h"
#include "kn_core.h"
#include "kn_kube.h"
#include "kn_log.h"
#include "kn_loop.h"


#define KN_TENANT_GROUP        "kubenova.io"
#define KN_TENANT_API_VERSION  "kubenova.io/v1alpha1"


typedef struct kn_tenant_s  kn_tenant_t;

/* the cluster is prepared; version: its gitVersion, or "" if unknown */
typedef void (*kn_tenant_ready_pt)(void *data, const char *version);

/*
 * A tenant is in place (present 1: an apply finished, or the cluster held
 * it completely applied at start) or gone (present 0: a deletion
 * finished), for what builds on its namespaces and service accounts.
 */
typedef void (*kn_tenant_listener_pt)(void *data, const char *name,
    int present);

#define KN_TENANT_MAX_LISTENERS  4


/* registers itself as the applier's backend for kind "Tenant" */
kn_rc kn_tenant_create(kn_loop_t *loop, const kn_log_t *log,
    kn_kube_t *kube, kn_applier_t *applier, kn_tenant_t **out);
/* drops the work in progress (no acks); before kn_kube_destroy() */
void kn_tenant_destroy(kn_tenant_t *tenant);

/* retried every few seconds until it succeeds; ready is called once */
kn_rc kn_tenant_start(kn_tenant_t *tenant, kn_tenant_ready_pt ready,
    void *data);

/* KN_AGAIN: KN_TENANT_MAX_LISTENERS are registered already */
kn_rc kn_tenant_on_ready(kn_tenant_t *tenant, kn_tenant_listener_pt listener,
    void *data);

/* ms a deletion waits for the namespaces to go; default 120000 */
void kn_tenant_set_delete_timeout(kn_tenant_t *tenant, uint64_t ms);


#endif /* KN_TENANT_H */
