/* harness.h — what kcld's cmocka tests share.
 *
 * Emulators: kcld_emu_start() runs tests/emulators/emulators.js, which starts
 * the named stand-ins (kinesis, dynamodb, sqs, or any tests/emulators/lib/NAME.js)
 * on ephemeral 127.0.0.1 ports and prints their URLs once they listen.  The
 * emulator process reads our end of a pipe and exits when it closes, so it
 * dies with the test however the test ends (pass, fail, crash, timeout kill).
 *
 * Paths: KCLD_ROOT is the project, KCLD_SHARED the shared/ folder beside it,
 * KCLD_BIN the kcld binary of the build under test (set by tests/run-tests.sh;
 * defaults derived from the working directory otherwise). */
#ifndef KCLD_TEST_HARNESS_H
#define KCLD_TEST_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

struct kcld_emu {
  pid_t pid;
  int stdin_fd;  /* our end of the emulator's stdin; closing it stops it */
  void *urls;    /* json_t object name -> url */
};

/* Starts the emulators named in `names` (space-separated, e.g.
 * "kinesis dynamodb").  Returns 0, or -1 with a message on stderr. */
int kcld_emu_start(struct kcld_emu *emu, const char *names);

/* The base URL of a started emulator ("http://127.0.0.1:PORT"), or NULL. */
const char *kcld_emu_url(const struct kcld_emu *emu, const char *name);

/* Stops the emulators and reaps the process.  Safe to call twice. */
void kcld_emu_stop(struct kcld_emu *emu);

/* Project paths; returned strings are static. */
const char *kcld_test_root(void);
const char *kcld_test_bin(void);

/* Path of a file under ../shared (static buffer), or NULL when shared/ or the
 * file is absent: callers then skip() with a message. */
const char *kcld_test_shared(const char *rel);

/* The python3 interpreter itself (sys.executable, static), found once:
 * a version manager's shim (pyenv) can take over a second to start one,
 * longer than the short handler.timeout of the handler tests.  "python3"
 * when it cannot be told. */
const char *kcld_test_python(void);

/* Reads a whole file into a NUL-terminated malloc'd buffer; NULL on error. */
char *kcld_test_slurp(const char *path, size_t *len);

/* How many times `needle` occurs in the file at `path` (0 when it cannot
 * be read). */
int kcld_test_count_in_file(const char *path, const char *needle);

/* Runs the loop until nothing is active, then asserts uv_loop_close() == 0:
 * every handle the test opened must have been closed by the code under test. */
void kcld_test_loop_finish(uv_loop_t *loop);

/* Runs the loop until *flag becomes non-zero or timeout_ms passes; returns
 * the flag.  For waiting on one async result in a test. */
int kcld_test_run_until(uv_loop_t *loop, const volatile int *flag,
                        unsigned timeout_ms);

/* The default of config key `name` (kcld_config_key_default), for tests
 * that fill a module's options the way the daemon does from a config with
 * nothing set; fails the test for a key without a numeric default. */
int64_t kcld_test_key_default(const char *name);

#endif
