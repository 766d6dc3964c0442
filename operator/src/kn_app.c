/*
 * The application reconciler (see kn_app.h).  Each application with work
 * pending has a record holding a queue of operations; the head is in
 * progress as a chain of steps, one Kubernetes request each.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kn_app.h"
#include "kn_tenant.h"
#include "ngx_kubenova_yaml.h"

#include "kn_app_crd.h"         /* generated: kn_app_crd_yaml */


#define KN_APP_ERROR_MAX        KN_APPLIER_ERROR_MAX
#define KN_APP_NS_MAX           (KN_APPLIER_NAME_MAX + 8)
#define KN_APP_POLL_MS          500
#define KN_APP_RETRY_MS         2000
#define KN_APP_BACKOFF_MS       1000        /* a failed operation, again */
#define KN_APP_BACKOFF_MAX_MS   30000
#define KN_APP_CRD_WAIT_MS      30000
#define KN_APP_DELETE_MS        60000
#define KN_APP_GEN_ANNOT        "kubenova.io/generation"


typedef struct kn_app_op_s   kn_app_op_t;
typedef struct kn_app_rec_s  kn_app_rec_t;

struct kn_app_op_s {
    kn_app_op_t  *next;
    int64_t       generation;
    json_t       *doc;                  /* NULL: a deletion */
};


typedef enum {
    KN_APP_S_TENANT = 0,                /* GET <t>-apps: is it applied? */
    KN_APP_S_APPLY,
    KN_APP_S_DELETE,
    KN_APP_S_WAIT                       /* GET until 404 */
} kn_app_step_e;


struct kn_app_rec_s {
    kn_app_rec_t   *next;
    kn_app_t       *app;
    kn_app_op_t    *ops;                /* head: in progress */
    kn_app_op_t   **last;
    kn_app_step_e   step;
    uint64_t        deadline;
    kn_timer_t      timer;
    kn_timer_t      retry;              /* set: the head failed, runs again */
    unsigned        failures;
    kn_kube_req_t  *req;
    char            ns[KN_APP_NS_MAX];
    char            tenant[KN_APPLIER_NAME_MAX];
    const char     *short_name;         /* in name, after the "/" */
    char            error[KN_APP_ERROR_MAX];
    char            name[KN_APPLIER_NAME_MAX];
};


typedef enum {
    KN_APP_START_GET = 0,
    KN_APP_START_ESTABLISHED,
    KN_APP_START_LIST,
    KN_APP_START_DONE
} kn_app_start_e;


struct kn_app_s {
    kn_loop_t        *loop;
    const kn_log_t   *log;
    kn_kube_t        *kube;
    kn_applier_t     *applier;
    kn_app_rec_t     *recs;
    uint64_t          delete_timeout_ms;

    kn_app_ready_pt   ready;
    void             *ready_data;
    kn_app_start_e    start_step;
    uint64_t          crd_deadline;
    kn_timer_t        start_timer;
    kn_kube_req_t    *start_req;
};


static kn_rc kn_app_apply(void *data, const char *name, int64_t generation,
    json_t *spec);
static kn_rc kn_app_delete(void *data, const char *name, int64_t generation);
static kn_rc kn_app_enqueue(kn_app_t *a, const char *name,
    int64_t generation, json_t *doc);
static kn_app_rec_t *kn_app_find(kn_app_t *a, const char *name);
static void kn_app_run(kn_app_rec_t *rec);
static void kn_app_next(kn_app_rec_t *rec);
static void kn_app_step_done(const kn_kube_result_t *res, void *data);
static void kn_app_finish(kn_app_rec_t *rec, int ok);
static void kn_app_poll(kn_timer_t *timer);
static void kn_app_retry(kn_timer_t *timer);
static void kn_app_drop_head(kn_app_rec_t *rec);
static void kn_app_rec_free(kn_app_rec_t *rec);
static json_t *kn_app_object(kn_app_rec_t *rec, json_t *doc,
    int64_t generation);

static void kn_app_start_run(kn_timer_t *timer);
static void kn_app_start_again(kn_app_t *a, const char *what,
    const kn_kube_result_t *res);
