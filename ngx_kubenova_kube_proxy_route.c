/*
 * Kube proxy routing between the workers of one Manager (see the header
 * and docs/adr/0005-kube-proxy-routing.md).
 *
 * The forwarding socket is not one of the cycle's listening sockets: those
 * are opened by the master and shared by every worker, while this one must
 * be accepted by its own worker only.  So each worker opens it in
 * init_process, beside nginx's, and hangs it on nginx's accept handler with
 * the kube proxy server's address configuration (no TLS, no HTTP/2: the
 * proxy module speaks HTTP/1.1 to it).  A relayed request is authenticated
 * again by the owner (the socket is reachable on the host; its bearer token
 * is all it carries) and never relayed a second time.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_kubenova_module.h"
#include "ngx_kubenova_kube_proxy_route.h"


#define NGX_KUBENOVA_KP_ROUTE_ZONE_SIZE  (256 * 1024)
#define NGX_KUBENOVA_KP_ROUTE_BACKLOG    511


typedef struct {
    ngx_rbtree_t                  rbtree;
    ngx_rbtree_node_t             sentinel;
} ngx_kubenova_kp_route_sh_t;


/* a registration in PostgreSQL, which outlives whatever asked for it */
typedef struct {
    ngx_kubenova_pg_query_t       query;
    const char                   *params[2];
} ngx_kubenova_kp_route_db_t;


typedef struct {
    ngx_str_node_t                sn;          /* key: the cluster */
    ngx_pid_t                     pid;         /* the stream's worker */
    u_char                        name[1];
} ngx_kubenova_kp_route_node_t;


static ngx_int_t ngx_kubenova_kp_route_zone_init(ngx_shm_zone_t *zone,
    void *data);
static ngx_http_addr_conf_t *ngx_kubenova_kp_route_addr_conf(
    ngx_cycle_t *cycle, ngx_http_core_srv_conf_t *cscf);
static u_char *ngx_kubenova_kp_route_path(u_char *buf, ngx_pid_t pid);
static ngx_kubenova_kp_route_sh_t *ngx_kubenova_kp_route_registry(
    ngx_slab_pool_t **shpool);
static ngx_uint_t ngx_kubenova_kp_route_location_exists(
    ngx_http_request_t *r);
static ngx_uint_t ngx_kubenova_kp_route_relayed(ngx_http_request_t *r);
static void ngx_kubenova_kp_route_db(const char *sql, ngx_str_t *cluster);
static void ngx_kubenova_kp_route_db_done(void *data, ngx_int_t rc,
    PGresult *res);
static ngx_int_t ngx_kubenova_kp_route_owner_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


static ngx_str_t  ngx_kubenova_kp_route_zone_name =
    ngx_string("kubenova_kube_proxy");
static ngx_str_t  ngx_kubenova_kp_route_var_name =
    ngx_string("kubenova_kube_proxy_owner");
static ngx_str_t  ngx_kubenova_kp_route_location =
    ngx_string("@kubenova_kube_proxy_forward");

static const char  ngx_kubenova_kp_route_set_sql[] =
    "SELECT api.kube_proxy_route_set($1, $2)";
static const char  ngx_kubenova_kp_route_unset_sql[] =
    "SELECT api.kube_proxy_route_unset($1, $2)";

/* this worker's forwarding socket (process state, after fork) */
static ngx_listening_t  *ngx_kubenova_kp_route_ls;


/* configuration */


ngx_int_t
ngx_kubenova_kp_route_variable(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var;

    var = ngx_http_add_variable(cf, &ngx_kubenova_kp_route_var_name, 0);
    if (var == NULL) {
        return NGX_ERROR;
    }

    /* only ever set by ngx_kubenova_kp_route_forward() */
    var->get_handler = ngx_kubenova_kp_route_owner_variable;

    return NGX_OK;
}


