/* test_ddb_item.c — JSON payload -> DynamoDB item: number text kept
 * exactly, nested maps and lists, empty strings, booleans and null, strings
 * with escapes, malformed JSON and numbers DynamoDB cannot hold refused,
 * metadata and key attributes, ttl, and items over 400 KB refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "aws/dynamodb.h"
#include "err.h"
#include "handlers/ddb_item.h"
#include "handlers/dynamodb_sink.h"
#include "handlers/template.h"

static json_t *map_ok(const char *text)
{
  json_t *av = NULL;
  char err[256] = "";
  int rc = kcld_ddb_item_from_json(text, strlen(text), &av, err, sizeof(err));
  if (rc != 0)
    fail_msg("%s: rc %d: %s", text, rc, err);
  return av;
}

static void map_bad(const char *text, size_t len, const char *want)
{
  json_t *av = (json_t *)0x1;
  char err[256] = "";
  int rc = kcld_ddb_item_from_json(text, len, &av, err, sizeof(err));
  if (rc != KCLD_EPARSE || !strstr(err, want))
    fail_msg("%.*s: rc %d, message \"%s\" (want \"%s\")", (int)len, text, rc,
             err, want);
  assert_null(av);
}

/* Compares an AttributeValue with the expected AttributeValue JSON. */
static void assert_av(const json_t *av, const char *want_json)
{
  json_error_t e;
  json_t *want = json_loads(want_json, 0, &e);
  if (!want)
    fail_msg("bad expectation %s: %s", want_json, e.text);
  if (!json_equal(av, want)) {
    char *got = json_dumps(av, JSON_COMPACT | JSON_SORT_KEYS);
    fail_msg("got %s, want %s", got, want_json);
  }
  json_decref(want);
}

static void test_numbers_keep_text(void **state)
{
  static const char *nums[] = {
    "0", "-0", "42", "-17", "0.1000", "3.14159265358979323846264338327950288",
    "12345678901234567890123456789012345678", "1e2", "1.0E+2", "-2.5e-3",
    "100000000000000000000000000000000000000000", "1E125", "1e-130",
    "0.0000000000000000000000000000000000000000000001", "9007199254740993",
  };
  (void)state;

  for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
    json_t *av = map_ok(nums[i]);
    assert_string_equal(kcld_dynamodb_as_n(av), nums[i]);
    json_decref(av);
  }
  /* Inside a document, too, with whitespace around. */
  json_t *av = map_ok(" { \"price\" : 19.990 , \"qty\":\t3 }\n");
  assert_av(av, "{\"M\":{\"price\":{\"N\":\"19.990\"},\"qty\":{\"N\":\"3\"}}}");
  json_decref(av);
}

static void test_numbers_refused(void **state)
{
  (void)state;
  /* 39 significant digits. */
  map_bad("123456789012345678901234567890123456789", 39,
          "38 significant digits");
  map_bad("1e126", 5, "out of DynamoDB's range");
  map_bad("0.1e-130", 8, "out of DynamoDB's range");
  map_bad("1e99999999999999999999", 22, "out of DynamoDB's range");
  /* Not JSON numbers. */
  map_bad("01", 2, "leading zero");
  map_bad("1.", 2, "fraction");
  map_bad(".5", 2, "unexpected");
  map_bad("+1", 2, "unexpected character");
  map_bad("1e", 2, "exponent");
  map_bad("NaN", 3, "unexpected character");
  map_bad("-", 1, "bad number");
}

static void test_nested_and_scalars(void **state)
{
  (void)state;
  json_t *av = map_ok(
    "{\"user\":{\"id\":\"u1\",\"tags\":[\"x\",1,true,null,[],{}],"
    "\"empty\":\"\",\"ok\":false},\"list\":[[[0.5]]],\"nothing\":null}");
  assert_av(av,
    "{\"M\":{\"user\":{\"M\":{\"id\":{\"S\":\"u1\"},\"tags\":{\"L\":["
    "{\"S\":\"x\"},{\"N\":\"1\"},{\"BOOL\":true},{\"NULL\":true},"
    "{\"L\":[]},{\"M\":{}}]},\"empty\":{\"S\":\"\"},\"ok\":{\"BOOL\":false}}},"
    "\"list\":{\"L\":[{\"L\":[{\"L\":[{\"N\":\"0.5\"}]}]}]},"
    "\"nothing\":{\"NULL\":true}}}");
  json_decref(av);

  av = map_ok("\"\"");
  assert_av(av, "{\"S\":\"\"}");
  json_decref(av);
  av = map_ok("true");
  assert_av(av, "{\"BOOL\":true}");
  json_decref(av);
  av = map_ok("[]");
  assert_av(av, "{\"L\":[]}");
  json_decref(av);
  /* A repeated member: the last one wins, as in most JSON readers. */
  av = map_ok("{\"a\":1,\"a\":\"two\"}");
  assert_av(av, "{\"M\":{\"a\":{\"S\":\"two\"}}}");
  json_decref(av);
}

