/* job.c — a handler's CPU work on the worker pool (see job.h). */
#include "handlers/job.h"

#include <stdlib.h>

#include "err.h"

void *kcld_job_new(size_t size, const struct kcld_handler_batch *b,
                   kcld_handler_done_cb done, void *arg)
{
  struct kcld_job *j;
  if (size < sizeof(*j))
    return NULL;
  j = calloc(1, size);
  if (!j)
    return NULL;
  j->batch = *b;
  j->done = done;
  j->arg = arg;
  j->work.data = j;
  return j;
}

static void unlink_job(struct kcld_job *j)
{
  if (!j->set)
    return;
  if (j->prev)
    j->prev->next = j->next;
  else
    j->set->head = j->next;
  if (j->next)
    j->next->prev = j->prev;
  j->set = NULL;
  j->prev = j->next = NULL;
}

static void on_work(uv_work_t *w)
{
  struct kcld_job *j = w->data;
  j->run(j);
}

static void on_after(uv_work_t *w, int status)
{
  struct kcld_job *j = w->data;
  unlink_job(j);
  if (status == UV_ECANCELED) {
    kcld_job_fail(j, KCLD_HANDLER_INFRA, "HandlerCanceled",
                  "the batch was cancelled before it ran");
    return;
  }
  j->after(j);
}

int kcld_job_queue(uv_loop_t *loop, struct kcld_jobs *set,
                   struct kcld_job *j, kcld_job_fn run, kcld_job_fn after)
{
  j->run = run;
  j->after = after;
  if (uv_queue_work(loop, &j->work, on_work, on_after) != 0)
    return KCLD_EIO;
  j->set = set;
  j->prev = NULL;
  j->next = set->head;
  if (set->head)
    set->head->prev = j;
  set->head = j;
  return 0;
}

int kcld_job_submit(uv_loop_t *loop, struct kcld_jobs *set, size_t size,
                    const struct kcld_handler_batch *b,
                    kcld_handler_done_cb done, void *arg, void *owner,
                    kcld_job_fn run, kcld_job_fn after)
{
  struct kcld_job *j = kcld_job_new(size, b, done, arg);
  if (!j)
    return KCLD_ENOMEM;
  j->owner = owner;
  if (kcld_job_queue(loop, set, j, run, after) != 0) {
    kcld_job_free(j);
    return KCLD_EIO;
  }
  return 0;
}

void kcld_job_free(struct kcld_job *j)
{
  if (j->clean_up)
    j->clean_up(j);
  free(j);
}

void kcld_job_answer(struct kcld_job *j,
                     const struct kcld_handler_result *res)
{
  j->done(res, j->arg);
  kcld_job_free(j);
}

void kcld_job_fail(struct kcld_job *j, enum kcld_handler_failure_class cls,
                   const char *type, const char *msg)
{
  struct kcld_handler_result res = {.status = KCLD_HANDLER_FAILED,
                                    .failure_class = cls,
                                    .error_type = type,
                                    .error_message = msg};
  kcld_job_answer(j, &res);
}

void kcld_job_cancel_all(struct kcld_jobs *set)
{
  /* uv_cancel only marks a queued request: its after callback runs later,
   * on the loop, so the list does not change under this walk. */
  for (struct kcld_job *j = set->head; j; j = j->next)
    uv_cancel((uv_req_t *)&j->work);
}
