/* test_coordinator.c — the lease coordinator against kinesalite and dynalite,
 * several coordinators in one loop playing several workers (failover 600 ms,
 * take interval 1200 ms, the default ratio):
 *
 *  - one worker takes every shard; the items carry exactly the KCL's
 *    attributes after take, renew, checkpoint and release, and an attribute
 *    written by another client survives;
 *  - a competing writer bumps the counter: lost at the next renew, later
 *    checkpoints fail with KCLD_ELOST; a renew whose answer was lost is
 *    recognised on the re-read and the lease is kept;
 *  - three workers on 8 shards converge to 3/3/2 within 3 take intervals;
 *    one closed without releasing: its leases are taken within failover +
 *    one take interval; release_all: peers take them at their next take
 *    (measured times are printed);
 *  - a zombie whose writes hang loses its lease by its own clock, and its
 *    late writes cannot touch the new owner's lease;
 *  - a lease table written in the KCL's format (owner "stale-worker",
 *    checkpoints mid-stream) is taken over with the checkpoints kept; a
 *    KCL multi-stream table is refused at start-up, nothing written,
 *    unless the coordinator is given its streams: then two streams' leases
 *    are taken over at their checkpoints, the missing one created in the
 *    KCL's format, a stream not configured left alone (not taken, its
 *    finished leases not deleted);
 *  - a lease at a checkpoint no worker can start from is never taken and
 *    reported stalled (invalid_checkpoint) until it is fixed; the
 *    AT_TIMESTAMP sentinel is a start-up error without a timestamp and
 *    taken with one; a deleted lease table is noticed and reported
 *    (lease_table_missing), the leases given up, the table not recreated;
 *  - shard sync after SplitShard and MergeShards (LATEST becomes
 *    TRIM_HORIZON below a leased parent), parents_done, shard_ended and the
 *    cleanup of finished parents after the delay;
 *  - 80 leases, more than the takes and creations let in flight at once,
 *    are all held and renewed; a fresh table on a resharded stream gets the
 *    parent's lease first (a failed parent create leaves no child lease);
 *  - start-up against a stream that does not exist reports the error;
 *    start-up rides out transient faults of each step (500s, throttles,
 *    cut connections) for as long as they last, fails at once on a refusal
 *    (naming the step and the call), and ends quietly on release_all. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "../harness/awssync.h"
#include "../harness/fault.h"
#include "../harness/harness.h"
#include "aws/call.h"
#include "aws/credentials.h"
#include "aws/dynamodb.h"
#include "aws/http.h"
#include "aws/kinesis.h"
#include "err.h"
#include "lease/coordinator.h"
#include "lease/table.h"

#define F_MS 600
#define T_MS 1200
#define MAXS 16

static struct kcld_emu s_emu;
static int s_seq;

/* ======== Environment ======== */

struct env {
  uv_loop_t loop;
  struct kcld_http *http;
  struct kcld_credentials *creds;
  struct kcld_aws *aws;
  struct kcld_aws *aws_fault;   /* DynamoDB through the fault endpoint */
  struct kcld_dynamodb *db;
  struct kcld_kinesis *kin;
  struct kcld_lease_table *t;
  char table[64];
  char stream[64];
};

static struct kcld_aws *aws_client(struct env *e, const char *ddb_url)
{
  struct kcld_aws *aws = NULL;
  struct kcld_aws_opts ao = {.loop = &e->loop, .http = e->http,
                             .creds = e->creds, .region = "us-east-1",
                             .timeout_ms = 20000};
  ao.endpoint[KCLD_AWS_DYNAMODB] = ddb_url;
  ao.endpoint[KCLD_AWS_KINESIS] = kcld_emu_url(&s_emu, "kinesis");
  assert_int_equal(kcld_aws_new(&ao, &aws), 0);
  return aws;
}

static void env_open(struct env *e)
{
  memset(e, 0, sizeof(*e));
  assert_int_equal(uv_loop_init(&e->loop), 0);
  assert_int_equal(kcld_http_new(&e->loop, NULL, &e->http), 0);
  struct kcld_credentials_opts co = {.loop = &e->loop,
                                     .access_key_id = "AKIDCOORDTEST",
                                     .secret_access_key = "coord-test-key"};
  assert_int_equal(kcld_credentials_new(&co, &e->creds), 0);
  e->aws = aws_client(e, kcld_emu_url(&s_emu, "dynamodb"));
  assert_int_equal(kcld_dynamodb_new(e->aws, &e->loop, &e->db), 0);
  assert_int_equal(kcld_kinesis_new(e->aws, &e->loop, &e->kin), 0);
  s_seq++;
  snprintf(e->table, sizeof(e->table), "kcld-coord-%d", s_seq);
  snprintf(e->stream, sizeof(e->stream), "kcld-coord-stream-%d", s_seq);
  assert_int_equal(kcld_lease_table_new(e->db, e->table, 0, &e->t), 0);
}

static void env_close(struct env *e)
{
  kcld_dynamodb_close(e->db);
  kcld_kinesis_close(e->kin);
  kcld_lease_table_free(e->t);
  if (e->aws_fault)
    kcld_aws_close(e->aws_fault);
  kcld_aws_close(e->aws);
  kcld_credentials_close(e->creds);
  kcld_http_close(e->http);
  kcld_test_loop_finish(&e->loop);
}

/* ---- Waiting ---- */

struct waiter {
  int (*pred)(void *);
  void *ctx;
  int done;
  uv_timer_t t;
};

static void on_poll(uv_timer_t *t)
{
  struct waiter *w = t->data;
  if (w->pred(w->ctx))
    w->done = 1;
}

/* Runs the loop until pred(ctx) holds; returns the milliseconds it took, or
 * -1 after timeout_ms. */
static long run_until(struct env *e, int (*pred)(void *), void *ctx,
                      unsigned timeout_ms)
{
  struct waiter w = {.pred = pred, .ctx = ctx};
  uint64_t t0 = uv_hrtime();
  uv_timer_init(&e->loop, &w.t);
  w.t.data = &w;
  uv_timer_start(&w.t, on_poll, 2, 2);
  int ok = pred(ctx) || kcld_test_run_until(&e->loop, &w.done, timeout_ms);
  uv_close((uv_handle_t *)&w.t, NULL);
  uv_run(&e->loop, UV_RUN_NOWAIT);
  return ok ? (long)((uv_hrtime() - t0) / 1000000) : -1;
}

static int never(void *ctx)
{
  (void)ctx;
  return 0;
}

static void run_for(struct env *e, unsigned ms)
{
  run_until(e, never, NULL, ms);
}

static int flag_set(void *ctx)
{
  return *(int *)ctx;
}

/* ---- Kinesis ---- */

static void on_kdone(const struct kcld_svc_status *st, void *arg)
{
  int *r = arg;
  r[0] = st->err;
  r[1] = 1;
}

static void on_active(const struct kcld_kinesis_stream_summary *s, void *arg)
{
  int *r = arg;
  r[0] = s->st.err;
  r[1] = 1;
}

static void wait_stream(struct env *e)
{
  int r[2] = {0, 0};
  assert_int_equal(kcld_kinesis_wait_active(e->kin, e->stream, 20000,
                                            on_active, r),
                   0);
  assert_true(run_until(e, flag_set, &r[1], 25000) >= 0);
  assert_int_equal(r[0], 0);
}

static void create_stream(struct env *e, int shards)
{
  int r[2] = {0, 0};
  assert_int_equal(kcld_kinesis_create_stream(e->kin, e->stream, shards,
                                              on_kdone, r),
                   0);
  assert_true(run_until(e, flag_set, &r[1], 10000) >= 0);
  assert_int_equal(r[0], 0);
  wait_stream(e);
}

static void split_shard(struct env *e, const char *shard, const char *hash)
{
  int r[2] = {0, 0};
  assert_int_equal(kcld_kinesis_split_shard(e->kin, e->stream, shard, hash,
                                            on_kdone, r),
                   0);
  assert_true(run_until(e, flag_set, &r[1], 10000) >= 0);
  assert_int_equal(r[0], 0);
  wait_stream(e);
}

static void merge_shards(struct env *e, const char *a, const char *b)
{
  int r[2] = {0, 0};
  assert_int_equal(kcld_kinesis_merge_shards(e->kin, e->stream, a, b,
                                             on_kdone, r),
                   0);
  assert_true(run_until(e, flag_set, &r[1], 10000) >= 0);
  assert_int_equal(r[0], 0);
  wait_stream(e);
}

/* ---- Raw table access ---- */

struct raw {
  int done;
  int err;
  json_t *json;
};

static void on_raw(const struct kcld_dynamodb_result *res, void *arg)
{
  struct raw *r = arg;
  r->err = res->st.err;
  if (res->item)
    r->json = json_incref(res->item);
  r->done = 1;
}

static json_t *key_json(const char *id)
{
  return json_pack("{s:{s:s}}", "leaseKey", "S", id);
}

static json_t *raw_get(struct env *e, const char *id)
{
  struct raw r = {0};
  json_t *key = key_json(id);
  assert_int_equal(kcld_dynamodb_get_item(e->db, e->table, key, 1, on_raw,
                                          &r),
                   0);
  json_decref(key);
  assert_true(run_until(e, flag_set, &r.done, 10000) >= 0);
  assert_int_equal(r.err, 0);
  return r.json;
}

/* UpdateItem as another client; returns its error (a condition may fail). */
static int raw_update(struct env *e, const char *id, const char *expr,
                      const char *cond, json_t *names, json_t *values)
{
  struct raw r = {0};
  json_t *key = key_json(id);
  struct kcld_dynamodb_cond c = {.condition = cond, .names = names,
                                 .values = values};
  assert_int_equal(kcld_dynamodb_update_item(e->db, e->table, key, expr, &c,
                                             on_raw, &r),
                   0);
  json_decref(key);
  json_decref(names);
  json_decref(values);
  assert_true(run_until(e, flag_set, &r.done, 10000) >= 0);
  json_decref(r.json);
  return r.err;
}

