/* test_lambda_plugin_e2e.c — the real kcld binary against kinesalite and
 * dynalite with handler.type lambda (tests/processors/lambda_record.py:
 * every record handled, a partial failure retried from the failed record;
 * every event, for a stream configured by name, field by field the shape of
 * the AWS documentation's example, its eventSourceARN the stream's ARN;
 * a child that hangs, with a grandchild, does not hold SIGTERM past
 * shutdown_timeout + 2 s, and dies with kcld under SIGKILL) and
 * handler.type plugin (examples/plugin-count: the totals it prints at
 * shutdown match what was produced, once every checkpoint is at the end). */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "awssync.h"
#include "e2e.h"
#include "harness.h"
#include "proc.h"

struct env {
  struct kcld_emu emu;
  struct kcld_test_aws *aws;
  char dir[64];
  json_t *produced; /* {shard, seq, data, pk} */
};

static struct env E;

/* Puts one record per payload, partition keys spread over the shards. */
static void put(const char *stream, const char *const *data, size_t n)
{
  char keys[64][32];
  const char *kp[64];
  assert_true(n <= 64);
  for (size_t i = 0; i < n; i++) {
    snprintf(keys[i], sizeof(keys[i]), "pk-%zu", i);
    kp[i] = keys[i];
  }
  kcld_e2e_put_records(E.aws, stream, data, kp, n, E.produced);
}

static void write_config(const char *path, const char *app,
                         const char *stream, const char *handler)
{
  char rest[1280];
  int n = snprintf(rest, sizeof(rest),
                   "batch:\n"
                   "  size: 7\n"
                   "retry:\n"
                   "  backoff_base: 50ms\n"
                   "handler:\n%s",
                   handler);
  assert_true(n > 0 && (size_t)n < sizeof(rest));
  kcld_e2e_write_config(path, &E.emu, app, stream, rest);
}

/* 1 when every produced record has a "<shard> <seq> <data>" line. */
static int all_handled(const char *path)
{
  char *text = kcld_test_slurp(path, NULL);
  size_t i;
  json_t *e;
  int ok = text != NULL;

  json_array_foreach(E.produced, i, e) {
    char line[512];
    if (!ok)
      break;
    snprintf(line, sizeof(line), "%s %s %s\n",
             json_string_value(json_object_get(e, "shard")),
             json_string_value(json_object_get(e, "seq")),
             json_string_value(json_object_get(e, "data")));
    ok = strstr(text, line) != NULL;
  }
  free(text);
  return ok;
}

/* The example Kinesis event of "Using Lambda with Kinesis Data Streams",
 * https://docs.aws.amazon.com/lambda/latest/dg/with-kinesis.html (its
 * first record). */
static const char s_doc_event[] =
  "{\"Records\":[{\"kinesis\":{\"kinesisSchemaVersion\":\"1.0\","
  "\"partitionKey\":\"1\",\"sequenceNumber\":"
  "\"49590338271490256608559692538361571095921575989136588898\","
  "\"data\":\"SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==\","
  "\"approximateArrivalTimestamp\":1545084650.987},"
  "\"eventSource\":\"aws:kinesis\",\"eventVersion\":\"1.0\","
  "\"eventID\":\"shardId-000000000006:"
  "49590338271490256608559692538361571095921575989136588898\","
  "\"eventName\":\"aws:kinesis:record\","
  "\"invokeIdentityArn\":\"arn:aws:iam::111122223333:role/lambda-role\","
  "\"awsRegion\":\"us-east-2\",\"eventSourceARN\":"
  "\"arn:aws:kinesis:us-east-2:111122223333:stream/lambda-stream\"}]}";

/* `got` has exactly the members of `want`, each of the same JSON type,
 * objects compared member by member; `path` names the place in messages. */
static void same_shape(const json_t *want, const json_t *got,
                       const char *path)
{
  const char *key;
  json_t *w;
  char sub[256];

  if (json_typeof(want) != json_typeof(got))
    fail_msg("%s: type %d, the documentation's is %d", path,
             got ? (int)json_typeof(got) : -1, (int)json_typeof(want));
  if (!json_is_object(want))
    return;
  if (json_object_size(want) != json_object_size(got))
    fail_msg("%s: %zu members, the documentation's has %zu", path,
             json_object_size(got), json_object_size(want));
  json_object_foreach((json_t *)want, key, w) {
    snprintf(sub, sizeof(sub), "%s.%s", path, key);
    same_shape(w, json_object_get(got, key), sub);
  }
}

