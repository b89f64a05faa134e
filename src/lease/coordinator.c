/* coordinator.c — renew, take, steal, release and checkpoint the leases of
 * one worker (see coordinator.h).
 *
 * State: one entry per lease item seen (sorted by shard id), holding the
 * lease as last seen (authoritative while we hold it: every write of ours is
 * conditional on it), when its counter last changed on our clock, and a
 * queue of writes of which at most one is in flight.  Every user callback
 * goes through one FIFO of deferred calls run by a 0 ms timer, so none runs
 * inside a call into this module and their order follows the events. */
#include "lease/coordinator.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws/dynamodb.h"
#include "aws/kinesis.h"
#include "base/fmt.h"
#include "err.h"
#include "lease/balance.h"
#include "lease/shard_sync.h"
#include "log.h"

#define DEF_FAILOVER_MS 10000
#define DEF_SYNC_MS 60000
#define TABLE_WAIT_MS 60000

/* ======== Types ======== */

struct wop;

struct entry {
  struct kcld_lease lease;
  uint64_t last_change_ms;  /* counter or owner last seen to change */
  uint64_t last_ok_ms;      /* held: start of the last successful write */
  uint64_t last_renew_ms;   /* held: start of the last renew (or checkpoint
                               that succeeded) */
  uint64_t eligible_ms;     /* finished and cleanable since */
  uint64_t write_tick;      /* coordinator tick of the last write done */
  uint64_t scan_gen;        /* last scan that listed it */
  struct wop *q_head, *q_tail; /* the head is in flight when busy */
  unsigned pins;            /* deferred callbacks pointing at it */
  unsigned held : 1, busy : 1, renew_queued : 1, delete_queued : 1,
    eligible : 1, gone : 1;
};

struct wop {
  struct wop *next;
  struct kcld_coordinator *c;
  struct entry *e;
  enum kcld_lease_write kind;
  char *seq;
  uint64_t sub;
  char **children;
  size_t n_children;
  int steal;                /* TAKE from a live worker */
  int for_release_all;      /* RELEASE counted by release_all */
  kcld_lease_cb cb;         /* CHECKPOINT, END */
  void *arg;
  uint64_t started_ms;
  char prev_owner[160];     /* TAKE: for the log */
};

enum dkind { D_READY, D_ACQUIRED, D_LOST, D_LEASE_CB, D_PARENTS_CB };

struct deferred {
  struct deferred *next;
  enum dkind kind;
  int err;
  int done;
  kcld_lease_cb lcb;
  kcld_parents_cb pcb;
  void *arg;
  struct entry *e;          /* D_ACQUIRED (pinned) */
  char *shard_id;           /* D_LOST */
};

struct kcld_coordinator {
  uv_loop_t *loop;
  struct kcld_dynamodb *db;
  struct kcld_kinesis *kin;
  struct kcld_lease_table *table;
  char *stream;
  char *worker;
  uint64_t failover_ms, take_ms, sync_ms, cleanup_ms, renew_ms, tick_ms;
  /* A held lease counts as lost once its last successful write started
   * this long ago: failover_ms less one tick, so that the check, which runs
   * every tick, always fires before a peer could take the lease. */
  uint64_t hold_ms;
  unsigned max_leases, max_steal;
  enum kcld_initial_position pos;
  struct kcld_coordinator_cbs cbs;

  uv_timer_t tick_timer, take_timer, sync_timer, defer_timer;
  int handles_open;

  struct entry **v;
  size_t n, cap;

  struct deferred *dq_head, *dq_tail;

  uint64_t tick;            /* counts completed writes */
  uint64_t scan_tick;       /* tick when the pass scan started */
  uint64_t scan_gen;
  uint64_t next_regular_ms;
  size_t last_target;
  int takes_inflight;
  struct kcld_coordinator_stats stats;
  unsigned ready : 1, failed : 1, closing : 1, releasing : 1, scanning : 1,
    syncing : 1, sync_again : 1, pass_pending : 1, pass_conflict : 1,
    retry_used : 1, in_close_flush : 1;

  /* release_all: releases not yet answered (+1 while queuing them) */
  int release_pending;
  int release_err;
  kcld_lease_cb release_cb;
  void *release_arg;
};

static void run_next(struct kcld_coordinator *c, struct entry *e);
static void pass_start(struct kcld_coordinator *c);
static void sync_start(struct kcld_coordinator *c);
static void on_take_timer(uv_timer_t *t);
static void on_sync_timer(uv_timer_t *t);
static void on_defer(uv_timer_t *t);

static int str_eq_null(const char *a, const char *b)
{
  if (!a || !b)
    return a == b;
  return strcmp(a, b) == 0;
}

/* ======== Deferred user callbacks ======== */

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

