/* child.c — a handler's child process, supervised (see child.h).
 *
 * A slot (struct kcld_child) outlives its incarnations (struct proc): a
 * proc is allocated at each spawn and freed once its handles are closed,
 * so a restart never waits for the last one's handles.  The slot's one
 * timer serves what the slot waits for: a stop's SIGTERM and SIGKILL, the
 * drain after an exit, the restart delay.
 *
 * The process is forked here rather than by uv_spawn, which cannot set a
 * parent-death signal: the child sets its process group and
 * PR_SET_PDEATHSIG between fork and exec, and reports an exec failure
 * through a close-on-exec pipe.  Its exit is seen through SIGCHLD: waitid
 * with WNOWAIT first, so that the group is killed while the leader is still
 * a zombie (its id, which is the group's, cannot have been reused), then it
 * is reaped.
 *
 * Stdin is written here, not through a uv stream, to count exactly the
 * bytes that went into the pipe; the bytes still in the pipe tell how much
 * of it the process has read.  kcld keeps the pipe's read end open too (it
 * never reads from it), so that FIONREAD still answers after stdin is
 * closed; a write to a child that is gone then lands in the pipe instead
 * of failing, and its exit is seen through SIGCHLD as any other. */
#include "handlers/child.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/backoff.h"
#include "err.h"
#include "log.h"

extern char **environ;

#define READ_CHUNK 65536

enum timer_kind { T_NONE = 0, T_TERM, T_KILL, T_DRAIN, T_RESPAWN };

struct wbuf {
  struct wbuf *next;
  char *data;
  size_t len, off;
};

struct proc {
  struct kcld_child *c;
  struct proc *prev, *next;  /* s_live: running, not yet reaped */
  int listed;
  pid_t pid;
  char pid_text[16];
  int in_fd;                 /* our end of stdin; -1 once closed */
  int in_rd;                 /* the pipe's read end, for FIONREAD */
  uv_poll_t in_poll;         /* writability of in_fd, while a write waits */
  uv_pipe_t out, err;
  uv_signal_t sigchld;
  int handles;               /* initialized and not yet closed */
  int in_poll_open, polling;
  int in_closing;            /* close stdin once the queue is written */
  int exited, out_eof, err_eof;
  int killed;                /* kcld sent the group a signal */
  int muted;                 /* kcld_child_kill: stdout lines dropped */
  int ended;                 /* the incarnation is over */
  int64_t status;
  int term_signal;
  uint64_t queued;           /* bytes handed to kcld_child_write */
  uint64_t written;          /* bytes that went into the pipe */
  uint64_t consumed;         /* measured at exit */
  int measured;
  struct wbuf *wq, **wq_tail;
  struct kcld_child_lines lo, le;
  char rbuf[READ_CHUNK];
};

struct kcld_child {
  uv_loop_t *loop;
  char **argv;
  char **envp;
  const char *tag_key;
  char *tag;
  const struct kcld_child_msgs *msgs;
  size_t max_line;
  struct kcld_backoff backoff;
  unsigned backoff_step;      /* restarts since the last reset */
  struct kcld_child_cbs cbs;
  void *arg;
  uv_timer_t timer;
  enum timer_kind timer_kind;
  struct proc *cur;          /* the incarnation not yet ended */
  unsigned procs;            /* procs not yet freed */
  int closing;
  int timer_closing;
  char spawn_error[128];
};

/* Every process started here and not yet reaped (loop thread only). */
static struct proc *s_live;

static void proc_end(struct proc *p);

/* ======== Line framing ======== */

/* Appends to the partial line; a failed growth drops it. */
static int lines_put(struct kcld_child_lines *l, const char *s, size_t n)
{
  if (kcld_buf_add(&l->buf, s, n) == 0)
    return 0;
  kcld_buf_free(&l->buf);
  return KCLD_ENOMEM;
}

