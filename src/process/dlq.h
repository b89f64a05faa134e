/* dlq.h — the SQS dead-letter destination (on_failure.sqs).
 *
 * A range of records the failure policy gave up on becomes one or more SQS
 * messages.  Each body is the Lambda on-failure record (requestContext,
 * responseContext, version, timestamp, KinesisBatchInfo), so existing DLQ
 * tooling reads it unchanged, plus what Lambda leaves out:
 *
 *   "records": [{"partitionKey", "sequenceNumber", "subSequenceNumber",
 *                "approximateArrivalTimestamp" (epoch seconds, as Kinesis
 *                events carry it), "data" (base64)}, ...]
 *   "errorType", "errorMessage": the handler's last answer.
 *
 * Records go into messages in shard order, as many per message as fit in
 * 256 KiB; a record too large for a message on its own is sent without
 * "data" and with "truncated": true.  Message attributes: shardId,
 * startSequenceNumber (both String) and errorClass (the error type).
 *
 * kcld_dlq_send() does not give up: entries SQS did not take are sent again
 * after a capped backoff, until every message is acknowledged or the send is
 * cancelled.  So a caller that moves its checkpoint only in the callback
 * never skips an unsent record.
 *
 * Loop thread only. */
#ifndef KCLD_PROCESS_DLQ_H
#define KCLD_PROCESS_DLQ_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "aws/sqs.h"
#include "consume/record.h"
#include "process/policy.h"

struct kcld_dlq;
struct kcld_dlq_send;

struct kcld_dlq_opts {
  uv_loop_t *loop;
  struct kcld_sqs *sqs;        /* borrowed; outlives the dlq */
  const char *queue_url;       /* copied */
  const char *function_arn;    /* requestContext.functionArn: the kcld
                                  identity (copied) */
  const char *stream_arn;      /* KinesisBatchInfo.streamArn (copied; may
                                  be "") */
  int include_records;         /* 0: metadata only (Lambda's body) */
  uint64_t backoff_base_ms;    /* resend delay; 0 = 200 */
  uint64_t backoff_max_ms;     /* 0 = 10000 */
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

/* Returns 0 and *out, KCLD_EINVAL (missing loop, sqs or queue URL) or
 * KCLD_ENOMEM. */
int kcld_dlq_new(const struct kcld_dlq_opts *opts, struct kcld_dlq **out);

/* Builds the message bodies for `f` at wall-clock time now_ms: *bodies
 * gets *n malloc'd strings (free each, then the array).  Returns 0,
 * KCLD_EINVAL or KCLD_ENOMEM.  For tests and for kcld_dlq_send. */
int kcld_dlq_build(const struct kcld_dlq *q, const struct kcld_dlq_failure *f,
                   int64_t now_ms, char ***bodies, size_t *n);

/* Called once every message of the send is acknowledged (err 0).  Never
 * called for a cancelled send. */
typedef void (*kcld_dlq_cb)(int err, size_t messages, void *arg);

/* Builds the messages for `f` (nothing of f is used after return) and sends
 * them, again and again for the entries not taken, until all are in.
 * Returns 0 and *out (the handle for kcld_dlq_send_cancel; may be NULL when
 * not wanted), or KCLD_EINVAL / KCLD_ENOMEM and never calls cb. */
int kcld_dlq_send(struct kcld_dlq *q, const struct kcld_dlq_failure *f,
                  kcld_dlq_cb cb, void *arg, struct kcld_dlq_send **out);

/* Stops a send whose callback has not run: cb never runs; memory goes once
 * the call in flight has answered. */
void kcld_dlq_send_cancel(struct kcld_dlq_send *s);

/* Number of sends not yet finished or freed. */
size_t kcld_dlq_pending(const struct kcld_dlq *q);

/* Cancels every send and frees the dlq once their memory is gone: close the
 * SQS client afterwards (it cancels calls in flight), then run the loop.
 * NULL is ignored. */
void kcld_dlq_close(struct kcld_dlq *q);

#endif
