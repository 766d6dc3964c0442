/*
 * The Kubernetes REST client.  A request goes through these states:
 *
 *   QUEUED   waiting for a rate-limit token (kube->queue, FIFO)
 *   RUNNING  its easy handle is in the loop's multi handle
 *   WAITING  Retry-After (or backoff) after a 429/503, on req->timer
 *
 * and ends in kn_kube_finish(), which calls done once and frees it.  The
 * pump (a timer at 0 ms or when the next token is due) moves QUEUED
 * requests to RUNNING, or finishes those that cannot start, so that no
 * callback ever runs inside the call that submitted the request.
 */

#define _DEFAULT_SOURCE                 /* explicit_bzero */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kn_kube.h"


#define KN_KUBE_BUF_START      (16 * 1024)
#define KN_KUBE_ERROR_MAX      512
#define KN_KUBE_PATH_MAX       8192
#define KN_KUBE_LIST_RESTARTS  3
#define KN_KUBE_LOOP_BUSY_MS   50       /* the loop's transfer bound was hit */


typedef enum {
    KN_KUBE_QUEUED = 0,
    KN_KUBE_RUNNING,
    KN_KUBE_WAITING,
    KN_KUBE_FINISHING
} kn_kube_state_e;

typedef enum {
    KN_KUBE_PLAIN = 0,
    KN_KUBE_LIST,
    KN_KUBE_STREAM
} kn_kube_kind_e;


struct kn_kube_s {
    kn_loop_t            *loop;
    const kn_log_t       *log;
    kn_kube_options_t     opt;

    char                 *server;
    char                 *namespace;
    char                 *ca_pem;
    size_t                ca_pem_len;
    char                 *cert_pem;
    size_t                cert_pem_len;
    char                 *key_pem;
    size_t                key_pem_len;
    int                   insecure;

    char                 *token;        /* fixed, or last read from file */
    char                 *token_file;
    uint64_t              token_read_at;
    int                   token_read;   /* token_read_at is meaningful */

    double                tokens;       /* rate-limit bucket */
    uint64_t              refilled_at;

    kn_timer_t            pump;
    kn_kube_req_t        *queue_head;   /* QUEUED, in order */
    kn_kube_req_t        *queue_tail;
    kn_kube_req_t        *live;         /* every request, for destroy */

    kn_kube_stats_t       stats;
};


struct kn_kube_req_s {
    kn_kube_t            *kube;
    kn_kube_req_t        *prev;         /* kube->live */
    kn_kube_req_t        *next;
    kn_kube_req_t        *qnext;        /* kube->queue */

    kn_kube_state_e       state;
    kn_kube_kind_e        kind;

    char                  method[8];
    char                 *path;         /* path and query */
    const char           *content_type;
    char                 *body;
    size_t                body_len;
    long                  timeout_ms;

    kn_transfer_t         xfer;
    struct curl_slist    *headers;
    char                  curl_error[CURL_ERROR_SIZE];

    char                 *buf;          /* the response, bounded */
    size_t                len;
    size_t                cap;
    unsigned              overflow:1;
    unsigned              aborted:1;    /* by the stream receiver */
    unsigned              in_stream:1;  /* inside the stream callback */
    unsigned              cancelled:1;  /* while in_stream */
    unsigned              paused:1;     /* by the stream receiver */
    unsigned              auth_retried:1;

    unsigned              attempts;
    kn_timer_t            timer;

    /* kn_kube_list */
    char                 *cont;         /* the next page's continue token */
    json_t               *list;         /* first page, items gathered */
    kn_kube_page_pt       page;         /* or the items go there */
    unsigned              pages;
    unsigned              restarts;

    kn_kube_stream_pt     stream;
    kn_kube_done_pt       done;
    void                 *data;

    char                  error[KN_KUBE_ERROR_MAX];
};


static kn_rc kn_kube_submit(kn_kube_t *kube, kn_kube_kind_e kind,
    const char *method, const char *path, const char *content_type,
    json_t *body, kn_kube_done_pt done, void *data, kn_kube_req_t **out);
static void kn_kube_enqueue(kn_kube_req_t *req);
static void kn_kube_pump_handler(kn_timer_t *timer);
static void kn_kube_arm_pump(kn_kube_t *kube, uint64_t after_ms);
static void kn_kube_refill(kn_kube_t *kube);
static kn_rc kn_kube_start(kn_kube_req_t *req);
static const char *kn_kube_bearer(kn_kube_t *kube, int force, char *err,
    size_t err_size);
static size_t kn_kube_write(char *p, size_t size, size_t n, void *data);
static void kn_kube_transfer_done(kn_transfer_t *xfer, CURLcode result);
static int kn_kube_retry(kn_kube_req_t *req, long status);
static void kn_kube_retry_handler(kn_timer_t *timer);
static int kn_kube_list_page(kn_kube_req_t *req, json_t *page);
static void kn_kube_finish(kn_kube_req_t *req, long status, json_t *body,
    const char *error);
static void kn_kube_release(kn_kube_req_t *req);
static void kn_kube_reset_response(kn_kube_req_t *req);
static size_t kn_kube_escape(char *dst, size_t size, const char *s);
static kn_rc kn_kube_segment(char *buf, size_t size, size_t *len,
    const char *seg);


static const kn_kube_options_t  kn_kube_defaults = {
    .qps = 20,
    .burst = 40,
    .max_requests = 10000,
    .connect_timeout_ms = 10000,
    .timeout_ms = 60000,
    .max_response = 32 * 1024 * 1024,
    .max_retries = 5,
    .max_retry_after_s = 60,
    .token_reread_ms = 60000,
    .list_page_size = 500,
    .max_list_items = 1000000,
    .user_agent = "kubenova-operator/" KN_VERSION,
};


/* -- the client ---------------------------------------------------------- */

