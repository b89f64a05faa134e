/* dlq.c — on-failure records built once, kept by a store, stored again
 * until kept (see dlq.h). */
#include "process/dlq.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/rand.h>

#include "base/base64.h"
#include "base/rand.h"
#include "err.h"
#include "log.h"

/* Room kept in a limited message for the JSON around the records. */
#define BODY_SLACK 8192

struct kcld_dlq {
  uv_loop_t *loop;
  struct kcld_dlq_store *store;
  char *function_arn;
  char *stream_arn;
  int include_records;
  uint64_t backoff_base_ms, backoff_max_ms;
  struct kcld_dlq_send *sends;   /* list of live sends */
  size_t live;                   /* sends not yet freed */
  int closing;
};

struct msg {
  struct kcld_dlq_msg m;
  char *body;
  char *head;                    /* with store->wants_head */
  char *start_sequence;
  char *error_class;
};

struct kcld_dlq_send {
  struct kcld_dlq_send *next, *prev;
  struct kcld_dlq *q;
  char *shard_id;
  struct msg *msgs;
  struct kcld_dlq_msg **todo;    /* scratch: the ones not yet kept */
  size_t n;
  unsigned failing;              /* store calls failed in a row */
  uint64_t failing_since;
  char error[256];
  int in_call;                   /* a store call is out */
  int finished;                  /* cb ran or the send was cancelled */
  uv_timer_t timer;
  kcld_dlq_cb cb;
  void *arg;
};

static void dlq_free(struct kcld_dlq *q)
{
  if (q->store)
    q->store->ops->free(q->store);
  free(q->function_arn);
  free(q->stream_arn);
  free(q);
}

int kcld_dlq_configure(struct kcld_dlq *q, const struct kcld_dlq_opts *o)
{
  if (!o->backoff_base_ms || o->backoff_max_ms < o->backoff_base_ms)
    return KCLD_EINVAL;
  q->include_records = o->include_records;
  q->backoff_base_ms = o->backoff_base_ms;
  q->backoff_max_ms = o->backoff_max_ms;
  return 0;
}

int kcld_dlq_new(const struct kcld_dlq_opts *o, struct kcld_dlq **out)
{
  struct kcld_dlq *q;

  if (!o || !o->store)
    return KCLD_EINVAL;
  if (!o->loop || !o->function_arn || !o->backoff_base_ms ||
      o->backoff_max_ms < o->backoff_base_ms || !out) {
    o->store->ops->free(o->store);
    return KCLD_EINVAL;
  }
  q = calloc(1, sizeof(*q));
  if (!q) {
    o->store->ops->free(o->store);
    return KCLD_ENOMEM;
  }
  q->loop = o->loop;
  q->store = o->store;
  q->function_arn = strdup(o->function_arn);
  q->stream_arn = strdup(o->stream_arn ? o->stream_arn : "");
  kcld_dlq_configure(q, o);
  if (!q->function_arn || !q->stream_arn) {
    dlq_free(q);
    return KCLD_ENOMEM;
  }
  *out = q;
  return 0;
}

/* ======== Bodies ======== */

static void iso_time(int64_t ms, char *buf, size_t n)
{
  time_t s = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&s, &tm);
  snprintf(buf, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
           (int)(ms % 1000));
}

static json_t *arrival(int64_t ms)
{
  if (ms < 0)
    return json_null();
  return json_real((double)ms / 1000.0);
}

