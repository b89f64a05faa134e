/* test_engine_e2e.c — the processing engine in-process: the dispatcher
 * with a scripted fake handler, fake deliveries built by the real
 * GetRecords parser, and the dead-letter queue on a real SQS client against
 * fauxqs (reached through the fault endpoint as a proxy, so the test can
 * take SQS away and bring it back).
 *
 * Covered: a poison record among 200 (bisection rounds, duplicates, the
 * queue message field by field, the final checkpoint; the 200 arrive in two
 * deliveries and go as one batch through batch.window); a partial-failure
 * answer; max_record_age; SQS down while a poison record waits; a handler
 * that refuses, crashes or hangs past handler.timeout; parallelization
 * factor 4 keeping per-key order; no destination (skip) and
 * on_failure.block.
 *
 * The handler is a fake so that each test can script every answer (refuse
 * a chosen record, crash, hang) at the moment it needs it; the real lambda
 * handler's partial failures and the plugin handler run end to end in
 * test_lambda_plugin_e2e.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "aws/call.h"
#include "aws/credentials.h"
#include "aws/http.h"
#include "aws/sqs.h"
#include "base/seq.h"
#include "consume/getrecords.h"
#include "err.h"
#include "fault.h"
#include "awssync.h"
#include "e2e.h"
#include "harness.h"
#include "proc.h"
#include "process/dispatcher.h"
#include "process/dlq.h"
#include "process/dlq_sqs.h"
#include "process/policy.h"

#define WAIT_MS 20000
#define MAXREC 1024
#define SHARD "shardId-000000000007"

static struct kcld_emu s_emu;    /* kinesis-free: sqs + fault */
static int s_have_emu;
static const char *s_stream_arn =
  "arn:aws:kinesis:us-east-1:000000000000:stream/engine";

/* ======== Records ======== */

static void seq_of(size_t i, char *buf, size_t n)
{
  snprintf(buf, n, "49%030zu", i + 1);
}

/* A parsed batch of records [from, from+count) with keys key-(i % keys)
 * and arrival age_ms ago. */
static struct kcld_record_batch *make_batch(size_t from, size_t count,
                                            unsigned keys, int64_t age_ms,
                                            int last)
{
  json_t *recs = json_array(), *doc;
  struct kcld_record_batch *b = NULL;
  struct timespec ts;
  char errbuf[256];
  double now;

  clock_gettime(CLOCK_REALTIME, &ts);
  now = (double)ts.tv_sec + ts.tv_nsec / 1e9 - (double)age_ms / 1000.0;
  for (size_t i = from; i < from + count; i++) {
    char data[32], b64[64], seq[40], key[32];
    int n = snprintf(data, sizeof(data), "rec-%zu", i);
    EVP_EncodeBlock((unsigned char *)b64, (unsigned char *)data, n);
    seq_of(i, seq, sizeof(seq));
    snprintf(key, sizeof(key), "key-%zu", i % keys);
    json_array_append_new(recs, json_pack("{s:s,s:s,s:s,s:f}",
                                          "SequenceNumber", seq,
                                          "PartitionKey", key, "Data", b64,
                                          "ApproximateArrivalTimestamp",
                                          now));
  }
  doc = json_pack("{s:o,s:i}", "Records", recs, "MillisBehindLatest", 0);
  if (!last)
    json_object_set_new(doc, "NextShardIterator", json_string("iter"));
  char *body = json_dumps(doc, JSON_COMPACT);
  json_decref(doc);
  assert_int_equal(kcld_getrecords_parse(body, strlen(body), SHARD, &b,
                                         errbuf, sizeof(errbuf)), 0);
  free(body);
  return b;
}

static size_t rec_index(const struct kcld_record *r)
{
  char buf[32];
  size_t n = r->data_len < sizeof(buf) - 1 ? r->data_len : sizeof(buf) - 1;
  memcpy(buf, r->data, n);
  buf[n] = '\0';
  return (size_t)strtoul(buf + 4, NULL, 10);
}

/* ======== The fake handler ======== */

struct fh {
  struct kcld_handler base;
  uv_loop_t *loop;
  int poison[MAXREC];        /* 1: fails while attempts <= fail_times */
  unsigned fail_times;       /* 0 = always */
  unsigned fails_done[MAXREC];
  int partial;               /* answer PARTIAL at the first poison */
  unsigned hang_first_ms;    /* first call answers this late (OK) */
  int refuse_first;          /* first process() returns KCLD_EIO */
  int crash_first;           /* first call answers HandlerCrashed */
  int jitter;                /* answer after 0..3 ms */
  unsigned calls, poison_calls, in_flight, max_in_flight;
  unsigned seen[MAXREC], handled[MAXREC];
  size_t first_call_count, call_first[64];
  long last_key[16];
  int order_violations;
  unsigned late_answers;
};

struct fcall {
  uv_timer_t t;
  struct fh *h;
  struct kcld_handler_result res;
  kcld_handler_done_cb done;
  void *arg;
  size_t n;
  size_t idx[MAXREC];
  int late;
};

static void fcall_closed(uv_handle_t *t)
{
  free(t->data);
}

static void fcall_fire(uv_timer_t *t)
{
  struct fcall *c = t->data;
  struct fh *h = c->h;
  h->in_flight--;
  if (c->late)
    h->late_answers++;
  if (c->res.status == KCLD_HANDLER_OK ||
      c->res.status == KCLD_HANDLER_PARTIAL) {
    size_t upto = c->res.status == KCLD_HANDLER_OK ? c->n
                                                   : c->res.first_failed;
    for (size_t i = 0; i < upto; i++) {
      size_t k = c->idx[i];
      long key = (long)(k % 16);
      h->handled[k]++;
      (void)key;
    }
  }
  c->done(&c->res, c->arg);
  uv_close((uv_handle_t *)&c->t, fcall_closed);
}

static int fh_process(struct kcld_handler *hd,
                      const struct kcld_handler_batch *b,
                      kcld_handler_done_cb done, void *arg)
{
  struct fh *h = (struct fh *)hd;
  struct fcall *c;
  unsigned delay = 0;
  int bad = -1;

  h->calls++;
  if (h->calls == 1)
    h->first_call_count = b->count;
  if (h->calls <= 64)
    h->call_first[h->calls - 1] = rec_index(b->records[0]);
  if (h->calls == 1 && h->refuse_first)
    return KCLD_EIO;
  c = calloc(1, sizeof(*c));
  assert_non_null(c);
  c->h = h;
  c->done = done;
  c->arg = arg;
  c->n = b->count;
  for (size_t i = 0; i < b->count; i++) {
    size_t k = rec_index(b->records[i]);
    c->idx[i] = k;
    h->seen[k]++;
    if (bad < 0 && h->poison[k] &&
        (h->fail_times == 0 || h->fails_done[k] < h->fail_times))
      bad = (int)i;
  }
  if (bad >= 0) {
    h->poison_calls++;
    h->fails_done[c->idx[bad]]++;
    c->res.status = h->partial ? KCLD_HANDLER_PARTIAL : KCLD_HANDLER_FAILED;
    c->res.first_failed = (size_t)bad;
    c->res.error_type = "PoisonError";
    c->res.error_message = "record rejected by the test handler";
  }
  if (h->calls == 1 && h->crash_first) {
    c->res.status = KCLD_HANDLER_FAILED;
    c->res.error_type = "HandlerCrashed";
    c->res.error_message = "child exited with signal 11";
  }
  if (h->calls == 1 && h->hang_first_ms) {
    delay = h->hang_first_ms;
    c->late = 1;
  } else if (h->jitter) {
    delay = (unsigned)(rand() % 4);
  }
  /* Per-key order, checked when the batch is handed over. */
  if (c->res.status == KCLD_HANDLER_OK && !c->late)
    for (size_t i = 0; i < c->n; i++) {
      size_t k = c->idx[i], key = k % 8;
      if ((long)k <= h->last_key[key])
        h->order_violations++;
      h->last_key[key] = (long)k;
    }
  h->in_flight++;
  if (h->in_flight > h->max_in_flight)
    h->max_in_flight = h->in_flight;
  uv_timer_init(h->loop, &c->t);
  c->t.data = c;
  uv_timer_start(&c->t, fcall_fire, delay, 0);
  return 0;
}

