/* redrive_line.h — one on-failure record read back (a dead-letter SQS
 * message body or a line of a dead-letter file, process/dlq.h): its
 * records, the stream and shard they came from.  Shared by both redrive
 * paths. */
#ifndef KCLD_CMD_REDRIVE_LINE_H
#define KCLD_CMD_REDRIVE_LINE_H

#include <stddef.h>
#include <stdint.h>

#include "aws/kinesis.h"
#include "consume/record.h"

struct kcld_redrive_rec {
  const uint8_t *data;         /* into the batch */
  size_t len;
  const char *key;             /* partition key, into the batch */
  int put;                     /* for the caller: accepted by PutRecords */
};

struct kcld_redrive_line {
  struct kcld_record_batch *batch; /* the records, with their sequence and
                                      sub-sequence numbers and arrival */
  struct kcld_redrive_rec *recs;   /* parallel to batch->records */
  size_t count;                    /* >= 1 */
  char *stream;                /* KinesisBatchInfo.streamArn, or NULL */
  char *shard_id;              /* KinesisBatchInfo.shardId ("" if none) */
};

/* Reads `body`.  Returns 0 and *out (free with kcld_redrive_line_free), or
 * -1 with *why saying why the records cannot be replayed (not an
 * on-failure record, no records, a record without its data, bad base64,
 * out of memory) and *out empty. */
int kcld_redrive_line_parse(const char *body, struct kcld_redrive_line *out,
                            const char **why);

/* The next PutRecords call of l's records not yet put, looking from
 * record `at`: at most KCLD_KINESIS_PUT_MAX_RECORDS records and 5 MiB of
 * data and keys (a larger record goes alone) into kr, *n of them, in
 * order.  Returns the index after the last record looked at: the call's
 * end, for kcld_redrive_line_mark. */
size_t kcld_redrive_line_chunk(const struct kcld_redrive_line *l, size_t at,
                               struct kcld_kinesis_record *kr, size_t *n);

/* Sets `put` on the records of [at, end) not yet put that `res` (the
 * answer to the call kcld_redrive_line_chunk made) accepted; returns how
 * many.  A failed call (res->st.err) accepted none. */
size_t kcld_redrive_line_mark(struct kcld_redrive_line *l, size_t at,
                              size_t end,
                              const struct kcld_kinesis_put_result *res);

/* Frees what parse filled in and empties *l.  An empty *l is fine. */
void kcld_redrive_line_free(struct kcld_redrive_line *l);

#endif