ngx_int_t
ngx_kubenova_kp_route_conf(ngx_conf_t *cf)
{
    ngx_int_t                       index;
    ngx_shm_zone_t                 *zone;
    ngx_http_kubenova_main_conf_t  *kmcf;

    kmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_kubenova_module);

    if (kmcf->kube_proxy_srv) {
        if (kmcf->kube_proxy_srv
            != ngx_http_conf_get_module_srv_conf(cf, ngx_http_core_module))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "kubenova_kube_proxy may be used in one "
                               "server only");
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    kmcf->kube_proxy_srv = ngx_http_conf_get_module_srv_conf(cf,
                                                       ngx_http_core_module);

    zone = ngx_shared_memory_add(cf, &ngx_kubenova_kp_route_zone_name,
                                 NGX_KUBENOVA_KP_ROUTE_ZONE_SIZE,
                                 &ngx_http_kubenova_module);
    if (zone == NULL) {
        return NGX_ERROR;
    }

    zone->init = ngx_kubenova_kp_route_zone_init;
    kmcf->kube_proxy_zone = zone;

    index = ngx_http_get_variable_index(cf, &ngx_kubenova_kp_route_var_name);
    if (index == NGX_ERROR) {
        return NGX_ERROR;
    }

    kmcf->kube_proxy_owner_var = index;

    return NGX_OK;
}


static ngx_int_t
ngx_kubenova_kp_route_zone_init(ngx_shm_zone_t *zone, void *data)
{
    ngx_slab_pool_t             *shpool;
    ngx_kubenova_kp_route_sh_t  *sh;

    if (data) {
        /* a reload: the old workers' entries die with their streams */
        zone->data = data;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) zone->shm.addr;

    if (zone->shm.exists) {
        zone->data = shpool->data;
        return NGX_OK;
    }

    sh = ngx_slab_alloc(shpool, sizeof(ngx_kubenova_kp_route_sh_t));
    if (sh == NULL) {
        return NGX_ERROR;
    }

    ngx_rbtree_init(&sh->rbtree, &sh->sentinel, ngx_str_rbtree_insert_value);

    shpool->data = sh;
    zone->data = sh;

    return NGX_OK;
}


/* the forwarding socket */


ngx_int_t
ngx_kubenova_kp_route_init_process(ngx_cycle_t *cycle)
{
    u_char                         *last;
    ngx_socket_t                    fd;
    ngx_listening_t                *ls;
    ngx_connection_t               *c;
    ngx_http_port_t                *port;
    ngx_http_in_addr_t             *addr;
    ngx_http_addr_conf_t           *conf;
    struct sockaddr_un             *sun;
    ngx_http_kubenova_main_conf_t  *kmcf;

    kmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_kubenova_module);

    /* one process has every stream: nothing to route */

    if (kmcf == NULL || kmcf->kube_proxy_zone == NULL
        || ngx_process != NGX_PROCESS_WORKER)
    {
        return NGX_OK;
    }

    conf = ngx_kubenova_kp_route_addr_conf(cycle, kmcf->kube_proxy_srv);
    if (conf == NULL) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "kubenova: the kube proxy's server is no listen's "
                      "default server: requests are not routed between "
                      "workers");
        return NGX_OK;
    }

    sun = ngx_pcalloc(cycle->pool, sizeof(struct sockaddr_un));
    port = ngx_pcalloc(cycle->pool, sizeof(ngx_http_port_t));
    addr = ngx_pcalloc(cycle->pool, sizeof(ngx_http_in_addr_t));
    ls = ngx_pcalloc(cycle->pool, sizeof(ngx_listening_t));

    if (sun == NULL || port == NULL || addr == NULL || ls == NULL) {
        return NGX_ERROR;
    }

    sun->sun_family = AF_UNIX;

    if (cycle->prefix.len + sizeof("kubenova-kp-.sock") + NGX_INT64_LEN
        > sizeof(sun->sun_path))
    {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "kubenova: the prefix \"%V\" is too long for the "
                      "kube proxy's forwarding sockets: requests are not "
                      "routed between workers", &cycle->prefix);
        return NGX_OK;
    }

    last = ngx_kubenova_kp_route_path((u_char *) sun->sun_path, ngx_pid);
    *last = '\0';

    (void) unlink(sun->sun_path);      /* a dead worker's of the same pid */

    fd = ngx_socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd == (ngx_socket_t) -1) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_socket_errno,
                      ngx_socket_n " failed");
        return NGX_ERROR;
    }

    if (ngx_nonblocking(fd) == -1
        || bind(fd, (struct sockaddr *) sun, sizeof(struct sockaddr_un)) == -1
        || listen(fd, NGX_KUBENOVA_KP_ROUTE_BACKLOG) == -1)
    {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_socket_errno,
                      "kubenova: cannot listen on \"%s\"", sun->sun_path);
        (void) ngx_close_socket(fd);
        return NGX_ERROR;
    }

    /* the kube proxy's server, in plain HTTP/1.1 */

    addr->conf = *conf;
    addr->conf.ssl = 0;
    addr->conf.http2 = 0;
    addr->conf.proxy_protocol = 0;
    port->addrs = addr;
    port->naddrs = 1;

    ls->sockaddr = (struct sockaddr *) sun;
    ls->socklen = sizeof(struct sockaddr_un);
    ls->addr_text.data = (u_char *) sun->sun_path;
    ls->addr_text.len = last - (u_char *) sun->sun_path;
    ls->addr_text_max_len = NGX_SOCKADDR_STRLEN;
    ls->addr_ntop = 1;
    ls->fd = fd;
    ls->type = SOCK_STREAM;
    ls->backlog = NGX_KUBENOVA_KP_ROUTE_BACKLOG;
    ls->handler = ngx_http_init_connection;
    ls->servers = port;
    ls->log = *cycle->log;
    ls->logp = cycle->log;
    ls->pool_size = 256;

    c = ngx_get_connection(fd, cycle->log);
    if (c == NULL) {
        (void) ngx_close_socket(fd);
        return NGX_ERROR;
    }

    c->type = SOCK_STREAM;
    c->log = &ls->log;
    c->listening = ls;
    ls->connection = c;

    c->read->log = c->log;
    c->read->accept = 1;
    c->read->handler = ngx_event_accept;

    if (ngx_add_event(c->read, NGX_READ_EVENT, 0) == NGX_ERROR) {
        ngx_close_connection(c);
        return NGX_ERROR;
    }

    ngx_kubenova_kp_route_ls = ls;

    return NGX_OK;
}


