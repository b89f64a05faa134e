/* test_getrecords.c — GetRecords bodies -> record batches: mixed plain,
 * aggregated and corrupt records, child shards and shard end, the real KPL
 * records end to end, malformed bodies of many kinds (each KCLD_EPARSE with a
 * message naming the culprit), the warning for a passed-through aggregate,
 * batch reference counting and parsing on several threads at once; the JSON
 * scanner's escapes, skipped and repeated members, and strictness, checked
 * against jansson. */
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
#include <pthread.h>

#include "consume/getrecords.h"
#include "err.h"
#include "harness.h"
#include "log.h"

/* ======== Building bodies ======== */

static char *b64(const void *data, size_t n)
{
  char *out = malloc(4 * ((n + 2) / 3) + 1);
  assert_non_null(out);
  EVP_EncodeBlock((unsigned char *)out, data, (int)n);
  return out;
}

static void add_record(json_t *records, const void *data, size_t n,
                       const char *pk, const char *seq)
{
  char *d = b64(data, n);
  json_t *r = json_pack("{s:s, s:s, s:s}", "Data", d, "PartitionKey", pk,
                        "SequenceNumber", seq);
  assert_non_null(r);
  json_array_append_new(records, r);
  free(d);
}

static char *dump(json_t *body, size_t *len)
{
  char *s = json_dumps(body, JSON_COMPACT);
  assert_non_null(s);
  *len = strlen(s);
  return s;
}

/* A small KPL aggregate: PKs "u0".."u{n-1}", EHK "1"... on odd records,
 * data "user i".  With `break_md5` the trailer is wrong. */
static size_t make_aggregate(uint8_t *out, size_t cap, int n, int break_md5)
{
  uint8_t pb[4096];
  size_t k = 0;
  char s[32];
#define PB_BYTE(b) (assert_true(k < sizeof(pb)), pb[k++] = (uint8_t)(b))
  for (int i = 0; i < n; i++) {
    int len = snprintf(s, sizeof(s), "u%d", i);
    PB_BYTE(0x0A);
    PB_BYTE(len);
    for (int j = 0; j < len; j++)
      PB_BYTE(s[j]);
  }
  PB_BYTE(0x12);
  PB_BYTE(1);
  PB_BYTE('1');
  for (int i = 0; i < n; i++) {
    int len = snprintf(s, sizeof(s), "user %d", i);
    PB_BYTE(0x1A);
    PB_BYTE(2 + (i % 2 ? 2 : 0) + 2 + len);
    PB_BYTE(0x08);
    PB_BYTE(i);
    if (i % 2) {
      PB_BYTE(0x10);
      PB_BYTE(0);
    }
    PB_BYTE(0x1A);
    PB_BYTE(len);
    for (int j = 0; j < len; j++)
      PB_BYTE(s[j]);
  }
#undef PB_BYTE
  unsigned int md_len = 0;
  assert_true(4 + k + 16 <= cap);
  memcpy(out, "\xF3\x89\x9A\xC2", 4);
  memcpy(out + 4, pb, k);
  assert_int_equal(EVP_Digest(pb, k, out + 4 + k, &md_len, EVP_md5(), NULL),
                   1);
  if (break_md5)
    out[4 + k + 15] ^= 0xFF;
  return 4 + k + 16;
}

/* Captures log lines written while a parse runs. */
struct capture {
  FILE *f;
  char *buf;
  size_t len;
};

static void capture_start(struct capture *c)
{
  c->buf = NULL;
  c->len = 0;
  c->f = open_memstream(&c->buf, &c->len);
  assert_non_null(c->f);
  kcld_log_setup(KCLD_LOG_DEBUG, KCLD_LOG_JSON, c->f);
}

static void capture_end(struct capture *c)
{
  kcld_log_setup(KCLD_LOG_INFO, KCLD_LOG_JSON, NULL);
  fclose(c->f);
}

static int count_lines(const char *s)
{
  int n = 0;
  for (; *s; s++)
    n += *s == '\n';
  return n;
}

/* ======== Tests ======== */

static const char k_seq1[] =
  "49590338271490256608559692538361571095921575989136588898";
static const char k_seq2[] =
  "49590338271490256608559692538361571095921575989136588899";
static const char k_seq3[] =
  "49590338271490256608559692540925702759324208523137515618";
static const char k_seq4[] =
  "49590338271490256608559692540925702759324208523137515619";

