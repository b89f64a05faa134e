/* coordinator.h — shard leases through a KCL-compatible DynamoDB lease table.
 *
 * The coordinator owns this worker's view of the lease table: it creates the
 * table when missing, keeps the leases in step with the stream's shards
 * (shard_sync.c), renews the leases it holds, takes expired and unowned ones,
 * steals to balance, and releases everything on shutdown.  It tells its user
 * (the daemon) when a lease is acquired or lost; the user runs one shard
 * consumer per held lease and checkpoints through the coordinator, so every
 * write to a lease item is conditional on what this worker last saw.
 *
 * Timing (F = failover_ms, T = take_interval_ms):
 *  - Held leases are renewed every F/3, each on its own jittered schedule
 *    (the first renewal after a take at a random point in [F/6, F/3], later
 *    ones up to F/30 early), so that leases taken together do not renew in
 *    one burst.  A held lease counts as lost, renew in flight or not, once
 *    its last successful write started F - F/10 ago on our monotonic clock
 *    (checked every min(F/20, 100 ms), after that loop iteration's I/O), so
 *    always before a peer could take it; it is never renewed again.
 *  - A lease of another worker is expired when its leaseCounter has not
 *    changed for F on our clock (first sight counts as a change).
 *  - Take passes (Scan, balance, take/steal; see balance.h) run every T, and
 *    also at the moment a lease of another worker would expire when that is
 *    sooner (so a dead worker's leases are taken within F + min(F, T) of
 *    its last renewal, not 2T).  A pass whose take lost a race runs once
 *    more at once.  At most KCLD_COORD_TAKES_IN_FLIGHT (32) takes are in
 *    flight at once, so a worker starting on an idle table of thousands of
 *    leases takes them quickly without starving its renewals.
 *  - Writes to one lease are serialized: at most one in flight, the others
 *    queued, so the expected counter is always the one last written.
 *
 * Callbacks never run inside a call into the coordinator: they run later on
 * the loop, in the order of the events that caused them.
 *
 * Loop thread only.  Times are monotonic (uv_now) for expiry; wall clock is
 * never compared across hosts. */
#ifndef KCLD_LEASE_COORDINATOR_H
#define KCLD_LEASE_COORDINATOR_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "aws/call.h"
#include "lease/table.h"

/* struct kcld_lease (a lease as this worker last saw it) is defined in
 * lease/table.h, with the item model.  Read-only for users; valid until the
 * lost callback for its shard returns or the coordinator is closed. */

enum kcld_initial_position {
  KCLD_POS_TRIM_HORIZON = 0,
  KCLD_POS_LATEST = 1,
  KCLD_POS_AT_TIMESTAMP = 2
};

struct kcld_coordinator;

/* One stream of a multi-stream lease table. */
struct kcld_coordinator_stream {
  const char *stream;          /* name or ARN */
  enum kcld_initial_position initial_position;  /* of its new leases; only
                                  with AT_TIMESTAMP is a lease of it at the
                                  AT_TIMESTAMP checkpoint usable */
};

struct kcld_coordinator_cbs {
  /* The lease table is reachable, the first shard sync is done and the
   * first scan found the table usable (err == 0, why NULL); or start-up
   * failed for good (err < 0; the coordinator then does nothing until
   * closed): KCLD_ECONFIG for a table kcld cannot use (a KCL multi-stream
   * table without opts.streams, or a single-stream one with them; leases
   * at the AT_TIMESTAMP checkpoint while no timestamp is known), else the
   * failing call's error, e.g. KCLD_ENOTFOUND for a stream that does not
   * exist, KCLD_EAWS for AccessDeniedException.
   * `why` then says what failed in one line, for the caller to log: the
   * step ("lease table", "stream" (identifying the streams of a
   * multi-stream table), "shard sync", "lease table scan") and the failing
   * call's message (operation, resource, AWS error), valid during the
   * call.  Transient failures (kcld_svc_transient: throttling, 5xx, no
   * answer, timeouts) never end start-up: the step is tried again with a
   * capped backoff for as long as it takes, with a warning ("start-up
   * waits") at first and then every 30 s.  May be NULL. */
  void (*ready)(int err, const char *why, void *arg);
  /* A lease is now ours.  Start consuming its shard from lease->checkpoint
   * once kcld_coordinator_parents_done() says so.  Required. */
  void (*acquired)(const struct kcld_lease *lease, void *arg);
  /* A lease is no longer ours (stolen, expired, or a write found another
   * owner).  Stop handing this shard's records to the handler at once; any
   * checkpoint for it will now fail with KCLD_ELOST.  Not called for leases
   * given up by kcld_coordinator_shard_ended or _release_all.  Required. */
  void (*lost)(const char *shard_id, void *arg);
  void *arg;
};