static void kn_app_crd_get_done(const kn_kube_result_t *res, void *data);
static void kn_app_crd_done(const kn_kube_result_t *res, void *data);
static void kn_app_list_done(const kn_kube_result_t *res, void *data);


kn_rc
kn_app_create(kn_loop_t *loop, const kn_log_t *log, kn_kube_t *kube,
    kn_applier_t *applier, kn_app_t **out)
{
    kn_app_t              *a;
    kn_applier_backend_t   backend;

    a = calloc(1, sizeof(kn_app_t));
    if (a == NULL) {
        kn_log(log, KN_LOG_ERROR, "apps: out of memory");
        return KN_ERROR;
    }

    a->loop = loop;
    a->log = log;
    a->kube = kube;
    a->applier = applier;
    a->delete_timeout_ms = KN_APP_DELETE_MS;
    kn_timer_init(&a->start_timer, kn_app_start_run, a);

    backend.apply = kn_app_apply;
    backend.delete_ = kn_app_delete;
    backend.data = a;

    if (kn_applier_set_backend(applier, KN_APP_KIND, &backend) != KN_OK) {
        free(a);
        return KN_ERROR;
    }

    *out = a;
    return KN_OK;
}


void
kn_app_destroy(kn_app_t *a)
{
    kn_app_rec_t  *rec, *next;

    if (a == NULL) {
        return;
    }

    kn_timer_cancel(a->loop, &a->start_timer);
    kn_kube_cancel(a->start_req);

    for (rec = a->recs; rec; rec = next) {
        next = rec->next;
        kn_app_rec_free(rec);
    }

    free(a);
}


void
kn_app_set_delete_timeout(kn_app_t *a, uint64_t ms)
{
    a->delete_timeout_ms = ms;
}


/* -- the applier's backend ------------------------------------------------ */


static kn_rc
kn_app_apply(void *data, const char *name, int64_t generation, json_t *spec)
{
    return kn_app_enqueue(data, name, generation, spec);
}


static kn_rc
kn_app_delete(void *data, const char *name, int64_t generation)
{
    return kn_app_enqueue(data, name, generation, NULL);
}


static kn_rc
kn_app_enqueue(kn_app_t *a, const char *name, int64_t generation,
    json_t *doc)
{
    const char    *slash;
    kn_app_op_t   *op, *o;
    kn_app_rec_t  *rec;

    rec = kn_app_find(a, name);

    if (rec != NULL) {
        /* the same work queued already (a resend after a reconnect) */
        for (o = rec->ops; o; o = o->next) {
            if (o->next == NULL && o->generation == generation
                && (o->doc == NULL) == (doc == NULL))
            {
                return KN_OK;
            }
        }
    }

    op = calloc(1, sizeof(kn_app_op_t));
    if (op == NULL) {
        kn_log(a->log, KN_LOG_ERROR, "apps: out of memory");
        return KN_ERROR;
    }

    op->generation = generation;
    op->doc = doc ? json_incref(doc) : NULL;

    if (rec == NULL) {
        rec = calloc(1, sizeof(kn_app_rec_t));
        if (rec == NULL) {
            json_decref(op->doc);
            free(op);
            kn_log(a->log, KN_LOG_ERROR, "apps: out of memory");
            return KN_ERROR;
        }

        rec->app = a;
        snprintf(rec->name, sizeof(rec->name), "%s", name);
        rec->last = &rec->ops;
        kn_timer_init(&rec->timer, kn_app_poll, rec);
        kn_timer_init(&rec->retry, kn_app_retry, rec);

        /* "<tenant>/<app>"; anything else fails when it runs */
        slash = strchr(rec->name, '/');
        if (slash != NULL && slash != rec->name
            && (size_t) (slash - rec->name) < sizeof(rec->tenant))
        {
            memcpy(rec->tenant, rec->name, slash - rec->name);
            rec->tenant[slash - rec->name] = '\0';
            rec->short_name = slash + 1;
            snprintf(rec->ns, sizeof(rec->ns), "%s-apps", rec->tenant);
        }

        rec->next = a->recs;
        a->recs = rec;
    }

    *rec->last = op;
    rec->last = &op->next;

    if (kn_timer_is_set(&rec->retry)) {
        /* the failed operation waiting to run again is superseded */
        kn_timer_cancel(a->loop, &rec->retry);
        kn_app_drop_head(rec);
        kn_app_run(rec);

    } else if (rec->ops == op) {
        kn_app_run(rec);
    }

    return KN_OK;
}


