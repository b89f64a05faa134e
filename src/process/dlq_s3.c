/* dlq_s3.c — dead-letter messages as S3 objects, and SQS messages whose
 * large bodies go to S3 (see dlq_s3.h). */
#include "process/dlq_s3.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "err.h"

/* ======== Keys ======== */

/* The string value of the first "name":"..." in body[0..len), copied
 * (unescaped values only: a timestamp, a UUID) into buf; 0 or -1. */
static int head_field(const char *body, size_t len, const char *name,
                      char *buf, size_t n)
{
  char pat[64];
  const char *p, *end;
  int pn = snprintf(pat, sizeof(pat), "\"%s\":\"", name);

  if (pn < 0 || (size_t)pn >= sizeof(pat))
    return -1;
  p = memmem(body, len, pat, (size_t)pn);
  if (!p)
    return -1;
  p += pn;
  end = memchr(p, '"', len - (size_t)(p - body));
  if (!end || (size_t)(end - p) >= n || end == p)
    return -1;
  memcpy(buf, p, (size_t)(end - p));
  buf[end - p] = '\0';
  return strchr(buf, '\\') ? -1 : 0;
}

int kcld_dlq_s3_key(char *buf, size_t n, const char *prefix,
                    const char *application, const char *shard_id,
                    const char *body, size_t len)
{
  char ts[40], id[64];
  int k;

  if (!buf || !prefix || !application || !shard_id || !body ||
      head_field(body, len, "timestamp", ts, sizeof(ts)) != 0 ||
      head_field(body, len, "requestId", id, sizeof(id)) != 0 ||
      strlen(ts) < 19 || ts[4] != '-' || ts[7] != '-' || ts[10] != 'T')
    return KCLD_EINVAL;
  /* "2026-12-05T23:40:01.123Z" -> 2026/12/05/2026-12-05T23.40.01 */
  k = snprintf(buf, n,
               "%saws/kinesis/%s/%s/%.4s/%.2s/%.2s/%.10sT%.2s.%.2s.%.2s-%s",
               prefix, application, shard_id, ts, ts + 5, ts + 8, ts,
               ts + 11, ts + 14, ts + 17, id);
  return k > 0 && (size_t)k < n ? 0 : KCLD_EINVAL;
}

/* ======== The S3 store ======== */

struct s3_store {
  struct kcld_dlq_store base;
  struct kcld_s3 *s3;
  struct kcld_s3_uri uri;
  char *application;
  char where[KCLD_S3_BUCKET_MAX + KCLD_S3_KEY_MAX + 8];
};

/* One object written for a message; done(err, detail, arg) when over. */
typedef void (*put_cb)(struct kcld_dlq_msg *m, int err, const char *detail,
                       const char *key, void *arg);

struct put {
  struct kcld_dlq_msg *m;
  char key[KCLD_S3_KEY_MAX + 1];
  put_cb cb;
  void *arg;
};

static void on_put(const struct kcld_svc_status *st, void *arg)
{
  struct put *p = arg;
  p->cb(p->m, st->err, st->err ? st->message : NULL, p->key, p->arg);
  free(p);
}

/* PutObject of m's body under its key.  Returns 0 (cb runs later) or a
 * negative KCLD_E* code (cb never runs). */
static int put_message(struct s3_store *s, struct kcld_dlq_msg *m,
                       put_cb cb, void *arg)
{
  struct kcld_s3_put_req rq;
  struct put *p = calloc(1, sizeof(*p));
  int rc;

  if (!p)
    return KCLD_ENOMEM;
  rc = kcld_dlq_s3_key(p->key, sizeof(p->key), s->uri.prefix,
                       s->application, m->shard_id, m->body, m->len);
  if (rc != 0) {
    free(p);
    return rc;
  }
  memset(&rq, 0, sizeof(rq));
  rq.bucket = s->uri.bucket;
  rq.key = p->key;
  rq.content_type = "application/json";
  /* The client takes its body; the message keeps its own until kept. */
  rq.body = malloc(m->len + 1);
  if (!rq.body) {
    free(p);
    return KCLD_ENOMEM;
  }
  memcpy(rq.body, m->body, m->len);
  rq.body_len = m->len;
  p->m = m;
  p->cb = cb;
  p->arg = arg;
  rc = kcld_s3_put_object(s->s3, &rq, on_put, p);
  if (rc != 0)
    free(p);
  return rc;
}

/* How a store call went: its first error, and the store's callback. */
struct outcome {
  int err;
  char detail[512];
  kcld_dlq_store_cb cb;
  void *arg;
};

/* Keeps the first error (and its detail) of the call. */
static void outcome_note(struct outcome *o, int err, const char *detail)
{
  if (!err || o->err)
    return;
  o->err = err;
  snprintf(o->detail, sizeof(o->detail), "%s", detail ? detail : "");
}

/* Ends the store call: cb with the first error (or `err` when none was
 * noted). */
static void outcome_end(const struct outcome *o, int err)
{
  err = o->err ? o->err : err;
  o->cb(err, err && *o->detail ? o->detail : NULL, o->arg);
}

