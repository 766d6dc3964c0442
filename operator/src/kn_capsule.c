/*
 * Capsule Tenants (see kn_capsule.h).  One job per tenant applies its
 * Capsule Tenant, then joins its two namespaces, one request at a time;
 * jobs come from the reconciler (kn_capsule_apply) or from the catch-up
 * after Capsule appears (the sweep), which runs at most
 * KN_CAPSULE_SWEEP_PARALLEL of them at once.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kn_capsule.h"
#include "kn_tenant.h"
#include "kn_watch.h"


#define KN_CAPSULE_NAME_MAX        254          /* a DNS subdomain, NUL */
#define KN_CAPSULE_UID_MAX         64
#define KN_CAPSULE_ERROR_MAX       512
#define KN_CAPSULE_PATH_MAX        1024
#define KN_CAPSULE_NAMESPACES      2            /* <t>-owner, <t>-apps */
#define KN_CAPSULE_SWEEP_PARALLEL  16
#define KN_CAPSULE_RETRY_MIN_MS    2000
#define KN_CAPSULE_RETRY_MAX_MS    60000


typedef struct kn_capsule_job_s  kn_capsule_job_t;

struct kn_capsule_job_s {
    kn_capsule_job_t   *prev;               /* capsule->jobs */
    kn_capsule_job_t   *next;
    kn_capsule_t       *capsule;
    kn_kube_req_t      *req;                /* the request in flight */
    unsigned            step;               /* 0: the Capsule Tenant; then
                                               the namespaces, one each */
    unsigned            sweep:1;            /* the catch-up's, not the
                                               reconciler's */
    json_t             *spec;
    kn_kube_done_pt     done;
    void               *data;
    char                name[KN_CAPSULE_NAME_MAX];
    char                uid[KN_CAPSULE_UID_MAX];          /* NovaTenant */
    char                tenant_uid[KN_CAPSULE_UID_MAX];   /* Capsule's */
};


struct kn_capsule_s {
    kn_loop_t          *loop;
    const kn_log_t     *log;
    kn_kube_t          *kube;
    kn_watch_t         *watch;
    kn_capsule_job_t   *jobs;
    unsigned            present:1;
    unsigned            synced:1;           /* the watch listed once */

    /* the catch-up after Capsule appears */
    kn_kube_req_t      *sweep_list;
    json_t             *sweep_items;        /* the NovaTenants of the pass */
    size_t              sweep_next;         /* the next item to look at */
    unsigned            sweep_running;      /* its jobs in flight */
    unsigned            sweep_started;      /* jobs of this pass */
    unsigned            sweep_failed;
    json_t             *swept;              /* name -> {uid, spec} applied */
    uint64_t            sweep_backoff_ms;
    kn_timer_t          sweep_timer;
};


static void kn_capsule_crd_event(kn_watch_t *watch, kn_watch_event_e ev,
    json_t *obj, void *data);
static int kn_capsule_crd_usable(json_t *crd);
static void kn_capsule_set_present(kn_capsule_t *c, int present);
static kn_rc kn_capsule_job_start(kn_capsule_t *c, const char *name,
    const char *uid, json_t *spec, int sweep, kn_kube_done_pt done,
    void *data);
static kn_rc kn_capsule_job_submit(kn_capsule_job_t *job);
static void kn_capsule_job_done(const kn_kube_result_t *res, void *data);
static void kn_capsule_job_finish(kn_capsule_job_t *job, long status,
    const char *error);
static void kn_capsule_job_unlink(kn_capsule_job_t *job);
static void kn_capsule_job_free(kn_capsule_job_t *job);
static json_t *kn_capsule_tenant(kn_capsule_job_t *job);
static void kn_capsule_sweep_timer(kn_timer_t *timer);
static void kn_capsule_sweep_listed(const kn_kube_result_t *res,
    void *data);
static void kn_capsule_sweep_more(kn_capsule_t *c);
static void kn_capsule_sweep_result(kn_capsule_job_t *job,
    const char *error);
