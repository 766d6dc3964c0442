/*
 * The usage spool: every UsageReport is on disk before it is sent, and
 * stays there until the Manager acks its sequence, across reconnects,
 * Manager outages and Operator restarts (SIGKILL included).
 *
 * On disk, in one directory (the Operator's alone):
 *
 *   usage-<sequence, 20 digits>.pb   one report, protobuf-packed
 *                                    (kubenova.v1.UsageReport)
 *   state                            "sequence S window-end W": the last
 *                                    report added
 *
 * Every file is written to a ".tmp" name, fsync'd, renamed into place, and
 * the directory fsync'd, so a crash leaves either the old file or the new
 * one (leftover ".tmp" files are removed at open).  A report file is
 * written before the state, so the next sequence is always
 * max(state, newest report) + 1 and a sequence is never used twice; a
 * spool with neither starts at the current Unix time in seconds, so that a
 * lost directory does not reuse sequences the Manager holds (at most one
 * report is made per second of wall time: windows are at least 1 s).
 *
 * Bounded: at most max_reports reports are kept; adding one more drops the
 * oldest, with an error logged (that usage is lost).  A file that cannot
 * be read back, or that no longer fits a gRPC message, is dropped the same
 * way.
 *
 * Delivery: reports go out oldest first through the send callback
 * (kn_grpc_send_usage), at most in_flight of them unacked at once, when
 * the stream is live (kn_spool_connected) and as they are added.  A stream
 * that ends forgets what was in flight: everything unacked goes again on
 * the next one.  A send that answers KN_AGAIN (the send queue is full) is
 * tried again after retry_ms; a report unacked after resend_ms on the same
 * stream is sent again (the Manager stores by (cluster, sequence), so a
 * repeat is harmless).
 *
 * The file I/O is synchronous local-disk I/O (fsync included) on the
 * event loop: a few small files per window, bounded by max_message.
 */

#ifndef KN_SPOOL_H
#define KN_SPOOL_H


#include "kn_core.h"
#include "kn_log.h"
#include "kn_loop.h"
#include "kubenova.pb-c.h"


typedef struct kn_spool_s  kn_spool_t;

/* KN_OK: queued to the Manager; KN_AGAIN: full, later; KN_DECLINED: not
   connected; KN_ERROR: this report can never be sent */
typedef kn_rc (*kn_spool_send_pt)(void *data,
    const Kubenova__V1__UsageReport *report);


/* a zero field takes the default */
typedef struct {
    const char  *dir;               /* required; created if missing */
    size_t       max_reports;       /* default 10000 */
    size_t       max_message;       /* largest report file; default 4m */
    unsigned     in_flight;         /* sent and unacked at once; 16 */
    uint64_t     retry_ms;          /* after KN_AGAIN; 500 */
    uint64_t     resend_ms;         /* unacked on a live stream; 60000 */
} kn_spool_conf_t;


/*
 * Reads the directory (sequences, state, leftovers).  conf->dir must
 * outlive the spool.  KN_ERROR: unusable (logged).
 */
kn_rc kn_spool_open(kn_loop_t *loop, const kn_log_t *log,
    const kn_spool_conf_t *conf, kn_spool_send_pt send, void *data,
    kn_spool_t **out);
void kn_spool_close(kn_spool_t *spool);

/*
 * Gives report the next sequence, writes it durably, then sends it when
 * it can.  KN_ERROR: it could not be written (logged); the sequence is
 * not used.
 */
kn_rc kn_spool_add(kn_spool_t *spool, Kubenova__V1__UsageReport *report);

/* the Manager stored that sequence: its file goes */
void kn_spool_acked(kn_spool_t *spool, int64_t sequence);

/* a stream was welcomed: send what is unacked */
void kn_spool_connected(kn_spool_t *spool);
/* the stream ended: nothing is in flight any more */
void kn_spool_disconnected(kn_spool_t *spool);

/* reports held (unacked) */
size_t kn_spool_count(kn_spool_t *spool);
/* the window end (Unix seconds) of the last report added, or 0 */
int64_t kn_spool_last_window_end(kn_spool_t *spool);


#endif /* KN_SPOOL_H */
