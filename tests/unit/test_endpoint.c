/* test_endpoint.c — where the AWS clients send their requests: the
 * partition table (DNS suffixes of every partition), the standard, FIPS and
 * dual-stack hostnames of Kinesis, DynamoDB, SQS and STS as the services'
 * endpoint rules give them (GovCloud's FIPS exceptions included), the
 * endpoint URLs configured in the environment and the profile (services
 * sections, endpoint_url, the switch that ignores them), the FIPS and
 * dual-stack settings, and the retry settings from the environment and the
 * profile. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "../harness/harness.h"
#include "aws/call.h"
#include "aws/endpoint.h"
#include "aws/http.h"
#include "aws/profile.h"
#include "err.h"
#include "log.h"

static const char *const s_vars[] = {
  "AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
  "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KINESIS", "AWS_ENDPOINT_URL_STS",
  "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_DYNAMODB",
  "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "AWS_USE_FIPS_ENDPOINT",
  "AWS_USE_DUALSTACK_ENDPOINT", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE", NULL};

static char s_dir[64];

static int setup(void **state)
{
  (void)state;
  for (size_t i = 0; s_vars[i]; i++)
    unsetenv(s_vars[i]);
  snprintf(s_dir, sizeof(s_dir), "/tmp/kcld-endpoint-XXXXXX");
  if (!mkdtemp(s_dir))
    return -1;
  setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/kcld/credentials", 1);
  setenv("AWS_CONFIG_FILE", "/nonexistent/kcld/config", 1);
  return 0;
}

static int teardown(void **state)
{
  char path[128];
  (void)state;
  snprintf(path, sizeof(path), "%s/config", s_dir);
  unlink(path);
  rmdir(s_dir);
  for (size_t i = 0; s_vars[i]; i++)
    unsetenv(s_vars[i]);
  return 0;
}

static void config(const char *text)
{
  char path[128];
  FILE *f;
  snprintf(path, sizeof(path), "%s/config", s_dir);
  f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  setenv("AWS_CONFIG_FILE", path, 1);
}

static void test_partitions(void **state)
{
  static const struct {
    const char *region, *id, *dns, *dual;
  } v[] = {
    {"us-east-1", "aws", "amazonaws.com", "api.aws"},
    {"eu-west-3", "aws", "amazonaws.com", "api.aws"},
    {"il-central-1", "aws", "amazonaws.com", "api.aws"},
    {"mx-central-1", "aws", "amazonaws.com", "api.aws"},
    {"cn-north-1", "aws-cn", "amazonaws.com.cn",
     "api.amazonwebservices.com.cn"},
    {"cn-northwest-1", "aws-cn", "amazonaws.com.cn",
     "api.amazonwebservices.com.cn"},
    {"us-gov-west-1", "aws-us-gov", "amazonaws.com", "api.aws"},
    {"us-gov-east-1", "aws-us-gov", "amazonaws.com", "api.aws"},
    {"us-iso-east-1", "aws-iso", "c2s.ic.gov", "api.aws.ic.gov"},
    {"us-isob-east-1", "aws-iso-b", "sc2s.sgov.gov", "api.aws.scloud"},
    {"eu-isoe-west-1", "aws-iso-e", "cloud.adc-e.uk",
     "api.cloud-aws.adc-e.uk"},
    {"us-isof-south-1", "aws-iso-f", "csp.hci.ic.gov", "api.aws.hci.ic.gov"},
    {"eusc-de-east-1", "aws-eusc", "amazonaws.eu",
     "api.amazonwebservices.eu"},
    /* No partition claims it: aws, as in the SDKs. */
    {"local", "aws", "amazonaws.com", "api.aws"},
    {"cn-north", "aws", "amazonaws.com", "api.aws"},
  };
  (void)state;
  for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
    const struct kcld_partition *p = kcld_partition_of(v[i].region);
    if (strcmp(p->id, v[i].id) != 0)
      fail_msg("%s: partition %s, want %s", v[i].region, p->id, v[i].id);
    assert_string_equal(p->dns_suffix, v[i].dns);
    assert_string_equal(p->dual_stack_dns_suffix, v[i].dual);
  }
}

