/* test_log.c — the logger writes one parseable JSON line per call, escapes
 * what needs escaping, filters by level and never prints secret fields;
 * typed fields are JSON numbers and booleans; application and worker are on
 * every line; under journald each line starts with its priority; repeated
 * messages are cut to a few a second and summed up in one line, also when
 * several threads log at once. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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

/* Parses every line of out as JSON; returns how many, and the lines as a
 * JSON array in *all (new reference). */
static size_t parse_lines(const char *out, json_t **all)
{
  json_error_t err;
  size_t n = 0;
  *all = json_array();
  for (const char *p = out; *p;) {
    const char *nl = strchr(p, '\n');
    assert_non_null(nl);
    json_t *j = json_loadb(p, (size_t)(nl - p), 0, &err);
    if (!j)
      fail_msg("not JSON: %.*s (%s)", (int)(nl - p), p, err.text);
    json_array_append_new(*all, j);
    n++;
    p = nl + 1;
  }
  return n;
}

static void emit_typed(void)
{
  kcld_log(KCLD_LOG_INFO, "typed", KCLD_LOG_INT("records", -3),
           KCLD_LOG_UINT("bytes", 1ULL << 40),
           KCLD_LOG_DOUBLE("seconds", 0.1), KCLD_LOG_DOUBLE("nan", 0.0 / 0.0),
           KCLD_LOG_BOOL("retry", 7), KCLD_LOG_BOOL("final", 0),
           KCLD_LOG_STR("shard", "shardId-1"), KCLD_LOG_STR("none", NULL),
           "plain", "text", NULL);
}

/* -v lowers the level a step each time, never below debug. */
static void test_level_lower(void **state)
{
  (void)state;
  assert_int_equal(kcld_log_level_lower(KCLD_LOG_INFO, 0), KCLD_LOG_INFO);
  assert_int_equal(kcld_log_level_lower(KCLD_LOG_WARN, 1), KCLD_LOG_INFO);
  assert_int_equal(kcld_log_level_lower(KCLD_LOG_ERROR, 2), KCLD_LOG_INFO);
  assert_int_equal(kcld_log_level_lower(KCLD_LOG_INFO, 5), KCLD_LOG_DEBUG);
  assert_int_equal(kcld_log_level_lower(KCLD_LOG_OFF, 1), KCLD_LOG_ERROR);
  assert_int_equal(kcld_log_level_lower(KCLD_LOG_WARN, -3), KCLD_LOG_WARN);
}

static void test_typed_fields(void **state)
{
  (void)state;
  char *out = capture(emit_typed, KCLD_LOG_DEBUG, KCLD_LOG_JSON);
  json_error_t err;
  json_t *j = json_loads(out, 0, &err);
  assert_non_null(j);
  assert_true(json_is_integer(json_object_get(j, "records")));
  assert_int_equal(json_integer_value(json_object_get(j, "records")), -3);
  assert_non_null(strstr(out, "\"bytes\":1099511627776,"));
  assert_true(json_is_real(json_object_get(j, "seconds")));
  assert_true(json_real_value(json_object_get(j, "seconds")) == 0.1);
  assert_true(json_is_null(json_object_get(j, "nan")));
  assert_true(json_is_true(json_object_get(j, "retry")));
  assert_true(json_is_false(json_object_get(j, "final")));
  assert_string_equal(json_string_value(json_object_get(j, "shard")),
                      "shardId-1");
  assert_true(json_is_null(json_object_get(j, "none")));
  assert_string_equal(json_string_value(json_object_get(j, "plain")), "text");
  json_decref(j);
  free(out);
  out = capture(emit_typed, KCLD_LOG_DEBUG, KCLD_LOG_TEXT);
  assert_non_null(strstr(out, " info typed records=-3 "
                              "bytes=1099511627776 seconds=0.1 nan=- "
                              "retry=true final=false shard=shardId-1 none=- "
                              "plain=text\n"));
  free(out);
}

static void emit_context(void)
{
  kcld_log_set_context("orders", "host-a:42");
  kcld_log(KCLD_LOG_INFO, "one", "worker", "host-a:42", "shard", "s-1", NULL);
  kcld_log(KCLD_LOG_WARN, "two", KCLD_LOG_STR("application", "x"), NULL);
  kcld_log_set_context(NULL, NULL);
  kcld_log(KCLD_LOG_WARN, "three", "worker", "w-2", NULL);
}

static void test_context_on_every_line(void **state)
{
  (void)state;
  json_t *all;
  char *out = capture(emit_context, KCLD_LOG_DEBUG, KCLD_LOG_JSON);
  assert_int_equal(parse_lines(out, &all), 3);
  for (size_t i = 0; i < 2; i++) {
    json_t *j = json_array_get(all, i);
    assert_string_equal(json_string_value(json_object_get(j, "application")),
                        "orders");
    assert_string_equal(json_string_value(json_object_get(j, "worker")),
                        "host-a:42");
  }
  /* The caller's copy is left out: each key once per line. */
  assert_non_null(strstr(out, "\"msg\":\"one\",\"application\":\"orders\","
                              "\"worker\":\"host-a:42\",\"shard\":\"s-1\"}"));
  assert_null(strstr(out, "\"application\":\"x\""));
  /* Without a context a caller's field is written as given. */
  assert_string_equal(
    json_string_value(json_object_get(json_array_get(all, 2), "worker")),
    "w-2");
  assert_null(json_object_get(json_array_get(all, 2), "application"));
  json_decref(all);
  free(out);
}

