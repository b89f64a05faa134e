/* test_stall.c — the stall detector (ops/stall.h): the judgement on one
 * shard's stats (records waiting, fetch failing, behind; never a shard that
 * waits for its parents or is idle at the tip), and the detector's list,
 * its "shard stalled" lines (at once, on a new reason, else at most once a
 * minute) and "shard no longer stalled", the lease layer's reasons once
 * they last stuck_ms and winning over the consumer's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "log.h"
#include "ops/stall.h"
#include "proc.h"

#define STUCK 1000
#define GRACE 200
#define NOW 1000000

static struct kcld_shard_consumer_stats idle_stats(void)
{
  struct kcld_shard_consumer_stats st;
  memset(&st, 0, sizeof(st));
  st.millis_behind_latest = 0;
  st.fetch_ms = NOW - 10 * STUCK; /* fetching, no answer moved it since */
  return st;
}

static const char *judge(const struct kcld_shard_consumer_stats *st,
                         const struct kcld_stall_hold *hold, uint64_t now,
                         uint64_t *since, const char **detail)
{
  return kcld_stall_judge(st, hold, now, STUCK, GRACE, since, detail);
}

static void test_judge_idle_and_parents(void **state)
{
  uint64_t since = 0;
  const char *detail = "x";
  (void)state;
  /* Idle at the tip: answers keep coming with nothing in them; nothing
   * waits.  Never stalled, however long. */
  struct kcld_shard_consumer_stats st = idle_stats();
  assert_null(judge(&st, NULL, NOW, &since, &detail));
  /* Waiting for its parents (not fetching), even while behind and after a
   * failure: not stalled. */
  st.fetch_ms = 0;
  st.millis_behind_latest = 5000;
  st.fetch_failing = KCLD_SHARD_FETCH_ERROR;
  assert_null(judge(&st, NULL, NOW, &since, &detail));
}

static void test_judge_records_wait(void **state)
{
  uint64_t since = 0;
  const char *detail = NULL;
  struct kcld_stall_hold hold = {NULL, NULL};
  (void)state;
  struct kcld_shard_consumer_stats st = idle_stats();
  st.pending_since_ms = NOW - STUCK - GRACE + 1;
  assert_null(judge(&st, &hold, NOW, &since, &detail)); /* 1 ms short */
  st.pending_since_ms = NOW - STUCK - GRACE;
  assert_string_equal(judge(&st, &hold, NOW, &since, &detail),
                      KCLD_STALL_NO_PROGRESS);
  assert_int_equal(since, NOW - STUCK - GRACE);
  assert_null(detail);
  /* What the dispatcher says holds them is the reason. */
  hold.reason = "destination_unavailable";
  hold.error = "AWS.SimpleQueueService.NonExistentQueue: no queue";
  assert_string_equal(judge(&st, &hold, NOW, &since, &detail),
                      "destination_unavailable");
  assert_string_equal(detail, hold.error);
  /* A wait the dispatcher names is still no stall before stuck_ms. */
  st.pending_since_ms = NOW - 10;
  assert_null(judge(&st, &hold, NOW, &since, &detail));
}

