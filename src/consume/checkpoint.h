/* checkpoint.h — one shard's checkpoint: what has been dealt with, what has
 * been written, and when to write next.
 *
 * The shard consumer reports progress ("every record of this shard up to and
 * including (sequence, sub-sequence) is dealt with"); this module keeps the
 * highest such position and writes it through a write function (normally
 * kcld_coordinator_checkpoint, a fake in unit tests):
 *
 *  - Never past what was reported: only positions given to
 *    kcld_checkpoint_progress() are written, and positions only move forward
 *    (an older or equal report is ignored).  Sequence numbers are compared as
 *    decimal integers (kcld_seq_position_compare), never as text.
 *  - interval_ms == 0: a write follows every progress report.  interval_ms
 *    > 0: at most one write starts per interval; reports in between are
 *    coalesced into the next write, which carries the latest position.
 *  - At most one write is in flight.  Reports that arrive meanwhile are
 *    written once it completes (coalesced into one write).
 *  - A transient failure (any error but KCLD_ELOST) is retried by a timer
 *    with exponential backoff (retry_min_ms doubling up to retry_max_ms),
 *    with the latest position.  KCLD_ELOST means the lease is gone: nothing
 *    is ever written again and the lost callback runs once.
 *  - kcld_checkpoint_flush() writes at once, ignoring the interval, and says
 *    when everything reported so far is written: shutdown and lease release
 *    always flush.
 *  - A tumbling window's text (kcld_checkpoint_progress_window) goes with
 *    the position it was reported with, in the same write (write_window);
 *    a new window text at the same position is written too.
 *
 * Loop thread only. */
#ifndef KCLD_CONSUME_CHECKPOINT_H
#define KCLD_CONSUME_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "lease/coordinator.h"

struct kcld_checkpoint;

/* Writes checkpoint (sequence, sub) for shard_id and calls cb(err, cb_arg)
 * exactly once: 0 (written), KCLD_ELOST (the lease is not ours) or another
 * negative code (transient; will be retried).  cb may run before the
 * function returns.  `sequence` is valid only during the call.  The shape of
 * kcld_coordinator_checkpoint, with the coordinator as a void *ctx. */
typedef void (*kcld_checkpoint_write_fn)(void *ctx, const char *shard_id,
                                         const char *sequence, uint64_t sub,
                                         kcld_lease_cb cb, void *cb_arg);

/* The same, with the shard's window text (kcldWindowState: NULL leaves it,
 * "" removes it); kcld_coordinator_checkpoint_window's shape. */
typedef void (*kcld_checkpoint_write_window_fn)(void *ctx,
                                                const char *shard_id,
                                                const char *sequence,
                                                uint64_t sub,
                                                const char *window,
                                                kcld_lease_cb cb,
                                                void *cb_arg);

struct kcld_checkpoint_opts {
  uv_loop_t *loop;
  const char *shard_id;          /* copied */
  uint64_t interval_ms;          /* checkpoint.interval; 0 = every report */
  uint64_t retry_min_ms;         /* first retry after a failure; 0 = 500 */
  uint64_t retry_max_ms;         /* retry delay cap; 0 = 30000 */
  kcld_checkpoint_write_fn write; /* required */
  kcld_checkpoint_write_window_fn write_window; /* optional: used instead
                                    of write once a window was reported */
  void *write_ctx;
  /* The checkpoint already stored for the shard, when it is a sequence
   * number (NULL otherwise: TRIM_HORIZON, LATEST, ...).  Reports at or
   * below it are not written again. */
  const char *written_sequence;
  uint64_t written_sub;
  /* Called once, on the loop, when a write answered KCLD_ELOST (not after
   * kcld_checkpoint_lose or kcld_checkpoint_close).  May be NULL. */
  void (*lost)(void *arg);
  void *arg;
};

/* Counters, for metrics and tests. */
struct kcld_checkpoint_stats {
  uint64_t writes;     /* writes started */
  uint64_t written;    /* writes that succeeded */
  uint64_t failures;   /* transient failures */
  uint64_t written_ms; /* loop time (uv_now) of the last write that
                          succeeded; 0 = none yet */
};

/* Creates a shard's checkpoint tracker (one uv timer on opts->loop).
 * Returns 0, KCLD_EINVAL (no loop, shard id or write function, or a
 * written_sequence that is not a sequence number) or KCLD_ENOMEM. */
int kcld_checkpoint_new(const struct kcld_checkpoint_opts *opts,
                        struct kcld_checkpoint **out);

/* Reports that every record up to and including (sequence, sub) is dealt
 * with, and writes it now or later as the interval allows.  Returns 0 (also
 * when the position is not beyond the last report and so is ignored),
 * KCLD_EINVAL (not a sequence number) or KCLD_ELOST (the lease is gone or
 * kcld_checkpoint_lose was called; nothing will be written). */
int kcld_checkpoint_progress(struct kcld_checkpoint *cp, const char *sequence,
                             uint64_t sub);

/* kcld_checkpoint_progress, and the shard's window text as of this
 * position (copied; NULL = unchanged), written with it; a text that
 * differs from the last one is written even when the position does not
 * move.  Needs write_window. */
int kcld_checkpoint_progress_window(struct kcld_checkpoint *cp,
                                    const char *sequence, uint64_t sub,
                                    const char *window);

/* Writes what has been reported and not yet written, at once (ignoring the
 * interval; failures are still retried with backoff), and calls cb once the
 * position reported before this call is written: cb(0), or cb(KCLD_ELOST)
 * when the lease is lost or kcld_checkpoint_lose is called first, or
 * cb(KCLD_ECANCELED) when kcld_checkpoint_close is called first.  With
 * nothing to write, cb(0) runs before this returns.  Several flushes may
 * wait at once. */
void kcld_checkpoint_flush(struct kcld_checkpoint *cp, kcld_lease_cb cb,
                           void *arg);

/* The lease is gone: never write again (a write in flight may still land;
 * its result is ignored).  Waiting flushes get KCLD_ELOST before this
 * returns.  The lost callback does not run. */
void kcld_checkpoint_lose(struct kcld_checkpoint *cp);

/* The highest position reported (1, and *sequence, *sub; the string lives
 * until the next progress call), or 0 when nothing was reported. */
int kcld_checkpoint_handled(const struct kcld_checkpoint *cp,
                            const char **sequence, uint64_t *sub);

/* The last position written successfully (or given as written_sequence):
 * 1, and *sequence, *sub; or 0 when none. */
int kcld_checkpoint_written(const struct kcld_checkpoint *cp,
                            const char **sequence, uint64_t *sub);

/* 1 when a reported position is not written yet (or a write is in flight),
 * else 0. */
int kcld_checkpoint_pending(const struct kcld_checkpoint *cp);

/* What the tracker waits for now, in words for a log line: "a write in
 * flight", "a retry's backoff", "the checkpoint interval", "a write not
 * started" (dirty, nothing under way), or "nothing" (stored, or lost or
 * closed: "lost", "closed"). */
const char *kcld_checkpoint_waits(const struct kcld_checkpoint *cp);

void kcld_checkpoint_stats(const struct kcld_checkpoint *cp,
                           struct kcld_checkpoint_stats *out);

/* Stops: waiting flushes get KCLD_ECANCELED before this returns, nothing is
 * written any more and no callback runs afterwards.  The memory is freed
 * once the timer is closed and a write in flight has called back: run the
 * loop afterwards (and let the writer complete).  Does not flush: call
 * kcld_checkpoint_flush first for that.  NULL is ignored. */
void kcld_checkpoint_close(struct kcld_checkpoint *cp);

#endif
