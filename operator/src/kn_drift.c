/*
 * Drift correction (see kn_drift.h).  One watch per kind; one record per
 * tenant with a resync due or running, all of them served by one timer
 * (so many drifting tenants never take many of the loop's timers).
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kn_drift.h"
#include "kn_watch.h"


#define KN_DRIFT_DELAY_MS       500     /* the first resync of a change */
#define KN_DRIFT_DELAY_MAX_MS   60000
#define KN_DRIFT_WHAT_MAX       768
#define KN_DRIFT_TENANT_MAX     KN_APPLIER_NAME_MAX


static const struct {
    const char  *api_version;
    const char  *resource;
    const char  *kind;
    unsigned     workload;              /* not ours: watched unlabelled */
} kn_drift_kinds[] = {
    { "v1", "namespaces", "Namespace", 0 },
    { "v1", "resourcequotas", "ResourceQuota", 0 },
    { "v1", "limitranges", "LimitRange", 0 },
    { "networking.k8s.io/v1", "networkpolicies", "NetworkPolicy", 0 },
    { "v1", "serviceaccounts", "ServiceAccount", 0 },
    { "rbac.authorization.k8s.io/v1", "rolebindings", "RoleBinding", 0 },
    { "apps/v1", "deployments", "Deployment", 1 },
    { "apps/v1", "statefulsets", "StatefulSet", 1 }
};

#define KN_DRIFT_KINDS  KN_NELEMS(kn_drift_kinds)


typedef struct kn_drift_tenant_s  kn_drift_tenant_t;

typedef struct {
    kn_drift_t          *drift;
    size_t               kind;
    kn_watch_t          *watch;
    json_t              *prints;        /* "ns/name" -> fingerprint */
    unsigned             synced:1;
} kn_drift_watch_t;


struct kn_drift_tenant_s {
    kn_drift_tenant_t   *next;
    kn_drift_t          *drift;
    uint64_t             due;           /* loop ms of the resync; 0: none */
    unsigned             rounds;        /* resyncs without a quiet moment */
    unsigned             failures;      /* resyncs failed in a row */
    unsigned             running:1;
    unsigned             dirty:1;       /* drift seen since the last start */
    char                 name[KN_DRIFT_TENANT_MAX];
};


struct kn_drift_s {
    kn_loop_t           *loop;
    const kn_log_t      *log;
    kn_kube_t           *kube;
    kn_tenant_t         *tenant;
    kn_drift_tenant_t   *tenants;
    kn_timer_t           timer;
    kn_drift_watch_t     watches[KN_DRIFT_KINDS];
};


static void kn_drift_event(kn_watch_t *watch, kn_watch_event_e ev,
    json_t *obj, void *data);
static void kn_drift_applied(void *data, json_t *obj);
static void kn_drift_workload(kn_drift_watch_t *dw, kn_watch_event_e ev,
    json_t *obj);
static int kn_drift_tenant_of(kn_drift_watch_t *dw, json_t *obj, char *buf,
    size_t size);
static json_int_t kn_drift_print(json_t *obj);
static void kn_drift_touch(kn_drift_t *d, const char *tenant,
    const char *what);
static void kn_drift_schedule(kn_drift_tenant_t *e);
static void kn_drift_arm(kn_drift_t *d);
static void kn_drift_timer(kn_timer_t *timer);
static void kn_drift_resynced(void *data, const char *name, int ok);
static void kn_drift_forget(kn_drift_tenant_t *e);


kn_rc
kn_drift_create(kn_loop_t *loop, const kn_log_t *log, kn_kube_t *kube,
    kn_tenant_t *tenant, kn_drift_t **out)
{
    size_t       i;
    kn_drift_t  *d;

    d = calloc(1, sizeof(kn_drift_t));
    if (d == NULL) {
        kn_log(log, KN_LOG_ERROR, "drift: out of memory");
        return KN_ERROR;
    }

    d->loop = loop;
    d->log = log;
    d->kube = kube;
    d->tenant = tenant;
    kn_timer_init(&d->timer, kn_drift_timer, d);

    for (i = 0; i < KN_DRIFT_KINDS; i++) {
        d->watches[i].drift = d;
        d->watches[i].kind = i;
        d->watches[i].prints = json_object();

        if (d->watches[i].prints == NULL) {
            kn_drift_destroy(d);
            kn_log(log, KN_LOG_ERROR, "drift: out of memory");
            return KN_ERROR;
        }
    }

    kn_tenant_set_observer(tenant, kn_drift_applied, d);

    *out = d;

    return KN_OK;
}


