/* multilang.c — the KCL MultiLangDaemon protocol (see multilang.h).
 *
 * One record processor (struct rp) per shard, its process run by
 * handlers/child.h.  Its life, all on the loop thread:
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
 * A processor that exits (or is killed after a timeout) fails the batch in
 * flight and the queued ones, and unless its shard stopped is started
 * again after a backoff, initialized at the shard's last known checkpoint.
 * The batch in flight is the records' failure if the processor had read
 * its processRecords line (HandlerCrashed, HandlerTimeout), else an
 * infrastructure failure (HandlerUnavailable), as are the queued batches
 * it never got and every batch of a processor that cannot start.  The
 * struct lives until its process is reaped, its handles are closed and no
 * checkpoint answer is owed to it. */
#include "handlers/multilang.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/base64.h"
#include "base/seq.h"
#include "err.h"
#include "handlers/child.h"
#include "log.h"

#define FINAL_WAIT_MS 30000   /* for the status of a final message */
#define EXIT_WAIT_MS 5000     /* stdin closed -> SIGTERM */

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

/* ======== The handler ======== */

enum cstate {
  C_DEAD = 0,   /* no process (a restart may be due) */
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

/* One shard's record processor. */
struct rp {
  struct rp *next;
  struct ml *h;                 /* NULL once the handler is destroyed */
  char *shard_id;
  struct kcld_child *child;     /* NULL once closed back */
  uv_timer_t timer;             /* the answer a message waits for */
  int timer_open;
  int child_closing;
  int stopping;                 /* the shard stopped: no more batches */
  enum kcld_shard_stop why;
  int final_sent;
  int finished;                 /* never spawn again */
  int timed_out;
  enum cstate st;
  struct pending *q, **qtail;
  struct pending *cur;
  uint64_t cur_end;             /* stdin offset past cur's message */
  struct kcld_seq_pos start;    /* where a (re)started child begins */
  struct kcld_seq_pos child_ckpt; /* the child's last checkpoint */
  struct kcld_seq_pos delivered; /* end of the last batch sent */
  struct kcld_seq_pos acked;    /* end of the last batch answered */
  uint64_t gen;                 /* spawn count; stale answers are dropped */
  unsigned ck_pending;          /* checkpoint answers owed to us */
};

struct ml {
  struct kcld_handler base;
  struct kcld_handler_env env;
  const char *const *argv;      /* borrowed from the config */
  uint64_t timeout_ms;
  uint64_t backoff_base_ms, backoff_max_ms;
  struct rp *children;
  int killed;
};

static const struct kcld_child_msgs s_msgs = {
  .stderr_line = "record processor stderr",
  .term = "record processor did not exit after its stdin closed; sending "
          "SIGTERM",
  .kill = "record processor did not exit; killing it",
  .write_failed = "cannot write to the record processor; killing it",
};

static void pump(struct rp *c);
static void rp_spawn(struct rp *c);

static int running(const struct rp *c)
{
  return c->child && !c->child_closing && kcld_child_running(c->child);
}

static void unlink_rp(struct rp *c)
{
  if (!c->h)
    return;
  for (struct rp **p = &c->h->children; *p; p = &(*p)->next)
    if (*p == c) {
      *p = c->next;
      break;
    }
  c->h = NULL;
}

static void maybe_free(struct rp *c)
{
  if (!c->finished || c->child || c->timer_open || c->ck_pending > 0)
    return;
  unlink_rp(c);
  free(c->shard_id);
  free(c);
}

static void on_timer_closed(uv_handle_t *t)
{
  struct rp *c = t->data;
  c->timer_open = 0;
  maybe_free(c);
}

static void on_child_closed(void *arg)
{
  struct rp *c = arg;
  c->child = NULL;
  maybe_free(c);
}

/* Never to run again: the process (if any) goes on with the stop or kill
 * under way, and the struct is freed once everything is closed. */
static void rp_close(struct rp *c)
{
  c->finished = 1;
  if (c->timer_open && !uv_is_closing((uv_handle_t *)&c->timer)) {
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
  }
  if (c->child && !c->child_closing) {
    c->child_closing = 1;
    kcld_child_close(c->child);
  }
  maybe_free(c);
}

/* ---- writing ---- */

/* Sends a line (taken); 0 or a KCLD_E* code.  *end (may be NULL) is the
 * stdin offset past it. */
static int send_line(struct rp *c, char *line, uint64_t *end)
{
  if (!line)
    return KCLD_ENOMEM;
  if (!running(c)) {
    free(line);
    return KCLD_EIO;
  }
  return kcld_child_write(c->child, line, strlen(line), end);
}

/* ---- results ---- */

static void answer(struct pending *p, enum kcld_handler_status st,
                   enum kcld_handler_failure_class cls, const char *type,
                   const char *msg)
{
  struct kcld_handler_result res = {.status = st};
  if (st != KCLD_HANDLER_OK) {
    res.failure_class = cls;
    res.error_type = type;
    res.error_message = msg;
  }
  p->done(&res, p->arg);
  free(p);
}

/* Fails the batch in flight (with cls, type, cur_msg) and the queued ones
 * (never sent: HandlerUnavailable, or `type` with HandlerCanceled), all
 * infrastructure failures but the one in flight.  The queue is taken
 * first: a done callback may hand us a new batch. */
static void fail_all(struct rp *c, enum kcld_handler_failure_class cls,
                     const char *type, const char *cur_msg,
                     const char *queue_msg)
{
  struct pending *p = c->q, *next;
  const char *qtype = strcmp(type, "HandlerCanceled") == 0
                        ? type : "HandlerUnavailable";
  c->q = NULL;
  c->qtail = &c->q;
  if (c->cur) {
    struct pending *cur = c->cur;
    c->cur = NULL;
    answer(cur, KCLD_HANDLER_FAILED, cls, type, cur_msg);
  }
  for (; p; p = next) {
    next = p->next;
    answer(p, KCLD_HANDLER_FAILED, KCLD_HANDLER_INFRA, qtype, queue_msg);
  }
}

/* ---- timers and exits ---- */

/* Closes stdin and waits (bounded) for the child to exit. */
static void begin_exit(struct rp *c)
{
  c->st = C_EXITING;
  uv_timer_stop(&c->timer);
  if (running(c))
    kcld_child_stop(c->child, EXIT_WAIT_MS);
}

static void on_message_timeout(uv_timer_t *t)
{
  struct rp *c = t->data;
  if (!running(c))
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
  kcld_child_kill(c->child);
}

/* Why the process ended, for logs and failed batches. */
static void describe_end(const struct rp *c, const struct kcld_child_exit *e,
                         char *out, size_t n)
{
  if (e->spawn_err)
    snprintf(out, n, "cannot start %s: %s", c->h ? c->h->argv[0] : "",
             e->reason ? e->reason : "");
  else if (c->timed_out)
    snprintf(out, n, "record processor for %s timed out and was killed",
             c->shard_id);
  else if (e->term_signal)
    snprintf(out, n, "record processor for %s was killed by signal %d",
             c->shard_id, e->term_signal);
  else
    snprintf(out, n, "record processor for %s exited with status %" PRId64,
             c->shard_id, e->status);
}

/* The process ended (or could not start): fail what it owed, then start
 * it again or let it go. */
static void on_exited(void *arg, const struct kcld_child_exit *e)
{
  struct rp *c = arg;
  char why[256], unread[300], queued[300];
  int read = c->cur && !e->spawn_err && e->consumed >= c->cur_end;

  uv_timer_stop(&c->timer);
  describe_end(c, e, why, sizeof(why));
  snprintf(unread, sizeof(unread), "%s before it read the batch", why);
  snprintf(queued, sizeof(queued), "%s before the batch was sent", why);
  if (e->spawn_err)
    kcld_log(KCLD_LOG_ERROR, "cannot start the record processor", "shard",
             c->shard_id, "command", c->h ? c->h->argv[0] : "", "error",
             e->reason, NULL);
  else if (c->st != C_EXITING || c->cur || c->q)
    kcld_log(c->stopping ? KCLD_LOG_INFO : KCLD_LOG_WARN,
             "record processor ended", "shard", c->shard_id, "detail", why,
             NULL);
  c->st = C_DEAD;
  if (e->spawn_err)
    fail_all(c, KCLD_HANDLER_INFRA, "HandlerUnavailable", why, why);
  else if (read)
    fail_all(c, KCLD_HANDLER_RECORD,
             c->timed_out ? "HandlerTimeout" : "HandlerCrashed", why, queued);
  else
    fail_all(c, KCLD_HANDLER_INFRA, "HandlerUnavailable", unread, queued);
  c->timed_out = 0;
  if (c->stopping || !c->h || c->h->killed) {
    rp_close(c);
    return;
  }
  /* Again from the last checkpoint, with backoff. */
  kcld_child_respawn(c->child);
}

/* ---- reading ---- */

static void reply_checkpoint(struct rp *c, const char *seq, uint64_t sub,
                             const char *error)
{
  if (send_line(c, kcld_multilang_msg_checkpoint(seq, sub, error), NULL) !=
      0)
    kcld_log(KCLD_LOG_WARN, "cannot answer the record processor's "
             "checkpoint", "shard", c->shard_id, NULL);
}

struct ckreq {
  struct rp *c;
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
  struct rp *c = r->c;
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
  if (r->gen == c->gen && running(c))
    reply_checkpoint(c, r->at.seq, r->at.sub, checkpoint_error(err));
  free(r);
  maybe_free(c);
}

static void on_checkpoint_request(struct rp *c,
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

static void on_status(struct rp *c, const char *rf)
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
             "skipped", "shard", c->shard_id, "response_for", rf, "expected",
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
    kcld_child_backoff_reset(c->child);
    c->st = C_IDLE;
    if (p)
      answer(p, KCLD_HANDLER_OK, KCLD_HANDLER_RECORD, NULL, NULL);
  } else {
    c->st = C_IDLE;
  }
  pump(c);
}

