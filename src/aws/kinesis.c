/* kinesis.c — Kinesis Data Streams calls: requests built, answers mapped to
 * small results, one callback per call.  The skeleton (svc.c) runs the
 * operations and the wait for ACTIVE, the call layer signs and retries;
 * only ListShards (pages, LimitExceeded backoff) loops here. */
#include "aws/kinesis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base64.h"
#include "base/utf8.h"
#include "err.h"
#include "log.h"

struct kcld_kinesis {
  struct kcld_svc svc;
};

/* ======== Helpers ======== */

static int is_arn(const char *stream)
{
  return strncmp(stream, "arn:", 4) == 0;
}

/* The key that names a stream in a request: StreamName or StreamARN. */
static const char *stream_key(const char *stream)
{
  return is_arn(stream) ? "StreamARN" : "StreamName";
}

/* Sets StreamName or StreamARN.  Returns 0 or KCLD_ENOMEM. */
static int set_stream(json_t *req, const char *stream)
{
  return kcld_svc_set_str(req, stream_key(stream), stream);
}

static const char *str_path(const json_t *obj, const char *key1,
                            const char *key2)
{
  return kcld_svc_str(json_object_get(obj, key1), key2);
}

int kcld_kinesis_new(struct kcld_aws *aws, uv_loop_t *loop,
                     struct kcld_kinesis **out)
{
  return kcld_svc_new(sizeof(**out), aws, loop, KCLD_AWS_KINESIS,
                      (void **)out);
}

void kcld_kinesis_close(struct kcld_kinesis *k)
{
  if (k)
    kcld_svc_close(&k->svc);
}

static const struct kcld_svc_fault_row s_fault_rows[] = {
  {"ExpiredIteratorException", KCLD_KINESIS_EXPIRED_ITERATOR},
  {"ProvisionedThroughputExceededException", KCLD_KINESIS_THROUGHPUT},
  {"KMSThrottlingException", KCLD_KINESIS_KMS_THROTTLED},
  {"LimitExceededException", KCLD_KINESIS_LIMIT},
  {"ResourceInUseException", KCLD_KINESIS_IN_USE},
  {"InvalidArgumentException", KCLD_KINESIS_INVALID},
  {"ValidationException", KCLD_KINESIS_INVALID},
  {"AccessDeniedException", KCLD_KINESIS_ACCESS_DENIED},
  {"ExpiredNextTokenException", KCLD_KINESIS_EXPIRED_TOKEN},
  {"InternalFailure", KCLD_KINESIS_TRANSIENT},
  {"InternalFailureException", KCLD_KINESIS_TRANSIENT},
  {"ServiceUnavailable", KCLD_KINESIS_TRANSIENT},
  {"ServiceUnavailableException", KCLD_KINESIS_TRANSIENT},
  {"KMS*", KCLD_KINESIS_KMS},
};

static const struct kcld_svc_faults s_faults = {
  .rows = s_fault_rows,
  .n_rows = sizeof(s_fault_rows) / sizeof(s_fault_rows[0]),
  .ok = KCLD_KINESIS_OK,
  .canceled = KCLD_KINESIS_CANCELED,
  .transient = KCLD_KINESIS_TRANSIENT,
  .not_found = KCLD_KINESIS_NOT_FOUND,
  .condition = KCLD_KINESIS_OTHER,
  .other = KCLD_KINESIS_OTHER,
};

enum kcld_kinesis_fault kcld_kinesis_fault(const struct kcld_svc_status *st)
{
  return (enum kcld_kinesis_fault)kcld_svc_fault(st, &s_faults);
}

/* ======== Answers ======== */

KCLD_SVC_SHAPE(s_done_shape, struct kcld_svc_status, kcld_kinesis_done_cb);
KCLD_SVC_SHAPE(s_summary_shape, struct kcld_kinesis_stream_summary,
               kcld_kinesis_summary_cb);
KCLD_SVC_SHAPE(s_iterator_shape, struct kcld_kinesis_iterator,
               kcld_kinesis_iterator_cb);
KCLD_SVC_SHAPE(s_records_shape, struct kcld_kinesis_records_raw,
               kcld_kinesis_records_cb);
KCLD_SVC_SHAPE(s_put_shape, struct kcld_kinesis_put_result,
               kcld_kinesis_put_cb);

