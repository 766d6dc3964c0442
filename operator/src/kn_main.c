/*
 * kubenova-operator: settings, the one context, the event loop, and the
 * wiring between the Manager stream, the applier and the usage spool.
 * SIGTERM or SIGINT closes the stream cleanly (the Manager sees the
 * cluster disconnect) and exits 0; a second one exits at once.
 */

#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>

#include "kn_app.h"
#include "kn_app_status.h"
#include "kn_applier.h"
#include "kn_components.h"
#include "kn_config.h"
#include "kn_drift.h"
#include "kn_credentials.h"
#include "kn_grpc.h"
#include "kn_kube.h"
#include "kn_kubeconfig.h"
#include "kn_log.h"
#include "kn_loop.h"
#include "kn_register.h"
#include "kn_spool.h"
#include "kn_tenant.h"
#include "kn_tunnel.h"
#include "kn_usage.h"


#define KN_MAIN_MAX_TIMERS     1024
#define KN_MAIN_MAX_TRANSFERS  256
#define KN_MAIN_ERROR_MAX      1024


/* the one context: everything the Operator holds */

typedef struct {
    kn_config_t    config;
    kn_log_t       log;
    kn_loop_t     *loop;
    kn_applier_t  *applier;
    kn_kube_t     *kube;            /* NULL: no Kubernetes configured */
    kn_tenant_t   *tenant;
    kn_app_t      *app;             /* the tenants' Applications */
    kn_app_status_t *app_status;    /* ... and their status */
    kn_drift_t    *drift;           /* watches what the tenants own */
    kn_credentials_t  *creds;       /* the tenants' kubeconfigs */
    kn_components_t   *components;  /* the NovaClusterConfig's bundles */
    kn_tunnel_t   *tunnel;          /* the tenants' kube proxy requests */
    kn_grpc_t     *grpc;
    kn_spool_t    *spool;           /* NULL: no --usage-spool-dir */
    kn_usage_t    *usage;
    kn_register_t *reg;             /* the identity, kn_main_register() */
    unsigned       stopping:1;
    unsigned       prepared:1;      /* Kubernetes is ready (or absent) */
    unsigned       identified:1;    /* the identity is ready */
    unsigned       connecting:1;    /* the stream was started */
} kn_ctx_t;


static kn_rc kn_main_applied(void *data, kn_grpc_hello_t *hello);
static kn_rc kn_main_hello_add(void *ctx, const char *kind, const char *name,
    int64_t generation);
static void kn_main_update(void *data, const char *kind, const char *name,
    int64_t generation, const uint8_t *payload, size_t len);
static void kn_main_delete(void *data, const char *kind, const char *name,
    int64_t generation);
static void kn_main_kubeconfig_ack(void *data, const char *tenant,
    const char *role);
static void kn_main_stopped(void *data);
static void kn_main_welcome(void *data, const Kubenova__V1__Welcome *w);
static void kn_main_usage_ack(void *data, int64_t sequence);
static void kn_main_disconnected(void *data, const char *reason);
static void kn_main_tunnel(void *data, const Kubenova__V1__ManagerMessage *m);
static kn_rc kn_main_send_usage(void *data,
    const Kubenova__V1__UsageReport *report);
static kn_rc kn_main_usage(kn_ctx_t *ctx);
static void kn_main_applier_done(void *data, const char *kind,
    const char *name, int64_t generation, int ok, const char *error);
static void kn_main_signal(void *data, int signo);
static kn_rc kn_main_kube(kn_ctx_t *ctx);
static kn_rc kn_main_credentials(kn_ctx_t *ctx, const kn_kubeconfig_t *kc);
static void kn_main_kube_ready(void *data, const char *version);
static void kn_main_apps_ready(void *data);
static kn_rc kn_main_send_app_status(void *data,
    const Kubenova__V1__ApplicationStatus *status);
static void kn_main_status_ack(void *data, const char *tenant,
    const char *app, int64_t generation);
static kn_rc kn_main_send_components(void *data,
    const Kubenova__V1__ComponentStatus *status);
static void kn_main_components_ready(void *data);
static int kn_main_run(kn_ctx_t *ctx);
static kn_rc kn_main_register(kn_ctx_t *ctx);
static void kn_main_identity(void *data, const kn_identity_t *id);
static kn_rc kn_main_send_csr(void *data, const char *csr, size_t len);
static void kn_main_certificate(void *data,
    const Kubenova__V1__CertificateIssued *issued);
