/* shard_consumer.c — the consumer core of one held shard: parents, the
 * delivery queue in fetch order, progress to the checkpoint, the shard's end,
 * and the ways to stop (stop, lose, close).  Records come from a fetch source
 * (source.h; polling: poller.c).  See shard_consumer.h.
 *
 * Everything here runs on the loop thread.
 *
 * The consumer is one phase (enum phase) plus what is truly apart from it:
 * the delivery slot (c->d.batch: a delivery is at the sink) and the queue.
 * Each change of phase goes through enter(), which does what leaving a phase
 * means (the source stops, the queue goes, the sink is cancelled) once, by
 * the order of the phases.  Each phase has at most one wait, on the one
 * timer (what it waits for follows from the phase; on_timer).
 *
 * The sink's done() and progress() only note what happened and wake the
 * step (a uv_idle); the step, on a later turn of the loop, delivers the
 * next batch (one per call), moves a drain on to the shard's end or the
 * stop's flush, and lets the source read on.  The source's answers run the
 * step at once: they come from the source's own loop callbacks.  So
 * deliver() is never called from inside a call of the sink (done,
 * progress, cancel, deliver itself), and a sink may call done() and
 * progress() from anywhere. */
#include "consume/shard_consumer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/backoff.h"
#include "base/fmt.h"
#include "base/seq.h"
#include "consume/poller.h"
#include "consume/source.h"
#include "consume/subscriber.h"
#include "err.h"
#include "log.h"

#define MIN_IDLE_MS 200
#define DEF_PARENTS_POLL_MS 2000
#define DEF_MIN_CALL_MS 200
#define DEF_SUBSCRIBE_INTERVAL_MS 1000
#define DEF_BACKOFF_BASE_MS 200
#define DEF_BACKOFF_MAX_MS 10000
#define FLUSH_GRACE_MS 5000
#define DELIVER_RETRY_MS 100
#define PRIVATE_PARSE_SLOTS 4

/* Where the consumer is in its life, in the order it can go: a phase never
 * goes back to an earlier one (but PH_READING to PH_DRAINING may skip).
 * Up to PH_STOPPING the sink is live (deliveries and progress); from
 * PH_STOPPING on the source reads no more and nothing waits in the queue;
 * from PH_ENDED on the consumer has finished (the phase says how). */
enum phase {
  PH_PARENTS,    /* waiting until the parents are done; timer: next ask */
  PH_READING,    /* the source reads; deliveries; timer: a refused
                    delivery's wait */
  PH_DRAINING,   /* the shard ended: deliver the rest, wait for progress;
                    timer: as in PH_READING */
  PH_STOPPING,   /* graceful stop: waiting for the sink; timer: deadline */
  PH_ENDING,     /* final checkpoint flush, then shard_ended; timer: the
                    next try, or once stopped (end_stop) the deadline */
  PH_STOP_FLUSH, /* graceful stop: final checkpoint flush; timer: bound */
  PH_ENDED,      /* finished: KCLD_SHARD_CONSUMER_ENDED */
  PH_STOPPED,    /* finished: KCLD_SHARD_CONSUMER_STOPPED */
  PH_LOST,       /* finished: KCLD_SHARD_CONSUMER_LOST; no checkpoint ever
                    again; timer (all three): the finished callback */
  PH_CLOSED      /* close() was called: memory goes once the handles,
                    calls and the delivery in flight are back */
};

/* A parsed batch waiting for its delivery. */
struct queued {
  struct queued *next;
  struct kcld_record_batch *batch;
  size_t first; /* records before this index are skipped */
};

struct kcld_shard_consumer {
  uv_timer_t timer;          /* the phase's one wait (enum phase) */
  uv_idle_t step;            /* on_step: what done and progress set
                                going, a turn later */

  uv_loop_t *loop;
  struct kcld_kinesis *kinesis;
  struct kcld_fanout *fanout;        /* fan-out mode; NULL = polling */
  char *consumer_arn;
  uint64_t subscribe_interval_ms;
  struct kcld_coordinator *coord;
  char *stream;
  char *shard_id;            /* the lease key (the shard id, or in a
                                multi-stream table stream:shard) */
  const char *kin_shard;     /* the shard id for Kinesis calls: the tail
                                of shard_id */
  struct kcld_source_pos start_pos;
  char start_seq[KCLD_SEQ_MAX + 1];
  uint64_t start_sub;
  char *window;            /* the lease's kcldWindowState; NULL = none */
  int max_records;
  uint64_t idle_ms;
  size_t max_buffered;
  size_t first_estimate;   /* what a first answer may take, at most */
  uint64_t parents_poll_ms;
  uint64_t min_call_ms;
  uint64_t backoff_base_ms;
  uint64_t backoff_max_ms;
  struct kcld_shard_sink sink;
  kcld_shard_consumer_cb finished;
  void *arg;
  struct kcld_checkpoint *cp;
  struct kcld_fetch_budget *budget;  /* the process's, or own_budget */
  struct kcld_fetch_budget *own_budget; /* private, when none was given */
  struct kcld_fetch_account *account;   /* this shard's bytes */

  enum phase phase;
  const struct kcld_source_ops *src_ops;
  void *src;               /* the fetch source, once the parents are done */
  struct kcld_seq_pos skip; /* skip user records at or below this */
  unsigned fails_in_row;   /* failed shard-end steps since a success */

