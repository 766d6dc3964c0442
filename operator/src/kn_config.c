/*
 * Settings (see kn_config.h).  One table describes every setting: its
 * name (flag, file key), its environment variable, its type and bounds.
 */

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "kn_config.h"
#include "kn_join.h"


#define KN_CONFIG_FILE_MAX  (64 * 1024)   /* a configuration file */
#define KN_CONFIG_LINE_MAX  4096


typedef enum {
    KN_OPT_STRING = 0,
    KN_OPT_DURATION,            /* uint64_t milliseconds */
    KN_OPT_SIZE,                /* size_t bytes or a count */
    KN_OPT_LOG_LEVEL
} kn_opt_type_e;


typedef struct {
    const char     *name;
    const char     *env;
    kn_opt_type_e   type;
    size_t          offset;
    size_t          size;       /* strings: the buffer */
    uint64_t        min;
    uint64_t        max;
    const char     *help;
} kn_config_option_t;


#define KN_STR(field)                                                       \
    KN_OPT_STRING, offsetof(kn_config_t, field),                            \
    sizeof(((kn_config_t *) 0)->field), 0, 0

static const kn_config_option_t  kn_config_options[] = {

    { "manager-url", "KN_MANAGER_URL", KN_STR(manager_url),
      "the Manager's gateway, https://host:port (mTLS with the identity)" },

    { "cluster", "KN_CLUSTER", KN_STR(cluster),
      "this cluster's name at the Manager (a DNS label)" },

    { "manager-ca", "KN_MANAGER_CA", KN_STR(manager_ca),
      "CA certificates (PEM) to verify an https:// Manager with" },

    { "join-dir", "KN_JOIN_DIR", KN_STR(join_dir),
      "the kubenova-join Secret's files (cluster, join-token, "
      "register-url, gateway-url, ca.crt); replaces --cluster, "
      "--manager-url and --manager-ca" },

    { "identity-dir", "KN_IDENTITY_DIR", KN_STR(identity_dir),
      "directory keeping the Operator's key and certificate (tls.key, "
      "tls.crt), out of cluster" },

    { "identity-secret", "KN_IDENTITY_SECRET", KN_STR(identity_secret),
      "NAMESPACE/NAME of the kubernetes.io/tls Secret keeping the "
      "Operator's key and certificate, in cluster" },

    { "kubeconfig", "KN_KUBECONFIG", KN_STR(kubeconfig),
      "kubeconfig to reach Kubernetes with (default: in-cluster)" },

    { "service-account-dir", "KN_SERVICE_ACCOUNT_DIR",
      KN_STR(service_account_dir),
      "in-cluster service account directory (token, ca.crt, namespace)" },

    { "heartbeat", "KN_HEARTBEAT", KN_OPT_DURATION,
      offsetof(kn_config_t, heartbeat_ms), 0, 100, 3600 * 1000,
      "heartbeat interval; the Manager is dead after 3 silent intervals "
      "(default 10s)" },

    { "reconnect-min", "KN_RECONNECT_MIN", KN_OPT_DURATION,
      offsetof(kn_config_t, reconnect_min_ms), 0, 10, 3600 * 1000,
      "first reconnect delay bound, doubled per attempt (default 1s)" },

    { "reconnect-max", "KN_RECONNECT_MAX", KN_OPT_DURATION,
      offsetof(kn_config_t, reconnect_max_ms), 0, 10, 3600 * 1000,
      "largest reconnect delay bound (default 60s)" },

    { "max-message", "KN_MAX_MESSAGE", KN_OPT_SIZE,
      offsetof(kn_config_t, max_message), 0, 1024, 64 * 1024 * 1024,
      "largest gRPC message either way (default 4m)" },

    { "send-queue-messages", "KN_SEND_QUEUE_MESSAGES", KN_OPT_SIZE,
      offsetof(kn_config_t, send_queue_messages), 0, 16, 1024 * 1024,
      "most messages waiting to be sent to the Manager (default 65536)" },

    { "send-queue-bytes", "KN_SEND_QUEUE_BYTES", KN_OPT_SIZE,
      offsetof(kn_config_t, send_queue_bytes), 0, 64 * 1024,
      1024 * 1024 * 1024,
      "most bytes waiting to be sent to the Manager (default 16m)" },

    { "max-objects", "KN_MAX_OBJECTS", KN_OPT_SIZE,
      offsetof(kn_config_t, max_objects), 0, 1, 1024 * 1024,
      "most objects this cluster may hold from the Manager "
      "(default 65536)" },

    { "kube-qps", "KN_KUBE_QPS", KN_OPT_SIZE,
      offsetof(kn_config_t, kube_qps), 0, 1, 100000,
      "Kubernetes requests per second, a client-side limit (default 20)" },

    { "kube-burst", "KN_KUBE_BURST", KN_OPT_SIZE,
      offsetof(kn_config_t, kube_burst), 0, 1, 100000,
      "Kubernetes requests at once above --kube-qps (default 40)" },

    { "usage-window", "KN_USAGE_WINDOW", KN_OPT_DURATION,
      offsetof(kn_config_t, usage_window_ms), 0, 1000, 24 * 3600 * 1000,
      "usage is reported per window of this length, whole seconds "
      "(default 1h)" },

    { "usage-spool-dir", "KN_USAGE_SPOOL_DIR", KN_STR(usage_spool_dir),
      "directory where usage reports wait for the Manager's ack "
      "(default: none, usage is not reported)" },

    { "usage-spool-max", "KN_USAGE_SPOOL_MAX", KN_OPT_SIZE,
      offsetof(kn_config_t, usage_spool_max), 0, 1, 1024 * 1024,
      "most usage reports kept unacked; past it the oldest is dropped "
      "(default 10000)" },

    { "tenant-token-ttl", "KN_TENANT_TOKEN_TTL", KN_OPT_DURATION,
      offsetof(kn_config_t, tenant_token_ttl_ms), 0, 600 * 1000,
      366ULL * 24 * 3600 * 1000,
      "lifetime asked for the tokens of the tenants' kubeconfigs, at "
      "least 10m (default 1h)" },

    { "tenant-token-renew-before", "KN_TENANT_TOKEN_RENEW_BEFORE",
      KN_OPT_DURATION,
      offsetof(kn_config_t, tenant_token_renew_before_ms), 0, 0,
      366ULL * 24 * 3600 * 1000,
      "renew a tenant token this long before it expires, less than "
      "--tenant-token-ttl (default: a fifth of its lifetime)" },

    { "tenant-kubeconfig-server", "KN_TENANT_KUBECONFIG_SERVER",
      KN_STR(tenant_kubeconfig_server),
      "API server URL written in the tenants' kubeconfigs (default: the "
      "one the Operator uses)" },

    { "bundles-dir", "KN_BUNDLES_DIR", KN_STR(bundles_dir),
      "the component bundles, <dir>/<component>/<version>/NN-*.yaml "
      "(default " KN_CONFIG_BUNDLES_DIR ")" },
    { "max-tunnel-requests", "KN_MAX_TUNNEL_REQUESTS", KN_OPT_SIZE,
      offsetof(kn_config_t, max_tunnel_requests), 0, 1, 10000,
      "kube proxy requests run at once for the tenants; past it they are "
      "answered 503 (default 64)" },

    { "tunnel-max-buffer", "KN_TUNNEL_MAX_BUFFER", KN_OPT_SIZE,
      offsetof(kn_config_t, tunnel_max_buffer), 0, 64 * 1024,
      1024 * 1024 * 1024,
      "memory the kube proxy responses being filtered (pods of all "
      "namespaces, held whole) may take, all of them (default 64m)" },

    { "log-level", "KN_LOG_LEVEL", KN_OPT_LOG_LEVEL,
      offsetof(kn_config_t, log_level), 0, 0, 0,
      "error, warn, info or debug (default info)" },
};


