/*
 * The kube proxy's edge (see the header and docs/adr/0005).
 *
 * Life of a request: the rewrite phase asks the database who the bearer
 * token is and whether its tenant is placed on the cluster of the path
 * (api.kube_proxy_auth), so limit_req in the later phases can key on
 * $kubenova_tenant.  The content handler finds the cluster's stream on this
 * worker, gives the request an id unique on that stream and sends a
 * TunnelRequest; the request body follows as TunnelData, read from the
 * client only as fast as the Operator's TunnelWindow allows.  The answer
 * comes back as TunnelResponse and TunnelData, each piece handed to the
 * client with a flush (watches); the Operator may have `window` bytes
 * unacknowledged and gets them back once the client has taken them, so a
 * request never holds more than its window.  The client going away sends
 * TunnelCancel; the stream going away fails the request.  Refusals are
 * Kubernetes Status objects, which kubectl prints.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <jansson.h>

#include "ngx_http_kubenova_module.h"
#include "ngx_kubenova_kube_proxy.h"
#include "ngx_kubenova_gateway.h"
#include "ngx_kubenova_kube_proxy_route.h"
#include "ngx_kubenova_json.h"


#define NGX_KUBENOVA_KP_BODY_WINDOW    65536       /* the protocol's start */
#define NGX_KUBENOVA_KP_CHUNK          16384       /* request body pieces */
#define NGX_KUBENOVA_KP_BUF            16384       /* response buffers */
#define NGX_KUBENOVA_KP_MAX_WINDOW     (16 * 1024 * 1024)
#define NGX_KUBENOVA_KP_STREAM_BACKLOG (1024 * 1024)
#define NGX_KUBENOVA_KP_MAX_HEADERS    100
#define NGX_KUBENOVA_KP_CLUSTER_LEN    63
#define NGX_KUBENOVA_KP_CA_MAX         (64 * 1024)
#define NGX_KUBENOVA_KP_CACHE_MAX      4096        /* answers per worker */


/* one stream's requests */
typedef struct {
    ngx_rbtree_t                     tree;        /* by id */
    ngx_rbtree_node_t                sentinel;
    ngx_kubenova_gw_stream_t        *stream;
    ngx_str_t                        cluster;     /* in the registry */
    uint64_t                         next_id;
    ngx_uint_t                       n;
} ngx_kubenova_kp_tunnels_t;


typedef struct {
    ngx_rbtree_node_t                node;        /* key: id */
    ngx_http_request_t              *request;
    ngx_kubenova_kp_tunnels_t       *tunnels;     /* NULL: not on a stream */

    ngx_str_t                        cluster;     /* NUL-terminated */
    ngx_str_t                        path;
    ngx_str_t                        role;
    ngx_str_t                        node_url;    /* the stream's node */
    ngx_str_t                        cache_key;

    /* authentication, in the rewrite phase */
    ngx_kubenova_pg_query_t          query;
    const char                      *params[2];
    ngx_uint_t                       auth_status;
    const char                      *auth_message;

    /* response body in flight to the client, and its window */
    ngx_chain_t                     *free;
    ngx_chain_t                     *busy;
    size_t                           window;
    size_t                           in_flight;

    /* request body the Operator may still take */
    size_t                           body_window;

    ngx_event_t                      timeout;     /* first byte */
    ngx_event_t                      wake;        /* failure, posted */
    ngx_uint_t                       fail_status;
    const char                      *fail_message;

    unsigned                         auth_running:1;
    unsigned                         auth_done:1;
    unsigned                         has_body:1;
    unsigned                         body_started:1;
    unsigned                         body_complete:1;
    unsigned                         body_sent:1;
    unsigned                         header_sent:1;
    unsigned                         done:1;
    unsigned                         failed:1;
} ngx_kubenova_kp_req_t;


static ngx_int_t ngx_kubenova_kp_parse(ngx_http_request_t *r,
    ngx_kubenova_kp_req_t *kp);
static void ngx_kubenova_kp_auth_done(void *data, ngx_int_t rc,
    PGresult *res);
static ngx_int_t ngx_kubenova_kp_cache_get(ngx_http_request_t *r,
    ngx_kubenova_kp_req_t *kp, ngx_str_t *key);
static void ngx_kubenova_kp_cache_put(ngx_http_request_t *r,
    ngx_kubenova_kp_req_t *kp, ngx_str_t *key);
static ngx_int_t ngx_kubenova_kp_status(ngx_http_request_t *r,
    ngx_uint_t code, const char *message);
static ngx_int_t ngx_kubenova_kp_open(ngx_http_request_t *r,
    ngx_kubenova_kp_req_t *kp, ngx_kubenova_gw_stream_t *s);
static ngx_uint_t ngx_kubenova_kp_header_passes(ngx_str_t *name);
static void ngx_kubenova_kp_body_ready(ngx_http_request_t *r);
static void ngx_kubenova_kp_read_handler(ngx_http_request_t *r);
static void ngx_kubenova_kp_send_body(ngx_kubenova_kp_req_t *kp);
static ngx_int_t ngx_kubenova_kp_send_data(ngx_kubenova_kp_req_t *kp,
    u_char *data, size_t len, ngx_uint_t end);
static void ngx_kubenova_kp_response(ngx_kubenova_kp_req_t *kp,
    Kubenova__V1__TunnelResponse *resp);
static void ngx_kubenova_kp_data(ngx_kubenova_kp_req_t *kp,
    Kubenova__V1__TunnelData *data);
static void ngx_kubenova_kp_write_handler(ngx_http_request_t *r);
static void ngx_kubenova_kp_output(ngx_kubenova_kp_req_t *kp,
    ngx_chain_t *out);
static void ngx_kubenova_kp_grant(ngx_kubenova_kp_req_t *kp);
static void ngx_kubenova_kp_cancel(ngx_kubenova_kp_req_t *kp,
    const char *reason);
static void ngx_kubenova_kp_detach(ngx_kubenova_kp_req_t *kp);
static void ngx_kubenova_kp_abort(ngx_kubenova_kp_req_t *kp,
    const char *reason, ngx_uint_t status, const char *message);
static void ngx_kubenova_kp_fail(ngx_kubenova_kp_req_t *kp,
    ngx_uint_t status, const char *message);
static void ngx_kubenova_kp_wake_handler(ngx_event_t *ev);
static void ngx_kubenova_kp_timeout_handler(ngx_event_t *ev);
static void ngx_kubenova_kp_cleanup(void *data);
static ngx_kubenova_kp_req_t *ngx_kubenova_kp_lookup(
    ngx_kubenova_kp_tunnels_t *tn, uint64_t id);


/*
 * Answers of api.kube_proxy_auth that let a request in, per worker, for
 * kubenova_kube_proxy_auth_cache (kubectl asks a dozen times in a row; the
 * kube-apiserver caches token reviews the same way): a revoked token, a
 * tenant moved elsewhere, are refused at most that much later.  Refusals
 * are never kept.  Bounded: the oldest entry goes first.
 */
typedef struct {
    ngx_str_node_t                   sn;          /* key: hash/cluster */
    ngx_queue_t                      queue;       /* oldest first */
    ngx_msec_t                       expires;
    ngx_str_t                        tenant;
    ngx_str_t                        role;
    ngx_str_t                        node_url;
} ngx_kubenova_kp_cache_t;


static ngx_rbtree_t       ngx_kubenova_kp_cache_tree;
static ngx_rbtree_node_t  ngx_kubenova_kp_cache_sentinel;
static ngx_queue_t        ngx_kubenova_kp_cache_queue;
static ngx_uint_t         ngx_kubenova_kp_cache_n;

static void ngx_kubenova_kp_cache_free(ngx_kubenova_kp_cache_t *e);


static const char  ngx_kubenova_kp_broken[] =
    "the cluster broke the tunnel protocol";
static const char  ngx_kubenova_kp_nomem[] = "the Manager is out of memory";