static void test_mixed_body(void **state)
{
  (void)state;
  uint8_t agg[1024], bad[1024], bin[256];
  size_t agg_len = make_aggregate(agg, sizeof(agg), 3, 0);
  size_t bad_len = make_aggregate(bad, sizeof(bad), 2, 1);
  for (int i = 0; i < 256; i++)
    bin[i] = (uint8_t)i;

  json_t *records = json_array();
  add_record(records, "hello", 5, "plain-pk", k_seq1);
  json_object_set_new(json_array_get(records, 0), "ApproximateArrivalTimestamp",
                      json_real(1562602074.896));
  json_object_set_new(json_array_get(records, 0), "EncryptionType",
                      json_string("NONE"));
  add_record(records, agg, agg_len, "a", k_seq2);
  json_object_set_new(json_array_get(records, 1), "ApproximateArrivalTimestamp",
                      json_integer(1700000000));
  json_object_set_new(json_array_get(records, 1), "EncryptionType",
                      json_string("KMS"));
  add_record(records, bad, bad_len, "a", k_seq3);
  json_object_set_new(json_array_get(records, 2), "EncryptionType",
                      json_string("FUTURE_TYPE"));
  add_record(records, bin, sizeof(bin), "binary", k_seq4);
  json_object_set_new(json_array_get(records, 3), "Unknown", json_true());
  json_t *body = json_pack(
    "{s:o, s:n, s:i, s:[{s:s, s:[s], s:{s:s, s:s}}, "
    "{s:s, s:[s, s], s:{s:s, s:s}}], s:s}",
    "Records", records, "NextShardIterator", "MillisBehindLatest", 0,
    "ChildShards",
    "ShardId", "shardId-000000000001", "ParentShards", "shardId-000000000000",
    "HashKeyRange", "StartingHashKey", "0", "EndingHashKey",
    "170141183460469231731687303715884105727",
    "ShardId", "shardId-000000000002", "ParentShards", "shardId-000000000000",
    "shardId-000000000009", "HashKeyRange", "StartingHashKey",
    "170141183460469231731687303715884105728", "EndingHashKey",
    "340282366920938463463374607431768211455",
    "SomethingNew", "ignored");
  assert_non_null(body);
  size_t len;
  char *text = dump(body, &len);

  struct kcld_record_batch *b = NULL;
  char err[256];
  struct capture cap;
  capture_start(&cap);
  int rc = kcld_getrecords_parse(text, len, "shardId-000000000000", &b, err,
                                 sizeof(err));
  capture_end(&cap);
  assert_int_equal(rc, 0);
  assert_non_null(b);

  /* 1 plain + 3 user records + 1 corrupt passed through + 1 binary. */
  assert_int_equal(b->kinesis_count, 4);
  assert_int_equal(b->count, 6);
  assert_null(b->next_shard_iterator);
  assert_int_equal(b->millis_behind_latest, 0);
  assert_int_equal(b->data_bytes, 5 + agg_len + bad_len + 256);
  assert_true(b->mem_bytes >= b->data_bytes);
  assert_non_null(b->extra); /* the aggregate needed the second block */

  const struct kcld_record *r = b->records;
  for (size_t i = 0; i < b->count; i++)
    assert_ptr_equal(r[i].batch, b);

  assert_int_equal(r[0].data_len, 5);
  assert_memory_equal(r[0].data, "hello", 5);
  assert_string_equal(r[0].partition_key, "plain-pk");
  assert_int_equal(r[0].partition_key_len, 8);
  assert_null(r[0].explicit_hash_key);
  assert_string_equal(r[0].sequence_number, k_seq1);
  assert_int_equal(r[0].sub_sequence_number, 0);
  assert_int_equal(r[0].arrival_ms, 1562602074896);
  assert_string_equal(r[0].encryption_type, "NONE");
  assert_int_equal(r[0].aggregated, 0);

  for (int i = 0; i < 3; i++) {
    char pk[16], data[24];
    snprintf(pk, sizeof(pk), "u%d", i);
    snprintf(data, sizeof(data), "user %d", i);
    assert_string_equal(r[1 + i].partition_key, pk);
    assert_int_equal(r[1 + i].data_len, strlen(data));
    assert_memory_equal(r[1 + i].data, data, strlen(data));
    if (i % 2)
      assert_string_equal(r[1 + i].explicit_hash_key, "1");
    else
      assert_null(r[1 + i].explicit_hash_key);
    assert_string_equal(r[1 + i].sequence_number, k_seq2);
    assert_int_equal(r[1 + i].sub_sequence_number, (uint64_t)i);
    assert_int_equal(r[1 + i].arrival_ms, 1700000000000);
    assert_string_equal(r[1 + i].encryption_type, "KMS");
    assert_int_equal(r[1 + i].aggregated, 1);
  }

  /* The corrupt aggregate: exactly the bytes that came, as one record. */
  assert_int_equal(r[4].data_len, bad_len);
  assert_memory_equal(r[4].data, bad, bad_len);
  assert_string_equal(r[4].partition_key, "a");
  assert_string_equal(r[4].sequence_number, k_seq3);
  assert_int_equal(r[4].sub_sequence_number, 0);
  assert_int_equal(r[4].aggregated, 0);
  assert_int_equal(r[4].arrival_ms, KCLD_RECORD_NO_ARRIVAL);
  assert_string_equal(r[4].encryption_type, "FUTURE_TYPE");

  assert_int_equal(r[5].data_len, 256);
  assert_memory_equal(r[5].data, bin, 256);
  assert_null(r[5].encryption_type);

  assert_int_equal(b->child_shard_count, 2);
  const struct kcld_child_shard *c = b->child_shards;
  assert_string_equal(c[0].shard_id, "shardId-000000000001");
  assert_int_equal(c[0].parent_count, 1);
  assert_string_equal(c[0].parent_shards[0], "shardId-000000000000");
  assert_string_equal(c[0].starting_hash_key, "0");
  assert_string_equal(c[0].ending_hash_key,
                      "170141183460469231731687303715884105727");
  assert_string_equal(c[1].shard_id, "shardId-000000000002");
  assert_int_equal(c[1].parent_count, 2);
  assert_string_equal(c[1].parent_shards[1], "shardId-000000000009");
  assert_string_equal(c[1].ending_hash_key,
                      "340282366920938463463374607431768211455");

  /* One warning, naming the shard, the record and the reason. */
  assert_int_equal(count_lines(cap.buf), 1);
  json_error_t jerr;
  json_t *line = json_loads(cap.buf, 0, &jerr);
  assert_non_null(line);
  assert_string_equal(json_string_value(json_object_get(line, "level")),
                      "warn");
  assert_string_equal(json_string_value(json_object_get(line, "shard")),
                      "shardId-000000000000");
  assert_string_equal(
    json_string_value(json_object_get(line, "sequence_number")), k_seq3);
  assert_non_null(strstr(json_string_value(json_object_get(line, "reason")),
                         "MD5"));
  json_decref(line);
  free(cap.buf);

  kcld_record_batch_release(b);
  free(text);
  json_decref(body);
}