  struct queued *qhead, *qtail;
  struct kcld_shard_delivery d; /* d.batch != NULL: at the sink */
  unsigned refusals_in_row;
  struct kcld_seq_pos delivered_last; /* last record handed to the sink */
  struct kcld_seq_pos handled;        /* last progress */
  int clamp_warned;                   /* the clamp warning is logged */
  uint64_t last_progress_ms;          /* uv_now of the last progress of
                                         any kind, or of the start */
  uint64_t pending_mark_ms;           /* records began to wait, or the last
                                         progress report (stats) */
  uint64_t fetch_mark_ms;             /* fetching began, or the last answer
                                         that moved the shard on */

  char **children;
  size_t n_children;

  uint64_t stop_deadline_ms;
  int stop_err;
  int end_stop;            /* stop() came in PH_ENDING: no more tries */
  int finish_err;
  int handles_open;
  int coord_inflight;      /* parents_done or shard_ended calls */
  struct kcld_shard_consumer_stats stats;
};

static void on_timer(uv_timer_t *t);
static void kick(struct kcld_shard_consumer *c);
static void resume_source(struct kcld_shard_consumer *c);

/* ======== Small helpers ======== */

static uint64_t backoff_ms(struct kcld_shard_consumer *c, unsigned fails)
{
  struct kcld_backoff b = {c->backoff_base_ms, c->backoff_max_ms,
                           KCLD_BACKOFF_EQUAL};
  return kcld_backoff_ms(&b, fails);
}

static void free_children(struct kcld_shard_consumer *c)
{
  for (size_t i = 0; i < c->n_children; i++)
    free(c->children[i]);
  free(c->children);
  c->children = NULL;
  c->n_children = 0;
}

/* Frees the consumer's own strings and the consumer. */
static void free_consumer(struct kcld_shard_consumer *c)
{
  free(c->stream);
  free(c->shard_id);
  free(c->consumer_arn);
  free(c->window);
  free(c);
}

/* A delivery is at the sink (kcld_shard_consumer_done not yet called). */
static int at_sink(const struct kcld_shard_consumer *c)
{
  return c->d.batch != NULL;
}

/* The phase hands batches to the sink. */
static int delivers(enum phase p)
{
  return p == PH_READING || p == PH_DRAINING;
}

/* The consumer has finished (or is closed). */
static int finished(const struct kcld_shard_consumer *c)
{
  return c->phase >= PH_ENDED;
}

static void maybe_free(struct kcld_shard_consumer *c)
{
  if (c->phase != PH_CLOSED || c->handles_open > 0 || c->src ||
      c->coord_inflight > 0 || at_sink(c))
    return;
  free_children(c);
  kcld_fetch_account_close(c->account);
  kcld_fetch_budget_close(c->own_budget);
  free_consumer(c);
}

static void on_handle_closed(uv_handle_t *h)
{
  struct kcld_shard_consumer *c = h->data;
  c->handles_open--;
  maybe_free(c);
}

/* Releases every batch that waits for its delivery. */
static void drop_queue(struct kcld_shard_consumer *c)
{
  struct queued *q = c->qhead;
  c->qhead = c->qtail = NULL;
  while (q) {
    struct queued *next = q->next;
    c->stats.buffered_bytes -= q->batch->mem_bytes;
    c->stats.queued_batches--;
    kcld_record_batch_release(q->batch);
    free(q);
    q = next;
  }
}

/* Something delivered is not reported dealt with yet. */
static int outstanding(const struct kcld_shard_consumer *c)
{
  if (at_sink(c))
    return 1;
  if (!c->delivered_last.set)
    return 0;
  return !c->handled.set ||
         kcld_seq_pos_compare(&c->handled, c->delivered_last.seq,
                              c->delivered_last.sub) < 0;
}

/* Something fetched is not dealt with yet: queued, or delivered and not
 * reported. */
static int pending(const struct kcld_shard_consumer *c)
{
  return c->qhead != NULL || outstanding(c);
}

/* No more batches from the source. */
static void stop_source(struct kcld_shard_consumer *c)
{
  if (c->src)
    c->src_ops->stop(c->src);
}

/* ======== Phases ======== */

/* The one place the phase changes.  Leaving the reading phases (for a stop,
 * the end, or finishing) stops the source and drops the queue; leaving the
 * phases where the sink is live cancels it when something it was given is
 * not reported dealt with; entering PH_CLOSED tells the sink it is closed
 * (sink.closed: it drops a window it keeps).  The order of the phases makes
 * each happen once.  The timer's wait belongs to the phase left (but
 * PH_READING and PH_DRAINING share theirs); the new phase arms its own. */
static void enter(struct kcld_shard_consumer *c, enum phase to)
{
  enum phase from = c->phase;
  if (to <= from)
    return;
  c->phase = to;
  if (!(delivers(from) && delivers(to)))
    uv_timer_stop(&c->timer);
  if (from <= PH_DRAINING && to > PH_DRAINING) {
    stop_source(c);
    drop_queue(c);
  }
  if (from <= PH_STOPPING && to > PH_STOPPING && outstanding(c))
    c->sink.cancel(c->sink.impl, c); /* done() may come from inside */
  if (to == PH_CLOSED && c->sink.closed)
    c->sink.closed(c->sink.impl, c);
}

/* Ends the consumer's work in phase `to` (PH_ENDED, PH_STOPPED or PH_LOST)
 * and arms the finished callback for a later turn. */
static void finish(struct kcld_shard_consumer *c, enum phase to, int err)
{
  if (finished(c))
    return;
  c->finish_err = err;
  enter(c, to);
  uv_timer_start(&c->timer, on_timer, 0, 0);
}

static void become_lost(struct kcld_shard_consumer *c, int err)
{
  if (finished(c))
    return;
  /* Finish first: losing the checkpoint fails its flushes, whose callbacks
   * then find the consumer finished. */
  finish(c, PH_LOST, err);
  kcld_checkpoint_lose(c->cp);
}

