/* lambda.c — handler.type: lambda.
 *
 * Life of a batch: process() queues a pool job that builds the event line
 * (base64 and JSON are CPU work); its completion puts the job on the wait
 * queue on the loop; dispatch() hands queued jobs to idle children.  A busy
 * child has its job and a timer of handler.timeout.  The job is answered
 * exactly once: by the child's answer line, by the timeout, by a garbage
 * line, or by the child's death.
 *
 * Life of a child ("incarnation"): spawn -> IDLE <-> BUSY -> (exit observed
 * and stdout at EOF) -> handles closed -> WAIT (backoff timer) -> spawn.
 * A child we kill (garbage, timeout) goes the same way.  Each child has one
 * timer for whatever it waits on: the batch deadline, the grace for stdout
 * to reach EOF after exit, the restart backoff, the kill at shutdown.
 *
 * The handler frees itself in the close callback of its last uv handle, so
 * destroy() only starts the shutdown: close every child's stdin (the
 * adapter exits at EOF), SIGKILL after a grace. */
#include "handlers/lambda.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "base/backoff.h"
#include "base/base64.h"
#include "err.h"
#include "log.h"

#define BACKOFF_BASE_MS 100
#define BACKOFF_MAX_MS 30000
#define EOF_GRACE_MS 500        /* stdout EOF after the exit was seen */
#define SHUTDOWN_GRACE_MS 2000  /* exit after stdin closed at shutdown */
#define MAX_ANSWER_BYTES (16u << 20)
#define MAX_STDERR_LINE 8192
#define READ_CHUNK 65536

/* ======== The protocol ======== */

static json_t *record_json(const struct kcld_handler_batch *b,
                           const struct kcld_record *r, const char *region,
                           const char *stream_arn)
{
  json_t *k = json_object(), *ev = json_object();
  size_t n;
  char *b64 = kcld_base64_encode_new(r->data, r->data_len, &n), *id = NULL;
  int ok = k && ev && b64;

  if (ok) {
    ok = asprintf(&id, "%s:%s", b->shard_id, r->sequence_number) >= 0;
    if (!ok)
      id = NULL;
  }
  if (ok) {
    ok = json_object_set_new(k, "kinesisSchemaVersion",
                             json_string("1.0")) == 0 &&
         json_object_set_new(k, "partitionKey",
                             json_stringn(r->partition_key,
                                          r->partition_key_len)) == 0 &&
         json_object_set_new(k, "sequenceNumber",
                             json_string(r->sequence_number)) == 0 &&
         json_object_set_new(k, "data", json_stringn(b64, n)) == 0;
    if (ok && r->arrival_ms != KCLD_RECORD_NO_ARRIVAL)
      ok = json_object_set_new(k, "approximateArrivalTimestamp",
                               json_real((double)r->arrival_ms / 1000.0)) ==
           0;
  }
  if (ok) {
    ok = json_object_set(ev, "kinesis", k) == 0 &&
         json_object_set_new(ev, "eventSource",
                             json_string("aws:kinesis")) == 0 &&
         json_object_set_new(ev, "eventVersion", json_string("1.0")) == 0 &&
         json_object_set_new(ev, "eventID", json_string(id)) == 0 &&
         json_object_set_new(ev, "eventName",
                             json_string("aws:kinesis:record")) == 0 &&
         json_object_set_new(ev, "invokeIdentityArn", json_string("")) ==
           0 &&
         json_object_set_new(ev, "awsRegion", json_string(region)) == 0 &&
         json_object_set_new(ev, "eventSourceARN",
                             json_string(stream_arn)) == 0;
  }
  free(b64);
  free(id);
  json_decref(k);
  if (!ok) {
    json_decref(ev);
    return NULL;
  }
  return ev;
}

char *kcld_lambda_event_build(const struct kcld_handler_batch *b,
                              const char *region, const char *stream_arn,
                              size_t *len)
{
  json_t *root = json_object(), *recs = json_array();
  char *text = NULL, *line = NULL;
  size_t n;

  if (!root || !recs || json_object_set(root, "Records", recs) != 0)
    goto cleanup;
  for (size_t i = 0; i < b->count; i++) {
    json_t *ev = record_json(b, b->records[i], region ? region : "",
                             stream_arn ? stream_arn : "");
    if (!ev || json_array_append_new(recs, ev) != 0)
      goto cleanup;
  }
  /* 13 significant digits: epoch seconds keep exactly 3 decimals. */
  text = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(13));
  if (!text)
    goto cleanup;
  n = strlen(text);
  line = malloc(n + 2);
  if (!line)
    goto cleanup;
  memcpy(line, text, n);
  line[n] = '\n';
  line[n + 1] = '\0';
  if (len)
    *len = n + 1;

