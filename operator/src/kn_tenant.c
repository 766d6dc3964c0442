/*
 * The tenant reconciler (see kn_tenant.h).  Each tenant with work pending
 * has a record holding a queue of operations; the head is in progress as a
 * chain of steps, each step a batch of Kubernetes requests submitted at
 * once, the next step starting when the whole batch has answered.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kn_capsule.h"
#include "kn_suspend.h"
#include "kn_tenant.h"


#define KN_TENANT_KIND          "Tenant"
#define KN_TENANT_ERROR_MAX     KN_APPLIER_ERROR_MAX
#define KN_TENANT_NS_MAX        (KN_APPLIER_NAME_MAX + 8)
#define KN_TENANT_POLL_MS       500
#define KN_TENANT_RETRY_MS      2000
#define KN_TENANT_BACKOFF_MS    1000        /* a failed operation, again */
#define KN_TENANT_BACKOFF_MAX_MS 30000
#define KN_TENANT_CRD_WAIT_MS   30000
#define KN_TENANT_GEN_ANNOT     "kubenova.io/generation"
#define KN_TENANT_TIER          "kubenova.io/tier"


typedef struct kn_tenant_op_s   kn_tenant_op_t;
typedef struct kn_tenant_rec_s  kn_tenant_rec_t;

struct kn_tenant_op_s {
    kn_tenant_op_t   *next;
    int64_t           generation;
    json_t           *spec;             /* NULL: a deletion */

    /* a resync (kn_tenant_resync): spec and generation are the last
       applied, taken when it starts; no ack */
    kn_tenant_resync_pt  resynced;
    void                *resync_data;
    unsigned             resync:1;
};


typedef enum {
    KN_TENANT_S_TENANT = 0,             /* apply the NovaTenant */
    KN_TENANT_S_NAMESPACES,
    KN_TENANT_S_OBJECTS,
    KN_TENANT_S_WORKLOADS,              /* suspend or resume (kn_suspend) */
    KN_TENANT_S_STATUS,
    KN_TENANT_S_DELETE,                 /* delete the NovaTenant */
    KN_TENANT_S_WAIT                    /* poll the namespaces */
} kn_tenant_step_e;


struct kn_tenant_rec_s {
    kn_tenant_rec_t  *next;
    kn_tenant_t      *tenant;
    kn_tenant_op_t   *ops;              /* head: in progress */
    kn_tenant_op_t  **last;
    kn_tenant_step_e  step;
    unsigned          pending;          /* requests of the step */
    unsigned          gone;             /* S_WAIT: namespaces not found */
    int64_t           kgen;             /* the NovaTenant's generation */
    uint64_t          deadline;
    kn_timer_t        timer;
    kn_suspend_t     *suspend;          /* S_WORKLOADS in progress */
    kn_timer_t        retry;            /* set: the head failed, runs again */
    unsigned          failures;         /* of the head, in a row */
    char              uid[64];
    char              error[KN_TENANT_ERROR_MAX];
    char              name[KN_APPLIER_NAME_MAX];
};


typedef enum {
    KN_TENANT_START_CRDS = 0,
    KN_TENANT_START_ESTABLISHED,
    KN_TENANT_START_LIST,
    KN_TENANT_START_DONE
} kn_tenant_start_e;


struct kn_tenant_s {
    kn_loop_t           *loop;
    const kn_log_t      *log;
    kn_kube_t           *kube;
    kn_applier_t        *applier;
    kn_capsule_t        *capsule;
    kn_tenant_rec_t     *recs;
    uint64_t             delete_timeout_ms;
    json_t              *applied;       /* name -> {"generation", "spec"}:
                                           the last applied completely */
    kn_tenant_observe_pt  observe;
    void                 *observe_data;

    /* kn_tenant_on_ready() */
    kn_tenant_listener_pt  listeners[KN_TENANT_MAX_LISTENERS];
    void                  *listener_data[KN_TENANT_MAX_LISTENERS];
    unsigned               nlisteners;

    /* kn_tenant_start() */
    kn_tenant_ready_pt   ready;
    void                *ready_data;
    kn_tenant_start_e    start_step;
    unsigned             start_pending;
    unsigned             established;
    int                  start_failed;
    uint64_t             crd_deadline;
    kn_timer_t           start_timer;
    char                 version[128];
};


static const char  *kn_tenant_crds[][3] = {
    /* plural, kind, singular */
    { "novatenants", "NovaTenant", "novatenant" },
    { "novaclusterconfigs", "NovaClusterConfig", "novaclusterconfig" }
};


static kn_rc kn_tenant_apply(void *data, const char *name,
    int64_t generation, json_t *spec);
static kn_rc kn_tenant_delete(void *data, const char *name,
    int64_t generation);
static kn_rc kn_tenant_enqueue(kn_tenant_t *t, const char *name,
    int64_t generation, json_t *spec);
static kn_tenant_rec_t *kn_tenant_find(kn_tenant_t *t, const char *name);
static kn_rc kn_tenant_push(kn_tenant_t *t, const char *name,
    kn_tenant_op_t *op);
static void kn_tenant_remember(kn_tenant_t *t, const char *name,
    int64_t generation, json_t *spec);
static void kn_tenant_workloads_done(const kn_kube_result_t *res,
    void *data);
static void kn_tenant_run(kn_tenant_rec_t *rec);
static void kn_tenant_submit(kn_tenant_rec_t *rec, const kn_kube_ref_t *ref,
    json_t *obj, const char *what);
static void kn_tenant_step_done(const kn_kube_result_t *res, void *data);
static void kn_tenant_next(kn_tenant_rec_t *rec);
static void kn_tenant_finish(kn_tenant_rec_t *rec, int ok);
static void kn_tenant_notify(kn_tenant_t *t, const char *name, int present);
static void kn_tenant_poll(kn_timer_t *timer);
static kn_rc kn_tenant_retry_later(kn_tenant_rec_t *rec);
static void kn_tenant_retry(kn_timer_t *timer);
static int kn_tenant_newer_queued(kn_tenant_op_t *op);
static void kn_tenant_drop_head(kn_tenant_rec_t *rec);
static void kn_tenant_rec_free(kn_tenant_rec_t *rec);
static void kn_tenant_objects(kn_tenant_rec_t *rec, const char *ns,
    json_t *spec);
static void kn_tenant_capsule(kn_tenant_rec_t *rec, json_t *spec);
static json_t *kn_tenant_meta(kn_tenant_rec_t *rec, const char *name,
    const char *ns);
