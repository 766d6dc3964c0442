/*
 * The cluster's components (see kn_components.h): the bundles, loaded at
 * start, and the one config worked through at a time, one Kubernetes
 * request after the other.
 */

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "kn_components.h"
#include "kn_tenant.h"              /* KN_TENANT_API_VERSION */
#include "ngx_kubenova_yaml.h"


#define KN_COMP_N              3
#define KN_COMP_MAX_VERSIONS   8
#define KN_COMP_MAX_OBJECTS    64           /* files in one bundle */
#define KN_COMP_FILE_MAX       (1024 * 1024)
#define KN_COMP_WAIT_MS        60000        /* for a CRD to be Established */
#define KN_COMP_POLL_MS        250
#define KN_COMP_RETRY_MIN_MS   1000
#define KN_COMP_RETRY_MAX_MS   30000
#define KN_COMP_START_RETRY_MS 3000
#define KN_COMP_VERSION_MAX    64
#define KN_COMP_STATE_MAX      16
#define KN_COMP_GENERATION     "kubenova.io/generation"


/* the components, in the order they are worked through */
static const char  *kn_comp_names[KN_COMP_N] = {
    "capsule", "capsule-proxy", "kubevela"
};


/* built-in kinds a bundle may hold, and their resources */
static const char  *kn_comp_kinds[][2] = {
    { "CustomResourceDefinition", "customresourcedefinitions" },
    { "Namespace", "namespaces" },
    { "ServiceAccount", "serviceaccounts" },
    { "ClusterRole", "clusterroles" },
    { "ClusterRoleBinding", "clusterrolebindings" },
    { "Role", "roles" },
    { "RoleBinding", "rolebindings" },
    { "Service", "services" },
    { "ConfigMap", "configmaps" },
    { "Deployment", "deployments" }
};


/* what a disabled component loses; everything else of its bundle stays */
static const char  *kn_comp_removable[] = {
    "Deployment", "Service", "ServiceAccount", "ClusterRole",
    "ClusterRoleBinding"
};


typedef struct {
    json_t            *obj;
    char               api_version[128];
    char               resource[96];
    char               namespace_[64];
    char               name[254];
    char               what[384];           /* for logs and errors */
    unsigned           crd:1;
    unsigned           removable:1;
} kn_comp_object_t;


typedef struct {
    char               version[KN_COMP_VERSION_MAX];
    kn_comp_object_t  *objects;
    size_t             nobjects;
} kn_comp_bundle_t;


typedef struct {
    const char        *name;
    kn_comp_bundle_t   bundles[KN_COMP_MAX_VERSIONS];
    size_t             nbundles;

    /* what the cluster has, as reported to the Manager ("": unknown) */
    char               version[KN_COMP_VERSION_MAX];
    char               state[KN_COMP_STATE_MAX];
    char               message[KN_APPLIER_ERROR_MAX];
} kn_comp_t;


typedef enum {
    KN_COMP_BEGIN = 0,          /* the next component */
    KN_COMP_CRDS,               /* its CRDs applied */
    KN_COMP_WAIT,               /* ... until Established */
    KN_COMP_REST,               /* the rest of its bundle applied */
    KN_COMP_REMOVE,             /* disabled: its workloads and RBAC go */
    KN_COMP_CONFIG,             /* the NovaClusterConfig */
    KN_COMP_STATUS,             /* ... and its status */
    KN_COMP_DELETE,             /* a deletion: the NovaClusterConfig goes */
    KN_COMP_DONE
} kn_comp_phase_e;


typedef struct {
    char               name[KN_APPLIER_NAME_MAX];
    int64_t            generation;
    json_t            *spec;                /* NULL: a deletion */
} kn_comp_job_t;


struct kn_components_s {
    kn_loop_t              *loop;
    const kn_log_t         *log;
    kn_kube_t              *kube;
    kn_applier_t           *applier;
    kn_components_send_pt   send;
    void                   *send_data;

    kn_comp_t               comps[KN_COMP_N];
    int64_t                 config_generation;  /* of the states */

    /* the config worked through, and the newest one waiting behind it */
    kn_comp_job_t           job;
    kn_comp_job_t           next;
    unsigned                busy:1;         /* job is being worked through */
    unsigned                has_job:1;      /* job is busy or to retry */
    unsigned                has_next:1;
    kn_comp_phase_e         phase;
    size_t                  comp;
    size_t                  obj;
    kn_comp_bundle_t       *bundle;         /* of the current component */
    uint64_t                deadline;
    int                     failed;
    char                    error[KN_APPLIER_ERROR_MAX];
    kn_kube_req_t          *req;
    kn_timer_t              timer;          /* polls and retries */
    uint64_t                retry_ms;

    /* kn_components_start() */
    kn_components_ready_pt  ready;
    void                   *ready_data;
    kn_timer_t              start_timer;
    kn_kube_req_t          *start_req;
};


static kn_rc kn_comp_load(kn_components_t *c, const char *dir);
static kn_rc kn_comp_load_bundle(kn_components_t *c, kn_comp_t *comp,
    const char *dir, const char *version);
