/* test_buf.c — the growable buffer: empty and zero-length appends, text
 * kept NUL-terminated, binary bytes (NULs inside) kept whole across many
 * growths, a buffer marked out of memory taking nothing more, and free
 * leaving it ready for reuse. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/buf.h"
#include "err.h"

static void test_append(void **state)
{
  struct kcld_buf b = {0};
  (void)state;
  assert_int_equal(kcld_buf_add(&b, NULL, 0), 0);
  assert_non_null(b.p);
  assert_string_equal(b.p, "");
  assert_int_equal(kcld_buf_add(&b, "abc", 3), 0);
  assert_int_equal(kcld_buf_add(&b, "defg", 2), 0);
  assert_int_equal(b.len, 5);
  assert_string_equal(b.p, "abcde");

  /* 10,000 appends of 7 bytes holding a NUL: all kept, in order. */
  for (int i = 0; i < 10000; i++) {
    char rec[7] = {'r', (char)('0' + i % 10), '\0', 'x', 'y', 'z', '|'};
    assert_int_equal(kcld_buf_add(&b, rec, sizeof(rec)), 0);
  }
  assert_int_equal(b.len, 5 + 70000);
  assert_true(b.cap > b.len);
  assert_int_equal(b.p[b.len], '\0');
  for (int i = 0; i < 10000; i += 997)
    assert_int_equal(b.p[5 + 7 * i + 1], '0' + i % 10);
  assert_false(b.oom);

  kcld_buf_free(&b);
  assert_null(b.p);
  assert_int_equal(b.len, 0);
  assert_int_equal(b.cap, 0);
  assert_int_equal(kcld_buf_add(&b, "again", 5), 0);
  assert_string_equal(b.p, "again");
  kcld_buf_free(&b);
}

static void test_sticky_oom(void **state)
{
  struct kcld_buf b = {0};
  (void)state;
  assert_int_equal(kcld_buf_add(&b, "kept", 4), 0);
  b.oom = 1; /* as after a failed growth */
  assert_int_equal(kcld_buf_add(&b, "lost", 4), KCLD_ENOMEM);
  assert_int_equal(b.len, 4);
  assert_string_equal(b.p, "kept");
  kcld_buf_free(&b);
  assert_false(b.oom);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_append),
    cmocka_unit_test(test_sticky_oom),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
