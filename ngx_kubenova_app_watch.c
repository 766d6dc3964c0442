/*
 * An application's status as server-sent events (see the header).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <jansson.h>

#include "ngx_http_kubenova_module.h"
#include "ngx_kubenova_app_watch.h"
#include "ngx_kubenova_json.h"
#include "ngx_kubenova_listen.h"


#define NGX_KUBENOVA_APP_WATCH_MAX_STATE  (512 * 1024)  /* bytes of JSON */
#define NGX_KUBENOVA_APP_WATCH_KEY_LEN    512           /* "<t>/<app>" */
#define NGX_KUBENOVA_APP_WATCH_EXITING    500           /* ms, shutdown check */


struct ngx_kubenova_app_watch_s {
    ngx_kubenova_pg_pool_t          *pool;
    ngx_queue_t                      watchers;
    ngx_uint_t                       count;
    ngx_uint_t                       max;
    ngx_msec_t                       heartbeat;
    ngx_event_t                      exiting;      /* while count > 0 */
};


typedef struct {
    ngx_queue_t                      queue;        /* in watch->watchers */
    ngx_kubenova_app_watch_t        *watch;
    ngx_http_request_t              *request;
    ngx_http_kubenova_ctx_t         *kctx;
    u_char                           key[NGX_KUBENOVA_APP_WATCH_KEY_LEN];

    /* api.call('app.status', envelope), one at a time */
    const char                      *values[1];
    ngx_kubenova_pg_query_t          query;

    /* the newest state, and the event being written (ngx_alloc) */
    u_char                          *state;
    size_t                           state_len;
    size_t                           state_size;
    u_char                          *event;
    size_t                           event_size;

    ngx_buf_t                        buf;          /* what is being written */
    ngx_chain_t                      out;
    ngx_event_t                      ping;
    ngx_event_t                      recheck;      /* posted once, at start */

    unsigned                         registered:1;
    unsigned                         querying:1;
    unsigned                         again:1;      /* a change while asking */
    unsigned                         unsent:1;     /* state not written yet */
    unsigned                         writing:1;    /* buf still in flight */
} ngx_kubenova_app_watcher_t;


static void ngx_kubenova_app_watch_notify(void *data, const char *channel,
    const char *payload);
static void ngx_kubenova_app_watch_reset(void *data);
static void ngx_kubenova_app_watch_exiting(ngx_event_t *ev);
static void ngx_kubenova_app_watch_end_all(ngx_kubenova_app_watch_t *watch,
    const char *event, const char *data, size_t len);
static void ngx_kubenova_app_watch_ask(ngx_kubenova_app_watcher_t *w);
static void ngx_kubenova_app_watch_answer(void *data, ngx_int_t rc,
    PGresult *res);
static ngx_int_t ngx_kubenova_app_watch_keep(ngx_kubenova_app_watcher_t *w,
    const char *state, size_t len);
static ngx_int_t ngx_kubenova_app_watch_reserve(ngx_kubenova_app_watcher_t *w,
    u_char **buf, size_t *size, size_t n);
static ngx_int_t ngx_kubenova_app_watch_send(ngx_kubenova_app_watcher_t *w);
static ngx_int_t ngx_kubenova_app_watch_output(ngx_kubenova_app_watcher_t *w,
    u_char *data, size_t len);
static ngx_int_t ngx_kubenova_app_watch_written(ngx_kubenova_app_watcher_t *w,
    ngx_int_t rc);
static void ngx_kubenova_app_watch_write(ngx_http_request_t *r);
static void ngx_kubenova_app_watch_ping(ngx_event_t *ev);
static void ngx_kubenova_app_watch_recheck(ngx_event_t *ev);
static void ngx_kubenova_app_watch_end(ngx_kubenova_app_watcher_t *w,
    const char *event, const char *data, size_t len);
static void ngx_kubenova_app_watch_detach(ngx_kubenova_app_watcher_t *w);
static void ngx_kubenova_app_watch_cleanup(void *data);


static const char  ngx_kubenova_app_watch_sql[] =
    "SELECT status, body::text FROM api.call('app.status', $1::jsonb)";

static u_char  ngx_kubenova_app_watch_ping_text[] = ": ping\n\n";

