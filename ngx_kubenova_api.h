/*
 * The REST API (see docs/api-design.md).
 */

#ifndef _NGX_KUBENOVA_API_H_INCLUDED_
#define _NGX_KUBENOVA_API_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


ngx_int_t ngx_kubenova_api_handler(ngx_http_request_t *r);

/* WWW-Authenticate for a 401; presented: a token was sent but is no good */
ngx_int_t ngx_kubenova_api_unauthorized_header(ngx_http_request_t *r,
    ngx_uint_t presented);


#endif /* _NGX_KUBENOVA_API_H_INCLUDED_ */
