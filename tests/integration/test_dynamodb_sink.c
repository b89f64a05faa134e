/* test_dynamodb_sink.c — the DynamoDB sink in process, on a real uv loop,
 * against dynalite behind the fault endpoint: batch and conditional writes
 * with redelivered (duplicate) records, records that are not JSON, lack a
 * key field or make an oversized item, throttled writes, a missing table,
 * and bad key templates refused at start-up.  Every scenario ends with every
 * good record's item in the table: nothing lost. */
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

#include "aws/call.h"
#include "aws/credentials.h"
#include "aws/dynamodb.h"
#include "aws/http.h"
#include "awssync.h"
#include "config.h"
#include "consume/getrecords.h"
#include "err.h"
#include "fault.h"
#include "proc.h"
#include "handlers/dynamodb_sink.h"
#include "handlers/handler.h"
#include "harness.h"

#define WAIT_MS 20000

static struct kcld_emu s_emu;
static struct kcld_test_aws *s_aws;  /* set-up and checks, direct */

struct env {
  uv_loop_t loop;
  struct kcld_http *http;
  struct kcld_credentials *creds;
  struct kcld_aws *aws;
  struct kcld_config *cfg;
  struct kcld_handler *h;
};

/* Starts a sink with the handler section `handler_yaml` (indented two
 * spaces), through the fault endpoint; max_attempts 0 = client default. */
static int env_up(struct env *e, const char *handler_yaml, int max_attempts)
{
  struct kcld_credentials_opts co = {0};
  struct kcld_aws_opts ao = {0};
  struct kcld_handler_env he = {0};
  char yaml[2048], *errors = NULL;

  memset(e, 0, sizeof(*e));
  snprintf(yaml, sizeof(yaml),
           "application: sinktest\nstream: s\nhandler:\n  type: dynamodb\n%s",
           handler_yaml);
  if (kcld_config_parse("test.yaml", yaml, strlen(yaml), &e->cfg,
                        &errors) != 0)
    fail_msg("config: %s", errors ? errors : "?");
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
  ao.endpoint[KCLD_AWS_DYNAMODB] = kcld_emu_url(&s_emu, "fault");
  ao.retry_base_ms = 5;
  ao.max_attempts = max_attempts;
  assert_int_equal(kcld_aws_new(&ao, &e->aws), 0);
  he.loop = &e->loop;
  he.cfg = e->cfg;
  he.aws = e->aws;
  he.region = "us-east-1";
  he.stream_arn = "";
  return kcld_handler_new(&he, &e->h);
}

static void env_down(struct env *e)
{
  if (e->h)
    kcld_handler_close(e->h);
  kcld_aws_close(e->aws);
  kcld_credentials_close(e->creds);
  kcld_http_close(e->http);
  kcld_test_loop_finish(&e->loop);
  kcld_config_free(e->cfg);
}

static void proxy_script(const char *steps_json, const char *then)
{
  char script[4096];
  snprintf(script, sizeof(script),
           "{\"upstream\":\"%s\",\"then\":\"%s\",\"steps\":%s}",
           kcld_emu_url(&s_emu, "dynamodb"), then, steps_json);
  assert_int_equal(kcld_fault_script(kcld_emu_url(&s_emu, "fault"), script),
                   0);
}

/* ======== Tables ======== */

static void create_table(const char *name, int with_sk)
{
  const char *type = NULL;
  json_t *req = with_sk
    ? json_pack("{ss s[{ssss}{ssss}] s[{ssss}{ssss}] ss}", "TableName", name,
                "KeySchema", "AttributeName", "pk", "KeyType", "HASH",
                "AttributeName", "sk", "KeyType", "RANGE",
                "AttributeDefinitions", "AttributeName", "pk",
                "AttributeType", "S", "AttributeName", "sk", "AttributeType",
                "S", "BillingMode", "PAY_PER_REQUEST")
    : json_pack("{ss s[{ssss}] s[{ssss}] ss}", "TableName", name,
                "KeySchema", "AttributeName", "pk", "KeyType", "HASH",
                "AttributeDefinitions", "AttributeName", "pk",
                "AttributeType", "S", "BillingMode", "PAY_PER_REQUEST");
  json_t *res = kcld_test_aws_call(s_aws, KCLD_AWS_DYNAMODB, "CreateTable",
                                   req, &type);
  if (!res)
    fail_msg("CreateTable %s: %s", name, type);
  json_decref(res);
  json_decref(req);
  for (int i = 0; i < 100; i++) {
    req = json_pack("{ss}", "TableName", name);
    res = kcld_test_aws_call(s_aws, KCLD_AWS_DYNAMODB, "DescribeTable", req,
                             &type);
    json_decref(req);
    const char *st = json_string_value(json_object_get(
      json_object_get(res, "Table"), "TableStatus"));
    int active = st && strcmp(st, "ACTIVE") == 0;
    json_decref(res);
    if (active)
      return;
  }
  fail_msg("table %s never became ACTIVE", name);
}

