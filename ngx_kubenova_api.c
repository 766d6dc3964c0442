/*
 * The REST API, nginx half: routing, the request body, the envelope, and the
 * answer.  Meaning (authentication, roles, validation, generations, desired
 * state, audit) lives in PostgreSQL: every request is one statement,
 * api.call(op, envelope).  See docs/api-design.md.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_kubenova_module.h"
#include "ngx_kubenova_api.h"
#include "ngx_kubenova_bootstrap.h"
#include "ngx_kubenova_http_pg.h"
#include "ngx_kubenova_json.h"
#include "ngx_kubenova_token.h"
#include "ngx_kubenova_kube_proxy.h"
#include "ngx_kubenova_yaml.h"
#include "ngx_kubenova_crypto.h"
#include "ngx_kubenova_register.h"
#include "ngx_kubenova_app_watch.h"


#define NGX_KUBENOVA_API_PREFIX      "/api/v1"
#define NGX_KUBENOVA_API_MAX_PARAMS  3
#define NGX_KUBENOVA_API_MAX_SEGS    6


typedef enum {
    NGX_KUBENOVA_BODY_NONE = 0,
    NGX_KUBENOVA_BODY_JSON,          /* application/json */
    NGX_KUBENOVA_BODY_PATCH,         /* merge patch, or plain JSON */
    NGX_KUBENOVA_BODY_DOCUMENT       /* JSON or YAML */
} ngx_kubenova_body_e;


#define NGX_KUBENOVA_ROUTE_ANONYMOUS  0x01   /* no token (signup) */
#define NGX_KUBENOVA_ROUTE_CSV        0x02   /* Accept: text/csv honoured */
#define NGX_KUBENOVA_ROUTE_JOIN       0x04   /* no bearer: a join token */
#define NGX_KUBENOVA_ROUTE_WATCH      0x08   /* ?watch=1: server-sent events */


typedef struct {
    ngx_uint_t               method;
    const char              *path;   /* segments; ":name" captures */
    const char              *op;
    ngx_kubenova_body_e      body;
    ngx_uint_t               flags;  /* NGX_KUBENOVA_ROUTE_* */
} ngx_kubenova_route_t;


typedef struct {
    ngx_str_t                name;   /* points into the route's pattern */
    ngx_str_t                value;
} ngx_kubenova_param_t;


typedef struct {
    const ngx_kubenova_route_t  *route;
    ngx_kubenova_param_t         params[NGX_KUBENOVA_API_MAX_PARAMS];
    ngx_uint_t                   nparams;
    json_t                      *body;
    const char                  *body_format;
    ngx_kubenova_join_t         *join;   /* install.yaml, register */
    const char                  *watch;  /* ?watch=1: the envelope, again */
    unsigned                     csv:1;  /* the answer goes as text/csv */
} ngx_kubenova_api_ctx_t;


static void ngx_kubenova_api_cleanup(void *data);
static ngx_int_t ngx_kubenova_api_route(ngx_http_request_t *r,
    ngx_kubenova_api_ctx_t *ctx);
static ngx_uint_t ngx_kubenova_api_match(const char *pattern,
    ngx_str_t *segs, ngx_uint_t nsegs, ngx_kubenova_api_ctx_t *ctx);
static ngx_int_t ngx_kubenova_api_not_allowed(ngx_http_request_t *r,
    ngx_uint_t methods);
static ngx_int_t ngx_kubenova_api_check_body(ngx_http_request_t *r,
    ngx_kubenova_api_ctx_t *ctx);
static void ngx_kubenova_api_body_read(ngx_http_request_t *r);
static ngx_int_t ngx_kubenova_api_parse_body(ngx_http_request_t *r,
    ngx_kubenova_api_ctx_t *ctx);
static ngx_int_t ngx_kubenova_api_body_bytes(ngx_http_request_t *r,
    ngx_str_t *out);
static ngx_int_t ngx_kubenova_api_start(ngx_http_request_t *r,
    ngx_kubenova_api_ctx_t *ctx);
static json_t *ngx_kubenova_api_envelope(ngx_http_request_t *r,
    ngx_kubenova_api_ctx_t *ctx);
static ngx_int_t ngx_kubenova_api_query_arg(ngx_http_request_t *r,
    json_t *query, const char *name);
static ngx_int_t ngx_kubenova_api_done(ngx_http_request_t *r, void *data,
    ngx_int_t rc, PGresult *res);
static ngx_int_t ngx_kubenova_api_unauthorized(ngx_http_request_t *r,
    ngx_uint_t presented);
static ngx_int_t ngx_kubenova_api_location(ngx_http_request_t *r,
    ngx_kubenova_api_ctx_t *ctx, const char *body, size_t len);
static ngx_str_t *ngx_kubenova_api_media_type(ngx_http_request_t *r,
    ngx_str_t *type);
static ngx_int_t ngx_kubenova_api_kubeconfig(ngx_http_request_t *r,
    const char *body, size_t len);
static ngx_uint_t ngx_kubenova_api_wants_csv(ngx_http_request_t *r);
static ngx_int_t ngx_kubenova_api_csv(ngx_http_request_t *r, const char *body,
    size_t len);


#define GET     NGX_HTTP_GET
#define POST    NGX_HTTP_POST
#define PUT     NGX_HTTP_PUT
#define PATCH   NGX_HTTP_PATCH
#define DELETE  NGX_HTTP_DELETE

#define ANON    NGX_KUBENOVA_ROUTE_ANONYMOUS
#define CSV     NGX_KUBENOVA_ROUTE_CSV
#define JOIN    NGX_KUBENOVA_ROUTE_JOIN
#define WATCH   NGX_KUBENOVA_ROUTE_WATCH

