/* coord_queue.c — the coordinator's deferred user callbacks, its lease
 * entries, and the write queue of each lease: at most one write in flight,
 * and what each kind of write's answer does (see coord_internal.h). */
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "lease/coord_internal.h"

/* ======== Deferred user callbacks ======== */

static void maybe_drop(struct kcld_coordinator *c, struct entry *e);

static void on_defer(uv_timer_t *t);

static void defer_push(struct kcld_coordinator *c, struct deferred *d)
{
  d->next = NULL;
  if (c->dq_tail)
    c->dq_tail->next = d;
  else
    c->dq_head = d;
  c->dq_tail = d;
  if (!c->closing && !uv_is_active((uv_handle_t *)&c->defer_timer))
    uv_timer_start(&c->defer_timer, on_defer, 0, 0);
}

static struct deferred *defer_new(enum dkind kind)
{
  struct deferred *d = calloc(1, sizeof(*d));
  if (d)
    d->kind = kind;
  else
    kcld_log(KCLD_LOG_ERROR, "out of memory for a lease callback", NULL);
  return d;
}

void kcld_coord_defer_lease_cb(struct kcld_coordinator *c, kcld_lease_cb cb,
                               void *arg, int err)
{
  if (!cb)
    return;
  struct deferred *d = defer_new(D_LEASE_CB);
  if (!d) {
    cb(err ? err : KCLD_ENOMEM, arg); /* better late in the stack than never */
    return;
  }
  d->lcb = cb;
  d->arg = arg;
  d->err = err;
  defer_push(c, d);
}

void kcld_coord_defer_parents_cb(struct kcld_coordinator *c,
                                 kcld_parents_cb cb, void *arg, int err,
                                 int done)
{
  struct deferred *d = defer_new(D_PARENTS_CB);
  if (!d) {
    cb(err ? err : KCLD_ENOMEM, 0, arg);
    return;
  }
  d->pcb = cb;
  d->arg = arg;
  d->err = err;
  d->done = done;
  defer_push(c, d);
}

void kcld_coord_defer_ready(struct kcld_coordinator *c, int err)
{
  struct deferred *d = defer_new(D_READY);
  if (d) {
    d->err = err;
    defer_push(c, d);
  }
}

static void defer_acquired(struct kcld_coordinator *c, struct entry *e)
{
  struct deferred *d = defer_new(D_ACQUIRED);
  if (d) {
    d->e = e;
    e->pins++;
    defer_push(c, d);
  }
}

static void defer_lost(struct kcld_coordinator *c, const char *shard_id)
{
  struct deferred *d = defer_new(D_LOST);
  if (d && !(d->shard_id = strdup(shard_id))) {
    free(d);
    d = NULL;
  }
  if (d)
    defer_push(c, d);
}

/* Runs one deferred call; when closing only the calls whose callers wait
 * for an answer run. */
static void run_deferred(struct kcld_coordinator *c, struct deferred *d)
{
  int live = !c->closing;
  switch (d->kind) {
  case D_READY:
    if (live && c->cbs.ready)
      c->cbs.ready(d->err, d->err ? c->start_why : NULL, c->cbs.arg);
    break;
  case D_ACQUIRED:
    if (live)
      c->cbs.acquired(&d->e->lease, c->cbs.arg);
    break;
  case D_LOST:
    if (live)
      c->cbs.lost(d->shard_id, c->cbs.arg);
    break;
  case D_LEASE_CB:
    d->lcb(d->err, d->arg);
    break;
  case D_PARENTS_CB:
    d->pcb(d->err, d->done, d->arg);
    break;
  }
  if (d->e) {
    d->e->pins--;
    if (!c->closing)
      maybe_drop(c, d->e);
  }
  free(d->shard_id);
  free(d);
}

static struct deferred *defer_pop(struct kcld_coordinator *c)
{
  struct deferred *d = c->dq_head;
  if (d) {
    c->dq_head = d->next;
    if (!c->dq_head)
      c->dq_tail = NULL;
  }
  return d;
}

static void on_defer(uv_timer_t *t)
{
  struct kcld_coordinator *c = t->data;
  struct deferred *d;
  while (!c->closing && (d = defer_pop(c)))
    run_deferred(c, d);
}

