/*
 * The usage spool (see kn_spool.h).  In memory: the sequences held, in
 * order, in an array whose live part is e[head, head + n).  Reports are
 * sent oldest first, so those sent on the current stream are always a
 * prefix of the live part (in_flight long); an ack or a drop removes one
 * entry by moving the few before it up by one.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kn_spool.h"


#define KN_SPOOL_PREFIX      "usage-"
#define KN_SPOOL_SUFFIX      ".pb"
#define KN_SPOOL_TMP         ".tmp"
#define KN_SPOOL_STATE       "state"
#define KN_SPOOL_NAME_MAX    64
#define KN_SPOOL_STATE_MAX   128
#define KN_SPOOL_FRAMING     16         /* OperatorMessage around a report */


typedef struct {
    int64_t    sequence;
    uint64_t   sent_at;                 /* on this stream, if sent */
    unsigned   sent:1;
} kn_spool_entry_t;


struct kn_spool_s {
    kn_loop_t          *loop;
    const kn_log_t     *log;
    kn_spool_conf_t     conf;
    kn_spool_send_pt    send;
    void               *data;

    int                 dirfd;
    kn_spool_entry_t   *e;
    size_t              head;
    size_t              n;
    size_t              cap;
    size_t              in_flight;      /* e[head, head + in_flight) */

    int64_t             last_sequence;
    int64_t             last_window_end;
    unsigned            connected:1;

    kn_timer_t          timer;
    uint8_t            *buf;            /* one report file */
};


static kn_rc kn_spool_scan(kn_spool_t *s);
static int kn_spool_read_state(kn_spool_t *s);
static kn_rc kn_spool_write(kn_spool_t *s, const char *name,
    const uint8_t *data, size_t len);
static void kn_spool_name(char *buf, int64_t sequence);
static kn_rc kn_spool_append(kn_spool_t *s, int64_t sequence);
static void kn_spool_remove(kn_spool_t *s, size_t i, const char *why);
static size_t kn_spool_find(kn_spool_t *s, int64_t sequence);
static void kn_spool_pump(kn_spool_t *s);
static void kn_spool_timer(kn_timer_t *timer);
static Kubenova__V1__UsageReport *kn_spool_load(kn_spool_t *s,
    int64_t sequence);
static int kn_spool_cmp(const void *a, const void *b);


kn_rc
kn_spool_open(kn_loop_t *loop, const kn_log_t *log,
    const kn_spool_conf_t *conf, kn_spool_send_pt send, void *data,
    kn_spool_t **out)
{
    int                          found;
    kn_spool_t                  *s;
    Kubenova__V1__UsageReport   *report;

    if (conf->dir == NULL || conf->dir[0] == '\0') {
        kn_log(log, KN_LOG_ERROR, "usage: no spool directory");
        return KN_ERROR;
    }

    s = calloc(1, sizeof(kn_spool_t));
    if (s == NULL) {
        kn_log(log, KN_LOG_ERROR, "usage: out of memory");
        return KN_ERROR;
    }

    s->loop = loop;
    s->log = log;
    s->conf = *conf;
    s->send = send;
    s->data = data;
    s->dirfd = -1;
    kn_timer_init(&s->timer, kn_spool_timer, s);

    if (s->conf.max_reports == 0) {
        s->conf.max_reports = 10000;
    }
    if (s->conf.max_message == 0) {
        s->conf.max_message = 4 * 1024 * 1024;
    }
    if (s->conf.in_flight == 0) {
        s->conf.in_flight = 16;
    }
    if (s->conf.retry_ms == 0) {
        s->conf.retry_ms = 500;
    }
    if (s->conf.resend_ms == 0) {
        s->conf.resend_ms = 60000;
    }

    s->buf = malloc(s->conf.max_message);
    if (s->buf == NULL) {
        kn_log(log, KN_LOG_ERROR, "usage: out of memory");
        goto failed;
    }

    if (mkdir(s->conf.dir, 0700) != 0 && errno != EEXIST) {
        kn_log(log, KN_LOG_ERROR, "usage: cannot create the spool directory "
               "\"%s\": %s", s->conf.dir, strerror(errno));
        goto failed;
    }

    s->dirfd = open(s->conf.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->dirfd == -1) {
        kn_log(log, KN_LOG_ERROR, "usage: cannot open the spool directory "
               "\"%s\": %s", s->conf.dir, strerror(errno));
        goto failed;
    }

    found = kn_spool_read_state(s);

    if (kn_spool_scan(s) != KN_OK) {
        goto failed;
    }

    if (!found && s->n == 0) {
        /* a new spool (or a lost one): above any sequence used before */
        s->last_sequence = (int64_t) time(NULL) - 1;
    }

    if (s->last_window_end == 0 && s->n > 0) {
        /* no state: the newest report says which window was last */
        report = kn_spool_load(s, s->e[s->head + s->n - 1].sequence);
        if (report != NULL) {
            s->last_window_end = report->window_end_unix;
            kubenova__v1__usage_report__free_unpacked(report, NULL);
        }
    }

    kn_log(log, KN_LOG_INFO, "usage: spool \"%s\": %zu report(s) to send, "
           "next sequence %" PRId64, s->conf.dir, s->n,
           s->last_sequence + 1);

    *out = s;
    return KN_OK;

failed:

    kn_spool_close(s);
    return KN_ERROR;
}


