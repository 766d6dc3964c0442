/*
 * Usage collection (see kn_usage.h).  A collection is two steps: the
 * tenants' namespaces (one list), then six lists at once (pods, claims,
 * services, quotas, events, applications), each page folded into the
 * tenants' figures as it arrives; when the last answers, the reports go
 * to the spool.
 */

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kn_usage.h"


#define KN_USAGE_LABEL         "kubenova.io/tenant"
#define KN_USAGE_NS_MAX        64          /* a namespace name and its NUL */
#define KN_USAGE_UID_MAX       64
#define KN_USAGE_MAX_TENANTS   100000
#define KN_USAGE_MAX_EVENTS    65536
#define KN_USAGE_RETRY_MS      2000
#define KN_USAGE_ERROR_MAX     512
#define KN_USAGE_REPORT_SLACK  64          /* a report's own fields */
#define KN_USAGE_QUOTA_TEXT    "exceeded quota"


typedef enum {
    KN_USAGE_L_PODS = 0,
    KN_USAGE_L_CLAIMS,
    KN_USAGE_L_SERVICES,
    KN_USAGE_L_QUOTAS,
    KN_USAGE_L_EVENTS,
    KN_USAGE_L_APPS,
    KN_USAGE_L_NAMESPACES              /* the first step, alone */
} kn_usage_list_e;

#define KN_USAGE_LISTS  (KN_USAGE_L_NAMESPACES + 1)


typedef struct {
    char            name[KN_USAGE_NS_MAX];
    kn_quantity_t   cpu;
    kn_quantity_t   memory;
    kn_quantity_t   storage;
    kn_quantity_t   gpu;
    int64_t         load_balancers;
    int64_t         pods;
    int64_t         namespaces;
    int64_t         applications;
    int64_t         violations;
} kn_usage_tenant_t;


typedef struct {
    char            name[KN_USAGE_NS_MAX];
    char            tenant_name[KN_USAGE_NS_MAX];
    size_t          tenant;             /* in tenants[] once they exist */
} kn_usage_ns_t;


/* an "exceeded quota" Event */
typedef struct {
    char            uid[KN_USAGE_UID_MAX];
    size_t          tenant;
    int64_t         count;
    int64_t         first;              /* Unix seconds */
    int64_t         last;
} kn_usage_event_t;


typedef struct {
    kn_usage_t      *usage;
    kn_usage_list_e  kind;
} kn_usage_list_t;


struct kn_usage_s {
    kn_loop_t           *loop;
    const kn_log_t      *log;
    kn_kube_t           *kube;
    kn_spool_t          *spool;
    kn_usage_conf_t      conf;

    kn_timer_t           window_timer;
    int64_t              window_end_ms;     /* the end it is armed for */
    kn_timer_t           retry_timer;

    /* the collection in progress */
    unsigned             busy:1;
    unsigned             failed:1;
    unsigned             quantity_warned:1;
    int64_t              start;             /* Unix seconds */
    int64_t              end;
    int64_t              pending_end;       /* ended while busy, or 0 */
    unsigned             outstanding;       /* lists not answered */
    kn_usage_list_t      lists[KN_USAGE_LISTS];
    char                 error[KN_USAGE_ERROR_MAX];

    kn_usage_tenant_t   *tenants;
    size_t               ntenants;
    kn_usage_ns_t       *ns;
    size_t               nns;
    size_t               ns_cap;
    kn_usage_event_t    *seen;              /* this collection's Events */
    size_t               nseen;
    size_t               seen_cap;

    /* the Events' counts at the last collection, by uid */
    kn_usage_event_t    *known;
    size_t               nknown;
    size_t               known_cap;
    unsigned             primed:1;
};