kn_rc
kn_drift_start(kn_drift_t *d)
{
    size_t            i;
    kn_rc             rc;
    kn_kube_ref_t     ref;
    kn_watch_opts_t   opts;

    for (i = 0; i < KN_DRIFT_KINDS; i++) {
        if (d->watches[i].watch != NULL) {
            continue;
        }

        memset(&ref, 0, sizeof(ref));
        ref.api_version = kn_drift_kinds[i].api_version;
        ref.resource = kn_drift_kinds[i].resource;

        memset(&opts, 0, sizeof(opts));
        opts.label_selector = kn_drift_kinds[i].workload ? NULL
                                                         : KN_TENANT_LABEL;

        rc = kn_watch_start(d->kube, &ref, &opts, kn_drift_event,
                            &d->watches[i], &d->watches[i].watch);
        if (rc != KN_OK) {
            kn_log(d->log, KN_LOG_ERROR, "drift: cannot watch %s",
                   kn_drift_kinds[i].resource);
            return KN_ERROR;
        }
    }

    return KN_OK;
}


void
kn_drift_destroy(kn_drift_t *d)
{
    size_t              i;
    kn_drift_tenant_t  *e, *next;

    if (d == NULL) {
        return;
    }

    kn_tenant_set_observer(d->tenant, NULL, NULL);

    for (i = 0; i < KN_DRIFT_KINDS; i++) {
        kn_watch_stop(d->watches[i].watch);
        json_decref(d->watches[i].prints);
    }

    kn_timer_cancel(d->loop, &d->timer);

    /* a resync queued in the reconciler is dropped with it, uncalled */
    for (e = d->tenants; e; e = next) {
        next = e->next;
        free(e);
    }

    free(d);
}


/* -- events ----------------------------------------------------------------- */


/*
 * The reconciler applied obj: its print is what the watch will report, so
 * the event of the reconciler's own change is no drift.
 */

static void
kn_drift_applied(void *data, json_t *obj)
{
    char         key[KN_WATCH_KEY_MAX];
    size_t       i;
    kn_drift_t  *d = data;
    const char  *kind;

    kind = json_string_value(json_object_get(obj, "kind"));

    for (i = 0; kind != NULL && i < KN_DRIFT_KINDS; i++) {
        if (!kn_drift_kinds[i].workload
            && strcmp(kn_drift_kinds[i].kind, kind) == 0)
        {
            if (kn_watch_key(obj, key, sizeof(key)) == 0) {
                (void) json_object_set_new(d->watches[i].prints, key,
                                           json_integer(kn_drift_print(obj)));
            }
            return;
        }
    }
}


static void
kn_drift_event(kn_watch_t *watch, kn_watch_event_e ev, json_t *obj,
    void *data)
{
    char               key[KN_WATCH_KEY_MAX], tenant[KN_DRIFT_TENANT_MAX],
                       what[KN_DRIFT_WHAT_MAX];
    json_t            *meta, *old;
    json_int_t         print;
    const char        *ns, *name;
    kn_drift_t        *d;
    kn_drift_watch_t  *dw = data;

    d = dw->drift;

    switch (ev) {

    case KN_WATCH_SYNCED:
        kn_log(d->log, dw->synced ? KN_LOG_DEBUG : KN_LOG_INFO,
               "drift: watching %s%s", kn_drift_kinds[dw->kind].resource,
               kn_drift_kinds[dw->kind].workload ? ""
               : " labelled " KN_TENANT_LABEL);
        dw->synced = 1;
        return;

    case KN_WATCH_ERROR:
        kn_log(d->log, KN_LOG_WARN, "drift: %s (the watch recovers by "
               "itself)", kn_watch_last_error(watch));
        return;

    default:
        break;
    }

    if (kn_drift_kinds[dw->kind].workload) {
        kn_drift_workload(dw, ev, obj);
        return;
    }

    meta = json_object_get(obj, "metadata");
    ns = json_string_value(json_object_get(meta, "namespace"));
    name = json_string_value(json_object_get(meta, "name"));

    if (kn_watch_key(obj, key, sizeof(key)) != 0) {
        return;
    }

    if (ev == KN_WATCH_DELETED) {
        json_object_del(dw->prints, key);

    } else {
        print = kn_drift_print(obj);
        old = json_object_get(dw->prints, key);

        if (old == NULL) {
            /* the first list, or created (by the reconciler, mostly) */
            (void) json_object_set_new(dw->prints, key, json_integer(print));
            return;
        }

        /*
         * Compared with what the reconciler applied last, never with the
         * previous event: the event of a restoring apply may overtake the
         * apply's answer, and must find the print of before the drift.
         */
        if (ev == KN_WATCH_ADDED
            || (print != 0 && json_integer_value(old) == print))
        {
            /* status, annotations, a no-op apply, the reconciler's own
               change: nothing but what the reconciler set */
            return;
        }
    }

    if (kn_drift_tenant_of(dw, obj, tenant, sizeof(tenant)) != 0) {
        return;
    }

    snprintf(what, sizeof(what), "%s %s%s%s %s",
             kn_drift_kinds[dw->kind].kind, ns ? ns : "", ns ? "/" : "",
             name, ev == KN_WATCH_DELETED ? "deleted" : "changed");

    kn_drift_touch(d, tenant, what);
}