static void defer_lease_cb(struct kcld_coordinator *c, kcld_lease_cb cb,
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

static void defer_parents_cb(struct kcld_coordinator *c, kcld_parents_cb cb,
                             void *arg, int err, int done)
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

static void defer_ready(struct kcld_coordinator *c, int err)
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

static void maybe_drop(struct kcld_coordinator *c, struct entry *e);

/* Runs one deferred call; when closing only the calls whose callers wait
 * for an answer run. */
static void run_deferred(struct kcld_coordinator *c, struct deferred *d)
{
  int live = !c->closing;
  switch (d->kind) {
  case D_READY:
    if (live && c->cbs.ready)
      c->cbs.ready(d->err, c->cbs.arg);
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

/* ======== Entries ======== */

static int entry_cmp_key(const void *key, const void *elem)
{
  const struct entry *e = *(struct entry *const *)elem;
  return strcmp(key, e->lease.shard_id);
}

static int entry_cmp(const void *a, const void *b)
{
  const struct entry *x = *(struct entry *const *)a;
  const struct entry *y = *(struct entry *const *)b;
  return strcmp(x->lease.shard_id, y->lease.shard_id);
}

static struct entry *entry_find(const struct kcld_coordinator *c,
                                const char *shard_id)
{
  if (!shard_id || c->n == 0)
    return NULL;
  struct entry **hit =
    bsearch(shard_id, c->v, c->n, sizeof(*c->v), entry_cmp_key);
  return hit ? *hit : NULL;
}

static int entries_reserve(struct kcld_coordinator *c, size_t n)
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

static void entry_free(struct entry *e)
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
      entry_free(e);
      return;
    }
}

/* Replaces the entry's lease with a copy of `now`; notes a change of counter
 * or owner.  NULL `now` marks the item gone. */
static void entry_update(struct kcld_coordinator *c, struct entry *e,
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
      !str_eq_null(copy.owner, e->lease.owner))
    e->last_change_ms = uv_now(c->loop);
  kcld_lease_clean_up(&e->lease);
  e->lease = copy;
  e->gone = 0;
}

static int entry_expired(const struct kcld_coordinator *c,
                         const struct entry *e, uint64_t now)
{
  return e->lease.owner && !e->held &&
         now - e->last_change_ms >= c->failover_ms;
}

/* ======== Writes ======== */

static void wop_free(struct wop *w)
{
  free(w->seq);
  for (size_t i = 0; i < w->n_children; i++)
    free(w->children[i]);
  free(w->children);
  free(w);
}

static struct wop *wop_new(struct kcld_coordinator *c, struct entry *e,
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

static void enqueue(struct kcld_coordinator *c, struct entry *e,
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
  char counter[24];
  kcld_fmt_u64(counter, sizeof(counter), e->lease.counter);
  kcld_log(lvl, msg, "shard", e->lease.shard_id, "worker", c->worker,
           "owner", e->lease.owner, "counter", counter, k1, v1, NULL);
}

/* The lease is no longer ours: tell the user; what is queued for it fails
 * in run_next.  With `known`, `now` is the item as re-read (NULL: gone) and
 * becomes our view of it, held or not. */
static void lose(struct kcld_coordinator *c, struct entry *e,
                 const char *reason, const struct kcld_lease *now, int known)
{
  if (known)
    entry_update(c, e, now);
  if (!e->held)
    return;
  e->held = 0;
  c->stats.lost++;
  log_lease(KCLD_LOG_WARN, "lease lost", c, e, "reason", reason);
  defer_lost(c, e->lease.shard_id);
}

static void release_done_one(struct kcld_coordinator *c, int err);
static void release_check(struct kcld_coordinator *c);

/* A write that never went out (or was refused before sending). */
static void wop_fail(struct kcld_coordinator *c, struct wop *w, int err)
{
  switch (w->kind) {
  case KCLD_LEASE_TAKE:
    c->takes_inflight--;
    break;
  case KCLD_LEASE_RENEW:
    w->e->renew_queued = 0;
    break;
  case KCLD_LEASE_DELETE:
    w->e->delete_queued = 0;
    break;
  case KCLD_LEASE_RELEASE:
    if (w->for_release_all)
      release_done_one(c, err == KCLD_ELOST ? 0 : err);
    break;
  default:
    defer_lease_cb(c, w->cb, w->arg, err);
    break;
  }
  wop_free(w);
}

static void pass_done(struct kcld_coordinator *c);

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
    lose(c, e, "not renewed within failover_time", NULL, 0);
    return KCLD_ELOST;
  }
  return 0;
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
    struct kcld_lease_change ch = {
      .kind = w->kind, .worker = c->worker, .checkpoint = w->seq,
      .sub = w->sub, .children = (const char *const *)w->children,
      .n_children = w->n_children};
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

/* Applies a write that landed to the entry's lease. */
static void apply_success(struct kcld_coordinator *c, struct entry *e,
                          struct wop *w, int via_reread,
                          const struct kcld_lease *current)
{
  if (via_reread && current) {
    entry_update(c, e, current);
  } else {
    struct kcld_lease_change ch = {
      .kind = w->kind, .worker = c->worker, .checkpoint = w->seq,
      .sub = w->sub, .children = (const char *const *)w->children,
      .n_children = w->n_children};
    if (kcld_lease_apply(&e->lease, &ch) != 0)
      kcld_log(KCLD_LOG_ERROR, "out of memory updating a lease", "shard",
               e->lease.shard_id, NULL);
    e->last_change_ms = uv_now(c->loop);
  }
}

static void release_queue(struct kcld_coordinator *c, struct entry *e);