void
kn_spool_close(kn_spool_t *s)
{
    if (s == NULL) {
        return;
    }

    kn_timer_cancel(s->loop, &s->timer);

    if (s->dirfd != -1) {
        close(s->dirfd);
    }

    free(s->e);
    free(s->buf);
    free(s);
}


size_t
kn_spool_count(kn_spool_t *s)
{
    return s->n;
}


int64_t
kn_spool_last_window_end(kn_spool_t *s)
{
    return s->last_window_end;
}


/* -- the directory at open -------------------------------------------- */


/* 1: the state was read */

static int
kn_spool_read_state(kn_spool_t *s)
{
    int       fd, end;
    char      buf[KN_SPOOL_STATE_MAX];
    ssize_t   len;
    int64_t   seq, wend;

    fd = openat(s->dirfd, KN_SPOOL_STATE, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        if (errno != ENOENT) {
            kn_log(s->log, KN_LOG_ERROR, "usage: cannot read %s/%s: %s",
                   s->conf.dir, KN_SPOOL_STATE, strerror(errno));
        }
        return 0;
    }

    len = read(fd, buf, sizeof(buf) - 1);
    close(fd);

    end = 0;
    if (len > 0) {
        buf[len] = '\0';
        if (sscanf(buf, "sequence %" SCNd64 " window-end %" SCNd64 "%n",
                   &seq, &wend, &end) != 2
            || (buf[end] != '\0' && strcmp(buf + end, "\n") != 0)
            || seq < 0 || wend < 0)
        {
            end = 0;
        }
    }

    if (end == 0) {
        kn_log(s->log, KN_LOG_ERROR, "usage: %s/%s is not a spool state "
               "(\"sequence S window-end W\"): ignored; the sequence goes "
               "on from the reports spooled, or from the time",
               s->conf.dir, KN_SPOOL_STATE);
        return 0;
    }

    s->last_sequence = seq;
    s->last_window_end = wend;

    return 1;
}