static void raw_put(struct env *e, json_t *item)
{
  struct raw r = {0};
  assert_int_equal(kcld_dynamodb_put_item(e->db, e->table, item, NULL,
                                          on_raw, &r),
                   0);
  json_decref(item);
  assert_true(run_until(e, flag_set, &r.done, 10000) >= 0);
  assert_int_equal(r.err, 0);
}

static const char *item_s(const json_t *it, const char *name)
{
  return kcld_dynamodb_as_s(kcld_dynamodb_attr(it, name));
}

static int64_t item_n(const json_t *it, const char *name)
{
  int64_t v = -1;
  assert_int_equal(kcld_dynamodb_as_i64(kcld_dynamodb_attr(it, name), &v), 0);
  return v;
}

/* The whole table as leases. */
struct snapshot {
  int done;
  int err;
  size_t n;
  struct kcld_lease l[64];
};

static void on_snap(const struct kcld_svc_status *st,
                    struct kcld_lease *leases, size_t n, void *arg)
{
  struct snapshot *s = arg;
  s->err = st->err;
  for (size_t i = 0; i < n && i < 64; i++) {
    s->l[i] = leases[i];
    memset(&leases[i], 0, sizeof(leases[i]));
  }
  s->n = n < 64 ? n : 64;
  s->done = 1;
}

static void snap_take(struct env *e, struct snapshot *s)
{
  memset(s, 0, sizeof(*s));
  assert_int_equal(kcld_lease_table_scan(e->t, on_snap, s), 0);
  assert_true(run_until(e, flag_set, &s->done, 10000) >= 0);
  assert_int_equal(s->err, 0);
}

static void snap_free(struct snapshot *s)
{
  for (size_t i = 0; i < s->n; i++)
    kcld_lease_clean_up(&s->l[i]);
  s->n = 0;
}

static size_t snap_owned_by(const struct snapshot *s, const char *owner)
{
  size_t n = 0;
  for (size_t i = 0; i < s->n; i++)
    if ((!owner && !s->l[i].owner) ||
        (owner && s->l[i].owner && strcmp(s->l[i].owner, owner) == 0))
      n++;
  return n;
}

/* ======== Workers ======== */

struct worker {
  struct env *env;
  char id[32];
  struct kcld_coordinator *c;
  int ready;
  int ready_err;
  char ready_why[800];
  char held[MAXS][96];     /* lease keys (multi-stream ones are long) */
  char cp_at_acquire[MAXS][64];
  int stream_at_acquire[MAXS];  /* kcld_coordinator_stream_index */
  int n_held;
  int acquired;
  int lost;
  char last_lost[96];
  int closed;
};

static int held_index(const struct worker *w, const char *id)
{
  for (int i = 0; i < w->n_held; i++)
    if (strcmp(w->held[i], id) == 0)
      return i;
  return -1;
}

static void on_ready(int err, const char *why, void *arg)
{
  struct worker *w = arg;
  w->ready = 1;
  w->ready_err = err;
  snprintf(w->ready_why, sizeof(w->ready_why), "%s", why ? why : "");
}

static void on_acquired(const struct kcld_lease *l, void *arg)
{
  struct worker *w = arg;
  assert_int_equal(held_index(w, l->shard_id), -1);
  assert_true(w->n_held < MAXS);
  assert_non_null(l->owner);
  assert_string_equal(l->owner, w->id);
  snprintf(w->held[w->n_held], sizeof(w->held[0]), "%s", l->shard_id);
  snprintf(w->cp_at_acquire[w->n_held], sizeof(w->cp_at_acquire[0]), "%s",
           l->checkpoint);
  w->stream_at_acquire[w->n_held] = kcld_coordinator_stream_index(w->c, l);
  w->n_held++;
  w->acquired++;
}

/* Forgets a shard given up on purpose (shard end, release). */
static void forget(struct worker *w, const char *shard_id)
{
  int i = held_index(w, shard_id);
  assert_true(i >= 0);
  w->n_held--;
  memmove(w->held[i], w->held[i + 1],
          sizeof(w->held[0]) * (size_t)(w->n_held - i));
  memmove(w->cp_at_acquire[i], w->cp_at_acquire[i + 1],
          sizeof(w->cp_at_acquire[0]) * (size_t)(w->n_held - i));
  memmove(&w->stream_at_acquire[i], &w->stream_at_acquire[i + 1],
          sizeof(w->stream_at_acquire[0]) * (size_t)(w->n_held - i));
}

static void on_lost(const char *shard_id, void *arg)
{
  struct worker *w = arg;
  forget(w, shard_id);
  w->lost++;
  snprintf(w->last_lost, sizeof(w->last_lost), "%s", shard_id);
}

static struct kcld_coordinator_opts default_opts(struct env *e,
                                                 struct worker *w)
{
  struct kcld_coordinator_opts o = {
    .loop = &e->loop, .aws = e->aws, .table = e->table, .stream = e->stream,
    .worker_id = w->id, .failover_ms = F_MS, .take_interval_ms = T_MS,
    .shard_sync_interval_ms = 60000, .cleanup_delay_ms = 0, .max_steal = 1,
    .initial_position = KCLD_POS_TRIM_HORIZON};
  o.cbs = (struct kcld_coordinator_cbs){.ready = on_ready,
                                       .acquired = on_acquired,
                                       .lost = on_lost, .arg = w};
  return o;
}

static void worker_start_opts(struct worker *w, struct env *e,
                              const char *id,
                              const struct kcld_coordinator_opts *o)
{
  memset(w, 0, sizeof(*w));
  w->env = e;
  snprintf(w->id, sizeof(w->id), "%s", id);
  struct kcld_coordinator_opts oo = *o;
  oo.worker_id = w->id;
  oo.cbs.arg = w;
  assert_int_equal(kcld_coordinator_start(&oo, &w->c), 0);
}

static void worker_start(struct worker *w, struct env *e, const char *id)
{
  struct kcld_coordinator_opts o = default_opts(e, w);
  worker_start_opts(w, e, id, &o);
}

/* Starts worker `id` with its DynamoDB calls through the fault endpoint. */
static void worker_start_via_fault(struct worker *w, struct env *e,
                                   const char *id)
{
  if (!e->aws_fault)
    e->aws_fault = aws_client(e, kcld_emu_url(&s_emu, "fault"));
  struct kcld_coordinator_opts o = default_opts(e, w);
  o.aws = e->aws_fault;
  worker_start_opts(w, e, id, &o);
}

static void worker_close(struct worker *w)
{
  if (w->closed)
    return;
  kcld_coordinator_close(w->c);
  w->closed = 1;
}

static void wait_ready(struct worker *w)
{
  assert_true(run_until(w->env, flag_set, &w->ready, 15000) >= 0);
  assert_int_equal(w->ready_err, 0);
}

/* ---- Synchronous coordinator calls ---- */

struct call {
  int done;
  int err;
  int flag;
  int order;   /* completion number */
};

static int s_completions;

static void on_call(int err, void *arg)
{
  struct call *c = arg;
  c->err = err;
  c->order = ++s_completions;
  c->done++;
}

static void on_parents(int err, int done, void *arg)
{
  struct call *c = arg;
  c->err = err;
  c->flag = done;
  c->done++;
}

static int checkpoint(struct worker *w, const char *shard, const char *seq,
                      uint64_t sub)
{
  struct call c = {0};
  kcld_coordinator_checkpoint(w->c, shard, seq, sub, on_call, &c);
  assert_int_equal(c.done, 0); /* never inside the call */
  assert_true(run_until(w->env, flag_set, &c.done, 10000) >= 0);
  assert_int_equal(c.done, 1);
  return c.err;
}

static int parents_done(struct worker *w, const char *shard, int *err)
{
  struct call c = {0};
  kcld_coordinator_parents_done(w->c, shard, on_parents, &c);
  assert_int_equal(c.done, 0);
  assert_true(run_until(w->env, flag_set, &c.done, 10000) >= 0);
  *err = c.err;
  return c.flag;
}

static int shard_ended(struct worker *w, const char *shard,
                       const char *const *kids, size_t n)
{
  struct call c = {0};
  kcld_coordinator_shard_ended(w->c, shard, kids, n, on_call, &c);
  assert_true(run_until(w->env, flag_set, &c.done, 10000) >= 0);
  return c.err;
}

static int release_all(struct worker *w)
{
  struct call c = {0};
  kcld_coordinator_release_all(w->c, on_call, &c);
  assert_true(run_until(w->env, flag_set, &c.done, 10000) >= 0);
  return c.err;
}

/* ======== Tests ======== */

struct count_pred {
  struct worker *w;
  int n;
};

static int holds_n(void *ctx)
{
  struct count_pred *p = ctx;
  return p->w->n_held == p->n;
}

static int holds_at_least(void *ctx)
{
  struct count_pred *p = ctx;
  return p->w->n_held >= p->n;
}

static const char *const s_owned_attrs[] = {
  "leaseKey", "leaseOwner", "leaseCounter", "checkpoint",
  "checkpointSubSequenceNumber", "ownerSwitchesSinceCheckpoint",
  "startingHashKey", "endingHashKey", NULL};

/* The item has exactly `names` plus `extra` (when not NULL). */
static void assert_attr_names(const json_t *it, const char *const *names,
                              const char *extra)
{
  size_t n = 0;
  for (; names[n]; n++)
    assert_non_null(kcld_dynamodb_attr(it, names[n]));
  if (extra) {
    assert_non_null(kcld_dynamodb_attr(it, extra));
    n++;
  }
  assert_int_equal(json_object_size(it), n);
}

