/*
 * The Operator gateway (see the header and docs/api-design.md, "Operator
 * gateway: the database side").
 *
 * A stream starts with a hello.  The database checks the cluster's secret,
 * records what the cluster says it has applied and answers the difference
 * with its desired state, which is sent paced by the client's window.  From
 * then on every change a REST write commits arrives on this worker's LISTEN
 * connection as (cluster, kind, name, generation); a stream of that cluster
 * fetches the object and sends it.  The LISTEN connection is up before any
 * hello is accepted and every stream ends when it breaks, so a stream never
 * misses a change: what it does not get live, the next hello's difference
 * carries.  One statement runs at a time per stream; while it runs the
 * stream reads nothing more (backpressure on the Operator).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <openssl/rand.h>
#include <jansson.h>

#include "ngx_http_kubenova_module.h"
#include "ngx_kubenova_gateway.h"
#include "ngx_kubenova_grpc.h"
#include "ngx_kubenova_listen.h"
#include "ngx_kubenova_crypto.h"
#include "ngx_kubenova_usage_metrics.h"
#include "ngx_kubenova_kube_proxy.h"
#include "ngx_kubenova_ca.h"
#include "kubenova.pb-c.h"


#define NGX_KUBENOVA_GW_PACE           (256 * 1024)  /* diff bytes in flight */
#define NGX_KUBENOVA_GW_CHANGES        1024          /* pending per stream */
#define NGX_KUBENOVA_GW_KIND_LEN       32
#define NGX_KUBENOVA_GW_NAME_LEN       160
#define NGX_KUBENOVA_GW_SEEN_INTERVAL  30            /* s, last_seen writes */
#define NGX_KUBENOVA_GW_WATCH          500           /* ms, shutdown check */
#define NGX_KUBENOVA_GW_MAX_PARAMS     8


struct ngx_kubenova_gateway_s {
    ngx_kubenova_pg_pool_t          *pool;
    ngx_rbtree_t                     streams;      /* live, by cluster */
    ngx_rbtree_node_t                sentinel;
    ngx_queue_t                      all;          /* every stream */
    ngx_queue_t                      hellos;       /* hello in flight */
    ngx_event_t                      watch;
    ngx_log_t                       *log;
};


typedef enum {
    NGX_KUBENOVA_GW_HELLO = 0,       /* waiting for the hello */
    NGX_KUBENOVA_GW_DIFF,            /* sending the hello's difference */
    NGX_KUBENOVA_GW_LIVE
} ngx_kubenova_gw_state_e;


typedef void (*ngx_kubenova_gw_done_pt)(ngx_kubenova_gw_stream_t *s,
    PGresult *res);


typedef struct {
    char                             kind[NGX_KUBENOVA_GW_KIND_LEN];
    char                             name[NGX_KUBENOVA_GW_NAME_LEN];
} ngx_kubenova_gw_change_t;


struct ngx_kubenova_gw_stream_s {
    ngx_str_node_t                   node;         /* key: the cluster */
    ngx_queue_t                      queue;        /* in gateway->all */
    ngx_queue_t                      hello_queue;  /* in gateway->hellos */
    ngx_kubenova_gateway_t          *gateway;
    ngx_kubenova_grpc_t             *grpc;
    ngx_http_request_t              *request;

    ngx_uint_t                       state;
    u_char                           cluster[64];
    u_char                           stream_id[33];
    time_t                           seen_written;

    /* the one statement in flight */
    ngx_kubenova_pg_query_t          query;
    ngx_pool_t                      *scratch;
    const char                      *params[NGX_KUBENOVA_GW_MAX_PARAMS];
    ngx_kubenova_gw_done_pt          done;

    /* a message that arrived while a statement ran */
    Kubenova__V1__OperatorMessage   *deferred;

    /* the usage report being stored, for the gauges (in scratch) */
    ngx_kubenova_usage_tenant_t     *usage;
    ngx_uint_t                       nusage;
    int64_t                          usage_window_end;

    /* the hello's difference, sent as the window allows */
    PGresult                        *diff;
    int                              diff_row;

    /* changes announced by NOTIFY, fetched one by one (a ring) */
    ngx_kubenova_gw_change_t        *changes;
    ngx_uint_t                       change_head;
    ngx_uint_t                       nchanges;

    ngx_event_t                      heartbeat;
    ngx_msec_t                       heartbeat_interval;

    /* the kube proxy's requests on this stream (ngx_kubenova_kube_proxy.c) */
    void                            *tunnels;

    unsigned                         registered:1;
    unsigned                         in_hello:1;
    unsigned                         seen_own_notice:1;
    unsigned                         param_failed:1;
    unsigned                         busy:1;
    unsigned                         paused:1;      /* grpc read paused */
    unsigned                         ended:1;
};


static ngx_int_t ngx_kubenova_gw_message(ngx_kubenova_grpc_t *g,
    u_char *data, size_t len);
static void ngx_kubenova_gw_drained(ngx_kubenova_grpc_t *g);
static void ngx_kubenova_gw_closed(ngx_kubenova_grpc_t *g);
static ngx_int_t ngx_kubenova_gw_dispatch(ngx_kubenova_gw_stream_t *s,
    Kubenova__V1__OperatorMessage *m);
static ngx_int_t ngx_kubenova_gw_hello(ngx_kubenova_gw_stream_t *s,
    Kubenova__V1__Hello *hello);
static void ngx_kubenova_gw_hello_done(ngx_kubenova_gw_stream_t *s,
    PGresult *res);
static void ngx_kubenova_gw_send_diff(ngx_kubenova_gw_stream_t *s);
static ngx_int_t ngx_kubenova_gw_certificate(ngx_kubenova_gw_stream_t *s,
    Kubenova__V1__CertificateRequest *req);
static void ngx_kubenova_gw_certificate_done(ngx_kubenova_gw_stream_t *s,
    PGresult *res);
static void ngx_kubenova_gw_certificate_send(ngx_kubenova_gw_stream_t *s,
    const char *pem, int64_t not_after, const char *error);
static ngx_int_t ngx_kubenova_gw_send_object(ngx_kubenova_gw_stream_t *s,
    const char *kind, const char *name, const char *generation,
    ngx_uint_t deleted, const char *spec, size_t spec_len);
static ngx_int_t ngx_kubenova_gw_heartbeat_in(ngx_kubenova_gw_stream_t *s);
static ngx_uint_t ngx_kubenova_gw_refused(ngx_kubenova_gw_stream_t *s,
    PGresult *res);
static void ngx_kubenova_gw_current_done(ngx_kubenova_gw_stream_t *s,
    PGresult *res);
static ngx_int_t ngx_kubenova_gw_ack(ngx_kubenova_gw_stream_t *s,
    Kubenova__V1__Ack *ack);
static ngx_int_t ngx_kubenova_gw_usage(ngx_kubenova_gw_stream_t *s,
    Kubenova__V1__UsageReport *usage);
static void ngx_kubenova_gw_usage_done(ngx_kubenova_gw_stream_t *s,
    PGresult *res);
static ngx_int_t ngx_kubenova_gw_usage_keep(ngx_kubenova_gw_stream_t *s,
    Kubenova__V1__UsageReport *usage);
static ngx_int_t ngx_kubenova_gw_app_status(ngx_kubenova_gw_stream_t *s,
    Kubenova__V1__ApplicationStatus *st);
static void ngx_kubenova_gw_app_status_done(ngx_kubenova_gw_stream_t *s,
    PGresult *res);
static ngx_int_t ngx_kubenova_gw_components(ngx_kubenova_gw_stream_t *s,
    Kubenova__V1__ComponentStatus *cs);
static void ngx_kubenova_gw_components_done(ngx_kubenova_gw_stream_t *s,
    PGresult *res);
static ngx_int_t ngx_kubenova_gw_kubeconfig(ngx_kubenova_gw_stream_t *s,
    Kubenova__V1__IssuedKubeconfig *kc);
static void ngx_kubenova_gw_kubeconfig_done(ngx_kubenova_gw_stream_t *s,
    PGresult *res);
static ngx_int_t ngx_kubenova_gw_call(ngx_kubenova_gw_stream_t *s,
    const char *sql, int nparams, ngx_kubenova_gw_done_pt done);
static void ngx_kubenova_gw_call_done(void *data, ngx_int_t rc,
    PGresult *res);
static void ngx_kubenova_gw_next(ngx_kubenova_gw_stream_t *s);
static void ngx_kubenova_gw_fetch_done(ngx_kubenova_gw_stream_t *s,
    PGresult *res);
static void ngx_kubenova_gw_end(ngx_kubenova_gw_stream_t *s,
    ngx_uint_t status, const char *message);
static void ngx_kubenova_gw_heartbeat_handler(ngx_event_t *ev);
static void ngx_kubenova_gw_notify(void *data, const char *channel,
    const char *payload);
static void ngx_kubenova_gw_deliver(ngx_kubenova_gw_stream_t *s,
    ngx_uint_t stream_notice, const char *kind, size_t kind_len,
    const char *name, size_t len);
static void ngx_kubenova_gw_reset(void *data);
static void ngx_kubenova_gw_watch_handler(ngx_event_t *ev);
static void ngx_kubenova_gw_end_all(ngx_kubenova_gateway_t *gw,
    ngx_uint_t status, const char *message);
static ngx_kubenova_gw_stream_t *ngx_kubenova_gw_lookup(
    ngx_kubenova_gateway_t *gw, const char *cluster, size_t len);
