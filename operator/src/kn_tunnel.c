/*
 * The kube proxy tunnel, the Operator's half: see kn_tunnel.h.
 *
 * Messages from the Manager arrive inside libcurl's write callback of the
 * stream, where no transfer may be added, paused or removed: they change
 * a request's state and put it on the dirty list, and a zero-delay timer
 * (kn_tun_kick) does the rest from the loop.  A request lives in the table
 * from its TunnelRequest until its last message is sent (or a cancel).
 */

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kn_tunnel.h"
#include "kn_tunnel_filter.h"


#define KN_TUN_CHUNK         (16 * 1024)   /* TunnelData payload */
#define KN_TUN_FRAMING       64            /* a TunnelData message but its
                                              payload, and more */
#define KN_TUN_BODY_WINDOW   65536         /* request body, the protocol's */
#define KN_TUN_OUT_HIGH      (64 * 1024)   /* pending response bytes past
                                              which the transfer pauses */
#define KN_TUN_MAX_HEADERS   64
#define KN_TUN_MAX_HEADER    8192
#define KN_TUN_RETRY_MS      20            /* the send queue was full */
#define KN_TUN_CONNECT_MS    10000
#define KN_TUN_STATUS_MAX    1024
#define KN_TUN_QUERY_MAX     9216


typedef struct kn_tun_req_s  kn_tun_req_t;

typedef enum {
    KN_TUN_IDLE = 0,        /* not started yet (the kick starts it) */
    KN_TUN_NAMESPACES,      /* listing the tenant's namespaces first */
    KN_TUN_RUNNING,         /* the transfer is in the multi */
    KN_TUN_FINISHING        /* nothing more to read: sending the rest */
} kn_tun_state_e;


struct kn_tun_req_s {
    kn_tunnel_t          *tun;
    kn_tun_req_t         *next;         /* in its bucket */
    kn_tun_req_t         *dirty_next;
    uint64_t              id;
    kn_tun_state_e        state;
    kn_tun_route_t        route;

    char                 *method;
    char                 *path;
    char                 *query;
    char                 *tenant;
    char                 *role;
    struct curl_slist    *send_headers; /* to the API server */

    kn_transfer_t         xfer;
    kn_kube_req_t        *ns_req;
    json_t               *namespaces;   /* name -> true */
    char                  curl_error[CURL_ERROR_SIZE];

    /* the request body: Manager -> API server */
    char                 *in;           /* KN_TUN_BODY_WINDOW bytes */
    size_t                in_len;
    size_t                in_granted;   /* read, window not yet granted */

    /* the response: API server -> Manager */
    long                  status;
    size_t                nheaders;
    Kubenova__V1__Header  headers[KN_TUN_MAX_HEADERS];
    uint64_t              window;
    char                 *out;          /* out[out_pos, out_len) to send */
    size_t                out_pos;
    size_t                out_len;
    size_t                out_cap;
    char                 *acc;          /* the filtered: a list whole, or
                                           a watch's partial line */
    size_t                acc_len;
    size_t                acc_cap;
    size_t                held;         /* of tun->held */

    unsigned              has_body:1;
    unsigned              in_end:1;     /* the last body piece is here */
    unsigned              read_paused:1;
    unsigned              write_paused:1;
    unsigned              filtered:1;   /* the body goes through the filter */
    unsigned              too_big:1;    /* ... and did not fit */
    unsigned              head_sent:1;
    unsigned              end_sent:1;
    unsigned              dirty:1;
    unsigned              cancelled:1;  /* drop it, tell no one */
    unsigned              failed:1;     /* cancel it, tell the Manager */
    unsigned              counted:1;    /* among the running (max_requests) */
};


struct kn_tunnel_s {
    kn_loop_t            *loop;
    const kn_log_t       *log;
    kn_kube_t            *kube;
    kn_credentials_t     *creds;
    kn_tenant_t          *tenants;
    kn_grpc_t            *grpc;
    kn_tunnel_conf_t      conf;

    kn_tun_req_t        **buckets;
    size_t                nbuckets;     /* a power of two */
    size_t                count;        /* in the table */
    size_t                running;      /* counted ones */
    size_t                chunk;        /* TunnelData payload at most */
    size_t                held;         /* bytes the filtered responses
                                           hold, all of them */

    kn_tun_req_t         *dirty;
    kn_timer_t            kick;
};


static kn_tun_req_t **kn_tun_slot(kn_tunnel_t *tun, uint64_t id);
static void kn_tun_dirty(kn_tun_req_t *req);
static void kn_tun_link(kn_tun_req_t *req);
static void kn_tun_kick(kn_timer_t *timer);
static void kn_tun_process(kn_tun_req_t *req);
static void kn_tun_free(kn_tun_req_t *req);
static void kn_tun_request(kn_tunnel_t *tun,
    const Kubenova__V1__TunnelRequest *tr);
static void kn_tun_body(kn_tunnel_t *tun, const Kubenova__V1__TunnelData *d);
static void kn_tun_window(kn_tunnel_t *tun,
    const Kubenova__V1__TunnelWindow *w);
static void kn_tun_cancelled(kn_tunnel_t *tun,
    const Kubenova__V1__TunnelCancel *c);
static void kn_tun_start(kn_tun_req_t *req);
static void kn_tun_namespaces_done(const kn_kube_result_t *res, void *data);
static void kn_tun_transfer(kn_tun_req_t *req, int as_tenant,
    const char *query);
static kn_rc kn_tun_easy(kn_tun_req_t *req, int as_tenant,
    const char *query);
static kn_rc kn_tun_header_line(kn_tun_req_t *req, const char *name,
    const char *value);