static void test_judge_fetch_fails(void **state)
{
  uint64_t since = 0;
  const char *detail = NULL;
  (void)state;
  struct kcld_shard_consumer_stats st = idle_stats();
  st.fetch_failing = KCLD_SHARD_FETCH_NO_ITERATOR;
  snprintf(st.fetch_error, sizeof(st.fetch_error), "%s",
           "InvalidArgumentException: bad sequence number");
  assert_string_equal(judge(&st, NULL, NOW, &since, &detail),
                      KCLD_STALL_NO_ITERATOR);
  assert_int_equal(since, NOW - 10 * STUCK);
  assert_string_equal(detail, st.fetch_error);
  st.fetch_failing = KCLD_SHARD_FETCH_THROTTLED;
  assert_string_equal(judge(&st, NULL, NOW, &since, &detail),
                      KCLD_STALL_THROTTLED);
  st.fetch_failing = KCLD_SHARD_FETCH_ERROR;
  assert_string_equal(judge(&st, NULL, NOW, &since, &detail),
                      KCLD_STALL_FETCH_ERROR);
  /* An answer moved it on lately: failing since then is not a stall yet. */
  st.fetch_ms = NOW - STUCK + 1;
  assert_null(judge(&st, NULL, NOW, &since, &detail));
  /* Behind, answers come but none moves it on (fetch memory held
   * elsewhere): no_progress. */
  st.fetch_failing = KCLD_SHARD_FETCH_OK;
  st.fetch_ms = NOW - STUCK;
  st.millis_behind_latest = 60000;
  assert_string_equal(judge(&st, NULL, NOW, &since, &detail),
                      KCLD_STALL_NO_PROGRESS);
  /* Records waiting win over the fetch side. */
  st.fetch_failing = KCLD_SHARD_FETCH_THROTTLED;
  st.pending_since_ms = NOW - 2 * STUCK;
  assert_string_equal(judge(&st, NULL, NOW, &since, &detail),
                      KCLD_STALL_NO_PROGRESS);
  assert_int_equal(since, NOW - 2 * STUCK);
}

/* Every fetch source classifies its failures with one rule. */
static void test_fetch_failure_kinds(void **state)
{
  static const struct {
    const char *op;
    enum kcld_kinesis_fault fault;
    int want;
  } cases[] = {
    {"GetRecords", KCLD_KINESIS_THROUGHPUT, KCLD_SHARD_FETCH_THROTTLED},
    {"GetRecords", KCLD_KINESIS_KMS_THROTTLED, KCLD_SHARD_FETCH_THROTTLED},
    {"SubscribeToShard", KCLD_KINESIS_LIMIT, KCLD_SHARD_FETCH_THROTTLED},
    {"GetRecords", KCLD_KINESIS_NOT_FOUND, KCLD_SHARD_FETCH_NO_ITERATOR},
    {"GetShardIterator", KCLD_KINESIS_INVALID, KCLD_SHARD_FETCH_NO_ITERATOR},
    {"SubscribeToShard", KCLD_KINESIS_INVALID, KCLD_SHARD_FETCH_NO_ITERATOR},
    /* A GetRecords the service finds invalid says nothing of the
     * stream. */
    {"GetRecords", KCLD_KINESIS_INVALID, KCLD_SHARD_FETCH_ERROR},
    {"GetRecords", KCLD_KINESIS_TRANSIENT, KCLD_SHARD_FETCH_ERROR},
    {"GetRecords", KCLD_KINESIS_ACCESS_DENIED, KCLD_SHARD_FETCH_ERROR},
  };
  (void)state;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
    if (kcld_shard_fetch_failure(cases[i].op, cases[i].fault) !=
        cases[i].want)
      fail_msg("case %zu: %s fault %d is not failure kind %d", i,
               cases[i].op, (int)cases[i].fault, cases[i].want);
}

/* ======== The detector ======== */

struct world {
  int a_stalled;          /* report shard A with records waiting long */
  const char *a_hold;     /* what holds them */
  const char *b_lease;    /* the lease layer's reason for B, or NULL */
  const char *a_lease;    /* ... for A */
};

static void walk(void *arg, struct kcld_stall_visit *v)
{
  struct world *w = arg;
  struct kcld_shard_consumer_stats st = idle_stats();
  struct kcld_stall_hold hold = {w->a_hold, w->a_hold ? "why" : NULL};
  st.fetch_ms = 0;
  if (w->a_lease)
    kcld_stall_visit_lease(v, "A", w->a_lease, 0);
  if (w->a_stalled)
    st.pending_since_ms = 1; /* long ago */
  kcld_stall_visit_shard(v, "A", &st, &hold);
  if (w->b_lease)
    kcld_stall_visit_lease(v, "B", w->b_lease, 0);
}

struct listed {
  int n;
  char text[256];
};

static void on_each(const char *id, const char *reason, uint64_t since,
                    void *arg)
{
  struct listed *l = arg;
  size_t len = strlen(l->text);
  (void)since;
  snprintf(l->text + len, sizeof(l->text) - len, "%s=%s;", id, reason);
  l->n++;
}

