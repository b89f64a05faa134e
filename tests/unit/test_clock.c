/* test_clock.c — the wall clock in milliseconds agrees with time(2) and
 * does not go back between two reads. */
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

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_wall_ms),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
