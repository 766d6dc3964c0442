/*
 * JSON responses (see the header).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_kubenova_json.h"


static ngx_str_t  ngx_kubenova_json_type = ngx_string("application/json");


ngx_int_t
ngx_kubenova_json_send(ngx_http_request_t *r, ngx_uint_t status, json_t *json)
{
    u_char  *p;
    size_t   len;

    if (json == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = json_dumpb(json, NULL, 0, JSON_COMPACT);

    p = ngx_pnalloc(r->pool, len + 1);
    if (p == NULL) {
        json_decref(json);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = json_dumpb(json, (char *) p, len, JSON_COMPACT);
    json_decref(json);

    p[len++] = '\n';

    return ngx_kubenova_send_body(r, status, &ngx_kubenova_json_type, p, len);
}


ngx_int_t
ngx_kubenova_json_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message)
{
    json_t  *json;

    json = json_pack("{s:{s:i,s:s,s:s}}", "error",
                     "status", (int) status, "code", code,
                     "message", message);

    return ngx_kubenova_json_send(r, status, json);
}


ngx_int_t
ngx_kubenova_send_body(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *content_type, u_char *data, size_t len)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    r->headers_out.status = status;
    r->headers_out.content_type = *content_type;
    r->headers_out.content_type_len = content_type->len;
    r->headers_out.content_length_n = len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = data;
    b->last = data + len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


ngx_int_t
ngx_kubenova_add_header(ngx_http_request_t *r, ngx_list_t *list,
    const char *name, u_char *value, size_t len)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(list);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);

    h->value.data = ngx_pnalloc(r->pool, len);
    if (h->value.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(h->value.data, value, len);
    h->value.len = len;

    return NGX_OK;
}
