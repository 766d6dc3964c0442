/*
 * Operational endpoints: /healthz (the worker answers), /readyz (one
 * PostgreSQL round trip through the pool, and the schema is migrated) and
 * /metrics (Prometheus text format).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_kubenova_module.h"
#include "ngx_kubenova_json.h"
#include "ngx_kubenova_http_pg.h"
#include "ngx_kubenova_usage_metrics.h"


static ngx_int_t ngx_kubenova_readyz_done(ngx_http_request_t *r,
    void *data, ngx_int_t rc, PGresult *res);
static ngx_int_t ngx_kubenova_metrics_send(ngx_http_request_t *r,
    ngx_str_t *text);
static ngx_int_t ngx_kubenova_cluster_metrics_done(ngx_http_request_t *r,
    void *data, ngx_int_t rc, PGresult *res);


static const char  ngx_kubenova_readyz_sql[] =
    "SELECT coalesce(max(version), 0) FROM schema_migrations";

/* bounded: /metrics is not the place for more clusters than that */
static const char  ngx_kubenova_cluster_metrics_sql[] =
    "SELECT s.name, (s.state = 'connected')::integer, "
    "(s.state = 'unavailable')::integer, s.seen "
    "FROM (SELECT cl.name, "
    "api.cluster_state(cl, $1::bigint * interval '1 ms') AS state, "
    "extract(epoch FROM cl.last_seen_at)::bigint AS seen "
    "FROM clusters cl ORDER BY cl.name LIMIT 10000) s";


ngx_int_t
ngx_kubenova_only_get(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
        return NGX_DECLINED;
    }

    if (ngx_kubenova_add_header(r, &r->headers_out.headers, "Allow",
                                (u_char *) "GET, HEAD",
                                sizeof("GET, HEAD") - 1)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_kubenova_json_error(r, NGX_HTTP_NOT_ALLOWED,
                                   "method_not_allowed",
                                   "only GET and HEAD are allowed here");
}


ngx_int_t
ngx_kubenova_healthz_handler(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    rc = ngx_kubenova_only_get(r);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    return ngx_kubenova_json_send(r, NGX_HTTP_OK,
                                  json_pack("{s:s}", "status", "alive"));
}


