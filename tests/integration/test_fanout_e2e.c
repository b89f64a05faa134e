/* test_fanout_e2e.c — the kcld binary with fetch.mode: fanout against the
 * kinesis_efo emulator (kinesalite behind the consumer APIs and
 * SubscribeToShard over h2c) and the DynamoDB emulator:
 *
 *  - kcld registers the stream consumer (named after the application),
 *    handles every record of a 2-shard stream exactly once, makes no
 *    GetRecords or GetShardIterator call, and on SIGTERM checkpoints and
 *    exits 0 without deregistering the consumer;
 *  - `kcld status` shows the consumer, ACTIVE;
 *  - started again, it finds the consumer (registers nothing) and handles
 *    only the records put since: nothing before the checkpoints again;
 *  - fetch.consumer_arn naming no consumer: kcld exits 1 at start-up,
 *    its error line naming the consumer, having taken no lease;
 *  - RegisterStreamConsumer answering 500 for more calls than the client's
 *    attempts (a restart during a Kinesis fault): kcld waits it out and
 *    handles every record; AccessDeniedException instead: kcld exits 1 at
 *    once;
 *  - with streams: (two streams), one consumer is registered on each
 *    stream and every record of both is handled exactly once, with no
 *    GetRecords call;
 *  - a stream added by a reload (SIGHUP) gets its consumer registered
 *    before its records are read, by subscription;
 *  - against npm kinesis-local instead (kinesis-mock, LocalStack's
 *    Kinesis engine, with its own SubscribeToShard): every record of a
 *    2-shard stream, those put before kcld started and those put while it
 *    runs, handled exactly once. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>
#include <jansson.h>

#include "awssync.h"
#include "e2e.h"
#include "fault.h"
#include "harness.h"
#include "proc.h"

static struct {
  struct kcld_emu emu;
  struct kcld_test_aws *aws;
  struct kcld_test_aws *put_to;   /* put()'s Kinesis: NULL = aws's */
  const char *kinesis;            /* write_config's: NULL = efo_url() */
  char dir[64];
  pid_t pid;
} E;

static const char *efo_url(void)
{
  return kcld_emu_url(&E.emu, "kinesis_efo");
}

/* Front-end calls of `op` the emulator has answered. */
static json_int_t calls_of(const char *op)
{
  json_t *st = kcld_fault_post(efo_url(), "/__efo/stats", "{}");
  assert_non_null(st);
  json_int_t n = json_integer_value(json_object_get(
    json_object_get(st, "calls"), op));
  json_decref(st);
  return n;
}

/* Writes the config of `app` on `stream` in fan-out mode (`fetch_extra`:
 * more lines of the fetch section), the stdout handler writing to `out`.
 * `stream` NULL: `fetch_extra` is top-level lines instead, that list
 * `streams:`. */
static void write_config(const char *path, const char *app,
                         const char *stream, const char *out,
                         const char *fetch_extra)
{
  char rest[512], fetch[512];
  snprintf(rest, sizeof(rest), "handler:\n  type: stdout\n  path: %s\n"
           "  decode: utf8\n%s", out, stream ? "" : fetch_extra);
  if (!stream)
    fetch_extra = NULL;
  kcld_e2e_write_config_at(path, E.kinesis ? E.kinesis : efo_url(),
                           kcld_emu_url(&E.emu, "dynamodb"), app, stream,
                           rest);
  /* The harness writes a fetch section; add the mode to it. */
  char *text = kcld_test_slurp(path, NULL);
  assert_non_null(text);
  char *at = strstr(text, "fetch:\n");
  assert_non_null(at);
  snprintf(fetch, sizeof(fetch), "fetch:\n  mode: fanout\n%s",
           fetch_extra ? fetch_extra : "");
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fprintf(f, "%.*s%s%s", (int)(at - text), text, fetch, at + 7);
  assert_int_equal(fclose(f), 0);
  free(text);
}

/* The records in `out` (stdout handler lines) as "shard:seq" -> data; with
 * streams: (eventID "account:stream:epoch:shard:seq"), "stream:shard:seq"
 * (kinesalite gives two streams created in the same second the same
 * sequence numbers). */
