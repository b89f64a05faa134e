/* test_fanout_consumer.c — the shard consumer in enhanced fan-out mode
 * (consume/subscriber.c) against the kinesis_efo emulator (kinesalite
 * behind SubscribeToShard over h2c), with a recording sink and a lease
 * double:
 *
 *  - records put while subscriptions are ended early (every 800 ms) reach
 *    the sink exactly once and in shard order, the checkpoint ends at the
 *    last one, every subscription after the first starts
 *    AFTER_SEQUENCE_NUMBER (the last continuation: nothing replayed), and
 *    no GetRecords call reaches the service;
 *  - ResourceInUse and LimitExceeded refusals, an exception event, a reset
 *    mid-frame and a frame with a bad CRC: each is backed off or
 *    resubscribed from the last continuation, nothing lost or twice;
 *  - a split closes the shard: ChildShards with no continuation ends the
 *    consumer (checkpoint flushed first, then shard_ended with the two
 *    children); a stop while shard_ended goes unanswered finishes it
 *    STOPPED at the stop's deadline, and one while shard_ended fails and
 *    is retried finishes it STOPPED at once, the checkpoint at the last
 *    record both times;
 *  - backpressure: with a sink that holds, the shard's bytes stay within
 *    fetch.max_buffered_bytes and one event (the stream is paused), and
 *    everything arrives once the sink lets go;
 *  - four shards under one process budget much smaller than their
 *    backlog, with sinks that hold: the budget's bytes stay within it and
 *    one event (every event is admitted before it is taken in), then every
 *    record arrives once, in shard order; over h2c, and over TLS where the
 *    four subscriptions share a connection;
 *  - losing the lease cancels the subscription at once (the service sees
 *    it closed), and the next owner subscribes without ResourceInUse. */
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

#include "../harness/awsenv.h"
#include "../harness/awssync.h"
#include "../harness/e2e.h"
#include "../harness/fault.h"
#include "../harness/harness.h"
#include "../harness/proc.h"
#include "../harness/tls.h"
#include "aws/fanout.h"
#include "aws/kinesis.h"
#include "base/seq.h"
#include "consume/shard_consumer.h"
#include "err.h"
#include "log.h"

#define SHARD0 "shardId-000000000000"
#define MAXGOT 4096

static struct kcld_emu s_emu;
static const char *s_url;
static char *s_tls_url;          /* the same emulator over TLS */
static char s_ca_path[] = "/tmp/kcld-test-fanout-ca-XXXXXX";
static struct kcld_test_aws *s_sync;
static int s_streams;

/* ======== Set-up ======== */

static json_t *call(const char *op, json_t *req)
{
  const char *type = NULL;
  json_t *r = kcld_test_aws_call(s_sync, KCLD_AWS_KINESIS, op, req, &type);
  json_decref(req);
  if (!r)
    fail_msg("%s failed: %s", op, type ? type : "?");
  return r;
}

static void script(const char *json)
{
  json_t *r = kcld_fault_post(s_url, "/__efo/script", json);
  assert_non_null(r);
  json_decref(r);
}

static json_t *stats(void)
{
  json_t *r = kcld_fault_post(s_url, "/__efo/stats", "{}");
  assert_non_null(r);
  return r;
}

/* HTTP/2 connections the emulator has accepted, ever. */
static json_int_t h2_sessions(void)
{
  json_t *st = stats();
  json_int_t n = json_integer_value(json_object_get(st, "h2_sessions"));
  json_decref(st);
  return n;
}

/* Subscriptions of `consumer` the service still has open. */
static int open_subs(const char *consumer)
{
  json_t *st = stats(), *sub;
  size_t i;
  int n = 0;
  json_array_foreach(json_object_get(st, "subscriptions"), i, sub)
    n += strcmp(json_string_value(json_object_get(sub, "consumer")),
                consumer) == 0 && json_is_null(json_object_get(sub, "ended"));
  json_decref(st);
  return n;
}

static json_int_t calls_of(const char *op)
{
  json_t *st = stats();
  json_int_t n = json_integer_value(json_object_get(
    json_object_get(st, "calls"), op));
  json_decref(st);
  return n;
}

/* A new ACTIVE stream of `shards` shards; name and ARN out. */
static void new_stream(int shards, char *name, size_t ncap, char *arn,
                       size_t acap)
{
  snprintf(name, ncap, "efc-%d", ++s_streams);
  kcld_e2e_create_stream(s_sync, name, shards);
  json_t *d = call("DescribeStreamSummary",
                   json_pack("{s:s}", "StreamName", name));
  snprintf(arn, acap, "%s", json_string_value(json_object_get(
             json_object_get(d, "StreamDescriptionSummary"), "StreamARN")));
  json_decref(d);
}

/* What was put: sequence numbers in put order (all to shard 0). */
struct produced {
  char seq[MAXGOT][KCLD_SEQ_MAX + 1];
  int n;
};