static void test_single_worker(void **state)
{
  (void)state;
  struct env e;
  env_open(&e);
  create_stream(&e, 4);
  struct worker w;
  worker_start(&w, &e, "worker-solo");
  assert_int_equal(w.ready, 0); /* never inside start */
  wait_ready(&w);
  struct count_pred p = {&w, 4};
  long ms = run_until(&e, holds_n, &p, 5000);
  assert_true(ms >= 0);
  printf("single worker took 4 shards %ld ms after ready\n", ms);
  assert_int_equal(kcld_coordinator_held(w.c), 4);
  struct kcld_coordinator_stats st;
  kcld_coordinator_stats(w.c, &st);
  assert_int_equal(st.taken, 4);
  assert_int_equal(st.stolen, 0);
  assert_int_equal(st.lost, 0);
  for (int i = 0; i < 4; i++)
    assert_string_equal(w.cp_at_acquire[i], "TRIM_HORIZON");

  /* The table was created by the coordinator, with the KCL's key. */
  const char *s0 = "shardId-000000000000";
  json_t *it = raw_get(&e, s0);
  assert_non_null(it);
  assert_attr_names(it, s_owned_attrs, NULL);
  assert_string_equal(item_s(it, "leaseOwner"), "worker-solo");
  assert_string_equal(item_s(it, "checkpoint"), "TRIM_HORIZON");
  assert_int_equal(item_n(it, "checkpointSubSequenceNumber"), 0);
  assert_int_equal(item_n(it, "ownerSwitchesSinceCheckpoint"), 0);
  assert_string_equal(item_s(it, "startingHashKey"), "0");
  int64_t c0 = item_n(it, "leaseCounter");
  assert_true(c0 >= 1);
  json_decref(it);

  /* Another client's attribute, added while we hold it. */
  assert_int_equal(raw_update(&e, s0, "SET #x = :x", NULL,
                              json_pack("{s:s}", "#x", "javaOnlyAttr"),
                              json_pack("{s:{s:s}}", ":x", "S", "keep")),
                   0);

  /* Renewals: the counter moves about every F/3, nothing else does. */
  run_for(&e, F_MS + 50);
  it = raw_get(&e, s0);
  int64_t c1 = item_n(it, "leaseCounter");
  assert_true(c1 >= c0 + 2);
  assert_attr_names(it, s_owned_attrs, "javaOnlyAttr");
  assert_string_equal(item_s(it, "javaOnlyAttr"), "keep");
  assert_string_equal(item_s(it, "leaseOwner"), "worker-solo");
  json_decref(it);
  assert_int_equal(w.lost, 0);

  /* Checkpoint. */
  const char *seq = "49590338271490256608559692538361571095921575989136588898";
  assert_int_equal(checkpoint(&w, s0, seq, 3), 0);
  it = raw_get(&e, s0);
  assert_attr_names(it, s_owned_attrs, "javaOnlyAttr");
  assert_string_equal(item_s(it, "checkpoint"), seq);
  assert_int_equal(item_n(it, "checkpointSubSequenceNumber"), 3);
  assert_int_equal(item_n(it, "ownerSwitchesSinceCheckpoint"), 0);
  assert_true(item_n(it, "leaseCounter") > c1);
  assert_string_equal(item_s(it, "javaOnlyAttr"), "keep");
  json_decref(it);
  /* Five checkpoints at once, renewals going on: each write waits for the
   * one before it, so every expected counter is right and none fails. */
  {
    struct call cs[5];
    memset(cs, 0, sizeof(cs));
    char seqs[5][16];
    for (int i = 0; i < 5; i++) {
      snprintf(seqs[i], sizeof(seqs[i]), "%d", 900 + i);
      kcld_coordinator_checkpoint(w.c, s0, seqs[i], 0, on_call, &cs[i]);
    }
    for (int i = 0; i < 5; i++) {
      assert_true(run_until(&e, flag_set, &cs[i].done, 5000) >= 0);
      assert_int_equal(cs[i].err, 0);
      if (i > 0)
        assert_true(cs[i].order > cs[i - 1].order); /* in order */
    }
    it = raw_get(&e, s0);
    assert_string_equal(item_s(it, "checkpoint"), "904");
    assert_int_equal(item_n(it, "checkpointSubSequenceNumber"), 0);
    json_decref(it);
    assert_int_equal(w.lost, 0);
    assert_int_equal(checkpoint(&w, s0, seq, 3), 0);
  }
  /* A checkpoint for a shard we do not hold. */
  assert_int_equal(checkpoint(&w, "shardId-000000000099", seq, 0),
                   KCLD_ELOST);

  /* Release: no owner, the rest as it was. */
  assert_int_equal(release_all(&w), 0);
  assert_int_equal(kcld_coordinator_held(w.c), 0);
  assert_int_equal(w.lost, 0);
  struct snapshot s;
  snap_take(&e, &s);
  assert_int_equal(s.n, 4);
  assert_int_equal(snap_owned_by(&s, NULL), 4);
  snap_free(&s);
  it = raw_get(&e, s0);
  assert_null(kcld_dynamodb_attr(it, "leaseOwner"));
  assert_string_equal(item_s(it, "checkpoint"), seq);
  assert_int_equal(item_n(it, "checkpointSubSequenceNumber"), 3);
  assert_string_equal(item_s(it, "javaOnlyAttr"), "keep");
  json_decref(it);
  /* After release nothing is written any more. */
  assert_int_equal(checkpoint(&w, s0, seq, 4), KCLD_ELOST);
  run_for(&e, F_MS);
  snap_take(&e, &s);
  assert_int_equal(snap_owned_by(&s, NULL), 4);
  snap_free(&s);
  worker_close(&w);
  env_close(&e);
}

static int lost_once(void *ctx)
{
  return ((struct worker *)ctx)->lost > 0;
}

static void test_competing_writer(void **state)
{
  (void)state;
  struct env e;
  env_open(&e);
  create_stream(&e, 1);
  struct worker w;
  worker_start(&w, &e, "worker-victim");
  wait_ready(&w);
  struct count_pred p = {&w, 1};
  assert_true(run_until(&e, holds_n, &p, 5000) >= 0);
  const char *s0 = "shardId-000000000000";
  assert_int_equal(checkpoint(&w, s0, "1000", 0), 0);

  /* Someone else writes a new owner and counter. */
  assert_int_equal(
    raw_update(&e, s0, "SET #o = :o, #c = #c + :k", NULL,
               json_pack("{s:s, s:s}", "#o", "leaseOwner", "#c",
                         "leaseCounter"),
               json_pack("{s:{s:s}, s:{s:s}}", ":o", "S", "intruder", ":k",
                         "N", "5")),
    0);
  long ms = run_until(&e, lost_once, &w, 3000);
  assert_true(ms >= 0);
  printf("lease lost %ld ms after a competing write (renew every %d ms)\n",
         ms, F_MS / 3);
  assert_true(ms <= F_MS / 3 + 150);
  assert_string_equal(w.last_lost, s0);
  assert_int_equal(kcld_coordinator_held(w.c), 0);
  struct kcld_coordinator_stats st;
  kcld_coordinator_stats(w.c, &st);
  assert_int_equal(st.taken, 1);
  assert_int_equal(st.lost, 1);
  assert_int_equal(checkpoint(&w, s0, "2000", 0), KCLD_ELOST);
  json_t *it = raw_get(&e, s0);
  assert_string_equal(item_s(it, "leaseOwner"), "intruder");
  assert_string_equal(item_s(it, "checkpoint"), "1000");
  json_decref(it);

  /* The intruder never renews: after failover_time it is taken back (an
   * owner switch). */
  ms = run_until(&e, holds_n, &p, 4000);
  assert_true(ms >= 0);
  printf("intruder's unrenewed lease taken back after %ld ms\n", ms);
  it = raw_get(&e, s0);
  assert_string_equal(item_s(it, "leaseOwner"), "worker-victim");
  assert_int_equal(item_n(it, "ownerSwitchesSinceCheckpoint"), 1);
  assert_string_equal(item_s(it, "checkpoint"), "1000");
  json_decref(it);
  kcld_coordinator_stats(w.c, &st);
  assert_int_equal(st.taken, 2); /* expired: taken, not stolen */
  assert_int_equal(st.stolen, 0);
  assert_int_equal(st.lost, 1);
  assert_int_equal(checkpoint(&w, s0, "3000", 0), 0);
  worker_close(&w);
  env_close(&e);
}

static void test_renew_reread_success(void **state)
{
  (void)state;
  struct env e;
  env_open(&e);
  create_stream(&e, 1);
  struct worker w;
  worker_start(&w, &e, "worker-reread");
  wait_ready(&w);
  struct count_pred p = {&w, 1};
  assert_true(run_until(&e, holds_n, &p, 5000) >= 0);
  const char *s0 = "shardId-000000000000";

  /* Land "our" next renew behind the coordinator's back: counter + 1 with
   * our owner, conditional on the counter it expects, so that its next
   * renew fails the condition and must recognise the item on the re-read. */
  int64_t c = -1;
  for (int tries = 0; tries < 20; tries++) {
    json_t *it = raw_get(&e, s0);
    c = item_n(it, "leaseCounter");
    json_decref(it);
    char cur[24], next[24];
    snprintf(cur, sizeof(cur), "%lld", (long long)c);
    snprintf(next, sizeof(next), "%lld", (long long)c + 1);
    int rc = raw_update(
      &e, s0, "SET #c = :n", "#c = :c AND #o = :o",
      json_pack("{s:s, s:s}", "#c", "leaseCounter", "#o", "leaseOwner"),
      json_pack("{s:{s:s}, s:{s:s}, s:{s:s}}", ":n", "N", next, ":c", "N",
                cur, ":o", "S", "worker-reread"));
    if (rc == 0)
      break;
    assert_int_equal(rc, KCLD_ECONDITION); /* a renew got in between */
    c = -1;
  }
  assert_true(c >= 0);
  /* Two failover times pass: renewals go on from the re-read counter. */
  run_for(&e, 2 * F_MS);
  assert_int_equal(w.lost, 0);
  assert_int_equal(kcld_coordinator_held(w.c), 1);
  json_t *it = raw_get(&e, s0);
  assert_true(item_n(it, "leaseCounter") >= c + 4);
  assert_string_equal(item_s(it, "leaseOwner"), "worker-reread");
  json_decref(it);
  assert_int_equal(checkpoint(&w, s0, "42", 0), 0);
  worker_close(&w);
  env_close(&e);
}

