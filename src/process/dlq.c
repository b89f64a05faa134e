/* dlq.c — on-failure records to SQS, resent until acknowledged. */
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

/* Room left in a message for the attributes and the JSON around records. */
#define BODY_LIMIT (KCLD_SQS_MESSAGE_MAX - 8192)

struct kcld_dlq {
  uv_loop_t *loop;
  struct kcld_sqs *sqs;
  char *queue_url;
  char *function_arn;
  char *stream_arn;
  int include_records;
  uint64_t backoff_base_ms, backoff_max_ms;
  struct kcld_dlq_send *sends;   /* list of live sends */
  size_t pending;
  int closing;
};

struct msg {
  char *body;
  json_t *attrs;
  int ok;
};

struct kcld_dlq_send {
  struct kcld_dlq_send *next, *prev;
  struct kcld_dlq *q;
  struct msg *msgs;
  size_t n;
  unsigned round;
  int in_call;                   /* a SendMessageBatch is out */
  int cancelled;
  int finished;                  /* cb ran or was cancelled */
  uv_timer_t timer;
  kcld_dlq_cb cb;
  void *arg;
};

int kcld_dlq_new(const struct kcld_dlq_opts *o, struct kcld_dlq **out)
{
  struct kcld_dlq *q;

  if (!o || !o->loop || !o->sqs || !o->queue_url || !*o->queue_url || !out)
    return KCLD_EINVAL;
  q = calloc(1, sizeof(*q));
  if (!q)
    return KCLD_ENOMEM;
  q->loop = o->loop;
  q->sqs = o->sqs;
  q->queue_url = strdup(o->queue_url);
  q->function_arn = strdup(o->function_arn ? o->function_arn : "kcld");
  q->stream_arn = strdup(o->stream_arn ? o->stream_arn : "");
  q->include_records = o->include_records;
  q->backoff_base_ms = o->backoff_base_ms ? o->backoff_base_ms : 200;
  q->backoff_max_ms = o->backoff_max_ms ? o->backoff_max_ms : 10000;
  if (q->backoff_max_ms < q->backoff_base_ms)
    q->backoff_max_ms = q->backoff_base_ms;
  if (!q->queue_url || !q->function_arn || !q->stream_arn) {
    free(q->queue_url);
    free(q->function_arn);
    free(q->stream_arn);
    free(q);
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

/* The "records" entry of one record; with data unless it cannot fit. */
static json_t *record_json(const struct kcld_record *r, int with_data,
                           int *truncated)
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
  if (b64 + r->partition_key_len + 512 > BODY_LIMIT) {
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

/* One message for records[from..to). */
static char *message_body(const struct kcld_dlq *q,
                          const struct kcld_dlq_failure *f, size_t from,
                          size_t to, json_t *records, int64_t now_ms)
{
  const struct kcld_record *first = f->records[from];
  const struct kcld_record *last = f->records[to - 1];
  char ts[64], af[64], al[64], rid[40];
  json_t *body;
  char *text;

  iso_time(now_ms, ts, sizeof(ts));
  iso_time(first->arrival_ms < 0 ? 0 : first->arrival_ms, af, sizeof(af));
  iso_time(last->arrival_ms < 0 ? 0 : last->arrival_ms, al, sizeof(al));
  request_id(rid);
  body = json_pack(
    "{s:{s:s,s:s,s:s,s:i},s:{s:i,s:s,s:s},s:s,s:s,"
    "s:{s:s,s:s,s:s,s:s,s:s,s:i,s:s}}",
    "requestContext", "requestId", rid, "functionArn", q->function_arn,
    "condition", kcld_policy_condition_name(f->condition),
    "approximateInvokeCount", (int)f->invoke_count,
    "responseContext", "statusCode", 200, "executedVersion", "$LATEST",
    "functionError", f->error_type ? f->error_type : "Unhandled",
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
 * When the estimate was wrong and the body would not fit in a message, it
 * is made again with every record as metadata only (*ntr = all of them). */
static char *chunk_body(const struct kcld_dlq *q,
                        const struct kcld_dlq_failure *f, size_t from,
                        size_t to, json_t *recs, int64_t now_ms)
{
  char *body = message_body(q, f, from, to, recs, now_ms);
  json_t *meta;

  if (!body || !recs || strlen(body) <= BODY_LIMIT)
    return body;
  free(body);
  if (!(meta = json_array()))
    return NULL;
  for (size_t i = from; i < to; i++) {
    int truncated;
    json_t *r = record_json(f->records[i], 0, &truncated);
    if (!r) {
      json_decref(meta);
      return NULL;
    }
    json_object_set_new(r, "truncated", json_true());
    json_object_set_new(r, "dataLength",
                        json_integer((json_int_t)f->records[i]->data_len));
    json_array_append_new(meta, r);
  }
  return message_body(q, f, from, to, meta, now_ms);
}

/* Builds the messages; counts the records of each message when counts is
 * not NULL (parallel to *bodies). */
static int build(const struct kcld_dlq *q, const struct kcld_dlq_failure *f,
                 int64_t now_ms, char ***bodies, size_t *n, size_t **counts)
{
  char **out = calloc(f->count, sizeof(*out));
  size_t *cn = calloc(f->count, sizeof(*cn));
  size_t nout = 0, from = 0, size = 0;
  json_t *recs = NULL;
  int rc = KCLD_ENOMEM;

  if (!out || !cn)
    goto fail;
  for (size_t i = 0; i < f->count; i++) {
    int truncated = 0;
    json_t *r = NULL;
    size_t rsize = 0;
    if (q->include_records) {
      r = record_json(f->records[i], 1, &truncated);
      if (!r)
        goto fail;
      rsize = 160 + f->records[i]->partition_key_len +
              (truncated ? 0
                         : kcld_base64_encoded_len(f->records[i]->data_len));
    }
    if (i > from && size + rsize > BODY_LIMIT) {
      out[nout] = chunk_body(q, f, from, i, recs, now_ms);
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
  out[nout] = chunk_body(q, f, from, f->count, recs, now_ms);
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
  return 0;
fail:
  json_decref(recs);
  for (size_t i = 0; out && i < nout; i++)
    free(out[i]);
  free(out);
  free(cn);
  return rc;
}

int kcld_dlq_build(const struct kcld_dlq *q, const struct kcld_dlq_failure *f,
                   int64_t now_ms, char ***bodies, size_t *n)
{
  if (!q || !f || !f->records || f->count == 0 || !f->shard_id || !bodies ||
      !n)
    return KCLD_EINVAL;
  return build(q, f, now_ms, bodies, n, NULL);
}

/* ======== Sending ======== */

static void send_free_maybe(struct kcld_dlq_send *s);

static void on_timer_closed(uv_handle_t *h)
{
  struct kcld_dlq_send *s = h->data;
  struct kcld_dlq *q = s->q;

  for (size_t i = 0; i < s->n; i++) {
    free(s->msgs[i].body);
    json_decref(s->msgs[i].attrs);
  }
  free(s->msgs);
  if (s->prev)
    s->prev->next = s->next;
  else
    q->sends = s->next;
  if (s->next)
    s->next->prev = s->prev;
  free(s);
  if (--q->pending == 0 && q->closing) {
    free(q->queue_url);
    free(q->function_arn);
    free(q->stream_arn);
    free(q);
  }
}

/* Frees s once it is over and no call is out. */
static void send_free_maybe(struct kcld_dlq_send *s)
{
  if (!s->finished || s->in_call)
    return;
  uv_timer_stop(&s->timer);
  if (!uv_is_closing((uv_handle_t *)&s->timer))
    uv_close((uv_handle_t *)&s->timer, on_timer_closed);
}

static void send_round(struct kcld_dlq_send *s);

static void on_timer(uv_timer_t *t)
{
  send_round(t->data);
}

static void retry_later(struct kcld_dlq_send *s)
{
  struct kcld_policy p = {0, 0, -1, s->q->backoff_base_ms,
                          s->q->backoff_max_ms};
  uv_timer_start(&s->timer, on_timer,
                 kcld_policy_backoff_ms(&p, s->round, kcld_rand_u32()), 0);
}

static void on_sent(const struct kcld_sqs_batch_result *res, void *arg)
{
  struct kcld_dlq_send *s = arg;
  struct kcld_dlq *q = s->q;
  size_t left = 0, k = 0;

  s->in_call = 0;
  for (size_t i = 0; i < s->n; i++) {
    if (s->msgs[i].ok)
      continue;
    if (k < res->count && res->entries[k].ok) {
      s->msgs[i].ok = 1;
    } else {
      left++;
      if (k < res->count && !s->cancelled && res->st.err != KCLD_ECANCELED)
        kcld_log(KCLD_LOG_WARN, "dead-letter message not sent; retrying",
                 "queue", q->queue_url, "code", res->entries[k].code,
                 "error", res->entries[k].message, NULL);
    }
    k++;
  }
  if (s->cancelled || res->st.err == KCLD_ECANCELED) {
    s->finished = 1;
    send_free_maybe(s);
    return;
  }
  if (left) {
    retry_later(s);
    return;
  }
  s->finished = 1;
  s->cb(0, s->n, s->arg);
  send_free_maybe(s);
}

static void send_round(struct kcld_dlq_send *s)
{
  struct kcld_sqs_entry e[64];
  struct kcld_sqs_entry *entries = e;
  char (*ids)[24] = NULL;
  size_t k = 0;
  int rc;

  s->round++;
  if (s->n > 64)
    entries = calloc(s->n, sizeof(*entries));
  ids = calloc(s->n, sizeof(*ids));
  if (!entries || !ids) {
    rc = KCLD_ENOMEM;
    goto out;
  }
  for (size_t i = 0; i < s->n; i++) {
    if (s->msgs[i].ok)
      continue;
    snprintf(ids[k], sizeof(ids[k]), "m%zu", i);
    memset(&entries[k], 0, sizeof(entries[k]));
    entries[k].id = ids[k];
    entries[k].body = s->msgs[i].body;
    entries[k].attributes = s->msgs[i].attrs;
    k++;
  }
  s->in_call = 1;
  rc = kcld_sqs_send_message_batch(s->q->sqs, s->q->queue_url, entries, k,
                                   on_sent, s);
  if (rc != 0)
    s->in_call = 0;
out:
  if (entries != e)
    free(entries);
  free(ids);
  if (rc != 0) {
    kcld_log(KCLD_LOG_WARN, "dead-letter send could not start; retrying",
             "queue", s->q->queue_url, "error", kcld_strerror(rc), NULL);
    if (rc == KCLD_ECANCELED) {
      s->finished = 1;
      send_free_maybe(s);
      return;
    }
    retry_later(s);
  }
}

static json_t *attr(const char *v)
{
  return json_pack("{s:s,s:s}", "DataType", "String", "StringValue",
                   v && *v ? v : "-");
}

int kcld_dlq_send(struct kcld_dlq *q, const struct kcld_dlq_failure *f,
                  kcld_dlq_cb cb, void *arg, struct kcld_dlq_send **out)
{
  struct kcld_dlq_send *s;
  char **bodies = NULL;
  size_t n = 0, *counts = NULL, at = 0;
  int rc;

  if (!q || !f || !f->records || !f->count || !f->shard_id || !cb)
    return KCLD_EINVAL;
  if (q->closing)
    return KCLD_ECANCELED;
  s = calloc(1, sizeof(*s));
  if (!s)
    return KCLD_ENOMEM;
  rc = build(q, f, (int64_t)time(NULL) * 1000, &bodies, &n, &counts);
  if (rc != 0) {
    free(s);
    return rc;
  }
  s->msgs = calloc(n, sizeof(*s->msgs));
  if (!s->msgs) {
    for (size_t i = 0; i < n; i++)
      free(bodies[i]);
    free(bodies);
    free(counts);
    free(s);
    return KCLD_ENOMEM;
  }
  for (size_t i = 0; i < n; i++) {
    s->msgs[i].body = bodies[i];
    s->msgs[i].attrs = json_pack(
      "{s:o,s:o,s:o}", "shardId", attr(f->shard_id), "startSequenceNumber",
      attr(f->records[at]->sequence_number), "errorClass",
      attr(f->error_type ? f->error_type : "Unhandled"));
    at += counts[i];
  }
  free(bodies);
  free(counts);
  s->n = n;
  s->q = q;
  s->cb = cb;
  s->arg = arg;
  uv_timer_init(q->loop, &s->timer);
  s->timer.data = s;
  s->next = q->sends;
  if (q->sends)
    q->sends->prev = s;
  q->sends = s;
  q->pending++;
  if (out)
    *out = s;
  send_round(s);
  return 0;
}

void kcld_dlq_send_cancel(struct kcld_dlq_send *s)
{
  if (!s || s->finished)
    return;
  s->cancelled = 1;
  s->finished = 1;
  send_free_maybe(s);
}

size_t kcld_dlq_pending(const struct kcld_dlq *q)
{
  size_t n = 0;
  for (const struct kcld_dlq_send *s = q->sends; s; s = s->next)
    n += !s->finished;
  return n;
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
  if (q->pending == 0) {
    free(q->queue_url);
    free(q->function_arn);
    free(q->stream_arn);
    free(q);
  }
}
