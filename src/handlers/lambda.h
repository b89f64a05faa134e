/* lambda.h — the lambda handler: functions written for AWS Lambda's Kinesis
 * event source run unchanged behind a few-line stdin/stdout adapter.
 *
 * handler.concurrency persistent children run handler.command.  Each batch
 * is one JSON line on a free child's stdin, exactly the event Lambda passes:
 *
 *   {"Records":[{"kinesis":{"kinesisSchemaVersion":"1.0",
 *     "partitionKey":"k","sequenceNumber":"496...","data":"aGk=",
 *     "approximateArrivalTimestamp":1700000000.123},
 *     "eventSource":"aws:kinesis","eventVersion":"1.0",
 *     "eventID":"shardId-000000000000:496...",
 *     "eventName":"aws:kinesis:record","invokeIdentityArn":"",
 *     "awsRegion":"us-east-1","eventSourceARN":"arn:aws:kinesis:..."}]}
 *
 * With window.tumbling the event also carries Lambda's window members
 * (KinesisTimeWindowEvent): "window":{"start":"2020-12-09T07:04:00Z",
 * "end":"..."}, "state":{...}, "shardId", "eventSourceARN",
 * "isFinalInvokeForWindow", "isWindowTerminatedEarly"; a window's final
 * call has "Records":[].
 *
 * and the child answers one JSON line on stdout (see
 * kcld_lambda_answer_parse).  Any child serves any shard; a batch waits on
 * the loop for a free child.  A child that exits, prints a line that is not
 * a protocol answer, or outlives handler.timeout on a batch fails that batch
 * and is restarted with backoff (100 ms doubling to 30 s, reset by a good
 * answer).  The child's stderr goes to kcld's log, a line at a time.
 * Children inherit kcld's environment plus KCLD_HANDLER_TIMEOUT_MS
 * (handler.timeout), for the adapter's context object. */
#ifndef KCLD_HANDLERS_LAMBDA_H
#define KCLD_HANDLERS_LAMBDA_H

#include <stddef.h>
#include <stdint.h>

#include "handlers/handler.h"

/* Starts handler.concurrency children of handler.command.  Returns 0 and
 * *out, or KCLD_ECONFIG when the command cannot be run (logged with the
 * command and the reason), or KCLD_ENOMEM. */
int kcld_handler_lambda_new(const struct kcld_handler_env *env,
                            struct kcld_handler **out);

struct kcld_lambda_stats {
  uint64_t spawned;    /* children started, restarts included */
  uint64_t crashed;    /* children that exited while serving or idle */
  uint64_t garbage;    /* lines that were not protocol answers */
  uint64_t timeouts;   /* batches that outlived handler.timeout */
};

/* Counters of a handler made by kcld_handler_lambda_new. */
void kcld_handler_lambda_stats(const struct kcld_handler *h,
                               struct kcld_lambda_stats *out);

/* ======== The protocol, exported for tests ======== */

/* The Kinesis event for batch b as one JSON line ending in "\n" (malloc'd,
 * NUL-terminated; *len without the NUL).  data is base64; the arrival time
 * is epoch seconds with a millisecond fraction (omitted when unknown);
 * eventSourceARN is stream_arn.  Any thread.  Returns NULL when out of
 * memory. */
char *kcld_lambda_event_build(const struct kcld_handler_batch *b,
                              const char *region, const char *stream_arn,
                              size_t *len);

#define KCLD_LAMBDA_TYPE_MAX 64
#define KCLD_LAMBDA_MESSAGE_MAX 512

struct kcld_lambda_answer {
  enum kcld_handler_status status;
  size_t first_failed;                         /* PARTIAL */
  char error_type[KCLD_LAMBDA_TYPE_MAX];       /* "" with OK */
  char error_message[KCLD_LAMBDA_MESSAGE_MAX]; /* may be "" */
  char *state;            /* with a window, not FAILED: the answer's state
                             as compact JSON (malloc'd); else NULL */
  size_t state_len;
};

/* Reads one answer line (without its newline) to batch b:
 *   null, {}, an object with neither batchItemFailures nor errorMessage/
 *   errorType, or batchItemFailures null or []      -> OK;
 *   {"batchItemFailures":[{"itemIdentifier":"<seq>"},...]} -> PARTIAL at the
 *     lowest index whose sequence number is reported (the first record of
 *     that sequence number: KPL sub-records share it);
 *   batchItemFailures of any other form: not an array, an item that is not
 *     an object, an itemIdentifier missing, null, empty, not a string, or
 *     not a sequence number of the batch -> FAILED, error type
 *     "InvalidBatchItemFailures" (the whole batch fails, as in Lambda);
 *   {"errorMessage":...,"errorType":...} (either one) -> FAILED with them
 *     (type "HandlerError" when errorType is absent).
 * With a window (b->window), an answer that is not FAILED must carry
 * "state", a JSON object (Lambda's TimeWindowEventResponse), else it is
 * FAILED, "MissingState" or "InvalidState" (Lambda counts it a failed
 * invocation); the state goes to out->state.
 * Returns 0 with *out filled (free it with kcld_lambda_answer_clean_up),
 * KCLD_ENOMEM, or KCLD_EPARSE when the line is not JSON or is JSON of
 * another kind (a string, number, boolean or array): a garbage answer. */
int kcld_lambda_answer_parse(const char *line, size_t len,
                             const struct kcld_handler_batch *b,
                             struct kcld_lambda_answer *out);

/* Frees what kcld_lambda_answer_parse put in *a (its state). */
void kcld_lambda_answer_clean_up(struct kcld_lambda_answer *a);

#endif
