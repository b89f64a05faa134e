/* fanout.c — Kinesis enhanced fan-out (see fanout.h).
 *
 * Consumer calls are svc operations; kcld_fanout_ensure is one operation
 * that steps through DescribeStreamSummary (when given a stream name),
 * RegisterStreamConsumer and DescribeStreamConsumer polls on its timer.
 *
 * A subscription is a streamed AWS call (kcld_aws_stream_start) whose bytes
 * go through an event-stream decoder.  It ends in on_call_done, the call's
 * callback, whatever ended it: the service, the transport, a refused frame
 * or an exception event (both cancel the call, with the reason kept in
 * `why`), or the owner's cancel.  Its memory outlives the end while its
 * data callback is still running (`in_data`). */
#include "aws/fanout.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "aws/eventstream.h"
#include "err.h"
#include "log.h"

#define ENSURE_TIMEOUT_MS 60000L
#define POLL_FIRST_MS 100u
#define POLL_MAX_MS 2000u
#define REREGISTER_MAX 5
#define SUB_TIMEOUT_MS 330000L

struct kcld_fanout {
  struct kcld_svc svc;
  struct kcld_fanout_sub *subs;   /* not yet ended */
};

/* ======== Consumer calls ======== */

enum cons_kind { C_REGISTER, C_DESCRIBE, C_LIST, C_ENSURE };
enum ensure_step { E_SUMMARY, E_REGISTER, E_DESCRIBE };

struct cons_op {
  struct kcld_svc_op base;
  enum cons_kind kind;
  kcld_fanout_consumer_cb cb;
  kcld_fanout_list_cb list_cb;
  void *arg;
  json_t *request;         /* the next call's body */
  json_t *result;          /* the consumer handed over on success */
  /* ListStreamConsumers */
  json_t *found;           /* every page's Consumers */
  int pages;
  /* kcld_fanout_ensure */
  enum ensure_step step;
  char *stream_arn, *name;
  char *stream_name;       /* E_SUMMARY: the stream to look up */
  char *consumer_arn;      /* kcld_fanout_await: described by ARN only */
  uint64_t deadline, poll_ms;
  long timeout_ms;
  int registered, reregisters;
  char last[32];           /* the last status seen, for the timeout text */
};

static void consumer_from(struct kcld_fanout_consumer *c, const json_t *j)
{
  c->name = json_string_value(json_object_get(j, "ConsumerName"));
  c->arn = json_string_value(json_object_get(j, "ConsumerARN"));
  c->status = json_string_value(json_object_get(j, "ConsumerStatus"));
  c->stream_arn = json_string_value(json_object_get(j, "StreamARN"));
  c->created =
    json_number_value(json_object_get(j, "ConsumerCreationTimestamp"));
}

/* Runs the user's callback with how the op ended. */
static void cons_deliver(struct kcld_svc_op *base,
                         const struct kcld_svc_status *st)
{
  struct cons_op *op = (struct cons_op *)base;

  if (op->kind == C_LIST) {
    struct kcld_fanout_consumer_list r = {.st = *st, .pages = op->pages};
    struct kcld_fanout_consumer *all = NULL;
    size_t n = st->err ? 0 : json_array_size(op->found);
    if (n && !(all = kcld_svc_op_alloc(base, n * sizeof(*all)))) {
      r.st.err = KCLD_ENOMEM;
      r.st.message = "out of memory";
      n = 0;
    }
    for (size_t i = 0; i < n; i++)
      consumer_from(&all[i], json_array_get(op->found, i));
    r.consumers = all;
    r.count = n;
    op->list_cb(&r, op->arg);
  } else {
    struct kcld_fanout_consumer c;
    memset(&c, 0, sizeof(c));
    c.st = *st;
    if (st->err == 0) {
      consumer_from(&c, op->result);
      c.registered = op->registered;
    }
    op->cb(&c, op->arg);
  }
}

