/*
 * The gRPC client (see kn_grpc.h).
 *
 * One stream is one libcurl easy handle on the loop's multi handle: a POST
 * over HTTP/2 whose request body is fed by the read callback from the send
 * queue and whose response body is cut into messages by the write callback.
 * When the queue is empty the read callback pauses the upload; queueing a
 * message resumes it, from a zero-delay timer rather than from inside a
 * libcurl callback.
 *
 * A stream ends in one place, kn_grpc_ended(), whichever way it ends:
 * libcurl finishing the transfer; grpc-status arriving in the trailers, or
 * libcurl no longer watching the socket (libcurl 7.88 does not finish a
 * transfer whose upload is paused, even once the response is over, so the
 * client removes it); or the client dropping it (dead peer, a message too
 * large, a protocol error, a full queue).  Dropping from inside a libcurl
 * callback makes the callback fail; from elsewhere the finish timer
 * removes the transfer.
 */

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "kn_grpc.h"


#define KN_GRPC_PATH            "/kubenova.v1.OperatorGateway/Connect"
#define KN_GRPC_FRAME           5             /* flag + 4-byte length */
#define KN_GRPC_TEXT_MAX        512           /* grpc-message, reasons */
#define KN_GRPC_VERSION_MAX     128
#define KN_GRPC_DEAD_AFTER      3             /* silent heartbeat intervals */
#define KN_GRPC_STABLE_MS       10000         /* a stream that stayed up */
#define KN_GRPC_CLOSE_WAIT_MS   3000          /* for the Manager's end */
#define KN_GRPC_CONNECT_MS      10000
#define KN_GRPC_MAX_PEER_HB_MS  (3600 * 1000)


typedef enum {
    KN_GRPC_IDLE = 0,
    KN_GRPC_CONNECTING,         /* hello sent, no Welcome yet */
    KN_GRPC_LIVE,
    KN_GRPC_BACKOFF,
    KN_GRPC_CLOSING,            /* stopping: half-closed */
    KN_GRPC_STOPPED
} kn_grpc_state_e;


typedef struct {
    size_t     len;
    uint8_t    data[];          /* the framed message */
} kn_grpc_out_t;


struct kn_grpc_hello_s {
    Kubenova__V1__ObjectRef   *refs;
    Kubenova__V1__ObjectRef  **ptrs;
    size_t                     n;
    size_t                     cap;
    size_t                     max;
    size_t                     bytes;
    size_t                     max_bytes;
};


struct kn_grpc_s {
    kn_loop_t                 *loop;
    const kn_log_t            *log;
    kn_grpc_conf_t             conf;
    const kn_grpc_handlers_t  *handlers;
    void                      *data;

    char                      *url;
    int                        tls;
    char                       kubernetes_version[KN_GRPC_VERSION_MAX];

    /* the client certificate (mTLS), or NULL */
    char                      *cert_pem;
    size_t                     cert_len;
    char                      *key_pem;
    size_t                     key_len;

    kn_grpc_state_e            state;
    unsigned                   attempt;
    uint64_t                   started_at;        /* this stream */
    uint64_t                   last_recv;
    uint64_t                   peer_heartbeat_ms;  /* from the Welcome */

    /* the stream's transfer */
    kn_transfer_t              xfer;
    struct curl_slist         *headers;
    char                       curl_error[CURL_ERROR_SIZE];

    /* the send queue: a ring of framed messages */
    kn_grpc_out_t            **queue;
    size_t                     q_head;
    size_t                     q_count;
    size_t                     q_bytes;
    size_t                     q_sent;            /* of the head message */

    /* the message being received */
    uint8_t                    frame[KN_GRPC_FRAME];
    size_t                     frame_len;
    uint8_t                   *in;
    size_t                     in_len;            /* expected */
    size_t                     in_got;
    size_t                     in_cap;

    /* the response */
    long                       http_status;
    int                        grpc_status;       /* -1: none yet */
    char                       grpc_message[KN_GRPC_TEXT_MAX];
    char                       failure[KN_GRPC_TEXT_MAX];  /* our reason */

    kn_timer_t                 reconnect;
    kn_timer_t                 heartbeat;
    kn_timer_t                 dead_peer;
    kn_timer_t                 resume;
    kn_timer_t                 finish;

    unsigned                   send_paused:1;
    unsigned                   closing:1;         /* upload ends when empty */
    unsigned                   dropping:1;
    unsigned                   got_headers:1;
    unsigned                   welcomed:1;
    unsigned                   requested:1;       /* the body has begun */
    unsigned                   full_warned:1;
};


static kn_rc kn_grpc_connect(kn_grpc_t *g);
static void kn_grpc_client_cert(kn_grpc_t *g, CURL *easy);
static void kn_grpc_forget_identity(kn_grpc_t *g);
static kn_rc kn_grpc_queue_hello(kn_grpc_t *g);
static kn_rc kn_grpc_enqueue(kn_grpc_t *g,
    const Kubenova__V1__OperatorMessage *m, const char *what);
static size_t kn_grpc_read_cb(char *buf, size_t size, size_t nitems,
    void *userp);
static size_t kn_grpc_write_cb(char *ptr, size_t size, size_t nmemb,
    void *userp);
static size_t kn_grpc_header_cb(char *buf, size_t size, size_t nitems,
    void *userp);
static int kn_grpc_debug_cb(CURL *easy, curl_infotype type, char *data,
    size_t size, void *userp);
static kn_rc kn_grpc_check_http2(kn_grpc_t *g, const char *line,
    size_t len);
