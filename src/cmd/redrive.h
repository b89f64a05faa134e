/* redrive.h — `kcld redrive`: puts dead-lettered records back into a
 * stream.
 *
 *   kcld redrive [--queue URL | --s3 s3://BUCKET[/PREFIX] | --dir PATH]
 *                [--stream NAME | --to-handler] [--config PATH]
 *                [--max-messages N] [--dry-run]
 *
 * Without --queue, --s3 or --dir, the configuration's on_failure.sqs, else
 * its on_failure.s3, else its on_failure.dir (--s3: cmd/redrive_s3.h;
 * --dir: cmd/redrive_dir.h).  A dry run reads the messages (and the S3
 * objects they name), puts nothing, deletes nothing, and at the end makes
 * every message it read visible again.
 *
 * Reads the dead-letter queue that on_failure.sqs filled (process/dlq.h),
 * puts each message's records back with PutRecords (same partition key and
 * data; they get new sequence numbers) and deletes a message only once
 * every record of it was accepted.  A message whose records are missing,
 * "truncated" or unreadable stays in the queue (a warning names it); it
 * comes back after its visibility timeout.  Stops when the queue answers
 * empty or after --max-messages.  Without --stream, records go back to
 * the stream their message names (KinesisBatchInfo.streamArn, set when the
 * daemon's `stream` was an ARN), else to the config's stream.  Endpoints,
 * region and credentials come from the config (or, without one, the
 * environment).  A message that names an S3 object instead of carrying
 * its records ("s3Object": on_failure.sqs with on_failure.s3, for ranges
 * too large for SQS) is replayed from that object (GetObject), which is
 * deleted before the message; when the object is gone the message stays.
 * Records go back at most 500 and 5 MiB a call (a larger record alone).
 * Exit status: 0 every message seen was re-driven, 1 some stayed or a call
 * failed, 2 usage. */
#ifndef KCLD_CMD_REDRIVE_H
#define KCLD_CMD_REDRIVE_H

#include <stddef.h>
#include <uv.h>

#include "aws/kinesis.h"
#include "aws/s3.h"
#include "aws/sqs.h"

struct kcld_redrive_result;

struct kcld_redrive_opts {
  uv_loop_t *loop;
  struct kcld_sqs *sqs;          /* borrowed */
  struct kcld_kinesis *kinesis;  /* borrowed */
  struct kcld_s3 *s3;            /* borrowed; NULL: messages naming an S3
                                    object stay in the queue */
  const char *queue_url;
  const char *stream;            /* name or ARN; with stream_from_message
                                    only for messages that name none */
  int stream_from_message;       /* 1: a message's KinesisBatchInfo
                                    streamArn, when set, wins */
  size_t max_messages;           /* 0 = until the queue is empty */
  int visibility_timeout;        /* seconds; 0 = 60 */
  int dry_run;                   /* 1: put nothing, delete nothing; count
                                    the messages and records a redrive
                                    would put back (messages, records) and
                                    the messages it would leave (kept);
                                    then make the messages read visible
                                    again (ChangeMessageVisibility 0) */
  /* Called after each message put back or left (may be NULL), with the
   * totals so far and the callback's arg. */
  void (*progress)(const struct kcld_redrive_result *sofar, void *arg);
};

struct kcld_redrive_result {
  int err;                       /* 0, or the first failed call's code */
  size_t messages;               /* re-driven and deleted */
  size_t records;                /* put back */
  size_t kept;                   /* left in the queue */
};

typedef void (*kcld_redrive_cb)(const struct kcld_redrive_result *res,
                                void *arg);

/* Runs the redrive on opts->loop; cb runs once at the end.  Returns 0, or
 * KCLD_EINVAL / KCLD_ENOMEM and never calls cb. */
int kcld_redrive_run(const struct kcld_redrive_opts *opts, kcld_redrive_cb cb,
                     void *arg);

/* The subcommand: argv from "redrive" on.  Returns the exit status. */
int kcld_redrive_command(int argc, char **argv);

#endif
