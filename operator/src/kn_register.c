/*
 * The identity's life: load, register, store, renew (see kn_register.h).
 *
 * Every step runs from the loop: a step that finishes at once (the
 * directory storage) continues from the zero-delay step timer, as one
 * that waits for Kubernetes or the Manager continues from its callback.
 * The same timer carries the retries, with a delay that doubles up to
 * KN_REGISTER_RETRY_MAX.
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "kn_identity_secret.h"
#include "kn_join.h"
#include "kn_register.h"


#define KN_REGISTER_RESPONSE_MAX   (256 * 1024)
#define KN_REGISTER_TIMEOUT_MS     30000
#define KN_REGISTER_RETRY_MIN      1000
#define KN_REGISTER_RETRY_MAX      (5 * 60 * 1000)
#define KN_REGISTER_ANSWER_MS      60000     /* for a CertificateIssued */
#define KN_REGISTER_ERROR_MAX      1024


typedef enum {
    KN_REGISTER_IDLE = 0,
    KN_REGISTER_LOADING,
    KN_REGISTER_REGISTERING,
    KN_REGISTER_STORING,
    KN_REGISTER_READY,              /* renewal timer set */
    KN_REGISTER_RENEWING,           /* a request is out on the stream */
    KN_REGISTER_REREGISTERING       /* refused: registering again */
} kn_register_state_e;


struct kn_register_s {
    kn_loop_t             *loop;
    const kn_log_t        *log;
    kn_register_conf_t     conf;
    kn_register_ready_pt   ready;
    kn_register_send_pt    send;
    void                  *data;

    kn_register_state_e    state;
    kn_identity_t          id;
    kn_identity_t          loaded;      /* what a Secret load fills */
    kn_identity_secret_op_t  *secret_op;  /* a Secret load or save */
    uint64_t               retry_ms;
    kn_timer_t             timer;       /* next step, retry, renewal */
    void                 (*next)(kn_register_t *reg);

    /* the registration POST */
    kn_transfer_t          xfer;
    struct curl_slist     *headers;
    char                  *body;
    char                  *response;
    size_t                 response_len;
    unsigned               overflow:1;
    char                   curl_error[CURL_ERROR_SIZE];
};


static void kn_register_load(kn_register_t *reg);
static void kn_register_loaded(void *data, kn_rc rc, const char *err);
static void kn_register_post(kn_register_t *reg);
static size_t kn_register_write_cb(char *ptr, size_t size, size_t nmemb,
    void *userp);
static void kn_register_posted(kn_transfer_t *xfer, CURLcode result);
static kn_rc kn_register_response(kn_register_t *reg, long status);
static void kn_register_store(kn_register_t *reg);
static void kn_register_stored(void *data, kn_rc rc, const char *err);
static void kn_register_have(kn_register_t *reg);
static void kn_register_renew(kn_register_t *reg);
static void kn_register_release_post(kn_register_t *reg);
static void kn_register_step(kn_register_t *reg,
    void (*next)(kn_register_t *reg), uint64_t after_ms);
static void kn_register_retry(kn_register_t *reg,
    void (*next)(kn_register_t *reg));
static void kn_register_timer(kn_timer_t *timer);


kn_rc
kn_register_create(kn_loop_t *loop, const kn_log_t *log,
    const kn_register_conf_t *conf, kn_register_ready_pt ready,
    kn_register_send_pt send, void *data, kn_register_t **out)
{
    kn_register_t  *reg;

    reg = calloc(1, sizeof(kn_register_t));
    if (reg == NULL) {
        kn_log(log, KN_LOG_ERROR, "identity: out of memory");
        return KN_ERROR;
    }

    reg->loop = loop;
    reg->log = log;
    reg->conf = *conf;
    reg->ready = ready;
    reg->send = send;
    reg->data = data;
    reg->retry_ms = KN_REGISTER_RETRY_MIN;

    kn_identity_init(&reg->id);
    kn_identity_init(&reg->loaded);
    kn_timer_init(&reg->timer, kn_register_timer, reg);

    *out = reg;

    return KN_OK;
}


void
kn_register_destroy(kn_register_t *reg)
{
    if (reg == NULL) {
        return;
    }

    kn_timer_cancel(reg->loop, &reg->timer);
    kn_register_release_post(reg);
    kn_identity_secret_cancel(reg->secret_op);
    kn_identity_free(&reg->id);
    kn_identity_free(&reg->loaded);
    free(reg);
}


kn_rc
kn_register_start(kn_register_t *reg)
{
    kn_register_step(reg, kn_register_load, 0);

    return kn_timer_is_set(&reg->timer) ? KN_OK : KN_ERROR;
}