void kcld_coord_defer_flush(struct kcld_coordinator *c)
{
  struct deferred *d;
  while ((d = defer_pop(c)))
    run_deferred(c, d);
}

void kcld_coord_defer_drop(struct kcld_coordinator *c)
{
  struct deferred *d;
  while ((d = defer_pop(c))) {
    free(d->shard_id);
    free(d);
  }
}

/* ======== Entries ======== */

int kcld_coord_str_eq_null(const char *a, const char *b)
{
  if (!a || !b)
    return a == b;
  return strcmp(a, b) == 0;
}

int kcld_coord_entry_cmp_key(const void *key, const void *elem)
{
  const struct entry *e = *(struct entry *const *)elem;
  return strcmp(key, e->lease.shard_id);
}

int kcld_coord_entry_cmp(const void *a, const void *b)
{
  const struct entry *x = *(struct entry *const *)a;
  const struct entry *y = *(struct entry *const *)b;
  return strcmp(x->lease.shard_id, y->lease.shard_id);
}

struct entry *kcld_coord_entry_find(const struct kcld_coordinator *c,
                                    const char *shard_id)
{
  if (!shard_id || c->n == 0)
    return NULL;
  struct entry **hit = bsearch(shard_id, c->v, c->n, sizeof(*c->v),
                               kcld_coord_entry_cmp_key);
  return hit ? *hit : NULL;
}

int kcld_coord_entries_reserve(struct kcld_coordinator *c, size_t n)
{
  if (n <= c->cap)
    return 0;
  size_t cap = c->cap ? c->cap : 16;
  while (cap < n)
    cap *= 2;
  struct entry **v = realloc(c->v, cap * sizeof(*v));
  if (!v)
    return KCLD_ENOMEM;
  c->v = v;
  c->cap = cap;
  return 0;
}

void kcld_coord_entry_free(struct entry *e)
{
  kcld_lease_clean_up(&e->lease);
  free(e);
}

/* Removes an entry the table no longer has, once nothing refers to it. */
static void maybe_drop(struct kcld_coordinator *c, struct entry *e)
{
  if (!e->gone || e->held || e->busy || e->q_head || e->pins)
    return;
  for (size_t i = 0; i < c->n; i++)
    if (c->v[i] == e) {
      memmove(&c->v[i], &c->v[i + 1], (c->n - i - 1) * sizeof(*c->v));
      c->n--;
      kcld_coord_entry_free(e);
      return;
    }
}

void kcld_coord_entry_update(struct kcld_coordinator *c, struct entry *e,
                             const struct kcld_lease *now)
{
  if (!now) {
    e->gone = 1;
    return;
  }
  struct kcld_lease copy;
  if (kcld_lease_copy(&copy, now) != 0)
    return;
  if (copy.counter != e->lease.counter ||
      !kcld_coord_str_eq_null(copy.owner, e->lease.owner))
    e->last_change_ms = uv_now(c->loop);
  kcld_lease_clean_up(&e->lease);
  e->lease = copy;
  e->gone = 0;
}

int kcld_coord_entry_expired(const struct kcld_coordinator *c,
                             const struct entry *e, uint64_t now)
{
  return e->lease.owner && !e->held &&
         now - e->last_change_ms >= c->failover_ms;
}

int kcld_coord_checkpoint_usable(const struct kcld_coordinator *c,
                                 const struct kcld_lease *l)
{
  const struct coord_stream *s = kcld_coord_stream_of(c, l);
  if (!kcld_lease_checkpoint_valid(l->checkpoint))
    return 0;
  return (s && s->pos == KCLD_POS_AT_TIMESTAMP) ||
         strcmp(l->checkpoint, KCLD_LEASE_AT_TIMESTAMP) != 0;
}

const char *kcld_coord_entry_stall(const struct kcld_coordinator *c,
                                   const struct entry *e)
{
  if (e->gone || kcld_lease_is_finished(&e->lease))
    return NULL;
  if (c->table_missing)
    return KCLD_STALL_LEASE_TABLE_MISSING;
  if (!kcld_coord_checkpoint_usable(c, &e->lease))
    return KCLD_STALL_INVALID_CHECKPOINT;
  return NULL;
}

/* ======== The write queue ======== */

static void run_next(struct kcld_coordinator *c, struct entry *e);

