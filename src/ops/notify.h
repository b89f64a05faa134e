/* notify.h — the systemd notification protocol (sd_notify), without
 * libsystemd.
 *
 * Under systemd with Type=notify, $NOTIFY_SOCKET names a unix datagram
 * socket: a filesystem path ("/run/systemd/notify") or, with a leading '@',
 * a name in the abstract namespace.  Each message is one datagram of
 * newline-separated VARIABLE=value assignments:
 *
 *   READY=1\nSTATUS=4 leases, lag 120 ms   start-up is done
 *   STATUS=...                             a one-line status for systemctl
 *   WATCHDOG=1                             the loop is alive
 *   STOPPING=1                             shutdown has begun
 *
 * The kernel attaches the sender's pid to each datagram; with
 * NotifyAccess=main systemd accepts only the main process (any of its
 * threads).  $WATCHDOG_USEC (and $WATCHDOG_PID, when set, naming us) gives
 * the watchdog timeout: WATCHDOG=1 must arrive more often than that.
 *
 * Without $NOTIFY_SOCKET (not under systemd, or Type=simple) there is
 * nothing to do: kcld_notify_new() gives NULL and every function here
 * accepts NULL and does nothing, returning 0.
 *
 * Use from one thread (the loop thread); a datagram is never longer than
 * KCLD_NOTIFY_MAX bytes, the most systemd reads. */
#ifndef KCLD_OPS_NOTIFY_H
#define KCLD_OPS_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/* The longest datagram sent; systemd ignores longer ones (PIPE_BUF). */
#define KCLD_NOTIFY_MAX 4096

/* How long one send may wait when systemd's queue is full, in ms. */
#define KCLD_NOTIFY_SEND_TIMEOUT_MS 250

struct kcld_notify;

/* Reads $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID and opens a
 * datagram socket (close-on-exec).  Returns 0 and *out; *out is NULL when
 * $NOTIFY_SOCKET is unset or empty (nothing to notify).  Returns
 * KCLD_EINVAL (and logs why) when the variable names no usable unix socket
 * address (relative path, too long, another socket family), KCLD_EIO when
 * no socket can be created, KCLD_ENOMEM.  A malformed $WATCHDOG_USEC is
 * logged and means no watchdog.
 *
 * With `unset_env`, the three variables are removed from the environment so
 * that handler child processes do not inherit them; setenv/unsetenv are not
 * thread-safe, so call it then from main() before any thread starts. */
int kcld_notify_new(struct kcld_notify **out, bool unset_env);

/* Stops the watchdog timer if it runs and frees `n`.  When the timer was
 * started, the memory is freed in the timer's close callback, so the loop
 * must run once more (shutdown does).  NULL is accepted. */
void kcld_notify_close(struct kcld_notify *n);

/* True when `n` sends anywhere (i.e. `n` is not NULL). */
bool kcld_notify_enabled(const struct kcld_notify *n);

/* Sends `state` as it is: one datagram of newline-separated assignments,
 * e.g. "EXTEND_TIMEOUT_USEC=5000000".  Returns 0, KCLD_EINVAL when `state`
 * is empty or longer than KCLD_NOTIFY_MAX, KCLD_EIO when the datagram could
 * not be sent (no listener, or the queue stayed full for
 * KCLD_NOTIFY_SEND_TIMEOUT_MS).  Never raises SIGPIPE. */
int kcld_notify_send(struct kcld_notify *n, const char *state);

/* Sends "READY=1", followed by "\nSTATUS=<status>" when `status` is not NULL.
 * Status text is made one line (newlines become spaces) and cut so that the
 * datagram fits KCLD_NOTIFY_MAX.  Returns as kcld_notify_send(). */
int kcld_notify_ready(struct kcld_notify *n, const char *status);

/* Sends "STATUS=<printf-formatted text>", made one line and cut to fit as
 * for kcld_notify_ready().  Returns as kcld_notify_send(). */
int kcld_notify_status(struct kcld_notify *n, const char *fmt, ...)
  __attribute__((format(printf, 2, 3)));

/* Sends "STOPPING=1", followed by "\nSTATUS=<status>" when `status` is not
 * NULL.  Returns as kcld_notify_send(). */
int kcld_notify_stopping(struct kcld_notify *n, const char *status);

/* Sends "WATCHDOG=1".  Returns as kcld_notify_send(). */
int kcld_notify_watchdog(struct kcld_notify *n);

/* The watchdog timeout systemd enforces, in microseconds: $WATCHDOG_USEC as
 * read by kcld_notify_new(), or 0 when there is no watchdog for this
 * process (unset, malformed, or $WATCHDOG_PID names another process). */
uint64_t kcld_notify_watchdog_usec(const struct kcld_notify *n);

/* Starts a repeating timer on `loop` that sends WATCHDOG=1 every half of the
 * watchdog timeout, so a loop that stops turning stops the pings and
 * systemd restarts the service.  Returns 0 (also when there is no watchdog:
 * then no timer is started), KCLD_EINVAL when already started, or KCLD_EIO
 * when the timer cannot be set up.  The timer is unreferenced: it never
 * keeps the loop alive by itself.  A failed ping is logged, at most once a
 * minute. */
int kcld_notify_watchdog_start(struct kcld_notify *n, uv_loop_t *loop);

#endif
