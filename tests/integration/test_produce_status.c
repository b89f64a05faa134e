/* test_produce_status.c — `kcld produce` and `kcld status` against
 * kinesalite and dynalite.
 *
 * Pure parts first: the events carry the reference pipeline's fields and
 * pad to --size; hash keys are MD5 as a 128-bit number (the aggregates'
 * own round trip is in test_kpl.c).  Then produce --count N and read every
 * record back with GetRecords (poison count matching); produce --aggregate and
 * de-aggregate what the stream holds; status on a lease table with an owned
 * and an unowned lease (JSON shape, lag, worker rows, healthy, recheck);
 * and the binary's subcommands with their stdout line and exit codes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "awssync.h"
#include "base/kpl.h"
#include "cmd/produce.h"
#include "cmd/status.h"
#include "config.h"
#include "consume/deagg.h"
#include "consume/record.h"
#include "err.h"
#include "fault.h"
#include "harness.h"
#include "proc.h"

static struct kcld_emu s_emu;
static struct kcld_test_aws *s_aws;

/* ======== Helpers ======== */

static json_t *call(enum kcld_aws_service svc, const char *op, json_t *req)
{
  const char *type = NULL;
  json_t *res = kcld_test_aws_call(s_aws, svc, op, req, &type);
  json_decref(req);
  if (!res)
    fail_msg("%s failed: %s", op, type ? type : "?");
  return res;
}

static void create_stream(const char *name, int shards)
{
  json_decref(call(KCLD_AWS_KINESIS, "CreateStream",
                   json_pack("{s:s,s:i}", "StreamName", name, "ShardCount",
                             shards)));
  for (int i = 0; i < 200; i++) {
    json_t *d = call(KCLD_AWS_KINESIS, "DescribeStreamSummary",
                     json_pack("{s:s}", "StreamName", name));
    const char *st = json_string_value(json_object_get(
      json_object_get(d, "StreamDescriptionSummary"), "StreamStatus"));
    int active = st && strcmp(st, "ACTIVE") == 0;
    json_decref(d);
    if (active)
      return;
    usleep(50 * 1000);
  }
  fail_msg("stream %s never became ACTIVE", name);
}

static void create_table(const char *name)
{
  json_decref(call(KCLD_AWS_DYNAMODB, "CreateTable",
                   json_pack("{s:s,s:[{s:s,s:s}],s:[{s:s,s:s}],s:s}",
                             "TableName", name, "KeySchema",
                             "AttributeName", "leaseKey", "KeyType", "HASH",
                             "AttributeDefinitions", "AttributeName",
                             "leaseKey", "AttributeType", "S", "BillingMode",
                             "PAY_PER_REQUEST")));
  for (int i = 0; i < 100; i++) { /* dynalite: the table becomes ACTIVE */
    json_t *d = call(KCLD_AWS_DYNAMODB, "DescribeTable",
                     json_pack("{s:s}", "TableName", name));
    const char *st = json_string_value(json_object_get(
      json_object_get(d, "Table"), "TableStatus"));
    int active = st && strcmp(st, "ACTIVE") == 0;
    json_decref(d);
    if (active)
      return;
    usleep(50 * 1000);
  }
  fail_msg("table %s never became ACTIVE", name);
}

static struct kcld_config *config_at(const char *kinesis, const char *stream,
                                     const char *table)
{
  char *yaml = NULL, *errors = NULL;
  struct kcld_config *cfg = NULL;
  int n = asprintf(&yaml,
                   "application: test-produce\n"
                   "stream: %s\n"
                   "region: us-east-1\n"
                   "endpoints:\n  kinesis: %s\n  dynamodb: %s\n"
                   "credentials:\n  access_key_id: AKIDKCLDTEST\n"
                   "  secret_access_key: kcld-test-secret\n"
                   "lease:\n  table: %s\n  failover_time: 10s\n",
                   stream, kinesis, kcld_emu_url(&s_emu, "dynamodb"), table);
  assert_true(n > 0);
  if (kcld_config_parse("test.yaml", yaml, strlen(yaml), &cfg, &errors) != 0)
    fail_msg("config: %s", errors ? errors : "?");
  free(yaml);
  free(errors);
  return cfg;
}

