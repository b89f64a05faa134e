/* test_main.c — the kcld binary's command line: --check-config on the
 * shipped files and on a bad one, --dump-config without secrets, a URL
 * with a password refused in every mode, a missing handler program refused
 * by --check-config and the daemon, config-reference, --version, --help,
 * and usage errors (exit 2).
 *
 * Runs the binary of the build under test (KCLD_BIN, set by
 * tests/run-tests.sh) from the project root, so paths are given relative
 * and appear in messages as given. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "kcld/version.h"
#include "../harness/harness.h"

struct run {
  int status;  /* exit code, or 128 + signal */
  char *out;
  char *err;
};

static char *read_all(FILE *f)
{
  long n;
  char *buf;
  fflush(f);
  fseek(f, 0, SEEK_END);
  n = ftell(f);
  rewind(f);
  buf = calloc(1, (size_t)n + 1);
  assert_non_null(buf);
  if (n > 0)
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  return buf;
}

/* Runs kcld with args (NULL-terminated) in the project root. */
static struct run run_kcld(const char *arg, ...)
{
  const char *argv[16];
  int argc = 0;
  va_list ap;
  struct run r = {0};
  FILE *out = tmpfile(), *err = tmpfile();
  assert_non_null(out);
  assert_non_null(err);
  argv[argc++] = kcld_test_bin();
  va_start(ap, arg);
  for (const char *a = arg; a && argc < 15; a = va_arg(ap, const char *))
    argv[argc++] = a;
  va_end(ap);
  argv[argc] = NULL;
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int devnull = open("/dev/null", O_RDONLY);
    if (chdir(kcld_test_root()) != 0)
      _exit(126);
    dup2(devnull, 0);
    dup2(fileno(out), 1);
    dup2(fileno(err), 2);
    execv(argv[0], (char *const *)argv);
    _exit(127);
  }
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  r.out = read_all(out);
  r.err = read_all(err);
  return r;
}

static void run_free(struct run *r)
{
  free(r->out);
  free(r->err);
}

static int setup(void **state)
{
  struct stat st;
  (void)state;
  if (stat(kcld_test_bin(), &st) != 0) {
    fprintf(stderr, "kcld binary %s is absent: build it first "
                    "(make check builds it)\n", kcld_test_bin());
    return -1;
  }
  return 0;
}

static void expect(const struct run *r, int status, const char *out,
                   const char *err)
{
  if (r->status != status || (out && strcmp(r->out, out) != 0) ||
      (err && strcmp(r->err, err) != 0))
    fail_msg("exit %d (want %d)\nstdout: %s\nstderr: %s", r->status, status,
             r->out, r->err);
}

static void test_check_shipped_files(void **state)
{
  (void)state;
  unsetenv("KCLD_KINESIS_ENDPOINT");
  struct run r = run_kcld("--check-config", "conf/kcld.yaml", NULL);
  expect(&r, 0, "kcld: conf/kcld.yaml: configuration ok\n", "");
  run_free(&r);
  r = run_kcld("--check-config", "conf/local.yaml", NULL);
  expect(&r, 0, "kcld: conf/local.yaml: configuration ok\n", "");
  run_free(&r);
  r = run_kcld("--check-config", "--config", "conf/local.yaml", NULL);
  expect(&r, 0, "kcld: conf/local.yaml: configuration ok\n", "");
  run_free(&r);
  r = run_kcld("--check-config=conf/kcld.yaml", NULL);
  expect(&r, 0, "kcld: conf/kcld.yaml: configuration ok\n", "");
  run_free(&r);
  r = run_kcld("-t", "-c", "tests/unit/config/full.yaml", NULL);
  expect(&r, 0, "kcld: tests/unit/config/full.yaml: configuration ok\n", "");
  run_free(&r);
}

