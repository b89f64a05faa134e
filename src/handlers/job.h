/* job.h — a handler's CPU work on the worker pool (uv_queue_work), for the
 * handlers that have some: lambda builds its event line, stdout formats and
 * writes its lines, plugin calls the plugin, the DynamoDB sink builds its
 * items.
 *
 * A job carries one batch and its answer callback; it is a struct that
 * starts with a struct kcld_job, as uv's requests do.  run() works on a
 * pool thread and must touch nothing but the job; after() then runs on the
 * loop thread and either answers the batch (kcld_job_answer) or keeps the
 * job for more work on the loop (lambda's children, the sink's writes) and
 * answers later.  A job that never ran because the pool cancelled it
 * (kcld_job_cancel_all) is answered FAILED, HandlerCanceled, an
 * infrastructure failure, and after() is not called.
 *
 * Loop thread only, except run(). */
#ifndef KCLD_HANDLERS_JOB_H
#define KCLD_HANDLERS_JOB_H

#include <stddef.h>
#include <uv.h>

#include "handlers/handler.h"

struct kcld_job;

typedef void (*kcld_job_fn)(struct kcld_job *j);

/* The jobs of one handler that are on the pool (queued or running). */
struct kcld_jobs {
  struct kcld_job *head;
};

struct kcld_job {
  uv_work_t work;
  struct kcld_jobs *set;          /* while on the pool, else NULL */
  struct kcld_job *prev, *next;
  struct kcld_handler_batch batch;
  kcld_handler_done_cb done;
  void *arg;
  kcld_job_fn run, after;
  void *owner;                    /* the handler, for run and after */
  kcld_job_fn clean_up;           /* optional: frees what the job owns
                                     beyond itself, before it is freed */
};

/* Allocates a zeroed job of `size` bytes (at least sizeof(struct
 * kcld_job)) for batch b (the struct is copied; what it points at stays
 * the dispatcher's until the answer), answered through done(res, arg).
 * NULL when out of memory. */
void *kcld_job_new(size_t size, const struct kcld_handler_batch *b,
                   kcld_handler_done_cb done, void *arg);

/* Puts j on the pool: run on a pool thread, then after on the loop.
 * Returns 0, or KCLD_EIO when the pool refused it (the caller still owns
 * j: kcld_job_free). */
int kcld_job_queue(uv_loop_t *loop, struct kcld_jobs *set,
                   struct kcld_job *j, kcld_job_fn run, kcld_job_fn after);

/* The whole of a simple process(): a job of `size` bytes for b, owned by
 * `owner` (j->owner), put on the pool (kcld_job_queue).  Returns 0,
 * KCLD_ENOMEM, or KCLD_EIO when the pool refused it (nothing is left
 * behind then). */
int kcld_job_submit(uv_loop_t *loop, struct kcld_jobs *set, size_t size,
                    const struct kcld_handler_batch *b,
                    kcld_handler_done_cb done, void *arg, void *owner,
                    kcld_job_fn run, kcld_job_fn after);

/* Answers the batch with res, then frees j (clean_up first). */
void kcld_job_answer(struct kcld_job *j,
                     const struct kcld_handler_result *res);

/* Answers the batch FAILED with this class, type and message (may be
 * NULL), then frees j. */
void kcld_job_fail(struct kcld_job *j, enum kcld_handler_failure_class cls,
                   const char *type, const char *msg);

/* Frees j without an answer: for a job that was never queued. */
void kcld_job_free(struct kcld_job *j);

/* Cancels the jobs of `set` that have not started; each is answered
 * HandlerCanceled (INFRA) on the loop.  Jobs already running finish and
 * go on to after() as usual. */
void kcld_job_cancel_all(struct kcld_jobs *set);

#endif
