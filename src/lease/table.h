/* table.h — the KCL lease table: the lease item model and every conditional
 * write kcld makes to it.
 *
 * The items are the Java KCL's, attribute for attribute, so a kcld fleet can
 * take over a KCL application's table and hand it back:
 *
 *   leaseKey S (shard id, the hash key)     leaseOwner S (absent: unowned)
 *   leaseCounter N                          checkpoint S (a sequence number,
 *   checkpointSubSequenceNumber N             TRIM_HORIZON, LATEST,
 *   ownerSwitchesSinceCheckpoint N            AT_TIMESTAMP or SHARD_END)
 *   parentShardId SS   childShardIds SS     startingHashKey S  endingHashKey S
 *
 * Attributes written by another client are kept: a lease item is created
 * with PutItem only when it does not exist yet (attribute_not_exists(
 * leaseKey)); every other write is an UpdateItem (or a DeleteItem of a
 * finished lease) that touches only the attributes above, plus those the
 * KCL's own updates REMOVE (checkpointOwner on take and release;
 * pendingCheckpoint, pendingCheckpointSubSequenceNumber and
 * pendingCheckpointState on checkpoint and shard end), and is conditional on
 * the leaseCounter (and, where it matters, the leaseOwner) this worker last
 * saw.
 *
 * The pure half (model, expressions) is what the unit tests check; the
 * asynchronous half sends the requests through the DynamoDB wrapper.  Loop
 * thread only. */
#ifndef KCLD_LEASE_TABLE_H
#define KCLD_LEASE_TABLE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "aws/dynamodb.h"

/* A lease as this worker last saw it.  In a single-stream table the lease
 * key is the shard id; in a KCL multi-stream table it is
 * "account:stream:creationEpoch:shardId", with the stream identifier
 * (account:stream:creationEpoch) in a streamName attribute (S: the KCL's
 * name "for legacy reasons") and the shard id in a shardId attribute (S). */