static struct kcld_config *config(const char *stream, const char *table)
{
  return config_at(kcld_emu_url(&s_emu, "kinesis"), stream, table);
}

static unsigned char *b64dec(const char *s, size_t *len)
{
  size_t n = strlen(s);
  unsigned char *out = malloc(n / 4 * 3 + 4);
  assert_non_null(out);
  int r = EVP_DecodeBlock(out, (const unsigned char *)s, (int)n);
  assert_true(r >= 0);
  size_t l = (size_t)r;
  if (n >= 1 && s[n - 1] == '=')
    l--;
  if (n >= 2 && s[n - 2] == '=')
    l--;
  *len = l;
  return out;
}

/* Every record of every shard, TRIM_HORIZON to the tip, as a JSON array of
 * {"Data" (decoded, base64 again for binary safety), "PartitionKey"}:
 * returned as the array of raw Kinesis record objects. */
static json_t *read_all(const char *stream)
{
  json_t *all = json_array();
  json_t *ls = call(KCLD_AWS_KINESIS, "ListShards",
                    json_pack("{s:s}", "StreamName", stream));
  size_t i;
  json_t *sh;
  json_array_foreach(json_object_get(ls, "Shards"), i, sh) {
    json_t *it = call(KCLD_AWS_KINESIS, "GetShardIterator",
                      json_pack("{s:s,s:O,s:s}", "StreamName", stream,
                                "ShardId", json_object_get(sh, "ShardId"),
                                "ShardIteratorType", "TRIM_HORIZON"));
    char *iter = strdup(json_string_value(json_object_get(it,
                                                          "ShardIterator")));
    json_decref(it);
    for (int round = 0; round < 100 && iter; round++) {
      json_t *gr = call(KCLD_AWS_KINESIS, "GetRecords",
                        json_pack("{s:s,s:i}", "ShardIterator", iter, "Limit",
                                  10000));
      json_t *recs = json_object_get(gr, "Records");
      json_array_extend(all, recs);
      free(iter);
      const char *next = json_string_value(json_object_get(
        gr, "NextShardIterator"));
      iter = next ? strdup(next) : NULL;
      int empty = json_array_size(recs) == 0;
      json_decref(gr);
      if (empty)
        break;
    }
    free(iter);
  }
  json_decref(ls);
  return all;
}

/* ======== Pure parts ======== */

static void test_event_shape(void **state)
{
  uint64_t rng = 42;
  int seen[4] = {0};
  static const char *const kinds[] = {"page_view", "purchase", "user_signup",
                                      "click"};
  (void)state;
  for (int i = 0; i < 200; i++) {
    size_t len;
    char *e = kcld_produce_event(&rng, 7, 1700000000123, i % 2 ? 700 : 0,
                                 &len);
    json_error_t err;
    assert_non_null(e);
    assert_int_equal(strlen(e), len);
    if (i % 2)
      assert_true(len >= 700 && len <= 720);
    json_t *j = json_loads(e, 0, &err);
    if (!j)
      fail_msg("not JSON: %s: %s", e, err.text);
    const char *type = json_string_value(json_object_get(j, "eventType"));
    assert_non_null(type);
    assert_string_equal(json_string_value(json_object_get(j, "userId")),
                        "user-7");
    assert_non_null(json_string_value(json_object_get(j, "sessionId")));
    assert_non_null(json_string_value(json_object_get(j, "deviceType")));
    assert_string_equal(json_string_value(json_object_get(j, "timestamp")),
                        "2023-11-14T22:13:20.123Z");
    json_t *loc = json_object_get(j, "location");
    assert_non_null(json_string_value(json_object_get(loc, "country")));
    assert_non_null(json_string_value(json_object_get(loc, "city")));
    int k;
    for (k = 0; k < 4 && strcmp(type, kinds[k]) != 0; k++)
      ;
    assert_true(k < 4);
    seen[k]++;
    if (k == 1) {
      assert_true(json_is_number(json_object_get(j, "amount")));
      assert_non_null(json_string_value(json_object_get(j, "currency")));
      assert_true(json_is_integer(json_object_get(j, "itemsCount")));
    } else if (k == 2) {
      assert_non_null(json_string_value(json_object_get(j, "signupMethod")));
      assert_non_null(json_string_value(json_object_get(j,
                                                        "campaignSource")));
    } else {
      assert_non_null(json_string_value(json_object_get(j, "pageUrl")));
      assert_true(json_is_number(json_object_get(j, "loadTime")));
      assert_true(json_is_integer(json_object_get(j, "sessionLength")));
      assert_true(json_is_integer(json_object_get(j, "pagesViewed")));
    }
    json_decref(j);
    free(e);
  }
  for (int k = 0; k < 4; k++)
    assert_true(seen[k] > 10);
}

