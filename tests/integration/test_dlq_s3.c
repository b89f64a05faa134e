/* test_dlq_s3.c — the S3 stores of the failure destination
 * (process/dlq_s3.h) against s3rver and fauxqs: a given-up range kept as
 * one object keyed like Lambda's S3 destination, every record whole; a
 * PutObject that fails is not kept and is stored again until it is; with
 * SQS and S3 together, a small message goes to the queue as it is and a
 * large one to S3, the queue getting its location. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "aws/s3.h"
#include "aws/sqs.h"
#include "awsenv.h"
#include "base/base64.h"
#include "err.h"
#include "fault.h"
#include "harness.h"
#include "process/dlq.h"
#include "process/dlq_s3.h"
#include "process/dlq_sqs.h"
#include "recs.h"
#include "s3sync.h"

#define WAIT_MS 30000
#define BUCKET "dlq-bucket"
#define APP "orders-app"
#define SHARD "shardId-000000000007"

static struct kcld_emu s_emu;

struct env {
  struct kcld_test_awsenv c;
  struct kcld_s3 *s3;
  struct kcld_sqs *sqs;
  char queue[512];
};

/* ======== Calls awaited ======== */

struct seen {
  int done, err;
  json_t *list;      /* SQS bodies */
  char url[512];
};

static void on_queue(const struct kcld_sqs_queue *r, void *arg)
{
  struct seen *s = arg;
  s->err = r->st.err;
  if (r->queue_url)
    snprintf(s->url, sizeof(s->url), "%s", r->queue_url);
  s->done = 1;
}

static void on_receive(const struct kcld_sqs_receive_result *r, void *arg)
{
  struct seen *s = arg;
  s->err = r->st.err;
  s->list = json_array();
  for (size_t i = 0; i < r->count; i++)
    json_array_append_new(s->list, json_string(r->messages[i].body));
  s->done = 1;
}

static void wait_for(struct env *e, struct seen *s)
{
  assert_true(kcld_test_run_until(&e->c.loop, &s->done, WAIT_MS));
  assert_int_equal(s->err, 0);
}

static void env_up(struct env *e, const char *queue_name)
{
  const char *urls[KCLD_AWS_NSERVICES] = {NULL};
  struct seen s = {0};

  memset(e, 0, sizeof(*e));
  urls[KCLD_AWS_S3] = kcld_emu_url(&s_emu, "s3");
  urls[KCLD_AWS_SQS] = kcld_emu_url(&s_emu, "sqs");
  kcld_test_awsenv_up_at(&e->c, urls, 1);
  assert_int_equal(kcld_s3_new(e->c.aws, &e->c.loop, &e->s3), 0);
  assert_int_equal(kcld_sqs_new(e->c.aws, &e->c.loop, &e->sqs), 0);
  kcld_test_s3_create_bucket(e->s3, &e->c.loop, BUCKET); /* or exists */
  if (queue_name) {
    assert_int_equal(kcld_sqs_create_queue(e->sqs, queue_name, NULL,
                                           on_queue, &s), 0);
    wait_for(e, &s);
    snprintf(e->queue, sizeof(e->queue), "%s", s.url);
  }
}

static void env_down(struct env *e)
{
  kcld_sqs_close(e->sqs);
  kcld_s3_close(e->s3);
  kcld_test_awsenv_down(&e->c);
}

static json_t *list_keys(struct env *e, const char *prefix)
{
  return kcld_test_s3_keys(e->s3, &e->c.loop, BUCKET, prefix);
}

static json_t *get_json(struct env *e, const char *key)
{
  char *body = kcld_test_s3_get(e->s3, &e->c.loop, BUCKET, key, NULL);
  json_t *j = json_loads(body, 0, NULL);
  assert_non_null(j);
  free(body);
  return j;
}

static json_t *receive(struct env *e)
{
  struct seen s = {0};
  struct kcld_sqs_receive_req rq = {e->queue, 10, 0, 30};
  assert_int_equal(kcld_sqs_receive_message(e->sqs, &rq, on_receive, &s),
                   0);
  wait_for(e, &s);
  return s.list;
}

/* The front of s3rver: the next `times` PUTs fail with 503 SlowDown. */
static void arm_put_fault(int times)
{
  char body[128];
  json_t *res;
  snprintf(body, sizeof(body),
           "{\"status\": 503, \"code\": \"SlowDown\", \"times\": %d, "
           "\"method\": \"PUT\"}", times);
  res = kcld_fault_post(kcld_emu_url(&s_emu, "s3"), "/__s3/fault", body);
  assert_non_null(res);
  json_decref(res);
}

/* ======== The destination over a store ======== */

struct sent {
  int done;
  size_t messages;
};

static void on_sent(size_t messages, void *arg)
{
  struct sent *s = arg;
  s->messages = messages;
  s->done = 1;
}