static void test_plain_is_one_block(void **state)
{
  (void)state;
  uint8_t bad[1024];
  size_t bad_len = make_aggregate(bad, sizeof(bad), 2, 1);
  json_t *records = json_array();
  add_record(records, "x", 1, "k", k_seq1);
  add_record(records, "", 0, "empty-data", k_seq2);
  add_record(records, bad, bad_len, "a", k_seq3);
  json_t *body = json_pack("{s:o, s:s, s:i}", "Records", records,
                           "NextShardIterator", "AAAAiterator==",
                           "MillisBehindLatest", 86400000);
  size_t len;
  char *text = dump(body, &len);
  struct kcld_record_batch *b;
  struct capture cap;
  capture_start(&cap);
  assert_int_equal(kcld_getrecords_parse(text, len, NULL, &b, NULL, 0), 0);
  capture_end(&cap);
  assert_null(b->extra); /* no aggregate expanded: a single allocation */
  assert_int_equal(b->count, 3);
  assert_string_equal(b->next_shard_iterator, "AAAAiterator==");
  assert_int_equal(b->millis_behind_latest, 86400000);
  assert_int_equal(b->child_shard_count, 0);
  assert_int_equal(b->records[1].data_len, 0);
  assert_non_null(b->records[1].data);
  assert_int_equal(b->records[2].aggregated, 0);
  assert_int_equal(b->records[2].data_len, bad_len);
  assert_int_equal(count_lines(cap.buf), 1);
  assert_non_null(strstr(cap.buf, "\"shard\":null"));
  free(cap.buf);
  kcld_record_batch_release(b);
  free(text);
  json_decref(body);
}

static void test_empty_and_shard_end(void **state)
{
  (void)state;
  static const char *bodies[] = {
    "{\"Records\":[],\"NextShardIterator\":\"it\",\"MillisBehindLatest\":5}",
    "{\"Records\":[]}",
    ("{\"Records\":[],\"NextShardIterator\":null,\"MillisBehindLatest\":null,"
     "\"ChildShards\":null}"),
    "{\"Records\":[],\"ChildShards\":[]}",
  };
  for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
    struct kcld_record_batch *b;
    assert_int_equal(kcld_getrecords_parse(bodies[i], strlen(bodies[i]),
                                           "s", &b, NULL, 0), 0);
    assert_int_equal(b->count, 0);
    assert_int_equal(b->kinesis_count, 0);
    assert_int_equal(b->child_shard_count, 0);
    if (i == 0) {
      assert_string_equal(b->next_shard_iterator, "it");
      assert_int_equal(b->millis_behind_latest, 5);
      assert_int_equal(b->shard_end, 0);
    } else {
      assert_null(b->next_shard_iterator);
      assert_int_equal(b->millis_behind_latest, -1);
      assert_int_equal(b->shard_end, 1);
    }
    assert_null(b->continuation_sequence_number);
    kcld_record_batch_release(b);
  }
}

/* SubscribeToShardEvent payloads (enhanced fan-out): the continuation is
 * kept; a missing one is not the end, ChildShards without one is; a
 * NextShardIterator means nothing there; a bad continuation refuses the
 * event and names it. */
static void test_fanout_events(void **state)
{
  (void)state;
  static const struct {
    const char *body;
    const char *cont;
    int end;
    size_t children;
  } ok[] = {
    {"{\"Records\":[],\"ContinuationSequenceNumber\":\"4955\","
     "\"MillisBehindLatest\":0}", "4955", 0, 0},
    {"{\"Records\":[],\"MillisBehindLatest\":7}", NULL, 0, 0},
    {"{\"Records\":[],\"ContinuationSequenceNumber\":null,"
     "\"NextShardIterator\":null}", NULL, 0, 0},
    {"{\"Records\":[],\"MillisBehindLatest\":0,\"ChildShards\":[{"
     "\"ShardId\":\"shardId-000000000001\",\"ParentShards\":["
     "\"shardId-000000000000\"],\"HashKeyRange\":{\"StartingHashKey\":"
     "\"0\",\"EndingHashKey\":\"9\"}}]}", NULL, 1, 1},
    {"{\"Records\":[],\"ChildShards\":[]}", NULL, 1, 0},
    /* Children announced before the end, with a continuation: not yet. */
    {"{\"Records\":[],\"ContinuationSequenceNumber\":\"12\","
     "\"ChildShards\":[]}", "12", 0, 0},
  };
  static const struct {
    const char *body;
    const char *msg;
  } bad[] = {
    {"{\"Records\":[],\"ContinuationSequenceNumber\":12}",
     "ContinuationSequenceNumber is not a string"},
    {"{\"Records\":[],\"ContinuationSequenceNumber\":\"12a\"}",
     "ContinuationSequenceNumber \"12a\" is not a decimal sequence number"},
    {"{\"Records\":[],\"ContinuationSequenceNumber\":\"\"}",
     "is not a decimal sequence number"},
    {"[1]", "SubscribeToShardEvent is not a JSON object"},
    {"{\"Records\":", "SubscribeToShardEvent is not JSON"},
  };
  struct kcld_getrecords_mem mem = {.event = 1};
  char err[256];
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    struct kcld_record_batch *b;
    assert_int_equal(kcld_getrecords_parse_mem(ok[i].body,
                                               strlen(ok[i].body), "s", &mem,
                                               &b, err, sizeof(err)), 0);
    if (ok[i].cont)
      assert_string_equal(b->continuation_sequence_number, ok[i].cont);
    else
      assert_null(b->continuation_sequence_number);
    assert_null(b->next_shard_iterator);
    assert_int_equal(b->shard_end, ok[i].end);
    assert_int_equal(b->child_shard_count, ok[i].children);
    kcld_record_batch_release(b);
  }
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    struct kcld_record_batch *b = (void *)1;
    assert_int_equal(kcld_getrecords_parse_mem(bad[i].body,
                                               strlen(bad[i].body), "s", &mem,
                                               &b, err, sizeof(err)),
                     KCLD_EPARSE);
    assert_null(b);
    if (!strstr(err, bad[i].msg))
      fail_msg("event %zu: \"%s\" does not say \"%s\"", i, err,
               bad[i].msg);
  }
  /* A record in an event is parsed as in GetRecords. */
  json_t *records = json_array(), *body;
  add_record(records, "hello", 5, "pk", k_seq1);
  body = json_pack("{s:o,s:s,s:i}", "Records", records,
                   "ContinuationSequenceNumber", k_seq1, "MillisBehindLatest",
                   3);
  size_t len;
  char *text = dump(body, &len);
  struct kcld_record_batch *b;
  assert_int_equal(kcld_getrecords_parse_mem(text, len, "s", &mem, &b, err,
                                             sizeof(err)), 0);
  assert_int_equal(b->count, 1);
  assert_int_equal(b->records[0].data_len, 5);
  assert_string_equal(b->records[0].sequence_number, k_seq1);
  assert_string_equal(b->continuation_sequence_number, k_seq1);
  assert_int_equal(b->millis_behind_latest, 3);
  kcld_record_batch_release(b);
  /* In polling mode the same member is unknown and ignored. */
  assert_int_equal(kcld_getrecords_parse(text, len, "s", &b, err,
                                         sizeof(err)), 0);
  assert_null(b->continuation_sequence_number);
  assert_int_equal(b->shard_end, 1);
  kcld_record_batch_release(b);
  kcld_getrecords_mem_clean_up(&mem);
  free(text);
  json_decref(body);
}