static void test_hash_key(void **state)
{
  char buf[48];
  unsigned char md[16];
  unsigned int mdlen;
  (void)state;
  /* MD5("") = d41d8cd98f00b204e9800998ecf8427e. */
  assert_string_equal(kcld_produce_hash_key("", buf, sizeof(buf)),
                      "281949768489412648962353822266799178366");
  /* Cross-check with another key: the top digits follow the top byte. */
  kcld_produce_hash_key("user-1", buf, sizeof(buf));
  EVP_Digest("user-1", 6, md, &mdlen, EVP_md5(), NULL);
  long double v = 0;
  for (int i = 0; i < 16; i++)
    v = v * 256 + md[i];
  char approx[64];
  snprintf(approx, sizeof(approx), "%.0Lf", v);
  assert_int_equal(strlen(approx), strlen(buf));
  assert_memory_equal(approx, buf, 12);
}

/* ======== Against the emulators ======== */

static void test_produce_count(void **state)
{
  struct kcld_config *cfg = config("produce-plain", "unused");
  struct kcld_produce_opts o;
  struct kcld_produce_result r;
  size_t i, poison = 0, n;
  json_t *rec, *all;
  (void)state;
  create_stream("produce-plain", 3);
  memset(&o, 0, sizeof(o));
  o.cfg = cfg;
  o.count = 1234;         /* three calls: 500 + 500 + 234 */
  o.partition_keys = 17;
  o.poison_rate = 0.1;
  o.seed = 7;
  assert_int_equal(kcld_produce_run(&o, &r), 0);
  assert_int_equal(r.produced, 1234);
  assert_int_equal(r.failed, 0);
  assert_int_equal(r.kinesis_records, 1234);
  assert_true(r.calls >= 3);
  assert_true(r.poison > 60 && r.poison < 200);

  all = read_all("produce-plain");
  assert_int_equal(json_array_size(all), 1234);
  int keys[17] = {0};
  json_array_foreach(all, i, rec) {
    unsigned char *d = b64dec(json_string_value(json_object_get(rec, "Data")),
                              &n);
    const char *pk = json_string_value(json_object_get(rec, "PartitionKey"));
    unsigned k;
    assert_int_equal(sscanf(pk, "user-%u", &k), 1);
    assert_true(k < 17);
    keys[k]++;
    json_t *j = json_loadb((const char *)d, n, 0, NULL);
    if (!j) {
      assert_memory_equal(d, "!poison ", 8);
      poison++;
    } else {
      /* The partition key is the event's user. */
      assert_string_equal(json_string_value(json_object_get(j, "userId")),
                          pk);
      json_decref(j);
    }
    free(d);
  }
  assert_int_equal(poison, r.poison);
  for (int k = 0; k < 17; k++)
    assert_true(keys[k] > 0);
  json_decref(all);
  kcld_config_free(cfg);
}

