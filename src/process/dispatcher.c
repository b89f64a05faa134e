/* dispatcher.c — batches across deliveries, lanes by partition key, the
 * failure policy's loop work (retry and wait timers, bisection, dead-letter
 * sends) and the checkpoint as the lowest position not yet dealt with.
 *
 * Everything that comes back — handler answers, a refused process() — is
 * queued and acted on in on_idle(); everything that goes out to a consumer
 * (progress, done) is noted on its shard and emitted there too. */
#include "process/dispatcher.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws/call.h"
#include "base/clock.h"
#include "base/rand.h"
#include "base/seq.h"
#include "err.h"
#include "log.h"
#include "process/policy.h"
#include "process/window.h"

#define MAX_LANES 10
#define MAX_DEPTH 64

struct shard;
struct job;

struct kcld_dispatcher {
  struct kcld_dispatcher_opts opts;
  struct kcld_policy policy;
  struct shard *shards;          /* active: taking deliveries */
  struct shard *dirty, *dirty_tail; /* with something to emit, or closing */
  struct call *answers, *answers_tail; /* answered, not yet acted on */
  uv_idle_t idle;                /* on_idle: the two queues above */
  int idle_on;
  size_t live;                   /* the idle handle + shards not yet freed
                                    + calls not yet freed */
  size_t calls;                  /* handler calls not yet answered */
  size_t active;                 /* shards in the list */
  struct kcld_dispatcher_stats stats;
  kcld_dispatcher_observer_fn observer;
  void *observer_arg;
  int flushing;                  /* no more waiting for batch.window */
  int closing;
};

struct entry {
  const struct kcld_record *rec;
  int done;
};

/* One handler attempt.  Outlives its job when it times out or the shard is
 * cancelled: the handler still reads ptrs until it answers. */
struct call {
  struct kcld_dispatcher *disp;
  struct job *job;               /* NULL once orphaned */
  struct call *next_answer;
  char *shard_id;                /* the call's own copy: the handler may
                                    still read it after the shard closed */
  const struct kcld_record **ptrs;
  size_t n;
  uint64_t bytes;                /* payload bytes of ptrs */
  uint64_t started_ns;           /* uv_hrtime() at process() */
  uv_timer_t timeout;
  int answered;
  struct kcld_handler_result res; /* the answer, strings in the buffers */
  char err_type[64];
  char err_msg[512];
  struct kcld_handler_window win; /* with windows: what the call got */
  char *win_state;               /* its state, the call's own copy */
  char *state;                   /* the answer's state, copied */
};

struct range {
  size_t end;                    /* job index past the range */
  unsigned invokes;              /* handler calls its records were in */
};

enum job_wait { WAIT_CALL, WAIT_BACKOFF, WAIT_DLQ, WAIT_GIVE_UP };

/* A batch of one lane, worked on until every record is dealt with. */
struct job {
  struct shard *sh;
  struct lane *lane;
  uint64_t *idx;                 /* global entry indices, lane order */
  size_t n, pos;                 /* idx[0..pos) are dealt with */
  struct range stack[MAX_DEPTH]; /* ranges still to do, innermost on top */
  int depth;
  unsigned retries;              /* of the range on top */
  unsigned infra;                /* infrastructure failures in a row */
  unsigned dest_fails;           /* destination sends that did not start */
  uint64_t since;                /* loop ms: first of those failures */
  enum kcld_dispatcher_wait why; /* for the shard state */
  enum job_wait wait;
  struct call *call;
  struct kcld_dlq_send *send;
  int early;                     /* a window's final call (n == 0, see
                                    final_call): isWindowTerminatedEarly */
  enum kcld_policy_condition condition;
  char err_type[64];
  char err_msg[512];
};

/* A job without records is a window's final call (start_job). */
static int final_call(const struct job *j)
{
  return j->n == 0;
}

struct lane {
  struct shard *sh;
  uint64_t *pend;                /* global indices waiting for a batch */
  size_t pstart, pend_n, pend_cap; /* pend[pstart..pend_n) */
  struct job *job;
  uv_timer_t timer;              /* the job's backoff */
};

struct shard {
  struct shard *next, *prev;     /* the active list */
  struct shard *next_dirty;
  struct kcld_dispatcher *disp;
  struct kcld_shard_consumer *consumer;
  char *shard_id;
  struct entry *ents;            /* ents[head..tail) not yet popped */
  size_t head, tail, cap;
  uint64_t base;                 /* global index of ents[0] */
  struct kcld_shard_delivery *held;
  struct kcld_shard_delivery *done_due; /* done to emit */
  int progress_due;              /* progress to emit: */
  struct kcld_seq_pos progress;
  int64_t millis_behind;
  int ended;                     /* the shard's last records are here */
  uint64_t window_deadline;      /* loop ms; 0 = nothing waits */
  uv_timer_t window;
  struct lane lanes[MAX_LANES];
  unsigned nlanes;
  struct kcld_window win;        /* window.tumbling: one lane only */
  int win_big_logged;            /* its state outgrew the lease item */
  unsigned open_handles;
  int in_dirty;
  int closing;
  int cancelled;                 /* no progress any more */
  int handles_closed;
};

/* ======== Small helpers ======== */

static unsigned key_lane(const struct kcld_record *r, unsigned nlanes)
{
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < r->partition_key_len; i++)
    h = (h ^ (unsigned char)r->partition_key[i]) * 16777619u;
  return h % nlanes;
}

static struct entry *ent(struct shard *sh, uint64_t g)
{
  return &sh->ents[g - sh->base];
}

static void on_idle_closed(uv_handle_t *h)
{
  free(h->data);
}

static void disp_free_maybe(struct kcld_dispatcher *disp)
{
  if (disp->closing && disp->live == 1 &&
      !uv_is_closing((uv_handle_t *)&disp->idle)) {
    disp->live = 0;
    uv_close((uv_handle_t *)&disp->idle, on_idle_closed);
  }
}

static void on_idle(uv_idle_t *h);

static void wake(struct kcld_dispatcher *disp)
{
  if (disp->idle_on || uv_is_closing((uv_handle_t *)&disp->idle))
    return;
  disp->idle_on = 1;
  uv_idle_start(&disp->idle, on_idle);
}

