/* test_child.c — handlers/child.c's line splitter, pure: partial lines,
 * CRLF, several lines per read, lines past the limit, the partial line
 * flushed at the end.  (The processes themselves: tests/integration/
 * test_child.c.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "handlers/child.h"

struct got {
  char lines[16][64];
  size_t lens[16];
  int too_long[16];
  int n;
};

static void on_line(void *arg, const char *line, size_t len, int too_long)
{
  struct got *g = arg;
  assert_true(g->n < 16);
  snprintf(g->lines[g->n], sizeof(g->lines[0]), "%.*s",
           (int)(len < 63 ? len : 63), line);
  g->lens[g->n] = len;
  g->too_long[g->n] = too_long;
  g->n++;
}

static void feed(struct kcld_child_lines *l, struct got *g,
                 const char *s)
{
  assert_int_equal(kcld_child_lines_feed(l, s, strlen(s), on_line, g), 0);
}

static void test_lines_partial_and_crlf(void **state)
{
  (void)state;
  struct kcld_child_lines l = {0};
  struct got g = {0};
  feed(&l, &g, "{\"act");
  feed(&l, &g, "ion\":");
  assert_int_equal(g.n, 0);
  feed(&l, &g, "1}\nsecond\r\nthird\n\n");
  assert_int_equal(g.n, 4);
  assert_string_equal(g.lines[0], "{\"action\":1}");
  assert_string_equal(g.lines[1], "second");
  assert_string_equal(g.lines[2], "third");
  assert_int_equal(g.lens[3], 0);
  feed(&l, &g, "tail without newline");
  assert_int_equal(g.n, 4);
  kcld_child_lines_free(&l);
}

static void test_lines_too_long(void **state)
{
  (void)state;
  struct kcld_child_lines l = {0};
  struct got g = {0};
  l.max = 8;
  feed(&l, &g, "short\n0123");
  feed(&l, &g, "456789abcdef");      /* past the limit, no newline yet */
  assert_int_equal(g.n, 2);
  assert_int_equal(g.too_long[1], 1);
  assert_int_equal(g.lens[1], 8);
  assert_string_equal(g.lines[1], "01234567");
  feed(&l, &g, "still the long one");
  assert_int_equal(g.n, 2);           /* skipped to its end */
  feed(&l, &g, "...end\nok\n");
  assert_int_equal(g.n, 3);
  assert_string_equal(g.lines[2], "ok");
  assert_int_equal(g.too_long[2], 0);
  /* A long line that ends in the same chunk. */
  feed(&l, &g, "0123456789\nafter\n");
  assert_int_equal(g.n, 5);
  assert_int_equal(g.too_long[3], 1);
  assert_string_equal(g.lines[4], "after");
  /* Exactly the limit is fine. */
  feed(&l, &g, "01234567\n");
  assert_int_equal(g.n, 6);
  assert_int_equal(g.too_long[5], 0);
  kcld_child_lines_free(&l);
}

static void test_lines_flush(void **state)
{
  (void)state;
  struct kcld_child_lines l = {0};
  struct got g = {0};
  feed(&l, &g, "done\nlast words\r");
  assert_int_equal(g.n, 1);
  kcld_child_lines_flush(&l, on_line, &g);
  assert_int_equal(g.n, 2);
  assert_string_equal(g.lines[1], "last words");
  assert_int_equal(g.too_long[1], 0);
  kcld_child_lines_flush(&l, on_line, &g); /* nothing kept any more */
  assert_int_equal(g.n, 2);
  /* The rest of a line already reported too long is not a line. */
  l.max = 4;
  feed(&l, &g, "0123456");
  assert_int_equal(g.n, 3);
  kcld_child_lines_flush(&l, on_line, &g);
  assert_int_equal(g.n, 3);
  kcld_child_lines_free(&l);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_lines_partial_and_crlf),
    cmocka_unit_test(test_lines_too_long),
    cmocka_unit_test(test_lines_flush),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
