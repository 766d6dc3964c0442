/*
 * Non-blocking PostgreSQL connection pool, one per nginx worker.
 *
 * A connection goes DOWN -> CONNECTING -> IDLE <-> BUSY -> RESETTING -> IDLE.
 * RESETTING drains a statement whose lease went away and rolls back a
 * transaction left open, so a connection returns to IDLE only outside any
 * transaction.  Any I/O error, EOF or timeout closes the PGconn and starts a
 * new one: at once after a break, with capped exponential backoff and jitter
 * after failed attempts.  The socket libpq owns is wrapped in an nginx
 * connection only to receive events; it is never closed by nginx.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_kubenova_pg.h"
#include "ngx_kubenova_metrics.h"


#define NGX_KUBENOVA_PG_RETRY_MIN   100      /* ms, first delay after failure */
#define NGX_KUBENOVA_PG_RETRY_MAX   5000     /* ms, backoff cap */


typedef enum {
    NGX_KUBENOVA_PG_DOWN = 0,
    NGX_KUBENOVA_PG_CONNECTING,
    NGX_KUBENOVA_PG_IDLE,
    NGX_KUBENOVA_PG_BUSY,
    NGX_KUBENOVA_PG_RESETTING
} ngx_kubenova_pg_state_e;


struct ngx_kubenova_pg_conn_s {
    ngx_kubenova_pg_pool_t     *pool;
    PGconn                     *pg;
    ngx_connection_t           *c;            /* event wrapper of PQsocket */
    ngx_kubenova_pg_lease_t    *lease;
    PGresult                   *result;       /* of the statement in flight */
    ngx_event_t                 timer;        /* timeouts and retries */
    ngx_uint_t                  state;
    ngx_uint_t                  failures;     /* consecutive failed connects */
    ngx_uint_t                  number;

    unsigned                    in_flight:1;
    unsigned                    flushing:1;
    unsigned                    rolling_back:1;
    unsigned                    was_connected:1;
    unsigned                    listener:1;     /* pool->listener */
};


struct ngx_kubenova_pg_pool_s {
    ngx_kubenova_pg_conf_t     *conf;
    ngx_kubenova_metrics_t     *metrics;
    ngx_log_t                  *log;
    ngx_kubenova_pg_conn_t     *conns;
    ngx_uint_t                  nconns;
    ngx_queue_t                 waiting;
    ngx_uint_t                  nwaiting;
    ngx_event_t                 dispatch;     /* posted: idle conns to waiters */

    ngx_kubenova_pg_conn_t     *listener;     /* LISTEN, outside the rotation */
    const char                 *listen_sql;
    ngx_kubenova_pg_notify_pt   notify;
    ngx_kubenova_pg_reset_pt    reset;
    void                       *listen_data;

    unsigned                    listening:1;
    unsigned                    destroyed:1;
};


static void ngx_kubenova_pg_pool_cleanup(void *data);
static void ngx_kubenova_pg_query_acquired(ngx_kubenova_pg_lease_t *lease,
    ngx_int_t rc);
static void ngx_kubenova_pg_query_result(ngx_kubenova_pg_lease_t *lease,
    ngx_int_t rc, PGresult *res);
static void ngx_kubenova_pg_listener_ready(ngx_kubenova_pg_conn_t *kc);
static void ngx_kubenova_pg_listener_lost(ngx_kubenova_pg_conn_t *kc);
static void ngx_kubenova_pg_connect(ngx_kubenova_pg_conn_t *kc);
static void ngx_kubenova_pg_connect_poll(ngx_kubenova_pg_conn_t *kc);
static void ngx_kubenova_pg_connect_failed(ngx_kubenova_pg_conn_t *kc,
    const char *reason);
static void ngx_kubenova_pg_connected(ngx_kubenova_pg_conn_t *kc);
static void ngx_kubenova_pg_broken(ngx_kubenova_pg_conn_t *kc, ngx_int_t rc,
    const char *reason);
static void ngx_kubenova_pg_close(ngx_kubenova_pg_conn_t *kc);
static ngx_int_t ngx_kubenova_pg_watch(ngx_kubenova_pg_conn_t *kc,
    ngx_uint_t read, ngx_uint_t write);
static void ngx_kubenova_pg_unwatch(ngx_kubenova_pg_conn_t *kc);
static ngx_int_t ngx_kubenova_pg_want_write(ngx_kubenova_pg_conn_t *kc,
    ngx_uint_t on);
static void ngx_kubenova_pg_event_handler(ngx_event_t *ev);
static void ngx_kubenova_pg_timer_handler(ngx_event_t *ev);
static void ngx_kubenova_pg_io(ngx_kubenova_pg_conn_t *kc, ngx_uint_t write);
static void ngx_kubenova_pg_statement_done(ngx_kubenova_pg_conn_t *kc);
static ngx_int_t ngx_kubenova_pg_conn_send(ngx_kubenova_pg_conn_t *kc,
    const char *sql, int nparams, const char *const *values,
    const int *lengths);