static char *
kn_kube_dup(const char *s, size_t len, int *failed)
{
    char  *p;

    if (s == NULL) {
        return NULL;
    }

    p = kn_memdup_str(s, len);
    if (p == NULL) {
        *failed = 1;
    }

    return p;
}


kn_rc
kn_kube_create(kn_loop_t *loop, const kn_log_t *log,
    const kn_kubeconfig_t *cfg, const kn_kube_options_t *options,
    kn_kube_t **out)
{
    int                       failed;
    kn_kube_t                *kube;
    kn_kube_options_t        *o;
    const kn_kube_options_t  *d;

    *out = NULL;

    if (cfg->server == NULL || strncmp(cfg->server, "https://", 8) != 0) {
        kn_log(log, KN_LOG_ERROR, "kube: the API server must be an https:// "
               "URL");
        return KN_ERROR;
    }

    kube = calloc(1, sizeof(*kube));
    if (kube == NULL) {
        kn_log(log, KN_LOG_ERROR, "kube: out of memory");
        return KN_ERROR;
    }

    kube->loop = loop;
    kube->log = log;
    kn_timer_init(&kube->pump, kn_kube_pump_handler, kube);

    /* zero fields take the defaults */
    d = &kn_kube_defaults;
    o = &kube->opt;
    *o = options != NULL ? *options : *d;

    if (o->qps <= 0) {
        o->qps = d->qps;
    }
    if (o->burst == 0) {
        o->burst = d->burst;
    }
    if (o->max_requests == 0) {
        o->max_requests = d->max_requests;
    }
    if (o->connect_timeout_ms <= 0) {
        o->connect_timeout_ms = d->connect_timeout_ms;
    }
    if (o->timeout_ms <= 0) {
        o->timeout_ms = d->timeout_ms;
    }
    if (o->max_response == 0) {
        o->max_response = d->max_response;
    }
    if (o->max_retries == 0) {
        o->max_retries = d->max_retries;
    }
    if (o->max_retry_after_s == 0) {
        o->max_retry_after_s = d->max_retry_after_s;
    }
    if (o->token_reread_ms == 0) {
        o->token_reread_ms = d->token_reread_ms;
    }
    if (o->list_page_size == 0) {
        o->list_page_size = d->list_page_size;
    }
    if (o->max_list_items == 0) {
        o->max_list_items = d->max_list_items;
    }
    if (o->user_agent == NULL) {
        o->user_agent = d->user_agent;
    }

    failed = 0;
    kube->server = kn_kube_dup(cfg->server, strlen(cfg->server), &failed);
    kube->namespace = kn_kube_dup(cfg->namespace,
                                  cfg->namespace ? strlen(cfg->namespace) : 0,
                                  &failed);
    kube->ca_pem = kn_kube_dup(cfg->ca_pem, cfg->ca_pem_len, &failed);
    kube->ca_pem_len = cfg->ca_pem_len;
    kube->cert_pem = kn_kube_dup(cfg->cert_pem, cfg->cert_pem_len, &failed);
    kube->cert_pem_len = cfg->cert_pem_len;
    kube->key_pem = kn_kube_dup(cfg->key_pem, cfg->key_pem_len, &failed);
    kube->key_pem_len = cfg->key_pem_len;
    kube->token = kn_kube_dup(cfg->token, cfg->token ? strlen(cfg->token) : 0,
                              &failed);
    kube->token_file = kn_kube_dup(cfg->token_file,
                                   cfg->token_file ? strlen(cfg->token_file)
                                                   : 0, &failed);
    kube->insecure = cfg->insecure;

    if (failed) {
        kn_log(log, KN_LOG_ERROR, "kube: out of memory");
        kn_kube_destroy(kube);
        return KN_ERROR;
    }

    kube->tokens = o->burst;
    kube->refilled_at = kn_loop_now(loop);

    *out = kube;

    return KN_OK;
}


void
kn_kube_destroy(kn_kube_t *kube)
{
    if (kube == NULL) {
        return;
    }

    while (kube->live != NULL) {
        kn_kube_cancel(kube->live);
    }

    if (kn_timer_is_set(&kube->pump)) {
        kn_timer_cancel(kube->loop, &kube->pump);
    }

    free(kube->server);
    free(kube->namespace);
    free(kube->ca_pem);
    free(kube->cert_pem);
    free(kube->key_pem);
    free(kube->token);
    free(kube->token_file);
    free(kube);
}


kn_loop_t *
kn_kube_loop(kn_kube_t *kube)
{
    return kube->loop;
}


const kn_kube_options_t *
kn_kube_options(kn_kube_t *kube)
{
    return &kube->opt;
}


const char *
kn_kube_namespace(kn_kube_t *kube)
{
    return kube->namespace;
}


void
kn_kube_easy_tls(kn_kube_t *kube, CURL *easy, int client_cert)
{
    struct curl_blob  blob;

    if (kube->ca_pem != NULL) {
        blob.data = kube->ca_pem;
        blob.len = kube->ca_pem_len;
        blob.flags = CURL_BLOB_NOCOPY;
        curl_easy_setopt(easy, CURLOPT_CAINFO_BLOB, &blob);
    }

    if (kube->insecure) {
        curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 0L);
    }

    if (client_cert && kube->cert_pem != NULL) {
        blob.data = kube->cert_pem;
        blob.len = kube->cert_pem_len;
        blob.flags = CURL_BLOB_NOCOPY;
        curl_easy_setopt(easy, CURLOPT_SSLCERT_BLOB, &blob);
        curl_easy_setopt(easy, CURLOPT_SSLCERTTYPE, "PEM");
        blob.data = kube->key_pem;
        blob.len = kube->key_pem_len;
        curl_easy_setopt(easy, CURLOPT_SSLKEY_BLOB, &blob);
        curl_easy_setopt(easy, CURLOPT_SSLKEYTYPE, "PEM");
    }
}


