/* test_stall.c — issue 10's shards that cannot progress, with the kcld
 * binary on the emulators and metrics.stuck_after 1s: each one is visible
 * in /healthz (503, the shard and its reason in the JSON body), in
 * kcld_shard_stalled{shard,reason} and in one error line "shard stalled"
 * soon after stuck_after, and /healthz is 200 again once it heals where it
 * can:
 *  - a lease whose checkpoint is "not-a-number": invalid_checkpoint; the
 *    checkpoint fixed in the table heals it;
 *  - the stream deleted, and then re-created under kcld (the checkpoint
 *    is a sequence number of the old stream): no_iterator; deleting the
 *    lease heals it;
 *  - the lease table deleted: lease_table_missing; the table re-created
 *    heals it;
 *  - records that fail for good with a dead-letter queue that does not
 *    exist: destination_unavailable; the queue created heals it;
 *  - a lambda handler whose script does not exist: handler_unavailable;
 *    the script put in place heals it;
 *  - fetch.mode: fanout on the kinesis_efo emulator (issue 13): every
 *    SubscribeToShard refused with ResourceNotFoundException (the consumer
 *    deleted): no_iterator; every subscription ending in an exception
 *    event at once: fetch_error; subscriptions that deliver nothing while
 *    MillisBehindLatest > 0: no_progress.  Each heals once the emulator
 *    serves records again. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>

#include "awssync.h"
#include "e2e.h"
#include "fault.h"
#include "harness.h"
#include "proc.h"

#define STUCK_MS 1000
/* From the fault to /healthz 503: stuck_after, the detector's period
 * (stuck_after / 4), /healthz's walk (at most 1 s old), and what noticing
 * the fault takes (a renewal, a fetch backoff): generous for a loaded
 * machine. */
#define SEEN_WITHIN_MS (STUCK_MS + 9000)
#define SHARD0 "shardId-000000000000"

static struct {
  struct kcld_emu emu;
  struct kcld_test_aws *aws;
  char dir[64], conf[128], log[128], out[128];
  const char *kinesis;  /* the Kinesis emulator's name */
  const char *fetch;    /* lines of kcld's fetch section */
  pid_t pid;
  int port;
} E;

/* The emulators `names`, `kinesis` the one that serves Kinesis. */
static int start_emulators(const char *names, const char *kinesis)
{
  memset(&E, 0, sizeof(E));
  if (access(kcld_test_bin(), X_OK) != 0)
    return -1;
  snprintf(E.dir, sizeof(E.dir), "/tmp/kcld-stall-XXXXXX");
  if (!mkdtemp(E.dir) || kcld_emu_start(&E.emu, names) != 0)
    return -1;
  snprintf(E.conf, sizeof(E.conf), "%s/kcld.yaml", E.dir);
  snprintf(E.log, sizeof(E.log), "%s/kcld.log", E.dir);
  snprintf(E.out, sizeof(E.out), "%s/out.jsonl", E.dir);
  E.kinesis = kinesis;
  E.fetch = "  idle_time: 200ms\n";
  E.aws = kcld_test_aws_new(kcld_emu_url(&E.emu, kinesis),
                            kcld_emu_url(&E.emu, "dynamodb"),
                            kcld_emu_url(&E.emu, "sqs"));
  return 0;
}

static int setup(void **state)
{
  (void)state;
  return start_emulators("kinesis dynamodb sqs", "kinesis");
}

/* Fan-out: the kinesis_efo emulator (no SQS). */
static int setup_efo(void **state)
{
  (void)state;
  if (start_emulators("kinesis_efo dynamodb", "kinesis_efo") != 0)
    return -1;
  E.fetch = "  mode: fanout\n";
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  if (E.pid)
    kcld_test_reap(E.pid);
  kcld_e2e_fixture_stop(&E.emu, E.aws, E.dir);
  return 0;
}

/* ======== kcld ======== */

/* A kcld config for `app` on `stream`, stuck_after STUCK_MS; `handler`
 * is the handler section and whatever else the test sets (top-level YAML
 * lines), NULL for a stdout handler writing E.out. */
