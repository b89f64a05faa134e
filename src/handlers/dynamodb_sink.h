/* dynamodb_sink.h — handler.type: dynamodb.  Writes every record as one
 * DynamoDB item into handler.table, with no user code.
 *
 * The item: the JSON payload's members as attributes (ddb_item.h: numbers
 * keep their decimal text; a payload that is not an object goes under
 * "data"), then the metadata, which wins over a payload member of the same
 * name:
 *
 *   pk                          handler.key.pk rendered (S)
 *   sk                          handler.key.sk rendered (S); absent when
 *                               handler.key.sk is ""
 *   sequenceNumber              S
 *   subSequenceNumber           N (0 unless the record came from a KPL
 *                               aggregate)
 *   shardId                     S
 *   approximateArrivalTimestamp N, epoch milliseconds (absent if unknown)
 *   processedAt                 N, epoch milliseconds
 *   ttl                         N, epoch seconds = processedAt + handler.ttl
 *                               (only when handler.ttl is set)
 *
 * So the table's key schema is pk (HASH, S) and, with a sort key, sk
 * (RANGE, S).
 *
 * Writes (handler.write):
 *   batch        BatchWriteItem, 25 items a call (a chunk never holds one
 *                key twice: a later record with the same key goes in the
 *                next call, so the last record wins), UnprocessedItems
 *                retried with backoff by kcld_dynamodb_batch_write.  A
 *                redelivered record rewrites the same item: idempotent.
 *                A call refused whole (ValidationException) is redone
 *                item by item with PutItem, to find the record at fault.
 *   conditional  PutItem with attribute_not_exists(pk), up to 16 at a time.
 *                An item that is already there is a duplicate (counted),
 *                not an error: the first writer wins.  A record whose key
 *                an earlier record of the same batch already has is counted
 *                as a duplicate without a call.
 *
 * Results (handler.h): a record that is not valid JSON, lacks a key field
 * (or renders an empty or over-long key), or makes an item over 400 KB is a
 * record failure (KCLD_HANDLER_RECORD): the records before it are written
 * and the batch ends PARTIAL with first_failed at it (error_type
 * InvalidJSON, MissingKeyField or ItemTooLarge), so the engine's policy
 * retries, bisects and finally dead-letters it.  A write
 * that fails after the AWS client's retries ends PARTIAL at the first
 * record not known written, or FAILED when that is the first one
 * (error_type: the AWS error type), with the class of
 * kcld_dynamodb_sink_class: a record failure only when DynamoDB refused
 * the item for its content.  kill closes the client: every call in flight
 * ends at once (HandlerCanceled, infrastructure).
 *
 * Threads: items are built on the worker pool (uv_queue_work): parsing and
 * mapping up to batch.size payloads of up to 1 MB each is CPU work the
 * loop must not do.  The writes then go through the loop's AWS client
 * (env->aws) on the loop thread.  The program must have called
 * json_object_seed() on the main thread before (main.c does). */
#ifndef KCLD_HANDLERS_DYNAMODB_SINK_H
#define KCLD_HANDLERS_DYNAMODB_SINK_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "handlers/handler.h"
#include "handlers/template.h"

struct kcld_svc_status;

#define KCLD_DYNAMODB_SINK_PK "pk"
#define KCLD_DYNAMODB_SINK_SK "sk"
#define KCLD_DYNAMODB_SINK_PK_MAX 2048   /* bytes, DynamoDB's limit */
#define KCLD_DYNAMODB_SINK_SK_MAX 1024

/* Counters, for metrics.  Only ever increase. */
struct kcld_dynamodb_sink_stats {
  uint64_t items_written;    /* items DynamoDB accepted */
  uint64_t duplicates;       /* conditional: items that were already there */
  uint64_t record_failures;  /* records refused (each time they are tried) */
  uint64_t write_failures;   /* batches ended by a failed AWS call */
  uint64_t calls;            /* BatchWriteItem and PutItem calls started */
};

/* Compiles handler.key.pk and handler.key.sk (an error names the template
 * and is logged) and opens a DynamoDB client over env->aws.  Returns 0,
 * KCLD_ECONFIG (a bad template, no table, no AWS client) or KCLD_ENOMEM. */
int kcld_dynamodb_sink_new(const struct kcld_handler_env *env,
                           struct kcld_handler **out);

/* Copies the counters of `h`, which must come from kcld_dynamodb_sink_new.
 * Loop thread. */
void kcld_dynamodb_sink_stats(const struct kcld_handler *h,
                              struct kcld_dynamodb_sink_stats *out);

/* The class of a failed write (st->err != 0): KCLD_HANDLER_RECORD when
 * DynamoDB refused the item for its content (ValidationException,
 * SerializationException: kcld_dynamodb_fault() == KCLD_DYNAMODB_INVALID),
 * else KCLD_HANDLER_INFRA (throttling, 5xx, transport errors and timeouts,
 * items still unprocessed after the retries, a missing table, credentials
 * or access refused, a cancelled call).  Pure. */
enum kcld_handler_failure_class
kcld_dynamodb_sink_class(const struct kcld_svc_status *st);

/* How items are keyed. */
struct kcld_dynamodb_sink_keys {
  const struct kcld_template *pk;
  const struct kcld_template *sk;  /* NULL: no sort key */
  int64_t ttl_ms;                  /* 0: no ttl attribute */
};

/* Builds the item for `rec` of shard `shard_id`, processed at now_ms (epoch
 * ms), into *item (a new reference: name -> AttributeValue).  Returns 0, or
 * with the reason in err (errlen bytes; may be NULL/0) and *item NULL:
 *   KCLD_EPARSE     the payload is not JSON DynamoDB can hold (ddb_item.h);
 *   KCLD_ENOTFOUND  a key template's field is missing, or a key renders ""
 *                   or longer than DynamoDB allows;
 *   KCLD_EINVAL     the item is over KCLD_DDB_ITEM_MAX_BYTES;
 *   KCLD_ENOMEM.
 * Pure; any thread. */
int kcld_dynamodb_sink_item(const struct kcld_dynamodb_sink_keys *keys,
                            const char *shard_id,
                            const struct kcld_record *rec, int64_t now_ms,
                            json_t **item, char *err, size_t errlen);

#endif