/* A store call: several PutObject calls, cb once the last answered. */
struct call {
  size_t pending;
  struct outcome out;
};

static void call_end_maybe(struct call *c)
{
  if (--c->pending)
    return;
  outcome_end(&c->out, 0);
  free(c);
}

static void on_object(struct kcld_dlq_msg *m, int err, const char *detail,
                      const char *key, void *arg)
{
  struct call *c = arg;
  (void)key;
  if (!err)
    m->stored = 1;
  outcome_note(&c->out, err, detail);
  call_end_maybe(c);
}

static int s3_store(struct kcld_dlq_store *base,
                    struct kcld_dlq_msg *const *msgs, size_t n,
                    kcld_dlq_store_cb cb, void *arg)
{
  struct s3_store *s = (struct s3_store *)base;
  struct call *c = calloc(1, sizeof(*c));
  int first = 0;

  if (!c)
    return KCLD_ENOMEM;
  c->out.cb = cb;
  c->out.arg = arg;
  c->pending = 1;              /* held until every put has started */
  for (size_t i = 0; i < n; i++) {
    int rc;
    c->pending++;
    rc = put_message(s, msgs[i], on_object, c);
    if (rc != 0) {
      c->pending--;
      outcome_note(&c->out, rc, "PutObject could not start");
      if (!first)
        first = rc;
    }
  }
  if (c->pending == 1 && first) { /* nothing started: no callback */
    free(c);
    return first;
  }
  call_end_maybe(c);           /* cb runs only from the loop: a put's
                                  answer never comes inside its start */
  return 0;
}

static void s3_free(struct kcld_dlq_store *base)
{
  struct s3_store *s = (struct s3_store *)base;
  free(s->application);
  free(s);
}

static const struct kcld_dlq_store_ops s_s3_ops = {
  .name = "s3", .store = s3_store, .free = s3_free,
};

int kcld_dlq_s3_new(struct kcld_s3 *s3, const char *location,
                    const char *application, struct kcld_dlq_store **out,
                    const char **why)
{
  struct s3_store *s;
  const char *w = NULL;

  if (why)
    *why = NULL;
  if (!s3 || !location || !application || !*application || !out)
    return KCLD_EINVAL;
  s = calloc(1, sizeof(*s));
  if (!s)
    return KCLD_ENOMEM;
  if (kcld_s3_uri_parse(location, &s->uri, &w) != 0) {
    if (why)
      *why = w;
    free(s);
    return KCLD_EINVAL;
  }
  if (!(s->application = strdup(application))) {
    free(s);
    return KCLD_ENOMEM;
  }
  s->s3 = s3;
  snprintf(s->where, sizeof(s->where), "s3://%s/%s", s->uri.bucket,
           s->uri.prefix);
  s->base.ops = &s_s3_ops;
  s->base.body_limit = 0;
  s->base.where = s->where;
  *out = &s->base;
  return 0;
}

/* ======== SQS, with large messages in S3 ======== */

struct offload {
  struct kcld_dlq_store base;
  struct kcld_dlq_store *sqs;
  struct s3_store *s3;
};

/* One store call: the large messages put to S3 first, then every message
 * that is ready (small ones as they are, large ones as pointers) to the
 * queue in one call of its store. */
struct ocall {
  struct offload *o;
  struct kcld_dlq_msg *const *msgs;
  size_t n;
  struct kcld_dlq_msg *fwd;    /* [n]: what the queue gets for msgs[i] */
  char **pointer;              /* [n]: the pointer bodies (malloc'd) */
  int *ready;                  /* [n]: fwd[i] may go to the queue */
  struct kcld_dlq_msg **todo;  /* [n]: scratch for the queue's store */
  size_t pending;
  int starting;                /* inside offload_store: no cb from here */
  struct outcome out;
};

static void ocall_free(struct ocall *c)
{
  for (size_t i = 0; c->pointer && i < c->n; i++)
    free(c->pointer[i]);
  free(c->pointer);
  free(c->fwd);
  free(c->ready);
  free(c->todo);
  free(c);
}

/* The message's on-failure record without its records (its head, built
 * with the body by process/dlq.c: the large body is not parsed again),
 * naming the object that holds them all; NULL when out of memory. */
static char *pointer_body(const struct kcld_dlq_msg *m, const char *bucket,
                          const char *key)
{
  json_t *o = m->head ? json_loadb(m->head, m->head_len, 0, NULL) : NULL;
  char *text = NULL;

  if (!json_is_object(o))
    goto done;
  if (json_object_set_new(o, "s3Object",
                          json_pack("{s:s,s:s,s:I}", "bucket", bucket, "key",
                                    key, "size", (json_int_t)m->len)) == 0)
    text = json_dumps(o, JSON_COMPACT);
done:
  json_decref(o);
  return text;
}

