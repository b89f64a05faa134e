/* dispatcher.h — between the shard consumers and the handler.
 *
 * Implements the shard consumers' sink (consume/shard_consumer.h): each
 * delivery is cut into batches of batch.size records, handed to the handler
 * one at a time per shard (so records are handled in shard order), and every
 * handled batch is reported as progress, which moves the checkpoint.
 *
 * A failed batch (or the failed tail of a partial answer) is retried with
 * capped exponential backoff and jitter until it succeeds, so nothing is
 * skipped; the failure policy of retries, bisection, record age and the
 * dead-letter queue takes over that decision (process/policy.c).
 *
 * Loop thread only. */
#ifndef KCLD_PROCESS_DISPATCHER_H
#define KCLD_PROCESS_DISPATCHER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "consume/shard_consumer.h"
#include "handlers/handler.h"

struct kcld_dispatcher;

struct kcld_dispatcher_opts {
  uv_loop_t *loop;
  struct kcld_handler *handler;  /* borrowed */
  unsigned batch_size;           /* batch.size; 0 = 100 */
  uint64_t backoff_base_ms;      /* retry.backoff_base; 0 = 100 */
  uint64_t backoff_max_ms;       /* retry.backoff_max; 0 = 30000 */
};

struct kcld_dispatcher_stats {
  uint64_t records_handled;
  uint64_t batches_ok;
  uint64_t batches_failed;       /* failed answers (each retry counts) */
  size_t in_flight;              /* deliveries being worked on */
};

int kcld_dispatcher_new(const struct kcld_dispatcher_opts *opts,
                        struct kcld_dispatcher **out);

/* The sink to give each shard consumer. */
struct kcld_shard_sink kcld_dispatcher_sink(struct kcld_dispatcher *d);

void kcld_dispatcher_stats(const struct kcld_dispatcher *d,
                           struct kcld_dispatcher_stats *out);

/* Frees the dispatcher once no delivery is in flight (the consumers are
 * closed and their deliveries done): run the loop afterwards. */
void kcld_dispatcher_close(struct kcld_dispatcher *d);

#endif