struct kcld_coordinator_opts {
  uv_loop_t *loop;
  struct kcld_aws *aws;        /* borrowed; must outlive the coordinator */
  const char *table;           /* lease table name */
  const char *stream;          /* stream name or ARN (single-stream) */
  /* Multi-stream (n_streams > 0; `stream` and initial_position are then
   * unused): the leases of these streams share the table in the KCL's
   * multi-stream format (lease/table.h) and are balanced together.  At
   * start-up, after the table, each stream is identified
   * (DescribeStreamSummary: account from its StreamARN, creation epoch
   * from StreamCreationTimestamp; KCLD_ENOTFOUND for a stream that does
   * not exist), then every shard sync syncs each stream in turn.  Leases
   * of streams of the table that are not listed here are left alone. */
  const struct kcld_coordinator_stream *streams;  /* read during
                                  kcld_coordinator_start only */
  size_t n_streams;
  const char *worker_id;       /* unique per process (hostname:pid) */
  uint64_t failover_ms;        /* lease.failover_time; > 0 */
  uint64_t take_interval_ms;   /* lease.take_interval; > 0 */
  uint64_t shard_sync_interval_ms;  /* lease.shard_sync_interval; > 0 */
  uint64_t cleanup_delay_ms;   /* 0 = delete finished leases at once */
  unsigned max_leases;         /* 0 = no cap */
  unsigned max_steal;          /* 0 = never steal */
  enum kcld_initial_position initial_position;
  int64_t initial_timestamp_ms;  /* with KCLD_POS_AT_TIMESTAMP (the lease
                                    stores "AT_TIMESTAMP"; consumers use
                                    this value).  Only then is a lease at
                                    the AT_TIMESTAMP checkpoint usable, as
                                    in the KCL, which starts such a lease
                                    from its configured timestamp. */
  struct kcld_coordinator_cbs cbs;
};

typedef void (*kcld_lease_cb)(int err, void *arg);

/* Starts: create/wait for the table, shard sync, then the renew and take
 * timers and a first take pass (transient failures are tried again, see
 * cbs.ready).  Strings are copied.  Returns 0 (cbs.ready
 * reports the outcome) or KCLD_EINVAL (a required option or callback
 * missing) / KCLD_ENOMEM, and then nothing was started. */
int kcld_coordinator_start(const struct kcld_coordinator_opts *opts,
                           struct kcld_coordinator **out);

/* Conditionally writes a checkpoint (sequence number + sub-sequence) for a
 * held shard: checkpoint, checkpointSubSequenceNumber,
 * ownerSwitchesSinceCheckpoint=0, leaseCounter+1 (so it also renews).  cb
 * gets 0, KCLD_ELOST (the lease is not ours any more; lost() has been or
 * will be called, unless it was never held), or another KCLD_E* for a
 * transient failure (retry later).  `sequence` is copied. */
void kcld_coordinator_checkpoint(struct kcld_coordinator *c,
                                 const char *shard_id, const char *sequence,
                                 uint64_t sub, kcld_lease_cb cb, void *arg);

/* A held shard reached its end: create the leases of `children` (shard ids;
 * at TRIM_HORIZON with their parents and hash keys from ListShards, so a
 * merge's child names both parents), then in one conditional write set
 * checkpoint SHARD_END, record childShardIds and remove leaseOwner (a
 * finished lease needs no worker; it is no longer held and lost() is not
 * called for it).  Then runs a shard sync and a take pass, so the children
 * are picked up at once.  cb gets 0, KCLD_ELOST, KCLD_ENOTFOUND (a child is
 * not listed yet) or another transient error: retry later. */
void kcld_coordinator_shard_ended(struct kcld_coordinator *c,
                                  const char *shard_id,
                                  const char *const *children,
                                  size_t n_children, kcld_lease_cb cb,
                                  void *arg);

/* Answers whether every parent of a known shard is absent from the table or
 * at SHARD_END (then its records may be handled without breaking
 * per-partition-key order), reading each parent not known to be finished
 * with a consistent GetItem.  cb gets err and done (1/0); KCLD_ENOTFOUND
 * when the shard's lease is unknown. */
typedef void (*kcld_parents_cb)(int err, int done, void *arg);
void kcld_coordinator_parents_done(struct kcld_coordinator *c,
                                   const char *shard_id, kcld_parents_cb cb,
                                   void *arg);

/* Graceful end: stop taking and renewing, release every held lease
 * (conditionally remove leaseOwner, leaseCounter+1) so peers take them at
 * their next take, and call cb when done: 0, or the first failure (that
 * lease then simply expires).  Takes in flight are released too when they
 * land.  Afterwards the coordinator does nothing more until closed.  The
 * user must have stopped its consumers and flushed their checkpoints
 * first; lost() is not called for released leases.  Called before ready,
 * it ends start-up: ready never runs. */
void kcld_coordinator_release_all(struct kcld_coordinator *c, kcld_lease_cb cb,
                                  void *arg);

/* The multi-stream identifier account:stream:creationEpoch of the stream
 * `stream_arn` created at `created_s` (seconds since the epoch, as
 * DescribeStreamSummary's StreamCreationTimestamp; the fraction is
 * dropped, as the KCL's getEpochSecond does), into buf (n bytes).  Returns
 * 0 or KCLD_EINVAL (not a Kinesis stream ARN, no timestamp, buf too
 * small). */
int kcld_coordinator_stream_id(const char *stream_arn, double created_s,
                               char *buf, size_t n);