/* the data of a last "error" event the database did not write */

static const char  ngx_kubenova_app_watch_db_error[] =
    "{\"error\":{\"status\":503,\"code\":\"database_unavailable\","
    "\"message\":\"the status could not be read; reconnect\"}}";

static const char  ngx_kubenova_app_watch_too_large[] =
    "{\"error\":{\"status\":500,\"code\":\"internal_error\","
    "\"message\":\"the status is too large to stream; read it without "
    "watch\"}}";


ngx_kubenova_app_watch_t *
ngx_kubenova_app_watch_create(ngx_cycle_t *cycle, ngx_kubenova_pg_pool_t *pool,
    ngx_uint_t max, ngx_msec_t heartbeat)
{
    ngx_kubenova_app_watch_t  *watch;

    watch = ngx_pcalloc(cycle->pool, sizeof(ngx_kubenova_app_watch_t));
    if (watch == NULL) {
        return NULL;
    }

    watch->pool = pool;
    watch->max = max;
    watch->heartbeat = heartbeat;
    ngx_queue_init(&watch->watchers);

    /*
     * not cancelable: a worker that shuts down must end its streams first
     * (an open one would keep it waiting, or be left behind)
     */

    watch->exiting.handler = ngx_kubenova_app_watch_exiting;
    watch->exiting.data = watch;
    watch->exiting.log = cycle->log;
    watch->exiting.cancelable = 0;

    if (ngx_kubenova_listen_subscribe("kubenova_app_status",
                                      ngx_kubenova_app_watch_notify,
                                      ngx_kubenova_app_watch_reset, watch)
        != NGX_OK)
    {
        return NULL;
    }

    return watch;
}


ngx_uint_t
ngx_kubenova_app_watch_wanted(ngx_http_request_t *r)
{
    ngx_str_t  v;

    if (r->method != NGX_HTTP_GET
        || ngx_http_arg(r, (u_char *) "watch", sizeof("watch") - 1, &v)
           != NGX_OK)
    {
        return 0;
    }

    return (v.len == 1 && v.data[0] == '1')
           || (v.len == 4 && ngx_strncmp(v.data, "true", 4) == 0);
}