/* ---- Three workers ---- */

struct fleet {
  struct worker *w[3];
  int n;
};

static int converged_332(void *ctx)
{
  struct fleet *f = ctx;
  int c[3] = {0, 0, 0}, sum = 0;
  for (int i = 0; i < f->n; i++) {
    c[i] = f->w[i]->n_held;
    sum += c[i];
  }
  if (sum != 8)
    return 0;
  int twos = 0, threes = 0;
  for (int i = 0; i < 3; i++) {
    twos += c[i] == 2;
    threes += c[i] == 3;
  }
  return twos == 1 && threes == 2;
}

/* The first two workers hold all 8 leases between them, none twice.  (A
 * lease taken by one and stolen by the other within a take interval is
 * counted by both until the loser's next renewal: that is not "all".) */
static int two_hold_all(void *ctx)
{
  struct fleet *f = ctx;
  const struct worker *a = f->w[0], *b = f->w[1];
  if (a->n_held + b->n_held != 8)
    return 0;
  for (int i = 0; i < a->n_held; i++)
    if (held_index(b, a->held[i]) >= 0)
      return 0;
  return 1;
}

static int two_hold_four_each(void *ctx)
{
  struct fleet *f = ctx;
  return two_hold_all(ctx) && f->w[0]->n_held == 4;
}

static int first_holds_all(void *ctx)
{
  struct fleet *f = ctx;
  return f->w[0]->n_held == 8;
}

static void test_three_workers(void **state)
{
  (void)state;
  struct env e;
  env_open(&e);
  create_stream(&e, 8);
  struct worker a, b, c;
  uint64_t t0 = uv_hrtime();
  worker_start(&a, &e, "worker-a");
  worker_start(&b, &e, "worker-b");
  worker_start(&c, &e, "worker-c");
  struct fleet f = {{&a, &b, &c}, 3};
  wait_ready(&a);
  wait_ready(&b);
  wait_ready(&c);
  long ms = run_until(&e, converged_332, &f, 6 * T_MS);
  long total = (long)((uv_hrtime() - t0) / 1000000);
  assert_true(ms >= 0);
  printf("3 workers on 8 shards: 3/3/2 after %ld ms from start "
         "(take interval %d ms, limit %d ms)\n", total, T_MS, 3 * T_MS);
  assert_true(total <= 3 * T_MS);
  /* Stable, and the table agrees. */
  int lost_before = a.lost + b.lost + c.lost;
  run_for(&e, 2 * T_MS);
  assert_true(converged_332(&f));
  assert_int_equal(a.lost + b.lost + c.lost, lost_before);
  struct snapshot s;
  snap_take(&e, &s);
  assert_int_equal(s.n, 8);
  assert_int_equal(snap_owned_by(&s, "worker-a"), (size_t)a.n_held);
  assert_int_equal(snap_owned_by(&s, "worker-b"), (size_t)b.n_held);
  assert_int_equal(snap_owned_by(&s, "worker-c"), (size_t)c.n_held);
  snap_free(&s);
  for (int i = 0; i < 3; i++) {
    struct kcld_coordinator_stats st;
    assert_int_equal(kcld_coordinator_held(f.w[i]->c),
                     (size_t)f.w[i]->n_held);
    /* Every lease held came in by a take or a steal and is not lost. */
    kcld_coordinator_stats(f.w[i]->c, &st);
    assert_int_equal(st.taken + st.stolen - st.lost,
                     (uint64_t)f.w[i]->n_held);
    assert_int_equal(st.lost, (uint64_t)f.w[i]->lost);
  }

  /* worker-c dies without releasing. */
  int c_had = c.n_held;
  worker_close(&c);
  ms = run_until(&e, two_hold_all, &f, 4 * T_MS);
  assert_true(ms >= 0);
  printf("worker closed without release (%d leases): taken over after %ld ms "
         "(failover %d + take interval %d = %d ms)\n",
         c_had, ms, F_MS, T_MS, F_MS + T_MS);
  assert_true(ms <= F_MS + T_MS);
  snap_take(&e, &s);
  assert_int_equal(snap_owned_by(&s, "worker-c"), 0);
  assert_int_equal(snap_owned_by(&s, "worker-a") +
                     snap_owned_by(&s, "worker-b"),
                   8);
  snap_free(&s);
  /* Each worker sees the other's leases on its own clock, so one may steal
   * once more before both settle at target. */
  assert_true(run_until(&e, two_hold_four_each, &f, F_MS + T_MS) >= 0);

  /* worker-b shuts down gracefully. */
  int a_lost = a.lost;
  assert_int_equal(release_all(&b), 0);
  assert_int_equal(kcld_coordinator_held(b.c), 0);
  ms = run_until(&e, first_holds_all, &f, 4 * T_MS);
  assert_true(ms >= 0);
  printf("release_all: peer took the 4 released leases after %ld ms "
         "(take interval %d ms)\n", ms, T_MS);
  assert_true(ms <= T_MS);
  assert_int_equal(a.lost, a_lost);
  snap_take(&e, &s);
  assert_int_equal(snap_owned_by(&s, "worker-a"), 8);
  snap_free(&s);
  worker_close(&a);
  worker_close(&b);
  env_close(&e);
}

/* ---- Zombie ---- */

/* The fault endpoint in front of dynalite runs these steps (a JSON
 * array), then passes everything on. */
static void fault_steps(const char *steps)
{
  assert_int_equal(kcld_fault_steps(kcld_emu_url(&s_emu, "fault"),
                                    kcld_emu_url(&s_emu, "dynamodb"), steps),
                   0);
}

static void test_zombie(void **state)
{
  (void)state;
  fault_steps("[]");
  struct env e;
  env_open(&e);
  create_stream(&e, 1);
  struct worker z, h;
  worker_start_via_fault(&z, &e, "worker-zombie");
  wait_ready(&z);
  struct count_pred pz = {&z, 1};
  assert_true(run_until(&e, holds_n, &pz, 5000) >= 0);
  const char *s0 = "shardId-000000000000";
  assert_int_equal(checkpoint(&z, s0, "100", 0), 0);

  /* From now on the zombie's writes hang for 4 s before they go through. */
  fault_steps("[{\"target\":\"UpdateItem\",\"delay_ms\":4000,"
              "\"times\":1000}]");
  long ms = run_until(&e, lost_once, &z, 3000);
  assert_true(ms >= 0);
  printf("zombie lost its lease by its own clock %ld ms after its writes "
         "began to hang (failover %d ms)\n", ms, F_MS);
  assert_true(ms <= F_MS + 30); /* by F after its last renewal began */
  struct kcld_coordinator_stats st;
  kcld_coordinator_stats(z.c, &st);
  assert_int_equal(st.taken, 1);
  assert_int_equal(st.lost, 1);
  assert_int_equal(checkpoint(&z, s0, "200", 0), KCLD_ELOST);

  /* A healthy worker takes it once it expires. */
  worker_start(&h, &e, "worker-healthy");
  wait_ready(&h);
  struct count_pred ph = {&h, 1};
  ms = run_until(&e, holds_n, &ph, 5000);
  assert_true(ms >= 0);
  printf("healthy worker took the zombie's lease %ld ms after ready\n", ms);
  assert_int_equal(checkpoint(&h, s0, "300", 0), 0);
  /* Let the zombie's hung writes land: none may change the new owner's
   * lease (they are conditional on what the zombie last saw). */
  run_for(&e, 4500);
  json_t *it = raw_get(&e, s0);
  assert_string_equal(item_s(it, "leaseOwner"), "worker-healthy");
  assert_string_equal(item_s(it, "checkpoint"), "300");
  json_decref(it);
  assert_int_equal(h.lost, 0);
  assert_int_equal(h.n_held, 1);
  assert_int_equal(z.n_held, 0);
  worker_close(&z);
  worker_close(&h);
  env_close(&e);
}

/* ---- Taking over a KCL table ---- */

static void on_table(const struct kcld_dynamodb_table *t, void *arg)
{
  int *r = arg;
  r[0] = t->st.err;
  r[1] = 1;
}