static void fh_close(struct kcld_handler *h)
{
  (void)h;
}

static const struct kcld_handler_ops s_fh_ops = {
  .name = "fake", .process = fh_process, .close = fh_close,
};

/* ======== The fake consumer ======== */

struct fc {
  uv_loop_t *loop;
  struct kcld_shard_sink sink;
  struct kcld_record_batch *batches[16];
  size_t nbatches, next;
  struct kcld_shard_delivery d;
  int delivering;
  uv_timer_t feed;
  char progress[KCLD_SEQ_MAX + 1];
  size_t progress_calls;
  int regress;
  size_t dones;
  int cancelled;
  size_t after_cancel;
};

/* The consumer side is faked at link time: these two are the functions of
 * consume/shard_consumer.c the dispatcher calls, so that file is never
 * linked in. */
void kcld_shard_consumer_progress(struct kcld_shard_consumer *c,
                                  const char *seq, uint64_t sub)
{
  struct fc *f = (struct fc *)c;
  (void)sub;
  if (f->cancelled)
    f->after_cancel++;
  if (f->progress[0] && kcld_seq_compare(seq, f->progress) < 0)
    f->regress++;
  snprintf(f->progress, sizeof(f->progress), "%s", seq);
  f->progress_calls++;
}

static void fc_feed(uv_timer_t *t);

void kcld_shard_consumer_done(struct kcld_shard_delivery *d)
{
  struct fc *f = (struct fc *)d->consumer;
  f->dones++;
  f->delivering = 0;
  kcld_record_batch_release(d->batch);
  if (f->next < f->nbatches)
    uv_timer_start(&f->feed, fc_feed, 1, 0);
}

static void fc_feed(uv_timer_t *t)
{
  struct fc *f = t->data;
  struct kcld_record_batch *b = f->batches[f->next++];
  memset(&f->d, 0, sizeof(f->d));
  f->d.consumer = (struct kcld_shard_consumer *)f;
  f->d.shard_id = SHARD;
  f->d.batch = b;
  f->d.records = b->records;
  f->d.count = b->count;
  f->d.millis_behind_latest = 0;
  f->delivering = 1;
  assert_int_equal(f->sink.deliver(f->sink.impl, &f->d), 0);
}

/* ======== The environment ======== */

struct env {
  uv_loop_t loop;
  struct kcld_http *http;
  struct kcld_credentials *creds;
  struct kcld_aws *aws;
  struct kcld_sqs *sqs;
  struct kcld_dlq *dlq;
  char queue[512];
  struct fh h;
  struct fc c;
  struct kcld_dispatcher *disp;
  struct kcld_dispatcher_opts o;
};

struct seen {
  int done, err;
  char url[512];
  json_t *msgs;
};

static void on_queue(const struct kcld_sqs_queue *r, void *arg)
{
  struct seen *s = arg;
  s->done = 1;
  s->err = r->st.err;
  if (r->queue_url)
    snprintf(s->url, sizeof(s->url), "%s", r->queue_url);
}

static void on_receive(const struct kcld_sqs_receive_result *r, void *arg)
{
  struct seen *s = arg;
  s->done = 1;
  s->err = r->st.err;
  s->msgs = json_array();
  for (size_t i = 0; i < r->count; i++)
    json_array_append_new(s->msgs, json_pack(
      "{s:s,s:s,s:O?}", "body", r->messages[i].body, "receipt",
      r->messages[i].receipt_handle, "attrs",
      r->messages[i].message_attributes));
}

static void on_deleted(const struct kcld_svc_status *st, void *arg)
{
  struct seen *s = arg;
  s->done = 1;
  s->err = st->err;
}

static const char *fault_url(void)
{
  return kcld_emu_url(&s_emu, "fault");
}

static void proxy_to(const char *upstream)
{
  char script[512];
  snprintf(script, sizeof(script),
           "{\"upstream\": \"%s\", \"steps\": [], \"then\": \"proxy\"}",
           upstream);
  assert_int_equal(kcld_fault_script(fault_url(), script), 0);
}

static void create_queue(struct env *e, const char *name)
{
  struct seen s = {0};
  assert_int_equal(kcld_sqs_create_queue(e->sqs, name, NULL, on_queue, &s),
                   0);
  assert_true(kcld_test_run_until(&e->loop, &s.done, WAIT_MS));
  assert_int_equal(s.err, 0);
  snprintf(e->queue, sizeof(e->queue), "%s", s.url);
}

/* Every message in the queue (received and deleted). */
static json_t *drain_queue(struct env *e)
{
  json_t *all = json_array();
  for (int round = 0; round < 20; round++) {
    struct seen s = {0};
    struct kcld_sqs_receive_req rq = {e->queue, 10, 0, 30};
    size_t i;
    json_t *m;
    assert_int_equal(kcld_sqs_receive_message(e->sqs, &rq, on_receive, &s),
                     0);
    assert_true(kcld_test_run_until(&e->loop, &s.done, WAIT_MS));
    assert_int_equal(s.err, 0);
    if (json_array_size(s.msgs) == 0) {
      json_decref(s.msgs);
      break;
    }
    json_array_foreach(s.msgs, i, m) {
      struct seen d = {0};
      assert_int_equal(kcld_sqs_delete_message(
        e->sqs, e->queue, json_string_value(json_object_get(m, "receipt")),
        on_deleted, &d), 0);
      assert_true(kcld_test_run_until(&e->loop, &d.done, WAIT_MS));
      json_array_append(all, m);
    }
    json_decref(s.msgs);
  }
  return all;
}

