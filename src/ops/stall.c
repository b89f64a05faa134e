/* stall.c — the stall detector: judges each held shard and the lease
 * layer's reports, keeps the shards that are stalled (or, for the lease
 * layer, about to be), and logs them.  See stall.h. */
#include "ops/stall.h"

#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"

#define LOG_EVERY_MS 60000
#define MIN_PERIOD_MS 100
#define MAX_PERIOD_MS 5000

/* ======== The judgement ======== */

/* `since` is set and `span` has passed since it. */
static int lasted(uint64_t now, uint64_t since, uint64_t span)
{
  return since != 0 && now >= since && now - since >= span;
}

static const char *fetch_reason(int failing)
{
  switch (failing) {
  case KCLD_SHARD_FETCH_THROTTLED: return KCLD_STALL_THROTTLED;
  case KCLD_SHARD_FETCH_NO_ITERATOR: return KCLD_STALL_NO_ITERATOR;
  default: return KCLD_STALL_FETCH_ERROR;
  }
}

const char *kcld_stall_judge(const struct kcld_shard_consumer_stats *st,
                             const struct kcld_stall_hold *hold, uint64_t now,
                             uint64_t stuck_ms, uint64_t grace_ms,
                             uint64_t *since_ms, const char **detail)
{
  *detail = NULL;
  if (lasted(now, st->pending_since_ms, stuck_ms + grace_ms)) {
    *since_ms = st->pending_since_ms;
    if (hold && hold->reason) {
      *detail = hold->error;
      return hold->reason;
    }
    return KCLD_STALL_NO_PROGRESS;
  }
  if (!lasted(now, st->fetch_ms, stuck_ms))
    return NULL;
  *since_ms = st->fetch_ms;
  if (st->fetch_failing != KCLD_SHARD_FETCH_OK) {
    *detail = st->fetch_error;
    return fetch_reason(st->fetch_failing);
  }
  if (st->millis_behind_latest > 0)
    return KCLD_STALL_NO_PROGRESS;
  return NULL;
}

/* ======== State ======== */

/* A shard reported in a check: stalled, or (the lease layer's) on its way
 * to it.  Found by shard id in a tree, listed for the sweep. */
struct item {
  struct item *next;
  char *shard_id;
  char reason[40];
  char detail[200];
  uint64_t since_ms;     /* no progress since (loop ms) */
  uint64_t logged_ms;    /* the last "shard stalled" line; 0: due now */
  uint64_t seen;         /* the check that last reported it */
  int lease;             /* the reason is the lease layer's */
  int stalled;           /* as of the last check */
};

struct kcld_stall {
  uv_loop_t *loop;
  uv_timer_t timer;
  uint64_t stuck_ms, grace_ms;
  kcld_stall_walk_fn walk;
  void *arg;
  struct item *entries;
  void *by_id;           /* tsearch root */
  uint64_t checks;       /* checks done (the current one during a walk) */
  size_t stalled;
  int in_check;
};

struct kcld_stall_visit {
  struct kcld_stall *s;
  uint64_t now;
};

static int item_cmp(const void *a, const void *b)
{
  return strcmp(((const struct item *)a)->shard_id,
                ((const struct item *)b)->shard_id);
}

static struct item *item_get(struct kcld_stall *s, const char *id)
{
  struct item key, *e, **found;
  key.shard_id = (char *)id;
  found = tfind(&key, &s->by_id, item_cmp);
  if (found)
    return *found;
  e = calloc(1, sizeof(*e));
  if (!e || !(e->shard_id = strdup(id))) {
    free(e);
    return NULL;
  }
  if (!tsearch(e, &s->by_id, item_cmp)) {
    free(e->shard_id);
    free(e);
    return NULL;
  }
  e->next = s->entries;
  s->entries = e;
  return e;
}

static void item_free(struct kcld_stall *s, struct item *e)
{
  tdelete(e, &s->by_id, item_cmp);
  free(e->shard_id);
  free(e);
}

/* ======== Visits ======== */

/* Records that shard `id` is stalled (or, for the lease layer, kept) for
 * `reason` in this check. */
static void note(struct kcld_stall_visit *v, const char *id,
                 const char *reason, uint64_t since_ms, const char *detail,
                 int lease)
{
  struct kcld_stall *s = v->s;
  struct item *e = item_get(s, id);
  if (!e)
    return;
  if (e->seen == s->checks && e->lease && !lease)
    return; /* the lease layer's reason wins */
  if (strcmp(e->reason, reason) != 0) {
    snprintf(e->reason, sizeof(e->reason), "%s", reason);
    e->logged_ms = 0; /* a new reason is logged at once */
    if (!e->stalled)
      e->since_ms = 0;
  }
  if (!lease)
    e->since_ms = since_ms;
  else if (!e->since_ms)
    e->since_ms = since_ms ? since_ms : v->now;
  e->lease = lease;
  e->seen = s->checks;
  snprintf(e->detail, sizeof(e->detail), "%s", detail ? detail : "");
}

void kcld_stall_visit_shard(struct kcld_stall_visit *v, const char *shard_id,
                            const struct kcld_shard_consumer_stats *st,
                            const struct kcld_stall_hold *hold)
{
  uint64_t since = 0;
  const char *detail;
  const char *reason = kcld_stall_judge(st, hold, v->now, v->s->stuck_ms,
                                        v->s->grace_ms, &since, &detail);
  if (reason)
    note(v, shard_id, reason, since, detail, 0);
}

void kcld_stall_visit_lease(struct kcld_stall_visit *v, const char *shard_id,
                            const char *reason, uint64_t since_ms)
{
  note(v, shard_id, reason, since_ms, NULL, 1);
}

/* ======== Checks ======== */