static json_t *handled(const char *out)
{
  json_t *got = json_object();
  char *text = kcld_test_slurp(out, NULL);
  char *save = NULL;
  for (char *line = text ? strtok_r(text, "\n", &save) : NULL; line;
       line = strtok_r(NULL, "\n", &save)) {
    json_t *ev = json_loads(line, 0, NULL);
    assert_non_null(ev);
    const char *id = json_string_value(json_object_get(ev, "eventID"));
    json_t *data = json_object_get(json_object_get(ev, "kinesis"), "data");
    char key[256];
    const char *shard = id ? strstr(id, "shardId-") : NULL;
    assert_non_null(shard);
    if (shard == id)
      snprintf(key, sizeof(key), "%s", id);
    else /* account:stream:epoch: */
      snprintf(key, sizeof(key), "%.*s:%s", (int)strcspn(strchr(id, ':') + 1,
                                                         ":"),
               strchr(id, ':') + 1, shard);
    if (json_object_get(got, key))
      fail_msg("%s handled twice", key);
    json_object_set(got, key, data);
    json_decref(ev);
  }
  free(text);
  return got;
}

/* Waits until `out` has `n` lines, kcld still running. */
static void wait_lines(const char *out, size_t n, const char *log)
{
  unsigned long long end = kcld_test_now_ms() + 60000;
  int status;
  while (kcld_e2e_lines_in(out) < n) {
    if (waitpid(E.pid, &status, WNOHANG) == E.pid) {
      E.pid = 0;
      kcld_e2e_dump_file(log);
      fail_msg("kcld exited (status %d)", status);
    }
    if (kcld_test_now_ms() > end) {
      kcld_e2e_dump_file(log);
      fail_msg("%zu of %zu records handled within 60 s", kcld_e2e_lines_in(out), n);
    }
    kcld_test_sleep_ms(50);
  }
}

/* Puts `n` records "<tag>-<i>", each padded with '.' to `size` bytes
 * (0: not padded), and returns what was put. */
static json_t *put_sized(const char *stream, const char *tag, int n,
                         size_t size)
{
  const char *data[64], *keys[64];
  char bufs[64][32], *padded[64] = {0};
  json_t *produced = json_array();
  assert_true(n <= 64);
  for (int i = 0; i < n; i++) {
    snprintf(bufs[i], sizeof(bufs[i]), "%s-%d", tag, i);
    data[i] = keys[i] = bufs[i];
    if (size > strlen(bufs[i])) {
      padded[i] = malloc(size + 1);
      assert_non_null(padded[i]);
      memset(padded[i], '.', size);
      memcpy(padded[i], bufs[i], strlen(bufs[i]));
      padded[i][size] = '\0';
      data[i] = padded[i];
    }
  }
  kcld_e2e_put_records(E.put_to ? E.put_to : E.aws, stream, data, keys,
                       (size_t)n, produced);
  for (int i = 0; i < n; i++)
    free(padded[i]);
  return produced;
}

static json_t *put(const char *stream, const char *tag, int n)
{
  return put_sized(stream, tag, n, 0);
}

/* put() of `n` records into `stream`, each marked with its stream (for
 * assert_same with streams:), appended to `produced`. */
static void put_into(json_t *produced, const char *stream, const char *tag,
                     int n)
{
  json_t *more = put(stream, tag, n), *rec;
  size_t i;
  json_array_foreach(more, i, rec)
    json_object_set_new(rec, "stream", json_string(stream));
  json_array_extend(produced, more);
  json_decref(more);
}

/* `got` (handled()) is exactly `produced`. */
static void assert_same(json_t *got, json_t *produced)
{
  json_t *rec;
  size_t i;
  assert_int_equal(json_object_size(got), json_array_size(produced));
  json_array_foreach(produced, i, rec) {
    char id[256];
    const char *stream = json_string_value(json_object_get(rec, "stream"));
    snprintf(id, sizeof(id), "%s%s%s:%s", stream ? stream : "",
             stream ? ":" : "",
             json_string_value(json_object_get(rec, "shard")),
             json_string_value(json_object_get(rec, "seq")));
    json_t *data = json_object_get(got, id);
    if (!data)
      fail_msg("%s not handled", id);
    assert_string_equal(json_string_value(data),
                        json_string_value(json_object_get(rec, "data")));
  }
}

/* Runs kcld on `conf` (its log in `log`) until `out` holds as many
 * records as `produced`, stops it (SIGTERM, exit 0), and checks that
 * exactly those were handled. */
static void run_until_handled(const char *conf, const char *out,
                              const char *log, json_t *produced)
{
  E.pid = kcld_test_spawn_kcld(conf, log);
  wait_lines(out, json_array_size(produced), log);
  kcld_e2e_stop_kcld(E.pid, log, 20000);
  E.pid = 0;
  json_t *got = handled(out);
  assert_same(got, produced);
  json_decref(got);
}