static void cons_clean_up(struct kcld_svc_op *base)
{
  struct cons_op *op = (struct cons_op *)base;
  json_decref(op->request);
  json_decref(op->result);
  json_decref(op->found);
  free(op->stream_arn);
  free(op->name);
  free(op->stream_name);
  free(op->consumer_arn);
}

/* Ends the op with the consumer in `j`; one the answer lacks is
 * KCLD_EPARSE. */
static void cons_finish(struct cons_op *op, json_t *j)
{
  struct kcld_fanout_consumer c;

  memset(&c, 0, sizeof(c));
  consumer_from(&c, j);
  if (!c.name || !c.arn || !c.status) {
    kcld_svc_op_fail(&op->base, KCLD_EPARSE,
                     "no consumer (name, ARN, status) in the answer");
    return;
  }
  op->result = json_incref(j);
  kcld_svc_op_succeed(&op->base);
}

/* Sends `req` (borrowed); ends the op when it cannot be sent. */
static void cons_send(struct cons_op *op, const json_t *req)
{
  int rc = req ? kcld_svc_op_call(&op->base, req, NULL) : KCLD_ENOMEM;
  if (rc != 0)
    kcld_svc_op_fail(&op->base, rc, "could not send: %s", kcld_strerror(rc));
}

/* Sends the op's first call (takes `req`); returns 0, or the error after
 * dropping the op (no callback). */
static int cons_start(struct cons_op *op, json_t *req)
{
  int rc = req ? kcld_svc_op_call(&op->base, req, NULL) : KCLD_ENOMEM;
  json_decref(req);
  if (rc != 0)
    kcld_svc_op_release(&op->base);
  return rc;
}

static void list_result(struct cons_op *op, const struct kcld_aws_result *res)
{
  struct kcld_svc_status st;
  const char *next;
  json_t *page;

  kcld_svc_status_from(&op->base, &st, res);
  if (st.err) {
    kcld_svc_op_end(&op->base, &st);
    return;
  }
  op->pages++;
  page = json_object_get(res->body, "Consumers");
  if (json_is_array(page))
    json_array_extend(op->found, page);
  next = json_string_value(json_object_get(res->body, "NextToken"));
  if (next && json_array_size(page) > 0) {
    json_object_set_new(op->request, "NextToken", json_string(next));
    cons_send(op, op->request);
    return;
  }
  kcld_svc_op_succeed(&op->base);
}

/* ---- kcld_fanout_ensure ---- */

/* The request of the op's step, in op->request. */
static void ensure_request(struct cons_op *op)
{
  json_decref(op->request);
  if (op->step == E_SUMMARY) {
    op->base.operation = "DescribeStreamSummary";
    op->request = json_pack("{s:s}", "StreamName", op->stream_name);
  } else if (op->consumer_arn) {
    op->base.operation = "DescribeStreamConsumer";
    op->request = json_pack("{s:s}", "ConsumerARN", op->consumer_arn);
  } else {
    op->base.operation = op->step == E_REGISTER ? "RegisterStreamConsumer"
                                                : "DescribeStreamConsumer";
    op->request = json_pack("{s:s, s:s}", "StreamARN", op->stream_arn,
                            "ConsumerName", op->name);
  }
}

static void ensure_send(struct cons_op *op)
{
  ensure_request(op);
  cons_send(op, op->request);
}

/* Waits before the next step; ends the op when the deadline has passed. */
static void ensure_wait(struct cons_op *op, uint64_t ms)
{
  uv_loop_t *loop = op->base.svc->loop;
  int rc;

  uv_update_time(loop);
  if (uv_now(loop) >= op->deadline) {
    kcld_svc_op_fail(&op->base, KCLD_ETIMEDOUT,
                     "consumer %s not ACTIVE after %ld ms (last: %s)",
                     op->name, op->timeout_ms, op->last);
    return;
  }
  if (ms > op->deadline - uv_now(loop))
    ms = op->deadline - uv_now(loop);
  rc = kcld_svc_op_sleep(&op->base, ms);
  if (rc != 0)
    kcld_svc_op_fail(&op->base, rc, "could not wait: %s", kcld_strerror(rc));
}