static void done_take(struct kcld_coordinator *c, struct entry *e,
                      struct wop *w, int err, int via_reread,
                      const struct kcld_lease *current)
{
  c->takes_inflight--;
  if (err == 0) {
    apply_success(c, e, w, via_reread, current);
    e->held = 1;
    e->gone = 0;
    e->last_ok_ms = w->started_ms;
    e->last_renew_ms = w->started_ms;
    if (w->steal)
      c->stats.stolen++;
    else
      c->stats.taken++;
    log_lease(KCLD_LOG_INFO, w->steal ? "lease stolen" : "lease taken", c, e,
              "previous_owner", w->prev_owner[0] ? w->prev_owner : NULL);
    if (c->releasing)
      release_queue(c, e);
    else
      defer_acquired(c, e);
  } else if (err == KCLD_ECONDITION) {
    entry_update(c, e, current);
    c->pass_conflict = 1;
    log_lease(KCLD_LOG_INFO, "lease taken by another worker first", c, e,
              NULL, NULL);
  } else if (err != KCLD_ECANCELED) {
    log_lease(KCLD_LOG_WARN, "taking a lease failed", c, e, "error",
              kcld_strerror(err));
  }
}

static void done_renew(struct kcld_coordinator *c, struct entry *e,
                       struct wop *w, int err, int via_reread,
                       const struct kcld_lease *current)
{
  e->renew_queued = 0;
  if (err == 0) {
    apply_success(c, e, w, via_reread, current);
    /* A success found by re-reading may be an earlier renew that landed:
     * peers saw the change no later than that one, so keep last_ok. */
    if (e->held && !via_reread)
      e->last_ok_ms = w->started_ms;
  } else if (err == KCLD_ECONDITION) {
    lose(c, e, "renew found the lease changed", current, 1);
  } else if (err != KCLD_ECANCELED) {
    log_lease(KCLD_LOG_WARN, "renewing a lease failed; will retry", c, e,
              "error", kcld_strerror(err));
  }
}

static void done_checkpoint(struct kcld_coordinator *c, struct entry *e,
                            struct wop *w, int err, int via_reread,
                            const struct kcld_lease *current)
{
  if (err == 0) {
    apply_success(c, e, w, via_reread, current);
    if (e->held && !via_reread) {
      e->last_ok_ms = w->started_ms;
      e->last_renew_ms = w->started_ms;
    }
    kcld_log(KCLD_LOG_DEBUG, "checkpoint written", "shard",
             e->lease.shard_id, "checkpoint", w->seq, NULL);
  } else if (err == KCLD_ECONDITION) {
    lose(c, e, "checkpoint found the lease changed", current, 1);
    err = KCLD_ELOST;
  }
  defer_lease_cb(c, w->cb, w->arg, err);
}

static void done_end(struct kcld_coordinator *c, struct entry *e,
                     struct wop *w, int err, int via_reread,
                     const struct kcld_lease *current)
{
  if (err == 0) {
    apply_success(c, e, w, via_reread, current);
    e->held = 0;
    log_lease(KCLD_LOG_INFO, "shard finished; lease released", c, e,
              "children", w->n_children ? w->children[0] : NULL);
    if (c->syncing)
      c->sync_again = 1;
    else
      sync_start(c);
  } else if (err == KCLD_ECONDITION) {
    lose(c, e, "shard end found the lease changed", current, 1);
    err = KCLD_ELOST;
  }
  defer_lease_cb(c, w->cb, w->arg, err);
}

static void done_release(struct kcld_coordinator *c, struct entry *e,
                         struct wop *w, int err, int via_reread,
                         const struct kcld_lease *current)
{
  if (err == 0) {
    apply_success(c, e, w, via_reread, current);
    e->held = 0;
    log_lease(KCLD_LOG_INFO, "lease released", c, e, NULL, NULL);
  } else if (err == KCLD_ECONDITION) {
    e->held = 0;
    entry_update(c, e, current);
    log_lease(KCLD_LOG_INFO, "lease was no longer ours at release", c, e,
              NULL, NULL);
    err = 0;
  } else if (err != KCLD_ECANCELED) {
    log_lease(KCLD_LOG_WARN, "releasing a lease failed; it will expire", c,
              e, "error", kcld_strerror(err));
  }
  if (w->for_release_all)
    release_done_one(c, err);
}

static void done_delete(struct kcld_coordinator *c, struct entry *e,
                        struct wop *w, int err, int via_reread,
                        const struct kcld_lease *current)
{
  (void)w;
  (void)via_reread;
  e->delete_queued = 0;
  if (err == 0) {
    log_lease(KCLD_LOG_INFO, "finished lease deleted", c, e, NULL, NULL);
    e->gone = 1;
  } else if (err == KCLD_ECONDITION) {
    entry_update(c, e, current);
  } else if (err != KCLD_ECANCELED) {
    log_lease(KCLD_LOG_WARN, "deleting a finished lease failed", c, e,
              "error", kcld_strerror(err));
  }
}

static void on_written(int err, int via_reread,
                       const struct kcld_lease *current, void *arg)
{
  struct wop *w = arg;
  struct kcld_coordinator *c = w->c;
  struct entry *e = w->e;
  pop_head(e);
  e->busy = 0;
  e->write_tick = ++c->tick;
  if (c->closing && err == 0)
    err = KCLD_ECANCELED; /* nothing is tracked any more */
  switch (w->kind) {
  case KCLD_LEASE_TAKE:
    done_take(c, e, w, err, via_reread, current);
    break;
  case KCLD_LEASE_RENEW:
    done_renew(c, e, w, err, via_reread, current);
    break;
  case KCLD_LEASE_CHECKPOINT:
    done_checkpoint(c, e, w, err, via_reread, current);
    break;
  case KCLD_LEASE_END:
    done_end(c, e, w, err, via_reread, current);
    break;
  case KCLD_LEASE_RELEASE:
    done_release(c, e, w, err, via_reread, current);
    break;
  case KCLD_LEASE_DELETE:
    done_delete(c, e, w, err, via_reread, current);
    break;
  }
  int was_take = w->kind == KCLD_LEASE_TAKE;
  wop_free(w);
  if (c->closing)
    return;
  run_next(c, e);
  maybe_drop(c, e);
  if (was_take && c->takes_inflight == 0) {
    if (c->releasing)
      release_check(c);
    else
      pass_done(c);
  }
}