static void ngx_kubenova_pg_reset(ngx_kubenova_pg_conn_t *kc);
static void ngx_kubenova_pg_became_idle(ngx_kubenova_pg_conn_t *kc);
static void ngx_kubenova_pg_dispatch_handler(ngx_event_t *ev);
static void ngx_kubenova_pg_wait_timeout_handler(ngx_event_t *ev);
static void ngx_kubenova_pg_unqueue(ngx_kubenova_pg_lease_t *lease);
static void ngx_kubenova_pg_assign(ngx_kubenova_pg_conn_t *kc,
    ngx_kubenova_pg_lease_t *lease);
static void ngx_kubenova_pg_fail_waiters(ngx_kubenova_pg_pool_t *pool,
    ngx_int_t rc);
static ngx_kubenova_pg_conn_t *ngx_kubenova_pg_find(
    ngx_kubenova_pg_pool_t *pool, ngx_uint_t state);
static ngx_uint_t ngx_kubenova_pg_live(ngx_kubenova_pg_pool_t *pool);
static void ngx_kubenova_pg_publish(ngx_kubenova_pg_pool_t *pool);
static const char *ngx_kubenova_pg_message(PGconn *pg);
static void ngx_kubenova_pg_notice(void *arg, const char *message);


ngx_kubenova_pg_pool_t *
ngx_kubenova_pg_pool_create(ngx_cycle_t *cycle, ngx_kubenova_pg_conf_t *conf,
    ngx_kubenova_metrics_t *metrics)
{
    ngx_uint_t               i;
    ngx_pool_cleanup_t      *cln;
    ngx_kubenova_pg_conn_t  *kc;
    ngx_kubenova_pg_pool_t  *pool;

    pool = ngx_pcalloc(cycle->pool, sizeof(ngx_kubenova_pg_pool_t));
    if (pool == NULL) {
        return NULL;
    }

    pool->conns = ngx_pcalloc(cycle->pool,
                              conf->size * sizeof(ngx_kubenova_pg_conn_t));
    if (pool->conns == NULL) {
        return NULL;
    }

    pool->conf = conf;
    pool->metrics = metrics;
    pool->log = cycle->log;
    pool->nconns = conf->size;
    ngx_queue_init(&pool->waiting);

    /* the pool never outlives its cycle, whichever way the cycle ends */

    cln = ngx_pool_cleanup_add(cycle->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    cln->handler = ngx_kubenova_pg_pool_cleanup;
    cln->data = pool;

    pool->dispatch.handler = ngx_kubenova_pg_dispatch_handler;
    pool->dispatch.data = pool;
    pool->dispatch.log = cycle->log;

    for (i = 0; i < pool->nconns; i++) {
        kc = &pool->conns[i];
        kc->pool = pool;
        kc->number = i;
        kc->timer.handler = ngx_kubenova_pg_timer_handler;
        kc->timer.data = kc;
        kc->timer.log = cycle->log;
    }

    for (i = 0; i < pool->nconns; i++) {
        ngx_kubenova_pg_connect(&pool->conns[i]);
    }

    ngx_kubenova_pg_publish(pool);

    return pool;
}


void
ngx_kubenova_pg_pool_destroy(ngx_kubenova_pg_pool_t *pool)
{
    ngx_uint_t  i;

    if (pool == NULL || pool->destroyed) {
        return;
    }

    pool->destroyed = 1;

    if (pool->dispatch.posted) {
        ngx_delete_posted_event(&pool->dispatch);
    }

    for (i = 0; i < pool->nconns; i++) {
        ngx_kubenova_pg_close(&pool->conns[i]);
    }

    if (pool->listener) {
        ngx_kubenova_pg_close(pool->listener);
    }

    ngx_kubenova_pg_fail_waiters(pool, NGX_KUBENOVA_PG_UNAVAILABLE);
}


static void
ngx_kubenova_pg_pool_cleanup(void *data)
{
    ngx_kubenova_pg_pool_destroy(data);
}


void
ngx_kubenova_pg_pool_stats(ngx_kubenova_pg_pool_t *pool,
    ngx_kubenova_pg_stats_t *stats)
{
    ngx_uint_t  i;

    ngx_memzero(stats, sizeof(ngx_kubenova_pg_stats_t));

    for (i = 0; i < pool->nconns; i++) {
        switch (pool->conns[i].state) {

        case NGX_KUBENOVA_PG_DOWN:
            stats->down++;
            break;

        case NGX_KUBENOVA_PG_CONNECTING:
            stats->connecting++;
            break;

        case NGX_KUBENOVA_PG_IDLE:
            stats->idle++;
            break;

        case NGX_KUBENOVA_PG_BUSY:
        case NGX_KUBENOVA_PG_RESETTING:
            stats->busy++;
            break;
        }
    }

    stats->waiting = pool->nwaiting;
}


ngx_int_t
ngx_kubenova_pg_acquire(ngx_kubenova_pg_pool_t *pool,
    ngx_kubenova_pg_lease_t *lease)
{
    ngx_kubenova_pg_conn_t  *kc;

    lease->pool = pool;
    lease->conn = NULL;

    if (pool->destroyed) {
        return NGX_KUBENOVA_PG_UNAVAILABLE;
    }

    /* first come, first served: an idle connection goes to the queue head */

    if (pool->nwaiting == 0) {
        kc = ngx_kubenova_pg_find(pool, NGX_KUBENOVA_PG_IDLE);

        if (kc) {
            ngx_kubenova_pg_assign(kc, lease);
            return NGX_OK;
        }
    }

    /*
     * No idle connection.  If nothing is being connected, start one attempt
     * now instead of waiting for a backoff timer: after a database restart
     * the first request is served as soon as the database accepts, and while
     * it is down at most one attempt per worker is in flight.
     */

    if (ngx_kubenova_pg_find(pool, NGX_KUBENOVA_PG_CONNECTING) == NULL) {
        kc = ngx_kubenova_pg_find(pool, NGX_KUBENOVA_PG_DOWN);

        if (kc) {
            if (kc->timer.timer_set) {
                ngx_del_timer(&kc->timer);
            }

            ngx_kubenova_pg_connect(kc);
        }

        if (ngx_kubenova_pg_live(pool) == 0
            && ngx_kubenova_pg_find(pool, NGX_KUBENOVA_PG_CONNECTING) == NULL)
        {
            return NGX_KUBENOVA_PG_UNAVAILABLE;
        }
    }

    if (pool->nwaiting >= pool->conf->queue) {
        ngx_kubenova_metrics_count(pool->metrics,
                                   NGX_KUBENOVA_PG_QUEUE_REJECTIONS);
        return NGX_KUBENOVA_PG_QUEUE_FULL;
    }

    ngx_queue_insert_tail(&pool->waiting, &lease->queue);
    pool->nwaiting++;
    lease->waiting = 1;

    ngx_memzero(&lease->wait_timer, sizeof(ngx_event_t));
    lease->wait_timer.handler = ngx_kubenova_pg_wait_timeout_handler;
    lease->wait_timer.data = lease;
    lease->wait_timer.log = lease->log ? lease->log : pool->log;
    ngx_add_timer(&lease->wait_timer, pool->conf->queue_timeout);

    ngx_kubenova_pg_publish(pool);

    return NGX_AGAIN;
}


ngx_int_t
ngx_kubenova_pg_send(ngx_kubenova_pg_lease_t *lease, const char *sql,
    int nparams, const char *const *values, const int *lengths)
{
    ngx_kubenova_pg_conn_t  *kc;

    kc = lease->conn;

    if (kc == NULL || kc->state != NGX_KUBENOVA_PG_BUSY || kc->in_flight) {
        ngx_log_error(NGX_LOG_ALERT, lease->log, 0,
                      "kubenova: postgres statement sent without a "
                      "ready connection");
        return NGX_ERROR;
    }

    return ngx_kubenova_pg_conn_send(kc, sql, nparams, values, lengths);
}


void
ngx_kubenova_pg_release(ngx_kubenova_pg_lease_t *lease)
{
    ngx_kubenova_pg_conn_t  *kc;
    ngx_kubenova_pg_pool_t  *pool;

    pool = lease->pool;

    if (lease->waiting) {
        ngx_kubenova_pg_unqueue(lease);
    }

    kc = lease->conn;

    if (kc == NULL) {
        return;
    }

    lease->conn = NULL;
    kc->lease = NULL;

    if (kc->state != NGX_KUBENOVA_PG_BUSY) {
        return;
    }

    kc->state = NGX_KUBENOVA_PG_RESETTING;

    if (!kc->in_flight) {
        /* else the statement's completion continues the reset */
        ngx_kubenova_pg_reset(kc);
    }

    ngx_kubenova_pg_publish(pool);
}


const char *
ngx_kubenova_pg_strerror(ngx_int_t rc)
{
    switch (rc) {

    case NGX_KUBENOVA_PG_QUEUE_FULL:
        return "all database connections are busy and the queue is full";

    case NGX_KUBENOVA_PG_QUEUE_TIMEOUT:
        return "timed out waiting for a database connection";

    case NGX_KUBENOVA_PG_UNAVAILABLE:
        return "the database is unavailable";

    case NGX_KUBENOVA_PG_QUERY_TIMEOUT:
        return "the database did not answer in time";

    case NGX_KUBENOVA_PG_CONN_LOST:
        return "the database connection was lost";

    default:
        return "database error";
    }
}


ngx_int_t
ngx_kubenova_pg_query(ngx_kubenova_pg_pool_t *pool, ngx_kubenova_pg_query_t *q)
{
    ngx_int_t  rc;

    q->lease.on_acquired = ngx_kubenova_pg_query_acquired;
    q->lease.on_result = ngx_kubenova_pg_query_result;
    q->lease.data = q;

    if (q->lease.log == NULL) {
        q->lease.log = pool->log;
    }

    rc = ngx_kubenova_pg_acquire(pool, &q->lease);

    if (rc == NGX_OK) {
        if (ngx_kubenova_pg_send(&q->lease, q->sql, q->nparams, q->values,
                                 NULL)
            != NGX_OK)
        {
            ngx_kubenova_pg_release(&q->lease);
            return NGX_KUBENOVA_PG_CONN_LOST;
        }

    } else if (rc != NGX_AGAIN) {
        return rc;
    }

    q->active = 1;

    return NGX_AGAIN;
}


void
ngx_kubenova_pg_query_cancel(ngx_kubenova_pg_query_t *q)
{
    if (q->active) {
        q->active = 0;
        ngx_kubenova_pg_release(&q->lease);
    }
}


static void
ngx_kubenova_pg_query_acquired(ngx_kubenova_pg_lease_t *lease, ngx_int_t rc)
{
    ngx_kubenova_pg_query_t  *q = lease->data;

    if (rc == NGX_OK
        && ngx_kubenova_pg_send(lease, q->sql, q->nparams, q->values, NULL)
           != NGX_OK)
    {
        rc = NGX_KUBENOVA_PG_CONN_LOST;
    }

    if (rc != NGX_OK) {
        ngx_kubenova_pg_release(lease);
        q->active = 0;
        q->done(q->data, rc, NULL);
    }
}


static void
ngx_kubenova_pg_query_result(ngx_kubenova_pg_lease_t *lease, ngx_int_t rc,
    PGresult *res)
{
    ngx_kubenova_pg_query_t  *q = lease->data;

    ngx_uint_t  keep;

    /* q may be gone once done() returns: read what is needed first */

    keep = q->keep;

    ngx_kubenova_pg_release(lease);
    q->active = 0;
    q->done(q->data, rc, res);

    if (res && !keep) {
        PQclear(res);
    }
}


ngx_int_t
ngx_kubenova_pg_listen(ngx_kubenova_pg_pool_t *pool, const char *listen_sql,
    ngx_kubenova_pg_notify_pt notify, ngx_kubenova_pg_reset_pt reset,
    void *data)
{
    ngx_kubenova_pg_conn_t  *kc;

    if (pool->listener) {
        return NGX_ERROR;
    }

    kc = ngx_pcalloc(ngx_cycle->pool, sizeof(ngx_kubenova_pg_conn_t));
    if (kc == NULL) {
        return NGX_ERROR;
    }

    kc->pool = pool;
    kc->number = pool->nconns;
    kc->listener = 1;
    kc->timer.handler = ngx_kubenova_pg_timer_handler;
    kc->timer.data = kc;
    kc->timer.log = pool->log;

    pool->listener = kc;
    pool->listen_sql = listen_sql;
    pool->notify = notify;
    pool->reset = reset;
    pool->listen_data = data;

    ngx_kubenova_pg_connect(kc);

    return NGX_OK;
}


ngx_uint_t
ngx_kubenova_pg_listening(ngx_kubenova_pg_pool_t *pool)
{
    return pool->listening;
}


/* the LISTEN connection: busy for good once its LISTEN statements ran */

static void
ngx_kubenova_pg_listener_ready(ngx_kubenova_pg_conn_t *kc)
{
    kc->state = NGX_KUBENOVA_PG_BUSY;

    if (PQsendQuery(kc->pg, kc->pool->listen_sql) == 0) {
        ngx_kubenova_pg_broken(kc, NGX_KUBENOVA_PG_CONN_LOST,
                               ngx_kubenova_pg_message(kc->pg));
        return;
    }

    if (PQflush(kc->pg) != 0) {
        /* a few bytes on a fresh connection: not flushed means broken */
        ngx_kubenova_pg_broken(kc, NGX_KUBENOVA_PG_CONN_LOST,
                               "cannot send LISTEN");
        return;
    }

    kc->in_flight = 1;
    kc->timer.cancelable = 0;
    ngx_add_timer(&kc->timer, kc->pool->conf->query_timeout);
}


static void
ngx_kubenova_pg_listener_lost(ngx_kubenova_pg_conn_t *kc)
{
    ngx_kubenova_pg_pool_t  *pool;

    pool = kc->pool;

    if (!pool->listening) {
        return;
    }

    pool->listening = 0;

    if (pool->reset && !pool->destroyed) {
        pool->reset(pool->listen_data);
    }
}


/* connection life cycle */


static void
ngx_kubenova_pg_connect(ngx_kubenova_pg_conn_t *kc)
{
    PGconn                  *pg;
    ngx_kubenova_pg_conf_t  *conf;

    conf = kc->pool->conf;

    /* expand_dbname=0: keywords were fully parsed at configuration time */
    pg = PQconnectStartParams(conf->keywords, conf->values, 0);

    if (pg == NULL) {
        ngx_log_error(NGX_LOG_ALERT, kc->pool->log, 0,
                      "kubenova: postgres connection #%ui: "
                      "PQconnectStartParams() failed: out of memory",
                      kc->number);
        ngx_kubenova_pg_connect_failed(kc, NULL);
        return;
    }

    kc->pg = pg;
    kc->state = NGX_KUBENOVA_PG_CONNECTING;

    if (PQstatus(pg) == CONNECTION_BAD) {
        ngx_kubenova_pg_connect_failed(kc, ngx_kubenova_pg_message(pg));
        return;
    }

    if (PQsetnonblocking(pg, 1) == -1) {
        ngx_kubenova_pg_connect_failed(kc, ngx_kubenova_pg_message(pg));
        return;
    }

    /* libpq would print server notices on stderr: log them instead */
    PQsetNoticeProcessor(pg, ngx_kubenova_pg_notice, kc);

    ngx_kubenova_metrics_count(kc->pool->metrics,
                               kc->was_connected ? NGX_KUBENOVA_PG_RECONNECTS
                                                 : NGX_KUBENOVA_PG_CONNECTS);

    kc->timer.cancelable = 0;
    ngx_add_timer(&kc->timer, conf->connect_timeout);

    /* libpq: behave as if PQconnectPoll() last returned POLLING_WRITING */

    if (ngx_kubenova_pg_watch(kc, 0, 1) != NGX_OK) {
        ngx_kubenova_pg_connect_failed(kc, "cannot watch the socket");
        return;
    }

    ngx_kubenova_pg_publish(kc->pool);
}


static void
ngx_kubenova_pg_connect_poll(ngx_kubenova_pg_conn_t *kc)
{
    PostgresPollingStatusType  status;

    /*
     * libpq may close the socket and open another one inside PQconnectPoll()
     * (next address, SSL or GSS fallback), possibly under the same number.
     * Dropping the registration before every poll and registering whatever
     * PQsocket() is afterwards never leaves a stale one behind.
     */

    ngx_kubenova_pg_unwatch(kc);

    status = PQconnectPoll(kc->pg);

    switch (status) {

    case PGRES_POLLING_READING:
        if (ngx_kubenova_pg_watch(kc, 1, 0) != NGX_OK) {
            ngx_kubenova_pg_connect_failed(kc, "cannot watch the socket");
        }
        return;

    case PGRES_POLLING_WRITING:
        if (ngx_kubenova_pg_watch(kc, 0, 1) != NGX_OK) {
            ngx_kubenova_pg_connect_failed(kc, "cannot watch the socket");
        }
        return;

    case PGRES_POLLING_OK:
        ngx_kubenova_pg_connected(kc);
        return;

    default: /* PGRES_POLLING_FAILED */
        ngx_kubenova_pg_connect_failed(kc, ngx_kubenova_pg_message(kc->pg));
        return;
    }
}


static void
ngx_kubenova_pg_connected(ngx_kubenova_pg_conn_t *kc)
{
    if (kc->timer.timer_set) {
        ngx_del_timer(&kc->timer);
    }

    /* the read side stays watched while idle: a server gone is seen at once */

    if (ngx_kubenova_pg_watch(kc, 1, 0) != NGX_OK) {
        ngx_kubenova_pg_connect_failed(kc, "cannot watch the socket");
        return;
    }

    if (kc->failures || kc->was_connected) {
        ngx_log_error(NGX_LOG_NOTICE, kc->pool->log, 0,
                      "kubenova: postgres connection #%ui established "
                      "after %ui failed attempt(s)", kc->number, kc->failures);
    }

    kc->failures = 0;
    kc->was_connected = 1;

    ngx_kubenova_pg_became_idle(kc);
}


static void
ngx_kubenova_pg_connect_failed(ngx_kubenova_pg_conn_t *kc, const char *reason)
{
    ngx_msec_t               delay;
    ngx_uint_t               level, shift;
    ngx_kubenova_pg_pool_t  *pool;

    pool = kc->pool;

    /* the first failure in a row is an error, the retries after it notices */
    level = (kc->failures == 0) ? NGX_LOG_ERR : NGX_LOG_NOTICE;

    if (reason) {
        ngx_log_error(level, pool->log, 0,
                      "kubenova: postgres connection #%ui failed: %s",
                      kc->number, reason);
    }

    ngx_kubenova_pg_close(kc);
    ngx_kubenova_metrics_count(pool->metrics,
                               NGX_KUBENOVA_PG_CONNECT_FAILURES);

    /* capped exponential backoff with jitter over its upper half */

    shift = ngx_min(kc->failures, 6);
    kc->failures++;

    delay = ngx_min((ngx_msec_t) NGX_KUBENOVA_PG_RETRY_MIN << shift,
                    (ngx_msec_t) NGX_KUBENOVA_PG_RETRY_MAX);
    delay = delay / 2 + (ngx_msec_t) ngx_random() % (delay / 2 + 1);

    kc->timer.cancelable = 1;
    ngx_add_timer(&kc->timer, delay);

    if (ngx_kubenova_pg_live(pool) == 0
        && ngx_kubenova_pg_find(pool, NGX_KUBENOVA_PG_CONNECTING) == NULL)
    {
        ngx_kubenova_pg_fail_waiters(pool, NGX_KUBENOVA_PG_UNAVAILABLE);
    }

    ngx_kubenova_pg_publish(pool);
}


static void
ngx_kubenova_pg_broken(ngx_kubenova_pg_conn_t *kc, ngx_int_t rc,
    const char *reason)
{
    ngx_uint_t                in_flight;
    ngx_kubenova_pg_lease_t  *lease;

    ngx_log_error(NGX_LOG_ERR, kc->pool->log, 0,
                  "kubenova: postgres connection #%ui broken: %s",
                  kc->number, reason);

    lease = kc->lease;
    in_flight = kc->in_flight;

    if (lease) {
        lease->conn = NULL;
    }

    ngx_kubenova_pg_close(kc);

    /* an established connection that broke is replaced at once */

    ngx_kubenova_pg_connect(kc);

    if (lease && in_flight) {
        lease->on_result(lease, rc, NULL);
    }
}


static void
ngx_kubenova_pg_close(ngx_kubenova_pg_conn_t *kc)
{
    if (kc->listener) {
        ngx_kubenova_pg_listener_lost(kc);
    }

    ngx_kubenova_pg_unwatch(kc);

    if (kc->timer.timer_set) {
        ngx_del_timer(&kc->timer);
    }

    if (kc->result) {
        PQclear(kc->result);
        kc->result = NULL;
    }

    if (kc->pg) {
        PQfinish(kc->pg);
        kc->pg = NULL;
    }

    kc->lease = NULL;
    kc->in_flight = 0;
    kc->flushing = 0;
    kc->rolling_back = 0;
    kc->state = NGX_KUBENOVA_PG_DOWN;
}


/* events */


static ngx_int_t
ngx_kubenova_pg_watch(ngx_kubenova_pg_conn_t *kc, ngx_uint_t read,
    ngx_uint_t write)
{
    ngx_socket_t       fd;
    ngx_connection_t  *c;

    fd = PQsocket(kc->pg);

    if (fd == (ngx_socket_t) -1) {
        return NGX_ERROR;
    }

    c = ngx_get_connection(fd, kc->pool->log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->data = kc;
    c->log = kc->pool->log;
    c->read->log = c->log;
    c->write->log = c->log;
    c->read->handler = ngx_kubenova_pg_event_handler;
    c->write->handler = ngx_kubenova_pg_event_handler;

    kc->c = c;

    /* level-triggered: libpq does not promise to read until EAGAIN */

    if (read && ngx_add_event(c->read, NGX_READ_EVENT, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    if (write && ngx_add_event(c->write, NGX_WRITE_EVENT, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_kubenova_pg_unwatch(ngx_kubenova_pg_conn_t *kc)
{
    ngx_uint_t         flags;
    ngx_connection_t  *c;

    c = kc->c;

    if (c == NULL) {
        return;
    }

    kc->c = NULL;

    /*
     * While libpq keeps the socket open, deregister it for real: it stays
     * open after us.  When libpq has already closed it (it drops the socket
     * on EOF or a fatal error), the kernel has forgotten the registration
     * and the number may already belong to somebody else: touch nothing.
     */

    flags = (kc->pg && PQsocket(kc->pg) == c->fd) ? 0 : NGX_CLOSE_EVENT;

    if (c->read->active) {
        ngx_del_event(c->read, NGX_READ_EVENT, flags);
    }

    if (c->write->active) {
        ngx_del_event(c->write, NGX_WRITE_EVENT, flags);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;
}


static ngx_int_t
ngx_kubenova_pg_want_write(ngx_kubenova_pg_conn_t *kc, ngx_uint_t on)
{
    ngx_event_t  *wev;

    wev = kc->c->write;

    if (on && !wev->active) {
        return ngx_add_event(wev, NGX_WRITE_EVENT, 0);
    }

    if (!on && wev->active) {
        return ngx_del_event(wev, NGX_WRITE_EVENT, 0);
    }

    return NGX_OK;
}


static void
ngx_kubenova_pg_event_handler(ngx_event_t *ev)
{
    ngx_connection_t        *c;
    ngx_kubenova_pg_conn_t  *kc;

    c = ev->data;
    kc = c->data;

    if (kc->state == NGX_KUBENOVA_PG_CONNECTING) {
        ngx_kubenova_pg_connect_poll(kc);
        return;
    }

    ngx_kubenova_pg_io(kc, ev->write);
}


static void
ngx_kubenova_pg_timer_handler(ngx_event_t *ev)
{
    ngx_kubenova_pg_conn_t  *kc;

    kc = ev->data;

    switch (kc->state) {

    case NGX_KUBENOVA_PG_DOWN:
        ngx_kubenova_pg_connect(kc);
        return;

    case NGX_KUBENOVA_PG_CONNECTING:
        ngx_kubenova_pg_connect_failed(kc, "connect timed out");
        return;

    default:
        if (kc->in_flight) {
            ngx_kubenova_metrics_count(kc->pool->metrics,
                                       NGX_KUBENOVA_PG_QUERY_TIMEOUTS);
            ngx_kubenova_pg_broken(kc, NGX_KUBENOVA_PG_QUERY_TIMEOUT,
                                   "statement timed out");
        }
        return;
    }
}


static void
ngx_kubenova_pg_io(ngx_kubenova_pg_conn_t *kc, ngx_uint_t write)
{
    int        rc;
    PGresult  *res;

    if (kc->flushing) {
        rc = PQflush(kc->pg);

        if (rc == -1) {
            ngx_kubenova_pg_broken(kc, NGX_KUBENOVA_PG_CONN_LOST,
                                   ngx_kubenova_pg_message(kc->pg));
            return;
        }

        if (rc == 0) {
            kc->flushing = 0;

            if (ngx_kubenova_pg_want_write(kc, 0) != NGX_OK) {
                ngx_kubenova_pg_broken(kc, NGX_KUBENOVA_PG_CONN_LOST,
                                       "cannot watch the socket");
                return;
            }
        }
    }

    if (write) {
        return;
    }

    if (PQconsumeInput(kc->pg) == 0) {
        ngx_kubenova_pg_broken(kc, NGX_KUBENOVA_PG_CONN_LOST,
                               ngx_kubenova_pg_message(kc->pg));
        return;
    }

    /* asynchronous notifications: a LISTEN connection will consume these */

    for ( ;; ) {
        PGnotify  *notify = PQnotifies(kc->pg);

        if (notify == NULL) {
            break;
        }

        if (kc->listener && kc->pool->notify && kc->pool->listening) {
            kc->pool->notify(kc->pool->listen_data, notify->relname,
                             notify->extra);
        }

        PQfreemem(notify);

        if (kc->pg == NULL) {
            return;        /* the handler ended the pool */
        }
    }

    if (!kc->in_flight) {
        if (PQstatus(kc->pg) == CONNECTION_BAD) {
            ngx_kubenova_pg_broken(kc, NGX_KUBENOVA_PG_CONN_LOST,
                                   ngx_kubenova_pg_message(kc->pg));
        }

        return;
    }

    while (!PQisBusy(kc->pg)) {
        res = PQgetResult(kc->pg);

        if (res == NULL) {
            ngx_kubenova_pg_statement_done(kc);
            return;
        }

        /* keep the first error, else the last result */

        if (kc->result == NULL
            || PQresultStatus(kc->result) != PGRES_FATAL_ERROR)
        {
            if (kc->result) {
                PQclear(kc->result);
            }

            kc->result = res;

        } else {
            PQclear(res);
        }
    }
}


static void
ngx_kubenova_pg_statement_done(ngx_kubenova_pg_conn_t *kc)
{
    PGresult                 *res;
    ngx_kubenova_pg_lease_t  *lease;

    if (kc->result == NULL) {
        /* libpq gave no result at all: treat as a broken connection */
        ngx_kubenova_pg_broken(kc, NGX_KUBENOVA_PG_CONN_LOST,
                               "no result for the statement");
        return;
    }

    kc->in_flight = 0;

    if (kc->timer.timer_set) {
        ngx_del_timer(&kc->timer);
    }

    res = kc->result;
    kc->result = NULL;

    if (kc->listener) {
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            ngx_log_error(NGX_LOG_ERR, kc->pool->log, 0,
                          "kubenova: postgres LISTEN failed: %s",
                          PQresultErrorMessage(res));
            PQclear(res);
            ngx_kubenova_pg_broken(kc, NGX_KUBENOVA_PG_CONN_LOST,
                                   "LISTEN failed");
            return;
        }

        PQclear(res);
        kc->pool->listening = 1;
        return;
    }

    if (kc->state == NGX_KUBENOVA_PG_RESETTING) {
        PQclear(res);
        ngx_kubenova_pg_reset(kc);
        return;
    }

    lease = kc->lease;

    /* the callback owns res; it may send the next statement or release */

    lease->on_result(lease, NGX_OK, res);
}


static ngx_int_t
ngx_kubenova_pg_conn_send(ngx_kubenova_pg_conn_t *kc, const char *sql,
    int nparams, const char *const *values, const int *lengths)
{
    int  rc;

    if (PQsendQueryParams(kc->pg, sql, nparams, NULL, values, lengths, NULL, 0)
        == 0)
    {
        ngx_log_error(NGX_LOG_ERR, kc->pool->log, 0,
                      "kubenova: postgres connection #%ui: "
                      "PQsendQueryParams() failed: %s",
                      kc->number, ngx_kubenova_pg_message(kc->pg));

        if (PQstatus(kc->pg) == CONNECTION_BAD) {
            ngx_kubenova_pg_broken(kc, NGX_KUBENOVA_PG_CONN_LOST,
                                   "cannot send");
        }

        return NGX_ERROR;
    }

    rc = PQflush(kc->pg);

    if (rc == -1) {
        ngx_kubenova_pg_broken(kc, NGX_KUBENOVA_PG_CONN_LOST,
                               ngx_kubenova_pg_message(kc->pg));
        return NGX_ERROR;
    }

    if (rc == 1) {
        kc->flushing = 1;

        if (ngx_kubenova_pg_want_write(kc, 1) != NGX_OK) {
            ngx_kubenova_pg_broken(kc, NGX_KUBENOVA_PG_CONN_LOST,
                                   "cannot watch the socket");
            return NGX_ERROR;
        }
    }

    kc->in_flight = 1;
    kc->timer.cancelable = 0;
    ngx_add_timer(&kc->timer, kc->pool->conf->query_timeout);

    return NGX_OK;
}


static void
ngx_kubenova_pg_reset(ngx_kubenova_pg_conn_t *kc)
{
    switch (PQtransactionStatus(kc->pg)) {

    case PQTRANS_IDLE:
        kc->rolling_back = 0;
        ngx_kubenova_pg_became_idle(kc);
        return;

    case PQTRANS_INTRANS:
    case PQTRANS_INERROR:
        if (!kc->rolling_back) {
            kc->rolling_back = 1;
            ngx_kubenova_metrics_count(kc->pool->metrics,
                                       NGX_KUBENOVA_PG_ROLLBACKS);

            if (ngx_kubenova_pg_conn_send(kc, "ROLLBACK", 0, NULL, NULL)
                == NGX_OK)
            {
                return;
            }

            if (kc->state == NGX_KUBENOVA_PG_DOWN
                || kc->state == NGX_KUBENOVA_PG_CONNECTING)
            {
                return;      /* already replaced */
            }
        }

        /* fall through */

    default:
        ngx_kubenova_pg_broken(kc, NGX_KUBENOVA_PG_CONN_LOST,
                               "cannot return to a clean transaction state");
        return;
    }
}


static void
ngx_kubenova_pg_became_idle(ngx_kubenova_pg_conn_t *kc)
{
    ngx_kubenova_pg_pool_t  *pool;

    pool = kc->pool;

    if (kc->listener) {
        ngx_kubenova_pg_listener_ready(kc);
        return;
    }

    kc->state = NGX_KUBENOVA_PG_IDLE;

    if (pool->nwaiting && !pool->dispatch.posted) {
        ngx_post_event(&pool->dispatch, &ngx_posted_events);
    }

    ngx_kubenova_pg_publish(pool);
}


/* waiters */


static void
ngx_kubenova_pg_dispatch_handler(ngx_event_t *ev)
{
    ngx_queue_t              *q;
    ngx_kubenova_pg_conn_t   *kc;
    ngx_kubenova_pg_pool_t   *pool;
    ngx_kubenova_pg_lease_t  *lease;

    pool = ev->data;

    while (pool->nwaiting) {
        kc = ngx_kubenova_pg_find(pool, NGX_KUBENOVA_PG_IDLE);
        if (kc == NULL) {
            break;
        }

        q = ngx_queue_head(&pool->waiting);
        lease = ngx_queue_data(q, ngx_kubenova_pg_lease_t, queue);

        ngx_kubenova_pg_unqueue(lease);
        ngx_kubenova_pg_assign(kc, lease);

        lease->on_acquired(lease, NGX_OK);
    }
}


static void
ngx_kubenova_pg_wait_timeout_handler(ngx_event_t *ev)
{
    ngx_kubenova_pg_pool_t   *pool;
    ngx_kubenova_pg_lease_t  *lease;

    lease = ev->data;
    pool = lease->pool;

    ngx_kubenova_pg_unqueue(lease);
    ngx_kubenova_metrics_count(pool->metrics, NGX_KUBENOVA_PG_QUEUE_TIMEOUTS);

    lease->on_acquired(lease, NGX_KUBENOVA_PG_QUEUE_TIMEOUT);
}


static void
ngx_kubenova_pg_fail_waiters(ngx_kubenova_pg_pool_t *pool, ngx_int_t rc)
{
    ngx_queue_t              *q;
    ngx_kubenova_pg_lease_t  *lease;

    while (!ngx_queue_empty(&pool->waiting)) {
        q = ngx_queue_head(&pool->waiting);
        lease = ngx_queue_data(q, ngx_kubenova_pg_lease_t, queue);

        ngx_kubenova_pg_unqueue(lease);

        lease->on_acquired(lease, rc);
    }
}


static void
ngx_kubenova_pg_unqueue(ngx_kubenova_pg_lease_t *lease)
{
    ngx_queue_remove(&lease->queue);
    lease->pool->nwaiting--;
    lease->waiting = 0;

    if (lease->wait_timer.timer_set) {
        ngx_del_timer(&lease->wait_timer);
    }

    ngx_kubenova_pg_publish(lease->pool);
}


static void
ngx_kubenova_pg_assign(ngx_kubenova_pg_conn_t *kc,
    ngx_kubenova_pg_lease_t *lease)
{
    kc->state = NGX_KUBENOVA_PG_BUSY;
    kc->lease = lease;
    lease->conn = kc;

    ngx_kubenova_pg_publish(kc->pool);
}


/* helpers */


static ngx_kubenova_pg_conn_t *
ngx_kubenova_pg_find(ngx_kubenova_pg_pool_t *pool, ngx_uint_t state)
{
    ngx_uint_t  i;

    for (i = 0; i < pool->nconns; i++) {
        if (pool->conns[i].state == state) {
            return &pool->conns[i];
        }
    }

    return NULL;
}


static ngx_uint_t
ngx_kubenova_pg_live(ngx_kubenova_pg_pool_t *pool)
{
    ngx_uint_t  i, n;

    n = 0;

    for (i = 0; i < pool->nconns; i++) {
        if (pool->conns[i].state >= NGX_KUBENOVA_PG_IDLE) {
            n++;
        }
    }

    return n;
}


static void
ngx_kubenova_pg_publish(ngx_kubenova_pg_pool_t *pool)
{
    ngx_kubenova_pg_stats_t  stats;

    ngx_kubenova_pg_pool_stats(pool, &stats);
    ngx_kubenova_metrics_pool(pool->metrics, stats.busy, stats.idle,
                              stats.connecting, stats.down, stats.waiting);
}


static void
ngx_kubenova_pg_notice(void *arg, const char *message)
{
    ngx_kubenova_pg_conn_t  *kc = arg;

    size_t  len;

    len = ngx_strlen(message);

    while (len && message[len - 1] == '\n') {
        len--;
    }

    ngx_log_error(NGX_LOG_NOTICE, kc->pool->log, 0,
                  "kubenova: postgres connection #%ui: %*s",
                  kc->number, len, message);
}


static const char *
ngx_kubenova_pg_message(PGconn *pg)
{
    char         *p;
    size_t        len;
    const char   *msg;
    static char   line[512];    /* scratch: the caller logs it at once */

    /* libpq messages end with a newline; error logs want one line */

    msg = PQerrorMessage(pg);
    len = ngx_min(strlen(msg), sizeof(line) - 1);

    while (len && (msg[len - 1] == '\n' || msg[len - 1] == ' ')) {
        len--;
    }

    ngx_memcpy(line, msg, len);
    line[len] = '\0';

    for (p = line; *p; p++) {
        if (*p == '\n') {
            *p = ' ';
        }
    }

    return line;
}