static int summary_map(struct kcld_svc_op *op,
                       const struct kcld_aws_result *res, void *result)
{
  struct kcld_kinesis_stream_summary *sum = result;
  json_t *d = json_object_get(res->body, "StreamDescriptionSummary");
  if (!json_is_object(d) || !kcld_svc_str(d, "StreamStatus")) {
    kcld_svc_status_set(op, &sum->st, KCLD_EPARSE, NULL,
                        "no StreamDescriptionSummary.StreamStatus in the "
                        "answer");
    return KCLD_EPARSE;
  }
  sum->doc = d;
  sum->stream_name = kcld_svc_str(d, "StreamName");
  sum->stream_arn = kcld_svc_str(d, "StreamARN");
  sum->status = kcld_svc_str(d, "StreamStatus");
  sum->open_shard_count =
    (int)json_integer_value(json_object_get(d, "OpenShardCount"));
  sum->retention_hours =
    (int)json_integer_value(json_object_get(d, "RetentionPeriodHours"));
  sum->encryption = kcld_svc_str(d, "EncryptionType");
  sum->mode = str_path(d, "StreamModeDetails", "StreamMode");
  return 0;
}

static const char *summary_state(const void *result)
{
  return ((const struct kcld_kinesis_stream_summary *)result)->status;
}

static const char *const s_stream_states[] = {"CREATING", "UPDATING",
                                              "DELETING", NULL};

static int iterator_map(struct kcld_svc_op *op,
                        const struct kcld_aws_result *res, void *result)
{
  struct kcld_kinesis_iterator *r = result;
  json_t *it = json_object_get(res->body, "ShardIterator");
  r->shard_iterator = json_string_value(it);
  /* A null iterator is how Kinesis says a closed shard has nothing after
   * the position asked for: the shard's end, not an error. */
  if (!r->shard_iterator && !json_is_null(it)) {
    kcld_svc_status_set(op, &r->st, KCLD_EPARSE, NULL,
                        "no ShardIterator in the answer");
    return KCLD_EPARSE;
  }
  return 0;
}

static int records_map(struct kcld_svc_op *op,
                       const struct kcld_aws_result *res, void *result)
{
  struct kcld_kinesis_records_raw *r = result;
  r->body = res->raw;
  r->body_len = res->raw_len;
  if (!r->body) {
    kcld_svc_status_set(op, &r->st, KCLD_EPARSE, NULL,
                        "no body in the answer");
    return KCLD_EPARSE;
  }
  return 0;
}

/* PutRecords' context: how many records went out. */
struct put_ctx {
  size_t count;
};

static int put_map(struct kcld_svc_op *op, const struct kcld_aws_result *res,
                   void *result)
{
  struct kcld_kinesis_put_result *r = result;
  size_t n = ((struct put_ctx *)kcld_svc_ctx(op))->count;
  json_t *recs = json_object_get(res->body, "Records");
  struct kcld_kinesis_put_entry *entries;

  if (!json_is_array(recs) || json_array_size(recs) != n) {
    kcld_svc_status_set(op, &r->st, KCLD_EPARSE, NULL,
                        "answer has %zu Records for %zu sent",
                        json_array_size(recs), n);
    return KCLD_EPARSE;
  }
  entries = kcld_svc_op_alloc(op, n * sizeof(*entries));
  if (!entries) {
    kcld_svc_status_set(op, &r->st, KCLD_ENOMEM, NULL, "out of memory");
    return KCLD_ENOMEM;
  }
  for (size_t i = 0; i < n; i++) {
    json_t *e = json_array_get(recs, i);
    struct kcld_kinesis_put_entry *pe = &entries[i];
    pe->error_code = kcld_svc_str(e, "ErrorCode");
    pe->error_message = kcld_svc_str(e, "ErrorMessage");
    pe->sequence_number = kcld_svc_str(e, "SequenceNumber");
    pe->shard_id = kcld_svc_str(e, "ShardId");
    if (!pe->error_code && !pe->sequence_number)
      pe->error_code = "MissingSequenceNumber";
    if (pe->error_code) {
      pe->sequence_number = NULL;
      pe->shard_id = NULL;
      r->failed++;
    }
  }
  r->entries = entries;
  r->count = n;
  return 0;
}

static const struct kcld_svc_spec s_summary = {
  "DescribeStreamSummary", &s_summary_shape, summary_map, summary_state,
  s_stream_states};
static const struct kcld_svc_spec s_iterator = {
  "GetShardIterator", &s_iterator_shape, iterator_map, NULL, NULL};