cleanup:
  free(text);
  json_decref(recs);
  json_decref(root);
  return line;
}

static void set_text(char *dst, size_t cap, const json_t *v)
{
  if (json_is_string(v)) {
    snprintf(dst, cap, "%s", json_string_value(v));
  } else if (v && !json_is_null(v)) {
    char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    snprintf(dst, cap, "%s", t ? t : "");
    free(t);
  } else {
    dst[0] = '\0';
  }
}

/* Whole-batch failure for a batchItemFailures Lambda would reject. */
static int bad_items(struct kcld_lambda_answer *out, const char *why)
{
  out->status = KCLD_HANDLER_FAILED;
  snprintf(out->error_type, sizeof(out->error_type), "%s",
           "InvalidBatchItemFailures");
  snprintf(out->error_message, sizeof(out->error_message), "%s", why);
  return 0;
}

static int parse_items(const json_t *items,
                       const struct kcld_handler_batch *b,
                       struct kcld_lambda_answer *out)
{
  size_t lowest = b->count, i;
  const char *first_seq = NULL;
  json_t *item;

  if (json_is_null(items) || (json_is_array(items) &&
                              json_array_size(items) == 0))
    return 0; /* OK */
  if (!json_is_array(items))
    return bad_items(out, "batchItemFailures is not an array");
  json_array_foreach(items, i, item) {
    const json_t *id = json_object_get(item, "itemIdentifier");
    const char *seq = json_string_value(id);
    size_t at;
    if (!json_is_object(item))
      return bad_items(out, "a batchItemFailures item is not an object");
    if (!seq || !*seq)
      return bad_items(out, "an itemIdentifier is missing, null or empty");
    for (at = 0; at < b->count; at++)
      if (strcmp(b->records[at]->sequence_number, seq) == 0)
        break;
    if (at == b->count) {
      bad_items(out, "");
      snprintf(out->error_message, sizeof(out->error_message),
               "itemIdentifier %.*s is not a sequence number of the batch",
               200, seq);
      return 0;
    }
    if (at < lowest) {
      lowest = at;
      first_seq = seq;
    }
  }
  out->status = KCLD_HANDLER_PARTIAL;
  out->first_failed = lowest;
  snprintf(out->error_type, sizeof(out->error_type), "BatchItemFailures");
  snprintf(out->error_message, sizeof(out->error_message),
           "%zu item(s) reported failed; retrying from %s",
           json_array_size(items), first_seq);
  return 0;
}

int kcld_lambda_answer_parse(const char *line, size_t len,
                             const struct kcld_handler_batch *b,
                             struct kcld_lambda_answer *out)
{
  json_t *root, *msg, *type, *items;
  json_error_t jerr;
  int rc = 0;

  memset(out, 0, sizeof(*out));
  out->status = KCLD_HANDLER_OK;
  root = json_loadb(line, len, JSON_DECODE_ANY, &jerr);
  if (!root)
    return KCLD_EPARSE;
  if (json_is_null(root))
    goto cleanup;
  if (!json_is_object(root)) {
    rc = KCLD_EPARSE;
    goto cleanup;
  }
  msg = json_object_get(root, "errorMessage");
  type = json_object_get(root, "errorType");
  items = json_object_get(root, "batchItemFailures");
  if (msg || type) {
    out->status = KCLD_HANDLER_FAILED;
    set_text(out->error_type, sizeof(out->error_type), type);
    if (!out->error_type[0])
      snprintf(out->error_type, sizeof(out->error_type), "HandlerError");
    set_text(out->error_message, sizeof(out->error_message), msg);
  } else if (items) {
    rc = parse_items(items, b, out);
  }

cleanup:
  json_decref(root);
  return rc;
}

/* ======== Children ======== */