kn_rc
kn_kube_bearer_header(struct curl_slist *headers, const char *token)
{
    char    *auth;
    size_t   n;
    kn_rc    rc;

    n = sizeof("Authorization: Bearer ") + strlen(token);
    auth = malloc(n);
    if (auth == NULL) {
        return KN_ERROR;
    }

    snprintf(auth, n, "Authorization: Bearer %s", token);
    rc = curl_slist_append(headers, auth) != NULL ? KN_OK : KN_ERROR;

    /* libcurl copied it; this copy of the secret goes */
    explicit_bzero(auth, n);
    free(auth);

    return rc;
}


const char *
kn_kube_server(kn_kube_t *kube)
{
    return kube->server;
}


const char *
kn_kube_operator_token(kn_kube_t *kube, char *err, size_t err_size)
{
    err[0] = '\0';

    return kn_kube_bearer(kube, 0, err, err_size);
}


void
kn_kube_get_stats(kn_kube_t *kube, kn_kube_stats_t *stats)
{
    *stats = kube->stats;
}


/* -- paths ----------------------------------------------------------------- */

/* percent-encodes everything but RFC 3986 unreserved characters */
static size_t
kn_kube_escape(char *dst, size_t size, const char *s)
{
    size_t                n;
    unsigned char         c;
    static const char     hex[] = "0123456789ABCDEF";

    n = 0;

    for (; *s != '\0'; s++) {
        c = (unsigned char) *s;

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
            || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_'
            || c == '~')
        {
            if (n + 1 < size) {
                dst[n] = (char) c;
            }
            n++;
            continue;
        }

        if (n + 3 < size) {
            dst[n] = '%';
            dst[n + 1] = hex[c >> 4];
            dst[n + 2] = hex[c & 0x0f];
        }
        n += 3;
    }

    if (size > 0) {
        dst[n < size ? n : size - 1] = '\0';
    }

    return n;
}


static kn_rc
kn_kube_segment(char *buf, size_t size, size_t *len, const char *seg)
{
    size_t       n;
    const char  *c;

    if (seg[0] == '\0' || strcmp(seg, ".") == 0 || strcmp(seg, "..") == 0
        || strlen(seg) > 253)
    {
        return KN_ERROR;
    }

    for (c = seg; *c != '\0'; c++) {
        if (*c == '/' || *c == '%' || (unsigned char) *c < 0x20
            || *c == 0x7f)
        {
            return KN_ERROR;
        }
    }

    if (*len + 1 >= size) {
        return KN_ERROR;
    }

    buf[(*len)++] = '/';
    n = kn_kube_escape(buf + *len, size - *len, seg);
    if (*len + n >= size) {
        return KN_ERROR;
    }
    *len += n;

    return KN_OK;
}


int
kn_kube_condition_true(json_t *obj, const char *type)
{
    json_t      *c;
    size_t       i;
    const char  *t, *status;

    json_array_foreach(json_object_get(json_object_get(obj, "status"),
                                       "conditions"), i, c)
    {
        t = json_string_value(json_object_get(c, "type"));
        status = json_string_value(json_object_get(c, "status"));

        if (t != NULL && status != NULL && strcmp(t, type) == 0
            && strcmp(status, "True") == 0)
        {
            return 1;
        }
    }

    return 0;
}


kn_rc
kn_kube_path(const kn_kube_ref_t *ref, char *buf, size_t size)
{
    int          n;
    size_t       len;
    const char  *slash;

    if (ref->api_version == NULL || ref->resource == NULL || size == 0) {
        return KN_ERROR;
    }

    slash = strchr(ref->api_version, '/');
    if (slash == NULL) {
        n = snprintf(buf, size, "/api");
    } else {
        n = snprintf(buf, size, "/apis");
    }
    if (n < 0 || (size_t) n >= size) {
        return KN_ERROR;
    }
    len = (size_t) n;

    if (slash != NULL) {
        char   group[254];
        size_t glen = (size_t) (slash - ref->api_version);

        if (glen == 0 || glen >= sizeof(group) || strchr(slash + 1, '/')) {
            return KN_ERROR;
        }
        memcpy(group, ref->api_version, glen);
        group[glen] = '\0';

        if (kn_kube_segment(buf, size, &len, group) != KN_OK
            || kn_kube_segment(buf, size, &len, slash + 1) != KN_OK)
        {
            return KN_ERROR;
        }

    } else if (kn_kube_segment(buf, size, &len, ref->api_version) != KN_OK) {
        return KN_ERROR;
    }

    if (ref->namespace != NULL
        && (kn_kube_segment(buf, size, &len, "namespaces") != KN_OK
            || kn_kube_segment(buf, size, &len, ref->namespace) != KN_OK))
    {
        return KN_ERROR;
    }

    if (kn_kube_segment(buf, size, &len, ref->resource) != KN_OK) {
        return KN_ERROR;
    }

    if (ref->name != NULL
        && kn_kube_segment(buf, size, &len, ref->name) != KN_OK)
    {
        return KN_ERROR;
    }

    if (ref->subresource != NULL
        && (ref->name == NULL
            || kn_kube_segment(buf, size, &len, ref->subresource) != KN_OK))
    {
        return KN_ERROR;
    }

    return KN_OK;
}


/* appends "&key=escaped(value)" (or "?…" first) to a path of size bytes */
static kn_rc
kn_kube_query(char *buf, size_t size, const char *key, const char *value)
{
    size_t  len, n;

    len = strlen(buf);
    n = (size_t) snprintf(buf + len, size - len, "%c%s=",
                          strchr(buf, '?') ? '&' : '?', key);
    if (len + n >= size) {
        return KN_ERROR;
    }
    len += n;

    n = kn_kube_escape(buf + len, size - len, value);

    return len + n < size ? KN_OK : KN_ERROR;
}


