/*
 * Checks of the usage side of the Operator that need no server, printed as
 * TAP, for t/068-operator-usage.t (which builds it plainly and with
 * -fsanitize=address,undefined):
 *
 *   kn_quantity    Kubernetes quantities, exactly: suffixes, exponents,
 *                  fractions, rounding, bounds and bad input
 *   kn_usage       a pod's effective request (containers, init containers,
 *                  sidecars, pod-level resources, overhead); RFC 3339 times
 *   kn_spool       sequences, files, state, restarts (reopen), leftovers,
 *                  a lost state, a corrupt file, the bound, delivery (in
 *                  flight, KN_AGAIN, KN_DECLINED, acks, reconnects)
 *
 *   usage_unit_test DIR      DIR: an empty scratch directory
 */

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kn_log.h"
#include "kn_loop.h"
#include "kn_quantity.h"
#include "kn_spool.h"
#include "kn_usage.h"


static unsigned  unit_n;
static unsigned  unit_failed;


static void
unit_ok(int ok, const char *name)
{
    unit_n++;
    unit_failed += !ok;
    printf("%sok %u - %s\n", ok ? "" : "not ", unit_n, name);
    fflush(stdout);
}


/* an __int128 in decimal */

static const char *
q_text(kn_quantity_t q, char *buf, size_t size)
{
    char                 tmp[64];
    size_t               n, i;
    unsigned __int128    v;

    v = q < 0 ? (unsigned __int128) -q : (unsigned __int128) q;
    n = 0;

    do {
        tmp[n++] = (char) ('0' + (int) (v % 10));
        v /= 10;
    } while (v != 0);

    i = 0;
    if (q < 0) {
        buf[i++] = '-';
    }

    while (n > 0 && i < size - 1) {
        buf[i++] = tmp[--n];
    }

    buf[i] = '\0';
    return buf;
}


/* -- quantities -------------------------------------------------------- */


