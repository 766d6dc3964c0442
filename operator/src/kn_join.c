/*
 * The join directory (see kn_join.h).
 */

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kn_join.h"
#include "kn_kubeconfig.h"


static kn_rc kn_join_value(const char *dir, const char *name, char *buf,
    size_t size, char *err, size_t err_size);
static void kn_join_error(char *err, size_t err_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));


kn_rc
kn_join_load(kn_config_t *cfg, char *err, size_t err_size)
{
    int    n;
    char  *token;

    if (kn_join_value(cfg->join_dir, "cluster", cfg->cluster,
                      sizeof(cfg->cluster), err, err_size) != KN_OK
        || kn_join_value(cfg->join_dir, "gateway-url", cfg->manager_url,
                         sizeof(cfg->manager_url), err, err_size) != KN_OK
        || kn_join_value(cfg->join_dir, "register-url", cfg->register_url,
                         sizeof(cfg->register_url), err, err_size) != KN_OK)
    {
        return KN_ERROR;
    }

    n = snprintf(cfg->manager_ca, sizeof(cfg->manager_ca), "%s/ca.crt",
                 cfg->join_dir);

    if (n < 0 || (size_t) n >= sizeof(cfg->manager_ca)) {
        kn_join_error(err, err_size, "--join-dir: the path is too long");
        return KN_ERROR;
    }

    if (access(cfg->manager_ca, R_OK) != 0) {
        kn_join_error(err, err_size, "--join-dir: \"%s\": %s",
                      cfg->manager_ca, strerror(errno));
        return KN_ERROR;
    }

    /* present now, though only read when registering */
    token = kn_join_token(cfg->join_dir, err, err_size);
    if (token == NULL) {
        return KN_ERROR;
    }

    explicit_bzero(token, strlen(token));
    free(token);

    if (strncmp(cfg->manager_url, "https://", 8) != 0) {
        kn_join_error(err, err_size, "--join-dir: gateway-url must be "
                      "https:// (the identity is a client certificate)");
        return KN_ERROR;
    }

    /* http:// is the Manager's choice (a TLS-terminating proxy, a test) */
    if (strncmp(cfg->register_url, "https://", 8) != 0
        && strncmp(cfg->register_url, "http://", 7) != 0)
    {
        kn_join_error(err, err_size, "--join-dir: register-url must be "
                      "http:// or https://");
        return KN_ERROR;
    }

    return KN_OK;
}


char *
kn_join_token(const char *dir, char *err, size_t err_size)
{
    char  path[PATH_MAX], why[512], *token;

    snprintf(path, sizeof(path), "%s/join-token", dir);

    token = kn_kubeconfig_read_token(path, why, sizeof(why));
    if (token == NULL) {
        kn_join_error(err, err_size, "--join-dir: %s", why);
    }

    return token;
}


/* one line of printable ASCII */

static kn_rc
kn_join_value(const char *dir, const char *name, char *buf, size_t size,
    char *err, size_t err_size)
{
    char    path[PATH_MAX], why[512], *value;
    size_t  len;

    snprintf(path, sizeof(path), "%s/%s", dir, name);

    value = kn_kubeconfig_read_token(path, why, sizeof(why));
    if (value == NULL) {
        kn_join_error(err, err_size, "--join-dir: %s", why);
        return KN_ERROR;
    }

    len = strlen(value);

    if (len >= size) {
        kn_join_error(err, err_size, "--join-dir: %s: longer than %zu "
                      "characters", path, size - 1);
        free(value);
        return KN_ERROR;
    }

    memcpy(buf, value, len + 1);
    free(value);

    return KN_OK;
}


static void
kn_join_error(char *err, size_t err_size, const char *fmt, ...)
{
    va_list  args;

    va_start(args, fmt);
    vsnprintf(err, err_size, fmt, args);
    va_end(args);
}