static void ensure_poll_later(struct cons_op *op)
{
  uint64_t ms = op->poll_ms;
  op->poll_ms = op->poll_ms * 2 > POLL_MAX_MS ? POLL_MAX_MS : op->poll_ms * 2;
  ensure_wait(op, ms);
}

static void ensure_summary(struct cons_op *op, const struct kcld_svc_status *st,
                           const struct kcld_aws_result *res)
{
  const char *arn = json_string_value(json_object_get(
    json_object_get(res->body, "StreamDescriptionSummary"), "StreamARN"));

  if (st->err) {
    kcld_svc_op_end(&op->base, st);
  } else if (!arn) {
    kcld_svc_op_fail(&op->base, KCLD_EPARSE, "no StreamARN in the answer");
  } else if (!(op->stream_arn = strdup(arn))) {
    kcld_svc_op_fail(&op->base, KCLD_ENOMEM, "out of memory");
  } else {
    op->step = E_REGISTER;
    ensure_send(op);
  }
}

static void ensure_result(struct cons_op *op, const struct kcld_aws_result *res)
{
  struct kcld_svc_status st;
  json_t *c;
  const char *status;

  kcld_svc_status_from(&op->base, &st, res);
  if (kcld_svc_transient(&st)) {
    /* The client's attempts are spent on a transient fault (a 5xx,
     * throttling such as Register's LimitExceededException, no answer):
     * that step again later, until the deadline. */
    snprintf(op->last, sizeof(op->last), "%s",
             st.type[0] ? st.type : kcld_strerror(st.err));
    ensure_poll_later(op);
    return;
  }
  switch (op->step) {
  case E_SUMMARY:
    ensure_summary(op, &st, res);
    return;
  case E_REGISTER:
    if (st.err == 0) {
      op->registered = 1;
      c = json_object_get(res->body, "Consumer");
      status = json_string_value(json_object_get(c, "ConsumerStatus"));
      if (status && strcmp(status, "ACTIVE") == 0) {
        cons_finish(op, c);
        return;
      }
      snprintf(op->last, sizeof(op->last), "CREATING");
      op->step = E_DESCRIBE;
      ensure_poll_later(op);
    } else if (strcmp(st.type, "ResourceInUseException") == 0) {
      op->step = E_DESCRIBE; /* another worker registered it */
      ensure_send(op);
    } else {
      kcld_svc_op_end(&op->base, &st);
    }
    return;
  case E_DESCRIBE:
    if (st.err == KCLD_ENOTFOUND && !op->consumer_arn &&
        op->reregisters < REREGISTER_MAX) {
      /* Deleted meanwhile (it was DELETING): register it anew. */
      op->reregisters++;
      op->step = E_REGISTER;
      ensure_send(op);
      return;
    }
    if (st.err) {
      kcld_svc_op_end(&op->base, &st);
      return;
    }
    c = json_object_get(res->body, "ConsumerDescription");
    status = json_string_value(json_object_get(c, "ConsumerStatus"));
    if (status && strcmp(status, "ACTIVE") == 0) {
      cons_finish(op, c);
      return;
    }
    snprintf(op->last, sizeof(op->last), "%s", status ? status : "unknown");
    ensure_poll_later(op);
    return;
  }
}

static void cons_on_result(struct kcld_svc_op *base,
                           const struct kcld_aws_result *res)
{
  struct cons_op *op = (struct cons_op *)base;
  struct kcld_svc_status st;

  if (op->kind == C_LIST) {
    list_result(op, res);
    return;
  }
  if (op->kind == C_ENSURE) {
    ensure_result(op, res);
    return;
  }
  kcld_svc_status_from(base, &st, res);
  if (st.err) {
    kcld_svc_op_end(base, &st);
    return;
  }
  cons_finish(op, json_object_get(res->body, op->kind == C_REGISTER
                                               ? "Consumer"
                                               : "ConsumerDescription"));
}