static void on_cp_lost(void *arg)
{
  struct kcld_shard_consumer *c = arg;
  kcld_log(KCLD_LOG_WARN, "lease lost on checkpoint; stopping the shard",
           "shard", c->shard_id, NULL);
  become_lost(c, KCLD_ELOST);
}

/* A shard without a next iterator has ended: deliver what is queued, wait
 * for progress, then record the end. */
static void reached_end(struct kcld_shard_consumer *c)
{
  if (c->phase != PH_READING)
    return;
  enter(c, PH_DRAINING);
  kcld_log(KCLD_LOG_INFO, "shard reached its end", "shard", c->shard_id,
           NULL);
}

/* ======== Shard end ======== */

static void on_shard_ended(int err, void *arg)
{
  struct kcld_shard_consumer *c = arg;
  c->coord_inflight--;
  if (c->phase == PH_CLOSED) {
    maybe_free(c);
    return;
  }
  if (c->phase != PH_ENDING)
    return;
  if (err == 0) {
    kcld_log(KCLD_LOG_INFO, "shard ended", "shard", c->shard_id, NULL);
    finish(c, PH_ENDED, 0);
    return;
  }
  if (err == KCLD_ELOST) {
    become_lost(c, KCLD_ELOST);
    return;
  }
  if (c->end_stop) { /* the next owner meets the end again */
    finish(c, PH_STOPPED, err);
    return;
  }
  c->fails_in_row++;
  uint64_t delay = backoff_ms(c, c->fails_in_row);
  kcld_log(KCLD_LOG_WARN, "recording the shard end failed; will retry",
           "shard", c->shard_id, "op", "shard_ended", "error",
           kcld_strerror(err), KCLD_LOG_UINT("retry_ms", delay), NULL);
  uv_timer_start(&c->timer, on_timer, delay, 0);
}

static void on_end_flushed(int err, void *arg)
{
  struct kcld_shard_consumer *c = arg;
  if (c->phase != PH_ENDING)
    return;
  if (err == KCLD_ELOST) {
    become_lost(c, KCLD_ELOST);
    return;
  }
  if (err != 0 && c->end_stop) {
    finish(c, PH_STOPPED, err);
    return;
  }
  if (err != 0) {
    c->fails_in_row++;
    uv_timer_start(&c->timer, on_timer, backoff_ms(c, c->fails_in_row), 0);
    return;
  }
  c->coord_inflight++;
  kcld_coordinator_shard_ended(c->coord, c->shard_id,
                               (const char *const *)c->children,
                               c->n_children, on_shard_ended, c);
}

/* Flushes the checkpoint, then records the end (SHARD_END + children). */
static void start_end(struct kcld_shard_consumer *c)
{
  kcld_checkpoint_flush(c->cp, on_end_flushed, c);
}

/* ======== Graceful stop ======== */

static void on_stop_flushed(int err, void *arg)
{
  struct kcld_shard_consumer *c = arg;
  if (c->phase != PH_STOP_FLUSH)
    return;
  if (err == KCLD_ELOST) {
    become_lost(c, KCLD_ELOST);
    return;
  }
  finish(c, PH_STOPPED, err ? err : c->stop_err);
}

static void start_stop_flush(struct kcld_shard_consumer *c)
{
  uint64_t now = uv_now(c->loop);
  uint64_t left = c->stop_deadline_ms > now ? c->stop_deadline_ms - now : 0;
  enter(c, PH_STOP_FLUSH);
  /* Armed first: the flush may finish before it returns. */
  uv_timer_start(&c->timer, on_timer, left > FLUSH_GRACE_MS ? left
                                                            : FLUSH_GRACE_MS,
                 0);
  kcld_checkpoint_flush(c->cp, on_stop_flushed, c);
}

/* Moves a stop or a shard end on once nothing delivered is outstanding. */
static void check_drain(struct kcld_shard_consumer *c)
{
  if (c->phase == PH_DRAINING && c->qhead == NULL && !outstanding(c)) {
    c->fails_in_row = 0;
    enter(c, PH_ENDING);
    start_end(c);
  } else if (c->phase == PH_STOPPING && !outstanding(c)) {
    start_stop_flush(c);
  }
}

static void ask_parents(struct kcld_shard_consumer *c);
static void pump(struct kcld_shard_consumer *c);

/* The phase's wait is over. */
static void on_timer(uv_timer_t *t)
{
  struct kcld_shard_consumer *c = t->data;
  static const enum kcld_shard_consumer_end how[] = {
    [PH_ENDED] = KCLD_SHARD_CONSUMER_ENDED,
    [PH_STOPPED] = KCLD_SHARD_CONSUMER_STOPPED,
    [PH_LOST] = KCLD_SHARD_CONSUMER_LOST};

  switch (c->phase) {
  case PH_PARENTS:
    ask_parents(c);
    break;
  case PH_READING:
  case PH_DRAINING: /* a refused delivery may go again */
    pump(c);
    break;
  case PH_STOPPING:
    if (outstanding(c)) {
      kcld_log(KCLD_LOG_WARN,
               "stop deadline passed; abandoning work in flight", "shard",
               c->shard_id, NULL);
      c->stop_err = KCLD_ETIMEDOUT;
    }
    start_stop_flush(c); /* cancels the sink */
    break;
  case PH_ENDING:
    if (!c->end_stop) {
      start_end(c);
      break;
    }
    kcld_log(KCLD_LOG_WARN, "recording the shard end did not complete in "
             "time; stopping without it", "shard", c->shard_id, NULL);
    finish(c, PH_STOPPED, KCLD_ETIMEDOUT);
    break;
  case PH_STOP_FLUSH:
    kcld_log(KCLD_LOG_WARN, "final checkpoint did not complete in time",
             "shard", c->shard_id, NULL);
    finish(c, PH_STOPPED, KCLD_ETIMEDOUT);
    break;
  case PH_ENDED:
  case PH_STOPPED:
  case PH_LOST: /* the last use of c: close() may free it */
    c->finished(c, how[c->phase], c->finish_err, c->arg);
    break;
  case PH_CLOSED:
    break;
  }
}