static int kn_tenant_qty(json_t *v, char *buf, size_t size);

static void kn_tenant_start_run(kn_tenant_t *t);
static void kn_tenant_start_timer(kn_timer_t *timer);
static void kn_tenant_start_fail(kn_tenant_t *t, const char *what,
    const kn_kube_result_t *res);
static void kn_tenant_version_done(const kn_kube_result_t *res, void *data);
static void kn_tenant_crd_done(const kn_kube_result_t *res, void *data);
static void kn_tenant_established_done(const kn_kube_result_t *res,
    void *data);
static void kn_tenant_list_done(const kn_kube_result_t *res, void *data);
static json_t *kn_tenant_crd(size_t i);


kn_rc
kn_tenant_create(kn_loop_t *loop, const kn_log_t *log, kn_kube_t *kube,
    kn_applier_t *applier, kn_tenant_t **out)
{
    kn_tenant_t           *t;
    kn_applier_backend_t   b;

    t = calloc(1, sizeof(kn_tenant_t));
    if (t == NULL) {
        kn_log(log, KN_LOG_ERROR, "tenants: out of memory");
        return KN_ERROR;
    }

    t->loop = loop;
    t->log = log;
    t->kube = kube;
    t->applier = applier;
    t->delete_timeout_ms = 120000;
    kn_timer_init(&t->start_timer, kn_tenant_start_timer, t);

    t->applied = json_object();
    if (t->applied == NULL) {
        free(t);
        kn_log(log, KN_LOG_ERROR, "tenants: out of memory");
        return KN_ERROR;
    }

    b.apply = kn_tenant_apply;
    b.delete_ = kn_tenant_delete;
    b.data = t;

    if (kn_capsule_create(loop, log, kube, &t->capsule) != KN_OK) {
        json_decref(t->applied);
        free(t);
        return KN_ERROR;
    }

    if (kn_applier_set_backend(applier, KN_TENANT_KIND, &b) != KN_OK) {
        kn_capsule_destroy(t->capsule);
        json_decref(t->applied);
        free(t);
        return KN_ERROR;
    }

    *out = t;
    return KN_OK;
}


void
kn_tenant_destroy(kn_tenant_t *t)
{
    kn_tenant_rec_t  *rec, *next;

    if (t == NULL) {
        return;
    }

    kn_timer_cancel(t->loop, &t->start_timer);
    kn_capsule_destroy(t->capsule);         /* before its callers go */

    for (rec = t->recs; rec; rec = next) {
        next = rec->next;
        kn_tenant_rec_free(rec);
    }

    json_decref(t->applied);
    free(t);
}


void
kn_tenant_set_delete_timeout(kn_tenant_t *t, uint64_t ms)
{
    t->delete_timeout_ms = ms;
}


/* -- resyncs (drift correction) ------------------------------------------ */


void
kn_tenant_set_observer(kn_tenant_t *t, kn_tenant_observe_pt observe,
    void *data)
{
    t->observe = observe;
    t->observe_data = data;
}


int
kn_tenant_of_namespace(const char *ns, char *buf, size_t size)
{
    size_t       len, i;
    static const char  *suffix[] = { "-owner", "-apps" };

    len = strlen(ns);

    for (i = 0; i < KN_NELEMS(suffix); i++) {
        size_t  n = strlen(suffix[i]);

        if (len > n && len - n < size
            && strcmp(ns + len - n, suffix[i]) == 0)
        {
            memcpy(buf, ns, len - n);
            buf[len - n] = '\0';
            return 0;
        }
    }

    return -1;
}


int
kn_tenant_suspended(kn_tenant_t *t, const char *name)
{
    json_t  *spec;

    spec = kn_tenant_spec(t, name);

    if (spec == NULL) {
        return -1;
    }

    return json_is_true(json_object_get(spec, "suspended"));
}


json_t *
kn_tenant_spec(kn_tenant_t *t, const char *name)
{
    kn_tenant_op_t   *op, *newest;
    kn_tenant_rec_t  *rec;

    newest = NULL;
    rec = kn_tenant_find(t, name);

    for (op = rec ? rec->ops : NULL; op; op = op->next) {
        if (!op->resync) {
            newest = op;
        }
    }

    if (newest != NULL) {
        return newest->spec;            /* NULL: being deleted */
    }

    return json_object_get(json_object_get(t->applied, name), "spec");
}


kn_rc
kn_tenant_resync(kn_tenant_t *t, const char *name, kn_tenant_resync_pt done,
    void *data)
{
    kn_tenant_op_t  *op;

    if (json_object_get(t->applied, name) == NULL) {
        return KN_DECLINED;
    }

    op = calloc(1, sizeof(kn_tenant_op_t));
    if (op == NULL) {
        kn_log(t->log, KN_LOG_ERROR, "tenants: out of memory");
        return KN_ERROR;
    }

    op->resync = 1;
    op->resynced = done;
    op->resync_data = data;

    return kn_tenant_push(t, name, op);
}


/* the last spec applied completely (NULL: deleted), for resyncs */

static void
kn_tenant_remember(kn_tenant_t *t, const char *name, int64_t generation,
    json_t *spec)
{
    json_t  *last;

    if (spec == NULL) {
        json_object_del(t->applied, name);
        return;
    }

    last = json_pack("{s:I, s:O}", "generation", (json_int_t) generation,
                     "spec", spec);

    if (last == NULL || json_object_set_new(t->applied, name, last) != 0) {
        /* a resync would apply an older spec: better none */
        json_object_del(t->applied, name);
        kn_log(t->log, KN_LOG_ERROR, "tenants: out of memory");
    }
}


kn_rc
kn_tenant_on_ready(kn_tenant_t *t, kn_tenant_listener_pt listener,
    void *data)
{
    if (t->nlisteners == KN_TENANT_MAX_LISTENERS) {
        return KN_AGAIN;
    }

    t->listeners[t->nlisteners] = listener;
    t->listener_data[t->nlisteners] = data;
    t->nlisteners++;

    return KN_OK;
}


static void
kn_tenant_notify(kn_tenant_t *t, const char *name, int present)
{
    unsigned  i;

    for (i = 0; i < t->nlisteners; i++) {
        t->listeners[i](t->listener_data[i], name, present);
    }
}


/* -- the applier's backend ------------------------------------------------ */


static kn_rc
kn_tenant_apply(void *data, const char *name, int64_t generation,
    json_t *spec)
{
    return kn_tenant_enqueue(data, name, generation, spec);
}


