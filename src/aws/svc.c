/* svc.c — the AWS service client skeleton: operations in flight and their
 * one way to end, requests with typed results and waits, the fault map,
 * error mapping and messages. */
#include "aws/svc.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/backoff.h"
#include "err.h"
#include "log.h"

#define WAIT_DEFAULT_MS 60000L
#define WAIT_POLL_FIRST_MS 100
#define WAIT_POLL_MAX_MS 2000

/* Service error types with a code of their own; the rest are KCLD_EAWS. */
static const struct {
  const char *type;
  int err;
} s_err_map[] = {
  {"ResourceNotFoundException", KCLD_ENOTFOUND},
  {"QueueDoesNotExist", KCLD_ENOTFOUND},
  {"AWS.SimpleQueueService.NonExistentQueue", KCLD_ENOTFOUND},
  {"ConditionalCheckFailedException", KCLD_ECONDITION},
  {"NoSuchBucket", KCLD_ENOTFOUND},
  {"NoSuchKey", KCLD_ENOTFOUND},
  {"NotFound", KCLD_ENOTFOUND}, /* S3: a HEAD answered 404 */
};

struct kcld_svc_text {
  char type_buf[96];
  char msg[640];
};

struct kcld_svc_mem {
  struct kcld_svc_mem *next;
  max_align_t data[];
};

/* ======== The client ======== */

int kcld_svc_new(size_t size, struct kcld_aws *aws, uv_loop_t *loop,
                 enum kcld_aws_service service, void **out)
{
  struct kcld_svc *svc;
  if (!out)
    return KCLD_EINVAL;
  *out = NULL;
  if (!aws || !loop || size < sizeof(*svc))
    return KCLD_EINVAL;
  svc = calloc(1, size);
  if (!svc)
    return KCLD_ENOMEM;
  svc->aws = aws;
  svc->loop = loop;
  svc->service = service;
  *out = svc;
  return 0;
}

int kcld_svc_bad_arg(const struct kcld_svc *svc, const char *operation,
                     const char *reason)
{
  kcld_log(KCLD_LOG_WARN, "AWS call refused: invalid argument", "service",
           kcld_aws_service_name(svc->service), "op", operation, "reason",
           reason, NULL);
  return KCLD_EINVAL;
}

/* ======== Fault map ======== */

static int row_matches(const char *pattern, const char *type)
{
  size_t n = strlen(pattern);
  if (n > 0 && pattern[n - 1] == '*')
    return strncmp(type, pattern, n - 1) == 0;
  return strcmp(type, pattern) == 0;
}

int kcld_svc_fault(const struct kcld_svc_status *st,
                   const struct kcld_svc_faults *f)
{
  if (!st || st->err == 0)
    return f->ok;
  switch (st->err) {
  case KCLD_ECANCELED:
    return f->canceled;
  case KCLD_ETRANSPORT:
  case KCLD_ETIMEDOUT:
  case KCLD_EPARSE:
    return f->transient;
  case KCLD_ENOTFOUND:
    return f->not_found;
  case KCLD_ECONDITION:
    return f->condition;
  default:
    break;
  }
  if (st->type && st->type[0])
    for (size_t i = 0; i < f->n_rows; i++)
      if (row_matches(f->rows[i].type, st->type))
        return f->rows[i].fault;
  if (st->http_status >= 500)
    return f->transient;
  return f->other;
}

int kcld_svc_transient(const struct kcld_svc_status *st)
{
  if (!st)
    return 0;
  switch (st->err) {
  case KCLD_ETRANSPORT:
  case KCLD_ETIMEDOUT:
    return 1;
  case KCLD_EAWS:
    return st->http_status >= 500 ||
           kcld_aws_error_is_transient(st->http_status, st->type);
  default:
    return 0;
  }
}

/* ======== Operations ======== */