static void kn_main_unauthenticated(void *data);
static void kn_main_connect(kn_ctx_t *ctx);


static const kn_grpc_handlers_t  kn_main_grpc_handlers = {
    kn_main_applied,
    kn_main_welcome,
    kn_main_update,
    kn_main_delete,
    kn_main_usage_ack,
    kn_main_status_ack,
    kn_main_kubeconfig_ack,
    kn_main_disconnected,
    kn_main_stopped,
    kn_main_tunnel,
    kn_main_certificate,
    kn_main_unauthenticated
};


int
main(int argc, char **argv)
{
    int        status;
    char       err[KN_MAIN_ERROR_MAX];
    kn_rc      rc;
    kn_ctx_t   ctx;

    memset(&ctx, 0, sizeof(ctx));
    ctx.log.level = KN_LOG_INFO;

    rc = kn_config_load(&ctx.config, argc, argv, err, sizeof(err));

    if (rc == KN_DONE) {
        return 0;
    }

    if (rc != KN_OK) {
        fprintf(stderr, "kubenova-operator: %s\n"
                "Run \"kubenova-operator --help\" for the settings.\n", err);
        return 2;
    }

    ctx.log.level = ctx.config.log_level;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        kn_log(&ctx.log, KN_LOG_ERROR, "curl_global_init() failed");
        return 1;
    }

    status = kn_main_run(&ctx);

    kn_grpc_destroy(ctx.grpc);
    kn_tunnel_destroy(ctx.tunnel);
    kn_register_destroy(ctx.reg);
    kn_drift_destroy(ctx.drift);
    kn_usage_destroy(ctx.usage);
    kn_spool_close(ctx.spool);
    kn_app_status_destroy(ctx.app_status);
    kn_app_destroy(ctx.app);
    kn_components_destroy(ctx.components);
    kn_tenant_destroy(ctx.tenant);
    kn_credentials_destroy(ctx.creds);
    kn_kube_destroy(ctx.kube);
    kn_applier_destroy(ctx.applier);
    kn_loop_destroy(ctx.loop);
    curl_global_cleanup();

    return status;
}


