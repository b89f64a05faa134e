/* test_shard_consumer.c — the shard consumer against kinesalite, directly or
 * through the fault endpoint, with a test sink that records what it got and a
 * recording double of the coordinator, linked in instead of the real one
 * (checkpoints, shard_ended, parents_done):
 *
 *  - every record of each shard delivered once, in order, and the final
 *    checkpoint at the shard's last record; two shards side by side;
 *  - resuming AFTER a checkpoint, and AT a checkpoint inside a KPL aggregate
 *    (user records at or below (sequence, sub) skipped);
 *  - prefetch bounded by max_buffered_bytes with a slow sink, while the sink
 *    is never left waiting; at most 5 calls per second; idle waits;
 *  - memory: eight shards under a process-wide budget of about two answers
 *    never hold more than it (the budget's own accounting); a shard's body
 *    and batch blocks are reused after the first answer (no new
 *    allocation, counted by the consumer's stats);
 *  - ExpiredIterator (before and after records were fetched), throttling
 *    (ProvisionedThroughputExceeded, KMSThrottling), 500s and unparseable
 *    bodies injected by the fault endpoint: recovered, nothing lost or twice;
 *  - waiting for the parents; SHARD_END after a SplitShard (flush, then
 *    shard_ended) and a lease already at SHARD_END;
 *  - lost mode (at once: no more deliveries or checkpoints, the sink
 *    cancelled), a checkpoint answering KCLD_ELOST, a graceful stop that
 *    drains, one cut short by its deadline, and a sink that refuses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "../harness/fault.h"
#include "../harness/harness.h"
#include "aws/call.h"
#include "aws/credentials.h"
#include "aws/http.h"
#include "aws/kinesis.h"
#include "base/seq.h"
#include "consume/budget.h"
#include "consume/record.h"
#include "consume/shard_consumer.h"
#include "err.h"
#include "lease/coordinator.h"
#include "log.h"

#define SHARD0 "shardId-000000000000"
#define SHARD1 "shardId-000000000001"

static struct kcld_emu s_emu;
static const char *s_kinesis;
static const char *s_fault;
static int s_stream_no;

/* ======== Environment: loop, clients, a fresh stream ======== */

struct env {
  uv_loop_t loop;
  struct kcld_http *http;
  struct kcld_credentials *creds;
  struct kcld_aws *aws;
  struct kcld_kinesis *kin;
  char stream[64];
};

static void env_init(struct env *e, const char *kinesis_url)
{
  memset(e, 0, sizeof(*e));
  assert_int_equal(uv_loop_init(&e->loop), 0);
  assert_int_equal(kcld_http_new(&e->loop, NULL, &e->http), 0);
  struct kcld_credentials_opts co = {
    .loop = &e->loop, .http = e->http, .access_key_id = "AKIDTESTTEST",
    .secret_access_key = "test-secret-key"};
  assert_int_equal(kcld_credentials_new(&co, &e->creds), 0);
  struct kcld_aws_opts ao = {.loop = &e->loop, .http = e->http,
                             .creds = e->creds, .region = "us-east-1"};
  ao.endpoint[KCLD_AWS_KINESIS] = kinesis_url;
  assert_int_equal(kcld_aws_new(&ao, &e->aws), 0);
  assert_int_equal(kcld_kinesis_new(e->aws, &e->loop, &e->kin), 0);
  snprintf(e->stream, sizeof(e->stream), "sc-%d-%d", (int)getpid(),
           ++s_stream_no);
}

static void env_finish(struct env *e)
{
  kcld_kinesis_close(e->kin);
  kcld_aws_close(e->aws);
  kcld_credentials_close(e->creds);
  kcld_http_close(e->http);
  kcld_test_loop_finish(&e->loop);
}


static void on_tick(uv_timer_t *t)
{
  (void)t;
}

static void on_tick_closed(uv_handle_t *h)
{
  *(int *)h->data = 1;
}

/* kcld_test_run_until with a 5 ms tick, so a flag set by a timer callback is
 * seen at once (uv_run(UV_RUN_ONCE) runs timers before it blocks in poll). */
static int run_until(uv_loop_t *loop, const volatile int *flag,
                     unsigned timeout_ms)
{
  uv_timer_t tick;
  int closed = 0;
  uv_timer_init(loop, &tick);
  uv_timer_start(&tick, on_tick, 5, 5);
  int got = kcld_test_run_until(loop, flag, timeout_ms);
  tick.data = &closed;
  uv_close((uv_handle_t *)&tick, on_tick_closed);
  while (!closed)
    uv_run(loop, UV_RUN_ONCE);
  return got;
}

static void sleep_loop(struct env *e, unsigned ms)
{
  int never = 0;
  run_until(&e->loop, &never, ms);
}

struct op {
  int done;
  int err;
  char type[96];
};

static void on_op(const struct kcld_svc_status *st, void *arg)
{
  struct op *o = arg;
  o->done = 1;
  o->err = st->err;
  snprintf(o->type, sizeof(o->type), "%s", st->type ? st->type : "");
}

static void on_summary(const struct kcld_kinesis_stream_summary *res,
                       void *arg)
{
  on_op(&res->st, arg);
}

static void create_stream(struct env *e, int shards)
{
  struct op o = {0};
  assert_int_equal(
    kcld_kinesis_create_stream(e->kin, e->stream, shards, on_op, &o), 0);
  assert_true(run_until(&e->loop, &o.done, 10000));
  assert_int_equal(o.err, 0);
  memset(&o, 0, sizeof(o));
  assert_int_equal(
    kcld_kinesis_wait_active(e->kin, e->stream, 10000, on_summary, &o), 0);
  assert_true(run_until(&e->loop, &o.done, 12000));
  assert_int_equal(o.err, 0);
}

/* What the test produced: one entry per Kinesis record. */
struct produced {
  char shard[32];
  char seq[KCLD_SEQ_MAX + 1];
  int id;
  int subs; /* user records in it (1 unless a KPL aggregate) */
};

struct put_wait {
  int done;
  int err;
  size_t failed;
  struct produced *out;
};

static void on_put(const struct kcld_kinesis_put_result *res, void *arg)
{
  struct put_wait *w = arg;
  w->done = 1;
  w->err = res->st.err;
  w->failed = res->failed;
  for (size_t i = 0; res->st.err == 0 && i < res->count; i++) {
    if (!res->entries[i].sequence_number)
      continue;
    snprintf(w->out[i].shard, sizeof(w->out[i].shard), "%s",
             res->entries[i].shard_id);
    snprintf(w->out[i].seq, sizeof(w->out[i].seq), "%s",
             res->entries[i].sequence_number);
  }
}

/* Puts n records "rec-<id>" padded to `size` bytes, ids first..first+n-1,
 * partition key chosen by `keyfn` (or "k<id>").  Fills out[0..n-1]. */
