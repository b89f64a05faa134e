/* test_lambda.c — the lambda handler's wire protocol: the Kinesis
 * event built from records (every field Lambda passes, base64 data, the
 * arrival time in epoch seconds with milliseconds, one line), and every
 * form of answer: success forms, partial failures mapped to the lowest
 * batch index, each malformed batchItemFailures form (whole batch failed),
 * error answers, and garbage lines.  With a tumbling window: the event's
 * window members as the Lambda documentation's KinesisTimeWindowEvent, and
 * the answer's state required (a JSON object). */
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

#include "consume/getrecords.h"
#include "err.h"
#include "handlers/lambda.h"

/* ======== Event building ======== */

static struct kcld_record_batch *parse_body(const char *body)
{
  struct kcld_record_batch *b = NULL;
  char err[256];
  if (kcld_getrecords_parse(body, strlen(body), "shardId-000000000007", &b,
                            err, sizeof(err)) != 0)
    fail_msg("parse: %s", err);
  return b;
}

static void test_event_fields(void **state)
{
  (void)state;
  /* "hello", bytes 00 ff 10, "" ; the last record has no arrival time. */
  struct kcld_record_batch *rb = parse_body(
    "{\"Records\":["
    "{\"Data\":\"aGVsbG8=\",\"PartitionKey\":\"user-1\","
    "\"SequenceNumber\":"
    "\"49590338271490256608559692538361571095921575989136588898\","
    "\"ApproximateArrivalTimestamp\":1700000000.123},"
    "{\"Data\":\"AP8Q\",\"PartitionKey\":\"caf\\u00e9\","
    "\"SequenceNumber\":"
    "\"49590338271490256608559692538361571095921575989136588899\","
    "\"ApproximateArrivalTimestamp\":1545084650.987},"
    "{\"Data\":\"\",\"PartitionKey\":\"k\",\"SequenceNumber\":\"12\"}],"
    "\"NextShardIterator\":\"it\",\"MillisBehindLatest\":5}");
  const struct kcld_record *ptrs[3] = {&rb->records[0], &rb->records[1],
                                       &rb->records[2]};
  struct kcld_handler_batch b = {.shard_id = "shardId-000000000007",
                                 .records = ptrs, .count = 3,
                                 .millis_behind_latest = 5, .attempt = 1};
  size_t len = 0;
  char *line = kcld_lambda_event_build(
    &b, "eu-west-1", "arn:aws:kinesis:eu-west-1:123456789012:stream/s", &len);
  json_error_t jerr;
  json_t *ev, *recs;

  assert_non_null(line);
  assert_int_equal(len, strlen(line));
  assert_int_equal(line[len - 1], '\n');
  assert_ptr_equal(strchr(line, '\n'), line + len - 1); /* one line */
  /* Seconds with exactly the milliseconds, not a binary expansion. */
  assert_non_null(
    strstr(line, "\"approximateArrivalTimestamp\":1700000000.123"));
  assert_non_null(
    strstr(line, "\"approximateArrivalTimestamp\":1545084650.987"));

  ev = json_loads(line, 0, &jerr);
  assert_non_null(ev);
  assert_int_equal(json_object_size(ev), 1);
  recs = json_object_get(ev, "Records");
  assert_int_equal(json_array_size(recs), 3);
  for (size_t i = 0; i < 3; i++) {
    json_t *r = json_array_get(recs, i), *k = json_object_get(r, "kinesis");
    char id[256];
    assert_string_equal(json_string_value(json_object_get(r, "eventSource")),
                        "aws:kinesis");
    assert_string_equal(json_string_value(json_object_get(r, "eventVersion")),
                        "1.0");
    assert_string_equal(json_string_value(json_object_get(r, "eventName")),
                        "aws:kinesis:record");
    assert_string_equal(json_string_value(json_object_get(r, "awsRegion")),
                        "eu-west-1");
    assert_string_equal(
      json_string_value(json_object_get(r, "eventSourceARN")),
      "arn:aws:kinesis:eu-west-1:123456789012:stream/s");
    assert_true(json_is_string(json_object_get(r, "invokeIdentityArn")));
    snprintf(id, sizeof(id), "shardId-000000000007:%s",
             rb->records[i].sequence_number);
    assert_string_equal(json_string_value(json_object_get(r, "eventID")), id);
    assert_string_equal(
      json_string_value(json_object_get(k, "kinesisSchemaVersion")), "1.0");
    assert_string_equal(
      json_string_value(json_object_get(k, "sequenceNumber")),
      rb->records[i].sequence_number);
  }
  json_t *k0 = json_object_get(json_array_get(recs, 0), "kinesis");
  json_t *k1 = json_object_get(json_array_get(recs, 1), "kinesis");
  json_t *k2 = json_object_get(json_array_get(recs, 2), "kinesis");
  assert_string_equal(json_string_value(json_object_get(k0, "data")),
                      "aGVsbG8=");
  assert_string_equal(json_string_value(json_object_get(k1, "data")), "AP8Q");
  assert_string_equal(json_string_value(json_object_get(k2, "data")), "");
  assert_string_equal(json_string_value(json_object_get(k0, "partitionKey")),
                      "user-1");
  assert_string_equal(json_string_value(json_object_get(k1, "partitionKey")),
                      "caf\xc3\xa9");
  assert_true(json_real_value(json_object_get(
                k0, "approximateArrivalTimestamp")) == 1700000000.123);
  assert_null(json_object_get(k2, "approximateArrivalTimestamp"));
  json_decref(ev);
  free(line);
  kcld_record_batch_release(rb);
}