/* ======== Renewal and expiry (tick) ======== */

static void on_tick(uv_timer_t *t)
{
  struct kcld_coordinator *c = t->data;
  uint64_t now = uv_now(c->loop);
  for (size_t i = 0; i < c->n && !c->closing; i++) {
    struct entry *e = c->v[i];
    if (!e->held)
      continue;
    if (now - e->last_ok_ms >= c->hold_ms) {
      lose(c, e, "not renewed within failover_time", NULL, 0);
      continue;
    }
    if (c->releasing || e->renew_queued ||
        now - e->last_renew_ms < c->renew_ms)
      continue;
    struct wop *w = wop_new(c, e, KCLD_LEASE_RENEW);
    if (!w)
      continue;
    e->renew_queued = 1;
    e->last_renew_ms = now;
    enqueue(c, e, w);
  }
}

/* ======== Take passes ======== */

static void schedule_pass(struct kcld_coordinator *c)
{
  if (c->closing || c->releasing)
    return;
  uint64_t now = uv_now(c->loop);
  uint64_t due = c->next_regular_ms;
  /* Look again when a lease of another worker could expire, if sooner. */
  for (size_t i = 0; i < c->n; i++) {
    struct entry *e = c->v[i];
    if (e->held || !e->lease.owner || kcld_lease_is_finished(&e->lease) ||
        strcmp(e->lease.owner, c->worker) == 0 || entry_expired(c, e, now))
      continue;
    uint64_t at = e->last_change_ms + c->failover_ms;
    if (at < due)
      due = at;
  }
  /* A floor, so that a pass that cannot start does not spin. */
  if (due < now + 10)
    due = now + 10;
  uv_timer_start(&c->take_timer, on_take_timer, due - now, 0);
}

static void merge_scan(struct kcld_coordinator *c, struct kcld_lease *leases,
                       size_t n, uint64_t now)
{
  uint64_t gen = ++c->scan_gen;
  size_t added = 0;
  if (entries_reserve(c, c->n + n) != 0) {
    kcld_log(KCLD_LOG_ERROR, "out of memory merging the lease table", NULL);
    return;
  }
  size_t old_n = c->n;
  for (size_t i = 0; i < n; i++) {
    struct kcld_lease *l = &leases[i];
    struct entry *e = NULL;
    if (old_n) {
      struct entry **hit =
        bsearch(l->shard_id, c->v, old_n, sizeof(*c->v), entry_cmp_key);
      e = hit ? *hit : NULL;
    }
    if (!e) {
      e = calloc(1, sizeof(*e));
      if (!e)
        continue;
      e->lease = *l;
      memset(l, 0, sizeof(*l));
      e->last_change_ms = now;
      e->scan_gen = gen;
      c->v[c->n++] = e;
      added++;
      continue;
    }
    e->scan_gen = gen;
    e->gone = 0;
    /* Our own view wins while we hold it or have written since the scan
     * began. */
    if (e->held || e->busy || e->q_head || e->write_tick > c->scan_tick)
      continue;
    if (l->counter != e->lease.counter ||
        !str_eq_null(l->owner, e->lease.owner))
      e->last_change_ms = now;
    kcld_lease_clean_up(&e->lease);
    e->lease = *l;
    memset(l, 0, sizeof(*l));
  }
  if (added)
    qsort(c->v, c->n, sizeof(*c->v), entry_cmp);
  /* Items no longer in the table. */
  size_t k = 0;
  for (size_t i = 0; i < c->n; i++) {
    struct entry *e = c->v[i];
    if (e->scan_gen != gen && !e->held && !e->busy && !e->q_head &&
        e->write_tick <= c->scan_tick)
      e->gone = 1;
    if (e->gone && !e->held && !e->busy && !e->q_head && !e->pins) {
      entry_free(e);
      continue;
    }
    c->v[k++] = e;
  }
  c->n = k;
}

static void cleanup_finished(struct kcld_coordinator *c, uint64_t now)
{
  if (c->n == 0)
    return;
  const struct kcld_lease **lp = calloc(c->n, sizeof(*lp));
  unsigned char *ok = calloc(c->n, 1);
  if (!lp || !ok)
    goto done;
  for (size_t i = 0; i < c->n; i++)
    lp[i] = &c->v[i]->lease;
  if (kcld_shard_sync_cleanable(lp, c->n, ok) != 0)
    goto done;
  for (size_t i = 0; i < c->n; i++) {
    struct entry *e = c->v[i];
    if (!ok[i]) {
      e->eligible = 0;
      continue;
    }
    if (!e->eligible) {
      e->eligible = 1;
      e->eligible_ms = now;
    }
    if (now - e->eligible_ms < c->cleanup_ms || e->held || e->busy ||
        e->q_head || e->delete_queued)
      continue;
    if (e->lease.owner && strcmp(e->lease.owner, c->worker) != 0 &&
        !entry_expired(c, e, now))
      continue; /* a live KCL worker still holds it: its business */
    struct wop *w = wop_new(c, e, KCLD_LEASE_DELETE);
    if (!w)
      continue;
    e->delete_queued = 1;
    enqueue(c, e, w);
  }
done:
  free(lp);
  free(ok);
}

