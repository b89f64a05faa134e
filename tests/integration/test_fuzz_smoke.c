/* test_fuzz_smoke.c — puts the fuzz smoke run (tests/fuzz/run-smoke.sh via
 * `make fuzz-smoke`) into make test: every libFuzzer target over its
 * committed corpus plus a short fixed mutation budget, under ASan+UBSan with
 * leak detection.  Any crash, hang, leak or sanitizer report fails.
 *
 * The fuzz build is its own (build-fuzz, clang), so the run happens once per
 * make test: in the plain build's pass, skipped in build-asan's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sys/wait.h>

#include "../harness/harness.h"

/* Runs `cmd` in the project root, outside any make that runs us (no
 * inherited jobserver), copies its output to ours and returns its exit
 * status (-1 when it did not exit). */
static int run(const char *cmd)
{
  char *line = NULL;
  char buf[4096];
  assert_true(asprintf(&line,
                       "cd '%s' && unset MAKEFLAGS MFLAGS MAKELEVEL && "
                       "%s 2>&1",
                       kcld_test_root(), cmd) > 0);
  FILE *p = popen(line, "r");
  assert_non_null(p);
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0)
    fwrite(buf, 1, n, stdout);
  fflush(stdout);
  int st = pclose(p);
  free(line);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_fuzz_smoke(void **state)
{
  (void)state;
  if (strstr(kcld_test_bin(), "build-asan") != NULL) {
    skip(); /* the plain build's pass runs it; once is enough */
    return;
  }
  if (run("command -v clang >/dev/null") != 0) {
    fprintf(stderr, "clang is not installed (make deps): no fuzz run\n");
    skip();
    return;
  }
  assert_int_equal(run("make -s fuzz-smoke"), 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_fuzz_smoke),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