static void kn_capsule_sweep_retry(kn_capsule_t *c);
static void kn_capsule_sweep_stop(kn_capsule_t *c);


kn_rc
kn_capsule_create(kn_loop_t *loop, const kn_log_t *log, kn_kube_t *kube,
    kn_capsule_t **out)
{
    kn_capsule_t  *c;

    c = calloc(1, sizeof(kn_capsule_t));
    if (c == NULL) {
        kn_log(log, KN_LOG_ERROR, "capsule: out of memory");
        return KN_ERROR;
    }

    c->loop = loop;
    c->log = log;
    c->kube = kube;
    c->sweep_backoff_ms = KN_CAPSULE_RETRY_MIN_MS;
    kn_timer_init(&c->sweep_timer, kn_capsule_sweep_timer, c);

    *out = c;
    return KN_OK;
}


void
kn_capsule_destroy(kn_capsule_t *c)
{
    if (c == NULL) {
        return;
    }

    kn_watch_stop(c->watch);
    kn_capsule_sweep_stop(c);

    while (c->jobs != NULL) {
        kn_capsule_job_free(c->jobs);
    }

    free(c);
}


int
kn_capsule_present(kn_capsule_t *c)
{
    return c->present;
}


/* -- is Capsule installed? ------------------------------------------------ */


kn_rc
kn_capsule_start(kn_capsule_t *c)
{
    kn_kube_ref_t    ref;
    kn_watch_opts_t  opts;

    if (c->watch != NULL) {
        return KN_OK;
    }

    memset(&ref, 0, sizeof(ref));
    ref.api_version = "apiextensions.k8s.io/v1";
    ref.resource = "customresourcedefinitions";

    /* by name: what RBAC grants (resourceNames), and all that matters */
    memset(&opts, 0, sizeof(opts));
    opts.field_selector = "metadata.name=" KN_CAPSULE_CRD;

    return kn_watch_start(c->kube, &ref, &opts, kn_capsule_crd_event, c,
                          &c->watch);
}


static void
kn_capsule_crd_event(kn_watch_t *watch, kn_watch_event_e ev, json_t *obj,
    void *data)
{
    kn_capsule_t  *c = data;

    switch (ev) {

    case KN_WATCH_ADDED:
    case KN_WATCH_MODIFIED:
        kn_capsule_set_present(c, kn_capsule_crd_usable(obj));
        break;

    case KN_WATCH_DELETED:
        kn_capsule_set_present(c, 0);
        break;

    case KN_WATCH_SYNCED:
        if (!c->synced) {
            c->synced = 1;
            if (!c->present) {
                kn_log(c->log, KN_LOG_INFO, "capsule: CRD " KN_CAPSULE_CRD
                       " is not installed: tenants get the native objects "
                       "only");
            }
        }
        break;

    case KN_WATCH_ERROR:
        kn_log(c->log, KN_LOG_WARN, "capsule: watching CRD " KN_CAPSULE_CRD
               ": %s", kn_watch_last_error(watch));
        break;
    }
}


/* Established, not being deleted, and serving v1beta2 */

static int
kn_capsule_crd_usable(json_t *crd)
{
    int          served;
    size_t       i;
    json_t      *v;
    const char  *s;

    if (json_object_get(json_object_get(crd, "metadata"),
                        "deletionTimestamp") != NULL)
    {
        return 0;
    }

    served = 0;
    json_array_foreach(json_object_get(json_object_get(crd, "spec"),
                                       "versions"), i, v)
    {
        s = json_string_value(json_object_get(v, "name"));
        if (s != NULL && strcmp(s, "v1beta2") == 0
            && json_is_true(json_object_get(v, "served")))
        {
            served = 1;
        }
    }

    return served && kn_kube_condition_true(crd, "Established");
}