static void test_check_bad_file(void **state)
{
  (void)state;
  struct run r = run_kcld("--check-config", "tests/unit/config/bad.yaml",
                          NULL);
  expect(&r, 1, "",
         "tests/unit/config/bad.yaml:6:22: credentials.secret_access_key: "
         "must be printable ASCII without spaces (value not shown)\n"
         "tests/unit/config/bad.yaml:8:9: batch.size: must be 1..10000, got "
         "0\n"
         "tests/unit/config/bad.yaml:9:3: batch.sise: unknown key (did you "
         "mean batch.size?)\n"
         "tests/unit/config/bad.yaml:11:9: handler.type: must be one of "
         "multilang, lambda, dynamodb, plugin, stdout, got \"lamda\" (did "
         "you mean lambda?)\n"
         "kcld: tests/unit/config/bad.yaml: configuration invalid\n");
  assert_null(strstr(r.err, "SECRETVALUE"));
  run_free(&r);

  /* Daemon mode refuses the same file before anything starts. */
  r = run_kcld("--config", "tests/unit/config/bad.yaml", NULL);
  assert_int_equal(r.status, 1);
  assert_non_null(strstr(r.err, "bad.yaml:8:9: batch.size: must be 1..10000"));
  run_free(&r);

  r = run_kcld("--check-config", "nonexistent.yaml", NULL);
  expect(&r, 1, "",
         "kcld: nonexistent.yaml: cannot read: No such file or directory\n");
  run_free(&r);
}

static void write_tmp(char *path, const char *text)
{
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  close(fd);
}

/* A URL with a password is refused by every mode and never printed; a
 * handler program that is not installed fails --check-config and the
 * daemon's start, not --dump-config. */
static void test_hostile_and_runtime(void **state)
{
  (void)state;
  char creds[] = "/tmp/kcld-cli-creds-XXXXXX";
  char prog[] = "/tmp/kcld-cli-prog-XXXXXX";
  char want[512];
  write_tmp(creds, "application: app\nstream: s\n"
                   "endpoint: http://AKIDUSER:s3cretPW@localhost:4566\n");
  write_tmp(prog, "application: app\nstream: s\nhandler:\n"
                  "  type: multilang\n"
                  "  command: kcld-no-such-program-xyz app.py\n");

  snprintf(want, sizeof(want),
           "%s:3:11: endpoint: must not contain credentials (a user or "
           "password before \"@\"); AWS credentials come from the "
           "credentials section or the AWS SDK chain (value not shown)\n"
           "kcld: %s: configuration invalid\n", creds, creds);
  const char *const modes[] = {"--check-config", "--dump-config",
                               "--config"};
  for (size_t i = 0; i < 3; i++) {
    struct run r = run_kcld(modes[i], creds, NULL);
    expect(&r, 1, "", want);
    assert_null(strstr(r.out, "s3cretPW"));
    assert_null(strstr(r.err, "s3cretPW"));
    run_free(&r);
  }

  snprintf(want, sizeof(want),
           "%s:5:12: handler.command: cannot run "
           "\"kcld-no-such-program-xyz\": not found in PATH\n"
           "kcld: %s: configuration invalid\n", prog, prog);
  struct run r = run_kcld("--check-config", prog, NULL);
  expect(&r, 1, "", want);
  run_free(&r);
  r = run_kcld("--config", prog, NULL);
  expect(&r, 1, "", want);
  run_free(&r);
  r = run_kcld("--dump-config", prog, NULL);
  assert_int_equal(r.status, 0);
  assert_non_null(strstr(r.out, "kcld-no-such-program-xyz"));
  run_free(&r);
  unlink(creds);
  unlink(prog);
}

static void test_dump_config(void **state)
{
  (void)state;
  struct run r = run_kcld("--dump-config", "tests/unit/config/secret.yaml",
                          NULL);
  assert_int_equal(r.status, 0);
  assert_null(strstr(r.out, "wJalrXUtnFEMI"));
  assert_null(strstr(r.out, "IQoJb3JpZ2lu"));
  assert_null(strstr(r.err, "wJalrXUtnFEMI"));
  assert_non_null(strstr(r.out, "  secret_access_key: \"[redacted]\"\n"));
  assert_non_null(strstr(r.out, "  session_token: \"[redacted]\"\n"));
  assert_non_null(strstr(r.out, "\n  table: \"orders\"\n")); /* derived */
  assert_non_null(strstr(r.out, "\n  take_interval: 20s\n"));
  run_free(&r);
}

