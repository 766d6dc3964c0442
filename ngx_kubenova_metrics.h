/*
 * Figures shared by every worker, kept in one shared memory zone so that
 * /metrics answers the same whichever worker serves it.  Counters are
 * atomics that survive reloads (the zone is reused by name); gauges live in
 * one slot per worker, owned by the pid that wrote it last, so an exiting
 * worker of an older generation cannot overwrite its successor's figures.
 */

#ifndef _NGX_KUBENOVA_METRICS_H_INCLUDED_
#define _NGX_KUBENOVA_METRICS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


typedef enum {
    NGX_KUBENOVA_HANDLER_API = 0,
    NGX_KUBENOVA_HANDLER_HEALTHZ,
    NGX_KUBENOVA_HANDLER_READYZ,
    NGX_KUBENOVA_HANDLER_METRICS,
    NGX_KUBENOVA_HANDLER_GATEWAY,
    NGX_KUBENOVA_HANDLER_KUBE_PROXY,
    NGX_KUBENOVA_HANDLER_N
} ngx_kubenova_handler_e;


typedef enum {
    NGX_KUBENOVA_PG_QUEUE_REJECTIONS = 0,
    NGX_KUBENOVA_PG_QUEUE_TIMEOUTS,
    NGX_KUBENOVA_PG_CONNECTS,
    NGX_KUBENOVA_PG_RECONNECTS,
    NGX_KUBENOVA_PG_CONNECT_FAILURES,
    NGX_KUBENOVA_PG_QUERY_TIMEOUTS,
    NGX_KUBENOVA_PG_ROLLBACKS,
    NGX_KUBENOVA_COUNTER_N
} ngx_kubenova_counter_e;


#define NGX_KUBENOVA_STATUS_MIN  100
#define NGX_KUBENOVA_STATUS_N    500


typedef struct {
    ngx_atomic_t   pid;
    ngx_atomic_t   busy;
    ngx_atomic_t   idle;
    ngx_atomic_t   connecting;
    ngx_atomic_t   down;
    ngx_atomic_t   waiting;
} ngx_kubenova_metrics_worker_t;


typedef struct {
    ngx_atomic_t                   requests[NGX_KUBENOVA_HANDLER_N]
                                           [NGX_KUBENOVA_STATUS_N];
    ngx_atomic_t                   counters[NGX_KUBENOVA_COUNTER_N];
    ngx_kubenova_metrics_worker_t  workers[NGX_MAX_PROCESSES];
} ngx_kubenova_metrics_t;


ngx_shm_zone_t *ngx_kubenova_metrics_zone_add(ngx_conf_t *cf, void *tag);
ngx_kubenova_metrics_t *ngx_kubenova_metrics_get(ngx_shm_zone_t *zone);

void ngx_kubenova_metrics_worker_start(ngx_kubenova_metrics_t *m);
void ngx_kubenova_metrics_worker_stop(ngx_kubenova_metrics_t *m);
void ngx_kubenova_metrics_count(ngx_kubenova_metrics_t *m,
    ngx_kubenova_counter_e counter);
void ngx_kubenova_metrics_request(ngx_kubenova_metrics_t *m,
    ngx_kubenova_handler_e handler, ngx_uint_t status);
void ngx_kubenova_metrics_pool(ngx_kubenova_metrics_t *m, ngx_uint_t busy,
    ngx_uint_t idle, ngx_uint_t connecting, ngx_uint_t down,
    ngx_uint_t waiting);

/* Prometheus text exposition format, allocated from pool */
ngx_int_t ngx_kubenova_metrics_render(ngx_kubenova_metrics_t *m,
    ngx_pool_t *pool, ngx_str_t *out);


#endif /* _NGX_KUBENOVA_METRICS_H_INCLUDED_ */
