/* coord_pass.c — the coordinator's periodic work: renewals and expiry of
 * held leases (the tick), and take passes (scan, merge, clean up finished
 * leases, balance, take or steal); see coord_internal.h. */
#include <stdlib.h>
#include <string.h>

#include "base/rand.h"
#include "err.h"
#include "lease/balance.h"
#include "lease/coord_internal.h"
#include "lease/shard_sync.h"

/* ======== Renewal and expiry (tick) ======== */

static void on_expiry_check(uv_check_t *h)
{
  struct kcld_coordinator *c = h->data;
  uint64_t now = uv_now(c->loop);
  uv_check_stop(h);
  for (size_t i = 0; i < c->n && !c->closing; i++) {
    struct entry *e = c->v[i];
    if (e->held && now - e->last_ok_ms >= c->hold_ms)
      kcld_coord_lose(c, e, "not renewed within failover_time", NULL, 0);
  }
}

void kcld_coord_on_tick(uv_timer_t *t)
{
  struct kcld_coordinator *c = t->data;
  uint64_t now = uv_now(c->loop);
  int expiring = 0;
  for (size_t i = 0; i < c->n && !c->closing; i++) {
    struct entry *e = c->v[i];
    if (!e->held)
      continue;
    if (now - e->last_ok_ms >= c->hold_ms) {
      expiring = 1; /* decided in on_expiry_check */
      continue;
    }
    if (c->releasing || e->renew_queued || now < e->renew_due_ms)
      continue;
    struct wop *w = kcld_coord_wop_new(c, e, KCLD_LEASE_RENEW);
    if (!w)
      continue;
    e->renew_queued = 1;
    e->renew_due_ms = now + kcld_coord_renew_after(c, 0);
    kcld_coord_enqueue(c, e, w);
  }
  if (expiring && !c->closing)
    uv_check_start(&c->expiry_check, on_expiry_check);
}

uint64_t kcld_coord_renew_after(struct kcld_coordinator *c, int first)
{
  uint64_t span = first ? c->renew_ms / 2 : c->renew_ms / 10;
  return c->renew_ms - kcld_rand_u64() % (span + 1);
}

/* ======== Take passes ======== */

static void on_take_timer(uv_timer_t *t);

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
        strcmp(e->lease.owner, c->worker) == 0 ||
        kcld_coord_entry_expired(c, e, now))
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

static int entry_idle(const struct kcld_coordinator *c, const struct entry *e)
{
  return !e->held && !e->busy && !e->q_head && e->write_tick <= c->scan_tick;
}

/* Takes the scanned leases into the entries: new ones are added, known ones
 * updated unless our own view is newer, and entries the table no longer has
 * are dropped once nothing refers to them. */