static kn_rc kn_config_set(kn_config_t *cfg, const kn_config_option_t *opt,
    const char *value, const char *where, char *err, size_t err_size);
static kn_rc kn_config_file(kn_config_t *cfg, const char *path, char *err,
    size_t err_size);
static kn_rc kn_config_validate(kn_config_t *cfg, char *err,
    size_t err_size);
static kn_rc kn_config_identity(kn_config_t *cfg, char *err,
    size_t err_size);
static kn_rc kn_config_url(const char *name, char *url, char *err,
    size_t err_size);
static const kn_config_option_t *kn_config_find(const char *name,
    size_t len);
static kn_rc kn_config_number(const char *value, uint64_t *n,
    const char **suffix);
static char *kn_config_trim(char *s);
static void kn_config_error(char *err, size_t err_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));


static void
kn_config_defaults(kn_config_t *cfg)
{
    memset(cfg, 0, sizeof(kn_config_t));

    cfg->heartbeat_ms = 10 * 1000;
    strcpy(cfg->bundles_dir, KN_CONFIG_BUNDLES_DIR);
    cfg->reconnect_min_ms = 1000;
    cfg->reconnect_max_ms = 60 * 1000;
    cfg->max_message = 4 * 1024 * 1024;
    cfg->send_queue_messages = 65536;
    cfg->send_queue_bytes = 16 * 1024 * 1024;
    cfg->max_objects = 65536;
    cfg->usage_window_ms = 3600 * 1000;
    cfg->usage_spool_max = 10000;
    cfg->tenant_token_ttl_ms = 3600 * 1000;
    cfg->max_tunnel_requests = 64;
    cfg->tunnel_max_buffer = 64 * 1024 * 1024;
    cfg->log_level = KN_LOG_INFO;

    strcpy(cfg->service_account_dir,
           "/var/run/secrets/kubernetes.io/serviceaccount");
}


