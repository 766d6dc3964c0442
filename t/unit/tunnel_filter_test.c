/*
 * Unit test of the kube proxy's routes and filters
 * (operator/src/kn_tunnel_filter.c), built without the rest of the
 * Operator by t/079-tunnel-filter-unit.t:
 *
 *   gcc -Ioperator/src t/unit/tunnel_filter_test.c \
 *       operator/src/kn_tunnel_filter.c -ljansson
 *
 * Prints TAP.  The cases are the requests a tenant could shape to see
 * more than its own: paths the API server would resolve otherwise, a
 * second labelSelector, a watch the filter takes for a list.
 */

#include <stdio.h>
#include <string.h>

#include "kn_tunnel_filter.h"


static int  tests;
static int  failed;


static void
ok(int cond, const char *what)
{
    tests++;

    if (!cond) {
        failed++;
    }

    printf("%sok %d - %s\n", cond ? "" : "not ", tests, what);
}


static void
check(const char *method, const char *path, const char *query, int good)
{
    char         what[512];
    const char  *why;

    why = kn_tunnel_check(method, path, query);
    snprintf(what, sizeof(what), "check %s %s?%s: %s%s%s", method, path,
             query, good ? "accepted" : "refused", why ? ": " : "",
             why ? why : "");
    ok((why == NULL) == good, what);
}


static void
route(const char *method, const char *path, const char *query,
    kn_tun_route_e expect, int watch)
{
    char            what[512];
    kn_tun_route_t  r;

    kn_tunnel_route(method, path, query, &r);
    snprintf(what, sizeof(what), "route %s %s?%s: %d, watch %d", method,
             path, query, (int) expect, watch);
    ok(r.route == expect && (int) r.watch == watch, what);
}


static void
query(const char *in, const char *expect)
{
    char   buf[256], what[512];
    kn_rc  rc;

    rc = kn_tunnel_tenant_query(in, "t", buf, sizeof(buf));
    snprintf(what, sizeof(what), "tenant query of \"%s\": \"%s\"", in,
             expect);
    ok(rc == KN_OK && strcmp(buf, expect) == 0, what);

    if (rc == KN_OK && strcmp(buf, expect) != 0) {
        printf("# got \"%s\"\n", buf);
    }
}


static json_t *
load(const char *text)
{
    return json_loads(text, 0, NULL);
}


static char *
dump(json_t *j)
{
    return json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
}


static void
list(const char *in, kn_rc expect_rc, const char *expect, json_t *ns)
{
    char    *s, what[512];
    kn_rc    rc;
    json_t  *j;

    j = load(in);
    rc = kn_tunnel_filter_list(j, ns);
    s = dump(j);
    snprintf(what, sizeof(what), "filter %.200s: %s", in,
             expect ? expect : "refused");
    ok(rc == expect_rc && (expect == NULL || strcmp(s, expect) == 0), what);
    free(s);
    json_decref(j);
}


static void
event(const char *in, int expect, json_t *ns)
{
    char     what[512];
    json_t  *j;

    j = load(in);
    snprintf(what, sizeof(what), "event %.200s: %s", in,
             expect ? "passed" : "dropped");
    ok(kn_tunnel_filter_event(j, ns) == expect, what);
    json_decref(j);
}