static void
kn_capsule_set_present(kn_capsule_t *c, int present)
{
    if (c->present == (unsigned) !!present) {
        return;
    }

    c->present = !!present;

    if (!present) {
        kn_log(c->log, KN_LOG_INFO, "capsule: CRD " KN_CAPSULE_CRD " is "
               "gone or does not serve v1beta2: tenants get the native "
               "objects only");
        kn_capsule_sweep_stop(c);
        return;
    }

    kn_log(c->log, KN_LOG_INFO, "capsule: CRD " KN_CAPSULE_CRD " serves "
           "v1beta2: tenants get a Capsule Tenant too; catching up with "
           "the tenants the cluster holds");

    c->sweep_backoff_ms = KN_CAPSULE_RETRY_MIN_MS;
    kn_capsule_sweep_timer(&c->sweep_timer);
}


/* -- a tenant's Capsule Tenant ------------------------------------------- */


kn_rc
kn_capsule_apply(kn_capsule_t *c, const char *name, const char *uid,
    json_t *spec, kn_kube_done_pt done, void *data)
{
    if (!c->present) {
        return KN_DECLINED;
    }

    return kn_capsule_job_start(c, name, uid, spec, 0, done, data);
}


static kn_rc
kn_capsule_job_start(kn_capsule_t *c, const char *name, const char *uid,
    json_t *spec, int sweep, kn_kube_done_pt done, void *data)
{
    kn_rc              rc;
    kn_capsule_job_t  *job;

    if (strlen(name) >= KN_CAPSULE_NAME_MAX
        || strlen(uid) >= KN_CAPSULE_UID_MAX || uid[0] == '\0')
    {
        kn_log(c->log, KN_LOG_ERROR, "capsule: tenant \"%.64s\": invalid "
               "name or NovaTenant uid", name);
        return KN_ERROR;
    }

    job = calloc(1, sizeof(kn_capsule_job_t));
    if (job == NULL) {
        kn_log(c->log, KN_LOG_ERROR, "capsule: out of memory");
        return KN_ERROR;
    }

    job->capsule = c;
    job->sweep = !!sweep;
    job->spec = json_incref(spec);
    job->done = done;
    job->data = data;
    strcpy(job->name, name);
    strcpy(job->uid, uid);

    rc = kn_capsule_job_submit(job);
    if (rc != KN_OK) {
        json_decref(job->spec);
        free(job);
        return rc;
    }

    job->next = c->jobs;
    if (c->jobs != NULL) {
        c->jobs->prev = job;
    }
    c->jobs = job;

    return KN_OK;
}


/* the request of job->step */

static kn_rc
kn_capsule_job_submit(kn_capsule_job_t *job)
{
    char            ns[KN_CAPSULE_NAME_MAX + 8];
    char            path[KN_CAPSULE_PATH_MAX];
    size_t          len;
    json_t         *obj;
    kn_rc           rc;
    kn_capsule_t   *c = job->capsule;
    kn_kube_ref_t   ref;

    memset(&ref, 0, sizeof(ref));

    if (job->step == 0) {
        ref.api_version = KN_CAPSULE_API_VERSION;
        ref.resource = "tenants";

        obj = kn_capsule_tenant(job);
        if (obj == NULL) {
            kn_log(c->log, KN_LOG_ERROR, "capsule: out of memory");
            return KN_ERROR;
        }

        rc = kn_kube_apply(c->kube, &ref, obj, kn_capsule_job_done, job,
                           &job->req);
        json_decref(obj);
        return rc;
    }

    snprintf(ns, sizeof(ns), "%s-%s", job->name,
             job->step == 1 ? "owner" : "apps");

    ref.api_version = "v1";
    ref.resource = "namespaces";
    ref.name = ns;

    if (kn_kube_path(&ref, path, sizeof(path)) != KN_OK) {
        return KN_ERROR;
    }

    len = strlen(path);
    if (len + sizeof("?fieldManager=" KN_CAPSULE_FIELD_MANAGER)
        > sizeof(path))
    {
        return KN_ERROR;
    }
    strcpy(path + len, "?fieldManager=" KN_CAPSULE_FIELD_MANAGER);

    obj = json_pack("{s:{s:{s:s}, s:[{s:s, s:s, s:s, s:s}]}}",
                    "metadata", "labels", KN_CAPSULE_LABEL, job->name,
                    "ownerReferences",
                    "apiVersion", KN_CAPSULE_API_VERSION, "kind", "Tenant",
                    "name", job->name, "uid", job->tenant_uid);
    if (obj == NULL) {
        kn_log(c->log, KN_LOG_ERROR, "capsule: out of memory");
        return KN_ERROR;
    }

    rc = kn_kube_request(c->kube, "PATCH", path,
                         "application/strategic-merge-patch+json", obj,
                         kn_capsule_job_done, job, &job->req);
    json_decref(obj);
    return rc;
}


