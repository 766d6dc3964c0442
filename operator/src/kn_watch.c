/*
 * List and watch (see kn_watch.h).  A watch is in one of three states:
 *
 *   LISTING   a kn_kube_list() is running; its result is compared with
 *             what was reported before (known) and the differences are
 *             reported, then SYNCED
 *   WATCHING  a kn_kube_stream() with ?watch=1 from the resourceVersion
 *   WAITING   backing off after a failure, on a timer
 *
 * The stream callback runs inside libcurl, so it only cuts and parses lines
 * and queues the events (pending); they are delivered to the handler from
 * a 0 ms timer or when the transfer ends, never from inside libcurl (the
 * loop's promise to every callback).  When pending holds too much, the
 * transfer is paused until it is delivered.
 *
 * Handlers may stop the watch from inside a callback.  Every way into this
 * file from the outside (start, the timers, kn_kube's callbacks) holds
 * "busy" while it runs, and the watch is freed when the last of them
 * returns.
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kn_watch.h"


#define KN_WATCH_RV_MAX       128
#define KN_WATCH_ERROR_MAX    512
#define KN_WATCH_BACKOFF_MIN  1000
#define KN_WATCH_BACKOFF_MAX  30000
#define KN_WATCH_PATH_MAX     8192
#define KN_WATCH_PENDING_MAX  1024              /* events, then pause */
#define KN_WATCH_PENDING_BYTES  (4 * 1024 * 1024)


typedef enum {
    KN_WATCH_LISTING = 0,
    KN_WATCH_WATCHING,
    KN_WATCH_WAITING
} kn_watch_state_e;


struct kn_watch_s {
    kn_kube_t            *kube;
    kn_watch_state_e      state;

    char                 *api_version;
    char                 *resource;
    char                 *namespace;
    char                 *label_selector;
    char                 *field_selector;
    unsigned              timeout_s;
    size_t                max_objects;

    char                  rv[KN_WATCH_RV_MAX];
    json_t               *known;        /* "ns/name" -> resourceVersion */

    kn_kube_req_t        *req;
    kn_watch_lines_t      lines;
    json_t               *pending;      /* parsed events to deliver */
    size_t                pending_bytes;
    kn_timer_t            deliver;
    unsigned              paused:1;     /* the stream waits for delivery */
    unsigned              gone:1;       /* an ERROR event said 410 */
    unsigned              failed:1;     /* the stream was aborted on error:
                                           stream_error says why */
    json_t               *stream_status;
    unsigned              relist:1;     /* the next list follows a 410 */
    unsigned              stopped:1;
    unsigned              busy;

    kn_timer_t            timer;
    uint64_t              backoff_ms;
    uint64_t              rand;

    kn_watch_handler_pt   handler;
    void                 *data;

    kn_watch_stats_t      stats;
    char                  error[KN_WATCH_ERROR_MAX];
    char                  stream_error[KN_WATCH_ERROR_MAX];
};


