/*
 * The tenants' kubeconfigs (see kn_credentials.h): a chained hash table of
 * tenants, each with one record per role.  A record's next TokenRequest is
 * due at a time of the loop's clock; one timer is set for the earliest.
 */

#define _DEFAULT_SOURCE                 /* explicit_bzero, timegm */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "kn_applier.h"
#include "kn_credentials.h"


#define KN_CRED_ROLES         2
#define KN_CRED_NAME_MAX      KN_APPLIER_NAME_MAX
#define KN_CRED_NS_MAX        (KN_CRED_NAME_MAX + 8)
#define KN_CRED_RETRY_MIN_MS  1000
#define KN_CRED_RETRY_MAX_MS  60000
#define KN_CRED_RENEW_MIN_MS  1000      /* however close the expiry */
#define KN_CRED_RESEND_MS     1000      /* the send queue was full */


typedef struct kn_cred_tenant_s  kn_cred_tenant_t;

typedef struct {
    kn_cred_tenant_t  *tenant;
    const char        *role;
    kn_kube_req_t     *req;             /* the TokenRequest in flight */
    uint64_t           due;             /* the next one, loop clock */
    uint64_t           retry_ms;        /* after the next failure */
    char              *kubeconfig;      /* the newest, until acked */
    size_t             len;
    char              *token;           /* the newest, for the kube proxy
                                           tunnel (kn_tunnel) */
    unsigned           unacked;         /* sent on this stream, not acked */
    unsigned           scheduled:1;     /* due is set */
    unsigned           queued:1;        /* the newest is sent on this
                                           stream (among the unacked) */
} kn_cred_t;


struct kn_cred_tenant_s {
    kn_cred_tenant_t  *next;
    kn_credentials_t  *creds;
    kn_cred_t          roles[KN_CRED_ROLES];
    char               name[KN_CRED_NAME_MAX];
};


struct kn_credentials_s {
    kn_loop_t          *loop;
    const kn_log_t     *log;
    kn_kube_t          *kube;
    kn_grpc_t          *grpc;
    kn_cred_tenant_t  **buckets;
    size_t              nbuckets;       /* a power of two */
    size_t              count;
    size_t              max_tenants;
    uint64_t            ttl_ms;
    uint64_t            renew_before_ms;
    kn_timer_t          tick;           /* the earliest due request */
    kn_timer_t          resend;         /* the send queue was full */

    /* the same in every kubeconfig, quoted for YAML once */
    char               *cluster;
    char               *cluster_quoted;
    char               *server_quoted;
    char               *ca_line;        /* certificate-authority-data, or
                                           insecure-skip-tls-verify, or "" */
};


static const char  *kn_cred_roles[KN_CRED_ROLES] = { "owner", "readonly" };


static kn_cred_tenant_t **kn_cred_slot(kn_credentials_t *c,
    const char *name);
static void kn_cred_tenant_free(kn_cred_tenant_t *t);
static void kn_cred_schedule(kn_cred_t *cr, uint64_t after_ms);
static void kn_cred_tick(kn_timer_t *timer);
static void kn_cred_request(kn_cred_t *cr);
static void kn_cred_token_done(const kn_kube_result_t *res, void *data);
static void kn_cred_failed(kn_cred_t *cr, const char *why);
static kn_rc kn_cred_send(kn_cred_t *cr);
static void kn_cred_send_pending(kn_credentials_t *c);
static void kn_cred_resend(kn_timer_t *timer);
static void kn_cred_forget(kn_cred_t *cr);
static kn_rc kn_cred_keep_token(kn_cred_t *cr, const char *token);
static void kn_cred_wipe_token(kn_cred_t *cr);
static char *kn_cred_kubeconfig(kn_credentials_t *c, const char *tenant,
    const char *role, const char *token, size_t *len);
static char *kn_cred_quote(const char *s);
static kn_rc kn_cred_parse_time(const char *s, time_t *t);


