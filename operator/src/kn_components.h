/*
 * The cluster's components: the applier's backend for kind
 * "ClusterConfig" (the NovaClusterConfig the Manager sends, named after
 * the cluster).  Its spec says, per component (capsule, capsule-proxy,
 * kubevela), whether it is enabled and at which version; the Operator
 * installs the bundles it ships (operator/bundles/README.md):
 *
 *   <bundles-dir>/<component>/<version>/NN-*.yaml
 *
 * one object per file, loaded and checked once at start (a bad bundle
 * stops the Operator with a clear error: it is part of the install).
 * A config is worked through one component after the other:
 *
 *   enabled    its CRDs applied (server-side apply, field manager
 *              kubenova-operator) and waited for until Established, then
 *              the rest of its files in order: "installing", then
 *              "installed" (or "failed" with the error);
 *   disabled   the Deployments, Services, ServiceAccounts, ClusterRoles
 *              and ClusterRoleBindings of its bundle deleted, in reverse
 *              order (already gone is fine); CRDs, their objects and
 *              namespaces are kept: "removed";
 *
 * then the NovaClusterConfig (kubenova.io/v1alpha1) is applied with the
 * spec and the generation in the annotation kubenova.io/generation, and
 * its status with the components' states; the ack follows.  A failure is
 * acked as such and the config is worked through again after a delay
 * doubling from 1 s to 30 s, unless a newer one arrives.  Applying is
 * idempotent: an unchanged object stays as it is.
 *
 * The components' states go to the Manager as a ComponentStatus whenever
 * one changes and on every new stream (kn_components_connected()).
 * kn_components_start() rebuilds, before the first hello, the applied
 * list and the states from the NovaClusterConfigs the cluster holds, so a
 * restarted Operator is sent nothing again and applies nothing.
 */

#ifndef KN_COMPONENTS_H
#define KN_COMPONENTS_H


#include "kn_applier.h"
#include "kn_core.h"
#include "kn_kube.h"
#include "kn_log.h"
#include "kn_loop.h"
#include "kubenova.pb-c.h"


#define KN_COMPONENTS_KIND  "ClusterConfig"


typedef struct kn_components_s  kn_components_t;

/* the ComponentStatus to send (borrowed); KN_DECLINED: not connected */
typedef kn_rc (*kn_components_send_pt)(void *data,
    const Kubenova__V1__ComponentStatus *status);

typedef void (*kn_components_ready_pt)(void *data);


/*
 * Loads every bundle under bundles_dir; KN_ERROR (logged) when one is
 * missing or invalid.  Registers itself as the applier's backend for kind
 * "ClusterConfig".
 */
kn_rc kn_components_create(kn_loop_t *loop, const kn_log_t *log,
    kn_kube_t *kube, kn_applier_t *applier, const char *bundles_dir,
    kn_components_send_pt send, void *data, kn_components_t **out);
/* drops the work in progress (no acks); before kn_kube_destroy() */
void kn_components_destroy(kn_components_t *c);

/* retried every few seconds until it succeeds; ready is called once */
kn_rc kn_components_start(kn_components_t *c, kn_components_ready_pt ready,
    void *data);

/* a new stream: the components' states go again */
void kn_components_connected(kn_components_t *c);


#endif /* KN_COMPONENTS_H */