/* A partition key with U+0000 and non-ASCII characters survives whole; the
 * body need not be NUL-terminated. */
static void test_odd_keys(void **state)
{
  (void)state;
  const char body[] = "{\"Records\":[{\"Data\":\"QQ==\",\"PartitionKey\":"
                      "\"a\\u0000b\\u00e9\\ud83d\\ude00\",\"SequenceNumber\":"
                      "\"0001\"}]}XXXX";
  struct kcld_record_batch *b;
  char err[200];
  assert_int_equal(kcld_getrecords_parse(body, sizeof(body) - 5, "s", &b, err,
                                         sizeof(err)), 0);
  assert_int_equal(b->count, 1);
  assert_int_equal(b->records[0].partition_key_len, 1 + 1 + 1 + 2 + 4);
  assert_memory_equal(b->records[0].partition_key,
                      "a\0b\xC3\xA9\xF0\x9F\x98\x80", 10);
  assert_int_equal(b->records[0].data_len, 1);
  assert_int_equal(b->records[0].data[0], 'A');
  assert_string_equal(b->records[0].sequence_number, "0001");
  kcld_record_batch_release(b);
}

static void test_real_kpl_body(void **state)
{
  (void)state;
  const char *path = kcld_test_shared("testdata/kpl/real-kpl-aggregates.json");
  if (path == NULL) {
    print_message("shared/testdata/kpl/real-kpl-aggregates.json is absent; "
                  "skipping the real KPL vectors\n");
    skip();
  }
  json_error_t jerr;
  json_t *doc = json_load_file(path, 0, &jerr);
  assert_non_null(doc);
  json_t *records = json_array(), *c;
  size_t i, want = 0;
  json_array_foreach(json_object_get(doc, "cases"), i, c) {
    json_array_append_new(records, json_pack(
      "{s:O, s:O, s:O, s:f}", "Data", json_object_get(c, "data"),
      "PartitionKey", json_object_get(c, "partitionKey"), "SequenceNumber",
      json_object_get(c, "sequenceNumber"), "ApproximateArrivalTimestamp",
      1562602074.5 + (double)i));
    want += json_array_size(json_object_get(c, "expected"));
  }
  json_t *body = json_pack("{s:o, s:s}", "Records", records,
                           "NextShardIterator", "next");
  size_t len;
  char *text = dump(body, &len);
  struct kcld_record_batch *b;
  char err[256];
  assert_int_equal(kcld_getrecords_parse(text, len, "s", &b, err,
                                         sizeof(err)), 0);
  assert_int_equal(b->count, want);
  size_t k = 0;
  json_array_foreach(json_object_get(doc, "cases"), i, c) {
    json_t *x;
    size_t j;
    json_t *expected = json_object_get(c, "expected");
    int is_agg = strncmp(json_string_value(json_object_get(c, "data")),
                         "84mawg", 6) == 0;
    json_array_foreach(expected, j, x) {
      const struct kcld_record *r = &b->records[k++];
      const char *data = json_string_value(json_object_get(x, "data"));
      json_t *ehk = json_object_get(x, "explicitHashKey");
      assert_string_equal(r->partition_key,
                          json_string_value(json_object_get(x,
                                                            "partitionKey")));
      if (json_is_null(ehk))
        assert_null(r->explicit_hash_key);
      else
        assert_string_equal(r->explicit_hash_key, json_string_value(ehk));
      assert_int_equal(r->data_len, strlen(data));
      assert_memory_equal(r->data, data, r->data_len);
      assert_string_equal(r->sequence_number, json_string_value(
                            json_object_get(c, "sequenceNumber")));
      assert_int_equal(r->sub_sequence_number, j);
      assert_int_equal(r->aggregated, is_agg);
      assert_int_equal(r->arrival_ms, 1562602074500 + 1000 * (int64_t)i);
    }
  }
  kcld_record_batch_release(b);
  free(text);
  json_decref(body);
  json_decref(doc);
}

/* ======== The JSON scanner: escapes, unknown and repeated members ======== */

/* Escapes anywhere (keys included) decode as JSON says; members of unknown
 * names, of any type and at any depth, are skipped, even when they hold a
 * member named like one that counts. */
static void test_escapes_and_unknown(void **state)
{
  (void)state;
  static const char body[] =
    "{\"R\\u0065cords\":[{\"Data\":\"\\u0051UJ\\u0044\",\"PartitionKey\":"
    "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\",\"SequenceNumber\":\"\\u0039\","
    "\"EncryptionType\":\"KM\\u0053\",\"X\":{\"Data\":\"!!\",\"Y\":[1,-2.5e3,"
    "true,false,null,{\"SequenceNumber\":7}]},\"Z\":-0}],"
    "\"NextShardIterator\":\"\\u00e9\\u20ac\\ud83d\\ude00\","
    "\"Unknown\":[[[]],{},\"\\u0000\",1e-400],\"MillisBehindLatest\":1.9e1,"
    "\"ChildShards\":[{\"ShardId\":\"a\",\"U\":{\"ShardId\":\"no\"},"
    "\"ParentShards\":[\"p\\u0041\"],\"HashKeyRange\":{\"X\":0,"
    "\"StartingHashKey\":\"0\",\"EndingHashKey\":\"\\u0039\"}}]}";
  struct kcld_record_batch *b;
  char err[256];
  size_t len = sizeof(body) - 1;
  char *copy = malloc(len);
  memcpy(copy, body, len);
  assert_int_equal(kcld_getrecords_parse(copy, len, "s", &b, err,
                                         sizeof(err)), 0);
  free(copy);
  assert_int_equal(b->count, 1);
  const struct kcld_record *r = &b->records[0];
  assert_int_equal(r->data_len, 3);
  assert_memory_equal(r->data, "ABC", 3);
  assert_string_equal(r->partition_key, "\"\\/\b\f\n\r\t");
  assert_int_equal(r->partition_key_len, 8);
  assert_string_equal(r->sequence_number, "9");
  assert_string_equal(r->encryption_type, "KMS");
  assert_int_equal(r->arrival_ms, KCLD_RECORD_NO_ARRIVAL);
  assert_string_equal(b->next_shard_iterator,
                      "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80");
  assert_int_equal(b->millis_behind_latest, 19);
  assert_int_equal(b->child_shard_count, 1);
  assert_string_equal(b->child_shards[0].shard_id, "a");
  assert_int_equal(b->child_shards[0].parent_count, 1);
  assert_string_equal(b->child_shards[0].parent_shards[0], "pA");
  assert_string_equal(b->child_shards[0].starting_hash_key, "0");
  assert_string_equal(b->child_shards[0].ending_hash_key, "9");
  kcld_record_batch_release(b);
}