static void cons_on_timer(struct kcld_svc_op *base)
{
  ensure_send((struct cons_op *)base);
}

static const struct kcld_svc_op_type s_cons_type = {
  .on_result = cons_on_result,
  .on_timer = cons_on_timer,
  .deliver = cons_deliver,
  .clean_up = cons_clean_up,
};

static struct cons_op *cons_new(struct kcld_fanout *f, const char *opname,
                                enum cons_kind kind, void *arg, int *err)
{
  struct cons_op *op;

  if (!f) {
    *err = KCLD_EINVAL;
    return NULL;
  }
  op = kcld_svc_op_new(&f->svc, sizeof(*op), &s_cons_type, opname, err);
  if (!op)
    return NULL;
  op->kind = kind;
  op->arg = arg;
  return op;
}

int kcld_fanout_new(struct kcld_aws *aws, uv_loop_t *loop,
                    struct kcld_fanout **out)
{
  if (!out)
    return KCLD_EINVAL;
  *out = NULL;
  return kcld_svc_new(sizeof(struct kcld_fanout), aws, loop, KCLD_AWS_KINESIS,
                      (void **)out);
}

int kcld_fanout_register(struct kcld_fanout *f, const char *stream_arn,
                         const char *name, kcld_fanout_consumer_cb cb,
                         void *arg)
{
  const char *opname = "RegisterStreamConsumer";
  struct cons_op *op;
  int rc;

  if (!f || !cb)
    return KCLD_EINVAL;
  if (!stream_arn || !*stream_arn || !name || !*name)
    return kcld_svc_bad_arg(&f->svc, opname,
                            "no stream ARN or consumer name");
  if (!(op = cons_new(f, opname, C_REGISTER, arg, &rc)))
    return rc;
  op->cb = cb;
  kcld_svc_op_resource(&op->base, "consumer %s", name);
  return cons_start(op, json_pack("{s:s, s:s}", "StreamARN", stream_arn,
                                  "ConsumerName", name));
}

int kcld_fanout_describe(struct kcld_fanout *f, const char *stream_arn,
                         const char *name, const char *consumer_arn,
                         kcld_fanout_consumer_cb cb, void *arg)
{
  const char *opname = "DescribeStreamConsumer";
  struct cons_op *op;
  json_t *req;
  int rc;

  if (!f || !cb)
    return KCLD_EINVAL;
  if (!(consumer_arn && *consumer_arn) &&
      !(stream_arn && *stream_arn && name && *name))
    return kcld_svc_bad_arg(&f->svc, opname,
                            "no consumer ARN, nor stream ARN and name");
  if (!(op = cons_new(f, opname, C_DESCRIBE, arg, &rc)))
    return rc;
  op->cb = cb;
  if (consumer_arn && *consumer_arn) {
    kcld_svc_op_resource(&op->base, "consumer %s", consumer_arn);
    req = json_pack("{s:s}", "ConsumerARN", consumer_arn);
  } else {
    kcld_svc_op_resource(&op->base, "consumer %s", name);
    req = json_pack("{s:s, s:s}", "StreamARN", stream_arn, "ConsumerName",
                    name);
  }
  return cons_start(op, req);
}

int kcld_fanout_list(struct kcld_fanout *f, const char *stream_arn,
                     kcld_fanout_list_cb cb, void *arg)
{
  const char *opname = "ListStreamConsumers";
  struct cons_op *op;
  int rc;

  if (!f || !cb)
    return KCLD_EINVAL;
  if (!stream_arn || !*stream_arn)
    return kcld_svc_bad_arg(&f->svc, opname, "no stream ARN");
  if (!(op = cons_new(f, opname, C_LIST, arg, &rc)))
    return rc;
  op->list_cb = cb;
  kcld_svc_op_resource(&op->base, "stream %s", stream_arn);
  op->found = json_array();
  op->request = json_pack("{s:s}", "StreamARN", stream_arn);
  if (!op->found || !op->request) {
    kcld_svc_op_release(&op->base);
    return KCLD_ENOMEM;
  }
  return cons_start(op, json_incref(op->request));
}

