/* test_notify.c — the sd_notify sender, checked by playing systemd's side:
 * a unix datagram socket bound in a temporary directory (or in the abstract
 * namespace), $NOTIFY_SOCKET pointing at it, and the exact datagrams read
 * back together with the sender's pid the kernel attaches. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <errno.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "err.h"
#include "../harness/harness.h"
#include "log.h"
#include "ops/notify.h"

/* ======== The systemd side ======== */

struct listener {
  int fd;
  char dir[64];
  char path[128];      /* socket file, or "" for abstract */
  char env[128];       /* the $NOTIFY_SOCKET value */
};

static int s_seq;

static void clear_env(void)
{
  unsetenv("NOTIFY_SOCKET");
  unsetenv("WATCHDOG_USEC");
  unsetenv("WATCHDOG_PID");
}

/* Binds a datagram socket that receives the sender's credentials, and sets
 * $NOTIFY_SOCKET to its address. */
static void listen_on(struct listener *l, bool abstract)
{
  struct sockaddr_un sa;
  socklen_t len;
  int one = 1;

  memset(l, 0, sizeof(*l));
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  l->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  assert_true(l->fd >= 0);
  assert_int_equal(setsockopt(l->fd, SOL_SOCKET, SO_PASSCRED, &one,
                              sizeof(one)), 0);
  if (abstract) {
    int n = snprintf(l->env, sizeof(l->env), "@kcld-test-notify-%d-%d",
                     (int)getpid(), ++s_seq);
    memcpy(sa.sun_path, l->env, (size_t)n);
    sa.sun_path[0] = '\0';
    len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (size_t)n);
  } else {
    strcpy(l->dir, "/tmp/kcld-notify-XXXXXX");
    assert_non_null(mkdtemp(l->dir));
    snprintf(l->path, sizeof(l->path), "%s/notify", l->dir);
    strcpy(sa.sun_path, l->path);
    strcpy(l->env, l->path);
    len = sizeof(sa);
  }
  assert_int_equal(bind(l->fd, (struct sockaddr *)&sa, len), 0);
  assert_int_equal(setenv("NOTIFY_SOCKET", l->env, 1), 0);
}

static void listener_close(struct listener *l)
{
  if (l->fd >= 0)
    close(l->fd);
  l->fd = -1;
  if (l->path[0])
    unlink(l->path);
  if (l->dir[0])
    rmdir(l->dir);
  clear_env();
}

/* Reads one datagram without waiting; returns its length (-1 when none)
 * and the sender's pid in *pid. */
static ssize_t recv_one(struct listener *l, char *buf, size_t cap,
                        pid_t *pid)
{
  struct iovec iov = {.iov_base = buf, .iov_len = cap};
  union {
    struct cmsghdr align;
    char space[CMSG_SPACE(sizeof(struct ucred))];
  } control;
  struct msghdr msg = {
    .msg_iov = &iov, .msg_iovlen = 1,
    .msg_control = &control, .msg_controllen = sizeof(control),
  };
  ssize_t n = recvmsg(l->fd, &msg, MSG_DONTWAIT);
  if (n < 0)
    return -1;
  assert_false(msg.msg_flags & MSG_TRUNC);
  *pid = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
      struct ucred cred;
      memcpy(&cred, CMSG_DATA(c), sizeof(cred));
      *pid = cred.pid;
    }
  return n;
}

/* Asserts that exactly one datagram is queued, equal to `want`, sent by
 * this process. */
static void expect(struct listener *l, const char *want)
{
  char buf[KCLD_NOTIFY_MAX * 2];
  pid_t pid;
  ssize_t n = recv_one(l, buf, sizeof(buf), &pid);
  assert_true(n >= 0);
  buf[n] = '\0';
  assert_int_equal((size_t)n, strlen(want));
  assert_string_equal(buf, want);
  assert_int_equal(pid, getpid());
  assert_int_equal(recv_one(l, buf, sizeof(buf), &pid), -1);
}

/* Log capture, so expected warnings are checked rather than printed. */
static char *s_log;
static size_t s_log_len;
static FILE *s_log_f;

static void log_capture(void)
{
  s_log_f = open_memstream(&s_log, &s_log_len);
  assert_non_null(s_log_f);
  kcld_log_setup(KCLD_LOG_DEBUG, KCLD_LOG_JSON, s_log_f);
}

