/* dynamodb.h — DynamoDB calls on the shared AWS client, and helpers for
 * DynamoDB's AttributeValue JSON.
 *
 * Thin and asynchronous: each call builds its request, sends it through
 * kcld_aws_call (signing, the standard retries), maps the answer and calls
 * the caller's callback exactly once, on the loop thread.  A result and
 * every pointer in it are valid only during the callback (json_incref what
 * you keep).  Only Scan (LastEvaluatedKey pages), BatchWriteItem (chunks of
 * 25, UnprocessedItems retried with backoff) and the wait for ACTIVE loop.
 *
 * Errors (st.err): ConditionalCheckFailedException is KCLD_ECONDITION,
 * ResourceNotFoundException (no such table) is KCLD_ENOTFOUND, any other
 * service error KCLD_EAWS with st.type set; kcld_dynamodb_fault() tells them
 * apart (table exists, throttled, ...).
 *
 * Every call returns 0 and later calls its callback, or returns a negative
 * KCLD_E* code (KCLD_EINVAL for a bad argument, logged with the reason;
 * KCLD_ECANCELED after close; KCLD_ENOMEM) and never calls it.  JSON
 * arguments are borrowed: they are read (or copied) before the call
 * returns.
 *
 * Loop thread only. */
#ifndef KCLD_AWS_DYNAMODB_H
#define KCLD_AWS_DYNAMODB_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "aws/call.h"
#include "aws/svc.h"

struct kcld_dynamodb;

/* Creates a DynamoDB client over `aws` (borrowed; it must outlive this
 * client).  `loop` runs the timers of BatchWriteItem and of the wait.
 * Returns 0, KCLD_EINVAL or KCLD_ENOMEM. */
int kcld_dynamodb_new(struct kcld_aws *aws, uv_loop_t *loop,
                      struct kcld_dynamodb **out);

/* This client's calls are not under the DynamoDB cap on requests in
 * flight (http.dynamodb_max_in_flight, which paces the lease table's
 * bursts): for the dynamodb handler's writes, whose concurrency the
 * pipeline bounds, and which must never make a renewal wait. */
void kcld_dynamodb_set_uncapped(struct kcld_dynamodb *db);

/* Runs the callback of every pending operation with KCLD_ECANCELED, now,
 * and frees the client; no callback of it runs afterwards.  Timers close on
 * the loop: run it afterwards.  Close this before the AWS client. */
void kcld_dynamodb_close(struct kcld_dynamodb *db);

enum kcld_dynamodb_fault {
  KCLD_DYNAMODB_OK = 0,
  KCLD_DYNAMODB_CONDITION,   /* ConditionalCheckFailedException */
  KCLD_DYNAMODB_NOT_FOUND,   /* ResourceNotFoundException: no such table */
  KCLD_DYNAMODB_IN_USE,      /* ResourceInUseException: CreateTable on a
                                table that exists (or is being changed) */
  KCLD_DYNAMODB_THROTTLED,   /* ProvisionedThroughputExceededException,
                                RequestLimitExceeded, ThrottlingException */
  KCLD_DYNAMODB_INVALID,     /* ValidationException,
                                SerializationException */
  KCLD_DYNAMODB_CONFLICT,    /* TransactionConflictException */
  KCLD_DYNAMODB_TRANSIENT,   /* no answer, a timeout, a 5xx, a body that did
                                not parse */
  KCLD_DYNAMODB_CANCELED,    /* the client was closed */
  KCLD_DYNAMODB_OTHER        /* anything else (credentials, access, ...) */
};

/* Classifies how an operation ended. */
enum kcld_dynamodb_fault
kcld_dynamodb_fault(const struct kcld_svc_status *st);

/* ======== Tables ======== */

struct kcld_dynamodb_table {
  struct kcld_svc_status st;
  const char *name;
  const char *status;   /* CREATING, UPDATING, DELETING, ACTIVE, ... */
  json_t *table;        /* TableDescription (borrowed); NULL on error */
};

typedef void (*kcld_dynamodb_table_cb)(const struct kcld_dynamodb_table *res,
                                       void *arg);

/* CreateTable with `request`, the whole CreateTable JSON (TableName,
 * KeySchema, AttributeDefinitions, BillingMode, ...).  A table that exists
 * ends with KCLD_EAWS and kcld_dynamodb_fault() == KCLD_DYNAMODB_IN_USE.
 * Follow with kcld_dynamodb_wait_active(). */
int kcld_dynamodb_create_table(struct kcld_dynamodb *db, const json_t *request,
                               kcld_dynamodb_table_cb cb, void *arg);

