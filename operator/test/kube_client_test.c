/*
 * A command-line driver of kn_kube and kn_watch, for t/050-kube-client.t:
 * each command runs on the Operator's event loop against a real
 * kube-apiserver and prints what happened as JSON, one object per line, so
 * that the test asserts in Perl while kubectl changes things beside it.
 *
 *   kube_client_test [options] COMMAND ARGS…
 *
 *   apply   RESOURCE FILE            server-side apply of the JSON in FILE
 *   get     APIVERSION RESOURCE NS NAME
 *   list    APIVERSION RESOURCE NS   (--limit N, --selector S,
 *                                    --pages N: handed over page by page,
 *                                    the receiver stopping at page N; 0:
 *                                    never)
 *   delete  APIVERSION RESOURCE NS NAME   (--propagation P)
 *   post    APIVERSION RESOURCE NS NAME SUBRESOURCE FILE   ("-" for none)
 *   poll    APIVERSION RESOURCE NS NAME INTERVAL_MS COUNT
 *                                    a get every INTERVAL_MS, COUNT times
 *   burst   N APIVERSION RESOURCE NS NAME   N gets at once (rate limit)
 *   watch   APIVERSION RESOURCE NS   (--rv RV) until SIGTERM or SIGINT
 *   unit                             checks that need no server (TAP)
 *
 * NS "-" means none (cluster-scoped or all namespaces).
 *
 *   --kubeconfig FILE | --in-cluster HOST PORT SA_DIR
 *   --qps Q --burst B --max-response BYTES --timeout-ms MS
 *   --token-reread-ms MS --max-retries N --max-line BYTES
 *   --watch-timeout S --quiet 1 (watch: count events, check their order)
 *
 * Built by the test itself (see t/050-kube-client.t), also with
 * -fsanitize=address,undefined.
 */

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kn_kube.h"
#include "kn_kubeconfig.h"
#include "kn_log.h"
#include "kn_loop.h"
#include "kn_watch.h"


typedef struct {
    kn_log_t            log;
    kn_loop_t          *loop;
    kn_kube_t          *kube;
    kn_watch_t         *watch;

    int                 pending;        /* requests still to finish */
    unsigned            count;          /* poll: gets left */
    unsigned            interval_ms;
    kn_timer_t          timer;
    kn_kube_ref_t       ref;
    uint64_t            started;
} test_ctx_t;


static test_ctx_t  ctx;
static int         paged = -1;      /* --pages: the page to stop at */
static json_t     *paged_names;
static json_t     *paged_sizes;
static int         quiet;           /* --quiet: count events, print none */
static uint64_t    quiet_events;
static char        quiet_last_rv[64];


static void
print_json(json_t *obj)
{
    char  *s;

    s = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
    if (s != NULL) {
        printf("%s\n", s);
        free(s);
    }
    fflush(stdout);
    json_decref(obj);
}


static json_t *
result_json(const kn_kube_result_t *res)
{
    json_t  *o;

    o = json_object();
    json_object_set_new(o, "status", json_integer(res->status));
    json_object_set_new(o, "error", res->error ? json_string(res->error)
                                               : json_null());
    json_object_set_new(o, "reason", res->reason ? json_string(res->reason)
                                                 : json_null());
    json_object_set_new(o, "attempts", json_integer(res->attempts));

    return o;
}


static void
stats_print(void)
{
    json_t           *o, *s;
    kn_kube_stats_t   st;

    kn_kube_get_stats(ctx.kube, &st);
    s = json_object();
    json_object_set_new(s, "requests", json_integer((json_int_t) st.requests));
    json_object_set_new(s, "retries", json_integer((json_int_t) st.retries));
    json_object_set_new(s, "throttled",
                        json_integer((json_int_t) st.throttled));
    json_object_set_new(s, "token_reads",
                        json_integer((json_int_t) st.token_reads));
    json_object_set_new(s, "live", json_integer((json_int_t) st.live));
    json_object_set_new(s, "quiet_events", json_integer((json_int_t)
                        quiet_events));
    json_object_set_new(s, "quiet_last_rv", json_string(quiet_last_rv));
    if (ctx.watch != NULL) {
        kn_watch_stats_t  ws;

        kn_watch_get_stats(ctx.watch, &ws);
        json_object_set_new(s, "pauses", json_integer((json_int_t)
                            ws.pauses));
        json_object_set_new(s, "events", json_integer((json_int_t)
                            ws.events));
    }
    json_object_set_new(s, "elapsed_ms", json_integer((json_int_t)
                        (kn_loop_now(ctx.loop) - ctx.started)));
    o = json_object();
    json_object_set_new(o, "stats", s);
    print_json(o);
}


