/* awssync.c — see awssync.h. */
#include "awssync.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "aws/credentials.h"
#include "aws/http.h"
#include "harness.h"

struct kcld_test_aws {
  uv_loop_t loop;
  struct kcld_http *http;
  struct kcld_credentials *creds;
  struct kcld_aws *aws;
  char err_type[128];
};

struct waiter {
  int done;
  json_t *body;
  char *err_type;
  size_t err_len;
};

struct kcld_test_aws *kcld_test_aws_new(const char *kinesis,
                                        const char *dynamodb, const char *sqs)
{
  struct kcld_test_aws *t = calloc(1, sizeof(*t));
  struct kcld_credentials_opts co = {0};
  struct kcld_aws_opts ao = {0};

  assert_non_null(t);
  assert_int_equal(uv_loop_init(&t->loop), 0);
  assert_int_equal(kcld_http_new(&t->loop, NULL, &t->http), 0);
  co.loop = &t->loop;
  co.access_key_id = "test";
  co.secret_access_key = "test";
  assert_int_equal(kcld_credentials_new(&co, &t->creds), 0);
  ao.loop = &t->loop;
  ao.http = t->http;
  ao.creds = t->creds;
  ao.region = "us-east-1";
  ao.endpoint[KCLD_AWS_KINESIS] = kinesis;
  ao.endpoint[KCLD_AWS_DYNAMODB] = dynamodb;
  ao.endpoint[KCLD_AWS_SQS] = sqs;
  ao.retry_base_ms = 20;
  assert_int_equal(kcld_aws_new(&ao, &t->aws), 0);
  return t;
}

static void on_answer(const struct kcld_aws_result *res, void *arg)
{
  struct waiter *w = arg;
  if (res->err == 0 && res->body)
    w->body = json_incref(res->body);
  else
    snprintf(w->err_type, w->err_len, "%s",
             res->error_type ? res->error_type : "");
  if (res->err && (!res->error_type || !*res->error_type))
    fprintf(stderr, "awssync: %s\n", res->message ? res->message : "");
  w->done = 1;
}

json_t *kcld_test_aws_call(struct kcld_test_aws *t, enum kcld_aws_service svc,
                           const char *op, const json_t *req,
                           const char **err_type)
{
  struct waiter w = {0};
  w.err_type = t->err_type;
  w.err_len = sizeof(t->err_type);
  t->err_type[0] = '\0';
  assert_int_equal(kcld_aws_call(t->aws, svc, op, req, NULL, on_answer, &w),
                   0);
  kcld_test_run_until(&t->loop, &w.done, 60000);
  assert_true(w.done);
  if (err_type)
    *err_type = t->err_type;
  return w.body;
}

void kcld_test_aws_free(struct kcld_test_aws *t)
{
  if (!t)
    return; /* a set-up that failed before creating it */
  kcld_aws_close(t->aws);
  kcld_credentials_close(t->creds);
  kcld_http_close(t->http);
  kcld_test_loop_finish(&t->loop);
  free(t);
}
