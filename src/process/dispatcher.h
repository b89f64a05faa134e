/* dispatcher.h — between the shard consumers and the handler.
 *
 * Implements the shard consumers' sink (consume/shard_consumer.h).
 *
 * Filtering.  With a filter (process/filter.h), a record that matches none
 * of its patterns is dealt with as it arrives: it never joins a lane or
 * reaches the handler, counts in records_filtered, and the checkpoint moves
 * past it like past a handled one, so a delivery that is all filtered still
 * moves it.  Matching runs where each batch is parsed (the worker pool; the
 * loop for a small answer): the sink's keep test
 * (consume/shard_consumer.h) marks the records, and deliver() only reads
 * the marks.
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
 * Failures follow process/policy.h.  A record failure (the handler's
 * verdict on the data, and a handler that does not answer within
 * handler_timeout_ms) uses the retry budget with backoff and jitter, bisects
 * and ages out; a range that is given up goes to the failure destination
 * (process/dlq.h) and counts as dealt with only once it is kept there.  An
 * infrastructure failure (a handler that cannot take the batch, throttling
 * or 5xx of a sink's own calls: KCLD_HANDLER_INFRA) is retried with capped
 * backoff for as long as it takes, bounded only by max_record_age_ms; it
 * never uses the budget, never bisects, never reaches the destination and
 * never moves the checkpoint.  A destination that cannot keep a message
 * makes the shard wait too.  Where a shard waits and why is told by
 * kcld_dispatcher_shard_state.  A timed-out call's records stay alive (the
 * dispatcher keeps its own references and the pointer array it gave) until
 * the late answer arrives, which is ignored.
 *
 * The record path is one way.  Handler answers (and a process() that
 * refuses a batch) are queued and acted on from the dispatcher's own loop
 * callback (a uv_idle), never inside the handler's call; and every call
 * into a consumer (kcld_shard_consumer_progress, kcld_shard_consumer_done)
 * is made from that callback too, at the top of a loop iteration: never
 * from inside deliver(), cancel(), a handler's process() or its answer.
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
#include "process/filter.h"

struct kcld_dispatcher;

struct kcld_dispatcher_opts {
  uv_loop_t *loop;
  struct kcld_handler *handler;  /* borrowed */
  unsigned batch_size;           /* batch.size, >= 1 */
  uint64_t window_ms;            /* batch.window; 0 = none */
  unsigned parallelization;      /* batch.parallelization_factor, 1..10 */
  uint64_t handler_timeout_ms;   /* handler.timeout, > 0 */
  int max_retry_attempts;        /* retry.max_retry_attempts; -1 = no
                                    limit; 0 = no retry */
  int bisect_on_error;           /* retry.bisect_on_error */
  int64_t max_record_age_ms;     /* retry.max_record_age; <= 0 = none */
  uint64_t backoff_base_ms;      /* retry.backoff_base, > 0 */
  uint64_t backoff_max_ms;       /* retry.backoff_max, >= backoff_base_ms */
  /* Where given-up records go, in this order: */
  int block_on_failure;          /* on_failure.block: nowhere; the range is
                                    retried for ever and the shard waits */
  struct kcld_dlq *dlq;          /* the destination; borrowed */
  int discard;                   /* on_failure.discard, with no dlq: an
                                    error line per record, then skipped */
  const struct kcld_filter *filter; /* filter; borrowed, outlives the
                                    dispatcher and every consumer given
                                    its sink; NULL = every record */
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
  uint64_t batches_waited;       /* infrastructure failures waited out */
  uint64_t handler_timeouts;
  uint64_t records_given_up;     /* to the destination or skipped */
  uint64_t records_filtered;     /* matched no filter pattern */
  uint64_t records_skipped;      /* given up with on_failure.discard */
  uint64_t dlq_messages;         /* dead-letter messages kept */
  uint64_t dlq_records;          /* records in them */
  size_t in_flight;              /* shards with work + handler calls not
                                    yet answered */
};

/* Why a shard is not moving on: what its oldest waiting lane waits for. */
enum kcld_dispatcher_wait {
  KCLD_DISPATCHER_MOVING = 0,          /* nothing holds it back */
  KCLD_DISPATCHER_RETRYING = 1,        /* record failures being retried
                                          (or blocked by on_failure.block) */
  KCLD_DISPATCHER_THROTTLED = 2,       /* the handler's own AWS calls are
                                          throttled */
  KCLD_DISPATCHER_HANDLER_UNAVAILABLE = 3, /* other infrastructure failures
                                          of the handler */
  KCLD_DISPATCHER_DESTINATION_UNAVAILABLE = 4 /* the failure destination
                                          does not keep the records */
};

struct kcld_dispatcher_shard_state {
  enum kcld_dispatcher_wait wait;
  uint64_t since_ms;             /* uv_now() when this wait began */
  unsigned failures;             /* failed attempts in a row */
  char error_type[64];           /* the last failure's type, or "" */
  char error[512];               /* its message, or "" */
};

/* Returns 0 and *out, or KCLD_EINVAL (no loop or handler, a value out of
 * its range, no place for given-up records: neither block_on_failure, a
 * dlq nor discard) / KCLD_ENOMEM. */
int kcld_dispatcher_new(const struct kcld_dispatcher_opts *opts,
                        struct kcld_dispatcher **out);

/* Takes new values of the settings that may change while kcld runs (a
 * configuration reload) from opts: batch_size, window_ms, the retry policy
 * (max_retry_attempts, bisect_on_error, max_record_age_ms, backoff_base_ms,
 * backoff_max_ms) and block_on_failure; parallelization for each shard
 * once it holds no records (none waiting, none at the handler: its lanes
 * are made anew), so no key is ever in two lanes.  The other members are ignored.  Batches at the handler are not
 * touched: the next batch, retry and give-up decision use the new values.
 * Returns 0, or KCLD_EINVAL and nothing changed: a value out of the range
 * kcld_dispatcher_new takes, or block_on_failure off while the dispatcher
 * has neither a dlq nor discard.  Loop thread. */
int kcld_dispatcher_configure(struct kcld_dispatcher *d,
                              const struct kcld_dispatcher_opts *opts);

/* The sink to give each shard consumer. */
struct kcld_shard_sink kcld_dispatcher_sink(struct kcld_dispatcher *d);

void kcld_dispatcher_stats(const struct kcld_dispatcher *d,
                           struct kcld_dispatcher_stats *out);

/* What the shard with this id waits for (the worst of its lanes:
 * destination, handler, throttled, retrying), for the stall detector and
 * status.  A shard the dispatcher holds no records of is MOVING. */
void kcld_dispatcher_shard_state(const struct kcld_dispatcher *d,
                                 const char *shard_id,
                                 struct kcld_dispatcher_shard_state *out);

/* "retrying", "throttled", "handler_unavailable", "destination_unavailable"
 * (the stall reasons), or "" for MOVING. */
const char *kcld_dispatcher_wait_name(enum kcld_dispatcher_wait w);

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
