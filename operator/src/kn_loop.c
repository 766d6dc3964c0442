/*
 * The event loop (see kn_loop.h).  Timers are a binary min-heap over a
 * fixed array; every timer remembers its slot so that cancelling is
 * O(log n).  libcurl's own timeout is kept apart from the heap: it is one
 * deadline that libcurl moves as it pleases.
 */

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "kn_loop.h"


#define KN_LOOP_EVENTS    64            /* epoll events per wait */
#define KN_LOOP_NO_TIME   UINT64_MAX


struct kn_loop_s {
    const kn_log_t   *log;
    int               epoll_fd;
    CURLM            *multi;

    uint64_t          now;
    uint64_t          curl_when;        /* libcurl's deadline, or none */

    kn_timer_t      **heap;
    size_t            ntimers;
    size_t            max_timers;

    size_t            ntransfers;
    size_t            max_transfers;

    int               signal_fd;
    kn_signal_pt      signal_handler;
    void             *signal_data;

    unsigned          stopping:1;
};


static uint64_t kn_loop_clock(void);
static int kn_loop_socket_cb(CURL *easy, curl_socket_t s, int what,
    void *userp, void *socketp);
static int kn_loop_timer_cb(CURLM *multi, long timeout_ms, void *userp);
static void kn_loop_curl_action(kn_loop_t *loop, curl_socket_t s, int flags);
static void kn_loop_done_transfers(kn_loop_t *loop);
static void kn_loop_run_timers(kn_loop_t *loop);
static void kn_loop_read_signals(kn_loop_t *loop);
static int kn_loop_wait_ms(kn_loop_t *loop);
static void kn_heap_up(kn_loop_t *loop, size_t slot);
static void kn_heap_down(kn_loop_t *loop, size_t slot);
static void kn_heap_remove(kn_loop_t *loop, size_t slot);


kn_rc
kn_loop_create(const kn_log_t *log, size_t max_timers, size_t max_transfers,
    kn_loop_t **out)
{
    kn_loop_t  *loop;

    loop = calloc(1, sizeof(kn_loop_t));
    if (loop == NULL) {
        kn_log(log, KN_LOG_ERROR, "loop: out of memory");
        return KN_ERROR;
    }

    loop->log = log;
    loop->epoll_fd = -1;
    loop->signal_fd = -1;
    loop->curl_when = KN_LOOP_NO_TIME;
    loop->max_timers = max_timers;
    loop->max_transfers = max_transfers;
    loop->now = kn_loop_clock();

    loop->heap = calloc(max_timers, sizeof(kn_timer_t *));
    if (loop->heap == NULL) {
        kn_log(log, KN_LOG_ERROR, "loop: out of memory");
        goto failed;
    }

    loop->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epoll_fd == -1) {
        kn_log(log, KN_LOG_ERROR, "loop: epoll_create1() failed: %s",
               strerror(errno));
        goto failed;
    }

    loop->multi = curl_multi_init();
    if (loop->multi == NULL) {
        kn_log(log, KN_LOG_ERROR, "loop: curl_multi_init() failed");
        goto failed;
    }

    curl_multi_setopt(loop->multi, CURLMOPT_SOCKETFUNCTION,
                      kn_loop_socket_cb);
    curl_multi_setopt(loop->multi, CURLMOPT_SOCKETDATA, loop);
    curl_multi_setopt(loop->multi, CURLMOPT_TIMERFUNCTION, kn_loop_timer_cb);
    curl_multi_setopt(loop->multi, CURLMOPT_TIMERDATA, loop);

    *out = loop;
    return KN_OK;

failed:

    kn_loop_destroy(loop);
    return KN_ERROR;
}


/* transfers still in the loop are removed, not completed */

void
kn_loop_destroy(kn_loop_t *loop)
{
    if (loop == NULL) {
        return;
    }

    if (loop->multi) {
        curl_multi_cleanup(loop->multi);
    }

    if (loop->signal_fd != -1) {
        close(loop->signal_fd);
    }

    if (loop->epoll_fd != -1) {
        close(loop->epoll_fd);
    }

    free(loop->heap);
    free(loop);
}


