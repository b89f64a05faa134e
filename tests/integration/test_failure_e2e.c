/* test_failure_e2e.c — "lose nothing" with the real kcld binary against
 * kinesalite, dynalite, fauxqs and the fault endpoint (issue 10's cases):
 *
 *   - a DynamoDB sink throttled for 8 s, default retry settings: with no
 *     on_failure, and with an SQS dead-letter queue (two applications on
 *     the same stream, at the same time).  Nothing is skipped; no good
 *     record is dead-lettered; no checkpoint moves while nothing is
 *     written; once the throttle lifts every good record is in the table.
 *     One record that is not JSON (a record failure) is dead-lettered:
 *     into the default directory ($STATE_DIRECTORY/dead-letter) by the
 *     first application, into the queue by the second.
 *   - `kcld redrive --dir` puts that record back into a stream, and
 *     `--to-handler` hands it to the configured handler with its own
 *     sequence number; the replayed file moves to done/.
 *   - a lambda command whose script does not exist: no record is skipped
 *     or dead-lettered and the shard waits; once the script exists, every
 *     record is handled.
 *   - a dead-letter directory that cannot be written: kcld does not start,
 *     and says which directory and why.
 *   - on_failure.block at start, then a reload turning it off: kcld says
 *     the key needs a restart (a start opens the destination), and the
 *     shard goes on waiting: nothing skipped, dead-lettered or
 *     checkpointed. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "awssync.h"
#include "e2e.h"
#include "fault.h"
#include "harness.h"
#include "proc.h"

#define NREC 120
#define THROTTLE_MS 8000

struct env {
  struct kcld_emu emu;
  struct kcld_test_aws *aws;
  char dir[64];
};

static struct env E;

static int setup(void **state)
{
  (void)state;
  memset(&E, 0, sizeof(E));
  if (kcld_emu_start(&E.emu, "kinesis dynamodb sqs fault") != 0)
    return -1;
  E.aws = kcld_test_aws_new(kcld_emu_url(&E.emu, "kinesis"),
                            kcld_emu_url(&E.emu, "dynamodb"),
                            kcld_emu_url(&E.emu, "sqs"));
  snprintf(E.dir, sizeof(E.dir), "/tmp/kcld-fail-XXXXXX");
  return mkdtemp(E.dir) ? 0 : -1;
}

static int teardown(void **state)
{
  (void)state;
  kcld_e2e_fixture_stop(&E.emu, E.aws, E.dir);
  return 0;
}

/* ======== Helpers ======== */

static void write_file(const char *path, const char *text)
{
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  assert_int_equal(fclose(f), 0);
}

/* A kcld config for `app` on `stream` with DynamoDB through `ddb`; `rest`
 * is appended (handler, on_failure, ...). */
static void config(const char *path, const char *app, const char *stream,
                   const char *ddb, const char *rest)
{
  char *text = NULL;
  assert_true(asprintf(
    &text,
    "application: %s\n"
    "stream: %s\n"
    "region: us-east-1\n"
    "endpoints:\n"
    "  kinesis: %s\n"
    "  dynamodb: %s\n"
    "  sqs: %s\n"
    "credentials:\n"
    "  access_key_id: test\n"
    "  secret_access_key: test\n"
    "starting_position: TRIM_HORIZON\n"
    "shutdown_timeout: 10s\n"
    "workers: 2\n"
    "lease:\n"
    "  failover_time: 2s\n"
    "fetch:\n"
    "  idle_time: 200ms\n"
    "metrics:\n"
    "  listen: \"\"\n"
    "batch:\n"
    "  size: 20\n"
    "retry:\n"
    "  backoff_max: 1s\n"
    "%s",
    app, stream, kcld_emu_url(&E.emu, "kinesis"), ddb,
    kcld_emu_url(&E.emu, "sqs"), rest) > 0);
  write_file(path, text);
  free(text);
}