/* The shard has something to emit, or is closing: on_idle visits it. */
static void mark_dirty(struct shard *sh)
{
  struct kcld_dispatcher *disp = sh->disp;

  if (sh->in_dirty || sh->handles_closed)
    return;
  sh->in_dirty = 1;
  sh->next_dirty = NULL;
  if (disp->dirty_tail)
    disp->dirty_tail->next_dirty = sh;
  else
    disp->dirty = sh;
  disp->dirty_tail = sh;
  wake(disp);
}

/* ======== Shard life ======== */

static void on_shard_handle_closed(uv_handle_t *h)
{
  struct shard *sh = h->data;
  struct kcld_dispatcher *disp = sh->disp;

  if (--sh->open_handles > 0)
    return;
  for (unsigned i = 0; i < sh->nlanes; i++)
    free(sh->lanes[i].pend);
  kcld_window_close(&sh->win);
  free(sh->ents);
  free(sh->shard_id);
  free(sh);
  disp->live--;
  disp_free_maybe(disp);
}

static void shard_unlink(struct shard *sh)
{
  struct kcld_dispatcher *disp = sh->disp;
  if (sh->prev)
    sh->prev->next = sh->next;
  else
    disp->shards = sh->next;
  if (sh->next)
    sh->next->prev = sh->prev;
  disp->active--;
}

/* Drops everything the shard holds; its delivery's done and its handles'
 * close follow in on_idle. */
static void shard_close(struct shard *sh)
{
  if (sh->closing)
    return;
  sh->closing = 1;
  shard_unlink(sh);
  for (size_t i = sh->head; i < sh->tail; i++)
    kcld_record_batch_release(sh->ents[i].rec->batch);
  sh->head = sh->tail;
  uv_timer_stop(&sh->window);
  for (unsigned i = 0; i < sh->nlanes; i++)
    uv_timer_stop(&sh->lanes[i].timer);
  if (sh->held) {
    sh->done_due = sh->held;
    sh->held = NULL;
  }
  mark_dirty(sh);
}

static void close_handles(struct shard *sh)
{
  sh->handles_closed = 1;
  uv_close((uv_handle_t *)&sh->window, on_shard_handle_closed);
  for (unsigned i = 0; i < sh->nlanes; i++) {
    sh->lanes[i].timer.data = sh;
    uv_close((uv_handle_t *)&sh->lanes[i].timer, on_shard_handle_closed);
  }
}

/* The progress to the consumer; with windows, the window's text as of
 * that position goes with it (written with the checkpoint). */
static void emit_progress(struct shard *sh)
{
  int big = 0;
  char *text;

  if (!sh->win.tumbling_ms) {
    kcld_shard_consumer_progress(sh->consumer, sh->progress.seq,
                                 sh->progress.sub);
    return;
  }
  text = kcld_window_encode(&sh->win, sh->progress.seq, sh->progress.sub,
                            &big);
  if (big && !sh->win_big_logged)
    kcld_log(KCLD_LOG_WARN, "window state too large to keep in the lease "
             "table: a lease that moves restarts this window", "shard",
             sh->shard_id, KCLD_LOG_UINT("bytes", sh->win.state_len), NULL);
  sh->win_big_logged = big;
  kcld_shard_consumer_progress_window(sh->consumer, sh->progress.seq,
                                      sh->progress.sub, text);
  free(text);
}

/* Calls into the consumer: from on_idle only. */
static void emit(struct shard *sh)
{
  /* At the shard's end the window's final call comes first: the consumer
   * finishes the shard once the last record is reported. */
  int hold = sh->ended && sh->win.open && !sh->closing;

  if (sh->progress_due && !hold) {
    sh->progress_due = 0;
    if (!sh->cancelled)
      emit_progress(sh);
  }
  if (sh->done_due) {
    struct kcld_shard_delivery *d = sh->done_due;
    sh->done_due = NULL;
    kcld_shard_consumer_done(d);
  }
  if (sh->closing && !sh->handles_closed) {
    if (sh->progress_due || sh->done_due || sh->in_dirty)
      return; /* more came meanwhile: visited again */
    close_handles(sh);
  }
}

static struct shard *shard_find(struct kcld_dispatcher *disp,
                                struct kcld_shard_consumer *c)
{
  for (struct shard *sh = disp->shards; sh; sh = sh->next)
    if (sh->consumer == c)
      return sh;
  return NULL;
}

static void on_window(uv_timer_t *t);

/* The window the lease item kept, when it belongs to where the shard
 * starts: a lease that moved goes on with its window's state. */
static void window_resume(struct shard *sh)
{
  const char *seq, *why = "";
  uint64_t sub;
  char *text = kcld_shard_consumer_take_window(sh->consumer, &seq, &sub);
  int rc;

  if (!text || !*text) {
    free(text);
    return;
  }
  rc = kcld_window_restore(&sh->win, text, seq, sub, &why);
  if (rc == 1)
    kcld_log(KCLD_LOG_INFO, "window resumed from the lease table", "shard",
             sh->shard_id, KCLD_LOG_INT("window_start_ms", sh->win.start_ms),
             KCLD_LOG_UINT("bytes", sh->win.state_len), NULL);
  else
    kcld_log(KCLD_LOG_WARN, "window in the lease table not resumed; the "
             "window starts afresh", "shard", sh->shard_id, "reason",
             rc == 0 ? why : kcld_strerror(rc), NULL);
  free(text);
}

static struct shard *shard_new(struct kcld_dispatcher *disp,
                               struct kcld_shard_delivery *d)
{
  struct shard *sh = calloc(1, sizeof(*sh));
  if (!sh)
    return NULL;
  sh->shard_id = strdup(d->shard_id ? d->shard_id : "");
  if (!sh->shard_id) {
    free(sh);
    return NULL;
  }
  sh->disp = disp;
  sh->consumer = d->consumer;
  sh->nlanes = disp->opts.parallelization;
  sh->win.tumbling_ms = disp->opts.tumbling_ms;
  if (sh->win.tumbling_ms)
    window_resume(sh);
  uv_timer_init(disp->opts.loop, &sh->window);
  sh->window.data = sh;
  sh->open_handles = 1 + sh->nlanes;
  for (unsigned i = 0; i < sh->nlanes; i++) {
    sh->lanes[i].sh = sh;
    uv_timer_init(disp->opts.loop, &sh->lanes[i].timer);
    sh->lanes[i].timer.data = &sh->lanes[i];
  }
  sh->next = disp->shards;
  if (disp->shards)
    disp->shards->prev = sh;
  disp->shards = sh;
  disp->active++;
  disp->live++;
  return sh;
}