/* What an operator does about each reason, for the log line. */
static const char *hint(const char *reason)
{
  static const struct {
    const char *reason, *hint;
  } hints[] = {
    {"invalid_checkpoint", "fix the lease's checkpoint in the lease table"},
    {"lease_table_missing", "restore the lease table, or restart kcld"},
    {KCLD_STALL_NO_ITERATOR, "the stream was deleted or re-created: reset "
     "the lease's checkpoint, or delete the lease"},
    {KCLD_STALL_THROTTLED, "throttled: raise the capacity, or wait"},
    {KCLD_STALL_FETCH_ERROR, "Kinesis calls fail: see the error"},
    {"handler_unavailable", "the handler cannot take batches: see the "
     "error"},
    {"destination_unavailable", "the on_failure destination does not take "
     "the records: check it exists and kcld may write to it"},
    {"retrying", "a record keeps failing: fix the handler or the record"},
  };
  for (size_t i = 0; i < sizeof(hints) / sizeof(hints[0]); i++)
    if (strcmp(hints[i].reason, reason) == 0)
      return hints[i].hint;
  return "see the shard's last log lines";
}

static void log_stalled(const struct item *e, uint64_t now)
{
  kcld_log(KCLD_LOG_ERROR | KCLD_LOG_UNLIMITED, "shard stalled", "shard",
           e->shard_id, "reason", e->reason,
           KCLD_LOG_UINT("seconds_since_progress", (now - e->since_ms) / 1000),
           "error", e->detail[0] ? e->detail : NULL, "hint", hint(e->reason),
           NULL);
}

static void log_over(const struct item *e, uint64_t now)
{
  kcld_log(KCLD_LOG_INFO | KCLD_LOG_UNLIMITED, "shard no longer stalled",
           "shard", e->shard_id, "reason", e->reason,
           KCLD_LOG_UINT("seconds_without_progress",
                         (now - e->since_ms) / 1000),
           NULL);
}

/* After a walk: forget what was not reported, decide the lease layer's
 * candidates, log. */
static void sweep(struct kcld_stall *s, uint64_t now)
{
  s->stalled = 0;
  for (struct item **p = &s->entries; *p;) {
    struct item *e = *p;
    int stalled = e->seen == s->checks &&
                  (!e->lease || lasted(now, e->since_ms, s->stuck_ms));
    if (!stalled && e->stalled) {
      log_over(e, now);
      e->logged_ms = 0;
    }
    e->stalled = stalled;
    if (e->seen != s->checks) {
      *p = e->next;
      item_free(s, e);
      continue;
    }
    p = &e->next;
    if (!stalled)
      continue;
    s->stalled++;
    if (!e->logged_ms || now - e->logged_ms >= LOG_EVERY_MS) {
      log_stalled(e, now);
      e->logged_ms = now ? now : 1;
    }
  }
}

void kcld_stall_check(struct kcld_stall *s)
{
  struct kcld_stall_visit v;
  if (!s || s->in_check)
    return;
  v.s = s;
  v.now = uv_now(s->loop);
  s->checks++;
  s->in_check = 1;
  s->walk(s->arg, &v);
  s->in_check = 0;
  sweep(s, v.now);
}

static void on_timer(uv_timer_t *t)
{
  kcld_stall_check(t->data);
}

/* stuck_ms / 4, within [MIN_PERIOD_MS, MAX_PERIOD_MS]. */
static uint64_t period_ms(uint64_t stuck_ms)
{
  uint64_t p = stuck_ms / 4;
  if (p < MIN_PERIOD_MS)
    return MIN_PERIOD_MS;
  return p > MAX_PERIOD_MS ? MAX_PERIOD_MS : p;
}

/* ======== Life ======== */

int kcld_stall_start(const struct kcld_stall_opts *o, struct kcld_stall **out)
{
  struct kcld_stall *s;
  *out = NULL;
  if (!o || !o->loop || !o->walk || o->stuck_ms == 0)
    return KCLD_EINVAL;
  if (!(s = calloc(1, sizeof(*s))))
    return KCLD_ENOMEM;
  s->loop = o->loop;
  s->stuck_ms = o->stuck_ms;
  s->grace_ms = o->grace_ms;
  s->walk = o->walk;
  s->arg = o->arg;
  uv_timer_init(o->loop, &s->timer);
  s->timer.data = s;
  uv_timer_start(&s->timer, on_timer, period_ms(s->stuck_ms),
                 period_ms(s->stuck_ms));
  uv_unref((uv_handle_t *)&s->timer);
  *out = s;
  return 0;
}

void kcld_stall_set_limits(struct kcld_stall *s, uint64_t stuck_ms,
                           uint64_t grace_ms)
{
  if (!s || stuck_ms == 0)
    return;
  s->stuck_ms = stuck_ms;
  s->grace_ms = grace_ms;
  uv_timer_start(&s->timer, on_timer, period_ms(stuck_ms),
                 period_ms(stuck_ms));
}

void kcld_stall_each(const struct kcld_stall *s, kcld_stall_cb cb, void *arg)
{
  for (const struct item *e = s ? s->entries : NULL; e; e = e->next)
    if (e->stalled)
      cb(e->shard_id, e->reason, e->since_ms, arg);
}

size_t kcld_stall_count(const struct kcld_stall *s)
{
  return s ? s->stalled : 0;
}

static void on_closed(uv_handle_t *h)
{
  struct kcld_stall *s = h->data;
  while (s->entries) {
    struct item *e = s->entries;
    s->entries = e->next;
    item_free(s, e);
  }
  free(s);
}

void kcld_stall_close(struct kcld_stall *s)
{
  if (!s)
    return;
  uv_timer_stop(&s->timer);
  uv_close((uv_handle_t *)&s->timer, on_closed);
}
