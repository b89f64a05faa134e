/* subscriber.c — the enhanced fan-out fetch source: SubscribeToShard
 * subscriptions one after the other, events parsed on the worker pool,
 * backpressure by pausing the stream.  See subscriber.h and source.h.
 *
 * Events are queued in arrival order and parsed one at a time by the one
 * parse job, so batches reach the core in shard order.  A new subscription waits until
 * every event received is parsed and handed over: the last continuation
 * is then the position to resume from.
 *
 * Memory: every event is admitted by the shard's account before any of it
 * is taken in, at its exact size (its frame's prelude gives the length)
 * and with an estimate of its parsed batch (the frame's size scaled by the
 * last events' ratio of batch to frame; the frame's size for the first).
 * Until the account admits it, the subscription stands paused right before
 * it: its bytes wait unread in curl and the kernel, and the few already
 * read (at most one read's worth) wait in the HTTP client's buffer.  An
 * event that arrives in pieces (all but small ones) is then gathered by
 * the decoder straight into a block of the shard's account and kept there
 * until parsed, so its bytes are copied once, into memory the budget
 * counts and reuses; a small event that arrived whole is copied into a
 * block.  The batch's part of the admission stays reserved until the
 * event is parsed, so the budget holds unless a batch is larger than its
 * estimate.
 *
 * Everything here runs on the loop thread except parse_work(), which reads
 * the event being parsed and writes the job's result and touches nothing
 * else. */
#include "consume/subscriber.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws/kinesis.h"
#include "consume/getrecords.h"
#include "consume/shard_consumer.h"
#include "err.h"
#include "log.h"

#define MIN_ESTIMATE 4096       /* bytes of a small event, about */

/* One event received, waiting for its parse. */
struct event {
  struct event *next;
  char *block;             /* of the account: the frame, or a copy */
  const char *payload;     /* in block */
  size_t len;
  size_t batch_est;        /* reserved for its batch */
};

struct subscriber {
  struct kcld_source_base base; /* first: the parse job and timer find us */
  struct kcld_fanout *fanout;
  struct kcld_evs_alloc frames; /* the account's blocks, for the decoder */
  char *consumer_arn;
  char cont[KCLD_SEQ_MAX + 1]; /* the last continuation handed over */
  int have_cont;

  struct kcld_fanout_sub *sub; /* the open subscription, or NULL */
  int paused;              /* sub is paused */
  int held_back;           /* the gate held an event back: read on when
                              resumed (the account's wake, the core) */
  int admitted;            /* the gate admitted the next frame */
  size_t adm_frame, adm_batch; /* what that admission reserved for it */
  int restart;             /* we cancelled sub to start afresh */
  struct event *qhead, *qtail; /* received, not yet parsed */
  int parsing;             /* the job is out */
  struct event *in_parse;  /* the event the job parses */
  int handing;             /* inside cbs.batch: the core may resume us
                              before the batch's continuation is noted */

  uint64_t subscriptions, empty_responses, throttles, errors;
};

static void schedule(struct subscriber *s);
static void settle_if_idle(struct subscriber *s);

/* ======== Freeing ======== */

static void free_event(struct event *e)
{
  kcld_fetch_free(e->block);
  free(e);
}

/* Frees every event waiting for its parse. */
static void drop_queue(struct subscriber *s)
{
  struct event *e = s->qhead;
  s->qhead = s->qtail = NULL;
  while (e) {
    struct event *next = e->next;
    free_event(e);
    e = next;
  }
}

static void maybe_free(struct subscriber *s)
{
  if (!s->base.closing || s->base.timer_open || s->parsing || s->sub)
    return;
  struct kcld_source_cbs cbs = s->base.args.cbs;
  drop_queue(s);
  kcld_source_base_clean_up(&s->base);
  free(s->consumer_arn);
  free(s);
  cbs.closed(cbs.arg);
}

static void on_timer_closed(uv_handle_t *h)
{
  struct subscriber *s = h->data;
  s->base.timer_open = 0;
  maybe_free(s);
}

/* ======== Failures ======== */

/* The subscription failed (or we ended it to start afresh): count it, log
 * it, and resubscribe after a backoff (none the first time in a row). */
