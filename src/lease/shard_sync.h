/* shard_sync.h — keeps the lease table in step with the stream's shards.
 *
 * A sync lists every shard (ListShards, all pages, backing off on
 * LimitExceeded), scans the lease table and creates the leases that are
 * missing (PutItem if not exists, so peers syncing at the same time are
 * harmless; several at once, a child only once its parents' leases exist),
 * each with parentShardId (ParentShardId and AdjacentParentShardId) and the
 * hash key range:
 *
 *  - A shard that has no lease but has a descendant with one (in the shard
 *    list, or a lease naming it as a parent) is finished and was cleaned up:
 *    it gets no lease again.
 *  - TRIM_HORIZON and AT_TIMESTAMP: every other shard gets a lease at that
 *    position.
 *  - LATEST: a shard with a parent that has (or now gets) a lease starts at
 *    TRIM_HORIZON, so nothing after a reshard is missed; other open shards
 *    start at LATEST; other closed shards get no lease.
 *
 * At a shard's end the children's leases are created from the shard list
 * (both parents of a merge), always at TRIM_HORIZON.
 *
 * Finished leases (SHARD_END) may be deleted once all their children have
 * started: kcld_shard_sync_cleanable() decides which.
 *
 * Loop thread only. */
#ifndef KCLD_LEASE_SHARD_SYNC_H
#define KCLD_LEASE_SHARD_SYNC_H

#include <stddef.h>
#include <stdint.h>

#include "aws/kinesis.h"
#include "lease/table.h"

/* Same values as enum kcld_initial_position (lease/coordinator.h). */
enum kcld_shard_sync_position {
  KCLD_SHARD_SYNC_TRIM_HORIZON = 0,
  KCLD_SHARD_SYNC_LATEST = 1,
  KCLD_SHARD_SYNC_AT_TIMESTAMP = 2
};

/* ======== Decisions (pure) ======== */

/* The leases to create for `shards` (as ListShards gave them) given the
 * `leases` of that stream that exist (compared by kcld_lease_shard): *out gets n_out new leases (counter 0, unowned), in
 * an order where parents come before their children.  Free each with
 * kcld_lease_clean_up, then the array.  Returns 0, KCLD_EINVAL or
 * KCLD_ENOMEM. */
int kcld_shard_sync_plan(const struct kcld_kinesis_shard *shards, size_t n,
                         const struct kcld_lease *const *leases,
                         size_t n_leases, enum kcld_shard_sync_position pos,
                         struct kcld_lease **out, size_t *n_out);

/* Which finished leases (all of one stream) may be deleted: out[i] = 1
 * when leases[i] is at
 * SHARD_END, at least one child is known (its childShardIds, or a lease
 * naming it as a parent) and every known child has started: the child's
 * lease is at a sequence number or SHARD_END, or it is gone while a lease
 * names the child as a parent (it finished and was cleaned up).  Returns 0
 * or KCLD_ENOMEM. */
int kcld_shard_sync_cleanable(const struct kcld_lease *const *leases,
                              size_t n, unsigned char *out);

/* ======== Running a sync (asynchronous) ======== */

struct kcld_shard_sync_result {
  int err;             /* 0, or the first failure (already logged) */
  int transient;       /* err is a transient failure (kcld_svc_transient):
                          the same sync may well succeed later */
  const char *message; /* err's message, naming the call and the resource
                          ("" when err is 0); valid during the callback */
  size_t shards;       /* shards listed */
  size_t leases;       /* leases found in the table */
  size_t created;      /* leases this sync created */
  size_t existed;      /* creates that found the lease made meanwhile */
};

typedef void (*kcld_shard_sync_cb)(const struct kcld_shard_sync_result *res,
                                   void *arg);

/* Runs one full sync of `stream`.  In a multi-stream table `stream_id` is
 * its identifier (account:stream:epoch): only the leases of that stream
 * are considered and the new ones are written with it (NULL: a
 * single-stream table).  `table` and `kinesis` are borrowed and
 * must outlive the sync (closing their clients ends it with
 * KCLD_ECANCELED).  Returns 0 and calls cb once, later; or returns a
 * negative KCLD_E* code and never calls it. */
int kcld_shard_sync_run(struct kcld_lease_table *table,
                        struct kcld_kinesis *kinesis, const char *stream,
                        const char *stream_id,
                        enum kcld_shard_sync_position pos,
                        kcld_shard_sync_cb cb, void *arg);

/* Creates the leases of `children` of the finished shard `parent` at
 * TRIM_HORIZON, with their parents and hash keys from a fresh shard list.
 * A child missing from the list ends the call with KCLD_ENOTFOUND (try
 * again later).  Same calling rules as kcld_shard_sync_run. */
int kcld_shard_sync_children(struct kcld_lease_table *table,
                             struct kcld_kinesis *kinesis, const char *stream,
                             const char *stream_id, const char *parent,
                             const char *const *children, size_t n_children,
                             kcld_shard_sync_cb cb, void *arg);

#endif