/* ======== Progress ======== */

/* Pops the records dealt with from the front and notes the last one as the
 * progress to report. */
static void advance(struct shard *sh)
{
  size_t h = sh->head;

  while (h < sh->tail && sh->ents[h].done)
    h++;
  if (h == sh->head)
    return;
  kcld_seq_pos_set(&sh->progress, sh->ents[h - 1].rec->sequence_number,
                   sh->ents[h - 1].rec->sub_sequence_number);
  sh->progress_due = 1;
  mark_dirty(sh);
  for (size_t i = sh->head; i < h; i++)
    kcld_record_batch_release(sh->ents[i].rec->batch);
  sh->head = h;
  if (sh->head == sh->tail) {
    sh->base += sh->tail;
    sh->head = sh->tail = 0;
  } else if (sh->head > sh->cap / 2) {
    memmove(sh->ents, sh->ents + sh->head,
            (sh->tail - sh->head) * sizeof(*sh->ents));
    sh->base += sh->head;
    sh->tail -= sh->head;
    sh->head = 0;
  }
}

/* ======== Jobs ======== */

static void pump(struct shard *sh);
static void run_range(struct job *j);

static size_t range_end(const struct job *j)
{
  return j->stack[j->depth - 1].end;
}

static void job_free(struct job *j)
{
  j->lane->job = NULL;
  free(j->idx);
  free(j);
}

static void clear_wait(struct job *j)
{
  j->infra = 0;
  j->dest_fails = 0;
  j->why = KCLD_DISPATCHER_MOVING;
}

/* Records idx[pos..end) are dealt with: move on. */
static void complete_range(struct job *j)
{
  struct shard *sh = j->sh;
  size_t end = range_end(j);

  for (size_t i = j->pos; i < end; i++)
    ent(sh, j->idx[i])->done = 1;
  j->pos = end;
  j->depth--;
  j->retries = 0;
  clear_wait(j);
  advance(sh);
  if (j->depth == 0) {
    job_free(j);
    pump(sh);
    return;
  }
  run_range(j);
}

static void on_call_closed(uv_handle_t *h)
{
  struct call *c = h->data;
  struct kcld_dispatcher *disp = c->disp;
  for (size_t i = 0; i < c->n; i++)
    kcld_record_batch_release(c->ptrs[i]->batch);
  free(c->ptrs);
  free(c->shard_id);
  free(c->win_state);
  free(c->state);
  free(c);
  disp->live--;
  disp_free_maybe(disp);
}

static void call_free(struct call *c)
{
  uv_timer_stop(&c->timeout);
  uv_close((uv_handle_t *)&c->timeout, on_call_closed);
}

static void on_backoff(uv_timer_t *t);
static void give_up(struct job *j);

static void log_range(const struct job *j, enum kcld_log_level lvl,
                      const char *msg, const char *what)
{
  const struct kcld_record *first = ent(j->sh, j->idx[j->pos])->rec;
  kcld_log(lvl, msg, "shard", j->sh->shard_id, "sequence_number",
           first->sequence_number,
           KCLD_LOG_UINT("records", range_end(j) - j->pos),
           KCLD_LOG_UINT(j->infra ? "failures" : "retries",
                         j->infra ? j->infra : j->retries),
           "decision", what,
           "error_type", j->err_type, "error", j->err_msg, NULL);
}

/* Waits the backoff of `attempt`, then runs the range again (WAIT_BACKOFF)
 * or gives it up again (WAIT_GIVE_UP). */
static void wait_then(struct job *j, unsigned attempt, enum job_wait what)
{
  struct kcld_dispatcher *disp = j->sh->disp;
  j->wait = what;
  uv_timer_start(&j->lane->timer, on_backoff,
                 kcld_policy_backoff_ms(&disp->policy, attempt,
                                        kcld_rand_u32()), 0);
}

/* Counts what the policy needs to know about the range on top. */
static void describe(struct job *j, enum kcld_policy_class cls,
                     struct kcld_policy_failure *f)
{
  struct kcld_dispatcher *disp = j->sh->disp;
  size_t end = range_end(j);
  int64_t now = kcld_clock_wall_ms();
  int head = 1;

  memset(f, 0, sizeof(*f));
  f->count = end - j->pos;
  f->retries = j->retries;
  f->cls = cls;
  for (size_t i = j->pos; i < end; i++) {
    int old = kcld_policy_expired(&disp->policy,
                                  ent(j->sh, j->idx[i])->rec->arrival_ms,
                                  now);
    f->expired += (size_t)old;
    head = head && old;
    f->expired_head += (size_t)head;
  }
}

static void infra_wait(struct job *j)
{
  struct kcld_dispatcher *disp = j->sh->disp;

  disp->stats.batches_waited++;
  if (j->infra++ == 0)
    j->since = uv_now(disp->opts.loop);
  j->why = kcld_aws_error_is_throttling(j->err_type)
             ? KCLD_DISPATCHER_THROTTLED
             : KCLD_DISPATCHER_HANDLER_UNAVAILABLE;
  log_range(j, j->infra == 1 ? KCLD_LOG_WARN : KCLD_LOG_INFO,
            "handler unavailable (not a record failure); the shard waits and "
            "tries again", kcld_dispatcher_wait_name(j->why));
  wait_then(j, j->infra, WAIT_BACKOFF);
}

