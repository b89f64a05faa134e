/* stall.h — stuck shards made loud: which shards are stalled, and why.
 *
 * A shard is stalled when it has made no progress for stuck_ms while it has
 * work or cannot fetch (kcld_stall_judge):
 *
 *  - Its records wait: records fetched are not dealt with, and none has
 *    been (no progress report, no checkpoint written) for stuck_ms +
 *    grace_ms (grace_ms = batch.window: records may wait that long for
 *    their batch).  The reason is what holds them, as the dispatcher says
 *    (destination_unavailable, handler_unavailable, throttled, retrying),
 *    else no_progress.
 *  - It cannot fetch: the fetch source's attempts fail and no answer has
 *    moved the shard on for stuck_ms: no_iterator (the stream deleted or
 *    re-created), throttled, or fetch_error.
 *  - It is behind: MillisBehindLatest > 0 and no answer has moved it on
 *    for stuck_ms (it waits for fetch memory that other shards hold, or a
 *    subscription delivers nothing): no_progress.
 *  - The lease layer keeps it (lease/coordinator.h; any shard of the
 *    table, held here or not): invalid_checkpoint, lease_table_missing,
 *    once that has lasted stuck_ms.  These win over the others.
 * A shard waiting for its parents, idle at the tip, at its end or stopping
 * is never stalled.
 *
 * The detector walks its owner's shards every stuck_ms / 4 (at least every
 * 100 ms, at most every 5 s; kcld_stall_check walks at once).  While a
 * shard is stalled it logs an error line, "shard stalled", with the shard,
 * the reason, the seconds since its progress and the last error behind it:
 * at once, again when the reason changes, and else at most once a minute
 * per shard (never cut by the log's rate limit: distinct shards are
 * distinct lines).  When the stall ends (the shard moves, or is no longer
 * held or known), one info line "shard no longer stalled".  The current
 * stalls are read with kcld_stall_each (for the kcld_shard_stalled gauge
 * and /healthz, ops/monitor.h).
 *
 * Loop thread only. */
#ifndef KCLD_OPS_STALL_H
#define KCLD_OPS_STALL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "consume/shard_consumer.h"

/* The reasons of the fetch side and the fallback (the others come from
 * the dispatcher and the coordinator). */
#define KCLD_STALL_NO_ITERATOR "no_iterator"
#define KCLD_STALL_THROTTLED "throttled"
#define KCLD_STALL_FETCH_ERROR "fetch_error"
#define KCLD_STALL_NO_PROGRESS "no_progress"

/* Why a held shard's records wait, as the dispatcher says. */
struct kcld_stall_hold {
  const char *reason;  /* a stall reason (static), or NULL: nothing holds
                          them but the handler's pace */
  const char *error;   /* the last error behind it, or NULL */
};

/* The judgement on one held shard at `now` (loop ms): the reason it is
 * stalled (a static string), or NULL.  When stalled, *since_ms is since
 * when it has made no progress, and *detail the error behind it (valid as
 * long as st and hold are; may be NULL).  Pure. */
const char *kcld_stall_judge(const struct kcld_shard_consumer_stats *st,
                             const struct kcld_stall_hold *hold, uint64_t now,
                             uint64_t stuck_ms, uint64_t grace_ms,
                             uint64_t *since_ms, const char **detail);

struct kcld_stall;
struct kcld_stall_visit;

/* Called at each check: hand over every held shard and every stall of the
 * lease layer. */
typedef void (*kcld_stall_walk_fn)(void *arg, struct kcld_stall_visit *v);

struct kcld_stall_opts {
  uv_loop_t *loop;
  uint64_t stuck_ms;           /* metrics.stuck_after, > 0 */
  uint64_t grace_ms;           /* batch.window */
  kcld_stall_walk_fn walk;     /* required */
  void *arg;
};

/* Starts the detector (its timer does not keep the loop alive).  Returns
 * 0, KCLD_EINVAL (no loop or walk, stuck_ms 0) or KCLD_ENOMEM. */
int kcld_stall_start(const struct kcld_stall_opts *opts,
                     struct kcld_stall **out);

/* New limits (a reload): the next check judges with them. */
void kcld_stall_set_limits(struct kcld_stall *s, uint64_t stuck_ms,
                           uint64_t grace_ms);

/* Walks now: judges, logs, and updates what kcld_stall_each lists. */
void kcld_stall_check(struct kcld_stall *s);

/* A held shard, its consumer's stats and what holds its records. */
void kcld_stall_visit_shard(struct kcld_stall_visit *v, const char *shard_id,
                            const struct kcld_shard_consumer_stats *st,
                            const struct kcld_stall_hold *hold);

/* A shard the lease layer keeps from progressing, for `reason` (copied),
 * since since_ms (loop ms; 0 = unknown: since the first check that saw
 * it).  Stalled once that has lasted stuck_ms. */
void kcld_stall_visit_lease(struct kcld_stall_visit *v, const char *shard_id,
                            const char *reason, uint64_t since_ms);

/* Calls cb for every shard stalled as of the last check: its id, reason
 * and since when it has made no progress (loop ms).  The strings are valid
 * during the call only. */
typedef void (*kcld_stall_cb)(const char *shard_id, const char *reason,
                              uint64_t since_ms, void *arg);
void kcld_stall_each(const struct kcld_stall *s, kcld_stall_cb cb, void *arg);

/* Shards stalled as of the last check. */
size_t kcld_stall_count(const struct kcld_stall *s);

/* Stops the timer; memory goes in its close callback: run the loop
 * afterwards.  No line is logged for the stalls that remain.  NULL is
 * ignored. */
void kcld_stall_close(struct kcld_stall *s);

#endif
