/* dynamodb.c — DynamoDB calls: requests built, answers mapped, one callback
 * per call; Scan pages, BatchWriteItem chunks and UnprocessedItems retries;
 * AttributeValue builders and readers.  The skeleton (svc.c) runs the
 * operations and the wait for ACTIVE. */
#include "aws/dynamodb.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

struct kcld_dynamodb {
  struct kcld_svc svc;
};

/* ======== Helpers ======== */

int kcld_dynamodb_new(struct kcld_aws *aws, uv_loop_t *loop,
                      struct kcld_dynamodb **out)
{
  return kcld_svc_new(sizeof(**out), aws, loop, KCLD_AWS_DYNAMODB,
                      (void **)out);
}

void kcld_dynamodb_set_uncapped(struct kcld_dynamodb *db)
{
  db->svc.uncapped = 1;
}

void kcld_dynamodb_close(struct kcld_dynamodb *db)
{
  if (db)
    kcld_svc_close(&db->svc);
}

static const struct kcld_svc_fault_row s_fault_rows[] = {
  {"ResourceInUseException", KCLD_DYNAMODB_IN_USE},
  {"ProvisionedThroughputExceededException", KCLD_DYNAMODB_THROTTLED},
  {"RequestLimitExceeded", KCLD_DYNAMODB_THROTTLED},
  {"ThrottlingException", KCLD_DYNAMODB_THROTTLED},
  {"ValidationException", KCLD_DYNAMODB_INVALID},
  {"SerializationException", KCLD_DYNAMODB_INVALID},
  {"TransactionConflictException", KCLD_DYNAMODB_CONFLICT},
  {"InternalServerError", KCLD_DYNAMODB_TRANSIENT},
  {"ServiceUnavailable", KCLD_DYNAMODB_TRANSIENT},
};

static const struct kcld_svc_faults s_faults = {
  .rows = s_fault_rows,
  .n_rows = sizeof(s_fault_rows) / sizeof(s_fault_rows[0]),
  .ok = KCLD_DYNAMODB_OK,
  .canceled = KCLD_DYNAMODB_CANCELED,
  .transient = KCLD_DYNAMODB_TRANSIENT,
  .not_found = KCLD_DYNAMODB_NOT_FOUND,
  .condition = KCLD_DYNAMODB_CONDITION,
  .other = KCLD_DYNAMODB_OTHER,
};

enum kcld_dynamodb_fault kcld_dynamodb_fault(const struct kcld_svc_status *st)
{
  return (enum kcld_dynamodb_fault)kcld_svc_fault(st, &s_faults);
}

/* ======== Calls with one answer: tables and items ======== */

KCLD_SVC_SHAPE(s_table_shape, struct kcld_dynamodb_table,
               kcld_dynamodb_table_cb);
KCLD_SVC_SHAPE(s_item_shape, struct kcld_dynamodb_result, kcld_dynamodb_cb);

static int table_map(struct kcld_svc_op *op, const struct kcld_aws_result *res,
                     void *result)
{
  struct kcld_dynamodb_table *r = result;
  json_t *t = json_object_get(res->body, "TableDescription");
  if (!t)
    t = json_object_get(res->body, "Table");
  r->table = t;
  r->name = kcld_svc_str(t, "TableName");
  r->status = kcld_svc_str(t, "TableStatus");
  if (!json_is_object(t) || !r->name || !r->status) {
    kcld_svc_status_set(op, &r->st, KCLD_EPARSE, NULL,
                        "no table description with TableName and "
                        "TableStatus in the answer");
    return KCLD_EPARSE;
  }
  return 0;
}

static const char *table_state(const void *result)
{
  return ((const struct kcld_dynamodb_table *)result)->status;
}

static const char *const s_table_states[] = {
  "CREATING", "UPDATING", "DELETING", "ACTIVE",
  "INACCESSIBLE_ENCRYPTION_CREDENTIALS", "ARCHIVING", "ARCHIVED", NULL};