static void write_config_with(const char *app, const char *stream,
                              const char *handler)
{
  const char *sqs = kcld_emu_url(&E.emu, "sqs");
  FILE *f = fopen(E.conf, "w");
  assert_non_null(f);
  fprintf(f,
          "application: %s\nstream: %s\nregion: us-east-1\n"
          "endpoints:\n  kinesis: %s\n  dynamodb: %s\n%s%s%s"
          "credentials:\n  access_key_id: test\n  secret_access_key: test\n"
          "shutdown_timeout: 5s\nworkers: 1\n"
          "lease:\n  failover_time: 2s\n  shard_sync_interval: 1s\n"
          "fetch:\n%s"
          "metrics:\n  listen: 127.0.0.1:0\n  stuck_after: %ds\n"
          "log:\n  level: info\n",
          app, stream, kcld_emu_url(&E.emu, E.kinesis),
          kcld_emu_url(&E.emu, "dynamodb"), sqs ? "  sqs: " : "",
          sqs ? sqs : "", sqs ? "\n" : "", E.fetch, STUCK_MS / 1000);
  if (handler)
    fputs(handler, f);
  else
    fprintf(f, "handler:\n  type: stdout\n  path: %s\n", E.out);
  assert_int_equal(fclose(f), 0);
}

static void write_config(const char *app, const char *stream)
{
  write_config_with(app, stream, NULL);
}

/* The port from kcld's "metrics server listening" line, or 0. */
static int logged_port(void)
{
  char *text = kcld_test_slurp(E.log, NULL);
  const char *key = "\"address\":\"127.0.0.1:";
  const char *p = text ? strstr(text, "\"metrics server listening\"") : NULL;
  int port = 0;
  if (p && (p = strstr(p, key)))
    port = atoi(p + strlen(key));
  free(text);
  return port;
}

static void start_kcld(void)
{
  unsigned long long t0 = kcld_test_now_ms();
  E.pid = kcld_test_spawn_kcld(E.conf, E.log);
  while (!(E.port = logged_port()) && kcld_test_now_ms() - t0 < 15000)
    kcld_test_sleep_ms(50);
  if (!E.port) {
    kcld_e2e_dump_file(E.log);
    fail_msg("kcld did not log its metrics port");
  }
}

static void stop_kcld(void)
{
  kcld_e2e_stop_kcld(E.pid, E.log, 10000);
  E.pid = 0;
}

/* ======== HTTP ======== */

struct body {
  char *text;
  size_t len;
};

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
  struct body *b = arg;
  char *t = realloc(b->text, b->len + size * n + 1);
  if (!t)
    return 0;
  memcpy(t + b->len, p, size * n);
  b->len += size * n;
  t[b->len] = '\0';
  b->text = t;
  return size * n;
}

/* GETs `path` on kcld's metrics port: the status (0 when no answer) and
 * the body (*body, to free). */
static long get(const char *path, char **body)
{
  char url[128];
  struct body b = {NULL, 0};
  long status = 0;
  CURL *c = curl_easy_init();
  assert_non_null(c);
  snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", E.port, path);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 3000L);
  if (curl_easy_perform(c) == CURLE_OK)
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(c);
  *body = b.text;
  return status;
}

/* The reason /healthz gives for `shard` ("" when it is not listed; NULL
 * when /healthz answered 200).  Static. */
static const char *healthz_reason(const char *shard)
{
  static char reason[64];
  char *body = NULL;
  long status = get("/healthz", &body);
  json_t *doc = body ? json_loads(body, 0, NULL) : NULL;
  json_t *one;
  size_t i;
  reason[0] = '\0';
  if (status == 200) {
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "status")),
                        "ok");
    json_decref(doc);
    free(body);
    return NULL;
  }
  if (status == 503) {
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "status")),
                        "unhealthy");
    json_array_foreach(json_object_get(doc, "stalled"), i, one) {
      if (strcmp(json_string_value(json_object_get(one, "shard")), shard))
        continue;
      snprintf(reason, sizeof(reason), "%s",
               json_string_value(json_object_get(one, "reason")));
      assert_true(json_integer_value(json_object_get(
                    one, "seconds_since_progress")) >= STUCK_MS / 1000);
    }
  }
  json_decref(doc);
  free(body);
  return reason;
}