static void env_up(struct env *e, const char *queue_name)
{
  struct kcld_credentials_opts co = {0};
  struct kcld_aws_opts ao = {0};
  struct kcld_dlq_opts qo = {0};

  memset(e, 0, sizeof(*e));
  assert_int_equal(uv_loop_init(&e->loop), 0);
  assert_int_equal(kcld_http_new(&e->loop, NULL, &e->http), 0);
  co.loop = &e->loop;
  co.http = e->http;
  co.access_key_id = "AKIDKCLDTEST";
  co.secret_access_key = "kcld-test-secret";
  assert_int_equal(kcld_credentials_new(&co, &e->creds), 0);
  ao.loop = &e->loop;
  ao.http = e->http;
  ao.creds = e->creds;
  ao.region = "us-east-1";
  ao.endpoint[KCLD_AWS_SQS] = fault_url();
  ao.retry_base_ms = 10;
  ao.max_attempts = 2;
  ao.timeout_ms = 3000;
  assert_int_equal(kcld_aws_new(&ao, &e->aws), 0);
  assert_int_equal(kcld_sqs_new(e->aws, &e->loop, &e->sqs), 0);
  proxy_to(kcld_emu_url(&s_emu, "sqs"));
  if (queue_name) {
    create_queue(e, queue_name);
    qo.loop = &e->loop;
    assert_int_equal(kcld_dlq_sqs_new(e->sqs, e->queue, &qo.store), 0);
    qo.function_arn =
      "arn:aws:lambda:us-east-1:000000000000:function:kcld-engine-test";
    qo.stream_arn = s_stream_arn;
    qo.include_records = 1;
    qo.backoff_base_ms = 50;
    qo.backoff_max_ms = 200;
    assert_int_equal(kcld_dlq_new(&qo, &e->dlq), 0);
  }
  e->h.base.ops = &s_fh_ops;
  e->h.loop = &e->loop;
  for (size_t i = 0; i < 16; i++)
    e->h.last_key[i] = -1;
  e->c.loop = &e->loop;
  uv_timer_init(&e->loop, &e->c.feed);
  e->c.feed.data = &e->c;
  e->o.loop = &e->loop;
  e->o.handler = &e->h.base;
  e->o.batch_size = 100;
  e->o.max_retry_attempts = 0;
  e->o.bisect_on_error = 1;
  e->o.max_record_age_ms = -1;
  e->o.backoff_base_ms = 10;
  e->o.backoff_max_ms = 50;
  e->o.parallelization = 1;
  e->o.handler_timeout_ms = 300000;
  e->o.dlq = e->dlq;
  e->o.discard = e->dlq == NULL;
}

/* Creates the dispatcher from e->o and feeds the batches. */
static void env_run(struct env *e)
{
  assert_int_equal(kcld_dispatcher_new(&e->o, &e->disp), 0);
  e->c.sink = kcld_dispatcher_sink(e->disp);
  uv_timer_start(&e->c.feed, fc_feed, 0, 0);
}

static int all_done(struct env *e, size_t last)
{
  char seq[40];
  seq_of(last, seq, sizeof(seq));
  return e->c.next == e->c.nbatches && !e->c.delivering &&
         strcmp(e->c.progress, seq) == 0;
}

static void wait_all_done(struct env *e, size_t last, unsigned ms)
{
  uint64_t until = uv_now(&e->loop) + ms;
  while (!all_done(e, last) && uv_now(&e->loop) < until)
    uv_run(&e->loop, UV_RUN_ONCE);
  assert_true(all_done(e, last));
}

static void run_for(struct env *e, unsigned ms)
{
  int flag = 0;
  kcld_test_run_until(&e->loop, &flag, ms);
}

static void env_down(struct env *e)
{
  struct kcld_dispatcher_stats st;
  /* Late answers of the fake handler come in before the close. */
  run_for(e, 50);
  if (e->disp) {
    kcld_dispatcher_stats(e->disp, &st);
    if (st.in_flight && e->c.delivering)
      e->c.sink.cancel(e->c.sink.impl, (struct kcld_shard_consumer *)&e->c);
    kcld_dispatcher_close(e->disp);
  }
  kcld_dlq_close(e->dlq);
  kcld_sqs_close(e->sqs);
  kcld_aws_close(e->aws);
  kcld_credentials_close(e->creds);
  kcld_http_close(e->http);
  uv_close((uv_handle_t *)&e->c.feed, NULL);
  for (size_t i = e->c.next; i < e->c.nbatches; i++)
    kcld_record_batch_release(e->c.batches[i]);
  kcld_test_loop_finish(&e->loop);
}

static void stats(struct env *e, struct kcld_dispatcher_stats *st)
{
  kcld_dispatcher_stats(e->disp, st);
}

/* Calls and duplicate deliveries bisection implies for one poison record
 * at `poison` in [lo, hi): an independent recursion, not the policy. */
static void expect_bisect(size_t lo, size_t hi, size_t poison,
                          unsigned *calls, unsigned *dups, unsigned *rounds,
                          unsigned depth_seen[MAXREC])
{
  (*calls)++;
  for (size_t i = lo; i < hi; i++)
    if (i != poison && depth_seen[i]++)
      (*dups)++;
  if (poison < lo || poison >= hi)
    return;
  (*rounds)++;
  if (hi - lo == 1)
    return;
  size_t mid = lo + (hi - lo + 1) / 2;
  expect_bisect(lo, mid, poison, calls, dups, rounds, depth_seen);
  expect_bisect(mid, hi, poison, calls, dups, rounds, depth_seen);
}

/* ======== Tests ======== */

