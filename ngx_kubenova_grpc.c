/*
 * gRPC over an HTTP/2 request inside nginx (see the header).
 *
 * Life of a stream: the content handler checks the request and starts an
 * unbuffered body read; once nginx has the request body under way, the
 * response headers go out and every DATA frame that arrives is appended to
 * a reassembly buffer, cut into messages and handed to the receiver, one
 * at a time.  While the receiver is busy, nothing more is read, so the
 * HTTP/2 window stays shut and the client waits.  finish() writes the
 * trailers and finalizes the request from a posted event, never from under
 * a caller's feet.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_kubenova_module.h"
#include "ngx_kubenova_grpc.h"
#include "ngx_kubenova_json.h"


#define NGX_KUBENOVA_GRPC_HEADER      5
#define NGX_KUBENOVA_GRPC_OUT_BUF     4096     /* idle streams keep one */
#define NGX_KUBENOVA_GRPC_IN_MIN      1024
#define NGX_KUBENOVA_GRPC_IN_KEEP     16384    /* kept while idle */


typedef struct {
    ProtobufCBuffer         base;
    ngx_kubenova_grpc_t    *grpc;
} ngx_kubenova_grpc_writer_t;


typedef struct {
    ngx_kubenova_grpc_t    *grpc;
    ngx_event_t             finalize;
} ngx_kubenova_grpc_ctx_t;


static ngx_int_t ngx_kubenova_grpc_check(ngx_http_request_t *r);
static void ngx_kubenova_grpc_body_ready(ngx_http_request_t *r);
static void ngx_kubenova_grpc_read_handler(ngx_http_request_t *r);
static void ngx_kubenova_grpc_write_handler(ngx_http_request_t *r);
static void ngx_kubenova_grpc_read(ngx_kubenova_grpc_t *g);
static ngx_int_t ngx_kubenova_grpc_take_body(ngx_kubenova_grpc_t *g);
static ngx_int_t ngx_kubenova_grpc_reserve(ngx_kubenova_grpc_t *g,
    size_t size);
static ngx_int_t ngx_kubenova_grpc_parse(ngx_kubenova_grpc_t *g);
static void ngx_kubenova_grpc_append(ProtobufCBuffer *buffer, size_t len,
    const uint8_t *data);
static ngx_int_t ngx_kubenova_grpc_flush(ngx_kubenova_grpc_t *g,
    ngx_chain_t *out);
static void ngx_kubenova_grpc_finalize_handler(ngx_event_t *ev);
static void ngx_kubenova_grpc_cleanup(void *data);


static ngx_str_t  ngx_kubenova_grpc_type = ngx_string("application/grpc");


