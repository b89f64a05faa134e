/* test_redrive_line.c — an on-failure record read back and put again
 * (cmd/redrive_line.h), no emulator: the PutRecords calls are started on a
 * client whose endpoint nobody answers, and cancelled.
 *
 *   - the records come back with their data and keys, in order;
 *   - PutRecords calls carry at most 5 MiB, a record over 1 MiB alone, and
 *     a call that took all moves on to the next;
 *   - a call starts whatever the stack held before (the call's records are
 *     whole: no explicit hash key read from an unset field). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "awsenv.h"
#include "aws/kinesis.h"
#include "base/base64.h"
#include "cmd/redrive_line.h"
#include "err.h"
#include "harness.h"

#define MIB ((size_t)1 << 20)

/* An on-failure record holding records of the sizes in sizes[0..n-1],
 * record i's bytes all 'a' + i, key "key-i". */
static char *body_of(const size_t *sizes, size_t n)
{
  json_t *recs = json_array(), *doc;
  char *text;
  for (size_t i = 0; i < n; i++) {
    char *raw = malloc(sizes[i] + 1), key[32], seq[64];
    char *b64 = malloc(kcld_base64_encoded_len(sizes[i]) + 1);
    assert_non_null(raw);
    assert_non_null(b64);
    memset(raw, 'a' + (int)i, sizes[i]);
    kcld_base64_encode(b64, raw, sizes[i]);
    snprintf(key, sizeof(key), "key-%zu", i);
    snprintf(seq, sizeof(seq), "4959033827149025660855969%zu", i);
    json_array_append_new(recs, json_pack("{s:s,s:s,s:s}", "partitionKey",
                                          key, "sequenceNumber", seq,
                                          "data", b64));
    free(raw);
    free(b64);
  }
  doc = json_pack("{s:{s:s,s:s},s:o}", "KinesisBatchInfo", "shardId",
                  "shardId-000000000001", "streamArn", "", "records", recs);
  text = json_dumps(doc, JSON_COMPACT);
  json_decref(doc);
  assert_non_null(text);
  return text;
}

/* Leaves a large stretch of the stack full of pointers to text that is not
 * UTF-8, where the next call's locals will be. */
static __attribute__((noinline)) void dirty_stack(void)
{
  static const char junk[] = "\xff\xfe\xff";
  const char *volatile fill[4096];
  for (size_t i = 0; i < sizeof(fill) / sizeof(fill[0]); i++)
    fill[i] = junk;
  (void)fill[0];
}

struct answer {
  int done, err;
};

static void on_put(const struct kcld_kinesis_put_result *res, void *arg)
{
  struct answer *a = arg;
  a->err = res->st.err;
  a->done = 1;
}

static void test_parse(void **state)
{
  static const size_t sizes[] = {3, 1, 7};
  struct kcld_redrive_line l;
  const char *why = "unset";
  char *body = body_of(sizes, 3);
  (void)state;
  assert_int_equal(kcld_redrive_line_parse(body, &l, &why), 0);
  assert_null(why);
  assert_int_equal(l.count, 3);
  assert_null(l.stream); /* "" names no stream */
  assert_string_equal(l.shard_id, "shardId-000000000001");
  for (size_t i = 0; i < 3; i++) {
    char key[32];
    snprintf(key, sizeof(key), "key-%zu", i);
    assert_int_equal(l.recs[i].len, sizes[i]);
    for (size_t j = 0; j < sizes[i]; j++) /* every byte, not the ends */
      assert_int_equal(l.recs[i].data[j], 'a' + (int)i);
    assert_string_equal(l.recs[i].key, key);
  }
  assert_string_equal(kcld_redrive_line_target(&l, "s", 1), "s");
  kcld_redrive_line_free(&l);
  free(body);
}

/* A record of 3 MiB, five of just under 1 MiB, one of 1000 bytes: the
 * first goes alone (over 1 MiB), the next five together (under 5 MiB with
 * their keys), the last alone (5 MiB reached); a refused call keeps its
 * place.  Every call starts after the stack was filled with junk. */
static void test_put_calls(void **state)
{
  static const size_t sizes[] = {3 * MIB,  MIB - 10, MIB - 10, MIB - 10,
                                 MIB - 10, MIB - 10, 1000};
  static const size_t ends[] = {1, 6, 7};
  const struct kcld_kinesis_put_entry ok[5] = {
    {.sequence_number = "1"}, {.sequence_number = "2"},
    {.sequence_number = "3"}, {.sequence_number = "4"},
    {.sequence_number = "5"}};
  const struct kcld_kinesis_put_result failed = {.st = {.err = KCLD_EAWS}};
  struct kcld_test_awsenv e;
  struct kcld_kinesis *k;
  struct kcld_redrive_line l;
  struct answer a = {0};
  const char *why = NULL;
  char *body = body_of(sizes, 7);
  (void)state;

  assert_int_equal(kcld_redrive_line_parse(body, &l, &why), 0);
  /* The endpoint is never contacted: the calls are cancelled before the
   * loop runs. */
  kcld_test_awsenv_up(&e, KCLD_AWS_KINESIS, "http://127.0.0.1:9", 1);
  assert_int_equal(kcld_kinesis_new(e.aws, &e.loop, &k), 0);
  for (size_t c = 0; c < 3; c++) {
    size_t from = l.put_at;
    struct kcld_kinesis_put_result res = {.entries = ok,
                                          .count = ends[c] - from};
    dirty_stack();
    assert_int_equal(kcld_redrive_line_put(&l, k, "back", on_put, &a), 0);
    assert_int_equal(l.put_end, ends[c]);
    assert_int_equal(kcld_redrive_line_took(&l, &failed), 0); /* kept */
    assert_int_equal(l.put_at, from);
    assert_int_equal(kcld_redrive_line_took(&l, &res), ends[c] - from);
    assert_int_equal(l.put_at, ends[c]);
  }
  assert_int_equal(l.put_at, l.count);

  kcld_kinesis_close(k); /* cancels the calls */
  kcld_test_awsenv_down(&e);
  assert_true(a.done);
  assert_int_equal(a.err, KCLD_ECANCELED);
  kcld_redrive_line_free(&l);
  free(body);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_parse),
    cmocka_unit_test(test_put_calls),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
