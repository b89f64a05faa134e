/* test_policy.c — the pure failure-policy decisions: bisection before the
 * retry budget, the budget itself (0, N, -1), record age (all, some, none,
 * unknown arrival), backoff growth, cap and jitter bounds, split sizes, and
 * a simulation of bisection isolating one poison record at every position
 * of 200 within 1 + ceil(log2(200)) handler calls that contain it; and
 * infrastructure failures: waits that never touch the budget nor bisect,
 * bounded only by the age of the records at the front of the range. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "process/policy.h"

static struct kcld_policy pol(int retries, int bisect, int64_t age)
{
  struct kcld_policy p = {retries, bisect, age, 100, 1000};
  return p;
}

static struct kcld_policy_decision decide(const struct kcld_policy *p,
                                          size_t count, size_t expired,
                                          unsigned retries)
{
  struct kcld_policy_failure f = {count, expired, retries,
                                  KCLD_POLICY_RECORD, 0};
  return kcld_policy_decide(p, &f);
}

static void test_bisect_first_and_free(void **state)
{
  struct kcld_policy p = pol(0, 1, -1);
  (void)state;
  /* Splitting does not use the budget: even with 0 retries left. */
  assert_int_equal(decide(&p, 200, 0, 0).action, KCLD_POLICY_BISECT);
  assert_int_equal(decide(&p, 2, 0, 5).action, KCLD_POLICY_BISECT);
  /* A single record uses it. */
  assert_int_equal(decide(&p, 1, 0, 0).action, KCLD_POLICY_GIVE_UP);
  assert_int_equal(decide(&p, 1, 0, 0).condition,
                   KCLD_POLICY_RETRIES_EXHAUSTED);
  p = pol(3, 0, -1);
  assert_int_equal(decide(&p, 200, 0, 0).action, KCLD_POLICY_RETRY);
}

static void test_retry_budget(void **state)
{
  struct kcld_policy p = pol(3, 1, -1);
  (void)state;
  for (unsigned r = 0; r < 3; r++)
    assert_int_equal(decide(&p, 1, 0, r).action, KCLD_POLICY_RETRY);
  assert_int_equal(decide(&p, 1, 0, 3).action, KCLD_POLICY_GIVE_UP);
  p = pol(0, 0, -1);
  assert_int_equal(decide(&p, 10, 0, 0).action, KCLD_POLICY_GIVE_UP);
  p = pol(-1, 0, -1); /* until it expires */
  assert_int_equal(decide(&p, 10, 0, 100000).action, KCLD_POLICY_RETRY);
  assert_int_equal(decide(&p, 10, 10, 0).action, KCLD_POLICY_GIVE_UP);
}

static void test_record_age(void **state)
{
  struct kcld_policy p = pol(-1, 1, 60000);
  struct kcld_policy_decision d;
  (void)state;
  assert_int_equal(kcld_policy_expired(&p, 1000, 61000), 0);
  assert_int_equal(kcld_policy_expired(&p, 1000, 61001), 1);
  assert_int_equal(kcld_policy_expired(&p, -1, 1000000000), 0);
  p.max_record_age_ms = -1;
  assert_int_equal(kcld_policy_expired(&p, 0, 1000000000), 0);
  p.max_record_age_ms = 60000;
  /* All expired: given up at once, no bisection, no retry. */
  d = decide(&p, 50, 50, 0);
  assert_int_equal(d.action, KCLD_POLICY_GIVE_UP);
  assert_int_equal(d.condition, KCLD_POLICY_AGE_EXCEEDED);
  /* Some expired: bisection separates them from the young ones. */
  assert_int_equal(decide(&p, 50, 10, 0).action, KCLD_POLICY_BISECT);
  /* Without bisection one expired record gives up the range (Lambda). */
  p.bisect_on_error = 0;
  d = decide(&p, 50, 1, 0);
  assert_int_equal(d.action, KCLD_POLICY_GIVE_UP);
  assert_int_equal(d.condition, KCLD_POLICY_AGE_EXCEEDED);
  assert_string_equal(kcld_policy_condition_name(d.condition),
                      "RecordAgeExceeded");
  assert_string_equal(
    kcld_policy_condition_name(KCLD_POLICY_RETRIES_EXHAUSTED),
    "RetryAttemptsExhausted");
}

static struct kcld_policy_decision infra(const struct kcld_policy *p,
                                         size_t count, size_t expired,
                                         size_t head, unsigned retries)
{
  struct kcld_policy_failure f = {count, expired, retries,
                                  KCLD_POLICY_INFRA, head};
  return kcld_policy_decide(p, &f);
}

static void test_infra_waits(void **state)
{
  struct kcld_policy p = pol(0, 1, -1);
  struct kcld_policy_decision d;
  (void)state;
  /* No budget left, bisection on, many records: still a wait. */
  assert_int_equal(infra(&p, 200, 0, 0, 0).action, KCLD_POLICY_WAIT);
  assert_int_equal(infra(&p, 1, 0, 0, 1000).action, KCLD_POLICY_WAIT);
  p = pol(3, 0, -1);
  assert_int_equal(infra(&p, 10, 0, 0, 3).action, KCLD_POLICY_WAIT);
  /* The same range as a record failure gives up or bisects. */
  assert_int_equal(decide(&p, 10, 0, 3).action, KCLD_POLICY_GIVE_UP);
  /* With max_record_age: expired records in the middle do not count. */
  p = pol(0, 1, 60000);
  assert_int_equal(infra(&p, 10, 3, 0, 0).action, KCLD_POLICY_WAIT);
  /* An expired head is given up alone, as RecordAgeExceeded. */
  d = infra(&p, 10, 4, 4, 0);
  assert_int_equal(d.action, KCLD_POLICY_GIVE_UP);
  assert_int_equal(d.condition, KCLD_POLICY_AGE_EXCEEDED);
  assert_int_equal(d.give_up, 4);
  d = infra(&p, 10, 10, 10, 0);
  assert_int_equal(d.action, KCLD_POLICY_GIVE_UP);
  assert_int_equal(d.give_up, 10);
  /* Record failures give up whole ranges. */
  p.bisect_on_error = 0;
  d = decide(&p, 10, 4, 0);
  assert_int_equal(d.action, KCLD_POLICY_GIVE_UP);
  assert_int_equal(d.give_up, 10);
}

