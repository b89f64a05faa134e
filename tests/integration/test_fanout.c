/* test_fanout.c — enhanced fan-out against the kinesis_efo emulator
 * (kinesalite with the consumer APIs and SubscribeToShard over h2c,
 * tests/emulators/lib/kinesis_efo.js): register, describe and list
 * consumers; two clients racing to ensure one consumer both end with the
 * same ACTIVE consumer; a subscription delivers the initial response and
 * every record put, in order, with continuation sequence numbers, and ends
 * when the service ends it; resubscribing after the last continuation
 * neither repeats nor skips a record; ResourceInUse and LimitExceeded
 * refusals, exception events, a bad CRC and a reset mid-frame each end the
 * subscription with the mapped error; cancel ends it at once; a closed
 * shard ends with ChildShards. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "../harness/awsenv.h"
#include "../harness/awssync.h"
#include "../harness/fault.h"
#include "../harness/harness.h"
#include "../harness/proc.h"
#include "aws/fanout.h"
#include "aws/kinesis.h"
#include "err.h"

static struct kcld_emu s_emu;
static const char *s_url;
static struct kcld_test_aws *s_sync;
static int s_streams;

/* ======== Set-up helpers ======== */

static json_t *call(const char *op, json_t *req)
{
  json_t *r = kcld_test_aws_call(s_sync, KCLD_AWS_KINESIS, op, req, NULL);
  json_decref(req);
  assert_non_null(r);
  return r;
}

/* A new stream with `shards` shards; its ARN in arn (cap bytes). */
static void new_stream(int shards, char *name, size_t ncap, char *arn,
                       size_t acap)
{
  snprintf(name, ncap, "efo-%d", ++s_streams);
  json_decref(call("CreateStream", json_pack("{s:s,s:i}", "StreamName", name,
                                             "ShardCount", shards)));
  unsigned long long end = kcld_test_now_ms() + 20000;
  while (kcld_test_now_ms() < end) {
    json_t *d = call("DescribeStreamSummary",
                     json_pack("{s:s}", "StreamName", name));
    json_t *s = json_object_get(d, "StreamDescriptionSummary");
    const char *st = json_string_value(json_object_get(s, "StreamStatus"));
    if (st && strcmp(st, "ACTIVE") == 0) {
      snprintf(arn, acap, "%s",
               json_string_value(json_object_get(s, "StreamARN")));
      json_decref(d);
      return;
    }
    json_decref(d);
    kcld_test_sleep_ms(20);
  }
  fail_msg("stream %s not ACTIVE", name);
}

/* Puts n records "r<from>".."r<from+n-1>" to shard 0's hash range (key
 * "0"); returns the last sequence number in last (cap bytes). */
static void put(const char *stream, int from, int n, char *last, size_t cap)
{
  for (int i = from; i < from + n; i++) {
    char data[32], b64[64];
    int len = snprintf(data, sizeof(data), "r%d", i);
    EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)data, len);
    json_t *r = call("PutRecord", json_pack("{s:s,s:s,s:s,s:s}", "StreamName",
                                            stream, "PartitionKey", "k",
                                            "ExplicitHashKey", "0", "Data",
                                            b64));
    if (last)
      snprintf(last, cap, "%s",
               json_string_value(json_object_get(r, "SequenceNumber")));
    json_decref(r);
  }
}

static void script(const char *json)
{
  json_t *r = kcld_fault_post(s_url, "/__efo/script", json);
  assert_non_null(r);
  json_decref(r);
}

static int reset(void **state)
{
  (void)state;
  json_t *r = kcld_fault_post(s_url, "/__efo/reset", "{}");
  assert_non_null(r);
  json_decref(r);
  return 0;
}

static int setup(void **state)
{
  (void)state;
  if (kcld_emu_start(&s_emu, "kinesis_efo") != 0)
    return -1;
  s_url = kcld_emu_url(&s_emu, "kinesis_efo");
  s_sync = s_url ? kcld_test_aws_new(s_url, NULL, NULL) : NULL;
  return s_sync ? 0 : -1;
}

