/* test_clock.c — the wall clock in milliseconds agrees with time(2) and
 * does not go back between two reads; coalesced due times are never early,
 * late by less than the quantum, and the same for nearby due times. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "base/clock.h"

static void test_wall_ms(void **state)
{
  (void)state;
  int64_t before = (int64_t)time(NULL) * 1000;
  int64_t a = kcld_clock_wall_ms(), b = kcld_clock_wall_ms();
  int64_t after = ((int64_t)time(NULL) + 1) * 1000;
  assert_true(a >= before && a < after);
  assert_true(b >= a && b < after);
}

static void test_coalesce(void **state)
{
  (void)state;
  /* A 1.1 s wait: 16 ms quantum; 1 s: 8 ms. */
  for (uint64_t due = 100000; due < 100100; due++) {
    uint64_t c = kcld_clock_coalesce_ms(due, 1100);
    assert_true(c >= due && c < due + 16);
    assert_int_equal(c % 16, 0);
    c = kcld_clock_coalesce_ms(due, 1000);
    assert_true(c >= due && c < due + 8);
    assert_int_equal(c % 8, 0);
  }
  assert_int_equal(kcld_clock_coalesce_ms(100001, 1100),
                   kcld_clock_coalesce_ms(100015, 1100));
  /* A 200 ms wait: 2 ms; a wait under 128 ms, or none: not rounded. */
  assert_int_equal(kcld_clock_coalesce_ms(1001, 200), 1002);
  assert_int_equal(kcld_clock_coalesce_ms(1002, 200), 1002);
  assert_int_equal(kcld_clock_coalesce_ms(1001, 127), 1001);
  assert_int_equal(kcld_clock_coalesce_ms(1001, 0), 1001);
  /* A long wait still rounds by 16 ms at most. */
  assert_int_equal(kcld_clock_coalesce_ms(1001, 3600000), 1008);
  assert_int_equal(kcld_clock_coalesce_ms(UINT64_MAX - 1, 1000),
                   UINT64_MAX - 1);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_wall_ms),
    cmocka_unit_test(test_coalesce),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