/* ======== Tests ======== */

/* A test's config, output and log paths: E.dir/NAME.yaml, .jsonl, .log. */
static void test_paths(const char *name, char conf[128], char out[128],
                       char log[128])
{
  snprintf(conf, 128, "%s/%s.yaml", E.dir, name);
  snprintf(out, 128, "%s/%s.jsonl", E.dir, name);
  snprintf(log, 128, "%s/%s.log", E.dir, name);
}

static void test_consumes_and_resumes(void **state)
{
  char conf[128], out1[128], out2[128], log1[128], log2[128];
  (void)state;
  snprintf(conf, sizeof(conf), "%s/efo.yaml", E.dir);
  snprintf(out1, sizeof(out1), "%s/out1.jsonl", E.dir);
  snprintf(out2, sizeof(out2), "%s/out2.jsonl", E.dir);
  snprintf(log1, sizeof(log1), "%s/run1.log", E.dir);
  snprintf(log2, sizeof(log2), "%s/run2.log", E.dir);
  kcld_e2e_create_stream(E.aws, "efo-e2e", 2);
  json_t *first = put("efo-e2e", "a", 40);
  write_config(conf, "efoapp", "efo-e2e", out1, NULL);
  json_int_t gr = calls_of("GetRecords"), gsi = calls_of("GetShardIterator");

  run_until_handled(conf, out1, log1, first);
  assert_true(kcld_e2e_file_has(log1, "stream consumer ACTIVE"));
  assert_true(kcld_e2e_file_has(log1, "\"registered\":\"true\""));
  assert_true(calls_of("SubscribeToShard") >= 2);
  assert_int_equal(calls_of("GetRecords"), gr);
  assert_int_equal(calls_of("GetShardIterator"), gsi);
  assert_int_equal(calls_of("DeregisterStreamConsumer"), 0);

  /* The consumer is still there, ACTIVE. */
  json_t *d = kcld_e2e_call(E.aws, KCLD_AWS_KINESIS, "DescribeStreamSummary",
                            json_pack("{s:s}", "StreamName", "efo-e2e"));
  const char *arn = json_string_value(json_object_get(
    json_object_get(d, "StreamDescriptionSummary"), "StreamARN"));
  json_t *c = kcld_e2e_call(E.aws, KCLD_AWS_KINESIS, "DescribeStreamConsumer",
                            json_pack("{s:s,s:s}", "StreamARN", arn,
                                      "ConsumerName", "efoapp"));
  assert_string_equal(json_string_value(json_object_get(json_object_get(
                        c, "ConsumerDescription"), "ConsumerStatus")),
                      "ACTIVE");
  json_decref(c);
  json_decref(d);

  /* kcld status shows it (no lag: no GetRecords call). */
  char cmd[512];
  snprintf(cmd, sizeof(cmd), "'%s' status --no-lag --json -c '%s'",
           kcld_test_bin(), conf);
  FILE *ps = popen(cmd, "r");
  assert_non_null(ps);
  json_t *st = json_loadf(ps, 0, NULL);
  pclose(ps);
  assert_non_null(st);
  json_t *con = json_object_get(st, "consumer");
  assert_string_equal(json_string_value(json_object_get(con, "name")),
                      "efoapp");
  assert_string_equal(json_string_value(json_object_get(con, "status")),
                      "ACTIVE");
  assert_non_null(strstr(json_string_value(json_object_get(con, "arn")),
                         "/consumer/efoapp:"));
  json_decref(st);

  /* Again, with newer records: only those. */
  json_t *second = put("efo-e2e", "b", 24);
  write_config(conf, "efoapp", "efo-e2e", out2, NULL);
  run_until_handled(conf, out2, log2, second);
  assert_true(kcld_e2e_file_has(log2, "\"registered\":\"false\""));
  assert_int_equal(calls_of("GetRecords"), gr);
  json_decref(first);
  json_decref(second);
}

/* The ARN of `stream`. */
static char *stream_arn(const char *stream)
{
  json_t *d = kcld_e2e_call(E.aws, KCLD_AWS_KINESIS, "DescribeStreamSummary",
                            json_pack("{s:s}", "StreamName", stream));
  char *arn = strdup(json_string_value(json_object_get(
    json_object_get(d, "StreamDescriptionSummary"), "StreamARN")));
  json_decref(d);
  assert_non_null(arn);
  return arn;
}

