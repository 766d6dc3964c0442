/*
 * The Operator's one event loop: epoll under a libcurl multi handle, plus
 * timers and signals.  Every network transfer of the Operator (the Manager
 * stream, Kubernetes API calls and watches) is an easy handle added here
 * with kn_loop_add_transfer(); libcurl tells the loop which sockets to
 * watch (CURLMOPT_SOCKETFUNCTION) and when it wants to run next
 * (CURLMOPT_TIMERFUNCTION), and the loop drives it with
 * curl_multi_socket_action().
 *
 * Timers and transfers are caller-owned structs embedded in the caller's
 * own state; the loop allocates nothing per timer or transfer.  Both are
 * bounded: kn_loop_create() takes the most timers and transfers that may be
 * pending at once, and adding past a bound answers KN_AGAIN.
 *
 * Callbacks (timer handlers, transfer completions, signals) run from
 * kn_loop_run(), never from inside a libcurl callback, so they may add,
 * remove and pause transfers freely.
 */

#ifndef KN_LOOP_H
#define KN_LOOP_H


#include <curl/curl.h>

#include "kn_core.h"
#include "kn_log.h"


typedef struct kn_loop_s      kn_loop_t;
typedef struct kn_timer_s     kn_timer_t;
typedef struct kn_transfer_s  kn_transfer_t;

typedef void (*kn_timer_pt)(kn_timer_t *timer);
typedef void (*kn_transfer_done_pt)(kn_transfer_t *xfer, CURLcode result);
typedef void (*kn_transfer_event_pt)(kn_transfer_t *xfer);
typedef void (*kn_signal_pt)(void *data, int signo);


#define KN_TIMER_UNSET  ((size_t) -1)


struct kn_timer_s {
    kn_timer_pt           handler;
    void                 *data;
    uint64_t              when;         /* monotonic ms */
    size_t                slot;         /* in the heap, or KN_TIMER_UNSET */
};


struct kn_transfer_s {
    CURL                 *easy;         /* set up by the caller */
    kn_transfer_done_pt   done;         /* called once, handle removed */
    void                 *data;

    /*
     * Optional: libcurl stopped watching one of the transfer's sockets
     * while the transfer goes on.  Called from inside libcurl: set flags
     * or timers only.  (A long-lived stream uses it to notice that
     * libcurl has finished reading though the transfer never completes.)
     */
    kn_transfer_event_pt  unwatched;

    unsigned              active:1;     /* in the multi handle */
};


kn_rc kn_loop_create(const kn_log_t *log, size_t max_timers,
    size_t max_transfers, kn_loop_t **loop);
void kn_loop_destroy(kn_loop_t *loop);

/* runs until kn_loop_stop(); KN_ERROR when epoll itself fails */
kn_rc kn_loop_run(kn_loop_t *loop);
void kn_loop_stop(kn_loop_t *loop);

/* the loop's clock: monotonic milliseconds, refreshed every iteration */
uint64_t kn_loop_now(kn_loop_t *loop);

/* timers: one shot; adding a set timer moves it */
void kn_timer_init(kn_timer_t *timer, kn_timer_pt handler, void *data);
kn_rc kn_timer_add(kn_loop_t *loop, kn_timer_t *timer, uint64_t after_ms);
void kn_timer_cancel(kn_loop_t *loop, kn_timer_t *timer);
#define kn_timer_is_set(timer)  ((timer)->slot != KN_TIMER_UNSET)

/*
 * Transfers: the loop sets CURLOPT_PRIVATE (to xfer) and CURLOPT_NOSIGNAL
 * and adds the handle; when libcurl is done with it the loop removes it and
 * calls xfer->done.  Removing an active transfer calls nothing.
 */
kn_rc kn_loop_add_transfer(kn_loop_t *loop, kn_transfer_t *xfer);
void kn_loop_remove_transfer(kn_loop_t *loop, kn_transfer_t *xfer);

/* these signals are blocked and delivered to handler by the loop */
kn_rc kn_loop_signals(kn_loop_t *loop, const int *signals, size_t n,
    kn_signal_pt handler, void *data);


#endif /* KN_LOOP_H */