/* ======== Deliveries ======== */

/* Hands the next queued batch to the sink, when the phase delivers, the
 * slot is free and no refusal's wait runs.  One per call: a done() from
 * inside deliver() wakes the step for the next. */
static void pump(struct kcld_shard_consumer *c)
{
  if (!delivers(c->phase) || at_sink(c) || !c->qhead ||
      uv_is_active((uv_handle_t *)&c->timer))
    return;
  struct queued *q = c->qhead;
  struct kcld_record_batch *b = q->batch;
  const struct kcld_record *last = &b->records[b->count - 1];
  struct kcld_seq_pos prev = c->delivered_last;
  c->qhead = q->next;
  if (!c->qhead)
    c->qtail = NULL;
  c->stats.queued_batches--;
  c->d = (struct kcld_shard_delivery){
    .consumer = c, .shard_id = c->shard_id, .batch = b,
    .records = b->records + q->first, .count = b->count - q->first,
    .millis_behind_latest = b->millis_behind_latest};
  kcld_seq_pos_set(&c->delivered_last, last->sequence_number,
                   last->sub_sequence_number);
  int rc = c->sink.deliver(c->sink.impl, &c->d);
  if (rc == 0) {
    c->refusals_in_row = 0;
    c->stats.deliveries++;
    free(q);
    return;
  }
  /* Refused: nothing is kept by the sink; offer it again later. */
  c->d.batch = NULL;
  c->delivered_last = prev;
  if (!delivers(c->phase)) {
    c->stats.buffered_bytes -= b->mem_bytes;
    kcld_record_batch_release(b);
    free(q);
    return;
  }
  q->next = c->qhead;
  c->qhead = q;
  if (!c->qtail)
    c->qtail = q;
  c->stats.queued_batches++;
  /* One line per run of refusals; waits double up to 5 s. */
  if (c->refusals_in_row++ == 0)
    kcld_log(KCLD_LOG_WARN, "the sink refused a delivery; will offer it again",
             "shard", c->shard_id, "error", kcld_strerror(rc), NULL);
  uint64_t wait = DELIVER_RETRY_MS;
  for (unsigned i = 1; i < c->refusals_in_row && wait < 5000; i++)
    wait *= 2;
  uv_timer_start(&c->timer, on_timer, wait < 5000 ? wait : 5000, 0);
}

/* Moves the consumer on: the next delivery, a drain to its next phase,
 * the source reading on.  Never from inside a call of the sink. */
static void step(struct kcld_shard_consumer *c)
{
  pump(c);
  check_drain(c);
  resume_source(c);
}

/* The step for what the sink said (done, progress), on a later turn of the
 * loop than it came. */
static void on_step(uv_idle_t *h)
{
  struct kcld_shard_consumer *c = h->data;
  uv_idle_stop(h);
  step(c);
}

static void kick(struct kcld_shard_consumer *c)
{
  if (!finished(c))
    uv_idle_start(&c->step, on_step);
}

void kcld_shard_consumer_done(struct kcld_shard_delivery *d)
{
  struct kcld_shard_consumer *c = d->consumer;
  if (d != &c->d || !at_sink(c)) {
    kcld_log(KCLD_LOG_ERROR, "sink bug: done for a delivery not in flight",
             "shard", c->shard_id, NULL);
    return;
  }
  c->stats.buffered_bytes -= d->batch->mem_bytes;
  kcld_record_batch_release(d->batch);
  d->batch = NULL;
  d->records = NULL;
  d->count = 0;
  if (c->phase == PH_CLOSED)
    maybe_free(c);
  else
    kick(c);
}

void kcld_shard_consumer_progress(struct kcld_shard_consumer *c,
                                  const char *sequence, uint64_t sub)
{
  kcld_shard_consumer_progress_window(c, sequence, sub, NULL);
}

void kcld_shard_consumer_progress_window(struct kcld_shard_consumer *c,
                                         const char *sequence, uint64_t sub,
                                         const char *window)
{
  if (c->phase > PH_STOPPING) /* finished, closed, or the sink cancelled */
    return;
  if (!kcld_seq_valid(sequence) || !c->delivered_last.set) {
    kcld_log(KCLD_LOG_ERROR, "sink bug: progress for nothing delivered",
             "shard", c->shard_id, "sequence",
             kcld_seq_valid(sequence) ? sequence : "(invalid)", NULL);
    return;
  }
  if (kcld_seq_pos_compare(&c->delivered_last, sequence, sub) < 0) {
    if (!c->clamp_warned)
      kcld_log(KCLD_LOG_WARN,
               "sink reported progress past the last delivered record; "
               "clamped", "shard", c->shard_id, "sequence", sequence,
               "delivered", c->delivered_last.seq, NULL);
    c->clamp_warned = 1;
    sequence = c->delivered_last.seq;
    sub = c->delivered_last.sub;
  }
  if (c->handled.set && kcld_seq_pos_compare(&c->handled, sequence, sub) >= 0) {
    if (window) /* the window's text alone changed */
      kcld_checkpoint_progress_window(c->cp, c->handled.seq, c->handled.sub,
                                      window);
    return;
  }
  kcld_seq_pos_set(&c->handled, sequence, sub);
  c->last_progress_ms = c->pending_mark_ms = uv_now(c->loop);
  kcld_checkpoint_progress_window(c->cp, c->handled.seq, c->handled.sub,
                                  window);
  kick(c);
}

