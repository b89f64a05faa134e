/* redrive_line.c — an on-failure record back into records (see
 * redrive_line.h). */
#include "cmd/redrive_line.h"

#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/base64.h"
#include "base/seq.h"

/* What one record needs in the batch block. */
static size_t record_bytes(json_t *x, size_t *b64len)
{
  const char *b64 = json_string_value(json_object_get(x, "data"));
  const char *key = json_string_value(json_object_get(x, "partitionKey"));
  const char *seq = json_string_value(json_object_get(x, "sequenceNumber"));
  *b64len = b64 ? strlen(b64) : 0;
  return kcld_base64_decoded_max(*b64len) + 1 + (key ? strlen(key) : 0) + 1 +
         (seq ? strlen(seq) : 0) + 1;
}

static const char *check_record(json_t *x)
{
  const char *key = json_string_value(json_object_get(x, "partitionKey"));
  const char *seq = json_string_value(json_object_get(x, "sequenceNumber"));
  const char *b64 = json_string_value(json_object_get(x, "data"));

  if (json_is_true(json_object_get(x, "truncated")))
    return "a record was too large and was kept without its data";
  if (!key || !*key || !b64 || strlen(b64) % 4)
    return "a record without partitionKey or valid data";
  if (!seq || !kcld_seq_valid(seq))
    return "a record without a sequenceNumber";
  return NULL;
}

/* Copies s (n bytes and a NUL) to *p and moves *p past it. */
static const char *put_str(char **p, const char *s, size_t n)
{
  char *at = *p;
  memcpy(at, s, n);
  at[n] = '\0';
  *p += n + 1;
  return at;
}

/* One record into the block at *p; 0, or -1 for bad base64. */
static int fill_record(struct kcld_record *r, json_t *x, char **p)
{
  const char *key = json_string_value(json_object_get(x, "partitionKey"));
  const char *seq = json_string_value(json_object_get(x, "sequenceNumber"));
  const char *b64 = json_string_value(json_object_get(x, "data"));
  json_t *sub = json_object_get(x, "subSequenceNumber");
  json_t *arr = json_object_get(x, "approximateArrivalTimestamp");
  size_t n = strlen(b64), len, bad;
  uint8_t *data = (uint8_t *)*p;

  if (kcld_base64_decode(b64, n, data, &len, &bad) != 0)
    return -1;
  *p += kcld_base64_decoded_max(n) + 1;
  r->data = data;
  r->data_len = len;
  r->partition_key = put_str(p, key, strlen(key));
  r->partition_key_len = strlen(key);
  r->sequence_number = put_str(p, seq, strlen(seq));
  r->sub_sequence_number =
    json_is_integer(sub) && json_integer_value(sub) > 0
      ? (uint64_t)json_integer_value(sub)
      : 0;
  r->arrival_ms = json_is_number(arr)
                    ? (int64_t)(json_number_value(arr) * 1000.0 + 0.5)
                    : KCLD_RECORD_NO_ARRIVAL;
  return 0;
}

/* The records as one batch block, freed by kcld_record_batch_release. */
static struct kcld_record_batch *make_batch(json_t *recs, const char **why)
{
  size_t n = json_array_size(recs), bytes = 0, i, b64;
  size_t head = sizeof(struct kcld_record_batch);
  struct kcld_record_batch *b;
  struct kcld_record *r;
  json_t *x;
  char *p;

  head = (head + alignof(struct kcld_record) - 1) /
         alignof(struct kcld_record) * alignof(struct kcld_record);
  json_array_foreach(recs, i, x) {
    if ((*why = check_record(x)) != NULL)
      return NULL;
    bytes += record_bytes(x, &b64);
  }
  b = calloc(1, head + n * sizeof(*r) + bytes);
  if (!b) {
    *why = "out of memory";
    return NULL;
  }
  r = (struct kcld_record *)((char *)b + head);
  p = (char *)(r + n);
  atomic_init(&b->refs, 1);
  b->records = r;
  b->count = b->kinesis_count = n;
  b->millis_behind_latest = -1;
  json_array_foreach(recs, i, x) {
    r[i].batch = b;
    if (fill_record(&r[i], x, &p) != 0) {
      *why = "a record's data is not base64";
      free(b);
      return NULL;
    }
    b->data_bytes += r[i].data_len;
  }
  b->mem_bytes = head + n * sizeof(*r) + bytes;
  return b;
}