static int
kn_main_run(kn_ctx_t *ctx)
{
    kn_rc                    rc;
    kn_config_t             *cfg;
    kn_grpc_conf_t           gc;
    curl_version_info_data  *cv;
    static const int         signals[] = { SIGTERM, SIGINT };

    cfg = &ctx->config;

    cv = curl_version_info(CURLVERSION_NOW);

    if (!(cv->features & CURL_VERSION_HTTP2)) {
        kn_log(&ctx->log, KN_LOG_ERROR, "libcurl %s has no HTTP/2 support; "
               "the Manager's gateway needs it", cv->version);
        return 1;
    }

    kn_log(&ctx->log, KN_LOG_INFO, "kubenova-operator %s (libcurl %s) "
           "starting: cluster \"%s\", Manager %s, heartbeat %llu ms, "
           "Kubernetes %s%s", KN_VERSION, cv->version, cfg->cluster,
           cfg->manager_url, (unsigned long long) cfg->heartbeat_ms,
           cfg->kube_mode == KN_KUBE_KUBECONFIG ? "from kubeconfig "
           : cfg->kube_mode == KN_KUBE_IN_CLUSTER ? "in-cluster at "
           : "not configured (no --kubeconfig, not in a cluster)",
           cfg->kube_mode == KN_KUBE_KUBECONFIG ? cfg->kubeconfig
           : cfg->kube_mode == KN_KUBE_IN_CLUSTER ? cfg->kube_host : "");

    if (cfg->manager_ca[0] && strncmp(cfg->manager_url, "https://", 8) != 0) {
        kn_log(&ctx->log, KN_LOG_WARN, "--manager-ca is only used with an "
               "https:// Manager URL; ignored");
    }

    signal(SIGPIPE, SIG_IGN);

    rc = kn_loop_create(&ctx->log, KN_MAIN_MAX_TIMERS,
                        KN_MAIN_MAX_TRANSFERS + cfg->max_tunnel_requests,
                        &ctx->loop);
    if (rc != KN_OK) {
        return 1;
    }

    rc = kn_loop_signals(ctx->loop, signals, KN_NELEMS(signals),
                         kn_main_signal, ctx);
    if (rc != KN_OK) {
        return 1;
    }

    rc = kn_applier_create(&ctx->log, cfg->max_objects, kn_main_applier_done,
                           ctx, &ctx->applier);
    if (rc != KN_OK) {
        return 1;
    }

    memset(&gc, 0, sizeof(gc));
    gc.manager_url = cfg->manager_url;
    gc.ca_file = cfg->manager_ca[0] ? cfg->manager_ca : NULL;
    gc.cluster = cfg->cluster;
    gc.operator_version = KN_VERSION;
    gc.heartbeat_ms = cfg->heartbeat_ms;
    gc.reconnect_min_ms = cfg->reconnect_min_ms;
    gc.reconnect_max_ms = cfg->reconnect_max_ms;
    gc.max_message = cfg->max_message;
    gc.queue_messages = cfg->send_queue_messages;
    gc.queue_bytes = cfg->send_queue_bytes;

    rc = kn_grpc_create(ctx->loop, &ctx->log, &gc, &kn_main_grpc_handlers,
                        ctx, &ctx->grpc);
    if (rc != KN_OK) {
        return 1;
    }

    if (kn_main_usage(ctx) != KN_OK) {
        return 1;
    }

    if (cfg->kube_mode != KN_KUBE_NONE) {
        /* the stream starts once the cluster is prepared */
        if (kn_main_kube(ctx) != KN_OK) {
            return 1;
        }

    } else {
        ctx->prepared = 1;
    }

    /* ... and once the Operator has its identity */
    if (kn_main_register(ctx) != KN_OK) {
        return 1;
    }

    kn_main_connect(ctx);

    rc = kn_loop_run(ctx->loop);
    if (rc != KN_OK) {
        return 1;
    }

    kn_log(&ctx->log, KN_LOG_INFO, "kubenova-operator stopped");

    return 0;
}


/*
 * Usage: the spool is opened whenever it is configured (reports of an
 * earlier run still go out); reports are made with Kubernetes only.
 */

static kn_rc
kn_main_usage(kn_ctx_t *ctx)
{
    kn_config_t      *cfg = &ctx->config;
    kn_spool_conf_t   sc;

    if (cfg->usage_spool_dir[0] == '\0') {
        kn_log(&ctx->log, KN_LOG_INFO, "usage: not reported (no "
               "--usage-spool-dir)");
        return KN_OK;
    }

    memset(&sc, 0, sizeof(sc));
    sc.dir = cfg->usage_spool_dir;
    sc.max_reports = cfg->usage_spool_max;
    sc.max_message = cfg->max_message;

    return kn_spool_open(ctx->loop, &ctx->log, &sc, kn_main_send_usage, ctx,
                         &ctx->spool);
}


/*
 * Kubernetes: the client, and the tenant reconciler behind the applier for
 * kind Tenant; it applies the CRDs and finds the tenants the cluster holds
 * before the first hello.  With a spool, usage collection starts too.
 */