static void test_poison_bisected_to_dlq(void **state)
{
  struct env *e = malloc(sizeof(*e));
  struct kcld_dispatcher_stats st;
  const size_t N = 200, P = 137;
  unsigned calls = 0, dups = 0, rounds = 0, seen[MAXREC] = {0}, actual = 0;
  json_t *msgs, *body, *rc, *kb, *recs, *r;
  char seq[40];
  (void)state;

  env_up(e, "engine-poison");
  e->c.batches[0] = make_batch(0, 100, 8, 0, 0);
  e->c.batches[1] = make_batch(100, 100, 8, 0, 0);
  e->c.nbatches = 2;
  e->h.poison[P] = 1;
  e->o.batch_size = 200;
  e->o.window_ms = 2000; /* both deliveries make one batch */
  env_run(e);
  wait_all_done(e, N - 1, WAIT_MS);
  stats(e, &st);

  expect_bisect(0, N, P, &calls, &dups, &rounds, seen);
  for (size_t i = 0; i < N; i++)
    actual += e->h.seen[i] > 1 && i != P ? e->h.seen[i] - 1 : 0;
  printf("poison test: 200 records, poison at %zu: %u bisection rounds "
         "(bound %u), %u handler calls, %u duplicate deliveries\n", P,
         e->h.poison_calls, 1 + 8, e->h.calls, actual);
  assert_int_equal(e->h.first_call_count, N);
  assert_true(e->h.poison_calls <= kcld_policy_bisect_rounds(N));
  assert_int_equal(e->h.poison_calls, rounds);
  assert_int_equal(e->h.calls, calls);
  assert_int_equal(actual, dups);
  for (size_t i = 0; i < N; i++)
    assert_int_equal(e->h.handled[i], i == P ? 0 : 1);
  assert_int_equal(e->c.regress, 0);
  assert_int_equal(st.batches_bisected, rounds - 1);
  assert_int_equal(st.dlq_messages, 1);
  assert_int_equal(st.dlq_records, 1);
  assert_int_equal(st.records_given_up, 1);
  assert_int_equal(st.records_handled, N - 1);

  msgs = drain_queue(e);
  assert_int_equal(json_array_size(msgs), 1);
  body = json_loads(json_string_value(json_object_get(
    json_array_get(msgs, 0), "body")), 0, NULL);
  assert_non_null(body);
  seq_of(P, seq, sizeof(seq));
  rc = json_object_get(body, "requestContext");
  assert_int_equal(strlen(json_string_value(json_object_get(rc,
                                                            "requestId"))),
                   36);
  assert_string_equal(json_string_value(json_object_get(rc, "functionArn")),
                      "arn:aws:lambda:us-east-1:000000000000:function:"
                      "kcld-engine-test");
  assert_string_equal(json_string_value(json_object_get(rc, "condition")),
                      "RetryAttemptsExhausted");
  assert_int_equal(json_integer_value(json_object_get(
    rc, "approximateInvokeCount")), rounds);
  assert_string_equal(json_string_value(json_object_get(json_object_get(
    body, "responseContext"), "functionError")), "Unhandled");
  assert_string_equal(json_string_value(json_object_get(body, "errorType")),
                      "PoisonError");
  assert_string_equal(json_string_value(json_object_get(body, "version")),
                      "1.0");
  assert_non_null(strchr(json_string_value(json_object_get(body,
                                                           "timestamp")),
                         'T'));
  kb = json_object_get(body, "KinesisBatchInfo");
  assert_string_equal(json_string_value(json_object_get(kb, "shardId")),
                      SHARD);
  assert_string_equal(json_string_value(json_object_get(
    kb, "startSequenceNumber")), seq);
  assert_string_equal(json_string_value(json_object_get(
    kb, "endSequenceNumber")), seq);
  assert_int_equal(json_integer_value(json_object_get(kb, "batchSize")), 1);
  assert_string_equal(json_string_value(json_object_get(kb, "streamArn")),
                      "arn:aws:kinesis:us-east-1:000000000000:stream/engine");
  assert_non_null(json_string_value(json_object_get(
    kb, "approximateArrivalOfFirstRecord")));
  recs = json_object_get(body, "records");
  assert_int_equal(json_array_size(recs), 1);
  r = json_array_get(recs, 0);
  assert_string_equal(json_string_value(json_object_get(r, "partitionKey")),
                      "key-1");
  assert_string_equal(json_string_value(json_object_get(r,
                                                        "sequenceNumber")),
                      seq);
  assert_int_equal(json_integer_value(json_object_get(r,
                                                      "subSequenceNumber")),
                   0);
  assert_string_equal(json_string_value(json_object_get(r, "data")),
                      "cmVjLTEzNw=="); /* "rec-137" */
  assert_null(json_object_get(r, "truncated"));
  assert_string_equal(json_string_value(json_object_get(body, "errorMessage")),
                      "record rejected by the test handler");
  json_t *attrs = json_object_get(json_array_get(msgs, 0), "attrs");
  assert_string_equal(json_string_value(json_object_get(json_object_get(
    attrs, "shardId"), "StringValue")), SHARD);
  assert_string_equal(json_string_value(json_object_get(json_object_get(
    attrs, "startSequenceNumber"), "StringValue")), seq);
  assert_string_equal(json_string_value(json_object_get(json_object_get(
    attrs, "errorClass"), "StringValue")), "PoisonError");
  json_decref(body);
  json_decref(msgs);
  env_down(e);
  free(e);
}

static void test_partial_failure(void **state)
{
  struct env *e = malloc(sizeof(*e));
  struct kcld_dispatcher_stats st;
  char seq[40];
  (void)state;

  env_up(e, NULL);
  e->c.batches[0] = make_batch(0, 50, 4, 0, 0);
  e->c.nbatches = 1;
  e->h.poison[30] = 1;
  e->h.fail_times = 1; /* fails once, then passes */
  e->h.partial = 1;
  e->o.batch_size = 50;
  e->o.bisect_on_error = 0;
  e->o.max_retry_attempts = 3;
  e->o.backoff_base_ms = 300; /* time to look at the checkpoint */
  e->o.backoff_max_ms = 300;
  env_run(e);
  uint64_t until = uv_now(&e->loop) + WAIT_MS;
  while (e->h.calls < 1 || e->c.progress_calls < 1) {
    assert_true(uv_now(&e->loop) < until);
    uv_run(&e->loop, UV_RUN_ONCE);
  }
  seq_of(29, seq, sizeof(seq));
  assert_string_equal(e->c.progress, seq); /* stops before record 30 */
  assert_int_equal(e->h.calls, 1);
  wait_all_done(e, 49, WAIT_MS);
  stats(e, &st);
  assert_int_equal(e->h.calls, 2);
  assert_int_equal(e->h.call_first[1], 30); /* the retry starts there */
  for (size_t i = 0; i < 50; i++)
    assert_int_equal(e->h.handled[i], 1);
  assert_int_equal(st.batches_retried, 1);
  assert_int_equal(st.records_given_up, 0);
  env_down(e);
  free(e);
}

static void test_max_record_age(void **state)
{
  struct env *e = malloc(sizeof(*e));
  struct kcld_dispatcher_stats st;
  json_t *msgs, *body;
  (void)state;

  env_up(e, "engine-age");
  e->c.batches[0] = make_batch(0, 20, 4, 2 * 3600 * 1000, 0); /* 2 h old */
  e->c.nbatches = 1;
  for (size_t i = 0; i < 20; i++)
    e->h.poison[i] = 1;
  e->o.batch_size = 20;
  e->o.max_retry_attempts = -1; /* would retry for ever */
  e->o.max_record_age_ms = 60000;
  env_run(e);
  wait_all_done(e, 19, WAIT_MS);
  stats(e, &st);
  assert_int_equal(e->h.calls, 1); /* no retry, no bisection */
  assert_int_equal(st.batches_retried, 0);
  assert_int_equal(st.batches_bisected, 0);
  assert_int_equal(st.dlq_records, 20);
  msgs = drain_queue(e);
  assert_int_equal(json_array_size(msgs), 1);
  body = json_loads(json_string_value(json_object_get(
    json_array_get(msgs, 0), "body")), 0, NULL);
  assert_string_equal(json_string_value(json_object_get(json_object_get(
    body, "requestContext"), "condition")), "RecordAgeExceeded");
  assert_int_equal(json_integer_value(json_object_get(json_object_get(
    body, "KinesisBatchInfo"), "batchSize")), 20);
  assert_int_equal(json_array_size(json_object_get(body, "records")), 20);
  json_decref(body);
  json_decref(msgs);
  env_down(e);
  free(e);
}