kn_rc
kn_credentials_create(kn_loop_t *loop, const kn_log_t *log, kn_kube_t *kube,
    kn_grpc_t *grpc, const kn_credentials_conf_t *conf,
    kn_credentials_t **out)
{
    char              *b64, *q;
    size_t             n;
    kn_credentials_t  *c;

    c = calloc(1, sizeof(kn_credentials_t));
    if (c == NULL) {
        goto nomem;
    }

    c->loop = loop;
    c->log = log;
    c->kube = kube;
    c->grpc = grpc;
    c->max_tenants = conf->max_tenants;
    c->ttl_ms = conf->ttl_ms;
    c->renew_before_ms = conf->renew_before_ms;
    kn_timer_init(&c->tick, kn_cred_tick, c);
    kn_timer_init(&c->resend, kn_cred_resend, c);

    for (c->nbuckets = 64; c->nbuckets < c->max_tenants / 2;
         c->nbuckets *= 2)
    {
        /* void */
    }

    c->buckets = calloc(c->nbuckets, sizeof(kn_cred_tenant_t *));
    c->cluster = strdup(conf->cluster);
    c->cluster_quoted = kn_cred_quote(conf->cluster);
    c->server_quoted = kn_cred_quote(conf->server);

    if (c->buckets == NULL || c->cluster == NULL
        || c->cluster_quoted == NULL || c->server_quoted == NULL)
    {
        goto nomem;
    }

    if (conf->ca_pem != NULL && conf->ca_pem_len > 0) {
        b64 = malloc(4 * ((conf->ca_pem_len + 2) / 3) + 1);
        if (b64 == NULL) {
            goto nomem;
        }

        EVP_EncodeBlock((unsigned char *) b64,
                        (const unsigned char *) conf->ca_pem,
                        (int) conf->ca_pem_len);
        q = kn_cred_quote(b64);
        free(b64);

        if (q == NULL) {
            goto nomem;
        }

        n = sizeof("    certificate-authority-data: \n") + strlen(q);
        c->ca_line = malloc(n);
        if (c->ca_line != NULL) {
            snprintf(c->ca_line, n, "    certificate-authority-data: %s\n",
                     q);
        }
        free(q);

    } else {
        c->ca_line = strdup(conf->insecure
                            ? "    insecure-skip-tls-verify: true\n" : "");
    }

    if (c->ca_line == NULL) {
        goto nomem;
    }

    *out = c;
    return KN_OK;

nomem:

    kn_log(log, KN_LOG_ERROR, "credentials: out of memory");
    kn_credentials_destroy(c);
    return KN_ERROR;
}


void
kn_credentials_destroy(kn_credentials_t *c)
{
    size_t             i;
    kn_cred_tenant_t  *t, *next;

    if (c == NULL) {
        return;
    }

    kn_timer_cancel(c->loop, &c->tick);
    kn_timer_cancel(c->loop, &c->resend);

    for (i = 0; c->buckets && i < c->nbuckets; i++) {
        for (t = c->buckets[i]; t; t = next) {
            next = t->next;
            kn_cred_tenant_free(t);
        }
    }

    free(c->buckets);
    free(c->cluster);
    free(c->cluster_quoted);
    free(c->server_quoted);
    free(c->ca_line);
    free(c);
}


/* -- tenants come and go ------------------------------------------------ */


void
kn_credentials_tenant(void *data, const char *name, int present)
{
    kn_credentials_t   *c = data;
    kn_cred_tenant_t  **slot, *t;
    size_t              i;

    slot = kn_cred_slot(c, name);

    if (!present) {
        if (*slot == NULL) {
            return;
        }

        t = *slot;
        *slot = t->next;
        c->count--;
        kn_cred_tenant_free(t);

        kn_log(c->log, KN_LOG_INFO, "credentials: tenant \"%s\" is gone: "
               "its kubeconfigs are forgotten", name);
        return;
    }

    if (*slot != NULL) {
        return;                         /* its tokens are valid still */
    }

    if (c->count == c->max_tenants || strlen(name) >= KN_CRED_NAME_MAX) {
        kn_log(c->log, KN_LOG_ERROR, "credentials: no kubeconfigs for "
               "tenant \"%s\": %s", name, c->count == c->max_tenants
               ? "too many tenants" : "the name is too long");
        return;
    }

    t = calloc(1, sizeof(kn_cred_tenant_t));
    if (t == NULL) {
        kn_log(c->log, KN_LOG_ERROR, "credentials: out of memory");
        return;
    }

    t->creds = c;
    strcpy(t->name, name);
    *slot = t;
    c->count++;

    for (i = 0; i < KN_CRED_ROLES; i++) {
        t->roles[i].tenant = t;
        t->roles[i].role = kn_cred_roles[i];
        kn_cred_schedule(&t->roles[i], 0);
    }
}


