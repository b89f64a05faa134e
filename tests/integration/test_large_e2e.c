/* test_large_e2e.c — records of 10 MiB through the kcld binary, as Kinesis
 * takes them now: fetched (a GetRecords answer of ~14 MiB, larger than
 * fetch.max_buffered_bytes), parsed, handed to a lambda child (an event line
 * of ~14 MiB) byte for byte.  The peak memory of kcld (VmHWM) is printed.
 *
 * Emulators: kinesis_large (kinesalite taking 10 MiB records,
 * tests/emulators/lib/kinesis_large.js) in a process of its own, and
 * dynalite and fauxqs; s3rver (tests/emulators/lib/s3.js) for the S3 dead
 * letter. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "base/base64.h"

#include "aws/s3.h"
#include "awsenv.h"
#include "awssync.h"
#include "s3sync.h"
#include "e2e.h"
#include "harness.h"
#include "proc.h"

#define BIG ((size_t)10 << 20)
#define WAIT_MS 60000

/* Kinesis apart: kinesalite's event loop is busy for about a second with
 * each 10 MiB record, which must not hold up the lease table's answers; S3
 * apart for the same reason (its front hashes each body). */
static struct kcld_emu s_kinesis, s_emu, s_s3;

#define BUCKET "dead-letters"

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

/* ======== S3, synchronously ======== */

/* One S3 call on a client of its own: op 'b' CreateBucket (its error in
 * *err), 'l' the keys under `key` as a prefix, 'g' GetObject `key` (the
 * body in *body). */
static json_t *s3_sync(char op, const char *key, char **body, int *err)
{
  struct kcld_test_awsenv e;
  struct kcld_s3 *s3;
  json_t *keys = NULL;

  kcld_test_awsenv_up(&e, KCLD_AWS_S3, kcld_emu_url(&s_s3, "s3"), 0);
  assert_int_equal(kcld_s3_new(e.aws, &e.loop, &s3), 0);
  if (op == 'b')
    *err = kcld_test_s3_create_bucket(s3, &e.loop, BUCKET);
  else if (op == 'l')
    keys = kcld_test_s3_keys(s3, &e.loop, BUCKET, key);
  else
    *body = kcld_test_s3_get(s3, &e.loop, BUCKET, key, NULL);
  kcld_s3_close(s3);
  kcld_test_awsenv_down(&e);
  return keys;
}

/* The keys under `prefix`, once there is at least one (kcld `pid` still
 * running; its log shown if none comes in WAIT_MS). */
static json_t *wait_objects(const char *prefix, const char *log)
{
  unsigned long long until = kcld_test_now_ms() + WAIT_MS;
  for (;;) {
    json_t *keys = s3_sync('l', prefix, NULL, NULL);
    if (json_array_size(keys) > 0)
      return keys;
    json_decref(keys);
    if (kcld_test_now_ms() > until) {
      kcld_e2e_dump_file(log);
      fail_msg("no dead-letter object in %d ms", WAIT_MS);
    }
    kcld_test_sleep_ms(200);
  }
}

/* Runs `kcld ARGS...` to its end, stdout to `out`; returns its exit
 * status, its peak RSS in KiB in *rss_kib. */
static int run_kcld(const char *out, long *rss_kib, const char *const *args)
{
  char *argv[16];
  struct rusage ru;
  int st = 0, n = 0;
  pid_t pid;

  argv[n++] = (char *)kcld_test_bin();
  while (*args && n < 15)
    argv[n++] = (char *)*args++;
  argv[n] = NULL;
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    FILE *f = freopen(out, "w", stdout);
    if (!f)
      _exit(127);
    execv(argv[0], argv);
    _exit(127);
  }
  assert_int_equal(wait4(pid, &st, 0, &ru), pid);
  *rss_kib = ru.ru_maxrss;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Runs `kcld ARGS...` (a redrive) in run directory `dir`: it must exit 0
 * with `want` in its summary line.  Returns its peak RSS in KiB. */
