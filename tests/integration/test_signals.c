/* test_signals.c — the kcld binary and its signals, against kinesalite and
 * dynalite, with a lambda child (tests/processors/lambda_batches.py) that
 * writes one line per batch: "BATCH <pid> <count> <data>,...".
 *
 * One kcld runs through the steps in order (cmocka runs them so):
 *  1. batch.size 1: every batch holds one record.
 *  2. SIGHUP while the child is busy on a batch, the file now saying
 *     batch.size 100: the busy batch finishes, the same child (still
 *     kcld's) goes on, and records put together now come in one batch.
 *  3. SIGHUP with an invalid file (batch.size back to 1, and a bad
 *     retry.max_retry_attempts): an error line names file:line:col, kcld
 *     runs on, and batches still hold many records (nothing applied).
 *  4. SIGUSR1 logs a status line; SIGUSR2 and SIGPIPE change nothing.
 *  5. SIGHUP changing restart-only keys, log.level and fetch.max_records:
 *     one warning names exactly the restart keys; the status line of
 *     SIGUSR1 is no longer logged (log.level warn); a read brings at most
 *     two records.
 *  6. SIGQUIT: a graceful shutdown (exit 0, leases released, the child
 *     gone). */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "awssync.h"
#include "e2e.h"
#include "harness.h"
#include "proc.h"

#define STREAM "sig"
#define APP "sigapp"
#define WAIT_MS 20000

static struct {
  struct kcld_emu emu;
  struct kcld_test_aws *aws;
  char dir[64];
  char conf[128], out[128], log[128];
  pid_t pid;    /* kcld; 0 once it has exited */
  pid_t child;  /* the lambda child */
  int seq;      /* records put so far, for unique data */
} E;

/* ======== Helpers ======== */

/* Writes the config: the fixed part with `fetch` (more lines of the fetch
 * section), then `tail` (top-level YAML). */
static void write_conf(const char *tail, const char *fetch)
{
  FILE *f = fopen(E.conf, "w");
  assert_non_null(f);
  fprintf(f,
          "application: " APP "\nstream: " STREAM "\nregion: us-east-1\n"
          "endpoints:\n  kinesis: %s\n  dynamodb: %s\n"
          "credentials:\n  access_key_id: test\n  secret_access_key: test\n"
          "shutdown_timeout: 5s\n"
          "lease:\n  failover_time: 1s\n"
          "fetch:\n  idle_time: 200ms\n%s"
          "metrics:\n  listen: \"\"\n"
          "on_failure:\n  dir: %s/dead-letter\n"
          "handler:\n  type: lambda\n  timeout: 20s\n"
          "  command: [%s, \"%s/tests/processors/lambda_batches.py\", "
          "\"%s\"]\n"
          "%s",
          kcld_emu_url(&E.emu, "kinesis"), kcld_emu_url(&E.emu, "dynamodb"),
          fetch, E.dir, kcld_test_python(), kcld_test_root(), E.out, tail);
  assert_int_equal(fclose(f), 0);
}

/* The 1-based line of the config holding `text`, or 0. */
static int conf_line(const char *text)
{
  char *all = kcld_test_slurp(E.conf, NULL), *at;
  int line = 1;
  assert_non_null(all);
  at = strstr(all, text);
  for (char *p = all; at && p < at; p++)
    line += *p == '\n';
  free(all);
  return at ? line : 0;
}

/* Fails, showing the log, unless kcld still runs. */
static void check_alive(void)
{
  int status;
  if (kcld_test_wait_exit(E.pid, 0, &status)) {
    E.pid = 0;
    kcld_e2e_dump_file(E.log);
    fail_msg("kcld exited (status 0x%x)", status);
  }
}

/* Waits until `path` holds `needle` at least `n` times. */
static void wait_count(const char *path, const char *needle, int n)
{
  unsigned long long end = kcld_test_now_ms() + WAIT_MS;
  while (kcld_test_count_in_file(path, needle) < n &&
         kcld_test_now_ms() < end) {
    check_alive();
    kcld_test_sleep_ms(50);
  }
  if (kcld_test_count_in_file(path, needle) < n) {
    kcld_e2e_dump_file(E.log);
    kcld_e2e_dump_file(E.out);
    fail_msg("%s: \"%s\" seen fewer than %d times", path, needle, n);
  }
}

