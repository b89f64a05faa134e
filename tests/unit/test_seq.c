/* test_seq.c — sequence numbers: what is valid, numeric order of any
 * length, leading zeros, the total order over invalid strings, positions
 * (sequence, then sub-sequence), and position values set and compared. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/seq.h"

/* Three sequence numbers of one shard, in order. */
static const char k_seq1[] =
  "49654375826581204853728412917013357745836226830193672194";
static const char k_seq2[] =
  "49654375826581204853728412917013357745836226830193672195";
static const char k_seq3[] =
  "49654375826581204853728413019282913104547306126551531522";

static void test_seq_compare(void **state)
{
  (void)state;
  assert_true(kcld_seq_valid("0"));
  assert_true(kcld_seq_valid(k_seq1));
  assert_false(kcld_seq_valid(""));
  assert_false(kcld_seq_valid(NULL));
  assert_false(kcld_seq_valid("TRIM_HORIZON"));
  assert_false(kcld_seq_valid("-1"));
  assert_false(kcld_seq_valid("1 "));
  char longest[KCLD_SEQ_MAX + 2];
  memset(longest, '9', sizeof(longest));
  longest[KCLD_SEQ_MAX] = '\0';
  assert_true(kcld_seq_valid(longest));
  longest[KCLD_SEQ_MAX] = '9';
  longest[KCLD_SEQ_MAX + 1] = '\0';
  assert_false(kcld_seq_valid(longest));

  assert_int_equal(kcld_seq_compare(k_seq1, k_seq1), 0);
  assert_true(kcld_seq_compare(k_seq1, k_seq2) < 0);
  assert_true(kcld_seq_compare(k_seq2, k_seq1) > 0);
  assert_true(kcld_seq_compare(k_seq2, k_seq3) < 0);
  /* Numeric, not lexicographic: length decides first. */
  assert_true(kcld_seq_compare("9", "10") < 0);
  assert_true(kcld_seq_compare("100", "99") > 0);
  assert_true(kcld_seq_compare(
                "340282366920938463463374607431768211456",  /* 2^128 */
                "340282366920938463463374607431768211455") > 0);
  /* Leading zeros do not count. */
  assert_int_equal(kcld_seq_compare("007", "7"), 0);
  assert_int_equal(kcld_seq_compare("0", "000"), 0);
  assert_true(kcld_seq_compare("0010", "9") > 0);
  /* Invalid strings sort below valid ones, among themselves by strcmp. */
  assert_true(kcld_seq_compare("TRIM_HORIZON", "0") < 0);
  assert_true(kcld_seq_compare("0", "LATEST") > 0);
  assert_true(kcld_seq_compare(NULL, "LATEST") < 0);
  assert_true(kcld_seq_compare("LATEST", NULL) > 0);
  assert_int_equal(kcld_seq_compare(NULL, NULL), 0);
  assert_true(kcld_seq_compare("AT_TIMESTAMP", "LATEST") < 0);

  assert_true(kcld_seq_position_compare(k_seq1, 5, k_seq2, 0) < 0);
  assert_true(kcld_seq_position_compare(k_seq2, 0, k_seq2, 1) < 0);
  assert_true(kcld_seq_position_compare(k_seq2, UINT64_MAX, k_seq2, 1) > 0);
  assert_int_equal(kcld_seq_position_compare(k_seq2, 3, k_seq2, 3), 0);
}

static void test_pos(void **state)
{
  struct kcld_seq_pos p = {0};
  char longest[KCLD_SEQ_MAX + 1];
  (void)state;

  assert_false(p.set);
  kcld_seq_pos_set(&p, k_seq2, 7);
  assert_true(p.set);
  assert_string_equal(p.seq, k_seq2);
  assert_int_equal(p.sub, 7);
  assert_int_equal(kcld_seq_pos_compare(&p, k_seq2, 7), 0);
  assert_true(kcld_seq_pos_compare(&p, k_seq2, 8) < 0);
  assert_true(kcld_seq_pos_compare(&p, k_seq1, UINT64_MAX) > 0);
  assert_true(kcld_seq_pos_compare(&p, k_seq3, 0) < 0);
  /* A copy, not a pointer: the source may go away. */
  char tmp[8] = "123";
  kcld_seq_pos_set(&p, tmp, 0);
  tmp[0] = '9';
  assert_string_equal(p.seq, "123");
  /* The longest valid sequence number fits whole. */
  memset(longest, '8', KCLD_SEQ_MAX);
  longest[KCLD_SEQ_MAX] = '\0';
  kcld_seq_pos_set(&p, longest, 1);
  assert_string_equal(p.seq, longest);
  assert_int_equal(kcld_seq_pos_compare(&p, longest, 1), 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_seq_compare),
    cmocka_unit_test(test_pos),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