static void
kn_capsule_job_done(const kn_kube_result_t *res, void *data)
{
    char               error[KN_CAPSULE_ERROR_MAX];
    const char        *uid;
    kn_rc              rc;
    kn_capsule_job_t  *job = data;

    job->req = NULL;

    if (job->step == 0) {
        uid = json_string_value(json_object_get(
                  json_object_get(res->body, "metadata"), "uid"));

        if (res->error != NULL || uid == NULL
            || strlen(uid) >= sizeof(job->tenant_uid))
        {
            snprintf(error, sizeof(error), "Capsule Tenant \"%s\": %s",
                     job->name, res->error ? res->error
                                           : "the apply answer has no uid");
            kn_capsule_job_finish(job, res->status, error);
            return;
        }

        strcpy(job->tenant_uid, uid);

    } else if (res->error != NULL && res->status != 404) {
        /* 404: not created yet; the reconciler joins it once it is */
        snprintf(error, sizeof(error), "joining the namespaces of \"%s\" to "
                 "their Capsule Tenant: %s", job->name, res->error);
        kn_capsule_job_finish(job, res->status, error);
        return;
    }

    if (job->step == KN_CAPSULE_NAMESPACES) {
        kn_capsule_job_finish(job, 200, NULL);
        return;
    }

    job->step++;

    rc = kn_capsule_job_submit(job);
    if (rc != KN_OK) {
        snprintf(error, sizeof(error), "Capsule Tenant \"%s\": cannot "
                 "submit a request%s", job->name,
                 rc == KN_AGAIN ? ": too many Kubernetes requests" : "");
        kn_capsule_job_finish(job, 0, error);
    }
}


/*
 * The job is over: its caller hears of it once the job is off the list (the
 * caller may start jobs, or stop the catch-up, which drops its jobs).
 */

static void
kn_capsule_job_finish(kn_capsule_job_t *job, long status, const char *error)
{
    char               copy[KN_CAPSULE_ERROR_MAX];
    void              *data;
    kn_kube_done_pt    done;
    kn_kube_result_t   res;

    if (error == NULL) {
        kn_log(job->capsule->log, KN_LOG_DEBUG, "capsule: Capsule Tenant "
               "\"%s\" applied, its namespaces joined", job->name);
    }

    kn_capsule_job_unlink(job);

    if (job->sweep) {
        kn_capsule_sweep_result(job, error);
        json_decref(job->spec);
        free(job);
        return;
    }

    done = job->done;
    data = job->data;
    snprintf(copy, sizeof(copy), "%s", error ? error : "");
    json_decref(job->spec);
    free(job);

    memset(&res, 0, sizeof(res));
    res.status = status;
    res.error = error ? copy : NULL;
    res.attempts = 1;

    done(&res, data);
}


static void
kn_capsule_job_unlink(kn_capsule_job_t *job)
{
    kn_capsule_t  *c = job->capsule;

    if (job->prev != NULL) {
        job->prev->next = job->next;
    } else {
        c->jobs = job->next;
    }
    if (job->next != NULL) {
        job->next->prev = job->prev;
    }

    job->prev = NULL;
    job->next = NULL;
}


