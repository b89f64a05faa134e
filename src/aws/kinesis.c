/* kinesis.c — Kinesis Data Streams calls: requests built, answers mapped to
 * small results, one callback per call.  The call layer signs and retries;
 * only ListShards (pages, LimitExceeded backoff) and the wait for ACTIVE
 * loop here. */
#include "aws/kinesis.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "err.h"
#include "log.h"

struct kcld_kinesis {
  struct kcld_svc svc;
};

/* ======== Helpers ======== */

static int bad_arg(const char *op, const char *reason)
{
  kcld_log(KCLD_LOG_WARN, "Kinesis call refused: invalid argument", "op", op,
           "reason", reason, NULL);
  return KCLD_EINVAL;
}

static int is_arn(const char *stream)
{
  return strncmp(stream, "arn:", 4) == 0;
}

/* Sets StreamName or StreamARN.  Returns 0 or KCLD_ENOMEM. */
static int set_stream(json_t *req, const char *stream)
{
  return json_object_set_new(req, is_arn(stream) ? "StreamARN" : "StreamName",
                             json_string(stream)) == 0
           ? 0
           : KCLD_ENOMEM;
}

static int set_str(json_t *req, const char *key, const char *v)
{
  return json_object_set_new(req, key, json_string(v)) == 0 ? 0 : KCLD_ENOMEM;
}

static int set_int(json_t *req, const char *key, json_int_t v)
{
  return json_object_set_new(req, key, json_integer(v)) == 0 ? 0 : KCLD_ENOMEM;
}

static const char *str_field(const json_t *obj, const char *key)
{
  return json_string_value(json_object_get(obj, key));
}

static const char *str_path(const json_t *obj, const char *key1,
                            const char *key2)
{
  return str_field(json_object_get(obj, key1), key2);
}

static void log_bad_answer(const struct kcld_svc_status *st)
{
  kcld_log(KCLD_LOG_WARN, "Kinesis answer not understood", "error",
           st->message, NULL);
}

int kcld_kinesis_new(struct kcld_aws *aws, uv_loop_t *loop,
                     struct kcld_kinesis **out)
{
  int err;
  if (!out)
    return KCLD_EINVAL;
  *out = kcld_svc_new(sizeof(**out), aws, loop, KCLD_AWS_KINESIS, &err);
  return err;
}

void kcld_kinesis_close(struct kcld_kinesis *k)
{
  if (k)
    kcld_svc_free(&k->svc);
}

enum kcld_kinesis_fault kcld_kinesis_fault(const struct kcld_svc_status *st)
{
  static const struct {
    const char *type;
    enum kcld_kinesis_fault fault;
  } map[] = {
    {"ExpiredIteratorException", KCLD_KINESIS_EXPIRED_ITERATOR},
    {"ProvisionedThroughputExceededException", KCLD_KINESIS_THROUGHPUT},
    {"KMSThrottlingException", KCLD_KINESIS_KMS_THROTTLED},
    {"LimitExceededException", KCLD_KINESIS_LIMIT},
    {"ResourceNotFoundException", KCLD_KINESIS_NOT_FOUND},
    {"ResourceInUseException", KCLD_KINESIS_IN_USE},
    {"InvalidArgumentException", KCLD_KINESIS_INVALID},
    {"ValidationException", KCLD_KINESIS_INVALID},
    {"AccessDeniedException", KCLD_KINESIS_ACCESS_DENIED},
    {"ExpiredNextTokenException", KCLD_KINESIS_EXPIRED_TOKEN},
    {"InternalFailure", KCLD_KINESIS_TRANSIENT},
    {"InternalFailureException", KCLD_KINESIS_TRANSIENT},
    {"ServiceUnavailable", KCLD_KINESIS_TRANSIENT},
    {"ServiceUnavailableException", KCLD_KINESIS_TRANSIENT},
  };
  if (!st || st->err == 0)
    return KCLD_KINESIS_OK;
  switch (st->err) {
  case KCLD_ECANCELED:
    return KCLD_KINESIS_CANCELED;
  case KCLD_ETRANSPORT:
  case KCLD_ETIMEDOUT:
  case KCLD_EPARSE:
    return KCLD_KINESIS_TRANSIENT;
  default:
    break;
  }
  if (st->type && st->type[0]) {
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
      if (strcmp(st->type, map[i].type) == 0)
        return map[i].fault;
    if (strncmp(st->type, "KMS", 3) == 0)
      return KCLD_KINESIS_KMS;
  }
  if (st->http_status >= 500)
    return KCLD_KINESIS_TRANSIENT;
  return KCLD_KINESIS_OTHER;
}

