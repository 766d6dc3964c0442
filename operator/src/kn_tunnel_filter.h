/*
 * What a tenant may see through the kube proxy tunnel (kn_tunnel.c): the
 * Capsule Proxy part.  Most requests go to the API server as the tenant's
 * own ServiceAccount and RBAC decides (docs/adr/0004-kube-proxy-identity.md).
 * A few reads cannot be expressed in RBAC, because RBAC grants a whole
 * collection or nothing; those are routed here:
 *
 *   GET /api/v1/namespaces            list and watch: the tenant's only,
 *                                     kubenova.io/tenant=<t> added to the
 *                                     caller's labelSelector
 *   GET /api/v1/namespaces/<name>     the tenant's namespace, or NotFound
 *   GET /api/v1/pods                  (kubectl get pods -A) list and watch:
 *                                     only the pods of the tenant's
 *                                     namespaces
 *   GET of the collections nodes, storageclasses, ingressclasses,
 *       priorityclasses, runtimeclasses: an empty list, unless the
 *       tenant's spec lists the resource in cluster_resources (all but
 *       nodes may be listed): then the list, the watch and the GET of one
 *       object pass
 *
 * These are answered with the Operator's own read permission, filtered
 * here, never widened.  The functions are pure: no I/O, no allocation but
 * the JSON they are handed.
 */

#ifndef KN_TUNNEL_FILTER_H
#define KN_TUNNEL_FILTER_H


#include <jansson.h>

#include "kn_core.h"


#define KN_TUNNEL_TENANT_LABEL  "kubenova.io/tenant"


typedef enum {
    KN_TUN_PASS = 0,        /* as the tenant; RBAC decides */
    KN_TUN_NS_COLLECTION,   /* namespaces, list or watch, label forced */
    KN_TUN_NS_GET,          /* one namespace: the tenant's, or NotFound */
    KN_TUN_PODS_ALL,        /* pods of all namespaces, filtered */
    KN_TUN_CLUSTER_LIST,    /* a cluster-scoped list: nothing, or all
                               when the tenant may see the resource */
    KN_TUN_CLUSTER_GET      /* one object of such a resource: as the
                               tenant, or as the Operator when it may */
} kn_tun_route_e;


typedef struct {
    kn_tun_route_e  route;
    unsigned        watch:1;        /* ?watch=true */
    const char     *name;           /* KN_TUN_NS_GET: the namespace
                                       (points into the path) */
    size_t          name_len;
    /* KN_TUN_CLUSTER_*: */
    const char     *resource;       /* "storageclasses" … */
    const char     *list_kind;      /* "StorageClassList" … */
    const char     *api_version;    /* "v1", "group/v1" (into the path) */
    size_t          api_version_len;
} kn_tun_route_t;


/* the route of a request whose path and query kn_tunnel_check() accepted */
void kn_tunnel_route(const char *method, const char *path, const char *query,
    kn_tun_route_t *route);

/* NULL when path and query are fit to send on, else why not */
const char *kn_tunnel_check(const char *method, const char *path,
    const char *query);

/*
 * The query with its labelSelector replaced by
 * "kubenova.io/tenant=<tenant>[,<the caller's selector>]" (percent-encoded
 * as it was).  KN_ERROR when buf is too small.
 */
kn_rc kn_tunnel_tenant_query(const char *query, const char *tenant,
    char *buf, size_t size);

/*
 * Whether the tenant whose spec this is may see the cluster-scoped
 * resource of route: it is listed in spec.cluster_resources, and is not
 * nodes (which the Operator itself may not read).
 */
int kn_tunnel_cluster_visible(json_t *spec, const kn_tun_route_t *route);

/*
 * Keeps in a List (items) or a Table (rows) only the objects whose
 * metadata.namespace is a key of namespaces.  KN_ERROR when body is
 * neither: nothing of it may pass.
 */
kn_rc kn_tunnel_filter_list(json_t *body, json_t *namespaces);

/*
 * A watch event: 1 to pass it on (possibly with Table rows removed), 0 to
 * drop it.  ERROR and BOOKMARK events pass.
 */
int kn_tunnel_filter_event(json_t *event, json_t *namespaces);

/*
 * A Kubernetes Status object (what kubectl prints well) into buf;
 * KN_ERROR when it does not fit.
 */
kn_rc kn_tunnel_status(int code, const char *reason, const char *message,
    char *buf, size_t size);


#endif /* KN_TUNNEL_FILTER_H */