enum child_state {
  CHILD_DOWN = 0,   /* no process; nothing scheduled (shutdown) */
  CHILD_IDLE,
  CHILD_BUSY,
  CHILD_DYING,      /* exited or killed; waiting for exit/EOF/closes */
  CHILD_WAIT        /* restart backoff running */
};

enum timer_kind { T_NONE = 0, T_DEADLINE, T_EOF, T_RESTART, T_KILL };

struct job;

struct linebuf {
  char *buf;
  size_t len, cap;
};

struct lambda_handler;

struct child {
  struct lambda_handler *h;
  int index;
  enum child_state state;
  uv_process_t proc;
  uv_pipe_t in, out, err;
  uv_timer_t timer;
  enum timer_kind timer_kind;
  int handles;            /* this incarnation's open handles */
  int exited, out_eof, killed;
  int spawn_failed;       /* the last spawn failed (WAIT retries it) */
  int64_t exit_status;
  int term_signal;
  unsigned backoff_step;
  char pid[16];
  struct job *job;
  struct linebuf outl, errl;
  char rbuf[READ_CHUNK];
};

struct job {
  uv_work_t work;
  struct lambda_handler *h;
  struct kcld_handler_batch batch;
  kcld_handler_done_cb done;
  void *arg;
  char *line;
  size_t len;
  struct job *next;
};

struct wreq {
  uv_write_t req;
  char *line;
};

struct lambda_handler {
  struct kcld_handler base;
  uv_loop_t *loop;
  char **argv;
  size_t argc;
  char **envp;            /* kcld's environment + KCLD_HANDLER_TIMEOUT_MS */
  char *cmdline;          /* for messages */
  int64_t timeout_ms;
  char *region;
  char *stream_arn;
  struct child *children;
  int nchildren;
  struct job *qhead, *qtail;
  int closing;
  int open_handles;       /* every uv handle not yet closed */
  struct kcld_lambda_stats stats;
};

static void dispatch(struct lambda_handler *h);
static int spawn_child(struct child *c);
static void on_timer(uv_timer_t *t);

static void maybe_free(struct lambda_handler *h)
{
  if (!h->closing || h->open_handles > 0)
    return;
  for (int i = 0; i < h->nchildren; i++) {
    free(h->children[i].outl.buf);
    free(h->children[i].errl.buf);
  }
  for (size_t i = 0; i < h->argc; i++)
    free(h->argv[i]);
  free(h->argv);
  for (size_t i = 0; h->envp && h->envp[i]; i++)
    free(h->envp[i]);
  free(h->envp);
  free(h->cmdline);
  free(h->region);
  free(h->stream_arn);
  free(h->children);
  free(h);
}

static void on_closed(uv_handle_t *handle)
{
  struct child *c = handle->data;
  struct lambda_handler *h = c->h;

  if (handle != (uv_handle_t *)&c->timer)
    c->handles--;
  h->open_handles--;
  maybe_free(h);
}

static void close_handle(uv_handle_t *handle)
{
  if (!uv_is_closing(handle))
    uv_close(handle, on_closed);
}

static void timer_set(struct child *c, enum timer_kind kind, int64_t ms)
{
  c->timer_kind = kind;
  uv_timer_start(&c->timer, on_timer, (uint64_t)(ms > 0 ? ms : 0), 0);
}

/* Answers the child's job (if any) with `res`. */
static void answer(struct child *c, const struct kcld_handler_result *res)
{
  struct job *j = c->job;
  if (!j)
    return;
  c->job = NULL;
  if (c->timer_kind == T_DEADLINE) {
    uv_timer_stop(&c->timer);
    c->timer_kind = T_NONE;
  }
  j->done(res, j->arg);
  free(j->line);
  free(j);
}

static void fail_job(struct job *j, const char *type, const char *msg)
{
  struct kcld_handler_result res = {.status = KCLD_HANDLER_FAILED,
                                    .error_type = type,
                                    .error_message = msg};
  j->done(&res, j->arg);
  free(j->line);
  free(j);
}

/* Kills the child's process (SIGKILL); its exit finishes the incarnation. */
static void kill_child(struct child *c, const char *why)
{
  if (c->state != CHILD_IDLE && c->state != CHILD_BUSY)
    return;
  kcld_log(KCLD_LOG_WARN, "lambda handler: killing the child", "command",
           c->h->cmdline, "pid", c->pid, "reason", why, NULL);
  c->state = CHILD_DYING;
  c->killed = 1;
  if (!c->exited)
    uv_process_kill(&c->proc, SIGKILL);
}

