/* test_turns.c — the cap on requests in flight: turns taken up to the cap,
 * the rest queued and handed turns oldest first as turns come back, a
 * waiter that gives up leaving the queue from its head, middle or tail,
 * and no cap at all. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "aws/turns.h"

static void test_cap_and_order(void **state)
{
  struct kcld_turns t = {.max = 2};
  struct kcld_turn_waiter w[5] = {{0}};
  (void)state;
  assert_int_equal(kcld_turns_take(&t, &w[0]), 1);
  assert_int_equal(kcld_turns_take(&t, &w[1]), 1);
  for (int i = 2; i < 5; i++)
    assert_int_equal(kcld_turns_take(&t, &w[i]), 0);
  assert_int_equal(t.in_flight, 2);
  assert_null(kcld_turns_next(&t)); /* no turn free */
  kcld_turns_end(&t);
  assert_ptr_equal(kcld_turns_next(&t), &w[2]);
  assert_null(kcld_turns_next(&t));
  assert_int_equal(t.in_flight, 2);
  kcld_turns_end(&t);
  kcld_turns_end(&t);
  assert_ptr_equal(kcld_turns_next(&t), &w[3]);
  assert_ptr_equal(kcld_turns_next(&t), &w[4]);
  assert_null(kcld_turns_next(&t));
  assert_int_equal(t.in_flight, 2);
  /* A new request queues behind one already waiting. */
  struct kcld_turn_waiter late = {0}, later = {0};
  assert_int_equal(kcld_turns_take(&t, &late), 0);
  kcld_turns_end(&t);
  assert_int_equal(kcld_turns_take(&t, &later), 0);
  assert_ptr_equal(kcld_turns_next(&t), &late);
}

static void test_remove(void **state)
{
  struct kcld_turns t = {.max = 1};
  struct kcld_turn_waiter busy = {0}, w[4] = {{0}};
  (void)state;
  assert_int_equal(kcld_turns_take(&t, &busy), 1);
  for (int i = 0; i < 4; i++)
    assert_int_equal(kcld_turns_take(&t, &w[i]), 0);
  kcld_turns_remove(&t, &w[1]); /* middle */
  kcld_turns_remove(&t, &w[0]); /* head */
  kcld_turns_remove(&t, &w[3]); /* tail */
  kcld_turns_remove(&t, &w[3]); /* not queued: nothing */
  kcld_turns_remove(&t, &busy);
  kcld_turns_end(&t);
  assert_ptr_equal(kcld_turns_next(&t), &w[2]);
  kcld_turns_end(&t);
  assert_null(kcld_turns_next(&t));
  assert_null(t.head);
  assert_null(t.tail);
  /* The queue works again after being emptied from its tail. */
  assert_int_equal(kcld_turns_take(&t, &w[0]), 1);
  assert_int_equal(kcld_turns_take(&t, &w[1]), 0);
  kcld_turns_end(&t);
  assert_ptr_equal(kcld_turns_next(&t), &w[1]);
}

static void test_no_cap(void **state)
{
  struct kcld_turns t = {0};
  struct kcld_turn_waiter w[100] = {{0}};
  (void)state;
  for (int i = 0; i < 100; i++)
    assert_int_equal(kcld_turns_take(&t, &w[i]), 1);
  assert_int_equal(t.in_flight, 100);
  assert_null(kcld_turns_next(&t));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_cap_and_order),
    cmocka_unit_test(test_remove),
    cmocka_unit_test(test_no_cap),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