/* ======== Calls with one answer ======== */

enum simple_kind { K_DONE, K_SUMMARY, K_ITERATOR, K_RECORDS, K_PUT };

struct simple_op {
  struct kcld_svc_op base;
  enum simple_kind kind;
  union {
    kcld_kinesis_done_cb done;
    kcld_kinesis_summary_cb summary;
    kcld_kinesis_iterator_cb iterator;
    kcld_kinesis_records_cb records;
    kcld_kinesis_put_cb put;
  } cb;
  void *arg;
  /* Waiting for ACTIVE. */
  char *stream;
  uint64_t deadline;   /* uv_now() value; 0 = no wait */
  uint64_t poll_ms;
  long timeout_ms;
  const char *last_status;
  json_t *request;     /* kept for the next poll */
  /* PutRecords. */
  size_t put_count;
  struct kcld_kinesis_put_entry *entries;
};

/* Fills the summary from a DescribeStreamSummary answer; returns 0 or -1
 * when it is not the expected shape. */
static int summary_from(struct kcld_kinesis_stream_summary *sum,
                        const json_t *body)
{
  json_t *d = json_object_get(body, "StreamDescriptionSummary");
  if (!json_is_object(d) || !str_field(d, "StreamStatus"))
    return -1;
  sum->doc = d;
  sum->stream_name = str_field(d, "StreamName");
  sum->stream_arn = str_field(d, "StreamARN");
  sum->status = str_field(d, "StreamStatus");
  sum->open_shard_count =
    (int)json_integer_value(json_object_get(d, "OpenShardCount"));
  sum->retention_hours =
    (int)json_integer_value(json_object_get(d, "RetentionPeriodHours"));
  sum->encryption = str_field(d, "EncryptionType");
  sum->mode = str_path(d, "StreamModeDetails", "StreamMode");
  return 0;
}

static void simple_fail(struct kcld_svc_op *base,
                        const struct kcld_svc_status *st)
{
  struct simple_op *op = (struct simple_op *)base;

  switch (op->kind) {
  case K_DONE:
    op->cb.done(st, op->arg);
    break;
  case K_SUMMARY: {
    struct kcld_kinesis_stream_summary r = {.st = *st};
    op->cb.summary(&r, op->arg);
    break;
  }
  case K_ITERATOR: {
    struct kcld_kinesis_iterator r = {.st = *st};
    op->cb.iterator(&r, op->arg);
    break;
  }
  case K_RECORDS: {
    struct kcld_kinesis_records_raw r = {.st = *st};
    op->cb.records(&r, op->arg);
    break;
  }
  case K_PUT: {
    struct kcld_kinesis_put_result r = {.st = *st};
    op->cb.put(&r, op->arg);
    break;
  }
  }
}

static void simple_clean_up(struct kcld_svc_op *base)
{
  struct simple_op *op = (struct simple_op *)base;
  free(op->stream);
  json_decref(op->request);
  free(op->entries);
}

static void wait_poll(struct kcld_svc_op *base);