static kn_rc
kn_main_kube(kn_ctx_t *ctx)
{
    char                err[KN_MAIN_ERROR_MAX];
    kn_rc               rc;
    kn_config_t        *cfg = &ctx->config;
    kn_usage_conf_t     uc;
    kn_kubeconfig_t     kc;
    kn_kube_options_t   ko;
    kn_tunnel_conf_t    tc;

    if (cfg->kube_mode == KN_KUBE_KUBECONFIG) {
        rc = kn_kubeconfig_load(&kc, cfg->kubeconfig, NULL, err,
                                sizeof(err));
    } else {
        rc = kn_kubeconfig_in_cluster(&kc, cfg->kube_host, cfg->kube_port,
                                      cfg->service_account_dir, err,
                                      sizeof(err));
    }

    if (rc != KN_OK) {
        kn_log(&ctx->log, KN_LOG_ERROR, "%s", err);
        return KN_ERROR;
    }

    memset(&ko, 0, sizeof(ko));         /* zero: the defaults */
    ko.qps = (double) cfg->kube_qps;
    ko.burst = (unsigned) cfg->kube_burst;

    rc = kn_kube_create(ctx->loop, &ctx->log, &kc, &ko, &ctx->kube);

    if (rc == KN_OK) {
        rc = kn_main_credentials(ctx, &kc);
    }

    kn_kubeconfig_free(&kc);

    if (rc != KN_OK) {
        return KN_ERROR;
    }

    kn_log(&ctx->log, KN_LOG_INFO, "Kubernetes requests: at most %.0f per "
           "second, %u at once (--kube-qps, --kube-burst)",
           kn_kube_options(ctx->kube)->qps,
           kn_kube_options(ctx->kube)->burst);

    rc = kn_tenant_create(ctx->loop, &ctx->log, ctx->kube, ctx->applier,
                          &ctx->tenant);
    if (rc != KN_OK) {
        return KN_ERROR;
    }

    tc.max_requests = cfg->max_tunnel_requests;
    tc.max_buffer = cfg->tunnel_max_buffer;
    tc.max_message = cfg->max_message;

    rc = kn_tunnel_create(ctx->loop, &ctx->log, ctx->kube, ctx->creds,
                          ctx->tenant, ctx->grpc, &tc, &ctx->tunnel);
    if (rc != KN_OK) {
        return KN_ERROR;
    }

    rc = kn_app_create(ctx->loop, &ctx->log, ctx->kube, ctx->applier,
                       &ctx->app);
    if (rc != KN_OK) {
        return KN_ERROR;
    }

    rc = kn_components_create(ctx->loop, &ctx->log, ctx->kube, ctx->applier,
                              cfg->bundles_dir, kn_main_send_components, ctx,
                              &ctx->components);
    if (rc != KN_OK) {
        return KN_ERROR;
    }

    rc = kn_app_status_create(ctx->loop, &ctx->log, ctx->kube,
                              kn_main_send_app_status, ctx,
                              &ctx->app_status);
    if (rc != KN_OK) {
        return KN_ERROR;
    }

    rc = kn_drift_create(ctx->loop, &ctx->log, ctx->kube, ctx->tenant,
                         &ctx->drift);
    if (rc != KN_OK) {
        return KN_ERROR;
    }

    /* each tenant in place gets its kubeconfigs */
    rc = kn_tenant_on_ready(ctx->tenant, kn_credentials_tenant, ctx->creds);
    if (rc != KN_OK) {
        return KN_ERROR;
    }

    if (ctx->spool != NULL) {
        uc.window_ms = cfg->usage_window_ms;
        uc.max_message = cfg->max_message;

        if (kn_usage_create(ctx->loop, &ctx->log, ctx->kube, ctx->spool, &uc,
                            &ctx->usage) != KN_OK
            || kn_usage_start(ctx->usage) != KN_OK)
        {
            return KN_ERROR;
        }
    }

    return kn_tenant_start(ctx->tenant, kn_main_kube_ready, ctx);
}


/*
 * The tenants' kubeconfigs point at the API server the Operator uses (or
 * the one configured for tenants), with its CA.
 */

static kn_rc
kn_main_credentials(kn_ctx_t *ctx, const kn_kubeconfig_t *kc)
{
    kn_config_t            *cfg = &ctx->config;
    kn_credentials_conf_t   cc;

    memset(&cc, 0, sizeof(cc));
    cc.cluster = cfg->cluster;
    cc.server = cfg->tenant_kubeconfig_server[0]
                ? cfg->tenant_kubeconfig_server : kc->server;
    cc.ca_pem = kc->ca_pem;
    cc.ca_pem_len = kc->ca_pem_len;
    cc.insecure = kc->insecure;
    cc.ttl_ms = cfg->tenant_token_ttl_ms;
    cc.renew_before_ms = cfg->tenant_token_renew_before_ms;
    cc.max_tenants = cfg->max_objects;

    return kn_credentials_create(ctx->loop, &ctx->log, ctx->kube, ctx->grpc,
                                 &cc, &ctx->creds);
}


static void
kn_main_kube_ready(void *data, const char *version)
{
    kn_ctx_t  *ctx = data;

    if (version[0] != '\0') {
        (void) kn_grpc_set_kubernetes_version(ctx->grpc, version);
    }

    if (ctx->stopping) {
        return;
    }

    /* the reconciler knows what it applied: drift can be told apart */
    if (kn_drift_start(ctx->drift) != KN_OK) {
        kn_log(&ctx->log, KN_LOG_WARN, "drift correction is off: what "
               "the tenants own is only reconciled when the Manager sends "
               "it");
    }

    /* then the Application CRD and the Applications the cluster holds */
    (void) kn_app_start(ctx->app, kn_main_apps_ready, ctx);
}