static void test_config_reference(void **state)
{
  (void)state;
  char path[4096];
  struct run r = run_kcld("config-reference", "yaml", NULL);
  snprintf(path, sizeof(path), "%s/conf/kcld.yaml", kcld_test_root());
  char *committed = kcld_test_slurp(path, NULL);
  assert_non_null(committed);
  assert_int_equal(r.status, 0);
  assert_string_equal(r.out, committed);
  free(committed);
  run_free(&r);

  r = run_kcld("config-reference", "markdown", NULL);
  snprintf(path, sizeof(path), "%s/docs/configuration.md", kcld_test_root());
  committed = kcld_test_slurp(path, NULL);
  assert_non_null(committed);
  assert_int_equal(r.status, 0);
  assert_string_equal(r.out, committed);
  free(committed);
  run_free(&r);

  /* A bad format: the command's usage on stderr, exit 2; --help: the same
   * text on stdout, exit 0. */
  r = run_kcld("config-reference", "html", NULL);
  assert_int_equal(r.status, 2);
  assert_string_equal(r.out, "");
  static const char use[] = "usage: kcld config-reference yaml|markdown\n";
  assert_true(strncmp(r.err, use, sizeof(use) - 1) == 0);
  assert_non_null(strstr(r.err, "docs/configuration.md"));
  struct run h = run_kcld("config-reference", "--help", NULL);
  expect(&h, 0, r.err, "");
  run_free(&h);
  run_free(&r);
}

static void test_version_help(void **state)
{
  (void)state;
  struct run r = run_kcld("--version", NULL);
  expect(&r, 0, "kcld " KCLD_VERSION_STRING "\n", "");
  run_free(&r);
  r = run_kcld("-V", NULL);
  expect(&r, 0, "kcld " KCLD_VERSION_STRING "\n", "");
  run_free(&r);

  r = run_kcld("--help", NULL);
  assert_int_equal(r.status, 0);
  static const char *const opts[] = {
    "-c, --config PATH", "-t, --check-config", "--dump-config",
    "-v, --verbose", "-V, --version", "-h, --help",
    KCLD_CONFIG_DEFAULT_PATH};
  for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
    if (!strstr(r.out, opts[i]))
      fail_msg("--help lacks '%s':\n%s", opts[i], r.out);
  static const char *const cmds[] = {"config-reference", "produce",
                                      "status", "redrive"};
  for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
    if (!strstr(r.out, cmds[i])) /* every command is listed */
      fail_msg("--help lacks the command '%s':\n%s", cmds[i], r.out);
  run_free(&r);
}

static void test_usage_errors(void **state)
{
  (void)state;
  struct run r = run_kcld("frobnicate", NULL);
  assert_int_equal(r.status, 2);
  assert_non_null(strstr(r.err, "kcld: unknown command 'frobnicate'\n"));
  assert_non_null(strstr(r.err, "usage: kcld"));
  run_free(&r);

  r = run_kcld("--frobnicate", NULL);
  assert_int_equal(r.status, 2);
  assert_non_null(strstr(r.err, "kcld: unknown option '--frobnicate'\n"));
  run_free(&r);

  r = run_kcld("-x", NULL);
  assert_int_equal(r.status, 2);
  assert_non_null(strstr(r.err, "kcld: unknown option '-x'\n"));
  run_free(&r);

  r = run_kcld("--config", NULL);
  assert_int_equal(r.status, 2);
  assert_non_null(strstr(r.err, "kcld: option '--config' needs an "
                                "argument\n"));
  run_free(&r);

  r = run_kcld("-v", "extra", NULL);
  assert_int_equal(r.status, 2);
  assert_non_null(strstr(r.err, "kcld: unexpected argument 'extra'\n"));
  run_free(&r);

  r = run_kcld("--check-config", "--config", "conf/kcld.yaml",
               "conf/local.yaml", NULL);
  assert_int_equal(r.status, 2);
  assert_non_null(strstr(r.err, "two configuration files given"));
  run_free(&r);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_check_shipped_files),
    cmocka_unit_test(test_check_bad_file),
    cmocka_unit_test(test_hostile_and_runtime),
    cmocka_unit_test(test_dump_config),
    cmocka_unit_test(test_config_reference),
    cmocka_unit_test(test_version_help),
    cmocka_unit_test(test_usage_errors),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
