/*
 * Suspending and resuming a tenant's workloads (see kn_suspend.h).  A pass
 * walks the lists (each namespace, each kind) one after the other, gathers
 * the patches they call for, then sends them one after the other.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kn_suspend.h"


#define KN_SUSPEND_NS_MAX      (253 + 1)
#define KN_SUSPEND_ERROR_MAX   512
#define KN_SUSPEND_PASSES      5        /* lists again after a conflict */
#define KN_SUSPEND_PATH_MAX    1024


static const struct {
    const char  *resource;
    const char  *kind;
} kn_suspend_kinds[] = {
    { "deployments", "Deployment" },
    { "statefulsets", "StatefulSet" }
};


struct kn_suspend_s {
    kn_kube_t          *kube;
    const kn_log_t     *log;
    kn_kube_done_pt     done;
    void               *data;
    int                 suspended;

    size_t              nns;
    size_t              list;           /* the list in progress:
                                           namespace * kinds + kind */
    json_t             *patches;        /* [{"kind", "ns", "name",
                                             "patch"}] of this pass */
    size_t              next;           /* the patch to send */
    unsigned            passes;
    unsigned            conflicts;      /* in this pass */
    unsigned            changed;        /* workloads patched, every pass */
    kn_kube_req_t      *req;            /* the one request in flight */

    char                error[KN_SUSPEND_ERROR_MAX];
    char                ns[KN_SUSPEND_NS][KN_SUSPEND_NS_MAX];
};


static void kn_suspend_pass(kn_suspend_t *s);
static void kn_suspend_list(kn_suspend_t *s);
static kn_rc kn_suspend_submit_list(kn_suspend_t *s);
static void kn_suspend_list_done(const kn_kube_result_t *res, void *data);
static void kn_suspend_send(kn_suspend_t *s);
static void kn_suspend_patch_done(const kn_kube_result_t *res, void *data);
static void kn_suspend_finish(kn_suspend_t *s);
static void kn_suspend_free(kn_suspend_t *s);


kn_rc
kn_suspend_start(kn_kube_t *kube, const kn_log_t *log,
    const char *const *namespaces, size_t n, int suspended,
    kn_kube_done_pt done, void *data, kn_suspend_t **out)
{
    size_t         i;
    kn_suspend_t  *s;

    if (n == 0 || n > KN_SUSPEND_NS) {
        return KN_ERROR;
    }

    s = calloc(1, sizeof(kn_suspend_t));
    if (s == NULL) {
        kn_log(log, KN_LOG_ERROR, "workloads: out of memory");
        return KN_ERROR;
    }

    for (i = 0; i < n; i++) {
        if (strlen(namespaces[i]) >= sizeof(s->ns[i])) {
            free(s);
            return KN_ERROR;
        }
        strcpy(s->ns[i], namespaces[i]);
    }

    s->kube = kube;
    s->log = log;
    s->done = done;
    s->data = data;
    s->suspended = suspended;
    s->nns = n;
    s->patches = json_array();

    if (s->patches == NULL) {
        free(s);
        kn_log(log, KN_LOG_ERROR, "workloads: out of memory");
        return KN_ERROR;
    }

    /* the first list is submitted here: a refusal is the caller's */
    if (kn_suspend_submit_list(s) != KN_OK) {
        kn_suspend_free(s);
        return KN_AGAIN;
    }

    *out = s;

    return KN_OK;
}


void
kn_suspend_cancel(kn_suspend_t *s)
{
    if (s == NULL) {
        return;
    }

    kn_kube_cancel(s->req);
    kn_suspend_free(s);
}


static void
kn_suspend_free(kn_suspend_t *s)
{
    json_decref(s->patches);
    free(s);
}


/* from the first list again */

static void
kn_suspend_pass(kn_suspend_t *s)
{
    s->passes++;
    s->conflicts = 0;
    s->list = 0;
    s->next = 0;
    json_array_clear(s->patches);

    kn_suspend_list(s);
}


static void
kn_suspend_list(kn_suspend_t *s)
{
    kn_rc  rc;

    if (s->list == s->nns * KN_NELEMS(kn_suspend_kinds)) {
        kn_suspend_send(s);
        return;
    }

    rc = kn_suspend_submit_list(s);

    if (rc != KN_OK) {
        snprintf(s->error, sizeof(s->error), "cannot submit the list of %s "
                 "in namespace \"%s\"%s",
                 kn_suspend_kinds[s->list % KN_NELEMS(kn_suspend_kinds)]
                 .resource, s->ns[s->list / KN_NELEMS(kn_suspend_kinds)],
                 rc == KN_AGAIN ? ": too many Kubernetes requests" : "");
        kn_suspend_finish(s);
    }
}


