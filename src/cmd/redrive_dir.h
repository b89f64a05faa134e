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
 * A dry run (dry_run) claims, sends and moves nothing: it reads each file
 * where it is and counts the lines and records a redrive would replay
 * (lines, records) and the lines it would leave (kept).
 *
 * Loop thread only. */
#ifndef KCLD_CMD_REDRIVE_DIR_H
#define KCLD_CMD_REDRIVE_DIR_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "aws/kinesis.h"
#include "config.h"
#include "handlers/handler.h"

struct kcld_redrive_dir_result;

struct kcld_redrive_dir_opts {
  uv_loop_t *loop;
  const char *dir;
  /* Where records go: the handler when not NULL, else the stream. */
  struct kcld_handler *handler;     /* borrowed */
  size_t batch_size;                /* records per handler call, >= 1 */
  struct kcld_kinesis *kinesis;     /* borrowed; for the stream */
  const char *stream;               /* name or ARN; with stream_from_message
                                       only for lines that name none */
  int stream_from_message;          /* 1: a line's KinesisBatchInfo
                                       streamArn, when set, wins */
  unsigned attempts;                /* tries per call, >= 1 */
  uint64_t backoff_base_ms;         /* > 0 */
  uint64_t backoff_max_ms;          /* >= backoff_base_ms */
  int dry_run;                      /* 1: count only (see above) */
  /* Called after each line replayed or left (may be NULL), with the
   * totals so far and the callback's arg. */
  void (*progress)(const struct kcld_redrive_dir_result *sofar, void *arg);
};

struct kcld_redrive_dir_result {
  int err;                          /* 0, or what stopped the redrive */
  size_t files;                     /* moved to done/ */
  size_t lines;                     /* replayed */
  size_t records;                   /* replayed */
  size_t kept;                      /* lines left in their file */
};

typedef void (*kcld_redrive_dir_cb)(const struct kcld_redrive_dir_result *r,
                                    void *arg);

/* Runs the redrive on opts->loop; cb runs once at the end, never before
 * this returns.  Returns 0, or KCLD_EINVAL / KCLD_ENOMEM / KCLD_EIO (the
 * directory cannot be read) and never calls cb. */
int kcld_redrive_dir_run(const struct kcld_redrive_dir_opts *opts,
                         kcld_redrive_dir_cb cb, void *arg);

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
