/* sqs.c — SQS calls over the JSON protocol: requests built, answers mapped,
 * one callback per call; SendMessageBatch refuses what SQS would, packs the
 * rest into as few calls as the limits allow and reports every entry.  The
 * skeleton (svc.c) runs the operations. */
#include "aws/sqs.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

struct kcld_sqs {
  struct kcld_svc svc;
};

int kcld_sqs_new(struct kcld_aws *aws, uv_loop_t *loop, struct kcld_sqs **out)
{
  return kcld_svc_new(sizeof(**out), aws, loop, KCLD_AWS_SQS, (void **)out);
}

void kcld_sqs_close(struct kcld_sqs *sqs)
{
  if (sqs)
    kcld_svc_close(&sqs->svc);
}

/* ======== Calls with one answer ======== */

KCLD_SVC_SHAPE(s_done_shape, struct kcld_svc_status, kcld_sqs_done_cb);
KCLD_SVC_SHAPE(s_queue_shape, struct kcld_sqs_queue, kcld_sqs_queue_cb);
KCLD_SVC_SHAPE(s_attrs_shape, struct kcld_sqs_attributes,
               kcld_sqs_attributes_cb);
KCLD_SVC_SHAPE(s_receive_shape, struct kcld_sqs_receive_result,
               kcld_sqs_receive_cb);

static int queue_map(struct kcld_svc_op *op, const struct kcld_aws_result *res,
                     void *result)
{
  struct kcld_sqs_queue *r = result;
  r->queue_url = kcld_svc_str(res->body, "QueueUrl");
  if (!r->queue_url) {
    kcld_svc_status_set(op, &r->st, KCLD_EPARSE, NULL,
                        "no QueueUrl in the answer");
    return KCLD_EPARSE;
  }
  return 0;
}

static int attrs_map(struct kcld_svc_op *op, const struct kcld_aws_result *res,
                     void *result)
{
  struct kcld_sqs_attributes *r = result;
  json_t *a = json_object_get(res->body, "Attributes");
  if (!a) {
    /* None asked for is none given. */
    json_t *none = json_object();
    a = kcld_svc_op_keep(op, none);
    json_decref(none);
    if (!a) {
      kcld_svc_status_set(op, &r->st, KCLD_ENOMEM, NULL, "out of memory");
      return KCLD_ENOMEM;
    }
  }
  if (!json_is_object(a)) {
    kcld_svc_status_set(op, &r->st, KCLD_EPARSE, NULL,
                        "Attributes in the answer is not an object");
    return KCLD_EPARSE;
  }
  r->attributes = a;
  return 0;
}

/* Maps a ReceiveMessage answer. */
static int receive_map(struct kcld_svc_op *op,
                       const struct kcld_aws_result *res, void *result)
{
  struct kcld_sqs_receive_result *r = result;
  json_t *msgs = json_object_get(res->body, "Messages");
  struct kcld_sqs_message *out;
  size_t n;

  if (!msgs || json_is_null(msgs))
    return 0;
  if (!json_is_array(msgs))
    goto malformed;
  n = json_array_size(msgs);
  out = kcld_svc_op_alloc(op, n * sizeof(*out));
  if (!out) {
    kcld_svc_status_set(op, &r->st, KCLD_ENOMEM, NULL, "out of memory");
    return KCLD_ENOMEM;
  }
  for (size_t i = 0; i < n; i++) {
    json_t *m = json_array_get(msgs, i);
    out[i].message_id = kcld_svc_str(m, "MessageId");
    out[i].receipt_handle = kcld_svc_str(m, "ReceiptHandle");
    out[i].body = kcld_svc_str(m, "Body");
    out[i].md5_of_body = kcld_svc_str(m, "MD5OfBody");
    out[i].attributes = json_object_get(m, "Attributes");
    out[i].message_attributes = json_object_get(m, "MessageAttributes");
    if (!out[i].message_id || !out[i].receipt_handle || !out[i].body)
      goto malformed;
  }
  r->messages = out;
  r->count = n;
  return 0;

malformed:
  kcld_svc_status_set(op, &r->st, KCLD_EPARSE, NULL,
                      "malformed Messages in the answer");
  return KCLD_EPARSE;
}