/* Waits until /healthz lists `shard` as stalled for `reason`; returns the
 * milliseconds it took.  Fails the test (showing the log) after
 * SEEN_WITHIN_MS. */
static unsigned long long await_stalled(const char *shard, const char *reason)
{
  unsigned long long t0 = kcld_test_now_ms();
  const char *got = NULL;
  while (kcld_test_now_ms() - t0 < SEEN_WITHIN_MS) {
    got = healthz_reason(shard);
    if (got && strcmp(got, reason) == 0)
      return kcld_test_now_ms() - t0;
    kcld_test_sleep_ms(100);
  }
  kcld_e2e_dump_file(E.log);
  fail_msg("/healthz did not list %s as %s within %d ms (last: %s)", shard,
           reason, SEEN_WITHIN_MS, got ? got : "200");
  return 0;
}

/* Waits until /healthz answers 200; returns the milliseconds it took. */
static unsigned long long await_healthy(unsigned timeout_ms)
{
  unsigned long long t0 = kcld_test_now_ms();
  while (kcld_test_now_ms() - t0 < timeout_ms) {
    if (!healthz_reason(SHARD0))
      return kcld_test_now_ms() - t0;
    kcld_test_sleep_ms(100);
  }
  kcld_e2e_dump_file(E.log);
  fail_msg("/healthz not 200 again within %u ms", timeout_ms);
  return 0;
}

/* The metric and the log line say the same as /healthz. */
static void assert_loud(const char *shard, const char *reason)
{
  char series[160], *body = NULL, *log;
  snprintf(series, sizeof(series),
           "kcld_shard_stalled{shard=\"%s\",reason=\"%s\"} 1\n", shard,
           reason);
  assert_int_equal(get("/metrics", &body), 200);
  if (!strstr(body, series))
    fail_msg("no %s in /metrics", series);
  free(body);
  log = kcld_test_slurp(E.log, NULL);
  assert_non_null(log);
  snprintf(series, sizeof(series), "\"reason\":\"%s\"", reason);
  const char *line = strstr(log, "\"shard stalled\"");
  while (line && !strstr(line, series))
    line = strstr(line + 1, "\"shard stalled\"");
  if (!line) {
    free(log);
    kcld_e2e_dump_file(E.log);
    fail_msg("no \"shard stalled\" line for %s", reason);
  }
  free(log);
}

/* await_stalled for SHARD0 and `reason`, the time printed (`after` what),
 * then assert_loud. */
static void expect_stall(const char *reason, const char *after)
{
  unsigned long long ms = await_stalled(SHARD0, reason);
  printf("%s in /healthz %llu ms after %s\n", reason, ms, after);
  assert_loud(SHARD0, reason);
}

/* Lines of the log that contain both strings. */
static int log_lines_with(const char *a, const char *b)
{
  return (int)kcld_e2e_lines_with(E.log, a, b);
}

/* ======== AWS set-up ======== */

static void put_records(const char *stream, int n)
{
  const char *data[8], *keys[8];
  assert_true(n <= 8);
  for (int i = 0; i < n; i++) {
    data[i] = "{\"n\":1}";
    keys[i] = "k";
  }
  kcld_e2e_put_records(E.aws, stream, data, keys, (size_t)n, NULL);
}

/* Lines in the handler's output file. */
static int handled(void)
{
  char *text = kcld_test_slurp(E.out, NULL);
  int n = 0;
  for (const char *p = text; p && (p = strchr(p, '\n')); p++)
    n++;
  free(text);
  return n;
}

static void await_handled(int n)
{
  unsigned long long t0 = kcld_test_now_ms();
  while (handled() < n && kcld_test_now_ms() - t0 < 20000)
    kcld_test_sleep_ms(100);
  if (handled() < n) {
    kcld_e2e_dump_file(E.log);
    fail_msg("%d of %d records handled", handled(), n);
  }
}

/* A lease as KCL 2.x writes it, unowned. */
static void put_lease(const char *table, const char *checkpoint,
                      const char *counter)
{
  json_decref(kcld_e2e_call(
    E.aws, KCLD_AWS_DYNAMODB, "PutItem",
    json_pack("{s:s, s:{s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}}}",
              "TableName", table, "Item", "leaseKey", "S", SHARD0,
              "leaseCounter", "N", counter, "checkpoint", "S", checkpoint,
              "checkpointSubSequenceNumber", "N", "0",
              "ownerSwitchesSinceCheckpoint", "N", "0")));
}

