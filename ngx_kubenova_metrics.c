/*
 * Shared-memory figures and their Prometheus text rendering.
 */

#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_kubenova_metrics.h"


#define NGX_KUBENOVA_METRICS_ZONE_SIZE  (256 * 1024)


typedef struct {
    const char  *name;
    const char  *help;
} ngx_kubenova_metric_doc_t;


static ngx_int_t ngx_kubenova_metrics_zone_init(ngx_shm_zone_t *zone,
    void *data);


static ngx_str_t  ngx_kubenova_metrics_zone_name =
    ngx_string("kubenova_metrics");


static const char  *ngx_kubenova_handler_names[NGX_KUBENOVA_HANDLER_N] = {
    "api", "healthz", "readyz", "metrics", "operator_gateway", "kube_proxy"
};


static ngx_kubenova_metric_doc_t  ngx_kubenova_counter_docs[] = {
    { "kubenova_pg_queue_rejections_total",
      "Requests refused at once because every connection was busy and the "
      "wait queue was full." },
    { "kubenova_pg_queue_timeouts_total",
      "Requests that waited the whole queue_timeout for a connection." },
    { "kubenova_pg_connects_total",
      "First connection attempts of pool connections." },
    { "kubenova_pg_reconnects_total",
      "Connection attempts replacing a broken or failed connection." },
    { "kubenova_pg_connect_failures_total",
      "Connection attempts that failed." },
    { "kubenova_pg_query_timeouts_total",
      "Statements abandoned after query_timeout." },
    { "kubenova_pg_rollbacks_total",
      "Transactions rolled back because their lease ended inside them." }
};


ngx_shm_zone_t *
ngx_kubenova_metrics_zone_add(ngx_conf_t *cf, void *tag)
{
    ngx_shm_zone_t  *zone;

    zone = ngx_shared_memory_add(cf, &ngx_kubenova_metrics_zone_name,
                                 NGX_KUBENOVA_METRICS_ZONE_SIZE, tag);
    if (zone == NULL) {
        return NULL;
    }

    zone->init = ngx_kubenova_metrics_zone_init;

    return zone;
}


static ngx_int_t
ngx_kubenova_metrics_zone_init(ngx_shm_zone_t *zone, void *data)
{
    ngx_slab_pool_t         *shpool;
    ngx_kubenova_metrics_t  *m;

    if (data) {
        /* reload: keep counting where the previous cycle stopped */
        zone->data = data;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) zone->shm.addr;

    if (zone->shm.exists) {
        zone->data = shpool->data;
        return NGX_OK;
    }

    m = ngx_slab_calloc(shpool, sizeof(ngx_kubenova_metrics_t));
    if (m == NULL) {
        return NGX_ERROR;
    }

    shpool->data = m;
    zone->data = m;

    return NGX_OK;
}


ngx_kubenova_metrics_t *
ngx_kubenova_metrics_get(ngx_shm_zone_t *zone)
{
    return zone ? zone->data : NULL;
}


void
ngx_kubenova_metrics_worker_start(ngx_kubenova_metrics_t *m)
{
    ngx_kubenova_metrics_worker_t  *w;

    if (m == NULL || ngx_worker >= NGX_MAX_PROCESSES) {
        return;
    }

    w = &m->workers[ngx_worker];

    w->busy = 0;
    w->idle = 0;
    w->connecting = 0;
    w->down = 0;
    w->waiting = 0;
    ngx_memory_barrier();
    w->pid = (ngx_atomic_uint_t) ngx_pid;
}


void
ngx_kubenova_metrics_worker_stop(ngx_kubenova_metrics_t *m)
{
    ngx_kubenova_metrics_worker_t  *w;

    if (m == NULL || ngx_worker >= NGX_MAX_PROCESSES) {
        return;
    }

    w = &m->workers[ngx_worker];

    /* a successor may already own the slot: then leave it alone */

    if (w->pid == (ngx_atomic_uint_t) ngx_pid) {
        w->busy = 0;
        w->idle = 0;
        w->connecting = 0;
        w->down = 0;
        w->waiting = 0;
        w->pid = 0;
    }
}


void
ngx_kubenova_metrics_count(ngx_kubenova_metrics_t *m,
    ngx_kubenova_counter_e counter)
{
    if (m) {
        (void) ngx_atomic_fetch_add(&m->counters[counter], 1);
    }
}


void
ngx_kubenova_metrics_request(ngx_kubenova_metrics_t *m,
    ngx_kubenova_handler_e handler, ngx_uint_t status)
{
    if (m == NULL
        || status < NGX_KUBENOVA_STATUS_MIN
        || status >= NGX_KUBENOVA_STATUS_MIN + NGX_KUBENOVA_STATUS_N)
    {
        return;
    }

    (void) ngx_atomic_fetch_add(
                     &m->requests[handler][status - NGX_KUBENOVA_STATUS_MIN], 1);
}


