/* test_deagg.c — KPL de-aggregation: the real KPL records in
 * ../shared/testdata/kpl, aggregates built here with a tiny protobuf encoder
 * (including unknown fields of every wire type), and corrupted ones, each of
 * which must be refused by the scan so that the record passes through. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "base/kpl.h"
#include "consume/deagg.h"
#include "err.h"
#include "harness.h"

/* ======== A tiny protobuf encoder ======== */

struct buf {
  uint8_t *p;
  size_t len, cap;
};

static void put(struct buf *b, const void *d, size_t n)
{
  if (b->len + n > b->cap) {
    b->cap = (b->len + n) * 2 + 16;
    b->p = realloc(b->p, b->cap);
    assert_non_null(b->p);
  }
  if (n)
    memcpy(b->p + b->len, d, n);
  b->len += n;
}

static void put_byte(struct buf *b, uint8_t c)
{
  put(b, &c, 1);
}

static void put_varint(struct buf *b, uint64_t v)
{
  while (v >= 0x80) {
    put_byte(b, (uint8_t)(v | 0x80));
    v >>= 7;
  }
  put_byte(b, (uint8_t)v);
}

static void put_tag(struct buf *b, uint32_t num, int wt)
{
  put_varint(b, ((uint64_t)num << 3) | (uint64_t)wt);
}

static void put_uint(struct buf *b, uint32_t num, uint64_t v)
{
  put_tag(b, num, 0);
  put_varint(b, v);
}

static void put_bytes(struct buf *b, uint32_t num, const void *d, size_t n)
{
  put_tag(b, num, 2);
  put_varint(b, n);
  put(b, d, n);
}

static void put_str(struct buf *b, uint32_t num, const char *s)
{
  put_bytes(b, num, s, strlen(s));
}

/* Appends a Record {pk index, ehk index (when ehk >= 0), data}. */
static void put_record(struct buf *agg, uint64_t pk, long long ehk,
                       const char *data)
{
  struct buf r = {0};
  put_uint(&r, 1, pk);
  if (ehk >= 0)
    put_uint(&r, 2, (uint64_t)ehk);
  put_str(&r, 3, data);
  put_bytes(agg, 3, r.p, r.len);
  free(r.p);
}

/* magic + protobuf + MD5(protobuf), as the KPL writes it. */
static struct buf wrap(const struct buf *pb)
{
  static const uint8_t magic[4] = {0xF3, 0x89, 0x9A, 0xC2};
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  struct buf out = {0};
  put(&out, magic, 4);
  put(&out, pb->p, pb->len);
  assert_int_equal(EVP_Digest(pb->p, pb->len, md, &md_len, EVP_md5(), NULL),
                   1);
  put(&out, md, md_len);
  return out;
}

/* ======== Expanding through the module ======== */

struct expanded {
  struct kcld_record outer;
  struct kcld_record *recs;
  void *keys;
  long n;
  struct kcld_kpl_plan plan;
  int kind;
};

static const char k_seq[] =
  "49590338271490256608559692538361571095921575989136588898";

static void expand(struct expanded *e, const uint8_t *data, size_t len)
{
  memset(e, 0, sizeof(*e));
  e->outer.data = data;
  e->outer.data_len = len;
  e->outer.partition_key = "a";
  e->outer.partition_key_len = 1;
  e->outer.sequence_number = k_seq;
  e->outer.encryption_type = "KMS";
  e->outer.arrival_ms = 1562602074896;
  e->outer.batch = (struct kcld_record_batch *)&e->outer; /* any marker */
  e->kind = kcld_kpl_scan(data, len, &e->plan);
  if (e->kind != KCLD_KPL_AGGREGATE)
    return;
  assert_true(e->plan.nrecords > 0);
  assert_int_equal(e->plan.key_bytes % 8, 0);
  assert_string_equal(e->plan.why, "");
  e->recs = calloc(e->plan.nrecords, sizeof(*e->recs));
  e->keys = malloc(e->plan.key_bytes);
  assert_non_null(e->recs);
  assert_non_null(e->keys);
  size_t used = 0;
  e->n = kcld_deagg_expand(&e->outer, e->recs, e->plan.nrecords, e->keys,
                           e->plan.key_bytes, &used);
  assert_int_equal(e->n, (long)e->plan.nrecords);
  assert_int_equal(used, e->plan.key_bytes);
  /* What every user record inherits or gets by position. */
  for (long i = 0; i < e->n; i++) {
    const struct kcld_record *r = &e->recs[i];
    assert_ptr_equal(r->sequence_number, k_seq);
    assert_int_equal(r->sub_sequence_number, (uint64_t)i);
    assert_int_equal(r->arrival_ms, 1562602074896);
    assert_string_equal(r->encryption_type, "KMS");
    assert_ptr_equal(r->batch, e->outer.batch);
    assert_int_equal(r->aggregated, 1);
    assert_non_null(r->data);
    assert_true(r->data >= data + 4);
    assert_true(r->data + r->data_len <= data + len - 16);
    assert_int_equal(strlen(r->partition_key), r->partition_key_len);
  }
}