static void summary_result(struct simple_op *op,
                           const struct kcld_aws_result *res)
{
  struct kcld_kinesis_stream_summary r;
  uv_loop_t *loop = op->base.svc->loop;

  memset(&r, 0, sizeof(r));
  kcld_svc_status_from(&op->base, &r.st, res);
  if (r.st.err == 0 && summary_from(&r, res->body) != 0) {
    kcld_svc_status_set(&op->base, &r.st, KCLD_EPARSE, NULL,
                        "no StreamDescriptionSummary.StreamStatus in the "
                        "answer");
    log_bad_answer(&r.st);
  }
  if (op->deadline) {
    int again = 0;
    if (r.st.err == 0 && strcmp(r.status, "ACTIVE") != 0) {
      again = 1;
      op->last_status = strcmp(r.status, "CREATING") == 0   ? "CREATING"
                        : strcmp(r.status, "UPDATING") == 0 ? "UPDATING"
                        : strcmp(r.status, "DELETING") == 0 ? "DELETING"
                                                            : "unknown";
    } else if (r.st.err == KCLD_ENOTFOUND) {
      again = 1;
      op->last_status = "not found";
    }
    if (again) {
      uv_update_time(loop);
      if (uv_now(loop) >= op->deadline) {
        kcld_svc_status_set(&op->base, &r.st, KCLD_ETIMEDOUT, NULL,
                            "not ACTIVE after %ld ms (last: %s)",
                            op->timeout_ms, op->last_status);
      } else {
        uint64_t left = op->deadline - uv_now(loop);
        int rc = kcld_svc_op_sleep(&op->base,
                                   op->poll_ms < left ? op->poll_ms : left);
        op->poll_ms = op->poll_ms * 2 > 2000 ? 2000 : op->poll_ms * 2;
        if (rc == 0)
          return;
        kcld_svc_status_set(&op->base, &r.st, rc, NULL,
                            "could not wait: %s", kcld_strerror(rc));
      }
    }
  }
  if (r.st.err)
    memset((char *)&r + sizeof(r.st), 0, sizeof(r) - sizeof(r.st));
  kcld_svc_op_done(&op->base);
  op->cb.summary(&r, op->arg);
  kcld_svc_op_release(&op->base);
}

static void put_result(struct simple_op *op, const struct kcld_aws_result *res)
{
  struct kcld_kinesis_put_result r;
  json_t *recs;

  memset(&r, 0, sizeof(r));
  kcld_svc_status_from(&op->base, &r.st, res);
  if (r.st.err) {
    kcld_svc_op_fail(&op->base, &r.st);
    return;
  }
  recs = json_object_get(res->body, "Records");
  if (!json_is_array(recs) || json_array_size(recs) != op->put_count) {
    kcld_svc_status_set(&op->base, &r.st, KCLD_EPARSE, NULL,
                        "answer has %zu Records for %zu sent",
                        json_array_size(recs), op->put_count);
    log_bad_answer(&r.st);
    kcld_svc_op_fail(&op->base, &r.st);
    return;
  }
  for (size_t i = 0; i < op->put_count; i++) {
    json_t *e = json_array_get(recs, i);
    struct kcld_kinesis_put_entry *pe = &op->entries[i];
    pe->error_code = str_field(e, "ErrorCode");
    pe->error_message = str_field(e, "ErrorMessage");
    pe->sequence_number = str_field(e, "SequenceNumber");
    pe->shard_id = str_field(e, "ShardId");
    if (!pe->error_code && !pe->sequence_number)
      pe->error_code = "MissingSequenceNumber";
    if (pe->error_code) {
      pe->sequence_number = NULL;
      pe->shard_id = NULL;
      r.failed++;
    }
  }
  r.entries = op->entries;
  r.count = op->put_count;
  kcld_svc_op_done(&op->base);
  op->cb.put(&r, op->arg);
  kcld_svc_op_release(&op->base);
}

