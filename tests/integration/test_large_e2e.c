/* test_large_e2e.c — records of 10 MiB through the kcld binary, as Kinesis
 * takes them now: fetched (a GetRecords answer of ~14 MiB, larger than
 * fetch.max_buffered_bytes), parsed, handed to a lambda child (an event line
 * of ~14 MiB) byte for byte.  The peak memory of kcld (VmHWM) is printed.
 *
 * Emulators: kinesis_large (kinesalite taking 10 MiB records,
 * tests/emulators/lib/kinesis_large.js) in a process of its own, and
 * dynalite. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "awssync.h"
#include "e2e.h"
#include "harness.h"
#include "proc.h"

#define BIG ((size_t)10 << 20)
#define WAIT_MS 60000

/* Kinesis apart: kinesalite's event loop is busy for about a second with
 * each 10 MiB record, which must not hold up the lease table's answers. */
static struct kcld_emu s_kinesis, s_emu;

/* ======== Helpers ======== */

/* `n` bytes of text starting with `head`, the rest a pattern of letters
 * that depends on `seed`. */
static char *big_text(const char *head, size_t n, unsigned seed)
{
  char *t = malloc(n + 1);
  size_t h = strlen(head);
  assert_non_null(t);
  memcpy(t, head, h);
  for (size_t i = h; i < n; i++)
    t[i] = (char)('a' + (i * 7 + i / 977 + seed) % 26);
  t[n] = '\0';
  return t;
}

static void sha256_hex(const char *data, size_t n, char out[65])
{
  unsigned char md[32];
  unsigned int len = 0;
  static const char hex[] = "0123456789abcdef";
  assert_int_equal(EVP_Digest(data, n, md, &len, EVP_sha256(), NULL), 1);
  for (unsigned i = 0; i < 32; i++) {
    out[2 * i] = hex[md[i] >> 4];
    out[2 * i + 1] = hex[md[i] & 15];
  }
  out[64] = '\0';
}

/* kcld's peak resident memory in KiB (VmHWM), or -1. */
static long vm_hwm_kib(pid_t pid)
{
  char path[64], line[256];
  long kib = -1;
  FILE *f;
  snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
  if (!(f = fopen(path, "r")))
    return -1;
  while (fgets(line, sizeof(line), f))
    if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
      break;
  fclose(f);
  return kib;
}

/* Lines of `path` (the child's out file), waiting until there are `want`
 * or WAIT_MS passed. */
static json_t *wait_lines(const char *path, size_t want, pid_t pid,
                          const char *log)
{
  unsigned long long until = kcld_test_now_ms() + WAIT_MS;
  for (;;) {
    char *text = kcld_test_slurp(path, NULL);
    json_t *lines = json_array();
    for (char *p = text, *nl; p && (nl = strchr(p, '\n')); p = nl + 1)
      json_array_append_new(lines, json_stringn(p, (size_t)(nl - p)));
    free(text);
    if (json_array_size(lines) >= want)
      return lines;
    json_decref(lines);
    if (kcld_test_now_ms() > until) {
      kill(pid, SIGKILL);
      kcld_test_reap(pid);
      kcld_e2e_dump_file(log);
      fail_msg("the handler saw fewer than %zu records in %d ms", want,
               WAIT_MS);
    }
    kcld_test_sleep_ms(100);
  }
}

/* The records every test reads: stream "large", one shard, put once. */
static struct {
  char *big1, *big2;
  const char *data[5];
  json_t *produced;        /* [{shard, seq, data, pk}] in put order */
  unsigned long long put_ms;
} s_recs;

/* One kcld run: its files in a directory of its own. */
struct run {
  char dir[32], conf[96], log[96], out[96];
  pid_t pid;
};

/* Starts kcld as application `app` on stream "large" (the kinesis_large
 * emulator): fetch budget 1 MiB a shard, batches of 2, the child
 * large_records.py as `handler` ("lambda" or "multilang") writing to
 * run->out; then `rest` (top-level YAML). */
static void run_start(struct run *r, const char *app, const char *handler,
                      const char *rest)
{
  FILE *f;
  snprintf(r->dir, sizeof(r->dir), "/tmp/kcld-large-XXXXXX");
  assert_non_null(mkdtemp(r->dir));
  snprintf(r->conf, sizeof(r->conf), "%s/kcld.yaml", r->dir);
  snprintf(r->log, sizeof(r->log), "%s/kcld.log", r->dir);
  snprintf(r->out, sizeof(r->out), "%s/out.txt", r->dir);
  f = fopen(r->conf, "w");
  assert_non_null(f);
  fprintf(f,
          "application: %s\n"
          "stream: large\n"
          "region: us-east-1\n"
          "starting_position: TRIM_HORIZON\n"
          "endpoints:\n"
          "  kinesis: %s\n"
          "  dynamodb: %s\n"
          "credentials:\n"
          "  access_key_id: test\n"
          "  secret_access_key: test\n"
          "shutdown_timeout: 10s\n"
          "lease:\n"
          "  failover_time: 3s\n"
          "fetch:\n"
          "  idle_time: 200ms\n"
          "  max_buffered_bytes: 1MiB\n"
          "metrics:\n"
          "  listen: \"\"\n"
          "batch:\n"
          "  size: 2\n"
          "handler:\n"
          "  type: %s\n"
          "  command: [\"python3\", \"%s/tests/processors/large_records.py\", "
          "\"%s\", \"%s\"]\n"
          "%s",
          app, kcld_emu_url(&s_kinesis, "kinesis_large"),
          kcld_emu_url(&s_emu, "dynamodb"), handler, kcld_test_root(), r->out,
          handler, rest ? rest : "");
  assert_int_equal(fclose(f), 0);
  r->pid = kcld_test_spawn_kcld(r->conf, r->log);
}

