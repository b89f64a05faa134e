/* produce.h — `kcld produce`: a PutRecords load generator.
 *
 * Sends the reference pipeline's events (or padded/poisoned variants, or
 * KPL aggregates of them) to a stream at a given rate, up to 500 records a
 * call, and retries the entries a call reports as failed.  A progress line
 * goes to stderr about once a second; the final count goes to stdout as one
 * machine-readable line:
 *
 *   produced=1000 failed=0 poison=10 kinesis_records=1000 calls=2 retried=0
 *
 * `produced` counts user records written (for --aggregate, the records
 * inside the aggregates), `failed` those given up on. */
#ifndef KCLD_CMD_PRODUCE_H
#define KCLD_CMD_PRODUCE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "aws/kinesis.h"
#include "config.h"

struct kcld_produce_opts {
  const struct kcld_config *cfg; /* endpoints, region, credentials, and the
                                    stream unless `stream` is set */
  const char *stream;            /* NULL = cfg->stream */
  double rate;                   /* user records per second; 0 = no limit */
  uint64_t count;                /* records to produce; 0 = until duration */
  uint64_t duration_ms;          /* 0 = until count */
  size_t size;                   /* pad each event to at least this many
                                    bytes; 0 = as generated */
  unsigned partition_keys;       /* distinct partition keys; 0 = 100 */
  double poison_rate;            /* 0..1: share of payloads that are not
                                    JSON */
  unsigned aggregate;            /* user records per KPL aggregate; 0 or 1 =
                                    plain records */
  uint64_t seed;                 /* 0 = from the clock */
  int max_attempts;              /* per record; 0 = 10 */
  FILE *progress;                /* NULL = no progress line */
};

struct kcld_produce_result {
  uint64_t produced;             /* user records written */
  uint64_t failed;               /* user records given up on */
  uint64_t poison;               /* of those produced, the malformed ones */
  uint64_t kinesis_records;      /* Kinesis records written */
  uint64_t calls;                /* PutRecords calls */
  uint64_t retried;              /* entries sent again */
};

/* Runs the generator on a private loop until count records are written (or
 * given up on) or duration_ms passed.  Returns 0 (even when some records
 * failed: see res), or a negative KCLD_E* code when nothing could be sent
 * (bad options, no region, the stream unreachable), with the reason on
 * stderr. */
int kcld_produce_run(const struct kcld_produce_opts *opts,
                     struct kcld_produce_result *res);

/* `kcld produce ARGS`: parses the options, runs, prints the final line.
 * argv[0] is "produce".  Returns the process exit code: 0 when every record
 * was written, 1 when some failed or the run failed, 2 for a usage error. */
int kcld_produce_command(int argc, char **argv);

/* ======== Pure helpers (exposed for tests) ======== */

/* One reference-pipeline event as compact JSON, for user number `user`
 * (userId and partition key "user-<user>"), padded with a "padding" field
 * to at least `size` bytes.  `rng` is the generator's state.  Returns a
 * malloc'd NUL-terminated text and its length, or NULL when out of
 * memory. */
char *kcld_produce_event(uint64_t *rng, unsigned user, int64_t now_ms,
                         size_t size, size_t *len);

/* The 128-bit hash key Kinesis derives from a partition key (MD5 of it as
 * an unsigned big-endian number), as decimal text in buf (at least 40
 * bytes).  Returns buf. */
char *kcld_produce_hash_key(const char *partition_key, char *buf, size_t n);

#endif