static void simple_on_result(struct kcld_svc_op *base,
                             const struct kcld_aws_result *res)
{
  struct simple_op *op = (struct simple_op *)base;
  struct kcld_svc_status st;

  switch (op->kind) {
  case K_SUMMARY:
    summary_result(op, res);
    return;
  case K_PUT:
    put_result(op, res);
    return;
  default:
    break;
  }

  kcld_svc_status_from(base, &st, res);
  if (st.err) {
    kcld_svc_op_fail(&op->base, &st);
    return;
  }
  kcld_svc_op_done(base);
  if (op->kind == K_DONE) {
    op->cb.done(&st, op->arg);
  } else if (op->kind == K_ITERATOR) {
    struct kcld_kinesis_iterator r = {.st = st};
    json_t *it = json_object_get(res->body, "ShardIterator");
    r.shard_iterator = json_string_value(it);
    /* A null iterator is how Kinesis says a closed shard has nothing
     * after the position asked for: the shard's end, not an error. */
    if (!r.shard_iterator && !json_is_null(it)) {
      kcld_svc_status_set(base, &r.st, KCLD_EPARSE, NULL,
                          "no ShardIterator in the answer");
      log_bad_answer(&r.st);
    }
    op->cb.iterator(&r, op->arg);
  } else {
    struct kcld_kinesis_records_raw r = {.st = st};
    r.body = res->raw;
    r.body_len = res->raw_len;
    if (!r.body) {
      kcld_svc_status_set(base, &r.st, KCLD_EPARSE, NULL,
                          "no body in the answer");
      r.body_len = 0;
    }
    op->cb.records(&r, op->arg);
  }
  kcld_svc_op_release(base);
}

static const struct kcld_svc_op_type s_simple_type = {
  .on_result = simple_on_result,
  .on_timer = wait_poll,
  .fail = simple_fail,
  .clean_up = simple_clean_up,
};

static struct simple_op *simple_new(struct kcld_kinesis *k, const char *opname,
                                    enum simple_kind kind, void *arg, int *err)
{
  struct simple_op *op = kcld_svc_op_new(&k->svc, sizeof(*op), &s_simple_type,
                                         opname, err);
  if (!op)
    return NULL;
  op->kind = kind;
  op->arg = arg;
  return op;
}

/* ======== DescribeStreamSummary and the wait ======== */

static void wait_poll(struct kcld_svc_op *base)
{
  kcld_svc_op_poll(base, ((struct simple_op *)base)->request);
}

static int summary_start(struct kcld_kinesis *k, const char *stream,
                         int wait, long timeout_ms, kcld_kinesis_summary_cb cb,
                         void *arg)
{
  const char *opname = "DescribeStreamSummary";
  struct simple_op *op;
  json_t *req;
  int rc;

  if (!k || !cb)
    return KCLD_EINVAL;
  if (!stream || !*stream)
    return bad_arg(opname, "no stream");
  if (timeout_ms < 0)
    return bad_arg(opname, "negative timeout");
  op = simple_new(k, opname, K_SUMMARY, arg, &rc);
  if (!op)
    return rc;
  op->cb.summary = cb;
  kcld_svc_op_resource(&op->base, "stream %s", stream);
  req = json_object();
  if (req && set_stream(req, stream) != 0) {
    json_decref(req);
    req = NULL;
  }
  if (wait && req) {
    uv_update_time(k->svc.loop);
    op->timeout_ms = timeout_ms ? timeout_ms : 60000;
    op->deadline = uv_now(k->svc.loop) + (uint64_t)op->timeout_ms;
    op->poll_ms = 100;
    op->last_status = "none";
    op->request = json_incref(req);
  }
  return kcld_svc_op_start(&op->base, req, NULL);
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
  const char *opname = "GetShardIterator";
  struct simple_op *op;
  json_t *j;
  int rc, by_seq;

  if (!k || !req || !cb)
    return KCLD_EINVAL;
  if (!req->stream || !*req->stream)
    return bad_arg(opname, "no stream");
  if (!req->shard_id || !*req->shard_id)
    return bad_arg(opname, "no shard id");
  if ((int)req->type < 0 || req->type > KCLD_KINESIS_AT_TIMESTAMP)
    return bad_arg(opname, "unknown iterator type");
  by_seq = req->type == KCLD_KINESIS_AT_SEQUENCE_NUMBER ||
           req->type == KCLD_KINESIS_AFTER_SEQUENCE_NUMBER;
  if (by_seq && (!req->sequence_number || !*req->sequence_number))
    return bad_arg(opname, "no sequence number for *_SEQUENCE_NUMBER");
  if (req->type == KCLD_KINESIS_AT_TIMESTAMP && req->timestamp_ms < 0)
    return bad_arg(opname, "negative timestamp");

  op = simple_new(k, opname, K_ITERATOR, arg, &rc);
  if (!op)
    return rc;
  op->cb.iterator = cb;
  kcld_svc_op_resource(&op->base, "shard %s of stream %s (%s%s%s)",
                       req->shard_id, req->stream, types[req->type],
                       by_seq ? " " : "", by_seq ? req->sequence_number : "");
  j = json_object();
  if (j && (set_stream(j, req->stream) ||
            set_str(j, "ShardId", req->shard_id) ||
            set_str(j, "ShardIteratorType", types[req->type]) ||
            (by_seq &&
             set_str(j, "StartingSequenceNumber", req->sequence_number)) ||
            (req->type == KCLD_KINESIS_AT_TIMESTAMP &&
             json_object_set_new(j, "Timestamp",
                                 json_real((double)req->timestamp_ms /
                                           1000.0)) != 0))) {
    json_decref(j);
    j = NULL;
  }
  return kcld_svc_op_start(&op->base, j, NULL);
}