static void create_table(const char *name)
{
  json_decref(kcld_e2e_call(
    E.aws, KCLD_AWS_DYNAMODB, "CreateTable",
    json_pack("{s:s,s:[{s:s,s:s},{s:s,s:s}],s:[{s:s,s:s},{s:s,s:s}],s:s}",
              "TableName", name, "AttributeDefinitions", "AttributeName",
              "pk", "AttributeType", "S", "AttributeName", "sk",
              "AttributeType", "S", "KeySchema", "AttributeName", "pk",
              "KeyType", "HASH", "AttributeName", "sk", "KeyType", "RANGE",
              "BillingMode", "PAY_PER_REQUEST")));
}

static char *create_queue(const char *name)
{
  json_t *r = kcld_e2e_call(E.aws, KCLD_AWS_SQS, "CreateQueue",
                            json_pack("{s:s}", "QueueName", name));
  char *url = strdup(json_string_value(json_object_get(r, "QueueUrl")));
  json_decref(r);
  return url;
}

static size_t table_count(const char *name)
{
  json_t *req = json_pack("{s:s,s:s}", "TableName", name, "Select", "COUNT");
  json_t *r = kcld_test_aws_call(E.aws, KCLD_AWS_DYNAMODB, "Scan", req, NULL);
  size_t n = r ? (size_t)json_integer_value(json_object_get(r, "Count")) : 0;
  json_decref(req);
  json_decref(r);
  return n;
}

/* Bodies of every message in the queue (received, not deleted). */
static json_t *queue_bodies(const char *url)
{
  json_t *all = json_array();
  for (int round = 0; round < 10; round++) {
    json_t *r = kcld_e2e_call(
      E.aws, KCLD_AWS_SQS, "ReceiveMessage",
      json_pack("{s:s,s:i,s:i,s:i}", "QueueUrl", url, "MaxNumberOfMessages",
                10, "WaitTimeSeconds", 0, "VisibilityTimeout", 60));
    json_t *msgs = json_object_get(r, "Messages"), *m;
    size_t i;
    int n = (int)json_array_size(msgs);
    json_array_foreach(msgs, i, m)
      json_array_append_new(all, json_string(json_string_value(
        json_object_get(m, "Body"))));
    json_decref(r);
    if (n == 0)
      break;
  }
  return all;
}

/* The lease table's checkpoints, as "shard=checkpoint;..." text, sorted
 * by shard (absent table: ""). */
static char *checkpoints(const char *app)
{
  json_t *req = json_pack("{s:s,s:b}", "TableName", app, "ConsistentRead", 1);
  json_t *r = kcld_test_aws_call(E.aws, KCLD_AWS_DYNAMODB, "Scan", req, NULL);
  json_t *item;
  size_t i;
  char *out = calloc(1, 4096);
  assert_non_null(out);
  json_decref(req);
  json_array_foreach(json_object_get(r, "Items"), i, item) {
    const char *k = json_string_value(
      json_object_get(json_object_get(item, "leaseKey"), "S"));
    const char *cp = json_string_value(
      json_object_get(json_object_get(item, "checkpoint"), "S"));
    size_t len = strlen(out);
    snprintf(out + len, 4096 - len, "%s=%s;", k ? k : "?", cp ? cp : "-");
  }
  json_decref(r);
  return out;
}

/* 1 when no checkpoint of app is past TRIM_HORIZON (nothing handled). */
static int none_checkpointed(const char *app)
{
  char *cps = checkpoints(app);
  int ok = 1;
  for (char *p = cps; (p = strchr(p, '=')) != NULL; p++)
    ok = ok && (strncmp(p + 1, "TRIM_HORIZON;", 13) == 0 ||
                strncmp(p + 1, "-;", 2) == 0);
  free(cps);
  return ok;
}

static int log_has(const char *log, const char *what)
{
  char *text = kcld_test_slurp(log, NULL);
  int has = text && strstr(text, what) != NULL;
  free(text);
  return has;
}

/* The lines of the dead-letter files directly in dir (not done/). */
static json_t *dead_letter_lines(const char *dir)
{
  json_t *all = json_array();
  char cmd[512];
  snprintf(cmd, sizeof(cmd), "cat '%s'/*.jsonl* 2>/dev/null", dir);
  FILE *p = popen(cmd, "r");
  char *line = NULL;
  size_t cap = 0;
  assert_non_null(p);
  while (getline(&line, &cap, p) > 0) {
    json_t *j = json_loads(line, 0, NULL);
    assert_non_null(j);
    json_array_append_new(all, j);
  }
  free(line);
  pclose(p);
  return all;
}