static void
unit_quantities(void)
{
    char            name[256], got[64];
    size_t          i;
    int64_t         v;
    const char     *err;
    kn_quantity_t   q;

    static const struct { const char *text; const char *nano; } good[] = {
        { "0", "0" },
        { "1", "1000000000" },
        { "250m", "250000000" },
        { "0.5", "500000000" },
        { ".5", "500000000" },
        { "5.", "5000000000" },
        { "+1", "1000000000" },
        { "-250m", "-250000000" },
        { "100u", "100000" },
        { "7n", "7" },
        { "0.1n", "1" },                        /* rounded up */
        { "-0.1n", "0" },                       /* up, towards +inf */
        { "64Ki", "65536000000000" },
        { "128Mi", "134217728000000000" },
        { "1.5Gi", "1610612736000000000" },
        { "1Ti", "1099511627776000000000" },
        { "1Pi", "1125899906842624000000000" },
        { "1Ei", "1152921504606846976000000000" },
        { "1k", "1000000000000" },
        { "128M", "128000000000000000" },
        { "2G", "2000000000000000000" },
        { "1T", "1000000000000000000000" },
        { "1P", "1000000000000000000000000" },
        { "1E", "1000000000000000000000000000" },     /* exa */
        { "1e3", "1000000000000" },
        { "1E3", "1000000000000" },                   /* an exponent */
        { "2e+2", "200000000000" },
        { "1.5e-3", "1500000" },
        { "12e-12", "1" },                            /* 0.012n, up */
        { "1e-1000", "1" },
        { "0e1000", "0" },
        { "0.001", "1000000" },
        { "00012.50", "12500000000" },
        { "1.5000000000000000000000000000000000000000000000", "1500000000" },
        { "0.0000000000000000000000000000000000000000000001", "1" },
        { "12345678901234567890123456789",
          "12345678901234567890123456789000000000" },
    };

    static const char  *bad[] = {
        "", "m", ".", "+", "-", "1..2", "1.2.3", "1K", "1ki", "1Mib", " 1",
        "1 ", "1e", "1e+", "1e-", "abc", "--1", "+-1", "1e1001", "1Qi",
        "0x10", "1,5", "1mm", "1Gi5", "e3", "123456789012345678901234567890",
        "1e30", "100000000000000000000000000000000000000000000000000"
    };

    for (i = 0; i < KN_NELEMS(good); i++) {
        q = 12345;
        snprintf(name, sizeof(name), "quantity \"%s\" = %s nano", good[i].text,
                 good[i].nano);

        if (kn_quantity_parse(good[i].text, &q, &err) != KN_OK) {
            unit_ok(0, name);
            printf("# error: %s\n", err);
            continue;
        }

        q_text(q, got, sizeof(got));
        unit_ok(strcmp(got, good[i].nano) == 0, name);
        if (strcmp(got, good[i].nano) != 0) {
            printf("# got %s\n", got);
        }
    }

    for (i = 0; i < KN_NELEMS(bad); i++) {
        err = NULL;
        snprintf(name, sizeof(name), "quantity \"%s\" is refused", bad[i]);
        unit_ok(kn_quantity_parse(bad[i], &q, &err) == KN_ERROR
                && err != NULL && err[0] != '\0', name);
    }

    unit_ok(kn_quantity_parse(NULL, &q, &err) == KN_ERROR,
            "quantity: NULL is refused");

    /* conversions, rounded up */
    {
        static const struct {
            const char *text; int64_t scale; int64_t want;
        } conv[] = {
            { "250m", KN_QUANTITY_MILLI, 250 },
            { "0.5", KN_QUANTITY_MILLI, 500 },
            { "1.5m", KN_QUANTITY_MILLI, 2 },
            { "100u", KN_QUANTITY_MILLI, 1 },
            { "-1.5m", KN_QUANTITY_MILLI, -1 },
            { "1.5Gi", KN_QUANTITY_UNIT, 1610612736 },
            { "100M", KN_QUANTITY_UNIT, 100000000 },
            { "0.5", KN_QUANTITY_UNIT, 1 },
            { "7Ei", KN_QUANTITY_UNIT, INT64_C(8070450532247928832) },
            { "3n", KN_QUANTITY_NANO, 3 },
        };

        for (i = 0; i < KN_NELEMS(conv); i++) {
            snprintf(name, sizeof(name), "quantity \"%s\" scaled by %" PRId64
                     " = %" PRId64, conv[i].text, conv[i].scale,
                     conv[i].want);
            v = 0;
            unit_ok(kn_quantity_parse(conv[i].text, &q, NULL) == KN_OK
                    && kn_quantity_to(q, conv[i].scale, &v) == KN_OK
                    && v == conv[i].want, name);
        }

        unit_ok(kn_quantity_parse("8Ei", &q, NULL) == KN_OK
                && kn_quantity_to(q, KN_QUANTITY_UNIT, &v) == KN_ERROR,
                "quantity 8Ei in units does not fit an int64: refused");
    }

    /* sums stay exact and bounded */
    q = 0;
    unit_ok(kn_quantity_add(&q, 1) == KN_OK
            && kn_quantity_add(&q, KN_QUANTITY_MAX) == KN_ERROR && q == 1,
            "quantity sums past the bound are refused and change nothing");
}


/* -- a pod's request ----------------------------------------------------- */


static json_t *
container(const char *name, const char *cpu, const char *policy)
{
    json_t  *c;

    c = json_pack("{s:s, s:{s:{s:s, s:s}}}", "name", name, "resources",
                  "requests", "cpu", cpu, "memory", "1Mi");
    if (policy != NULL) {
        json_object_set_new(c, "restartPolicy", json_string(policy));
    }
    return c;
}


