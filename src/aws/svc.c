/* svc.c — operations in flight, error mapping and messages shared by the
 * Kinesis, DynamoDB and SQS wrappers. */
#include "aws/svc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

/* Service error types with a code of their own; the rest are KCLD_EAWS. */
static const struct {
  const char *type;
  int err;
} s_err_map[] = {
  {"ResourceNotFoundException", KCLD_ENOTFOUND},
  {"QueueDoesNotExist", KCLD_ENOTFOUND},
  {"AWS.SimpleQueueService.NonExistentQueue", KCLD_ENOTFOUND},
  {"ConditionalCheckFailedException", KCLD_ECONDITION},
};

void kcld_svc_init(struct kcld_svc *svc, struct kcld_aws *aws,
                   uv_loop_t *loop, enum kcld_aws_service service)
{
  memset(svc, 0, sizeof(*svc));
  svc->aws = aws;
  svc->loop = loop;
  svc->service = service;
  svc->rng = uv_hrtime() ^ ((uint64_t)(uintptr_t)svc << 20);
  if (svc->rng == 0)
    svc->rng = 0x9E3779B97F4A7C15ULL;
}

void *kcld_svc_new(size_t size, struct kcld_aws *aws, uv_loop_t *loop,
                   enum kcld_aws_service service, int *err)
{
  struct kcld_svc *svc;
  if (!aws || !loop) {
    *err = KCLD_EINVAL;
    return NULL;
  }
  svc = calloc(1, size);
  if (!svc) {
    *err = KCLD_ENOMEM;
    return NULL;
  }
  kcld_svc_init(svc, aws, loop, service);
  *err = 0;
  return svc;
}

void kcld_svc_free(struct kcld_svc *svc)
{
  if (!svc)
    return;
  kcld_svc_close(svc);
  free(svc);
}

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

int kcld_svc_op_call(struct kcld_svc_op *op, const json_t *request,
                     const struct kcld_aws_call_opts *opts)
{
  int rc;
  if (!op->svc)
    return KCLD_ECANCELED;
  op->in_call = 1;
  rc = kcld_aws_call(op->svc->aws, op->svc->service, op->operation, request,
                     opts, on_call, op);
  if (rc < 0)
    op->in_call = 0;
  return rc;
}

int kcld_svc_op_start(struct kcld_svc_op *op, json_t *request,
                      const struct kcld_aws_call_opts *opts)
{
  int rc = request ? kcld_svc_op_call(op, request, opts) : KCLD_ENOMEM;
  json_decref(request);
  if (rc < 0)
    kcld_svc_op_release(op);
  return rc;
}