/* A new C_ENSURE op ending after timeout_ms (0 = ENSURE_TIMEOUT_MS), its
 * strings set by the caller; NULL with *rc set on failure. */
static struct cons_op *ensure_new(struct kcld_fanout *f, long timeout_ms,
                                  kcld_fanout_consumer_cb cb, void *arg,
                                  int *rc)
{
  struct cons_op *op = cons_new(f, "DescribeStreamConsumer", C_ENSURE, arg,
                                rc);
  if (!op)
    return NULL;
  op->cb = cb;
  uv_update_time(f->svc.loop);
  op->timeout_ms = timeout_ms ? timeout_ms : ENSURE_TIMEOUT_MS;
  op->deadline = uv_now(f->svc.loop) + (uint64_t)op->timeout_ms;
  op->poll_ms = POLL_FIRST_MS;
  snprintf(op->last, sizeof(op->last), "none");
  return op;
}

int kcld_fanout_ensure(struct kcld_fanout *f, const char *stream,
                       const char *name, long timeout_ms,
                       kcld_fanout_consumer_cb cb, void *arg)
{
  const char *opname = "RegisterStreamConsumer";
  struct cons_op *op;
  int rc, is_arn;

  if (!f || !cb)
    return KCLD_EINVAL;
  if (!stream || !*stream || !name || !*name)
    return kcld_svc_bad_arg(&f->svc, opname, "no stream or consumer name");
  if (timeout_ms < 0)
    return kcld_svc_bad_arg(&f->svc, opname, "negative timeout");
  if (!(op = ensure_new(f, timeout_ms, cb, arg, &rc)))
    return rc;
  is_arn = strncmp(stream, "arn:", 4) == 0;
  op->name = strdup(name);
  if (is_arn)
    op->stream_arn = strdup(stream);
  else
    op->stream_name = strdup(stream);
  if (!op->name || !(is_arn ? op->stream_arn : op->stream_name)) {
    kcld_svc_op_release(&op->base);
    return KCLD_ENOMEM;
  }
  kcld_svc_op_resource(&op->base, "consumer %s", name);
  op->step = is_arn ? E_REGISTER : E_SUMMARY;
  ensure_request(op);
  return cons_start(op, json_incref(op->request));
}

int kcld_fanout_await(struct kcld_fanout *f, const char *consumer_arn,
                      long timeout_ms, kcld_fanout_consumer_cb cb, void *arg)
{
  struct cons_op *op;
  int rc;

  if (!f || !cb)
    return KCLD_EINVAL;
  if (!consumer_arn || !*consumer_arn || timeout_ms < 0)
    return kcld_svc_bad_arg(&f->svc, "DescribeStreamConsumer",
                            "no consumer ARN, or a negative timeout");
  if (!(op = ensure_new(f, timeout_ms, cb, arg, &rc)))
    return rc;
  if (!(op->consumer_arn = strdup(consumer_arn))) {
    kcld_svc_op_release(&op->base);
    return KCLD_ENOMEM;
  }
  kcld_svc_op_resource(&op->base, "consumer %s", consumer_arn);
  op->step = E_DESCRIBE;
  ensure_request(op);
  return cons_start(op, json_incref(op->request));
}

/* ======== Subscriptions ======== */

struct kcld_fanout_sub {
  struct kcld_fanout *f;
  struct kcld_aws_stream *stream;   /* NULL once its callback ran */
  struct kcld_evs_decoder *dec;
  kcld_fanout_event_cb on_event;
  kcld_fanout_end_cb on_end;
  void *arg;
  struct kcld_fanout_sub *prev, *next;
  unsigned ended : 1, in_data : 1, free_later : 1, have_why : 1;
  unsigned own_frames : 1;          /* events hand over their frames */
  struct kcld_svc_status why;       /* how it ends, when we end it */
  struct sub_text *text;            /* why's strings, made when it ends */
  char shard[160];
};

/* How a subscription ended, in words: allocated only then, so that an
 * open subscription does not carry it. */
