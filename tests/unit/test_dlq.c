/* test_dlq.c — dead-letter message bodies without SQS: the Lambda fields,
 * every field of the AWS documentation's example on-failure record (names,
 * JSON types, formats), the ARN-shaped functionArn, records with base64
 * data, a record too large sent as metadata only ("truncated"), records
 * split over several messages within 256 KiB each for SQS and kept whole
 * in one line for the directory store, include_records off (Lambda's body
 * exactly), and bad arguments. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "aws/sqs.h"
#include "err.h"
#include "process/dlq.h"
#include "process/dlq_dir.h"
#include "process/dlq_sqs.h"
#include "recs.h"

/* A dlq on the SQS store (never sending: kcld_dlq_build only). */
static struct kcld_dlq *new_dlq(int include)
{
  struct kcld_dlq_opts o = {0};
  struct kcld_dlq *q;
  static int dummy;
  o.loop = (uv_loop_t *)&dummy;   /* not used by kcld_dlq_build */
  assert_int_equal(kcld_dlq_sqs_new((struct kcld_sqs *)&dummy,
                                    "http://127.0.0.1:1/000000000000/dlq",
                                    &o.store), 0);
  o.function_arn = "arn:aws:lambda:us-east-1:000000000000:function:kcld-app";
  o.stream_arn = "arn:aws:kinesis:us-east-1:000000000000:stream/s";
  o.include_records = include;
  o.backoff_base_ms = 10;
  o.backoff_max_ms = 100;
  assert_int_equal(kcld_dlq_new(&o, &q), 0);
  return q;
}

static void free_bodies(char **b, size_t n)
{
  for (size_t i = 0; i < n; i++)
    free(b[i]);
  free(b);
}

/* The one message kcld_dlq_build makes of f, parsed. */
static json_t *build_one(struct kcld_dlq *q, const struct kcld_dlq_failure *f)
{
  char **bodies;
  size_t n;
  json_t *b;
  assert_int_equal(kcld_dlq_build(q, f, 0, &bodies, &n), 0);
  assert_int_equal(n, 1);
  b = json_loads(bodies[0], 0, NULL);
  assert_non_null(b);
  free_bodies(bodies, n);
  return b;
}

static void test_body_fields(void **state)
{
  struct kcld_test_recs *s = malloc(sizeof(*s));
  struct kcld_dlq *q = new_dlq(1);
  struct kcld_dlq_failure f = {0};
  char **bodies;
  size_t n;
  json_t *b, *kb, *r;
  (void)state;

  kcld_test_recs_make(s, 3, NULL, 5);
  f.shard_id = "shardId-000000000001";
  f.records = s->p;
  f.count = 3;
  f.condition = KCLD_POLICY_AGE_EXCEEDED;
  f.invoke_count = 4;
  f.error_type = "E";
  f.error_message = "bad";
  assert_int_equal(kcld_dlq_build(q, &f, 1795344060000, &bodies, &n), 0);
  assert_int_equal(n, 1);
  b = json_loads(bodies[0], 0, NULL);
  assert_non_null(b);
  assert_string_equal(json_string_value(json_object_get(json_object_get(
    b, "requestContext"), "condition")), "RecordAgeExceeded");
  assert_int_equal(json_integer_value(json_object_get(json_object_get(
    b, "requestContext"), "approximateInvokeCount")), 4);
  assert_string_equal(json_string_value(json_object_get(b, "timestamp")),
                      "2026-11-22T10:41:00.000Z");
  kb = json_object_get(b, "KinesisBatchInfo");
  assert_string_equal(json_string_value(json_object_get(
    kb, "startSequenceNumber")), s->seq[0]);
  assert_string_equal(json_string_value(json_object_get(
    kb, "endSequenceNumber")), s->seq[2]);
  assert_string_equal(json_string_value(json_object_get(
    kb, "approximateArrivalOfFirstRecord")), "2026-11-22T10:40:59.800Z");
  assert_string_equal(json_string_value(json_object_get(
    kb, "approximateArrivalOfLastRecord")), "2026-11-22T10:40:59.802Z");
  assert_int_equal(json_integer_value(json_object_get(kb, "batchSize")), 3);
  r = json_array_get(json_object_get(b, "records"), 1);
  assert_string_equal(json_string_value(json_object_get(r, "data")),
                      "YmJiYmI="); /* "bbbbb" */
  assert_int_equal(json_integer_value(json_object_get(r,
                                                      "subSequenceNumber")),
                   1);
  assert_string_equal(json_string_value(json_object_get(b, "errorMessage")),
                      "bad");
  json_decref(b);
  free_bodies(bodies, n);
  kcld_dlq_close(q);
  kcld_test_recs_free(s);
  free(s);
}