/* a job dropped: its request in flight is cancelled, nobody called back */

static void
kn_capsule_job_free(kn_capsule_job_t *job)
{
    kn_kube_cancel(job->req);
    kn_capsule_job_unlink(job);
    json_decref(job->spec);
    free(job);
}


static json_t *
kn_capsule_tenant(kn_capsule_job_t *job)
{
    char  owner[KN_CAPSULE_NAME_MAX + 64];

    snprintf(owner, sizeof(owner), "system:serviceaccount:%s-owner:owner",
             job->name);

    return json_pack("{s:s, s:s, s:{s:s, s:{s:s, s:s}, s:o}, "
                     "s:{s:[{s:s, s:s, s:[s]}], s:{s:i}, "
                     "s:{s:s, s:[{s:o}]}, s:{s:[o]}, s:{s:[o]}}}",
                     "apiVersion", KN_CAPSULE_API_VERSION,
                     "kind", "Tenant",
                     "metadata", "name", job->name,
                     "labels", KN_TENANT_LABEL, job->name,
                     "app.kubernetes.io/managed-by", KN_KUBE_FIELD_MANAGER,
                     "ownerReferences",
                     kn_tenant_owner_references(job->name, job->uid),
                     "spec",
                     "owners", "kind", "ServiceAccount", "name", owner,
                     "clusterRoles", "admin",
                     "namespaceOptions", "quota", KN_CAPSULE_NAMESPACES,
                     "resourceQuotas", "scope", "Tenant",
                     "items", "hard", kn_tenant_quota_hard(job->spec),
                     "limitRanges", "items", kn_tenant_limit_range_spec(),
                     "networkPolicies", "items",
                     kn_tenant_network_policy_spec(job->name));
}


/* -- the catch-up after Capsule appears ----------------------------------- */


/* a pass: list the NovaTenants */

static void
kn_capsule_sweep_timer(kn_timer_t *timer)
{
    kn_capsule_t   *c = timer->data;
    kn_kube_ref_t   ref;

    if (c->swept == NULL) {
        c->swept = json_object();
    }

    memset(&ref, 0, sizeof(ref));
    ref.api_version = KN_TENANT_API_VERSION;
    ref.resource = "novatenants";

    if (c->swept == NULL
        || kn_kube_list(c->kube, &ref, NULL, kn_capsule_sweep_listed, c,
                        &c->sweep_list) != KN_OK)
    {
        kn_log(c->log, KN_LOG_WARN, "capsule: cannot list the NovaTenants");
        kn_capsule_sweep_retry(c);
    }
}


static void
kn_capsule_sweep_listed(const kn_kube_result_t *res, void *data)
{
    kn_capsule_t  *c = data;
    json_t        *items;

    c->sweep_list = NULL;

    /* 404: the NovaTenant CRD is not there yet, so neither is a tenant */
    if (res->error != NULL && res->status != 404) {
        kn_log(c->log, KN_LOG_WARN, "capsule: listing the NovaTenants: %s",
               res->error);
        kn_capsule_sweep_retry(c);
        return;
    }

    items = json_object_get(res->body, "items");
    c->sweep_items = json_is_array(items) ? json_incref(items)
                                          : json_array();
    c->sweep_next = 0;
    c->sweep_started = 0;
    c->sweep_failed = 0;

    kn_capsule_sweep_more(c);
}


/* starts jobs up to the bound; at the end of a pass, decides what next */