kn_rc
kn_loop_run(kn_loop_t *loop)
{
    int                 i, n, timeout;
    uint32_t            ev;
    curl_socket_t       fd;
    struct epoll_event  events[KN_LOOP_EVENTS];

    loop->stopping = 0;

    while (!loop->stopping) {

        loop->now = kn_loop_clock();
        timeout = kn_loop_wait_ms(loop);

        n = epoll_wait(loop->epoll_fd, events, KN_LOOP_EVENTS, timeout);

        if (n == -1) {
            if (errno == EINTR) {
                continue;
            }

            kn_log(loop->log, KN_LOG_ERROR, "loop: epoll_wait() failed: %s",
                   strerror(errno));
            return KN_ERROR;
        }

        loop->now = kn_loop_clock();

        for (i = 0; i < n; i++) {
            fd = events[i].data.fd;
            ev = events[i].events;

            if (fd == loop->signal_fd) {
                kn_loop_read_signals(loop);
                continue;
            }

            kn_loop_curl_action(loop, fd,
                                ((ev & EPOLLIN) ? CURL_CSELECT_IN : 0)
                                | ((ev & EPOLLOUT) ? CURL_CSELECT_OUT : 0)
                                | ((ev & (EPOLLERR | EPOLLHUP))
                                   ? CURL_CSELECT_ERR : 0));
        }

        if (loop->curl_when <= loop->now) {
            loop->curl_when = KN_LOOP_NO_TIME;
            kn_loop_curl_action(loop, CURL_SOCKET_TIMEOUT, 0);
        }

        kn_loop_run_timers(loop);
    }

    return KN_OK;
}


void
kn_loop_stop(kn_loop_t *loop)
{
    loop->stopping = 1;
}


uint64_t
kn_loop_now(kn_loop_t *loop)
{
    return loop->now;
}


static uint64_t
kn_loop_clock(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}


/* how long epoll may sleep: until the first timer or libcurl's deadline */

static int
kn_loop_wait_ms(kn_loop_t *loop)
{
    uint64_t  when;

    when = loop->curl_when;

    if (loop->ntimers && loop->heap[0]->when < when) {
        when = loop->heap[0]->when;
    }

    if (when == KN_LOOP_NO_TIME) {
        return -1;
    }

    if (when <= loop->now) {
        return 0;
    }

    if (when - loop->now > 24 * 3600 * 1000) {
        return 24 * 3600 * 1000;
    }

    return (int) (when - loop->now);
}


/* libcurl */


static int
kn_loop_socket_cb(CURL *easy, curl_socket_t s, int what, void *userp,
    void *socketp)
{
    kn_loop_t           *loop = userp;
    kn_transfer_t       *xfer;
    struct epoll_event   ev;

    (void) socketp;

    if (what == CURL_POLL_REMOVE) {
        /* libcurl may have closed it already: then epoll forgot it too */
        (void) epoll_ctl(loop->epoll_fd, EPOLL_CTL_DEL, s, NULL);

        xfer = NULL;

        if (easy) {
            curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &xfer);
        }

        if (xfer && xfer->active && xfer->unwatched) {
            xfer->unwatched(xfer);
        }

        return 0;
    }

    memset(&ev, 0, sizeof(ev));
    ev.data.fd = s;
    ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0)
                | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0);

    if (epoll_ctl(loop->epoll_fd, EPOLL_CTL_MOD, s, &ev) == 0) {
        return 0;
    }

    if (errno == ENOENT
        && epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, s, &ev) == 0)
    {
        return 0;
    }

    kn_log(loop->log, KN_LOG_ERROR, "loop: epoll_ctl(%d) failed: %s",
           (int) s, strerror(errno));

    return -1;
}


