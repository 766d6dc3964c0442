/*
 * Application status reports (see kn_app_status.h).  The entries are a
 * JSON object keyed "<tenant>/<app>":
 *   {"want": summary, "sent": summary or absent, "acked": bool, "at": ms}
 * where a summary is {"generation", "phase", "services", "observed",
 * "workflow"}.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kn_app_status.h"
#include "kn_tenant.h"
#include "kn_watch.h"


#define KN_APP_STATUS_DELAY_MS   100        /* coalesce fast changes */
#define KN_APP_STATUS_RESEND_MS  3000       /* unacked: sent again */
#define KN_APP_STATUS_SERVICES   1000       /* as the Manager accepts */
#define KN_APP_STATUS_NAME_MAX   (253 * 2 + 2)


struct kn_app_status_s {
    kn_loop_t              *loop;
    const kn_log_t         *log;
    kn_kube_t              *kube;
    kn_watch_t             *watch;
    kn_app_status_send_pt   send;
    void                   *data;
    json_t                 *entries;
    kn_timer_t              flush;
    uint64_t                flush_at;
};


static void kn_app_status_event(kn_watch_t *watch, kn_watch_event_e ev,
    json_t *obj, void *data);
static json_t *kn_app_status_summary(json_t *obj);
static void kn_app_status_flush(kn_timer_t *timer);
static void kn_app_status_schedule(kn_app_status_t *st, uint64_t ms);
static kn_rc kn_app_status_send(kn_app_status_t *st, const char *key,
    json_t *summary);


kn_rc
kn_app_status_create(kn_loop_t *loop, const kn_log_t *log, kn_kube_t *kube,
    kn_app_status_send_pt send, void *data, kn_app_status_t **out)
{
    kn_app_status_t  *st;

    st = calloc(1, sizeof(kn_app_status_t));
    if (st == NULL || (st->entries = json_object()) == NULL) {
        free(st);
        kn_log(log, KN_LOG_ERROR, "app status: out of memory");
        return KN_ERROR;
    }

    st->loop = loop;
    st->log = log;
    st->kube = kube;
    st->send = send;
    st->data = data;
    kn_timer_init(&st->flush, kn_app_status_flush, st);

    *out = st;
    return KN_OK;
}


void
kn_app_status_destroy(kn_app_status_t *st)
{
    if (st == NULL) {
        return;
    }

    kn_watch_stop(st->watch);
    kn_timer_cancel(st->loop, &st->flush);
    json_decref(st->entries);
    free(st);
}


kn_rc
kn_app_status_start(kn_app_status_t *st)
{
    kn_kube_ref_t    ref;
    kn_watch_opts_t  opts;

    memset(&ref, 0, sizeof(ref));
    ref.api_version = "core.oam.dev/v1beta1";
    ref.resource = "applications";

    memset(&opts, 0, sizeof(opts));
    opts.label_selector = KN_TENANT_LABEL;

    return kn_watch_start(st->kube, &ref, &opts, kn_app_status_event, st,
                          &st->watch);
}


