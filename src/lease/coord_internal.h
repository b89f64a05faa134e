/* coord_internal.h — the lease coordinator's state and the calls between
 * its files; not an interface for other modules (see coordinator.h).
 *
 *   coordinator.c  start, shard sync, the public calls, release, close;
 *   coord_queue.c  deferred user callbacks, the lease entries, the write
 *                  queue of each lease and what each write's answer does;
 *   coord_pass.c   renewals and expiry (the tick), take passes;
 *   coord_streams.c the streams (one, or several in a multi-stream table)
 *                  and which one a lease belongs to.
 *
 * State: one entry per lease item seen (sorted by shard id), holding the
 * lease as last seen (authoritative while we hold it: every write of ours is
 * conditional on it), when its counter last changed on our clock, and a
 * queue of writes of which at most one is in flight.  Every user callback
 * goes through one FIFO of deferred calls run by a 0 ms timer, so none runs
 * inside a call into the coordinator and their order follows the events. */
#ifndef KCLD_LEASE_COORD_INTERNAL_H
#define KCLD_LEASE_COORD_INTERNAL_H

#include "base/fmt.h"
#include "lease/coordinator.h"
#include "log.h"

/* Conditional takes in flight at once: enough to take a thousand leases
 * in a second or two, few enough to leave the connection pool and the
 * table's capacity to renewals and checkpoints. */
#define KCLD_COORD_TAKES_IN_FLIGHT 32

struct wop;

/* A stream whose leases the coordinator keeps. */
struct coord_stream {
  char *name;               /* as configured: name or ARN */
  char *id;                 /* multi-stream: account:stream:epoch once
                               resolved; NULL in a single-stream table */
  enum kcld_initial_position pos;
  int removed;              /* no longer consumed here (a reload) */
};

struct entry {
  struct kcld_lease lease;
  uint64_t last_change_ms;  /* counter or owner last seen to change */
  uint64_t last_ok_ms;      /* held: start of the last successful write */
  uint64_t renew_due_ms;    /* held: when the next renew is due (jittered
                               after a take, a renew or a checkpoint) */
  uint64_t eligible_ms;     /* finished and cleanable since */
  uint64_t write_tick;      /* coordinator tick of the last write done */
  uint64_t scan_gen;        /* last scan that listed it */
  struct wop *q_head, *q_tail; /* the head is in flight when busy */
  unsigned pins;            /* deferred callbacks pointing at it */
  unsigned held : 1, busy : 1, renew_queued : 1, delete_queued : 1,
    eligible : 1, gone : 1, bad_checkpoint_logged : 1;
};

/* One queued write to a lease. */
struct wop {
  struct wop *next;
  struct kcld_coordinator *c;
  struct entry *e;
  enum kcld_lease_write kind;
  char *seq;
  uint64_t sub;
  char *window;             /* CHECKPOINT: kcldWindowState (table.h) */
  char **children;
  size_t n_children;
  int steal;                /* TAKE from a live worker */
  int for_release_all;      /* RELEASE counted by release_all */
  kcld_lease_cb cb;         /* CHECKPOINT, END, RELEASE (one) */
  void *arg;
  uint64_t started_ms;
  char prev_owner[160];     /* TAKE: for the log */
};

enum dkind { D_READY, D_ACQUIRED, D_LOST, D_LEASE_CB, D_PARENTS_CB };

/* One user callback waiting for the defer timer. */
struct deferred {
  struct deferred *next;
  enum dkind kind;
  int err;
  int done;
  kcld_lease_cb lcb;
  kcld_parents_cb pcb;
  void *arg;
  struct entry *e;          /* D_ACQUIRED (pinned) */
  char *shard_id;           /* D_LOST */
};

struct kcld_coordinator {
  uv_loop_t *loop;
  struct kcld_dynamodb *db;
  struct kcld_kinesis *kin;
  struct kcld_lease_table *table;
  struct coord_stream *streams;  /* n_streams >= 1 */
  size_t n_streams;
  size_t resolve_idx;       /* start-up: the stream being identified */
  size_t sync_idx;          /* the stream being synced */
  char *worker;
  uint64_t failover_ms, take_ms, sync_ms, cleanup_ms, renew_ms;
  /* A held lease counts as lost once its last successful write started
   * hold_ms ago: failover_ms less guard_ms, so that the check, which runs
   * every tick (tick_ms <= guard_ms / 2) and decides after that loop
   * iteration's I/O, always fires before a peer could take the lease.
   * Ticks are short so that jittered renewals go out spread over time, not
   * in one burst per tick. */
  uint64_t hold_ms, guard_ms, tick_ms;
  unsigned max_leases, max_steal;
  struct kcld_coordinator_cbs cbs;

  uv_timer_t tick_timer, take_timer, sync_timer, defer_timer;
  /* Start-up: the next try of the step that failed transiently. */
  uv_timer_t start_timer;
  /* Started by a tick that found leases due to expire: decides after the
   * loop has read the answers that arrived meanwhile (timers run before
   * I/O), so a stalled loop does not give up leases whose renewals landed. */
  uv_check_t expiry_check;
  int handles_open;

