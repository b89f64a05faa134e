/* getrecords.h — a Kinesis GetRecords response body -> struct
 * kcld_record_batch, with base64 decoding and KPL de-aggregation done inline.
 *
 * This is the CPU-heavy step of consuming, meant for the worker pool (off the
 * loop thread): call it from a uv_queue_work() work callback on the raw body
 * (kcld_aws_call with raw = 1) and hand the batch back in the after-work
 * callback.  It keeps no global state and may run on several threads at once.
 *
 * The body is read by the strict single-pass JSON scanner of base/json.h
 * (no jansson tree: building one cost ten times the CPU of the rest of
 * consuming; see docs/benchmarks.md).  It accepts and refuses exactly the
 * bodies jansson would, which the fuzz target checks against jansson.  The
 * body is a (pointer, length) view the parser only reads: the batch holds
 * copies, so the body may be freed or reused as soon as the call returns. */
#ifndef KCLD_CONSUME_GETRECORDS_H
#define KCLD_CONSUME_GETRECORDS_H

#include <stddef.h>

#include "consume/record.h"

/* Parses the GetRecords response body[0..len) (need not be NUL-terminated):
 *
 *   Records[]          {Data (base64), PartitionKey, SequenceNumber,
 *                       ApproximateArrivalTimestamp (epoch seconds, a JSON
 *                       number; optional), EncryptionType (optional)}
 *   NextShardIterator  string; absent or null = the shard has ended
 *   MillisBehindLatest number (optional)
 *   ChildShards[]      {ShardId, ParentShards[], HashKeyRange{StartingHashKey,
 *                       EndingHashKey}} (optional)
 *
 * Each record's Data is base64-decoded; a KPL aggregate becomes its user
 * records (base/kpl.h, consume/deagg.h).  An aggregate that fails
 * verification passes through unchanged as one record, with one warning log
 * line naming `shard_id` (may be NULL; used only for logs), the sequence
 * number and the reason.  Unknown members are ignored.
 *
 * Returns 0 and *out = a new batch holding one reference (release it with
 * kcld_record_batch_release), or:
 *   KCLD_EPARSE  the body is not a well-formed GetRecords response: not JSON,
 *                a required member missing or of the wrong type, invalid
 *                base64, a SequenceNumber that is not a decimal number, a
 *                negative or non-finite timestamp.  `errbuf` says which
 *                member of which record.  Nothing is returned: a response is
 *                used whole or not at all, so no record is silently lost.
 *   KCLD_ENOMEM
 *   KCLD_EINVAL  body or out is NULL.
 * On error *out is NULL.  errbuf (errlen bytes, may be NULL/0) receives a
 * message on every error. */
int kcld_getrecords_parse(const char *body, size_t len, const char *shard_id,
                          struct kcld_record_batch **out, char *errbuf,
                          size_t errlen);

struct kcld_fetch_account;

/* Memory a caller keeps between parses (one parse at a time). */
struct kcld_getrecords_mem {
  struct kcld_fetch_account *account; /* the batch's blocks are charged to
                                         it and drawn from its budget's pool
                                         (budget.h); NULL = plain */
  int event;                          /* 1: the body is the JSON payload of
                                         a SubscribeToShardEvent (enhanced
                                         fan-out), see below */
  void *scratch;                      /* the scan's per-record array, reused:
                                         zero it first */
  size_t scratch_cap;
};

/* kcld_getrecords_parse with the batch's memory from mem->account and the
 * scratch array of mem kept for the next call.
 *
 * With mem->event, the body is a SubscribeToShardEvent's payload: Records,
 * MillisBehindLatest and ChildShards as above, and
 *   ContinuationSequenceNumber  a decimal sequence number (optional: absent
 *                               or null while the subscription has none,
 *                               and at the shard's end)
 * into batch->continuation_sequence_number; NextShardIterator is ignored.
 * The shard has ended (batch->shard_end) when ChildShards is an array and
 * there is no continuation; a missing continuation alone is not the end.
 * Messages name the event instead of the GetRecords response. */
int kcld_getrecords_parse_mem(const char *body, size_t len,
                              const char *shard_id,
                              struct kcld_getrecords_mem *mem,
                              struct kcld_record_batch **out, char *errbuf,
                              size_t errlen);

/* Frees mem's scratch array (not the account). */
void kcld_getrecords_mem_clean_up(struct kcld_getrecords_mem *mem);

#endif