/* Sends PutRecords of `recs` (taken) and notes their sequence numbers in
 * p, in order. */
static void put_noting(const char *stream, json_t *recs, struct produced *p)
{
  json_t *r = call("PutRecords", json_pack("{s:s,s:o}", "StreamName", stream,
                                           "Records", recs));
  json_t *e;
  size_t i;
  assert_int_equal(json_integer_value(json_object_get(
                     r, "FailedRecordCount")), 0);
  json_array_foreach(json_object_get(r, "Records"), i, e)
    snprintf(p->seq[p->n++], KCLD_SEQ_MAX + 1, "%s",
             json_string_value(json_object_get(e, "SequenceNumber")));
  json_decref(r);
}

/* Puts n records "r<id>" (ids from p->n on) to shard 0 of a 1-shard
 * stream, one PutRecords call of up to 100. */
static void put(const char *stream, struct produced *p, int n)
{
  while (n > 0) {
    int k = n > 100 ? 100 : n;
    json_t *recs = json_array();
    for (int i = 0; i < k; i++) {
      char data[32], b64[64];
      int len = snprintf(data, sizeof(data), "r%d", p->n + i);
      EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)data, len);
      json_array_append_new(recs, json_pack("{s:s,s:s}", "Data", b64,
                                            "PartitionKey", "k"));
    }
    put_noting(stream, recs, p);
    n -= k;
  }
}

static int setup(void **state)
{
  (void)state;
  kcld_log_setup(getenv("TEST_LOG") ? KCLD_LOG_DEBUG : KCLD_LOG_ERROR,
                 KCLD_LOG_JSON, NULL);
  json_object_seed(0);
  if (kcld_emu_start(&s_emu, "kinesis_efo") != 0)
    return -1;
  s_url = kcld_emu_url(&s_emu, "kinesis_efo");
  s_sync = s_url ? kcld_test_aws_new(s_url, NULL, NULL) : NULL;
  if (!s_sync)
    return -1;
  /* The same emulator over TLS, trusted through a CA file. */
  s_tls_url = kcld_test_tls_front(s_url, "/__efo/tls", s_ca_path);
  return s_tls_url ? 0 : -1;
}

static int teardown(void **state)
{
  (void)state;
  kcld_test_aws_free(s_sync);
  kcld_emu_stop(&s_emu);
  if (s_tls_url)
    unlink(s_ca_path);
  free(s_tls_url);
  kcld_http_global_cleanup();
  return 0;
}

static int reset(void **state)
{
  (void)state;
  json_t *r = kcld_fault_post(s_url, "/__efo/reset", "{}");
  assert_non_null(r);
  json_decref(r);
  /* Fast heartbeats and early ends; the rate limit below the consumer's
   * own spacing of calls. */
  script("{\"register_delay_ms\": 50, \"heartbeat_ms\": 200, "
         "\"limit_ms\": 100}");
  return 0;
}

/* ======== The loop, the clients, the consumer ======== */

struct env {
  struct kcld_test_awsenv aws;
  struct kcld_kinesis *kin;
  struct kcld_fanout *f;
  char stream[32];
  char consumer[512];
};

static void on_consumer(const struct kcld_fanout_consumer *c, void *arg)
{
  char *arn = arg;
  assert_int_equal(c->st.err, 0);
  snprintf(arn, 512, "%s", c->arn);
}

/* A stream of `shards` shards and an ACTIVE consumer of it, the consumer's
 * clients on `url`. */
static void env_up_at(struct env *e, int shards, const char *url)
{
  char arn[256];
  memset(e, 0, sizeof(*e));
  kcld_test_awsenv_up(&e->aws, KCLD_AWS_KINESIS, url, 1);
  assert_int_equal(kcld_kinesis_new(e->aws.aws, &e->aws.loop, &e->kin), 0);
  assert_int_equal(kcld_fanout_new(e->aws.aws, &e->aws.loop, &e->f), 0);
  new_stream(shards, e->stream, sizeof(e->stream), arn, sizeof(arn));
  assert_int_equal(kcld_fanout_ensure(e->f, arn, "app", 10000, on_consumer,
                                      e->consumer), 0);
  assert_true(kcld_test_run_until(&e->aws.loop, (int *)&e->consumer[0],
                                  10000));
}

static void env_up_n(struct env *e, int shards)
{
  env_up_at(e, shards, s_url);
}

static void env_up(struct env *e)
{
  env_up_n(e, 1);
}

static void env_down(struct env *e)
{
  kcld_fanout_close(e->f);
  kcld_kinesis_close(e->kin);
  kcld_test_awsenv_down(&e->aws);
}

static void on_tick(uv_timer_t *t)
{
  (void)t;
}