  struct entry **v;
  size_t n, cap;

  struct deferred *dq_head, *dq_tail;

  uint64_t tick;            /* counts completed writes */
  uint64_t scan_tick;       /* tick when the pass scan started */
  uint64_t scan_gen;
  uint64_t next_regular_ms;
  size_t last_target;
  int takes_inflight;       /* takes of the pass not answered yet */
  /* The pass's takes not sent yet (pinned entries), sent at most
   * KCLD_COORD_TAKES_IN_FLIGHT at a time. */
  struct entry **take_list;
  size_t take_n, take_pos;
  int take_steal;
  int takes_sent;           /* sent and not answered */
  struct kcld_coordinator_stats stats;
  /* ensured: the table is there and ACTIVE; synced: the first shard sync
   * is done; ready: and the first scan found the table usable (start-up is
   * over).  failed: start-up ended for good. */
  unsigned multi : 1,       /* a KCL multi-stream table */
    resolved : 1,           /* every stream's identifier is known */
    ensured : 1, synced : 1, ready : 1, failed : 1, closing : 1,
    releasing : 1,
    scanning : 1, syncing : 1, sync_again : 1, pass_pending : 1,
    pass_conflict : 1, retry_used : 1, table_missing : 1, launching : 1;
  uint64_t table_missing_ms; /* since (loop clock) */

  /* Start-up: transient failures in a row, since when, the last warning,
   * and why start-up ended when it failed for good (for ready). */
  unsigned start_failures;
  uint64_t start_since_ms, start_warned_ms;
  char start_why[768];

  /* release_all: releases not yet answered (+1 while queuing them) */
  int release_pending;
  int release_err;
  kcld_lease_cb release_cb;
  void *release_arg;
};

/* ======== coord_queue.c ======== */

/* Deferred user callbacks: each runs later on the loop, in order. */
void kcld_coord_defer_lease_cb(struct kcld_coordinator *c, kcld_lease_cb cb,
                               void *arg, int err);
void kcld_coord_defer_parents_cb(struct kcld_coordinator *c,
                                 kcld_parents_cb cb, void *arg, int err,
                                 int done);
void kcld_coord_defer_ready(struct kcld_coordinator *c, int err);
/* Runs every deferred call now (close: only those whose callers wait for
 * an answer run; ready, acquired and lost are dropped). */
void kcld_coord_defer_flush(struct kcld_coordinator *c);
/* Frees deferred calls left over (only after a misuse: a call after
 * close). */
void kcld_coord_defer_drop(struct kcld_coordinator *c);

/* Entries. */
struct entry *kcld_coord_entry_find(const struct kcld_coordinator *c,
                                    const char *shard_id);
int kcld_coord_entry_cmp_key(const void *key, const void *elem);
int kcld_coord_entry_cmp(const void *a, const void *b);
int kcld_coord_entries_reserve(struct kcld_coordinator *c, size_t n);
void kcld_coord_entry_free(struct entry *e);
/* Replaces the entry's lease with a copy of `now` and notes a change of
 * counter or owner; NULL marks the item gone. */
void kcld_coord_entry_update(struct kcld_coordinator *c, struct entry *e,
                             const struct kcld_lease *now);
/* Another worker's lease whose counter has not changed for failover. */
int kcld_coord_entry_expired(const struct kcld_coordinator *c,
                             const struct entry *e, uint64_t now);
int kcld_coord_str_eq_null(const char *a, const char *b);
/* Why the lease layer keeps this lease's shard from progressing (a
 * KCLD_STALL_* label), or NULL. */
const char *kcld_coord_entry_stall(const struct kcld_coordinator *c,
                                   const struct entry *e);
/* Whether a lease's checkpoint can be started from here (a valid
 * checkpoint; AT_TIMESTAMP only when its stream starts AT_TIMESTAMP, so a
 * timestamp is known). */
int kcld_coord_checkpoint_usable(const struct kcld_coordinator *c,
                                 const struct kcld_lease *l);

/* Writes. */
struct wop *kcld_coord_wop_new(struct kcld_coordinator *c, struct entry *e,
                               enum kcld_lease_write kind);
/* Queues w on its entry and sends it when nothing is in flight. */
void kcld_coord_enqueue(struct kcld_coordinator *c, struct entry *e,
                        struct wop *w);
/* The lease is no longer ours: tell the user; what is queued for it fails.
 * With `known`, `now` is the item as re-read (NULL: gone) and becomes our
 * view of it. */
void kcld_coord_lose(struct kcld_coordinator *c, struct entry *e,
                     const char *reason, const struct kcld_lease *now,
                     int known);
/* Fails every queued write with KCLD_ECANCELED (close). */
void kcld_coord_cancel_writes(struct kcld_coordinator *c);

/* ======== coord_pass.c ======== */