static void kn_grpc_message(kn_grpc_t *g, const uint8_t *data, size_t len);
static void kn_grpc_drop(kn_grpc_t *g, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void kn_grpc_done(kn_transfer_t *xfer, CURLcode result);
static void kn_grpc_unwatched(kn_transfer_t *xfer);
static void kn_grpc_ended(kn_grpc_t *g, CURLcode result);
static void kn_grpc_reason(kn_grpc_t *g, CURLcode result, char *reason,
    size_t size);
static void kn_grpc_release(kn_grpc_t *g);
static void kn_grpc_reconnect_handler(kn_timer_t *t);
static void kn_grpc_heartbeat_handler(kn_timer_t *t);
static void kn_grpc_dead_peer_handler(kn_timer_t *t);
static void kn_grpc_resume_handler(kn_timer_t *t);
static void kn_grpc_finish_handler(kn_timer_t *t);
static void kn_grpc_wake_upload(kn_grpc_t *g);
static uint64_t kn_grpc_peer_interval(kn_grpc_t *g);
static uint64_t kn_grpc_random(uint64_t bound);
static int kn_grpc_hex(char c);
static void kn_grpc_percent_decode(const char *in, size_t len, char *out,
    size_t size);


/* the client */


kn_rc
kn_grpc_create(kn_loop_t *loop, const kn_log_t *log,
    const kn_grpc_conf_t *conf, const kn_grpc_handlers_t *handlers,
    void *data, kn_grpc_t **out)
{
    size_t      len;
    kn_grpc_t  *g;

    g = calloc(1, sizeof(kn_grpc_t));
    if (g == NULL) {
        goto nomem;
    }

    g->loop = loop;
    g->log = log;
    g->conf = *conf;
    g->handlers = handlers;
    g->data = data;
    g->grpc_status = -1;
    g->tls = (strncmp(conf->manager_url, "https://", 8) == 0);

    len = strlen(conf->manager_url) + sizeof(KN_GRPC_PATH);
    g->url = malloc(len);
    if (g->url == NULL) {
        goto nomem;
    }

    snprintf(g->url, len, "%s%s", conf->manager_url, KN_GRPC_PATH);

    g->queue = calloc(conf->queue_messages, sizeof(kn_grpc_out_t *));
    if (g->queue == NULL) {
        goto nomem;
    }

    kn_timer_init(&g->reconnect, kn_grpc_reconnect_handler, g);
    kn_timer_init(&g->heartbeat, kn_grpc_heartbeat_handler, g);
    kn_timer_init(&g->dead_peer, kn_grpc_dead_peer_handler, g);
    kn_timer_init(&g->resume, kn_grpc_resume_handler, g);
    kn_timer_init(&g->finish, kn_grpc_finish_handler, g);

    g->xfer.done = kn_grpc_done;
    g->xfer.unwatched = kn_grpc_unwatched;
    g->xfer.data = g;

    *out = g;
    return KN_OK;

nomem:

    kn_log(log, KN_LOG_ERROR, "grpc: out of memory");

    if (g) {
        free(g->url);
        free(g);
    }

    return KN_ERROR;
}


void
kn_grpc_destroy(kn_grpc_t *g)
{
    if (g == NULL) {
        return;
    }

    kn_grpc_release(g);
    kn_timer_cancel(g->loop, &g->reconnect);
    kn_grpc_forget_identity(g);

    free(g->queue);
    free(g->url);
    free(g);
}


kn_rc
kn_grpc_start(kn_grpc_t *g)
{
    if (g->state != KN_GRPC_IDLE) {
        return KN_DECLINED;
    }

    return kn_grpc_connect(g);
}


kn_rc
kn_grpc_stop(kn_grpc_t *g)
{
    switch (g->state) {

    case KN_GRPC_CONNECTING:
    case KN_GRPC_LIVE:
        kn_log(g->log, KN_LOG_INFO, "grpc: closing the stream to the "
               "Manager");

        g->state = KN_GRPC_CLOSING;
        g->closing = 1;
        kn_timer_cancel(g->loop, &g->heartbeat);
        kn_timer_cancel(g->loop, &g->dead_peer);
        kn_grpc_wake_upload(g);

        /* a Manager that does not end the stream soon is not waited for */
        if (kn_timer_add(g->loop, &g->finish, KN_GRPC_CLOSE_WAIT_MS)
            != KN_OK)
        {
            kn_loop_remove_transfer(g->loop, &g->xfer);
            kn_grpc_release(g);
            g->state = KN_GRPC_STOPPED;
            return KN_DONE;
        }

        return KN_AGAIN;

    case KN_GRPC_CLOSING:
        return KN_AGAIN;

    default:
        kn_timer_cancel(g->loop, &g->reconnect);
        g->state = KN_GRPC_STOPPED;
        return KN_DONE;
    }
}


kn_rc
kn_grpc_set_kubernetes_version(kn_grpc_t *g, const char *version)
{
    if (strlen(version) >= sizeof(g->kubernetes_version)) {
        return KN_ERROR;
    }

    strcpy(g->kubernetes_version, version);

    return KN_OK;
}


int
kn_grpc_live(kn_grpc_t *g)
{
    return g->state == KN_GRPC_LIVE && !g->dropping;
}


/* connecting */


static kn_rc
kn_grpc_connect(kn_grpc_t *g)
{
    CURL  *easy;

    g->state = KN_GRPC_CONNECTING;
    g->started_at = kn_loop_now(g->loop);
    g->last_recv = g->started_at;
    g->peer_heartbeat_ms = 0;
    g->http_status = 0;
    g->grpc_status = -1;
    g->grpc_message[0] = '\0';
    g->failure[0] = '\0';
    g->curl_error[0] = '\0';
    g->frame_len = 0;
    g->in_len = 0;
    g->in_got = 0;
    g->send_paused = 0;
    g->closing = 0;
    g->dropping = 0;
    g->got_headers = 0;
    g->welcomed = 0;
    g->requested = 0;
    g->full_warned = 0;

    kn_log(g->log, KN_LOG_INFO, "grpc: connecting to %s as cluster \"%s\" "
           "(attempt %u)", g->conf.manager_url, g->conf.cluster,
           g->attempt + 1);

    easy = curl_easy_init();
    if (easy == NULL) {
        snprintf(g->failure, sizeof(g->failure), "curl_easy_init() failed");
        goto failed;
    }

    g->xfer.easy = easy;

    g->headers = curl_slist_append(NULL, "content-type: application/grpc");
    if (g->headers == NULL
        || curl_slist_append(g->headers, "te: trailers") == NULL
        || curl_slist_append(g->headers, "grpc-accept-encoding: identity")
           == NULL
        || curl_slist_append(g->headers, "Expect:") == NULL)
    {
        snprintf(g->failure, sizeof(g->failure), "out of memory");
        goto failed;
    }

    curl_easy_setopt(easy, CURLOPT_URL, g->url);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_HTTP_VERSION,
                     g->tls ? CURL_HTTP_VERSION_2TLS
                            : CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
    curl_easy_setopt(easy, CURLOPT_POST, 1L);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, g->headers);
    curl_easy_setopt(easy, CURLOPT_USERAGENT,
                     "kubenova-operator/" KN_VERSION);
    curl_easy_setopt(easy, CURLOPT_READFUNCTION, kn_grpc_read_cb);
    curl_easy_setopt(easy, CURLOPT_READDATA, g);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, kn_grpc_write_cb);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, g);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, kn_grpc_header_cb);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, g);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, g->curl_error);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                     (long) KN_GRPC_CONNECT_MS);
    curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);

    /* one stream, one connection: a dead one is never reused */
    curl_easy_setopt(easy, CURLOPT_FRESH_CONNECT, 1L);
    curl_easy_setopt(easy, CURLOPT_FORBID_REUSE, 1L);

    if (g->tls && g->conf.ca_file) {
        curl_easy_setopt(easy, CURLOPT_CAINFO, g->conf.ca_file);
    }

    if (g->tls && g->cert_pem) {
        kn_grpc_client_cert(g, easy);
    }

    if (kn_log_enabled(g->log, KN_LOG_DEBUG)) {
        curl_easy_setopt(easy, CURLOPT_DEBUGFUNCTION, kn_grpc_debug_cb);
        curl_easy_setopt(easy, CURLOPT_DEBUGDATA, g);
        curl_easy_setopt(easy, CURLOPT_VERBOSE, 1L);
    }

    if (kn_grpc_queue_hello(g) != KN_OK) {
        goto failed;
    }

    if (kn_loop_add_transfer(g->loop, &g->xfer) != KN_OK) {
        snprintf(g->failure, sizeof(g->failure), "cannot start a transfer");
        goto failed;
    }

    /* the Welcome is due within as long as a dead peer is given */
    if (kn_timer_add(g->loop, &g->dead_peer,
                     KN_GRPC_DEAD_AFTER * g->conf.heartbeat_ms)
        != KN_OK)
    {
        kn_loop_remove_transfer(g->loop, &g->xfer);
        snprintf(g->failure, sizeof(g->failure), "no timer left");
        goto failed;
    }

    return KN_OK;