static kn_rc
kn_tenant_delete(void *data, const char *name, int64_t generation)
{
    return kn_tenant_enqueue(data, name, generation, NULL);
}


static kn_rc
kn_tenant_enqueue(kn_tenant_t *t, const char *name, int64_t generation,
    json_t *spec)
{
    kn_tenant_op_t   *op, *o;
    kn_tenant_rec_t  *rec;

    rec = kn_tenant_find(t, name);

    if (rec != NULL) {
        /* the same work queued already (a resend after a reconnect) */
        for (o = rec->ops; o; o = o->next) {
            if (o->next == NULL && !o->resync && o->generation == generation
                && (o->spec == NULL) == (spec == NULL))
            {
                kn_log(t->log, KN_LOG_DEBUG, "tenants: \"%s\" at generation "
                       "%" PRId64 " is in progress already", name,
                       generation);
                return KN_OK;
            }
        }
    }

    op = calloc(1, sizeof(kn_tenant_op_t));
    if (op == NULL) {
        kn_log(t->log, KN_LOG_ERROR, "tenants: out of memory");
        return KN_ERROR;
    }

    op->generation = generation;
    op->spec = spec ? json_incref(spec) : NULL;

    return kn_tenant_push(t, name, op);
}


static kn_tenant_rec_t *
kn_tenant_find(kn_tenant_t *t, const char *name)
{
    kn_tenant_rec_t  *rec;

    for (rec = t->recs; rec; rec = rec->next) {
        if (strcmp(rec->name, name) == 0) {
            return rec;
        }
    }

    return NULL;
}


/* op to the tenant's queue (a new record if it has none); runs it if first */

static kn_rc
kn_tenant_push(kn_tenant_t *t, const char *name, kn_tenant_op_t *op)
{
    kn_tenant_rec_t  *rec;

    rec = kn_tenant_find(t, name);

    if (rec == NULL) {
        rec = calloc(1, sizeof(kn_tenant_rec_t));
        if (rec == NULL || strlen(name) >= sizeof(rec->name)) {
            free(rec);
            json_decref(op->spec);
            free(op);
            kn_log(t->log, KN_LOG_ERROR, "tenants: out of memory");
            return KN_ERROR;
        }

        rec->tenant = t;
        strcpy(rec->name, name);
        rec->last = &rec->ops;
        kn_timer_init(&rec->timer, kn_tenant_poll, rec);
        kn_timer_init(&rec->retry, kn_tenant_retry, rec);
        rec->next = t->recs;
        t->recs = rec;
    }

    *rec->last = op;
    rec->last = &op->next;

    if (!op->resync && kn_timer_is_set(&rec->retry)) {
        /* the failed operation waiting to run again is superseded */
        kn_timer_cancel(t->loop, &rec->retry);
        kn_tenant_drop_head(rec);
        kn_tenant_run(rec);

    } else if (rec->ops == op) {
        kn_tenant_run(rec);
    }

    return KN_OK;
}


/* start the operation at the head of the queue */

static void
kn_tenant_run(kn_tenant_rec_t *rec)
{
    json_t          *last;
    kn_tenant_op_t  *op = rec->ops;

    rec->error[0] = '\0';
    rec->uid[0] = '\0';
    rec->kgen = 0;

    if (op->resync) {
        /* what was applied last, now (the work queued before may change
           it) */
        last = json_object_get(rec->tenant->applied, rec->name);

        if (last == NULL) {
            kn_log(rec->tenant->log, KN_LOG_INFO, "tenants: \"%s\" is not "
                   "applied any more: nothing to resync", rec->name);
            kn_tenant_finish(rec, 1);
            return;
        }

        op->generation = json_integer_value(json_object_get(last,
                                                            "generation"));
        op->spec = json_incref(json_object_get(last, "spec"));
    }

    kn_log(rec->tenant->log, KN_LOG_INFO, "tenants: %s \"%s\" at generation "
           "%" PRId64, op->resync ? "resyncing" : op->spec ? "applying"
           : "deleting", rec->name, op->generation);

    rec->step = op->spec ? KN_TENANT_S_TENANT : KN_TENANT_S_DELETE;
    kn_tenant_next(rec);
}


/* submit the batch of rec->step (and finish when it is empty) */

