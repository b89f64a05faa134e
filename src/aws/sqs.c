/* sqs.c — SQS calls over the JSON protocol: requests built, answers mapped,
 * one callback per call; SendMessageBatch refuses what SQS would, packs the
 * rest into as few calls as the limits allow and reports every entry. */
#include "aws/sqs.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"

struct kcld_sqs {
  struct kcld_svc svc;
};

/* ======== Helpers ======== */

static int bad_arg(const char *op, const char *reason)
{
  kcld_log(KCLD_LOG_WARN, "SQS call refused: invalid argument", "op", op,
           "reason", reason, NULL);
  return KCLD_EINVAL;
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

static void log_bad_answer(const struct kcld_svc_status *st)
{
  kcld_log(KCLD_LOG_WARN, "SQS answer not understood", "error", st->message,
           NULL);
}

int kcld_sqs_new(struct kcld_aws *aws, uv_loop_t *loop, struct kcld_sqs **out)
{
  int err;
  if (!out)
    return KCLD_EINVAL;
  *out = kcld_svc_new(sizeof(**out), aws, loop, KCLD_AWS_SQS, &err);
  return err;
}

void kcld_sqs_close(struct kcld_sqs *sqs)
{
  if (sqs)
    kcld_svc_free(&sqs->svc);
}

/* ======== Calls with one answer ======== */

enum simple_kind { K_DONE, K_QUEUE, K_ATTRS, K_RECEIVE };

struct simple_op {
  struct kcld_svc_op base;
  enum simple_kind kind;
  union {
    kcld_sqs_done_cb done;
    kcld_sqs_queue_cb queue;
    kcld_sqs_attributes_cb attrs;
    kcld_sqs_receive_cb receive;
  } cb;
  void *arg;
  struct kcld_sqs_message *messages;
};

static void simple_fail(struct kcld_svc_op *base,
                        const struct kcld_svc_status *st)
{
  struct simple_op *op = (struct simple_op *)base;

  switch (op->kind) {
  case K_DONE:
    op->cb.done(st, op->arg);
    break;
  case K_QUEUE: {
    struct kcld_sqs_queue r = {.st = *st};
    op->cb.queue(&r, op->arg);
    break;
  }
  case K_ATTRS: {
    struct kcld_sqs_attributes r = {.st = *st};
    op->cb.attrs(&r, op->arg);
    break;
  }
  case K_RECEIVE: {
    struct kcld_sqs_receive_result r = {.st = *st};
    op->cb.receive(&r, op->arg);
    break;
  }
  }
}

static void simple_clean_up(struct kcld_svc_op *base)
{
  free(((struct simple_op *)base)->messages);
}

/* Maps a ReceiveMessage answer; returns 0 or a KCLD_E* code. */
static int receive_map(struct simple_op *op, const json_t *body,
                       struct kcld_sqs_receive_result *r)
{
  json_t *msgs = json_object_get(body, "Messages");
  size_t n;
  if (!msgs || json_is_null(msgs))
    return 0;
  if (!json_is_array(msgs))
    return KCLD_EPARSE;
  n = json_array_size(msgs);
  op->messages = calloc(n ? n : 1, sizeof(*op->messages));
  if (!op->messages)
    return KCLD_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    json_t *m = json_array_get(msgs, i);
    struct kcld_sqs_message *out = &op->messages[i];
    out->message_id = str_field(m, "MessageId");
    out->receipt_handle = str_field(m, "ReceiptHandle");
    out->body = str_field(m, "Body");
    out->md5_of_body = str_field(m, "MD5OfBody");
    out->attributes = json_object_get(m, "Attributes");
    out->message_attributes = json_object_get(m, "MessageAttributes");
    if (!out->message_id || !out->receipt_handle || !out->body)
      return KCLD_EPARSE;
  }
  r->messages = op->messages;
  r->count = n;
  return 0;
}