/* ======== Answers ======== */

static struct kcld_record R[5];
static const struct kcld_record *P[5];
static struct kcld_handler_batch B;

static int setup_batch(void **state)
{
  /* 100, 101 (two KPL sub-records sharing 101), 102, 103. */
  static const char *seqs[5] = {"100", "101", "101", "102", "103"};
  (void)state;
  memset(R, 0, sizeof(R));
  for (size_t i = 0; i < 5; i++) {
    R[i].data = (const uint8_t *)"x";
    R[i].data_len = 1;
    R[i].partition_key = "k";
    R[i].partition_key_len = 1;
    R[i].sequence_number = seqs[i];
    R[i].sub_sequence_number = i == 2 ? 1 : 0;
    R[i].arrival_ms = KCLD_RECORD_NO_ARRIVAL;
    P[i] = &R[i];
  }
  B.shard_id = "shardId-0";
  B.records = P;
  B.count = 5;
  B.millis_behind_latest = -1;
  B.attempt = 1;
  return 0;
}

static int parse(const char *line, struct kcld_lambda_answer *a)
{
  return kcld_lambda_answer_parse(line, strlen(line), &B, a);
}

static void expect_ok(const char *line)
{
  struct kcld_lambda_answer a;
  if (parse(line, &a) != 0)
    fail_msg("%s: not accepted", line);
  if (a.status != KCLD_HANDLER_OK)
    fail_msg("%s: status %d, want OK", line, a.status);
  assert_string_equal(a.error_type, "");
}

static void test_success_forms(void **state)
{
  (void)state;
  expect_ok("null");
  expect_ok("{}");
  expect_ok(" {} \r");
  expect_ok("{\"batchItemFailures\":[]}");
  expect_ok("{\"batchItemFailures\":null}");
  expect_ok("{\"statusCode\":200,\"body\":\"done\"}");
}

static void expect_partial(const char *line, size_t first)
{
  struct kcld_lambda_answer a;
  if (parse(line, &a) != 0)
    fail_msg("%s: not accepted", line);
  if (a.status != KCLD_HANDLER_PARTIAL || a.first_failed != first)
    fail_msg("%s: status %d first %zu, want PARTIAL %zu", line, a.status,
             a.first_failed, first);
  assert_string_equal(a.error_type, "BatchItemFailures");
}

