/* sqs.h — SQS calls (JSON protocol, "AmazonSQS.<Op>") on the shared AWS
 * client: the dead-letter queue's SendMessageBatch, and what tests and
 * redrive need.
 *
 * A queue URL travels in the request body only.  Requests always go to the
 * configured SQS endpoint, never to the host in the URL (LocalStack and
 * fauxqs hand out URLs whose host does not resolve).
 *
 * Thin and asynchronous: each call builds its request, sends it through
 * kcld_aws_call (signing, the standard retries), maps the answer and calls
 * the caller's callback exactly once, on the loop thread.  A result and
 * every pointer in it are valid only during the callback.  QueueDoesNotExist
 * is KCLD_ENOTFOUND; other service errors KCLD_EAWS with st.type set.
 *
 * Every call returns 0 and later calls its callback, or returns a negative
 * KCLD_E* code (KCLD_EINVAL for a bad argument, logged with the reason;
 * KCLD_ECANCELED after close; KCLD_ENOMEM) and never calls it.
 *
 * Loop thread only. */
#ifndef KCLD_AWS_SQS_H
#define KCLD_AWS_SQS_H

#include <jansson.h>
#include <stddef.h>
#include <uv.h>

#include "aws/call.h"
#include "aws/svc.h"

struct kcld_sqs;

/* Creates an SQS client over `aws` (borrowed; it must outlive this client).
 * Returns 0, KCLD_EINVAL or KCLD_ENOMEM. */
int kcld_sqs_new(struct kcld_aws *aws, uv_loop_t *loop, struct kcld_sqs **out);

/* Runs the callback of every pending operation with KCLD_ECANCELED, now,
 * and frees the client; no callback of it runs afterwards.  Run the loop
 * afterwards.  Close this before the AWS client. */
void kcld_sqs_close(struct kcld_sqs *sqs);

typedef void (*kcld_sqs_done_cb)(const struct kcld_svc_status *st, void *arg);

/* ======== Queues ======== */

struct kcld_sqs_queue {
  struct kcld_svc_status st;
  const char *queue_url;   /* NULL on error */
};

typedef void (*kcld_sqs_queue_cb)(const struct kcld_sqs_queue *res,
                                  void *arg);

/* GetQueueUrl; KCLD_ENOTFOUND when there is no such queue. */
int kcld_sqs_get_queue_url(struct kcld_sqs *sqs, const char *queue_name,
                           kcld_sqs_queue_cb cb, void *arg);

/* CreateQueue with `attributes` ({"VisibilityTimeout": "30", ...}, string
 * values; borrowed; NULL = none).  Idempotent for the same attributes. */
int kcld_sqs_create_queue(struct kcld_sqs *sqs, const char *queue_name,
                          const json_t *attributes, kcld_sqs_queue_cb cb,
                          void *arg);

struct kcld_sqs_attributes {
  struct kcld_svc_status st;
  json_t *attributes;      /* {"ApproximateNumberOfMessages": "3", ...}
                              (borrowed); NULL on error */
};

typedef void (*kcld_sqs_attributes_cb)(const struct kcld_sqs_attributes *res,
                                       void *arg);

/* GetQueueAttributes for the NULL-terminated `names` (NULL = "All"). */
int kcld_sqs_get_queue_attributes(struct kcld_sqs *sqs, const char *queue_url,
                                  const char *const *names,
                                  kcld_sqs_attributes_cb cb, void *arg);

/* ======== SendMessageBatch ======== */

#define KCLD_SQS_BATCH_MAX 10
#define KCLD_SQS_MESSAGE_MAX 262144 /* bytes per message and per call */
/* Code of an entry the wrapper refused without sending it. */
#define KCLD_SQS_TOO_LARGE "KcldMessageTooLarge"
#define KCLD_SQS_INVALID_CONTENTS "KcldInvalidMessageContents"

