/*
 * The Operator's settings, from (lowest to highest precedence) defaults, a
 * configuration file (--config FILE or KN_CONFIG), the environment (KN_*)
 * and command-line flags.  Every setting has the same name in all three:
 * flag --manager-url, file line "manager-url = ...", variable
 * KN_MANAGER_URL.  kn_config_load() validates everything it can without
 * the network; the Kubernetes settings are only paths here, kn_kube.c
 * reads them.
 */

#ifndef KN_CONFIG_H
#define KN_CONFIG_H


#include <limits.h>

#include "kn_core.h"
#include "kn_log.h"


#define KN_CONFIG_URL_MAX     1024
#define KN_CONFIG_NAME_MAX    64          /* a DNS label and its NUL */
#define KN_CONFIG_HOST_MAX    256
#define KN_CONFIG_BUNDLES_DIR "/usr/share/kubenova/bundles"  /* make install */


typedef enum {
    KN_KUBE_NONE = 0,           /* neither a kubeconfig nor in a cluster */
    KN_KUBE_KUBECONFIG,
    KN_KUBE_IN_CLUSTER          /* service account, KUBERNETES_SERVICE_* */
} kn_kube_mode_e;


typedef struct {
    char            manager_url[KN_CONFIG_URL_MAX];
    char            cluster[KN_CONFIG_NAME_MAX];
    char            manager_ca[PATH_MAX];

    /* registration and the mTLS identity (kn_join, kn_register) */
    char            join_dir[PATH_MAX];
    char            register_url[KN_CONFIG_URL_MAX];    /* from join_dir */
    char            identity_dir[PATH_MAX];
    char            identity_secret[KN_CONFIG_NAME_MAX * 2 + 1];  /* NS/NAME */

    kn_kube_mode_e  kube_mode;
    char            kubeconfig[PATH_MAX];
    char            service_account_dir[PATH_MAX];
    char            kube_host[KN_CONFIG_HOST_MAX];   /* in-cluster */
    char            kube_port[16];

    uint64_t        heartbeat_ms;
    uint64_t        reconnect_min_ms;
    uint64_t        reconnect_max_ms;
    size_t          max_message;
    size_t          send_queue_messages;
    size_t          send_queue_bytes;
    size_t          max_objects;
    size_t          kube_qps;           /* 0: kn_kube's default */
    size_t          kube_burst;

    uint64_t        usage_window_ms;
    char            usage_spool_dir[PATH_MAX];    /* "": no usage reports */
    size_t          usage_spool_max;

    /* the tenants' kubeconfigs (kn_credentials) */
    uint64_t        tenant_token_ttl_ms;
    uint64_t        tenant_token_renew_before_ms;   /* 0: a fifth of it */
    char            tenant_kubeconfig_server[KN_CONFIG_URL_MAX];

    /* the component bundles (kn_components) */
    char            bundles_dir[PATH_MAX];
    /* the kube proxy tunnel (kn_tunnel) */
    size_t          max_tunnel_requests;
    size_t          tunnel_max_buffer;

    kn_log_level_e  log_level;
} kn_config_t;


/*
 * KN_OK: cfg is complete and valid.  KN_DONE: --help or --version was
 * printed, exit 0.  KN_ERROR: err says what is missing or wrong.
 */
kn_rc kn_config_load(kn_config_t *cfg, int argc, char **argv, char *err,
    size_t err_size);

void kn_config_usage(const char *program);

#endif /* KN_CONFIG_H */