/* a Deployment or StatefulSet running in a suspended tenant */

static void
kn_drift_workload(kn_drift_watch_t *dw, kn_watch_event_e ev, json_t *obj)
{
    char         tenant[KN_DRIFT_TENANT_MAX], what[KN_DRIFT_WHAT_MAX];
    json_t      *meta, *replicas;
    json_int_t   n;
    const char  *ns;

    if (ev == KN_WATCH_DELETED) {
        return;
    }

    meta = json_object_get(obj, "metadata");
    ns = json_string_value(json_object_get(meta, "namespace"));

    if (ns == NULL
        || kn_tenant_of_namespace(ns, tenant, sizeof(tenant)) != 0
        || kn_tenant_suspended(dw->drift->tenant, tenant) != 1)
    {
        return;
    }

    replicas = json_object_get(json_object_get(obj, "spec"), "replicas");
    n = json_is_integer(replicas) ? json_integer_value(replicas) : 1;

    if (n == 0) {
        return;
    }

    snprintf(what, sizeof(what), "%s %s/%s has %" JSON_INTEGER_FORMAT
             " replica(s) while suspended", kn_drift_kinds[dw->kind].kind,
             ns, json_string_value(json_object_get(meta, "name")), n);

    kn_drift_touch(dw->drift, tenant, what);
}


/*
 * The tenant an object belongs to: its namespace's (or, for a namespace,
 * its own name's), else its label.  The namespace first, because a label
 * is what a tenant user may have edited.
 */

static int
kn_drift_tenant_of(kn_drift_watch_t *dw, json_t *obj, char *buf,
    size_t size)
{
    json_t      *meta;
    const char  *where, *label;

    meta = json_object_get(obj, "metadata");
    where = json_string_value(json_object_get(meta,
                strcmp(kn_drift_kinds[dw->kind].resource, "namespaces") == 0
                ? "name" : "namespace"));

    if (where != NULL && kn_tenant_of_namespace(where, buf, size) == 0) {
        return 0;
    }

    label = json_string_value(json_object_get(
                json_object_get(meta, "labels"), KN_TENANT_LABEL));

    if (label != NULL && strlen(label) < size) {
        strcpy(buf, label);
        return 0;
    }

    return -1;
}


/*
 * What the reconciler sets, hashed (FNV-1a of the canonical JSON): the
 * object without metadata and status, plus the labels, owner references
 * and deletion timestamp; a ServiceAccount's secrets are the token
 * controller's.  0: could not be computed (counts as a change).
 */