/* Every item of the table, as an object "pk|sk" -> item. */
static json_t *scan(const char *table)
{
  json_t *all = json_object(), *start = NULL;
  do {
    const char *type = NULL;
    json_t *req = json_pack("{ss}", "TableName", table);
    if (start)
      json_object_set_new(req, "ExclusiveStartKey", start);
    json_t *res = kcld_test_aws_call(s_aws, KCLD_AWS_DYNAMODB, "Scan", req,
                                     &type);
    json_decref(req);
    if (!res)
      fail_msg("Scan %s: %s", table, type);
    size_t i;
    json_t *it;
    json_array_foreach(json_object_get(res, "Items"), i, it) {
      char key[512];
      const char *sk = kcld_dynamodb_as_s(kcld_dynamodb_attr(it, "sk"));
      snprintf(key, sizeof(key), "%s|%s",
               kcld_dynamodb_as_s(kcld_dynamodb_attr(it, "pk")),
               sk ? sk : "");
      json_object_set(all, key, it);
    }
    start = json_incref(json_object_get(res, "LastEvaluatedKey"));
    json_decref(res);
  } while (start);
  return all;
}

/* ======== Records ======== */

/* A GetRecords body with one record per payload; sequence numbers are
 * <prefix><i as 6 digits>, partition keys "pk-<i>", arrival
 * 1763893800.123 + i seconds.  Returns the parsed batch. */
static struct kcld_record_batch *make_batch(const char *prefix,
                                            const char *const *payloads,
                                            size_t n)
{
  json_t *recs = json_array(), *body;
  struct kcld_record_batch *b = NULL;
  char err[256];

  for (size_t i = 0; i < n; i++) {
    size_t len = strlen(payloads[i]);
    char *b64 = malloc(4 * ((len + 2) / 3) + 1);
    char seq[128], pk[32];
    EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)payloads[i],
                    (int)len);
    snprintf(seq, sizeof(seq), "%s%06zu", prefix, i);
    snprintf(pk, sizeof(pk), "pk-%zu", i);
    json_array_append_new(recs, json_pack("{ss ss ss sf}", "Data", b64,
                                          "PartitionKey", pk,
                                          "SequenceNumber", seq,
                                          "ApproximateArrivalTimestamp",
                                          1763893800.123 + (double)i));
    free(b64);
  }
  body = json_pack("{so ss si}", "Records", recs, "NextShardIterator", "it",
                   "MillisBehindLatest", 0);
  char *text = json_dumps(body, JSON_COMPACT);
  if (kcld_getrecords_parse(text, strlen(text), "shardId-000000000001", &b,
                            err, sizeof(err)) != 0)
    fail_msg("getrecords: %s", err);
  assert_int_equal(b->count, n);
  free(text);
  json_decref(body);
  return b;
}

static void free_payloads(char **p, size_t n)
{
  for (size_t i = 0; i < n; i++)
    free(p[i]);
  free(p);
}

/* n payloads {"deviceId":"dev-<i % devices>","n":<i>,"price":"<i>.50",
 * "tag":"<tag>"}. */
static char **payloads_for(size_t n, size_t devices, const char *tag)
{
  char **p = calloc(n, sizeof(*p));
  for (size_t i = 0; i < n; i++) {
    char buf[256];
    snprintf(buf, sizeof(buf),
             "{\"deviceId\":\"dev-%zu\",\"n\":%zu,\"price\":%zu.50,"
             "\"tag\":\"%s\",\"nested\":{\"ok\":true,\"l\":[1,\"x\",null]}}",
             i % devices, i, i, tag);
    p[i] = strdup(buf);
  }
  return p;
}

/* ======== Running the handler ======== */

struct answer {
  int done;
  enum kcld_handler_status status;
  enum kcld_handler_failure_class cls;
  size_t first_failed;
  char type[128];
  char msg[512];
};

static void on_done(const struct kcld_handler_result *r, void *arg)
{
  struct answer *a = arg;
  a->done++;
  a->status = r->status;
  a->cls = r->failure_class;
  a->first_failed = r->first_failed;
  snprintf(a->type, sizeof(a->type), "%s", r->error_type ? r->error_type : "");
  snprintf(a->msg, sizeof(a->msg), "%s",
           r->error_message ? r->error_message : "");
}

/* Runs records [from, from + count) of b through the handler. */
static struct answer run(struct env *e, struct kcld_record_batch *b,
                         size_t from, size_t count)
{
  const struct kcld_record **ptrs = calloc(count ? count : 1, sizeof(*ptrs));
  struct kcld_handler_batch hb = {0};
  struct answer a = {0};

  for (size_t i = 0; i < count; i++)
    ptrs[i] = &b->records[from + i];
  hb.shard_id = "shardId-000000000001";
  hb.records = ptrs;
  hb.count = count;
  hb.millis_behind_latest = 0;
  hb.attempt = 1;
  assert_int_equal(kcld_handler_process(e->h, &hb, on_done, &a), 0);
  assert_true(kcld_test_run_until(&e->loop, &a.done, WAIT_MS));
  assert_int_equal(a.done, 1);
  free(ptrs);
  return a;
}

/* What the engine does with a batch: run it; on PARTIAL/FAILED, retry from
 * first_failed; a record that fails `give_up` times in a row is dead-lettered
 * (its index appended to *dlq) and skipped.  Returns the answers seen. */