static void put_records(struct env *e, int first, int n, size_t size,
                        struct produced *out)
{
  size_t sz = size < 16 ? 16 : size;
  char *bufs = calloc((size_t)n, sz);
  char (*keys)[16] = calloc((size_t)n, sizeof(*keys));
  struct kcld_kinesis_record *recs = calloc((size_t)n, sizeof(*recs));
  assert_non_null(bufs);
  assert_non_null(keys);
  assert_non_null(recs);
  for (int i = 0; i < n; i++) {
    char *b = bufs + (size_t)i * sz;
    memset(b, 'x', sz);
    int len = snprintf(b, sz, "rec-%06d", first + i);
    b[len] = '-';
    snprintf(keys[i], sizeof(keys[i]), "k%d", first + i);
    recs[i].data = b;
    recs[i].len = sz;
    recs[i].partition_key = keys[i];
    out[i].id = first + i;
    out[i].subs = 1;
  }
  for (int at = 0; at < n;) {
    int chunk = n - at;
    size_t per = sz + 16;
    if (chunk > 500)
      chunk = 500;
    if ((size_t)chunk * per > 4 * 1024 * 1024)
      chunk = (int)(4 * 1024 * 1024 / per);
    struct put_wait w = {.out = out + at};
    assert_int_equal(
      kcld_kinesis_put_records(e->kin, e->stream, recs + at, (size_t)chunk,
                               on_put, &w), 0);
    assert_true(run_until(&e->loop, &w.done, 20000));
    assert_int_equal(w.err, 0);
    assert_int_equal(w.failed, 0);
    at += chunk;
  }
  free(bufs);
  free(keys);
  free(recs);
}

/* A KPL aggregate of `n` user records "agg<id>-<i>" under one key. */
static size_t varint(uint8_t *p, uint64_t v)
{
  size_t n = 0;
  do {
    p[n] = (uint8_t)(v & 0x7f);
    v >>= 7;
    if (v)
      p[n] |= 0x80;
    n++;
  } while (v);
  return n;
}

static size_t build_aggregate(uint8_t *out, int id, int n)
{
  static const uint8_t magic[4] = {0xF3, 0x89, 0x9A, 0xC2};
  uint8_t pb[2048];
  size_t len = 0;
  char key[32];
  int klen = snprintf(key, sizeof(key), "aggkey%d", id);
  pb[len++] = 0x0A; /* partition_key_table */
  len += varint(pb + len, (uint64_t)klen);
  memcpy(pb + len, key, (size_t)klen);
  len += (size_t)klen;
  for (int i = 0; i < n; i++) {
    char data[32];
    int dlen = snprintf(data, sizeof(data), "agg%d-%d", id, i);
    uint8_t rec[64];
    size_t rl = 0;
    rec[rl++] = 0x08; /* partition_key_index = 0 */
    rec[rl++] = 0x00;
    rec[rl++] = 0x1A; /* data */
    rl += varint(rec + rl, (uint64_t)dlen);
    memcpy(rec + rl, data, (size_t)dlen);
    rl += (size_t)dlen;
    pb[len++] = 0x1A; /* records */
    len += varint(pb + len, rl);
    memcpy(pb + len, rec, rl);
    len += rl;
  }
  memcpy(out, magic, 4);
  memcpy(out + 4, pb, len);
  unsigned int md_len = 0;
  assert_int_equal(
    EVP_Digest(pb, len, out + 4 + len, &md_len, EVP_md5(), NULL), 1);
  assert_int_equal(md_len, 16);
  return 4 + len + 16;
}

/* ======== The test sink ======== */

enum sink_mode { SINK_NOW, SINK_DELAY, SINK_HOLD };

struct got {
  char seq[KCLD_SEQ_MAX + 1];
  uint64_t sub;
  char data[24];
};

struct tsink {
  enum sink_mode mode;
  uint64_t delay_ms;
  int refuse;                 /* refuse this many deliver calls first */
  struct kcld_shard_consumer *c;
  int deliver_calls;
  int deliveries;
  int cancels;
  int in_flight;
  int max_in_flight;
  int done_after_cancel;      /* HOLD: call done from inside cancel */
  struct got *got;
  size_t n, cap;
  size_t want;                /* reached = 1 once n >= want */
  int reached;
  struct kcld_shard_delivery *held;
  uv_timer_t timer;
  int timer_init;
  size_t max_buffered;        /* highest buffered_bytes seen */
  size_t max_batch_mem;       /* largest batch delivered */
  int saw_queued;             /* a batch waited while one was in flight */
  int deliveries_after_cancel;
  uint64_t fresh_at[64];      /* stats.fresh_blocks at each delivery */
  uint64_t reused_at[64];     /* stats.reused_blocks at each delivery */
};

static void sink_record(struct tsink *s, const struct kcld_shard_delivery *d)
{
  for (size_t i = 0; i < d->count; i++) {
    if (s->n == s->cap) {
      s->cap = s->cap ? s->cap * 2 : 256;
      s->got = realloc(s->got, s->cap * sizeof(*s->got));
      assert_non_null(s->got);
    }
    const struct kcld_record *r = &d->records[i];
    struct got *g = &s->got[s->n++];
    snprintf(g->seq, sizeof(g->seq), "%s", r->sequence_number);
    g->sub = r->sub_sequence_number;
    size_t l = r->data_len < sizeof(g->data) - 1 ? r->data_len
                                                  : sizeof(g->data) - 1;
    memcpy(g->data, r->data, l);
    g->data[l] = '\0';
    char *dash = strchr(g->data + 4, '-');
    if (strncmp(g->data, "rec-", 4) == 0 && dash)
      *dash = '\0';
  }
  if (s->want && s->n >= s->want)
    s->reached = 1;
}

static void sink_finish_one(struct tsink *s, struct kcld_shard_delivery *d)
{
  const struct kcld_record *last = &d->records[d->count - 1];
  kcld_shard_consumer_progress(d->consumer, last->sequence_number,
                               last->sub_sequence_number);
  s->in_flight--;
  kcld_shard_consumer_done(d);
}

static void on_sink_timer(uv_timer_t *t)
{
  struct tsink *s = t->data;
  struct kcld_shard_delivery *d = s->held;
  s->held = NULL;
  if (d)
    sink_finish_one(s, d);
}

static int sink_deliver(void *impl, struct kcld_shard_delivery *d)
{
  struct tsink *s = impl;
  struct kcld_shard_consumer_stats st;
  s->deliver_calls++;
  if (s->refuse > 0) {
    s->refuse--;
    return KCLD_EIO;
  }
  assert_non_null(d->batch);
  assert_true(d->count >= 1);
  if (s->cancels)
    s->deliveries_after_cancel++;
  s->deliveries++;
  s->in_flight++;
  if (s->in_flight > s->max_in_flight)
    s->max_in_flight = s->in_flight;
  kcld_shard_consumer_stats(d->consumer, &st);
  if (st.buffered_bytes > s->max_buffered)
    s->max_buffered = st.buffered_bytes;
  if (d->batch->mem_bytes > s->max_batch_mem)
    s->max_batch_mem = d->batch->mem_bytes;
  if (s->deliveries <= 64) {
    s->fresh_at[s->deliveries - 1] = st.fresh_blocks;
    s->reused_at[s->deliveries - 1] = st.reused_blocks;
  }
  sink_record(s, d);
  switch (s->mode) {
  case SINK_NOW:
    sink_finish_one(s, d);
    break;
  case SINK_DELAY:
    s->held = d;
    uv_timer_start(&s->timer, on_sink_timer, s->delay_ms, 0);
    break;
  case SINK_HOLD:
    s->held = d;
    break;
  }
  return 0;
}

static void sink_cancel(void *impl, struct kcld_shard_consumer *c)
{
  struct tsink *s = impl;
  (void)c;
  s->cancels++;
  if (s->held && (s->mode == SINK_DELAY || s->done_after_cancel)) {
    struct kcld_shard_delivery *d = s->held;
    s->held = NULL;
    if (s->timer_init)
      uv_timer_stop(&s->timer);
    s->in_flight--;
    kcld_shard_consumer_done(d);
  }
}

static void sink_init(struct tsink *s, struct env *e, enum sink_mode mode)
{
  memset(s, 0, sizeof(*s));
  s->mode = mode;
  uv_timer_init(&e->loop, &s->timer);
  s->timer.data = s;
  s->timer_init = 1;
}

