/* multilang.c — the KCL MultiLangDaemon protocol (see multilang.h).
 *
 * One struct child per shard.  Its life, all on the loop thread:
 *
 *   spawn ─ initialize ─► STARTING ─status─► IDLE ◄─status─ BUSY
 *                                              │ batch ──────►│
 *                                              │ shard stopped
 *                                              ▼
 *                           FINAL (leaseLost/shardEnded/shutdownRequested)
 *                                              │ status (or a bound)
 *                                              ▼
 *                           EXITING: stdin closed, wait, SIGTERM, SIGKILL
 *
 * A child that exits (or is killed after a timeout) fails the batch in
 * flight and the queued ones, and unless its shard stopped is spawned again
 * after a backoff, initialized at the shard's last known checkpoint.  The
 * struct lives until the process is reaped, every handle is closed and no
 * checkpoint answer is owed to it. */
#include "handlers/multilang.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/backoff.h"
#include "base/base64.h"
#include "base/seq.h"
#include "err.h"
#include "log.h"

extern char **environ;

#define READ_CHUNK 65536
#define FINAL_WAIT_MS 30000   /* for the status of a final message */
#define EXIT_WAIT_MS 5000     /* stdin closed -> SIGTERM */
#define KILL_WAIT_MS 2000     /* SIGTERM -> SIGKILL */
#define DRAIN_MS 500          /* exit -> stdout forced closed */

/* ======== Protocol messages ======== */

static char *dump_line(json_t *o)
{
  char *s = o ? json_dumps(o, JSON_COMPACT) : NULL, *line = NULL;
  json_decref(o);
  if (!s)
    return NULL;
  if (asprintf(&line, "%s\n", s) < 0)
    line = NULL;
  free(s);
  return line;
}

char *kcld_multilang_msg_initialize(const char *shard_id,
                                    const char *sequence, uint64_t sub)
{
  json_t *o = json_object();
  json_object_set_new(o, "action", json_string("initialize"));
  json_object_set_new(o, "shardId", json_string(shard_id));
  json_object_set_new(o, "sequenceNumber",
                      sequence ? json_string(sequence) : json_null());
  json_object_set_new(o, "subSequenceNumber",
                      sequence ? json_integer((json_int_t)sub) : json_null());
  return dump_line(o);
}

static json_t *record_json(const struct kcld_record *r)
{
  json_t *o = json_object();
  size_t n;
  char *b64 = kcld_base64_encode_new(r->data, r->data_len, &n);
  if (!o || !b64) {
    free(b64);
    json_decref(o);
    return NULL;
  }
  json_object_set_new(o, "action", json_string("record"));
  json_object_set_new(o, "data", json_stringn(b64, n));
  json_object_set_new(o, "partitionKey",
                      json_stringn(r->partition_key, r->partition_key_len));
  json_object_set_new(o, "sequenceNumber", json_string(r->sequence_number));
  json_object_set_new(o, "subSequenceNumber",
                      json_integer((json_int_t)r->sub_sequence_number));
  json_object_set_new(o, "approximateArrivalTimestamp",
                      r->arrival_ms == KCLD_RECORD_NO_ARRIVAL
                        ? json_null()
                        : json_integer((json_int_t)r->arrival_ms));
  free(b64);
  return o;
}

char *kcld_multilang_msg_records(const struct kcld_handler_batch *b)
{
  json_t *o = json_object(), *recs = json_array();
  if (!o || !recs) {
    json_decref(o);
    json_decref(recs);
    return NULL;
  }
  for (size_t i = 0; i < b->count; i++) {
    json_t *r = record_json(b->records[i]);
    if (!r || json_array_append_new(recs, r) != 0) {
      json_decref(recs);
      json_decref(o);
      return NULL;
    }
  }
  json_object_set_new(o, "action", json_string("processRecords"));
  json_object_set_new(o, "millisBehindLatest",
                      b->millis_behind_latest < 0
                        ? json_null()
                        : json_integer((json_int_t)b->millis_behind_latest));
  json_object_set_new(o, "records", recs);
  return dump_line(o);
}

char *kcld_multilang_msg_checkpoint(const char *sequence, uint64_t sub,
                                    const char *error)
{
  json_t *o = json_object();
  json_object_set_new(o, "action", json_string("checkpoint"));
  json_object_set_new(o, "sequenceNumber",
                      sequence ? json_string(sequence) : json_null());
  json_object_set_new(o, "subSequenceNumber",
                      sequence ? json_integer((json_int_t)sub) : json_null());
  json_object_set_new(o, "error", error ? json_string(error) : json_null());
  return dump_line(o);
}

