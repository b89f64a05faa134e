/* test_multilang.c — the MultiLang protocol messages kcld writes
 * (parsed back and checked field by field), the child lines it parses
 * (status, checkpoint requests, garbage).  The line splitter is
 * handlers/child.c's (tests/unit/test_child.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "handlers/multilang.h"

/* Parses a message kcld wrote: exactly one line, a JSON object. */
static json_t *line_json(char *line)
{
  json_error_t e;
  size_t n;
  assert_non_null(line);
  n = strlen(line);
  assert_true(n > 1);
  assert_int_equal(line[n - 1], '\n');
  assert_null(memchr(line, '\n', n - 1));
  json_t *o = json_loadb(line, n - 1, 0, &e);
  if (!o)
    fail_msg("not JSON: %s (%s)", line, e.text);
  assert_true(json_is_object(o));
  free(line);
  return o;
}

static const char *str(json_t *o, const char *k)
{
  return json_string_value(json_object_get(o, k));
}

static void test_msg_initialize(void **state)
{
  (void)state;
  static const char seq[] =
    "49590338271490256608559692538361571095921575989136588898";
  json_t *o = line_json(kcld_multilang_msg_initialize(
    "shardId-000000000001", seq, 3));
  assert_string_equal(str(o, "action"), "initialize");
  assert_string_equal(str(o, "shardId"), "shardId-000000000001");
  assert_string_equal(str(o, "sequenceNumber"), seq);
  assert_int_equal(json_integer_value(json_object_get(o, "subSequenceNumber")),
                   3);
  assert_int_equal(json_object_size(o), 4);
  json_decref(o);

  o = line_json(kcld_multilang_msg_initialize("shardId-1", NULL, 0));
  assert_true(json_is_null(json_object_get(o, "sequenceNumber")));
  assert_true(json_is_null(json_object_get(o, "subSequenceNumber")));
  json_decref(o);
}

static void test_msg_records(void **state)
{
  (void)state;
  static const uint8_t bin[] = {0x00, 0xff, 0x10, '\n', '"'};
  struct kcld_record r[2];
  const struct kcld_record *ptrs[2] = {&r[0], &r[1]};
  struct kcld_handler_batch b = {"shardId-7", ptrs, 2, 1234, 1, NULL};
  memset(r, 0, sizeof(r));
  r[0].data = bin;
  r[0].data_len = sizeof(bin);
  r[0].partition_key = "pk \"1\"";
  r[0].partition_key_len = 6;
  r[0].sequence_number = "100";
  r[0].sub_sequence_number = 0;
  r[0].arrival_ms = 1700000000123LL;
  r[1].data = (const uint8_t *)"";
  r[1].data_len = 0;
  r[1].partition_key = "k";
  r[1].partition_key_len = 1;
  r[1].sequence_number = "101";
  r[1].sub_sequence_number = 7;
  r[1].arrival_ms = KCLD_RECORD_NO_ARRIVAL;

  json_t *o = line_json(kcld_multilang_msg_records(&b));
  assert_string_equal(str(o, "action"), "processRecords");
  assert_int_equal(json_integer_value(json_object_get(o, "millisBehindLatest")),
                   1234);
  json_t *recs = json_object_get(o, "records");
  assert_int_equal(json_array_size(recs), 2);
  json_t *a = json_array_get(recs, 0), *c = json_array_get(recs, 1);
  assert_string_equal(str(a, "action"), "record");
  assert_string_equal(str(a, "data"), "AP8QCiI=");
  assert_string_equal(str(a, "partitionKey"), "pk \"1\"");
  assert_string_equal(str(a, "sequenceNumber"), "100");
  assert_int_equal(json_integer_value(json_object_get(a, "subSequenceNumber")),
                   0);
  assert_int_equal(json_integer_value(
                     json_object_get(a, "approximateArrivalTimestamp")),
                   1700000000123LL);
  assert_string_equal(str(c, "data"), "");
  assert_int_equal(json_integer_value(json_object_get(c, "subSequenceNumber")),
                   7);
  assert_true(json_is_null(json_object_get(c, "approximateArrivalTimestamp")));
  json_decref(o);

  b.millis_behind_latest = -1;
  o = line_json(kcld_multilang_msg_records(&b));
  assert_true(json_is_null(json_object_get(o, "millisBehindLatest")));
  json_decref(o);
}

static void test_msg_checkpoint_and_actions(void **state)
{
  (void)state;
  json_t *o = line_json(kcld_multilang_msg_checkpoint("42", 1, NULL));
  assert_string_equal(str(o, "action"), "checkpoint");
  assert_string_equal(str(o, "sequenceNumber"), "42");
  assert_int_equal(json_integer_value(json_object_get(o, "subSequenceNumber")),
                   1);
  assert_true(json_is_null(json_object_get(o, "error")));
  json_decref(o);

  o = line_json(kcld_multilang_msg_checkpoint(NULL, 0,
                                              "ShutdownException"));
  assert_true(json_is_null(json_object_get(o, "sequenceNumber")));
  assert_string_equal(str(o, "error"), "ShutdownException");
  json_decref(o);

  static const char *const acts[] = {"leaseLost", "shardEnded",
                                     "shutdownRequested"};
  for (size_t i = 0; i < 3; i++) {
    o = line_json(kcld_multilang_msg_action(acts[i]));
    assert_string_equal(str(o, "action"), acts[i]);
    assert_int_equal(json_object_size(o), 1);
    json_decref(o);
  }
}