static void
kn_app_status_event(kn_watch_t *watch, kn_watch_event_e ev, json_t *obj,
    void *data)
{
    char              key[KN_APP_STATUS_NAME_MAX];
    json_t           *meta, *summary, *entry;
    const char       *tenant, *name;
    kn_app_status_t  *st = data;

    (void) watch;

    if (ev != KN_WATCH_ADDED && ev != KN_WATCH_MODIFIED
        && ev != KN_WATCH_DELETED)
    {
        return;
    }

    meta = json_object_get(obj, "metadata");
    name = json_string_value(json_object_get(meta, "name"));
    tenant = json_string_value(json_object_get(json_object_get(meta,
                                                               "labels"),
                                               KN_TENANT_LABEL));

    if (name == NULL || tenant == NULL
        || (size_t) snprintf(key, sizeof(key), "%s/%s", tenant, name)
           >= sizeof(key))
    {
        return;
    }

    if (ev == KN_WATCH_DELETED) {
        (void) json_object_del(st->entries, key);
        return;
    }

    /* an Application with no status yet has nothing to tell */
    if (!json_is_object(json_object_get(obj, "status"))) {
        return;
    }

    summary = kn_app_status_summary(obj);
    if (summary == NULL) {
        return;
    }

    entry = json_object_get(st->entries, key);

    if (entry == NULL) {
        entry = json_object();
        if (entry == NULL
            || json_object_set_new(st->entries, key, entry) != 0)
        {
            json_decref(summary);
            return;
        }
    }

    if (json_equal(json_object_get(entry, "want"), summary)) {
        json_decref(summary);
        return;
    }

    (void) json_object_set_new(entry, "want", summary);
    kn_app_status_schedule(st, KN_APP_STATUS_DELAY_MS);
}


static json_t *
kn_app_status_summary(json_t *obj)
{
    json_t      *status, *services, *s, *out;
    const char  *annot, *phase, *wf, *v;
    size_t       i;
    int64_t      gen;

    status = json_object_get(obj, "status");
    annot = json_string_value(json_object_get(json_object_get(
                json_object_get(obj, "metadata"), "annotations"),
                "kubenova.io/generation"));
    gen = annot ? strtoll(annot, NULL, 10) : 0;

    phase = json_string_value(json_object_get(status, "status"));
    wf = json_string_value(json_object_get(json_object_get(status,
                                                           "workflow"),
                                           "status"));
    if (wf == NULL
        && json_is_object(json_object_get(status, "workflow")))
    {
        /* KubeVela's workflow: finished, suspend, terminated */
        s = json_object_get(status, "workflow");
        wf = json_is_true(json_object_get(s, "terminated")) ? "terminated"
             : json_is_true(json_object_get(s, "suspend")) ? "suspended"
             : json_is_true(json_object_get(s, "finished")) ? "finished"
             : "running";
    }

    services = json_array();
    if (services == NULL) {
        return NULL;
    }

    json_array_foreach(json_object_get(status, "services"), i, s) {
        if (i >= KN_APP_STATUS_SERVICES) {
            break;
        }
        v = json_string_value(json_object_get(s, "name"));
        (void) json_array_append_new(services, json_pack("{s:s, s:b, s:s}",
            "name", v ? v : "",
            "healthy", json_is_true(json_object_get(s, "healthy")),
            "message", json_string_value(json_object_get(s, "message"))
                       ? json_string_value(json_object_get(s, "message"))
                       : ""));
    }

    out = json_pack("{s:I, s:s, s:o, s:I, s:s}",
                    "generation", (json_int_t) (gen > 0 ? gen : 0),
                    "phase", phase ? phase : "",
                    "services", services,
                    "observed", (json_int_t) json_integer_value(
                        json_object_get(status, "observedGeneration")),
                    "workflow", wf ? wf : "");

    return out;
}


static void
kn_app_status_schedule(kn_app_status_t *st, uint64_t ms)
{
    uint64_t  at;

    at = kn_loop_now(st->loop) + ms;

    if (kn_timer_is_set(&st->flush)) {
        if (st->flush_at <= at) {
            return;
        }
        kn_timer_cancel(st->loop, &st->flush);
    }

    if (kn_timer_add(st->loop, &st->flush, ms) == KN_OK) {
        st->flush_at = at;
    }
}


/* send what changed, one in flight per application; again if unacked */

