/*
 * The applier: what the Manager asks this cluster to hold, and what it
 * holds.  It keeps the map (kind, name) -> generation of everything
 * applied, which every hello reports to the Manager (kn_applier_each), so
 * that a reconnect resynchronises exactly what differs.
 *
 * A kind without a backend is applied by recording (after checking the
 * payload is a JSON object); a kind with a backend (kn_applier_set_backend,
 * the tenant reconciler of kn_tenant.c) is handed to it, and recorded when
 * it reports success.  The outcome of every apply or delete arrives through the
 * done callback given at creation, possibly before the call returns,
 * possibly later: a reconciler may take its time and the gRPC client acks
 * whenever it is told.
 */

#ifndef KN_APPLIER_H
#define KN_APPLIER_H


#include <jansson.h>

#include "kn_core.h"
#include "kn_log.h"


#define KN_APPLIER_KIND_MAX  32             /* with the NUL, as the Manager */
#define KN_APPLIER_NAME_MAX  160
#define KN_APPLIER_ERROR_MAX 512


typedef struct kn_applier_s  kn_applier_t;

/* ok, or error says why the cluster could not apply or delete it */
typedef void (*kn_applier_done_pt)(void *data, const char *kind,
    const char *name, int64_t generation, int ok, const char *error);

/* one applied object; anything but KN_OK stops the walk */
typedef kn_rc (*kn_applier_visit_pt)(void *ctx, const char *kind,
    const char *name, int64_t generation);


kn_rc kn_applier_create(const kn_log_t *log, size_t max_objects,
    kn_applier_done_pt done, void *data, kn_applier_t **out);
void kn_applier_destroy(kn_applier_t *applier);

/* KN_OK: accepted, done() has been or will be called */
kn_rc kn_applier_apply(kn_applier_t *applier, const char *kind,
    const char *name, int64_t generation, const uint8_t *payload,
    size_t len);
kn_rc kn_applier_delete(kn_applier_t *applier, const char *kind,
    const char *name, int64_t generation);

/*
 * A backend for one kind (the tenant reconciler for "Tenant"): apply and
 * delete of that kind go to it instead of being recorded at once; it
 * reports each outcome, possibly later, with kn_applier_finished(), which
 * updates the applied list and calls done.  spec is borrowed.
 */
typedef struct {
    kn_rc  (*apply)(void *data, const char *name, int64_t generation,
               json_t *spec);
    kn_rc  (*delete_)(void *data, const char *name, int64_t generation);
    void   *data;
} kn_applier_backend_t;

kn_rc kn_applier_set_backend(kn_applier_t *applier, const char *kind,
    const kn_applier_backend_t *backend);
void kn_applier_finished(kn_applier_t *applier, const char *kind,
    const char *name, int64_t generation, int deleted, int ok,
    const char *error);

/* what the cluster already holds (found at start): into the applied list */
kn_rc kn_applier_record(kn_applier_t *applier, const char *kind,
    const char *name, int64_t generation);

/* the applied list; returns what visit returned if it stopped the walk */
kn_rc kn_applier_each(kn_applier_t *applier, kn_applier_visit_pt visit,
    void *ctx);
size_t kn_applier_count(kn_applier_t *applier);


#endif /* KN_APPLIER_H */