static void ngx_kubenova_gw_disconnect(ngx_kubenova_gw_stream_t *s);
static void ngx_kubenova_gw_disconnect_done(void *data, ngx_int_t rc,
    PGresult *res);
static ngx_int_t ngx_kubenova_gw_scratch(ngx_kubenova_gw_stream_t *s,
    size_t size);
static char *ngx_kubenova_gw_param(ngx_kubenova_gw_stream_t *s,
    const char *value);
static char *ngx_kubenova_gw_json_param(ngx_kubenova_gw_stream_t *s,
    json_t *json);
static char *ngx_kubenova_gw_int_param(ngx_kubenova_gw_stream_t *s,
    int64_t value);
static ngx_uint_t ngx_kubenova_gw_text_ok(const char *s, size_t max);


static const ngx_kubenova_grpc_handlers_t  ngx_kubenova_gw_handlers = {
    ngx_kubenova_gw_message,
    ngx_kubenova_gw_drained,
    ngx_kubenova_gw_closed
};


static const char  ngx_kubenova_gw_hello_sql[] =
    "SELECT status, message, kind, name, generation, deleted, spec "
    "FROM gateway.hello($1, $2, $3, $4, $5::jsonb, $6)";

static const char  ngx_kubenova_gw_certificate_sql[] =
    "SELECT gateway.certificate($1, $2, $3, $4::bigint)";

static const char  ngx_kubenova_gw_object_sql[] =
    "SELECT generation, deleted, spec FROM gateway.object($1, $2, $3)";

static const char  ngx_kubenova_gw_ack_sql[] =
    "SELECT current, status, message FROM gateway.ack($1, $2, $3, $4, "
    "$5::bigint, $6::boolean, $7)";

static const char  ngx_kubenova_gw_heartbeat_sql[] =
    "SELECT current FROM gateway.heartbeat($1, $2)";

static const char  ngx_kubenova_gw_usage_sql[] =
    "SELECT stored, status, message FROM gateway.usage($1, $2::bigint, "
    "$3::bigint, $4::bigint, $5::jsonb)";

static const char  ngx_kubenova_gw_app_status_sql[] =
    "SELECT stored, status, message FROM gateway.app_status($1, $2, $3, "
    "$4::bigint, $5, $6::bigint, $7, $8::jsonb)";

static const char  ngx_kubenova_gw_components_sql[] =
    "SELECT stored, status, message FROM gateway.components($1, $2::bigint, "
    "$3::jsonb)";

static const char  ngx_kubenova_gw_kubeconfig_sql[] =
    "SELECT stored, status, message FROM gateway.kubeconfig($1, $2, $3, $4, "
    "$5)";

static const char  ngx_kubenova_gw_disconnect_sql[] =
    "SELECT done FROM gateway.disconnect($1, $2)";


/* the worker's gateway */


ngx_kubenova_gateway_t *
ngx_kubenova_gateway_create(ngx_cycle_t *cycle, ngx_kubenova_pg_pool_t *pool)
{
    ngx_kubenova_gateway_t  *gw;

    gw = ngx_pcalloc(cycle->pool, sizeof(ngx_kubenova_gateway_t));
    if (gw == NULL) {
        return NULL;
    }

    gw->pool = pool;
    gw->log = cycle->log;
    ngx_rbtree_init(&gw->streams, &gw->sentinel, ngx_str_rbtree_insert_value);
    ngx_queue_init(&gw->all);
    ngx_queue_init(&gw->hellos);

    gw->watch.handler = ngx_kubenova_gw_watch_handler;
    gw->watch.data = gw;
    gw->watch.log = cycle->log;

    /* not cancelable: an exiting worker must end its streams first */
    gw->watch.cancelable = 0;

    if (ngx_kubenova_listen_subscribe("kubenova_desired_state",
                                      ngx_kubenova_gw_notify,
                                      ngx_kubenova_gw_reset, gw)
        != NGX_OK
        || ngx_kubenova_listen_subscribe("kubenova_stream",
                                         ngx_kubenova_gw_notify,
                                         ngx_kubenova_gw_reset, gw)
           != NGX_OK)
    {
        return NULL;
    }

    return gw;
}