static void kn_usage_arm(kn_usage_t *u);
static void kn_usage_window(kn_timer_t *timer);
static void kn_usage_retry(kn_timer_t *timer);
static void kn_usage_collect(kn_usage_t *u, int64_t end_ms);
static void kn_usage_begin(kn_usage_t *u);
static kn_rc kn_usage_submit(kn_usage_t *u, kn_usage_list_e kind);
static void kn_usage_fail(kn_usage_t *u, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static kn_rc kn_usage_page(json_t *items, void *data);
static void kn_usage_list_done(const kn_kube_result_t *res, void *data);
static void kn_usage_finish(kn_usage_t *u);
static void kn_usage_done(kn_usage_t *u);
static void kn_usage_reset(kn_usage_t *u);
static kn_rc kn_usage_tenants(kn_usage_t *u);
static kn_usage_tenant_t *kn_usage_tenant_of(kn_usage_t *u, json_t *item);
static void kn_usage_namespace(kn_usage_t *u, json_t *item);
static void kn_usage_pod(kn_usage_t *u, json_t *item);
static void kn_usage_claim(kn_usage_t *u, json_t *item);
static void kn_usage_service(kn_usage_t *u, json_t *item);
static void kn_usage_app(kn_usage_t *u, json_t *item);
static void kn_usage_quota(kn_usage_t *u, json_t *item);
static void kn_usage_event(kn_usage_t *u, json_t *item);
static void kn_usage_count_events(kn_usage_t *u);
static void kn_usage_report(kn_usage_t *u);
static void kn_usage_add(kn_usage_t *u, kn_quantity_t *sum, json_t *v,
    const char *what, json_t *item);
static void kn_usage_quantity_warn(kn_usage_t *u, json_t *item,
    const char *what, const char *err);
static int64_t kn_usage_wall_ms(void);
static int kn_usage_ns_cmp_name(const void *a, const void *b);
static int kn_usage_ns_cmp_tenant(const void *a, const void *b);
static int kn_usage_event_cmp(const void *a, const void *b);
static const char *kn_usage_str(json_t *obj, const char *key);


/* each list, and what one of its objects adds */
static const struct {
    const char  *api_version;
    const char  *resource;
    const char  *label_selector;
    const char  *field_selector;
    void       (*fold)(kn_usage_t *u, json_t *item);
} kn_usage_lists[KN_USAGE_LISTS] = {
    { "v1", "pods", NULL, "status.phase!=Succeeded,status.phase!=Failed",
      kn_usage_pod },
    { "v1", "persistentvolumeclaims", NULL, NULL, kn_usage_claim },
    { "v1", "services", NULL, NULL, kn_usage_service },
    { "v1", "resourcequotas", NULL, NULL, kn_usage_quota },
    { "v1", "events", NULL, "reason=FailedCreate", kn_usage_event },
    { "core.oam.dev/v1beta1", "applications", NULL, NULL, kn_usage_app },
    { "v1", "namespaces", KN_USAGE_LABEL, NULL, kn_usage_namespace }
};


kn_rc
kn_usage_create(kn_loop_t *loop, const kn_log_t *log, kn_kube_t *kube,
    kn_spool_t *spool, const kn_usage_conf_t *conf, kn_usage_t **out)
{
    size_t       i;
    kn_usage_t  *u;

    if (conf->window_ms < 1000 || conf->window_ms % 1000 != 0) {
        kn_log(log, KN_LOG_ERROR, "usage: the window must be whole seconds");
        return KN_ERROR;
    }

    u = calloc(1, sizeof(kn_usage_t));
    if (u == NULL) {
        kn_log(log, KN_LOG_ERROR, "usage: out of memory");
        return KN_ERROR;
    }

    u->loop = loop;
    u->log = log;
    u->kube = kube;
    u->spool = spool;
    u->conf = *conf;

    kn_timer_init(&u->window_timer, kn_usage_window, u);
    kn_timer_init(&u->retry_timer, kn_usage_retry, u);

    for (i = 0; i < KN_USAGE_LISTS; i++) {
        u->lists[i].usage = u;
        u->lists[i].kind = (kn_usage_list_e) i;
    }

    *out = u;
    return KN_OK;
}


void
kn_usage_destroy(kn_usage_t *u)
{
    if (u == NULL) {
        return;
    }

    kn_timer_cancel(u->loop, &u->window_timer);
    kn_timer_cancel(u->loop, &u->retry_timer);

    /* lists still running are cancelled by kn_kube_destroy(), unanswered */

    free(u->tenants);
    free(u->ns);
    free(u->seen);
    free(u->known);
    free(u);
}


kn_rc
kn_usage_start(kn_usage_t *u)
{
    kn_log(u->log, KN_LOG_INFO, "usage: a report every %" PRIu64 " s, at "
           "multiples of it since the epoch", u->conf.window_ms / 1000);

    kn_usage_arm(u);

    return kn_timer_is_set(&u->window_timer) ? KN_OK : KN_ERROR;
}


/* -- windows ------------------------------------------------------------- */


static void
kn_usage_arm(kn_usage_t *u)
{
    int64_t  now, w;

    now = kn_usage_wall_ms();
    w = (int64_t) u->conf.window_ms;

    u->window_end_ms = (now / w + 1) * w;

    if (kn_timer_add(u->loop, &u->window_timer,
                     (uint64_t) (u->window_end_ms - now)) != KN_OK)
    {
        kn_log(u->log, KN_LOG_ERROR, "usage: no timer for the next window; "
               "usage is not reported");
    }
}


static void
kn_usage_window(kn_timer_t *timer)
{
    kn_usage_t  *u = timer->data;
    int64_t      now, end, w;

    now = kn_usage_wall_ms();
    w = (int64_t) u->conf.window_ms;
    end = u->window_end_ms;

    if (now < end) {
        /* the monotonic clock ran ahead of the wall clock */
        (void) kn_timer_add(u->loop, &u->window_timer, (uint64_t) (end - now));
        return;
    }

    if (now - end >= w) {
        /* asleep (a suspended machine, a stopped process) */
        kn_log(u->log, KN_LOG_WARN, "usage: %" PRId64 " window(s) went by "
               "unobserved and are not reported", (now - end) / w);
        end = now / w * w;
    }

    kn_usage_arm(u);

    if (u->busy) {
        if (u->pending_end != 0) {
            kn_log(u->log, KN_LOG_ERROR, "usage: the window ending at %"
                   PRId64 " is not reported: collections take longer than "
                   "the window", u->pending_end / 1000);
        }
        u->pending_end = end;
        return;
    }

    kn_usage_collect(u, end);
}


static void
kn_usage_collect(kn_usage_t *u, int64_t end_ms)
{
    u->end = end_ms / 1000;
    u->start = u->end - (int64_t) (u->conf.window_ms / 1000);

    if (u->end <= kn_spool_last_window_end(u->spool)) {
        kn_log(u->log, KN_LOG_INFO, "usage: the window ending at %" PRId64
               " was reported before a restart; not again", u->end);
        return;
    }

    u->busy = 1;
    kn_usage_begin(u);
}


static void
kn_usage_retry(kn_timer_t *timer)
{
    kn_usage_t  *u = timer->data;

    if (u->pending_end != 0) {
        kn_log(u->log, KN_LOG_ERROR, "usage: the window %" PRId64 " to %"
               PRId64 " is not reported: %s", u->start, u->end, u->error);
        kn_usage_done(u);
        return;
    }

    kn_usage_begin(u);
}


/* -- a collection ------------------------------------------------------- */


static void
kn_usage_begin(kn_usage_t *u)
{
    kn_usage_reset(u);
    u->failed = 0;
    u->quantity_warned = 0;
    u->error[0] = '\0';
    u->outstanding = 1;

    if (kn_usage_submit(u, KN_USAGE_L_NAMESPACES) != KN_OK) {
        u->outstanding = 0;
        kn_usage_finish(u);
    }
}


static kn_rc
kn_usage_submit(kn_usage_t *u, kn_usage_list_e kind)
{
    kn_rc                 rc;
    kn_kube_ref_t         ref;
    kn_kube_list_opts_t   opts;

    memset(&ref, 0, sizeof(ref));
    ref.api_version = kn_usage_lists[kind].api_version;
    ref.resource = kn_usage_lists[kind].resource;

    memset(&opts, 0, sizeof(opts));
    opts.label_selector = kn_usage_lists[kind].label_selector;
    opts.field_selector = kn_usage_lists[kind].field_selector;
    opts.page = kn_usage_page;

    rc = kn_kube_list(u->kube, &ref, &opts, kn_usage_list_done,
                      &u->lists[kind], NULL);

    if (rc != KN_OK) {
        kn_usage_fail(u, "cannot list %s%s", ref.resource,
                      rc == KN_AGAIN ? ": too many Kubernetes requests" : "");
    }

    return rc;
}


static void
kn_usage_fail(kn_usage_t *u, const char *fmt, ...)
{
    va_list  args;

    if (u->failed) {
        return;                         /* the first reason is kept */
    }

    u->failed = 1;

    va_start(args, fmt);
    vsnprintf(u->error, sizeof(u->error), fmt, args);
    va_end(args);
}


static kn_rc
kn_usage_page(json_t *items, void *data)
{
    kn_usage_list_t  *l = data;
    kn_usage_t       *u = l->usage;
    json_t           *item;
    size_t            i;

    if (u->failed) {
        return KN_ERROR;                /* no use going on */
    }

    json_array_foreach(items, i, item) {
        kn_usage_lists[l->kind].fold(u, item);

        if (u->failed) {
            return KN_ERROR;
        }
    }

    return KN_OK;
}


static void
kn_usage_list_done(const kn_kube_result_t *res, void *data)
{
    kn_usage_list_t  *l = data;
    kn_usage_t       *u = l->usage;
    size_t            i;

    if (res->error != NULL) {
        if (l->kind == KN_USAGE_L_APPS && res->status == 404) {
            /* KubeVela is not installed: no applications */
            kn_log(u->log, KN_LOG_DEBUG, "usage: no applications.core.oam.dev "
                   "API: 0 applications");

        } else {
            kn_usage_fail(u, "listing %s: %s",
                          kn_usage_lists[l->kind].resource, res->error);
        }
    }

    if (l->kind == KN_USAGE_L_NAMESPACES && !u->failed) {
        if (kn_usage_tenants(u) == KN_OK) {
            /* the second step: everything else at once */
            for (i = 0; i < KN_USAGE_L_NAMESPACES; i++) {
                if (kn_usage_submit(u, (kn_usage_list_e) i) != KN_OK) {
                    break;
                }
                u->outstanding++;
            }
        }
    }

    if (--u->outstanding == 0) {
        kn_usage_finish(u);
    }
}


static void
kn_usage_finish(kn_usage_t *u)
{
    if (u->failed) {
        kn_log(u->log, KN_LOG_WARN, "usage: collecting the window %" PRId64
               " to %" PRId64 " failed: %s; trying again in %d ms",
               u->start, u->end, u->error, KN_USAGE_RETRY_MS);
        (void) kn_timer_add(u->loop, &u->retry_timer, KN_USAGE_RETRY_MS);
        return;
    }

    kn_usage_count_events(u);
    kn_usage_report(u);
    kn_usage_done(u);
}


/* the collection is over, reported or not: the next one may start */

static void
kn_usage_done(kn_usage_t *u)
{
    int64_t  end;

    u->busy = 0;
    kn_usage_reset(u);

    if (u->pending_end != 0) {
        end = u->pending_end;
        u->pending_end = 0;
        kn_usage_collect(u, end);
    }
}


/* forgets the figures (the arrays' room is kept) */

static void
kn_usage_reset(kn_usage_t *u)
{
    free(u->tenants);
    u->tenants = NULL;
    u->ntenants = 0;
    u->nns = 0;
    u->nseen = 0;
}


/* -- tenants and namespaces ---------------------------------------------- */


/* a namespace labelled kubenova.io/tenant=<t>, named <t>-owner or <t>-apps */

static void
kn_usage_namespace(kn_usage_t *u, json_t *item)
{
    size_t          len, cap;
    json_t         *meta;
    const char     *name, *tenant;
    kn_usage_ns_t  *ns;

    meta = json_object_get(item, "metadata");
    name = kn_usage_str(meta, "name");
    tenant = kn_usage_str(json_object_get(meta, "labels"), KN_USAGE_LABEL);

    if (name == NULL || tenant == NULL) {
        return;
    }

    len = strlen(tenant);

    if (len == 0 || strncmp(name, tenant, len) != 0
        || (strcmp(name + len, "-owner") != 0
            && strcmp(name + len, "-apps") != 0)
        || strlen(name) >= KN_USAGE_NS_MAX)
    {
        kn_log(u->log, KN_LOG_DEBUG, "usage: namespace \"%s\" is labelled "
               "with tenant \"%s\" but is not one of its namespaces", name,
               tenant);
        return;
    }

    if (u->nns == u->ns_cap) {
        if (u->ns_cap == 2 * KN_USAGE_MAX_TENANTS) {
            kn_usage_fail(u, "more than %d tenants", KN_USAGE_MAX_TENANTS);
            return;
        }

        cap = u->ns_cap ? 2 * u->ns_cap : 64;
        if (cap > 2 * KN_USAGE_MAX_TENANTS) {
            cap = 2 * KN_USAGE_MAX_TENANTS;
        }

        ns = realloc(u->ns, cap * sizeof(kn_usage_ns_t));
        if (ns == NULL) {
            kn_usage_fail(u, "out of memory");
            return;
        }

        u->ns = ns;
        u->ns_cap = cap;
    }

    ns = &u->ns[u->nns++];
    strcpy(ns->name, name);
    strcpy(ns->tenant_name, tenant);
}


/* the namespaces are known: one record per tenant, sorted by name */

static kn_rc
kn_usage_tenants(kn_usage_t *u)
{
    size_t              i, n;
    kn_usage_tenant_t  *t;

    if (u->nns > 1) {
        qsort(u->ns, u->nns, sizeof(kn_usage_ns_t), kn_usage_ns_cmp_tenant);
    }

    n = 0;
    for (i = 0; i < u->nns; i++) {
        n += (i == 0 || strcmp(u->ns[i].tenant_name,
                               u->ns[i - 1].tenant_name) != 0);
    }

    u->tenants = calloc(n ? n : 1, sizeof(kn_usage_tenant_t));
    if (u->tenants == NULL) {
        kn_usage_fail(u, "out of memory");
        return KN_ERROR;
    }

    t = NULL;
    for (i = 0; i < u->nns; i++) {
        if (t == NULL || strcmp(u->ns[i].tenant_name, t->name) != 0) {
            t = &u->tenants[u->ntenants++];
            strcpy(t->name, u->ns[i].tenant_name);
        }

        t->namespaces++;
        u->ns[i].tenant = (size_t) (t - u->tenants);
    }

    if (u->nns > 1) {
        qsort(u->ns, u->nns, sizeof(kn_usage_ns_t), kn_usage_ns_cmp_name);
    }

    return KN_OK;
}


/* the tenant whose namespace holds item, or NULL */

static kn_usage_tenant_t *
kn_usage_tenant_of(kn_usage_t *u, json_t *item)
{
    const char     *name;
    kn_usage_ns_t  *ns, key;

    name = kn_usage_str(json_object_get(item, "metadata"), "namespace");

    if (name == NULL || strlen(name) >= KN_USAGE_NS_MAX || u->nns == 0) {
        return NULL;
    }

    strcpy(key.name, name);
    ns = bsearch(&key, u->ns, u->nns, sizeof(kn_usage_ns_t),
                 kn_usage_ns_cmp_name);

    return ns ? &u->tenants[ns->tenant] : NULL;
}


static int
kn_usage_ns_cmp_name(const void *a, const void *b)
{
    return strcmp(((const kn_usage_ns_t *) a)->name,
                  ((const kn_usage_ns_t *) b)->name);
}


static int
kn_usage_ns_cmp_tenant(const void *a, const void *b)
{
    return strcmp(((const kn_usage_ns_t *) a)->tenant_name,
                  ((const kn_usage_ns_t *) b)->tenant_name);
}


/* -- what each object adds ---------------------------------------------- */


static void
kn_usage_pod(kn_usage_t *u, json_t *item)
{
    char                err[KN_USAGE_ERROR_MAX];
    size_t              i;
    const char         *phase;
    kn_quantity_t       q;
    kn_usage_tenant_t  *t;
    static const char  *resources[] = { "cpu", "memory", "nvidia.com/gpu" };

    t = kn_usage_tenant_of(u, item);
    if (t == NULL) {
        return;
    }

    phase = kn_usage_str(json_object_get(item, "status"), "phase");

    if (phase != NULL
        && (strcmp(phase, "Succeeded") == 0 || strcmp(phase, "Failed") == 0))
    {
        return;
    }

    t->pods++;

    for (i = 0; i < KN_NELEMS(resources); i++) {
        if (kn_usage_pod_request(item, resources[i], &q, err, sizeof(err))
            != KN_OK)
        {
            kn_usage_quantity_warn(u, item, resources[i], err);
            continue;
        }

        if (kn_quantity_add(i == 0 ? &t->cpu : i == 1 ? &t->memory : &t->gpu,
                            q) != KN_OK)
        {
            kn_usage_quantity_warn(u, item, resources[i], "out of range");
        }
    }
}


static void
kn_usage_service(kn_usage_t *u, json_t *item)
{
    const char         *type;
    kn_usage_tenant_t  *t;

    t = kn_usage_tenant_of(u, item);
    type = kn_usage_str(json_object_get(item, "spec"), "type");

    if (t != NULL && type != NULL && strcmp(type, "LoadBalancer") == 0) {
        t->load_balancers++;
    }
}


static void
kn_usage_app(kn_usage_t *u, json_t *item)
{
    kn_usage_tenant_t  *t;

    t = kn_usage_tenant_of(u, item);

    if (t != NULL) {
        t->applications++;
    }
}


static void
kn_usage_claim(kn_usage_t *u, json_t *item)
{
    json_t             *req;
    kn_usage_tenant_t  *t;

    t = kn_usage_tenant_of(u, item);
    if (t == NULL) {
        return;
    }

    req = json_object_get(json_object_get(json_object_get(item, "spec"),
                                          "resources"), "requests");

    kn_usage_add(u, &t->storage, json_object_get(req, "storage"),
                 "storage", item);
}


/* at or over a hard limit (a limit of 0 with nothing used only forbids) */

static void
kn_usage_quota(kn_usage_t *u, json_t *item)
{
    json_t             *status, *hard, *used, *v;
    const char         *key, *err;
    kn_quantity_t       h, n;
    kn_usage_tenant_t  *t;

    t = kn_usage_tenant_of(u, item);
    if (t == NULL) {
        return;
    }

    status = json_object_get(item, "status");
    hard = json_object_get(status, "hard");
    used = json_object_get(status, "used");

    json_object_foreach(hard, key, v) {
        if (kn_quantity_parse(json_string_value(v), &h, &err) != KN_OK) {
            kn_usage_quantity_warn(u, item, key, err);
            continue;
        }

        if (kn_quantity_parse(json_string_value(json_object_get(used, key)),
                              &n, &err) != KN_OK)
        {
            continue;                   /* not counted yet */
        }

        if (n >= h && n > 0) {
            kn_log(u->log, KN_LOG_DEBUG, "usage: ResourceQuota %s/%s: %s "
                   "used %s of %s", kn_usage_str(json_object_get(item,
                   "metadata"), "namespace"), kn_usage_str(
                   json_object_get(item, "metadata"), "name"), key,
                   json_string_value(json_object_get(used, key)),
                   json_string_value(v));
            t->violations++;
            return;
        }
    }
}


static void
kn_usage_event(kn_usage_t *u, json_t *item)
{
    size_t              cap;
    json_t             *meta, *series;
    int64_t             count;
    const char         *uid, *msg, *first, *last;
    kn_usage_event_t   *e;
    kn_usage_tenant_t  *t;

    msg = kn_usage_str(item, "message");
    meta = json_object_get(item, "metadata");
    uid = kn_usage_str(meta, "uid");

    if (msg == NULL || strstr(msg, KN_USAGE_QUOTA_TEXT) == NULL
        || uid == NULL || strlen(uid) >= KN_USAGE_UID_MAX)
    {
        return;
    }

    t = kn_usage_tenant_of(u, item);
    if (t == NULL) {
        return;
    }

    if (u->nseen == u->seen_cap) {
        if (u->seen_cap == KN_USAGE_MAX_EVENTS) {
            kn_log(u->log, KN_LOG_WARN, "usage: more than %d \"exceeded "
                   "quota\" Events; the others are not counted",
                   KN_USAGE_MAX_EVENTS);
            return;
        }

        cap = u->seen_cap ? 2 * u->seen_cap : 64;
        e = realloc(u->seen, cap * sizeof(kn_usage_event_t));
        if (e == NULL) {
            kn_usage_fail(u, "out of memory");
            return;
        }

        u->seen = e;
        u->seen_cap = cap;
    }

    /* core/v1 counts in count, events.k8s.io in series.count */
    series = json_object_get(item, "series");
    count = json_integer_value(json_object_get(item, "count"));
    if (json_integer_value(json_object_get(series, "count")) > count) {
        count = json_integer_value(json_object_get(series, "count"));
    }

    first = kn_usage_str(item, "firstTimestamp");
    if (first == NULL) {
        first = kn_usage_str(item, "eventTime");
    }

    last = kn_usage_str(item, "lastTimestamp");
    if (last == NULL) {
        last = kn_usage_str(series, "lastObservedTime");
    }
    if (last == NULL) {
        last = first;
    }

    e = &u->seen[u->nseen++];
    strcpy(e->uid, uid);
    e->tenant = (size_t) (t - u->tenants);
    e->count = count > 0 ? count : 1;

    if (first == NULL || kn_usage_time(first, &e->first) != KN_OK) {
        e->first = 0;
    }
    if (last == NULL || kn_usage_time(last, &e->last) != KN_OK) {
        e->last = e->first;
    }
}


/*
 * Each Event's rejections once: what its count grew by since the last
 * collection; see kn_usage.h for one not seen before.  The Events seen now
 * are what the next collection compares with (older ones have expired).
 */

static void
kn_usage_count_events(kn_usage_t *u)
{
    size_t             i, cap;
    int64_t            add;
    kn_usage_event_t  *e, *prev, *swap;

    if (u->nseen > 1) {
        qsort(u->seen, u->nseen, sizeof(kn_usage_event_t),
              kn_usage_event_cmp);
    }

    for (i = 0; i < u->nseen; i++) {
        e = &u->seen[i];

        prev = (u->nknown == 0) ? NULL
               : bsearch(e, u->known, u->nknown, sizeof(kn_usage_event_t),
                         kn_usage_event_cmp);

        if (prev != NULL) {
            add = e->count > prev->count ? e->count - prev->count : 0;

        } else if (u->primed || e->first >= u->start) {
            add = e->count;

        } else {
            add = (e->last >= u->start) ? 1 : 0;
        }

        u->tenants[e->tenant].violations += add;
    }

    /* the arrays trade places, capacities with them */
    swap = u->known;
    cap = u->known_cap;
    u->known = u->seen;
    u->known_cap = u->seen_cap;
    u->nknown = u->nseen;
    u->seen = swap;
    u->seen_cap = cap;
    u->nseen = 0;
    u->primed = 1;
}


static int
kn_usage_event_cmp(const void *a, const void *b)
{
    return strcmp(((const kn_usage_event_t *) a)->uid,
                  ((const kn_usage_event_t *) b)->uid);
}


/* -- the report ---------------------------------------------------------- */


static void
kn_usage_report(kn_usage_t *u)
{
    size_t                        i, first, size, one, limit;
    int64_t                       v[4];
    kn_usage_tenant_t            *t;
    Kubenova__V1__TenantUsage    *tu, **list;
    Kubenova__V1__UsageReport     report;

    tu = calloc(u->ntenants ? u->ntenants : 1,
                sizeof(Kubenova__V1__TenantUsage));
    list = calloc(u->ntenants ? u->ntenants : 1,
                  sizeof(Kubenova__V1__TenantUsage *));

    if (tu == NULL || list == NULL) {
        free(tu);
        free(list);
        kn_log(u->log, KN_LOG_ERROR, "usage: out of memory: the window %"
               PRId64 " to %" PRId64 " is not reported", u->start, u->end);
        return;
    }

    for (i = 0; i < u->ntenants; i++) {
        t = &u->tenants[i];

        if (kn_quantity_to(t->cpu, KN_QUANTITY_MILLI, &v[0]) != KN_OK
            || kn_quantity_to(t->memory, KN_QUANTITY_UNIT, &v[1]) != KN_OK
            || kn_quantity_to(t->storage, KN_QUANTITY_UNIT, &v[2]) != KN_OK
            || kn_quantity_to(t->gpu, KN_QUANTITY_UNIT, &v[3]) != KN_OK)
        {
            kn_log(u->log, KN_LOG_ERROR, "usage: tenant \"%s\": a figure "
                   "out of range; reported as 0", t->name);
            memset(v, 0, sizeof(v));
        }

        kubenova__v1__tenant_usage__init(&tu[i]);
        tu[i].tenant = t->name;
        tu[i].cpu_request_millicores = v[0];
        tu[i].memory_request_bytes = v[1];
        tu[i].storage_request_bytes = v[2];
        tu[i].gpu_requests = v[3];
        tu[i].load_balancers = t->load_balancers;
        tu[i].pods = t->pods;
        tu[i].namespaces = t->namespaces;
        tu[i].applications = t->applications;
        tu[i].quota_violations = t->violations;
        list[i] = &tu[i];
    }

    /* as many reports as it takes to stay within max_message */

    limit = u->conf.max_message > 2 * KN_USAGE_REPORT_SLACK
            ? u->conf.max_message - KN_USAGE_REPORT_SLACK
            : KN_USAGE_REPORT_SLACK;
    first = 0;

    do {
        size = 0;

        for (i = first; i < u->ntenants; i++) {
            one = kubenova__v1__tenant_usage__get_packed_size(&tu[i]) + 6;
            if (i > first && size + one > limit) {
                break;
            }
            size += one;
        }

        kubenova__v1__usage_report__init(&report);
        report.window_start_unix = u->start;
        report.window_end_unix = u->end;
        report.n_tenants = i - first;
        report.tenants = list + first;

        if (kn_spool_add(u->spool, &report) != KN_OK) {
            kn_log(u->log, KN_LOG_ERROR, "usage: the window %" PRId64 " to %"
                   PRId64 " is not reported (%zu tenant(s)): the spool "
                   "refused it", u->start, u->end, report.n_tenants);
        }

        first = i;

    } while (first < u->ntenants);

    free(list);
    free(tu);
}


/* -- helpers -------------------------------------------------------------- */


static void
kn_usage_add(kn_usage_t *u, kn_quantity_t *sum, json_t *v, const char *what,
    json_t *item)
{
    const char     *err;
    kn_quantity_t   q;

    if (v == NULL) {
        return;
    }

    if (kn_quantity_parse(json_string_value(v), &q, &err) != KN_OK) {
        kn_usage_quantity_warn(u, item, what, err);
        return;
    }

    if (kn_quantity_add(sum, q) != KN_OK) {
        kn_usage_quantity_warn(u, item, what, "out of range");
    }
}


/* once per collection: the API validates quantities, so this is rare */

static void
kn_usage_quantity_warn(kn_usage_t *u, json_t *item, const char *what,
    const char *err)
{
    json_t  *meta;

    if (u->quantity_warned) {
        return;
    }

    u->quantity_warned = 1;
    meta = json_object_get(item, "metadata");

    kn_log(u->log, KN_LOG_WARN, "usage: %s/%s: %s: %s; not counted",
           kn_usage_str(meta, "namespace"), kn_usage_str(meta, "name"),
           what, err);
}


static const char *
kn_usage_str(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}


static int64_t
kn_usage_wall_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_REALTIME, &ts);

    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