static int
kn_loop_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    kn_loop_t  *loop = userp;

    (void) multi;

    if (timeout_ms < 0) {
        loop->curl_when = KN_LOOP_NO_TIME;

    } else {
        loop->curl_when = kn_loop_clock() + (uint64_t) timeout_ms;
    }

    return 0;
}


static void
kn_loop_curl_action(kn_loop_t *loop, curl_socket_t s, int flags)
{
    int        running;
    CURLMcode  mc;

    mc = curl_multi_socket_action(loop->multi, s, flags, &running);

    if (mc != CURLM_OK) {
        kn_log(loop->log, KN_LOG_ERROR,
               "loop: curl_multi_socket_action() failed: %s",
               curl_multi_strerror(mc));
    }

    kn_loop_done_transfers(loop);
}


static void
kn_loop_done_transfers(kn_loop_t *loop)
{
    int             left;
    CURL           *easy;
    CURLMsg        *msg;
    CURLcode        result;
    kn_transfer_t  *xfer;

    while ((msg = curl_multi_info_read(loop->multi, &left)) != NULL) {

        if (msg->msg != CURLMSG_DONE) {
            continue;
        }

        easy = msg->easy_handle;
        result = msg->data.result;
        xfer = NULL;

        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &xfer);

        /* msg is not valid past this point */
        curl_multi_remove_handle(loop->multi, easy);

        if (xfer == NULL) {
            continue;
        }

        xfer->active = 0;
        loop->ntransfers--;

        xfer->done(xfer, result);
    }
}


kn_rc
kn_loop_add_transfer(kn_loop_t *loop, kn_transfer_t *xfer)
{
    CURLMcode  mc;

    if (xfer->active) {
        return KN_OK;
    }

    if (loop->ntransfers == loop->max_transfers) {
        kn_log(loop->log, KN_LOG_WARN,
               "loop: %zu transfers are running already, the most allowed",
               loop->max_transfers);
        return KN_AGAIN;
    }

    curl_easy_setopt(xfer->easy, CURLOPT_PRIVATE, (char *) xfer);
    curl_easy_setopt(xfer->easy, CURLOPT_NOSIGNAL, 1L);

    mc = curl_multi_add_handle(loop->multi, xfer->easy);

    if (mc != CURLM_OK) {
        kn_log(loop->log, KN_LOG_ERROR,
               "loop: curl_multi_add_handle() failed: %s",
               curl_multi_strerror(mc));
        return KN_ERROR;
    }

    xfer->active = 1;
    loop->ntransfers++;

    return KN_OK;
}


void
kn_loop_remove_transfer(kn_loop_t *loop, kn_transfer_t *xfer)
{
    if (!xfer->active) {
        return;
    }

    curl_multi_remove_handle(loop->multi, xfer->easy);
    xfer->active = 0;
    loop->ntransfers--;
}


/* signals */


kn_rc
kn_loop_signals(kn_loop_t *loop, const int *signals, size_t n,
    kn_signal_pt handler, void *data)
{
    size_t              i;
    sigset_t            set;
    struct epoll_event  ev;

    if (loop->signal_fd != -1) {
        kn_log(loop->log, KN_LOG_ERROR, "loop: signals are set already");
        return KN_ERROR;
    }

    sigemptyset(&set);

    for (i = 0; i < n; i++) {
        sigaddset(&set, signals[i]);
    }

    if (sigprocmask(SIG_BLOCK, &set, NULL) == -1) {
        kn_log(loop->log, KN_LOG_ERROR, "loop: sigprocmask() failed: %s",
               strerror(errno));
        return KN_ERROR;
    }

    loop->signal_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (loop->signal_fd == -1) {
        kn_log(loop->log, KN_LOG_ERROR, "loop: signalfd() failed: %s",
               strerror(errno));
        return KN_ERROR;
    }

    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.fd = loop->signal_fd;

    if (epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, loop->signal_fd, &ev) == -1) {
        kn_log(loop->log, KN_LOG_ERROR, "loop: epoll_ctl(signalfd) failed: %s",
               strerror(errno));
        return KN_ERROR;
    }

    loop->signal_handler = handler;
    loop->signal_data = data;

    return KN_OK;
}


