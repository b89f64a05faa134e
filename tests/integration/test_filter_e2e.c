/* test_filter_e2e.c — `filter` through the whole daemon: kcld against
 * kinesalite + dynalite with the stdout handler and two patterns (a YAML
 * mapping on data, Lambda's JSON string on partitionKey).
 *
 * Checked: the handler gets exactly the records some pattern matches, each
 * once (JSON "buy" orders, and the non-JSON records of a vip- key); no
 * filtered record reaches it; records put later that all fail the
 * patterns still move every shard's checkpoint to its last record; the
 * EMF file written at shutdown counts the filtered records in
 * kcld_records_filtered_total.  And `kcld --check-config` on invalid
 * patterns: exit 1 with file:line:col. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "awssync.h"
#include "base/seq.h"
#include "e2e.h"
#include "harness.h"
#include "proc.h"

#define STREAM "filtered"
#define APP "filter-app"

struct env {
  struct kcld_emu emu;
  struct kcld_test_aws *aws;
  char dir[64];
  json_t *produced;   /* {shard, seq, data, pk} in put order */
  json_t *kept;       /* the data of the records a pattern keeps */
  size_t dropped;
};

static struct env E;

/* Record i: JSON orders (every third a buy), two non-JSON records under a
 * vip- key, then non-JSON and sell records no pattern keeps. */
static int keeps(int i, char *data, size_t dn, char *pk, size_t kn)
{
  if (i < 40) {
    snprintf(data, dn, "{\"i\": %d, \"type\": \"%s\"}", i,
             i % 3 == 0 ? "buy" : "sell");
    snprintf(pk, kn, "pk-%d", i % 4);
    return i % 3 == 0;
  }
  if (i < 45) {
    snprintf(data, dn, "plain-%d", i);
    snprintf(pk, kn, "%s", i < 42 ? "vip-1" : "pk-x");
    return i < 42;
  }
  snprintf(data, dn, "{\"i\": %d, \"type\": \"sell\"}", i);
  snprintf(pk, kn, "tail-%d", i % 8);
  return 0;
}

static void put(int from, int to)
{
  char data[64][64], pk[64][32];
  const char *dp[64], *kp[64];
  int n = 0;
  for (int i = from; i < to; i++, n++) {
    if (keeps(i, data[n], sizeof(data[n]), pk[n], sizeof(pk[n])))
      json_array_append_new(E.kept, json_string(data[n]));
    else
      E.dropped++;
    dp[n] = data[n];
    kp[n] = pk[n];
  }
  kcld_e2e_put_records(E.aws, STREAM, dp, kp, (size_t)n, E.produced);
}

/* The data of every record in the stdout handler's file, in file order. */
static json_t *handled(const char *path)
{
  json_t *all = json_array();
  FILE *f = fopen(path, "r");
  char *line = NULL;
  size_t cap = 0;
  if (!f)
    return all;
  while (getline(&line, &cap, f) > 0) {
    json_t *ev = json_loads(line, 0, NULL);
    const char *b64 = json_string_value(
      json_object_get(json_object_get(ev, "kinesis"), "data"));
    unsigned char raw[128];
    int n;
    if (!b64 || strlen(b64) > 160) { /* a line being written */
      json_decref(ev);
      continue;
    }
    n = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)strlen(b64));
    for (const char *p = b64 + strlen(b64); n > 0 && p > b64 && p[-1] == '=';
         p--)
      n--;
    json_array_append_new(all, json_stringn((char *)raw, (size_t)n));
    json_decref(ev);
  }
  free(line);
  fclose(f);
  return all;
}

/* Each shard's last produced record is one no pattern keeps. */
static void assert_tails_dropped(void)
{
  json_t *last = json_object(), *e, *v;
  const char *shard;
  size_t i;
  json_array_foreach(E.produced, i, e)
    json_object_set(last, json_string_value(json_object_get(e, "shard")),
                    json_object_get(e, "data"));
  assert_int_equal(json_object_size(last), 2);
  json_object_foreach(last, shard, v) {
    json_array_foreach(E.kept, i, e)
      if (json_equal(e, v))
        fail_msg("%s ends on a kept record", shard);
  }
  json_decref(last);
}