ngx_int_t
ngx_kubenova_gateway_handler(ngx_http_request_t *r)
{
    ngx_kubenova_gateway_t         *gw;
    ngx_kubenova_gw_stream_t       *s;
    ngx_http_kubenova_loc_conf_t   *klcf;
    ngx_http_kubenova_main_conf_t  *kmcf;

    kmcf = ngx_http_get_module_main_conf(r, ngx_http_kubenova_module);
    klcf = ngx_http_get_module_loc_conf(r, ngx_http_kubenova_module);

    gw = kmcf->gateway;

    s = ngx_pcalloc(r->pool, sizeof(ngx_kubenova_gw_stream_t));
    if (s == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    s->gateway = gw;
    s->request = r;
    s->heartbeat_interval = klcf->grpc_heartbeat;

    s->heartbeat.handler = ngx_kubenova_gw_heartbeat_handler;
    s->heartbeat.data = s;
    s->heartbeat.log = r->connection->log;
    s->heartbeat.cancelable = 1;

    return ngx_kubenova_grpc_start(r, &ngx_kubenova_gw_handlers, s,
                                   klcf->grpc_max_message);
}


/* the kube proxy's way onto the streams */


ngx_kubenova_gw_stream_t *
ngx_kubenova_gateway_stream(ngx_kubenova_gateway_t *gw, ngx_str_t *cluster)
{
    ngx_kubenova_gw_stream_t  *s;

    if (gw == NULL) {
        return NULL;
    }

    s = ngx_kubenova_gw_lookup(gw, (char *) cluster->data, cluster->len);

    return (s && !s->ended && s->grpc && !s->grpc->finished) ? s : NULL;
}


ngx_int_t
ngx_kubenova_gateway_send(ngx_kubenova_gw_stream_t *s,
    const ProtobufCMessage *msg)
{
    if (s->ended) {
        return NGX_ERROR;
    }

    /* a failed send finalizes the stream from a posted event: not here */

    return ngx_kubenova_grpc_send(s->grpc, msg);
}


size_t
ngx_kubenova_gateway_pending(ngx_kubenova_gw_stream_t *s)
{
    return ngx_kubenova_grpc_pending(s->grpc);
}


void **
ngx_kubenova_gateway_tunnels(ngx_kubenova_gw_stream_t *s)
{
    return &s->tunnels;
}


/* messages from the Operator */


static ngx_int_t
ngx_kubenova_gw_message(ngx_kubenova_grpc_t *g, u_char *data, size_t len)
{
    ngx_kubenova_gw_stream_t  *s = g->data;

    ngx_int_t                       rc;
    Kubenova__V1__OperatorMessage  *m;

    if (s->grpc == NULL) {
        /* the first message: the stream is under way */
        s->grpc = g;

        if (s->gateway == NULL) {
            ngx_kubenova_grpc_finish(g, NGX_KUBENOVA_GRPC_UNAVAILABLE,
                                     "kubenova_postgres is not configured");
            return NGX_DONE;
        }

        ngx_queue_insert_tail(&s->gateway->all, &s->queue);

        if (!s->gateway->watch.timer_set) {
            ngx_add_timer(&s->gateway->watch, NGX_KUBENOVA_GW_WATCH);
        }

        ngx_add_timer(&s->heartbeat, s->heartbeat_interval);
    }

    m = kubenova__v1__operator_message__unpack(NULL, len, data);

    if (m == NULL) {
        ngx_kubenova_gw_end(s, NGX_KUBENOVA_GRPC_INVALID_ARGUMENT,
                            "cannot decode an OperatorMessage");
        return NGX_DONE;
    }

    /* tunnel traffic needs no statement: it never waits behind one */

    if (s->registered && ngx_kubenova_kube_proxy_is_tunnel(m)) {
        rc = ngx_kubenova_kube_proxy_message(&s->tunnels, m);
        kubenova__v1__operator_message__free_unpacked(m, NULL);

        if (rc != NGX_OK) {
            ngx_kubenova_gw_end(s, NGX_KUBENOVA_GRPC_INVALID_ARGUMENT,
                                "a tunnel message breaks the protocol");
            return NGX_DONE;
        }

        return NGX_OK;
    }

    if (s->busy || s->state == NGX_KUBENOVA_GW_DIFF) {
        /* one statement at a time: this one waits, and so does reading */
        s->deferred = m;
        s->paused = 1;
        return NGX_AGAIN;
    }

    return ngx_kubenova_gw_dispatch(s, m);
}


/* takes m; NGX_OK, NGX_AGAIN (a statement runs) or NGX_DONE (ended) */

static ngx_int_t
ngx_kubenova_gw_dispatch(ngx_kubenova_gw_stream_t *s,
    Kubenova__V1__OperatorMessage *m)
{
    ngx_int_t  rc;

    if (s->state == NGX_KUBENOVA_GW_HELLO
        && m->body_case != KUBENOVA__V1__OPERATOR_MESSAGE__BODY_HELLO)
    {
        kubenova__v1__operator_message__free_unpacked(m, NULL);
        ngx_kubenova_gw_end(s, NGX_KUBENOVA_GRPC_FAILED_PRECONDITION,
                            "the first message must be a hello");
        return NGX_DONE;
    }

    switch (m->body_case) {

    case KUBENOVA__V1__OPERATOR_MESSAGE__BODY_HELLO:
        if (s->state != NGX_KUBENOVA_GW_HELLO) {
            rc = NGX_DONE;
            ngx_kubenova_gw_end(s, NGX_KUBENOVA_GRPC_FAILED_PRECONDITION,
                                "hello may only be the first message");
            break;
        }

        rc = ngx_kubenova_gw_hello(s, m->hello);
        break;

    case KUBENOVA__V1__OPERATOR_MESSAGE__BODY_HEARTBEAT:
        rc = ngx_kubenova_gw_heartbeat_in(s);
        break;

    case KUBENOVA__V1__OPERATOR_MESSAGE__BODY_ACK:
        rc = ngx_kubenova_gw_ack(s, m->ack);
        break;

    case KUBENOVA__V1__OPERATOR_MESSAGE__BODY_USAGE:
        rc = ngx_kubenova_gw_usage(s, m->usage);
        break;

    case KUBENOVA__V1__OPERATOR_MESSAGE__BODY_APP_STATUS:
        rc = ngx_kubenova_gw_app_status(s, m->app_status);
        break;

    case KUBENOVA__V1__OPERATOR_MESSAGE__BODY_KUBECONFIG:
        rc = ngx_kubenova_gw_kubeconfig(s, m->kubeconfig);
        break;

    case KUBENOVA__V1__OPERATOR_MESSAGE__BODY_COMPONENTS:
        rc = ngx_kubenova_gw_components(s, m->components);
        break;

    case KUBENOVA__V1__OPERATOR_MESSAGE__BODY_CERTIFICATE_REQUEST:
        rc = ngx_kubenova_gw_certificate(s, m->certificate_request);
        break;

    default:
        /* a newer Operator's message: the protocol grows by adding them */
        ngx_log_error(NGX_LOG_INFO, s->request->connection->log, 0,
                      "kubenova: gateway skips a message of type %d from "
                      "cluster \"%s\"", (int) m->body_case, s->cluster);
        rc = NGX_OK;
        break;
    }

    kubenova__v1__operator_message__free_unpacked(m, NULL);

    return rc;
}


static ngx_int_t
ngx_kubenova_gw_hello(ngx_kubenova_gw_stream_t *s, Kubenova__V1__Hello *hello)
{
    json_t                         *list, *item;
    size_t                          i, len;
    ngx_int_t                       peer;
    u_char                          raw[16];
    u_char                          serial[NGX_KUBENOVA_CA_PEER_SERIAL_SIZE];
    char                            cn[NGX_KUBENOVA_CA_CN_LEN];
    char                            err[192];
    u_char                          msg[256];

    len = hello->cluster ? ngx_strlen(hello->cluster) : 0;

    if (len == 0 || len >= sizeof(s->cluster)
        || !ngx_kubenova_gw_text_ok(hello->cluster, 63)
        || !ngx_kubenova_gw_text_ok(hello->operator_version, 256)
        || !ngx_kubenova_gw_text_ok(hello->kubernetes_version, 256))
    {
        ngx_kubenova_gw_end(s, NGX_KUBENOVA_GRPC_INVALID_ARGUMENT,
                            "hello needs a cluster name (at most 63 "
                            "characters) and printable versions");
        return NGX_DONE;
    }

    /*
     * The stream speaks for the cluster its verified client certificate
     * names (the database checks the serial is still good), and only so:
     * the hello's cluster_secret of older Operators is ignored.
     */

    peer = ngx_kubenova_ca_peer(s->request->connection, cn, serial, err,
                                sizeof(err));

    if (peer == NGX_ABORT) {
        ngx_kubenova_gw_end(s, NGX_KUBENOVA_GRPC_UNAUTHENTICATED, err);
        return NGX_DONE;
    }

    if (peer == NGX_OK && ngx_strcmp(cn, hello->cluster) != 0) {
        ngx_snprintf(msg, sizeof(msg), "the client certificate is for "
                     "cluster \"%s\": it cannot speak for \"%s\"%Z",
                     cn, hello->cluster);
        ngx_kubenova_gw_end(s, NGX_KUBENOVA_GRPC_PERMISSION_DENIED,
                            (char *) msg);
        return NGX_DONE;
    }

    if (peer == NGX_DECLINED) {
        ngx_kubenova_gw_end(s, NGX_KUBENOVA_GRPC_UNAUTHENTICATED,
                            "a client certificate from the KubeNova CA is "
                            "required: register the cluster with its join "
                            "token first");
        return NGX_DONE;
    }

    if (!ngx_kubenova_pg_listening(s->gateway->pool)) {
        ngx_kubenova_gw_end(s, NGX_KUBENOVA_GRPC_UNAVAILABLE,
                            "the Manager is not connected to its database "
                            "yet; retry");
        return NGX_DONE;
    }

    ngx_memcpy(s->cluster, hello->cluster, len + 1);

    list = json_array();
    if (list == NULL) {
        goto failed;
    }

    for (i = 0; i < hello->n_applied; i++) {
        item = json_pack("{s:s?,s:s?,s:I}",
                         "kind", hello->applied[i]->kind,
                         "name", hello->applied[i]->name,
                         "generation",
                         (json_int_t) hello->applied[i]->generation);

        if (item == NULL || json_array_append_new(list, item) != 0) {
            json_decref(list);
            ngx_kubenova_gw_end(s, NGX_KUBENOVA_GRPC_INVALID_ARGUMENT,
                                "hello lists an applied object with a name "
                                "that is not UTF-8");
            return NGX_DONE;
        }
    }

    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        json_decref(list);
        goto failed;
    }

    ngx_hex_dump(s->stream_id, raw, sizeof(raw));
    s->stream_id[32] = '\0';

    if (ngx_kubenova_gw_scratch(s, 1024) != NGX_OK) {
        json_decref(list);
        return NGX_DONE;
    }

    s->params[0] = ngx_kubenova_gw_param(s, (char *) s->cluster);
    s->params[1] = ngx_kubenova_gw_param(s, (char *) serial);
    s->params[2] = ngx_kubenova_gw_param(s, hello->operator_version
                                            ? hello->operator_version : "");
    s->params[3] = ngx_kubenova_gw_param(s, hello->kubernetes_version
                                            ? hello->kubernetes_version : "");
    s->params[4] = ngx_kubenova_gw_json_param(s, list);
    s->params[5] = ngx_kubenova_gw_param(s, (char *) s->stream_id);

    json_decref(list);

    /*
     * From now on changes of this cluster are queued for this stream too: a
     * change that commits while the hello runs is either in its difference
     * or announced after it, never lost in between.
     */

    ngx_queue_insert_tail(&s->gateway->hellos, &s->hello_queue);
    s->in_hello = 1;

    s->query.keep = 1;

    return ngx_kubenova_gw_call(s, ngx_kubenova_gw_hello_sql, 6,
                                ngx_kubenova_gw_hello_done);

failed:

    ngx_kubenova_gw_end(s, NGX_KUBENOVA_GRPC_INTERNAL, "out of memory");
    return NGX_DONE;
}


static void
ngx_kubenova_gw_hello_done(ngx_kubenova_gw_stream_t *s, PGresult *res)
{
    int                          i, rows, updates, deletes;
    ngx_int_t                    status;
    ngx_kubenova_gw_stream_t    *old;
    Kubenova__V1__Welcome        welcome = KUBENOVA__V1__WELCOME__INIT;
    Kubenova__V1__ManagerMessage msg = KUBENOVA__V1__MANAGER_MESSAGE__INIT;

    if (s->in_hello) {
        ngx_queue_remove(&s->hello_queue);
        s->in_hello = 0;
    }

    rows = PQntuples(res);

    if (rows < 1 || PQnfields(res) != 7) {
        PQclear(res);
        ngx_kubenova_gw_end(s, NGX_KUBENOVA_GRPC_INTERNAL,
                            "unexpected answer from the database");
        return;
    }

    status = ngx_atoi((u_char *) PQgetvalue(res, 0, 0),
                      PQgetlength(res, 0, 0));

    if (status != NGX_KUBENOVA_GRPC_OK) {
        ngx_kubenova_gw_end(s, status == NGX_ERROR
                               ? NGX_KUBENOVA_GRPC_INTERNAL : (ngx_uint_t) status,
                            PQgetisnull(res, 0, 1) ? "refused"
                                                   : PQgetvalue(res, 0, 1));
        PQclear(res);
        return;
    }

    /* one live stream per cluster: a newer one replaces the older */

    old = ngx_kubenova_gw_lookup(s->gateway, (char *) s->cluster,
                                 ngx_strlen(s->cluster));
    if (old) {
        ngx_kubenova_gw_end(old, NGX_KUBENOVA_GRPC_ABORTED,
                            "replaced by a newer stream for this cluster");
    }

    s->node.str.data = s->cluster;
    s->node.str.len = ngx_strlen(s->cluster);
    s->node.node.key = ngx_crc32_short(s->node.str.data, s->node.str.len);
    ngx_rbtree_insert(&s->gateway->streams, &s->node.node);
    s->registered = 1;
    s->seen_written = ngx_time();

    if (ngx_kubenova_kube_proxy_stream_up(&s->tunnels, s, &s->node.str)
        != NGX_OK)
    {
        PQclear(res);
        ngx_kubenova_gw_end(s, NGX_KUBENOVA_GRPC_INTERNAL, "out of memory");
        return;
    }

    updates = 0;
    deletes = 0;

    for (i = 0; i < rows; i++) {
        if (PQgetisnull(res, i, 2)) {
            continue;
        }

        if (PQgetvalue(res, i, 5)[0] == 't') {
            deletes++;

        } else {
            updates++;
        }
    }

    welcome.cluster = (char *) s->cluster;
    welcome.heartbeat_interval_ms = (int64_t) s->heartbeat_interval;
    welcome.updates = updates;
    welcome.deletes = deletes;

    msg.body_case = KUBENOVA__V1__MANAGER_MESSAGE__BODY_WELCOME;
    msg.welcome = &welcome;

    if (ngx_kubenova_grpc_send(s->grpc, &msg.base) != NGX_OK) {
        PQclear(res);
        return;
    }

    ngx_log_error(NGX_LOG_INFO, s->request->connection->log, 0,
                  "kubenova: cluster \"%s\" connected: %d update(s), "
                  "%d deletion(s) to send", s->cluster, updates, deletes);

    s->diff = res;
    s->diff_row = 0;
    s->state = NGX_KUBENOVA_GW_DIFF;

    ngx_kubenova_gw_send_diff(s);
}