/* Puts `n` records "<prefix>-<k>" in one PutRecords call. */
static void put(const char *prefix, int n)
{
  char bufs[16][32];
  const char *data[16];
  assert_true(n <= 16);
  for (int i = 0; i < n; i++) {
    snprintf(bufs[i], sizeof(bufs[i]), "%s-%d", prefix, E.seq++);
    data[i] = bufs[i];
  }
  kcld_e2e_put_records(E.aws, STREAM, data, data, (size_t)n, NULL);
}

/* The largest <count> of the BATCH lines whose records start with
 * "<prefix>-", once `n` such records are handled. */
static int largest_batch(const char *prefix, int n)
{
  char tag[40], *text, *line;
  int seen = 0, largest = 0;
  unsigned long long end = kcld_test_now_ms() + WAIT_MS;
  snprintf(tag, sizeof(tag), " %s-", prefix);
  for (;;) {
    seen = largest = 0;
    text = kcld_test_slurp(E.out, NULL);
    for (line = text ? strtok(text, "\n") : NULL; line;
         line = strtok(NULL, "\n")) {
      int pid, count;
      if (sscanf(line, "BATCH %d %d", &pid, &count) != 2 ||
          !strstr(line, tag))
        continue;
      assert_int_equal(pid, (int)E.child); /* never a new child */
      seen += count;
      largest = count > largest ? count : largest;
    }
    free(text);
    if (seen >= n || kcld_test_now_ms() > end)
      break;
    check_alive();
    kcld_test_sleep_ms(50);
  }
  if (seen < n) {
    kcld_e2e_dump_file(E.log);
    kcld_e2e_dump_file(E.out);
    fail_msg("only %d of %d \"%s\" records handled", seen, n, prefix);
  }
  return largest;
}

/* The parent pid of `pid`, from /proc/PID/stat. */
static pid_t parent_of(pid_t pid)
{
  char path[64], *text, *p;
  int ppid = 0;
  snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
  text = kcld_test_slurp(path, NULL);
  p = text ? strrchr(text, ')') : NULL; /* comm may hold spaces */
  if (!p || sscanf(p, ") %*c %d", &ppid) != 1)
    ppid = 0;
  free(text);
  return (pid_t)ppid;
}

/* Sends kcld `sig` (a reload) and waits for the log to hold `needle` one
 * more time than before. */
static void signal_and_wait(int sig, const char *needle)
{
  int before = kcld_test_count_in_file(E.log, needle);
  assert_int_equal(kill(E.pid, sig), 0);
  wait_count(E.log, needle, before + 1);
}

/* ======== Set-up ======== */

static int setup(void **state)
{
  (void)state;
  memset(&E, 0, sizeof(E));
  if (kcld_e2e_fixture_start(&E.emu, &E.aws, E.dir, sizeof(E.dir),
                             "signals") != 0)
    return -1;
  snprintf(E.conf, sizeof(E.conf), "%s/signals.yaml", E.dir);
  snprintf(E.out, sizeof(E.out), "%s/batches.out", E.dir);
  snprintf(E.log, sizeof(E.log), "%s/kcld.log", E.dir);
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  kcld_test_reap(E.pid);
  kcld_e2e_fixture_stop(&E.emu, E.aws, E.dir);
  return 0;
}

/* ======== The steps ======== */

/* 1. batch.size 1: four records put together come one per batch. */
static void test_start(void **state)
{
  (void)state;
  kcld_e2e_create_stream(E.aws, STREAM, 1);
  write_conf("batch:\n  size: 1\n", "");
  E.pid = kcld_test_spawn_kcld(E.conf, E.log);
  put("one", 4);
  wait_count(E.out, "BATCH ", 1);
  char *text = kcld_test_slurp(E.out, NULL);
  assert_non_null(text);
  E.child = (pid_t)atoi(text + strlen("BATCH "));
  free(text);
  assert_true(E.child > 0);
  assert_int_equal(largest_batch("one", 4), 1);
}

/* 2. A valid reload while the child is busy on a batch: batch.size 100
 * applies to the next batches; the busy batch and the child are not
 * disturbed. */
static void test_reload_valid_while_busy(void **state)
{
  (void)state;
  put("slow", 1);
  wait_count(E.out, "BEGIN ", 1); /* the child sleeps 2 s in its batch */
  write_conf("batch:\n  size: 100\n", "");
  signal_and_wait(SIGHUP, "\"msg\":\"configuration reloaded\"");
  assert_int_equal(
    kcld_test_count_in_file(E.log, "\"applied\":\"batch.size\""), 1);
  assert_int_equal(parent_of(E.child), E.pid); /* kcld's, not init's */
  assert_int_equal(largest_batch("slow", 1), 1);
  put("many", 10);
  int largest = largest_batch("many", 10);
  printf("measured: after the reload, 10 records put together came in "
         "batches of up to %d\n", largest);
  assert_true(largest > 1);
  assert_int_equal(parent_of(E.child), E.pid);
}

