/*
 * Routes and filters of the kube proxy tunnel: see kn_tunnel_filter.h.
 */

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "kn_tunnel_filter.h"


#define KN_TUN_MAX_PATH   4096
#define KN_TUN_MAX_QUERY  8192


/* cluster-scoped collections a tenant sees nothing of */

typedef struct {
    const char  *group;             /* "" for the core group */
    const char  *resource;
    const char  *list_kind;
    unsigned     visible:1;         /* a tenant may be let see it */
} kn_tun_hidden_t;


/* nodes never: the Operator may not read them (t/067) */
static const kn_tun_hidden_t  kn_tun_hidden[] = {
    { "",                  "nodes",            "NodeList",          0 },
    { "storage.k8s.io",    "storageclasses",   "StorageClassList",  1 },
    { "networking.k8s.io", "ingressclasses",   "IngressClassList",  1 },
    { "scheduling.k8s.io", "priorityclasses",  "PriorityClassList", 1 },
    { "node.k8s.io",       "runtimeclasses",   "RuntimeClassList",  1 },
};


static int kn_tun_query_true(const char *query, const char *name);
static int kn_tun_segment_is(const char *p, size_t len, const char *s);
static const char *kn_tun_namespace_of(json_t *obj);
static int kn_tun_keep_row(json_t *row, json_t *namespaces);


const char *
kn_tunnel_check(const char *method, const char *path, const char *query)
{
    int          name;
    size_t       len, seg;
    const char  *p, *s;
    static const char  *methods[] = { "GET", "HEAD", "POST", "PUT",
                                      "PATCH", "DELETE" };

    for (len = 0; len < KN_NELEMS(methods); len++) {
        if (strcmp(method, methods[len]) == 0) {
            break;
        }
    }

    if (len == KN_NELEMS(methods)) {
        return "the method is not one of GET, HEAD, POST, PUT, PATCH, DELETE";
    }

    len = strlen(path);

    if (path[0] != '/' || len > KN_TUN_MAX_PATH) {
        return "the path must begin with \"/\" and be at most 4096 bytes";
    }

    /*
     * No percent-encoding, no dot segments, no empty segments: the path
     * the filters match is the path the API server resolves.
     */
    for (s = path + 1, p = path + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            seg = (size_t) (p - s);

            if ((seg == 0 && *p == '/')
                || kn_tun_segment_is(s, seg, ".")
                || kn_tun_segment_is(s, seg, ".."))
            {
                return "the path has an empty, \".\" or \"..\" segment";
            }

            if (*p == '\0') {
                break;
            }

            s = p + 1;
            continue;
        }

        if (*p <= 0x20 || *p >= 0x7f || *p == '%' || *p == '?'
            || *p == '#' || *p == '\\')
        {
            return "the path has a character other than printable ASCII "
                   "without %, ?, # and \\";
        }
    }

    if (strlen(query) > KN_TUN_MAX_QUERY) {
        return "the query is longer than 8192 bytes";
    }

    /*
     * Parameter names plain: the API server decodes them, so an encoded
     * "label%53elector" would be a second labelSelector the filters did
     * not see.
     */
    for (p = query, name = 1; *p; p++) {
        if (*p <= 0x20 || *p >= 0x7f || *p == '#') {
            return "the query has a character other than printable ASCII "
                   "without #";
        }

        if (*p == '&') {
            name = 1;

        } else if (*p == '=') {
            name = 0;

        } else if (name && !isalnum((unsigned char) *p) && *p != '_'
                   && *p != '-' && *p != '.')
        {
            return "a query parameter name has a character other than "
                   "letters, digits, \"_\", \"-\" and \".\"";
        }
    }

    return NULL;
}