int kcld_child_lines_feed(struct kcld_child_lines *l, const char *data,
                          size_t n, kcld_child_line_cb cb, void *arg)
{
  size_t max = l->max ? l->max : KCLD_CHILD_MAX_LINE;
  struct kcld_buf *b = &l->buf;
  while (n > 0) {
    const char *nl = memchr(data, '\n', n);
    size_t take = nl ? (size_t)(nl - data) : n;
    if (l->skipping) {
      if (nl)
        l->skipping = 0;
    } else if (b->len + take > max) {
      if (lines_put(l, data, max - b->len) != 0)
        return KCLD_ENOMEM;
      b->len = 0;
      l->skipping = nl == NULL;
      cb(arg, b->p, max, 1);
    } else {
      if (lines_put(l, data, take) != 0)
        return KCLD_ENOMEM;
      if (nl) {
        size_t len = b->len;
        if (len > 0 && b->p[len - 1] == '\r')
          len--;
        b->len = 0;
        cb(arg, b->p ? b->p : "", len, 0);
      }
    }
    if (!nl)
      break;
    n -= take + 1;
    data += take + 1;
  }
  return 0;
}

void kcld_child_lines_flush(struct kcld_child_lines *l, kcld_child_line_cb cb,
                            void *arg)
{
  size_t len = l->buf.len;
  if (len == 0 || l->skipping)
    return;
  if (l->buf.p[len - 1] == '\r')
    len--;
  l->buf.len = 0;
  cb(arg, l->buf.p, len, 0);
}

void kcld_child_lines_free(struct kcld_child_lines *l)
{
  kcld_buf_free(&l->buf);
  l->skipping = 0;
}

/* ======== Slot bookkeeping ======== */

static void slot_free(struct kcld_child *c)
{
  for (size_t i = 0; c->argv && c->argv[i]; i++)
    free(c->argv[i]);
  free(c->argv);
  for (size_t i = 0; c->envp && c->envp[i]; i++)
    free(c->envp[i]);
  free(c->envp);
  free(c->tag);
  free(c);
}

static void on_timer_closed(uv_handle_t *h)
{
  struct kcld_child *c = h->data;
  void (*closed)(void *) = c->cbs.closed;
  void *arg = c->arg;
  slot_free(c);
  if (closed)
    closed(arg);
}

/* A closing slot with nothing left running goes away. */
static void slot_maybe_free(struct kcld_child *c)
{
  if (!c->closing || c->cur || c->procs > 0 || c->timer_closing)
    return;
  c->timer_closing = 1;
  uv_timer_stop(&c->timer);
  uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

static void on_proc_handle_closed(uv_handle_t *h)
{
  struct proc *p = h->data;
  struct kcld_child *c = p->c;
  if (--p->handles > 0)
    return;
  for (struct wbuf *b = p->wq, *n; b; b = n) {
    n = b->next;
    free(b->data);
    free(b);
  }
  kcld_child_lines_free(&p->lo);
  kcld_child_lines_free(&p->le);
  free(p);
  c->procs--;
  slot_maybe_free(c);
}

static void close_handle(uv_handle_t *h)
{
  if (!uv_is_closing(h))
    uv_close(h, on_proc_handle_closed);
}

static void unlist(struct proc *p)
{
  if (!p->listed)
    return;
  if (p->prev)
    p->prev->next = p->next;
  else
    s_live = p->next;
  if (p->next)
    p->next->prev = p->prev;
  p->listed = 0;
}

static void timer_set(struct kcld_child *c, enum timer_kind kind,
                      uint64_t ms);

/* ======== Stdin ======== */

/* Bytes of stdin still in the pipe, unread; 0 when it cannot be told. */
static uint64_t unread(const struct proc *p)
{
  int n = 0;
  if (p->in_rd < 0 || ioctl(p->in_rd, FIONREAD, &n) != 0 || n < 0)
    return 0;
  return (uint64_t)n;
}

static void measure(struct proc *p)
{
  if (p->measured)
    return;
  p->consumed = p->written - unread(p);
  p->measured = 1;
}

static void close_stdin(struct proc *p)
{
  if (p->in_fd < 0)
    return;
  /* uv_close stops the poll (and takes the fd out of epoll) at once, so
   * the fd can be closed right after. */
  if (p->in_poll_open)
    close_handle((uv_handle_t *)&p->in_poll);
  p->in_poll_open = 0;
  p->polling = 0;
  close(p->in_fd);
  p->in_fd = -1;
}

static void drop_queue(struct proc *p)
{
  for (struct wbuf *b = p->wq, *n; b; b = n) {
    n = b->next;
    free(b->data);
    free(b);
  }
  p->wq = NULL;
  p->wq_tail = &p->wq;
}

static void signal_group(struct proc *p, int sig)
{
  if (!p->exited) {
    p->killed = 1;
    kill(-p->pid, sig);
  }
}

static void flush(struct proc *p);

static void on_writable(uv_poll_t *h, int status, int events)
{
  struct proc *p = h->data;
  (void)status;
  (void)events;
  flush(p); /* an error shows as a failed write() */
}

/* Writes what is queued until the pipe is full. */
static void flush(struct proc *p)
{
  struct kcld_child *c = p->c;
  while (p->wq && p->in_fd >= 0) {
    struct wbuf *b = p->wq;
    ssize_t n = write(p->in_fd, b->data + b->off, b->len - b->off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!p->polling && p->in_poll_open &&
          uv_poll_start(&p->in_poll, UV_WRITABLE, on_writable) == 0)
        p->polling = 1;
      return;
    }
    if (n < 0) {
      kcld_log(KCLD_LOG_WARN, c->msgs->write_failed, c->tag_key, c->tag,
               "pid", p->pid_text, "error", strerror(errno), NULL);
      drop_queue(p);
      close_stdin(p);
      signal_group(p, SIGKILL);
      return;
    }
    p->written += (uint64_t)n;
    b->off += (size_t)n;
    if (b->off == b->len) {
      p->wq = b->next;
      if (!p->wq)
        p->wq_tail = &p->wq;
      free(b->data);
      free(b);
    }
  }
  if (p->polling) {
    uv_poll_stop(&p->in_poll);
    p->polling = 0;
  }
  if (p->in_closing)
    close_stdin(p);
}

