/* kpl.c — KPL aggregates: detection, verification, reading and writing,
 * with a minimal protobuf wire-format reader (varints and length-delimited
 * fields; everything else is skipped or refused) and writer.  No global
 * state; only the writer allocates. */
#include "base/kpl.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "base/buf.h"
#include "base/utf8.h"
#include "err.h"

#define MAGIC_LEN 4
#define MD5_LEN 16

static const uint8_t k_magic[MAGIC_LEN] = {0xF3, 0x89, 0x9A, 0xC2};

/* ======== Protobuf wire format ======== */

enum {
  WT_VARINT = 0,
  WT_I64 = 1,
  WT_LEN = 2,
  WT_SGROUP = 3,
  WT_EGROUP = 4,
  WT_I32 = 5
};

struct pb {
  const uint8_t *p;
  const uint8_t *end;
};

struct pb_field {
  uint32_t num;
  int type;
  uint64_t u;         /* WT_VARINT value */
  const uint8_t *ptr; /* WT_LEN bytes */
  size_t len;
};

/* Reads one varint of at most 10 bytes that fits in 64 bits.  Returns NULL,
 * or why it is malformed. */
static const char *pb_varint(struct pb *r, uint64_t *out)
{
  uint64_t v = 0;
  for (unsigned i = 0; i < 10; i++) {
    if (r->p == r->end)
      return "truncated varint";
    uint8_t b = *r->p++;
    /* The 10th byte holds bit 63 only; more, or a continuation, is too long. */
    if (i == 9 && b > 1)
      return "varint longer than 10 bytes or 64 bits";
    v |= (uint64_t)(b & 0x7f) << (7 * i);
    if ((b & 0x80) == 0) {
      *out = v;
      return NULL;
    }
  }
  return "varint longer than 10 bytes"; /* not reached */
}

/* Reads the next field of a message.  Returns 1 with the field in *f, 0 at the
 * end of the message, -1 when malformed (*why says why). */
static int pb_next(struct pb *r, struct pb_field *f, const char **why)
{
  uint64_t tag, len;
  size_t left;

  if (r->p == r->end)
    return 0;
  if ((*why = pb_varint(r, &tag)) != NULL)
    return -1;
  if (tag > UINT32_MAX) {
    *why = "field tag longer than 32 bits";
    return -1;
  }
  f->num = (uint32_t)(tag >> 3);
  f->type = (int)(tag & 7);
  if (f->num == 0) {
    *why = "field number 0";
    return -1;
  }
  left = (size_t)(r->end - r->p);
  switch (f->type) {
  case WT_VARINT:
    if ((*why = pb_varint(r, &f->u)) != NULL)
      return -1;
    return 1;
  case WT_I64:
    if (left < 8) {
      *why = "truncated 64-bit field";
      return -1;
    }
    r->p += 8;
    return 1;
  case WT_I32:
    if (left < 4) {
      *why = "truncated 32-bit field";
      return -1;
    }
    r->p += 4;
    return 1;
  case WT_LEN:
    if ((*why = pb_varint(r, &len)) != NULL)
      return -1;
    left = (size_t)(r->end - r->p);
    if (len > left) {
      *why = "length-delimited field runs past the end";
      return -1;
    }
    f->ptr = r->p;
    f->len = (size_t)len;
    r->p += len;
    return 1;
  case WT_SGROUP:
  case WT_EGROUP:
    *why = "group wire type (not supported)";
    return -1;
  default:
    *why = "invalid wire type 6 or 7";
    return -1;
  }
}

/* ======== AggregatedRecord ======== */

/* One Record message, decoded. */
struct sub {
  int has_pk, has_ehk, has_data;
  uint64_t pk, ehk;
  const uint8_t *data;
  size_t data_len;
};

/* A key table entry as copied into the key room. */
struct key {
  const char *s;
  size_t len;
};

/* Checks a Tag {required string key = 1; optional string value = 2}.  The
 * KCL's protobuf parser refuses a tag without a key, so kcld does too. */
