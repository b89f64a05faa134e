/* redrive_s3.h — `kcld redrive --s3 s3://BUCKET[/PREFIX]`: the dead-letter
 * objects of on_failure.s3 (process/dlq_s3.h) replayed into the stream.
 *
 * The objects under PREFIX/aws/kinesis/ (every application and shard) are
 * listed in key order, a page at a time, and each is replayed in turn:
 * GetObject; its records, read with the shared parser (redrive_line.h), go
 * back with PutRecords (same partition key and data, new sequence numbers;
 * at most 500 records and 5 MiB per call, a larger record alone; records
 * PutRecords does not take are put again); then DeleteObject.
 *
 * A failed call is tried again after a backoff, `attempts` times in all;
 * then the redrive stops and the object being replayed stays (an object
 * whose head was put is put whole again next time: at least once).  An
 * object that cannot be replayed (no records: on_failure.include_records
 * was off; not an on-failure record; no stream) stays, with a warning, and
 * the redrive goes on.
 *
 * A dry run (how.dry_run) puts and deletes nothing: it lists and reads each
 * object and counts the objects and records a redrive would replay
 * (objects, records) and the objects it would leave (kept): struct
 * kcld_redrive_totals.
 *
 * Loop thread only. */
#ifndef KCLD_CMD_REDRIVE_S3_H
#define KCLD_CMD_REDRIVE_S3_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "aws/kinesis.h"
#include "aws/s3.h"
#include "cmd/redrive_cmd.h"
#include "config.h"

struct kcld_redrive_s3_opts {
  uv_loop_t *loop;
  struct kcld_s3 *s3;               /* borrowed */
  struct kcld_kinesis *kinesis;     /* borrowed; NULL for a dry run */
  const char *location;             /* s3://BUCKET[/PREFIX] */
  struct kcld_redrive_how how;      /* the stream, tries, dry run (see
                                       above), progress: objects */
};

/* Runs the redrive on opts->loop; cb runs once at the end, never before
 * this returns.  Returns 0, or KCLD_EINVAL (a bad location: logged) /
 * KCLD_ENOMEM and never calls cb. */
int kcld_redrive_s3_run(const struct kcld_redrive_s3_opts *opts,
                        kcld_redrive_totals_cb cb, void *arg);

/* `kcld redrive --s3`: replays `location` with cfg's endpoints, region and
 * credentials into `stream` (NULL: each object's streamArn, else cfg's
 * stream), retry.backoff_* between tries; with dry_run, counts only.  A
 * progress line on stderr when it is a terminal.  Prints one JSON summary
 * line ({"objects","records","kept","dry_run","error"}) to stdout.  Returns
 * the exit status: 0 when every object was (or would be) replayed, 1
 * otherwise. */
int kcld_redrive_s3_command(const struct kcld_config *cfg,
                            const char *location, const char *stream,
                            int dry_run);

#endif
