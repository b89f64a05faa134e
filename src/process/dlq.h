/* dlq.h — the failure destination: where records the failure policy gave up
 * on are kept, durably, before the checkpoint moves past them.
 *
 * One interface over several stores, so the dispatcher does not care which:
 *   - SQS, on_failure.sqs (process/dlq_sqs.h);
 *   - a local directory of JSON-lines files, on_failure.dir, the default
 *     (process/dlq_dir.h).
 * A store is a struct kcld_dlq_store: it keeps messages and says which it
 * kept; this module builds the messages, and sends them again until every
 * one is kept.
 *
 * A range of records that is given up becomes one or more messages.  Each
 * body is Lambda's on-failure record for a Kinesis event source
 * (requestContext, responseContext, version, timestamp, KinesisBatchInfo),
 * so existing DLQ tooling reads it unchanged, plus what Lambda leaves out:
 *
 *   "records": [{"partitionKey", "sequenceNumber", "subSequenceNumber",
 *                "approximateArrivalTimestamp" (epoch seconds, as Kinesis
 *                events carry it), "data" (base64)}, ...]
 *   "errorType", "errorMessage": the handler's last answer.
 *
 * requestContext.functionArn is ARN-shaped (aws/identity.h) and
 * responseContext.functionError is "Unhandled", as Lambda writes for a
 * function error; kcld's own error type and message are in errorType and
 * errorMessage.
 *
 * Records go into messages in shard order.  A store with a body limit (SQS:
 * 256 KiB) gets as many records per message as fit, and a record too large
 * for a message on its own goes without "data", with "truncated": true and
 * "dataLength"; a store without one (the directory) gets the whole range in
 * one message, data always included.
 *
 * kcld_dlq_send() does not give up: messages a store did not keep are
 * stored again after a capped backoff, until every one is kept or the send
 * is cancelled.  So a caller that moves its checkpoint only in the callback
 * never skips a record that is not kept.
 *
 * Loop thread only. */
#ifndef KCLD_PROCESS_DLQ_H
#define KCLD_PROCESS_DLQ_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "consume/record.h"
#include "process/policy.h"

/* ======== The store contract ======== */

/* One message as a store sees it. */
struct kcld_dlq_msg {
  const char *body;            /* the on-failure record, JSON, one line */
  size_t len;
  const char *head;            /* with the store's wants_head: the same
                                  record without "records" (same requestId
                                  and timestamp); else NULL */
  size_t head_len;
  const char *shard_id;
  const char *start_sequence;  /* of its first record */
  const char *error_class;     /* the handler's error type, or "Unhandled" */
  size_t records;
  int stored;                  /* set to 1 by the store once kept */
};

/* Ends one store call: err 0 when every message given is kept; else the
 * reason (detail for the log, may be NULL), and `stored` tells which were. */
typedef void (*kcld_dlq_store_cb)(int err, const char *detail, void *arg);

struct kcld_dlq_store;

struct kcld_dlq_store_ops {
  const char *name;            /* "sqs", "dir" */
  /* Keeps msgs[0..n-1] (n >= 1, all of one shard, in shard order).  Calls
   * cb exactly once, on the loop thread and never before returning, and
   * returns 0; or returns a negative KCLD_E* code and never calls cb.
   * The messages live until cb. */
  int (*store)(struct kcld_dlq_store *s, struct kcld_dlq_msg *const *msgs,
               size_t n, kcld_dlq_store_cb cb, void *arg);
  /* Frees the store; called once no store call is in flight. */
  void (*free)(struct kcld_dlq_store *s);
};

struct kcld_dlq_store {
  const struct kcld_dlq_store_ops *ops;
  size_t body_limit;           /* largest body; 0 = none (whole ranges) */
  int wants_head;              /* messages come with their head (a store
                                  that keeps the records apart) */
  const char *where;           /* queue URL or directory, for logs */
};

/* ======== The destination ======== */

struct kcld_dlq;
struct kcld_dlq_send;

