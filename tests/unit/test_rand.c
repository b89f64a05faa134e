/* test_rand.c — the generator: splitmix64's published first outputs from
 * seed 0, the same seed giving the same stream, the per-thread stream
 * differing between threads and spreading over its range, and the 32-bit
 * draw being the high half. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "base/rand.h"

static void test_seeded_stream(void **state)
{
  uint64_t a = 0, b = 0;
  (void)state;
  assert_true(kcld_rand_next(&a) == 0xe220a8397b1dcdafull);
  assert_true(kcld_rand_next(&a) == 0x6e789e6aa1b965f4ull);
  assert_true(kcld_rand_next(&a) == 0x06c45d188009454full);
  a = b = 12345;
  for (int i = 0; i < 100; i++)
    assert_true(kcld_rand_next(&a) == kcld_rand_next(&b));
  b = 12346;
  assert_true(kcld_rand_next(&a) != kcld_rand_next(&b));
}

static void *first_draws(void *arg)
{
  uint64_t *out = arg;
  for (int i = 0; i < 4; i++)
    out[i] = kcld_rand_u64();
  return NULL;
}

static void test_thread_streams(void **state)
{
  uint64_t x[4], y[4];
  pthread_t t1, t2;
  (void)state;
  assert_int_equal(pthread_create(&t1, NULL, first_draws, x), 0);
  assert_int_equal(pthread_join(t1, NULL), 0);
  assert_int_equal(pthread_create(&t2, NULL, first_draws, y), 0);
  assert_int_equal(pthread_join(t2, NULL), 0);
  for (int i = 0; i < 4; i++)
    assert_true(x[i] != y[i]);

  /* 32 draws fall in each of 16 buckets at least once: not stuck. */
  unsigned seen = 0;
  for (int i = 0; i < 4096 && seen != 0xffff; i++)
    seen |= 1u << (kcld_rand_u32() >> 28);
  assert_int_equal(seen, 0xffff);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_seeded_stream),
    cmocka_unit_test(test_thread_streams),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