static void op_link(struct kcld_svc *svc, struct kcld_svc_op *op)
{
  op->prev = NULL;
  op->next = svc->ops;
  if (svc->ops)
    svc->ops->prev = op;
  svc->ops = op;
}

static void op_unlink(struct kcld_svc_op *op)
{
  struct kcld_svc *svc = op->svc;
  if (!svc)
    return;
  if (op->prev)
    op->prev->next = op->next;
  else
    svc->ops = op->next;
  if (op->next)
    op->next->prev = op->prev;
  op->prev = op->next = NULL;
  op->svc = NULL;
}

static void op_free(struct kcld_svc_op *op)
{
  if (op->type->clean_up)
    op->type->clean_up(op);
  while (op->mem) {
    struct kcld_svc_mem *m = op->mem;
    op->mem = m->next;
    free(m);
  }
  json_decref(op->keep);
  free(op->text);
  free(op);
}

static void on_timer_closed(uv_handle_t *h)
{
  op_free(h->data);
}

/* Frees the op once it is released and nothing of it is outstanding. */
static void op_maybe_free(struct kcld_svc_op *op)
{
  if (!op->released || op->in_call || op->busy || op->timer_closing)
    return;
  if (op->timer_init) {
    op->timer_closing = 1;
    uv_timer_stop(&op->timer);
    uv_close((uv_handle_t *)&op->timer, on_timer_closed);
    return;
  }
  op_free(op);
}

void *kcld_svc_op_new(struct kcld_svc *svc, size_t size,
                      const struct kcld_svc_op_type *type,
                      const char *operation, int *err)
{
  struct kcld_svc_op *op;
  if (svc->closed) {
    *err = KCLD_ECANCELED;
    return NULL;
  }
  op = calloc(1, size);
  if (!op) {
    *err = KCLD_ENOMEM;
    return NULL;
  }
  op->type = type;
  op->operation = operation;
  op->svc = svc;
  op_link(svc, op);
  *err = 0;
  return op;
}

void kcld_svc_op_resource(struct kcld_svc_op *op, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(op->resource, sizeof(op->resource), fmt, ap);
  va_end(ap);
}

void *kcld_svc_op_alloc(struct kcld_svc_op *op, size_t size)
{
  struct kcld_svc_mem *m = calloc(1, sizeof(*m) + (size ? size : 1));
  if (!m)
    return NULL;
  m->next = op->mem;
  op->mem = m;
  return m->data;
}

json_t *kcld_svc_op_keep(struct kcld_svc_op *op, json_t *v)
{
  if (!v)
    return NULL;
  if (!op->keep && !(op->keep = json_array()))
    return NULL;
  return json_array_append(op->keep, v) == 0 ? v : NULL;
}

static void on_call(const struct kcld_aws_result *res, void *arg)
{
  struct kcld_svc_op *op = arg;
  op->in_call = 0;
  if (op->released || !op->svc) {
    op_maybe_free(op);
    return;
  }
  op->busy = 1;
  op->type->on_result(op, res);
  op->busy = 0;
  op_maybe_free(op);
}

/* One call of op: a JSON `request`, or the REST `rest` (its body taken,
 * also on refusal). */
static int op_call(struct kcld_svc_op *op, const json_t *request,
                   struct kcld_aws_rest *rest,
                   const struct kcld_aws_call_opts *opts)
{
  int rc;
  if (!op->svc) {
    if (rest) {
      free(rest->body);
      rest->body = NULL;
    }
    return KCLD_ECANCELED;
  }
  struct kcld_aws_call_opts own;
  if (op->svc->uncapped) {
    own = opts ? *opts : (struct kcld_aws_call_opts){0};
    own.uncapped = 1;
    opts = &own;
  }
  op->in_call = 1;
  rc = rest ? kcld_aws_rest_call(op->svc->aws, op->svc->service,
                                 op->operation, rest, opts, on_call, op)
            : kcld_aws_call(op->svc->aws, op->svc->service, op->operation,
                            request, opts, on_call, op);
  if (rc < 0)
    op->in_call = 0;
  return rc;
}