/* -- a pod's request --------------------------------------------------- */


static kn_rc
kn_usage_container_request(json_t *c, const char *resource,
    kn_quantity_t *q, char *err, size_t err_size)
{
    json_t      *v;
    const char  *why;

    *q = 0;
    v = json_object_get(json_object_get(json_object_get(c, "resources"),
                                        "requests"), resource);
    if (v == NULL) {
        return KN_OK;
    }

    if (kn_quantity_parse(json_string_value(v), q, &why) != KN_OK) {
        snprintf(err, err_size, "container \"%s\": %s: %s",
                 kn_usage_str(c, "name") ? kn_usage_str(c, "name") : "?",
                 resource, why);
        return KN_ERROR;
    }

    return KN_OK;
}


kn_rc
kn_usage_pod_request(json_t *pod, const char *resource, kn_quantity_t *out,
    char *err, size_t err_size)
{
    json_t         *spec, *c, *v;
    size_t          i;
    const char     *policy, *why;
    kn_quantity_t   sum, sidecars, init, need, q;

    spec = json_object_get(pod, "spec");
    sum = 0;
    sidecars = 0;
    init = 0;

    json_array_foreach(json_object_get(spec, "containers"), i, c) {
        if (kn_usage_container_request(c, resource, &q, err, err_size)
            != KN_OK
            || kn_quantity_add(&sum, q) != KN_OK)
        {
            goto failed;
        }
    }

    json_array_foreach(json_object_get(spec, "initContainers"), i, c) {
        if (kn_usage_container_request(c, resource, &q, err, err_size)
            != KN_OK)
        {
            goto failed;
        }

        policy = kn_usage_str(c, "restartPolicy");

        if (policy != NULL && strcmp(policy, "Always") == 0) {
            /* a sidecar: runs beside the containers from its start on */
            if (kn_quantity_add(&sum, q) != KN_OK
                || kn_quantity_add(&sidecars, q) != KN_OK)
            {
                goto range;
            }
            need = sidecars;

        } else {
            need = q;
            if (kn_quantity_add(&need, sidecars) != KN_OK) {
                goto range;
            }
        }

        if (need > init) {
            init = need;
        }
    }

    if (init > sum) {
        sum = init;
    }

    /* pod-level resources (Kubernetes 1.32+): cpu and memory only */
    v = json_object_get(json_object_get(json_object_get(spec, "resources"),
                                        "requests"), resource);
    if (v != NULL
        && (strcmp(resource, "cpu") == 0 || strcmp(resource, "memory") == 0))
    {
        if (kn_quantity_parse(json_string_value(v), &sum, &why) != KN_OK) {
            snprintf(err, err_size, "spec.resources: %s: %s", resource, why);
            goto failed;
        }
    }

    v = json_object_get(json_object_get(spec, "overhead"), resource);
    if (v != NULL) {
        if (kn_quantity_parse(json_string_value(v), &q, &why) != KN_OK) {
            snprintf(err, err_size, "spec.overhead: %s: %s", resource, why);
            goto failed;
        }
        if (kn_quantity_add(&sum, q) != KN_OK) {
            goto range;
        }
    }

    *out = sum;
    return KN_OK;

range:

    snprintf(err, err_size, "%s: out of range", resource);

failed:

    return KN_ERROR;
}


/* -- time ---------------------------------------------------------------- */


kn_rc
kn_usage_time(const char *text, int64_t *out)
{
    int          n, off, sign, oh, om;
    time_t       t;
    struct tm    tm;
    const char  *p;

    memset(&tm, 0, sizeof(tm));
    n = 0;

    if (sscanf(text, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon,
               &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6
        || n != 19)
    {
        return KN_ERROR;
    }

    p = text + n;

    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++) { /* void */ }
    }

    off = 0;

    if (*p == 'Z' || *p == 'z') {
        p++;

    } else if (*p == '+' || *p == '-') {
        sign = (*p == '-') ? -1 : 1;
        if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &n) != 2 || n != 5) {
            return KN_ERROR;
        }
        off = sign * (oh * 3600 + om * 60);
        p += 6;

    } else {
        return KN_ERROR;
    }

    if (*p != '\0') {
        return KN_ERROR;
    }

    tm.tm_year -= 1900;
    tm.tm_mon -= 1;

    t = timegm(&tm);
    if (t == (time_t) -1) {
        return KN_ERROR;
    }

    *out = (int64_t) t - off;
    return KN_OK;
}