static void kn_watch_list(kn_watch_t *w);
static void kn_watch_list_done(const kn_kube_result_t *res, void *data);
static void kn_watch_list_result(kn_watch_t *w, const kn_kube_result_t *res);
static void kn_watch_deleted(kn_watch_t *w, const char *key);
static void kn_watch_watch(kn_watch_t *w);
static kn_rc kn_watch_stream(const char *p, size_t len, void *data);
static kn_rc kn_watch_line(const char *line, size_t len, void *data);
static void kn_watch_watch_done(const kn_kube_result_t *res, void *data);
static void kn_watch_watch_result(kn_watch_t *w, const kn_kube_result_t *res);
static void kn_watch_stream_failed(kn_watch_t *w, json_t *status,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void kn_watch_deliver(kn_watch_t *w);
static void kn_watch_deliver_handler(kn_timer_t *timer);
static void kn_watch_retry(kn_watch_t *w);
static void kn_watch_timer_handler(kn_timer_t *timer);
static void kn_watch_emit(kn_watch_t *w, kn_watch_event_e ev, json_t *obj);
static void kn_watch_error(kn_watch_t *w, json_t *status, const char *fmt,
    ...) __attribute__((format(printf, 3, 4)));
static void kn_watch_set_rv(kn_watch_t *w, const char *rv);
static void kn_watch_enter(kn_watch_t *w);
static int kn_watch_leave(kn_watch_t *w);
static void kn_watch_free(kn_watch_t *w);


kn_rc
kn_watch_start(kn_kube_t *kube, const kn_kube_ref_t *ref,
    const kn_watch_opts_t *opts, kn_watch_handler_pt handler, void *data,
    kn_watch_t **out)
{
    char         path[KN_WATCH_PATH_MAX];
    kn_watch_t  *w;

    *out = NULL;

    if (ref->name != NULL || ref->subresource != NULL
        || kn_kube_path(ref, path, sizeof(path)) != KN_OK)
    {
        return KN_ERROR;
    }

    w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return KN_ERROR;
    }

    w->kube = kube;
    w->handler = handler;
    w->data = data;
    w->timeout_s = (opts && opts->timeout_s) ? opts->timeout_s : 300;
    w->max_objects = (opts && opts->max_objects) ? opts->max_objects
                                                 : 1000000;
    kn_watch_lines_init(&w->lines, (opts && opts->max_line)
                                   ? opts->max_line : 16 * 1024 * 1024);
    kn_timer_init(&w->timer, kn_watch_timer_handler, w);
    kn_timer_init(&w->deliver, kn_watch_deliver_handler, w);
    w->rand = (uint64_t) (uintptr_t) w ^ kn_loop_now(kn_kube_loop(kube))
              ^ 0x9e3779b97f4a7c15ULL;

    w->api_version = strdup(ref->api_version);
    w->resource = strdup(ref->resource);
    w->namespace = ref->namespace ? strdup(ref->namespace) : NULL;
    w->label_selector = (opts && opts->label_selector)
                        ? strdup(opts->label_selector) : NULL;
    w->field_selector = (opts && opts->field_selector)
                        ? strdup(opts->field_selector) : NULL;
    w->known = json_object();
    w->pending = json_array();

    if (w->api_version == NULL || w->resource == NULL || w->known == NULL
        || w->pending == NULL
        || (ref->namespace && w->namespace == NULL)
        || (opts && opts->label_selector && w->label_selector == NULL)
        || (opts && opts->field_selector && w->field_selector == NULL))
    {
        kn_watch_free(w);
        return KN_ERROR;
    }

    kn_watch_enter(w);

    if (opts != NULL && opts->resource_version != NULL
        && opts->resource_version[0] != '\0')
    {
        kn_watch_set_rv(w, opts->resource_version);
        kn_watch_watch(w);

    } else {
        kn_watch_list(w);
    }

    if (kn_watch_leave(w)) {
        /* stopped by the handler already */
        return KN_DECLINED;
    }

    *out = w;

    return KN_OK;
}


void
kn_watch_stop(kn_watch_t *w)
{
    if (w == NULL || w->stopped) {
        return;
    }

    w->stopped = 1;

    kn_kube_cancel(w->req);
    w->req = NULL;

    if (kn_timer_is_set(&w->timer)) {
        kn_timer_cancel(kn_kube_loop(w->kube), &w->timer);
    }
    if (kn_timer_is_set(&w->deliver)) {
        kn_timer_cancel(kn_kube_loop(w->kube), &w->deliver);
    }

    if (w->busy == 0) {
        kn_watch_free(w);
    }
}


const char *
kn_watch_resource_version(kn_watch_t *w)
{
    return w->rv;
}


const char *
kn_watch_last_error(kn_watch_t *w)
{
    return w->error;
}


void
kn_watch_get_stats(kn_watch_t *w, kn_watch_stats_t *stats)
{
    *stats = w->stats;
}


static void
kn_watch_free(kn_watch_t *w)
{
    kn_kube_cancel(w->req);
    if (kn_timer_is_set(&w->timer)) {
        kn_timer_cancel(kn_kube_loop(w->kube), &w->timer);
    }
    if (kn_timer_is_set(&w->deliver)) {
        kn_timer_cancel(kn_kube_loop(w->kube), &w->deliver);
    }
    kn_watch_lines_reset(&w->lines);
    json_decref(w->pending);
    json_decref(w->stream_status);
    json_decref(w->known);
    free(w->api_version);
    free(w->resource);
    free(w->namespace);
    free(w->label_selector);
    free(w->field_selector);
    free(w);
}


static void
kn_watch_enter(kn_watch_t *w)
{
    w->busy++;
}