static long redrive_ok(const char *dir, const char *want,
                       const char *const *args)
{
  char out[128], *text;
  long rss = -1;
  int rc;
  snprintf(out, sizeof(out), "%s/redrive.out", dir);
  rc = run_kcld(out, &rss, args);
  text = kcld_test_slurp(out, NULL);
  if (rc != 0 || !text || !strstr(text, want))
    kcld_e2e_dump_file(out);
  assert_int_equal(rc, 0);
  assert_non_null(text);
  assert_non_null(strstr(text, want));
  free(text);
  unlink(out);
  return rss;
}

/* The records of `stream` (kinesis_large, one shard) from TRIM_HORIZON:
 * GetRecords' "Records" array. */
static json_t *records_of(struct kcld_test_aws *t, const char *stream)
{
  json_t *sh = kcld_e2e_call(t, KCLD_AWS_KINESIS, "ListShards",
                             json_pack("{s:s}", "StreamName", stream));
  const char *shard = json_string_value(json_object_get(
    json_array_get(json_object_get(sh, "Shards"), 0), "ShardId"));
  json_t *it = kcld_e2e_call(
    t, KCLD_AWS_KINESIS, "GetShardIterator",
    json_pack("{s:s,s:s,s:s}", "StreamName", stream, "ShardId", shard,
              "ShardIteratorType", "TRIM_HORIZON"));
  json_t *recs = kcld_e2e_call(
    t, KCLD_AWS_KINESIS, "GetRecords",
    json_pack("{s:s}", "ShardIterator",
              json_string_value(json_object_get(it, "ShardIterator"))));
  json_t *r = json_incref(json_object_get(recs, "Records"));
  assert_true(json_is_array(r));
  json_decref(sh);
  json_decref(it);
  json_decref(recs);
  return r;
}

/* The only record of `stream`. */
static json_t *only_record(struct kcld_test_aws *t, const char *stream)
{
  json_t *recs = records_of(t, stream);
  json_t *r = json_incref(json_array_get(recs, 0));
  assert_int_equal(json_array_size(recs), 1);
  json_decref(recs);
  return r;
}

/* The SHA-256 of base64 `b64` decoded. */
static void b64_sha256(const char *b64, size_t *len, char out[65])
{
  size_t n = 0, bad = 0, b = strlen(b64);
  char *raw = malloc(kcld_base64_decoded_max(b) + 1);
  assert_non_null(raw);
  assert_int_equal(kcld_base64_decode(b64, b, (uint8_t *)raw, &n, &bad), 0);
  *len = n;
  sha256_hex(raw, n, out);
  free(raw);
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

/* Starts kcld as application `app` on `stream` (the kinesis_large
 * emulator; S3 is s3rver): fetch budget 1 MiB a shard, batches of 2, the
 * child large_records.py as `handler` ("lambda" or "multilang") writing to
 * run->out; then `rest` (top-level YAML).  One worker a run: failover_time
 * is long (20 s) so that a loaded machine, or ASan, slowing the 10 MiB
 * records does not let the lease lapse and a record be handled twice. */
static void run_start(struct run *r, const char *app, const char *stream,
                      const char *handler, const char *rest)
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
          "stream: %s\n"
          "region: us-east-1\n"
          "starting_position: TRIM_HORIZON\n"
          "endpoints:\n"
          "  kinesis: %s\n"
          "  dynamodb: %s\n"
          "  s3: %s\n"
          "  sqs: %s\n"
          "credentials:\n"
          "  access_key_id: test\n"
          "  secret_access_key: test\n"
          "shutdown_timeout: 10s\n"
          "lease:\n"
          "  failover_time: 20s\n"
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
          app, stream, kcld_emu_url(&s_kinesis, "kinesis_large"),
          kcld_emu_url(&s_emu, "dynamodb"), kcld_emu_url(&s_s3, "s3"),
          kcld_emu_url(&s_emu, "sqs"), handler, kcld_test_root(), r->out,
          handler, rest ? rest : "");
  assert_int_equal(fclose(f), 0);
  r->pid = kcld_test_spawn_kcld(r->conf, r->log);
}

/* Removes the run's files. */
static void run_clean(struct run *r)
{
  unlink(r->conf);
  unlink(r->log);
  unlink(r->out);
  rmdir(r->dir);
}

