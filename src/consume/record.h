/* record.h — the record model: Kinesis records (after KPL de-aggregation) and
 * the batch of them that one GetRecords call produced.
 *
 * Ownership.  A batch owns every byte its records point at: payloads,
 * partition keys, hash keys, sequence numbers, the next shard iterator and the
 * child shards.  That memory is one block, plus a second block only when the
 * response held KPL aggregates that expanded.  Nothing in a batch changes
 * after kcld_getrecords_parse() returns, so any number of threads may read it
 * at once.
 *
 * The batch is reference counted (atomically, so any thread may acquire or
 * release).  The parser hands back one reference.  Whoever keeps a record
 * pointer past the life of the reference it came from (a dispatcher queue, a
 * handler running on the worker pool, a pending checkpoint that still needs
 * the sequence number string) takes its own reference first:
 *
 *   kcld_record_batch_acquire(rec->batch);   ... later, on any thread:
 *   kcld_record_batch_release(rec->batch);
 *
 * The last release frees everything; no record or string of the batch may be
 * used after that.  To outlive the batch, copy what you need. */
#ifndef KCLD_CONSUME_RECORD_H
#define KCLD_CONSUME_RECORD_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* arrival_ms when the response carried no ApproximateArrivalTimestamp (the
 * KCL uses -1 for this too). */
#define KCLD_RECORD_NO_ARRIVAL ((int64_t)-1)

struct kcld_record_batch;

/* One user record.  All pointers point into the owning batch. */
struct kcld_record {
  const uint8_t *data;          /* payload; never NULL, NOT NUL-terminated */
  size_t data_len;
  const char *partition_key;    /* NUL-terminated, valid UTF-8 (may in theory
                                   hold U+0000: use partition_key_len) */
  size_t partition_key_len;     /* bytes, without the terminator */
  const char *explicit_hash_key; /* NUL-terminated decimal string from the
                                   KPL hash key table, or NULL (always NULL
                                   for records that were not aggregated) */
  const char *sequence_number;  /* NUL-terminated decimal (base/seq.h); the
                                   sub-records of one aggregate share the
                                   outer record's */
  const char *encryption_type;  /* "NONE", "KMS", another value as sent, or
                                   NULL when the response had none */
  uint64_t sub_sequence_number; /* index within its aggregate; 0 otherwise */
  int64_t arrival_ms;           /* ApproximateArrivalTimestamp, epoch ms, or
                                   KCLD_RECORD_NO_ARRIVAL */
  struct kcld_record_batch *batch; /* the batch that owns this record */
  int aggregated;               /* 1: a user record taken out of a KPL
                                   aggregate; 0: the Kinesis record as is
                                   (including aggregates passed through
                                   because they were corrupt) */
  int filtered;                 /* 1: the sink passes it over (its keep
                                   test said so, on the worker pool, when
                                   the batch was parsed:
                                   kcld_record_batch_filter); 0 after the
                                   parse */
};

/* One entry of GetRecords' ChildShards (present at a shard's end). */
struct kcld_child_shard {
  const char *shard_id;
  const char *const *parent_shards; /* parent_count shard ids */
  size_t parent_count;
  const char *starting_hash_key;    /* decimal strings, as sent */
  const char *ending_hash_key;
};

/* What one GetRecords call (or one SubscribeToShardEvent of enhanced
 * fan-out) produced.  Fields are read-only for holders. */
struct kcld_record_batch {
  const struct kcld_record *records; /* in shard order, then sub-sequence */
  size_t count;                 /* user records (after de-aggregation) */
  size_t kinesis_count;         /* Kinesis records in the response */
  const char *next_shard_iterator; /* GetRecords: NULL when absent; always
                                   NULL for an event */
  const char *continuation_sequence_number; /* an event's
                                   ContinuationSequenceNumber; NULL when
                                   absent, and always for GetRecords */
  int shard_end;                /* 1: the shard's last batch - GetRecords
                                   without NextShardIterator; an event with
                                   ChildShards and no continuation */
  int64_t millis_behind_latest; /* -1 when the response had none */
  const struct kcld_child_shard *child_shards;
  size_t child_shard_count;
  size_t data_bytes;            /* decoded payload bytes of the Kinesis
                                   records (what the stream counts) */
  size_t mem_bytes;             /* heap bytes this batch holds, for
                                   fetch.max_buffered_bytes accounting */
  /* Private to record.c and getrecords.c. */
  atomic_uint refs;
  void *extra;                  /* the second block, or NULL */
  int fetch_mem;                /* 1: blocks of budget.h (kcld_fetch_free);
                                   0: malloc'd */
};

/* Takes one more reference to `batch` and returns it.  Any thread. */
struct kcld_record_batch *kcld_record_batch_acquire(
  struct kcld_record_batch *batch);

/* Drops one reference; the last one frees the batch and everything its
 * records point at.  NULL is ignored.  Any thread. */
void kcld_record_batch_release(struct kcld_record_batch *batch);

/* Which records a sink takes: 1 keep, 0 pass over.  Called on a worker
 * pool thread; it may read only what does not change while it can run. */
typedef int (*kcld_record_keep_fn)(const void *arg,
                                   const struct kcld_record *r);

/* Sets each record's `filtered` to whether keep(arg, record) said 0 (NULL
 * keep: to 0).  For the parse job that made `batch`, before it hands the
 * batch on: the only time a batch's records change after the parse.
 * Returns the number filtered. */
size_t kcld_record_batch_filter(struct kcld_record_batch *batch,
                                kcld_record_keep_fn keep, const void *arg);

#endif