char *kcld_multilang_msg_action(const char *action)
{
  json_t *o = json_object();
  json_object_set_new(o, "action", json_string(action));
  return dump_line(o);
}

void kcld_multilang_parse(const char *line, size_t len,
                          struct kcld_multilang_msg *out)
{
  json_t *o = json_loadb(line, len, 0, NULL);
  const char *action;

  memset(out, 0, sizeof(*out));
  out->kind = KCLD_MULTILANG_NOT_JSON;
  if (!o || !json_is_object(o))
    goto done;
  out->kind = KCLD_MULTILANG_UNKNOWN;
  action = json_string_value(json_object_get(o, "action"));
  if (!action)
    goto done;
  snprintf(out->response_for, sizeof(out->response_for), "%s", action);
  if (strcmp(action, "status") == 0) {
    const char *rf = json_string_value(json_object_get(o, "responseFor"));
    out->kind = KCLD_MULTILANG_BAD;
    if (rf && strlen(rf) < sizeof(out->response_for)) {
      snprintf(out->response_for, sizeof(out->response_for), "%s", rf);
      out->kind = KCLD_MULTILANG_STATUS;
    }
  } else if (strcmp(action, "checkpoint") == 0) {
    json_t *seq = json_object_get(o, "sequenceNumber");
    json_t *sub = json_object_get(o, "subSequenceNumber");
    if (!seq)
      seq = json_object_get(o, "checkpoint"); /* older clients */
    out->kind = KCLD_MULTILANG_BAD;
    if (seq && json_is_string(seq)) {
      if (json_string_length(seq) >= sizeof(out->sequence))
        goto done;
      snprintf(out->sequence, sizeof(out->sequence), "%s",
               json_string_value(seq));
      out->has_sequence = 1;
    } else if (seq && !json_is_null(seq)) {
      goto done;
    }
    if (sub && json_is_integer(sub) && json_integer_value(sub) >= 0)
      out->sub = (uint64_t)json_integer_value(sub);
    else if (sub && !json_is_null(sub))
      goto done;
    out->kind = KCLD_MULTILANG_CHECKPOINT;
  }
done:
  json_decref(o);
}

/* ======== Lines ======== */

static int lines_put(struct kcld_multilang_lines *l, const char *s, size_t n)
{
  if (n == 0) /* an empty line on a fresh buffer: nothing to copy to NULL */
    return 0;
  if (l->len + n > l->cap) {
    size_t cap = l->cap ? l->cap : 1024;
    while (cap < l->len + n)
      cap *= 2;
    char *nb = realloc(l->buf, cap);
    if (!nb)
      return KCLD_ENOMEM;
    l->buf = nb;
    l->cap = cap;
  }
  memcpy(l->buf + l->len, s, n);
  l->len += n;
  return 0;
}

int kcld_multilang_lines_feed(struct kcld_multilang_lines *l, const char *data,
                              size_t n, kcld_multilang_line_cb cb, void *arg)
{
  size_t max = l->max ? l->max : KCLD_MULTILANG_MAX_LINE;
  while (n > 0) {
    const char *nl = memchr(data, '\n', n);
    size_t take = nl ? (size_t)(nl - data) : n;
    if (l->skipping) {
      if (nl)
        l->skipping = 0;
    } else if (l->len + take > max) {
      size_t room = max - l->len;
      if (lines_put(l, data, room) != 0)
        return KCLD_ENOMEM;
      cb(arg, l->buf, l->len, 1);
      l->len = 0;
      l->skipping = nl == NULL;
    } else {
      if (lines_put(l, data, take) != 0)
        return KCLD_ENOMEM;
      if (nl) {
        size_t len = l->len;
        if (len > 0 && l->buf[len - 1] == '\r')
          len--;
        l->len = 0;
        cb(arg, l->buf ? l->buf : "", len, 0);
      }
    }
    if (!nl)
      break;
    n -= take + 1;
    data += take + 1;
  }
  return 0;
}

void kcld_multilang_lines_free(struct kcld_multilang_lines *l)
{
  free(l->buf);
  l->buf = NULL;
  l->len = l->cap = 0;
  l->skipping = 0;
}

/* ======== The handler ======== */

enum cstate {
  C_DEAD = 0,   /* no process (restart may be armed) */
  C_STARTING,   /* initialize sent */
  C_IDLE,
  C_BUSY,       /* processRecords sent */
  C_FINAL,      /* leaseLost/shardEnded/shutdownRequested sent */
  C_EXITING     /* stdin closed, waiting for the exit */
};

struct pending {
  struct pending *next;
  struct kcld_handler_batch b;
  kcld_handler_done_cb done;
  void *arg;
};

struct ml;