static void wop_free(struct wop *w)
{
  free(w->seq);
  free(w->window);
  for (size_t i = 0; i < w->n_children; i++)
    free(w->children[i]);
  free(w->children);
  free(w);
}

struct wop *kcld_coord_wop_new(struct kcld_coordinator *c, struct entry *e,
                               enum kcld_lease_write kind)
{
  struct wop *w = calloc(1, sizeof(*w));
  if (w) {
    w->c = c;
    w->e = e;
    w->kind = kind;
  }
  return w;
}

void kcld_coord_enqueue(struct kcld_coordinator *c, struct entry *e,
                        struct wop *w)
{
  w->next = NULL;
  if (e->q_tail)
    e->q_tail->next = w;
  else
    e->q_head = w;
  e->q_tail = w;
  run_next(c, e);
}

static void pop_head(struct entry *e)
{
  struct wop *w = e->q_head;
  e->q_head = w->next;
  if (!e->q_head)
    e->q_tail = NULL;
}

static void log_lease(enum kcld_log_level lvl, const char *msg,
                      const struct kcld_coordinator *c,
                      const struct entry *e, const char *k1, const char *v1)
{
  (void)c; /* the worker is on every line */
  kcld_log(lvl, msg, "shard", e->lease.shard_id, "owner", e->lease.owner,
           KCLD_LOG_UINT("counter", e->lease.counter), k1, v1, NULL);
}

void kcld_coord_lose(struct kcld_coordinator *c, struct entry *e,
                     const char *reason, const struct kcld_lease *now,
                     int known)
{
  if (known)
    kcld_coord_entry_update(c, e, now);
  if (!e->held)
    return;
  e->held = 0;
  c->stats.lost++;
  log_lease(KCLD_LOG_WARN, "lease lost", c, e, "reason", reason);
  defer_lost(c, e->lease.shard_id);
}

/* The bookkeeping every write ends with, sent or not: the flags and
 * counters that stood for it, and the answer its caller waits for. */
static void settle(struct kcld_coordinator *c, struct wop *w, int err)
{
  switch (w->kind) {
  case KCLD_LEASE_TAKE:
    c->takes_inflight--;
    c->takes_sent--;
    kcld_coord_takes_launch(c);
    break;
  case KCLD_LEASE_RENEW:
    w->e->renew_queued = 0;
    break;
  case KCLD_LEASE_DELETE:
    w->e->delete_queued = 0;
    break;
  case KCLD_LEASE_RELEASE:
    if (w->for_release_all)
      kcld_coord_release_done_one(c, err == KCLD_ELOST ? 0 : err);
    else if (w->cb) /* kcld_coordinator_release */
      kcld_coord_defer_lease_cb(c, w->cb, w->arg,
                                err == KCLD_ELOST ? 0 : err);
    break;
  case KCLD_LEASE_CHECKPOINT:
  case KCLD_LEASE_END:
    kcld_coord_defer_lease_cb(c, w->cb, w->arg, err);
    break;
  }
}

/* A write that never went out (or was refused before sending). */
static void wop_fail(struct kcld_coordinator *c, struct wop *w, int err)
{
  settle(c, w, err);
  wop_free(w);
}

static void on_written(int err, int via_reread,
                       const struct kcld_lease *current, void *arg);

/* Checks a queued write before it goes out: 0 to send it, else the error
 * to fail it with (1: drop it quietly). */
static int precheck(struct kcld_coordinator *c, struct entry *e,
                    struct wop *w, uint64_t now)
{
  switch (w->kind) {
  case KCLD_LEASE_TAKE:
    return e->held ? 1 : 0;
  case KCLD_LEASE_DELETE:
    return e->held || !kcld_lease_is_finished(&e->lease) ? 1 : 0;
  case KCLD_LEASE_RELEASE:
    return e->held ? 0 : KCLD_ELOST;
  default:
    break;
  }
  if (!e->held)
    return KCLD_ELOST;
  if (now - e->last_ok_ms >= c->hold_ms) {
    kcld_coord_lose(c, e, "not renewed within failover_time", NULL, 0);
    return KCLD_ELOST;
  }
  return 0;
}

static struct kcld_lease_change change_of(const struct kcld_coordinator *c,
                                          const struct wop *w)
{
  return (struct kcld_lease_change){
    .kind = w->kind, .worker = c->worker, .checkpoint = w->seq,
    .sub = w->sub, .window = w->window, .children = (const char *const *)w->children,
    .n_children = w->n_children};
}