ngx_int_t
ngx_kubenova_grpc_start(ngx_http_request_t *r,
    const ngx_kubenova_grpc_handlers_t *handlers, void *data,
    size_t max_message)
{
    ngx_int_t                 rc;
    ngx_http_cleanup_t       *cln;
    ngx_kubenova_grpc_t      *g;
    ngx_kubenova_grpc_ctx_t  *gctx;
    ngx_http_kubenova_ctx_t  *kctx;

    rc = ngx_kubenova_grpc_check(r);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    kctx = ngx_http_kubenova_get_ctx(r);
    g = ngx_pcalloc(r->pool, sizeof(ngx_kubenova_grpc_t));
    gctx = ngx_pcalloc(r->pool, sizeof(ngx_kubenova_grpc_ctx_t));

    if (kctx == NULL || g == NULL || gctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    g->request = r;
    g->handlers = handlers;
    g->data = data;
    g->max_message = max_message;

    gctx->grpc = g;
    gctx->finalize.handler = ngx_kubenova_grpc_finalize_handler;
    gctx->finalize.data = gctx;
    gctx->finalize.log = r->connection->log;
    kctx->grpc = gctx;

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_kubenova_grpc_cleanup;
    cln->data = gctx;

    r->request_body_no_buffering = 1;

    rc = ngx_http_read_client_request_body(r, ngx_kubenova_grpc_body_ready);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


/* NGX_DECLINED for a gRPC request, else the answer to anything else */

static ngx_int_t
ngx_kubenova_grpc_check(ngx_http_request_t *r)
{
    u_char     *p, *last;
    ngx_str_t  *ct;

#if (NGX_HTTP_V2)
    if (r->stream == NULL)
#endif
    {
        return ngx_kubenova_json_error(r, NGX_HTTP_VERSION_NOT_SUPPORTED,
                                       "http2_required",
                                       "the operator gateway speaks gRPC, "
                                       "which needs HTTP/2");
    }

    if (r->method != NGX_HTTP_POST) {
        return ngx_kubenova_json_error(r, NGX_HTTP_NOT_ALLOWED,
                                       "method_not_allowed",
                                       "gRPC calls are POST requests");
    }

    /* application/grpc, application/grpc+proto, application/grpc;... */

    if (r->headers_in.content_type) {
        ct = &r->headers_in.content_type->value;
        p = ct->data + ngx_kubenova_grpc_type.len;
        last = ct->data + ct->len;

        if (ct->len >= ngx_kubenova_grpc_type.len
            && ngx_strncasecmp(ct->data, ngx_kubenova_grpc_type.data,
                               ngx_kubenova_grpc_type.len) == 0
            && (p == last
                || (last - p == sizeof("+proto") - 1
                    && ngx_strncasecmp(p, (u_char *) "+proto",
                                       sizeof("+proto") - 1) == 0)
                || *p == ';'))
        {
            return NGX_DECLINED;
        }
    }

    return ngx_kubenova_json_error(r, NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                   "unsupported_media_type",
                                   "send content-type: application/grpc");
}


static ngx_kubenova_grpc_t *
ngx_kubenova_grpc_get(ngx_http_request_t *r)
{
    ngx_http_kubenova_ctx_t  *kctx;
    ngx_kubenova_grpc_ctx_t  *gctx;

    kctx = ngx_http_kubenova_get_ctx(r);
    gctx = kctx ? kctx->grpc : NULL;

    return gctx ? gctx->grpc : NULL;
}


static void
ngx_kubenova_grpc_body_ready(ngx_http_request_t *r)
{
    ngx_int_t             rc;
    ngx_kubenova_grpc_t  *g;

    g = ngx_kubenova_grpc_get(r);
    if (g == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    r->read_event_handler = ngx_kubenova_grpc_read_handler;
    r->write_event_handler = ngx_kubenova_grpc_write_handler;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_type = ngx_kubenova_grpc_type;
    r->headers_out.content_type_len = ngx_kubenova_grpc_type.len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.content_length_n = -1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        g->finished = 1;
        ngx_http_finalize_request(r, rc);
        return;
    }

    ngx_kubenova_grpc_read(g);
}


static void
ngx_kubenova_grpc_read_handler(ngx_http_request_t *r)
{
    ngx_kubenova_grpc_t  *g;

    g = ngx_kubenova_grpc_get(r);

    if (g && !g->finished) {
        ngx_kubenova_grpc_read(g);
    }
}


void
ngx_kubenova_grpc_resume(ngx_kubenova_grpc_t *g)
{
    ngx_connection_t  *c;

    if (!g->paused || g->finished) {
        return;
    }

    g->paused = 0;
    c = g->request->connection;

    ngx_kubenova_grpc_read(g);
    ngx_http_run_posted_requests(c);
}


/*
 * Parse what is buffered, then read more, until nginx has nothing more or
 * the receiver is busy.
 */

static void
ngx_kubenova_grpc_read(ngx_kubenova_grpc_t *g)
{
    ngx_int_t            rc;
    ngx_http_request_t  *r;

    r = g->request;

    for ( ;; ) {
        if (ngx_kubenova_grpc_parse(g) != NGX_OK) {
            return;                           /* busy or finished */
        }

        if (g->in_closed) {
            if (g->in_len) {
                ngx_kubenova_grpc_finish(g, NGX_KUBENOVA_GRPC_INTERNAL,
                                         "the stream ended inside a message");
                return;
            }

            ngx_kubenova_grpc_finish(g, NGX_KUBENOVA_GRPC_OK,
                                     "the client closed the stream");
            return;
        }

        if (!r->reading_body) {
            /* the whole body was there at once */
            rc = ngx_kubenova_grpc_take_body(g);
            g->in_closed = 1;

            if (rc != NGX_OK) {
                return;
            }

            continue;
        }

        rc = ngx_http_read_unbuffered_request_body(r);

        if (rc >= NGX_HTTP_SPECIAL_RESPONSE || rc == NGX_ERROR) {
            if (rc == NGX_HTTP_REQUEST_TIME_OUT) {
                ngx_kubenova_grpc_finish(g, NGX_KUBENOVA_GRPC_UNAVAILABLE,
                                         "nothing received within "
                                         "client_body_timeout");
                return;
            }

            /* the client reset the stream or broke the protocol */

            g->finished = 1;
            ngx_http_finalize_request(r, NGX_HTTP_CLIENT_CLOSED_REQUEST);
            return;
        }

        if (r->request_body->bufs == NULL && rc == NGX_AGAIN) {
            return;                           /* wait for DATA */
        }

        if (ngx_kubenova_grpc_take_body(g) != NGX_OK) {
            return;
        }

        if (rc == NGX_OK) {
            g->in_closed = 1;
        }
    }
}


/* moves what nginx read into the reassembly buffer, marking it consumed */

static ngx_int_t
ngx_kubenova_grpc_take_body(ngx_kubenova_grpc_t *g)
{
    size_t        size;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    if (g->request->request_body == NULL) {
        return NGX_OK;
    }

    for (cl = g->request->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;
        size = b->last - b->pos;

        if (size == 0) {
            continue;
        }

        if (ngx_kubenova_grpc_reserve(g, size) != NGX_OK) {
            return NGX_ERROR;
        }

        ngx_memcpy(g->in + g->in_len, b->pos, size);
        g->in_len += size;
        b->pos = b->last;
    }

    g->request->request_body->bufs = NULL;

    return NGX_OK;
}


static ngx_int_t
ngx_kubenova_grpc_reserve(ngx_kubenova_grpc_t *g, size_t size)
{
    u_char  *in;
    size_t   need, limit, new_size;

    need = g->in_len + size;

    if (need <= g->in_size) {
        return NGX_OK;
    }

    /*
     * One message at most plus what one read can bring: reading stops
     * while a message waits for its receiver.
     */

    limit = g->max_message + NGX_KUBENOVA_GRPC_HEADER
            + (size_t) ngx_max(NGX_KUBENOVA_GRPC_OUT_BUF, 65536);

    if (need > limit) {
        ngx_kubenova_grpc_finish(g, NGX_KUBENOVA_GRPC_RESOURCE_EXHAUSTED,
                                 "message larger than kubenova_grpc_max_message");
        return NGX_ERROR;
    }

    new_size = ngx_max(ngx_max(need, g->in_size * 2),
                       (size_t) NGX_KUBENOVA_GRPC_IN_MIN);
    new_size = ngx_min(new_size, limit);

    in = ngx_alloc(new_size, g->request->connection->log);
    if (in == NULL) {
        ngx_kubenova_grpc_finish(g, NGX_KUBENOVA_GRPC_RESOURCE_EXHAUSTED,
                                 "out of memory");
        return NGX_ERROR;
    }

    if (g->in) {
        ngx_memcpy(in, g->in, g->in_len);
        ngx_free(g->in);
    }

    g->in = in;
    g->in_size = new_size;

    return NGX_OK;
}


/* NGX_OK: wants more bytes; else busy or finished */

static ngx_int_t
ngx_kubenova_grpc_parse(ngx_kubenova_grpc_t *g)
{
    size_t     len, rest;
    ngx_int_t  rc;
    u_char     msg[128];

    for ( ;; ) {
        if (g->finished) {
            return NGX_DONE;
        }

        if (g->paused) {
            return NGX_AGAIN;
        }

        if (g->in_len < NGX_KUBENOVA_GRPC_HEADER) {
            break;
        }

        if (g->in[0] > 1) {
            ngx_kubenova_grpc_finish(g, NGX_KUBENOVA_GRPC_INTERNAL,
                                     "malformed gRPC message header");
            return NGX_DONE;
        }

        if (g->in[0] == 1) {
            ngx_kubenova_grpc_finish(g, NGX_KUBENOVA_GRPC_UNIMPLEMENTED,
                                     "compressed messages are not accepted");
            return NGX_DONE;
        }

        len = ((size_t) g->in[1] << 24) | ((size_t) g->in[2] << 16)
              | ((size_t) g->in[3] << 8) | (size_t) g->in[4];

        if (len > g->max_message) {
            ngx_snprintf(msg, sizeof(msg),
                         "message of %uz bytes exceeds the limit of "
                         "%uz bytes%Z", len, g->max_message);
            ngx_kubenova_grpc_finish(g, NGX_KUBENOVA_GRPC_RESOURCE_EXHAUSTED,
                                     (char *) msg);
            return NGX_DONE;
        }

        if (g->in_len < NGX_KUBENOVA_GRPC_HEADER + len) {
            break;
        }

        rc = g->handlers->message(g, g->in + NGX_KUBENOVA_GRPC_HEADER, len);

        if (g->finished || rc == NGX_DONE) {
            return NGX_DONE;
        }

        /* the receiver has decoded what it needs: drop the bytes */

        rest = g->in_len - NGX_KUBENOVA_GRPC_HEADER - len;
        ngx_memmove(g->in, g->in + NGX_KUBENOVA_GRPC_HEADER + len, rest);
        g->in_len = rest;

        if (rc == NGX_AGAIN) {
            g->paused = 1;
        }
    }

    /* an idle stream keeps a small buffer only */

    if (g->in_len == 0 && g->in_size > NGX_KUBENOVA_GRPC_IN_KEEP) {
        ngx_free(g->in);
        g->in = NULL;
        g->in_size = 0;
    }

    return NGX_OK;
}


/* writing */


ngx_int_t
ngx_kubenova_grpc_send(ngx_kubenova_grpc_t *g, const ProtobufCMessage *msg)
{
    size_t                      len;
    u_char                      header[NGX_KUBENOVA_GRPC_HEADER];
    ngx_chain_t                *out, *cl;
    ngx_kubenova_grpc_writer_t  writer;

    if (g->finished) {
        return NGX_ERROR;
    }

    len = protobuf_c_message_get_packed_size(msg);

    if (len > g->max_message) {
        ngx_log_error(NGX_LOG_ERR, g->request->connection->log, 0,
                      "kubenova: gRPC message of %uz bytes exceeds the "
                      "limit of %uz bytes", len, g->max_message);
        return NGX_ERROR;
    }

    header[0] = 0;
    header[1] = (u_char) (len >> 24);
    header[2] = (u_char) (len >> 16);
    header[3] = (u_char) (len >> 8);
    header[4] = (u_char) len;

    writer.base.append = ngx_kubenova_grpc_append;
    writer.grpc = g;

    ngx_kubenova_grpc_append(&writer.base, sizeof(header), header);
    protobuf_c_message_pack_to_buffer(msg, &writer.base);

    out = g->out;
    cl = g->out_tail;
    g->out = NULL;
    g->out_tail = NULL;

    if (g->failed || out == NULL) {
        return NGX_ERROR;
    }

    cl->buf->flush = 1;

    return ngx_kubenova_grpc_flush(g, out);
}


/* protobuf-c writes the packed message straight into recycled buffers */

static void
ngx_kubenova_grpc_append(ProtobufCBuffer *buffer, size_t len,
    const uint8_t *data)
{
    ngx_kubenova_grpc_writer_t  *writer = (ngx_kubenova_grpc_writer_t *) buffer;

    size_t                n;
    ngx_buf_t            *b;
    ngx_chain_t          *cl;
    ngx_kubenova_grpc_t  *g;

    g = writer->grpc;


    while (len && !g->failed) {
        b = g->out_tail ? g->out_tail->buf : NULL;

        if (b == NULL || b->last == b->end) {
            cl = ngx_chain_get_free_buf(g->request->pool, &g->free);
            if (cl == NULL) {
                g->failed = 1;
                return;
            }

            b = cl->buf;

            if (b->start == NULL) {
                b->start = ngx_palloc(g->request->pool,
                                      NGX_KUBENOVA_GRPC_OUT_BUF);
                if (b->start == NULL) {
                    g->failed = 1;
                    return;
                }

                b->end = b->start + NGX_KUBENOVA_GRPC_OUT_BUF;
            }

            b->pos = b->start;
            b->last = b->start;
            b->temporary = 1;
            b->flush = 0;
            b->last_buf = 0;
            b->tag = (ngx_buf_tag_t) &ngx_kubenova_grpc_send;

            cl->next = NULL;

            if (g->out_tail) {
                g->out_tail->next = cl;

            } else {
                g->out = cl;
            }

            g->out_tail = cl;
        }

        n = ngx_min(len, (size_t) (b->end - b->last));
        b->last = ngx_cpymem(b->last, data, n);
        data += n;
        len -= n;
    }
}


static ngx_int_t
ngx_kubenova_grpc_flush(ngx_kubenova_grpc_t *g, ngx_chain_t *out)
{
    ngx_int_t                  rc;
    ngx_connection_t          *c;
    ngx_http_request_t        *r;
    ngx_kubenova_grpc_ctx_t   *gctx;
    ngx_http_core_loc_conf_t  *clcf;

    r = g->request;
    c = r->connection;

    rc = ngx_http_output_filter(r, out);

    ngx_chain_update_chains(r->pool, &g->free, &g->busy, &out,
                            (ngx_buf_tag_t) &ngx_kubenova_grpc_send);

    if (rc == NGX_ERROR) {
        g->finished = 1;
        c->error = 1;
        gctx = ngx_http_kubenova_get_ctx(r)->grpc;

        if (!gctx->finalize.posted) {
            ngx_post_event(&gctx->finalize, &ngx_posted_events);
        }

        return NGX_ERROR;
    }

    /* a client that takes nothing for send_timeout is gone */

    if (g->busy) {
        if (!c->write->timer_set) {
            clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);
            ngx_add_timer(c->write, clcf->send_timeout);
        }

    } else if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    return NGX_OK;
}


size_t
ngx_kubenova_grpc_pending(ngx_kubenova_grpc_t *g)
{
    size_t        size;
    ngx_chain_t  *cl;

    size = 0;

    for (cl = g->busy; cl; cl = cl->next) {
        size += ngx_buf_size(cl->buf);
    }

    return size;
}


static void
ngx_kubenova_grpc_write_handler(ngx_http_request_t *r)
{
    ngx_connection_t     *c;
    ngx_kubenova_grpc_t  *g;

    g = ngx_kubenova_grpc_get(r);
    c = r->connection;

    if (g == NULL) {
        return;
    }

    if (c->write->timedout) {
        c->timedout = 1;
        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT,
                      "kubenova: gRPC client took nothing within "
                      "send_timeout");
        g->finished = 1;
        ngx_http_finalize_request(r, NGX_HTTP_REQUEST_TIME_OUT);
        return;
    }

    if (ngx_kubenova_grpc_flush(g, NULL) != NGX_OK) {
        return;
    }

    if (g->busy == NULL && !g->finished && g->handlers->drained) {
        g->handlers->drained(g);
    }
}