#define NONE    NGX_KUBENOVA_BODY_NONE
#define JSON    NGX_KUBENOVA_BODY_JSON
#define MERGE   NGX_KUBENOVA_BODY_PATCH
#define DOC     NGX_KUBENOVA_BODY_DOCUMENT

/* the table of docs/api-design.md and docs/openapi.yaml */

static const ngx_kubenova_route_t  ngx_kubenova_routes[] = {
    { GET,    "whoami",                         "whoami",        NONE,  0 },

    { GET,    "plans",                          "plan.list",     NONE,  0 },
    { POST,   "plans",                          "plan.create",   JSON,  0 },
    { GET,    "plans/:plan",                    "plan.get",      NONE,  0 },
    { PUT,    "plans/:plan",                    "plan.put",      JSON,  0 },
    { PATCH,  "plans/:plan",                    "plan.patch",    MERGE, 0 },
    { DELETE, "plans/:plan",                    "plan.delete",   NONE,  0 },

    { GET,    "tenants",                        "tenant.list",   NONE,  0 },
    { POST,   "tenants",                        "tenant.create", JSON,  0 },
    { GET,    "tenants/:tenant",                "tenant.get",    NONE,  0 },
    { PUT,    "tenants/:tenant",                "tenant.put",    JSON,  0 },
    { PATCH,  "tenants/:tenant",                "tenant.patch",  MERGE, 0 },
    { DELETE, "tenants/:tenant",                "tenant.delete", NONE,  0 },

    { GET,    "tenants/:tenant/users",          "user.list",     NONE,  0 },
    { POST,   "tenants/:tenant/users",          "user.create",   JSON,  0 },
    { GET,    "tenants/:tenant/users/:user",    "user.get",      NONE,  0 },
    { PATCH,  "tenants/:tenant/users/:user",    "user.patch",    MERGE, 0 },
    { DELETE, "tenants/:tenant/users/:user",    "user.delete",   NONE,  0 },

    { GET,    "admins",                         "admin.list",    NONE,  0 },
    { POST,   "admins",                         "admin.create",  JSON,  0 },
    { DELETE, "admins/:user",                   "admin.delete",  NONE,  0 },

    { GET,    "users/:user/tokens",             "token.list",    NONE,  0 },
    { POST,   "users/:user/tokens",             "token.create",  JSON,  0 },
    { DELETE, "users/:user/tokens/:token",      "token.revoke",  NONE,  0 },

    { GET,    "clusters",                       "cluster.list",  NONE,  0 },
    { POST,   "clusters",                       "cluster.create", JSON, 0 },
    { GET,    "clusters/:cluster",              "cluster.get",   NONE,  0 },
    { PUT,    "clusters/:cluster",              "cluster.put",   JSON,  0 },
    { PATCH,  "clusters/:cluster",              "cluster.patch", MERGE, 0 },
    { DELETE, "clusters/:cluster",              "cluster.delete", NONE, 0 },
    { GET,    "clusters/:cluster/config",       "cluster_config.get",
                                                                 NONE,  0 },
    { PUT,    "clusters/:cluster/config",       "cluster_config.put",
                                                                 JSON,  0 },
    { POST,   "clusters/:cluster/join-token",   "cluster.join_token",
                                                                 NONE,  0 },
    { GET,    "clusters/:cluster/install.yaml", "cluster.install",
                                                                 NONE,  JOIN },
    { POST,   "clusters/:cluster/register",     "cluster.register",
                                                                 JSON,  JOIN },

    { GET,    "tenants/:tenant/kubeconfig",     "kubeconfig.get", NONE, 0 },

    { GET,    "tenants/:tenant/usage",          "usage.get",     NONE,  CSV },
    { GET,    "usage",                          "usage.list",    NONE,  CSV },
    { GET,    "tenants/:tenant/invoice",        "invoice.get",   NONE,  0 },

    { GET,    "tenants/:tenant/apps",           "app.list",      NONE,  0 },
    { POST,   "tenants/:tenant/apps",           "app.create",    DOC,   0 },
    { GET,    "tenants/:tenant/apps/:app",      "app.get",       NONE,  0 },
    { PUT,    "tenants/:tenant/apps/:app",      "app.put",       DOC,   0 },
    { DELETE, "tenants/:tenant/apps/:app",      "app.delete",    NONE,  0 },
    { GET,    "tenants/:tenant/apps/:app/status",
                                                "app.status",    NONE,  WATCH },
    { POST,   "users/:tenant/apps",             "app.create",    DOC,   0 },

    { POST,   "signup",                         "signup",        JSON,  ANON },

    { GET,    "audit",                          "audit.list",    NONE,  0 },

    { 0, NULL, NULL, NONE, 0 }
};

#undef GET
#undef POST
#undef PUT
#undef PATCH
#undef DELETE
#undef ANON
#undef CSV
#undef JOIN
#undef WATCH
#undef NONE
#undef JSON
#undef MERGE
#undef DOC


static const char  ngx_kubenova_api_sql[] =
    "SELECT status, etag, body::text, principal, tenant "
    "FROM api.call($1, $2::jsonb)";