static kn_rc kn_comp_load_object(kn_components_t *c, kn_comp_bundle_t *b,
    const char *path);
static kn_rc kn_comp_resolve(kn_components_t *c, kn_comp_bundle_t *b,
    kn_comp_object_t *o);
static void kn_comp_free_bundles(kn_components_t *c);
static int kn_comp_yaml_file(const struct dirent *d);
static int kn_comp_subdir(const struct dirent *d);

static kn_rc kn_comp_apply(void *data, const char *name, int64_t generation,
    json_t *spec);
static kn_rc kn_comp_delete(void *data, const char *name,
    int64_t generation);
static void kn_comp_queue(kn_components_t *c, const char *name,
    int64_t generation, json_t *spec);
static void kn_comp_begin(kn_components_t *c);
static void kn_comp_run(kn_components_t *c);
static void kn_comp_request_done(const kn_kube_result_t *res, void *data);
static void kn_comp_timer(kn_timer_t *timer);
static void kn_comp_finish(kn_components_t *c);
static void kn_comp_component_failed(kn_components_t *c, const char *error);
static kn_rc kn_comp_submit_apply(kn_components_t *c, kn_comp_object_t *o);
static kn_rc kn_comp_submit_config(kn_components_t *c);
static kn_rc kn_comp_submit_status(kn_components_t *c);
static void kn_comp_set_state(kn_components_t *c, kn_comp_t *comp,
    const char *version, const char *state, const char *message);
static void kn_comp_report(kn_components_t *c);
static json_t *kn_comp_states_json(kn_components_t *c);

static void kn_comp_start_run(kn_timer_t *timer);
static void kn_comp_list_done(const kn_kube_result_t *res, void *data);


kn_rc
kn_components_create(kn_loop_t *loop, const kn_log_t *log, kn_kube_t *kube,
    kn_applier_t *applier, const char *bundles_dir,
    kn_components_send_pt send, void *data, kn_components_t **out)
{
    size_t                 i;
    kn_components_t       *c;
    kn_applier_backend_t   b;

    c = calloc(1, sizeof(kn_components_t));
    if (c == NULL) {
        kn_log(log, KN_LOG_ERROR, "components: out of memory");
        return KN_ERROR;
    }

    c->loop = loop;
    c->log = log;
    c->kube = kube;
    c->applier = applier;
    c->send = send;
    c->send_data = data;
    c->retry_ms = KN_COMP_RETRY_MIN_MS;

    for (i = 0; i < KN_COMP_N; i++) {
        c->comps[i].name = kn_comp_names[i];
    }

    kn_timer_init(&c->timer, kn_comp_timer, c);
    kn_timer_init(&c->start_timer, kn_comp_start_run, c);

    if (kn_comp_load(c, bundles_dir) != KN_OK) {
        kn_components_destroy(c);
        return KN_ERROR;
    }

    b.apply = kn_comp_apply;
    b.delete_ = kn_comp_delete;
    b.data = c;

    if (kn_applier_set_backend(applier, KN_COMPONENTS_KIND, &b) != KN_OK) {
        kn_components_destroy(c);
        return KN_ERROR;
    }

    *out = c;
    return KN_OK;
}


void
kn_components_destroy(kn_components_t *c)
{
    if (c == NULL) {
        return;
    }

    kn_kube_cancel(c->req);
    kn_kube_cancel(c->start_req);
    kn_timer_cancel(c->loop, &c->timer);
    kn_timer_cancel(c->loop, &c->start_timer);
    json_decref(c->job.spec);
    json_decref(c->next.spec);
    kn_comp_free_bundles(c);
    free(c);
}


/* the bundles */


static kn_rc
kn_comp_load(kn_components_t *c, const char *dir)
{
    int              n, i;
    char             path[4096];
    size_t           k, total;
    kn_comp_t       *comp;
    struct dirent  **list;

    total = 0;

    for (k = 0; k < KN_COMP_N; k++) {
        comp = &c->comps[k];

        if (snprintf(path, sizeof(path), "%s/%s", dir, comp->name)
            >= (int) sizeof(path))
        {
            kn_log(c->log, KN_LOG_ERROR, "components: %s: too long a path",
                   dir);
            return KN_ERROR;
        }

        n = scandir(path, &list, kn_comp_subdir, alphasort);

        if (n < 0 && errno == ENOENT) {
            /* not installed: enabling it fails with a clear message */
            kn_log(c->log, KN_LOG_WARN, "components: no bundle of %s (no "
                   "%s; --bundles-dir)", comp->name, path);
            continue;
        }

        if (n < 0) {
            kn_log(c->log, KN_LOG_ERROR, "components: cannot read the "
                   "bundles of %s in %s: %s (--bundles-dir)", comp->name,
                   path, strerror(errno));
            return KN_ERROR;
        }

        for (i = 0; i < n; i++) {
            if (comp->nbundles < KN_COMP_MAX_VERSIONS
                && kn_comp_load_bundle(c, comp, path, list[i]->d_name)
                   != KN_OK)
            {
                comp->nbundles = KN_COMP_MAX_VERSIONS + 1;
            }

            free(list[i]);
        }

        free(list);

        if (comp->nbundles > KN_COMP_MAX_VERSIONS) {
            comp->nbundles = KN_COMP_MAX_VERSIONS;
            return KN_ERROR;
        }

        total += comp->nbundles;
    }

    kn_log(c->log, KN_LOG_INFO, "components: %zu bundle(s) loaded from %s",
           total, dir);

    return KN_OK;
}


