/*
 * Kubeconfig files and in-cluster service-account configuration.
 *
 * The YAML is turned into jansson values by the Manager's strict, bounded
 * converter (ngx_kubenova_yaml.c, free of nginx headers), so there is one
 * YAML reader in the project.
 */

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "ngx_kubenova_yaml.h"
#include "kn_kubeconfig.h"


static void kn_kubeconfig_error(char *err, size_t err_size,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static json_t *kn_kubeconfig_named(json_t *root, const char *list,
    const char *item, const char *name);
static const char *kn_kubeconfig_string(json_t *obj, const char *key,
    int *bad);
static kn_rc kn_kubeconfig_pem(const char *dir, json_t *obj,
    const char *file_key, const char *data_key, char **pem, size_t *pem_len,
    char *err, size_t err_size);
static char *kn_kubeconfig_path(const char *dir, const char *path);
static kn_rc kn_kubeconfig_base64(const char *in, char **out, size_t *out_len);


static void
kn_kubeconfig_error(char *err, size_t err_size, const char *fmt, ...)
{
    va_list  ap;

    if (err == NULL || err_size == 0) {
        return;
    }

    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
}


char *
kn_kubeconfig_read_file(const char *path, size_t max, size_t *len, char *err,
    size_t err_size)
{
    FILE    *f;
    char    *buf;
    size_t   n;

    f = fopen(path, "rb");
    if (f == NULL) {
        kn_kubeconfig_error(err, err_size, "%s: %s", path, strerror(errno));
        return NULL;
    }

    buf = malloc(max + 1);
    if (buf == NULL) {
        fclose(f);
        kn_kubeconfig_error(err, err_size, "%s: out of memory", path);
        return NULL;
    }

    /* one byte more than allowed tells "too large" from "exactly max" */
    n = fread(buf, 1, max + 1, f);

    if (ferror(f)) {
        kn_kubeconfig_error(err, err_size, "%s: read error", path);
        goto failed;
    }

    if (n > max) {
        kn_kubeconfig_error(err, err_size, "%s: larger than %zu bytes",
                            path, max);
        goto failed;
    }

    fclose(f);
    buf[n] = '\0';
    if (len != NULL) {
        *len = n;
    }

    return buf;

failed:

    fclose(f);
    free(buf);
    return NULL;
}


char *
kn_kubeconfig_read_token(const char *path, char *err, size_t err_size)
{
    char    *buf, *p, *end;
    size_t   len;

    buf = kn_kubeconfig_read_file(path, KN_KUBECONFIG_MAX_TOKEN, &len,
                                  err, err_size);
    if (buf == NULL) {
        return NULL;
    }

    p = buf;
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') {
        p++;
    }

    end = p;
    while (*end != '\0' && *end != '\r' && *end != '\n') {
        end++;
    }
    while (end > p && (end[-1] == ' ' || end[-1] == '\t')) {
        end--;
    }

    if (end == p) {
        kn_kubeconfig_error(err, err_size, "%s: empty token", path);
        free(buf);
        return NULL;
    }

    /* a token goes into an HTTP header: no control characters */
    for (char *c = p; c < end; c++) {
        if ((unsigned char) *c < 0x20 || *c == 0x7f) {
            kn_kubeconfig_error(err, err_size,
                                "%s: control character in token", path);
            free(buf);
            return NULL;
        }
    }

    len = (size_t) (end - p);
    memmove(buf, p, len);
    buf[len] = '\0';

    return buf;
}


/* the entry of a named list ("clusters", "cluster", name) */
static json_t *
kn_kubeconfig_named(json_t *root, const char *list, const char *item,
    const char *name)
{
    size_t   i;
    json_t  *entries, *entry, *n;

    entries = json_object_get(root, list);
    if (!json_is_array(entries)) {
        return NULL;
    }

    json_array_foreach(entries, i, entry) {
        n = json_object_get(entry, "name");
        if (json_is_string(n) && strcmp(json_string_value(n), name) == 0) {
            entry = json_object_get(entry, item);
            return json_is_object(entry) ? entry : NULL;
        }
    }

    return NULL;
}


/* a string field, NULL when absent or null; *bad set when another type */
static const char *
kn_kubeconfig_string(json_t *obj, const char *key, int *bad)
{
    json_t  *v;

    v = json_object_get(obj, key);
    if (v == NULL || json_is_null(v)) {
        return NULL;
    }

    if (!json_is_string(v)) {
        *bad = 1;
        return NULL;
    }

    return json_string_value(v)[0] != '\0' ? json_string_value(v) : NULL;
}


