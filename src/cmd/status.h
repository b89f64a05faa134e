/* status.h — `kcld status`: the lease table and the stream side by side,
 * like `kafka-consumer-groups --describe`.
 *
 * One row per shard (from ListShards, plus lease items whose shard is no
 * longer listed): open/closed, parents and children, the lease's owner,
 * checkpoint and counter, the lag (MillisBehindLatest of a one-record
 * GetRecords after the checkpoint) where it can be had, and a state.  One
 * row per worker: the leases it holds.
 *
 * What "unowned" means, from what can be read:
 *  - one read (the default): an open shard, or a closed one whose lease is
 *    not at SHARD_END, whose lease has no leaseOwner; or that has no lease
 *    item at all although its parents are finished (or it has none);
 *  - a dead worker's leases still name it: with `recheck_ms` the table is
 *    read again that much later (use the failover time), and an owned lease
 *    whose leaseCounter did not move is counted as expired (its owner did
 *    not renew it within the failover time, so peers may take it).
 * The document's "healthy" is false when any shard is unowned or expired.
 *
 * JSON (kcld_status_collect):
 *   {"stream", "table", "time", "recheck_ms",
 *    "consumer": null (fetch.mode: polling) | {"name", "arn", "status":
 *                "CREATING" | "ACTIVE" | "DELETING" | "NOT_REGISTERED",
 *                "error": str (the look-up failed; status null)},
 *    "shards": [{"shard_id", "open": bool, "parents": [...],
 *                "children": [...], "in_stream": bool, "lease": bool,
 *                "owner": str|null, "checkpoint": str|null,
 *                "checkpoint_sub": n, "lease_counter": n,
 *                "owner_switches": n, "lag_ms": n|null,
 *                "state": "owned" | "unowned" | "expired" | "finished" |
 *                         "waiting" (no lease yet, parents not finished)}],
 *    "workers": [{"worker_id", "leases_held": n, "shards": [...],
 *                 "renewing": bool|null (null without recheck)}],
 *    "unowned": n, "expired": n, "healthy": bool}
 *
 * With `streams:` (a multi-stream lease table) and no opts.stream: one
 * such document per stream (its leases only, shard ids without the
 * stream identifier), as
 *   {"table", "streams": [...], "unowned": n, "expired": n,
 *    "healthy": bool (every stream's)};
 * with opts.stream, that stream's document alone. */
#ifndef KCLD_CMD_STATUS_H
#define KCLD_CMD_STATUS_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"

struct kcld_status_opts {
  const struct kcld_config *cfg;  /* endpoints, region, credentials */
  const char *stream;             /* NULL = cfg->stream */
  const char *table;              /* NULL = cfg->lease.table */
  uint64_t recheck_ms;            /* 0 = one read */
  int lag;                        /* 1: measure lag with GetRecords */
};

/* Reads the table and the stream (on a private loop) and builds the
 * document above.  Returns 0 and *out (a new reference), or a negative
 * KCLD_E* code with the reason on stderr (KCLD_ENOTFOUND: no such table or
 * stream). */
int kcld_status_collect(const struct kcld_status_opts *opts, json_t **out);

/* Writes the document as two aligned tables (shards, then workers); a
 * multi-stream document as those of each stream in turn. */
void kcld_status_print(const json_t *doc, FILE *out);

/* `kcld status ARGS` (argv[0] is "status").  Exit code: 0 every shard that
 * needs an owner has one, 3 some are unowned or expired, 1 the table or
 * stream could not be read, 2 a usage error. */
int kcld_status_command(int argc, char **argv);

#endif
