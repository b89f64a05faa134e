/* dlq_s3.h — the S3 store of the failure destination (on_failure.s3), and
 * the SQS store that moves large messages to S3 (on_failure.sqs together
 * with on_failure.s3).
 *
 * S3 alone: each message is one object, its body the whole on-failure
 * record (every record with its data; no body limit, so a given-up range
 * is one message), keyed as Lambda keys its S3 destination's objects:
 *
 *   <prefix>aws/kinesis/<application>/<shardId>/YYYY/MM/DD/
 *     YYYY-MM-DDTHH.MM.SS-<requestId>
 *
 * the time and the requestId those of the message (its "timestamp" and
 * requestContext.requestId), so a message stored again after a lost answer
 * overwrites its own object.  A message is kept once PutObject succeeded.
 *
 * SQS with S3: a message that fits in an SQS message goes to the queue as
 * it is; a larger one goes to S3 as above, then the queue gets the same
 * on-failure record without "records" and with
 *   "s3Object": {"bucket": B, "key": K, "size": bytes}
 * naming the object (kcld redrive --queue follows it).  It is kept once
 * both are.
 *
 * Loop thread only. */
#ifndef KCLD_PROCESS_DLQ_S3_H
#define KCLD_PROCESS_DLQ_S3_H

#include <stddef.h>

#include "aws/s3.h"
#include "process/dlq.h"

/* A store writing to `location` ("s3://BUCKET[/PREFIX]") through `s3`
 * (borrowed: it outlives the store; closing it cancels the calls in
 * flight), with `application` in the keys.  Returns 0 and *out, or
 * KCLD_EINVAL (a bad location: the reason in *why, a constant, when why is
 * not NULL) / KCLD_ENOMEM. */
int kcld_dlq_s3_new(struct kcld_s3 *s3, const char *location,
                    const char *application, struct kcld_dlq_store **out,
                    const char **why);

/* A store over `sqs` (a store of process/dlq_sqs.h) and `s3` (one of
 * kcld_dlq_s3_new), both taken (freed with it, and on failure): messages
 * larger than sqs->body_limit go to S3 and the queue gets their location.
 * Returns 0 and *out, or KCLD_EINVAL / KCLD_ENOMEM. */
int kcld_dlq_s3_offload_new(struct kcld_dlq_store *sqs,
                            struct kcld_dlq_store *s3,
                            struct kcld_dlq_store **out);

/* The key of the object for a message: `body` an on-failure record of
 * process/dlq.h, `prefix` "" or ending in '/'.  Writes it NUL-terminated to
 * buf; returns 0, or KCLD_EINVAL (no timestamp or requestId in the body, or
 * it does not fit). */
int kcld_dlq_s3_key(char *buf, size_t n, const char *prefix,
                    const char *application, const char *shard_id,
                    const char *body, size_t len);

#endif
