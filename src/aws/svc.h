/* svc.h — the one skeleton of an AWS service client (Kinesis, DynamoDB,
 * SQS, STS, S3).
 *
 * For their callers: struct kcld_svc_status, how one operation ended.
 *
 * For the service files: everything but their request and answer mapping.
 *  - the client: struct kcld_svc with new/free; freeing cancels every
 *    pending operation (its callback runs at once with KCLD_ECANCELED) and
 *    no callback runs after it;
 *  - requests, the common case: one call whose answer maps to a typed
 *    result (a struct that starts with a struct kcld_svc_status), described
 *    by a struct kcld_svc_spec; failures of any kind (the call's, the
 *    mapping's, a close) reach the same typed callback with the rest of the
 *    result zeroed; optional polling until the answer's state is ACTIVE;
 *  - operations of their own (pages, chunks, backoff): struct
 *    kcld_svc_op_type, with calls, a one-shot timer and one way to end;
 *  - the fault map: error types to a service's own fault classes;
 *  - small request and message helpers.
 *
 * A new service is a file of request builders, answer maps and specs.
 *
 * Loop thread only. */
#ifndef KCLD_AWS_SVC_H
#define KCLD_AWS_SVC_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "aws/call.h"

/* How an operation ended.  Valid only during the callback it is given to. */
struct kcld_svc_status {
  int err;             /* 0, or a negative KCLD_E* code: KCLD_ENOTFOUND
                          (ResourceNotFoundException, QueueDoesNotExist,
                          S3's NoSuchBucket, NoSuchKey, NotFound),
                          KCLD_ECONDITION (ConditionalCheckFailedException),
                          KCLD_EAWS (any other service error), or the call
                          layer's KCLD_ETRANSPORT, KCLD_ETIMEDOUT, KCLD_EPARSE,
                          KCLD_ECREDS, KCLD_ECANCELED */
  long http_status;    /* HTTP status of the last attempt; 0 if none */
  const char *type;    /* short AWS error type ("ExpiredIteratorException"),
                          "" when the service did not answer with an error */
  const char *message; /* "" on success, else one line naming the operation,
                          the resource and the error type, e.g.
                          "GetRecords shard shardId-000000000001:
                          ExpiredIteratorException (HTTP 400, 1 attempt):
                          Iterator expired"; never a secret */
  int attempts;        /* HTTP attempts of the last call; 0 if none */
};

/* 1 when the operation failed for a reason that says nothing lasting, so
 * that the same request may well succeed later: no answer (KCLD_ETRANSPORT),
 * a timeout (KCLD_ETIMEDOUT), or a service error that is throttling or the
 * service's own failure (kcld_aws_error_is_transient, or any HTTP 5xx).
 * 0 for success, a cancel, a refusal (access, validation, not found, a
 * failed condition), credentials that cannot be had and an answer that
 * cannot be read.  NULL is 0. */
int kcld_svc_transient(const struct kcld_svc_status *st);

/* ======== For the service files only ======== */

struct kcld_svc_op;
struct kcld_svc_mem;

struct kcld_svc {
  struct kcld_aws *aws;
  uv_loop_t *loop;
  enum kcld_aws_service service;
  struct kcld_svc_op *ops; /* operations whose callback has not run */
  int closed;
  int uncapped;            /* its calls are not under max_in_flight */
};

/* Allocates a zeroed client of `size` bytes (a struct that starts with a
 * struct kcld_svc) over `aws` (borrowed; it must outlive the client) and
 * `loop`.  Returns 0, KCLD_EINVAL (`out`, `aws` or `loop` NULL) or
 * KCLD_ENOMEM. */
int kcld_svc_new(size_t size, struct kcld_aws *aws, uv_loop_t *loop,
                 enum kcld_aws_service service, void **out);

/* Cancels every pending operation (each user callback runs once, now, with
 * KCLD_ECANCELED) and frees the client; no callback of it runs afterwards.
 * Calls still in flight in the AWS client and timers finish on the loop and
 * only free their operation: run the loop afterwards.  NULL is ignored. */
