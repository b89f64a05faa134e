/* seq.h — Kinesis sequence numbers and positions, and their order.
 *
 * A sequence number is decimal text of up to 129 digits (the Kinesis API
 * pattern 0|([1-9]\d{0,128})), too large for any integer type, so it is
 * kept as text and compared as a number, never as text ("9" < "10").
 * A position is a sequence number plus a sub-sequence number (the index of
 * a user record within a KPL aggregate); positions order by sequence
 * number, then by sub-sequence number, as checkpoints do.
 *
 * Pure functions; any thread. */
#ifndef KCLD_BASE_SEQ_H
#define KCLD_BASE_SEQ_H

#include <stdint.h>

/* Longest sequence number accepted, in digits. */
#define KCLD_SEQ_MAX 129

/* A position held by value (a copy: it never points into a batch).  `set`
 * is 0 until kcld_seq_pos_set() gives it a value. */
struct kcld_seq_pos {
  int set;
  char seq[KCLD_SEQ_MAX + 1];
  uint64_t sub;
};

/* 1 when `seq` is a sequence number: 1 to KCLD_SEQ_MAX ASCII digits
 * (leading zeros allowed), else 0.  "TRIM_HORIZON", "SHARD_END", "" and
 * NULL are not sequence numbers. */
int kcld_seq_valid(const char *seq);

/* Compares two sequence numbers as unsigned decimal integers of any size
 * (leading zeros ignored): <0, 0 or >0 as a is less than, equal to or
 * greater than b.  It is a total order on all strings: an invalid string
 * (see kcld_seq_valid; NULL included) sorts below every valid one, and two
 * invalid strings compare as strcmp would (NULL first). */
int kcld_seq_compare(const char *a, const char *b);

/* Compares the positions (seq_a, sub_a) and (seq_b, sub_b): by sequence
 * number (kcld_seq_compare), then by sub-sequence number. */
int kcld_seq_position_compare(const char *seq_a, uint64_t sub_a,
                              const char *seq_b, uint64_t sub_b);

/* Sets *p to (seq, sub) and marks it set.  `seq` must be valid
 * (kcld_seq_valid), so that the copy always fits. */
void kcld_seq_pos_set(struct kcld_seq_pos *p, const char *seq, uint64_t sub);

/* Compares the position *p (which must be set) with (seq, sub), as
 * kcld_seq_position_compare does. */
int kcld_seq_pos_compare(const struct kcld_seq_pos *p, const char *seq,
                         uint64_t sub);

#endif
