/* handler.h — the internal handler contract: what runs the user's logic.
 *
 * The dispatcher hands a handler one batch at a time per shard (or several,
 * by partition-key hash, with batch.parallelization_factor) and the handler
 * answers exactly once, on the loop thread, with one of:
 *   - OK: every record was handled;
 *   - FAILED: the whole batch failed (reason in error_type/error_message);
 *   - PARTIAL: Lambda's ReportBatchItemFailures meaning - every record
 *     before index first_failed is handled; retry from there.
 * A failure (FAILED or PARTIAL) has a class, which decides the policy:
 *   - KCLD_HANDLER_RECORD: the handler's verdict on the data (a function
 *     error, batchItemFailures, a plugin's failure answer, a timeout, a
 *     DynamoDB item refused for its content).  Only these use the retry
 *     budget, bisect, age out and reach on_failure.
 *   - KCLD_HANDLER_INFRA: says nothing about the records (throttling, 5xx,
 *     transport errors of a sink's own AWS calls; a child that could not
 *     start, or exited or closed its pipes before reading the batch).
 *     Retried with capped backoff for as long as it takes; never bisected,
 *     never dead-lettered, never moves the checkpoint.
 * A handler that hangs is the dispatcher's business (handler.timeout): after
 * a timeout the dispatcher treats the batch as failed but keeps its records
 * alive until the handler's late answer arrives, which is then ignored.
 *
 * Handlers that do CPU work in-process run it on the worker pool
 * (uv_queue_work); handlers that wait on a child process or on AWS wait on
 * the loop and hold no pool thread. */
#ifndef KCLD_HANDLERS_HANDLER_H
#define KCLD_HANDLERS_HANDLER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "consume/record.h"

struct kcld_aws;

/* A batch as a handler sees it.  The record pointers and everything they
 * point at stay valid until the handler has answered. */
struct kcld_handler_batch {
  const char *shard_id;
  const struct kcld_record *const *records; /* in shard order */
  size_t count;
  int64_t millis_behind_latest;             /* -1 when unknown */
  unsigned attempt;                         /* 1 for the first try */
};

enum kcld_handler_status {
  KCLD_HANDLER_OK = 0,
  KCLD_HANDLER_FAILED = 1,
  KCLD_HANDLER_PARTIAL = 2
};

/* What a failure says about the records: see the top of this file.  The
 * zero value is a record failure. */
enum kcld_handler_failure_class {
  KCLD_HANDLER_RECORD = 0,
  KCLD_HANDLER_INFRA = 1
};

struct kcld_handler_result {
  enum kcld_handler_status status;
  enum kcld_handler_failure_class failure_class; /* FAILED/PARTIAL only */
  size_t first_failed;        /* PARTIAL: lowest failed index (< count) */
  const char *error_type;     /* FAILED/PARTIAL: short class, e.g.
                                 "HandlerError", "HandlerCrashed"; else NULL */
  const char *error_message;  /* detail for logs and the DLQ; may be NULL */
};

typedef void (*kcld_handler_done_cb)(const struct kcld_handler_result *res,
                                     void *arg);

/* Why a shard stops being fed to a handler. */
enum kcld_shard_stop {
  KCLD_SHARD_STOP_SHUTDOWN = 0, /* graceful shutdown / lease released */
  KCLD_SHARD_STOP_LOST = 1,     /* lease lost: stop at once */
  KCLD_SHARD_STOP_ENDED = 2     /* shard end reached and handled */
};

struct kcld_handler;

struct kcld_handler_ops {
  const char *name;
  /* Starts work on `batch`; calls done exactly once later on the loop
   * thread and returns 0, or returns a KCLD_E* code and never calls done. */
  int (*process)(struct kcld_handler *h, const struct kcld_handler_batch *b,
                 kcld_handler_done_cb done, void *arg);
  /* Optional: a shard starts at (sequence, sub) (NULL when fresh). */
  void (*shard_started)(struct kcld_handler *h, const char *shard_id,
                        const char *sequence, uint64_t sub);
  /* Optional: a shard stops being fed. */
  void (*shard_stopped)(struct kcld_handler *h, const char *shard_id,
                        enum kcld_shard_stop why);
  /* Optional: kill everything now (a shutdown that ran out of time).
   * Child processes get SIGKILL to their process groups; every batch in
   * flight is answered at once where it can be (FAILED, HandlerCanceled,
   * KCLD_HANDLER_INFRA), and batches given afterwards are refused with
   * KCLD_ECANCELED.  Work that cannot be interrupted (a plugin call or a
   * write already running on a pool thread) answers when it ends.
   * close() is still called, once nothing is in flight. */
  void (*kill)(struct kcld_handler *h);
  /* Closes the handler; called once no batch is in flight.  Asynchronous,
   * like uv_close: the memory goes at once or once its child processes are
   * reaped and its timers closed (multilang, lambda), so the loop must run
   * afterwards until nothing of it is left. */
  void (*close)(struct kcld_handler *h);
};

struct kcld_handler {
  const struct kcld_handler_ops *ops;
};

/* Answers a checkpoint request: err 0 (written), KCLD_ELOST (the shard is
 * not held, or its lease was lost), KCLD_ECANCELED (the shard stopped
 * first), or another negative code. */
typedef void (*kcld_handler_checkpoint_cb)(int err, void *arg);

/* A checkpoint the user's code asks for (multilang): every record of
 * shard_id up to and including (sequence, sub) that was delivered is dealt
 * with.  Goes through the shard's own conditional checkpoint (progress, then
 * a flush) and calls cb exactly once, on the loop thread, possibly before it
 * returns.  The handler checks the position against what it delivered. */
typedef void (*kcld_handler_checkpoint_fn)(void *ctx, const char *shard_id,
                                           const char *sequence, uint64_t sub,
                                           kcld_handler_checkpoint_cb cb,
                                           void *arg);

struct kcld_handler_env {
  uv_loop_t *loop;
  const struct kcld_config *cfg;
  struct kcld_aws *aws;       /* the loop's AWS client (DynamoDB sink) */
  const char *region;         /* resolved region, for event records */
  const char *stream_arn;     /* for event records; may be "" */
  kcld_handler_checkpoint_fn checkpoint; /* NULL: requests are refused */
  void *checkpoint_ctx;
};

/* Creates the handler cfg->handler.type names.  Returns 0 or a KCLD_E*
 * code with the reason logged (e.g. a type not built in this revision). */
int kcld_handler_new(const struct kcld_handler_env *env,
                     struct kcld_handler **out);

/* Starts a batch on `h`: a wrapper over h->ops->process. */
static inline int kcld_handler_process(struct kcld_handler *h,
                                       const struct kcld_handler_batch *b,
                                       kcld_handler_done_cb done, void *arg)
{
  return h->ops->process(h, b, done, arg);
}

/* Kills `h` as its kill op says; nothing for a handler without one. */
static inline void kcld_handler_kill(struct kcld_handler *h)
{
  if (h->ops->kill)
    h->ops->kill(h);
}

/* Closes `h` as its close op says (run the loop afterwards). */
static inline void kcld_handler_close(struct kcld_handler *h)
{
  h->ops->close(h);
}

#endif