static void on_sink_timer_closed(uv_handle_t *h)
{
  ((struct tsink *)h->data)->timer_init = 0;
}

/* Closes the sink's timer and waits for it, so the struct can be reused. */
static void sink_free(struct tsink *s)
{
  uv_loop_t *loop = s->timer.loop;
  uv_close((uv_handle_t *)&s->timer, on_sink_timer_closed);
  while (s->timer_init)
    uv_run(loop, UV_RUN_ONCE);
  free(s->got);
  s->got = NULL;
}

/* Records delivered with ids "rec-NNNNNN": the ids in order. */
static int got_id(const struct got *g)
{
  return strncmp(g->data, "rec-", 4) == 0 ? atoi(g->data + 4) : -1;
}

/* ======== The coordinator, faked at link time ======== */

/* This file defines kcld_coordinator_checkpoint, _checkpoint_window,
 * _shard_ended and _parents_done, and what a struct kcld_coordinator is here, so the linker
 * never pulls lease/coordinator.o in: the consumer calls the coordinator's
 * real interface and meets this recording double, which answers at once.
 * The consumer with the real coordinator on dynalite is in
 * test_shard_consumer_lease.c. */
struct kcld_coordinator {
  int parents_asks;
  int parents_not_done;      /* answer "not done" this many times */
  int cp_writes;
  int cp_fail;               /* answer the next writes with this error */
  int cp_fail_times;
  char cp_seq[KCLD_SEQ_MAX + 1];
  uint64_t cp_sub;
  int ended_calls;
  char ended_shard[32];
  int cp_writes_at_end;      /* writes before shard_ended */
  int ended_err;
  int win_writes;            /* writes that carried a window text */
  char win[64];              /* the last window text written */
};

void kcld_coordinator_checkpoint(struct kcld_coordinator *fl,
                                 const char *shard_id, const char *sequence,
                                 uint64_t sub, kcld_lease_cb cb, void *arg)
{
  (void)shard_id;
  assert_true(kcld_seq_valid(sequence));
  /* Never backwards. */
  if (fl->cp_seq[0])
    assert_true(kcld_seq_position_compare(fl->cp_seq, fl->cp_sub,
                                             sequence, sub) < 0);
  if (fl->cp_fail_times > 0) {
    fl->cp_fail_times--;
    cb(fl->cp_fail, arg);
    return;
  }
  fl->cp_writes++;
  snprintf(fl->cp_seq, sizeof(fl->cp_seq), "%s", sequence);
  fl->cp_sub = sub;
  cb(0, arg);
}

/* A window text goes with its position; a new text may come at the
 * position already written. */
void kcld_coordinator_checkpoint_window(struct kcld_coordinator *fl,
                                        const char *shard_id,
                                        const char *sequence, uint64_t sub,
                                        const char *window, kcld_lease_cb cb,
                                        void *arg)
{
  (void)shard_id;
  assert_true(kcld_seq_valid(sequence));
  if (fl->cp_seq[0])
    assert_true(kcld_seq_position_compare(fl->cp_seq, fl->cp_sub,
                                             sequence, sub) <= 0);
  fl->cp_writes++;
  if (window) {
    fl->win_writes++;
    snprintf(fl->win, sizeof(fl->win), "%s", window);
  }
  snprintf(fl->cp_seq, sizeof(fl->cp_seq), "%s", sequence);
  fl->cp_sub = sub;
  cb(0, arg);
}

void kcld_coordinator_shard_ended(struct kcld_coordinator *fl,
                                  const char *shard_id,
                                  const char *const *children,
                                  size_t n_children, kcld_lease_cb cb,
                                  void *arg)
{
  (void)children;
  (void)n_children;
  fl->ended_calls++;
  fl->cp_writes_at_end = fl->cp_writes;
  snprintf(fl->ended_shard, sizeof(fl->ended_shard), "%s", shard_id);
  cb(fl->ended_err, arg);
}

void kcld_coordinator_parents_done(struct kcld_coordinator *fl,
                                   const char *shard_id, kcld_parents_cb cb,
                                   void *arg)
{
  (void)shard_id;
  fl->parents_asks++;
  if (fl->parents_not_done > 0) {
    fl->parents_not_done--;
    cb(0, 0, arg);
    return;
  }
  cb(0, 1, arg);
}

struct flushed {
  int calls;
  int err;
};

static void on_flushed(int err, void *arg)
{
  struct flushed *f = arg;
  f->calls++;
  f->err = err;
}

/* ======== Consumer set-up ======== */

struct fin {
  int calls;
  enum kcld_shard_consumer_end how;
  int err;
};

static void on_finished(struct kcld_shard_consumer *c,
                        enum kcld_shard_consumer_end how, int err, void *arg)
{
  struct fin *f = arg;
  (void)c;
  f->calls++;
  f->how = how;
  f->err = err;
}

struct rig {
  struct kcld_shard_consumer_opts o;
  struct kcld_lease lease;
  struct kcld_coordinator fl;
  struct tsink sink;
  struct fin fin;
};

static void rig_init(struct rig *r, struct env *e, const char *shard,
                     const char *checkpoint, uint64_t sub,
                     enum sink_mode mode)
{
  memset(r, 0, sizeof(*r));
  sink_init(&r->sink, e, mode);
  r->lease.shard_id = (char *)shard;
  r->lease.checkpoint = (char *)checkpoint;
  r->lease.checkpoint_sub = sub;
  r->o.loop = &e->loop;
  r->o.kinesis = e->kin;
  r->o.coordinator = &r->fl;
  r->o.stream = e->stream;
  r->o.lease = &r->lease;
  r->o.idle_ms = 200;
  r->o.max_records = (int)kcld_test_key_default("fetch.max_records");
  r->o.max_buffered_bytes =
    (size_t)kcld_test_key_default("fetch.max_buffered_bytes");
  r->o.backoff_base_ms = 40;
  r->o.backoff_max_ms = 400;
  r->o.sink.deliver = sink_deliver;
  r->o.sink.cancel = sink_cancel;
  r->o.sink.impl = &r->sink;
  r->o.finished = on_finished;
  r->o.arg = &r->fin;
}

static struct kcld_shard_consumer *rig_start(struct rig *r)
{
  struct kcld_shard_consumer *c = NULL;
  assert_int_equal(kcld_shard_consumer_start(&r->o, &c), 0);
  assert_non_null(c);
  r->sink.c = c;
  return c;
}

/* Stops gracefully and waits for the finished callback. */
static void rig_stop(struct env *e, struct rig *r,
                     struct kcld_shard_consumer *c, uint64_t timeout_ms)
{
  kcld_shard_consumer_stop(c, timeout_ms);
  assert_true(run_until(&e->loop, &r->fin.calls, 10000));
}

static void rig_close(struct rig *r, struct kcld_shard_consumer *c)
{
  kcld_shard_consumer_close(c);
  sink_free(&r->sink);
}

/* The produced records of one shard, in sequence order. */
static size_t of_shard(const struct produced *p, size_t n, const char *shard,
                       const struct produced **out)
{
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (strcmp(p[i].shard, shard) == 0)
      out[k++] = &p[i];
  for (size_t i = 1; i < k; i++)
    for (size_t j = i; j > 0 && kcld_seq_compare(out[j - 1]->seq,
                                                        out[j]->seq) > 0;
         j--) {
      const struct produced *t = out[j];
      out[j] = out[j - 1];
      out[j - 1] = t;
    }
  return k;
}