static json_int_t
kn_drift_print(json_t *obj)
{
    char        *text, *p;
    json_t      *fp, *meta, *v;
    uint64_t     h;
    const char  *k;
    static const char  *kept[] = {
        "labels", "ownerReferences", "deletionTimestamp"
    };
    size_t       i;

    fp = json_object();
    if (fp == NULL) {
        return 0;
    }

    json_object_foreach(obj, k, v) {
        if (strcmp(k, "metadata") != 0 && strcmp(k, "status") != 0
            && strcmp(k, "secrets") != 0)
        {
            (void) json_object_set(fp, k, v);
        }
    }

    meta = json_object();
    if (meta != NULL) {
        for (i = 0; i < KN_NELEMS(kept); i++) {
            v = json_object_get(json_object_get(obj, "metadata"), kept[i]);
            if (v != NULL) {
                (void) json_object_set(meta, kept[i], v);
            }
        }
        (void) json_object_set_new(fp, "metadata", meta);
    }

    text = json_dumps(fp, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(fp);

    if (text == NULL) {
        return 0;
    }

    h = 0xcbf29ce484222325ULL;
    for (p = text; *p; p++) {
        h ^= (unsigned char) *p;
        h *= 0x100000001b3ULL;
    }

    free(text);

    /* positive and never 0 */
    h &= 0x7fffffffffffffffULL;
    return h ? (json_int_t) h : 1;
}


/* -- resyncs ---------------------------------------------------------------- */


static void
kn_drift_touch(kn_drift_t *d, const char *tenant, const char *what)
{
    kn_drift_tenant_t  *e;

    if (kn_tenant_suspended(d->tenant, tenant) < 0) {
        /* not a tenant the reconciler applied, or being deleted */
        kn_log(d->log, KN_LOG_DEBUG, "drift: %s: tenant \"%s\" not applied; "
               "ignored", what, tenant);
        return;
    }

    for (e = d->tenants; e; e = e->next) {
        if (strcmp(e->name, tenant) == 0) {
            break;
        }
    }

    if (e == NULL) {
        e = calloc(1, sizeof(kn_drift_tenant_t));
        if (e == NULL || strlen(tenant) >= sizeof(e->name)) {
            free(e);
            kn_log(d->log, KN_LOG_ERROR, "drift: out of memory");
            return;
        }

        e->drift = d;
        strcpy(e->name, tenant);
        e->next = d->tenants;
        d->tenants = e;
    }

    if (e->dirty || e->running) {
        kn_log(d->log, KN_LOG_DEBUG, "drift: %s: tenant \"%s\" resyncs "
               "already", what, tenant);
        e->dirty = 1;
        return;
    }

    e->dirty = 1;
    kn_drift_schedule(e);

    kn_log(d->log, KN_LOG_INFO, "drift: %s: resyncing tenant \"%s\" in "
           "%" PRIu64 " ms", what, tenant,
           e->due - kn_loop_now(d->loop));

    kn_drift_arm(d);
}


/* the delay doubles with each resync (or failure) in a row */

static void
kn_drift_schedule(kn_drift_tenant_t *e)
{
    unsigned  n;
    uint64_t  delay;

    n = e->rounds > e->failures ? e->rounds : e->failures;
    delay = (uint64_t) KN_DRIFT_DELAY_MS << (n < 8 ? n : 8);

    if (delay > KN_DRIFT_DELAY_MAX_MS) {
        delay = KN_DRIFT_DELAY_MAX_MS;
    }

    e->due = kn_loop_now(e->drift->loop) + delay;
}


/* the one timer, at the earliest resync due */

static void
kn_drift_arm(kn_drift_t *d)
{
    uint64_t            first, now;
    kn_drift_tenant_t  *e;

    first = 0;

    for (e = d->tenants; e; e = e->next) {
        if (e->due != 0 && !e->running && (first == 0 || e->due < first)) {
            first = e->due;
        }
    }

    if (first == 0) {
        kn_timer_cancel(d->loop, &d->timer);
        return;
    }

    now = kn_loop_now(d->loop);

    if (kn_timer_add(d->loop, &d->timer, first > now ? first - now : 0)
        != KN_OK)
    {
        kn_log(d->log, KN_LOG_ERROR, "drift: no timer left; resyncs wait "
               "for the next change");
    }
}


static void
kn_drift_timer(kn_timer_t *timer)
{
    kn_rc               rc;
    uint64_t            now;
    kn_drift_t         *d = timer->data;
    kn_drift_tenant_t  *e, *next;

    now = kn_loop_now(d->loop);

    for (e = d->tenants; e; e = next) {
        next = e->next;

        if (e->due == 0 || e->due > now || e->running) {
            continue;
        }

        e->due = 0;
        e->dirty = 0;
        e->running = 1;
        e->rounds++;

        rc = kn_tenant_resync(d->tenant, e->name, kn_drift_resynced, e);

        if (rc == KN_OK) {
            /* e may be gone already: its resync may have ended at once */
            continue;
        }

        e->running = 0;

        if (rc == KN_DECLINED) {
            kn_drift_forget(e);
            continue;
        }

        e->failures++;
        e->dirty = 1;
        kn_drift_schedule(e);
    }

    kn_drift_arm(d);
}


static void
kn_drift_resynced(void *data, const char *name, int ok)
{
    kn_drift_tenant_t  *e = data;
    kn_drift_t         *d = e->drift;

    e->running = 0;

    if (ok) {
        e->failures = 0;

    } else {
        e->failures++;
        e->dirty = 1;
    }

    if (!e->dirty) {
        /* quiet: the next change starts from the shortest delay */
        kn_log(d->log, KN_LOG_DEBUG, "drift: tenant \"%s\" is as applied",
               name);
        kn_drift_forget(e);
        return;
    }

    kn_drift_schedule(e);
    kn_log(d->log, KN_LOG_INFO, "drift: tenant \"%s\" %s; resyncing again "
           "in %" PRIu64 " ms", name, ok ? "changed meanwhile" : "failed",
           e->due - kn_loop_now(d->loop));
    kn_drift_arm(d);
}


static void
kn_drift_forget(kn_drift_tenant_t *e)
{
    kn_drift_tenant_t  **p;

    for (p = &e->drift->tenants; *p; p = &(*p)->next) {
        if (*p == e) {
            *p = e->next;
            break;
        }
    }

    free(e);
}