static void test_strings(void **state)
{
  (void)state;
  json_t *av = map_ok("\"q\\\"b\\\\s\\/n\\n t\\t \\u00e9 \\ud83d\\ude00 "
                      "\xc3\xa9 \\u0000z\"");
  json_t *s = json_object_get(av, "S");
  const char want[] = "q\"b\\s/n\n t\t \xc3\xa9 \xf0\x9f\x98\x80 \xc3\xa9 "
                      "\0z";
  assert_int_equal(json_string_length(s), sizeof(want) - 1);
  assert_memory_equal(json_string_value(s), want, sizeof(want) - 1);
  json_decref(av);

  map_bad("\"abc", 4, "unterminated");
  map_bad("\"a\x01\"", 4, "control character");
  map_bad("\"\\x\"", 4, "bad escape");
  map_bad("\"\\u12\"", 6, "\\u escape");
  map_bad("\"\\ud800\"", 8, "lone high surrogate");
  map_bad("\"\\udc00\"", 8, "lone low surrogate");
  map_bad("\"\xff\"", 3, "invalid UTF-8");
  map_bad("\"\xc0\xaf\"", 4, "invalid UTF-8");          /* overlong */
  map_bad("\"\xed\xa0\x80\"", 5, "invalid UTF-8");      /* surrogate */
}

static void test_malformed(void **state)
{
  char deep[80];
  (void)state;
  map_bad("", 0, "end of input");
  map_bad("   ", 3, "end of input");
  map_bad("not json", 8, "unexpected");
  map_bad("{\"a\":1", 6, "expected ',' or '}'");
  map_bad("{\"a\" 1}", 7, "expected ':'");
  map_bad("{a:1}", 5, "member name");
  map_bad("[1,]", 4, "unexpected");
  map_bad("[1 2]", 5, "expected ',' or ']'");
  map_bad("{} x", 4, "trailing data");
  map_bad("tru", 3, "unexpected");
  map_bad("{\"\":1}", 6, "empty member name");
  /* Payload bytes need not be NUL-terminated: the length rules. */
  map_bad("{\"a\":1}", 5, "expected");

  /* 32 levels are fine, 33 are not. */
  memset(deep, '[', 32);
  memset(deep + 32, ']', 32);
  json_t *av = NULL;
  assert_int_equal(kcld_ddb_item_from_json(deep, 64, &av, NULL, 0), 0);
  json_decref(av);
  memset(deep, '[', 33);
  memset(deep + 33, ']', 33);
  map_bad(deep, 66, "deeper than 32");
}

/* ======== Whole items ======== */

struct keyset {
  struct kcld_template *pk, *sk;
  struct kcld_dynamodb_sink_keys k;
};

static void keys_up(struct keyset *ks, const char *pk, const char *sk,
                    int64_t ttl_ms)
{
  char err[256];
  memset(ks, 0, sizeof(*ks));
  assert_int_equal(kcld_template_compile("pk", pk, &ks->pk, err, sizeof(err)),
                   0);
  if (sk)
    assert_int_equal(kcld_template_compile("sk", sk, &ks->sk, err,
                                           sizeof(err)), 0);
  ks->k.pk = ks->pk;
  ks->k.sk = ks->sk;
  ks->k.ttl_ms = ttl_ms;
}

static void keys_down(struct keyset *ks)
{
  kcld_template_free(ks->pk);
  kcld_template_free(ks->sk);
}

static struct kcld_record rec_of(const char *data, size_t len)
{
  struct kcld_record r;
  memset(&r, 0, sizeof(r));
  r.data = (const uint8_t *)data;
  r.data_len = len;
  r.partition_key = "pk-1";
  r.partition_key_len = 4;
  r.sequence_number = "49600000000000000000000000000000000000000000000001";
  r.sub_sequence_number = 2;
  r.arrival_ms = 1763893800123LL;
  return r;
}