static kn_cred_tenant_t **
kn_cred_slot(kn_credentials_t *c, const char *name)
{
    uint32_t            h;
    const char         *p;
    kn_cred_tenant_t  **slot;

    h = 2166136261u;                    /* FNV-1a */
    for (p = name; *p; p++) {
        h = (h ^ (unsigned char) *p) * 16777619u;
    }

    for (slot = &c->buckets[h & (c->nbuckets - 1)]; *slot;
         slot = &(*slot)->next)
    {
        if (strcmp((*slot)->name, name) == 0) {
            break;
        }
    }

    return slot;
}


static void
kn_cred_tenant_free(kn_cred_tenant_t *t)
{
    size_t  i;

    for (i = 0; i < KN_CRED_ROLES; i++) {
        kn_kube_cancel(t->roles[i].req);
        kn_cred_forget(&t->roles[i]);
        kn_cred_wipe_token(&t->roles[i]);
    }

    free(t);
}


/* -- token requests, one timer for all ---------------------------------- */


static void
kn_cred_schedule(kn_cred_t *cr, uint64_t after_ms)
{
    kn_credentials_t  *c = cr->tenant->creds;

    cr->due = kn_loop_now(c->loop) + after_ms;
    cr->scheduled = 1;

    if (kn_timer_is_set(&c->tick) && c->tick.when <= cr->due) {
        return;
    }

    if (kn_timer_add(c->loop, &c->tick, after_ms) != KN_OK) {
        kn_log(c->log, KN_LOG_ERROR, "credentials: no timer: the tokens of "
               "tenant \"%s\" wait for the next renewal", cr->tenant->name);
    }
}


static void
kn_cred_tick(kn_timer_t *timer)
{
    kn_credentials_t  *c = timer->data;
    kn_cred_tenant_t  *t;
    kn_cred_t         *cr;
    uint64_t           now, next;
    size_t             i, r;

    now = kn_loop_now(c->loop);
    next = UINT64_MAX;

    for (i = 0; i < c->nbuckets; i++) {
        for (t = c->buckets[i]; t; t = t->next) {
            for (r = 0; r < KN_CRED_ROLES; r++) {
                cr = &t->roles[r];

                if (cr->scheduled && cr->due <= now) {
                    cr->scheduled = 0;
                    kn_cred_request(cr);
                }

                /* a failed submission is due again later */
                if (cr->scheduled && cr->due < next) {
                    next = cr->due;
                }
            }
        }
    }

    if (next != UINT64_MAX
        && kn_timer_add(c->loop, &c->tick, next - now) != KN_OK)
    {
        kn_log(c->log, KN_LOG_ERROR, "credentials: no timer: tokens are "
               "renewed when the next tenant arrives");
    }
}


static void
kn_cred_request(kn_cred_t *cr)
{
    char               ns[KN_CRED_NS_MAX];
    kn_rc              rc;
    json_t            *body;
    kn_kube_ref_t      ref;
    kn_credentials_t  *c = cr->tenant->creds;

    snprintf(ns, sizeof(ns), "%s-owner", cr->tenant->name);

    memset(&ref, 0, sizeof(ref));
    ref.api_version = "v1";
    ref.resource = "serviceaccounts";
    ref.namespace = ns;
    ref.name = cr->role;
    ref.subresource = "token";

    body = json_pack("{s:s, s:s, s:{s:I}}",
                     "apiVersion", "authentication.k8s.io/v1",
                     "kind", "TokenRequest",
                     "spec", "expirationSeconds",
                     (json_int_t) (c->ttl_ms / 1000));

    rc = body ? kn_kube_post(c->kube, &ref, body, kn_cred_token_done, cr,
                             &cr->req)
              : KN_ERROR;
    json_decref(body);

    if (rc != KN_OK) {
        cr->req = NULL;
        kn_cred_failed(cr, rc == KN_AGAIN
                           ? "too many Kubernetes requests at once"
                           : "cannot submit the TokenRequest");
    }
}


