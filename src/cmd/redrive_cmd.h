/* redrive_cmd.h — what the file and bucket redrives (redrive_dir.h,
 * redrive_s3.h) share: their totals, the settings every run takes, the
 * backoff between tries, and the command around a run (its settings from
 * the command line and the configuration, the progress line, the JSON
 * summary and the exit status).
 *
 * Loop thread only. */
#ifndef KCLD_CMD_REDRIVE_CMD_H
#define KCLD_CMD_REDRIVE_CMD_H

#include <stddef.h>
#include <stdint.h>

#include "cmd/cli.h"
#include "config.h"

/* A redrive's totals. */
struct kcld_redrive_totals {
  int err;                          /* 0, or what stopped the redrive */
  size_t files;                     /* --dir: files moved to done/ */
  size_t lines;                     /* --dir: lines replayed */
  size_t objects;                   /* --s3: objects replayed and deleted */
  size_t records;                   /* replayed */
  size_t kept;                      /* lines left in their file (--dir),
                                       objects left in the bucket (--s3) */
};

typedef void (*kcld_redrive_totals_cb)(const struct kcld_redrive_totals *r,
                                void *arg);

/* The settings of a run that every redrive takes. */
struct kcld_redrive_how {
  const char *stream;               /* name or ARN; with stream_from_message
                                       only for records that name none */
  int stream_from_message;          /* 1: a record's KinesisBatchInfo
                                       streamArn, when set, wins */
  unsigned attempts;                /* tries per call, >= 1 */
  uint64_t backoff_base_ms;         /* > 0 */
  uint64_t backoff_max_ms;          /* >= backoff_base_ms */
  int dry_run;                      /* 1: count only */
  /* Called after each line or object replayed or left (may be NULL),
   * with the totals so far and the run's callback arg. */
  kcld_redrive_totals_cb progress;
};

/* 1 when h's attempts and backoff are usable (see above), else 0. */
int kcld_redrive_how_valid(const struct kcld_redrive_how *h);

/* The wait before try number tries + 1 (tries >= 1 failed): exponential
 * from h's backoff_base_ms up to backoff_max_ms, with jitter. */
uint64_t kcld_redrive_backoff_ms(const struct kcld_redrive_how *h,
                                 unsigned tries);

/* A redrive command's state: its totals once the run is done. */
struct kcld_redrive_cmd {
  int done;
  int dry_run;
  int objects;                      /* 1: counted in objects (--s3), else
                                       in files and lines (--dir) */
  struct kcld_redrive_totals res;
};

/* Starts *s and fills *how for a command: into `stream` (NULL: each
 * record's streamArn, else cfg's stream), a few tries with cfg's
 * retry.backoff_* between them, progress to the progress line (the run's
 * callback arg must be s). */
void kcld_redrive_cmd_init(struct kcld_redrive_cmd *s,
                           const struct kcld_config *cfg, const char *stream,
                           int dry_run, int objects,
                           struct kcld_redrive_how *how);

/* The run's end callback (arg: the struct kcld_redrive_cmd). */
void kcld_redrive_cmd_done(const struct kcld_redrive_totals *r, void *arg);

/* Runs c's loop until the run is done, ends the progress line and prints
 * one JSON summary line to stdout ({"objects"} or {"files","lines"}, then
 * "records","kept","dry_run","error").  Returns the exit status: 0 when
 * every line or object was (or would be) replayed, 1 otherwise. */
int kcld_redrive_cmd_wait(struct kcld_redrive_cmd *s, struct kcld_cli_aws *c);

#endif