struct child {
  struct child *next;
  struct ml *h;                 /* NULL once the handler is destroyed */
  char *shard_id;
  uv_process_t proc;
  uv_pipe_t in, out, err;
  uv_timer_t timer;
  int nhandles;                 /* initialized, not yet closed back */
  int running;                  /* spawned, exit not yet seen */
  int in_open, out_open, err_open, proc_open;
  int spawned;                  /* a spawn whose death is not handled */
  int stopping;                 /* the shard stopped: no more batches */
  enum kcld_shard_stop why;
  int final_sent;
  int finished;                 /* never spawn again */
  int term_sent;
  int timed_out;
  int spawn_failed;
  enum cstate st;
  int64_t exit_status;
  int term_signal;
  struct kcld_multilang_lines lo, le;
  struct pending *q, **qtail;
  struct pending *cur;
  struct kcld_seq_pos start;    /* where a (re)started child begins */
  struct kcld_seq_pos child_ckpt; /* the child's last checkpoint */
  struct kcld_seq_pos delivered; /* end of the last batch sent */
  struct kcld_seq_pos acked;    /* end of the last batch answered */
  unsigned restarts;
  uint64_t gen;                 /* spawn count; stale answers are dropped */
  unsigned ck_pending;          /* checkpoint answers owed to us */
  char errmsg[256];             /* detail of the last FAILED result */
};

struct ml {
  struct kcld_handler base;
  struct kcld_handler_env env;
  char **argv;                  /* borrowed from the config */
  uint64_t timeout_ms;
  struct kcld_backoff restart;  /* restart delays, without jitter */
  struct child *children;
};

static void maybe_free(struct child *c);
static void pump(struct child *c);
static int spawn_child(struct child *c);

static void on_handle_closed(uv_handle_t *hd)
{
  struct child *c = hd->data;
  c->nhandles--;
  maybe_free(c);
}

static void close_handle(struct child *c, uv_handle_t *hd, int *open)
{
  (void)c; /* hd->data is c */
  if (!*open)
    return;
  *open = 0;
  uv_close(hd, on_handle_closed);
}

static void unlink_child(struct child *c)
{
  if (!c->h)
    return;
  for (struct child **p = &c->h->children; *p; p = &(*p)->next)
    if (*p == c) {
      *p = c->next;
      break;
    }
  c->h = NULL;
}

static void maybe_free(struct child *c)
{
  if (!c->finished || c->running || c->spawned)
    return;
  if (!uv_is_closing((uv_handle_t *)&c->timer)) {
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    return;
  }
  if (c->nhandles > 0 || c->ck_pending > 0)
    return;
  unlink_child(c);
  kcld_multilang_lines_free(&c->lo);
  kcld_multilang_lines_free(&c->le);
  free(c->shard_id);
  free(c);
}

/* ---- writing ---- */

struct wreq {
  uv_write_t req;
  char *line;
};

static void on_written(uv_write_t *req, int status)
{
  struct wreq *w = req->data;
  (void)status; /* a dead child is handled by its exit */
  free(w->line);
  free(w);
}

/* Sends a line (taken); 0 or a KCLD_E* code. */
static int send_line(struct child *c, char *line)
{
  struct wreq *w;
  uv_buf_t b;
  if (!line)
    return KCLD_ENOMEM;
  if (!c->in_open || !c->running) {
    free(line);
    return KCLD_EIO;
  }
  w = malloc(sizeof(*w));
  if (!w) {
    free(line);
    return KCLD_ENOMEM;
  }
  w->line = line;
  w->req.data = w;
  b = uv_buf_init(line, (unsigned)strlen(line));
  if (uv_write(&w->req, (uv_stream_t *)&c->in, &b, 1, on_written) != 0) {
    free(line);
    free(w);
    return KCLD_EIO;
  }
  return 0;
}

/* ---- results ---- */

static void answer(struct pending *p, enum kcld_handler_status st,
                   const char *type, const char *msg)
{
  struct kcld_handler_result res = {.status = st};
  if (st != KCLD_HANDLER_OK) {
    res.error_type = type;
    res.error_message = msg;
  }
  p->done(&res, p->arg);
  free(p);
}

/* Fails the batch in flight and the queued ones.  The queue is taken first:
 * a done callback may hand us a new batch. */
static void fail_all(struct child *c, const char *type)
{
  struct pending *p = c->q, *next;
  c->q = NULL;
  c->qtail = &c->q;
  if (c->cur) {
    struct pending *cur = c->cur;
    c->cur = NULL;
    answer(cur, KCLD_HANDLER_FAILED, type, c->errmsg);
  }
  for (; p; p = next) {
    next = p->next;
    answer(p, KCLD_HANDLER_FAILED, type, c->errmsg);
  }
}

