/* poller.h — the polling fetch source of a shard consumer (source.h):
 * GetShardIterator, then GetRecords in a loop, each answer parsed on the
 * worker pool and handed to the core in order.
 *
 *  - Rate: never more than one call (GetRecords or GetShardIterator) per
 *    min_call_ms (200 ms = the service's 5 calls/s per shard).
 *  - After an answer with no records and MillisBehindLatest 0 (or absent):
 *    wait idle_ms; otherwise call again as soon as the rate allows.
 *  - ProvisionedThroughputExceededException and KMSThrottlingException back
 *    off (exponential with jitter, capped); ExpiredIteratorException gets a
 *    new iterator AFTER_SEQUENCE_NUMBER the last record fetched (the start
 *    position when nothing was fetched yet) at once; anything else backs off
 *    with one warning line (shard, op, type, message), with a new iterator
 *    after three non-transient failures in a row.  A body that does not
 *    parse counts as a failure of GetRecords.
 *  - An answer without NextShardIterator is the shard's last batch; a
 *    GetShardIterator answer without an iterator is the end with no batch.
 *  - Memory (budget.h): each GetRecords is admitted by the shard's account
 *    first, with the last answer's body and batch sizes as estimates (the
 *    largest seen while the shard is behind; the account's whole limit for
 *    the first call); the body is received straight into a block of the
 *    account (no copy), parsed in place by a parse job of the budget, and
 *    given back to the pool; the batch's blocks are the account's too.
 *  - Idle waits are spread by up to +-10% (jitter), so that many shards
 *    started together do not keep calling together.
 * Loop thread only, except the parse job (getrecords.h). */
#ifndef KCLD_CONSUME_POLLER_H
#define KCLD_CONSUME_POLLER_H

#include <stdint.h>
#include <uv.h>

#include "aws/kinesis.h"
#include "consume/budget.h"
#include "consume/source.h"

struct kcld_poller_opts {
  struct kcld_source_args src;   /* min_call_ms: between two GetRecords */
  struct kcld_kinesis *kinesis;  /* borrowed */
  const char *stream;            /* name or ARN (arn:...); copied */
  int max_records;               /* GetRecords Limit, 1..10000 */
  uint64_t idle_ms;
  size_t first_estimate;         /* body estimate of the first call */
};

/* The polling source's ops. */
extern const struct kcld_source_ops kcld_poller_ops;

/* Creates a polling source and starts it: the first call goes out now, its
 * callbacks run later.  Returns 0 and the source in *out, or KCLD_EINVAL /
 * KCLD_ENOMEM and nothing was started. */
int kcld_poller_start(const struct kcld_poller_opts *opts, void **out);

#endif