/* the difference, paced: at most NGX_KUBENOVA_GW_PACE bytes not yet taken */

static void
ngx_kubenova_gw_send_diff(ngx_kubenova_gw_stream_t *s)
{
    PGresult  *res;

    res = s->diff;

    while (s->diff_row < PQntuples(res)) {
        if (ngx_kubenova_grpc_pending(s->grpc) > NGX_KUBENOVA_GW_PACE) {
            return;                                 /* until drained */
        }

        if (!PQgetisnull(res, s->diff_row, 2)
            && ngx_kubenova_gw_send_object(s, PQgetvalue(res, s->diff_row, 2),
                   PQgetvalue(res, s->diff_row, 3),
                   PQgetvalue(res, s->diff_row, 4),
                   PQgetvalue(res, s->diff_row, 5)[0] == 't',
                   PQgetisnull(res, s->diff_row, 6)
                   ? NULL : PQgetvalue(res, s->diff_row, 6),
                   PQgetlength(res, s->diff_row, 6))
               != NGX_OK)
        {
            return;
        }

        s->diff_row++;
    }

    PQclear(res);
    s->diff = NULL;
    s->state = NGX_KUBENOVA_GW_LIVE;

    ngx_kubenova_gw_next(s);
}


static ngx_int_t
ngx_kubenova_gw_send_object(ngx_kubenova_gw_stream_t *s, const char *kind,
    const char *name, const char *generation, ngx_uint_t deleted,
    const char *spec, size_t spec_len)
{
    int64_t                       gen;
    Kubenova__V1__ObjectUpdate    update = KUBENOVA__V1__OBJECT_UPDATE__INIT;
    Kubenova__V1__ObjectDelete    del = KUBENOVA__V1__OBJECT_DELETE__INIT;
    Kubenova__V1__ManagerMessage  msg = KUBENOVA__V1__MANAGER_MESSAGE__INIT;

    gen = (int64_t) ngx_atoof((u_char *) generation, ngx_strlen(generation));

    if (deleted) {
        del.kind = (char *) kind;
        del.name = (char *) name;
        del.generation = gen;
        msg.body_case = KUBENOVA__V1__MANAGER_MESSAGE__BODY_DELETE;
        msg.delete_ = &del;

    } else {
        update.kind = (char *) kind;
        update.name = (char *) name;
        update.generation = gen;
        update.payload.data = (uint8_t *) spec;
        update.payload.len = spec ? spec_len : 0;
        msg.body_case = KUBENOVA__V1__MANAGER_MESSAGE__BODY_UPDATE;
        msg.update = &update;
    }

    if (ngx_kubenova_grpc_send(s->grpc, &msg.base) != NGX_OK) {
        ngx_kubenova_gw_end(s, NGX_KUBENOVA_GRPC_INTERNAL,
                            "cannot send an object");
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_kubenova_gw_heartbeat_in(ngx_kubenova_gw_stream_t *s)
{
    time_t  interval;

    /*
     * last_seen_at is written at most every NGX_KUBENOVA_GW_SEEN_INTERVAL,
     * and at least three times within kubenova_cluster_unavailable_after,
     * so that a live cluster never reads as silent
     */

    interval = (time_t) (ngx_http_kubenova_cluster_unavailable_after(
                             s->request) / 3000);

    if (ngx_time() - s->seen_written
        < ngx_min(interval, NGX_KUBENOVA_GW_SEEN_INTERVAL))
    {
        return NGX_OK;
    }

    s->seen_written = ngx_time();

    s->scratch = ngx_create_pool(512, s->request->connection->log);
    if (s->scratch == NULL) {
        return NGX_OK;
    }

    s->params[0] = ngx_kubenova_gw_param(s, (char *) s->cluster);
    s->params[1] = ngx_kubenova_gw_param(s, (char *) s->stream_id);

    return ngx_kubenova_gw_call(s, ngx_kubenova_gw_heartbeat_sql, 2,
                                ngx_kubenova_gw_current_done);
}


/*
 * gateway.ack, .usage and .app_status answer what the Operator got wrong as
 * a gRPC status in their second column: end the stream with it.
 */

static ngx_uint_t
ngx_kubenova_gw_refused(ngx_kubenova_gw_stream_t *s, PGresult *res)
{
    ngx_int_t  status;

    if (PQntuples(res) != 1 || PQnfields(res) < 3 || PQgetisnull(res, 0, 1)) {
        return 0;
    }

    status = ngx_atoi((u_char *) PQgetvalue(res, 0, 1),
                      PQgetlength(res, 0, 1));

    if (status == 0) {
        return 0;
    }

    ngx_kubenova_gw_end(s, status == NGX_ERROR ? NGX_KUBENOVA_GRPC_INTERNAL
                                               : (ngx_uint_t) status,
                        PQgetisnull(res, 0, 2) ? "refused"
                                               : PQgetvalue(res, 0, 2));
    return 1;
}


/* gateway.ack and gateway.heartbeat say whether this stream is current */

static void
ngx_kubenova_gw_current_done(ngx_kubenova_gw_stream_t *s, PGresult *res)
{
    if (ngx_kubenova_gw_refused(s, res)) {
        return;
    }

    if (PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 'f') {
        ngx_kubenova_gw_end(s, NGX_KUBENOVA_GRPC_ABORTED,
                            "replaced by a newer stream for this cluster");
    }
}


static ngx_int_t
ngx_kubenova_gw_ack(ngx_kubenova_gw_stream_t *s, Kubenova__V1__Ack *ack)
{
    if (!ngx_kubenova_gw_text_ok(ack->kind, NGX_KUBENOVA_GW_KIND_LEN)
        || !ngx_kubenova_gw_text_ok(ack->name, NGX_KUBENOVA_GW_NAME_LEN)
        || ack->kind == NULL || ack->kind[0] == '\0'
        || ack->name == NULL || ack->name[0] == '\0'
        || !ngx_kubenova_gw_text_ok(ack->error, 65536))
    {
        ngx_kubenova_gw_end(s, NGX_KUBENOVA_GRPC_INVALID_ARGUMENT,
                            "an ack needs a kind, a name and UTF-8 text");
        return NGX_DONE;
    }

    if (ngx_kubenova_gw_scratch(s, 1024) != NGX_OK) {
        return NGX_DONE;
    }

    s->params[0] = ngx_kubenova_gw_param(s, (char *) s->cluster);
    s->params[1] = ngx_kubenova_gw_param(s, (char *) s->stream_id);
    s->params[2] = ngx_kubenova_gw_param(s, ack->kind);
    s->params[3] = ngx_kubenova_gw_param(s, ack->name);
    s->params[4] = ngx_kubenova_gw_int_param(s, ack->generation);
    s->params[5] = ack->ok ? "true" : "false";
    s->params[6] = ack->ok ? NULL : ngx_kubenova_gw_param(s, ack->error
                                                          ? ack->error : "");

    return ngx_kubenova_gw_call(s, ngx_kubenova_gw_ack_sql, 7,
                                ngx_kubenova_gw_current_done);
}


static ngx_int_t
ngx_kubenova_gw_usage(ngx_kubenova_gw_stream_t *s,
    Kubenova__V1__UsageReport *usage)
{
    json_t                    *list, *item;
    size_t                     i;
    Kubenova__V1__TenantUsage  *t;

    list = json_array();
    if (list == NULL) {
        goto failed;
    }

    for (i = 0; i < usage->n_tenants; i++) {
        t = usage->tenants[i];

        item = json_pack("{s:s?,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}",
                    "tenant", t->tenant,
                    "cpu_request_millicores",
                    (json_int_t) t->cpu_request_millicores,
                    "memory_request_bytes",
                    (json_int_t) t->memory_request_bytes,
                    "storage_request_bytes",
                    (json_int_t) t->storage_request_bytes,
                    "load_balancers", (json_int_t) t->load_balancers,
                    "pods", (json_int_t) t->pods,
                    "namespaces", (json_int_t) t->namespaces,
                    "applications", (json_int_t) t->applications,
                    "gpu_requests", (json_int_t) t->gpu_requests,
                    "quota_violations", (json_int_t) t->quota_violations);

        if (item == NULL || json_array_append_new(list, item) != 0) {
            json_decref(list);
            ngx_kubenova_gw_end(s, NGX_KUBENOVA_GRPC_INVALID_ARGUMENT,
                                "a usage report names a tenant that is not "
                                "UTF-8");
            return NGX_DONE;
        }
    }

    if (ngx_kubenova_gw_scratch(s, 1024) != NGX_OK) {
        json_decref(list);
        return NGX_DONE;
    }

    s->params[0] = ngx_kubenova_gw_param(s, (char *) s->cluster);
    s->params[1] = ngx_kubenova_gw_int_param(s, usage->sequence);
    s->params[2] = ngx_kubenova_gw_int_param(s, usage->window_start_unix);
    s->params[3] = ngx_kubenova_gw_int_param(s, usage->window_end_unix);
    s->params[4] = ngx_kubenova_gw_json_param(s, list);
    s->params[5] = ngx_kubenova_gw_int_param(s, usage->sequence);

    json_decref(list);

    if (ngx_kubenova_gw_usage_keep(s, usage) != NGX_OK) {
        s->param_failed = 1;
    }

    return ngx_kubenova_gw_call(s, ngx_kubenova_gw_usage_sql, 5,
                                ngx_kubenova_gw_usage_done);

failed:

    ngx_kubenova_gw_end(s, NGX_KUBENOVA_GRPC_INTERNAL, "out of memory");
    return NGX_DONE;
}


static void
ngx_kubenova_gw_usage_done(ngx_kubenova_gw_stream_t *s, PGresult *res)
{
    Kubenova__V1__UsageAck        ack = KUBENOVA__V1__USAGE_ACK__INIT;
    Kubenova__V1__ManagerMessage  msg = KUBENOVA__V1__MANAGER_MESSAGE__INIT;

    if (ngx_kubenova_gw_refused(s, res)) {
        return;
    }

    /* the gauges take what was stored, never a repeat that differs */

    if (PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't') {
        ngx_kubenova_usage_metrics_record(
            ngx_http_kubenova_usage_zone(s->request), (char *) s->cluster,
            s->usage_window_end, s->usage, s->nusage);
    }

    /* stored now or before: either way the Operator may forget it */

    ack.sequence = (int64_t) ngx_atoof((u_char *) s->params[5],
                                       ngx_strlen(s->params[5]));
    msg.body_case = KUBENOVA__V1__MANAGER_MESSAGE__BODY_USAGE_ACK;
    msg.usage_ack = &ack;

    (void) ngx_kubenova_grpc_send(s->grpc, &msg.base);
}


/*
 * The report's figures, copied to the scratch pool (the message goes
 * before the database answers), for the usage gauges once it is stored.
 */

static ngx_int_t
ngx_kubenova_gw_usage_keep(ngx_kubenova_gw_stream_t *s,
    Kubenova__V1__UsageReport *usage)
{
    size_t                        i;
    ngx_kubenova_usage_tenant_t  *u;
    Kubenova__V1__TenantUsage    *t;

    s->usage = NULL;
    s->nusage = 0;
    s->usage_window_end = usage->window_end_unix;

    if (ngx_http_kubenova_usage_zone(s->request) == NULL
        || usage->n_tenants == 0)
    {
        return NGX_OK;
    }

    u = ngx_pnalloc(s->scratch,
                    usage->n_tenants * sizeof(ngx_kubenova_usage_tenant_t));
    if (u == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < usage->n_tenants; i++) {
        t = usage->tenants[i];

        /* a report without a tenant name is refused by the database */
        u[i].tenant = ngx_kubenova_gw_param(s, t->tenant ? t->tenant : "");
        if (u[i].tenant == NULL) {
            return NGX_ERROR;
        }

        u[i].figures[0] = t->cpu_request_millicores;
        u[i].figures[1] = t->memory_request_bytes;
        u[i].figures[2] = t->storage_request_bytes;
        u[i].figures[3] = t->load_balancers;
        u[i].figures[4] = t->pods;
        u[i].figures[5] = t->namespaces;
        u[i].figures[6] = t->applications;
        u[i].figures[7] = t->gpu_requests;
        u[i].figures[8] = t->quota_violations;
    }

    s->usage = u;
    s->nusage = usage->n_tenants;

    return NGX_OK;
}


static ngx_int_t
ngx_kubenova_gw_app_status(ngx_kubenova_gw_stream_t *s,
    Kubenova__V1__ApplicationStatus *st)
{
    json_t  *list, *item;
    size_t   i;

    if (st->tenant == NULL || st->app == NULL
        || !ngx_kubenova_gw_text_ok(st->tenant, 63)
        || !ngx_kubenova_gw_text_ok(st->app, 63)
        || !ngx_kubenova_gw_text_ok(st->phase, 256)
        || !ngx_kubenova_gw_text_ok(st->workflow_state, 256))
    {
        ngx_kubenova_gw_end(s, NGX_KUBENOVA_GRPC_INVALID_ARGUMENT,
                            "an application status needs a tenant, an app "
                            "and UTF-8 text");
        return NGX_DONE;
    }

    list = json_array();
    if (list == NULL) {
        goto failed;
    }

    for (i = 0; i < st->n_services; i++) {
        item = json_pack("{s:s?,s:b,s:s?}",
                         "name", st->services[i]->name,
                         "healthy", (int) st->services[i]->healthy,
                         "message", st->services[i]->message);

        if (item == NULL || json_array_append_new(list, item) != 0) {
            json_decref(list);
            ngx_kubenova_gw_end(s, NGX_KUBENOVA_GRPC_INVALID_ARGUMENT,
                                "a service health is not UTF-8");
            return NGX_DONE;
        }
    }

    if (ngx_kubenova_gw_scratch(s, 1024) != NGX_OK) {
        json_decref(list);
        return NGX_DONE;
    }

    s->params[0] = ngx_kubenova_gw_param(s, (char *) s->cluster);
    s->params[1] = ngx_kubenova_gw_param(s, st->tenant);
    s->params[2] = ngx_kubenova_gw_param(s, st->app);
    s->params[3] = ngx_kubenova_gw_int_param(s, st->generation);
    s->params[4] = ngx_kubenova_gw_param(s, st->phase ? st->phase : "");
    s->params[5] = ngx_kubenova_gw_int_param(s, st->observed_generation);
    s->params[6] = ngx_kubenova_gw_param(s, st->workflow_state
                                            ? st->workflow_state : "");
    s->params[7] = ngx_kubenova_gw_json_param(s, list);

    json_decref(list);

    return ngx_kubenova_gw_call(s, ngx_kubenova_gw_app_status_sql, 8,
                                ngx_kubenova_gw_app_status_done);

failed:

    ngx_kubenova_gw_end(s, NGX_KUBENOVA_GRPC_INTERNAL, "out of memory");
    return NGX_DONE;
}


static void
ngx_kubenova_gw_app_status_done(ngx_kubenova_gw_stream_t *s, PGresult *res)
{
    Kubenova__V1__StatusAck       ack = KUBENOVA__V1__STATUS_ACK__INIT;
    Kubenova__V1__ManagerMessage  msg = KUBENOVA__V1__MANAGER_MESSAGE__INIT;

    if (ngx_kubenova_gw_refused(s, res)) {
        return;
    }

    ack.tenant = (char *) s->params[1];
    ack.app = (char *) s->params[2];
    ack.generation = (int64_t) ngx_atoof((u_char *) s->params[3],
                                         ngx_strlen(s->params[3]));
    msg.body_case = KUBENOVA__V1__MANAGER_MESSAGE__BODY_STATUS_ACK;
    msg.status_ack = &ack;

    (void) ngx_kubenova_grpc_send(s->grpc, &msg.base);
}


/* the cluster's components (NovaClusterConfig): the newest is kept */

static ngx_int_t
ngx_kubenova_gw_components(ngx_kubenova_gw_stream_t *s,
    Kubenova__V1__ComponentStatus *cs)
{
    json_t                  *list, *item;
    size_t                   i;
    Kubenova__V1__Component  *c;

    list = json_array();
    if (list == NULL) {
        ngx_kubenova_gw_end(s, NGX_KUBENOVA_GRPC_INTERNAL, "out of memory");
        return NGX_DONE;
    }

    for (i = 0; i < cs->n_components; i++) {
        c = cs->components[i];

        item = NULL;

        if (ngx_kubenova_gw_text_ok(c->name, 63)
            && ngx_kubenova_gw_text_ok(c->version, 63)
            && ngx_kubenova_gw_text_ok(c->state, 63)
            && ngx_kubenova_gw_text_ok(c->message, 1024))
        {
            item = json_pack("{s:s?,s:s?,s:s?,s:s?}", "name", c->name,
                             "version", c->version, "state", c->state,
                             "message", c->message);
        }

        if (item == NULL || json_array_append_new(list, item) != 0) {
            json_decref(list);
            ngx_kubenova_gw_end(s, NGX_KUBENOVA_GRPC_INVALID_ARGUMENT,
                                "a component needs UTF-8 text of bounded "
                                "length");
            return NGX_DONE;
        }
    }

    if (ngx_kubenova_gw_scratch(s, 1024) != NGX_OK) {
        json_decref(list);
        return NGX_DONE;
    }

    s->params[0] = ngx_kubenova_gw_param(s, (char *) s->cluster);
    s->params[1] = ngx_kubenova_gw_int_param(s, cs->config_generation);
    s->params[2] = ngx_kubenova_gw_json_param(s, list);

    json_decref(list);

    return ngx_kubenova_gw_call(s, ngx_kubenova_gw_components_sql, 3,
                                ngx_kubenova_gw_components_done);
}


static void
ngx_kubenova_gw_components_done(ngx_kubenova_gw_stream_t *s, PGresult *res)
{
    (void) ngx_kubenova_gw_refused(s, res);
}


/* a kubeconfig is encrypted here, before it reaches the database */

static ngx_int_t
ngx_kubenova_gw_kubeconfig(ngx_kubenova_gw_stream_t *s,
    Kubenova__V1__IssuedKubeconfig *kc)
{
    u_char                         *sealed;
    size_t                          sealed_len;
    ngx_str_t                       aad, raw, b64;
    ngx_http_kubenova_main_conf_t  *kmcf;

    if (kc->tenant == NULL || kc->tenant[0] == '\0'
        || !ngx_kubenova_gw_text_ok(kc->tenant, 63)
        || kc->role == NULL
        || (ngx_strcmp(kc->role, "owner") != 0
            && ngx_strcmp(kc->role, "readonly") != 0)
        || kc->kubeconfig.len == 0)
    {
        ngx_kubenova_gw_end(s, NGX_KUBENOVA_GRPC_INVALID_ARGUMENT,
                            "a kubeconfig needs a tenant, a role (owner or "
                            "readonly) and its bytes");
        return NGX_DONE;
    }

    kmcf = ngx_http_get_module_main_conf(s->request, ngx_http_kubenova_module);

    if (!kmcf->has_secret_key) {
        /* not acked: the Operator keeps it and sends it again later */
        ngx_log_error(NGX_LOG_ERR, s->request->connection->log, 0,
                      "kubenova: kubeconfig of tenant \"%s\" from cluster "
                      "\"%s\" not stored: kubenova_secret_key_file is not "
                      "set", kc->tenant, s->cluster);
        return NGX_OK;
    }

    sealed_len = kc->kubeconfig.len + NGX_KUBENOVA_SEAL_OVERHEAD;

    if (ngx_kubenova_gw_scratch(s, 2 * sealed_len + 4096) != NGX_OK) {
        return NGX_DONE;
    }

    sealed = ngx_pnalloc(s->scratch, sealed_len);
    b64.data = ngx_pnalloc(s->scratch,
                           ngx_base64_encoded_length(sealed_len) + 1);

    if (sealed == NULL || b64.data == NULL
        || ngx_kubenova_crypto_kubeconfig_aad(s->scratch, (char *) s->cluster,
                                              kc->tenant, kc->role, &aad)
           != NGX_OK
        || ngx_kubenova_crypto_seal(kmcf->secret_key, &aad,
                                    kc->kubeconfig.data, kc->kubeconfig.len,
                                    sealed)
           != NGX_OK)
    {
        goto failed;
    }

    raw.data = sealed;
    raw.len = sealed_len;
    ngx_encode_base64(&b64, &raw);
    b64.data[b64.len] = '\0';

    s->params[0] = ngx_kubenova_gw_param(s, (char *) s->cluster);
    s->params[1] = ngx_kubenova_gw_param(s, (char *) s->stream_id);
    s->params[2] = ngx_kubenova_gw_param(s, kc->tenant);
    s->params[3] = ngx_kubenova_gw_param(s, kc->role);
    s->params[4] = (char *) b64.data;

    return ngx_kubenova_gw_call(s, ngx_kubenova_gw_kubeconfig_sql, 5,
                                ngx_kubenova_gw_kubeconfig_done);

failed:

    if (s->scratch) {
        ngx_destroy_pool(s->scratch);
        s->scratch = NULL;
    }

    ngx_kubenova_gw_end(s, NGX_KUBENOVA_GRPC_INTERNAL,
                        "cannot encrypt the kubeconfig");
    return NGX_DONE;
}


static void
ngx_kubenova_gw_kubeconfig_done(ngx_kubenova_gw_stream_t *s, PGresult *res)
{
    Kubenova__V1__KubeconfigAck   ack = KUBENOVA__V1__KUBECONFIG_ACK__INIT;
    Kubenova__V1__ManagerMessage  msg = KUBENOVA__V1__MANAGER_MESSAGE__INIT;

    if (ngx_kubenova_gw_refused(s, res)) {
        return;
    }

    ack.tenant = (char *) s->params[2];
    ack.role = (char *) s->params[3];
    msg.body_case = KUBENOVA__V1__MANAGER_MESSAGE__BODY_KUBECONFIG_ACK;
    msg.kubeconfig_ack = &ack;

    (void) ngx_kubenova_grpc_send(s->grpc, &msg.base);
}


/*
 * Renewal: a CertificateRequest on the authenticated stream.  The CSR must
 * name the stream's cluster; the certificate is signed here, its serial
 * recorded (only while this stream is the cluster's), then sent.  A refusal
 * is a CertificateIssued with an error: the stream goes on.
 */

static ngx_int_t
ngx_kubenova_gw_certificate(ngx_kubenova_gw_stream_t *s,
    Kubenova__V1__CertificateRequest *req)
{
    X509_REQ                       *csr;
    time_t                          not_after;
    ngx_int_t                       rc;
    ngx_str_t                       pem;
    ngx_http_kubenova_main_conf_t  *kmcf;
    u_char                          serial[NGX_KUBENOVA_CA_SERIAL_LEN + 1];
    char                            cn[NGX_KUBENOVA_CA_CN_LEN];
    char                            err[160];
    u_char                          num[NGX_INT64_LEN + 1];

    kmcf = ngx_http_get_module_main_conf(s->request, ngx_http_kubenova_module);

    if (kmcf->ca == NULL) {
        ngx_kubenova_gw_certificate_send(s, NULL, 0,
                                         "this Manager has no kubenova_ca");
        return NGX_OK;
    }

    rc = ngx_kubenova_ca_parse_csr(req->csr_pem.data, req->csr_pem.len, &csr,
                                   cn, err, sizeof(err));
    if (rc == NGX_ERROR) {
        ngx_kubenova_gw_end(s, NGX_KUBENOVA_GRPC_INTERNAL, "out of memory");
        return NGX_DONE;
    }

    if (rc == NGX_DECLINED) {
        ngx_kubenova_gw_certificate_send(s, NULL, 0, err);
        return NGX_OK;
    }

    if (ngx_strcmp(cn, s->cluster) != 0) {
        X509_REQ_free(csr);
        ngx_kubenova_gw_certificate_send(s, NULL, 0,
            "the CSR's subject must be CN=<this stream's cluster>");
        return NGX_OK;
    }

    not_after = ngx_time() + kmcf->ca->validity;

    if (ngx_kubenova_gw_scratch(s, 4096) != NGX_OK) {
        X509_REQ_free(csr);
        return NGX_DONE;
    }

    rc = ngx_kubenova_ca_new_serial(serial);

    if (rc == NGX_OK) {
        rc = ngx_kubenova_ca_sign(kmcf->ca, csr, cn, serial, not_after,
                                  s->scratch, &pem,
                                  s->request->connection->log);
    }

    X509_REQ_free(csr);

    if (rc != NGX_OK) {
        ngx_destroy_pool(s->scratch);
        s->scratch = NULL;
        ngx_kubenova_gw_certificate_send(s, NULL, 0,
                                         "the certificate could not be "
                                         "signed");
        return NGX_OK;
    }

    ngx_sprintf(num, "%T%Z", not_after);

    s->params[0] = ngx_kubenova_gw_param(s, (char *) s->cluster);
    s->params[1] = ngx_kubenova_gw_param(s, (char *) s->stream_id);
    s->params[2] = ngx_kubenova_gw_param(s, (char *) serial);
    s->params[3] = ngx_kubenova_gw_param(s, (char *) num);

    /* not parameters: what the answer sends once the serial is recorded */

    s->params[4] = (char *) ngx_pnalloc(s->scratch, pem.len + 1);
    if (s->params[4] == NULL) {
        s->param_failed = 1;

    } else {
        ngx_memcpy((char *) s->params[4], pem.data, pem.len);
        ((char *) s->params[4])[pem.len] = '\0';
    }

    return ngx_kubenova_gw_call(s, ngx_kubenova_gw_certificate_sql, 4,
                                ngx_kubenova_gw_certificate_done);
}


static void
ngx_kubenova_gw_certificate_done(ngx_kubenova_gw_stream_t *s, PGresult *res)
{
    if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0)
        || PQgetvalue(res, 0, 0)[0] != 't')
    {
        ngx_kubenova_gw_end(s, NGX_KUBENOVA_GRPC_ABORTED,
                            "this stream no longer speaks for the cluster");
        return;
    }

    ngx_kubenova_gw_certificate_send(s, s->params[4],
                                     ngx_atoof((u_char *) s->params[3],
                                               ngx_strlen(s->params[3])),
                                     NULL);
}