static size_t drive(struct env *e, struct kcld_record_batch *b, size_t n,
                    size_t *dlq, size_t *ndlq, char types[][32],
                    size_t max_types)
{
  size_t pos = 0, seen = 0, fails = 0;
  *ndlq = 0;
  while (pos < n) {
    struct answer a = run(e, b, pos, n - pos);
    if (a.status == KCLD_HANDLER_OK)
      return seen;
    if (seen < max_types)
      snprintf(types[seen], 32, "%.31s", a.type);
    seen++;
    size_t ff = a.status == KCLD_HANDLER_PARTIAL ? a.first_failed : 0;
    assert_true(ff < n - pos);
    if (ff > 0)
      fails = 0;
    pos += ff;
    if (++fails >= 2) {
      dlq[(*ndlq)++] = pos;
      pos++;
      fails = 0;
    }
  }
  return seen;
}

static struct kcld_dynamodb_sink_stats stats(const struct env *e)
{
  struct kcld_dynamodb_sink_stats s;
  kcld_dynamodb_sink_stats(e->h, &s);
  return s;
}

/* ======== Tests ======== */

static void check_item(json_t *items, const char *key, size_t i,
                       const char *tag)
{
  json_t *it = json_object_get(items, key);
  char want[64];
  int64_t v = -1;
  if (!it)
    fail_msg("no item %s", key);
  assert_int_equal(kcld_dynamodb_as_i64(kcld_dynamodb_attr(it, "n"), &v), 0);
  assert_int_equal(v, (int64_t)i);
  snprintf(want, sizeof(want), "%zu.5", i);   /* dynalite normalizes N */
  assert_string_equal(kcld_dynamodb_as_n(kcld_dynamodb_attr(it, "price")),
                      want);
  assert_string_equal(kcld_dynamodb_as_s(kcld_dynamodb_attr(it, "tag")), tag);
  assert_string_equal(kcld_dynamodb_as_s(kcld_dynamodb_attr(it, "shardId")),
                      "shardId-000000000001");
  assert_non_null(kcld_dynamodb_as_n(kcld_dynamodb_attr(it, "processedAt")));
  assert_int_equal(kcld_dynamodb_as_i64(
                     kcld_dynamodb_attr(it, "approximateArrivalTimestamp"),
                     &v), 0);
  assert_int_equal(v, 1763893800123LL + 1000 * (int64_t)i);
  json_t *nested = kcld_dynamodb_as_m(kcld_dynamodb_attr(it, "nested"));
  int b = 0;
  assert_int_equal(kcld_dynamodb_as_bool(kcld_dynamodb_attr(nested, "ok"),
                                         &b), 0);
  assert_int_equal(b, 1);
  json_t *l = kcld_dynamodb_as_l(kcld_dynamodb_attr(nested, "l"));
  assert_int_equal(json_array_size(l), 3);
  assert_true(kcld_dynamodb_is_null(json_array_get(l, 2)));
}

/* 60 records in three BatchWriteItem calls; the same records again rewrite
 * the same 60 items. */
static void test_batch_redelivery(void **state)
{
  struct env e;
  const char *pre = "4960000000000000000000000001";
  char **p = payloads_for(60, 60, "first");
  struct kcld_record_batch *b = make_batch(pre, (const char *const *)p, 60);
  (void)state;

  create_table("sink-batch", 1);
  proxy_script("[]", "proxy");
  assert_int_equal(env_up(&e, "  table: sink-batch\n"
                              "  key:\n"
                              "    pk: \"${data.deviceId}#${day(arrival)}\"\n"
                              "    sk: \"${sequenceNumber}\"\n"
                              "  ttl: 1h\n", 0), 0);
  struct answer a = run(&e, b, 0, 60);
  assert_int_equal(a.status, KCLD_HANDLER_OK);
  assert_int_equal(kcld_fault_count(kcld_emu_url(&s_emu, "fault"), NULL,
                                    "DynamoDB_20120810.BatchWriteItem"), 3);
  json_t *items = scan("sink-batch");
  assert_int_equal(json_object_size(items), 60);
  for (size_t i = 0; i < 60; i++) {
    char key[256];
    snprintf(key, sizeof(key), "dev-%zu#2025-11-23|%s%06zu", i, pre, i);
    check_item(items, key, i, "first");
    int64_t ttl = 0, at = 0;
    json_t *it = json_object_get(items, key);
    assert_int_equal(kcld_dynamodb_as_i64(kcld_dynamodb_attr(it, "ttl"),
                                          &ttl), 0);
    assert_int_equal(kcld_dynamodb_as_i64(kcld_dynamodb_attr(it,
                                                             "processedAt"),
                                          &at), 0);
    assert_int_equal(ttl, (at + 3600 * 1000) / 1000);
  }
  json_decref(items);

  /* Redelivery: the same items again, no error, still 60. */
  a = run(&e, b, 0, 60);
  assert_int_equal(a.status, KCLD_HANDLER_OK);
  items = scan("sink-batch");
  assert_int_equal(json_object_size(items), 60);
  json_decref(items);
  struct kcld_dynamodb_sink_stats st = stats(&e);
  assert_int_equal(st.items_written, 120);
  assert_int_equal(st.duplicates, 0);
  assert_int_equal(st.record_failures, 0);
  assert_int_equal(st.calls, 6);
  env_down(&e);
  kcld_record_batch_release(b);
  free_payloads(p, 60);
}

/* Several records with one key in a batch: never two in one call, the last
 * one wins. */