static const struct kcld_svc_spec s_get_queue_url = {
  "GetQueueUrl", &s_queue_shape, queue_map, NULL, NULL};
static const struct kcld_svc_spec s_create_queue = {
  "CreateQueue", &s_queue_shape, queue_map, NULL, NULL};
static const struct kcld_svc_spec s_get_attrs = {
  "GetQueueAttributes", &s_attrs_shape, attrs_map, NULL, NULL};
static const struct kcld_svc_spec s_receive = {
  "ReceiveMessage", &s_receive_shape, receive_map, NULL, NULL};
static const struct kcld_svc_spec s_delete = {
  "DeleteMessage", &s_done_shape, NULL, NULL, NULL};

static const struct kcld_svc_spec s_visibility = {
  "ChangeMessageVisibility", &s_done_shape, NULL, NULL, NULL};

int kcld_sqs_get_queue_url(struct kcld_sqs *sqs, const char *queue_name,
                           kcld_sqs_queue_cb cb, void *arg)
{
  if (!sqs || !cb)
    return KCLD_EINVAL;
  if (!queue_name || !*queue_name)
    return kcld_svc_bad_arg(&sqs->svc, s_get_queue_url.operation,
                            "no queue name");
  return kcld_svc_send(&sqs->svc, &s_get_queue_url,
                       json_pack("{s:s}", "QueueName", queue_name), NULL,
                       (kcld_svc_fn)cb, arg, "queue %s", queue_name);
}

int kcld_sqs_create_queue(struct kcld_sqs *sqs, const char *queue_name,
                          const json_t *attributes, kcld_sqs_queue_cb cb,
                          void *arg)
{
  const char *opname = s_create_queue.operation;
  if (!sqs || !cb)
    return KCLD_EINVAL;
  if (!queue_name || !*queue_name)
    return kcld_svc_bad_arg(&sqs->svc, opname, "no queue name");
  if (attributes && !json_is_object(attributes))
    return kcld_svc_bad_arg(&sqs->svc, opname, "attributes is not an object");
  return kcld_svc_send(&sqs->svc, &s_create_queue,
                       json_pack("{s:s, s:O*}", "QueueName", queue_name,
                                 "Attributes", attributes),
                       NULL, (kcld_svc_fn)cb, arg, "queue %s", queue_name);
}

int kcld_sqs_get_queue_attributes(struct kcld_sqs *sqs, const char *queue_url,
                                  const char *const *names,
                                  kcld_sqs_attributes_cb cb, void *arg)
{
  json_t *req, *list;
  int rc;
  if (!sqs || !cb)
    return KCLD_EINVAL;
  if (!queue_url || !*queue_url)
    return kcld_svc_bad_arg(&sqs->svc, s_get_attrs.operation,
                            "no queue URL");
  list = names ? json_array() : json_pack("[s]", "All");
  rc = list ? 0 : KCLD_ENOMEM;
  for (size_t i = 0; rc == 0 && names && names[i]; i++)
    rc = json_array_append_new(list, json_string(names[i])) ? KCLD_ENOMEM : 0;
  req = rc == 0 ? json_pack("{s:s, s:O}", "QueueUrl", queue_url,
                            "AttributeNames", list)
                : NULL;
  json_decref(list);
  return kcld_svc_send(&sqs->svc, &s_get_attrs, req, NULL, (kcld_svc_fn)cb,
                       arg, "queue %s", queue_url);
}