static void
ngx_kubenova_gw_certificate_send(ngx_kubenova_gw_stream_t *s,
    const char *pem, int64_t not_after, const char *error)
{
    ngx_http_kubenova_main_conf_t  *kmcf;
    Kubenova__V1__ManagerMessage    msg = KUBENOVA__V1__MANAGER_MESSAGE__INIT;
    Kubenova__V1__CertificateIssued issued =
                                        KUBENOVA__V1__CERTIFICATE_ISSUED__INIT;

    kmcf = ngx_http_get_module_main_conf(s->request, ngx_http_kubenova_module);

    if (pem) {
        issued.certificate_pem.data = (uint8_t *) pem;
        issued.certificate_pem.len = ngx_strlen(pem);
        issued.ca_pem.data = kmcf->ca->cert_pem.data;
        issued.ca_pem.len = kmcf->ca->cert_pem.len;
        issued.not_after_unix = not_after;

    } else {
        ngx_log_error(NGX_LOG_INFO, s->request->connection->log, 0,
                      "kubenova: certificate request of cluster \"%s\" "
                      "refused: %s", s->cluster, error);
        issued.error = (char *) error;
    }

    msg.body_case = KUBENOVA__V1__MANAGER_MESSAGE__BODY_CERTIFICATE;
    msg.certificate = &issued;

    if (ngx_kubenova_grpc_send(s->grpc, &msg.base) != NGX_OK) {
        ngx_kubenova_gw_end(s, NGX_KUBENOVA_GRPC_INTERNAL,
                            "cannot send a certificate");
    }
}


