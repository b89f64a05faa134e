/* test_multistream_e2e.c — kcld with `streams:` against kinesalite and
 * dynalite: a lease table written exactly as the Java KCL's
 * DynamoDBMultiStreamLeaseSerializer writes it (two streams, a dead KCL
 * worker's leases mid-stream) is taken over by one kcld process at its
 * checkpoints: each stream's records after its checkpoint reach the
 * handler once, none before it (no re-read from TRIM_HORIZON), later
 * records follow, and on SIGTERM the leases are released at the last
 * record with streamName and shardId intact and no lease of another format
 * added; per-shard metrics carry a stream label; `kcld status` shows
 * every stream's leases.  A single-stream
 * `stream:` config pointed at that table refuses to start, naming the
 * reason.  Streams with their own handlers, retry and dead-letter
 * settings carry their own ARN; a reload adds and removes streams. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <glob.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>

#include "awssync.h"
#include "e2e.h"
#include "harness.h"
#include "lease/coordinator.h"
#include "proc.h"

#define WAIT_MS 30000

static struct {
  struct kcld_emu emu;
  struct kcld_test_aws *aws;
  char dir[64];
  pid_t pid;
} E;

/* The KCL's identifier of `stream`: account of its ARN, creation epoch. */
static void stream_id(const char *stream, char *id, size_t n)
{
  json_t *r = kcld_e2e_call(E.aws, KCLD_AWS_KINESIS, "DescribeStreamSummary",
                            json_pack("{s:s}", "StreamName", stream));
  json_t *d = json_object_get(r, "StreamDescriptionSummary");
  assert_int_equal(
    kcld_coordinator_stream_id(
      json_string_value(json_object_get(d, "StreamARN")),
      json_number_value(json_object_get(d, "StreamCreationTimestamp")), id,
      n),
    0);
  json_decref(r);
}

/* A multi-stream lease as DynamoDBMultiStreamLeaseSerializer writes it
 * (a shard without parents: no parentShardId). */
static void put_kcl_lease(const char *table, const char *id,
                          const char *shard, const char *checkpoint)
{
  char key[256];
  snprintf(key, sizeof(key), "%s:%s", id, shard);
  json_decref(kcld_e2e_call(
    E.aws, KCLD_AWS_DYNAMODB, "PutItem",
    json_pack("{s:s, s:{s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}, "
              "s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}}}",
              "TableName", table, "Item", "leaseKey", "S", key, "leaseOwner",
              "S", "kcl-worker-gone", "leaseCounter", "N", "42",
              "ownerSwitchesSinceCheckpoint", "N", "0", "checkpoint", "S",
              checkpoint, "checkpointSubSequenceNumber", "N", "0",
              "startingHashKey", "S", "0", "endingHashKey", "S",
              "340282366920938463463374607431768211455", "streamName", "S",
              id, "shardId", "S", shard)));
}

static json_t *scan(const char *table)
{
  json_t *r = kcld_e2e_call(E.aws, KCLD_AWS_DYNAMODB, "Scan",
                            json_pack("{s:s, s:b}", "TableName", table,
                                      "ConsistentRead", 1));
  json_t *items = json_incref(json_object_get(r, "Items"));
  json_decref(r);
  return items;
}

static const char *attr_s(const json_t *item, const char *name)
{
  return json_string_value(json_object_get(json_object_get(item, name), "S"));
}

/* The payloads the handler wrote (stdout handler, decode utf8), in order. */
static json_t *handled(const char *out)
{
  json_t *v = json_array();
  char *text = kcld_test_slurp(out, NULL);
  for (char *line = text, *nl; line && *line; line = nl + 1) {
    nl = strchr(line, '\n');
    if (!nl)
      break;
    *nl = '\0';
    json_t *j = json_loads(line, 0, NULL);
    const char *d = json_string_value(
      json_object_get(json_object_get(j, "kinesis"), "data"));
    if (d)
      json_array_append_new(v, json_string(d));
    json_decref(j);
  }
  free(text);
  return v;
}