int kcld_svc_op_call(struct kcld_svc_op *op, const json_t *request,
                     const struct kcld_aws_call_opts *opts)
{
  return op_call(op, request, NULL, opts);
}

int kcld_svc_op_rest_call(struct kcld_svc_op *op, struct kcld_aws_rest *req,
                          const struct kcld_aws_call_opts *opts)
{
  return op_call(op, NULL, req, opts);
}

static void on_op_timer(uv_timer_t *t)
{
  struct kcld_svc_op *op = t->data;
  if (op->released || !op->svc)
    return;
  op->busy = 1;
  op->type->on_timer(op);
  op->busy = 0;
  op_maybe_free(op);
}

int kcld_svc_op_sleep(struct kcld_svc_op *op, uint64_t ms)
{
  if (!op->svc)
    return KCLD_ECANCELED;
  if (!op->timer_init) {
    if (uv_timer_init(op->svc->loop, &op->timer) != 0)
      return KCLD_EINVAL;
    op->timer.data = op;
    op->timer_init = 1;
  }
  if (uv_timer_start(&op->timer, on_op_timer, ms, 0) != 0)
    return KCLD_EINVAL;
  return 0;
}

void kcld_svc_op_release(struct kcld_svc_op *op)
{
  op_unlink(op);
  op->released = 1;
  op_maybe_free(op);
}

void kcld_svc_op_end(struct kcld_svc_op *op, const struct kcld_svc_status *st)
{
  op_unlink(op);
  op->type->deliver(op, st);
  kcld_svc_op_release(op);
}

void kcld_svc_op_succeed(struct kcld_svc_op *op)
{
  struct kcld_svc_status st = {.type = "", .message = ""};
  kcld_svc_op_end(op, &st);
}

/* op's failure text, allocated at its first failure; a scratch one when
 * out of memory. */
static struct kcld_svc_text *text_of(struct kcld_svc_op *op)
{
  static struct kcld_svc_text s_scratch;
  if (!op->text && !(op->text = calloc(1, sizeof(*op->text))))
    return &s_scratch;
  return op->text;
}

/* "<op> <resource>: " into t->msg; returns the length written. */
static size_t msg_head(const struct kcld_svc_op *op, struct kcld_svc_text *t)
{
  int n = snprintf(t->msg, sizeof(t->msg), "%s%s%s: ", op->operation,
                   op->resource[0] ? " " : "", op->resource);
  if (n < 0)
    return 0;
  return (size_t)n < sizeof(t->msg) ? (size_t)n : sizeof(t->msg) - 1;
}

static void status_vset(struct kcld_svc_op *op, struct kcld_svc_status *st,
                        int err, const char *type, const char *fmt,
                        va_list ap)
{
  struct kcld_svc_text *t = text_of(op);
  size_t n;

  memset(st, 0, sizeof(*st));
  st->err = err;
  snprintf(t->type_buf, sizeof(t->type_buf), "%s", type ? type : "");
  st->type = t->type_buf;
  n = msg_head(op, t);
  if (t->type_buf[0]) {
    size_t room = sizeof(t->msg) - n;
    int w = snprintf(t->msg + n, room, "%s: ", t->type_buf);
    if (w > 0)
      n += (size_t)w < room ? (size_t)w : room - 1;
  }
  vsnprintf(t->msg + n, sizeof(t->msg) - n, fmt, ap);
  st->message = t->msg;
}

void kcld_svc_status_set(struct kcld_svc_op *op, struct kcld_svc_status *st,
                         int err, const char *type, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  status_vset(op, st, err, type, fmt, ap);
  va_end(ap);
}

void kcld_svc_op_fail(struct kcld_svc_op *op, int err, const char *fmt, ...)
{
  struct kcld_svc_status st;
  va_list ap;
  va_start(ap, fmt);
  status_vset(op, &st, err, NULL, fmt, ap);
  va_end(ap);
  kcld_svc_op_end(op, &st);
}

