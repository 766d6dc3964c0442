/*
 * One PostgreSQL statement on behalf of an HTTP request (see the header).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_kubenova_module.h"
#include "ngx_kubenova_http_pg.h"
#include "ngx_kubenova_json.h"


typedef struct {
    ngx_http_request_t            *request;
    ngx_kubenova_pg_query_t        query;
    ngx_kubenova_http_pg_done_pt   done;
    void                          *data;
    ngx_uint_t                     own_errors;  /* done() hears of them */
} ngx_kubenova_http_pg_ctx_t;


static ngx_int_t ngx_kubenova_http_pg_start(ngx_http_request_t *r,
    const char *sql, int nparams, const char *const *values,
    ngx_kubenova_http_pg_done_pt done, void *data, ngx_uint_t own_errors);


static void ngx_kubenova_http_pg_result(void *data, ngx_int_t rc,
    PGresult *res);
static void ngx_kubenova_http_pg_cleanup(void *data);


ngx_int_t
ngx_kubenova_http_pg_run(ngx_http_request_t *r, const char *sql, int nparams,
    const char *const *values, ngx_kubenova_http_pg_done_pt done, void *data)
{
    return ngx_kubenova_http_pg_start(r, sql, nparams, values, done, data, 0);
}


ngx_int_t
ngx_kubenova_http_pg_try(ngx_http_request_t *r, const char *sql,
    int nparams, const char *const *values, ngx_kubenova_http_pg_done_pt done,
    void *data)
{
    return ngx_kubenova_http_pg_start(r, sql, nparams, values, done, data, 1);
}


static ngx_int_t
ngx_kubenova_http_pg_start(ngx_http_request_t *r, const char *sql,
    int nparams, const char *const *values, ngx_kubenova_http_pg_done_pt done,
    void *data, ngx_uint_t own_errors)
{
    int                          i;
    size_t                       len;
    char                       **copies;
    ngx_int_t                    rc;
    ngx_http_cleanup_t          *cln;
    ngx_kubenova_pg_pool_t      *pool;
    ngx_kubenova_http_pg_ctx_t  *ctx;

    pool = ngx_http_kubenova_pool(r);

    if (pool == NULL && own_errors) {
        return done(r, data, NGX_ERROR, NULL);
    }

    if (pool == NULL) {
        return ngx_kubenova_json_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                       "database_not_configured",
                                       "kubenova_postgres is not configured");
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_kubenova_http_pg_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the statement may wait in the queue: keep private copies */

    copies = NULL;

    if (nparams) {
        copies = ngx_palloc(r->pool, nparams * sizeof(char *));
        if (copies == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        for (i = 0; i < nparams; i++) {
            if (values[i] == NULL) {
                copies[i] = NULL;
                continue;
            }

            len = ngx_strlen(values[i]) + 1;

            copies[i] = ngx_pnalloc(r->pool, len);
            if (copies[i] == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            ngx_memcpy(copies[i], values[i], len);
        }
    }

    ctx->request = r;
    ctx->done = done;
    ctx->data = data;
    ctx->own_errors = own_errors;
    ctx->query.sql = sql;
    ctx->query.nparams = nparams;
    ctx->query.values = (const char *const *) copies;
    ctx->query.done = ngx_kubenova_http_pg_result;
    ctx->query.data = ctx;
    ctx->query.lease.log = r->connection->log;

    /* runs however the request ends, a client gone away included */

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_kubenova_http_pg_cleanup;
    cln->data = ctx;

    rc = ngx_kubenova_pg_query(pool, &ctx->query);

    if (rc != NGX_AGAIN && own_errors) {
        return done(r, data, rc, NULL);
    }

    if (rc != NGX_AGAIN) {
        return ngx_kubenova_http_pg_unavailable(r, rc);
    }

    /* notice a client that goes away while the database works */

    if (!r->discard_body && r->reading_body == 0) {
        r->read_event_handler = ngx_http_test_reading;
    }

    return NGX_AGAIN;
}


ngx_int_t
ngx_kubenova_http_pg_unavailable(ngx_http_request_t *r, ngx_int_t rc)
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
ngx_kubenova_http_pg_result(void *data, ngx_int_t rc, PGresult *res)
{
    ngx_kubenova_http_pg_ctx_t  *ctx = data;

    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ctx->request;
    c = r->connection;

    if (rc != NGX_OK && !ctx->own_errors) {
        rc = ngx_kubenova_http_pg_unavailable(r, rc);

    } else {
        rc = ctx->done(r, ctx->data, rc, res);
    }

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


static void
ngx_kubenova_http_pg_cleanup(void *data)
{
    ngx_kubenova_http_pg_ctx_t  *ctx = data;

    ngx_kubenova_pg_query_cancel(&ctx->query);
}