static void
kn_tenant_next(kn_tenant_rec_t *rec)
{
    char             buf[64], ns[2][KN_TENANT_NS_MAX];
    json_t          *obj, *spec, *labels, *owner, *status;
    const char      *plan, *nss[2];
    kn_tenant_t     *t = rec->tenant;
    kn_kube_ref_t    ref;
    kn_tenant_op_t  *op = rec->ops;
    size_t           i;
    time_t           now;
    struct tm        tm;

    snprintf(ns[0], sizeof(ns[0]), "%s-owner", rec->name);
    snprintf(ns[1], sizeof(ns[1]), "%s-apps", rec->name);

    spec = op->spec;
    plan = json_string_value(json_object_get(spec, "plan"));
    if (plan == NULL) {
        plan = "";
    }

    memset(&ref, 0, sizeof(ref));
    rec->pending = 1;                   /* held while submitting */

    switch (rec->step) {

    case KN_TENANT_S_TENANT:
        ref.api_version = KN_TENANT_API_VERSION;
        ref.resource = "novatenants";

        snprintf(buf, sizeof(buf), "%" PRId64, op->generation);
        obj = json_pack("{s:s, s:s, s:{s:s, s:{s:s}, s:{s:s, s:s}}, s:O}",
                        "apiVersion", KN_TENANT_API_VERSION,
                        "kind", "NovaTenant",
                        "metadata", "name", rec->name,
                        "annotations", KN_TENANT_GEN_ANNOT, buf,
                        "labels", KN_TENANT_LABEL, rec->name,
                        "app.kubernetes.io/managed-by",
                        KN_KUBE_FIELD_MANAGER,
                        "spec", spec);
        kn_tenant_submit(rec, &ref, obj, "NovaTenant");
        json_decref(obj);
        break;

    case KN_TENANT_S_NAMESPACES:
        ref.api_version = "v1";
        ref.resource = "namespaces";

        owner = kn_tenant_owner_references(rec->name, rec->uid);

        for (i = 0; i < 2; i++) {
            labels = json_pack("{s:s, s:s, s:s}", KN_TENANT_LABEL, rec->name,
                               KN_TENANT_TIER, plan,
                               "app.kubernetes.io/managed-by",
                               KN_KUBE_FIELD_MANAGER);
            obj = json_pack("{s:s, s:s, s:{s:s, s:o, s:O}}",
                            "apiVersion", "v1", "kind", "Namespace",
                            "metadata", "name", ns[i], "labels", labels,
                            "ownerReferences", owner);
            kn_tenant_submit(rec, &ref, obj, "Namespace");
            json_decref(obj);
        }

        json_decref(owner);
        break;

    case KN_TENANT_S_OBJECTS:
        for (i = 0; i < 2; i++) {
            kn_tenant_objects(rec, ns[i], spec);
        }
        kn_tenant_capsule(rec, spec);
        break;

    case KN_TENANT_S_WORKLOADS:
        nss[0] = ns[0];
        nss[1] = ns[1];

        if (kn_suspend_start(t->kube, t->log, nss, 2,
                             json_is_true(json_object_get(spec, "suspended")),
                             kn_tenant_workloads_done, rec, &rec->suspend)
            == KN_OK)
        {
            rec->pending++;

        } else {
            snprintf(rec->error, sizeof(rec->error), "cannot submit the "
                     "workloads of tenant \"%s\"", rec->name);
        }
        break;

    case KN_TENANT_S_STATUS:
        ref.api_version = KN_TENANT_API_VERSION;
        ref.resource = "novatenants";
        ref.subresource = "status";

        now = time(NULL);
        gmtime_r(&now, &tm);
        strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);

        status = json_pack("{s:I, s:I, s:s, s:b, s:[s,s], s:[{s:s, s:s, "
                           "s:s, s:s, s:I, s:s}]}",
                           "observedGeneration", (json_int_t) rec->kgen,
                           "appliedGeneration",
                           (json_int_t) op->generation,
                           "plan", plan,
                           "suspended",
                           json_is_true(json_object_get(spec, "suspended")),
                           "namespaces", ns[0], ns[1],
                           "conditions", "type", "Ready", "status", "True",
                           "reason", "Reconciled",
                           "message", "namespaces, quota, limits, network "
                           "policy and RBAC applied",
                           "observedGeneration", (json_int_t) rec->kgen,
                           "lastTransitionTime", buf);
        obj = json_pack("{s:s, s:s, s:{s:s}, s:o}",
                        "apiVersion", KN_TENANT_API_VERSION,
                        "kind", "NovaTenant", "metadata", "name", rec->name,
                        "status", status);
        kn_tenant_submit(rec, &ref, obj, "NovaTenant status");
        json_decref(obj);
        break;

    case KN_TENANT_S_DELETE:
        ref.api_version = KN_TENANT_API_VERSION;
        ref.resource = "novatenants";
        ref.name = rec->name;

        if (kn_kube_delete(t->kube, &ref, "Background", kn_tenant_step_done,
                           rec, NULL) == KN_OK)
        {
            rec->pending++;
        } else {
            snprintf(rec->error, sizeof(rec->error), "cannot submit the "
                     "deletion of NovaTenant \"%s\"", rec->name);
        }
        break;

    case KN_TENANT_S_WAIT:
        ref.api_version = "v1";
        ref.resource = "namespaces";
        rec->gone = 0;

        for (i = 0; i < 2; i++) {
            ref.name = ns[i];

            if (kn_kube_get(t->kube, &ref, kn_tenant_step_done, rec, NULL)
                == KN_OK)
            {
                rec->pending++;

            } else if (rec->error[0] == '\0') {
                snprintf(rec->error, sizeof(rec->error), "cannot submit a "
                         "get of namespace \"%s\"", ns[i]);
            }
        }
        break;
    }

    /* as if the submission itself were one more request answering */
    kn_tenant_step_done(NULL, rec);
}


static void
kn_tenant_submit(kn_tenant_rec_t *rec, const kn_kube_ref_t *ref, json_t *obj,
    const char *what)
{
    kn_rc  rc;

    if (obj == NULL) {
        rc = KN_ERROR;
    } else {
        rc = kn_kube_apply(rec->tenant->kube, ref, obj, kn_tenant_step_done,
                           rec, NULL);
    }

    if (rc == KN_OK) {
        rec->pending++;
        return;
    }

    if (rec->error[0] == '\0') {
        snprintf(rec->error, sizeof(rec->error), "cannot submit the %s of "
                 "tenant \"%s\"%s", what, rec->name,
                 rc == KN_AGAIN ? ": too many Kubernetes requests" : "");
    }
}


/* one request of the step answered (res NULL: the submission ended) */

static void
kn_tenant_step_done(const kn_kube_result_t *res, void *data)
{
    kn_tenant_rec_t  *rec = data;
    kn_tenant_t      *t = rec->tenant;
    json_t           *meta;
    const char       *uid;

    if (res != NULL) {
        switch (rec->step) {

        case KN_TENANT_S_DELETE:
            if (res->status == 404) {
                break;
            }
            goto check;

        case KN_TENANT_S_WAIT:
            if (res->status == 404) {
                rec->gone++;
                break;
            }
            goto check;

        case KN_TENANT_S_NAMESPACES:
        case KN_TENANT_S_OBJECTS:
            if (res->error == NULL && t->observe != NULL
                && json_is_object(res->body))
            {
                t->observe(t->observe_data, res->body);
            }
            goto check;

        case KN_TENANT_S_TENANT:
            if (res->error == NULL) {
                meta = json_object_get(res->body, "metadata");
                uid = json_string_value(json_object_get(meta, "uid"));
                if (uid != NULL && strlen(uid) < sizeof(rec->uid)) {
                    strcpy(rec->uid, uid);
                }
                rec->kgen = json_integer_value(json_object_get(meta,
                                                               "generation"));
                if (rec->uid[0] == '\0' && rec->error[0] == '\0') {
                    snprintf(rec->error, sizeof(rec->error), "NovaTenant "
                             "\"%s\": the apply answer has no uid",
                             rec->name);
                }
            }
            /* fall through */

        default:
        check:
            if (res->error != NULL && rec->error[0] == '\0') {
                snprintf(rec->error, sizeof(rec->error), "%s", res->error);
            }
        }
    }

    if (--rec->pending > 0) {
        return;
    }

    if (rec->error[0] != '\0') {
        kn_tenant_finish(rec, 0);
        return;
    }

    switch (rec->step) {

    case KN_TENANT_S_TENANT:
    case KN_TENANT_S_NAMESPACES:
    case KN_TENANT_S_OBJECTS:
        rec->step++;
        kn_tenant_next(rec);
        return;

    case KN_TENANT_S_WORKLOADS:
        if (rec->ops->resync) {
            /* the status says what the Manager's apply did: unchanged */
            kn_tenant_finish(rec, 1);
            return;
        }
        rec->step++;
        kn_tenant_next(rec);
        return;

    case KN_TENANT_S_STATUS:
        kn_tenant_finish(rec, 1);
        return;

    case KN_TENANT_S_DELETE:
        rec->step = KN_TENANT_S_WAIT;
        rec->deadline = kn_loop_now(t->loop) + t->delete_timeout_ms;
        kn_tenant_next(rec);
        return;

    case KN_TENANT_S_WAIT:
        if (rec->gone == 2) {
            kn_tenant_finish(rec, 1);
            return;
        }

        if (kn_loop_now(t->loop) >= rec->deadline) {
            snprintf(rec->error, sizeof(rec->error), "the namespaces of "
                     "tenant \"%s\" are still there after %" PRIu64 " ms",
                     rec->name, t->delete_timeout_ms);
            kn_tenant_finish(rec, 0);
            return;
        }

        if (kn_timer_add(t->loop, &rec->timer, KN_TENANT_POLL_MS) != KN_OK) {
            snprintf(rec->error, sizeof(rec->error), "no timer to wait for "
                     "the namespaces of tenant \"%s\"", rec->name);
            kn_tenant_finish(rec, 0);
        }
        return;
    }
}