static void test_backoff(void **state)
{
  struct kcld_policy p = pol(3, 1, -1);
  (void)state;
  /* Equal jitter: [delay/2, delay]. */
  assert_int_equal(kcld_policy_backoff_ms(&p, 1, 0), 50);
  assert_int_equal(kcld_policy_backoff_ms(&p, 1, UINT32_MAX), 100);
  assert_int_equal(kcld_policy_backoff_ms(&p, 2, UINT32_MAX), 200);
  assert_int_equal(kcld_policy_backoff_ms(&p, 4, UINT32_MAX), 800);
  assert_int_equal(kcld_policy_backoff_ms(&p, 5, UINT32_MAX), 1000);
  assert_int_equal(kcld_policy_backoff_ms(&p, 500, 0), 500);
  for (uint32_t r = 0; r < 1000; r++) {
    uint64_t d = kcld_policy_backoff_ms(&p, 3, r * 4294967u);
    assert_true(d >= 200 && d <= 400);
  }
}

static void test_split_and_rounds(void **state)
{
  (void)state;
  assert_int_equal(kcld_policy_split(2), 1);
  assert_int_equal(kcld_policy_split(3), 2);
  assert_int_equal(kcld_policy_split(200), 100);
  assert_int_equal(kcld_policy_split(25), 13);
  assert_int_equal(kcld_policy_bisect_rounds(1), 1);
  assert_int_equal(kcld_policy_bisect_rounds(2), 2);
  assert_int_equal(kcld_policy_bisect_rounds(200), 9);
  assert_int_equal(kcld_policy_bisect_rounds(256), 9);
  assert_int_equal(kcld_policy_bisect_rounds(257), 10);
}

/* Drives the decisions the way the dispatcher does, on a range of n records
 * with one poison record, handled left half first.  Returns the handler
 * calls that contained the poison record; *calls gets all calls, *dups the
 * deliveries of good records beyond their first. */
static unsigned simulate(size_t n, size_t poison, int retries,
                         unsigned *calls, unsigned *dups, size_t *queued)
{
  struct kcld_policy p = pol(retries, 1, -1);
  size_t stack[64], pos = 0;
  int depth = 1;
  unsigned tries = 0, rounds = 0, seen[512] = {0};

  stack[0] = n;
  *calls = *dups = 0;
  *queued = SIZE_MAX;
  while (depth > 0) {
    size_t end = stack[depth - 1];
    (*calls)++;
    for (size_t i = pos; i < end; i++)
      if (i != poison && seen[i]++)
        (*dups)++;
    if (poison < pos || poison >= end) {
      pos = end;
      depth--;
      tries = 0;
      continue;
    }
    rounds++;
    struct kcld_policy_failure f = {end - pos, 0, tries, KCLD_POLICY_RECORD,
                                    0};
    struct kcld_policy_decision d = kcld_policy_decide(&p, &f);
    if (d.action == KCLD_POLICY_BISECT) {
      stack[depth++] = pos + kcld_policy_split(end - pos);
      tries = 0;
    } else if (d.action == KCLD_POLICY_RETRY) {
      tries++;
    } else {
      assert_int_equal(end - pos, 1);
      *queued = pos;
      pos = end;
      depth--;
      tries = 0;
    }
  }
  return rounds;
}

static void test_bisection_isolates_poison(void **state)
{
  unsigned calls, dups, worst = 0;
  size_t queued;
  (void)state;
  for (size_t k = 0; k < 200; k++) {
    unsigned r = simulate(200, k, 0, &calls, &dups, &queued);
    assert_int_equal(queued, k);
    assert_true(r <= kcld_policy_bisect_rounds(200));
    if (r > worst)
      worst = r;
  }
  /* With 2 retries the lone record is tried twice more. */
  assert_int_equal(simulate(200, 137, 2, &calls, &dups, &queued),
                   simulate(200, 137, 0, &calls, &dups, &queued) + 2);
  simulate(200, 137, 0, &calls, &dups, &queued);
  printf("policy simulation: poison at 137 of 200: %u rounds, %u calls, "
         "%u duplicate deliveries; worst over all positions %u rounds "
         "(bound %u)\n", simulate(200, 137, 0, &calls, &dups, &queued),
         calls, dups, worst, kcld_policy_bisect_rounds(200));
}

/* The worked example of docs/failure-policy.md: 8 records, record 6
 * (index 5) always fails, one retry. */
static void test_documented_example(void **state)
{
  unsigned calls, dups;
  size_t queued;
  (void)state;
  assert_int_equal(simulate(8, 5, 1, &calls, &dups, &queued), 5);
  assert_int_equal(calls, 8);
  assert_int_equal(dups, 11);
  assert_int_equal(queued, 5);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_bisect_first_and_free),
    cmocka_unit_test(test_retry_budget),
    cmocka_unit_test(test_record_age),
    cmocka_unit_test(test_infra_waits),
    cmocka_unit_test(test_backoff),
    cmocka_unit_test(test_split_and_rounds),
    cmocka_unit_test(test_bisection_isolates_poison),
    cmocka_unit_test(test_documented_example),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