static void kn_tun_answer_empty(kn_tun_req_t *req);
static void kn_tun_answer(kn_tun_req_t *req, int code, const char *reason,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static kn_rc kn_tun_answer_json(kn_tun_req_t *req, long status,
    const char *body, size_t len);
static void kn_tun_done(kn_transfer_t *xfer, CURLcode result);
static size_t kn_tun_write_cb(char *ptr, size_t size, size_t nmemb,
    void *userp);
static size_t kn_tun_read_cb(char *buf, size_t size, size_t nitems,
    void *userp);
static size_t kn_tun_header_cb(char *buf, size_t size, size_t nitems,
    void *userp);
static void kn_tun_headers_end(kn_tun_req_t *req);
static kn_rc kn_tun_filter_lines(kn_tun_req_t *req);
static kn_rc kn_tun_filter_whole(kn_tun_req_t *req);
static kn_rc kn_tun_append(kn_tun_req_t *req, char **buf, size_t *len,
    size_t *cap, const char *p, size_t n);
static kn_rc kn_tun_flush(kn_tun_req_t *req);
static kn_rc kn_tun_send_head(kn_tun_req_t *req);
static kn_rc kn_tun_send_data(kn_tunnel_t *tun, uint64_t id,
    const char *p, size_t len, int end);
static kn_rc kn_tun_send_window(kn_tunnel_t *tun, uint64_t id,
    uint32_t increment);
static kn_rc kn_tun_send_cancel(kn_tunnel_t *tun, uint64_t id,
    const char *reason);
static int kn_tun_header_dropped(const char *name, int filtered);


/* -- the table -------------------------------------------------------- */


kn_rc
kn_tunnel_create(kn_loop_t *loop, const kn_log_t *log, kn_kube_t *kube,
    kn_credentials_t *creds, kn_tenant_t *tenants, kn_grpc_t *grpc,
    const kn_tunnel_conf_t *conf, kn_tunnel_t **out)
{
    kn_tunnel_t  *tun;

    tun = calloc(1, sizeof(kn_tunnel_t));
    if (tun == NULL) {
        kn_log(log, KN_LOG_ERROR, "tunnel: out of memory");
        return KN_ERROR;
    }

    tun->loop = loop;
    tun->log = log;
    tun->kube = kube;
    tun->creds = creds;
    tun->tenants = tenants;
    tun->grpc = grpc;
    tun->conf = *conf;
    tun->chunk = conf->max_message - KN_TUN_FRAMING < KN_TUN_CHUNK
                 ? conf->max_message - KN_TUN_FRAMING : KN_TUN_CHUNK;
    kn_timer_init(&tun->kick, kn_tun_kick, tun);

    /* twice the running ones: answers of refused requests live briefly */
    for (tun->nbuckets = 16; tun->nbuckets < 2 * conf->max_requests;
         tun->nbuckets *= 2)
    {
        /* void */
    }

    tun->buckets = calloc(tun->nbuckets, sizeof(kn_tun_req_t *));
    if (tun->buckets == NULL) {
        free(tun);
        kn_log(log, KN_LOG_ERROR, "tunnel: out of memory");
        return KN_ERROR;
    }

    kn_log(log, KN_LOG_INFO, "tunnel: kube proxy requests run as the "
           "tenants' own ServiceAccounts, at most %zu at once "
           "(--max-tunnel-requests)", conf->max_requests);

    *out = tun;

    return KN_OK;
}


void
kn_tunnel_destroy(kn_tunnel_t *tun)
{
    size_t         i;
    kn_tun_req_t  *req, *next;

    if (tun == NULL) {
        return;
    }

    kn_timer_cancel(tun->loop, &tun->kick);

    for (i = 0; i < tun->nbuckets; i++) {
        for (req = tun->buckets[i]; req; req = next) {
            next = req->next;
            kn_tun_free(req);
        }
    }

    free(tun->buckets);
    free(tun);
}


static kn_tun_req_t **
kn_tun_slot(kn_tunnel_t *tun, uint64_t id)
{
    uint64_t        h;
    kn_tun_req_t  **slot;

    h = id * 0x9E3779B97F4A7C15ULL;
    slot = &tun->buckets[(h >> 32) & (tun->nbuckets - 1)];

    while (*slot != NULL && (*slot)->id != id) {
        slot = &(*slot)->next;
    }

    return slot;
}


/* out of the table and every list; the transfer is stopped */

static void
kn_tun_free(kn_tun_req_t *req)
{
    size_t          i;
    kn_tunnel_t    *tun = req->tun;
    kn_tun_req_t  **slot, **d;

    slot = kn_tun_slot(tun, req->id);
    if (*slot == req) {
        *slot = req->next;
        tun->count--;
    }

    if (req->dirty) {
        for (d = &tun->dirty; *d != NULL; d = &(*d)->dirty_next) {
            if (*d == req) {
                *d = req->dirty_next;
                break;
            }
        }
    }

    if (req->counted) {
        tun->running--;
    }

    tun->held -= req->held;

    kn_kube_cancel(req->ns_req);

    if (req->xfer.easy != NULL) {
        if (req->xfer.active) {
            kn_loop_remove_transfer(tun->loop, &req->xfer);
        }
        curl_easy_cleanup(req->xfer.easy);
    }

    for (i = 0; i < req->nheaders; i++) {
        free(req->headers[i].name);
        free(req->headers[i].value);
    }

    curl_slist_free_all(req->send_headers);
    json_decref(req->namespaces);
    free(req->method);
    free(req->path);
    free(req->query);
    free(req->tenant);
    free(req->role);
    free(req->in);
    free(req->out);
    free(req->acc);
    free(req);
}


static void
kn_tun_dirty(kn_tun_req_t *req)
{
    kn_tunnel_t  *tun = req->tun;

    kn_tun_link(req);

    if (!kn_timer_is_set(&tun->kick)) {
        (void) kn_timer_add(tun->loop, &tun->kick, 0);
    }
}


/* on the dirty list without a timer: the kick under way sets one */

static void
kn_tun_link(kn_tun_req_t *req)
{
    kn_tunnel_t  *tun = req->tun;

    if (!req->dirty) {
        req->dirty = 1;
        req->dirty_next = tun->dirty;
        tun->dirty = req;
    }
}


/* from the loop: what messages and callbacks asked for */

static void
kn_tun_kick(kn_timer_t *timer)
{
    kn_tunnel_t   *tun = timer->data;
    kn_tun_req_t  *list, *req;

    list = tun->dirty;
    tun->dirty = NULL;

    while (list != NULL) {
        req = list;
        list = req->dirty_next;
        req->dirty = 0;

        kn_tun_process(req);
    }

    if (tun->dirty != NULL && !kn_timer_is_set(&tun->kick)) {
        /* left dirty: the send queue is full, try again shortly */
        (void) kn_timer_add(tun->loop, &tun->kick, KN_TUN_RETRY_MS);
    }
}


static void
kn_tun_process(kn_tun_req_t *req)
{
    kn_rc         rc;
    kn_tunnel_t  *tun = req->tun;

    if (req->cancelled) {
        kn_tun_free(req);
        return;
    }

    if (req->failed) {
        rc = kn_tun_send_cancel(tun, req->id, req->curl_error);
        if (rc == KN_AGAIN) {
            goto again;
        }
        kn_tun_free(req);
        return;
    }

    if (req->state == KN_TUN_IDLE) {
        kn_tun_start(req);
        /* answered at once, or a transfer runs */
    }

    /* the request body's window, given back as the API server read it */
    if (req->in_granted > 0) {
        rc = kn_tun_send_window(tun, req->id, (uint32_t) req->in_granted);
        if (rc == KN_AGAIN) {
            goto again;
        }
        if (rc != KN_OK) {
            kn_tun_free(req);           /* the stream is gone */
            return;
        }
        req->in_granted = 0;
    }

    if (req->read_paused && (req->in_len > 0 || req->in_end)
        && req->xfer.active)
    {
        req->read_paused = 0;
        (void) curl_easy_pause(req->xfer.easy, CURLPAUSE_CONT);
    }

    rc = kn_tun_flush(req);
    if (rc == KN_AGAIN) {
        goto again;
    }

    if (rc == KN_ERROR) {
        snprintf(req->curl_error, sizeof(req->curl_error), "the response "
                 "headers do not fit in a message to the Manager "
                 "(--max-message)");
        req->failed = 1;
        kn_tun_dirty(req);
        return;
    }

    if (rc != KN_OK) {
        kn_tun_free(req);               /* the stream is gone */
        return;
    }

    if (req->state == KN_TUN_FINISHING && req->end_sent) {
        kn_log(tun->log, KN_LOG_DEBUG, "tunnel: request %llu done",
               (unsigned long long) req->id);
        kn_tun_free(req);
        return;
    }

    if (req->write_paused && req->xfer.active
        && req->out_len - req->out_pos < KN_TUN_OUT_HIGH)
    {
        /* may call kn_tun_write_cb at once, which only queues */
        req->write_paused = 0;
        (void) curl_easy_pause(req->xfer.easy, CURLPAUSE_CONT);
    }

    return;

again:

    kn_tun_link(req);
}


/* -- messages from the Manager (inside libcurl: state only) ------------- */


void
kn_tunnel_message(kn_tunnel_t *tun, const Kubenova__V1__ManagerMessage *m)
{
    switch (m->body_case) {

    case KUBENOVA__V1__MANAGER_MESSAGE__BODY_TUNNEL_REQUEST:
        kn_tun_request(tun, m->tunnel_request);
        break;

    case KUBENOVA__V1__MANAGER_MESSAGE__BODY_TUNNEL_DATA:
        kn_tun_body(tun, m->tunnel_data);
        break;

    case KUBENOVA__V1__MANAGER_MESSAGE__BODY_TUNNEL_WINDOW:
        kn_tun_window(tun, m->tunnel_window);
        break;

    case KUBENOVA__V1__MANAGER_MESSAGE__BODY_TUNNEL_CANCEL:
        kn_tun_cancelled(tun, m->tunnel_cancel);
        break;

    default:
        break;
    }
}


void
kn_tunnel_disconnected(kn_tunnel_t *tun)
{
    size_t         i;
    kn_tun_req_t  *req;

    for (i = 0; i < tun->nbuckets; i++) {
        for (req = tun->buckets[i]; req; req = req->next) {
            req->cancelled = 1;
            kn_tun_dirty(req);
        }
    }

    if (tun->count > 0) {
        kn_log(tun->log, KN_LOG_INFO, "tunnel: the stream ended: %zu "
               "request(s) abandoned", tun->count);
    }
}


static void
kn_tun_request(kn_tunnel_t *tun, const Kubenova__V1__TunnelRequest *tr)
{
    size_t          i;
    kn_tun_req_t   *req, **slot;

    slot = kn_tun_slot(tun, tr->id);

    if (*slot != NULL) {
        kn_log(tun->log, KN_LOG_WARN, "tunnel: the Manager reused the id "
               "%llu of a live request: the new one is cancelled",
               (unsigned long long) tr->id);
        (void) kn_tun_send_cancel(tun, tr->id, "the id is in use");
        return;
    }

    if (tun->count >= 2 * tun->conf.max_requests) {
        /* not even room to answer: the Manager floods */
        (void) kn_tun_send_cancel(tun, tr->id, "too many requests on this "
                                  "cluster's Operator");
        return;
    }

    req = calloc(1, sizeof(kn_tun_req_t));
    if (req == NULL) {
        (void) kn_tun_send_cancel(tun, tr->id, "the Operator is out of "
                                  "memory");
        return;
    }

    req->tun = tun;
    req->id = tr->id;
    req->window = tr->window;
    req->has_body = tr->has_body;
    req->method = strdup(tr->method);
    req->path = strdup(tr->path);
    req->query = strdup(tr->query);
    req->tenant = strdup(tr->tenant);
    req->role = strdup(tr->role);

    if (req->has_body) {
        req->in = malloc(KN_TUN_BODY_WINDOW);
    }

    *slot = req;
    tun->count++;

    if (req->method == NULL || req->path == NULL || req->query == NULL
        || req->tenant == NULL || req->role == NULL
        || (req->has_body && req->in == NULL))
    {
        snprintf(req->curl_error, sizeof(req->curl_error), "the Operator "
                 "is out of memory");
        req->failed = 1;
        kn_tun_dirty(req);
        return;
    }

    /* the client's headers, less what must not reach the API server */
    for (i = 0; i < tr->n_headers; i++) {
        if (kn_tun_header_line(req, tr->headers[i]->name,
                               tr->headers[i]->value) != KN_OK)
        {
            snprintf(req->curl_error, sizeof(req->curl_error), "the "
                     "Operator is out of memory");
            req->failed = 1;
            break;
        }
    }

    kn_log(tun->log, KN_LOG_DEBUG, "tunnel: request %llu: tenant \"%s\" "
           "(%s) %s %s%s%s", (unsigned long long) req->id, req->tenant,
           req->role, req->method, req->path, req->query[0] ? "?" : "",
           req->query);

    kn_tun_dirty(req);
}


static void
kn_tun_body(kn_tunnel_t *tun, const Kubenova__V1__TunnelData *d)
{
    kn_tun_req_t  *req;

    req = *kn_tun_slot(tun, d->id);
    if (req == NULL || req->cancelled || req->failed) {
        return;                         /* gone already: late data */
    }

    if (!req->has_body || req->in_end
        || d->data.len > KN_TUN_BODY_WINDOW - req->in_len)
    {
        snprintf(req->curl_error, sizeof(req->curl_error), "the request "
                 "body broke the protocol (beyond its window, or after "
                 "its end)");
        kn_log(tun->log, KN_LOG_WARN, "tunnel: request %llu: %s",
               (unsigned long long) req->id, req->curl_error);
        req->failed = 1;
        kn_tun_dirty(req);
        return;
    }

    /* the last piece may be empty: protobuf-c gives it no data pointer */
    if (d->data.len > 0) {
        memcpy(req->in + req->in_len, d->data.data, d->data.len);
        req->in_len += d->data.len;
    }

    req->in_end = d->end;

    if (req->read_paused) {
        kn_tun_dirty(req);
    }
}


static void
kn_tun_window(kn_tunnel_t *tun, const Kubenova__V1__TunnelWindow *w)
{
    kn_tun_req_t  *req;

    req = *kn_tun_slot(tun, w->id);
    if (req == NULL) {
        return;
    }

    req->window += w->increment;
    kn_tun_dirty(req);
}


static void
kn_tun_cancelled(kn_tunnel_t *tun, const Kubenova__V1__TunnelCancel *c)
{
    kn_tun_req_t  *req;

    req = *kn_tun_slot(tun, c->id);
    if (req == NULL) {
        return;
    }

    kn_log(tun->log, KN_LOG_INFO, "tunnel: request %llu (%s %s) cancelled "
           "by the Manager: %s", (unsigned long long) req->id, req->method,
           req->path, c->reason[0] ? c->reason : "no reason given");

    req->cancelled = 1;
    kn_tun_dirty(req);
}


/* -- starting a request (from the loop) --------------------------------- */


static void
kn_tun_start(kn_tun_req_t *req)
{
    kn_tunnel_t          *tun = req->tun;
    const char           *why;
    char                  sel[512], query[KN_TUN_QUERY_MAX];
    kn_kube_ref_t         ref;
    kn_kube_list_opts_t   lo;

    req->state = KN_TUN_FINISHING;      /* unless a transfer starts */

    why = kn_tunnel_check(req->method, req->path, req->query);
    if (why != NULL) {
        kn_tun_answer(req, 400, "BadRequest", "the KubeNova proxy refuses "
                      "this request: %s", why);
        return;
    }

    if (strcmp(req->role, "owner") != 0 && strcmp(req->role, "readonly") != 0)
    {
        kn_tun_answer(req, 403, "Forbidden", "the KubeNova proxy knows no "
                      "role \"%s\"", req->role);
        return;
    }

    /* a tenant in place here has its tokens; any other is not served */
    if (kn_credentials_token(tun->creds, req->tenant, req->role) == NULL) {
        kn_tun_answer(req, 503, "ServiceUnavailable", "tenant \"%s\" has no "
                      "%s credentials on this cluster yet: is it placed "
                      "here and ready?", req->tenant, req->role);
        return;
    }

    if (tun->running >= tun->conf.max_requests) {
        kn_log(tun->log, KN_LOG_WARN, "tunnel: request %llu refused: %zu "
               "requests run already (--max-tunnel-requests)",
               (unsigned long long) req->id, tun->running);
        kn_tun_answer(req, 503, "ServiceUnavailable", "the cluster's "
                      "Operator runs %zu proxied requests already, its "
                      "limit: retry later", tun->running);
        return;
    }

    req->counted = 1;
    tun->running++;

    kn_tunnel_route(req->method, req->path, req->query, &req->route);

    switch (req->route.route) {

    case KN_TUN_CLUSTER_LIST:
    case KN_TUN_CLUSTER_GET:
        if (kn_tunnel_cluster_visible(kn_tenant_spec(tun->tenants,
                                                     req->tenant),
                                      &req->route))
        {
            kn_tun_transfer(req, 0, req->query);

        } else if (req->route.route == KN_TUN_CLUSTER_LIST) {
            kn_tun_answer_empty(req);

        } else {
            kn_tun_transfer(req, 1, req->query);    /* RBAC answers */
        }
        return;

    case KN_TUN_NS_COLLECTION:
        if (kn_tunnel_tenant_query(req->query, req->tenant, query,
                                   sizeof(query)) != KN_OK)
        {
            kn_tun_answer(req, 400, "BadRequest", "the query is too long");
            return;
        }

        kn_tun_transfer(req, 0, query);
        return;

    case KN_TUN_NS_GET:
    case KN_TUN_PODS_ALL:
        memset(&ref, 0, sizeof(ref));
        ref.api_version = "v1";
        ref.resource = "namespaces";
        memset(&lo, 0, sizeof(lo));
        snprintf(sel, sizeof(sel), KN_TUNNEL_TENANT_LABEL "=%s",
                 req->tenant);
        lo.label_selector = sel;

        if (kn_kube_list(tun->kube, &ref, &lo, kn_tun_namespaces_done, req,
                         &req->ns_req) != KN_OK)
        {
            kn_tun_answer(req, 503, "ServiceUnavailable", "the Operator "
                          "cannot list the tenant's namespaces now");
            return;
        }

        req->state = KN_TUN_NAMESPACES;
        return;

    default:
        kn_tun_transfer(req, 1, req->query);
        return;
    }
}


static void
kn_tun_namespaces_done(const kn_kube_result_t *res, void *data)
{
    size_t         i;
    char           name_z[256];
    json_t        *item;
    const char    *name;
    kn_tun_req_t  *req = data;

    req->ns_req = NULL;

    if (res->error != NULL) {
        kn_tun_answer(req, 503, "ServiceUnavailable", "the Operator cannot "
                      "list the tenant's namespaces: %s", res->error);
        kn_tun_dirty(req);
        return;
    }

    req->namespaces = json_object();
    if (req->namespaces == NULL) {
        goto nomem;
    }

    json_array_foreach(json_object_get(res->body, "items"), i, item) {
        name = json_string_value(json_object_get(json_object_get(item,
                                                     "metadata"), "name"));
        if (name != NULL
            && json_object_set_new(req->namespaces, name, json_true()) != 0)
        {
            goto nomem;
        }
    }

    if (req->route.route == KN_TUN_NS_GET) {
        snprintf(name_z, sizeof(name_z), "%.*s", (int) req->route.name_len,
                 req->route.name);

        /* a name too long for name_z is longer than any namespace's */
        if (req->route.name_len >= sizeof(name_z)
            || json_object_get(req->namespaces, name_z) == NULL)
        {
            /* the very answer of the API server for a missing one */
            kn_tun_answer(req, 404, "NotFound", "namespaces \"%s\" not "
                          "found", name_z);
            kn_tun_dirty(req);
            return;
        }

        kn_tun_transfer(req, 0, req->query);

    } else {
        req->filtered = 1;
        kn_tun_transfer(req, 0, req->query);
    }

    kn_tun_dirty(req);
    return;

nomem:

    kn_tun_answer(req, 500, "InternalError", "the Operator is out of "
                  "memory");
    kn_tun_dirty(req);
}


/* the transfer, as the tenant or (for the filtered reads) as the Operator */

static void
kn_tun_transfer(kn_tun_req_t *req, int as_tenant, const char *query)
{
    kn_rc  rc;

    rc = kn_tun_easy(req, as_tenant, query);

    if (rc == KN_OK) {
        rc = kn_loop_add_transfer(req->tun->loop, &req->xfer);
    }

    if (rc != KN_OK) {
        kn_tun_answer(req, 503, "ServiceUnavailable", "the Operator cannot "
                      "start another request now (%s)",
                      rc == KN_AGAIN ? "too many transfers" : "failed");
        return;
    }

    req->state = KN_TUN_RUNNING;
}


static kn_rc
kn_tun_easy(kn_tun_req_t *req, int as_tenant, const char *query)
{
    CURL         *easy;
    char         *url;
    size_t        n;
    kn_tunnel_t  *tun = req->tun;
    const char   *token, *server;
    char          err[256];

    easy = curl_easy_init();
    if (easy == NULL) {
        return KN_ERROR;
    }

    req->xfer.easy = easy;
    req->xfer.done = kn_tun_done;
    req->xfer.data = req;

    server = kn_kube_server(tun->kube);
    n = strlen(server) + strlen(req->path) + strlen(query) + 2;
    url = malloc(n);
    if (url == NULL) {
        return KN_ERROR;
    }
    snprintf(url, n, "%s%s%s%s", server, req->path, query[0] ? "?" : "",
             query);
    curl_easy_setopt(easy, CURLOPT_URL, url);
    free(url);

    /*
     * HTTP/1.1: every running request has a connection of its own (reused
     * from the pool when done), so pausing a slow reader's transfer holds
     * only its own TCP window, never a shared HTTP/2 connection's.
     */
    curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                     (long) KN_TUN_CONNECT_MS);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, req->curl_error);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, kn_tun_write_cb);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, req);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, kn_tun_header_cb);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, req);

    /* the Operator's client certificate only for the Operator's reads */
    kn_kube_easy_tls(tun->kube, easy, !as_tenant);

    if (strcmp(req->method, "HEAD") == 0) {
        curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);

    } else if (strcmp(req->method, "GET") != 0) {
        curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, req->method);
    }

    if (req->has_body) {
        curl_easy_setopt(easy, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(easy, CURLOPT_READFUNCTION, kn_tun_read_cb);
        curl_easy_setopt(easy, CURLOPT_READDATA, req);
    }

    if (as_tenant) {
        token = kn_credentials_token(tun->creds, req->tenant, req->role);
    } else {
        token = kn_kube_operator_token(tun->kube, err, sizeof(err));
        if (token == NULL && err[0] != '\0') {
            kn_log(tun->log, KN_LOG_WARN, "tunnel: %s", err);
            return KN_ERROR;
        }
    }

    /* no 100-continue round trip: the body is at hand or on its way */
    req->send_headers = curl_slist_append(req->send_headers, "Expect:");
    if (req->send_headers == NULL) {
        return KN_ERROR;
    }

    if (token != NULL
        && kn_kube_bearer_header(req->send_headers, token) != KN_OK)
    {
        return KN_ERROR;
    }

    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, req->send_headers);

    return KN_OK;
}


