/* lambda.c — handler.type: lambda.
 *
 * Life of a batch: process() queues a pool job (handlers/job.h) that builds
 * the event line (base64 and JSON are CPU work); its completion puts the
 * job on the wait queue on the loop; dispatch() hands queued jobs to idle
 * children.  A busy slot has its job and a timer of handler.timeout.  The
 * child's answer line goes back to the pool to be parsed (an answer can be
 * large: a window's state is up to 1 MiB, parsed and written out again);
 * the slot stays busy until that parse is done, so one child's answers
 * come back in order and it gets no new batch before its last is
 * answered.  The job is answered exactly once: by its parsed answer, by
 * the timeout, by a garbage line, by the child's death, or by kill.
 *
 * Each of the handler.concurrency slots runs one child at a time through
 * handlers/child.h: IDLE <-> BUSY, and after an exit DOWN until the child
 * is started again with backoff.  What a failure says depends on whether
 * the child had read the batch (the bytes of stdin it consumed): after
 * reading it, a death, a timeout or a bad answer is the handler's verdict
 * on the records (a record failure); before, the records were never seen
 * and the failure is the infrastructure's (HandlerUnavailable).
 *
 * The handler frees itself once every slot's child and timer are closed,
 * so close() only starts the shutdown: every child's stdin is closed
 * (the adapter exits at end of file), SIGTERM and SIGKILL after graces. */
#include "handlers/lambda.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/base64.h"
#include "base/clock.h"
#include "err.h"
#include "handlers/child.h"
#include "handlers/job.h"
#include "log.h"

#define SHUTDOWN_GRACE_MS 2000  /* stdin closed -> SIGTERM, at shutdown */
#define MAX_ANSWER_BYTES (16u << 20)

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

static json_t *window_time(int64_t ms)
{
  char t[32];
  kcld_clock_iso8601(ms / 1000, t, sizeof(t));
  return json_string(t);
}

/* Lambda's tumbling-window members of the event (KinesisTimeWindowEvent):
 * window, state, shardId, eventSourceARN and the two flags. */
static int add_window(json_t *root, const struct kcld_handler_batch *b,
                      const char *stream_arn)
{
  const struct kcld_handler_window *w = b->window;
  json_t *win = json_object(), *state;
  json_error_t jerr;
  int ok;

  state = json_loadb(w->state, w->state_len, 0, &jerr);
  ok = win && state &&
       json_object_set_new(win, "start", window_time(w->start_ms)) == 0 &&
       json_object_set_new(win, "end", window_time(w->end_ms)) == 0 &&
       json_object_set(root, "window", win) == 0 &&
       json_object_set(root, "state", state) == 0 &&
       json_object_set_new(root, "shardId", json_string(b->shard_id)) == 0 &&
       json_object_set_new(root, "eventSourceARN",
                           json_string(stream_arn)) == 0 &&
       json_object_set_new(root, "isFinalInvokeForWindow",
                           json_boolean(w->final)) == 0 &&
       json_object_set_new(root, "isWindowTerminatedEarly",
                           json_boolean(w->terminated_early)) == 0;
  json_decref(win);
  json_decref(state);
  return ok ? 0 : KCLD_ENOMEM;
}

char *kcld_lambda_event_build(const struct kcld_handler_batch *b,
                              const char *region, const char *stream_arn,
                              size_t *len)
{
  json_t *root = json_object(), *recs = json_array();
  char *text = NULL, *line = NULL;
  size_t n;

  if (!root || !recs || json_object_set(root, "Records", recs) != 0)
    goto done;
  for (size_t i = 0; i < b->count; i++) {
    json_t *ev = record_json(b, b->records[i], region ? region : "",
                             stream_arn ? stream_arn : "");
    if (!ev || json_array_append_new(recs, ev) != 0)
      goto done;
  }
  if (b->window && add_window(root, b, stream_arn ? stream_arn : "") != 0)
    goto done;
  /* 13 significant digits: epoch seconds keep exactly 3 decimals. */
  text = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(13));
  if (!text)
    goto done;
  n = strlen(text);
  line = malloc(n + 2);
  if (!line)
    goto done;
  memcpy(line, text, n);
  line[n] = '\n';
  line[n + 1] = '\0';
  if (len)
    *len = n + 1;

done:
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