/* Fails (showing the log) when kcld has exited, or with `why` when the
 * time is past `end`; else waits a little. */
static void keep_waiting(unsigned long long end, const char *log,
                         const char *why)
{
  int status = 0, gone = waitpid(E.pid, &status, WNOHANG) == E.pid;
  if (gone || kcld_test_now_ms() > end) {
    kcld_e2e_dump_file(log);
    if (gone)
      E.pid = 0;
    fail_msg("%s (kcld %s, status %d)", why, gone ? "exited" : "runs",
             status);
  }
  kcld_test_sleep_ms(50);
}

/* Waits until the handler wrote n records (keep_waiting). */
static json_t *wait_handled(const char *out, const char *log, size_t n)
{
  unsigned long long end = kcld_test_now_ms() + WAIT_MS;
  for (;;) {
    json_t *v = handled(out);
    if (json_array_size(v) >= n)
      return v;
    json_decref(v);
    keep_waiting(end, log, "the handler got too few records");
  }
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
  FILE *f = arg;
  return fwrite(p, size, n, f);
}

/* GET http://127.0.0.1:<port from the log>/metrics; NULL when not (yet)
 * served. */
static char *scrape_metrics(const char *log)
{
  char *text = kcld_test_slurp(log, NULL), *body = NULL, url[64];
  const char *p = text ? strstr(text, "\"metrics server listening\"") : NULL;
  size_t len = 0;
  if (p && (p = strstr(p, "\"address\":\"127.0.0.1:"))) {
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics",
             atoi(p + strlen("\"address\":\"127.0.0.1:")));
    FILE *f = open_memstream(&body, &len);
    CURL *h = curl_easy_init();
    assert_non_null(f);
    assert_non_null(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
    CURLcode rc = curl_easy_perform(h);
    curl_easy_cleanup(h);
    fclose(f);
    if (rc != CURLE_OK) {
      free(body);
      body = NULL;
    }
  }
  free(text);
  return body;
}

static void put(const char *stream, const char *const *data, size_t n,
                json_t *produced)
{
  const char *keys[8];
  for (size_t i = 0; i < n; i++)
    keys[i] = "pk";
  kcld_e2e_put_records(E.aws, stream, data, keys, n, produced);
}

static const char *seq_of(const json_t *produced, size_t i)
{
  return json_string_value(
    json_object_get(json_array_get(produced, i), "seq"));
}

static int has(const json_t *v, const char *s)
{
  for (size_t i = 0; i < json_array_size(v); i++)
    if (strcmp(json_string_value(json_array_get(v, i)), s) == 0)
      return 1;
  return 0;
}