/* The status of consumer `name` on `stream`. */
static void assert_consumer_active(const char *stream, const char *name)
{
  char *arn = stream_arn(stream);
  json_t *c = kcld_e2e_call(E.aws, KCLD_AWS_KINESIS, "DescribeStreamConsumer",
                            json_pack("{s:s,s:s}", "StreamARN", arn,
                                      "ConsumerName", name));
  assert_string_equal(json_string_value(json_object_get(json_object_get(
                        c, "ConsumerDescription"), "ConsumerStatus")),
                      "ACTIVE");
  json_decref(c);
  free(arn);
}

static void test_multistream(void **state)
{
  char conf[128], out[128], log[128];
  (void)state;
  test_paths("multi", conf, out, log);
  kcld_e2e_create_stream(E.aws, "efo-m1", 2);
  kcld_e2e_create_stream(E.aws, "efo-m2", 1);
  json_t *produced = json_array();
  put_into(produced, "efo-m1", "m1", 30);
  put_into(produced, "efo-m2", "m2", 20);
  write_config(conf, "efomulti", NULL, out,
               "streams:\n  - name: efo-m1\n  - name: efo-m2\n");
  json_int_t gr = calls_of("GetRecords");

  run_until_handled(conf, out, log, produced);
  json_decref(produced);
  /* One consumer per stream, both ACTIVE; nothing polled. */
  assert_consumer_active("efo-m1", "efomulti");
  assert_consumer_active("efo-m2", "efomulti");
  assert_int_equal(kcld_e2e_lines_with(log, "stream consumer ACTIVE", ""), 2);
  assert_int_equal(calls_of("GetRecords"), gr);
}

static void test_reload_adds_stream(void **state)
{
  char conf[128], out[128], log[128];
  (void)state;
  test_paths("reload", conf, out, log);
  kcld_e2e_create_stream(E.aws, "efo-r1", 1);
  kcld_e2e_create_stream(E.aws, "efo-r2", 1);
  json_t *produced = json_array();
  put_into(produced, "efo-r1", "r1", 5);
  put_into(produced, "efo-r2", "r2", 5);
  write_config(conf, "eforeload", NULL, out, "streams:\n  - name: efo-r1\n");
  json_int_t gr = calls_of("GetRecords");
  E.pid = kcld_test_spawn_kcld(conf, log);
  wait_lines(out, 5, log);
  write_config(conf, "eforeload", NULL, out,
               "streams:\n  - name: efo-r1\n  - name: efo-r2\n");
  assert_int_equal(kill(E.pid, SIGHUP), 0);
  wait_lines(out, 10, log);
  kcld_e2e_stop_kcld(E.pid, log, 20000);
  E.pid = 0;
  json_t *got = handled(out);
  assert_same(got, produced);
  json_decref(got);
  json_decref(produced);
  assert_consumer_active("efo-r2", "eforeload");
  assert_int_equal(kcld_e2e_lines_with(log, "stream consumer ACTIVE", ""), 2);
  assert_int_equal(calls_of("GetRecords"), gr);
}

static void test_unknown_consumer_arn_exits(void **state)
{
  char conf[128], out[128], log[128], extra[256];
  (void)state;
  test_paths("bad", conf, out, log);
  kcld_e2e_create_stream(E.aws, "efo-bad", 1);
  snprintf(extra, sizeof(extra), "  consumer_arn: \"arn:aws:kinesis:"
           "us-east-1:000000000000:stream/efo-bad/consumer/nobody:1\"\n");
  write_config(conf, "efobad", "efo-bad", out, extra);
  E.pid = kcld_test_spawn_kcld(conf, log);
  assert_int_equal(
    kcld_e2e_await_exit(&E.pid, log, 30000,
                        "kept running without its consumer"),
    1);
  assert_true(kcld_e2e_file_has(log, "start-up failed: no ACTIVE stream consumer"));
  assert_true(kcld_e2e_file_has(log, "consumer/nobody:1"));
  assert_int_equal(kcld_e2e_lines_in(out), 0);
}

/* RegisterStreamConsumer answers `type` with HTTP `status` for the next
 * `times` calls. */
static void refuse_register(const char *type, int status, int times)
{
  char script[256];
  snprintf(script, sizeof(script), "{\"refuse\":[{\"op\":"
           "\"RegisterStreamConsumer\",\"type\":\"%s\",\"status\":%d,"
           "\"times\":%d}]}", type, status, times);
  json_t *r = kcld_fault_post(efo_url(), "/__efo/script", script);
  assert_non_null(r);
  json_decref(r);
}