/* one of the client's headers, unless it must not go on */

static kn_rc
kn_tun_header_line(kn_tun_req_t *req, const char *name, const char *value)
{
    char                *line;
    size_t               n;
    struct curl_slist   *l;

    if (kn_tun_header_dropped(name, 0) || name[0] == '\0'
        || strpbrk(name, ":\r\n\t ") != NULL
        || strpbrk(value, "\r\n") != NULL)
    {
        return KN_OK;
    }

    /* bodies go through as they are, and some are filtered: plain */
    if (strcasecmp(name, "accept-encoding") == 0) {
        return KN_OK;
    }

    n = strlen(name) + strlen(value) + 3;
    line = malloc(n);
    if (line == NULL) {
        return KN_ERROR;
    }

    snprintf(line, n, "%s: %s", name, value);
    l = curl_slist_append(req->send_headers, line);
    free(line);

    if (l == NULL) {
        return KN_ERROR;
    }

    req->send_headers = l;

    return KN_OK;
}


/*
 * Identity headers (whatever the Manager let through), hop-by-hop headers,
 * and those libcurl sets itself.  Of a response, content-length and
 * content-encoding too when the body is filtered.
 */

static int
kn_tun_header_dropped(const char *name, int filtered)
{
    size_t              i;
    static const char  *dropped[] = {
        "authorization", "proxy-authorization", "cookie", "host",
        "connection", "keep-alive", "proxy-connection", "te", "trailer",
        "transfer-encoding", "upgrade", "expect", "content-length",
        "http2-settings"
    };

    /* X-Remote-*: what an authenticating front proxy would assert */
    if (strncasecmp(name, "impersonate-", 12) == 0
        || strncasecmp(name, "x-remote-", 9) == 0)
    {
        return 1;
    }

    for (i = 0; i < KN_NELEMS(dropped); i++) {
        if (strcasecmp(name, dropped[i]) == 0) {
            /* a response's length is kept when its body is */
            return !(strcasecmp(name, "content-length") == 0 && filtered < 0);
        }
    }

    return filtered > 0 && strcasecmp(name, "content-encoding") == 0;
}