static void test_partial(void **state)
{
  (void)state;
  expect_partial("{\"batchItemFailures\":[{\"itemIdentifier\":\"102\"}]}", 3);
  expect_partial("{\"batchItemFailures\":[{\"itemIdentifier\":\"100\"}]}", 0);
  expect_partial("{\"batchItemFailures\":[{\"itemIdentifier\":\"103\"},"
                 "{\"itemIdentifier\":\"102\"},"
                 "{\"itemIdentifier\":\"103\"}]}", 3);
  /* Shared sequence number: the first sub-record (index 1). */
  expect_partial("{\"batchItemFailures\":[{\"itemIdentifier\":\"103\"},"
                 "{\"itemIdentifier\":\"101\"}]}", 1);
  /* Extra members are ignored, as Lambda does. */
  expect_partial("{\"batchItemFailures\":[{\"itemIdentifier\":\"103\","
                 "\"why\":\"x\"}],\"other\":1}", 4);
  struct kcld_lambda_answer a;
  assert_int_equal(parse("{\"batchItemFailures\":[{\"itemIdentifier\":"
                         "\"103\"},{\"itemIdentifier\":\"102\"}]}", &a), 0);
  assert_string_equal(a.error_message,
                      "2 item(s) reported failed; retrying from 102");
}

static void expect_bad_items(const char *line)
{
  struct kcld_lambda_answer a;
  if (parse(line, &a) != 0)
    fail_msg("%s: not accepted", line);
  if (a.status != KCLD_HANDLER_FAILED)
    fail_msg("%s: status %d, want FAILED", line, a.status);
  assert_string_equal(a.error_type, "InvalidBatchItemFailures");
  assert_true(a.error_message[0] != '\0');
}

static void test_malformed_items(void **state)
{
  (void)state;
  expect_bad_items("{\"batchItemFailures\":\"102\"}");
  expect_bad_items("{\"batchItemFailures\":{\"itemIdentifier\":\"102\"}}");
  expect_bad_items("{\"batchItemFailures\":7}");
  expect_bad_items("{\"batchItemFailures\":true}");
  expect_bad_items("{\"batchItemFailures\":[\"102\"]}");
  expect_bad_items("{\"batchItemFailures\":[null]}");
  expect_bad_items("{\"batchItemFailures\":[{}]}");
  expect_bad_items("{\"batchItemFailures\":[{\"itemIdentifier\":null}]}");
  expect_bad_items("{\"batchItemFailures\":[{\"itemIdentifier\":\"\"}]}");
  expect_bad_items("{\"batchItemFailures\":[{\"itemIdentifier\":102}]}");
  expect_bad_items("{\"batchItemFailures\":[{\"itemidentifier\":\"102\"}]}");
  expect_bad_items("{\"batchItemFailures\":[{\"itemIdentifier\":\"999\"}]}");
  /* One bad item spoils the list even after good ones. */
  expect_bad_items("{\"batchItemFailures\":[{\"itemIdentifier\":\"102\"},"
                   "{\"itemIdentifier\":\"\"}]}");
  struct kcld_lambda_answer a;
  assert_int_equal(parse("{\"batchItemFailures\":[{\"itemIdentifier\":"
                         "\"999\"}]}", &a), 0);
  assert_string_equal(a.error_message,
                      "itemIdentifier 999 is not a sequence number of the "
                      "batch");
}