failed:

    kn_grpc_ended(g, CURLE_OK);
    return KN_ERROR;
}


/* libcurl copies the blobs: a renewal may replace ours at any time */

static void
kn_grpc_client_cert(kn_grpc_t *g, CURL *easy)
{
    struct curl_blob  blob;

    blob.data = g->cert_pem;
    blob.len = g->cert_len;
    blob.flags = CURL_BLOB_COPY;
    curl_easy_setopt(easy, CURLOPT_SSLCERT_BLOB, &blob);
    curl_easy_setopt(easy, CURLOPT_SSLCERTTYPE, "PEM");

    blob.data = g->key_pem;
    blob.len = g->key_len;
    blob.flags = CURL_BLOB_COPY;
    curl_easy_setopt(easy, CURLOPT_SSLKEY_BLOB, &blob);
    curl_easy_setopt(easy, CURLOPT_SSLKEYTYPE, "PEM");
}


kn_rc
kn_grpc_set_identity(kn_grpc_t *g, const char *cert_pem, size_t cert_len,
    const char *key_pem, size_t key_len)
{
    char  *cert, *key;

    cert = malloc(cert_len);
    key = malloc(key_len);

    if (cert == NULL || key == NULL) {
        free(cert);
        free(key);
        kn_log(g->log, KN_LOG_ERROR, "grpc: out of memory");
        return KN_ERROR;
    }

    memcpy(cert, cert_pem, cert_len);
    memcpy(key, key_pem, key_len);

    kn_grpc_forget_identity(g);

    g->cert_pem = cert;
    g->cert_len = cert_len;
    g->key_pem = key;
    g->key_len = key_len;

    return KN_OK;
}


static void
kn_grpc_forget_identity(kn_grpc_t *g)
{
    if (g->key_pem != NULL) {
        explicit_bzero(g->key_pem, g->key_len);
    }

    free(g->key_pem);
    free(g->cert_pem);
    g->key_pem = NULL;
    g->cert_pem = NULL;
}


static kn_rc
kn_grpc_queue_hello(kn_grpc_t *g)
{
    kn_rc                          rc;
    kn_grpc_hello_t                hello;
    Kubenova__V1__Hello            h = KUBENOVA__V1__HELLO__INIT;
    Kubenova__V1__OperatorMessage  m = KUBENOVA__V1__OPERATOR_MESSAGE__INIT;

    memset(&hello, 0, sizeof(hello));
    hello.max_bytes = g->conf.max_message;
    hello.max = g->conf.max_message / 8;

    rc = g->handlers->applied(g->data, &hello);

    if (rc == KN_AGAIN) {
        snprintf(g->failure, sizeof(g->failure), "the applied list does not "
                 "fit in a hello of at most %zu bytes (--max-message): %zu "
                 "objects so far", g->conf.max_message, hello.n);
        goto done;
    }

    if (rc != KN_OK) {
        snprintf(g->failure, sizeof(g->failure), "cannot list what is "
                 "applied for the hello (out of memory?)");
        goto done;
    }

    h.cluster = (char *) g->conf.cluster;
    h.operator_version = (char *) g->conf.operator_version;
    h.kubernetes_version = g->kubernetes_version;
    h.n_applied = hello.n;
    h.applied = hello.ptrs;

    m.body_case = KUBENOVA__V1__OPERATOR_MESSAGE__BODY_HELLO;
    m.hello = &h;

    kn_log(g->log, KN_LOG_DEBUG, "grpc: hello lists %zu applied object(s)",
           hello.n);

    rc = kn_grpc_enqueue(g, &m, "hello");

    if (rc != KN_OK) {
        snprintf(g->failure, sizeof(g->failure), "cannot send a hello that "
                 "lists %zu applied objects (see above)", hello.n);
    }

done:

    free(hello.refs);
    free(hello.ptrs);

    return rc == KN_OK ? KN_OK : KN_ERROR;
}


kn_rc
kn_grpc_hello_add(kn_grpc_hello_t *hello, const char *kind, const char *name,
    int64_t generation)
{
    size_t                     i, cap, bytes;
    Kubenova__V1__ObjectRef   *refs;
    Kubenova__V1__ObjectRef  **ptrs;

    /* an estimate that is never below the encoded size */
    bytes = strlen(kind) + strlen(name) + 32;

    if (hello->n == hello->max || hello->bytes + bytes > hello->max_bytes) {
        return KN_AGAIN;
    }

    if (hello->n == hello->cap) {
        cap = hello->cap ? hello->cap * 2 : 64;
        if (cap > hello->max) {
            cap = hello->max;
        }

        refs = realloc(hello->refs, cap * sizeof(Kubenova__V1__ObjectRef));
        if (refs == NULL) {
            return KN_ERROR;
        }

        hello->refs = refs;

        ptrs = realloc(hello->ptrs, cap * sizeof(Kubenova__V1__ObjectRef *));
        if (ptrs == NULL) {
            return KN_ERROR;
        }

        hello->ptrs = ptrs;
        hello->cap = cap;

        /* refs may have moved */
        for (i = 0; i < hello->n; i++) {
            hello->ptrs[i] = &hello->refs[i];
        }
    }

    kubenova__v1__object_ref__init(&hello->refs[hello->n]);
    hello->refs[hello->n].kind = (char *) kind;
    hello->refs[hello->n].name = (char *) name;
    hello->refs[hello->n].generation = generation;
    hello->ptrs[hello->n] = &hello->refs[hello->n];
    hello->n++;
    hello->bytes += bytes;

    return KN_OK;
}