/* Runs the loop for ms, or until *flag (when given) is set. */
static int run(struct env *e, const volatile int *flag, unsigned ms)
{
  uv_timer_t tick;
  int never = 0;
  uv_timer_init(&e->aws.loop, &tick);
  uv_timer_start(&tick, on_tick, 5, 5);
  int got = kcld_test_run_until(&e->aws.loop, flag ? flag : &never, ms);
  uv_close((uv_handle_t *)&tick, NULL);
  uv_run(&e->aws.loop, UV_RUN_NOWAIT);
  return got;
}

/* The sink: records what it got; SINK_HOLD keeps deliveries until let go. */
struct sink {
  int hold;
  char got[MAXGOT][KCLD_SEQ_MAX + 1];
  char data[MAXGOT][16];
  int n;
  int want;
  int reached;
  int cancels;
  struct kcld_shard_delivery *held;
  size_t max_held_bytes;
};

static void sink_done(struct kcld_shard_delivery *d)
{
  const struct kcld_record *last = &d->records[d->count - 1];
  kcld_shard_consumer_progress(d->consumer, last->sequence_number,
                               last->sub_sequence_number);
  kcld_shard_consumer_done(d);
}

static int sink_deliver(void *impl, struct kcld_shard_delivery *d)
{
  struct sink *s = impl;
  struct kcld_shard_consumer_stats st;
  for (size_t i = 0; i < d->count && s->n < MAXGOT; i++) {
    const struct kcld_record *r = &d->records[i];
    snprintf(s->got[s->n], sizeof(s->got[0]), "%s", r->sequence_number);
    snprintf(s->data[s->n], sizeof(s->data[0]), "%.*s",
             (int)(r->data_len < 15 ? r->data_len : 15),
             (const char *)r->data);
    s->n++;
  }
  if (s->want && s->n >= s->want)
    s->reached = 1;
  kcld_shard_consumer_stats(d->consumer, &st);
  if (st.held_bytes > s->max_held_bytes)
    s->max_held_bytes = st.held_bytes;
  if (s->hold)
    s->held = d;
  else
    sink_done(d);
  return 0;
}

static void sink_cancel(void *impl, struct kcld_shard_consumer *c)
{
  struct sink *s = impl;
  (void)c;
  s->cancels++;
  if (s->held) {
    struct kcld_shard_delivery *d = s->held;
    s->held = NULL;
    kcld_shard_consumer_done(d);
  }
}

/* The lease double: the coordinator, faked at link time.  This file
 * defines kcld_coordinator_checkpoint, _checkpoint_window, _shard_ended and
 * _parents_done and
 * what a struct kcld_coordinator is here, so lease/coordinator.o is never
 * linked in; it answers at once. */
struct kcld_coordinator {
  char cp[KCLD_SEQ_MAX + 1];
  int cp_writes;
  int ended;
  char children[2][32];
  size_t n_children;
  int end_hold;              /* shard_ended keeps its answer: end_cb */
  int end_err;               /* else answers this */
  kcld_lease_cb end_cb;
  void *end_arg;
  int finished;
  enum kcld_shard_consumer_end how;
  int err;
};

void kcld_coordinator_checkpoint(struct kcld_coordinator *l,
                                 const char *shard_id, const char *seq,
                                 uint64_t sub, kcld_lease_cb cb, void *arg)
{
  (void)shard_id;
  (void)sub;
  if (l->cp[0])
    assert_true(kcld_seq_compare(l->cp, seq) <= 0);
  snprintf(l->cp, sizeof(l->cp), "%s", seq);
  l->cp_writes++;
  cb(0, arg);
}

/* No sink here reports a window: a write with one is a plain checkpoint. */
void kcld_coordinator_checkpoint_window(struct kcld_coordinator *l,
                                        const char *shard_id,
                                        const char *seq, uint64_t sub,
                                        const char *window, kcld_lease_cb cb,
                                        void *arg)
{
  assert_null(window);
  kcld_coordinator_checkpoint(l, shard_id, seq, sub, cb, arg);
}

void kcld_coordinator_shard_ended(struct kcld_coordinator *l,
                                  const char *shard_id,
                                  const char *const *children, size_t n,
                                  kcld_lease_cb cb, void *arg)
{
  (void)shard_id;
  l->ended++;
  l->n_children = n;
  for (size_t i = 0; i < n && i < 2; i++)
    snprintf(l->children[i], sizeof(l->children[i]), "%s", children[i]);
  if (l->end_hold) {
    l->end_cb = cb;
    l->end_arg = arg;
    return;
  }
  cb(l->end_err, arg);
}

void kcld_coordinator_parents_done(struct kcld_coordinator *l,
                                   const char *shard_id, kcld_parents_cb cb,
                                   void *arg)
{
  (void)l;
  (void)shard_id;
  cb(0, 1, arg);
}

