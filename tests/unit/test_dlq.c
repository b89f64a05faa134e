/* test_dlq.c — dead-letter message bodies without SQS: the Lambda fields,
 * records with base64 data, a record too large sent as metadata only
 * ("truncated"), records split over several messages within 256 KiB each,
 * include_records off (Lambda's body exactly), and bad arguments. */
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

#define MAXR 128

struct recs {
  struct kcld_record r[MAXR];
  const struct kcld_record *p[MAXR];
  char seq[MAXR][48];
  char key[MAXR][24];
  uint8_t *data[MAXR];
};

static void make(struct recs *s, size_t n, size_t size)
{
  memset(s, 0, sizeof(*s));
  for (size_t i = 0; i < n; i++) {
    snprintf(s->seq[i], sizeof(s->seq[i]), "4960%026zu", i + 1);
    snprintf(s->key[i], sizeof(s->key[i]), "k%zu", i);
    s->data[i] = malloc(size);
    memset(s->data[i], 'a' + (int)(i % 26), size);
    s->r[i].data = s->data[i];
    s->r[i].data_len = size;
    s->r[i].partition_key = s->key[i];
    s->r[i].partition_key_len = strlen(s->key[i]);
    s->r[i].sequence_number = s->seq[i];
    s->r[i].sub_sequence_number = i % 2;
    s->r[i].arrival_ms = 1795344059800 + (int64_t)i;
    s->p[i] = &s->r[i];
  }
}

static void unmake(struct recs *s)
{
  for (size_t i = 0; i < MAXR; i++)
    free(s->data[i]);
}

static struct kcld_dlq *new_dlq(int include)
{
  struct kcld_dlq_opts o = {0};
  struct kcld_dlq *q;
  static int dummy;
  o.loop = (uv_loop_t *)&dummy;   /* not used by kcld_dlq_build */
  o.sqs = (struct kcld_sqs *)&dummy;
  o.queue_url = "http://127.0.0.1:1/000000000000/dlq";
  o.function_arn = "kcld:app:w1";
  o.stream_arn = "arn:aws:kinesis:us-east-1:000000000000:stream/s";
  o.include_records = include;
  assert_int_equal(kcld_dlq_new(&o, &q), 0);
  return q;
}

static void free_bodies(char **b, size_t n)
{
  for (size_t i = 0; i < n; i++)
    free(b[i]);
  free(b);
}

static void test_body_fields(void **state)
{
  struct recs *s = malloc(sizeof(*s));
  struct kcld_dlq *q = new_dlq(1);
  struct kcld_dlq_failure f = {0};
  char **bodies;
  size_t n;
  json_t *b, *kb, *r;
  (void)state;

  make(s, 3, 5);
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
  unmake(s);
  free(s);
}

static void test_truncated_and_split(void **state)
{
  struct recs *s = malloc(sizeof(*s));
  struct kcld_dlq *q = new_dlq(1);
  struct kcld_dlq_failure f = {0};
  char **bodies;
  size_t n, total = 0;
  json_t *b, *r;
  (void)state;

  /* One record of 300 KiB: metadata only. */
  make(s, 1, 300 * 1024);
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
  unmake(s);

  /* Ten records of 60 KiB (80 KiB in base64): three per message. */
  make(s, 10, 60 * 1024);
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
  unmake(s);
  free(s);
}

/* Keys that JSON escapes six-fold beat the size estimate: such a message
 * falls back to metadata only instead of being refused by SQS for ever. */
static void test_escaped_keys_fall_back(void **state)
{
  struct recs *s = malloc(sizeof(*s));
  struct kcld_dlq *q = new_dlq(1);
  struct kcld_dlq_failure f = {0};
  char key[257], **bodies;
  size_t n, total = 0, truncated = 0;
  json_t *b, *r;
  size_t i;
  (void)state;

  make(s, 100, 1800);
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
  unmake(s);
  free(s);
}

static void test_without_records(void **state)
{
  struct recs *s = malloc(sizeof(*s));
  struct kcld_dlq *q = new_dlq(0);
  struct kcld_dlq_failure f = {0};
  char **bodies;
  size_t n;
  json_t *b;
  (void)state;

  make(s, 40, 60 * 1024);
  f.shard_id = "s";
  f.records = s->p;
  f.count = 40;
  assert_int_equal(kcld_dlq_build(q, &f, 0, &bodies, &n), 0);
  assert_int_equal(n, 1); /* metadata only: one message for the range */
  b = json_loads(bodies[0], 0, NULL);
  assert_null(json_object_get(b, "records"));
  assert_int_equal(json_integer_value(json_object_get(json_object_get(
    b, "KinesisBatchInfo"), "batchSize")), 40);
  json_decref(b);
  free_bodies(bodies, n);
  f.count = 0;
  assert_int_equal(kcld_dlq_build(q, &f, 0, &bodies, &n), KCLD_EINVAL);
  kcld_dlq_close(q);
  unmake(s);
  free(s);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_body_fields),
    cmocka_unit_test(test_truncated_and_split),
    cmocka_unit_test(test_escaped_keys_fall_back),
    cmocka_unit_test(test_without_records),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