/* The sink got exactly want[0..n-1], in that order, each once. */
static void assert_got_exactly(const struct tsink *s,
                               const struct produced *const *want, size_t n)
{
  assert_int_equal(s->n, n);
  for (size_t i = 0; i < n; i++) {
    assert_string_equal(s->got[i].seq, want[i]->seq);
    assert_int_equal(got_id(&s->got[i]), want[i]->id);
  }
}

/* ======== Group set-up ======== */

static int setup(void **state)
{
  (void)state;
  kcld_log_setup(getenv("TEST_LOG") ? KCLD_LOG_DEBUG : KCLD_LOG_ERROR,
                KCLD_LOG_JSON, NULL);
  json_object_seed(0);
  if (kcld_emu_start(&s_emu, "kinesis fault") != 0)
    return -1;
  s_kinesis = kcld_emu_url(&s_emu, "kinesis");
  s_fault = kcld_emu_url(&s_emu, "fault");
  return s_kinesis && s_fault ? 0 : -1;
}

static int teardown(void **state)
{
  (void)state;
  kcld_emu_stop(&s_emu);
  kcld_http_global_cleanup();
  return 0;
}

/* Points the fault endpoint at kinesalite with these steps. */
static void fault_steps(const char *steps_json)
{
  char buf[4096];
  snprintf(buf, sizeof(buf),
           "{\"upstream\": \"%s\", \"then\": \"proxy\", \"steps\": %s}",
           s_kinesis, steps_json);
  assert_int_equal(kcld_fault_script(s_fault, buf), 0);
}

/* ======== In order, exactly once, checkpointed ======== */

static void test_two_shards_in_order_exactly_once(void **state)
{
  (void)state;
  struct env e;
  enum { N = 400 };
  static struct produced p[N];
  const struct produced *want[N];
  env_init(&e, s_kinesis);
  create_stream(&e, 2);
  put_records(&e, 0, N, 64, p);

  static struct rig r0, r1;
  rig_init(&r0, &e, SHARD0, "TRIM_HORIZON", 0, SINK_NOW);
  rig_init(&r1, &e, SHARD1, "TRIM_HORIZON", 0, SINK_NOW);
  r0.o.max_records = 37;
  r1.o.max_records = 37;
  size_t n0 = of_shard(p, N, SHARD0, want);
  assert_true(n0 > 50 && n0 < N - 50); /* both shards got records */
  r0.sink.want = n0;
  r1.sink.want = N - n0;
  struct kcld_shard_consumer *c0 = rig_start(&r0);
  struct kcld_shard_consumer *c1 = rig_start(&r1);
  assert_string_equal(kcld_shard_consumer_shard_id(c0), SHARD0);
  assert_true(run_until(&e.loop, &r0.sink.reached, 20000));
  assert_true(run_until(&e.loop, &r1.sink.reached, 20000));
  sleep_loop(&e, 400); /* nothing more arrives */

  assert_got_exactly(&r0.sink, want, n0);
  size_t n1 = of_shard(p, N, SHARD1, want);
  assert_got_exactly(&r1.sink, want, n1);
  assert_int_equal(r0.sink.max_in_flight, 1);
  assert_string_equal(r1.fl.cp_seq, want[n1 - 1]->seq);

  struct kcld_shard_consumer_stats st;
  kcld_shard_consumer_stats(c0, &st);
  assert_int_equal(st.records, n0);
  assert_int_equal(st.kinesis_records, n0);
  assert_true(st.bytes >= n0 * 64);
  assert_int_equal(st.throttles, 0);
  assert_int_equal(st.errors, 0);
  assert_int_equal(kcld_shard_consumer_millis_behind(c0), 0);
  assert_int_equal(st.buffered_bytes, 0);

  rig_stop(&e, &r0, c0, 5000);
  rig_stop(&e, &r1, c1, 5000);
  assert_int_equal(r0.fin.how, KCLD_SHARD_CONSUMER_STOPPED);
  assert_int_equal(r0.fin.err, 0);
  assert_int_equal(r1.fin.how, KCLD_SHARD_CONSUMER_STOPPED);
  of_shard(p, N, SHARD0, want);
  assert_string_equal(r0.fl.cp_seq, want[n0 - 1]->seq);
  const char *seq;
  assert_int_equal(
    kcld_checkpoint_written(kcld_shard_consumer_checkpoint(c0), &seq, NULL),
    1);
  assert_string_equal(seq, want[n0 - 1]->seq);
  rig_close(&r0, c0);
  rig_close(&r1, c1);
  env_finish(&e);
}

/* ======== Where reading starts ======== */

static void test_resume_after_and_at_sub_sequence(void **state)
{
  (void)state;
  struct env e;
  static struct produced p[13];
  env_init(&e, s_kinesis);
  create_stream(&e, 1);
  put_records(&e, 0, 10, 32, p);
  /* Three aggregates of four user records each. */
  for (int a = 0; a < 3; a++) {
    uint8_t buf[4096];
    size_t len = build_aggregate(buf, a, 4);
    struct kcld_kinesis_record rec = {.data = buf, .len = len,
                                      .partition_key = "agg"};
    struct put_wait w = {.out = &p[10 + a]};
    assert_int_equal(
      kcld_kinesis_put_records(e.kin, e.stream, &rec, 1, on_put, &w), 0);
    assert_true(run_until(&e.loop, &w.done, 10000));
    assert_int_equal(w.err, 0);
    p[10 + a].subs = 4;
  }

  /* AFTER plain record #4: #5..#9, then every aggregate's user records. */
  static struct rig r;
  rig_init(&r, &e, SHARD0, p[4].seq, 0, SINK_NOW);
  r.sink.want = 5 + 12;
  struct kcld_shard_consumer *c = rig_start(&r);
  assert_true(run_until(&e.loop, &r.sink.reached, 10000));
  sleep_loop(&e, 300);
  assert_int_equal(r.sink.n, 17);
  for (int i = 0; i < 5; i++)
    assert_int_equal(got_id(&r.sink.got[i]), 5 + i);
  for (int i = 0; i < 12; i++) {
    char want[32];
    snprintf(want, sizeof(want), "agg%d-%d", i / 4, i % 4);
    assert_string_equal(r.sink.got[5 + i].data, want);
    assert_string_equal(r.sink.got[5 + i].seq, p[10 + i / 4].seq);
    assert_int_equal(r.sink.got[5 + i].sub, (uint64_t)(i % 4));
  }
  /* The checkpoint carries the sub-sequence of the last user record. */
  assert_string_equal(r.fl.cp_seq, p[12].seq);
  assert_int_equal(r.fl.cp_sub, 3);
  rig_stop(&e, &r, c, 5000);
  rig_close(&r, c);

  /* AT aggregate #1, sub 1: its subs 2 and 3, then aggregate #2. */
  rig_init(&r, &e, SHARD0, p[11].seq, 1, SINK_NOW);
  r.sink.want = 2 + 4;
  c = rig_start(&r);
  assert_true(run_until(&e.loop, &r.sink.reached, 10000));
  sleep_loop(&e, 300);
  assert_int_equal(r.sink.n, 6);
  assert_string_equal(r.sink.got[0].data, "agg1-2");
  assert_int_equal(r.sink.got[0].sub, 2);
  assert_string_equal(r.sink.got[1].data, "agg1-3");
  assert_string_equal(r.sink.got[2].data, "agg2-0");
  assert_string_equal(r.sink.got[5].data, "agg2-3");
  rig_stop(&e, &r, c, 5000);
  rig_close(&r, c);

  /* AT the last sub of the last aggregate: nothing to deliver. */
  rig_init(&r, &e, SHARD0, p[12].seq, 3, SINK_NOW);
  c = rig_start(&r);
  sleep_loop(&e, 700);
  assert_int_equal(r.sink.n, 0);
  assert_int_equal(r.fl.cp_writes, 0);
  rig_stop(&e, &r, c, 5000);
  rig_close(&r, c);
  env_finish(&e);
}