struct sub_text {
  char type[96];
  char msg[640];
};

static struct sub_text s_oom_text;

static void sub_link(struct kcld_fanout *f, struct kcld_fanout_sub *s)
{
  s->prev = NULL;
  s->next = f->subs;
  if (f->subs)
    f->subs->prev = s;
  f->subs = s;
}

static void sub_unlink(struct kcld_fanout_sub *s)
{
  if (s->prev)
    s->prev->next = s->next;
  else
    s->f->subs = s->next;
  if (s->next)
    s->next->prev = s->prev;
  s->prev = s->next = NULL;
}

static void sub_free(struct kcld_fanout_sub *s)
{
  kcld_evs_decoder_free(s->dec);
  if (s->text != &s_oom_text)
    free(s->text);
  free(s);
}

static void sub_set_why(struct kcld_fanout_sub *s, int err, long status,
                        const char *type, const char *fmt, ...)
  __attribute__((format(printf, 5, 6)));

/* Keeps how the subscription ends: the status handed to on_end.  Out of
 * memory for its words, they are "out of memory" (one shared block: the
 * loop thread's only). */
static void sub_set_why(struct kcld_fanout_sub *s, int err, long status,
                        const char *type, const char *fmt, ...)
{
  struct sub_text *t;
  va_list ap;
  int n;

  if (s->have_why)
    return;
  s->have_why = 1;
  t = s->text = malloc(sizeof(*t));
  if (!t) {
    t = s->text = &s_oom_text;
    snprintf(t->type, sizeof(t->type), "%s", "");
    snprintf(t->msg, sizeof(t->msg), "SubscribeToShard: out of memory");
  } else {
    snprintf(t->type, sizeof(t->type), "%s", type ? type : "");
    n = snprintf(t->msg, sizeof(t->msg), "SubscribeToShard shard %s: ",
                 s->shard);
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof(t->msg))
      vsnprintf(t->msg + n, sizeof(t->msg) - (size_t)n, fmt, ap);
    va_end(ap);
  }
  s->why.err = err;
  s->why.http_status = status;
  s->why.type = t->type;
  s->why.message = err ? t->msg : "";
  s->why.attempts = 1;
}

/* The call has ended, however: on_end runs once (unless it already ran),
 * and the subscription is freed now or after its data callback. */
static void on_call_done(const struct kcld_aws_result *res, void *arg)
{
  struct kcld_fanout_sub *s = arg;
  size_t pending = kcld_evs_decoder_pending(s->dec);

  s->stream = NULL;
  if (!s->have_why) {
    if (res->err == 0 && pending)
      sub_set_why(s, KCLD_ETRANSPORT, res->status, NULL,
                  "stream ended inside a frame (%zu bytes held)", pending);
    else if (res->err == 0)
      sub_set_why(s, 0, res->status, NULL, "ended");
    else if (res->err == KCLD_EAWS)
      sub_set_why(s,
                  strcmp(res->error_type, "ResourceNotFoundException") == 0
                    ? KCLD_ENOTFOUND : KCLD_EAWS,
                  res->status, res->error_type, "%s (HTTP %ld): %s",
                  res->error_type, res->status, res->message);
    else
      sub_set_why(s, res->err, res->status, NULL, "%s: %s",
                  kcld_strerror(res->err), res->message);
  }
  if (!s->ended) {
    s->ended = 1;
    sub_unlink(s);
    if (s->why.err && s->why.err != KCLD_ECANCELED)
      kcld_log(KCLD_LOG_DEBUG, "subscription ended", "shard", s->shard,
               "error", s->why.message, NULL);
    s->on_end(&s->why, s->arg);
  }
  if (s->in_data)
    s->free_later = 1;
  else
    sub_free(s);
}

