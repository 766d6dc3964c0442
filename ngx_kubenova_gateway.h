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

#include "ngx_kubenova_pg.h"


typedef struct ngx_kubenova_gateway_s  ngx_kubenova_gateway_t;


/* per worker, after fork: the stream registry and the LISTEN connection */
ngx_kubenova_gateway_t *ngx_kubenova_gateway_create(ngx_cycle_t *cycle,
    ngx_kubenova_pg_pool_t *pool);

ngx_int_t ngx_kubenova_gateway_handler(ngx_http_request_t *r);


#endif /* _NGX_KUBENOVA_GATEWAY_H_INCLUDED_ */
