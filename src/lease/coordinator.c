/* coordinator.c — renew, take, steal, release and checkpoint the leases of
 * one worker (see coordinator.h): start-up, shard sync, the public calls,
 * release and close.  The write queue is in coord_queue.c, renewals and
 * take passes in coord_pass.c; their shared state in coord_internal.h. */
#include "lease/coordinator.h"

#include <stdlib.h>
#include <string.h>

#include "aws/dynamodb.h"
#include "aws/kinesis.h"
#include "base/backoff.h"
#include "err.h"
#include "lease/coord_internal.h"
#include "lease/shard_sync.h"
#include "log.h"

#define TABLE_WAIT_MS 60000
#define TICK_MAX_MS 100
/* Start-up tries a step that failed transiently again after 250 ms,
 * doubling to 5 s (half of it jitter): an outage of a few seconds costs a
 * few seconds, a long one one call every few seconds.  The first warnings
 * come at once, then one every 30 s. */
#define START_RETRY_BASE_MS 250
#define START_RETRY_MAX_MS 5000
#define START_WARN_FIRST 3
#define START_WARN_EVERY_MS 30000

static void on_sync_timer(uv_timer_t *t);

/* ======== Shard sync ======== */

static int sync_stream(struct kcld_coordinator *c);

static void on_sync(const struct kcld_shard_sync_result *res, void *arg)
{
  struct kcld_coordinator *c = arg;
  c->syncing = 0;
  if (c->closing)
    return;
  if (!c->synced && res->err) {
    kcld_coord_start_failed(c, KCLD_COORD_STEP_SYNC, res->err,
                            res->transient, res->message);
    return;
  }
  if (res->err == 0 && (res->created || res->shards)) {
    kcld_log(res->created ? KCLD_LOG_INFO : KCLD_LOG_DEBUG,
             "shard sync done", "stream", c->streams[c->sync_idx].name,
             KCLD_LOG_UINT("shards", res->shards),
             KCLD_LOG_UINT("created", res->created), NULL);
  }
  c->sync_idx++;
  kcld_coord_sync_next(c);
}

/* Moves sync_idx past removed streams; 0 when none is left (sync_idx is
 * then back at 0). */
static int sync_skip_removed(struct kcld_coordinator *c)
{
  while (c->sync_idx < c->n_streams && c->streams[c->sync_idx].removed)
    c->sync_idx++;
  if (c->sync_idx < c->n_streams)
    return 1;
  c->sync_idx = 0;
  return 0;
}

void kcld_coord_sync_next(struct kcld_coordinator *c)
{
  /* One stream after the other; a sync is done when every stream is. */
  if (sync_skip_removed(c)) {
    c->syncing = 1;
    if (sync_stream(c) == 0)
      return;
    c->syncing = 0;
    c->sync_idx = 0;
  }
  c->synced = 1; /* the first pass scan ends start-up */
  if (c->sync_again) {
    c->sync_again = 0;
    kcld_coord_sync_start(c);
    return;
  }
  kcld_coord_pass_start(c);
}

/* ======== The table's state ======== */

int kcld_coord_note_table(struct kcld_coordinator *c, int err)
{
  if (err == KCLD_ENOTFOUND) {
    if (!c->table_missing) {
      c->table_missing = 1;
      c->table_missing_ms = uv_now(c->loop);
      kcld_log(KCLD_LOG_ERROR, "the lease table does not exist any more: "
               "no lease can be renewed, taken or checkpointed, and held "
               "leases are given up after failover_time; kcld does not "
               "recreate it while running (that would restart every shard "
               "from starting_position): restore it, or restart kcld",
               "table", kcld_lease_table_name(c->table), NULL);
    }
    return 1;
  }
  if (c->table_missing && (err == 0 || err == KCLD_ECONDITION)) {
    c->table_missing = 0;
    c->table_missing_ms = 0;
    kcld_log(KCLD_LOG_INFO, "the lease table answers again", "table",
             kcld_lease_table_name(c->table), NULL);
  }
  return 0;
}

/* Names the leases at AT_TIMESTAMP when no timestamp is known; returns how
 * many there are. */