static kn_rc
kn_comp_load_bundle(kn_components_t *c, kn_comp_t *comp, const char *dir,
    const char *version)
{
    int                n, i;
    char               path[4096];
    kn_rc              rc;
    size_t             k;
    kn_comp_bundle_t  *b;
    struct dirent    **list;

    if (strlen(version) >= KN_COMP_VERSION_MAX) {
        kn_log(c->log, KN_LOG_ERROR, "components: %s/%s: a version of at "
               "most %d characters", dir, version, KN_COMP_VERSION_MAX - 1);
        return KN_ERROR;
    }

    b = &comp->bundles[comp->nbundles++];
    strcpy(b->version, version);

    b->objects = calloc(KN_COMP_MAX_OBJECTS, sizeof(kn_comp_object_t));
    if (b->objects == NULL) {
        kn_log(c->log, KN_LOG_ERROR, "components: out of memory");
        return KN_ERROR;
    }

    if (snprintf(path, sizeof(path), "%s/%s", dir, version)
        >= (int) sizeof(path))
    {
        kn_log(c->log, KN_LOG_ERROR, "components: %s: too long a path", dir);
        return KN_ERROR;
    }

    n = scandir(path, &list, kn_comp_yaml_file, alphasort);
    if (n < 0) {
        kn_log(c->log, KN_LOG_ERROR, "components: cannot read %s: %s", path,
               strerror(errno));
        return KN_ERROR;
    }

    rc = KN_OK;

    for (i = 0; i < n; i++) {
        if (rc == KN_OK) {
            if (snprintf(path, sizeof(path), "%s/%s/%s", dir, version,
                         list[i]->d_name)
                >= (int) sizeof(path))
            {
                kn_log(c->log, KN_LOG_ERROR, "components: %s: too long a "
                       "path", dir);
                rc = KN_ERROR;

            } else {
                rc = kn_comp_load_object(c, b, path);
            }
        }

        free(list[i]);
    }

    free(list);

    if (rc != KN_OK) {
        return KN_ERROR;
    }

    if (b->nobjects == 0) {
        kn_log(c->log, KN_LOG_ERROR, "components: the bundle %s/%s has no "
               "NN-*.yaml file", dir, version);
        return KN_ERROR;
    }

    /* custom kinds are resolved by the CRDs of the same bundle */

    for (k = 0; k < b->nobjects; k++) {
        if (kn_comp_resolve(c, b, &b->objects[k]) != KN_OK) {
            return KN_ERROR;
        }
    }

    return KN_OK;
}


static kn_rc
kn_comp_load_object(kn_components_t *c, kn_comp_bundle_t *b,
    const char *path)
{
    FILE              *f;
    char               err[256];
    size_t             len, i;
    json_t            *obj;
    const char        *av, *kind, *name, *ns;
    struct stat        st;
    unsigned char     *data;
    kn_comp_object_t  *o;

    if (b->nobjects == KN_COMP_MAX_OBJECTS) {
        kn_log(c->log, KN_LOG_ERROR, "components: %s: a bundle holds at "
               "most %d files", path, KN_COMP_MAX_OBJECTS);
        return KN_ERROR;
    }

    /* read once, at start: the event loop does not run yet */

    f = fopen(path, "r");
    if (f == NULL || fstat(fileno(f), &st) != 0) {
        kn_log(c->log, KN_LOG_ERROR, "components: cannot read %s: %s", path,
               strerror(errno));
        if (f) {
            fclose(f);
        }
        return KN_ERROR;
    }

    if (st.st_size > KN_COMP_FILE_MAX) {
        fclose(f);
        kn_log(c->log, KN_LOG_ERROR, "components: %s is larger than %d "
               "bytes", path, KN_COMP_FILE_MAX);
        return KN_ERROR;
    }

    data = malloc((size_t) st.st_size + 1);
    if (data == NULL) {
        fclose(f);
        kn_log(c->log, KN_LOG_ERROR, "components: out of memory");
        return KN_ERROR;
    }

    len = fread(data, 1, (size_t) st.st_size, f);
    fclose(f);

    obj = ngx_kubenova_yaml_to_json(data, len, err, sizeof(err));
    free(data);

    if (obj == NULL) {
        kn_log(c->log, KN_LOG_ERROR, "components: %s: %s", path, err);
        return KN_ERROR;
    }

    av = json_string_value(json_object_get(obj, "apiVersion"));
    kind = json_string_value(json_object_get(obj, "kind"));
    name = json_string_value(json_object_get(json_object_get(obj,
                                                             "metadata"),
                                             "name"));
    ns = json_string_value(json_object_get(json_object_get(obj, "metadata"),
                                           "namespace"));

    if (av == NULL || kind == NULL || name == NULL
        || strlen(av) >= sizeof(o->api_version)
        || strlen(name) >= sizeof(o->name)
        || (ns && strlen(ns) >= sizeof(o->namespace_)))
    {
        json_decref(obj);
        kn_log(c->log, KN_LOG_ERROR, "components: %s: one object with "
               "apiVersion, kind and metadata.name (of bounded length)",
               path);
        return KN_ERROR;
    }

    o = &b->objects[b->nobjects++];
    o->obj = obj;
    strcpy(o->api_version, av);
    strcpy(o->name, name);
    strcpy(o->namespace_, ns ? ns : "");
    snprintf(o->what, sizeof(o->what), "%s %s%s%s", kind, ns ? ns : "",
             ns ? "/" : "", name);
    o->crd = strcmp(kind, "CustomResourceDefinition") == 0;

    for (i = 0; i < KN_NELEMS(kn_comp_removable); i++) {
        if (strcmp(kind, kn_comp_removable[i]) == 0) {
            o->removable = 1;
        }
    }

    return KN_OK;
}