void kcld_svc_close(struct kcld_svc *svc)
{
  if (!svc)
    return;
  svc->closed = 1;
  while (svc->ops) {
    struct kcld_svc_op *op = svc->ops;
    struct kcld_svc_status st;
    op_unlink(op);
    if (op->timer_init)
      uv_timer_stop(&op->timer);
    kcld_svc_status_set(op, &st, KCLD_ECANCELED, NULL, "client closed");
    op->type->deliver(op, &st);
    kcld_svc_op_release(op);
  }
  free(svc);
}

void kcld_svc_status_from(struct kcld_svc_op *op, struct kcld_svc_status *st,
                          const struct kcld_aws_result *res)
{
  struct kcld_svc_text *t;
  size_t n;
  const char *detail = res->message ? res->message : "";

  memset(st, 0, sizeof(*st));
  st->http_status = res->status;
  st->attempts = res->attempts;
  st->type = "";
  st->message = "";
  if (res->err == 0)
    return;

  t = text_of(op);
  t->type_buf[0] = '\0';
  st->err = res->err;
  if (res->err == KCLD_EAWS) {
    snprintf(t->type_buf, sizeof(t->type_buf), "%s",
             res->error_type ? res->error_type : "");
    st->type = t->type_buf;
    for (size_t i = 0; i < sizeof(s_err_map) / sizeof(s_err_map[0]); i++)
      if (strcmp(t->type_buf, s_err_map[i].type) == 0)
        st->err = s_err_map[i].err;
  }
  n = msg_head(op, t);
  snprintf(t->msg + n, sizeof(t->msg) - n, "%s (HTTP %ld, %d attempt%s)%s%s",
           res->err == KCLD_EAWS && t->type_buf[0] ? t->type_buf
                                                    : kcld_strerror(res->err),
           res->status, res->attempts, res->attempts == 1 ? "" : "s",
           detail[0] ? ": " : "", detail);
  st->message = t->msg;
}

void kcld_svc_log_bad_answer(const struct kcld_svc_op *op,
                             const struct kcld_svc_status *st)
{
  kcld_log(KCLD_LOG_WARN, "AWS answer not understood", "service",
           op->svc ? kcld_aws_service_name(op->svc->service) : "", "error",
           st->message, NULL);
}

uint64_t kcld_svc_backoff_ms(int retry, long base_ms, long max_ms)
{
  struct kcld_backoff b = {base_ms > 0 ? (uint64_t)base_ms : 1, 0,
                           KCLD_BACKOFF_EQUAL};
  b.max_ms = max_ms > 0 ? (uint64_t)max_ms : b.base_ms;
  return kcld_backoff_ms(&b, retry > 0 ? (unsigned)retry + 1 : 1);
}

/* ======== Requests ======== */

struct req_op {
  struct kcld_svc_op base;
  const struct kcld_svc_spec *spec;
  kcld_svc_fn cb;
  void *arg;
  void *ctx;
  void *result;          /* spec->shape->size bytes */
  /* Waiting for ACTIVE. */
  uint64_t deadline;     /* uv_now() value; 0 = no wait */
  uint64_t poll_ms;
  long timeout_ms;
  const char *last_state;
  json_t *request;       /* kept for the next poll */
};

static size_t round_up(size_t n)
{
  size_t a = sizeof(max_align_t);
  return (n + a - 1) / a * a;
}

/* Clears all of the result but its status, which becomes `st`, and hands
 * it to the user's callback. */
static void req_deliver(struct kcld_svc_op *base,
                        const struct kcld_svc_status *st)
{
  struct req_op *op = (struct req_op *)base;
  struct kcld_svc_status *rst = op->result;
  if (rst != st) {
    memset(op->result, 0, op->spec->shape->size);
    *rst = *st;
  } else if (st->err) {
    struct kcld_svc_status keep = *st;
    memset(op->result, 0, op->spec->shape->size);
    *rst = keep;
  }
  op->spec->shape->invoke(op->cb, op->result, op->arg);
}