static size_t check_at_timestamp(const struct kcld_coordinator *c,
                                 const struct kcld_lease *leases, size_t n)
{
  char names[512] = "";
  size_t bad = 0, len = 0;
  for (size_t i = 0; i < n; i++) {
    if (!leases[i].checkpoint ||
        strcmp(leases[i].checkpoint, KCLD_LEASE_AT_TIMESTAMP) != 0 ||
        !kcld_coord_stream_of(c, &leases[i]) ||
        kcld_coord_checkpoint_usable(c, &leases[i]))
      continue;
    if (bad++ < 8 && len < sizeof(names))
      len += (size_t)snprintf(names + len, sizeof(names) - len, "%s%s",
                              len ? "," : "", leases[i].shard_id);
  }
  if (bad) {
    kcld_log(KCLD_LOG_ERROR, "leases are at the AT_TIMESTAMP checkpoint and "
             "no timestamp is known: set starting_position: AT_TIMESTAMP "
             "and starting_timestamp (as the KCL, kcld starts such a lease "
             "from it), or give the leases a checkpoint",
             "table", kcld_lease_table_name(c->table),
             KCLD_LOG_UINT("leases", bad),
             "shards", names, NULL);
  }
  return bad;
}


static void on_start_timer(uv_timer_t *t)
{
  kcld_coord_start_step(t->data);
}

void kcld_coord_start_failed(struct kcld_coordinator *c, const char *step,
                             int err, int transient, const char *why)
{
  if (c->closing || c->releasing || c->failed)
    return; /* shutting down: nothing is tried again */
  if (!transient) {
    c->failed = 1;
    snprintf(c->start_why, sizeof(c->start_why), "%s: %s", step,
             why && *why ? why : kcld_strerror(err));
    kcld_coord_defer_ready(c, err);
    return;
  }
  uint64_t now = uv_now(c->loop);
  if (c->start_failures++ == 0)
    c->start_since_ms = now;
  const struct kcld_backoff b = {START_RETRY_BASE_MS, START_RETRY_MAX_MS,
                                 KCLD_BACKOFF_EQUAL};
  uint64_t delay = kcld_backoff_ms(&b, c->start_failures);
  if (c->start_failures <= START_WARN_FIRST ||
      now - c->start_warned_ms >= START_WARN_EVERY_MS) {
    c->start_warned_ms = now;
    kcld_log(KCLD_LOG_WARN, "start-up waits: a transient failure; trying "
             "again", "step", step, "error", why && *why ? why
                                                 : kcld_strerror(err),
             KCLD_LOG_UINT("failures", c->start_failures),
             KCLD_LOG_UINT("waiting_ms", now - c->start_since_ms),
             KCLD_LOG_UINT("retry_in_ms", delay), NULL);
  }
  uv_timer_start(&c->start_timer, on_start_timer, delay, 0);
}

int kcld_coord_first_scan(struct kcld_coordinator *c,
                          const struct kcld_svc_status *st,
                          const struct kcld_lease *leases, size_t n)
{
  if (c->releasing)
    return KCLD_ECANCELED; /* shut down during start-up: never ready */
  if (st->err) {
    kcld_coord_start_failed(c, KCLD_COORD_STEP_SCAN, st->err,
                            kcld_svc_transient(st), st->message);
    return st->err;
  }
  if (check_at_timestamp(c, leases, n)) {
    kcld_coord_start_failed(c, KCLD_COORD_STEP_SCAN, KCLD_ECONFIG, 0,
                            "leases at the AT_TIMESTAMP checkpoint and no "
                            "timestamp known");
    return KCLD_ECONFIG;
  }
  if (c->start_failures > 0)
    kcld_log(KCLD_LOG_INFO, "start-up went on after transient failures",
             KCLD_LOG_UINT("failures", c->start_failures),
             KCLD_LOG_UINT("waited_ms", uv_now(c->loop) - c->start_since_ms),
             NULL);
  c->ready = 1;
  c->next_regular_ms = uv_now(c->loop) + c->take_ms;
  uv_timer_start(&c->tick_timer, kcld_coord_on_tick, c->tick_ms, c->tick_ms);
  uv_timer_start(&c->sync_timer, on_sync_timer, c->sync_ms, c->sync_ms);
  kcld_coord_defer_ready(c, 0);
  return 0;
}

/* Starts the sync of streams[sync_idx] (identified first when it was
 * added while running). */