static void run_next(struct kcld_coordinator *c, struct entry *e)
{
  while (!c->closing && !e->busy && e->q_head) {
    struct wop *w = e->q_head;
    uint64_t now = uv_now(c->loop);
    int pre = precheck(c, e, w, now);
    if (pre != 0) {
      pop_head(e);
      wop_fail(c, w, pre == 1 ? 0 : pre);
      continue;
    }
    struct kcld_lease_change ch = change_of(c, w);
    if (w->kind == KCLD_LEASE_TAKE)
      snprintf(w->prev_owner, sizeof(w->prev_owner), "%s",
               e->lease.owner ? e->lease.owner : "");
    w->started_ms = now;
    int rc = kcld_lease_table_write(c->table, &e->lease, &ch, on_written, w);
    if (rc < 0) {
      pop_head(e);
      if (rc != KCLD_ECANCELED)
        log_lease(KCLD_LOG_WARN, "a lease write could not be sent", c, e,
                  "error", kcld_strerror(rc));
      wop_fail(c, w, rc);
      continue;
    }
    e->busy = 1;
  }
}

void kcld_coord_cancel_writes(struct kcld_coordinator *c)
{
  for (size_t i = 0; i < c->n; i++) {
    struct entry *e = c->v[i];
    while (e->q_head) {
      struct wop *w = e->q_head;
      pop_head(e);
      wop_fail(c, w, KCLD_ECANCELED);
    }
    e->busy = 0;
  }
}

/* ======== What each write's answer does ======== */

/* Applies a write that landed to the entry's lease. */
static void apply_success(struct kcld_coordinator *c, struct entry *e,
                          struct wop *w, int via_reread,
                          const struct kcld_lease *current)
{
  if (via_reread && current) {
    kcld_coord_entry_update(c, e, current);
    return;
  }
  struct kcld_lease_change ch = change_of(c, w);
  if (kcld_lease_apply(&e->lease, &ch) != 0)
    kcld_log(KCLD_LOG_ERROR, "out of memory updating a lease", "shard",
             e->lease.shard_id, NULL);
  e->last_change_ms = uv_now(c->loop);
}

static void ok_take(struct kcld_coordinator *c, struct entry *e,
                    struct wop *w, int via_reread)
{
  (void)via_reread;
  e->held = 1;
  e->gone = 0;
  e->last_ok_ms = w->started_ms;
  e->renew_due_ms = w->started_ms + kcld_coord_renew_after(c, 1);
  if (w->steal)
    c->stats.stolen++;
  else
    c->stats.taken++;
  log_lease(KCLD_LOG_INFO, w->steal ? "lease stolen" : "lease taken", c, e,
            "previous_owner", w->prev_owner[0] ? w->prev_owner : NULL);
  if (c->releasing)
    kcld_coord_release_queue(c, e);
  else if (!kcld_coord_stream_of(c, &e->lease)) /* its stream was removed */
    kcld_coord_release_one(c, e, NULL, NULL);
  else
    defer_acquired(c, e);
}

static void ok_renew(struct kcld_coordinator *c, struct entry *e,
                     struct wop *w, int via_reread)
{
  (void)c;
  /* A success found by re-reading may be an earlier renew that landed:
   * peers saw the change no later than that one, so keep last_ok. */
  if (e->held && !via_reread)
    e->last_ok_ms = w->started_ms;
}

static void ok_checkpoint(struct kcld_coordinator *c, struct entry *e,
                          struct wop *w, int via_reread)
{
  if (e->held && !via_reread) {
    e->last_ok_ms = w->started_ms;
    e->renew_due_ms = w->started_ms + kcld_coord_renew_after(c, 0);
  }
  kcld_log(KCLD_LOG_DEBUG, "checkpoint written", "shard", e->lease.shard_id,
           "checkpoint", w->seq, NULL);
}

static void ok_end(struct kcld_coordinator *c, struct entry *e, struct wop *w,
                   int via_reread)
{
  (void)via_reread;
  e->held = 0;
  log_lease(KCLD_LOG_INFO, "shard finished; lease released", c, e,
            "children", w->n_children ? w->children[0] : NULL);
  if (c->syncing)
    c->sync_again = 1;
  else
    kcld_coord_sync_start(c);
}