ngx_int_t
ngx_kubenova_app_watch_start(ngx_http_request_t *r, const char *envelope,
    const char *state, size_t len)
{
    json_t                         *json;
    ngx_int_t                       rc;
    const char                     *tenant, *name;
    ngx_pool_cleanup_t             *cln;
    ngx_kubenova_app_watch_t       *watch;
    ngx_http_kubenova_ctx_t        *kctx;
    ngx_kubenova_app_watcher_t     *w;
    ngx_http_kubenova_main_conf_t  *kmcf;

    static ngx_str_t  type = ngx_string("text/event-stream");

    kmcf = ngx_http_get_module_main_conf(r, ngx_http_kubenova_module);
    watch = kmcf->app_watch;
    kctx = ngx_http_kubenova_get_ctx(r);

    if (kctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* without the change feed the stream would miss changes */

    if (watch == NULL || !ngx_kubenova_pg_listening(watch->pool)) {
        return ngx_kubenova_json_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                       "database_unavailable",
                                       "the change feed is not ready; retry");
    }

    if (len > NGX_KUBENOVA_APP_WATCH_MAX_STATE) {
        return ngx_kubenova_json_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                       "internal_error",
                                       "the status is too large to stream; "
                                       "read it without watch");
    }

    if (watch->count >= watch->max) {
        return ngx_kubenova_json_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                       "too_many_watchers",
                                       "too many status streams on this "
                                       "server; retry later");
    }

    w = ngx_pcalloc(r->pool, sizeof(ngx_kubenova_app_watcher_t));
    if (w == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_kubenova_app_watch_cleanup;
    cln->data = w;

    w->watch = watch;
    w->request = r;

    /* the key notifications name: "<tenant>/<app>" of the answer */

    json = json_loadb(state, len, 0, NULL);

    if (json == NULL
        || json_unpack(json, "{s:s,s:s}", "tenant", &tenant, "name", &name)
           != 0
        || ngx_strlen(tenant) + ngx_strlen(name) + 2
           > NGX_KUBENOVA_APP_WATCH_KEY_LEN)
    {
        if (json) {
            json_decref(json);
        }
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(w->key, "%s/%s%Z", tenant, name);
    json_decref(json);

    w->values[0] = envelope;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_type = type;
    r->headers_out.content_type_len = type.len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.content_length_n = -1;

    if (ngx_kubenova_add_header(r, &r->headers_out.headers, "Cache-Control",
                                (u_char *) "no-cache",
                                sizeof("no-cache") - 1)
        != NGX_OK
        || ngx_kubenova_add_header(r, &r->headers_out.headers,
                                   "X-Accel-Buffering", (u_char *) "no",
                                   sizeof("no") - 1)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return rc;
    }

    ngx_queue_insert_tail(&watch->watchers, &w->queue);
    w->registered = 1;
    watch->count++;

    if (!watch->exiting.timer_set) {
        ngx_add_timer(&watch->exiting, NGX_KUBENOVA_APP_WATCH_EXITING);
    }

    w->kctx = kctx;
    kctx->app_watch = w;
    r->write_event_handler = ngx_kubenova_app_watch_write;
    r->read_event_handler = ngx_http_test_reading;   /* the client leaving */

    w->ping.handler = ngx_kubenova_app_watch_ping;
    w->ping.data = w;
    w->ping.log = r->connection->log;
    w->ping.cancelable = 1;
    ngx_add_timer(&w->ping, watch->heartbeat);

    if (ngx_kubenova_app_watch_keep(w, state, len) != NGX_OK
        || ngx_kubenova_app_watch_send(w) != NGX_OK)
    {
        return NGX_ERROR;
    }

    /*
     * a change committed after the first answer's snapshot may have been
     * announced before the stream was registered: ask once more, as soon
     * as this handler is done (an unchanged state sends nothing)
     */

    w->recheck.handler = ngx_kubenova_app_watch_recheck;
    w->recheck.data = w;
    w->recheck.log = r->connection->log;
    ngx_post_event(&w->recheck, &ngx_posted_events);

    /* the stream's reference: dropped when it ends */

    r->main->count++;

    return NGX_DONE;
}


static void
ngx_kubenova_app_watch_recheck(ngx_event_t *ev)
{
    ngx_kubenova_app_watcher_t  *w = ev->data;

    ngx_connection_t  *c;

    c = w->request->connection;
    ngx_kubenova_app_watch_ask(w);
    ngx_http_run_posted_requests(c);
}


/* the change feed */


static void
ngx_kubenova_app_watch_notify(void *data, const char *channel,
    const char *payload)
{
    ngx_kubenova_app_watch_t  *watch = data;

    ngx_queue_t                 *q, *next;
    ngx_connection_t            *c;
    ngx_kubenova_app_watcher_t  *w;

    for (q = ngx_queue_head(&watch->watchers);
         q != ngx_queue_sentinel(&watch->watchers);
         q = next)
    {
        next = ngx_queue_next(q);
        w = ngx_queue_data(q, ngx_kubenova_app_watcher_t, queue);

        if (ngx_strcmp(w->key, payload) != 0) {
            continue;
        }

        c = w->request->connection;
        ngx_kubenova_app_watch_ask(w);
        ngx_http_run_posted_requests(c);
    }
}


/* changes may have been missed: the streams end, their clients reconnect */

static void
ngx_kubenova_app_watch_reset(void *data)
{
    ngx_kubenova_app_watch_t  *watch = data;

    static const char  lost[] =
        "{\"error\":{\"status\":503,\"code\":\"database_unavailable\","
        "\"message\":\"the change feed was lost; reconnect\"}}";

    ngx_kubenova_app_watch_end_all(watch, "error", lost, sizeof(lost) - 1);
}


static void
ngx_kubenova_app_watch_exiting(ngx_event_t *ev)
{
    ngx_kubenova_app_watch_t  *watch = ev->data;

    static const char  bye[] =
        "{\"error\":{\"status\":503,\"code\":\"database_unavailable\","
        "\"message\":\"the server is shutting down; reconnect\"}}";

    if (ngx_exiting || ngx_terminate) {
        ngx_kubenova_app_watch_end_all(watch, "error", bye, sizeof(bye) - 1);
        return;
    }

    if (watch->count) {
        ngx_add_timer(ev, NGX_KUBENOVA_APP_WATCH_EXITING);
    }
}


static void
ngx_kubenova_app_watch_end_all(ngx_kubenova_app_watch_t *watch,
    const char *event, const char *data, size_t len)
{
    ngx_queue_t                 *q;
    ngx_connection_t            *c;
    ngx_kubenova_app_watcher_t  *w;

    while (!ngx_queue_empty(&watch->watchers)) {
        q = ngx_queue_head(&watch->watchers);
        w = ngx_queue_data(q, ngx_kubenova_app_watcher_t, queue);
        c = w->request->connection;

        ngx_kubenova_app_watch_end(w, event, data, len);
        ngx_http_run_posted_requests(c);
    }
}


static void
ngx_kubenova_app_watch_ask(ngx_kubenova_app_watcher_t *w)
{
    ngx_int_t  rc;

    if (w->querying) {
        w->again = 1;
        return;
    }

    w->again = 0;
    w->query.sql = ngx_kubenova_app_watch_sql;
    w->query.nparams = 1;
    w->query.values = w->values;
    w->query.done = ngx_kubenova_app_watch_answer;
    w->query.data = w;
    w->query.lease.log = w->request->connection->log;

    rc = ngx_kubenova_pg_query(w->watch->pool, &w->query);

    if (rc != NGX_AGAIN) {
        ngx_kubenova_app_watch_end(w, "error", ngx_kubenova_app_watch_db_error,
                                   sizeof(ngx_kubenova_app_watch_db_error) - 1);
        return;
    }

    w->querying = 1;
}


static void
ngx_kubenova_app_watch_answer(void *data, ngx_int_t rc, PGresult *res)
{
    ngx_kubenova_app_watcher_t  *w = data;

    size_t               len;
    ngx_int_t            status;
    const char          *body;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = w->request;
    c = r->connection;
    w->querying = 0;

    if (rc != NGX_OK || PQresultStatus(res) != PGRES_TUPLES_OK
        || PQntuples(res) != 1 || PQnfields(res) != 2
        || PQgetisnull(res, 0, 1))
    {
        if (rc == NGX_OK) {
            ngx_log_error(NGX_LOG_ERR, c->log, 0,
                          "kubenova: api.call(app.status) failed: %s",
                          PQresultErrorMessage(res));
        }

        ngx_kubenova_app_watch_end(w, "error", ngx_kubenova_app_watch_db_error,
                                   sizeof(ngx_kubenova_app_watch_db_error) - 1);
        goto done;
    }

    status = ngx_atoi((u_char *) PQgetvalue(res, 0, 0),
                      PQgetlength(res, 0, 0));
    body = PQgetvalue(res, 0, 1);
    len = PQgetlength(res, 0, 1);

    if (status == NGX_HTTP_NOT_FOUND) {
        /* the app is gone (or its tenant): the stream's last word */
        ngx_kubenova_app_watch_end(w, "deleted", NULL, 0);
        goto done;
    }

    if (status != NGX_HTTP_OK) {
        /* the caller may no longer read it (token revoked, role changed) */
        ngx_kubenova_app_watch_end(w, "error", body, len);
        goto done;
    }

    rc = ngx_kubenova_app_watch_keep(w, body, len);

    if (rc == NGX_DECLINED) {
        ngx_kubenova_app_watch_end(w, "error", ngx_kubenova_app_watch_too_large,
                                   sizeof(ngx_kubenova_app_watch_too_large) - 1);
        goto done;
    }

    if (rc == NGX_ERROR || ngx_kubenova_app_watch_send(w) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_ERROR);
        goto done;
    }

    if (w->again) {
        ngx_kubenova_app_watch_ask(w);
    }

done:

    ngx_http_run_posted_requests(c);
}