static const char *check_tag(const uint8_t *p, size_t n)
{
  struct pb r = {p, p + n};
  struct pb_field f;
  const char *why = NULL;
  int rc, has_key = 0;

  while ((rc = pb_next(&r, &f, &why)) == 1)
    if (f.num == 1 && f.type == WT_LEN)
      has_key = 1;
  if (rc < 0)
    return why;
  return has_key ? NULL : "a tag has no key";
}

/* Decodes a Record message into *s.  Returns NULL, or why it is malformed. */
static const char *parse_record(const uint8_t *p, size_t n, struct sub *s)
{
  struct pb r = {p, p + n};
  struct pb_field f;
  const char *why = NULL;
  int rc;

  memset(s, 0, sizeof(*s));
  while ((rc = pb_next(&r, &f, &why)) == 1) {
    if (f.num == 1 && f.type == WT_VARINT) {
      s->has_pk = 1;
      s->pk = f.u;
    } else if (f.num == 2 && f.type == WT_VARINT) {
      s->has_ehk = 1;
      s->ehk = f.u;
    } else if (f.num == 3 && f.type == WT_LEN) {
      s->has_data = 1;
      s->data = f.ptr;
      s->data_len = f.len;
    } else if (f.num == 4 && f.type == WT_LEN) {
      if ((why = check_tag(f.ptr, f.len)) != NULL)
        return why;
    }
  }
  if (rc < 0)
    return why;
  if (!s->has_pk)
    return "partition_key_index is missing";
  if (!s->has_data)
    return "data is missing";
  return NULL;
}

/* Key room for the given tables: the two key arrays, then the strings, each
 * NUL-terminated, rounded up to 8 so that the next aggregate's room aligns. */
static size_t key_room(size_t n_pk, size_t n_ehk, size_t str_bytes)
{
  size_t n = (n_pk + n_ehk) * sizeof(struct key) + str_bytes;
  return (n + 7) & ~(size_t)7;
}

static int corrupt(struct kcld_kpl_plan *plan, const char *fmt, ...)
  __attribute__((format(printf, 2, 3)));

static int corrupt(struct kcld_kpl_plan *plan, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(plan->why, sizeof(plan->why), fmt, ap);
  va_end(ap);
  plan->nrecords = 0;
  plan->key_bytes = 0;
  return KCLD_KPL_CORRUPT;
}

static const char *table_name(uint32_t num)
{
  return num == 1 ? "partition_key_table" : "explicit_hash_key_table";
}

int kcld_kpl_scan(const uint8_t *data, size_t len,
                  struct kcld_kpl_plan *plan)
{
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  struct pb r;
  struct pb_field f;
  struct sub s;
  const char *why = NULL;
  size_t n_pk = 0, n_ehk = 0, nrec = 0, str_bytes = 0;
  size_t max_pk_at = 0, max_ehk_at = 0;
  uint64_t max_pk = 0, max_ehk = 0;
  int rc, any_ehk = 0;

  plan->nrecords = 0;
  plan->key_bytes = 0;
  plan->why[0] = '\0';
  if (len < MAGIC_LEN || memcmp(data, k_magic, MAGIC_LEN) != 0)
    return KCLD_KPL_PLAIN;
  if (len <= MAGIC_LEN + MD5_LEN)
    return corrupt(plan, "only %zu bytes follow the KPL magic (an aggregate "
                   "needs more than %d)", len - MAGIC_LEN, MD5_LEN);

  const uint8_t *pbuf = data + MAGIC_LEN;
  size_t pb_len = len - MAGIC_LEN - MD5_LEN;
  if (!EVP_Digest(pbuf, pb_len, md, &md_len, EVP_md5(), NULL) ||
      md_len != MD5_LEN)
    return corrupt(plan, "MD5 is not available from OpenSSL");
  if (memcmp(md, pbuf + pb_len, MD5_LEN) != 0)
    return corrupt(plan, "MD5 trailer does not match the protobuf bytes");