static void on_finished(struct kcld_shard_consumer *c,
                        enum kcld_shard_consumer_end how, int err, void *arg)
{
  struct kcld_coordinator *l = arg;
  (void)c;
  l->finished = 1;
  l->how = how;
  l->err = err;
}

struct rig {
  struct sink sink;
  struct kcld_coordinator lease;
  struct kcld_lease kl;
  struct kcld_shard_consumer *c;
};

/* Starts a consumer of `shard` under `budget` (NULL: its own). */
static void start_on(struct env *e, struct rig *r, const char *shard,
                     const char *checkpoint, size_t max_buffered,
                     struct kcld_fetch_budget *budget)
{
  memset(r, 0, sizeof(*r));
  r->kl.shard_id = (char *)shard;
  r->kl.checkpoint = (char *)checkpoint;
  struct kcld_shard_consumer_opts o = {
    .loop = &e->aws.loop, .kinesis = e->kin, .fanout = e->f,
    .budget = budget,
    .consumer_arn = e->consumer, .subscribe_interval_ms = 150,
    .coordinator = &r->lease, .stream = e->stream, .lease = &r->kl,
    .max_buffered_bytes =
      max_buffered ? max_buffered
                   : (size_t)kcld_test_key_default("fetch.max_buffered_bytes"),
    .backoff_base_ms = 50,
    .max_records = (int)kcld_test_key_default("fetch.max_records"),
    .idle_ms = (uint64_t)kcld_test_key_default("fetch.idle_time"),
    .backoff_max_ms = 400,
    .sink = {.deliver = sink_deliver, .cancel = sink_cancel,
             .impl = &r->sink},
    .finished = on_finished, .arg = &r->lease};
  assert_int_equal(kcld_shard_consumer_start(&o, &r->c), 0);
}

static void start(struct env *e, struct rig *r, const char *checkpoint,
                  size_t max_buffered)
{
  start_on(e, r, SHARD0, checkpoint, max_buffered, NULL);
}

/* Stops gracefully and closes. */
static void stop(struct env *e, struct rig *r)
{
  kcld_shard_consumer_stop(r->c, 5000);
  assert_true(run(e, &r->lease.finished, 10000));
  assert_int_equal(r->lease.how, KCLD_SHARD_CONSUMER_STOPPED);
  kcld_shard_consumer_close(r->c);
  run(e, NULL, 50);
}

/* The sink got exactly p's records from index `from` on, in order. */
static void assert_exactly(const struct sink *s, const struct produced *p,
                           int from)
{
  if (s->n != p->n - from)
    fail_msg("got %d records, want %d", s->n, p->n - from);
  for (int i = 0; i < s->n; i++) {
    char want[16];
    snprintf(want, sizeof(want), "r%d", from + i);
    if (strcmp(s->got[i], p->seq[from + i]) != 0 ||
        strcmp(s->data[i], want) != 0)
      fail_msg("record %d: got %s (%s), want %s (%s)", i, s->data[i],
               s->got[i], want, p->seq[from + i]);
  }
}

/* ======== Tests ======== */

/* Records put in four rounds while the service ends each subscription
 * after 800 ms. */
static void test_early_ends_exactly_once(void **state)
{
  struct env e;
  static struct rig r;
  static struct produced p;
  (void)state;
  script("{\"end_after_ms\": 800}");
  env_up(&e);
  memset(&p, 0, sizeof(p));
  put(e.stream, &p, 50);
  json_int_t get_records_before = calls_of("GetRecords");
  start(&e, &r, "TRIM_HORIZON", 0);
  for (int round = 1; round <= 4; round++) {
    r.sink.want = p.n;
    assert_true(run(&e, &r.sink.reached, 10000));
    run(&e, NULL, 600); /* across an early end */
    put(e.stream, &p, 40);
  }
  r.sink.want = p.n;
  assert_true(run(&e, &r.sink.reached, 10000));
  run(&e, NULL, 300);
  assert_exactly(&r.sink, &p, 0);

  struct kcld_shard_consumer_stats st;
  kcld_shard_consumer_stats(r.c, &st);
  assert_int_equal(st.get_records_calls, 0);
  assert_true(st.subscriptions >= 3);
  assert_int_equal(st.errors, 0);
  assert_int_equal(st.millis_behind_latest, 0);
  stop(&e, &r);
  assert_string_equal(r.lease.cp, p.seq[p.n - 1]);

  /* The service saw no GetRecords; every subscription after the first
   * started after a continuation. */
  assert_int_equal(calls_of("GetRecords"), get_records_before);
  json_t *sts = stats(), *sub;
  size_t i, n = 0;
  json_array_foreach(json_object_get(sts, "subscriptions"), i, sub) {
    json_t *sp = json_object_get(sub, "start");
    const char *type = json_string_value(json_object_get(sp, "Type"));
    if (n++ == 0) {
      assert_string_equal(type, "TRIM_HORIZON");
      continue;
    }
    assert_string_equal(type, "AFTER_SEQUENCE_NUMBER");
    assert_true(kcld_seq_valid(json_string_value(
      json_object_get(sp, "SequenceNumber"))));
  }
  assert_true(n >= 3);
  json_decref(sts);
  assert_int_equal(open_subs(e.consumer), 0);
  env_down(&e);
}