/* loading */


static void
kn_register_load(kn_register_t *reg)
{
    char   err[KN_REGISTER_ERROR_MAX];
    kn_rc  rc;

    reg->state = KN_REGISTER_LOADING;

    if (reg->conf.identity_dir) {
        rc = kn_identity_load_dir(&reg->loaded, reg->conf.identity_dir,
                                  reg->conf.cluster, err, sizeof(err));
        kn_register_loaded(reg, rc, err);
        return;
    }

    rc = kn_identity_secret_load(reg->conf.kube, reg->conf.secret_namespace,
                                 reg->conf.secret_name, reg->conf.cluster,
                                 &reg->loaded, kn_register_loaded, reg,
                                 &reg->secret_op);
    if (rc != KN_OK) {
        kn_register_retry(reg, kn_register_load);
    }
}


static void
kn_register_loaded(void *data, kn_rc rc, const char *err)
{
    kn_register_t  *reg = data;

    reg->secret_op = NULL;

    if (rc == KN_ERROR) {
        kn_log(reg->log, KN_LOG_ERROR, "%s; retrying", err);
        kn_identity_free(&reg->loaded);
        kn_register_retry(reg, kn_register_load);
        return;
    }

    kn_identity_free(&reg->id);
    reg->id = reg->loaded;
    kn_identity_init(&reg->loaded);

    if (rc == KN_OK && !kn_identity_expired(&reg->id, time(NULL))) {
        kn_log(reg->log, KN_LOG_INFO, "identity: certificate serial %s for "
               "cluster \"%s\" loaded, valid until %ld", reg->id.serial,
               reg->conf.cluster, (long) reg->id.not_after);
        reg->retry_ms = KN_REGISTER_RETRY_MIN;
        kn_register_have(reg);
        return;
    }

    if (reg->conf.join_dir == NULL) {
        kn_log(reg->log, KN_LOG_ERROR, "identity: %s and no --join-dir to "
               "register with; waiting for one to appear",
               rc == KN_OK ? "the certificate has expired"
                           : "there is none");
        kn_register_retry(reg, kn_register_load);
        return;
    }

    if (rc == KN_OK && reg->id.cert_pem != NULL) {
        kn_log(reg->log, KN_LOG_WARN, "identity: the certificate serial %s "
               "has expired: registering again with the join token",
               reg->id.serial);
    }

    kn_register_post(reg);
}


/* registering: POST {"join_token", "csr"} to the register URL */


static void
kn_register_post(kn_register_t *reg)
{
    char     err[KN_REGISTER_ERROR_MAX], *token, *csr;
    CURL    *easy;
    size_t   csr_len;
    json_t  *req;

    if (reg->state != KN_REGISTER_REREGISTERING) {
        reg->state = KN_REGISTER_REGISTERING;
    }

    /* a key made here once; kept if the registration has to be retried */
    if (reg->id.key == NULL
        && kn_identity_generate(&reg->id, err, sizeof(err)) != KN_OK)
    {
        kn_log(reg->log, KN_LOG_ERROR, "identity: %s", err);
        kn_register_retry(reg, kn_register_post);
        return;
    }

    token = kn_join_token(reg->conf.join_dir, err, sizeof(err));
    if (token == NULL) {
        kn_log(reg->log, KN_LOG_ERROR, "identity: %s", err);
        kn_register_retry(reg, kn_register_post);
        return;
    }

    if (kn_identity_csr(&reg->id, reg->conf.cluster, &csr, &csr_len, err,
                        sizeof(err)) != KN_OK)
    {
        explicit_bzero(token, strlen(token));
        free(token);
        kn_log(reg->log, KN_LOG_ERROR, "identity: %s", err);
        kn_register_retry(reg, kn_register_post);
        return;
    }

    req = json_pack("{s:s, s:s}", "join_token", token, "csr", csr);
    reg->body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    explicit_bzero(token, strlen(token));
    free(token);
    free(csr);

    easy = curl_easy_init();
    reg->headers = curl_slist_append(NULL, "content-type: application/json");

    if (reg->body == NULL || easy == NULL || reg->headers == NULL) {
        if (easy) {
            curl_easy_cleanup(easy);
        }

        kn_register_release_post(reg);
        kn_log(reg->log, KN_LOG_ERROR, "identity: out of memory");
        kn_register_retry(reg, kn_register_post);
        return;
    }

    reg->response_len = 0;
    reg->overflow = 0;
    reg->curl_error[0] = '\0';

    reg->xfer.easy = easy;
    reg->xfer.done = kn_register_posted;
    reg->xfer.data = reg;

    curl_easy_setopt(easy, CURLOPT_URL, reg->conf.register_url);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, reg->body);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, reg->headers);
    curl_easy_setopt(easy, CURLOPT_USERAGENT,
                     "kubenova-operator/" KN_VERSION);
    curl_easy_setopt(easy, CURLOPT_CAINFO, reg->conf.ca_file);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, kn_register_write_cb);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, reg);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, reg->curl_error);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) KN_REGISTER_TIMEOUT_MS);

    kn_log(reg->log, KN_LOG_INFO, "identity: registering cluster \"%s\" at "
           "%s", reg->conf.cluster, reg->conf.register_url);

    if (strncmp(reg->conf.register_url, "http://", 7) == 0) {
        kn_log(reg->log, KN_LOG_WARN, "identity: the register URL is "
               "plain http://: the join token is not protected on the way");
    }

    if (kn_loop_add_transfer(reg->loop, &reg->xfer) != KN_OK) {
        kn_register_release_post(reg);
        kn_register_retry(reg, kn_register_post);
    }
}