static void take_leases(struct kcld_coordinator *c, uint64_t now)
{
  if (c->n == 0)
    return;
  struct kcld_balance_lease *bl = calloc(c->n, sizeof(*bl));
  if (!bl)
    return;
  for (size_t i = 0; i < c->n; i++) {
    struct entry *e = c->v[i];
    bl[i] = (struct kcld_balance_lease){
      .shard_id = e->lease.shard_id,
      .owner = e->lease.owner,
      .held = e->held,
      .expired = entry_expired(c, e, now),
      .finished = kcld_lease_is_finished(&e->lease) || e->gone,
      .stale_ms = now - e->last_change_ms};
  }
  struct kcld_balance_opts o = {.self = c->worker,
                                .max_leases = c->max_leases,
                                .max_steal = c->max_steal,
                                .stale_quantum_ms = c->renew_ms};
  struct kcld_balance_plan p;
  if (kcld_balance_decide(bl, c->n, &o, &p) != 0) {
    free(bl);
    return;
  }
  c->last_target = p.target;
  if (kcld_log_enabled(KCLD_LOG_DEBUG)) {
    char a[24], b[24], t[24], h[24], k[24];
    kcld_fmt_u64(a, sizeof(a), p.leases);
    kcld_fmt_u64(b, sizeof(b), p.workers);
    kcld_fmt_u64(t, sizeof(t), p.target);
    kcld_fmt_u64(h, sizeof(h), p.held);
    kcld_fmt_u64(k, sizeof(k), p.n_take);
    kcld_log(KCLD_LOG_DEBUG, "take pass", "worker", c->worker, "leases", a,
             "workers", b, "target", t, "held", h, "taking", k, "steal_from",
             p.steal_from, NULL);
  }
  struct entry **targets = calloc(p.n_take ? p.n_take : 1, sizeof(*targets));
  for (size_t i = 0; targets && i < p.n_take; i++)
    targets[i] = c->v[p.take[i]];
  int steal = p.steal;
  size_t n_take = targets ? p.n_take : 0;
  kcld_balance_plan_clean_up(&p);
  free(bl);
  /* Count them all first: enqueue may complete one synchronously. */
  c->takes_inflight += (int)n_take;
  for (size_t i = 0; i < n_take; i++) {
    struct wop *w = wop_new(c, targets[i], KCLD_LEASE_TAKE);
    if (!w) {
      c->takes_inflight--;
      continue;
    }
    w->steal = steal;
    enqueue(c, targets[i], w);
  }
  free(targets);
}

/* All takes of a pass have answered. */
static void pass_done(struct kcld_coordinator *c)
{
  if (c->closing || c->releasing || c->scanning)
    return;
  size_t held = kcld_coordinator_held(c);
  int retry = c->pass_conflict && !c->retry_used && held < c->last_target;
  c->pass_conflict = 0;
  if (retry) {
    c->retry_used = 1;
    pass_start(c);
  } else if (c->pass_pending) {
    pass_start(c);
  }
}

static void on_pass_scan(int err, struct kcld_lease *leases, size_t n,
                         void *arg)
{
  struct kcld_coordinator *c = arg;
  c->scanning = 0;
  if (c->closing)
    return;
  if (err) {
    kcld_log(KCLD_LOG_WARN, "scanning the lease table failed", "table",
             kcld_lease_table_name(c->table), "error", kcld_strerror(err),
             NULL);
  } else {
    uint64_t now = uv_now(c->loop);
    merge_scan(c, leases, n, now);
    cleanup_finished(c, now);
    if (!c->releasing)
      take_leases(c, now);
  }
  schedule_pass(c);
  if (c->takes_inflight == 0)
    pass_done(c);
}

static void pass_start(struct kcld_coordinator *c)
{
  if (!c->ready || c->closing || c->releasing)
    return;
  if (c->scanning || c->takes_inflight) {
    c->pass_pending = 1;
    return;
  }
  c->pass_pending = 0;
  c->scanning = 1;
  c->scan_tick = c->tick;
  int rc = kcld_lease_table_scan(c->table, on_pass_scan, c);
  if (rc < 0) {
    c->scanning = 0;
    kcld_log(KCLD_LOG_WARN, "the lease table scan could not be sent",
             "error", kcld_strerror(rc), NULL);
    schedule_pass(c);
  }
}

/* A pass that cannot start now (scan or takes still out) is marked pending
 * and starts when they are done; every scan's end schedules the next. */
static void on_take_timer(uv_timer_t *t)
{
  struct kcld_coordinator *c = t->data;
  uint64_t now = uv_now(c->loop);
  if (now >= c->next_regular_ms) {
    c->next_regular_ms = now + c->take_ms;
    c->retry_used = 0;
  }
  pass_start(c);
}

/* ======== Shard sync ======== */

