/* redrive_line.h — one on-failure record read back (a dead-letter SQS
 * message body or a line of a dead-letter file, process/dlq.h): its
 * records, the stream and shard they came from.  Shared by both redrive
 * paths. */
#ifndef KCLD_CMD_REDRIVE_LINE_H
#define KCLD_CMD_REDRIVE_LINE_H

#include <stddef.h>
#include <stdint.h>

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

/* Frees what parse filled in and empties *l.  An empty *l is fine. */
void kcld_redrive_line_free(struct kcld_redrive_line *l);

#endif
