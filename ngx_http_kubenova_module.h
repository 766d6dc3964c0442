/*
 * What the KubeNova handlers share: the module's configuration and the
 * per-worker state hung from it.
 */

#ifndef _NGX_HTTP_KUBENOVA_MODULE_H_INCLUDED_
#define _NGX_HTTP_KUBENOVA_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_kubenova_pg.h"
#include "ngx_kubenova_metrics.h"
#include "ngx_kubenova_token.h"
#include "ngx_kubenova_ca.h"


#define NGX_HTTP_KUBENOVA_VERSION  "0.1.0"


typedef struct {
    ngx_kubenova_pg_conf_t   *pg;            /* NULL: no kubenova_postgres */
    ngx_shm_zone_t           *metrics_zone;

    u_char                    admin_token_hash[NGX_KUBENOVA_TOKEN_HASH_LEN];
    ngx_flag_t                has_admin_token;

    u_char                    secret_key[32];   /* AES-256-GCM, at rest */
    ngx_flag_t                has_secret_key;

    ngx_flag_t                gateway_enabled;

    ngx_str_t                 kube_proxy_url; /* kubenova_kube_proxy_url */
    ngx_str_t                 kube_proxy_ca;  /* base64 PEM, kubeconfigs */
    ngx_str_t                 kube_proxy_node_url;  /* this node's, peers */
    ngx_shm_zone_t           *kube_proxy_zone;   /* cluster -> worker */
    void                     *kube_proxy_srv;    /* its server's core conf */
    ngx_int_t                 kube_proxy_owner_var;
    /* cluster registration (ngx_kubenova_register.c) */
    ngx_kubenova_ca_t        *ca;            /* kubenova_ca */
    ngx_str_t                 public_url;    /* kubenova_public_url */
    ngx_str_t                 gateway_url;   /* kubenova_gateway_url */
    ngx_str_t                 operator_image;
    ngx_str_t                 install_manifests;  /* the YAML, read */
    time_t                    join_token_ttl;

    ngx_int_t                 usage_series;  /* kubenova_usage_metrics_series */
    ngx_shm_zone_t           *usage_zone;    /* NULL: no usage gauges */

    ngx_int_t                 app_watchers;  /* kubenova_app_watchers */
    ngx_msec_t                app_watch_heartbeat;
    /* kubenova_cluster_unavailable_after */
    ngx_msec_t                cluster_unavailable_after;

    /* this worker's, set after fork in init_process */
    ngx_kubenova_pg_pool_t   *pool;
    void                     *gateway;     /* ngx_kubenova_gateway_t */
    void                     *app_watch;   /* ngx_kubenova_app_watch_t */
} ngx_http_kubenova_main_conf_t;


typedef struct {
    ngx_int_t                 handler;       /* ngx_kubenova_handler_e or -1 */
    ngx_flag_t                signup;
    off_t                     api_max_body;
    size_t                    grpc_max_message;
    ngx_msec_t                grpc_heartbeat;
    ngx_msec_t                kube_proxy_timeout;
    size_t                    kube_proxy_window;
    ngx_uint_t                kube_proxy_max_requests;
    ngx_msec_t                kube_proxy_auth_cache;
} ngx_http_kubenova_loc_conf_t;


/* per request: who is calling, as far as the edge and the database know */
typedef struct {
    u_char                    token_hash[NGX_KUBENOVA_TOKEN_HASH_LEN];
    ngx_str_t                 principal;     /* $kubenova_principal */
    ngx_str_t                 user;          /* $kubenova_user, after auth */
    ngx_str_t                 tenant;        /* $kubenova_tenant, after auth */
    void                     *api;           /* ngx_kubenova_api.c's state */
    void                     *grpc;          /* ngx_kubenova_grpc.c's state */
    void                     *kube_proxy;    /* ngx_kubenova_kube_proxy.c's */
    void                     *app_watch;     /* a status stream's watcher */
    unsigned                  has_token:1;
    unsigned                  bad_token:1;   /* malformed Authorization */
    unsigned                  bootstrap_admin:1;
} ngx_http_kubenova_ctx_t;


extern ngx_module_t  ngx_http_kubenova_module;


ngx_kubenova_pg_pool_t *ngx_http_kubenova_pool(ngx_http_request_t *r);
ngx_http_kubenova_ctx_t *ngx_http_kubenova_get_ctx(ngx_http_request_t *r);
ngx_int_t ngx_http_kubenova_set_identity(ngx_http_request_t *r,
    ngx_http_kubenova_ctx_t *ctx, const char *user, const char *tenant);
off_t ngx_http_kubenova_api_max_body(ngx_http_request_t *r);
ngx_uint_t ngx_http_kubenova_signup_enabled(ngx_http_request_t *r);
ngx_kubenova_metrics_t *ngx_http_kubenova_metrics(ngx_http_request_t *r);
ngx_shm_zone_t *ngx_http_kubenova_usage_zone(ngx_http_request_t *r);
ngx_msec_t ngx_http_kubenova_cluster_unavailable_after(ngx_http_request_t *r);

/* ngx_kubenova_health.c */
ngx_int_t ngx_kubenova_healthz_handler(ngx_http_request_t *r);
ngx_int_t ngx_kubenova_readyz_handler(ngx_http_request_t *r);
ngx_int_t ngx_kubenova_metrics_handler(ngx_http_request_t *r);

/*
 * Discards the body; NGX_DECLINED for GET and HEAD, else what answering
 * (405, or an error reading the body) returned.
 */
ngx_int_t ngx_kubenova_only_get(ngx_http_request_t *r);


#endif /* _NGX_HTTP_KUBENOVA_MODULE_H_INCLUDED_ */