static void parse(const char *line, struct kcld_multilang_msg *m)
{
  kcld_multilang_parse(line, strlen(line), m);
}

static void test_parse_status(void **state)
{
  (void)state;
  struct kcld_multilang_msg m;
  parse("{\"action\":\"status\",\"responseFor\":\"processRecords\"}", &m);
  assert_int_equal(m.kind, KCLD_MULTILANG_STATUS);
  assert_string_equal(m.response_for, "processRecords");
  parse("  {\"responseFor\": \"initialize\", \"action\": \"status\"}  ", &m);
  assert_int_equal(m.kind, KCLD_MULTILANG_STATUS);
  assert_string_equal(m.response_for, "initialize");
  parse("{\"action\":\"status\"}", &m);
  assert_int_equal(m.kind, KCLD_MULTILANG_BAD);
  parse("{\"action\":\"status\",\"responseFor\":7}", &m);
  assert_int_equal(m.kind, KCLD_MULTILANG_BAD);
}

static void test_parse_checkpoint(void **state)
{
  (void)state;
  struct kcld_multilang_msg m;
  parse("{\"action\":\"checkpoint\",\"sequenceNumber\":null,"
        "\"subSequenceNumber\":null}", &m);
  assert_int_equal(m.kind, KCLD_MULTILANG_CHECKPOINT);
  assert_int_equal(m.has_sequence, 0);
  parse("{\"action\":\"checkpoint\"}", &m);
  assert_int_equal(m.kind, KCLD_MULTILANG_CHECKPOINT);
  assert_int_equal(m.has_sequence, 0);
  parse("{\"action\":\"checkpoint\",\"sequenceNumber\":\"123\","
        "\"subSequenceNumber\":4}", &m);
  assert_int_equal(m.kind, KCLD_MULTILANG_CHECKPOINT);
  assert_int_equal(m.has_sequence, 1);
  assert_string_equal(m.sequence, "123");
  assert_int_equal(m.sub, 4);
  parse("{\"action\":\"checkpoint\",\"checkpoint\":\"77\"}", &m);
  assert_int_equal(m.kind, KCLD_MULTILANG_CHECKPOINT);
  assert_string_equal(m.sequence, "77");
  assert_int_equal(m.sub, 0);
  /* Not a sequence number: parsed, refused later by the handler. */
  parse("{\"action\":\"checkpoint\",\"sequenceNumber\":\"abc\"}", &m);
  assert_int_equal(m.kind, KCLD_MULTILANG_CHECKPOINT);
  assert_string_equal(m.sequence, "abc");
  /* Bad field types. */
  parse("{\"action\":\"checkpoint\",\"sequenceNumber\":5}", &m);
  assert_int_equal(m.kind, KCLD_MULTILANG_BAD);
  assert_string_equal(m.response_for, "checkpoint");
  parse("{\"action\":\"checkpoint\",\"sequenceNumber\":\"1\","
        "\"subSequenceNumber\":-1}", &m);
  assert_int_equal(m.kind, KCLD_MULTILANG_BAD);
  parse("{\"action\":\"checkpoint\",\"sequenceNumber\":\"1\","
        "\"subSequenceNumber\":\"2\"}", &m);
  assert_int_equal(m.kind, KCLD_MULTILANG_BAD);
  char big[400];
  snprintf(big, sizeof(big),
           "{\"action\":\"checkpoint\",\"sequenceNumber\":\"%0200d\"}", 1);
  parse(big, &m);
  assert_int_equal(m.kind, KCLD_MULTILANG_BAD);
}

static void test_parse_garbage(void **state)
{
  (void)state;
  struct kcld_multilang_msg m;
  static const char *const not_json[] = {
    "", "hello", "{", "{\"action\":\"status\"", "[1,2]", "\"status\"", "42",
    "null", "{\"action\":\"status\",\"responseFor\":\"x\"} trailing"};
  for (size_t i = 0; i < sizeof(not_json) / sizeof(*not_json); i++) {
    parse(not_json[i], &m);
    if (m.kind != KCLD_MULTILANG_NOT_JSON)
      fail_msg("'%s' parsed as kind %d", not_json[i], m.kind);
  }
  static const char *const unknown[] = {
    "{}", "{\"no\":\"action\"}", "{\"action\":\"dance\"}",
    "{\"action\":5}", "{\"action\":null}"};
  for (size_t i = 0; i < sizeof(unknown) / sizeof(*unknown); i++) {
    parse(unknown[i], &m);
    if (m.kind != KCLD_MULTILANG_UNKNOWN)
      fail_msg("'%s' parsed as kind %d", unknown[i], m.kind);
  }
  /* Embedded NUL: the length counts, not the terminator. */
  kcld_multilang_parse("{\"action\":\"status\"}\0x", 21, &m);
  assert_int_equal(m.kind, KCLD_MULTILANG_NOT_JSON);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_msg_initialize),
    cmocka_unit_test(test_msg_records),
    cmocka_unit_test(test_msg_checkpoint_and_actions),
    cmocka_unit_test(test_parse_status),
    cmocka_unit_test(test_parse_checkpoint),
    cmocka_unit_test(test_parse_garbage),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