static void test_kcl_multi_stream_table_taken_over(void **state)
{
  (void)state;
  char a[64], b[64], app[64], a_id[160], b_id[160], conf[128], out[128],
    log[128], rest[512];
  snprintf(a, sizeof(a), "ms-orders-%d", (int)getpid());
  snprintf(b, sizeof(b), "ms-clicks-%d", (int)getpid());
  snprintf(app, sizeof(app), "ms-app-%d", (int)getpid());
  kcld_e2e_create_stream(E.aws, a, 1);
  kcld_e2e_create_stream(E.aws, b, 1);
  json_t *pa = json_array(), *pb = json_array();
  static const char *const a_data[] = {"a1", "a2", "a3", "a4"};
  static const char *const b_data[] = {"b1", "b2", "b3", "b4"};
  put(a, a_data, 4, pa);
  put(b, b_data, 4, pb);
  stream_id(a, a_id, sizeof(a_id));
  stream_id(b, b_id, sizeof(b_id));

  /* The KCL application checkpointed a2 and b3, then its worker died. */
  kcld_e2e_create_lease_table(E.aws, app);
  put_kcl_lease(app, a_id, "shardId-000000000000", seq_of(pa, 1));
  put_kcl_lease(app, b_id, "shardId-000000000000", seq_of(pb, 2));

  snprintf(conf, sizeof(conf), "%s/ms.yaml", E.dir);
  snprintf(out, sizeof(out), "%s/ms.jsonl", E.dir);
  snprintf(log, sizeof(log), "%s/ms.log", E.dir);
  snprintf(rest, sizeof(rest),
           "streams:\n  - name: %s\n  - name: %s\n"
           "    starting_position: LATEST\n"
           "checkpoint:\n  interval: 0s\n"
           "metrics:\n  listen: 127.0.0.1:0\n"
           "handler:\n  type: stdout\n  decode: utf8\n  path: %s\n",
           a, b, out);
  kcld_e2e_write_config_at(conf, kcld_emu_url(&E.emu, "kinesis"),
                           kcld_emu_url(&E.emu, "dynamodb"), app, NULL, rest);
  E.pid = kcld_test_spawn_kcld(conf, log);

  json_t *v = wait_handled(out, log, 3);
  json_decref(v);
  /* Records after the take-over follow; had kcld started a shard over, the
   * old records would come before them (one shard keeps its order). */
  static const char *const a_more[] = {"a5"};
  static const char *const b_more[] = {"b5"};
  put(a, a_more, 1, pa);
  put(b, b_more, 1, pb);
  v = wait_handled(out, log, 5);
  static const char *const want[] = {"a3", "a4", "a5", "b4", "b5"};
  for (size_t i = 0; i < 5; i++)
    if (!has(v, want[i])) {
      kcld_e2e_dump_file(log);
      fail_msg("%s not handled", want[i]);
    }
  assert_int_equal(json_array_size(v), 5);
  json_decref(v);
  /* One series per held shard, told apart by the stream label. */
  char want_a[160], want_b[160];
  snprintf(want_a, sizeof(want_a),
           "kcld_millis_behind_latest{shard=\"shardId-000000000000\","
           "stream=\"%s\"}", a);
  snprintf(want_b, sizeof(want_b),
           "kcld_millis_behind_latest{shard=\"shardId-000000000000\","
           "stream=\"%s\"}", b);
  char *m = NULL;
  for (unsigned long long end = kcld_test_now_ms() + WAIT_MS;;) {
    free(m);
    m = scrape_metrics(log);
    if ((m && strstr(m, want_a) && strstr(m, want_b)) ||
        kcld_test_now_ms() > end)
      break;
    kcld_test_sleep_ms(200);
  }
  if (!m || !strstr(m, want_a) || !strstr(m, want_b))
    fail_msg("no per-stream series in /metrics:\n%s", m ? m : "(none)");
  free(m);
  kcld_e2e_stop_kcld(E.pid, log, 15000);
  E.pid = 0;
  /* `kcld status` shows every stream's leases: released (unowned, exit
   * 3) at the last records. */
  char cmd[512], said[8192] = "", line[256];
  snprintf(cmd, sizeof(cmd), "'%s' status -c '%s' 2>&1", kcld_test_bin(),
           conf);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  size_t got = fread(said, 1, sizeof(said) - 1, p);
  said[got] = '\0';
  int st = pclose(p);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 3)
    fail_msg("kcld status: status %d:\n%s", st, said);
  for (int i = 0; i < 2; i++) {
    snprintf(line, sizeof(line), "STREAM %s  TABLE %s", i ? b : a, app);
    if (!strstr(said, line))
      fail_msg("kcld status shows no %s:\n%s", line, said);
  }
  snprintf(line, sizeof(line), "shardId-000000000000  unowned");
  assert_non_null(strstr(said, line));
  assert_non_null(strstr(said, seq_of(pa, 4)));
  assert_non_null(strstr(said, seq_of(pb, 4)));
  v = handled(out);
  assert_int_equal(json_array_size(v), 5); /* nothing more on the way out */
  json_decref(v);

  /* Released at the last records, in the KCL's format, nothing added. */
  json_t *items = scan(app);
  assert_int_equal(json_array_size(items), 2);
  for (size_t i = 0; i < 2; i++) {
    json_t *it = json_array_get(items, i);
    int is_a = strcmp(attr_s(it, "streamName"), a_id) == 0;
    assert_true(is_a || strcmp(attr_s(it, "streamName"), b_id) == 0);
    assert_string_equal(attr_s(it, "shardId"), "shardId-000000000000");
    assert_null(json_object_get(it, "leaseOwner"));
    assert_string_equal(attr_s(it, "checkpoint"),
                        seq_of(is_a ? pa : pb, 4));
  }
  json_decref(items);
  json_decref(pa);
  json_decref(pb);

  /* The same table under a single-stream config: refused at start-up. */
  snprintf(conf, sizeof(conf), "%s/single.yaml", E.dir);
  snprintf(log, sizeof(log), "%s/single.log", E.dir);
  snprintf(rest, sizeof(rest), "handler:\n  type: stdout\n  path: %s\n",
           out);
  kcld_e2e_write_config_at(conf, kcld_emu_url(&E.emu, "kinesis"),
                           kcld_emu_url(&E.emu, "dynamodb"), app, a, rest);
  E.pid = kcld_test_spawn_kcld(conf, log);
  assert_int_not_equal(
    kcld_e2e_await_exit(&E.pid, log, WAIT_MS,
                        "kept running on a multi-stream table with stream:"),
    0);
  char *text = kcld_test_slurp(log, NULL);
  assert_non_null(text);
  assert_non_null(strstr(text, "configure it with `streams:`"));
  free(text);
}

