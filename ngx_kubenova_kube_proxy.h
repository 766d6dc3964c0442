/*
 * The tenant-scoped Kubernetes API proxy at the Manager's edge:
 * /k8s/clusters/{cluster}/<kube path> is authenticated here (a tenant
 * user's KubeNova token, mapped to its tenant and role) and relayed as
 * tunnel messages (proto/kubenova.proto, TunnelRequest ...) over the
 * cluster's Operator stream; the answer streams back as it arrives.  Every
 * request has its own byte windows both ways, so a slow kubectl stalls only
 * its own request, and the memory a request holds is bounded by them.
 */

#ifndef _NGX_KUBENOVA_KUBE_PROXY_H_INCLUDED_
#define _NGX_KUBENOVA_KUBE_PROXY_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_kubenova_gateway.h"
#include "kubenova.pb-c.h"


/* rewrite phase: authenticates, so that $kubenova_tenant is known early */
ngx_int_t ngx_kubenova_kube_proxy_auth_phase(ngx_http_request_t *r);

/* content handler of "kubenova_kube_proxy" */
ngx_int_t ngx_kubenova_kube_proxy_handler(ngx_http_request_t *r);

/* GET /tenants/{t}/kubeconfig, via=proxy: the YAML around the database's
 * answer ({tenant, cluster, role, token}) */
ngx_int_t ngx_kubenova_kube_proxy_kubeconfig(ngx_http_request_t *r,
    const char *body, size_t len);

/* either kind of kubeconfig: the YAML as an attachment, never cached */
ngx_int_t ngx_kubenova_kubeconfig_send(ngx_http_request_t *r,
    const char *tenant, const char *cluster, const char *role, u_char *yaml,
    size_t len);


/* "kubenova_kube_proxy_ca_file": read at configuration time */
char *ngx_kubenova_kube_proxy_ca_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


/* the gateway's hooks; tunnels is the stream's slot for this file's state */

ngx_uint_t ngx_kubenova_kube_proxy_is_tunnel(
    Kubenova__V1__OperatorMessage *m);

/* NGX_OK; the message stays the caller's */
ngx_int_t ngx_kubenova_kube_proxy_message(void **tunnels,
    Kubenova__V1__OperatorMessage *m);

/* the cluster's stream is live on this worker */
ngx_int_t ngx_kubenova_kube_proxy_stream_up(void **tunnels,
    ngx_kubenova_gw_stream_t *s, ngx_str_t *cluster);

/* the stream ends: each of its requests fails (503, or cut short) */
void ngx_kubenova_kube_proxy_stream_gone(void **tunnels);


#endif /* _NGX_KUBENOVA_KUBE_PROXY_H_INCLUDED_ */