  r.p = pbuf;
  r.end = pbuf + pb_len;
  const uint8_t *at = pbuf; /* where the field being read starts */
  while ((rc = pb_next(&r, &f, &why)) == 1) {
    at = r.p;
    if (f.type != WT_LEN || f.num > 3)
      continue;
    if (f.num == 3) {
      if ((why = parse_record(f.ptr, f.len, &s)) != NULL)
        return corrupt(plan, "records[%zu]: %s", nrec, why);
      if (nrec == 0 || s.pk > max_pk)
        max_pk = s.pk, max_pk_at = nrec;
      if (s.has_ehk && (!any_ehk || s.ehk > max_ehk))
        any_ehk = 1, max_ehk = s.ehk, max_ehk_at = nrec;
      nrec++;
      continue;
    }
    if (!kcld_utf8_valid(f.ptr, f.len))
      return corrupt(plan, "%s[%zu] is not valid UTF-8", table_name(f.num),
                     f.num == 1 ? n_pk : n_ehk);
    if (f.num == 1)
      n_pk++;
    else
      n_ehk++;
    str_bytes += f.len + 1;
  }
  if (rc < 0)
    return corrupt(plan, "malformed protobuf in the field at byte %zu: %s",
                   (size_t)(at - pbuf), why);
  if (nrec == 0)
    return corrupt(plan, "the aggregate holds no records");
  if (max_pk >= n_pk)
    return corrupt(plan, "records[%zu]: partition_key_index %" PRIu64
                   " is out of range (%zu keys)", max_pk_at, max_pk, n_pk);
  if (any_ehk && max_ehk >= n_ehk)
    return corrupt(plan, "records[%zu]: explicit_hash_key_index %" PRIu64
                   " is out of range (%zu keys)", max_ehk_at, max_ehk, n_ehk);
  plan->nrecords = nrec;
  plan->key_bytes = key_room(n_pk, n_ehk, str_bytes);
  return KCLD_KPL_AGGREGATE;
}

/* ======== Reading ======== */

int kcld_kpl_reader_init(struct kcld_kpl_reader *r, const uint8_t *data,
                         size_t len, void *keys, size_t keys_cap,
                         size_t *keys_used)
{
  struct pb pb;
  struct pb_field f;
  const char *why = NULL;
  size_t n_pk = 0, n_ehk = 0, str_bytes = 0;
  int rc;

  memset(r, 0, sizeof(*r));
  if (keys == NULL || len <= MAGIC_LEN + MD5_LEN ||
      memcmp(data, k_magic, MAGIC_LEN) != 0)
    return -1;
  r->p = data + MAGIC_LEN;
  r->end = data + len - MD5_LEN;

  /* Size the key tables. */
  pb.p = r->p, pb.end = r->end;
  while ((rc = pb_next(&pb, &f, &why)) == 1) {
    if (f.type == WT_LEN && (f.num == 1 || f.num == 2)) {
      *(f.num == 1 ? &n_pk : &n_ehk) += 1;
      str_bytes += f.len + 1;
    }
  }
  if (rc < 0 || key_room(n_pk, n_ehk, str_bytes) > keys_cap)
    return -1;
  *keys_used = key_room(n_pk, n_ehk, str_bytes);

  /* Copy them (records may come before them in the bytes). */
  struct key *pk = keys;
  struct key *ehk = pk + n_pk;
  char *sp = (char *)(ehk + n_ehk);
  size_t ipk = 0, iehk = 0;
  pb.p = r->p, pb.end = r->end;
  while (pb_next(&pb, &f, &why) == 1) {
    if (f.type != WT_LEN || (f.num != 1 && f.num != 2))
      continue;
    struct key *k = f.num == 1 ? &pk[ipk++] : &ehk[iehk++];
    memcpy(sp, f.ptr, f.len);
    sp[f.len] = '\0';
    k->s = sp;
    k->len = f.len;
    sp += f.len + 1;
  }
  r->pk = pk;
  r->ehk = ehk;
  r->n_pk = n_pk;
  r->n_ehk = n_ehk;
  return 0;
}

int kcld_kpl_reader_next(struct kcld_kpl_reader *r,
                         struct kcld_kpl_record *out)
{
  struct pb pb = {r->p, r->end};
  struct pb_field f;
  struct sub s;
  const char *why = NULL;
  const struct key *pk = r->pk, *ehk = r->ehk;
  int rc;