/* 1 when every shard's lease has its last produced record as checkpoint. */
static int checkpoints_at_end(void)
{
  const char *type = NULL;
  json_t *req = json_pack("{s:s,s:b}", "TableName", APP, "ConsistentRead",
                          1);
  json_t *r = kcld_test_aws_call(E.aws, KCLD_AWS_DYNAMODB, "Scan", req,
                                 &type);
  json_t *last = json_object(), *e, *items;
  size_t i, at_end = 0;
  json_decref(req);
  json_array_foreach(E.produced, i, e) {
    const char *shard = json_string_value(json_object_get(e, "shard"));
    const char *prev = json_string_value(json_object_get(last, shard));
    const char *seq = json_string_value(json_object_get(e, "seq"));
    if (!prev || kcld_seq_compare(prev, seq) < 0)
      json_object_set_new(last, shard, json_string(seq));
  }
  items = json_object_get(r, "Items");
  json_array_foreach(items, i, e) {
    const char *shard = json_string_value(
      json_object_get(json_object_get(e, "leaseKey"), "S"));
    const char *cp = json_string_value(
      json_object_get(json_object_get(e, "checkpoint"), "S"));
    const char *want = json_string_value(json_object_get(last, shard));
    if (cp && want && strcmp(cp, want) == 0)
      at_end++;
  }
  i = json_object_size(last);
  json_decref(last);
  json_decref(r);
  return i > 0 && at_end == i;
}

/* The last value of `name` in the EMF file, or -1. */
static double emf_value(const char *path, const char *name)
{
  FILE *f = fopen(path, "r");
  char *line = NULL;
  size_t cap = 0;
  double v = -1;
  if (!f)
    return -1;
  while (getline(&line, &cap, f) > 0) {
    json_t *l = json_loads(line, 0, NULL);
    json_t *x = json_object_get(l, name);
    if (json_is_number(x))
      v = json_number_value(x);
    json_decref(l);
  }
  free(line);
  fclose(f);
  return v;
}

/* kcld_e2e_write_config's file, with an EMF file and `rest`. */
static void write_config(const char *conf, const char *emf, const char *rest)
{
  char *text;
  size_t len;
  FILE *f;
  const char *at;
  kcld_e2e_write_config(conf, &E.emu, APP, STREAM, rest);
  text = kcld_test_slurp(conf, &len);
  assert_non_null(text);
  at = strstr(text, "  listen: \"\"\n");
  assert_non_null(at);
  at += strlen("  listen: \"\"\n");
  f = fopen(conf, "w");
  assert_non_null(f);
  fprintf(f, "%.*s  emf: %s\n%s", (int)(at - text), text, emf, at);
  assert_int_equal(fclose(f), 0);
  free(text);
}

