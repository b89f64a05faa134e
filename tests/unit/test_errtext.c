/* test_errtext.c — a service's error type and message as kcld reports
 * them (src/aws/errtext.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "aws/errtext.h"

static void test_type(void **state)
{
  char t[16];
  (void)state;
  kcld_aws_error_type(t, sizeof(t), "com.amazon#ThrottlingException:uri");
  assert_string_equal(t, "ThrottlingExcep"); /* cut to fit */
  kcld_aws_error_type(t, sizeof(t), " a#Busy \t:x");
  assert_string_equal(t, "Busy");
  kcld_aws_error_type(t, sizeof(t), "Plain");
  assert_string_equal(t, "Plain");
}

static void test_message(void **state)
{
  const char *sig = "Signature mismatch.  The Canonical String for this "
                    "request should have been\nx-amz-security-token:SECRET";
  char m[64];
  (void)state;
  kcld_aws_error_message(m, sizeof(m), sig, strlen(sig));
  assert_string_equal(m, "Signature mismatch.");
  assert_null(strstr(m, "SECRET"));
  kcld_aws_error_message(m, sizeof(m), "one\ttab  \r\nsecond line", 23);
  assert_string_equal(m, "one tab");
  kcld_aws_error_message(m, 6, "abcdefgh", 8);
  assert_string_equal(m, "abcde");
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_type),
    cmocka_unit_test(test_message),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