/* The range on top failed: ask the policy. */
static void range_failed(struct job *j, enum kcld_handler_failure_class cls,
                         const char *type, const char *msg)
{
  struct kcld_dispatcher *disp = j->sh->disp;
  struct kcld_policy_failure f;
  struct kcld_policy_decision dec;
  int infra = cls == KCLD_HANDLER_INFRA;

  snprintf(j->err_type, sizeof(j->err_type), "%s",
           type && *type ? type : "HandlerError");
  snprintf(j->err_msg, sizeof(j->err_msg), "%s", msg ? msg : "");
  disp->stats.batches_failed++;
  if (final_call(j)) { /* as Lambda: the shard waits until it succeeds */
    j->retries++;
    if (j->why != KCLD_DISPATCHER_RETRYING)
      j->since = uv_now(disp->opts.loop);
    j->why = KCLD_DISPATCHER_RETRYING;
    disp->stats.batches_retried++;
    kcld_log(KCLD_LOG_WARN, "window's final call failed; retrying", "shard",
             j->sh->shard_id, KCLD_LOG_UINT("retries", j->retries),
             "error_type", j->err_type, "error", j->err_msg, NULL);
    wait_then(j, j->retries, WAIT_BACKOFF);
    return;
  }
  if (infra && j->stack[j->depth - 1].invokes > 0)
    j->stack[j->depth - 1].invokes--; /* not an attempt on the records */
  describe(j, infra ? KCLD_POLICY_INFRA : KCLD_POLICY_RECORD, &f);
  dec = kcld_policy_decide(&disp->policy, &f);
  if (!infra) {
    j->infra = 0;
    j->dest_fails = 0;
  }
  switch (dec.action) {
  case KCLD_POLICY_BISECT: {
    unsigned inv = j->stack[j->depth - 1].invokes;
    clear_wait(j);
    disp->stats.batches_bisected++;
    log_range(j, KCLD_LOG_WARN, "handler failed; bisecting the batch",
              "bisect");
    if (j->depth >= MAX_DEPTH) { /* cannot happen below 2^63 records */
      give_up(j);
      return;
    }
    j->stack[j->depth].end = j->pos + kcld_policy_split(f.count);
    j->stack[j->depth].invokes = inv;
    j->depth++;
    j->retries = 0;
    run_range(j);
    return;
  }
  case KCLD_POLICY_RETRY:
    j->retries++;
    if (j->why != KCLD_DISPATCHER_RETRYING)
      j->since = uv_now(disp->opts.loop);
    j->why = KCLD_DISPATCHER_RETRYING;
    disp->stats.batches_retried++;
    log_range(j, KCLD_LOG_WARN, "handler failed; retrying", "retry");
    wait_then(j, j->retries, WAIT_BACKOFF);
    return;
  case KCLD_POLICY_WAIT:
    infra_wait(j);
    return;
  case KCLD_POLICY_GIVE_UP:
    j->condition = dec.condition;
    if (dec.give_up < f.count && j->depth < MAX_DEPTH) {
      /* Only the expired head goes; the rest waits on. */
      j->stack[j->depth].end = j->pos + dec.give_up;
      j->stack[j->depth].invokes = j->stack[j->depth - 1].invokes;
      j->depth++;
    }
    give_up(j);
    return;
  }
}

static void on_dlq_kept(size_t messages, void *arg)
{
  struct job *j = arg;
  struct kcld_dispatcher *disp = j->sh->disp;

  j->send = NULL;
  disp->stats.dlq_messages += messages;
  disp->stats.dlq_records += range_end(j) - j->pos;
  log_range(j, KCLD_LOG_WARN, "records sent to the dead-letter destination",
            kcld_policy_condition_name(j->condition));
  complete_range(j);
}

static void skip_range(struct job *j)
{
  struct kcld_dispatcher *disp = j->sh->disp;
  size_t end = range_end(j);

  for (size_t i = j->pos; i < end; i++) {
    const struct kcld_record *r = ent(j->sh, j->idx[i])->rec;
    kcld_log(KCLD_LOG_ERROR, "RECORD SKIPPED: failed for good and "
             "on_failure.discard is set", "shard", j->sh->shard_id,
             "sequence_number", r->sequence_number,
             KCLD_LOG_UINT("sub_sequence_number", r->sub_sequence_number),
             "partition_key", r->partition_key, "condition",
             kcld_policy_condition_name(j->condition), "error_type",
             j->err_type, "error", j->err_msg, NULL);
  }
  disp->stats.records_skipped += end - j->pos;
  disp->stats.records_given_up += end - j->pos;
  complete_range(j);
}

/* Hands the range on top to the destination; 0, or the send's error. */
static int send_range(struct job *j)
{
  struct kcld_dispatcher *disp = j->sh->disp;
  size_t n = range_end(j) - j->pos;
  const struct kcld_record **recs = malloc(n * sizeof(*recs));
  struct kcld_dlq_failure f;
  int rc;

  if (!recs)
    return KCLD_ENOMEM;
  for (size_t i = 0; i < n; i++)
    recs[i] = ent(j->sh, j->idx[j->pos + i])->rec;
  memset(&f, 0, sizeof(f));
  f.shard_id = j->sh->shard_id;
  f.records = recs;
  f.count = n;
  f.condition = j->condition;
  f.invoke_count = j->stack[j->depth - 1].invokes;
  f.error_type = j->err_type;
  f.error_message = j->err_msg;
  j->wait = WAIT_DLQ;
  rc = kcld_dlq_send(disp->opts.dlq, &f, on_dlq_kept, j, &j->send);
  free(recs);
  if (rc == 0)
    disp->stats.records_given_up += n;
  return rc;
}

/* The range on top is given up: blocked, to the destination, or skipped. */
static void give_up(struct job *j)
{
  struct kcld_dispatcher *disp = j->sh->disp;
  int rc;

  if (disp->opts.block_on_failure) {
    j->retries++;
    if (j->why != KCLD_DISPATCHER_RETRYING)
      j->since = uv_now(disp->opts.loop);
    j->why = KCLD_DISPATCHER_RETRYING;
    disp->stats.batches_retried++;
    log_range(j, KCLD_LOG_ERROR, "records failed for good and "
              "on_failure.block is set: the shard waits and retries them",
              "block");
    wait_then(j, j->retries, WAIT_BACKOFF);
    return;
  }
  if (!disp->opts.dlq) {
    skip_range(j);
    return;
  }
  if ((rc = send_range(j)) == 0)
    return;
  if (j->dest_fails++ == 0)
    j->since = uv_now(disp->opts.loop);
  j->why = KCLD_DISPATCHER_DESTINATION_UNAVAILABLE;
  kcld_log(KCLD_LOG_ERROR, "cannot hand records to the dead-letter "
           "destination; the shard waits", "shard", j->sh->shard_id,
           "error", kcld_strerror(rc), NULL);
  wait_then(j, j->dest_fails, WAIT_GIVE_UP);
}

