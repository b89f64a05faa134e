/* test_svc_transient.c — which failures are worth trying again as they are
 * (kcld_svc_transient, over the call layer's kcld_aws_error_is_transient):
 * no answer, timeouts, throttling and 5xx answers are; refusals, missing
 * resources, failed conditions, credentials, unreadable answers, cancels
 * and success are not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "aws/call.h"
#include "aws/svc.h"
#include "err.h"

static int transient(int err, long status, const char *type)
{
  struct kcld_svc_status st = {err, status, type, "", 1};
  return kcld_svc_transient(&st);
}

static void test_transient(void **state)
{
  (void)state;
  assert_true(transient(KCLD_ETRANSPORT, 0, ""));
  assert_true(transient(KCLD_ETIMEDOUT, 0, ""));
  assert_true(transient(KCLD_EAWS, 500, "InternalServerError"));
  assert_true(transient(KCLD_EAWS, 500, ""));
  assert_true(transient(KCLD_EAWS, 503, "ServiceUnavailable"));
  assert_true(transient(KCLD_EAWS, 501, "")); /* any 5xx */
  assert_true(transient(KCLD_EAWS, 429, ""));
  assert_true(transient(KCLD_EAWS, 400,
                        "ProvisionedThroughputExceededException"));
  assert_true(transient(KCLD_EAWS, 400, "ThrottlingException"));
  assert_true(transient(KCLD_EAWS, 400, "LimitExceededException"));
  assert_true(transient(KCLD_EAWS, 400, "RequestLimitExceeded"));
  assert_true(transient(KCLD_EAWS, 400, "RequestTimeoutException"));
}

static void test_not_transient(void **state)
{
  (void)state;
  assert_false(kcld_svc_transient(NULL));
  assert_false(transient(0, 200, ""));
  assert_false(transient(KCLD_EAWS, 400, "AccessDeniedException"));
  assert_false(transient(KCLD_EAWS, 400, "ValidationException"));
  assert_false(transient(KCLD_EAWS, 400, "UnrecognizedClientException"));
  assert_false(transient(KCLD_EAWS, 403, "InvalidSignatureException"));
  assert_false(transient(KCLD_ENOTFOUND, 400, "ResourceNotFoundException"));
  assert_false(transient(KCLD_ECONDITION, 400,
                         "ConditionalCheckFailedException"));
  assert_false(transient(KCLD_ECREDS, 0, ""));
  assert_false(transient(KCLD_EPARSE, 200, ""));
  assert_false(transient(KCLD_ECANCELED, 0, ""));
  assert_false(transient(KCLD_ECONFIG, 0, ""));
  assert_false(transient(KCLD_ENOMEM, 0, ""));
  /* The call layer's own test, without a status. */
  assert_false(kcld_aws_error_is_transient(400, NULL));
  assert_false(kcld_aws_error_is_transient(0, "AccessDeniedException"));
  assert_true(kcld_aws_error_is_transient(0, "SlowDown"));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_transient),
    cmocka_unit_test(test_not_transient),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