int kcld_sqs_receive_message(struct kcld_sqs *sqs,
                             const struct kcld_sqs_receive_req *req,
                             kcld_sqs_receive_cb cb, void *arg)
{
  const char *opname = s_receive.operation;
  struct kcld_aws_call_opts o = {0};
  json_t *j;
  if (!sqs || !req || !cb)
    return KCLD_EINVAL;
  if (!req->queue_url || !*req->queue_url)
    return kcld_svc_bad_arg(&sqs->svc, opname, "no queue URL");
  if (req->max_messages < 0 || req->max_messages > 10)
    return kcld_svc_bad_arg(&sqs->svc, opname, "max_messages not in 1..10");
  if (req->wait_seconds < 0 || req->wait_seconds > 20)
    return kcld_svc_bad_arg(&sqs->svc, opname, "wait_seconds not in 0..20");
  if (req->visibility_timeout < -1 || req->visibility_timeout > 43200)
    return kcld_svc_bad_arg(&sqs->svc, opname,
                            "visibility_timeout not in 0..43200");
  if (req->wait_seconds > 0)
    o.timeout_ms = (req->wait_seconds + 10) * 1000L; /* long poll */
  j = json_pack("{s:s, s:i, s:i, s:[s], s:[s]}", "QueueUrl", req->queue_url,
                "MaxNumberOfMessages",
                req->max_messages ? req->max_messages : 1, "WaitTimeSeconds",
                req->wait_seconds, "MessageSystemAttributeNames", "All",
                "MessageAttributeNames", "All");
  if (j && req->visibility_timeout >= 0 &&
      kcld_svc_set_int(j, "VisibilityTimeout", req->visibility_timeout)) {
    json_decref(j);
    j = NULL;
  }
  return kcld_svc_send(&sqs->svc, &s_receive, j, &o, (kcld_svc_fn)cb, arg,
                       "queue %s", req->queue_url);
}

int kcld_sqs_delete_message(struct kcld_sqs *sqs, const char *queue_url,
                            const char *receipt_handle, kcld_sqs_done_cb cb,
                            void *arg)
{
  if (!sqs || !cb)
    return KCLD_EINVAL;
  if (!queue_url || !*queue_url || !receipt_handle || !*receipt_handle)
    return kcld_svc_bad_arg(&sqs->svc, s_delete.operation,
                            "no queue URL or receipt handle");
  return kcld_svc_send(&sqs->svc, &s_delete,
                       json_pack("{s:s, s:s}", "QueueUrl", queue_url,
                                 "ReceiptHandle", receipt_handle),
                       NULL, (kcld_svc_fn)cb, arg, "queue %s", queue_url);
}

int kcld_sqs_change_visibility(struct kcld_sqs *sqs, const char *queue_url,
                               const char *receipt_handle, int seconds,
                               kcld_sqs_done_cb cb, void *arg)
{
  if (!sqs || !cb)
    return KCLD_EINVAL;
  if (!queue_url || !*queue_url || !receipt_handle || !*receipt_handle ||
      seconds < 0)
    return kcld_svc_bad_arg(&sqs->svc, s_visibility.operation,
                            "no queue URL or receipt handle");
  return kcld_svc_send(&sqs->svc, &s_visibility,
                       json_pack("{s:s, s:s, s:i}", "QueueUrl", queue_url,
                                 "ReceiptHandle", receipt_handle,
                                 "VisibilityTimeout", seconds),
                       NULL, (kcld_svc_fn)cb, arg, "queue %s", queue_url);
}

/* ======== SendMessageBatch ======== */

struct batch_op {
  struct kcld_svc_op base;
  kcld_sqs_batch_cb cb;
  void *arg;
  size_t n;
  struct kcld_sqs_entry_result *res;
  int *call_of;        /* entry -> call index, -1 when refused */
  json_t *requests;    /* one request per call */
  size_t next_call;
  int calls;
};

/* 1 when `s` is UTF-8 of characters SQS takes: #x9 #xA #xD, #x20-#xD7FF,
 * #xE000-#xFFFD, #x10000-#x10FFFF. */
static int sqs_text_ok(const char *s)
{
  const unsigned char *p = (const unsigned char *)s;
  while (*p) {
    uint32_t c;
    int len;
    if (*p < 0x80) {
      c = *p;
      len = 1;
    } else if ((*p & 0xE0) == 0xC0) {
      c = *p & 0x1F;
      len = 2;
    } else if ((*p & 0xF0) == 0xE0) {
      c = *p & 0x0F;
      len = 3;
    } else if ((*p & 0xF8) == 0xF0) {
      c = *p & 0x07;
      len = 4;
    } else {
      return 0;
    }
    for (int i = 1; i < len; i++) {
      if ((p[i] & 0xC0) != 0x80)
        return 0;
      c = (c << 6) | (p[i] & 0x3F);
    }
    if ((len == 2 && c < 0x80) || (len == 3 && c < 0x800) ||
        (len == 4 && c < 0x10000))
      return 0; /* overlong */
    if (!(c == 0x9 || c == 0xA || c == 0xD || (c >= 0x20 && c <= 0xD7FF) ||
          (c >= 0xE000 && c <= 0xFFFD) || (c >= 0x10000 && c <= 0x10FFFF)))
      return 0;
    p += len;
  }
  return 1;
}