static kn_rc
kn_kube_ref_path(kn_kube_t *kube, const kn_kube_ref_t *ref, char *buf,
    size_t size, const char *what)
{
    if (kn_kube_path(ref, buf, size) != KN_OK) {
        kn_log(kube->log, KN_LOG_ERROR, "kube: %s: invalid reference "
               "(api_version \"%s\", resource \"%s\", namespace \"%s\", "
               "name \"%s\")", what,
               ref->api_version ? ref->api_version : "",
               ref->resource ? ref->resource : "",
               ref->namespace ? ref->namespace : "",
               ref->name ? ref->name : "");
        return KN_ERROR;
    }

    return KN_OK;
}


/* -- the public requests -------------------------------------------------- */

kn_rc
kn_kube_get(kn_kube_t *kube, const kn_kube_ref_t *ref, kn_kube_done_pt done,
    void *data, kn_kube_req_t **req)
{
    char  path[KN_KUBE_PATH_MAX];

    if (kn_kube_ref_path(kube, ref, path, sizeof(path), "get") != KN_OK) {
        return KN_ERROR;
    }

    return kn_kube_submit(kube, KN_KUBE_PLAIN, "GET", path, NULL, NULL,
                          done, data, req);
}


kn_rc
kn_kube_apply(kn_kube_t *kube, const kn_kube_ref_t *ref, json_t *obj,
    kn_kube_done_pt done, void *data, kn_kube_req_t **req)
{
    char           path[KN_KUBE_PATH_MAX];
    json_t        *meta;
    kn_kube_ref_t  r;

    if (!json_is_object(obj)) {
        kn_log(kube->log, KN_LOG_ERROR, "kube: apply: not a JSON object");
        return KN_ERROR;
    }

    r = *ref;
    meta = json_object_get(obj, "metadata");

    if (r.api_version == NULL) {
        r.api_version = json_string_value(json_object_get(obj, "apiVersion"));
    }
    if (r.namespace == NULL) {
        r.namespace = json_string_value(json_object_get(meta, "namespace"));
    }
    if (r.name == NULL) {
        r.name = json_string_value(json_object_get(meta, "name"));
    }

    if (r.name == NULL) {
        kn_log(kube->log, KN_LOG_ERROR, "kube: apply: no metadata.name");
        return KN_ERROR;
    }

    if (kn_kube_ref_path(kube, &r, path, sizeof(path), "apply") != KN_OK
        || kn_kube_query(path, sizeof(path), "fieldManager",
                         KN_KUBE_FIELD_MANAGER) != KN_OK
        || kn_kube_query(path, sizeof(path), "force", "true") != KN_OK)
    {
        return KN_ERROR;
    }

    /* JSON is YAML: the apply patch is sent as JSON */
    return kn_kube_submit(kube, KN_KUBE_PLAIN, "PATCH", path,
                          "application/apply-patch+yaml", obj, done, data,
                          req);
}


kn_rc
kn_kube_post(kn_kube_t *kube, const kn_kube_ref_t *ref, json_t *obj,
    kn_kube_done_pt done, void *data, kn_kube_req_t **req)
{
    char  path[KN_KUBE_PATH_MAX];

    if (kn_kube_ref_path(kube, ref, path, sizeof(path), "post") != KN_OK) {
        return KN_ERROR;
    }

    return kn_kube_submit(kube, KN_KUBE_PLAIN, "POST", path, NULL, obj,
                          done, data, req);
}


kn_rc
kn_kube_delete(kn_kube_t *kube, const kn_kube_ref_t *ref,
    const char *propagation, kn_kube_done_pt done, void *data,
    kn_kube_req_t **req)
{
    char  path[KN_KUBE_PATH_MAX];

    if (kn_kube_ref_path(kube, ref, path, sizeof(path), "delete") != KN_OK) {
        return KN_ERROR;
    }

    if (propagation != NULL
        && kn_kube_query(path, sizeof(path), "propagationPolicy",
                         propagation) != KN_OK)
    {
        return KN_ERROR;
    }

    return kn_kube_submit(kube, KN_KUBE_PLAIN, "DELETE", path, NULL, NULL,
                          done, data, req);
}


kn_rc
kn_kube_list(kn_kube_t *kube, const kn_kube_ref_t *ref,
    const kn_kube_list_opts_t *opts, kn_kube_done_pt done, void *data,
    kn_kube_req_t **req)
{
    char            path[KN_KUBE_PATH_MAX], limit[32];
    kn_rc           rc;
    unsigned        n;
    kn_kube_req_t  *r;

    if (kn_kube_ref_path(kube, ref, path, sizeof(path), "list") != KN_OK) {
        return KN_ERROR;
    }

    n = (opts != NULL && opts->limit > 0) ? opts->limit
                                          : kube->opt.list_page_size;
    snprintf(limit, sizeof(limit), "%u", n);

    if (kn_kube_query(path, sizeof(path), "limit", limit) != KN_OK
        || (opts != NULL && opts->label_selector != NULL
            && kn_kube_query(path, sizeof(path), "labelSelector",
                             opts->label_selector) != KN_OK)
        || (opts != NULL && opts->field_selector != NULL
            && kn_kube_query(path, sizeof(path), "fieldSelector",
                             opts->field_selector) != KN_OK))
    {
        kn_log(kube->log, KN_LOG_ERROR, "kube: list: query too long");
        return KN_ERROR;
    }

    rc = kn_kube_submit(kube, KN_KUBE_LIST, "GET", path, NULL, NULL,
                        done, data, &r);
    if (rc != KN_OK) {
        return rc;
    }

    /* set before the loop runs it: requests finish only from the loop */
    r->page = (opts != NULL) ? opts->page : NULL;

    if (req != NULL) {
        *req = r;
    }

    return KN_OK;
}


