/*
 * Configuration-time parsing of the PostgreSQL conninfo (see the header).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <netdb.h>

#include "ngx_kubenova_pg_conninfo.h"


#define NGX_KUBENOVA_PG_APPLICATION_NAME  "kubenova-manager"


static char *ngx_kubenova_pg_resolve_hosts(ngx_conf_t *cf, const char *hosts,
    const char **hostaddr);
static char *ngx_kubenova_pg_strdup(ngx_pool_t *pool, const char *s);
static ngx_int_t ngx_kubenova_pg_resolve_one(ngx_conf_t *cf, ngx_str_t *host,
    u_char *buf, size_t size, size_t *len);


char *
ngx_kubenova_pg_conninfo_parse(ngx_conf_t *cf, ngx_str_t *conninfo,
    ngx_kubenova_pg_conf_t *pc)
{
    char              *err, *rv;
    size_t             len;
    const char        *hosts, *hostaddr;
    ngx_uint_t         n, i, have_app;
    PQconninfoOption  *opts, *o;

    err = NULL;
    opts = PQconninfoParse((const char *) conninfo->data, &err);

    if (opts == NULL) {
        len = err ? ngx_strlen(err) : 0;

        while (len && err[len - 1] == '\n') {
            len--;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid PostgreSQL conninfo \"%V\": %*s",
                           conninfo, len, err ? err : "");
        if (err) {
            PQfreemem(err);
        }
        return NGX_CONF_ERROR;
    }

    n = 0;
    for (o = opts; o->keyword; o++) {
        n++;
    }

    /* room for every option, hostaddr, application_name and the NULL end */

    pc->keywords = ngx_pcalloc(cf->pool, (n + 3) * sizeof(char *));
    pc->values = ngx_pcalloc(cf->pool, (n + 3) * sizeof(char *));

    if (pc->keywords == NULL || pc->values == NULL) {
        PQconninfoFree(opts);
        return NGX_CONF_ERROR;
    }

    i = 0;
    have_app = 0;
    hosts = NULL;
    hostaddr = NULL;
    rv = NGX_CONF_OK;

    for (o = opts; o->keyword; o++) {
        if (o->val == NULL || o->val[0] == '\0') {
            continue;
        }

        pc->keywords[i] = ngx_kubenova_pg_strdup(cf->pool, o->keyword);
        pc->values[i] = ngx_kubenova_pg_strdup(cf->pool, o->val);

        if (pc->keywords[i] == NULL || pc->values[i] == NULL) {
            rv = NGX_CONF_ERROR;
            goto done;
        }

        if (ngx_strcmp(o->keyword, "host") == 0) {
            hosts = pc->values[i];

        } else if (ngx_strcmp(o->keyword, "hostaddr") == 0) {
            hostaddr = pc->values[i];

        } else if (ngx_strcmp(o->keyword, "application_name") == 0) {
            have_app = 1;
        }

        i++;
    }

    if (hosts && hostaddr == NULL) {
        rv = ngx_kubenova_pg_resolve_hosts(cf, hosts, &hostaddr);
        if (rv != NGX_CONF_OK) {
            goto done;
        }

        if (hostaddr) {
            pc->keywords[i] = "hostaddr";
            pc->values[i] = hostaddr;
            i++;
        }
    }

    if (!have_app) {
        pc->keywords[i] = "application_name";
        pc->values[i] = NGX_KUBENOVA_PG_APPLICATION_NAME;
        i++;
    }

    pc->keywords[i] = NULL;
    pc->values[i] = NULL;

    pc->conninfo = *conninfo;

done:

    PQconninfoFree(opts);
    return rv;
}


/*
 * "host" may be a comma-separated list; libpq then wants a "hostaddr" list
 * of the same length, where an empty entry means "no address needed" for a
 * Unix-domain socket directory.
 */

static char *
ngx_kubenova_pg_resolve_hosts(ngx_conf_t *cf, const char *hosts,
    const char **hostaddr)
{
    u_char      *out, *p;
    size_t       len, size;
    ngx_str_t    host;
    ngx_uint_t   any;
    const char  *s, *comma;

    size = (ngx_strlen(hosts) + 1) * (NGX_SOCKADDR_STRLEN + 1) + 1;

    out = ngx_pnalloc(cf->pool, size);
    if (out == NULL) {
        return NGX_CONF_ERROR;
    }

    p = out;
    any = 0;

    for (s = hosts; ; s = comma + 1) {
        comma = strchr(s, ',');

        host.data = (u_char *) s;
        host.len = comma ? (size_t) (comma - s) : ngx_strlen(s);

        if (p != out) {
            *p++ = ',';
        }

        if (host.len && host.data[0] != '/' && host.data[0] != '@') {
            if (ngx_kubenova_pg_resolve_one(cf, &host, p,
                                            size - (p - out) - 1, &len)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            p += len;
            any = 1;
        }

        if (comma == NULL) {
            break;
        }
    }

    *p = '\0';

    *hostaddr = any ? (const char *) out : NULL;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_kubenova_pg_resolve_one(ngx_conf_t *cf, ngx_str_t *host, u_char *buf,
    size_t size, size_t *len)
{
    int               rc;
    u_char           *name;
    struct addrinfo   hints, *res;

    name = ngx_pnalloc(cf->temp_pool, host->len + 1);
    if (name == NULL) {
        return NGX_ERROR;
    }

    ngx_cpystrn(name, host->data, host->len + 1);

    /* numeric addresses come back unchanged, names are looked up once here */

    ngx_memzero(&hints, sizeof(struct addrinfo));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;

    rc = getaddrinfo((char *) name, NULL, &hints, &res);

    if (rc != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cannot resolve PostgreSQL host \"%V\": %s",
                           host, gai_strerror(rc));
        return NGX_ERROR;
    }

    *len = ngx_sock_ntop(res->ai_addr, res->ai_addrlen, buf, size, 0);

    freeaddrinfo(res);

    if (*len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cannot print the address of PostgreSQL host "
                           "\"%V\"", host);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static char *
ngx_kubenova_pg_strdup(ngx_pool_t *pool, const char *s)
{
    char    *p;
    size_t   len;

    len = ngx_strlen(s) + 1;

    p = ngx_pnalloc(pool, len);
    if (p == NULL) {
        return NULL;
    }

    ngx_memcpy(p, s, len);

    return p;
}
