/*
 * The worker's one LISTEN connection (ngx_kubenova_pg_listen), shared by
 * whoever needs NOTIFY: each concern subscribes to its channels while the
 * worker starts, then ngx_kubenova_listen_start() opens the connection
 * with every channel subscribed.  A notification goes to the subscriber of
 * its channel; when the connection breaks, every subscriber hears that
 * notifications may have been lost (once, however many channels it has).
 */

#ifndef _NGX_KUBENOVA_LISTEN_H_INCLUDED_
#define _NGX_KUBENOVA_LISTEN_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_kubenova_pg.h"


/* channel: a plain SQL identifier, kept by the caller for good */
ngx_int_t ngx_kubenova_listen_subscribe(const char *channel,
    ngx_kubenova_pg_notify_pt notify, ngx_kubenova_pg_reset_pt reset,
    void *data);

/* NGX_OK also when nobody subscribed (then no connection is opened) */
ngx_int_t ngx_kubenova_listen_start(ngx_cycle_t *cycle,
    ngx_kubenova_pg_pool_t *pool);


#endif /* _NGX_KUBENOVA_LISTEN_H_INCLUDED_ */