static void test_hostnames(void **state)
{
  static const struct kcld_endpoint_spec kinesis = {"kinesis", 0, 0},
                                         dynamodb = {"dynamodb", 1, 0},
                                         sts = {"sts", 1, 0},
                                         s3 = {"s3", 0, 1};
  static const struct {
    const struct kcld_endpoint_spec *svc;
    const char *region;
    int fips, dual;
    const char *url;
  } v[] = {
    {&kinesis, "us-east-1", 0, 0, "https://kinesis.us-east-1.amazonaws.com"},
    {&kinesis, "us-east-1", 1, 0,
     "https://kinesis-fips.us-east-1.amazonaws.com"},
    {&kinesis, "us-east-1", 0, 1, "https://kinesis.us-east-1.api.aws"},
    {&kinesis, "us-east-1", 1, 1, "https://kinesis-fips.us-east-1.api.aws"},
    {&kinesis, "cn-north-1", 0, 0,
     "https://kinesis.cn-north-1.amazonaws.com.cn"},
    {&kinesis, "cn-north-1", 0, 1,
     "https://kinesis.cn-north-1.api.amazonwebservices.com.cn"},
    {&kinesis, "us-gov-west-1", 1, 0,
     "https://kinesis-fips.us-gov-west-1.amazonaws.com"},
    {&kinesis, "us-gov-west-1", 0, 1,
     "https://kinesis.us-gov-west-1.api.aws"},
    /* GovCloud's DynamoDB and STS are FIPS already. */
    {&dynamodb, "us-gov-east-1", 1, 0,
     "https://dynamodb.us-gov-east-1.amazonaws.com"},
    {&dynamodb, "us-gov-east-1", 1, 1,
     "https://dynamodb-fips.us-gov-east-1.api.aws"},
    {&dynamodb, "ca-central-1", 1, 0,
     "https://dynamodb-fips.ca-central-1.amazonaws.com"},
    {&dynamodb, "us-iso-west-1", 1, 0,
     "https://dynamodb-fips.us-iso-west-1.c2s.ic.gov"},
    {&sts, "us-gov-west-1", 1, 0, "https://sts.us-gov-west-1.amazonaws.com"},
    {&sts, "eu-west-1", 0, 0, "https://sts.eu-west-1.amazonaws.com"},
    {&sts, "us-isob-east-1", 0, 0, "https://sts.us-isob-east-1.sc2s.sgov.gov"},
    /* S3 names its dual-stack hosts with a "dualstack" label. */
    {&s3, "eu-west-1", 0, 0, "https://s3.eu-west-1.amazonaws.com"},
    {&s3, "us-east-1", 1, 0, "https://s3-fips.us-east-1.amazonaws.com"},
    {&s3, "us-east-1", 0, 1, "https://s3.dualstack.us-east-1.amazonaws.com"},
    {&s3, "us-east-2", 1, 1,
     "https://s3-fips.dualstack.us-east-2.amazonaws.com"},
    {&s3, "cn-north-1", 0, 1,
     "https://s3.dualstack.cn-north-1.amazonaws.com.cn"},
    {&s3, "us-gov-west-1", 1, 0,
     "https://s3-fips.us-gov-west-1.amazonaws.com"},
  };
  char url[256];
  (void)state;
  for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
    assert_int_equal(kcld_endpoint_default(v[i].svc, v[i].region, v[i].fips,
                                           v[i].dual, url, sizeof(url)),
                     0);
    assert_string_equal(url, v[i].url);
  }
  assert_int_equal(kcld_endpoint_default(&kinesis, "us-east-1", 0, 0, url, 10),
                   KCLD_EINVAL);
}

/* The endpoint an AWS client built with these options sends `svc` to. */
static char *client_endpoint(const struct kcld_aws_opts *given,
                             enum kcld_aws_service svc, int *rc)
{
  struct kcld_aws_opts o = *given;
  uv_loop_t loop;
  struct kcld_http *http;
  struct kcld_aws *aws = NULL;
  char *out = NULL;
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(kcld_http_new(&loop, NULL, &http), 0);
  o.loop = &loop;
  o.http = http;
  *rc = kcld_aws_new(&o, &aws);
  if (*rc == 0) {
    out = strdup(kcld_aws_endpoint(aws, svc));
    kcld_aws_close(aws);
  }
  kcld_http_close(http);
  kcld_test_loop_finish(&loop);
  return out;
}