/* DescribeTable; KCLD_ENOTFOUND when there is no such table. */
int kcld_dynamodb_describe_table(struct kcld_dynamodb *db, const char *table,
                                 kcld_dynamodb_table_cb cb, void *arg);

/* Polls DescribeTable (100 ms, doubling to 2 s) until the table is ACTIVE
 * and hands back that description.  ResourceNotFoundException is polled
 * through (a table just created may not be visible yet).  Ends with
 * KCLD_ETIMEDOUT after timeout_ms (0 = 60000) or with the first other
 * error. */
int kcld_dynamodb_wait_active(struct kcld_dynamodb *db, const char *table,
                              long timeout_ms, kcld_dynamodb_table_cb cb,
                              void *arg);

/* ======== Items ======== */

/* A condition and what comes back, for PutItem, UpdateItem, DeleteItem. */
struct kcld_dynamodb_cond {
  const char *condition;       /* ConditionExpression; NULL = none */
  const json_t *names;         /* ExpressionAttributeNames; NULL = none */
  const json_t *values;        /* ExpressionAttributeValues; NULL = none */
  const char *return_values;   /* ReturnValues ("ALL_OLD", "ALL_NEW", ...);
                                  NULL = none */
};

struct kcld_dynamodb_result {
  struct kcld_svc_status st;
  json_t *item;   /* GetItem: the item, NULL when there is none (err 0);
                     Put/Update/Delete: Attributes when ReturnValues asked
                     for them, else NULL */
  json_t *body;   /* the whole answer (borrowed); NULL on error */
};

typedef void (*kcld_dynamodb_cb)(const struct kcld_dynamodb_result *res,
                                 void *arg);

/* GetItem by `key` (an item of key attributes).  A missing item is success
 * with item == NULL. */
int kcld_dynamodb_get_item(struct kcld_dynamodb *db, const char *table,
                           const json_t *key, int consistent_read,
                           kcld_dynamodb_cb cb, void *arg);

/* PutItem `item`, under `cond` (NULL = unconditional). */
int kcld_dynamodb_put_item(struct kcld_dynamodb *db, const char *table,
                           const json_t *item,
                           const struct kcld_dynamodb_cond *cond,
                           kcld_dynamodb_cb cb, void *arg);

/* UpdateItem `key` with `update_expression` ("SET #a = :v REMOVE b"), under
 * `cond` (NULL = unconditional; its names and values also serve the update
 * expression). */
int kcld_dynamodb_update_item(struct kcld_dynamodb *db, const char *table,
                              const json_t *key, const char *update_expression,
                              const struct kcld_dynamodb_cond *cond,
                              kcld_dynamodb_cb cb, void *arg);

/* DeleteItem `key`, under `cond` (NULL = unconditional). */
int kcld_dynamodb_delete_item(struct kcld_dynamodb *db, const char *table,
                              const json_t *key,
                              const struct kcld_dynamodb_cond *cond,
                              kcld_dynamodb_cb cb, void *arg);

/* ======== Scan ======== */

struct kcld_dynamodb_scan_req {
  const char *table;
  int limit;              /* Limit: items read per page; 0 = no limit */
  int consistent_read;
  const char *filter;     /* FilterExpression; NULL = none */
  const char *projection; /* ProjectionExpression; NULL = all attributes */
  const json_t *names;    /* ExpressionAttributeNames; NULL = none */
  const json_t *values;   /* ExpressionAttributeValues; NULL = none */
};

struct kcld_dynamodb_scan_result {
  struct kcld_svc_status st;
  json_t *items;    /* every item of every page, in order (borrowed); NULL
                       with a page callback or on error */
  size_t count;     /* items seen */
  int pages;        /* Scan answers */
  int stopped;      /* 1 when the page callback asked to stop */
};

/* Gets one page's Items (borrowed, valid during the call); returns 0 to
 * go on, non-zero to stop (the scan then ends with err 0, stopped 1). */
typedef int (*kcld_dynamodb_page_cb)(json_t *items, void *arg);
typedef void (*kcld_dynamodb_scan_cb)(
  const struct kcld_dynamodb_scan_result *res, void *arg);

/* Scans the whole table, page by page (LastEvaluatedKey).  With page_cb
 * each page goes to it as it arrives; without, all items are handed back
 * at the end. */
int kcld_dynamodb_scan(struct kcld_dynamodb *db,
                       const struct kcld_dynamodb_scan_req *req,
                       kcld_dynamodb_page_cb page_cb,
                       kcld_dynamodb_scan_cb done_cb, void *arg);

/* ======== BatchWriteItem ======== */