static void on_out_line(void *arg, const char *line, size_t len,
                        int too_long)
{
  struct rp *c = arg;
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

/* ---- sending ---- */

static void send_final(struct rp *c)
{
  const char *a = c->why == KCLD_SHARD_STOP_LOST    ? "leaseLost"
                  : c->why == KCLD_SHARD_STOP_ENDED ? "shardEnded"
                                                     : "shutdownRequested";
  uint64_t wait = c->h && c->h->timeout_ms < FINAL_WAIT_MS ? c->h->timeout_ms
                                                           : FINAL_WAIT_MS;
  c->final_sent = 1;
  if (send_line(c, kcld_multilang_msg_action(a), NULL) != 0) {
    begin_exit(c);
    return;
  }
  c->st = C_FINAL;
  uv_timer_start(&c->timer, on_message_timeout, wait, 0);
}

static void pump(struct rp *c)
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
  if (send_line(c, kcld_multilang_msg_records(&p->b), &c->cur_end) != 0) {
    /* The child is going away (its exit fails the queue) or no memory. */
    c->cur = NULL;
    answer(p, KCLD_HANDLER_FAILED, KCLD_HANDLER_INFRA, "HandlerUnavailable",
           "cannot write to the record processor");
    return;
  }
  c->st = C_BUSY;
  uv_timer_start(&c->timer, on_message_timeout, c->h->timeout_ms, 0);
}