static void expect(const struct kcld_aws_opts *o, enum kcld_aws_service svc,
                   const char *want)
{
  int rc;
  char *got = client_endpoint(o, svc, &rc);
  assert_int_equal(rc, 0);
  if (strcmp(got, want) != 0)
    fail_msg("endpoint %s, want %s", got, want);
  free(got);
}

static void test_client_endpoints(void **state)
{
  struct kcld_aws_opts o = {.region = "eu-west-1"};
  (void)state;
  expect(&o, KCLD_AWS_KINESIS, "https://kinesis.eu-west-1.amazonaws.com/");
  expect(&o, KCLD_AWS_STS, "https://sts.eu-west-1.amazonaws.com/");
  expect(&o, KCLD_AWS_S3, "https://s3.eu-west-1.amazonaws.com/");
  o.region = "cn-northwest-1";
  expect(&o, KCLD_AWS_SQS, "https://sqs.cn-northwest-1.amazonaws.com.cn/");

  /* FIPS and dual-stack: the environment, then the profile; the options
   * win over both. */
  o.region = "us-east-1";
  setenv("AWS_USE_FIPS_ENDPOINT", "true", 1);
  expect(&o, KCLD_AWS_DYNAMODB, "https://dynamodb-fips.us-east-1.amazonaws.com/");
  o.use_fips = -1;
  expect(&o, KCLD_AWS_DYNAMODB, "https://dynamodb.us-east-1.amazonaws.com/");
  o.use_fips = 0;
  unsetenv("AWS_USE_FIPS_ENDPOINT");
  config("[default]\nuse_dualstack_endpoint = true\n"
         "[profile fips]\nuse_fips_endpoint = TRUE\n");
  expect(&o, KCLD_AWS_KINESIS, "https://kinesis.us-east-1.api.aws/");
  o.profile = "fips";
  expect(&o, KCLD_AWS_KINESIS, "https://kinesis-fips.us-east-1.amazonaws.com/");
  setenv("AWS_USE_FIPS_ENDPOINT", "false", 1); /* the environment first */
  expect(&o, KCLD_AWS_KINESIS, "https://kinesis.us-east-1.amazonaws.com/");
  unsetenv("AWS_USE_FIPS_ENDPOINT");
  o.profile = NULL;
}

static void test_configured_endpoints(void **state)
{
  struct kcld_aws_opts o = {.region = "us-east-1"};
  (void)state;
  config("[default]\n"
         "services = local\n"
         "endpoint_url = http://127.0.0.1:9000\n"
         "[services local]\n"
         "kinesis =\n"
         "  endpoint_url = http://127.0.0.1:4567\n"
         "sts =\n"
         "  endpoint_url = http://127.0.0.1:4599 ; STS stand-in\n"
         "[profile other]\n"
         "region = eu-west-1\n");
  /* The profile's services section, then its endpoint_url. */
  expect(&o, KCLD_AWS_KINESIS, "http://127.0.0.1:4567/");
  expect(&o, KCLD_AWS_STS, "http://127.0.0.1:4599/");
  expect(&o, KCLD_AWS_SQS, "http://127.0.0.1:9000/");
  /* The environment beats the profile: per service, then the global one. */
  setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:7000", 1);
  expect(&o, KCLD_AWS_KINESIS, "http://127.0.0.1:7000/");
  setenv("AWS_ENDPOINT_URL_KINESIS", "http://127.0.0.1:7001", 1);
  expect(&o, KCLD_AWS_KINESIS, "http://127.0.0.1:7001/");
  expect(&o, KCLD_AWS_DYNAMODB, "http://127.0.0.1:7000/");
  setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:7003", 1);
  expect(&o, KCLD_AWS_S3, "http://127.0.0.1:7003/");
  unsetenv("AWS_ENDPOINT_URL_S3");
  /* The options beat everything. */
  o.endpoint[KCLD_AWS_KINESIS] = "http://127.0.0.1:7002";
  expect(&o, KCLD_AWS_KINESIS, "http://127.0.0.1:7002/");
  o.endpoint[KCLD_AWS_KINESIS] = NULL;
  /* All but the options are ignored on request. */
  setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true", 1);
  expect(&o, KCLD_AWS_KINESIS, "https://kinesis.us-east-1.amazonaws.com/");
  unsetenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS");
  unsetenv("AWS_ENDPOINT_URL");
  unsetenv("AWS_ENDPOINT_URL_KINESIS");
  /* Another profile has no such settings. */
  o.profile = "other";
  expect(&o, KCLD_AWS_KINESIS, "https://kinesis.us-east-1.amazonaws.com/");
  o.profile = NULL;
}

