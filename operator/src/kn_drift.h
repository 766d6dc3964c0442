/*
 * Drift correction: what the tenant reconciler owns is watched, and a
 * tenant whose objects someone changed or deleted is resynced from the
 * last spec the reconciler applied (kn_tenant_resync).
 *
 * Cluster-wide watches (kn_watch: list, then watch with bookmarks, relist
 * on 410, reconnect with backoff, so they survive an API server restart),
 * with the label selector kubenova.io/tenant, of namespaces,
 * resourcequotas, limitranges, networkpolicies (networking.k8s.io/v1),
 * serviceaccounts and rolebindings (rbac.authorization.k8s.io/v1).  The
 * tenant of an object is the one its namespace belongs to (<t>-owner,
 * <t>-apps), else its label; tenants the reconciler has no spec of are
 * ignored.
 *
 *   DELETED          drift (also an object that lost its label: the API
 *                    server reports it DELETED from a selected watch)
 *   MODIFIED         drift when what the reconciler sets differs from
 *                    what it applied last: a fingerprint is kept per
 *                    object of the object without its status,
 *                    resourceVersion, managedFields, annotations and the
 *                    fields controllers fill in (a ServiceAccount's
 *                    secrets), taken from the answer of each apply of the
 *                    reconciler (kn_tenant_set_observer), or from the first
 *                    list for what it has not applied since it started.
 *                    So the quota controller updating status.used, a no-op
 *                    apply or the reconciler's own change is no drift,
 *                    whatever order its event and the apply's answer
 *                    arrive in (but for a change of the spec, whose event
 *                    may come before the answer: one resync finds nothing
 *                    to do)
 *   ADDED            never (the first list, or the reconciler creating)
 *
 * Workloads created or scaled up while their tenant is suspended are
 * scaled to zero by the same means: Deployments and StatefulSets (apps/v1)
 * are watched cluster-wide (they carry no label of ours), and one in a
 * suspended tenant's namespace with replicas above zero makes that tenant
 * resync, whose workloads step (kn_suspend) scales it down and remembers
 * its count.  So the first list also catches what was created while the
 * Operator was not running.
 *
 * A resync is debounced per tenant (the events of one change, or of many,
 * make one resync), never runs twice at once for a tenant, and events
 * during a resync make at most one more.  Against a loop (something that
 * keeps undoing what the reconciler does): each resync in a row without a
 * quiet moment doubles the delay before the next, 500 ms up to 60 s; a
 * failed resync is retried with the same backoff.
 *
 * Known limit: an owned object deleted while the Operator was not running
 * is not seen by the first list; the next apply from the Manager or a
 * later change restores it.
 */

#ifndef KN_DRIFT_H
#define KN_DRIFT_H


#include "kn_core.h"
#include "kn_kube.h"
#include "kn_log.h"
#include "kn_loop.h"
#include "kn_tenant.h"


typedef struct kn_drift_s  kn_drift_t;


kn_rc kn_drift_create(kn_loop_t *loop, const kn_log_t *log,
    kn_kube_t *kube, kn_tenant_t *tenant, kn_drift_t **out);

/* starts the watches; once the reconciler is ready (kn_tenant_start) */
kn_rc kn_drift_start(kn_drift_t *drift);

/* stops everything; before kn_tenant_destroy() and kn_kube_destroy() */
void kn_drift_destroy(kn_drift_t *drift);


#endif /* KN_DRIFT_H */
