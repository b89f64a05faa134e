/* test_properties.c — the KCL .properties reader: Java syntax (separators,
 * comments, continuations, escapes, duplicates) and the mapping of every
 * KCL key to its kcld setting, with ignored keys logged once with a reason
 * and bad values reported with the line and both names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "err.h"
#include "log.h"
#include "properties.h"

static struct kcld_properties *parse(const char *text)
{
  struct kcld_properties *p = NULL;
  assert_int_equal(kcld_properties_parse(text, strlen(text), &p), 0);
  assert_non_null(p);
  return p;
}

static void expect_prop(const struct kcld_properties *p, const char *key,
                         const char *value, size_t line)
{
  size_t l = 0;
  const char *v = kcld_properties_get(p, key, &l);
  if (!v)
    fail_msg("key '%s' missing", key);
  assert_string_equal(v, value);
  assert_int_equal(l, line);
}

static void test_syntax_separators(void **state)
{
  (void)state;
  struct kcld_properties *p = parse(
    "a=1\n"
    "b : 2\n"
    "c 3\n"
    "  d\t=\t4 \n"
    "e\n"
    "f=\n"
    "g==x\n"
    "h:=y\n"
    "i = a = b : c\n");
  expect_prop(p, "a", "1", 1);
  expect_prop(p, "b", "2", 2);
  expect_prop(p, "c", "3", 3);
  expect_prop(p, "d", "4 ", 4); /* trailing blanks are kept, as in Java */
  expect_prop(p, "e", "", 5);
  expect_prop(p, "f", "", 6);
  expect_prop(p, "g", "=x", 7);
  expect_prop(p, "h", "=y", 8);
  expect_prop(p, "i", "a = b : c", 9);
  assert_int_equal(kcld_properties_count(p), 9);
  kcld_properties_free(p);
}

static void test_syntax_comments_and_lines(void **state)
{
  (void)state;
  struct kcld_properties *p = parse(
    "# comment = not a key\r\n"
    "! another: comment\r\n"
    "   # indented comment\r"
    "\r"
    "\t\n"
    "x=1\r\n"
    "y=2\r"
    "z=3");
  assert_int_equal(kcld_properties_count(p), 3);
  expect_prop(p, "x", "1", 6);
  expect_prop(p, "y", "2", 7);
  expect_prop(p, "z", "3", 8);
  assert_null(kcld_properties_get(p, "#", NULL));
  kcld_properties_free(p);
}

static void test_syntax_continuations(void **state)
{
  (void)state;
  struct kcld_properties *p = parse(
    "cmd = python3 \\\n"
    "      app.py \\\n"
    "      --verbose\n"
    "two = ends in a backslash \\\\\n"
    "three = 3\n"
    "# a comment ending in a backslash does not continue \\\n"
    "four = 4\n"
    "last = at the end \\");
  expect_prop(p, "cmd", "python3 app.py --verbose", 1);
  expect_prop(p, "two", "ends in a backslash \\", 4);
  expect_prop(p, "three", "3", 5);
  expect_prop(p, "four", "4", 7);
  expect_prop(p, "last", "at the end ", 8);
  kcld_properties_free(p);
}

