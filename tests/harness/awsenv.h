/* awsenv.h — kcld's own AWS call layer set up for a test that drives a
 * service wrapper (kinesis.h, dynamodb.h, sqs.h) on a loop of its own: the
 * loop, the HTTP client, static test credentials and a kcld_aws client with
 * one endpoint. */
#ifndef KCLD_TEST_AWSENV_H
#define KCLD_TEST_AWSENV_H

#include <uv.h>

#include "aws/call.h"
#include "aws/credentials.h"
#include "aws/http.h"

struct kcld_test_awsenv {
  uv_loop_t loop;
  struct kcld_http *http;
  struct kcld_credentials *creds;
  struct kcld_aws *aws;
};

/* Initialises the loop and opens the HTTP client, the credentials
 * ("AKIDKCLDTEST" / "kcld-test-secret") and a kcld_aws in region us-east-1
 * with `url` (not NULL) as the endpoint of `svc`, retries from 10 ms and
 * `max_attempts` attempts a call (0: the call layer's default).  Asserts
 * every step. */
void kcld_test_awsenv_up(struct kcld_test_awsenv *env,
                         enum kcld_aws_service svc, const char *url,
                         int max_attempts);

/* kcld_test_awsenv_up with urls[svc] (NULL: none) as the endpoint of each
 * service: for a test of several services (KCLD_AWS_NSERVICES entries). */
void kcld_test_awsenv_up_at(struct kcld_test_awsenv *env,
                            const char *const *urls, int max_attempts);

/* Closes the kcld_aws, the credentials and the HTTP client, then runs the
 * loop dry and asserts it closes (kcld_test_loop_finish).  Close the
 * service wrapper first. */
void kcld_test_awsenv_down(struct kcld_test_awsenv *env);

#endif