static void test_truncated_and_split(void **state)
{
  struct kcld_test_recs *s = malloc(sizeof(*s));
  struct kcld_dlq *q = new_dlq(1);
  struct kcld_dlq_failure f = {0};
  char **bodies;
  size_t n, total = 0;
  json_t *b, *r;
  (void)state;

  /* One record of 300 KiB: metadata only. */
  kcld_test_recs_make(s, 1, NULL, 300 * 1024);
  f.shard_id = "s";
  f.records = s->p;
  f.count = 1;
  assert_int_equal(kcld_dlq_build(q, &f, 0, &bodies, &n), 0);
  assert_int_equal(n, 1);
  assert_true(strlen(bodies[0]) < KCLD_SQS_MESSAGE_MAX);
  b = json_loads(bodies[0], 0, NULL);
  r = json_array_get(json_object_get(b, "records"), 0);
  assert_true(json_is_true(json_object_get(r, "truncated")));
  assert_null(json_object_get(r, "data"));
  assert_int_equal(json_integer_value(json_object_get(r, "dataLength")),
                   300 * 1024);
  json_decref(b);
  free_bodies(bodies, n);
  kcld_test_recs_free(s);

  /* Ten records of 60 KiB (80 KiB in base64): three per message. */
  kcld_test_recs_make(s, 10, NULL, 60 * 1024);
  f.count = 10;
  assert_int_equal(kcld_dlq_build(q, &f, 0, &bodies, &n), 0);
  assert_int_equal(n, 4);
  for (size_t i = 0; i < n; i++) {
    assert_true(strlen(bodies[i]) < KCLD_SQS_MESSAGE_MAX - 4096);
    b = json_loads(bodies[i], 0, NULL);
    size_t c = json_array_size(json_object_get(b, "records"));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(
      b, "KinesisBatchInfo"), "batchSize")), c);
    assert_string_equal(json_string_value(json_object_get(json_object_get(
      b, "KinesisBatchInfo"), "startSequenceNumber")), s->seq[total]);
    total += c;
    json_decref(b);
  }
  assert_int_equal(total, 10);
  free_bodies(bodies, n);
  kcld_dlq_close(q);
  kcld_test_recs_free(s);
  free(s);
}

/* Keys that JSON escapes six-fold beat the size estimate: such a message
 * falls back to metadata only instead of being refused by SQS for ever. */
static void test_escaped_keys_fall_back(void **state)
{
  struct kcld_test_recs *s = malloc(sizeof(*s));
  struct kcld_dlq *q = new_dlq(1);
  struct kcld_dlq_failure f = {0};
  char key[257], **bodies;
  size_t n, total = 0, truncated = 0;
  json_t *b, *r;
  size_t i;
  (void)state;

  kcld_test_recs_make(s, 100, NULL, 1800);
  memset(key, 1, 256);
  key[256] = '\0';
  for (i = 0; i < 100; i++) {
    s->r[i].partition_key = key;
    s->r[i].partition_key_len = 256;
  }
  f.shard_id = "s";
  f.records = s->p;
  f.count = 100;
  assert_int_equal(kcld_dlq_build(q, &f, 0, &bodies, &n), 0);
  for (size_t m = 0; m < n; m++) {
    assert_true(strlen(bodies[m]) < KCLD_SQS_MESSAGE_MAX - 4096);
    b = json_loads(bodies[m], 0, NULL);
    assert_non_null(b);
    json_array_foreach(json_object_get(b, "records"), i, r) {
      total++;
      if (json_is_true(json_object_get(r, "truncated"))) {
        truncated++;
        assert_null(json_object_get(r, "data"));
      }
    }
    json_decref(b);
  }
  assert_int_equal(total, 100);
  assert_true(truncated > 0);
  free_bodies(bodies, n);
  kcld_dlq_close(q);
  kcld_test_recs_free(s);
  free(s);
}