static void test_produce_aggregate(void **state)
{
  struct kcld_config *cfg = config("produce-agg", "unused");
  struct kcld_produce_opts o;
  struct kcld_produce_result r;
  size_t i, users = 0, n;
  json_t *rec, *all;
  (void)state;
  create_stream("produce-agg", 2);
  memset(&o, 0, sizeof(o));
  o.cfg = cfg;
  o.count = 260;
  o.aggregate = 50;       /* 5 aggregates of 50 and one of 10 */
  o.size = 300;
  o.seed = 9;
  assert_int_equal(kcld_produce_run(&o, &r), 0);
  assert_int_equal(r.produced, 260);
  assert_int_equal(r.kinesis_records, 6);
  all = read_all("produce-agg");
  assert_int_equal(json_array_size(all), 6);
  json_array_foreach(all, i, rec) {
    unsigned char *d = b64dec(json_string_value(json_object_get(rec, "Data")),
                              &n);
    struct kcld_kpl_plan plan;
    assert_int_equal(kcld_kpl_scan(d, n, &plan), KCLD_KPL_AGGREGATE);
    struct kcld_record outer, *out = calloc(plan.nrecords, sizeof(*out));
    void *keys = aligned_alloc(8, plan.key_bytes + 8);
    size_t used;
    memset(&outer, 0, sizeof(outer));
    outer.data = d;
    outer.data_len = n;
    outer.partition_key = "a";
    outer.partition_key_len = 1;
    outer.sequence_number = "1";
    long got = kcld_deagg_expand(&outer, out, plan.nrecords, keys,
                                 plan.key_bytes + 8, &used);
    assert_int_equal(got, (long)plan.nrecords);
    for (long k = 0; k < got; k++) {
      json_t *j = json_loadb((const char *)out[k].data, out[k].data_len, 0,
                             NULL);
      assert_non_null(j);
      assert_string_equal(json_string_value(json_object_get(j, "userId")),
                          out[k].partition_key);
      assert_true(out[k].data_len >= 300);
      json_decref(j);
    }
    users += (size_t)got;
    free(out);
    free(keys);
    free(d);
  }
  assert_int_equal(users, 260);
  json_decref(all);
  kcld_config_free(cfg);
}


/* Entries a call reports as failed are sent again, and only those. */
static void test_produce_retries(void **state)
{
  const char *fault = kcld_emu_url(&s_emu, "fault");
  struct kcld_config *cfg = config_at(fault, "produce-retry", "unused");
  struct kcld_produce_opts o;
  struct kcld_produce_result r;
  char script[2048];
  (void)state;
  create_stream("produce-retry", 1);
  snprintf(script, sizeof(script),
           "{\"upstream\": \"%s\", \"then\": \"proxy\", \"steps\": [{"
           "\"target\": \"PutRecords\", \"body\": {\"FailedRecordCount\": 2,"
           " \"Records\": [{\"SequenceNumber\": \"4959033827149025660855969"
           "2538361571095921575989136588898\", \"ShardId\": \"shardId-00000"
           "0000000\"}, {\"ErrorCode\": \"ProvisionedThroughputExceededExce"
           "ption\", \"ErrorMessage\": \"Rate exceeded\"}, {\"ErrorCode\": "
           "\"InternalFailure\", \"ErrorMessage\": \"Internal failure\"}]}}]}",
           kcld_emu_url(&s_emu, "kinesis"));
  assert_int_equal(kcld_fault_script(fault, script), 0);
  memset(&o, 0, sizeof(o));
  o.cfg = cfg;
  o.count = 3;
  o.seed = 5;
  assert_int_equal(kcld_produce_run(&o, &r), 0);
  assert_int_equal(r.produced, 3);
  assert_int_equal(r.failed, 0);
  assert_int_equal(r.retried, 2);
  assert_int_equal(r.calls, 2);
  assert_int_equal(kcld_fault_count(fault, NULL,
                                    "Kinesis_20131202.PutRecords"), 2);
  json_t *all = read_all("produce-retry"); /* the first went to the fake */
  assert_int_equal(json_array_size(all), 2);
  json_decref(all);

  /* An entry that keeps failing is given up after max_attempts. */
  assert_int_equal(kcld_fault_script(fault,
    "{\"then\": \"repeat-last\", \"steps\": [{\"target\": \"PutRecords\", "
    "\"body\": {\"FailedRecordCount\": 1, \"Records\": [{\"ErrorCode\": "
    "\"InternalFailure\", \"ErrorMessage\": \"no\"}]}}]}"), 0);
  o.count = 1;
  o.max_attempts = 3;
  assert_int_equal(kcld_produce_run(&o, &r), 0);
  assert_int_equal(r.produced, 0);
  assert_int_equal(r.failed, 1);
  assert_int_equal(r.calls, 3);
  kcld_config_free(cfg);

  /* No such stream: nothing written, the run fails, the records count as
   * failed. */
  cfg = config("no-such-stream", "unused");
  o.cfg = cfg;
  o.count = 10;
  o.max_attempts = 0;
  assert_int_equal(kcld_produce_run(&o, &r), KCLD_EAWS);
  assert_int_equal(r.produced, 0);
  assert_int_equal(r.failed, 10);
  kcld_config_free(cfg);
}