static void simple_on_result(struct kcld_svc_op *base,
                             const struct kcld_aws_result *res)
{
  struct simple_op *op = (struct simple_op *)base;
  struct kcld_svc_status st;

  kcld_svc_status_from(base, &st, res);
  if (st.err) {
    kcld_svc_op_fail(base, &st);
    return;
  }
  kcld_svc_op_done(base);
  switch (op->kind) {
  case K_DONE:
    op->cb.done(&st, op->arg);
    break;
  case K_QUEUE: {
    struct kcld_sqs_queue r = {.st = st};
    r.queue_url = str_field(res->body, "QueueUrl");
    if (!r.queue_url) {
      kcld_svc_status_set(base, &r.st, KCLD_EPARSE, NULL,
                          "no QueueUrl in the answer");
      log_bad_answer(&r.st);
    }
    op->cb.queue(&r, op->arg);
    break;
  }
  case K_ATTRS: {
    struct kcld_sqs_attributes r = {.st = st};
    r.attributes = json_object_get(res->body, "Attributes");
    if (!r.attributes)
      r.attributes = json_object(); /* none asked for is none given */
    else
      json_incref(r.attributes);
    if (!json_is_object(r.attributes)) {
      json_decref(r.attributes);
      r.attributes = NULL;
      kcld_svc_status_set(base, &r.st, KCLD_EPARSE, NULL,
                          "Attributes in the answer is not an object");
      log_bad_answer(&r.st);
    }
    op->cb.attrs(&r, op->arg);
    json_decref(r.attributes);
    break;
  }
  case K_RECEIVE: {
    struct kcld_sqs_receive_result r = {.st = st};
    int rc = receive_map(op, res->body, &r);
    if (rc != 0) {
      memset(&r, 0, sizeof(r));
      kcld_svc_status_set(base, &r.st, rc, NULL, "%s",
                          rc == KCLD_EPARSE ? "malformed Messages in the answer"
                                            : "out of memory");
      if (rc == KCLD_EPARSE)
        log_bad_answer(&r.st);
    }
    op->cb.receive(&r, op->arg);
    break;
  }
  }
  kcld_svc_op_release(base);
}

static const struct kcld_svc_op_type s_simple_type = {
  .on_result = simple_on_result,
  .on_timer = NULL,
  .fail = simple_fail,
  .clean_up = simple_clean_up,
};

static struct simple_op *simple_new(struct kcld_sqs *sqs, const char *opname,
                                    enum simple_kind kind, void *arg, int *err)
{
  struct simple_op *op = kcld_svc_op_new(&sqs->svc, sizeof(*op),
                                         &s_simple_type, opname, err);
  if (!op)
    return NULL;
  op->kind = kind;
  op->arg = arg;
  return op;
}

/* A request {"QueueUrl": url} or {"QueueName": name}, or NULL. */
static json_t *queue_request(const char *key, const char *value)
{
  json_t *req = json_object();
  if (req && set_str(req, key, value)) {
    json_decref(req);
    return NULL;
  }
  return req;
}

int kcld_sqs_get_queue_url(struct kcld_sqs *sqs, const char *queue_name,
                           kcld_sqs_queue_cb cb, void *arg)
{
  const char *opname = "GetQueueUrl";
  struct simple_op *op;
  int rc;
  if (!sqs || !cb)
    return KCLD_EINVAL;
  if (!queue_name || !*queue_name)
    return bad_arg(opname, "no queue name");
  op = simple_new(sqs, opname, K_QUEUE, arg, &rc);
  if (!op)
    return rc;
  op->cb.queue = cb;
  kcld_svc_op_resource(&op->base, "queue %s", queue_name);
  return kcld_svc_op_start(&op->base,
                           queue_request("QueueName", queue_name), NULL);
}

int kcld_sqs_create_queue(struct kcld_sqs *sqs, const char *queue_name,
                          const json_t *attributes, kcld_sqs_queue_cb cb,
                          void *arg)
{
  const char *opname = "CreateQueue";
  struct simple_op *op;
  json_t *req;
  int rc;
  if (!sqs || !cb)
    return KCLD_EINVAL;
  if (!queue_name || !*queue_name)
    return bad_arg(opname, "no queue name");
  if (attributes && !json_is_object(attributes))
    return bad_arg(opname, "attributes is not an object");
  op = simple_new(sqs, opname, K_QUEUE, arg, &rc);
  if (!op)
    return rc;
  op->cb.queue = cb;
  kcld_svc_op_resource(&op->base, "queue %s", queue_name);
  req = queue_request("QueueName", queue_name);
  if (req && attributes &&
      json_object_set_new(req, "Attributes", json_deep_copy(attributes))) {
    json_decref(req);
    req = NULL;
  }
  return kcld_svc_op_start(&op->base, req, NULL);
}