static kn_rc
kn_suspend_submit_list(kn_suspend_t *s)
{
    kn_rc          rc;
    kn_kube_ref_t  ref;

    memset(&ref, 0, sizeof(ref));
    ref.api_version = "apps/v1";
    ref.resource = kn_suspend_kinds[s->list % KN_NELEMS(kn_suspend_kinds)]
                   .resource;
    ref.namespace = s->ns[s->list / KN_NELEMS(kn_suspend_kinds)];

    rc = kn_kube_list(s->kube, &ref, NULL, kn_suspend_list_done, s, &s->req);
    if (rc != KN_OK) {
        s->req = NULL;
    }

    return rc;
}


static void
kn_suspend_list_done(const kn_kube_result_t *res, void *data)
{
    kn_suspend_t  *s = data;
    json_t        *item, *patch, *entry;
    size_t         i, k;
    const char    *name;

    s->req = NULL;
    k = s->list % KN_NELEMS(kn_suspend_kinds);

    if (res->error != NULL) {
        snprintf(s->error, sizeof(s->error), "listing %s in namespace "
                 "\"%s\": %s", kn_suspend_kinds[k].resource,
                 s->ns[s->list / KN_NELEMS(kn_suspend_kinds)], res->error);
        kn_suspend_finish(s);
        return;
    }

    json_array_foreach(json_object_get(res->body, "items"), i, item) {
        name = json_string_value(json_object_get(
                   json_object_get(item, "metadata"), "name"));
        patch = kn_suspend_patch(item, s->suspended);

        if (name == NULL || patch == NULL) {
            json_decref(patch);
            continue;
        }

        entry = json_pack("{s:i, s:s, s:s, s:o}", "kind", (int) k,
                          "ns", s->ns[s->list / KN_NELEMS(kn_suspend_kinds)],
                          "name", name, "patch", patch);

        if (entry == NULL || json_array_append_new(s->patches, entry) != 0) {
            snprintf(s->error, sizeof(s->error), "out of memory");
            kn_suspend_finish(s);
            return;
        }
    }

    s->list++;
    kn_suspend_list(s);
}


static void
kn_suspend_send(kn_suspend_t *s)
{
    char           path[KN_SUSPEND_PATH_MAX];
    kn_rc          rc;
    json_t        *entry;
    kn_kube_ref_t  ref;

    if (s->next == json_array_size(s->patches)) {
        if (s->conflicts == 0) {
            kn_suspend_finish(s);

        } else if (s->passes + 1 < KN_SUSPEND_PASSES) {
            kn_log(s->log, KN_LOG_INFO, "workloads: %u changed while being "
                   "%s; listing them again", s->conflicts,
                   s->suspended ? "suspended" : "resumed");
            kn_suspend_pass(s);

        } else {
            snprintf(s->error, sizeof(s->error), "workloads in namespace "
                     "\"%s\" kept changing while being %s (%u passes)",
                     s->ns[0], s->suspended ? "suspended" : "resumed",
                     KN_SUSPEND_PASSES);
            kn_suspend_finish(s);
        }
        return;
    }

    entry = json_array_get(s->patches, s->next);

    memset(&ref, 0, sizeof(ref));
    ref.api_version = "apps/v1";
    ref.resource = kn_suspend_kinds[json_integer_value(
                       json_object_get(entry, "kind"))].resource;
    ref.namespace = json_string_value(json_object_get(entry, "ns"));
    ref.name = json_string_value(json_object_get(entry, "name"));

    if (kn_kube_path(&ref, path, sizeof(path)) != KN_OK) {
        /* a name the server listed but no path can carry: skip it */
        kn_log(s->log, KN_LOG_WARN, "workloads: %s \"%s\" in namespace "
               "\"%s\": invalid name, left alone", ref.resource, ref.name,
               ref.namespace);
        s->next++;
        kn_suspend_send(s);
        return;
    }

    rc = kn_kube_request(s->kube, "PATCH", path,
                         "application/merge-patch+json",
                         json_object_get(entry, "patch"),
                         kn_suspend_patch_done, s, &s->req);

    if (rc != KN_OK) {
        s->req = NULL;
        snprintf(s->error, sizeof(s->error), "cannot submit the patch of "
                 "%s \"%s\" in namespace \"%s\"%s", ref.resource, ref.name,
                 ref.namespace,
                 rc == KN_AGAIN ? ": too many Kubernetes requests" : "");
        kn_suspend_finish(s);
    }
}


