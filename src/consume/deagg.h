/* deagg.h — KPL aggregated records: detect, verify and expand.
 *
 * Format (see ../shared/design/kpl-aggregation.md): the magic F3 89 9A C2,
 * a protobuf AggregatedRecord {partition_key_table = 1, explicit_hash_key_table
 * = 2, records = 3 {partition_key_index = 1, explicit_hash_key_index = 2,
 * data = 3, tags = 4}}, then the 16-byte MD5 of the protobuf bytes.
 *
 * Two steps, so that a caller can size one allocation for a whole response:
 * kcld_deagg_scan() checks a record completely (magic, MD5, every protobuf
 * field, every key index) and says how much room its user records need;
 * kcld_deagg_expand() then writes them and cannot fail on input that the scan
 * accepted.  User records point into the outer record's data (no copy); the
 * key tables are copied once per aggregate as NUL-terminated strings.
 *
 * What is accepted (KCL-compatible, stricter in two places):
 * - Unknown fields of wire types 0, 1, 2 and 5 are skipped at every level,
 *   as are known field numbers with an unexpected wire type (protobuf does
 *   the same).  Groups (3, 4), wire types 6 and 7, field number 0, varints
 *   over 10 bytes or 64 bits, and lengths past the end are malformed.
 * - A repeated scalar field takes its last value, as in protobuf.
 * - partition_key_index and data are required; an index outside its table is
 *   malformed.  There is no fallback key: the format has none.
 * - Stricter than the KCL: key table entries must be valid UTF-8 (the KCL
 *   would substitute U+FFFD), and an aggregate with no records is malformed
 *   (the KCL would yield nothing).  Either way the record passes through.
 * A record that looks like an aggregate (it starts with the magic) but fails
 * any check is to be passed through unchanged, as one record, with a warning:
 * nothing is dropped.  The shard hash-range filter that the KCL applies after
 * resharding is not done here.
 *
 * No global state; every function may run on any thread at once (MD5 comes
 * from OpenSSL's EVP interface, which is thread-safe).  Nothing is logged
 * here: the caller logs, with its context (shard, sequence number). */
#ifndef KCLD_CONSUME_DEAGG_H
#define KCLD_CONSUME_DEAGG_H

#include <stddef.h>
#include <stdint.h>

#include "consume/record.h"

enum kcld_deagg_kind {
  KCLD_DEAGG_PLAIN = 0,     /* no magic: an ordinary record, pass through */
  KCLD_DEAGG_AGGREGATE = 1, /* a valid aggregate: expand it */
  KCLD_DEAGG_CORRUPT = 2    /* magic, but unusable: pass through and warn */
};

/* What kcld_deagg_scan() found. */
struct kcld_deagg_plan {
  size_t nrecords;   /* user records (KCLD_DEAGG_AGGREGATE only) */
  size_t key_bytes;  /* bytes of key room kcld_deagg_expand() needs; always a
                        multiple of 8 */
  char why[160];     /* KCLD_DEAGG_CORRUPT: why, as one sentence fragment
                        ("MD5 trailer does not match"); "" otherwise */
};

/* Classifies the `len` bytes at `data` (one Kinesis record's payload) and, for
 * an aggregate, verifies it completely.  Returns a kcld_deagg_kind; `plan` is
 * always filled. */
int kcld_deagg_scan(const uint8_t *data, size_t len,
                    struct kcld_deagg_plan *plan);

/* Writes the user records of `outer`, whose data kcld_deagg_scan() found to be
 * a KCLD_DEAGG_AGGREGATE, into out[0..n-1]: data and keys from the aggregate,
 * sequence number, encryption type, arrival time and batch from `outer`,
 * sub_sequence_number = i, aggregated = 1.  `keys` (8-byte aligned, keys_cap
 * bytes) receives the key tables; the records point into it and into
 * outer->data, which must both outlive them; *keys_used is set to the bytes
 * of `keys` used (the plan's key_bytes).  Returns n, or KCLD_EINVAL when the
 * protobuf does not parse or the records or keys do not fit (nothing usable
 * is written then).  It does not check the MD5 trailer or the keys' UTF-8
 * again: that is kcld_deagg_scan()'s verdict, which must come first. */
long kcld_deagg_expand(const struct kcld_record *outer,
                       struct kcld_record *out, size_t out_cap, void *keys,
                       size_t keys_cap, size_t *keys_used);

#endif
