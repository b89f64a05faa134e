/* fuzz_deagg.c — libFuzzer target for kcld_kpl_scan() and
 * kcld_deagg_expand().
 *
 * Input: one mode byte, then the payload.  Mode bit 0 clear: the payload is
 * one Kinesis record's data as is (the magic must be found by mutation and
 * the MD5 trailer almost never matches, which tests the refusals).  Bit 0
 * set: the payload is the protobuf part, and the target adds the magic and
 * the right MD5 trailer, so that mutations reach the protobuf decoder.
 *
 * Checked against kpl.h and deagg.h: a plan for every kind; an aggregate
 * expands into exactly plan.nrecords records with plan.key_bytes of keys,
 * every pointer inside the outer data or the key room; expanding into less
 * room gives KCLD_EINVAL; expanding what the scan refused stays inside the
 * room. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "base/kpl.h"
#include "consume/deagg.h"
#include "consume/record.h"
#include "err.h"
#include "fuzz.h"

static const uint8_t k_magic[4] = {0xF3, 0x89, 0x9A, 0xC2};
static const char k_seq[] = "49590338271490256608559692538361571095921575989";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc;
  (void)argv;
  return 0;
}

/* magic + pb + MD5(pb) in a new exact-size buffer, or NULL. */
static uint8_t *wrap(const uint8_t *pb, size_t n, size_t *len)
{
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  if (EVP_Digest(pb, n, md, &md_len, EVP_md5(), NULL) != 1 || md_len != 16)
    return NULL;
  uint8_t *out = malloc(4 + n + 16);
  if (!out)
    return NULL;
  memcpy(out, k_magic, 4);
  if (n)
    memcpy(out + 4, pb, n);
  memcpy(out + 4 + n, md, 16);
  *len = 4 + n + 16;
  return out;
}

static int inside(const void *p, size_t n, const void *base, size_t len)
{
  const uint8_t *c = p, *b = base;
  return c >= b && n <= len && (size_t)(c - b) <= len - n;
}

static void check_aggregate(const struct kcld_record *outer,
                            const struct kcld_kpl_plan *plan)
{
  size_t n = plan->nrecords, kb = plan->key_bytes, used = 12345;
  CHECK(n > 0);
  CHECK(kb % 8 == 0);
  CHECK(plan->why[0] == '\0');
  /* The records and keys must fit in an aggregate's own bytes, roughly:
   * this bounds what a hostile record can make the caller allocate. */
  CHECK(n <= outer->data_len);
  struct kcld_record *out = calloc(n, sizeof(*out));
  uint64_t *keys = malloc(kb ? kb : 8);
  CHECK(out && keys);

  /* Too little room is refused, not overrun. */
  CHECK(kcld_deagg_expand(outer, out, n - 1, keys, kb, &used) ==
        KCLD_EINVAL);
  if (kb >= 8)
    CHECK(kcld_deagg_expand(outer, out, n, keys, kb - 8, &used) ==
          KCLD_EINVAL);

  long got = kcld_deagg_expand(outer, out, n, keys, kb, &used);
  CHECK(got >= 0 && (size_t)got == n);
  CHECK(used == kb);
  for (size_t i = 0; i < n; i++) {
    const struct kcld_record *r = &out[i];
    CHECK(r->data != NULL);
    CHECK(inside(r->data, r->data_len, outer->data, outer->data_len));
    CHECK(r->partition_key != NULL);
    CHECK(inside(r->partition_key, r->partition_key_len + 1, keys, kb));
    CHECK(r->partition_key[r->partition_key_len] == '\0');
    if (r->explicit_hash_key) {
      size_t l = strnlen(r->explicit_hash_key,
                         (size_t)((const char *)keys + kb -
                                  r->explicit_hash_key));
      CHECK(inside(r->explicit_hash_key, l + 1, keys, kb));
    }
    CHECK(r->sequence_number == outer->sequence_number);
    CHECK(r->encryption_type == outer->encryption_type);
    CHECK(r->arrival_ms == outer->arrival_ms);
    CHECK(r->batch == outer->batch);
    CHECK(r->sub_sequence_number == i);
    CHECK(r->aggregated == 1);
  }
  free(out);
  free(keys);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 1)
    return 0;
  uint8_t mode = data[0];
  const uint8_t *payload = data + 1;
  size_t len = size - 1;
  uint8_t *owned = NULL;
  if (mode & 1) {
    owned = wrap(payload, len, &len);
    if (!owned)
      return 0;
    payload = owned;
  }

  struct kcld_kpl_plan plan;
  memset(&plan, 0xA5, sizeof(plan));
  int kind = kcld_kpl_scan(payload, len, &plan);
  CHECK(memchr(plan.why, '\0', sizeof(plan.why)) != NULL);

  struct kcld_record outer;
  memset(&outer, 0, sizeof(outer));
  outer.data = payload;
  outer.data_len = len;
  outer.partition_key = "outer";
  outer.partition_key_len = 5;
  outer.sequence_number = k_seq;
  outer.encryption_type = "KMS";
  outer.arrival_ms = 1562602074896;
  outer.batch = (struct kcld_record_batch *)&outer; /* a marker only */

  switch (kind) {
  case KCLD_KPL_PLAIN:
    CHECK(len < 4 || memcmp(payload, k_magic, 4) != 0);
    CHECK(plan.why[0] == '\0');
    break;
  case KCLD_KPL_AGGREGATE:
    CHECK(len >= 4 + 16 && memcmp(payload, k_magic, 4) == 0);
    check_aggregate(&outer, &plan);
    break;
  case KCLD_KPL_CORRUPT: {
    CHECK(len >= 4 && memcmp(payload, k_magic, 4) == 0);
    CHECK(plan.why[0] != '\0');
    /* Expanding what the scan refused (a caller's mistake) must at least
     * stay inside the room given.  deagg.h promises KCLD_EINVAL here, but
     * expand does not check the MD5 trailer or UTF-8 again, so a record
     * refused for those alone may still expand: not checked. */
    struct kcld_record out[4];
    uint64_t keys[64];
    size_t used = 0;
    long got = kcld_deagg_expand(&outer, out, 4, keys, sizeof(keys), &used);
    CHECK(got == KCLD_EINVAL || (got > 0 && got <= 4));
    if (got > 0) {
      CHECK(used <= sizeof(keys));
      for (long i = 0; i < got; i++) {
        CHECK(inside(out[i].data, out[i].data_len, payload, len));
        CHECK(inside(out[i].partition_key, out[i].partition_key_len + 1,
                     keys, used));
      }
    }
    break;
  }
  default:
    CHECK(!"kcld_kpl_scan returned an unknown kind");
  }
  free(owned);
  return 0;
}