/* The produced record {shard, seq, data, pk} with sequence number seq. */
static json_t *produced_at(const char *seq)
{
  size_t i;
  json_t *e;
  json_array_foreach(E.produced, i, e)
    if (strcmp(json_string_value(json_object_get(e, "seq")), seq) == 0)
      return e;
  fail_msg("the event carries sequence number %s, never produced", seq);
  return NULL;
}

/* Every record of every event line in `path` against the documentation's
 * example: the same members and types; the constants equal; eventID,
 * partitionKey, sequenceNumber and data those of a produced record;
 * awsRegion kcld's; eventSourceARN `arn` (the stream's, resolved by kcld
 * although the configuration names the stream); approximateArrivalTimestamp
 * epoch seconds.  Returns the number of records checked. */
static size_t check_events(const char *path, const char *arn)
{
  json_t *doc = json_loads(s_doc_event, 0, NULL);
  json_t *want = json_array_get(json_object_get(doc, "Records"), 0);
  static const char *const consts[] = {"eventSource", "eventVersion",
                                       "eventName"};
  char *text = kcld_test_slurp(path, NULL), *line, *save = NULL;
  size_t n = 0;

  assert_non_null(want);
  assert_non_null(text);
  for (line = strtok_r(text, "\n", &save); line;
       line = strtok_r(NULL, "\n", &save)) {
    json_t *ev = json_loads(line, 0, NULL), *r;
    size_t i;
    assert_non_null(ev);
    assert_int_equal(json_object_size(ev), 1); /* "Records" only */
    json_array_foreach(json_object_get(ev, "Records"), i, r) {
      json_t *k = json_object_get(r, "kinesis");
      const char *seq = json_string_value(json_object_get(k,
                                                          "sequenceNumber"));
      json_t *p = produced_at(seq);
      char id[256], b64[256];
      const char *data = json_string_value(json_object_get(p, "data"));

      same_shape(want, r, "Records[]");
      for (size_t c = 0; c < sizeof(consts) / sizeof(consts[0]); c++)
        assert_string_equal(json_string_value(json_object_get(r, consts[c])),
                            json_string_value(json_object_get(want,
                                                              consts[c])));
      assert_string_equal(
        json_string_value(json_object_get(k, "kinesisSchemaVersion")),
        json_string_value(json_object_get(json_object_get(want, "kinesis"),
                                          "kinesisSchemaVersion")));
      snprintf(id, sizeof(id), "%s:%s",
               json_string_value(json_object_get(p, "shard")), seq);
      assert_string_equal(json_string_value(json_object_get(r, "eventID")),
                          id);
      assert_string_equal(json_string_value(json_object_get(k,
                                                            "partitionKey")),
                          json_string_value(json_object_get(p, "pk")));
      assert_true(strlen(data) < 180);
      EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)data,
                      (int)strlen(data));
      assert_string_equal(json_string_value(json_object_get(k, "data")),
                          b64);
      assert_string_equal(json_string_value(json_object_get(r, "awsRegion")),
                          "us-east-1");
      assert_string_equal(
        json_string_value(json_object_get(r, "eventSourceARN")), arn);
      /* Put during this test: seconds since the epoch, not milliseconds. */
      double t = json_number_value(json_object_get(
        k, "approximateArrivalTimestamp"));
      assert_true(t > 1.5e9 && t < 1e10);
      n++;
    }
    json_decref(ev);
  }
  free(text);
  json_decref(doc);
  return n;
}

/* 1 when the lease table of `app` checkpoints every shard at its last
 * produced record. */
static int all_checkpointed(const char *app)
{
  const char *type = NULL;
  json_t *req = json_pack("{s:s,s:b}", "TableName", app, "ConsistentRead", 1);
  json_t *r = kcld_test_aws_call(E.aws, KCLD_AWS_DYNAMODB, "Scan", req, &type);
  json_t *items, *item, *e;
  size_t i, k;
  int ok = 1;

  json_decref(req);
  if (!r)
    return 0;
  items = json_object_get(r, "Items");
  json_array_foreach(E.produced, i, e) {
    const char *shard = json_string_value(json_object_get(e, "shard"));
    const char *seq = json_string_value(json_object_get(e, "seq"));
    int found = 0;
    json_array_foreach(items, k, item) {
      const char *key = json_string_value(
        json_object_get(json_object_get(item, "leaseKey"), "S"));
      const char *cp = json_string_value(
        json_object_get(json_object_get(item, "checkpoint"), "S"));
      if (key && strcmp(key, shard) == 0 && cp &&
          (strcmp(cp, "SHARD_END") == 0 ||
           (strlen(cp) > strlen(seq) ||
            (strlen(cp) == strlen(seq) && strcmp(cp, seq) >= 0))))
        found = 1;
    }
    ok = ok && found;
  }
  json_decref(r);
  return ok;
}