static void request_id(char *buf)
{
  unsigned char b[16];
  if (RAND_bytes(b, sizeof(b)) != 1)
    for (size_t i = 0; i < sizeof(b); i++)
      b[i] = (unsigned char)kcld_rand_u32();
  b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
  b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
  sprintf(buf, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
          "%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5],
          b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

/* The "records" entry of one record; without data when `limit` is set and
 * it cannot fit in a message of its own. */
static json_t *record_json(const struct kcld_record *r, int with_data,
                           size_t limit, int *truncated)
{
  json_t *o = json_pack("{s:s%,s:s,s:I,s:o}", "partitionKey",
                        r->partition_key, r->partition_key_len,
                        "sequenceNumber", r->sequence_number,
                        "subSequenceNumber", (json_int_t)r->sub_sequence_number,
                        "approximateArrivalTimestamp",
                        arrival(r->arrival_ms));
  size_t b64 = kcld_base64_encoded_len(r->data_len);

  *truncated = 0;
  if (!o || !with_data)
    return o;
  if (limit && b64 + r->partition_key_len + 512 > limit) {
    *truncated = 1;
    json_object_set_new(o, "truncated", json_true());
    json_object_set_new(o, "dataLength", json_integer((json_int_t)r->data_len));
    return o;
  }
  char *enc = kcld_base64_encode_new(r->data, r->data_len, NULL);
  if (!enc) {
    json_decref(o);
    return NULL;
  }
  json_object_set_new(o, "data", json_stringn(enc, b64));
  free(enc);
  return o;
}

/* One message for records[from..to) with `records` (taken; NULL = none)
 * and the requestId rid. */
static char *message_body(const struct kcld_dlq *q,
                          const struct kcld_dlq_failure *f, size_t from,
                          size_t to, json_t *records, int64_t now_ms,
                          const char *rid)
{
  const struct kcld_record *first = f->records[from];
  const struct kcld_record *last = f->records[to - 1];
  char ts[64], af[64], al[64];
  json_t *body;
  char *text;

  iso_time(now_ms, ts, sizeof(ts));
  iso_time(first->arrival_ms < 0 ? 0 : first->arrival_ms, af, sizeof(af));
  iso_time(last->arrival_ms < 0 ? 0 : last->arrival_ms, al, sizeof(al));
  body = json_pack(
    "{s:{s:s,s:s,s:s,s:i},s:{s:i,s:s,s:s},s:s,s:s,"
    "s:{s:s,s:s,s:s,s:s,s:s,s:i,s:s}}",
    "requestContext", "requestId", rid, "functionArn", q->function_arn,
    "condition", kcld_policy_condition_name(f->condition),
    "approximateInvokeCount", (int)f->invoke_count,
    "responseContext", "statusCode", 200, "executedVersion", "$LATEST",
    "functionError", "Unhandled",
    "version", "1.0", "timestamp", ts,
    "KinesisBatchInfo", "shardId", f->shard_id,
    "startSequenceNumber", first->sequence_number,
    "endSequenceNumber", last->sequence_number,
    "approximateArrivalOfFirstRecord", af,
    "approximateArrivalOfLastRecord", al, "batchSize", (int)(to - from),
    "streamArn", q->stream_arn);
  if (!body) {
    json_decref(records);
    return NULL;
  }
  if (records)
    json_object_set_new(body, "records", records);
  json_object_set_new(body, "errorType",
                      json_string(f->error_type ? f->error_type : ""));
  json_object_set_new(body, "errorMessage",
                      json_string(f->error_message ? f->error_message : ""));
  text = json_dumps(body, JSON_COMPACT);
  json_decref(body);
  return text;
}

/* The body for records[from..to) with their records in `recs` (taken).
 * When the estimate was wrong and the body would not fit in a limited
 * message, it is made again with every record as metadata only. */
static char *fitted_body(const struct kcld_dlq *q,
                         const struct kcld_dlq_failure *f, size_t from,
                         size_t to, json_t *recs, int64_t now_ms,
                         const char *rid)
{
  size_t limit = q->store->body_limit;
  char *body = message_body(q, f, from, to, recs, now_ms, rid);
  json_t *meta;

  if (!body || !recs || !limit || strlen(body) <= limit)
    return body;
  free(body);
  if (!(meta = json_array()))
    return NULL;
  for (size_t i = from; i < to; i++) {
    int truncated;
    json_t *r = record_json(f->records[i], 0, 0, &truncated);
    if (!r) {
      json_decref(meta);
      return NULL;
    }
    json_object_set_new(r, "truncated", json_true());
    json_object_set_new(r, "dataLength",
                        json_integer((json_int_t)f->records[i]->data_len));
    json_array_append_new(meta, r);
  }
  return message_body(q, f, from, to, meta, now_ms, rid);
}

/* The message for records[from..to) (fitted_body), and with `head` (not
 * NULL) its head: the same message, same requestId, without records.
 * NULL (and no head) when out of memory. */
static char *chunk_body(const struct kcld_dlq *q,
                        const struct kcld_dlq_failure *f, size_t from,
                        size_t to, json_t *recs, int64_t now_ms, char **head)
{
  char rid[40], *body;

  request_id(rid);
  body = fitted_body(q, f, from, to, recs, now_ms, rid);
  if (body && head &&
      !(*head = message_body(q, f, from, to, NULL, now_ms, rid))) {
    free(body);
    body = NULL;
  }
  return body;
}

/* Builds the messages; *counts (when not NULL) gets the records of each,
 * *heads (when not NULL) the head of each (chunk_body). */
static int build(const struct kcld_dlq *q, const struct kcld_dlq_failure *f,
                 int64_t now_ms, char ***bodies, size_t *n, size_t **counts,
                 char ***heads)
{
  size_t limit = q->store->body_limit;
  size_t room = limit > BODY_SLACK ? limit - BODY_SLACK : limit;
  char **out = calloc(f->count, sizeof(*out));
  char **hd = heads ? calloc(f->count, sizeof(*hd)) : NULL;
  size_t *cn = calloc(f->count, sizeof(*cn));
  size_t nout = 0, from = 0, size = 0;
  json_t *recs = NULL;
  int rc = KCLD_ENOMEM;

  if (!out || !cn || (heads && !hd))
    goto fail;
  for (size_t i = 0; i < f->count; i++) {
    int truncated = 0;
    json_t *r = NULL;
    size_t rsize = 0;
    if (q->include_records) {
      r = record_json(f->records[i], 1, room, &truncated);
      if (!r)
        goto fail;
      rsize = 160 + f->records[i]->partition_key_len +
              (truncated ? 0
                         : kcld_base64_encoded_len(f->records[i]->data_len));
    }
    if (limit && i > from && size + rsize > room) {
      out[nout] = chunk_body(q, f, from, i, recs, now_ms,
                             hd ? &hd[nout] : NULL);
      recs = NULL;
      if (!out[nout]) {
        json_decref(r);
        goto fail;
      }
      cn[nout++] = i - from;
      from = i;
      size = 0;
    }
    if (r) {
      if (!recs && !(recs = json_array())) {
        json_decref(r);
        goto fail;
      }
      json_array_append_new(recs, r);
    }
    size += rsize;
  }
  out[nout] = chunk_body(q, f, from, f->count, recs, now_ms,
                         hd ? &hd[nout] : NULL);
  recs = NULL;
  if (!out[nout])
    goto fail;
  cn[nout++] = f->count - from;
  *bodies = out;
  *n = nout;
  if (counts)
    *counts = cn;
  else
    free(cn);
  if (heads)
    *heads = hd;
  return 0;
fail:
  json_decref(recs);
  for (size_t i = 0; out && i < nout; i++) {
    free(out[i]);
    free(hd ? hd[i] : NULL);
  }
  free(out);
  free(hd);
  free(cn);
  return rc;
}

int kcld_dlq_build(const struct kcld_dlq *q, const struct kcld_dlq_failure *f,
                   int64_t now_ms, char ***bodies, size_t *n)
{
  if (!q || !f || !f->records || f->count == 0 || !f->shard_id || !bodies ||
      !n)
    return KCLD_EINVAL;
  return build(q, f, now_ms, bodies, n, NULL, NULL);
}

/* ======== Sending ======== */

static void send_release(struct kcld_dlq_send *s)
{
  for (size_t i = 0; i < s->n; i++) {
    free(s->msgs[i].body);
    free(s->msgs[i].head);
    free(s->msgs[i].start_sequence);
    free(s->msgs[i].error_class);
  }
  free(s->msgs);
  free(s->todo);
  free(s->shard_id);
}

static void on_timer_closed(uv_handle_t *h)
{
  struct kcld_dlq_send *s = h->data;
  struct kcld_dlq *q = s->q;

  send_release(s);
  if (s->prev)
    s->prev->next = s->next;
  else
    q->sends = s->next;
  if (s->next)
    s->next->prev = s->prev;
  free(s);
  if (--q->live == 0 && q->closing)
    dlq_free(q);
}

/* Frees s once it is over and no store call is out. */
static void send_free_maybe(struct kcld_dlq_send *s)
{
  if (!s->finished || s->in_call)
    return;
  uv_timer_stop(&s->timer);
  if (!uv_is_closing((uv_handle_t *)&s->timer))
    uv_close((uv_handle_t *)&s->timer, on_timer_closed);
}

static void store_round(struct kcld_dlq_send *s);

static void on_timer(uv_timer_t *t)
{
  store_round(t->data);
}

/* A store call failed (err) or could not start: try again later. */
static void store_failed(struct kcld_dlq_send *s, int err, const char *detail)
{
  struct kcld_dlq *q = s->q;
  struct kcld_policy p = {0, 0, -1, q->backoff_base_ms, q->backoff_max_ms};

  if (s->failing++ == 0)
    s->failing_since = uv_now(q->loop);
  snprintf(s->error, sizeof(s->error), "%s%s%s", kcld_strerror(err),
           detail && *detail ? ": " : "", detail ? detail : "");
  kcld_log(KCLD_LOG_WARN, "dead-letter message not kept; the shard waits "
           "and tries again", "destination", q->store->ops->name, "where",
           q->store->where, "shard", s->shard_id, "error", s->error, NULL);
  uv_timer_start(&s->timer, on_timer,
                 kcld_policy_backoff_ms(&p, s->failing, kcld_rand_u32()), 0);
}

static void on_stored(int err, const char *detail, void *arg)
{
  struct kcld_dlq_send *s = arg;
  size_t kept = 0;

  s->in_call = 0;
  for (size_t i = 0; i < s->n; i++)
    kept += s->msgs[i].m.stored != 0;
  if (s->finished) {           /* cancelled while the call was out */
    send_free_maybe(s);
    return;
  }
  if (err == KCLD_ECANCELED) { /* the store is going away: so is the dlq */
    s->finished = 1;
    send_free_maybe(s);
    return;
  }
  if (kept < s->n) {
    store_failed(s, err ? err : KCLD_EIO, detail);
    return;
  }
  s->failing = 0;
  s->finished = 1;
  s->cb(s->n, s->arg);
  send_free_maybe(s);
}

static void store_round(struct kcld_dlq_send *s)
{
  struct kcld_dlq_store *st = s->q->store;
  size_t k = 0;
  int rc;

  for (size_t i = 0; i < s->n; i++)
    if (!s->msgs[i].m.stored)
      s->todo[k++] = &s->msgs[i].m;
  s->in_call = 1;
  rc = st->ops->store(st, s->todo, k, on_stored, s);
  if (rc == 0)
    return;
  s->in_call = 0;
  if (rc == KCLD_ECANCELED) {
    s->finished = 1;
    send_free_maybe(s);
    return;
  }
  store_failed(s, rc, "the store call could not start");
}

/* Fills s->msgs from the built bodies and heads (taken; heads may be
 * NULL). */
static int fill(struct kcld_dlq_send *s, const struct kcld_dlq_failure *f,
                char **bodies, char **heads, const size_t *counts)
{
  size_t at = 0;
  const char *cls = f->error_type && *f->error_type ? f->error_type
                                                     : "Unhandled";
  int rc = 0;

  for (size_t i = 0; i < s->n; i++) {
    struct msg *m = &s->msgs[i];
    m->body = bodies[i];
    bodies[i] = NULL;
    if (heads) {
      m->head = heads[i];
      heads[i] = NULL;
      m->m.head = m->head;
      m->m.head_len = strlen(m->head);
    }
    m->start_sequence = strdup(f->records[at]->sequence_number);
    m->error_class = strdup(cls);
    if (!m->start_sequence || !m->error_class)
      rc = KCLD_ENOMEM;
    m->m.body = m->body;
    m->m.len = strlen(m->body);
    m->m.shard_id = s->shard_id;
    m->m.start_sequence = m->start_sequence;
    m->m.error_class = m->error_class;
    m->m.records = counts[i];
    at += counts[i];
  }
  return rc;
}

int kcld_dlq_send(struct kcld_dlq *q, const struct kcld_dlq_failure *f,
                  kcld_dlq_cb cb, void *arg, struct kcld_dlq_send **out)
{
  struct kcld_dlq_send *s;
  char **bodies = NULL, **heads = NULL;
  size_t n = 0, *counts = NULL;
  int rc;

  if (!q || !f || !f->records || !f->count || !f->shard_id || !cb)
    return KCLD_EINVAL;
  if (q->closing)
    return KCLD_ECANCELED;
  s = calloc(1, sizeof(*s));
  if (!s)
    return KCLD_ENOMEM;
  rc = build(q, f, (int64_t)time(NULL) * 1000, &bodies, &n, &counts,
             q->store->wants_head ? &heads : NULL);
  if (rc != 0) {
    free(s);
    return rc;
  }
  s->n = n;
  s->shard_id = strdup(f->shard_id);
  s->msgs = calloc(n, sizeof(*s->msgs));
  s->todo = calloc(n, sizeof(*s->todo));
  rc = s->shard_id && s->msgs && s->todo ? fill(s, f, bodies, heads, counts)
                                         : KCLD_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    free(bodies[i]);
    free(heads ? heads[i] : NULL);
  }
  free(bodies);
  free(heads);
  free(counts);
  if (rc != 0) {
    if (!s->msgs)
      s->n = 0;
    send_release(s);
    free(s);
    return rc;
  }
  s->q = q;
  s->cb = cb;
  s->arg = arg;
  uv_timer_init(q->loop, &s->timer);
  s->timer.data = s;
  s->next = q->sends;
  if (q->sends)
    q->sends->prev = s;
  q->sends = s;
  q->live++;
  if (out)
    *out = s;
  store_round(s);
  return 0;
}

void kcld_dlq_send_cancel(struct kcld_dlq_send *s)
{
  if (!s || s->finished)
    return;
  s->finished = 1;
  send_free_maybe(s);
}

unsigned kcld_dlq_send_failing(const struct kcld_dlq_send *s,
                               uint64_t *since_ms, const char **error)
{
  if (since_ms)
    *since_ms = s->failing ? s->failing_since : 0;
  if (error)
    *error = s->failing ? s->error : "";
  return s->failing;
}

size_t kcld_dlq_pending(const struct kcld_dlq *q)
{
  size_t n = 0;
  for (const struct kcld_dlq_send *s = q->sends; s; s = s->next)
    n += !s->finished;
  return n;
}

const char *kcld_dlq_where(const struct kcld_dlq *q)
{
  return q->store->where;
}

void kcld_dlq_close(struct kcld_dlq *q)
{
  if (!q)
    return;
  q->closing = 1;
  for (struct kcld_dlq_send *s = q->sends, *next; s; s = next) {
    next = s->next;
    kcld_dlq_send_cancel(s);
  }
  if (q->live == 0)
    dlq_free(q);
}