static void
kn_capsule_sweep_more(kn_capsule_t *c)
{
    json_t       *item, *meta, *spec, *done;
    const char   *name, *uid;
    kn_rc         rc;
    size_t        n;

    n = json_array_size(c->sweep_items);

    while (c->sweep_running < KN_CAPSULE_SWEEP_PARALLEL
           && c->sweep_next < n)
    {
        item = json_array_get(c->sweep_items, c->sweep_next++);
        meta = json_object_get(item, "metadata");
        spec = json_object_get(item, "spec");
        name = json_string_value(json_object_get(meta, "name"));
        uid = json_string_value(json_object_get(meta, "uid"));

        if (name == NULL || uid == NULL || !json_is_object(spec)
            || json_object_get(meta, "deletionTimestamp") != NULL)
        {
            continue;
        }

        /* applied already, from this very spec */
        done = json_object_get(c->swept, name);
        if (done != NULL
            && json_equal(json_object_get(done, "spec"), spec)
            && json_equal(json_object_get(done, "uid"),
                          json_object_get(meta, "uid")))
        {
            continue;
        }

        rc = kn_capsule_job_start(c, name, uid, spec, 1, NULL, NULL);
        if (rc != KN_OK) {
            c->sweep_failed++;
            continue;
        }

        c->sweep_running++;
        c->sweep_started++;
    }

    if (c->sweep_running > 0 || c->sweep_next < n) {
        return;
    }

    /* the pass is over */

    json_decref(c->sweep_items);
    c->sweep_items = NULL;

    if (c->sweep_failed > 0) {
        kn_log(c->log, KN_LOG_WARN, "capsule: %u Capsule Tenant(s) could "
               "not be applied", c->sweep_failed);
        kn_capsule_sweep_retry(c);
        return;
    }

    if (c->sweep_started > 0) {
        /* list again: a tenant may have changed while it was applied */
        c->sweep_backoff_ms = KN_CAPSULE_RETRY_MIN_MS;
        if (kn_timer_add(c->loop, &c->sweep_timer, 0) != KN_OK) {
            kn_capsule_sweep_retry(c);
        }
        return;
    }

    kn_log(c->log, KN_LOG_INFO, "capsule: caught up: each of the %zu "
           "tenant(s) in the cluster has its Capsule Tenant",
           json_object_size(c->swept));

    kn_capsule_sweep_stop(c);
}


static void
kn_capsule_sweep_result(kn_capsule_job_t *job, const char *error)
{
    kn_capsule_t  *c = job->capsule;

    c->sweep_running--;

    if (error == NULL) {
        json_object_set_new(c->swept, job->name,
                            json_pack("{s:s, s:O}", "uid", job->uid,
                                      "spec", job->spec));
    } else {
        kn_log(c->log, KN_LOG_WARN, "capsule: %s", error);
        c->sweep_failed++;
    }

    kn_capsule_sweep_more(c);
}


static void
kn_capsule_sweep_retry(kn_capsule_t *c)
{
    kn_log(c->log, KN_LOG_INFO, "capsule: catching up again in %llu ms",
           (unsigned long long) c->sweep_backoff_ms);

    if (kn_timer_add(c->loop, &c->sweep_timer, c->sweep_backoff_ms)
        != KN_OK)
    {
        kn_log(c->log, KN_LOG_ERROR, "capsule: no timer left: the tenants "
               "the cluster holds may lack their Capsule Tenant");
    }

    c->sweep_backoff_ms *= 2;
    if (c->sweep_backoff_ms > KN_CAPSULE_RETRY_MAX_MS) {
        c->sweep_backoff_ms = KN_CAPSULE_RETRY_MAX_MS;
    }
}


/* ends the catch-up, finished or not (its jobs are dropped) */

static void
kn_capsule_sweep_stop(kn_capsule_t *c)
{
    kn_capsule_job_t  *job, *next;

    kn_timer_cancel(c->loop, &c->sweep_timer);
    kn_kube_cancel(c->sweep_list);
    c->sweep_list = NULL;

    for (job = c->jobs; job; job = next) {
        next = job->next;
        if (job->sweep) {
            kn_capsule_job_free(job);
        }
    }

    json_decref(c->sweep_items);
    c->sweep_items = NULL;
    json_decref(c->swept);
    c->swept = NULL;
    c->sweep_running = 0;
}
