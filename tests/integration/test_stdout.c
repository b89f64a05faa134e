/* test_stdout.c — the stdout handler on a real uv loop: records
 * from a parsed GetRecords body written as Lambda-shaped JSON lines to
 * handler.path (base64 and utf8 data, with the base64 fallback for
 * payloads that are not UTF-8) and to standard output, parsed back and
 * compared field by field; concurrent batches never interleave lines; an
 * unwritable path is refused at start-up. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "config.h"
#include "consume/getrecords.h"
#include "err.h"
#include "handlers/handler.h"
#include "harness.h"

#define WAIT_MS 10000
#define SHARD "shardId-000000000003"
#define ARN "arn:aws:kinesis:eu-west-1:123456789012:stream/s"

struct env {
  uv_loop_t loop;
  struct kcld_config *cfg;
  struct kcld_handler *h;
};

static int env_up(struct env *e, const char *handler_yaml)
{
  struct kcld_handler_env he = {0};
  char yaml[1024], *errors = NULL;

  memset(e, 0, sizeof(*e));
  snprintf(yaml, sizeof(yaml),
           "application: app\nstream: s\nhandler:\n  type: stdout\n%s",
           handler_yaml);
  if (kcld_config_parse("t.yaml", yaml, strlen(yaml), &e->cfg, &errors) != 0)
    fail_msg("config: %s", errors ? errors : "?");
  assert_int_equal(uv_loop_init(&e->loop), 0);
  he.loop = &e->loop;
  he.cfg = e->cfg;
  he.region = "eu-west-1";
  he.stream_arn = ARN;
  return kcld_handler_new(&he, &e->h);
}

static void env_down(struct env *e)
{
  if (e->h)
    kcld_handler_close(e->h);
  kcld_test_loop_finish(&e->loop);
  kcld_config_free(e->cfg);
}

/* Records with these payloads (lengths given: payloads may hold any
 * byte); sequence numbers <prefix><i>, partition keys "key-<i>",
 * sub-sequence 0, arrival 1700000000.250 + i. */
static struct kcld_record_batch *make_batch(const char *prefix,
                                            const char *const *data,
                                            const size_t *lens, size_t n)
{
  json_t *recs = json_array(), *body;
  struct kcld_record_batch *b = NULL;
  char err[256];

  for (size_t i = 0; i < n; i++) {
    char *b64 = malloc(4 * ((lens[i] + 2) / 3) + 1), seq[96], pk[32];
    EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)data[i],
                    (int)lens[i]);
    snprintf(seq, sizeof(seq), "%s%04zu", prefix, i);
    snprintf(pk, sizeof(pk), "key-%zu", i);
    json_array_append_new(recs, json_pack("{ss ss ss sf}", "Data", b64,
                                          "PartitionKey", pk,
                                          "SequenceNumber", seq,
                                          "ApproximateArrivalTimestamp",
                                          1700000000.25 + (double)i));
    free(b64);
  }
  body = json_pack("{so ss}", "Records", recs, "NextShardIterator", "it");
  char *text = json_dumps(body, JSON_COMPACT);
  if (kcld_getrecords_parse(text, strlen(text), SHARD, &b, err,
                            sizeof(err)) != 0)
    fail_msg("getrecords: %s", err);
  free(text);
  json_decref(body);
  return b;
}

struct answer {
  int done;
  enum kcld_handler_status status;
};

static void on_done(const struct kcld_handler_result *r, void *arg)
{
  struct answer *a = arg;
  a->done++;
  a->status = r->status;
}

static void start(struct env *e, struct kcld_record_batch *b,
                  const struct kcld_record **ptrs, struct answer *a)
{
  struct kcld_handler_batch hb = {0};
  for (size_t i = 0; i < b->count; i++)
    ptrs[i] = &b->records[i];
  hb.shard_id = SHARD;
  hb.records = ptrs;
  hb.count = b->count;
  hb.millis_behind_latest = -1;
  hb.attempt = 1;
  assert_int_equal(kcld_handler_process(e->h, &hb, on_done, a), 0);
}

static void run(struct env *e, struct kcld_record_batch *b)
{
  const struct kcld_record **ptrs = calloc(b->count, sizeof(*ptrs));
  struct answer a = {0};
  start(e, b, ptrs, &a);
  assert_true(kcld_test_run_until(&e->loop, &a.done, WAIT_MS));
  assert_int_equal(a.done, 1);
  assert_int_equal(a.status, KCLD_HANDLER_OK);
  free(ptrs);
}

/* Parses every line of `text` (each must be one JSON object). */
static json_t *lines_of(const char *text)
{
  json_t *lines = json_array();
  const char *p = text;
  while (*p) {
    const char *nl = strchr(p, '\n');
    json_error_t e;
    assert_non_null(nl);   /* every line ends with a newline */
    json_t *v = json_loadb(p, (size_t)(nl - p), JSON_ALLOW_NUL, &e);
    if (!v || !json_is_object(v))
      fail_msg("line is not a JSON object: %.*s (%s)", (int)(nl - p), p,
               e.text);
    json_array_append_new(lines, v);
    p = nl + 1;
  }
  return lines;
}