void
ngx_kubenova_kp_route_exit_process(ngx_cycle_t *cycle)
{
    ngx_listening_t  *ls = ngx_kubenova_kp_route_ls;

    if (ls == NULL) {
        return;
    }

    ngx_kubenova_kp_route_ls = NULL;

    ngx_close_connection(ls->connection);
    (void) unlink(((struct sockaddr_un *) ls->sockaddr)->sun_path);
}


/* the address configuration whose default server is the kube proxy's */

static ngx_http_addr_conf_t *
ngx_kubenova_kp_route_addr_conf(ngx_cycle_t *cycle,
    ngx_http_core_srv_conf_t *cscf)
{
    ngx_uint_t            i, n;
    ngx_listening_t      *ls;
    ngx_http_port_t      *port;
    ngx_http_in_addr_t   *addr;
#if (NGX_HAVE_INET6)
    ngx_http_in6_addr_t  *addr6;
#endif

    ls = cycle->listening.elts;

    for (i = 0; i < cycle->listening.nelts; i++) {

        if (ls[i].handler != ngx_http_init_connection) {
            continue;
        }

        port = ls[i].servers;

        for (n = 0; n < port->naddrs; n++) {

            switch (ls[i].sockaddr->sa_family) {

#if (NGX_HAVE_INET6)
            case AF_INET6:
                addr6 = port->addrs;
                if (addr6[n].conf.default_server == cscf) {
                    return &addr6[n].conf;
                }
                break;
#endif

#if (NGX_HAVE_UNIX_DOMAIN)
            case AF_UNIX:
#endif
            default: /* AF_INET */
                addr = port->addrs;
                if (addr[n].conf.default_server == cscf) {
                    return &addr[n].conf;
                }
                break;
            }
        }
    }

    return NULL;
}


static u_char *
ngx_kubenova_kp_route_path(u_char *buf, ngx_pid_t pid)
{
    return ngx_sprintf(buf, "%Vkubenova-kp-%P.sock", &ngx_cycle->prefix, pid);
}


/* the registry */


/* this cycle's, or NULL without a kube proxy */

static ngx_kubenova_kp_route_sh_t *
ngx_kubenova_kp_route_registry(ngx_slab_pool_t **shpool)
{
    ngx_http_kubenova_main_conf_t  *kmcf;

    kmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_kubenova_module);

    if (kmcf == NULL || kmcf->kube_proxy_zone == NULL) {
        return NULL;
    }

    *shpool = (ngx_slab_pool_t *) kmcf->kube_proxy_zone->shm.addr;

    return kmcf->kube_proxy_zone->data;
}