static void
kn_main_apps_ready(void *data)
{
    kn_ctx_t  *ctx = data;

    if (ctx->stopping) {
        return;
    }

    if (kn_app_status_start(ctx->app_status) != KN_OK) {
        kn_log(&ctx->log, KN_LOG_WARN, "the status of the Applications is "
               "not reported");
    }

    /* then the cluster configuration the cluster holds */
    (void) kn_components_start(ctx->components, kn_main_components_ready,
                               ctx);
}


static void
kn_main_components_ready(void *data)
{
    kn_ctx_t  *ctx = data;

    if (ctx->stopping) {
        return;
    }

    ctx->prepared = 1;
    kn_main_connect(ctx);
}


/* the stream: started once, when both the cluster and the identity are */

static void
kn_main_connect(kn_ctx_t *ctx)
{
    if (ctx->stopping || ctx->connecting || !ctx->prepared
        || !ctx->identified)
    {
        return;
    }

    ctx->connecting = 1;

    /* a failed first attempt is retried like any other */
    (void) kn_grpc_start(ctx->grpc);
}


/* the identity (kn_register): mTLS with a registered certificate */

static kn_rc
kn_main_register(kn_ctx_t *ctx)
{
    char                *slash;
    kn_config_t         *cfg = &ctx->config;
    kn_register_conf_t   rc;

    memset(&rc, 0, sizeof(rc));
    rc.cluster = cfg->cluster;

    if (cfg->join_dir[0]) {
        rc.join_dir = cfg->join_dir;
        rc.register_url = cfg->register_url;
        rc.ca_file = cfg->manager_ca;
    }

    if (cfg->identity_dir[0]) {
        rc.identity_dir = cfg->identity_dir;

    } else {
        /* NS/NAME, checked by kn_config: split in place */
        slash = strchr(cfg->identity_secret, '/');
        *slash = '\0';
        rc.kube = ctx->kube;
        rc.secret_namespace = cfg->identity_secret;
        rc.secret_name = slash + 1;
    }

    if (kn_register_create(ctx->loop, &ctx->log, &rc, kn_main_identity,
                           kn_main_send_csr, ctx, &ctx->reg)
        != KN_OK)
    {
        return KN_ERROR;
    }

    return kn_register_start(ctx->reg);
}


static void
kn_main_identity(void *data, const kn_identity_t *id)
{
    kn_ctx_t  *ctx = data;

    if (kn_grpc_set_identity(ctx->grpc, id->cert_pem, id->cert_pem_len,
                             id->key_pem, id->key_pem_len) != KN_OK)
    {
        return;
    }

    ctx->identified = 1;
    kn_main_connect(ctx);
}


static kn_rc
kn_main_send_csr(void *data, const char *csr, size_t len)
{
    kn_ctx_t  *ctx = data;

    return kn_grpc_send_certificate_request(ctx->grpc, csr, len);
}


static void
kn_main_certificate(void *data, const Kubenova__V1__CertificateIssued *issued)
{
    kn_ctx_t  *ctx = data;

    if (ctx->reg != NULL) {
        kn_register_issued(ctx->reg, issued);
    }
}


static void
kn_main_unauthenticated(void *data)
{
    kn_ctx_t  *ctx = data;

    if (ctx->reg != NULL) {
        kn_register_refused(ctx->reg);
    }
}


static kn_rc
kn_main_send_components(void *data,
    const Kubenova__V1__ComponentStatus *status)
{
    kn_ctx_t  *ctx = data;

    return kn_grpc_send_components(ctx->grpc, status);
}


static kn_rc
kn_main_send_app_status(void *data,
    const Kubenova__V1__ApplicationStatus *status)
{
    kn_ctx_t  *ctx = data;

    return kn_grpc_send_app_status(ctx->grpc, status);
}


static void
kn_main_status_ack(void *data, const char *tenant, const char *app,
    int64_t generation)
{
    kn_ctx_t  *ctx = data;

    if (ctx->app_status != NULL) {
        kn_app_status_ack(ctx->app_status, tenant, app, generation);
    }
}