static void failed(struct subscriber *s, const struct kcld_svc_status *st)
{
  enum kcld_kinesis_fault fault = kcld_kinesis_fault(st);
  const char *type = st->type && st->type[0] ? st->type
                                             : kcld_strerror(st->err);
  uint64_t delay = s->base.fails_in_row
                     ? kcld_source_backoff_ms(&s->base, s->base.fails_in_row)
                     : 0;

  s->base.fails_in_row++;
  /* For the stall detector: a shard whose subscriptions keep failing
   * (consumer or shard gone, access denied, every subscription ending in
   * an exception) has no event moving it on, and says why. */
  kcld_source_note_failure(&s->base, "SubscribeToShard", fault, type,
                           st->message);
  if (fault == KCLD_KINESIS_LIMIT || fault == KCLD_KINESIS_KMS_THROTTLED ||
      fault == KCLD_KINESIS_IN_USE) {
    if (fault == KCLD_KINESIS_IN_USE)
      s->errors++;
    else
      s->throttles++;
    /* The service's own rate: a second at least. */
    if (delay < s->base.args.min_call_ms)
      delay = s->base.args.min_call_ms;
    kcld_log(KCLD_LOG_DEBUG, "subscription refused; backing off", "shard",
             s->base.shard_id, "op", "SubscribeToShard", "type", type,
             KCLD_LOG_UINT("retry_ms", delay), NULL);
  } else {
    s->errors++;
    kcld_log(KCLD_LOG_WARN, "subscription failed; resubscribing from the "
             "last continuation", "shard", s->base.shard_id, "op",
             "SubscribeToShard", "type", type, "message",
             st->message ? st->message : "", "after",
             s->have_cont ? s->cont : "(start)",
             KCLD_LOG_UINT("retry_ms", delay), NULL);
  }
  s->base.next_at_ms = uv_now(s->base.args.loop) + delay;
}

/* Ends the subscription (if open) and drops what it sent that was not
 * parsed yet: the next one starts from the last continuation handed over.
 * `st` says why (logged, counted, backed off). */
static void start_afresh(struct subscriber *s,
                         const struct kcld_svc_status *st)
{
  drop_queue(s);
  failed(s, st);
  if (s->sub) {
    s->restart = 1;
    kcld_fanout_sub_cancel(s->sub); /* on_end runs now */
  }
}

static void local_failure(struct subscriber *s, int err, const char *message)
{
  struct kcld_svc_status st = {.err = err, .type = "", .message = message};
  start_afresh(s, &st);
}

/* ======== Parsing ======== */

static void parse_work(struct kcld_fetch_job *j)
{
  struct subscriber *s = (struct subscriber *)j;
  kcld_source_parse(&s->base, s->in_parse->payload, s->in_parse->len);
}

static void pump_parse(struct subscriber *s);

/* Hands a parsed batch to the core; notes its continuation and end. */
static void got_batch(struct subscriber *s, struct kcld_record_batch *b)
{
  char cont[KCLD_SEQ_MAX + 1];
  int have = b->continuation_sequence_number != NULL;
  int end = b->shard_end;
  int idle = b->kinesis_count == 0 && b->millis_behind_latest <= 0;

  /* The core may free the batch as soon as it has it. */
  if (have)
    snprintf(cont, sizeof(cont), "%s", b->continuation_sequence_number);

  kcld_source_note_batch(&s->base, b);
  if (b->kinesis_count > 0)
    s->base.fails_in_row = 0;
  s->handing = 1;
  int rc = s->base.args.cbs.batch(s->base.args.cbs.arg, b);
  s->handing = 0;
  if (rc != 0) {
    /* Not taken: read it again from the last continuation taken. */
    kcld_record_batch_release(b);
    local_failure(s, KCLD_ENOMEM, "out of memory");
    return;
  }
  /* An event reached the core: the subscriptions work again (whether it
   * moved the shard on is the core's judgement, source.h). */
  s->base.failing = KCLD_SHARD_FETCH_OK;
  /* An event with nothing and nothing behind is the tip: progress.  One
   * with nothing while behind is not. */
  if (idle)
    s->empty_responses++;
  if (have) {
    memcpy(s->cont, cont, sizeof(cont));
    s->have_cont = 1;
  }
  if (end) {
    s->base.stopped = 1; /* the shard's last batch: read no more */
    drop_queue(s);
    if (s->sub)
      kcld_fanout_sub_cancel(s->sub); /* on_end runs now */
  }
}