static int teardown(void **state)
{
  (void)state;
  kcld_test_aws_free(s_sync);
  kcld_emu_stop(&s_emu);
  kcld_http_global_cleanup();
  return 0;
}

struct env {
  struct kcld_test_awsenv aws;
  struct kcld_fanout *f;
};

static void env_up(struct env *e)
{
  kcld_test_awsenv_up(&e->aws, KCLD_AWS_KINESIS, s_url, 1);
  assert_int_equal(kcld_fanout_new(e->aws.aws, &e->aws.loop, &e->f), 0);
}

static void env_down(struct env *e)
{
  kcld_fanout_close(e->f);
  kcld_test_awsenv_down(&e->aws);
}

/* ======== Consumers ======== */

struct cons {
  int done;
  int err;
  char type[96];
  char arn[512];
  char status[32];
  char name[128];
  int registered;
  size_t count;
  int pages;
};

static void on_consumer(const struct kcld_fanout_consumer *c, void *arg)
{
  struct cons *r = arg;
  r->done++;
  r->err = c->st.err;
  snprintf(r->type, sizeof(r->type), "%s", c->st.type ? c->st.type : "");
  if (c->st.err == 0) {
    snprintf(r->arn, sizeof(r->arn), "%s", c->arn);
    snprintf(r->status, sizeof(r->status), "%s", c->status);
    snprintf(r->name, sizeof(r->name), "%s", c->name);
    r->registered = c->registered;
  }
}

static void on_list(const struct kcld_fanout_consumer_list *l, void *arg)
{
  struct cons *r = arg;
  r->done++;
  r->err = l->st.err;
  r->count = l->count;
  r->pages = l->pages;
  for (size_t i = 0; i < l->count; i++) {
    assert_non_null(l->consumers[i].name);
    assert_non_null(l->consumers[i].arn);
    assert_non_null(l->consumers[i].status);
  }
}

static void test_consumer_calls(void **state)
{
  struct env e;
  struct cons a = {0}, b = {0}, d = {0}, l = {0}, nf = {0};
  char name[32], arn[256], cname[32];

  (void)state;
  new_stream(1, name, sizeof(name), arn, sizeof(arn));
  env_up(&e);
  assert_int_equal(kcld_fanout_register(e.f, arn, "app", on_consumer, &a), 0);
  assert_true(kcld_test_run_until(&e.aws.loop, &a.done, 10000));
  assert_int_equal(a.err, 0);
  assert_string_equal(a.status, "CREATING");
  assert_string_equal(a.name, "app");
  assert_non_null(strstr(a.arn, "/consumer/app:"));
  /* A second registration of the name is ResourceInUse. */
  assert_int_equal(kcld_fanout_register(e.f, arn, "app", on_consumer, &b), 0);
  assert_true(kcld_test_run_until(&e.aws.loop, &b.done, 10000));
  assert_int_equal(b.err, KCLD_EAWS);
  assert_string_equal(b.type, "ResourceInUseException");
  /* Described by ARN it turns ACTIVE (the emulator's register delay is
   * 200 ms): described every 20 ms for up to 20 s. */
  unsigned long long end = kcld_test_now_ms() + 20000;
  for (;;) {
    memset(&d, 0, sizeof(d));
    assert_int_equal(kcld_fanout_describe(e.f, NULL, NULL, a.arn, on_consumer,
                                          &d), 0);
    assert_true(kcld_test_run_until(&e.aws.loop, &d.done, 10000));
    assert_int_equal(d.err, 0);
    if (strcmp(d.status, "ACTIVE") == 0 || kcld_test_now_ms() > end)
      break;
    kcld_test_sleep_ms(20);
  }
  assert_string_equal(d.status, "ACTIVE");
  assert_string_equal(d.arn, a.arn);
  /* Missing: not found. */
  assert_int_equal(kcld_fanout_describe(e.f, arn, "nobody", NULL, on_consumer,
                                        &nf), 0);
  assert_true(kcld_test_run_until(&e.aws.loop, &nf.done, 10000));
  assert_int_equal(nf.err, KCLD_ENOTFOUND);
  /* 12 more; the list follows the pages (the emulator's are 100 long, so
   * the list is asked in one page here; NextToken paging is in ensure's
   * own test of the emulator). */
  for (int i = 0; i < 12; i++) {
    struct cons r = {0};
    snprintf(cname, sizeof(cname), "c%d", i);
    assert_int_equal(kcld_fanout_register(e.f, arn, cname, on_consumer, &r),
                     0);
    assert_true(kcld_test_run_until(&e.aws.loop, &r.done, 10000));
    assert_int_equal(r.err, 0);
  }
  assert_int_equal(kcld_fanout_list(e.f, arn, on_list, &l), 0);
  assert_true(kcld_test_run_until(&e.aws.loop, &l.done, 10000));
  assert_int_equal(l.err, 0);
  assert_int_equal(l.count, 13);
  /* Bad arguments. */
  assert_int_equal(kcld_fanout_register(e.f, "", "x", on_consumer, &a),
                   KCLD_EINVAL);
  assert_int_equal(kcld_fanout_describe(e.f, NULL, "x", NULL, on_consumer, &a),
                   KCLD_EINVAL);
  env_down(&e);
}