int kcld_sqs_get_queue_attributes(struct kcld_sqs *sqs, const char *queue_url,
                                  const char *const *names,
                                  kcld_sqs_attributes_cb cb, void *arg)
{
  const char *opname = "GetQueueAttributes";
  struct simple_op *op;
  json_t *req, *list;
  int rc;
  if (!sqs || !cb)
    return KCLD_EINVAL;
  if (!queue_url || !*queue_url)
    return bad_arg(opname, "no queue URL");
  op = simple_new(sqs, opname, K_ATTRS, arg, &rc);
  if (!op)
    return rc;
  op->cb.attrs = cb;
  kcld_svc_op_resource(&op->base, "queue %s", queue_url);
  req = queue_request("QueueUrl", queue_url);
  list = json_array();
  rc = list ? 0 : KCLD_ENOMEM;
  if (rc == 0 && !names)
    rc = json_array_append_new(list, json_string("All")) ? KCLD_ENOMEM : 0;
  for (size_t i = 0; rc == 0 && names && names[i]; i++)
    rc = json_array_append_new(list, json_string(names[i])) ? KCLD_ENOMEM : 0;
  if (req && (rc != 0 || json_object_set(req, "AttributeNames", list))) {
    json_decref(req);
    req = NULL;
  }
  json_decref(list);
  return kcld_svc_op_start(&op->base, req, NULL);
}

int kcld_sqs_receive_message(struct kcld_sqs *sqs,
                             const struct kcld_sqs_receive_req *req,
                             kcld_sqs_receive_cb cb, void *arg)
{
  const char *opname = "ReceiveMessage";
  struct kcld_aws_call_opts o = {0};
  struct simple_op *op;
  json_t *j;
  int rc;
  if (!sqs || !req || !cb)
    return KCLD_EINVAL;
  if (!req->queue_url || !*req->queue_url)
    return bad_arg(opname, "no queue URL");
  if (req->max_messages < 0 || req->max_messages > 10)
    return bad_arg(opname, "max_messages not in 1..10");
  if (req->wait_seconds < 0 || req->wait_seconds > 20)
    return bad_arg(opname, "wait_seconds not in 0..20");
  if (req->visibility_timeout < -1 || req->visibility_timeout > 43200)
    return bad_arg(opname, "visibility_timeout not in 0..43200");
  if (req->wait_seconds > 0)
    o.timeout_ms = (req->wait_seconds + 10) * 1000L; /* long poll */
  op = simple_new(sqs, opname, K_RECEIVE, arg, &rc);
  if (!op)
    return rc;
  op->cb.receive = cb;
  kcld_svc_op_resource(&op->base, "queue %s", req->queue_url);
  j = queue_request("QueueUrl", req->queue_url);
  if (j && (set_int(j, "MaxNumberOfMessages",
                    req->max_messages ? req->max_messages : 1) ||
            set_int(j, "WaitTimeSeconds", req->wait_seconds) ||
            (req->visibility_timeout >= 0 &&
             set_int(j, "VisibilityTimeout", req->visibility_timeout)) ||
            json_object_set_new(j, "MessageSystemAttributeNames",
                                json_pack("[s]", "All")) ||
            json_object_set_new(j, "MessageAttributeNames",
                                json_pack("[s]", "All")))) {
    json_decref(j);
    j = NULL;
  }
  return kcld_svc_op_start(&op->base, j, &o);
}

int kcld_sqs_delete_message(struct kcld_sqs *sqs, const char *queue_url,
                            const char *receipt_handle, kcld_sqs_done_cb cb,
                            void *arg)
{
  const char *opname = "DeleteMessage";
  struct simple_op *op;
  json_t *j;
  int rc;
  if (!sqs || !cb)
    return KCLD_EINVAL;
  if (!queue_url || !*queue_url || !receipt_handle || !*receipt_handle)
    return bad_arg(opname, "no queue URL or receipt handle");
  op = simple_new(sqs, opname, K_DONE, arg, &rc);
  if (!op)
    return rc;
  op->cb.done = cb;
  kcld_svc_op_resource(&op->base, "queue %s", queue_url);
  j = queue_request("QueueUrl", queue_url);
  if (j && set_str(j, "ReceiptHandle", receipt_handle)) {
    json_decref(j);
    j = NULL;
  }
  return kcld_svc_op_start(&op->base, j, NULL);
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
  json_t *keep;        /* strings and answer parts the results point into */
  size_t next_call;
  struct kcld_svc_status first_err;
  int failed_call;
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
    const char *type = str_field(attr, "DataType");
    const char *sv = str_field(attr, "StringValue");
    const char *bv = str_field(attr, "BinaryValue");
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
  if (!j || json_array_append_new(op->keep, j) != 0)
    return "";
  return json_string_value(j);
}