static void
finish_one(void)
{
    if (--ctx.pending == 0) {
        kn_loop_stop(ctx.loop);
    }
}


/* get, apply, delete, post: the whole body */
static void
body_done(const kn_kube_result_t *res, void *data)
{
    json_t  *o;

    (void) data;

    o = result_json(res);
    json_object_set(o, "body", res->body ? res->body : json_null());
    print_json(o);
    finish_one();
}


/* list --pages: the names and each page's size, as they come */
static kn_rc
list_page(json_t *items, void *data)
{
    size_t   i;
    json_t  *item;

    (void) data;

    json_array_append_new(paged_sizes, json_integer(json_array_size(items)));

    if ((int) json_array_size(paged_sizes) == paged) {
        return KN_ERROR;
    }

    json_array_foreach(items, i, item) {
        json_array_append(paged_names, json_object_get(
                          json_object_get(item, "metadata"), "name"));
    }

    return KN_OK;
}


/* list: names, pages, resourceVersion */
static void
list_done(const kn_kube_result_t *res, void *data)
{
    size_t   i;
    json_t  *o, *names, *item;

    (void) data;

    o = result_json(res);
    json_object_set_new(o, "pages", json_integer(res->pages));

    if (paged >= 0) {
        json_object_set_new(o, "names", paged_names);
        json_object_set_new(o, "page_sizes", paged_sizes);
        json_object_set_new(o, "gathered", json_integer(json_array_size(
                            json_object_get(res->body, "items"))));
        print_json(o);
        finish_one();
        return;
    }

    if (res->error == NULL) {
        names = json_array();
        json_array_foreach(json_object_get(res->body, "items"), i, item) {
            json_array_append(names, json_object_get(
                              json_object_get(item, "metadata"), "name"));
        }
        json_object_set_new(o, "names", names);
        json_object_set(o, "resourceVersion", json_object_get(
                        json_object_get(res->body, "metadata"),
                        "resourceVersion"));
        json_object_set(o, "kind", json_object_get(res->body, "kind"));
    }

    print_json(o);
    finish_one();
}


/* poll: status only, then the next get after interval_ms */
static void
poll_done(const kn_kube_result_t *res, void *data)
{
    json_t  *o;

    (void) data;

    o = result_json(res);
    json_object_set_new(o, "t", json_integer((json_int_t)
                        (kn_loop_now(ctx.loop) - ctx.started)));
    print_json(o);

    if (--ctx.count == 0) {
        kn_loop_stop(ctx.loop);
        return;
    }

    if (kn_timer_add(ctx.loop, &ctx.timer, ctx.interval_ms) != KN_OK) {
        kn_loop_stop(ctx.loop);
    }
}


/* burst: status only */
static void
burst_done(const kn_kube_result_t *res, void *data)
{
    (void) data;

    print_json(result_json(res));
    finish_one();
}


static void
poll_timer(kn_timer_t *timer)
{
    (void) timer;

    if (kn_kube_get(ctx.kube, &ctx.ref, poll_done, NULL, NULL) != KN_OK) {
        kn_loop_stop(ctx.loop);
    }
}


static const char *const  event_names[] = {
    "ADDED", "MODIFIED", "DELETED", "SYNCED", "ERROR"
};