static size_t
kn_register_write_cb(char *ptr, size_t size, size_t nmemb, void *userp)
{
    char           *p;
    size_t          n = size * nmemb;
    kn_register_t  *reg = userp;

    if (reg->response_len + n > KN_REGISTER_RESPONSE_MAX) {
        reg->overflow = 1;
        return 0;
    }

    p = realloc(reg->response, reg->response_len + n + 1);
    if (p == NULL) {
        return 0;
    }

    memcpy(p + reg->response_len, ptr, n);
    reg->response = p;
    reg->response_len += n;
    p[reg->response_len] = '\0';

    return n;
}


static void
kn_register_posted(kn_transfer_t *xfer, CURLcode result)
{
    long            status;
    kn_register_t  *reg = xfer->data;

    status = 0;
    curl_easy_getinfo(xfer->easy, CURLINFO_RESPONSE_CODE, &status);

    if (result != CURLE_OK) {
        kn_log(reg->log, KN_LOG_ERROR, "identity: registration at %s "
               "failed: %s; retrying", reg->conf.register_url,
               reg->overflow ? "the answer is too large"
               : reg->curl_error[0] ? reg->curl_error
               : curl_easy_strerror(result));
        kn_register_release_post(reg);
        kn_register_retry(reg, kn_register_post);
        return;
    }

    if (kn_register_response(reg, status) != KN_OK) {
        kn_register_release_post(reg);
        kn_register_retry(reg, kn_register_post);
        return;
    }

    kn_register_release_post(reg);
    reg->retry_ms = KN_REGISTER_RETRY_MIN;

    kn_log(reg->log, KN_LOG_INFO, "identity: registered: certificate serial "
           "%s for cluster \"%s\", valid until %ld", reg->id.serial,
           reg->conf.cluster, (long) reg->id.not_after);

    kn_register_store(reg);
}


/*
 * 201 {"certificate", "ca", "not_after"}; anything else is refused with
 * the Manager's message ({"error": ...} or {"message": ...}).
 */

static kn_rc
kn_register_response(kn_register_t *reg, long status)
{
    char          err[KN_REGISTER_ERROR_MAX];
    json_t       *body;
    const char   *cert, *ca, *msg;
    json_error_t  jerr;

    body = reg->response ? json_loadb(reg->response, reg->response_len, 0,
                                      &jerr)
                         : NULL;

    if (status != 201) {
        msg = NULL;

        if (json_is_object(body)) {
            msg = json_string_value(json_object_get(body, "error"));
            if (msg == NULL) {
                msg = json_string_value(json_object_get(body, "message"));
            }
        }

        kn_log(reg->log, KN_LOG_ERROR, "identity: the Manager refused the "
               "registration: HTTP %ld: %s%s", status,
               msg ? msg : "(no message)",
               status == 401 ? " (a fresh join token: POST /api/v1/clusters/"
                               "<name>/join-token, into the join Secret)"
                             : "");
        json_decref(body);
        return KN_ERROR;
    }

    cert = json_string_value(json_object_get(body, "certificate"));
    ca = json_string_value(json_object_get(body, "ca"));

    if (cert == NULL) {
        kn_log(reg->log, KN_LOG_ERROR, "identity: the registration answer "
               "has no certificate");
        json_decref(body);
        return KN_ERROR;
    }

    if (kn_identity_set_cert(&reg->id, cert, strlen(cert), ca,
                             ca ? strlen(ca) : 0, reg->conf.cluster, err,
                             sizeof(err)) != KN_OK)
    {
        kn_log(reg->log, KN_LOG_ERROR, "identity: the registration answer "
               "is unusable: %s", err);
        json_decref(body);
        return KN_ERROR;
    }

    json_decref(body);

    return KN_OK;
}