static char *
kn_kubeconfig_path(const char *dir, const char *path)
{
    char    *full;
    size_t   n;

    if (path[0] == '/' || dir == NULL) {
        return strdup(path);
    }

    n = strlen(dir) + 1 + strlen(path) + 1;
    full = malloc(n);
    if (full != NULL) {
        snprintf(full, n, "%s/%s", dir, path);
    }

    return full;
}


/* PEM from a "-data" field (base64) or from a file named by another field */
static kn_rc
kn_kubeconfig_pem(const char *dir, json_t *obj, const char *file_key,
    const char *data_key, char **pem, size_t *pem_len, char *err,
    size_t err_size)
{
    int          bad;
    char        *path;
    const char  *file, *data;

    bad = 0;
    data = kn_kubeconfig_string(obj, data_key, &bad);
    file = kn_kubeconfig_string(obj, file_key, &bad);

    if (bad) {
        kn_kubeconfig_error(err, err_size, "%s/%s: expected a string",
                            file_key, data_key);
        return KN_ERROR;
    }

    if (data != NULL) {
        if (kn_kubeconfig_base64(data, pem, pem_len) != KN_OK) {
            kn_kubeconfig_error(err, err_size, "%s: invalid base64", data_key);
            return KN_ERROR;
        }
        return KN_OK;
    }

    if (file == NULL) {
        return KN_OK;
    }

    if (dir == NULL) {
        kn_kubeconfig_error(err, err_size, "%s: files are not allowed here",
                            file_key);
        return KN_ERROR;
    }

    path = kn_kubeconfig_path(dir, file);
    if (path == NULL) {
        kn_kubeconfig_error(err, err_size, "out of memory");
        return KN_ERROR;
    }

    *pem = kn_kubeconfig_read_file(path, KN_KUBECONFIG_MAX_FILE, pem_len,
                                   err, err_size);
    free(path);

    return *pem != NULL ? KN_OK : KN_ERROR;
}


kn_rc
kn_kubeconfig_load(kn_kubeconfig_t *cfg, const char *path, const char *context,
    char *err, size_t err_size)
{
    kn_rc    rc;
    char    *text, *dir, *slash;
    size_t   len;

    memset(cfg, 0, sizeof(*cfg));

    text = kn_kubeconfig_read_file(path, KN_KUBECONFIG_MAX_FILE, &len,
                                   err, err_size);
    if (text == NULL) {
        return KN_ERROR;
    }

    /* files named in it are relative to its directory */
    dir = strdup(path);
    if (dir == NULL) {
        free(text);
        kn_kubeconfig_error(err, err_size, "out of memory");
        return KN_ERROR;
    }
    slash = strrchr(dir, '/');
    if (slash == NULL) {
        snprintf(dir, strlen(dir) + 1, ".");
    } else {
        slash[slash == dir ? 1 : 0] = '\0';
    }

    rc = kn_kubeconfig_parse(cfg, text, len, path, dir, context, err,
                             err_size);

    free(text);
    free(dir);

    return rc;
}