/* The answer and, when present, the object at `field`. */
static int item_map_field(struct kcld_svc_op *op,
                          const struct kcld_aws_result *res, void *result,
                          const char *field)
{
  struct kcld_dynamodb_result *r = result;
  json_t *it = json_object_get(res->body, field);
  r->body = res->body;
  if (it && !json_is_object(it)) {
    kcld_svc_status_set(op, &r->st, KCLD_EPARSE, NULL,
                        "%s in the answer is not an object", field);
    return KCLD_EPARSE;
  }
  r->item = it;
  return 0;
}

static int get_item_map(struct kcld_svc_op *op,
                        const struct kcld_aws_result *res, void *result)
{
  return item_map_field(op, res, result, "Item");
}

static int attributes_map(struct kcld_svc_op *op,
                          const struct kcld_aws_result *res, void *result)
{
  return item_map_field(op, res, result, "Attributes");
}

static const struct kcld_svc_spec s_create_table = {
  "CreateTable", &s_table_shape, table_map, table_state, s_table_states};
static const struct kcld_svc_spec s_describe_table = {
  "DescribeTable", &s_table_shape, table_map, table_state, s_table_states};
static const struct kcld_svc_spec s_get_item = {
  "GetItem", &s_item_shape, get_item_map, NULL, NULL};
static const struct kcld_svc_spec s_put_item = {
  "PutItem", &s_item_shape, attributes_map, NULL, NULL};
static const struct kcld_svc_spec s_update_item = {
  "UpdateItem", &s_item_shape, attributes_map, NULL, NULL};
static const struct kcld_svc_spec s_delete_item = {
  "DeleteItem", &s_item_shape, attributes_map, NULL, NULL};

int kcld_dynamodb_create_table(struct kcld_dynamodb *db, const json_t *request,
                               kcld_dynamodb_table_cb cb, void *arg)
{
  const char *name;

  if (!db || !cb)
    return KCLD_EINVAL;
  name = kcld_svc_str(request, "TableName");
  if (!json_is_object(request) || !name || !*name)
    return kcld_svc_bad_arg(&db->svc, s_create_table.operation,
                            "request is not an object with a TableName");
  return kcld_svc_send(&db->svc, &s_create_table, json_deep_copy(request),
                       NULL, (kcld_svc_fn)cb, arg, "table %s", name);
}

static int describe_start(struct kcld_dynamodb *db, const char *table,
                          int wait, long timeout_ms, kcld_dynamodb_table_cb cb,
                          void *arg)
{
  const char *opname = s_describe_table.operation;
  struct kcld_svc_op *op;
  int rc;

  if (!db || !cb)
    return KCLD_EINVAL;
  if (!table || !*table)
    return kcld_svc_bad_arg(&db->svc, opname, "no table name");
  if (timeout_ms < 0)
    return kcld_svc_bad_arg(&db->svc, opname, "negative timeout");
  op = kcld_svc_request_new(&db->svc, &s_describe_table, 0, (kcld_svc_fn)cb,
                            arg, &rc);
  if (!op)
    return rc;
  kcld_svc_op_resource(op, "table %s", table);
  if (wait)
    kcld_svc_request_wait(op, timeout_ms);
  return kcld_svc_request_start(op, json_pack("{s:s}", "TableName", table),
                                NULL);
}

int kcld_dynamodb_describe_table(struct kcld_dynamodb *db, const char *table,
                                 kcld_dynamodb_table_cb cb, void *arg)
{
  return describe_start(db, table, 0, 0, cb, arg);
}

int kcld_dynamodb_wait_active(struct kcld_dynamodb *db, const char *table,
                              long timeout_ms, kcld_dynamodb_table_cb cb,
                              void *arg)
{
  return describe_start(db, table, 1, timeout_ms, cb, arg);
}

/* Adds the condition parts; returns 0 or KCLD_ENOMEM. */
static int set_cond(json_t *req, const struct kcld_dynamodb_cond *c)
{
  if (!c)
    return 0;
  if ((c->condition &&
       kcld_svc_set_str(req, "ConditionExpression", c->condition)) ||
      (c->names &&
       kcld_svc_set_ref(req, "ExpressionAttributeNames", c->names)) ||
      (c->values &&
       kcld_svc_set_ref(req, "ExpressionAttributeValues", c->values)) ||
      (c->return_values &&
       kcld_svc_set_str(req, "ReturnValues", c->return_values)))
    return KCLD_ENOMEM;
  return 0;
}