static void test_without_records(void **state)
{
  struct kcld_test_recs *s = malloc(sizeof(*s));
  struct kcld_dlq *q = new_dlq(0);
  struct kcld_dlq_failure f = {0};
  char **bodies;
  size_t n;
  json_t *b;
  (void)state;

  kcld_test_recs_make(s, 40, NULL, 60 * 1024);
  f.shard_id = "s";
  f.records = s->p;
  f.count = 40;
  b = build_one(q, &f); /* metadata only: one message for the range */
  assert_null(json_object_get(b, "records"));
  assert_int_equal(json_integer_value(json_object_get(json_object_get(
    b, "KinesisBatchInfo"), "batchSize")), 40);
  json_decref(b);
  f.count = 0;
  assert_int_equal(kcld_dlq_build(q, &f, 0, &bodies, &n), KCLD_EINVAL);
  kcld_dlq_close(q);
  kcld_test_recs_free(s);
  free(s);
}

/* A reload turns include_records on and off for the next messages; a
 * backoff kcld_dlq_new would refuse is refused and changes nothing. */
static void test_configure(void **state)
{
  struct kcld_test_recs *s = malloc(sizeof(*s));
  struct kcld_dlq *q = new_dlq(1);
  struct kcld_dlq_failure f = {0};
  struct kcld_dlq_opts o = {0};
  json_t *b;
  (void)state;

  kcld_test_recs_make(s, 2, NULL, 16);
  f.shard_id = "s";
  f.records = s->p;
  f.count = 2;
  o.include_records = 0;
  o.backoff_base_ms = 0;
  o.backoff_max_ms = 100;
  assert_int_equal(kcld_dlq_configure(q, &o), KCLD_EINVAL);
  b = build_one(q, &f);
  assert_int_equal(json_array_size(json_object_get(b, "records")), 2);
  json_decref(b);
  o.backoff_base_ms = 20;
  assert_int_equal(kcld_dlq_configure(q, &o), 0);
  b = build_one(q, &f);
  assert_null(json_object_get(b, "records"));
  assert_non_null(json_object_get(b, "KinesisBatchInfo"));
  json_decref(b);
  o.include_records = 1; /* and on again */
  assert_int_equal(kcld_dlq_configure(q, &o), 0);
  b = build_one(q, &f);
  assert_int_equal(json_array_size(json_object_get(b, "records")), 2);
  json_decref(b);
  kcld_dlq_close(q);
  kcld_test_recs_free(s);
  free(s);
}

/* ======== Lambda's shape ======== */

/* The example invocation record of a Kinesis event source's on-failure
 * destination, as the AWS Lambda Developer Guide prints it ("Retain
 * discarded batch records for a Kinesis Data Streams event source",
 * with-kinesis.md of awsdocs/aws-lambda-developer-guide). */
static const char s_aws_example[] =
  "{\"requestContext\": {"
  "  \"requestId\": \"c9b8fa9f-5a7f-xmpl-af9c-0c604cde93a5\","
  "  \"functionArn\": \"arn:aws:lambda:us-east-2:123456789012:function:"
  "myfunction\","
  "  \"condition\": \"RetryAttemptsExhausted\","
  "  \"approximateInvokeCount\": 1},"
  " \"responseContext\": {"
  "  \"statusCode\": 200, \"executedVersion\": \"$LATEST\","
  "  \"functionError\": \"Unhandled\"},"
  " \"version\": \"1.0\","
  " \"timestamp\": \"2019-11-14T00:38:06.021Z\","
  " \"KinesisBatchInfo\": {"
  "  \"shardId\": \"shardId-000000000001\","
  "  \"startSequenceNumber\": "
  "\"49601189658422359378836298521827638475320189012309704722\","
  "  \"endSequenceNumber\": "
  "\"49601189658422359378836298522902373528957594348623495186\","
  "  \"approximateArrivalOfFirstRecord\": \"2019-11-14T00:38:04.835Z\","
  "  \"approximateArrivalOfLastRecord\": \"2019-11-14T00:38:05.580Z\","
  "  \"batchSize\": 500,"
  "  \"streamArn\": \"arn:aws:kinesis:us-east-2:123456789012:stream/"
  "mystream\"}}";