static void ok_release(struct kcld_coordinator *c, struct entry *e,
                       struct wop *w, int via_reread)
{
  (void)w;
  (void)via_reread;
  e->held = 0;
  log_lease(KCLD_LOG_INFO, "lease released", c, e, NULL, NULL);
}

static void ok_delete(struct kcld_coordinator *c, struct entry *e,
                      struct wop *w, int via_reread)
{
  (void)w;
  (void)via_reread;
  log_lease(KCLD_LOG_INFO, "finished lease deleted", c, e, NULL, NULL);
  e->gone = 1;
}

/* After a failed condition, for writes that do not lose the lease: our view
 * becomes the item as re-read (already done); returns the error the write
 * ends with. */
static int conflict_take(struct kcld_coordinator *c, struct entry *e)
{
  c->pass_conflict = 1;
  log_lease(KCLD_LOG_INFO, "lease taken by another worker first", c, e, NULL,
            NULL);
  return KCLD_ECONDITION;
}

static int conflict_release(struct kcld_coordinator *c, struct entry *e)
{
  e->held = 0;
  log_lease(KCLD_LOG_INFO, "lease was no longer ours at release", c, e, NULL,
            NULL);
  return 0;
}

/* What a write's answer does, by kind.  ok: after the item was applied to
 * our view.  A failed condition loses the lease with lost_reason (the write
 * then ends with KCLD_ELOST), or, without one, updates our view and calls
 * conflict when set.  Another error (not a cancel) is logged with
 * fail_log when set; the write is retried by whoever needs it. */
struct done_rule {
  void (*ok)(struct kcld_coordinator *c, struct entry *e, struct wop *w,
             int via_reread);
  const char *lost_reason;
  int (*conflict)(struct kcld_coordinator *c, struct entry *e);
  const char *fail_log;
};

static const struct done_rule s_done[] = {
  [KCLD_LEASE_RENEW] = {ok_renew, "renew found the lease changed", NULL,
                        "renewing a lease failed; will retry"},
  [KCLD_LEASE_TAKE] = {ok_take, NULL, conflict_take,
                       "taking a lease failed"},
  [KCLD_LEASE_RELEASE] = {ok_release, NULL, conflict_release,
                          "releasing a lease failed; it will expire"},
  [KCLD_LEASE_CHECKPOINT] = {ok_checkpoint,
                             "checkpoint found the lease changed", NULL,
                             NULL},
  [KCLD_LEASE_END] = {ok_end, "shard end found the lease changed", NULL,
                      NULL},
  [KCLD_LEASE_DELETE] = {ok_delete, NULL, NULL,
                         "deleting a finished lease failed"},
};

static void on_written(int err, int via_reread,
                       const struct kcld_lease *current, void *arg)
{
  struct wop *w = arg;
  struct kcld_coordinator *c = w->c;
  struct entry *e = w->e;
  const struct done_rule *r = &s_done[w->kind];
  pop_head(e);
  e->busy = 0;
  e->write_tick = ++c->tick;
  if (c->closing && err == 0)
    err = KCLD_ECANCELED; /* nothing is tracked any more */
  int quiet = !c->closing && kcld_coord_note_table(c, err);
  if (err == 0) {
    apply_success(c, e, w, via_reread, current);
    r->ok(c, e, w, via_reread);
  } else if (err == KCLD_ECONDITION && r->lost_reason) {
    kcld_coord_lose(c, e, r->lost_reason, current, 1);
    err = KCLD_ELOST;
  } else if (err == KCLD_ECONDITION) {
    kcld_coord_entry_update(c, e, current);
    if (r->conflict)
      err = r->conflict(c, e);
  } else if (err != KCLD_ECANCELED && !quiet && r->fail_log) {
    log_lease(KCLD_LOG_WARN, r->fail_log, c, e, "error", kcld_strerror(err));
  }
  settle(c, w, err);
  int was_take = w->kind == KCLD_LEASE_TAKE;
  wop_free(w);
  if (c->closing)
    return;
  run_next(c, e);
  maybe_drop(c, e);
  if (was_take && c->takes_inflight == 0) {
    if (c->releasing)
      kcld_coord_release_check(c);
    else
      kcld_coord_pass_done(c);
  }
}