static void on_backoff(uv_timer_t *t)
{
  struct lane *lane = t->data;
  struct job *j = lane->job;

  if (!j) { /* a window's end (window_turn) */
    pump(lane->sh);
    return;
  }
  if (j->wait == WAIT_GIVE_UP)
    give_up(j);
  else if (j->wait == WAIT_BACKOFF)
    run_range(j);
}

/* The window's part of an answer: a final call's success closes the
 * window; another call's state replaces the window's.  Returns 1 when the
 * answer goes on to the usual handling, 0 when it was dealt with here. */
static int window_answer(struct job *j, struct call *c)
{
  struct shard *sh = j->sh;
  const struct kcld_handler_result *res = &c->res;
  int handled = res->status == KCLD_HANDLER_OK ||
                (res->status == KCLD_HANDLER_PARTIAL &&
                 res->first_failed > 0 && res->first_failed < c->n);

  if (final_call(j) && res->status == KCLD_HANDLER_OK) {
    kcld_log(KCLD_LOG_INFO, "window closed", "shard", sh->shard_id,
             KCLD_LOG_INT("window_start_ms", sh->win.start_ms),
             KCLD_LOG_BOOL("terminated_early", j->early), NULL);
    kcld_window_close(&sh->win);
    job_free(j);
    sh->progress_due = sh->progress.set; /* the window's end is written */
    mark_dirty(sh);
    pump(sh);
    return 0;
  }
  if (final_call(j) || !handled)
    return 1;
  if (!res->state) {
    range_failed(j, KCLD_HANDLER_RECORD, "MissingState",
                 "with window.tumbling the answer must carry a state");
    return 0;
  }
  /* The answer's copy (queue_answer) becomes the window's state. */
  kcld_window_take_state(&sh->win, c->state, res->state_len);
  c->state = NULL;
  c->res.state = NULL;
  if (kcld_window_early(&sh->win))
    kcld_log(KCLD_LOG_WARN, "window state over 1 MiB: the window ends early",
             "shard", sh->shard_id, KCLD_LOG_UINT("bytes", res->state_len),
             NULL);
  return 1;
}

/* An answer taken off the queue (on_idle). */
static void act_on_answer(struct call *c)
{
  struct job *j = c->job;
  struct kcld_dispatcher *disp = c->disp;
  const struct kcld_handler_result *res = &c->res;
  size_t n = c->n;
  uint64_t bytes = c->bytes;

  c->job = NULL;
  if (!j) {
    call_free(c);
    return; /* late (timed out) or cancelled: ignored */
  }
  j->call = NULL;
  if (j->sh->win.tumbling_ms && !window_answer(j, c)) {
    call_free(c);
    return;
  }
  call_free(c);
  if (res->status == KCLD_HANDLER_OK) {
    disp->stats.batches_ok++;
    disp->stats.records_handled += n;
    disp->stats.bytes_handled += bytes;
    complete_range(j);
    return;
  }
  if (res->status == KCLD_HANDLER_PARTIAL && res->first_failed < n) {
    if (res->first_failed > 0) {
      disp->stats.records_handled += res->first_failed;
      for (size_t i = 0; i < res->first_failed; i++) {
        struct entry *e = ent(j->sh, j->idx[j->pos + i]);
        e->done = 1;
        disp->stats.bytes_handled += e->rec->data_len;
      }
      j->pos += res->first_failed;
      j->retries = 0;
      advance(j->sh);
    }
    range_failed(j, res->failure_class,
                 res->error_type ? res->error_type : "PartialFailure",
                 res->error_message);
    return;
  }
  if (res->status == KCLD_HANDLER_FAILED) {
    range_failed(j, res->failure_class, res->error_type, res->error_message);
    return;
  }
  range_failed(j, KCLD_HANDLER_RECORD, "HandlerInvalidAnswer",
               "the handler's answer was not OK, FAILED or a PARTIAL within "
               "the batch");
}

/* Queues an answer for on_idle: the handler may answer from inside its
 * process(), and the dispatcher never acts inside the handler's call. */
static void queue_answer(struct call *c, const struct kcld_handler_result *res)
{
  struct kcld_dispatcher *disp = c->disp;

  c->answered = 1;
  uv_timer_stop(&c->timeout);
  c->res = *res;
  snprintf(c->err_type, sizeof(c->err_type), "%s",
           res->error_type ? res->error_type : "");
  snprintf(c->err_msg, sizeof(c->err_msg), "%s",
           res->error_message ? res->error_message : "");
  c->res.error_type = res->error_type ? c->err_type : NULL;
  c->res.error_message = res->error_message ? c->err_msg : NULL;
  c->res.state = NULL;
  if (res->state && (c->state = malloc(res->state_len + 1))) {
    memcpy(c->state, res->state, res->state_len);
    c->state[res->state_len] = '\0';
    c->res.state = c->state;
  } else if (res->state) { /* kcld's failure, not the records' */
    c->res.status = KCLD_HANDLER_FAILED;
    c->res.failure_class = KCLD_HANDLER_INFRA;
    snprintf(c->err_type, sizeof(c->err_type), "HandlerError");
    snprintf(c->err_msg, sizeof(c->err_msg),
             "out of memory keeping the window state");
    c->res.error_type = c->err_type;
    c->res.error_message = c->err_msg;
  }
  c->next_answer = NULL;
  if (disp->answers_tail)
    disp->answers_tail->next_answer = c;
  else
    disp->answers = c;
  disp->answers_tail = c;
  wake(disp);
}

static void on_answer(const struct kcld_handler_result *res, void *arg)
{
  struct call *c = arg;
  struct kcld_dispatcher *disp = c->disp;

  if (c->answered) {
    kcld_log(KCLD_LOG_ERROR, "handler bug: a second answer for a batch",
             "shard", c->shard_id, NULL);
    return;
  }
  disp->calls--;
  if (disp->observer)
    disp->observer(disp->observer_arg,
                   (double)(uv_hrtime() - c->started_ns) / 1e9);
  queue_answer(c, res);
}

