/* dispatcher.c — cuts deliveries into handler batches, in shard order. */
#include "process/dispatcher.h"

#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"

struct job;

struct kcld_dispatcher {
  struct kcld_dispatcher_opts opts;
  struct job *jobs;              /* deliveries in flight (list) */
  struct kcld_dispatcher_stats stats;
  size_t handles;                /* retry timers not yet closed */
  int closing;
};

/* One delivery being worked on. */
struct job {
  struct job *next, *prev;
  struct kcld_dispatcher *disp;
  struct kcld_shard_delivery *d;
  const struct kcld_record **ptrs; /* d->count pointers into d->records */
  size_t pos;                    /* first record not yet handled */
  size_t n;                      /* size of the batch at the handler */
  unsigned attempt;              /* of the current batch */
  int busy;                      /* the handler has the batch */
  int cancelled;                 /* the consumer gave up the shard */
  uv_timer_t retry;
};

static void job_unlink(struct job *j)
{
  struct kcld_dispatcher *disp = j->disp;
  if (j->prev)
    j->prev->next = j->next;
  else
    disp->jobs = j->next;
  if (j->next)
    j->next->prev = j->prev;
  disp->stats.in_flight--;
}

static void on_retry_closed(uv_handle_t *h)
{
  struct job *j = h->data;
  struct kcld_dispatcher *disp = j->disp;
  free(j->ptrs);
  free(j);
  if (--disp->handles == 0 && disp->closing && !disp->jobs)
    free(disp);
}

/* The delivery is over (all handled, or cancelled): hand it back. */
static void job_finish(struct job *j)
{
  struct kcld_shard_delivery *d = j->d;
  job_unlink(j);
  uv_close((uv_handle_t *)&j->retry, on_retry_closed);
  kcld_shard_consumer_done(d);
}

static void start_batch(struct job *j);

static void on_retry(uv_timer_t *t)
{
  start_batch(t->data);
}

static void schedule_retry(struct job *j, const char *type, const char *msg)
{
  const struct kcld_dispatcher_opts *o = &j->disp->opts;
  uint64_t delay = o->backoff_base_ms;
  char attempt[16];

  for (unsigned i = 1; i < j->attempt && delay < o->backoff_max_ms; i++)
    delay *= 2;
  if (delay > o->backoff_max_ms)
    delay = o->backoff_max_ms;
  delay = delay / 2 + (uint64_t)rand() % (delay / 2 + 1); /* jitter */
  snprintf(attempt, sizeof(attempt), "%u", j->attempt);
  kcld_log(KCLD_LOG_WARN, "handler failed; retrying the batch", "shard",
           j->d->shard_id, "sequenceNumber",
           j->ptrs[j->pos]->sequence_number, "attempt", attempt, "errorType",
           type ? type : "", "error", msg ? msg : "", NULL);
  j->attempt++;
  uv_timer_start(&j->retry, on_retry, delay, 0);
}

static void report(struct job *j, size_t upto)
{
  const struct kcld_record *last = j->ptrs[upto - 1];
  j->disp->stats.records_handled += upto - j->pos;
  j->pos = upto;
  kcld_shard_consumer_progress(j->d->consumer, last->sequence_number,
                               last->sub_sequence_number);
}

static void on_handled(const struct kcld_handler_result *res, void *arg)
{
  struct job *j = arg;

  j->busy = 0;
  if (j->cancelled) {
    job_finish(j);
    return;
  }
  switch (res->status) {
  case KCLD_HANDLER_OK:
    j->disp->stats.batches_ok++;
    report(j, j->pos + j->n);
    j->attempt = 1;
    if (j->pos == j->d->count)
      job_finish(j);
    else
      start_batch(j);
    return;
  case KCLD_HANDLER_PARTIAL:
    j->disp->stats.batches_failed++;
    if (res->first_failed > 0 && res->first_failed < j->n) {
      report(j, j->pos + res->first_failed);
      j->attempt = 1;
    }
    schedule_retry(j, res->error_type ? res->error_type : "PartialFailure",
                   res->error_message);
    return;
  case KCLD_HANDLER_FAILED:
    break;
  }
  j->disp->stats.batches_failed++;
  schedule_retry(j, res->error_type, res->error_message);
}

