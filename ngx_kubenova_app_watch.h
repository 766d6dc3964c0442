/*
 * GET /api/v1/tenants/{t}/apps/{name}/status?watch=1: an application's
 * per-cluster status as server-sent events (text/event-stream).  The REST
 * API runs the first api.call('app.status'), which authorizes the caller
 * as a plain GET would, and hands its answer over; the first event is that
 * state, then one event per change, heartbeat comments (": ping") between,
 * and a last event when the application is gone (or the caller may no
 * longer read it).
 *
 * Changes come as NOTIFY kubenova_app_status "<tenant>/<app>" on the
 * worker's LISTEN connection (ngx_kubenova_listen.c); each one makes the
 * watchers of that app ask api.call('app.status') again (one statement at a
 * time per watcher, a change during it asks once more after it).  Bounded:
 * at most kubenova_app_watchers streams per worker (503 past it); per
 * stream one event being written and the newest state, so a slow reader
 * skips states it had no time for and gets the latest one.  A client that
 * goes away frees everything at once.
 */

#ifndef _NGX_KUBENOVA_APP_WATCH_H_INCLUDED_
#define _NGX_KUBENOVA_APP_WATCH_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_kubenova_pg.h"


typedef struct ngx_kubenova_app_watch_s  ngx_kubenova_app_watch_t;


/* the worker's, once its pool exists; subscribes to kubenova_app_status */
ngx_kubenova_app_watch_t *ngx_kubenova_app_watch_create(ngx_cycle_t *cycle,
    ngx_kubenova_pg_pool_t *pool, ngx_uint_t max, ngx_msec_t heartbeat);

/* ?watch=1 (or true) on a GET */
ngx_uint_t ngx_kubenova_app_watch_wanted(ngx_http_request_t *r);

/*
 * Turns the request into a stream whose first event is state (the JSON
 * api.call answered with 200); envelope (in r->pool) asks again.  Returns
 * what to finalize the request with (NGX_DONE while the stream lives).
 */
ngx_int_t ngx_kubenova_app_watch_start(ngx_http_request_t *r,
    const char *envelope, const char *state, size_t len);


#endif /* _NGX_KUBENOVA_APP_WATCH_H_INCLUDED_ */