/* Stops kcld (gracefully) and removes the run's files. */
static void run_stop(struct run *r)
{
  kcld_e2e_stop_kcld(r->pid, r->log, 20000);
  unlink(r->conf);
  unlink(r->log);
  unlink(r->out);
  rmdir(r->dir);
}

/* Every line of `lines` ("<seq> <bytes> <sha256>") is record i of the put
 * records, for the `n` indexes in `which`. */
static void check_lines(const json_t *lines, const size_t *which, size_t n)
{
  assert_int_equal(json_array_size(lines), n);
  for (size_t k = 0; k < n; k++) {
    size_t i = which[k];
    char seq[96], hex[65], want[65];
    size_t len = 0;
    const char *line = json_string_value(json_array_get(lines, k));
    assert_int_equal(sscanf(line, "%95s %zu %64s", seq, &len, hex), 3);
    assert_string_equal(seq, json_string_value(json_object_get(
                               json_array_get(s_recs.produced, i), "seq")));
    assert_int_equal(len, strlen(s_recs.data[i]));
    sha256_hex(s_recs.data[i], len, want);
    assert_string_equal(hex, want);
  }
}

static int setup(void **state)
{
  static const char *const keys[] = {"k", "k", "k", "k", "k"};
  struct kcld_test_aws *t;
  unsigned long long t0;
  (void)state;
  s_recs.big1 = big_text("big-one:", BIG, 1);
  s_recs.big2 = big_text("big-two:", BIG, 2);
  s_recs.data[0] = "small-1";
  s_recs.data[1] = s_recs.big1;
  s_recs.data[2] = "small-2";
  s_recs.data[3] = s_recs.big2;
  s_recs.data[4] = "small-3";
  s_recs.produced = json_array();
  t = kcld_test_aws_new(kcld_emu_url(&s_kinesis, "kinesis_large"),
                        kcld_emu_url(&s_emu, "dynamodb"), NULL);
  kcld_e2e_create_stream(t, "large", 1);
  /* A record over 1 MiB goes alone in its PutRecords call. */
  t0 = kcld_test_now_ms();
  for (size_t i = 0; i < 5; i++)
    kcld_e2e_put_records(t, "large", &s_recs.data[i], &keys[i], 1,
                         s_recs.produced);
  s_recs.put_ms = kcld_test_now_ms() - t0;
  kcld_test_aws_free(t);
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  json_decref(s_recs.produced);
  free(s_recs.big1);
  free(s_recs.big2);
  return 0;
}

/* ======== Tests ======== */

/* Two 10 MiB records between small ones reach a lambda child whole, with a
 * fetch budget of 1 MiB a shard: an answer larger than the budget still
 * goes through when the shard holds nothing else. */
static void test_lambda(void **state)
{
  static const size_t all[] = {0, 1, 2, 3, 4};
  struct run r;
  unsigned long long t0 = kcld_test_now_ms(), ms;
  json_t *lines;
  long hwm;
  (void)state;
  run_start(&r, "large-lambda", "lambda", NULL);
  lines = wait_lines(r.out, 5, r.pid, r.log);
  ms = kcld_test_now_ms() - t0;
  hwm = vm_hwm_kib(r.pid);
  run_stop(&r);
  check_lines(lines, all, 5);
  printf("kcld, two 10 MiB records among 3 small ones to a lambda child "
         "(fetch budget 1 MiB a shard): put in %llu ms, all handled %llu ms "
         "after kcld started, peak RSS (VmHWM) %ld KiB\n",
         s_recs.put_ms, ms, hwm);
  json_decref(lines);
}

/* The same through a KCL multilang record processor. */
static void test_multilang(void **state)
{
  static const size_t all[] = {0, 1, 2, 3, 4};
  struct run r;
  json_t *lines;
  long hwm;
  (void)state;
  run_start(&r, "large-multilang", "multilang", NULL);
  lines = wait_lines(r.out, 5, r.pid, r.log);
  hwm = vm_hwm_kib(r.pid);
  run_stop(&r);
  check_lines(lines, all, 5);
  printf("kcld, the same to a multilang record processor: peak RSS (VmHWM) "
         "%ld KiB\n", hwm);
  json_decref(lines);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_lambda),
    cmocka_unit_test(test_multilang),
  };
  if (kcld_emu_start(&s_kinesis, "kinesis_large") != 0 ||
      kcld_emu_start(&s_emu, "dynamodb") != 0) {
    fprintf(stderr, "emulators did not start\n");
    return 1;
  }
  int rc = cmocka_run_group_tests(tests, setup, teardown);
  kcld_emu_stop(&s_emu);
  kcld_emu_stop(&s_kinesis);
  return rc;
}