/* Two workers race to ensure the same consumer; one registers it, the
 * other finds it (ResourceInUse), both wait for ACTIVE and agree. */
static void test_ensure_race(void **state)
{
  struct env e1, e2;
  struct cons a = {0}, b = {0}, c = {0};
  char name[32], arn[256];

  (void)state;
  new_stream(1, name, sizeof(name), arn, sizeof(arn));
  script("{\"register_delay_ms\": 300}");
  env_up(&e1);
  env_up(&e2);
  assert_int_equal(kcld_fanout_ensure(e1.f, name, "racer", 10000, on_consumer,
                                      &a), 0);
  assert_int_equal(kcld_fanout_ensure(e2.f, arn, "racer", 10000, on_consumer,
                                      &b), 0);
  unsigned long long end = kcld_test_now_ms() + 20000;
  while (!(a.done && b.done) && kcld_test_now_ms() < end) {
    uv_run(&e1.aws.loop, UV_RUN_NOWAIT);
    uv_run(&e2.aws.loop, UV_RUN_NOWAIT);
    kcld_test_sleep_ms(5);
  }
  assert_int_equal(a.done, 1);
  assert_int_equal(b.done, 1);
  assert_int_equal(a.err, 0);
  assert_int_equal(b.err, 0);
  assert_string_equal(a.status, "ACTIVE");
  assert_string_equal(b.status, "ACTIVE");
  assert_string_equal(a.arn, b.arn);
  assert_int_equal(a.registered + b.registered, 1);
  /* Once more: it exists, nothing is registered. */
  assert_int_equal(kcld_fanout_ensure(e1.f, arn, "racer", 0, on_consumer, &c),
                   0);
  assert_true(kcld_test_run_until(&e1.aws.loop, &c.done, 10000));
  assert_int_equal(c.err, 0);
  assert_int_equal(c.registered, 0);
  assert_string_equal(c.arn, a.arn);
  json_t *st = kcld_fault_post(s_url, "/__efo/stats", "{}");
  json_t *calls = json_object_get(st, "calls");
  assert_int_equal(json_integer_value(json_object_get(
                     calls, "RegisterStreamConsumer")), 3);
  json_decref(st);
  /* A stream that does not exist. */
  memset(&c, 0, sizeof(c));
  assert_int_equal(kcld_fanout_ensure(e1.f, "no-such-stream", "x", 2000,
                                      on_consumer, &c), 0);
  assert_true(kcld_test_run_until(&e1.aws.loop, &c.done, 10000));
  assert_int_equal(c.err, KCLD_ENOTFOUND);
  env_down(&e1);
  env_down(&e2);
}

/* ======== Subscriptions ======== */