/* ======== Prefetch, rate and idle ======== */

static void test_prefetch_bounded_by_budget(void **state)
{
  (void)state;
  struct env e;
  enum { N = 60 };
  static struct produced p[N];
  const struct produced *want[N];
  env_init(&e, s_kinesis);
  create_stream(&e, 1);
  put_records(&e, 0, N, 20000, p); /* ~1.2 MB */

  static struct rig r;
  rig_init(&r, &e, SHARD0, "TRIM_HORIZON", 0, SINK_DELAY);
  r.sink.delay_ms = 120;
  r.o.max_records = 4;                 /* ~80 KB a response */
  r.o.max_buffered_bytes = 200 * 1024; /* room for ~2 responses */
  r.o.min_call_interval_ms = 50;
  r.sink.want = N;
  struct kcld_shard_consumer *c = rig_start(&r);

  /* Watch the buffer while it runs. */
  size_t max_buffered = 0, max_queued = 0;
  int busy_with_queue = 0;
  while (!r.sink.reached) {
    struct kcld_shard_consumer_stats st;
    uv_run(&e.loop, UV_RUN_ONCE);
    kcld_shard_consumer_stats(c, &st);
    if (st.buffered_bytes > max_buffered)
      max_buffered = st.buffered_bytes;
    if (st.queued_batches > max_queued)
      max_queued = st.queued_batches;
    if (r.sink.in_flight && st.queued_batches > 0)
      busy_with_queue = 1;
  }
  sleep_loop(&e, 300);
  of_shard(p, N, SHARD0, want);
  assert_got_exactly(&r.sink, want, N);
  /* Bounded: the budget plus at most one response beyond it. */
  assert_true(max_buffered <= 200 * 1024 + r.sink.max_batch_mem);
  assert_true(max_queued >= 1 && max_queued <= 3);
  /* Prefetched: the next batch was waiting while the sink worked. */
  assert_true(busy_with_queue);
  assert_int_equal(r.sink.max_in_flight, 1);
  rig_stop(&e, &r, c, 5000);
  assert_int_equal(r.fin.err, 0);
  assert_string_equal(r.fl.cp_seq, want[N - 1]->seq);
  rig_close(&r, c);
  env_finish(&e);
}

/* ======== Memory: the process budget and reused blocks ======== */

static void test_total_budget_across_shards(void **state)
{
  (void)state;
  struct env e;
  enum { SHARDS = 8, N = 96 };
  static struct produced p[N];
  static struct rig r[SHARDS];
  static const char *ids[SHARDS] = {
    "shardId-000000000000", "shardId-000000000001", "shardId-000000000002",
    "shardId-000000000003", "shardId-000000000004", "shardId-000000000005",
    "shardId-000000000006", "shardId-000000000007"};
  const struct produced *want[N];
  struct kcld_shard_consumer *c[SHARDS];
  struct kcld_fetch_budget *budget = NULL;
  size_t n[SHARDS];
  env_init(&e, s_kinesis);
  create_stream(&e, SHARDS);
  put_records(&e, 0, N, 3000, p);

  /* An answer of 3 records is ~12 KiB of body and ~10 KiB parsed: the
   * budget holds about two answers, for eight shards at once. */
  const size_t total = 48 * 1024;
  struct kcld_fetch_budget_opts bo = {.loop = &e.loop,
                                      .max_total_bytes = total,
                                      .parse_slots = 2};
  assert_int_equal(kcld_fetch_budget_new(&bo, &budget), 0);
  for (int i = 0; i < SHARDS; i++) {
    rig_init(&r[i], &e, ids[i], "TRIM_HORIZON", 0, SINK_DELAY);
    r[i].sink.delay_ms = 20;
    r[i].o.max_records = 3;
    r[i].o.min_call_interval_ms = 20;
    r[i].o.budget = budget;
    n[i] = of_shard(p, N, ids[i], want);
    r[i].sink.want = n[i];
    r[i].sink.reached = n[i] == 0;
    c[i] = rig_start(&r[i]);
  }
  int all = 0, saw_waiting = 0;
  uint64_t deadline = uv_now(&e.loop) + 30000;
  while (!all && uv_now(&e.loop) < deadline) {
    struct kcld_fetch_budget_stats bs;
    uv_run(&e.loop, UV_RUN_ONCE);
    kcld_fetch_budget_stats(budget, &bs);
    assert_true(bs.used_bytes <= total);
    if (bs.waiting > 0)
      saw_waiting = 1;
    all = 1;
    for (int i = 0; i < SHARDS; i++)
      all &= r[i].sink.reached;
  }
  assert_true(all);
  struct kcld_fetch_budget_stats bs;
  kcld_fetch_budget_stats(budget, &bs);
  /* Never more than the budget, and the budget did hold shards back. */
  assert_true(bs.peak_bytes <= total);
  assert_true(bs.peak_bytes > total / 4);
  assert_true(saw_waiting);
  for (int i = 0; i < SHARDS; i++) {
    of_shard(p, N, ids[i], want);
    assert_got_exactly(&r[i].sink, want, n[i]);
    assert_int_equal(r[i].sink.max_in_flight, n[i] ? 1 : 0);
    rig_stop(&e, &r[i], c[i], 5000);
    assert_int_equal(r[i].fin.err, 0);
    rig_close(&r[i], c[i]);
  }
  kcld_fetch_budget_close(budget);
  env_finish(&e);
}

static void test_blocks_reused(void **state)
{
  (void)state;
  struct env e;
  enum { N = 30 };
  static struct produced p[N];
  const struct produced *want[N];
  env_init(&e, s_kinesis);
  create_stream(&e, 1);
  put_records(&e, 0, N, 5000, p);

  static struct rig r;
  rig_init(&r, &e, SHARD0, "TRIM_HORIZON", 0, SINK_NOW);
  r.o.max_records = 3; /* ten answers of the same size */
  r.o.min_call_interval_ms = 20;
  r.sink.want = N;
  struct kcld_shard_consumer *c = rig_start(&r);
  assert_true(run_until(&e.loop, &r.sink.reached, 20000));
  of_shard(p, N, SHARD0, want);
  assert_got_exactly(&r.sink, want, N);
  assert_int_equal(r.sink.deliveries, 10);
  /* The first answer allocates its body and batch blocks; every later one
   * reuses them. */
  assert_true(r.sink.fresh_at[0] >= 2);
  assert_int_equal(r.sink.fresh_at[9], r.sink.fresh_at[1]);
  assert_int_equal(r.sink.fresh_at[1], r.sink.fresh_at[0]);
  assert_true(r.sink.reused_at[9] >= r.sink.reused_at[0] + 2 * 9);
  rig_stop(&e, &r, c, 5000);
  struct kcld_shard_consumer_stats st;
  kcld_shard_consumer_stats(c, &st);
  assert_true(st.held_bytes_peak > 3 * 5000);
  /* Answers of 15 KB go to the pool; the empty ones after them are
   * parsed on the loop. */
  assert_true(st.get_records_calls >= st.loop_parses + 10);
  assert_true(st.loop_parses >= st.empty_responses);
  rig_close(&r, c);
  env_finish(&e);
}