kn_rc
kn_kubeconfig_parse(kn_kubeconfig_t *cfg, const char *text, size_t len,
    const char *path, const char *dir, const char *context, char *err,
    size_t err_size)
{
    int          bad;
    json_t      *root, *ctx, *cluster, *user, *v;
    const char  *name, *cluster_name, *user_name, *s;
    char         yerr[256];

    memset(cfg, 0, sizeof(*cfg));
    bad = 0;

    root = ngx_kubenova_yaml_to_json((const unsigned char *) text, len,
                                     yerr, sizeof(yerr));
    if (root == NULL) {
        kn_kubeconfig_error(err, err_size, "%s: %s", path, yerr);
        return KN_ERROR;
    }

    if (!json_is_object(root)) {
        kn_kubeconfig_error(err, err_size, "%s: not a kubeconfig", path);
        goto failed;
    }

    name = context;
    if (name == NULL) {
        name = kn_kubeconfig_string(root, "current-context", &bad);
    }
    if (name == NULL) {
        kn_kubeconfig_error(err, err_size, "%s: no current-context", path);
        goto failed;
    }

    ctx = kn_kubeconfig_named(root, "contexts", "context", name);
    if (ctx == NULL) {
        kn_kubeconfig_error(err, err_size, "%s: context \"%s\" not found",
                            path, name);
        goto failed;
    }

    cluster_name = kn_kubeconfig_string(ctx, "cluster", &bad);
    user_name = kn_kubeconfig_string(ctx, "user", &bad);
    s = kn_kubeconfig_string(ctx, "namespace", &bad);
    if (s != NULL && (cfg->namespace = strdup(s)) == NULL) {
        kn_kubeconfig_error(err, err_size, "out of memory");
        goto failed;
    }

    cluster = cluster_name != NULL
              ? kn_kubeconfig_named(root, "clusters", "cluster", cluster_name)
              : NULL;
    if (cluster == NULL) {
        kn_kubeconfig_error(err, err_size, "%s: cluster of context \"%s\" "
                            "not found", path, name);
        goto failed;
    }

    s = kn_kubeconfig_string(cluster, "server", &bad);
    if (s == NULL || strncmp(s, "https://", 8) != 0) {
        kn_kubeconfig_error(err, err_size, "%s: cluster \"%s\": server must "
                            "be an https:// URL", path, cluster_name);
        goto failed;
    }
    cfg->server = strdup(s);
    if (cfg->server == NULL) {
        kn_kubeconfig_error(err, err_size, "out of memory");
        goto failed;
    }
    len = strlen(cfg->server);
    while (len > 8 && cfg->server[len - 1] == '/') {
        cfg->server[--len] = '\0';
    }

    v = json_object_get(cluster, "insecure-skip-tls-verify");
    cfg->insecure = json_is_true(v)
                    || (json_is_string(v)
                        && strcmp(json_string_value(v), "true") == 0);

    if (kn_kubeconfig_pem(dir, cluster, "certificate-authority",
                          "certificate-authority-data",
                          &cfg->ca_pem, &cfg->ca_pem_len, err, err_size)
        != KN_OK)
    {
        goto failed;
    }

    user = user_name != NULL
           ? kn_kubeconfig_named(root, "users", "user", user_name)
           : NULL;

    if (user_name != NULL && user == NULL) {
        kn_kubeconfig_error(err, err_size, "%s: user \"%s\" not found",
                            path, user_name);
        goto failed;
    }

    if (user != NULL) {

        if (json_object_get(user, "exec") != NULL
            || json_object_get(user, "auth-provider") != NULL)
        {
            kn_kubeconfig_error(err, err_size, "%s: user \"%s\": exec and "
                                "auth-provider plugins are not supported",
                                path, user_name);
            goto failed;
        }

        if (kn_kubeconfig_pem(dir, user, "client-certificate",
                              "client-certificate-data", &cfg->cert_pem,
                              &cfg->cert_pem_len, err, err_size) != KN_OK
            || kn_kubeconfig_pem(dir, user, "client-key", "client-key-data",
                                 &cfg->key_pem, &cfg->key_pem_len,
                                 err, err_size) != KN_OK)
        {
            goto failed;
        }

        if ((cfg->cert_pem == NULL) != (cfg->key_pem == NULL)) {
            kn_kubeconfig_error(err, err_size, "%s: user \"%s\": a client "
                                "certificate needs its key and vice versa",
                                path, user_name);
            goto failed;
        }

        s = kn_kubeconfig_string(user, "token", &bad);
        if (s != NULL && (cfg->token = strdup(s)) == NULL) {
            kn_kubeconfig_error(err, err_size, "out of memory");
            goto failed;
        }

        s = kn_kubeconfig_string(user, "tokenFile", &bad);
        if (s != NULL && dir == NULL) {
            kn_kubeconfig_error(err, err_size, "tokenFile: files are not "
                                "allowed here");
            goto failed;
        }
        if (s != NULL && (cfg->token_file = kn_kubeconfig_path(dir, s)) == NULL)
        {
            kn_kubeconfig_error(err, err_size, "out of memory");
            goto failed;
        }
    }

    if (bad) {
        kn_kubeconfig_error(err, err_size, "%s: a field that must be a string "
                            "is not", path);
        goto failed;
    }

    json_decref(root);

    return KN_OK;

failed:

    json_decref(root);
    kn_kubeconfig_free(cfg);

    return KN_ERROR;
}