static const struct kcld_svc_spec s_records = {
  "GetRecords", &s_records_shape, records_map, NULL, NULL};
static const struct kcld_svc_spec s_put = {
  "PutRecords", &s_put_shape, put_map, NULL, NULL};
static const struct kcld_svc_spec s_create = {
  "CreateStream", &s_done_shape, NULL, NULL, NULL};
static const struct kcld_svc_spec s_split = {
  "SplitShard", &s_done_shape, NULL, NULL, NULL};
static const struct kcld_svc_spec s_merge = {
  "MergeShards", &s_done_shape, NULL, NULL, NULL};

/* ======== DescribeStreamSummary and the wait ======== */

static int summary_start(struct kcld_kinesis *k, const char *stream,
                         int wait, long timeout_ms, kcld_kinesis_summary_cb cb,
                         void *arg)
{
  struct kcld_svc_op *op;
  int rc;

  if (!k || !cb)
    return KCLD_EINVAL;
  if (!stream || !*stream)
    return kcld_svc_bad_arg(&k->svc, s_summary.operation, "no stream");
  if (timeout_ms < 0)
    return kcld_svc_bad_arg(&k->svc, s_summary.operation, "negative timeout");
  op = kcld_svc_request_new(&k->svc, &s_summary, 0, (kcld_svc_fn)cb, arg, &rc);
  if (!op)
    return rc;
  kcld_svc_op_resource(op, "stream %s", stream);
  if (wait)
    kcld_svc_request_wait(op, timeout_ms);
  return kcld_svc_request_start(
    op, json_pack("{s:s}", stream_key(stream), stream), NULL);
}

int kcld_kinesis_describe_stream_summary(struct kcld_kinesis *k,
                                         const char *stream,
                                         kcld_kinesis_summary_cb cb,
                                         void *arg)
{
  return summary_start(k, stream, 0, 0, cb, arg);
}

int kcld_kinesis_wait_active(struct kcld_kinesis *k, const char *stream,
                             long timeout_ms, kcld_kinesis_summary_cb cb,
                             void *arg)
{
  return summary_start(k, stream, 1, timeout_ms, cb, arg);
}

/* ======== GetShardIterator ======== */

int kcld_kinesis_get_shard_iterator(struct kcld_kinesis *k,
                                    const struct kcld_kinesis_iterator_req *req,
                                    kcld_kinesis_iterator_cb cb, void *arg)
{
  static const char *const types[] = {
    "TRIM_HORIZON", "LATEST", "AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER",
    "AT_TIMESTAMP"};
  const char *opname = s_iterator.operation;
  json_t *j;
  int by_seq;

  if (!k || !req || !cb)
    return KCLD_EINVAL;
  if (!req->stream || !*req->stream)
    return kcld_svc_bad_arg(&k->svc, opname, "no stream");
  if (!req->shard_id || !*req->shard_id)
    return kcld_svc_bad_arg(&k->svc, opname, "no shard id");
  if ((int)req->type < 0 || req->type > KCLD_KINESIS_AT_TIMESTAMP)
    return kcld_svc_bad_arg(&k->svc, opname, "unknown iterator type");
  by_seq = req->type == KCLD_KINESIS_AT_SEQUENCE_NUMBER ||
           req->type == KCLD_KINESIS_AFTER_SEQUENCE_NUMBER;
  if (by_seq && (!req->sequence_number || !*req->sequence_number))
    return kcld_svc_bad_arg(&k->svc, opname,
                            "no sequence number for *_SEQUENCE_NUMBER");
  if (req->type == KCLD_KINESIS_AT_TIMESTAMP && req->timestamp_ms < 0)
    return kcld_svc_bad_arg(&k->svc, opname, "negative timestamp");

  j = json_pack("{s:s, s:s, s:s, s:s*}", stream_key(req->stream), req->stream,
                "ShardId", req->shard_id, "ShardIteratorType", types[req->type],
                "StartingSequenceNumber",
                by_seq ? req->sequence_number : NULL);
  if (j && req->type == KCLD_KINESIS_AT_TIMESTAMP &&
      json_object_set_new(j, "Timestamp",
                          json_real((double)req->timestamp_ms / 1000.0))) {
    json_decref(j);
    j = NULL;
  }
  return kcld_svc_send(&k->svc, &s_iterator, j, NULL, (kcld_svc_fn)cb, arg,
                       "shard %s of stream %s (%s%s%s)", req->shard_id,
                       req->stream, types[req->type], by_seq ? " " : "",
                       by_seq ? req->sequence_number : "");
}