/* the Manager stream */


static kn_rc
kn_main_applied(void *data, kn_grpc_hello_t *hello)
{
    kn_ctx_t  *ctx = data;

    return kn_applier_each(ctx->applier, kn_main_hello_add, hello);
}


static kn_rc
kn_main_hello_add(void *hello, const char *kind, const char *name,
    int64_t generation)
{
    return kn_grpc_hello_add(hello, kind, name, generation);
}


static void
kn_main_update(void *data, const char *kind, const char *name,
    int64_t generation, const uint8_t *payload, size_t len)
{
    kn_ctx_t  *ctx = data;

    (void) kn_applier_apply(ctx->applier, kind, name, generation, payload,
                            len);
}


static void
kn_main_delete(void *data, const char *kind, const char *name,
    int64_t generation)
{
    kn_ctx_t  *ctx = data;

    (void) kn_applier_delete(ctx->applier, kind, name, generation);
}


/* a new stream: unacked usage reports and kubeconfigs go again */

static void
kn_main_welcome(void *data, const Kubenova__V1__Welcome *w)
{
    kn_ctx_t  *ctx = data;

    (void) w;

    if (ctx->reg != NULL) {
        kn_register_welcomed(ctx->reg);
    }

    if (ctx->spool != NULL) {
        kn_spool_connected(ctx->spool);
    }

    if (ctx->creds != NULL) {
        kn_credentials_connected(ctx->creds);
    }

    if (ctx->components != NULL) {
        kn_components_connected(ctx->components);
    }
}


static void
kn_main_disconnected(void *data, const char *reason)
{
    kn_ctx_t  *ctx = data;

    (void) reason;

    if (ctx->spool != NULL) {
        kn_spool_disconnected(ctx->spool);
    }

    if (ctx->tunnel != NULL) {
        kn_tunnel_disconnected(ctx->tunnel);
    }
}


/* the kube proxy: only with Kubernetes (without, the Manager times out) */

static void
kn_main_tunnel(void *data, const Kubenova__V1__ManagerMessage *m)
{
    kn_ctx_t  *ctx = data;

    if (ctx->tunnel != NULL) {
        kn_tunnel_message(ctx->tunnel, m);
    }
}


static void
kn_main_usage_ack(void *data, int64_t sequence)
{
    kn_ctx_t  *ctx = data;

    if (ctx->spool != NULL) {
        kn_spool_acked(ctx->spool, sequence);
    }
}


static kn_rc
kn_main_send_usage(void *data, const Kubenova__V1__UsageReport *report)
{
    kn_ctx_t  *ctx = data;

    return kn_grpc_send_usage(ctx->grpc, report);
}


static void
kn_main_kubeconfig_ack(void *data, const char *tenant, const char *role)
{
    kn_ctx_t  *ctx = data;

    if (ctx->creds != NULL) {
        kn_credentials_acked(ctx->creds, tenant, role);
    }
}


/* an apply or delete finished: the Manager hears of it */

static void
kn_main_applier_done(void *data, const char *kind, const char *name,
    int64_t generation, int ok, const char *error)
{
    kn_ctx_t  *ctx = data;
    kn_rc      rc;

    rc = kn_grpc_ack(ctx->grpc, kind, name, generation, ok, error);

    if (rc == KN_DECLINED) {
        kn_log(&ctx->log, KN_LOG_DEBUG, "not connected: the next hello "
               "reports %s \"%s\"", kind, name);
    }
}


/* shutting down */


static void
kn_main_signal(void *data, int signo)
{
    kn_ctx_t  *ctx = data;

    if (ctx->stopping) {
        kn_log(&ctx->log, KN_LOG_WARN, "%s again: exiting now",
               strsignal(signo));
        kn_loop_stop(ctx->loop);
        return;
    }

    ctx->stopping = 1;

    kn_log(&ctx->log, KN_LOG_INFO, "%s: shutting down", strsignal(signo));

    if (kn_grpc_stop(ctx->grpc) == KN_DONE) {
        kn_loop_stop(ctx->loop);
    }
}


static void
kn_main_stopped(void *data)
{
    kn_ctx_t  *ctx = data;

    kn_loop_stop(ctx->loop);
}