kn_rc
kn_config_load(kn_config_t *cfg, int argc, char **argv, char *err,
    size_t err_size)
{
    int                        i;
    char                       where[128];
    size_t                     len;
    const char                *arg, *eq, *value, *file;
    const kn_config_option_t  *opt;

    kn_config_defaults(cfg);

    /* --help, --version and --config first: the file is the lowest layer */

    file = getenv("KN_CONFIG");

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            kn_config_usage(argv[0]);
            return KN_DONE;
        }

        if (strcmp(argv[i], "--version") == 0) {
            printf("kubenova-operator %s (%s)\n", KN_VERSION,
                   curl_version());
            return KN_DONE;
        }

        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 == argc) {
                kn_config_error(err, err_size, "--config needs a file");
                return KN_ERROR;
            }

            file = argv[++i];

        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            file = argv[i] + 9;
        }
    }

    if (file && file[0] && kn_config_file(cfg, file, err, err_size) != KN_OK) {
        return KN_ERROR;
    }

    for (i = 0; i < (int) KN_NELEMS(kn_config_options); i++) {
        opt = &kn_config_options[i];
        value = getenv(opt->env);

        if (value == NULL || value[0] == '\0') {
            continue;
        }

        if (kn_config_set(cfg, opt, value, opt->env, err, err_size) != KN_OK) {
            return KN_ERROR;
        }
    }

    for (i = 1; i < argc; i++) {
        arg = argv[i];

        if (strncmp(arg, "--", 2) != 0) {
            kn_config_error(err, err_size, "unexpected argument \"%s\"", arg);
            return KN_ERROR;
        }

        arg += 2;
        eq = strchr(arg, '=');
        len = eq ? (size_t) (eq - arg) : strlen(arg);

        if (len == 6 && strncmp(arg, "config", 6) == 0) {
            i += eq ? 0 : 1;
            continue;
        }

        opt = kn_config_find(arg, len);
        if (opt == NULL) {
            kn_config_error(err, err_size, "unknown option \"--%.*s\"",
                            (int) len, arg);
            return KN_ERROR;
        }

        if (eq) {
            value = eq + 1;

        } else if (i + 1 < argc) {
            value = argv[++i];

        } else {
            kn_config_error(err, err_size, "--%s needs a value", opt->name);
            return KN_ERROR;
        }

        snprintf(where, sizeof(where), "--%s", opt->name);

        if (kn_config_set(cfg, opt, value, where, err, err_size) != KN_OK) {
            return KN_ERROR;
        }
    }

    return kn_config_validate(cfg, err, err_size);
}