/* The four item calls share this. */
static int item_call(struct kcld_dynamodb *db, const struct kcld_svc_spec *spec,
                     const char *table, const char *key_field,
                     const json_t *key, const char *update_expression,
                     int consistent_read, const struct kcld_dynamodb_cond *c,
                     kcld_dynamodb_cb cb, void *arg)
{
  const char *opname = spec->operation;
  char what[192];
  json_t *req;

  if (!db || !cb)
    return KCLD_EINVAL;
  if (!table || !*table)
    return kcld_svc_bad_arg(&db->svc, opname, "no table name");
  if (!json_is_object(key) || json_object_size(key) == 0)
    return kcld_svc_bad_arg(&db->svc, opname,
                            "key or item is not a non-empty object");
  if (c && c->names && !json_is_object(c->names))
    return kcld_svc_bad_arg(&db->svc, opname,
                            "ExpressionAttributeNames is not an object");
  if (c && c->values && !json_is_object(c->values))
    return kcld_svc_bad_arg(&db->svc, opname,
                            "ExpressionAttributeValues is not an object");
  if (strcmp(key_field, "Item") == 0) {
    /* An item carries user payload: name the table only, so record data
     * never reaches a log line or a dead-letter message. */
    snprintf(what, sizeof(what), "table %s", table);
  } else {
    char brief[112];
    kcld_svc_json_brief(brief, sizeof(brief), key, sizeof(brief) - 1);
    snprintf(what, sizeof(what), "table %s key %s", table, brief);
  }
  req = json_pack("{s:s, s:O, s:s*}", "TableName", table, key_field, key,
                  "UpdateExpression", update_expression);
  if (req && ((consistent_read &&
               json_object_set_new(req, "ConsistentRead", json_true())) ||
              set_cond(req, c))) {
    json_decref(req);
    req = NULL;
  }
  return kcld_svc_send(&db->svc, spec, req, NULL, (kcld_svc_fn)cb, arg, "%s",
                       what);
}

int kcld_dynamodb_get_item(struct kcld_dynamodb *db, const char *table,
                           const json_t *key, int consistent_read,
                           kcld_dynamodb_cb cb, void *arg)
{
  return item_call(db, &s_get_item, table, "Key", key, NULL, consistent_read,
                   NULL, cb, arg);
}

int kcld_dynamodb_put_item(struct kcld_dynamodb *db, const char *table,
                           const json_t *item,
                           const struct kcld_dynamodb_cond *cond,
                           kcld_dynamodb_cb cb, void *arg)
{
  return item_call(db, &s_put_item, table, "Item", item, NULL, 0, cond, cb,
                   arg);
}

int kcld_dynamodb_update_item(struct kcld_dynamodb *db, const char *table,
                              const json_t *key, const char *update_expression,
                              const struct kcld_dynamodb_cond *cond,
                              kcld_dynamodb_cb cb, void *arg)
{
  if (db && (!update_expression || !*update_expression))
    return kcld_svc_bad_arg(&db->svc, s_update_item.operation,
                            "no update expression");
  return item_call(db, &s_update_item, table, "Key", key, update_expression,
                   0, cond, cb, arg);
}

int kcld_dynamodb_delete_item(struct kcld_dynamodb *db, const char *table,
                              const json_t *key,
                              const struct kcld_dynamodb_cond *cond,
                              kcld_dynamodb_cb cb, void *arg)
{
  return item_call(db, &s_delete_item, table, "Key", key, NULL, 0, cond, cb,
                   arg);
}

/* ======== Scan ======== */

struct scan_op {
  struct kcld_svc_op base;
  kcld_dynamodb_page_cb page_cb;
  kcld_dynamodb_scan_cb cb;
  void *arg;
  json_t *request;   /* ExclusiveStartKey updated per page */
  json_t *items;     /* accumulated when there is no page callback */
  size_t count;
  int pages;
  int stopped;       /* the page callback asked to stop */
};