/* Refusals and faults, one after the other; records keep coming. */
static void test_faults_recovered(void **state)
{
  struct env e;
  static struct rig r;
  static struct produced p;
  (void)state;
  env_up(&e);
  memset(&p, 0, sizeof(p));
  put(e.stream, &p, 30);
  /* Each fault hits one subscription, after its first event: the next
   * subscriptions in turn meet a reset mid-frame, a bad CRC and an
   * exception event; before those, two refusals of each kind. */
  script("{\"refuse\": [{\"type\": \"ResourceInUseException\", \"times\": 2,"
         " \"op\": \"SubscribeToShard\"}, {\"type\": "
         "\"LimitExceededException\", \"times\": 2, \"op\": "
         "\"SubscribeToShard\"}], \"faults\": [{\"after_events\": 1, "
         "\"what\": \"reset\"}]}");
  start(&e, &r, "TRIM_HORIZON", 0);
  r.sink.want = p.n;
  assert_true(run(&e, &r.sink.reached, 15000));
  const char *more[] = {
    "{\"faults\": [{\"after_events\": 1, \"what\": \"bad_crc\"}], "
    "\"end_after_ms\": 600}",
    "{\"faults\": [{\"after_events\": 1, \"what\": \"exception\", "
    "\"type\": \"InternalFailure\"}]}",
    "{\"faults\": [{\"after_events\": 2, \"what\": \"reset\"}]}"};
  for (size_t i = 0; i < sizeof(more) / sizeof(more[0]); i++) {
    script(more[i]);
    run(&e, NULL, 900); /* the next subscription meets it */
    put(e.stream, &p, 20);
    r.sink.want = p.n;
    assert_true(run(&e, &r.sink.reached, 15000));
  }
  run(&e, NULL, 400);
  assert_exactly(&r.sink, &p, 0);
  struct kcld_shard_consumer_stats st;
  kcld_shard_consumer_stats(r.c, &st);
  assert_true(st.throttles >= 2);      /* LimitExceeded */
  assert_true(st.errors >= 2 + 3);     /* ResourceInUse and the faults */
  assert_int_equal(st.get_records_calls, 0);
  stop(&e, &r);
  assert_string_equal(r.lease.cp, p.seq[p.n - 1]);
  env_down(&e);
}

/* Splits shard 0 of e's stream in two: it is closed. */
static void split_shard0(struct env *e)
{
  json_decref(call("SplitShard", json_pack(
    "{s:s,s:s,s:s}", "StreamName", e->stream, "ShardToSplit", SHARD0,
    "NewStartingHashKey", "170141183460469231731687303715884105728")));
}

/* A split: the parent's consumer reads to the end, flushes the checkpoint
 * and records the end with both children. */
static void test_shard_end_child_shards(void **state)
{
  struct env e;
  static struct rig r;
  static struct produced p;
  (void)state;
  env_up(&e);
  memset(&p, 0, sizeof(p));
  put(e.stream, &p, 25);
  start(&e, &r, "TRIM_HORIZON", 0);
  r.sink.want = 10;
  assert_true(run(&e, &r.sink.reached, 10000));
  split_shard0(&e);
  assert_true(run(&e, &r.lease.finished, 15000));
  assert_int_equal(r.lease.how, KCLD_SHARD_CONSUMER_ENDED);
  assert_exactly(&r.sink, &p, 0);
  assert_int_equal(r.lease.ended, 1);
  assert_int_equal(r.lease.n_children, 2);
  assert_non_null(strstr(r.lease.children[0], "shardId-"));
  assert_string_equal(r.lease.cp, p.seq[p.n - 1]);
  kcld_shard_consumer_close(r.c);
  run(&e, NULL, 50);
  env_down(&e);
}

/* What kcld_shard_consumer_log_wait says (the shutdown deadline's line). */
static char *wait_line(struct kcld_shard_consumer *c)
{
  FILE *f = tmpfile();
  char *text = calloc(1, 4096);
  assert_non_null(f);
  assert_non_null(text);
  kcld_log_setup(KCLD_LOG_WARN, KCLD_LOG_JSON, f);
  kcld_shard_consumer_log_wait(c);
  kcld_log_setup(getenv("TEST_LOG") ? KCLD_LOG_DEBUG : KCLD_LOG_ERROR,
                 KCLD_LOG_JSON, NULL);
  rewind(f);
  assert_true(fread(text, 1, 4095, f) > 0);
  fclose(f);
  return text;
}