void kcld_svc_close(struct kcld_svc *svc);

/* Logs "AWS call refused: invalid argument" with the service, operation
 * and reason; returns KCLD_EINVAL. */
int kcld_svc_bad_arg(const struct kcld_svc *svc, const char *operation,
                     const char *reason);

/* ---- Fault map ---- */

/* An error type and the service's fault for it.  A type ending in '*'
 * matches every type that starts with what comes before it. */
struct kcld_svc_fault_row {
  const char *type;
  int fault;
};

/* A service's faults: its table and the classes every service has. */
struct kcld_svc_faults {
  const struct kcld_svc_fault_row *rows;
  size_t n_rows;
  int ok;          /* st NULL or err 0 */
  int canceled;    /* KCLD_ECANCELED */
  int transient;   /* no answer, a timeout, an unreadable body; a 5xx not
                      in the table */
  int not_found;   /* KCLD_ENOTFOUND */
  int condition;   /* KCLD_ECONDITION */
  int other;       /* anything else */
};

/* Classifies how an operation ended: ok, canceled, transient (transport,
 * timeout, parse), not_found, condition, then the first matching row of
 * the table, then transient for HTTP 5xx, else other. */
int kcld_svc_fault(const struct kcld_svc_status *st,
                   const struct kcld_svc_faults *faults);

/* ---- Requests: one call, one typed result ---- */

/* A callback of any type, kept until its shape calls it. */
typedef void (*kcld_svc_fn)(void);

/* The typed result of a request: `size` bytes of a struct that starts with
 * a struct kcld_svc_status; `invoke` calls a callback of the matching type
 * (cast back from kcld_svc_fn) with it.  Define with KCLD_SVC_SHAPE. */
struct kcld_svc_shape {
  size_t size;
  void (*invoke)(kcld_svc_fn cb, const void *result, void *arg);
};