static int run_cmd(const char *cmd, char **out)
{
  size_t cap = 1 << 16, len = 0, n;
  char *buf = malloc(cap);
  FILE *p = popen(cmd, "r");
  assert_non_null(buf);
  assert_non_null(p);
  while ((n = fread(buf + len, 1, cap - len - 1, p)) > 0)
    len += n;
  buf[len] = '\0';
  int st = pclose(p);
  *out = buf;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ======== A throttled sink ======== */

static void throttle(const char *ddb)
{
  char script[1024];
  snprintf(script, sizeof(script),
           "{\"upstream\": \"%s\", \"steps\": [{\"target\": "
           "\"BatchWriteItem\", \"times\": 100000000, \"status\": 400, "
           "\"body\": {\"__type\": \"com.amazonaws.dynamodb.v20120810#"
           "ProvisionedThroughputExceededException\", \"message\": "
           "\"throttled by the test\"}}], \"then\": \"proxy\"}", ddb);
  assert_int_equal(kcld_fault_script(kcld_emu_url(&E.emu, "fault"), script),
                   0);
}

static void unthrottle(const char *ddb)
{
  char script[512];
  snprintf(script, sizeof(script),
           "{\"upstream\": \"%s\", \"steps\": [], \"then\": \"proxy\"}", ddb);
  assert_int_equal(kcld_fault_script(kcld_emu_url(&E.emu, "fault"), script),
                   0);
}

static void test_throttled_sink(void **state)
{
  const char *ddb = kcld_emu_url(&E.emu, "dynamodb");
  const char *fault = kcld_emu_url(&E.emu, "fault");
  char conf1[256], conf2[256], log1[256], log2[256], rest[1024];
  char state1[128], poison_seq[64];
  const char *data[NREC], *keys[NREC];
  char dbuf[NREC][32], kbuf[NREC][16];
  json_t *produced = json_array(), *lines, *bodies, *b;
  unsigned long long until;
  char *queue;
  pid_t p1, p2;
  (void)state;

  for (int i = 0; i < NREC; i++) {
    if (i == 77)
      snprintf(dbuf[i], sizeof(dbuf[i]), "not json %d", i);
    else
      snprintf(dbuf[i], sizeof(dbuf[i]), "{\"n\": %d}", i);
    snprintf(kbuf[i], sizeof(kbuf[i]), "pk-%d", i % 13);
    data[i] = dbuf[i];
    keys[i] = kbuf[i];
  }
  kcld_e2e_create_stream(E.aws, "thr", 2);
  kcld_e2e_put_records(E.aws, "thr", data, keys, NREC, produced);
  snprintf(poison_seq, sizeof(poison_seq), "%s", json_string_value(
    json_object_get(json_array_get(produced, 77), "seq")));
  json_decref(produced);
  create_table("thr-out-dir");
  create_table("thr-out-sqs");
  queue = create_queue("thr-dlq");
  throttle(ddb);

  /* App 1: no on_failure (the default directory); app 2: a queue. */
  snprintf(state1, sizeof(state1), "%s/t1", E.dir);
  assert_int_equal(mkdir(state1, 0700), 0);
  snprintf(conf1, sizeof(conf1), "%s/kcld.yaml", state1);
  snprintf(log1, sizeof(log1), "%s/kcld.log", state1);
  snprintf(rest, sizeof(rest),
           "handler:\n  type: dynamodb\n  table: thr-out-dir\n");
  config(conf1, "thr-dir", "thr", fault, rest);
  snprintf(conf2, sizeof(conf2), "%s/kcld2.yaml", E.dir);
  snprintf(log2, sizeof(log2), "%s/kcld2.log", E.dir);
  snprintf(rest, sizeof(rest),
           "on_failure:\n  sqs: %s\n"
           "handler:\n  type: dynamodb\n  table: thr-out-sqs\n", queue);
  config(conf2, "thr-sqs", "thr", fault, rest);
  p1 = kcld_test_spawn_kcld(conf1, log1);
  p2 = kcld_test_spawn_kcld(conf2, log2);

  /* The throttle window: writes are refused, nothing may move. */
  until = kcld_test_now_ms() + THROTTLE_MS;
  while (kcld_test_now_ms() < until) {
    if (!none_checkpointed("thr-dir") || !none_checkpointed("thr-sqs")) {
      kcld_e2e_dump_file(log1);
      fail_msg("a checkpoint moved while no record could be written");
    }
    kcld_test_sleep_ms(250);
  }
  assert_true(kcld_fault_count(fault, NULL, "DynamoDB_20120810.BatchWriteItem") > 10);
  assert_int_equal(table_count("thr-out-dir"), 0);
  assert_true(log_has(log1, "throttled"));
  assert_false(log_has(log1, "RECORD SKIPPED"));
  assert_false(log_has(log2, "RECORD SKIPPED"));
  bodies = queue_bodies(queue);
  assert_int_equal(json_array_size(bodies), 0); /* nothing dead-lettered */
  json_decref(bodies);

  /* The throttle lifts: every good record goes in. */
  unthrottle(ddb);
  until = kcld_test_now_ms() + 30000;
  while ((table_count("thr-out-dir") < NREC - 1 ||
          table_count("thr-out-sqs") < NREC - 1) &&
         kcld_test_now_ms() < until)
    kcld_test_sleep_ms(200);
  if (table_count("thr-out-dir") != NREC - 1 ||
      table_count("thr-out-sqs") != NREC - 1) {
    kcld_e2e_dump_file(log1);
    fail_msg("not every good record was written after the throttle");
  }
  /* The record that is not JSON, and only it, was dead-lettered. */
  until = kcld_test_now_ms() + 20000;
  for (;;) {
    char dl[160];
    snprintf(dl, sizeof(dl), "%s/dead-letter", state1);
    lines = dead_letter_lines(dl);
    bodies = queue_bodies(queue);
    if ((json_array_size(lines) && json_array_size(bodies)) ||
        kcld_test_now_ms() > until)
      break;
    json_decref(lines);
    json_decref(bodies);
    kcld_test_sleep_ms(200);
  }
  assert_int_equal(json_array_size(lines), 1);
  assert_int_equal(json_array_size(bodies), 1);
  assert_string_equal(json_string_value(json_object_get(json_object_get(
    json_array_get(lines, 0), "KinesisBatchInfo"), "startSequenceNumber")),
    poison_seq);
  assert_int_equal(json_integer_value(json_object_get(json_object_get(
    json_array_get(lines, 0), "KinesisBatchInfo"), "batchSize")), 1);
  b = json_loads(json_string_value(json_array_get(bodies, 0)), 0, NULL);
  assert_string_equal(json_string_value(json_object_get(json_object_get(
    b, "KinesisBatchInfo"), "startSequenceNumber")), poison_seq);
  assert_string_equal(json_string_value(json_object_get(b, "errorType")),
                      "InvalidJSON");
  json_decref(b);
  json_decref(lines);
  json_decref(bodies);
  assert_false(log_has(log1, "RECORD SKIPPED"));
  assert_true(log_has(log1, "dead-letter"));
  kcld_e2e_stop_kcld(p1, log1, 20000);
  kcld_e2e_stop_kcld(p2, log2, 20000);
  free(queue);
}

/* ======== Redrive of the directory ======== */

static void test_redrive_dir(void **state)
{
  char conf[128], dl[160], out_path[160], done[200], cmd[1024], rest[512];
  char *out = NULL, *text;
  json_t *lines;
  struct stat st;
  (void)state;

  /* The dead letter test_throttled_sink left in t1/dead-letter. */
  snprintf(dl, sizeof(dl), "%s/t1/dead-letter", E.dir);
  lines = dead_letter_lines(dl);
  if (json_array_size(lines) != 1)
    skip(); /* the test above did not leave it */
  const char *seq = json_string_value(json_object_get(json_object_get(
    json_array_get(lines, 0), "KinesisBatchInfo"), "startSequenceNumber"));

  /* --to-handler: the stdout handler writes it, its own sequence kept. */
  snprintf(conf, sizeof(conf), "%s/redrive.yaml", E.dir);
  snprintf(out_path, sizeof(out_path), "%s/redriven.out", E.dir);
  snprintf(rest, sizeof(rest),
           "handler:\n  type: stdout\n  path: %s\n  decode: utf8\n",
           out_path);
  config(conf, "thr-redrive", "thr", kcld_emu_url(&E.emu, "dynamodb"),
         rest);
  /* A dry run first: it counts the line and claims, sends, moves nothing
   * (the redrive below still finds the file where it was). */
  snprintf(cmd, sizeof(cmd), "'%s' redrive --dir '%s' --to-handler "
           "--dry-run --config '%s' 2>&1", kcld_test_bin(), dl, conf);
  assert_int_equal(run_cmd(cmd, &out), 0);
  if (!strstr(out, "{\"files\":0,\"lines\":1,\"records\":1,\"kept\":0,"
                   "\"dry_run\":true,\"error\":null}"))
    fail_msg("dry run:\n%s", out);
  free(out);
  assert_int_equal(stat(out_path, &st), -1); /* the handler saw nothing */
  snprintf(cmd, sizeof(cmd), "ls '%s'/*.jsonl >/dev/null 2>&1", dl);
  assert_int_equal(system(cmd), 0); /* not claimed: still NAME.jsonl */
  snprintf(cmd, sizeof(cmd), "'%s' redrive --dir '%s' --to-handler "
           "--config '%s' 2>&1", kcld_test_bin(), dl, conf);
  assert_int_equal(run_cmd(cmd, &out), 0);
  free(out);
  text = kcld_test_slurp(out_path, NULL);
  assert_non_null(text);
  assert_non_null(strstr(text, seq));
  assert_non_null(strstr(text, "not json 77"));
  free(text);
  snprintf(done, sizeof(done), "%s/done", dl);
  assert_int_equal(stat(done, &st), 0);
  json_decref(lines);
  lines = dead_letter_lines(dl);
  assert_int_equal(json_array_size(lines), 0); /* moved aside */
  json_decref(lines);

  /* To a stream: the done file copied back, replayed into "thr-back". */
  snprintf(cmd, sizeof(cmd), "cp '%s'/done/*.jsonl '%s'/", dl, dl);
  assert_int_equal(system(cmd), 0);
  kcld_e2e_create_stream(E.aws, "thr-back", 1);
  snprintf(cmd, sizeof(cmd), "'%s' redrive --dir '%s' --stream thr-back "
           "--config '%s' 2>&1", kcld_test_bin(), dl, conf);
  assert_int_equal(run_cmd(cmd, &out), 0);
  assert_non_null(strstr(out, "\"records\":1"));
  free(out);
  {
    json_t *sh = kcld_e2e_call(E.aws, KCLD_AWS_KINESIS, "ListShards",
                               json_pack("{s:s}", "StreamName", "thr-back"));
    const char *shard = json_string_value(json_object_get(
      json_array_get(json_object_get(sh, "Shards"), 0), "ShardId"));
    json_t *it = kcld_e2e_call(
      E.aws, KCLD_AWS_KINESIS, "GetShardIterator",
      json_pack("{s:s,s:s,s:s}", "StreamName", "thr-back", "ShardId", shard,
                "ShardIteratorType", "TRIM_HORIZON"));
    json_t *recs = kcld_e2e_call(
      E.aws, KCLD_AWS_KINESIS, "GetRecords",
      json_pack("{s:s}", "ShardIterator",
                json_string_value(json_object_get(it, "ShardIterator"))));
    json_t *r = json_array_get(json_object_get(recs, "Records"), 0);
    assert_int_equal(json_array_size(json_object_get(recs, "Records")), 1);
    assert_string_equal(json_string_value(json_object_get(r,
                                                          "PartitionKey")),
                        "pk-12"); /* 77 % 13 */
    assert_string_equal(json_string_value(json_object_get(r, "Data")),
                        "bm90IGpzb24gNzc="); /* "not json 77" */
    json_decref(sh);
    json_decref(it);
    json_decref(recs);
  }
}

/* ======== A handler that cannot start ======== */

static void test_missing_lambda_script(void **state)
{
  char conf[128], log[128], script[128], out[128], rest[1024], dl[160];
  const char *data[20], *keys[20];
  char dbuf[20][16], kbuf[20][16];
  unsigned long long until;
  json_t *lines;
  pid_t pid;
  (void)state;

  for (int i = 0; i < 20; i++) {
    snprintf(dbuf[i], sizeof(dbuf[i]), "r-%d", i);
    snprintf(kbuf[i], sizeof(kbuf[i]), "k-%d", i);
    data[i] = dbuf[i];
    keys[i] = kbuf[i];
  }
  kcld_e2e_create_stream(E.aws, "nolam", 1);
  kcld_e2e_put_records(E.aws, "nolam", data, keys, 20, NULL);
  snprintf(conf, sizeof(conf), "%s/nolam.yaml", E.dir);
  snprintf(log, sizeof(log), "%s/nolam.log", E.dir);
  snprintf(script, sizeof(script), "%s/missing.py", E.dir);
  snprintf(out, sizeof(out), "%s/nolam.out", E.dir);
  snprintf(dl, sizeof(dl), "%s/dead-letter", E.dir);
  snprintf(rest, sizeof(rest),
           "handler:\n  type: lambda\n"
           "  command: [python3, \"%s\", \"%s\"]\n"
           "  timeout: 20s\n", script, out);
  config(conf, "nolam", "nolam", kcld_emu_url(&E.emu, "dynamodb"), rest);
  pid = kcld_test_spawn_kcld(conf, log);
  /* A few seconds of a handler that cannot start. */
  until = kcld_test_now_ms() + 4000;
  while (kcld_test_now_ms() < until) {
    if (!none_checkpointed("nolam")) {
      kcld_e2e_dump_file(log);
      fail_msg("a checkpoint moved while the handler could not start");
    }
    kcld_test_sleep_ms(250);
  }
  assert_false(log_has(log, "RECORD SKIPPED"));
  lines = dead_letter_lines(dl);
  assert_int_equal(json_array_size(lines), 0);
  json_decref(lines);
  /* The script appears: the waiting records go through. */
  {
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "cp '%s/tests/processors/lambda_record.py' "
             "'%s'", kcld_test_root(), script);
    assert_int_equal(system(cmd), 0);
  }
  until = kcld_test_now_ms() + 30000;
  for (;;) {
    char *text = kcld_test_slurp(out, NULL);
    size_t n = 0;
    for (char *p = text; p && *p; p++)
      n += *p == '\n';
    free(text);
    if (n >= 20)
      break;
    if (kcld_test_now_ms() > until) {
      kcld_e2e_dump_file(log);
      fail_msg("records were not handled once the script existed");
    }
    kcld_test_sleep_ms(200);
  }
  kcld_e2e_stop_kcld(pid, log, 20000);
  assert_false(log_has(log, "RECORD SKIPPED"));
  lines = dead_letter_lines(dl);
  assert_int_equal(json_array_size(lines), 0);
  json_decref(lines);
}

