/*
 * The recording applier (see kn_applier.h): a chained hash table of fixed
 * bucket count, at most max_objects entries.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "kn_applier.h"


typedef struct kn_applied_s  kn_applied_t;

struct kn_applied_s {
    kn_applied_t        *next;
    int64_t              generation;
    char                 kind[KN_APPLIER_KIND_MAX];
    char                 name[KN_APPLIER_NAME_MAX];
};


struct kn_applier_s {
    const kn_log_t      *log;
    kn_applied_t       **buckets;
    size_t               nbuckets;          /* a power of two */
    size_t               count;
    size_t               max_objects;
    kn_applier_done_pt   done;
    void                *data;
    kn_applier_backend_t backends[3];       /* by kn_applier_kinds index */
};


/* the kinds the Manager places on clusters */
static const char  *kn_applier_kinds[] = {
    "Tenant", "Application", "ClusterConfig"
};


static kn_rc kn_applier_check(kn_applier_t *applier, const char *kind,
    const char *name, char *error, size_t size);
static kn_applied_t **kn_applier_slot(kn_applier_t *applier,
    const char *kind, const char *name);
static kn_applier_backend_t *kn_applier_backend(kn_applier_t *applier,
    const char *kind);
static kn_rc kn_applier_put(kn_applier_t *applier, const char *kind,
    const char *name, int64_t generation, char *error, size_t size);


kn_rc
kn_applier_create(const kn_log_t *log, size_t max_objects,
    kn_applier_done_pt done, void *data, kn_applier_t **out)
{
    kn_applier_t  *applier;

    applier = calloc(1, sizeof(kn_applier_t));
    if (applier == NULL) {
        kn_log(log, KN_LOG_ERROR, "applier: out of memory");
        return KN_ERROR;
    }

    applier->log = log;
    applier->max_objects = max_objects;
    applier->done = done;
    applier->data = data;

    for (applier->nbuckets = 64;
         applier->nbuckets < max_objects / 2;
         applier->nbuckets *= 2)
    {
        /* void */
    }

    applier->buckets = calloc(applier->nbuckets, sizeof(kn_applied_t *));
    if (applier->buckets == NULL) {
        free(applier);
        kn_log(log, KN_LOG_ERROR, "applier: out of memory");
        return KN_ERROR;
    }

    *out = applier;
    return KN_OK;
}


void
kn_applier_destroy(kn_applier_t *applier)
{
    size_t         i;
    kn_applied_t  *a, *next;

    if (applier == NULL) {
        return;
    }

    for (i = 0; i < applier->nbuckets; i++) {
        for (a = applier->buckets[i]; a; a = next) {
            next = a->next;
            free(a);
        }
    }

    free(applier->buckets);
    free(applier);
}


kn_rc
kn_applier_apply(kn_applier_t *applier, const char *kind, const char *name,
    int64_t generation, const uint8_t *payload, size_t len)
{
    char                   error[KN_APPLIER_ERROR_MAX];
    kn_rc                  rc;
    json_t                *spec;
    json_error_t           jerr;
    kn_applier_backend_t  *backend;

    if (kn_applier_check(applier, kind, name, error, sizeof(error))
        != KN_OK)
    {
        goto refused;
    }

    spec = json_loadb((const char *) payload, len, JSON_REJECT_DUPLICATES,
                      &jerr);

    if (spec == NULL || !json_is_object(spec)) {
        snprintf(error, sizeof(error), "the payload of %s \"%s\" is not a "
                 "JSON object%s%s", kind, name, spec ? "" : ": ",
                 spec ? "" : jerr.text);
        json_decref(spec);
        goto refused;
    }

    backend = kn_applier_backend(applier, kind);

    if (backend != NULL) {
        if (kn_applier_slot(applier, kind, name)[0] == NULL
            && applier->count == applier->max_objects)
        {
            json_decref(spec);
            snprintf(error, sizeof(error), "this cluster holds %zu objects "
                     "already, the most it may (--max-objects)",
                     applier->max_objects);
            goto refused;
        }

        rc = backend->apply(backend->data, name, generation, spec);
        json_decref(spec);

        if (rc != KN_OK) {
            snprintf(error, sizeof(error), "the Operator cannot take more "
                     "work for %s \"%s\" now", kind, name);
            goto refused;
        }

        return KN_OK;
    }

    json_decref(spec);

    if (kn_applier_put(applier, kind, name, generation, error,
                       sizeof(error))
        != KN_OK)
    {
        goto refused;
    }

    kn_log(applier->log, KN_LOG_INFO, "applier: applied %s \"%s\" at "
           "generation %lld", kind, name, (long long) generation);

    applier->done(applier->data, kind, name, generation, 1, NULL);
    return KN_OK;

refused:

    kn_log(applier->log, KN_LOG_WARN, "applier: cannot apply %s \"%s\" at "
           "generation %lld: %s", kind, name, (long long) generation, error);

    applier->done(applier->data, kind, name, generation, 0, error);
    return KN_OK;
}