/* Every member of `want` is in `got` with the same JSON type, objects
 * compared member by member. */
static void same_shape(json_t *want, json_t *got, const char *where)
{
  const char *k;
  json_t *w;
  json_object_foreach(want, k, w) {
    json_t *g = json_object_get(got, k);
    if (!g)
      fail_msg("%s.%s missing", where, k);
    if (json_typeof(g) != json_typeof(w) &&
        !(json_is_integer(w) && json_is_integer(g)))
      fail_msg("%s.%s: JSON type %d, the example has %d", where, k,
               (int)json_typeof(g), (int)json_typeof(w));
    if (json_is_object(w))
      same_shape(w, g, k);
  }
}

static int iso_ms(const char *s)
{
  unsigned y, mo, d, h, mi, se, ms;
  char z;
  return s && strlen(s) == 24 &&
         sscanf(s, "%4u-%2u-%2uT%2u:%2u:%2u.%3u%c", &y, &mo, &d, &h, &mi, &se,
                &ms, &z) == 8 && z == 'Z';
}

static void test_lambda_shape(void **state)
{
  struct kcld_test_recs *s = malloc(sizeof(*s));
  struct kcld_dlq *q = new_dlq(0);
  struct kcld_dlq_failure f = {0};
  json_t *want = json_loads(s_aws_example, 0, NULL), *got, *rc, *resp, *kb;
  char **bodies;
  unsigned a, b, c, d, e;
  size_t n;
  (void)state;

  assert_non_null(want);
  kcld_test_recs_make(s, 2, NULL, 10);
  f.shard_id = "shardId-000000000001";
  f.records = s->p;
  f.count = 2;
  f.condition = KCLD_POLICY_RETRIES_EXHAUSTED;
  f.invoke_count = 1;
  f.error_type = "ValidationError";
  f.error_message = "amount must be positive";
  assert_int_equal(kcld_dlq_build(q, &f, 1795344060123, &bodies, &n), 0);
  assert_int_equal(n, 1);
  got = json_loads(bodies[0], 0, NULL);
  assert_non_null(got);
  same_shape(want, got, "body");
  /* Values Lambda writes the same way. */
  rc = json_object_get(got, "requestContext");
  resp = json_object_get(got, "responseContext");
  kb = json_object_get(got, "KinesisBatchInfo");
  assert_int_equal(sscanf(json_string_value(json_object_get(rc, "requestId")),
                          "%8x-%4x-%4x-%4x-%12x", &a, &b, &c, &d, &e), 5);
  assert_int_equal(strlen(json_string_value(json_object_get(rc,
                                                            "requestId"))),
                   36);
  assert_string_equal(json_string_value(json_object_get(rc, "functionArn")),
                      "arn:aws:lambda:us-east-1:000000000000:function:"
                      "kcld-app");
  assert_string_equal(json_string_value(json_object_get(rc, "condition")),
                      "RetryAttemptsExhausted");
  assert_int_equal(json_integer_value(json_object_get(resp, "statusCode")),
                   200);
  assert_string_equal(json_string_value(json_object_get(resp,
                                                        "executedVersion")),
                      "$LATEST");
  assert_string_equal(json_string_value(json_object_get(resp,
                                                        "functionError")),
                      "Unhandled");
  assert_string_equal(json_string_value(json_object_get(got, "version")),
                      "1.0");
  assert_true(iso_ms(json_string_value(json_object_get(got, "timestamp"))));
  assert_string_equal(json_string_value(json_object_get(got, "timestamp")),
                      "2026-11-22T10:41:00.123Z");
  assert_true(iso_ms(json_string_value(json_object_get(
    kb, "approximateArrivalOfFirstRecord"))));
  assert_true(iso_ms(json_string_value(json_object_get(
    kb, "approximateArrivalOfLastRecord"))));
  assert_int_equal(json_integer_value(json_object_get(kb, "batchSize")), 2);
  assert_string_equal(json_string_value(json_object_get(kb, "streamArn")),
                      "arn:aws:kinesis:us-east-1:000000000000:stream/s");
  /* kcld's own error stays in its own fields. */
  assert_string_equal(json_string_value(json_object_get(got, "errorType")),
                      "ValidationError");
  assert_string_equal(json_string_value(json_object_get(got,
                                                        "errorMessage")),
                      "amount must be positive");
  /* include_records off: nothing but Lambda's members and those two. */
  assert_int_equal(json_object_size(got), json_object_size(want) + 2);
  json_decref(got);
  json_decref(want);
  free_bodies(bodies, n);
  kcld_dlq_close(q);
  kcld_test_recs_free(s);
  free(s);
}