/* Returns 1 when the watch is gone (stopped and freed). */
static int
kn_watch_leave(kn_watch_t *w)
{
    if (--w->busy == 0 && w->stopped) {
        kn_watch_free(w);
        return 1;
    }

    return w->stopped;
}


static kn_kube_ref_t
kn_watch_ref(kn_watch_t *w)
{
    kn_kube_ref_t  ref;

    memset(&ref, 0, sizeof(ref));
    ref.api_version = w->api_version;
    ref.resource = w->resource;
    ref.namespace = w->namespace;

    return ref;
}


/* -- list --------------------------------------------------------------- */

static void
kn_watch_list(kn_watch_t *w)
{
    kn_rc                rc;
    kn_kube_ref_t        ref;
    kn_kube_list_opts_t  opts;

    if (w->stopped) {
        return;
    }

    memset(&opts, 0, sizeof(opts));
    opts.label_selector = w->label_selector;
    opts.field_selector = w->field_selector;
    ref = kn_watch_ref(w);

    w->state = KN_WATCH_LISTING;

    rc = kn_kube_list(w->kube, &ref, &opts, kn_watch_list_done, w, &w->req);
    if (rc != KN_OK) {
        w->req = NULL;
        kn_watch_error(w, NULL, "list %s: cannot submit (%s)", w->resource,
                       rc == KN_AGAIN ? "too many requests" : "error");
        kn_watch_retry(w);
    }
}


static void
kn_watch_list_done(const kn_kube_result_t *res, void *data)
{
    kn_watch_t  *w = data;

    w->req = NULL;

    kn_watch_enter(w);
    kn_watch_list_result(w, res);
    kn_watch_leave(w);
}


/* reports what differs from what was reported before, then watches */
static void
kn_watch_list_result(kn_watch_t *w, const kn_kube_result_t *res)
{
    char         key[KN_WATCH_KEY_MAX];
    size_t       i;
    json_t      *items, *item, *seen, *rv;
    void        *iter;
    const char  *k, *old, *list_rv;

    if (res->error != NULL) {
        kn_watch_error(w, res->body, "list %s: %s", w->resource, res->error);
        kn_watch_retry(w);
        return;
    }

    items = json_object_get(res->body, "items");
    list_rv = json_string_value(json_object_get(
                  json_object_get(res->body, "metadata"), "resourceVersion"));

    seen = json_object();
    if (seen == NULL) {
        kn_watch_error(w, NULL, "list %s: out of memory", w->resource);
        kn_watch_retry(w);
        return;
    }

    json_array_foreach(items, i, item) {
        if (kn_watch_key(item, key, sizeof(key)) != 0) {
            continue;
        }

        rv = json_object_get(json_object_get(item, "metadata"),
                             "resourceVersion");
        old = json_string_value(json_object_get(w->known, key));

        json_object_set(seen, key, json_is_string(rv) ? rv : json_null());

        if (old == NULL) {
            kn_watch_emit(w, KN_WATCH_ADDED, item);

        } else if (!json_is_string(rv)
                   || strcmp(old, json_string_value(rv)) != 0)
        {
            kn_watch_emit(w, KN_WATCH_MODIFIED, item);
        }

        if (w->stopped) {
            json_decref(seen);
            return;
        }
    }

    /* what was known and is not listed any more was deleted meanwhile */
    iter = json_object_iter(w->known);
    while (iter != NULL) {
        k = json_object_iter_key(iter);
        iter = json_object_iter_next(w->known, iter);

        if (json_object_get(seen, k) == NULL) {
            kn_watch_deleted(w, k);
        }

        if (w->stopped) {
            json_decref(seen);
            return;
        }
    }

    json_decref(w->known);
    w->known = seen;

    if (json_object_size(w->known) > w->max_objects) {
        kn_watch_error(w, NULL, "list %s: more than %zu objects "
                       "(max_objects)", w->resource, w->max_objects);
    }

    kn_watch_set_rv(w, list_rv != NULL ? list_rv : "");
    w->stats.lists++;
    if (w->relist) {
        w->stats.relists++;
        w->relist = 0;
    }
    w->backoff_ms = 0;

    kn_watch_emit(w, KN_WATCH_SYNCED, NULL);

    kn_watch_watch(w);
}