static void req_clean_up(struct kcld_svc_op *base)
{
  json_decref(((struct req_op *)base)->request);
}

static const char *state_name(const struct kcld_svc_spec *spec,
                              const char *s)
{
  for (size_t i = 0; s && spec->states && spec->states[i]; i++)
    if (strcmp(s, spec->states[i]) == 0)
      return spec->states[i];
  return "unknown";
}

/* For a waiting request: 1 when it polls again (or failed to), with the
 * status set on failure; 0 when the answer in `st` is final. */
static int req_poll_again(struct req_op *op, struct kcld_svc_status *st)
{
  uv_loop_t *loop = op->base.svc->loop;
  uint64_t left;
  int rc;

  if (st->err == 0) {
    const char *s = op->spec->state(op->result);
    if (s && strcmp(s, "ACTIVE") == 0)
      return 0;
    op->last_state = state_name(op->spec, s);
  } else if (st->err == KCLD_ENOTFOUND) {
    op->last_state = "not found";
  } else {
    return 0;
  }
  uv_update_time(loop);
  if (uv_now(loop) >= op->deadline) {
    kcld_svc_status_set(&op->base, st, KCLD_ETIMEDOUT, NULL,
                        "not ACTIVE after %ld ms (last: %s)", op->timeout_ms,
                        op->last_state);
    return 0;
  }
  left = op->deadline - uv_now(loop);
  rc = kcld_svc_op_sleep(&op->base, op->poll_ms < left ? op->poll_ms : left);
  op->poll_ms = op->poll_ms * 2 > WAIT_POLL_MAX_MS ? WAIT_POLL_MAX_MS
                                                   : op->poll_ms * 2;
  if (rc == 0)
    return 1;
  kcld_svc_status_set(&op->base, st, rc, NULL, "could not wait: %s",
                      kcld_strerror(rc));
  return 0;
}

static void req_on_result(struct kcld_svc_op *base,
                          const struct kcld_aws_result *res)
{
  struct req_op *op = (struct req_op *)base;
  struct kcld_svc_status *st = op->result;

  memset(op->result, 0, op->spec->shape->size);
  kcld_svc_status_from(base, st, res);
  if (st->err == 0 && op->spec->map &&
      op->spec->map(base, res, op->result) == KCLD_EPARSE)
    kcld_svc_log_bad_answer(base, st);
  if (op->deadline && req_poll_again(op, st))
    return;
  kcld_svc_op_end(base, st);
}

static void req_on_timer(struct kcld_svc_op *base)
{
  struct req_op *op = (struct req_op *)base;
  int rc = kcld_svc_op_call(base, op->request, NULL);
  if (rc < 0)
    kcld_svc_op_fail(base, rc, "could not poll: %s", kcld_strerror(rc));
}

static const struct kcld_svc_op_type s_req_type = {
  .on_result = req_on_result,
  .on_timer = req_on_timer,
  .deliver = req_deliver,
  .clean_up = req_clean_up,
};

struct kcld_svc_op *kcld_svc_request_new(struct kcld_svc *svc,
                                         const struct kcld_svc_spec *spec,
                                         size_t ctx_size, kcld_svc_fn cb,
                                         void *arg, int *err)
{
  size_t head = round_up(sizeof(struct req_op)), ctx = round_up(ctx_size);
  struct req_op *op = kcld_svc_op_new(svc, head + ctx + spec->shape->size,
                                      &s_req_type, spec->operation, err);
  if (!op)
    return NULL;
  op->spec = spec;
  op->cb = cb;
  op->arg = arg;
  op->ctx = (char *)op + head;
  op->result = (char *)op + head + ctx;
  return &op->base;
}

