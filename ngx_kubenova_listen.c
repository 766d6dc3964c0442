/*
 * The worker's shared LISTEN connection: channel to subscriber (see the
 * header).
 */

#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_kubenova_listen.h"


#define NGX_KUBENOVA_LISTEN_MAX  8        /* channels per worker */


typedef struct {
    const char                 *channel;
    ngx_kubenova_pg_notify_pt   notify;
    ngx_kubenova_pg_reset_pt    reset;
    void                       *data;
} ngx_kubenova_listen_sub_t;


static void ngx_kubenova_listen_notify(void *data, const char *channel,
    const char *payload);
static void ngx_kubenova_listen_reset(void *data);


/* this worker's (each worker subscribes after the fork) */
static ngx_kubenova_listen_sub_t  ngx_kubenova_listen_subs[
                                                    NGX_KUBENOVA_LISTEN_MAX];
static ngx_uint_t                 ngx_kubenova_listen_nsubs;


ngx_int_t
ngx_kubenova_listen_subscribe(const char *channel,
    ngx_kubenova_pg_notify_pt notify, ngx_kubenova_pg_reset_pt reset,
    void *data)
{
    ngx_kubenova_listen_sub_t  *sub;

    if (ngx_kubenova_listen_nsubs == NGX_KUBENOVA_LISTEN_MAX) {
        return NGX_ERROR;
    }

    sub = &ngx_kubenova_listen_subs[ngx_kubenova_listen_nsubs++];
    sub->channel = channel;
    sub->notify = notify;
    sub->reset = reset;
    sub->data = data;

    return NGX_OK;
}


ngx_int_t
ngx_kubenova_listen_start(ngx_cycle_t *cycle, ngx_kubenova_pg_pool_t *pool)
{
    u_char      *sql, *p;
    size_t       len;
    ngx_uint_t   i;

    if (ngx_kubenova_listen_nsubs == 0) {
        return NGX_OK;
    }

    /* "LISTEN a; LISTEN b; ..." */

    len = 1;

    for (i = 0; i < ngx_kubenova_listen_nsubs; i++) {
        len += sizeof("LISTEN ; ") - 1
               + ngx_strlen(ngx_kubenova_listen_subs[i].channel);
    }

    sql = ngx_pnalloc(cycle->pool, len);
    if (sql == NULL) {
        return NGX_ERROR;
    }

    p = sql;

    for (i = 0; i < ngx_kubenova_listen_nsubs; i++) {
        p = ngx_sprintf(p, "%sLISTEN %s", i ? "; " : "",
                        ngx_kubenova_listen_subs[i].channel);
    }

    *p = '\0';

    return ngx_kubenova_pg_listen(pool, (const char *) sql,
                                  ngx_kubenova_listen_notify,
                                  ngx_kubenova_listen_reset, NULL);
}


static void
ngx_kubenova_listen_notify(void *data, const char *channel,
    const char *payload)
{
    ngx_uint_t                  i;
    ngx_kubenova_listen_sub_t  *sub;

    for (i = 0; i < ngx_kubenova_listen_nsubs; i++) {
        sub = &ngx_kubenova_listen_subs[i];

        if (ngx_strcmp(sub->channel, channel) == 0) {
            sub->notify(sub->data, channel, payload);
        }
    }
}


static void
ngx_kubenova_listen_reset(void *data)
{
    ngx_uint_t                  i, j;
    ngx_kubenova_listen_sub_t  *sub;

    for (i = 0; i < ngx_kubenova_listen_nsubs; i++) {
        sub = &ngx_kubenova_listen_subs[i];

        /* once per subscriber, not once per channel */

        for (j = 0; j < i; j++) {
            if (ngx_kubenova_listen_subs[j].reset == sub->reset
                && ngx_kubenova_listen_subs[j].data == sub->data)
            {
                break;
            }
        }

        if (j == i) {
            sub->reset(sub->data);
        }
    }
}