static void
watch_handler(kn_watch_t *w, kn_watch_event_e ev, json_t *obj, void *data)
{
    json_t            *o, *meta, *s;
    kn_watch_stats_t   st;

    (void) data;

    if (quiet && (ev == KN_WATCH_ADDED || ev == KN_WATCH_MODIFIED
                  || ev == KN_WATCH_DELETED))
    {
        const char *rv = json_string_value(json_object_get(
                             json_object_get(obj, "metadata"),
                             "resourceVersion"));
        /* in order: every resourceVersion is larger than the last */
        if (rv != NULL && quiet_last_rv[0] != '\0'
            && strtoull(rv, NULL, 10) <= strtoull(quiet_last_rv, NULL, 10))
        {
            printf("{\"event\":\"OUT_OF_ORDER\",\"rv\":\"%s\"}\n", rv);
        }
        snprintf(quiet_last_rv, sizeof(quiet_last_rv), "%s", rv ? rv : "");
        quiet_events++;
        return;
    }

    o = json_object();
    json_object_set_new(o, "event", json_string(event_names[ev]));

    meta = json_object_get(obj, "metadata");
    if (meta != NULL) {
        json_object_set(o, "name", json_object_get(meta, "name"));
        json_object_set(o, "namespace", json_object_get(meta, "namespace"));
        json_object_set(o, "rv", json_object_get(meta, "resourceVersion"));
        json_object_set(o, "data", json_object_get(obj, "data"));
    }

    if (ev == KN_WATCH_ERROR) {
        json_object_set_new(o, "error", json_string(kn_watch_last_error(w)));
        if (obj != NULL) {
            json_object_set(o, "code", json_object_get(obj, "code"));
        }
    }

    kn_watch_get_stats(w, &st);
    s = json_object();
    json_object_set_new(s, "lists", json_integer((json_int_t) st.lists));
    json_object_set_new(s, "relists", json_integer((json_int_t) st.relists));
    json_object_set_new(s, "gone", json_integer((json_int_t) st.gone));
    json_object_set_new(s, "watches", json_integer((json_int_t) st.watches));
    json_object_set_new(s, "events", json_integer((json_int_t) st.events));
    json_object_set_new(s, "bookmarks",
                        json_integer((json_int_t) st.bookmarks));
    json_object_set_new(s, "errors", json_integer((json_int_t) st.errors));
    json_object_set_new(s, "pauses", json_integer((json_int_t) st.pauses));
    json_object_set_new(o, "stats", s);
    json_object_set_new(o, "watch_rv",
                        json_string(kn_watch_resource_version(w)));

    print_json(o);
}


static void
on_signal(void *data, int signo)
{
    (void) data;
    (void) signo;

    kn_loop_stop(ctx.loop);
}


static json_t *
load_json(const char *path)
{
    json_t        *j;
    json_error_t   err;

    j = json_load_file(path, 0, &err);
    if (j == NULL) {
        fprintf(stderr, "%s: %s\n", path, err.text);
    }

    return j;
}


static const char *
ns_arg(const char *s)
{
    return strcmp(s, "-") == 0 ? NULL : s;
}


/* -- unit checks (no server) -------------------------------------------- */

static unsigned  unit_n;
static unsigned  unit_failed;

static void
unit_ok(int ok, const char *name)
{
    unit_n++;
    if (!ok) {
        unit_failed++;
    }
    printf("%sok %u - %s\n", ok ? "" : "not ", unit_n, name);
}


typedef struct {
    char      out[4096];
    size_t    len;
    unsigned  lines;
} unit_lines_t;

static kn_rc
unit_line(const char *line, size_t len, void *data)
{
    unit_lines_t  *u = data;

    if (u->len + len + 1 < sizeof(u->out)) {
        memcpy(u->out + u->len, line, len);
        u->len += len;
        u->out[u->len++] = '|';
        u->out[u->len] = '\0';
    }
    u->lines++;

    return KN_OK;
}