static void emit_priorities(void)
{
  kcld_log(KCLD_LOG_ERROR, "e", NULL);
  kcld_log(KCLD_LOG_WARN, "w", NULL);
  kcld_log(KCLD_LOG_INFO, "i", NULL);
  kcld_log(KCLD_LOG_DEBUG, "d", NULL);
}

/* Logs emit_priorities() to a file; JOURNAL_STREAM names that file when
 * `same`, another one otherwise. */
static char *journal_capture(int same, enum kcld_log_format format)
{
  char path[] = "/tmp/kcld-test-log-XXXXXX", js[64];
  struct stat st;
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  FILE *f = fdopen(fd, "w+");
  assert_non_null(f);
  assert_int_equal(fstat(same ? fd : 2, &st), 0);
  snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev,
           (unsigned long long)st.st_ino + (same ? 0 : 1));
  setenv("JOURNAL_STREAM", js, 1);
  kcld_log_setup(KCLD_LOG_DEBUG, format, f);
  emit_priorities();
  kcld_log_setup(KCLD_LOG_INFO, KCLD_LOG_JSON, NULL);
  unsetenv("JOURNAL_STREAM");
  fclose(f);
  char *text = NULL;
  FILE *r = fopen(path, "r");
  assert_non_null(r);
  size_t cap = 0;
  ssize_t n = getdelim(&text, &cap, '\0', r);
  assert_true(n > 0);
  fclose(r);
  unlink(path);
  return text;
}

static void test_journald_priority(void **state)
{
  (void)state;
  char *out = journal_capture(1, KCLD_LOG_JSON);
  assert_memory_equal(out, "<3>{\"ts\":", 9);
  assert_non_null(strstr(out, "\n<4>{\"ts\":"));
  assert_non_null(strstr(out, "\n<6>{\"ts\":"));
  assert_non_null(strstr(out, "\n<7>{\"ts\":"));
  free(out);
  out = journal_capture(1, KCLD_LOG_TEXT);
  assert_memory_equal(out, "<3>", 3);
  assert_non_null(strstr(out, " error e\n<4>"));
  free(out);
  /* JOURNAL_STREAM of another stream (inherited, or stderr redirected):
   * no prefix. */
  out = journal_capture(0, KCLD_LOG_JSON);
  assert_memory_equal(out, "{\"ts\":", 6);
  assert_null(strchr(out, '<'));
  free(out);
}

static int count(const char *hay, const char *needle)
{
  int n = 0;
  for (const char *p = hay; (p = strstr(p, needle)); p++)
    n++;
  return n;
}

static void emit_flood(void)
{
  for (int i = 0; i < 1000; i++) {
    kcld_log(KCLD_LOG_WARN, "multilang: not a protocol line", "line", "junk",
             NULL);
    if (i % 25 == 0)
      kcld_log(KCLD_LOG_INFO, "other", KCLD_LOG_INT("i", i), NULL);
  }
  for (int i = 0; i < 2 * KCLD_LOG_BURST; i++)
    kcld_log(KCLD_LOG_ERROR | KCLD_LOG_UNLIMITED, "RECORD GIVEN UP", NULL);
  kcld_log_flush(1);
}

/* Lines of `msg` written, and the lines its summaries say were cut. */
static void tally(json_t *all, const char *msg, int *written,
                  long long *suppressed)
{
  size_t i;
  json_t *j;
  *written = 0;
  *suppressed = 0;
  json_array_foreach(all, i, j) {
    const char *m = json_string_value(json_object_get(j, "msg"));
    const char *sm = json_string_value(json_object_get(j, "suppressed_msg"));
    if (m && strcmp(m, msg) == 0)
      (*written)++;
    if (sm && strcmp(sm, msg) == 0) {
      long long n = json_integer_value(json_object_get(j, "suppressed"));
      char want[64];
      snprintf(want, sizeof(want), "%lld similar lines suppressed", n);
      assert_string_equal(m, want);
      *suppressed += n;
    }
  }
}