/* ======== The cases ======== */

/* A checkpoint no worker can start from: never taken, stalled as
 * invalid_checkpoint; once an operator fixes it, taken and healthy. */
static void test_invalid_checkpoint(void **state)
{
  (void)state;
  kcld_e2e_create_stream(E.aws, "cp-stream", 1);
  put_records("cp-stream", 3);
  kcld_e2e_create_lease_table(E.aws, "cp-app");
  put_lease("cp-app", "not-a-number", "3");
  write_config("cp-app", "cp-stream");
  start_kcld();
  expect_stall("invalid_checkpoint", "the port opened");
  assert_int_equal(handled(), 0);
  /* The operator's fix: the lease starts over from the stream's start. */
  json_decref(kcld_e2e_call(
    E.aws, KCLD_AWS_DYNAMODB, "UpdateItem",
    json_pack("{s:s, s:{s:{s:s}}, s:s, s:{s:s}, s:{s:{s:s}}}", "TableName",
              "cp-app", "Key", "leaseKey", "S", SHARD0, "UpdateExpression",
              "SET #cp = :cp", "ExpressionAttributeNames", "#cp",
              "checkpoint", "ExpressionAttributeValues", ":cp", "S",
              "TRIM_HORIZON")));
  await_handled(3);
  unsigned long long ms = await_healthy(10000);
  printf("healthy %llu ms after the records were handled\n", ms);
  assert_true(log_lines_with("\"shard no longer stalled\"",
                             "invalid_checkpoint") >= 1);
  stop_kcld();
}

/* A one-shard stream with 3 records, and kcld (stdout handler) running on
 * it: the records handled, /healthz 200. */
static void start_healthy(const char *app, const char *stream)
{
  kcld_e2e_create_stream(E.aws, stream, 1);
  put_records(stream, 3);
  write_config(app, stream);
  start_kcld();
  await_handled(3);
  assert_null(healthz_reason(SHARD0));
}

/* Waits until a line of the log holds both strings. */
static void await_log(const char *a, const char *b)
{
  unsigned long long t0 = kcld_test_now_ms();
  while (!log_lines_with(a, b) && kcld_test_now_ms() - t0 < 15000)
    kcld_test_sleep_ms(100);
  if (!log_lines_with(a, b)) {
    kcld_e2e_dump_file(E.log);
    fail_msg("no log line with %s and %s", a, b);
  }
}

/* The stream deleted under kcld, then re-created: no_iterator while it is
 * gone, and still once it is back (the lease's checkpoint is a sequence
 * number of the old stream, which GetShardIterator refuses): the new
 * stream's records are not handled.  An operator deletes the lease: it is
 * created again at the starting position and the shard heals. */
static void test_stream_recreated(void **state)
{
  (void)state;
  start_healthy("re-app", "re-stream");
  json_decref(kcld_e2e_call(E.aws, KCLD_AWS_KINESIS, "DeleteStream",
                            json_pack("{s:s}", "StreamName", "re-stream")));
  expect_stall("no_iterator", "the stream was deleted");
  /* Once the poller gives its iterator up, re-create the stream. */
  await_log("\"GetShardIterator\"", "ResourceNotFoundException");
  kcld_e2e_create_stream(E.aws, "re-stream", 1);
  put_records("re-stream", 2);
  await_log("\"GetShardIterator\"", "InvalidArgumentException");
  const char *r = healthz_reason(SHARD0);
  assert_non_null(r);
  assert_string_equal(r, "no_iterator");
  assert_int_equal(handled(), 3);
  /* The fix the hint names: delete the lease. */
  json_decref(kcld_e2e_call(
    E.aws, KCLD_AWS_DYNAMODB, "DeleteItem",
    json_pack("{s:s, s:{s:{s:s}}}", "TableName", "re-app", "Key", "leaseKey",
              "S", SHARD0)));
  await_handled(5);
  unsigned long long ms = await_healthy(15000);
  printf("healthy %llu ms after the new records were handled\n", ms);
  stop_kcld();
}