static void test_item_metadata(void **state)
{
  struct keyset ks;
  const char *data = "{\"deviceId\":\"d-1\",\"t\":20.10,\"shardId\":\"mine\","
                     "\"pk\":\"payload\"}";
  struct kcld_record r = rec_of(data, strlen(data));
  json_t *item = NULL;
  char err[256];
  (void)state;

  keys_up(&ks, "${data.deviceId}#${hour(arrival)}",
          "${sequenceNumber}#${subSequenceNumber}", 3600 * 1000);
  assert_int_equal(kcld_dynamodb_sink_item(&ks.k, "shardId-000000000001", &r,
                                           1763893900999LL, &item, err,
                                           sizeof(err)), 0);
  assert_av(item,
    "{\"deviceId\":{\"S\":\"d-1\"},\"t\":{\"N\":\"20.10\"},"
    "\"pk\":{\"S\":\"d-1#2025-11-23T10\"},"
    "\"sk\":{\"S\":\"49600000000000000000000000000000000000000000000001#2\"},"
    "\"sequenceNumber\":{\"S\":"
    "\"49600000000000000000000000000000000000000000000001\"},"
    "\"subSequenceNumber\":{\"N\":\"2\"},"
    "\"shardId\":{\"S\":\"shardId-000000000001\"},"
    "\"approximateArrivalTimestamp\":{\"N\":\"1763893800123\"},"
    "\"processedAt\":{\"N\":\"1763893900999\"},"
    "\"ttl\":{\"N\":\"1763897500\"}}");
  json_decref(item);

  /* Both keys read the payload as it came, even a member named pk. */
  keys_down(&ks);
  keys_up(&ks, "${data.deviceId}", "${data.pk}", 0);
  assert_int_equal(kcld_dynamodb_sink_item(&ks.k, "s", &r, 1, &item, err,
                                           sizeof(err)), 0);
  assert_string_equal(kcld_dynamodb_as_s(kcld_dynamodb_attr(item, "pk")),
                      "d-1");
  assert_string_equal(kcld_dynamodb_as_s(kcld_dynamodb_attr(item, "sk")),
                      "payload");
  json_decref(item);

  /* No sort key, no ttl, no arrival time: those attributes are absent. */
  keys_down(&ks);
  keys_up(&ks, "${partitionKey}", NULL, 0);
  r.arrival_ms = KCLD_RECORD_NO_ARRIVAL;
  assert_int_equal(kcld_dynamodb_sink_item(&ks.k, "s", &r, 5, &item, err,
                                           sizeof(err)), 0);
  assert_null(kcld_dynamodb_attr(item, "sk"));
  assert_null(kcld_dynamodb_attr(item, "ttl"));
  assert_null(kcld_dynamodb_attr(item, "approximateArrivalTimestamp"));
  assert_string_equal(kcld_dynamodb_as_s(kcld_dynamodb_attr(item, "pk")),
                      "pk-1");
  json_decref(item);
  keys_down(&ks);
}

static void test_item_scalar_payload(void **state)
{
  struct keyset ks;
  struct kcld_record r = rec_of("[1, \"two\"]", 10);
  json_t *item = NULL;
  char err[256];
  (void)state;

  keys_up(&ks, "${partitionKey}", "${sequenceNumber}", 0);
  assert_int_equal(kcld_dynamodb_sink_item(&ks.k, "s", &r, 1, &item, err,
                                           sizeof(err)), 0);
  assert_av(kcld_dynamodb_attr(item, "data"),
            "{\"L\":[{\"N\":\"1\"},{\"S\":\"two\"}]}");
  json_decref(item);
  keys_down(&ks);
}

static void test_item_refusals(void **state)
{
  struct keyset ks;
  json_t *item = (json_t *)0x1;
  char err[256];
  (void)state;

  keys_up(&ks, "${data.deviceId}", "${sequenceNumber}", 0);
  struct kcld_record r = rec_of("{\"deviceId\":", 12);
  assert_int_equal(kcld_dynamodb_sink_item(&ks.k, "s", &r, 1, &item, err,
                                           sizeof(err)), KCLD_EPARSE);
  assert_null(item);
  assert_non_null(strstr(err, "not JSON"));

  r = rec_of("{\"other\":1}", 11);
  assert_int_equal(kcld_dynamodb_sink_item(&ks.k, "s", &r, 1, &item, err,
                                           sizeof(err)), KCLD_ENOTFOUND);
  assert_non_null(strstr(err, "data.deviceId"));

  /* A key that renders empty cannot be a DynamoDB key. */
  r = rec_of("{\"deviceId\":\"\"}", 15);
  assert_int_equal(kcld_dynamodb_sink_item(&ks.k, "s", &r, 1, &item, err,
                                           sizeof(err)), KCLD_ENOTFOUND);
  assert_non_null(strstr(err, "renders 0 bytes"));

  /* A partition key over 2048 bytes. */
  {
    size_t n = 2100;
    char *doc = malloc(n + 32);
    int len = snprintf(doc, n + 32, "{\"deviceId\":\"%*s\"}", (int)n, "x");
    r = rec_of(doc, (size_t)len);
    assert_int_equal(kcld_dynamodb_sink_item(&ks.k, "s", &r, 1, &item, err,
                                             sizeof(err)), KCLD_ENOTFOUND);
    assert_non_null(strstr(err, "2100 bytes"));
    free(doc);
  }
  keys_down(&ks);
}