/* ======== The fetch source ======== */

/* Notes the children of the shard's last batch, for shard_ended. */
static void keep_children(struct kcld_shard_consumer *c,
                          const struct kcld_record_batch *b)
{
  free_children(c);
  if (b->child_shard_count == 0)
    return;
  c->children = calloc(b->child_shard_count, sizeof(char *));
  for (size_t i = 0; c->children && i < b->child_shard_count; i++) {
    c->children[i] = strdup(b->child_shards[i].shard_id);
    if (c->children[i])
      c->n_children++;
  }
}

/* Applies a batch from the source: counters, skip, the end, the queue. */
static int on_source_batch(void *arg, struct kcld_record_batch *b)
{
  struct kcld_shard_consumer *c = arg;
  struct queued *q = NULL;
  uint64_t now = uv_now(c->loop);
  if (b->count > 0) {
    q = calloc(1, sizeof(*q));
    if (!q)
      return KCLD_ENOMEM; /* the source reads it again */
  }
  if (c->src_ops->every_answer_moves || b->kinesis_count > 0 ||
      b->millis_behind_latest <= 0)
    c->fetch_mark_ms = c->last_progress_ms = now;
  if (!pending(c))
    c->pending_mark_ms = now; /* if it is queued below, it waits from now */
  c->stats.kinesis_records += b->kinesis_count;
  c->stats.records += b->count;
  c->stats.bytes += b->data_bytes;
  if (b->millis_behind_latest >= 0)
    c->stats.millis_behind_latest = b->millis_behind_latest;

  size_t first = 0;
  if (c->skip.set) {
    while (first < b->count &&
           kcld_seq_pos_compare(&c->skip, b->records[first].sequence_number,
                                b->records[first].sub_sequence_number) >= 0)
      first++;
    if (first < b->count)
      c->skip.set = 0;
  }
  if (b->shard_end) {
    keep_children(c, b);
    reached_end(c);
  }
  if (first < b->count) {
    q->batch = b;
    q->first = first;
    if (c->qtail)
      c->qtail->next = q;
    else
      c->qhead = q;
    c->qtail = q;
    c->stats.queued_batches++;
    c->stats.buffered_bytes += b->mem_bytes;
  } else {
    free(q);
    kcld_record_batch_release(b);
  }
  step(c); /* from the source's loop callback: no sink call is under us */
  return 0;
}

static void on_source_ended(void *arg)
{
  struct kcld_shard_consumer *c = arg;
  reached_end(c);
  step(c);
}

/* Whether the source may read more (memory is the account's business). */
static int on_source_wanted(void *arg)
{
  struct kcld_shard_consumer *c = arg;
  return c->phase == PH_READING;
}

/* The account may admit a fetch now. */
static void on_budget_wake(void *arg)
{
  resume_source(arg);
}

static void on_source_closed(void *arg)
{
  struct kcld_shard_consumer *c = arg;
  c->src = NULL;
  maybe_free(c);
}

/* Lets the source read on when it waits for the budget. */
static void resume_source(struct kcld_shard_consumer *c)
{
  if (c->src && c->phase == PH_READING)
    c->src_ops->resume(c->src);
}

static int open_source(struct kcld_shard_consumer *c)
{
  struct kcld_source_args src = {
    .loop = c->loop, .shard_id = c->kin_shard, .start = c->start_pos,
    .min_call_ms = c->fanout ? c->subscribe_interval_ms : c->min_call_ms,
    .backoff_base_ms = c->backoff_base_ms,
    .backoff_max_ms = c->backoff_max_ms, .budget = c->budget,
    .account = c->account,
    .cbs = {.batch = on_source_batch, .ended = on_source_ended,
            .wanted = on_source_wanted, .closed = on_source_closed,
            .arg = c},
    .keep = {c->sink.keep, c->sink.keep_arg}};
  if (c->fanout) {
    struct kcld_subscriber_opts so = {
      .src = src, .fanout = c->fanout, .consumer_arn = c->consumer_arn};
    c->src_ops = &kcld_subscriber_ops;
    return kcld_subscriber_start(&so, &c->src);
  }
  struct kcld_poller_opts po = {
    .src = src, .kinesis = c->kinesis, .stream = c->stream,
    .max_records = c->max_records, .idle_ms = c->idle_ms,
    .first_estimate = c->first_estimate};
  c->src_ops = &kcld_poller_ops;
  return kcld_poller_start(&po, &c->src);
}

/* ======== Parents ======== */

static void on_parents(int err, int done, void *arg)
{
  struct kcld_shard_consumer *c = arg;
  c->coord_inflight--;
  if (c->phase == PH_CLOSED) {
    maybe_free(c);
    return;
  }
  if (c->phase != PH_PARENTS)
    return;
  if (err)
    kcld_log(KCLD_LOG_WARN, "asking whether the parent shards are done failed",
             "shard", c->shard_id, "op", "parents_done", "error",
             kcld_strerror(err), NULL);
  if (!err && done) {
    err = open_source(c);
    if (err == 0) {
      c->fetch_mark_ms = uv_now(c->loop);
      enter(c, PH_READING);
      resume_source(c);
      return;
    }
    kcld_log(KCLD_LOG_WARN, "could not start fetching; will retry", "shard",
             c->shard_id, "error", kcld_strerror(err), NULL);
  }
  uv_timer_start(&c->timer, on_timer, c->parents_poll_ms, 0);
}