ngx_int_t
ngx_kubenova_api_handler(ngx_http_request_t *r)
{
    ngx_int_t                 rc;
    ngx_pool_cleanup_t       *cln;
    ngx_kubenova_api_ctx_t   *ctx;
    ngx_http_kubenova_ctx_t  *kctx;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_kubenova_api_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /*
     * the parsed body is jansson's (malloc): released with the request
     * whatever happens to it (503 before the statement, client gone away)
     */

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_kubenova_api_cleanup;
    cln->data = ctx;

    /*
     * If-Match is the database's to judge (against the generation before
     * the write); nginx's not_modified filter would compare it with the
     * answer's ETag (the generation after it) and turn a committed write
     * into 412
     */

    r->disable_not_modified = 1;

    rc = ngx_kubenova_api_route(r, ctx);

    if (rc != NGX_DECLINED) {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            r->keepalive = 0;
        }
        return rc;
    }

    if (ctx->route->body == NGX_KUBENOVA_BODY_NONE) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        rc = ngx_kubenova_api_start(r, ctx);
        if (rc != NGX_AGAIN) {
            return rc;
        }

        r->main->count++;
        return NGX_DONE;
    }

    rc = ngx_kubenova_api_check_body(r, ctx);
    if (rc != NGX_DECLINED) {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            r->keepalive = 0;
        }
        return rc;
    }

    /* the whole body in memory: it is bounded by kubenova_api_max_body */

    r->request_body_in_single_buf = 1;

    kctx = ngx_http_kubenova_get_ctx(r);
    if (kctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    kctx->api = ctx;

    rc = ngx_http_read_client_request_body(r, ngx_kubenova_api_body_read);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static void
ngx_kubenova_api_cleanup(void *data)
{
    ngx_kubenova_api_ctx_t  *ctx = data;

    if (ctx->body) {
        json_decref(ctx->body);
        ctx->body = NULL;
    }
}


/* routing: NGX_DECLINED to go on with ctx->route, else the answer sent */


static ngx_int_t
ngx_kubenova_api_route(ngx_http_request_t *r, ngx_kubenova_api_ctx_t *ctx)
{
    u_char                      *p, *last, *start;
    ngx_str_t                    segs[NGX_KUBENOVA_API_MAX_SEGS];
    ngx_uint_t                   nsegs, method, allowed;
    ngx_http_kubenova_ctx_t     *kctx;
    const ngx_kubenova_route_t  *route;

    if (r->uri.len < sizeof(NGX_KUBENOVA_API_PREFIX) - 1
        || ngx_strncmp(r->uri.data, NGX_KUBENOVA_API_PREFIX,
                       sizeof(NGX_KUBENOVA_API_PREFIX) - 1) != 0)
    {
        goto not_found;
    }

    p = r->uri.data + sizeof(NGX_KUBENOVA_API_PREFIX) - 1;
    last = r->uri.data + r->uri.len;

    if (p == last) {
        if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
            return ngx_kubenova_api_not_allowed(r, NGX_HTTP_GET);
        }

        return ngx_kubenova_json_send(r, NGX_HTTP_OK,
                   json_pack("{s:s,s:s}", "name", "kubenova",
                             "version", NGX_HTTP_KUBENOVA_VERSION));
    }

    if (*p != '/') {
        goto not_found;
    }

    p++;

    if (last > p && last[-1] == '/') {
        last--;
    }

    nsegs = 0;

    while (p < last) {
        if (nsegs == NGX_KUBENOVA_API_MAX_SEGS) {
            goto not_found;
        }

        start = p;

        while (p < last && *p != '/') {
            p++;
        }

        segs[nsegs].data = start;
        segs[nsegs].len = p - start;

        if (segs[nsegs].len == 0) {
            goto not_found;
        }

        nsegs++;

        if (p < last) {
            p++;
        }
    }

    method = (r->method == NGX_HTTP_HEAD) ? NGX_HTTP_GET : r->method;
    allowed = 0;

    for (route = ngx_kubenova_routes; route->path; route++) {
        if (!ngx_kubenova_api_match(route->path, segs, nsegs, ctx)) {
            continue;
        }

        allowed |= route->method;

        if (route->method == method) {
            ctx->route = route;
            break;
        }
    }

    if (ctx->route == NULL) {
        if (allowed) {
            return ngx_kubenova_api_not_allowed(r, allowed);
        }

        goto not_found;
    }

    if (ctx->route->flags & NGX_KUBENOVA_ROUTE_ANONYMOUS) {
        if (!ngx_http_kubenova_signup_enabled(r)) {
            goto not_found;
        }

        return NGX_DECLINED;
    }

    if (ctx->route->flags & NGX_KUBENOVA_ROUTE_JOIN) {
        return NGX_DECLINED;
    }

    /* without a token there is nothing to ask the database */

    kctx = ngx_http_kubenova_get_ctx(r);
    if (kctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (!kctx->has_token) {
        return ngx_kubenova_api_unauthorized(r, kctx->bad_token);
    }

    return NGX_DECLINED;

not_found:

    return ngx_kubenova_json_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                   "no such API endpoint");
}


static ngx_uint_t
ngx_kubenova_api_match(const char *pattern, ngx_str_t *segs, ngx_uint_t nsegs,
    ngx_kubenova_api_ctx_t *ctx)
{
    size_t       len;
    ngx_uint_t   i, nparams;
    const char  *p, *end;

    p = pattern;
    nparams = 0;

    for (i = 0; i < nsegs; i++) {
        if (*p == '\0') {
            return 0;
        }

        end = strchr(p, '/');
        len = end ? (size_t) (end - p) : ngx_strlen(p);

        if (*p == ':') {
            if (nparams == NGX_KUBENOVA_API_MAX_PARAMS) {
                return 0;
            }

            ctx->params[nparams].name.data = (u_char *) p + 1;
            ctx->params[nparams].name.len = len - 1;
            ctx->params[nparams].value = segs[i];
            nparams++;

        } else if (len != segs[i].len
                   || ngx_strncmp(segs[i].data, p, len) != 0)
        {
            return 0;
        }

        p += len;

        if (*p == '/') {
            p++;
        }
    }

    if (*p != '\0') {
        return 0;
    }

    ctx->nparams = nparams;

    return 1;
}