/* deleting what is not held is done at once: the Manager wants it gone */

kn_rc
kn_applier_delete(kn_applier_t *applier, const char *kind, const char *name,
    int64_t generation)
{
    char                   error[KN_APPLIER_ERROR_MAX];
    kn_applied_t          *a, **slot;
    kn_applier_backend_t  *backend;

    if (strlen(kind) >= KN_APPLIER_KIND_MAX
        || strlen(name) >= KN_APPLIER_NAME_MAX)
    {
        snprintf(error, sizeof(error), "a kind of at most %d and a name of "
                 "at most %d characters", KN_APPLIER_KIND_MAX - 1,
                 KN_APPLIER_NAME_MAX - 1);
        applier->done(applier->data, kind, name, generation, 0, error);
        return KN_OK;
    }

    backend = kn_applier_backend(applier, kind);

    if (backend != NULL) {
        if (backend->delete_(backend->data, name, generation) == KN_OK) {
            return KN_OK;
        }

        snprintf(error, sizeof(error), "the Operator cannot take more "
                 "work for %s \"%s\" now", kind, name);
        applier->done(applier->data, kind, name, generation, 0, error);
        return KN_OK;
    }

    slot = kn_applier_slot(applier, kind, name);
    a = *slot;

    if (a) {
        *slot = a->next;
        free(a);
        applier->count--;
    }

    kn_log(applier->log, KN_LOG_INFO, "applier: deleted %s \"%s\" at "
           "generation %lld%s", kind, name, (long long) generation,
           a ? "" : " (it was not here)");

    applier->done(applier->data, kind, name, generation, 1, NULL);
    return KN_OK;
}


kn_rc
kn_applier_set_backend(kn_applier_t *applier, const char *kind,
    const kn_applier_backend_t *backend)
{
    size_t  i;

    for (i = 0; i < KN_NELEMS(kn_applier_kinds); i++) {
        if (strcmp(kind, kn_applier_kinds[i]) == 0) {
            applier->backends[i] = *backend;
            return KN_OK;
        }
    }

    kn_log(applier->log, KN_LOG_ERROR, "applier: no kind \"%s\"", kind);
    return KN_ERROR;
}


void
kn_applier_finished(kn_applier_t *applier, const char *kind,
    const char *name, int64_t generation, int deleted, int ok,
    const char *error)
{
    char           err[KN_APPLIER_ERROR_MAX];
    kn_applied_t  *a, **slot;

    if (ok && deleted) {
        slot = kn_applier_slot(applier, kind, name);
        a = *slot;

        if (a) {
            *slot = a->next;
            free(a);
            applier->count--;
        }

    } else if (ok) {
        if (kn_applier_put(applier, kind, name, generation, err, sizeof(err))
            != KN_OK)
        {
            ok = 0;
            error = err;
        }
    }

    applier->done(applier->data, kind, name, generation, ok, error);
}


