/* dispatcher.h — between the shard consumers and the handler.
 *
 * Implements the shard consumers' sink (consume/shard_consumer.h).
 *
 * Batching.  Records of a shard queue up across deliveries and go to the
 * handler batch.size at a time.  A smaller batch goes when batch.window has
 * passed since its first record queued (at once with no window, as soon as
 * the shard's handler slot is free), and at the shard's end.  A delivery is
 * reported done (so the consumer may fetch and deliver more) as soon as no
 * full batch is left waiting, so batches fill across deliveries.
 *
 * Order.  With batch.parallelization_factor N (1..10), records go to N lanes
 * by a hash of their partition key; each lane has at most one batch at the
 * handler, so each key is handled in shard order.  Progress (the
 * checkpoint) moves only to the highest position below which every record
 * of the shard is dealt with.
 *
 * Failures follow process/policy.h: retries with backoff and jitter,
 * bisection, maximum record age.  A range that is given up goes to the
 * dead-letter queue (process/dlq.h) and counts as dealt with only once SQS
 * acknowledged it; with no queue it is skipped with an error log line per
 * record, unless block_on_failure, which retries it for ever.  A handler
 * that does not answer within handler_timeout_ms has failed that attempt;
 * its records stay alive (the dispatcher keeps its own references and the
 * pointer array it gave) until the late answer arrives, which is ignored.
 *
 * Loop thread only. */
#ifndef KCLD_PROCESS_DISPATCHER_H
#define KCLD_PROCESS_DISPATCHER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "consume/shard_consumer.h"
#include "handlers/handler.h"
#include "process/dlq.h"

struct kcld_dispatcher;

/* How the dispatcher talks back to a consumer; NULL members mean
 * kcld_shard_consumer_progress / kcld_shard_consumer_done.  For tests. */
struct kcld_dispatcher_consumer_ops {
  void (*progress)(struct kcld_shard_consumer *c, const char *sequence,
                   uint64_t sub);
  void (*done)(struct kcld_shard_delivery *d);
};

struct kcld_dispatcher_opts {
  uv_loop_t *loop;
  struct kcld_handler *handler;  /* borrowed */
  unsigned batch_size;           /* batch.size; 0 = 100 */
  uint64_t window_ms;            /* batch.window; 0 = none */
  unsigned parallelization;      /* batch.parallelization_factor; 0 = 1,
                                    at most 10 */
  uint64_t handler_timeout_ms;   /* handler.timeout; 0 = 5 minutes */
  int max_retry_attempts;        /* retry.max_retry_attempts; -1 = no
                                    limit; 0 = no retry */
  int bisect_on_error;           /* retry.bisect_on_error */
  int64_t max_record_age_ms;     /* retry.max_record_age; <= 0 = none */
  uint64_t backoff_base_ms;      /* retry.backoff_base; 0 = 100 */
  uint64_t backoff_max_ms;       /* retry.backoff_max; 0 = 30000 */
  struct kcld_dlq *dlq;          /* on_failure.sqs; borrowed; NULL = none */
  int block_on_failure;          /* on_failure.block */
  const struct kcld_dispatcher_consumer_ops *consumer_ops; /* NULL = real */
};

struct kcld_dispatcher_stats {
  uint64_t records_handled;      /* reported OK by the handler */
  uint64_t bytes_handled;        /* their payload bytes */
  uint64_t handler_calls;        /* batches given to the handler */
  uint64_t batches_ok;
  uint64_t batches_failed;       /* failed, partial, timed out or refused
                                    attempts */
  uint64_t batches_retried;      /* retry decisions */
  uint64_t batches_bisected;     /* bisect decisions */
  uint64_t handler_timeouts;
  uint64_t records_given_up;     /* to the queue or skipped */
  uint64_t records_skipped;      /* given up with no destination */
  uint64_t dlq_messages;         /* acknowledged dead-letter messages */
  uint64_t dlq_records;          /* records in them */
  size_t in_flight;              /* shards with work + handler calls not
                                    yet answered */
};

/* Returns 0 and *out, or KCLD_EINVAL (no loop or handler) / KCLD_ENOMEM. */
int kcld_dispatcher_new(const struct kcld_dispatcher_opts *opts,
                        struct kcld_dispatcher **out);

/* The sink to give each shard consumer. */
struct kcld_shard_sink kcld_dispatcher_sink(struct kcld_dispatcher *d);

void kcld_dispatcher_stats(const struct kcld_dispatcher *d,
                           struct kcld_dispatcher_stats *out);

/* Told of every handler answer, late ones included: the seconds from
 * the handler's process() to its answer.  For metrics; loop thread. */
typedef void (*kcld_dispatcher_observer_fn)(void *arg, double seconds);

/* Installs the observer (NULL removes it).  Its cost to a handler call is
 * two clock reads. */
void kcld_dispatcher_set_observer(struct kcld_dispatcher *d,
                                  kcld_dispatcher_observer_fn fn, void *arg);

/* Shutdown: from now on, batches smaller than batch.size go to the handler
 * as soon as their lane is free, without waiting for batch.window, so the
 * consumers' graceful stop does not wait for the window. */
void kcld_dispatcher_flush(struct kcld_dispatcher *d);

/* Frees the dispatcher once no shard has work and every handler call has
 * answered (cancel the consumers first): run the loop afterwards. */
void kcld_dispatcher_close(struct kcld_dispatcher *d);

#endif
