/*
 * The Operator's half of the tenant-scoped kube proxy (issue 9): Kubernetes
 * API requests that a tenant's kubectl sent to the Manager arrive on the
 * stream as TunnelRequest (+ TunnelData of its body) and are performed
 * against this cluster's API server; the answer goes back as
 * TunnelResponse and TunnelData as it arrives, so watches stream.
 *
 * Identity: the tenant's own ServiceAccount (<role> in <tenant>-owner),
 * with the token kn_credentials mints for the tenant's kubeconfigs; never
 * the Operator's privileges.  Whatever identity headers reach us are
 * dropped again.  The reads RBAC cannot narrow (namespaces, pods of all
 * namespaces, cluster-scoped lists) are read as the Operator and filtered
 * (kn_tunnel_filter.c); which cluster-scoped lists a tenant sees is its
 * spec's cluster_resources.  Why: docs/adr/0004-kube-proxy-identity.md.
 *
 * Each request is one libcurl easy handle (HTTP/1.1) in the one multi
 * (kn_loop).  Flow control is per request and per direction
 * (proto/kubenova.proto): the response is sent in chunks while the
 * Manager's window lasts; when it is spent, or the stream's send queue is
 * half full (the other half is for the rest of the Operator), that
 * transfer alone is paused (CURL_WRITEFUNC_PAUSE) until TunnelWindow
 * grants more.  A request body is buffered up to the 64 KiB window and the
 * window is granted again as the API server reads it.  TunnelCancel (or
 * the stream ending) aborts the transfer.  At most max_requests run at
 * once; past it a request is answered 503 at once.  The filtered lists,
 * held whole, share one budget of max_buffer bytes.
 */

#ifndef KN_TUNNEL_H
#define KN_TUNNEL_H


#include "kn_core.h"
#include "kn_credentials.h"
#include "kn_grpc.h"
#include "kn_kube.h"
#include "kn_log.h"
#include "kn_loop.h"
#include "kn_tenant.h"


typedef struct kn_tunnel_s  kn_tunnel_t;


typedef struct {
    size_t   max_requests;          /* at once; past it: 503 */
    size_t   max_buffer;            /* held by the responses filtered
                                       (pods of all namespaces), all of
                                       them together */
    size_t   max_message;           /* to the Manager (at least 1024) */
} kn_tunnel_conf_t;


/* tenants: their specs say which cluster-scoped lists they may see */
kn_rc kn_tunnel_create(kn_loop_t *loop, const kn_log_t *log,
    kn_kube_t *kube, kn_credentials_t *creds, kn_tenant_t *tenants,
    kn_grpc_t *grpc, const kn_tunnel_conf_t *conf, kn_tunnel_t **out);
/* aborts every request, telling no one; before kn_kube_destroy() */
void kn_tunnel_destroy(kn_tunnel_t *tun);

/* a Tunnel* message from the Manager (the kn_grpc handler) */
void kn_tunnel_message(kn_tunnel_t *tun,
    const Kubenova__V1__ManagerMessage *m);

/* the stream ended: every request is abandoned */
void kn_tunnel_disconnected(kn_tunnel_t *tun);


#endif /* KN_TUNNEL_H */