static void scan_deliver(struct kcld_svc_op *base,
                         const struct kcld_svc_status *st)
{
  struct scan_op *op = (struct scan_op *)base;
  struct kcld_dynamodb_scan_result r = {.st = *st};
  r.items = st->err == 0 ? op->items : NULL;
  r.count = op->count;
  r.pages = op->pages;
  r.stopped = op->stopped;
  op->cb(&r, op->arg);
}

static void scan_clean_up(struct kcld_svc_op *base)
{
  struct scan_op *op = (struct scan_op *)base;
  json_decref(op->request);
  json_decref(op->items);
}

static void scan_on_result(struct kcld_svc_op *base,
                           const struct kcld_aws_result *res)
{
  struct scan_op *op = (struct scan_op *)base;
  struct kcld_svc_status st;
  json_t *items, *last;
  int rc;

  kcld_svc_status_from(base, &st, res);
  if (st.err) {
    kcld_svc_op_end(base, &st);
    return;
  }
  items = json_object_get(res->body, "Items");
  last = json_object_get(res->body, "LastEvaluatedKey");
  if (!json_is_array(items) || (last && !json_is_object(last))) {
    kcld_svc_status_set(base, &st, KCLD_EPARSE, NULL,
                        "no Items array in page %d", op->pages + 1);
    kcld_svc_log_bad_answer(base, &st);
    kcld_svc_op_end(base, &st);
    return;
  }
  op->pages++;
  op->count += json_array_size(items);
  if (op->page_cb) {
    int stop = op->page_cb(items, op->arg);
    if (!op->base.svc)
      return; /* the client was closed from the page callback */
    if (stop) {
      op->stopped = 1;
      kcld_svc_op_end(base, &st);
      return;
    }
  } else if (json_array_extend(op->items, items) != 0) {
    kcld_svc_op_fail(base, KCLD_ENOMEM, "out of memory");
    return;
  }
  if (!last || json_object_size(last) == 0) {
    kcld_svc_op_end(base, &st);
    return;
  }
  rc = json_object_set(op->request, "ExclusiveStartKey", last) == 0
         ? kcld_svc_op_call(base, op->request, NULL)
         : KCLD_ENOMEM;
  if (rc < 0)
    kcld_svc_op_fail(base, rc, "could not ask for page %d: %s", op->pages + 1,
                     kcld_strerror(rc));
}

static const struct kcld_svc_op_type s_scan_type = {
  .on_result = scan_on_result,
  .on_timer = NULL,
  .deliver = scan_deliver,
  .clean_up = scan_clean_up,
};

int kcld_dynamodb_scan(struct kcld_dynamodb *db,
                       const struct kcld_dynamodb_scan_req *req,
                       kcld_dynamodb_page_cb page_cb,
                       kcld_dynamodb_scan_cb done_cb, void *arg)
{
  const char *opname = "Scan";
  struct scan_op *op;
  json_t *j;
  int rc;

  if (!db || !req || !done_cb)
    return KCLD_EINVAL;
  if (!req->table || !*req->table)
    return kcld_svc_bad_arg(&db->svc, opname, "no table name");
  if (req->limit < 0)
    return kcld_svc_bad_arg(&db->svc, opname, "negative limit");
  if ((req->names && !json_is_object(req->names)) ||
      (req->values && !json_is_object(req->values)))
    return kcld_svc_bad_arg(&db->svc, opname, "expression names or values not an object");
  op = kcld_svc_op_new(&db->svc, sizeof(*op), &s_scan_type, opname, &rc);
  if (!op)
    return rc;
  op->page_cb = page_cb;
  op->cb = done_cb;
  op->arg = arg;
  kcld_svc_op_resource(&op->base, "table %s", req->table);
  j = json_object();
  op->request = j;
  if (!page_cb)
    op->items = json_array();
  if (!j || (!page_cb && !op->items) || kcld_svc_set_str(j, "TableName", req->table) ||
      (req->limit > 0 &&
       json_object_set_new(j, "Limit", json_integer(req->limit))) ||
      (req->consistent_read &&
       json_object_set_new(j, "ConsistentRead", json_true())) ||
      (req->filter && kcld_svc_set_str(j, "FilterExpression", req->filter)) ||
      (req->projection &&
       kcld_svc_set_str(j, "ProjectionExpression", req->projection)) ||
      (req->names && kcld_svc_set_ref(j, "ExpressionAttributeNames", req->names)) ||
      (req->values && kcld_svc_set_ref(j, "ExpressionAttributeValues", req->values)))
    rc = KCLD_ENOMEM;
  else
    rc = kcld_svc_op_call(&op->base, j, NULL);
  if (rc < 0)
    kcld_svc_op_release(&op->base);
  return rc;
}