static void
unit_pod_requests(void)
{
    char            err[256];
    int64_t         v;
    json_t         *pod, *spec, *init, *cs;
    kn_quantity_t   q;

    /* containers only */
    pod = json_pack("{s:{s:[o, o]}}", "spec", "containers",
                    container("a", "250m", NULL), container("b", "0.5", NULL));
    unit_ok(kn_usage_pod_request(pod, "cpu", &q, err, sizeof(err)) == KN_OK
            && kn_quantity_to(q, KN_QUANTITY_MILLI, &v) == KN_OK && v == 750,
            "pod: the containers' requests add up (250m + 0.5 = 750m)");
    unit_ok(kn_usage_pod_request(pod, "memory", &q, err, sizeof(err))
            == KN_OK && kn_quantity_to(q, KN_QUANTITY_UNIT, &v) == KN_OK
            && v == 2 * 1048576, "pod: memory too (2 x 1Mi)");
    unit_ok(kn_usage_pod_request(pod, "nvidia.com/gpu", &q, err, sizeof(err))
            == KN_OK && q == 0, "pod: a resource nobody requests is 0");
    json_decref(pod);

    /* init containers: the larger of their largest and the sum */
    pod = json_pack("{s:{s:[o, o], s:[o, o]}}", "spec",
                    "initContainers", container("i1", "1", NULL),
                    container("i2", "300m", NULL),
                    "containers", container("c1", "200m", NULL),
                    container("c2", "100m", NULL));
    unit_ok(kn_usage_pod_request(pod, "cpu", &q, err, sizeof(err)) == KN_OK
            && kn_quantity_to(q, KN_QUANTITY_MILLI, &v) == KN_OK && v == 1000,
            "pod: an init container larger than the sum wins (1000m)");
    json_decref(pod);

    pod = json_pack("{s:{s:[o], s:[o, o]}}", "spec",
                    "initContainers", container("i1", "250m", NULL),
                    "containers", container("c1", "200m", NULL),
                    container("c2", "100m", NULL));
    unit_ok(kn_usage_pod_request(pod, "cpu", &q, err, sizeof(err)) == KN_OK
            && kn_quantity_to(q, KN_QUANTITY_MILLI, &v) == KN_OK && v == 300,
            "pod: a sum larger than the init containers wins (300m)");
    json_decref(pod);

    /*
     * sidecars: A (100m, Always), B (700m), C (200m, Always), D (50m);
     * containers 300m.  Sum: 300 + 100 + 200 = 600.  Init needs: A 100,
     * B 700 + 100 = 800, C 100 + 200 = 300, D 50 + 300 = 350.  Max 800.
     */
    init = json_pack("[o, o, o, o]", container("a", "100m", "Always"),
                     container("b", "700m", NULL),
                     container("c", "200m", "Always"),
                     container("d", "50m", NULL));
    cs = json_pack("[o]", container("main", "300m", NULL));
    spec = json_pack("{s:o, s:o}", "initContainers", init, "containers", cs);
    pod = json_pack("{s:o}", "spec", spec);
    unit_ok(kn_usage_pod_request(pod, "cpu", &q, err, sizeof(err)) == KN_OK
            && kn_quantity_to(q, KN_QUANTITY_MILLI, &v) == KN_OK && v == 800,
            "pod: sidecars run beside the containers and before later init "
            "containers (800m)");

    json_object_set_new(json_array_get(init, 1), "resources",
                        json_pack("{s:{s:s}}", "requests", "cpu", "400m"));
    unit_ok(kn_usage_pod_request(pod, "cpu", &q, err, sizeof(err)) == KN_OK
            && kn_quantity_to(q, KN_QUANTITY_MILLI, &v) == KN_OK && v == 600,
            "pod: ... and the sum with sidecars wins when larger (600m)");

    json_object_set_new(spec, "overhead", json_pack("{s:s}", "cpu", "50m"));
    unit_ok(kn_usage_pod_request(pod, "cpu", &q, err, sizeof(err)) == KN_OK
            && kn_quantity_to(q, KN_QUANTITY_MILLI, &v) == KN_OK && v == 650,
            "pod: the overhead is added (650m)");

    json_object_set_new(spec, "resources",
                        json_pack("{s:{s:s, s:s}}", "requests", "cpu", "2",
                                  "nvidia.com/gpu", "3"));
    unit_ok(kn_usage_pod_request(pod, "cpu", &q, err, sizeof(err)) == KN_OK
            && kn_quantity_to(q, KN_QUANTITY_MILLI, &v) == KN_OK
            && v == 2050,
            "pod: a pod-level cpu request replaces the containers' (2 + 50m)");
    unit_ok(kn_usage_pod_request(pod, "nvidia.com/gpu", &q, err, sizeof(err))
            == KN_OK && q == 0,
            "pod: ... but pod-level is for cpu and memory only");

    json_object_set_new(json_array_get(cs, 0), "resources",
                        json_pack("{s:{s:s}}", "requests", "cpu", "lots"));
    json_object_del(spec, "resources");
    err[0] = '\0';
    unit_ok(kn_usage_pod_request(pod, "cpu", &q, err, sizeof(err))
            == KN_ERROR && strstr(err, "main") != NULL,
            "pod: a bad quantity is an error naming the container");
    printf("# %s\n", err);
    json_decref(pod);

    pod = json_pack("{s:{}}", "spec");
    unit_ok(kn_usage_pod_request(pod, "cpu", &q, err, sizeof(err)) == KN_OK
            && q == 0, "pod: no containers, no request");
    json_decref(pod);
}


