/* test_startup_e2e.c — kcld's start-up against AWS faults, as systemd sees
 * it.
 *
 * kcld runs with one of its endpoints (DynamoDB or Kinesis) behind the
 * fault endpoint (tests/emulators/lib/fault.js) and $NOTIFY_SOCKET on a
 * datagram socket of the test, with a 1 s watchdog:
 *  - DescribeTable, or ListShards, answering 500 for several calls: kcld
 *    keeps running, feeds the watchdog and does not send READY=1 while it
 *    waits; once the endpoint heals it starts, sends READY=1 and handles
 *    the stream's records;
 *  - SIGTERM while it waits ends it at once with status 0;
 *  - ListShards refused (AccessDeniedException): kcld exits 1 after that
 *    one call, its last error line naming the call and the error. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "awssync.h"
#include "e2e.h"
#include "fault.h"
#include "harness.h"
#include "proc.h"

#define RECORDS 20

static struct {
  struct kcld_emu emu;
  struct kcld_test_aws *aws;
  char dir[64];
  char sock[96];
  int fd;          /* the notify socket */
  int readies;     /* READY=1 datagrams received */
  int pings;       /* WATCHDOG=1 datagrams received */
  pid_t pid;       /* kcld, 0 when none runs */
  int seq;
} E;

/* ======== The notify socket ======== */