ngx_int_t
ngx_kubenova_metrics_handler(ngx_http_request_t *r)
{
    u_char                         *p;
    ngx_int_t                       rc;
    ngx_str_t                       usage, *text;
    ngx_shm_zone_t                 *zone;
    ngx_kubenova_metrics_t         *m;
    ngx_http_kubenova_main_conf_t  *kmcf;
    u_char                          ms[NGX_INT_T_LEN + 1];
    const char                     *params[1];

    rc = ngx_kubenova_only_get(r);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    m = ngx_http_kubenova_metrics(r);

    text = ngx_palloc(r->pool, sizeof(ngx_str_t));

    if (m == NULL || text == NULL
        || ngx_kubenova_metrics_render(m, r->pool, text) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    zone = ngx_http_kubenova_usage_zone(r);

    if (zone) {
        if (ngx_kubenova_usage_metrics_render(zone, r->pool, &usage)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = ngx_pnalloc(r->pool, text->len + usage.len);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_memcpy(p, text->data, text->len);
        ngx_memcpy(p + text->len, usage.data, usage.len);

        text->data = p;
        text->len += usage.len;
    }

    /* where Operators connect, the clusters' health (from the database) */

    kmcf = ngx_http_get_module_main_conf(r, ngx_http_kubenova_module);

    if (!kmcf->gateway_enabled) {
        return ngx_kubenova_metrics_send(r, text);
    }

    *ngx_sprintf(ms, "%M", kmcf->cluster_unavailable_after) = '\0';
    params[0] = (const char *) ms;

    rc = ngx_kubenova_http_pg_try(r, ngx_kubenova_cluster_metrics_sql, 1,
                                  params, ngx_kubenova_cluster_metrics_done,
                                  text);
    if (rc != NGX_AGAIN) {
        return rc;
    }

    r->main->count++;

    return NGX_DONE;
}


static ngx_int_t
ngx_kubenova_metrics_send(ngx_http_request_t *r, ngx_str_t *text)
{
    static ngx_str_t  type =
        ngx_string("text/plain; version=0.0.4; charset=utf-8");

    return ngx_kubenova_send_body(r, NGX_HTTP_OK, &type, text->data,
                                  text->len);
}


/*
 * Per cluster: connected (1 while its stream is up and it was heard from
 * within kubenova_cluster_unavailable_after), unavailable (silent longer
 * than that), and the time it was last heard from.  Without the database
 * the other figures are served all the same.
 */

static ngx_int_t
ngx_kubenova_cluster_metrics_done(ngx_http_request_t *r, void *data,
    ngx_int_t rc, PGresult *res)
{
    ngx_str_t  *text = data;

    u_char      *p, *last;
    size_t       size, g;
    ngx_int_t    i, n;

    /* in the order of the columns of ngx_kubenova_cluster_metrics_sql */
    static const struct {
        const char  *name;
        const char  *help;
    } gauges[] = {
        { "kubenova_cluster_connected",
          "1 while the cluster's Operator is connected and heard from." },
        { "kubenova_cluster_unavailable",
          "1 when the cluster has been silent longer than "
          "kubenova_cluster_unavailable_after." },
        { "kubenova_cluster_last_heartbeat_seconds",
          "When the cluster was last heard from (Unix time)." }
    };

    if (rc != NGX_OK || PQresultStatus(res) != PGRES_TUPLES_OK) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "kubenova: /metrics without the clusters' health: %s",
                      res ? PQresultErrorMessage(res) : "no database");
        return ngx_kubenova_metrics_send(r, text);
    }

    n = PQntuples(res);

    /* names are DNS labels (63) and times 20 digits: 3 lines of < 160 */

    size = text->len + 1024 + n * 3 * 160;

    p = ngx_pnalloc(r->pool, size);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    last = p + size;

    ngx_memcpy(p, text->data, text->len);
    text->data = p;
    p += text->len;

    for (g = 0; g < sizeof(gauges) / sizeof(gauges[0]); g++) {
        p = ngx_slprintf(p, last, "# HELP %s %s\n# TYPE %s gauge\n",
                         gauges[g].name, gauges[g].help, gauges[g].name);

        for (i = 0; i < n; i++) {
            if (PQgetisnull(res, i, g + 1)) {
                continue;       /* never heard from: no heartbeat time */
            }

            p = ngx_slprintf(p, last, "%s{cluster=\"%s\"} %s\n",
                             gauges[g].name, PQgetvalue(res, i, 0),
                             PQgetvalue(res, i, g + 1));
        }
    }

    text->len = p - text->data;

    return ngx_kubenova_metrics_send(r, text);
}


ngx_int_t
ngx_kubenova_readyz_handler(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    rc = ngx_kubenova_only_get(r);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    rc = ngx_kubenova_http_pg_run(r, ngx_kubenova_readyz_sql, 0, NULL,
                                  ngx_kubenova_readyz_done, NULL);
    if (rc != NGX_AGAIN) {
        return rc;
    }

    r->main->count++;

    return NGX_DONE;
}


static ngx_int_t
ngx_kubenova_readyz_done(ngx_http_request_t *r, void *data, ngx_int_t rc,
    PGresult *res)
{
    char       *sqlstate;
    ngx_int_t   version;

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "kubenova: readiness query failed: %s",
                      PQresultErrorMessage(res));

        /* 42P01: undefined_table, the migrations were never applied */

        if (sqlstate && ngx_strcmp(sqlstate, "42P01") == 0) {
            return ngx_kubenova_json_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                           "schema_missing",
                                           "the database schema is not "
                                           "migrated");
        }

        return ngx_kubenova_json_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                       "database_error",
                                       "the readiness query failed");
    }

    version = ngx_atoi((u_char *) PQgetvalue(res, 0, 0),
                       PQgetlength(res, 0, 0));

    return ngx_kubenova_json_send(r, NGX_HTTP_OK,
                                  json_pack("{s:s,s:s,s:I}", "status", "ready",
                                            "database", "ok",
                                            "schema_version",
                                            (json_int_t) version));
}
