/* test_log.c — the logger writes one parseable JSON line per call, escapes
 * what needs escaping, filters by level and never prints secret fields. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "log.h"

static char *s_buf;
static size_t s_len;

static char *capture(void (*fn)(void), enum kcld_log_level level,
                     enum kcld_log_format format)
{
  FILE *mem = open_memstream(&s_buf, &s_len);
  assert_non_null(mem);
  kcld_log_setup(level, format, mem);
  fn();
  kcld_log_setup(KCLD_LOG_INFO, KCLD_LOG_JSON, NULL);
  fclose(mem);
  return s_buf;
}

static void emit_fields(void)
{
  kcld_log(KCLD_LOG_WARN, "quote \" and\nnewline", "shard", "shardId-000",
           "attempt", "3", "empty", NULL, NULL);
}

static void test_json_line(void **state)
{
  (void)state;
  char *out = capture(emit_fields, KCLD_LOG_DEBUG, KCLD_LOG_JSON);
  json_error_t err;
  assert_non_null(strchr(out, '\n'));
  assert_int_equal(strchr(out, '\n')[1], '\0'); /* exactly one line */
  json_t *j = json_loads(out, 0, &err);
  assert_non_null(j);
  assert_string_equal(json_string_value(json_object_get(j, "level")), "warn");
  assert_string_equal(json_string_value(json_object_get(j, "msg")),
                      "quote \" and\nnewline");
  assert_string_equal(json_string_value(json_object_get(j, "shard")),
                      "shardId-000");
  assert_string_equal(json_string_value(json_object_get(j, "attempt")), "3");
  assert_true(json_is_null(json_object_get(j, "empty")));
  assert_non_null(json_object_get(j, "ts"));
  json_decref(j);
  free(out);
}

static void emit_levels(void)
{
  kcld_log(KCLD_LOG_DEBUG, "hidden", NULL);
  kcld_log(KCLD_LOG_INFO, "hidden too", NULL);
  kcld_logf(KCLD_LOG_ERROR, "shown %d", 42);
}

static void test_level_filter(void **state)
{
  (void)state;
  char *out = capture(emit_levels, KCLD_LOG_WARN, KCLD_LOG_TEXT);
  assert_null(strstr(out, "hidden"));
  assert_non_null(strstr(out, " error shown 42\n"));
  free(out);
}

static void emit_secret(void)
{
  kcld_log(KCLD_LOG_INFO, "creds", "secret_access_key", "wJalrXUtnFEMI",
           "session_token", "FQoGZXIvYXdzE", "Authorization", "AWS4-HMAC",
           "source", "env", NULL);
}

static void test_secrets_redacted(void **state)
{
  (void)state;
  char *out = capture(emit_secret, KCLD_LOG_DEBUG, KCLD_LOG_JSON);
  assert_null(strstr(out, "wJalrXUtnFEMI"));
  assert_null(strstr(out, "FQoGZXIvYXdzE"));
  assert_null(strstr(out, "AWS4-HMAC"));
  assert_non_null(strstr(out, "\"source\":\"env\""));
  free(out);
}

static void test_level_parse(void **state)
{
  (void)state;
  assert_int_equal(kcld_log_level_parse("debug"), KCLD_LOG_DEBUG);
  assert_int_equal(kcld_log_level_parse("WARN"), KCLD_LOG_WARN);
  assert_int_equal(kcld_log_level_parse("warning"), KCLD_LOG_WARN);
  assert_int_equal(kcld_log_level_parse("verbose"), -1);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_json_line),
    cmocka_unit_test(test_level_filter),
    cmocka_unit_test(test_secrets_redacted),
    cmocka_unit_test(test_level_parse),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