/* ======== BatchWriteItem ======== */

struct batch_op {
  struct kcld_svc_op base;
  kcld_dynamodb_batch_cb cb;
  void *arg;
  json_t *pending;   /* [[table, write request], ...] in order (copies) */
  size_t next;       /* first entry of `pending` not yet sent */
  json_t *chunk;     /* RequestItems of the call in flight / to retry */
  size_t chunk_count;
  int retries, max_retries;
  long base_ms, max_ms;
  size_t written;
  int calls;
};

/* Write requests in a RequestItems object, or -1 when it is malformed. */
static long count_requests(const json_t *items)
{
  const char *table;
  json_t *list;
  long n = 0;
  if (!json_is_object(items))
    return -1;
  json_object_foreach((json_t *)items, table, list) {
    if (!json_is_array(list) || !*table)
      return -1;
    for (size_t i = 0; i < json_array_size(list); i++)
      if (!json_is_object(json_array_get(list, i)))
        return -1;
    n += (long)json_array_size(list);
  }
  return n;
}

/* Appends the write requests of RequestItems `from` to RequestItems `to`. */
static int merge_items(json_t *to, const json_t *from)
{
  const char *table;
  json_t *list;
  json_object_foreach((json_t *)from, table, list) {
    json_t *dst = json_object_get(to, table);
    if (!dst) {
      dst = json_array();
      if (!dst || json_object_set_new(to, table, dst) != 0)
        return KCLD_ENOMEM;
    }
    if (json_array_extend(dst, list) != 0)
      return KCLD_ENOMEM;
  }
  return 0;
}

/* What is left: the current chunk (when not done) plus the pending rest. */
static json_t *batch_leftover(struct batch_op *op, int with_chunk)
{
  json_t *left = json_object();
  if (!left)
    return NULL;
  if (with_chunk && op->chunk && merge_items(left, op->chunk) != 0)
    goto fail;
  for (size_t i = op->next; i < json_array_size(op->pending); i++) {
    json_t *pair = json_array_get(op->pending, i);
    const char *table = json_string_value(json_array_get(pair, 0));
    json_t *dst = json_object_get(left, table);
    if (!dst) {
      dst = json_array();
      if (!dst || json_object_set_new(left, table, dst) != 0)
        goto fail;
    }
    if (json_array_append(dst, json_array_get(pair, 1)) != 0)
      goto fail;
  }
  return left;

fail:
  json_decref(left);
  return NULL;
}

/* The callback; on an error, what was not written comes back too. */
static void batch_deliver(struct kcld_svc_op *base,
                          const struct kcld_svc_status *st)
{
  struct batch_op *op = (struct batch_op *)base;
  struct kcld_dynamodb_batch_result r = {.st = *st};
  json_t *left = batch_leftover(op, st->err != 0);
  long n = left ? count_requests(left) : 0;
  r.written = op->written;
  r.calls = op->calls;
  if (n > 0) {
    r.unprocessed = left;
    r.unprocessed_count = (size_t)n;
  }
  op->cb(&r, op->arg);
  json_decref(left);
}

static void batch_clean_up(struct kcld_svc_op *base)
{
  struct batch_op *op = (struct batch_op *)base;
  json_decref(op->pending);
  json_decref(op->chunk);
}