void
kn_config_usage(const char *program)
{
    size_t                     i;
    const kn_config_option_t  *opt;

    printf("usage: %s [--config FILE] [--SETTING VALUE ...]\n\n"
           "The KubeNova Operator: dials out to the Manager and applies "
           "what it is told.\n"
           "Every setting is a flag, a KN_* environment variable or a "
           "\"name = value\"\nline of the configuration file "
           "(flags win over the environment, which wins\nover the file).\n\n",
           program);

    for (i = 0; i < KN_NELEMS(kn_config_options); i++) {
        opt = &kn_config_options[i];
        printf("  --%-22s %s\n  %-24s   %s\n", opt->name, opt->env, "",
               opt->help);
    }

    printf("\n  --config FILE            KN_CONFIG\n"
           "  --help, --version\n\n"
           "Durations: 500ms, 10s, 2m, 1h (a bare number is seconds).  "
           "Sizes: 65536, 64k, 4m.\n"
           "Exit status: 0 after SIGTERM/SIGINT, 1 on a runtime failure, "
           "2 on a bad setting.\n");
}


static const kn_config_option_t *
kn_config_find(const char *name, size_t len)
{
    size_t  i;

    for (i = 0; i < KN_NELEMS(kn_config_options); i++) {
        if (strlen(kn_config_options[i].name) == len
            && strncmp(kn_config_options[i].name, name, len) == 0)
        {
            return &kn_config_options[i];
        }
    }

    return NULL;
}


static kn_rc
kn_config_set(kn_config_t *cfg, const kn_config_option_t *opt,
    const char *value, const char *where, char *err, size_t err_size)
{
    char            *field;
    uint64_t         n, mult;
    const char      *suffix;
    kn_log_level_e   level;

    field = (char *) cfg + opt->offset;

    switch (opt->type) {

    case KN_OPT_STRING:
        if (strlen(value) >= opt->size) {
            kn_config_error(err, err_size, "%s: longer than %zu characters",
                            where, opt->size - 1);
            return KN_ERROR;
        }

        strcpy(field, value);
        return KN_OK;

    case KN_OPT_LOG_LEVEL:
        if (kn_log_level_parse(value, &level) != KN_OK) {
            kn_config_error(err, err_size, "%s: \"%s\" is not one of error, "
                            "warn, info, debug", where, value);
            return KN_ERROR;
        }

        *(kn_log_level_e *) field = level;
        return KN_OK;

    case KN_OPT_DURATION:
        if (kn_config_number(value, &n, &suffix) != KN_OK) {
            goto invalid;
        }

        if (strcmp(suffix, "ms") == 0) {
            mult = 1;

        } else if (suffix[0] == '\0' || strcmp(suffix, "s") == 0) {
            mult = 1000;

        } else if (strcmp(suffix, "m") == 0) {
            mult = 60 * 1000;

        } else if (strcmp(suffix, "h") == 0) {
            mult = 3600 * 1000;

        } else {
            goto invalid;
        }

        if (n > opt->max / mult + 1 || n * mult < opt->min
            || n * mult > opt->max)
        {
            kn_config_error(err, err_size, "%s: \"%s\" is out of range "
                            "(%llums to %llums)", where, value,
                            (unsigned long long) opt->min,
                            (unsigned long long) opt->max);
            return KN_ERROR;
        }

        *(uint64_t *) field = n * mult;
        return KN_OK;

    case KN_OPT_SIZE:
        if (kn_config_number(value, &n, &suffix) != KN_OK) {
            goto invalid;
        }

        if (suffix[0] == '\0') {
            mult = 1;

        } else if (strcmp(suffix, "k") == 0 || strcmp(suffix, "K") == 0) {
            mult = 1024;

        } else if (strcmp(suffix, "m") == 0 || strcmp(suffix, "M") == 0) {
            mult = 1024 * 1024;

        } else {
            goto invalid;
        }

        if (n > opt->max / mult + 1 || n * mult < opt->min
            || n * mult > opt->max)
        {
            kn_config_error(err, err_size, "%s: \"%s\" is out of range "
                            "(%llu to %llu)", where, value,
                            (unsigned long long) opt->min,
                            (unsigned long long) opt->max);
            return KN_ERROR;
        }

        *(size_t *) field = (size_t) (n * mult);
        return KN_OK;
    }

invalid:

    kn_config_error(err, err_size, "%s: \"%s\" is not a valid %s", where,
                    value, opt->type == KN_OPT_DURATION
                           ? "duration (e.g. 500ms, 10s, 2m)"
                           : "size (e.g. 65536, 64k, 4m)");
    return KN_ERROR;
}