static char *b64_of(const char *d, size_t n)
{
  char *b = malloc(4 * ((n + 2) / 3) + 1);
  EVP_EncodeBlock((unsigned char *)b, (const unsigned char *)d, (int)n);
  return b;
}

/* Checks one line against record i of the batch. */
static void check_line(const json_t *ev, const char *prefix, size_t i,
                       const char *data, size_t len, int utf8)
{
  json_t *k = json_object_get(ev, "kinesis");
  char want[128];

  assert_string_equal(json_string_value(json_object_get(k,
                        "kinesisSchemaVersion")), "1.0");
  snprintf(want, sizeof(want), "key-%zu", i);
  assert_string_equal(json_string_value(json_object_get(k, "partitionKey")),
                      want);
  snprintf(want, sizeof(want), "%s%04zu", prefix, i);
  assert_string_equal(json_string_value(json_object_get(k,
                        "sequenceNumber")), want);
  assert_int_equal(json_integer_value(json_object_get(k,
                     "subSequenceNumber")), 0);
  double ts = json_number_value(json_object_get(k,
                                  "approximateArrivalTimestamp"));
  assert_true(ts > 1700000000.25 + (double)i - 0.0005 &&
              ts < 1700000000.25 + (double)i + 0.0005);
  json_t *d = json_object_get(k, "data");
  if (utf8 && !json_object_get(k, "dataEncoding")) {
    assert_int_equal(json_string_length(d), len);
    assert_memory_equal(json_string_value(d), data, len);
  } else {
    char *b = b64_of(data, len);
    assert_string_equal(json_string_value(d), b);
    free(b);
    if (utf8)
      assert_string_equal(json_string_value(json_object_get(k,
                            "dataEncoding")), "base64");
    else
      assert_null(json_object_get(k, "dataEncoding"));
  }
  assert_string_equal(json_string_value(json_object_get(ev, "eventSource")),
                      "aws:kinesis");
  assert_string_equal(json_string_value(json_object_get(ev, "eventVersion")),
                      "1.0");
  assert_string_equal(json_string_value(json_object_get(ev, "eventName")),
                      "aws:kinesis:record");
  snprintf(want, sizeof(want), "%s:%s%04zu", SHARD, prefix, i);
  assert_string_equal(json_string_value(json_object_get(ev, "eventID")),
                      want);
  assert_string_equal(json_string_value(json_object_get(ev, "awsRegion")),
                      "eu-west-1");
  assert_string_equal(json_string_value(json_object_get(ev,
                        "eventSourceARN")), ARN);
}

#define D(s) s
#define L(s) (sizeof(s) - 1)
#define P0 "{\"hello\":\"world\"}"
#define P1 "plain text with \"quotes\" and \\ and \t tab"
#define P2 "caf\xc3\xa9 \xe2\x82\xac"
#define P3 ""
#define P4 "not utf8 \xff\xfe"
#define P5 "nul\0inside"
static const char *const s_data[] = {D(P0), D(P1), D(P2), D(P3), D(P4),
                                     D(P5)};
static const size_t s_lens[] = {L(P0), L(P1), L(P2), L(P3), L(P4), L(P5)};
#define NDATA (sizeof(s_data) / sizeof(s_data[0]))

static void file_mode(int utf8)
{
  char path[] = "/tmp/kcld-stdout-XXXXXX", yaml[256];
  int fd = mkstemp(path);
  struct env e;
  struct kcld_record_batch *b;
  (void)s_lens;

  assert_true(fd >= 0);
  close(fd);
  /* Appends: a line already in the file stays. */
  FILE *f = fopen(path, "w");
  fputs("{\"before\":true}\n", f);
  fclose(f);
  snprintf(yaml, sizeof(yaml), "  path: %s\n  decode: %s\n", path,
           utf8 ? "utf8" : "base64");
  assert_int_equal(env_up(&e, yaml), 0);
  b = make_batch("4960000000000000000000", s_data, s_lens, NDATA);
  run(&e, b);
  run(&e, b);   /* a second batch appends */
  env_down(&e);

  char *text = kcld_test_slurp(path, NULL);
  assert_non_null(text);
  json_t *lines = lines_of(text);
  assert_int_equal(json_array_size(lines), 1 + 2 * NDATA);
  assert_true(json_is_true(json_object_get(json_array_get(lines, 0),
                                           "before")));
  for (size_t i = 0; i < 2 * NDATA; i++)
    check_line(json_array_get(lines, 1 + i), "4960000000000000000000",
               i % NDATA, s_data[i % NDATA], s_lens[i % NDATA], utf8);
  /* utf8 mode: only the payload that is not UTF-8 falls back. */
  if (utf8) {
    assert_string_equal(json_string_value(json_object_get(json_object_get(
      json_array_get(lines, 1 + 2), "kinesis"), "data")),
      "caf\xc3\xa9 \xe2\x82\xac");
    assert_non_null(json_object_get(json_object_get(json_array_get(lines,
      1 + 4), "kinesis"), "dataEncoding"));
  }
  json_decref(lines);
  free(text);
  kcld_record_batch_release(b);
  unlink(path);
}