/* the stream's one statement */


static ngx_int_t
ngx_kubenova_gw_call(ngx_kubenova_gw_stream_t *s, const char *sql,
    int nparams, ngx_kubenova_gw_done_pt done)
{
    ngx_int_t  rc;

    if (s->param_failed) {
        s->param_failed = 0;
        s->query.keep = 0;
        ngx_destroy_pool(s->scratch);
        s->scratch = NULL;
        ngx_kubenova_gw_end(s, NGX_KUBENOVA_GRPC_INTERNAL, "out of memory");
        return NGX_DONE;
    }

    s->done = done;
    s->query.sql = sql;
    s->query.nparams = nparams;
    s->query.values = s->params;
    s->query.done = ngx_kubenova_gw_call_done;
    s->query.data = s;
    s->query.lease.log = s->request->connection->log;

    rc = ngx_kubenova_pg_query(s->gateway->pool, &s->query);

    if (rc != NGX_AGAIN) {
        s->query.keep = 0;
        ngx_destroy_pool(s->scratch);
        s->scratch = NULL;
        ngx_kubenova_gw_end(s, NGX_KUBENOVA_GRPC_UNAVAILABLE,
                            ngx_kubenova_pg_strerror(rc));
        return NGX_DONE;
    }

    s->busy = 1;
    s->paused = 1;

    return NGX_AGAIN;
}