/* digits, then a suffix of letters only */

static kn_rc
kn_config_number(const char *value, uint64_t *n, const char **suffix)
{
    const char  *p;

    *n = 0;

    for (p = value; *p >= '0' && *p <= '9'; p++) {
        if (*n > (UINT64_MAX - 9) / 10) {
            return KN_ERROR;
        }

        *n = *n * 10 + (uint64_t) (*p - '0');
    }

    if (p == value) {
        return KN_ERROR;
    }

    *suffix = p;

    for ( ; *p; p++) {
        if (!isalpha((unsigned char) *p)) {
            return KN_ERROR;
        }
    }

    return KN_OK;
}


static kn_rc
kn_config_file(kn_config_t *cfg, const char *path, char *err, size_t err_size)
{
    int                        lineno;
    char                       line[KN_CONFIG_LINE_MAX], where[PATH_MAX + 32];
    char                      *p, *key, *value;
    FILE                      *f;
    long                       size;
    const kn_config_option_t  *opt;

    f = fopen(path, "r");
    if (f == NULL) {
        kn_config_error(err, err_size, "cannot open the configuration file "
                        "\"%s\": %s", path, strerror(errno));
        return KN_ERROR;
    }

    if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) > KN_CONFIG_FILE_MAX) {
        fclose(f);
        kn_config_error(err, err_size, "the configuration file \"%s\" is "
                        "larger than %d bytes", path, KN_CONFIG_FILE_MAX);
        return KN_ERROR;
    }

    rewind(f);
    lineno = 0;

    while (fgets(line, sizeof(line), f) != NULL) {
        lineno++;

        if (strchr(line, '\n') == NULL && !feof(f)) {
            fclose(f);
            kn_config_error(err, err_size, "%s:%d: line longer than %d "
                            "characters", path, lineno, KN_CONFIG_LINE_MAX - 2);
            return KN_ERROR;
        }

        p = kn_config_trim(line);

        if (*p == '\0' || *p == '#') {
            continue;
        }

        value = strchr(p, '=');
        if (value == NULL) {
            fclose(f);
            kn_config_error(err, err_size, "%s:%d: expected \"name = value\"",
                            path, lineno);
            return KN_ERROR;
        }

        *value++ = '\0';
        key = kn_config_trim(p);
        value = kn_config_trim(value);

        opt = kn_config_find(key, strlen(key));
        if (opt == NULL) {
            fclose(f);
            kn_config_error(err, err_size, "%s:%d: unknown setting \"%s\"",
                            path, lineno, key);
            return KN_ERROR;
        }

        snprintf(where, sizeof(where), "%s:%d: %s", path, lineno, key);

        if (kn_config_set(cfg, opt, value, where, err, err_size) != KN_OK) {
            fclose(f);
            return KN_ERROR;
        }
    }

    fclose(f);

    return KN_OK;
}