static void ask_parents(struct kcld_shard_consumer *c)
{
  c->coord_inflight++;
  kcld_coordinator_parents_done(c->coord, c->shard_id, on_parents, c);
}

/* The checkpoint's writes, through the coordinator. */
static void coord_checkpoint(void *ctx, const char *shard_id,
                             const char *sequence, uint64_t sub,
                             kcld_lease_cb cb, void *arg)
{
  kcld_coordinator_checkpoint(ctx, shard_id, sequence, sub, cb, arg);
}

static void coord_checkpoint_window(void *ctx, const char *shard_id,
                                    const char *sequence, uint64_t sub,
                                    const char *window, kcld_lease_cb cb,
                                    void *arg)
{
  kcld_coordinator_checkpoint_window(ctx, shard_id, sequence, sub, window,
                                     cb, arg);
}

/* ======== Life cycle ======== */

/* Reads the lease's checkpoint into the start position (and the skip for a
 * position inside an aggregate).  Returns 0, 1 for a lease at SHARD_END,
 * or KCLD_EINVAL. */
static int parse_start(struct kcld_shard_consumer *c,
                       const struct kcld_lease *lease, int64_t ts_ms)
{
  const char *cp = lease->checkpoint;
  struct kcld_source_pos *sp = &c->start_pos;
  if (!cp)
    return KCLD_EINVAL;
  sp->timestamp_ms = ts_ms;
  if (strcmp(cp, "SHARD_END") == 0)
    return 1;
  if (strcmp(cp, "TRIM_HORIZON") == 0) {
    sp->type = KCLD_SOURCE_TRIM_HORIZON;
  } else if (strcmp(cp, "LATEST") == 0) {
    sp->type = KCLD_SOURCE_LATEST;
  } else if (strcmp(cp, "AT_TIMESTAMP") == 0) {
    sp->type = KCLD_SOURCE_AT_TIMESTAMP;
  } else if (kcld_seq_valid(cp)) {
    sp->type = lease->checkpoint_sub > 0 ? KCLD_SOURCE_AT : KCLD_SOURCE_AFTER;
    snprintf(c->start_seq, sizeof(c->start_seq), "%s", cp);
    sp->seq = c->start_seq;
    c->start_sub = lease->checkpoint_sub;
    if (sp->type == KCLD_SOURCE_AT)
      kcld_seq_pos_set(&c->skip, c->start_seq, c->start_sub);
  } else {
    return KCLD_EINVAL;
  }
  return 0;
}

/* The settings of opts, with their defaults. */
static void take_settings(struct kcld_shard_consumer *c,
                          const struct kcld_shard_consumer_opts *opts)
{
  c->loop = opts->loop;
  c->kinesis = opts->kinesis;
  c->fanout = opts->fanout;
  c->coord = opts->coordinator;
  c->subscribe_interval_ms = opts->subscribe_interval_ms
                               ? opts->subscribe_interval_ms
                               : DEF_SUBSCRIBE_INTERVAL_MS;
  kcld_shard_consumer_set_fetch(c, opts->max_records, opts->idle_ms);
  c->max_buffered = opts->max_buffered_bytes;
  c->first_estimate = (size_t)-1; /* the source's own worst case */
  c->parents_poll_ms = opts->parents_poll_ms ? opts->parents_poll_ms
                                             : DEF_PARENTS_POLL_MS;
  c->min_call_ms = opts->min_call_interval_ms ? opts->min_call_interval_ms
                                              : DEF_MIN_CALL_MS;
  c->backoff_base_ms = opts->backoff_base_ms ? opts->backoff_base_ms
                                             : DEF_BACKOFF_BASE_MS;
  c->backoff_max_ms = opts->backoff_max_ms ? opts->backoff_max_ms
                                           : DEF_BACKOFF_MAX_MS;
  if (c->backoff_max_ms < c->backoff_base_ms)
    c->backoff_max_ms = c->backoff_base_ms;
  c->sink = opts->sink;
  c->finished = opts->finished;
  c->arg = opts->arg;
  c->stats.millis_behind_latest = -1;
  c->last_progress_ms = uv_now(c->loop);
}

/* The budget, this shard's account and its checkpoint tracker. */
static int open_parts(struct kcld_shard_consumer *c,
                      const struct kcld_shard_consumer_opts *opts)
{
  int rc = 0;
  c->budget = opts->budget;
  if (!c->budget) {
    struct kcld_fetch_budget_opts bo = {.loop = c->loop,
                                        .parse_slots = PRIVATE_PARSE_SLOTS};
    rc = kcld_fetch_budget_new(&bo, &c->own_budget);
    c->budget = c->own_budget;
  }
  if (rc == 0)
    rc = kcld_fetch_account_new(c->budget, c->max_buffered, on_budget_wake, c,
                                &c->account);
  if (rc == 0) {
    struct kcld_checkpoint_opts co = {
      .loop = c->loop, .shard_id = c->shard_id,
      .interval_ms = opts->checkpoint_interval_ms,
      .write = coord_checkpoint, .write_window = coord_checkpoint_window,
      .write_ctx = c->coord,
      .written_sequence = c->start_pos.seq,
      .written_sub = c->start_sub, .lost = on_cp_lost, .arg = c};
    rc = kcld_checkpoint_new(&co, &c->cp);
    if (rc < 0)
      kcld_fetch_account_close(c->account);
  }
  if (rc < 0)
    kcld_fetch_budget_close(c->own_budget);
  return rc;
}