static void expanded_free(struct expanded *e)
{
  free(e->recs);
  free(e->keys);
}

static void assert_user(const struct kcld_record *r, const char *pk,
                        const char *ehk, const char *data)
{
  assert_int_equal(r->partition_key_len, strlen(pk));
  assert_string_equal(r->partition_key, pk);
  if (ehk == NULL)
    assert_null(r->explicit_hash_key);
  else
    assert_string_equal(r->explicit_hash_key, ehk);
  assert_int_equal(r->data_len, strlen(data));
  assert_memory_equal(r->data, data, r->data_len);
}

/* ======== The real KPL's records ======== */

static uint8_t *b64dec(const char *s, size_t *n)
{
  size_t len = strlen(s), pad = 0;
  uint8_t *out = malloc(len / 4 * 3 + 1);
  assert_non_null(out);
  if (len && s[len - 1] == '=')
    pad = len > 1 && s[len - 2] == '=' ? 2 : 1;
  int got = EVP_DecodeBlock(out, (const unsigned char *)s, (int)len);
  assert_true(got >= 0);
  *n = (size_t)got - pad;
  return out;
}

static void test_real_kpl(void **state)
{
  (void)state;
  const char *path = kcld_test_shared("testdata/kpl/real-kpl-aggregates.json");
  if (path == NULL) {
    print_message("shared/testdata/kpl/real-kpl-aggregates.json is absent; "
                  "skipping the real KPL vectors\n");
    skip();
  }
  json_error_t jerr;
  json_t *doc = json_load_file(path, 0, &jerr);
  assert_non_null(doc);
  json_t *cases = json_object_get(doc, "cases");
  assert_true(json_array_size(cases) >= 4);
  size_t ci, aggregates = 0, users = 0;
  json_t *c;
  json_array_foreach(cases, ci, c) {
    const char *name = json_string_value(json_object_get(c, "name"));
    json_t *expected = json_object_get(c, "expected");
    size_t len;
    uint8_t *data = b64dec(json_string_value(json_object_get(c, "data")),
                           &len);
    struct expanded e;
    expand(&e, data, len);
    print_message("%s: %zu bytes, kind %d, %zu expected\n", name, len,
                  e.kind, json_array_size(expected));
    assert_true(json_array_size(expected) >= 1);
    if (e.kind == KCLD_KPL_AGGREGATE) {
      aggregates++;
      assert_int_equal(e.n, (long)json_array_size(expected));
      size_t i;
      json_t *x;
      json_array_foreach(expected, i, x) {
        json_t *ehk = json_object_get(x, "explicitHashKey");
        assert_user(&e.recs[i],
                    json_string_value(json_object_get(x, "partitionKey")),
                    json_is_null(ehk) ? NULL : json_string_value(ehk),
                    json_string_value(json_object_get(x, "data")));
        users++;
      }
    } else {
      /* Not an aggregate: the record itself is the one expected record. */
      assert_int_equal(e.kind, KCLD_KPL_PLAIN);
      assert_int_equal(json_array_size(expected), 1);
      json_t *x = json_array_get(expected, 0);
      const char *pk = json_string_value(json_object_get(x, "partitionKey"));
      const char *outer_pk =
        json_string_value(json_object_get(c, "partitionKey"));
      assert_string_equal(pk, outer_pk);
      assert_true(json_is_null(json_object_get(x, "explicitHashKey")));
      const char *want = json_string_value(json_object_get(x, "data"));
      assert_int_equal(len, strlen(want));
      assert_memory_equal(data, want, len);
    }
    expanded_free(&e);
    free(data);
  }
  assert_int_equal(aggregates, 3);
  assert_int_equal(users, 16);
  json_decref(doc);
}

/* ======== Aggregates built here ======== */

