/* test_fmt.c — decimal text of unsigned 64-bit numbers: zero, the largest
 * value, and a buffer too small (cut, still terminated). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "base/fmt.h"

static void test_u64(void **state)
{
  char buf[21], small[4];
  (void)state;
  assert_string_equal(kcld_fmt_u64(buf, sizeof(buf), 0), "0");
  assert_string_equal(kcld_fmt_u64(buf, sizeof(buf), 1234567),
                      "1234567");
  assert_string_equal(kcld_fmt_u64(buf, sizeof(buf), UINT64_MAX),
                      "18446744073709551615");
  assert_ptr_equal(kcld_fmt_u64(small, sizeof(small), 123456), small);
  assert_string_equal(small, "123");
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_u64),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