/* -- answers made here ---------------------------------------------------- */


static void
kn_tun_answer(kn_tun_req_t *req, int code, const char *reason,
    const char *fmt, ...)
{
    char     msg[KN_TUN_STATUS_MAX / 2], body[KN_TUN_STATUS_MAX];
    va_list  args;

    va_start(args, fmt);
    vsnprintf(msg, sizeof(msg), fmt, args);
    va_end(args);

    if (code >= 500) {
        kn_log(req->tun->log, KN_LOG_WARN, "tunnel: request %llu (%s %s): "
               "%d %s", (unsigned long long) req->id, req->method,
               req->path, code, msg);
    }

    if (kn_tunnel_status(code, reason, msg, body, sizeof(body)) != KN_OK) {
        snprintf(body, sizeof(body), "{\"kind\":\"Status\",\"apiVersion\":"
                 "\"v1\",\"status\":\"Failure\",\"code\":%d}", code);
    }

    if (kn_tun_answer_json(req, code, body, strlen(body)) != KN_OK) {
        snprintf(req->curl_error, sizeof(req->curl_error), "the Operator "
                 "is out of memory");
        req->failed = 1;
    }
}


/* the whole answer is body; what is left is sending it */

static kn_rc
kn_tun_answer_json(kn_tun_req_t *req, long status, const char *body,
    size_t len)
{
    size_t                 i;
    Kubenova__V1__Header  *h;

    req->status = status;
    req->state = KN_TUN_FINISHING;
    req->filtered = 0;                  /* an answer of our own */
    req->out_len = req->out_pos = 0;

    for (i = 0; i < req->nheaders; i++) {
        free(req->headers[i].name);
        free(req->headers[i].value);
    }

    h = &req->headers[0];
    kubenova__v1__header__init(h);
    h->name = strdup("content-type");
    h->value = strdup("application/json");
    req->nheaders = 1;

    if (h->name == NULL || h->value == NULL
        || kn_tun_append(req, &req->out, &req->out_len, &req->out_cap, body,
                         len) != KN_OK)
    {
        return KN_ERROR;
    }

    return KN_OK;
}


