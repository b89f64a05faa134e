/* awsenv.c — see awsenv.h. */
#include "awsenv.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

void kcld_test_awsenv_up(struct kcld_test_awsenv *env,
                         enum kcld_aws_service svc, const char *url,
                         int max_attempts)
{
  const char *urls[KCLD_AWS_NSERVICES] = {NULL};
  assert_non_null(url);
  urls[svc] = url;
  kcld_test_awsenv_up_at(env, urls, max_attempts);
}

void kcld_test_awsenv_up_at(struct kcld_test_awsenv *env,
                            const char *const *urls, int max_attempts)
{
  struct kcld_credentials_opts co = {0};
  struct kcld_aws_opts ao = {0};

  memset(env, 0, sizeof(*env));
  assert_int_equal(uv_loop_init(&env->loop), 0);
  assert_int_equal(kcld_http_new(&env->loop, NULL, &env->http), 0);
  co.loop = &env->loop;
  co.http = env->http;
  co.access_key_id = "AKIDKCLDTEST";
  co.secret_access_key = "kcld-test-secret";
  assert_int_equal(kcld_credentials_new(&co, &env->creds), 0);
  ao.loop = &env->loop;
  ao.http = env->http;
  ao.creds = env->creds;
  ao.region = "us-east-1";
  for (int i = 0; i < KCLD_AWS_NSERVICES; i++)
    ao.endpoint[i] = urls[i];
  ao.max_attempts = max_attempts;
  ao.retry_base_ms = 10;
  assert_int_equal(kcld_aws_new(&ao, &env->aws), 0);
}

void kcld_test_awsenv_down(struct kcld_test_awsenv *env)
{
  kcld_aws_close(env->aws);
  kcld_credentials_close(env->creds);
  kcld_http_close(env->http);
  kcld_test_loop_finish(&env->loop);
}