static void test_rate_limit(void **state)
{
  (void)state;
  json_t *all;
  int written;
  long long suppressed;
  char *out = capture(emit_flood, KCLD_LOG_DEBUG, KCLD_LOG_JSON);
  parse_lines(out, &all);
  /* A burst, then KCLD_LOG_RATE a second while the loop runs (well under
   * a second, unless the machine is very busy); every line accounted. */
  tally(all, "multilang: not a protocol line", &written, &suppressed);
  assert_true(written >= KCLD_LOG_BURST && written <= 3 * KCLD_LOG_BURST);
  assert_int_equal(written + suppressed, 1000);
  assert_non_null(strstr(out, "\"level\":\"warn\",\"msg\":\""));
  tally(all, "other", &written, &suppressed);
  assert_true(written >= KCLD_LOG_BURST && written < 40);
  assert_int_equal(written + suppressed, 40);
  /* Marked unlimited: every line. */
  tally(all, "RECORD GIVEN UP", &written, &suppressed);
  assert_int_equal(written, 2 * KCLD_LOG_BURST);
  assert_int_equal(suppressed, 0);
  json_decref(all);
  free(out);
}

static void emit_windows(void)
{
  struct timespec pause = {1, 100 * 1000 * 1000};
  for (int i = 0; i < KCLD_LOG_BURST + 10; i++)
    kcld_log(KCLD_LOG_WARN, "retrying", NULL);
  assert_int_equal(kcld_log_flush(0), 0); /* not a second old yet */
  nanosleep(&pause, NULL);
  assert_int_equal(kcld_log_flush(0), 1); /* now it is */
  assert_int_equal(kcld_log_flush(1), 0);
  /* 1.1 s later: about 5 more lines may go, the rest are cut. */
  for (int i = 0; i < 20; i++)
    kcld_log(KCLD_LOG_WARN, "retrying", NULL);
  kcld_log_flush(1);
}

static void test_rate_limit_window(void **state)
{
  (void)state;
  char *out = capture(emit_windows, KCLD_LOG_DEBUG, KCLD_LOG_TEXT);
  const char *second = strstr(out, " warn 10 similar lines suppressed "
                                   "suppressed=10 suppressed_msg=retrying\n");
  assert_non_null(second);
  assert_int_equal(count(out, " warn retrying"), KCLD_LOG_BURST +
                   count(second, " warn retrying"));
  int again = count(second, " warn retrying");
  assert_true(again >= KCLD_LOG_RATE && again < 20);
  char want[128];
  snprintf(want, sizeof(want), " warn %d similar lines suppressed "
           "suppressed=%d suppressed_msg=retrying\n", 20 - again, 20 - again);
  assert_non_null(strstr(second, want));
  free(out);
}

static void emit_reset(void)
{
  for (int i = 0; i < 3 * KCLD_LOG_BURST; i++)
    kcld_log(KCLD_LOG_WARN, "again", NULL);
}

/* A new set-up (another stream: a test, a reload) starts every count
 * afresh; what was cut is summed up on the old stream first. */
static void test_rate_limit_reset(void **state)
{
  (void)state;
  for (int round = 0; round < 2; round++) {
    char *out = capture(emit_reset, KCLD_LOG_DEBUG, KCLD_LOG_TEXT);
    assert_int_equal(count(out, " warn again\n"), KCLD_LOG_BURST);
    assert_int_equal(count(out, "suppressed_msg=again\n"), 1);
    free(out);
  }
}

#define THREADS 4
#define PER_THREAD 3000

static void *flood_thread(void *arg)
{
  (void)arg;
  for (int i = 0; i < PER_THREAD; i++)
    kcld_log(KCLD_LOG_WARN, i % 2 ? "thread line a" : "thread line b",
             KCLD_LOG_INT("i", i), NULL);
  return NULL;
}

static void emit_threads(void)
{
  pthread_t th[THREADS];
  for (int i = 0; i < THREADS; i++)
    assert_int_equal(pthread_create(&th[i], NULL, flood_thread, NULL), 0);
  for (int i = 0; i < THREADS; i++)
    pthread_join(th[i], NULL);
  kcld_log_flush(1);
}

static void test_rate_limit_threads(void **state)
{
  (void)state;
  json_t *all;
  char *out = capture(emit_threads, KCLD_LOG_DEBUG, KCLD_LOG_JSON);
  size_t n = parse_lines(out, &all); /* every line whole and valid */
  long long lines = 0, suppressed = 0;
  for (size_t i = 0; i < n; i++) {
    json_t *j = json_array_get(all, i);
    if (json_object_get(j, "suppressed"))
      suppressed += json_integer_value(json_object_get(j, "suppressed"));
    else
      lines++;
  }
  assert_int_equal(lines + suppressed, THREADS * PER_THREAD);
  assert_true(lines < THREADS * PER_THREAD / 10);
  json_decref(all);
  free(out);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_json_line),
    cmocka_unit_test(test_level_filter),
    cmocka_unit_test(test_secrets_redacted),
    cmocka_unit_test(test_level_parse),
    cmocka_unit_test(test_level_lower),
    cmocka_unit_test(test_typed_fields),
    cmocka_unit_test(test_context_on_every_line),
    cmocka_unit_test(test_journald_priority),
    cmocka_unit_test(test_rate_limit),
    cmocka_unit_test(test_rate_limit_window),
    cmocka_unit_test(test_rate_limit_reset),
    cmocka_unit_test(test_rate_limit_threads),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
