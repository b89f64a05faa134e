/* test_child.c — handlers/child.c with real processes on a real loop:
 * lines in and out, the bytes a child read before it died, exec failures,
 * the process group (a grandchild dies with its child), the stop's
 * SIGTERM -> SIGKILL escalation, stderr logged and cut, the environment and
 * signal dispositions a child starts with, restarts with backoff, and
 * PR_SET_PDEATHSIG (a child dies when its parent is SIGKILLed).  The line
 * splitter alone: tests/unit/test_child.c. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "err.h"
#include "handlers/child.h"
#include "harness.h"
#include "log.h"
#include "proc.h"

static const struct kcld_child_msgs MSGS = {
  .stderr_line = "test child stderr",
  .term = "test child: SIGTERM",
  .kill = "test child: SIGKILL",
  .write_failed = "test child: cannot write",
};

struct fx {
  uv_loop_t loop;
  struct kcld_child *c;
  char lines[16][256];
  int nlines;
  int too_long;
  int exited;
  struct kcld_child_exit exit;
  char reason[128];
  int started;
  int closed;
  int never;
  FILE *logf;
  char *logbuf;
  size_t loglen;
};

static void on_line(void *arg, const char *line, size_t len, int too_long)
{
  struct fx *f = arg;
  if (too_long)
    f->too_long++;
  if (f->nlines < 16)
    snprintf(f->lines[f->nlines++], sizeof(f->lines[0]), "%.*s",
             (int)(len < 255 ? len : 255), line);
}

static void on_exited(void *arg, const struct kcld_child_exit *e)
{
  struct fx *f = arg;
  f->exited++;
  f->exit = *e;
  snprintf(f->reason, sizeof(f->reason), "%s", e->reason ? e->reason : "");
}

static void on_started(void *arg)
{
  ((struct fx *)arg)->started++;
}

static void on_closed(void *arg)
{
  ((struct fx *)arg)->closed++;
}

static struct fx *fx_new(const char *const *argv, const char *const *env)
{
  struct fx *f = calloc(1, sizeof(*f));
  struct kcld_child_opts o;

  assert_non_null(f);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  f->logf = open_memstream(&f->logbuf, &f->loglen);
  kcld_log_setup(KCLD_LOG_INFO, KCLD_LOG_JSON, f->logf);
  memset(&o, 0, sizeof(o));
  o.loop = &f->loop;
  o.argv = argv;
  o.env_add = env;
  o.tag_key = "shard";
  o.tag = "shard-7";
  o.msgs = &MSGS;
  o.max_line = 64;
  o.backoff_base_ms = 50;
  o.backoff_max_ms = 200;
  o.cbs.line = on_line;
  o.cbs.exited = on_exited;
  o.cbs.started = on_started;
  o.cbs.closed = on_closed;
  o.arg = f;
  assert_int_equal(kcld_child_new(&o, &f->c), 0);
  return f;
}

static const char *fx_log(struct fx *f)
{
  fflush(f->logf);
  return f->logbuf ? f->logbuf : "";
}

static void fx_free(struct fx *f)
{
  kcld_child_close(f->c);
  kcld_test_loop_finish(&f->loop);
  assert_int_equal(f->closed, 1);
  kcld_log_setup(KCLD_LOG_INFO, KCLD_LOG_JSON, NULL);
  fclose(f->logf);
  free(f->logbuf);
  free(f);
}

static void wait_exit(struct fx *f, unsigned ms)
{
  if (!kcld_test_run_until(&f->loop, &f->exited, ms))
    fail_msg("the child did not end within %u ms", ms);
}

static void write_str(struct fx *f, const char *s, uint64_t *end)
{
  assert_int_equal(kcld_child_write(f->c, strdup(s), strlen(s), end), 0);
}

/* A line in, a line out; the bytes read are counted. */
static void test_echo_and_consumed(void **state)
{
  const char *argv[] = {"sh", "-c", "read l; echo \"got:$l\"; exit 5", NULL};
  struct fx *f = fx_new(argv, NULL);
  uint64_t end = 0;
  (void)state;

  assert_int_equal(kcld_child_spawn(f->c), 0);
  assert_true(kcld_child_running(f->c));
  assert_true(atoi(kcld_child_pid(f->c)) > 0);
  write_str(f, "hello\n", &end);
  assert_int_equal(end, 6);
  wait_exit(f, 5000);
  assert_int_equal(f->nlines, 1);
  assert_string_equal(f->lines[0], "got:hello");
  assert_int_equal(f->exit.status, 5);
  assert_int_equal(f->exit.term_signal, 0);
  assert_int_equal(f->exit.killed, 0);
  assert_int_equal(f->exit.spawn_err, 0);
  assert_int_equal(f->exit.consumed, 6);
  assert_false(kcld_child_running(f->c));
  assert_string_equal(kcld_child_pid(f->c), "");
  assert_int_equal(kcld_child_write(f->c, strdup("x"), 1, NULL), KCLD_EIO);
  fx_free(f);
}

