/* test_window_e2e.c — tumbling windows (window.tumbling) end to end: the
 * real kcld binary against the emulators with a lambda handler
 * (tests/processors/lambda_window.py) that counts each window's records in
 * the window's state, as the Lambda documentation's example does:
 *
 *  - counts per window: records put in two 2 s windows; no call mixes
 *    windows, every record's arrival lies in its call's window, each
 *    window's final call (isFinalInvokeForWindow, no records) gets the
 *    count of every record of that window, and the event has the members
 *    of the documentation's KinesisTimeWindowEvent;
 *  - a lease that moves: worker 1 counts 5 records of a window and stops
 *    (SIGTERM: its checkpoint and the window's state are in the lease item,
 *    kcldWindowState); worker 2 takes the lease and goes on from the state
 *    5 to 8;
 *  - a state over 1 MiB ends the window early: a final call with
 *    isWindowTerminatedEarly and that state, then the same window starts
 *    afresh with {}. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "awssync.h"
#include "e2e.h"
#include "harness.h"
#include "proc.h"

/* The emulators, a client on them, the test's directory. */
static struct {
  struct kcld_emu emu;
  struct kcld_test_aws *aws;
  char dir[64];
} E;

/* One kcld run's files in the test's directory: <name>.yaml, .out (the
 * child's calls), .log. */
struct run {
  char conf[128], out[128], log[128];
};

static void run_files(struct run *r, const char *name)
{
  snprintf(r->conf, sizeof(r->conf), "%s/%s.yaml", E.dir, name);
  snprintf(r->out, sizeof(r->out), "%s/%s.out", E.dir, name);
  snprintf(r->log, sizeof(r->log), "%s/%s.log", E.dir, name);
}

static int setup(void **state)
{
  (void)state;
  return kcld_e2e_fixture_start(&E.emu, &E.aws, E.dir, sizeof(E.dir),
                                "window");
}

static int teardown(void **state)
{
  (void)state;
  kcld_e2e_fixture_stop(&E.emu, E.aws, E.dir);
  return 0;
}

/* Puts n records "<tag>-i" on the one-shard stream. */
static void put(const char *stream, const char *tag, size_t n)
{
  char bufs[16][32];
  const char *data[16], *keys[16];
  assert_true(n <= 16);
  for (size_t i = 0; i < n; i++) {
    snprintf(bufs[i], sizeof(bufs[i]), "%s-%zu", tag, i);
    data[i] = bufs[i];
    keys[i] = "k";
  }
  kcld_e2e_put_records(E.aws, stream, data, keys, n, NULL);
}

static void write_config(const char *conf, const char *app,
                         const char *stream, const char *tumbling,
                         const char *out, const char *events,
                         const char *mode)
{
  char rest[1536];
  int n = snprintf(rest, sizeof(rest),
                   "window:\n"
                   "  tumbling: %s\n"
                   "handler:\n"
                   "  type: lambda\n"
                   "  command: [\"%s\", \"%s/tests/processors/"
                   "lambda_window.py\", \"%s\", \"%s\", \"%s\"]\n"
                   "  timeout: 30s\n",
                   tumbling, kcld_test_python(), kcld_test_root(), out,
                   events, mode);
  assert_true(n > 0 && (size_t)n < sizeof(rest));
  kcld_e2e_write_config(conf, &E.emu, app, stream, rest);
}

/* The calls the child logged to `path`, as a JSON array (every line). */
static json_t *calls_in(const char *path)
{
  json_t *all = json_array();
  char *text = kcld_test_slurp(path, NULL), *line, *save = NULL;

  for (line = text ? strtok_r(text, "\n", &save) : NULL; line;
       line = strtok_r(NULL, "\n", &save)) {
    json_t *c = json_loads(line, 0, NULL);
    assert_non_null(c);
    json_array_append_new(all, c);
  }
  free(text);
  return all;
}

static long long num(const json_t *c, const char *k)
{
  return json_integer_value(json_object_get(c, k));
}

static int flag(const json_t *c, const char *k)
{
  return json_is_true(json_object_get(c, k));
}

/* Records in the calls of `path` that are not final; finals counted in
 * *finals. */
static long long records_in(const char *path, size_t *finals)
{
  json_t *all = calls_in(path), *c;
  long long n = 0;
  size_t i;

  *finals = 0;
  json_array_foreach(all, i, c) {
    n += num(c, "n");
    *finals += (size_t)flag(c, "final");
  }
  json_decref(all);
  return n;
}

/* Waits up to 60 s until the calls of `path` hold `records` records and
 * `finals` final calls (at least). */