/* The ARN of `stream`. */
static void stream_arn(const char *stream, char *arn, size_t n)
{
  json_t *r = kcld_e2e_call(E.aws, KCLD_AWS_KINESIS, "DescribeStreamSummary",
                            json_pack("{s:s}", "StreamName", stream));
  const char *v = json_string_value(json_object_get(
    json_object_get(r, "StreamDescriptionSummary"), "StreamARN"));
  assert_non_null(v);
  snprintf(arn, n, "%s", v);
  json_decref(r);
}

/* The eventSourceARN of every record of the event lines in `path` (the
 * stdout handler's lines, or a lambda child's events with "Records"), each
 * must be `arn`; returns how many records there were. */
static size_t check_arns(const char *path, const char *arn)
{
  char *text = kcld_test_slurp(path, NULL);
  size_t n = 0;
  for (char *line = text, *nl; line && (nl = strchr(line, '\n'));
       line = nl + 1) {
    *nl = '\0';
    json_t *j = json_loads(line, 0, NULL), *recs;
    assert_non_null(j);
    recs = json_object_get(j, "Records");
    for (size_t i = 0; i < (recs ? json_array_size(recs) : 1); i++) {
      json_t *r = recs ? json_array_get(recs, i) : j;
      const char *got =
        json_string_value(json_object_get(r, "eventSourceARN"));
      if (!got || strcmp(got, arn) != 0)
        fail_msg("%s: eventSourceARN %s, want %s", path, got ? got : "none",
                 arn);
      n++;
    }
    json_decref(j);
  }
  free(text);
  return n;
}

/* Waits until `path` holds `what` (keep_waiting). */
static void wait_file_has(const char *path, const char *what, const char *log)
{
  unsigned long long end = kcld_test_now_ms() + WAIT_MS;
  while (!kcld_e2e_file_has(path, what))
    keep_waiting(end, log, "a file never held what was awaited");
}

/* How many dead-letter files (one per shard and day) `dir` has, and
 * whether one holds `what` (NULL: none asked). */
static size_t dead_letters(const char *dir, const char *what, int *has)
{
  char pat[256];
  glob_t g;
  size_t n;
  snprintf(pat, sizeof(pat), "%s/*.jsonl", dir);
  if (glob(pat, 0, NULL, &g) != 0)
    return 0;
  n = g.gl_pathc;
  for (size_t i = 0; what && i < n && !*has; i++)
    *has = kcld_e2e_file_has(g.gl_pathv[i], what);
  globfree(&g);
  return n;
}

/* The item of stream b (its own lambda handler, no retries, its own
 * dead-letter directory) and of stream c (its own stdout file). */