static void on_timeout(uv_timer_t *t)
{
  struct call *c = t->data;
  struct job *j = c->job;
  char ms[96];

  if (!j || c->answered)
    return;
  c->job = NULL; /* its answer, when it comes, is ignored */
  j->call = NULL;
  c->disp->stats.handler_timeouts++;
  snprintf(ms, sizeof(ms), "handler did not answer within %llu ms",
           (unsigned long long)c->disp->opts.handler_timeout_ms);
  range_failed(j, KCLD_HANDLER_RECORD, "HandlerTimeout", ms);
}

static struct call *call_new(struct job *j, size_t n)
{
  struct kcld_dispatcher *disp = j->sh->disp;
  struct call *c = calloc(1, sizeof(*c));

  const struct kcld_window *w = &j->sh->win;

  if (c) {
    c->ptrs = malloc((n ? n : 1) * sizeof(*c->ptrs));
    c->shard_id = strdup(j->sh->shard_id);
    if (w->tumbling_ms && (c->win_state = malloc(w->state_len + 1)))
      memcpy(c->win_state, w->state, w->state_len + 1);
  }
  if (!c || !c->ptrs || !c->shard_id ||
      (w->tumbling_ms && !c->win_state)) {
    if (c) {
      free(c->ptrs);
      free(c->shard_id);
      free(c->win_state);
    }
    free(c);
    return NULL;
  }
  if (w->tumbling_ms) {
    c->win.start_ms = w->start_ms;
    c->win.end_ms = w->start_ms + w->tumbling_ms;
    c->win.state = c->win_state;
    c->win.state_len = w->state_len;
    c->win.final = final_call(j);
    c->win.terminated_early = j->early;
  }
  for (size_t i = 0; i < n; i++) {
    c->ptrs[i] = ent(j->sh, j->idx[j->pos + i])->rec;
    c->bytes += c->ptrs[i]->data_len;
    kcld_record_batch_acquire(c->ptrs[i]->batch);
  }
  c->n = n;
  c->disp = disp;
  c->job = j;
  uv_timer_init(disp->opts.loop, &c->timeout);
  c->timeout.data = c;
  disp->live++;
  return c;
}

/* Sends the range on top to the handler. */
static void run_range(struct job *j)
{
  struct shard *sh = j->sh;
  struct kcld_dispatcher *disp = sh->disp;
  size_t n = range_end(j) - j->pos;
  struct kcld_handler_batch b;
  struct call *c = call_new(j, n);
  int rc;

  if (!c) { /* out of memory: try again later */
    wait_then(j, 1, WAIT_BACKOFF);
    return;
  }
  j->wait = WAIT_CALL;
  j->call = c;
  j->stack[j->depth - 1].invokes++;
  memset(&b, 0, sizeof(b));
  b.shard_id = c->shard_id;
  b.records = c->ptrs;
  b.count = n;
  b.millis_behind_latest = sh->millis_behind;
  b.attempt = j->retries + 1;
  b.window = sh->win.tumbling_ms ? &c->win : NULL;
  disp->stats.handler_calls++;
  disp->calls++;
  uv_timer_start(&c->timeout, on_timeout, disp->opts.handler_timeout_ms, 0);
  c->started_ns = uv_hrtime();
  rc = kcld_handler_process(disp->opts.handler, &b, on_answer, c);
  if (rc != 0) {
    struct kcld_handler_result res = {
      .status = KCLD_HANDLER_FAILED, .failure_class = KCLD_HANDLER_INFRA,
      .error_type = "HandlerUnavailable", .error_message = kcld_strerror(rc)};
    disp->calls--;
    queue_answer(c, &res);
  }
}

/* Starts a job of the next `count` waiting records of the lane; count 0
 * is the window's final call (terminated early when `early`). */
static void start_job(struct lane *lane, size_t count, int early)
{
  struct shard *sh = lane->sh;
  struct job *j = calloc(1, sizeof(*j));

  if (j)
    j->idx = malloc((count ? count : 1) * sizeof(*j->idx));
  if (!j || !j->idx) {
    free(j);
    return; /* pump runs again on the next event */
  }
  j->early = early;
  memcpy(j->idx, lane->pend + lane->pstart, count * sizeof(*j->idx));
  lane->pstart += count;
  if (lane->pstart == lane->pend_n)
    lane->pstart = lane->pend_n = 0;
  j->sh = sh;
  j->lane = lane;
  j->n = count;
  j->stack[0].end = count;
  j->depth = 1;
  lane->job = j;
  run_range(j);
}

static size_t lane_waiting(const struct lane *l)
{
  return l->pend_n - l->pstart;
}

static int64_t window_of(struct shard *sh, uint64_t g, int64_t now)
{
  return kcld_window_start_of(&sh->win, ent(sh, g)->rec->arrival_ms, now);
}

/* Windows (one lane): starts the open window's final call when it is due
 * and returns 1.  Else 0, with *cut the most records the next batch may
 * take (those of one window: a batch never spans two) and *go set when a
 * record of the next window waits behind them, so the batch cannot grow. */
static int window_turn(struct shard *sh, struct lane *l, size_t *cut,
                       int *go)
{
  struct kcld_window *win = &sh->win;
  int64_t now = kcld_clock_wall_ms(), ws, end = win->start_ms +
                                                win->tumbling_ms;
  size_t w = lane_waiting(l), n = 1;
  int early = kcld_window_early(win);

  if (w == 0) {
    if (!win->open || sh->head != sh->tail)
      return 0;
    if (early || sh->ended) {
      start_job(l, 0, early || now < end);
      return 1;
    }
    /* Closed by the clock once the shard has caught up: a later record
     * of this window can no longer come. */
    if (now >= end &&
        (sh->cancelled || kcld_shard_consumer_millis_behind(sh->consumer) <=
                            0)) {
      start_job(l, 0, 0);
      return 1;
    }
    uv_timer_start(&l->timer, on_backoff,
                   now >= end ? 1000 : (uint64_t)(end - now), 0);
    return 0;
  }
  ws = window_of(sh, l->pend[l->pstart], now);
  if (win->open && (ws != win->start_ms || early)) {
    start_job(l, 0, early);
    return 1;
  }
  if (!win->open && kcld_window_begin(win, ws) != 0) {
    *cut = 0; /* out of memory: pump runs again on the next event */
    return 0;
  }
  while (n < w && n < *cut && window_of(sh, l->pend[l->pstart + n], now) ==
                                ws)
    n++;
  if (n < w && n < *cut)
    *go = 1;
  *cut = n;
  return 0;
}