static void start_batch(struct job *j)
{
  struct kcld_handler_batch b;
  size_t left = j->d->count - j->pos;
  int rc;

  if (j->cancelled) {
    job_finish(j);
    return;
  }
  j->n = left < j->disp->opts.batch_size ? left : j->disp->opts.batch_size;
  memset(&b, 0, sizeof(b));
  b.shard_id = j->d->shard_id;
  b.records = j->ptrs + j->pos;
  b.count = j->n;
  b.millis_behind_latest = j->d->millis_behind_latest;
  b.attempt = j->attempt;
  j->busy = 1;
  rc = kcld_handler_process(j->disp->opts.handler, &b, on_handled, j);
  if (rc != 0) {
    j->busy = 0;
    j->disp->stats.batches_failed++;
    schedule_retry(j, "HandlerUnavailable", kcld_strerror(rc));
  }
}

static int deliver(void *impl, struct kcld_shard_delivery *d)
{
  struct kcld_dispatcher *disp = impl;
  struct job *j;

  if (disp->closing)
    return KCLD_ECANCELED;
  j = calloc(1, sizeof(*j));
  if (!j)
    return KCLD_ENOMEM;
  j->ptrs = malloc(d->count * sizeof(*j->ptrs));
  if (!j->ptrs) {
    free(j);
    return KCLD_ENOMEM;
  }
  for (size_t i = 0; i < d->count; i++)
    j->ptrs[i] = &d->records[i];
  j->disp = disp;
  j->d = d;
  j->attempt = 1;
  uv_timer_init(disp->opts.loop, &j->retry);
  j->retry.data = j;
  disp->handles++;
  j->next = disp->jobs;
  if (disp->jobs)
    disp->jobs->prev = j;
  disp->jobs = j;
  disp->stats.in_flight++;
  start_batch(j);
  return 0;
}

static void cancel(void *impl, struct kcld_shard_consumer *c)
{
  struct kcld_dispatcher *disp = impl;
  for (struct job *j = disp->jobs, *next; j; j = next) {
    next = j->next;
    if (j->d->consumer != c)
      continue;
    j->cancelled = 1;
    if (!j->busy) { /* waiting for a retry: end it now */
      uv_timer_stop(&j->retry);
      job_finish(j);
    }
  }
}

int kcld_dispatcher_new(const struct kcld_dispatcher_opts *opts,
                        struct kcld_dispatcher **out)
{
  struct kcld_dispatcher *d;

  if (!opts->loop || !opts->handler)
    return KCLD_EINVAL;
  d = calloc(1, sizeof(*d));
  if (!d)
    return KCLD_ENOMEM;
  d->opts = *opts;
  if (!d->opts.batch_size)
    d->opts.batch_size = 100;
  if (!d->opts.backoff_base_ms)
    d->opts.backoff_base_ms = 100;
  if (!d->opts.backoff_max_ms)
    d->opts.backoff_max_ms = 30000;
  if (d->opts.backoff_max_ms < d->opts.backoff_base_ms)
    d->opts.backoff_max_ms = d->opts.backoff_base_ms;
  *out = d;
  return 0;
}

struct kcld_shard_sink kcld_dispatcher_sink(struct kcld_dispatcher *d)
{
  struct kcld_shard_sink s = {.deliver = deliver, .cancel = cancel,
                              .impl = d};
  return s;
}

void kcld_dispatcher_stats(const struct kcld_dispatcher *d,
                           struct kcld_dispatcher_stats *out)
{
  *out = d->stats;
}

void kcld_dispatcher_close(struct kcld_dispatcher *d)
{
  if (!d)
    return;
  d->closing = 1;
  if (!d->jobs && d->handles == 0)
    free(d);
}
