/* test_backoff.c — the retry delay policy: doubling from the base per
 * retry, the cap, retry 0 counted as 1, the bounds of each jitter kind at
 * the least and the most random value, draws from the thread's generator
 * staying within them, and no overflow at extreme settings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "base/backoff.h"

static void test_growth_and_cap(void **state)
{
  struct kcld_backoff b = {100, 1000, KCLD_BACKOFF_NONE};
  (void)state;
  assert_int_equal(kcld_backoff_delay_ms(&b, 0, 0), 100);
  assert_int_equal(kcld_backoff_delay_ms(&b, 1, 0), 100);
  assert_int_equal(kcld_backoff_delay_ms(&b, 2, 0), 200);
  assert_int_equal(kcld_backoff_delay_ms(&b, 4, 0), 800);
  assert_int_equal(kcld_backoff_delay_ms(&b, 5, UINT32_MAX), 1000);
  assert_int_equal(kcld_backoff_delay_ms(&b, 4000000000u, 0), 1000);
  /* A base above the cap is cut to it. */
  b.base_ms = 5000;
  assert_int_equal(kcld_backoff_delay_ms(&b, 1, 0), 1000);
  /* A zero base stays zero (and does not spin). */
  b.base_ms = 0;
  assert_int_equal(kcld_backoff_delay_ms(&b, 4000000000u, 0), 0);
  /* No overflow near the top of the range. */
  struct kcld_backoff big = {(uint64_t)1 << 62, UINT64_MAX, KCLD_BACKOFF_NONE};
  assert_true(kcld_backoff_delay_ms(&big, 100, 0) == (uint64_t)1 << 63);
  big.jitter = KCLD_BACKOFF_FULL;
  assert_true(kcld_backoff_delay_ms(&big, 100, UINT32_MAX) ==
              (uint64_t)1 << 63);
}

static void test_jitter_bounds(void **state)
{
  struct kcld_backoff eq = {100, 1000, KCLD_BACKOFF_EQUAL};
  struct kcld_backoff full = {100, 1000, KCLD_BACKOFF_FULL};
  (void)state;
  /* Equal: [d - d/2, d]. */
  assert_int_equal(kcld_backoff_delay_ms(&eq, 1, 0), 50);
  assert_int_equal(kcld_backoff_delay_ms(&eq, 1, UINT32_MAX), 100);
  assert_int_equal(kcld_backoff_delay_ms(&eq, 3, UINT32_MAX / 2), 299);
  eq.base_ms = 101;
  assert_int_equal(kcld_backoff_delay_ms(&eq, 1, 0), 51);
  assert_int_equal(kcld_backoff_delay_ms(&eq, 1, UINT32_MAX), 101);
  /* Full: [0, d]. */
  assert_int_equal(kcld_backoff_delay_ms(&full, 1, 0), 0);
  assert_int_equal(kcld_backoff_delay_ms(&full, 1, UINT32_MAX), 100);
  assert_int_equal(kcld_backoff_delay_ms(&full, 10, UINT32_MAX), 1000);

  /* Drawn: within the bounds, and not always the same. */
  uint64_t lo = UINT64_MAX, hi = 0;
  full.base_ms = 1000;
  full.max_ms = 20000;
  for (int i = 0; i < 2000; i++) {
    uint64_t d = kcld_backoff_ms(&full, 3);
    uint64_t e = kcld_backoff_ms(&eq, 2);
    assert_true(d <= 4000);
    assert_true(e >= 101 && e <= 202);
    lo = d < lo ? d : lo;
    hi = d > hi ? d : hi;
  }
  assert_true(lo < 1000 && hi > 3000);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_growth_and_cap),
    cmocka_unit_test(test_jitter_bounds),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
