/* awssync.h — blocking AWS calls for test set-up and checks.
 *
 * Runs kcld's own client (http + call, static test credentials) on a private
 * uv loop and waits for each answer, so a test can create streams, put
 * records and scan tables in a few lines. */
#ifndef KCLD_TEST_AWSSYNC_H
#define KCLD_TEST_AWSSYNC_H

#include <jansson.h>

#include "aws/call.h"

struct kcld_test_aws;

/* Endpoints may be NULL for services the test does not use. */
struct kcld_test_aws *kcld_test_aws_new(const char *kinesis,
                                        const char *dynamodb,
                                        const char *sqs);

/* Calls `op` with `req` (borrowed).  Returns the answer (a new reference) or
 * NULL on error; then *err_type (when not NULL) points at the short AWS
 * error type ("" for transport errors), valid until the next call. */
json_t *kcld_test_aws_call(struct kcld_test_aws *t, enum kcld_aws_service svc,
                           const char *op, const json_t *req,
                           const char **err_type);

/* Closes the client, runs its loop dry and asserts it closed.  NULL is
 * ignored (a teardown after a set-up that failed early). */
void kcld_test_aws_free(struct kcld_test_aws *t);

#endif