/* a deletion found by a relist: only the key is known */
static void
kn_watch_deleted(kn_watch_t *w, const char *key)
{
    json_t      *gone, *meta;
    const char  *slash;

    gone = json_object();
    meta = json_object();

    if (gone == NULL || meta == NULL) {
        json_decref(gone);
        json_decref(meta);
        return;
    }

    slash = strchr(key, '/');
    if (slash != NULL && slash != key) {
        json_object_set_new(meta, "namespace",
                            json_stringn(key, (size_t) (slash - key)));
    }
    json_object_set_new(meta, "name", json_string(slash ? slash + 1 : key));
    json_object_set_new(gone, "metadata", meta);

    kn_watch_emit(w, KN_WATCH_DELETED, gone);

    json_decref(gone);
}


/* -- watch ---------------------------------------------------------------- */

static kn_rc
kn_watch_query(char *path, size_t size, const char *key, const char *value)
{
    size_t       len;
    const char  *v;
    static const char  hex[] = "0123456789ABCDEF";

    len = strlen(path);
    len += (size_t) snprintf(path + len, size > len ? size - len : 0,
                             "&%s=", key);

    for (v = value; *v != '\0' && len + 4 < size; v++) {
        unsigned char c = (unsigned char) *v;

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
            || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_'
            || c == '~')
        {
            path[len++] = (char) c;
        } else {
            path[len++] = '%';
            path[len++] = hex[c >> 4];
            path[len++] = hex[c & 0x0f];
        }
    }

    if (len + 1 >= size || *v != '\0') {
        return KN_ERROR;
    }

    path[len] = '\0';

    return KN_OK;
}


static void
kn_watch_watch(kn_watch_t *w)
{
    kn_rc          rc;
    char           path[KN_WATCH_PATH_MAX], timeout[32];
    unsigned       t;
    kn_kube_ref_t  ref;

    if (w->stopped) {
        return;
    }

    if (w->rv[0] == '\0') {
        /* nothing to resume from */
        kn_watch_list(w);
        return;
    }

    ref = kn_watch_ref(w);

    /* spread the reconnections of many watches: timeout_s minus 0-20 % */
    w->rand ^= w->rand << 13;
    w->rand ^= w->rand >> 7;
    w->rand ^= w->rand << 17;
    t = w->timeout_s - (unsigned) (w->rand % (w->timeout_s / 5 + 1));
    snprintf(timeout, sizeof(timeout), "%u", t > 0 ? t : 1);

    if (kn_kube_path(&ref, path, sizeof(path)) != KN_OK
        || strlen(path) + sizeof("?watch=1&allowWatchBookmarks=true")
           >= sizeof(path))
    {
        kn_watch_error(w, NULL, "watch %s: invalid path", w->resource);
        return;
    }
    strcat(path, "?watch=1&allowWatchBookmarks=true");

    if (kn_watch_query(path, sizeof(path), "resourceVersion", w->rv) != KN_OK
        || kn_watch_query(path, sizeof(path), "timeoutSeconds", timeout)
           != KN_OK
        || (w->label_selector != NULL
            && kn_watch_query(path, sizeof(path), "labelSelector",
                              w->label_selector) != KN_OK)
        || (w->field_selector != NULL
            && kn_watch_query(path, sizeof(path), "fieldSelector",
                              w->field_selector) != KN_OK))
    {
        kn_watch_error(w, NULL, "watch %s: query too long", w->resource);
        return;
    }

    w->state = KN_WATCH_WATCHING;
    w->gone = 0;
    w->failed = 0;
    w->paused = 0;
    json_decref(w->stream_status);
    w->stream_status = NULL;
    json_array_clear(w->pending);
    w->pending_bytes = 0;
    kn_watch_lines_reset(&w->lines);

    /* the server ends the watch at timeoutSeconds; libcurl a bit later */
    rc = kn_kube_stream(w->kube, path, (long) (t + 30) * 1000,
                        kn_watch_stream, kn_watch_watch_done, w, &w->req);
    if (rc != KN_OK) {
        w->req = NULL;
        kn_watch_error(w, NULL, "watch %s: cannot submit (%s)", w->resource,
                       rc == KN_AGAIN ? "too many requests" : "error");
        kn_watch_retry(w);
        return;
    }

    w->stats.watches++;
}