void
kn_tunnel_route(const char *method, const char *path, const char *query,
    kn_tun_route_t *route)
{
    size_t       i, glen, vlen, rlen;
    const char  *p, *g, *v, *r;

    memset(route, 0, sizeof(kn_tun_route_t));
    route->route = KN_TUN_PASS;

    /* reads only: a write goes as the tenant, and RBAC answers it */
    if (strcmp(method, "GET") != 0) {
        return;
    }

    route->watch = kn_tun_query_true(query, "watch");

    if (strcmp(path, "/api/v1/namespaces") == 0) {
        route->route = KN_TUN_NS_COLLECTION;
        return;
    }

    if (strncmp(path, "/api/v1/namespaces/", 19) == 0) {
        p = path + 19;

        for (i = 0; p[i] != '\0' && p[i] != '/'; i++) {
            /* void */
        }

        if (i > 0 && p[i] == '\0') {
            route->route = KN_TUN_NS_GET;
            route->name = p;
            route->name_len = i;
            return;
        }
    }

    if (strcmp(path, "/api/v1/pods") == 0) {
        route->route = KN_TUN_PODS_ALL;
        return;
    }

    /* /api/v1/<resource> or /apis/<group>/<version>/<resource> */
    if (strncmp(path, "/api/v1/", 8) == 0) {
        g = "";
        glen = 0;
        v = path + 5;
        vlen = 2;
        r = path + 8;

    } else if (strncmp(path, "/apis/", 6) == 0) {
        g = path + 6;
        p = strchr(g, '/');
        if (p == NULL) {
            return;
        }
        glen = (size_t) (p - g);
        v = p + 1;
        p = strchr(v, '/');
        if (p == NULL) {
            return;
        }
        vlen = (size_t) (p - v);
        r = p + 1;

    } else {
        return;
    }

    /* <resource> or <resource>/<name> */
    for (rlen = 0; r[rlen] != '\0' && r[rlen] != '/'; rlen++) {
        /* void */
    }

    if (r[rlen] == '/' && strchr(r + rlen + 1, '/') != NULL) {
        return;                         /* a subresource: as the tenant */
    }

    for (i = 0; i < KN_NELEMS(kn_tun_hidden); i++) {
        if (strlen(kn_tun_hidden[i].group) == glen
            && strncmp(kn_tun_hidden[i].group, g, glen) == 0
            && strlen(kn_tun_hidden[i].resource) == rlen
            && strncmp(kn_tun_hidden[i].resource, r, rlen) == 0)
        {
            route->route = r[rlen] == '\0' ? KN_TUN_CLUSTER_LIST
                                            : KN_TUN_CLUSTER_GET;
            route->resource = kn_tun_hidden[i].resource;
            route->list_kind = kn_tun_hidden[i].list_kind;
            /* "v1" or "group/version": the path holds it */
            route->api_version = glen ? g : v;
            route->api_version_len = glen ? glen + 1 + vlen : vlen;
            return;
        }
    }
}


int
kn_tunnel_cluster_visible(json_t *spec, const kn_tun_route_t *route)
{
    size_t       i;
    json_t      *v;
    const char  *s;

    for (i = 0; i < KN_NELEMS(kn_tun_hidden); i++) {
        if (kn_tun_hidden[i].resource == route->resource) {
            break;
        }
    }

    if (i == KN_NELEMS(kn_tun_hidden) || !kn_tun_hidden[i].visible) {
        return 0;
    }

    json_array_foreach(json_object_get(spec, "cluster_resources"), i, v) {
        s = json_string_value(v);

        if (s != NULL && strcmp(s, route->resource) == 0) {
            return 1;
        }
    }

    return 0;
}


kn_rc
kn_tunnel_tenant_query(const char *query, const char *tenant, char *buf,
    size_t size)
{
    int          n;
    size_t       len, used;
    const char  *p, *end, *user;
    size_t       user_len;

    user = NULL;
    user_len = 0;

    /* the caller's selector: the first one, which the API server takes */
    for (p = query; *p && user == NULL; p = *end ? end + 1 : end) {
        end = p + strcspn(p, "&");

        if (strncmp(p, "labelSelector=", 14) == 0 && end - p > 14) {
            user = p + 14;
            user_len = (size_t) (end - user);
        }
    }

    /* %2F is "/", %3D "=", %2C "," */
    n = snprintf(buf, size, "labelSelector=kubenova.io%%2Ftenant%%3D%s%s%.*s",
                 tenant, user_len ? "%2C" : "", (int) user_len,
                 user ? user : "");
    if (n < 0 || (size_t) n >= size) {
        return KN_ERROR;
    }
    used = (size_t) n;

    /* then every other parameter, no other labelSelector */
    for (p = query; *p; p = *end ? end + 1 : end) {
        end = p + strcspn(p, "&");
        len = (size_t) (end - p);

        if (len == 0 || strncmp(p, "labelSelector", 13) == 0) {
            continue;
        }

        n = snprintf(buf + used, size - used, "&%.*s", (int) len, p);
        if (n < 0 || (size_t) n >= size - used) {
            return KN_ERROR;
        }
        used += (size_t) n;
    }

    return KN_OK;
}