/* ======== Output ======== */

static void on_out_line(void *arg, const char *line, size_t len,
                        int too_long)
{
  struct proc *p = arg;
  struct kcld_child *c = p->c;
  if (p->muted || p->ended || c->closing || !c->cbs.line)
    return;
  c->cbs.line(c->arg, line, len, too_long);
}

static void on_err_line(void *arg, const char *line, size_t len,
                        int too_long)
{
  struct proc *p = arg;
  struct kcld_child *c = p->c;
  char *s = malloc(len + 1);
  if (!s)
    return;
  memcpy(s, line, len);
  s[len] = '\0';
  kcld_log(KCLD_LOG_INFO, c->msgs->stderr_line, c->tag_key, c->tag, "pid",
           p->pid_text, "line", s, too_long ? "truncated" : NULL,
           too_long ? "true" : NULL, NULL);
  free(s);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
  struct proc *p = h->data;
  (void)hint;
  buf->base = p->rbuf;
  buf->len = sizeof(p->rbuf);
}

static void maybe_end(struct proc *p)
{
  if (p->exited && p->out_eof && !p->ended)
    proc_end(p);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
  struct proc *p = s->data;
  int is_out = s == (uv_stream_t *)&p->out;

  if (n > 0) {
    if (is_out)
      kcld_child_lines_feed(&p->lo, buf->base, (size_t)n, on_out_line, p);
    else
      kcld_child_lines_feed(&p->le, buf->base, (size_t)n, on_err_line, p);
    return;
  }
  if (n == 0)
    return;
  uv_read_stop(s);
  if (is_out) {
    p->out_eof = 1;
    maybe_end(p);
  } else {
    p->err_eof = 1;
    kcld_child_lines_flush(&p->le, on_err_line, p);
  }
}

/* ======== Exit ======== */