static int batch_send(struct batch_op *op)
{
  json_t *req = json_object();
  int rc;
  if (!req || json_object_set(req, "RequestItems", op->chunk) != 0) {
    json_decref(req);
    return KCLD_ENOMEM;
  }
  rc = kcld_svc_op_call(&op->base, req, NULL);
  json_decref(req);
  if (rc == 0)
    op->calls++;
  return rc;
}

/* Takes the next (up to) 25 pending requests as the chunk and sends it.
 * Returns 1 when nothing was pending, else 0 or a negative KCLD_E* code. */
static int batch_next_chunk(struct batch_op *op)
{
  size_t total = json_array_size(op->pending);
  json_decref(op->chunk);
  op->chunk = NULL;
  op->chunk_count = 0;
  op->retries = 0;
  if (op->next >= total)
    return 1;
  op->chunk = json_object();
  if (!op->chunk)
    return KCLD_ENOMEM;
  while (op->next < total && op->chunk_count < KCLD_DYNAMODB_BATCH_MAX) {
    json_t *pair = json_array_get(op->pending, op->next);
    const char *table = json_string_value(json_array_get(pair, 0));
    json_t *dst = json_object_get(op->chunk, table);
    if (!dst) {
      dst = json_array();
      if (!dst || json_object_set_new(op->chunk, table, dst) != 0)
        return KCLD_ENOMEM;
    }
    if (json_array_append(dst, json_array_get(pair, 1)) != 0)
      return KCLD_ENOMEM;
    op->next++;
    op->chunk_count++;
  }
  return batch_send(op);
}

static void batch_advance(struct batch_op *op)
{
  int rc = batch_next_chunk(op);
  if (rc == 0)
    return;
  if (rc == 1)
    kcld_svc_op_succeed(&op->base);
  else
    kcld_svc_op_fail(&op->base, rc, "could not send: %s", kcld_strerror(rc));
}

static void batch_on_timer(struct kcld_svc_op *base)
{
  int rc = batch_send((struct batch_op *)base);
  if (rc < 0)
    kcld_svc_op_fail(base, rc, "could not retry: %s", kcld_strerror(rc));
}

static void batch_on_result(struct kcld_svc_op *base,
                            const struct kcld_aws_result *res)
{
  struct batch_op *op = (struct batch_op *)base;
  struct kcld_svc_status st;
  json_t *unproc;
  long n;

  kcld_svc_status_from(base, &st, res);
  if (st.err) {
    kcld_svc_op_end(&op->base, &st);
    return;
  }
  unproc = json_object_get(res->body, "UnprocessedItems");
  n = unproc ? count_requests(unproc) : 0;
  if (n < 0 || (size_t)n > op->chunk_count) {
    kcld_svc_status_set(base, &st, KCLD_EPARSE, NULL,
                        "UnprocessedItems in the answer is malformed");
    kcld_svc_log_bad_answer(base, &st);
    kcld_svc_op_end(base, &st);
    return;
  }
  op->written += op->chunk_count - (size_t)n;
  if (n == 0) {
    batch_advance(op);
    return;
  }
  json_decref(op->chunk);
  op->chunk = json_incref(unproc);
  op->chunk_count = (size_t)n;
  if (op->retries < op->max_retries) {
    uint64_t ms = kcld_svc_backoff_ms(op->retries, op->base_ms,
                                      op->max_ms);
    int rc;
    op->retries++;
    rc = kcld_svc_op_sleep(base, ms);
    if (rc == 0)
      return;
    kcld_svc_status_set(base, &st, rc, NULL, "could not back off: %s",
                        kcld_strerror(rc));
  } else {
    kcld_svc_status_set(base, &st, KCLD_ETIMEDOUT, NULL,
                        "%ld write requests still unprocessed after %d "
                        "retries", n, op->retries);
  }
  kcld_svc_op_end(&op->base, &st);
}

static const struct kcld_svc_op_type s_batch_type = {
  .on_result = batch_on_result,
  .on_timer = batch_on_timer,
  .deliver = batch_deliver,
  .clean_up = batch_clean_up,
};