static int sync_stream(struct kcld_coordinator *c)
{
  const struct coord_stream *s = &c->streams[c->sync_idx];
  if (c->multi && !s->id)
    return kcld_coord_stream_identify(c);
  return kcld_shard_sync_run(c->table, c->kin, s->name, s->id,
                             (enum kcld_shard_sync_position)s->pos, on_sync,
                             c);
}

void kcld_coord_sync_start(struct kcld_coordinator *c)
{
  if (c->closing || c->syncing)
    return;
  c->sync_idx = 0;
  if (!sync_skip_removed(c))
    return; /* every stream removed */
  c->syncing = 1;
  int rc = sync_stream(c);
  if (rc < 0) {
    c->syncing = 0;
    kcld_log(KCLD_LOG_WARN, "shard sync could not start", "error",
             kcld_strerror(rc), NULL);
    if (!c->synced)
      kcld_coord_start_failed(c, KCLD_COORD_STEP_SYNC, rc, 0,
                              kcld_strerror(rc));
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
    kcld_coord_sync_start(c);
}

/* ======== Start ======== */

static void on_ensured(const struct kcld_svc_status *st, int created,
                       void *arg)
{
  struct kcld_coordinator *c = arg;
  (void)created;
  if (c->closing)
    return;
  if (st->err) {
    kcld_coord_start_failed(c, KCLD_COORD_STEP_TABLE, st->err,
                            kcld_svc_transient(st), st->message);
    return;
  }
  c->ensured = 1;
  kcld_log(KCLD_LOG_INFO, "lease table ready", "table",
           kcld_lease_table_name(c->table), "worker", c->worker, NULL);
  kcld_coord_start_step(c);
}

/* Runs the next start-up step: the table, the streams' identifiers (a
 * multi-stream table), the first shard sync (which starts the first
 * pass), or the first pass scan again. */
void kcld_coord_start_step(struct kcld_coordinator *c)
{
  if (c->closing || c->releasing || c->failed)
    return;
  if (!c->ensured) {
    int rc = kcld_lease_table_ensure(c->table, TABLE_WAIT_MS, on_ensured, c);
    if (rc < 0)
      kcld_coord_start_failed(c, KCLD_COORD_STEP_TABLE, rc, 0,
                              kcld_strerror(rc));
  } else if (!c->resolved) {
    kcld_coord_streams_resolve(c);
  } else if (!c->synced) {
    kcld_coord_sync_start(c);
  } else {
    kcld_coord_pass_start(c);
  }
}

static void free_all(struct kcld_coordinator *c)
{
  kcld_coord_defer_drop(c);
  for (size_t i = 0; i < c->n; i++)
    kcld_coord_entry_free(c->v[i]);
  free(c->v);
  kcld_lease_table_free(c->table);
  kcld_coord_streams_clean_up(c);
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
      !opts->table[0] || (!opts->n_streams && !opts->stream) ||
      (opts->n_streams && !opts->streams) ||
      !opts->worker_id || !opts->worker_id[0] || !opts->cbs.acquired ||
      !opts->cbs.lost || !opts->failover_ms || !opts->take_interval_ms ||
      !opts->shard_sync_interval_ms)
    return KCLD_EINVAL;
  struct kcld_coordinator *c = calloc(1, sizeof(*c));
  if (!c)
    return KCLD_ENOMEM;
  c->loop = opts->loop;
  c->failover_ms = opts->failover_ms;
  c->take_ms = opts->take_interval_ms;
  c->sync_ms = opts->shard_sync_interval_ms;
  c->cleanup_ms = opts->cleanup_delay_ms;
  c->renew_ms = c->failover_ms / 3 ? c->failover_ms / 3 : 1;
  c->guard_ms = c->failover_ms / 10;
  if (c->guard_ms < 5)
    c->guard_ms = 5;
  if (c->guard_ms > 1000)
    c->guard_ms = 1000;
  c->tick_ms = c->guard_ms / 2 < TICK_MAX_MS ? c->guard_ms / 2 : TICK_MAX_MS;
  c->hold_ms = c->failover_ms > c->guard_ms ? c->failover_ms - c->guard_ms
                                            : 1;
  c->max_leases = opts->max_leases;
  c->max_steal = opts->max_steal;
  c->cbs = opts->cbs;
  c->worker = strdup(opts->worker_id);
  int rc = KCLD_ENOMEM;
  if (!c->worker || (rc = kcld_coord_streams_init(c, opts)) != 0)
    goto fail;
  if ((rc = kcld_dynamodb_new(opts->aws, c->loop, &c->db)) != 0 ||
      (rc = kcld_kinesis_new(opts->aws, c->loop, &c->kin)) != 0 ||
      (rc = kcld_lease_table_new(c->db, opts->table, c->multi,
                                 &c->table)) != 0)
    goto fail;
  uv_timer_t *timers[] = {&c->tick_timer, &c->take_timer, &c->sync_timer,
                          &c->defer_timer, &c->start_timer};
  for (size_t i = 0; i < 5; i++) {
    uv_timer_init(c->loop, timers[i]);
    timers[i]->data = c;
    c->handles_open++;
  }
  uv_check_init(c->loop, &c->expiry_check);
  c->expiry_check.data = c;
  c->handles_open++;
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
  kcld_coord_streams_clean_up(c);
  free(c->worker);
  free(c);
  return rc;
}

