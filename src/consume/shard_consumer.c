/* shard_consumer.c — the consumer core of one held shard: parents, the
 * delivery queue in fetch order, progress to the checkpoint, the shard's end,
 * and the ways to stop (stop, lose, close).  Records come from a fetch source
 * (source.h; polling: poller.c).  See shard_consumer.h.
 *
 * Everything here runs on the loop thread. */
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

/* Where the consumer is in its life. */
enum phase {
  PH_PARENTS,    /* waiting until the parents are done */
  PH_FETCH,      /* the source reads; deliveries */
  PH_DRAIN_END,  /* the shard ended: deliver the rest, wait for progress */
  PH_ENDING,     /* final checkpoint flush, then shard_ended */
  PH_STOPPING,   /* graceful stop: waiting for the sink */
  PH_STOP_FLUSH, /* graceful stop: final checkpoint flush */
  PH_FINISHED    /* finished (callback due or done) */
};

enum aux_mode { AUX_NONE, AUX_DELIVER_RETRY, AUX_NOTIFY };
enum stop_timer_mode { ST_NONE, ST_DEADLINE, ST_FLUSH, ST_END_RETRY };

/* A parsed batch waiting for its delivery. */
struct queued {
  struct queued *next;
  struct kcld_record_batch *batch;
  size_t first; /* records before this index are skipped */
};

struct kcld_shard_consumer {
  uv_timer_t parents_timer; /* parents poll */
  uv_timer_t stop_timer;   /* stop deadline, flush bound, end retries */
  uv_timer_t aux_timer;    /* deferred finish, deliver retry */

  uv_loop_t *loop;
  struct kcld_kinesis *kinesis;
  struct kcld_fanout *fanout;        /* fan-out mode; NULL = polling */
  char *consumer_arn;
  uint64_t subscribe_interval_ms;
  struct kcld_shard_consumer_lease_ops ops;
  char *stream;
  char *shard_id;            /* the lease key (the shard id, or in a
                                multi-stream table stream:shard) */
  const char *kin_shard;     /* the shard id for Kinesis calls: the tail
                                of shard_id */
  int shard_end_at_start;  /* the lease was at SHARD_END */
  struct kcld_source_pos start_pos;
  char start_seq[KCLD_SEQ_MAX + 1];
  uint64_t start_sub;
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
  struct kcld_shard_delivery d;
  int delivering;
  int in_deliver;
  int deliver_retry_armed;
  unsigned refusals_in_row;
  struct kcld_seq_pos delivered_last; /* last record handed to the sink */
  struct kcld_seq_pos handled;        /* last progress */
  int clamp_warned;
  int sink_cancelled;
  uint64_t last_progress_ms;          /* uv_now of the last progress of
                                         any kind, or of the start */
  uint64_t pending_mark_ms;           /* records began to wait, or the last
                                         progress report (stats) */
  uint64_t fetch_mark_ms;             /* fetching began, or the last answer
                                         that moved the shard on */

  char **children;
  size_t n_children;

  enum aux_mode aux_mode;
  enum stop_timer_mode st_mode;
  uint64_t stop_deadline_ms;
  int stop_err;
  enum kcld_shard_consumer_end how;
  int finish_err;
  int lost_mode;           /* no more deliveries or checkpoints */
  int closing;
  int handles_open;
  int coord_inflight;      /* parents_done or shard_ended calls */
  struct kcld_shard_consumer_stats stats;
};

static void kick(struct kcld_shard_consumer *c);
static void resume_source(struct kcld_shard_consumer *c);
static void stop_source(struct kcld_shard_consumer *c);
static void reached_end(struct kcld_shard_consumer *c);

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
  free(c);
}

