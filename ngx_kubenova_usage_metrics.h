/*
 * Per-tenant usage gauges for /metrics: the latest figures each cluster
 * reported for each tenant.  The gateway records a report here once the
 * database has stored it, and /metrics renders the table, so neither
 * waits for the database.  The table lives in its own shared memory zone
 * (every worker answers the same) and is bounded: at most
 * kubenova_usage_metrics_series series, one per (tenant, cluster); a new
 * series past that takes the place of the one updated longest ago.
 */

#ifndef _NGX_KUBENOVA_USAGE_METRICS_H_INCLUDED_
#define _NGX_KUBENOVA_USAGE_METRICS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/* TenantUsage's counters, in proto order (proto/kubenova.proto) */
#define NGX_KUBENOVA_USAGE_FIGURES  9

#define NGX_KUBENOVA_USAGE_SERIES_DEFAULT  4096


typedef struct {
    const char   *tenant;                 /* 1 to 253 bytes, NUL-terminated */
    int64_t       figures[NGX_KUBENOVA_USAGE_FIGURES];
} ngx_kubenova_usage_tenant_t;


ngx_shm_zone_t *ngx_kubenova_usage_metrics_zone_add(ngx_conf_t *cf,
    void *tag, ngx_uint_t series);

/*
 * One stored report of a cluster: each tenant's series takes its figures
 * unless it already holds a later window's.
 */
void ngx_kubenova_usage_metrics_record(ngx_shm_zone_t *zone,
    const char *cluster, int64_t window_end, ngx_kubenova_usage_tenant_t *t,
    ngx_uint_t n);

/* Prometheus text exposition format, allocated from pool */
ngx_int_t ngx_kubenova_usage_metrics_render(ngx_shm_zone_t *zone,
    ngx_pool_t *pool, ngx_str_t *out);


#endif /* _NGX_KUBENOVA_USAGE_METRICS_H_INCLUDED_ */