static kn_rc
kn_comp_resolve(kn_components_t *c, kn_comp_bundle_t *b, kn_comp_object_t *o)
{
    size_t       i;
    json_t      *names;
    const char  *kind, *plural;

    kind = json_string_value(json_object_get(o->obj, "kind"));

    for (i = 0; i < KN_NELEMS(kn_comp_kinds); i++) {
        if (strcmp(kind, kn_comp_kinds[i][0]) == 0) {
            strcpy(o->resource, kn_comp_kinds[i][1]);
            return KN_OK;
        }
    }

    for (i = 0; i < b->nobjects; i++) {
        if (!b->objects[i].crd) {
            continue;
        }

        names = json_object_get(json_object_get(b->objects[i].obj, "spec"),
                                "names");
        plural = json_string_value(json_object_get(names, "plural"));

        if (plural != NULL && strlen(plural) < sizeof(o->resource)
            && json_equal(json_object_get(names, "kind"),
                          json_object_get(o->obj, "kind")))
        {
            strcpy(o->resource, plural);
            return KN_OK;
        }
    }

    kn_log(c->log, KN_LOG_ERROR, "components: %s of the bundle %s: a kind "
           "neither built in nor defined by a CRD of the bundle", o->what,
           b->version);
    return KN_ERROR;
}


static void
kn_comp_free_bundles(kn_components_t *c)
{
    size_t             i, j, k;
    kn_comp_bundle_t  *b;

    for (i = 0; i < KN_COMP_N; i++) {
        for (j = 0; j < c->comps[i].nbundles; j++) {
            b = &c->comps[i].bundles[j];

            if (b->objects == NULL) {
                continue;
            }

            for (k = 0; k < b->nobjects; k++) {
                json_decref(b->objects[k].obj);
            }

            free(b->objects);
        }
    }
}


static int
kn_comp_yaml_file(const struct dirent *d)
{
    size_t  len;

    len = strlen(d->d_name);

    return d->d_name[0] >= '0' && d->d_name[0] <= '9'
           && len > 5 && strcmp(d->d_name + len - 5, ".yaml") == 0;
}


static int
kn_comp_subdir(const struct dirent *d)
{
    return d->d_name[0] != '.';
}


/* the applier's backend */


static kn_rc
kn_comp_apply(void *data, const char *name, int64_t generation, json_t *spec)
{
    kn_components_t  *c = data;

    kn_comp_queue(c, name, generation, json_incref(spec));
    return KN_OK;
}


static kn_rc
kn_comp_delete(void *data, const char *name, int64_t generation)
{
    kn_components_t  *c = data;

    kn_comp_queue(c, name, generation, NULL);
    return KN_OK;
}


/*
 * Only the newest config matters: one waiting behind the busy job is
 * superseded (and acked as such); a failed job waiting for its retry was
 * acked already and is simply replaced.
 */

static void
kn_comp_queue(kn_components_t *c, const char *name, int64_t generation,
    json_t *spec)
{
    kn_comp_job_t  *j;

    if (c->busy) {
        j = &c->next;

        if (c->has_next) {
            kn_applier_finished(c->applier, KN_COMPONENTS_KIND, j->name,
                                j->generation, 0, 0, "superseded by a "
                                "newer cluster configuration");
            json_decref(j->spec);
        }

        c->has_next = 1;

    } else {
        j = &c->job;

        if (c->has_job) {
            kn_timer_cancel(c->loop, &c->timer);
            json_decref(j->spec);
        }

        c->has_job = 1;
        c->retry_ms = KN_COMP_RETRY_MIN_MS;
    }

    snprintf(j->name, sizeof(j->name), "%s", name);
    j->generation = generation;
    j->spec = spec;

    if (!c->busy) {
        kn_comp_begin(c);
    }
}