/* the end */


void
ngx_kubenova_grpc_finish(ngx_kubenova_grpc_t *g, ngx_uint_t status,
    const char *message)
{
    u_char                   *p, *enc, *last;
    size_t                    len;
    ngx_uint_t                level;
    ngx_buf_t                *b;
    ngx_chain_t               out;
    ngx_http_request_t       *r;
    ngx_kubenova_grpc_ctx_t  *gctx;
    u_char                   *code;

    if (g->finished) {
        return;
    }

    g->finished = 1;
    r = g->request;
    gctx = ngx_http_kubenova_get_ctx(r)->grpc;

    level = (status == NGX_KUBENOVA_GRPC_OK) ? NGX_LOG_INFO : NGX_LOG_NOTICE;

    ngx_log_error(level, r->connection->log, 0,
                  "kubenova: gRPC stream ends: status %ui, %s",
                  status, message);

    /*
     * The trailers are serialized when the last buffer gets out, which may
     * be long after this returns (the client's window is shut): their
     * values live in the request's pool, never on this stack.
     */

    len = ngx_strlen(message);
    enc = ngx_pnalloc(r->pool, len * 3);
    code = ngx_pnalloc(r->pool, NGX_INT_T_LEN);

    if (enc == NULL || code == NULL
        || ngx_kubenova_add_header(r, &r->headers_out.trailers,
                                   "grpc-status", code,
                                   ngx_sprintf(code, "%ui", status) - code)
           != NGX_OK)
    {
        goto finalize;
    }

    /* grpc-message is percent-encoded: printable ASCII except '%' stays */

    last = enc;

    for (p = (u_char *) message; *p; p++) {
        if (*p >= 0x20 && *p <= 0x7e && *p != '%') {
            *last++ = *p;

        } else {
            last = ngx_sprintf(last, "%%%02XD", (ngx_uint_t) *p);
        }
    }

    if (ngx_kubenova_add_header(r, &r->headers_out.trailers, "grpc-message",
                                enc, last - enc)
        != NGX_OK)
    {
        goto finalize;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        goto finalize;
    }

    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    (void) ngx_http_output_filter(r, &out);

finalize:

    /* never from under the caller: the request may be freed there */

    if (!gctx->finalize.posted) {
        ngx_post_event(&gctx->finalize, &ngx_posted_events);
    }
}


static void
ngx_kubenova_grpc_finalize_handler(ngx_event_t *ev)
{
    ngx_connection_t         *c;
    ngx_http_request_t       *r;
    ngx_kubenova_grpc_ctx_t  *gctx = ev->data;

    r = gctx->grpc->request;
    c = r->connection;

    ngx_http_finalize_request(r, c->error ? NGX_ERROR : NGX_OK);
    ngx_http_run_posted_requests(c);
}


static void
ngx_kubenova_grpc_cleanup(void *data)
{
    ngx_kubenova_grpc_ctx_t  *gctx = data;

    ngx_kubenova_grpc_t  *g;

    g = gctx->grpc;

    if (gctx->finalize.posted) {
        ngx_delete_posted_event(&gctx->finalize);
    }

    g->finished = 1;

    if (g->handlers->closed) {
        g->handlers->closed(g);
    }

    if (g->in) {
        ngx_free(g->in);
        g->in = NULL;
    }
}