static void test_kcl_table_takeover(void **state)
{
  (void)state;
  struct env e;
  env_open(&e);
  create_stream(&e, 4);
  /* The table as a Java KCL application left it. */
  json_t *req = json_pack(
    "{s:s, s:[{s:s, s:s}], s:[{s:s, s:s}], s:{s:i, s:i}}", "TableName",
    e.table, "KeySchema", "AttributeName", "leaseKey", "KeyType", "HASH",
    "AttributeDefinitions", "AttributeName", "leaseKey", "AttributeType", "S",
    "ProvisionedThroughput", "ReadCapacityUnits", 10, "WriteCapacityUnits",
    10);
  int r[2] = {0, 0};
  assert_int_equal(kcld_dynamodb_create_table(e.db, req, on_table, r), 0);
  json_decref(req);
  assert_true(run_until(&e, flag_set, &r[1], 10000) >= 0);
  assert_int_equal(r[0], 0);
  r[1] = 0;
  assert_int_equal(kcld_dynamodb_wait_active(e.db, e.table, 10000, on_table,
                                             r),
                   0);
  assert_true(run_until(&e, flag_set, &r[1], 15000) >= 0);
  assert_int_equal(r[0], 0);
  char seqs[4][64];
  for (int i = 0; i < 4; i++) {
    char id[32];
    snprintf(id, sizeof(id), "shardId-%012d", i);
    snprintf(seqs[i], sizeof(seqs[i]),
             "4959033827149025660855969253836157109592157598913658%04d",
             1000 + i);
    raw_put(&e, json_pack(
                  "{s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}, "
                  "s:{s:s}, s:{s:s}, s:{s:s}}",
                  "leaseKey", "S", id, "leaseOwner", "S", "stale-worker",
                  "leaseCounter", "N", "57", "checkpoint", "S", seqs[i],
                  "checkpointSubSequenceNumber", "N", i == 2 ? "4" : "0",
                  "ownerSwitchesSinceCheckpoint", "N", "0",
                  "startingHashKey", "S", "0", "endingHashKey", "S", "1",
                  "pendingCheckpointState", "B", "amF2YQ=="));
  }
  struct worker w;
  worker_start(&w, &e, "worker-kcld");
  wait_ready(&w);
  struct count_pred p = {&w, 4};
  long ms = run_until(&e, holds_n, &p, 5000);
  assert_true(ms >= 0);
  printf("KCL table taken over from stale-worker %ld ms after ready "
         "(failover %d ms)\n", ms, F_MS);
  assert_true(ms >= F_MS - 50); /* not before the leases expired */
  assert_true(ms <= 2 * F_MS + 200);
  for (int i = 0; i < 4; i++) {
    char id[32];
    snprintf(id, sizeof(id), "shardId-%012d", i);
    int k = held_index(&w, id);
    assert_true(k >= 0);
    assert_string_equal(w.cp_at_acquire[k], seqs[i]);
    json_t *it = raw_get(&e, id);
    assert_string_equal(item_s(it, "leaseOwner"), "worker-kcld");
    assert_string_equal(item_s(it, "checkpoint"), seqs[i]);
    assert_int_equal(item_n(it, "checkpointSubSequenceNumber"),
                     i == 2 ? 4 : 0);
    assert_int_equal(item_n(it, "ownerSwitchesSinceCheckpoint"), 1);
    assert_true(item_n(it, "leaseCounter") >= 58);
    /* A take keeps the pending checkpoint (KCL's takeLease does too). */
    assert_string_equal(
      json_string_value(json_object_get(
        kcld_dynamodb_attr(it, "pendingCheckpointState"), "B")),
      "amF2YQ==");
    json_decref(it);
  }
  struct snapshot s;
  snap_take(&e, &s);
  assert_int_equal(s.n, 4); /* the sync created nothing over them */
  snap_free(&s);
  worker_close(&w);
  env_close(&e);
}

/* An existing table of the given name, created as the KCL creates it. */
static void create_kcl_table(struct env *e)
{
  json_t *req = json_pack(
    "{s:s, s:[{s:s, s:s}], s:[{s:s, s:s}], s:s}", "TableName", e->table,
    "KeySchema", "AttributeName", "leaseKey", "KeyType", "HASH",
    "AttributeDefinitions", "AttributeName", "leaseKey", "AttributeType", "S",
    "BillingMode", "PAY_PER_REQUEST");
  int r[2] = {0, 0};
  assert_int_equal(kcld_dynamodb_create_table(e->db, req, on_table, r), 0);
  json_decref(req);
  assert_true(run_until(e, flag_set, &r[1], 10000) >= 0);
  assert_int_equal(r[0], 0);
  r[1] = 0;
  assert_int_equal(kcld_dynamodb_wait_active(e->db, e->table, 10000, on_table,
                                             r),
                   0);
  assert_true(run_until(e, flag_set, &r[1], 15000) >= 0);
  assert_int_equal(r[0], 0);
}

/* A KCL multi-stream table: start-up is refused before anything is
 * written (no lease of our own beside theirs). */
static void test_multi_stream_table_refused(void **state)
{
  (void)state;
  struct env e;
  env_open(&e);
  create_stream(&e, 1);
  create_kcl_table(&e);
  char key[128];
  snprintf(key, sizeof(key), "000000000000:%s:1700000000:shardId-000000000000",
           e.stream);
  raw_put(&e, json_pack("{s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}}",
                        "leaseKey", "S", key, "leaseCounter", "N", "3",
                        "checkpoint", "S", "TRIM_HORIZON", "streamName", "S",
                        "000000000000:orders:1700000000", "shardId", "S",
                        "shardId-000000000000"));
  struct worker w;
  worker_start(&w, &e, "worker-ms");
  assert_true(run_until(&e, flag_set, &w.ready, 15000) >= 0);
  assert_int_equal(w.ready_err, KCLD_ECONFIG);
  assert_non_null(strstr(w.ready_why, "multi-stream"));
  run_for(&e, 100);
  assert_int_equal(w.acquired, 0);
  assert_null(raw_get(&e, "shardId-000000000000"));
  worker_close(&w);
  env_close(&e);
}

/* The multi-stream identifier of e->stream, from DescribeStreamSummary as
 * a KCL MultiStreamTracker would build it (account of the ARN, creation
 * epoch in seconds). */
struct id_req {
  char *id;       /* 128 bytes */
  int done;
};

static void on_summary_id(const struct kcld_kinesis_stream_summary *s,
                          void *arg)
{
  struct id_req *r = arg;
  assert_int_equal(s->st.err, 0);
  json_t *ts = json_object_get(s->doc, "StreamCreationTimestamp");
  assert_true(json_is_number(ts));
  assert_int_equal(kcld_coordinator_stream_id(s->stream_arn,
                                              json_number_value(ts), r->id,
                                              128),
                   0);
  r->done = 1;
}

static void stream_id_of(struct env *e, char *id)
{
  struct id_req r = {id, 0};
  assert_int_equal(kcld_kinesis_describe_stream_summary(e->kin, e->stream,
                                                        on_summary_id, &r),
                   0);
  assert_true(run_until(e, flag_set, &r.done, 10000) >= 0);
}

/* A KCL multi-stream item (DynamoDBMultiStreamLeaseSerializer). */
static json_t *kcl_ms_item(const char *stream_id, const char *shard,
                           const char *owner, const char *checkpoint)
{
  char key[192];
  snprintf(key, sizeof(key), "%s:%s", stream_id, shard);
  json_t *it = json_pack(
    "{s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}, "
    "s:{s:s}, s:{s:s}}",
    "leaseKey", "S", key, "leaseCounter", "N", "5", "checkpoint", "S",
    checkpoint, "checkpointSubSequenceNumber", "N", "0",
    "ownerSwitchesSinceCheckpoint", "N", "1", "startingHashKey", "S", "0",
    "endingHashKey", "S", "340282366920938463463374607431768211455",
    "streamName", "S", stream_id, "shardId", "S", shard);
  if (owner)
    json_object_set_new(it, "leaseOwner", json_pack("{s:s}", "S", owner));
  return it;
}

/* Two streams through one multi-stream table written by the KCL: the dead
 * KCL worker's leases are taken at their checkpoints (not restarted), the
 * shard without a lease gets one in the KCL's format, each lease is told
 * its stream, a lease of a stream not configured is left alone, and a
 * checkpoint lands on the multi-stream key. */
