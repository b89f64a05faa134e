/* kpl.h — KPL aggregated records: detect, verify, read and write.
 *
 * Format (see ../shared/design/kpl-aggregation.md): the magic F3 89 9A C2,
 * a protobuf AggregatedRecord {partition_key_table = 1, explicit_hash_key_table
 * = 2, records = 3 {partition_key_index = 1, explicit_hash_key_index = 2,
 * data = 3, tags = 4}}, then the 16-byte MD5 of the protobuf bytes.
 *
 * Reading takes two steps, so that a caller can size one allocation for a
 * whole GetRecords response: kcld_kpl_scan() checks an aggregate completely
 * (magic, MD5, every protobuf field, every key index) and says how much room
 * its user records' keys need; a kcld_kpl_reader then walks the user
 * records, which cannot fail on input the scan accepted.  User records point
 * into the aggregate (no copy); the key tables are copied once, as
 * NUL-terminated strings, into room the caller gives.
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
 *   (the KCL would yield nothing).
 * A record that looks like an aggregate (it starts with the magic) but fails
 * any check is to be passed through unchanged, as one record: nothing is
 * dropped.  The shard hash-range filter that the KCL applies after
 * resharding is not done here.
 *
 * No global state; every function may run on any thread at once (MD5 comes
 * from OpenSSL's EVP interface, which is thread-safe).  Nothing is logged. */
#ifndef KCLD_BASE_KPL_H
#define KCLD_BASE_KPL_H

#include <stddef.h>
#include <stdint.h>

enum kcld_kpl_kind {
  KCLD_KPL_PLAIN = 0,     /* no magic: an ordinary record */
  KCLD_KPL_AGGREGATE = 1, /* a valid aggregate */
  KCLD_KPL_CORRUPT = 2    /* magic, but unusable: pass it through */
};

/* What kcld_kpl_scan() found. */
struct kcld_kpl_plan {
  size_t nrecords;   /* user records (KCLD_KPL_AGGREGATE only) */
  size_t key_bytes;  /* bytes of key room a reader needs; always a multiple
                        of 8 */
  char why[160];     /* KCLD_KPL_CORRUPT: why, as one sentence fragment
                        ("MD5 trailer does not match"); "" otherwise */
};

/* One user record of an aggregate. */
struct kcld_kpl_record {
  const uint8_t *data;           /* payload, not NUL-terminated */
  size_t data_len;
  const char *partition_key;     /* NUL-terminated */
  size_t partition_key_len;      /* bytes, without the terminator */
  const char *explicit_hash_key; /* NUL-terminated decimal, or NULL */
};

/* Walks the user records of a scanned aggregate.  Fields are private. */
struct kcld_kpl_reader {
  const uint8_t *p, *end;        /* the protobuf not read yet */
  const void *pk, *ehk;          /* the key tables, in the key room */
  size_t n_pk, n_ehk;
};

/* Classifies the `len` bytes at `data` (one Kinesis record's payload) and,
 * for an aggregate, verifies it completely.  Returns a kcld_kpl_kind;
 * `plan` is always filled. */
int kcld_kpl_scan(const uint8_t *data, size_t len,
                  struct kcld_kpl_plan *plan);

/* Starts reading the aggregate data[0..len), which kcld_kpl_scan() found to
 * be a KCLD_KPL_AGGREGATE: copies its key tables into `keys` (8-byte
 * aligned, keys_cap bytes; the plan's key_bytes are enough) and sets
 * *keys_used to the bytes used.  The records read point into `data` and
 * `keys`, which must outlive them.  Returns 0, or -1 when the input is not
 * an aggregate that parses or the keys do not fit (nothing usable then).
 * It does not check the MD5 trailer or the keys' UTF-8 again: that is
 * kcld_kpl_scan()'s verdict, which must come first. */
int kcld_kpl_reader_init(struct kcld_kpl_reader *r, const uint8_t *data,
                         size_t len, void *keys, size_t keys_cap,
                         size_t *keys_used);

/* The next user record, in order, into *out.  Returns 1, 0 after the last
 * one, or -1 when a record does not parse or names a key outside its table
 * (never after a successful kcld_kpl_scan()). */
int kcld_kpl_reader_next(struct kcld_kpl_reader *r,
                         struct kcld_kpl_record *out);

/* Writes records[0..n-1] (n >= 1; partition_key required, data may be NULL
 * when data_len is 0; partition_key_len is not read) as one aggregate:
 * magic, protobuf AggregatedRecord (the partition key table, the explicit
 * hash key table when any record has a key, the records; each distinct key
 * once), MD5 of the protobuf.  Returns 0 and a malloc'd *out of *len bytes,
 * or KCLD_EINVAL / KCLD_ENOMEM. */
int kcld_kpl_encode(const struct kcld_kpl_record *records, size_t n,
                    uint8_t **out, size_t *len);

#endif