static void
kn_tenant_poll(kn_timer_t *timer)
{
    kn_tenant_rec_t  *rec = timer->data;

    kn_tenant_next(rec);
}


static void
kn_tenant_workloads_done(const kn_kube_result_t *res, void *data)
{
    kn_tenant_rec_t  *rec = data;

    rec->suspend = NULL;                /* freed by kn_suspend */
    kn_tenant_step_done(res, rec);
}


/* the head operation ended: report it, start the next or drop the record */

static void
kn_tenant_finish(kn_tenant_rec_t *rec, int ok)
{
    kn_tenant_t          *t = rec->tenant;
    kn_tenant_op_t       *op = rec->ops;
    kn_tenant_rec_t     **p;
    kn_tenant_resync_pt   resynced;
    void                 *resync_data;
    int                   deleted, resync, again;
    int64_t               generation;
    char                  name[KN_APPLIER_NAME_MAX];

    deleted = (op->spec == NULL);
    resync = op->resync;
    generation = op->generation;
    resynced = op->resynced;
    resync_data = op->resync_data;

    if (ok) {
        kn_log(t->log, KN_LOG_INFO, "tenants: %s \"%s\" at generation "
               "%" PRId64, resync ? "resynced" : deleted ? "deleted"
               : "applied", rec->name, generation);
    } else {
        kn_log(t->log, KN_LOG_WARN, "tenants: cannot %s \"%s\" at "
               "generation %" PRId64 ": %s", resync ? "resync"
               : deleted ? "delete" : "apply", rec->name, generation,
               rec->error);
    }

    if (ok && !resync) {
        kn_tenant_remember(t, rec->name, generation, op->spec);
    }

    /*
     * A failure the Manager hears of at once (its sync state says why); it
     * would send the operation again only after a reconnect, so unless
     * newer work from the Manager is queued, it runs again here later
     * (resyncs queued behind it wait: they would apply an older spec).
     * A failed resync is drift correction's to try again.
     */
    again = !ok && !resync && !kn_tenant_newer_queued(op)
            && kn_tenant_retry_later(rec) == KN_OK;

    if (!again) {
        kn_tenant_drop_head(rec);
    }

    if (!resync) {
        kn_applier_finished(t->applier, KN_TENANT_KIND, rec->name,
                            generation, deleted, ok, ok ? NULL : rec->error);
    }

    if (ok && !resync) {
        kn_tenant_notify(t, rec->name, !deleted);
    }

    strcpy(name, rec->name);

    if (again) {
        return;
    }

    if (rec->ops != NULL) {
        kn_tenant_run(rec);

    } else {
        for (p = &t->recs; *p; p = &(*p)->next) {
            if (*p == rec) {
                *p = rec->next;
                break;
            }
        }

        kn_tenant_rec_free(rec);
    }

    /* last: the records are consistent if it queues more work */
    if (resync) {
        resynced(resync_data, name, ok);
    }
}


/* delays doubling from KN_TENANT_BACKOFF_MS to KN_TENANT_BACKOFF_MAX_MS */

static kn_rc
kn_tenant_retry_later(kn_tenant_rec_t *rec)
{
    uint64_t  delay;

    delay = KN_TENANT_BACKOFF_MAX_MS;

    if (rec->failures < 16
        && ((uint64_t) KN_TENANT_BACKOFF_MS << rec->failures) < delay)
    {
        delay = (uint64_t) KN_TENANT_BACKOFF_MS << rec->failures;
    }

    if (kn_timer_add(rec->tenant->loop, &rec->retry, delay) != KN_OK) {
        kn_log(rec->tenant->log, KN_LOG_WARN, "tenants: no timer left to "
               "try \"%s\" again: it waits for the Manager to send it "
               "again", rec->name);
        return KN_ERROR;
    }

    rec->failures++;

    kn_log(rec->tenant->log, KN_LOG_INFO, "tenants: \"%s\": trying again "
           "in %" PRIu64 " ms (failure %u)", rec->name, delay,
           rec->failures);

    return KN_OK;
}


static void
kn_tenant_retry(kn_timer_t *timer)
{
    kn_tenant_run(timer->data);
}


/* work from the Manager queued behind op (resyncs do not count) */

static int
kn_tenant_newer_queued(kn_tenant_op_t *op)
{
    for (op = op->next; op; op = op->next) {
        if (!op->resync) {
            return 1;
        }
    }

    return 0;
}


/* the head operation is over (reported, or superseded) */

static void
kn_tenant_drop_head(kn_tenant_rec_t *rec)
{
    kn_tenant_op_t  *op = rec->ops;

    rec->ops = op->next;
    if (rec->ops == NULL) {
        rec->last = &rec->ops;
    }

    json_decref(op->spec);
    free(op);
    rec->failures = 0;
}


static void
kn_tenant_rec_free(kn_tenant_rec_t *rec)
{
    kn_tenant_op_t  *op, *next;

    kn_timer_cancel(rec->tenant->loop, &rec->timer);
    kn_suspend_cancel(rec->suspend);
    kn_timer_cancel(rec->tenant->loop, &rec->retry);

    for (op = rec->ops; op; op = next) {
        next = op->next;
        json_decref(op->spec);
        free(op);
    }

    free(rec);
}


/* -- the objects of one namespace -------------------------------------- */