static int
unit(const char *dir)
{
    char               path[512], buf[512], err[256];
    FILE              *f;
    size_t             i;
    kn_rc              rc;
    unit_lines_t       u;
    kn_kube_ref_t      ref;
    kn_kubeconfig_t    cfg;
    kn_watch_lines_t   lines;
    const char        *stream = "{\"a\":1}\n\n{\"b\":2}\n{\"c\":";

    /* paths */
    memset(&ref, 0, sizeof(ref));
    ref.api_version = "v1";
    ref.resource = "configmaps";
    ref.namespace = "ns1";
    ref.name = "x";
    rc = kn_kube_path(&ref, buf, sizeof(buf));
    unit_ok(rc == KN_OK && strcmp(buf, "/api/v1/namespaces/ns1/configmaps/x")
            == 0, "core path");

    ref.api_version = "rbac.authorization.k8s.io/v1";
    ref.resource = "clusterroles";
    ref.namespace = NULL;
    ref.name = "system:basic-user";
    rc = kn_kube_path(&ref, buf, sizeof(buf));
    unit_ok(rc == KN_OK && strcmp(buf, "/apis/rbac.authorization.k8s.io/v1/"
            "clusterroles/system%3Abasic-user") == 0,
            "group path, escaped name");

    ref.api_version = "v1";
    ref.resource = "serviceaccounts";
    ref.namespace = "t1";
    ref.name = "owner";
    ref.subresource = "token";
    rc = kn_kube_path(&ref, buf, sizeof(buf));
    unit_ok(rc == KN_OK && strcmp(buf, "/api/v1/namespaces/t1/"
            "serviceaccounts/owner/token") == 0, "subresource path");

    ref.subresource = NULL;
    ref.name = "../secrets";
    unit_ok(kn_kube_path(&ref, buf, sizeof(buf)) == KN_ERROR,
            "a name with / is refused");
    ref.name = "..";
    unit_ok(kn_kube_path(&ref, buf, sizeof(buf)) == KN_ERROR,
            "a name .. is refused");
    ref.name = "";
    unit_ok(kn_kube_path(&ref, buf, sizeof(buf)) == KN_ERROR,
            "an empty name is refused");
    ref.name = "x";
    unit_ok(kn_kube_path(&ref, buf, 10) == KN_ERROR,
            "a path longer than the buffer is refused");

    /* the watch line splitter, fed one byte at a time and at once */
    for (i = 0; i < 2; i++) {
        memset(&u, 0, sizeof(u));
        kn_watch_lines_init(&lines, 64);
        if (i == 0) {
            const char *p;
            rc = KN_OK;
            for (p = stream; *p != '\0' && rc == KN_OK; p++) {
                rc = kn_watch_lines_feed(&lines, p, 1, unit_line, &u);
            }
        } else {
            rc = kn_watch_lines_feed(&lines, stream, strlen(stream),
                                     unit_line, &u);
        }
        unit_ok(rc == KN_OK && u.lines == 2
                && strcmp(u.out, "{\"a\":1}|{\"b\":2}|") == 0
                && lines.len == 5,
                i == 0 ? "lines: byte by byte" : "lines: in one piece");
        kn_watch_lines_reset(&lines);
    }

    memset(&u, 0, sizeof(u));
    kn_watch_lines_init(&lines, 8);
    rc = kn_watch_lines_feed(&lines, "12345678\n", 9, unit_line, &u);
    unit_ok(rc == KN_OK && u.lines == 1, "lines: exactly max is accepted");
    rc = kn_watch_lines_feed(&lines, "12345", 5, unit_line, &u);
    rc = rc == KN_OK ? kn_watch_lines_feed(&lines, "6789", 4, unit_line, &u)
                     : rc;
    unit_ok(rc == KN_ERROR && lines.len <= 8 && lines.cap <= 8,
            "lines: a line over max is an error, the buffer stays bounded");
    kn_watch_lines_reset(&lines);
    kn_watch_lines_init(&lines, 8);
    rc = kn_watch_lines_feed(&lines, "123456789\n", 10, unit_line, &u);
    unit_ok(rc == KN_ERROR, "lines: an over-long complete line is an error");
    kn_watch_lines_reset(&lines);

    /* watch events */
    {
        json_t      *ev;
        const char  *good = "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":"
                            "{\"name\":\"a\",\"resourceVersion\":\"5\"}}}";
        const char  *bad[] = {
            "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":"
            "{\"name\":\"a\"}}}",
            "{\"type\":\"RENAMED\",\"object\":{}}",
            "{\"type\":\"ADDED\"}",
            "{\"type\":\"ADDED\",\"object\":{\"metadata\":",
            "[1,2]",
        };

        rc = kn_watch_parse_event(good, strlen(good), &ev, err, sizeof(err));
        unit_ok(rc == KN_OK && ev != NULL, "watch event: MODIFIED");
        json_decref(ev);

        for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            rc = kn_watch_parse_event(bad[i], strlen(bad[i]), &ev, err,
                                      sizeof(err));
            snprintf(buf, sizeof(buf), "watch event refused: %s", err);
            unit_ok(rc == KN_ERROR && ev == NULL, buf);
        }
    }

    /* kubeconfig: data fields, relative paths, errors */
    snprintf(path, sizeof(path), "%s/ca.pem", dir);
    f = fopen(path, "w");
    if (f != NULL) {
        fputs("CA-PEM\n", f);
        fclose(f);
    }
    snprintf(path, sizeof(path), "%s/kc1.yaml", dir);
    f = fopen(path, "w");
    if (f != NULL) {
        fputs("apiVersion: v1\nkind: Config\n"
              "clusters:\n"
              "- name: c1\n  cluster:\n    server: https://10.0.0.1:6443/\n"
              "    certificate-authority: ca.pem\n"
              "- name: c2\n  cluster:\n    server: https://c2:443\n"
              "    certificate-authority-data: Q0EtREFUQQ==\n"
              "    insecure-skip-tls-verify: true\n"
              "users:\n"
              "- name: u1\n  user:\n    client-certificate-data: Q0VSVA==\n"
              "    client-key-data: S0VZ\n"
              "- name: u2\n  user:\n    tokenFile: tok\n"
              "- name: u3\n  user:\n    exec: {command: aws}\n"
              "contexts:\n"
              "- name: x1\n  context: {cluster: c1, user: u1, namespace: n1}\n"
              "- name: x2\n  context: {cluster: c2, user: u2}\n"
              "- name: x3\n  context: {cluster: c2, user: u3}\n"
              "current-context: x1\n", f);
        fclose(f);
    }

    rc = kn_kubeconfig_load(&cfg, path, NULL, err, sizeof(err));
    unit_ok(rc == KN_OK && strcmp(cfg.server, "https://10.0.0.1:6443") == 0
            && cfg.ca_pem && strcmp(cfg.ca_pem, "CA-PEM\n") == 0
            && cfg.cert_pem && strcmp(cfg.cert_pem, "CERT") == 0
            && cfg.key_pem && strcmp(cfg.key_pem, "KEY") == 0
            && cfg.namespace && strcmp(cfg.namespace, "n1") == 0
            && !cfg.insecure && cfg.token == NULL,
            "kubeconfig: current context, relative CA file, cert/key data");
    if (rc == KN_OK) {
        kn_kubeconfig_free(&cfg);
    } else {
        printf("# %s\n", err);
    }

    rc = kn_kubeconfig_load(&cfg, path, "x2", err, sizeof(err));
    snprintf(buf, sizeof(buf), "%s/tok", dir);
    unit_ok(rc == KN_OK && strcmp(cfg.server, "https://c2:443") == 0
            && cfg.ca_pem && strcmp(cfg.ca_pem, "CA-DATA") == 0
            && cfg.insecure && cfg.token_file
            && strcmp(cfg.token_file, buf) == 0,
            "kubeconfig: named context, CA data, tokenFile, insecure");
    if (rc == KN_OK) {
        kn_kubeconfig_free(&cfg);
    }

    rc = kn_kubeconfig_load(&cfg, path, "x3", err, sizeof(err));
    unit_ok(rc == KN_ERROR && strstr(err, "not supported") != NULL,
            "kubeconfig: exec plugins are refused clearly");
    rc = kn_kubeconfig_load(&cfg, path, "nope", err, sizeof(err));
    unit_ok(rc == KN_ERROR && strstr(err, "\"nope\" not found") != NULL,
            "kubeconfig: an unknown context");

    snprintf(path, sizeof(path), "%s/kc2.yaml", dir);
    f = fopen(path, "w");
    if (f != NULL) {
        fputs("clusters: [\n", f);
        fclose(f);
    }
    rc = kn_kubeconfig_load(&cfg, path, NULL, err, sizeof(err));
    unit_ok(rc == KN_ERROR && strstr(err, "kc2.yaml") != NULL,
            "kubeconfig: malformed YAML");

    snprintf(path, sizeof(path), "%s/kc3.yaml", dir);
    f = fopen(path, "w");
    if (f != NULL) {
        fputs("clusters:\n- name: c\n  cluster: {server: https://x, "
              "certificate-authority-data: '!!notbase64'}\n"
              "contexts:\n- name: x\n  context: {cluster: c}\n"
              "current-context: x\n", f);
        fclose(f);
    }
    rc = kn_kubeconfig_load(&cfg, path, NULL, err, sizeof(err));
    unit_ok(rc == KN_ERROR && strstr(err, "invalid base64") != NULL,
            "kubeconfig: invalid base64");

    {
        const char *text = "clusters:\n- name: c\n  cluster: {server: "
                           "https://x, certificate-authority: /etc/passwd}\n"
                           "contexts:\n- name: x\n  context: {cluster: c}\n"
                           "current-context: x\n";

        rc = kn_kubeconfig_parse(&cfg, text, strlen(text), "text", NULL,
                                 NULL, err, sizeof(err));
        unit_ok(rc == KN_ERROR && strstr(err, "not allowed") != NULL,
                "kubeconfig text without a directory: no file is opened");
    }

    /* in cluster: host, port, service-account directory */
    snprintf(path, sizeof(path), "%s/ca.crt", dir);
    f = fopen(path, "w");
    if (f != NULL) {
        fputs("CA\n", f);
        fclose(f);
    }
    snprintf(path, sizeof(path), "%s/namespace", dir);
    f = fopen(path, "w");
    if (f != NULL) {
        fputs("kube-system\n", f);
        fclose(f);
    }
    rc = kn_kubeconfig_in_cluster(&cfg, "fd00::1", "443", dir, err,
                                  sizeof(err));
    snprintf(buf, sizeof(buf), "%s/token", dir);
    unit_ok(rc == KN_OK && strcmp(cfg.server, "https://[fd00::1]:443") == 0
            && strcmp(cfg.token_file, buf) == 0
            && cfg.namespace && strcmp(cfg.namespace, "kube-system") == 0,
            "in cluster: IPv6 host, token file, namespace");
    if (rc == KN_OK) {
        kn_kubeconfig_free(&cfg);
    }

    snprintf(path, sizeof(path), "%s/tokfile", dir);
    f = fopen(path, "w");
    if (f != NULL) {
        fputs("  abc.def \n", f);
        fclose(f);
    }
    {
        char *t = kn_kubeconfig_read_token(path, err, sizeof(err));
        unit_ok(t != NULL && strcmp(t, "abc.def") == 0,
                "token file: trimmed");
        free(t);
    }

    printf("1..%u\n", unit_n);

    return unit_failed ? 1 : 0;
}