static void test_batch_same_key(void **state)
{
  struct env e;
  char **p = payloads_for(7, 2, "k");
  struct kcld_record_batch *b = make_batch("4960000000000000000000000002",
                                           (const char *const *)p, 7);
  (void)state;

  create_table("sink-samekey", 0);
  proxy_script("[]", "proxy");
  assert_int_equal(env_up(&e, "  table: sink-samekey\n"
                              "  key:\n"
                              "    pk: \"${data.deviceId}\"\n"
                              "    sk: \"\"\n", 0), 0);
  struct answer a = run(&e, b, 0, 7);
  assert_int_equal(a.status, KCLD_HANDLER_OK);
  json_t *items = scan("sink-samekey");
  assert_int_equal(json_object_size(items), 2);
  int64_t v = 0;
  assert_int_equal(kcld_dynamodb_as_i64(kcld_dynamodb_attr(
                     json_object_get(items, "dev-0|"), "n"), &v), 0);
  assert_int_equal(v, 6);
  assert_int_equal(kcld_dynamodb_as_i64(kcld_dynamodb_attr(
                     json_object_get(items, "dev-1|"), "n"), &v), 0);
  assert_int_equal(v, 5);
  assert_null(kcld_dynamodb_attr(json_object_get(items, "dev-0|"), "sk"));
  /* dev-0 dev-1 | dev-0 dev-1 | dev-0 dev-1 | dev-0 */
  assert_int_equal(stats(&e).calls, 4);
  assert_int_equal(stats(&e).items_written, 7);
  json_decref(items);
  env_down(&e);
  kcld_record_batch_release(b);
  free_payloads(p, 7);
}

/* Conditional writes: the first delivery writes, a redelivery is all
 * duplicates and changes nothing; a key repeated inside a batch is a
 * duplicate too. */
static void test_conditional_duplicates(void **state)
{
  struct env e;
  const char *pre = "4960000000000000000000000003";
  char **p = payloads_for(30, 30, "cond");
  struct kcld_record_batch *b = make_batch(pre, (const char *const *)p, 30);
  (void)state;

  create_table("sink-cond", 1);
  proxy_script("[]", "proxy");
  assert_int_equal(env_up(&e, "  table: sink-cond\n"
                              "  key:\n"
                              "    pk: \"${partitionKey}\"\n"
                              "    sk: \"${sequenceNumber}\"\n"
                              "  write: conditional\n", 0), 0);
  struct answer a = run(&e, b, 0, 30);
  assert_int_equal(a.status, KCLD_HANDLER_OK);
  json_t *first = scan("sink-cond");
  assert_int_equal(json_object_size(first), 30);
  for (size_t i = 0; i < 30; i++) {
    char key[256];
    snprintf(key, sizeof(key), "pk-%zu|%s%06zu", i, pre, i);
    check_item(first, key, i, "cond");
  }
  struct kcld_dynamodb_sink_stats st = stats(&e);
  assert_int_equal(st.items_written, 30);
  assert_int_equal(st.duplicates, 0);

  /* Redelivered (a retry from record 10): duplicates, not errors. */
  a = run(&e, b, 10, 20);
  assert_int_equal(a.status, KCLD_HANDLER_OK);
  st = stats(&e);
  assert_int_equal(st.items_written, 30);
  assert_int_equal(st.duplicates, 20);
  assert_int_equal(kcld_fault_count(kcld_emu_url(&s_emu, "fault"), NULL,
                                    "DynamoDB_20120810.PutItem"), 50);
  json_t *again = scan("sink-cond");
  assert_true(json_equal(first, again));   /* first writer kept */
  json_decref(first);
  json_decref(again);
  env_down(&e);
  kcld_record_batch_release(b);
  free_payloads(p, 30);

  /* One key twice in one batch: one PutItem, one duplicate. */
  const char *same[] = {"{\"id\":\"a\",\"v\":1}", "{\"id\":\"a\",\"v\":2}",
                        "{\"id\":\"b\",\"v\":3}"};
  b = make_batch("4960000000000000000000000004", same, 3);
  create_table("sink-cond2", 0);
  assert_int_equal(env_up(&e, "  table: sink-cond2\n"
                              "  key:\n"
                              "    pk: \"${data.id}\"\n"
                              "    sk: \"\"\n"
                              "  write: conditional\n", 0), 0);
  a = run(&e, b, 0, 3);
  assert_int_equal(a.status, KCLD_HANDLER_OK);
  st = stats(&e);
  assert_int_equal(st.items_written, 2);
  assert_int_equal(st.duplicates, 1);
  assert_int_equal(st.calls, 2);
  json_t *items = scan("sink-cond2");
  int64_t v = 0;
  assert_int_equal(kcld_dynamodb_as_i64(kcld_dynamodb_attr(
                     json_object_get(items, "a|"), "v"), &v), 0);
  assert_int_equal(v, 1);
  json_decref(items);
  env_down(&e);
  kcld_record_batch_release(b);
}

/* Records that are not JSON, lack the key field, or are too big: each one
 * stops its batch as PARTIAL right at it, the records before are written,
 * and driving the batch like the engine does dead-letters exactly those
 * three and writes all the others. */