static void
kn_tenant_objects(kn_tenant_rec_t *rec, const char *ns, json_t *spec)
{
    char            owner_ns[KN_TENANT_NS_MAX], apps_ns[KN_TENANT_NS_MAX];
    json_t         *obj;
    kn_kube_ref_t   ref;
    size_t          i;
    static const struct { const char *name; const char *role;
                          const char *sa; }  rb[] = {
        { "kubenova-owner", "admin", "owner" },
        { "kubenova-readonly", "view", "readonly" }
    };

    snprintf(owner_ns, sizeof(owner_ns), "%s-owner", rec->name);
    snprintf(apps_ns, sizeof(apps_ns), "%s-apps", rec->name);

    memset(&ref, 0, sizeof(ref));

    ref.api_version = "v1";
    ref.resource = "resourcequotas";
    obj = json_pack("{s:s, s:s, s:o, s:{s:o}}", "apiVersion", "v1",
                    "kind", "ResourceQuota",
                    "metadata", kn_tenant_meta(rec, "kubenova-quota", ns),
                    "spec", "hard", kn_tenant_quota_hard(spec));
    kn_tenant_submit(rec, &ref, obj, "ResourceQuota");
    json_decref(obj);

    ref.resource = "limitranges";
    obj = json_pack("{s:s, s:s, s:o, s:o}", "apiVersion", "v1",
                    "kind", "LimitRange",
                    "metadata", kn_tenant_meta(rec, "kubenova-defaults", ns),
                    "spec", kn_tenant_limit_range_spec());
    kn_tenant_submit(rec, &ref, obj, "LimitRange");
    json_decref(obj);

    ref.api_version = "networking.k8s.io/v1";
    ref.resource = "networkpolicies";
    obj = json_pack("{s:s, s:s, s:o, s:o}",
                    "apiVersion", "networking.k8s.io/v1",
                    "kind", "NetworkPolicy",
                    "metadata", kn_tenant_meta(rec, "kubenova-default-deny",
                                               ns),
                    "spec", kn_tenant_network_policy_spec(rec->name));
    kn_tenant_submit(rec, &ref, obj, "NetworkPolicy");
    json_decref(obj);

    /* ServiceAccounts and RoleBindings */

    for (i = 0; i < KN_NELEMS(rb); i++) {
        ref.api_version = "v1";
        ref.resource = "serviceaccounts";
        obj = json_pack("{s:s, s:s, s:o}", "apiVersion", "v1",
                        "kind", "ServiceAccount",
                        "metadata", kn_tenant_meta(rec, rb[i].sa, ns));
        kn_tenant_submit(rec, &ref, obj, "ServiceAccount");
        json_decref(obj);

        ref.api_version = "rbac.authorization.k8s.io/v1";
        ref.resource = "rolebindings";
        obj = json_pack("{s:s, s:s, s:o, s:{s:s, s:s, s:s}, "
                        "s:[{s:s, s:s, s:s}, {s:s, s:s, s:s}]}",
                        "apiVersion", "rbac.authorization.k8s.io/v1",
                        "kind", "RoleBinding",
                        "metadata", kn_tenant_meta(rec, rb[i].name, ns),
                        "roleRef", "apiGroup", "rbac.authorization.k8s.io",
                        "kind", "ClusterRole", "name", rb[i].role,
                        "subjects",
                        "kind", "ServiceAccount", "name", rb[i].sa,
                        "namespace", owner_ns,
                        "kind", "ServiceAccount", "name", rb[i].sa,
                        "namespace", apps_ns);
        kn_tenant_submit(rec, &ref, obj, "RoleBinding");
        json_decref(obj);
    }
}


/* the Capsule Tenant and its namespaces, when Capsule is installed */

static void
kn_tenant_capsule(kn_tenant_rec_t *rec, json_t *spec)
{
    kn_rc  rc;

    rc = kn_capsule_apply(rec->tenant->capsule, rec->name, rec->uid, spec,
                          kn_tenant_step_done, rec);

    if (rc == KN_OK) {
        rec->pending++;

    } else if (rc != KN_DECLINED && rec->error[0] == '\0') {
        snprintf(rec->error, sizeof(rec->error), "cannot submit the Capsule "
                 "Tenant of tenant \"%s\"%s", rec->name,
                 rc == KN_AGAIN ? ": too many Kubernetes requests" : "");
    }
}


/* -- what isolates a tenant (also its Capsule Tenant's spec) ------------ */


/* ResourceQuota spec.hard: the plan and overrides the Manager sent */

json_t *
kn_tenant_quota_hard(json_t *spec)
{
    char         v[64];
    json_t      *hard, *quota;
    size_t       i;
    json_int_t   gpus;
    static const struct { const char *key; const char *names[2]; }  q[] = {
        { "cpu", { "requests.cpu", "limits.cpu" } },
        { "memory", { "requests.memory", "limits.memory" } },
        { "storage", { "requests.storage", NULL } },
        { "load_balancers", { "services.loadbalancers", NULL } },
        { "pods", { "pods", NULL } }
    };

    quota = json_object_get(spec, "quota");
    hard = json_object();
    if (hard == NULL) {
        return NULL;
    }

    for (i = 0; i < KN_NELEMS(q); i++) {
        if (!kn_tenant_qty(json_object_get(quota, q[i].key), v, sizeof(v))) {
            continue;
        }
        json_object_set_new(hard, q[i].names[0], json_string(v));
        if (q[i].names[1]) {
            json_object_set_new(hard, q[i].names[1], json_string(v));
        }
    }

    if (json_is_true(json_object_get(spec, "suspended"))) {
        json_object_set_new(hard, "pods", json_string("0"));
    }

    gpus = 0;
    if (kn_tenant_qty(json_object_get(quota, "gpus"), v, sizeof(v))) {
        gpus = strtoll(v, NULL, 10);
        if (gpus > 0 || strspn(v, "0") != strlen(v)) {
            json_object_set_new(hard, "requests.nvidia.com/gpu",
                                json_string(v));
        }
    }

    return hard;
}


/* LimitRange spec: container defaults */

json_t *
kn_tenant_limit_range_spec(void)
{
    return json_pack("{s:[{s:s, s:{s:s, s:s}, s:{s:s, s:s}}]}",
                     "limits", "type", "Container",
                     "default", "cpu", "500m", "memory", "512Mi",
                     "defaultRequest", "cpu", "100m", "memory", "128Mi");
}


/* NetworkPolicy spec: default deny, the tenant's namespaces and DNS */