static kn_app_rec_t *
kn_app_find(kn_app_t *a, const char *name)
{
    kn_app_rec_t  *rec;

    for (rec = a->recs; rec; rec = rec->next) {
        if (strcmp(rec->name, name) == 0) {
            return rec;
        }
    }

    return NULL;
}


static void
kn_app_run(kn_app_rec_t *rec)
{
    kn_app_op_t  *op = rec->ops;

    rec->error[0] = '\0';

    kn_log(rec->app->log, KN_LOG_INFO, "apps: %s \"%s\" at generation "
           "%" PRId64, op->doc ? "applying" : "deleting", rec->name,
           op->generation);

    if (rec->short_name == NULL || rec->short_name[0] == '\0'
        || strchr(rec->short_name, '/') != NULL)
    {
        snprintf(rec->error, sizeof(rec->error), "an Application's name "
                 "must be \"<tenant>/<app>\", not \"%s\"", rec->name);
        kn_app_finish(rec, 0);
        return;
    }

    if (op->doc != NULL && !json_is_object(json_object_get(op->doc, "spec")))
    {
        snprintf(rec->error, sizeof(rec->error), "Application \"%s\" has "
                 "no spec object", rec->name);
        kn_app_finish(rec, 0);
        return;
    }

    rec->step = op->doc ? KN_APP_S_TENANT : KN_APP_S_DELETE;
    kn_app_next(rec);
}


/* submit the request of rec->step */

static void
kn_app_next(kn_app_rec_t *rec)
{
    json_t         *obj;
    kn_rc           rc;
    kn_app_t       *a = rec->app;
    kn_kube_ref_t   ref;

    memset(&ref, 0, sizeof(ref));
    ref.api_version = KN_APP_API_VERSION;
    ref.resource = "applications";
    ref.namespace = rec->ns;
    ref.name = rec->short_name;

    switch (rec->step) {

    case KN_APP_S_TENANT:
        ref.api_version = "v1";
        ref.resource = "namespaces";
        ref.namespace = NULL;
        ref.name = rec->ns;
        rc = kn_kube_get(a->kube, &ref, kn_app_step_done, rec, &rec->req);
        break;

    case KN_APP_S_APPLY:
        obj = kn_app_object(rec, rec->ops->doc, rec->ops->generation);
        if (obj == NULL) {
            snprintf(rec->error, sizeof(rec->error), "out of memory");
            kn_app_finish(rec, 0);
            return;
        }
        rc = kn_kube_apply(a->kube, &ref, obj, kn_app_step_done, rec,
                           &rec->req);
        json_decref(obj);
        break;

    case KN_APP_S_DELETE:
        rc = kn_kube_delete(a->kube, &ref, "Background", kn_app_step_done,
                            rec, &rec->req);
        break;

    default: /* KN_APP_S_WAIT */
        rc = kn_kube_get(a->kube, &ref, kn_app_step_done, rec, &rec->req);
        break;
    }

    if (rc != KN_OK) {
        rec->req = NULL;
        snprintf(rec->error, sizeof(rec->error), "cannot send the request "
                 "(too many at once, or invalid)");
        kn_app_finish(rec, 0);
    }
}


