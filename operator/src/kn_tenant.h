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
 *      (view); and, when Capsule is installed, the Capsule Tenant <t> with
 *      the same limits, which both namespaces join (kn_capsule.h);
 *   4. the Deployments and StatefulSets of both namespaces scaled to zero
 *      when the tenant is suspended, their replica counts restored when it
 *      is not (kn_suspend.c);
 *   5. the NovaTenant's status (Ready, observedGeneration and the Manager
 *      generation applied).
 *
 * A deletion deletes the NovaTenant (background propagation) and waits,
 * bounded, until both namespaces are gone.  The work for one tenant is
 * serialised (a queue per tenant); different tenants proceed at once.
 * An operation that fails (kube-apiserver down, say) is reported to the
 * Manager as failed and, unless newer work for the tenant arrives, runs
 * again after a delay doubling from 1 s to 30 s.
 *
 * kn_tenant_start() prepares the cluster before the Manager stream is
 * used: the CRDs NovaTenant and NovaClusterConfig (applied, then waited
 * for until Established), the Kubernetes version (GET /version), and the
 * applied list rebuilt from the NovaTenants the cluster holds, so that a
 * restarted Operator's hello does not ask for its tenants again.
 *
 * The reconciler keeps the last spec it applied completely for each tenant
 * (bounded by the number of tenants; at start, the spec of every NovaTenant
 * found applied).  kn_tenant_resync() queues that spec again, behind the
 * tenant's other work, through steps 1 to 4 without acking anything: drift
 * correction (kn_drift.c) uses it when something the Operator owns changed.
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
#define KN_TENANT_LABEL        "kubenova.io/tenant"  /* on all it owns */


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

/*
 * The tenant a namespace belongs to by its name ("<t>-owner", "<t>-apps"),
 * into buf: 0, or -1 when the name is not of that form or too long.
 */
int kn_tenant_of_namespace(const char *ns, char *buf, size_t size);

/*
 * Whether a tenant is suspended in the newest spec known (queued or
 * applied): 1 or 0; -1 when no spec of it is known or it is being deleted.
 */
int kn_tenant_suspended(kn_tenant_t *tenant, const char *name);

/*
 * The newest spec known of a tenant (queued or applied), borrowed until
 * the loop runs again; NULL when none is known or it is being deleted.
 */
json_t *kn_tenant_spec(kn_tenant_t *tenant, const char *name);

/*
 * Called with each object the reconciler applied (namespaces and what is
 * in them), as the API server answered the apply (borrowed): drift
 * correction tells the changes the reconciler made from others' by them.
 */
typedef void (*kn_tenant_observe_pt)(void *data, json_t *obj);

void kn_tenant_set_observer(kn_tenant_t *tenant, kn_tenant_observe_pt observe,
    void *data);

/* a resync ended; ok: every object is as the spec says again */
typedef void (*kn_tenant_resync_pt)(void *data, const char *name, int ok);

/*
 * Queues a resync of the tenant from the last spec applied completely.
 * KN_OK: done is called once, when it ends (from the loop, possibly before
 * this call returns); KN_DECLINED: no spec of it was applied (unknown or
 * deleted); KN_ERROR: out of memory.
 */
kn_rc kn_tenant_resync(kn_tenant_t *tenant, const char *name,
    kn_tenant_resync_pt done, void *data);


/*
 * What isolates a tenant, built in one place for its native objects and
 * its Capsule Tenant: new references (NULL when out of memory).  spec is
 * the tenant's spec from the Manager.
 */
json_t *kn_tenant_quota_hard(json_t *spec);     /* ResourceQuota spec.hard */
json_t *kn_tenant_limit_range_spec(void);       /* LimitRange spec */
json_t *kn_tenant_network_policy_spec(const char *tenant);
/* [the NovaTenant as controller], for what it garbage-collects */
json_t *kn_tenant_owner_references(const char *tenant, const char *uid);


#endif /* KN_TENANT_H */
