/*
 * A tenant's workloads suspended and resumed: the Deployments and
 * StatefulSets (apps/v1) of its namespaces.  Suspending scales each to
 * zero and remembers the replica count it had in the annotation
 * kubenova.io/replicas, written by the same JSON merge patch as the zero;
 * resuming restores that count and removes the annotation.
 *
 * A pass is idempotent.  A workload that carries the annotation already
 * keeps it (suspending twice never remembers a zero) and is only scaled
 * down again if something scaled it up meanwhile; one without it at resume
 * is left alone; one at zero replicas without it when suspending is left
 * alone too (nothing to remember).  Each patch carries the resourceVersion
 * the list returned, so a workload changed between the list and the patch
 * answers 409 Conflict rather than being remembered wrong: the pass then
 * starts again from the lists, a few times at most.
 *
 * A pass lists (paginated, through kn_kube) then patches, one request at a
 * time (the client's rate limit would serialise a burst anyway), so it
 * holds at most one request and kn_suspend_cancel() is exact.
 */

#ifndef KN_SUSPEND_H
#define KN_SUSPEND_H


#include <jansson.h>

#include "kn_core.h"
#include "kn_kube.h"
#include "kn_log.h"


#define KN_SUSPEND_ANNOT     "kubenova.io/replicas"
#define KN_SUSPEND_NS        2          /* namespaces of a pass, at most */


typedef struct kn_suspend_s  kn_suspend_t;


/*
 * A pass over namespaces (n <= KN_SUSPEND_NS; copied).  KN_OK: done is
 * called once, from the loop, with res->error NULL when every workload is
 * as it should be, or what went wrong; *out is valid until then.
 * Anything else: nothing was started and done is never called.
 */
kn_rc kn_suspend_start(kn_kube_t *kube, const kn_log_t *log,
    const char *const *namespaces, size_t n, int suspended,
    kn_kube_done_pt done, void *data, kn_suspend_t **out);

/* drops a pass in progress (its request too); done is not called */
void kn_suspend_cancel(kn_suspend_t *s);

/*
 * The JSON merge patch one workload (as listed) needs, or NULL when it is
 * as it should be; a new reference.  On its own for tests.
 */
json_t *kn_suspend_patch(json_t *workload, int suspended);


#endif /* KN_SUSPEND_H */