static void
kn_app_step_done(const kn_kube_result_t *res, void *data)
{
    kn_app_rec_t  *rec = data;
    kn_app_t      *a = rec->app;

    rec->req = NULL;

    switch (rec->step) {

    case KN_APP_S_TENANT:
        if (res->status == 404) {
            snprintf(rec->error, sizeof(rec->error), "tenant \"%s\" is not "
                     "applied in this cluster (no namespace \"%s\")",
                     rec->tenant, rec->ns);
            kn_app_finish(rec, 0);
            return;
        }
        if (res->error != NULL) {
            break;
        }
        rec->step = KN_APP_S_APPLY;
        kn_app_next(rec);
        return;

    case KN_APP_S_APPLY:
        if (res->error != NULL) {
            break;
        }
        kn_app_finish(rec, 1);
        return;

    case KN_APP_S_DELETE:
        if (res->error != NULL && res->status != 404) {
            break;
        }
        rec->step = KN_APP_S_WAIT;
        rec->deadline = kn_loop_now(a->loop) + a->delete_timeout_ms;
        /* a 404 is gone already */
        /* fall through */

    case KN_APP_S_WAIT:
        if (res->status == 404) {
            kn_app_finish(rec, 1);
            return;
        }
        if (res->error != NULL) {
            break;
        }
        if (kn_loop_now(a->loop) >= rec->deadline) {
            snprintf(rec->error, sizeof(rec->error), "Application \"%s\" "
                     "is still in namespace \"%s\" after %" PRIu64 " ms",
                     rec->short_name, rec->ns, a->delete_timeout_ms);
            kn_app_finish(rec, 0);
            return;
        }
        if (kn_timer_add(a->loop, &rec->timer, KN_APP_POLL_MS) != KN_OK) {
            snprintf(rec->error, sizeof(rec->error), "no timer to wait for "
                     "Application \"%s\" to go", rec->name);
            kn_app_finish(rec, 0);
        }
        return;
    }

    snprintf(rec->error, sizeof(rec->error), "%s", res->error);
    kn_app_finish(rec, 0);
}


static void
kn_app_poll(kn_timer_t *timer)
{
    kn_app_rec_t  *rec = timer->data;

    rec->step = KN_APP_S_WAIT;
    kn_app_next(rec);
}


/* the head operation ended: report it, start the next or drop the record */

static void
kn_app_finish(kn_app_rec_t *rec, int ok)
{
    kn_app_t       *a = rec->app;
    kn_app_op_t    *op = rec->ops;
    kn_app_rec_t  **p;
    int             deleted, again;
    int64_t         generation;
    uint64_t        delay;

    deleted = (op->doc == NULL);
    generation = op->generation;

    if (ok) {
        kn_log(a->log, KN_LOG_INFO, "apps: %s \"%s\" at generation "
               "%" PRId64, deleted ? "deleted" : "applied", rec->name,
               generation);
    } else {
        kn_log(a->log, KN_LOG_WARN, "apps: cannot %s \"%s\" at generation "
               "%" PRId64 ": %s", deleted ? "delete" : "apply", rec->name,
               generation, rec->error);
    }

    /*
     * A failure the Manager hears of at once; it would send the operation
     * again only after a reconnect, so unless newer work is queued, it
     * runs again here later, backing off.
     */
    again = 0;

    if (!ok && op->next == NULL) {
        delay = KN_APP_BACKOFF_MAX_MS;
        if (rec->failures < 16
            && ((uint64_t) KN_APP_BACKOFF_MS << rec->failures) < delay)
        {
            delay = (uint64_t) KN_APP_BACKOFF_MS << rec->failures;
        }

        if (kn_timer_add(a->loop, &rec->retry, delay) == KN_OK) {
            rec->failures++;
            again = 1;
            kn_log(a->log, KN_LOG_INFO, "apps: \"%s\": trying again in "
                   "%" PRIu64 " ms (failure %u)", rec->name, delay,
                   rec->failures);
        }
    }

    if (!again) {
        kn_app_drop_head(rec);
    }

    kn_applier_finished(a->applier, KN_APP_KIND, rec->name, generation,
                        deleted, ok, ok ? NULL : rec->error);

    if (again) {
        return;
    }

    if (rec->ops != NULL) {
        kn_app_run(rec);
        return;
    }

    for (p = &a->recs; *p; p = &(*p)->next) {
        if (*p == rec) {
            *p = rec->next;
            break;
        }
    }

    kn_app_rec_free(rec);
}


static void
kn_app_retry(kn_timer_t *timer)
{
    kn_app_run(timer->data);
}


static void
kn_app_drop_head(kn_app_rec_t *rec)
{
    kn_app_op_t  *op = rec->ops;

    rec->ops = op->next;
    if (rec->ops == NULL) {
        rec->last = &rec->ops;
    }

    json_decref(op->doc);
    free(op);
    rec->failures = 0;
}