static void
kn_cred_token_done(const kn_kube_result_t *res, void *data)
{
    kn_cred_t         *cr = data;
    kn_credentials_t  *c = cr->tenant->creds;
    json_t            *status;
    const char        *token, *expiry;
    char              *kc;
    size_t             len;
    time_t             now, expires;
    uint64_t           left_ms, before_ms, renew_ms;

    cr->req = NULL;

    if (res->error != NULL) {
        kn_cred_failed(cr, res->error);
        return;
    }

    status = json_object_get(res->body, "status");
    token = json_string_value(json_object_get(status, "token"));
    expiry = json_string_value(json_object_get(status,
                                               "expirationTimestamp"));

    if (token == NULL || token[0] == '\0') {
        kn_cred_failed(cr, "the TokenRequest answer has no token");
        return;
    }

    now = time(NULL);

    if (expiry == NULL || kn_cred_parse_time(expiry, &expires) != KN_OK) {
        /* the lifetime asked for: the token cannot live longer */
        kn_log(c->log, KN_LOG_WARN, "credentials: the TokenRequest answer "
               "for tenant \"%s\" has no valid expirationTimestamp; "
               "counting from the lifetime asked for", cr->tenant->name);
        expiry = "unknown";
        expires = now + (time_t) (c->ttl_ms / 1000);
    }

    kc = kn_cred_kubeconfig(c, cr->tenant->name, cr->role, token, &len);
    if (kc == NULL || kn_cred_keep_token(cr, token) != KN_OK) {
        if (kc != NULL) {
            explicit_bzero(kc, len);
            free(kc);
        }
        kn_cred_failed(cr, "out of memory for the kubeconfig");
        return;
    }

    kn_cred_forget(cr);
    cr->kubeconfig = kc;
    cr->len = len;
    cr->retry_ms = 0;

    left_ms = expires > now ? (uint64_t) (expires - now) * 1000 : 0;
    before_ms = c->renew_before_ms ? c->renew_before_ms : left_ms / 5;
    renew_ms = left_ms > before_ms + KN_CRED_RENEW_MIN_MS
               ? left_ms - before_ms : KN_CRED_RENEW_MIN_MS;

    kn_cred_schedule(cr, renew_ms);

    kn_log(c->log, KN_LOG_INFO, "credentials: the %s kubeconfig of tenant "
           "\"%s\" is issued: its token expires at %s, renewed in %" PRIu64
           " s", cr->role, cr->tenant->name, expiry, renew_ms / 1000);

    (void) kn_cred_send(cr);
}


static void
kn_cred_failed(kn_cred_t *cr, const char *why)
{
    kn_credentials_t  *c = cr->tenant->creds;

    if (cr->retry_ms == 0) {
        cr->retry_ms = KN_CRED_RETRY_MIN_MS;
    }

    kn_log(c->log, KN_LOG_WARN, "credentials: cannot issue the %s token of "
           "tenant \"%s\": %s; trying again in %" PRIu64 " ms", cr->role,
           cr->tenant->name, why, cr->retry_ms);

    kn_cred_schedule(cr, cr->retry_ms);

    cr->retry_ms *= 2;
    if (cr->retry_ms > KN_CRED_RETRY_MAX_MS) {
        cr->retry_ms = KN_CRED_RETRY_MAX_MS;
    }
}


/* -- to the Manager ----------------------------------------------------- */


static kn_rc
kn_cred_send(kn_cred_t *cr)
{
    kn_rc              rc;
    kn_credentials_t  *c = cr->tenant->creds;

    rc = kn_grpc_send_kubeconfig(c->grpc, cr->tenant->name, cr->role,
                                 (const uint8_t *) cr->kubeconfig, cr->len);

    switch (rc) {

    case KN_OK:
        cr->queued = 1;
        cr->unacked++;
        break;

    case KN_DECLINED:
        /* not connected: kn_credentials_connected() sends it */
        break;

    case KN_AGAIN:
        if (!kn_timer_is_set(&c->resend)) {
            (void) kn_timer_add(c->loop, &c->resend, KN_CRED_RESEND_MS);
        }
        break;

    default:
        kn_log(c->log, KN_LOG_ERROR, "credentials: the %s kubeconfig of "
               "tenant \"%s\" (%zu bytes) is larger than a message to the "
               "Manager may be", cr->role, cr->tenant->name, cr->len);
        kn_cred_forget(cr);
        break;
    }

    return rc;
}