/* Stops capturing and returns what was logged (caller frees). */
static char *log_release(void)
{
  kcld_log_setup(KCLD_LOG_INFO, KCLD_LOG_JSON, NULL);
  fclose(s_log_f);
  s_log_f = NULL;
  return s_log;
}

/* ======== No socket ======== */

static void test_unset_is_silent_noop(void **state)
{
  (void)state;
  struct kcld_notify *n = (struct kcld_notify *)1;
  uv_loop_t loop;

  clear_env();
  setenv("WATCHDOG_USEC", "1000000", 1);
  log_capture();
  assert_int_equal(kcld_notify_new(&n, false), 0);
  assert_null(n);
  assert_false(kcld_notify_enabled(n));
  assert_int_equal(kcld_notify_ready(n, "x"), 0);
  assert_int_equal(kcld_notify_status(n, "%d leases", 3), 0);
  assert_int_equal(kcld_notify_stopping(n, NULL), 0);
  assert_int_equal(kcld_notify_watchdog(n), 0);
  assert_int_equal(kcld_notify_send(n, "READY=1"), 0);
  assert_int_equal(kcld_notify_watchdog_usec(n), 0);
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(kcld_notify_watchdog_start(n, &loop), 0);
  kcld_notify_close(n);
  kcld_test_loop_finish(&loop);

  /* An empty value is the same as none. */
  setenv("NOTIFY_SOCKET", "", 1);
  n = (struct kcld_notify *)1;
  assert_int_equal(kcld_notify_new(&n, false), 0);
  assert_null(n);
  char *logged = log_release();
  assert_int_equal(s_log_len, 0); /* silently */
  free(logged);
  clear_env();
}

/* ======== The datagrams ======== */

static void exchange(struct listener *l)
{
  struct kcld_notify *n = NULL;
  assert_int_equal(kcld_notify_new(&n, false), 0);
  assert_non_null(n);
  assert_true(kcld_notify_enabled(n));

  assert_int_equal(kcld_notify_ready(n, NULL), 0);
  expect(l, "READY=1");
  assert_int_equal(kcld_notify_ready(n, "4 leases held, lag 120 ms"), 0);
  expect(l, "READY=1\nSTATUS=4 leases held, lag 120 ms");
  assert_int_equal(kcld_notify_status(n, "%d leases, lag %s ms", 3, "42"),
                   0);
  expect(l, "STATUS=3 leases, lag 42 ms");
  assert_int_equal(kcld_notify_watchdog(n), 0);
  expect(l, "WATCHDOG=1");
  assert_int_equal(kcld_notify_stopping(n, NULL), 0);
  expect(l, "STOPPING=1");
  assert_int_equal(kcld_notify_stopping(n, "draining 2 shards"), 0);
  expect(l, "STOPPING=1\nSTATUS=draining 2 shards");
  assert_int_equal(kcld_notify_send(n, "EXTEND_TIMEOUT_USEC=5000000"), 0);
  expect(l, "EXTEND_TIMEOUT_USEC=5000000");
  kcld_notify_close(n);
}

static void test_path_socket(void **state)
{
  (void)state;
  struct listener l;
  listen_on(&l, false);
  exchange(&l);
  listener_close(&l);
}

static void test_abstract_socket(void **state)
{
  (void)state;
  struct listener l;
  listen_on(&l, true);
  assert_int_equal(l.env[0], '@');
  exchange(&l);
  listener_close(&l);
}