static void own_items(char *buf, size_t n, const char *b, const char *out_b,
                      const char *ev_b, const char *c, const char *out_c)
{
  int len = snprintf(buf, n,
                     "  - name: %s\n    handler:\n      type: lambda\n"
                     "      command: [%s, \"%s/tests/processors/"
                     "lambda_record.py\", \"%s\", \"%s\"]\n"
                     "    retry: {max_retry_attempts: 0}\n"
                     "    on_failure: {dir: %s/dlq-b}\n",
                     b, kcld_test_python(), kcld_test_root(), out_b, ev_b,
                     E.dir);
  assert_true(len > 0 && (size_t)len < n);
  if (c)
    snprintf(buf + len, n - (size_t)len,
             "  - name: %s\n    handler: {path: \"%s\"}\n", c, out_c);
}

/* Writes the configuration of test_streams_own_handlers: `first` (a
 * stream with the top-level handler, or NULL) and the items. */
static void own_config(const char *conf, const char *app, const char *first,
                       const char *items, const char *out_a)
{
  static const char common[] = "starting_position: TRIM_HORIZON\n"
                               "checkpoint:\n  interval: 0s\n"
                               "handler:\n  type: stdout\n  decode: utf8\n";
  char rest[4096], head[128] = "";
  if (first)
    snprintf(head, sizeof(head), "  - name: %s\n", first);
  snprintf(rest, sizeof(rest), "streams:\n%s%s%s  path: %s\n"
           "on_failure:\n  dir: %s/dlq-a\n", head, items, common, out_a,
           E.dir);
  kcld_e2e_write_config_at(conf, kcld_emu_url(&E.emu, "kinesis"),
                           kcld_emu_url(&E.emu, "dynamodb"), app, NULL, rest);
}

/* The lease of stream `id`'s shard 0 in `table` has no owner. */
static int released(const char *table, const char *id)
{
  json_t *items = scan(table);
  int yes = 0;
  for (size_t i = 0; i < json_array_size(items); i++) {
    json_t *it = json_array_get(items, i);
    if (attr_s(it, "streamName") && strcmp(attr_s(it, "streamName"), id) == 0)
      yes = json_object_get(it, "leaseOwner") == NULL;
  }
  json_decref(items);
  return yes;
}

/* Two streams with their own handlers in one process: the first with the
 * top-level stdout handler and dead-letter directory, the second with its
 * own lambda handler, retry policy (no retries) and dead-letter directory.
 * Every event record carries its own stream's ARN, the second stream's
 * failed record is dead-lettered with its stream's ARN in its own
 * directory, and nothing of one stream reaches the other's handler.  Then
 * a reload (SIGHUP) adds a third stream with its own handler file and
 * removes the first: the third's records arrive with its ARN, the first's
 * lease is released (not deleted) while kcld runs, and its later records
 * are not consumed. */