static void wait_calls(const char *path, long long records, size_t finals,
                       const char *log)
{
  unsigned long long end = kcld_test_now_ms() + 60000;
  size_t f = 0;
  long long n = 0;

  while (kcld_test_now_ms() < end) {
    n = records_in(path, &f);
    if (n >= records && f >= finals)
      return;
    kcld_test_sleep_ms(100);
  }
  kcld_e2e_dump_file(log);
  kcld_e2e_dump_file(path);
  fail_msg("%lld records and %zu final calls within 60 s; expected %lld "
           "and %zu", n, f, records, finals);
}

/* The wall clock in epoch ms (the emulator stamps arrival times by it). */
static long long wall_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits, when the wall clock is within `margin_ms` of a multiple of
 * `window_ms`, until 100 ms past that boundary: what a test puts next
 * falls in one window. */
static void clear_of_boundary(long long window_ms, long long margin_ms)
{
  long long into = wall_ms() % window_ms;
  if (into > window_ms - margin_ms)
    kcld_test_sleep_ms((unsigned)(window_ms - into + 100));
}

/* The top-level members of the documentation's KinesisTimeWindowEvent,
 * https://docs.aws.amazon.com/lambda/latest/dg/services-kinesis-windows.html
 * ("Example KinesisTimeWindowEvent"), sorted. */
static const char *const s_doc_keys[] = {
  "Records", "eventSourceARN", "isFinalInvokeForWindow",
  "isWindowTerminatedEarly", "shardId", "state", "window"};

static void check_doc_keys(const json_t *c)
{
  const json_t *keys = json_object_get(c, "keys");
  size_t n = sizeof(s_doc_keys) / sizeof(s_doc_keys[0]);
  assert_int_equal(json_array_size(keys), n);
  for (size_t i = 0; i < n; i++)
    assert_string_equal(json_string_value(json_array_get(keys, i)),
                        s_doc_keys[i]);
}

static void test_counts_per_window(void **state)
{
  struct run r;
  json_t *all, *c;
  long long first_start = -1, counted[2] = {0, 0}, finals[2] = {-1, -1};
  size_t i, nf;
  pid_t pid;
  (void)state;

  kcld_e2e_create_stream(E.aws, "win", 1);
  run_files(&r, "count");
  write_config(r.conf, "winapp", "win", "2s", r.out, "-", "");
  pid = kcld_test_spawn_kcld(r.conf, r.log);

  /* 6 records early in one 2 s window, 4 in the next one. */
  clear_of_boundary(2000, 1500);
  put("win", "a", 6);
  kcld_test_sleep_ms((unsigned)(2000 - wall_ms() % 2000) + 200);
  put("win", "b", 4);
  wait_calls(r.out, 10, 2, r.log);
  kcld_e2e_stop_kcld(pid, r.log, 30000);

  all = calls_in(r.out);
  json_array_foreach(all, i, c) {
    long long s = num(c, "start");
    int w;
    if (first_start < 0)
      first_start = s;
    w = (int)((s - first_start) / 2);
    assert_int_equal(num(c, "end") - s, 2);
    assert_true(w == 0 || w == 1);
    assert_true(flag(c, "inside"));
    assert_string_equal(json_string_value(json_object_get(c, "shard")),
                        "shardId-000000000000");
    assert_non_null(strstr(json_string_value(json_object_get(c, "arn")),
                           ":stream/win"));
    check_doc_keys(c);
    if (flag(c, "final")) {
      assert_int_equal(num(c, "n"), 0);
      assert_false(flag(c, "early"));
      assert_int_equal(finals[w], -1); /* one final call per window */
      finals[w] = num(c, "in");
    } else {
      assert_true(finals[w] == -1); /* nothing of a closed window */
      assert_int_equal(num(c, "in"), counted[w]);
      counted[w] += num(c, "n");
    }
  }
  json_decref(all);
  /* Each final call got the count of every record of its window. */
  assert_int_equal(counted[0], 6);
  assert_int_equal(counted[1], 4);
  assert_int_equal(finals[0], 6);
  assert_int_equal(finals[1], 4);
  assert_int_equal(records_in(r.out, &nf), 10);
  assert_int_equal(nf, 2);
}

/* The lease item's kcldWindowState of the stream's one shard, or "". */
static char *window_attr(const char *app)
{
  json_t *r = kcld_e2e_call(E.aws, KCLD_AWS_DYNAMODB, "GetItem",
                            json_pack("{s:s,s:{s:{s:s}},s:b}", "TableName",
                                      app, "Key", "leaseKey", "S",
                                      "shardId-000000000000",
                                      "ConsistentRead", 1));
  const char *w = json_string_value(json_object_get(json_object_get(
    json_object_get(r, "Item"), "kcldWindowState"), "S"));
  char *copy = strdup(w ? w : "");
  json_decref(r);
  return copy;
}