/* ======== Checkpoints, shard end, parents ======== */

/* The entry of a held shard for a write the user asked for; NULL when the
 * call ends here (cb is then answered later: KCLD_ECANCELED when closing,
 * KCLD_EINVAL without a shard id or when !valid, KCLD_ELOST when the shard
 * is not held; nothing without cb). */
static struct entry *held_entry(struct kcld_coordinator *c,
                                const char *shard_id, int valid,
                                kcld_lease_cb cb, void *arg)
{
  struct entry *e = NULL;
  int err = 0;
  if (!cb)
    return NULL;
  if (c->closing)
    err = KCLD_ECANCELED;
  else if (!shard_id || !valid)
    err = KCLD_EINVAL;
  else if (!(e = kcld_coord_entry_find(c, shard_id)) || !e->held)
    err = KCLD_ELOST;
  if (err) {
    kcld_coord_defer_lease_cb(c, cb, arg, err);
    return NULL;
  }
  return e;
}

void kcld_coordinator_checkpoint(struct kcld_coordinator *c,
                                 const char *shard_id, const char *sequence,
                                 uint64_t sub, kcld_lease_cb cb, void *arg)
{
  kcld_coordinator_checkpoint_window(c, shard_id, sequence, sub, NULL, cb,
                                     arg);
}