/* --rate with --duration: about rate x duration records. */
static void test_produce_rate(void **state)
{
  struct kcld_config *cfg = config("produce-rate", "unused");
  struct kcld_produce_opts o;
  struct kcld_produce_result r;
  (void)state;
  create_stream("produce-rate", 1);
  memset(&o, 0, sizeof(o));
  o.cfg = cfg;
  o.rate = 200;
  o.duration_ms = 1000;
  o.seed = 11;
  unsigned long long t0 = kcld_test_now_ms();
  assert_int_equal(kcld_produce_run(&o, &r), 0);
  unsigned long long dt = kcld_test_now_ms() - t0;
  assert_true(dt >= 950 && dt < 3000);
  if (r.produced < 180 || r.produced > 202)
    fail_msg("produced %llu at 200/s for 1 s",
             (unsigned long long)r.produced);
  assert_true(r.calls >= 10); /* spread over the second, not one burst */
  json_t *all = read_all("produce-rate");
  assert_int_equal(json_array_size(all), r.produced);
  json_decref(all);
  kcld_config_free(cfg);
}

static void put_lease(const char *table, const char *shard, const char *owner,
                      const char *checkpoint, int counter)
{
  json_t *item = json_pack("{s:{s:s},s:{s:s},s:{s:s},s:{s:s}}", "leaseKey",
                           "S", shard, "checkpoint", "S", checkpoint,
                           "leaseCounter", "N", counter == 1 ? "1" : "5",
                           "checkpointSubSequenceNumber", "N", "0");
  if (owner)
    json_object_set_new(item, "leaseOwner", json_pack("{s:s}", "S", owner));
  json_decref(call(KCLD_AWS_DYNAMODB, "PutItem",
                   json_pack("{s:s,s:o}", "TableName", table, "Item", item)));
}

static json_t *row_of(json_t *doc, const char *shard)
{
  size_t i;
  json_t *r;
  json_array_foreach(json_object_get(doc, "shards"), i, r)
    if (strcmp(json_string_value(json_object_get(r, "shard_id")), shard) == 0)
      return r;
  fail_msg("no row for %s", shard);
  return NULL;
}