void
ngx_kubenova_metrics_pool(ngx_kubenova_metrics_t *m, ngx_uint_t busy,
    ngx_uint_t idle, ngx_uint_t connecting, ngx_uint_t down,
    ngx_uint_t waiting)
{
    ngx_kubenova_metrics_worker_t  *w;

    if (m == NULL || ngx_worker >= NGX_MAX_PROCESSES) {
        return;
    }

    w = &m->workers[ngx_worker];

    /* a worker of an older generation no longer owns the slot */

    if (w->pid != (ngx_atomic_uint_t) ngx_pid) {
        return;
    }

    w->busy = busy;
    w->idle = idle;
    w->connecting = connecting;
    w->down = down;
    w->waiting = waiting;
}


ngx_int_t
ngx_kubenova_metrics_render(ngx_kubenova_metrics_t *m, ngx_pool_t *pool,
    ngx_str_t *out)
{
    u_char                         *p, *last;
    size_t                          size;
    ngx_uint_t                      h, s, i, n, busy, idle, connecting,
                                    down, waiting, workers;
    ngx_atomic_uint_t               v;
    ngx_kubenova_metrics_worker_t  *w;

    /* bound the size first: one line per non-zero (handler, status) pair */

    n = 0;
    for (h = 0; h < NGX_KUBENOVA_HANDLER_N; h++) {
        for (s = 0; s < NGX_KUBENOVA_STATUS_N; s++) {
            if (m->requests[h][s]) {
                n++;
            }
        }
    }

    size = 4096 + n * 128
           + NGX_KUBENOVA_COUNTER_N * (256 + NGX_ATOMIC_T_LEN);

    p = ngx_pnalloc(pool, size);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;
    last = p + size;

    p = ngx_slprintf(p, last,
            "# HELP kubenova_http_requests_total Requests answered by "
            "KubeNova handlers, by handler and status.\n"
            "# TYPE kubenova_http_requests_total counter\n");

    for (h = 0; h < NGX_KUBENOVA_HANDLER_N; h++) {
        for (s = 0; s < NGX_KUBENOVA_STATUS_N; s++) {
            v = m->requests[h][s];

            if (v) {
                p = ngx_slprintf(p, last,
                        "kubenova_http_requests_total"
                        "{handler=\"%s\",code=\"%ui\"} %uA\n",
                        ngx_kubenova_handler_names[h],
                        s + NGX_KUBENOVA_STATUS_MIN, v);
            }
        }
    }

    for (i = 0; i < NGX_KUBENOVA_COUNTER_N; i++) {
        p = ngx_slprintf(p, last, "# HELP %s %s\n# TYPE %s counter\n%s %uA\n",
                         ngx_kubenova_counter_docs[i].name,
                         ngx_kubenova_counter_docs[i].help,
                         ngx_kubenova_counter_docs[i].name,
                         ngx_kubenova_counter_docs[i].name,
                         m->counters[i]);
    }

    busy = 0;
    down = 0;
    idle = 0;
    connecting = 0;
    waiting = 0;
    workers = 0;

    for (i = 0; i < NGX_MAX_PROCESSES; i++) {
        w = &m->workers[i];

        if (w->pid == 0) {
            continue;
        }

        workers++;
        busy += w->busy;
        idle += w->idle;
        connecting += w->connecting;
        down += w->down;
        waiting += w->waiting;
    }

    p = ngx_slprintf(p, last,
            "# HELP kubenova_pg_pool_connections PostgreSQL pool connections "
            "of all workers, by state.\n"
            "# TYPE kubenova_pg_pool_connections gauge\n"
            "kubenova_pg_pool_connections{state=\"busy\"} %ui\n"
            "kubenova_pg_pool_connections{state=\"idle\"} %ui\n"
            "kubenova_pg_pool_connections{state=\"connecting\"} %ui\n"
            "kubenova_pg_pool_connections{state=\"down\"} %ui\n"
            "# HELP kubenova_pg_queued_requests Requests waiting for a "
            "PostgreSQL connection.\n"
            "# TYPE kubenova_pg_queued_requests gauge\n"
            "kubenova_pg_queued_requests %ui\n"
            "# HELP kubenova_workers Worker slots that reported figures.\n"
            "# TYPE kubenova_workers gauge\n"
            "kubenova_workers %ui\n",
            busy, idle, connecting, down, waiting, workers);

    out->len = p - out->data;

    return NGX_OK;
}