static ngx_int_t
ngx_kubenova_api_not_allowed(ngx_http_request_t *r, ngx_uint_t methods)
{
    u_char      *p, *start;
    ngx_int_t    rc;
    ngx_uint_t   i;

    static const struct {
        ngx_uint_t   method;
        const char  *name;
    } names[] = {
        { NGX_HTTP_GET, "GET, HEAD" },
        { NGX_HTTP_POST, "POST" },
        { NGX_HTTP_PUT, "PUT" },
        { NGX_HTTP_PATCH, "PATCH" },
        { NGX_HTTP_DELETE, "DELETE" }
    };

    start = ngx_pnalloc(r->pool, sizeof("GET, HEAD, POST, PUT, PATCH, DELETE"));
    if (start == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = start;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (methods & names[i].method) {
            if (p != start) {
                *p++ = ','; *p++ = ' ';
            }
            p = ngx_cpymem(p, names[i].name, ngx_strlen(names[i].name));
        }
    }

    rc = ngx_kubenova_add_header(r, &r->headers_out.headers, "Allow",
                                 start, p - start);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_kubenova_json_error(r, NGX_HTTP_NOT_ALLOWED,
                                   "method_not_allowed",
                                   "this method is not allowed on this path");
}


/*
 * the request body: NGX_DECLINED to read it, else the answer sent (413,
 * 415)
 */


static ngx_int_t
ngx_kubenova_api_check_body(ngx_http_request_t *r, ngx_kubenova_api_ctx_t *ctx)
{
    off_t       max;
    ngx_str_t   type, *t;
    u_char      msg[128];

    max = ngx_http_kubenova_api_max_body(r);

    if (r->headers_in.content_length_n > max) {
        ngx_snprintf(msg, sizeof(msg), "the body exceeds %O bytes%Z", max);
        return ngx_kubenova_json_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                       "payload_too_large", (char *) msg);
    }

    if (r->headers_in.content_length_n <= 0 && !r->headers_in.chunked) {
        ctx->body_format = NULL;
        return NGX_DECLINED;    /* no body: the database answers "required" */
    }

    t = ngx_kubenova_api_media_type(r, &type);

    if (t != NULL) {
        if (ngx_strcasecmp(type.data, (u_char *) "application/json") == 0) {
            ctx->body_format = "json";
            return NGX_DECLINED;
        }

        if (ctx->route->body == NGX_KUBENOVA_BODY_PATCH
            && ngx_strcasecmp(type.data,
                              (u_char *) "application/merge-patch+json") == 0)
        {
            ctx->body_format = "json";
            return NGX_DECLINED;
        }

        if (ctx->route->body == NGX_KUBENOVA_BODY_DOCUMENT
            && (ngx_strcasecmp(type.data, (u_char *) "application/yaml") == 0
                || ngx_strcasecmp(type.data,
                                  (u_char *) "application/x-yaml") == 0
                || ngx_strcasecmp(type.data, (u_char *) "text/yaml") == 0))
        {
            ctx->body_format = "yaml";
            return NGX_DECLINED;
        }
    }

    return ngx_kubenova_json_error(r, NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
               "unsupported_media_type",
               ctx->route->body == NGX_KUBENOVA_BODY_DOCUMENT
               ? "send application/json or application/yaml"
               : (ctx->route->body == NGX_KUBENOVA_BODY_PATCH
                  ? "send application/merge-patch+json or application/json"
                  : "send application/json"));
}


/* the media type of Content-Type, lower-cased, without parameters */

static ngx_str_t *
ngx_kubenova_api_media_type(ngx_http_request_t *r, ngx_str_t *type)
{
    u_char      *p, *last;
    ngx_str_t   *ct;

    if (r->headers_in.content_type == NULL) {
        return NULL;
    }

    ct = &r->headers_in.content_type->value;
    last = ct->data + ct->len;

    for (p = ct->data; p < last && *p != ';' && *p != ' '; p++) {
        /* void */
    }

    type->len = p - ct->data;
    type->data = ngx_pnalloc(r->pool, type->len + 1);
    if (type->data == NULL) {
        return NULL;
    }

    ngx_strlow(type->data, ct->data, type->len);
    type->data[type->len] = '\0';

    return type;
}


static void
ngx_kubenova_api_body_read(ngx_http_request_t *r)
{
    ngx_int_t                 rc;
    ngx_kubenova_api_ctx_t   *ctx;
    ngx_http_kubenova_ctx_t  *kctx;

    kctx = ngx_http_kubenova_get_ctx(r);
    ctx = kctx->api;

    rc = ngx_kubenova_api_parse_body(r, ctx);

    if (rc == NGX_DECLINED) {
        rc = ngx_kubenova_api_start(r, ctx);

        if (rc == NGX_AGAIN) {
            return;       /* the body reader's reference carries the request */
        }
    }

    ngx_http_finalize_request(r, rc);
}


/*
 * NGX_DECLINED: the body is parsed (or absent), go on with the database;
 * anything else: the answer (an error) has been sent, finalize with it
 */

