/* pipeline.h — one stream's way from its shard consumers to the handler:
 * the handler, the filter, the failure destination (dead-letter queue,
 * bucket or directory) and the dispatcher, built from one configuration.
 *
 * A single-stream kcld has one pipeline.  With `streams:` every stream has
 * its own, built from that stream's configuration (the top-level keys with
 * the item's handler, batch, retry, on_failure and filter overrides), so
 * its event records and dead-letter bodies carry its own stream ARN
 * (eventSourceARN, KinesisBatchInfo.streamArn) and its own handler
 * instance answers its batches.
 *
 * Lifecycle: kcld_pipeline_new; kcld_pipeline_close (asynchronous: the
 * dispatcher, the destination and the handler finish on the loop); run the
 * loop; kcld_pipeline_free.
 *
 * Loop thread only. */
#ifndef KCLD_PROCESS_PIPELINE_H
#define KCLD_PROCESS_PIPELINE_H

#include <stdbool.h>
#include <uv.h>

#include "aws/call.h"
#include "config.h"
#include "handlers/handler.h"
#include "process/dispatcher.h"

struct kcld_pipeline;

struct kcld_pipeline_opts {
  uv_loop_t *loop;
  struct kcld_aws *aws;          /* borrowed; outlives the pipeline */
  const struct kcld_config *cfg; /* the stream's as started (the keys that
                                    need a restart); borrowed, outlives the
                                    pipeline */
  const struct kcld_config *live; /* the live keys' values (cfg, or the
                                    stream's of a reloaded file); read
                                    during the call only */
  const char *region;            /* for event records (copied) */
  const char *stream_arn;        /* eventSourceARN, streamArn; "" = unknown
                                    (copied) */
  const char *function_arn;      /* the on-failure records' (copied) */
  kcld_handler_checkpoint_fn checkpoint; /* multilang requests; NULL =
                                    refused */
  void *checkpoint_ctx;
  kcld_dispatcher_observer_fn observer;  /* handler durations; NULL =
                                    none */
  void *observer_arg;
};

/* Builds the handler, the destination (created and probed: a dead-letter
 * directory that cannot be written is an error, logged), the filter and
 * the dispatcher.  Returns 0 and *out; or a negative KCLD_E* code, and
 * *out is then NULL or a part-built pipeline to close and free as usual. */
int kcld_pipeline_new(const struct kcld_pipeline_opts *opts,
                      struct kcld_pipeline **out);

/* Gives the dispatcher and the destination the live keys' values of
 * `live` (batch.*, retry.*, on_failure.include_records, .block), from the
 * next batch.  Returns 0, or KCLD_EINVAL when a module refused a value
 * (it keeps its running settings). */
int kcld_pipeline_configure(struct kcld_pipeline *p,
                            const struct kcld_config *live);

/* True when a record that fails for good must block its shard under
 * `live`'s on_failure keys: on_failure.block is set, or the pipeline has
 * no destination (a queue, a bucket or a directory: only a start opens
 * one) and is not discarding.  The one rule for the dispatcher's
 * block_on_failure and for whether a reload may turn on_failure.block
 * off live. */
bool kcld_pipeline_must_block(const struct kcld_pipeline *p,
                              const struct kcld_config *live);

/* The handler and the dispatcher; NULL when not built (or p NULL). */
struct kcld_handler *kcld_pipeline_handler(const struct kcld_pipeline *p);
struct kcld_dispatcher *kcld_pipeline_dispatcher(
  const struct kcld_pipeline *p);

/* Adds the dispatcher's counters to *sum (in_flight included). */
void kcld_pipeline_add_stats(const struct kcld_pipeline *p,
                             struct kcld_dispatcher_stats *sum);

/* Shutdown: batches go without waiting for batch.window. */
void kcld_pipeline_flush(struct kcld_pipeline *p);

/* Kills the handler's work in flight (kcld_handler_kill), once. */
void kcld_pipeline_kill(struct kcld_pipeline *p);

/* Closes the dispatcher (once no shard has work: cancel the consumers
 * first), the destination and the handler; the observer is removed at
 * once.  NULL is ignored. */
void kcld_pipeline_close(struct kcld_pipeline *p);

/* Frees what is left (the filter, the pipeline) after the loop has run
 * past kcld_pipeline_close.  NULL is ignored. */
void kcld_pipeline_free(struct kcld_pipeline *p);

#endif
