/* redrive_line.h — one on-failure record read back (a dead-letter SQS
 * message body or a line of a dead-letter file, process/dlq.h): its
 * records, the stream and shard they came from.  Shared by both redrive
 * paths. */
#ifndef KCLD_CMD_REDRIVE_LINE_H
#define KCLD_CMD_REDRIVE_LINE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

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
  size_t put_at;               /* records before it are put (0 after
                                  parse; kcld_redrive_line_took moves it) */
  size_t put_end;              /* the end of the PutRecords call out */
};

/* Reads `body`.  Returns 0 and *out (free with kcld_redrive_line_free), or
 * -1 with *why saying why the records cannot be replayed (not an
 * on-failure record, no records, a record without its data, bad base64,
 * out of memory) and *out empty. */
int kcld_redrive_line_parse(const char *body, struct kcld_redrive_line *out,
                            const char **why);

/* The same for a body already parsed (doc may be NULL: not JSON); doc is
 * only read. */
int kcld_redrive_line_read(const json_t *doc, struct kcld_redrive_line *out,
                           const char **why);

/* Where l's records go: its streamArn when from_message and it names one,
 * else `stream`. */
const char *kcld_redrive_line_target(const struct kcld_redrive_line *l,
                                     const char *stream, int from_message);

/* Sends the next PutRecords call of l's records not yet put, from
 * l->put_at: at most KCLD_KINESIS_PUT_MAX_RECORDS records and 5 MiB of
 * data and keys, a record over 1 MiB (up to 10 MiB) alone, as
 * kcld_kinesis_put_records takes them; same partition keys and data, into
 * `stream`; sets l->put_end.  Returns kcld_kinesis_put_records'
 * result (cb runs later when 0). */
int kcld_redrive_line_put(struct kcld_redrive_line *l, struct kcld_kinesis *k,
                          const char *stream, kcld_kinesis_put_cb cb,
                          void *arg);

/* With the answer to that call: sets `put` on the records it accepted,
 * moves l->put_at past every record put, and returns how many it took (0
 * for a failed call).  Every record is put once l->put_at == l->count; the
 * call took all it carried when l->put_at >= l->put_end. */
size_t kcld_redrive_line_took(struct kcld_redrive_line *l,
                              const struct kcld_kinesis_put_result *res);

/* Frees what parse filled in and empties *l.  An empty *l is fine. */
void kcld_redrive_line_free(struct kcld_redrive_line *l);

#endif