static void
kn_comp_begin(kn_components_t *c)
{
    c->busy = 1;
    c->failed = 0;
    c->error[0] = '\0';
    c->comp = 0;
    c->obj = 0;
    c->bundle = NULL;

    if (c->job.spec == NULL) {
        c->phase = KN_COMP_DELETE;

    } else {
        c->phase = KN_COMP_BEGIN;
        c->config_generation = c->job.generation;
        kn_log(c->log, KN_LOG_INFO, "components: applying the cluster "
               "configuration at generation %lld",
               (long long) c->job.generation);
    }

    kn_comp_run(c);
}


/*
 * Submits the next request of the job, or finishes it.  Each request's
 * callback comes back here.
 */

static void
kn_comp_run(kn_components_t *c)
{
    size_t             i, k;
    json_t            *want;
    kn_rc              rc;
    kn_comp_t         *comp;
    const char        *version;
    kn_kube_ref_t      ref;
    kn_comp_object_t  *o;
    char               err[KN_APPLIER_ERROR_MAX];

    for ( ;; ) {

        switch (c->phase) {

        case KN_COMP_BEGIN:
            if (c->comp == KN_COMP_N) {
                c->phase = c->failed ? KN_COMP_STATUS : KN_COMP_CONFIG;
                continue;
            }

            comp = &c->comps[c->comp];
            want = json_object_get(json_object_get(c->job.spec,
                                                   "components"),
                                   comp->name);
            version = json_string_value(json_object_get(want, "version"));

            if (!json_is_true(json_object_get(want, "enabled"))) {

                /* removed already, or never here: nothing to do */

                if (strcmp(comp->state, "removed") == 0
                    || comp->state[0] == '\0')
                {
                    kn_comp_set_state(c, comp, comp->version[0]
                                      ? comp->version : version, "removed",
                                      NULL);
                    c->comp++;
                    continue;
                }

                /* what was installed goes, by the bundle it came from */

                c->bundle = NULL;
                for (k = 0; k < comp->nbundles; k++) {
                    if (strcmp(comp->bundles[k].version, comp->version)
                        == 0)
                    {
                        c->bundle = &comp->bundles[k];
                    }
                }

                if (c->bundle == NULL) {
                    kn_comp_set_state(c, comp, comp->version, "removed",
                                      "no bundle of this version here: "
                                      "nothing removed");
                    c->comp++;
                    continue;
                }

                c->obj = c->bundle->nobjects;
                c->phase = KN_COMP_REMOVE;
                continue;
            }

            c->bundle = NULL;
            for (k = 0; version && k < comp->nbundles; k++) {
                if (strcmp(comp->bundles[k].version, version) == 0) {
                    c->bundle = &comp->bundles[k];
                }
            }

            if (c->bundle == NULL) {
                snprintf(err, sizeof(err), "version %s is not shipped by "
                         "this Operator (%s)", version ? version : "(none)",
                         KN_VERSION);
                kn_comp_set_state(c, comp, version ? version : "", "failed",
                                  err);
                kn_comp_component_failed(c, err);
                continue;
            }

            kn_comp_set_state(c, comp, version, "installing", NULL);
            c->obj = 0;
            c->phase = KN_COMP_CRDS;
            continue;

        case KN_COMP_CRDS:
        case KN_COMP_WAIT:
        case KN_COMP_REST:
            for (i = c->obj; i < c->bundle->nobjects; i++) {
                if (c->bundle->objects[i].crd == (c->phase != KN_COMP_REST)) {
                    break;
                }
            }

            if (i == c->bundle->nobjects) {
                c->obj = 0;

                if (c->phase == KN_COMP_CRDS) {
                    c->phase = KN_COMP_WAIT;
                    c->deadline = kn_loop_now(c->loop) + KN_COMP_WAIT_MS;

                } else if (c->phase == KN_COMP_WAIT) {
                    c->phase = KN_COMP_REST;

                } else {
                    comp = &c->comps[c->comp];
                    kn_log(c->log, KN_LOG_INFO, "components: %s %s "
                           "installed (%zu objects)", comp->name,
                           c->bundle->version, c->bundle->nobjects);
                    kn_comp_set_state(c, comp, c->bundle->version,
                                      "installed", NULL);
                    c->comp++;
                    c->phase = KN_COMP_BEGIN;
                }

                continue;
            }

            c->obj = i;
            o = &c->bundle->objects[i];

            if (c->phase == KN_COMP_WAIT) {
                memset(&ref, 0, sizeof(ref));
                ref.api_version = o->api_version;
                ref.resource = o->resource;
                ref.name = o->name;
                rc = kn_kube_get(c->kube, &ref, kn_comp_request_done, c,
                                 &c->req);

            } else {
                rc = kn_comp_submit_apply(c, o);
            }

            break;

        case KN_COMP_REMOVE:
            while (c->obj > 0 && !c->bundle->objects[c->obj - 1].removable) {
                c->obj--;
            }

            if (c->obj == 0) {
                comp = &c->comps[c->comp];
                kn_log(c->log, KN_LOG_INFO, "components: %s removed (its "
                       "CRDs and namespace kept)", comp->name);
                kn_comp_set_state(c, comp, comp->version, "removed", NULL);
                c->comp++;
                c->phase = KN_COMP_BEGIN;
                continue;
            }

            o = &c->bundle->objects[--c->obj];

            memset(&ref, 0, sizeof(ref));
            ref.api_version = o->api_version;
            ref.resource = o->resource;
            ref.namespace = o->namespace_[0] ? o->namespace_ : NULL;
            ref.name = o->name;
            rc = kn_kube_delete(c->kube, &ref, "Background",
                                kn_comp_request_done, c, &c->req);
            break;

        case KN_COMP_CONFIG:
            rc = kn_comp_submit_config(c);
            break;

        case KN_COMP_STATUS:
            rc = kn_comp_submit_status(c);
            break;

        case KN_COMP_DELETE:
            memset(&ref, 0, sizeof(ref));
            ref.api_version = KN_TENANT_API_VERSION;
            ref.resource = "novaclusterconfigs";
            ref.name = c->job.name;
            rc = kn_kube_delete(c->kube, &ref, NULL, kn_comp_request_done,
                                c, &c->req);
            break;

        default: /* KN_COMP_DONE */
            kn_comp_finish(c);
            return;
        }

        if (rc == KN_OK) {
            return;
        }

        /* not submitted (too many requests, or out of memory): later */

        snprintf(err, sizeof(err), "a Kubernetes request could not be "
                 "submitted");

        if (c->phase <= KN_COMP_REMOVE) {
            kn_comp_set_state(c, &c->comps[c->comp],
                              c->comps[c->comp].version, "failed", err);
            kn_comp_component_failed(c, err);
            continue;
        }

        c->failed = 1;
        snprintf(c->error, sizeof(c->error), "%s", err);
        c->phase = KN_COMP_DONE;
    }
}