/* a cluster-scoped collection: an empty list of its kind */

static void
kn_tun_answer_empty(kn_tun_req_t *req)
{
    int   n;
    char  body[256];

    n = snprintf(body, sizeof(body), "{\"kind\":\"%s\",\"apiVersion\":"
                 "\"%.*s\",\"metadata\":{\"resourceVersion\":\"0\"},"
                 "\"items\":[]}", req->route.list_kind,
                 (int) req->route.api_version_len, req->route.api_version);

    /* a watch of nothing ends at once: nothing will come */
    if (kn_tun_answer_json(req, 200, body, req->route.watch ? 0 : (size_t) n)
        != KN_OK)
    {
        snprintf(req->curl_error, sizeof(req->curl_error), "the Operator "
                 "is out of memory");
        req->failed = 1;
    }
}


/* -- the transfer's callbacks (inside libcurl: no libcurl calls) -------- */


static size_t
kn_tun_header_cb(char *buf, size_t size, size_t nitems, void *userp)
{
    size_t         len, i, nlen;
    char          *colon, *v, *e;
    kn_tun_req_t  *req = userp;
    Kubenova__V1__Header  *h;

    len = size * nitems;

    if (len >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
        /* a status line: an interim response's headers are forgotten */
        for (i = 0; i < req->nheaders; i++) {
            free(req->headers[i].name);
            free(req->headers[i].value);
        }
        req->nheaders = 0;
        return len;
    }

    if (len <= 2 && (buf[0] == '\r' || buf[0] == '\n')) {
        /* the end of the headers: a watch's may come long before a body */
        kn_tun_headers_end(req);
        return len;
    }

    colon = memchr(buf, ':', len);
    if (colon == NULL || req->nheaders == KN_TUN_MAX_HEADERS
        || len > KN_TUN_MAX_HEADER)
    {
        return len;                     /* the blank line, or past bounds */
    }

    nlen = (size_t) (colon - buf);
    v = colon + 1;
    e = buf + len;
    while (v < e && (*v == ' ' || *v == '\t')) {
        v++;
    }
    while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ')) {
        e--;
    }

    h = &req->headers[req->nheaders];
    kubenova__v1__header__init(h);
    h->name = kn_memdup_str(buf, nlen);
    h->value = kn_memdup_str(v, (size_t) (e - v));

    if (h->name == NULL || h->value == NULL) {
        free(h->name);
        free(h->value);
        return 0;                       /* out of memory: fails it */
    }

    for (i = 0; i < nlen; i++) {
        h->name[i] = (char) tolower((unsigned char) h->name[i]);
    }

    /*
     * Known when the headers come: filtered is set for the Operator's
     * reads only, and their bodies are rewritten.
     */
    if (kn_tun_header_dropped(h->name, req->filtered ? 1 : -1)) {
        free(h->name);
        free(h->value);
        return len;
    }

    req->nheaders++;

    return len;
}