int kcld_shard_consumer_start(const struct kcld_shard_consumer_opts *opts,
                              struct kcld_shard_consumer **out)
{
  if (out)
    *out = NULL;
  if (!opts || !out || !opts->loop || !opts->kinesis || !opts->stream ||
      !opts->coordinator || !opts->lease || !opts->lease->shard_id ||
      !opts->sink.deliver || !opts->sink.cancel || !opts->finished ||
      opts->max_records <= 0 || !opts->idle_ms || !opts->max_buffered_bytes)
    return KCLD_EINVAL;
  if (opts->fanout && (!opts->consumer_arn || !*opts->consumer_arn))
    return KCLD_EINVAL;

  struct kcld_shard_consumer *c = calloc(1, sizeof(*c));
  if (!c)
    return KCLD_ENOMEM;
  int at_end = parse_start(c, opts->lease, opts->initial_timestamp_ms);
  if (at_end < 0) {
    free(c);
    return at_end;
  }
  c->stream = strdup(opts->stream);
  c->shard_id = strdup(opts->lease->shard_id);
  if (opts->fanout)
    c->consumer_arn = strdup(opts->consumer_arn);
  if (opts->lease->window)
    c->window = strdup(opts->lease->window);
  if (!c->stream || !c->shard_id || (opts->fanout && !c->consumer_arn) ||
      (opts->lease->window && !c->window)) {
    free_consumer(c);
    return KCLD_ENOMEM;
  }
  /* A multi-stream key ends with ":<shard id>" (lease/table.h). */
  c->kin_shard = c->shard_id + strlen(c->shard_id) -
                 strlen(kcld_lease_shard(opts->lease));
  take_settings(c, opts);
  int rc = open_parts(c, opts);
  if (rc < 0) {
    free_consumer(c);
    return rc;
  }
  uv_timer_init(c->loop, &c->timer);
  uv_idle_init(c->loop, &c->step);
  c->timer.data = c->step.data = c;
  c->handles_open = 2;
  *out = c;

  c->phase = PH_PARENTS;
  if (at_end)
    finish(c, PH_ENDED, 0);
  else
    ask_parents(c);
  return 0;
}

/* A stop while the end is being recorded: the flush or shard_ended under
 * way may still finish it ENDED within timeout_ms; a failure, or the
 * deadline, finishes it STOPPED (the lease's next owner meets the end
 * again, after the checkpoint).  A retry's backoff is cut short. */
static void stop_ending(struct kcld_shard_consumer *c, uint64_t timeout_ms)
{
  int backing_off = uv_is_active((uv_handle_t *)&c->timer);
  if (c->end_stop)
    return;
  c->end_stop = 1;
  uv_timer_start(&c->timer, on_timer, timeout_ms, 0);
  if (backing_off)
    start_end(c);
}

void kcld_shard_consumer_stop(struct kcld_shard_consumer *c,
                              uint64_t timeout_ms)
{
  if (c && c->phase == PH_ENDING)
    stop_ending(c, timeout_ms);
  if (!c || c->phase > PH_DRAINING)
    return;
  enter(c, PH_STOPPING);
  c->stop_deadline_ms = uv_now(c->loop) + timeout_ms;
  uv_timer_start(&c->timer, on_timer, timeout_ms, 0);
  kick(c);
}

void kcld_shard_consumer_lose(struct kcld_shard_consumer *c)
{
  if (!c || finished(c))
    return;
  kcld_log(KCLD_LOG_INFO, "lease lost; stopping the shard at once", "shard",
           c->shard_id, NULL);
  become_lost(c, 0);
}

void kcld_shard_consumer_checkpoint_at(struct kcld_shard_consumer *c,
                                       const char *sequence, uint64_t sub,
                                       kcld_lease_cb cb, void *arg)
{
  int rc;
  if (c->phase == PH_CLOSED) {
    cb(KCLD_ECANCELED, arg);
    return;
  }
  if (c->phase == PH_LOST) {
    cb(KCLD_ELOST, arg);
    return;
  }
  rc = kcld_checkpoint_progress(c->cp, sequence, sub);
  if (rc != 0) {
    cb(rc, arg);
    return;
  }
  kcld_checkpoint_flush(c->cp, cb, arg);
}

void kcld_shard_consumer_close(struct kcld_shard_consumer *c)
{
  if (!c || c->phase == PH_CLOSED)
    return;
  enter(c, PH_CLOSED);
  kcld_checkpoint_close(c->cp);
  c->cp = NULL;
  if (c->src)
    c->src_ops->close(c->src); /* on_source_closed follows */
  uv_close((uv_handle_t *)&c->timer, on_handle_closed);
  uv_close((uv_handle_t *)&c->step, on_handle_closed);
}

void kcld_shard_consumer_set_fetch(struct kcld_shard_consumer *c,
                                   int max_records, uint64_t idle_ms)
{
  c->max_records = max_records;
  c->idle_ms = idle_ms;
  if (c->idle_ms < MIN_IDLE_MS)
    c->idle_ms = MIN_IDLE_MS;
  if (c->src && c->src_ops->configure)
    c->src_ops->configure(c->src, c->max_records, c->idle_ms);
}

char *kcld_shard_consumer_take_window(struct kcld_shard_consumer *c,
                                     const char **sequence, uint64_t *sub)
{
  char *w = c->window;
  c->window = NULL;
  *sequence = c->start_pos.seq;
  *sub = c->start_sub;
  return w;
}

