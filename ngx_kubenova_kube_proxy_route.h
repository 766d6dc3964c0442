/*
 * Which worker holds a cluster's Operator stream, and how a kube proxy
 * request that lands on another worker reaches it (docs/adr/0005): a
 * shared-memory registry cluster -> owner pid, and one unix socket per
 * worker, created and accepted by that worker only, on which the kube
 * proxy's own server configuration answers.  A worker without the stream
 * relays the request there with nginx's proxy module (the named location
 * @kubenova_kube_proxy_forward, proxy_pass to $kubenova_kube_proxy_owner).
 * Between Manager nodes the same way: the owner node registers its URL
 * (kubenova_kube_proxy_node_url) in PostgreSQL, kube_proxy_routes.
 */

#ifndef _NGX_KUBENOVA_KUBE_PROXY_ROUTE_H_INCLUDED_
#define _NGX_KUBENOVA_KUBE_PROXY_ROUTE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/* configuration: the registry's zone and the server the sockets answer as */
ngx_int_t ngx_kubenova_kp_route_conf(ngx_conf_t *cf);
ngx_int_t ngx_kubenova_kp_route_variable(ngx_conf_t *cf);

/* per worker: its forwarding socket, opened and closed */
ngx_int_t ngx_kubenova_kp_route_init_process(ngx_cycle_t *cycle);
void ngx_kubenova_kp_route_exit_process(ngx_cycle_t *cycle);

/* the stream of cluster is (no longer) on this worker */
void ngx_kubenova_kp_route_set(ngx_str_t *cluster);
void ngx_kubenova_kp_route_unset(ngx_str_t *cluster);

/*
 * For a request whose cluster has no stream here: NGX_DONE (relayed to the
 * owner worker, or to node_url, the node the database names), or
 * NGX_DECLINED (nobody has it, or the request was relayed already, or
 * relaying is not configured).
 */
ngx_int_t ngx_kubenova_kp_route_forward(ngx_http_request_t *r,
    ngx_str_t *cluster, ngx_str_t *node_url);


#endif /* _NGX_KUBENOVA_KUBE_PROXY_ROUTE_H_INCLUDED_ */