/* ======== GetRecords ======== */

static json_t *records_request(const struct kcld_kinesis_get_records_req *req)
{
  json_t *j = json_pack("{s:s, s:s*}", "ShardIterator", req->shard_iterator,
                        "StreamARN", req->stream_arn);
  return kcld_svc_req(j, j && req->limit > 0 &&
                           kcld_svc_set_int(j, "Limit", req->limit));
}

int kcld_kinesis_get_records(struct kcld_kinesis *k,
                             const struct kcld_kinesis_get_records_req *req,
                             kcld_kinesis_records_cb cb, void *arg)
{
  const char *opname = s_records.operation;
  struct kcld_aws_call_opts o = {.raw = 1};

  if (!k || !req || !cb)
    return KCLD_EINVAL;
  if (!req->shard_iterator || !*req->shard_iterator)
    return kcld_svc_bad_arg(&k->svc, opname, "no shard iterator");
  if (req->limit < 0 || req->limit > 10000)
    return kcld_svc_bad_arg(&k->svc, opname, "limit not in 1..10000");
  if (req->max_attempts < 0 || req->timeout_ms < 0)
    return kcld_svc_bad_arg(&k->svc, opname,
                            "negative max_attempts or timeout");
  o.max_attempts = req->max_attempts;
  o.timeout_ms = req->timeout_ms;
  o.body_into = req->body_into;

  if (req->shard_id)
    return kcld_svc_send(&k->svc, &s_records, records_request(req), &o,
                         (kcld_svc_fn)cb, arg, "shard %s", req->shard_id);
  return kcld_svc_send(&k->svc, &s_records, records_request(req), &o,
                       (kcld_svc_fn)cb, arg, "iterator %.24s...",
                       req->shard_iterator);
}

/* ======== PutRecords ======== */

static json_t *put_request(const char *stream,
                           const struct kcld_kinesis_record *records, size_t n)
{
  json_t *req = json_object(), *arr = json_array();
  char *b64 = NULL;
  size_t cap = 0;

  if (!req || !arr || json_object_set(req, "Records", arr) != 0 ||
      set_stream(req, stream) != 0)
    goto fail;
  for (size_t i = 0; i < n; i++) {
    const struct kcld_kinesis_record *r = &records[i];
    size_t need = kcld_base64_encoded_len(r->len) + 1;
    json_t *e = json_object();
    if (!e || json_array_append_new(arr, e) != 0)
      goto fail;
    if (need > cap) {
      char *nb = realloc(b64, need);
      if (!nb)
        goto fail;
      b64 = nb;
      cap = need;
    }
    kcld_base64_encode(b64, r->data, r->len);
    if (kcld_svc_set_str(e, "Data", b64) ||
        kcld_svc_set_str(e, "PartitionKey", r->partition_key) ||
        (r->explicit_hash_key &&
         kcld_svc_set_str(e, "ExplicitHashKey", r->explicit_hash_key)))
      goto fail;
  }
  free(b64);
  json_decref(arr);
  return req;

fail:
  free(b64);
  json_decref(arr);
  json_decref(req);
  return NULL;
}