static void test_rate_limit_and_idle(void **state)
{
  (void)state;
  struct env e;
  enum { N = 40 };
  static struct produced p[N];
  env_init(&e, s_kinesis);
  create_stream(&e, 1);
  put_records(&e, 0, N, 32, p);

  /* Behind: 10 records a call, calls back to back but at most 5/s. */
  static struct rig r;
  rig_init(&r, &e, SHARD0, "TRIM_HORIZON", 0, SINK_NOW);
  r.o.max_records = 10;
  r.o.idle_ms = 600;
  r.sink.want = N;
  uint64_t t0 = uv_now(&e.loop);
  struct kcld_shard_consumer *c = rig_start(&r);
  assert_true(run_until(&e.loop, &r.sink.reached, 10000));
  uint64_t took = uv_now(&e.loop) - t0;
  struct kcld_shard_consumer_stats st;
  kcld_shard_consumer_stats(c, &st);
  assert_int_equal(st.get_records_calls, 4);
  /* GetShardIterator then 4 GetRecords: 4 gaps of >= 200 ms. */
  assert_true(took >= 4 * 200 - 20);
  assert_true(took < 3000);

  /* Caught up: empty answers are followed by idle_ms waits. */
  uint64_t calls0 = st.get_records_calls;
  sleep_loop(&e, 2000);
  kcld_shard_consumer_stats(c, &st);
  uint64_t idle_calls = st.get_records_calls - calls0;
  assert_true(idle_calls >= 2 && idle_calls <= 4); /* ~2000/600 */
  assert_true(st.empty_responses >= 2);
  /* Every answer here is small (an empty one, or ten 32-byte records):
   * parsed on the loop.  The calls counted start before their answers: an
   * idle call may be in flight, its answer still to come. */
  for (int i = 0; i < 100 && st.loop_parses != st.get_records_calls; i++) {
    sleep_loop(&e, 10);
    kcld_shard_consumer_stats(c, &st);
  }
  assert_int_equal(st.loop_parses, st.get_records_calls);

  /* New records are picked up within about one idle wait. */
  static struct produced q[5];
  r.sink.want = N + 5;
  r.sink.reached = 0;
  t0 = uv_now(&e.loop);
  put_records(&e, N, 5, 32, q);
  assert_true(run_until(&e.loop, &r.sink.reached, 3000));
  assert_true(uv_now(&e.loop) - t0 < 1500);
  assert_int_equal(r.sink.n, N + 5);
  assert_int_equal(got_id(&r.sink.got[N + 4]), N + 4);
  rig_stop(&e, &r, c, 5000);
  rig_close(&r, c);
  env_finish(&e);
}

/* ======== Faults ======== */

static void test_expired_iterator(void **state)
{
  (void)state;
  struct env e;
  enum { N = 50 };
  static struct produced p[N];
  const struct produced *want[N];
  env_init(&e, s_fault);
  fault_steps("[]");
  create_stream(&e, 1);
  put_records(&e, 0, N, 32, p);

  /* Expired before anything was fetched (a new TRIM_HORIZON iterator),
   * then twice in the middle (new iterators after the last record). */
  const char *expired =
    "{\"target\": \"GetRecords\", \"status\": 400, \"body\": {\"__type\": "
    "\"ExpiredIteratorException\", \"message\": \"Iterator expired\"}}";
  char steps[2048];
  snprintf(steps, sizeof(steps),
           "[%s, {\"target\": \"GetRecords\", \"times\": 2}, %s, "
           "{\"target\": \"GetRecords\"}, %s]", expired, expired, expired);
  fault_steps(steps);

  static struct rig r;
  rig_init(&r, &e, SHARD0, "TRIM_HORIZON", 0, SINK_NOW);
  r.o.max_records = 10;
  r.o.min_call_interval_ms = 20;
  r.sink.want = N;
  struct kcld_shard_consumer *c = rig_start(&r);
  assert_true(run_until(&e.loop, &r.sink.reached, 10000));
  sleep_loop(&e, 300);
  of_shard(p, N, SHARD0, want);
  assert_got_exactly(&r.sink, want, N);
  struct kcld_shard_consumer_stats st;
  kcld_shard_consumer_stats(c, &st);
  assert_int_equal(st.expired_iterators, 3);
  assert_int_equal(st.errors, 0);
  assert_int_equal(
    kcld_fault_count(s_fault, NULL, "Kinesis_20131202.GetShardIterator"), 4);
  rig_stop(&e, &r, c, 5000);
  rig_close(&r, c);
  env_finish(&e);
}

static void test_throttling_and_errors(void **state)
{
  (void)state;
  struct env e;
  enum { N = 30 };
  static struct produced p[N];
  const struct produced *want[N];
  env_init(&e, s_fault);
  fault_steps("[]");
  create_stream(&e, 1);
  put_records(&e, 0, N, 32, p);

  fault_steps(
    "[{\"target\": \"GetRecords\", \"times\": 1},"
    " {\"target\": \"GetRecords\", \"status\": 400, \"times\": 3,"
    "  \"body\": {\"__type\": \"ProvisionedThroughputExceededException\","
    "             \"message\": \"Rate exceeded for shard\"}},"
    " {\"target\": \"GetRecords\", \"status\": 400,"
    "  \"body\": {\"__type\": \"KMSThrottlingException\","
    "             \"message\": \"KMS rate exceeded\"}},"
    " {\"target\": \"GetRecords\", \"times\": 1},"
    " {\"target\": \"GetRecords\", \"status\": 500},"
    " {\"target\": \"GetRecords\", \"garbage\": true},"
    " {\"target\": \"GetRecords\", \"close\": \"mid\"},"
    " {\"target\": \"GetShardIterator\", \"status\": 503}]");

  static struct rig r;
  rig_init(&r, &e, SHARD0, "TRIM_HORIZON", 0, SINK_NOW);
  r.o.max_records = 10;
  r.o.min_call_interval_ms = 20;
  r.o.backoff_base_ms = 60;
  r.sink.want = N;
  uint64_t t0 = uv_now(&e.loop);
  struct kcld_shard_consumer *c = rig_start(&r);
  assert_true(run_until(&e.loop, &r.sink.reached, 15000));
  uint64_t took = uv_now(&e.loop) - t0;
  sleep_loop(&e, 300);
  of_shard(p, N, SHARD0, want);
  assert_got_exactly(&r.sink, want, N);
  struct kcld_shard_consumer_stats st;
  kcld_shard_consumer_stats(c, &st);
  assert_int_equal(st.throttles, 4);
  assert_true(st.errors >= 3); /* 500, garbage, closed connection */
  /* Backed off: four throttles in a row wait at least
   * 30 + 60 + 120 + 240 ms (the fixed halves), then three more errors. */
  assert_true(took >= 450);
  rig_stop(&e, &r, c, 5000);
  assert_int_equal(r.fin.err, 0);
  assert_string_equal(r.fl.cp_seq, want[N - 1]->seq);
  rig_close(&r, c);
  env_finish(&e);
}

/* ======== Parents and shard end ======== */