/* Size as SQS counts it: body, plus each attribute's name, type and value.
 * Returns SIZE_MAX when the attributes are malformed. */
static size_t entry_size(const struct kcld_sqs_entry *e)
{
  size_t size = strlen(e->body);
  const char *name;
  json_t *attr;
  if (!e->attributes)
    return size;
  if (!json_is_object(e->attributes))
    return SIZE_MAX;
  json_object_foreach((json_t *)e->attributes, name, attr) {
    const char *type = kcld_svc_str(attr, "DataType");
    const char *sv = kcld_svc_str(attr, "StringValue");
    const char *bv = kcld_svc_str(attr, "BinaryValue");
    if (!type || (!sv && !bv))
      return SIZE_MAX;
    size += strlen(name) + strlen(type) + (sv ? strlen(sv) : strlen(bv));
  }
  return size;
}

static int valid_id(const char *id)
{
  size_t len = id ? strlen(id) : 0;
  if (len < 1 || len > 80)
    return 0;
  return strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                    "0123456789-_") == len;
}

/* A string that lives as long as the op. */
static const char *keep_str(struct batch_op *op, const char *s)
{
  json_t *j = json_string(s ? s : "");
  const char *v = kcld_svc_op_keep(&op->base, j) ? json_string_value(j) : "";
  json_decref(j);
  return v;
}

/* Marks the entries of calls from `from` on as failed with `st`. */
static void batch_fail_rest(struct batch_op *op, size_t from,
                            const struct kcld_svc_status *st)
{
  const char *code = NULL, *msg = NULL;
  for (size_t i = 0; i < op->n; i++) {
    if (op->call_of[i] < 0 || (size_t)op->call_of[i] < from)
      continue;
    if (!code) {
      code = keep_str(op, st->type[0] ? st->type : kcld_strerror(st->err));
      msg = keep_str(op, st->message);
    }
    op->res[i].ok = 0;
    op->res[i].code = code;
    op->res[i].message = msg;
    op->res[i].sender_fault = 0;
  }
}

/* The callback.  On an error the entries of the call that failed (or may
 * yet land, when the client closes) and of the calls after it count as
 * not sent. */
static void batch_deliver(struct kcld_svc_op *base,
                          const struct kcld_svc_status *st)
{
  struct batch_op *op = (struct batch_op *)base;
  struct kcld_sqs_batch_result r = {.st = *st};
  if (st->err)
    batch_fail_rest(op, op->next_call ? op->next_call - 1 : 0, st);
  r.entries = op->res;
  r.count = op->n;
  r.calls = op->calls;
  for (size_t i = 0; i < op->n; i++)
    if (!op->res[i].ok)
      r.failed++;
  op->cb(&r, op->arg);
}

static void batch_clean_up(struct kcld_svc_op *base)
{
  struct batch_op *op = (struct batch_op *)base;
  free(op->res);
  free(op->call_of);
  json_decref(op->requests);
}

/* Sends the next call, or finishes when none is left. */
static void batch_next(struct batch_op *op)
{
  int rc;
  if (op->next_call >= json_array_size(op->requests)) {
    kcld_svc_op_succeed(&op->base);
    return;
  }
  rc = kcld_svc_op_call(&op->base,
                        json_array_get(op->requests, op->next_call), NULL);
  op->next_call++;
  if (rc == 0) {
    op->calls++;
    return;
  }
  kcld_svc_op_fail(&op->base, rc, "could not send: %s", kcld_strerror(rc));
}

static void batch_on_timer(struct kcld_svc_op *base)
{
  batch_next((struct batch_op *)base);
}

