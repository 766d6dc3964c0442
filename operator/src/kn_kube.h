/*
 * A thin Kubernetes REST client: libcurl easy handles on the Operator's one
 * curl multi handle (kn_loop), JSON through jansson.  Not the generated
 * kubernetes-client/c.
 *
 *   server-side apply   PATCH application/apply-patch+yaml (JSON is YAML),
 *                       ?fieldManager=kubenova-operator&force=true
 *   get, post (create, subresources such as serviceaccounts/x/token),
 *   delete (propagationPolicy), list (limit/continue, pages followed and
 *   gathered, or handed over one by one), any request, and a streaming
 *   request for kn_watch.
 *
 * Submitting a request answers a kn_rc at once (KN_ERROR: invalid, logged;
 * KN_AGAIN: max_requests are live, retry later).  A request accepted with
 * KN_OK ends in exactly one call of its done callback, from the loop
 * (never from inside the submitting call), with a kn_kube_result_t that
 * says what happened, errors included.
 * Requests pass a token bucket (qps/burst) before they reach the network,
 * are retried after Retry-After on 429 and 503, have connect and total
 * timeouts, and buffer at most max_response bytes of a response.
 *
 * Authentication: client certificate, a fixed bearer token, or a token file
 * (kubeconfig tokenFile, the in-cluster service-account token) re-read every
 * token_reread_ms, and at once after a 401, so rotation works.
 */

#ifndef KN_KUBE_H
#define KN_KUBE_H

#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>
#include <jansson.h>

#include "kn_core.h"
#include "kn_kubeconfig.h"
#include "kn_log.h"
#include "kn_loop.h"


#define KN_KUBE_FIELD_MANAGER  "kubenova-operator"

typedef struct kn_kube_s      kn_kube_t;
typedef struct kn_kube_req_s  kn_kube_req_t;


/* a zero field takes the default */
typedef struct {
    double    qps;                  /* token bucket refill; default 20 */
    unsigned  burst;                /* bucket size; default 40 */
    unsigned  max_requests;         /* live (queued, running, waiting to be
                                       retried); default 10000 */
    long      connect_timeout_ms;   /* default 10000 */
    long      timeout_ms;           /* whole request; default 60000 */
    size_t    max_response;         /* bytes buffered; default 32 MiB */
    unsigned  max_retries;          /* on 429/503; default 5 */
    unsigned  max_retry_after_s;    /* a longer Retry-After is capped; 60 */
    unsigned  token_reread_ms;      /* token file re-read; default 60000 */
    unsigned  list_page_size;       /* list limit; default 500 */
    size_t    max_list_items;       /* gathered by kn_kube_list; 1000000 */
    const char *user_agent;         /* "kubenova-operator/VERSION" */
} kn_kube_options_t;


/*
 * What a request is about.  The path is
 *   /api/v1[/namespaces/NS]/RESOURCE[/NAME[/SUBRESOURCE]]     (core)
 *   /apis/GROUP/VERSION[/namespaces/NS]/RESOURCE[/NAME[/SUB]] (groups)
 */
typedef struct {
    const char  *api_version;       /* "v1", "apps/v1",
                                       "kubenova.io/v1alpha1" */
    const char  *resource;          /* plural: "configmaps" */
    const char  *namespace;         /* NULL: cluster-scoped or all namespaces */
    const char  *name;              /* NULL: the collection */
    const char  *subresource;       /* NULL, "status", "token", … */
} kn_kube_ref_t;


typedef struct {
    long         status;            /* HTTP status; 0: no response */
    json_t      *body;              /* parsed body (borrowed) or NULL */
    const char  *error;             /* NULL on 2xx; else what went wrong,
                                       e.g. "HTTP 404 NotFound: configmaps
                                       \"x\" not found" */
    const char  *reason;            /* Status.reason ("NotFound",
                                       "Expired", "Gone"…) or NULL */
    unsigned     attempts;          /* requests sent (retries + 1) */
    unsigned     pages;             /* kn_kube_list: pages fetched */
} kn_kube_result_t;

/* Called once per request; the request handle is gone when it returns. */
typedef void (*kn_kube_done_pt)(const kn_kube_result_t *res, void *data);

/*
 * Body bytes of a 2xx streaming response as they arrive.  It runs inside
 * libcurl's write callback, so it must not call libcurl or anything that
 * may (no other kn_kube call but a kn_kube_cancel() of this very request,
 * which takes effect when it returns): queue the data and act from a timer.
 * Return KN_OK when the bytes are consumed; KN_AGAIN to pause the transfer
 * without consuming them (they are offered again after kn_kube_resume());
 * KN_ERROR to abort it (done then reports "aborted by the receiver").
 */
typedef kn_rc (*kn_kube_stream_pt)(const char *p, size_t len, void *data);


/*
 * kn_kube_list with a page receiver: each page's items (borrowed, an
 * array) go to it as they arrive instead of being gathered, so memory
 * holds one page whatever the list's length; done then gets a List with
 * no items.  KN_OK goes on; anything else ends the list (done reports
 * "stopped by the page receiver").  A continue token that expires (410)
 * ends the list with that error instead of starting over: what earlier
 * pages gave cannot be taken back, the caller starts again.
 */
typedef kn_rc (*kn_kube_page_pt)(json_t *items, void *data);