/* the status is known: the head can go (an interim 1xx is not it) */

static void
kn_tun_headers_end(kn_tun_req_t *req)
{
    long  status;

    status = 0;
    curl_easy_getinfo(req->xfer.easy, CURLINFO_RESPONSE_CODE, &status);

    if (status < 200) {
        return;
    }

    req->status = status;

    if (status > 299) {
        req->filtered = 0;              /* the API server's error as is */
    }

    if (kn_tun_flush(req) != KN_OK) {
        kn_tun_dirty(req);
    }
}


static size_t
kn_tun_write_cb(char *ptr, size_t size, size_t nmemb, void *userp)
{
    size_t         len;
    kn_rc          rc;
    kn_tun_req_t  *req = userp;

    len = size * nmemb;

    if (req->cancelled || req->failed) {
        return 0;                       /* aborts the transfer */
    }

    if (req->status == 0) {
        kn_tun_headers_end(req);        /* (no header callback came) */
    }

    if (req->out_len - req->out_pos >= KN_TUN_OUT_HIGH) {
        req->write_paused = 1;
        return CURL_WRITEFUNC_PAUSE;
    }

    /* what was sent makes room: out holds the pending bytes only */
    if (req->out_pos > 0) {
        memmove(req->out, req->out + req->out_pos,
                req->out_len - req->out_pos);
        req->out_len -= req->out_pos;
        req->out_pos = 0;
    }

    if (!req->filtered) {
        rc = kn_tun_append(req, &req->out, &req->out_len, &req->out_cap, ptr,
                           len);
    } else {
        rc = kn_tun_append(req, &req->acc, &req->acc_len, &req->acc_cap, ptr,
                           len);
        if (rc == KN_OK && req->route.watch) {
            rc = kn_tun_filter_lines(req);
        }
    }

    if (rc != KN_OK) {
        if (req->filtered && !req->route.watch) {
            req->too_big = 1;           /* answered when the transfer ends */
            return 0;
        }

        snprintf(req->curl_error, sizeof(req->curl_error), "the watch "
                 "sent an event larger than the Operator may hold to "
                 "filter it (--tunnel-max-buffer)");
        req->failed = 1;
        kn_tun_dirty(req);
        return 0;
    }

    rc = kn_tun_flush(req);
    if (rc != KN_OK || req->out_len > req->out_pos) {
        kn_tun_dirty(req);              /* a window, or the queue, later */
    }

    return len;
}