static void test_waits_for_parents(void **state)
{
  (void)state;
  struct env e;
  static struct produced p[5];
  env_init(&e, s_fault);
  fault_steps("[]");
  create_stream(&e, 1);
  put_records(&e, 0, 5, 32, p);
  fault_steps("[]");

  static struct rig r;
  rig_init(&r, &e, SHARD0, "TRIM_HORIZON", 0, SINK_NOW);
  r.fl.parents_not_done = 3;
  r.o.parents_poll_ms = 150;
  r.sink.want = 5;
  struct kcld_shard_consumer *c = rig_start(&r);
  sleep_loop(&e, 300);
  assert_int_equal(r.sink.n, 0);
  assert_int_equal(
    kcld_fault_count(s_fault, NULL, "Kinesis_20131202.GetShardIterator"), 0);
  assert_true(run_until(&e.loop, &r.sink.reached, 5000));
  assert_int_equal(r.fl.parents_asks, 4);
  rig_stop(&e, &r, c, 5000);
  rig_close(&r, c);

  /* Stopping while still waiting for the parents stops at once. */
  rig_init(&r, &e, SHARD0, "TRIM_HORIZON", 0, SINK_NOW);
  r.fl.parents_not_done = 1000;
  r.o.parents_poll_ms = 100;
  c = rig_start(&r);
  sleep_loop(&e, 250);
  rig_stop(&e, &r, c, 5000);
  assert_int_equal(r.fin.how, KCLD_SHARD_CONSUMER_STOPPED);
  assert_int_equal(r.fin.err, 0);
  assert_int_equal(r.sink.deliver_calls, 0);
  rig_close(&r, c);
  env_finish(&e);
}

static void test_shard_end_after_split(void **state)
{
  (void)state;
  struct env e;
  enum { N = 25 };
  static struct produced p[N];
  const struct produced *want[N];
  env_init(&e, s_kinesis);
  create_stream(&e, 1);
  put_records(&e, 0, N, 32, p);
  struct op o = {0};
  assert_int_equal(
    kcld_kinesis_split_shard(e.kin, e.stream, SHARD0,
                             "170141183460469231731687303715884105728", on_op,
                             &o), 0);
  assert_true(run_until(&e.loop, &o.done, 10000));
  assert_int_equal(o.err, 0);
  memset(&o, 0, sizeof(o));
  assert_int_equal(
    kcld_kinesis_wait_active(e.kin, e.stream, 10000, on_summary, &o), 0);
  assert_true(run_until(&e.loop, &o.done, 12000));

  static struct rig r;
  rig_init(&r, &e, SHARD0, "TRIM_HORIZON", 0, SINK_DELAY);
  r.sink.delay_ms = 50;
  r.o.max_records = 7;
  r.o.checkpoint_interval_ms = 60000; /* only the end flush writes */
  struct kcld_shard_consumer *c = rig_start(&r);
  assert_true(run_until(&e.loop, &r.fin.calls, 15000));
  assert_int_equal(r.fin.how, KCLD_SHARD_CONSUMER_ENDED);
  assert_int_equal(r.fin.err, 0);
  of_shard(p, N, SHARD0, want);
  assert_got_exactly(&r.sink, want, N);
  /* Everything was handled and checkpointed before the end was recorded. */
  assert_int_equal(r.fl.ended_calls, 1);
  assert_string_equal(r.fl.ended_shard, SHARD0);
  assert_true(r.fl.cp_writes_at_end >= 1);
  assert_string_equal(r.fl.cp_seq, want[N - 1]->seq);
  assert_int_equal(r.sink.in_flight, 0);
  rig_close(&r, c);

  /* A lease at SHARD_END: ended at once, no Kinesis call. */
  rig_init(&r, &e, SHARD0, "SHARD_END", 0, SINK_NOW);
  c = rig_start(&r);
  assert_int_equal(r.fin.calls, 0); /* never from inside start */
  assert_true(run_until(&e.loop, &r.fin.calls, 2000));
  assert_int_equal(r.fin.how, KCLD_SHARD_CONSUMER_ENDED);
  assert_int_equal(r.fl.parents_asks, 0);
  assert_int_equal(r.fl.ended_calls, 0);
  rig_close(&r, c);
  env_finish(&e);
}

/* ======== Stopping ======== */

static void test_lost_stops_at_once(void **state)
{
  (void)state;
  struct env e;
  enum { N = 40 };
  static struct produced p[N];
  env_init(&e, s_kinesis);
  create_stream(&e, 1);
  put_records(&e, 0, N, 32, p);

  static struct rig r;
  rig_init(&r, &e, SHARD0, "TRIM_HORIZON", 0, SINK_HOLD);
  r.o.max_records = 5;
  r.o.min_call_interval_ms = 20;
  r.sink.want = 5;
  struct kcld_shard_consumer *c = rig_start(&r);
  assert_true(run_until(&e.loop, &r.sink.reached, 5000));
  /* Progress on part of the held delivery: checkpointed. */
  kcld_shard_consumer_progress(c, r.sink.got[2].seq, 0);
  assert_int_equal(r.fl.cp_writes, 1);
  sleep_loop(&e, 300); /* prefetch fills the queue meanwhile */
  struct kcld_shard_consumer_stats st;
  kcld_shard_consumer_stats(c, &st);
  assert_true(st.queued_batches >= 1);

  kcld_shard_consumer_lose(c);
  assert_int_equal(r.sink.cancels, 1);
  struct flushed fl = {0};
  kcld_shard_consumer_checkpoint_at(c, "1", 0, on_flushed, &fl);
  assert_int_equal(fl.calls, 1);
  assert_int_equal(fl.err, KCLD_ELOST);
  kcld_shard_consumer_stats(c, &st);
  assert_int_equal(st.queued_batches, 0);
  /* Whatever the sink still says is not written. */
  kcld_shard_consumer_progress(c, r.sink.got[4].seq, 0);
  assert_int_equal(r.fl.cp_writes, 1);
  /* The held delivery ends later; nothing else is delivered. */
  struct kcld_shard_delivery *d = r.sink.held;
  r.sink.held = NULL;
  r.sink.in_flight--;
  kcld_shard_consumer_done(d);
  assert_true(run_until(&e.loop, &r.fin.calls, 2000));
  assert_int_equal(r.fin.how, KCLD_SHARD_CONSUMER_LOST);
  assert_int_equal(r.fin.err, 0);
  sleep_loop(&e, 300);
  assert_int_equal(r.sink.deliveries, 1);
  assert_int_equal(r.sink.deliveries_after_cancel, 0);
  assert_int_equal(r.fl.cp_writes, 1);
  assert_int_equal(r.fin.calls, 1);
  kcld_shard_consumer_stats(c, &st);
  assert_int_equal(st.buffered_bytes, 0);
  rig_close(&r, c);

  /* Closing with a delivery held: cancel, and memory lives until done. */
  rig_init(&r, &e, SHARD0, "TRIM_HORIZON", 0, SINK_HOLD);
  r.sink.want = 1;
  c = rig_start(&r);
  assert_true(run_until(&e.loop, &r.sink.reached, 5000));
  kcld_shard_consumer_close(c);
  assert_int_equal(r.sink.cancels, 1);
  sleep_loop(&e, 100);
  d = r.sink.held;
  r.sink.held = NULL;
  kcld_shard_consumer_done(d); /* frees it now */
  assert_int_equal(r.fin.calls, 0);
  sink_free(&r.sink);
  env_finish(&e);
}