/* Maps one call's answer onto its entries; returns 0, KCLD_EPARSE or
 * KCLD_ENOMEM. */
static int batch_map(struct batch_op *op, size_t call, const json_t *body)
{
  json_t *okl = json_object_get(body, "Successful");
  json_t *bad = json_object_get(body, "Failed");
  if ((okl && !json_is_array(okl)) || (bad && !json_is_array(bad)))
    return KCLD_EPARSE;
  if (!kcld_svc_op_keep(&op->base, (json_t *)body))
    return KCLD_ENOMEM;
  for (size_t i = 0; i < op->n; i++) {
    struct kcld_sqs_entry_result *r = &op->res[i];
    json_t *e;
    size_t k;
    if (op->call_of[i] != (int)call)
      continue;
    r->ok = 0;
    r->code = "MissingResult";
    r->message = "the answer does not mention this entry";
    r->sender_fault = 0;
    json_array_foreach(okl, k, e) {
      const char *id = kcld_svc_str(e, "Id");
      if (id && strcmp(id, r->id) == 0) {
        r->ok = 1;
        r->message_id = kcld_svc_str(e, "MessageId");
        r->code = NULL;
        r->message = NULL;
      }
    }
    json_array_foreach(bad, k, e) {
      const char *id = kcld_svc_str(e, "Id");
      if (id && strcmp(id, r->id) == 0) {
        const char *code = kcld_svc_str(e, "Code");
        const char *msg = kcld_svc_str(e, "Message");
        r->ok = 0;
        r->message_id = NULL;
        r->code = code ? code : "Unknown";
        r->message = msg ? msg : "";
        r->sender_fault = json_is_true(json_object_get(e, "SenderFault"));
      }
    }
  }
  return 0;
}

static void batch_on_result(struct kcld_svc_op *base,
                            const struct kcld_aws_result *res)
{
  struct batch_op *op = (struct batch_op *)base;
  size_t call = op->next_call - 1;
  struct kcld_svc_status st;

  kcld_svc_status_from(base, &st, res);
  if (st.err == 0) {
    int rc = batch_map(op, call, res->body);
    if (rc == KCLD_EPARSE) {
      kcld_svc_status_set(base, &st, rc, NULL,
                          "Successful or Failed in the answer is not a list");
      kcld_svc_log_bad_answer(base, &st);
    } else if (rc != 0) {
      kcld_svc_status_set(base, &st, rc, NULL, "out of memory");
    }
  }
  if (st.err)
    kcld_svc_op_end(base, &st);
  else
    batch_next(op);
}

static const struct kcld_svc_op_type s_batch_type = {
  .on_result = batch_on_result,
  .on_timer = batch_on_timer,
  .deliver = batch_deliver,
  .clean_up = batch_clean_up,
};

static json_t *entry_json(const struct kcld_sqs_entry *e)
{
  json_t *j = json_object();
  if (!j || kcld_svc_set_str(j, "Id", e->id) || kcld_svc_set_str(j, "MessageBody", e->body) ||
      (e->attributes &&
       json_object_set_new(j, "MessageAttributes",
                           json_deep_copy(e->attributes))) ||
      (e->delay_seconds > 0 && kcld_svc_set_int(j, "DelaySeconds", e->delay_seconds)) ||
      (e->group_id && kcld_svc_set_str(j, "MessageGroupId", e->group_id)) ||
      (e->dedup_id && kcld_svc_set_str(j, "MessageDeduplicationId", e->dedup_id))) {
    json_decref(j);
    return NULL;
  }
  return j;
}