static int setup(void **state)
{
  (void)state;
  memset(&E, 0, sizeof(E));
  if (kcld_e2e_fixture_start(&E.emu, &E.aws, E.dir, sizeof(E.dir),
                             "lpe2e") != 0)
    return -1;
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  kcld_e2e_fixture_stop(&E.emu, E.aws, E.dir);
  return 0;
}

static void test_lambda(void **state)
{
  char conf[128], out[128], events[128], log[128], handler[1024];
  char fail_line[256], arn[256];
  const char *data[30];
  char bufs[30][16];
  unsigned long long end;
  pid_t pid;
  (void)state;

  E.produced = json_array();
  for (int i = 0; i < 30; i++) {
    snprintf(bufs[i], sizeof(bufs[i]), i == 11 ? "flaky-%d" : "r-%d", i);
    data[i] = bufs[i];
  }
  kcld_e2e_create_stream(E.aws, "lam", 2);
  put("lam", data, 30);
  snprintf(conf, sizeof(conf), "%s/lambda.yaml", E.dir);
  snprintf(out, sizeof(out), "%s/lambda.out", E.dir);
  snprintf(events, sizeof(events), "%s/lambda.events", E.dir);
  snprintf(log, sizeof(log), "%s/lambda.log", E.dir);
  snprintf(handler, sizeof(handler),
           "  type: lambda\n"
           "  command: [python3, \"%s/tests/processors/lambda_record.py\", "
           "\"%s\", \"%s\"]\n"
           "  concurrency: 2\n"
           "  timeout: 20s\n",
           kcld_test_root(), out, events);
  write_config(conf, "lamapp", "lam", handler);
  pid = kcld_test_spawn_kcld(conf, log);
  end = kcld_test_now_ms() + 60000;
  while (!all_handled(out) && kcld_test_now_ms() < end)
    kcld_test_sleep_ms(100);
  if (!all_handled(out)) {
    kcld_test_reap(pid);
    kcld_e2e_dump_file(log);
    kcld_e2e_dump_file(out);
    fail_msg("not every record reached the lambda child within 60 s");
  }
  kcld_e2e_stop_kcld(pid, log, 30000);

  /* The flaky record failed once (partial failure) and was then retried. */
  json_t *flaky = json_array_get(E.produced, 11);
  snprintf(fail_line, sizeof(fail_line), "FAILED %s %s\n",
           json_string_value(json_object_get(flaky, "shard")),
           json_string_value(json_object_get(flaky, "seq")));
  char *text = kcld_test_slurp(out, NULL);
  assert_non_null(strstr(text, fail_line));
  free(text);
  text = kcld_test_slurp(log, NULL);
  assert_non_null(strstr(text, "lambda handler: child started"));
  free(text);

  /* The events, the stream configured by name ("lam"). */
  json_t *d = kcld_e2e_call(E.aws, KCLD_AWS_KINESIS, "DescribeStreamSummary",
                            json_pack("{s:s}", "StreamName", "lam"));
  snprintf(arn, sizeof(arn), "%s", json_string_value(json_object_get(
    json_object_get(d, "StreamDescriptionSummary"), "StreamARN")));
  json_decref(d);
  assert_true(strncmp(arn, "arn:aws:kinesis:us-east-1:", 26) == 0);
  assert_true(check_events(events, arn) >= 30);
  json_decref(E.produced);
}

/* The pid a file holds (written by the hanging child), once it is there. */
static pid_t read_pid(const char *path, unsigned ms)
{
  unsigned long long end = kcld_test_now_ms() + ms;
  for (;;) {
    char *text = kcld_test_slurp(path, NULL);
    pid_t pid = text && strchr(text, '\n') ? (pid_t)atoi(text) : 0;
    free(text);
    if (pid > 0 || kcld_test_now_ms() > end)
      return pid;
    kcld_test_sleep_ms(50);
  }
}

/* 1 once `pid` has read its batch and is hanging: the child below execs
 * `sleep` after its `read`. */
static int hanging(pid_t pid)
{
  char path[64];
  char *comm;
  int yes;
  snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
  comm = kcld_test_slurp(path, NULL);
  yes = comm && strncmp(comm, "sleep", 5) == 0;
  free(comm);
  return yes;
}