/* every kubeconfig not on the current stream yet, until one does not fit */

static void
kn_cred_send_pending(kn_credentials_t *c)
{
    kn_rc              rc;
    size_t             i, r;
    kn_cred_t         *cr;
    kn_cred_tenant_t  *t;

    for (i = 0; i < c->nbuckets; i++) {
        for (t = c->buckets[i]; t; t = t->next) {
            for (r = 0; r < KN_CRED_ROLES; r++) {
                cr = &t->roles[r];

                if (cr->kubeconfig == NULL || cr->queued) {
                    continue;
                }

                rc = kn_cred_send(cr);

                if (rc == KN_AGAIN || rc == KN_DECLINED) {
                    return;
                }
            }
        }
    }
}


static void
kn_cred_resend(kn_timer_t *timer)
{
    kn_cred_send_pending(timer->data);
}


void
kn_credentials_connected(kn_credentials_t *c)
{
    size_t             i, r, n;
    kn_cred_tenant_t  *t;

    /* what the last stream carried is lost or acked already */
    n = 0;

    for (i = 0; i < c->nbuckets; i++) {
        for (t = c->buckets[i]; t; t = t->next) {
            for (r = 0; r < KN_CRED_ROLES; r++) {
                t->roles[r].unacked = 0;
                t->roles[r].queued = 0;
                n += (t->roles[r].kubeconfig != NULL);
            }
        }
    }

    if (n > 0) {
        kn_log(c->log, KN_LOG_INFO, "credentials: %zu kubeconfig(s) the "
               "Manager has not acked go on the new stream", n);
        kn_cred_send_pending(c);
    }
}


/*
 * The Manager acks in the order it was sent: when the last kubeconfig sent
 * is acked and it is the newest, the Manager holds the newest.
 */

void
kn_credentials_acked(kn_credentials_t *c, const char *tenant,
    const char *role)
{
    size_t             r;
    kn_cred_t         *cr;
    kn_cred_tenant_t  *t;

    t = *kn_cred_slot(c, tenant);

    for (r = 0; t != NULL && r < KN_CRED_ROLES; r++) {
        if (strcmp(kn_cred_roles[r], role) == 0) {
            break;
        }
    }

    if (t == NULL || r == KN_CRED_ROLES || t->roles[r].unacked == 0) {
        kn_log(c->log, KN_LOG_DEBUG, "credentials: an ack of the %s "
               "kubeconfig of tenant \"%s\", which is not awaited", role,
               tenant);
        return;
    }

    cr = &t->roles[r];

    if (--cr->unacked == 0 && cr->queued) {
        kn_log(c->log, KN_LOG_DEBUG, "credentials: the Manager has the %s "
               "kubeconfig of tenant \"%s\"", role, tenant);
        kn_cred_forget(cr);
    }
}


/* the token of the tenant's role, for the kube proxy tunnel */

const char *
kn_credentials_token(kn_credentials_t *c, const char *tenant,
    const char *role)
{
    size_t             r;
    kn_cred_tenant_t  *t;

    t = *kn_cred_slot(c, tenant);

    for (r = 0; t != NULL && r < KN_CRED_ROLES; r++) {
        if (strcmp(kn_cred_roles[r], role) == 0) {
            return t->roles[r].token;
        }
    }

    return NULL;
}


static kn_rc
kn_cred_keep_token(kn_cred_t *cr, const char *token)
{
    char  *copy;

    copy = strdup(token);
    if (copy == NULL) {
        return KN_ERROR;
    }

    kn_cred_wipe_token(cr);
    cr->token = copy;

    return KN_OK;
}


static void
kn_cred_wipe_token(kn_cred_t *cr)
{
    if (cr->token != NULL) {
        explicit_bzero(cr->token, strlen(cr->token));
        free(cr->token);
        cr->token = NULL;
    }
}