int kcld_kinesis_put_records(struct kcld_kinesis *k, const char *stream,
                             const struct kcld_kinesis_record *records,
                             size_t n, kcld_kinesis_put_cb cb, void *arg)
{
  const char *opname = s_put.operation;
  struct kcld_svc_op *op;
  size_t total = 0;
  int rc;

  if (!k || !cb)
    return KCLD_EINVAL;
  if (!stream || !*stream)
    return kcld_svc_bad_arg(&k->svc, opname, "no stream");
  if (!records || n == 0 || n > KCLD_KINESIS_PUT_MAX_RECORDS)
    return kcld_svc_bad_arg(&k->svc, opname, "record count not in 1..500");
  for (size_t i = 0; i < n; i++) {
    const struct kcld_kinesis_record *r = &records[i];
    const char *why = NULL;
    long chars;
    if (!r->data && r->len)
      why = "record without data";
    else if (!r->partition_key)
      why = "record without partition key";
    else if ((chars = kcld_utf8_count(r->partition_key,
                                      strlen(r->partition_key))) < 1 ||
             chars > 256)
      why = "partition key not 1..256 UTF-8 characters";
    else if (r->len > KCLD_KINESIS_MAX_RECORD ||
             r->len + strlen(r->partition_key) > KCLD_KINESIS_MAX_RECORD)
      why = "record over 10 MiB (data + partition key)";
    else if (n > 1 &&
             r->len + strlen(r->partition_key) > KCLD_KINESIS_PUT_MAX_RECORD)
      why = "record over 1 MiB (data + partition key) not alone in its "
            "call";
    if (why)
      return kcld_svc_bad_arg(&k->svc, opname, why);
    total += r->len + strlen(r->partition_key);
  }
  if (n > 1 && total > KCLD_KINESIS_PUT_MAX_TOTAL)
    return kcld_svc_bad_arg(&k->svc, opname, "records over 5 MiB in total");

  op = kcld_svc_request_new(&k->svc, &s_put, sizeof(struct put_ctx),
                            (kcld_svc_fn)cb, arg, &rc);
  if (!op)
    return rc;
  ((struct put_ctx *)kcld_svc_ctx(op))->count = n;
  kcld_svc_op_resource(op, "stream %s (%zu records)", stream, n);
  return kcld_svc_request_start(op, put_request(stream, records, n), NULL);
}

/* ======== Stream management ======== */

int kcld_kinesis_create_stream(struct kcld_kinesis *k, const char *name,
                               int shard_count, kcld_kinesis_done_cb cb,
                               void *arg)
{
  if (!k || !cb)
    return KCLD_EINVAL;
  if (!name || !*name || is_arn(name))
    return kcld_svc_bad_arg(&k->svc, s_create.operation, "no stream name");
  if (shard_count < 1)
    return kcld_svc_bad_arg(&k->svc, s_create.operation,
                            "shard count below 1");
  return kcld_svc_send(&k->svc, &s_create,
                       json_pack("{s:s, s:i}", "StreamName", name,
                                 "ShardCount", shard_count),
                       NULL, (kcld_svc_fn)cb, arg, "stream %s (%d shards)",
                       name, shard_count);
}

int kcld_kinesis_split_shard(struct kcld_kinesis *k, const char *stream,
                             const char *shard_id,
                             const char *new_starting_hash_key,
                             kcld_kinesis_done_cb cb, void *arg)
{
  if (!k || !cb)
    return KCLD_EINVAL;
  if (!stream || !*stream || !shard_id || !*shard_id)
    return kcld_svc_bad_arg(&k->svc, s_split.operation,
                            "no stream or shard id");
  if (!new_starting_hash_key || !*new_starting_hash_key ||
      strspn(new_starting_hash_key, "0123456789") !=
        strlen(new_starting_hash_key))
    return kcld_svc_bad_arg(&k->svc, s_split.operation,
                            "new starting hash key is not decimal");
  return kcld_svc_send(&k->svc, &s_split,
                       json_pack("{s:s, s:s, s:s}", stream_key(stream), stream,
                                 "ShardToSplit", shard_id,
                                 "NewStartingHashKey", new_starting_hash_key),
                       NULL, (kcld_svc_fn)cb, arg, "shard %s of stream %s",
                       shard_id, stream);
}

int kcld_kinesis_merge_shards(struct kcld_kinesis *k, const char *stream,
                              const char *shard_id,
                              const char *adjacent_shard_id,
                              kcld_kinesis_done_cb cb, void *arg)
{
  if (!k || !cb)
    return KCLD_EINVAL;
  if (!stream || !*stream || !shard_id || !*shard_id || !adjacent_shard_id ||
      !*adjacent_shard_id)
    return kcld_svc_bad_arg(&k->svc, s_merge.operation,
                            "no stream or shard ids");
  return kcld_svc_send(&k->svc, &s_merge,
                       json_pack("{s:s, s:s, s:s}", stream_key(stream), stream,
                                 "ShardToMerge", shard_id,
                                 "AdjacentShardToMerge", adjacent_shard_id),
                       NULL, (kcld_svc_fn)cb, arg,
                       "shards %s and %s of stream %s", shard_id,
                       adjacent_shard_id, stream);
}

/* ======== ListShards: pages and backoff ======== */