/* kcld running a lambda child that reads a batch and hangs, after it
 * started a grandchild; *child and *grandchild are their pids. */
static pid_t start_hung(const char *tag, char *log, size_t loglen,
                        pid_t *child, pid_t *grandchild)
{
  char conf[160], cpath[160], gpath[160], app[32], stream[32];
  const char *data[] = {"h-1", "h-2", "h-3"};
  unsigned long long end;
  FILE *f;
  pid_t pid;

  snprintf(app, sizeof(app), "%sapp", tag);
  snprintf(stream, sizeof(stream), "%s", tag);
  snprintf(conf, sizeof(conf), "%s/%s.yaml", E.dir, tag);
  snprintf(log, loglen, "%s/%s.log", E.dir, tag);
  snprintf(cpath, sizeof(cpath), "%s/%s.child", E.dir, tag);
  snprintf(gpath, sizeof(gpath), "%s/%s.grandchild", E.dir, tag);
  kcld_e2e_create_stream(E.aws, stream, 1);
  put(stream, data, 3);
  f = fopen(conf, "w");
  assert_non_null(f);
  fprintf(f,
          "application: %s\nstream: %s\nregion: us-east-1\n"
          "endpoints:\n  kinesis: %s\n  dynamodb: %s\n"
          "credentials:\n  access_key_id: test\n  secret_access_key: test\n"
          "shutdown_timeout: 2s\n"
          "lease:\n  failover_time: 1s\n"
          "fetch:\n  idle_time: 200ms\n"
          "metrics:\n  listen: \"\"\n"
          "handler:\n  type: lambda\n  timeout: 60s\n"
          /* "$$" is a literal "$" in kcld's config. */
          "  command: [sh, -c, \"echo $$$$ > %s; sleep 1000 & echo $$! > %s; "
          "read -r l; exec sleep 1000\"]\n",
          app, stream, kcld_emu_url(&E.emu, "kinesis"),
          kcld_emu_url(&E.emu, "dynamodb"), cpath, gpath);
  assert_int_equal(fclose(f), 0);
  pid = kcld_test_spawn_kcld(conf, log);
  *child = read_pid(cpath, 20000);
  *grandchild = read_pid(gpath, 20000);
  end = kcld_test_now_ms() + 30000;
  while (*child > 0 && !hanging(*child) && kcld_test_now_ms() < end)
    kcld_test_sleep_ms(50);
  if (*child <= 0 || *grandchild <= 0 || !hanging(*child)) {
    kcld_test_reap(pid);
    kcld_e2e_dump_file(log);
    fail_msg("the lambda child never got its batch");
  }
  return pid;
}

/* SIGTERM with a handler hung on a batch (handler.timeout 60 s): kcld
 * exits 0 within shutdown_timeout (2 s) + 2 s, the child and its
 * grandchild are killed, the lease is released, and the checkpoint has not
 * moved past the batch that was never answered. */
static void test_lambda_hung_bounded_shutdown(void **state)
{
  char log[160];
  pid_t child, gc, pid;
  int status = 0;
  (void)state;

  E.produced = json_array();
  pid = start_hung("hng", log, sizeof(log), &child, &gc);
  unsigned long long t0 = kcld_test_now_ms();
  kill(pid, SIGTERM);
  if (!kcld_test_wait_exit(pid, 8000, &status)) {
    kcld_test_reap(pid);
    kcld_e2e_dump_file(log);
    fail_msg("kcld did not exit within 8 s of SIGTERM");
  }
  unsigned long long took = kcld_test_now_ms() - t0;
  printf("measured: exit %llu ms after SIGTERM (shutdown_timeout 2 s)\n",
         took);
  if (took > 4000 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    kcld_e2e_dump_file(log);
    fail_msg("exit after %llu ms, status %d", took, status);
  }
  assert_true(kcld_test_wait_dead(child, 1000));
  assert_true(kcld_test_wait_dead(gc, 1000));

  json_t *req = json_pack("{s:s,s:b}", "TableName", "hngapp",
                          "ConsistentRead", 1);
  json_t *r = kcld_e2e_call(E.aws, KCLD_AWS_DYNAMODB, "Scan", req);
  json_t *item = json_array_get(json_object_get(r, "Items"), 0);
  assert_non_null(item);
  assert_null(json_object_get(item, "leaseOwner")); /* released */
  const char *cp = json_string_value(
    json_object_get(json_object_get(item, "checkpoint"), "S"));
  assert_non_null(cp);
  assert_string_equal(cp, "TRIM_HORIZON"); /* nothing was handled */
  json_decref(r);
  char *text = kcld_test_slurp(log, NULL);
  assert_non_null(strstr(text, "killing the handler's work in flight"));
  free(text);
  json_decref(E.produced);
}