static void test_checkpoint_lost(void **state)
{
  (void)state;
  struct env e;
  static struct produced p[20];
  env_init(&e, s_kinesis);
  create_stream(&e, 1);
  put_records(&e, 0, 20, 32, p);

  static struct rig r;
  rig_init(&r, &e, SHARD0, "TRIM_HORIZON", 0, SINK_NOW);
  r.fl.cp_fail = KCLD_ELOST;
  r.fl.cp_fail_times = 1000;
  r.o.max_records = 5;
  struct kcld_shard_consumer *c = rig_start(&r);
  assert_true(run_until(&e.loop, &r.fin.calls, 5000));
  assert_int_equal(r.fin.how, KCLD_SHARD_CONSUMER_LOST);
  assert_int_equal(r.fin.err, KCLD_ELOST);
  assert_int_equal(r.fl.cp_writes, 0);
  sleep_loop(&e, 400);
  assert_int_equal(r.sink.deliveries, 1); /* nothing after the loss */
  rig_close(&r, c);

  /* A transient checkpoint failure is retried; nothing stops. */
  rig_init(&r, &e, SHARD0, "TRIM_HORIZON", 0, SINK_NOW);
  r.fl.cp_fail = KCLD_ETRANSPORT;
  r.fl.cp_fail_times = 2;
  r.sink.want = 20;
  c = rig_start(&r);
  assert_true(run_until(&e.loop, &r.sink.reached, 5000));
  rig_stop(&e, &r, c, 5000);
  assert_int_equal(r.fin.how, KCLD_SHARD_CONSUMER_STOPPED);
  assert_int_equal(r.fin.err, 0);
  assert_string_equal(r.fl.cp_seq, p[19].seq);
  rig_close(&r, c);
  env_finish(&e);
}

static void test_graceful_stop(void **state)
{
  (void)state;
  struct env e;
  enum { N = 40 };
  static struct produced p[N];
  env_init(&e, s_kinesis);
  create_stream(&e, 1);
  put_records(&e, 0, N, 32, p);

  /* Drains: the delivery in flight finishes, is checkpointed, and nothing
   * queued is delivered after the stop. */
  static struct rig r;
  rig_init(&r, &e, SHARD0, "TRIM_HORIZON", 0, SINK_DELAY);
  r.sink.delay_ms = 300;
  r.o.max_records = 5;
  r.o.min_call_interval_ms = 20;
  r.o.checkpoint_interval_ms = 60000;
  r.sink.want = 1;
  struct kcld_shard_consumer *c = rig_start(&r);
  assert_true(run_until(&e.loop, &r.sink.reached, 5000));
  sleep_loop(&e, 100);
  assert_int_equal(r.sink.in_flight, 1);
  kcld_shard_consumer_stop(c, 5000);
  assert_int_equal(r.fin.calls, 0);
  assert_true(run_until(&e.loop, &r.fin.calls, 5000));
  assert_int_equal(r.fin.how, KCLD_SHARD_CONSUMER_STOPPED);
  assert_int_equal(r.fin.err, 0);
  assert_int_equal(r.sink.deliveries, 1);
  assert_int_equal(r.sink.cancels, 0);
  assert_string_equal(r.fl.cp_seq, p[4].seq);
  rig_close(&r, c);

  /* Cut short: the sink holds; at the deadline it is cancelled and what
   * it reported is written. */
  rig_init(&r, &e, SHARD0, "TRIM_HORIZON", 0, SINK_HOLD);
  r.sink.done_after_cancel = 1;
  r.o.max_records = 5;
  r.o.checkpoint_interval_ms = 60000;
  r.sink.want = 1;
  c = rig_start(&r);
  assert_true(run_until(&e.loop, &r.sink.reached, 5000));
  kcld_shard_consumer_progress(c, p[0].seq, 0); /* the first write: now */
  assert_string_equal(r.fl.cp_seq, p[0].seq);
  /* A handler's explicit checkpoint writes at once, past the interval. */
  struct flushed fl = {0};
  kcld_shard_consumer_checkpoint_at(c, p[1].seq, 0, on_flushed, &fl);
  assert_int_equal(fl.calls, 1); /* the double answers at once */
  assert_int_equal(fl.err, 0);
  assert_string_equal(r.fl.cp_seq, p[1].seq);
  kcld_shard_consumer_progress(c, p[2].seq, 0); /* held by the interval */
  assert_string_equal(r.fl.cp_seq, p[1].seq);
  uint64_t t0 = uv_now(&e.loop);
  kcld_shard_consumer_stop(c, 300);
  assert_true(run_until(&e.loop, &r.fin.calls, 5000));
  assert_true(uv_now(&e.loop) - t0 >= 290);
  assert_int_equal(r.fin.how, KCLD_SHARD_CONSUMER_STOPPED);
  assert_int_equal(r.fin.err, KCLD_ETIMEDOUT);
  assert_int_equal(r.sink.cancels, 1);
  assert_string_equal(r.fl.cp_seq, p[2].seq); /* flushed, never past */
  rig_close(&r, c);
  env_finish(&e);
}

static void test_refused_delivery_offered_again(void **state)
{
  (void)state;
  struct env e;
  enum { N = 12 };
  static struct produced p[N];
  const struct produced *want[N];
  env_init(&e, s_kinesis);
  create_stream(&e, 1);
  put_records(&e, 0, N, 32, p);
  static struct rig r;
  rig_init(&r, &e, SHARD0, "TRIM_HORIZON", 0, SINK_NOW);
  r.sink.refuse = 3;
  r.o.max_records = 4;
  r.sink.want = N;
  struct kcld_shard_consumer *c = rig_start(&r);
  assert_true(run_until(&e.loop, &r.sink.reached, 5000));
  of_shard(p, N, SHARD0, want);
  assert_got_exactly(&r.sink, want, N);
  assert_true(r.sink.deliver_calls >= r.sink.deliveries + 3);
  rig_stop(&e, &r, c, 5000);
  rig_close(&r, c);
  env_finish(&e);
}

static void test_bad_options(void **state)
{
  (void)state;
  struct env e;
  env_init(&e, s_kinesis);
  static struct rig r;
  struct kcld_shard_consumer *c = (void *)1;
  rig_init(&r, &e, SHARD0, "NONSENSE", 0, SINK_NOW);
  assert_int_equal(kcld_shard_consumer_start(&r.o, &c), KCLD_EINVAL);
  assert_null(c);
  r.lease.checkpoint = "TRIM_HORIZON";
  r.o.sink.cancel = NULL;
  assert_int_equal(kcld_shard_consumer_start(&r.o, &c), KCLD_EINVAL);
  r.o.sink.cancel = sink_cancel;
  /* The fetch settings come from the config: nothing defaults them here. */
  r.o.max_records = 0;
  assert_int_equal(kcld_shard_consumer_start(&r.o, &c), KCLD_EINVAL);
  r.o.max_records = 10;
  r.o.max_buffered_bytes = 0;
  assert_int_equal(kcld_shard_consumer_start(&r.o, &c), KCLD_EINVAL);
  r.o.max_buffered_bytes = 1 << 20;
  r.o.coordinator = NULL;
  assert_int_equal(kcld_shard_consumer_start(&r.o, &c), KCLD_EINVAL);
  sink_free(&r.sink);
  env_finish(&e);
}


int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_bad_options),
    cmocka_unit_test(test_two_shards_in_order_exactly_once),
    cmocka_unit_test(test_resume_after_and_at_sub_sequence),
    cmocka_unit_test(test_prefetch_bounded_by_budget),
    cmocka_unit_test(test_total_budget_across_shards),
    cmocka_unit_test(test_blocks_reused),
    cmocka_unit_test(test_rate_limit_and_idle),
    cmocka_unit_test(test_expired_iterator),
    cmocka_unit_test(test_throttling_and_errors),
    cmocka_unit_test(test_waits_for_parents),
    cmocka_unit_test(test_shard_end_after_split),
    cmocka_unit_test(test_lost_stops_at_once),
    cmocka_unit_test(test_checkpoint_lost),
    cmocka_unit_test(test_graceful_stop),
    cmocka_unit_test(test_refused_delivery_offered_again),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