/* The message of an exception event's JSON payload, or "". */
static void exception_message(char *dst, size_t cap,
                              const struct kcld_evs_message *m)
{
  json_t *j = json_loadb((const char *)m->payload, m->payload_len, 0, NULL);
  const char *msg = json_string_value(json_object_get(j, "message"));
  if (!msg)
    msg = json_string_value(json_object_get(j, "Message"));
  snprintf(dst, cap, "%s", msg ? msg : "");
  json_decref(j);
}

static int on_frame(const struct kcld_evs_message *m, void *arg)
{
  struct kcld_fanout_sub *s = arg;
  struct kcld_fanout_event ev;
  char text[256];

  if (m->message_type && strcmp(m->message_type, "event") == 0) {
    memset(&ev, 0, sizeof(ev));
    ev.payload = "";
    if (m->event_type && strcmp(m->event_type, "initial-response") == 0) {
      ev.kind = KCLD_FANOUT_INITIAL;
    } else if (m->event_type &&
               strcmp(m->event_type, "SubscribeToShardEvent") == 0) {
      ev.kind = KCLD_FANOUT_RECORDS;
      ev.payload = (const char *)m->payload;
      ev.payload_len = m->payload_len;
      ev.frame = s->own_frames ? kcld_evs_decoder_take(s->dec) : NULL;
    } else {
      return 0; /* an event type this version does not know */
    }
    s->on_event(&ev, s->arg);
    return s->ended || s->have_why ? 1 : 0;
  }
  if (m->message_type && strcmp(m->message_type, "exception") == 0) {
    const char *type = m->exception_type ? m->exception_type : "";
    exception_message(text, sizeof(text), m);
    sub_set_why(s,
                strcmp(type, "ResourceNotFoundException") == 0
                  ? KCLD_ENOTFOUND : KCLD_EAWS,
                200, type, "%s (exception event): %s", type, text);
    return 1;
  }
  if (m->message_type && strcmp(m->message_type, "error") == 0) {
    const char *code = m->error_code ? m->error_code : "InternalFailure";
    sub_set_why(s, KCLD_EAWS, 200, code, "%s (error event): %s", code,
                m->error_message ? m->error_message : "");
    return 1;
  }
  sub_set_why(s, KCLD_EPARSE, 200, NULL, "frame of unknown message type %s",
              m->message_type ? m->message_type : "(none)");
  return 1;
}

/* Feeds the decoder; returns the bytes taken: fewer than len when the
 * gate holds a frame back (the stream then pauses, keeping the rest). */
static size_t on_sub_data(const char *data, size_t len, void *arg)
{
  struct kcld_fanout_sub *s = arg;
  size_t taken = len;
  int rc;

  if (s->ended || s->have_why)
    return len;
  s->in_data = 1;
  rc = kcld_evs_decoder_feed_some(s->dec, data, len, on_frame, s, &taken);
  if (rc == KCLD_EPARSE || rc == KCLD_ENOMEM)
    sub_set_why(s, rc, 200, NULL, "%s", kcld_evs_decoder_error(s->dec));
  if (rc != 0)
    taken = len; /* the call ends: nothing more is read */
  /* An exception, a bad frame: end the call, with the reason kept. */
  if (s->have_why && s->stream)
    kcld_aws_stream_cancel(s->stream);
  s->in_data = 0;
  if (s->free_later)
    sub_free(s);
  return taken;
}

/* Inside curl: the bytes go straight into their frame's buffer, up to a
 * frame's end (on_sub_data then delivers it, and gets what curl had
 * after it). */
static size_t on_sub_take(const char *data, size_t len, void *arg)
{
  struct kcld_fanout_sub *s = arg;

  return s->ended || s->have_why ? 0
                                 : kcld_evs_decoder_gather(s->dec, data, len);
}

static const char *const s_positions[] = {
  "AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER", "TRIM_HORIZON", "LATEST",
  "AT_TIMESTAMP"};