/* ======== on_failure.block turned off by a reload ======== */

#define BLOCK_WAIT "on_failure.block is set: the shard waits and retries them"

/* Waits until log holds `what` more than `before` times, kcld (pid)
 * running. */
static void wait_log_count(pid_t pid, const char *log, const char *what,
                           int before)
{
  unsigned long long until = kcld_test_now_ms() + 20000;
  int status;
  while (kcld_test_count_in_file(log, what) <= before) {
    if (kcld_test_wait_exit(pid, 0, &status)) {
      kcld_e2e_dump_file(log);
      fail_msg("kcld exited (status 0x%x)", status);
    }
    if (kcld_test_now_ms() > until) {
      kcld_e2e_dump_file(log);
      fail_msg("the log does not say \"%s\" (again)", what);
    }
    kcld_test_sleep_ms(100);
  }
}

/* block goes without a destination: on_failure.dir is not set (nor may be
 * with block). */
static void block_config(const char *conf, int block)
{
  char rest[1024];
  snprintf(rest, sizeof(rest),
           "on_failure:\n  block: %s\n"
           "handler:\n  type: lambda\n"
           "  command: [%s, \"%s/tests/processors/lambda_fail_first.py\"]\n"
           "  timeout: 20s\n",
           block ? "true" : "false", kcld_test_python(), kcld_test_root());
  config(conf, "blk", "blk", kcld_emu_url(&E.emu, "dynamodb"), rest);
}