void kcld_coord_on_tick(uv_timer_t *t);
/* Starts a take pass now, or marks one pending when a scan or takes are
 * out. */
void kcld_coord_pass_start(struct kcld_coordinator *c);
/* All takes of a pass have answered. */
void kcld_coord_pass_done(struct kcld_coordinator *c);
/* Sends the pass's next takes while fewer than KCLD_COORD_TAKES_IN_FLIGHT
 * are out (a take's answer calls it again). */
void kcld_coord_takes_launch(struct kcld_coordinator *c);
/* Forgets the takes not sent yet (release_all, close). */
void kcld_coord_takes_drop(struct kcld_coordinator *c);
/* How long after a take (first), a renew or a checkpoint the next renew is
 * due: renew_ms less a random part (up to half of it after a take, a tenth
 * otherwise), so that leases taken together do not renew together. */
uint64_t kcld_coord_renew_after(struct kcld_coordinator *c, int first);

/* ======== coord_streams.c ======== */

/* Copies opts' streams (opts->stream alone in a single-stream table).
 * Returns 0, KCLD_EINVAL or KCLD_ENOMEM (kcld_coord_streams_clean_up then
 * frees what was copied). */
int kcld_coord_streams_init(struct kcld_coordinator *c,
                            const struct kcld_coordinator_opts *opts);
/* Frees what kcld_coord_streams_init copied into `c` (c itself stays). */
void kcld_coord_streams_clean_up(struct kcld_coordinator *c);
/* The start-up step that identifies every stream of a multi-stream table
 * (DescribeStreamSummary, one stream at a time); sets c->resolved and goes
 * on with kcld_coord_start_step, or fails through kcld_coord_start_failed.
 * Nothing to do in a single-stream table. */
void kcld_coord_streams_resolve(struct kcld_coordinator *c);
/* The configured stream a lease belongs to; NULL when none (a stream of
 * the table that is not configured here, or no longer: removed). */
const struct coord_stream *kcld_coord_stream_of(
  const struct kcld_coordinator *c, const struct kcld_lease *l);

/* ======== coordinator.c ======== */

/* Queues the release of held lease e (not counted by release_all); cb (may
 * be NULL) is told how it went.  Returns 0, or KCLD_ENOMEM (nothing
 * queued, cb not called). */
int kcld_coord_release_one(struct kcld_coordinator *c, struct entry *e,
                           kcld_lease_cb cb, void *arg);

/* Runs the next start-up step. */
void kcld_coord_start_step(struct kcld_coordinator *c);

void kcld_coord_sync_start(struct kcld_coordinator *c);
/* The sync goes on at streams[sync_idx] (removed ones skipped), or ends
 * (then the pass) past the last. */
void kcld_coord_sync_next(struct kcld_coordinator *c);
/* Sync step of a stream added while running (coord_streams.c): identifies
 * streams[sync_idx] (DescribeStreamSummary), then syncs it; a failure is
 * logged and the sync goes on with the next stream (tried again at the
 * next sync).  Returns 0 or a negative code (nothing started). */
int kcld_coord_stream_identify(struct kcld_coordinator *c);
/* Notes what a call to the lease table answered: KCLD_ENOTFOUND
 * (ResourceNotFoundException) marks the table missing, logged once; an
 * answer from the table (0, or a failed condition) marks it back.  Returns
 * 1 when err is KCLD_ENOTFOUND (the caller need not log it again). */
int kcld_coord_note_table(struct kcld_coordinator *c, int err);
/* The start-up steps, as named in logs and in ready's `why`. */
#define KCLD_COORD_STEP_TABLE "lease table"
#define KCLD_COORD_STEP_STREAM "stream"
#define KCLD_COORD_STEP_SYNC "shard sync"
#define KCLD_COORD_STEP_SCAN "lease table scan"
/* A start-up step failed with `err` (`why`: the failing call's message).
 * A transient failure is tried again, that step only, after a backoff, for
 * as long as it takes (a warning at the first few, then at most every 30
 * s); any other ends start-up with ready(err, "STEP: why"). */
void kcld_coord_start_failed(struct kcld_coordinator *c, const char *step,
                             int err, int transient, const char *why);
/* The first scan ended (`st`): start-up ends here with ready(0), or fails
 * (kcld_coord_start_failed) when the scan failed or the table cannot be
 * used.  Returns 0 to go on with the pass. */
int kcld_coord_first_scan(struct kcld_coordinator *c,
                          const struct kcld_svc_status *st,
                          const struct kcld_lease *leases, size_t n);
/* Queues the release of a held lease for release_all. */
void kcld_coord_release_queue(struct kcld_coordinator *c, struct entry *e);
/* Calls the release_all callback once every release has answered and no
 * take is out any more. */
void kcld_coord_release_check(struct kcld_coordinator *c);
/* One release (of release_all) answered. */
void kcld_coord_release_done_one(struct kcld_coordinator *c, int err);

#endif