kn_rc
kn_kube_request(kn_kube_t *kube, const char *method, const char *path,
    const char *content_type, json_t *body, kn_kube_done_pt done, void *data,
    kn_kube_req_t **req)
{
    return kn_kube_submit(kube, KN_KUBE_PLAIN, method, path, content_type,
                          body, done, data, req);
}


kn_rc
kn_kube_stream(kn_kube_t *kube, const char *path, long timeout_ms,
    kn_kube_stream_pt stream, kn_kube_done_pt done, void *data,
    kn_kube_req_t **out)
{
    kn_rc           rc;
    kn_kube_req_t  *req;

    rc = kn_kube_submit(kube, KN_KUBE_STREAM, "GET", path, NULL, NULL,
                        done, data, &req);
    if (rc != KN_OK) {
        return rc;
    }

    req->stream = stream;
    req->timeout_ms = timeout_ms;

    if (out != NULL) {
        *out = req;
    }

    return KN_OK;
}


/* -- submission, rate limit, the pump ---------------------------------- */

static kn_rc
kn_kube_submit(kn_kube_t *kube, kn_kube_kind_e kind, const char *method,
    const char *path, const char *content_type, json_t *body,
    kn_kube_done_pt done, void *data, kn_kube_req_t **out)
{
    kn_kube_req_t  *req;

    if (out != NULL) {
        *out = NULL;
    }

    if (path[0] != '/' || strlen(method) >= sizeof(req->method)) {
        kn_log(kube->log, KN_LOG_ERROR, "kube: invalid request %s %s",
               method, path);
        return KN_ERROR;
    }

    if (kube->stats.live >= kube->opt.max_requests) {
        return KN_AGAIN;
    }

    req = calloc(1, sizeof(*req));
    if (req == NULL) {
        kn_log(kube->log, KN_LOG_ERROR, "kube: out of memory");
        return KN_ERROR;
    }

    req->kube = kube;
    req->kind = kind;
    snprintf(req->method, sizeof(req->method), "%s", method);
    req->content_type = content_type != NULL ? content_type
                                             : "application/json";
    req->timeout_ms = kube->opt.timeout_ms;
    req->done = done;
    req->data = data;
    kn_timer_init(&req->timer, kn_kube_retry_handler, req);

    req->path = strdup(path);
    if (req->path == NULL) {
        goto nomem;
    }

    if (body != NULL) {
        req->body = json_dumps(body, JSON_COMPACT);
        if (req->body == NULL) {
            goto nomem;
        }
        req->body_len = strlen(req->body);
    }

    /* link into the live list */
    req->next = kube->live;
    if (kube->live != NULL) {
        kube->live->prev = req;
    }
    kube->live = req;
    kube->stats.live++;

    kn_kube_enqueue(req);

    if (out != NULL) {
        *out = req;
    }

    return KN_OK;

nomem:

    kn_log(kube->log, KN_LOG_ERROR, "kube: out of memory");
    free(req->path);
    free(req->body);
    free(req);

    return KN_ERROR;
}


static void
kn_kube_enqueue(kn_kube_req_t *req)
{
    kn_kube_t  *kube = req->kube;

    req->state = KN_KUBE_QUEUED;

    req->qnext = NULL;
    if (kube->queue_tail != NULL) {
        kube->queue_tail->qnext = req;
    } else {
        kube->queue_head = req;
    }
    kube->queue_tail = req;

    kn_kube_arm_pump(kube, 0);
}


static void
kn_kube_unqueue(kn_kube_req_t *req)
{
    kn_kube_t      *kube = req->kube;
    kn_kube_req_t  *r, *prev;

    prev = NULL;
    for (r = kube->queue_head; r != NULL; prev = r, r = r->qnext) {
        if (r != req) {
            continue;
        }
        if (prev != NULL) {
            prev->qnext = r->qnext;
        } else {
            kube->queue_head = r->qnext;
        }
        if (kube->queue_tail == r) {
            kube->queue_tail = prev;
        }
        r->qnext = NULL;
        return;
    }
}


static void
kn_kube_arm_pump(kn_kube_t *kube, uint64_t after_ms)
{
    uint64_t  when;

    when = kn_loop_now(kube->loop) + after_ms;

    /* an earlier pump stays */
    if (kn_timer_is_set(&kube->pump) && kube->pump.when <= when) {
        return;
    }

    if (kn_timer_add(kube->loop, &kube->pump, after_ms) != KN_OK) {
        kn_log(kube->log, KN_LOG_ERROR, "kube: no timer for the request "
               "queue (the loop's timer bound is reached)");
    }
}


static void
kn_kube_refill(kn_kube_t *kube)
{
    uint64_t  now;

    now = kn_loop_now(kube->loop);

    if (now > kube->refilled_at) {
        kube->tokens += (double) (now - kube->refilled_at) * kube->opt.qps
                        / 1000.0;
        if (kube->tokens > kube->opt.burst) {
            kube->tokens = kube->opt.burst;
        }
        kube->refilled_at = now;
    }
}


static void
kn_kube_pump_handler(kn_timer_t *timer)
{
    kn_rc           rc;
    uint64_t        wait;
    kn_kube_t      *kube = timer->data;
    kn_kube_req_t  *req;

    while (kube->queue_head != NULL) {
        req = kube->queue_head;

        kn_kube_refill(kube);

        if (kube->tokens < 1.0) {
            kube->stats.throttled++;
            wait = (uint64_t) ((1.0 - kube->tokens) * 1000.0 / kube->opt.qps)
                   + 1;
            kn_kube_arm_pump(kube, wait);
            return;
        }

        kn_kube_unqueue(req);

        rc = kn_kube_start(req);

        if (rc == KN_AGAIN) {
            /* the loop is full: this request goes first next time */
            req->qnext = kube->queue_head;
            kube->queue_head = req;
            if (kube->queue_tail == NULL) {
                kube->queue_tail = req;
            }
            kn_kube_arm_pump(kube, KN_KUBE_LOOP_BUSY_MS);
            return;
        }

        kube->tokens -= 1.0;

        if (rc != KN_OK) {
            kn_kube_finish(req, 0, NULL, req->error);
        }
    }
}