static void bad_records(const char *table, const char *mode)
{
  struct env e;
  const size_t n = 12;
  char **p = payloads_for(n, n, "bad");
  size_t big = 420 * 1024;
  char yaml[512];

  free(p[3]);
  p[3] = strdup("{\"deviceId\":\"dev-3\",\"n\":3,");          /* not JSON */
  free(p[6]);
  p[6] = strdup("{\"n\":6,\"price\":6.50}");                  /* no key */
  free(p[9]);
  p[9] = malloc(big + 64);
  int len = snprintf(p[9], 64, "{\"deviceId\":\"dev-9\",\"blob\":\"");
  memset(p[9] + len, 'z', big);
  strcpy(p[9] + len + big, "\"}");

  struct kcld_record_batch *b = make_batch("4960000000000000000000000005",
                                           (const char *const *)p, n);
  create_table(table, 1);
  proxy_script("[]", "proxy");
  snprintf(yaml, sizeof(yaml), "  table: %s\n  key:\n"
           "    pk: \"${data.deviceId}\"\n    sk: \"${sequenceNumber}\"\n"
           "  write: %s\n", table, mode);
  assert_int_equal(env_up(&e, yaml, 0), 0);

  struct answer a = run(&e, b, 0, n);
  assert_int_equal(a.status, KCLD_HANDLER_PARTIAL);
  assert_int_equal(a.cls, KCLD_HANDLER_RECORD);
  assert_int_equal(a.first_failed, 3);
  assert_string_equal(a.type, "InvalidJSON");
  assert_non_null(strstr(a.msg, "not JSON"));
  json_t *items = scan(table);
  assert_int_equal(json_object_size(items), 3);   /* 0, 1, 2 */
  json_decref(items);

  size_t dlq[8], ndlq = 0;
  char types[16][32];
  size_t seen = drive(&e, b, n, dlq, &ndlq, types, 16);
  assert_int_equal(ndlq, 3);
  assert_int_equal(dlq[0], 3);
  assert_int_equal(dlq[1], 6);
  assert_int_equal(dlq[2], 9);
  assert_int_equal(seen, 6);
  assert_string_equal(types[0], "InvalidJSON");
  assert_string_equal(types[2], "MissingKeyField");
  assert_string_equal(types[4], "ItemTooLarge");
  items = scan(table);
  assert_int_equal(json_object_size(items), n - 3);
  for (size_t i = 0; i < n; i++) {
    char key[256];
    if (i == 3 || i == 6 || i == 9)
      continue;
    snprintf(key, sizeof(key), "dev-%zu|4960000000000000000000000005%06zu",
             i, i);
    check_item(items, key, i, "bad");
  }
  json_decref(items);
  assert_int_equal(stats(&e).record_failures, 7);  /* first run + 6 */
  env_down(&e);
  kcld_record_batch_release(b);
  free_payloads(p, n);
}

static void test_bad_records_batch(void **state)
{
  (void)state;
  bad_records("sink-bad-batch", "batch");
}

static void test_bad_records_conditional(void **state)
{
  (void)state;
  bad_records("sink-bad-cond", "conditional");
}

#define THROTTLE "{\"target\":\"BatchWriteItem\",\"status\":400,\"body\":" \
  "{\"__type\":\"com.amazonaws.dynamodb.v20120810#" \
  "ProvisionedThroughputExceededException\",\"message\":\"slow down\"}"

/* Throttled BatchWriteItem calls: a short burst is absorbed by the
 * client's retries; a lasting one ends the batch PARTIAL at the first chunk
 * not written, and the retry from there writes the rest. */
static void test_batch_throttled(void **state)
{
  struct env e;
  const char *pre = "4960000000000000000000000006";
  char **p = payloads_for(60, 60, "thr");
  struct kcld_record_batch *b = make_batch(pre, (const char *const *)p, 60);
  const char *fault = kcld_emu_url(&s_emu, "fault");
  (void)state;

  create_table("sink-throttle", 1);
  assert_int_equal(env_up(&e, "  table: sink-throttle\n"
                              "  key:\n"
                              "    pk: \"${partitionKey}\"\n"
                              "    sk: \"${sequenceNumber}\"\n", 3), 0);
  proxy_script("[" THROTTLE ",\"times\":2}]", "proxy");
  struct answer a = run(&e, b, 0, 30);
  assert_int_equal(a.status, KCLD_HANDLER_OK);
  assert_int_equal(kcld_fault_count(fault, NULL,
                                    "DynamoDB_20120810.BatchWriteItem"), 4);
  assert_int_equal(kcld_fault_count(fault, "steps_used", NULL), 2);

  /* The first call of the next batch passes, then throttling lasts. */
  proxy_script("[{\"target\":\"BatchWriteItem\"}," THROTTLE "}]",
               "repeat-last");
  a = run(&e, b, 30, 30);
  assert_int_equal(a.status, KCLD_HANDLER_PARTIAL);
  assert_int_equal(a.cls, KCLD_HANDLER_INFRA); /* throttling: not the data */
  assert_int_equal(a.first_failed, 25);
  assert_string_equal(a.type, "ProvisionedThroughputExceededException");
  assert_int_equal(kcld_fault_count(fault, NULL,
                                    "DynamoDB_20120810.BatchWriteItem"), 4);
  assert_int_equal(stats(&e).write_failures, 1);
  json_t *items = scan("sink-throttle");
  assert_int_equal(json_object_size(items), 55);
  json_decref(items);

  /* Throttled from the start: FAILED, nothing written. */
  proxy_script("[" THROTTLE "}]", "repeat-last");
  a = run(&e, b, 55, 5);
  assert_int_equal(a.status, KCLD_HANDLER_FAILED);
  assert_int_equal(a.cls, KCLD_HANDLER_INFRA);
  assert_string_equal(a.type, "ProvisionedThroughputExceededException");

  /* The throttling ends; the retry from the first failed record. */
  proxy_script("[]", "proxy");
  a = run(&e, b, 55, 5);
  assert_int_equal(a.status, KCLD_HANDLER_OK);
  items = scan("sink-throttle");
  assert_int_equal(json_object_size(items), 60);
  for (size_t i = 0; i < 60; i++) {
    char key[256];
    snprintf(key, sizeof(key), "pk-%zu|%s%06zu", i, pre, i);
    check_item(items, key, i, "thr");
  }
  json_decref(items);
  assert_int_equal(stats(&e).items_written, 60);
  env_down(&e);
  kcld_record_batch_release(b);
  free_payloads(p, 60);
}