/* The directory store takes a whole range in one message, data always in:
 * no size cut. */
static void test_dir_store_keeps_ranges_whole(void **state)
{
  struct kcld_test_recs *s = malloc(sizeof(*s));
  struct kcld_dlq_opts o = {0};
  struct kcld_dlq_dir_opts d = {0};
  struct kcld_dlq_failure f = {0};
  struct kcld_dlq *q;
  uv_loop_t loop;
  char dir[] = "/tmp/kcld-dlqdir-XXXXXX", err[256], cmd[64], **bodies;
  size_t n;
  json_t *b, *r;
  size_t i;
  (void)state;

  assert_int_equal(uv_loop_init(&loop), 0);
  assert_non_null(mkdtemp(dir));
  d.loop = &loop;
  d.dir = dir;
  d.application = "app";
  assert_int_equal(kcld_dlq_dir_new(&d, &o.store, err, sizeof(err)), 0);
  o.loop = &loop;
  o.function_arn = "arn:aws:lambda:us-east-1::function:kcld-app";
  o.include_records = 1;
  o.backoff_base_ms = 10;
  o.backoff_max_ms = 100;
  assert_int_equal(kcld_dlq_new(&o, &q), 0);
  assert_string_equal(kcld_dlq_where(q), dir);
  /* 3 MiB: SQS would cut it 20 ways */
  kcld_test_recs_make(s, 10, NULL, 300 * 1024);
  f.shard_id = "s";
  f.records = s->p;
  f.count = 10;
  assert_int_equal(kcld_dlq_build(q, &f, 0, &bodies, &n), 0);
  assert_int_equal(n, 1);
  b = json_loads(bodies[0], 0, NULL);
  assert_int_equal(json_array_size(json_object_get(b, "records")), 10);
  json_array_foreach(json_object_get(b, "records"), i, r) {
    assert_null(json_object_get(r, "truncated"));
    assert_int_equal(strlen(json_string_value(json_object_get(r, "data"))),
                     4 * ((300 * 1024 + 2) / 3));
  }
  json_decref(b);
  free_bodies(bodies, n);
  kcld_dlq_close(q);
  assert_int_equal(uv_loop_close(&loop), 0);
  kcld_test_recs_free(s);
  free(s);
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);

  /* A directory that cannot be made: a clear error, nothing created. */
  d.dir = "/proc/kcld-cannot-be-here/dead-letter";
  assert_int_equal(kcld_dlq_dir_new(&d, &o.store, err, sizeof(err)),
                   KCLD_EIO);
  assert_non_null(strstr(err, "/proc/kcld-cannot-be-here"));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_lambda_shape),
    cmocka_unit_test(test_dir_store_keeps_ranges_whole),
    cmocka_unit_test(test_body_fields),
    cmocka_unit_test(test_truncated_and_split),
    cmocka_unit_test(test_escaped_keys_fall_back),
    cmocka_unit_test(test_without_records),
    cmocka_unit_test(test_configure),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