static void test_sqs_down_then_back(void **state)
{
  struct env *e = malloc(sizeof(*e));
  struct kcld_dispatcher_stats st;
  struct kcld_emu sqs2;
  char seq[40];
  json_t *msgs;
  (void)state;

  /* A queue on a second fauxqs, which the test stops and starts. */
  assert_int_equal(kcld_emu_start(&sqs2, "sqs"), 0);
  env_up(e, NULL);
  proxy_to(kcld_emu_url(&sqs2, "sqs"));
  struct kcld_dlq_opts qo = {0};
  create_queue(e, "engine-down");
  qo.loop = &e->loop;
  assert_int_equal(kcld_dlq_sqs_new(e->sqs, e->queue, &qo.store), 0);
  qo.function_arn = "arn:aws:lambda:us-east-1::function:kcld-engine-test";
  qo.include_records = 1;
  qo.backoff_base_ms = 50;
  qo.backoff_max_ms = 200;
  assert_int_equal(kcld_dlq_new(&qo, &e->dlq), 0);
  e->o.dlq = e->dlq;
  e->o.discard = 0;
  kcld_emu_stop(&sqs2); /* SQS is gone */

  e->c.batches[0] = make_batch(0, 10, 2, 0, 0);
  e->c.nbatches = 1;
  e->h.poison[5] = 1;
  e->o.batch_size = 10;
  env_run(e);
  run_for(e, 2000);
  seq_of(4, seq, sizeof(seq));
  assert_string_equal(e->c.progress, seq); /* waits before the poison */
  stats(e, &st);
  assert_int_equal(st.dlq_messages, 0);
  for (size_t i = 0; i < 5; i++)
    assert_int_equal(e->h.handled[i], 1);
  for (size_t i = 5; i < 10; i++)
    assert_true(e->h.handled[i] <= 1);

  /* SQS is back (a new fauxqs behind the same endpoint). */
  assert_int_equal(kcld_emu_start(&sqs2, "sqs"), 0);
  proxy_to(kcld_emu_url(&sqs2, "sqs"));
  {
    struct seen s = {0};
    assert_int_equal(kcld_sqs_create_queue(e->sqs, "engine-down", NULL,
                                           on_queue, &s), 0);
    assert_true(kcld_test_run_until(&e->loop, &s.done, WAIT_MS));
    assert_int_equal(s.err, 0);
  }
  wait_all_done(e, 9, WAIT_MS);
  stats(e, &st);
  assert_int_equal(st.dlq_messages, 1);
  msgs = drain_queue(e);
  assert_int_equal(json_array_size(msgs), 1);
  json_decref(msgs);
  for (size_t i = 0; i < 10; i++)
    assert_int_equal(e->h.handled[i], i == 5 ? 0 : 1);
  env_down(e);
  kcld_emu_stop(&sqs2);
  free(e);
}

static void test_handler_timeout(void **state)
{
  struct env *e = malloc(sizeof(*e));
  struct kcld_dispatcher_stats st;
  (void)state;

  env_up(e, NULL);
  e->c.batches[0] = make_batch(0, 10, 2, 0, 0);
  e->c.nbatches = 1;
  e->h.hang_first_ms = 800;
  e->o.batch_size = 10;
  e->o.bisect_on_error = 0;
  e->o.max_retry_attempts = 2;
  e->o.handler_timeout_ms = 100;
  env_run(e);
  wait_all_done(e, 9, WAIT_MS);
  stats(e, &st);
  assert_int_equal(st.handler_timeouts, 1);
  assert_int_equal(st.batches_failed, 1);
  assert_int_equal(st.batches_retried, 1);
  assert_int_equal(e->h.calls, 2);
  assert_true(st.in_flight >= 1); /* the late call is still out */
  assert_int_equal(e->h.late_answers, 0);
  run_for(e, 1000);
  assert_int_equal(e->h.late_answers, 1); /* arrived and was ignored */
  stats(e, &st);
  assert_int_equal(st.in_flight, 0);
  assert_int_equal(st.batches_ok, 1);
  env_down(e);
  free(e);
}

static void test_handler_refuses_and_crashes(void **state)
{
  struct env *e = malloc(sizeof(*e));
  struct kcld_dispatcher_stats st;
  (void)state;

  env_up(e, NULL);
  e->c.batches[0] = make_batch(0, 10, 2, 0, 0);
  e->c.nbatches = 1;
  e->h.refuse_first = 1;
  e->o.batch_size = 10;
  e->o.bisect_on_error = 0;
  e->o.max_retry_attempts = 3;
  env_run(e);
  wait_all_done(e, 9, WAIT_MS);
  stats(e, &st);
  assert_int_equal(st.batches_failed, 1);
  assert_int_equal(e->h.calls, 2);
  env_down(e);
  free(e);

  e = malloc(sizeof(*e));
  env_up(e, NULL);
  e->c.batches[0] = make_batch(0, 10, 2, 0, 0);
  e->c.nbatches = 1;
  e->h.crash_first = 1;
  e->o.batch_size = 10;
  e->o.bisect_on_error = 0;
  e->o.max_retry_attempts = 3;
  env_run(e);
  wait_all_done(e, 9, WAIT_MS);
  stats(e, &st);
  assert_int_equal(st.batches_failed, 1);
  assert_int_equal(st.batches_ok, 1);
  for (size_t i = 0; i < 10; i++)
    assert_int_equal(e->h.handled[i], 1);
  env_down(e);
  free(e);

  /* Refused with no retry and no destination: a refusal says nothing
   * about the records (an infrastructure failure), so nothing is skipped:
   * the batch waits and goes through once the handler takes it. */
  e = malloc(sizeof(*e));
  env_up(e, NULL);
  e->c.batches[0] = make_batch(0, 20, 2, 0, 0);
  e->c.nbatches = 1;
  e->h.refuse_first = 1;
  e->o.batch_size = 10;
  e->o.bisect_on_error = 0;
  e->o.max_retry_attempts = 0;
  env_run(e);
  wait_all_done(e, 19, WAIT_MS);
  stats(e, &st);
  assert_int_equal(st.records_skipped, 0);
  assert_int_equal(st.records_given_up, 0);
  assert_int_equal(st.batches_waited, 1);
  assert_int_equal(st.batches_ok, 2);
  for (size_t i = 0; i < 20; i++)
    assert_int_equal(e->h.handled[i], 1);
  env_down(e);
  free(e);
}

static void test_parallelization_keeps_key_order(void **state)
{
  struct env *e = malloc(sizeof(*e));
  struct kcld_dispatcher_stats st;
  (void)state;

  env_up(e, NULL);
  for (size_t b = 0; b < 8; b++)
    e->c.batches[b] = make_batch(b * 100, 100, 8, 0, b == 7);
  e->c.nbatches = 8;
  e->h.jitter = 1;
  e->o.batch_size = 10;
  e->o.parallelization = 4;
  env_run(e);
  wait_all_done(e, 799, WAIT_MS);
  stats(e, &st);
  printf("parallelization 4: %u handler calls, at most %u in flight\n",
         e->h.calls, e->h.max_in_flight);
  assert_int_equal(e->h.order_violations, 0);
  assert_true(e->h.max_in_flight > 1);
  assert_true(e->h.max_in_flight <= 4);
  assert_int_equal(e->c.regress, 0);
  for (size_t i = 0; i < 800; i++)
    assert_int_equal(e->h.handled[i], 1);
  assert_int_equal(st.records_handled, 800);
  env_down(e);
  free(e);
}