/* ---- spawning ---- */

/* A process runs: initialize it at the shard's last known position. */
static void on_started(void *arg)
{
  struct rp *c = arg;
  c->gen++;
  c->final_sent = 0;
  c->timed_out = 0;
  kcld_log(KCLD_LOG_INFO, "record processor started", "shard", c->shard_id,
           "pid", kcld_child_pid(c->child), NULL);
  c->st = C_STARTING;
  if (send_line(c, kcld_multilang_msg_initialize(
                     c->shard_id, c->start.set ? c->start.seq : NULL,
                     c->start.sub), NULL) != 0) {
    kcld_child_kill(c->child);
    return;
  }
  uv_timer_start(&c->timer, on_message_timeout, c->h->timeout_ms, 0);
}

static void rp_spawn(struct rp *c)
{
  struct kcld_child_exit e;
  if (kcld_child_spawn(c->child) == 0) {
    on_started(c);
    return;
  }
  /* As a restart that failed: the batches fail, a restart is due. */
  memset(&e, 0, sizeof(e));
  e.spawn_err = KCLD_EIO;
  e.reason = kcld_child_spawn_error(c->child);
  on_exited(c, &e);
}

static struct rp *find_rp(struct ml *h, const char *shard_id)
{
  for (struct rp *c = h->children; c; c = c->next)
    if (!c->stopping && strcmp(c->shard_id, shard_id) == 0)
      return c;
  return NULL;
}

static struct rp *new_rp(struct ml *h, const char *shard_id,
                         const char *sequence, uint64_t sub)
{
  struct rp *c = calloc(1, sizeof(*c));
  struct kcld_child_opts o;
  char *var = NULL;
  const char *env[2] = {NULL, NULL};

  if (!c || !(c->shard_id = strdup(shard_id)) ||
      asprintf(&var, "KCLD_SHARD_ID=%s", shard_id) < 0) {
    if (c)
      free(c->shard_id);
    free(c);
    return NULL;
  }
  env[0] = var;
  memset(&o, 0, sizeof(o));
  o.loop = h->env.loop;
  o.argv = h->argv;
  o.env_add = env;
  o.tag_key = "shard";
  o.tag = shard_id;
  o.msgs = &s_msgs;
  o.max_line = KCLD_MULTILANG_MAX_LINE;
  o.backoff_base_ms = h->backoff_base_ms;
  o.backoff_max_ms = h->backoff_max_ms;
  o.cbs.started = on_started;
  o.cbs.line = on_out_line;
  o.cbs.exited = on_exited;
  o.cbs.closed = on_child_closed;
  o.arg = c;
  if (kcld_child_new(&o, &c->child) != 0) {
    free(var);
    free(c->shard_id);
    free(c);
    return NULL;
  }
  free(var);
  c->h = h;
  c->qtail = &c->q;
  if (sequence && kcld_seq_valid(sequence))
    kcld_seq_pos_set(&c->start, sequence, sub);
  uv_timer_init(h->env.loop, &c->timer);
  c->timer.data = c;
  c->timer_open = 1;
  c->next = h->children;
  h->children = c;
  rp_spawn(c);
  return c;
}

