/* checkpoint.c — one shard's checkpoint: coalescing, one write in flight,
 * retries with backoff, flushes, and never a position past what was
 * reported.  See checkpoint.h for the contract. */
#include "consume/checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/backoff.h"
#include "base/seq.h"
#include "consume/record.h"
#include "err.h"
#include "log.h"

#define RETRY_MIN_MS 500
#define RETRY_MAX_MS 30000

/* One kcld_checkpoint_flush() waiting for its position to be written. */
struct waiter {
  struct waiter *next;
  char seq[KCLD_SEQ_MAX + 1];
  uint64_t sub;
  uint64_t wgen;             /* the window text's generation then */
  kcld_lease_cb cb;
  void *arg;
};

struct kcld_checkpoint {
  uv_timer_t timer;          /* the interval wait or the retry backoff */
  uv_loop_t *loop;
  char *shard_id;
  uint64_t interval_ms;
  uint64_t retry_min_ms;
  uint64_t retry_max_ms;
  kcld_checkpoint_write_fn write;
  kcld_checkpoint_write_window_fn write_window;
  void *write_ctx;
  char *window;              /* the last window text reported, or NULL */
  uint64_t wgen, wgen_written, wgen_inflight; /* its generations */
  void (*lost_cb)(void *arg);
  void *arg;

  struct kcld_seq_pos handled;  /* highest position reported */
  struct kcld_seq_pos written;  /* last position known to be stored */
  struct kcld_seq_pos inflight; /* the write in flight (set = one in flight) */
  struct waiter *waiters;    /* flushes, in call order */

  int timer_armed;
  unsigned failures_in_row;  /* transient failures since the last success */
  uint64_t last_start_ms;    /* uv_now when the last write started */
  int started;               /* a write has started at least once */
  int lost;                  /* KCLD_ELOST seen or kcld_checkpoint_lose */
  int closing;
  int timer_closed;
  struct kcld_checkpoint_stats stats;
};

/* A reported position is beyond what is stored (a write in flight does not
 * count as stored). */
static int dirty(const struct kcld_checkpoint *cp)
{
  if (cp->wgen != cp->wgen_written && (cp->handled.set || cp->written.set))
    return 1;
  if (!cp->handled.set)
    return 0;
  if (!cp->written.set)
    return 1;
  return kcld_seq_pos_compare(&cp->handled, cp->written.seq,
                              cp->written.sub) > 0;
}

static void maybe_free(struct kcld_checkpoint *cp)
{
  if (!cp->closing || !cp->timer_closed || cp->inflight.set)
    return;
  free(cp->window);
  free(cp->shard_id);
  free(cp);
}

static void on_timer_closed(uv_handle_t *h)
{
  struct kcld_checkpoint *cp = h->data;
  cp->timer_closed = 1;
  maybe_free(cp);
}

static void on_timer(uv_timer_t *t);

static void arm(struct kcld_checkpoint *cp, uint64_t ms)
{
  uv_timer_start(&cp->timer, on_timer, ms, 0);
  cp->timer_armed = 1;
}

static void disarm(struct kcld_checkpoint *cp)
{
  if (cp->timer_armed)
    uv_timer_stop(&cp->timer);
  cp->timer_armed = 0;
}

static uint64_t retry_delay(struct kcld_checkpoint *cp)
{
  struct kcld_backoff b = {cp->retry_min_ms, cp->retry_max_ms,
                           KCLD_BACKOFF_EQUAL};
  return kcld_backoff_ms(&b, cp->failures_in_row);
}

/* Detaches every waiter and fails it with err. */
static void fail_waiters(struct kcld_checkpoint *cp, int err)
{
  struct waiter *w = cp->waiters;
  cp->waiters = NULL;
  while (w) {
    struct waiter *next = w->next;
    kcld_lease_cb cb = w->cb;
    void *arg = w->arg;
    free(w);
    cb(err, arg);
    w = next;
  }
}

/* Completes, one at a time, the waiters whose position is stored.  A
 * callback may flush again or close; both are handled by rescanning. */
static void complete_waiters(struct kcld_checkpoint *cp)
{
  for (;;) {
    struct waiter **pw = &cp->waiters;
    while (*pw && !(cp->written.set && cp->wgen_written >= (*pw)->wgen &&
                    kcld_seq_position_compare((*pw)->seq, (*pw)->sub,
                                              cp->written.seq,
                                              cp->written.sub) <= 0))
      pw = &(*pw)->next;
    if (*pw == NULL || cp->closing || cp->lost)
      return;
    struct waiter *w = *pw;
    *pw = w->next;
    kcld_lease_cb cb = w->cb;
    void *arg = w->arg;
    free(w);
    cb(0, arg);
  }
}

static void on_written(int err, void *arg);