static void test_status_one_line_and_cut(void **state)
{
  (void)state;
  struct listener l;
  struct kcld_notify *n = NULL;
  char want[KCLD_NOTIFY_MAX + 1], text[KCLD_NOTIFY_MAX * 3];
  size_t room = KCLD_NOTIFY_MAX - strlen("STATUS=");

  listen_on(&l, false);
  assert_int_equal(kcld_notify_new(&n, false), 0);

  assert_int_equal(kcld_notify_status(n, "a\nb\r\nc"), 0);
  expect(&l, "STATUS=a b  c");
  assert_int_equal(kcld_notify_ready(n, "line1\nline2"), 0);
  expect(&l, "READY=1\nSTATUS=line1 line2");

  /* Too long: cut to exactly the datagram limit. */
  memset(text, 'x', sizeof(text) - 1);
  text[sizeof(text) - 1] = '\0';
  assert_int_equal(kcld_notify_status(n, "%s", text), 0);
  snprintf(want, sizeof(want), "STATUS=%.*s", (int)room, text);
  assert_int_equal(strlen(want), KCLD_NOTIFY_MAX);
  expect(&l, want);

  /* A three-byte character that would straddle the limit is left out
   * whole, never halved. */
  memset(text, 'x', room - 1);
  strcpy(text + room - 1, "\xe2\x82\xac" "yyy");
  assert_int_equal(kcld_notify_status(n, "%s", text), 0);
  snprintf(want, sizeof(want), "STATUS=%.*s", (int)(room - 1), text);
  expect(&l, want);
  /* One that ends exactly at the limit is kept. */
  memset(text, 'x', room - 3);
  strcpy(text + room - 3, "\xe2\x82\xac" "yyy");
  assert_int_equal(kcld_notify_status(n, "%s", text), 0);
  snprintf(want, sizeof(want), "STATUS=%.*s", (int)room, text);
  assert_int_equal(strlen(want), KCLD_NOTIFY_MAX);
  expect(&l, want);

  /* READY=1 with a long status also fits the limit. */
  assert_int_equal(kcld_notify_ready(n, text), 0);
  char buf[KCLD_NOTIFY_MAX * 2];
  pid_t pid;
  ssize_t got = recv_one(&l, buf, sizeof(buf), &pid);
  assert_true(got > 0 && got <= KCLD_NOTIFY_MAX);
  assert_memory_equal(buf, "READY=1\nSTATUS=xxx", 18);

  kcld_notify_close(n);
  listener_close(&l);
}