/* the send queue */


static kn_rc
kn_grpc_enqueue(kn_grpc_t *g, const Kubenova__V1__OperatorMessage *m,
    const char *what)
{
    size_t          len, slot;
    kn_grpc_out_t  *out;

    len = kubenova__v1__operator_message__get_packed_size(m);

    if (len > g->conf.max_message) {
        kn_log(g->log, KN_LOG_ERROR, "grpc: not sending the %s: it is %zu "
               "bytes, more than the limit of %zu (--max-message)", what, len,
               g->conf.max_message);
        return KN_ERROR;
    }

    if (g->q_count == g->conf.queue_messages
        || g->q_bytes + KN_GRPC_FRAME + len > g->conf.queue_bytes)
    {
        if (!g->full_warned) {
            g->full_warned = 1;
            kn_log(g->log, KN_LOG_WARN, "grpc: the send queue is full "
                   "(%zu messages, %zu bytes; --send-queue-messages %zu, "
                   "--send-queue-bytes %zu): the Manager reads slower than "
                   "the Operator writes", g->q_count, g->q_bytes,
                   g->conf.queue_messages, g->conf.queue_bytes);
        }

        return KN_AGAIN;
    }

    out = malloc(sizeof(kn_grpc_out_t) + KN_GRPC_FRAME + len);
    if (out == NULL) {
        kn_log(g->log, KN_LOG_ERROR, "grpc: out of memory");
        return KN_ERROR;
    }

    out->len = KN_GRPC_FRAME + len;
    out->data[0] = 0;                           /* not compressed */
    out->data[1] = (uint8_t) (len >> 24);
    out->data[2] = (uint8_t) (len >> 16);
    out->data[3] = (uint8_t) (len >> 8);
    out->data[4] = (uint8_t) len;
    kubenova__v1__operator_message__pack(m, out->data + KN_GRPC_FRAME);

    slot = (g->q_head + g->q_count) % g->conf.queue_messages;
    g->queue[slot] = out;
    g->q_count++;
    g->q_bytes += out->len;

    kn_grpc_wake_upload(g);

    return KN_OK;
}


/* resumes a paused upload, from the loop rather than a libcurl callback */

static void
kn_grpc_wake_upload(kn_grpc_t *g)
{
    if (g->send_paused && g->xfer.active && !kn_timer_is_set(&g->resume)) {
        (void) kn_timer_add(g->loop, &g->resume, 0);
    }
}


static void
kn_grpc_resume_handler(kn_timer_t *t)
{
    kn_grpc_t  *g = t->data;

    if (!g->send_paused || !g->xfer.active || g->dropping) {
        return;
    }

    if (g->q_count == 0 && !g->closing) {
        return;
    }

    g->send_paused = 0;
    curl_easy_pause(g->xfer.easy, CURLPAUSE_CONT);
}


static size_t
kn_grpc_read_cb(char *buf, size_t size, size_t nitems, void *userp)
{
    kn_grpc_t  *g = userp;

    size_t          room, n, copied;
    kn_grpc_out_t  *out;

    if (g->dropping) {
        return CURL_READFUNC_ABORT;
    }

    room = size * nitems;
    copied = 0;
    g->requested = 1;

    while (g->q_count && copied < room) {
        out = g->queue[g->q_head];
        n = out->len - g->q_sent;

        if (n > room - copied) {
            n = room - copied;
        }

        memcpy(buf + copied, out->data + g->q_sent, n);
        copied += n;
        g->q_sent += n;

        if (g->q_sent == out->len) {
            g->queue[g->q_head] = NULL;
            g->q_head = (g->q_head + 1) % g->conf.queue_messages;
            g->q_count--;
            g->q_bytes -= out->len;
            g->q_sent = 0;
            free(out);
        }
    }

    if (copied) {
        return copied;
    }

    if (g->closing) {
        return 0;                               /* END_STREAM: half-close */
    }

    g->send_paused = 1;

    return CURL_READFUNC_PAUSE;
}


/* receiving */


static size_t
kn_grpc_header_cb(char *buf, size_t size, size_t nitems, void *userp)
{
    kn_grpc_t  *g = userp;

    int          status;
    size_t       len, vlen;
    const char  *value;

    len = size * nitems;

    if (g->dropping) {
        return 0;
    }

    if (len >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
        if (kn_grpc_check_http2(g, buf, len) != KN_OK) {
            return 0;
        }

        return len;
    }

    while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r')) {
        len--;
    }

    if (len == 0) {
        /* the end of the headers (or of the trailers) */
        if (!g->got_headers) {
            g->got_headers = 1;

            if (g->http_status != 200 && g->grpc_status < 0) {
                kn_grpc_drop(g, "the Manager answered HTTP status %ld, "
                             "not a gRPC response: is %s its gateway?",
                             g->http_status, g->url);
                return 0;
            }
        }

        return size * nitems;
    }

    value = memchr(buf, ':', len);
    if (value == NULL) {
        return size * nitems;
    }

    value++;
    while (value < buf + len && (*value == ' ' || *value == '\t')) {
        value++;
    }

    vlen = (size_t) (buf + len - value);

    if (len > 12 && strncasecmp(buf, "grpc-status:", 12) == 0) {
        status = 0;

        while (vlen && *value >= '0' && *value <= '9' && status < 1000) {
            status = status * 10 + (*value++ - '0');
            vlen--;
        }

        g->grpc_status = status;

        /* the stream is over: the transfer goes once these headers are in */
        (void) kn_timer_add(g->loop, &g->finish, 0);

    } else if (len > 13 && strncasecmp(buf, "grpc-message:", 13) == 0) {
        kn_grpc_percent_decode(value, vlen, g->grpc_message,
                               sizeof(g->grpc_message));

    } else if (!g->got_headers && len > 13
               && strncasecmp(buf, "content-type:", 13) == 0
               && g->http_status == 200
               && (vlen < 16 || strncasecmp(value, "application/grpc", 16)))
    {
        kn_grpc_drop(g, "the Manager answered with content-type \"%.*s\", "
                     "not a gRPC response: is %s its gateway?",
                     (int) (vlen > 64 ? 64 : vlen), value, g->url);
        return 0;
    }

    return size * nitems;
}


/* --log-level debug: libcurl's own account of the connection */

