/* test_identity.c — the stream's and the function's ARNs kcld resolves at
 * start-up (aws/identity.h), against kinesalite behind the fault endpoint
 * and the fake STS:
 *   - the names: accounts out of ARNs, stream and function ARNs in the
 *     aws, aws-cn and aws-us-gov partitions;
 *   - a stream configured by name: DescribeStreamSummary's ARN, its
 *     account in the function ARN, STS not asked;
 *   - DescribeStreamSummary refused (AccessDeniedException): the account
 *     from STS GetCallerIdentity, the stream ARN built from it;
 *   - a stream that does not exist: "" and an account-less function ARN,
 *     STS not asked;
 *   - a stream configured by ARN: no call at all;
 *   - the Kinesis client closed first: KCLD_ECANCELED. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "aws/identity.h"
#include "aws/kinesis.h"
#include "aws/sts.h"
#include "awsenv.h"
#include "awssync.h"
#include "e2e.h"
#include "err.h"
#include "fault.h"
#include "harness.h"

#define WAIT_MS 20000
#define STREAM "ident-stream"

static struct kcld_emu s_emu;
static char s_arn[256]; /* kinesalite's ARN of STREAM */

struct got {
  int done;
  int err;
  char stream_arn[256];
  char account[32];
  char function_arn[256];
};

static void on_done(int err, const struct kcld_identity *id, void *arg)
{
  struct got *g = arg;
  g->done = 1;
  g->err = err;
  if (id) {
    snprintf(g->stream_arn, sizeof(g->stream_arn), "%s", id->stream_arn);
    snprintf(g->account, sizeof(g->account), "%s", id->account);
    snprintf(g->function_arn, sizeof(g->function_arn), "%s",
             id->function_arn);
  }
}

/* Sets the fault endpoint's steps (JSON array text); the rest goes on to
 * kinesalite. */
static void fault_steps(const char *steps)
{
  assert_int_equal(kcld_fault_steps(kcld_emu_url(&s_emu, "fault"),
                                    kcld_emu_url(&s_emu, "kinesis"), steps),
                   0);
}

/* Resolves `stream` in us-east-1 through the fault endpoint (with `steps`)
 * and the fake STS. */
static void resolve(const char *stream, const char *steps, struct got *g)
{
  struct kcld_test_awsenv env;
  struct kcld_kinesis *k = NULL;
  struct kcld_sts *sts = NULL;
  struct kcld_identity_opts o = {0};

  memset(g, 0, sizeof(*g));
  fault_steps(steps);
  json_decref(kcld_fault_post(kcld_emu_url(&s_emu, "sts"), "/__reset", "{}"));
  json_decref(kcld_fault_post(kcld_emu_url(&s_emu, "sts"), "/__control",
                              "{\"keys\":{\"AKIDKCLDTEST\":"
                              "\"kcld-test-secret\"}}"));
  kcld_test_awsenv_up(&env, KCLD_AWS_KINESIS, kcld_emu_url(&s_emu, "fault"),
                      2);
  assert_int_equal(kcld_kinesis_new(env.aws, &env.loop, &k), 0);
  assert_int_equal(kcld_sts_new(env.aws, &env.loop, &sts), 0);
  o.kinesis = k;
  o.sts = sts;
  o.stream = stream;
  o.region = "us-east-1";
  o.application = "orders";
  assert_int_equal(kcld_identity_resolve(&o, on_done, g), 0);
  kcld_test_run_until(&env.loop, &g->done, WAIT_MS);
  assert_true(g->done);
  kcld_sts_close(sts);
  kcld_kinesis_close(k);
  kcld_test_awsenv_down(&env);
}

/* GetCallerIdentity calls the fake STS answered. */
static size_t sts_calls(void)
{
  json_t *st = kcld_fault_post(kcld_emu_url(&s_emu, "sts"), "/__stats", NULL);
  size_t n;
  assert_non_null(st);
  n = json_array_size(json_object_get(st, "calls"));
  json_decref(st);
  return n;
}

static void test_names(void **state)
{
  char buf[32];
  char *s;
  (void)state;

  assert_string_equal(kcld_identity_account_of(
    "arn:aws:kinesis:us-east-2:111122223333:stream/lambda-stream", buf,
    sizeof(buf)), "111122223333");
  assert_string_equal(kcld_identity_account_of("orders", buf, sizeof(buf)),
                      "");
  assert_string_equal(kcld_identity_account_of("arn:aws:kinesis", buf,
                                               sizeof(buf)), "");

  s = kcld_identity_stream_arn("cn-north-1", "123456789012", "orders");
  assert_string_equal(s, "arn:aws-cn:kinesis:cn-north-1:123456789012:"
                         "stream/orders");
  free(s);
  s = kcld_identity_stream_arn("us-gov-west-1", "123456789012", "orders");
  assert_string_equal(s, "arn:aws-us-gov:kinesis:us-gov-west-1:"
                         "123456789012:stream/orders");
  free(s);

  /* Partition, region and account from the stream ARN ... */
  s = kcld_identity_function_arn(
    "arn:aws-cn:kinesis:cn-northwest-1:210987654321:stream/o", "us-east-1",
    "123456789012", "app");
  assert_string_equal(s, "arn:aws-cn:lambda:cn-northwest-1:210987654321:"
                         "function:kcld-app");
  free(s);
  /* ... else from the region and the account given ... */
  s = kcld_identity_function_arn("", "eu-west-1", "123456789012", "app");
  assert_string_equal(s, "arn:aws:lambda:eu-west-1:123456789012:function:"
                         "kcld-app");
  free(s);
  /* ... or left empty when unknown. */
  s = kcld_identity_function_arn(NULL, "cn-north-1", NULL, "app");
  assert_string_equal(s, "arn:aws-cn:lambda:cn-north-1::function:kcld-app");
  free(s);
}

