/*
 * Turns the conninfo of "kubenova_postgres" into the keyword/value arrays
 * that PQconnectStartParams() takes, at configuration time.  Host names are
 * resolved here, in the master, into "hostaddr": libpq would otherwise call
 * getaddrinfo() inside PQconnectPoll(), a blocking call in a worker.
 */

#ifndef _NGX_KUBENOVA_PG_CONNINFO_H_INCLUDED_
#define _NGX_KUBENOVA_PG_CONNINFO_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_kubenova_pg.h"


char *ngx_kubenova_pg_conninfo_parse(ngx_conf_t *cf, ngx_str_t *conninfo,
    ngx_kubenova_pg_conf_t *pc);


#endif /* _NGX_KUBENOVA_PG_CONNINFO_H_INCLUDED_ */