static size_t
kn_tun_read_cb(char *buf, size_t size, size_t nitems, void *userp)
{
    size_t         n;
    kn_tun_req_t  *req = userp;

    if (req->in_len == 0) {
        if (req->in_end) {
            return 0;
        }
        req->read_paused = 1;
        return CURL_READFUNC_PAUSE;
    }

    n = size * nitems;
    if (n > req->in_len) {
        n = req->in_len;
    }

    memcpy(buf, req->in, n);
    memmove(req->in, req->in + n, req->in_len - n);
    req->in_len -= n;
    req->in_granted += n;

    kn_tun_dirty(req);                  /* the window goes back */

    return n;
}


/* the transfer ended, from the loop */

static void
kn_tun_done(kn_transfer_t *xfer, CURLcode result)
{
    kn_tun_req_t  *req = xfer->data;

    req->state = KN_TUN_FINISHING;

    if (req->cancelled || req->failed) {
        kn_tun_dirty(req);
        return;
    }

    if (req->too_big) {
        kn_tun_answer(req, 503, "ServiceUnavailable", "the list is larger "
                      "than the Operator may hold to filter it now "
                      "(--tunnel-max-buffer %zu bytes, for all such lists "
                      "at once): ask for fewer at a time (limit)",
                      req->tun->conf.max_buffer);
        kn_tun_dirty(req);
        return;
    }

    if (result != CURLE_OK) {
        if (!req->head_sent && req->out_len == req->out_pos) {
            kn_tun_answer(req, 502, "InternalError", "the Operator could "
                          "not reach the API server: %s", req->curl_error[0]
                          ? req->curl_error : curl_easy_strerror(result));
        } else {
            if (req->curl_error[0] == '\0') {
                snprintf(req->curl_error, sizeof(req->curl_error), "%s",
                         curl_easy_strerror(result));
            }
            req->failed = 1;
        }

        kn_tun_dirty(req);
        return;
    }

    if (req->status == 0) {
        kn_tun_headers_end(req);
    }

    if (req->filtered && !req->route.watch
        && kn_tun_filter_whole(req) != KN_OK)
    {
        kn_tun_answer(req, 502, "InternalError", "the API server's answer "
                      "cannot be filtered for the tenant (not a List or a "
                      "Table, or too large)");
    }

    kn_tun_dirty(req);
}


/* -- filters ------------------------------------------------------------ */


/* each whole line of a watch is an event: passed on or dropped */

static kn_rc
kn_tun_filter_lines(kn_tun_req_t *req)
{
    char        *nl, *s;
    size_t       n, used;
    json_t      *ev;
    kn_rc        rc;

    used = 0;
    rc = KN_OK;

    while (rc == KN_OK
           && (nl = memchr(req->acc + used, '\n', req->acc_len - used)))
    {
        ev = json_loadb(req->acc + used, (size_t) (nl - req->acc - used), 0,
                        NULL);
        used = (size_t) (nl - req->acc) + 1;

        if (ev == NULL || !kn_tunnel_filter_event(ev, req->namespaces)) {
            json_decref(ev);
            continue;
        }

        s = json_dumps(ev, JSON_COMPACT);
        json_decref(ev);
        if (s == NULL) {
            return KN_ERROR;
        }

        n = strlen(s);
        s[n] = '\n';                /* in place of the NUL, not counted */
        rc = kn_tun_append(req, &req->out, &req->out_len, &req->out_cap, s,
                           n + 1);
        free(s);
    }

    memmove(req->acc, req->acc + used, req->acc_len - used);
    req->acc_len -= used;

    return rc;
}


static kn_rc
kn_tun_filter_whole(kn_tun_req_t *req)
{
    char    *s;
    kn_rc    rc;
    json_t  *body;

    body = json_loadb(req->acc ? req->acc : "", req->acc_len, 0, NULL);

    /* parsed: its room goes back to the budget before the result takes */
    free(req->acc);
    req->tun->held -= req->acc_cap;
    req->held -= req->acc_cap;
    req->acc = NULL;
    req->acc_len = req->acc_cap = 0;

    if (body == NULL) {
        return KN_ERROR;
    }

    if (kn_tunnel_filter_list(body, req->namespaces) != KN_OK) {
        json_decref(body);
        return KN_ERROR;
    }

    s = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (s == NULL) {
        return KN_ERROR;
    }

    rc = kn_tun_append(req, &req->out, &req->out_len, &req->out_cap, s,
                       strlen(s));
    free(s);

    return rc;
}