/* A NUL-terminated copy of s[0..n) (s need not be terminated). */
static char *dupn(const char *s, size_t n)
{
  char *d = malloc(n + 1);
  if (d) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

static void log_stderr_line(struct child *c, const char *s, size_t n)
{
  char *line = dupn(s, n);
  if (!line)
    return;
  kcld_log(KCLD_LOG_INFO, "lambda handler: child stderr", "pid", c->pid,
           "line", line, NULL);
  free(line);
}

static void flush_stderr(struct child *c)
{
  if (c->errl.len)
    log_stderr_line(c, c->errl.buf, c->errl.len);
  c->errl.len = 0;
}

static int64_t backoff_ms(struct child *c)
{
  static const struct kcld_backoff restart = {BACKOFF_BASE_MS, BACKOFF_MAX_MS,
                                              KCLD_BACKOFF_NONE};
  int64_t ms = (int64_t)kcld_backoff_delay_ms(&restart, c->backoff_step + 1,
                                              0);
  if (c->backoff_step < 16)
    c->backoff_step++;
  return ms;
}

/* The process is gone and stdout drained (or given up on): fail its job,
 * close its handles and schedule the restart. */
static void finish_incarnation(struct child *c)
{
  struct lambda_handler *h = c->h;
  char why[128];

  if (c->timer_kind == T_EOF || c->timer_kind == T_KILL ||
      c->timer_kind == T_DEADLINE) {
    uv_timer_stop(&c->timer);
    c->timer_kind = T_NONE;
  }
  flush_stderr(c);
  c->outl.len = 0;
  if (c->term_signal)
    snprintf(why, sizeof(why), "the handler process was killed by signal %d",
             c->term_signal);
  else
    snprintf(why, sizeof(why), "the handler process exited with status %lld",
             (long long)c->exit_status);
  if (!c->killed && !h->closing) {
    h->stats.crashed++;
    kcld_log(KCLD_LOG_ERROR, "lambda handler: child exited", "command",
             h->cmdline, "pid", c->pid, "reason", why, NULL);
  }
  if (c->job) {
    struct kcld_handler_result res = {.status = KCLD_HANDLER_FAILED,
                                      .error_type = "HandlerCrashed",
                                      .error_message = why};
    answer(c, &res);
  }
  close_handle((uv_handle_t *)&c->proc);
  close_handle((uv_handle_t *)&c->in);
  close_handle((uv_handle_t *)&c->out);
  close_handle((uv_handle_t *)&c->err);
  if (h->closing) {
    c->state = CHILD_DOWN;
    close_handle((uv_handle_t *)&c->timer);
    return;
  }
  c->state = CHILD_WAIT;
  timer_set(c, T_RESTART, backoff_ms(c));
}

static void maybe_finish(struct child *c)
{
  if (c->exited && c->out_eof)
    finish_incarnation(c);
}

static void on_exit_cb(uv_process_t *proc, int64_t status, int term_signal)
{
  struct child *c = proc->data;
  c->exited = 1;
  c->exit_status = status;
  c->term_signal = term_signal;
  if (c->state == CHILD_IDLE || c->state == CHILD_BUSY)
    c->state = CHILD_DYING;
  if (!c->out_eof) {
    /* A grandchild may hold stdout open: do not wait for EOF forever. */
    timer_set(c, T_EOF, EOF_GRACE_MS);
    return;
  }
  finish_incarnation(c);
}

static void on_line(struct child *c, char *s, size_t n)
{
  struct lambda_handler *h = c->h;
  struct kcld_lambda_answer a;
  size_t k;

  while (n > 0 && (s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
    n--;
  for (k = 0; k < n && (s[k] == ' ' || s[k] == '\t'); k++)
    ;
  if (k == n)
    return; /* blank */
  if (c->state != CHILD_BUSY && c->state != CHILD_IDLE)
    return; /* being killed: the rest is noise */
  if (!c->job || kcld_lambda_answer_parse(s, n, &c->job->batch, &a) != 0) {
    char *text = dupn(s, n < 300 ? n : 300);
    h->stats.garbage++;
    kcld_log(KCLD_LOG_ERROR,
             c->job ? "lambda handler: the child's answer is not a protocol "
                      "answer (stdout is for answers; log to stderr)"
                    : "lambda handler: the child printed with no batch "
                      "pending (stdout is for answers; log to stderr)",
             "pid", c->pid, "line", text, NULL);
    free(text);
    if (c->job) {
      struct kcld_handler_result res = {
        .status = KCLD_HANDLER_FAILED,
        .error_type = "HandlerMalformedAnswer",
        .error_message = "the handler printed a line that is not a "
                         "protocol answer"};
      answer(c, &res);
    }
    kill_child(c, "garbage on stdout");
    return;
  }
  struct kcld_handler_result res = {
    .status = a.status,
    .first_failed = a.first_failed,
    .error_type = a.error_type[0] ? a.error_type : NULL,
    .error_message = a.error_message[0] ? a.error_message : NULL};
  c->backoff_step = 0;
  c->state = CHILD_IDLE;
  answer(c, &res);
  dispatch(h);
}

static void alloc_cb(uv_handle_t *handle, size_t hint, uv_buf_t *buf)
{
  struct child *c = handle->data;
  (void)hint;
  buf->base = c->rbuf;
  buf->len = sizeof(c->rbuf);
}

static int lb_append(struct linebuf *l, const char *s, size_t n)
{
  if (l->len + n > l->cap) {
    size_t cap = l->cap ? l->cap : 4096;
    while (cap < l->len + n)
      cap *= 2;
    char *nb = realloc(l->buf, cap);
    if (!nb)
      return -1;
    l->buf = nb;
    l->cap = cap;
  }
  memcpy(l->buf + l->len, s, n);
  l->len += n;
  return 0;
}

static void on_out(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
  struct child *c = stream->data;
  const char *p = buf->base, *end = buf->base + (nread > 0 ? nread : 0);

  if (nread < 0) {
    uv_read_stop(stream);
    c->out_eof = 1;
    if (c->exited)
      finish_incarnation(c);
    return;
  }
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t n = (size_t)((nl ? nl : end) - p);
    if (c->outl.len + n > MAX_ANSWER_BYTES || lb_append(&c->outl, p, n)) {
      c->outl.len = 0;
      c->h->stats.garbage++;
      if (c->job) {
        struct kcld_handler_result res = {
          .status = KCLD_HANDLER_FAILED,
          .error_type = "HandlerMalformedAnswer",
          .error_message = "the handler's answer line is too long"};
        answer(c, &res);
      }
      kill_child(c, "answer line too long");
      return;
    }
    if (!nl)
      break;
    on_line(c, c->outl.buf, c->outl.len);
    c->outl.len = 0;
    p = nl + 1;
    if (c->state != CHILD_IDLE && c->state != CHILD_BUSY)
      return;
  }
}

static void on_err(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
  struct child *c = stream->data;
  const char *p = buf->base, *end = buf->base + (nread > 0 ? nread : 0);

  if (nread < 0) {
    uv_read_stop(stream);
    flush_stderr(c);
    return;
  }
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t n = (size_t)((nl ? nl : end) - p);
    if (c->errl.len + n > MAX_STDERR_LINE) {
      flush_stderr(c);
      if (n > MAX_STDERR_LINE)
        n = MAX_STDERR_LINE;
      if (!nl) {
        log_stderr_line(c, p, n);
        p += n;
        continue;
      }
    }
    lb_append(&c->errl, p, n);
    if (!nl)
      break;
    flush_stderr(c);
    p = nl + 1;
  }
}

static void on_written(uv_write_t *req, int status)
{
  struct wreq *w = (struct wreq *)req;
  struct child *c = req->handle->data;

  free(w->line);
  free(w);
  if (status < 0 && status != UV_ECANCELED && c->state == CHILD_BUSY) {
    kcld_log(KCLD_LOG_WARN, "lambda handler: cannot write to the child",
             "pid", c->pid, "error", uv_strerror(status), NULL);
    kill_child(c, "stdin write failed");
  }
}

static void start_job(struct child *c, struct job *j)
{
  struct wreq *w = calloc(1, sizeof(*w));
  uv_buf_t buf;
  int rc;

  c->job = j;
  c->state = CHILD_BUSY;
  if (!w) {
    struct kcld_handler_result res = {.status = KCLD_HANDLER_FAILED,
                                      .error_type = "HandlerError",
                                      .error_message = "out of memory"};
    c->state = CHILD_IDLE;
    answer(c, &res);
    return;
  }
  w->line = j->line;
  j->line = NULL;
  buf = uv_buf_init(w->line, (unsigned)j->len);
  if (c->h->timeout_ms > 0)
    timer_set(c, T_DEADLINE, c->h->timeout_ms);
  rc = uv_write(&w->req, (uv_stream_t *)&c->in, &buf, 1, on_written);
  if (rc != 0) {
    free(w->line);
    free(w);
    kcld_log(KCLD_LOG_WARN, "lambda handler: cannot write to the child",
             "pid", c->pid, "error", uv_strerror(rc), NULL);
    kill_child(c, "stdin write failed");
  }
}

static void dispatch(struct lambda_handler *h)
{
  for (int i = 0; i < h->nchildren && h->qhead; i++) {
    struct child *c = &h->children[i];
    if (c->state != CHILD_IDLE)
      continue;
    struct job *j = h->qhead;
    h->qhead = j->next;
    if (!h->qhead)
      h->qtail = NULL;
    j->next = NULL;
    start_job(c, j);
  }
}

/* When no child can serve (every spawn failed), queued batches fail now
 * rather than wait for a command that cannot run. */
static void fail_queue_if_hopeless(struct lambda_handler *h)
{
  for (int i = 0; i < h->nchildren; i++)
    if (h->children[i].state != CHILD_WAIT || !h->children[i].spawn_failed)
      return;
  while (h->qhead) {
    struct job *j = h->qhead;
    h->qhead = j->next;
    fail_job(j, "HandlerUnavailable", "the handler command cannot be run");
  }
  h->qtail = NULL;
}

static void on_timer(uv_timer_t *t)
{
  struct child *c = t->data;
  enum timer_kind kind = c->timer_kind;

  c->timer_kind = T_NONE;
  switch (kind) {
  case T_DEADLINE:
    if (c->job) {
      struct kcld_handler_result res = {
        .status = KCLD_HANDLER_FAILED,
        .error_type = "HandlerTimeout",
        .error_message = "the batch outlived handler.timeout"};
      c->h->stats.timeouts++;
      answer(c, &res);
      kill_child(c, "handler.timeout passed");
    }
    break;
  case T_EOF:
    c->out_eof = 1;
    uv_read_stop((uv_stream_t *)&c->out);
    maybe_finish(c);
    break;
  case T_RESTART:
    if (spawn_child(c) != 0) {
      c->state = CHILD_WAIT;
      c->spawn_failed = 1;
      timer_set(c, T_RESTART, backoff_ms(c));
      fail_queue_if_hopeless(c->h);
    } else {
      dispatch(c->h);
    }
    break;
  case T_KILL:
    if (!c->exited)
      uv_process_kill(&c->proc, SIGKILL);
    break;
  case T_NONE:
    break;
  }
}

/* Starts a new incarnation of c.  Returns 0 or a uv error (logged). */
static int spawn_child(struct child *c)
{
  struct lambda_handler *h = c->h;
  uv_process_options_t opt;
  uv_stdio_container_t stdio[3];
  int rc;

  if (c->handles > 0) {
    /* The previous incarnation's handles are still closing. */
    c->state = CHILD_WAIT;
    timer_set(c, T_RESTART, 10);
    return 0;
  }
  memset(&opt, 0, sizeof(opt));
  c->exited = c->out_eof = c->killed = 0;
  c->exit_status = 0;
  c->term_signal = 0;
  c->outl.len = c->errl.len = 0;
  uv_pipe_init(h->loop, &c->in, 0);
  uv_pipe_init(h->loop, &c->out, 0);
  uv_pipe_init(h->loop, &c->err, 0);
  c->in.data = c->out.data = c->err.data = c->proc.data = c;
  c->handles += 4;          /* three pipes, and the process below */
  h->open_handles += 4;
  stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
  stdio[0].data.stream = (uv_stream_t *)&c->in;
  stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[1].data.stream = (uv_stream_t *)&c->out;
  stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[2].data.stream = (uv_stream_t *)&c->err;
  opt.file = h->argv[0];
  opt.args = h->argv;
  opt.env = h->envp;
  opt.exit_cb = on_exit_cb;
  opt.stdio = stdio;
  opt.stdio_count = 3;
  rc = uv_spawn(h->loop, &c->proc, &opt);
  if (rc != 0) {
    kcld_log(KCLD_LOG_ERROR, "lambda handler: cannot start handler.command",
             "command", h->cmdline, "error", uv_strerror(rc), NULL);
    /* uv_spawn initialised the process handle: it must be closed too. */
    close_handle((uv_handle_t *)&c->proc);
    close_handle((uv_handle_t *)&c->in);
    close_handle((uv_handle_t *)&c->out);
    close_handle((uv_handle_t *)&c->err);
    return rc;
  }
  c->spawn_failed = 0;
  snprintf(c->pid, sizeof(c->pid), "%d", c->proc.pid);
  uv_read_start((uv_stream_t *)&c->out, alloc_cb, on_out);
  uv_read_start((uv_stream_t *)&c->err, alloc_cb, on_err);
  h->stats.spawned++;
  c->state = CHILD_IDLE;
  kcld_log(KCLD_LOG_INFO, "lambda handler: child started", "command",
           h->cmdline, "pid", c->pid, NULL);
  return 0;
}

/* ======== The handler ======== */

static void built_cb(uv_work_t *w, int status)
{
  struct job *j = w->data;
  struct lambda_handler *h = j->h;

  if (status == UV_ECANCELED || !j->line) {
    fail_job(j, "HandlerError", status == UV_ECANCELED
                                  ? "the batch was cancelled"
                                  : "out of memory building the event");
    return;
  }
  if (h->qtail)
    h->qtail->next = j;
  else
    h->qhead = j;
  h->qtail = j;
  dispatch(h);
  fail_queue_if_hopeless(h);
}

static void build_cb(uv_work_t *w)
{
  struct job *j = w->data;
  j->line = kcld_lambda_event_build(&j->batch, j->h->region,
                                    j->h->stream_arn, &j->len);
}

static int process(struct kcld_handler *base,
                   const struct kcld_handler_batch *b,
                   kcld_handler_done_cb done, void *arg)
{
  struct lambda_handler *h = (struct lambda_handler *)base;
  struct job *j;

  if (h->closing)
    return KCLD_ECANCELED;
  j = calloc(1, sizeof(*j));
  if (!j)
    return KCLD_ENOMEM;
  j->h = h;
  j->batch = *b;
  j->done = done;
  j->arg = arg;
  j->work.data = j;
  if (uv_queue_work(h->loop, &j->work, build_cb, built_cb) != 0) {
    free(j);
    return KCLD_EIO;
  }
  return 0;
}

static void destroy(struct kcld_handler *base)
{
  struct lambda_handler *h = (struct lambda_handler *)base;

  h->closing = 1;
  while (h->qhead) { /* not expected: destroy comes with nothing in flight */
    struct job *j = h->qhead;
    h->qhead = j->next;
    fail_job(j, "HandlerShutdown", "the handler is shutting down");
  }
  h->qtail = NULL;
  for (int i = 0; i < h->nchildren; i++) {
    struct child *c = &h->children[i];
    switch (c->state) {
    case CHILD_IDLE:
    case CHILD_BUSY:
      /* EOF on stdin asks the adapter to exit; SIGKILL after a grace. */
      close_handle((uv_handle_t *)&c->in);
      c->state = CHILD_DYING;
      c->killed = 1;
      timer_set(c, T_KILL, SHUTDOWN_GRACE_MS);
      break;
    case CHILD_DYING:
      break; /* finish_incarnation closes the timer */
    case CHILD_WAIT:
    case CHILD_DOWN:
      uv_timer_stop(&c->timer);
      c->state = CHILD_DOWN;
      close_handle((uv_handle_t *)&c->timer);
      break;
    }
  }
  maybe_free(h);
}

static const struct kcld_handler_ops s_ops = {
  .name = "lambda",
  .process = process,
  .destroy = destroy,
};

void kcld_handler_lambda_stats(const struct kcld_handler *base,
                               struct kcld_lambda_stats *out)
{
  const struct lambda_handler *h = (const struct lambda_handler *)base;
  *out = h->stats;
}

/* A copy of the environment with KCLD_HANDLER_TIMEOUT_MS set (the adapter's
 * context.get_remaining_time_in_millis() counts down from it).  NULL when
 * out of memory. */
static char **make_env(int64_t timeout_ms)
{
  size_t n = 0, k = 0;
  char **envp;

  while (environ && environ[n])
    n++;
  envp = calloc(n + 2, sizeof(*envp));
  if (!envp)
    return NULL;
  for (size_t i = 0; i < n; i++) {
    if (strncmp(environ[i], "KCLD_HANDLER_TIMEOUT_MS=", 24) == 0)
      continue;
    if (!(envp[k++] = strdup(environ[i])))
      goto fail;
  }
  if (asprintf(&envp[k], "KCLD_HANDLER_TIMEOUT_MS=%lld",
               (long long)timeout_ms) < 0) {
    envp[k] = NULL;
    goto fail;
  }
  return envp;

fail:
  for (size_t i = 0; envp[i]; i++)
    free(envp[i]);
  free(envp);
  return NULL;
}

/* 1 when argv0 names an executable file, directly or through $PATH. */
static int runnable(const char *argv0)
{
  const char *path = getenv("PATH");
  char buf[4096];

  if (strchr(argv0, '/'))
    return access(argv0, X_OK) == 0;
  while (path && *path) {
    const char *colon = strchr(path, ':');
    size_t n = colon ? (size_t)(colon - path) : strlen(path);
    snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, n ? path : ".", argv0);
    if (access(buf, X_OK) == 0)
      return 1;
    path = colon ? colon + 1 : NULL;
  }
  return 0;
}