static void test_status(void **state)
{
  struct kcld_config *cfg = config("status-stream", "status-leases");
  struct kcld_status_opts o;
  json_t *doc = NULL, *r;
  char seq[160];
  (void)state;
  create_stream("status-stream", 2);
  create_table("status-leases");
  /* Three records on shard 0: the lease is checkpointed at the first. */
  for (int i = 0; i < 3; i++) {
    json_t *pr = call(KCLD_AWS_KINESIS, "PutRecord",
                      json_pack("{s:s,s:s,s:s,s:s}", "StreamName",
                                "status-stream", "Data", "eA==",
                                "PartitionKey", "k", "ExplicitHashKey", "0"));
    if (i == 0)
      snprintf(seq, sizeof(seq), "%s",
               json_string_value(json_object_get(pr, "SequenceNumber")));
    json_decref(pr);
  }
  put_lease("status-leases", "shardId-000000000000", "worker-a", seq, 5);
  put_lease("status-leases", "shardId-000000000001", NULL, "TRIM_HORIZON", 1);

  memset(&o, 0, sizeof(o));
  o.cfg = cfg;
  o.lag = 1;
  assert_int_equal(kcld_status_collect(&o, &doc), 0);
  assert_string_equal(json_string_value(json_object_get(doc, "stream")),
                      "status-stream");
  assert_string_equal(json_string_value(json_object_get(doc, "table")),
                      "status-leases");
  assert_int_equal(json_array_size(json_object_get(doc, "shards")), 2);
  r = row_of(doc, "shardId-000000000000");
  assert_string_equal(json_string_value(json_object_get(r, "state")),
                      "owned");
  assert_string_equal(json_string_value(json_object_get(r, "owner")),
                      "worker-a");
  assert_string_equal(json_string_value(json_object_get(r, "checkpoint")),
                      seq);
  assert_true(json_is_true(json_object_get(r, "open")));
  assert_true(json_is_true(json_object_get(r, "lease")));
  assert_int_equal(json_integer_value(json_object_get(r, "lease_counter")),
                   5);
  assert_true(json_is_integer(json_object_get(r, "lag_ms")));
  assert_int_equal(json_array_size(json_object_get(r, "parents")), 0);
  r = row_of(doc, "shardId-000000000001");
  assert_string_equal(json_string_value(json_object_get(r, "state")),
                      "unowned");
  assert_true(json_is_null(json_object_get(r, "owner")));
  json_t *w = json_array_get(json_object_get(doc, "workers"), 0);
  assert_int_equal(json_array_size(json_object_get(doc, "workers")), 1);
  assert_string_equal(json_string_value(json_object_get(w, "worker_id")),
                      "worker-a");
  assert_int_equal(json_integer_value(json_object_get(w, "leases_held")), 1);
  assert_true(json_is_null(json_object_get(w, "renewing")));
  assert_int_equal(json_integer_value(json_object_get(doc, "unowned")), 1);
  assert_true(json_is_false(json_object_get(doc, "healthy")));
  /* The text form names both shards and the worker. */
  char *text = NULL;
  size_t tlen = 0;
  FILE *f = open_memstream(&text, &tlen);
  kcld_status_print(doc, f);
  fclose(f);
  assert_non_null(strstr(text, "shardId-000000000001  unowned"));
  assert_non_null(strstr(text, "worker-a"));
  free(text);
  json_decref(doc);

  /* Owned by someone: healthy on one read; with a recheck nobody renewed,
   * so both leases are expired. */
  put_lease("status-leases", "shardId-000000000001", "worker-b",
            "TRIM_HORIZON", 1);
  assert_int_equal(kcld_status_collect(&o, &doc), 0);
  assert_true(json_is_true(json_object_get(doc, "healthy")));
  assert_int_equal(json_array_size(json_object_get(doc, "workers")), 2);
  json_decref(doc);
  o.recheck_ms = 300;
  o.lag = 0;
  assert_int_equal(kcld_status_collect(&o, &doc), 0);
  assert_int_equal(json_integer_value(json_object_get(doc, "expired")), 2);
  assert_true(json_is_false(json_object_get(doc, "healthy")));
  assert_true(json_is_null(json_object_get(row_of(doc,
    "shardId-000000000000"), "lag_ms")));
  json_decref(doc);

  /* No such table: an error, not a document. */
  o.table = "no-such-table";
  o.recheck_ms = 0;
  assert_true(kcld_status_collect(&o, &doc) < 0);
  assert_null(doc);
  kcld_config_free(cfg);
}