static void test_errors(void **state)
{
  struct kcld_lambda_answer a;
  char big[2048];
  (void)state;

  assert_int_equal(parse("{\"errorMessage\":\"boom\",\"errorType\":"
                         "\"ValueError\",\"stackTrace\":[]}", &a), 0);
  assert_int_equal(a.status, KCLD_HANDLER_FAILED);
  assert_string_equal(a.error_type, "ValueError");
  assert_string_equal(a.error_message, "boom");

  assert_int_equal(parse("{\"errorMessage\":\"only message\"}", &a), 0);
  assert_int_equal(a.status, KCLD_HANDLER_FAILED);
  assert_string_equal(a.error_type, "HandlerError");
  assert_string_equal(a.error_message, "only message");

  assert_int_equal(parse("{\"errorType\":\"Timeout\"}", &a), 0);
  assert_int_equal(a.status, KCLD_HANDLER_FAILED);
  assert_string_equal(a.error_type, "Timeout");
  assert_string_equal(a.error_message, "");

  assert_int_equal(parse("{\"errorMessage\":{\"code\":3}}", &a), 0);
  assert_int_equal(a.status, KCLD_HANDLER_FAILED);
  assert_string_equal(a.error_message, "{\"code\":3}");

  /* An error wins over a failure list. */
  assert_int_equal(parse("{\"errorMessage\":\"x\",\"batchItemFailures\":"
                         "[{\"itemIdentifier\":\"102\"}]}", &a), 0);
  assert_int_equal(a.status, KCLD_HANDLER_FAILED);

  /* Long messages are cut, not overflowed. */
  int n = snprintf(big, sizeof(big), "{\"errorMessage\":\"");
  memset(big + n, 'm', 1500);
  snprintf(big + n + 1500, sizeof(big) - (size_t)n - 1500, "\"}");
  assert_int_equal(parse(big, &a), 0);
  assert_int_equal(strlen(a.error_message), KCLD_LAMBDA_MESSAGE_MAX - 1);
}

static void test_garbage(void **state)
{
  static const char *lines[] = {
    "", "hello", "processing 3 records", "[]", "[{}]", "\"ok\"", "42",
    "true", "false", "{", "{\"a\":", "{} {}", "nul", "{'a':1}",
  };
  struct kcld_lambda_answer a;
  (void)state;
  for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
    if (parse(lines[i], &a) != KCLD_EPARSE)
      fail_msg("\"%s\" was accepted as an answer", lines[i]);
  /* Length-bounded: bytes past len are not read. */
  assert_int_equal(kcld_lambda_answer_parse("{}garbage", 2, &B, &a), 0);
  assert_int_equal(a.status, KCLD_HANDLER_OK);
}

/* ======== Tumbling windows ======== */

/* The window members of "Implementing stateful Kinesis Data Streams
 * processing in Lambda" (KinesisTimeWindowEvent),
 * https://docs.aws.amazon.com/lambda/latest/dg/services-kinesis-windows.html:
 * window {start, end} as RFC 3339 seconds, state, shardId, eventSourceARN,
 * isFinalInvokeForWindow, isWindowTerminatedEarly. */
static void test_window_event(void **state)
{
  struct kcld_handler_window w = {
    .start_ms = 1607497440000, .end_ms = 1607497560000,
    .state = "{\"1\":282,\"2\":715}", .state_len = 17, .final = 0,
    .terminated_early = 1};
  struct kcld_handler_batch b = B;
  size_t len;
  char *line;
  json_t *ev;
  (void)state;

  b.window = &w;
  line = kcld_lambda_event_build(&b, "us-east-1",
                                 "arn:aws:kinesis:us-east-1:1:stream/s", &len);
  assert_non_null(line);
  ev = json_loads(line, 0, NULL);
  assert_non_null(ev);
  assert_int_equal(json_object_size(ev), 7);
  assert_int_equal(json_array_size(json_object_get(ev, "Records")), 5);
  assert_string_equal(json_string_value(json_object_get(
                        json_object_get(ev, "window"), "start")),
                      "2020-12-09T07:04:00Z");
  assert_string_equal(json_string_value(json_object_get(
                        json_object_get(ev, "window"), "end")),
                      "2020-12-09T07:06:00Z");
  assert_int_equal(json_integer_value(json_object_get(
                     json_object_get(ev, "state"), "2")), 715);
  assert_string_equal(json_string_value(json_object_get(ev, "shardId")),
                      "shardId-0");
  assert_string_equal(json_string_value(json_object_get(ev,
                                                        "eventSourceARN")),
                      "arn:aws:kinesis:us-east-1:1:stream/s");
  assert_true(json_is_false(json_object_get(ev, "isFinalInvokeForWindow")));
  assert_true(json_is_true(json_object_get(ev, "isWindowTerminatedEarly")));
  json_decref(ev);
  free(line);

  /* The final call: no records. */
  w.final = 1;
  b.count = 0;
  line = kcld_lambda_event_build(&b, "us-east-1", "", &len);
  assert_non_null(line);
  ev = json_loads(line, 0, NULL);
  assert_non_null(ev);
  assert_true(json_is_array(json_object_get(ev, "Records")));
  assert_int_equal(json_array_size(json_object_get(ev, "Records")), 0);
  assert_true(json_is_true(json_object_get(ev, "isFinalInvokeForWindow")));
  json_decref(ev);
  free(line);
}

