/*
 * The gRPC client of OperatorGateway/Connect: one long-lived bidirectional
 * stream to the Manager over libcurl HTTP/2, driven by the event loop.
 *
 * On every (re)connect the first message is a Hello whose applied list the
 * caller fills (handlers->applied, with kn_grpc_hello_add()); the Manager
 * answers a Welcome and what differs, then streams changes.  The caller
 * gets each message through its handlers and acks with kn_grpc_ack().
 * Heartbeats go out every heartbeat interval; a Manager silent for three
 * of its heartbeat intervals is dead and the stream is dropped.  A stream
 * that ends, however it ends, is retried after a delay drawn uniformly
 * from [0, min(reconnect-max, reconnect-min * 2^attempt)] (full jitter);
 * the attempt count starts again after a stream that stayed up.
 *
 * Everything is bounded: messages either way by max_message, the send
 * queue by a count and a byte total.  A send that does not fit answers
 * KN_AGAIN; an ack that does not fit drops the stream instead, since the
 * next hello tells the Manager everything the acks would have.
 */

#ifndef KN_GRPC_H
#define KN_GRPC_H


#include "kn_core.h"
#include "kn_log.h"
#include "kn_loop.h"
#include "kubenova.pb-c.h"


/* gRPC status codes */
#define KN_GRPC_OK                   0
#define KN_GRPC_CANCELLED            1
#define KN_GRPC_UNKNOWN              2
#define KN_GRPC_INVALID_ARGUMENT     3
#define KN_GRPC_DEADLINE_EXCEEDED    4
#define KN_GRPC_NOT_FOUND            5
#define KN_GRPC_ALREADY_EXISTS       6
#define KN_GRPC_PERMISSION_DENIED    7
#define KN_GRPC_RESOURCE_EXHAUSTED   8
#define KN_GRPC_FAILED_PRECONDITION  9
#define KN_GRPC_ABORTED              10
#define KN_GRPC_OUT_OF_RANGE         11
#define KN_GRPC_UNIMPLEMENTED        12
#define KN_GRPC_INTERNAL             13
#define KN_GRPC_UNAVAILABLE          14
#define KN_GRPC_DATA_LOSS            15
#define KN_GRPC_UNAUTHENTICATED      16


typedef struct kn_grpc_s        kn_grpc_t;
typedef struct kn_grpc_hello_s  kn_grpc_hello_t;


typedef struct {
    /* fill the applied list of the hello about to be sent */
    kn_rc  (*applied)(void *data, kn_grpc_hello_t *hello);

    void   (*welcome)(void *data, const Kubenova__V1__Welcome *welcome);
    void   (*update)(void *data, const char *kind, const char *name,
               int64_t generation, const uint8_t *payload, size_t len);
    void   (*delete_)(void *data, const char *kind, const char *name,
               int64_t generation);
    void   (*usage_ack)(void *data, int64_t sequence);
    void   (*status_ack)(void *data, const char *tenant, const char *app,
               int64_t generation);
    void   (*kubeconfig_ack)(void *data, const char *tenant,
               const char *role);

    /* a stream that had been welcomed ended; a reconnect follows */
    void   (*disconnected)(void *data, const char *reason);

    /* after kn_grpc_stop() answered KN_AGAIN: the stream is closed */
    void   (*stopped)(void *data);

    /*
     * TunnelRequest, TunnelData, TunnelWindow, TunnelCancel (kn_tunnel);
     * called from inside libcurl: set state and timers only.
     */
    void   (*tunnel)(void *data, const Kubenova__V1__ManagerMessage *m);
    /* the answer to kn_grpc_send_certificate_request() (may be NULL) */
    void   (*certificate)(void *data,
               const Kubenova__V1__CertificateIssued *issued);

    /* a stream refused with UNAUTHENTICATED before its Welcome (may be
     * NULL): the Manager does not take this identity (any more) */
    void   (*unauthenticated)(void *data);
} kn_grpc_handlers_t;


typedef struct {
    const char  *manager_url;       /* http(s)://host:port, no path */
    const char  *ca_file;           /* or NULL */
    const char  *cluster;
    const char  *operator_version;

    uint64_t     heartbeat_ms;
    uint64_t     reconnect_min_ms;
    uint64_t     reconnect_max_ms;
    size_t       max_message;
    size_t       queue_messages;
    size_t       queue_bytes;
} kn_grpc_conf_t;


/* conf's strings must outlive the client */
kn_rc kn_grpc_create(kn_loop_t *loop, const kn_log_t *log,
    const kn_grpc_conf_t *conf, const kn_grpc_handlers_t *handlers,
    void *data, kn_grpc_t **out);
void kn_grpc_destroy(kn_grpc_t *grpc);

/* connects now (the first attempt has no delay) */
kn_rc kn_grpc_start(kn_grpc_t *grpc);

/*
 * Half-closes the stream (after what is queued) and waits a little for the
 * Manager to end it.  KN_AGAIN: handlers->stopped will be called;
 * KN_DONE: there was no stream, nothing to wait for.
 */
kn_rc kn_grpc_stop(kn_grpc_t *grpc);

/* told by the Kubernetes side; goes in the next hello */
kn_rc kn_grpc_set_kubernetes_version(kn_grpc_t *grpc, const char *version);

/*
 * The client certificate and key (PEM) of the next connections: mTLS with
 * an https:// Manager.  Copied; the stream up now keeps the one it has.
 */
kn_rc kn_grpc_set_identity(kn_grpc_t *grpc, const char *cert_pem,
    size_t cert_len, const char *key_pem, size_t key_len);

/* welcomed by the Manager and not dropped since */
int kn_grpc_live(kn_grpc_t *grpc);

/* from handlers->applied: one object of the applied list */
kn_rc kn_grpc_hello_add(kn_grpc_hello_t *hello, const char *kind,
    const char *name, int64_t generation);

/*
 * Messages to the Manager.  KN_OK: queued; KN_DECLINED: no live stream
 * (the next hello carries the state); KN_AGAIN: the send queue is full;
 * KN_ERROR: the message is larger than max_message.
 */
kn_rc kn_grpc_ack(kn_grpc_t *grpc, const char *kind, const char *name,
    int64_t generation, int ok, const char *error);
kn_rc kn_grpc_send_usage(kn_grpc_t *grpc,
    const Kubenova__V1__UsageReport *report);
kn_rc kn_grpc_send_app_status(kn_grpc_t *grpc,
    const Kubenova__V1__ApplicationStatus *status);
kn_rc kn_grpc_send_components(kn_grpc_t *grpc,
    const Kubenova__V1__ComponentStatus *status);
kn_rc kn_grpc_send_kubeconfig(kn_grpc_t *grpc, const char *tenant,
    const char *role, const uint8_t *kubeconfig, size_t len);

/*
 * TunnelResponse, TunnelData, TunnelWindow or TunnelCancel in m; KN_AGAIN
 * already when the queue is half full, so that the rest always fits.
 */
kn_rc kn_grpc_send_tunnel(kn_grpc_t *grpc,
    const Kubenova__V1__OperatorMessage *m);
/* a CSR for renewing the identity; the answer goes to handlers->certificate */
kn_rc kn_grpc_send_certificate_request(kn_grpc_t *grpc, const char *csr_pem,
    size_t len);

const char *kn_grpc_status_name(int status);


#endif /* KN_GRPC_H */