struct sub {
  struct kcld_fanout_sub *s;
  int initial;
  int events;
  int records;
  int ended;
  int err;
  long http_status;
  char type[96];
  char msg[640];
  char cont[128];      /* the last ContinuationSequenceNumber */
  char data[4096];     /* "r0 r1 ..." in order */
  int child_shards;    /* ChildShards entries in the last event */
  int cancel_after;    /* cancel from on_event after this many records */
  int pause_after;     /* pause after this many events */
};

static void on_event(const struct kcld_fanout_event *ev, void *arg)
{
  struct sub *t = arg;
  json_t *j, *rec;
  size_t i;

  t->events++;
  if (ev->kind == KCLD_FANOUT_INITIAL) {
    t->initial++;
    assert_int_equal(t->events, 1);
    return;
  }
  j = json_loadb(ev->payload, ev->payload_len, 0, NULL);
  assert_non_null(j);
  json_array_foreach(json_object_get(j, "Records"), i, rec) {
    unsigned char buf[64];
    const char *d = json_string_value(json_object_get(rec, "Data"));
    int n = EVP_DecodeBlock(buf, (const unsigned char *)d, (int)strlen(d));
    while (n > 0 && buf[n - 1] == 0)
      n--;
    size_t l = strlen(t->data);
    snprintf(t->data + l, sizeof(t->data) - l, "%s%.*s", l ? " " : "", n,
             (const char *)buf);
    t->records++;
  }
  const char *c = json_string_value(json_object_get(j,
                                    "ContinuationSequenceNumber"));
  if (c)
    snprintf(t->cont, sizeof(t->cont), "%s", c);
  t->child_shards = (int)json_array_size(json_object_get(j, "ChildShards"));
  json_decref(j);
  if (t->cancel_after && t->records >= t->cancel_after && t->s) {
    kcld_fanout_sub_cancel(t->s);
    assert_int_equal(t->ended, 1);
  }
}

static void on_end(const struct kcld_svc_status *st, void *arg)
{
  struct sub *t = arg;
  t->ended++;
  t->err = st->err;
  t->http_status = st->http_status;
  snprintf(t->type, sizeof(t->type), "%s", st->type ? st->type : "");
  snprintf(t->msg, sizeof(t->msg), "%s", st->message ? st->message : "");
  t->s = NULL;
}

static void subscribe(struct env *e, struct sub *t, const char *consumer,
                      const char *after)
{
  struct kcld_fanout_subscribe_req req = {
    .consumer_arn = consumer, .shard_id = "shardId-000000000000",
    .position = after ? KCLD_FANOUT_AFTER_SEQUENCE_NUMBER
                      : KCLD_FANOUT_TRIM_HORIZON,
    .sequence_number = after};
  assert_int_equal(kcld_fanout_subscribe(e->f, &req, on_event, on_end, t,
                                         &t->s), 0);
  assert_non_null(t->s);
}

/* A stream with one ACTIVE consumer; its ARN in consumer. */
static void consumer_up(struct env *e, char *name, size_t ncap,
                        char *consumer, size_t ccap)
{
  char arn[256];
  struct cons c = {0};
  new_stream(1, name, ncap, arn, sizeof(arn));
  assert_int_equal(kcld_fanout_ensure(e->f, arn, "app", 10000, on_consumer,
                                      &c), 0);
  assert_true(kcld_test_run_until(&e->aws.loop, &c.done, 10000));
  assert_int_equal(c.err, 0);
  snprintf(consumer, ccap, "%s", c.arn);
}

/* Records in order with continuations; the service ends the subscription
 * (end_after_ms, 5 minutes on AWS); resubscribing after the continuation
 * gets exactly the records put since. */