static const char  ngx_kubenova_kp_auth_sql[] =
    "SELECT status, tenant, role, message, node_url "
    "FROM api.kube_proxy_auth($1, $2)";


/* authentication */


ngx_int_t
ngx_kubenova_kube_proxy_auth_phase(ngx_http_request_t *r)
{
    ngx_kubenova_pg_pool_t        *pool;
    ngx_kubenova_kp_req_t         *kp;
    ngx_http_cleanup_t            *cln;
    ngx_http_kubenova_ctx_t       *kctx;
    ngx_http_kubenova_loc_conf_t  *klcf;

    klcf = ngx_http_get_module_loc_conf(r, ngx_http_kubenova_module);

    if (klcf->handler != NGX_KUBENOVA_HANDLER_KUBE_PROXY || r != r->main) {
        return NGX_DECLINED;
    }

    kctx = ngx_http_kubenova_get_ctx(r);
    if (kctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    kp = kctx->kube_proxy;

    if (kp) {
        /* phases run again once the database has answered */
        return kp->auth_running ? NGX_DONE : NGX_DECLINED;
    }

    kp = ngx_pcalloc(r->pool, sizeof(ngx_kubenova_kp_req_t));
    if (kp == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    kctx->kube_proxy = kp;
    kp->request = r;
    kp->auth_done = 1;          /* unless a query starts below */

    if (ngx_kubenova_kp_parse(r, kp) != NGX_OK) {
        return NGX_DECLINED;    /* the content handler says why */
    }

    if (!kctx->has_token) {
        kp->auth_status = NGX_HTTP_UNAUTHORIZED;
        kp->auth_message = "a KubeNova bearer token is required";
        return NGX_DECLINED;
    }

    if (kctx->bootstrap_admin) {
        kp->auth_status = NGX_HTTP_FORBIDDEN;
        kp->auth_message = "the kube proxy serves tenant users; admins use "
                           "the cluster's own credentials";
        return NGX_DECLINED;
    }

    kp->cache_key.len = NGX_KUBENOVA_TOKEN_HASH_LEN + 1 + kp->cluster.len;
    kp->cache_key.data = ngx_pnalloc(r->pool, kp->cache_key.len);
    if (kp->cache_key.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(kp->cache_key.data, "%*s/%V", NGX_KUBENOVA_TOKEN_HASH_LEN,
                kctx->token_hash, &kp->cluster);

    if (klcf->kube_proxy_auth_cache
        && ngx_kubenova_kp_cache_get(r, kp, &kp->cache_key) == NGX_OK)
    {
        return NGX_DECLINED;
    }

    pool = ngx_http_kubenova_pool(r);
    if (pool == NULL) {
        kp->auth_status = NGX_HTTP_SERVICE_UNAVAILABLE;
        kp->auth_message = "the Manager has no database configured";
        return NGX_DECLINED;
    }

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_kubenova_kp_cleanup;
    cln->data = kp;

    kp->params[0] = ngx_pnalloc(r->pool, NGX_KUBENOVA_TOKEN_HASH_LEN + 1);
    if (kp->params[0] == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy((u_char *) kp->params[0], kctx->token_hash,
               NGX_KUBENOVA_TOKEN_HASH_LEN);
    ((u_char *) kp->params[0])[NGX_KUBENOVA_TOKEN_HASH_LEN] = '\0';
    kp->params[1] = (const char *) kp->cluster.data;

    kp->query.sql = ngx_kubenova_kp_auth_sql;
    kp->query.nparams = 2;
    kp->query.values = kp->params;
    kp->query.done = ngx_kubenova_kp_auth_done;
    kp->query.data = kp;
    kp->query.lease.log = r->connection->log;

    if (ngx_kubenova_pg_query(pool, &kp->query) != NGX_AGAIN) {
        kp->auth_status = NGX_HTTP_SERVICE_UNAVAILABLE;
        kp->auth_message = "the Manager's database is busy or unavailable; "
                           "retry";
        return NGX_DECLINED;
    }

    kp->auth_running = 1;
    kp->auth_done = 0;

    return NGX_DONE;
}


/*
 * <location>clusters/<cluster>/<kube path>: the path is passed on as the
 * client wrote it (percent-encoding kept), without dot segments or encoded
 * slashes, which would let the Operator's view of the path differ from
 * the apiserver's.
 */

static ngx_int_t
ngx_kubenova_kp_parse(ngx_http_request_t *r, ngx_kubenova_kp_req_t *kp)
{
    u_char                    *p, *last, *start, *q;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    p = r->unparsed_uri.data;
    last = p + r->unparsed_uri.len;

    q = ngx_strlchr(p, last, '?');
    if (q) {
        last = q;
    }

    kp->auth_status = NGX_HTTP_NOT_FOUND;
    kp->auth_message = "the kube proxy serves <prefix>clusters/<cluster>/"
                       "<Kubernetes API path>";

    if ((size_t) (last - p) < clcf->name.len + sizeof("clusters/") - 1
        || ngx_strncmp(p, clcf->name.data, clcf->name.len) != 0
        || ngx_strncmp(p + clcf->name.len, "clusters/",
                       sizeof("clusters/") - 1) != 0)
    {
        return NGX_ERROR;
    }

    p += clcf->name.len + sizeof("clusters/") - 1;
    start = p;

    while (p < last && *p != '/') {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')
              || *p == '-' || *p == '.'))
        {
            return NGX_ERROR;
        }
        p++;
    }

    if (p == start || p - start > NGX_KUBENOVA_KP_CLUSTER_LEN) {
        return NGX_ERROR;
    }

    kp->cluster.len = p - start;
    kp->cluster.data = ngx_pnalloc(r->pool, kp->cluster.len + 1);
    if (kp->cluster.data == NULL) {
        kp->auth_status = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NGX_ERROR;
    }

    ngx_memcpy(kp->cluster.data, start, kp->cluster.len);
    kp->cluster.data[kp->cluster.len] = '\0';

    if (p == last) {
        ngx_str_set(&kp->path, "/");

    } else {
        kp->path.data = p;
        kp->path.len = last - p;
    }

    /* no "//", "/./", "/../", trailing "/." or "/..", no %2F, no %2E */

    kp->auth_status = NGX_HTTP_BAD_REQUEST;
    kp->auth_message = "the path has dot segments, empty segments or "
                       "encoded slashes or dots";

    for (p = kp->path.data; p < kp->path.data + kp->path.len; p++) {
        if (*p == '%' && last - p >= 3
            && (p[1] == '2')
            && (p[2] == 'f' || p[2] == 'F' || p[2] == 'e' || p[2] == 'E'))
        {
            return NGX_ERROR;
        }

        if (*p != '/') {
            continue;
        }

        q = p + 1;

        if (q < last && *q == '/') {
            return NGX_ERROR;
        }

        if (q < last && *q == '.') {
            q++;
            if (q < last && *q == '.') {
                q++;
            }
            if (q == last || *q == '/') {
                return NGX_ERROR;
            }
        }
    }

    kp->auth_status = 0;
    kp->auth_message = NULL;

    return NGX_OK;
}


static void
ngx_kubenova_kp_auth_done(void *data, ngx_int_t rc, PGresult *res)
{
    ngx_kubenova_kp_req_t  *kp = data;

    size_t                    len;
    ngx_int_t                 status;
    ngx_connection_t         *c;
    ngx_http_request_t       *r;
    ngx_http_kubenova_ctx_t  *kctx;

    r = kp->request;
    c = r->connection;
    kctx = ngx_http_kubenova_get_ctx(r);

    kp->auth_running = 0;
    kp->auth_done = 1;

    if (rc != NGX_OK) {
        kp->auth_status = NGX_HTTP_SERVICE_UNAVAILABLE;
        kp->auth_message = "the Manager's database is unavailable; retry";
        goto resume;
    }

    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1
        || PQnfields(res) != 5)
    {
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "kubenova: kube proxy authentication failed: %s",
                      PQresultErrorMessage(res));
        kp->auth_status = NGX_HTTP_INTERNAL_SERVER_ERROR;
        kp->auth_message = "the Manager could not authenticate the request";
        goto resume;
    }

    status = ngx_atoi((u_char *) PQgetvalue(res, 0, 0),
                      PQgetlength(res, 0, 0));

    if (!PQgetisnull(res, 0, 1) && kctx
        && ngx_http_kubenova_set_identity(r, kctx, NULL,
                                          PQgetvalue(res, 0, 1))
           != NGX_OK)
    {
        status = NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (!PQgetisnull(res, 0, 2)) {
        len = PQgetlength(res, 0, 2);
        kp->role.data = ngx_pnalloc(r->pool, len + 1);
        if (kp->role.data == NULL) {
            status = NGX_HTTP_INTERNAL_SERVER_ERROR;

        } else {
            ngx_memcpy(kp->role.data, PQgetvalue(res, 0, 2), len + 1);
            kp->role.len = len;
        }
    }

    if (!PQgetisnull(res, 0, 3)) {
        len = PQgetlength(res, 0, 3);
        kp->auth_message = ngx_pnalloc(r->pool, len + 1);
        if (kp->auth_message) {
            ngx_memcpy((u_char *) kp->auth_message, PQgetvalue(res, 0, 3),
                       len + 1);
        }
    }

    if (!PQgetisnull(res, 0, 4)) {
        len = PQgetlength(res, 0, 4);
        kp->node_url.data = ngx_pnalloc(r->pool, len);
        if (kp->node_url.data) {
            ngx_memcpy(kp->node_url.data, PQgetvalue(res, 0, 4), len);
            kp->node_url.len = len;
        }
    }

    if (status == NGX_ERROR || status < 200 || status > 599) {
        status = NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    kp->auth_status = (status == NGX_HTTP_OK) ? 0 : (ngx_uint_t) status;

    if (kp->auth_status == 0 && kctx && kctx->tenant.len && kp->role.len) {
        ngx_kubenova_kp_cache_put(r, kp, &kp->cache_key);
    }

    if (kp->auth_status && kp->auth_message == NULL) {
        kp->auth_message = "refused";
    }

resume:

    /* the phases go on where they stopped: this handler, then the rest */

    ngx_http_core_run_phases(r);
    ngx_http_run_posted_requests(c);
}


/* the answers cache */


static ngx_int_t
ngx_kubenova_kp_cache_get(ngx_http_request_t *r, ngx_kubenova_kp_req_t *kp,
    ngx_str_t *key)
{
    ngx_str_node_t           *sn;
    ngx_kubenova_kp_cache_t  *e;
    ngx_http_kubenova_ctx_t  *kctx;

    if (ngx_kubenova_kp_cache_tree.root == NULL) {
        return NGX_DECLINED;
    }

    sn = ngx_str_rbtree_lookup(&ngx_kubenova_kp_cache_tree, key,
                               ngx_crc32_short(key->data, key->len));
    if (sn == NULL) {
        return NGX_DECLINED;
    }

    e = (ngx_kubenova_kp_cache_t *) sn;

    if ((ngx_msec_int_t) (e->expires - ngx_current_msec) <= 0) {
        ngx_kubenova_kp_cache_free(e);
        return NGX_DECLINED;
    }

    kctx = ngx_http_kubenova_get_ctx(r);
    if (kctx == NULL) {
        return NGX_DECLINED;
    }

    /* the request's own copies: the entry may go before the request */

    kctx->tenant.data = ngx_pstrdup(r->pool, &e->tenant);
    kctx->tenant.len = e->tenant.len;

    kp->role.data = ngx_pnalloc(r->pool, e->role.len + 1);  /* a C string */
    kp->role.len = e->role.len;

    kp->node_url.data = ngx_pstrdup(r->pool, &e->node_url);
    kp->node_url.len = e->node_url.len;

    if (kctx->tenant.data == NULL || kp->role.data == NULL
        || (e->node_url.len && kp->node_url.data == NULL))
    {
        return NGX_DECLINED;
    }

    *ngx_cpymem(kp->role.data, e->role.data, e->role.len) = '\0';

    return NGX_OK;
}


static void
ngx_kubenova_kp_cache_put(ngx_http_request_t *r, ngx_kubenova_kp_req_t *kp,
    ngx_str_t *key)
{
    u_char                        *p;
    ngx_str_node_t                *sn;
    ngx_queue_t                   *q;
    ngx_kubenova_kp_cache_t       *e;
    ngx_http_kubenova_ctx_t       *kctx;
    ngx_http_kubenova_loc_conf_t  *klcf;

    klcf = ngx_http_get_module_loc_conf(r, ngx_http_kubenova_module);
    kctx = ngx_http_kubenova_get_ctx(r);

    if (klcf->kube_proxy_auth_cache == 0 || kctx == NULL) {
        return;
    }

    if (ngx_kubenova_kp_cache_tree.root == NULL) {
        ngx_rbtree_init(&ngx_kubenova_kp_cache_tree,
                        &ngx_kubenova_kp_cache_sentinel,
                        ngx_str_rbtree_insert_value);
        ngx_queue_init(&ngx_kubenova_kp_cache_queue);
    }

    sn = ngx_str_rbtree_lookup(&ngx_kubenova_kp_cache_tree, key,
                               ngx_crc32_short(key->data, key->len));
    if (sn) {
        ngx_kubenova_kp_cache_free((ngx_kubenova_kp_cache_t *) sn);
    }

    if (ngx_kubenova_kp_cache_n == NGX_KUBENOVA_KP_CACHE_MAX) {
        q = ngx_queue_head(&ngx_kubenova_kp_cache_queue);
        ngx_kubenova_kp_cache_free(ngx_queue_data(q, ngx_kubenova_kp_cache_t,
                                                  queue));
    }

    e = ngx_alloc(sizeof(ngx_kubenova_kp_cache_t) + key->len
                  + kctx->tenant.len + kp->role.len + kp->node_url.len,
                  r->connection->log);
    if (e == NULL) {
        return;
    }

    p = (u_char *) (e + 1);

    e->sn.str.data = p;
    e->sn.str.len = key->len;
    p = ngx_cpymem(p, key->data, key->len);

    e->tenant.data = p;
    e->tenant.len = kctx->tenant.len;
    p = ngx_cpymem(p, kctx->tenant.data, kctx->tenant.len);

    e->role.data = p;
    e->role.len = kp->role.len;
    p = ngx_cpymem(p, kp->role.data, kp->role.len);

    e->node_url.data = p;
    e->node_url.len = kp->node_url.len;
    ngx_memcpy(p, kp->node_url.data, kp->node_url.len);

    e->sn.node.key = ngx_crc32_short(key->data, key->len);
    e->expires = ngx_current_msec + klcf->kube_proxy_auth_cache;

    ngx_rbtree_insert(&ngx_kubenova_kp_cache_tree, &e->sn.node);
    ngx_queue_insert_tail(&ngx_kubenova_kp_cache_queue, &e->queue);
    ngx_kubenova_kp_cache_n++;
}


static void
ngx_kubenova_kp_cache_free(ngx_kubenova_kp_cache_t *e)
{
    ngx_rbtree_delete(&ngx_kubenova_kp_cache_tree, &e->sn.node);
    ngx_queue_remove(&e->queue);
    ngx_kubenova_kp_cache_n--;
    ngx_free(e);
}


/* Kubernetes Status objects: what kubectl prints well */

static ngx_int_t
ngx_kubenova_kp_status(ngx_http_request_t *r, ngx_uint_t code,
    const char *message)
{
    const char  *reason;

    switch (code) {
    case NGX_HTTP_BAD_REQUEST:         reason = "BadRequest"; break;
    case NGX_HTTP_UNAUTHORIZED:        reason = "Unauthorized"; break;
    case NGX_HTTP_FORBIDDEN:           reason = "Forbidden"; break;
    case NGX_HTTP_NOT_FOUND:           reason = "NotFound"; break;
    case NGX_HTTP_NOT_ALLOWED:         reason = "MethodNotAllowed"; break;
    case NGX_HTTP_TOO_MANY_REQUESTS:   reason = "TooManyRequests"; break;
    case NGX_HTTP_NOT_IMPLEMENTED:     reason = "NotImplemented"; break;
    case NGX_HTTP_SERVICE_UNAVAILABLE: reason = "ServiceUnavailable"; break;
    case NGX_HTTP_GATEWAY_TIME_OUT:    reason = "Timeout"; break;
    default:                           reason = "InternalError"; break;
    }

    if (code == NGX_HTTP_SERVICE_UNAVAILABLE
        && ngx_kubenova_add_header(r, &r->headers_out.headers, "Retry-After",
                                   (u_char *) "1", 1)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_kubenova_json_send(r, code,
               json_pack("{s:s,s:s,s:{},s:s,s:s,s:s,s:i}",
                         "kind", "Status", "apiVersion", "v1",
                         "metadata", "status", "Failure",
                         "message", message, "reason", reason,
                         "code", (int) code));
}


/* the request */


ngx_int_t
ngx_kubenova_kube_proxy_handler(ngx_http_request_t *r)
{
    u_char                         *p;
    ngx_int_t                       rc;
    ngx_kubenova_kp_req_t          *kp;
    ngx_kubenova_gw_stream_t       *s;
    ngx_http_kubenova_ctx_t        *kctx;
    ngx_http_kubenova_main_conf_t  *kmcf;

    kctx = ngx_http_kubenova_get_ctx(r);
    kp = kctx ? kctx->kube_proxy : NULL;

    if (kp == NULL || !kp->auth_done) {
        return ngx_kubenova_kp_status(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                      "the request was not authenticated");
    }

    if (kp->auth_status) {
        return ngx_kubenova_kp_status(r, kp->auth_status, kp->auth_message);
    }

    if (r->headers_in.upgrade) {
        return ngx_kubenova_kp_status(r, NGX_HTTP_NOT_IMPLEMENTED,
                   "connection upgrades (exec, attach, port-forward) are not "
                   "supported through the KubeNova kube proxy");
    }

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD|NGX_HTTP_POST|NGX_HTTP_PUT
                       |NGX_HTTP_PATCH|NGX_HTTP_DELETE)))
    {
        return ngx_kubenova_kp_status(r, NGX_HTTP_NOT_ALLOWED,
                                      "the kube proxy relays GET, HEAD, "
                                      "POST, PUT, PATCH and DELETE");
    }

    kmcf = ngx_http_get_module_main_conf(r, ngx_http_kubenova_module);

    s = ngx_kubenova_gateway_stream(kmcf->gateway, &kp->cluster);

    if (s == NULL
        && ngx_kubenova_kp_route_forward(r, &kp->cluster, &kp->node_url)
           == NGX_DONE)
    {
        return NGX_DONE;        /* another worker has the stream */
    }

    if (s == NULL) {
        p = ngx_pnalloc(r->pool, 128 + kp->cluster.len);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_sprintf(p, "cluster %V has no Operator connected to this "
                       "Manager; retry later%Z", &kp->cluster);

        return ngx_kubenova_kp_status(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                      (char *) p);
    }

    rc = ngx_kubenova_kp_open(r, kp, s);
    if (rc != NGX_DECLINED) {
        return rc;              /* refused: the answer is out */
    }

    if (kp->has_body) {
        r->request_body_no_buffering = 1;

        rc = ngx_http_read_client_request_body(r,
                                               ngx_kubenova_kp_body_ready);

        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
            return rc;
        }

        return NGX_DONE;
    }

    /* until the answer: notice a client that goes away, never rerun */

    r->main->count++;
    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_request_empty_handler;

    return NGX_DONE;
}