struct list_op {
  struct kcld_svc_op base;
  kcld_kinesis_list_cb cb;
  void *arg;
  char *stream;
  char *start_shard;
  char *next_token;
  int page_size;
  int max_retries;
  long base_ms, max_ms;
  int retries;        /* since the last page that arrived */
  int pages, throttled;
  json_t *shards;
  struct kcld_kinesis_shard *arr;
};

static void list_deliver(struct kcld_svc_op *base,
                         const struct kcld_svc_status *st)
{
  struct list_op *op = (struct list_op *)base;
  struct kcld_kinesis_shard_list r = {.st = *st};
  r.pages = op->pages;
  r.throttled = op->throttled;
  if (st->err == 0) {
    r.shards = op->arr;
    r.count = json_array_size(op->shards);
    r.doc = op->shards;
  }
  op->cb(&r, op->arg);
}

static void list_clean_up(struct kcld_svc_op *base)
{
  struct list_op *op = (struct list_op *)base;
  free(op->stream);
  free(op->start_shard);
  free(op->next_token);
  json_decref(op->shards);
  free(op->arr);
}

static json_t *list_request(struct list_op *op)
{
  json_t *j = json_object();
  int rc;
  if (!j)
    return NULL;
  if (op->next_token) /* with NextToken the stream must not be named again */
    rc = kcld_svc_set_str(j, "NextToken", op->next_token);
  else
    rc = set_stream(j, op->stream) ||
         (op->start_shard &&
          kcld_svc_set_str(j, "ExclusiveStartShardId", op->start_shard));
  if (rc == 0 && op->page_size > 0)
    rc = kcld_svc_set_int(j, "MaxResults", op->page_size);
  return kcld_svc_req(j, rc);
}

/* Sends the next page request.  Returns 0 or a negative KCLD_E* code. */
static int list_send(struct list_op *op)
{
  json_t *req = list_request(op);
  int rc = req ? kcld_svc_op_call(&op->base, req, NULL) : KCLD_ENOMEM;
  json_decref(req);
  return rc;
}

static void list_on_timer(struct kcld_svc_op *base)
{
  int rc = list_send((struct list_op *)base);
  if (rc < 0)
    kcld_svc_op_fail(base, rc, "could not send: %s", kcld_strerror(rc));
}

/* The whole list is in: map it and hand it back. */
static void list_finish(struct list_op *op)
{
  size_t n = json_array_size(op->shards);

  op->arr = calloc(n ? n : 1, sizeof(*op->arr));
  if (!op->arr) {
    kcld_svc_op_fail(&op->base, KCLD_ENOMEM, "out of memory");
    return;
  }
  for (size_t i = 0; i < n; i++) {
    json_t *s = json_array_get(op->shards, i);
    struct kcld_kinesis_shard *sh = &op->arr[i];
    sh->shard_id = kcld_svc_str(s, "ShardId");
    sh->parent_shard_id = kcld_svc_str(s, "ParentShardId");
    sh->adjacent_parent_shard_id = kcld_svc_str(s, "AdjacentParentShardId");
    sh->starting_hash_key = str_path(s, "HashKeyRange", "StartingHashKey");
    sh->ending_hash_key = str_path(s, "HashKeyRange", "EndingHashKey");
    sh->starting_sequence_number =
      str_path(s, "SequenceNumberRange", "StartingSequenceNumber");
    sh->ending_sequence_number =
      str_path(s, "SequenceNumberRange", "EndingSequenceNumber");
    if (!sh->shard_id || !sh->starting_hash_key || !sh->ending_hash_key ||
        !sh->starting_sequence_number) {
      struct kcld_svc_status st;
      kcld_svc_status_set(&op->base, &st, KCLD_EPARSE, NULL,
                          "shard %zu of the answer lacks ShardId, "
                          "HashKeyRange or SequenceNumberRange", i);
      kcld_svc_log_bad_answer(&op->base, &st);
      kcld_svc_op_end(&op->base, &st);
      return;
    }
  }
  kcld_svc_op_succeed(&op->base);
}

/* A throttled or expired-token page: backs off and returns 1, or returns 0
 * when the error is final. */