struct kcld_lease {
  char *shard_id;            /* leaseKey: the shard id, or the whole
                                multi-stream key (kcld_lease_shard gives
                                the shard id in both cases) */
  char *stream_id;           /* streamName; NULL in a single-stream table */
  char *stream_shard;        /* shardId; with stream_id only */
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

#define KCLD_LEASE_TRIM_HORIZON "TRIM_HORIZON"
#define KCLD_LEASE_LATEST "LATEST"
#define KCLD_LEASE_AT_TIMESTAMP "AT_TIMESTAMP"
#define KCLD_LEASE_SHARD_END "SHARD_END"

/* ======== The item model (pure) ======== */

/* Frees what a lease owns and zeroes it.  NULL is ignored. */
void kcld_lease_clean_up(struct kcld_lease *l);

/* Deep copy into *dst (which is overwritten, not freed first).  Returns 0 or
 * KCLD_ENOMEM (dst then zeroed). */
int kcld_lease_copy(struct kcld_lease *dst, const struct kcld_lease *src);

/* The shard id of a lease: stream_shard when it belongs to a multi-stream
 * table, else its key. */
const char *kcld_lease_shard(const struct kcld_lease *l);

/* The parts of a lease key, for labels: a multi-stream key
 * account:stream:epoch:shardId gives its stream name in buf (n bytes) and
 * returns its shard id (a pointer into key); any other key gives "" in buf
 * and returns the key. */
const char *kcld_lease_key_parts(const char *key, char *buf, size_t n);

/* 1 when the lease belongs to the stream `stream_id` (NULL: a lease of a
 * single-stream table). */
int kcld_lease_of_stream(const struct kcld_lease *l, const char *stream_id);

/* The multi-stream lease key "<stream_id>:<shard>" into buf (n bytes).
 * Returns 0, or KCLD_EINVAL when a part is empty, the stream id is not
 * account:stream:epoch (kcld_lease_stream_id_valid) or buf is too small. */
int kcld_lease_key(char *buf, size_t n, const char *stream_id,
                   const char *shard);

/* 1 when `id` is a KCL multi-stream identifier "account:stream:epoch": a
 * decimal account, a stream name without ':' and a decimal creation epoch
 * (seconds) above 0, as the KCL's StreamIdentifier accepts. */
int kcld_lease_stream_id_valid(const char *id);

/* Makes *l (shard_id = a shard id, stream fields NULL) a lease of the
 * multi-stream `stream_id`: stream_shard takes the shard id and shard_id
 * becomes the multi-stream key.  Returns 0, KCLD_EINVAL (see
 * kcld_lease_key) or KCLD_ENOMEM (then *l is unchanged). */
int kcld_lease_set_stream(struct kcld_lease *l, const char *stream_id);

/* Reads a lease item (DynamoDB AttributeValue JSON) into *out.  A
 * multi-stream item (kcld_lease_item_kind) needs streamName and shardId (S)
 * with leaseKey = streamName:shardId and a valid stream identifier; a
 * single-stream one has neither.  leaseKey (S)
 * and checkpoint (S) are required; leaseCounter, checkpointSubSequenceNumber
 * and ownerSwitchesSinceCheckpoint default to 0 when absent; other
 * attributes are ignored (and, being untouched by every write, preserved).
 * Returns 0, KCLD_EPARSE (a required attribute missing, a number that is
 * not a non-negative integer, a wrong type) or KCLD_ENOMEM; *out is zeroed
 * on error. */
int kcld_lease_from_item(const json_t *item, struct kcld_lease *out);

/* What a lease table item is.  The Java KCL keeps other things in the
 * same table in its 3.5 single-table mode (an entityType other than
 * LEASE: leader lock, worker metrics, ...), and a multi-stream application
 * keys its leases account:stream:epoch:shardId with a streamName
 * attribute.  This is the one place that tells them apart. */
enum kcld_lease_item_kind {
  KCLD_LEASE_ITEM_LEASE = 0,      /* a lease of a single-stream table (no
                                     entityType, or LEASE) */
  KCLD_LEASE_ITEM_OTHER,          /* not a lease: skipped */
  KCLD_LEASE_ITEM_MULTI_STREAM    /* a lease of a multi-stream table */
};

enum kcld_lease_item_kind kcld_lease_item_kind(const json_t *item);

/* The whole item for a new lease, as the KCL writes it: every attribute of
 * the model that is set (parentShardId/childShardIds only when non-empty,
 * leaseOwner only when owned, streamName and shardId for a multi-stream
 * lease).  NULL when out of memory or shard_id or
 * checkpoint is missing. */
json_t *kcld_lease_to_item(const struct kcld_lease *l);

/* 1 for TRIM_HORIZON, LATEST and AT_TIMESTAMP (a lease not started yet). */
int kcld_lease_checkpoint_is_initial(const char *checkpoint);

/* 1 when a lease can be started from its checkpoint: one of the four
 * sentinels above, or a sequence number (kcld_seq_valid, base/seq.h).
 * Anything else (e.g. "not-a-number") is a checkpoint no worker can resume
 * from. */
int kcld_lease_checkpoint_valid(const char *checkpoint);

/* 1 when the lease is at SHARD_END. */
int kcld_lease_is_finished(const struct kcld_lease *l);

/* 1 when `id` is among the lease's parents. */
int kcld_lease_has_parent(const struct kcld_lease *l, const char *id);

/* ======== Conditional writes (pure part) ======== */

enum kcld_lease_write {
  /* SET leaseCounter+1, if leaseCounter and leaseOwner = me. */
  KCLD_LEASE_RENEW = 0,
  /* SET leaseOwner = me, leaseCounter+1, ADD ownerSwitchesSinceCheckpoint 1
   * when it had another owner, REMOVE checkpointOwner (KCL 3.x: a fresh
   * assignment ends any graceful handoff); if leaseCounter and leaseOwner
   * (or its absence) are as seen. */
  KCLD_LEASE_TAKE,
  /* REMOVE leaseOwner and checkpointOwner (as KCL 3.x's evictLease), SET
   * leaseCounter+1, if leaseCounter and leaseOwner = me. */
  KCLD_LEASE_RELEASE,
  /* SET checkpoint, checkpointSubSequenceNumber,
   * ownerSwitchesSinceCheckpoint = 0, leaseCounter+1, REMOVE
   * pendingCheckpoint, pendingCheckpointSubSequenceNumber and
   * pendingCheckpointState (as the KCL's updateLease does for a checkpoint
   * with no pending one); if leaseCounter and leaseOwner = me. */
  KCLD_LEASE_CHECKPOINT,
  /* The shard is finished: SET checkpoint = SHARD_END,
   * checkpointSubSequenceNumber = 0, ownerSwitchesSinceCheckpoint = 0,
   * leaseCounter+1, ADD childShardIds, REMOVE leaseOwner (a finished lease
   * needs no worker) and the pending checkpoint attributes as CHECKPOINT
   * does; if leaseCounter and leaseOwner = me. */
  KCLD_LEASE_END,
  /* DeleteItem, if leaseCounter is as seen and checkpoint = SHARD_END. */
  KCLD_LEASE_DELETE
};

struct kcld_lease_change {
  enum kcld_lease_write kind;
  const char *worker;               /* this worker's id (all but DELETE) */
  const char *checkpoint;           /* CHECKPOINT */
  uint64_t sub;                     /* CHECKPOINT */
  const char *const *children;      /* END; may be empty */
  size_t n_children;
};

/* The request parts of one conditional write. */
struct kcld_lease_update {
  json_t *key;        /* {"leaseKey": {"S": ...}} */
  char *update;       /* UpdateExpression; NULL for DELETE */
  char *condition;    /* ConditionExpression */
  json_t *names;      /* ExpressionAttributeNames (exactly those used) */
  json_t *values;     /* ExpressionAttributeValues (exactly those used) */
};

/* Builds the write `ch` on the lease as `seen`.  Returns 0, KCLD_EINVAL (a
 * required field missing, a checkpoint that is empty) or KCLD_ENOMEM. */
int kcld_lease_update_build(const struct kcld_lease *seen,
                            const struct kcld_lease_change *ch,
                            struct kcld_lease_update *out);

void kcld_lease_update_clean_up(struct kcld_lease_update *u);

/* Applies a write that succeeded to the model: *l becomes what the item now
 * holds (for DELETE nothing changes).  Returns 0 or KCLD_ENOMEM. */
int kcld_lease_apply(struct kcld_lease *l, const struct kcld_lease_change *ch);

/* After a failed condition: whether `now` (the item re-read with a
 * consistent read; NULL when it is gone) shows that the write `ch` on
 * `seen` did land (its answer was lost and a retry found the changed item):
 * the counter we wrote and, as the kind requires, our owner, no owner, the
 * checkpoint we wrote, or no item at all for DELETE. */
int kcld_lease_landed(const struct kcld_lease *seen,
                      const struct kcld_lease_change *ch,
                      const struct kcld_lease *now);

/* ======== The table (asynchronous) ======== */

struct kcld_lease_table;

/* A table handle over `db` (borrowed; it must outlive the handle).  The name
 * is copied.  `multi_stream` 1: the table holds the leases of several
 * streams in the KCL's multi-stream format (see kcld_lease_table_scan).
 * Returns 0, KCLD_EINVAL or KCLD_ENOMEM. */
int kcld_lease_table_new(struct kcld_dynamodb *db, const char *name,
                         int multi_stream, struct kcld_lease_table **out);

/* Frees the handle.  Operations in flight must have ended first (closing the
 * DynamoDB client ends them with KCLD_ECANCELED).  NULL is ignored. */
void kcld_lease_table_free(struct kcld_lease_table *t);

const char *kcld_lease_table_name(const struct kcld_lease_table *t);

/* Every operation below returns 0 and calls its callback exactly once, on
 * the loop, after it returned; or returns a negative KCLD_E* code and never
 * calls it.  Callbacks given a `st` get how the operation ended: st->err 0,
 * or the failure, whose message names the call, the table and the error
 * (kcld_svc_transient tells whether trying again later may help); valid
 * during the callback only. */

typedef void (*kcld_lease_table_cb)(int err, void *arg);

/* Makes sure the table exists and is ACTIVE: DescribeTable; when missing,
 * CreateTable (PAY_PER_REQUEST, HASH key leaseKey S; a table created
 * meanwhile by a peer is fine); then waits until ACTIVE, at most
 * timeout_ms (0 = 60 s: then KCLD_ETIMEDOUT).  An existing table is used as
 * it is.  `created` tells whether this call created it.  A failure is not
 * logged here: `st` is the failing call's status, for the caller to log. */
typedef void (*kcld_lease_table_ensure_cb)(const struct kcld_svc_status *st,
                                           int created, void *arg);
int kcld_lease_table_ensure(struct kcld_lease_table *t, long timeout_ms,
                            kcld_lease_table_ensure_cb cb, void *arg);

/* Scans the whole table (consistent reads, every page).  Items of another
 * kind (kcld_lease_item_kind) are skipped; items that should be leases but
 * cannot be read (no leaseKey or checkpoint, bad numbers) are skipped with
 * a warning.  A lease of the other format (a multi-stream lease in a
 * single-stream table handle, or the reverse) ends the scan with
 * KCLD_ECONFIG (logged as an error naming the table and the key): a table
 * is used in the format its application wrote it in.
 * `leases` (n of them) is valid during the callback only; the callee may
 * move its members out (then it must zero them). */
typedef void (*kcld_lease_scan_cb)(const struct kcld_svc_status *st,
                                   struct kcld_lease *leases, size_t n,
                                   void *arg);
int kcld_lease_table_scan(struct kcld_lease_table *t, kcld_lease_scan_cb cb,
                          void *arg);

/* GetItem with a consistent read.  `lease` is NULL (err 0) when there is no
 * such item; valid during the callback only. */
typedef void (*kcld_lease_get_cb)(int err, const struct kcld_lease *lease,
                                  void *arg);
int kcld_lease_table_get(struct kcld_lease_table *t, const char *shard_id,
                         kcld_lease_get_cb cb, void *arg);

/* Creates a lease item unless one with its key exists (PutItem,
 * attribute_not_exists(leaseKey)).  st->err 0 with created 1, or st->err 0
 * with created 0 when it existed already. */
typedef void (*kcld_lease_create_cb)(const struct kcld_svc_status *st,
                                     int created, void *arg);
int kcld_lease_table_create(struct kcld_lease_table *t,
                            const struct kcld_lease *l,
                            kcld_lease_create_cb cb, void *arg);

/* Makes the conditional write `ch` on the lease as `seen` (both copied).
 * When the condition fails, the item is re-read once (consistent): if the
 * write had landed after all (kcld_lease_landed) the result is success with
 * via_reread 1; otherwise err is KCLD_ECONDITION and `current` is the item
 * as re-read (NULL when it is gone, or when the re-read itself failed: then
 * err is the re-read's error... see below).  Results:
 *   err 0                 written (current = the re-read item when
 *                         via_reread, else NULL);
 *   err KCLD_ECONDITION   the item is not as seen; current as re-read (NULL:
 *                         no item);
 *   another error         transient (throttling, transport, re-read failed
 *                         after a failed condition): nothing is known. */
typedef void (*kcld_lease_write_cb)(int err, int via_reread,
                                    const struct kcld_lease *current,
                                    void *arg);
int kcld_lease_table_write(struct kcld_lease_table *t,
                           const struct kcld_lease *seen,
                           const struct kcld_lease_change *ch,
                           kcld_lease_write_cb cb, void *arg);

#endif