static kn_rc
kn_spool_scan(kn_spool_t *s)
{
    int              fd, dropped;
    DIR             *dir;
    char            *end;
    size_t           len, i, drop;
    int64_t          seq, *seqs, *more;
    size_t           nseqs, cap;
    struct dirent   *de;

    fd = dup(s->dirfd);
    dir = (fd == -1) ? NULL : fdopendir(fd);

    if (dir == NULL) {
        if (fd != -1) {
            close(fd);
        }
        kn_log(s->log, KN_LOG_ERROR, "usage: cannot read the spool "
               "directory \"%s\": %s", s->conf.dir, strerror(errno));
        return KN_ERROR;
    }

    seqs = NULL;
    nseqs = 0;
    cap = 0;
    dropped = 0;

    while ((de = readdir(dir)) != NULL) {
        len = strlen(de->d_name);

        if (len > sizeof(KN_SPOOL_TMP) - 1
            && strcmp(de->d_name + len - (sizeof(KN_SPOOL_TMP) - 1),
                      KN_SPOOL_TMP) == 0)
        {
            /* a write a crash interrupted: never renamed, never sent */
            if (unlinkat(s->dirfd, de->d_name, 0) == 0) {
                kn_log(s->log, KN_LOG_WARN, "usage: removed %s/%s, left by "
                       "an interrupted write", s->conf.dir, de->d_name);
                dropped = 1;
            }
            continue;
        }

        if (len != sizeof(KN_SPOOL_PREFIX) - 1 + 20
                   + sizeof(KN_SPOOL_SUFFIX) - 1
            || strncmp(de->d_name, KN_SPOOL_PREFIX,
                       sizeof(KN_SPOOL_PREFIX) - 1) != 0
            || strcmp(de->d_name + len - (sizeof(KN_SPOOL_SUFFIX) - 1),
                      KN_SPOOL_SUFFIX) != 0
            || strspn(de->d_name + sizeof(KN_SPOOL_PREFIX) - 1,
                      "0123456789") != 20)
        {
            continue;
        }

        errno = 0;
        seq = strtoll(de->d_name + sizeof(KN_SPOOL_PREFIX) - 1, &end, 10);
        if (errno != 0 || seq < 0) {
            continue;
        }

        if (nseqs == cap) {
            cap = cap ? 2 * cap : 64;
            more = realloc(seqs, cap * sizeof(int64_t));
            if (more == NULL) {
                free(seqs);
                closedir(dir);
                kn_log(s->log, KN_LOG_ERROR, "usage: out of memory");
                return KN_ERROR;
            }
            seqs = more;
        }

        seqs[nseqs++] = seq;
    }

    closedir(dir);

    if (nseqs > 1) {
        qsort(seqs, nseqs, sizeof(int64_t), kn_spool_cmp);
    }

    drop = 0;
    if (nseqs > s->conf.max_reports) {
        drop = nseqs - s->conf.max_reports;
        kn_log(s->log, KN_LOG_ERROR, "usage: the spool holds %zu reports, "
               "more than --usage-spool-max %zu: dropping the oldest %zu "
               "(sequences %" PRId64 " to %" PRId64 "); that usage is lost",
               nseqs, s->conf.max_reports, drop, seqs[0], seqs[drop - 1]);
    }

    for (i = 0; i < nseqs; i++) {
        if (i < drop) {
            char  name[KN_SPOOL_NAME_MAX];

            kn_spool_name(name, seqs[i]);
            (void) unlinkat(s->dirfd, name, 0);
            dropped = 1;
            continue;
        }

        if (kn_spool_append(s, seqs[i]) != KN_OK) {
            free(seqs);
            return KN_ERROR;
        }
    }

    if (nseqs > 0 && seqs[nseqs - 1] > s->last_sequence) {
        s->last_sequence = seqs[nseqs - 1];
    }

    free(seqs);

    if (dropped) {
        (void) fsync(s->dirfd);
    }

    return KN_OK;
}


static int
kn_spool_cmp(const void *a, const void *b)
{
    int64_t  x = *(const int64_t *) a, y = *(const int64_t *) b;

    return (x > y) - (x < y);
}


/* -- adding a report ---------------------------------------------------- */