/*
 * A growing buffer.  What the filtered responses hold, held whole or a
 * line at a time, counts against one budget for all of them
 * (--tunnel-max-buffer); any other holds only what is pending, less than
 * KN_TUN_OUT_HIGH plus one write of libcurl (CURL_MAX_WRITE_SIZE): its
 * transfer pauses past it.
 */

static kn_rc
kn_tun_append(kn_tun_req_t *req, char **buf, size_t *len, size_t *cap,
    const char *p, size_t n)
{
    char         *nb;
    size_t        want;
    kn_tunnel_t  *tun = req->tun;

    if (*len + n > *cap) {
        for (want = *cap ? *cap : 4096; want < *len + n; want *= 2) {
            /* void */
        }

        if (req->filtered && want - *cap > tun->conf.max_buffer - tun->held)
        {
            return KN_ERROR;
        }

        nb = realloc(*buf, want);
        if (nb == NULL) {
            return KN_ERROR;
        }

        if (req->filtered) {
            tun->held += want - *cap;
            req->held += want - *cap;
        }

        *buf = nb;
        *cap = want;
    }

    if (n > 0) {
        memcpy(*buf + *len, p, n);
        *len += n;
    }

    return KN_OK;
}


/* -- to the Manager ------------------------------------------------------ */


/*
 * Sends what the window and the queue allow: the head first, then the
 * body in chunks, then (once nothing more will come) the end.  KN_AGAIN:
 * the queue is full; KN_DECLINED: the stream is gone; KN_ERROR: the head
 * is larger than a message may be.  Called from the loop and from the
 * write callback.
 */

static kn_rc
kn_tun_flush(kn_tun_req_t *req)
{
    size_t        n;
    kn_rc         rc;
    kn_tunnel_t  *tun = req->tun;

    if (!req->head_sent) {
        /* a list to be filtered is answered once it is whole */
        if (req->state == KN_TUN_IDLE || req->state == KN_TUN_NAMESPACES
            || (req->state == KN_TUN_RUNNING
                && (req->status == 0
                    || (req->filtered && !req->route.watch))))
        {
            return KN_OK;               /* nothing is known yet */
        }

        rc = kn_tun_send_head(req);
        if (rc != KN_OK) {
            return rc;
        }

        req->head_sent = 1;
    }

    while (req->out_pos < req->out_len && req->window > 0) {
        n = req->out_len - req->out_pos;
        if (n > tun->chunk) {
            n = tun->chunk;
        }
        if (n > req->window) {
            n = (size_t) req->window;
        }

        rc = kn_tun_send_data(tun, req->id, req->out + req->out_pos, n, 0);
        if (rc != KN_OK) {
            return rc;
        }

        req->out_pos += n;
        req->window -= n;
    }

    if (req->out_pos == req->out_len) {
        req->out_pos = req->out_len = 0;
    }

    if (req->state == KN_TUN_FINISHING && req->out_len == 0
        && !req->end_sent && req->xfer.active == 0)
    {
        rc = kn_tun_send_data(tun, req->id, NULL, 0, 1);
        if (rc != KN_OK) {
            return rc;
        }

        req->end_sent = 1;
    }

    return KN_OK;
}


static kn_rc
kn_tun_send_head(kn_tun_req_t *req)
{
    size_t                          i;
    Kubenova__V1__Header           *hp[KN_TUN_MAX_HEADERS];
    Kubenova__V1__TunnelResponse    r = KUBENOVA__V1__TUNNEL_RESPONSE__INIT;
    Kubenova__V1__OperatorMessage   m = KUBENOVA__V1__OPERATOR_MESSAGE__INIT;

    for (i = 0; i < req->nheaders; i++) {
        hp[i] = &req->headers[i];
    }

    r.id = req->id;
    r.status = (int32_t) req->status;
    r.n_headers = req->nheaders;
    r.headers = hp;

    m.body_case = KUBENOVA__V1__OPERATOR_MESSAGE__BODY_TUNNEL_RESPONSE;
    m.tunnel_response = &r;

    return kn_grpc_send_tunnel(req->tun->grpc, &m);
}


static kn_rc
kn_tun_send_data(kn_tunnel_t *tun, uint64_t id, const char *p, size_t len,
    int end)
{
    Kubenova__V1__TunnelData       d = KUBENOVA__V1__TUNNEL_DATA__INIT;
    Kubenova__V1__OperatorMessage  m = KUBENOVA__V1__OPERATOR_MESSAGE__INIT;

    d.id = id;
    d.data.data = (uint8_t *) p;
    d.data.len = len;
    d.end = end ? 1 : 0;

    m.body_case = KUBENOVA__V1__OPERATOR_MESSAGE__BODY_TUNNEL_DATA;
    m.tunnel_data = &d;

    return kn_grpc_send_tunnel(tun->grpc, &m);
}


static kn_rc
kn_tun_send_window(kn_tunnel_t *tun, uint64_t id, uint32_t increment)
{
    Kubenova__V1__TunnelWindow     w = KUBENOVA__V1__TUNNEL_WINDOW__INIT;
    Kubenova__V1__OperatorMessage  m = KUBENOVA__V1__OPERATOR_MESSAGE__INIT;

    w.id = id;
    w.increment = increment;

    m.body_case = KUBENOVA__V1__OPERATOR_MESSAGE__BODY_TUNNEL_WINDOW;
    m.tunnel_window = &w;

    return kn_grpc_send_tunnel(tun->grpc, &m);
}


static kn_rc
kn_tun_send_cancel(kn_tunnel_t *tun, uint64_t id, const char *reason)
{
    Kubenova__V1__TunnelCancel     c = KUBENOVA__V1__TUNNEL_CANCEL__INIT;
    Kubenova__V1__OperatorMessage  m = KUBENOVA__V1__OPERATOR_MESSAGE__INIT;

    c.id = id;
    c.reason = (char *) reason;

    m.body_case = KUBENOVA__V1__OPERATOR_MESSAGE__BODY_TUNNEL_CANCEL;
    m.tunnel_cancel = &c;

    return kn_grpc_send_tunnel(tun->grpc, &m);
}