/* Starts what can start, arms the window, hands back the delivery when no
 * full batch waits, and closes the shard when nothing is left. */
static void pump(struct shard *sh)
{
  struct kcld_dispatcher *disp = sh->disp;
  size_t bs = disp->opts.batch_size;
  uint64_t now = uv_now(disp->opts.loop);
  int partial_waits = 0, full_waits = 0, busy = 0;

  if (sh->closing)
    return;
  for (unsigned i = 0; i < sh->nlanes; i++) {
    struct lane *l = &sh->lanes[i];
    size_t w = lane_waiting(l), cut = bs;
    int go = 0;
    if (!l->job && sh->win.tumbling_ms && window_turn(sh, l, &cut, &go))
      w = 0; /* the final call goes first */
    if (!l->job && cut > 0 && (w >= bs || go)) {
      start_job(l, cut < bs ? cut : bs, 0);
      w = lane_waiting(l);
    }
    if (!l->job && w > 0 && cut > 0 &&
        (disp->opts.window_ms == 0 || sh->ended || disp->flushing ||
         (sh->window_deadline && now >= sh->window_deadline))) {
      start_job(l, w < cut ? w : cut, 0);
      w = lane_waiting(l);
    }
    if (w >= bs)
      full_waits = 1;
    else if (w > 0)
      partial_waits = 1;
    if (l->job)
      busy = 1;
  }
  if (partial_waits || full_waits) {
    if (!sh->window_deadline && disp->opts.window_ms) {
      sh->window_deadline = now + disp->opts.window_ms;
      uv_timer_start(&sh->window, on_window, disp->opts.window_ms, 0);
    }
  } else {
    sh->window_deadline = 0;
    uv_timer_stop(&sh->window);
  }
  if (sh->held && !full_waits) {
    sh->done_due = sh->held;
    sh->held = NULL;
    mark_dirty(sh);
  }
  if (!busy && !partial_waits && !full_waits && !sh->held &&
      sh->head == sh->tail && !sh->win.open)
    shard_close(sh);
}

static void on_window(uv_timer_t *t)
{
  pump(t->data);
}

/* ======== The loop callback ======== */

static void on_idle(uv_idle_t *h)
{
  struct kcld_dispatcher *disp = h->data;
  struct call *a = disp->answers;
  struct shard *sh;

  disp->answers = disp->answers_tail = NULL;
  while (a) {
    struct call *next = a->next_answer;
    act_on_answer(a);
    a = next;
  }
  sh = disp->dirty;
  disp->dirty = disp->dirty_tail = NULL;
  while (sh) {
    struct shard *next = sh->next_dirty;
    sh->in_dirty = 0;
    emit(sh);
    sh = next;
  }
  if (!disp->answers && !disp->dirty) {
    uv_idle_stop(&disp->idle);
    disp->idle_on = 0;
    disp_free_maybe(disp);
  }
}

/* ======== The sink ======== */

/* The sink's keep test, on the worker pool: 0 when the filter drops r; a
 * filter that runs out of memory keeps it.  The filter is immutable. */
static int keep_record(const void *filter, const struct kcld_record *r)
{
  return kcld_filter_match(filter, r) != 0;
}

/* Queues the delivery's records: each kept one on its lane, each filtered
 * one (r->filtered, set by keep_record as it was parsed) dealt with at
 * once. */
static int append(struct shard *sh, struct kcld_shard_delivery *d)
{
  size_t need = sh->tail + d->count, filtered = 0;

  if (need > sh->cap) {
    size_t cap = sh->cap ? sh->cap : 256;
    while (cap < need)
      cap *= 2;
    struct entry *e = realloc(sh->ents, cap * sizeof(*e));
    if (!e)
      return KCLD_ENOMEM;
    sh->ents = e;
    sh->cap = cap;
  }
  for (unsigned i = 0; i < sh->nlanes; i++) { /* room first: no undo */
    struct lane *l = &sh->lanes[i];
    size_t lneed = l->pend_n + d->count;
    if (lneed > l->pend_cap) {
      size_t cap = l->pend_cap ? l->pend_cap : 256;
      while (cap < lneed)
        cap *= 2;
      uint64_t *p = realloc(l->pend, cap * sizeof(*p));
      if (!p)
        return KCLD_ENOMEM;
      l->pend = p;
      l->pend_cap = cap;
    }
  }
  for (size_t i = 0; i < d->count; i++) {
    const struct kcld_record *r = &d->records[i];
    int keep = !r->filtered;
    kcld_record_batch_acquire(r->batch);
    sh->ents[sh->tail].rec = r;
    sh->ents[sh->tail].done = !keep;
    if (keep) {
      struct lane *l =
        &sh->lanes[sh->nlanes > 1 ? key_lane(r, sh->nlanes) : 0];
      l->pend[l->pend_n++] = sh->base + sh->tail;
    } else {
      filtered++;
    }
    sh->tail++;
  }
  if (filtered) { /* dealt with already: the checkpoint may move */
    sh->disp->stats.records_filtered += filtered;
    advance(sh);
  }
  return 0;
}

static int deliver(void *impl, struct kcld_shard_delivery *d)
{
  struct kcld_dispatcher *disp = impl;
  struct shard *sh;
  int rc;

  if (disp->closing)
    return KCLD_ECANCELED;
  sh = shard_find(disp, d->consumer);
  if (!sh && !(sh = shard_new(disp, d)))
    return KCLD_ENOMEM;
  if (sh->held || sh->done_due) { /* the consumer broke its contract */
    kcld_log(KCLD_LOG_ERROR, "delivery while the previous one is held",
             "shard", sh->shard_id, NULL);
    return KCLD_EINVAL;
  }
  if ((rc = append(sh, d)) != 0) {
    pump(sh);
    return rc;
  }
  sh->held = d;
  sh->millis_behind = d->millis_behind_latest;
  if (d->count && d->batch && d->batch->shard_end &&
      &d->records[d->count - 1] == &d->batch->records[d->batch->count - 1])
    sh->ended = 1;
  pump(sh);
  return 0;
}