/* DynamoDB refusing a whole BatchWriteItem call (ValidationException):
 * the chunk goes again item by item and the batch ends PARTIAL at the one
 * item DynamoDB refuses; the items before it are written. */
static void test_batch_validation(void **state)
{
  struct env e;
  const char *pre = "4960000000000000000000000010";
  const size_t n = 10;
  char **p = payloads_for(n, n, "val");
  struct kcld_record_batch *b = make_batch(pre, (const char *const *)p, n);
  const char *fault = kcld_emu_url(&s_emu, "fault");
  (void)state;

  create_table("sink-valid", 1);
  assert_int_equal(env_up(&e, "  table: sink-valid\n"
                              "  key:\n"
                              "    pk: \"${partitionKey}\"\n"
                              "    sk: \"${sequenceNumber}\"\n", 0), 0);
  proxy_script("[{\"target\":\"BatchWriteItem\",\"status\":400,\"body\":"
               "{\"__type\":\"ValidationException\",\"message\":\"Item size "
               "has exceeded the maximum allowed size\"}},"
               "{\"target\":\"PutItem\",\"times\":2},"
               "{\"target\":\"PutItem\",\"status\":400,\"body\":"
               "{\"__type\":\"ValidationException\",\"message\":\"Item size "
               "has exceeded the maximum allowed size\"}}]", "proxy");
  struct answer a = run(&e, b, 0, n);
  assert_int_equal(a.status, KCLD_HANDLER_PARTIAL);
  assert_int_equal(a.cls, KCLD_HANDLER_RECORD); /* refused for its content */
  assert_int_equal(a.first_failed, 2);
  assert_string_equal(a.type, "ValidationException");
  assert_int_equal(kcld_fault_count(fault, NULL,
                                    "DynamoDB_20120810.PutItem"), 3);
  json_t *items = scan("sink-valid");
  assert_int_equal(json_object_size(items), 2);
  json_decref(items);

  /* The engine dead-letters record 2 and goes on from 3. */
  a = run(&e, b, 3, n - 3);
  assert_int_equal(a.status, KCLD_HANDLER_OK);
  items = scan("sink-valid");
  assert_int_equal(json_object_size(items), n - 1);
  for (size_t i = 0; i < n; i++) {
    char key[256];
    if (i == 2)
      continue;
    snprintf(key, sizeof(key), "pk-%zu|%s%06zu", i, pre, i);
    check_item(items, key, i, "val");
  }
  json_decref(items);
  assert_int_equal(stats(&e).items_written, n - 1);
  env_down(&e);
  kcld_record_batch_release(b);
  free_payloads(p, n);
}

/* UnprocessedItems that stay unprocessed through every retry of the
 * BatchWriteItem wrapper: the batch ends PARTIAL at the first record among
 * them (found by key), and the retry from there writes it.  The records are
 * written once beforehand, so the endpoint's "the others were processed"
 * is true and the final table can be checked whole.  (Slow: the wrapper's
 * default backoff, up to about 11 s.) */
static void test_batch_unprocessed(void **state)
{
  struct env e;
  const char *pre = "4960000000000000000000000009";
  const size_t n = 10;
  char **p = payloads_for(n, n, "unp");
  struct kcld_record_batch *b = make_batch(pre, (const char *const *)p, n);
  char seq7[128], steps[1024];
  (void)state;

  create_table("sink-unproc", 1);
  proxy_script("[]", "proxy");
  assert_int_equal(env_up(&e, "  table: sink-unproc\n"
                              "  key:\n"
                              "    pk: \"${partitionKey}\"\n"
                              "    sk: \"${sequenceNumber}\"\n", 0), 0);
  struct answer a = run(&e, b, 0, n);
  assert_int_equal(a.status, KCLD_HANDLER_OK);

  /* Every call answers: record 7 (by its key) unprocessed. */
  snprintf(seq7, sizeof(seq7), "%s%06d", pre, 7);
  snprintf(steps, sizeof(steps),
           "[{\"target\":\"BatchWriteItem\",\"body\":{\"UnprocessedItems\":"
           "{\"sink-unproc\":[{\"PutRequest\":{\"Item\":{\"pk\":{\"S\":"
           "\"pk-7\"},\"sk\":{\"S\":\"%s\"}}}}]}}}]", seq7);
  proxy_script(steps, "repeat-last");
  a = run(&e, b, 0, n);
  assert_int_equal(a.status, KCLD_HANDLER_PARTIAL);
  assert_int_equal(a.cls, KCLD_HANDLER_INFRA);
  assert_int_equal(a.first_failed, 7);
  assert_non_null(strstr(a.msg, "unprocessed"));
  assert_int_equal(kcld_fault_count(kcld_emu_url(&s_emu, "fault"), NULL,
                                    "DynamoDB_20120810.BatchWriteItem"), 9);

  proxy_script("[]", "proxy");
  a = run(&e, b, 7, n - 7);
  assert_int_equal(a.status, KCLD_HANDLER_OK);
  json_t *items = scan("sink-unproc");
  assert_int_equal(json_object_size(items), n);
  for (size_t i = 0; i < n; i++) {
    char key[256];
    snprintf(key, sizeof(key), "pk-%zu|%s%06zu", i, pre, i);
    check_item(items, key, i, "unp");
  }
  json_decref(items);
  env_down(&e);
  kcld_record_batch_release(b);
  free_payloads(p, n);
}

