/* test_kpl.c — the KPL codec on its own: aggregates written by
 * kcld_kpl_encode() scan as aggregates and read back record by record
 * (keys shared through the tables, explicit hash keys, an empty payload),
 * a flipped byte turns one corrupt, the reader refuses key room that is too
 * small and input that is no aggregate, and the encoder refuses what it
 * cannot write.  (The verdicts on hand-built and real KPL aggregates are in
 * test_deagg.c, through the consumer's glue.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/kpl.h"
#include "err.h"

static void test_round_trip(void **state)
{
  struct kcld_kpl_record in[5], got;
  const char *keys[5] = {"k1", "k2", "k1", "k3", "k2"};
  char data[5][32];
  uint8_t *agg = NULL;
  size_t len = 0, used = 0;
  struct kcld_kpl_plan plan;
  struct kcld_kpl_reader rd;
  (void)state;
  for (int i = 0; i < 5; i++) {
    snprintf(data[i], sizeof(data[i]), "record %d", i);
    in[i].data = (const uint8_t *)data[i];
    in[i].data_len = strlen(data[i]);
    in[i].partition_key = keys[i];
    in[i].explicit_hash_key = i == 3 ? "12345" : NULL;
  }
  in[4].data_len = 0; /* an empty payload is allowed */
  assert_int_equal(kcld_kpl_encode(in, 5, &agg, &len), 0);
  assert_memory_equal(agg, "\xF3\x89\x9A\xC2", 4);
  assert_int_equal(kcld_kpl_scan(agg, len, &plan), KCLD_KPL_AGGREGATE);
  assert_int_equal(plan.nrecords, 5);
  assert_string_equal(plan.why, "");
  /* Three distinct partition keys and one hash key, each stored once:
   * 4 table entries of 16 bytes and "k1" "k2" "k3" "12345" with their
   * terminators, rounded up to 8. */
  assert_int_equal(plan.key_bytes, 4 * 16 + 16);

  void *room = aligned_alloc(8, plan.key_bytes);
  assert_non_null(room);
  assert_int_equal(kcld_kpl_reader_init(&rd, agg, len, room, plan.key_bytes,
                                        &used), 0);
  assert_int_equal(used, plan.key_bytes);
  for (int i = 0; i < 5; i++) {
    assert_int_equal(kcld_kpl_reader_next(&rd, &got), 1);
    assert_string_equal(got.partition_key, keys[i]);
    assert_int_equal(got.partition_key_len, strlen(keys[i]));
    assert_int_equal(got.data_len, in[i].data_len);
    assert_memory_equal(got.data, in[i].data, in[i].data_len);
    assert_true(got.data >= agg + 4 && got.data + got.data_len <= agg + len);
    if (i == 3)
      assert_string_equal(got.explicit_hash_key, "12345");
    else
      assert_null(got.explicit_hash_key);
  }
  assert_int_equal(kcld_kpl_reader_next(&rd, &got), 0);
  assert_int_equal(kcld_kpl_reader_next(&rd, &got), 0);

  /* Too little key room: refused, nothing read. */
  assert_int_equal(kcld_kpl_reader_init(&rd, agg, len, room,
                                        plan.key_bytes - 8, &used), -1);
  assert_int_equal(kcld_kpl_reader_init(&rd, agg, len, NULL, 0, &used), -1);
  free(room);

  /* A flipped byte breaks the MD5: the record would pass through. */
  agg[10] ^= 1;
  assert_int_equal(kcld_kpl_scan(agg, len, &plan), KCLD_KPL_CORRUPT);
  assert_non_null(strstr(plan.why, "MD5"));
  assert_int_equal(plan.nrecords, 0);
  free(agg);
}

static void test_not_aggregates(void **state)
{
  static const uint8_t text[] = "{\"plain\":\"json\"}";
  static const uint8_t magic_only[] = {0xF3, 0x89, 0x9A, 0xC2, 0, 0};
  struct kcld_kpl_plan plan;
  struct kcld_kpl_reader rd;
  uint64_t room[4];
  size_t used;
  (void)state;
  assert_int_equal(kcld_kpl_scan(text, sizeof(text) - 1, &plan),
                   KCLD_KPL_PLAIN);
  assert_int_equal(kcld_kpl_scan(text, 0, &plan), KCLD_KPL_PLAIN);
  assert_int_equal(kcld_kpl_scan(magic_only, sizeof(magic_only), &plan),
                   KCLD_KPL_CORRUPT);
  assert_non_null(strstr(plan.why, "follow the KPL magic"));
  assert_int_equal(kcld_kpl_reader_init(&rd, text, sizeof(text) - 1, room,
                                        sizeof(room), &used), -1);
  assert_int_equal(kcld_kpl_reader_init(&rd, magic_only, sizeof(magic_only),
                                        room, sizeof(room), &used), -1);
}

static void test_encode_refuses(void **state)
{
  struct kcld_kpl_record r = {NULL, 0, "pk", 2, NULL};
  uint8_t *agg = (uint8_t *)1;
  size_t len = 1;
  (void)state;
  assert_int_equal(kcld_kpl_encode(&r, 0, &agg, &len), KCLD_EINVAL);
  assert_null(agg);
  assert_int_equal(len, 0);
  assert_int_equal(kcld_kpl_encode(NULL, 1, &agg, &len), KCLD_EINVAL);
  r.partition_key = NULL;
  assert_int_equal(kcld_kpl_encode(&r, 1, &agg, &len), KCLD_EINVAL);
  r.partition_key = "pk";
  r.data_len = 3; /* no data, but a length */
  assert_int_equal(kcld_kpl_encode(&r, 1, &agg, &len), KCLD_EINVAL);
  /* A record with no data at all is fine. */
  r.data_len = 0;
  assert_int_equal(kcld_kpl_encode(&r, 1, &agg, &len), 0);
  struct kcld_kpl_plan plan;
  assert_int_equal(kcld_kpl_scan(agg, len, &plan), KCLD_KPL_AGGREGATE);
  assert_int_equal(plan.nrecords, 1);
  free(agg);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_round_trip),
    cmocka_unit_test(test_not_aggregates),
    cmocka_unit_test(test_encode_refuses),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