static void test_subscribe_records_continuation(void **state)
{
  struct env e;
  struct sub t = {0}, u = {0};
  char name[32], consumer[512], last[128];

  (void)state;
  script("{\"register_delay_ms\": 50, \"end_after_ms\": 1500, "
         "\"heartbeat_ms\": 200, \"limit_ms\": 200}");
  env_up(&e);
  consumer_up(&e, name, sizeof(name), consumer, sizeof(consumer));
  put(name, 0, 5, NULL, 0);
  subscribe(&e, &t, consumer, NULL);
  for (int i = 0; i < 500 && t.records < 5; i++)
    kcld_test_run_until(&e.aws.loop, &t.ended, 10);
  assert_int_equal(t.initial, 1);
  assert_string_equal(t.data, "r0 r1 r2 r3 r4");
  put(name, 5, 3, last, sizeof(last));
  assert_true(kcld_test_run_until(&e.aws.loop, &t.ended, 10000));
  assert_int_equal(t.err, 0);
  assert_string_equal(t.data, "r0 r1 r2 r3 r4 r5 r6 r7");
  assert_string_equal(t.cont, last);
  assert_true(t.events >= 3); /* initial, records, heartbeats */
  /* Resume after the continuation: only what came since. */
  put(name, 8, 2, last, sizeof(last));
  subscribe(&e, &u, consumer, t.cont);
  for (int i = 0; i < 500 && u.records < 2; i++)
    kcld_test_run_until(&e.aws.loop, &u.ended, 10);
  assert_string_equal(u.data, "r8 r9");
  assert_string_equal(u.cont, last);
  kcld_fanout_sub_cancel(u.s);
  assert_int_equal(u.ended, 1);
  assert_int_equal(u.err, KCLD_ECANCELED);
  env_down(&e);
}

static void expect_end(struct env *e, struct sub *t, int err,
                       const char *type, const char *in_msg)
{
  assert_true(kcld_test_run_until(&e->aws.loop, &t->ended, 10000));
  assert_int_equal(t->ended, 1);
  if (t->err != err || (type && strcmp(t->type, type) != 0) ||
      (in_msg && !strstr(t->msg, in_msg)))
    fail_msg("ended with %d %s \"%s\", wanted %d %s \"%s\"", t->err, t->type,
             t->msg, err, type ? type : "", in_msg ? in_msg : "");
}

/* Refusals before the stream (HTTP 400) and faults inside it. */
static void test_subscribe_faults(void **state)
{
  struct env e;
  char name[32], consumer[512];

  (void)state;
  script("{\"register_delay_ms\": 50, \"limit_ms\": 0}");
  env_up(&e);
  consumer_up(&e, name, sizeof(name), consumer, sizeof(consumer));
  put(name, 0, 3, NULL, 0);

  struct sub a = {0}, b = {0}, c = {0}, d = {0}, x = {0}, y = {0}, z = {0};
  /* A subscription still open elsewhere: ResourceInUse. */
  subscribe(&e, &a, consumer, NULL);
  for (int i = 0; i < 500 && a.records < 3; i++)
    kcld_test_run_until(&e.aws.loop, &a.ended, 10);
  subscribe(&e, &b, consumer, NULL);
  expect_end(&e, &b, KCLD_EAWS, "ResourceInUseException", "HTTP 400");
  assert_int_equal(kcld_kinesis_fault(&(struct kcld_svc_status){
                     .err = b.err, .type = b.type}), KCLD_KINESIS_IN_USE);
  assert_int_equal(b.events, 0);
  kcld_fanout_sub_cancel(a.s);
  /* Calls too close together: LimitExceeded. */
  script("{\"limit_ms\": 60000}");
  subscribe(&e, &c, consumer, NULL);
  expect_end(&e, &c, KCLD_EAWS, "LimitExceededException", NULL);
  assert_int_equal(kcld_kinesis_fault(&(struct kcld_svc_status){
                     .err = c.err, .type = c.type}), KCLD_KINESIS_LIMIT);
  script("{\"limit_ms\": 0}");
  /* No such consumer. */
  subscribe(&e, &d, "arn:aws:kinesis:us-east-1:000000000000:stream/x/"
                    "consumer/none:1", NULL);
  expect_end(&e, &d, KCLD_ENOTFOUND, "ResourceNotFoundException", NULL);
  /* An exception event after the first event. */
  script("{\"faults\": [{\"after_events\": 1, \"what\": \"exception\", "
         "\"type\": \"KMSAccessDeniedException\"}]}");
  subscribe(&e, &x, consumer, NULL);
  expect_end(&e, &x, KCLD_EAWS, "KMSAccessDeniedException",
             "exception event");
  assert_int_equal(x.records, 3);
  assert_int_equal(kcld_kinesis_fault(&(struct kcld_svc_status){
                     .err = x.err, .type = x.type}), KCLD_KINESIS_KMS);
  /* A frame with a bad CRC ends the subscription with a clear error. */
  script("{\"faults\": [{\"after_events\": 1, \"what\": \"bad_crc\"}]}");
  subscribe(&e, &y, consumer, NULL);
  expect_end(&e, &y, KCLD_EPARSE, NULL, "message CRC");
  assert_int_equal(y.records, 3);
  /* Reset mid-frame: a transport error. */
  script("{\"faults\": [{\"after_events\": 1, \"what\": \"reset\"}]}");
  subscribe(&e, &z, consumer, NULL);
  expect_end(&e, &z, KCLD_ETRANSPORT, NULL, NULL);
  assert_int_equal(z.records, 3);
  env_down(&e);
}