json_t *
kn_tenant_network_policy_spec(const char *tenant)
{
    json_t  *tenant_ns, *np;

    tenant_ns = json_pack("{s:{s:{s:s}}}", "namespaceSelector",
                          "matchLabels", KN_TENANT_LABEL, tenant);

    np = json_pack("{s:{}, s:[s,s], s:[{s:[O]}], "
                   "s:[{s:[O]}, {s:[{s:{s:{s:s}}}], s:[{s:s, s:i}, "
                   "{s:s, s:i}]}]}",
                   "podSelector",
                   "policyTypes", "Ingress", "Egress",
                   "ingress", "from", tenant_ns,
                   "egress", "to", tenant_ns,
                   "to", "namespaceSelector", "matchLabels",
                   "kubernetes.io/metadata.name", "kube-system",
                   "ports", "protocol", "UDP", "port", 53,
                   "protocol", "TCP", "port", 53);
    json_decref(tenant_ns);

    return np;
}


/* ownerReferences: the NovaTenant, controller (garbage collection) */

json_t *
kn_tenant_owner_references(const char *tenant, const char *uid)
{
    return json_pack("[{s:s, s:s, s:s, s:s, s:b, s:b}]",
                     "apiVersion", KN_TENANT_API_VERSION,
                     "kind", "NovaTenant", "name", tenant, "uid", uid,
                     "controller", 1, "blockOwnerDeletion", 1);
}


static json_t *
kn_tenant_meta(kn_tenant_rec_t *rec, const char *name, const char *ns)
{
    return json_pack("{s:s, s:s, s:{s:s, s:s}}", "name", name,
                     "namespace", ns, "labels", KN_TENANT_LABEL, rec->name,
                     "app.kubernetes.io/managed-by", KN_KUBE_FIELD_MANAGER);
}


/* a quantity from the Manager: a string ("2Gi") or a number (20) */

static int
kn_tenant_qty(json_t *v, char *buf, size_t size)
{
    if (json_is_string(v) && json_string_length(v) > 0
        && json_string_length(v) < size)
    {
        strcpy(buf, json_string_value(v));
        return 1;
    }

    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return 1;
    }

    if (json_is_real(v) && json_real_value(v) >= 0) {
        snprintf(buf, size, "%g", json_real_value(v));
        return 1;
    }

    return 0;
}


/* -- preparing the cluster ---------------------------------------------- */


kn_rc
kn_tenant_start(kn_tenant_t *t, kn_tenant_ready_pt ready, void *data)
{
    t->ready = ready;
    t->ready_data = data;

    /* not a reason to wait: Capsule, found later, is caught up then */
    if (kn_capsule_start(t->capsule) != KN_OK) {
        kn_log(t->log, KN_LOG_WARN, "tenants: cannot watch for Capsule; "
               "tenants get no Capsule Tenant");
    }

    kn_tenant_start_run(t);
    return KN_OK;
}


static void
kn_tenant_start_timer(kn_timer_t *timer)
{
    kn_tenant_t    *t = timer->data;
    kn_kube_ref_t   ref;
    size_t          i;

    if (t->start_step == KN_TENANT_START_ESTABLISHED) {
        /* poll the CRDs again */
        memset(&ref, 0, sizeof(ref));
        ref.api_version = "apiextensions.k8s.io/v1";
        ref.resource = "customresourcedefinitions";
        t->established = 0;
        t->start_failed = 0;
        t->start_pending = 1;

        for (i = 0; i < KN_NELEMS(kn_tenant_crds); i++) {
            char  name[96];

            snprintf(name, sizeof(name), "%s." KN_TENANT_GROUP,
                     kn_tenant_crds[i][0]);
            ref.name = name;
            if (kn_kube_get(t->kube, &ref, kn_tenant_established_done, t,
                            NULL) == KN_OK)
            {
                t->start_pending++;
            } else {
                t->start_failed = 1;
            }
        }

        kn_tenant_established_done(NULL, t);
        return;
    }

    kn_tenant_start_run(t);
}


/* from the beginning: the version and the CRDs */

static void
kn_tenant_start_run(kn_tenant_t *t)
{
    json_t         *crd;
    kn_kube_ref_t   ref;
    size_t          i;

    t->start_step = KN_TENANT_START_CRDS;
    t->start_failed = 0;
    t->start_pending = 1;

    if (t->version[0] == '\0'
        && kn_kube_request(t->kube, "GET", "/version", NULL, NULL,
                           kn_tenant_version_done, t, NULL) == KN_OK)
    {
        t->start_pending++;
    }

    memset(&ref, 0, sizeof(ref));
    ref.api_version = "apiextensions.k8s.io/v1";
    ref.resource = "customresourcedefinitions";

    for (i = 0; i < KN_NELEMS(kn_tenant_crds); i++) {
        crd = kn_tenant_crd(i);

        if (crd != NULL
            && kn_kube_apply(t->kube, &ref, crd, kn_tenant_crd_done, t, NULL)
               == KN_OK)
        {
            t->start_pending++;
        } else {
            t->start_failed = 1;
        }

        json_decref(crd);
    }

    kn_tenant_crd_done(NULL, t);
}


static void
kn_tenant_start_fail(kn_tenant_t *t, const char *what,
    const kn_kube_result_t *res)
{
    t->start_failed = 1;
    kn_log(t->log, KN_LOG_WARN, "tenants: %s: %s", what,
           res && res->error ? res->error : "cannot submit the request");
}


static void
kn_tenant_version_done(const kn_kube_result_t *res, void *data)
{
    kn_tenant_t  *t = data;
    const char   *v;

    v = json_string_value(json_object_get(res->body, "gitVersion"));

    if (res->error == NULL && v != NULL && strlen(v) < sizeof(t->version)) {
        strcpy(t->version, v);
        kn_log(t->log, KN_LOG_INFO, "tenants: Kubernetes %s", v);
    } else {
        kn_log(t->log, KN_LOG_WARN, "tenants: GET /version: %s",
               res->error ? res->error : "no gitVersion");
    }

    /* not a reason to fail: the version is only reported */
    kn_tenant_crd_done(NULL, t);
}