kn_rc
kn_tunnel_filter_list(json_t *body, json_t *namespaces)
{
    size_t       i, len;
    json_t      *items, *item;
    const char  *kind, *ns;

    kind = json_string_value(json_object_get(body, "kind"));

    if (kind == NULL) {
        return KN_ERROR;                /* not a List, not a Table */
    }

    if (strcmp(kind, "Table") == 0) {
        items = json_object_get(body, "rows");
        if (!json_is_array(items)) {
            return KN_ERROR;
        }

        for (i = 0; i < json_array_size(items); /* void */) {
            if (kn_tun_keep_row(json_array_get(items, i), namespaces)) {
                i++;
            } else {
                json_array_remove(items, i);
            }
        }

        return KN_OK;
    }

    len = strlen(kind);
    items = json_object_get(body, "items");

    if (len < 4 || strcmp(kind + len - 4, "List") != 0
        || !json_is_array(items))
    {
        return KN_ERROR;
    }

    for (i = 0; i < json_array_size(items); /* void */) {
        item = json_array_get(items, i);
        ns = kn_tun_namespace_of(item);

        if (ns != NULL && json_object_get(namespaces, ns) != NULL) {
            i++;
        } else {
            json_array_remove(items, i);
        }
    }

    return KN_OK;
}


int
kn_tunnel_filter_event(json_t *event, json_t *namespaces)
{
    json_t      *obj;
    const char  *type, *kind, *ns;

    type = json_string_value(json_object_get(event, "type"));
    obj = json_object_get(event, "object");

    if (type == NULL || !json_is_object(obj)) {
        return 0;
    }

    if (strcmp(type, "ERROR") == 0 || strcmp(type, "BOOKMARK") == 0) {
        return 1;
    }

    kind = json_string_value(json_object_get(obj, "kind"));

    if (kind != NULL && strcmp(kind, "Table") == 0) {
        return kn_tunnel_filter_list(obj, namespaces) == KN_OK
               && json_array_size(json_object_get(obj, "rows")) > 0;
    }

    ns = kn_tun_namespace_of(obj);

    return ns != NULL && json_object_get(namespaces, ns) != NULL;
}


kn_rc
kn_tunnel_status(int code, const char *reason, const char *message,
    char *buf, size_t size)
{
    size_t   n;
    json_t  *st;

    st = json_pack("{s:s, s:s, s:{}, s:s, s:s, s:s, s:i}",
                   "kind", "Status", "apiVersion", "v1", "metadata",
                   "status", "Failure", "message", message,
                   "reason", reason, "code", code);
    if (st == NULL) {
        return KN_ERROR;
    }

    n = json_dumpb(st, buf, size, JSON_COMPACT);
    json_decref(st);

    if (n == 0 || n >= size) {
        return KN_ERROR;
    }

    buf[n] = '\0';

    return KN_OK;
}


/* helpers */


/*
 * The first value of the parameter decides, as in the API server, and
 * true is what Go's strconv.ParseBool takes for true.
 */

static int
kn_tun_query_true(const char *query, const char *name)
{
    size_t              i, nlen, vlen;
    const char         *p, *v;
    static const char  *yes[] = { "1", "t", "T", "true", "TRUE", "True" };

    nlen = strlen(name);

    for (p = query; *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : "") {
        if (strncmp(p, name, nlen) != 0
            || (p[nlen] != '=' && p[nlen] != '&' && p[nlen] != '\0'))
        {
            continue;
        }

        v = p[nlen] == '=' ? p + nlen + 1 : p + nlen;
        vlen = strcspn(v, "&");

        for (i = 0; i < KN_NELEMS(yes); i++) {
            if (strlen(yes[i]) == vlen && strncmp(v, yes[i], vlen) == 0) {
                return 1;
            }
        }

        return 0;
    }

    return 0;
}


static int
kn_tun_segment_is(const char *p, size_t len, const char *s)
{
    return strlen(s) == len && strncmp(p, s, len) == 0;
}


static const char *
kn_tun_namespace_of(json_t *obj)
{
    return json_string_value(json_object_get(json_object_get(obj,
                                                             "metadata"),
                                             "namespace"));
}


/* a Table row carries its object (PartialObjectMetadata by default) */

static int
kn_tun_keep_row(json_t *row, json_t *namespaces)
{
    const char  *ns;

    ns = kn_tun_namespace_of(json_object_get(row, "object"));

    return ns != NULL && json_object_get(namespaces, ns) != NULL;
}