static int list_back_off(struct list_op *op, struct kcld_svc_status *st)
{
  enum kcld_kinesis_fault f = kcld_kinesis_fault(st);
  uint64_t ms;
  int rc;

  if ((f != KCLD_KINESIS_LIMIT && f != KCLD_KINESIS_EXPIRED_TOKEN) ||
      op->retries >= op->max_retries)
    return 0;
  ms = kcld_svc_backoff_ms(op->retries, op->base_ms, op->max_ms);
  op->retries++;
  if (f == KCLD_KINESIS_LIMIT) {
    op->throttled++;
  } else {
    /* The token outlived its 5 minutes: list again from the start. */
    free(op->next_token);
    op->next_token = NULL;
    json_array_clear(op->shards);
  }
  kcld_log(KCLD_LOG_INFO, "ListShards backing off", "stream", op->stream,
           "error", st->type, KCLD_LOG_INT("retry", op->retries),
           KCLD_LOG_UINT("delay_ms", ms), NULL);
  rc = kcld_svc_op_sleep(&op->base, ms);
  if (rc == 0)
    return 1;
  kcld_svc_status_set(&op->base, st, rc, NULL, "could not back off: %s",
                      kcld_strerror(rc));
  return 0;
}

static void list_on_result(struct kcld_svc_op *base,
                           const struct kcld_aws_result *res)
{
  struct list_op *op = (struct list_op *)base;
  struct kcld_svc_status st;
  json_t *page;
  const char *token;
  int rc;

  kcld_svc_status_from(base, &st, res);
  if (st.err) {
    if (!list_back_off(op, &st))
      kcld_svc_op_end(base, &st);
    return;
  }
  page = json_object_get(res->body, "Shards");
  token = kcld_svc_str(res->body, "NextToken");
  if (!json_is_array(page) && !token) {
    kcld_svc_status_set(base, &st, KCLD_EPARSE, NULL,
                        "no Shards in the answer");
    kcld_svc_log_bad_answer(base, &st);
    kcld_svc_op_end(base, &st);
    return;
  }
  op->pages++;
  op->retries = 0;
  if (json_is_array(page) && json_array_extend(op->shards, page) != 0) {
    kcld_svc_op_fail(base, KCLD_ENOMEM, "out of memory");
    return;
  }
  if (!token || !*token) {
    list_finish(op);
    return;
  }
  free(op->next_token);
  op->next_token = strdup(token);
  rc = op->next_token ? list_send(op) : KCLD_ENOMEM;
  if (rc < 0)
    kcld_svc_op_fail(base, rc, "could not ask for page %d: %s",
                     op->pages + 1, kcld_strerror(rc));
}

static const struct kcld_svc_op_type s_list_type = {
  .on_result = list_on_result,
  .on_timer = list_on_timer,
  .deliver = list_deliver,
  .clean_up = list_clean_up,
};

int kcld_kinesis_list_shards(struct kcld_kinesis *k, const char *stream,
                             const struct kcld_kinesis_list_opts *opts,
                             kcld_kinesis_list_cb cb, void *arg)
{
  const char *opname = "ListShards";
  struct kcld_kinesis_list_opts o = {0};
  struct list_op *op;
  int rc;

  if (!k || !cb)
    return KCLD_EINVAL;
  if (!stream || !*stream)
    return kcld_svc_bad_arg(&k->svc, opname, "no stream");
  if (opts)
    o = *opts;
  if (o.page_size < 0 || o.page_size > 10000)
    return kcld_svc_bad_arg(&k->svc, opname, "page size not in 1..10000");
  if (o.max_retries < -1 || o.backoff_base_ms < 0 || o.backoff_max_ms < 0)
    return kcld_svc_bad_arg(&k->svc, opname, "negative retry settings");

  op = kcld_svc_op_new(&k->svc, sizeof(*op), &s_list_type, opname, &rc);
  if (!op)
    return rc;
  op->cb = cb;
  op->arg = arg;
  op->page_size = o.page_size;
  op->max_retries = o.max_retries == 0 ? 10 : o.max_retries < 0 ? 0
                                                                : o.max_retries;
  op->base_ms = o.backoff_base_ms ? o.backoff_base_ms : 1000;
  op->max_ms = o.backoff_max_ms ? o.backoff_max_ms : 10000;
  kcld_svc_op_resource(&op->base, "stream %s", stream);
  op->stream = strdup(stream);
  op->start_shard =
    o.exclusive_start_shard_id ? strdup(o.exclusive_start_shard_id) : NULL;
  op->shards = json_array();
  if (!op->stream || !op->shards ||
      (o.exclusive_start_shard_id && !op->start_shard))
    rc = KCLD_ENOMEM;
  else
    rc = list_send(op);
  if (rc < 0)
    kcld_svc_op_release(&op->base);
  return rc;
}