void *kcld_svc_ctx(struct kcld_svc_op *op)
{
  return ((struct req_op *)op)->ctx;
}

void kcld_svc_request_wait(struct kcld_svc_op *base, long timeout_ms)
{
  struct req_op *op = (struct req_op *)base;
  uv_loop_t *loop = base->svc->loop;
  uv_update_time(loop);
  op->timeout_ms = timeout_ms ? timeout_ms : WAIT_DEFAULT_MS;
  op->deadline = uv_now(loop) + (uint64_t)op->timeout_ms;
  op->poll_ms = WAIT_POLL_FIRST_MS;
  op->last_state = "none";
}

int kcld_svc_request_start(struct kcld_svc_op *base, json_t *request,
                           const struct kcld_aws_call_opts *opts)
{
  struct req_op *op = (struct req_op *)base;
  int rc = request ? kcld_svc_op_call(base, request, opts) : KCLD_ENOMEM;
  if (rc == 0 && op->deadline)
    op->request = json_incref(request);
  json_decref(request);
  if (rc < 0)
    kcld_svc_op_release(base);
  return rc;
}

int kcld_svc_request_start_rest(struct kcld_svc_op *op,
                                struct kcld_aws_rest *req,
                                const struct kcld_aws_call_opts *opts)
{
  int rc = kcld_svc_op_rest_call(op, req, opts);
  if (rc < 0)
    kcld_svc_op_release(op);
  return rc;
}

int kcld_svc_send(struct kcld_svc *svc, const struct kcld_svc_spec *spec,
                  json_t *request, const struct kcld_aws_call_opts *opts,
                  kcld_svc_fn cb, void *arg, const char *resource_fmt, ...)
{
  struct kcld_svc_op *op;
  va_list ap;
  int rc;

  op = kcld_svc_request_new(svc, spec, 0, cb, arg, &rc);
  if (!op) {
    json_decref(request);
    return rc;
  }
  va_start(ap, resource_fmt);
  vsnprintf(op->resource, sizeof(op->resource), resource_fmt, ap);
  va_end(ap);
  return kcld_svc_request_start(op, request, opts);
}

/* ======== Request and message helpers ======== */

int kcld_svc_set_str(json_t *req, const char *key, const char *v)
{
  return json_object_set_new(req, key, json_string(v)) == 0 ? 0 : KCLD_ENOMEM;
}

int kcld_svc_set_int(json_t *req, const char *key, json_int_t v)
{
  return json_object_set_new(req, key, json_integer(v)) == 0 ? 0 : KCLD_ENOMEM;
}

int kcld_svc_set_ref(json_t *req, const char *key, const json_t *v)
{
  return json_object_set(req, key, (json_t *)v) == 0 ? 0 : KCLD_ENOMEM;
}

json_t *kcld_svc_req(json_t *req, int failed)
{
  if (!failed)
    return req;
  json_decref(req);
  return NULL;
}

const char *kcld_svc_str(const json_t *obj, const char *key)
{
  return json_string_value(json_object_get(obj, key));
}

void kcld_svc_json_brief(char *dst, size_t cap, const json_t *v, size_t max)
{
  const size_t flags = JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS;
  char text[512], *s;
  size_t len;
  if (cap == 0)
    return;
  dst[0] = '\0';
  if (!v)
    return;
  /* Into a stack buffer first: json_dumps grows one of its own. */
  len = json_dumpb(v, text, sizeof(text), flags);
  s = len > sizeof(text) ? json_dumps(v, flags) : len ? text : NULL;
  if (!s)
    return;
  len = s == text ? len : strlen(s);
  if (max > cap - 1)
    max = cap - 1;
  /* Bounded by len: text is not NUL-terminated. */
  if (len > max && max > 3)
    snprintf(dst, cap, "%.*s...", (int)(max - 3), s);
  else
    snprintf(dst, cap, "%.*s", (int)(len < max ? len : max), s);
  if (s != text)
    free(s);
}