static int
kn_grpc_debug_cb(CURL *easy, curl_infotype type, char *data, size_t size,
    void *userp)
{
    kn_grpc_t  *g = userp;

    (void) easy;

    if (type != CURLINFO_TEXT && type != CURLINFO_HEADER_IN
        && type != CURLINFO_HEADER_OUT)
    {
        return 0;
    }

    while (size && (data[size - 1] == '\n' || data[size - 1] == '\r')) {
        size--;
    }

    kn_log(g->log, KN_LOG_DEBUG, "grpc: curl %s %.*s",
           type == CURLINFO_TEXT ? "*" : type == CURLINFO_HEADER_IN ? "<" : ">",
           (int) size, data);

    return 0;
}


/*
 * HTTP/2 or nothing: an https:// Manager may fall back to HTTP/1.1 (ALPN),
 * and gRPC needs HTTP/2's full-duplex streams and trailers.
 */

static kn_rc
kn_grpc_check_http2(kn_grpc_t *g, const char *line, size_t len)
{
    long         version;
    const char  *p, *end;

    version = 0;
    curl_easy_getinfo(g->xfer.easy, CURLINFO_HTTP_VERSION, &version);

    g->http_status = 0;
    end = line + len;

    for (p = line; p < end && *p != ' '; p++) {
        /* void */
    }

    for ( ; p < end && *p == ' '; p++) {
        /* void */
    }

    for ( ; p < end && *p >= '0' && *p <= '9' && g->http_status < 1000; p++) {
        g->http_status = g->http_status * 10 + (*p - '0');
    }

    if (version != CURL_HTTP_VERSION_2_0
        || (len >= 7 && strncmp(line, "HTTP/2 ", 7) != 0))
    {
        kn_grpc_drop(g, "the Manager at %s answered over %.*s: the gateway "
                     "needs HTTP/2, refusing to continue", g->conf.manager_url,
                     (int) (strchr(line, ' ') ? strchr(line, ' ') - line : 8),
                     line);
        return KN_ERROR;
    }

    return KN_OK;
}


static size_t
kn_grpc_write_cb(char *ptr, size_t size, size_t nmemb, void *userp)
{
    kn_grpc_t  *g = userp;

    size_t    len, n;
    uint8_t  *p, *end, *in;

    len = size * nmemb;
    p = (uint8_t *) ptr;
    end = p + len;

    if (g->dropping) {
        return 0;
    }

    if (g->http_status != 200) {
        kn_grpc_drop(g, "the Manager sent a body with HTTP status %ld",
                     g->http_status);
        return 0;
    }

    while (p < end) {

        if (g->frame_len < KN_GRPC_FRAME) {
            n = KN_GRPC_FRAME - g->frame_len;
            if (n > (size_t) (end - p)) {
                n = (size_t) (end - p);
            }

            memcpy(g->frame + g->frame_len, p, n);
            g->frame_len += n;
            p += n;

            if (g->frame_len < KN_GRPC_FRAME) {
                break;
            }

            if (g->frame[0] != 0) {
                kn_grpc_drop(g, "the Manager sent a compressed message "
                             "(flag %u) though none was negotiated",
                             g->frame[0]);
                return 0;
            }

            g->in_len = ((size_t) g->frame[1] << 24)
                        | ((size_t) g->frame[2] << 16)
                        | ((size_t) g->frame[3] << 8)
                        | (size_t) g->frame[4];
            g->in_got = 0;

            if (g->in_len > g->conf.max_message) {
                kn_grpc_drop(g, "a message of %zu bytes from the Manager is "
                             "larger than the limit of %zu bytes "
                             "(--max-message): refused", g->in_len,
                             g->conf.max_message);
                return 0;
            }

            if (g->in_len > g->in_cap) {
                in = realloc(g->in, g->in_len);
                if (in == NULL) {
                    kn_grpc_drop(g, "out of memory for a message of %zu "
                                 "bytes", g->in_len);
                    return 0;
                }

                g->in = in;
                g->in_cap = g->in_len;
            }
        }

        n = g->in_len - g->in_got;
        if (n > (size_t) (end - p)) {
            n = (size_t) (end - p);
        }

        if (n) {
            memcpy(g->in + g->in_got, p, n);
            g->in_got += n;
            p += n;
        }

        if (g->in_got < g->in_len) {
            break;
        }

        g->frame_len = 0;
        kn_grpc_message(g, g->in, g->in_len);

        if (g->dropping) {
            return 0;
        }
    }

    /* a large message's buffer is not kept between messages */
    if (g->frame_len == 0 && g->in_cap > 64 * 1024) {
        free(g->in);
        g->in = NULL;
        g->in_cap = 0;
    }

    return len;
}