kn_rc
kn_spool_add(kn_spool_t *s, Kubenova__V1__UsageReport *report)
{
    int      n;
    char     name[KN_SPOOL_NAME_MAX], state[KN_SPOOL_STATE_MAX];
    size_t   len;
    int64_t  seq;

    seq = s->last_sequence + 1;
    report->sequence = seq;

    len = kubenova__v1__usage_report__get_packed_size(report);

    if (len + KN_SPOOL_FRAMING > s->conf.max_message) {
        kn_log(s->log, KN_LOG_ERROR, "usage: report %" PRId64 " is %zu "
               "bytes, more than --max-message allows", seq, len);
        return KN_ERROR;
    }

    if (s->n == s->conf.max_reports) {
        kn_log(s->log, KN_LOG_ERROR, "usage: the spool is full "
               "(--usage-spool-max %zu): dropping report %" PRId64 ", never "
               "acked by the Manager; that usage is lost",
               s->conf.max_reports, s->e[s->head].sequence);
        kn_spool_remove(s, s->head, NULL);
    }

    /* the sequence is taken first: a crash leaves a gap, never a reuse */

    n = snprintf(state, sizeof(state), "sequence %" PRId64 " window-end %"
                 PRId64 "\n", seq, report->window_end_unix);

    if (kn_spool_write(s, KN_SPOOL_STATE, (uint8_t *) state, (size_t) n)
        != KN_OK)
    {
        return KN_ERROR;
    }

    s->last_sequence = seq;
    s->last_window_end = report->window_end_unix;

    kubenova__v1__usage_report__pack(report, s->buf);
    kn_spool_name(name, seq);

    if (kn_spool_write(s, name, s->buf, len) != KN_OK) {
        return KN_ERROR;
    }

    if (kn_spool_append(s, seq) != KN_OK) {
        return KN_ERROR;
    }

    kn_log(s->log, KN_LOG_INFO, "usage: report %" PRId64 " (window %" PRId64
           " to %" PRId64 ", %zu tenant(s)) spooled; %zu to send", seq,
           report->window_start_unix, report->window_end_unix,
           report->n_tenants, s->n);

    kn_spool_pump(s);

    return KN_OK;
}


/* tmp file, fsync, rename, directory fsync */

static kn_rc
kn_spool_write(kn_spool_t *s, const char *name, const uint8_t *data,
    size_t len)
{
    int          fd;
    char         tmp[KN_SPOOL_NAME_MAX];
    size_t       done;
    ssize_t      w;
    const char  *what;

    snprintf(tmp, sizeof(tmp), "%s" KN_SPOOL_TMP, name);

    fd = openat(s->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                0600);
    if (fd == -1) {
        what = "create";
        goto failed;
    }

    for (done = 0; done < len; done += (size_t) w) {
        w = write(fd, data + done, len - done);
        if (w == -1 && errno == EINTR) {
            w = 0;
            continue;
        }
        if (w <= 0) {
            what = "write";
            goto failed;
        }
    }

    if (fsync(fd) != 0) {
        what = "fsync";
        goto failed;
    }

    if (close(fd) != 0) {
        fd = -1;
        what = "close";
        goto failed;
    }

    fd = -1;

    if (renameat(s->dirfd, tmp, s->dirfd, name) != 0) {
        what = "rename";
        goto failed;
    }

    if (fsync(s->dirfd) != 0) {
        kn_log(s->log, KN_LOG_ERROR, "usage: cannot fsync the spool "
               "directory \"%s\": %s", s->conf.dir, strerror(errno));
        return KN_ERROR;
    }

    return KN_OK;

failed:

    kn_log(s->log, KN_LOG_ERROR, "usage: cannot %s %s/%s: %s", what,
           s->conf.dir, tmp, strerror(errno));

    if (fd != -1) {
        close(fd);
    }

    (void) unlinkat(s->dirfd, tmp, 0);

    return KN_ERROR;
}


static void
kn_spool_name(char *buf, int64_t sequence)
{
    snprintf(buf, KN_SPOOL_NAME_MAX, KN_SPOOL_PREFIX "%020" PRId64
             KN_SPOOL_SUFFIX, sequence);
}