int kcld_dynamodb_batch_write(struct kcld_dynamodb *db,
                              const json_t *request_items,
                              const struct kcld_dynamodb_batch_opts *opts,
                              kcld_dynamodb_batch_cb cb, void *arg)
{
  const char *opname = "BatchWriteItem";
  struct kcld_dynamodb_batch_opts o = {0};
  struct batch_op *op;
  const char *table;
  json_t *list;
  long n;
  int rc;

  if (!db || !cb)
    return KCLD_EINVAL;
  n = count_requests(request_items);
  if (n < 0)
    return kcld_svc_bad_arg(&db->svc, opname, "RequestItems is not {table: [write request]}");
  if (n == 0)
    return kcld_svc_bad_arg(&db->svc, opname, "no write requests");
  if (opts)
    o = *opts;
  if (o.max_retries < -1 || o.backoff_base_ms < 0 || o.backoff_max_ms < 0)
    return kcld_svc_bad_arg(&db->svc, opname, "negative retry settings");

  op = kcld_svc_op_new(&db->svc, sizeof(*op), &s_batch_type, opname, &rc);
  if (!op)
    return rc;
  op->cb = cb;
  op->arg = arg;
  op->max_retries = o.max_retries == 0 ? 8 : o.max_retries < 0 ? 0
                                                               : o.max_retries;
  op->base_ms = o.backoff_base_ms ? o.backoff_base_ms : 50;
  op->max_ms = o.backoff_max_ms ? o.backoff_max_ms : 5000;
  if (json_object_size(request_items) == 1) {
    json_object_foreach((json_t *)request_items, table, list)
      kcld_svc_op_resource(&op->base, "table %s (%ld requests)", table, n);
  } else {
    kcld_svc_op_resource(&op->base, "%zu tables (%ld requests)",
                         json_object_size(request_items), n);
  }
  op->pending = json_array();
  rc = op->pending ? 0 : KCLD_ENOMEM;
  json_object_foreach((json_t *)request_items, table, list) {
    for (size_t i = 0; rc == 0 && i < json_array_size(list); i++) {
      json_t *pair = json_pack("[s, o]", table,
                               json_deep_copy(json_array_get(list, i)));
      if (!pair || json_array_append_new(op->pending, pair) != 0)
        rc = KCLD_ENOMEM;
    }
  }
  if (rc == 0) {
    rc = batch_next_chunk(op);
    if (rc == 1)
      rc = KCLD_EINVAL; /* cannot happen: n > 0 */
  }
  if (rc < 0)
    kcld_svc_op_release(&op->base);
  return rc;
}

/* ======== AttributeValue helpers ======== */

static json_t *av1(const char *type, json_t *v)
{
  json_t *av;
  if (!v)
    return NULL;
  av = json_object();
  if (!av || json_object_set_new(av, type, v) != 0) {
    json_decref(av);
    return NULL;
  }
  return av;
}

json_t *kcld_dynamodb_av_s(const char *s)
{
  return s ? av1("S", json_string(s)) : NULL;
}

/* 1 when `s` is a DynamoDB number (see the header): significant digits
 * run from the first non-zero digit to the last. */
static int valid_number(const char *s)
{
  const char *p = s;
  int ndigits = 0, point = 0, sig = 0, zeros = 0, nonzero = 0;
  if (*p == '+' || *p == '-')
    p++;
  for (;; p++) {
    if (*p == '.') {
      if (point)
        return 0;
      point = 1;
      continue;
    }
    if (!isdigit((unsigned char)*p))
      break;
    ndigits++;
    if (*p != '0') {
      nonzero = 1;
      sig += zeros + 1;
      zeros = 0;
    } else if (nonzero) {
      zeros++;
    }
  }
  if (ndigits == 0)
    return 0;
  if (*p == 'e' || *p == 'E') {
    p++;
    if (*p == '+' || *p == '-')
      p++;
    if (!isdigit((unsigned char)*p))
      return 0;
    while (isdigit((unsigned char)*p))
      p++;
  }
  return *p == '\0' && sig <= 38;
}