static void test_no_destination_skips_or_blocks(void **state)
{
  struct env *e = malloc(sizeof(*e));
  struct kcld_dispatcher_stats st;
  char seq[40];
  (void)state;

  env_up(e, NULL);
  e->c.batches[0] = make_batch(0, 16, 2, 0, 0);
  e->c.nbatches = 1;
  e->h.poison[3] = 1;
  e->o.batch_size = 16;
  env_run(e);
  wait_all_done(e, 15, WAIT_MS);
  stats(e, &st);
  assert_int_equal(st.records_skipped, 1);
  assert_int_equal(e->h.handled[3], 0);
  env_down(e);
  free(e);

  e = malloc(sizeof(*e));
  env_up(e, NULL);
  e->c.batches[0] = make_batch(0, 16, 2, 0, 0);
  e->c.nbatches = 1;
  e->h.poison[3] = 1;
  e->o.batch_size = 16;
  e->o.block_on_failure = 1;
  env_run(e);
  run_for(e, 800);
  stats(e, &st);
  seq_of(2, seq, sizeof(seq));
  assert_string_equal(e->c.progress, seq); /* never past the poison */
  assert_int_equal(st.records_skipped, 0);
  assert_true(e->h.fails_done[3] >= 3);
  env_down(e);
  free(e);
}

static void test_window_and_flush(void **state)
{
  struct env *e = malloc(sizeof(*e));
  (void)state;

  env_up(e, NULL);
  e->c.batches[0] = make_batch(0, 5, 2, 0, 0);
  e->c.nbatches = 1;
  e->o.batch_size = 100;
  e->o.window_ms = 10000;
  env_run(e);
  run_for(e, 300);
  assert_int_equal(e->h.calls, 0);   /* waits for the window */
  assert_int_equal(e->c.dones, 1);   /* but takes more records meanwhile */
  kcld_dispatcher_flush(e->disp);    /* shutdown: no more waiting */
  wait_all_done(e, 4, 2000);
  assert_int_equal(e->h.calls, 1);
  assert_int_equal(e->h.first_call_count, 5);
  env_down(e);
  free(e);

  /* The last records of a shard go at once too. */
  e = malloc(sizeof(*e));
  env_up(e, NULL);
  e->c.batches[0] = make_batch(0, 5, 2, 0, 1);
  e->c.nbatches = 1;
  e->o.batch_size = 100;
  e->o.window_ms = 10000;
  env_run(e);
  wait_all_done(e, 4, 2000);
  assert_int_equal(e->h.calls, 1);
  env_down(e);
  free(e);
}

static void cancel_consumer(struct env *e)
{
  e->c.cancelled = 1;
  e->c.sink.cancel(e->c.sink.impl, (struct kcld_shard_consumer *)&e->c);
}

static void test_cancel_with_work_in_flight(void **state)
{
  struct env *e = malloc(sizeof(*e));
  struct kcld_dispatcher_stats st;
  (void)state;

  /* A handler call out (and its delivery held: 30 records, batch 10). */
  env_up(e, NULL);
  e->c.batches[0] = make_batch(0, 30, 2, 0, 0);
  e->c.batches[1] = make_batch(30, 10, 2, 0, 0);
  e->c.nbatches = 2;
  e->h.hang_first_ms = 400;
  e->o.batch_size = 10;
  env_run(e);
  run_for(e, 100);
  assert_int_equal(e->h.calls, 1);
  assert_int_equal(e->c.dones, 0); /* 20 records wait for a batch */
  e->c.nbatches = 1;               /* the consumer stops feeding */
  cancel_consumer(e);
  assert_int_equal(e->c.dones, 0); /* never from inside cancel */
  stats(e, &st);
  assert_int_equal(st.in_flight, 1); /* the handler still has the batch */
  run_for(e, 600);
  assert_int_equal(e->c.dones, 1); /* handed back from the loop */
  assert_int_equal(e->h.late_answers, 1);
  stats(e, &st);
  assert_int_equal(st.in_flight, 0);
  assert_int_equal(e->c.after_cancel, 0);
  assert_int_equal(e->h.calls, 1);
  kcld_record_batch_release(e->c.batches[1]);
  env_down(e);
  free(e);

  /* A dead-letter send that cannot get through. */
  e = malloc(sizeof(*e));
  env_up(e, "engine-cancel");
  proxy_to("http://127.0.0.1:1");
  e->c.batches[0] = make_batch(0, 4, 2, 0, 0);
  e->c.nbatches = 1;
  e->h.poison[2] = 1;
  e->o.batch_size = 4;
  env_run(e);
  run_for(e, 800);
  stats(e, &st);
  assert_int_equal(st.dlq_messages, 0);
  assert_int_equal(kcld_dlq_pending(e->dlq), 1);
  cancel_consumer(e);
  assert_int_equal(kcld_dlq_pending(e->dlq), 0);
  run_for(e, 300);
  assert_int_equal(e->c.after_cancel, 0);
  stats(e, &st);
  assert_int_equal(st.in_flight, 0);
  env_down(e);
  free(e);
}

/* ======== Redrive ======== */

/* Every record in the one-shard stream, as "key=data" strings. */
static json_t *stream_records(struct kcld_test_aws *t, const char *stream)
{
  json_t *shards = kcld_e2e_call(t, KCLD_AWS_KINESIS, "ListShards",
                                 json_pack("{s:s}", "StreamName", stream));
  const char *shard = json_string_value(json_object_get(json_array_get(
    json_object_get(shards, "Shards"), 0), "ShardId"));
  json_t *it = kcld_e2e_call(t, KCLD_AWS_KINESIS, "GetShardIterator",
                             json_pack("{s:s,s:s,s:s}", "StreamName", stream,
                                       "ShardId", shard, "ShardIteratorType",
                                       "TRIM_HORIZON"));
  json_t *got = kcld_e2e_call(t, KCLD_AWS_KINESIS, "GetRecords",
                              json_pack("{s:O}", "ShardIterator",
                                        json_object_get(it, "ShardIterator")));
  json_t *out = json_array(), *r;
  size_t i;
  json_array_foreach(json_object_get(got, "Records"), i, r) {
    unsigned char data[64] = {0};
    const char *b64 = json_string_value(json_object_get(r, "Data"));
    EVP_DecodeBlock(data, (const unsigned char *)b64, (int)strlen(b64));
    json_array_append_new(out, json_sprintf("%s=%s", json_string_value(
      json_object_get(r, "PartitionKey")), (char *)data));
  }
  json_decref(shards);
  json_decref(it);
  json_decref(got);
  return out;
}

static void write_conf(const char *path, const char *out, const char *queue)
{
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fprintf(f,
          "application: engine-redrive\n"
          "stream: redrive-s\n"
          "region: us-east-1\n"
          "endpoints:\n"
          "  kinesis: %s\n"
          "  dynamodb: %s\n"
          "  sqs: %s\n"
          "credentials:\n"
          "  access_key_id: test\n"
          "  secret_access_key: test\n"
          "shutdown_timeout: 5s\n"
          "lease:\n"
          "  failover_time: 1s\n"
          "fetch:\n"
          "  idle_time: 200ms\n"
          "metrics:\n"
          "  listen: \"\"\n"
          "on_failure:\n"
          "  sqs: %s\n"
          "handler:\n"
          "  type: stdout\n"
          "  decode: utf8\n"
          "  path: %s\n",
          kcld_emu_url(&s_emu, "kinesis"), kcld_emu_url(&s_emu, "dynamodb"),
          fault_url(), queue, out);
  fclose(f);
}

/* kcld redrive --config conf, with --queue queue unless NULL (then the
 * config's on_failure.sqs), and --dry-run when asked. */
