/*
 * The status of the tenants' Applications, reported to the Manager.  A
 * watch of Applications in every namespace (label kubenova.io/tenant)
 * keeps, per application, the newest status (status.status as the phase,
 * status.services[] name/healthy/message, status.workflow's state,
 * status.observedGeneration) with the Manager generation of its
 * annotation.  Each change is sent as an ApplicationStatus; changes that
 * come fast are coalesced: at most one report per application is in
 * flight (unacked), the newest status waits behind it and replaces any
 * older one waiting, and the flush runs a short delay after a change.
 * A report not acked within a few seconds (a stream that ended, say) is
 * sent again, so a reconnect catches up.  Memory is one entry per
 * application watched.
 */

#ifndef KN_APP_STATUS_H
#define KN_APP_STATUS_H


#include "kn_core.h"
#include "kn_kube.h"
#include "kn_log.h"
#include "kn_loop.h"
#include "kubenova.pb-c.h"


typedef struct kn_app_status_s  kn_app_status_t;

/* KN_OK: queued to the Manager; anything else: not sent, tried again */
typedef kn_rc (*kn_app_status_send_pt)(void *data,
    const Kubenova__V1__ApplicationStatus *status);


kn_rc kn_app_status_create(kn_loop_t *loop, const kn_log_t *log,
    kn_kube_t *kube, kn_app_status_send_pt send, void *data,
    kn_app_status_t **out);
void kn_app_status_destroy(kn_app_status_t *st);

kn_rc kn_app_status_start(kn_app_status_t *st);

/* the Manager stored the report of tenant/app at generation */
void kn_app_status_ack(kn_app_status_t *st, const char *tenant,
    const char *app, int64_t generation);


#endif /* KN_APP_STATUS_H */