json_t *kcld_dynamodb_av_n(const char *decimal)
{
  if (!decimal || !valid_number(decimal))
    return NULL;
  return av1("N", json_string(decimal));
}

json_t *kcld_dynamodb_av_n_i64(int64_t v)
{
  char buf[24];
  snprintf(buf, sizeof(buf), "%" PRId64, v);
  return av1("N", json_string(buf));
}

json_t *kcld_dynamodb_av_ss(const char *const *v, size_t n)
{
  json_t *arr;
  if (!v || n == 0)
    return NULL;
  arr = json_array();
  if (!arr)
    return NULL;
  for (size_t i = 0; i < n; i++) {
    if (!v[i])
      goto fail;
    for (size_t j = 0; j < i; j++)
      if (strcmp(v[i], v[j]) == 0)
        goto fail;
    if (json_array_append_new(arr, json_string(v[i])) != 0)
      goto fail;
  }
  return av1("SS", arr);

fail:
  json_decref(arr);
  return NULL;
}

json_t *kcld_dynamodb_av_bool(int b)
{
  return av1("BOOL", json_boolean(b));
}

json_t *kcld_dynamodb_av_null(void)
{
  return av1("NULL", json_true());
}

json_t *kcld_dynamodb_av_m(json_t *map)
{
  if (map && !json_is_object(map)) {
    json_decref(map);
    return NULL;
  }
  return av1("M", map ? map : json_object());
}

json_t *kcld_dynamodb_av_l(json_t *list)
{
  if (list && !json_is_array(list)) {
    json_decref(list);
    return NULL;
  }
  return av1("L", list ? list : json_array());
}

int kcld_dynamodb_item_set(json_t *item, const char *name, json_t *av)
{
  if (!av)
    return KCLD_EINVAL;
  if (!json_is_object(item) || !name || !*name) {
    json_decref(av);
    return KCLD_EINVAL;
  }
  return json_object_set_new(item, name, av) == 0 ? 0 : KCLD_ENOMEM;
}

json_t *kcld_dynamodb_attr(const json_t *item, const char *name)
{
  json_t *av = name ? json_object_get(item, name) : NULL;
  return json_is_object(av) ? av : NULL;
}

const char *kcld_dynamodb_as_s(const json_t *av)
{
  return json_string_value(json_object_get(av, "S"));
}

const char *kcld_dynamodb_as_n(const json_t *av)
{
  return json_string_value(json_object_get(av, "N"));
}

int kcld_dynamodb_as_i64(const json_t *av, int64_t *out)
{
  const char *s;
  char *end;
  long long v;
  if (!av)
    return KCLD_ENOTFOUND;
  s = kcld_dynamodb_as_n(av);
  if (!s || !*s || (!isdigit((unsigned char)*s) && *s != '-'))
    return KCLD_EINVAL;
  errno = 0;
  v = strtoll(s, &end, 10);
  if (errno != 0 || *end != '\0' || end == s)
    return KCLD_EINVAL;
  *out = (int64_t)v;
  return 0;
}

json_t *kcld_dynamodb_as_ss(const json_t *av)
{
  json_t *a = json_object_get(av, "SS");
  return json_is_array(a) ? a : NULL;
}

int kcld_dynamodb_as_bool(const json_t *av, int *out)
{
  json_t *b;
  if (!av)
    return KCLD_ENOTFOUND;
  b = json_object_get(av, "BOOL");
  if (!json_is_boolean(b))
    return KCLD_EINVAL;
  *out = json_is_true(b);
  return 0;
}

int kcld_dynamodb_is_null(const json_t *av)
{
  return json_is_true(json_object_get(av, "NULL"));
}

json_t *kcld_dynamodb_as_m(const json_t *av)
{
  json_t *m = json_object_get(av, "M");
  return json_is_object(m) ? m : NULL;
}

json_t *kcld_dynamodb_as_l(const json_t *av)
{
  json_t *l = json_object_get(av, "L");
  return json_is_array(l) ? l : NULL;
}