void
ngx_kubenova_kp_route_set(ngx_str_t *cluster)
{
    uint32_t                        hash;
    ngx_slab_pool_t                *shpool;
    ngx_str_node_t                 *sn;
    ngx_kubenova_kp_route_sh_t     *sh;
    ngx_kubenova_kp_route_node_t   *node;

    sh = ngx_kubenova_kp_route_registry(&shpool);
    if (sh == NULL) {
        return;
    }

    hash = ngx_crc32_short(cluster->data, cluster->len);

    ngx_shmtx_lock(&shpool->mutex);

    sn = ngx_str_rbtree_lookup(&sh->rbtree, cluster, hash);

    if (sn) {
        node = (ngx_kubenova_kp_route_node_t *) sn;
        node->pid = ngx_pid;
        ngx_shmtx_unlock(&shpool->mutex);
        ngx_kubenova_kp_route_db(ngx_kubenova_kp_route_set_sql, cluster);
        return;
    }

    node = ngx_slab_alloc_locked(shpool,
                                 sizeof(ngx_kubenova_kp_route_node_t)
                                 + cluster->len);
    if (node == NULL) {
        ngx_shmtx_unlock(&shpool->mutex);
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "kubenova: the kube proxy's registry is full: cluster "
                      "\"%V\" is reachable through this worker only",
                      cluster);
        return;
    }

    ngx_memcpy(node->name, cluster->data, cluster->len);
    node->sn.str.data = node->name;
    node->sn.str.len = cluster->len;
    node->sn.node.key = hash;
    node->pid = ngx_pid;

    ngx_rbtree_insert(&sh->rbtree, &node->sn.node);

    ngx_shmtx_unlock(&shpool->mutex);

    /* and for the other Manager nodes */
    ngx_kubenova_kp_route_db(ngx_kubenova_kp_route_set_sql, cluster);
}


void
ngx_kubenova_kp_route_unset(ngx_str_t *cluster)
{
    ngx_slab_pool_t                *shpool;
    ngx_str_node_t                 *sn;
    ngx_kubenova_kp_route_sh_t     *sh;

    sh = ngx_kubenova_kp_route_registry(&shpool);
    if (sh == NULL) {
        return;
    }

    ngx_shmtx_lock(&shpool->mutex);

    sn = ngx_str_rbtree_lookup(&sh->rbtree, cluster,
                               ngx_crc32_short(cluster->data, cluster->len));

    /* a newer stream on another worker keeps its entry, and the node's */

    if (sn && ((ngx_kubenova_kp_route_node_t *) sn)->pid == ngx_pid) {
        ngx_rbtree_delete(&sh->rbtree, &sn->node);
        ngx_slab_free_locked(shpool, sn);
        sn = NULL;
    }

    ngx_shmtx_unlock(&shpool->mutex);

    if (sn == NULL) {
        ngx_kubenova_kp_route_db(ngx_kubenova_kp_route_unset_sql, cluster);
    }
}


/* fire and forget: the row is a hint, the owner checks every request */

static void
ngx_kubenova_kp_route_db(const char *sql, ngx_str_t *cluster)
{
    u_char                         *p;
    ngx_kubenova_kp_route_db_t     *d;
    ngx_http_kubenova_main_conf_t  *kmcf;

    kmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_kubenova_module);

    if (kmcf->kube_proxy_node_url.len == 0 || kmcf->pool == NULL) {
        return;
    }

    d = ngx_calloc(sizeof(ngx_kubenova_kp_route_db_t) + cluster->len
                   + kmcf->kube_proxy_node_url.len + 2, ngx_cycle->log);
    if (d == NULL) {
        return;
    }

    p = (u_char *) (d + 1);
    d->params[0] = (char *) p;
    p = ngx_cpymem(p, cluster->data, cluster->len);
    *p++ = '\0';
    d->params[1] = (char *) p;
    p = ngx_cpymem(p, kmcf->kube_proxy_node_url.data,
                   kmcf->kube_proxy_node_url.len);
    *p = '\0';

    d->query.sql = sql;
    d->query.nparams = 2;
    d->query.values = d->params;
    d->query.done = ngx_kubenova_kp_route_db_done;
    d->query.data = d;
    d->query.lease.log = ngx_cycle->log;

    if (ngx_kubenova_pg_query(kmcf->pool, &d->query) != NGX_AGAIN) {
        ngx_free(d);
    }
}


static void
ngx_kubenova_kp_route_db_done(void *data, ngx_int_t rc, PGresult *res)
{
    ngx_kubenova_kp_route_db_t  *d = data;

    if (rc != NGX_OK || PQresultStatus(res) != PGRES_TUPLES_OK) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "kubenova: the kube proxy route of cluster \"%s\" "
                      "was not recorded: %s", d->params[0],
                      rc != NGX_OK ? ngx_kubenova_pg_strerror(rc)
                                   : PQresultErrorMessage(res));
    }

    ngx_free(d);
}