static void test_syntax_escapes(void **state)
{
  (void)state;
  struct kcld_properties *p = parse(
    "key\\ with\\ spaces = v\n"
    "k\\=eq\\:colon = v2\n"
    "esc = tab\\tnl\\ncr\\rff\\f\\q\\\\\n"
    "uni = \\u00e9\\u20ac\\ud83d\\ude00\n"
    "bad = \\u12x4\n");
  expect_prop(p, "key with spaces", "v", 1);
  expect_prop(p, "k=eq:colon", "v2", 2);
  expect_prop(p, "esc", "tab\tnl\ncr\rff\fq\\", 3);
  expect_prop(p, "uni", "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 4);
  expect_prop(p, "bad", "\\u12x4", 5);
  kcld_properties_free(p);
}

static void test_syntax_duplicates(void **state)
{
  (void)state;
  struct kcld_properties *p = parse("a=1\nb=2\na=3\n");
  const char *k, *v;
  size_t line;
  assert_int_equal(kcld_properties_count(p), 2);
  expect_prop(p, "a", "3", 3);
  kcld_properties_entry(p, 0, &k, &v, &line);
  assert_string_equal(k, "a");
  kcld_properties_entry(p, 1, &k, &v, &line);
  assert_string_equal(k, "b");
  kcld_properties_free(p);
}

/* Maps text to a config; the log goes to *log (malloc'd, caller frees). */
static int map(const char *text, struct kcld_config **cfg, char **errors,
               char **log)
{
  struct kcld_properties *p = parse(text);
  size_t len = 0;
  FILE *f = open_memstream(log, &len);
  assert_non_null(f);
  kcld_log_setup(KCLD_LOG_INFO, KCLD_LOG_TEXT, f);
  int rc = kcld_properties_to_config(p, "app.properties", cfg, errors);
  kcld_log_setup(KCLD_LOG_INFO, KCLD_LOG_TEXT, NULL);
  fclose(f);
  kcld_properties_free(p);
  return rc;
}

static size_t count(const char *hay, const char *needle)
{
  size_t n = 0;
  for (const char *s = hay; (s = strstr(s, needle)); s += strlen(needle))
    n++;
  return n;
}

static void test_map_every_key(void **state)
{
  (void)state;
  struct kcld_config *cfg = NULL;
  char *errors = NULL, *log = NULL;
  int rc = map(
    "executableName = python3 /opt/app/processor.py --flag\n"
    "streamName = orders\n"
    "applicationName = orders-app\n"
    "tableName = orders-leases\n"
    "workerId = worker-7\n"
    "regionName = eu-west-1\n"
    "kinesisEndpoint = http://127.0.0.1:4567\n"
    "dynamoDBEndpoint = dynamodb.eu-west-1.amazonaws.com\n"
    "initialPositionInStream = LATEST\n"
    "maxRecords = 500\n"
    "retrievalMode = FANOUT\n"
    "idleTimeBetweenReadsInMillis = 250\n"
    "failoverTimeMillis = 20000\n"
    "shardSyncIntervalMillis = 120000\n"
    "maxLeasesForWorker = 12\n"
    "maxLeasesToStealAtOneTime = 3\n"
    "parentShardPollIntervalMillis = 10000\n"
    "cleanupLeasesUponShardCompletion = true\n"
    "timeoutInSeconds = 90\n"
    "shutdownGraceMillis = 15000\n"
    "taskBackoffTimeMillis = 700\n"
    "AWSCredentialsProvider = ProfileCredentialsProvider|analytics\n"
    "processingLanguage = python/3.11\n",
    &cfg, &errors, &log);
  if (rc != 0)
    fail_msg("rc %d: %s", rc, errors ? errors : "");
  assert_int_equal(cfg->handler.type, KCLD_CONFIG_HANDLER_MULTILANG);
  assert_int_equal(cfg->handler.command.len, 3);
  assert_string_equal(cfg->handler.command.items[0], "python3");
  assert_string_equal(cfg->handler.command.items[1], "/opt/app/processor.py");
  assert_string_equal(cfg->handler.command.items[2], "--flag");
  assert_null(cfg->handler.command.items[3]);
  assert_string_equal(cfg->stream, "orders");
  assert_string_equal(cfg->application, "orders-app");
  assert_string_equal(cfg->lease.table, "orders-leases");
  assert_string_equal(cfg->worker_id, "worker-7");
  assert_string_equal(cfg->region, "eu-west-1");
  assert_string_equal(cfg->endpoints.kinesis, "http://127.0.0.1:4567");
  assert_string_equal(cfg->endpoints.dynamodb,
                      "https://dynamodb.eu-west-1.amazonaws.com");
  assert_int_equal(cfg->starting_position, KCLD_CONFIG_POS_LATEST);
  assert_int_equal(cfg->fetch.max_records, 500);
  assert_int_equal(cfg->fetch.mode, KCLD_CONFIG_FETCH_FANOUT);
  assert_string_equal(cfg->fetch.consumer_name, "orders-app"); /* derived */
  assert_int_equal(cfg->fetch.idle_time_ms, 250);
  assert_int_equal(cfg->lease.failover_ms, 20000);
  assert_int_equal(cfg->lease.take_interval_ms, 40000); /* derived */
  assert_int_equal(cfg->lease.shard_sync_interval_ms, 120000);
  assert_int_equal(cfg->lease.max_leases, 12);
  assert_int_equal(cfg->lease.max_steal, 3);
  assert_int_equal(cfg->handler.timeout_ms, 90000);
  assert_int_equal(cfg->shutdown_timeout_ms, 15000);
  assert_int_equal(cfg->retry.backoff_base_ms, 700);
  assert_string_equal(cfg->credentials.profile, "analytics");
  assert_string_equal(cfg->path, "app.properties");
  /* Ignored keys: once each, with the reason; mapped keys not at all. */
  assert_int_equal(count(log, "parentShardPollIntervalMillis"), 1);
  assert_int_equal(count(log, "processingLanguage"), 1);
  assert_int_equal(count(log, "key ignored"), 2);
  assert_non_null(strstr(log, "every 2s"));
  assert_null(strstr(log, "failoverTimeMillis"));
  kcld_config_free(cfg);
  free(errors);
  free(log);
}

static void test_map_defaults_and_derived(void **state)
{
  (void)state;
  struct kcld_config *cfg = NULL;
  char *errors = NULL, *log = NULL;
  int rc = map("executableName=./p.sh\nstreamName=s\napplicationName=app\n",
               &cfg, &errors, &log);
  assert_int_equal(rc, 0);
  assert_string_equal(cfg->lease.table, "app"); /* = application */
  assert_true(strlen(cfg->worker_id) > 0);      /* hostname:pid */
  assert_int_equal(cfg->lease.failover_ms, 10000);
  assert_int_equal(cfg->starting_position, KCLD_CONFIG_POS_TRIM_HORIZON);
  assert_string_equal(log, "");
  kcld_config_free(cfg);
  free(errors);
  free(log);
}

static void test_map_stream_arn_wins(void **state)
{
  (void)state;
  struct kcld_config *cfg = NULL;
  char *errors = NULL, *log = NULL;
  int rc = map("streamArn = arn:aws:kinesis:us-east-1:123456789012:stream/a\n"
               "streamName = b\napplicationName = app\n"
               "executableName = x\n", &cfg, &errors, &log);
  assert_int_equal(rc, 0);
  assert_string_equal(cfg->stream,
                      "arn:aws:kinesis:us-east-1:123456789012:stream/a");
  assert_int_equal(count(log, "streamName"), 1);
  kcld_config_free(cfg);
  free(log);
}

static void test_map_special_values(void **state)
{
  (void)state;
  struct kcld_config *cfg = NULL;
  char *errors = NULL, *log = NULL;
  int rc = map("executableName = x\nstreamName = s\napplicationName = app\n"
               "maxLeasesForWorker = 2147483647\n"
               "initialPositionInStreamExtended = 1700000000123\n"
               "AWSCredentialsProvider = DefaultCredentialsProvider\n"
               "cleanupLeasesUponShardCompletion = false\n"
               "kcld.batch.size = 7\n"
               "kcld.lease.failover_time = 3s\n"
               "failoverTimeMillis = 9000\n"
               "somethingElse = 1\n", &cfg, &errors, &log);
  if (rc != 0)
    fail_msg("rc %d: %s", rc, errors ? errors : "");
  assert_int_equal(cfg->lease.max_leases, 0); /* MAX_VALUE = no cap */
  assert_int_equal(cfg->starting_position, KCLD_CONFIG_POS_AT_TIMESTAMP);
  assert_int_equal(cfg->starting_timestamp_ms, 1700000000123LL);
  assert_string_equal(cfg->credentials.profile, "");
  assert_int_equal(cfg->batch.size, 7);
  assert_int_equal(cfg->lease.failover_ms, 3000); /* kcld.* wins */
  assert_int_equal(count(log, "cleanupLeasesUponShardCompletion"), 1);
  assert_int_equal(count(log, "somethingElse"), 1);
  assert_int_equal(count(log, "AWSCredentialsProvider"), 0);
  kcld_config_free(cfg);
  free(log);
}

static void test_map_errors(void **state)
{
  (void)state;
  struct kcld_config *cfg = NULL;
  char *errors = NULL, *log = NULL;
  int rc = map("executableName = x\n"
               "applicationName = app\n"
               "failoverTimeMillis = 10\n"
               "maxRecords = lots\n"
               "initialPositionInStream = LATES\n", &cfg, &errors, &log);
  assert_int_equal(rc, KCLD_ECONFIG);
  assert_null(cfg);
  assert_non_null(errors);
  assert_string_equal(errors,
    "app.properties:1:1: stream: required key is missing\n"
    "app.properties:3:1: failoverTimeMillis (lease.failover_time): must be "
    "1s..1h, got 10ms\n"
    "app.properties:4:1: maxRecords (fetch.max_records): must be an integer, "
    "got \"lots\"\n"
    "app.properties:5:1: initialPositionInStream (starting_position): must "
    "be one of TRIM_HORIZON, LATEST, AT_TIMESTAMP, got \"LATES\" (did you "
    "mean LATEST?)\n");
  free(errors);
  free(log);
}

/* An endpoint with credentials is refused like in YAML, without showing
 * them; a program that is not there is found by the runtime check, named
 * by its KCL key. */
static void test_map_credentials_and_runtime(void **state)
{
  (void)state;
  struct kcld_config *cfg = NULL;
  char *errors = NULL, *log = NULL;
  int rc = map("executableName = x\nstreamName = s\napplicationName = app\n"
               "kinesisEndpoint = ops:pw0rd@kinesis.local:4567\n", &cfg,
               &errors, &log);
  assert_int_equal(rc, KCLD_ECONFIG);
  assert_string_equal(errors,
    "app.properties:4:1: kinesisEndpoint (endpoints.kinesis): must not "
    "contain credentials (a user or password before \"@\"); AWS "
    "credentials come from the credentials section or the AWS SDK chain "
    "(value not shown)\n");
  free(errors);
  free(log);
  errors = log = NULL;
  rc = map("executableName = kcld-no-such-program-xyz --fast\n"
           "streamName = s\napplicationName = app\n", &cfg, &errors, &log);
  assert_int_equal(rc, 0);
  assert_int_equal(kcld_config_check_runtime(cfg, &errors), KCLD_ECONFIG);
  assert_string_equal(errors,
    "app.properties:1:1: executableName (handler.command): cannot run "
    "\"kcld-no-such-program-xyz\": not found in PATH\n");
  free(errors);
  free(log);
  kcld_config_free(cfg);
}

static void test_load_file(void **state)
{
  (void)state;
  char path[] = "/tmp/kcld-props-XXXXXX";
  int fd = mkstemp(path);
  struct kcld_config *cfg = NULL;
  char *errors = NULL;
  const char text[] = "executableName = python3 a.py\nstreamName = s\n"
                      "applicationName = app\n";
  assert_true(fd >= 0);
  assert_int_equal(write(fd, text, sizeof(text) - 1), sizeof(text) - 1);
  close(fd);
  assert_int_equal(kcld_properties_load(path, &cfg, &errors), 0);
  assert_string_equal(cfg->handler.command.items[1], "a.py");
  assert_string_equal(cfg->path, path);
  kcld_config_free(cfg);
  unlink(path);
  assert_int_equal(kcld_properties_load(path, &cfg, &errors), KCLD_EIO);
  assert_null(cfg);
  assert_non_null(strstr(errors, "cannot read"));
  free(errors);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_syntax_separators),
    cmocka_unit_test(test_syntax_comments_and_lines),
    cmocka_unit_test(test_syntax_continuations),
    cmocka_unit_test(test_syntax_escapes),
    cmocka_unit_test(test_syntax_duplicates),
    cmocka_unit_test(test_map_every_key),
    cmocka_unit_test(test_map_defaults_and_derived),
    cmocka_unit_test(test_map_stream_arn_wins),
    cmocka_unit_test(test_map_special_values),
    cmocka_unit_test(test_map_errors),
    cmocka_unit_test(test_map_credentials_and_runtime),
    cmocka_unit_test(test_load_file),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