int
main(void)
{
    char            buf[64], body[512];
    json_t         *ns, *spec;
    kn_tun_route_t  r;

    /* paths and queries */
    check("GET", "/api/v1/namespaces", "", 1);
    check("GET", "/api/v1/namespaces/t-apps/configmaps",
          "watch=true&labelSelector=a%3Db&fieldSelector=x.y%3Dz", 1);
    check("GET", "/api/v1/namespaces/t-apps/../../secrets", "", 0);
    check("GET", "/api/v1/namespaces/./t-apps", "", 0);
    check("GET", "/api//v1/namespaces", "", 0);
    check("GET", "/api/v1/namespaces/%2e%2e/secrets", "", 0);
    check("GET", "/api/v1/namespaces/a\\b", "", 0);
    check("GET", "api/v1/namespaces", "", 0);
    check("GET", "/api/v1/namespaces/t?x", "", 0);
    check("CONNECT", "/api/v1/namespaces", "", 0);
    check("GET", "/api/v1/namespaces", "label%53elector=x", 0);
    check("GET", "/api/v1/namespaces", "labelSelector+=x", 0);
    check("GET", "/api/v1/namespaces", "a=b c", 0);
    check("GET", "/api/v1/namespaces", "a=b#c", 0);

    /* routes */
    route("GET", "/api/v1/namespaces", "", KN_TUN_NS_COLLECTION, 0);
    route("GET", "/api/v1/namespaces", "watch=1", KN_TUN_NS_COLLECTION, 1);
    route("GET", "/api/v1/namespaces", "watch=T&limit=1",
          KN_TUN_NS_COLLECTION, 1);
    route("GET", "/api/v1/namespaces", "watch=false&watch=true",
          KN_TUN_NS_COLLECTION, 0);
    route("GET", "/api/v1/namespaces", "watching=true",
          KN_TUN_NS_COLLECTION, 0);
    route("POST", "/api/v1/namespaces", "", KN_TUN_PASS, 0);
    route("DELETE", "/api/v1/namespaces/x", "", KN_TUN_PASS, 0);
    route("GET", "/api/v1/namespaces/x", "", KN_TUN_NS_GET, 0);
    route("GET", "/api/v1/namespaces/x/status", "", KN_TUN_PASS, 0);
    route("GET", "/api/v1/namespaces/x/pods", "", KN_TUN_PASS, 0);
    route("GET", "/api/v1/pods", "watch=true", KN_TUN_PODS_ALL, 1);
    route("GET", "/api/v1/pods/x", "", KN_TUN_PASS, 0);
    route("GET", "/api/v1/configmaps", "", KN_TUN_PASS, 0);
    route("GET", "/api/v1/nodes", "", KN_TUN_CLUSTER_LIST, 0);
    route("GET", "/api/v1/nodes/n1", "", KN_TUN_CLUSTER_GET, 0);
    route("GET", "/api/v1/nodes/n1/proxy", "", KN_TUN_PASS, 0);
    route("GET", "/apis/storage.k8s.io/v1/storageclasses", "",
          KN_TUN_CLUSTER_LIST, 0);
    route("GET", "/apis/storage.k8s.io/v1beta1/storageclasses/s", "",
          KN_TUN_CLUSTER_GET, 0);
    route("GET", "/apis/evil.io/v1/storageclasses", "", KN_TUN_PASS, 0);
    route("GET", "/apis/node.k8s.io/v1/runtimeclasses", "watch=true",
          KN_TUN_CLUSTER_LIST, 1);

    kn_tunnel_route("GET", "/apis/networking.k8s.io/v1/ingressclasses", "",
                    &r);
    snprintf(buf, sizeof(buf), "%.*s", (int) r.api_version_len,
             r.api_version);
    ok(strcmp(r.list_kind, "IngressClassList") == 0
       && strcmp(buf, "networking.k8s.io/v1") == 0,
       "an empty list's kind and apiVersion: IngressClassList "
       "networking.k8s.io/v1");

    /* the tenant's selector first, the caller's combined, no other */
    query("", "labelSelector=kubenova.io%2Ftenant%3Dt");
    query("limit=5&labelSelector=a%3Db&watch=1",
          "labelSelector=kubenova.io%2Ftenant%3Dt%2Ca%3Db&limit=5&watch=1");
    query("labelSelector=a&labelSelector=kubenova.io%2Ftenant%3Dother",
          "labelSelector=kubenova.io%2Ftenant%3Dt%2Ca");
    query("labelSelector=&x=1", "labelSelector=kubenova.io%2Ftenant%3Dt&x=1");
    ok(kn_tunnel_tenant_query("limit=500", "t", buf, 20) == KN_ERROR,
       "tenant query: too small a buffer is an error");

    /* lists, tables, events */
    ns = load("{\"t-apps\": true, \"t-owner\": true}");

    list("{\"kind\":\"PodList\",\"items\":[{\"metadata\":{\"namespace\":"
         "\"t-apps\",\"name\":\"a\"}},{\"metadata\":{\"namespace\":\"x\","
         "\"name\":\"b\"}},{\"metadata\":{\"name\":\"c\"}}]}", KN_OK,
         "{\"items\":[{\"metadata\":{\"name\":\"a\",\"namespace\":"
         "\"t-apps\"}}],\"kind\":\"PodList\"}", ns);
    list("{\"kind\":\"Table\",\"rows\":[{\"cells\":[\"a\"],\"object\":"
         "{\"metadata\":{\"namespace\":\"t-owner\"}}},{\"cells\":[\"b\"],"
         "\"object\":{\"metadata\":{\"namespace\":\"kube-system\"}}},"
         "{\"cells\":[\"c\"]}]}", KN_OK,
         "{\"kind\":\"Table\",\"rows\":[{\"cells\":[\"a\"],\"object\":"
         "{\"metadata\":{\"namespace\":\"t-owner\"}}}]}", ns);
    list("{\"kind\":\"Status\",\"code\":200}", KN_ERROR, NULL, ns);
    list("{\"kind\":\"PodList\"}", KN_ERROR, NULL, ns);
    list("{\"type\":\"ADDED\",\"object\":{\"kind\":\"Pod\"}}", KN_ERROR,
         NULL, ns);

    event("{\"type\":\"ADDED\",\"object\":{\"kind\":\"Pod\",\"metadata\":"
          "{\"namespace\":\"t-apps\"}}}", 1, ns);
    event("{\"type\":\"MODIFIED\",\"object\":{\"kind\":\"Pod\",\"metadata\":"
          "{\"namespace\":\"kube-system\"}}}", 0, ns);
    event("{\"type\":\"DELETED\",\"object\":{\"kind\":\"Pod\"}}", 0, ns);
    event("{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\"}}", 1, ns);
    event("{\"type\":\"ADDED\"}", 0, ns);
    event("{\"kind\":\"PodList\",\"items\":[]}", 0, ns);
    event("{\"type\":\"ADDED\",\"object\":{\"kind\":\"Table\",\"rows\":"
          "[{\"object\":{\"metadata\":{\"namespace\":\"x\"}}}]}}", 0, ns);
    event("{\"type\":\"ADDED\",\"object\":{\"kind\":\"Table\",\"rows\":"
          "[{\"object\":{\"metadata\":{\"namespace\":\"t-apps\"}}}]}}", 1,
          ns);

    /* what a tenant's spec lets it see */
    spec = load("{\"cluster_resources\":[\"storageclasses\",\"nodes\"]}");
    kn_tunnel_route("GET", "/apis/storage.k8s.io/v1/storageclasses", "", &r);
    ok(kn_tunnel_cluster_visible(spec, &r), "cluster_resources: "
       "storageclasses visible");
    kn_tunnel_route("GET", "/api/v1/nodes", "", &r);
    ok(!kn_tunnel_cluster_visible(spec, &r), "... nodes never");
    kn_tunnel_route("GET", "/apis/scheduling.k8s.io/v1/priorityclasses", "",
                    &r);
    ok(!kn_tunnel_cluster_visible(spec, &r), "... priorityclasses not "
       "listed: not visible");
    ok(!kn_tunnel_cluster_visible(NULL, &r), "... no spec: not visible");

    ok(kn_tunnel_status(404, "NotFound", "namespaces \"x\" not found", body,
                        sizeof(body)) == KN_OK
       && strcmp(body, "{\"kind\":\"Status\",\"apiVersion\":\"v1\","
                 "\"metadata\":{},\"status\":\"Failure\",\"message\":"
                 "\"namespaces \\\"x\\\" not found\",\"reason\":"
                 "\"NotFound\",\"code\":404}") == 0,
       "a Status object as the API server words it");
    ok(kn_tunnel_status(500, "InternalError", "x", body, 10) == KN_ERROR,
       "... too small a buffer is an error");

    json_decref(ns);
    json_decref(spec);

    printf("1..%d\n", tests);

    return failed ? 1 : 0;
}