/* the TunnelRequest; NGX_DECLINED when sent, else what the handler answers */

static ngx_int_t
ngx_kubenova_kp_open(ngx_http_request_t *r, ngx_kubenova_kp_req_t *kp,
    ngx_kubenova_gw_stream_t *s)
{
    void                          **slot;
    ngx_uint_t                      i, n;
    ngx_list_part_t                *part;
    ngx_table_elt_t                *h;
    ngx_http_cleanup_t             *cln;
    ngx_kubenova_kp_tunnels_t      *tn;
    ngx_http_kubenova_ctx_t        *kctx;
    ngx_http_kubenova_loc_conf_t   *klcf;
    Kubenova__V1__Header           *hdrs, **hp;
    Kubenova__V1__TunnelRequest     req = KUBENOVA__V1__TUNNEL_REQUEST__INIT;
    Kubenova__V1__ManagerMessage    msg = KUBENOVA__V1__MANAGER_MESSAGE__INIT;

    klcf = ngx_http_get_module_loc_conf(r, ngx_http_kubenova_module);
    kctx = ngx_http_kubenova_get_ctx(r);

    slot = ngx_kubenova_gateway_tunnels(s);
    tn = *slot;

    if (tn == NULL) {
        return ngx_kubenova_kp_status(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                      "the cluster's stream is not ready; "
                                      "retry");
    }

    /* bounded: past these a request is refused, never queued */

    if (tn->n >= klcf->kube_proxy_max_requests
        || ngx_kubenova_gateway_pending(s) > NGX_KUBENOVA_KP_STREAM_BACKLOG)
    {
        return ngx_kubenova_kp_status(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                   "too many requests in flight to this cluster; retry");
    }

    /* the client's headers, but for hop-by-hop and identity ones */

    hdrs = ngx_palloc(r->pool, NGX_KUBENOVA_KP_MAX_HEADERS
                               * sizeof(Kubenova__V1__Header));
    hp = ngx_palloc(r->pool, NGX_KUBENOVA_KP_MAX_HEADERS
                             * sizeof(Kubenova__V1__Header *));
    if (hdrs == NULL || hp == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    n = 0;
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash == 0 || !ngx_kubenova_kp_header_passes(&h[i].key)) {
            continue;
        }

        if (n == NGX_KUBENOVA_KP_MAX_HEADERS) {
            return ngx_kubenova_kp_status(r, NGX_HTTP_BAD_REQUEST,
                                          "too many request headers");
        }

        kubenova__v1__header__init(&hdrs[n]);
        hdrs[n].name = ngx_pnalloc(r->pool, h[i].key.len + 1);
        hdrs[n].value = ngx_pnalloc(r->pool, h[i].value.len + 1);

        if (hdrs[n].name == NULL || hdrs[n].value == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_strlow((u_char *) hdrs[n].name, h[i].key.data, h[i].key.len);
        hdrs[n].name[h[i].key.len] = '\0';
        ngx_memcpy(hdrs[n].value, h[i].value.data, h[i].value.len);
        hdrs[n].value[h[i].value.len] = '\0';

        hp[n] = &hdrs[n];
        n++;
    }

    kp->has_body = (r->headers_in.content_length_n > 0
                    || r->headers_in.chunked);

#if (NGX_HTTP_V2)
    if (r->stream && !r->stream->in_closed) {
        kp->has_body = 1;
    }
#endif

    req.id = ++tn->next_id;
    req.tenant = (char *) ngx_pnalloc(r->pool, kctx->tenant.len + 1);
    req.method = ngx_pnalloc(r->pool, r->method_name.len + 1);
    req.path = ngx_pnalloc(r->pool, kp->path.len + 1);
    req.query = ngx_pnalloc(r->pool, r->args.len + 1);

    if (req.tenant == NULL || req.method == NULL || req.path == NULL
        || req.query == NULL)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    *ngx_cpymem(req.tenant, kctx->tenant.data, kctx->tenant.len) = '\0';
    *ngx_cpymem(req.method, r->method_name.data, r->method_name.len) = '\0';
    *ngx_cpymem(req.path, kp->path.data, kp->path.len) = '\0';
    *ngx_cpymem(req.query, r->args.data, r->args.len) = '\0';

    req.role = (char *) kp->role.data;
    req.n_headers = n;
    req.headers = hp;
    req.has_body = kp->has_body;
    req.window = (uint32_t) klcf->kube_proxy_window;

    msg.body_case = KUBENOVA__V1__MANAGER_MESSAGE__BODY_TUNNEL_REQUEST;
    msg.tunnel_request = &req;

    if (ngx_kubenova_gateway_send(s, &msg.base) != NGX_OK) {
        return ngx_kubenova_kp_status(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                      "the cluster's stream is closing; "
                                      "retry");
    }

    kp->node.key = (ngx_rbtree_key_t) req.id;
    ngx_rbtree_insert(&tn->tree, &kp->node);
    tn->n++;
    kp->tunnels = tn;

    kp->window = klcf->kube_proxy_window;
    kp->body_window = NGX_KUBENOVA_KP_BODY_WINDOW;

    kp->timeout.handler = ngx_kubenova_kp_timeout_handler;
    kp->timeout.data = kp;
    kp->timeout.log = r->connection->log;
    ngx_add_timer(&kp->timeout, klcf->kube_proxy_timeout);

    kp->wake.handler = ngx_kubenova_kp_wake_handler;
    kp->wake.data = kp;
    kp->wake.log = r->connection->log;

    if (kp->query.sql == NULL) {
        /* no cleanup yet: no query ran (never, with a token) */
        cln = ngx_http_cleanup_add(r, 0);
        if (cln == NULL) {
            ngx_kubenova_kp_cancel(kp, "the Manager is out of memory");
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        cln->handler = ngx_kubenova_kp_cleanup;
        cln->data = kp;
    }

    return NGX_DECLINED;
}


static ngx_uint_t
ngx_kubenova_kp_header_passes(ngx_str_t *name)
{
    ngx_uint_t  i;

    static ngx_str_t  drop[] = {
        ngx_string("host"),
        ngx_string("authorization"),
        ngx_string("proxy-authorization"),
        ngx_string("connection"),
        ngx_string("keep-alive"),
        ngx_string("proxy-connection"),
        ngx_string("te"),
        ngx_string("trailer"),
        ngx_string("transfer-encoding"),
        ngx_string("upgrade"),
        ngx_string("http2-settings"),
        ngx_string("content-length"),
        ngx_null_string
    };

    /* identities the apiserver would honour: never from a client; nor
     * the Manager's own (X-KubeNova-Relayed) */

    if ((name->len >= sizeof("impersonate-") - 1
         && ngx_strncasecmp(name->data, (u_char *) "impersonate-",
                            sizeof("impersonate-") - 1) == 0)
        || (name->len >= sizeof("x-remote-") - 1
            && ngx_strncasecmp(name->data, (u_char *) "x-remote-",
                               sizeof("x-remote-") - 1) == 0)
        || (name->len >= sizeof("x-kubenova-") - 1
            && ngx_strncasecmp(name->data, (u_char *) "x-kubenova-",
                               sizeof("x-kubenova-") - 1) == 0))
    {
        return 0;
    }

    for (i = 0; drop[i].len; i++) {
        if (name->len == drop[i].len
            && ngx_strncasecmp(name->data, drop[i].data, name->len) == 0)
        {
            return 0;
        }
    }

    return 1;
}


/* the request body, as far as the Operator's window allows */


static void
ngx_kubenova_kp_body_ready(ngx_http_request_t *r)
{
    ngx_kubenova_kp_req_t  *kp;

    kp = ngx_http_kubenova_get_ctx(r)->kube_proxy;

    kp->body_started = 1;
    r->read_event_handler = ngx_kubenova_kp_read_handler;

    ngx_kubenova_kp_send_body(kp);
}


static void
ngx_kubenova_kp_read_handler(ngx_http_request_t *r)
{
    ngx_kubenova_kp_req_t  *kp;

    kp = ngx_http_kubenova_get_ctx(r)->kube_proxy;

    ngx_kubenova_kp_send_body(kp);
}


static void
ngx_kubenova_kp_send_body(ngx_kubenova_kp_req_t *kp)
{
    size_t               n;
    ngx_int_t            rc;
    ngx_buf_t           *b;
    ngx_chain_t         *cl;
    ngx_http_request_t  *r;

    r = kp->request;

    while (kp->tunnels && !kp->body_sent) {

        if (r->request_body) {
            for (cl = r->request_body->bufs; cl; cl = cl->next) {
                b = cl->buf;

                while (b->pos < b->last) {
                    if (kp->body_window == 0) {
                        return;                 /* until TunnelWindow */
                    }

                    n = ngx_min((size_t) (b->last - b->pos), kp->body_window);
                    n = ngx_min(n, (size_t) NGX_KUBENOVA_KP_CHUNK);

                    if (ngx_kubenova_kp_send_data(kp, b->pos, n, 0)
                        != NGX_OK)
                    {
                        return;
                    }

                    b->pos += n;
                    kp->body_window -= n;
                }
            }

            r->request_body->bufs = NULL;
        }

        if (kp->body_complete) {
            if (ngx_kubenova_kp_send_data(kp, NULL, 0, 1) != NGX_OK) {
                return;
            }

            kp->body_sent = 1;
            r->read_event_handler = ngx_http_test_reading;
            return;
        }

        if (!r->reading_body) {
            kp->body_complete = 1;              /* all there at once */
            continue;
        }

        rc = ngx_http_read_unbuffered_request_body(r);

        if (rc >= NGX_HTTP_SPECIAL_RESPONSE || rc == NGX_ERROR) {
            ngx_kubenova_kp_cancel(kp, "the client's request body broke off");
            ngx_http_finalize_request(r, rc == NGX_ERROR
                                         ? NGX_HTTP_CLIENT_CLOSED_REQUEST
                                         : rc);
            return;
        }

        if (rc == NGX_OK) {
            kp->body_complete = 1;

        } else if (r->request_body->bufs == NULL) {
            return;                             /* until more arrives */
        }
    }
}


static ngx_int_t
ngx_kubenova_kp_send_data(ngx_kubenova_kp_req_t *kp, u_char *data,
    size_t len, ngx_uint_t end)
{
    Kubenova__V1__TunnelData      d = KUBENOVA__V1__TUNNEL_DATA__INIT;
    Kubenova__V1__ManagerMessage  msg = KUBENOVA__V1__MANAGER_MESSAGE__INIT;

    d.id = (uint64_t) kp->node.key;
    d.data.data = data;
    d.data.len = len;
    d.end = end;

    msg.body_case = KUBENOVA__V1__MANAGER_MESSAGE__BODY_TUNNEL_DATA;
    msg.tunnel_data = &d;

    return ngx_kubenova_gateway_send(kp->tunnels->stream, &msg.base);
}


/* messages from the Operator */


ngx_uint_t
ngx_kubenova_kube_proxy_is_tunnel(Kubenova__V1__OperatorMessage *m)
{
    switch (m->body_case) {
    case KUBENOVA__V1__OPERATOR_MESSAGE__BODY_TUNNEL_RESPONSE:
    case KUBENOVA__V1__OPERATOR_MESSAGE__BODY_TUNNEL_DATA:
    case KUBENOVA__V1__OPERATOR_MESSAGE__BODY_TUNNEL_WINDOW:
    case KUBENOVA__V1__OPERATOR_MESSAGE__BODY_TUNNEL_CANCEL:
        return 1;
    default:
        return 0;
    }
}


ngx_int_t
ngx_kubenova_kube_proxy_message(void **tunnels,
    Kubenova__V1__OperatorMessage *m)
{
    uint64_t                    id;
    ngx_connection_t           *c;
    ngx_kubenova_kp_req_t      *kp;
    ngx_kubenova_kp_tunnels_t  *tn = *tunnels;

    switch (m->body_case) {
    case KUBENOVA__V1__OPERATOR_MESSAGE__BODY_TUNNEL_RESPONSE:
        id = m->tunnel_response->id;
        break;
    case KUBENOVA__V1__OPERATOR_MESSAGE__BODY_TUNNEL_DATA:
        id = m->tunnel_data->id;
        break;
    case KUBENOVA__V1__OPERATOR_MESSAGE__BODY_TUNNEL_WINDOW:
        id = m->tunnel_window->id;
        break;
    case KUBENOVA__V1__OPERATOR_MESSAGE__BODY_TUNNEL_CANCEL:
        id = m->tunnel_cancel->id;
        break;
    default:
        return NGX_ERROR;
    }

    /* an id already forgotten (cancelled on this side): crossed in flight */

    kp = tn ? ngx_kubenova_kp_lookup(tn, id) : NULL;
    if (kp == NULL) {
        return NGX_OK;
    }

    c = kp->request->connection;

    switch (m->body_case) {

    case KUBENOVA__V1__OPERATOR_MESSAGE__BODY_TUNNEL_RESPONSE:
        ngx_kubenova_kp_response(kp, m->tunnel_response);
        break;

    case KUBENOVA__V1__OPERATOR_MESSAGE__BODY_TUNNEL_DATA:
        ngx_kubenova_kp_data(kp, m->tunnel_data);
        break;

    case KUBENOVA__V1__OPERATOR_MESSAGE__BODY_TUNNEL_WINDOW:
        if (m->tunnel_window->increment > NGX_KUBENOVA_KP_MAX_WINDOW
            || kp->body_window + m->tunnel_window->increment
               > NGX_KUBENOVA_KP_MAX_WINDOW)
        {
            ngx_kubenova_kp_abort(kp, "request body window overflow",
                                  NGX_HTTP_BAD_GATEWAY, ngx_kubenova_kp_broken);
            break;
        }

        kp->body_window += m->tunnel_window->increment;

        if (kp->body_started && !kp->body_sent) {
            ngx_kubenova_kp_send_body(kp);
        }

        break;

    default: /* KUBENOVA__V1__OPERATOR_MESSAGE__BODY_TUNNEL_CANCEL */
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "kubenova: the cluster cancelled kube proxy request "
                      "%uL: %s", id,
                      m->tunnel_cancel->reason ? m->tunnel_cancel->reason
                                               : "");
        ngx_kubenova_kp_detach(kp);
        ngx_kubenova_kp_fail(kp, NGX_HTTP_BAD_GATEWAY,
                             "the cluster abandoned the request");
        break;
    }

    ngx_http_run_posted_requests(c);

    return NGX_OK;
}