static kn_rc
kn_config_validate(kn_config_t *cfg, char *err, size_t err_size)
{
    size_t       i, len;
    const char  *env;

    if (cfg->join_dir[0] && kn_join_load(cfg, err, err_size) != KN_OK) {
        return KN_ERROR;
    }

    if (cfg->manager_url[0] == '\0') {
        kn_config_error(err, err_size, "the Manager URL is missing: "
                        "--manager-url or KN_MANAGER_URL");
        return KN_ERROR;
    }

    /* the gRPC path is appended: no trailing slash */
    if (kn_config_url("manager-url", cfg->manager_url, err, err_size)
        != KN_OK)
    {
        return KN_ERROR;
    }

    if (cfg->cluster[0] == '\0') {
        kn_config_error(err, err_size, "the cluster name is missing: "
                        "--cluster or KN_CLUSTER");
        return KN_ERROR;
    }

    len = strlen(cfg->cluster);

    for (i = 0; i < len; i++) {
        if (!((cfg->cluster[i] >= 'a' && cfg->cluster[i] <= 'z')
              || (cfg->cluster[i] >= '0' && cfg->cluster[i] <= '9')
              || (cfg->cluster[i] == '-' && i > 0 && i < len - 1)))
        {
            kn_config_error(err, err_size, "--cluster \"%s\": not a DNS "
                            "label (lowercase letters, digits and inner "
                            "dashes, at most 63)", cfg->cluster);
            return KN_ERROR;
        }
    }

    if (kn_config_identity(cfg, err, err_size) != KN_OK) {
        return KN_ERROR;
    }

    if (cfg->manager_ca[0] && access(cfg->manager_ca, R_OK) != 0) {
        kn_config_error(err, err_size, "--manager-ca \"%s\": %s",
                        cfg->manager_ca, strerror(errno));
        return KN_ERROR;
    }

    if (cfg->reconnect_min_ms > cfg->reconnect_max_ms) {
        kn_config_error(err, err_size, "--reconnect-min (%llums) is larger "
                        "than --reconnect-max (%llums)",
                        (unsigned long long) cfg->reconnect_min_ms,
                        (unsigned long long) cfg->reconnect_max_ms);
        return KN_ERROR;
    }

    if (cfg->send_queue_bytes < cfg->max_message + 5) {
        kn_config_error(err, err_size, "--send-queue-bytes (%zu) must hold "
                        "one message of --max-message (%zu) and its framing",
                        cfg->send_queue_bytes, cfg->max_message);
        return KN_ERROR;
    }

    if (cfg->usage_window_ms % 1000 != 0) {
        kn_config_error(err, err_size, "--usage-window (%llums) must be "
                        "whole seconds: reports carry their window in "
                        "seconds",
                        (unsigned long long) cfg->usage_window_ms);
        return KN_ERROR;
    }

    if (cfg->tenant_token_renew_before_ms >= cfg->tenant_token_ttl_ms) {
        kn_config_error(err, err_size, "--tenant-token-renew-before "
                        "(%llums) must be less than --tenant-token-ttl "
                        "(%llums)",
                        (unsigned long long) cfg->tenant_token_renew_before_ms,
                        (unsigned long long) cfg->tenant_token_ttl_ms);
        return KN_ERROR;
    }

    if (cfg->tenant_kubeconfig_server[0]
        && kn_config_url("tenant-kubeconfig-server",
                         cfg->tenant_kubeconfig_server, err, err_size)
           != KN_OK)
    {
        return KN_ERROR;
    }

    if (cfg->kubeconfig[0]) {
        if (access(cfg->kubeconfig, R_OK) != 0) {
            kn_config_error(err, err_size, "--kubeconfig \"%s\": %s",
                            cfg->kubeconfig, strerror(errno));
            return KN_ERROR;
        }

        cfg->kube_mode = KN_KUBE_KUBECONFIG;

    } else if ((env = getenv("KUBERNETES_SERVICE_HOST")) != NULL && env[0]) {
        if (strlen(env) >= sizeof(cfg->kube_host)) {
            kn_config_error(err, err_size, "KUBERNETES_SERVICE_HOST is "
                            "too long");
            return KN_ERROR;
        }

        strcpy(cfg->kube_host, env);

        env = getenv("KUBERNETES_SERVICE_PORT");
        if (env == NULL || env[0] == '\0') {
            env = "443";
        }

        if (strlen(env) >= sizeof(cfg->kube_port)
            || strspn(env, "0123456789") != strlen(env))
        {
            kn_config_error(err, err_size, "KUBERNETES_SERVICE_PORT \"%s\" "
                            "is not a port", env);
            return KN_ERROR;
        }

        strcpy(cfg->kube_port, env);
        cfg->kube_mode = KN_KUBE_IN_CLUSTER;

    } else {
        cfg->kube_mode = KN_KUBE_NONE;
    }

    if (cfg->identity_secret[0] && cfg->kube_mode == KN_KUBE_NONE) {
        kn_config_error(err, err_size, "--identity-secret needs Kubernetes "
                        "(--kubeconfig, or running in a cluster)");
        return KN_ERROR;
    }

    return KN_OK;
}


