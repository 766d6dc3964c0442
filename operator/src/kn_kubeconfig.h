/*
 * Where the Kubernetes API is and how to authenticate to it: from a
 * kubeconfig file (out of cluster) or from the pod's service account (in
 * cluster).  The result is plain data that kn_kube turns into TLS options
 * and an Authorization header.
 *
 * Supported kubeconfig fields: clusters[].cluster.{server,
 * certificate-authority, certificate-authority-data,
 * insecure-skip-tls-verify}, users[].user.{client-certificate,
 * client-certificate-data, client-key, client-key-data, token, tokenFile},
 * contexts[].context.{cluster, user, namespace}, current-context.  Relative
 * file paths are relative to the kubeconfig's directory.  Exec and
 * auth-provider plugins are refused with a clear error.
 */

#ifndef KN_KUBECONFIG_H
#define KN_KUBECONFIG_H

#include <stddef.h>

#include "kn_core.h"

#define KN_KUBECONFIG_MAX_FILE   (1024 * 1024)   /* kubeconfig, PEM files */
#define KN_KUBECONFIG_MAX_TOKEN  (64 * 1024)

#define KN_KUBECONFIG_SA_DIR  "/var/run/secrets/kubernetes.io/serviceaccount"

typedef struct {
    char    *server;            /* "https://host:port", no trailing slash */
    char    *namespace;         /* the context's (pod's) namespace, or NULL */

    char    *ca_pem;            /* CA bundle, PEM; NULL: system CAs */
    size_t   ca_pem_len;
    int      insecure;          /* insecure-skip-tls-verify */

    char    *cert_pem;          /* client certificate and key, PEM, or NULL */
    size_t   cert_pem_len;
    char    *key_pem;
    size_t   key_pem_len;

    char    *token;             /* a fixed bearer token, or NULL */
    char    *token_file;        /* a bearer token re-read periodically */
} kn_kubeconfig_t;


/*
 * Both return KN_OK, or KN_ERROR with a NUL-terminated message in err
 * (which may be NULL when err_size is 0).  On error *cfg holds nothing to
 * free.
 *
 * context: the context to use, NULL for current-context.
 * In cluster: host and port of the API server, NULL (or "") for
 * $KUBERNETES_SERVICE_HOST and $KUBERNETES_SERVICE_PORT; sa_dir the
 * service-account directory (token, ca.crt, namespace), NULL (or "") for
 * KN_KUBECONFIG_SA_DIR.
 */
kn_rc kn_kubeconfig_load(kn_kubeconfig_t *cfg, const char *path,
    const char *context, char *err, size_t err_size);

/*
 * The kubeconfig text itself (what kn_kubeconfig_load() does after reading
 * the file): path names it in messages; files it names are relative to
 * dir, and refused when dir is NULL (the fuzzer's case).
 */
kn_rc kn_kubeconfig_parse(kn_kubeconfig_t *cfg, const char *text, size_t len,
    const char *path, const char *dir, const char *context, char *err,
    size_t err_size);
kn_rc kn_kubeconfig_in_cluster(kn_kubeconfig_t *cfg, const char *host,
    const char *port, const char *sa_dir, char *err, size_t err_size);

/* Out of cluster when a path is given (or $KUBECONFIG is set), else in. */
kn_rc kn_kubeconfig_auto(kn_kubeconfig_t *cfg, const char *path,
    char *err, size_t err_size);

void kn_kubeconfig_free(kn_kubeconfig_t *cfg);

/*
 * Reads a whole file of at most max bytes into a NUL-terminated buffer
 * (malloc'd, *len without the NUL).  Returns NULL with a message in err.
 */
char *kn_kubeconfig_read_file(const char *path, size_t max, size_t *len,
    char *err, size_t err_size);

/*
 * Reads a token file: the first line, surrounding whitespace trimmed.
 * Returns a malloc'd string, or NULL with a message in err (an empty token
 * is an error).
 */
char *kn_kubeconfig_read_token(const char *path, char *err, size_t err_size);

#endif /* KN_KUBECONFIG_H */