static void
ngx_kubenova_kp_response(ngx_kubenova_kp_req_t *kp,
    Kubenova__V1__TunnelResponse *resp)
{
    size_t               i;
    ngx_str_t            name;
    ngx_int_t            rc;
    ngx_http_request_t  *r;
    Kubenova__V1__Header *h;

    r = kp->request;

    if (kp->header_sent || kp->failed || resp->status < 100
        || resp->status > 599)
    {
        ngx_kubenova_kp_abort(kp, "unexpected TunnelResponse",
                              NGX_HTTP_BAD_GATEWAY, ngx_kubenova_kp_broken);
        return;
    }

    if (kp->timeout.timer_set) {
        ngx_del_timer(&kp->timeout);
    }

    r->headers_out.status = resp->status;
    r->headers_out.content_length_n = -1;

    for (i = 0; i < resp->n_headers; i++) {
        h = resp->headers[i];

        if (h->name == NULL || h->value == NULL) {
            continue;
        }

        name.data = (u_char *) h->name;
        name.len = ngx_strlen(h->name);

        if (name.len == sizeof("content-type") - 1
            && ngx_strncasecmp(name.data, (u_char *) "content-type",
                               name.len) == 0)
        {
            r->headers_out.content_type.len = ngx_strlen(h->value);
            r->headers_out.content_type.data =
                ngx_pstrdup(r->pool, &(ngx_str_t) {
                    r->headers_out.content_type.len, (u_char *) h->value });

            if (r->headers_out.content_type.data == NULL) {
                goto failed;
            }

            r->headers_out.content_type_len = r->headers_out.content_type.len;
            continue;
        }

        /* the length is the Operator's business: the body is re-framed */

        if (!ngx_kubenova_kp_header_passes(&name)) {
            continue;
        }

        if (ngx_kubenova_add_header(r, &r->headers_out.headers, h->name,
                                    (u_char *) h->value,
                                    ngx_strlen(h->value))
            != NGX_OK)
        {
            goto failed;
        }
    }

    kp->header_sent = 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        ngx_kubenova_kp_cancel(kp, "the client went away");
        ngx_http_finalize_request(r, rc);
    }

    return;