static void on_sync(const struct kcld_shard_sync_result *res, void *arg)
{
  struct kcld_coordinator *c = arg;
  c->syncing = 0;
  if (c->closing)
    return;
  if (!c->ready) {
    if (res->err) {
      c->failed = 1;
      defer_ready(c, res->err);
      return;
    }
    c->ready = 1;
    uint64_t now = uv_now(c->loop);
    c->next_regular_ms = now + c->take_ms;
    uv_timer_start(&c->tick_timer, on_tick, c->tick_ms, c->tick_ms);
    uv_timer_start(&c->sync_timer, on_sync_timer, c->sync_ms, c->sync_ms);
    defer_ready(c, 0);
  }
  if (res->err == 0 && (res->created || res->shards)) {
    char s[24], cr[24];
    kcld_fmt_u64(s, sizeof(s), res->shards);
    kcld_fmt_u64(cr, sizeof(cr), res->created);
    kcld_log(res->created ? KCLD_LOG_INFO : KCLD_LOG_DEBUG,
             "shard sync done", "stream", c->stream, "shards", s, "created",
             cr, NULL);
  }
  if (c->sync_again) {
    c->sync_again = 0;
    sync_start(c);
    return;
  }
  pass_start(c);
}

static void sync_start(struct kcld_coordinator *c)
{
  if (c->closing || c->syncing)
    return;
  c->syncing = 1;
  int rc = kcld_shard_sync_run(c->table, c->kin, c->stream,
                               (enum kcld_shard_sync_position)c->pos, on_sync,
                               c);
  if (rc < 0) {
    c->syncing = 0;
    kcld_log(KCLD_LOG_WARN, "shard sync could not start", "error",
             kcld_strerror(rc), NULL);
    if (!c->ready) {
      c->failed = 1;
      defer_ready(c, rc);
    }
  }
}

static void on_sync_timer(uv_timer_t *t)
{
  struct kcld_coordinator *c = t->data;
  if (c->releasing)
    return;
  if (c->syncing)
    c->sync_again = 1;
  else
    sync_start(c);
}

/* ======== Start ======== */

static void on_ensured(int err, int created, void *arg)
{
  struct kcld_coordinator *c = arg;
  (void)created;
  if (c->closing)
    return;
  if (err) {
    c->failed = 1;
    defer_ready(c, err);
    return;
  }
  kcld_log(KCLD_LOG_INFO, "lease table ready", "table",
           kcld_lease_table_name(c->table), "worker", c->worker, NULL);
  sync_start(c);
}

static void free_all(struct kcld_coordinator *c)
{
  struct deferred *d;
  while ((d = defer_pop(c))) { /* only after a misuse: a call after close */
    free(d->shard_id);
    free(d);
  }
  for (size_t i = 0; i < c->n; i++)
    entry_free(c->v[i]);
  free(c->v);
  kcld_lease_table_free(c->table);
  free(c->stream);
  free(c->worker);
  free(c);
}

static void on_handle_closed(uv_handle_t *h)
{
  struct kcld_coordinator *c = h->data;
  if (--c->handles_open == 0)
    free_all(c);
}

int kcld_coordinator_start(const struct kcld_coordinator_opts *opts,
                           struct kcld_coordinator **out)
{
  if (out)
    *out = NULL;
  if (!opts || !out || !opts->loop || !opts->aws || !opts->table ||
      !opts->table[0] || !opts->stream || !opts->stream[0] ||
      !opts->worker_id || !opts->worker_id[0] || !opts->cbs.acquired ||
      !opts->cbs.lost || opts->initial_position > KCLD_POS_AT_TIMESTAMP)
    return KCLD_EINVAL;
  struct kcld_coordinator *c = calloc(1, sizeof(*c));
  if (!c)
    return KCLD_ENOMEM;
  c->loop = opts->loop;
  c->failover_ms = opts->failover_ms ? opts->failover_ms : DEF_FAILOVER_MS;
  c->take_ms = opts->take_interval_ms ? opts->take_interval_ms
                                      : 2 * c->failover_ms;
  c->sync_ms = opts->shard_sync_interval_ms ? opts->shard_sync_interval_ms
                                            : DEF_SYNC_MS;
  c->cleanup_ms = opts->cleanup_delay_ms;
  c->renew_ms = c->failover_ms / 3 ? c->failover_ms / 3 : 1;
  c->tick_ms = c->failover_ms / 10;
  if (c->tick_ms < 5)
    c->tick_ms = 5;
  if (c->tick_ms > 1000)
    c->tick_ms = 1000;
  c->hold_ms = c->failover_ms > c->tick_ms ? c->failover_ms - c->tick_ms : 1;
  c->max_leases = opts->max_leases;
  c->max_steal = opts->max_steal;
  c->pos = opts->initial_position;
  c->cbs = opts->cbs;
  c->stream = strdup(opts->stream);
  c->worker = strdup(opts->worker_id);
  int rc = KCLD_ENOMEM;
  if (!c->stream || !c->worker)
    goto fail;
  if ((rc = kcld_dynamodb_new(opts->aws, c->loop, &c->db)) != 0 ||
      (rc = kcld_kinesis_new(opts->aws, c->loop, &c->kin)) != 0 ||
      (rc = kcld_lease_table_new(c->db, opts->table, &c->table)) != 0)
    goto fail;
  uv_timer_t *timers[] = {&c->tick_timer, &c->take_timer, &c->sync_timer,
                          &c->defer_timer};
  for (size_t i = 0; i < 4; i++) {
    uv_timer_init(c->loop, timers[i]);
    timers[i]->data = c;
    c->handles_open++;
  }
  rc = kcld_lease_table_ensure(c->table, TABLE_WAIT_MS, on_ensured, c);
  if (rc < 0) {
    kcld_coordinator_close(c);
    return rc;
  }
  *out = c;
  return 0;
fail:
  kcld_dynamodb_close(c->db);
  kcld_kinesis_close(c->kin);
  kcld_lease_table_free(c->table);
  free(c->stream);
  free(c->worker);
  free(c);
  return rc;
}