static void
kn_app_rec_free(kn_app_rec_t *rec)
{
    kn_app_op_t  *op, *next;

    kn_timer_cancel(rec->app->loop, &rec->timer);
    kn_timer_cancel(rec->app->loop, &rec->retry);
    kn_kube_cancel(rec->req);

    for (op = rec->ops; op; op = next) {
        next = op->next;
        json_decref(op->doc);
        free(op);
    }

    free(rec);
}


/*
 * What is applied: the document's spec, its labels and annotations, in
 * the tenant's namespace whatever the document says, with our label and
 * the Manager generation.  Nothing else of its metadata (a resourceVersion
 * or uid would make the apply fail) and no status (not ours).
 */

static json_t *
kn_app_object(kn_app_rec_t *rec, json_t *doc, int64_t generation)
{
    char     gen[32];
    json_t  *meta, *labels, *annots, *obj;

    meta = json_object_get(doc, "metadata");

    labels = json_is_object(json_object_get(meta, "labels"))
             ? json_deep_copy(json_object_get(meta, "labels"))
             : json_object();
    annots = json_is_object(json_object_get(meta, "annotations"))
             ? json_deep_copy(json_object_get(meta, "annotations"))
             : json_object();

    snprintf(gen, sizeof(gen), "%" PRId64, generation);

    if (labels == NULL || annots == NULL
        || json_object_set_new(labels, KN_TENANT_LABEL,
                               json_string(rec->tenant)) != 0
        || json_object_set_new(annots, KN_APP_GEN_ANNOT,
                               json_string(gen)) != 0)
    {
        json_decref(labels);
        json_decref(annots);
        return NULL;
    }

    obj = json_pack("{s:s, s:s, s:{s:s, s:s, s:o, s:o}, s:O}",
                    "apiVersion", KN_APP_API_VERSION,
                    "kind", KN_APP_KIND,
                    "metadata", "name", rec->short_name,
                    "namespace", rec->ns,
                    "labels", labels, "annotations", annots,
                    "spec", json_object_get(doc, "spec"));

    return obj;
}


/* -- preparing the cluster ---------------------------------------------- */


kn_rc
kn_app_start(kn_app_t *a, kn_app_ready_pt ready, void *data)
{
    a->ready = ready;
    a->ready_data = data;
    a->start_step = KN_APP_START_GET;

    kn_app_start_run(&a->start_timer);
    return KN_OK;
}


static void
kn_app_start_run(kn_timer_t *timer)
{
    kn_app_t        *a = timer->data;
    kn_kube_ref_t    ref;
    kn_kube_list_opts_t  lo;
    kn_rc            rc;

    memset(&ref, 0, sizeof(ref));

    if (a->start_step == KN_APP_START_LIST) {
        ref.api_version = KN_APP_API_VERSION;
        ref.resource = "applications";
        memset(&lo, 0, sizeof(lo));
        lo.label_selector = KN_TENANT_LABEL;
        rc = kn_kube_list(a->kube, &ref, &lo, kn_app_list_done, a,
                          &a->start_req);

    } else {
        ref.api_version = "apiextensions.k8s.io/v1";
        ref.resource = "customresourcedefinitions";
        ref.name = KN_APP_CRD;
        rc = kn_kube_get(a->kube, &ref, kn_app_crd_get_done, a,
                         &a->start_req);
    }

    if (rc != KN_OK) {
        a->start_req = NULL;
        kn_app_start_again(a, "sending a request", NULL);
    }
}


static void
kn_app_start_again(kn_app_t *a, const char *what, const kn_kube_result_t *res)
{
    kn_log(a->log, KN_LOG_WARN, "apps: %s: %s; trying again in %d ms", what,
           res && res->error ? res->error : "failed", KN_APP_RETRY_MS);

    if (a->start_step != KN_APP_START_LIST) {
        a->start_step = KN_APP_START_GET;
    }

    (void) kn_timer_add(a->loop, &a->start_timer, KN_APP_RETRY_MS);
}