#define KCLD_DYNAMODB_BATCH_MAX 25

struct kcld_dynamodb_batch_opts {
  int max_retries;      /* retries of UnprocessedItems per chunk; 0 = 8,
                           -1 = none */
  long backoff_base_ms; /* 0 = 50 */
  long backoff_max_ms;  /* 0 = 5000 */
};

struct kcld_dynamodb_batch_result {
  struct kcld_svc_status st;
  size_t written;       /* write requests DynamoDB accepted */
  size_t unprocessed_count;
  json_t *unprocessed;  /* RequestItems-shaped object of the write requests
                           not done (unprocessed after the retries, or never
                           sent after a failed call); NULL when all done */
  int calls;            /* BatchWriteItem calls made */
};

typedef void (*kcld_dynamodb_batch_cb)(
  const struct kcld_dynamodb_batch_result *res, void *arg);

/* Writes `request_items` ({"table": [{"PutRequest": {"Item": {...}}} |
 * {"DeleteRequest": {"Key": {...}}}, ...], ...}, any number; copied) in
 * calls of at most 25, one after the other.  UnprocessedItems are retried
 * with backoff before the next chunk goes out.  err is 0 when every call
 * succeeded and nothing is left; KCLD_ETIMEDOUT when items were still
 * unprocessed after max_retries; a failed call's error otherwise (the
 * remaining chunks are then not sent).  opts may be NULL. */
int kcld_dynamodb_batch_write(struct kcld_dynamodb *db,
                              const json_t *request_items,
                              const struct kcld_dynamodb_batch_opts *opts,
                              kcld_dynamodb_batch_cb cb, void *arg);

/* ======== AttributeValue helpers ========
 *
 * Builders return a new reference or NULL (out of memory, or bad input as
 * noted).  Readers take an AttributeValue (as kcld_dynamodb_attr() gives)
 * and return NULL / an error when it is NULL or of another type, so that
 * kcld_dynamodb_as_s(kcld_dynamodb_attr(item, "leaseOwner")) is safe. */

json_t *kcld_dynamodb_av_s(const char *s);           /* {"S": s} */
/* {"N": "text"}; NULL unless `decimal` is a DynamoDB number: optional sign,
 * digits with an optional fraction, optional exponent, at most 38
 * significant digits.  The text is kept exactly as given. */
json_t *kcld_dynamodb_av_n(const char *decimal);
json_t *kcld_dynamodb_av_n_i64(int64_t v);           /* {"N": "-42"} */
/* {"SS": [...]}; NULL when n == 0 (DynamoDB has no empty sets) or when a
 * string repeats. */
json_t *kcld_dynamodb_av_ss(const char *const *v, size_t n);
json_t *kcld_dynamodb_av_bool(int b);                /* {"BOOL": b} */
json_t *kcld_dynamodb_av_null(void);                 /* {"NULL": true} */
/* {"M": map} and {"L": list}; the map (name -> AttributeValue) or array of
 * AttributeValues is stolen; NULL = empty. */
json_t *kcld_dynamodb_av_m(json_t *map);
json_t *kcld_dynamodb_av_l(json_t *list);

/* item[name] = av, stealing av.  Returns 0, or KCLD_EINVAL when av is NULL
 * (so a failed builder can be passed straight in) or KCLD_ENOMEM. */
int kcld_dynamodb_item_set(json_t *item, const char *name, json_t *av);

/* The AttributeValue `name` of an item (or of an M's map), or NULL. */
json_t *kcld_dynamodb_attr(const json_t *item, const char *name);

const char *kcld_dynamodb_as_s(const json_t *av);   /* S text, or NULL */
const char *kcld_dynamodb_as_n(const json_t *av);   /* N text, or NULL */
/* N as an integer: 0, KCLD_ENOTFOUND (av NULL), KCLD_EINVAL (not an N, not
 * an integer, or out of range). */
int kcld_dynamodb_as_i64(const json_t *av, int64_t *out);
json_t *kcld_dynamodb_as_ss(const json_t *av);      /* SS's array of JSON
                                                       strings, or NULL */
/* BOOL: 0 with *out set, KCLD_ENOTFOUND, or KCLD_EINVAL (not a BOOL). */
int kcld_dynamodb_as_bool(const json_t *av, int *out);
int kcld_dynamodb_is_null(const json_t *av);        /* 1 for {"NULL":true} */
json_t *kcld_dynamodb_as_m(const json_t *av);       /* M's map, or NULL */
json_t *kcld_dynamodb_as_l(const json_t *av);       /* L's array, or NULL */

#endif