static void on_sigchld(uv_signal_t *h, int signum)
{
  struct proc *p = h->data;
  siginfo_t si;
  int st = 0;
  (void)signum;

  if (p->exited)
    return;
  memset(&si, 0, sizeof(si));
  if (waitid(P_PID, (id_t)p->pid, &si, WEXITED | WNOHANG | WNOWAIT) != 0 ||
      si.si_pid != p->pid)
    return;
  /* The leader is a zombie: its group id is still ours to signal. */
  kill(-p->pid, SIGKILL);
  while (waitpid(p->pid, &st, 0) < 0 && errno == EINTR)
    ;
  p->exited = 1;
  unlist(p);
  if (WIFSIGNALED(st))
    p->term_signal = WTERMSIG(st);
  else
    p->status = WEXITSTATUS(st);
  measure(p);
  uv_signal_stop(&p->sigchld);
  if (!p->out_eof)
    timer_set(p->c, T_DRAIN, KCLD_CHILD_DRAIN_MS);
  maybe_end(p);
}

/* The process is reaped and stdout is done: close the incarnation's
 * handles and tell the handler. */
static void proc_end(struct proc *p)
{
  struct kcld_child *c = p->c;
  struct kcld_child_exit e;

  p->ended = 1;
  if (c->timer_kind == T_DRAIN || c->timer_kind == T_TERM ||
      c->timer_kind == T_KILL) {
    uv_timer_stop(&c->timer);
    c->timer_kind = T_NONE;
  }
  if (!p->err_eof) {
    uv_read_stop((uv_stream_t *)&p->err);
    kcld_child_lines_flush(&p->le, on_err_line, p);
  }
  if (!p->out_eof)
    uv_read_stop((uv_stream_t *)&p->out);
  drop_queue(p);
  close_stdin(p);
  measure(p);
  if (p->in_rd >= 0) {
    close(p->in_rd);
    p->in_rd = -1;
  }
  close_handle((uv_handle_t *)&p->out);
  close_handle((uv_handle_t *)&p->err);
  close_handle((uv_handle_t *)&p->sigchld);
  c->cur = NULL;
  memset(&e, 0, sizeof(e));
  e.status = p->status;
  e.term_signal = p->term_signal;
  e.killed = p->killed;
  e.consumed = p->consumed;
  if (c->closing) {
    slot_maybe_free(c);
    return;
  }
  if (c->cbs.exited)
    c->cbs.exited(c->arg, &e);
}

/* ======== Spawning ======== */

static int executable(const char *path)
{
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
         access(path, X_OK) == 0;
}

int kcld_child_find(const char *argv0, char *out, size_t cap)
{
  const char *path = getenv("PATH");
  int w;

  if (!path)
    path = "/bin:/usr/bin"; /* as execvp (glibc's _CS_PATH) */
  if (strchr(argv0, '/')) {
    w = snprintf(out, cap, "%s", argv0);
    return w > 0 && (size_t)w < cap && executable(out) ? 0 : KCLD_ENOTFOUND;
  }
  while (*path) {
    const char *colon = strchr(path, ':');
    size_t n = colon ? (size_t)(colon - path) : strlen(path);
    w = snprintf(out, cap, "%.*s/%s", (int)n, n ? path : ".", argv0);
    if (w > 0 && (size_t)w < cap && executable(out))
      return 0;
    if (!colon)
      break;
    path = colon + 1;
  }
  return KCLD_ENOTFOUND;
}

/* The path execve gets for argv0 (kcld_child_find), or argv0 itself when
 * there is none: execve then fails, with the reason. */
static void resolve(const char *argv0, char *out, size_t cap)
{
  if (kcld_child_find(argv0, out, cap) != 0)
    snprintf(out, cap, "%s", argv0);
}

/* In the forked child: only async-signal-safe calls from here on. */
static void exec_child(const char *path, char **argv, char **envp,
                       const int fds[3], int report, pid_t parent)
{
  struct sigaction dfl;
  sigset_t none;
  int moved[3], e;

  setpgid(0, 0);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent)
    _exit(127); /* kcld died before the death signal was set */
  for (int i = 0; i < 3; i++)
    if ((moved[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3)) < 0)
      goto fail;
  for (int i = 0; i < 3; i++)
    if (dup2(moved[i], i) < 0)
      goto fail;
  memset(&dfl, 0, sizeof(dfl));
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; sig++)
    if (sig != SIGKILL && sig != SIGSTOP)
      sigaction(sig, &dfl, NULL);
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  execve(path, argv, envp);
fail:
  e = errno;
  while (write(report, &e, sizeof(e)) < 0 && errno == EINTR)
    ;
  _exit(127);
}