/* -- main ------------------------------------------------------------------ */

static void
usage(void)
{
    fprintf(stderr, "usage: kube_client_test [--kubeconfig FILE | "
            "--in-cluster HOST PORT SA_DIR] [options] COMMAND ARGS...\n");
    exit(2);
}


int
main(int argc, char **argv)
{
    int                  i, rc, n;
    char                 err[512];
    json_t              *obj;
    const char          *cmd, *kubeconfig, *host, *port, *sa_dir, *rv,
                        *propagation, *selector;
    kn_watch_opts_t      wopts;
    kn_kube_options_t    opts;
    kn_kubeconfig_t      cfg;
    kn_kube_list_opts_t  lopts;
    static const int     signals[] = { SIGTERM, SIGINT };

    memset(&opts, 0, sizeof(opts));
    memset(&wopts, 0, sizeof(wopts));
    memset(&lopts, 0, sizeof(lopts));
    kubeconfig = NULL;
    host = port = sa_dir = NULL;
    rv = NULL;
    propagation = NULL;
    selector = NULL;

    for (i = 1; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        const char *o = argv[i];

        if (strcmp(o, "--in-cluster") == 0 && i + 3 < argc) {
            host = argv[++i];
            port = argv[++i];
            sa_dir = argv[++i];
            continue;
        }

        if (i + 1 >= argc) {
            usage();
        }

        if (strcmp(o, "--kubeconfig") == 0) {
            kubeconfig = argv[++i];
        } else if (strcmp(o, "--qps") == 0) {
            opts.qps = atof(argv[++i]);
        } else if (strcmp(o, "--burst") == 0) {
            opts.burst = (unsigned) atoi(argv[++i]);
        } else if (strcmp(o, "--max-response") == 0) {
            opts.max_response = (size_t) atol(argv[++i]);
        } else if (strcmp(o, "--timeout-ms") == 0) {
            opts.timeout_ms = atol(argv[++i]);
        } else if (strcmp(o, "--token-reread-ms") == 0) {
            opts.token_reread_ms = (unsigned) atoi(argv[++i]);
        } else if (strcmp(o, "--max-retries") == 0) {
            opts.max_retries = (unsigned) atoi(argv[++i]);
        } else if (strcmp(o, "--max-line") == 0) {
            wopts.max_line = (size_t) atol(argv[++i]);
        } else if (strcmp(o, "--watch-timeout") == 0) {
            wopts.timeout_s = (unsigned) atoi(argv[++i]);
        } else if (strcmp(o, "--rv") == 0) {
            rv = argv[++i];
        } else if (strcmp(o, "--limit") == 0) {
            lopts.limit = (unsigned) atoi(argv[++i]);
        } else if (strcmp(o, "--pages") == 0) {
            paged = atoi(argv[++i]);
        } else if (strcmp(o, "--selector") == 0) {
            selector = argv[++i];
        } else if (strcmp(o, "--quiet") == 0) {
            quiet = atoi(argv[++i]);
        } else if (strcmp(o, "--propagation") == 0) {
            propagation = argv[++i];
        } else {
            usage();
        }
    }

    if (i >= argc) {
        usage();
    }

    cmd = argv[i++];
    argc -= i;
    argv += i;

    if (strcmp(cmd, "unit") == 0) {
        return unit(argc > 0 ? argv[0] : "/tmp");
    }

    ctx.log.level = KN_LOG_WARN;
    kn_timer_init(&ctx.timer, poll_timer, NULL);
    curl_global_init(CURL_GLOBAL_DEFAULT);

    if (host != NULL) {
        rc = kn_kubeconfig_in_cluster(&cfg, host, port, sa_dir, err,
                                      sizeof(err));
    } else {
        rc = kn_kubeconfig_auto(&cfg, kubeconfig, err, sizeof(err));
    }
    if (rc != KN_OK) {
        fprintf(stderr, "kube_client_test: %s\n", err);
        return 1;
    }

    if (kn_loop_create(&ctx.log, 1024, 256, &ctx.loop) != KN_OK
        || kn_kube_create(ctx.loop, &ctx.log, &cfg, &opts, &ctx.kube)
           != KN_OK
        || kn_loop_signals(ctx.loop, signals, 2, on_signal, NULL) != KN_OK)
    {
        kn_kubeconfig_free(&cfg);
        return 1;
    }
    kn_kubeconfig_free(&cfg);

    ctx.started = kn_loop_now(ctx.loop);
    ctx.pending = 1;
    rc = KN_ERROR;

    memset(&ctx.ref, 0, sizeof(ctx.ref));

    if (strcmp(cmd, "apply") == 0 && argc == 2) {
        obj = load_json(argv[1]);
        if (obj != NULL) {
            ctx.ref.resource = argv[0];
            rc = kn_kube_apply(ctx.kube, &ctx.ref, obj, body_done, NULL,
                               NULL);
            json_decref(obj);
        }

    } else if ((strcmp(cmd, "get") == 0 || strcmp(cmd, "delete") == 0)
               && argc == 4)
    {
        ctx.ref.api_version = argv[0];
        ctx.ref.resource = argv[1];
        ctx.ref.namespace = ns_arg(argv[2]);
        ctx.ref.name = argv[3];
        rc = cmd[0] == 'g'
             ? kn_kube_get(ctx.kube, &ctx.ref, body_done, NULL, NULL)
             : kn_kube_delete(ctx.kube, &ctx.ref, propagation, body_done,
                              NULL, NULL);

    } else if (strcmp(cmd, "list") == 0 && argc == 3) {
        ctx.ref.api_version = argv[0];
        ctx.ref.resource = argv[1];
        ctx.ref.namespace = ns_arg(argv[2]);
        lopts.label_selector = selector;
        if (paged >= 0) {
            lopts.page = list_page;
            paged_names = json_array();
            paged_sizes = json_array();
        }
        rc = kn_kube_list(ctx.kube, &ctx.ref, &lopts, list_done, NULL, NULL);

    } else if (strcmp(cmd, "post") == 0 && argc == 6) {
        obj = load_json(argv[5]);
        if (obj != NULL) {
            ctx.ref.api_version = argv[0];
            ctx.ref.resource = argv[1];
            ctx.ref.namespace = ns_arg(argv[2]);
            ctx.ref.name = ns_arg(argv[3]);
            ctx.ref.subresource = ns_arg(argv[4]);
            rc = kn_kube_post(ctx.kube, &ctx.ref, obj, body_done, NULL, NULL);
            json_decref(obj);
        }

    } else if (strcmp(cmd, "poll") == 0 && argc == 6) {
        ctx.ref.api_version = argv[0];
        ctx.ref.resource = argv[1];
        ctx.ref.namespace = ns_arg(argv[2]);
        ctx.ref.name = argv[3];
        ctx.interval_ms = (unsigned) atoi(argv[4]);
        ctx.count = (unsigned) atoi(argv[5]);
        rc = ctx.count > 0 ? kn_timer_add(ctx.loop, &ctx.timer, 0)
                           : KN_ERROR;

    } else if (strcmp(cmd, "burst") == 0 && argc == 5) {
        n = atoi(argv[0]);
        ctx.ref.api_version = argv[1];
        ctx.ref.resource = argv[2];
        ctx.ref.namespace = ns_arg(argv[3]);
        ctx.ref.name = argv[4];
        ctx.pending = n;
        rc = n > 0 ? KN_OK : KN_ERROR;
        for (i = 0; i < n && rc == KN_OK; i++) {
            rc = kn_kube_get(ctx.kube, &ctx.ref, burst_done, NULL, NULL);
        }

    } else if (strcmp(cmd, "watch") == 0 && argc == 3) {
        ctx.ref.api_version = argv[0];
        ctx.ref.resource = argv[1];
        ctx.ref.namespace = ns_arg(argv[2]);
        wopts.resource_version = rv;
        wopts.label_selector = selector;
        rc = kn_watch_start(ctx.kube, &ctx.ref, &wopts, watch_handler, NULL,
                            &ctx.watch);
        if (rc == KN_OK) {
            printf("{\"event\":\"STARTED\"}\n");
            fflush(stdout);
        }

    } else {
        usage();
    }

    if (rc != KN_OK) {
        fprintf(stderr, "kube_client_test: %s: refused (%d)\n", cmd, rc);
        kn_kube_destroy(ctx.kube);
        kn_loop_destroy(ctx.loop);
        return 1;
    }

    kn_loop_run(ctx.loop);

    stats_print();

    kn_watch_stop(ctx.watch);
    kn_kube_destroy(ctx.kube);
    if (kn_timer_is_set(&ctx.timer)) {
        kn_timer_cancel(ctx.loop, &ctx.timer);
    }
    kn_loop_destroy(ctx.loop);
    curl_global_cleanup();

    return 0;
}