/* Refuses (reports) entries SQS would refuse, packs the rest into calls. */
static int batch_plan(struct batch_op *op, const char *queue_url,
                      const struct kcld_sqs_entry *entries)
{
  json_t *list = NULL;
  size_t in_call = 0, call_bytes = 0;
  int ncalls = 0;

  for (size_t i = 0; i < op->n; i++) {
    const struct kcld_sqs_entry *e = &entries[i];
    struct kcld_sqs_entry_result *r = &op->res[i];
    size_t size = entry_size(e);
    char detail[96];
    json_t *ej;

    r->id = keep_str(op, e->id);
    op->call_of[i] = -1;
    if (!sqs_text_ok(e->body)) {
      r->code = KCLD_SQS_INVALID_CONTENTS;
      r->message = "body is not UTF-8 of characters SQS accepts";
      r->sender_fault = 1;
      continue;
    }
    if (size > KCLD_SQS_MESSAGE_MAX) {
      snprintf(detail, sizeof(detail), "%zu bytes with attributes; SQS takes "
               "at most %d", size, KCLD_SQS_MESSAGE_MAX);
      r->code = KCLD_SQS_TOO_LARGE;
      r->message = keep_str(op, detail);
      r->sender_fault = 1;
      continue;
    }
    if (!list || in_call == KCLD_SQS_BATCH_MAX ||
        call_bytes + size > KCLD_SQS_MESSAGE_MAX) {
      json_t *req = json_object();
      list = json_array();
      if (!req || !list || kcld_svc_set_str(req, "QueueUrl", queue_url) ||
          json_object_set_new(req, "Entries", list) ||
          json_array_append_new(op->requests, req)) {
        json_decref(req);
        return KCLD_ENOMEM;
      }
      ncalls++;
      in_call = 0;
      call_bytes = 0;
    }
    ej = entry_json(e);
    if (!ej || json_array_append_new(list, ej) != 0)
      return KCLD_ENOMEM;
    op->call_of[i] = ncalls - 1;
    in_call++;
    call_bytes += size;
  }
  return 0;
}

int kcld_sqs_send_message_batch(struct kcld_sqs *sqs, const char *queue_url,
                                const struct kcld_sqs_entry *entries,
                                size_t n, kcld_sqs_batch_cb cb, void *arg)
{
  const char *opname = "SendMessageBatch";
  struct batch_op *op;
  int rc;

  if (!sqs || !cb)
    return KCLD_EINVAL;
  if (!queue_url || !*queue_url)
    return kcld_svc_bad_arg(&sqs->svc, opname, "no queue URL");
  if (!entries || n == 0)
    return kcld_svc_bad_arg(&sqs->svc, opname, "no entries");
  for (size_t i = 0; i < n; i++) {
    if (!valid_id(entries[i].id))
      return kcld_svc_bad_arg(&sqs->svc, opname, "entry id not [A-Za-z0-9_-]{1,80}");
    for (size_t j = 0; j < i; j++)
      if (strcmp(entries[i].id, entries[j].id) == 0)
        return kcld_svc_bad_arg(&sqs->svc, opname, "entry ids repeat");
    if (!entries[i].body)
      return kcld_svc_bad_arg(&sqs->svc, opname, "entry without body");
    if (entries[i].delay_seconds < 0 || entries[i].delay_seconds > 900)
      return kcld_svc_bad_arg(&sqs->svc, opname, "delay_seconds not in 0..900");
    if (entry_size(&entries[i]) == SIZE_MAX)
      return kcld_svc_bad_arg(&sqs->svc, opname, "message attributes malformed");
  }

  op = kcld_svc_op_new(&sqs->svc, sizeof(*op), &s_batch_type, opname, &rc);
  if (!op)
    return rc;
  op->cb = cb;
  op->arg = arg;
  op->n = n;
  kcld_svc_op_resource(&op->base, "queue %s", queue_url);
  op->res = calloc(n, sizeof(*op->res));
  op->call_of = calloc(n, sizeof(*op->call_of));
  op->requests = json_array();
  if (!op->res || !op->call_of || !op->requests)
    rc = KCLD_ENOMEM;
  else
    rc = batch_plan(op, queue_url, entries);
  if (rc == 0 && json_array_size(op->requests) == 0) {
    rc = kcld_svc_op_sleep(&op->base, 0); /* all refused: answer later */
  } else if (rc == 0) {
    rc = kcld_svc_op_call(&op->base, json_array_get(op->requests, 0), NULL);
    if (rc == 0) {
      op->next_call = 1;
      op->calls = 1;
    }
  }
  if (rc < 0)
    kcld_svc_op_release(&op->base);
  return rc;
}