failed:

    ngx_kubenova_kp_abort(kp, ngx_kubenova_kp_nomem,
                          NGX_HTTP_INTERNAL_SERVER_ERROR,
                          ngx_kubenova_kp_nomem);
}


static void
ngx_kubenova_kp_data(ngx_kubenova_kp_req_t *kp, Kubenova__V1__TunnelData *d)
{
    u_char              *p;
    size_t               n, len;
    ngx_buf_t           *b;
    ngx_chain_t         *out, **ll, *cl;
    ngx_http_request_t  *r;

    r = kp->request;
    len = d->data.len;

    if (!kp->header_sent || kp->failed || kp->in_flight + len > kp->window) {
        ngx_kubenova_kp_abort(kp, "TunnelData out of turn or past the window",
                              NGX_HTTP_BAD_GATEWAY, ngx_kubenova_kp_broken);
        return;
    }

    kp->in_flight += len;

    if (d->end) {
        /* both ways over: the id is forgotten */
        kp->done = 1;
        ngx_kubenova_kp_detach(kp);
    }

    if (r->header_only) {
        /* HEAD, 204, 304: nothing for the client, nothing to hold */
        kp->in_flight = 0;
        ngx_kubenova_kp_grant(kp);

        if (d->end) {
            ngx_http_finalize_request(r, NGX_OK);
        }

        return;
    }

    out = NULL;
    ll = &out;
    p = d->data.data;

    while (len) {
        cl = ngx_chain_get_free_buf(r->pool, &kp->free);
        if (cl == NULL) {
            goto failed;
        }

        b = cl->buf;

        if (b->start == NULL) {
            b->start = ngx_palloc(r->pool, NGX_KUBENOVA_KP_BUF);
            if (b->start == NULL) {
                goto failed;
            }

            b->end = b->start + NGX_KUBENOVA_KP_BUF;
        }

        n = ngx_min(len, NGX_KUBENOVA_KP_BUF);

        b->pos = b->start;
        b->last = ngx_cpymem(b->start, p, n);
        b->temporary = 1;
        b->flush = 0;
        b->last_buf = 0;
        b->tag = (ngx_buf_tag_t) &ngx_kubenova_kube_proxy_handler;

        p += n;
        len -= n;

        *ll = cl;
        ll = &cl->next;
    }

    if (out == NULL || d->end) {
        cl = ngx_alloc_chain_link(r->pool);
        b = ngx_calloc_buf(r->pool);

        if (cl == NULL || b == NULL) {
            goto failed;
        }

        cl->buf = b;
        *ll = cl;
        ll = &cl->next;
    }

    *ll = NULL;

    /* the last piece: flushed (watches), and the end of the body */

    for (cl = out; cl->next; cl = cl->next) { /* void */ }

    cl->buf->flush = 1;

    if (d->end) {
        cl->buf->last_buf = (r == r->main);
        cl->buf->last_in_chain = 1;
    }

    ngx_kubenova_kp_output(kp, out);

    return;

failed:

    ngx_kubenova_kp_abort(kp, ngx_kubenova_kp_nomem,
                          NGX_HTTP_INTERNAL_SERVER_ERROR,
                          ngx_kubenova_kp_nomem);
}