static void test_filter_e2e(void **state)
{
  char conf[128], out[128], log[128], emf[128], rest[512];
  json_t *got;
  pid_t pid;
  size_t i;
  json_t *e;
  unsigned long long end;
  (void)state;

  kcld_e2e_create_stream(E.aws, STREAM, 2);
  put(0, 45);
  snprintf(conf, sizeof(conf), "%s/k.yaml", E.dir);
  snprintf(out, sizeof(out), "%s/out.jsonl", E.dir);
  snprintf(log, sizeof(log), "%s/k.log", E.dir);
  snprintf(emf, sizeof(emf), "%s/emf.log", E.dir);
  snprintf(rest, sizeof(rest),
           "handler:\n  type: stdout\n  path: %s\n"
           "filter:\n"
           "  - data: {type: [buy]}\n"
           "  - '{\"partitionKey\": [{\"prefix\": \"vip-\"}]}'\n", out);
  write_config(conf, emf, rest);

  pid = kcld_test_spawn_kcld(conf, log);
  end = kcld_test_now_ms() + 60000;
  for (;;) {
    got = handled(out);
    if (json_array_size(got) >= json_array_size(E.kept))
      break;
    json_decref(got);
    if (kcld_test_now_ms() > end) {
      kcld_e2e_dump_file(log);
      kcld_test_reap(pid);
      fail_msg("the kept records were not handled within 60 s");
    }
    kcld_test_sleep_ms(100);
  }
  json_decref(got);

  /* Records no pattern keeps, put once the first ones are through: whole
   * deliveries filtered; every shard ends on one of them. */
  put(45, 61);
  assert_tails_dropped();
  end = kcld_test_now_ms() + 30000;
  while (!checkpoints_at_end()) {
    if (kcld_test_now_ms() > end) {
      kcld_e2e_dump_file(log);
      kcld_test_reap(pid);
      fail_msg("the checkpoints did not reach the filtered records");
    }
    kcld_test_sleep_ms(100);
  }
  kcld_e2e_stop_kcld(pid, log, 30000);

  /* Exactly the kept records, each once. */
  got = handled(out);
  assert_int_equal(json_array_size(got), json_array_size(E.kept));
  json_array_foreach(E.kept, i, e) {
    size_t j, hits = 0;
    json_t *g;
    json_array_foreach(got, j, g) hits += json_equal(g, e);
    if (hits != 1)
      fail_msg("kept record %s handled %zu times", json_string_value(e),
               hits);
  }
  json_decref(got);
  assert_int_equal((size_t)emf_value(emf, "kcld_records_filtered_total"),
                   E.dropped);
  assert_int_equal((size_t)emf_value(emf, "kcld_records_handled_total"),
                   json_array_size(E.kept));
}

/* `kcld --check-config` on patterns Lambda refuses: exit 1, and each error
 * names the file, line and column of the offending part. */
static void test_check_config_errors(void **state)
{
  char dir[] = "/tmp/kcld-filter-check-XXXXXX", conf[96], cmd[512];
  char out[2048];
  size_t n;
  FILE *f, *p;
  int st;
  (void)state;

  assert_non_null(mkdtemp(dir));
  snprintf(conf, sizeof(conf), "%s/k.yaml", dir);
  f = fopen(conf, "w");
  assert_non_null(f);
  fputs("application: filter-check\n"
        "stream: s\n"
        "region: us-east-1\n"
        "filter:\n"
        "  - data: {t: [{numeric: [\"=>\", 30]}]}\n"
        "  - '{\"data\": {\"t\": [{\"prefix\": 5}]}}'\n", f);
  assert_int_equal(fclose(f), 0);
  snprintf(cmd, sizeof(cmd), "'%s' --check-config '%s' 2>&1",
           kcld_test_bin(), conf);
  p = popen(cmd, "r");
  assert_non_null(p);
  n = fread(out, 1, sizeof(out) - 1, p);
  out[n] = '\0';
  st = pclose(p);
  printf("%s", out);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 1);
  /* The YAML mapping: the operator's own position. */
  assert_non_null(strstr(out, "k.yaml:5:27: filter[0]: data.t[0].numeric:"));
  assert_non_null(strstr(out, "\"=>\""));
  /* The JSON string: its position, and the fault inside it. */
  assert_non_null(strstr(out, "k.yaml:6:5: filter[1]: data.t[0].prefix"));
  assert_non_null(strstr(out, "(line 1, column 28 of the pattern)"));
  /* Nothing else is wrong with the file. */
  assert_null(strstr(out, "k.yaml:1:"));
  assert_int_equal(unlink(conf), 0);
  assert_int_equal(rmdir(dir), 0);
}

static int setup(void **state)
{
  (void)state;
  memset(&E, 0, sizeof(E));
  if (kcld_e2e_fixture_start(&E.emu, &E.aws, E.dir, sizeof(E.dir),
                             "filter") != 0)
    return -1;
  E.produced = json_array();
  E.kept = json_array();
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  json_decref(E.produced);
  json_decref(E.kept);
  kcld_e2e_fixture_stop(&E.emu, E.aws, E.dir);
  return 0;
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_check_config_errors),
    cmocka_unit_test_setup_teardown(test_filter_e2e, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