/* ======== The binary ======== */

/* Runs kcld with `args`; *out gets its stdout, and its stderr too when
 * `err` is set.  Returns the exit status. */
static int run_kcld(const char *args, int err, char **out)
{
  char cmd[2048];
  size_t cap = 1 << 16, len = 0;
  *out = calloc(1, cap);
  snprintf(cmd, sizeof(cmd), "%s %s %s", kcld_test_bin(), args,
           err ? "2>&1" : "2>/dev/null");
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  size_t n;
  while ((n = fread(*out + len, 1, cap - 1 - len, p)) > 0)
    len += n;
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int run_bin(const char *args, char **out)
{
  return run_kcld(args, 0, out);
}

static void test_binary(void **state)
{
  char path[] = "/tmp/kcld-test-produce-XXXXXX";
  char args[512], *out = NULL;
  int fd = mkstemp(path);
  (void)state;
  if (access(kcld_test_bin(), X_OK) != 0)
    skip();
  assert_true(fd >= 0);
  FILE *f = fdopen(fd, "w");
  fprintf(f,
          "application: test-produce\nstream: bin-stream\nregion: us-east-1\n"
          "endpoints:\n  kinesis: %s\n  dynamodb: %s\n"
          "credentials:\n  access_key_id: AKIDKCLDTEST\n"
          "  secret_access_key: kcld-test-secret\n",
          kcld_emu_url(&s_emu, "kinesis"), kcld_emu_url(&s_emu, "dynamodb"));
  fclose(f);
  create_stream("bin-stream", 1);
  create_table("test-produce"); /* the lease table: the application's */
  snprintf(args, sizeof(args), "produce --config %s --count 42 --rate 1000 "
           "--poison-rate 0 -q", path);
  assert_int_equal(run_bin(args, &out), 0);
  assert_non_null(strstr(out, "produced=42 failed=0 poison=0"));
  free(out);
  json_t *all = read_all("bin-stream");
  assert_int_equal(json_array_size(all), 42);
  json_decref(all);
  /* status --json: the stream's one shard has no lease -> exit 3. */
  snprintf(args, sizeof(args), "status --config %s --json --no-lag", path);
  assert_int_equal(run_bin(args, &out), 3);
  json_t *doc = json_loads(out, 0, NULL);
  assert_non_null(doc);
  assert_int_equal(json_integer_value(json_object_get(doc, "unowned")), 1);
  assert_string_equal(json_string_value(json_object_get(doc, "table")),
                      "test-produce");
  assert_string_equal(json_string_value(json_object_get(
    json_array_get(json_object_get(doc, "shards"), 0), "state")), "unowned");
  json_decref(doc);
  free(out);
  /* Usage errors. */
  assert_int_equal(run_bin("produce --rate x --stream s", &out), 2);
  free(out);
  assert_int_equal(run_bin("status", &out), 2);
  free(out);
  /* A stream but no table and no config: no guessed table name. */
  assert_int_equal(run_kcld("status --stream bin-stream", 1, &out), 2);
  assert_non_null(strstr(out, "kcld status: give --table NAME"));
  free(out);
  unlink(path);
}

static int setup(void **state)
{
  (void)state;
  if (kcld_emu_start(&s_emu, "kinesis dynamodb fault") != 0)
    return -1;
  s_aws = kcld_test_aws_new(kcld_emu_url(&s_emu, "kinesis"),
                            kcld_emu_url(&s_emu, "dynamodb"), NULL);
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
    cmocka_unit_test(test_event_shape),
    cmocka_unit_test(test_hash_key),
    cmocka_unit_test(test_produce_count),
    cmocka_unit_test(test_produce_aggregate),
    cmocka_unit_test(test_produce_retries),
    cmocka_unit_test(test_produce_rate),
    cmocka_unit_test(test_status),
    cmocka_unit_test(test_binary),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
