/*
 * List and watch one kind of object, the way controllers do: a paginated
 * list, then a watch from the list's resourceVersion with bookmarks, and a
 * relist when the server answers 410 Gone (the resourceVersion was
 * compacted away).  The watch keeps the key and resourceVersion of every
 * object it has reported, so a relist reports exactly what changed while
 * it was not watching: ADDED, MODIFIED and DELETED, then SYNCED.
 *
 * The watch stream is line-delimited JSON ({"type": …, "object": …}), cut
 * into lines incrementally in a bounded buffer (max_line).  Watches end
 * every timeout_s (jittered) and resume from the last resourceVersion;
 * failures back off (1 s doubling to 30 s, full jitter) and resume.
 */

#ifndef KN_WATCH_H
#define KN_WATCH_H

#include "kn_core.h"
#include "kn_kube.h"


typedef struct kn_watch_s  kn_watch_t;

typedef enum {
    KN_WATCH_ADDED = 0,
    KN_WATCH_MODIFIED,
    KN_WATCH_DELETED,       /* object: the last state seen, or only its
                               metadata (name, namespace) when the deletion
                               was found by a relist */
    KN_WATCH_SYNCED,        /* a list (the first or a relist) is reported:
                               the handler has seen every object; NULL */
    KN_WATCH_ERROR          /* something failed; the watch recovers by
                               itself.  object: a Status, or NULL; the
                               message is kn_watch_last_error() */
} kn_watch_event_e;

/*
 * object is borrowed (json_incref to keep).  The handler runs from the
 * loop (a timer or a transfer's end), never inside libcurl: it may stop
 * this watch (kn_watch_stop) and do anything else a loop callback may.
 */
typedef void (*kn_watch_handler_pt)(kn_watch_t *watch, kn_watch_event_e ev,
    json_t *object, void *data);


typedef struct {
    const char  *label_selector;
    const char  *field_selector;
    const char  *resource_version;  /* watch from here without listing
                                       first; NULL: list first */
    unsigned     timeout_s;         /* server-side end of a watch; 300 */
    size_t       max_line;          /* one event; default 16 MiB */
    size_t       max_objects;       /* remembered; default 1000000 */
} kn_watch_opts_t;


typedef struct {
    uint64_t  lists;                /* complete lists */
    uint64_t  relists;              /* lists after a 410 Gone */
    uint64_t  gone;                 /* 410 Gone received */
    uint64_t  watches;              /* watch requests that started */
    uint64_t  events;               /* ADDED, MODIFIED, DELETED received */
    uint64_t  bookmarks;
    uint64_t  errors;               /* ERROR events reported */
    uint64_t  pauses;               /* streams paused: too much pending */
} kn_watch_stats_t;


/* ref names a collection (no name); opts may be NULL. */
kn_rc kn_watch_start(kn_kube_t *kube, const kn_kube_ref_t *ref,
    const kn_watch_opts_t *opts, kn_watch_handler_pt handler, void *data,
    kn_watch_t **watch);
void kn_watch_stop(kn_watch_t *watch);

/*
 * The key the watch knows an object by, "namespace/name" ("/name" when
 * cluster-scoped), into key (KN_WATCH_KEY_MAX): 0, or -1 without a name.
 */
#define KN_WATCH_KEY_MAX  (253 + 1 + 253 + 1)

int kn_watch_key(json_t *obj, char *key, size_t size);

/* the last resourceVersion seen (list, event or bookmark), or "" */
const char *kn_watch_resource_version(kn_watch_t *watch);
const char *kn_watch_last_error(kn_watch_t *watch);
void kn_watch_get_stats(kn_watch_t *watch, kn_watch_stats_t *stats);


/*
 * One line of a watch stream, {"type": …, "object": {…}}, on its own for
 * tests and fuzzing.  KN_OK with the event (a new reference) for ADDED,
 * MODIFIED and DELETED (the object has metadata.name and resourceVersion),
 * BOOKMARK (a resourceVersion) and ERROR (the object is a Status);
 * KN_ERROR with a message in err for anything else.
 */
kn_rc kn_watch_parse_event(const char *line, size_t len, json_t **event,
    char *err, size_t err_size);


/*
 * The line splitter under the watch, on its own for tests and fuzzing:
 * feed it bytes as they arrive, it calls line() for each complete line
 * (without its "\n"; empty lines skipped).  A line longer than max is
 * KN_ERROR (the buffer never grows past max); a KN_ERROR from line() stops
 * the feed and is returned.
 */
typedef struct {
    char    *buf;
    size_t   len;
    size_t   cap;
    size_t   max;
} kn_watch_lines_t;

typedef kn_rc (*kn_watch_line_pt)(const char *line, size_t len, void *data);

void kn_watch_lines_init(kn_watch_lines_t *lines, size_t max);
kn_rc kn_watch_lines_feed(kn_watch_lines_t *lines, const char *p, size_t n,
    kn_watch_line_pt line, void *data);
void kn_watch_lines_reset(kn_watch_lines_t *lines);    /* frees the buffer */

#endif /* KN_WATCH_H */