/* A child that exits without reading its stdin read nothing; one that read
 * a first line and died read only that. */
static void test_died_before_reading(void **state)
{
  const char *argv[] = {"python3", "/nonexistent/kcld-test.py", NULL};
  const char *argv2[] = {"sh", "-c", "read l; sleep 0.2; exit 3", NULL};
  struct fx *f = fx_new(argv, NULL);
  uint64_t end = 0;
  (void)state;

  assert_int_equal(kcld_child_spawn(f->c), 0);
  write_str(f, "{\"Records\":[]}\n", &end);
  wait_exit(f, 5000);
  assert_int_equal(f->exit.status, 2); /* python: no such file */
  assert_true(f->exit.consumed < end);
  assert_int_equal(f->exit.consumed, 0);
  assert_non_null(strstr(fx_log(f), "\"msg\":\"test child stderr\""));
  assert_non_null(strstr(fx_log(f), "\"shard\":\"shard-7\""));
  fx_free(f);

  f = fx_new(argv2, NULL);
  assert_int_equal(kcld_child_spawn(f->c), 0);
  write_str(f, "first\n", &end);
  /* sh reads its line one byte at a time: the second stays unread. */
  kcld_test_sleep_ms(100);
  write_str(f, "second line\n", &end);
  wait_exit(f, 5000);
  assert_int_equal(f->exit.status, 3);
  assert_int_equal(f->exit.consumed, 6);
  assert_int_equal(end, 18);
  fx_free(f);
}

static void test_exec_failure(void **state)
{
  const char *argv[] = {"/nonexistent/kcld-child", NULL};
  const char *argv2[] = {"kcld-no-such-command-on-path", NULL};
  struct fx *f = fx_new(argv, NULL);
  (void)state;

  assert_int_equal(kcld_child_spawn(f->c), KCLD_EIO);
  assert_string_equal(kcld_child_spawn_error(f->c),
                      "No such file or directory");
  assert_false(kcld_child_running(f->c));
  /* A restart that fails is an exit with spawn_err. */
  kcld_child_respawn(f->c);
  wait_exit(f, 5000);
  assert_int_equal(f->exit.spawn_err, KCLD_EIO);
  assert_string_equal(f->reason, "No such file or directory");
  assert_int_equal(f->started, 0);
  fx_free(f);

  f = fx_new(argv2, NULL);
  assert_int_equal(kcld_child_spawn(f->c), KCLD_EIO);
  fx_free(f);
}

/* kcld_child_kill reaches the whole group: a grandchild dies too. */
static void test_kill_reaches_group(void **state)
{
  const char *argv[] = {"sh", "-c", "sleep 1000 & echo $!; exec sleep 1000",
                        NULL};
  struct fx *f = fx_new(argv, NULL);
  int got = 0;
  pid_t child, grandchild;
  (void)state;

  assert_int_equal(kcld_child_spawn(f->c), 0);
  child = atoi(kcld_child_pid(f->c));
  for (int i = 0; i < 200 && f->nlines == 0; i++)
    kcld_test_run_until(&f->loop, &got, 20);
  assert_int_equal(f->nlines, 1);
  grandchild = atoi(f->lines[0]);
  assert_true(grandchild > 0);
  assert_true(kcld_test_pid_alive(grandchild));
  assert_int_equal(getpgid(grandchild), child);
  kcld_child_kill(f->c);
  wait_exit(f, 5000);
  assert_int_equal(f->exit.term_signal, SIGKILL);
  assert_int_equal(f->exit.killed, 1);
  assert_true(kcld_test_wait_dead(grandchild, 2000));
  fx_free(f);
}

/* A child that exits by itself takes what is left of its group along:
 * a grandchild holding stdout open does not delay the end. */
static void test_exit_kills_leftovers(void **state)
{
  const char *argv[] = {"sh", "-c", "sleep 1000 & echo $!; exit 4", NULL};
  struct fx *f = fx_new(argv, NULL);
  unsigned long long t0 = kcld_test_now_ms();
  (void)state;

  assert_int_equal(kcld_child_spawn(f->c), 0);
  wait_exit(f, 5000);
  assert_true(kcld_test_now_ms() - t0 < KCLD_CHILD_DRAIN_MS);
  assert_int_equal(f->exit.status, 4);
  assert_int_equal(f->exit.killed, 0);
  assert_int_equal(f->nlines, 1);
  assert_true(kcld_test_wait_dead(atoi(f->lines[0]), 2000));
  fx_free(f);
}