static void test_retry_settings(void **state)
{
  struct kcld_aws_opts o = {.region = "us-east-1"};
  int rc;
  char *got;
  (void)state;
  kcld_log_setup(KCLD_LOG_OFF, KCLD_LOG_JSON, NULL);
  setenv("AWS_MAX_ATTEMPTS", "zero", 1);
  got = client_endpoint(&o, KCLD_AWS_KINESIS, &rc);
  assert_int_equal(rc, KCLD_EINVAL);
  assert_null(got);
  unsetenv("AWS_MAX_ATTEMPTS");
  setenv("AWS_RETRY_MODE", "eager", 1);
  got = client_endpoint(&o, KCLD_AWS_KINESIS, &rc);
  assert_int_equal(rc, KCLD_EINVAL);
  unsetenv("AWS_RETRY_MODE");
  config("[default]\nretry_mode = sometimes\n");
  got = client_endpoint(&o, KCLD_AWS_KINESIS, &rc);
  assert_int_equal(rc, KCLD_EINVAL);
  /* The options win: a valid mode given, the profile is not read. */
  o.retry_mode = "adaptive";
  got = client_endpoint(&o, KCLD_AWS_KINESIS, &rc);
  assert_int_equal(rc, 0);
  free(got);
  config("[default]\nretry_mode = legacy\nmax_attempts = 7\n");
  o.retry_mode = NULL;
  got = client_endpoint(&o, KCLD_AWS_KINESIS, &rc);
  assert_int_equal(rc, 0);
  free(got);
  kcld_log_setup(KCLD_LOG_INFO, KCLD_LOG_JSON, NULL);
}

/* An endpoint URL split for requests: Host with its port, the path ("/"
 * when none), the scheme and an IP literal noted; other schemes, a user
 * part, a query or a fragment refused; a URL with a user part never shown
 * in a log line. */
static void test_endpoint_parse(void **state)
{
  (void)state;
  struct kcld_endpoint ep = {0};
  const char *const bad[] = {"ftp://h/", "http://u:p@h/", "http://h/?q=1",
                             "http://h/#f", "not a url", NULL};

  assert_int_equal(kcld_endpoint_parse(&ep, "http://127.0.0.1:4567/base"), 0);
  assert_string_equal(ep.host, "127.0.0.1:4567");
  assert_string_equal(ep.path, "/base");
  assert_int_equal(ep.https, 0);
  assert_int_equal(ep.ip_host, 1);
  kcld_endpoint_clean_up(&ep);
  assert_null(ep.url);

  assert_int_equal(
    kcld_endpoint_parse(&ep, "https://kinesis.us-east-1.amazonaws.com"), 0);
  assert_string_equal(ep.host, "kinesis.us-east-1.amazonaws.com");
  assert_string_equal(ep.path, "/");
  assert_int_equal(ep.https, 1);
  assert_int_equal(ep.ip_host, 0);
  kcld_endpoint_clean_up(&ep);

  for (int i = 0; bad[i]; i++) {
    assert_int_equal(kcld_endpoint_parse(&ep, bad[i]), KCLD_EINVAL);
    kcld_endpoint_clean_up(&ep);
  }
  assert_string_equal(kcld_endpoint_loggable_url("http://h:1/"),
                      "http://h:1/");
  assert_null(strstr(kcld_endpoint_loggable_url("http://u:secret@h/"),
                     "secret"));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_partitions, setup, teardown),
    cmocka_unit_test_setup_teardown(test_hostnames, setup, teardown),
    cmocka_unit_test_setup_teardown(test_client_endpoints, setup, teardown),
    cmocka_unit_test_setup_teardown(test_configured_endpoints, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_retry_settings, setup, teardown),
    cmocka_unit_test(test_endpoint_parse),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