/* inside libcurl: parse and queue, nothing else */
static kn_rc
kn_watch_stream(const char *p, size_t len, void *data)
{
    kn_rc        rc;
    kn_watch_t  *w = data;

    if (w->stopped || w->failed || w->gone) {
        return KN_ERROR;
    }

    if (json_array_size(w->pending) >= KN_WATCH_PENDING_MAX
        || w->pending_bytes >= KN_WATCH_PENDING_BYTES)
    {
        /* libcurl keeps these bytes and offers them again on resume */
        if (!w->paused) {
            w->paused = 1;
            w->stats.pauses++;
        }
        (void) kn_timer_add(kn_kube_loop(w->kube), &w->deliver, 0);
        return KN_AGAIN;
    }

    rc = kn_watch_lines_feed(&w->lines, p, len, kn_watch_line, w);

    if (rc != KN_OK && !w->gone && !w->failed) {
        kn_watch_stream_failed(w, NULL, "watch %s: an event is longer than "
                               "%zu bytes (max_line)", w->resource,
                               w->lines.max);
    }

    if (json_array_size(w->pending) > 0 && !kn_timer_is_set(&w->deliver)) {
        (void) kn_timer_add(kn_kube_loop(w->kube), &w->deliver, 0);
    }

    return rc;
}


kn_rc
kn_watch_parse_event(const char *line, size_t len, json_t **event, char *err,
    size_t err_size)
{
    char          key[KN_WATCH_KEY_MAX];
    json_t       *ev, *obj, *rv;
    const char   *type;
    json_error_t  jerr;

    *event = NULL;

    ev = json_loadb(line, len, 0, &jerr);
    type = json_string_value(json_object_get(ev, "type"));
    obj = json_object_get(ev, "object");

    if (type == NULL || !json_is_object(obj)) {
        snprintf(err, err_size, "invalid event: %s",
                 ev == NULL ? jerr.text : "no type or object");
        json_decref(ev);
        return KN_ERROR;
    }

    if (strcmp(type, "ERROR") == 0) {
        *event = ev;
        return KN_OK;
    }

    if (strcmp(type, "ADDED") != 0 && strcmp(type, "MODIFIED") != 0
        && strcmp(type, "DELETED") != 0 && strcmp(type, "BOOKMARK") != 0)
    {
        snprintf(err, err_size, "unknown event type \"%.32s\"", type);
        json_decref(ev);
        return KN_ERROR;
    }

    rv = json_object_get(json_object_get(obj, "metadata"), "resourceVersion");

    if (!json_is_string(rv)
        || (strcmp(type, "BOOKMARK") != 0
            && kn_watch_key(obj, key, sizeof(key)) != 0))
    {
        snprintf(err, err_size, "an event without name or resourceVersion");
        json_decref(ev);
        return KN_ERROR;
    }

    *event = ev;

    return KN_OK;
}


/* inside libcurl: one line to the pending queue */
static kn_rc
kn_watch_line(const char *line, size_t len, void *data)
{
    long         code;
    json_t      *ev, *obj;
    kn_watch_t  *w = data;
    const char  *msg;
    char         err[KN_WATCH_ERROR_MAX];

    if (kn_watch_parse_event(line, len, &ev, err, sizeof(err)) != KN_OK) {
        kn_watch_stream_failed(w, NULL, "watch %s: %s", w->resource, err);
        return KN_ERROR;
    }

    obj = json_object_get(ev, "object");

    if (strcmp(json_string_value(json_object_get(ev, "type")), "ERROR") == 0) {
        code = (long) json_integer_value(json_object_get(obj, "code"));
        if (code == 410) {
            /* the resourceVersion is too old (compacted): relist */
            w->gone = 1;
            w->stats.gone++;
        } else {
            msg = json_string_value(json_object_get(obj, "message"));
            kn_watch_stream_failed(w, obj, "watch %s: %s", w->resource,
                                   msg != NULL ? msg : "error event");
        }
        json_decref(ev);
        return KN_ERROR;
    }

    if (json_array_append_new(w->pending, ev) != 0) {
        kn_watch_stream_failed(w, NULL, "watch %s: out of memory",
                               w->resource);
        return KN_ERROR;
    }
    w->pending_bytes += len;

    return KN_OK;
}