/* ---- timers ---- */

static void on_restart_timer(uv_timer_t *t)
{
  struct child *c = t->data;
  if (c->finished || c->running || c->spawned)
    return;
  if (c->nhandles > 1) { /* the last spawn's handles are still closing */
    uv_timer_start(&c->timer, on_restart_timer, 10, 0);
    return;
  }
  spawn_child(c);
}

static void on_kill_timer(uv_timer_t *t)
{
  struct child *c = t->data;
  if (c->running) {
    kcld_log(KCLD_LOG_WARN, "record processor did not exit; killing it",
             "shard", c->shard_id, NULL);
    uv_process_kill(&c->proc, SIGKILL);
  }
}

static void on_exit_wait_timer(uv_timer_t *t)
{
  struct child *c = t->data;
  if (!c->running)
    return;
  kcld_log(KCLD_LOG_WARN, "record processor did not exit after its stdin "
           "closed; sending SIGTERM", "shard", c->shard_id, NULL);
  c->term_sent = 1;
  uv_process_kill(&c->proc, SIGTERM);
  uv_timer_start(&c->timer, on_kill_timer, KILL_WAIT_MS, 0);
}

/* Closes stdin and waits (bounded) for the child to exit. */
static void begin_exit(struct child *c)
{
  c->st = C_EXITING;
  close_handle(c, (uv_handle_t *)&c->in, &c->in_open);
  if (c->running)
    uv_timer_start(&c->timer, on_exit_wait_timer, EXIT_WAIT_MS, 0);
}

static void on_message_timeout(uv_timer_t *t)
{
  struct child *c = t->data;
  if (!c->running)
    return;
  if (c->st == C_FINAL) {
    kcld_log(KCLD_LOG_WARN, "record processor did not answer its final "
             "message in time", "shard", c->shard_id, NULL);
    begin_exit(c);
    return;
  }
  kcld_log(KCLD_LOG_WARN, "record processor timed out (handler.timeout); "
           "killing it", "shard", c->shard_id, "state",
           c->st == C_STARTING ? "initialize" : "processRecords", NULL);
  c->timed_out = 1;
  uv_process_kill(&c->proc, SIGKILL);
}

static void on_dead(struct child *c);

/* The child exited but its stdout stays open (a grandchild holds it). */
static void on_drain_timer(uv_timer_t *t)
{
  struct child *c = t->data;
  close_handle(c, (uv_handle_t *)&c->out, &c->out_open);
  close_handle(c, (uv_handle_t *)&c->err, &c->err_open);
  on_dead(c);
}

/* ---- death ---- */

/* The process exited and its stdout is closed: fail what it owed, then
 * restart it or let it go. */
static void on_dead(struct child *c)
{
  uint64_t delay;
  if (!c->spawned || c->running || c->out_open)
    return;
  c->spawned = 0;
  close_handle(c, (uv_handle_t *)&c->in, &c->in_open);
  close_handle(c, (uv_handle_t *)&c->err, &c->err_open);
  close_handle(c, (uv_handle_t *)&c->proc, &c->proc_open);
  uv_timer_stop(&c->timer);
  if (c->spawn_failed)
    ; /* errmsg says why already */
  else if (c->timed_out)
    snprintf(c->errmsg, sizeof(c->errmsg),
             "record processor for %s timed out and was killed", c->shard_id);
  else if (c->term_signal)
    snprintf(c->errmsg, sizeof(c->errmsg),
             "record processor for %s was killed by signal %d", c->shard_id,
             c->term_signal);
  else
    snprintf(c->errmsg, sizeof(c->errmsg),
             "record processor for %s exited with status %lld", c->shard_id,
             (long long)c->exit_status);
  if (c->st != C_EXITING || c->cur || c->q)
    kcld_log(c->stopping ? KCLD_LOG_INFO : KCLD_LOG_WARN,
             "record processor ended", "shard", c->shard_id, "detail",
             c->errmsg, NULL);
  c->st = C_DEAD;
  fail_all(c, c->timed_out      ? "HandlerTimeout"
              : c->spawn_failed ? "HandlerSpawnFailed"
                                : "HandlerCrashed");
  c->timed_out = 0;
  if (c->stopping || !c->h) {
    c->finished = 1;
    maybe_free(c);
    return;
  }
  /* Restart from the last checkpoint, with backoff. */
  delay = kcld_backoff_delay_ms(&c->h->restart, ++c->restarts, 0);
  uv_timer_start(&c->timer, on_restart_timer, delay, 0);
}