static void
kn_comp_request_done(const kn_kube_result_t *res, void *data)
{
    kn_components_t  *c = data;

    char               err[KN_APPLIER_ERROR_MAX];
    kn_comp_t         *comp;
    kn_comp_object_t  *o;

    c->req = NULL;

    switch (c->phase) {

    case KN_COMP_CRDS:
    case KN_COMP_REST:
    case KN_COMP_WAIT:
    case KN_COMP_REMOVE:
        comp = &c->comps[c->comp];
        o = &c->bundle->objects[c->obj];

        if (res->error != NULL
            && !(c->phase == KN_COMP_REMOVE && res->status == 404))
        {
            snprintf(err, sizeof(err), "%s %s: %s", c->phase == KN_COMP_REMOVE
                     ? "deleting" : c->phase == KN_COMP_WAIT ? "reading"
                     : "applying", o->what, res->error);
            kn_log(c->log, KN_LOG_WARN, "components: %s: %s", comp->name,
                   err);
            kn_comp_set_state(c, comp, comp->version, "failed", err);
            kn_comp_component_failed(c, err);
            break;
        }

        if (c->phase == KN_COMP_WAIT
            && !kn_kube_condition_true(res->body, "Established"))
        {
            if (kn_loop_now(c->loop) < c->deadline) {
                (void) kn_timer_add(c->loop, &c->timer, KN_COMP_POLL_MS);
                return;
            }

            snprintf(err, sizeof(err), "%s is not Established after %d ms",
                     o->what, KN_COMP_WAIT_MS);
            kn_comp_set_state(c, comp, comp->version, "failed", err);
            kn_comp_component_failed(c, err);
            break;
        }

        if (c->phase != KN_COMP_REMOVE) {
            kn_log(c->log, KN_LOG_DEBUG, "components: %s: %s %s", comp->name,
                   c->phase == KN_COMP_WAIT ? "established" : "applied",
                   o->what);
            c->obj++;
        }

        break;

    case KN_COMP_CONFIG:
    case KN_COMP_STATUS:
    case KN_COMP_DELETE:
        if (res->error != NULL
            && !(c->phase == KN_COMP_DELETE && res->status == 404))
        {
            c->failed = 1;
            snprintf(c->error, sizeof(c->error), "%s the NovaClusterConfig: "
                     "%s", c->phase == KN_COMP_DELETE ? "deleting"
                     : "applying", res->error);
            c->phase = KN_COMP_DONE;
            break;
        }

        c->phase = c->phase == KN_COMP_CONFIG ? KN_COMP_STATUS
                                              : KN_COMP_DONE;
        break;

    default:
        break;
    }

    kn_comp_run(c);
}


/* a poll while a CRD is not Established yet, or the retry of a failure */

static void
kn_comp_timer(kn_timer_t *timer)
{
    kn_components_t  *c = timer->data;

    if (c->busy) {
        kn_comp_run(c);
        return;
    }

    if (c->has_job) {
        kn_comp_begin(c);
    }
}


/* a component failed: the others are still worked through */

static void
kn_comp_component_failed(kn_components_t *c, const char *error)
{
    /* the first failure is what the ack says (cut to its size) */

    if (!c->failed
        && snprintf(c->error, sizeof(c->error), "%s: %s",
                    c->comps[c->comp].name, error)
           >= (int) sizeof(c->error))
    {
        c->error[sizeof(c->error) - 2] = '.';
    }

    c->failed = 1;
    c->comp++;
    c->phase = KN_COMP_BEGIN;
}