static void on_queued(int err, const char *detail, void *arg)
{
  struct ocall *c = arg;

  for (size_t i = 0; i < c->n; i++)
    if (c->ready[i] && c->fwd[i].stored)
      c->msgs[i]->stored = 1;
  outcome_note(&c->out, err, detail);
  outcome_end(&c->out, 0);
  ocall_free(c);
}

/* Every S3 put has answered: the ready messages to the queue.  Returns 0
 * once cb is settled (called, or to be called by the queue's store), or
 * the error of a queue store call that did not start while still inside
 * offload_store (the caller returns it; cb never runs). */
static int forward(struct ocall *c)
{
  struct kcld_dlq_store *q = c->o->sqs;
  size_t k = 0;
  int rc;

  for (size_t i = 0; i < c->n; i++)
    if (c->ready[i])
      c->todo[k++] = &c->fwd[i];
  if (k == 0 && c->starting)
    return c->out.err ? c->out.err : KCLD_EIO;
  if (k == 0) {
    outcome_end(&c->out, KCLD_EIO);
    ocall_free(c);
    return 0;
  }
  rc = q->ops->store(q, c->todo, k, on_queued, c);
  if (rc == 0)
    return 0;
  if (c->starting)
    return rc;
  outcome_note(&c->out, rc, "SendMessageBatch could not start");
  outcome_end(&c->out, 0);
  ocall_free(c);
  return 0;
}

static void on_offloaded(struct kcld_dlq_msg *m, int err, const char *detail,
                         const char *key, void *arg)
{
  struct ocall *c = arg;
  size_t i = 0;

  while (i < c->n && c->msgs[i] != m)
    i++;
  if (!err && i < c->n) {
    c->pointer[i] = pointer_body(m, c->o->s3->uri.bucket, key);
    if (c->pointer[i]) {
      c->fwd[i].body = c->pointer[i];
      c->fwd[i].len = strlen(c->pointer[i]);
      c->ready[i] = 1;
    } else {
      err = KCLD_ENOMEM;
      detail = "the pointer message could not be made";
    }
  }
  outcome_note(&c->out, err, detail);
  if (--c->pending == 0)
    forward(c);
}

static int offload_store(struct kcld_dlq_store *base,
                         struct kcld_dlq_msg *const *msgs, size_t n,
                         kcld_dlq_store_cb cb, void *arg)
{
  struct offload *o = (struct offload *)base;
  struct ocall *c = calloc(1, sizeof(*c));
  int rc;

  if (!c)
    return KCLD_ENOMEM;
  *c = (struct ocall){
    .o = o, .msgs = msgs, .n = n, .out = {.cb = cb, .arg = arg},
    .starting = 1,
    .pending = 1,              /* held while the puts start */
    .fwd = calloc(n, sizeof(*c->fwd)),
    .pointer = calloc(n, sizeof(*c->pointer)),
    .ready = calloc(n, sizeof(*c->ready)),
    .todo = calloc(n, sizeof(*c->todo))};
  if (!c->fwd || !c->pointer || !c->ready || !c->todo) {
    ocall_free(c);
    return KCLD_ENOMEM;
  }
  for (size_t i = 0; i < n; i++) {
    c->fwd[i] = *msgs[i];
    c->fwd[i].stored = 0;
    if (msgs[i]->len <= o->sqs->body_limit) {
      c->ready[i] = 1;
      continue;
    }
    c->pending++;
    rc = put_message(o->s3, msgs[i], on_offloaded, c);
    if (rc != 0) {
      c->pending--;
      outcome_note(&c->out, rc, "PutObject could not start");
    }
  }
  if (--c->pending > 0) {      /* puts out: forward() runs from the loop */
    c->starting = 0;
    return 0;
  }
  rc = forward(c);             /* no put started: the queue now */
  if (rc != 0)
    ocall_free(c);
  return rc;
}

static void offload_free(struct kcld_dlq_store *base)
{
  struct offload *o = (struct offload *)base;
  o->sqs->ops->free(o->sqs);
  s3_free(&o->s3->base);
  free(o);
}

static const struct kcld_dlq_store_ops s_offload_ops = {
  .name = "sqs+s3", .store = offload_store, .free = offload_free,
};

int kcld_dlq_s3_offload_new(struct kcld_dlq_store *sqs,
                            struct kcld_dlq_store *s3,
                            struct kcld_dlq_store **out)
{
  struct offload *o = NULL;
  int rc = KCLD_EINVAL;

  if (!sqs || !s3 || !out || s3->ops != &s_s3_ops || !sqs->body_limit)
    goto fail;
  rc = KCLD_ENOMEM;
  if (!(o = calloc(1, sizeof(*o))))
    goto fail;
  o->sqs = sqs;
  o->s3 = (struct s3_store *)s3;
  o->base.ops = &s_offload_ops;
  o->base.body_limit = 0;      /* whole ranges: a large one goes to S3 */
  o->base.wants_head = 1;      /* the queue's pointer message */
  o->base.where = sqs->where;
  *out = &o->base;
  return 0;
fail:
  if (sqs)
    sqs->ops->free(sqs);
  if (s3)
    s3->ops->free(s3);
  return rc;
}