static void expect_window_answer(const char *line, int status,
                                 const char *type, const char *state)
{
  struct kcld_handler_window w = {.start_ms = 0, .end_ms = 60000,
                                  .state = "{}", .state_len = 2};
  struct kcld_handler_batch b = B;
  struct kcld_lambda_answer a;

  b.window = &w;
  if (kcld_lambda_answer_parse(line, strlen(line), &b, &a) != 0)
    fail_msg("%s: not accepted", line);
  if ((int)a.status != status || strcmp(a.error_type, type) != 0 ||
      (state ? !a.state || strcmp(a.state, state) != 0 : a.state != NULL))
    fail_msg("%s: status %d type %s state %s", line, (int)a.status,
             a.error_type, a.state ? a.state : "(none)");
  kcld_lambda_answer_clean_up(&a);
}

/* TimeWindowEventResponse: a state is required ("If the response does not
 * contain a state property, Lambda considers this a failed invocation"),
 * and goes with a partial failure too; an error answer needs none. */
static void test_window_answer(void **state)
{
  (void)state;
  expect_window_answer("{\"state\":{\"1\":282,\"2\":715},"
                       "\"batchItemFailures\":[]}",
                       KCLD_HANDLER_OK, "", "{\"1\":282,\"2\":715}");
  expect_window_answer("{\"state\":{}}", KCLD_HANDLER_OK, "", "{}");
  expect_window_answer("{\"state\":{\"n\":1},\"batchItemFailures\":"
                       "[{\"itemIdentifier\":\"102\"}]}",
                       KCLD_HANDLER_PARTIAL, "BatchItemFailures",
                       "{\"n\":1}");
  expect_window_answer("{}", KCLD_HANDLER_FAILED, "MissingState", NULL);
  expect_window_answer("null", KCLD_HANDLER_FAILED, "MissingState", NULL);
  expect_window_answer("{\"batchItemFailures\":[]}", KCLD_HANDLER_FAILED,
                       "MissingState", NULL);
  expect_window_answer("{\"state\":[1]}", KCLD_HANDLER_FAILED,
                       "InvalidState", NULL);
  expect_window_answer("{\"state\":\"x\"}", KCLD_HANDLER_FAILED,
                       "InvalidState", NULL);
  expect_window_answer("{\"errorMessage\":\"boom\"}", KCLD_HANDLER_FAILED,
                       "HandlerError", NULL);
  /* Without a window a state is ignored. */
  expect_ok("{\"state\":{\"n\":1}}");
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_event_fields),
    cmocka_unit_test_setup(test_success_forms, setup_batch),
    cmocka_unit_test_setup(test_partial, setup_batch),
    cmocka_unit_test_setup(test_malformed_items, setup_batch),
    cmocka_unit_test_setup(test_errors, setup_batch),
    cmocka_unit_test_setup(test_garbage, setup_batch),
    cmocka_unit_test_setup(test_window_event, setup_batch),
    cmocka_unit_test_setup(test_window_answer, setup_batch),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