/* Stops while the end is being recorded: shard_ended unanswered (the
 * coordinator's ListShards never came back), then failing and retried. */
static void test_stop_while_end_recorded(void **state)
{
  static struct rig r;
  static struct produced p;
  struct env e;
  (void)state;
  memset(&p, 0, sizeof(p));
  env_up(&e);
  put(e.stream, &p, 25);
  split_shard0(&e);
  for (int round = 0; round < 2; round++) {
    start(&e, &r, "TRIM_HORIZON", 0);
    r.lease.end_hold = round == 0;
    r.lease.end_err = round == 0 ? 0 : KCLD_EIO;
    assert_true(run(&e, &r.lease.ended, 15000));
    if (round == 1)
      run(&e, NULL, 150); /* a retry or two, backing off */
    assert_false(r.lease.finished);
    char *line = wait_line(r.c);
    assert_non_null(strstr(line, "\"msg\":\"shard consumer unfinished\""));
    assert_non_null(strstr(line, "\"phase\":\"ending\""));
    assert_non_null(strstr(line, round == 0
                                   ? "the coordinator's shard_ended answer"
                                   : "the next try at recording the end"));
    assert_non_null(strstr(line, "\"checkpoint\":\"nothing\""));
    free(line);
    uint64_t t0 = uv_now(&e.aws.loop);
    kcld_shard_consumer_stop(r.c, 400);
    assert_true(run(&e, &r.lease.finished, 5000));
    uint64_t took = uv_now(&e.aws.loop) - t0;
    assert_int_equal(r.lease.how, KCLD_SHARD_CONSUMER_STOPPED);
    assert_int_equal(r.lease.err, round == 0 ? KCLD_ETIMEDOUT : KCLD_EIO);
    if (round == 0)
      assert_true(took >= 390 && took < 2000);
    else
      assert_true(took < 390); /* the backoff cut short, no more tries */
    assert_exactly(&r.sink, &p, 0);
    assert_string_equal(r.lease.cp, p.seq[p.n - 1]);
    kcld_shard_consumer_close(r.c);
    if (r.lease.end_cb) /* the answer comes after all: memory goes */
      r.lease.end_cb(KCLD_ECANCELED, r.lease.end_arg);
    run(&e, NULL, 50);
  }
  env_down(&e);
}

/* A sink that holds, and a backlog of ~1 MB in events of 20 records: the
 * shard's bytes stay near its budget (the stream is paused: HTTP/2 flow
 * control holds the service back), then everything arrives in order. */
static void test_backpressure_pauses(void **state)
{
  struct env e;
  static struct rig r;
  static struct produced p;
  enum { BUDGET = 64 * 1024 };
  (void)state;
  script("{\"event_records\": 20}");
  env_up(&e);
  memset(&p, 0, sizeof(p));
  for (int round = 0; round < 10; round++) {
    json_t *recs = json_array();
    for (int i = 0; i < 100; i++) {
      char data[1024], b64[1400];
      memset(data, 'x', sizeof(data));
      int len = snprintf(data, sizeof(data), "r%d", p.n + i);
      data[len] = '-';
      EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)data,
                      (int)sizeof(data));
      json_array_append_new(recs, json_pack("{s:s,s:s}", "Data", b64,
                                            "PartitionKey", "k"));
    }
    json_t *res = call("PutRecords", json_pack("{s:s,s:o}", "StreamName",
                                               e.stream, "Records", recs));
    json_t *x;
    size_t i;
    json_array_foreach(json_object_get(res, "Records"), i, x)
      snprintf(p.seq[p.n++], KCLD_SEQ_MAX + 1, "%s",
               json_string_value(json_object_get(x, "SequenceNumber")));
    json_decref(res);
  }
  start(&e, &r, "TRIM_HORIZON", BUDGET);
  r.sink.hold = 1;
  run(&e, NULL, 1500);
  struct kcld_shard_consumer_stats st;
  kcld_shard_consumer_stats(r.c, &st);
  /* Held: the budget and the events already on their way when the stream
   * paused (each ~28 KB of payload and ~21 KB parsed), far from the
   * megabyte waiting. */
  if (st.held_bytes_peak > BUDGET + 6 * 50 * 1024)
    fail_msg("held %zu bytes at the peak", st.held_bytes_peak);
  assert_true(r.sink.n <= 40);
  assert_int_equal(st.blocked, KCLD_SHARD_BLOCKED_MEMORY);
  /* Let go, one delivery at a time. */
  r.sink.want = p.n;
  for (int i = 0; i < 3000 && !r.sink.reached; i++) {
    if (r.sink.held) {
      struct kcld_shard_delivery *d = r.sink.held;
      r.sink.held = NULL;
      sink_done(d);
    }
    run(&e, NULL, 5);
  }
  r.sink.hold = 0;
  if (r.sink.held) {
    struct kcld_shard_delivery *d = r.sink.held;
    r.sink.held = NULL;
    sink_done(d);
  }
  assert_true(r.sink.reached);
  assert_int_equal(r.sink.n, p.n);
  for (int i = 0; i < p.n; i++)
    if (strcmp(r.sink.got[i], p.seq[i]) != 0) {
      int was = -1;
      for (int k = 0; k < p.n; k++)
        if (strcmp(r.sink.got[i], p.seq[k]) == 0)
          was = k;
      fail_msg("record %d: got record %d (%s) instead", i, was,
               r.sink.data[i]);
    }
  kcld_shard_consumer_stats(r.c, &st);
  if (st.held_bytes_peak > BUDGET + 6 * 50 * 1024)
    fail_msg("held %zu bytes at the peak after the release",
             st.held_bytes_peak);
  stop(&e, &r);
  env_down(&e);
}