static void test_block_off_by_reload(void **state)
{
  const char *restart = "\"msg\":\"configuration keys changed that need a "
                        "restart";
  const char *data[5] = {"b-0", "b-1", "b-2", "b-3", "b-4"};
  char conf[128], log[128];
  pid_t pid;
  int waits;
  (void)state;

  kcld_e2e_create_stream(E.aws, "blk", 1);
  kcld_e2e_put_records(E.aws, "blk", data, data, 5, NULL);
  snprintf(conf, sizeof(conf), "%s/blk.yaml", E.dir);
  snprintf(log, sizeof(log), "%s/blk.log", E.dir);
  block_config(conf, 1);
  pid = kcld_test_spawn_kcld(conf, log);
  /* Every batch's first record fails for good: the shard blocks on it. */
  wait_log_count(pid, log, BLOCK_WAIT, 0);
  /* block: false, with no destination opened at start: not applied. */
  block_config(conf, 0);
  assert_int_equal(kill(pid, SIGHUP), 0);
  wait_log_count(pid, log, restart, 0);
  {
    /* Its keys: on_failure.block (and on_failure.dir, whose default is now
     * a directory). */
    char *text = kcld_test_slurp(log, NULL), *line, *keys, *end;
    line = text ? strstr(text, restart) : NULL;
    keys = line ? strstr(line, "\"keys\":\"") : NULL;
    end = keys ? strchr(keys + 8, '"') : NULL;
    if (end)
      *end = '\0';
    if (!end || !strstr(keys, "on_failure.block")) {
      kcld_e2e_dump_file(log);
      fail_msg("the restart warning does not name on_failure.block");
    }
    free(text);
  }
  /* The shard still waits on its record after the reload. */
  waits = kcld_test_count_in_file(log, BLOCK_WAIT);
  wait_log_count(pid, log, BLOCK_WAIT, waits);
  kcld_e2e_stop_kcld(pid, log, 20000);
  assert_false(log_has(log, "RECORD SKIPPED"));
  assert_false(log_has(log, "records sent to the dead-letter destination"));
  if (!none_checkpointed("blk")) {
    kcld_e2e_dump_file(log);
    fail_msg("a checkpoint moved past a record that never succeeded");
  }
}

