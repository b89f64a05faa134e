/* test_dynamodb_sink.c — the DynamoDB sink's pure parts: which failed
 * writes are the records' failure (DynamoDB refused the item for its
 * content) and which are the infrastructure's (everything else).  The
 * writes themselves: tests/integration/test_dynamodb_sink.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "aws/svc.h"
#include "err.h"
#include "handlers/dynamodb_sink.h"

struct row {
  int err;
  long http;
  const char *type;
  enum kcld_handler_failure_class want;
};

static void test_failure_class(void **state)
{
  static const struct row rows[] = {
    {KCLD_EAWS, 400, "ValidationException", KCLD_HANDLER_RECORD},
    {KCLD_EAWS, 400, "SerializationException", KCLD_HANDLER_RECORD},
    {KCLD_EAWS, 400, "ProvisionedThroughputExceededException",
     KCLD_HANDLER_INFRA},
    {KCLD_EAWS, 400, "ThrottlingException", KCLD_HANDLER_INFRA},
    {KCLD_EAWS, 400, "RequestLimitExceeded", KCLD_HANDLER_INFRA},
    {KCLD_EAWS, 500, "InternalServerError", KCLD_HANDLER_INFRA},
    {KCLD_EAWS, 503, "", KCLD_HANDLER_INFRA},
    {KCLD_EAWS, 400, "AccessDeniedException", KCLD_HANDLER_INFRA},
    {KCLD_EAWS, 400, "UnrecognizedClientException", KCLD_HANDLER_INFRA},
    {KCLD_EAWS, 400, "TransactionConflictException", KCLD_HANDLER_INFRA},
    {KCLD_ENOTFOUND, 400, "ResourceNotFoundException", KCLD_HANDLER_INFRA},
    {KCLD_ETRANSPORT, 0, "", KCLD_HANDLER_INFRA},
    {KCLD_ETIMEDOUT, 0, "", KCLD_HANDLER_INFRA}, /* still unprocessed */
    {KCLD_EPARSE, 200, "", KCLD_HANDLER_INFRA},
    {KCLD_ECREDS, 0, "", KCLD_HANDLER_INFRA},
    {KCLD_ECANCELED, 0, "", KCLD_HANDLER_INFRA},
  };
  (void)state;
  for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
    struct kcld_svc_status st = {.err = rows[i].err,
                                 .http_status = rows[i].http,
                                 .type = rows[i].type,
                                 .message = ""};
    if (kcld_dynamodb_sink_class(&st) != rows[i].want)
      fail_msg("row %zu (%s, HTTP %ld): class %d, want %d", i, rows[i].type,
               rows[i].http, kcld_dynamodb_sink_class(&st), rows[i].want);
  }
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_failure_class),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