/* Puts n records of 1 KiB, "r<id>-xxx...", to shard `shard` of a
 * 4-shard stream (by explicit hash key), noting them in p. */
static void put_1k(const char *stream, int shard, struct produced *p, int n)
{
  static const char *const keys[] = {
    "1", "85070591730234615865843651857942052865",
    "170141183460469231731687303715884105729",
    "255211775190703847597530955573826158593"};
  json_t *recs = json_array();
  for (int k = 0; k < n; k++) {
    char data[1024], b64[1400];
    memset(data, 'x', sizeof(data));
    data[snprintf(data, sizeof(data), "r%d", p->n + k)] = '-';
    EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)data,
                    (int)sizeof(data));
    json_array_append_new(recs, json_pack("{s:s,s:s,s:s}", "Data", b64,
                                          "PartitionKey", "k",
                                          "ExplicitHashKey", keys[shard]));
  }
  put_noting(stream, recs, p);
}

/* Events larger than the shard's budget (~140 KB against 64 KiB), back to
 * back: each is let in alone and the shard goes on to the end.  (Before
 * events were admitted at their size, the next event's first bytes came in
 * the read that ended one; its buffer, charged at its whole size, kept the
 * account over the budget while the paused stream could never finish it:
 * the shard stood still for good.) */
static void test_events_over_budget(void **state)
{
  struct env e;
  static struct rig r;
  static struct produced p;
  (void)state;
  script("{\"event_records\": 100}");
  env_up(&e);
  memset(&p, 0, sizeof(p));
  for (int i = 0; i < 6; i++)
    put_1k(e.stream, 0, &p, 100);
  start(&e, &r, "TRIM_HORIZON", 64 * 1024);
  r.sink.want = p.n;
  assert_true(run(&e, &r.sink.reached, 15000));
  assert_int_equal(r.sink.n, p.n);
  for (int i = 0; i < p.n; i++)
    assert_string_equal(r.sink.got[i], p.seq[i]);
  stop(&e, &r);
  env_down(&e);
}

/* Four shards, a backlog of ~190 KB each in events of 20 records (~28 KB
 * each, ~21 KB parsed), under one process budget of 96 KiB, the sinks
 * holding every delivery: the budget's bytes never pass it by more than
 * one event (before each event was admitted by its size, each shard could
 * pass it by the event it was receiving), and once the sinks let go every
 * record arrives, once and in order, on its shard. */
static void budget_holds_over_shards(const char *url)
{
  enum { SHARDS = 4, PER_SHARD = 140, MAX_TOTAL = 96 * 1024,
         EVENT = 32 * 1024 };
  struct env e;
  static struct rig r[SHARDS];
  static struct produced p[SHARDS];
  struct kcld_fetch_budget *b = NULL;
  struct kcld_fetch_budget_opts bo = {.max_total_bytes = MAX_TOTAL,
                                      .parse_slots = 2};
  struct kcld_fetch_budget_stats bs;
  char shard[32];
  script("{\"event_records\": 20}");
  env_up_at(&e, SHARDS, url);
  bo.loop = &e.aws.loop;
  assert_int_equal(kcld_fetch_budget_new(&bo, &b), 0);
  for (int k = 0; k < SHARDS; k++) {
    memset(&p[k], 0, sizeof(p[k]));
    put_1k(e.stream, k, &p[k], PER_SHARD / 2);
    put_1k(e.stream, k, &p[k], PER_SHARD / 2);
  }
  for (int k = 0; k < SHARDS; k++) {
    snprintf(shard, sizeof(shard), "shardId-%012d", k);
    start_on(&e, &r[k], shard, "TRIM_HORIZON", 1 << 20, b);
    r[k].sink.hold = 1;
    r[k].sink.want = PER_SHARD;
  }
  run(&e, NULL, 1500);
  kcld_fetch_budget_stats(b, &bs);
  if (bs.peak_bytes > MAX_TOTAL + EVENT)
    fail_msg("the budget held %zu bytes at the peak (limit %d)",
             bs.peak_bytes, MAX_TOTAL);
  int got = 0;
  for (int k = 0; k < SHARDS; k++)
    got += r[k].sink.n;
  assert_true(got < SHARDS * PER_SHARD); /* held back, not all read */
  /* Let go: every record of every shard, in order. */
  int all = 0;
  for (int i = 0; i < 4000 && !all; i++) {
    all = 1;
    for (int k = 0; k < SHARDS; k++) {
      if (r[k].sink.held) {
        struct kcld_shard_delivery *d = r[k].sink.held;
        r[k].sink.held = NULL;
        sink_done(d);
      }
      all &= r[k].sink.reached;
    }
    run(&e, NULL, 5);
  }
  assert_true(all);
  kcld_fetch_budget_stats(b, &bs);
  if (bs.peak_bytes > MAX_TOTAL + EVENT)
    fail_msg("the budget held %zu bytes at the peak after the release",
             bs.peak_bytes);
  for (int k = 0; k < SHARDS; k++) {
    r[k].sink.hold = 0;
    assert_int_equal(r[k].sink.n, PER_SHARD);
    for (int i = 0; i < PER_SHARD; i++)
      assert_string_equal(r[k].sink.got[i], p[k].seq[i]);
    stop(&e, &r[k]);
  }
  kcld_fetch_budget_close(b);
  run(&e, NULL, 50);
  env_down(&e);
}