/* kcld SIGKILLed: its lambda child dies with it (PR_SET_PDEATHSIG). */
static void test_lambda_child_dies_with_kcld(void **state)
{
  char log[160];
  pid_t child, gc, pid;
  (void)state;

  E.produced = json_array();
  pid = start_hung("pds", log, sizeof(log), &child, &gc);
  kcld_test_reap(pid); /* SIGKILL */
  if (!kcld_test_wait_dead(child, 2000)) {
    kill(child, SIGKILL);
    kill(gc, SIGKILL);
    fail_msg("the lambda child outlived kcld");
  }
  /* The grandchild has no death signal of its own (it reads EOF on
   * nothing): only its parent's was promised. */
  kill(gc, SIGKILL);
  json_decref(E.produced);
}

static void test_plugin_count(void **state)
{
  char conf[128], log[128], handler[1024], want[128];
  const char *data[40];
  char bufs[40][24];
  size_t bytes = 0;
  unsigned long long end;
  pid_t pid;
  (void)state;

  E.produced = json_array();
  for (int i = 0; i < 40; i++) {
    snprintf(bufs[i], sizeof(bufs[i]), "payload-%d", i * 37);
    data[i] = bufs[i];
    bytes += strlen(bufs[i]);
  }
  kcld_e2e_create_stream(E.aws, "plg", 2);
  put("plg", data, 40);
  snprintf(conf, sizeof(conf), "%s/plugin.yaml", E.dir);
  snprintf(log, sizeof(log), "%s/plugin.log", E.dir);
  snprintf(handler, sizeof(handler),
           "  type: plugin\n"
           "  path: \"%s/examples/plugin-count/plugin-count.so\"\n",
           kcld_test_root());
  write_config(conf, "plgapp", "plg", handler);
  pid = kcld_test_spawn_kcld(conf, log);
  end = kcld_test_now_ms() + 60000;
  while (!all_checkpointed("plgapp") && kcld_test_now_ms() < end)
    kcld_test_sleep_ms(200);
  if (!all_checkpointed("plgapp")) {
    kcld_test_reap(pid);
    kcld_e2e_dump_file(log);
    fail_msg("the checkpoints did not reach the last records within 60 s");
  }
  kcld_e2e_stop_kcld(pid, log, 30000);
  snprintf(want, sizeof(want), "{\"plugin\":\"count\",\"records\":40,"
           "\"bytes\":%zu,", bytes);
  char *text = kcld_test_slurp(log, NULL);
  if (!strstr(text, want)) {
    kcld_e2e_dump_file(log);
    fail_msg("no \"%s\" in the log", want);
  }
  free(text);
  json_decref(E.produced);
}

static void test_plugin_refused(void **state)
{
  char conf[128], log[128], handler[1024];
  pid_t pid;
  (void)state;

  E.produced = json_array();
  snprintf(conf, sizeof(conf), "%s/bad.yaml", E.dir);
  snprintf(log, sizeof(log), "%s/bad.log", E.dir);
  snprintf(handler, sizeof(handler),
           "  type: plugin\n  path: \"%s\"\n", "/nonexistent/plugin.so");
  write_config(conf, "badapp", "nostream", handler);
  pid = kcld_test_spawn_kcld(conf, log);
  assert_int_not_equal(
    kcld_e2e_await_exit(&pid, log, 20000,
                        "kept running with a plugin it cannot load"),
    0);
  /* Refused at start-up, before any AWS call, at the key's position. */
  char *text = kcld_test_slurp(log, NULL);
  assert_non_null(strstr(text, "handler.path: cannot load "
                               "\"/nonexistent/plugin.so\": No such file or "
                               "directory\n"));
  free(text);
  json_decref(E.produced);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_lambda),
    cmocka_unit_test(test_lambda_hung_bounded_shutdown),
    cmocka_unit_test(test_lambda_child_dies_with_kcld),
    cmocka_unit_test(test_plugin_count),
    cmocka_unit_test(test_plugin_refused),
  };
  signal(SIGPIPE, SIG_IGN);
  return cmocka_run_group_tests(tests, setup, teardown);
}
