/* redrive_dir.h — `kcld redrive --dir PATH`: the dead-letter directory
 * (process/dlq_dir.h) replayed, into the stream or straight into the
 * configured handler.
 *
 * Each file of the directory is claimed (renamed NAME.jsonl.redriving, so
 * kcld goes on writing new dead letters to a new NAME.jsonl meanwhile),
 * then replayed line by line, in order:
 *
 *   - to the stream: each line's records go back with PutRecords (same
 *     partition key and data, new sequence numbers), at most 500 records and
 *     5 MiB per call; records PutRecords does not take are put again;
 *   - to the handler (--to-handler): each line's records, with their own
 *     sequence and sub-sequence numbers, go to the handler batch_size at a
 *     time, as the daemon would give them; a partial answer goes on from the
 *     failed record.
 *
 * A failed call is tried again after a backoff, `attempts` times in all;
 * then the redrive stops: the lines not yet replayed stay in the claimed
 * file for the next run (a line whose head was replayed is replayed whole
 * again: at least once).  A line that cannot be replayed (no records:
 * on_failure.include_records was off; not an on-failure record) is left in
 * the file with a warning and the redrive goes on.  A file whose every line
 * was replayed moves to PATH/done/.
 *
 * A dry run (how.dry_run) claims, sends and moves nothing: it reads each file
 * where it is and counts the lines and records a redrive would replay
 * (lines, records) and the lines it would leave (kept): struct
 * kcld_redrive_totals (files: moved to done/).
 *
 * Loop thread only. */
#ifndef KCLD_CMD_REDRIVE_DIR_H
#define KCLD_CMD_REDRIVE_DIR_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "aws/kinesis.h"
#include "cmd/redrive_cmd.h"
#include "config.h"
#include "handlers/handler.h"

struct kcld_redrive_dir_opts {
  uv_loop_t *loop;
  const char *dir;
  /* Where records go: the handler when not NULL, else the stream. */
  struct kcld_handler *handler;     /* borrowed */
  size_t batch_size;                /* records per handler call, >= 1 */
  struct kcld_kinesis *kinesis;     /* borrowed; for the stream */
  struct kcld_redrive_how how;      /* the stream, tries, dry run (see
                                       above), progress: lines */
};

/* Runs the redrive on opts->loop; cb runs once at the end, never before
 * this returns.  Returns 0, or KCLD_EINVAL / KCLD_ENOMEM / KCLD_EIO (the
 * directory cannot be read) and never calls cb. */
int kcld_redrive_dir_run(const struct kcld_redrive_dir_opts *opts,
                         kcld_redrive_totals_cb cb, void *arg);

/* `kcld redrive --dir`: replays `dir` with cfg's endpoints, region and
 * credentials, into `stream` (NULL: each line's streamArn, else cfg's
 * stream) or, with to_handler, into cfg's handler (batch.size records a
 * call; retry.backoff_* between tries); with dry_run, counts only.  A
 * progress line on stderr when it is a terminal.  Prints one JSON summary
 * line ({"files","lines","records","kept","dry_run","error"}) to stdout.
 * Returns the exit status: 0 when every line was (or would be) replayed, 1
 * otherwise. */
int kcld_redrive_dir_command(const struct kcld_config *cfg, const char *dir,
                             const char *stream, int to_handler,
                             int dry_run);

#endif