static void maybe_free(struct kcld_shard_consumer *c)
{
  if (!c->closing || c->handles_open > 0 || c->src ||
      c->coord_inflight > 0 || c->delivering)
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
  if (c->delivering)
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

static void cancel_sink(struct kcld_shard_consumer *c)
{
  if (c->sink_cancelled || !outstanding(c))
    return;
  c->sink_cancelled = 1;
  c->sink.cancel(c->sink.impl, c);
}

/* ======== Finishing ======== */

static void on_aux(uv_timer_t *t)
{
  struct kcld_shard_consumer *c = t->data;
  enum aux_mode mode = c->aux_mode;
  c->aux_mode = AUX_NONE;
  if (c->closing)
    return;
  if (mode == AUX_NOTIFY) {
    c->finished(c, c->how, c->finish_err, c->arg);
    return;
  }
  c->deliver_retry_armed = 0;
  kick(c);
}

/* Ends the consumer's work and schedules the finished callback. */
static void finish(struct kcld_shard_consumer *c,
                   enum kcld_shard_consumer_end how, int err)
{
  if (c->phase == PH_FINISHED)
    return;
  c->phase = PH_FINISHED;
  c->how = how;
  c->finish_err = err;
  uv_timer_stop(&c->parents_timer);
  stop_source(c);
  uv_timer_stop(&c->stop_timer);
  c->st_mode = ST_NONE;
  c->deliver_retry_armed = 0;
  drop_queue(c);
  cancel_sink(c);
  c->aux_mode = AUX_NOTIFY;
  uv_timer_start(&c->aux_timer, on_aux, 0, 0);
}

static void become_lost(struct kcld_shard_consumer *c, int err)
{
  if (c->closing || c->phase == PH_FINISHED)
    return;
  c->lost_mode = 1;
  /* Finish first: losing the checkpoint fails its flushes, whose callbacks
   * then find the consumer finished. */
  finish(c, KCLD_SHARD_CONSUMER_LOST, err);
  kcld_checkpoint_lose(c->cp);
}

static void on_cp_lost(void *arg)
{
  struct kcld_shard_consumer *c = arg;
  kcld_log(KCLD_LOG_WARN, "lease lost on checkpoint; stopping the shard",
           "shard", c->shard_id, NULL);
  become_lost(c, KCLD_ELOST);
}

/* ======== Shard end ======== */

static void on_stop_timer(uv_timer_t *t);

static void on_shard_ended(int err, void *arg)
{
  struct kcld_shard_consumer *c = arg;
  c->coord_inflight--;
  if (c->closing) {
    maybe_free(c);
    return;
  }
  if (c->phase != PH_ENDING)
    return;
  if (err == 0) {
    kcld_log(KCLD_LOG_INFO, "shard ended", "shard", c->shard_id, NULL);
    finish(c, KCLD_SHARD_CONSUMER_ENDED, 0);
    return;
  }
  if (err == KCLD_ELOST) {
    become_lost(c, KCLD_ELOST);
    return;
  }
  c->fails_in_row++;
  uint64_t delay = backoff_ms(c, c->fails_in_row);
  kcld_log(KCLD_LOG_WARN, "recording the shard end failed; will retry",
           "shard", c->shard_id, "op", "shard_ended", "error",
           kcld_strerror(err), KCLD_LOG_UINT("retry_ms", delay), NULL);
  c->st_mode = ST_END_RETRY;
  uv_timer_start(&c->stop_timer, on_stop_timer, delay, 0);
}

/* Flushes the checkpoint, then records the end (SHARD_END + children). */
static void start_end(struct kcld_shard_consumer *c);

static void on_end_flushed(int err, void *arg)
{
  struct kcld_shard_consumer *c = arg;
  if (c->closing || c->phase != PH_ENDING)
    return;
  if (err == KCLD_ELOST) {
    become_lost(c, KCLD_ELOST);
    return;
  }
  if (err != 0) {
    c->fails_in_row++;
    c->st_mode = ST_END_RETRY;
    uv_timer_start(&c->stop_timer, on_stop_timer,
                   backoff_ms(c, c->fails_in_row), 0);
    return;
  }
  c->coord_inflight++;
  c->ops.shard_ended(c->ops.ctx, c->shard_id,
                     (const char *const *)c->children, c->n_children,
                     on_shard_ended, c);
}

static void start_end(struct kcld_shard_consumer *c)
{
  kcld_checkpoint_flush(c->cp, on_end_flushed, c);
}

/* ======== Graceful stop ======== */

static void on_stop_flushed(int err, void *arg)
{
  struct kcld_shard_consumer *c = arg;
  if (c->closing || c->phase != PH_STOP_FLUSH)
    return;
  if (err == KCLD_ELOST) {
    become_lost(c, KCLD_ELOST);
    return;
  }
  finish(c, KCLD_SHARD_CONSUMER_STOPPED, err ? err : c->stop_err);
}

static void start_stop_flush(struct kcld_shard_consumer *c)
{
  uint64_t now = uv_now(c->loop);
  uint64_t left = c->stop_deadline_ms > now ? c->stop_deadline_ms - now : 0;
  c->phase = PH_STOP_FLUSH;
  c->st_mode = ST_FLUSH;
  uv_timer_start(&c->stop_timer, on_stop_timer,
                 left > FLUSH_GRACE_MS ? left : FLUSH_GRACE_MS, 0);
  kcld_checkpoint_flush(c->cp, on_stop_flushed, c);
}

static void on_stop_timer(uv_timer_t *t)
{
  struct kcld_shard_consumer *c = t->data;
  enum stop_timer_mode mode = c->st_mode;
  c->st_mode = ST_NONE;
  if (c->closing)
    return;
  if (mode == ST_DEADLINE && c->phase == PH_STOPPING) {
    kcld_log(KCLD_LOG_WARN, "stop deadline passed; abandoning work in flight",
             "shard", c->shard_id, NULL);
    c->stop_err = KCLD_ETIMEDOUT;
    cancel_sink(c);
    start_stop_flush(c);
  } else if (mode == ST_FLUSH && c->phase == PH_STOP_FLUSH) {
    kcld_log(KCLD_LOG_WARN, "final checkpoint did not complete in time",
             "shard", c->shard_id, NULL);
    finish(c, KCLD_SHARD_CONSUMER_STOPPED, KCLD_ETIMEDOUT);
  } else if (mode == ST_END_RETRY && c->phase == PH_ENDING) {
    start_end(c);
  }
}

/* Moves a stop or a shard end on once nothing delivered is outstanding. */
static void check_drain(struct kcld_shard_consumer *c)
{
  if (c->closing || c->in_deliver)
    return;
  if (c->phase == PH_DRAIN_END && c->qhead == NULL && !outstanding(c)) {
    c->phase = PH_ENDING;
    c->fails_in_row = 0;
    start_end(c);
  } else if (c->phase == PH_STOPPING && !outstanding(c)) {
    uv_timer_stop(&c->stop_timer);
    c->st_mode = ST_NONE;
    start_stop_flush(c);
  }
}

/* ======== Deliveries ======== */

/* Hands queued batches to the sink, one at a time, while it takes them. */
static void pump(struct kcld_shard_consumer *c)
{
  while (!c->closing && !c->lost_mode &&
         (c->phase == PH_FETCH || c->phase == PH_DRAIN_END) &&
         !c->delivering && c->qhead && !c->deliver_retry_armed) {
    struct queued *q = c->qhead;
    struct kcld_record_batch *b = q->batch;
    const struct kcld_record *last = &b->records[b->count - 1];
    struct kcld_seq_pos prev = c->delivered_last;
    c->qhead = q->next;
    if (!c->qhead)
      c->qtail = NULL;
    c->stats.queued_batches--;
    c->d.consumer = c;
    c->d.shard_id = c->shard_id;
    c->d.batch = b;
    c->d.records = b->records + q->first;
    c->d.count = b->count - q->first;
    c->d.millis_behind_latest = b->millis_behind_latest;
    kcld_seq_pos_set(&c->delivered_last, last->sequence_number,
                     last->sub_sequence_number);
    c->delivering = 1;
    c->in_deliver++;
    int rc = c->sink.deliver(c->sink.impl, &c->d);
    c->in_deliver--;
    if (rc == 0) {
      c->refusals_in_row = 0;
      c->stats.deliveries++;
      free(q);
      continue;
    }
    /* Refused: nothing is kept by the sink; offer it again later. */
    c->delivering = 0;
    c->delivered_last = prev;
    c->d.batch = NULL;
    if (c->closing || c->lost_mode || c->phase == PH_FINISHED) {
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
      kcld_log(KCLD_LOG_WARN,
               "the sink refused a delivery; will offer it again", "shard",
               c->shard_id, "error", kcld_strerror(rc), NULL);
    uint64_t wait = DELIVER_RETRY_MS;
    for (unsigned i = 1; i < c->refusals_in_row && wait < 5000; i++)
      wait *= 2;
    c->deliver_retry_armed = 1;
    c->aux_mode = AUX_DELIVER_RETRY;
    uv_timer_start(&c->aux_timer, on_aux, wait < 5000 ? wait : 5000, 0);
    return;
  }
}

static void kick(struct kcld_shard_consumer *c)
{
  pump(c);
  check_drain(c);
  resume_source(c);
}

void kcld_shard_consumer_done(struct kcld_shard_delivery *d)
{
  struct kcld_shard_consumer *c = d->consumer;
  if (!c->delivering || d != &c->d) {
    kcld_log(KCLD_LOG_ERROR, "sink bug: done for a delivery not in flight",
             "shard", c->shard_id, NULL);
    return;
  }
  c->delivering = 0;
  c->stats.buffered_bytes -= d->batch->mem_bytes;
  kcld_record_batch_release(d->batch);
  d->batch = NULL;
  d->records = NULL;
  d->count = 0;
  if (c->closing) {
    maybe_free(c);
    return;
  }
  if (c->in_deliver)
    return; /* pump() goes on when deliver returns */
  kick(c);
}

void kcld_shard_consumer_progress(struct kcld_shard_consumer *c,
                                  const char *sequence, uint64_t sub)
{
  if (c->closing || c->lost_mode || c->phase == PH_FINISHED ||
      c->sink_cancelled)
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
  if (c->handled.set && kcld_seq_pos_compare(&c->handled, sequence, sub) >= 0)
    return;
  kcld_seq_pos_set(&c->handled, sequence, sub);
  c->last_progress_ms = c->pending_mark_ms = uv_now(c->loop);
  kcld_checkpoint_progress(c->cp, c->handled.seq, c->handled.sub);
  check_drain(c);
}

/* ======== The fetch source ======== */

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
    free_children(c);
    if (b->child_shard_count > 0) {
      c->children = calloc(b->child_shard_count, sizeof(char *));
      for (size_t i = 0; c->children && i < b->child_shard_count; i++) {
        c->children[i] = strdup(b->child_shards[i].shard_id);
        if (c->children[i])
          c->n_children++;
      }
    }
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
  kick(c);
  return 0;
}

static void on_source_ended(void *arg)
{
  struct kcld_shard_consumer *c = arg;
  reached_end(c);
  kick(c);
}

/* Whether the source may read more (memory is the account's business). */
static int on_source_wanted(void *arg)
{
  struct kcld_shard_consumer *c = arg;
  return !c->closing && c->phase == PH_FETCH;
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
  if (c->src && !c->closing && c->phase == PH_FETCH)
    c->src_ops->resume(c->src);
}

/* No more batches from the source. */
static void stop_source(struct kcld_shard_consumer *c)
{
  if (c->src)
    c->src_ops->stop(c->src);
}

static int open_source(struct kcld_shard_consumer *c)
{
  struct kcld_source_cbs cbs = {
    .batch = on_source_batch, .ended = on_source_ended,
    .wanted = on_source_wanted, .closed = on_source_closed, .arg = c};
  if (c->fanout) {
    struct kcld_subscriber_opts so = {
      .loop = c->loop, .fanout = c->fanout,
      .consumer_arn = c->consumer_arn, .shard_id = c->kin_shard,
      .start = c->start_pos, .min_call_ms = c->subscribe_interval_ms,
      .backoff_base_ms = c->backoff_base_ms,
      .backoff_max_ms = c->backoff_max_ms, .budget = c->budget,
      .account = c->account, .cbs = cbs};
    c->src_ops = &kcld_subscriber_ops;
    return kcld_subscriber_start(&so, &c->src);
  }
  struct kcld_poller_opts po = {
    .loop = c->loop, .kinesis = c->kinesis, .stream = c->stream,
    .shard_id = c->kin_shard, .start = c->start_pos,
    .max_records = c->max_records, .idle_ms = c->idle_ms,
    .min_call_ms = c->min_call_ms, .backoff_base_ms = c->backoff_base_ms,
    .backoff_max_ms = c->backoff_max_ms, .budget = c->budget,
    .account = c->account, .first_estimate = c->first_estimate,
    .cbs = cbs};
  c->src_ops = &kcld_poller_ops;
  return kcld_poller_start(&po, &c->src);
}

/* ======== Parents ======== */

static void on_parents_timer(uv_timer_t *t);

static void on_parents(int err, int done, void *arg)
{
  struct kcld_shard_consumer *c = arg;
  c->coord_inflight--;
  if (c->closing) {
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
    c->phase = PH_FETCH;
    err = open_source(c);
    if (err == 0) {
      c->fetch_mark_ms = uv_now(c->loop);
      return;
    }
    c->phase = PH_PARENTS;
    kcld_log(KCLD_LOG_WARN, "could not start fetching; will retry", "shard",
             c->shard_id, "error", kcld_strerror(err), NULL);
  }
  uv_timer_start(&c->parents_timer, on_parents_timer, c->parents_poll_ms, 0);
}

static void ask_parents(struct kcld_shard_consumer *c)
{
  c->coord_inflight++;
  c->ops.parents_done(c->ops.ctx, c->shard_id, on_parents, c);
}

static void on_parents_timer(uv_timer_t *t)
{
  struct kcld_shard_consumer *c = t->data;
  if (!c->closing && c->phase == PH_PARENTS)
    ask_parents(c);
}

/* A shard without a next iterator has ended: deliver what is queued, wait
 * for progress, then record the end. */
static void reached_end(struct kcld_shard_consumer *c)
{
  c->phase = PH_DRAIN_END;
  kcld_log(KCLD_LOG_INFO, "shard reached its end", "shard", c->shard_id,
           NULL);
}

/* ======== Lease operations through the coordinator ======== */

static void coord_checkpoint(void *ctx, const char *shard_id,
                             const char *sequence, uint64_t sub,
                             kcld_lease_cb cb, void *arg)
{
  kcld_coordinator_checkpoint(ctx, shard_id, sequence, sub, cb, arg);
}

static void coord_shard_ended(void *ctx, const char *shard_id,
                              const char *const *children, size_t n_children,
                              kcld_lease_cb cb, void *arg)
{
  kcld_coordinator_shard_ended(ctx, shard_id, children, n_children, cb, arg);
}

static void coord_parents_done(void *ctx, const char *shard_id,
                               kcld_parents_cb cb, void *arg)
{
  kcld_coordinator_parents_done(ctx, shard_id, cb, arg);
}

/* ======== Life cycle ======== */

/* Reads the lease's checkpoint into the start position (and the skip for a
 * position inside an aggregate). */
static int parse_start(struct kcld_shard_consumer *c,
                       const struct kcld_lease *lease, int64_t ts_ms)
{
  const char *cp = lease->checkpoint;
  struct kcld_source_pos *sp = &c->start_pos;
  if (!cp)
    return KCLD_EINVAL;
  sp->timestamp_ms = ts_ms;
  if (strcmp(cp, "SHARD_END") == 0) {
    c->shard_end_at_start = 1;
  } else if (strcmp(cp, "TRIM_HORIZON") == 0) {
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

int kcld_shard_consumer_start(const struct kcld_shard_consumer_opts *opts,
                              struct kcld_shard_consumer **out)
{
  if (out)
    *out = NULL;
  if (!opts || !out || !opts->loop || !opts->kinesis || !opts->stream ||
      !opts->lease || !opts->lease->shard_id || !opts->sink.deliver ||
      !opts->sink.cancel || !opts->finished || opts->max_records <= 0 ||
      !opts->idle_ms || !opts->max_buffered_bytes)
    return KCLD_EINVAL;
  const struct kcld_shard_consumer_lease_ops *lo = opts->lease_ops;
  if (lo && (!lo->checkpoint || !lo->shard_ended || !lo->parents_done))
    return KCLD_EINVAL;
  if (!lo && !opts->coordinator)
    return KCLD_EINVAL;
  if (opts->fanout && (!opts->consumer_arn || !*opts->consumer_arn))
    return KCLD_EINVAL;

  struct kcld_shard_consumer *c = calloc(1, sizeof(*c));
  if (!c)
    return KCLD_ENOMEM;
  int rc = parse_start(c, opts->lease, opts->initial_timestamp_ms);
  if (rc < 0) {
    free(c);
    return rc;
  }
  c->stream = strdup(opts->stream);
  c->shard_id = strdup(opts->lease->shard_id);
  if (opts->fanout)
    c->consumer_arn = strdup(opts->consumer_arn);
  if (!c->stream || !c->shard_id || (opts->fanout && !c->consumer_arn)) {
    free_consumer(c);
    return KCLD_ENOMEM;
  }
  /* A multi-stream key ends with ":<shard id>" (lease/table.h). */
  c->kin_shard = c->shard_id + strlen(c->shard_id) -
                 strlen(kcld_lease_shard(opts->lease));
  c->loop = opts->loop;
  c->kinesis = opts->kinesis;
  c->fanout = opts->fanout;
  c->subscribe_interval_ms = opts->subscribe_interval_ms
                               ? opts->subscribe_interval_ms
                               : DEF_SUBSCRIBE_INTERVAL_MS;
  if (lo) {
    c->ops = *lo;
  } else {
    c->ops.checkpoint = coord_checkpoint;
    c->ops.shard_ended = coord_shard_ended;
    c->ops.parents_done = coord_parents_done;
    c->ops.ctx = opts->coordinator;
  }
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
  if (rc < 0) {
    kcld_fetch_budget_close(c->own_budget);
    free_consumer(c);
    return rc;
  }
  struct kcld_checkpoint_opts co = {
    .loop = c->loop, .shard_id = c->shard_id,
    .interval_ms = opts->checkpoint_interval_ms,
    .write = c->ops.checkpoint, .write_ctx = c->ops.ctx,
    .written_sequence = c->start_pos.seq,
    .written_sub = c->start_sub, .lost = on_cp_lost, .arg = c};
  rc = kcld_checkpoint_new(&co, &c->cp);
  if (rc < 0) {
    kcld_fetch_account_close(c->account);
    kcld_fetch_budget_close(c->own_budget);
    free_consumer(c);
    return rc;
  }
  uv_timer_init(c->loop, &c->parents_timer);
  uv_timer_init(c->loop, &c->stop_timer);
  uv_timer_init(c->loop, &c->aux_timer);
  c->parents_timer.data = c->stop_timer.data = c->aux_timer.data = c;
  c->handles_open = 3;
  *out = c;

  if (c->shard_end_at_start) {
    finish(c, KCLD_SHARD_CONSUMER_ENDED, 0);
    return 0;
  }
  c->phase = PH_PARENTS;
  ask_parents(c);
  return 0;
}

void kcld_shard_consumer_stop(struct kcld_shard_consumer *c,
                              uint64_t timeout_ms)
{
  if (!c || c->closing || c->lost_mode)
    return;
  if (c->phase != PH_PARENTS && c->phase != PH_FETCH &&
      c->phase != PH_DRAIN_END)
    return;
  c->phase = PH_STOPPING;
  uv_timer_stop(&c->parents_timer);
  stop_source(c);
  drop_queue(c);
  if (c->deliver_retry_armed) {
    uv_timer_stop(&c->aux_timer);
    c->deliver_retry_armed = 0;
    c->aux_mode = AUX_NONE;
  }
  c->stop_deadline_ms = uv_now(c->loop) + timeout_ms;
  c->st_mode = ST_DEADLINE;
  uv_timer_start(&c->stop_timer, on_stop_timer, timeout_ms, 0);
  check_drain(c);
}

void kcld_shard_consumer_lose(struct kcld_shard_consumer *c)
{
  if (!c || c->closing || c->phase == PH_FINISHED)
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
  if (c->closing) {
    cb(KCLD_ECANCELED, arg);
    return;
  }
  if (c->lost_mode) {
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
  if (!c || c->closing)
    return;
  c->closing = 1;
  if (c->phase != PH_FINISHED)
    c->lost_mode = 1;
  c->phase = PH_FINISHED;
  drop_queue(c);
  cancel_sink(c);
  kcld_checkpoint_close(c->cp);
  c->cp = NULL;
  if (c->src)
    c->src_ops->close(c->src); /* on_source_closed follows */
  uv_close((uv_handle_t *)&c->parents_timer, on_handle_closed);
  uv_close((uv_handle_t *)&c->stop_timer, on_handle_closed);
  uv_close((uv_handle_t *)&c->aux_timer, on_handle_closed);
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
  if (c->src && !c->closing)
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
  out->fetch_ms = c->phase == PH_FETCH && c->src ? c->fetch_mark_ms : 0;
  if (!out->fetch_ms) {
    out->fetch_failing = KCLD_SHARD_FETCH_OK;
    out->fetch_error[0] = '\0';
  }
  if (c->phase == PH_PARENTS)
    out->blocked = KCLD_SHARD_BLOCKED_PARENTS;
  else if (c->phase == PH_FETCH && as.waiting)
    out->blocked = KCLD_SHARD_BLOCKED_MEMORY;
  else if (c->delivering && c->qhead)
    out->blocked = KCLD_SHARD_BLOCKED_SINK;
  else
    out->blocked = KCLD_SHARD_BLOCKED_NONE;
}

const struct kcld_checkpoint *kcld_shard_consumer_checkpoint(
  const struct kcld_shard_consumer *c)
{
  return c->cp;
}