static struct kcld_dlq *dlq_over(struct env *e, struct kcld_dlq_store *st)
{
  const struct kcld_dlq_opts o = {
    .loop = &e->c.loop, .store = st, .include_records = 1,
    .function_arn = "arn:aws:lambda:us-east-1:000000000000:function:kcld-" APP,
    .stream_arn = "arn:aws:kinesis:us-east-1:000000000000:stream/orders",
    .backoff_base_ms = 10, .backoff_max_ms = 40};
  struct kcld_dlq *q;
  assert_int_equal(kcld_dlq_new(&o, &q), 0);
  return q;
}

/* Sends records[0..n) of `r` as one failure and waits until kept. */
static size_t send_failure(struct env *e, struct kcld_dlq *q,
                           struct kcld_test_recs *r, size_t n)
{
  struct kcld_dlq_failure f = {0};
  struct sent s = {0};
  f.shard_id = SHARD;
  f.records = r->p;
  f.count = n;
  f.condition = KCLD_POLICY_RETRIES_EXHAUSTED;
  f.invoke_count = 1;
  f.error_type = "Poison";
  f.error_message = "the handler failed it";
  assert_int_equal(kcld_dlq_send(q, &f, on_sent, &s, NULL), 0);
  assert_true(kcld_test_run_until(&e->c.loop, &s.done, WAIT_MS));
  return s.messages;
}

/* records[i] of an on-failure record is r->r[i], data and all. */
static void check_records(const json_t *body,
                          const struct kcld_test_recs *r, size_t n)
{
  const json_t *recs = json_object_get(body, "records");
  assert_int_equal(json_array_size(recs), n);
  for (size_t i = 0; i < n; i++) {
    const json_t *x = json_array_get(recs, i);
    const char *b64 = json_string_value(json_object_get(x, "data"));
    size_t len = 0, bad = 0;
    uint8_t *raw;
    assert_non_null(b64);
    assert_null(json_object_get(x, "truncated"));
    assert_string_equal(json_string_value(json_object_get(x,
                                                          "sequenceNumber")),
                        r->seq[i]);
    raw = malloc(kcld_base64_decoded_max(strlen(b64)) + 1);
    assert_int_equal(kcld_base64_decode(b64, strlen(b64), raw, &len, &bad),
                     0);
    assert_int_equal(len, r->r[i].data_len);
    assert_memory_equal(raw, r->data[i], len);
    free(raw);
  }
}

/* ======== Tests ======== */

/* The key: prefix, aws/kinesis/<application>/<shard>/, the date of the
 * message's timestamp, then its time and requestId. */
static void test_key(void **state)
{
  static const char body[] =
    "{\"requestContext\":{\"requestId\":\"c9b8fa9f-5a7f-4a2b-9d3e-"
    "0123456789ab\",\"functionArn\":\"x\"},\"version\":\"1.0\","
    "\"timestamp\":\"2026-12-05T23:40:01.123Z\",\"records\":[]}";
  char key[1100];
  (void)state;
  assert_int_equal(kcld_dlq_s3_key(key, sizeof(key), "kcld/", APP, SHARD,
                                   body, strlen(body)), 0);
  assert_string_equal(key, "kcld/aws/kinesis/" APP "/" SHARD
                           "/2026/12/05/2026-12-05T23.40.01-"
                           "c9b8fa9f-5a7f-4a2b-9d3e-0123456789ab");
  assert_int_equal(kcld_dlq_s3_key(key, sizeof(key), "", APP, SHARD, body,
                                   strlen(body)), 0);
  assert_int_equal(strncmp(key, "aws/kinesis/", 12), 0);
  /* Not an on-failure record: no key. */
  assert_int_equal(kcld_dlq_s3_key(key, sizeof(key), "", APP, SHARD,
                                   "{\"a\":1}", 7), KCLD_EINVAL);
  assert_int_equal(kcld_dlq_s3_key(key, 40, "kcld/", APP, SHARD, body,
                                   strlen(body)), KCLD_EINVAL);
}

/* A bad location is refused with its reason. */
static void test_bad_location(void **state)
{
  struct kcld_dlq_store *st = NULL;
  const char *why = NULL;
  static int dummy;
  (void)state;
  assert_int_equal(kcld_dlq_s3_new((struct kcld_s3 *)&dummy, "s3://A_B/x",
                                   APP, &st, &why), KCLD_EINVAL);
  assert_null(st);
  assert_non_null(why);
  assert_int_equal(kcld_dlq_s3_new((struct kcld_s3 *)&dummy,
                                   "https://b/x", APP, &st, &why),
                   KCLD_EINVAL);
}

/* S3 alone: a range of three records, one of 2 MiB (larger than any SQS
 * message), is one object with every record whole; while PutObject fails
 * the range is not kept, and it is stored again until it is. */