/* at the end of the live part (sequences only grow) */

static kn_rc
kn_spool_append(kn_spool_t *s, int64_t sequence)
{
    size_t             cap;
    kn_spool_entry_t  *e;

    if (s->head + s->n == s->cap) {
        if (s->head > 0) {
            memmove(s->e, s->e + s->head, s->n * sizeof(kn_spool_entry_t));
            s->head = 0;

        } else {
            cap = s->cap ? 2 * s->cap : 64;
            if (cap > s->conf.max_reports) {
                cap = s->conf.max_reports;
            }

            e = realloc(s->e, cap * sizeof(kn_spool_entry_t));
            if (e == NULL) {
                kn_log(s->log, KN_LOG_ERROR, "usage: out of memory");
                return KN_ERROR;
            }

            s->e = e;
            s->cap = cap;
        }
    }

    e = &s->e[s->head + s->n++];
    e->sequence = sequence;
    e->sent = 0;
    e->sent_at = 0;

    return KN_OK;
}


/* e[i] goes, its file too; why (or NULL) is logged as an error */

static void
kn_spool_remove(kn_spool_t *s, size_t i, const char *why)
{
    char  name[KN_SPOOL_NAME_MAX];

    kn_spool_name(name, s->e[i].sequence);

    if (unlinkat(s->dirfd, name, 0) != 0 && errno != ENOENT) {
        kn_log(s->log, KN_LOG_ERROR, "usage: cannot remove %s/%s: %s",
               s->conf.dir, name, strerror(errno));
    }

    if (why != NULL) {
        kn_log(s->log, KN_LOG_ERROR, "usage: dropping report %" PRId64
               ": %s; that usage is lost", s->e[i].sequence, why);
    }

    if (s->e[i].sent) {
        s->in_flight--;
    }

    /* the entries before it move up by one: the order stays */
    memmove(s->e + s->head + 1, s->e + s->head,
            (i - s->head) * sizeof(kn_spool_entry_t));
    s->head++;
    s->n--;

    if (s->n == 0) {
        s->head = 0;
    }
}


/* the index of sequence in e[], or (size_t) -1 */

static size_t
kn_spool_find(kn_spool_t *s, int64_t sequence)
{
    size_t  lo, hi, mid;

    lo = s->head;
    hi = s->head + s->n;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;

        if (s->e[mid].sequence == sequence) {
            return mid;
        }

        if (s->e[mid].sequence < sequence) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }

    return (size_t) -1;
}


/* -- delivery ------------------------------------------------------------ */


void
kn_spool_acked(kn_spool_t *s, int64_t sequence)
{
    size_t  i;

    i = kn_spool_find(s, sequence);

    if (i == (size_t) -1) {
        kn_log(s->log, KN_LOG_DEBUG, "usage: an ack of report %" PRId64
               ", which is not spooled (acked before)", sequence);
        return;
    }

    kn_spool_remove(s, i, NULL);

    kn_log(s->log, KN_LOG_DEBUG, "usage: report %" PRId64 " acked by the "
           "Manager; %zu to send", sequence, s->n);

    kn_spool_pump(s);
}


void
kn_spool_connected(kn_spool_t *s)
{
    s->connected = 1;

    if (s->n > 0) {
        kn_log(s->log, KN_LOG_INFO, "usage: sending the %zu spooled "
               "report(s) from sequence %" PRId64, s->n,
               s->e[s->head].sequence);
    }

    kn_spool_pump(s);
}


void
kn_spool_disconnected(kn_spool_t *s)
{
    size_t  i;

    s->connected = 0;
    kn_timer_cancel(s->loop, &s->timer);

    for (i = s->head; i < s->head + s->in_flight; i++) {
        s->e[i].sent = 0;
    }

    s->in_flight = 0;
}