#define KCLD_SVC_SHAPE(name, result_type, cb_type)                           \
  static void name##_invoke(kcld_svc_fn cb, const void *result, void *arg)   \
  {                                                                          \
    ((cb_type)cb)((const result_type *)result, arg);                         \
  }                                                                          \
  static const struct kcld_svc_shape name = {sizeof(result_type),            \
                                             name##_invoke}

/* What a request is: the operation, its result and how an answer maps. */
struct kcld_svc_spec {
  const char *operation;              /* "GetShardIterator": a constant */
  const struct kcld_svc_shape *shape;
  /* Fills `result` (zeroed; its status says success) from a successful
   * answer.  Returns 0, or a negative KCLD_E* code after setting the
   * result's status with kcld_svc_status_set (a KCLD_EPARSE is logged as
   * "AWS answer not understood").  NULL = nothing beyond the status. */
  int (*map)(struct kcld_svc_op *op, const struct kcld_aws_result *res,
             void *result);
  /* For waits: the state word of a mapped result ("ACTIVE"), and the
   * words it may be, NULL-terminated (others are named "unknown"). */
  const char *(*state)(const void *result);
  const char *const *states;
};

/* Creates a request for `spec`, whose result goes to `cb` (of the type
 * spec's shape calls, cast to kcld_svc_fn) with `arg`, with `ctx_size`
 * zeroed bytes of context for the service file (kcld_svc_ctx).  Name the
 * resource with kcld_svc_op_resource, then send with kcld_svc_request_start.
 * Returns the op, or NULL with *err KCLD_ECANCELED (client closed) or
 * KCLD_ENOMEM. */
struct kcld_svc_op *kcld_svc_request_new(struct kcld_svc *svc,
                                         const struct kcld_svc_spec *spec,
                                         size_t ctx_size, kcld_svc_fn cb,
                                         void *arg, int *err);

/* The request's context (ctx_size bytes, max_align_t aligned). */
void *kcld_svc_ctx(struct kcld_svc_op *op);

/* Makes the request poll: the call is sent again (100 ms, doubling to 2 s)
 * while the answer's state is not ACTIVE or the error is KCLD_ENOTFOUND,
 * and ends with KCLD_ETIMEDOUT "not ACTIVE after N ms (last: STATE)" once
 * `timeout_ms` have passed.  Call before kcld_svc_request_start. */
void kcld_svc_request_wait(struct kcld_svc_op *op, long timeout_ms);

/* Sends the request (takes `request`; NULL means out of memory) with
 * `opts` (NULL = defaults).  Returns 0 and the callback runs once later,
 * or returns the error after dropping the op and the callback never runs. */
int kcld_svc_request_start(struct kcld_svc_op *op, json_t *request,
                           const struct kcld_aws_call_opts *opts);

/* kcld_svc_request_start for a REST service (S3): sends `req` (its body
 * taken, also on error; the spec's map reads res->raw).  No waits.
 * Returns 0 and the callback runs once later, or returns the error after
 * dropping the op and the callback never runs. */
int kcld_svc_request_start_rest(struct kcld_svc_op *op,
                                struct kcld_aws_rest *req,
                                const struct kcld_aws_call_opts *opts);

/* The whole request at once: kcld_svc_request_new without context,
 * kcld_svc_op_resource with `resource_fmt`, kcld_svc_request_start with
 * `request` (taken; NULL means out of memory) and `opts`.  Returns 0 and
 * the callback runs once later, or returns the error and it never runs. */
int kcld_svc_send(struct kcld_svc *svc, const struct kcld_svc_spec *spec,
                  json_t *request, const struct kcld_aws_call_opts *opts,
                  kcld_svc_fn cb, void *arg, const char *resource_fmt, ...)
  __attribute__((format(printf, 7, 8)));

/* ---- Operations of their own ---- */

struct kcld_svc_op_type {
  /* The op's call answered (res->err may be anything). */
  void (*on_result)(struct kcld_svc_op *op, const struct kcld_aws_result *res);
  /* The op's timer fired (NULL when the op never sleeps). */
  void (*on_timer)(struct kcld_svc_op *op);
  /* Runs the user's callback with how the op ended, `st`: its success,
   * its error, or KCLD_ECANCELED when the client closes.  Reached only
   * through kcld_svc_op_end and the close. */
  void (*deliver)(struct kcld_svc_op *op, const struct kcld_svc_status *st);
  /* Frees what the op owns beyond itself (NULL when nothing). */
  void (*clean_up)(struct kcld_svc_op *op);
};

struct kcld_svc_op {
  const struct kcld_svc_op_type *type;
  struct kcld_svc *svc;       /* NULL once ended or cancelled by the close */
  struct kcld_svc_op *prev, *next;
  struct kcld_svc_mem *mem;   /* kcld_svc_op_alloc blocks */
  json_t *keep;               /* kcld_svc_op_keep values */
  uv_timer_t timer;
  unsigned timer_init : 1, timer_closing : 1, in_call : 1, released : 1,
    busy : 1;                 /* inside on_result / on_timer */
  const char *operation;      /* "ListShards": a string constant */
  char resource[192];         /* "stream s", "table t key {...}" */
  struct kcld_svc_text *text; /* a failure's type and message, from the
                                 first failure on: an op stays within
                                 malloc's per-thread cache (< 1 KiB) */
};

/* Allocates a zeroed operation of `size` bytes (a struct that starts with a
 * struct kcld_svc_op) and links it.  Returns it, or NULL with *err set to
 * KCLD_ECANCELED (client closed) or KCLD_ENOMEM. */
void *kcld_svc_op_new(struct kcld_svc *svc, size_t size,
                      const struct kcld_svc_op_type *type,
                      const char *operation, int *err);

/* printf into op->resource, which names the resource in messages. */
void kcld_svc_op_resource(struct kcld_svc_op *op, const char *fmt, ...)
  __attribute__((format(printf, 2, 3)));

/* Zeroed memory that lives as long as the op (for what a result points
 * to).  NULL when out of memory. */
void *kcld_svc_op_alloc(struct kcld_svc_op *op, size_t size);

/* Keeps a reference to `v` as long as the op lives (results may point into
 * it).  Returns `v`, or NULL when `v` is NULL or out of memory. */
json_t *kcld_svc_op_keep(struct kcld_svc_op *op, json_t *v);

/* Sends the op's `operation` with `request` (borrowed); the answer goes to
 * the op type's on_result.  Returns 0 or the call layer's error (no
 * callback). */
int kcld_svc_op_call(struct kcld_svc_op *op, const json_t *request,
                     const struct kcld_aws_call_opts *opts);

/* kcld_svc_op_call for a REST service: sends `req` (its body taken, also
 * on error).  Returns 0 or the call layer's error (no callback). */
int kcld_svc_op_rest_call(struct kcld_svc_op *op, struct kcld_aws_rest *req,
                          const struct kcld_aws_call_opts *opts);

/* Starts the op's one-shot timer; on_timer runs after `ms`.  Returns 0 or a
 * negative KCLD_E* code. */
int kcld_svc_op_sleep(struct kcld_svc_op *op, uint64_t ms);

/* Ends the op: unlinks it (a close from inside the callback does not
 * cancel it again), runs the op type's deliver with `st`, then releases
 * it.  Call once, from on_result or on_timer. */
void kcld_svc_op_end(struct kcld_svc_op *op, const struct kcld_svc_status *st);

/* Ends the op with a success status. */
void kcld_svc_op_succeed(struct kcld_svc_op *op);

/* Ends the op with an error made by the service file: `err` and a printf'd
 * detail (see kcld_svc_status_set). */
void kcld_svc_op_fail(struct kcld_svc_op *op, int err, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));