static void parse_done(struct kcld_fetch_job *j, int status)
{
  struct subscriber *s = (struct subscriber *)j;
  struct kcld_record_batch *b = s->base.parsed;
  struct event *e = s->in_parse;
  size_t charged = b ? kcld_fetch_charged(b) +
                         (b->extra ? kcld_fetch_charged(b->extra) : 0)
                     : 0;

  s->base.parsed = NULL;
  s->in_parse = NULL;
  s->parsing = 0;
  kcld_source_note_body(&s->base, kcld_fetch_charged(e->block));
  /* The batch drew on the reservation; what it left is given back (the
   * events after it keep theirs). */
  kcld_fetch_account_unreserve(s->base.args.account,
                               e->batch_est > charged ? e->batch_est - charged
                                                      : 0);
  free_event(e);
  settle_if_idle(s);
  if (s->base.closing) {
    kcld_record_batch_release(b);
    maybe_free(s);
    return;
  }
  if (status != 0 || s->base.stopped) {
    kcld_record_batch_release(b);
    return;
  }
  if (s->base.parse_err) {
    local_failure(s, s->base.parse_err, s->base.parse_msg);
  } else {
    got_batch(s, b);
  }
  pump_parse(s);
  schedule(s);
}

/* Starts the parse of the next event received, if none is running. */
static void pump_parse(struct subscriber *s)
{
  if (s->parsing || !s->qhead || s->base.stopped || s->base.closing)
    return;
  struct event *e = s->qhead;
  s->qhead = e->next;
  if (!s->qhead)
    s->qtail = NULL;
  e->next = NULL;
  s->in_parse = e;
  s->parsing = 1;
  if (e->len <= KCLD_SOURCE_INLINE_PARSE_MAX) { /* on the loop: source.h */
    parse_work(&s->base.job);
    parse_done(&s->base.job, 0); /* may free s */
    return;
  }
  int rc = kcld_fetch_job_submit(s->base.args.budget, &s->base.job);
  if (rc != 0) {
    s->parsing = 0;
    s->in_parse = NULL;
    free_event(e);
    local_failure(s, rc, "the parse could not be queued");
  }
}

/* ======== The subscription ======== */

/* No event is queued, parsed or admitted: nothing is reserved any more
 * (what estimates left over goes back). */
static void settle_if_idle(struct subscriber *s)
{
  if (!s->qhead && !s->parsing && !s->admitted)
    kcld_fetch_account_settle(s->base.args.account);
}

/* Forgets the admission of the next frame, giving back what it reserved
 * and `used` of it did not take. */
static void drop_admission(struct subscriber *s, size_t used)
{
  size_t left = s->adm_frame + s->adm_batch;
  if (!s->admitted)
    return;
  s->admitted = 0;
  s->adm_frame = s->adm_batch = 0;
  kcld_fetch_account_unreserve(s->base.args.account,
                               left > used ? left - used : 0);
}

/* The parsed batch an event of frame_len bytes may make: the frame's size
 * scaled by the last events' ratio (the largest's while behind), the
 * frame's size while none was parsed. */
static size_t batch_estimate(const struct subscriber *s, size_t frame_len)
{
  size_t body, batch;
  kcld_source_estimate(&s->base, MIN_ESTIMATE, &body, &batch);
  if (!s->base.last_body)
    return frame_len > MIN_ESTIMATE ? frame_len : MIN_ESTIMATE;
  if (frame_len > SIZE_MAX / batch)
    return frame_len / body * batch;
  batch = (frame_len * batch + body - 1) / body;
  return batch > MIN_ESTIMATE ? batch : MIN_ESTIMATE;
}

static void hold(struct subscriber *s);

/* The decoder's gate (kcld_evs_gate_cb): before each frame is taken in,
 * the core must want more and the account admit the frame at its size
 * (the block it will take) and its batch's estimate.  Else the
 * subscription pauses before the frame until sub_resume (the account's
 * wake, or the core). */
static int frame_gate(void *arg, size_t frame_len)
{
  struct subscriber *s = arg;
  size_t body = kcld_fetch_cost(frame_len);
  size_t batch = batch_estimate(s, frame_len);

  if (s->base.stopped || s->base.closing)
    return 1; /* dropped when it comes */
  drop_admission(s, s->adm_frame); /* one a frame we skip left unused */
  if (!s->base.args.cbs.wanted(s->base.args.cbs.arg) ||
      !kcld_fetch_account_admit(s->base.args.account, body, batch)) {
    s->held_back = 1;
    hold(s);
    return 0;
  }
  s->admitted = 1;
  s->adm_frame = body;
  s->adm_batch = batch;
  return 1;
}

