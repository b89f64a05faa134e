/* dlq_dir.h — the local-directory store of the failure destination
 * (on_failure.dir, the default when no other destination is configured).
 *
 * Messages are appended to one JSON-lines file per shard and UTC day,
 *   <dir>/<application>.<shardId>.<YYYY-MM-DD>.jsonl
 * one message per line, a whole given-up range per message (no body limit,
 * record data always included).  A message is kept once its line is
 * written and fsync'ed, and, for a file just created, the directory is
 * fsync'ed too; a write that fails is cut off again (ftruncate), so a file
 * holds whole lines only.  Writes run on the worker pool, one at a time;
 * each takes an exclusive flock(2) on the file and checks that the path
 * still names the file it opened, so a redrive that claims a file (below)
 * never loses a line appended at the same moment, and several kcld
 * processes may share a directory.
 *
 * Loop thread only, but for the functions of the redrive section, which
 * are synchronous and may be called from any thread. */
#ifndef KCLD_PROCESS_DLQ_DIR_H
#define KCLD_PROCESS_DLQ_DIR_H

#include <stddef.h>
#include <uv.h>

#include "process/dlq.h"

struct kcld_dlq_dir_opts {
  uv_loop_t *loop;
  const char *dir;             /* the directory; created (with its
                                  parents, mode 0750) when missing */
  const char *application;     /* the first part of the file names */
};

/* Creates the directory when needed and checks that a file can be created,
 * written, fsync'ed and removed in it (a probe file).  Returns 0 and *out,
 * or KCLD_EINVAL / KCLD_ENOMEM, or KCLD_EIO with the reason ("cannot create
 * the dead-letter directory /x: Permission denied") in errbuf. */
int kcld_dlq_dir_new(const struct kcld_dlq_dir_opts *opts,
                     struct kcld_dlq_store **out, char *errbuf,
                     size_t errlen);

/* ======== Reading it back (kcld redrive --dir) ======== */

/* The dead-letter files of dir: NAME.jsonl, and the NAME.jsonl.redriving
 * (NAME.jsonl.N.redriving) files a redrive claimed and did not finish,
 * sorted by NAME, the claimed ones first (their lines are older).  *names
 * gets *n malloc'd base names (free each, then the array).  Returns 0, or
 * KCLD_EIO (dir unreadable) / KCLD_ENOMEM. */
int kcld_dlq_dir_list(const char *dir, char ***names, size_t *n);

/* Claims a file of kcld_dlq_dir_list for a redrive: renames NAME.jsonl to
 * NAME.jsonl.redriving, or NAME.jsonl.N.redriving when that is taken (never
 * over a file; a claimed file stays as it is), then waits for a kcld still
 * writing to it: afterwards nothing is appended to it any more; new lines
 * go to a new NAME.jsonl.  *path gets the claimed file's path
 * (malloc'd).  Returns 0, or KCLD_EIO / KCLD_ENOMEM. */
int kcld_dlq_dir_claim(const char *dir, const char *name, char **path);

/* A claimed file whose every line was replayed: moved into <dir>/done/
 * (created when missing) as NAME.jsonl, or NAME.jsonl.1, .2, ... when the
 * name is taken.  Returns 0, or KCLD_EIO. */
int kcld_dlq_dir_done(const char *dir, const char *claimed);

/* A claimed file only part of which was replayed: its content becomes
 * lines[0..n-1] (n >= 1, each without its newline), atomically (temporary
 * file, fsync, rename), for the next redrive.  Returns 0, or KCLD_EIO. */
int kcld_dlq_dir_keep(const char *claimed, char *const *lines, size_t n);

#endif