static void
kn_loop_read_signals(kn_loop_t *loop)
{
    ssize_t                  n;
    struct signalfd_siginfo  si;

    for ( ;; ) {
        n = read(loop->signal_fd, &si, sizeof(si));

        if (n != (ssize_t) sizeof(si)) {
            return;
        }

        loop->signal_handler(loop->signal_data, (int) si.ssi_signo);
    }
}


/* timers */


void
kn_timer_init(kn_timer_t *timer, kn_timer_pt handler, void *data)
{
    timer->handler = handler;
    timer->data = data;
    timer->when = 0;
    timer->slot = KN_TIMER_UNSET;
}


kn_rc
kn_timer_add(kn_loop_t *loop, kn_timer_t *timer, uint64_t after_ms)
{
    if (kn_timer_is_set(timer)) {
        kn_heap_remove(loop, timer->slot);

    } else if (loop->ntimers == loop->max_timers) {
        kn_log(loop->log, KN_LOG_ERROR,
               "loop: %zu timers are set already, the most allowed",
               loop->max_timers);
        return KN_AGAIN;
    }

    /* from the time of this call, not of the loop iteration */
    timer->when = kn_loop_clock() + after_ms;
    timer->slot = loop->ntimers;
    loop->heap[loop->ntimers++] = timer;
    kn_heap_up(loop, timer->slot);

    return KN_OK;
}


void
kn_timer_cancel(kn_loop_t *loop, kn_timer_t *timer)
{
    if (kn_timer_is_set(timer)) {
        kn_heap_remove(loop, timer->slot);
    }
}


/* every timer due now; a handler may set timers again, due later */

static void
kn_loop_run_timers(kn_loop_t *loop)
{
    kn_timer_t  *timer;

    while (loop->ntimers && loop->heap[0]->when <= loop->now
           && !loop->stopping)
    {
        timer = loop->heap[0];
        kn_heap_remove(loop, 0);
        timer->handler(timer);
    }
}


static void
kn_heap_swap(kn_loop_t *loop, size_t a, size_t b)
{
    kn_timer_t  *t;

    t = loop->heap[a];
    loop->heap[a] = loop->heap[b];
    loop->heap[b] = t;
    loop->heap[a]->slot = a;
    loop->heap[b]->slot = b;
}


static void
kn_heap_up(kn_loop_t *loop, size_t slot)
{
    size_t  parent;

    while (slot > 0) {
        parent = (slot - 1) / 2;

        if (loop->heap[parent]->when <= loop->heap[slot]->when) {
            return;
        }

        kn_heap_swap(loop, parent, slot);
        slot = parent;
    }
}


static void
kn_heap_down(kn_loop_t *loop, size_t slot)
{
    size_t  child, least;

    for ( ;; ) {
        least = slot;
        child = 2 * slot + 1;

        if (child < loop->ntimers
            && loop->heap[child]->when < loop->heap[least]->when)
        {
            least = child;
        }

        if (child + 1 < loop->ntimers
            && loop->heap[child + 1]->when < loop->heap[least]->when)
        {
            least = child + 1;
        }

        if (least == slot) {
            return;
        }

        kn_heap_swap(loop, slot, least);
        slot = least;
    }
}


static void
kn_heap_remove(kn_loop_t *loop, size_t slot)
{
    size_t       last;
    kn_timer_t  *timer;

    timer = loop->heap[slot];
    last = --loop->ntimers;

    if (slot != last) {
        loop->heap[slot] = loop->heap[last];
        loop->heap[slot]->slot = slot;
        kn_heap_down(loop, slot);
        kn_heap_up(loop, slot);
    }

    loop->heap[last] = NULL;
    timer->slot = KN_TIMER_UNSET;
}
