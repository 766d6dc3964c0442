/*
 * The application reconciler: the applier's backend for kind
 * "Application".  The Manager sends each KubeVela Application of a tenant
 * as "<tenant>/<app>" with the document as stored; it becomes, by
 * server-side apply (field manager kubenova-operator, force), the
 * Application <app> (core.oam.dev/v1beta1) in the namespace <tenant>-apps
 * whatever the document says (defence in depth: a tenant's apps live in
 * its namespace only), labelled kubenova.io/tenant and with the Manager
 * generation in the annotation kubenova.io/generation.  An Application of
 * a tenant the cluster does not hold fails with an error that says so.
 *
 * A deletion deletes the Application and waits, bounded, until it is gone.
 * The work for one application is serialised (a queue per application);
 * a failed operation runs again after a delay doubling from 1 s to 30 s
 * unless newer work for it arrives.
 *
 * kn_app_start() prepares the cluster before the Manager stream is used:
 * the Application CRD is installed when the cluster has none (never over
 * a real KubeVela's: only after GET says 404), then waited for until
 * Established; the applied list is rebuilt from the Applications the
 * cluster holds, so that a restarted Operator's hello does not ask for
 * them again.
 */

#ifndef KN_APP_H
#define KN_APP_H


#include "kn_applier.h"
#include "kn_core.h"
#include "kn_kube.h"
#include "kn_log.h"
#include "kn_loop.h"


#define KN_APP_KIND         "Application"
#define KN_APP_API_VERSION  "core.oam.dev/v1beta1"
#define KN_APP_CRD          "applications.core.oam.dev"


typedef struct kn_app_s  kn_app_t;

typedef void (*kn_app_ready_pt)(void *data);


/* registers itself as the applier's backend for kind "Application" */
kn_rc kn_app_create(kn_loop_t *loop, const kn_log_t *log, kn_kube_t *kube,
    kn_applier_t *applier, kn_app_t **out);
/* drops the work in progress (no acks); before kn_kube_destroy() */
void kn_app_destroy(kn_app_t *app);

/* retried every few seconds until it succeeds; ready is called once */
kn_rc kn_app_start(kn_app_t *app, kn_app_ready_pt ready, void *data);

/* ms a deletion waits for the Application to go; default 60000 */
void kn_app_set_delete_timeout(kn_app_t *app, uint64_t ms);


#endif /* KN_APP_H */