static void
kn_tenant_crd_done(const kn_kube_result_t *res, void *data)
{
    kn_tenant_t  *t = data;

    if (res != NULL && res->error != NULL) {
        kn_tenant_start_fail(t, "applying the CRDs", res);
    }

    if (--t->start_pending > 0) {
        return;
    }

    if (t->start_failed) {
        kn_log(t->log, KN_LOG_WARN, "tenants: cannot prepare the cluster; "
               "trying again in %d ms", KN_TENANT_RETRY_MS);
        (void) kn_timer_add(t->loop, &t->start_timer, KN_TENANT_RETRY_MS);
        return;
    }

    kn_log(t->log, KN_LOG_INFO, "tenants: CRDs novatenants."
           KN_TENANT_GROUP " and novaclusterconfigs." KN_TENANT_GROUP
           " applied");

    t->start_step = KN_TENANT_START_ESTABLISHED;
    t->crd_deadline = kn_loop_now(t->loop) + KN_TENANT_CRD_WAIT_MS;
    kn_tenant_start_timer(&t->start_timer);
}


static void
kn_tenant_established_done(const kn_kube_result_t *res, void *data)
{
    kn_tenant_t  *t = data;
    kn_kube_ref_t ref;

    if (res != NULL) {
        if (res->error != NULL) {
            kn_tenant_start_fail(t, "reading the CRDs", res);

        } else if (kn_kube_condition_true(res->body, "Established")) {
            t->established++;
        }
    }

    if (--t->start_pending > 0) {
        return;
    }

    if (t->start_failed) {
        t->start_step = KN_TENANT_START_CRDS;
        (void) kn_timer_add(t->loop, &t->start_timer, KN_TENANT_RETRY_MS);
        return;
    }

    if (t->established < KN_NELEMS(kn_tenant_crds)) {
        if (kn_loop_now(t->loop) >= t->crd_deadline) {
            kn_log(t->log, KN_LOG_WARN, "tenants: the CRDs are not "
                   "Established after %d ms; starting again",
                   KN_TENANT_CRD_WAIT_MS);
            t->start_step = KN_TENANT_START_CRDS;
            (void) kn_timer_add(t->loop, &t->start_timer,
                                KN_TENANT_RETRY_MS);
            return;
        }

        (void) kn_timer_add(t->loop, &t->start_timer, 200);
        return;
    }

    /* what the cluster holds already */

    t->start_step = KN_TENANT_START_LIST;
    memset(&ref, 0, sizeof(ref));
    ref.api_version = KN_TENANT_API_VERSION;
    ref.resource = "novatenants";

    if (kn_kube_list(t->kube, &ref, NULL, kn_tenant_list_done, t, NULL)
        != KN_OK)
    {
        kn_tenant_start_fail(t, "listing the NovaTenants", NULL);
        t->start_step = KN_TENANT_START_CRDS;
        (void) kn_timer_add(t->loop, &t->start_timer, KN_TENANT_RETRY_MS);
    }
}


/*
 * A NovaTenant counts as applied at the Manager generation its status says
 * was applied completely, if that is the one its annotation asks for; one
 * whose reconciliation did not finish is left out, so the Manager sends it
 * again.
 */

static void
kn_tenant_list_done(const kn_kube_result_t *res, void *data)
{
    kn_tenant_t  *t = data;
    json_t       *item, *meta, *status;
    const char   *name, *annot;
    size_t        i, n;
    int64_t       gen, applied;

    if (res->error != NULL) {
        kn_tenant_start_fail(t, "listing the NovaTenants", res);
        t->start_step = KN_TENANT_START_CRDS;
        (void) kn_timer_add(t->loop, &t->start_timer, KN_TENANT_RETRY_MS);
        return;
    }

    n = 0;

    json_array_foreach(json_object_get(res->body, "items"), i, item) {
        meta = json_object_get(item, "metadata");
        status = json_object_get(item, "status");
        name = json_string_value(json_object_get(meta, "name"));
        annot = json_string_value(json_object_get(
                    json_object_get(meta, "annotations"),
                    KN_TENANT_GEN_ANNOT));

        if (name == NULL || annot == NULL) {
            continue;
        }

        gen = strtoll(annot, NULL, 10);
        applied = json_integer_value(json_object_get(status,
                                                     "appliedGeneration"));

        if (gen <= 0 || applied != gen
            || json_object_get(meta, "deletionTimestamp") != NULL)
        {
            kn_log(t->log, KN_LOG_INFO, "tenants: the cluster holds "
                   "NovaTenant \"%s\" at generation %s, not completely "
                   "applied: the Manager will send it again", name, annot);
            continue;
        }

        if (kn_applier_record(t->applier, KN_TENANT_KIND, name, gen)
            == KN_OK)
        {
            kn_tenant_remember(t, name, gen, json_object_get(item, "spec"));
            kn_log(t->log, KN_LOG_INFO, "tenants: the cluster holds "
                   "NovaTenant \"%s\" at generation %" PRId64 " already",
                   name, gen);
            kn_tenant_notify(t, name, 1);
            n++;
        }
    }

    kn_log(t->log, KN_LOG_INFO, "tenants: the cluster is prepared: %zu "
           "tenant(s) applied already", n);

    t->start_step = KN_TENANT_START_DONE;
    t->ready(t->ready_data, t->version);
}


static json_t *
kn_tenant_crd(size_t i)
{
    char  name[96], list[64];

    snprintf(name, sizeof(name), "%s." KN_TENANT_GROUP,
             kn_tenant_crds[i][0]);
    snprintf(list, sizeof(list), "%sList", kn_tenant_crds[i][1]);

    return json_pack("{s:s, s:s, s:{s:s, s:{s:s}}, s:{s:s, s:s, "
                     "s:{s:s, s:s, s:s, s:s}, s:[{s:s, s:b, s:b, "
                     "s:{s:{}}, s:{s:{s:s, s:b, s:{s:{s:s, s:b}, "
                     "s:{s:s, s:b}}}}}]}}",
                     "apiVersion", "apiextensions.k8s.io/v1",
                     "kind", "CustomResourceDefinition",
                     "metadata", "name", name, "labels",
                     "app.kubernetes.io/managed-by", KN_KUBE_FIELD_MANAGER,
                     "spec", "group", KN_TENANT_GROUP, "scope", "Cluster",
                     "names", "plural", kn_tenant_crds[i][0],
                     "singular", kn_tenant_crds[i][2],
                     "kind", kn_tenant_crds[i][1], "listKind", list,
                     "versions", "name", "v1alpha1", "served", 1,
                     "storage", 1,
                     "subresources", "status",
                     "schema", "openAPIV3Schema", "type", "object",
                     "x-kubernetes-preserve-unknown-fields", 1,
                     "properties",
                     "spec", "type", "object",
                     "x-kubernetes-preserve-unknown-fields", 1,
                     "status", "type", "object",
                     "x-kubernetes-preserve-unknown-fields", 1);
}