struct kcld_dlq_opts {
  uv_loop_t *loop;
  struct kcld_dlq_store *store; /* taken: kcld_dlq_close frees it, and
                                   kcld_dlq_new on failure */
  const char *function_arn;    /* requestContext.functionArn (copied) */
  const char *stream_arn;      /* KinesisBatchInfo.streamArn (copied; may
                                  be "") */
  int include_records;         /* 0: metadata only (Lambda's body) */
  uint64_t backoff_base_ms;    /* first resend delay, > 0 */
  uint64_t backoff_max_ms;     /* >= backoff_base_ms */
};

/* What failed: records[0..count-1] of one shard, in shard order. */
struct kcld_dlq_failure {
  const char *shard_id;
  const struct kcld_record *const *records;
  size_t count;                /* >= 1 */
  enum kcld_policy_condition condition;
  unsigned invoke_count;       /* handler calls these records were in */
  const char *error_type;      /* may be NULL */
  const char *error_message;   /* may be NULL */
};

/* Returns 0 and *out, or KCLD_EINVAL (missing loop, store or function ARN;
 * a backoff of 0) or KCLD_ENOMEM; on error the store is freed. */
int kcld_dlq_new(const struct kcld_dlq_opts *opts, struct kcld_dlq **out);

/* Takes new values of the settings that may change while kcld runs (a
 * configuration reload) from opts: include_records and the resend backoff,
 * for the messages built and the resends scheduled from now on.  The other
 * members are ignored.  Returns 0, or KCLD_EINVAL (a backoff
 * kcld_dlq_new refuses) and nothing changed. */
int kcld_dlq_configure(struct kcld_dlq *q, const struct kcld_dlq_opts *opts);

/* Builds the message bodies for `f` at wall-clock time now_ms, split by the
 * store's body limit: *bodies gets *n malloc'd strings (free each, then the
 * array).  Returns 0, KCLD_EINVAL or KCLD_ENOMEM.  For tests and for
 * kcld_dlq_send. */
int kcld_dlq_build(const struct kcld_dlq *q, const struct kcld_dlq_failure *f,
                   int64_t now_ms, char ***bodies, size_t *n);

/* Called once every message of the send is kept.  Never called for a
 * cancelled send. */
typedef void (*kcld_dlq_cb)(size_t messages, void *arg);

/* Builds the messages for `f` (nothing of f is used after return) and
 * stores them, again and again for the ones not kept, until all are.  cb
 * never runs before this returns.  Returns 0 and *out (the handle for
 * kcld_dlq_send_cancel and kcld_dlq_send_failing; NULL allowed when not
 * wanted), or KCLD_EINVAL / KCLD_ENOMEM / KCLD_ECANCELED (closing) and
 * never calls cb. */
int kcld_dlq_send(struct kcld_dlq *q, const struct kcld_dlq_failure *f,
                  kcld_dlq_cb cb, void *arg, struct kcld_dlq_send **out);

/* Stops a send whose callback has not run: cb never runs; memory goes once
 * the store call in flight has answered. */
void kcld_dlq_send_cancel(struct kcld_dlq_send *s);

/* Store calls of this send that failed in a row (0 while none has, or once
 * one succeeded): the destination is unavailable.  *since_ms gets the loop
 * time of the first of them, *error its reason (valid until the next loop
 * iteration); either may be NULL. */
unsigned kcld_dlq_send_failing(const struct kcld_dlq_send *s,
                               uint64_t *since_ms, const char **error);

/* Number of sends not yet finished or cancelled. */
size_t kcld_dlq_pending(const struct kcld_dlq *q);

/* Where the store keeps messages (queue URL or directory), for logs. */
const char *kcld_dlq_where(const struct kcld_dlq *q);

/* Cancels every send and frees the dlq and its store once their store
 * calls have answered: close the SQS client afterwards (it cancels calls in
 * flight), then run the loop.  NULL is ignored. */
void kcld_dlq_close(struct kcld_dlq *q);

#endif