static void
kn_grpc_message(kn_grpc_t *g, const uint8_t *data, size_t len)
{
    uint64_t                       interval;
    Kubenova__V1__Welcome         *w;
    Kubenova__V1__ManagerMessage  *m;

    g->last_recv = kn_loop_now(g->loop);

    m = kubenova__v1__manager_message__unpack(NULL, len, data);
    if (m == NULL) {
        kn_grpc_drop(g, "cannot decode a ManagerMessage of %zu bytes", len);
        return;
    }

    if (g->state == KN_GRPC_CONNECTING
        && m->body_case != KUBENOVA__V1__MANAGER_MESSAGE__BODY_WELCOME
        && m->body_case != KUBENOVA__V1__MANAGER_MESSAGE__BODY_HEARTBEAT)
    {
        kn_grpc_drop(g, "the Manager sent a message of type %d before its "
                     "Welcome", (int) m->body_case);
        goto done;
    }

    switch (m->body_case) {

    case KUBENOVA__V1__MANAGER_MESSAGE__BODY_WELCOME:
        w = m->welcome;

        if (g->state != KN_GRPC_CONNECTING) {
            kn_log(g->log, KN_LOG_WARN, "grpc: a second Welcome, ignored");
            break;
        }

        g->state = KN_GRPC_LIVE;
        g->welcomed = 1;

        if (w->heartbeat_interval_ms > 0
            && w->heartbeat_interval_ms <= KN_GRPC_MAX_PEER_HB_MS)
        {
            g->peer_heartbeat_ms = (uint64_t) w->heartbeat_interval_ms;
        }

        interval = kn_grpc_peer_interval(g);

        kn_log(g->log, KN_LOG_INFO, "grpc: connected to the Manager as "
               "cluster \"%s\" over HTTP/2: %d update(s) and %d deletion(s) "
               "follow; the Manager's heartbeat is %llu ms, dead after "
               "%llu ms of silence", g->conf.cluster, w->updates, w->deletes,
               (unsigned long long) interval,
               (unsigned long long) (KN_GRPC_DEAD_AFTER * interval));

        (void) kn_timer_add(g->loop, &g->heartbeat, g->conf.heartbeat_ms);
        (void) kn_timer_add(g->loop, &g->dead_peer,
                            KN_GRPC_DEAD_AFTER * interval);

        if (g->handlers->welcome) {
            g->handlers->welcome(g->data, w);
        }

        break;

    case KUBENOVA__V1__MANAGER_MESSAGE__BODY_HEARTBEAT:
        kn_log(g->log, KN_LOG_DEBUG, "grpc: heartbeat from the Manager");
        break;

    case KUBENOVA__V1__MANAGER_MESSAGE__BODY_UPDATE:
        kn_log(g->log, KN_LOG_DEBUG, "grpc: update %s \"%s\" generation "
               "%lld (%zu bytes)", m->update->kind, m->update->name,
               (long long) m->update->generation, m->update->payload.len);

        g->handlers->update(g->data, m->update->kind, m->update->name,
                            m->update->generation, m->update->payload.data,
                            m->update->payload.len);
        break;

    case KUBENOVA__V1__MANAGER_MESSAGE__BODY_DELETE:
        kn_log(g->log, KN_LOG_DEBUG, "grpc: delete %s \"%s\" generation "
               "%lld", m->delete_->kind, m->delete_->name,
               (long long) m->delete_->generation);

        g->handlers->delete_(g->data, m->delete_->kind, m->delete_->name,
                             m->delete_->generation);
        break;

    case KUBENOVA__V1__MANAGER_MESSAGE__BODY_USAGE_ACK:
        if (g->handlers->usage_ack) {
            g->handlers->usage_ack(g->data, m->usage_ack->sequence);
        }
        break;

    case KUBENOVA__V1__MANAGER_MESSAGE__BODY_STATUS_ACK:
        if (g->handlers->status_ack) {
            g->handlers->status_ack(g->data, m->status_ack->tenant,
                                    m->status_ack->app,
                                    m->status_ack->generation);
        }
        break;

    case KUBENOVA__V1__MANAGER_MESSAGE__BODY_CERTIFICATE:
        if (g->handlers->certificate) {
            g->handlers->certificate(g->data, m->certificate);
        }
        break;

    case KUBENOVA__V1__MANAGER_MESSAGE__BODY_KUBECONFIG_ACK:
        if (g->handlers->kubeconfig_ack) {
            g->handlers->kubeconfig_ack(g->data, m->kubeconfig_ack->tenant,
                                        m->kubeconfig_ack->role);
        }
        break;

    case KUBENOVA__V1__MANAGER_MESSAGE__BODY_TUNNEL_REQUEST:
    case KUBENOVA__V1__MANAGER_MESSAGE__BODY_TUNNEL_DATA:
    case KUBENOVA__V1__MANAGER_MESSAGE__BODY_TUNNEL_WINDOW:
    case KUBENOVA__V1__MANAGER_MESSAGE__BODY_TUNNEL_CANCEL:
        if (g->handlers->tunnel) {
            g->handlers->tunnel(g->data, m);
        }
        break;

    default:
        /* a newer Manager: the protocol grows by adding messages */
        kn_log(g->log, KN_LOG_DEBUG, "grpc: skipping a message of type %d",
               (int) m->body_case);
        break;
    }

done:

    kubenova__v1__manager_message__free_unpacked(m, NULL);
}


/* the end of a stream */


static void
kn_grpc_drop(kn_grpc_t *g, const char *fmt, ...)
{
    va_list  args;

    if (g->failure[0] == '\0') {
        va_start(args, fmt);
        vsnprintf(g->failure, sizeof(g->failure), fmt, args);
        va_end(args);
    }

    g->dropping = 1;

    /* libcurl callbacks fail from now on; else the finish timer removes it */
    (void) kn_timer_add(g->loop, &g->finish, 0);
}


static void
kn_grpc_finish_handler(kn_timer_t *t)
{
    kn_grpc_t  *g = t->data;

    if (!g->xfer.active) {
        return;
    }

    if (g->state == KN_GRPC_CLOSING && g->grpc_status < 0
        && g->failure[0] == '\0')
    {
        snprintf(g->failure, sizeof(g->failure), "the Manager did not end "
                 "the stream within %d ms of the Operator's half-close",
                 KN_GRPC_CLOSE_WAIT_MS);
    }

    kn_loop_remove_transfer(g->loop, &g->xfer);
    kn_grpc_ended(g, CURLE_OK);
}


static void
kn_grpc_done(kn_transfer_t *xfer, CURLcode result)
{
    kn_grpc_ended(xfer->data, result);
}


/*
 * libcurl 7.88 does not finish a transfer whose upload is paused, even when
 * the response is over: it only stops watching the socket.  Once the
 * request is under way (earlier, a failed connect attempt may be dropped),
 * the stream read nothing more and is over.
 */

static void
kn_grpc_unwatched(kn_transfer_t *xfer)
{
    kn_grpc_t  *g = xfer->data;

    if (g->requested) {
        (void) kn_timer_add(g->loop, &g->finish, 0);
    }
}


static void
kn_grpc_ended(kn_grpc_t *g, CURLcode result)
{
    int              was_live, stable;
    char             reason[KN_GRPC_TEXT_MAX + CURL_ERROR_SIZE + 256];
    uint64_t         bound, delay, lived;
    kn_log_level_e   level;

    was_live = g->welcomed;

    kn_grpc_reason(g, result, reason, sizeof(reason));
    kn_grpc_release(g);

    lived = kn_loop_now(g->loop) - g->started_at;

    if (g->state == KN_GRPC_CLOSING) {
        kn_log(g->log, KN_LOG_INFO, "grpc: the stream to the Manager is "
               "closed: %s", reason);
        g->state = KN_GRPC_STOPPED;

        if (was_live && g->handlers->disconnected) {
            g->handlers->disconnected(g->data, reason);
        }

        g->handlers->stopped(g->data);
        return;
    }

    level = (was_live && g->grpc_status == KN_GRPC_UNAVAILABLE)
            ? KN_LOG_INFO : KN_LOG_WARN;

    kn_log(g->log, level, "grpc: the stream to the Manager ended after "
           "%llu ms%s: %s", (unsigned long long) lived,
           was_live ? "" : " (not welcomed)", reason);

    if (was_live && g->handlers->disconnected) {
        g->handlers->disconnected(g->data, reason);
    }

    if (!was_live && g->grpc_status == KN_GRPC_UNAUTHENTICATED
        && g->handlers->unauthenticated)
    {
        g->handlers->unauthenticated(g->data);
    }

    stable = was_live && lived >= KN_GRPC_STABLE_MS;
    if (stable) {
        g->attempt = 0;
    }

    bound = g->conf.reconnect_max_ms;
    if (g->attempt < 40
        && (g->conf.reconnect_min_ms << g->attempt) < bound)
    {
        bound = g->conf.reconnect_min_ms << g->attempt;
    }

    delay = kn_grpc_random(bound);

    if (g->attempt < 1000) {
        g->attempt++;
    }

    kn_log(g->log, KN_LOG_INFO, "grpc: reconnecting in %llu ms (attempt %u, "
           "delay drawn from 0 to %llu ms)", (unsigned long long) delay,
           g->attempt + 1, (unsigned long long) bound);

    g->state = KN_GRPC_BACKOFF;

    if (kn_timer_add(g->loop, &g->reconnect, delay) != KN_OK) {
        kn_log(g->log, KN_LOG_ERROR, "grpc: no timer left to reconnect "
               "with");
    }
}