void kcld_coordinator_checkpoint_window(struct kcld_coordinator *c,
                                        const char *shard_id,
                                        const char *sequence, uint64_t sub,
                                        const char *window, kcld_lease_cb cb,
                                        void *arg)
{
  struct entry *e = held_entry(c, shard_id, sequence && sequence[0], cb, arg);
  if (!e)
    return;
  struct wop *w = kcld_coord_wop_new(c, e, KCLD_LEASE_CHECKPOINT);
  if (!w || !(w->seq = strdup(sequence)) ||
      (window && !(w->window = strdup(window)))) {
    if (w)
      free(w->seq);
    free(w);
    kcld_coord_defer_lease_cb(c, cb, arg, KCLD_ENOMEM);
    return;
  }
  w->sub = sub;
  w->cb = cb;
  w->arg = arg;
  kcld_coord_enqueue(c, e, w);
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
  struct entry *e = err ? NULL : kcld_coord_entry_find(c, op->shard_id);
  if (!err && (!e || !e->held))
    err = KCLD_ELOST;
  if (err) {
    kcld_coord_defer_lease_cb(c, op->cb, op->arg, err);
    end_op_free(op);
    return;
  }
  struct wop *w = kcld_coord_wop_new(c, e, KCLD_LEASE_END);
  if (!w) {
    kcld_coord_defer_lease_cb(c, op->cb, op->arg, KCLD_ENOMEM);
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
  kcld_coord_enqueue(c, e, w);
}

void kcld_coordinator_shard_ended(struct kcld_coordinator *c,
                                  const char *shard_id,
                                  const char *const *children,
                                  size_t n_children, kcld_lease_cb cb,
                                  void *arg)
{
  struct entry *e = held_entry(c, shard_id, !n_children || children, cb, arg);
  if (!e)
    return;
  const struct coord_stream *s = kcld_coord_stream_of(c, &e->lease);
  struct end_op *op = calloc(1, sizeof(*op));
  int rc = KCLD_ENOMEM;
  if (!s) {
    rc = KCLD_ELOST; /* not a lease of ours to end */
    goto fail;
  }
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
  rc = kcld_shard_sync_children(c->table, c->kin, s->name, s->id,
                                kcld_lease_shard(&e->lease),
                                (const char *const *)op->children,
                                op->n_children, on_children_created, op);
  if (rc < 0)
    goto fail;
  return;
fail:
  if (op)
    end_op_free(op);
  kcld_coord_defer_lease_cb(c, cb, arg, rc);
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
  kcld_coord_defer_parents_cb(c, op->cb, op->arg, err, err ? 0 : op->done);
  free(op);
}

static void on_parent_read(int err, const struct kcld_lease *lease, void *arg)
{
  struct parents_op *op = arg;
  if (!op->c->closing)
    kcld_coord_note_table(op->c, err);
  if (err && !op->err)
    op->err = err;
  if (!err && lease && !kcld_lease_is_finished(lease))
    op->done = 0;
  if (--op->pending == 0)
    parents_finish(op);
}

/* The lease key of a parent shard: its shard id, or in a multi-stream
 * table its key in the lease's stream.  NULL when out of memory or when
 * the parent id cannot be keyed (the caller then fails the call). */
static char *parent_key(const struct kcld_lease *l, const char *parent)
{
  char key[512];
  if (!l->stream_id)
    return strdup(parent);
  if (kcld_lease_key(key, sizeof(key), l->stream_id, parent) != 0)
    return NULL;
  return strdup(key);
}

void kcld_coordinator_parents_done(struct kcld_coordinator *c,
                                   const char *shard_id, kcld_parents_cb cb,
                                   void *arg)
{
  if (!cb)
    return;
  if (c->closing) {
    kcld_coord_defer_parents_cb(c, cb, arg, KCLD_ECANCELED, 0);
    return;
  }
  struct entry *e = kcld_coord_entry_find(c, shard_id);
  if (!e) {
    kcld_coord_defer_parents_cb(c, cb, arg, KCLD_ENOTFOUND, 0);
    return;
  }
  struct parents_op *op = calloc(1, sizeof(*op));
  if (!op) {
    kcld_coord_defer_parents_cb(c, cb, arg, KCLD_ENOMEM, 0);
    return;
  }
  *op = (struct parents_op){.c = c, .done = 1, .cb = cb, .arg = arg,
                            .pending = 1};
  /* Copy the parent ids: the entry may change while reads are out. */
  size_t np = e->lease.n_parents;
  char **ids = np ? calloc(np, sizeof(*ids)) : NULL;
  for (size_t i = 0; ids && i < np; i++)
    ids[i] = parent_key(&e->lease, e->lease.parents[i]);
  for (size_t i = 0; i < np; i++) {
    if (!ids || !ids[i]) {
      op->err = KCLD_ENOMEM;
      break;
    }
    struct entry *pe = kcld_coord_entry_find(c, ids[i]);
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

void kcld_coord_release_queue(struct kcld_coordinator *c, struct entry *e)
{
  struct wop *w = kcld_coord_wop_new(c, e, KCLD_LEASE_RELEASE);
  if (!w) {
    if (!c->release_err)
      c->release_err = KCLD_ENOMEM;
    return;
  }
  w->for_release_all = 1;
  c->release_pending++;
  kcld_coord_enqueue(c, e, w);
}

int kcld_coord_release_one(struct kcld_coordinator *c, struct entry *e,
                           kcld_lease_cb cb, void *arg)
{
  struct wop *w = kcld_coord_wop_new(c, e, KCLD_LEASE_RELEASE);
  if (!w)
    return KCLD_ENOMEM;
  w->cb = cb;
  w->arg = arg;
  kcld_coord_enqueue(c, e, w);
  return 0;
}

void kcld_coordinator_release(struct kcld_coordinator *c,
                              const char *shard_id, kcld_lease_cb cb,
                              void *arg)
{
  struct entry *e = held_entry(c, shard_id, 1, cb, arg);
  if (e && kcld_coord_release_one(c, e, cb, arg) != 0)
    kcld_coord_defer_lease_cb(c, cb, arg, KCLD_ENOMEM);
}

void kcld_coord_release_check(struct kcld_coordinator *c)
{
  if (!c->release_cb || c->release_pending > 0 || c->takes_inflight > 0)
    return;
  kcld_lease_cb cb = c->release_cb;
  c->release_cb = NULL;
  kcld_log(c->release_err ? KCLD_LOG_WARN : KCLD_LOG_INFO,
           "lease release finished", "worker", c->worker, "error",
           c->release_err ? kcld_strerror(c->release_err) : NULL, NULL);
  kcld_coord_defer_lease_cb(c, cb, c->release_arg, c->release_err);
}

void kcld_coord_release_done_one(struct kcld_coordinator *c, int err)
{
  if (err && !c->release_err)
    c->release_err = err;
  if (c->release_pending > 0)
    c->release_pending--;
  kcld_coord_release_check(c);
}

void kcld_coordinator_release_all(struct kcld_coordinator *c, kcld_lease_cb cb,
                                  void *arg)
{
  if (!cb)
    return;
  if (c->closing) {
    kcld_coord_defer_lease_cb(c, cb, arg, KCLD_ECANCELED);
    return;
  }
  if (c->release_cb) {
    kcld_coord_defer_lease_cb(c, cb, arg, KCLD_EINVAL);
    return;
  }
  c->releasing = 1;
  uv_timer_stop(&c->take_timer);
  uv_timer_stop(&c->sync_timer);
  uv_timer_stop(&c->start_timer);
  c->release_cb = cb;
  c->release_arg = arg;
  c->release_err = 0;
  c->release_pending = 1; /* held until every release is queued */
  kcld_coord_takes_drop(c); /* those not sent yet are not taken */
  size_t n = 0;
  for (size_t i = 0; i < c->n; i++)
    if (c->v[i]->held) {
      kcld_coord_release_queue(c, c->v[i]);
      n++;
    }
  kcld_log(KCLD_LOG_INFO, "releasing every held lease",
           KCLD_LOG_UINT("leases", n), NULL);
  kcld_coord_release_done_one(c, 0);
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

void kcld_coordinator_stalls(const struct kcld_coordinator *c,
                             kcld_coordinator_stall_cb cb, void *arg)
{
  for (size_t i = 0; i < c->n; i++) {
    const char *why = kcld_coord_entry_stall(c, c->v[i]);
    if (why)
      cb(c->v[i]->lease.shard_id, why, arg);
  }
}

const char *kcld_coordinator_shard_stall(const struct kcld_coordinator *c,
                                         const char *shard_id)
{
  const struct entry *e = kcld_coord_entry_find(c, shard_id);
  return e ? kcld_coord_entry_stall(c, e) : NULL;
}

void kcld_coordinator_health(const struct kcld_coordinator *c,
                             struct kcld_coordinator_health *out)
{
  memset(out, 0, sizeof(*out));
  out->table_missing = c->table_missing;
  out->table_missing_ms = c->table_missing_ms;
  for (size_t i = 0; i < c->n; i++)
    out->stalled += kcld_coord_entry_stall(c, c->v[i]) != NULL;
}

/* ======== Close ======== */

void kcld_coordinator_close(struct kcld_coordinator *c)
{
  if (!c || c->closing)
    return;
  c->closing = 1;
  uv_timer_t *timers[] = {&c->tick_timer, &c->take_timer, &c->sync_timer,
                          &c->defer_timer, &c->start_timer};
  /* Cancel what is in flight: the callbacks run now and queue the user's
   * answers (KCLD_ECANCELED). */
  kcld_dynamodb_close(c->db);
  c->db = NULL;
  kcld_kinesis_close(c->kin);
  c->kin = NULL;
  /* Writes still queued behind them. */
  kcld_coord_cancel_writes(c);
  kcld_coord_takes_drop(c);
  if (c->release_cb) {
    c->release_pending = 0;
    c->takes_inflight = 0;
    if (!c->release_err)
      c->release_err = KCLD_ECANCELED;
    kcld_coord_release_check(c);
  }
  /* Answer every waiting caller; ready, acquired and lost are dropped. */
  kcld_coord_defer_flush(c);
  for (size_t i = 0; i < 5; i++)
    uv_close((uv_handle_t *)timers[i], on_handle_closed);
  uv_close((uv_handle_t *)&c->expiry_check, on_handle_closed);
}