/* Adds a stream to a multi-stream coordinator while it runs (a reload):
 * from the next shard sync on (started now), it is identified
 * (DescribeStreamSummary; a failure is logged and tried again at the next
 * sync), synced, and its leases are taken and balanced with the others.
 * Returns its index (after those of opts.streams and of the streams added
 * before), or KCLD_EINVAL (a single-stream coordinator, no name) /
 * KCLD_ENOMEM. */
int kcld_coordinator_add_stream(struct kcld_coordinator *c,
                                const struct kcld_coordinator_stream *s);

/* Stream `index` is no longer consumed here (a reload): its leases are
 * neither taken, synced nor cleaned up from now on, and a take of one that
 * lands later is released at once.  Leases of it held now stay held
 * (renewed, checkpointed) until kcld_coordinator_release gives each up,
 * once the user stopped its consumer.  Its leases are never deleted: the
 * KCL's former-streams deletion strategies are not applied.  Its index is
 * not reused. */
void kcld_coordinator_remove_stream(struct kcld_coordinator *c,
                                    size_t index);

/* Gives held lease shard_id up now (conditionally removes leaseOwner,
 * leaseCounter+1), so that a peer takes it at its next take; lost() is not
 * called for it.  cb gets 0 (released, or no longer ours), KCLD_ELOST (not
 * held), or another error (it then expires after the failover time). */
void kcld_coordinator_release(struct kcld_coordinator *c,
                              const char *shard_id, kcld_lease_cb cb,
                              void *arg);

/* Which stream a lease (as given to acquired) belongs to: its index in
 * opts.streams (or as kcld_coordinator_add_stream returned it), 0 in a
 * single-stream table; -1 for a lease of no configured stream (never
 * acquired) or of a removed one. */
int kcld_coordinator_stream_index(const struct kcld_coordinator *c,
                                  const struct kcld_lease *lease);

/* Number of leases held now. */
size_t kcld_coordinator_held(const struct kcld_coordinator *c);

/* Lease changes since start, counted as they happen. */
struct kcld_coordinator_stats {
  uint64_t taken;    /* unowned or expired leases taken */
  uint64_t stolen;   /* leases taken from a live worker to balance */
  uint64_t lost;     /* held leases lost: stolen by a peer, not renewed in
                        time, or a write found another owner */
};

/* Copies the counters into *out. */
void kcld_coordinator_stats(const struct kcld_coordinator *c,
                            struct kcld_coordinator_stats *out);

/* Why the lease layer keeps a shard from progressing: the reason labels of
 * kcld_shard_stalled{shard,reason} and of /healthz. */
#define KCLD_STALL_INVALID_CHECKPOINT "invalid_checkpoint"
#define KCLD_STALL_LEASE_TABLE_MISSING "lease_table_missing"

struct kcld_coordinator_health {
  int table_missing;          /* the lease table answered
                                 ResourceNotFoundException to the last call
                                 that reached DynamoDB: nothing can be
                                 renewed, taken or checkpointed (kcld does
                                 not recreate it while running: that would
                                 restart every shard from its initial
                                 position) */
  uint64_t table_missing_ms;  /* since when (uv_now); 0 when not missing */
  size_t stalled;             /* shards kcld_coordinator_stalls visits now */
};

/* The lease layer's health, as of now.  Conditions are reported as soon
 * as they are known; how long a shard may stay stalled before an alarm is
 * the caller's business. */
void kcld_coordinator_health(const struct kcld_coordinator *c,
                             struct kcld_coordinator_health *out);

/* Calls cb(shard_id, reason, arg) for every shard of the table (not
 * finished) that the lease layer keeps from progressing now, whoever owns
 * it:
 *  - KCLD_STALL_INVALID_CHECKPOINT: its checkpoint cannot be started from
 *    (not a sequence number nor a sentinel, e.g. "not-a-number"; or
 *    AT_TIMESTAMP while no timestamp is known).  Such a lease is never
 *    taken (nor counted when balancing) until its checkpoint is fixed in
 *    the table; an error is logged once per lease.
 *  - KCLD_STALL_LEASE_TABLE_MISSING: the table is gone (every shard known).
 * The strings are valid during the call only.  cb must not call into the
 * coordinator. */
typedef void (*kcld_coordinator_stall_cb)(const char *shard_id,
                                          const char *reason, void *arg);
void kcld_coordinator_stalls(const struct kcld_coordinator *c,
                             kcld_coordinator_stall_cb cb, void *arg);

/* The stall reason of one shard (as above), or NULL. */
const char *kcld_coordinator_shard_stall(const struct kcld_coordinator *c,
                                         const char *shard_id);

/* Stops timers, cancels what is in flight and frees once the handles are
 * closed: run the loop afterwards.  Does not release leases.  Before it
 * returns, every pending checkpoint, shard_ended, parents_done and
 * release_all callback runs (KCLD_ECANCELED unless its result was already
 * known); ready, acquired and lost never run afterwards.  No call may
 * follow except from inside those callbacks (they then get
 * KCLD_ECANCELED).  NULL is ignored. */
void kcld_coordinator_close(struct kcld_coordinator *c);

#endif
