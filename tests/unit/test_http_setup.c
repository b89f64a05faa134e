/* test_http_setup.c — a request's header list in one block: the caller's
 * lines in order, then "Expect:" unless one of them is an Expect header
 * (any case); none given, "Expect:" alone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "aws/http_setup.h"
#include "err.h"

/* The list's lines joined by '|'. */
static void joined(const struct curl_slist *l, char *out, size_t cap)
{
  out[0] = '\0';
  for (; l; l = l->next) {
    strncat(out, l->data, cap - strlen(out) - 1);
    if (l->next)
      strncat(out, "|", cap - strlen(out) - 1);
  }
}

static void test_headers_build(void **state)
{
  (void)state;
  const char *const lines[] = {"Host: h:1", "X-Amz-Target: K.GetRecords",
                               "Authorization: AWS4-HMAC-SHA256 x", NULL};
  const char *const own[] = {"Host: h", "expect: 100-continue", NULL};
  struct curl_slist *l;
  size_t size;
  char got[256];

  assert_int_equal(kcld_http_headers_build(lines, &l, &size), 0);
  joined(l, got, sizeof(got));
  assert_string_equal(got, "Host: h:1|X-Amz-Target: K.GetRecords|"
                           "Authorization: AWS4-HMAC-SHA256 x|Expect:");
  /* One block: the lines live inside it. */
  for (const struct curl_slist *n = l; n; n = n->next)
    assert_true(n->data > (char *)l && n->data < (char *)l + size);
  free(l);

  assert_int_equal(kcld_http_headers_build(own, &l, &size), 0);
  joined(l, got, sizeof(got));
  assert_string_equal(got, "Host: h|expect: 100-continue");
  free(l);

  assert_int_equal(kcld_http_headers_build(NULL, &l, &size), 0);
  joined(l, got, sizeof(got));
  assert_string_equal(got, "Expect:");
  free(l);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_headers_build),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