/* the queued events, in order, to the handler (outside libcurl) */
static void
kn_watch_deliver(kn_watch_t *w)
{
    char         key[KN_WATCH_KEY_MAX];
    size_t       i;
    json_t      *ev, *obj, *rv;
    const char  *type;

    for (i = 0; i < json_array_size(w->pending) && !w->stopped; i++) {
        ev = json_array_get(w->pending, i);
        type = json_string_value(json_object_get(ev, "type"));
        obj = json_object_get(ev, "object");
        rv = json_object_get(json_object_get(obj, "metadata"),
                             "resourceVersion");

        if (strcmp(type, "BOOKMARK") == 0) {
            w->stats.bookmarks++;
            if (json_is_string(rv)) {
                kn_watch_set_rv(w, json_string_value(rv));
            }
            continue;
        }

        w->stats.events++;
        (void) kn_watch_key(obj, key, sizeof(key));
        kn_watch_set_rv(w, json_string_value(rv));

        if (strcmp(type, "DELETED") == 0) {
            json_object_del(w->known, key);
            kn_watch_emit(w, KN_WATCH_DELETED, obj);
            continue;
        }

        if (json_object_get(w->known, key) == NULL
            && json_object_size(w->known) >= w->max_objects)
        {
            kn_watch_error(w, NULL, "watch %s: more than %zu objects "
                           "(max_objects); %s not remembered", w->resource,
                           w->max_objects, key);
        } else {
            json_object_set(w->known, key, rv);
        }

        kn_watch_emit(w, type[0] == 'A' ? KN_WATCH_ADDED : KN_WATCH_MODIFIED,
                      obj);
    }

    json_array_clear(w->pending);
    w->pending_bytes = 0;
}


static void
kn_watch_deliver_handler(kn_timer_t *timer)
{
    kn_watch_t  *w = timer->data;

    kn_watch_enter(w);

    kn_watch_deliver(w);

    if (!w->stopped && w->paused && w->req != NULL) {
        w->paused = 0;
        (void) kn_kube_resume(w->req);
    }

    kn_watch_leave(w);
}


static void
kn_watch_watch_done(const kn_kube_result_t *res, void *data)
{
    kn_watch_t  *w = data;

    w->req = NULL;

    kn_watch_enter(w);

    /* what arrived before the end comes first */
    if (kn_timer_is_set(&w->deliver)) {
        kn_timer_cancel(kn_kube_loop(w->kube), &w->deliver);
    }
    kn_watch_deliver(w);
    w->paused = 0;

    if (!w->stopped) {
        kn_watch_watch_result(w, res);
    }

    kn_watch_leave(w);
}


static void
kn_watch_watch_result(kn_watch_t *w, const kn_kube_result_t *res)
{
    if (w->gone || res->status == 410) {
        /* too old a resourceVersion, in an ERROR event or as the status */
        if (res->status == 410) {
            w->stats.gone++;
        }
        w->relist = 1;
        w->rv[0] = '\0';
        kn_watch_list(w);
        return;
    }

    if (w->failed) {
        kn_watch_error(w, w->stream_status, "%s", w->stream_error);
        kn_watch_retry(w);
        return;
    }

    if (res->error == NULL) {
        /* the server ended the watch (timeoutSeconds): resume at once */
        w->backoff_ms = 0;
        kn_watch_watch(w);
        return;
    }

    kn_watch_error(w, res->body, "watch %s: %s", w->resource, res->error);
    kn_watch_retry(w);
}


/* a stream that must end: remembered now, reported when it has ended */
static void
kn_watch_stream_failed(kn_watch_t *w, json_t *status, const char *fmt, ...)
{
    va_list  ap;

    if (w->failed) {
        return;
    }

    w->failed = 1;

    va_start(ap, fmt);
    vsnprintf(w->stream_error, sizeof(w->stream_error), fmt, ap);
    va_end(ap);

    json_decref(w->stream_status);
    w->stream_status = json_incref(status);
}


/* -- backoff ------------------------------------------------------------- */

static void
kn_watch_retry(kn_watch_t *w)
{
    uint64_t  delay;

    if (w->stopped) {
        return;
    }

    w->backoff_ms = w->backoff_ms == 0 ? KN_WATCH_BACKOFF_MIN
                                       : w->backoff_ms * 2;
    if (w->backoff_ms > KN_WATCH_BACKOFF_MAX) {
        w->backoff_ms = KN_WATCH_BACKOFF_MAX;
    }

    /* full jitter */
    w->rand ^= w->rand << 13;
    w->rand ^= w->rand >> 7;
    w->rand ^= w->rand << 17;
    delay = w->rand % (w->backoff_ms + 1);

    w->state = KN_WATCH_WAITING;

    if (kn_timer_add(kn_kube_loop(w->kube), &w->timer, delay) != KN_OK) {
        snprintf(w->error, sizeof(w->error), "watch %s: no timer left; "
                 "the watch is stopped", w->resource);
    }
}