/* -- the transfer --------------------------------------------------------- */

/*
 * The bearer token: the fixed one, or the token file's, re-read when older
 * than token_reread_ms (or when force is set, after a 401).  A failed
 * re-read keeps the last good token.
 */
static const char *
kn_kube_bearer(kn_kube_t *kube, int force, char *err, size_t err_size)
{
    char      *token, e[256];
    uint64_t   now;

    if (kube->token_file == NULL) {
        return kube->token;
    }

    now = kn_loop_now(kube->loop);

    if (!force && kube->token_read
        && now - kube->token_read_at < kube->opt.token_reread_ms)
    {
        return kube->token;
    }

    kube->token_read = 1;
    kube->token_read_at = now;
    kube->stats.token_reads++;

    token = kn_kubeconfig_read_token(kube->token_file, e, sizeof(e));

    if (token == NULL) {
        if (kube->token != NULL) {
            kn_log(kube->log, KN_LOG_WARN, "kube: keeping the last token: %s",
                   e);
        } else {
            snprintf(err, err_size, "no bearer token: %s", e);
        }
        return kube->token;
    }

    free(kube->token);
    kube->token = token;

    return kube->token;
}


static kn_rc
kn_kube_start(kn_kube_req_t *req)
{
    kn_rc              rc;
    CURL              *easy;
    char              *url;
    size_t             n;
    kn_kube_t         *kube = req->kube;
    const char        *token;
    char               header[256];

    curl_slist_free_all(req->headers);
    req->headers = NULL;

    req->error[0] = '\0';
    token = kn_kube_bearer(kube, 0, req->error, sizeof(req->error));
    if (token == NULL && req->error[0] != '\0') {
        return KN_ERROR;
    }

    kn_kube_reset_response(req);

    easy = curl_easy_init();
    if (easy == NULL) {
        snprintf(req->error, sizeof(req->error), "curl_easy_init() failed");
        return KN_ERROR;
    }

    n = strlen(kube->server) + strlen(req->path) + 1;
    if (req->cont != NULL) {
        n += sizeof("&continue=") + 3 * strlen(req->cont);
    }
    url = malloc(n);
    if (url == NULL) {
        curl_easy_cleanup(easy);
        snprintf(req->error, sizeof(req->error), "out of memory");
        return KN_ERROR;
    }
    snprintf(url, n, "%s%s", kube->server, req->path);
    if (req->cont != NULL) {
        (void) kn_kube_query(url, n, "continue", req->cont);
    }

    curl_easy_setopt(easy, CURLOPT_URL, url);
    free(url);                           /* libcurl keeps its own copy */

    curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(easy, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(easy, CURLOPT_USERAGENT, kube->opt.user_agent);
    curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                     kube->opt.connect_timeout_ms);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS,
                     req->timeout_ms > 0 ? req->timeout_ms : 0L);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, req->curl_error);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, kn_kube_write);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, req);
    req->curl_error[0] = '\0';

    kn_kube_easy_tls(kube, easy, 1);

    if (strcmp(req->method, "GET") != 0) {
        curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, req->method);
    }

    if (req->body != NULL) {
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, req->body);
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t) req->body_len);
    }

    req->headers = curl_slist_append(NULL, "Accept: application/json");
    if (req->headers != NULL && req->body != NULL) {
        snprintf(header, sizeof(header), "Content-Type: %s",
                 req->content_type);
        if (curl_slist_append(req->headers, header) == NULL) {
            goto nomem;
        }
    }
    if (req->headers != NULL && token != NULL
        && kn_kube_bearer_header(req->headers, token) != KN_OK)
    {
        goto nomem;
    }
    if (req->headers == NULL) {
        goto nomem;
    }
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, req->headers);

    req->xfer.easy = easy;
    req->xfer.done = kn_kube_transfer_done;
    req->xfer.data = req;

    rc = kn_loop_add_transfer(kube->loop, &req->xfer);
    if (rc != KN_OK) {
        curl_easy_cleanup(easy);
        req->xfer.easy = NULL;
        curl_slist_free_all(req->headers);
        req->headers = NULL;
        if (rc != KN_AGAIN) {
            snprintf(req->error, sizeof(req->error),
                     "the loop refused the transfer");
        }
        return rc;
    }

    req->state = KN_KUBE_RUNNING;
    req->attempts++;
    kube->stats.requests++;

    return KN_OK;

nomem:

    curl_easy_cleanup(easy);
    curl_slist_free_all(req->headers);
    req->headers = NULL;
    snprintf(req->error, sizeof(req->error), "out of memory");

    return KN_ERROR;
}


static size_t
kn_kube_write(char *p, size_t size, size_t n, void *data)
{
    long            code;
    kn_rc           rc;
    char           *buf;
    size_t          len, cap;
    kn_kube_req_t  *req = data;

    len = size * n;

    if (req->cancelled) {
        return 0;
    }

    if (req->stream != NULL) {
        code = 0;
        curl_easy_getinfo(req->xfer.easy, CURLINFO_RESPONSE_CODE, &code);

        if (code >= 200 && code < 300) {
            req->in_stream = 1;
            rc = req->stream(p, len, req->data);
            req->in_stream = 0;

            if (req->cancelled) {
                return 0;
            }
            if (rc == KN_AGAIN) {
                /* offered again after kn_kube_resume() */
                req->paused = 1;
                return CURL_WRITEFUNC_PAUSE;
            }
            if (rc != KN_OK) {
                req->aborted = 1;
                return 0;
            }
            return len;
        }
    }

    if (len > req->kube->opt.max_response - req->len) {
        req->overflow = 1;
        return 0;
    }

    if (req->len + len + 1 > req->cap) {
        cap = req->cap ? req->cap : KN_KUBE_BUF_START;
        while (cap < req->len + len + 1) {
            cap *= 2;
        }
        if (cap > req->kube->opt.max_response + 1) {
            cap = req->kube->opt.max_response + 1;
        }
        buf = realloc(req->buf, cap);
        if (buf == NULL) {
            return 0;
        }
        req->buf = buf;
        req->cap = cap;
    }

    memcpy(req->buf + req->len, p, len);
    req->len += len;
    req->buf[req->len] = '\0';

    return len;
}