static void
ngx_kubenova_kp_write_handler(ngx_http_request_t *r)
{
    ngx_connection_t       *c;
    ngx_kubenova_kp_req_t  *kp;

    kp = ngx_http_kubenova_get_ctx(r)->kube_proxy;
    c = r->connection;

    if (c->write->timedout) {
        c->timedout = 1;
        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT,
                      "kubenova: kube proxy client took nothing within "
                      "send_timeout");
        ngx_kubenova_kp_cancel(kp, "the client stopped reading");
        ngx_http_finalize_request(r, NGX_HTTP_REQUEST_TIME_OUT);
        return;
    }

    ngx_kubenova_kp_output(kp, NULL);
}


/* hands what there is to the client; the window reopens once it is out */

static void
ngx_kubenova_kp_output(ngx_kubenova_kp_req_t *kp, ngx_chain_t *out)
{
    ngx_int_t                  rc;
    ngx_connection_t          *c;
    ngx_http_request_t        *r;
    ngx_http_core_loc_conf_t  *clcf;

    r = kp->request;
    c = r->connection;

    rc = ngx_http_output_filter(r, out);

    ngx_chain_update_chains(r->pool, &kp->free, &kp->busy, &out,
                            (ngx_buf_tag_t) &ngx_kubenova_kube_proxy_handler);

    if (rc == NGX_ERROR) {
        ngx_kubenova_kp_cancel(kp, "the client went away");
        ngx_http_finalize_request(r, NGX_ERROR);
        return;
    }

    if (kp->done) {
        /* nginx sends whatever is left itself */
        ngx_http_finalize_request(r, rc);
        return;
    }

    if (kp->busy) {
        r->write_event_handler = ngx_kubenova_kp_write_handler;

        if (!c->write->timer_set) {
            clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);
            ngx_add_timer(c->write, clcf->send_timeout);
        }

        if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
            ngx_kubenova_kp_cancel(kp, "the client's connection broke");
            ngx_http_finalize_request(r, NGX_ERROR);
        }

        return;
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    ngx_kubenova_kp_grant(kp);
}


