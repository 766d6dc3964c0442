/*
 * The Operator gateway: the Manager <-> Operator protocol of
 * proto/kubenova.proto on top of ngx_kubenova_grpc.c, one stream per
 * cluster, fed by the database (the gateway schema, sql/functions/90_*).
 */

#ifndef _NGX_KUBENOVA_GATEWAY_H_INCLUDED_
#define _NGX_KUBENOVA_GATEWAY_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <protobuf-c/protobuf-c.h>

#include "ngx_kubenova_pg.h"


typedef struct ngx_kubenova_gateway_s    ngx_kubenova_gateway_t;
typedef struct ngx_kubenova_gw_stream_s  ngx_kubenova_gw_stream_t;


/* per worker, after fork: the stream registry and the LISTEN connection */
ngx_kubenova_gateway_t *ngx_kubenova_gateway_create(ngx_cycle_t *cycle,
    ngx_kubenova_pg_pool_t *pool);

ngx_int_t ngx_kubenova_gateway_handler(ngx_http_request_t *r);

/*
 * For the kube proxy (ngx_kubenova_kube_proxy.c), whose tunnels ride on the
 * streams: the cluster's live stream on this worker, or NULL.
 */
ngx_kubenova_gw_stream_t *ngx_kubenova_gateway_stream(
    ngx_kubenova_gateway_t *gw, ngx_str_t *cluster);

/* NGX_OK, or NGX_ERROR: the stream is ending (its tunnels are told apart) */
ngx_int_t ngx_kubenova_gateway_send(ngx_kubenova_gw_stream_t *s,
    const ProtobufCMessage *msg);

/* bytes sent on the stream that the Operator has not taken yet */
size_t ngx_kubenova_gateway_pending(ngx_kubenova_gw_stream_t *s);

/* the kube proxy's per-stream state (its tunnels); NULL at first */
void **ngx_kubenova_gateway_tunnels(ngx_kubenova_gw_stream_t *s);


#endif /* _NGX_KUBENOVA_GATEWAY_H_INCLUDED_ */