/* Conditional writes with a throttled PutItem (no client retries): PARTIAL
 * at the lowest failed record; the retry from there writes what is missing
 * and counts what the first run already wrote as duplicates. */
static void test_conditional_throttled(void **state)
{
  struct env e;
  const char *pre = "4960000000000000000000000007";
  const size_t n = 40;
  char **p = payloads_for(n, n, "cthr");
  struct kcld_record_batch *b = make_batch(pre, (const char *const *)p, n);
  (void)state;

  create_table("sink-cthrottle", 1);
  assert_int_equal(env_up(&e, "  table: sink-cthrottle\n"
                              "  key:\n"
                              "    pk: \"${partitionKey}\"\n"
                              "    sk: \"${sequenceNumber}\"\n"
                              "  write: conditional\n", 1), 0);
  proxy_script("[{\"target\":\"PutItem\",\"times\":20},"
               "{\"target\":\"PutItem\",\"status\":400,\"body\":"
               "{\"__type\":\"ThrottlingException\",\"message\":\"slow\"},"
               "\"times\":2}]", "proxy");
  struct answer a = run(&e, b, 0, n);
  /* Which PutItems meet the throttle depends on arrival order. */
  assert_true(a.status == KCLD_HANDLER_PARTIAL ||
              a.status == KCLD_HANDLER_FAILED);
  assert_int_equal(a.cls, KCLD_HANDLER_INFRA);
  assert_string_equal(a.type, "ThrottlingException");
  if (a.status == KCLD_HANDLER_FAILED)
    a.first_failed = 0;
  assert_true(a.first_failed < n);
  struct kcld_dynamodb_sink_stats st = stats(&e);
  assert_true(st.items_written >= a.first_failed);
  assert_true(st.items_written <= n - 1);
  uint64_t first_written = st.items_written;

  proxy_script("[]", "proxy");
  size_t from = a.first_failed;
  a = run(&e, b, from, n - from);
  assert_int_equal(a.status, KCLD_HANDLER_OK);
  st = stats(&e);
  assert_int_equal(st.items_written, n);
  assert_int_equal(st.duplicates, first_written - from);
  json_t *items = scan("sink-cthrottle");
  assert_int_equal(json_object_size(items), n);
  json_decref(items);
  env_down(&e);
  kcld_record_batch_release(b);
  free_payloads(p, n);
}

/* A table that does not exist: FAILED with the AWS error, nothing lost (the
 * batch comes back whole). */
static void test_missing_table(void **state)
{
  struct env e;
  const char *one[] = {"{\"id\":\"x\"}"};
  struct kcld_record_batch *b = make_batch("4960000000000000000000000008",
                                           one, 1);
  (void)state;

  proxy_script("[]", "proxy");
  assert_int_equal(env_up(&e, "  table: sink-no-such-table\n", 0), 0);
  struct answer a = run(&e, b, 0, 1);
  assert_int_equal(a.status, KCLD_HANDLER_FAILED);
  assert_int_equal(a.cls, KCLD_HANDLER_INFRA);
  assert_string_equal(a.type, "ResourceNotFoundException");
  assert_int_equal(stats(&e).write_failures, 1);
  env_down(&e);
  kcld_record_batch_release(b);
}

/* 5xx answers and broken connections through every retry of the AWS
 * client: infrastructure failures, nothing lost; the retry writes it. */
