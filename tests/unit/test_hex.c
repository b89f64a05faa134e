/* test_hex.c — hex digit values in both cases, n-digit parsing with a bad
 * digit anywhere, and lower-case hex text of bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/hex.h"

static void test_value_and_parse(void **state)
{
  (void)state;
  for (int c = 0; c < 256; c++) {
    int want = c >= '0' && c <= '9'   ? c - '0'
               : c >= 'a' && c <= 'f' ? c - 'a' + 10
               : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                      : -1;
    assert_int_equal(kcld_hex_value(c), want);
  }
  assert_int_equal(kcld_hex_parse("00e9", 4), 0xe9);
  assert_int_equal(kcld_hex_parse("D83D", 4), 0xd83d);
  assert_int_equal(kcld_hex_parse("ffff", 4), 0xffff);
  assert_int_equal(kcld_hex_parse("12345", 3), 0x123);
  assert_int_equal(kcld_hex_parse("", 0), 0);
  assert_int_equal(kcld_hex_parse("g000", 4), -1);
  assert_int_equal(kcld_hex_parse("000g", 4), -1);
  assert_int_equal(kcld_hex_parse("0 00", 4), -1);
}

static void test_put(void **state)
{
  const uint8_t bytes[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
  char out[16];
  (void)state;
  memset(out, '#', sizeof(out));
  char *end = kcld_hex_put(out, bytes, sizeof(bytes));
  assert_ptr_equal(end, out + 12);
  assert_memory_equal(out, "00017f80abff", 12);
  assert_int_equal(out[12], '#'); /* nothing written past the digits */
  assert_ptr_equal(kcld_hex_put(out, bytes, 0), out);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_value_and_parse),
    cmocka_unit_test(test_put),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