static json_t *subscribe_request(const struct kcld_fanout_subscribe_req *req)
{
  json_t *pos = json_pack("{s:s}", "Type", s_positions[req->position]);
  if (pos && (req->position == KCLD_FANOUT_AT_SEQUENCE_NUMBER ||
              req->position == KCLD_FANOUT_AFTER_SEQUENCE_NUMBER))
    json_object_set_new(pos, "SequenceNumber",
                        json_string(req->sequence_number));
  if (pos && req->position == KCLD_FANOUT_AT_TIMESTAMP)
    json_object_set_new(pos, "Timestamp",
                        json_real((double)req->timestamp_ms / 1000.0));
  return pos ? json_pack("{s:s, s:s, s:o}", "ConsumerARN", req->consumer_arn,
                         "ShardId", req->shard_id, "StartingPosition", pos)
             : NULL;
}

int kcld_fanout_subscribe(struct kcld_fanout *f,
                          const struct kcld_fanout_subscribe_req *req,
                          kcld_fanout_event_cb on_event,
                          kcld_fanout_end_cb on_end, void *arg,
                          struct kcld_fanout_sub **out)
{
  const char *opname = "SubscribeToShard";
  struct kcld_fanout_sub *s = NULL;
  json_t *body = NULL;
  int rc;

  if (!f || !req || !on_event || !on_end || !out)
    return KCLD_EINVAL;
  *out = NULL;
  if (!req->consumer_arn || !*req->consumer_arn || !req->shard_id ||
      !*req->shard_id || (int)req->position < 0 ||
      req->position > KCLD_FANOUT_AT_TIMESTAMP || req->timeout_ms < 0)
    return kcld_svc_bad_arg(&f->svc, opname,
                            "no consumer ARN or shard, or a bad position");
  if ((req->position == KCLD_FANOUT_AT_SEQUENCE_NUMBER ||
       req->position == KCLD_FANOUT_AFTER_SEQUENCE_NUMBER) &&
      (!req->sequence_number || !*req->sequence_number))
    return kcld_svc_bad_arg(&f->svc, opname, "no sequence number");
  if (f->svc.closed)
    return KCLD_ECANCELED;
  s = calloc(1, sizeof(*s));
  if (!s)
    return KCLD_ENOMEM;
  s->f = f;
  s->on_event = on_event;
  s->on_end = on_end;
  s->arg = arg;
  snprintf(s->shard, sizeof(s->shard), "%s", req->shard_id);
  rc = kcld_evs_decoder_new(NULL, &s->dec);
  if (rc == 0 && req->alloc) {
    kcld_evs_decoder_set_alloc(s->dec, req->alloc);
    s->own_frames = 1;
  }
  if (rc == 0 && req->gate)
    kcld_evs_decoder_set_gate(s->dec, req->gate, req->gate_arg);
  if (rc == 0 && !(body = subscribe_request(req)))
    rc = KCLD_ENOMEM;
  if (rc == 0)
    rc = kcld_aws_stream_start(f->svc.aws, KCLD_AWS_KINESIS, opname, body,
                               req->timeout_ms ? req->timeout_ms
                                               : SUB_TIMEOUT_MS,
                               on_sub_data, on_sub_take, on_call_done, s,
                               &s->stream);
  json_decref(body);
  if (rc != 0) {
    sub_free(s);
    return rc;
  }
  sub_link(f, s);
  *out = s;
  return 0;
}

void kcld_fanout_sub_pause(struct kcld_fanout_sub *s)
{
  if (s && s->stream)
    kcld_aws_stream_pause(s->stream);
}

void kcld_fanout_sub_resume(struct kcld_fanout_sub *s)
{
  if (s && s->stream)
    kcld_aws_stream_resume(s->stream);
}

void kcld_fanout_sub_cancel(struct kcld_fanout_sub *s)
{
  if (!s || s->ended)
    return;
  sub_set_why(s, KCLD_ECANCELED, 0, NULL, "cancelled");
  if (s->stream)
    kcld_aws_stream_cancel(s->stream); /* on_call_done ends it */
}

void kcld_fanout_close(struct kcld_fanout *f)
{
  if (!f)
    return;
  while (f->subs)
    kcld_fanout_sub_cancel(f->subs);
  kcld_svc_close(&f->svc);
}