static void
ngx_kubenova_gw_call_done(void *data, ngx_int_t rc, PGresult *res)
{
    ngx_kubenova_gw_stream_t  *s = data;

    ngx_uint_t                kept;
    ngx_pool_t               *scratch;
    ngx_connection_t         *c;
    ngx_kubenova_gw_done_pt   done;

    /* done() may start the next statement with a scratch pool of its own */

    scratch = s->scratch;
    s->scratch = NULL;

    s->busy = 0;
    kept = s->query.keep;
    s->query.keep = 0;
    done = s->done;
    c = s->request->connection;

    if (rc != NGX_OK) {
        ngx_kubenova_gw_end(s, NGX_KUBENOVA_GRPC_UNAVAILABLE,
                            ngx_kubenova_pg_strerror(rc));

    } else if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "kubenova: gateway statement failed for cluster "
                      "\"%s\": %s", s->cluster, PQresultErrorMessage(res));

        if (kept) {
            PQclear(res);
        }

        ngx_kubenova_gw_end(s, NGX_KUBENOVA_GRPC_INTERNAL,
                            "the Manager could not process the message");

    } else if (!s->ended) {
        done(s, res);           /* a kept result is done()'s to clear */

    } else if (kept) {
        PQclear(res);
    }

    if (scratch) {
        ngx_destroy_pool(scratch);
    }

    if (!s->ended && !s->busy && s->state == NGX_KUBENOVA_GW_LIVE) {
        ngx_kubenova_gw_next(s);
    }

    ngx_http_run_posted_requests(c);
}


/*
 * What to do when no statement runs: a deferred message first, then the
 * changes announced meanwhile, then read more.
 */

static void
ngx_kubenova_gw_next(ngx_kubenova_gw_stream_t *s)
{
    ngx_int_t                       rc;
    ngx_kubenova_gw_change_t       *ch;
    Kubenova__V1__OperatorMessage  *m;

    while (!s->ended && !s->busy && s->state == NGX_KUBENOVA_GW_LIVE) {

        if (s->deferred) {
            m = s->deferred;
            s->deferred = NULL;

            rc = ngx_kubenova_gw_dispatch(s, m);

            if (rc != NGX_OK) {
                return;
            }

            continue;
        }

        if (s->nchanges) {
            ch = &s->changes[s->change_head];
            s->change_head = (s->change_head + 1) % NGX_KUBENOVA_GW_CHANGES;
            s->nchanges--;

            if (ngx_kubenova_gw_scratch(s, 512) != NGX_OK) {
                return;
            }

            s->params[0] = ngx_kubenova_gw_param(s, (char *) s->cluster);
            s->params[1] = ngx_kubenova_gw_param(s, ch->kind);
            s->params[2] = ngx_kubenova_gw_param(s, ch->name);

            if (s->nchanges == 0) {
                ngx_free(s->changes);
                s->changes = NULL;
                s->change_head = 0;
            }

            (void) ngx_kubenova_gw_call(s, ngx_kubenova_gw_object_sql, 3,
                                        ngx_kubenova_gw_fetch_done);
            return;
        }

        if (s->paused) {
            s->paused = 0;
            ngx_kubenova_grpc_resume(s->grpc);
        }

        return;
    }
}


static void
ngx_kubenova_gw_fetch_done(ngx_kubenova_gw_stream_t *s, PGresult *res)
{
    if (PQntuples(res) != 1) {
        return;                 /* gone for good: nothing to tell */
    }

    (void) ngx_kubenova_gw_send_object(s, s->params[1], s->params[2],
                                       PQgetvalue(res, 0, 0),
                                       PQgetvalue(res, 0, 1)[0] == 't',
                                       PQgetisnull(res, 0, 2)
                                       ? NULL : PQgetvalue(res, 0, 2),
                                       PQgetlength(res, 0, 2));
}


/* output drained: the difference goes on */

static void
ngx_kubenova_gw_drained(ngx_kubenova_grpc_t *g)
{
    ngx_kubenova_gw_stream_t  *s = g->data;

    if (s->state == NGX_KUBENOVA_GW_DIFF && s->diff && !s->ended) {
        ngx_kubenova_gw_send_diff(s);
    }
}


static void
ngx_kubenova_gw_end(ngx_kubenova_gw_stream_t *s, ngx_uint_t status,
    const char *message)
{
    if (s->ended) {
        return;
    }

    s->ended = 1;

    /*
     * An ended stream may linger until its client takes the rest of its
     * output (up to send_timeout): it must not keep its place in the tree,
     * where it would hide a newer stream of its cluster from the changes.
     */

    if (s->registered) {
        ngx_rbtree_delete(&s->gateway->streams, &s->node.node);
        s->registered = 0;
        ngx_kubenova_gw_disconnect(s);
    }

    ngx_kubenova_kube_proxy_stream_gone(&s->tunnels);

    if (s->grpc) {
        ngx_kubenova_grpc_finish(s->grpc, status, message);
    }
}


/* the request goes away: forget the stream, tell the database */

static void
ngx_kubenova_gw_closed(ngx_kubenova_grpc_t *g)
{
    ngx_kubenova_gw_stream_t  *s = g->data;

    s->ended = 1;

    if (s->busy) {
        ngx_kubenova_pg_query_cancel(&s->query);
        s->busy = 0;
    }

    if (s->scratch) {
        ngx_destroy_pool(s->scratch);
        s->scratch = NULL;
    }

    if (s->diff) {
        PQclear(s->diff);
        s->diff = NULL;
    }

    if (s->deferred) {
        kubenova__v1__operator_message__free_unpacked(s->deferred, NULL);
        s->deferred = NULL;
    }

    if (s->changes) {
        ngx_free(s->changes);
        s->changes = NULL;
    }

    if (s->heartbeat.timer_set) {
        ngx_del_timer(&s->heartbeat);
    }

    ngx_kubenova_kube_proxy_stream_gone(&s->tunnels);

    if (s->grpc) {
        ngx_queue_remove(&s->queue);
    }

    if (s->in_hello) {
        ngx_queue_remove(&s->hello_queue);
        s->in_hello = 0;
    }

    if (s->registered) {
        ngx_rbtree_delete(&s->gateway->streams, &s->node.node);
        s->registered = 0;
        ngx_kubenova_gw_disconnect(s);
    }
}


/* a statement that outlives the stream: its memory is its own */

typedef struct {
    ngx_kubenova_pg_query_t   query;
    const char               *params[2];
    char                      cluster[64];
    char                      stream_id[33];
} ngx_kubenova_gw_disconnect_t;


static void
ngx_kubenova_gw_disconnect(ngx_kubenova_gw_stream_t *s)
{
    ngx_kubenova_gw_disconnect_t  *d;

    d = ngx_calloc(sizeof(ngx_kubenova_gw_disconnect_t), s->gateway->log);
    if (d == NULL) {
        return;
    }

    ngx_memcpy(d->cluster, s->cluster, sizeof(d->cluster));
    ngx_memcpy(d->stream_id, s->stream_id, sizeof(d->stream_id));

    d->params[0] = d->cluster;
    d->params[1] = d->stream_id;
    d->query.sql = ngx_kubenova_gw_disconnect_sql;
    d->query.nparams = 2;
    d->query.values = d->params;
    d->query.done = ngx_kubenova_gw_disconnect_done;
    d->query.data = d;
    d->query.lease.log = s->gateway->log;

    if (ngx_kubenova_pg_query(s->gateway->pool, &d->query) != NGX_AGAIN) {
        ngx_free(d);
    }
}


static void
ngx_kubenova_gw_disconnect_done(void *data, ngx_int_t rc, PGresult *res)
{
    ngx_free(data);
}


/* timers */