kn_rc
kn_applier_record(kn_applier_t *applier, const char *kind, const char *name,
    int64_t generation)
{
    char  error[KN_APPLIER_ERROR_MAX];

    if (kn_applier_check(applier, kind, name, error, sizeof(error)) != KN_OK
        || kn_applier_put(applier, kind, name, generation, error,
                          sizeof(error)) != KN_OK)
    {
        kn_log(applier->log, KN_LOG_WARN, "applier: cannot record %s "
               "\"%s\": %s", kind, name, error);
        return KN_ERROR;
    }

    return KN_OK;
}


kn_rc
kn_applier_each(kn_applier_t *applier, kn_applier_visit_pt visit, void *ctx)
{
    kn_rc          rc;
    size_t         i;
    kn_applied_t  *a;

    for (i = 0; i < applier->nbuckets; i++) {
        for (a = applier->buckets[i]; a; a = a->next) {
            rc = visit(ctx, a->kind, a->name, a->generation);
            if (rc != KN_OK) {
                return rc;
            }
        }
    }

    return KN_OK;
}


size_t
kn_applier_count(kn_applier_t *applier)
{
    return applier->count;
}


static kn_rc
kn_applier_check(kn_applier_t *applier, const char *kind, const char *name,
    char *error, size_t size)
{
    size_t  i, len;

    (void) applier;

    for (i = 0; i < KN_NELEMS(kn_applier_kinds); i++) {
        if (strcmp(kind, kn_applier_kinds[i]) == 0) {
            break;
        }
    }

    if (i == KN_NELEMS(kn_applier_kinds)) {
        snprintf(error, size, "this Operator (%s) does not know the kind "
                 "\"%.*s\"", KN_VERSION, KN_APPLIER_KIND_MAX, kind);
        return KN_ERROR;
    }

    len = strlen(name);

    if (len == 0 || len >= KN_APPLIER_NAME_MAX) {
        snprintf(error, size, "a name of 1 to %d characters",
                 KN_APPLIER_NAME_MAX - 1);
        return KN_ERROR;
    }

    return KN_OK;
}


/* where (kind, name) is or would be: the pointer that points at it */

static kn_applied_t **
kn_applier_slot(kn_applier_t *applier, const char *kind, const char *name)
{
    uint64_t        h;
    const char     *p;
    kn_applied_t  **slot;

    /* FNV-1a over kind, a NUL, name */

    h = 14695981039346656037ULL;

    for (p = kind; *p; p++) {
        h = (h ^ (unsigned char) *p) * 1099511628211ULL;
    }

    h = (h ^ 0) * 1099511628211ULL;

    for (p = name; *p; p++) {
        h = (h ^ (unsigned char) *p) * 1099511628211ULL;
    }

    slot = &applier->buckets[h & (applier->nbuckets - 1)];

    while (*slot
           && (strcmp((*slot)->kind, kind) != 0
               || strcmp((*slot)->name, name) != 0))
    {
        slot = &(*slot)->next;
    }

    return slot;
}


static kn_applier_backend_t *
kn_applier_backend(kn_applier_t *applier, const char *kind)
{
    size_t  i;

    for (i = 0; i < KN_NELEMS(kn_applier_kinds); i++) {
        if (strcmp(kind, kn_applier_kinds[i]) == 0) {
            return applier->backends[i].apply ? &applier->backends[i] : NULL;
        }
    }

    return NULL;
}


/* (kind, name) is held at generation, or a later one */

static kn_rc
kn_applier_put(kn_applier_t *applier, const char *kind, const char *name,
    int64_t generation, char *error, size_t size)
{
    kn_applied_t  *a, **slot;

    slot = kn_applier_slot(applier, kind, name);
    a = *slot;

    if (a == NULL) {
        if (applier->count == applier->max_objects) {
            snprintf(error, size, "this cluster holds %zu objects "
                     "already, the most it may (--max-objects)",
                     applier->max_objects);
            return KN_ERROR;
        }

        a = calloc(1, sizeof(kn_applied_t));
        if (a == NULL) {
            snprintf(error, size, "the Operator is out of memory");
            return KN_ERROR;
        }

        strcpy(a->kind, kind);
        strcpy(a->name, name);
        a->generation = generation;
        *slot = a;
        applier->count++;

    } else if (generation > a->generation) {
        a->generation = generation;
    }

    return KN_OK;
}