/* Cancel from inside an event, and closing the client with subscriptions
 * open (one paused). */
static void test_cancel_and_close(void **state)
{
  struct env e;
  struct sub a = {0}, b = {0}, c = {0};
  char name[32], consumer[512], name2[32], consumer2[512];

  (void)state;
  script("{\"register_delay_ms\": 50, \"limit_ms\": 0}");
  env_up(&e);
  consumer_up(&e, name, sizeof(name), consumer, sizeof(consumer));
  put(name, 0, 4, NULL, 0);
  a.cancel_after = 1;
  subscribe(&e, &a, consumer, NULL);
  expect_end(&e, &a, KCLD_ECANCELED, NULL, NULL);
  assert_int_equal(a.records, 4); /* one event held all four */
  int events = a.events;
  kcld_test_run_until(&e.aws.loop, &b.ended, 200);
  assert_int_equal(a.events, events);
  /* Paused and running subscriptions end once each on close. */
  consumer_up(&e, name2, sizeof(name2), consumer2, sizeof(consumer2));
  subscribe(&e, &b, consumer, NULL);
  subscribe(&e, &c, consumer2, NULL);
  for (int i = 0; i < 500 && (b.events == 0 || c.events == 0); i++)
    kcld_test_run_until(&e.aws.loop, &b.ended, 10);
  kcld_fanout_sub_pause(b.s);
  kcld_fanout_close(e.f);
  e.f = NULL;
  assert_int_equal(b.ended, 1);
  assert_int_equal(b.err, KCLD_ECANCELED);
  assert_int_equal(c.ended, 1);
  assert_int_equal(c.err, KCLD_ECANCELED);
  kcld_test_awsenv_down(&e.aws);
}

/* A split closes the shard: read to its end, the last event names the
 * children and has no continuation, and the subscription ends. */
static void test_shard_end_child_shards(void **state)
{
  struct env e;
  struct sub t = {0};
  char name[32], consumer[512];

  (void)state;
  script("{\"register_delay_ms\": 50, \"limit_ms\": 0}");
  env_up(&e);
  consumer_up(&e, name, sizeof(name), consumer, sizeof(consumer));
  put(name, 0, 2, NULL, 0);
  json_decref(call("SplitShard", json_pack("{s:s,s:s,s:s}", "StreamName",
                                           name, "ShardToSplit",
                                           "shardId-000000000000",
                                           "NewStartingHashKey",
                                           "170141183460469231731687303715884105728")));
  kcld_test_sleep_ms(200);
  subscribe(&e, &t, consumer, NULL);
  expect_end(&e, &t, 0, NULL, NULL);
  assert_string_equal(t.data, "r0 r1");
  assert_int_equal(t.child_shards, 2);
  env_down(&e);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(test_consumer_calls, reset),
    cmocka_unit_test_setup(test_ensure_race, reset),
    cmocka_unit_test_setup(test_subscribe_records_continuation, reset),
    cmocka_unit_test_setup(test_subscribe_faults, reset),
    cmocka_unit_test_setup(test_cancel_and_close, reset),
    cmocka_unit_test_setup(test_shard_end_child_shards, reset),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