static void on_child_exit(uv_process_t *p, int64_t status, int sig)
{
  struct child *c = p->data;
  c->running = 0;
  c->exit_status = status;
  c->term_signal = sig;
  uv_timer_stop(&c->timer);
  if (c->out_open)
    uv_timer_start(&c->timer, on_drain_timer, DRAIN_MS, 0);
  on_dead(c);
}

/* ---- reading ---- */

static void on_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *buf)
{
  (void)hd;
  (void)suggested;
  buf->base = malloc(READ_CHUNK);
  buf->len = buf->base ? READ_CHUNK : 0;
}

static void reply_checkpoint(struct child *c, const char *seq, uint64_t sub,
                             const char *error)
{
  if (send_line(c, kcld_multilang_msg_checkpoint(seq, sub, error)) != 0)
    kcld_log(KCLD_LOG_WARN, "cannot answer the record processor's "
             "checkpoint", "shard", c->shard_id, NULL);
}

struct ckreq {
  struct child *c;
  uint64_t gen;
  struct kcld_seq_pos at;
};

static const char *checkpoint_error(int err)
{
  switch (err) {
  case 0:
    return NULL;
  case KCLD_ELOST:
  case KCLD_ECANCELED:
    return "ShutdownException";
  case KCLD_EINVAL:
    return "IllegalArgumentException";
  case KCLD_ETIMEDOUT:
  case KCLD_ETRANSPORT:
  case KCLD_EAWS:
    return "ThrottlingException";
  default:
    return "InvalidStateException";
  }
}

static void on_checkpointed(int err, void *arg)
{
  struct ckreq *r = arg;
  struct child *c = r->c;
  c->ck_pending--;
  if (err == 0) {
    if (!c->child_ckpt.set ||
        kcld_seq_pos_compare(&c->child_ckpt, r->at.seq, r->at.sub) < 0)
      c->child_ckpt = r->at;
    if (!c->start.set ||
        kcld_seq_pos_compare(&c->start, r->at.seq, r->at.sub) < 0)
      c->start = r->at;
  } else {
    kcld_log(KCLD_LOG_WARN, "checkpoint requested by the record processor "
             "failed", "shard", c->shard_id, "sequence", r->at.seq, "error",
             kcld_strerror(err), NULL);
  }
  if (r->gen == c->gen && c->running)
    reply_checkpoint(c, r->at.seq, r->at.sub, checkpoint_error(err));
  free(r);
  maybe_free(c);
}

static void on_checkpoint_request(struct child *c,
                                  const struct kcld_multilang_msg *m)
{
  struct kcld_seq_pos at = {0};
  struct ckreq *r;

  if (c->stopping && c->why == KCLD_SHARD_STOP_LOST) {
    reply_checkpoint(c, m->has_sequence ? m->sequence : NULL, m->sub,
                     "ShutdownException");
    return;
  }
  if (!m->has_sequence) {
    if (c->delivered.set)
      at = c->delivered;
    else if (c->start.set)
      at = c->start;
    else {
      reply_checkpoint(c, NULL, 0, NULL); /* nothing delivered yet */
      return;
    }
  } else {
    const struct kcld_seq_pos *hi =
      c->delivered.set ? &c->delivered : &c->start;
    if (!kcld_seq_valid(m->sequence) || !hi->set ||
        kcld_seq_pos_compare(hi, m->sequence, m->sub) < 0 ||
        (c->child_ckpt.set &&
         kcld_seq_pos_compare(&c->child_ckpt, m->sequence, m->sub) > 0)) {
      kcld_log(KCLD_LOG_WARN, "record processor asked for a checkpoint "
               "outside the records it was given", "shard", c->shard_id,
               "sequence", m->sequence, NULL);
      reply_checkpoint(c, m->sequence, m->sub, "IllegalArgumentException");
      return;
    }
    kcld_seq_pos_set(&at, m->sequence, m->sub);
  }
  if (c->stopping) {
    /* The shard end, or everything answered before a graceful stop, is
     * already written by the consumer. */
    int covered = c->why == KCLD_SHARD_STOP_ENDED ||
                  (c->acked.set &&
                   kcld_seq_pos_compare(&c->acked, at.seq, at.sub) >= 0);
    reply_checkpoint(c, at.seq, at.sub, covered ? NULL : "ShutdownException");
    return;
  }
  if (!c->h || !c->h->env.checkpoint) {
    reply_checkpoint(c, at.seq, at.sub, "InvalidStateException");
    return;
  }
  r = malloc(sizeof(*r));
  if (!r) {
    reply_checkpoint(c, at.seq, at.sub, "InvalidStateException");
    return;
  }
  r->c = c;
  r->gen = c->gen;
  r->at = at;
  c->ck_pending++;
  c->h->env.checkpoint(c->h->env.checkpoint_ctx, c->shard_id, at.seq, at.sub,
                       on_checkpointed, r);
}