static void on_event(const struct kcld_fanout_event *ev, void *arg)
{
  struct subscriber *s = arg;
  char *block = ev->frame;
  size_t batch_est = s->adm_batch;
  struct event *e;

  if (ev->kind == KCLD_FANOUT_INITIAL)
    s->base.fails_in_row = 0;
  if (s->base.stopped || s->base.closing || ev->kind == KCLD_FANOUT_INITIAL) {
    drop_admission(s, block ? kcld_fetch_charged(block) : 0);
    kcld_fetch_free(block);
    settle_if_idle(s);
    return;
  }
  e = calloc(1, sizeof(*e));
  if (e && !block) {
    block = kcld_fetch_alloc(s->base.args.account,
                             ev->payload_len ? ev->payload_len : 1);
    if (block)
      memcpy(block, ev->payload, ev->payload_len);
  }
  /* The frame's block drew on its admission (or the copy's did); the
   * batch's part stays reserved until the parse. */
  drop_admission(s, block ? kcld_fetch_charged(block) + batch_est : 0);
  if (!e || !block) {
    free(e);
    kcld_fetch_free(block);
    local_failure(s, KCLD_ENOMEM, "out of memory for an event");
    return;
  }
  e->block = block;
  e->payload = ev->frame ? ev->payload : block;
  e->len = ev->payload_len;
  e->batch_est = batch_est;
  if (s->qtail)
    s->qtail->next = e;
  else
    s->qhead = e;
  s->qtail = e;
  pump_parse(s);
  schedule(s);
}

static void on_end(const struct kcld_svc_status *st, void *arg)
{
  struct subscriber *s = arg;
  int restart = s->restart;

  s->sub = NULL;
  s->paused = 0;
  s->held_back = 0;
  s->restart = 0;
  /* A frame under way is gone with the decoder: its block went back. */
  drop_admission(s, s->adm_frame);
  settle_if_idle(s);
  if (s->base.closing) {
    maybe_free(s);
    return;
  }
  if (s->base.stopped || restart)
    return; /* counted and logged when we cancelled it */
  if (st->err == KCLD_ECANCELED) {
    kcld_log(KCLD_LOG_INFO, "Kinesis client closed; fetching stops",
             "shard", s->base.shard_id, "op", "SubscribeToShard", NULL);
    return;
  }
  if (st->err == 0)
    kcld_log(KCLD_LOG_DEBUG, "subscription ended; resubscribing", "shard",
             s->base.shard_id, "after", s->have_cont ? s->cont : "(start)",
             NULL);
  else
    failed(s, st);
  schedule(s);
}

static void subscribe(struct subscriber *s)
{
  static const enum kcld_fanout_position types[] = {
    [KCLD_SOURCE_AFTER] = KCLD_FANOUT_AFTER_SEQUENCE_NUMBER,
    [KCLD_SOURCE_AT] = KCLD_FANOUT_AT_SEQUENCE_NUMBER,
    [KCLD_SOURCE_TRIM_HORIZON] = KCLD_FANOUT_TRIM_HORIZON,
    [KCLD_SOURCE_LATEST] = KCLD_FANOUT_LATEST,
    [KCLD_SOURCE_AT_TIMESTAMP] = KCLD_FANOUT_AT_TIMESTAMP};
  struct kcld_fanout_subscribe_req req = {
    .consumer_arn = s->consumer_arn, .shard_id = s->base.shard_id,
    .timestamp_ms = s->base.args.start.timestamp_ms, .alloc = &s->frames,
    .gate = frame_gate, .gate_arg = s};
  int rc;

  if (s->have_cont) {
    req.position = KCLD_FANOUT_AFTER_SEQUENCE_NUMBER;
    req.sequence_number = s->cont;
  } else {
    req.position = types[s->base.args.start.type];
    if (s->base.args.start.type == KCLD_SOURCE_AFTER ||
        s->base.args.start.type == KCLD_SOURCE_AT)
      req.sequence_number = s->base.start_seq;
  }
  s->base.called = 1;
  s->base.last_call_ms = uv_now(s->base.args.loop);
  s->subscriptions++;
  rc = kcld_fanout_subscribe(s->fanout, &req, on_event, on_end, s, &s->sub);
  if (rc == KCLD_ECANCELED) {
    kcld_log(KCLD_LOG_INFO, "Kinesis client closed; fetching stops",
             "shard", s->base.shard_id, "op", "SubscribeToShard", NULL);
  } else if (rc != 0) {
    struct kcld_svc_status st = {.err = rc, .type = "",
                                 .message = "the call was not sent"};
    failed(s, &st);
    schedule(s);
  }
}

/* The decoder's buffers for s's events: blocks of its account. */
static void *frame_alloc(void *account, size_t size)
{
  return kcld_fetch_alloc(account, size);
}