kn_rc
kn_kubeconfig_in_cluster(kn_kubeconfig_t *cfg, const char *host,
    const char *port, const char *sa_dir, char *err, size_t err_size)
{
    char    *path, *ns;
    size_t   n;

    memset(cfg, 0, sizeof(*cfg));

    if (host == NULL || host[0] == '\0') {
        host = getenv("KUBERNETES_SERVICE_HOST");
    }
    if (port == NULL || port[0] == '\0') {
        port = getenv("KUBERNETES_SERVICE_PORT");
    }

    if (host == NULL || host[0] == '\0' || port == NULL || port[0] == '\0') {
        kn_kubeconfig_error(err, err_size, "not in a cluster: "
                            "no API server host and port given, and "
                            "KUBERNETES_SERVICE_HOST and "
                            "KUBERNETES_SERVICE_PORT are not set");
        return KN_ERROR;
    }

    if (strspn(port, "0123456789") != strlen(port)
        || strcspn(host, "/@?# ") != strlen(host))
    {
        kn_kubeconfig_error(err, err_size, "invalid KUBERNETES_SERVICE_HOST "
                            "or KUBERNETES_SERVICE_PORT");
        return KN_ERROR;
    }

    if (sa_dir == NULL || sa_dir[0] == '\0') {
        sa_dir = KN_KUBECONFIG_SA_DIR;
    }

    n = strlen(host) + strlen(port) + sizeof("https://[]:");
    cfg->server = malloc(n);
    n = strlen(sa_dir) + sizeof("/namespace");
    path = malloc(n);
    if (cfg->server == NULL || path == NULL) {
        free(path);
        kn_kubeconfig_error(err, err_size, "out of memory");
        goto failed;
    }

    /* an IPv6 address goes between brackets in a URL */
    snprintf(cfg->server, strlen(host) + strlen(port) + sizeof("https://[]:"),
             strchr(host, ':') != NULL ? "https://[%s]:%s" : "https://%s:%s",
             host, port);

    snprintf(path, n, "%s/ca.crt", sa_dir);
    cfg->ca_pem = kn_kubeconfig_read_file(path, KN_KUBECONFIG_MAX_FILE,
                                          &cfg->ca_pem_len, err, err_size);
    if (cfg->ca_pem == NULL) {
        free(path);
        goto failed;
    }

    /* the token itself is read (and re-read) by kn_kube */
    snprintf(path, n, "%s/token", sa_dir);
    cfg->token_file = strdup(path);
    if (cfg->token_file == NULL) {
        free(path);
        kn_kubeconfig_error(err, err_size, "out of memory");
        goto failed;
    }

    snprintf(path, n, "%s/namespace", sa_dir);
    ns = kn_kubeconfig_read_token(path, NULL, 0);
    cfg->namespace = ns;          /* optional */
    free(path);

    return KN_OK;

failed:

    kn_kubeconfig_free(cfg);
    return KN_ERROR;
}


kn_rc
kn_kubeconfig_auto(kn_kubeconfig_t *cfg, const char *path, char *err,
    size_t err_size)
{
    const char  *env;

    if (path == NULL) {
        env = getenv("KUBECONFIG");
        /* a KUBECONFIG list: the first file */
        if (env != NULL && env[0] != '\0') {
            char  first[4096];
            size_t n = strcspn(env, ":");

            if (n >= sizeof(first)) {
                kn_kubeconfig_error(err, err_size, "KUBECONFIG too long");
                return KN_ERROR;
            }
            memcpy(first, env, n);
            first[n] = '\0';
            return kn_kubeconfig_load(cfg, first, NULL, err, err_size);
        }
        return kn_kubeconfig_in_cluster(cfg, NULL, NULL, NULL, err, err_size);
    }

    return kn_kubeconfig_load(cfg, path, NULL, err, err_size);
}


void
kn_kubeconfig_free(kn_kubeconfig_t *cfg)
{
    free(cfg->server);
    free(cfg->namespace);
    free(cfg->ca_pem);
    free(cfg->cert_pem);
    free(cfg->key_pem);
    free(cfg->token);
    free(cfg->token_file);
    memset(cfg, 0, sizeof(*cfg));
}


/* standard base64 with padding, whitespace ignored; NUL-terminates *out */
static kn_rc
kn_kubeconfig_base64(const char *in, char **out, size_t *out_len)
{
    int            bits, v;
    char          *buf;
    size_t         n, pad;
    uint32_t       acc;
    unsigned char  c;

    buf = malloc(strlen(in) / 4 * 3 + 4);
    if (buf == NULL) {
        return KN_ERROR;
    }

    n = 0;
    acc = 0;
    bits = 0;
    pad = 0;

    for (; *in != '\0'; in++) {
        c = (unsigned char) *in;

        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            continue;
        }

        if (c == '=') {
            pad++;
            continue;
        }

        if (pad > 0) {          /* data after padding */
            goto invalid;
        }

        if (c >= 'A' && c <= 'Z') {
            v = c - 'A';
        } else if (c >= 'a' && c <= 'z') {
            v = c - 'a' + 26;
        } else if (c >= '0' && c <= '9') {
            v = c - '0' + 52;
        } else if (c == '+') {
            v = 62;
        } else if (c == '/') {
            v = 63;
        } else {
            goto invalid;
        }

        acc = (acc << 6) | (uint32_t) v;
        bits += 6;

        if (bits >= 8) {
            bits -= 8;
            buf[n++] = (char) ((acc >> bits) & 0xff);
        }
    }

    /* 6 leftover bits can never be valid; more than 2 pads neither */
    if (bits >= 6 || pad > 2) {
        goto invalid;
    }

    buf[n] = '\0';
    *out = buf;
    *out_len = n;

    return KN_OK;

invalid:

    free(buf);
    return KN_ERROR;
}