static void close_fds(int *fds, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (fds[i] >= 0) {
      close(fds[i]);
      fds[i] = -1;
    }
}

/* Forks and execs; returns the pid, or 0 with errno-style *err. */
static pid_t fork_exec(struct kcld_child *c, int in[2], int out[2],
                       int err[2], int *errp)
{
  int rep[2] = {-1, -1}, child_fds[3], e = 0;
  char path[4096];
  sigset_t all, old;
  pid_t parent = getpid(), pid;
  ssize_t n;

  resolve(c->argv[0], path, sizeof(path));
  if (pipe2(rep, O_CLOEXEC) != 0) {
    *errp = errno;
    return 0;
  }
  child_fds[0] = in[0];
  child_fds[1] = out[1];
  child_fds[2] = err[1];
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pid = fork();
  if (pid == 0)
    exec_child(path, c->argv, c->envp, child_fds, rep[1], parent);
  e = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  close(rep[1]);
  if (pid < 0) {
    close(rep[0]);
    *errp = e;
    return 0;
  }
  /* EOF: exec succeeded (the pipe closed on exec); an int: it failed. */
  do
    n = read(rep[0], &e, sizeof(e));
  while (n < 0 && errno == EINTR);
  close(rep[0]);
  if (n == (ssize_t)sizeof(e)) {
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
      ;
    *errp = e;
    return 0;
  }
  return pid;
}

static int open_pipes(int in[2], int out[2], int err[2])
{
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 ||
      pipe2(err, O_CLOEXEC) != 0)
    return -1;
  return 0;
}

static int spawn(struct kcld_child *c)
{
  int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1}, e = 0;
  struct proc *p;
  pid_t pid;

  c->spawn_error[0] = '\0';
  if (c->closing || c->cur)
    return KCLD_EINVAL;
  p = calloc(1, sizeof(*p));
  if (!p)
    return KCLD_ENOMEM;
  p->c = c;
  p->in_fd = p->in_rd = -1;
  p->wq_tail = &p->wq;
  p->lo.max = c->max_line;
  p->le.max = KCLD_CHILD_LOG_LINE_MAX;
  c->procs++;
  /* Watch SIGCHLD before the child can exit. */
  uv_signal_init(c->loop, &p->sigchld);
  p->sigchld.data = p;
  p->handles = 1;
  uv_signal_start(&p->sigchld, on_sigchld, SIGCHLD);
  if (open_pipes(in, out, err) != 0) {
    e = errno;
    pid = 0;
  } else {
    pid = fork_exec(c, in, out, err, &e);
  }
  if (pid == 0) {
    int fds[] = {in[0], in[1], out[0], out[1], err[0], err[1]};
    close_fds(fds, 6);
    snprintf(c->spawn_error, sizeof(c->spawn_error), "%s", strerror(e));
    p->ended = 1;
    close_handle((uv_handle_t *)&p->sigchld);
    return KCLD_EIO;
  }
  close(out[1]);
  close(err[1]);
  p->in_rd = in[0];
  p->pid = pid;
  snprintf(p->pid_text, sizeof(p->pid_text), "%d", (int)pid);
  p->in_fd = in[1];
  fcntl(p->in_fd, F_SETFL, fcntl(p->in_fd, F_GETFL) | O_NONBLOCK);
  uv_poll_init(c->loop, &p->in_poll, p->in_fd);
  uv_pipe_init(c->loop, &p->out, 0);
  uv_pipe_init(c->loop, &p->err, 0);
  p->in_poll.data = p->out.data = p->err.data = p;
  p->in_poll_open = 1;
  p->handles += 3;
  uv_pipe_open(&p->out, out[0]);
  uv_pipe_open(&p->err, err[0]);
  uv_read_start((uv_stream_t *)&p->out, on_alloc, on_read);
  uv_read_start((uv_stream_t *)&p->err, on_alloc, on_read);
  p->next = s_live;
  if (s_live)
    s_live->prev = p;
  s_live = p;
  p->listed = 1;
  c->cur = p;
  return 0;
}