/* A payload of about `bytes` bytes of strings. */
static char *big_doc(size_t bytes, size_t *len)
{
  char *doc = malloc(bytes + 64);
  size_t n = (size_t)sprintf(doc, "{\"deviceId\":\"d\",\"blob\":\"");
  memset(doc + n, 'a', bytes);
  n += bytes;
  n += (size_t)sprintf(doc + n, "\"}");
  *len = n;
  return doc;
}

static void test_item_size_limit(void **state)
{
  struct keyset ks;
  json_t *item = NULL;
  char err[256];
  size_t len;
  (void)state;

  keys_up(&ks, "${data.deviceId}", "${sequenceNumber}", 0);
  /* Well under the limit with its metadata. */
  char *doc = big_doc(400 * 1024 - 1024, &len);
  struct kcld_record r = rec_of(doc, len);
  assert_int_equal(kcld_dynamodb_sink_item(&ks.k, "s", &r, 1, &item, err,
                                           sizeof(err)), 0);
  size_t size = kcld_ddb_item_size(item);
  assert_true(size > 400 * 1024 - 1024 && size <= KCLD_DDB_ITEM_MAX_BYTES);
  json_decref(item);
  free(doc);

  /* Exactly the limit in the blob alone: over, with names and metadata. */
  doc = big_doc(400 * 1024, &len);
  r = rec_of(doc, len);
  item = (json_t *)0x1;
  assert_int_equal(kcld_dynamodb_sink_item(&ks.k, "s", &r, 1, &item, err,
                                           sizeof(err)), KCLD_EINVAL);
  assert_null(item);
  assert_non_null(strstr(err, "409600-byte limit"));
  free(doc);
  keys_down(&ks);
}

static void test_size_rules(void **state)
{
  (void)state;
  json_t *item = json_object();
  /* name 1 + "abc" 3 */
  kcld_dynamodb_item_set(item, "s", kcld_dynamodb_av_s("abc"));
  assert_int_equal(kcld_ddb_item_size(item), 4);
  /* name 1 + BOOL 1 + name 1 + NULL 1 */
  kcld_dynamodb_item_set(item, "b", kcld_dynamodb_av_bool(1));
  kcld_dynamodb_item_set(item, "z", kcld_dynamodb_av_null());
  assert_int_equal(kcld_ddb_item_size(item), 8);
  /* "12345": 5 significant digits -> 3 + 2; leading/trailing zeros free */
  kcld_dynamodb_item_set(item, "n", kcld_dynamodb_av_n("0012345.000"));
  assert_int_equal(kcld_ddb_item_size(item), 8 + 1 + 5);
  /* UTF-8 bytes count: "é" is 2 bytes. */
  json_t *u = json_object();
  kcld_dynamodb_item_set(u, "\xc3\xa9", kcld_dynamodb_av_s("\xc3\xa9"));
  assert_int_equal(kcld_ddb_item_size(u), 4);
  json_decref(u);
  /* L: 3 + per element 1 + value; M: 3 + per member 1 + name + value */
  json_t *l = json_array();
  json_array_append_new(l, kcld_dynamodb_av_s("ab"));
  json_array_append_new(l, kcld_dynamodb_av_bool(0));
  json_t *m = json_object();
  kcld_dynamodb_item_set(m, "k", kcld_dynamodb_av_s("v"));
  json_t *it2 = json_object();
  kcld_dynamodb_item_set(it2, "l", kcld_dynamodb_av_l(l));
  kcld_dynamodb_item_set(it2, "m", kcld_dynamodb_av_m(m));
  assert_int_equal(kcld_ddb_item_size(it2),
                   (1 + 3 + (1 + 2) + (1 + 1)) + (1 + 3 + 1 + 1 + 1));
  json_decref(it2);
  json_decref(item);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_numbers_keep_text),
    cmocka_unit_test(test_numbers_refused),
    cmocka_unit_test(test_nested_and_scalars),
    cmocka_unit_test(test_strings),
    cmocka_unit_test(test_malformed),
    cmocka_unit_test(test_item_metadata),
    cmocka_unit_test(test_item_scalar_payload),
    cmocka_unit_test(test_item_refusals),
    cmocka_unit_test(test_item_size_limit),
    cmocka_unit_test(test_size_rules),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