static void cancel(void *impl, struct kcld_shard_consumer *c)
{
  struct kcld_dispatcher *disp = impl;
  struct shard *sh = shard_find(disp, c);

  if (!sh)
    return;
  for (unsigned i = 0; i < sh->nlanes; i++) {
    struct job *j = sh->lanes[i].job;
    if (!j)
      continue;
    if (j->call)
      j->call->job = NULL; /* freed when the handler answers */
    if (j->send)
      kcld_dlq_send_cancel(j->send);
    job_free(j);
  }
  sh->cancelled = 1;
  sh->progress_due = 0;
  shard_close(sh);
}

/* ======== Interface ======== */

int kcld_dispatcher_configure(struct kcld_dispatcher *d,
                              const struct kcld_dispatcher_opts *o)
{
  struct kcld_dispatcher_opts *c = &d->opts;
  if (o->batch_size == 0 || o->parallelization == 0 ||
      o->parallelization > MAX_LANES || o->backoff_base_ms == 0 ||
      o->backoff_max_ms < o->backoff_base_ms ||
      (c->tumbling_ms && o->parallelization > 1) ||
      (!o->block_on_failure && !c->dlq && !c->discard))
    return KCLD_EINVAL;
  c->batch_size = o->batch_size;
  c->window_ms = o->window_ms;
  c->parallelization = o->parallelization;
  c->max_retry_attempts = o->max_retry_attempts;
  c->bisect_on_error = o->bisect_on_error;
  c->max_record_age_ms = o->max_record_age_ms;
  c->backoff_base_ms = o->backoff_base_ms;
  c->backoff_max_ms = o->backoff_max_ms;
  c->block_on_failure = o->block_on_failure;
  d->policy.max_retry_attempts = c->max_retry_attempts;
  d->policy.bisect_on_error = c->bisect_on_error;
  d->policy.max_record_age_ms = c->max_record_age_ms;
  d->policy.backoff_base_ms = c->backoff_base_ms;
  d->policy.backoff_max_ms = c->backoff_max_ms;
  return 0;
}

int kcld_dispatcher_new(const struct kcld_dispatcher_opts *opts,
                        struct kcld_dispatcher **out)
{
  struct kcld_dispatcher *d;

  if (!opts || !opts->loop || !opts->handler || !out ||
      opts->handler_timeout_ms == 0)
    return KCLD_EINVAL;
  d = calloc(1, sizeof(*d));
  if (!d)
    return KCLD_ENOMEM;
  d->opts = *opts;
  if (kcld_dispatcher_configure(d, opts) != 0) {
    free(d);
    return KCLD_EINVAL;
  }
  uv_idle_init(opts->loop, &d->idle);
  d->idle.data = d;
  d->live = 1;
  *out = d;
  return 0;
}

struct kcld_shard_sink kcld_dispatcher_sink(struct kcld_dispatcher *d)
{
  struct kcld_shard_sink s = {.deliver = deliver, .cancel = cancel,
                              .closed = cancel, .impl = d};
  if (d->opts.filter) {
    s.keep = keep_record;
    s.keep_arg = d->opts.filter;
  }
  return s;
}

void kcld_dispatcher_stats(const struct kcld_dispatcher *d,
                           struct kcld_dispatcher_stats *out)
{
  *out = d->stats;
  out->in_flight = d->active + d->calls;
}

void kcld_dispatcher_shard_state(const struct kcld_dispatcher *d,
                                 const char *shard_id,
                                 struct kcld_dispatcher_shard_state *out)
{
  memset(out, 0, sizeof(*out));
  for (const struct shard *sh = d->shards; sh; sh = sh->next) {
    if (strcmp(sh->shard_id, shard_id) != 0)
      continue;
    for (unsigned i = 0; i < sh->nlanes; i++) {
      const struct job *j = sh->lanes[i].job;
      enum kcld_dispatcher_wait w;
      uint64_t since;
      unsigned fails;
      const char *err = NULL;
      if (!j)
        continue;
      w = j->why;
      since = j->since;
      fails = j->infra ? j->infra : j->dest_fails ? j->dest_fails
                                                  : j->retries;
      if (j->wait == WAIT_DLQ && j->send &&
          (fails = kcld_dlq_send_failing(j->send, &since, &err)) > 0)
        w = KCLD_DISPATCHER_DESTINATION_UNAVAILABLE;
      if (w == KCLD_DISPATCHER_MOVING || w < out->wait ||
          (w == out->wait && since >= out->since_ms))
        continue;
      out->wait = w;
      out->since_ms = since;
      out->failures = fails;
      snprintf(out->error_type, sizeof(out->error_type), "%s",
               err ? "" : j->err_type);
      snprintf(out->error, sizeof(out->error), "%s", err ? err : j->err_msg);
    }
  }
}

const char *kcld_dispatcher_wait_name(enum kcld_dispatcher_wait w)
{
  switch (w) {
  case KCLD_DISPATCHER_RETRYING:
    return "retrying";
  case KCLD_DISPATCHER_THROTTLED:
    return "throttled";
  case KCLD_DISPATCHER_HANDLER_UNAVAILABLE:
    return "handler_unavailable";
  case KCLD_DISPATCHER_DESTINATION_UNAVAILABLE:
    return "destination_unavailable";
  case KCLD_DISPATCHER_MOVING:
    break;
  }
  return "";
}

void kcld_dispatcher_set_observer(struct kcld_dispatcher *d,
                                  kcld_dispatcher_observer_fn fn, void *arg)
{
  if (!d)
    return;
  d->observer = fn;
  d->observer_arg = fn ? arg : NULL;
}

void kcld_dispatcher_flush(struct kcld_dispatcher *d)
{
  d->flushing = 1;
  for (struct shard *sh = d->shards, *next; sh; sh = next) {
    next = sh->next;
    pump(sh);
  }
}

void kcld_dispatcher_close(struct kcld_dispatcher *d)
{
  if (!d)
    return;
  d->closing = 1;
  while (d->shards) /* consumers gone without cancel: drop their work */
    cancel(d, d->shards->consumer);
  disp_free_maybe(d);
}