/* 3. An invalid file: refused with file:line:col, nothing applied (its
 * batch.size 1 included), kcld goes on. */
static void test_reload_invalid(void **state)
{
  char where[256];
  (void)state;
  write_conf("batch:\n  size: 1\nretry:\n  max_retry_attempts: -5\n", "");
  snprintf(where, sizeof(where), "%s:%d:23: retry.max_retry_attempts",
           E.conf, conf_line("  max_retry_attempts: -5"));
  signal_and_wait(SIGHUP, "\"msg\":\"configuration reload refused");
  if (kcld_test_count_in_file(E.log, where) != 1) {
    kcld_e2e_dump_file(E.log);
    fail_msg("no error naming %s", where);
  }
  check_alive();
  put("after-bad", 8);
  assert_true(largest_batch("after-bad", 8) > 1); /* still size 100 */
}

/* 4. SIGUSR1: a status line.  SIGUSR2, SIGPIPE: nothing changes. */
static void test_usr_and_pipe(void **state)
{
  (void)state;
  signal_and_wait(SIGUSR1, "\"msg\":\"status\"");
  assert_int_equal(
    kcld_test_count_in_file(E.log, "\"phase\":\"running\""), 1);
  signal_and_wait(SIGUSR2, "\"msg\":\"signal ignored\"");
  assert_int_equal(kill(E.pid, SIGPIPE), 0);
  put("after-usr", 3);
  largest_batch("after-usr", 3);
  check_alive();
  assert_int_equal(parent_of(E.child), E.pid);
}

/* 5. Restart-only keys, log.level and fetch.max_records: one warning
 * naming exactly the restart keys; the live ones apply. */
static void test_reload_restart_keys(void **state)
{
  const char *warn = "\"msg\":\"configuration keys changed that need a "
                     "restart";
  (void)state;
  write_conf("batch:\n  size: 100\n"
             "checkpoint:\n  interval: 2s\n"
             "workers: 3\n"
             "log:\n  level: warn\n",
             "  max_records: 2\n");
  signal_and_wait(SIGHUP, warn);
  assert_int_equal(kcld_test_count_in_file(E.log, warn), 1);
  assert_int_equal(kcld_test_count_in_file(
                     E.log, "\"keys\":\"workers, checkpoint.interval\""),
                   1);
  /* log.level warn: SIGUSR1's info line is no longer written.
   * fetch.max_records 2: three records put together come in two reads, the
   * first of two records going to the idle child at once. */
  assert_int_equal(kill(E.pid, SIGUSR1), 0);
  put("quiet", 3);
  assert_int_equal(largest_batch("quiet", 3), 2);
  assert_int_equal(kcld_test_count_in_file(E.log, "\"msg\":\"status\""), 1);
}

/* 6. SIGQUIT: graceful, like SIGTERM. */
static void test_quit_graceful(void **state)
{
  int status = 0;
  (void)state;
  assert_int_equal(kill(E.pid, SIGQUIT), 0);
  if (!kcld_test_wait_exit(E.pid, 10000, &status)) {
    kcld_e2e_dump_file(E.log);
    fail_msg("kcld still runs 10 s after SIGQUIT");
  }
  E.pid = 0;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    kcld_e2e_dump_file(E.log);
    fail_msg("kcld ended with status 0x%x after SIGQUIT", status);
  }
  assert_true(kcld_test_wait_dead(E.child, 2000));
  json_t *req = json_pack("{s:s,s:b}", "TableName", APP, "ConsistentRead", 1);
  json_t *r = kcld_e2e_call(E.aws, KCLD_AWS_DYNAMODB, "Scan", req);
  json_t *item = json_array_get(json_object_get(r, "Items"), 0);
  assert_non_null(item);
  assert_null(json_object_get(item, "leaseOwner")); /* released */
  json_decref(r);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_start),
    cmocka_unit_test(test_reload_valid_while_busy),
    cmocka_unit_test(test_reload_invalid),
    cmocka_unit_test(test_usr_and_pipe),
    cmocka_unit_test(test_reload_restart_keys),
    cmocka_unit_test(test_quit_graceful),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