/* Waits up to 30 s until the lease item's window state holds `want`. */
static void wait_window_attr(const char *app, const char *want,
                             const char *log)
{
  unsigned long long end = kcld_test_now_ms() + 30000;
  char *w = NULL;
  while (kcld_test_now_ms() < end) {
    free(w);
    w = window_attr(app);
    if (strstr(w, want)) {
      free(w);
      return;
    }
    kcld_test_sleep_ms(100);
  }
  kcld_e2e_dump_file(log);
  fail_msg("kcldWindowState never held %s; last: %s", want, w);
}

static void test_lease_move(void **state)
{
  struct run r1, r2;
  json_t *all, *c;
  size_t i, nf;
  int resumed = 0;
  pid_t pid;
  (void)state;

  kcld_e2e_create_stream(E.aws, "winmove", 1);
  run_files(&r1, "move1");
  run_files(&r2, "move2");
  write_config(r1.conf, "winmove", "winmove", "15m", r1.out, "-", "");
  write_config(r2.conf, "winmove", "winmove", "15m", r2.out, "-", "");

  clear_of_boundary(900000, 30000);
  pid = kcld_test_spawn_kcld(r1.conf, r1.log);
  put("winmove", "one", 5);
  wait_calls(r1.out, 5, 0, r1.log);
  wait_window_attr("winmove", "\"count\":5", r1.log);
  kcld_e2e_stop_kcld(pid, r1.log, 30000); /* mid-window */
  assert_int_equal(records_in(r1.out, &nf), 5);
  assert_int_equal(nf, 0);

  pid = kcld_test_spawn_kcld(r2.conf, r2.log);
  put("winmove", "two", 3);
  wait_calls(r2.out, 3, 0, r2.log);
  wait_window_attr("winmove", "\"count\":8", r2.log);
  kcld_e2e_stop_kcld(pid, r2.log, 30000);
  assert_true(kcld_e2e_file_has(r2.log, "window resumed from the lease table"));

  /* Worker 2's first call went on from worker 1's state. */
  all = calls_in(r2.out);
  json_array_foreach(all, i, c) {
    if (i == 0) {
      assert_false(flag(c, "final"));
      assert_int_equal(num(c, "in"), 5);
      resumed = 1;
    }
  }
  json_decref(all);
  assert_true(resumed);
}

static void test_state_over_1mib(void **state)
{
  struct run r;
  json_t *all, *c;
  long long counted = 0;
  pid_t pid;
  (void)state;

  kcld_e2e_create_stream(E.aws, "winbig", 1);
  run_files(&r, "big");
  write_config(r.conf, "winbig", "winbig", "15m", r.out, "-",
               "big:1100000");

  clear_of_boundary(900000, 30000);
  pid = kcld_test_spawn_kcld(r.conf, r.log);
  put("winbig", "a", 1);
  wait_calls(r.out, 1, 1, r.log);
  put("winbig", "b", 2);
  wait_calls(r.out, 3, 1, r.log);
  kcld_e2e_stop_kcld(pid, r.log, 30000);
  assert_true(kcld_e2e_file_has(r.log, "window state over 1 MiB"));

  all = calls_in(r.out);
  assert_true(json_array_size(all) >= 3);
  c = json_array_get(all, 0); /* answers a state over 1 MiB */
  assert_false(flag(c, "final"));
  assert_int_equal(num(c, "n"), 1);
  assert_int_equal(num(c, "in"), 0);
  c = json_array_get(all, 1); /* the window ends early, with that state */
  assert_true(flag(c, "final"));
  assert_true(flag(c, "early"));
  assert_int_equal(num(c, "n"), 0);
  assert_int_equal(num(c, "in"), 1);
  assert_true(num(c, "state_bytes") > 1024 * 1024);
  /* Then the same window again, from {}. */
  for (size_t i = 2; i < json_array_size(all); i++) {
    c = json_array_get(all, i);
    assert_false(flag(c, "final"));
    assert_int_equal(num(c, "in"), counted);
    assert_int_equal(num(c, "start"), num(json_array_get(all, 0), "start"));
    counted += num(c, "n");
  }
  assert_int_equal(counted, 2);
  json_decref(all);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_counts_per_window),
    cmocka_unit_test(test_lease_move),
    cmocka_unit_test(test_state_over_1mib),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