/* ======== GetRecords ======== */

int kcld_kinesis_get_records(struct kcld_kinesis *k,
                             const struct kcld_kinesis_get_records_req *req,
                             kcld_kinesis_records_cb cb, void *arg)
{
  const char *opname = "GetRecords";
  struct kcld_aws_call_opts o = {.raw = 1};
  struct simple_op *op;
  json_t *j;
  int rc;

  if (!k || !req || !cb)
    return KCLD_EINVAL;
  if (!req->shard_iterator || !*req->shard_iterator)
    return bad_arg(opname, "no shard iterator");
  if (req->limit < 0 || req->limit > 10000)
    return bad_arg(opname, "limit not in 1..10000");
  if (req->max_attempts < 0 || req->timeout_ms < 0)
    return bad_arg(opname, "negative max_attempts or timeout");
  o.max_attempts = req->max_attempts;
  o.timeout_ms = req->timeout_ms;

  op = simple_new(k, opname, K_RECORDS, arg, &rc);
  if (!op)
    return rc;
  op->cb.records = cb;
  if (req->shard_id)
    kcld_svc_op_resource(&op->base, "shard %s", req->shard_id);
  else
    kcld_svc_op_resource(&op->base, "iterator %.24s...", req->shard_iterator);
  j = json_object();
  if (j && (set_str(j, "ShardIterator", req->shard_iterator) ||
            (req->limit > 0 && set_int(j, "Limit", req->limit)) ||
            (req->stream_arn && set_str(j, "StreamARN", req->stream_arn)))) {
    json_decref(j);
    j = NULL;
  }
  return kcld_svc_op_start(&op->base, j, &o);
}

/* ======== PutRecords ======== */