const char *kcld_shard_consumer_shard_id(const struct kcld_shard_consumer *c)
{
  return c->shard_id;
}

int64_t kcld_shard_consumer_millis_behind(const struct kcld_shard_consumer *c)
{
  return c->stats.millis_behind_latest;
}

int kcld_shard_fetch_failure(const char *op, enum kcld_kinesis_fault fault)
{
  switch (fault) {
  case KCLD_KINESIS_THROUGHPUT:
  case KCLD_KINESIS_KMS_THROTTLED:
    return KCLD_SHARD_FETCH_THROTTLED;
  case KCLD_KINESIS_LIMIT:
    return strcmp(op, "SubscribeToShard") == 0 ? KCLD_SHARD_FETCH_THROTTLED
                                               : KCLD_SHARD_FETCH_ERROR;
  case KCLD_KINESIS_NOT_FOUND:
    return KCLD_SHARD_FETCH_NO_ITERATOR;
  case KCLD_KINESIS_INVALID:
    return strcmp(op, "GetShardIterator") == 0 ||
               strcmp(op, "SubscribeToShard") == 0
             ? KCLD_SHARD_FETCH_NO_ITERATOR
             : KCLD_SHARD_FETCH_ERROR;
  default:
    return KCLD_SHARD_FETCH_ERROR;
  }
}

void kcld_shard_consumer_stats(const struct kcld_shard_consumer *c,
                               struct kcld_shard_consumer_stats *out)
{
  struct kcld_fetch_account_stats as;
  struct kcld_checkpoint_stats cs = {0};
  *out = c->stats;
  if (c->src && c->phase != PH_CLOSED)
    c->src_ops->stats(c->src, out);
  kcld_fetch_account_stats(c->account, &as);
  out->held_bytes = as.bytes;
  out->held_bytes_peak = as.peak_bytes;
  out->fresh_blocks = as.fresh_blocks;
  out->reused_blocks = as.reused_blocks;
  if (c->cp)
    kcld_checkpoint_stats(c->cp, &cs);
  out->last_progress_ms = c->last_progress_ms > cs.written_ms
                            ? c->last_progress_ms
                            : cs.written_ms;
  out->pending_since_ms = 0;
  if (pending(c))
    out->pending_since_ms = c->pending_mark_ms > cs.written_ms
                              ? c->pending_mark_ms
                              : cs.written_ms;
  out->fetch_ms = c->phase == PH_READING && c->src ? c->fetch_mark_ms : 0;
  if (!out->fetch_ms) {
    out->fetch_failing = KCLD_SHARD_FETCH_OK;
    out->fetch_error[0] = '\0';
  }
  if (c->phase == PH_PARENTS)
    out->blocked = KCLD_SHARD_BLOCKED_PARENTS;
  else if (c->phase == PH_READING && as.waiting)
    out->blocked = KCLD_SHARD_BLOCKED_MEMORY;
  else if (at_sink(c) && c->qhead)
    out->blocked = KCLD_SHARD_BLOCKED_SINK;
  else
    out->blocked = KCLD_SHARD_BLOCKED_NONE;
}

/* What the consumer waits for in its phase, in words (log_wait). */
static const char *waits_for(const struct kcld_shard_consumer *c)
{
  int timed = uv_is_active((const uv_handle_t *)&c->timer);
  switch (c->phase) {
  case PH_PARENTS:
    return c->coord_inflight ? "the coordinator's parents_done answer"
                             : "the next parents_done ask";
  case PH_READING:
  case PH_DRAINING:
  case PH_STOPPING:
    if (at_sink(c))
      return "the sink's done for its delivery";
    if (outstanding(c))
      return "the sink's progress up to the last record delivered";
    if (c->qhead)
      return timed ? "a refused delivery's wait" : "the next delivery";
    return c->phase == PH_READING ? "records from the source"
                                  : "the step that moves it on";
  case PH_ENDING:
    if (c->coord_inflight)
      return "the coordinator's shard_ended answer";
    return timed ? "the next try at recording the end"
                 : "the final checkpoint flush";
  case PH_STOP_FLUSH:
    return "the final checkpoint flush";
  case PH_ENDED:
  case PH_STOPPED:
  case PH_LOST:
    return "its finished callback";
  case PH_CLOSED:
    break;
  }
  return "nothing (closed)";
}

void kcld_shard_consumer_log_wait(const struct kcld_shard_consumer *c)
{
  static const char *const names[] = {
    [PH_PARENTS] = "parents", [PH_READING] = "reading",
    [PH_DRAINING] = "draining", [PH_STOPPING] = "stopping",
    [PH_ENDING] = "ending", [PH_STOP_FLUSH] = "stop_flush",
    [PH_ENDED] = "ended", [PH_STOPPED] = "stopped", [PH_LOST] = "lost",
    [PH_CLOSED] = "closed"};
  kcld_log(KCLD_LOG_WARN, "shard consumer unfinished", "shard", c->shard_id,
           "phase", names[c->phase], "waiting_for", waits_for(c),
           "checkpoint", c->cp ? kcld_checkpoint_waits(c->cp) : "closed",
           "delivered", c->delivered_last.set ? c->delivered_last.seq : NULL,
           "handled", c->handled.set ? c->handled.seq : NULL,
           KCLD_LOG_UINT("queued_batches", c->stats.queued_batches),
           KCLD_LOG_INT("coordinator_calls", c->coord_inflight), NULL);
}

const struct kcld_checkpoint *kcld_shard_consumer_checkpoint(
  const struct kcld_shard_consumer *c)
{
  return c->cp;
}