static void
kn_comp_finish(kn_components_t *c)
{
    int       deleted;
    uint64_t  delay;

    c->busy = 0;
    deleted = c->job.spec == NULL;

    if (c->failed) {
        kn_log(c->log, KN_LOG_WARN, "components: the cluster configuration "
               "at generation %lld failed: %s; again in %llu ms",
               (long long) c->job.generation, c->error,
               (unsigned long long) c->retry_ms);

    } else {
        kn_log(c->log, KN_LOG_INFO, "components: the cluster configuration "
               "at generation %lld %s", (long long) c->job.generation,
               deleted ? "deleted" : "applied");
    }

    kn_applier_finished(c->applier, KN_COMPONENTS_KIND, c->job.name,
                        c->job.generation, deleted, !c->failed,
                        c->failed ? c->error : NULL);

    if (c->has_next) {
        json_decref(c->job.spec);
        c->job = c->next;
        c->next.spec = NULL;
        c->has_next = 0;
        c->retry_ms = KN_COMP_RETRY_MIN_MS;
        kn_comp_begin(c);
        return;
    }

    if (c->failed) {
        delay = c->retry_ms;
        c->retry_ms = c->retry_ms * 2 > KN_COMP_RETRY_MAX_MS
                      ? KN_COMP_RETRY_MAX_MS : c->retry_ms * 2;

        if (kn_timer_add(c->loop, &c->timer, delay) == KN_OK) {
            return;
        }
    }

    json_decref(c->job.spec);
    c->job.spec = NULL;
    c->has_job = 0;
}


static kn_rc
kn_comp_submit_apply(kn_components_t *c, kn_comp_object_t *o)
{
    kn_kube_ref_t  ref;

    memset(&ref, 0, sizeof(ref));
    ref.api_version = o->api_version;
    ref.resource = o->resource;
    ref.namespace = o->namespace_[0] ? o->namespace_ : NULL;
    ref.name = o->name;

    return kn_kube_apply(c->kube, &ref, o->obj, kn_comp_request_done, c,
                         &c->req);
}


/* the NovaClusterConfig: the spec, with the generation applied */

static kn_rc
kn_comp_submit_config(kn_components_t *c)
{
    char           gen[32];
    kn_rc          rc;
    json_t        *obj;
    kn_kube_ref_t  ref;

    snprintf(gen, sizeof(gen), "%lld", (long long) c->job.generation);

    obj = json_pack("{s:s, s:s, s:{s:s, s:{s:s}, s:{s:s}}, s:O}",
                    "apiVersion", KN_TENANT_API_VERSION,
                    "kind", "NovaClusterConfig",
                    "metadata", "name", c->job.name,
                    "labels", "app.kubernetes.io/managed-by",
                    KN_KUBE_FIELD_MANAGER,
                    "annotations", KN_COMP_GENERATION, gen,
                    "spec", c->job.spec);
    if (obj == NULL) {
        return KN_ERROR;
    }

    memset(&ref, 0, sizeof(ref));
    ref.resource = "novaclusterconfigs";

    rc = kn_kube_apply(c->kube, &ref, obj, kn_comp_request_done, c, &c->req);
    json_decref(obj);

    return rc;
}


/* its status: the components' states (what a restart starts from) */

static kn_rc
kn_comp_submit_status(kn_components_t *c)
{
    kn_rc          rc;
    json_t        *obj, *states;
    kn_kube_ref_t  ref;

    states = kn_comp_states_json(c);
    if (states == NULL) {
        return KN_ERROR;
    }

    obj = json_pack("{s:s, s:s, s:{s:s}, s:{s:I, s:o}}",
                    "apiVersion", KN_TENANT_API_VERSION,
                    "kind", "NovaClusterConfig",
                    "metadata", "name", c->job.name,
                    "status", "configGeneration",
                    (json_int_t) c->config_generation,
                    "components", states);
    if (obj == NULL) {
        return KN_ERROR;
    }

    memset(&ref, 0, sizeof(ref));
    ref.resource = "novaclusterconfigs";
    ref.subresource = "status";

    rc = kn_kube_apply(c->kube, &ref, obj, kn_comp_request_done, c, &c->req);
    json_decref(obj);

    return rc;
}


/* the components' states, and the Manager hears of every change */

static void
kn_comp_set_state(kn_components_t *c, kn_comp_t *comp, const char *version,
    const char *state, const char *message)
{
    char  v[KN_COMP_VERSION_MAX];

    snprintf(v, sizeof(v), "%s", version ? version : "");

    if (strcmp(comp->state, state) == 0 && strcmp(comp->version, v) == 0
        && strcmp(comp->message, message ? message : "") == 0)
    {
        return;
    }

    snprintf(comp->version, sizeof(comp->version), "%s", v);
    snprintf(comp->state, sizeof(comp->state), "%s", state);
    snprintf(comp->message, sizeof(comp->message), "%s",
             message ? message : "");

    kn_comp_report(c);
}