static void test_streams_own_handlers(void **state)
{
  (void)state;
  char a[64], b[64], c[64], app[64], arn_a[256], arn_b[256], arn_c[256],
    a_id[160], conf[128], out_a[128], out_b[128], out_c[128], ev_b[128],
    log[128], items[2048], want[512], dlq_a[128], dlq_b[128];
  snprintf(a, sizeof(a), "own-a-%d", (int)getpid());
  snprintf(b, sizeof(b), "own-b-%d", (int)getpid());
  snprintf(app, sizeof(app), "own-app-%d", (int)getpid());
  kcld_e2e_create_stream(E.aws, a, 1);
  kcld_e2e_create_stream(E.aws, b, 1);
  stream_arn(a, arn_a, sizeof(arn_a));
  stream_arn(b, arn_b, sizeof(arn_b));
  json_t *pa = json_array(), *pb = json_array();
  static const char *const a_data[] = {"a1", "a2"};
  static const char *const b_data[] = {"b1", "flaky-b2"};
  put(a, a_data, 2, pa);
  put(b, b_data, 2, pb);
  json_decref(pa);
  json_decref(pb);

  snprintf(conf, sizeof(conf), "%s/own.yaml", E.dir);
  snprintf(out_a, sizeof(out_a), "%s/own-a.jsonl", E.dir);
  snprintf(out_b, sizeof(out_b), "%s/own-b.txt", E.dir);
  snprintf(ev_b, sizeof(ev_b), "%s/own-b-events.jsonl", E.dir);
  snprintf(out_c, sizeof(out_c), "%s/own-c.jsonl", E.dir);
  snprintf(log, sizeof(log), "%s/own.log", E.dir);
  own_items(items, sizeof(items), b, out_b, ev_b, NULL, NULL);
  own_config(conf, app, a, items, out_a);
  E.pid = kcld_test_spawn_kcld(conf, log);

  json_t *v = wait_handled(out_a, log, 2);
  assert_int_equal(json_array_size(v), 2);
  json_decref(v);
  wait_file_has(out_b, "b1", log);
  snprintf(dlq_a, sizeof(dlq_a), "%s/dlq-a", E.dir);
  snprintf(dlq_b, sizeof(dlq_b), "%s/dlq-b", E.dir);
  snprintf(want, sizeof(want), "\"streamArn\":\"%s\"", arn_b);
  int has = 0;
  for (unsigned long long end = kcld_test_now_ms() + WAIT_MS;
       dead_letters(dlq_b, want, &has), !has;)
    keep_waiting(end, log, "no dead letter with the stream's ARN");

  /* The reload: c added (its own handler file), a removed. */
  snprintf(c, sizeof(c), "own-c-%d", (int)getpid());
  kcld_e2e_create_stream(E.aws, c, 1);
  stream_arn(c, arn_c, sizeof(arn_c));
  stream_id(a, a_id, sizeof(a_id));
  static const char *const c_data[] = {"c1"};
  json_t *pc = json_array();
  put(c, c_data, 1, pc);
  own_items(items, sizeof(items), b, out_b, ev_b, c, out_c);
  own_config(conf, app, NULL, items, out_a);
  assert_int_equal(kill(E.pid, SIGHUP), 0);
  json_decref(wait_handled(out_c, log, 1));
  for (unsigned long long end = kcld_test_now_ms() + WAIT_MS;
       !released(app, a_id); kcld_test_sleep_ms(100))
    if (kcld_test_now_ms() > end) {
      kcld_e2e_dump_file(log);
      fail_msg("the removed stream's lease was not released");
    }
  static const char *const a_more[] = {"a3"};
  static const char *const c_more[] = {"c2"};
  put(a, a_more, 1, pc);
  put(c, c_more, 1, pc);
  json_decref(pc);
  json_decref(wait_handled(out_c, log, 2));
  kcld_e2e_stop_kcld(E.pid, log, 15000);
  E.pid = 0;

  assert_int_equal(check_arns(out_c, arn_c), 2);
  assert_false(kcld_e2e_file_has(out_a, "a3")); /* a is not consumed */
  assert_true(kcld_e2e_file_has(log, "stream removed from the "
                                     "configuration"));
  assert_true(released(app, a_id)); /* kept, not deleted */
  assert_int_equal(check_arns(out_a, arn_a), 2);
  assert_true(check_arns(ev_b, arn_b) >= 2);
  assert_false(kcld_e2e_file_has(out_b, "a1"));
  assert_int_equal(dead_letters(dlq_a, NULL, &has), 0); /* no failure */
}

static int setup(void **state)
{
  (void)state;
  memset(&E, 0, sizeof(E));
  if (kcld_e2e_fixture_start(&E.emu, &E.aws, E.dir, sizeof(E.dir),
                             "ms") != 0)
    return -1;
  return E.aws ? 0 : -1;
}

static int teardown(void **state)
{
  (void)state;
  kcld_test_reap(E.pid);
  kcld_e2e_fixture_stop(&E.emu, E.aws, E.dir);
  return 0;
}

int main(void)
{
  setvbuf(stdout, NULL, _IONBF, 0);
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_kcl_multi_stream_table_taken_over),
    cmocka_unit_test(test_streams_own_handlers),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
