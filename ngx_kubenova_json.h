/*
 * JSON responses: every KubeNova answer, errors included, is a JSON document
 * built with jansson.  Errors look like
 *   {"error": {"status": 503, "code": "database_unavailable",
 *              "message": "the database is unavailable"}}
 */

#ifndef _NGX_KUBENOVA_JSON_H_INCLUDED_
#define _NGX_KUBENOVA_JSON_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <jansson.h>


/* sends json (and releases it); returns what the content handler returns */
ngx_int_t ngx_kubenova_json_send(ngx_http_request_t *r, ngx_uint_t status,
    json_t *json);

ngx_int_t ngx_kubenova_json_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message);

/* one header or trailer line (list); the value is copied to the pool */
ngx_int_t ngx_kubenova_add_header(ngx_http_request_t *r, ngx_list_t *list,
    const char *name, u_char *value, size_t len);

/* sends a body of any type; used by the JSON and text answers alike */
ngx_int_t ngx_kubenova_send_body(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *content_type, u_char *data, size_t len);


#endif /* _NGX_KUBENOVA_JSON_H_INCLUDED_ */