static void
kn_kube_reset_response(kn_kube_req_t *req)
{
    free(req->buf);
    req->buf = NULL;
    req->len = 0;
    req->cap = 0;
    req->overflow = 0;
    req->aborted = 0;
}


static void
kn_kube_transfer_done(kn_transfer_t *xfer, CURLcode result)
{
    long            status;
    json_t         *body;
    kn_kube_req_t  *req = xfer->data;
    json_error_t    jerr;
    char            error[KN_KUBE_ERROR_MAX];

    status = 0;
    curl_easy_getinfo(xfer->easy, CURLINFO_RESPONSE_CODE, &status);

    if (req->cancelled) {
        /* cancelled from inside its own stream callback */
        kn_kube_release(req);
        return;
    }

    if (result != CURLE_OK) {
        if (req->overflow) {
            snprintf(error, sizeof(error), "the response is larger than "
                     "%zu bytes (max_response)", req->kube->opt.max_response);
        } else if (req->aborted) {
            snprintf(error, sizeof(error), "aborted by the receiver");
        } else {
            snprintf(error, sizeof(error), "%s %s: %s", req->method,
                     req->path, req->curl_error[0] != '\0'
                                ? req->curl_error
                                : curl_easy_strerror(result));
        }
        curl_easy_cleanup(xfer->easy);
        xfer->easy = NULL;
        kn_kube_finish(req, status, NULL, error);
        return;
    }

    if (status == 401 && req->kube->token_file != NULL && !req->auth_retried)
    {
        /* a rotated token: read it at once and try again, once */
        char  *old = req->kube->token ? strdup(req->kube->token) : NULL;

        req->auth_retried = 1;
        (void) kn_kube_bearer(req->kube, 1, error, sizeof(error));

        if (req->kube->token != NULL
            && (old == NULL || strcmp(old, req->kube->token) != 0))
        {
            free(old);
            curl_easy_cleanup(xfer->easy);
            xfer->easy = NULL;
            kn_kube_enqueue(req);
            return;
        }
        free(old);
    }

    if ((status == 429 || status == 503) && kn_kube_retry(req, status)) {
        return;
    }

    curl_easy_cleanup(xfer->easy);
    xfer->easy = NULL;

    body = NULL;
    if (req->len > 0) {
        body = json_loadb(req->buf, req->len, JSON_DECODE_ANY, &jerr);
    }

    if (status >= 200 && status < 300 && req->len > 0 && body == NULL) {
        snprintf(error, sizeof(error), "invalid JSON in the response: %s",
                 jerr.text);
        kn_kube_finish(req, status, NULL, error);
        return;
    }

    if (req->kind == KN_KUBE_LIST) {
        if (status >= 200 && status < 300) {
            if (kn_kube_list_page(req, body)) {
                json_decref(body);
                return;                 /* the next page is queued */
            }
            json_decref(body);
            if (req->error[0] != '\0') {
                kn_kube_finish(req, status, NULL, req->error);
                return;
            }
            kn_kube_finish(req, status, req->list, NULL);
            return;
        }

        if (status == 410 && req->cont != NULL && req->page == NULL
            && req->restarts < KN_KUBE_LIST_RESTARTS)
        {
            /* the continue token expired: start over for a consistent list */
            json_decref(body);
            req->restarts++;
            free(req->cont);
            req->cont = NULL;
            json_decref(req->list);
            req->list = NULL;
            req->pages = 0;
            req->attempts = 0;
            kn_kube_enqueue(req);
            return;
        }
    }

    kn_kube_finish(req, status, body, NULL);
    json_decref(body);
}


/* Returns 1 when the request will be retried. */
static int
kn_kube_retry(kn_kube_req_t *req, long status)
{
    kn_kube_t   *kube = req->kube;
    uint64_t     delay_ms;
    curl_off_t   after;

    if (req->attempts > kube->opt.max_retries) {
        return 0;
    }

    after = 0;
    if (curl_easy_getinfo(req->xfer.easy, CURLINFO_RETRY_AFTER, &after)
        != CURLE_OK || after < 0)
    {
        after = 0;
    }

    if (after > 0) {
        if ((uint64_t) after > kube->opt.max_retry_after_s) {
            after = kube->opt.max_retry_after_s;
        }
        delay_ms = (uint64_t) after * 1000;

    } else {
        /* no Retry-After: 0.5 s, 1 s, 2 s … */
        delay_ms = 500ULL << (req->attempts < 8 ? req->attempts - 1 : 7);
    }

    if (kn_timer_add(kube->loop, &req->timer, delay_ms) != KN_OK) {
        return 0;
    }

    kn_log(kube->log, KN_LOG_DEBUG, "kube: %s %s: HTTP %ld, retrying in "
           "%" PRIu64 " ms", req->method, req->path, status, delay_ms);

    curl_easy_cleanup(req->xfer.easy);
    req->xfer.easy = NULL;
    curl_slist_free_all(req->headers);
    req->headers = NULL;
    req->state = KN_KUBE_WAITING;
    kube->stats.retries++;

    return 1;
}