static void
kn_suspend_patch_done(const kn_kube_result_t *res, void *data)
{
    kn_suspend_t  *s = data;
    json_t        *entry, *spec;
    const char    *kind;

    s->req = NULL;
    entry = json_array_get(s->patches, s->next);

    if (res->status == 409) {
        /* changed since the list: what to remember is unknown */
        s->conflicts++;

    } else if (res->status == 404) {
        /* deleted since the list: nothing to scale */

    } else if (res->error != NULL) {
        snprintf(s->error, sizeof(s->error), "patching %s \"%s\" in "
                 "namespace \"%s\": %s",
                 kn_suspend_kinds[json_integer_value(
                     json_object_get(entry, "kind"))].resource,
                 json_string_value(json_object_get(entry, "name")),
                 json_string_value(json_object_get(entry, "ns")),
                 res->error);
        kn_suspend_finish(s);
        return;

    } else {
        s->changed++;
        kind = kn_suspend_kinds[json_integer_value(
                   json_object_get(entry, "kind"))].kind;
        spec = json_object_get(json_object_get(entry, "patch"), "spec");

        if (spec == NULL) {
            kn_log(s->log, KN_LOG_WARN, "workloads: %s %s/%s: an invalid "
                   KN_SUSPEND_ANNOT " annotation removed, replicas left "
                   "as they are", kind,
                   json_string_value(json_object_get(entry, "ns")),
                   json_string_value(json_object_get(entry, "name")));

        } else {
            kn_log(s->log, KN_LOG_INFO, "workloads: %s %s/%s %s %"
                   JSON_INTEGER_FORMAT " replica(s)", kind,
                   json_string_value(json_object_get(entry, "ns")),
                   json_string_value(json_object_get(entry, "name")),
                   s->suspended ? "scaled to" : "restored to",
                   json_integer_value(json_object_get(spec, "replicas")));
        }
    }

    s->next++;
    kn_suspend_send(s);
}


/* the pass ended: report to the caller, who may free what holds s */

static void
kn_suspend_finish(kn_suspend_t *s)
{
    char               error[KN_SUSPEND_ERROR_MAX];
    void              *data;
    kn_kube_done_pt    done;
    kn_kube_result_t   res;

    memset(&res, 0, sizeof(res));
    res.status = s->error[0] ? 500 : 200;

    if (s->error[0]) {
        strcpy(error, s->error);
        res.error = error;
    }

    res.attempts = s->passes + 1;
    done = s->done;
    data = s->data;

    kn_suspend_free(s);

    done(&res, data);
}


/* -- one workload ----------------------------------------------------------- */


json_t *
kn_suspend_patch(json_t *w, int suspended)
{
    char          buf[32], *end;
    json_t       *meta, *rv, *remembered, *replicas, *annots, *patch,
                 *pmeta;
    json_int_t    n;
    long long     v;
    const char   *text;

    meta = json_object_get(w, "metadata");
    rv = json_object_get(meta, "resourceVersion");
    remembered = json_object_get(json_object_get(meta, "annotations"),
                                 KN_SUSPEND_ANNOT);
    replicas = json_object_get(json_object_get(w, "spec"), "replicas");

    /* the API server defaults an absent count to 1 */
    n = json_is_integer(replicas) ? json_integer_value(replicas) : 1;

    annots = NULL;

    if (suspended) {
        if (remembered == NULL) {
            if (n == 0) {
                return NULL;
            }
            snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, n);
            annots = json_pack("{s:s}", KN_SUSPEND_ANNOT, buf);

        } else if (n == 0) {
            return NULL;
        }

        n = 0;

    } else {
        if (remembered == NULL) {
            return NULL;
        }

        text = json_string_value(remembered);
        errno = 0;
        v = text ? strtoll(text, &end, 10) : -1;

        if (text == NULL || end == text || *end != '\0' || errno != 0
            || v < 0 || v > INT32_MAX)
        {
            /* not ours to interpret: only the annotation goes */
            n = -1;

        } else {
            n = (json_int_t) v;
        }

        annots = json_pack("{s:n}", KN_SUSPEND_ANNOT);
    }

    pmeta = json_object();
    patch = json_object();

    if (pmeta == NULL || patch == NULL) {
        json_decref(annots);
        json_decref(pmeta);
        json_decref(patch);
        return NULL;
    }

    /* a precondition: a workload changed since it was read answers 409 */
    if (json_is_string(rv)) {
        json_object_set(pmeta, "resourceVersion", rv);
    }

    if (annots != NULL) {
        json_object_set_new(pmeta, "annotations", annots);
    }

    json_object_set_new(patch, "metadata", pmeta);

    if (n >= 0) {
        json_object_set_new(patch, "spec", json_pack("{s:I}", "replicas", n));
    }

    return patch;
}