static const char *list(const struct kcld_stall *s)
{
  static struct listed l;
  memset(&l, 0, sizeof(l));
  kcld_stall_each(s, on_each, &l);
  return l.text;
}

/* Occurrences of `needle` in the log file so far. */
static int count_in(FILE *f, const char *needle)
{
  char buf[16384];
  int n = 0;
  fflush(f);
  long at = ftell(f);
  rewind(f);
  size_t len = fread(buf, 1, sizeof(buf) - 1, f);
  buf[len] = '\0';
  fseek(f, at, SEEK_SET);
  for (const char *p = buf; (p = strstr(p, needle)) != NULL; p++)
    n++;
  return n;
}

static void test_detector(void **state)
{
  uv_loop_t loop;
  struct kcld_stall *s = NULL;
  struct world w = {0};
  FILE *f = tmpfile();
  (void)state;
  assert_non_null(f);
  kcld_log_setup(KCLD_LOG_INFO, KCLD_LOG_JSON, f);
  assert_int_equal(uv_loop_init(&loop), 0);
  struct kcld_stall_opts o = {&loop, 300, 0, walk, &w};
  assert_int_equal(kcld_stall_start(&o, &s), 0);
  /* Nothing stalled. */
  kcld_stall_check(s);
  assert_int_equal(kcld_stall_count(s), 0);
  /* A's records wait, B's lease reported: A is stalled at once (its
   * records have waited long), B only once the report lasts stuck_ms. */
  w.a_stalled = 1;
  w.b_lease = "invalid_checkpoint";
  kcld_stall_check(s);
  assert_int_equal(kcld_stall_count(s), 1);
  assert_string_equal(list(s), "A=no_progress;");
  assert_int_equal(count_in(f, "\"shard stalled\""), 1);
  assert_int_equal(count_in(f, "\"level\":\"error\""), 1);
  kcld_stall_check(s); /* not logged again within the minute */
  assert_int_equal(count_in(f, "\"shard stalled\""), 1);
  kcld_test_sleep_ms(320);
  uv_update_time(&loop);
  kcld_stall_check(s);
  assert_int_equal(kcld_stall_count(s), 2);
  assert_non_null(strstr(list(s), "B=invalid_checkpoint;"));
  assert_int_equal(count_in(f, "\"shard stalled\""), 2);
  assert_int_equal(count_in(f, "fix the lease's checkpoint"), 1);
  /* A new reason for A is logged at once. */
  w.a_hold = "destination_unavailable";
  kcld_stall_check(s);
  assert_non_null(strstr(list(s), "A=destination_unavailable;"));
  assert_int_equal(count_in(f, "\"shard stalled\""), 3);
  /* The lease layer's reason wins over the consumer's (A has made no
   * progress for long already: at once). */
  w.a_lease = "lease_table_missing";
  kcld_stall_check(s);
  assert_non_null(strstr(list(s), "A=lease_table_missing;"));
  assert_int_equal(count_in(f, "\"shard stalled\""), 4);
  /* It moves again and the lease is fixed: one line, no longer listed. */
  w.a_lease = NULL;
  w.a_stalled = 0;
  w.a_hold = NULL;
  kcld_stall_check(s);
  assert_string_equal(list(s), "B=invalid_checkpoint;");
  assert_int_equal(count_in(f, "\"shard no longer stalled\""), 1);
  /* New limits: B's report now has to last longer than it has. */
  kcld_stall_set_limits(s, 60000, 0);
  kcld_stall_check(s);
  assert_int_equal(kcld_stall_count(s), 0);
  assert_int_equal(count_in(f, "\"shard no longer stalled\""), 2);
  kcld_stall_close(s);
  kcld_test_loop_finish(&loop);
  kcld_log_setup(KCLD_LOG_INFO, KCLD_LOG_JSON, NULL);
  fclose(f);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_judge_idle_and_parents),
    cmocka_unit_test(test_judge_records_wait),
    cmocka_unit_test(test_judge_fetch_fails),
    cmocka_unit_test(test_fetch_failure_kinds),
    cmocka_unit_test(test_detector),
  };
  return cmocka_run_group_tests(tests, 0, 0);
}