static void merge_scan(struct kcld_coordinator *c, struct kcld_lease *leases,
                       size_t n, uint64_t now)
{
  uint64_t gen = ++c->scan_gen;
  size_t added = 0;
  if (kcld_coord_entries_reserve(c, c->n + n) != 0) {
    kcld_log(KCLD_LOG_ERROR, "out of memory merging the lease table", NULL);
    return;
  }
  size_t old_n = c->n;
  for (size_t i = 0; i < n; i++) {
    struct kcld_lease *l = &leases[i];
    struct entry *e = NULL;
    if (old_n) {
      struct entry **hit = bsearch(l->shard_id, c->v, old_n, sizeof(*c->v),
                                   kcld_coord_entry_cmp_key);
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
    if (!entry_idle(c, e))
      continue;
    if (l->counter != e->lease.counter ||
        !kcld_coord_str_eq_null(l->owner, e->lease.owner))
      e->last_change_ms = now;
    kcld_lease_clean_up(&e->lease);
    e->lease = *l;
    memset(l, 0, sizeof(*l));
  }
  if (added)
    qsort(c->v, c->n, sizeof(*c->v), kcld_coord_entry_cmp);
  /* Items no longer in the table. */
  size_t k = 0;
  for (size_t i = 0; i < c->n; i++) {
    struct entry *e = c->v[i];
    if (e->scan_gen != gen && entry_idle(c, e))
      e->gone = 1;
    if (e->gone && !e->held && !e->busy && !e->q_head && !e->pins) {
      kcld_coord_entry_free(e);
      continue;
    }
    c->v[k++] = e;
  }
  c->n = k;
}

/* Queues the deletion of finished leases whose children have all started,
 * once they have been cleanable for cleanup_delay. */
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
  /* Stream by stream: entries are sorted by lease key, so the leases of
   * one stream of a multi-stream table are next to each other. */
  for (size_t i = 0, j; i < c->n; i = j) {
    for (j = i + 1; j < c->n && kcld_lease_of_stream(lp[j], lp[i]->stream_id);
         j++)
      ;
    if (kcld_shard_sync_cleanable(lp + i, j - i, ok + i) != 0)
      goto done;
  }
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
        e->q_head || e->delete_queued || !kcld_coord_stream_of(c, &e->lease))
      continue; /* (a stream not configured here is left alone) */
    if (e->lease.owner && strcmp(e->lease.owner, c->worker) != 0 &&
        !kcld_coord_entry_expired(c, e, now))
      continue; /* a live KCL worker still holds it: its business */
    struct wop *w = kcld_coord_wop_new(c, e, KCLD_LEASE_DELETE);
    if (!w)
      continue;
    e->delete_queued = 1;
    kcld_coord_enqueue(c, e, w);
  }
done:
  free(lp);
  free(ok);
}

static void log_plan(const struct kcld_coordinator *c,
                     const struct kcld_balance_plan *p)
{
  (void)c; /* the worker is on every line */
  kcld_log(KCLD_LOG_DEBUG, "take pass", KCLD_LOG_UINT("leases", p->leases),
           KCLD_LOG_UINT("workers", p->workers),
           KCLD_LOG_UINT("target", p->target), KCLD_LOG_UINT("held", p->held),
           KCLD_LOG_UINT("taking", p->n_take), "steal_from", p->steal_from,
           NULL);
}

/* Logs, once per lease, a lease that is stalled on its checkpoint. */
static void report_bad_checkpoints(struct kcld_coordinator *c)
{
  for (size_t i = 0; i < c->n; i++) {
    struct entry *e = c->v[i];
    const char *why = kcld_coord_entry_stall(c, e);
    int bad = why && strcmp(why, KCLD_STALL_INVALID_CHECKPOINT) == 0;
    if (bad && !e->bad_checkpoint_logged)
      kcld_log(KCLD_LOG_ERROR, kcld_lease_checkpoint_valid(e->lease.checkpoint)
                 ? "a lease is at the AT_TIMESTAMP checkpoint but no "
                   "starting_timestamp is set: its shard is not consumed"
                 : "a lease's checkpoint is not a sequence number: its "
                   "shard is not consumed until the checkpoint is fixed "
                   "in the lease table",
               "shard", e->lease.shard_id, "checkpoint",
               e->lease.checkpoint, "owner", e->lease.owner, NULL);
    else if (!bad && e->bad_checkpoint_logged && !why)
      kcld_log(KCLD_LOG_INFO, "a lease's checkpoint is usable again",
               "shard", e->lease.shard_id, "checkpoint",
               e->lease.checkpoint, NULL);
    if (!why || bad)
      e->bad_checkpoint_logged = bad;
  }
}