static void
ngx_kubenova_gw_heartbeat_handler(ngx_event_t *ev)
{
    ngx_connection_t             *c;
    ngx_kubenova_gw_stream_t     *s = ev->data;
    Kubenova__V1__Heartbeat       hb = KUBENOVA__V1__HEARTBEAT__INIT;
    Kubenova__V1__ManagerMessage  msg = KUBENOVA__V1__MANAGER_MESSAGE__INIT;

    if (s->ended) {
        return;
    }

    c = s->request->connection;

    hb.sent_at_unix_ms = (int64_t) ngx_time() * 1000
                         + (int64_t) ngx_timeofday()->msec;
    msg.body_case = KUBENOVA__V1__MANAGER_MESSAGE__BODY_HEARTBEAT;
    msg.heartbeat = &hb;

    /* a heartbeat queued behind a full window says nothing: skip it */

    if (ngx_kubenova_grpc_pending(s->grpc) == 0) {
        (void) ngx_kubenova_grpc_send(s->grpc, &msg.base);
    }

    if (!s->ended) {
        ngx_add_timer(&s->heartbeat, s->heartbeat_interval);
    }

    ngx_http_run_posted_requests(c);
}


static void
ngx_kubenova_gw_watch_handler(ngx_event_t *ev)
{
    ngx_kubenova_gateway_t  *gw = ev->data;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        /* reload or shutdown: Operators reconnect to the new workers */
        ngx_kubenova_gw_end_all(gw, NGX_KUBENOVA_GRPC_UNAVAILABLE,
                                "the Manager is restarting; reconnect");
        return;
    }

    if (!ngx_queue_empty(&gw->all)) {
        ngx_add_timer(&gw->watch, NGX_KUBENOVA_GW_WATCH);
    }
}


static void
ngx_kubenova_gw_end_all(ngx_kubenova_gateway_t *gw, ngx_uint_t status,
    const char *message)
{
    ngx_queue_t               *q;
    ngx_kubenova_gw_stream_t  *s;

    for (q = ngx_queue_head(&gw->all);
         q != ngx_queue_sentinel(&gw->all);
         q = ngx_queue_next(q))
    {
        s = ngx_queue_data(q, ngx_kubenova_gw_stream_t, queue);
        ngx_kubenova_gw_end(s, status, message);
    }
}


/* the change feed */


static void
ngx_kubenova_gw_notify(void *data, const char *channel, const char *payload)
{
    ngx_kubenova_gateway_t  *gw = data;

    size_t                     len, kind_len, cluster_len;
    ngx_uint_t                 stream_notice;
    ngx_queue_t               *q, *next;
    const char                *p, *kind, *name, *end;
    ngx_kubenova_gw_stream_t  *s;

    p = strchr(payload, '\t');
    if (p == NULL) {
        return;
    }

    cluster_len = p - payload;
    stream_notice = (ngx_strcmp(channel, "kubenova_stream") == 0);

    if (stream_notice) {
        kind = p + 1;          /* the stream id */
        kind_len = ngx_strlen(kind);
        name = NULL;
        len = 0;

    } else {
        /* kubenova_desired_state: cluster \t kind \t name \t generation */

        kind = p + 1;
        p = strchr(kind, '\t');
        if (p == NULL || p - kind >= NGX_KUBENOVA_GW_KIND_LEN) {
            return;
        }

        kind_len = p - kind;
        name = p + 1;
        end = strchr(name, '\t');
        len = end ? (size_t) (end - name) : ngx_strlen(name);

        if (len >= NGX_KUBENOVA_GW_NAME_LEN) {
            return;
        }
    }

    /* the cluster's live stream, and the ones whose hello is in flight */

    s = ngx_kubenova_gw_lookup(gw, payload, cluster_len);

    if (s && !s->ended) {
        ngx_kubenova_gw_deliver(s, stream_notice, kind, kind_len, name, len);
    }

    for (q = ngx_queue_head(&gw->hellos);
         q != ngx_queue_sentinel(&gw->hellos);
         q = next)
    {
        next = ngx_queue_next(q);
        s = ngx_queue_data(q, ngx_kubenova_gw_stream_t, hello_queue);

        if (!s->ended && ngx_strlen(s->cluster) == cluster_len
            && ngx_strncmp(s->cluster, payload, cluster_len) == 0)
        {
            ngx_kubenova_gw_deliver(s, stream_notice, kind, kind_len,
                                    name, len);
        }
    }
}


/*
 * One notice for one stream.  Stream notices arrive in commit order: one
 * naming another stream after this stream's own is from a newer hello, one
 * before it is from an older stream and means nothing here.
 */

static void
ngx_kubenova_gw_deliver(ngx_kubenova_gw_stream_t *s, ngx_uint_t stream_notice,
    const char *kind, size_t kind_len, const char *name, size_t len)
{
    ngx_kubenova_gw_change_t  *ch;

    if (stream_notice) {
        if (ngx_strcmp(kind, (char *) s->stream_id) == 0) {
            s->seen_own_notice = 1;

        } else if (s->seen_own_notice) {
            ngx_kubenova_gw_end(s, NGX_KUBENOVA_GRPC_ABORTED,
                                "replaced by a newer stream for this cluster");
            ngx_http_run_posted_requests(s->request->connection);
        }

        return;
    }

    if (s->nchanges == NGX_KUBENOVA_GW_CHANGES) {
        /* bounded: past this the next hello's difference does the work */
        ngx_kubenova_gw_end(s, NGX_KUBENOVA_GRPC_UNAVAILABLE,
                            "too many changes pending; reconnect to "
                            "resynchronise");
        ngx_http_run_posted_requests(s->request->connection);
        return;
    }

    if (s->changes == NULL) {
        s->changes = ngx_alloc(NGX_KUBENOVA_GW_CHANGES
                               * sizeof(ngx_kubenova_gw_change_t),
                               s->gateway->log);
        if (s->changes == NULL) {
            ngx_kubenova_gw_end(s, NGX_KUBENOVA_GRPC_INTERNAL,
                                "out of memory");
            return;
        }

        s->change_head = 0;
    }

    ch = &s->changes[(s->change_head + s->nchanges)
                     % NGX_KUBENOVA_GW_CHANGES];
    ngx_memcpy(ch->kind, kind, kind_len);
    ch->kind[kind_len] = '\0';
    ngx_memcpy(ch->name, name, len);
    ch->name[len] = '\0';
    s->nchanges++;

    if (!s->busy && s->state == NGX_KUBENOVA_GW_LIVE) {
        ngx_kubenova_gw_next(s);
        ngx_http_run_posted_requests(s->request->connection);
    }
}


/* the change feed broke: whatever was announced meanwhile is unknown */

static void
ngx_kubenova_gw_reset(void *data)
{
    ngx_kubenova_gateway_t  *gw = data;

    ngx_kubenova_gw_end_all(gw, NGX_KUBENOVA_GRPC_UNAVAILABLE,
                            "the Manager lost its change feed; reconnect "
                            "to resynchronise");
}


/* helpers */


static ngx_kubenova_gw_stream_t *
ngx_kubenova_gw_lookup(ngx_kubenova_gateway_t *gw, const char *cluster,
    size_t len)
{
    ngx_str_t        key;
    ngx_str_node_t  *node;

    key.data = (u_char *) cluster;
    key.len = len;

    node = ngx_str_rbtree_lookup(&gw->streams, &key,
                                 ngx_crc32_short(key.data, key.len));

    return node ? (ngx_kubenova_gw_stream_t *) node : NULL;
}


/* the pool a statement's parameters live in; the stream ends without one */

static ngx_int_t
ngx_kubenova_gw_scratch(ngx_kubenova_gw_stream_t *s, size_t size)
{
    s->scratch = ngx_create_pool(size, s->request->connection->log);

    if (s->scratch == NULL) {
        ngx_kubenova_gw_end(s, NGX_KUBENOVA_GRPC_INTERNAL, "out of memory");
        return NGX_ERROR;
    }

    return NGX_OK;
}


static char *
ngx_kubenova_gw_param(ngx_kubenova_gw_stream_t *s, const char *value)
{
    char    *p;
    size_t   len;

    len = ngx_strlen(value) + 1;

    p = ngx_pnalloc(s->scratch, len);
    if (p == NULL) {
        s->param_failed = 1;
        return NULL;
    }

    ngx_memcpy(p, value, len);

    return p;
}


/* json serialised straight into the scratch pool */

static char *
ngx_kubenova_gw_json_param(ngx_kubenova_gw_stream_t *s, json_t *json)
{
    char    *p;
    size_t   len;

    len = json_dumpb(json, NULL, 0, JSON_COMPACT);

    p = len ? ngx_pnalloc(s->scratch, len + 1) : NULL;
    if (p == NULL) {
        s->param_failed = 1;
        return NULL;
    }

    (void) json_dumpb(json, p, len, JSON_COMPACT);
    p[len] = '\0';

    return p;
}


static char *
ngx_kubenova_gw_int_param(ngx_kubenova_gw_stream_t *s, int64_t value)
{
    u_char  *p, *last;

    p = ngx_pnalloc(s->scratch, NGX_INT64_LEN + 1);
    if (p == NULL) {
        s->param_failed = 1;
        return NULL;
    }

    last = ngx_sprintf(p, "%L", value);
    *last = '\0';

    return (char *) p;
}


/* NULL counts as empty; otherwise UTF-8 without control characters */

static ngx_uint_t
ngx_kubenova_gw_text_ok(const char *s, size_t max)
{
    json_t  *j;
    size_t   len;

    if (s == NULL) {
        return 1;
    }

    len = ngx_strlen(s);

    if (len > max) {
        return 0;
    }

    j = json_stringn(s, len);

    if (j == NULL) {
        return 0;
    }

    json_decref(j);

    return 1;
}