/* ======== Timer ======== */

/* The next restart delay: base doubling to max, no jitter (a child's
 * restarts are its own, nothing to spread out). */
static uint64_t next_backoff(struct kcld_child *c)
{
  if (c->backoff_step < 64)
    c->backoff_step++;
  return kcld_backoff_delay_ms(&c->backoff, c->backoff_step, 0);
}

static void on_timer(uv_timer_t *t)
{
  struct kcld_child *c = t->data;
  struct proc *p = c->cur;
  enum timer_kind kind = c->timer_kind;
  struct kcld_child_exit e;

  c->timer_kind = T_NONE;
  switch (kind) {
  case T_TERM:
    if (p && !p->exited) {
      kcld_log(KCLD_LOG_WARN, c->msgs->term, c->tag_key, c->tag, "pid",
               p->pid_text, NULL);
      signal_group(p, SIGTERM);
      timer_set(c, T_KILL, KCLD_CHILD_KILL_GRACE_MS);
    }
    break;
  case T_KILL:
    if (p && !p->exited) {
      kcld_log(KCLD_LOG_WARN, c->msgs->kill, c->tag_key, c->tag, "pid",
               p->pid_text, NULL);
      signal_group(p, SIGKILL);
    }
    break;
  case T_DRAIN:
    if (p && !p->out_eof) {
      uv_read_stop((uv_stream_t *)&p->out);
      p->out_eof = 1;
      maybe_end(p);
    }
    break;
  case T_RESPAWN:
    if (c->closing || c->cur)
      break;
    if (spawn(c) == 0) {
      if (c->cbs.started)
        c->cbs.started(c->arg);
      break;
    }
    memset(&e, 0, sizeof(e));
    e.spawn_err = KCLD_EIO;
    e.reason = c->spawn_error;
    if (c->cbs.exited)
      c->cbs.exited(c->arg, &e);
    break;
  case T_NONE:
    break;
  }
}

static void timer_set(struct kcld_child *c, enum timer_kind kind,
                      uint64_t ms)
{
  if (c->timer_closing)
    return;
  c->timer_kind = kind;
  uv_timer_start(&c->timer, on_timer, ms, 0);
}

/* ======== The interface ======== */

static char **copy_list(const char *const *v)
{
  size_t n = 0;
  char **out;
  while (v && v[n])
    n++;
  out = calloc(n + 1, sizeof(*out));
  for (size_t i = 0; out && i < n; i++)
    if (!(out[i] = strdup(v[i]))) {
      for (size_t k = 0; k < i; k++)
        free(out[k]);
      free(out);
      return NULL;
    }
  return out;
}

/* 1 when the environment entry `e` sets a name that one of `add` sets. */
static int overridden(const char *e, const char *const *add)
{
  const char *eq = strchr(e, '=');
  size_t n = eq ? (size_t)(eq - e) : strlen(e);
  for (size_t i = 0; add && add[i]; i++)
    if (strncmp(add[i], e, n) == 0 && add[i][n] == '=')
      return 1;
  return 0;
}

static char **make_env(const char *const *add)
{
  size_t n = 0, m = 0, k = 0;
  char **env;
  while (environ && environ[n])
    n++;
  while (add && add[m])
    m++;
  env = calloc(n + m + 1, sizeof(*env));
  if (!env)
    return NULL;
  for (size_t i = 0; i < n + m; i++) {
    const char *s = i < n ? environ[i] : add[i - n];
    if (i < n && overridden(s, add))
      continue;
    if (!(env[k++] = strdup(s))) {
      for (size_t j = 0; j + 1 < k; j++)
        free(env[j]);
      free(env);
      return NULL;
    }
  }
  return env;
}