static void test_server_and_transport_errors(void **state)
{
  struct env e;
  const char *pre = "4960000000000000000000000011";
  char **p = payloads_for(4, 4, "srv");
  struct kcld_record_batch *b = make_batch(pre, (const char *const *)p, 4);
  (void)state;

  create_table("sink-5xx", 1);
  assert_int_equal(env_up(&e, "  table: sink-5xx\n"
                              "  key:\n"
                              "    pk: \"${partitionKey}\"\n"
                              "    sk: \"${sequenceNumber}\"\n", 2), 0);
  proxy_script("[{\"target\":\"BatchWriteItem\",\"status\":500,\"body\":"
               "{\"__type\":\"com.amazonaws.dynamodb.v20120810#"
               "InternalServerError\",\"message\":\"oops\"}}]",
               "repeat-last");
  struct answer a = run(&e, b, 0, 4);
  assert_int_equal(a.status, KCLD_HANDLER_FAILED);
  assert_int_equal(a.cls, KCLD_HANDLER_INFRA);
  assert_string_equal(a.type, "InternalServerError");

  proxy_script("[{\"target\":\"BatchWriteItem\",\"status\":503,"
               "\"body\":\"Service Unavailable\"}]", "repeat-last");
  a = run(&e, b, 0, 4);
  assert_int_equal(a.status, KCLD_HANDLER_FAILED);
  assert_int_equal(a.cls, KCLD_HANDLER_INFRA);

  proxy_script("[{\"target\":\"BatchWriteItem\",\"close\":true}]",
               "repeat-last");
  a = run(&e, b, 0, 4);
  assert_int_equal(a.status, KCLD_HANDLER_FAILED);
  assert_int_equal(a.cls, KCLD_HANDLER_INFRA);

  proxy_script("[]", "proxy");
  a = run(&e, b, 0, 4);
  assert_int_equal(a.status, KCLD_HANDLER_OK);
  json_t *items = scan("sink-5xx");
  assert_int_equal(json_object_size(items), 4);
  json_decref(items);
  env_down(&e);
  kcld_record_batch_release(b);
  free_payloads(p, 4);
}

/* kill ends a write that waits on a slow DynamoDB at once, as an
 * infrastructure failure; later batches are refused. */
static void test_kill(void **state)
{
  struct env e;
  const char *pre = "4960000000000000000000000012";
  char **p = payloads_for(2, 2, "kill");
  struct kcld_record_batch *b = make_batch(pre, (const char *const *)p, 2);
  const struct kcld_record *ptrs[2] = {&b->records[0], &b->records[1]};
  struct kcld_handler_batch hb = {"shardId-000000000001", ptrs, 2, 0, 1};
  struct answer a = {0};
  (void)state;

  create_table("sink-kill", 1);
  assert_int_equal(env_up(&e, "  table: sink-kill\n"
                              "  key:\n"
                              "    pk: \"${partitionKey}\"\n"
                              "    sk: \"${sequenceNumber}\"\n", 0), 0);
  proxy_script("[{\"target\":\"BatchWriteItem\",\"delay_ms\":20000}]",
               "proxy");
  assert_int_equal(kcld_handler_process(e.h, &hb, on_done, &a), 0);
  /* Until the call is out (the endpoint counts it). */
  for (int i = 0; i < 400 && kcld_fault_count(kcld_emu_url(&s_emu, "fault"),
                                              "total", NULL) < 1; i++) {
    int never = 0;
    kcld_test_run_until(&e.loop, &never, 10);
  }
  assert_int_equal(a.done, 0);
  unsigned long long t0 = kcld_test_now_ms();
  kcld_handler_kill(e.h);
  assert_true(kcld_test_run_until(&e.loop, &a.done, 2000));
  assert_true(kcld_test_now_ms() - t0 < 1000);
  assert_int_equal(a.status, KCLD_HANDLER_FAILED);
  assert_int_equal(a.cls, KCLD_HANDLER_INFRA);
  assert_string_equal(a.type, "HandlerCanceled");
  assert_int_equal(kcld_handler_process(e.h, &hb, on_done, &a),
                   KCLD_ECANCELED);
  proxy_script("[]", "proxy"); /* frees the delayed request */
  env_down(&e);
  kcld_record_batch_release(b);
  free_payloads(p, 2);
}

/* Bad key templates are refused when the handler is made. */
static void test_bad_templates(void **state)
{
  static const char *const bad[] = {
    "  table: sink-x\n  key:\n    pk: \"${nope}\"\n",
    "  table: sink-x\n  key:\n    pk: \"${data.}\"\n",
    "  table: sink-x\n  key:\n    pk: \"a\"\n    sk: \"${hour(now)}\"\n",
    "  table: sink-x\n  key:\n    pk: \"${data..a}\"\n",
  };
  (void)state;
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    struct env e;
    assert_int_equal(env_up(&e, bad[i], 0), KCLD_ECONFIG);
    assert_null(e.h);
    env_down(&e);
  }
}

static int setup(void **state)
{
  (void)state;
  json_object_seed(0);
  if (kcld_emu_start(&s_emu, "dynamodb fault") != 0)
    return -1;
  s_aws = kcld_test_aws_new(NULL, kcld_emu_url(&s_emu, "dynamodb"), NULL);
  return s_aws ? 0 : -1;
}

static int teardown(void **state)
{
  (void)state;
  kcld_test_aws_free(s_aws);
  kcld_emu_stop(&s_emu);
  return 0;
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_batch_redelivery),
    cmocka_unit_test(test_batch_same_key),
    cmocka_unit_test(test_conditional_duplicates),
    cmocka_unit_test(test_bad_records_batch),
    cmocka_unit_test(test_bad_records_conditional),
    cmocka_unit_test(test_batch_throttled),
    cmocka_unit_test(test_batch_validation),
    cmocka_unit_test(test_batch_unprocessed),
    cmocka_unit_test(test_conditional_throttled),
    cmocka_unit_test(test_missing_table),
    cmocka_unit_test(test_server_and_transport_errors),
    cmocka_unit_test(test_kill),
    cmocka_unit_test(test_bad_templates),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