static void test_s3_store(void **state)
{
  static const size_t sizes[] = {100, 2 << 20, 7};
  struct env e;
  struct kcld_test_recs r;
  struct kcld_dlq_store *st;
  struct kcld_dlq *q;
  json_t *keys, *body;
  const char *why = NULL;
  (void)state;

  env_up(&e, NULL);
  kcld_test_recs_make(&r, 3, sizes, 0);
  assert_int_equal(kcld_dlq_s3_new(e.s3, "s3://" BUCKET "/one", APP, &st,
                                   &why), 0);
  assert_string_equal(st->where, "s3://" BUCKET "/one/");
  q = dlq_over(&e, st);
  arm_put_fault(3);            /* one attempt a call: three calls fail */
  assert_int_equal(send_failure(&e, q, &r, 3), 1);
  keys = list_keys(&e, "one/aws/kinesis/" APP "/" SHARD "/");
  assert_int_equal(json_array_size(keys), 1);
  body = get_json(&e, json_string_value(json_array_get(keys, 0)));
  check_records(body, &r, 3);
  assert_string_equal(json_string_value(json_object_get(
                        json_object_get(body, "KinesisBatchInfo"),
                        "shardId")), SHARD);
  assert_string_equal(json_string_value(json_object_get(body, "errorType")),
                      "Poison");
  json_decref(body);
  json_decref(keys);
  kcld_dlq_close(q);
  kcld_test_recs_free(&r);
  env_down(&e);
}

/* SQS with S3: a small range goes to the queue whole; a range too large
 * for a message goes to S3 whole and the queue gets its location. */
static void test_offload(void **state)
{
  static const size_t small[] = {10, 20};
  static const size_t large[] = {300 << 10};
  struct env e;
  struct kcld_test_recs r1, r2;
  struct kcld_dlq_store *qs, *ss, *st;
  struct kcld_dlq *q;
  json_t *msgs, *keys, *body, *obj;
  (void)state;

  env_up(&e, "dlq-offload");
  kcld_test_recs_make(&r1, 2, small, 0);
  kcld_test_recs_make(&r2, 1, large, 0);
  assert_int_equal(kcld_dlq_sqs_new(e.sqs, e.queue, &qs), 0);
  assert_int_equal(kcld_dlq_s3_new(e.s3, "s3://" BUCKET "/both/", APP, &ss,
                                   NULL), 0);
  assert_int_equal(kcld_dlq_s3_offload_new(qs, ss, &st), 0);
  assert_string_equal(st->ops->name, "sqs+s3");
  q = dlq_over(&e, st);

  assert_int_equal(send_failure(&e, q, &r1, 2), 1);
  keys = list_keys(&e, "both/");
  assert_int_equal(json_array_size(keys), 0); /* nothing in S3 */
  json_decref(keys);
  msgs = receive(&e);
  assert_int_equal(json_array_size(msgs), 1);
  body = json_loads(json_string_value(json_array_get(msgs, 0)), 0, NULL);
  check_records(body, &r1, 2);
  assert_null(json_object_get(body, "s3Object"));
  json_decref(body);
  json_decref(msgs);

  arm_put_fault(1);            /* S3 fails once: stored again */
  assert_int_equal(send_failure(&e, q, &r2, 1), 1);
  keys = list_keys(&e, "both/aws/kinesis/" APP "/" SHARD "/");
  assert_int_equal(json_array_size(keys), 1);
  obj = get_json(&e, json_string_value(json_array_get(keys, 0)));
  check_records(obj, &r2, 1);
  msgs = receive(&e);
  assert_int_equal(json_array_size(msgs), 1);
  body = json_loads(json_string_value(json_array_get(msgs, 0)), 0, NULL);
  kcld_test_s3_check_pointer(body, BUCKET,
                             json_string_value(json_array_get(keys, 0)),
                             300 << 10);
  /* The rest of the on-failure record is the object's. */
  assert_true(json_equal(json_object_get(body, "KinesisBatchInfo"),
                         json_object_get(obj, "KinesisBatchInfo")));
  assert_true(json_equal(json_object_get(body, "requestContext"),
                         json_object_get(obj, "requestContext")));
  /* All of it: without "records" and "s3Object" they are equal. */
  json_object_del(body, "s3Object");
  json_object_del(obj, "records");
  assert_true(json_equal(body, obj));
  json_decref(body);
  json_decref(obj);
  json_decref(msgs);
  json_decref(keys);
  kcld_dlq_close(q);
  kcld_test_recs_free(&r1);
  kcld_test_recs_free(&r2);
  env_down(&e);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_key),
    cmocka_unit_test(test_bad_location),
    cmocka_unit_test(test_s3_store),
    cmocka_unit_test(test_offload),
  };
  if (kcld_emu_start(&s_emu, "s3 sqs") != 0) {
    fprintf(stderr, "emulators did not start\n");
    return 1;
  }
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  kcld_emu_stop(&s_emu);
  return rc;
}
