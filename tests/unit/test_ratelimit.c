/* test_ratelimit.c — the adaptive retry mode's rate limiter against the
 * vectors the AWS SDKs share (aws-sdk-go-v2's adaptive_ratelimit_test.go,
 * also in the Rust and Python SDKs): the sending rate measured over
 * half-second buckets, the token bucket's fill rate after successes and
 * throttles, CUBIC's K and its growth after a throttle; and the waits it
 * imposes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>

#include <cmocka.h>

#include "aws/ratelimit.h"

static void near(double want, double got)
{
  if (fabs(want - got) > 1e-9 * (fabs(want) > 1 ? fabs(want) : 1))
    fail_msg("want %.15g, got %.15g", want, got);
}

static void test_sending_rates(void **state)
{
  static const struct {
    int throttled;
    double t, measured, fill;
  } v[] = {
    {0, 0.2, 0.0, 0.5},
    {0, 0.4, 0.0, 0.5},
    {0, 0.6, 4.800000000000001, 0.5},
    {0, 0.8, 4.800000000000001, 0.5},
    {0, 1.0, 4.16, 0.5},
    {0, 1.2, 4.16, 0.6912},
    {0, 1.4, 4.16, 1.0975999999999997},
    {0, 1.6, 5.632000000000001, 1.6384000000000005},
    {0, 1.8, 5.632000000000001, 2.3328},
    {1, 2.0, 4.3264, 3.0284799999999996},
    {0, 2.2, 4.3264, 3.48663917347026},
    {0, 2.4, 4.3264, 3.821874416040255},
    {0, 2.6, 5.66528, 4.053385727709987},
    {0, 2.8, 5.66528, 4.200373108479454},
    {0, 3.0, 4.333056, 4.282036558348658},
    {1, 3.2, 4.333056, 2.99742559084406},
    {0, 3.4, 4.333056, 3.4522263943863463},
  };
  struct kcld_ratelimit rl;
  (void)state;
  kcld_ratelimit_init(&rl, 0);
  for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
    kcld_ratelimit_update(&rl, v[i].t, v[i].throttled);
    near(v[i].measured, rl.measured_rate);
    near(v[i].fill, rl.fill_rate);
  }
  assert_true(rl.enabled);
}

static void test_cubic(void **state)
{
  static const double t[] = {5, 6, 7, 8, 9, 10, 11};
  static const double want[] = {7.0, 9.64893600966, 10.000030849917364,
                                10.453284520772092, 13.408697022224185,
                                21.26626835427364, 36.425998516920465};
  struct kcld_ratelimit rl;
  (void)state;
  kcld_ratelimit_init(&rl, 5);
  rl.last_max_rate = 10;
  for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
    kcld_ratelimit_update(&rl, t[i], 0);
    near(1.9574338205844317, rl.time_window);
    near(want[i], rl.calculated_rate);
  }
  /* A throttle cuts to beta = 0.7 of the rate it was sending at. */
  kcld_ratelimit_init(&rl, 0);
  rl.measured_rate = 10;
  rl.last_bucket = 100; /* no new bucket: the measured rate stays 10 */
  kcld_ratelimit_update(&rl, 1, 1);
  near(7.0, rl.calculated_rate);
  near(10.0, rl.last_max_rate);
}

static void test_waits(void **state)
{
  struct kcld_ratelimit rl;
  (void)state;
  kcld_ratelimit_init(&rl, 0);
  /* Off until throttled: never waits. */
  for (int i = 0; i < 100; i++)
    assert_int_equal(kcld_ratelimit_acquire(&rl, 0.001 * i), 0);
  /* Throttled while sending 4 a second: the bucket fills at 2.8 a second
   * from empty, so a token takes 1/2.8 s. */
  rl.measured_rate = 4;
  rl.last_bucket = 100;
  kcld_ratelimit_update(&rl, 1.0, 1);
  near(2.8, rl.fill_rate);
  uint64_t ms = kcld_ratelimit_acquire(&rl, 1.0);
  assert_int_equal(ms, 358); /* ceil(1000 / 2.8) */
  assert_int_equal(kcld_ratelimit_acquire(&rl, 1.0 + 0.358), 0);
  assert_true(kcld_ratelimit_acquire(&rl, 1.0 + 0.358) > 0);
  /* Capacity never exceeds the rate: after a long pause, about 2.8
   * immediate attempts, then waits again. */
  int immediate = 0;
  while (kcld_ratelimit_acquire(&rl, 100.0) == 0)
    immediate++;
  assert_int_equal(immediate, 2);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_sending_rates),
    cmocka_unit_test(test_cubic),
    cmocka_unit_test(test_waits),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