int kcld_handler_lambda_new(const struct kcld_handler_env *env,
                            struct kcld_handler **out)
{
  const struct kcld_config_handler_cfg *hc = &env->cfg->handler;
  struct lambda_handler *h;
  size_t cmdlen = 1;
  const char *arn = env->stream_arn ? env->stream_arn : "";

  if (hc->command.len == 0) {
    kcld_log(KCLD_LOG_ERROR, "lambda handler: handler.command is empty",
             NULL);
    return KCLD_ECONFIG;
  }
  if (!runnable(hc->command.items[0])) {
    kcld_log(KCLD_LOG_ERROR,
             "lambda handler: handler.command is not an executable file",
             "command", hc->command.items[0], "error", strerror(errno),
             NULL);
    return KCLD_ECONFIG;
  }
  h = calloc(1, sizeof(*h));
  if (!h)
    return KCLD_ENOMEM;
  h->base.ops = &s_ops;
  h->loop = env->loop;
  h->timeout_ms = hc->timeout_ms;
  if (!*arn && strncmp(env->cfg->stream, "arn:", 4) == 0)
    arn = env->cfg->stream;
  h->region = strdup(env->region ? env->region : "");
  h->stream_arn = strdup(arn);
  h->nchildren = hc->concurrency > 0 ? hc->concurrency : 1;
  h->children = calloc((size_t)h->nchildren, sizeof(*h->children));
  h->argv = calloc(hc->command.len + 1, sizeof(char *));
  for (size_t i = 0; h->argv && i < hc->command.len; i++)
    cmdlen += strlen(hc->command.items[i]) + 1;
  h->cmdline = calloc(1, cmdlen);
  h->envp = make_env(hc->timeout_ms);
  if (!h->region || !h->stream_arn || !h->children || !h->argv ||
      !h->cmdline || !h->envp) {
    h->closing = 1;
    maybe_free(h);
    return KCLD_ENOMEM;
  }
  for (size_t i = 0; i < hc->command.len; i++) {
    h->argv[i] = strdup(hc->command.items[i]);
    if (!h->argv[i]) {
      h->closing = 1;
      maybe_free(h);
      return KCLD_ENOMEM;
    }
    h->argc++;
    if (i)
      strcat(h->cmdline, " ");
    strcat(h->cmdline, h->argv[i]);
  }
  for (int i = 0; i < h->nchildren; i++) {
    struct child *c = &h->children[i];
    c->h = h;
    c->index = i;
    uv_timer_init(h->loop, &c->timer);
    c->timer.data = c;
    h->open_handles++;
  }
  for (int i = 0; i < h->nchildren; i++) {
    if (spawn_child(&h->children[i]) != 0) {
      /* Frees itself once the loop has closed the handles. */
      destroy(&h->base);
      return KCLD_ECONFIG;
    }
  }
  *out = &h->base;
  return 0;
}
