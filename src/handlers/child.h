/* child.h — a handler's child process, supervised: what the lambda and
 * multilang handlers share under their protocols.
 *
 * A struct kcld_child is a slot that runs one process of a command at a
 * time (an "incarnation"), with:
 *   - stdin, stdout and stderr on pipes;
 *   - its own process group, the child as leader, so that a signal from
 *     kcld reaches everything the handler started (grandchildren too);
 *   - PR_SET_PDEATHSIG(SIGKILL): the child dies with kcld, even when kcld
 *     itself is SIGKILLed (a child whose parent died before that took hold
 *     exits at once);
 *   - the signal mask and dispositions reset (kcld's SIG_IGN of SIGPIPE does
 *     not leak), and the environment given at creation;
 *   - stdout split into lines of at most max_line bytes; a longer line is
 *     reported cut (too_long) and the rest of it skipped;
 *   - stderr logged a line at a time through kcld_log with the slot's own
 *     constant message (so the logger can rate-limit it per message) and
 *     its tag; a line is cut at KCLD_CHILD_LOG_LINE_MAX bytes;
 *   - stdin written without blocking, counting the bytes the process has
 *     read (so a handler can tell a child that died before reading its
 *     batch from one that died after);
 *   - a graceful stop (stdin closed; SIGTERM to the group after a grace,
 *     SIGKILL KCLD_CHILD_KILL_GRACE_MS later) and an immediate kill
 *     (SIGKILL to the group);
 *   - restarts after a backoff (base doubling to max, reset on request).
 * When the process ends, whatever is left of its group is SIGKILLed before
 * the process is reaped: nothing it started outlives it.
 *
 * An incarnation ends (the exited callback) once the process is reaped and
 * its stdout is at end of file, or KCLD_CHILD_DRAIN_MS after the exit when
 * something that left the group still holds stdout open.
 *
 * Loop thread only.  The program must ignore SIGPIPE (the daemon does). */
#ifndef KCLD_HANDLERS_CHILD_H
#define KCLD_HANDLERS_CHILD_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/buf.h"

#define KCLD_CHILD_LOG_LINE_MAX 1024  /* bytes of a stderr line logged */
#define KCLD_CHILD_KILL_GRACE_MS 2000 /* SIGTERM -> SIGKILL in a stop */
#define KCLD_CHILD_DRAIN_MS 500       /* exit -> stdout given up on */

struct kcld_child;

/* How an incarnation ended. */
struct kcld_child_exit {
  int spawn_err;      /* a KCLD_E* code when no process could be started
                         (the reason is in `reason`); then the rest is 0 */
  int64_t status;     /* exit status; 0 when ended by a signal */
  int term_signal;    /* the signal that ended it, else 0 */
  int killed;         /* kcld signalled it (kill, or a stop's escalation) */
  uint64_t consumed;  /* bytes of stdin the process had read when it
                         exited */
  const char *reason; /* spawn_err only: "No such file or directory" */
};

struct kcld_child_cbs {
  /* A restart asked for with kcld_child_respawn started a process. */
  void (*started)(void *arg);
  /* One line of stdout (without its newline; a trailing "\r" dropped).
   * too_long: the line was longer than max_line; these are its first
   * max_line bytes.  Not called after kcld_child_kill. */
  void (*line)(void *arg, const char *line, size_t len, int too_long);
  /* The incarnation is over, or a restart could not start a process
   * (spawn_err).  The slot is idle: respawn, spawn or close it. */
  void (*exited)(void *arg, const struct kcld_child_exit *e);
  /* After kcld_child_close: the process is reaped and every handle
   * closed; the slot is freed.  Optional. */
  void (*closed)(void *arg);
};

/* Log messages of a slot: constant texts of the handler that owns it. */
struct kcld_child_msgs {
  const char *stderr_line;  /* each stderr line, field "line" */
  const char *term;         /* a stop's SIGTERM */
  const char *kill;         /* a stop's SIGKILL */
  const char *write_failed; /* stdin refused a write; the child is killed */
};

struct kcld_child_opts {
  uv_loop_t *loop;
  const char *const *argv;      /* NULL-terminated; copied.  argv[0] is
                                   looked up in $PATH at each spawn */
  const char *const *env_add;   /* "NAME=value" entries that replace or
                                   join kcld's environment; NULL-terminated,
                                   may be NULL; copied */
  const char *tag_key;          /* log field naming the slot ("shard") */
  const char *tag;              /* its value; copied */
  const struct kcld_child_msgs *msgs; /* borrowed; must outlive the slot */
  size_t max_line;              /* longest stdout line; 0 = 16 MiB */
  uint64_t backoff_base_ms;     /* first restart delay (>= 1) */
  uint64_t backoff_max_ms;      /* its cap */
  struct kcld_child_cbs cbs;
  void *arg;
};