struct kcld_sqs_entry {
  const char *id;            /* unique in the call; [A-Za-z0-9_-]{1,80} */
  const char *body;          /* UTF-8 text */
  const json_t *attributes;  /* MessageAttributes as SQS JSON ({"shard":
                                {"DataType": "String", "StringValue":
                                "..."}}); borrowed; NULL = none */
  int delay_seconds;         /* 0..900; 0 = the queue's default */
  const char *group_id;      /* FIFO queues only; else NULL */
  const char *dedup_id;      /* FIFO queues only; else NULL */
};

struct kcld_sqs_entry_result {
  const char *id;
  int ok;                    /* 1: SQS accepted it */
  const char *message_id;    /* when ok */
  const char *code;          /* when not ok: SQS's code, the failed call's
                                error type, or KCLD_SQS_TOO_LARGE /
                                KCLD_SQS_INVALID_CONTENTS (never sent) */
  const char *message;       /* when not ok: detail, or "" */
  int sender_fault;          /* 1: sending it again as it is fails again */
};

struct kcld_sqs_batch_result {
  struct kcld_svc_status st; /* the first failed call, else success; entries
                                are reported either way */
  const struct kcld_sqs_entry_result *entries; /* one per entry, in order */
  size_t count;
  size_t failed;             /* entries with ok == 0 */
  int calls;                 /* SendMessageBatch calls made */
};

typedef void (*kcld_sqs_batch_cb)(const struct kcld_sqs_batch_result *res,
                                  void *arg);

/* Sends `n` entries (copied before return).  An entry over 256 KiB (body
 * plus attribute names, types and values, as SQS counts) or with text SQS
 * refuses is reported failed, sender_fault 1, and not sent.  The rest go
 * in as few calls as the limits allow (at most 10 entries and 256 KiB per
 * call), one after the other; after a failed call the entries not yet
 * sent are reported failed with its error (sender_fault 0) and not sent.
 * The caller retries the failed entries it wants to.  KCLD_EINVAL for no
 * entries, a missing body, a bad or repeated id. */
int kcld_sqs_send_message_batch(struct kcld_sqs *sqs, const char *queue_url,
                                const struct kcld_sqs_entry *entries,
                                size_t n, kcld_sqs_batch_cb cb, void *arg);

/* ======== ReceiveMessage, DeleteMessage (tests and redrive) ======== */

struct kcld_sqs_message {
  const char *message_id;
  const char *receipt_handle;
  const char *body;
  const char *md5_of_body;
  json_t *attributes;          /* system attributes (SentTimestamp, ...)
                                  as given; NULL when absent */
  json_t *message_attributes;  /* MessageAttributes as given; NULL when
                                  absent */
};

struct kcld_sqs_receive_result {
  struct kcld_svc_status st;
  const struct kcld_sqs_message *messages;
  size_t count;                /* 0 when the queue had nothing */
};

typedef void (*kcld_sqs_receive_cb)(const struct kcld_sqs_receive_result *res,
                                    void *arg);

struct kcld_sqs_receive_req {
  const char *queue_url;
  int max_messages;            /* 1..10; 0 = 1 */
  int wait_seconds;            /* long poll 0..20 */
  int visibility_timeout;      /* seconds; -1 = the queue's */
};

/* ReceiveMessage with all system and message attributes. */
int kcld_sqs_receive_message(struct kcld_sqs *sqs,
                             const struct kcld_sqs_receive_req *req,
                             kcld_sqs_receive_cb cb, void *arg);

int kcld_sqs_delete_message(struct kcld_sqs *sqs, const char *queue_url,
                            const char *receipt_handle, kcld_sqs_done_cb cb,
                            void *arg);

/* ChangeMessageVisibility: the received message becomes visible again
 * after `seconds` (0: at once). */
int kcld_sqs_change_visibility(struct kcld_sqs *sqs, const char *queue_url,
                               const char *receipt_handle, int seconds,
                               kcld_sqs_done_cb cb, void *arg);

#endif