/* why the stream ended, in words */

static void
kn_grpc_reason(kn_grpc_t *g, CURLcode result, char *reason, size_t size)
{
    if (g->failure[0]) {
        snprintf(reason, size, "%s", g->failure);
        return;
    }

    if (g->grpc_status >= 0) {
        snprintf(reason, size, "%s (grpc-status %d)%s%s",
                 kn_grpc_status_name(g->grpc_status), g->grpc_status,
                 g->grpc_message[0] ? ": " : "", g->grpc_message);
        return;
    }

    if (!g->got_headers && !g->tls
        && (result == CURLE_OK || result == CURLE_GOT_NOTHING
            || result == CURLE_HTTP2 || result == CURLE_HTTP2_STREAM
            || result == CURLE_RECV_ERROR || result == CURLE_PARTIAL_FILE
            || result == CURLE_WEIRD_SERVER_REPLY))
    {
        /* libcurl 7.88 also loses an HTTP/2 answer reset at once */
        snprintf(reason, size, "no HTTP/2 response from the Manager at %s "
                 "(%s%s%s): is it an HTTP/2 listener?  The gateway needs "
                 "HTTP/2 (for http://, with prior knowledge: h2c) and this "
                 "Operator refuses anything else", g->conf.manager_url,
                 result == CURLE_OK ? "the stream ended before any response"
                                    : curl_easy_strerror(result),
                 g->curl_error[0] ? ": " : "", g->curl_error);
        return;
    }

    if (result == CURLE_OK) {
        snprintf(reason, size, "the Manager ended the stream without a "
                 "grpc-status");
        return;
    }

    /*
     * A Manager that reloads ends the stream (UNAVAILABLE), resets it and
     * sends GOAWAY; when all of that arrives at once libcurl 7.88 reports
     * CURLE_PARTIAL_FILE and drops the trailers, status included.
     */
    if (result == CURLE_PARTIAL_FILE && g->got_headers
        && g->curl_error[0] == '\0')
    {
        snprintf(reason, size, "the Manager reset the stream as its "
                 "connection went away (GOAWAY; libcurl loses the "
                 "grpc-status then): a Manager reload or restart");
        return;
    }

    snprintf(reason, size, "%s%s%s", curl_easy_strerror(result),
             g->curl_error[0] ? ": " : "", g->curl_error);
}


/* everything the stream held */

static void
kn_grpc_release(kn_grpc_t *g)
{
    kn_loop_remove_transfer(g->loop, &g->xfer);

    if (g->xfer.easy) {
        curl_easy_cleanup(g->xfer.easy);
        g->xfer.easy = NULL;
    }

    curl_slist_free_all(g->headers);
    g->headers = NULL;

    while (g->q_count) {
        free(g->queue[g->q_head]);
        g->queue[g->q_head] = NULL;
        g->q_head = (g->q_head + 1) % g->conf.queue_messages;
        g->q_count--;
    }

    g->q_head = 0;
    g->q_bytes = 0;
    g->q_sent = 0;

    free(g->in);
    g->in = NULL;
    g->in_cap = 0;

    kn_timer_cancel(g->loop, &g->heartbeat);
    kn_timer_cancel(g->loop, &g->dead_peer);
    kn_timer_cancel(g->loop, &g->resume);
    kn_timer_cancel(g->loop, &g->finish);
}


/* timers */


static void
kn_grpc_reconnect_handler(kn_timer_t *t)
{
    kn_grpc_t  *g = t->data;

    if (g->state == KN_GRPC_BACKOFF) {
        (void) kn_grpc_connect(g);
    }
}


static void
kn_grpc_heartbeat_handler(kn_timer_t *t)
{
    kn_grpc_t  *g = t->data;

    struct timespec                ts;
    Kubenova__V1__Heartbeat        hb = KUBENOVA__V1__HEARTBEAT__INIT;
    Kubenova__V1__OperatorMessage  m = KUBENOVA__V1__OPERATOR_MESSAGE__INIT;

    if (g->state != KN_GRPC_LIVE) {
        return;
    }

    /* a heartbeat behind queued messages says nothing they do not */

    if (g->q_count == 0) {
        clock_gettime(CLOCK_REALTIME, &ts);
        hb.sent_at_unix_ms = (int64_t) ts.tv_sec * 1000
                             + ts.tv_nsec / 1000000;
        m.body_case = KUBENOVA__V1__OPERATOR_MESSAGE__BODY_HEARTBEAT;
        m.heartbeat = &hb;

        (void) kn_grpc_enqueue(g, &m, "heartbeat");
    }

    (void) kn_timer_add(g->loop, &g->heartbeat, g->conf.heartbeat_ms);
}


static void
kn_grpc_dead_peer_handler(kn_timer_t *t)
{
    kn_grpc_t  *g = t->data;

    uint64_t  now, limit;

    if (g->state != KN_GRPC_CONNECTING && g->state != KN_GRPC_LIVE) {
        return;
    }

    now = kn_loop_now(g->loop);
    limit = KN_GRPC_DEAD_AFTER * kn_grpc_peer_interval(g);

    if (now - g->last_recv < limit) {
        (void) kn_timer_add(g->loop, &g->dead_peer,
                            g->last_recv + limit - now);
        return;
    }

    kn_grpc_drop(g, "no message from the Manager for %llu ms (%d heartbeat "
                 "intervals of %llu ms): the peer is dead, dropping the "
                 "stream", (unsigned long long) (now - g->last_recv),
                 KN_GRPC_DEAD_AFTER,
                 (unsigned long long) kn_grpc_peer_interval(g));
}


/* how often the Manager is heard from: its Welcome says, else ours */

static uint64_t
kn_grpc_peer_interval(kn_grpc_t *g)
{
    return g->peer_heartbeat_ms ? g->peer_heartbeat_ms : g->conf.heartbeat_ms;
}


/* messages to the Manager */