static void test_budget_holds_over_shards(void **state)
{
  (void)state;
  budget_holds_over_shards(s_url);
}

/* The same over TLS, as against Kinesis: there the four subscriptions
 * share a connection (curl multiplexes them), so pausing one stream for
 * its budget, and resuming it, happens beside the others on one socket -
 * where libcurl 7.88 could keep a stream's bytes read but not handed over
 * (see aws/http.c).  Over h2c each has a connection of its own. */
static void test_budget_holds_over_shards_tls(void **state)
{
  (void)state;
  json_int_t before = h2_sessions();
  assert_int_equal(setenv("AWS_CA_BUNDLE", s_ca_path, 1), 0);
  budget_holds_over_shards(s_tls_url);
  unsetenv("AWS_CA_BUNDLE");
  /* Four subscriptions and the set-up calls: fewer connections than
   * subscriptions, or this did not test sharing one. */
  assert_in_range(h2_sessions() - before, 1, 3);
}

/* Losing the lease ends the subscription at once; the next owner starts
 * from the checkpoint without meeting ResourceInUse. */
static void test_lost_cancels_at_once(void **state)
{
  struct env e;
  static struct rig r, r2;
  static struct produced p;
  (void)state;
  env_up(&e);
  memset(&p, 0, sizeof(p));
  put(e.stream, &p, 20);
  start(&e, &r, "TRIM_HORIZON", 0);
  r.sink.want = p.n;
  assert_true(run(&e, &r.sink.reached, 10000));
  assert_int_equal(open_subs(e.consumer), 1);
  kcld_shard_consumer_lose(r.c);
  assert_true(run(&e, &r.lease.finished, 2000));
  assert_int_equal(r.lease.how, KCLD_SHARD_CONSUMER_LOST);
  for (int i = 0; i < 100 && open_subs(e.consumer) > 0; i++)
    run(&e, NULL, 10);
  assert_int_equal(open_subs(e.consumer), 0);
  kcld_shard_consumer_close(r.c);

  /* The next owner, from the checkpoint the first one wrote. */
  char cp[KCLD_SEQ_MAX + 1];
  snprintf(cp, sizeof(cp), "%s", r.lease.cp);
  int from = 0;
  while (from < p.n && strcmp(p.seq[from], cp) != 0)
    from++;
  assert_true(from < p.n);
  put(e.stream, &p, 5);
  start(&e, &r2, cp, 0);
  r2.sink.want = p.n - from - 1;
  assert_true(run(&e, &r2.sink.reached, 10000));
  assert_exactly(&r2.sink, &p, from + 1);
  struct kcld_shard_consumer_stats cs;
  kcld_shard_consumer_stats(r2.c, &cs);
  assert_int_equal(cs.errors, 0);
  stop(&e, &r2);
  env_down(&e);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(test_early_ends_exactly_once, reset),
    cmocka_unit_test_setup(test_faults_recovered, reset),
    cmocka_unit_test_setup(test_shard_end_child_shards, reset),
    cmocka_unit_test_setup(test_stop_while_end_recorded, reset),
    cmocka_unit_test_setup(test_backpressure_pauses, reset),
    cmocka_unit_test_setup(test_events_over_budget, reset),
    cmocka_unit_test_setup(test_budget_holds_over_shards, reset),
    cmocka_unit_test_setup(test_budget_holds_over_shards_tls, reset),
    cmocka_unit_test_setup(test_lost_cancels_at_once, reset),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