/* Stop: stdin closes (a child that reads to EOF exits), and one that
 * ignores it and SIGTERM gets SIGKILL. */
static void test_stop_escalates(void **state)
{
  const char *cat[] = {"cat", NULL};
  const char *stubborn[] = {"sh", "-c", "trap '' TERM; echo up; "
                            "while :; do sleep 1; done", NULL};
  struct fx *f = fx_new(cat, NULL);
  unsigned long long t0;
  int got = 0;
  (void)state;

  assert_int_equal(kcld_child_spawn(f->c), 0);
  write_str(f, "echoed\n", NULL);
  kcld_child_stop(f->c, 5000);
  wait_exit(f, 5000);
  assert_int_equal(f->exit.status, 0);
  assert_int_equal(f->exit.killed, 0);
  assert_int_equal(f->exit.consumed, 7);
  assert_string_equal(f->lines[0], "echoed");
  fx_free(f);

  f = fx_new(stubborn, NULL);
  assert_int_equal(kcld_child_spawn(f->c), 0);
  for (int i = 0; i < 200 && f->nlines == 0; i++)
    kcld_test_run_until(&f->loop, &got, 20);
  t0 = kcld_test_now_ms();
  kcld_child_stop(f->c, 100);
  wait_exit(f, 10000);
  assert_true(kcld_test_now_ms() - t0 >= 100 + KCLD_CHILD_KILL_GRACE_MS);
  assert_int_equal(f->exit.term_signal, SIGKILL);
  assert_int_equal(f->exit.killed, 1);
  assert_non_null(strstr(fx_log(f), "test child: SIGTERM"));
  assert_non_null(strstr(fx_log(f), "test child: SIGKILL"));
  fx_free(f);
}

/* Stdout lines over max_line are cut; stderr lines are logged, cut at
 * KCLD_CHILD_LOG_LINE_MAX. */
static void test_lines_and_stderr(void **state)
{
  const char *argv[] = {
    "python3", "-c",
    "import sys\n"
    "sys.stdout.write('a' * 100 + '\\nshort\\r\\n')\n"
    "sys.stderr.write('to the log\\n' + 'e' * 10000 + '\\nlast')\n",
    NULL};
  struct fx *f = fx_new(argv, NULL);
  char want[KCLD_CHILD_LOG_LINE_MAX + 16];
  (void)state;

  assert_int_equal(kcld_child_spawn(f->c), 0);
  wait_exit(f, 5000);
  assert_int_equal(f->nlines, 2);
  assert_int_equal(f->too_long, 1);
  assert_int_equal(strlen(f->lines[0]), 64);
  assert_string_equal(f->lines[1], "short");
  const char *log = fx_log(f);
  assert_non_null(strstr(log, "\"line\":\"to the log\""));
  assert_non_null(strstr(log, "\"line\":\"last\"")); /* flushed at the end */
  memset(want, 'e', KCLD_CHILD_LOG_LINE_MAX);
  want[KCLD_CHILD_LOG_LINE_MAX] = '\0';
  strcat(want, "\",\"truncated\"");
  assert_non_null(strstr(log, want));
  fx_free(f);
}

/* The environment as given, and no signal ignored that kcld ignores. */
static void test_environment_and_signals(void **state)
{
  const char *argv[] = {
    "sh", "-c", "echo \"$KCLD_T1-$KCLD_T2\"; grep '^SigIgn' /proc/$$/status",
    NULL};
  const char *env[] = {"KCLD_T1=one", "KCLD_T2=new", NULL};
  struct fx *f;
  (void)state;

  setenv("KCLD_T2", "old", 1);
  signal(SIGPIPE, SIG_IGN);
  f = fx_new(argv, env);
  unsetenv("KCLD_T2");
  assert_int_equal(kcld_child_spawn(f->c), 0);
  wait_exit(f, 5000);
  assert_int_equal(f->nlines, 2);
  assert_string_equal(f->lines[0], "one-new");
  /* kcld ignores SIGPIPE; the child must not.  (Signals 32 and 33 belong
   * to the C library, which keeps them as it finds them.) */
  assert_int_equal(strncmp(f->lines[1], "SigIgn:\t", 8), 0);
  unsigned long long ign = strtoull(f->lines[1] + 8, NULL, 16);
  assert_int_equal(ign & (1ULL << (SIGPIPE - 1)), 0);
  assert_int_equal(ign & 0x7fffffffULL, 0); /* signals 1..31 */
  fx_free(f);
}