static void
ngx_kubenova_kp_grant(ngx_kubenova_kp_req_t *kp)
{
    Kubenova__V1__TunnelWindow    w = KUBENOVA__V1__TUNNEL_WINDOW__INIT;
    Kubenova__V1__ManagerMessage  msg = KUBENOVA__V1__MANAGER_MESSAGE__INIT;

    if (kp->in_flight == 0 || kp->tunnels == NULL) {
        return;
    }

    w.id = (uint64_t) kp->node.key;
    w.increment = (uint32_t) kp->in_flight;
    kp->in_flight = 0;

    msg.body_case = KUBENOVA__V1__MANAGER_MESSAGE__BODY_TUNNEL_WINDOW;
    msg.tunnel_window = &w;

    (void) ngx_kubenova_gateway_send(kp->tunnels->stream, &msg.base);
}


/* the end of a request, however it ends */


/* tells the Operator (when the id is still open there) and forgets the id */

static void
ngx_kubenova_kp_cancel(ngx_kubenova_kp_req_t *kp, const char *reason)
{
    Kubenova__V1__TunnelCancel    cancel = KUBENOVA__V1__TUNNEL_CANCEL__INIT;
    Kubenova__V1__ManagerMessage  msg = KUBENOVA__V1__MANAGER_MESSAGE__INIT;

    if (kp->tunnels == NULL) {
        return;
    }

    cancel.id = (uint64_t) kp->node.key;
    cancel.reason = (char *) reason;

    msg.body_case = KUBENOVA__V1__MANAGER_MESSAGE__BODY_TUNNEL_CANCEL;
    msg.tunnel_cancel = &cancel;

    (void) ngx_kubenova_gateway_send(kp->tunnels->stream, &msg.base);

    ngx_kubenova_kp_detach(kp);
}


/* the request cannot go on: the cluster hears why, the client gets status */

static void
ngx_kubenova_kp_abort(ngx_kubenova_kp_req_t *kp, const char *reason,
    ngx_uint_t status, const char *message)
{
    ngx_kubenova_kp_cancel(kp, reason);
    ngx_kubenova_kp_fail(kp, status, message);
}


static void
ngx_kubenova_kp_detach(ngx_kubenova_kp_req_t *kp)
{
    if (kp->tunnels == NULL) {
        return;
    }

    ngx_rbtree_delete(&kp->tunnels->tree, &kp->node);
    kp->tunnels->n--;
    kp->tunnels = NULL;
}


/*
 * The request cannot go on (already detached from its stream): answered
 * with a Status when nothing was sent yet, else cut short, so that kubectl
 * never takes a truncated list for a whole one.  Done from a posted event:
 * the caller may be deep in another connection's handlers.
 */

static void
ngx_kubenova_kp_fail(ngx_kubenova_kp_req_t *kp, ngx_uint_t status,
    const char *message)
{
    if (kp->failed || kp->done) {
        return;
    }

    kp->failed = 1;
    kp->fail_status = status;
    kp->fail_message = message;

    if (kp->timeout.timer_set) {
        ngx_del_timer(&kp->timeout);
    }

    ngx_post_event(&kp->wake, &ngx_posted_events);
}


static void
ngx_kubenova_kp_wake_handler(ngx_event_t *ev)
{
    ngx_kubenova_kp_req_t  *kp = ev->data;

    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = kp->request;
    c = r->connection;

    if (kp->header_sent) {
        c->error = 1;
        ngx_http_finalize_request(r, NGX_ERROR);

    } else {
        ngx_http_finalize_request(r,
            ngx_kubenova_kp_status(r, kp->fail_status, kp->fail_message));
    }

    ngx_http_run_posted_requests(c);
}


static void
ngx_kubenova_kp_timeout_handler(ngx_event_t *ev)
{
    ngx_kubenova_kp_req_t  *kp = ev->data;

    ngx_kubenova_kp_abort(kp, "no answer within kubenova_kube_proxy_timeout",
                          NGX_HTTP_GATEWAY_TIME_OUT,
                          "the cluster did not answer in time");
}


ngx_int_t
ngx_kubenova_kube_proxy_stream_up(void **tunnels, ngx_kubenova_gw_stream_t *s,
    ngx_str_t *cluster)
{
    ngx_kubenova_kp_tunnels_t  *tn;

    tn = ngx_calloc(sizeof(ngx_kubenova_kp_tunnels_t) + cluster->len,
                    ngx_cycle->log);
    if (tn == NULL) {
        return NGX_ERROR;
    }

    ngx_rbtree_init(&tn->tree, &tn->sentinel, ngx_rbtree_insert_value);
    tn->stream = s;
    tn->cluster.data = (u_char *) (tn + 1);
    tn->cluster.len = cluster->len;
    ngx_memcpy(tn->cluster.data, cluster->data, cluster->len);

    *tunnels = tn;

    /* requests on the other workers come here now */
    ngx_kubenova_kp_route_set(&tn->cluster);

    return NGX_OK;
}


void
ngx_kubenova_kube_proxy_stream_gone(void **tunnels)
{
    ngx_kubenova_kp_req_t      *kp;
    ngx_kubenova_kp_tunnels_t  *tn = *tunnels;

    if (tn == NULL) {
        return;
    }

    while (tn->tree.root != tn->tree.sentinel) {
        kp = (ngx_kubenova_kp_req_t *) ngx_rbtree_min(tn->tree.root,
                                                       tn->tree.sentinel);
        ngx_kubenova_kp_detach(kp);
        ngx_kubenova_kp_fail(kp, NGX_HTTP_SERVICE_UNAVAILABLE,
                             "the cluster's Operator disconnected; retry");
    }

    ngx_kubenova_kp_route_unset(&tn->cluster);
    ngx_free(tn);
    *tunnels = NULL;
}