/* ======== Scheduling ======== */

static void on_timer(uv_timer_t *t)
{
  struct subscriber *s = t->data;
  s->base.timer_armed = 0;
  if (!s->base.closing)
    schedule(s);
}

/* Stops reading the open subscription (flow control). */
static void hold(struct subscriber *s)
{
  if (s->sub && !s->paused) {
    s->paused = 1;
    kcld_fanout_sub_pause(s->sub);
  }
}

/* Reads on when the core wants more, unless the gate held an event back
 * (then the account's wake or the core resumes: sub_resume); else pauses.
 * Every event is admitted by the gate before it is taken in.  Without a
 * subscription, starts the next one once the events received are parsed
 * and the rate and backoff allow; else arms the timer for when they
 * will. */
static void schedule(struct subscriber *s)
{
  if (s->base.closing || s->base.stopped || s->handing)
    return; /* got_batch's caller schedules afterwards */
  if (!s->base.args.cbs.wanted(s->base.args.cbs.arg)) {
    hold(s); /* ops.resume goes on */
    return;
  }
  if (s->sub) {
    if (s->paused && !s->held_back) {
      s->paused = 0;
      kcld_fanout_sub_resume(s->sub);
    }
    return;
  }
  if (s->base.timer_armed || s->qhead || s->parsing)
    return; /* parse_done goes on */
  if (!kcld_source_wait(&s->base, on_timer))
    subscribe(s);
}

/* ======== Ops ======== */

static void sub_resume(void *src)
{
  struct subscriber *s = src;
  s->held_back = 0; /* ask the gate again */
  schedule(s);
}

static void sub_stop(void *src)
{
  struct subscriber *s = src;
  s->base.stopped = 1;
  uv_timer_stop(&s->base.timer);
  s->base.timer_armed = 0;
  drop_queue(s);
  if (s->sub)
    kcld_fanout_sub_cancel(s->sub); /* on_end runs now */
  s->admitted = 0;
  s->adm_frame = s->adm_batch = 0;
  kcld_fetch_account_settle(s->base.args.account);
}

static void sub_close(void *src)
{
  struct subscriber *s = src;
  sub_stop(s);
  s->base.closing = 1;
  if (s->parsing && kcld_fetch_job_cancel(&s->base.job)) {
    s->parsing = 0; /* never started: parse_done will not run */
    free_event(s->in_parse);
    s->in_parse = NULL;
  }
  uv_close((uv_handle_t *)&s->base.timer, on_timer_closed);
}

static void sub_stats(const void *src, struct kcld_shard_consumer_stats *st)
{
  const struct subscriber *s = src;
  st->subscriptions += s->subscriptions;
  st->empty_responses += s->empty_responses;
  st->throttles += s->throttles;
  st->errors += s->errors;
  kcld_source_failing_stats(&s->base, st);
}

/* No configure op: a reload's fetch.max_records and fetch.idle_time reach
 * every shard consumer (kcld_shard_consumer_set_fetch), and both mean
 * nothing here.  SubscribeToShard takes no record limit (the service sizes
 * its events; memory is bounded by the account, budget.h), and there is no
 * wait after an empty answer to tune: the service pushes records as they
 * come and sends an event at least every 5 s, and a new subscription
 * starts as soon as the last one ends and the rate allows. */
const struct kcld_source_ops kcld_subscriber_ops = {
  .resume = sub_resume, .stop = sub_stop, .close = sub_close,
  .stats = sub_stats, .every_answer_moves = 0, .configure = NULL};

int kcld_subscriber_start(const struct kcld_subscriber_opts *o, void **out)
{
  if (!o || !out || !o->fanout || !o->consumer_arn || !*o->consumer_arn)
    return KCLD_EINVAL;
  struct subscriber *s = calloc(1, sizeof(*s));
  if (!s)
    return KCLD_ENOMEM;
  if (!(s->consumer_arn = strdup(o->consumer_arn))) {
    free(s);
    return KCLD_ENOMEM;
  }
  int rc = kcld_source_base_init(&s->base, &o->src, parse_work, parse_done);
  if (rc != 0) {
    kcld_source_base_clean_up(&s->base);
    free(s->consumer_arn);
    free(s);
    return rc;
  }
  s->fanout = o->fanout;
  s->frames = (struct kcld_evs_alloc){.alloc = frame_alloc,
                                      .release = kcld_fetch_free,
                                      .ctx = s->base.args.account};
  s->base.mem.event = 1;
  *out = s;
  schedule(s);
  return 0;
}
