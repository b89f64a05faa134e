/* test_utf8.c — UTF-8 as RFC 3629 has it: every boundary code point
 * encoded and read back, overlong forms, surrogates, code points past
 * U+10FFFF, stray continuation bytes and cut-off sequences refused, and
 * characters counted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/utf8.h"

static void test_round_trip(void **state)
{
  static const uint32_t cps[] = {0, 0x41, 0x7f, 0x80, 0xe9, 0x7ff, 0x800,
                                 0xfff, 0x1000, 0xd7ff, 0xe000, 0xfffd,
                                 0xffff, 0x10000, 0x1f600, 0x10ffff};
  static const size_t lens[] = {1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 4, 4,
                                4};
  char buf[4];
  (void)state;
  for (size_t i = 0; i < sizeof(cps) / sizeof(cps[0]); i++) {
    size_t n = (size_t)(kcld_utf8_put(buf, cps[i]) - buf);
    assert_int_equal(n, lens[i]);
    assert_int_equal(kcld_utf8_char_len(buf, n), n);
    assert_int_equal(kcld_utf8_char_len(buf, n - 1 ? n - 1 : 1),
                     n == 1 ? 1 : 0); /* cut off */
    assert_true(kcld_utf8_valid(buf, n));
  }
  assert_memory_equal(buf, "\xf4\x8f\xbf\xbf", 4);
  kcld_utf8_put(buf, 0xe9);
  assert_memory_equal(buf, "\xc3\xa9", 2);
  kcld_utf8_put(buf, 0x1f600);
  assert_memory_equal(buf, "\xf0\x9f\x98\x80", 4);
}

static void test_refused(void **state)
{
  static const char *const bad[] = {
    "\x80",             /* continuation byte alone */
    "\xbf",
    "\xc0\xaf",         /* overlong '/' */
    "\xc1\xbf",
    "\xe0\x80\xaf",     /* overlong, 3 bytes */
    "\xe0\x9f\xbf",
    "\xf0\x80\x80\xaf", /* overlong, 4 bytes */
    "\xf0\x8f\xbf\xbf",
    "\xed\xa0\x80",     /* U+D800 */
    "\xed\xbf\xbf",     /* U+DFFF */
    "\xf4\x90\x80\x80", /* U+110000 */
    "\xf5\x80\x80\x80",
    "\xff",
    "\xc3\x28",         /* bad continuation */
    "\xe2\x82\x28",
    "\xf0\x9f\x98\x28",
  };
  (void)state;
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    size_t n = strlen(bad[i]);
    assert_int_equal(kcld_utf8_char_len(bad[i], n), 0);
    assert_false(kcld_utf8_valid(bad[i], n));
    assert_int_equal(kcld_utf8_count(bad[i], n), -1);
  }
}

static void test_count(void **state)
{
  (void)state;
  assert_int_equal(kcld_utf8_count("", 0), 0);
  assert_int_equal(kcld_utf8_count("abc", 3), 3);
  assert_int_equal(kcld_utf8_count("a\0b", 3), 3); /* U+0000 counts */
  assert_int_equal(kcld_utf8_count("caf\xc3\xa9 \xf0\x9f\x98\x80", 10), 6);
  /* The length bounds the text: a character cut off there is malformed. */
  assert_int_equal(kcld_utf8_count("caf\xc3\xa9", 4), -1);
  assert_true(kcld_utf8_valid("\xe2\x82\xac", 3));
  assert_false(kcld_utf8_valid("\xe2\x82\xac", 2));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_round_trip),
    cmocka_unit_test(test_refused),
    cmocka_unit_test(test_count),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
