/* deagg.h — a Kinesis record holding a KPL aggregate -> its user records.
 *
 * The format, and what is accepted, is base/kpl.h's: kcld_kpl_scan() first
 * classifies and verifies a record's payload and sizes the room its user
 * records need; kcld_deagg_expand() then writes them as struct kcld_record,
 * with what each user record inherits from the Kinesis record it came in.
 * A record that looks like an aggregate but fails the scan is to be passed
 * through unchanged, as one record, with a warning: nothing is dropped.
 *
 * No global state; any thread.  Nothing is logged here: the caller logs,
 * with its context (shard, sequence number). */
#ifndef KCLD_CONSUME_DEAGG_H
#define KCLD_CONSUME_DEAGG_H

#include <stddef.h>

#include "consume/record.h"

/* Writes the user records of `outer`, whose data kcld_kpl_scan() found to be
 * a KCLD_KPL_AGGREGATE, into out[0..n-1]: data and keys from the aggregate,
 * sequence number, encryption type, arrival time and batch from `outer`,
 * sub_sequence_number = i, aggregated = 1.  `keys` (8-byte aligned, keys_cap
 * bytes) receives the key tables; the records point into it and into
 * outer->data, which must both outlive them; *keys_used is set to the bytes
 * of `keys` used (the plan's key_bytes).  Returns n, or KCLD_EINVAL when the
 * protobuf does not parse or the records or keys do not fit (nothing usable
 * is written then).  It does not check the MD5 trailer or the keys' UTF-8
 * again: that is kcld_kpl_scan()'s verdict, which must come first. */
long kcld_deagg_expand(const struct kcld_record *outer,
                       struct kcld_record *out, size_t out_cap, void *keys,
                       size_t keys_cap, size_t *keys_used);

#endif