static void test_one_record(void **state)
{
  (void)state;
  struct buf pb = {0};
  put_str(&pb, 1, "pk-only");
  put_record(&pb, 0, -1, "hello");
  struct buf agg = wrap(&pb);
  struct expanded e;
  expand(&e, agg.p, agg.len);
  assert_int_equal(e.kind, KCLD_KPL_AGGREGATE);
  assert_int_equal(e.n, 1);
  assert_user(&e.recs[0], "pk-only", NULL, "hello");
  expanded_free(&e);
  free(agg.p);
  free(pb.p);
}

static void test_two_records_with_ehks(void **state)
{
  (void)state;
  struct buf pb = {0};
  put_str(&pb, 1, "k0");
  put_str(&pb, 1, "k1");
  put_str(&pb, 2, "0");
  put_str(&pb, 2, "340282366920938463463374607431768211455");
  put_record(&pb, 1, 1, "second key, max hash");
  put_record(&pb, 0, -1, "first key, no hash key");
  struct buf agg = wrap(&pb);
  struct expanded e;
  expand(&e, agg.p, agg.len);
  assert_int_equal(e.kind, KCLD_KPL_AGGREGATE);
  assert_int_equal(e.n, 2);
  assert_user(&e.recs[0], "k1", "340282366920938463463374607431768211455",
              "second key, max hash");
  assert_user(&e.recs[1], "k0", NULL, "first key, no hash key");
  expanded_free(&e);
  free(agg.p);
  free(pb.p);
}

static void test_many_records(void **state)
{
  (void)state;
  enum { N = 2000, NPK = 7, NEHK = 3 };
  char s[64];
  struct buf pb = {0};
  for (int k = 0; k < NPK; k++) {
    snprintf(s, sizeof(s), "partition-%d", k);
    put_str(&pb, 1, s);
  }
  for (int k = 0; k < NEHK; k++) {
    snprintf(s, sizeof(s), "%d000000000000000000000000000000000", k + 1);
    put_str(&pb, 2, s);
  }
  for (int i = 0; i < N; i++) {
    snprintf(s, sizeof(s), "user record %d", i);
    put_record(&pb, (uint64_t)(i % NPK), i % 3 == 0 ? (i / 3) % NEHK : -1, s);
  }
  struct buf agg = wrap(&pb);
  struct expanded e;
  expand(&e, agg.p, agg.len);
  assert_int_equal(e.kind, KCLD_KPL_AGGREGATE);
  assert_int_equal(e.n, N);
  for (int i = 0; i < N; i++) {
    char pk[32], ehk[64];
    snprintf(pk, sizeof(pk), "partition-%d", i % NPK);
    snprintf(ehk, sizeof(ehk), "%d000000000000000000000000000000000",
             (i / 3) % NEHK + 1);
    snprintf(s, sizeof(s), "user record %d", i);
    assert_user(&e.recs[i], pk, i % 3 == 0 ? ehk : NULL, s);
  }
  /* Shared indices share one copy of the key. */
  assert_ptr_equal(e.recs[0].partition_key, e.recs[NPK].partition_key);
  expanded_free(&e);
  free(agg.p);
  free(pb.p);
}

/* Unknown fields of every wire type, at both levels and inside tags; known
 * numbers with an unexpected wire type; records before the tables; a
 * repeated scalar (last wins); an over-long but valid varint; empty data. */
