/* test_chaos.c — the long chaos run (make chaos): CHAOS_SECONDS of faults
 * (default 120; the sink's writes throttled or failing for 10-30 s
 * windows), CHAOS_SEED to replay a schedule, CHAOS_KEEP to keep the
 * workers' outputs and logs, CHAOS_FANOUT=1 for the fan-out variant (one
 * lambda worker in fetch.mode: fanout; opt-in: before the HTTP/2 stream
 * fix in aws/http.c (libcurl 7.88 kept a resumed stream's last bytes) it
 * failed 3 of 6 short runs with records never handled, e.g.
 * CHAOS_SEED=1796518428; after it that seed and two new ones passed in the
 * plain build, not yet run under ASan).  The driver and its checks:
 * chaos.c. */
#include "chaos.c"

static void test_chaos_long(void **state)
{
  struct chaos_opts o = {120, 0, 6, 10000, 30000, 0};
  (void)state;
  if (getenv("CHAOS_SECONDS"))
    o.seconds = (unsigned)strtoul(getenv("CHAOS_SECONDS"), NULL, 10);
  if (getenv("CHAOS_SEED"))
    o.seed = (unsigned)strtoul(getenv("CHAOS_SEED"), NULL, 10);
  o.fanout = getenv("CHAOS_FANOUT") && atoi(getenv("CHAOS_FANOUT")) != 0;
  if (o.seconds < 10)
    o.seconds = 10;
  chaos_run(&o);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_chaos_long),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
