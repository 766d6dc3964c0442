/*
 * Usage collection: at the end of every window (window_ms, whole seconds,
 * aligned to the Unix epoch: an hour runs from :00 to :00), what each
 * tenant holds in this cluster, as one UsageReport with window_start and
 * window_end the window's bounds, handed to the spool (kn_spool.c), which
 * numbers it, keeps it on disk and sends it until the Manager acks it.
 * The figures are a snapshot taken when the window ends, and stand for
 * the whole window.
 *
 * A tenant is what the namespaces labelled kubenova.io/tenant=<t> and
 * named <t>-owner or <t>-apps say (what kn_tenant.c creates); everything
 * in them counts, cluster-wide lists being matched to them by namespace:
 *
 *   pods                  pods not terminated (phase neither Succeeded nor
 *                         Failed: field selector, checked again here)
 *   cpu, memory, gpu      their effective requests (cpu in millicores,
 *                         memory in bytes, nvidia.com/gpu in units), by
 *                         Kubernetes' own rule (kn_usage_pod_request),
 *                         summed exactly and rounded up once per tenant
 *   storage               spec.resources.requests.storage of every
 *                         PersistentVolumeClaim, in bytes
 *   load_balancers        Services of type LoadBalancer
 *   namespaces            the tenant's namespaces present
 *   applications          KubeVela Applications (core.oam.dev/v1beta1);
 *                         0 while that API is not installed
 *   quota_violations      ResourceQuotas with some resource at or over its
 *                         hard limit (status.used >= status.hard; a limit
 *                         of 0 with nothing used is not a violation: it
 *                         only forbids), plus the "exceeded quota"
 *                         rejections the cluster's Events show since the
 *                         last collection (reason FailedCreate, message
 *                         containing "exceeded quota": controllers such as
 *                         the ReplicaSet controller record them; a create
 *                         refused to kubectl leaves no Event).  An Event
 *                         counts the rejections it aggregates (count), each
 *                         once: its count is remembered by uid and only
 *                         the increase counts next time.  The first
 *                         collection after a start, which remembers
 *                         nothing, counts an Event whole if it began in
 *                         the window, once if it began before but was seen
 *                         again in it, else not.
 *
 * Every list is paginated and consumed page by page (memory holds one
 * page), all through kn_kube on the event loop.  A collection that fails
 * (an API error) is tried again every few seconds until the next window
 * ends; then that window is given up, with an error logged.  A window the
 * spool says was reported already (a restart within it) is not reported
 * again.  A report that would not fit in max_message is split into
 * several of the same window, each with its own sequence.
 *
 * Kubernetes permissions (cluster-wide): list namespaces, pods,
 * persistentvolumeclaims, services, resourcequotas, events (core) and
 * applications.core.oam.dev.
 */

#ifndef KN_USAGE_H
#define KN_USAGE_H


#include <jansson.h>

#include "kn_core.h"
#include "kn_kube.h"
#include "kn_log.h"
#include "kn_loop.h"
#include "kn_quantity.h"
#include "kn_spool.h"


typedef struct kn_usage_s  kn_usage_t;


typedef struct {
    uint64_t   window_ms;           /* a multiple of 1000 */
    size_t     max_message;         /* largest report */
} kn_usage_conf_t;


kn_rc kn_usage_create(kn_loop_t *loop, const kn_log_t *log,
    kn_kube_t *kube, kn_spool_t *spool, const kn_usage_conf_t *conf,
    kn_usage_t **out);
/* drops a collection in progress; before kn_kube_destroy() */
void kn_usage_destroy(kn_usage_t *usage);

/* the first window ends at the next multiple of window_ms */
kn_rc kn_usage_start(kn_usage_t *usage);


/*
 * A pod's effective request of one resource ("cpu", "memory",
 * "nvidia.com/gpu"), in nano-units, as Kubernetes computes it for the
 * scheduler and for ResourceQuota (PodRequests):
 *
 *   the sum over containers; then, init containers in order, a sidecar
 *   (restartPolicy Always) adds to that sum and to the sidecars' running
 *   total, while any init container needs its own request plus the
 *   sidecars started before it; the pod needs the larger of the sum and
 *   the largest init need; a pod-level request (spec.resources, for cpu
 *   and memory) replaces all that; spec.overhead is added.
 *
 * A request left out is 0.  KN_ERROR when a quantity does not parse (err
 * says which).
 */
kn_rc kn_usage_pod_request(json_t *pod, const char *resource,
    kn_quantity_t *out, char *err, size_t err_size);

/* RFC 3339 ("2024-05-01T10:00:00Z", fractions and offsets too) to Unix
   seconds; KN_ERROR when it is not one */
kn_rc kn_usage_time(const char *text, int64_t *out);


#endif /* KN_USAGE_H */