static void test_file_base64(void **state)
{
  (void)state;
  file_mode(0);
}

static void test_file_utf8(void **state)
{
  (void)state;
  file_mode(1);
}

/* Standard output (no handler.path): fd 1 is pointed at a file for the
 * run. */
static void test_stdout(void **state)
{
  char path[] = "/tmp/kcld-stdout1-XXXXXX";
  int fd = mkstemp(path), saved;
  struct env e;
  (void)state;

  assert_true(fd >= 0);
  assert_int_equal(env_up(&e, "  decode: utf8\n"), 0);
  struct kcld_record_batch *b = make_batch("5", s_data, s_lens, 3);
  fflush(stdout);
  saved = dup(STDOUT_FILENO);
  assert_true(dup2(fd, STDOUT_FILENO) >= 0);
  run(&e, b);
  dup2(saved, STDOUT_FILENO);
  close(saved);
  close(fd);
  env_down(&e);

  char *text = kcld_test_slurp(path, NULL);
  json_t *lines = lines_of(text);
  assert_int_equal(json_array_size(lines), 3);
  for (size_t i = 0; i < 3; i++)
    check_line(json_array_get(lines, i), "5", i, s_data[i], s_lens[i], 1);
  json_decref(lines);
  free(text);
  kcld_record_batch_release(b);
  unlink(path);
}

/* Batches in flight at once (as with parallelization_factor) write whole
 * batches: the lines of one batch are contiguous and in order. */
static void test_concurrent_batches(void **state)
{
  char path[] = "/tmp/kcld-stdout2-XXXXXX", yaml[256];
  enum { NB = 6, NR = 300 };
  struct kcld_record_batch *b[NB];
  const struct kcld_record **ptrs[NB];
  struct answer a[NB];
  struct env e;
  int fd = mkstemp(path);
  (void)state;

  close(fd);
  snprintf(yaml, sizeof(yaml), "  path: %s\n", path);
  assert_int_equal(env_up(&e, yaml), 0);
  const char *d[NR];
  size_t l[NR];
  char blob[200];
  memset(blob, 'q', sizeof(blob) - 1);
  blob[sizeof(blob) - 1] = '\0';
  for (size_t i = 0; i < NR; i++) {
    d[i] = blob;
    l[i] = sizeof(blob) - 1;
  }
  for (int k = 0; k < NB; k++) {
    char prefix[16];
    snprintf(prefix, sizeof(prefix), "%d", k + 1);
    b[k] = make_batch(prefix, d, l, NR);
    ptrs[k] = calloc(NR, sizeof(*ptrs[k]));
    memset(&a[k], 0, sizeof(a[k]));
    start(&e, b[k], ptrs[k], &a[k]);
  }
  for (int k = 0; k < NB; k++) {
    assert_true(kcld_test_run_until(&e.loop, &a[k].done, WAIT_MS));
    assert_int_equal(a[k].status, KCLD_HANDLER_OK);
  }
  env_down(&e);

  char *text = kcld_test_slurp(path, NULL);
  json_t *lines = lines_of(text);
  assert_int_equal(json_array_size(lines), NB * NR);
  for (size_t i = 0; i < NB * NR; i += NR) {
    const char *seq0 = json_string_value(json_object_get(json_object_get(
      json_array_get(lines, i), "kinesis"), "sequenceNumber"));
    int k = seq0[0] - '1';
    assert_true(k >= 0 && k < NB);
    char prefix[16];
    snprintf(prefix, sizeof(prefix), "%d", k + 1);
    for (size_t j = 0; j < NR; j++)
      check_line(json_array_get(lines, i + j), prefix, j, blob,
                 sizeof(blob) - 1, 0);
  }
  json_decref(lines);
  free(text);
  for (int k = 0; k < NB; k++) {
    free(ptrs[k]);
    kcld_record_batch_release(b[k]);
  }
  unlink(path);
}

static void test_bad_path(void **state)
{
  struct env e;
  (void)state;
  assert_int_equal(env_up(&e, "  path: /nonexistent-dir/kcld/out.jsonl\n"),
                   KCLD_EIO);
  assert_null(e.h);
  env_down(&e);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_file_base64),
    cmocka_unit_test(test_file_utf8),
    cmocka_unit_test(test_stdout),
    cmocka_unit_test(test_concurrent_batches),
    cmocka_unit_test(test_bad_path),
  };
  json_object_seed(0);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