/*
 * The newest state replaces the one kept.  NGX_DONE: the same as before,
 * nothing to send; NGX_DECLINED: larger than a stream carries.
 */

static ngx_int_t
ngx_kubenova_app_watch_keep(ngx_kubenova_app_watcher_t *w, const char *state,
    size_t len)
{
    if (len > NGX_KUBENOVA_APP_WATCH_MAX_STATE) {
        return NGX_DECLINED;
    }

    if (w->state && w->state_len == len
        && ngx_memcmp(w->state, state, len) == 0)
    {
        return NGX_DONE;
    }

    if (ngx_kubenova_app_watch_reserve(w, &w->state, &w->state_size, len)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_memcpy(w->state, state, len);
    w->state_len = len;
    w->unsent = 1;

    return NGX_OK;
}


/* a buffer of the watcher's (ngx_alloc) at least n bytes long; no copy */

static ngx_int_t
ngx_kubenova_app_watch_reserve(ngx_kubenova_app_watcher_t *w, u_char **buf,
    size_t *size, size_t n)
{
    u_char  *p;

    if (n <= *size) {
        return NGX_OK;
    }

    p = ngx_alloc(n, w->request->connection->log);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (*buf) {
        ngx_free(*buf);
    }

    *buf = p;
    *size = n;

    return NGX_OK;
}


/* the newest state as an event, unless the previous one is still going */

static ngx_int_t
ngx_kubenova_app_watch_send(ngx_kubenova_app_watcher_t *w)
{
    u_char  *p;
    size_t   n;

    static const char  head[] = "event: status\ndata: ";

    if (!w->unsent || w->writing) {
        return NGX_OK;
    }

    n = sizeof(head) - 1 + w->state_len + 2;

    if (ngx_kubenova_app_watch_reserve(w, &w->event, &w->event_size, n)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    p = ngx_cpymem(w->event, head, sizeof(head) - 1);
    p = ngx_cpymem(p, w->state, w->state_len);
    *p++ = '\n';
    *p++ = '\n';

    w->unsent = 0;

    return ngx_kubenova_app_watch_output(w, w->event, n);
}


/* data stays the caller's until w->writing is clear again */

static ngx_int_t
ngx_kubenova_app_watch_output(ngx_kubenova_app_watcher_t *w, u_char *data,
    size_t len)
{
    ngx_buf_t  *b;

    b = &w->buf;
    ngx_memzero(b, sizeof(ngx_buf_t));
    b->start = data;
    b->pos = data;
    b->last = data + len;
    b->end = data + len;
    b->memory = 1;
    b->flush = 1;

    w->out.buf = b;
    w->out.next = NULL;

    return ngx_kubenova_app_watch_written(w,
                             ngx_http_output_filter(w->request, &w->out));
}


static ngx_int_t
ngx_kubenova_app_watch_written(ngx_kubenova_app_watcher_t *w, ngx_int_t rc)
{
    ngx_event_t               *wev;
    ngx_connection_t          *c;
    ngx_http_core_loc_conf_t  *clcf;

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    c = w->request->connection;
    wev = c->write;

    if (rc == NGX_AGAIN || c->buffered) {
        w->writing = 1;

        clcf = ngx_http_get_module_loc_conf(w->request, ngx_http_core_module);

        if (!wev->delayed) {
            ngx_add_timer(wev, clcf->send_timeout);
        }

        return ngx_handle_write_event(wev, clcf->send_lowat);
    }

    w->writing = 0;

    if (wev->timer_set) {
        ngx_del_timer(wev);
    }

    return NGX_OK;
}


static void
ngx_kubenova_app_watch_write(ngx_http_request_t *r)
{
    ngx_connection_t            *c;
    ngx_http_kubenova_ctx_t     *kctx;
    ngx_kubenova_app_watcher_t  *w;

    c = r->connection;
    kctx = ngx_http_kubenova_get_ctx(r);
    w = kctx ? kctx->app_watch : NULL;

    if (w == NULL) {
        return;              /* ended: ngx_http_writer's from now on */
    }

    if (c->write->timedout) {
        c->timedout = 1;
        ngx_http_finalize_request(r, NGX_HTTP_REQUEST_TIME_OUT);
        return;
    }

    if (ngx_kubenova_app_watch_written(w, ngx_http_output_filter(r, NULL))
        != NGX_OK
        || ngx_kubenova_app_watch_send(w) != NGX_OK)
    {
        ngx_http_finalize_request(r, NGX_ERROR);
    }
}


static void
ngx_kubenova_app_watch_ping(ngx_event_t *ev)
{
    ngx_kubenova_app_watcher_t  *w = ev->data;

    ngx_connection_t  *c;

    c = w->request->connection;

    /* a stream busy writing needs no sign of life */

    if (!w->writing
        && ngx_kubenova_app_watch_output(w, ngx_kubenova_app_watch_ping_text,
                                sizeof(ngx_kubenova_app_watch_ping_text) - 1)
           != NGX_OK)
    {
        ngx_http_finalize_request(w->request, NGX_ERROR);
        ngx_http_run_posted_requests(c);
        return;
    }

    ngx_add_timer(&w->ping, w->watch->heartbeat);
}


/*
 * The last event (data NULL: {"tenant", "name", "state": event}), then the
 * end of the response.  w may be gone after.
 */

static void
ngx_kubenova_app_watch_end(ngx_kubenova_app_watcher_t *w, const char *event,
    const char *data, size_t len)
{
    u_char              *p, *slash;
    char                *dump;
    json_t              *json;
    ngx_int_t            rc;
    ngx_buf_t           *b;
    ngx_chain_t         *cl;
    ngx_http_request_t  *r;

    r = w->request;

    ngx_kubenova_app_watch_detach(w);

    dump = NULL;

    if (data == NULL) {
        slash = (u_char *) ngx_strchr(w->key, '/');
        json = json_pack("{s:s%,s:s,s:s}",
                         "tenant", (const char *) w->key,
                         (size_t) (slash - w->key),
                         "name", (const char *) slash + 1, "state", event);
        dump = json ? json_dumps(json, JSON_COMPACT) : NULL;
        if (json) {
            json_decref(json);
        }

        if (dump == NULL) {
            ngx_http_finalize_request(r, NGX_ERROR);
            return;
        }

        data = dump;
        len = ngx_strlen(dump);
    }

    b = ngx_calloc_buf(r->pool);
    cl = ngx_alloc_chain_link(r->pool);

    if (b == NULL || cl == NULL) {
        goto failed;
    }

    p = ngx_pnalloc(r->pool, sizeof("event: \ndata: \n\n") - 1
                             + ngx_strlen(event) + len);
    if (p == NULL) {
        goto failed;
    }

    b->start = p;
    b->pos = p;
    p = ngx_sprintf(p, "event: %s\ndata: ", event);
    p = ngx_cpymem(p, data, len);
    *p++ = '\n';
    *p++ = '\n';
    b->last = p;
    b->end = p;
    b->memory = 1;

    if (dump) {
        free(dump);
        dump = NULL;
    }

    b->last_buf = (r == r->main);
    b->last_in_chain = 1;
    b->flush = 1;
    cl->buf = b;
    cl->next = NULL;

    rc = ngx_http_output_filter(r, cl);

    ngx_http_finalize_request(r, rc == NGX_ERROR ? NGX_ERROR : NGX_OK);
    return;

failed:

    if (dump) {
        free(dump);
    }

    ngx_http_finalize_request(r, NGX_ERROR);
}


/* off the change feed; idempotent */

static void
ngx_kubenova_app_watch_detach(ngx_kubenova_app_watcher_t *w)
{
    if (!w->registered) {
        return;
    }

    w->registered = 0;
    ngx_queue_remove(&w->queue);
    w->watch->count--;

    if (w->watch->count == 0 && w->watch->exiting.timer_set) {
        ngx_del_timer(&w->watch->exiting);
    }

    ngx_kubenova_pg_query_cancel(&w->query);
    w->querying = 0;

    if (w->ping.timer_set) {
        ngx_del_timer(&w->ping);
    }

    if (w->recheck.posted) {
        ngx_delete_posted_event(&w->recheck);
    }

    /* writing is nginx's again (ngx_http_writer once finalized) */

    w->kctx->app_watch = NULL;
}


static void
ngx_kubenova_app_watch_cleanup(void *data)
{
    ngx_kubenova_app_watcher_t  *w = data;

    ngx_kubenova_app_watch_detach(w);

    if (w->state) {
        ngx_free(w->state);
        w->state = NULL;
    }

    if (w->event) {
        ngx_free(w->event);
        w->event = NULL;
    }
}