static void on_status(struct child *c, const char *rf)
{
  static const char *const expected[] = {
    [C_STARTING] = "initialize", [C_BUSY] = "processRecords"};
  const char *want = NULL;
  if (c->st == C_STARTING || c->st == C_BUSY)
    want = expected[c->st];
  else if (c->st == C_FINAL)
    want = c->why == KCLD_SHARD_STOP_LOST    ? "leaseLost"
           : c->why == KCLD_SHARD_STOP_ENDED ? "shardEnded"
                                              : "shutdownRequested";
  if (!want || strcmp(rf, want) != 0) {
    kcld_log(KCLD_LOG_WARN, "record processor sent an unexpected status; "
             "skipped", "shard", c->shard_id, "responseFor", rf, "expected",
             want, NULL);
    return;
  }
  uv_timer_stop(&c->timer);
  if (c->st == C_FINAL) {
    begin_exit(c);
    return;
  }
  if (c->st == C_BUSY) {
    struct pending *p = c->cur;
    c->cur = NULL;
    c->acked = c->delivered;
    c->start = c->acked;
    c->restarts = 0;
    c->st = C_IDLE;
    if (p)
      answer(p, KCLD_HANDLER_OK, NULL, NULL);
  } else {
    c->st = C_IDLE;
  }
  pump(c);
}

static void on_out_line(void *arg, const char *line, size_t len,
                        int too_long)
{
  struct child *c = arg;
  struct kcld_multilang_msg m;
  char head[201];

  snprintf(head, sizeof(head), "%.*s", (int)(len < 200 ? len : 200), line);
  if (too_long) {
    kcld_log(KCLD_LOG_WARN, "record processor wrote a line longer than the "
             "limit on stdout; skipped", "shard", c->shard_id, "start", head,
             NULL);
    return;
  }
  kcld_multilang_parse(line, len, &m);
  switch (m.kind) {
  case KCLD_MULTILANG_STATUS:
    on_status(c, m.response_for);
    return;
  case KCLD_MULTILANG_CHECKPOINT:
    on_checkpoint_request(c, &m);
    return;
  case KCLD_MULTILANG_BAD:
    kcld_log(KCLD_LOG_WARN, "record processor sent a malformed message",
             "shard", c->shard_id, "line", head, NULL);
    if (strcmp(m.response_for, "checkpoint") == 0)
      reply_checkpoint(c, NULL, 0, "IllegalArgumentException");
    return;
  case KCLD_MULTILANG_UNKNOWN:
  case KCLD_MULTILANG_NOT_JSON:
    kcld_log(KCLD_LOG_WARN, "record processor wrote a line on stdout that "
             "is not a protocol message; skipped", "shard", c->shard_id,
             "line", head, NULL);
    return;
  }
}

static void on_err_line(void *arg, const char *line, size_t len,
                        int too_long)
{
  struct child *c = arg;
  char *s = malloc(len + 1);
  (void)too_long;
  if (s) {
    memcpy(s, line, len);
    s[len] = '\0';
  }
  kcld_log(KCLD_LOG_INFO, "record processor stderr", "shard", c->shard_id,
           "line", s ? s : "", NULL);
  free(s);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
  struct child *c = s->data;
  int is_out = s == (uv_stream_t *)&c->out;
  if (n > 0)
    kcld_multilang_lines_feed(is_out ? &c->lo : &c->le, buf->base, (size_t)n,
                              is_out ? on_out_line : on_err_line, c);
  free(buf->base);
  if (n < 0) {
    if (is_out) {
      close_handle(c, (uv_handle_t *)&c->out, &c->out_open);
      on_dead(c);
    } else {
      close_handle(c, (uv_handle_t *)&c->err, &c->err_open);
    }
  }
}

/* ---- sending ---- */

static void send_final(struct child *c)
{
  const char *a = c->why == KCLD_SHARD_STOP_LOST    ? "leaseLost"
                  : c->why == KCLD_SHARD_STOP_ENDED ? "shardEnded"
                                                     : "shutdownRequested";
  uint64_t wait = c->h && c->h->timeout_ms < FINAL_WAIT_MS ? c->h->timeout_ms
                                                           : FINAL_WAIT_MS;
  c->final_sent = 1;
  if (send_line(c, kcld_multilang_msg_action(a)) != 0) {
    begin_exit(c);
    return;
  }
  c->st = C_FINAL;
  uv_timer_start(&c->timer, on_message_timeout, wait, 0);
}