/* ======== Checkpoints, shard end, parents ======== */

void kcld_coordinator_checkpoint(struct kcld_coordinator *c,
                                 const char *shard_id, const char *sequence,
                                 uint64_t sub, kcld_lease_cb cb, void *arg)
{
  if (!cb)
    return;
  if (c->closing) {
    defer_lease_cb(c, cb, arg, KCLD_ECANCELED);
    return;
  }
  if (!shard_id || !sequence || !sequence[0]) {
    defer_lease_cb(c, cb, arg, KCLD_EINVAL);
    return;
  }
  struct entry *e = entry_find(c, shard_id);
  if (!e || !e->held) {
    defer_lease_cb(c, cb, arg, KCLD_ELOST);
    return;
  }
  struct wop *w = wop_new(c, e, KCLD_LEASE_CHECKPOINT);
  if (!w || !(w->seq = strdup(sequence))) {
    free(w);
    defer_lease_cb(c, cb, arg, KCLD_ENOMEM);
    return;
  }
  w->sub = sub;
  w->cb = cb;
  w->arg = arg;
  enqueue(c, e, w);
}

struct end_op {
  struct kcld_coordinator *c;
  char *shard_id;
  char **children;
  size_t n_children;
  kcld_lease_cb cb;
  void *arg;
};

static void end_op_free(struct end_op *op)
{
  for (size_t i = 0; i < op->n_children; i++)
    free(op->children[i]);
  free(op->children);
  free(op->shard_id);
  free(op);
}

static void on_children_created(const struct kcld_shard_sync_result *res,
                                void *arg)
{
  struct end_op *op = arg;
  struct kcld_coordinator *c = op->c;
  int err = c->closing ? KCLD_ECANCELED : res->err;
  struct entry *e = err ? NULL : entry_find(c, op->shard_id);
  if (!err && (!e || !e->held))
    err = KCLD_ELOST;
  if (err) {
    defer_lease_cb(c, op->cb, op->arg, err);
    end_op_free(op);
    return;
  }
  struct wop *w = wop_new(c, e, KCLD_LEASE_END);
  if (!w) {
    defer_lease_cb(c, op->cb, op->arg, KCLD_ENOMEM);
    end_op_free(op);
    return;
  }
  w->children = op->children;
  w->n_children = op->n_children;
  op->children = NULL;
  op->n_children = 0;
  w->cb = op->cb;
  w->arg = op->arg;
  end_op_free(op);
  enqueue(c, e, w);
}

void kcld_coordinator_shard_ended(struct kcld_coordinator *c,
                                  const char *shard_id,
                                  const char *const *children,
                                  size_t n_children, kcld_lease_cb cb,
                                  void *arg)
{
  if (!cb)
    return;
  if (c->closing) {
    defer_lease_cb(c, cb, arg, KCLD_ECANCELED);
    return;
  }
  if (!shard_id || (n_children && !children)) {
    defer_lease_cb(c, cb, arg, KCLD_EINVAL);
    return;
  }
  struct entry *e = entry_find(c, shard_id);
  if (!e || !e->held) {
    defer_lease_cb(c, cb, arg, KCLD_ELOST);
    return;
  }
  struct end_op *op = calloc(1, sizeof(*op));
  int rc = KCLD_ENOMEM;
  if (!op || !(op->shard_id = strdup(shard_id)))
    goto fail;
  if (n_children && !(op->children = calloc(n_children, sizeof(char *))))
    goto fail;
  for (size_t i = 0; i < n_children; i++) {
    if (!children[i]) {
      rc = KCLD_EINVAL;
      goto fail;
    }
    if (!(op->children[i] = strdup(children[i])))
      goto fail;
    op->n_children++;
  }
  op->c = c;
  op->cb = cb;
  op->arg = arg;
  rc = kcld_shard_sync_children(c->table, c->kin, c->stream, shard_id,
                                (const char *const *)op->children,
                                op->n_children, on_children_created, op);
  if (rc < 0)
    goto fail;
  return;
fail:
  if (op)
    end_op_free(op);
  defer_lease_cb(c, cb, arg, rc);
}

struct parents_op {
  struct kcld_coordinator *c;
  int pending;
  int err;
  int done;
  kcld_parents_cb cb;
  void *arg;
};

static void parents_finish(struct parents_op *op)
{
  struct kcld_coordinator *c = op->c;
  int err = c->closing && !op->err ? KCLD_ECANCELED : op->err;
  defer_parents_cb(c, op->cb, op->arg, err, err ? 0 : op->done);
  free(op);
}

static void on_parent_read(int err, const struct kcld_lease *lease, void *arg)
{
  struct parents_op *op = arg;
  if (err && !op->err)
    op->err = err;
  if (!err && lease && !kcld_lease_is_finished(lease))
    op->done = 0;
  if (--op->pending == 0)
    parents_finish(op);
}