/* Characters (code points) in a UTF-8 string, or -1 when it is not UTF-8. */
static long utf8_chars(const char *s)
{
  long n = 0;
  json_t *check = json_string(s);
  if (!check)
    return -1;
  json_decref(check);
  for (; *s; s++)
    if (((unsigned char)*s & 0xC0) != 0x80)
      n++;
  return n;
}

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
    size_t need = 4 * ((r->len + 2) / 3) + 1;
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
    EVP_EncodeBlock((unsigned char *)b64, r->data, (int)r->len);
    if (set_str(e, "Data", b64) ||
        set_str(e, "PartitionKey", r->partition_key) ||
        (r->explicit_hash_key &&
         set_str(e, "ExplicitHashKey", r->explicit_hash_key)))
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
  const char *opname = "PutRecords";
  struct simple_op *op;
  size_t total = 0;
  int rc;

  if (!k || !cb)
    return KCLD_EINVAL;
  if (!stream || !*stream)
    return bad_arg(opname, "no stream");
  if (!records || n == 0 || n > KCLD_KINESIS_PUT_MAX_RECORDS)
    return bad_arg(opname, "record count not in 1..500");
  for (size_t i = 0; i < n; i++) {
    const struct kcld_kinesis_record *r = &records[i];
    long chars;
    if (!r->data && r->len)
      return bad_arg(opname, "record without data");
    if (!r->partition_key)
      return bad_arg(opname, "record without partition key");
    chars = utf8_chars(r->partition_key);
    if (chars < 1 || chars > 256)
      return bad_arg(opname, "partition key not 1..256 UTF-8 characters");
    if (r->len > KCLD_KINESIS_PUT_MAX_RECORD ||
        r->len + strlen(r->partition_key) > KCLD_KINESIS_PUT_MAX_RECORD)
      return bad_arg(opname, "record over 1 MiB (data + partition key)");
    total += r->len + strlen(r->partition_key);
  }
  if (total > KCLD_KINESIS_PUT_MAX_TOTAL)
    return bad_arg(opname, "records over 5 MiB in total");

  op = simple_new(k, opname, K_PUT, arg, &rc);
  if (!op)
    return rc;
  op->cb.put = cb;
  op->put_count = n;
  kcld_svc_op_resource(&op->base, "stream %s (%zu records)", stream, n);
  op->entries = calloc(n, sizeof(*op->entries));
  if (!op->entries) {
    kcld_svc_op_release(&op->base);
    return KCLD_ENOMEM;
  }
  return kcld_svc_op_start(&op->base, put_request(stream, records, n), NULL);
}

/* ======== Stream management ======== */

int kcld_kinesis_create_stream(struct kcld_kinesis *k, const char *name,
                               int shard_count, kcld_kinesis_done_cb cb,
                               void *arg)
{
  const char *opname = "CreateStream";
  struct simple_op *op;
  json_t *j;
  int rc;

  if (!k || !cb)
    return KCLD_EINVAL;
  if (!name || !*name || is_arn(name))
    return bad_arg(opname, "no stream name");
  if (shard_count < 1)
    return bad_arg(opname, "shard count below 1");
  op = simple_new(k, opname, K_DONE, arg, &rc);
  if (!op)
    return rc;
  op->cb.done = cb;
  kcld_svc_op_resource(&op->base, "stream %s (%d shards)", name, shard_count);
  j = json_object();
  if (j && (set_str(j, "StreamName", name) ||
            set_int(j, "ShardCount", shard_count))) {
    json_decref(j);
    j = NULL;
  }
  return kcld_svc_op_start(&op->base, j, NULL);
}

int kcld_kinesis_split_shard(struct kcld_kinesis *k, const char *stream,
                             const char *shard_id,
                             const char *new_starting_hash_key,
                             kcld_kinesis_done_cb cb, void *arg)
{
  const char *opname = "SplitShard";
  struct simple_op *op;
  json_t *j;
  int rc;

  if (!k || !cb)
    return KCLD_EINVAL;
  if (!stream || !*stream || !shard_id || !*shard_id)
    return bad_arg(opname, "no stream or shard id");
  if (!new_starting_hash_key || !*new_starting_hash_key ||
      strspn(new_starting_hash_key, "0123456789") !=
        strlen(new_starting_hash_key))
    return bad_arg(opname, "new starting hash key is not decimal");
  op = simple_new(k, opname, K_DONE, arg, &rc);
  if (!op)
    return rc;
  op->cb.done = cb;
  kcld_svc_op_resource(&op->base, "shard %s of stream %s", shard_id, stream);
  j = json_object();
  if (j && (set_stream(j, stream) || set_str(j, "ShardToSplit", shard_id) ||
            set_str(j, "NewStartingHashKey", new_starting_hash_key))) {
    json_decref(j);
    j = NULL;
  }
  return kcld_svc_op_start(&op->base, j, NULL);
}