/* the kubeconfig holds a token: wiped before its memory is reused */

static void
kn_cred_forget(kn_cred_t *cr)
{
    if (cr->kubeconfig != NULL) {
        explicit_bzero(cr->kubeconfig, cr->len);
        free(cr->kubeconfig);
    }

    cr->kubeconfig = NULL;
    cr->len = 0;
    cr->queued = 0;
}


/* -- the kubeconfig ----------------------------------------------------- */


/*
 * YAML whose scalars are JSON strings (a JSON string is a YAML
 * double-quoted scalar), so no name or URL can break its structure.
 */

static char *
kn_cred_kubeconfig(kn_credentials_t *c, const char *tenant, const char *role,
    const char *token, size_t *len)
{
    int     n;
    char    buf[KN_CRED_NS_MAX + KN_APPLIER_NAME_MAX + 64];
    char   *user, *context, *ns, *tok, *kc;

    snprintf(buf, sizeof(buf), "%s-%s", tenant, role);
    user = kn_cred_quote(buf);
    snprintf(buf, sizeof(buf), "%s-%s@%s", tenant, role, c->cluster);
    context = kn_cred_quote(buf);
    snprintf(buf, sizeof(buf), "%s-apps", tenant);
    ns = kn_cred_quote(buf);
    tok = kn_cred_quote(token);
    kc = NULL;

    if (user == NULL || context == NULL || ns == NULL || tok == NULL) {
        goto done;
    }

#define KN_CRED_KUBECONFIG_ARGS                                              \
    c->cluster_quoted, c->server_quoted, c->ca_line, user, tok, context,     \
    c->cluster_quoted, user, ns, context

#define KN_CRED_KUBECONFIG_FORMAT                                            \
    "apiVersion: v1\n"                                                       \
    "kind: Config\n"                                                         \
    "clusters:\n"                                                            \
    "- name: %s\n"                                                           \
    "  cluster:\n"                                                           \
    "    server: %s\n"                                                       \
    "%s"                                                                     \
    "users:\n"                                                               \
    "- name: %s\n"                                                           \
    "  user:\n"                                                              \
    "    token: %s\n"                                                        \
    "contexts:\n"                                                            \
    "- name: %s\n"                                                           \
    "  context:\n"                                                           \
    "    cluster: %s\n"                                                      \
    "    user: %s\n"                                                         \
    "    namespace: %s\n"                                                    \
    "current-context: %s\n"

    n = snprintf(NULL, 0, KN_CRED_KUBECONFIG_FORMAT,
                 KN_CRED_KUBECONFIG_ARGS);

    if (n > 0 && (kc = malloc((size_t) n + 1)) != NULL) {
        snprintf(kc, (size_t) n + 1, KN_CRED_KUBECONFIG_FORMAT,
                 KN_CRED_KUBECONFIG_ARGS);
        *len = (size_t) n;
    }

#undef KN_CRED_KUBECONFIG_FORMAT
#undef KN_CRED_KUBECONFIG_ARGS

done:

    if (tok != NULL) {
        explicit_bzero(tok, strlen(tok));
    }

    free(user);
    free(context);
    free(ns);
    free(tok);

    return kc;
}


/* a malloc'd JSON string (ASCII, escaped), or NULL */

static char *
kn_cred_quote(const char *s)
{
    char    *q;
    json_t  *v;

    v = json_string(s);
    if (v == NULL) {
        return NULL;
    }

    q = json_dumps(v, JSON_ENCODE_ANY | JSON_ENSURE_ASCII);
    json_decref(v);

    return q;
}


/* RFC 3339 in UTC, as Kubernetes writes it: 2006-01-02T15:04:05Z */

static kn_rc
kn_cred_parse_time(const char *s, time_t *t)
{
    int        n;
    struct tm  tm;

    memset(&tm, 0, sizeof(tm));
    n = 0;

    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2dZ%n", &tm.tm_year, &tm.tm_mon,
               &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6
        || n == 0 || s[n] != '\0')
    {
        return KN_ERROR;
    }

    tm.tm_year -= 1900;
    tm.tm_mon -= 1;

    *t = timegm(&tm);

    return *t == (time_t) -1 ? KN_ERROR : KN_OK;
}