/* Decides what to take (balance.h) and queues the takes. */
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
      .expired = kcld_coord_entry_expired(c, e, now),
      /* Not counted, never taken: finished or gone (needs no worker), at
       * a checkpoint no worker can start from, or of a stream of the
       * table that is not configured here. */
      .finished = kcld_lease_is_finished(&e->lease) || e->gone ||
                  !kcld_coord_checkpoint_usable(c, &e->lease) ||
                  !kcld_coord_stream_of(c, &e->lease),
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
  if (kcld_log_enabled(KCLD_LOG_DEBUG))
    log_plan(c, &p);
  struct entry **targets = calloc(p.n_take ? p.n_take : 1, sizeof(*targets));
  for (size_t i = 0; targets && i < p.n_take; i++)
    targets[i] = c->v[p.take[i]];
  size_t n_take = targets ? p.n_take : 0;
  c->take_steal = p.steal;
  kcld_balance_plan_clean_up(&p);
  free(bl);
  if (n_take == 0) {
    free(targets);
    return;
  }
  /* Pinned until sent; counted now, so that a take answered at once does
   * not end the pass. */
  for (size_t i = 0; i < n_take; i++)
    targets[i]->pins++;
  c->take_list = targets;
  c->take_n = n_take;
  c->take_pos = 0;
  c->takes_inflight += (int)n_take;
  kcld_coord_takes_launch(c);
}

void kcld_coord_takes_launch(struct kcld_coordinator *c)
{
  if (c->launching)
    return; /* a take answered while sending: the loop below goes on */
  c->launching = 1;
  while (!c->closing && c->takes_sent < KCLD_COORD_TAKES_IN_FLIGHT &&
         c->take_pos < c->take_n) {
    struct entry *e = c->take_list[c->take_pos++];
    e->pins--;
    struct wop *w = kcld_coord_wop_new(c, e, KCLD_LEASE_TAKE);
    if (!w) {
      c->takes_inflight--;
      continue;
    }
    w->steal = c->take_steal;
    c->takes_sent++;
    kcld_coord_enqueue(c, e, w);
  }
  c->launching = 0;
  if (c->take_list && c->take_pos == c->take_n)
    kcld_coord_takes_drop(c);
}

void kcld_coord_takes_drop(struct kcld_coordinator *c)
{
  for (size_t i = c->take_pos; i < c->take_n; i++) {
    c->take_list[i]->pins--;
    c->takes_inflight--;
  }
  free(c->take_list);
  c->take_list = NULL;
  c->take_n = c->take_pos = 0;
}

void kcld_coord_pass_done(struct kcld_coordinator *c)
{
  if (c->closing || c->releasing || c->scanning)
    return;
  size_t held = kcld_coordinator_held(c);
  int retry = c->pass_conflict && !c->retry_used && held < c->last_target;
  c->pass_conflict = 0;
  if (retry) {
    c->retry_used = 1;
    kcld_coord_pass_start(c);
  } else if (c->pass_pending) {
    kcld_coord_pass_start(c);
  }
}

static void on_pass_scan(const struct kcld_svc_status *st,
                         struct kcld_lease *leases, size_t n, void *arg)
{
  struct kcld_coordinator *c = arg;
  int err = st->err;
  c->scanning = 0;
  if (c->closing)
    return;
  int quiet = kcld_coord_note_table(c, err);
  if (!c->ready && kcld_coord_first_scan(c, st, leases, n) != 0)
    return;
  if (err) {
    if (!quiet)
      kcld_log(KCLD_LOG_WARN, "scanning the lease table failed", "table",
               kcld_lease_table_name(c->table), "error", st->message, NULL);
  } else {
    uint64_t now = uv_now(c->loop);
    merge_scan(c, leases, n, now);
    report_bad_checkpoints(c);
    cleanup_finished(c, now);
    if (!c->releasing)
      take_leases(c, now);
  }
  schedule_pass(c);
  if (c->takes_inflight == 0)
    kcld_coord_pass_done(c);
}

void kcld_coord_pass_start(struct kcld_coordinator *c)
{
  if (!c->synced || c->failed || c->closing || c->releasing)
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
    if (c->ready)
      schedule_pass(c);
    else /* start-up fails */
      kcld_coord_start_failed(c, KCLD_COORD_STEP_SCAN, rc, 0,
                              kcld_strerror(rc));
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
  kcld_coord_pass_start(c);
}