static void test_multi_stream_takeover(void **state)
{
  (void)state;
  struct env e;
  env_open(&e);
  char a_name[64], b_name[64], a_id[128], b_id[128];
  create_stream(&e, 2);
  snprintf(a_name, sizeof(a_name), "%s", e.stream);
  stream_id_of(&e, a_id);
  snprintf(e.stream, sizeof(e.stream), "%.60s-b", a_name);
  create_stream(&e, 1);
  snprintf(b_name, sizeof(b_name), "%s", e.stream);
  stream_id_of(&e, b_id);
  assert_non_null(strstr(a_id, a_name));
  create_kcl_table(&e);
  const char *a_cp = "49590338271490256608559692538361571095921575989136"
                     "588898";
  const char *b_cp = "49590338271490256608559692538361571095921575989136"
                     "500001";
  const char *other = "000000000000:not-configured:1700000000";
  raw_put(&e, kcl_ms_item(a_id, "shardId-000000000000", "kcl-dead", a_cp));
  raw_put(&e, kcl_ms_item(b_id, "shardId-000000000000", "kcl-dead", b_cp));
  raw_put(&e, kcl_ms_item(other, "shardId-000000000000", NULL,
                          "TRIM_HORIZON"));
  /* A finished lease of that stream whose child has started: cleanable,
   * but not ours to delete. */
  json_t *fin = kcl_ms_item(other, "shardId-000000000001", NULL, "SHARD_END");
  json_object_set_new(fin, "childShardIds",
                      json_pack("{s:[s]}", "SS", "shardId-000000000002"));
  raw_put(&e, fin);
  json_t *kid = kcl_ms_item(other, "shardId-000000000002", NULL, a_cp);
  json_object_set_new(kid, "parentShardId",
                      json_pack("{s:[s]}", "SS", "shardId-000000000001"));
  raw_put(&e, kid);

  struct kcld_coordinator_stream streams[] = {
    {.stream = a_name, .initial_position = KCLD_POS_TRIM_HORIZON},
    {.stream = b_name, .initial_position = KCLD_POS_LATEST}};
  struct worker w;
  struct kcld_coordinator_opts o = default_opts(&e, &w);
  o.stream = NULL;
  o.streams = streams;
  o.n_streams = 2;
  worker_start_opts(&w, &e, "kcld-ms", &o);
  wait_ready(&w);
  struct count_pred p = {&w, 3};
  assert_true(run_until(&e, holds_n, &p, 4 * T_MS + F_MS) >= 0);
  run_for(&e, T_MS + 100); /* another pass: the foreign lease stays */
  assert_int_equal(w.n_held, 3);

  char a0[192], a1[192], b0[192], o0[192];
  snprintf(a0, sizeof(a0), "%s:shardId-000000000000", a_id);
  snprintf(a1, sizeof(a1), "%s:shardId-000000000001", a_id);
  snprintf(b0, sizeof(b0), "%s:shardId-000000000000", b_id);
  snprintf(o0, sizeof(o0), "%s:shardId-000000000000", other);
  int i = held_index(&w, a0);
  assert_true(i >= 0);
  assert_string_equal(w.cp_at_acquire[i], a_cp);
  assert_int_equal(w.stream_at_acquire[i], 0);
  i = held_index(&w, b0);
  assert_true(i >= 0);
  assert_string_equal(w.cp_at_acquire[i], b_cp);
  assert_int_equal(w.stream_at_acquire[i], 1);
  i = held_index(&w, a1);
  assert_true(i >= 0);
  assert_string_equal(w.cp_at_acquire[i], "TRIM_HORIZON");
  assert_int_equal(w.stream_at_acquire[i], 0);

  json_t *it = raw_get(&e, a1);
  assert_non_null(it);
  assert_string_equal(item_s(it, "streamName"), a_id);
  assert_string_equal(item_s(it, "shardId"), "shardId-000000000001");
  assert_string_equal(item_s(it, "leaseOwner"), "kcld-ms");
  json_decref(it);
  it = raw_get(&e, o0);
  assert_null(kcld_dynamodb_attr(it, "leaseOwner"));
  assert_int_equal(item_n(it, "leaseCounter"), 5);
  json_decref(it);
  snprintf(o0, sizeof(o0), "%s:shardId-000000000001", other);
  it = raw_get(&e, o0);
  assert_non_null(it); /* not cleaned up */
  json_decref(it);
  assert_null(raw_get(&e, "shardId-000000000001"));

  const char *next = "49590338271490256608559692538361571095921575989136"
                     "599999";
  assert_int_equal(checkpoint(&w, a0, next, 0), 0);
  it = raw_get(&e, a0);
  assert_string_equal(item_s(it, "checkpoint"), next);
  assert_string_equal(item_s(it, "streamName"), a_id);
  assert_string_equal(item_s(it, "shardId"), "shardId-000000000000");
  json_decref(it);
  assert_int_equal(release_all(&w), 0);
  worker_close(&w);
  env_close(&e);
}

/* ---- Leases the lease layer cannot run ---- */

struct stall_seen {
  int n;
  char shard[4][32];
  char reason[4][32];
};

static void on_stall(const char *shard_id, const char *reason, void *arg)
{
  struct stall_seen *s = arg;
  if (s->n < 4) {
    snprintf(s->shard[s->n], sizeof(s->shard[0]), "%s", shard_id);
    snprintf(s->reason[s->n], sizeof(s->reason[0]), "%s", reason);
  }
  s->n++;
}

static void put_kcl_lease(struct env *e, const char *id, const char *cp,
                          const char *counter)
{
  raw_put(e, json_pack("{s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}}",
                       "leaseKey", "S", id, "leaseCounter", "N", counter,
                       "checkpoint", "S", cp, "checkpointSubSequenceNumber",
                       "N", "0", "ownerSwitchesSinceCheckpoint", "N", "0"));
}

/* A checkpoint no worker can start from: the lease is never taken (nor
 * renewed), the shard is reported stalled with invalid_checkpoint, and once
 * the checkpoint is fixed in the table the lease is taken at the next
 * pass. */
static void test_invalid_checkpoint_stalls(void **state)
{
  (void)state;
  struct env e;
  env_open(&e);
  create_stream(&e, 2);
  create_kcl_table(&e);
  const char *s0 = "shardId-000000000000", *s1 = "shardId-000000000001";
  put_kcl_lease(&e, s0, "not-a-number", "5");
  put_kcl_lease(&e, s1, "TRIM_HORIZON", "5");
  struct worker w;
  worker_start(&w, &e, "worker-stall");
  wait_ready(&w);
  struct count_pred p = {&w, 1};
  assert_true(run_until(&e, holds_n, &p, 5000) >= 0);
  run_for(&e, T_MS + 100); /* a whole take interval more */
  assert_int_equal(w.n_held, 1);
  assert_string_equal(w.held[0], s1);
  assert_string_equal(kcld_coordinator_shard_stall(w.c, s0),
                      KCLD_STALL_INVALID_CHECKPOINT);
  assert_null(kcld_coordinator_shard_stall(w.c, s1));
  struct stall_seen seen = {0};
  kcld_coordinator_stalls(w.c, on_stall, &seen);
  assert_int_equal(seen.n, 1);
  assert_string_equal(seen.shard[0], s0);
  assert_string_equal(seen.reason[0], "invalid_checkpoint");
  struct kcld_coordinator_health h;
  kcld_coordinator_health(w.c, &h);
  assert_int_equal(h.stalled, 1);
  assert_int_equal(h.table_missing, 0);
  json_t *it = raw_get(&e, s0);
  assert_null(kcld_dynamodb_attr(it, "leaseOwner"));
  assert_int_equal(item_n(it, "leaseCounter"), 5); /* never written */
  json_decref(it);

  /* An operator fixes the checkpoint: taken at the next pass. */
  assert_int_equal(raw_update(&e, s0, "SET #cp = :cp, #c = :c", NULL,
                              json_pack("{s:s, s:s}", "#cp", "checkpoint",
                                        "#c", "leaseCounter"),
                              json_pack("{s:{s:s}, s:{s:s}}", ":cp", "S",
                                        "1234", ":c", "N", "6")),
                   0);
  p.n = 2;
  assert_true(run_until(&e, holds_n, &p, 2 * T_MS + 500) >= 0);
  assert_null(kcld_coordinator_shard_stall(w.c, s0));
  kcld_coordinator_health(w.c, &h);
  assert_int_equal(h.stalled, 0);
  assert_string_equal(w.cp_at_acquire[held_index(&w, s0)], "1234");
  worker_close(&w);
  env_close(&e);
}

/* A lease at the AT_TIMESTAMP sentinel is a start-up error while no
 * timestamp is known, and is taken (for its consumer to start from the
 * configured timestamp) when one is. */
static void test_at_timestamp_sentinel(void **state)
{
  (void)state;
  struct env e;
  env_open(&e);
  create_stream(&e, 1);
  create_kcl_table(&e);
  const char *s0 = "shardId-000000000000";
  put_kcl_lease(&e, s0, "AT_TIMESTAMP", "2");
  struct worker w;
  worker_start(&w, &e, "worker-nots");
  assert_true(run_until(&e, flag_set, &w.ready, 15000) >= 0);
  assert_int_equal(w.ready_err, KCLD_ECONFIG);
  assert_non_null(strstr(w.ready_why, "AT_TIMESTAMP"));
  run_for(&e, 100);
  assert_int_equal(w.acquired, 0);
  json_t *it = raw_get(&e, s0);
  assert_null(kcld_dynamodb_attr(it, "leaseOwner"));
  json_decref(it);
  worker_close(&w);

  struct kcld_coordinator_opts o = default_opts(&e, &w);
  o.initial_position = KCLD_POS_AT_TIMESTAMP;
  o.initial_timestamp_ms = 1700000000000;
  worker_start_opts(&w, &e, "worker-ts", &o);
  wait_ready(&w);
  struct count_pred p = {&w, 1};
  assert_true(run_until(&e, holds_n, &p, 5000) >= 0);
  assert_string_equal(w.cp_at_acquire[0], "AT_TIMESTAMP");
  assert_null(kcld_coordinator_shard_stall(w.c, s0));
  worker_close(&w);
  env_close(&e);
}

static int table_missing(void *ctx)
{
  struct kcld_coordinator_health h;
  kcld_coordinator_health(((struct worker *)ctx)->c, &h);
  return h.table_missing;
}

static int table_back(void *ctx)
{
  return !table_missing(ctx);
}

/* The lease table is deleted under a worker: it notices, reports every
 * shard stalled with lease_table_missing, gives its leases up after the
 * failover time (nothing can renew them) and does not recreate the table;
 * when the table is back the state clears. */
static void test_table_deleted(void **state)
{
  (void)state;
  struct env e;
  env_open(&e);
  create_stream(&e, 2);
  struct worker w;
  worker_start(&w, &e, "worker-orphan");
  wait_ready(&w);
  struct count_pred p = {&w, 2};
  assert_true(run_until(&e, holds_n, &p, 5000) >= 0);
  struct kcld_test_aws *ta =
    kcld_test_aws_new(NULL, kcld_emu_url(&s_emu, "dynamodb"), NULL);
  json_t *req = json_pack("{s:s}", "TableName", e.table);
  json_decref(kcld_test_aws_call(ta, KCLD_AWS_DYNAMODB, "DeleteTable", req,
                                 NULL));
  long ms = run_until(&e, table_missing, &w, 3000);
  assert_true(ms >= 0);
  printf("lease table deletion noticed after %ld ms (renew every %d ms)\n",
         ms, F_MS / 3);
  struct kcld_coordinator_health h;
  kcld_coordinator_health(w.c, &h);
  assert_true(h.table_missing_ms > 0);
  assert_int_equal(h.stalled, 2);
  assert_string_equal(kcld_coordinator_shard_stall(w.c,
                                                   "shardId-000000000001"),
                      KCLD_STALL_LEASE_TABLE_MISSING);
  /* Nothing renews the leases: given up within the failover time. */
  p.n = 0;
  assert_true(run_until(&e, holds_n, &p, F_MS + 200) >= 0);
  assert_int_equal(w.lost, 2);
  assert_int_equal(checkpoint(&w, "shardId-000000000000", "1", 0),
                   KCLD_ELOST);
  run_for(&e, T_MS);
  assert_true(table_missing(&w));
  const char *type = NULL;
  json_t *d = kcld_test_aws_call(ta, KCLD_AWS_DYNAMODB, "DescribeTable", req,
                                 &type);
  assert_null(d); /* not recreated behind the operator's back */
  assert_string_equal(type, "ResourceNotFoundException");

  /* Restored (here: empty): the next scan clears the state. */
  create_kcl_table(&e);
  assert_true(run_until(&e, table_back, &w, 3 * T_MS) >= 0);
  json_decref(req);
  kcld_test_aws_free(ta);
  worker_close(&w);
  env_close(&e);
}

