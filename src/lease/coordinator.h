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
 * Loop thread only.  Times are monotonic (uv_now) for expiry; wall clock is
 * never compared across hosts. */
#ifndef KCLD_LEASE_COORDINATOR_H
#define KCLD_LEASE_COORDINATOR_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "aws/call.h"

/* A lease as this worker last saw it.  Read-only for users; valid until the
 * lost callback for its shard returns or the coordinator is closed. */
struct kcld_lease {
  char *shard_id;            /* leaseKey */
  char *owner;               /* leaseOwner; NULL when unowned */
  uint64_t counter;          /* leaseCounter */
  char *checkpoint;          /* sequence number, TRIM_HORIZON, LATEST,
                                AT_TIMESTAMP or SHARD_END */
  uint64_t checkpoint_sub;   /* checkpointSubSequenceNumber */
  uint64_t owner_switches;   /* ownerSwitchesSinceCheckpoint */
  char **parents;            /* parentShardId (SS) */
  size_t n_parents;
  char **children;           /* childShardIds (SS) */
  size_t n_children;
  char *starting_hash_key;   /* may be NULL */
  char *ending_hash_key;     /* may be NULL */
};

enum kcld_initial_position {
  KCLD_POS_TRIM_HORIZON = 0,
  KCLD_POS_LATEST = 1,
  KCLD_POS_AT_TIMESTAMP = 2
};

struct kcld_coordinator;

struct kcld_coordinator_cbs {
  /* The lease table is reachable and the first shard sync is done
   * (err == 0), or start-up failed (err < 0, already logged). */
  void (*ready)(int err, void *arg);
  /* A lease is now ours.  Start consuming its shard from lease->checkpoint
   * once kcld_coordinator_parents_done() says so. */
  void (*acquired)(const struct kcld_lease *lease, void *arg);
  /* A lease is no longer ours (stolen, expired, or a write found another
   * owner).  Stop handing this shard's records to the handler at once; any
   * checkpoint for it will now fail with KCLD_ELOST. */
  void (*lost)(const char *shard_id, void *arg);
  void *arg;
};

struct kcld_coordinator_opts {
  uv_loop_t *loop;
  struct kcld_aws *aws;
  const char *table;           /* lease table name */
  const char *stream;          /* stream name or ARN */
  const char *worker_id;
  uint64_t failover_ms;        /* lease.failover_time */
  uint64_t take_interval_ms;   /* lease.take_interval */
  uint64_t shard_sync_interval_ms;
  uint64_t cleanup_delay_ms;
  unsigned max_leases;         /* 0 = no cap */
  unsigned max_steal;
  enum kcld_initial_position initial_position;
  int64_t initial_timestamp_ms;  /* with KCLD_POS_AT_TIMESTAMP */
  struct kcld_coordinator_cbs cbs;
};

typedef void (*kcld_lease_cb)(int err, void *arg);

/* Starts: create/wait for the table, shard sync, then the renew and take
 * timers.  Returns 0 (cbs.ready reports the outcome) or a KCLD_E* code. */
int kcld_coordinator_start(const struct kcld_coordinator_opts *opts,
                           struct kcld_coordinator **out);

/* Conditionally writes a checkpoint (sequence number + sub-sequence) for a
 * held shard: checkpoint, checkpointSubSequenceNumber,
 * ownerSwitchesSinceCheckpoint=0, leaseCounter+1.  cb gets 0, KCLD_ELOST
 * (the lease is not ours any more; lost() has been called), or another
 * KCLD_E* for a transient failure (retry later). */
void kcld_coordinator_checkpoint(struct kcld_coordinator *c,
                                 const char *shard_id, const char *sequence,
                                 uint64_t sub, kcld_lease_cb cb, void *arg);

/* A held shard reached its end: checkpoint SHARD_END, create the leases of
 * `children` (shard ids, with this shard as parent) and record them in
 * childShardIds.  Triggers a shard sync. */
void kcld_coordinator_shard_ended(struct kcld_coordinator *c,
                                  const char *shard_id,
                                  const char *const *children,
                                  size_t n_children, kcld_lease_cb cb,
                                  void *arg);

/* Answers whether every parent of a held shard is absent from the table or
 * at SHARD_END (then its records may be handled without breaking
 * per-partition-key order).  cb gets err and done (1/0). */
typedef void (*kcld_parents_cb)(int err, int done, void *arg);
void kcld_coordinator_parents_done(struct kcld_coordinator *c,
                                   const char *shard_id, kcld_parents_cb cb,
                                   void *arg);

/* Graceful end: stop taking and renewing-for-growth, release every held
 * lease (conditionally remove leaseOwner) and call cb when done.  The user
 * must have stopped its consumers and flushed their checkpoints first. */
void kcld_coordinator_release_all(struct kcld_coordinator *c, kcld_lease_cb cb,
                                  void *arg);

/* Number of leases held now. */
size_t kcld_coordinator_held(const struct kcld_coordinator *c);

/* Stops timers, cancels what is in flight and frees once the handles are
 * closed: run the loop afterwards.  Does not release leases. */
void kcld_coordinator_close(struct kcld_coordinator *c);

#endif