/* The lease table deleted under kcld: every shard stalled as
 * lease_table_missing (kcld does not recreate it: that would restart every
 * shard from its initial position); the table restored heals it. */
static void test_lease_table_deleted(void **state)
{
  (void)state;
  start_healthy("lt-app", "lt-stream");
  json_decref(kcld_e2e_call(E.aws, KCLD_AWS_DYNAMODB, "DeleteTable",
                            json_pack("{s:s}", "TableName", "lt-app")));
  expect_stall("lease_table_missing", "the deletion");
  /* Restored (as from a backup: the lease with its checkpoint). */
  kcld_e2e_create_lease_table(E.aws, "lt-app");
  put_lease("lt-app", "TRIM_HORIZON", "1");
  put_records("lt-stream", 1);
  unsigned long long ms = await_healthy(15000);
  printf("healthy %llu ms after the table was restored\n", ms);
  stop_kcld();
}

/* Records that fail for good, and a dead-letter queue that does not
 * exist: nothing is skipped, the shard waits, stalled as
 * destination_unavailable; once the queue exists the records go there and
 * the shard heals. */
static void test_dlq_missing(void **state)
{
  char rest[1024], queue[256];
  (void)state;
  kcld_e2e_create_stream(E.aws, "dlq-stream", 1);
  put_records("dlq-stream", 3);
  /* The queue's URL, as SQS will name it once it exists. */
  json_t *r = kcld_e2e_call(E.aws, KCLD_AWS_SQS, "CreateQueue",
                            json_pack("{s:s}", "QueueName", "probe"));
  const char *url = json_string_value(json_object_get(r, "QueueUrl"));
  assert_non_null(url);
  assert_non_null(strstr(url, "/probe"));
  snprintf(queue, sizeof(queue), "%.*sdlq-later",
           (int)(strstr(url, "/probe") + 1 - url), url);
  json_decref(r);
  snprintf(rest, sizeof(rest),
           "retry:\n  max_retry_attempts: 0\n  backoff_max: 200ms\n"
           "on_failure:\n  sqs: %s\n"
           "handler:\n  type: lambda\n"
           "  command: [%s, \"%s/tests/processors/lambda_fail_first.py\"]\n",
           queue, kcld_test_python(), kcld_test_root());
  write_config_with("dlq-app", "dlq-stream", rest);
  start_kcld();
  expect_stall("destination_unavailable", "the port opened");
  assert_int_equal(log_lines_with("RECORD SKIPPED", ""), 0);
  /* The queue is created: the records are dead-lettered, the shard moves. */
  json_decref(kcld_e2e_call(E.aws, KCLD_AWS_SQS, "CreateQueue",
                            json_pack("{s:s}", "QueueName", "dlq-later")));
  unsigned long long ms = await_healthy(20000);
  printf("healthy %llu ms after the queue was created\n", ms);
  r = kcld_e2e_call(E.aws, KCLD_AWS_SQS, "GetQueueAttributes",
                    json_pack("{s:s,s:[s]}", "QueueUrl", queue,
                              "AttributeNames",
                              "ApproximateNumberOfMessages"));
  const char *n = json_string_value(json_object_get(
    json_object_get(r, "Attributes"), "ApproximateNumberOfMessages"));
  assert_non_null(n);
  assert_true(atoi(n) >= 1);
  json_decref(r);
  stop_kcld();
}

/* A lambda handler whose script does not exist: every batch fails as an
 * infrastructure failure, nothing is skipped, the shard waits, stalled as
 * handler_unavailable; once the script is there the records go through
 * and the shard heals. */
static void test_handler_unavailable(void **state)
{
  char rest[1024], script[160], cmd[512];
  (void)state;
  kcld_e2e_create_stream(E.aws, "nh-stream", 1);
  put_records("nh-stream", 3);
  snprintf(script, sizeof(script), "%s/later.py", E.dir);
  snprintf(rest, sizeof(rest),
           "handler:\n  type: lambda\n  command: [%s, \"%s\", \"%s\"]\n",
           kcld_test_python(), script, E.out);
  write_config_with("nh-app", "nh-stream", rest);
  start_kcld();
  expect_stall("handler_unavailable", "the port opened");
  assert_int_equal(log_lines_with("RECORD SKIPPED", ""), 0);
  snprintf(cmd, sizeof(cmd), "cp '%s/tests/processors/lambda_record.py' '%s'",
           kcld_test_root(), script);
  assert_int_equal(system(cmd), 0);
  await_handled(3);
  unsigned long long ms = await_healthy(15000);
  printf("healthy %llu ms after the records were handled\n", ms);
  stop_kcld();
}