/*
 * How the Operator proves who it is: a client certificate (an identity,
 * registered with the join directory's token when there is none yet), the
 * only credential the Manager's gateway takes.
 */

static kn_rc
kn_config_identity(kn_config_t *cfg, char *err, size_t err_size)
{
    const char  *slash;

    if (cfg->identity_dir[0] && cfg->identity_secret[0]) {
        kn_config_error(err, err_size, "--identity-dir and --identity-secret "
                        "exclude each other");
        return KN_ERROR;
    }

    if (cfg->identity_secret[0]) {
        slash = strchr(cfg->identity_secret, '/');

        if (slash == NULL || slash == cfg->identity_secret
            || slash[1] == '\0' || strchr(slash + 1, '/') != NULL)
        {
            kn_config_error(err, err_size, "--identity-secret \"%s\": "
                            "expected NAMESPACE/NAME", cfg->identity_secret);
            return KN_ERROR;
        }
    }

    if (cfg->identity_dir[0] || cfg->identity_secret[0]) {
        if (strncmp(cfg->manager_url, "https://", 8) != 0) {
            kn_config_error(err, err_size, "an identity (client certificate) "
                            "needs an https:// Manager URL");
            return KN_ERROR;
        }

        return KN_OK;
    }

    if (cfg->join_dir[0]) {
        kn_config_error(err, err_size, "--join-dir needs a place to keep the "
                        "identity: --identity-dir or --identity-secret");
        return KN_ERROR;
    }

    kn_config_error(err, err_size, "no identity: --identity-dir or "
                    "--identity-secret (with --join-dir to register one)");
    return KN_ERROR;
}


/* an http:// or https:// URL with a host; trailing slashes removed */

static kn_rc
kn_config_url(const char *name, char *url, char *err, size_t err_size)
{
    size_t       i, len;
    const char  *host;

    if (strncmp(url, "http://", 7) == 0) {
        host = url + 7;

    } else if (strncmp(url, "https://", 8) == 0) {
        host = url + 8;

    } else {
        kn_config_error(err, err_size, "--%s \"%s\": must start with "
                        "http:// or https://", name, url);
        return KN_ERROR;
    }

    for (i = 0; url[i]; i++) {
        if ((unsigned char) url[i] <= ' ' || url[i] == 0x7f) {
            kn_config_error(err, err_size, "--%s: spaces and control "
                            "characters are not allowed", name);
            return KN_ERROR;
        }
    }

    if (host[0] == '\0' || host[0] == '/') {
        kn_config_error(err, err_size, "--%s \"%s\": no host", name, url);
        return KN_ERROR;
    }

    len = strlen(url);
    while (len && url[len - 1] == '/') {
        url[--len] = '\0';
    }

    return KN_OK;
}


static char *
kn_config_trim(char *s)
{
    size_t  len;

    while (*s && isspace((unsigned char) *s)) {
        s++;
    }

    len = strlen(s);

    while (len && isspace((unsigned char) s[len - 1])) {
        s[--len] = '\0';
    }

    return s;
}


static void
kn_config_error(char *err, size_t err_size, const char *fmt, ...)
{
    va_list  args;

    va_start(args, fmt);
    vsnprintf(err, err_size, fmt, args);
    va_end(args);
}