static void
kn_app_crd_get_done(const kn_kube_result_t *res, void *data)
{
    char            err[256];
    json_t         *crd;
    kn_app_t       *a = data;
    kn_kube_ref_t   ref;

    a->start_req = NULL;

    if (res->status == 404 && a->start_step == KN_APP_START_GET) {
        /* no KubeVela: ours */
        crd = ngx_kubenova_yaml_to_json((const unsigned char *)
                                        kn_app_crd_yaml,
                                        sizeof(kn_app_crd_yaml) - 1,
                                        err, sizeof(err));
        if (crd == NULL) {
            kn_log(a->log, KN_LOG_ERROR, "apps: the built-in Application "
                   "CRD is invalid: %s", err);
            kn_app_start_again(a, "installing the Application CRD", NULL);
            return;
        }

        memset(&ref, 0, sizeof(ref));
        ref.api_version = "apiextensions.k8s.io/v1";
        ref.resource = "customresourcedefinitions";

        if (kn_kube_apply(a->kube, &ref, crd, kn_app_crd_done, a,
                          &a->start_req) != KN_OK)
        {
            a->start_req = NULL;
            kn_app_start_again(a, "installing the Application CRD", NULL);
        }

        json_decref(crd);
        return;
    }

    if (res->error != NULL) {
        kn_app_start_again(a, "reading the Application CRD", res);
        return;
    }

    if (!kn_kube_condition_true(res->body, "Established")) {
        if (a->start_step != KN_APP_START_ESTABLISHED) {
            a->start_step = KN_APP_START_ESTABLISHED;
            a->crd_deadline = kn_loop_now(a->loop) + KN_APP_CRD_WAIT_MS;

        } else if (kn_loop_now(a->loop) >= a->crd_deadline) {
            kn_app_start_again(a, "waiting for the Application CRD",
                               NULL);
            return;
        }

        (void) kn_timer_add(a->loop, &a->start_timer, 200);
        return;
    }

    a->start_step = KN_APP_START_LIST;
    kn_app_start_run(&a->start_timer);
}


static void
kn_app_crd_done(const kn_kube_result_t *res, void *data)
{
    kn_app_t  *a = data;

    a->start_req = NULL;

    if (res->error != NULL) {
        kn_app_start_again(a, "installing the Application CRD", res);
        return;
    }

    kn_log(a->log, KN_LOG_INFO, "apps: no Application CRD in the cluster: "
           "installed " KN_APP_CRD);

    a->start_step = KN_APP_START_ESTABLISHED;
    a->crd_deadline = kn_loop_now(a->loop) + KN_APP_CRD_WAIT_MS;
    kn_app_start_run(&a->start_timer);
}


/*
 * An Application counts as applied at the Manager generation of its
 * annotation, if it lives in its tenant's namespace and is not being
 * deleted; any other is left out, so the Manager sends it again.
 */

static void
kn_app_list_done(const kn_kube_result_t *res, void *data)
{
    char         name[KN_APPLIER_NAME_MAX], ns[KN_APP_NS_MAX];
    json_t      *item, *meta;
    kn_app_t    *a = data;
    const char  *app, *tenant, *annot, *in;
    size_t       i, n;
    int64_t      gen;

    a->start_req = NULL;

    if (res->error != NULL) {
        kn_app_start_again(a, "listing the Applications", res);
        return;
    }

    n = 0;

    json_array_foreach(json_object_get(res->body, "items"), i, item) {
        meta = json_object_get(item, "metadata");
        app = json_string_value(json_object_get(meta, "name"));
        in = json_string_value(json_object_get(meta, "namespace"));
        tenant = json_string_value(json_object_get(
                     json_object_get(meta, "labels"), KN_TENANT_LABEL));
        annot = json_string_value(json_object_get(
                    json_object_get(meta, "annotations"), KN_APP_GEN_ANNOT));

        if (app == NULL || in == NULL || tenant == NULL || annot == NULL
            || json_object_get(meta, "deletionTimestamp") != NULL)
        {
            continue;
        }

        gen = strtoll(annot, NULL, 10);
        snprintf(ns, sizeof(ns), "%s-apps", tenant);

        if (gen <= 0 || strcmp(ns, in) != 0
            || (size_t) snprintf(name, sizeof(name), "%s/%s", tenant, app)
               >= sizeof(name))
        {
            continue;
        }

        if (kn_applier_record(a->applier, KN_APP_KIND, name, gen) == KN_OK)
        {
            n++;
        }
    }

    kn_log(a->log, KN_LOG_INFO, "apps: %zu Application(s) applied already",
           n);

    a->start_step = KN_APP_START_DONE;
    a->ready(a->ready_data);
}