int kcld_kinesis_merge_shards(struct kcld_kinesis *k, const char *stream,
                              const char *shard_id,
                              const char *adjacent_shard_id,
                              kcld_kinesis_done_cb cb, void *arg)
{
  const char *opname = "MergeShards";
  struct simple_op *op;
  json_t *j;
  int rc;

  if (!k || !cb)
    return KCLD_EINVAL;
  if (!stream || !*stream || !shard_id || !*shard_id || !adjacent_shard_id ||
      !*adjacent_shard_id)
    return bad_arg(opname, "no stream or shard ids");
  op = simple_new(k, opname, K_DONE, arg, &rc);
  if (!op)
    return rc;
  op->cb.done = cb;
  kcld_svc_op_resource(&op->base, "shards %s and %s of stream %s", shard_id,
                       adjacent_shard_id, stream);
  j = json_object();
  if (j && (set_stream(j, stream) || set_str(j, "ShardToMerge", shard_id) ||
            set_str(j, "AdjacentShardToMerge", adjacent_shard_id))) {
    json_decref(j);
    j = NULL;
  }
  return kcld_svc_op_start(&op->base, j, NULL);
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

static void list_fail(struct kcld_svc_op *base,
                      const struct kcld_svc_status *st)
{
  struct list_op *op = (struct list_op *)base;
  struct kcld_kinesis_shard_list r = {.st = *st};
  r.pages = op->pages;
  r.throttled = op->throttled;
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
  if (!j)
    return NULL;
  if (op->next_token) {
    /* With NextToken the stream must not be named again. */
    if (set_str(j, "NextToken", op->next_token))
      goto fail;
  } else if (set_stream(j, op->stream) ||
             (op->start_shard &&
              set_str(j, "ExclusiveStartShardId", op->start_shard))) {
    goto fail;
  }
  if (op->page_size > 0 && set_int(j, "MaxResults", op->page_size))
    goto fail;
  return j;

fail:
  json_decref(j);
  return NULL;
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
  struct list_op *op = (struct list_op *)base;
  int rc = list_send(op);
  if (rc < 0) {
    struct kcld_svc_status st;
    kcld_svc_status_set(base, &st, rc, NULL, "could not send: %s",
                        kcld_strerror(rc));
    kcld_svc_op_fail(&op->base, &st);
  }
}

/* The whole list is in: hand it back. */
static void list_deliver(struct list_op *op)
{
  struct kcld_kinesis_shard_list r;
  size_t n = json_array_size(op->shards);

  memset(&r, 0, sizeof(r));
  r.st.type = "";
  r.st.message = "";
  op->arr = calloc(n ? n : 1, sizeof(*op->arr));
  if (!op->arr) {
    kcld_svc_status_set(&op->base, &r.st, KCLD_ENOMEM, NULL, "out of memory");
    kcld_svc_op_fail(&op->base, &r.st);
    return;
  }
  for (size_t i = 0; i < n; i++) {
    json_t *s = json_array_get(op->shards, i);
    struct kcld_kinesis_shard *sh = &op->arr[i];
    sh->shard_id = str_field(s, "ShardId");
    sh->parent_shard_id = str_field(s, "ParentShardId");
    sh->adjacent_parent_shard_id = str_field(s, "AdjacentParentShardId");
    sh->starting_hash_key = str_path(s, "HashKeyRange", "StartingHashKey");
    sh->ending_hash_key = str_path(s, "HashKeyRange", "EndingHashKey");
    sh->starting_sequence_number =
      str_path(s, "SequenceNumberRange", "StartingSequenceNumber");
    sh->ending_sequence_number =
      str_path(s, "SequenceNumberRange", "EndingSequenceNumber");
    if (!sh->shard_id || !sh->starting_hash_key || !sh->ending_hash_key ||
        !sh->starting_sequence_number) {
      kcld_svc_status_set(&op->base, &r.st, KCLD_EPARSE, NULL,
                          "shard %zu of the answer lacks ShardId, "
                          "HashKeyRange or SequenceNumberRange", i);
      log_bad_answer(&r.st);
      kcld_svc_op_fail(&op->base, &r.st);
      return;
    }
  }
  r.shards = op->arr;
  r.count = n;
  r.pages = op->pages;
  r.throttled = op->throttled;
  r.doc = op->shards;
  kcld_svc_op_done(&op->base);
  op->cb(&r, op->arg);
  kcld_svc_op_release(&op->base);
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
    enum kcld_kinesis_fault f = kcld_kinesis_fault(&st);
    if ((f == KCLD_KINESIS_LIMIT || f == KCLD_KINESIS_EXPIRED_TOKEN) &&
        op->retries < op->max_retries) {
      uint64_t ms = kcld_svc_backoff_ms(base->svc, op->retries, op->base_ms,
                                        op->max_ms);
      char ms_text[24], retry_text[16];
      op->retries++;
      if (f == KCLD_KINESIS_LIMIT) {
        op->throttled++;
      } else {
        /* The token outlived its 5 minutes: list again from the start. */
        free(op->next_token);
        op->next_token = NULL;
        json_array_clear(op->shards);
      }
      snprintf(ms_text, sizeof(ms_text), "%llu", (unsigned long long)ms);
      snprintf(retry_text, sizeof(retry_text), "%d", op->retries);
      kcld_log(KCLD_LOG_INFO, "ListShards backing off", "stream", op->stream,
               "error", st.type, "retry", retry_text, "delay_ms", ms_text,
               NULL);
      rc = kcld_svc_op_sleep(base, ms);
      if (rc == 0)
        return;
      kcld_svc_status_set(base, &st, rc, NULL, "could not back off: %s",
                          kcld_strerror(rc));
    }
    kcld_svc_op_fail(&op->base, &st);
    return;
  }

  page = json_object_get(res->body, "Shards");
  token = str_field(res->body, "NextToken");
  if (!json_is_array(page) && !token) {
    kcld_svc_status_set(base, &st, KCLD_EPARSE, NULL,
                        "no Shards in the answer");
    log_bad_answer(&st);
    kcld_svc_op_fail(&op->base, &st);
    return;
  }
  op->pages++;
  op->retries = 0;
  if (json_is_array(page) && json_array_extend(op->shards, page) != 0) {
    kcld_svc_status_set(base, &st, KCLD_ENOMEM, NULL, "out of memory");
    kcld_svc_op_fail(&op->base, &st);
    return;
  }
  if (!token || !*token) {
    list_deliver(op);
    return;
  }
  free(op->next_token);
  op->next_token = strdup(token);
  rc = op->next_token ? list_send(op) : KCLD_ENOMEM;
  if (rc < 0) {
    kcld_svc_status_set(base, &st, rc, NULL, "could not ask for page %d: %s",
                        op->pages + 1, kcld_strerror(rc));
    kcld_svc_op_fail(&op->base, &st);
  }
}

static const struct kcld_svc_op_type s_list_type = {
  .on_result = list_on_result,
  .on_timer = list_on_timer,
  .fail = list_fail,
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
    return bad_arg(opname, "no stream");
  if (opts)
    o = *opts;
  if (o.page_size < 0 || o.page_size > 10000)
    return bad_arg(opname, "page size not in 1..10000");
  if (o.max_retries < -1 || o.backoff_base_ms < 0 || o.backoff_max_ms < 0)
    return bad_arg(opname, "negative retry settings");

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