static void
unit_times(void)
{
    int64_t  t;

    unit_ok(kn_usage_time("2024-05-01T10:00:00Z", &t) == KN_OK
            && t == 1714557600, "time: RFC 3339 in UTC");
    unit_ok(kn_usage_time("2024-05-01T10:00:00.123456Z", &t) == KN_OK
            && t == 1714557600, "time: with a fraction (MicroTime)");
    unit_ok(kn_usage_time("2024-05-01T12:00:00+02:00", &t) == KN_OK
            && t == 1714557600, "time: with an offset");
    unit_ok(kn_usage_time("2024-05-01 10:00:00Z", &t) == KN_ERROR
            && kn_usage_time("2024-05-01T10:00:00", &t) == KN_ERROR
            && kn_usage_time("2024-05-01T10:00:00Zjunk", &t) == KN_ERROR
            && kn_usage_time("yesterday", &t) == KN_ERROR,
            "time: anything else is refused");
}


/* -- the spool ------------------------------------------------------------ */


typedef struct {
    kn_rc     answer;                   /* what send answers */
    unsigned  sent;
    int64_t   seqs[64];                 /* in the order sent */
    int64_t   window_end[64];
    size_t    tenants[64];
} fake_grpc_t;


static kn_rc
fake_send(void *data, const Kubenova__V1__UsageReport *report)
{
    fake_grpc_t  *g = data;

    if (g->answer != KN_OK) {
        return g->answer;
    }

    if (g->sent < 64) {
        g->seqs[g->sent] = report->sequence;
        g->window_end[g->sent] = report->window_end_unix;
        g->tenants[g->sent] = report->n_tenants;
    }

    g->sent++;
    return KN_OK;
}


static kn_rc
spool_add(kn_spool_t *s, int64_t wend, const char *tenant, int64_t *seq)
{
    kn_rc                        rc;
    Kubenova__V1__TenantUsage    t = KUBENOVA__V1__TENANT_USAGE__INIT;
    Kubenova__V1__TenantUsage   *list[1] = { &t };
    Kubenova__V1__UsageReport    r = KUBENOVA__V1__USAGE_REPORT__INIT;

    t.tenant = (char *) tenant;
    t.cpu_request_millicores = 1500;
    t.pods = 3;
    r.window_start_unix = wend - 3600;
    r.window_end_unix = wend;
    r.n_tenants = 1;
    r.tenants = list;

    rc = kn_spool_add(s, &r);
    *seq = r.sequence;
    return rc;
}


static int
file_exists(const char *dir, int64_t seq)
{
    char         path[4096];
    struct stat  st;

    snprintf(path, sizeof(path), "%s/usage-%020" PRId64 ".pb", dir, seq);
    return stat(path, &st) == 0;
}


static unsigned
files_in(const char *dir)
{
    DIR            *d;
    unsigned        n;
    struct dirent  *de;

    n = 0;
    d = opendir(dir);
    while (d != NULL && (de = readdir(d)) != NULL) {
        n += (de->d_name[0] != '.');
    }
    if (d != NULL) {
        closedir(d);
    }
    return n;
}


static void
write_file(const char *dir, const char *name, const char *text)
{
    char   path[4096];
    FILE  *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    if (f != NULL) {
        fputs(text, f);
        fclose(f);
    }
}