static void
kn_watch_timer_handler(kn_timer_t *timer)
{
    kn_watch_t  *w = timer->data;

    kn_watch_enter(w);
    kn_watch_watch(w);
    kn_watch_leave(w);
}


/* -- helpers --------------------------------------------------------------- */

static void
kn_watch_emit(kn_watch_t *w, kn_watch_event_e ev, json_t *obj)
{
    if (w->stopped) {
        return;
    }

    /* the caller holds busy: a stop in the handler frees nothing yet */
    w->handler(w, ev, obj, w->data);
}


static void
kn_watch_error(kn_watch_t *w, json_t *status, const char *fmt, ...)
{
    va_list  ap;

    va_start(ap, fmt);
    vsnprintf(w->error, sizeof(w->error), fmt, ap);
    va_end(ap);

    w->stats.errors++;

    if (!json_is_object(status)
        || !json_is_string(json_object_get(status, "kind"))
        || strcmp(json_string_value(json_object_get(status, "kind")),
                  "Status") != 0)
    {
        status = NULL;
    }

    kn_watch_emit(w, KN_WATCH_ERROR, status);
}


int
kn_watch_key(json_t *obj, char *key, size_t size)
{
    int          n;
    json_t      *meta;
    const char  *ns, *name;

    meta = json_object_get(obj, "metadata");
    ns = json_string_value(json_object_get(meta, "namespace"));
    name = json_string_value(json_object_get(meta, "name"));

    if (name == NULL || name[0] == '\0') {
        return -1;
    }

    n = snprintf(key, size, "%s/%s", ns ? ns : "", name);

    return (n > 0 && (size_t) n < size) ? 0 : -1;
}


static void
kn_watch_set_rv(kn_watch_t *w, const char *rv)
{
    snprintf(w->rv, sizeof(w->rv), "%s", rv);
}


/* -- lines ----------------------------------------------------------------- */

void
kn_watch_lines_init(kn_watch_lines_t *lines, size_t max)
{
    memset(lines, 0, sizeof(*lines));
    lines->max = max;
}


void
kn_watch_lines_reset(kn_watch_lines_t *lines)
{
    free(lines->buf);
    lines->buf = NULL;
    lines->len = 0;
    lines->cap = 0;
}


static kn_rc
kn_watch_lines_keep(kn_watch_lines_t *lines, const char *p, size_t n)
{
    char    *buf;
    size_t   cap;

    if (n > lines->max - lines->len) {
        return KN_ERROR;
    }

    if (lines->len + n > lines->cap) {
        cap = lines->cap ? lines->cap : 4096;
        while (cap < lines->len + n) {
            cap *= 2;
        }
        if (cap > lines->max) {
            cap = lines->max;
        }
        buf = realloc(lines->buf, cap);
        if (buf == NULL) {
            return KN_ERROR;
        }
        lines->buf = buf;
        lines->cap = cap;
    }

    memcpy(lines->buf + lines->len, p, n);
    lines->len += n;

    return KN_OK;
}


kn_rc
kn_watch_lines_feed(kn_watch_lines_t *lines, const char *p, size_t n,
    kn_watch_line_pt line, void *data)
{
    kn_rc        rc;
    size_t       part;
    const char  *nl, *end;

    end = p + n;

    while (p < end) {
        nl = memchr(p, '\n', (size_t) (end - p));

        if (nl == NULL) {
            /* an incomplete line: keep it for the next bytes */
            return kn_watch_lines_keep(lines, p, (size_t) (end - p));
        }

        part = (size_t) (nl - p);

        if (lines->len > 0) {
            if (kn_watch_lines_keep(lines, p, part) != KN_OK) {
                return KN_ERROR;
            }
            rc = line(lines->buf, lines->len, data);
            lines->len = 0;

        } else if (part > lines->max) {
            return KN_ERROR;

        } else if (part > 0) {
            rc = line(p, part, data);

        } else {
            rc = KN_OK;
        }

        if (rc != KN_OK) {
            return rc;
        }

        p = nl + 1;
    }

    return KN_OK;
}
