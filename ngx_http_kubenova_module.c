/*
 * ngx_http_kubenova_module: the KubeNova Manager inside nginx.
 *
 * This file is the front door: configuration, directives, the module's
 * life cycle (a PostgreSQL pool per worker, created after fork) and the REST
 * API's routing.  Each concern the handlers need lives in its own file:
 * ngx_kubenova_pg.c (pool), ngx_kubenova_pg_conninfo.c, ngx_kubenova_health.c
 * (healthz, readyz, metrics), ngx_kubenova_metrics.c, ngx_kubenova_json.c.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_kubenova_module.h"
#include "ngx_kubenova_pg_conninfo.h"
#include "ngx_kubenova_json.h"
#include "ngx_kubenova_api.h"
#include "ngx_kubenova_gateway.h"
#include "ngx_kubenova_crypto.h"
#include "ngx_kubenova_usage_metrics.h"
#include "ngx_kubenova_kube_proxy.h"
#include "ngx_kubenova_kube_proxy_route.h"
#include "ngx_kubenova_register.h"
#include "ngx_kubenova_app_watch.h"
#include "ngx_kubenova_listen.h"


#define NGX_HTTP_KUBENOVA_POOL_DEFAULT             8
#define NGX_HTTP_KUBENOVA_POOL_MAX                 1024
#define NGX_HTTP_KUBENOVA_QUEUE_DEFAULT            128
#define NGX_HTTP_KUBENOVA_QUEUE_TIMEOUT_DEFAULT    5000
#define NGX_HTTP_KUBENOVA_CONNECT_TIMEOUT_DEFAULT  5000
#define NGX_HTTP_KUBENOVA_QUERY_TIMEOUT_DEFAULT    30000


static void *ngx_http_kubenova_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_kubenova_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_kubenova_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_http_kubenova_postconfiguration(ngx_conf_t *cf);
static char *ngx_http_kubenova_postgres(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_kubenova_set_handler(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_kubenova_enable_metrics(ngx_conf_t *cf);
static ngx_int_t ngx_http_kubenova_init_process(ngx_cycle_t *cycle);
static void ngx_http_kubenova_exit_process(ngx_cycle_t *cycle);
static char *ngx_http_kubenova_admin_token_file(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_kubenova_secret_key_file(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_http_kubenova_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_kubenova_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_kubenova_log_handler(ngx_http_request_t *r);


static ngx_conf_num_bounds_t  ngx_http_kubenova_usage_series_bounds = {
    ngx_conf_check_num_bounds, 0, 1000000
};

static ngx_conf_num_bounds_t  ngx_http_kubenova_kube_proxy_max_bounds = {
    ngx_conf_check_num_bounds, 1, 65536
};

static ngx_conf_num_bounds_t  ngx_http_kubenova_app_watchers_bounds = {
    ngx_conf_check_num_bounds, 0, 100000
};


static ngx_command_t  ngx_http_kubenova_commands[] = {

    /*
     * kubenova_postgres "<conninfo>" [pool=N] [queue=M] [queue_timeout=T]
     *                   [connect_timeout=T] [query_timeout=T];
     */
    { ngx_string("kubenova_postgres"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_kubenova_postgres,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    /* the REST API, under /api/ */
    { ngx_string("kubenova_api"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_kubenova_set_handler,
      NGX_HTTP_LOC_CONF_OFFSET,
      NGX_KUBENOVA_HANDLER_API,
      NULL },

    /* a token file for the first admin of a new installation */
    { ngx_string("kubenova_admin_token_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_kubenova_admin_token_file,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    /* the key that encrypts secrets at rest (kubeconfigs) */
    { ngx_string("kubenova_secret_key_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_kubenova_secret_key_file,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    /* self-service POST /api/v1/signup */
    { ngx_string("kubenova_signup"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_kubenova_loc_conf_t, signup),
      NULL },

    /* largest API request body (413 past it) */
    { ngx_string("kubenova_api_max_body"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_off_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_kubenova_loc_conf_t, api_max_body),
      NULL },

    /* per-tenant usage gauges in /metrics: at most this many series */
    { ngx_string("kubenova_usage_metrics_series"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_kubenova_main_conf_t, usage_series),
      &ngx_http_kubenova_usage_series_bounds },

    /* liveness: the worker answers */
    { ngx_string("kubenova_healthz"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_kubenova_set_handler,
      NGX_HTTP_LOC_CONF_OFFSET,
      NGX_KUBENOVA_HANDLER_HEALTHZ,
      NULL },

    /* readiness: one PostgreSQL round trip through the pool */
    { ngx_string("kubenova_readyz"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_kubenova_set_handler,
      NGX_HTTP_LOC_CONF_OFFSET,
      NGX_KUBENOVA_HANDLER_READYZ,
      NULL },

    /* Prometheus text format, all workers together */
    { ngx_string("kubenova_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_kubenova_set_handler,
      NGX_HTTP_LOC_CONF_OFFSET,
      NGX_KUBENOVA_HANDLER_METRICS,
      NULL },

    /* gRPC endpoint of the Operators' streams */
    { ngx_string("kubenova_operator_gateway"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_kubenova_set_handler,
      NGX_HTTP_LOC_CONF_OFFSET,
      NGX_KUBENOVA_HANDLER_GATEWAY,
      NULL },

    /* largest gRPC message either way */
    { ngx_string("kubenova_grpc_max_message"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_kubenova_loc_conf_t, grpc_max_message),
      NULL },

    /* how often each side says it is alive on an idle stream */
    { ngx_string("kubenova_grpc_heartbeat"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_kubenova_loc_conf_t, grpc_heartbeat),
      NULL },

    /* the tenant-scoped Kubernetes API proxy: /k8s/clusters/{cluster}/... */
    { ngx_string("kubenova_kube_proxy"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_kubenova_set_handler,
      NGX_HTTP_LOC_CONF_OFFSET,
      NGX_KUBENOVA_HANDLER_KUBE_PROXY,
      NULL },

    /* the cluster's first byte of an answer: 504 past it */
    { ngx_string("kubenova_kube_proxy_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_kubenova_loc_conf_t, kube_proxy_timeout),
      NULL },

    /* response bytes a request may have in flight (its memory bound) */
    { ngx_string("kubenova_kube_proxy_window"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_kubenova_loc_conf_t, kube_proxy_window),
      NULL },

    /* requests in flight per cluster stream: 503 past it */
    { ngx_string("kubenova_kube_proxy_max_requests"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_kubenova_loc_conf_t, kube_proxy_max_requests),
      &ngx_http_kubenova_kube_proxy_max_bounds },

    /* how long a token's answer is reused (0: ask the database each time) */
    { ngx_string("kubenova_kube_proxy_auth_cache"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_kubenova_loc_conf_t, kube_proxy_auth_cache),
      NULL },

    /* the proxy's URL in proxy kubeconfigs (default: from the Host header) */
    { ngx_string("kubenova_kube_proxy_url"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_kubenova_main_conf_t, kube_proxy_url),
      NULL },

    /* this node's kube proxy, as the other Manager nodes reach it */
    { ngx_string("kubenova_kube_proxy_node_url"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_kubenova_main_conf_t, kube_proxy_node_url),
      NULL },

    /* the CA that proxy kubeconfigs trust for the proxy's TLS certificate */
    { ngx_string("kubenova_kube_proxy_ca_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_kubenova_kube_proxy_ca_file,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    /* a cluster silent this long is "unavailable" (API and /metrics) */
    { ngx_string("kubenova_cluster_unavailable_after"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_kubenova_main_conf_t, cluster_unavailable_after),
      NULL },

    /* the CA that signs Operators' certificates (cluster registration) */
    { ngx_string("kubenova_ca"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE23,
      ngx_kubenova_ca_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_kubenova_main_conf_t, ca),
      NULL },

    /* the Manager's URL as clusters reach it (install.yaml, register) */
    { ngx_string("kubenova_public_url"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_kubenova_main_conf_t, public_url),
      NULL },

    /* the gRPC gateway's URL as Operators dial it */
    { ngx_string("kubenova_gateway_url"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_kubenova_main_conf_t, gateway_url),
      NULL },

    /* the Operator's container image in install.yaml */
    { ngx_string("kubenova_operator_image"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_kubenova_main_conf_t, operator_image),
      NULL },

    /* operator/deploy as installed: the static part of install.yaml */
    { ngx_string("kubenova_install_manifests"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_kubenova_install_manifests,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_kubenova_main_conf_t, install_manifests),
      NULL },

    /* how long a join token works (POST /clusters may ask otherwise) */
    { ngx_string("kubenova_join_token_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_kubenova_main_conf_t, join_token_ttl),
      NULL },

    /* status streams (GET .../apps/{name}/status?watch=1) per worker */
    { ngx_string("kubenova_app_watchers"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_kubenova_main_conf_t, app_watchers),
      &ngx_http_kubenova_app_watchers_bounds },

    /* ": ping" on an idle status stream every so often */
    { ngx_string("kubenova_app_watch_heartbeat"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_kubenova_main_conf_t, app_watch_heartbeat),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_kubenova_module_ctx = {
    ngx_http_kubenova_add_variables,       /* preconfiguration */
    ngx_http_kubenova_postconfiguration,   /* postconfiguration */

    ngx_http_kubenova_create_main_conf,    /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_kubenova_create_loc_conf,     /* create location configuration */
    ngx_http_kubenova_merge_loc_conf       /* merge location configuration */
};


ngx_module_t  ngx_http_kubenova_module = {
    NGX_MODULE_V1,
    &ngx_http_kubenova_module_ctx,         /* module context */
    ngx_http_kubenova_commands,            /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_kubenova_init_process,        /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_kubenova_exit_process,        /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_handler_pt  ngx_http_kubenova_content_handlers[] = {
    ngx_kubenova_api_handler,              /* NGX_KUBENOVA_HANDLER_API */
    ngx_kubenova_healthz_handler,          /* NGX_KUBENOVA_HANDLER_HEALTHZ */
    ngx_kubenova_readyz_handler,           /* NGX_KUBENOVA_HANDLER_READYZ */
    ngx_kubenova_metrics_handler,          /* NGX_KUBENOVA_HANDLER_METRICS */
    ngx_kubenova_gateway_handler,          /* NGX_KUBENOVA_HANDLER_GATEWAY */
    ngx_kubenova_kube_proxy_handler        /* NGX_KUBENOVA_HANDLER_KUBE_PROXY */
};


/* configuration */


static void *
ngx_http_kubenova_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_kubenova_main_conf_t  *kmcf;

    kmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_kubenova_main_conf_t));
    if (kmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     kmcf->pg = NULL;
     *     kmcf->metrics_zone = NULL;
     *     kmcf->pool = NULL;
     *     kmcf->usage_zone = NULL;
     */

    kmcf->usage_series = NGX_CONF_UNSET;
    kmcf->cluster_unavailable_after = NGX_CONF_UNSET_MSEC;
    kmcf->join_token_ttl = NGX_CONF_UNSET;
    kmcf->app_watchers = NGX_CONF_UNSET;
    kmcf->app_watch_heartbeat = NGX_CONF_UNSET_MSEC;

    return kmcf;
}


static void *
ngx_http_kubenova_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_kubenova_loc_conf_t  *klcf;

    klcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_kubenova_loc_conf_t));
    if (klcf == NULL) {
        return NULL;
    }

    klcf->handler = NGX_CONF_UNSET;
    klcf->signup = NGX_CONF_UNSET;
    klcf->api_max_body = NGX_CONF_UNSET;
    klcf->grpc_max_message = NGX_CONF_UNSET_SIZE;
    klcf->grpc_heartbeat = NGX_CONF_UNSET_MSEC;
    klcf->kube_proxy_timeout = NGX_CONF_UNSET_MSEC;
    klcf->kube_proxy_window = NGX_CONF_UNSET_SIZE;
    klcf->kube_proxy_max_requests = NGX_CONF_UNSET_UINT;
    klcf->kube_proxy_auth_cache = NGX_CONF_UNSET_MSEC;

    return klcf;
}


static char *
ngx_http_kubenova_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_kubenova_loc_conf_t  *prev = parent;
    ngx_http_kubenova_loc_conf_t  *conf = child;

    ngx_conf_merge_value(conf->signup, prev->signup, 0);
    ngx_conf_merge_off_value(conf->api_max_body, prev->api_max_body,
                             1024 * 1024);
    ngx_conf_merge_size_value(conf->grpc_max_message, prev->grpc_max_message,
                              4 * 1024 * 1024);
    ngx_conf_merge_msec_value(conf->grpc_heartbeat, prev->grpc_heartbeat,
                              10000);
    ngx_conf_merge_msec_value(conf->kube_proxy_timeout,
                              prev->kube_proxy_timeout, 30000);
    ngx_conf_merge_size_value(conf->kube_proxy_window,
                              prev->kube_proxy_window, 256 * 1024);
    ngx_conf_merge_uint_value(conf->kube_proxy_max_requests,
                              prev->kube_proxy_max_requests, 256);
    ngx_conf_merge_msec_value(conf->kube_proxy_auth_cache,
                              prev->kube_proxy_auth_cache, 5000);

    if (conf->kube_proxy_window < 4096
        || conf->kube_proxy_window > 16 * 1024 * 1024)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "kubenova_kube_proxy_window must be between 4k "
                           "and 16m");
        return NGX_CONF_ERROR;
    }

    /* a handler belongs to its own location only: it is never inherited */

    if (conf->handler == NGX_CONF_UNSET) {
        conf->handler = -1;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_kubenova_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_handler_pt            *h;
    ngx_http_core_main_conf_t      *cmcf;
    ngx_http_kubenova_main_conf_t  *kmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);
    kmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_kubenova_module);

    /* the gateway records what Operators report; /metrics shows it */

    ngx_conf_init_value(kmcf->usage_series,
                        NGX_KUBENOVA_USAGE_SERIES_DEFAULT);
    ngx_conf_init_msec_value(kmcf->cluster_unavailable_after, 90000);

    if (kmcf->cluster_unavailable_after < 1000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "kubenova_cluster_unavailable_after must be at "
                           "least 1s");
        return NGX_ERROR;
    }

    ngx_conf_init_value(kmcf->join_token_ttl, 86400);

    if (kmcf->join_token_ttl < 60 || kmcf->join_token_ttl > 2592000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "kubenova_join_token_ttl must be between 1m "
                           "and 30d");
        return NGX_ERROR;
    }
    ngx_conf_init_value(kmcf->app_watchers, 64);
    ngx_conf_init_msec_value(kmcf->app_watch_heartbeat, 15000);

    if (kmcf->gateway_enabled && kmcf->usage_series > 0) {
        kmcf->usage_zone = ngx_kubenova_usage_metrics_zone_add(cf,
                               &ngx_http_kubenova_module,
                               (ngx_uint_t) kmcf->usage_series);
        if (kmcf->usage_zone == NULL) {
            return NGX_ERROR;
        }
    }

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_kubenova_log_handler;

    /* the kube proxy knows its tenant before limit_req asks */

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_REWRITE_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_kubenova_kube_proxy_auth_phase;

    return NGX_OK;
}


static char *
ngx_http_kubenova_postgres(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_kubenova_main_conf_t  *kmcf = conf;

    char                    *rv;
    ngx_str_t               *value, name, arg;
    ngx_int_t                n;
    ngx_uint_t               i;
    ngx_msec_t              *timeout;
    ngx_kubenova_pg_conf_t  *pc;

    if (kmcf->pg) {
        return "is duplicate";
    }

    pc = ngx_pcalloc(cf->pool, sizeof(ngx_kubenova_pg_conf_t));
    if (pc == NULL) {
        return NGX_CONF_ERROR;
    }

    pc->size = NGX_HTTP_KUBENOVA_POOL_DEFAULT;
    pc->queue = NGX_HTTP_KUBENOVA_QUEUE_DEFAULT;
    pc->queue_timeout = NGX_HTTP_KUBENOVA_QUEUE_TIMEOUT_DEFAULT;
    pc->connect_timeout = NGX_HTTP_KUBENOVA_CONNECT_TIMEOUT_DEFAULT;
    pc->query_timeout = NGX_HTTP_KUBENOVA_QUERY_TIMEOUT_DEFAULT;

    value = cf->args->elts;

    for (i = 2; i < cf->args->nelts; i++) {
        arg = value[i];
        name.data = arg.data;
        name.len = 0;

        while (name.len < arg.len && arg.data[name.len] != '=') {
            name.len++;
        }

        if (name.len == arg.len) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\", expected name=value",
                               &arg);
            return NGX_CONF_ERROR;
        }

        arg.data += name.len + 1;
        arg.len -= name.len + 1;

        if (name.len == 4 && ngx_strncmp(name.data, "pool", 4) == 0) {
            n = ngx_atoi(arg.data, arg.len);
            if (n < 1 || n > NGX_HTTP_KUBENOVA_POOL_MAX) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid pool size \"%V\", "
                                   "expected 1 to %d", &value[i],
                                   NGX_HTTP_KUBENOVA_POOL_MAX);
                return NGX_CONF_ERROR;
            }
            pc->size = n;
            continue;
        }

        if (name.len == 5 && ngx_strncmp(name.data, "queue", 5) == 0) {
            n = ngx_atoi(arg.data, arg.len);
            if (n == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid queue length \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }
            pc->queue = n;
            continue;
        }

        if (name.len == 13
            && ngx_strncmp(name.data, "queue_timeout", 13) == 0)
        {
            timeout = &pc->queue_timeout;

        } else if (name.len == 15
                   && ngx_strncmp(name.data, "connect_timeout", 15) == 0)
        {
            timeout = &pc->connect_timeout;

        } else if (name.len == 13
                   && ngx_strncmp(name.data, "query_timeout", 13) == 0)
        {
            timeout = &pc->query_timeout;

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "unknown parameter \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }

        *timeout = ngx_parse_time(&arg, 0);

        if (*timeout == (ngx_msec_t) NGX_ERROR || *timeout == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid time in \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }
    }

    rv = ngx_kubenova_pg_conninfo_parse(cf, &value[1], pc);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    kmcf->pg = pc;

    if (ngx_http_kubenova_enable_metrics(cf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_kubenova_set_handler(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_kubenova_loc_conf_t  *klcf = conf;

    ngx_http_core_loc_conf_t       *clcf;
    ngx_http_kubenova_main_conf_t  *kmcf;

    if (klcf->handler != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    klcf->handler = (ngx_int_t) cmd->offset;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_kubenova_content_handlers[cmd->offset];

    if (cmd->offset == NGX_KUBENOVA_HANDLER_GATEWAY) {
        kmcf = ngx_http_conf_get_module_main_conf(cf,
                                                  ngx_http_kubenova_module);
        kmcf->gateway_enabled = 1;
    }

    if (cmd->offset == NGX_KUBENOVA_HANDLER_KUBE_PROXY
        && ngx_kubenova_kp_route_conf(cf) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_kubenova_enable_metrics(cf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_kubenova_enable_metrics(ngx_conf_t *cf)
{
    ngx_http_kubenova_main_conf_t  *kmcf;

    kmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_kubenova_module);

    if (kmcf->metrics_zone) {
        return NGX_OK;
    }

    kmcf->metrics_zone = ngx_kubenova_metrics_zone_add(cf,
                                                       &ngx_http_kubenova_module);

    return kmcf->metrics_zone ? NGX_OK : NGX_ERROR;
}


/* life cycle */


static ngx_int_t
ngx_http_kubenova_init_process(ngx_cycle_t *cycle)
{
    ngx_kubenova_metrics_t         *metrics;
    ngx_http_kubenova_main_conf_t  *kmcf;

    kmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_kubenova_module);

    if (kmcf == NULL || kmcf->metrics_zone == NULL) {
        return NGX_OK;
    }

    metrics = ngx_kubenova_metrics_get(kmcf->metrics_zone);
    ngx_kubenova_metrics_worker_start(metrics);

    if (kmcf->pg) {
        kmcf->pool = ngx_kubenova_pg_pool_create(cycle, kmcf->pg, metrics);
        if (kmcf->pool == NULL) {
            return NGX_ERROR;
        }

        if (kmcf->gateway_enabled) {
            kmcf->gateway = ngx_kubenova_gateway_create(cycle, kmcf->pool);
            if (kmcf->gateway == NULL) {
                return NGX_ERROR;
            }
        }

        kmcf->app_watch = ngx_kubenova_app_watch_create(cycle, kmcf->pool,
                              (ngx_uint_t) kmcf->app_watchers,
                              kmcf->app_watch_heartbeat);
        if (kmcf->app_watch == NULL) {
            return NGX_ERROR;
        }

        /* one LISTEN connection for everyone who subscribed above */

        if (ngx_kubenova_listen_start(cycle, kmcf->pool) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return ngx_kubenova_kp_route_init_process(cycle);
}


static void
ngx_http_kubenova_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_kubenova_main_conf_t  *kmcf;

    kmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_kubenova_module);

    if (kmcf == NULL || kmcf->metrics_zone == NULL) {
        return;
    }

    ngx_kubenova_kp_route_exit_process(cycle);

    /* closes libpq's sockets before nginx looks for sockets left open */

    ngx_kubenova_pg_pool_destroy(kmcf->pool);
    kmcf->pool = NULL;

    ngx_kubenova_metrics_worker_stop(
                                 ngx_kubenova_metrics_get(kmcf->metrics_zone));
}


ngx_kubenova_pg_pool_t *
ngx_http_kubenova_pool(ngx_http_request_t *r)
{
    ngx_http_kubenova_main_conf_t  *kmcf;

    kmcf = ngx_http_get_module_main_conf(r, ngx_http_kubenova_module);

    if (kmcf->pg && kmcf->pool == NULL && !ngx_exiting && !ngx_terminate) {
        /*
         * Only with "master_process off": a reload there builds a new cycle
         * without calling init_process again.
         */
        kmcf->pool = ngx_kubenova_pg_pool_create((ngx_cycle_t *) ngx_cycle,
                                                 kmcf->pg,
                                                 ngx_http_kubenova_metrics(r));
    }

    return kmcf->pool;
}


ngx_kubenova_metrics_t *
ngx_http_kubenova_metrics(ngx_http_request_t *r)
{
    ngx_http_kubenova_main_conf_t  *kmcf;

    kmcf = ngx_http_get_module_main_conf(r, ngx_http_kubenova_module);

    return ngx_kubenova_metrics_get(kmcf->metrics_zone);
}


/* kubenova_cluster_unavailable_after, in ms */

ngx_msec_t
ngx_http_kubenova_cluster_unavailable_after(ngx_http_request_t *r)
{
    ngx_http_kubenova_main_conf_t  *kmcf;

    kmcf = ngx_http_get_module_main_conf(r, ngx_http_kubenova_module);

    return kmcf->cluster_unavailable_after;
}


/* the usage gauges' zone, or NULL (no gateway, or no series) */

ngx_shm_zone_t *
ngx_http_kubenova_usage_zone(ngx_http_request_t *r)
{
    ngx_http_kubenova_main_conf_t  *kmcf;

    kmcf = ngx_http_get_module_main_conf(r, ngx_http_kubenova_module);

    return kmcf->usage_zone;
}


static char *
ngx_http_kubenova_admin_token_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_kubenova_main_conf_t  *kmcf = conf;

    ngx_str_t  *value;

    if (kmcf->has_admin_token) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_kubenova_token_load_file(cf, &value[1], kmcf->admin_token_hash)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    kmcf->has_admin_token = 1;

    return NGX_CONF_OK;
}


static char *
ngx_http_kubenova_secret_key_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_kubenova_main_conf_t  *kmcf = conf;

    ngx_str_t  *value;

    if (kmcf->has_secret_key) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_kubenova_crypto_load_key(cf, &value[1], kmcf->secret_key)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    kmcf->has_secret_key = 1;

    return NGX_CONF_OK;
}


/* request identity and variables */


static ngx_http_variable_t  ngx_http_kubenova_vars[] = {

    /* stable before authentication: limit_req and limit_conn key on it */
    { ngx_string("kubenova_principal"), NULL, ngx_http_kubenova_variable,
      offsetof(ngx_http_kubenova_ctx_t, principal), 0, 0 },

    /* known once the database has authenticated the caller */
    { ngx_string("kubenova_user"), NULL, ngx_http_kubenova_variable,
      offsetof(ngx_http_kubenova_ctx_t, user), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("kubenova_tenant"), NULL, ngx_http_kubenova_variable,
      offsetof(ngx_http_kubenova_ctx_t, tenant), NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_int_t
ngx_http_kubenova_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_kubenova_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return ngx_kubenova_kp_route_variable(cf);
}


static ngx_int_t
ngx_http_kubenova_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t                *s;
    ngx_http_kubenova_ctx_t  *ctx;

    ctx = ngx_http_kubenova_get_ctx(r);
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    s = (ngx_str_t *) ((u_char *) ctx + data);

    if (s->len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = s->len;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;
    v->data = s->data;

    return NGX_OK;
}


ngx_http_kubenova_ctx_t *
ngx_http_kubenova_get_ctx(ngx_http_request_t *r)
{
    u_char                         *p;
    ngx_str_t                       token;
    ngx_int_t                       rc;
    ngx_http_kubenova_ctx_t        *ctx;
    ngx_http_kubenova_main_conf_t  *kmcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_kubenova_module);
    if (ctx) {
        return ctx;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_kubenova_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_kubenova_module);

    rc = ngx_kubenova_token_from_request(r, &token);

    if (rc == NGX_OK) {
        ngx_kubenova_token_hash(&token, ctx->token_hash);
        ctx->has_token = 1;

        kmcf = ngx_http_get_module_main_conf(r, ngx_http_kubenova_module);

        if (kmcf->has_admin_token
            && ngx_kubenova_token_hash_equal(ctx->token_hash,
                                             kmcf->admin_token_hash))
        {
            ctx->bootstrap_admin = 1;
        }

        /* a prefix of the hash names the caller without revealing much */

        p = ngx_pnalloc(r->pool, sizeof("token:") - 1 + 16);
        if (p == NULL) {
            return NULL;
        }

        ctx->principal.data = p;
        p = ngx_cpymem(p, "token:", sizeof("token:") - 1);
        p = ngx_cpymem(p, ctx->token_hash, 16);
        ctx->principal.len = p - ctx->principal.data;

        return ctx;
    }

    ctx->bad_token = (rc == NGX_ERROR);

    p = ngx_pnalloc(r->pool, sizeof("anonymous:") - 1
                             + r->connection->addr_text.len);
    if (p == NULL) {
        return NULL;
    }

    ctx->principal.data = p;
    p = ngx_cpymem(p, "anonymous:", sizeof("anonymous:") - 1);
    p = ngx_cpymem(p, r->connection->addr_text.data,
                   r->connection->addr_text.len);
    ctx->principal.len = p - ctx->principal.data;

    return ctx;
}


ngx_int_t
ngx_http_kubenova_set_identity(ngx_http_request_t *r,
    ngx_http_kubenova_ctx_t *ctx, const char *user, const char *tenant)
{
    size_t  len;

    if (user) {
        len = ngx_strlen(user);
        ctx->user.data = ngx_pnalloc(r->pool, len);
        if (ctx->user.data == NULL) {
            return NGX_ERROR;
        }
        ngx_memcpy(ctx->user.data, user, len);
        ctx->user.len = len;
    }

    if (tenant) {
        len = ngx_strlen(tenant);
        ctx->tenant.data = ngx_pnalloc(r->pool, len);
        if (ctx->tenant.data == NULL) {
            return NGX_ERROR;
        }
        ngx_memcpy(ctx->tenant.data, tenant, len);
        ctx->tenant.len = len;
    }

    return NGX_OK;
}


off_t
ngx_http_kubenova_api_max_body(ngx_http_request_t *r)
{
    ngx_http_kubenova_loc_conf_t  *klcf;

    klcf = ngx_http_get_module_loc_conf(r, ngx_http_kubenova_module);

    return klcf->api_max_body;
}


ngx_uint_t
ngx_http_kubenova_signup_enabled(ngx_http_request_t *r)
{
    ngx_http_kubenova_loc_conf_t  *klcf;

    klcf = ngx_http_get_module_loc_conf(r, ngx_http_kubenova_module);

    return klcf->signup;
}


/* counts every request a KubeNova handler answered, whatever the outcome */

static ngx_int_t
ngx_http_kubenova_log_handler(ngx_http_request_t *r)
{
    ngx_uint_t                     status;
    ngx_http_kubenova_loc_conf_t  *klcf;

    klcf = ngx_http_get_module_loc_conf(r, ngx_http_kubenova_module);

    if (klcf->handler < 0) {
        return NGX_OK;
    }

    status = r->err_status ? r->err_status : r->headers_out.status;

    ngx_kubenova_metrics_request(ngx_http_kubenova_metrics(r),
                                 (ngx_kubenova_handler_e) klcf->handler,
                                 status);

    return NGX_OK;
}