static void
unit_spool(kn_loop_t *loop, const kn_log_t *log, const char *base)
{
    char              dir[2048], path[4096], buf[256];
    FILE             *f;
    int64_t           seq, s1, s2, s3, first;
    time_t            before;
    unsigned          i;
    kn_spool_t       *s;
    fake_grpc_t       g;
    kn_spool_conf_t   conf;

    first = 0;
    snprintf(dir, sizeof(dir), "%s/spool", base);

    memset(&conf, 0, sizeof(conf));
    conf.dir = dir;
    memset(&g, 0, sizeof(g));

    /* a new spool: created, numbered from the time */
    before = time(NULL);
    unit_ok(kn_spool_open(loop, log, &conf, fake_send, &g, &s) == KN_OK,
            "spool: a new directory is created and opened");
    unit_ok(kn_spool_count(s) == 0 && kn_spool_last_window_end(s) == 0,
            "spool: empty, no window reported");

    unit_ok(spool_add(s, 7200, "t1", &s1) == KN_OK && s1 >= before
            && s1 <= time(NULL), "spool: a new spool's first sequence is "
            "the time in seconds");
    unit_ok(file_exists(dir, s1) && kn_spool_count(s) == 1
            && kn_spool_last_window_end(s) == 7200,
            "spool: the report is a file, named by its sequence");
    unit_ok(g.sent == 0, "spool: not sent while not connected");

    snprintf(path, sizeof(path), "%s/state", dir);
    f = fopen(path, "r");
    buf[0] = '\0';
    if (f != NULL) {
        if (fgets(buf, sizeof(buf), f) == NULL) {
            buf[0] = '\0';
        }
        fclose(f);
    }
    snprintf(path, sizeof(path), "sequence %" PRId64 " window-end 7200\n",
             s1);
    unit_ok(strcmp(buf, path) == 0, "spool: the state names the last "
            "sequence and window");

    kn_spool_connected(s);
    unit_ok(g.sent == 1 && g.seqs[0] == s1 && g.window_end[0] == 7200
            && g.tenants[0] == 1, "spool: connected, the report is sent, "
            "read back from its file");

    kn_spool_acked(s, s1 + 100);
    unit_ok(kn_spool_count(s) == 1, "spool: an ack of another sequence "
            "changes nothing");
    kn_spool_acked(s, s1);
    unit_ok(kn_spool_count(s) == 0 && !file_exists(dir, s1),
            "spool: acked, the file goes");
    kn_spool_acked(s, s1);
    unit_ok(kn_spool_count(s) == 0, "spool: a repeated ack is harmless");

    /* three while disconnected, then a "crash" (close) */
    kn_spool_disconnected(s);
    unit_ok(spool_add(s, 10800, "t1", &s1) == KN_OK
            && spool_add(s, 14400, "t1", &s2) == KN_OK
            && spool_add(s, 18000, "t1", &s3) == KN_OK
            && s2 == s1 + 1 && s3 == s2 + 1 && g.sent == 1,
            "spool: sequences follow each other; nothing sent disconnected");
    kn_spool_close(s);

    write_file(dir, "usage-00000000000000000042.pb.tmp", "half a write");
    write_file(dir, "unrelated", "kept");

    memset(&g, 0, sizeof(g));
    unit_ok(kn_spool_open(loop, log, &conf, fake_send, &g, &s) == KN_OK
            && kn_spool_count(s) == 3 && kn_spool_last_window_end(s) == 18000,
            "spool: reopened, the three reports are there");
    snprintf(path, sizeof(path), "%s/usage-00000000000000000042.pb.tmp", dir);
    unit_ok(access(path, F_OK) != 0, "spool: a leftover .tmp file is "
            "removed");
    unit_ok(spool_add(s, 21600, "t1", &seq) == KN_OK && seq == s3 + 1,
            "spool: the sequence goes on after a restart");

    /* delivery: KN_AGAIN, then in order */
    g.answer = KN_AGAIN;
    kn_spool_connected(s);
    unit_ok(g.sent == 0, "spool: a full send queue sends nothing");
    g.answer = KN_OK;
    kn_spool_connected(s);
    unit_ok(g.sent == 4 && g.seqs[0] == s1 && g.seqs[1] == s2
            && g.seqs[2] == s3 && g.seqs[3] == seq,
            "spool: ... then everything, oldest first");

    /* a reconnect sends what is unacked again */
    kn_spool_acked(s, s2);
    kn_spool_disconnected(s);
    memset(&g, 0, sizeof(g));
    kn_spool_connected(s);
    unit_ok(g.sent == 3 && g.seqs[0] == s1 && g.seqs[1] == s3
            && g.seqs[2] == seq && !file_exists(dir, s2),
            "spool: a reconnect resends the unacked ones, in order");

    kn_spool_acked(s, s1);
    kn_spool_acked(s, s3);
    kn_spool_acked(s, seq);
    unit_ok(kn_spool_count(s) == 0 && files_in(dir) == 2,
            "spool: all acked: only the state (and the unrelated file) left");

    /* KN_DECLINED: no stream */
    memset(&g, 0, sizeof(g));
    g.answer = KN_DECLINED;
    unit_ok(spool_add(s, 25200, "t1", &seq) == KN_OK && g.sent == 0
            && kn_spool_count(s) == 1, "spool: declined, it stays");
    g.answer = KN_OK;
    kn_spool_disconnected(s);
    kn_spool_connected(s);
    unit_ok(g.sent == 1 && g.seqs[0] == seq, "spool: ... and goes on the "
            "next stream");
    kn_spool_acked(s, seq);
    kn_spool_close(s);

    /* in flight: at most conf.in_flight unacked */
    conf.in_flight = 2;
    memset(&g, 0, sizeof(g));
    unit_ok(kn_spool_open(loop, log, &conf, fake_send, &g, &s) == KN_OK,
            "spool: reopened with 2 in flight");
    kn_spool_connected(s);
    for (i = 0; i < 5; i++) {
        (void) spool_add(s, 28800 + 3600 * i, "t1", &seq);
        if (i == 0) {
            first = seq;
        }
    }
    unit_ok(g.sent == 2 && kn_spool_count(s) == 5,
            "spool: 5 added, 2 sent");
    kn_spool_acked(s, first + 1);
    unit_ok(g.sent == 3 && g.seqs[2] == first + 2,
            "spool: an ack lets the next one go");
    kn_spool_acked(s, first);
    unit_ok(g.sent == 4 && g.seqs[3] == first + 3,
            "spool: ... in order");
    kn_spool_close(s);

    /* the bound: the oldest goes */
    conf.in_flight = 0;
    conf.max_reports = 3;
    memset(&g, 0, sizeof(g));
    unit_ok(kn_spool_open(loop, log, &conf, fake_send, &g, &s) == KN_OK
            && kn_spool_count(s) == 3 && file_exists(dir, first + 2),
            "spool: reopened with room for 3 of its 3: all kept");
    unit_ok(spool_add(s, 100000, "t1", &seq) == KN_OK
            && kn_spool_count(s) == 3 && !file_exists(dir, first + 2)
            && file_exists(dir, first + 3) && file_exists(dir, seq),
            "spool: full, a new report drops the oldest (logged)");
    kn_spool_close(s);

    conf.max_reports = 2;
    unit_ok(kn_spool_open(loop, log, &conf, fake_send, &g, &s) == KN_OK
            && kn_spool_count(s) == 2 && !file_exists(dir, first + 3)
            && file_exists(dir, seq),
            "spool: reopened with a smaller bound: the oldest are dropped");
    kn_spool_close(s);

    /* a corrupt file and a lost state */
    snprintf(buf, sizeof(buf), "usage-%020" PRId64 ".pb", first + 4);
    write_file(dir, buf, "\xff\xff not protobuf");
    snprintf(path, sizeof(path), "%s/state", dir);
    unlink(path);

    conf.max_reports = 0;
    memset(&g, 0, sizeof(g));
    unit_ok(kn_spool_open(loop, log, &conf, fake_send, &g, &s) == KN_OK
            && kn_spool_count(s) == 2 && kn_spool_last_window_end(s) == 100000,
            "spool: no state: the newest report gives the last window");
    s1 = seq;
    unit_ok(spool_add(s, 200000, "t1", &seq) == KN_OK && seq == s1 + 1,
            "spool: ... and the next sequence");
    kn_spool_connected(s);
    unit_ok(g.sent == 2 && g.seqs[0] == s1 && g.seqs[1] == seq
            && !file_exists(dir, first + 4),
            "spool: a corrupt file is dropped (logged), the others sent");
    kn_spool_close(s);

    write_file(dir, "state", "sequence x\n");
    memset(&g, 0, sizeof(g));
    unit_ok(kn_spool_open(loop, log, &conf, fake_send, &g, &s) == KN_OK
            && spool_add(s, 300000, "t1", &s2) == KN_OK && s2 == seq + 1,
            "spool: a bad state is ignored (logged): the files give the "
            "sequence");
    kn_spool_close(s);

    /* not a directory */
    snprintf(path, sizeof(path), "%s/state", dir);
    conf.dir = path;
    unit_ok(kn_spool_open(loop, log, &conf, fake_send, &g, &s) == KN_ERROR,
            "spool: a file where the directory should be is an error");
}


int
main(int argc, char **argv)
{
    kn_log_t    log;
    kn_loop_t  *loop;

    if (argc != 2) {
        fprintf(stderr, "usage: %s SCRATCH_DIR\n", argv[0]);
        return 2;
    }

    log.level = KN_LOG_ERROR;

    if (kn_loop_create(&log, 64, 16, &loop) != KN_OK) {
        return 1;
    }

    unit_quantities();
    unit_pod_requests();
    unit_times();
    unit_spool(loop, &log, argv[1]);

    kn_loop_destroy(loop);

    printf("1..%u\n", unit_n);

    return unit_failed ? 1 : 0;
}