/* the request goes away */

static void
ngx_kubenova_kp_cleanup(void *data)
{
    ngx_kubenova_kp_req_t  *kp = data;

    if (kp->auth_running) {
        ngx_kubenova_pg_query_cancel(&kp->query);
        kp->auth_running = 0;
    }

    if (!kp->done) {
        ngx_kubenova_kp_cancel(kp, "the client went away");
    }

    ngx_kubenova_kp_detach(kp);

    if (kp->timeout.timer_set) {
        ngx_del_timer(&kp->timeout);
    }

    if (kp->wake.posted) {
        ngx_delete_posted_event(&kp->wake);
    }
}


static ngx_kubenova_kp_req_t *
ngx_kubenova_kp_lookup(ngx_kubenova_kp_tunnels_t *tn, uint64_t id)
{
    ngx_rbtree_key_t    key;
    ngx_rbtree_node_t  *node, *sentinel;

    key = (ngx_rbtree_key_t) id;
    node = tn->tree.root;
    sentinel = tn->tree.sentinel;

    while (node != sentinel) {
        if (key < node->key) {
            node = node->left;

        } else if (key > node->key) {
            node = node->right;

        } else {
            return (ngx_kubenova_kp_req_t *) node;
        }
    }

    return NULL;
}


/* the proxy kubeconfig */


/*
 * kubectl sends its bearer token over TLS only, so the proxy is served
 * with TLS; a private CA goes into the kubeconfigs, base64 as kubeconfigs
 * want it.
 */

char *
ngx_kubenova_kube_proxy_ca_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_kubenova_main_conf_t  *kmcf = conf;

    ssize_t           n;
    ngx_str_t        *value, pem;
    ngx_file_t        file;
    ngx_file_info_t   fi;

    if (kmcf->kube_proxy_ca.len) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_conf_full_name(cf->cycle, &value[1], 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.name = value[1];
    file.log = cf->log;

    file.fd = ngx_open_file(value[1].data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (file.fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%V\" failed", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (ngx_fd_info(file.fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) == 0
        || ngx_file_size(&fi) > NGX_KUBENOVA_KP_CA_MAX)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must hold a PEM certificate (at most "
                           "64k)", &value[1]);
        ngx_close_file(file.fd);
        return NGX_CONF_ERROR;
    }

    pem.len = (size_t) ngx_file_size(&fi);
    pem.data = ngx_pnalloc(cf->pool, pem.len);

    n = pem.data ? ngx_read_file(&file, pem.data, pem.len, 0) : NGX_ERROR;
    ngx_close_file(file.fd);

    if (n != (ssize_t) pem.len
        || ngx_strnstr(pem.data, "-----BEGIN CERTIFICATE-----", pem.len)
           == NULL)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must hold a PEM certificate", &value[1]);
        return NGX_CONF_ERROR;
    }

    kmcf->kube_proxy_ca.data = ngx_pnalloc(cf->pool,
                                           ngx_base64_encoded_length(pem.len));
    if (kmcf->kube_proxy_ca.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_encode_base64(&kmcf->kube_proxy_ca, &pem);

    return NGX_CONF_OK;
}



ngx_int_t
ngx_kubenova_kube_proxy_kubeconfig(ngx_http_request_t *r, const char *body,
    size_t len)
{
    u_char                         *p, *yaml;
    size_t                          n;
    json_t                         *json;
    ngx_int_t                       rc;
    ngx_str_t                       base, host;
    const char                     *cluster, *tenant, *role, *token;
    ngx_http_kubenova_main_conf_t  *kmcf;

    kmcf = ngx_http_get_module_main_conf(r, ngx_http_kubenova_module);

    json = json_loadb(body, len, 0, NULL);

    if (json == NULL
        || json_unpack(json, "{s:s,s:s,s:s,s:s}", "cluster", &cluster,
                       "tenant", &tenant, "role", &role, "token", &token)
           != 0)
    {
        if (json) {
            json_decref(json);
        }
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* kubenova_kube_proxy_url, else the Host the client called us by */

    base = kmcf->kube_proxy_url;

    if (base.len == 0) {
        host = r->headers_in.host ? r->headers_in.host->value
                                  : r->headers_in.server;

        base.data = ngx_pnalloc(r->pool, sizeof("https:///k8s") + host.len);
        if (base.data == NULL) {
            json_decref(json);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        base.len = ngx_sprintf(base.data, "%s://%V/k8s",
#if (NGX_HTTP_SSL)
                               r->connection->ssl ? "https" : "http",
#else
                               "http",
#endif
                               &host)
                   - base.data;
    }

    for (p = base.data; p < base.data + base.len; p++) {
        if (*p == '"' || *p == '\\' || *p < 0x21 || *p > 0x7e) {
            json_decref(json);
            return ngx_kubenova_json_error(r, NGX_HTTP_BAD_REQUEST,
                                           "invalid_host",
                                           "the Host header cannot be "
                                           "written into a kubeconfig");
        }
    }

    n = 512 + base.len + 4 * ngx_strlen(cluster) + 4 * ngx_strlen(tenant)
        + 2 * ngx_strlen(role) + ngx_strlen(token) + kmcf->kube_proxy_ca.len;

    yaml = ngx_pnalloc(r->pool, n);
    if (yaml == NULL) {
        json_decref(json);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_snprintf(yaml, n,
        "apiVersion: v1\n"
        "kind: Config\n"
        "clusters:\n"
        "- name: kubenova-%s\n"
        "  cluster:\n"
        "    server: \"%V/clusters/%s\"\n"
        "%s%V%s"
        "users:\n"
        "- name: %s-%s\n"
        "  user:\n"
        "    token: %s\n"
        "contexts:\n"
        "- name: %s@%s\n"
        "  context:\n"
        "    cluster: kubenova-%s\n"
        "    user: %s-%s\n"
        "    namespace: %s-apps\n"
        "current-context: %s@%s\n",
        cluster, &base, cluster,
        kmcf->kube_proxy_ca.len ? "    certificate-authority-data: " : "",
        &kmcf->kube_proxy_ca, kmcf->kube_proxy_ca.len ? "\n" : "",
        tenant, role, token, tenant, cluster,
        cluster, tenant, role, tenant, tenant, cluster);

    len = p - yaml;

    rc = ngx_kubenova_kubeconfig_send(r, tenant, cluster, role, yaml, len);

    json_decref(json);

    return rc;
}


/* a kubeconfig, either kind: YAML to save, never cached */

ngx_int_t
ngx_kubenova_kubeconfig_send(ngx_http_request_t *r, const char *tenant,
    const char *cluster, const char *role, u_char *yaml, size_t len)
{
    u_char  *p;
    size_t   n;

    static ngx_str_t  type = ngx_string("application/yaml");

    /* attachment; filename="<tenant>-<cluster>-<role>.kubeconfig" */

    n = sizeof("attachment; filename=\"--.kubeconfig\"") + ngx_strlen(tenant)
        + ngx_strlen(cluster) + ngx_strlen(role);

    p = ngx_pnalloc(r->pool, n);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    n = ngx_sprintf(p, "attachment; filename=\"%s-%s-%s.kubeconfig\"",
                    tenant, cluster, role) - p;

    if (ngx_kubenova_add_header(r, &r->headers_out.headers,
                                "Content-Disposition", p, n) != NGX_OK
        || ngx_kubenova_add_header(r, &r->headers_out.headers,
                                   "Cache-Control", (u_char *) "no-store",
                                   sizeof("no-store") - 1) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_kubenova_send_body(r, NGX_HTTP_OK, &type, yaml, len);
}