/* A member given twice counts by its last value (as jansson has it), at
 * every level; an earlier value must still be valid JSON. */
static void test_repeated_members(void **state)
{
  (void)state;
  static const char ok[] =
    "{\"Records\":[7,{}],\"Records\":[{\"Data\":\"QUJD\",\"PartitionKey\":"
    "\"a\",\"SequenceNumber\":\"1\",\"PartitionKey\":\"b\",\"Data\":"
    "\"REVG\",\"ApproximateArrivalTimestamp\":\"x\","
    "\"ApproximateArrivalTimestamp\":1.5}],\"NextShardIterator\":\"x\","
    "\"NextShardIterator\":null,\"MillisBehindLatest\":\"no\","
    "\"MillisBehindLatest\":42}";
  struct kcld_record_batch *b;
  char err[256];
  assert_int_equal(kcld_getrecords_parse(ok, sizeof(ok) - 1, "s", &b, err,
                                         sizeof(err)), 0);
  assert_int_equal(b->count, 1);
  assert_string_equal(b->records[0].partition_key, "b");
  assert_memory_equal(b->records[0].data, "DEF", 3);
  assert_int_equal(b->records[0].arrival_ms, 1500);
  assert_null(b->next_shard_iterator);
  assert_int_equal(b->millis_behind_latest, 42);
  kcld_record_batch_release(b);

  static const struct {
    const char *body, *msg;
  } bad[] = {
    {"{\"Records\":[],\"Records\":null}", "Records is missing"},
    {"{\"Records\":[{\"Data\":\"QUJD\",\"PartitionKey\":\"a\","
     "\"SequenceNumber\":\"1\",\"Data\":1}]}",
     "Records[0].Data is not a string"},
    {"{\"Records\":[],\"Records\":[1,]}", "not JSON"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    b = (struct kcld_record_batch *)&b;
    assert_int_equal(kcld_getrecords_parse(bad[i].body, strlen(bad[i].body),
                                           "s", &b, err, sizeof(err)),
                     KCLD_EPARSE);
    assert_null(b);
    assert_non_null(strstr(err, bad[i].msg));
  }
}

/* Bodies {"Records":[],"X":<value>}: accepted or refused exactly as jansson
 * (json_loadb with JSON_ALLOW_NUL, which the parser used before) does. */
static const struct {
  const char *value;
  int ok;
} k_values[] = {
  {"-0", 1}, {"0", 1}, {"1e-400", 1}, {"-9223372036854775808", 1},
  {"9223372036854775807", 1}, {"1.7976931348623157e308", 1}, {"1E+2", 1},
  {"\"\\u0000\"", 1}, {"\"\xF4\x8F\xBF\xBF\"", 1}, {"\"\xED\x9F\xBF\"", 1},
  {"\"\\uD800\\uDC00\"", 1}, {"\"\\u007f\x7f\"", 1}, {"[ ]", 1},
  {"{ }", 1}, {"true", 1}, {"false", 1}, {"null", 1},
  {"9223372036854775808", 0}, {"-9223372036854775809", 0},
  {"100000000000000000000", 0}, {"1e309", 0}, {"-1e309", 0}, {"01", 0},
  {"-01", 0}, {"1.", 0}, {"-", 0}, {".5", 0}, {"+1", 0}, {"1e", 0},
  {"1e+", 0}, {"0x10", 0}, {"\"\\uD800\"", 0}, {"\"\\uDC00\"", 0},
  {"\"\\uD800\\u0041\"", 0}, {"\"\\uD800x\"", 0}, {"\"\\u12G4\"", 0},
  {"\"\\x\"", 0}, {"\"\\'\"", 0}, {"\"\x01\"", 0}, {"\"\t\"", 0},
  {"\"\xC0\x80\"", 0}, {"\"\xED\xA0\x80\"", 0}, {"\"\xF4\x90\x80\x80\"", 0},
  {"\"\x80\"", 0}, {"\"\xE2\x82\"", 0}, {"\"\xF5\x80\x80\x80\"", 0},
  {"\"\xE0\x9F\xBF\"", 0}, {"\"\xF0\x8F\xBF\xBF\"", 0}, {"tru", 0},
  {"truex", 0}, {"nul", 0}, {"[1,]", 0}, {"[,1]", 0}, {"{\"a\"}", 0},
  {"{\"a\":1,}", 0}, {"{\"a\\u0000\":1}", 0}, {"'a'", 0}, {"\"abc", 0},
  {"[1 2]", 0}, {"\xC3\xA9", 0},
};

static int jansson_accepts(const char *body, size_t len)
{
  json_error_t e;
  json_t *j = json_loadb(body, len, JSON_ALLOW_NUL, &e);
  json_decref(j);
  return j != NULL;
}

static void test_strict_json(void **state)
{
  (void)state;
  for (size_t i = 0; i < sizeof(k_values) / sizeof(k_values[0]); i++) {
    char body[256];
    int n = snprintf(body, sizeof(body), "{\"Records\":[],\"X\":%s}",
                     k_values[i].value);
    struct kcld_record_batch *b;
    char err[256];
    /* An exact-size copy, so that ASan catches any read past the end. */
    char *copy = malloc((size_t)n);
    memcpy(copy, body, (size_t)n);
    int rc = kcld_getrecords_parse(copy, (size_t)n, "s", &b, err,
                                   sizeof(err));
    print_message("%2zu: %s -> %d %s\n", i, k_values[i].value, rc,
                  rc ? err : "");
    assert_int_equal(jansson_accepts(copy, (size_t)n), k_values[i].ok);
    assert_int_equal(rc, k_values[i].ok ? 0 : KCLD_EPARSE);
    if (rc == 0)
      kcld_record_batch_release(b);
    else
      assert_non_null(strstr(err, "not JSON"));
    free(copy);
  }
  /* jansson skips one NUL byte right after a number or a literal (it puts
   * the byte back and then reads a NUL as "nothing buffered"); bodies it
   * took must still pass, and two NULs are refused. */
  static const char nul1[] = "{\"Records\":[],\"X\":1\0,\"Y\":true\0}";
  static const char nul2[] = "{\"Records\":[],\"X\":1\0\0}";
  static const char nul3[] = "{\"Records\":[],\"X\":\"a\"\0}";
  struct kcld_record_batch *nb;
  assert_true(jansson_accepts(nul1, sizeof(nul1) - 1));
  assert_int_equal(kcld_getrecords_parse(nul1, sizeof(nul1) - 1, "s", &nb,
                                         NULL, 0), 0);
  kcld_record_batch_release(nb);
  assert_false(jansson_accepts(nul2, sizeof(nul2) - 1));
  assert_int_equal(kcld_getrecords_parse(nul2, sizeof(nul2) - 1, "s", &nb,
                                         NULL, 0), KCLD_EPARSE);
  assert_false(jansson_accepts(nul3, sizeof(nul3) - 1));
  assert_int_equal(kcld_getrecords_parse(nul3, sizeof(nul3) - 1, "s", &nb,
                                         NULL, 0), KCLD_EPARSE);

  /* Truncated at every byte, a valid body is refused; whole, it is taken. */
  static const char whole[] =
    " {\"Records\":[{\"Data\":\"QUJD\",\"PartitionKey\":\"\\u00e9\","
    "\"SequenceNumber\":\"1\",\"ApproximateArrivalTimestamp\":1.5e9}],"
    "\"MillisBehindLatest\":0}\r\n\t";
  for (size_t n = 0; n < sizeof(whole); n++) {
    struct kcld_record_batch *b;
    char *copy = malloc(n ? n : 1);
    memcpy(copy, whole, n);
    int rc = kcld_getrecords_parse(copy, n, "s", &b, NULL, 0);
    assert_int_equal(rc == 0, jansson_accepts(copy, n));
    assert_int_equal(rc == 0, n >= sizeof(whole) - 4);
    if (rc == 0)
      kcld_record_batch_release(b);
    free(copy);
  }
}

/* Values nest at most 2048 deep, the response object counting as 1. */
static void test_nesting_limit(void **state)
{
  (void)state;
  for (int depth = 2046; depth <= 2050; depth++) {
    /* {"Records":[],"X":[[...]]}: the outermost '[' of X is at depth 2. */
    size_t narr = (size_t)depth - 1;
    size_t cap = 32 + 2 * narr;
    char *body = malloc(cap);
    size_t n = (size_t)snprintf(body, cap, "{\"Records\":[],\"X\":");
    memset(body + n, '[', narr);
    n += narr;
    memset(body + n, ']', narr);
    n += narr;
    body[n++] = '}';
    struct kcld_record_batch *b;
    char err[256];
    int rc = kcld_getrecords_parse(body, n, "s", &b, err, sizeof(err));
    assert_int_equal(rc == 0, depth <= 2048);
    assert_int_equal(rc == 0, jansson_accepts(body, n));
    if (rc == 0)
      kcld_record_batch_release(b);
    else
      assert_non_null(strstr(err, "maximum parsing depth"));
    free(body);
  }
}

/* ======== Malformed bodies ======== */

#define REC(extra) "{\"Records\":[{\"Data\":\"QUJD\",\"PartitionKey\":\"k\"," \
                   "\"SequenceNumber\":\"1\"}," extra "]}"
#define CHILD(c) "{\"Records\":[],\"ChildShards\":[" c "]}"
#define GOODCHILD "{\"ShardId\":\"s1\",\"ParentShards\":[\"s0\"]," \
                  "\"HashKeyRange\":{\"StartingHashKey\":\"0\"," \
                  "\"EndingHashKey\":\"9\"}}"

static const struct {
  const char *body;
  const char *msg; /* expected substring of the message */
} k_bad[] = {
  {"", "not JSON"},
  {"{\"Records\":[", "not JSON"},
  {"{\"Records\":[]} trailing", "not JSON"},
  {"[]", "not a JSON object"},
  {"\"Records\"", "not JSON"},
  {"{}", "Records is missing"},
  {"{\"Records\":null}", "Records is missing"},
  {"{\"Records\":{}}", "Records is not an array"},
  {REC("7"), "Records[1] is not an object"},
  {REC("{\"PartitionKey\":\"k\",\"SequenceNumber\":\"2\"}"),
   "Records[1].Data is missing"},
  {REC("{\"Data\":5,\"PartitionKey\":\"k\",\"SequenceNumber\":\"2\"}"),
   "Records[1].Data is not a string"},
  {REC("{\"Data\":\"QUJ\",\"PartitionKey\":\"k\",\"SequenceNumber\":\"2\"}"),
   "Records[1] (SequenceNumber 2): Data is not valid base64 (length 3"},
  {REC("{\"Data\":\"QU!D\",\"PartitionKey\":\"k\",\"SequenceNumber\":\"2\"}"),
   "Records[1] (SequenceNumber 2): Data is not valid base64 (at character 2"},
  {REC("{\"Data\":\"Q=Q=\",\"PartitionKey\":\"k\",\"SequenceNumber\":\"2\"}"),
   "not valid base64 (at character 1"},
  {REC("{\"Data\":\"Q===\",\"PartitionKey\":\"k\",\"SequenceNumber\":\"2\"}"),
   "not valid base64 (at character 1"},
  {REC("{\"Data\":\" QUJ\",\"PartitionKey\":\"k\",\"SequenceNumber\":\"2\"}"),
   "not valid base64 (at character 0"},
  {REC("{\"Data\":\"QUJD\\n\\n\\n\\n\",\"PartitionKey\":\"k\","
       "\"SequenceNumber\":\"2\"}"), "not valid base64 (at character 4"},
  {REC("{\"Data\":\"QUJD\",\"SequenceNumber\":\"2\"}"),
   "Records[1].PartitionKey is missing"},
  {REC("{\"Data\":\"QUJD\",\"PartitionKey\":[],\"SequenceNumber\":\"2\"}"),
   "Records[1].PartitionKey is not a string"},
  {REC("{\"Data\":\"QUJD\",\"PartitionKey\":\"k\"}"),
   "Records[1].SequenceNumber is missing"},
  {REC("{\"Data\":\"QUJD\",\"PartitionKey\":\"k\",\"SequenceNumber\":2}"),
   "Records[1].SequenceNumber is not a string"},
  {REC("{\"Data\":\"QUJD\",\"PartitionKey\":\"k\",\"SequenceNumber\":\"\"}"),
   "Records[1].SequenceNumber \"\" is not a decimal"},
  {REC("{\"Data\":\"QUJD\",\"PartitionKey\":\"k\",\"SequenceNumber\":"
       "\"12a\"}"), "Records[1].SequenceNumber \"12a\" is not a decimal"},
  {REC("{\"Data\":\"QUJD\",\"PartitionKey\":\"k\",\"SequenceNumber\":"
       "\"1\\u00002\"}"), "Records[1].SequenceNumber holds a NUL"},
  {REC("{\"Data\":\"QUJD\",\"PartitionKey\":\"k\",\"SequenceNumber\":\"2\","
       "\"ApproximateArrivalTimestamp\":\"2019-07-08\"}"),
   "Records[1] (SequenceNumber 2): ApproximateArrivalTimestamp is not a "
   "number"},
  {REC("{\"Data\":\"QUJD\",\"PartitionKey\":\"k\",\"SequenceNumber\":\"2\","
       "\"ApproximateArrivalTimestamp\":-1.5}"),
   "ApproximateArrivalTimestamp -1.5 is out of range"},
  {REC("{\"Data\":\"QUJD\",\"PartitionKey\":\"k\",\"SequenceNumber\":\"2\","
       "\"ApproximateArrivalTimestamp\":1e300}"),
   "ApproximateArrivalTimestamp 1e+300 is out of range"},
  {REC("{\"Data\":\"QUJD\",\"PartitionKey\":\"k\",\"SequenceNumber\":\"2\","
       "\"EncryptionType\":1}"), "EncryptionType is not a string"},
  {"{\"Records\":[],\"NextShardIterator\":1}",
   "NextShardIterator is not a string"},
  {"{\"Records\":[],\"MillisBehindLatest\":\"0\"}",
   "MillisBehindLatest is not a number"},
  {"{\"Records\":[],\"MillisBehindLatest\":-3}",
   "MillisBehindLatest is out of range"},
  {"{\"Records\":[],\"ChildShards\":{}}", "ChildShards is not an array"},
  {CHILD(GOODCHILD ",3"), "ChildShards[1] is not an object"},
  {CHILD(GOODCHILD ",{\"ParentShards\":[],\"HashKeyRange\":"
         "{\"StartingHashKey\":\"0\",\"EndingHashKey\":\"9\"}}"),
   "ChildShards[1].ShardId is missing"},
  {CHILD("{\"ShardId\":\"s1\",\"HashKeyRange\":{\"StartingHashKey\":\"0\","
         "\"EndingHashKey\":\"9\"}}"),
   "ChildShards[0].ParentShards is missing"},
  {CHILD("{\"ShardId\":\"s1\",\"ParentShards\":\"s0\",\"HashKeyRange\":"
         "{\"StartingHashKey\":\"0\",\"EndingHashKey\":\"9\"}}"),
   "ChildShards[0].ParentShards is not an array"},
  {CHILD("{\"ShardId\":\"s1\",\"ParentShards\":[\"s0\",null],"
         "\"HashKeyRange\":{\"StartingHashKey\":\"0\",\"EndingHashKey\":"
         "\"9\"}}"), "ChildShards[0].ParentShards[1] is not a string"},
  {CHILD("{\"ShardId\":\"s1\",\"ParentShards\":[\"s0\"]}"),
   "ChildShards[0].HashKeyRange is missing"},
  {CHILD("{\"ShardId\":\"s1\",\"ParentShards\":[\"s0\"],\"HashKeyRange\":"
         "{\"StartingHashKey\":0,\"EndingHashKey\":\"9\"}}"),
   "ChildShards[0].HashKeyRange.StartingHashKey is not a string"},
  {CHILD("{\"ShardId\":\"s1\",\"ParentShards\":[\"s0\"],\"HashKeyRange\":"
         "{\"StartingHashKey\":\"0\"}}"),
   "ChildShards[0].HashKeyRange.EndingHashKey is missing"},
};

static void test_malformed_bodies(void **state)
{
  (void)state;
  for (size_t i = 0; i < sizeof(k_bad) / sizeof(k_bad[0]); i++) {
    struct kcld_record_batch *b = (struct kcld_record_batch *)&b;
    char err[256];
    /* An exact-size copy, so that ASan catches any read past the end. */
    size_t len = strlen(k_bad[i].body);
    char *copy = malloc(len ? len : 1);
    memcpy(copy, k_bad[i].body, len);
    int rc = kcld_getrecords_parse(copy, len, "s", &b, err, sizeof(err));
    print_message("%2zu: %s\n", i, err);
    assert_int_equal(rc, KCLD_EPARSE);
    assert_null(b);
    assert_non_null(strstr(err, k_bad[i].msg));
    free(copy);
  }
  /* A tiny buffer still gets a (truncated) message; NULLs are refused. */
  struct kcld_record_batch *b;
  char small[8];
  assert_int_equal(kcld_getrecords_parse("{}", 2, "s", &b, small,
                                         sizeof(small)), KCLD_EPARSE);
  assert_string_equal(small, "Records");
  assert_int_equal(kcld_getrecords_parse("{}", 2, "s", &b, NULL, 0),
                   KCLD_EPARSE);
  assert_int_equal(kcld_getrecords_parse(NULL, 0, "s", &b, NULL, 0),
                   KCLD_EINVAL);
  assert_int_equal(kcld_getrecords_parse("{}", 2, "s", NULL, NULL, 0),
                   KCLD_EINVAL);
}

/* A refused response logs no warning for the corrupt aggregate before the
 * bad record: the response is refused whole. */
static void test_refused_logs_nothing(void **state)
{
  (void)state;
  uint8_t bad[1024];
  size_t bad_len = make_aggregate(bad, sizeof(bad), 2, 1);
  json_t *records = json_array();
  add_record(records, bad, bad_len, "a", k_seq1);
  json_array_append_new(records, json_pack("{s:s, s:s, s:s}", "Data", "!!!!",
                                           "PartitionKey", "k",
                                           "SequenceNumber", k_seq2));
  json_t *body = json_pack("{s:o}", "Records", records);
  size_t len;
  char *text = dump(body, &len);
  struct kcld_record_batch *b;
  char err[256];
  struct capture cap;
  capture_start(&cap);
  assert_int_equal(kcld_getrecords_parse(text, len, "s", &b, err,
                                         sizeof(err)), KCLD_EPARSE);
  capture_end(&cap);
  assert_non_null(strstr(err, "Records[1]"));
  assert_int_equal(cap.len, 0);
  free(cap.buf);
  free(text);
  json_decref(body);
}

/* ======== References and threads ======== */

static void test_refcount(void **state)
{
  (void)state;
  const char *body = "{\"Records\":[{\"Data\":\"QUJD\",\"PartitionKey\":\"k\","
                     "\"SequenceNumber\":\"1\"}]}";
  struct kcld_record_batch *b;
  assert_int_equal(kcld_getrecords_parse(body, strlen(body), "s", &b, NULL,
                                         0), 0);
  const struct kcld_record *r = &b->records[0];
  assert_ptr_equal(kcld_record_batch_acquire(r->batch), b);
  kcld_record_batch_acquire(b);
  kcld_record_batch_release(b);
  kcld_record_batch_release(b);
  assert_memory_equal(r->data, "ABC", 3); /* one reference still held */
  kcld_record_batch_release(r->batch);  /* the last: ASan checks the rest */
  kcld_record_batch_release(NULL);
}

struct worker {
  const char *text;
  size_t len;
  const struct kcld_record_batch *ref;
  int mismatches;
  struct kcld_record_batch *keep; /* released by the main thread */
};

static void *parse_many(void *arg)
{
  struct worker *w = arg;
  for (int round = 0; round < 20; round++) {
    struct kcld_record_batch *b;
    if (kcld_getrecords_parse(w->text, w->len, "s", &b, NULL, 0) != 0 ||
        b->count != w->ref->count) {
      w->mismatches++;
      continue;
    }
    for (size_t i = 0; i < b->count; i++) {
      const struct kcld_record *x = &b->records[i], *y = &w->ref->records[i];
      if (x->data_len != y->data_len ||
          memcmp(x->data, y->data, x->data_len) != 0 ||
          strcmp(x->partition_key, y->partition_key) != 0 ||
          strcmp(x->sequence_number, y->sequence_number) != 0 ||
          x->sub_sequence_number != y->sub_sequence_number)
        w->mismatches++;
    }
    if (round == 19)
      w->keep = b;
    else
      kcld_record_batch_release(b);
  }
  return NULL;
}

static void test_threads(void **state)
{
  (void)state;
  enum { NT = 4, NREC = 300 };
  uint8_t agg[1024];
  size_t agg_len = make_aggregate(agg, sizeof(agg), 5, 0);
  json_t *records = json_array();
  char seq[32];
  for (int i = 0; i < NREC; i++) {
    snprintf(seq, sizeof(seq), "%d", 1000 + i);
    if (i % 3 == 0)
      add_record(records, agg, agg_len, "a", seq);
    else
      add_record(records, seq, strlen(seq), seq, seq);
  }
  json_t *body = json_pack("{s:o, s:s}", "Records", records,
                           "NextShardIterator", "x");
  size_t len;
  char *text = dump(body, &len);
  struct kcld_record_batch *ref;
  assert_int_equal(kcld_getrecords_parse(text, len, "s", &ref, NULL, 0), 0);
  assert_int_equal(ref->count, NREC / 3 * 5 + (NREC - NREC / 3));

  pthread_t th[NT];
  struct worker w[NT];
  for (int i = 0; i < NT; i++) {
    w[i] = (struct worker){text, len, ref, 0, NULL};
    assert_int_equal(pthread_create(&th[i], NULL, parse_many, &w[i]), 0);
  }
  for (int i = 0; i < NT; i++) {
    assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_int_equal(w[i].mismatches, 0);
    /* Made on another thread, released on this one. */
    kcld_record_batch_release(w[i].keep);
  }
  kcld_record_batch_release(ref);
  free(text);
  json_decref(body);
}

int main(void)
{
  /* Seed jansson's hash once, before any thread parses (see getrecords.h). */
  json_object_seed(0);
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_mixed_body),
    cmocka_unit_test(test_plain_is_one_block),
    cmocka_unit_test(test_empty_and_shard_end),
    cmocka_unit_test(test_odd_keys),
    cmocka_unit_test(test_escapes_and_unknown),
    cmocka_unit_test(test_repeated_members),
    cmocka_unit_test(test_strict_json),
    cmocka_unit_test(test_nesting_limit),
    cmocka_unit_test(test_real_kpl_body),
    cmocka_unit_test(test_fanout_events),
    cmocka_unit_test(test_malformed_bodies),
    cmocka_unit_test(test_refused_logs_nothing),
    cmocka_unit_test(test_refcount),
    cmocka_unit_test(test_threads),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