static void test_raw_send_limits(void **state)
{
  (void)state;
  struct listener l;
  struct kcld_notify *n = NULL;
  char big[KCLD_NOTIFY_MAX + 2];

  listen_on(&l, false);
  assert_int_equal(kcld_notify_new(&n, false), 0);
  assert_int_equal(kcld_notify_send(n, ""), KCLD_EINVAL);
  assert_int_equal(kcld_notify_send(n, NULL), KCLD_EINVAL);
  memset(big, 'x', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  assert_int_equal(kcld_notify_send(n, big), KCLD_EINVAL);
  big[KCLD_NOTIFY_MAX] = '\0';
  assert_int_equal(kcld_notify_send(n, big), 0);
  expect(&l, big);
  kcld_notify_close(n);
  listener_close(&l);
}

/* ======== Bad addresses and absent listeners ======== */

static void expect_bad_address(const char *value)
{
  struct kcld_notify *n = (struct kcld_notify *)1;
  setenv("NOTIFY_SOCKET", value, 1);
  log_capture();
  assert_int_equal(kcld_notify_new(&n, false), KCLD_EINVAL);
  assert_null(n);
  char *logged = log_release();
  assert_non_null(strstr(logged, "NOTIFY_SOCKET"));
  free(logged);
}

static void test_bad_addresses(void **state)
{
  (void)state;
  char path[200];

  clear_env();
  expect_bad_address("relative/notify");
  expect_bad_address("vsock:2:1234");
  expect_bad_address("@");
  expect_bad_address("/");
  /* sun_path holds 108 bytes: a path needs its NUL, an abstract name not. */
  memset(path, 'a', sizeof(path));
  path[0] = '/';
  path[108] = '\0';
  expect_bad_address(path);
  path[0] = '@';
  path[109] = '\0';
  path[108] = 'a';
  expect_bad_address(path);

  struct kcld_notify *n = NULL;
  path[0] = '/';
  path[107] = '\0';
  setenv("NOTIFY_SOCKET", path, 1);
  assert_int_equal(kcld_notify_new(&n, false), 0); /* longest path */
  assert_non_null(n);
  kcld_notify_close(n);
  path[0] = '@';
  path[107] = 'a';
  path[108] = '\0';
  setenv("NOTIFY_SOCKET", path, 1);
  assert_int_equal(kcld_notify_new(&n, false), 0); /* longest name */
  assert_non_null(n);
  kcld_notify_close(n);
  clear_env();
}

static void test_no_listener(void **state)
{
  (void)state;
  struct listener l;
  struct kcld_notify *n = NULL;

  /* The socket file does not exist. */
  listen_on(&l, false);
  char gone[160];
  snprintf(gone, sizeof(gone), "%s/absent", l.dir);
  setenv("NOTIFY_SOCKET", gone, 1);
  assert_int_equal(kcld_notify_new(&n, false), 0);
  assert_int_equal(kcld_notify_ready(n, NULL), KCLD_EIO);
  assert_int_equal(kcld_notify_watchdog(n), KCLD_EIO);
  kcld_notify_close(n);

  /* The file exists but nobody reads it any more (systemd went away). */
  setenv("NOTIFY_SOCKET", l.path, 1);
  assert_int_equal(kcld_notify_new(&n, false), 0);
  close(l.fd);
  l.fd = -1;
  assert_int_equal(kcld_notify_ready(n, NULL), KCLD_EIO);
  kcld_notify_close(n);
  listener_close(&l);

  /* An abstract name nobody has bound. */
  char name[64];
  snprintf(name, sizeof(name), "@kcld-test-nobody-%d", (int)getpid());
  setenv("NOTIFY_SOCKET", name, 1);
  assert_int_equal(kcld_notify_new(&n, false), 0);
  assert_int_equal(kcld_notify_ready(n, NULL), KCLD_EIO);
  kcld_notify_close(n);
  clear_env();
}

static uint64_t now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A listener that never reads: the queue fills, and a send then fails after
 * the bounded wait instead of hanging the loop. */
static void test_full_queue_does_not_hang(void **state)
{
  (void)state;
  struct listener l;
  struct kcld_notify *n = NULL;
  int rc = 0, sent = 0;
  uint64_t took = 0;

  listen_on(&l, false);
  assert_int_equal(kcld_notify_new(&n, false), 0);
  while (sent < 100000) {
    uint64_t t0 = now_ms();
    rc = kcld_notify_watchdog(n);
    took = now_ms() - t0;
    if (rc != 0)
      break;
    sent++;
  }
  assert_int_equal(rc, KCLD_EIO);
  assert_true(sent > 0);
  assert_true(took >= KCLD_NOTIFY_SEND_TIMEOUT_MS - 10);
  assert_true(took < KCLD_NOTIFY_SEND_TIMEOUT_MS + 2000);
  /* Once systemd reads again, pings get through. */
  char buf[64];
  pid_t pid;
  while (recv_one(&l, buf, sizeof(buf), &pid) >= 0)
    sent--;
  assert_int_equal(sent, 0);
  assert_int_equal(kcld_notify_watchdog(n), 0);
  expect(&l, "WATCHDOG=1");
  kcld_notify_close(n);
  listener_close(&l);
}

/* ======== Watchdog ======== */

static uint64_t watchdog_with(const char *usec, const char *pid)
{
  struct kcld_notify *n = NULL;
  if (usec)
    setenv("WATCHDOG_USEC", usec, 1);
  else
    unsetenv("WATCHDOG_USEC");
  if (pid)
    setenv("WATCHDOG_PID", pid, 1);
  else
    unsetenv("WATCHDOG_PID");
  log_capture();
  assert_int_equal(kcld_notify_new(&n, false), 0);
  free(log_release());
  assert_non_null(n);
  uint64_t v = kcld_notify_watchdog_usec(n);
  kcld_notify_close(n);
  return v;
}

static void test_watchdog_usec(void **state)
{
  (void)state;
  char me[32], other[32];
  snprintf(me, sizeof(me), "%d", (int)getpid());
  snprintf(other, sizeof(other), "%d", (int)getpid() + 1);

  setenv("NOTIFY_SOCKET", "@kcld-test-watchdog", 1);
  assert_int_equal(watchdog_with(NULL, NULL), 0);
  assert_int_equal(watchdog_with("", NULL), 0);
  assert_int_equal(watchdog_with("30000000", NULL), 30000000);
  assert_int_equal(watchdog_with("30000000", me), 30000000);
  assert_int_equal(watchdog_with("1", ""), 1);
  assert_int_equal(watchdog_with("30000000", other), 0);
  assert_int_equal(watchdog_with("30000000", "x"), 0);
  assert_int_equal(watchdog_with("30000000", "0"), 0);
  assert_int_equal(watchdog_with("0", NULL), 0);
  assert_int_equal(watchdog_with("abc", NULL), 0);
  assert_int_equal(watchdog_with("-5", NULL), 0);
  assert_int_equal(watchdog_with("12x", NULL), 0);
  assert_int_equal(watchdog_with(" 12", NULL), 0);
  assert_int_equal(watchdog_with("18446744073709551615", NULL),
                   UINT64_MAX);
  assert_int_equal(watchdog_with("18446744073709551616", NULL), 0);
  clear_env();
}

static void test_unset_env(void **state)
{
  (void)state;
  struct kcld_notify *n = NULL;

  setenv("NOTIFY_SOCKET", "@kcld-test-unset", 1);
  setenv("WATCHDOG_USEC", "5000000", 1);
  setenv("WATCHDOG_PID", "1", 1);
  assert_int_equal(kcld_notify_new(&n, false), 0);
  kcld_notify_close(n);
  assert_non_null(getenv("NOTIFY_SOCKET"));
  assert_non_null(getenv("WATCHDOG_USEC"));
  assert_non_null(getenv("WATCHDOG_PID"));

  assert_int_equal(kcld_notify_new(&n, true), 0);
  assert_non_null(n);
  assert_null(getenv("NOTIFY_SOCKET"));
  assert_null(getenv("WATCHDOG_USEC"));
  assert_null(getenv("WATCHDOG_PID"));
  kcld_notify_close(n);

  /* Also when there is no socket, and when the address is bad. */
  setenv("WATCHDOG_USEC", "5000000", 1);
  assert_int_equal(kcld_notify_new(&n, true), 0);
  assert_null(n);
  assert_null(getenv("WATCHDOG_USEC"));
  setenv("NOTIFY_SOCKET", "bad", 1);
  log_capture();
  assert_int_equal(kcld_notify_new(&n, true), KCLD_EINVAL);
  free(log_release());
  assert_null(getenv("NOTIFY_SOCKET"));
  clear_env();
}

static void on_stop(uv_timer_t *t)
{
  uv_close((uv_handle_t *)t, NULL);
}

static void test_watchdog_timer(void **state)
{
  (void)state;
  struct listener l;
  struct kcld_notify *n = NULL;
  uv_loop_t loop;
  uv_timer_t stop;
  char buf[64];
  pid_t pid;
  int pings = 0;

  listen_on(&l, true);
  setenv("WATCHDOG_USEC", "100000", 1); /* 100 ms: a ping every 50 ms */
  assert_int_equal(kcld_notify_new(&n, false), 0);
  assert_int_equal(kcld_notify_watchdog_usec(n), 100000);
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(kcld_notify_watchdog_start(n, &loop), 0);
  assert_int_equal(kcld_notify_watchdog_start(n, &loop), KCLD_EINVAL);

  /* The watchdog timer alone does not keep the loop running. */
  uint64_t t0 = now_ms();
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_true(now_ms() - t0 < 40);

  assert_int_equal(uv_timer_init(&loop, &stop), 0);
  assert_int_equal(uv_timer_start(&stop, on_stop, 520, 0), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ssize_t got;
  while ((got = recv_one(&l, buf, sizeof(buf) - 1, &pid)) >= 0) {
    buf[got] = '\0';
    assert_string_equal(buf, "WATCHDOG=1");
    assert_int_equal(pid, getpid());
    pings++;
  }
  /* About ten in 520 ms; the loop may be slow under sanitizers. */
  assert_true(pings >= 6);
  assert_true(pings <= 11);

  /* A loop that stops turning stops the pings. */
  usleep(200 * 1000);
  assert_int_equal(recv_one(&l, buf, sizeof(buf), &pid), -1);

  kcld_notify_close(n);
  kcld_test_loop_finish(&loop);
  listener_close(&l);
}

static void test_watchdog_timer_without_watchdog(void **state)
{
  (void)state;
  struct listener l;
  struct kcld_notify *n = NULL;
  uv_loop_t loop;

  listen_on(&l, false);
  assert_int_equal(kcld_notify_new(&n, false), 0);
  assert_int_equal(kcld_notify_watchdog_usec(n), 0);
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(kcld_notify_watchdog_start(n, &loop), 0);
  kcld_notify_close(n); /* freed at once: no timer was started */
  kcld_test_loop_finish(&loop);
  listener_close(&l);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_unset_is_silent_noop),
    cmocka_unit_test(test_path_socket),
    cmocka_unit_test(test_abstract_socket),
    cmocka_unit_test(test_status_one_line_and_cut),
    cmocka_unit_test(test_raw_send_limits),
    cmocka_unit_test(test_bad_addresses),
    cmocka_unit_test(test_no_listener),
    cmocka_unit_test(test_full_queue_does_not_hang),
    cmocka_unit_test(test_watchdog_usec),
    cmocka_unit_test(test_unset_env),
    cmocka_unit_test(test_watchdog_timer),
    cmocka_unit_test(test_watchdog_timer_without_watchdog),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