/* Starts a write of the handled position if one is due.  bypass_timer: a
 * flush cuts a pending wait short; bypass_interval: write even when the last
 * write started less than an interval ago. */
static void try_write(struct kcld_checkpoint *cp, int bypass_timer,
                      int bypass_interval)
{
  if (cp->lost || cp->closing || cp->inflight.set || !dirty(cp))
    return;
  if (cp->timer_armed) {
    if (!bypass_timer)
      return;
    disarm(cp);
  }
  uint64_t now = uv_now(cp->loop);
  if (!bypass_interval && cp->interval_ms > 0 && cp->started &&
      now - cp->last_start_ms < cp->interval_ms) {
    arm(cp, cp->interval_ms - (now - cp->last_start_ms));
    return;
  }
  cp->inflight = cp->handled.set ? cp->handled : cp->written;
  cp->wgen_inflight = cp->wgen;
  cp->last_start_ms = now;
  cp->started = 1;
  cp->stats.writes++;
  /* The writer may call back before it returns: on_written copes. */
  if (cp->write_window && cp->window)
    cp->write_window(cp->write_ctx, cp->shard_id, cp->inflight.seq,
                     cp->inflight.sub, cp->window, on_written, cp);
  else
    cp->write(cp->write_ctx, cp->shard_id, cp->inflight.seq,
              cp->inflight.sub, on_written, cp);
}

static void on_timer(uv_timer_t *t)
{
  struct kcld_checkpoint *cp = t->data;
  cp->timer_armed = 0;
  try_write(cp, 0, 1);
}

static void on_written(int err, void *arg)
{
  struct kcld_checkpoint *cp = arg;
  struct kcld_seq_pos done = cp->inflight;
  cp->inflight.set = 0;
  if (cp->closing) {
    maybe_free(cp);
    return;
  }
  if (cp->lost)
    return;
  if (err == 0) {
    cp->written = done;
    cp->wgen_written = cp->wgen_inflight;
    cp->stats.written++;
    cp->stats.written_ms = uv_now(cp->loop);
    cp->failures_in_row = 0;
    complete_waiters(cp);
    if (!cp->closing && !cp->lost)
      try_write(cp, 0, cp->waiters != NULL);
    return;
  }
  if (err == KCLD_ELOST) {
    cp->lost = 1;
    disarm(cp);
    kcld_log(KCLD_LOG_WARN, "checkpoint refused: the lease is lost",
             "shard", cp->shard_id, "sequence", done.seq, NULL);
    fail_waiters(cp, KCLD_ELOST);
    if (cp->lost_cb && !cp->closing)
      cp->lost_cb(cp->arg);
    return;
  }
  cp->stats.failures++;
  cp->failures_in_row++;
  uint64_t delay = retry_delay(cp);
  char ms[32], sub[32];
  snprintf(ms, sizeof(ms), "%llu", (unsigned long long)delay);
  snprintf(sub, sizeof(sub), "%llu", (unsigned long long)done.sub);
  kcld_log(KCLD_LOG_WARN, "checkpoint write failed; will retry",
           "shard", cp->shard_id, "sequence", done.seq, "sub", sub,
           "error", kcld_strerror(err), "retry_ms", ms, NULL);
  arm(cp, delay);
}

int kcld_checkpoint_new(const struct kcld_checkpoint_opts *opts,
                        struct kcld_checkpoint **out)
{
  if (out)
    *out = NULL;
  if (!opts || !out || !opts->loop || !opts->shard_id || !opts->write)
    return KCLD_EINVAL;
  if (opts->written_sequence && !kcld_seq_valid(opts->written_sequence))
    return KCLD_EINVAL;
  struct kcld_checkpoint *cp = calloc(1, sizeof(*cp));
  if (!cp)
    return KCLD_ENOMEM;
  cp->shard_id = strdup(opts->shard_id);
  if (!cp->shard_id) {
    free(cp);
    return KCLD_ENOMEM;
  }
  cp->loop = opts->loop;
  cp->interval_ms = opts->interval_ms;
  cp->retry_min_ms = opts->retry_min_ms ? opts->retry_min_ms : RETRY_MIN_MS;
  cp->retry_max_ms = opts->retry_max_ms ? opts->retry_max_ms : RETRY_MAX_MS;
  if (cp->retry_max_ms < cp->retry_min_ms)
    cp->retry_max_ms = cp->retry_min_ms;
  cp->write = opts->write;
  cp->write_window = opts->write_window;
  cp->write_ctx = opts->write_ctx;
  cp->lost_cb = opts->lost;
  cp->arg = opts->arg;
  if (opts->written_sequence)
    kcld_seq_pos_set(&cp->written, opts->written_sequence, opts->written_sub);
  uv_timer_init(opts->loop, &cp->timer);
  cp->timer.data = cp;
  *out = cp;
  return 0;
}