void kcld_coordinator_parents_done(struct kcld_coordinator *c,
                                   const char *shard_id, kcld_parents_cb cb,
                                   void *arg)
{
  if (!cb)
    return;
  if (c->closing) {
    defer_parents_cb(c, cb, arg, KCLD_ECANCELED, 0);
    return;
  }
  struct entry *e = entry_find(c, shard_id);
  if (!e) {
    defer_parents_cb(c, cb, arg, KCLD_ENOTFOUND, 0);
    return;
  }
  struct parents_op *op = calloc(1, sizeof(*op));
  if (!op) {
    defer_parents_cb(c, cb, arg, KCLD_ENOMEM, 0);
    return;
  }
  *op = (struct parents_op){.c = c, .done = 1, .cb = cb, .arg = arg,
                            .pending = 1};
  /* Copy the parent ids: the entry may change while reads are out. */
  size_t np = e->lease.n_parents;
  char **ids = np ? calloc(np, sizeof(*ids)) : NULL;
  for (size_t i = 0; ids && i < np; i++)
    ids[i] = strdup(e->lease.parents[i]);
  for (size_t i = 0; i < np; i++) {
    if (!ids || !ids[i]) {
      op->err = KCLD_ENOMEM;
      break;
    }
    struct entry *pe = entry_find(c, ids[i]);
    if (pe && kcld_lease_is_finished(&pe->lease))
      continue; /* SHARD_END is final */
    op->pending++;
    int rc = kcld_lease_table_get(c->table, ids[i], on_parent_read, op);
    if (rc < 0) {
      op->pending--;
      op->err = rc;
      break;
    }
  }
  for (size_t i = 0; ids && i < np; i++)
    free(ids[i]);
  free(ids);
  if (--op->pending == 0)
    parents_finish(op);
}

/* ======== Release ======== */

static void release_queue(struct kcld_coordinator *c, struct entry *e)
{
  struct wop *w = wop_new(c, e, KCLD_LEASE_RELEASE);
  if (!w) {
    if (!c->release_err)
      c->release_err = KCLD_ENOMEM;
    return;
  }
  w->for_release_all = 1;
  c->release_pending++;
  enqueue(c, e, w);
}

/* Calls the release_all callback once every release has answered and no
 * take is out any more. */
static void release_check(struct kcld_coordinator *c)
{
  if (!c->release_cb || c->release_pending > 0 || c->takes_inflight > 0)
    return;
  kcld_lease_cb cb = c->release_cb;
  c->release_cb = NULL;
  kcld_log(c->release_err ? KCLD_LOG_WARN : KCLD_LOG_INFO,
           "lease release finished", "worker", c->worker, "error",
           c->release_err ? kcld_strerror(c->release_err) : NULL, NULL);
  defer_lease_cb(c, cb, c->release_arg, c->release_err);
}

/* One release answered. */
static void release_done_one(struct kcld_coordinator *c, int err)
{
  if (err && !c->release_err)
    c->release_err = err;
  if (c->release_pending > 0)
    c->release_pending--;
  release_check(c);
}

void kcld_coordinator_release_all(struct kcld_coordinator *c, kcld_lease_cb cb,
                                  void *arg)
{
  if (!cb)
    return;
  if (c->closing) {
    defer_lease_cb(c, cb, arg, KCLD_ECANCELED);
    return;
  }
  if (c->release_cb) {
    defer_lease_cb(c, cb, arg, KCLD_EINVAL);
    return;
  }
  c->releasing = 1;
  uv_timer_stop(&c->take_timer);
  uv_timer_stop(&c->sync_timer);
  c->release_cb = cb;
  c->release_arg = arg;
  c->release_err = 0;
  c->release_pending = 1; /* held until every release is queued */
  size_t n = 0;
  for (size_t i = 0; i < c->n; i++)
    if (c->v[i]->held) {
      release_queue(c, c->v[i]);
      n++;
    }
  char buf[24];
  kcld_fmt_u64(buf, sizeof(buf), n);
  kcld_log(KCLD_LOG_INFO, "releasing every held lease", "worker", c->worker,
           "leases", buf, NULL);
  release_done_one(c, 0);
}

size_t kcld_coordinator_held(const struct kcld_coordinator *c)
{
  size_t n = 0;
  for (size_t i = 0; i < c->n; i++)
    n += c->v[i]->held;
  return n;
}

void kcld_coordinator_stats(const struct kcld_coordinator *c,
                            struct kcld_coordinator_stats *out)
{
  *out = c->stats;
}

/* ======== Close ======== */

void kcld_coordinator_close(struct kcld_coordinator *c)
{
  if (!c || c->closing)
    return;
  c->closing = 1;
  uv_timer_t *timers[] = {&c->tick_timer, &c->take_timer, &c->sync_timer,
                          &c->defer_timer};
  /* Cancel what is in flight: the callbacks run now and queue the user's
   * answers (KCLD_ECANCELED). */
  kcld_dynamodb_close(c->db);
  c->db = NULL;
  kcld_kinesis_close(c->kin);
  c->kin = NULL;
  /* Writes still queued behind them. */
  for (size_t i = 0; i < c->n; i++) {
    struct entry *e = c->v[i];
    while (e->q_head) {
      struct wop *w = e->q_head;
      pop_head(e);
      wop_fail(c, w, KCLD_ECANCELED);
    }
    e->busy = 0;
  }
  if (c->release_cb) {
    c->release_pending = 0;
    c->takes_inflight = 0;
    if (!c->release_err)
      c->release_err = KCLD_ECANCELED;
    release_check(c);
  }
  /* Answer every waiting caller; ready, acquired and lost are dropped. */
  struct deferred *d;
  while ((d = defer_pop(c)))
    run_deferred(c, d);
  for (size_t i = 0; i < 4; i++)
    uv_close((uv_handle_t *)timers[i], on_handle_closed);
}