static void
kn_kube_retry_handler(kn_timer_t *timer)
{
    kn_kube_enqueue(timer->data);
}


/*
 * Gathers a page into req->list.  Returns 1 when another page is queued,
 * 0 when the list is complete (or failed: req->error is set).
 */
static int
kn_kube_list_page(kn_kube_req_t *req, json_t *page)
{
    json_t      *items, *meta, *all;
    const char  *cont;

    items = json_object_get(page, "items");
    meta = json_object_get(page, "metadata");

    if (!json_is_object(page) || !(json_is_array(items) || json_is_null(items)
                                   || items == NULL))
    {
        snprintf(req->error, sizeof(req->error), "a list page without items");
        return 0;
    }

    req->pages++;

    if (req->page != NULL) {
        /* handed over, not gathered: the List kept is the last page's */
        if (!json_is_array(items)) {
            json_object_set_new(page, "items", json_array());
            items = json_object_get(page, "items");
        }

        if (req->page(items, req->data) != KN_OK) {
            snprintf(req->error, sizeof(req->error), "stopped by the page "
                     "receiver");
            return 0;
        }

        json_decref(req->list);
        req->list = json_incref(page);
        json_object_set_new(page, "items", json_array());

    } else if (req->list == NULL) {
        req->list = json_incref(page);
        if (!json_is_array(items)) {
            json_object_set_new(page, "items", json_array());
        }

    } else {
        all = json_object_get(req->list, "items");
        if (json_is_array(items) && json_array_extend(all, items) != 0) {
            snprintf(req->error, sizeof(req->error), "out of memory");
            return 0;
        }
    }

    if (json_array_size(json_object_get(req->list, "items"))
        > req->kube->opt.max_list_items)
    {
        snprintf(req->error, sizeof(req->error), "the list has more than %zu "
                 "items (max_list_items)", req->kube->opt.max_list_items);
        return 0;
    }

    cont = json_string_value(json_object_get(meta, "continue"));

    free(req->cont);
    req->cont = NULL;

    if (cont == NULL || cont[0] == '\0') {
        /* the gathered list carries the snapshot's resourceVersion */
        json_object_del(json_object_get(req->list, "metadata"), "continue");
        json_object_del(json_object_get(req->list, "metadata"),
                        "remainingItemCount");
        return 0;
    }

    req->cont = strdup(cont);
    if (req->cont == NULL) {
        snprintf(req->error, sizeof(req->error), "out of memory");
        return 0;
    }

    req->attempts = 0;
    kn_kube_enqueue(req);

    return 1;
}


/* -- the end of a request ------------------------------------------------- */


static void
kn_kube_finish(kn_kube_req_t *req, long status, json_t *body,
    const char *error)
{
    char               msg[KN_KUBE_ERROR_MAX];
    const char        *reason, *message;
    kn_kube_result_t   res;

    memset(&res, 0, sizeof(res));
    res.status = status;
    res.body = body;
    res.attempts = req->attempts;
    res.pages = req->pages;

    reason = NULL;
    message = NULL;

    if (json_is_object(body)
        && json_is_string(json_object_get(body, "kind"))
        && strcmp(json_string_value(json_object_get(body, "kind")), "Status")
           == 0)
    {
        reason = json_string_value(json_object_get(body, "reason"));
        message = json_string_value(json_object_get(body, "message"));
    }

    res.reason = reason;

    if (error != NULL) {
        res.error = error;

    } else if (status < 200 || status >= 300) {
        if (message != NULL) {
            snprintf(msg, sizeof(msg), "HTTP %ld%s%s: %s", status,
                     reason ? " " : "", reason ? reason : "", message);
        } else {
            snprintf(msg, sizeof(msg), "HTTP %ld: %s %s", status,
                     req->method, req->path);
        }
        res.error = msg;
    }

    req->state = KN_KUBE_FINISHING;

    if (req->done != NULL) {
        req->done(&res, req->data);
    }

    kn_kube_release(req);
}


/* frees a request that is in no queue and has no transfer */
static void
kn_kube_release(kn_kube_req_t *req)
{
    kn_kube_t  *kube = req->kube;

    if (req->prev != NULL) {
        req->prev->next = req->next;
    } else {
        kube->live = req->next;
    }
    if (req->next != NULL) {
        req->next->prev = req->prev;
    }
    kube->stats.live--;

    if (req->xfer.easy != NULL) {
        curl_easy_cleanup(req->xfer.easy);
    }
    curl_slist_free_all(req->headers);
    free(req->path);
    free(req->body);
    free(req->buf);
    free(req->cont);
    json_decref(req->list);
    free(req);
}


kn_rc
kn_kube_resume(kn_kube_req_t *req)
{
    if (req == NULL || req->state != KN_KUBE_RUNNING || !req->paused) {
        return KN_DECLINED;
    }

    req->paused = 0;

    if (curl_easy_pause(req->xfer.easy, CURLPAUSE_CONT) != CURLE_OK) {
        return KN_ERROR;
    }

    return KN_OK;
}


void
kn_kube_cancel(kn_kube_req_t *req)
{
    kn_kube_t  *kube;

    if (req == NULL || req->state == KN_KUBE_FINISHING) {
        return;
    }

    kube = req->kube;

    if (req->in_stream) {
        /* inside libcurl: the transfer ends when the callback returns */
        req->cancelled = 1;
        return;
    }

    switch (req->state) {

    case KN_KUBE_QUEUED:
        kn_kube_unqueue(req);
        break;

    case KN_KUBE_RUNNING:
        kn_loop_remove_transfer(kube->loop, &req->xfer);
        break;

    case KN_KUBE_WAITING:
        kn_timer_cancel(kube->loop, &req->timer);
        break;

    default:
        break;
    }

    kn_kube_release(req);
}