static void
kn_comp_report(kn_components_t *c)
{
    size_t                            i, n;
    Kubenova__V1__Component           items[KN_COMP_N];
    Kubenova__V1__Component          *ptrs[KN_COMP_N];
    Kubenova__V1__ComponentStatus     st = KUBENOVA__V1__COMPONENT_STATUS__INIT;

    n = 0;

    for (i = 0; i < KN_COMP_N; i++) {
        if (c->comps[i].state[0] == '\0') {
            continue;
        }

        kubenova__v1__component__init(&items[n]);
        items[n].name = (char *) c->comps[i].name;
        items[n].version = c->comps[i].version;
        items[n].state = c->comps[i].state;
        items[n].message = c->comps[i].message;
        ptrs[n] = &items[n];
        n++;
    }

    if (n == 0) {
        return;
    }

    st.config_generation = c->config_generation;
    st.n_components = n;
    st.components = ptrs;

    /* not connected: the next stream sends them */
    (void) c->send(c->send_data, &st);
}


static json_t *
kn_comp_states_json(kn_components_t *c)
{
    size_t   i;
    json_t  *list, *item;

    list = json_array();

    for (i = 0; list && i < KN_COMP_N; i++) {
        if (c->comps[i].state[0] == '\0') {
            continue;
        }

        item = json_pack("{s:s, s:s, s:s, s:s}", "name", c->comps[i].name,
                         "version", c->comps[i].version,
                         "state", c->comps[i].state,
                         "message", c->comps[i].message);

        if (item == NULL || json_array_append_new(list, item) != 0) {
            json_decref(list);
            return NULL;
        }
    }

    return list;
}


void
kn_components_connected(kn_components_t *c)
{
    kn_comp_report(c);
}


/* start: what the cluster holds */


kn_rc
kn_components_start(kn_components_t *c, kn_components_ready_pt ready,
    void *data)
{
    c->ready = ready;
    c->ready_data = data;

    kn_comp_start_run(&c->start_timer);

    return KN_OK;
}


static void
kn_comp_start_run(kn_timer_t *timer)
{
    kn_components_t  *c = timer->data;

    kn_kube_ref_t        ref;
    kn_kube_list_opts_t  lo;

    memset(&ref, 0, sizeof(ref));
    ref.api_version = KN_TENANT_API_VERSION;
    ref.resource = "novaclusterconfigs";
    memset(&lo, 0, sizeof(lo));

    if (kn_kube_list(c->kube, &ref, &lo, kn_comp_list_done, c, &c->start_req)
        != KN_OK)
    {
        (void) kn_timer_add(c->loop, &c->start_timer, KN_COMP_START_RETRY_MS);
    }
}


static void
kn_comp_list_done(const kn_kube_result_t *res, void *data)
{
    kn_components_t  *c = data;

    size_t       i, j, k;
    json_t      *item, *st, *s;
    long long    gen;
    const char  *name, *g, *sname;

    c->start_req = NULL;

    if (res->error != NULL) {
        kn_log(c->log, KN_LOG_WARN, "components: cannot list the "
               "NovaClusterConfigs: %s; again in %d ms", res->error,
               KN_COMP_START_RETRY_MS);
        (void) kn_timer_add(c->loop, &c->start_timer, KN_COMP_START_RETRY_MS);
        return;
    }

    json_array_foreach(json_object_get(res->body, "items"), i, item) {
        name = json_string_value(json_object_get(json_object_get(item,
                                                     "metadata"), "name"));
        g = json_string_value(json_object_get(json_object_get(
                json_object_get(item, "metadata"), "annotations"),
                KN_COMP_GENERATION));

        if (name == NULL || g == NULL || sscanf(g, "%lld", &gen) != 1) {
            continue;
        }

        if (kn_applier_record(c->applier, KN_COMPONENTS_KIND, name, gen)
            != KN_OK)
        {
            continue;
        }

        kn_log(c->log, KN_LOG_INFO, "components: the cluster holds "
               "NovaClusterConfig \"%s\" at generation %lld already", name,
               gen);

        st = json_object_get(item, "status");
        c->config_generation = json_integer_value(json_object_get(st,
                                                   "configGeneration"));

        json_array_foreach(json_object_get(st, "components"), j, s) {
            sname = json_string_value(json_object_get(s, "name"));

            for (k = 0; sname && k < KN_COMP_N; k++) {
                if (strcmp(sname, c->comps[k].name) != 0) {
                    continue;
                }

                snprintf(c->comps[k].version, sizeof(c->comps[k].version),
                         "%s", json_string_value(json_object_get(s,
                                                     "version")) ?: "");
                snprintf(c->comps[k].state, sizeof(c->comps[k].state), "%s",
                         json_string_value(json_object_get(s, "state"))
                         ?: "");
                snprintf(c->comps[k].message, sizeof(c->comps[k].message),
                         "%s", json_string_value(json_object_get(s,
                                                     "message")) ?: "");
            }
        }
    }

    c->ready(c->ready_data);
}