int kcld_redrive_line_parse(const char *body, struct kcld_redrive_line *out,
                            const char **why)
{
  json_t *doc = json_loads(body, 0, NULL);
  int rc = kcld_redrive_line_read(doc, out, why);
  json_decref(doc);
  return rc;
}

int kcld_redrive_line_read(const json_t *doc, struct kcld_redrive_line *out,
                           const char **why)
{
  json_t *recs, *kb;
  const char *arn, *shard;
  int rc = -1;

  memset(out, 0, sizeof(*out));
  *why = "not an on-failure record";
  kb = doc ? json_object_get(doc, "KinesisBatchInfo") : NULL;
  recs = doc ? json_object_get(doc, "records") : NULL;
  if (!json_is_object(kb))
    goto done;
  if (!json_is_array(recs) || json_array_size(recs) == 0) {
    *why = "no records in it (on_failure.include_records off?)";
    goto done;
  }
  if (!(out->batch = make_batch(recs, why)))
    goto done;
  out->count = out->batch->count;
  arn = json_string_value(json_object_get(kb, "streamArn"));
  shard = json_string_value(json_object_get(kb, "shardId"));
  out->recs = calloc(out->count, sizeof(*out->recs));
  out->shard_id = strdup(shard ? shard : "");
  if (arn && *arn)
    out->stream = strdup(arn);
  if (!out->recs || !out->shard_id || (arn && *arn && !out->stream)) {
    *why = "out of memory";
    kcld_redrive_line_free(out);
    goto done;
  }
  for (size_t i = 0; i < out->count; i++) {
    out->recs[i].data = out->batch->records[i].data;
    out->recs[i].len = out->batch->records[i].data_len;
    out->recs[i].key = out->batch->records[i].partition_key;
  }
  *why = NULL;
  rc = 0;
done:
  return rc;
}

void kcld_redrive_line_free(struct kcld_redrive_line *l)
{
  kcld_record_batch_release(l->batch);
  free(l->recs);
  free(l->stream);
  free(l->shard_id);
  memset(l, 0, sizeof(*l));
}

const char *kcld_redrive_line_target(const struct kcld_redrive_line *l,
                                     const char *stream, int from_message)
{
  return from_message && l->stream ? l->stream : stream;
}

int kcld_redrive_line_put(struct kcld_redrive_line *l, struct kcld_kinesis *k,
                          const char *stream, kcld_kinesis_put_cb cb,
                          void *arg)
{
  struct kcld_kinesis_record kr[KCLD_KINESIS_PUT_MAX_RECORDS];
  size_t bytes = 0, n = 0, i;

  for (i = l->put_at; i < l->count && n < KCLD_KINESIS_PUT_MAX_RECORDS;
       i++) {
    const struct kcld_redrive_rec *x = &l->recs[i];
    size_t b = x->len + strlen(x->key);
    if (x->put)
      continue;
    /* A record over 1 MiB goes in a call of its own. */
    if (n > 0 && (b > KCLD_KINESIS_PUT_MAX_RECORD ||
                  bytes + b > KCLD_KINESIS_PUT_MAX_TOTAL))
      break;
    /* explicit_hash_key NULL: Kinesis hashes the partition key. */
    kr[n++] = (struct kcld_kinesis_record){
      .data = x->data, .len = x->len, .partition_key = x->key};
    bytes += b;
    if (b > KCLD_KINESIS_PUT_MAX_RECORD) {
      i++;
      break;
    }
  }
  l->put_end = i;
  return kcld_kinesis_put_records(k, stream, kr, n, cb, arg);
}

size_t kcld_redrive_line_took(struct kcld_redrive_line *l,
                              const struct kcld_kinesis_put_result *res)
{
  size_t k = 0, took = 0;

  for (size_t i = l->put_at; i < l->put_end && i < l->count; i++) {
    struct kcld_redrive_rec *x = &l->recs[i];
    if (x->put)
      continue;
    if (!res->st.err && k < res->count && !res->entries[k].error_code) {
      x->put = 1;
      took++;
    }
    k++;
  }
  while (l->put_at < l->count && l->recs[l->put_at].put)
    l->put_at++;
  return took;
}