void kcld_svc_op_poll(struct kcld_svc_op *op, const json_t *request)
{
  int rc = kcld_svc_op_call(op, request, NULL);
  if (rc < 0) {
    struct kcld_svc_status st;
    kcld_svc_status_set(op, &st, rc, NULL, "could not poll: %s",
                        kcld_strerror(rc));
    kcld_svc_op_fail(op, &st);
  }
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

void kcld_svc_op_done(struct kcld_svc_op *op)
{
  op_unlink(op);
}

void kcld_svc_op_release(struct kcld_svc_op *op)
{
  op_unlink(op);
  op->released = 1;
  op_maybe_free(op);
}

void kcld_svc_op_fail(struct kcld_svc_op *op, const struct kcld_svc_status *st)
{
  kcld_svc_op_done(op);
  op->type->fail(op, st);
  kcld_svc_op_release(op);
}

void kcld_svc_close(struct kcld_svc *svc)
{
  svc->closed = 1;
  while (svc->ops) {
    struct kcld_svc_op *op = svc->ops;
    struct kcld_svc_status st;
    op_unlink(op);
    if (op->timer_init)
      uv_timer_stop(&op->timer);
    kcld_svc_status_set(op, &st, KCLD_ECANCELED, NULL, "client closed");
    op->type->fail(op, &st);
    kcld_svc_op_release(op);
  }
}

/* "<op> <resource>: " into op->msg; returns the length written. */
static size_t msg_head(struct kcld_svc_op *op)
{
  int n = snprintf(op->msg, sizeof(op->msg), "%s%s%s: ", op->operation,
                   op->resource[0] ? " " : "", op->resource);
  if (n < 0)
    return 0;
  return (size_t)n < sizeof(op->msg) ? (size_t)n : sizeof(op->msg) - 1;
}

void kcld_svc_status_from(struct kcld_svc_op *op, struct kcld_svc_status *st,
                          const struct kcld_aws_result *res)
{
  size_t n;
  const char *detail = res->message ? res->message : "";

  memset(st, 0, sizeof(*st));
  st->http_status = res->status;
  st->attempts = res->attempts;
  st->type = "";
  st->message = "";
  op->type_buf[0] = '\0';
  op->msg[0] = '\0';
  if (res->err == 0)
    return;

  st->err = res->err;
  if (res->err == KCLD_EAWS) {
    snprintf(op->type_buf, sizeof(op->type_buf), "%s",
             res->error_type ? res->error_type : "");
    st->type = op->type_buf;
    for (size_t i = 0; i < sizeof(s_err_map) / sizeof(s_err_map[0]); i++)
      if (strcmp(op->type_buf, s_err_map[i].type) == 0)
        st->err = s_err_map[i].err;
  }
  n = msg_head(op);
  snprintf(op->msg + n, sizeof(op->msg) - n, "%s (HTTP %ld, %d attempt%s)%s%s",
           res->err == KCLD_EAWS && op->type_buf[0] ? op->type_buf
                                                     : kcld_strerror(res->err),
           res->status, res->attempts, res->attempts == 1 ? "" : "s",
           detail[0] ? ": " : "", detail);
  st->message = op->msg;
}

void kcld_svc_status_set(struct kcld_svc_op *op, struct kcld_svc_status *st,
                         int err, const char *type, const char *fmt, ...)
{
  va_list ap;
  size_t n;

  memset(st, 0, sizeof(*st));
  st->err = err;
  snprintf(op->type_buf, sizeof(op->type_buf), "%s", type ? type : "");
  st->type = op->type_buf;
  n = msg_head(op);
  if (op->type_buf[0]) {
    size_t room = sizeof(op->msg) - n;
    int w = snprintf(op->msg + n, room, "%s: ", op->type_buf);
    if (w > 0)
      n += (size_t)w < room ? (size_t)w : room - 1;
  }
  va_start(ap, fmt);
  vsnprintf(op->msg + n, sizeof(op->msg) - n, fmt, ap);
  va_end(ap);
  st->message = op->msg;
}

static uint64_t next_rand(struct kcld_svc *svc)
{
  /* xorshift64*: jitter only, not for secrets. */
  svc->rng ^= svc->rng >> 12;
  svc->rng ^= svc->rng << 25;
  svc->rng ^= svc->rng >> 27;
  return svc->rng * 0x2545F4914F6CDD1DULL;
}

uint64_t kcld_svc_backoff_ms(struct kcld_svc *svc, int retry, long base_ms,
                             long max_ms)
{
  uint64_t d = base_ms > 0 ? (uint64_t)base_ms : 1;
  uint64_t cap = max_ms > 0 ? (uint64_t)max_ms : d;
  for (int i = 0; i < retry && d < cap; i++)
    d *= 2;
  if (d > cap)
    d = cap;
  d = d / 2 + next_rand(svc) % (d / 2 + 1);
  return d ? d : 1;
}

void kcld_svc_json_brief(char *dst, size_t cap, const json_t *v, size_t max)
{
  char *s;
  size_t len;
  if (cap == 0)
    return;
  dst[0] = '\0';
  if (!v)
    return;
  s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
  if (!s)
    return;
  len = strlen(s);
  if (max > cap - 1)
    max = cap - 1;
  if (len > max && max > 3)
    snprintf(dst, cap, "%.*s...", (int)(max - 3), s);
  else
    snprintf(dst, cap, "%.*s", (int)max, s);
  free(s);
}