/* Creates an idle slot.  Returns 0 and *out, KCLD_EINVAL (no argv, loop or
 * messages) or KCLD_ENOMEM. */
int kcld_child_new(const struct kcld_child_opts *opts,
                   struct kcld_child **out);

/* Starts a process now.  Returns 0, KCLD_EINVAL (one is running, or the
 * slot is closing), KCLD_ENOMEM, or KCLD_EIO when it cannot be started
 * (the command is not found or not executable; the reason is logged by
 * the caller from kcld_child_spawn_error).  No callback for this attempt. */
int kcld_child_spawn(struct kcld_child *c);

/* The reason the last failed spawn gave ("Permission denied"). */
const char *kcld_child_spawn_error(const struct kcld_child *c);

/* Starts a process after the next restart delay (base doubling to max):
 * then `started`, or `exited` with spawn_err.  Ignored while a process
 * runs or the slot closes. */
void kcld_child_respawn(struct kcld_child *c);

/* The next restart waits the base delay again (after a good answer). */
void kcld_child_backoff_reset(struct kcld_child *c);

/* 1 from a successful spawn until the exited callback, else 0. */
int kcld_child_running(const struct kcld_child *c);

/* The running process's id as text (for logs), or "". */
const char *kcld_child_pid(const struct kcld_child *c);

/* Queues `len` bytes (`data`, malloc'd, taken) for the process's stdin and
 * sets *end (may be NULL) to the stdin offset just past them: the process
 * has read them once it has consumed that many bytes.  Returns 0, or
 * KCLD_EIO when no process runs or its stdin is closed (data freed).  A
 * write the pipe refuses for another reason than being full is logged and
 * kills the process: its exit follows.  (Bytes for a process that has
 * closed its stdin or died stay in the pipe, unread.) */
int kcld_child_write(struct kcld_child *c, char *data, size_t len,
                     uint64_t *end);

/* Bytes of stdin the running process has read so far (0 when none runs). */
uint64_t kcld_child_consumed(const struct kcld_child *c);

/* Graceful stop: closes stdin once what is queued is written; SIGTERM to
 * the group after grace_ms if the process still runs, SIGKILL
 * KCLD_CHILD_KILL_GRACE_MS later.  Its exit follows. */
void kcld_child_stop(struct kcld_child *c, uint64_t grace_ms);

/* SIGKILL to the process group now; no more stdout lines are delivered.
 * Its exit follows.  Nothing when no process runs. */
void kcld_child_kill(struct kcld_child *c);

/* Frees the slot once its process (if any) is reaped: a running process
 * that is not already being stopped or killed is killed.  No callback but
 * `closed` runs after this; the loop must run until then. */
void kcld_child_close(struct kcld_child *c);

/* SIGKILL to the process group of every child of every slot of this
 * process: the last resort of a shutdown that ran out of time. */
void kcld_child_kill_all(void);

/* Finds the program a spawn of argv0 runs: argv0 itself when it has a
 * slash, else the first executable regular file of that name in $PATH.
 * Returns 0 with the path in out (cap bytes), or KCLD_ENOTFOUND when there
 * is none (or it is not executable, or does not fit), as exec would
 * fail. */
int kcld_child_find(const char *argv0, char *out, size_t cap);

/* ======== Line framing, pure (exported for tests and fuzzing) ======== */

/* Splits a byte stream into lines: a partial line is kept until its
 * newline, a trailing "\r" is dropped, a line longer than `max` is cut off
 * and skipped to its end (cb gets its first max bytes, too_long = 1). */
struct kcld_child_lines {
  struct kcld_buf buf;    /* the partial line */
  size_t max;             /* 0 = KCLD_CHILD_MAX_LINE */
  int skipping;
};

#define KCLD_CHILD_MAX_LINE (16u << 20)

typedef void (*kcld_child_line_cb)(void *arg, const char *line, size_t len,
                                   int too_long);

/* Feeds n bytes; calls cb once per complete line.  Returns 0 or
 * KCLD_ENOMEM. */
int kcld_child_lines_feed(struct kcld_child_lines *l, const char *data,
                          size_t n, kcld_child_line_cb cb, void *arg);

/* Calls cb with the partial line kept, if any (as if a newline came). */
void kcld_child_lines_flush(struct kcld_child_lines *l, kcld_child_line_cb cb,
                            void *arg);

/* Frees the buffer; the rest of a partial line is dropped. */
void kcld_child_lines_free(struct kcld_child_lines *l);

#endif