/* Whether pos is set and at or past (sequence, sub). */
static int covers(const struct kcld_seq_pos *pos, const char *sequence,
                  uint64_t sub)
{
  return pos->set && kcld_seq_pos_compare(pos, sequence, sub) >= 0;
}

/* Moves `handled` up to (sequence, sub) when that is past what is handled
 * and written, and starts a write when it moved or the window text changed
 * (`changed`): never a position behind the last one written. */
static int advance(struct kcld_checkpoint *cp, const char *sequence,
                   uint64_t sub, int changed)
{
  if (cp->closing)
    return KCLD_ECANCELED;
  if (cp->lost)
    return KCLD_ELOST;
  if (!kcld_seq_valid(sequence))
    return KCLD_EINVAL;
  if (!covers(&cp->handled, sequence, sub) &&
      !covers(&cp->written, sequence, sub))
    kcld_seq_pos_set(&cp->handled, sequence, sub);
  else if (!changed)
    return 0;
  try_write(cp, 0, cp->waiters != NULL);
  return 0;
}

int kcld_checkpoint_progress(struct kcld_checkpoint *cp, const char *sequence,
                             uint64_t sub)
{
  return advance(cp, sequence, sub, 0);
}

int kcld_checkpoint_progress_window(struct kcld_checkpoint *cp,
                                    const char *sequence, uint64_t sub,
                                    const char *window)
{
  if (!window || !cp->write_window || cp->closing || cp->lost ||
      (cp->window && strcmp(cp->window, window) == 0))
    return advance(cp, sequence, sub, 0);
  if (!kcld_seq_valid(sequence))
    return KCLD_EINVAL;
  char *copy = strdup(window);
  if (!copy)
    return KCLD_ENOMEM;
  free(cp->window);
  cp->window = copy;
  cp->wgen++;
  return advance(cp, sequence, sub, 1);
}

void kcld_checkpoint_flush(struct kcld_checkpoint *cp, kcld_lease_cb cb,
                           void *arg)
{
  if (cp->closing) {
    cb(KCLD_ECANCELED, arg);
    return;
  }
  if (cp->lost) {
    cb(KCLD_ELOST, arg);
    return;
  }
  if (!dirty(cp)) {
    cb(0, arg);
    return;
  }
  struct waiter *w = calloc(1, sizeof(*w));
  if (!w) {
    cb(KCLD_ENOMEM, arg);
    return;
  }
  snprintf(w->seq, sizeof(w->seq), "%s",
           cp->handled.set ? cp->handled.seq : cp->written.seq);
  w->sub = cp->handled.set ? cp->handled.sub : cp->written.sub;
  w->wgen = cp->wgen;
  w->cb = cb;
  w->arg = arg;
  struct waiter **pw = &cp->waiters;
  while (*pw)
    pw = &(*pw)->next;
  *pw = w;
  try_write(cp, 1, 1);
}

void kcld_checkpoint_lose(struct kcld_checkpoint *cp)
{
  if (cp->closing || cp->lost)
    return;
  cp->lost = 1;
  disarm(cp);
  fail_waiters(cp, KCLD_ELOST);
}

int kcld_checkpoint_handled(const struct kcld_checkpoint *cp,
                            const char **sequence, uint64_t *sub)
{
  if (!cp->handled.set)
    return 0;
  if (sequence)
    *sequence = cp->handled.seq;
  if (sub)
    *sub = cp->handled.sub;
  return 1;
}

int kcld_checkpoint_written(const struct kcld_checkpoint *cp,
                            const char **sequence, uint64_t *sub)
{
  if (!cp->written.set)
    return 0;
  if (sequence)
    *sequence = cp->written.seq;
  if (sub)
    *sub = cp->written.sub;
  return 1;
}

int kcld_checkpoint_pending(const struct kcld_checkpoint *cp)
{
  return dirty(cp);
}

const char *kcld_checkpoint_waits(const struct kcld_checkpoint *cp)
{
  if (cp->closing)
    return "closed";
  if (cp->lost)
    return "lost";
  if (cp->inflight.set)
    return "a write in flight";
  if (cp->timer_armed)
    return cp->failures_in_row ? "a retry's backoff"
                               : "the checkpoint interval";
  return dirty(cp) ? "a write not started" : "nothing";
}

void kcld_checkpoint_stats(const struct kcld_checkpoint *cp,
                           struct kcld_checkpoint_stats *out)
{
  *out = cp->stats;
}

void kcld_checkpoint_close(struct kcld_checkpoint *cp)
{
  if (!cp || cp->closing)
    return;
  cp->closing = 1;
  disarm(cp);
  fail_waiters(cp, KCLD_ECANCELED);
  uv_close((uv_handle_t *)&cp->timer, on_timer_closed);
}
