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
static ngx_int_t ngx_http_kubenova_api_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_kubenova_log_handler(ngx_http_request_t *r);


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

      ngx_null_command
};


static ngx_http_module_t  ngx_http_kubenova_module_ctx = {
    NULL,                                  /* preconfiguration */
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
    ngx_http_kubenova_api_handler,         /* NGX_KUBENOVA_HANDLER_API */
    ngx_kubenova_healthz_handler,          /* NGX_KUBENOVA_HANDLER_HEALTHZ */
    ngx_kubenova_readyz_handler,           /* NGX_KUBENOVA_HANDLER_READYZ */
    ngx_kubenova_metrics_handler           /* NGX_KUBENOVA_HANDLER_METRICS */
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
     */

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

    return klcf;
}


static char *
ngx_http_kubenova_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_kubenova_loc_conf_t  *conf = child;

    /* a handler belongs to its own location only: it is never inherited */

    if (conf->handler == NGX_CONF_UNSET) {
        conf->handler = -1;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_kubenova_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_kubenova_log_handler;

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

    ngx_http_core_loc_conf_t  *clcf;

    if (klcf->handler != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    klcf->handler = (ngx_int_t) cmd->offset;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_kubenova_content_handlers[cmd->offset];

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
    }

    return NGX_OK;
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


/* the REST API */


static ngx_int_t
ngx_http_kubenova_api_handler(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (r->uri.len == sizeof("/api/v1") - 1
        && ngx_strncmp(r->uri.data, "/api/v1", r->uri.len) == 0)
    {
        rc = ngx_kubenova_only_get(r);
        if (rc != NGX_DECLINED) {
            return rc;
        }

        return ngx_kubenova_json_send(r, NGX_HTTP_OK,
                   json_pack("{s:s,s:s}", "name", "kubenova",
                             "version", NGX_HTTP_KUBENOVA_VERSION));
    }

    return ngx_kubenova_json_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                   "no such API endpoint");
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