kn_rc
kn_grpc_ack(kn_grpc_t *g, const char *kind, const char *name,
    int64_t generation, int ok, const char *error)
{
    kn_rc                          rc;
    Kubenova__V1__Ack              ack = KUBENOVA__V1__ACK__INIT;
    Kubenova__V1__OperatorMessage  m = KUBENOVA__V1__OPERATOR_MESSAGE__INIT;

    if (!kn_grpc_live(g)) {
        return KN_DECLINED;
    }

    ack.kind = (char *) kind;
    ack.name = (char *) name;
    ack.generation = generation;
    ack.ok = ok ? 1 : 0;
    ack.error = (char *) (ok || error == NULL ? "" : error);

    m.body_case = KUBENOVA__V1__OPERATOR_MESSAGE__BODY_ACK;
    m.ack = &ack;

    rc = kn_grpc_enqueue(g, &m, "ack");

    if (rc == KN_AGAIN) {
        /* the next hello says what this ack would have */
        kn_grpc_drop(g, "the send queue is full: reconnecting so that the "
                     "hello tells the Manager what is applied");
    }

    return rc;
}


kn_rc
kn_grpc_send_usage(kn_grpc_t *g, const Kubenova__V1__UsageReport *report)
{
    Kubenova__V1__OperatorMessage  m = KUBENOVA__V1__OPERATOR_MESSAGE__INIT;

    if (!kn_grpc_live(g)) {
        return KN_DECLINED;
    }

    m.body_case = KUBENOVA__V1__OPERATOR_MESSAGE__BODY_USAGE;
    m.usage = (Kubenova__V1__UsageReport *) report;

    return kn_grpc_enqueue(g, &m, "usage report");
}


kn_rc
kn_grpc_send_app_status(kn_grpc_t *g,
    const Kubenova__V1__ApplicationStatus *status)
{
    Kubenova__V1__OperatorMessage  m = KUBENOVA__V1__OPERATOR_MESSAGE__INIT;

    if (!kn_grpc_live(g)) {
        return KN_DECLINED;
    }

    m.body_case = KUBENOVA__V1__OPERATOR_MESSAGE__BODY_APP_STATUS;
    m.app_status = (Kubenova__V1__ApplicationStatus *) status;

    return kn_grpc_enqueue(g, &m, "application status");
}


kn_rc
kn_grpc_send_components(kn_grpc_t *g,
    const Kubenova__V1__ComponentStatus *status)
{
    Kubenova__V1__OperatorMessage  m = KUBENOVA__V1__OPERATOR_MESSAGE__INIT;

    if (!kn_grpc_live(g)) {
        return KN_DECLINED;
    }

    m.body_case = KUBENOVA__V1__OPERATOR_MESSAGE__BODY_COMPONENTS;
    m.components = (Kubenova__V1__ComponentStatus *) status;

    return kn_grpc_enqueue(g, &m, "component status");
}


kn_rc
kn_grpc_send_kubeconfig(kn_grpc_t *g, const char *tenant, const char *role,
    const uint8_t *kubeconfig, size_t len)
{
    Kubenova__V1__IssuedKubeconfig  kc = KUBENOVA__V1__ISSUED_KUBECONFIG__INIT;
    Kubenova__V1__OperatorMessage   m = KUBENOVA__V1__OPERATOR_MESSAGE__INIT;

    if (!kn_grpc_live(g)) {
        return KN_DECLINED;
    }

    kc.tenant = (char *) tenant;
    kc.role = (char *) role;
    kc.kubeconfig.data = (uint8_t *) kubeconfig;
    kc.kubeconfig.len = len;

    m.body_case = KUBENOVA__V1__OPERATOR_MESSAGE__BODY_KUBECONFIG;
    m.kubeconfig = &kc;

    return kn_grpc_enqueue(g, &m, "kubeconfig");
}


kn_rc
kn_grpc_send_tunnel(kn_grpc_t *g, const Kubenova__V1__OperatorMessage *m)
{
    size_t  len;

    if (!kn_grpc_live(g)) {
        return KN_DECLINED;
    }

    /*
     * Half the queue stays for the rest: an ack that does not fit drops
     * the stream, and proxied traffic must never cause that.
     */
    len = kubenova__v1__operator_message__get_packed_size(m);

    if (g->q_count >= g->conf.queue_messages / 2
        || g->q_bytes + KN_GRPC_FRAME + len > g->conf.queue_bytes / 2)
    {
        return KN_AGAIN;
    }

    return kn_grpc_enqueue(g, m, "tunnel message");
}


kn_rc
kn_grpc_send_certificate_request(kn_grpc_t *g, const char *csr_pem,
    size_t len)
{
    Kubenova__V1__CertificateRequest  cr =
                                        KUBENOVA__V1__CERTIFICATE_REQUEST__INIT;
    Kubenova__V1__OperatorMessage     m = KUBENOVA__V1__OPERATOR_MESSAGE__INIT;

    if (!kn_grpc_live(g)) {
        return KN_DECLINED;
    }

    cr.csr_pem.data = (uint8_t *) csr_pem;
    cr.csr_pem.len = len;

    m.body_case = KUBENOVA__V1__OPERATOR_MESSAGE__BODY_CERTIFICATE_REQUEST;
    m.certificate_request = &cr;

    return kn_grpc_enqueue(g, &m, "certificate request");
}


/* helpers */


const char *
kn_grpc_status_name(int status)
{
    static const char  *names[] = {
        "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
        "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
        "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
        "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"
    };

    if (status < 0 || (size_t) status >= KN_NELEMS(names)) {
        return "UNKNOWN";
    }

    return names[status];
}


/* uniform in [0, bound] */

static uint64_t
kn_grpc_random(uint64_t bound)
{
    uint64_t         r;
    struct timespec  ts;

    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t) sizeof(r)) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        r = (uint64_t) ts.tv_nsec * 6364136223846793005ULL
            + (uint64_t) ts.tv_sec;
    }

    return r % (bound + 1);
}


static int
kn_grpc_hex(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }

    return -1;
}


/* grpc-message is percent-encoded (gRPC over HTTP/2, "Responses") */

static void
kn_grpc_percent_decode(const char *in, size_t len, char *out, size_t size)
{
    int     hi, lo;
    size_t  i, o;

    o = 0;

    for (i = 0; i < len && o + 1 < size; i++) {
        if (in[i] == '%' && i + 2 < len
            && (hi = kn_grpc_hex(in[i + 1])) >= 0
            && (lo = kn_grpc_hex(in[i + 2])) >= 0)
        {
            out[o++] = (char) (hi * 16 + lo);
            i += 2;
            continue;
        }

        out[o++] = in[i];
    }

    out[o] = '\0';
}