static void notify_open(void)
{
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(E.sock, sizeof(E.sock), "%s/notify.sock", E.dir);
  snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", E.sock);
  E.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  assert_true(E.fd >= 0);
  assert_int_equal(bind(E.fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
}

/* Counts the datagrams that arrived since the last call. */
static void notify_drain(void)
{
  char buf[4200];
  ssize_t n;
  while ((n = recv(E.fd, buf, sizeof(buf) - 1, MSG_DONTWAIT)) >= 0) {
    buf[n] = '\0';
    E.readies += strstr(buf, "READY=1") != NULL;
    E.pings += strstr(buf, "WATCHDOG=1") != NULL;
  }
}

/* ======== kcld ======== */

static const char *fault_url(void)
{
  return kcld_emu_url(&E.emu, "fault");
}

/* Scripts the fault endpoint in front of `upstream` ("kinesis" or
 * "dynamodb"): `steps` (a JSON array), then everything passes. */
static void fault_script(const char *upstream, const char *steps)
{
  char script[1024];
  snprintf(script, sizeof(script),
           "{\"upstream\":\"%s\",\"steps\":%s,\"then\":\"proxy\"}",
           kcld_emu_url(&E.emu, upstream), steps);
  assert_int_equal(kcld_fault_script(fault_url(), script), 0);
}

/* A stream of RECORDS records, and kcld started on it with `via` (kinesis
 * or dynamodb) through the fault endpoint; paths of its output and log. */
static void start_kcld(const char *via, char *out, char *log, size_t cap)
{
  char stream[32], app[32], conf[256], rest[512];
  const char *data[RECORDS], *keys[RECORDS];
  char bufs[RECORDS][16];
  int through_kinesis = strcmp(via, "kinesis") == 0;
  E.seq++;
  snprintf(stream, sizeof(stream), "start-%d", E.seq);
  snprintf(app, sizeof(app), "startapp-%d", E.seq);
  kcld_e2e_create_stream(E.aws, stream, 2);
  for (int i = 0; i < RECORDS; i++) {
    snprintf(bufs[i], sizeof(bufs[i]), "r-%d", i);
    data[i] = bufs[i];
    keys[i] = bufs[i];
  }
  kcld_e2e_put_records(E.aws, stream, data, keys, RECORDS, NULL);
  snprintf(conf, sizeof(conf), "%s/%s.yaml", E.dir, app);
  snprintf(out, cap, "%s/%s.jsonl", E.dir, app);
  snprintf(log, cap, "%s/%s.log", E.dir, app);
  snprintf(rest, sizeof(rest), "handler:\n  type: stdout\n  path: %s\n", out);
  kcld_e2e_write_config_at(conf,
                           through_kinesis ? fault_url()
                                           : kcld_emu_url(&E.emu, "kinesis"),
                           through_kinesis ? kcld_emu_url(&E.emu, "dynamodb")
                                           : fault_url(),
                           app, stream, rest);
  notify_drain();
  E.readies = E.pings = 0;
  kcld_test_reap(E.pid); /* left by a test that failed */
  E.pid = kcld_test_spawn_kcld(conf, log);
}

/* Fails, showing the log, when kcld has exited. */
static void check_running(const char *log)
{
  int status;
  if (waitpid(E.pid, &status, WNOHANG) == E.pid) {
    E.pid = 0;
    kcld_e2e_dump_file(log);
    fail_msg("kcld exited during start-up (status %d)", status);
  }
}

/* Waits while the fault endpoint answers `target` (an X-Amz-Target) with
 * errors until it has seen `calls` of them, kcld still running. */
static void wait_failed_calls(const char *target, long calls,
                              const char *log)
{
  unsigned long long end = kcld_test_now_ms() + 60000;
  while (kcld_fault_count(fault_url(), NULL, target) < calls) {
    check_running(log);
    if (kcld_test_now_ms() > end) {
      kcld_e2e_dump_file(log);
      fail_msg("%s was not called %ld times within 60 s", target, calls);
    }
    kcld_test_sleep_ms(50);
  }
}

/* ======== Tests ======== */

/* `target` of the `via` endpoint answers 500 for 3 calls of 3 attempts
 * each: kcld waits (no READY=1, the watchdog fed), then starts once the
 * endpoint heals, and handles every record. */
static void rides_out(const char *via, const char *target)
{
  char out[256], log[256], steps[256];
  snprintf(steps, sizeof(steps),
           "[{\"target\":\"%s\",\"status\":500,\"times\":100000}]", target);
  fault_script(via, steps);
  start_kcld(via, out, log, sizeof(out));
  wait_failed_calls(target, 9, log);
  notify_drain();
  assert_int_equal(E.readies, 0);
  assert_true(E.pings >= 1);
  assert_int_equal(kcld_e2e_lines_in(out), 0);
  assert_true(kcld_e2e_file_has(log, "start-up waits: a transient failure"));

  fault_script(via, "[]");
  unsigned long long end = kcld_test_now_ms() + 60000;
  while (kcld_e2e_lines_in(out) < RECORDS) {
    check_running(log);
    if (kcld_test_now_ms() > end) {
      kcld_e2e_dump_file(log);
      fail_msg("kcld did not handle %d records within 60 s of the heal",
               RECORDS);
    }
    kcld_test_sleep_ms(50);
  }
  notify_drain();
  assert_int_equal(E.readies, 1);
  assert_true(kcld_e2e_file_has(log, "start-up went on after transient failures"));
  kcld_e2e_stop_kcld(E.pid, log, 20000);
  E.pid = 0;
  assert_int_equal(kcld_e2e_lines_in(out), RECORDS);
}

static void test_waits_out_describe_table_500s(void **state)
{
  (void)state;
  rides_out("dynamodb", "DynamoDB_20120810.DescribeTable");
}

static void test_waits_out_list_shards_500s(void **state)
{
  (void)state;
  rides_out("kinesis", "Kinesis_20131202.ListShards");
}

/* SIGTERM while start-up waits: a clean exit (0) at once. */
static void test_sigterm_while_waiting(void **state)
{
  char out[256], log[256];
  (void)state;
  fault_script("dynamodb", "[{\"target\":\"DescribeTable\",\"status\":503,"
               "\"times\":100000}]");
  start_kcld("dynamodb", out, log, sizeof(out));
  wait_failed_calls("DynamoDB_20120810.DescribeTable", 6, log);
  unsigned long long t0 = kcld_test_now_ms();
  kcld_e2e_stop_kcld(E.pid, log, 10000);
  E.pid = 0;
  printf("stopped %llu ms after SIGTERM\n", kcld_test_now_ms() - t0);
  notify_drain();
  assert_int_equal(E.readies, 0);
  assert_int_equal(kcld_e2e_lines_in(out), 0);
}

/* A refusal is not waited out: exit 1 after the one call, naming it. */
static void test_access_denied_exits_at_once(void **state)
{
  char out[256], log[256];
  (void)state;
  fault_script("kinesis", "[{\"target\":\"ListShards\",\"status\":400,"
               "\"body\":{\"__type\":\"AccessDeniedException\",\"message\":"
               "\"not authorized to perform kinesis:ListShards "
               "(injected)\"},\"times\":100000}]");
  start_kcld("kinesis", out, log, sizeof(out));
  assert_int_equal(
    kcld_e2e_await_exit(&E.pid, log, 30000,
                        "kept running after AccessDeniedException"),
    1);
  assert_int_equal(
    kcld_fault_count(fault_url(), NULL, "Kinesis_20131202.ListShards"), 1);
  char *text = kcld_test_slurp(log, NULL);
  assert_non_null(text);
  const char *line = strstr(text, "start-up failed: the lease table or the "
                                  "stream cannot be used");
  assert_non_null(line);
  const char *eol = strchr(line, '\n');
  char last[1024];
  snprintf(last, sizeof(last), "%.*s",
           (int)(eol ? eol - line : (long)strlen(line)), line);
  assert_non_null(strstr(last, "shard sync: ListShards"));
  assert_non_null(strstr(last, "AccessDeniedException"));
  assert_null(strstr(text, "start-up waits"));
  free(text);
  notify_drain();
  assert_int_equal(E.readies, 0);
}

/* ======== Fixture ======== */

static int setup(void **state)
{
  (void)state;
  memset(&E, 0, sizeof(E));
  E.fd = -1;
  if (kcld_e2e_fixture_start_with(&E.emu, &E.aws, E.dir, sizeof(E.dir),
                                  "start", "kinesis dynamodb fault",
                                  "kinesis") != 0)
    return -1;
  notify_open();
  setenv("NOTIFY_SOCKET", E.sock, 1);
  setenv("WATCHDOG_USEC", "1000000", 1); /* a ping every 500 ms */
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  kcld_test_reap(E.pid);
  unsetenv("NOTIFY_SOCKET");
  unsetenv("WATCHDOG_USEC");
  if (E.fd >= 0)
    close(E.fd);
  kcld_e2e_fixture_stop(&E.emu, E.aws, E.dir);
  return 0;
}

int main(void)
{
  setvbuf(stdout, NULL, _IONBF, 0);
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_waits_out_describe_table_500s),
    cmocka_unit_test(test_waits_out_list_shards_500s),
    cmocka_unit_test(test_sigterm_while_waiting),
    cmocka_unit_test(test_access_denied_exits_at_once),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