static int run_redrive(const char *conf, const char *queue, int dry_run,
                       const char *log)
{
  pid_t pid = fork();
  int status = -1;
  assert_true(pid >= 0);
  if (pid == 0) {
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    if (queue)
      execl(kcld_test_bin(), "kcld", "redrive", "--queue", queue, "--config",
            conf, (char *)NULL);
    else
      execl(kcld_test_bin(), "kcld", "redrive", "--config", conf,
            dry_run ? "--dry-run" : (char *)NULL, (char *)NULL);
    _exit(127);
  }
  assert_int_equal(kcld_test_wait_exit(pid, 30000, &status), 1);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_redrive_round_trip(void **state)
{
  struct env *e = malloc(sizeof(*e));
  struct kcld_test_aws *t;
  char dir[] = "/tmp/kcld-engine-XXXXXX", conf[128], out[128], log[128];
  json_t *msgs, *recs;
  int status;
  (void)state;

  assert_non_null(mkdtemp(dir));
  snprintf(conf, sizeof(conf), "%s/kcld.yaml", dir);
  snprintf(out, sizeof(out), "%s/out.jsonl", dir);
  snprintf(log, sizeof(log), "%s/redrive.log", dir);
  t = kcld_test_aws_new(kcld_emu_url(&s_emu, "kinesis"), NULL, NULL);
  json_decref(kcld_e2e_call(t, KCLD_AWS_KINESIS, "CreateStream",
                            json_pack("{s:s,s:i}", "StreamName", "redrive-s",
                                      "ShardCount", 1)));

  /* Two poison records dead-lettered by the engine (whose stream was
   * configured by name: no streamArn, so redrive uses the config's). */
  s_stream_arn = "";
  env_up(e, "engine-redrive");
  s_stream_arn = "arn:aws:kinesis:us-east-1:000000000000:stream/engine";
  e->c.batches[0] = make_batch(0, 20, 4, 0, 0);
  e->c.nbatches = 1;
  e->h.poison[3] = e->h.poison[11] = 1;
  e->o.batch_size = 20;
  env_run(e);
  wait_all_done(e, 19, WAIT_MS);
  char queue[512];
  snprintf(queue, sizeof(queue), "%s", e->queue);
  write_conf(conf, out, queue);

  /* A dry run, the queue from the config: counts both, puts nothing, and
   * leaves both messages visible for the redrive that follows. */
  status = run_redrive(conf, NULL, 1, log);
  char *dry = kcld_test_slurp(log, NULL);
  assert_non_null(dry);
  if (status != 0 || !strstr(dry, "{\"messages\":2,\"records\":2,\"kept\":0,"
                                   "\"dry_run\":true,\"error\":null}"))
    fail_msg("dry run: exit %d\n%s", status, dry);
  free(dry);
  recs = stream_records(t, "redrive-s");
  assert_int_equal(json_array_size(recs), 0);
  json_decref(recs);

  status = run_redrive(conf, queue, 0, log);
  if (status != 0) {
    char *text = kcld_test_slurp(log, NULL);
    fprintf(stderr, "%s\n", text ? text : "");
    free(text);
  }
  assert_int_equal(status, 0);
  recs = stream_records(t, "redrive-s");
  assert_int_equal(json_array_size(recs), 2);
  assert_string_equal(json_string_value(json_array_get(recs, 0)),
                      "key-3=rec-3");
  assert_string_equal(json_string_value(json_array_get(recs, 1)),
                      "key-3=rec-11");
  json_decref(recs);
  msgs = drain_queue(e);
  assert_int_equal(json_array_size(msgs), 0); /* the queue is empty */
  json_decref(msgs);
  env_down(e);
  free(e);

  /* A kcld worker (dead-letter queue configured) handles them again. */
  snprintf(log, sizeof(log), "%s/worker.log", dir);
  pid_t pid = kcld_test_spawn_kcld(conf, log);
  unsigned long long until = kcld_test_now_ms() + 30000;
  int found = 0;
  while (!found && kcld_test_now_ms() < until) {
    char *text = kcld_test_slurp(out, NULL);
    found = text && strstr(text, "rec-3") && strstr(text, "rec-11");
    free(text);
    if (!found)
      kcld_test_sleep_ms(100);
  }
  kill(pid, SIGTERM);
  assert_int_equal(kcld_test_wait_exit(pid, 20000, &status), 1);
  if (!found) {
    char *text = kcld_test_slurp(log, NULL);
    fprintf(stderr, "%s\n", text ? text : "");
    free(text);
  }
  assert_true(found);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  kcld_test_aws_free(t);
  snprintf(conf, sizeof(conf), "rm -rf %s", dir);
  assert_int_equal(system(conf), 0);
}

/* ======== The real binary: a multilang child crashing on poison ======== */

static const char s_child[] =
  "import base64, json, sys\n"
  "log = open(sys.argv[1], 'a')\n"
  "def send(m):\n"
  "    sys.stdout.write(json.dumps(m) + '\\n'); sys.stdout.flush()\n"
  "for line in sys.stdin:\n"
  "    m = json.loads(line)\n"
  "    a = m['action']\n"
  "    if a == 'processRecords':\n"
  "        ds = [base64.b64decode(r['data']).decode() for r in m['records']]\n"
  "        log.write('call %d\\n' % len(ds))\n"
  "        for d in ds: log.write('seen %s\\n' % d)\n"
  "        log.flush()\n"
  "        if 'rec-137' in ds: sys.exit(3)\n"
  "        for d in ds: log.write('ok %s\\n' % d)\n"
  "        log.flush()\n"
  "    send({'action': 'status', 'responseFor': a})\n";

static void test_binary_poison_multilang(void **state)
{
  struct env *e = malloc(sizeof(*e));
  struct kcld_test_aws *t;
  char dir[] = "/tmp/kcld-engbin-XXXXXX", conf[128], log[128], hlog[128];
  char child[128], cmd[160], seq137[64] = "", last[64] = "";
  unsigned seen[256] = {0}, ok[256] = {0}, calls = 0, poison_calls = 0;
  unsigned exp_calls = 0, exp_dups = 0, exp_rounds = 0, depth[MAXREC] = {0};
  unsigned dups = 0;
  json_t *msgs, *body, *r, *put;
  int status;
  FILE *f;
  (void)state;

  assert_non_null(mkdtemp(dir));
  snprintf(conf, sizeof(conf), "%s/kcld.yaml", dir);
  snprintf(log, sizeof(log), "%s/kcld.log", dir);
  snprintf(hlog, sizeof(hlog), "%s/handler.log", dir);
  snprintf(child, sizeof(child), "%s/child.py", dir);
  f = fopen(child, "w");
  assert_non_null(f);
  fputs(s_child, f);
  fclose(f);

  t = kcld_test_aws_new(kcld_emu_url(&s_emu, "kinesis"),
                        kcld_emu_url(&s_emu, "dynamodb"), NULL);
  kcld_e2e_create_stream(t, "engbin", 1);
  put = json_array();
  for (int b = 0; b < 2; b++) {
    char bufs[100][32];
    const char *data[100], *keys[100];
    for (int k = 0; k < 100; k++) {
      snprintf(bufs[k], sizeof(bufs[k]), "rec-%d", b * 100 + k);
      data[k] = bufs[k];
      keys[k] = "pk";
    }
    kcld_e2e_put_records(t, "engbin", data, keys, 100, put);
  }
  snprintf(seq137, sizeof(seq137), "%s",
           json_string_value(json_object_get(json_array_get(put, 137), "seq")));
  snprintf(last, sizeof(last), "%s",
           json_string_value(json_object_get(json_array_get(put, 199), "seq")));
  json_decref(put);

  env_up(e, "engine-bin");
  f = fopen(conf, "w");
  assert_non_null(f);
  fprintf(f,
          "application: engbin-app\n"
          "stream: engbin\n"
          "region: us-east-1\n"
          "worker_id: w-bin\n"
          "endpoints:\n"
          "  kinesis: %s\n"
          "  dynamodb: %s\n"
          "  sqs: %s\n"
          "credentials:\n"
          "  access_key_id: test\n"
          "  secret_access_key: test\n"
          "starting_position: TRIM_HORIZON\n"
          "shutdown_timeout: 5s\n"
          "lease:\n"
          "  failover_time: 1s\n"
          "fetch:\n"
          "  idle_time: 200ms\n"
          "metrics:\n"
          "  listen: \"\"\n"
          "batch:\n"
          "  size: 200\n"
          "  window: 1s\n"
          "retry:\n"
          "  max_retry_attempts: 0\n"
          "  bisect_on_error: true\n"
          "  backoff_base: 10ms\n"
          "  backoff_max: 50ms\n"
          "on_failure:\n"
          "  sqs: %s\n"
          "handler:\n"
          "  type: multilang\n"
          "  command: [\"python3\", \"%s\", \"%s\"]\n",
          kcld_emu_url(&s_emu, "kinesis"), kcld_emu_url(&s_emu, "dynamodb"),
          fault_url(), e->queue, child, hlog);
  fclose(f);

  pid_t pid = kcld_test_spawn_kcld(conf, log);
  /* Eight record processors start one after another (one per bisection
   * round); a Python start takes over a second on a loaded machine, so
   * the bound is generous: it only ends a run that is stuck. */
  unsigned long long until = kcld_test_now_ms() + 90000;
  size_t nmsgs = 0;
  for (;;) {
    char *text = kcld_test_slurp(hlog, NULL);
    unsigned nok = 0;
    for (char *p = text; p && (p = strstr(p, "ok rec-")); p += 7)
      nok++;
    free(text);
    if (nok >= 199)
      break;
    if (kcld_test_now_ms() > until) {
      char *l = kcld_test_slurp(log, NULL);
      fprintf(stderr, "%s\n", l ? l : "");
      free(l);
      kill(pid, SIGKILL);
      kcld_test_reap(pid);
      fail_msg("the other 199 records were not handled within 90 s");
    }
    kcld_test_sleep_ms(100);
  }
  kcld_test_sleep_ms(500);
  kill(pid, SIGTERM); /* graceful: flushes the checkpoint */
  assert_int_equal(kcld_test_wait_exit(pid, 20000, &status), 1);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);

  /* What the child saw. */
  f = fopen(hlog, "r");
  assert_non_null(f);
  char line[128];
  unsigned in_call = 0, has_poison = 0;
  while (fgets(line, sizeof(line), f)) {
    unsigned k;
    if (sscanf(line, "call %u", &k) == 1) {
      calls++;
      if (has_poison)
        poison_calls++;
      has_poison = 0;
      in_call = k;
    } else if (sscanf(line, "seen rec-%u", &k) == 1 && k < 256) {
      seen[k]++;
      if (k == 137)
        has_poison = 1;
    } else if (sscanf(line, "ok rec-%u", &k) == 1 && k < 256) {
      ok[k]++;
    }
  }
  if (has_poison)
    poison_calls++;
  (void)in_call;
  fclose(f);
  expect_bisect(0, 200, 137, &exp_calls, &exp_dups, &exp_rounds, depth);
  for (unsigned k = 0; k < 200; k++) {
    assert_int_equal(ok[k], k == 137 ? 0 : 1);
    if (k != 137)
      dups += seen[k] - 1;
  }
  printf("kcld binary, multilang child crashing on rec-137 of 200: %u "
         "calls with the poison record (bound %u), %u calls, %u duplicate "
         "deliveries (bisection implies %u)\n", poison_calls,
         kcld_policy_bisect_rounds(200), calls, dups, exp_dups);
  assert_int_equal(poison_calls, exp_rounds);
  assert_int_equal(calls, exp_calls);
  assert_int_equal(dups, exp_dups);

  /* Exactly that record in the queue. */
  msgs = drain_queue(e);
  nmsgs = json_array_size(msgs);
  assert_int_equal(nmsgs, 1);
  body = json_loads(json_string_value(json_object_get(
    json_array_get(msgs, 0), "body")), 0, NULL);
  assert_string_equal(json_string_value(json_object_get(json_object_get(
    body, "KinesisBatchInfo"), "startSequenceNumber")), seq137);
  /* The stream is configured by name: kcld resolved its ARN, and the
   * function ARN carries that ARN's account. */
  assert_string_equal(json_string_value(json_object_get(json_object_get(
    body, "requestContext"), "functionArn")),
    "arn:aws:lambda:us-east-1:000000000000:function:kcld-engbin-app");
  assert_string_equal(json_string_value(json_object_get(json_object_get(
    body, "KinesisBatchInfo"), "streamArn")),
    "arn:aws:kinesis:us-east-1:000000000000:stream/engbin");
  r = json_array_get(json_object_get(body, "records"), 0);
  assert_string_equal(json_string_value(json_object_get(r, "data")),
                      "cmVjLTEzNw==");
  json_decref(body);
  json_decref(msgs);

  /* The checkpoint ends at the last record. */
  json_t *scan = kcld_e2e_call(t, KCLD_AWS_DYNAMODB, "Scan",
                               json_pack("{s:s}", "TableName", "engbin-app"));
  json_t *item = json_array_get(json_object_get(scan, "Items"), 0);
  assert_string_equal(json_string_value(json_object_get(json_object_get(
    item, "checkpoint"), "S")), last);
  json_decref(scan);

  env_down(e);
  free(e);
  kcld_test_aws_free(t);
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
}

static int setup(void **state)
{
  (void)state;
  json_object_seed(0);
  if (kcld_emu_start(&s_emu, "kinesis dynamodb sqs fault") != 0)
    return -1;
  s_have_emu = 1;
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  if (s_have_emu)
    kcld_emu_stop(&s_emu);
  return 0;
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_poison_bisected_to_dlq),
    cmocka_unit_test(test_partial_failure),
    cmocka_unit_test(test_max_record_age),
    cmocka_unit_test(test_sqs_down_then_back),
    cmocka_unit_test(test_handler_timeout),
    cmocka_unit_test(test_handler_refuses_and_crashes),
    cmocka_unit_test(test_parallelization_keeps_key_order),
    cmocka_unit_test(test_no_destination_skips_or_blocks),
    cmocka_unit_test(test_cancel_with_work_in_flight),
    cmocka_unit_test(test_window_and_flush),
    cmocka_unit_test(test_redrive_round_trip),
    cmocka_unit_test(test_binary_poison_multilang),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