/* Stops kcld (gracefully) and removes the run's files. */
static void run_stop(struct run *r)
{
  kcld_e2e_stop_kcld(r->pid, r->log, 20000);
  run_clean(r);
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

/* `kcld redrive --config ... --stream STREAM --dry-run` of run r: its
 * summary starts with `counts` and says kept 0, dry run, no error; the one
 * object under `prefix` stays, and STREAM gets no record. */
static void dry_run(struct kcld_test_aws *t, const struct run *r,
                    const char *stream, const char *prefix,
                    const char *counts)
{
  const char *args[] = {"redrive", "--config", r->conf, "--stream", stream,
                        "--dry-run", NULL};
  char want[160];
  json_t *keys, *recs;
  snprintf(want, sizeof(want),
           "%s\"kept\":0,\"dry_run\":true,\"error\":null", counts);
  redrive_ok(r->dir, want, args);
  keys = s3_sync('l', prefix, NULL, NULL);
  assert_int_equal(json_array_size(keys), 1);
  json_decref(keys);
  recs = records_of(t, stream);
  assert_int_equal(json_array_size(recs), 0);
  json_decref(recs);
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
  run_start(&r, "large-lambda", "large", "lambda", NULL);
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
  run_start(&r, "large-multilang", "large", "multilang", NULL);
  lines = wait_lines(r.out, 5, r.pid, r.log);
  hwm = vm_hwm_kib(r.pid);
  run_stop(&r);
  check_lines(lines, all, 5);
  printf("kcld, the same to a multilang record processor: peak RSS (VmHWM) "
         "%ld KiB\n", hwm);
  json_decref(lines);
}

/* A 10 MiB record (data and key, as large as Kinesis takes) that the
 * handler fails for good goes to S3 whole, as one object keyed like
 * Lambda's S3 destination; a dry run of `kcld redrive` (the config's
 * on_failure.s3) counts it and changes nothing, then `kcld redrive --s3`
 * puts it back into a stream byte for byte and deletes the object.  Peak
 * RSS of kcld and of the redrive printed. */
static void test_dead_letter_s3(void **state)
{
  static const char *const key = "poison-key";
  const size_t size = BIG - strlen(key); /* data + key: Kinesis's limit */
  const char *prefix = "kcld/aws/kinesis/large-dlq/";
  char *poison = big_text("poison-big:", size, 3), want[65], got[65];
  char loc[64], ts[160];
  const char *data = poison, *k, *seq;
  char *obj = NULL;
  struct kcld_test_aws *t;
  struct run r;
  int err = 0;
  json_t *produced = json_array(), *keys, *body, *rec, *res;
  long hwm, redrive_rss = -1;
  size_t len = 0;
  (void)state;

  sha256_hex(poison, size, want);
  t = kcld_test_aws_new(kcld_emu_url(&s_kinesis, "kinesis_large"),
                        kcld_emu_url(&s_emu, "dynamodb"), NULL);
  kcld_e2e_create_stream(t, "dlq-s3", 1);
  kcld_e2e_create_stream(t, "dlq-back", 1);
  kcld_e2e_put_records(t, "dlq-s3", &data, &key, 1, produced);
  s3_sync('b', NULL, NULL, &err); /* BucketAlreadyOwnedByYou: exists */

  run_start(&r, "large-dlq", "dlq-s3", "lambda",
            "retry:\n  max_retry_attempts: 0\n"
            "on_failure:\n  s3: s3://" BUCKET "/kcld\n");
  keys = wait_objects(prefix, r.log);
  hwm = vm_hwm_kib(r.pid);
  kcld_e2e_stop_kcld(r.pid, r.log, 20000);

  /* One object, keyed <prefix>aws/kinesis/<app>/<shard>/YYYY/MM/DD/
   * YYYY-MM-DDTHH.MM.SS-<requestId>, holding the record whole. */
  assert_int_equal(json_array_size(keys), 1);
  k = json_string_value(json_array_get(keys, 0));
  s3_sync('g', k, &obj, NULL);
  body = json_loads(obj, 0, NULL);
  free(obj);
  assert_non_null(body);
  snprintf(ts, sizeof(ts), "%.4s/%.2s/%.2s/%.10sT%.2s.%.2s.%.2s-%s",
           json_string_value(json_object_get(body, "timestamp")),
           json_string_value(json_object_get(body, "timestamp")) + 5,
           json_string_value(json_object_get(body, "timestamp")) + 8,
           json_string_value(json_object_get(body, "timestamp")),
           json_string_value(json_object_get(body, "timestamp")) + 11,
           json_string_value(json_object_get(body, "timestamp")) + 14,
           json_string_value(json_object_get(body, "timestamp")) + 17,
           json_string_value(json_object_get(
             json_object_get(body, "requestContext"), "requestId")));
  assert_int_equal(strncmp(k, prefix, strlen(prefix)), 0);
  assert_int_equal(strncmp(k + strlen(prefix), "shardId-000000000000/", 21),
                   0);
  assert_string_equal(k + strlen(prefix) + 21, ts);
  rec = json_array_get(json_object_get(body, "records"), 0);
  assert_int_equal(json_array_size(json_object_get(body, "records")), 1);
  seq = json_string_value(json_object_get(json_array_get(produced, 0),
                                          "seq"));
  assert_string_equal(json_string_value(json_object_get(rec,
                                                        "sequenceNumber")),
                      seq);
  assert_null(json_object_get(rec, "truncated"));
  b64_sha256(json_string_value(json_object_get(rec, "data")), &len, got);
  assert_int_equal(len, size);
  assert_string_equal(got, want);
  json_decref(body);
  json_decref(keys);

  /* A dry run from the config alone (its on_failure.s3 is the default):
   * the object read and counted, nothing put, nothing deleted. */
  dry_run(t, &r, "dlq-back", prefix, "\"objects\":1,\"records\":1,");

  /* Redriven into "dlq-back": the record whole, the object gone. */
  snprintf(loc, sizeof(loc), "s3://%s/kcld", BUCKET);
  {
    const char *args[] = {"redrive", "--s3", loc, "--stream", "dlq-back",
                          "--config", r.conf, NULL};
    redrive_rss = redrive_ok(r.dir, "\"objects\":1,\"records\":1,"
                                    "\"kept\":0,\"dry_run\":false", args);
  }
  keys = s3_sync('l', prefix, NULL, NULL);
  assert_int_equal(json_array_size(keys), 0);
  json_decref(keys);
  res = only_record(t, "dlq-back");
  assert_string_equal(json_string_value(json_object_get(res, "PartitionKey")),
                      key);
  b64_sha256(json_string_value(json_object_get(res, "Data")), &len, got);
  assert_int_equal(len, size);
  assert_string_equal(got, want);
  json_decref(res);
  run_clean(&r);
  printf("kcld, a 10 MiB record dead-lettered to S3 (on_failure.s3): peak "
         "RSS (VmHWM) %ld KiB; kcld redrive --s3 of it: peak RSS %ld KiB\n",
         hwm, redrive_rss);
  json_decref(produced);
  kcld_test_aws_free(t);
  free(poison);
}

/* With on_failure.sqs and .s3 both: the 10 MiB record goes to S3 and the
 * queue gets a message naming the object, without the records; a dry run
 * of `kcld redrive` (the config's on_failure.sqs) follows it and changes
 * nothing, then `kcld redrive --queue` follows it, puts the record back
 * whole, and deletes the object and the message. */
static void test_dead_letter_sqs_s3(void **state)
{
  static const char *const key = "poison-key-2";
  const size_t size = BIG - strlen(key);
  const char *prefix = "both/aws/kinesis/large-both/";
  char *poison = big_text("poison-big:", size, 4), want[65], got[65];
  char rest[1024], queue[512];
  const char *data = poison;
  struct kcld_test_aws *t;
  struct run r;
  json_t *keys, *q, *msgs, *body, *res;
  unsigned long long until;
  long redrive_rss = -1;
  size_t len = 0;
  int err = 0;
  (void)state;

  sha256_hex(poison, size, want);
  t = kcld_test_aws_new(kcld_emu_url(&s_kinesis, "kinesis_large"),
                        kcld_emu_url(&s_emu, "dynamodb"),
                        kcld_emu_url(&s_emu, "sqs"));
  kcld_e2e_create_stream(t, "dlq-both", 1);
  kcld_e2e_create_stream(t, "dlq-back2", 1);
  kcld_e2e_put_records(t, "dlq-both", &data, &key, 1, NULL);
  q = kcld_e2e_call(t, KCLD_AWS_SQS, "CreateQueue",
                    json_pack("{s:s}", "QueueName", "large-dlq"));
  snprintf(queue, sizeof(queue), "%s",
           json_string_value(json_object_get(q, "QueueUrl")));
  json_decref(q);
  s3_sync('b', NULL, NULL, &err);

  snprintf(rest, sizeof(rest),
           "retry:\n  max_retry_attempts: 0\n"
           "on_failure:\n  sqs: %s\n  s3: s3://" BUCKET "/both\n",
           queue);
  run_start(&r, "large-both", "dlq-both", "lambda", rest);
  /* The message names the object and carries no records (seen, and left
   * visible for the redrive).  It is sent once the object is stored. */
  until = kcld_test_now_ms() + WAIT_MS;
  for (;;) {
    msgs = kcld_e2e_call(t, KCLD_AWS_SQS, "ReceiveMessage",
                         json_pack("{s:s,s:i,s:i}", "QueueUrl", queue,
                                   "MaxNumberOfMessages", 10,
                                   "VisibilityTimeout", 0));
    if (json_array_size(json_object_get(msgs, "Messages")) > 0)
      break;
    json_decref(msgs);
    if (kcld_test_now_ms() > until) {
      kcld_e2e_dump_file(r.log);
      fail_msg("no dead-letter message in %d ms", WAIT_MS);
    }
    kcld_test_sleep_ms(200);
  }
  kcld_e2e_stop_kcld(r.pid, r.log, 20000);
  keys = s3_sync('l', prefix, NULL, NULL);
  assert_int_equal(json_array_size(keys), 1);
  assert_int_equal(json_array_size(json_object_get(msgs, "Messages")), 1);
  body = json_loads(json_string_value(json_object_get(json_array_get(
                      json_object_get(msgs, "Messages"), 0), "Body")),
                    0, NULL);
  kcld_test_s3_check_pointer(body, BUCKET,
                             json_string_value(json_array_get(keys, 0)),
                             size);
  json_decref(body);
  json_decref(msgs);
  json_decref(keys);

  /* A dry run from the config alone (on_failure.sqs is the default): the
   * message followed to its object and counted; the message made visible
   * again and the object kept, for the redrive below. */
  dry_run(t, &r, "dlq-back2", prefix, "\"messages\":1,\"records\":1,");

  {
    const char *args[] = {"redrive", "--queue", queue, "--stream",
                          "dlq-back2", "--config", r.conf, NULL};
    redrive_rss = redrive_ok(r.dir, "\"messages\":1,\"records\":1,"
                                    "\"kept\":0,\"dry_run\":false", args);
  }
  keys = s3_sync('l', prefix, NULL, NULL);
  assert_int_equal(json_array_size(keys), 0); /* the object deleted */
  json_decref(keys);
  res = only_record(t, "dlq-back2");
  b64_sha256(json_string_value(json_object_get(res, "Data")), &len, got);
  assert_int_equal(len, size);
  assert_string_equal(got, want);
  json_decref(res);
  run_clean(&r);
  printf("kcld redrive --queue of a message naming a 10 MiB S3 object: "
         "peak RSS %ld KiB\n", redrive_rss);
  kcld_test_aws_free(t);
  free(poison);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_lambda),
    cmocka_unit_test(test_multilang),
    cmocka_unit_test(test_dead_letter_s3),
    cmocka_unit_test(test_dead_letter_sqs_s3),
  };
  if (kcld_emu_start(&s_kinesis, "kinesis_large") != 0 ||
      kcld_emu_start(&s_emu, "dynamodb sqs") != 0 ||
      kcld_emu_start(&s_s3, "s3") != 0) {
    fprintf(stderr, "emulators did not start\n");
    return 1;
  }
  int rc = cmocka_run_group_tests(tests, setup, teardown);
  kcld_emu_stop(&s_s3);
  kcld_emu_stop(&s_emu);
  kcld_emu_stop(&s_kinesis);
  return rc;
}