static void test_unknown_fields(void **state)
{
  (void)state;
  static const uint8_t eight[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  struct buf pb = {0}, r = {0}, tag = {0};

  /* Record 0: before any table, full of extras. */
  put_uint(&r, 1, 5);                    /* overwritten below */
  put_uint(&r, 7, 42);                   /* unknown varint */
  put_tag(&r, 8, 1);                     /* unknown fixed64 */
  put(&r, eight, 8);
  put_tag(&r, 9, 5);                     /* unknown fixed32 */
  put(&r, eight, 4);
  put_str(&r, 10, "unknown bytes");      /* unknown LEN */
  put_tag(&r, 3, 0);                     /* data number, varint type */
  put_varint(&r, 3);
  put_str(&tag, 1, "tag-key");
  put_str(&tag, 2, "tag-value");
  put_tag(&tag, 3, 5);
  put(&tag, eight, 4);
  put_bytes(&r, 4, tag.p, tag.len);
  put_tag(&r, 1, 0);                     /* index 1 as a 3-byte varint */
  put_byte(&r, 0x81);
  put_byte(&r, 0x80);
  put_byte(&r, 0x00);
  put_str(&r, 3, "record zero");
  put_bytes(&pb, 3, r.p, r.len);

  /* Top-level extras between the tables. */
  put_uint(&pb, 4, UINT64_MAX);          /* 10-byte varint */
  put_tag(&pb, 5, 1);
  put(&pb, eight, 8);
  put_str(&pb, 1, "pk-zero");
  put_tag(&pb, 6, 5);
  put(&pb, eight, 4);
  put_str(&pb, 536870911, "largest field number");
  put_uint(&pb, 1, 9);                   /* table number, varint type */
  put_str(&pb, 1, "pk-one");
  put_tag(&pb, 2, 1);                    /* ehk table number, fixed64 */
  put(&pb, eight, 8);
  put_str(&pb, 2, "12345");
  put_record(&pb, 0, 0, "");             /* empty data */
  put_uint(&pb, 3, 1);                   /* records number, varint type */

  struct buf agg = wrap(&pb);
  struct expanded e;
  expand(&e, agg.p, agg.len);
  assert_int_equal(e.kind, KCLD_KPL_AGGREGATE);
  assert_int_equal(e.n, 2);
  assert_user(&e.recs[0], "pk-one", NULL, "record zero");
  assert_user(&e.recs[1], "pk-zero", "12345", "");
  expanded_free(&e);
  free(agg.p);
  free(pb.p);
  free(r.p);
  free(tag.p);
}

/* ======== Corrupted aggregates: refused, so they pass through ======== */

struct corrupt_case {
  const char *name;
  void (*build)(struct buf *pb);  /* protobuf bytes; MD5 made to match */
  const char *why;                /* expected substring of plan.why */
};

static void good_pb(struct buf *pb)
{
  put_str(pb, 1, "k");
  put_record(pb, 0, -1, "payload");
  put_record(pb, 0, -1, "payload 2");
}

static void c_truncated_len(struct buf *pb)
{
  good_pb(pb);
  pb->len -= 3;   /* the last record's LEN now runs past the end */
}

static void c_bad_varint(struct buf *pb)
{
  put_str(pb, 1, "k");
  for (int i = 0; i < 11; i++)
    put_byte(pb, 0xFF);
}

static void c_varint_65_bits(struct buf *pb)
{
  put_str(pb, 1, "k");
  put_record(pb, 0, -1, "x");
  put_tag(pb, 4, 0);
  for (int i = 0; i < 9; i++)
    put_byte(pb, 0xFF);
  put_byte(pb, 0x02);   /* a 10th byte carrying bit 64 */
}

static void c_truncated_varint(struct buf *pb)
{
  good_pb(pb);
  put_tag(pb, 4, 0);
  put_byte(pb, 0x80);
}

static void c_group(struct buf *pb)
{
  good_pb(pb);
  put_tag(pb, 9, 3);
  put_tag(pb, 9, 4);
}

static void c_wire_type_7(struct buf *pb)
{
  good_pb(pb);
  put_tag(pb, 9, 7);
}

static void c_field_zero(struct buf *pb)
{
  good_pb(pb);
  put_byte(pb, 0x02);   /* field 0, LEN */
  put_byte(pb, 0x00);
}

static void c_truncated_fixed64(struct buf *pb)
{
  good_pb(pb);
  put_tag(pb, 9, 1);
  put_byte(pb, 1);
}

static void c_pk_out_of_range(struct buf *pb)
{
  put_str(pb, 1, "k0");
  put_str(pb, 1, "k1");
  put_record(pb, 1, -1, "fine");
  put_record(pb, 2, -1, "index 2 of 2 keys");
}

static void c_ehk_out_of_range(struct buf *pb)
{
  put_str(pb, 1, "k0");
  put_str(pb, 2, "1");
  put_record(pb, 0, 0, "fine");
  put_record(pb, 0, 1, "ehk index 1 of 1");
}

static void c_ehk_without_table(struct buf *pb)
{
  put_str(pb, 1, "k0");
  put_record(pb, 0, 0, "ehk index with no ehk table");
}

static void c_no_pk_index(struct buf *pb)
{
  struct buf r = {0};
  put_str(pb, 1, "k0");
  put_str(&r, 3, "no key index");
  put_bytes(pb, 3, r.p, r.len);
  free(r.p);
}

static void c_no_data(struct buf *pb)
{
  struct buf r = {0};
  put_str(pb, 1, "k0");
  put_uint(&r, 1, 0);
  put_bytes(pb, 3, r.p, r.len);
  free(r.p);
}

static void c_zero_records(struct buf *pb)
{
  put_str(pb, 1, "k0");
  put_str(pb, 2, "7");
}

static void c_bad_utf8_key(struct buf *pb)
{
  put_str(pb, 1, "ok");
  put_str(pb, 1, "bad \xC0\xAF overlong");
  put_record(pb, 0, -1, "x");
}

static void c_tag_without_key(struct buf *pb)
{
  struct buf r = {0}, tag = {0};
  put_str(pb, 1, "k0");
  put_uint(&r, 1, 0);
  put_str(&r, 3, "x");
  put_str(&tag, 2, "value only");
  put_bytes(&r, 4, tag.p, tag.len);
  put_bytes(pb, 3, r.p, r.len);
  free(r.p);
  free(tag.p);
}

static void c_record_bad_inside(struct buf *pb)
{
  struct buf r = {0};
  put_str(pb, 1, "k0");
  put_record(pb, 0, -1, "fine");
  put_uint(&r, 1, 0);
  put_tag(&r, 3, 2);
  put_varint(&r, 50);   /* data length past the record's end */
  put(&r, "short", 5);
  put_bytes(pb, 3, r.p, r.len);
  free(r.p);
}

static const struct corrupt_case k_corrupt[] = {
  {"truncated LEN field", c_truncated_len, "runs past the end"},
  {"11-byte varint", c_bad_varint, "varint longer"},
  {"varint over 64 bits", c_varint_65_bits, "varint longer"},
  {"truncated varint", c_truncated_varint, "truncated varint"},
  {"group wire type", c_group, "group"},
  {"wire type 7", c_wire_type_7, "wire type"},
  {"field number 0", c_field_zero, "field number 0"},
  {"truncated fixed64", c_truncated_fixed64, "truncated 64-bit"},
  {"pk index out of range", c_pk_out_of_range,
   "records[1]: partition_key_index 2 is out of range (2 keys)"},
  {"ehk index out of range", c_ehk_out_of_range,
   "records[1]: explicit_hash_key_index 1 is out of range (1 keys)"},
  {"ehk index without table", c_ehk_without_table,
   "explicit_hash_key_index 0 is out of range (0 keys)"},
  {"no partition_key_index", c_no_pk_index, "partition_key_index is missing"},
  {"no data", c_no_data, "data is missing"},
  {"zero records", c_zero_records, "no records"},
  {"invalid UTF-8 key", c_bad_utf8_key,
   "partition_key_table[1] is not valid UTF-8"},
  {"tag without key", c_tag_without_key, "tag has no key"},
  {"malformed record", c_record_bad_inside, "records[1]: length-delimited"},
};

static void test_corrupt_protobuf(void **state)
{
  (void)state;
  for (size_t i = 0; i < sizeof(k_corrupt) / sizeof(k_corrupt[0]); i++) {
    struct buf pb = {0};
    k_corrupt[i].build(&pb);
    struct buf agg = wrap(&pb);
    struct expanded e;
    expand(&e, agg.p, agg.len);
    print_message("%-26s -> %s\n", k_corrupt[i].name, e.plan.why);
    assert_int_equal(e.kind, KCLD_KPL_CORRUPT);
    assert_int_equal(e.plan.nrecords, 0);
    assert_non_null(strstr(e.plan.why, k_corrupt[i].why));
    /* Expanding it anyway is refused, not attempted.  (Data the scan refused
     * for its content rather than its structure may still expand; skip
     * those.) */
    if (strstr(e.plan.why, "malformed") || strstr(e.plan.why, "records[")) {
      struct kcld_record out[4];
      uint64_t keys[64];
      size_t used = 0;
      e.outer.data = agg.p;
      assert_int_equal(kcld_deagg_expand(&e.outer, out, 4, keys,
                                         sizeof(keys), &used),
                       KCLD_EINVAL);
    }
    free(agg.p);
    free(pb.p);
  }
}

static void test_corrupt_envelope(void **state)
{
  (void)state;
  struct buf pb = {0};
  good_pb(&pb);
  struct buf agg = wrap(&pb);
  struct expanded e;

  /* Sanity: intact, it expands. */
  expand(&e, agg.p, agg.len);
  assert_int_equal(e.kind, KCLD_KPL_AGGREGATE);
  expanded_free(&e);

  /* Bad MD5 trailer. */
  agg.p[agg.len - 1] ^= 0x01;
  expand(&e, agg.p, agg.len);
  assert_int_equal(e.kind, KCLD_KPL_CORRUPT);
  assert_non_null(strstr(e.plan.why, "MD5"));
  agg.p[agg.len - 1] ^= 0x01;

  /* A flipped protobuf byte. */
  agg.p[10] ^= 0x40;
  expand(&e, agg.p, agg.len);
  assert_int_equal(e.kind, KCLD_KPL_CORRUPT);
  assert_non_null(strstr(e.plan.why, "MD5"));
  agg.p[10] ^= 0x40;

  /* Truncated: every shorter length is refused, never read past. */
  for (size_t n = 4; n < agg.len; n++) {
    uint8_t *copy = malloc(n); /* exact size, so ASan sees any overread */
    memcpy(copy, agg.p, n);
    expand(&e, copy, n);
    assert_int_equal(e.kind, KCLD_KPL_CORRUPT);
    free(copy);
  }

  /* Magic and at most 16 bytes: refused with the reason. */
  expand(&e, agg.p, 20);
  assert_int_equal(e.kind, KCLD_KPL_CORRUPT);
  assert_non_null(strstr(e.plan.why, "only 16 bytes follow"));
  expand(&e, agg.p, 4);
  assert_int_equal(e.kind, KCLD_KPL_CORRUPT);

  /* An empty protobuf (1 byte short of the minimum is covered above): a
   * valid MD5 over nothing still holds no records. */
  struct buf empty = {0};
  struct buf agg0 = wrap(&empty);
  assert_int_equal(agg0.len, 20);
  expand(&e, agg0.p, agg0.len);
  assert_int_equal(e.kind, KCLD_KPL_CORRUPT);

  free(agg0.p);
  free(agg.p);
  free(pb.p);
}

static void test_not_aggregated(void **state)
{
  (void)state;
  static const uint8_t wrong_magic[] = {0xF3, 0x89, 0x9A, 0xC3, 1, 2, 3, 4,
                                        5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
                                        15, 16, 17, 18, 19, 20};
  static const uint8_t short_magic[] = {0xF3, 0x89, 0x9A};
  const char *text = "RECORD 749 pjqrcfbxafzdndzmbgane";
  struct kcld_kpl_plan plan;

  assert_int_equal(kcld_kpl_scan((const uint8_t *)text, strlen(text),
                                   &plan), KCLD_KPL_PLAIN);
  assert_string_equal(plan.why, "");
  assert_int_equal(kcld_kpl_scan(wrong_magic, sizeof(wrong_magic), &plan),
                   KCLD_KPL_PLAIN);
  assert_int_equal(kcld_kpl_scan(short_magic, sizeof(short_magic), &plan),
                   KCLD_KPL_PLAIN);
  assert_int_equal(kcld_kpl_scan(short_magic, 0, &plan), KCLD_KPL_PLAIN);
}

static void test_expand_limits(void **state)
{
  (void)state;
  struct buf pb = {0};
  good_pb(&pb);
  struct buf agg = wrap(&pb);
  struct kcld_kpl_plan plan;
  struct kcld_record outer = {0}, out[2];
  uint64_t keys[16];
  size_t used = 0;

  assert_int_equal(kcld_kpl_scan(agg.p, agg.len, &plan),
                   KCLD_KPL_AGGREGATE);
  assert_int_equal(plan.nrecords, 2);
  assert_true(plan.key_bytes <= sizeof(keys));
  outer.data = agg.p;
  outer.data_len = agg.len;
  outer.sequence_number = "1";
  assert_int_equal(kcld_deagg_expand(&outer, out, 1, keys, sizeof(keys),
                                     &used), KCLD_EINVAL);
  assert_int_equal(kcld_deagg_expand(&outer, out, 2, keys,
                                     plan.key_bytes - 8, &used), KCLD_EINVAL);
  assert_int_equal(kcld_deagg_expand(&outer, out, 2, NULL, 0, &used),
                   KCLD_EINVAL);
  assert_int_equal(kcld_deagg_expand(&outer, out, 2, keys, plan.key_bytes,
                                     &used), 2);
  assert_int_equal(used, plan.key_bytes);
  assert_user(&out[0], "k", NULL, "payload");
  assert_user(&out[1], "k", NULL, "payload 2");
  free(agg.p);
  free(pb.p);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_real_kpl),
    cmocka_unit_test(test_one_record),
    cmocka_unit_test(test_two_records_with_ehks),
    cmocka_unit_test(test_many_records),
    cmocka_unit_test(test_unknown_fields),
    cmocka_unit_test(test_corrupt_protobuf),
    cmocka_unit_test(test_corrupt_envelope),
    cmocka_unit_test(test_not_aggregated),
    cmocka_unit_test(test_expand_limits),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