/* ======== Fan-out ======== */

/* Merges `json` into the kinesis_efo emulator's script. */
static void efo_script(const char *json)
{
  json_t *r = kcld_fault_post(kcld_emu_url(&E.emu, "kinesis_efo"),
                              "/__efo/script", json);
  assert_non_null(r);
  json_decref(r);
}

/* fetch.mode: fanout on a one-shard stream, 3 records handled, /healthz
 * 200; subscriptions end every 2 s (so that a refusal meets the next one
 * soon). */
static void start_healthy_fanout(const char *app, const char *stream)
{
  efo_script("{\"end_after_ms\": 2000}");
  start_healthy(app, stream);
}

/* Every SubscribeToShard refused as the consumer deleted would be
 * (ResourceNotFoundException, HTTP 400): nothing moves the shard on and
 * the source says why: no_iterator.  Served again, the shard heals. */
static void test_fanout_refused(void **state)
{
  (void)state;
  start_healthy_fanout("fr-app", "fr-stream");
  efo_script("{\"refuse\": [{\"type\": \"ResourceNotFoundException\", "
             "\"op\": \"SubscribeToShard\", \"times\": 1000000}]}");
  expect_stall("no_iterator", "subscriptions were refused");
  assert_true(log_lines_with("\"SubscribeToShard\"",
                             "ResourceNotFoundException") >= 1);
  efo_script("{\"refuse\": []}");
  put_records("fr-stream", 2);
  await_handled(5);
  unsigned long long ms = await_healthy(20000);
  printf("healthy %llu ms after the records were handled\n", ms);
  stop_kcld();
}

/* Every subscription accepted, then ended at once by an exception event
 * (InternalFailure), resubscribed, ended again...: fetch_error.  Once the
 * subscriptions deliver again, the shard heals. */
static void test_fanout_endless_exceptions(void **state)
{
  (void)state;
  start_healthy_fanout("fx-app", "fx-stream");
  efo_script("{\"faults\": [{\"after_events\": 0, \"what\": "
             "\"exception\", \"type\": \"InternalFailure\", "
             "\"times\": 1000000}]}");
  expect_stall("fetch_error", "subscriptions began to fail");
  assert_true(log_lines_with("\"SubscribeToShard\"", "InternalFailure") >=
              1);
  efo_script("{\"faults\": []}");
  put_records("fx-stream", 2);
  await_handled(5);
  unsigned long long ms = await_healthy(20000);
  printf("healthy %llu ms after the records were handled\n", ms);
  stop_kcld();
}

/* Subscriptions that stay open and send events with no records while
 * MillisBehindLatest > 0: answers, but no progress (issue 13, item 6):
 * no_progress, without any fetch error.  Once records come, it heals. */
static void test_fanout_behind_without_records(void **state)
{
  (void)state;
  start_healthy_fanout("fb-app", "fb-stream");
  efo_script("{\"behind_ms\": 60000}");
  put_records("fb-stream", 2);
  expect_stall("no_progress", "records stopped coming while behind");
  assert_int_equal(handled(), 3);
  efo_script("{\"behind_ms\": 0}");
  await_handled(5);
  unsigned long long ms = await_healthy(20000);
  printf("healthy %llu ms after the records were handled\n", ms);
  stop_kcld();
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_invalid_checkpoint, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_stream_recreated, setup, teardown),
    cmocka_unit_test_setup_teardown(test_lease_table_deleted, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_dlq_missing, setup, teardown),
    cmocka_unit_test_setup_teardown(test_handler_unavailable, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_fanout_refused, setup_efo,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_fanout_endless_exceptions,
                                    setup_efo, teardown),
    cmocka_unit_test_setup_teardown(test_fanout_behind_without_records,
                                    setup_efo, teardown),
  };
  curl_global_init(CURL_GLOBAL_DEFAULT);
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  curl_global_cleanup();
  return rc;
}
