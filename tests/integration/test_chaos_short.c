/* test_chaos_short.c — the short chaos run of make test: a lambda group of
 * three kcld workers and a DynamoDB sink group of one on 6 shards, 30 s of
 * faults (kill -9, SIGSTOP, zombies, throttles, 500s, resets, slow
 * responses, a handler that fails to start, SIGHUP reloads valid and
 * invalid, one SplitShard; the sink's writes throttled or failing for
 * 2-5 s windows) in the plain build, 20 s under the sanitizer build,
 * whose kcld is slower.  CHAOS_SEED replays a schedule; CHAOS_FANOUT=1
 * runs the fan-out variant.  The driver: tests/chaos/chaos.c; its checks:
 * chaos_verify.c (while it runs) and chaos_final.c (at the end) there. */
#include "../chaos/chaos.c"

static void test_chaos_short(void **state)
{
  struct chaos_opts o = {30, 0, 6, 2000, 5000, 0};
  (void)state;
  if (strstr(kcld_test_bin(), "build-asan"))
    o.seconds = 20;
  if (getenv("CHAOS_SEED"))
    o.seed = (unsigned)strtoul(getenv("CHAOS_SEED"), NULL, 10);
  o.fanout = getenv("CHAOS_FANOUT") && atoi(getenv("CHAOS_FANOUT")) != 0;
  chaos_run(&o);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_chaos_short),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