/* storing, after a registration or a renewal */


static void
kn_register_store(kn_register_t *reg)
{
    char   err[KN_REGISTER_ERROR_MAX];
    kn_rc  rc;

    reg->state = KN_REGISTER_STORING;

    if (reg->conf.identity_dir) {
        rc = kn_identity_save_dir(&reg->id, reg->conf.identity_dir, err,
                                  sizeof(err));
        kn_register_stored(reg, rc, err);
        return;
    }

    rc = kn_identity_secret_save(reg->conf.kube, reg->conf.secret_namespace,
                                 reg->conf.secret_name, &reg->id,
                                 kn_register_stored, reg, &reg->secret_op);
    if (rc != KN_OK) {
        kn_register_retry(reg, kn_register_store);
    }
}


static void
kn_register_stored(void *data, kn_rc rc, const char *err)
{
    kn_register_t  *reg = data;

    reg->secret_op = NULL;

    if (rc != KN_OK) {
        /* the token is spent: this certificate must be kept */
        kn_log(reg->log, KN_LOG_ERROR, "%s; retrying", err);
        kn_register_retry(reg, kn_register_store);
        return;
    }

    reg->retry_ms = KN_REGISTER_RETRY_MIN;

    kn_log(reg->log, KN_LOG_INFO, "identity: stored in %s%s%s%s",
           reg->conf.identity_dir ? reg->conf.identity_dir : "Secret ",
           reg->conf.identity_dir ? "" : reg->conf.secret_namespace,
           reg->conf.identity_dir ? "" : "/",
           reg->conf.identity_dir ? "" : reg->conf.secret_name);

    kn_register_have(reg);
}


/* an identity to use: handed over, its renewal scheduled */

static void
kn_register_have(kn_register_t *reg)
{
    time_t  now, at;

    reg->state = KN_REGISTER_READY;

    reg->ready(reg->data, &reg->id);

    now = time(NULL);
    at = kn_identity_renew_at(&reg->id);

    kn_log(reg->log, KN_LOG_INFO, "identity: renewal in %lld s",
           (long long) (at > now ? at - now : 0));

    kn_register_step(reg, kn_register_renew,
                     at > now ? (uint64_t) (at - now) * 1000 : 0);
}


/* renewing over the stream */


static void
kn_register_renew(kn_register_t *reg)
{
    char    err[KN_REGISTER_ERROR_MAX], *csr;
    size_t  len;
    kn_rc   rc;
    time_t  left;

    /* never renewed in time (no stream all along): only a join token helps */
    if (kn_identity_expired(&reg->id, time(NULL))) {
        kn_log(reg->log, KN_LOG_ERROR, "identity: the certificate serial %s "
               "expired before it could be renewed%s", reg->id.serial,
               reg->conf.join_dir ? ": registering again with the join "
                                    "token" : "; no --join-dir to register "
                                    "again with");

        if (reg->conf.join_dir) {
            kn_register_post(reg);
            return;
        }
    }

    if (kn_identity_csr(&reg->id, reg->conf.cluster, &csr, &len, err,
                        sizeof(err)) != KN_OK)
    {
        kn_log(reg->log, KN_LOG_ERROR, "identity: renewal: %s", err);
        kn_register_retry(reg, kn_register_renew);
        return;
    }

    rc = reg->send(reg->data, csr, len);
    free(csr);

    if (rc != KN_OK) {
        kn_log(reg->log, KN_LOG_INFO, "identity: renewal: %s; trying again "
               "soon", rc == KN_DECLINED ? "not connected"
                                         : "the stream cannot take it");
        kn_register_retry(reg, kn_register_renew);
        return;
    }

    kn_log(reg->log, KN_LOG_INFO, "identity: renewal requested for serial "
           "%s (valid until %ld)", reg->id.serial, (long) reg->id.not_after);

    reg->state = KN_REGISTER_RENEWING;

    /* unanswered (the stream dropped, say): asked again, at the latest
     * when the certificate ends */
    left = reg->id.not_after - time(NULL);
    kn_register_step(reg, kn_register_renew,
                     left * 1000 < KN_REGISTER_ANSWER_MS
                     ? (uint64_t) (left > 0 ? left * 1000 + 1000 : 0)
                     : KN_REGISTER_ANSWER_MS);
}


