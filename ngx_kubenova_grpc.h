/*
 * gRPC over an HTTP/2 request inside nginx: the transport half of the
 * Operator gateway.  The request body is read unbuffered, so the client's
 * flow-control window opens only as fast as messages are consumed (real
 * backpressure); messages are reassembled from the 5-byte gRPC framing
 * across DATA frames up to a size bound; every message written is flushed;
 * the stream ends with grpc-status / grpc-message trailers.
 */

#ifndef _NGX_KUBENOVA_GRPC_H_INCLUDED_
#define _NGX_KUBENOVA_GRPC_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <protobuf-c/protobuf-c.h>


/* gRPC status codes used here */
#define NGX_KUBENOVA_GRPC_OK                   0
#define NGX_KUBENOVA_GRPC_INVALID_ARGUMENT     3
#define NGX_KUBENOVA_GRPC_DEADLINE_EXCEEDED    4
#define NGX_KUBENOVA_GRPC_PERMISSION_DENIED    7
#define NGX_KUBENOVA_GRPC_RESOURCE_EXHAUSTED   8
#define NGX_KUBENOVA_GRPC_FAILED_PRECONDITION  9
#define NGX_KUBENOVA_GRPC_ABORTED              10
#define NGX_KUBENOVA_GRPC_UNIMPLEMENTED        12
#define NGX_KUBENOVA_GRPC_INTERNAL             13
#define NGX_KUBENOVA_GRPC_UNAVAILABLE          14
#define NGX_KUBENOVA_GRPC_UNAUTHENTICATED      16


typedef struct ngx_kubenova_grpc_s  ngx_kubenova_grpc_t;


typedef struct {
    /*
     * One complete message.  NGX_OK: go on; NGX_AGAIN: the receiver is busy,
     * reading stops until ngx_kubenova_grpc_resume(); NGX_DONE: the stream
     * was finished.
     */
    ngx_int_t  (*message)(ngx_kubenova_grpc_t *g, u_char *data, size_t len);

    /* everything written so far has been handed to the client */
    void       (*drained)(ngx_kubenova_grpc_t *g);

    /* the request is going away, however it ends: last call */
    void       (*closed)(ngx_kubenova_grpc_t *g);
} ngx_kubenova_grpc_handlers_t;


struct ngx_kubenova_grpc_s {
    ngx_http_request_t                  *request;
    const ngx_kubenova_grpc_handlers_t  *handlers;
    void                                *data;

    u_char                              *in;          /* reassembly */
    size_t                               in_len;
    size_t                               in_size;
    size_t                               max_message;

    ngx_chain_t                         *out;         /* being built */
    ngx_chain_t                         *out_tail;
    ngx_chain_t                         *free;
    ngx_chain_t                         *busy;

    unsigned                             paused:1;
    unsigned                             in_closed:1;
    unsigned                             finished:1;
    unsigned                             failed:1;
    unsigned                             reading:1;
};


/* the content handler's whole job; returns what the handler returns */
ngx_int_t ngx_kubenova_grpc_start(ngx_http_request_t *r,
    const ngx_kubenova_grpc_handlers_t *handlers, void *data,
    size_t max_message);

/* NGX_OK (queued and flushed as far as the client allows) or NGX_ERROR */
ngx_int_t ngx_kubenova_grpc_send(ngx_kubenova_grpc_t *g,
    const ProtobufCMessage *msg);

/* bytes written but not yet taken by the client */
size_t ngx_kubenova_grpc_pending(ngx_kubenova_grpc_t *g);

/* reading goes on after a message handler answered NGX_AGAIN */
void ngx_kubenova_grpc_resume(ngx_kubenova_grpc_t *g);

/* trailers, end of stream, request finalized; idempotent */
void ngx_kubenova_grpc_finish(ngx_kubenova_grpc_t *g, ngx_uint_t status,
    const char *message);


#endif /* _NGX_KUBENOVA_GRPC_H_INCLUDED_ */
