/* notify.c — sd_notify over $NOTIFY_SOCKET: one unix datagram per message,
 * sent with sendto() to the address systemd gave us.  The socket is not
 * connected, so a systemd that re-binds its socket (daemon-reexec) is still
 * reached.  See notify.h for the protocol. */
#include "ops/notify.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "err.h"
#include "log.h"

struct kcld_notify {
  int fd;
  struct sockaddr_un addr;
  socklen_t addr_len;
  uint64_t watchdog_usec;      /* 0 = no watchdog */
  bool timer_started;
  uv_timer_t timer;            /* WATCHDOG=1 pings; data = this */
  uint64_t last_fail_log_ms;   /* rate limit for failed pings */
  bool failed_once;
};

/* ======== Environment ======== */

/* Fills n->addr from the value of $NOTIFY_SOCKET. */
static int parse_address(struct kcld_notify *n, const char *value)
{
  size_t len = strlen(value);
  memset(&n->addr, 0, sizeof(n->addr));
  n->addr.sun_family = AF_UNIX;
  if (value[0] != '/' && value[0] != '@') {
    kcld_log(KCLD_LOG_WARN, "NOTIFY_SOCKET is not a unix socket address",
             "value", value, NULL);
    return KCLD_EINVAL;
  }
  if (len < 2 || len > sizeof(n->addr.sun_path)) {
    kcld_log(KCLD_LOG_WARN, "NOTIFY_SOCKET has a bad length", "value", value,
             NULL);
    return KCLD_EINVAL;
  }
  memcpy(n->addr.sun_path, value, len);
  if (value[0] == '@') {
    /* Abstract namespace: a leading NUL, and the length counts exactly the
     * name's bytes (no terminating NUL). */
    n->addr.sun_path[0] = '\0';
    n->addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
  } else {
    if (len == sizeof(n->addr.sun_path)) {
      /* A path needs room for its NUL. */
      kcld_log(KCLD_LOG_WARN, "NOTIFY_SOCKET path is too long", "value",
               value, NULL);
      return KCLD_EINVAL;
    }
    n->addr_len =
      (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
  }
  return 0;
}

/* Parses an unsigned decimal with nothing around it; 0 on success. */
static int parse_u64(const char *s, uint64_t *out)
{
  uint64_t v = 0;
  if (!s || !*s)
    return -1;
  for (; *s; s++) {
    if (*s < '0' || *s > '9')
      return -1;
    unsigned d = (unsigned)(*s - '0');
    if (v > (UINT64_MAX - d) / 10)
      return -1;
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

/* The watchdog timeout for this process from $WATCHDOG_USEC/$WATCHDOG_PID,
 * or 0. */
static uint64_t read_watchdog(void)
{
  const char *usec_s = getenv("WATCHDOG_USEC");
  const char *pid_s = getenv("WATCHDOG_PID");
  uint64_t usec, pid;

  if (!usec_s || !*usec_s)
    return 0;
  if (parse_u64(usec_s, &usec) != 0 || usec == 0) {
    kcld_log(KCLD_LOG_WARN, "WATCHDOG_USEC is not a positive integer; "
             "no watchdog", "value", usec_s, NULL);
    return 0;
  }
  if (pid_s && *pid_s) {
    if (parse_u64(pid_s, &pid) != 0 || pid == 0) {
      kcld_log(KCLD_LOG_WARN, "WATCHDOG_PID is not a pid; no watchdog",
               "value", pid_s, NULL);
      return 0;
    }
    if (pid != (uint64_t)getpid())
      return 0; /* the watchdog is for another process */
  }
  return usec;
}

int kcld_notify_new(struct kcld_notify **out, bool unset_env)
{
  int rc = 0;
  struct kcld_notify *n = NULL;
  const char *value = getenv("NOTIFY_SOCKET");

  *out = NULL;
  if (!value || !*value)
    goto done;
  n = calloc(1, sizeof(*n));
  if (!n) {
    rc = KCLD_ENOMEM;
    goto done;
  }
  n->fd = -1;
  rc = parse_address(n, value);
  if (rc != 0)
    goto done;
  n->watchdog_usec = read_watchdog();
  n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (n->fd < 0) {
    kcld_log(KCLD_LOG_WARN, "cannot create the notify socket", "error",
             strerror(errno), NULL);
    rc = KCLD_EIO;
    goto done;
  }
  /* Bound the wait when systemd's queue is full: the loop must not hang on
   * a notification. */
  struct timeval tv = {
    .tv_sec = KCLD_NOTIFY_SEND_TIMEOUT_MS / 1000,
    .tv_usec = (KCLD_NOTIFY_SEND_TIMEOUT_MS % 1000) * 1000,
  };
  if (setsockopt(n->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0) {
    kcld_log(KCLD_LOG_WARN, "cannot set the notify socket's send timeout",
             "error", strerror(errno), NULL);
    rc = KCLD_EIO;
    goto done;
  }
  *out = n;
  n = NULL;

done:
  if (n) {
    if (n->fd >= 0)
      close(n->fd);
    free(n);
  }
  if (unset_env) {
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
  }
  return rc;
}

/* ======== Sending ======== */

bool kcld_notify_enabled(const struct kcld_notify *n)
{
  return n != NULL;
}

static int send_buf(struct kcld_notify *n, const char *buf, size_t len)
{
  ssize_t sent;
  do {
    sent = sendto(n->fd, buf, len, MSG_NOSIGNAL,
                  (const struct sockaddr *)&n->addr, n->addr_len);
  } while (sent < 0 && errno == EINTR);
  if (sent < 0 || (size_t)sent != len)
    return KCLD_EIO;
  return 0;
}

int kcld_notify_send(struct kcld_notify *n, const char *state)
{
  if (!n)
    return 0;
  size_t len = state ? strlen(state) : 0;
  if (len == 0 || len > KCLD_NOTIFY_MAX)
    return KCLD_EINVAL;
  return send_buf(n, state, len);
}

/* Builds "<head>\nSTATUS=<text>" (or "STATUS=<text>" when head is NULL) in
 * buf, with newlines in text made spaces and text cut to fit; returns the
 * length.  A cut never splits a UTF-8 sequence. */
static size_t build(char *buf, const char *head, const char *text)
{
  size_t len = 0, cap = KCLD_NOTIFY_MAX;
  if (head) {
    len = strlen(head);
    memcpy(buf, head, len);
    if (!text)
      return len;
    buf[len++] = '\n';
  }
  memcpy(buf + len, "STATUS=", 7);
  len += 7;
  size_t start = len;
  for (const char *p = text; *p && len < cap; p++)
    buf[len++] = (*p == '\n' || *p == '\r') ? ' ' : *p;
  if (text[len - start] != '\0') {
    /* Cut: drop a partial UTF-8 sequence at the end. */
    size_t back = len;
    while (back > start && ((unsigned char)buf[back - 1] & 0xC0) == 0x80)
      back--;
    if (back > start && ((unsigned char)buf[back - 1] & 0x80)) {
      /* buf[back - 1] leads a sequence; keep it only if it is complete. */
      unsigned char lead = (unsigned char)buf[back - 1];
      size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
      if (len - (back - 1) < need)
        len = back - 1;
    }
  }
  return len;
}

int kcld_notify_ready(struct kcld_notify *n, const char *status)
{
  char buf[KCLD_NOTIFY_MAX];
  if (!n)
    return 0;
  return send_buf(n, buf, build(buf, "READY=1", status));
}

int kcld_notify_stopping(struct kcld_notify *n, const char *status)
{
  char buf[KCLD_NOTIFY_MAX];
  if (!n)
    return 0;
  return send_buf(n, buf, build(buf, "STOPPING=1", status));
}

int kcld_notify_status(struct kcld_notify *n, const char *fmt, ...)
{
  char text[KCLD_NOTIFY_MAX + 1], buf[KCLD_NOTIFY_MAX];
  va_list ap;
  if (!n)
    return 0;
  va_start(ap, fmt);
  int w = vsnprintf(text, sizeof(text), fmt, ap);
  va_end(ap);
  if (w < 0)
    return KCLD_EINVAL;
  return send_buf(n, buf, build(buf, NULL, text));
}

int kcld_notify_watchdog(struct kcld_notify *n)
{
  if (!n)
    return 0;
  return send_buf(n, "WATCHDOG=1", 10);
}

uint64_t kcld_notify_watchdog_usec(const struct kcld_notify *n)
{
  return n ? n->watchdog_usec : 0;
}

/* ======== Watchdog timer ======== */

static void on_watchdog(uv_timer_t *timer)
{
  struct kcld_notify *n = timer->data;
  int rc = kcld_notify_watchdog(n);
  if (rc == 0)
    return;
  uint64_t now = uv_now(timer->loop);
  if (!n->failed_once || now - n->last_fail_log_ms >= 60000) {
    n->failed_once = true;
    n->last_fail_log_ms = now;
    kcld_log(KCLD_LOG_WARN, "watchdog ping to systemd failed", "error",
             strerror(errno), NULL);
  }
}

int kcld_notify_watchdog_start(struct kcld_notify *n, uv_loop_t *loop)
{
  if (!n || n->watchdog_usec == 0)
    return 0;
  if (n->timer_started)
    return KCLD_EINVAL;
  if (uv_timer_init(loop, &n->timer) != 0)
    return KCLD_EIO;
  n->timer.data = n;
  n->timer_started = true; /* from here on, close goes through uv_close */
  /* Half the timeout, as systemd advises; at least 1 ms. */
  uint64_t every_ms = n->watchdog_usec / 2000;
  if (every_ms == 0)
    every_ms = 1;
  uv_unref((uv_handle_t *)&n->timer);
  if (uv_timer_start(&n->timer, on_watchdog, every_ms, every_ms) != 0)
    return KCLD_EIO;
  return 0;
}

static void on_closed(uv_handle_t *handle)
{
  free(handle->data);
}

void kcld_notify_close(struct kcld_notify *n)
{
  if (!n)
    return;
  if (n->fd >= 0)
    close(n->fd);
  n->fd = -1;
  if (n->timer_started)
    uv_close((uv_handle_t *)&n->timer, on_closed);
  else
    free(n);
}
