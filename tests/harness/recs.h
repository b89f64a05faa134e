/* recs.h — Kinesis records made up for a test of the dead-letter path:
 * each owns its data, key and sequence number. */
#ifndef KCLD_TEST_RECS_H
#define KCLD_TEST_RECS_H

#include <stddef.h>
#include <stdint.h>

#include "consume/record.h"

#define KCLD_TEST_RECS_MAX 128

struct kcld_test_recs {
  struct kcld_record r[KCLD_TEST_RECS_MAX];
  const struct kcld_record *p[KCLD_TEST_RECS_MAX]; /* &r[i] */
  char seq[KCLD_TEST_RECS_MAX][48];
  char key[KCLD_TEST_RECS_MAX][24];
  uint8_t *data[KCLD_TEST_RECS_MAX];
};

/* n (<= KCLD_TEST_RECS_MAX) records: record i holds sizes[i] bytes (`size`
 * when sizes is NULL) of the letter 'a' + i % 26, key "k<i>", sequence
 * number "4960" and i + 1 in 26 digits, sub-sequence number i % 2,
 * arrival 1795344059800 + i ms. */
void kcld_test_recs_make(struct kcld_test_recs *s, size_t n,
                         const size_t *sizes, size_t size);

/* Frees what kcld_test_recs_make allocated. */
void kcld_test_recs_free(struct kcld_test_recs *s);

#endif