/* ======== Handler operations ======== */

static int process(struct kcld_handler *base,
                   const struct kcld_handler_batch *b,
                   kcld_handler_done_cb done, void *arg)
{
  struct ml *h = (struct ml *)base;
  struct rp *c;
  struct pending *p;

  if (h->killed)
    return KCLD_ECANCELED;
  if (b->count == 0)
    return KCLD_EINVAL;
  c = find_rp(h, b->shard_id);
  if (!c && !(c = new_rp(h, b->shard_id, NULL, 0)))
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
  if (h->killed || find_rp(h, shard_id))
    return;
  if (!new_rp(h, shard_id, sequence, sub))
    kcld_log(KCLD_LOG_ERROR, "out of memory starting a record processor",
             "shard", shard_id, NULL);
}

static void shard_stopped(struct kcld_handler *base, const char *shard_id,
                          enum kcld_shard_stop why)
{
  struct ml *h = (struct ml *)base;
  struct rp *c = find_rp(h, shard_id);
  if (!c)
    return;
  c->stopping = 1;
  c->why = why;
  if (!running(c)) {
    char msg[300];
    snprintf(msg, sizeof(msg), "shard %s stopped", shard_id);
    fail_all(c, KCLD_HANDLER_INFRA, "ShardStopped", msg, msg);
    rp_close(c);
    return;
  }
  pump(c);
}

/* Every processor's group gets SIGKILL; what they owed fails now. */
static void kill_handler(struct kcld_handler *base)
{
  struct ml *h = (struct ml *)base;
  struct rp *c, *next;

  h->killed = 1;
  for (c = h->children; c; c = next) {
    next = c->next;
    c->stopping = 1;
    fail_all(c, KCLD_HANDLER_INFRA, "HandlerCanceled",
             "the handler was killed", "the handler was killed");
    if (c->child && !c->child_closing)
      kcld_child_kill(c->child);
    rp_close(c);
  }
}

static void handler_close(struct kcld_handler *base)
{
  struct ml *h = (struct ml *)base;
  struct rp *c, *next;
  for (c = h->children; c; c = next) {
    next = c->next;
    c->h = NULL;
    c->next = NULL;
    c->stopping = 1;
    /* A child still finishing its final message (or idle) gets the same
     * bounded exit as after a status: stdin closed, SIGTERM, SIGKILL.  The
     * loop runs until it is reaped. */
    if (running(c) && c->st != C_EXITING)
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
    rp_close(c);
  }
  free(h);
}

static const struct kcld_handler_ops s_ops = {
  .name = "multilang",
  .process = process,
  .shard_started = shard_started,
  .shard_stopped = shard_stopped,
  .kill = kill_handler,
  .close = handler_close,
};

int kcld_handler_multilang_new(const struct kcld_handler_env *env,
                               struct kcld_handler **out)
{
  const struct kcld_config *cfg = env->cfg;
  struct ml *h;

  char path[4096];

  if (cfg->handler.command.len == 0) {
    kcld_log(KCLD_LOG_ERROR, "multilang handler: handler.command is empty",
             NULL);
    return KCLD_ECONFIG;
  }
  /* What can be known now is a start-up error, not a shard that waits. */
  if (kcld_child_find(cfg->handler.command.items[0], path,
                      sizeof(path)) != 0) {
    kcld_log(KCLD_LOG_ERROR,
             "multilang handler: handler.command is not an executable file",
             "command", cfg->handler.command.items[0], NULL);
    return KCLD_ECONFIG;
  }
  h = calloc(1, sizeof(*h));
  if (!h)
    return KCLD_ENOMEM;
  h->base.ops = &s_ops;
  h->env = *env;
  h->argv = (const char *const *)cfg->handler.command.items;
  h->timeout_ms = (uint64_t)cfg->handler.timeout_ms;
  h->backoff_base_ms = (uint64_t)cfg->retry.backoff_base_ms;
  h->backoff_max_ms = (uint64_t)cfg->retry.backoff_max_ms;
  *out = &h->base;
  return 0;
}