static void batch_deliver(struct batch_op *op, const struct kcld_svc_status *st)
{
  struct kcld_sqs_batch_result r = {.st = *st};
  r.entries = op->res;
  r.count = op->n;
  r.calls = op->calls;
  for (size_t i = 0; i < op->n; i++)
    if (!op->res[i].ok)
      r.failed++;
  op->cb(&r, op->arg);
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

static void batch_fail(struct kcld_svc_op *base,
                       const struct kcld_svc_status *st)
{
  struct batch_op *op = (struct batch_op *)base;
  /* The call in flight may yet land: its entries count as not sent. */
  batch_fail_rest(op, op->next_call ? op->next_call - 1 : 0, st);
  batch_deliver(op, st);
}

static void batch_finish(struct batch_op *op)
{
  struct kcld_svc_status ok = {.type = "", .message = ""};
  kcld_svc_op_done(&op->base);
  batch_deliver(op, op->failed_call ? &op->first_err : &ok);
  kcld_svc_op_release(&op->base);
}

static void batch_clean_up(struct kcld_svc_op *base)
{
  struct batch_op *op = (struct batch_op *)base;
  free(op->res);
  free(op->call_of);
  json_decref(op->requests);
  json_decref(op->keep);
}

/* Sends the next call, or finishes when none is left. */
static void batch_next(struct batch_op *op)
{
  int rc;
  if (op->next_call >= json_array_size(op->requests)) {
    batch_finish(op);
    return;
  }
  rc = kcld_svc_op_call(&op->base,
                        json_array_get(op->requests, op->next_call), NULL);
  op->next_call++;
  if (rc == 0) {
    op->calls++;
    return;
  }
  kcld_svc_status_set(&op->base, &op->first_err, rc, NULL,
                      "could not send: %s", kcld_strerror(rc));
  op->failed_call = 1;
  batch_fail_rest(op, op->next_call - 1, &op->first_err);
  batch_finish(op);
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
  if (json_array_append(op->keep, (json_t *)body) != 0)
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
      const char *id = str_field(e, "Id");
      if (id && strcmp(id, r->id) == 0) {
        r->ok = 1;
        r->message_id = str_field(e, "MessageId");
        r->code = NULL;
        r->message = NULL;
      }
    }
    json_array_foreach(bad, k, e) {
      const char *id = str_field(e, "Id");
      if (id && strcmp(id, r->id) == 0) {
        const char *code = str_field(e, "Code");
        const char *msg = str_field(e, "Message");
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
      log_bad_answer(&st);
    } else if (rc != 0) {
      kcld_svc_status_set(base, &st, rc, NULL, "out of memory");
    }
  }
  if (st.err) {
    op->first_err = st;
    op->failed_call = 1;
    op->first_err.type = keep_str(op, st.type);
    op->first_err.message = keep_str(op, st.message);
    batch_fail_rest(op, call, &op->first_err);
    batch_finish(op);
    return;
  }
  batch_next(op);
}

static const struct kcld_svc_op_type s_batch_type = {
  .on_result = batch_on_result,
  .on_timer = batch_on_timer,
  .fail = batch_fail,
  .clean_up = batch_clean_up,
};

static json_t *entry_json(const struct kcld_sqs_entry *e)
{
  json_t *j = json_object();
  if (!j || set_str(j, "Id", e->id) || set_str(j, "MessageBody", e->body) ||
      (e->attributes &&
       json_object_set_new(j, "MessageAttributes",
                           json_deep_copy(e->attributes))) ||
      (e->delay_seconds > 0 && set_int(j, "DelaySeconds", e->delay_seconds)) ||
      (e->group_id && set_str(j, "MessageGroupId", e->group_id)) ||
      (e->dedup_id && set_str(j, "MessageDeduplicationId", e->dedup_id))) {
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
      if (!req || !list || set_str(req, "QueueUrl", queue_url) ||
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
    return bad_arg(opname, "no queue URL");
  if (!entries || n == 0)
    return bad_arg(opname, "no entries");
  for (size_t i = 0; i < n; i++) {
    if (!valid_id(entries[i].id))
      return bad_arg(opname, "entry id not [A-Za-z0-9_-]{1,80}");
    for (size_t j = 0; j < i; j++)
      if (strcmp(entries[i].id, entries[j].id) == 0)
        return bad_arg(opname, "entry ids repeat");
    if (!entries[i].body)
      return bad_arg(opname, "entry without body");
    if (entries[i].delay_seconds < 0 || entries[i].delay_seconds > 900)
      return bad_arg(opname, "delay_seconds not in 0..900");
    if (entry_size(&entries[i]) == SIZE_MAX)
      return bad_arg(opname, "message attributes malformed");
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
  op->keep = json_array();
  if (!op->res || !op->call_of || !op->requests || !op->keep)
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
