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


typedef struct {
    ngx_http_request_t       *request;
    ngx_kubenova_pg_lease_t   lease;
} ngx_kubenova_readyz_ctx_t;


static void ngx_kubenova_readyz_acquired(ngx_kubenova_pg_lease_t *lease,
    ngx_int_t rc);
static ngx_int_t ngx_kubenova_readyz_query(ngx_kubenova_readyz_ctx_t *ctx);
static void ngx_kubenova_readyz_result(ngx_kubenova_pg_lease_t *lease,
    ngx_int_t rc, PGresult *res);
static ngx_int_t ngx_kubenova_readyz_unavailable(ngx_http_request_t *r,
    ngx_int_t rc);
static void ngx_kubenova_readyz_finish(ngx_kubenova_readyz_ctx_t *ctx,
    ngx_int_t rc);
static void ngx_kubenova_readyz_cleanup(void *data);


static const char  ngx_kubenova_readyz_sql[] =
    "SELECT coalesce(max(version), 0) FROM schema_migrations";


ngx_int_t
ngx_kubenova_only_get(ngx_http_request_t *r)
{
    ngx_table_elt_t  *allow;

    if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
        return NGX_DECLINED;
    }

    allow = ngx_list_push(&r->headers_out.headers);
    if (allow == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    allow->hash = 1;
    ngx_str_set(&allow->key, "Allow");
    ngx_str_set(&allow->value, "GET, HEAD");

    return ngx_kubenova_json_error(r, NGX_HTTP_NOT_ALLOWED,
                                   "method_not_allowed",
                                   "only GET and HEAD are allowed here");
}


ngx_int_t
ngx_kubenova_healthz_handler(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

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
    ngx_int_t                rc;
    ngx_str_t                text;
    ngx_kubenova_metrics_t  *m;

    static ngx_str_t  type =
        ngx_string("text/plain; version=0.0.4; charset=utf-8");

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_kubenova_only_get(r);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    m = ngx_http_kubenova_metrics(r);

    if (m == NULL || ngx_kubenova_metrics_render(m, r->pool, &text) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_kubenova_send_body(r, NGX_HTTP_OK, &type, text.data, text.len);
}


ngx_int_t
ngx_kubenova_readyz_handler(ngx_http_request_t *r)
{
    ngx_int_t                   rc;
    ngx_http_cleanup_t         *cln;
    ngx_kubenova_pg_pool_t     *pool;
    ngx_kubenova_readyz_ctx_t  *ctx;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_kubenova_only_get(r);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    pool = ngx_http_kubenova_pool(r);

    if (pool == NULL) {
        return ngx_kubenova_json_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                       "database_not_configured",
                                       "kubenova_postgres is not configured");
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_kubenova_readyz_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;
    ctx->lease.on_acquired = ngx_kubenova_readyz_acquired;
    ctx->lease.on_result = ngx_kubenova_readyz_result;
    ctx->lease.data = ctx;
    ctx->lease.log = r->connection->log;

    /* runs however the request ends, a client gone away included */

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_kubenova_readyz_cleanup;
    cln->data = ctx;

    rc = ngx_kubenova_pg_acquire(pool, &ctx->lease);

    if (rc == NGX_OK) {
        rc = ngx_kubenova_readyz_query(ctx);
        if (rc != NGX_OK) {
            return rc;
        }

    } else if (rc != NGX_AGAIN) {
        return ngx_kubenova_readyz_unavailable(r, rc);
    }

    /* notice a client that goes away while the database works */

    if (!r->discard_body) {
        r->read_event_handler = ngx_http_test_reading;
    }

    r->main->count++;

    return NGX_DONE;
}


static void
ngx_kubenova_readyz_acquired(ngx_kubenova_pg_lease_t *lease, ngx_int_t rc)
{
    ngx_kubenova_readyz_ctx_t  *ctx = lease->data;

    if (rc != NGX_OK) {
        ngx_kubenova_readyz_finish(ctx,
                          ngx_kubenova_readyz_unavailable(ctx->request, rc));
        return;
    }

    rc = ngx_kubenova_readyz_query(ctx);

    if (rc != NGX_OK) {
        ngx_kubenova_readyz_finish(ctx, rc);
    }
}


static ngx_int_t
ngx_kubenova_readyz_query(ngx_kubenova_readyz_ctx_t *ctx)
{
    if (ngx_kubenova_pg_send(&ctx->lease, ngx_kubenova_readyz_sql,
                             0, NULL, NULL)
        != NGX_OK)
    {
        ngx_kubenova_pg_release(&ctx->lease);
        return ngx_kubenova_readyz_unavailable(ctx->request,
                                               NGX_KUBENOVA_PG_CONN_LOST);
    }

    return NGX_OK;
}


static void
ngx_kubenova_readyz_result(ngx_kubenova_pg_lease_t *lease, ngx_int_t rc,
    PGresult *res)
{
    ngx_kubenova_readyz_ctx_t  *ctx = lease->data;

    char                *sqlstate;
    ngx_int_t            version;
    ngx_http_request_t  *r;

    r = ctx->request;

    ngx_kubenova_pg_release(lease);

    if (rc != NGX_OK) {
        ngx_kubenova_readyz_finish(ctx, ngx_kubenova_readyz_unavailable(r, rc));
        return;
    }

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "kubenova: readiness query failed: %s",
                      PQresultErrorMessage(res));

        /* 42P01: undefined_table, the migrations were never applied */

        if (sqlstate && ngx_strcmp(sqlstate, "42P01") == 0) {
            ngx_kubenova_readyz_finish(ctx,
                ngx_kubenova_json_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                        "schema_missing",
                                        "the database schema is not "
                                        "migrated"));
            return;
        }

        ngx_kubenova_readyz_finish(ctx,
            ngx_kubenova_json_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                    "database_error",
                                    "the readiness query failed"));
        return;
    }

    version = ngx_atoi((u_char *) PQgetvalue(res, 0, 0),
                       PQgetlength(res, 0, 0));

    ngx_kubenova_readyz_finish(ctx,
        ngx_kubenova_json_send(r, NGX_HTTP_OK,
                               json_pack("{s:s,s:s,s:I}", "status", "ready",
                                         "database", "ok",
                                         "schema_version",
                                         (json_int_t) version)));
}


static ngx_int_t
ngx_kubenova_readyz_unavailable(ngx_http_request_t *r, ngx_int_t rc)
{
    const char  *code;

    switch (rc) {

    case NGX_KUBENOVA_PG_QUEUE_FULL:
    case NGX_KUBENOVA_PG_QUEUE_TIMEOUT:
        code = "database_busy";
        break;

    default:
        code = "database_unavailable";
        break;
    }

    return ngx_kubenova_json_error(r, NGX_HTTP_SERVICE_UNAVAILABLE, code,
                                   ngx_kubenova_pg_strerror(rc));
}


static void
ngx_kubenova_readyz_finish(ngx_kubenova_readyz_ctx_t *ctx, ngx_int_t rc)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ctx->request;
    c = r->connection;

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


static void
ngx_kubenova_readyz_cleanup(void *data)
{
    ngx_kubenova_readyz_ctx_t  *ctx = data;

    ngx_kubenova_pg_release(&ctx->lease);
}