void
kn_register_issued(kn_register_t *reg,
    const Kubenova__V1__CertificateIssued *issued)
{
    char  err[KN_REGISTER_ERROR_MAX];

    if (reg->state != KN_REGISTER_RENEWING) {
        kn_log(reg->log, KN_LOG_WARN, "identity: a certificate nobody asked "
               "for, ignored");
        return;
    }

    if (issued->error != NULL && issued->error[0] != '\0') {
        kn_log(reg->log, KN_LOG_ERROR, "identity: the Manager refused the "
               "renewal: %s", issued->error);
        kn_register_retry(reg, kn_register_renew);
        return;
    }

    if (kn_identity_set_cert(&reg->id,
                             (const char *) issued->certificate_pem.data,
                             issued->certificate_pem.len,
                             (const char *) issued->ca_pem.data,
                             issued->ca_pem.len, reg->conf.cluster, err,
                             sizeof(err)) != KN_OK)
    {
        kn_log(reg->log, KN_LOG_ERROR, "identity: the renewed certificate is "
               "unusable: %s", err);
        kn_register_retry(reg, kn_register_renew);
        return;
    }

    kn_log(reg->log, KN_LOG_INFO, "identity: renewed: certificate serial %s, "
           "valid until %ld", reg->id.serial, (long) reg->id.not_after);

    reg->retry_ms = KN_REGISTER_RETRY_MIN;
    kn_timer_cancel(reg->loop, &reg->timer);
    kn_register_store(reg);
}


/* refused by the Manager */


void
kn_register_refused(kn_register_t *reg)
{
    if (reg->state != KN_REGISTER_READY && reg->state != KN_REGISTER_RENEWING)
    {
        return;                 /* registering already, or not yet ready */
    }

    if (reg->conf.join_dir == NULL) {
        kn_log(reg->log, KN_LOG_ERROR, "identity: the Manager refuses the "
               "certificate serial %s and there is no --join-dir to "
               "register again with", reg->id.serial);
        return;
    }

    kn_log(reg->log, KN_LOG_WARN, "identity: the Manager refuses the "
           "certificate serial %s (revoked?): registering again with the "
           "join token", reg->id.serial);

    kn_timer_cancel(reg->loop, &reg->timer);
    reg->retry_ms = KN_REGISTER_RETRY_MIN;
    reg->state = KN_REGISTER_REREGISTERING;

    kn_register_post(reg);
}


void
kn_register_welcomed(kn_register_t *reg)
{
    if (reg->state != KN_REGISTER_REREGISTERING) {
        return;
    }

    kn_log(reg->log, KN_LOG_INFO, "identity: the Manager takes the "
           "certificate serial %s again: registering called off",
           reg->id.serial);

    kn_timer_cancel(reg->loop, &reg->timer);
    kn_register_release_post(reg);
    reg->retry_ms = KN_REGISTER_RETRY_MIN;

    kn_register_have(reg);
}


/* helpers */


static void
kn_register_release_post(kn_register_t *reg)
{
    if (reg->xfer.easy != NULL) {
        if (reg->xfer.active) {
            kn_loop_remove_transfer(reg->loop, &reg->xfer);
        }

        curl_easy_cleanup(reg->xfer.easy);
        reg->xfer.easy = NULL;
    }

    curl_slist_free_all(reg->headers);
    reg->headers = NULL;

    if (reg->body != NULL) {
        explicit_bzero(reg->body, strlen(reg->body));   /* the token */
        free(reg->body);
        reg->body = NULL;
    }

    free(reg->response);
    reg->response = NULL;
    reg->response_len = 0;
}


static void
kn_register_step(kn_register_t *reg, void (*next)(kn_register_t *reg),
    uint64_t after_ms)
{
    reg->next = next;

    if (kn_timer_add(reg->loop, &reg->timer, after_ms) != KN_OK) {
        kn_log(reg->log, KN_LOG_ERROR, "identity: no timer left");
    }
}


static void
kn_register_retry(kn_register_t *reg, void (*next)(kn_register_t *reg))
{
    uint64_t  after;

    after = reg->retry_ms;
    reg->retry_ms = reg->retry_ms * 2 > KN_REGISTER_RETRY_MAX
                    ? KN_REGISTER_RETRY_MAX : reg->retry_ms * 2;

    kn_register_step(reg, next, after);
}


static void
kn_register_timer(kn_timer_t *timer)
{
    kn_register_t  *reg = timer->data;

    reg->next(reg);
}
