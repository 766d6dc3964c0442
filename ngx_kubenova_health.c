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


static const char  ngx_kubenova_readyz_sql[] =
    "SELECT coalesce(max(version), 0) FROM schema_migrations";


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
    u_char                  *p;
    ngx_int_t                rc;
    ngx_str_t                text, usage;
    ngx_shm_zone_t          *zone;
    ngx_kubenova_metrics_t  *m;

    static ngx_str_t  type =
        ngx_string("text/plain; version=0.0.4; charset=utf-8");

    rc = ngx_kubenova_only_get(r);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    m = ngx_http_kubenova_metrics(r);

    if (m == NULL || ngx_kubenova_metrics_render(m, r->pool, &text) != NGX_OK)
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

        p = ngx_pnalloc(r->pool, text.len + usage.len);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_memcpy(p, text.data, text.len);
        ngx_memcpy(p + text.len, usage.data, usage.len);

        text.data = p;
        text.len += usage.len;
    }

    return ngx_kubenova_send_body(r, NGX_HTTP_OK, &type, text.data, text.len);
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