/* ---- Shard sync, reshards, parents, cleanup ---- */

static void test_reshard(void **state)
{
  (void)state;
  struct env e;
  env_open(&e);
  create_stream(&e, 2);
  struct worker w;
  struct kcld_coordinator_opts o = default_opts(&e, &w);
  o.initial_position = KCLD_POS_LATEST;
  o.shard_sync_interval_ms = 300;
  o.cleanup_delay_ms = 800;
  worker_start_opts(&w, &e, "worker-reshard", &o);
  wait_ready(&w);
  struct count_pred p = {&w, 2};
  assert_true(run_until(&e, holds_n, &p, 5000) >= 0);
  const char *s0 = "shardId-000000000000", *s2 = "shardId-000000000002",
             *s3 = "shardId-000000000003", *s4 = "shardId-000000000004";
  for (int i = 0; i < 2; i++)
    assert_string_equal(w.cp_at_acquire[i], "LATEST");
  int err;
  assert_int_equal(parents_done(&w, s0, &err), 1); /* no parents */
  assert_int_equal(err, 0);

  /* Split shard 0 at the middle of its range. */
  split_shard(&e, s0, "85070591730234615865843651857942052864");
  p.n = 4;
  long ms = run_until(&e, holds_n, &p, 5000);
  assert_true(ms >= 0);
  printf("children of a split leased %ld ms after the split (sync every "
         "300 ms)\n", ms);
  for (int k = 0; k < 2; k++) {
    const char *kid = k ? s3 : s2;
    assert_string_equal(w.cp_at_acquire[held_index(&w, kid)],
                        "TRIM_HORIZON");
    json_t *it = raw_get(&e, kid);
    json_t *par = kcld_dynamodb_as_ss(kcld_dynamodb_attr(it,
                                                         "parentShardId"));
    assert_int_equal(json_array_size(par), 1);
    assert_string_equal(json_string_value(json_array_get(par, 0)), s0);
    assert_non_null(item_s(it, "startingHashKey"));
    assert_non_null(item_s(it, "endingHashKey"));
    json_decref(it);
  }
  assert_int_equal(parents_done(&w, s2, &err), 0); /* shard 0 not done */
  assert_int_equal(err, 0);

  /* Shard 0 reaches its end. */
  const char *kids[] = {s2, s3};
  assert_int_equal(shard_ended(&w, s0, kids, 2), 0);
  forget(&w, s0);
  assert_int_equal(kcld_coordinator_held(w.c), 3);
  json_t *it = raw_get(&e, s0);
  assert_string_equal(item_s(it, "checkpoint"), "SHARD_END");
  assert_null(kcld_dynamodb_attr(it, "leaseOwner"));
  json_t *ch = kcld_dynamodb_as_ss(kcld_dynamodb_attr(it, "childShardIds"));
  assert_int_equal(json_array_size(ch), 2);
  json_decref(it);
  assert_int_equal(parents_done(&w, s2, &err), 1);
  assert_int_equal(err, 0);
  assert_int_equal(checkpoint(&w, s0, "5", 0), KCLD_ELOST);

  /* Not cleaned up while a child has not started. */
  run_for(&e, 1200);
  it = raw_get(&e, s0);
  assert_non_null(it);
  json_decref(it);
  assert_int_equal(w.lost, 0);

  /* Both children start: the parent goes after the delay. */
  assert_int_equal(checkpoint(&w, s2, "11", 0), 0);
  assert_int_equal(checkpoint(&w, s3, "12", 0), 0);
  uint64_t t0 = uv_hrtime();
  int gone = 0;
  long waited = 0;
  while (!gone && waited < 5000) {
    run_for(&e, 100);
    it = raw_get(&e, s0);
    gone = it == NULL;
    json_decref(it);
    waited = (long)((uv_hrtime() - t0) / 1000000);
  }
  assert_true(gone);
  printf("finished parent deleted %ld ms after its children started "
         "(cleanup delay 800 ms)\n", waited);
  assert_true(waited >= 800);
  /* A sync later: not recreated, and parents_done says done (absent). */
  run_for(&e, 700);
  it = raw_get(&e, s0);
  assert_null(it);
  assert_int_equal(parents_done(&w, s2, &err), 1);
  assert_int_equal(err, 0);

  /* Merge the children: the new shard names both as parents. */
  merge_shards(&e, s2, s3);
  struct count_pred p4 = {&w, 4};
  assert_true(run_until(&e, holds_at_least, &p4, 5000) >= 0);
  assert_true(held_index(&w, s4) >= 0);
  assert_string_equal(w.cp_at_acquire[held_index(&w, s4)], "TRIM_HORIZON");
  it = raw_get(&e, s4);
  json_t *par = kcld_dynamodb_as_ss(kcld_dynamodb_attr(it, "parentShardId"));
  assert_int_equal(json_array_size(par), 2);
  json_decref(it);
  assert_int_equal(parents_done(&w, s4, &err), 0);
  const char *k4[] = {s4};
  assert_int_equal(shard_ended(&w, s2, k4, 1), 0);
  forget(&w, s2);
  assert_int_equal(parents_done(&w, s4, &err), 0); /* s3 still open */
  assert_int_equal(shard_ended(&w, s3, k4, 1), 0);
  forget(&w, s3);
  assert_int_equal(parents_done(&w, s4, &err), 1);
  assert_int_equal(err, 0);
  assert_int_equal(parents_done(&w, "shardId-000000000077", &err), 0);
  assert_int_equal(err, KCLD_ENOTFOUND);
  worker_close(&w);
  env_close(&e);
}

static void count_acquired(const struct kcld_lease *l, void *arg)
{
  (void)l;
  ((struct worker *)arg)->acquired++;
}

static void count_lost(const char *shard_id, void *arg)
{
  (void)shard_id;
  ((struct worker *)arg)->lost++;
}

static int acquired_n(void *ctx)
{
  struct count_pred *p = ctx;
  return p->w->acquired - p->w->lost >= p->n;
}

/* More leases than the takes (and lease creations) let in flight at once:
 * the window keeps going until all are held, and every lease is renewed
 * (on its own jittered schedule) without a loss. */
static void test_many_leases(void **state)
{
  (void)state;
  struct env e;
  env_open(&e);
  enum { N = 80 };
  create_stream(&e, N);
  struct worker w;
  struct kcld_coordinator_opts o = default_opts(&e, &w);
  o.cbs.acquired = count_acquired; /* more than a worker tracks by name */
  o.cbs.lost = count_lost;
  /* Renewals every 800 ms: 100 writes a second, within the emulator's
   * means on a loaded machine under ASan (F_MS would ask 400). */
  o.failover_ms = 2400;
  o.take_interval_ms = 4800;
  worker_start_opts(&w, &e, "worker-many", &o);
  wait_ready(&w);
  struct count_pred p = {&w, N};
  long ms = run_until(&e, acquired_n, &p, 5000);
  assert_true(ms >= 0);
  printf("%d leases held %ld ms after ready (%d takes in flight at most)\n",
         N, ms, 32);
  assert_int_equal(kcld_coordinator_held(w.c), N);
  struct snapshot s;
  snap_take(&e, &s);
  assert_int_equal(s.n, 64); /* the snapshot keeps the first 64 */
  snap_free(&s);
  run_for(&e, 2400);
  assert_int_equal(kcld_coordinator_held(w.c), N);
  struct kcld_coordinator_stats st;
  kcld_coordinator_stats(w.c, &st);
  assert_int_equal(st.taken, N);
  assert_int_equal(st.lost, 0);
  assert_int_equal(w.lost, 0);
  /* Every lease renewed at least twice in F (renewals every F/3, a bit
   * sooner when jittered): counter >= 3 after the take's 1. */
  for (int i = 0; i < N; i++) {
    char id[32];
    snprintf(id, sizeof(id), "shardId-%012d", i);
    json_t *it = raw_get(&e, id);
    assert_string_equal(item_s(it, "leaseOwner"), "worker-many");
    assert_true(item_n(it, "leaseCounter") >= 3);
    json_decref(it);
  }
  worker_close(&w);
  env_close(&e);
}

/* A fresh table on a stream with a closed parent: the sync creates the
 * parent's lease before its children's, several at once but never a child
 * before its parent exists; a failed parent create leaves no child lease. */