static void test_by_name(void **state)
{
  struct got g;
  char want[256];
  (void)state;

  resolve(STREAM, "[]", &g);
  assert_int_equal(g.err, 0);
  assert_string_equal(g.stream_arn, s_arn);
  assert_string_equal(g.account, "000000000000");
  snprintf(want, sizeof(want),
           "arn:aws:lambda:us-east-1:000000000000:function:kcld-orders");
  assert_string_equal(g.function_arn, want);
  assert_int_equal(kcld_fault_count(kcld_emu_url(&s_emu, "fault"), NULL,
                                    "Kinesis_20131202.DescribeStreamSummary"),
                   1);
  assert_int_equal(sts_calls(), 0);
}

static void test_denied_asks_sts(void **state)
{
  struct got g;
  (void)state;

  resolve(STREAM,
          "[{\"target\":\"DescribeStreamSummary\",\"status\":400,"
          "\"body\":{\"__type\":\"AccessDeniedException\",\"message\":"
          "\"not authorized to perform: kinesis:DescribeStreamSummary\"}}]",
          &g);
  assert_int_equal(g.err, 0);
  assert_string_equal(g.stream_arn, "arn:aws:kinesis:us-east-1:123456789012:"
                                    "stream/" STREAM);
  assert_string_equal(g.account, "123456789012");
  assert_string_equal(g.function_arn, "arn:aws:lambda:us-east-1:"
                                      "123456789012:function:kcld-orders");
  assert_int_equal(sts_calls(), 1);
}

static void test_missing_stream(void **state)
{
  struct got g;
  (void)state;

  resolve("no-such-stream", "[]", &g);
  assert_int_equal(g.err, 0);
  assert_string_equal(g.stream_arn, "");
  assert_string_equal(g.account, "");
  assert_string_equal(g.function_arn,
                      "arn:aws:lambda:us-east-1::function:kcld-orders");
  assert_int_equal(sts_calls(), 0);
}

static void test_arn_configured(void **state)
{
  struct got g;
  (void)state;

  resolve("arn:aws-us-gov:kinesis:us-gov-east-1:444455556666:stream/x",
          "[]", &g);
  assert_int_equal(g.err, 0);
  assert_string_equal(g.stream_arn,
                      "arn:aws-us-gov:kinesis:us-gov-east-1:444455556666:"
                      "stream/x");
  assert_string_equal(g.account, "444455556666");
  assert_string_equal(g.function_arn, "arn:aws-us-gov:lambda:us-gov-east-1:"
                                      "444455556666:function:kcld-orders");
  assert_int_equal(kcld_fault_count(kcld_emu_url(&s_emu, "fault"), "total",
                                    NULL), 0);
  assert_int_equal(sts_calls(), 0);
}

static void test_close_cancels(void **state)
{
  struct kcld_test_awsenv env;
  struct kcld_kinesis *k = NULL;
  struct kcld_identity_opts o = {0};
  struct got g = {0};
  (void)state;

  fault_steps("[{\"delay_ms\":5000}]");
  kcld_test_awsenv_up(&env, KCLD_AWS_KINESIS, kcld_emu_url(&s_emu, "fault"),
                      1);
  assert_int_equal(kcld_kinesis_new(env.aws, &env.loop, &k), 0);
  o.kinesis = k;
  o.stream = STREAM;
  o.region = "us-east-1";
  o.application = "orders";
  assert_int_equal(kcld_identity_resolve(&o, on_done, &g), 0);
  uv_run(&env.loop, UV_RUN_NOWAIT);
  assert_false(g.done);
  kcld_kinesis_close(k);
  assert_true(g.done);
  assert_int_equal(g.err, KCLD_ECANCELED);
  kcld_test_awsenv_down(&env);
}

static int setup(void **state)
{
  struct kcld_test_aws *t;
  json_t *d;
  (void)state;

  t = kcld_test_aws_new(kcld_emu_url(&s_emu, "kinesis"), NULL, NULL);
  kcld_e2e_create_stream(t, STREAM, 1);
  d = kcld_e2e_call(t, KCLD_AWS_KINESIS, "DescribeStreamSummary",
                    json_pack("{s:s}", "StreamName", STREAM));
  snprintf(s_arn, sizeof(s_arn), "%s", json_string_value(json_object_get(
    json_object_get(d, "StreamDescriptionSummary"), "StreamARN")));
  json_decref(d);
  kcld_test_aws_free(t);
  return 0;
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_names),
    cmocka_unit_test(test_by_name),
    cmocka_unit_test(test_denied_asks_sts),
    cmocka_unit_test(test_missing_stream),
    cmocka_unit_test(test_arn_configured),
    cmocka_unit_test(test_close_cancels),
  };
  int rc;

  json_object_seed(0);
  if (kcld_http_global_init() != 0 ||
      kcld_emu_start(&s_emu, "kinesis fault sts") != 0) {
    fprintf(stderr, "emulators did not start\n");
    return 1;
  }
  /* GetCallerIdentity goes to the fake STS (aws/endpoint.h). */
  setenv("AWS_ENDPOINT_URL_STS", kcld_emu_url(&s_emu, "sts"), 1);
  rc = cmocka_run_group_tests(tests, setup, NULL);
  kcld_emu_stop(&s_emu);
  kcld_http_global_cleanup();
  return rc;
}
