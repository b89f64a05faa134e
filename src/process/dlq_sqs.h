/* dlq_sqs.h — the SQS store of the failure destination (on_failure.sqs):
 * each message goes into the queue with SendMessageBatch, with the message
 * attributes shardId, startSequenceNumber and errorClass (String).  A
 * message is kept once SQS accepted it.  Bodies are limited to what one
 * SQS message takes (process/dlq.h splits ranges to fit).
 *
 * Loop thread only. */
#ifndef KCLD_PROCESS_DLQ_SQS_H
#define KCLD_PROCESS_DLQ_SQS_H

#include "aws/sqs.h"
#include "process/dlq.h"

/* A store that sends to queue_url (copied) through `sqs` (borrowed: it
 * outlives the store; closing it cancels the calls in flight).  Returns 0
 * and *out, or KCLD_EINVAL / KCLD_ENOMEM. */
int kcld_dlq_sqs_new(struct kcld_sqs *sqs, const char *queue_url,
                     struct kcld_dlq_store **out);

#endif