ngx_int_t
ngx_kubenova_kp_route_forward(ngx_http_request_t *r, ngx_str_t *cluster,
    ngx_str_t *node_url)
{
    u_char                         *p;
    ngx_pid_t                       pid;
    ngx_str_t                       url;
    ngx_slab_pool_t                *shpool;
    ngx_str_node_t                 *sn;
    ngx_http_variable_value_t      *vv;
    ngx_kubenova_kp_route_sh_t     *sh;
    ngx_http_kubenova_main_conf_t  *kmcf;

    kmcf = ngx_http_get_module_main_conf(r, ngx_http_kubenova_module);

    /*
     * Relayed once between workers at most, and once between nodes: a
     * request relayed from another node may still go to another worker.
     */

    pid = 0;
    sh = ngx_kubenova_kp_route_registry(&shpool);

    if (sh && ngx_kubenova_kp_route_ls
        && r->connection->listening != ngx_kubenova_kp_route_ls)
    {
        ngx_shmtx_lock(&shpool->mutex);

        sn = ngx_str_rbtree_lookup(&sh->rbtree, cluster,
                                   ngx_crc32_short(cluster->data,
                                                   cluster->len));
        pid = sn ? ((ngx_kubenova_kp_route_node_t *) sn)->pid : 0;

        ngx_shmtx_unlock(&shpool->mutex);

        /* a worker that died with its stream has no socket to answer on */

        if (pid == ngx_pid || (pid && kill(pid, 0) == -1 && errno == ESRCH)) {
            pid = 0;
        }
    }

    if (pid) {
        url.data = ngx_pnalloc(r->pool, sizeof("http://unix::")
                                        + ngx_cycle->prefix.len
                                        + sizeof("kubenova-kp-.sock")
                                        + NGX_INT64_LEN);
        if (url.data == NULL) {
            return NGX_DECLINED;
        }

        p = ngx_cpymem(url.data, "http://unix:", sizeof("http://unix:") - 1);
        p = ngx_kubenova_kp_route_path(p, pid);
        *p++ = ':';
        url.len = p - url.data;

    } else if (node_url->len && !ngx_kubenova_kp_route_relayed(r)
               && !(node_url->len == kmcf->kube_proxy_node_url.len
                    && ngx_strncmp(node_url->data,
                                   kmcf->kube_proxy_node_url.data,
                                   node_url->len) == 0))
    {
        /* another Manager node, as the database says */
        url = *node_url;

    } else {
        return NGX_DECLINED;
    }

    if (!ngx_kubenova_kp_route_location_exists(r)) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "kubenova: the stream of cluster \"%V\" is at \"%V\", "
                      "but there is no location %V to relay to",
                      cluster, &url, &ngx_kubenova_kp_route_location);
        return NGX_DECLINED;
    }

    vv = &r->variables[kmcf->kube_proxy_owner_var];
    vv->data = url.data;
    vv->len = url.len;
    vv->valid = 1;
    vv->no_cacheable = 0;
    vv->not_found = 0;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "kubenova: kube proxy request for \"%V\" relayed to %V",
                   cluster, &url);

    return ngx_http_named_location(r, &ngx_kubenova_kp_route_location);
}


/* came in on this worker's socket, or from another Manager node */

static ngx_uint_t
ngx_kubenova_kp_route_relayed(ngx_http_request_t *r)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    if (ngx_kubenova_kp_route_ls
        && r->connection->listening == ngx_kubenova_kp_route_ls)
    {
        return 1;
    }

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return 0;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == sizeof("X-KubeNova-Relayed") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "X-KubeNova-Relayed",
                               h[i].key.len) == 0)
        {
            return 1;
        }
    }
}


static ngx_uint_t
ngx_kubenova_kp_route_location_exists(ngx_http_request_t *r)
{
    ngx_http_core_srv_conf_t   *cscf;
    ngx_http_core_loc_conf_t  **clcfp;

    cscf = ngx_http_get_module_srv_conf(r, ngx_http_core_module);

    if (cscf->named_locations == NULL) {
        return 0;
    }

    for (clcfp = cscf->named_locations; *clcfp; clcfp++) {
        if ((*clcfp)->name.len == ngx_kubenova_kp_route_location.len
            && ngx_strncmp((*clcfp)->name.data,
                           ngx_kubenova_kp_route_location.data,
                           ngx_kubenova_kp_route_location.len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


static ngx_int_t
ngx_kubenova_kp_route_owner_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    v->not_found = 1;

    return NGX_OK;
}