static ngx_int_t
ngx_kubenova_api_parse_body(ngx_http_request_t *r, ngx_kubenova_api_ctx_t *ctx)
{
    off_t         max;
    ngx_int_t     rc;
    ngx_str_t     bytes;
    json_error_t  jerr;
    char          err[256];
    u_char        msg[512];

    if (ctx->body_format == NULL) {
        return NGX_DECLINED;
    }

    rc = ngx_kubenova_api_body_bytes(r, &bytes);
    if (rc != NGX_OK) {
        return rc;
    }

    max = ngx_http_kubenova_api_max_body(r);

    if ((off_t) bytes.len > max) {
        ngx_snprintf(msg, sizeof(msg), "the body exceeds %O bytes%Z", max);
        return ngx_kubenova_json_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                       "payload_too_large", (char *) msg);
    }

    if (bytes.len == 0) {
        ctx->body_format = NULL;
        return NGX_DECLINED;
    }

    if (ngx_strcmp(ctx->body_format, "yaml") == 0) {
        ctx->body = ngx_kubenova_yaml_to_json(bytes.data, bytes.len,
                                              err, sizeof(err));
        if (ctx->body == NULL) {
            ngx_snprintf(msg, sizeof(msg), "the body is not valid YAML: %s%Z",
                         err);
            return ngx_kubenova_json_error(r, NGX_HTTP_BAD_REQUEST,
                                           "invalid_yaml", (char *) msg);
        }

        return NGX_DECLINED;
    }

    ctx->body = json_loadb((const char *) bytes.data, bytes.len,
                           JSON_REJECT_DUPLICATES|JSON_DECODE_ANY, &jerr);

    if (ctx->body == NULL) {
        ngx_snprintf(msg, sizeof(msg),
                     "the body is not valid JSON: line %d, column %d: %s%Z",
                     jerr.line, jerr.column, jerr.text);
        return ngx_kubenova_json_error(r, NGX_HTTP_BAD_REQUEST,
                                       "invalid_json", (char *) msg);
    }

    /* a bootstrap kubeconfig never reaches the database unsealed */

    if (ngx_strcmp(ctx->route->op, "cluster.create") == 0
        && ngx_kubenova_bootstrap_seal(r, ctx->body) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_kubenova_api_body_bytes(ngx_http_request_t *r, ngx_str_t *out)
{
    u_char       *p;
    off_t         size, max;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    out->len = 0;
    out->data = NULL;

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    size = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        size += ngx_buf_size(cl->buf);
    }

    max = ngx_http_kubenova_api_max_body(r);

    if (size > max) {
        out->len = (size_t) size;
        return NGX_OK;           /* the caller answers 413 */
    }

    p = ngx_pnalloc(r->pool, (size_t) size + 1);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    out->data = p;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            /* client_body_buffer_size smaller than kubenova_api_max_body */
            n = ngx_read_file(b->file, p, (size_t) (b->file_last - b->file_pos),
                              b->file_pos);
            if (n == NGX_ERROR) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            p += n;
            continue;
        }

        p = ngx_cpymem(p, b->pos, b->last - b->pos);
    }

    *p = '\0';
    out->len = p - out->data;

    return NGX_OK;
}


/* the statement */