/* ======== A dead-letter directory that cannot be written ======== */

static void test_unwritable_dead_letter_dir(void **state)
{
  char conf[128], log[128], ro[128], rest[512];
  pid_t pid;
  (void)state;

  /* A regular file where the directory's parent should be: no one, root
   * included, can create the directory. */
  snprintf(ro, sizeof(ro), "%s/not-a-dir", E.dir);
  write_file(ro, "x");
  snprintf(conf, sizeof(conf), "%s/unwritable.yaml", E.dir);
  snprintf(log, sizeof(log), "%s/unwritable.log", E.dir);
  snprintf(rest, sizeof(rest),
           "on_failure:\n  dir: %s/dead-letter\n"
           "handler:\n  type: stdout\n", ro);
  config(conf, "unwritable", "thr", kcld_emu_url(&E.emu, "dynamodb"), rest);
  pid = kcld_test_spawn_kcld(conf, log);
  assert_int_not_equal(
    kcld_e2e_await_exit(&pid, log, 15000,
                        "started without a usable dead-letter directory"),
    0);
  assert_true(log_has(log, "cannot use the dead-letter directory; not "
                           "starting"));
  assert_true(log_has(log, "not-a-dir/dead-letter"));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_throttled_sink),
    cmocka_unit_test(test_redrive_dir),
    cmocka_unit_test(test_missing_lambda_script),
    cmocka_unit_test(test_unwritable_dead_letter_dir),
    cmocka_unit_test(test_block_off_by_reload),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
