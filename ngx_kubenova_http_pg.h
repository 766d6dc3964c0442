/*
 * One PostgreSQL statement on behalf of an HTTP request: lease a pool
 * connection, send, wait, give the connection back, and finalize the
 * request with whatever the completion callback answers.  A client that goes
 * away releases the lease (see ngx_kubenova_pg_release).
 */

#ifndef _NGX_KUBENOVA_HTTP_PG_H_INCLUDED_
#define _NGX_KUBENOVA_HTTP_PG_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <libpq-fe.h>


/*
 * rc is NGX_OK with the statement's result (check PQresultStatus), or a pool
 * error (NGX_KUBENOVA_PG_*) with res NULL.  Returns what to finalize the
 * request with.
 */
typedef ngx_int_t (*ngx_kubenova_http_pg_done_pt)(ngx_http_request_t *r,
    void *data, ngx_int_t rc, PGresult *res);


/*
 * NGX_AGAIN: under way, done() finalizes the request later.  The caller holds a
 * request reference for that (r->main->count++ or the body reader's) and
 * returns NGX_DONE.  Anything else: the request was already answered (503)
 * and the value is what to finalize it with.  values are copied.
 */
ngx_int_t ngx_kubenova_http_pg_run(ngx_http_request_t *r, const char *sql,
    int nparams, const char *const *values, ngx_kubenova_http_pg_done_pt done,
    void *data);

/*
 * As ngx_kubenova_http_pg_run(), but a database that cannot be reached
 * (not configured: rc NGX_ERROR; pool errors) is done()'s to answer, with
 * res NULL, possibly before this returns (then its value is returned).
 */
ngx_int_t ngx_kubenova_http_pg_try(ngx_http_request_t *r, const char *sql,
    int nparams, const char *const *values, ngx_kubenova_http_pg_done_pt done,
    void *data);

/* 503 with the JSON error matching a pool error */
ngx_int_t ngx_kubenova_http_pg_unavailable(ngx_http_request_t *r,
    ngx_int_t rc);


#endif /* _NGX_KUBENOVA_HTTP_PG_H_INCLUDED_ */
