/* svc.h — what the Kinesis, DynamoDB and SQS wrappers share.
 *
 * For their callers: struct kcld_svc_status, how one wrapped operation
 * ended.  For the wrappers themselves (kinesis.c, dynamodb.c, sqs.c): the
 * bookkeeping of operations in flight, so that a service client can be
 * closed with operations pending (their callbacks then run at once with
 * KCLD_ECANCELED, and none runs after the close), a one-shot timer per
 * operation for the few loops that wait (pagination backoff, unprocessed
 * items, polling until ACTIVE), and the error mapping and message format.
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
                          (ResourceNotFoundException, QueueDoesNotExist),
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

/* ======== For the wrappers only ======== */

struct kcld_svc_op;

struct kcld_svc {
  struct kcld_aws *aws;
  uv_loop_t *loop;
  enum kcld_aws_service service;
  struct kcld_svc_op *ops; /* operations whose callback has not run */
  uint64_t rng;
  int closed;
};

struct kcld_svc_op_type {
  /* The op's call answered (res->err may be anything). */
  void (*on_result)(struct kcld_svc_op *op, const struct kcld_aws_result *res);
  /* The op's timer fired (NULL when the op never sleeps). */
  void (*on_timer)(struct kcld_svc_op *op);
  /* Runs the user's callback with the error `st`: KCLD_ECANCELED when the
   * client closes, or the error given to kcld_svc_op_fail.  The op is
   * unlinked before and released after by svc. */
  void (*fail)(struct kcld_svc_op *op, const struct kcld_svc_status *st);
  /* Frees what the op owns beyond itself (NULL when nothing). */
  void (*clean_up)(struct kcld_svc_op *op);
};

struct kcld_svc_op {
  const struct kcld_svc_op_type *type;
  struct kcld_svc *svc;       /* NULL once released or detached by close */
  struct kcld_svc_op *prev, *next;
  uv_timer_t timer;
  unsigned timer_init : 1, timer_closing : 1, in_call : 1, released : 1,
    busy : 1;                 /* inside on_result / on_timer */
  const char *operation;      /* "ListShards": a string constant */
  char resource[192];         /* "stream s", "table t key {...}" */
  char type_buf[96];
  char msg[640];
};

/* Sets up a client; `aws` and `loop` are borrowed. */
void kcld_svc_init(struct kcld_svc *svc, struct kcld_aws *aws,
                   uv_loop_t *loop, enum kcld_aws_service service);

/* Allocates a zeroed client of `size` bytes (a struct that starts with a
 * struct kcld_svc) and sets it up as kcld_svc_init does.  Returns it, or
 * NULL with *err set to KCLD_EINVAL (`aws` or `loop` NULL) or KCLD_ENOMEM;
 * *err is 0 on success. */
void *kcld_svc_new(size_t size, struct kcld_aws *aws, uv_loop_t *loop,
                   enum kcld_aws_service service, int *err);

/* kcld_svc_close, then frees the client made by kcld_svc_new.  NULL is
 * ignored. */
void kcld_svc_free(struct kcld_svc *svc);

/* Cancels every pending operation (each user callback runs once, now, with
 * KCLD_ECANCELED), after which no callback of this client runs again.
 * Calls still in flight in the AWS client and timers finish on the loop and
 * only free their operation.  New operations are refused. */
void kcld_svc_close(struct kcld_svc *svc);

/* Allocates a zeroed operation of `size` bytes (a struct that starts with a
 * struct kcld_svc_op) and links it.  Returns it, or NULL with *err set to
 * KCLD_ECANCELED (client closed) or KCLD_ENOMEM. */
void *kcld_svc_op_new(struct kcld_svc *svc, size_t size,
                      const struct kcld_svc_op_type *type,
                      const char *operation, int *err);

/* printf into op->resource. */
void kcld_svc_op_resource(struct kcld_svc_op *op, const char *fmt, ...)
  __attribute__((format(printf, 2, 3)));

/* Sends `operation` with `request` (borrowed); the answer goes to the op
 * type's on_result.  Returns 0 or the call layer's error (no callback). */
int kcld_svc_op_call(struct kcld_svc_op *op, const json_t *request,
                     const struct kcld_aws_call_opts *opts);

/* Sends the op's first call (takes `request`, NULL meaning out of memory).
 * Returns 0, or the error after dropping the op (no callback). */
int kcld_svc_op_start(struct kcld_svc_op *op, json_t *request,
                      const struct kcld_aws_call_opts *opts);

/* Sends `request` (borrowed) again, for a wait that polls; when it cannot be
 * sent, fails the op with "could not poll: <error>" (kcld_svc_op_fail). */
void kcld_svc_op_poll(struct kcld_svc_op *op, const json_t *request);

/* Starts the op's one-shot timer; on_timer runs after `ms`.  Returns 0 or a
 * negative KCLD_E* code. */
int kcld_svc_op_sleep(struct kcld_svc_op *op, uint64_t ms);

/* Unlinks the op before its user callback runs, so a close from inside that
 * callback does not cancel it a second time.  (A callback run while the op
 * is still linked, like a Scan page callback, may see the op cancelled by a
 * close: op->svc is NULL afterwards.  The op stays allocated until
 * on_result or on_timer returns.) */
void kcld_svc_op_done(struct kcld_svc_op *op);

/* Drops the op (after its user callback, or instead of it when the start
 * failed): freed now, or once its call or timer has finished. */
void kcld_svc_op_release(struct kcld_svc_op *op);

/* Ends the op with the error `st`: unlinks it, runs the op type's fail
 * (the user's callback), then releases it. */
void kcld_svc_op_fail(struct kcld_svc_op *op, const struct kcld_svc_status *st);

/* Fills `st` from a call result (success or error), with a message naming
 * the op's operation and resource. */
void kcld_svc_status_from(struct kcld_svc_op *op, struct kcld_svc_status *st,
                          const struct kcld_aws_result *res);

/* Fills `st` with an error made by the wrapper itself: `err`, an optional
 * AWS type (NULL = ""), and a printf'd detail. */
void kcld_svc_status_set(struct kcld_svc_op *op, struct kcld_svc_status *st,
                         int err, const char *type, const char *fmt, ...)
  __attribute__((format(printf, 5, 6)));

/* A backoff for wrapper-level retries: base x 2^retry capped at max_ms,
 * "equal jitter" (half fixed, half random), at least 1 ms. */
uint64_t kcld_svc_backoff_ms(struct kcld_svc *svc, int retry, long base_ms,
                             long max_ms);

/* Copies at most `max` bytes of compact JSON of `v` into dst (cap bytes),
 * cut with "..." when longer.  For naming keys in messages. */
void kcld_svc_json_brief(char *dst, size_t cap, const json_t *v, size_t max);

#endif