/* Restarts wait the backoff, doubling, and reset on request. */
static unsigned long long respawn_ms(struct fx *f)
{
  unsigned long long t0 = kcld_test_now_ms(), elapsed;
  int want = f->started + 1, exits = f->exited + 1;
  kcld_child_respawn(f->c);
  while (f->started < want && kcld_test_now_ms() - t0 < 5000)
    kcld_test_run_until(&f->loop, &f->never, 5);
  assert_int_equal(f->started, want);
  elapsed = kcld_test_now_ms() - t0;
  while (f->exited < exits && kcld_test_now_ms() - t0 < 10000)
    kcld_test_run_until(&f->loop, &f->never, 5);
  assert_int_equal(f->exited, exits);
  return elapsed;
}

static void test_respawn_backoff(void **state)
{
  const char *argv[] = {"true", NULL};
  struct fx *f = fx_new(argv, NULL);
  unsigned long long d1, d2, d3;
  (void)state;

  assert_int_equal(kcld_child_spawn(f->c), 0);
  wait_exit(f, 5000);
  d1 = respawn_ms(f);
  d2 = respawn_ms(f);
  kcld_child_backoff_reset(f->c);
  d3 = respawn_ms(f);
  assert_true(d1 >= 50);
  assert_true(d2 >= 100);
  assert_true(d3 >= 50 && d3 < 100 + 400);
  fx_free(f);
}

/* Closing a slot whose child runs kills it; kill_all reaches every
 * group. */
static void test_close_and_kill_all(void **state)
{
  const char *argv[] = {"sleep", "1000", NULL};
  struct fx *a = fx_new(argv, NULL), *b;
  pid_t pa, pb;
  (void)state;

  assert_int_equal(kcld_child_spawn(a->c), 0);
  pa = atoi(kcld_child_pid(a->c));
  kcld_child_close(a->c);
  kcld_test_loop_finish(&a->loop);
  assert_int_equal(a->closed, 1);
  assert_int_equal(a->exited, 0); /* no callback but closed */
  assert_false(kcld_test_pid_alive(pa));
  kcld_log_setup(KCLD_LOG_INFO, KCLD_LOG_JSON, NULL);
  fclose(a->logf);
  free(a->logbuf);
  free(a);

  b = fx_new(argv, NULL);
  assert_int_equal(kcld_child_spawn(b->c), 0);
  pb = atoi(kcld_child_pid(b->c));
  kcld_child_kill_all();
  wait_exit(b, 5000);
  assert_int_equal(b->exit.term_signal, SIGKILL);
  assert_false(kcld_test_pid_alive(pb));
  fx_free(b);
}

/* A process that runs a slot is SIGKILLed: its child dies with it. */
static void test_parent_death_kills_child(void **state)
{
  int fds[2];
  pid_t helper, child = 0;
  (void)state;

  assert_int_equal(pipe(fds), 0);
  helper = fork();
  assert_true(helper >= 0);
  if (helper == 0) {
    const char *argv[] = {"sleep", "1000", NULL};
    struct fx *f = fx_new(argv, NULL);
    pid_t p;
    close(fds[0]);
    if (kcld_child_spawn(f->c) != 0)
      _exit(1);
    p = atoi(kcld_child_pid(f->c));
    if (write(fds[1], &p, sizeof(p)) != (ssize_t)sizeof(p))
      _exit(1);
    for (;;)
      pause();
  }
  close(fds[1]);
  assert_int_equal(read(fds[0], &child, sizeof(child)), (ssize_t)sizeof(child));
  close(fds[0]);
  assert_true(kcld_test_pid_alive(child));
  kill(helper, SIGKILL);
  waitpid(helper, NULL, 0);
  assert_true(kcld_test_wait_dead(child, 2000));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_echo_and_consumed),
    cmocka_unit_test(test_died_before_reading),
    cmocka_unit_test(test_exec_failure),
    cmocka_unit_test(test_kill_reaches_group),
    cmocka_unit_test(test_exit_kills_leftovers),
    cmocka_unit_test(test_stop_escalates),
    cmocka_unit_test(test_lines_and_stderr),
    cmocka_unit_test(test_environment_and_signals),
    cmocka_unit_test(test_respawn_backoff),
    cmocka_unit_test(test_close_and_kill_all),
    cmocka_unit_test(test_parent_death_kills_child),
  };
  signal(SIGPIPE, SIG_IGN); /* as kcld does */
  return cmocka_run_group_tests(tests, NULL, NULL);
}
