/*
 * Non-blocking PostgreSQL connection pool, one per nginx worker.
 *
 * Every libpq call made here is asynchronous (PQconnectStartParams,
 * PQconnectPoll, PQsendQueryParams, PQflush, PQconsumeInput, PQisBusy,
 * PQgetResult) and is driven by the worker's event loop.  A caller leases
 * one connection, runs one or more statements on it (a transaction is just
 * "BEGIN", statements, "COMMIT" on the same lease) and releases it; a lease
 * released inside a transaction is rolled back before the connection is
 * reused, so an error path never leaks an open transaction.
 */

#ifndef _NGX_KUBENOVA_PG_H_INCLUDED_
#define _NGX_KUBENOVA_PG_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <libpq-fe.h>

#include "ngx_kubenova_metrics.h"


typedef struct ngx_kubenova_pg_pool_s   ngx_kubenova_pg_pool_t;
typedef struct ngx_kubenova_pg_conn_s   ngx_kubenova_pg_conn_t;
typedef struct ngx_kubenova_pg_lease_s  ngx_kubenova_pg_lease_t;


/* what the pool reports to a lease, beside NGX_OK */
#define NGX_KUBENOVA_PG_QUEUE_FULL    1    /* every connection busy, queue full */
#define NGX_KUBENOVA_PG_QUEUE_TIMEOUT 2    /* waited queue_timeout in vain */
#define NGX_KUBENOVA_PG_UNAVAILABLE   3    /* the database cannot be reached */
#define NGX_KUBENOVA_PG_QUERY_TIMEOUT 4    /* no result within query_timeout */
#define NGX_KUBENOVA_PG_CONN_LOST     5    /* connection broke mid-query */


/* called once when a queued lease gets a connection or gives up */
typedef void (*ngx_kubenova_pg_acquired_pt)(ngx_kubenova_pg_lease_t *lease,
    ngx_int_t rc);

/*
 * called once per statement: rc is NGX_OK with the statement's result (which
 * may still be an SQL error, see PQresultStatus), or a pool error with res
 * NULL.  The callback owns res (PQclear).
 */
typedef void (*ngx_kubenova_pg_result_pt)(ngx_kubenova_pg_lease_t *lease,
    ngx_int_t rc, PGresult *res);


/* parsed "kubenova_postgres" directive, shared by all workers */
typedef struct {
    ngx_str_t                    conninfo;     /* as written, for messages */
    const char                 **keywords;     /* for PQconnectStartParams */
    const char                 **values;
    ngx_uint_t                   size;         /* connections per worker */
    ngx_uint_t                   queue;        /* waiting leases per worker */
    ngx_msec_t                   queue_timeout;
    ngx_msec_t                   connect_timeout;
    ngx_msec_t                   query_timeout;
} ngx_kubenova_pg_conf_t;


struct ngx_kubenova_pg_lease_s {
    ngx_kubenova_pg_pool_t      *pool;
    ngx_kubenova_pg_conn_t      *conn;         /* NULL until acquired */
    ngx_kubenova_pg_acquired_pt  on_acquired;
    ngx_kubenova_pg_result_pt    on_result;
    void                        *data;
    ngx_log_t                   *log;

    ngx_queue_t                  queue;        /* in pool->waiting */
    ngx_event_t                  wait_timer;
    unsigned                     waiting:1;
};


/*
 * One statement, start to finish: acquire, send, result, release.  done is
 * called exactly once, unless ngx_kubenova_pg_query_cancel() came first;
 * res is NULL when rc is not NGX_OK and is freed after done returns, unless
 * keep is set: then done owns it (PQclear).
 */
typedef void (*ngx_kubenova_pg_done_pt)(void *data, ngx_int_t rc,
    PGresult *res);

typedef struct {
    ngx_kubenova_pg_lease_t      lease;
    const char                  *sql;
    int                          nparams;
    const char *const           *values;     /* the caller's, until done */
    ngx_kubenova_pg_done_pt      done;
    void                        *data;
    unsigned                     keep:1;
    unsigned                     active:1;
} ngx_kubenova_pg_query_t;


/* LISTEN: payloads of NOTIFY, and "notifications may have been lost" */
typedef void (*ngx_kubenova_pg_notify_pt)(void *data, const char *channel,
    const char *payload);
typedef void (*ngx_kubenova_pg_reset_pt)(void *data);


/* per-worker figures exported through /metrics */
typedef struct {
    ngx_uint_t                   busy;
    ngx_uint_t                   idle;
    ngx_uint_t                   connecting;
    ngx_uint_t                   down;
    ngx_uint_t                   waiting;
} ngx_kubenova_pg_stats_t;


ngx_kubenova_pg_pool_t *ngx_kubenova_pg_pool_create(ngx_cycle_t *cycle,
    ngx_kubenova_pg_conf_t *conf, ngx_kubenova_metrics_t *metrics);
void ngx_kubenova_pg_pool_destroy(ngx_kubenova_pg_pool_t *pool);
void ngx_kubenova_pg_pool_stats(ngx_kubenova_pg_pool_t *pool,
    ngx_kubenova_pg_stats_t *stats);

/*
 * NGX_OK: lease->conn is set now and no callback follows;
 * NGX_AGAIN: queued, on_acquired will be called;
 * NGX_KUBENOVA_PG_QUEUE_FULL or NGX_KUBENOVA_PG_UNAVAILABLE: refused now.
 */
ngx_int_t ngx_kubenova_pg_acquire(ngx_kubenova_pg_pool_t *pool,
    ngx_kubenova_pg_lease_t *lease);

/* sends one parameterised statement (text parameters); result via on_result */
ngx_int_t ngx_kubenova_pg_send(ngx_kubenova_pg_lease_t *lease,
    const char *sql, int nparams, const char *const *values,
    const int *lengths);

/* gives the connection back (idempotent, safe at any moment) */
void ngx_kubenova_pg_release(ngx_kubenova_pg_lease_t *lease);

const char *ngx_kubenova_pg_strerror(ngx_int_t rc);

/*
 * NGX_AGAIN: under way; else a pool error (NGX_KUBENOVA_PG_*) and done()
 * will not be called.
 */
ngx_int_t ngx_kubenova_pg_query(ngx_kubenova_pg_pool_t *pool,
    ngx_kubenova_pg_query_t *q);
void ngx_kubenova_pg_query_cancel(ngx_kubenova_pg_query_t *q);

/*
 * A dedicated connection, outside the pool's rotation, that runs listen_sql
 * ("LISTEN a; LISTEN b") whenever it (re)connects and hands every NOTIFY to
 * notify().  reset() is called when the connection breaks: notifications
 * may have been lost from then until ngx_kubenova_pg_listening() is true
 * again.
 */
ngx_int_t ngx_kubenova_pg_listen(ngx_kubenova_pg_pool_t *pool,
    const char *listen_sql, ngx_kubenova_pg_notify_pt notify,
    ngx_kubenova_pg_reset_pt reset, void *data);
ngx_uint_t ngx_kubenova_pg_listening(ngx_kubenova_pg_pool_t *pool);


#endif /* _NGX_KUBENOVA_PG_H_INCLUDED_ */