/*
 * Sends what is due: the in-flight prefix again where resend_ms passed,
 * then new ones up to conf.in_flight.  Stops at KN_AGAIN (the timer tries
 * again) and KN_DECLINED (no stream: kn_spool_connected() will).
 */

static void
kn_spool_pump(kn_spool_t *s)
{
    kn_rc                        rc;
    size_t                       i;
    uint64_t                     now, next;
    kn_spool_entry_t            *e;
    Kubenova__V1__UsageReport   *report;

    if (!s->connected) {
        return;
    }

    now = kn_loop_now(s->loop);
    next = 0;
    i = s->head;

    while (i < s->head + s->n) {
        e = &s->e[i];

        if (e->sent) {
            if (now - e->sent_at < s->conf.resend_ms) {
                if (next == 0 || e->sent_at + s->conf.resend_ms < next) {
                    next = e->sent_at + s->conf.resend_ms;
                }
                i++;
                continue;
            }

            kn_log(s->log, KN_LOG_WARN, "usage: report %" PRId64 " not "
                   "acked after %" PRIu64 " ms: sending it again",
                   e->sequence, s->conf.resend_ms);

        } else if (s->in_flight == s->conf.in_flight) {
            break;
        }

        report = kn_spool_load(s, e->sequence);

        if (report == NULL) {
            kn_spool_remove(s, i, "its file cannot be read back");
            i++;                        /* the entries moved up by one */
            continue;
        }

        rc = s->send(s->data, report);
        kubenova__v1__usage_report__free_unpacked(report, NULL);

        switch (rc) {

        case KN_OK:
            if (!e->sent) {
                e->sent = 1;
                s->in_flight++;
            }
            e->sent_at = now;
            if (next == 0 || now + s->conf.resend_ms < next) {
                next = now + s->conf.resend_ms;
            }
            i++;
            continue;

        case KN_AGAIN:
            (void) kn_timer_add(s->loop, &s->timer, s->conf.retry_ms);
            return;

        case KN_DECLINED:
            return;

        default:
            kn_spool_remove(s, i, "the Manager cannot be sent it");
            i++;
            continue;
        }
    }

    if (next != 0) {
        (void) kn_timer_add(s->loop, &s->timer, next > now ? next - now : 1);
    } else {
        kn_timer_cancel(s->loop, &s->timer);
    }
}


static void
kn_spool_timer(kn_timer_t *timer)
{
    kn_spool_pump(timer->data);
}


static Kubenova__V1__UsageReport *
kn_spool_load(kn_spool_t *s, int64_t sequence)
{
    int                          fd;
    char                         name[KN_SPOOL_NAME_MAX];
    ssize_t                      r;
    size_t                       len;
    struct stat                  st;
    Kubenova__V1__UsageReport   *report;

    kn_spool_name(name, sequence);

    fd = openat(s->dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        kn_log(s->log, KN_LOG_ERROR, "usage: cannot open %s/%s: %s",
               s->conf.dir, name, strerror(errno));
        return NULL;
    }

    if (fstat(fd, &st) != 0
        || (size_t) st.st_size + KN_SPOOL_FRAMING > s->conf.max_message)
    {
        close(fd);
        kn_log(s->log, KN_LOG_ERROR, "usage: %s/%s is larger than "
               "--max-message allows", s->conf.dir, name);
        return NULL;
    }

    len = 0;
    while (len < (size_t) st.st_size) {
        r = read(fd, s->buf + len, (size_t) st.st_size - len);
        if (r == -1 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            break;
        }
        len += (size_t) r;
    }

    close(fd);

    report = kubenova__v1__usage_report__unpack(NULL, len, s->buf);

    if (report == NULL || report->sequence != sequence) {
        if (report != NULL) {
            kubenova__v1__usage_report__free_unpacked(report, NULL);
        }
        kn_log(s->log, KN_LOG_ERROR, "usage: %s/%s is not a usage report of "
               "sequence %" PRId64, s->conf.dir, name, sequence);
        return NULL;
    }

    return report;
}