static ngx_int_t
ngx_kubenova_api_start(ngx_http_request_t *r, ngx_kubenova_api_ctx_t *ctx)
{
    char        *envelope, *watch;
    size_t       len;
    json_t      *json;
    ngx_int_t    rc;
    const char  *values[2];

    json = ngx_kubenova_api_envelope(r, ctx);

    if (json == NULL) {
        return ngx_kubenova_json_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                       "no such object");
    }

    if (ngx_kubenova_register_envelope(r, json) != NGX_OK) {
        json_decref(json);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->route->flags & NGX_KUBENOVA_ROUTE_JOIN) {
        rc = ngx_kubenova_register_prepare(r, ctx->route->op,
                                           &ctx->params[0].value, ctx->body,
                                           json, &ctx->join);
        if (rc != NGX_DECLINED) {
            json_decref(json);
            return rc;
        }
    }

    /*
     * 15 significant digits: a decimal the client wrote ("0.4", a price)
     * reaches the database as written, not as the nearest double's 17
     * digits ("0.40000000000000002")
     */

    envelope = json_dumps(json, JSON_COMPACT|JSON_REAL_PRECISION(15));
    json_decref(json);

    if (envelope == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    values[0] = ctx->route->op;
    values[1] = envelope;

    /* a stream asks again with the same envelope on every change */

    if ((ctx->route->flags & NGX_KUBENOVA_ROUTE_WATCH)
        && ngx_kubenova_app_watch_wanted(r))
    {
        len = ngx_strlen(envelope) + 1;
        watch = ngx_pnalloc(r->pool, len);
        if (watch == NULL) {
            free(envelope);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_memcpy(watch, envelope, len);
        ctx->watch = watch;
    }

    rc = ngx_kubenova_http_pg_run(r, ngx_kubenova_api_sql, 2, values,
                                  ngx_kubenova_api_done, ctx);

    free(envelope);

    return rc;
}


/*
 * NULL when a path parameter is not valid UTF-8: no object can have such a
 * name, so the caller answers 404.
 */

static json_t *
ngx_kubenova_api_envelope(ngx_http_request_t *r, ngx_kubenova_api_ctx_t *ctx)
{
    u_char                   *name;
    json_t                   *env, *params, *query, *value;
    ngx_uint_t                i;
    ngx_http_kubenova_ctx_t  *kctx;

    kctx = ngx_http_kubenova_get_ctx(r);
    if (kctx == NULL) {
        return NULL;
    }

    env = json_object();
    params = json_object();
    query = json_object();

    if (env == NULL || params == NULL || query == NULL) {
        goto failed;
    }

    for (i = 0; i < ctx->nparams; i++) {

        /* the pattern goes on after the name ("tenant/users"): copy it */

        name = ngx_pnalloc(r->pool, ctx->params[i].name.len + 1);
        if (name == NULL) {
            goto failed;
        }

        ngx_memcpy(name, ctx->params[i].name.data, ctx->params[i].name.len);
        name[ctx->params[i].name.len] = '\0';

        value = json_stringn((const char *) ctx->params[i].value.data,
                             ctx->params[i].value.len);
        if (value == NULL
            || json_object_set_new(params, (const char *) name, value) != 0)
        {
            goto failed;
        }
    }

    if (ngx_kubenova_api_query_arg(r, query, "limit") != NGX_OK
        || ngx_kubenova_api_query_arg(r, query, "continue") != NGX_OK
        || ngx_kubenova_api_query_arg(r, query, "cluster") != NGX_OK
        || ngx_kubenova_api_query_arg(r, query, "role") != NGX_OK
        || ngx_kubenova_api_query_arg(r, query, "via") != NGX_OK
        || ngx_kubenova_api_query_arg(r, query, "from") != NGX_OK
        || ngx_kubenova_api_query_arg(r, query, "to") != NGX_OK
        || ngx_kubenova_api_query_arg(r, query, "granularity") != NGX_OK
        || ngx_kubenova_api_query_arg(r, query, "tenant") != NGX_OK
        || ngx_kubenova_api_query_arg(r, query, "month") != NGX_OK
        || ngx_kubenova_api_query_arg(r, query, "token") != NGX_OK)
    {
        goto failed;
    }

    ctx->csv = (ctx->route->flags & NGX_KUBENOVA_ROUTE_CSV)
               && ngx_kubenova_api_wants_csv(r);

    json_object_set_new(env, "token_hash",
                        kctx->has_token
                        ? json_stringn((const char *) kctx->token_hash,
                                       NGX_KUBENOVA_TOKEN_HASH_LEN)
                        : json_null());
    json_object_set_new(env, "bootstrap_admin",
                        json_boolean(kctx->bootstrap_admin));
    json_object_set_new(env, "params", params);
    json_object_set_new(env, "query", query);

    if (r->headers_in.if_match) {
        value = json_stringn((const char *) r->headers_in.if_match->value.data,
                             r->headers_in.if_match->value.len);
        json_object_set_new(env, "if_match", value ? value : json_null());

    } else {
        json_object_set_new(env, "if_match", json_null());
    }

    json_object_set(env, "body", ctx->body ? ctx->body : json_null());
    json_object_set_new(env, "body_format",
                        ctx->body_format ? json_string(ctx->body_format)
                                         : json_null());
    json_object_set_new(env, "format", json_string(ctx->csv ? "csv" : "json"));

    /* the silence after which a cluster shows as unavailable */
    json_object_set_new(env, "cluster_unavailable_after_ms",
                        json_integer((json_int_t)
                            ngx_http_kubenova_cluster_unavailable_after(r)));

    return env;

failed:

    json_decref(env);
    json_decref(params);
    json_decref(query);

    return NULL;
}


static ngx_int_t
ngx_kubenova_api_query_arg(ngx_http_request_t *r, json_t *query,
    const char *name)
{
    u_char     *dst, *src;
    json_t     *value;
    ngx_str_t   arg;

    if (ngx_http_arg(r, (u_char *) name, ngx_strlen(name), &arg) != NGX_OK) {
        return NGX_OK;
    }

    dst = ngx_pnalloc(r->pool, arg.len);
    if (dst == NULL) {
        return NGX_ERROR;
    }

    src = arg.data;
    arg.data = dst;
    ngx_unescape_uri(&dst, &src, arg.len, 0);
    arg.len = dst - arg.data;

    /* not UTF-8: hand the database something it rejects as invalid */

    value = json_stringn((const char *) arg.data, arg.len);

    return json_object_set_new(query, name, value ? value : json_string("\x01"))
           == 0 ? NGX_OK : NGX_ERROR;
}


static ngx_int_t
ngx_kubenova_api_done(ngx_http_request_t *r, void *data, ngx_int_t rc,
    PGresult *res)
{
    ngx_kubenova_api_ctx_t  *ctx = data;

    int                       len;
    char                     *body;
    ngx_int_t                 status;
    ngx_http_kubenova_ctx_t  *kctx;

    static ngx_str_t  json_type = ngx_string("application/json");

    if (ctx->body) {
        json_decref(ctx->body);
        ctx->body = NULL;
    }

    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1
        || PQnfields(res) != 5)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "kubenova: api.call(%s) failed: %s", ctx->route->op,
                      PQresultErrorMessage(res));

        return ngx_kubenova_json_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                       "internal_error",
                                       "the request could not be processed");
    }

    status = ngx_atoi((u_char *) PQgetvalue(res, 0, 0),
                      PQgetlength(res, 0, 0));

    if (status < 200 || status > 599) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    kctx = ngx_http_kubenova_get_ctx(r);

    if (kctx
        && ngx_http_kubenova_set_identity(r, kctx,
               PQgetisnull(res, 0, 3) ? NULL : PQgetvalue(res, 0, 3),
               PQgetisnull(res, 0, 4) ? NULL : PQgetvalue(res, 0, 4))
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (status == NGX_HTTP_OK && ctx->watch && !PQgetisnull(res, 0, 2)) {
        return ngx_kubenova_app_watch_start(r, ctx->watch,
                                            PQgetvalue(res, 0, 2),
                                            PQgetlength(res, 0, 2));
    }

    if (!PQgetisnull(res, 0, 1)) {
        if (ngx_kubenova_add_header(r, &r->headers_out.headers, "ETag",
                                    (u_char *) PQgetvalue(res, 0, 1),
                                    PQgetlength(res, 0, 1))
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (status == NGX_HTTP_UNAUTHORIZED
        && !(ctx->route->flags & NGX_KUBENOVA_ROUTE_JOIN))
    {
        if (ngx_kubenova_api_unauthorized_header(r, 1) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (PQgetisnull(res, 0, 2)) {
        r->headers_out.status = status;
        r->headers_out.content_length_n = 0;
        r->header_only = 1;
        return ngx_http_send_header(r);
    }

    len = PQgetlength(res, 0, 2);

    if (status == NGX_HTTP_OK
        && ngx_strcmp(ctx->route->op, "kubeconfig.get") == 0)
    {
        return ngx_kubenova_api_kubeconfig(r, PQgetvalue(res, 0, 2), len);
    }

    if (ctx->join
        && (status == NGX_HTTP_OK || status == NGX_HTTP_CREATED))
    {
        return ngx_kubenova_register_answer(r, ctx->join,
                                            PQgetvalue(res, 0, 2), len);
    }

    if (status == NGX_HTTP_OK && ctx->csv) {
        return ngx_kubenova_api_csv(r, PQgetvalue(res, 0, 2), len);
    }

    body = ngx_pnalloc(r->pool, len + 1);
    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(body, PQgetvalue(res, 0, 2), len);
    body[len++] = '\n';

    if (status == NGX_HTTP_CREATED
        && ngx_kubenova_api_location(r, ctx, body, len) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_kubenova_send_body(r, status, &json_type, (u_char *) body, len);
}


static ngx_int_t
ngx_kubenova_api_unauthorized(ngx_http_request_t *r, ngx_uint_t presented)
{
    if (ngx_kubenova_api_unauthorized_header(r, presented) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_kubenova_json_error(r, NGX_HTTP_UNAUTHORIZED, "unauthorized",
                                   "missing or invalid bearer token");
}


ngx_int_t
ngx_kubenova_api_unauthorized_header(ngx_http_request_t *r,
    ngx_uint_t presented)
{
    static const char  plain[] = "Bearer realm=\"kubenova\"";
    static const char  invalid[] =
        "Bearer realm=\"kubenova\", error=\"invalid_token\"";

    if (presented) {
        return ngx_kubenova_add_header(r, &r->headers_out.headers,
                                       "WWW-Authenticate", (u_char *) invalid,
                                       sizeof(invalid) - 1);
    }

    return ngx_kubenova_add_header(r, &r->headers_out.headers,
                                   "WWW-Authenticate", (u_char *) plain,
                                   sizeof(plain) - 1);
}


/* 201 Created: Location is the collection path plus the new object's name */

static ngx_int_t
ngx_kubenova_api_location(ngx_http_request_t *r, ngx_kubenova_api_ctx_t *ctx,
    const char *body, size_t len)
{
    u_char       *p;
    json_t       *json, *name;
    size_t        n, nlen;
    ngx_str_t     uri, *tenant;
    const char   *s;

    static const char  tenants[] = NGX_KUBENOVA_API_PREFIX "/tenants/";

    json = json_loadb(body, len, 0, NULL);
    if (json == NULL) {
        return NGX_OK;
    }

    /* signup answers {"tenant": {...}, ...}; everything else the object */

    name = json_object_get(json, "name");

    if (!json_is_string(name)) {
        json_decref(json);
        return NGX_OK;
    }

    s = json_string_value(name);
    nlen = json_string_length(name);

    uri = r->uri;

    if (uri.len && uri.data[uri.len - 1] == '/') {
        uri.len--;
    }

    if (ngx_strcmp(ctx->route->path, "users/:tenant/apps") == 0) {

        /* the alias: the app lives under /tenants/{t}/apps */

        tenant = &ctx->params[0].value;

        uri.len = sizeof(tenants) - 1 + tenant->len + sizeof("/apps") - 1;
        uri.data = ngx_pnalloc(r->pool, uri.len);
        if (uri.data == NULL) {
            json_decref(json);
            return NGX_ERROR;
        }

        p = ngx_cpymem(uri.data, tenants, sizeof(tenants) - 1);
        p = ngx_cpymem(p, tenant->data, tenant->len);
        ngx_memcpy(p, "/apps", sizeof("/apps") - 1);
    }

    if (r->method != NGX_HTTP_POST) {
        /* PUT created the object at the request's own path */
        json_decref(json);
        return ngx_kubenova_add_header(r, &r->headers_out.headers,
                                       "Location", uri.data, uri.len);
    }

    n = uri.len + 1 + 3 * nlen;

    p = ngx_pnalloc(r->pool, n);
    if (p == NULL) {
        json_decref(json);
        return NGX_ERROR;
    }

    uri.data = ngx_cpymem(p, uri.data, uri.len);
    *uri.data++ = '/';
    uri.data = (u_char *) ngx_escape_uri(uri.data, (u_char *) s, nlen,
                                         NGX_ESCAPE_URI_COMPONENT);

    json_decref(json);

    return ngx_kubenova_add_header(r, &r->headers_out.headers,
                                   "Location", p, uri.data - p);
}


/*
 * GET /tenants/{t}/kubeconfig: the database answers the ciphertext, which
 * is opened here and served as the kubeconfig itself; or, for via=proxy,
 * a token the kube proxy's kubeconfig is written around.
 */

static ngx_int_t
ngx_kubenova_api_kubeconfig(ngx_http_request_t *r, const char *body,
    size_t len)
{
    json_t                         *json;
    ngx_int_t                       rc;
    ngx_str_t                       b64, sealed, aad, plain;
    const char                     *cluster, *tenant, *role, *text;
    ngx_http_kubenova_main_conf_t  *kmcf;

    kmcf = ngx_http_get_module_main_conf(r, ngx_http_kubenova_module);

    json = json_loadb(body, len, 0, NULL);

    /* via=proxy: a token for the kube proxy, nothing sealed */

    if (json && json_object_get(json, "token")) {
        json_decref(json);
        return ngx_kubenova_kube_proxy_kubeconfig(r, body, len);
    }

    if (json && !kmcf->has_secret_key) {
        json_decref(json);
        return ngx_kubenova_json_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                       "kubeconfig_unavailable",
                                       "kubenova_secret_key_file is not set");
    }

    if (json == NULL
        || json_unpack(json, "{s:s,s:s,s:s,s:s}", "cluster", &cluster,
                       "tenant", &tenant, "role", &role,
                       "ciphertext", &text) != 0)
    {
        if (json) {
            json_decref(json);
        }
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b64.data = (u_char *) text;
    b64.len = ngx_strlen(text);

    sealed.data = ngx_pnalloc(r->pool, ngx_base64_decoded_length(b64.len));
    plain.data = ngx_pnalloc(r->pool, ngx_base64_decoded_length(b64.len));

    if (sealed.data == NULL || plain.data == NULL
        || ngx_decode_base64(&sealed, &b64) != NGX_OK
        || sealed.len < NGX_KUBENOVA_SEAL_OVERHEAD
        || ngx_kubenova_crypto_kubeconfig_aad(r->pool, cluster, tenant, role,
                                              &aad) != NGX_OK
        || ngx_kubenova_crypto_open(kmcf->secret_key, &aad, sealed.data,
                                    sealed.len, plain.data) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "kubenova: cannot open the kubeconfig of tenant "
                      "\"%s\" on cluster \"%s\" (another "
                      "kubenova_secret_key_file?)", tenant, cluster);
        json_decref(json);
        return ngx_kubenova_json_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                       "internal_error",
                                       "the kubeconfig cannot be decrypted");
    }

    plain.len = sealed.len - NGX_KUBENOVA_SEAL_OVERHEAD;

    rc = ngx_kubenova_kubeconfig_send(r, tenant, cluster, role, plain.data,
                                      plain.len);

    json_decref(json);

    return rc;
}


/*
 * Does the client prefer text/csv to application/json?  Only the two
 * explicit media ranges count (a wildcard accepts both the same); a tie
 * goes to the one listed first.  q values in thousandths, as RFC 9110
 * allows at most three decimals.
 */

static ngx_uint_t
ngx_kubenova_api_wants_csv(ngx_http_request_t *r)
{
    u_char           *p, *last, *type, *type_end, *v;
    ngx_int_t         q, q_csv, q_json, scale;
    ngx_uint_t        i, csv_first;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    q_csv = -1;
    q_json = -1;
    csv_first = 0;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len != sizeof("Accept") - 1
            || ngx_strncasecmp(h[i].key.data, (u_char *) "Accept",
                               sizeof("Accept") - 1) != 0)
        {
            continue;
        }

        p = h[i].value.data;
        last = p + h[i].value.len;

        while (p < last) {

            /* one media range: type [; param]* up to a comma */

            while (p < last && (*p == ' ' || *p == '\t' || *p == ',')) {
                p++;
            }

            type = p;

            while (p < last && *p != ';' && *p != ',' && *p != ' '
                   && *p != '\t')
            {
                p++;
            }

            type_end = p;
            q = 1000;

            while (p < last && *p != ',') {
                if (*p == ';') {
                    p++;

                    while (p < last && (*p == ' ' || *p == '\t')) {
                        p++;
                    }

                    if (last - p >= 2 && (p[0] == 'q' || p[0] == 'Q')
                        && p[1] == '=')
                    {
                        /* 0, 0.5, 1, 1.000 ... */
                        v = p + 2;
                        q = 0;

                        if (v < last && *v == '1') {
                            q = 1000;

                        } else if (v + 1 < last && v[0] == '0' && v[1] == '.') {
                            for (scale = 100, v += 2;
                                 v < last && scale && *v >= '0' && *v <= '9';
                                 v++, scale /= 10)
                            {
                                q += (*v - '0') * scale;
                            }
                        }
                    }

                    continue;
                }

                p++;
            }

            if ((size_t) (type_end - type) == sizeof("text/csv") - 1
                && ngx_strncasecmp(type, (u_char *) "text/csv",
                                   sizeof("text/csv") - 1) == 0)
            {
                if (q_csv < 0) {
                    csv_first = (q_json < 0);
                }

                q_csv = ngx_max(q_csv, q);

            } else if ((size_t) (type_end - type)
                           == sizeof("application/json") - 1
                       && ngx_strncasecmp(type, (u_char *) "application/json",
                                          sizeof("application/json") - 1)
                          == 0)
            {
                q_json = ngx_max(q_json, q);
            }
        }
    }

    if (q_csv <= 0) {
        return 0;
    }

    return q_csv > q_json || (q_csv == q_json && csv_first);
}


/*
 * A usage read asked for as CSV: the database made the text (one place for
 * the format) and answered {"csv": "...", "continue": "..." | null}.
 */

static ngx_int_t
ngx_kubenova_api_csv(ngx_http_request_t *r, const char *body, size_t len)
{
    u_char      *text, *next;
    json_t      *json, *csv, *cont;
    size_t       n, next_len;

    static ngx_str_t  type = ngx_string("text/csv; charset=utf-8");

    json = json_loadb(body, len, 0, NULL);
    csv = json ? json_object_get(json, "csv") : NULL;

    if (!json_is_string(csv)) {
        if (json) {
            json_decref(json);
        }
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    n = json_string_length(csv);
    text = ngx_pnalloc(r->pool, n);
    if (text == NULL) {
        json_decref(json);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(text, json_string_value(csv), n);

    cont = json_object_get(json, "continue");

    if (json_is_string(cont)) {
        next = (u_char *) json_string_value(cont);
        next_len = json_string_length(cont);

        if (ngx_kubenova_add_header(r, &r->headers_out.headers,
                                    "KubeNova-Continue", next, next_len)
            != NGX_OK)
        {
            json_decref(json);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    json_decref(json);

    return ngx_kubenova_send_body(r, NGX_HTTP_OK, &type, text, n);
}