static void test_register_500s_waited_out(void **state)
{
  char conf[128], out[128], log[128];
  (void)state;
  test_paths("t500", conf, out, log);
  kcld_e2e_create_stream(E.aws, "efo-500", 1);
  json_t *produced = put("efo-500", "t", 10);
  write_config(conf, "efo500", "efo-500", out, "");
  json_int_t before = calls_of("RegisterStreamConsumer");
  /* 7 calls: two lookups' 3 attempts each, and one more. */
  refuse_register("InternalFailure", 500, 7);

  run_until_handled(conf, out, log, produced);
  json_decref(produced);
  assert_true(calls_of("RegisterStreamConsumer") - before >= 8);
  assert_false(kcld_e2e_file_has(log, "start-up failed"));
  assert_consumer_active("efo-500", "efo500");
}

static void test_access_denied_exits_at_once(void **state)
{
  char conf[128], out[128], log[128];
  (void)state;
  test_paths("denied", conf, out, log);
  kcld_e2e_create_stream(E.aws, "efo-denied", 1);
  write_config(conf, "efodenied", "efo-denied", out, "");
  json_int_t before = calls_of("RegisterStreamConsumer");
  refuse_register("AccessDeniedException", 400, 1);
  E.pid = kcld_test_spawn_kcld(conf, log);
  assert_int_equal(
    kcld_e2e_await_exit(&E.pid, log, 30000,
                        "kept running when refused its consumer"),
    1);
  assert_true(kcld_e2e_file_has(log, "start-up failed: no ACTIVE stream consumer"));
  assert_true(kcld_e2e_file_has(log, "AccessDeniedException"));
  assert_int_equal(calls_of("RegisterStreamConsumer") - before, 1);
}

/* kinesis-local: 64 records of 60 KB put before kcld starts (~1.9 MB a
 * shard: its first event outgrows a stream's flow-control window),
 * 24 small ones while it runs; each handled once.  (kinesis-mock stops
 * sending for good when a client raises the connection's window before
 * the first DATA frame: this is the test of h2.c waiting for it.) */
static void test_kinesis_local(void **state)
{
  struct kcld_emu kl;
  char conf[128], out[128], log[128];
  (void)state;
  memset(&kl, 0, sizeof(kl));
  assert_int_equal(kcld_emu_start(&kl, "kinesis_local"), 0);
  E.kinesis = kcld_emu_url(&kl, "kinesis_local");
  assert_non_null(E.kinesis);
  E.put_to = kcld_test_aws_new(E.kinesis, NULL, NULL);
  assert_non_null(E.put_to);
  test_paths("kl", conf, out, log);
  kcld_e2e_create_stream(E.put_to, "kl-e2e", 2);
  json_t *produced = put_sized("kl-e2e", "early", 64, 60000);
  write_config(conf, "klapp", "kl-e2e", out, NULL);
  E.pid = kcld_test_spawn_kcld(conf, log);
  wait_lines(out, 64, log);
  json_t *live = put("kl-e2e", "live", 24);
  json_array_extend(produced, live);
  json_decref(live);
  wait_lines(out, 88, log);
  kcld_e2e_stop_kcld(E.pid, log, 20000);
  E.pid = 0;
  json_t *got = handled(out);
  assert_same(got, produced);
  assert_true(kcld_e2e_file_has(log, "stream consumer ACTIVE"));
  json_decref(got);
  json_decref(produced);
  kcld_test_aws_free(E.put_to);
  E.put_to = NULL;
  E.kinesis = NULL;
  kcld_emu_stop(&kl);
}

/* ======== Fixture ======== */

static int setup(void **state)
{
  (void)state;
  memset(&E, 0, sizeof(E));
  return kcld_e2e_fixture_start_with(&E.emu, &E.aws, E.dir, sizeof(E.dir),
                                     "efo", "kinesis_efo dynamodb",
                                     "kinesis_efo");
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
    cmocka_unit_test(test_consumes_and_resumes),
    cmocka_unit_test(test_unknown_consumer_arn_exits),
    cmocka_unit_test(test_register_500s_waited_out),
    cmocka_unit_test(test_reload_adds_stream),
    cmocka_unit_test(test_access_denied_exits_at_once),
    cmocka_unit_test(test_multistream),
    cmocka_unit_test(test_kinesis_local),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