typedef struct {
    const char      *label_selector;    /* or NULL */
    const char      *field_selector;    /* or NULL */
    unsigned         limit;         /* page size; 0: options.list_page_size */
    kn_kube_page_pt  page;          /* or NULL: the items are gathered */
} kn_kube_list_opts_t;


/*
 * options: NULL for the defaults (zero fields take defaults too); cfg is
 * copied.  KN_ERROR when cfg is unusable (logged).
 */
kn_rc kn_kube_create(kn_loop_t *loop, const kn_log_t *log,
    const kn_kubeconfig_t *cfg, const kn_kube_options_t *options,
    kn_kube_t **kube);
/* Cancels every request without calling its callback; not from a callback. */
void kn_kube_destroy(kn_kube_t *kube);

kn_loop_t *kn_kube_loop(kn_kube_t *kube);
const kn_kube_options_t *kn_kube_options(kn_kube_t *kube);
/* the configured default namespace (context or pod), or NULL */
const char *kn_kube_namespace(kn_kube_t *kube);

/*
 * For transfers of its own on the same API server (the kube proxy
 * tunnel): the server URL; the TLS settings of the Operator's requests on
 * easy (the CA, or insecure; with client_cert, the Operator's client
 * certificate as well); the Operator's bearer token, or NULL (none, or
 * err says why it cannot be read).  The token is valid until the next
 * call into kn_kube.
 */
const char *kn_kube_server(kn_kube_t *kube);
void kn_kube_easy_tls(kn_kube_t *kube, CURL *easy, int client_cert);
const char *kn_kube_operator_token(kn_kube_t *kube, char *err,
    size_t err_size);

/* appends "Authorization: Bearer <token>" to headers (not empty) */
kn_rc kn_kube_bearer_header(struct curl_slist *headers, const char *token);

/*
 * The requests.  req (may be NULL) receives a handle for kn_kube_cancel(),
 * valid until done is called.
 */
kn_rc kn_kube_get(kn_kube_t *kube, const kn_kube_ref_t *ref,
    kn_kube_done_pt done, void *data, kn_kube_req_t **req);

/*
 * Server-side apply of obj.  Fields of ref left NULL are taken from obj
 * (apiVersion, metadata.namespace, metadata.name); resource is required.
 */
kn_rc kn_kube_apply(kn_kube_t *kube, const kn_kube_ref_t *ref,
    json_t *obj, kn_kube_done_pt done, void *data, kn_kube_req_t **req);

/* POST obj to ref (a collection, or a subresource such as token). */
kn_rc kn_kube_post(kn_kube_t *kube, const kn_kube_ref_t *ref,
    json_t *obj, kn_kube_done_pt done, void *data, kn_kube_req_t **req);

/* propagation: "Foreground", "Background", "Orphan", or NULL (default) */
kn_rc kn_kube_delete(kn_kube_t *kube, const kn_kube_ref_t *ref,
    const char *propagation, kn_kube_done_pt done, void *data,
    kn_kube_req_t **req);

/*
 * Lists every page (limit/continue) and hands done one List object:
 * {"kind": "…List", "metadata": {"resourceVersion": …}, "items": [...]}
 * with res->pages set.  A continue token that expired (410) restarts the
 * list from the first page (a consistent snapshot or nothing).
 */
kn_rc kn_kube_list(kn_kube_t *kube, const kn_kube_ref_t *ref,
    const kn_kube_list_opts_t *opts, kn_kube_done_pt done, void *data,
    kn_kube_req_t **req);

/*
 * Any method and path ("/api/v1/…?query").  body may be NULL; content_type
 * NULL means application/json.
 */
kn_rc kn_kube_request(kn_kube_t *kube, const char *method,
    const char *path, const char *content_type, json_t *body,
    kn_kube_done_pt done, void *data, kn_kube_req_t **req);

/*
 * A long-lived GET whose 2xx body goes to stream as it arrives instead of
 * being buffered (watches).  timeout_ms: 0 for none.  A non-2xx response
 * is buffered and reported to done as usual.
 */
kn_rc kn_kube_stream(kn_kube_t *kube, const char *path,
    long timeout_ms, kn_kube_stream_pt stream, kn_kube_done_pt done,
    void *data, kn_kube_req_t **req);

/* Drops a request; its callback is not called.  NULL is ignored. */
void kn_kube_cancel(kn_kube_req_t *req);

/* Resumes a stream paused by its callback (KN_AGAIN); not from a callback
 * of libcurl.  KN_DECLINED when it is not paused. */
kn_rc kn_kube_resume(kn_kube_req_t *req);

/*
 * Writes the path of ref (no query) into buf.  Names and namespaces are
 * checked (a path segment: not empty, ".", "..", no "/", "%" or control
 * characters); KN_ERROR when invalid or too long.
 */
kn_rc kn_kube_path(const kn_kube_ref_t *ref, char *buf, size_t size);

/* obj's status.conditions has one of type with status "True" */
int kn_kube_condition_true(json_t *obj, const char *type);

/* Counters, for tests and metrics. */
typedef struct {
    uint64_t  requests;             /* sent to the network */
    uint64_t  retries;              /* after 429/503 */
    uint64_t  throttled;            /* waited for a rate-limit token */
    uint64_t  token_reads;          /* token file (re-)reads */
    uint64_t  live;                 /* requests now live */
} kn_kube_stats_t;

void kn_kube_get_stats(kn_kube_t *kube, kn_kube_stats_t *stats);

#endif /* KN_KUBE_H */
