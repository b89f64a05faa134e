/* source.c — what the two fetch sources (poller.c, subscriber.c) share:
 * their options, the parse job's work, failures and backoff, admission
 * estimates and the call rate.  See source.h. */
#include "consume/source.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/backoff.h"
#include "base/clock.h"
#include "consume/shard_consumer.h"
#include "err.h"

int kcld_source_base_init(struct kcld_source_base *b,
                          const struct kcld_source_args *a,
                          void (*run)(struct kcld_fetch_job *j),
                          void (*done)(struct kcld_fetch_job *j, int status))
{
  if (!a->loop || !a->shard_id || !a->budget || !a->account ||
      !kcld_source_args_valid(&a->cbs, &a->start))
    return KCLD_EINVAL;
  if (!(b->shard_id = strdup(a->shard_id)))
    return KCLD_ENOMEM;
  b->args = *a;
  b->args.shard_id = b->shard_id;
  if (a->start.seq)
    snprintf(b->start_seq, sizeof(b->start_seq), "%s", a->start.seq);
  b->args.start.seq = b->start_seq;
  b->mem.account = a->account;
  b->job.run = run;
  b->job.done = done;
  uv_timer_init(b->args.loop, &b->timer);
  b->timer.data = b;
  b->timer_open = 1;
  return 0;
}

void kcld_source_base_clean_up(struct kcld_source_base *b)
{
  kcld_getrecords_mem_clean_up(&b->mem);
  free(b->shard_id);
  b->shard_id = NULL;
}

void kcld_source_parse(struct kcld_source_base *b, const char *body,
                       size_t len)
{
  b->parsed = NULL;
  b->parse_err = kcld_getrecords_parse_mem(body, len, b->shard_id, &b->mem,
                                           &b->parsed, b->parse_msg,
                                           sizeof(b->parse_msg));
  if (b->parsed)
    kcld_record_batch_filter(b->parsed, b->args.keep.fn, b->args.keep.arg);
}

uint64_t kcld_source_backoff_ms(const struct kcld_source_base *b,
                                unsigned fails)
{
  struct kcld_backoff bo = {b->args.backoff_base_ms, b->args.backoff_max_ms,
                            KCLD_BACKOFF_EQUAL};
  return kcld_backoff_ms(&bo, fails);
}

void kcld_source_note_failure(struct kcld_source_base *b, const char *op,
                              enum kcld_kinesis_fault fault,
                              const char *type, const char *message)
{
  b->failing = kcld_shard_fetch_failure(op, fault);
  snprintf(b->failing_error, sizeof(b->failing_error), "%s: %s", type,
           message && *message ? message : "(no message)");
}

void kcld_source_failing_stats(const struct kcld_source_base *b,
                               struct kcld_shard_consumer_stats *st)
{
  st->fetch_failing = b->failing;
  snprintf(st->fetch_error, sizeof(st->fetch_error), "%s",
           b->failing ? b->failing_error : "");
}

void kcld_source_note_body(struct kcld_source_base *b, size_t bytes)
{
  b->last_body = bytes;
  if (bytes > b->top_body)
    b->top_body = bytes;
}

void kcld_source_note_batch(struct kcld_source_base *b,
                            const struct kcld_record_batch *batch)
{
  /* What the account was charged: the batch heads its main block. */
  b->last_batch = kcld_fetch_charged(batch) +
                  (batch->extra ? kcld_fetch_charged(batch->extra) : 0);
  if (b->last_batch > b->top_batch)
    b->top_batch = b->last_batch;
  b->behind = batch->millis_behind_latest > 0;
}

void kcld_source_estimate(const struct kcld_source_base *b, size_t floor,
                          size_t *body, size_t *batch)
{
  *body = b->behind ? b->top_body : b->last_body;
  *batch = b->behind ? b->top_batch : b->last_batch;
  if (*body < floor)
    *body = floor;
  if (*batch < floor)
    *batch = floor;
}

int kcld_source_wait(struct kcld_source_base *b, uv_timer_cb cb)
{
  uint64_t now = uv_now(b->args.loop);
  uint64_t due = b->next_at_ms;
  if (b->called && b->last_call_ms + b->args.min_call_ms > due)
    due = b->last_call_ms + b->args.min_call_ms;
  if (due <= now)
    return 0;
  /* Idle shards' timers fire together: far fewer loop wake-ups. */
  due = kcld_clock_coalesce_ms(due, due - now);
  uv_timer_start(&b->timer, cb, due - now, 0);
  b->timer_armed = 1;
  return 1;
}