static void pump(struct child *c)
{
  struct pending *p;
  if (c->st != C_IDLE)
    return;
  if (c->stopping) {
    if (!c->final_sent)
      send_final(c);
    return;
  }
  if (!(p = c->q))
    return;
  c->q = p->next;
  if (!c->q)
    c->qtail = &c->q;
  c->cur = p;
  const struct kcld_record *last = p->b.records[p->b.count - 1];
  kcld_seq_pos_set(&c->delivered, last->sequence_number,
                   last->sub_sequence_number);
  if (send_line(c, kcld_multilang_msg_records(&p->b)) != 0) {
    /* The child is going away (its exit fails the batch) or no memory. */
    if (c->running) {
      snprintf(c->errmsg, sizeof(c->errmsg), "cannot write to the record "
               "processor for %s", c->shard_id);
      c->cur = NULL;
      answer(p, KCLD_HANDLER_FAILED, "HandlerError", c->errmsg);
    }
    return;
  }
  c->st = C_BUSY;
  uv_timer_start(&c->timer, on_message_timeout, c->h->timeout_ms, 0);
}

/* ---- spawning ---- */

static int spawn_child(struct child *c)
{
  uv_loop_t *loop = c->h->env.loop;
  uv_process_options_t o;
  uv_stdio_container_t io[3];
  char **env = NULL, *shard_var = NULL;
  size_t n = 0;
  int rc;

  while (environ[n])
    n++;
  env = calloc(n + 2, sizeof(*env));
  if (!env || asprintf(&shard_var, "KCLD_SHARD_ID=%s", c->shard_id) < 0) {
    free(env);
    return KCLD_ENOMEM;
  }
  for (size_t i = 0, j = 0; i < n; i++)
    if (strncmp(environ[i], "KCLD_SHARD_ID=", 14) != 0)
      env[j++] = environ[i];
  for (n = 0; env[n]; n++)
    ;
  env[n] = shard_var;

  uv_pipe_init(loop, &c->in, 0);
  uv_pipe_init(loop, &c->out, 0);
  uv_pipe_init(loop, &c->err, 0);
  c->in.data = c->out.data = c->err.data = c->proc.data = c;
  c->nhandles += 3;
  c->in_open = c->out_open = c->err_open = 1;
  memset(&o, 0, sizeof(o));
  io[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
  io[0].data.stream = (uv_stream_t *)&c->in;
  io[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  io[1].data.stream = (uv_stream_t *)&c->out;
  io[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  io[2].data.stream = (uv_stream_t *)&c->err;
  o.file = c->h->argv[0];
  o.args = c->h->argv;
  o.env = env;
  o.stdio = io;
  o.stdio_count = 3;
  o.exit_cb = on_child_exit;
  c->gen++;
  c->lo.len = c->le.len = 0;
  c->lo.skipping = c->le.skipping = 0;
  c->final_sent = 0;
  c->term_sent = 0;
  c->timed_out = 0;
  c->exit_status = 0;
  c->term_signal = 0;
  c->spawn_failed = 0;
  rc = uv_spawn(loop, &c->proc, &o);
  c->nhandles++;
  c->proc_open = 1;
  free(shard_var);
  free(env);
  c->spawned = 1;
  if (rc != 0) {
    kcld_log(KCLD_LOG_ERROR, "cannot start the record processor", "shard",
             c->shard_id, "command", c->h->argv[0], "error", uv_strerror(rc),
             NULL);
    c->running = 0;
    c->spawn_failed = 1;
    close_handle(c, (uv_handle_t *)&c->out, &c->out_open);
    snprintf(c->errmsg, sizeof(c->errmsg), "cannot start %s: %s",
             c->h->argv[0], uv_strerror(rc));
    on_dead(c);
    return KCLD_EIO;
  }
  c->running = 1;
  kcld_log(KCLD_LOG_INFO, "record processor started", "shard", c->shard_id,
           NULL);
  uv_read_start((uv_stream_t *)&c->out, on_alloc, on_read);
  uv_read_start((uv_stream_t *)&c->err, on_alloc, on_read);
  c->st = C_STARTING;
  if (send_line(c, kcld_multilang_msg_initialize(
                     c->shard_id, c->start.set ? c->start.seq : NULL,
                     c->start.sub)) != 0) {
    uv_process_kill(&c->proc, SIGKILL);
    return KCLD_EIO;
  }
  uv_timer_start(&c->timer, on_message_timeout, c->h->timeout_ms, 0);
  return 0;
}

static struct child *find_child(struct ml *h, const char *shard_id)
{
  for (struct child *c = h->children; c; c = c->next)
    if (!c->stopping && strcmp(c->shard_id, shard_id) == 0)
      return c;
  return NULL;
}

static struct child *new_child(struct ml *h, const char *shard_id,
                               const char *sequence, uint64_t sub)
{
  struct child *c = calloc(1, sizeof(*c));
  if (!c || !(c->shard_id = strdup(shard_id))) {
    free(c);
    return NULL;
  }
  c->h = h;
  c->qtail = &c->q;
  if (sequence && kcld_seq_valid(sequence))
    kcld_seq_pos_set(&c->start, sequence, sub);
  uv_timer_init(h->env.loop, &c->timer);
  c->timer.data = c;
  c->nhandles = 1;
  c->next = h->children;
  h->children = c;
  spawn_child(c);
  return c;
}

/* ======== Handler operations ======== */

static int process(struct kcld_handler *base,
                   const struct kcld_handler_batch *b,
                   kcld_handler_done_cb done, void *arg)
{
  struct ml *h = (struct ml *)base;
  struct child *c = find_child(h, b->shard_id);
  struct pending *p;

  if (b->count == 0)
    return KCLD_EINVAL;
  if (!c && !(c = new_child(h, b->shard_id, NULL, 0)))
    return KCLD_ENOMEM;
  p = calloc(1, sizeof(*p));
  if (!p)
    return KCLD_ENOMEM;
  p->b = *b;
  p->done = done;
  p->arg = arg;
  *c->qtail = p;
  c->qtail = &p->next;
  pump(c);
  return 0;
}

static void shard_started(struct kcld_handler *base, const char *shard_id,
                          const char *sequence, uint64_t sub)
{
  struct ml *h = (struct ml *)base;
  if (find_child(h, shard_id))
    return;
  if (!new_child(h, shard_id, sequence, sub))
    kcld_log(KCLD_LOG_ERROR, "out of memory starting a record processor",
             "shard", shard_id, NULL);
}

static void shard_stopped(struct kcld_handler *base, const char *shard_id,
                          enum kcld_shard_stop why)
{
  struct ml *h = (struct ml *)base;
  struct child *c = find_child(h, shard_id);
  if (!c)
    return;
  c->stopping = 1;
  c->why = why;
  if (!c->running && !c->spawned) {
    snprintf(c->errmsg, sizeof(c->errmsg), "shard %s stopped", shard_id);
    fail_all(c, "ShardStopped");
    c->finished = 1;
    maybe_free(c);
    return;
  }
  pump(c);
}

static void destroy(struct kcld_handler *base)
{
  struct ml *h = (struct ml *)base;
  struct child *c, *next;
  for (c = h->children; c; c = next) {
    next = c->next;
    c->h = NULL;
    c->next = NULL;
    c->stopping = 1;
    c->finished = 1;
    /* A child still finishing its final message (or idle) gets the same
     * bounded exit as after a status: stdin closed, SIGTERM, SIGKILL.  The
     * loop runs until it is reaped. */
    if (c->running && c->st != C_EXITING)
      begin_exit(c);
    /* By contract nothing is in flight; the dispatcher is gone, so
     * anything left is dropped without an answer. */
    for (struct pending *p = c->q, *pn; p; p = pn) {
      pn = p->next;
      free(p);
    }
    free(c->cur);
    c->q = c->cur = NULL;
    c->qtail = &c->q;
    maybe_free(c);
  }
  free(h);
}

static const struct kcld_handler_ops s_ops = {
  .name = "multilang",
  .process = process,
  .shard_started = shard_started,
  .shard_stopped = shard_stopped,
  .destroy = destroy,
};

int kcld_handler_multilang_new(const struct kcld_handler_env *env,
                               struct kcld_handler **out)
{
  const struct kcld_config *cfg = env->cfg;
  struct ml *h;

  if (cfg->handler.command.len == 0) {
    kcld_log(KCLD_LOG_ERROR, "multilang handler: handler.command is empty",
             NULL);
    return KCLD_ECONFIG;
  }
  h = calloc(1, sizeof(*h));
  if (!h)
    return KCLD_ENOMEM;
  h->base.ops = &s_ops;
  h->env = *env;
  h->argv = cfg->handler.command.items;
  h->timeout_ms = cfg->handler.timeout_ms > 0
                    ? (uint64_t)cfg->handler.timeout_ms : 300000;
  h->restart.base_ms = cfg->retry.backoff_base_ms > 0
                         ? (uint64_t)cfg->retry.backoff_base_ms : 100;
  h->restart.max_ms = cfg->retry.backoff_max_ms > 0
                        ? (uint64_t)cfg->retry.backoff_max_ms : 30000;
  h->restart.jitter = KCLD_BACKOFF_NONE;
  *out = &h->base;
  return 0;
}