static void
kn_app_status_flush(kn_timer_t *timer)
{
    json_t           *entry, *want, *sent;
    uint64_t          now;
    const char       *key;
    int               waiting;
    kn_app_status_t  *st = timer->data;

    now = kn_loop_now(st->loop);
    waiting = 0;

    json_object_foreach(st->entries, key, entry) {
        want = json_object_get(entry, "want");
        sent = json_object_get(entry, "sent");

        if (json_is_true(json_object_get(entry, "acked"))
            && json_equal(want, sent))
        {
            continue;
        }

        if (sent != NULL && !json_is_true(json_object_get(entry, "acked"))
            && now - (uint64_t) json_integer_value(json_object_get(entry,
                                                                   "at"))
               < KN_APP_STATUS_RESEND_MS)
        {
            waiting = 1;                /* in flight: the newest waits */
            continue;
        }

        waiting = 1;

        if (kn_app_status_send(st, key, want) == KN_OK) {
            (void) json_object_set(entry, "sent", want);
            (void) json_object_set_new(entry, "acked", json_false());
            (void) json_object_set_new(entry, "at",
                                       json_integer((json_int_t) now));
        }
    }

    if (waiting) {
        kn_app_status_schedule(st, 1000);
    }
}


static kn_rc
kn_app_status_send(kn_app_status_t *st, const char *key, json_t *summary)
{
    char                                tenant[KN_APP_STATUS_NAME_MAX];
    json_t                             *s;
    size_t                              i, n;
    kn_rc                               rc;
    const char                         *slash;
    Kubenova__V1__ApplicationStatus     msg;
    Kubenova__V1__ServiceHealth        *svc, **svcs;

    slash = strchr(key, '/');
    if (slash == NULL) {
        return KN_ERROR;
    }

    memcpy(tenant, key, slash - key);
    tenant[slash - key] = '\0';

    n = json_array_size(json_object_get(summary, "services"));
    svc = calloc(n ? n : 1, sizeof(Kubenova__V1__ServiceHealth));
    svcs = calloc(n ? n : 1, sizeof(Kubenova__V1__ServiceHealth *));
    if (svc == NULL || svcs == NULL) {
        free(svc);
        free(svcs);
        return KN_ERROR;
    }

    json_array_foreach(json_object_get(summary, "services"), i, s) {
        kubenova__v1__service_health__init(&svc[i]);
        svc[i].name = (char *) json_string_value(json_object_get(s, "name"));
        svc[i].healthy = json_is_true(json_object_get(s, "healthy"));
        svc[i].message = (char *) json_string_value(json_object_get(s,
                                                                 "message"));
        svcs[i] = &svc[i];
    }

    kubenova__v1__application_status__init(&msg);
    msg.tenant = tenant;
    msg.app = (char *) slash + 1;
    msg.generation = json_integer_value(json_object_get(summary,
                                                        "generation"));
    msg.phase = (char *) json_string_value(json_object_get(summary, "phase"));
    msg.observed_generation = json_integer_value(json_object_get(summary,
                                                                 "observed"));
    msg.workflow_state = (char *) json_string_value(json_object_get(summary,
                                                                "workflow"));
    msg.n_services = n;
    msg.services = svcs;

    rc = st->send(st->data, &msg);

    if (rc == KN_OK) {
        kn_log(st->log, KN_LOG_DEBUG, "app status: %s: phase \"%s\" sent",
               key, msg.phase);
    }

    free(svc);
    free(svcs);

    return rc;
}


void
kn_app_status_ack(kn_app_status_t *st, const char *tenant, const char *app,
    int64_t generation)
{
    char     key[KN_APP_STATUS_NAME_MAX];
    json_t  *entry, *sent;

    if ((size_t) snprintf(key, sizeof(key), "%s/%s", tenant, app)
        >= sizeof(key))
    {
        return;
    }

    entry = json_object_get(st->entries, key);
    sent = json_object_get(entry, "sent");

    if (sent == NULL
        || json_integer_value(json_object_get(sent, "generation"))
           != generation)
    {
        return;
    }

    (void) json_object_set_new(entry, "acked", json_true());

    if (!json_equal(sent, json_object_get(entry, "want"))) {
        kn_app_status_schedule(st, KN_APP_STATUS_DELAY_MS);
    }
}