/* With a window, an answer that is not an error carries the new state:
 * a JSON object, kept as compact text. */
static int take_state(const json_t *root, const struct kcld_handler_batch *b,
                      struct kcld_lambda_answer *out)
{
  const json_t *state = json_object_get(root, "state");

  if (!b->window || out->status == KCLD_HANDLER_FAILED)
    return 0;
  if (!json_is_object(state)) {
    out->status = KCLD_HANDLER_FAILED;
    snprintf(out->error_type, sizeof(out->error_type), "%s",
             state ? "InvalidState" : "MissingState");
    snprintf(out->error_message, sizeof(out->error_message), "%s",
             state ? "the answer's state is not a JSON object"
                   : "with window.tumbling the answer must carry a state "
                     "(Lambda's TimeWindowEventResponse)");
    return 0;
  }
  out->state = json_dumps(state, JSON_COMPACT | JSON_REAL_PRECISION(17));
  if (!out->state)
    return KCLD_ENOMEM;
  out->state_len = strlen(out->state);
  return 0;
}

void kcld_lambda_answer_clean_up(struct kcld_lambda_answer *a)
{
  free(a->state);
  a->state = NULL;
  a->state_len = 0;
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
  if (json_is_null(root)) {
    rc = take_state(root, b, out);
    goto done;
  }
  if (!json_is_object(root)) {
    rc = KCLD_EPARSE;
    goto done;
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
  if (rc == 0)
    rc = take_state(root, b, out);

done:
  json_decref(root);
  return rc;
}

/* ======== Slots ======== */

enum slot_state {
  S_DOWN = 0,       /* no usable child: starting again, killed, closing */
  S_IDLE,
  S_BUSY
};

struct job {
  struct kcld_job base;
  struct lambda_handler *h;
  char *line;             /* the event, until written to a child */
  size_t len;
  struct job *next;       /* the wait queue */
  /* The child's answer, parsed on the pool: */
  char *answer;
  size_t answer_len;
  struct slot *slot;      /* the slot waiting for it; NULL once its child
                             is gone */
  char pid[24];           /* the child that answered, for messages */
  int parse_rc;
  struct kcld_lambda_answer a;
};

struct lambda_handler;

struct slot {
  struct lambda_handler *h;
  char tag[16];
  struct kcld_child *child;
  enum slot_state state;
  uv_timer_t deadline;
  struct job *job;        /* the batch the child is working on */
  struct job *parsing;    /* its answer, being parsed on the pool */
  uint64_t job_end;       /* stdin offset just past the job's event */
  int timer_open;         /* deadline initialized, not yet closed */
  int answered;           /* this child has answered a batch */
  int unavailable;        /* its last start failed, or it ended having
                             read nothing */
};

struct lambda_handler {
  struct kcld_handler base;
  uv_loop_t *loop;
  char *cmdline;          /* for messages */
  int64_t timeout_ms;
  char *region;
  char *stream_arn;
  struct slot *slots;
  int nslots;
  struct job *qhead, *qtail;
  struct kcld_jobs on_pool;  /* events being built, answers being parsed */
  int closing;
  int killed;
  int open;               /* slot timers and children not yet closed */
  struct kcld_lambda_stats stats;
};

static const struct kcld_child_msgs s_msgs = {
  .stderr_line = "lambda handler: child stderr",
  .term = "lambda handler: child did not exit after its stdin closed; "
          "sending SIGTERM",
  .kill = "lambda handler: child did not exit; killing it",
  .write_failed = "lambda handler: cannot write to the child",
};

static void dispatch(struct lambda_handler *h);

static void maybe_free(struct lambda_handler *h)
{
  if (!h->closing || h->open > 0)
    return;
  free(h->cmdline);
  free(h->region);
  free(h->stream_arn);
  free(h->slots);
  free(h);
}

static void on_slot_closed(void *arg)
{
  struct slot *s = arg;
  struct lambda_handler *h = s->h;
  h->open--;
  maybe_free(h);
}

static void on_timer_closed(uv_handle_t *t)
{
  on_slot_closed(t->data);
}

static void job_clean_up(struct kcld_job *base)
{
  struct job *j = (struct job *)base;
  free(j->line);
  free(j->answer);
  kcld_lambda_answer_clean_up(&j->a);
}

/* The slot's child is gone: a parse still on the pool answers its batch
 * but no longer speaks for the slot. */
static void detach_parse(struct slot *s)
{
  if (s->parsing)
    s->parsing->slot = NULL;
  s->parsing = NULL;
}

/* Answers the slot's job (if any) with `res`. */
static void answer(struct slot *s, const struct kcld_handler_result *res)
{
  struct job *j = s->job;
  if (!j)
    return;
  s->job = NULL;
  uv_timer_stop(&s->deadline);
  kcld_job_answer(&j->base, res);
}

static void answer_failed(struct slot *s, enum kcld_handler_failure_class cls,
                          const char *type, const char *msg)
{
  struct kcld_handler_result res = {.status = KCLD_HANDLER_FAILED,
                                    .failure_class = cls,
                                    .error_type = type,
                                    .error_message = msg};
  answer(s, &res);
}

/* Kills the slot's child; its exit follows (exited). */
static void kill_slot(struct slot *s, const char *why)
{
  if (s->state == S_DOWN)
    return;
  kcld_log(KCLD_LOG_WARN, "lambda handler: killing the child", "command",
           s->h->cmdline, "pid", kcld_child_pid(s->child), "reason", why,
           NULL);
  s->state = S_DOWN;
  kcld_child_kill(s->child);
}

/* When no slot can serve (every child failed to start, or ended having
 * read nothing), queued batches fail now as an infrastructure failure
 * rather than wait for a command that cannot run. */
static void fail_queue_if_hopeless(struct lambda_handler *h)
{
  for (int i = 0; i < h->nslots; i++)
    if (h->slots[i].state != S_DOWN || !h->slots[i].unavailable)
      return;
  while (h->qhead) {
    struct job *j = h->qhead;
    h->qhead = j->next;
    kcld_job_fail(&j->base, KCLD_HANDLER_INFRA, "HandlerUnavailable",
                  "the handler command cannot be run");
  }
  h->qtail = NULL;
}

static void on_deadline(uv_timer_t *t)
{
  struct slot *s = t->data;
  if (!s->job)
    return;
  s->h->stats.timeouts++;
  if (kcld_child_consumed(s->child) >= s->job_end)
    answer_failed(s, KCLD_HANDLER_RECORD, "HandlerTimeout",
                  "the batch outlived handler.timeout");
  else
    answer_failed(s, KCLD_HANDLER_INFRA, "HandlerUnavailable",
                  "the handler did not read the batch within "
                  "handler.timeout");
  kill_slot(s, "handler.timeout passed");
}

/* A line on stdout from child `pid` that is not a protocol answer: j is
 * the batch it answered (failed as malformed), NULL when none was
 * pending.  The caller kills the child. */
static void garbage(struct lambda_handler *h, const char *pid, struct job *j,
                    const char *line, size_t n)
{
  char text[301];

  snprintf(text, sizeof(text), "%.*s", (int)(n < 300 ? n : 300), line);
  h->stats.garbage++;
  kcld_log(KCLD_LOG_ERROR,
           j ? "lambda handler: the child's answer is not a protocol "
               "answer (stdout is for answers; log to stderr)"
             : "lambda handler: the child printed with no batch "
               "pending (stdout is for answers; log to stderr)",
           "pid", pid, "line", text, NULL);
  if (j)
    kcld_job_fail(&j->base, KCLD_HANDLER_RECORD, "HandlerMalformedAnswer",
                  "the handler printed a line that is not a protocol "
                  "answer");
}

static void parse_cb(struct kcld_job *base)
{
  struct job *j = (struct job *)base;
  j->parse_rc = kcld_lambda_answer_parse(j->answer, j->answer_len,
                                         &base->batch, &j->a);
}

/* Back on the loop: answers the batch, and frees the slot for the next
 * one if its child is still the one that answered. */
static void parsed_cb(struct kcld_job *base)
{
  struct job *j = (struct job *)base;
  struct lambda_handler *h = j->h;
  struct slot *s = j->slot;

  if (s)
    s->parsing = NULL;
  if (j->parse_rc == KCLD_EPARSE) {
    garbage(h, j->pid, j, j->answer, j->answer_len);
    if (s)
      kill_slot(s, "garbage on stdout");
    return;
  }
  if (s && s->state == S_BUSY) {
    kcld_child_backoff_reset(s->child);
    s->state = S_IDLE;
  }
  if (j->parse_rc != 0) {
    kcld_job_fail(base, KCLD_HANDLER_INFRA, "HandlerError",
                  "out of memory reading the handler's answer");
  } else {
    struct kcld_handler_result res = {
      .status = j->a.status,
      .first_failed = j->a.first_failed,
      .error_type = j->a.error_type[0] ? j->a.error_type : NULL,
      .error_message = j->a.error_message[0] ? j->a.error_message : NULL,
      .state = j->a.state,
      .state_len = j->a.state_len};
    kcld_job_answer(base, &res);
  }
  dispatch(h);
}

static void on_line(void *arg, const char *line, size_t n, int too_long)
{
  struct slot *s = arg;
  struct lambda_handler *h = s->h;
  struct job *j;
  size_t k;

  if (s->state == S_DOWN)
    return; /* being killed: the rest is noise */
  if (too_long) {
    h->stats.garbage++;
    if (s->job)
      answer_failed(s, KCLD_HANDLER_RECORD, "HandlerMalformedAnswer",
                    "the handler's answer line is too long");
    kill_slot(s, "answer line too long");
    return;
  }
  while (n > 0 && (line[n - 1] == ' ' || line[n - 1] == '\t' ||
                   line[n - 1] == '\r'))
    n--;
  for (k = 0; k < n && (line[k] == ' ' || line[k] == '\t'); k++)
    ;
  if (k == n)
    return; /* blank */
  if (!s->job) {
    garbage(h, kcld_child_pid(s->child), NULL, line, n);
    kill_slot(s, "garbage on stdout");
    return;
  }
  /* The answer came in time; parsing it is kcld's work, on the pool. */
  j = s->job;
  s->job = NULL;
  uv_timer_stop(&s->deadline);
  s->answered = 1;
  snprintf(j->pid, sizeof(j->pid), "%s", kcld_child_pid(s->child));
  j->answer = malloc(n);
  if (j->answer) {
    memcpy(j->answer, line, n);
    j->answer_len = n;
    j->slot = s;
    s->parsing = j;
    if (kcld_job_queue(h->loop, &h->on_pool, &j->base, parse_cb,
                       parsed_cb) == 0)
      return;
    detach_parse(s);
  }
  s->state = S_IDLE;
  kcld_job_fail(&j->base, KCLD_HANDLER_INFRA, "HandlerError",
                "cannot queue the handler's answer for parsing");
  dispatch(h);
}

static void on_started(void *arg)
{
  struct slot *s = arg;
  struct lambda_handler *h = s->h;
  h->stats.spawned++;
  s->state = S_IDLE;
  s->answered = 0;
  kcld_log(KCLD_LOG_INFO, "lambda handler: child started", "command",
           h->cmdline, "pid", kcld_child_pid(s->child), NULL);
  dispatch(h);
}

static void on_exited(void *arg, const struct kcld_child_exit *e)
{
  struct slot *s = arg;
  struct lambda_handler *h = s->h;
  char why[160];

  s->state = S_DOWN;
  detach_parse(s);
  if (e->spawn_err) {
    kcld_log(KCLD_LOG_ERROR, "lambda handler: cannot start handler.command",
             "command", h->cmdline, "error", e->reason, NULL);
    s->unavailable = 1;
  } else {
    if (e->term_signal)
      snprintf(why, sizeof(why),
               "the handler process was killed by signal %d", e->term_signal);
    else
      snprintf(why, sizeof(why), "the handler process exited with status %"
               PRId64, e->status);
    if (!e->killed && !h->closing && !h->killed) {
      h->stats.crashed++;
      kcld_log(KCLD_LOG_ERROR, "lambda handler: child exited", "command",
               h->cmdline, "reason", why, NULL);
    }
    if (s->job && e->consumed >= s->job_end) {
      answer_failed(s, KCLD_HANDLER_RECORD, "HandlerCrashed", why);
    } else if (s->job) {
      strncat(why, " before it read the batch", sizeof(why) - strlen(why) - 1);
      answer_failed(s, KCLD_HANDLER_INFRA, "HandlerUnavailable", why);
    }
    s->unavailable = !s->answered && e->consumed == 0;
  }
  if (!h->closing && !h->killed)
    kcld_child_respawn(s->child);
  fail_queue_if_hopeless(h);
}

static void start_job(struct slot *s, struct job *j)
{
  char *line = j->line;

  j->line = NULL; /* the child module owns it now */
  s->job = j;
  s->state = S_BUSY;
  if (kcld_child_write(s->child, line, j->len, &s->job_end) != 0) {
    answer_failed(s, KCLD_HANDLER_INFRA, "HandlerUnavailable",
                  "cannot write to the handler process");
    kill_slot(s, "stdin write failed");
    return;
  }
  uv_timer_start(&s->deadline, on_deadline, (uint64_t)s->h->timeout_ms, 0);
}

static void dispatch(struct lambda_handler *h)
{
  for (int i = 0; i < h->nslots && h->qhead; i++) {
    struct slot *s = &h->slots[i];
    if (s->state != S_IDLE)
      continue;
    struct job *j = h->qhead;
    h->qhead = j->next;
    if (!h->qhead)
      h->qtail = NULL;
    j->next = NULL;
    start_job(s, j);
  }
}

/* ======== The handler ======== */

static void build_cb(struct kcld_job *base)
{
  struct job *j = (struct job *)base;
  j->line = kcld_lambda_event_build(&base->batch, j->h->region,
                                    j->h->stream_arn, &j->len);
}

static void built_cb(struct kcld_job *base)
{
  struct job *j = (struct job *)base;
  struct lambda_handler *h = j->h;

  if (!j->line) {
    kcld_job_fail(base, KCLD_HANDLER_INFRA, "HandlerError",
                  "out of memory building the event");
    return;
  }
  if (h->killed || h->closing) {
    kcld_job_fail(base, KCLD_HANDLER_INFRA, "HandlerCanceled",
                  "the handler was killed");
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

static int process(struct kcld_handler *base,
                   const struct kcld_handler_batch *b,
                   kcld_handler_done_cb done, void *arg)
{
  struct lambda_handler *h = (struct lambda_handler *)base;
  struct job *j;

  if (h->closing || h->killed)
    return KCLD_ECANCELED;
  j = kcld_job_new(sizeof(*j), b, done, arg);
  if (!j)
    return KCLD_ENOMEM;
  j->h = h;
  j->base.clean_up = job_clean_up;
  if (kcld_job_queue(h->loop, &h->on_pool, &j->base, build_cb,
                     built_cb) != 0) {
    kcld_job_free(&j->base);
    return KCLD_EIO;
  }
  return 0;
}

static void fail_queue(struct lambda_handler *h, const char *type,
                       const char *msg)
{
  while (h->qhead) {
    struct job *j = h->qhead;
    h->qhead = j->next;
    kcld_job_fail(&j->base, KCLD_HANDLER_INFRA, type, msg);
  }
  h->qtail = NULL;
}

static void kill_handler(struct kcld_handler *base)
{
  struct lambda_handler *h = (struct lambda_handler *)base;

  h->killed = 1;
  for (int i = 0; i < h->nslots; i++)
    detach_parse(&h->slots[i]); /* cancelled parses free their jobs */
  kcld_job_cancel_all(&h->on_pool);
  fail_queue(h, "HandlerCanceled", "the handler was killed");
  for (int i = 0; i < h->nslots; i++) {
    struct slot *s = &h->slots[i];
    answer_failed(s, KCLD_HANDLER_INFRA, "HandlerCanceled",
                  "the handler was killed");
    s->state = S_DOWN;
    if (!s->child)
      continue;
    kcld_child_kill(s->child);
    kcld_child_close(s->child); /* no restart: the slot is done */
    s->child = NULL;
  }
}

static void handler_close(struct kcld_handler *base)
{
  struct lambda_handler *h = (struct lambda_handler *)base;

  h->closing = 1;
  /* Not expected: close comes with nothing in flight. */
  fail_queue(h, "HandlerShutdown", "the handler is shutting down");
  for (int i = 0; h->slots && i < h->nslots; i++) {
    struct slot *s = &h->slots[i];
    answer_failed(s, KCLD_HANDLER_INFRA, "HandlerShutdown",
                  "the handler is shutting down");
    if (s->timer_open) {
      s->timer_open = 0;
      uv_timer_stop(&s->deadline);
      uv_close((uv_handle_t *)&s->deadline, on_timer_closed);
    }
    if (s->child) {
      /* EOF on stdin asks the adapter to exit. */
      kcld_child_stop(s->child, SHUTDOWN_GRACE_MS);
      kcld_child_close(s->child);
    }
  }
  maybe_free(h);
}

static const struct kcld_handler_ops s_ops = {
  .name = "lambda",
  .process = process,
  .kill = kill_handler,
  .close = handler_close,
};

void kcld_handler_lambda_stats(const struct kcld_handler *base,
                               struct kcld_lambda_stats *out)
{
  const struct lambda_handler *h = (const struct lambda_handler *)base;
  *out = h->stats;
}

/* The slots' children: handler.command with KCLD_HANDLER_TIMEOUT_MS in the
 * environment (the adapter's context.get_remaining_time_in_millis() counts
 * down from it). */
static int open_slots(struct lambda_handler *h,
                      const struct kcld_config *cfg)
{
  const struct kcld_config_handler_cfg *hc = &cfg->handler;
  char timeout[64], path[4096];
  const char *env[] = {timeout, NULL};
  struct kcld_child_opts o;
  int rc;

  snprintf(timeout, sizeof(timeout), "KCLD_HANDLER_TIMEOUT_MS=%" PRId64,
           hc->timeout_ms);
  memset(&o, 0, sizeof(o));
  o.loop = h->loop;
  o.argv = (const char *const *)hc->command.items;
  o.env_add = env;
  o.tag_key = "child";
  o.msgs = &s_msgs;
  o.max_line = MAX_ANSWER_BYTES;
  o.backoff_base_ms = (uint64_t)cfg->retry.backoff_base_ms;
  o.backoff_max_ms = (uint64_t)cfg->retry.backoff_max_ms;
  o.cbs.started = on_started;
  o.cbs.line = on_line;
  o.cbs.exited = on_exited;
  o.cbs.closed = on_slot_closed;
  for (int i = 0; i < h->nslots; i++) {
    struct slot *s = &h->slots[i];
    s->h = h;
    snprintf(s->tag, sizeof(s->tag), "%d", i);
    uv_timer_init(h->loop, &s->deadline);
    s->deadline.data = s;
    s->timer_open = 1;
    h->open++;
    o.tag = s->tag;
    o.arg = s;
    if ((rc = kcld_child_new(&o, &s->child)) != 0)
      return rc;
    h->open++;
  }
  if (kcld_child_find(hc->command.items[0], path, sizeof(path)) != 0) {
    kcld_log(KCLD_LOG_ERROR,
             "lambda handler: handler.command is not an executable file",
             "command", hc->command.items[0], NULL);
    return KCLD_ECONFIG;
  }
  for (int i = 0; i < h->nslots; i++) {
    struct slot *s = &h->slots[i];
    if (kcld_child_spawn(s->child) != 0) {
      kcld_log(KCLD_LOG_ERROR, "lambda handler: cannot start handler.command",
               "command", h->cmdline, "error",
               kcld_child_spawn_error(s->child), NULL);
      return KCLD_ECONFIG;
    }
    h->stats.spawned++;
    s->state = S_IDLE;
    kcld_log(KCLD_LOG_INFO, "lambda handler: child started", "command",
             h->cmdline, "pid", kcld_child_pid(s->child), NULL);
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
  int rc;

  if (hc->command.len == 0) {
    kcld_log(KCLD_LOG_ERROR, "lambda handler: handler.command is empty",
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
  h->nslots = hc->concurrency;
  h->slots = calloc((size_t)h->nslots, sizeof(*h->slots));
  for (size_t i = 0; i < hc->command.len; i++)
    cmdlen += strlen(hc->command.items[i]) + 1;
  h->cmdline = calloc(1, cmdlen);
  rc = KCLD_ENOMEM;
  if (!h->region || !h->stream_arn || !h->slots || !h->cmdline)
    goto fail;
  for (size_t i = 0; i < hc->command.len; i++) {
    if (i)
      strcat(h->cmdline, " ");
    strcat(h->cmdline, hc->command.items[i]);
  }
  if ((rc = open_slots(h, env->cfg)) != 0)
    goto fail;
  *out = &h->base;
  return 0;

fail:
  /* Frees itself once the loop has closed what was opened. */
  handler_close(&h->base);
  return rc;
}