int kcld_child_new(const struct kcld_child_opts *o, struct kcld_child **out)
{
  struct kcld_child *c;

  *out = NULL;
  if (!o->loop || !o->argv || !o->argv[0] || !o->msgs)
    return KCLD_EINVAL;
  c = calloc(1, sizeof(*c));
  if (!c)
    return KCLD_ENOMEM;
  c->loop = o->loop;
  c->argv = copy_list(o->argv);
  c->envp = make_env(o->env_add);
  c->tag_key = o->tag_key ? o->tag_key : "child";
  c->tag = strdup(o->tag ? o->tag : "");
  if (!c->argv || !c->envp || !c->tag) {
    slot_free(c);
    return KCLD_ENOMEM;
  }
  c->msgs = o->msgs;
  c->max_line = o->max_line ? o->max_line : KCLD_CHILD_MAX_LINE;
  c->backoff.base_ms = o->backoff_base_ms ? o->backoff_base_ms : 1;
  c->backoff.max_ms = o->backoff_max_ms > c->backoff.base_ms
                        ? o->backoff_max_ms : c->backoff.base_ms;
  c->backoff.jitter = KCLD_BACKOFF_NONE;
  c->cbs = o->cbs;
  c->arg = o->arg;
  uv_timer_init(c->loop, &c->timer);
  c->timer.data = c;
  *out = c;
  return 0;
}

int kcld_child_spawn(struct kcld_child *c)
{
  return spawn(c);
}

const char *kcld_child_spawn_error(const struct kcld_child *c)
{
  return c->spawn_error;
}

void kcld_child_respawn(struct kcld_child *c)
{
  if (c->closing || c->cur || c->timer_kind == T_RESPAWN)
    return;
  timer_set(c, T_RESPAWN, next_backoff(c));
}

void kcld_child_backoff_reset(struct kcld_child *c)
{
  c->backoff_step = 0;
}

int kcld_child_running(const struct kcld_child *c)
{
  return c->cur != NULL;
}

const char *kcld_child_pid(const struct kcld_child *c)
{
  return c->cur ? c->cur->pid_text : "";
}

int kcld_child_write(struct kcld_child *c, char *data, size_t len,
                     uint64_t *end)
{
  struct proc *p = c->cur;
  struct wbuf *b;

  if (!p || p->exited || p->in_fd < 0 || p->in_closing) {
    free(data);
    return KCLD_EIO;
  }
  b = calloc(1, sizeof(*b));
  if (!b) {
    free(data);
    return KCLD_ENOMEM;
  }
  b->data = data;
  b->len = len;
  *p->wq_tail = b;
  p->wq_tail = &b->next;
  p->queued += len;
  if (end)
    *end = p->queued;
  flush(p);
  return 0;
}

uint64_t kcld_child_consumed(const struct kcld_child *c)
{
  const struct proc *p = c->cur;
  if (!p)
    return 0;
  if (p->measured)
    return p->consumed;
  return p->written - unread(p);
}

void kcld_child_stop(struct kcld_child *c, uint64_t grace_ms)
{
  struct proc *p = c->cur;
  if (!p || p->exited)
    return;
  p->in_closing = 1;
  if (!p->wq)
    close_stdin(p);
  if (c->timer_kind != T_TERM && c->timer_kind != T_KILL)
    timer_set(c, T_TERM, grace_ms);
}

void kcld_child_kill(struct kcld_child *c)
{
  struct proc *p = c->cur;
  if (!p)
    return;
  p->muted = 1;
  signal_group(p, SIGKILL);
}

void kcld_child_close(struct kcld_child *c)
{
  struct proc *p = c->cur;
  if (c->closing)
    return;
  c->closing = 1;
  if (c->timer_kind == T_RESPAWN) {
    uv_timer_stop(&c->timer);
    c->timer_kind = T_NONE;
  }
  if (p && !p->exited && c->timer_kind != T_TERM &&
      c->timer_kind != T_KILL && !p->killed) {
    p->muted = 1;
    signal_group(p, SIGKILL);
  }
  slot_maybe_free(c);
}

void kcld_child_kill_all(void)
{
  for (struct proc *p = s_live; p; p = p->next) {
    p->muted = 1;
    signal_group(p, SIGKILL);
  }
}