static void test_sync_parent_first(void **state)
{
  (void)state;
  const char *fault = kcld_emu_url(&s_emu, "fault");
  fault_steps("[{\"target\":\"PutItem\",\"status\":400,\"body\":{"
              "\"__type\":\"com.amazonaws.dynamodb.v20120810#"
              "ValidationException\",\"message\":\"injected\"}}]");
  struct env e;
  env_open(&e);
  create_stream(&e, 1);
  const char *s0 = "shardId-000000000000", *s1 = "shardId-000000000001",
             *s2 = "shardId-000000000002";
  split_shard(&e, s0, "170141183460469231731687303715884105728");
  struct worker w;
  worker_start_via_fault(&w, &e, "worker-first");
  assert_true(run_until(&e, flag_set, &w.ready, 15000) >= 0);
  assert_int_not_equal(w.ready_err, 0);
  assert_non_null(strstr(w.ready_why, "ValidationException"));
  assert_int_equal(
    kcld_fault_count(fault, NULL, "DynamoDB_20120810.PutItem"), 1);
  struct snapshot s;
  snap_take(&e, &s);
  assert_int_equal(s.n, 0); /* no child without its parent */
  snap_free(&s);
  worker_close(&w);

  worker_start_via_fault(&w, &e, "worker-first");
  wait_ready(&w);
  struct count_pred p = {&w, 3};
  assert_true(run_until(&e, holds_n, &p, 5000) >= 0);
  for (int k = 0; k < 2; k++) {
    json_t *it = raw_get(&e, k ? s2 : s1);
    json_t *par = kcld_dynamodb_as_ss(kcld_dynamodb_attr(it,
                                                         "parentShardId"));
    assert_string_equal(json_string_value(json_array_get(par, 0)), s0);
    json_decref(it);
  }
  worker_close(&w);
  env_close(&e);
}

static void test_missing_stream(void **state)
{
  (void)state;
  struct env e;
  env_open(&e);
  struct worker w;
  worker_start(&w, &e, "worker-nostream");
  assert_true(run_until(&e, flag_set, &w.ready, 15000) >= 0);
  assert_int_equal(w.ready_err, KCLD_ENOTFOUND);
  assert_non_null(strstr(w.ready_why, "shard sync: ListShards"));
  assert_int_equal(w.acquired, 0);
  /* Calls after a failed start answer, and close frees everything. */
  assert_int_equal(checkpoint(&w, "shardId-000000000000", "1", 0),
                   KCLD_ELOST);
  worker_close(&w);
  env_close(&e);
}

static void test_close_answers_pending_calls(void **state)
{
  (void)state;
  struct env e;
  env_open(&e);
  create_stream(&e, 1);
  struct worker w;
  worker_start(&w, &e, "worker-close");
  wait_ready(&w);
  struct count_pred p = {&w, 1};
  assert_true(run_until(&e, holds_n, &p, 5000) >= 0);
  const char *s0 = "shardId-000000000000";
  /* Three checkpoints queued on one lease (one in flight), a parents query
   * and a release: close answers all of them before it returns. */
  struct call c1 = {0}, c2 = {0}, c3 = {0}, pd = {0}, rel = {0};
  kcld_coordinator_checkpoint(w.c, s0, "1", 0, on_call, &c1);
  kcld_coordinator_checkpoint(w.c, s0, "2", 0, on_call, &c2);
  kcld_coordinator_checkpoint(w.c, s0, "3", 0, on_call, &c3);
  kcld_coordinator_parents_done(w.c, s0, on_parents, &pd);
  kcld_coordinator_release_all(w.c, on_call, &rel);
  worker_close(&w);
  assert_int_equal(c1.done, 1);
  assert_int_equal(c2.done, 1);
  assert_int_equal(c3.done, 1);
  assert_int_equal(pd.done, 1);
  assert_int_equal(rel.done, 1);
  assert_int_equal(c1.err, KCLD_ECANCELED);
  assert_int_equal(c3.err, KCLD_ECANCELED);
  assert_int_equal(rel.err, KCLD_ECANCELED);
  env_close(&e);
}

/* ---- Start-up through faults ---- */

#define DDB_TARGET "DynamoDB_20120810."

/* Each start-up step failing for more attempts than one call makes:
 * DescribeTable answering 500, the sync's Scan throttled, its PutItem cut
 * off.  Each step is tried again until it goes through: the worker starts
 * and takes its lease, and nothing failed for good. */
static void test_startup_rides_out_transient_faults(void **state)
{
  (void)state;
  const char *fault = kcld_emu_url(&s_emu, "fault");
  fault_steps("[{\"target\":\"DescribeTable\",\"status\":500,\"times\":6},"
              "{\"target\":\"Scan\",\"status\":400,\"body\":{\"__type\":"
              "\"com.amazonaws.dynamodb.v20120810#"
              "ProvisionedThroughputExceededException\",\"message\":"
              "\"injected\"},\"times\":6},"
              "{\"target\":\"PutItem\",\"close\":true,\"times\":3}]");
  struct env e;
  env_open(&e);
  create_stream(&e, 1);
  struct worker w;
  worker_start_via_fault(&w, &e, "worker-patient");
  long ms = run_until(&e, flag_set, &w.ready, 30000);
  assert_true(ms >= 0);
  printf("started after %ld ms of injected faults\n", ms);
  assert_int_equal(w.ready_err, 0);
  assert_string_equal(w.ready_why, "");
  /* Every injected failure was met (6, 6, 3), and each step then went
   * through once more. */
  assert_true(kcld_fault_count(fault, NULL, DDB_TARGET "DescribeTable") >= 7);
  assert_true(kcld_fault_count(fault, NULL, DDB_TARGET "Scan") >= 7);
  assert_true(kcld_fault_count(fault, NULL, DDB_TARGET "PutItem") >= 4);
  assert_int_equal(kcld_fault_count(fault, "steps_used", NULL), 15);
  struct count_pred p = {&w, 1};
  assert_true(run_until(&e, holds_n, &p, 5000) >= 0);
  worker_close(&w);
  env_close(&e);
}

/* A refusal is not tried again: start-up fails at the first answer, and
 * `why` names the step, the call and the AWS error. */
static void test_startup_refusal_fails_at_once(void **state)
{
  (void)state;
  const char *fault = kcld_emu_url(&s_emu, "fault");
  fault_steps("[{\"target\":\"DescribeTable\",\"status\":400,\"body\":{"
              "\"__type\":\"com.amazon.coral.service#AccessDeniedException\","
              "\"message\":\"not authorized (injected)\"},\"times\":100}]");
  struct env e;
  env_open(&e);
  struct worker w;
  worker_start_via_fault(&w, &e, "worker-denied");
  assert_true(run_until(&e, flag_set, &w.ready, 5000) >= 0);
  assert_int_equal(w.ready_err, KCLD_EAWS);
  assert_non_null(strstr(w.ready_why, "lease table: DescribeTable"));
  assert_non_null(strstr(w.ready_why, "AccessDeniedException"));
  assert_int_equal(
    kcld_fault_count(fault, NULL, DDB_TARGET "DescribeTable"), 1);
  worker_close(&w);
  env_close(&e);
}

/* While start-up waits out an outage, release_all and close end it: ready
 * never runs, nothing is left on the loop. */
static void test_startup_wait_ends_on_release(void **state)
{
  (void)state;
  const char *fault = kcld_emu_url(&s_emu, "fault");
  fault_steps("[{\"target\":\"DescribeTable\",\"status\":503,"
              "\"times\":100000}]");
  struct env e;
  env_open(&e);
  struct worker w;
  worker_start_via_fault(&w, &e, "worker-waiting");
  for (int i = 0; i < 60 &&
                  kcld_fault_count(fault, NULL, DDB_TARGET "DescribeTable") < 6;
       i++)
    run_for(&e, 100);
  /* Two calls of three attempts each failed: start-up is still waiting. */
  assert_true(kcld_fault_count(fault, NULL, DDB_TARGET "DescribeTable") >= 6);
  assert_int_equal(w.ready, 0);
  struct call rel = {0};
  kcld_coordinator_release_all(w.c, on_call, &rel);
  assert_true(run_until(&e, flag_set, &rel.done, 5000) >= 0);
  assert_int_equal(rel.err, 0);
  long calls = kcld_fault_count(fault, NULL, DDB_TARGET "DescribeTable");
  run_for(&e, 700); /* longer than the next retry would have waited */
  assert_int_equal(w.ready, 0);
  worker_close(&w);
  /* Nothing tried again after the release but what was in flight. */
  assert_true(kcld_fault_count(fault, NULL, DDB_TARGET "DescribeTable") <=
              calls + 3);
  fault_steps("[]");
  env_close(&e);
}

static int setup(void **state)
{
  (void)state;
  if (kcld_http_global_init() != 0)
    return -1;
  return kcld_emu_start(&s_emu, "kinesis dynamodb fault");
}

static int teardown(void **state)
{
  (void)state;
  kcld_emu_stop(&s_emu);
  kcld_http_global_cleanup();
  return 0;
}

int main(void)
{
  setvbuf(stdout, NULL, _IONBF, 0);
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_single_worker),
    cmocka_unit_test(test_competing_writer),
    cmocka_unit_test(test_renew_reread_success),
    cmocka_unit_test(test_three_workers),
    cmocka_unit_test(test_zombie),
    cmocka_unit_test(test_kcl_table_takeover),
    cmocka_unit_test(test_multi_stream_table_refused),
    cmocka_unit_test(test_multi_stream_takeover),
    cmocka_unit_test(test_invalid_checkpoint_stalls),
    cmocka_unit_test(test_at_timestamp_sentinel),
    cmocka_unit_test(test_table_deleted),
    cmocka_unit_test(test_reshard),
    cmocka_unit_test(test_many_leases),
    cmocka_unit_test(test_sync_parent_first),
    cmocka_unit_test(test_missing_stream),
    cmocka_unit_test(test_close_answers_pending_calls),
    cmocka_unit_test(test_startup_rides_out_transient_faults),
    cmocka_unit_test(test_startup_refusal_fails_at_once),
    cmocka_unit_test(test_startup_wait_ends_on_release),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