  while ((rc = pb_next(&pb, &f, &why)) == 1) {
    if (f.type == WT_LEN && f.num == 3)
      break;
  }
  r->p = pb.p;
  if (rc <= 0)
    return rc;
  if (parse_record(f.ptr, f.len, &s) != NULL || s.pk >= r->n_pk ||
      (s.has_ehk && s.ehk >= r->n_ehk))
    return -1;
  out->data = s.data;
  out->data_len = s.data_len;
  out->partition_key = pk[s.pk].s;
  out->partition_key_len = pk[s.pk].len;
  out->explicit_hash_key = s.has_ehk ? ehk[s.ehk].s : NULL;
  return 1;
}

/* ======== Writing ======== */

static void wvarint(struct kcld_buf *b, uint64_t v)
{
  uint8_t t[10];
  size_t n = 0;
  do {
    t[n] = (uint8_t)(v & 0x7f);
    v >>= 7;
    if (v)
      t[n] |= 0x80;
    n++;
  } while (v);
  kcld_buf_add(b, t, n);
}

static void wbytes(struct kcld_buf *b, uint8_t tag, const void *s, size_t n)
{
  kcld_buf_add(b, &tag, 1);
  wvarint(b, n);
  kcld_buf_add(b, s, n);
}

/* Index of s in table[0..*n-1], appended when absent. */
static size_t intern(const char **table, size_t *n, const char *s)
{
  for (size_t i = 0; i < *n; i++)
    if (strcmp(table[i], s) == 0)
      return i;
  table[*n] = s;
  return (*n)++;
}

int kcld_kpl_encode(const struct kcld_kpl_record *records, size_t n,
                    uint8_t **out, size_t *len)
{
  const char **pks = NULL, **ehks = NULL;
  size_t npk = 0, nehk = 0, *pki = NULL, *ehki = NULL;
  struct kcld_buf pb = {0}, rb = {0}, ob = {0};
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  int rc = KCLD_ENOMEM;

  *out = NULL;
  *len = 0;
  if (!records || n == 0)
    return KCLD_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (!records[i].partition_key ||
        (!records[i].data && records[i].data_len))
      return KCLD_EINVAL;
  pks = calloc(n, sizeof(*pks));
  ehks = calloc(n, sizeof(*ehks));
  pki = calloc(n, sizeof(*pki));
  ehki = calloc(n, sizeof(*ehki));
  if (!pks || !ehks || !pki || !ehki)
    goto done;
  for (size_t i = 0; i < n; i++) {
    pki[i] = intern(pks, &npk, records[i].partition_key);
    if (records[i].explicit_hash_key)
      ehki[i] = intern(ehks, &nehk, records[i].explicit_hash_key);
  }
  for (size_t i = 0; i < npk; i++)
    wbytes(&pb, 0x0A, pks[i], strlen(pks[i]));
  for (size_t i = 0; i < nehk; i++)
    wbytes(&pb, 0x12, ehks[i], strlen(ehks[i]));
  for (size_t i = 0; i < n; i++) {
    rb.len = 0;
    uint8_t tag = 0x08;
    kcld_buf_add(&rb, &tag, 1);
    wvarint(&rb, pki[i]);
    if (records[i].explicit_hash_key) {
      tag = 0x10;
      kcld_buf_add(&rb, &tag, 1);
      wvarint(&rb, ehki[i]);
    }
    wbytes(&rb, 0x1A, records[i].data ? records[i].data : (const void *)"",
           records[i].data_len);
    if (rb.oom)
      goto done;
    wbytes(&pb, 0x1A, rb.p, rb.len);
  }
  if (pb.oom)
    goto done;
  if (EVP_Digest(pb.p, pb.len, md, &mdlen, EVP_md5(), NULL) != 1 ||
      mdlen != 16) {
    rc = KCLD_EINVAL;
    goto done;
  }
  kcld_buf_add(&ob, k_magic, 4);
  kcld_buf_add(&ob, pb.p, pb.len);
  kcld_buf_add(&ob, md, 16);
  if (ob.oom)
    goto done;
  *out = (uint8_t *)ob.p;
  *len = ob.len;
  ob.p = NULL;
  rc = 0;
done:
  free(pks);
  free(ehks);
  free(pki);
  free(ehki);
  free(pb.p);
  free(rb.p);
  free(ob.p);
  return rc;
}