/* Drops an op that was never sent (instead of its callback): freed now, or
 * once its timer has closed. */
void kcld_svc_op_release(struct kcld_svc_op *op);

/* Fills `st` from a call result (success or error), with a message naming
 * the op's operation and resource. */
void kcld_svc_status_from(struct kcld_svc_op *op, struct kcld_svc_status *st,
                          const struct kcld_aws_result *res);

/* Fills `st` with an error made by the service file: `err`, an optional
 * AWS type (NULL = ""), and a printf'd detail. */
void kcld_svc_status_set(struct kcld_svc_op *op, struct kcld_svc_status *st,
                         int err, const char *type, const char *fmt, ...)
  __attribute__((format(printf, 5, 6)));

/* Logs "AWS answer not understood" with the service and st's message. */
void kcld_svc_log_bad_answer(const struct kcld_svc_op *op,
                             const struct kcld_svc_status *st);

/* A backoff for wrapper-level retries (retry counts from 0): base x 2^retry
 * capped at max_ms (<= 0: at base), "equal jitter" (half fixed, half
 * random; base/backoff.h), at least 1 ms. */
uint64_t kcld_svc_backoff_ms(int retry, long base_ms, long max_ms);

/* ---- Request and message helpers ---- */

/* Sets `key` of object `req` to a string, an integer or `v` itself (a
 * reference, as json_pack's "O": a deep copy cost ~40 allocations an
 * UpdateItem; the caller leaves `v` unchanged while the request lives).
 * Return 0 or KCLD_ENOMEM. */
int kcld_svc_set_str(json_t *req, const char *key, const char *v);
int kcld_svc_set_int(json_t *req, const char *key, json_int_t v);
int kcld_svc_set_ref(json_t *req, const char *key, const json_t *v);

/* `req` when `failed` is 0; else frees `req` and returns NULL (which
 * kcld_svc_request_start reads as out of memory).  For request builders. */
json_t *kcld_svc_req(json_t *req, int failed);

/* The string at `key` of `obj`, or NULL. */
const char *kcld_svc_str(const json_t *obj, const char *key);

/* Copies at most `max` bytes of compact JSON of `v` into dst (cap bytes),
 * cut with "..." when longer.  For naming keys in messages. */
void kcld_svc_json_brief(char *dst, size_t cap, const json_t *v, size_t max);

#endif
