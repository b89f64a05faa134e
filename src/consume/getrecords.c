/* getrecords.c — GetRecords response (or SubscribeToShardEvent payload)
 * parsing into one record batch.
 *
 * No JSON tree and no allocation per record, in one function per pass:
 *   scan_all    one validating scan of the body (base/json.h, with
 *               jansson's acceptance) notes where the value of each member
 *               of interest lies - for every record its Data, PartitionKey,
 *               SequenceNumber, ApproximateArrivalTimestamp and
 *               EncryptionType - in a temporary array; unknown members are
 *               checked and skipped, and a member given twice counts by its
 *               last value, as jansson does;
 *   check_all   (pass A) validate every member and add up the exact sizes;
 *   fill_block  (pass B) allocate the main block (batch, Kinesis records,
 *               child shards, strings, decoded payloads), copy and decode
 *               into it, and scan each payload for a KPL aggregate;
 *   finish      (pass C) only if some aggregate expands: allocate a second
 *               block for the user records and their key tables and expand
 *               into it.
 * Warnings for aggregates passed through are logged in pass C, so that a
 * response refused as a whole logs nothing but its error.  The body is only
 * read, and nothing points into it once the parse returns. */
#include "consume/getrecords.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base64.h"
#include "base/json.h"
#include "base/kpl.h"
#include "base/seq.h"
#include "consume/budget.h"
#include "consume/deagg.h"
#include "err.h"
#include "log.h"

/* Verdicts kept in an outer record's `aggregated` between passes B and C. */
enum { V_PLAIN = 0, V_AGGREGATE = 1, V_CORRUPT = 2 };

/* Largest accepted ApproximateArrivalTimestamp, in seconds (year ~5138). */
#define MAX_ARRIVAL_S 1e11

/* Depths of values, as jansson counts them: the response object is 1. */
#define D_TOP 1
#define D_MEMBER 2
#define D_ELEMENT 3
#define D_FIELD 4

/* The members of one element of Records, as found in the scan. */
struct jrec {
  struct kcld_json_val data, pk, seq, ts, enc;
  int is_object;
};

/* What the scan found at the top level. */
struct found {
  struct kcld_json_val records, next, mbl, children, cont;
  int event;         /* a SubscribeToShardEvent payload */
  struct jrec *recs; /* when records is an array: its elements */
  size_t n, cap;
};

/* Sizes of everything that goes into the main block. */
struct sizes {
  size_t n;        /* Kinesis records */
  size_t n_child;  /* child shards */
  size_t n_parent; /* parent shard ids over all child shards */
  size_t str;      /* NUL-terminated strings */
  size_t data;     /* decoded payload slots */
};

static int fail(char *errbuf, size_t errlen, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));

static int fail(char *errbuf, size_t errlen, const char *fmt, ...)
{
  if (errbuf && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
  }
  return KCLD_EPARSE;
}

static size_t align8(size_t n)
{
  return (n + 7) & ~(size_t)7;
}

/* ======== Scan ======== */

/* A member name of interest, with its length. */
struct name {
  const char *s;
  size_t n;
};
#define NAME(s) {s, sizeof(s) - 1}

/* Scans the object at the position (at `depth`) into v[k] for each member
 * named names[k] (the last one given wins); others are skipped. */
static int scan_members(struct kcld_json_scan *sc, int depth,
                        const struct name *names, size_t nnames,
                        struct kcld_json_val *v)
{
  struct kcld_json_val key;
  int first = 1, rc;

  if (kcld_json_scan_open(sc, '{', depth) != 0)
    return -1;
  while ((rc = kcld_json_scan_member(sc, &first, &key)) > 0) {
    struct kcld_json_val *dst = NULL;
    for (size_t k = 0; k < nnames && dst == NULL; k++)
      if (key.len == names[k].n &&
          kcld_json_equals(&key, names[k].s, names[k].n))
        dst = &v[k];
    if (kcld_json_scan_value(sc, dst, depth + 1) != 0)
      return -1;
  }
  return rc;
}

static const struct name k_rec_names[] = {
  NAME("Data"), NAME("PartitionKey"), NAME("SequenceNumber"),
  NAME("ApproximateArrivalTimestamp"), NAME("EncryptionType")
};

/* Scans the Records array at the position into f->recs. */
static int scan_records(struct kcld_json_scan *sc, struct found *f)
{
  int first = 1, rc;

  f->n = 0;
  if (kcld_json_scan_open(sc, '[', D_MEMBER) != 0)
    return -1;
  while ((rc = kcld_json_scan_element(sc, &first)) > 0) {
    if (f->n == f->cap) {
      size_t cap = f->cap ? f->cap * 2 : 64;
      struct jrec *r = realloc(f->recs, cap * sizeof(*r));
      if (r == NULL)
        return -2;
      f->recs = r;
      f->cap = cap;
    }
    struct jrec *jr = &f->recs[f->n++];
    struct kcld_json_val v[5];
    memset(v, 0, sizeof(v));
    jr->is_object = kcld_json_scan_peek(sc) == '{';
    if (jr->is_object) {
      if (scan_members(sc, D_ELEMENT, k_rec_names, 5, v) != 0)
        return -1;
    } else if (kcld_json_scan_value(sc, NULL, D_ELEMENT) != 0) {
      return -1;
    }
    jr->data = v[0];
    jr->pk = v[1];
    jr->seq = v[2];
    jr->ts = v[3];
    jr->enc = v[4];
  }
  if (rc < 0)
    return -1;
  f->records.type = KCLD_JSON_ARRAY;
  return 0;
}

/* The whole body: 0, -1 (not JSON; sc says why), -2 (out of memory) or -3
 * (JSON, but an array).  A scalar is not JSON here, as for jansson without
 * JSON_DECODE_ANY. */
static int scan_body(struct kcld_json_scan *sc, struct found *f)
{
  struct kcld_json_val key;
  int first = 1, rc, c = kcld_json_scan_peek(sc);

  if (c == '[') {
    if (kcld_json_scan_value(sc, NULL, D_TOP) != 0 ||
        kcld_json_scan_finish(sc) != 0)
      return -1;
    return -3;
  }
  if (kcld_json_scan_open(sc, '{', D_TOP) != 0)
    return -1;
  while ((rc = kcld_json_scan_member(sc, &first, &key)) > 0) {
    struct kcld_json_val *dst = NULL;
    if (kcld_json_equals(&key, "Records", 7)) {
      if (kcld_json_scan_peek(sc) == '[') {
        if ((rc = scan_records(sc, f)) != 0)
          return rc;
        continue;
      }
      dst = &f->records;
    } else if (kcld_json_equals(&key, "NextShardIterator", 17)) {
      dst = &f->next;
    } else if (kcld_json_equals(&key, "MillisBehindLatest", 18)) {
      dst = &f->mbl;
    } else if (kcld_json_equals(&key, "ChildShards", 11)) {
      dst = &f->children;
    } else if (kcld_json_equals(&key, "ContinuationSequenceNumber", 26)) {
      dst = &f->cont;
    }
    if (kcld_json_scan_value(sc, dst, D_MEMBER) != 0)
      return -1;
  }
  if (rc < 0 || kcld_json_scan_finish(sc) != 0)
    return -1;
  return 0;
}

/* Scans the body into *f.  Returns 0, or KCLD_EPARSE / KCLD_ENOMEM with
 * the message in errbuf. */
static int scan_all(const char *body, size_t len, struct found *f,
                    char *errbuf, size_t errlen)
{
  struct kcld_json_scan sc;
  int line, col;

  const char *what = f->event ? "SubscribeToShardEvent"
                              : "GetRecords response";

  kcld_json_scan_init(&sc, body, len, KCLD_JSON_JANSSON);
  switch (scan_body(&sc, f)) {
  case 0:
    return 0;
  case -2:
    fail(errbuf, errlen, "out of memory for %zu records", f->cap * 2);
    return KCLD_ENOMEM;
  case -3:
    return fail(errbuf, errlen, "%s is not a JSON object", what);
  default:
    kcld_json_scan_position(&sc, &line, &col);
    return fail(errbuf, errlen, "%s is not JSON: %s (line %d, column %d)",
                what, sc.err, line, col);
  }
}

/* ======== Pass A: validate and size ======== */

/* Present: not absent and not null. */
static int present(const struct kcld_json_val *v)
{
  return v->type != KCLD_JSON_ABSENT && v->type != KCLD_JSON_NULL;
}

/* A required string member, named in messages as where[i].infix key. */
static int need_string(const struct kcld_json_val *v, const char *key,
                       const char *where, size_t i, const char *infix,
                       char *errbuf, size_t errlen)
{
  if (!present(v))
    return fail(errbuf, errlen, "%s[%zu].%s%s is missing", where, i, infix,
                key);
  if (v->type != KCLD_JSON_STRING)
    return fail(errbuf, errlen, "%s[%zu].%s%s is not a string", where, i,
                infix, key);
  return 0;
}

/* Decodes string v into buf (cap bytes) or, when longer, into a new
 * allocation (*heap, to be freed); NUL-terminated.  NULL when out of
 * memory. */
static char *decode_tmp(const struct kcld_json_val *v, char *buf, size_t cap,
                        char **heap)
{
  char *s = buf;
  *heap = NULL;
  if (v->len >= cap) {
    if ((s = *heap = malloc(v->len + 1)) == NULL)
      return NULL;
  }
  kcld_json_decode(v, s);
  s[v->len] = '\0';
  return s;
}

/* The string v compared as a C string (up to its first NUL) with `name`,
 * as strcmp(json_string_value(), name) == 0 did; -1 when out of memory. */
static int str_is(const struct kcld_json_val *v, const char *name)
{
  char buf[64], *heap;
  if (!v->esc)
    return v->raw == strlen(name) && memcmp(v->p, name, v->raw) == 0;
  const char *s = decode_tmp(v, buf, sizeof(buf), &heap);
  if (s == NULL)
    return -1;
  int eq = strcmp(s, name) == 0;
  free(heap);
  return eq;
}

/* Decodes the sequence-number string v into buf, or into *heap (free it)
 * when longer, and checks it.  In errors it is where[i].key, or key when
 * where is NULL (named only then: no formatting per record).  Returns 0
 * with *seq set, or the error (KCLD_EPARSE, KCLD_ENOMEM) with *heap
 * freed. */
static int decode_seq(const struct kcld_json_val *v, const char *where,
                      size_t i, const char *key, char *buf, size_t cap,
                      char **heap, const char **seq, char *errbuf,
                      size_t errlen)
{
  char what[64];
  *heap = NULL;
  *seq = v->nul ? NULL : decode_tmp(v, buf, cap, heap);
  if (*seq && kcld_seq_valid(*seq))
    return 0;
  if (where)
    snprintf(what, sizeof(what), "%s[%zu].%s", where, i, key);
  else
    snprintf(what, sizeof(what), "%s", key);
  if (v->nul)
    return fail(errbuf, errlen, "%s holds a NUL character", what);
  if (!*seq) {
    fail(errbuf, errlen, "out of memory");
    return KCLD_ENOMEM;
  }
  fail(errbuf, errlen, "%s \"%.*s\" is not a decimal sequence number", what,
       (int)(v->len < 64 ? v->len : 64), *seq);
  free(*heap);
  *heap = NULL;
  return KCLD_EPARSE;
}

/* Validates Records[i] and adds its sizes. */
static int check_record(const struct jrec *jr, size_t i, struct sizes *sz,
                        char *errbuf, size_t errlen)
{
  char buf[256], *heap = NULL;
  const char *seq;
  int rc;

  if (!jr->is_object)
    return fail(errbuf, errlen, "Records[%zu] is not an object", i);
  if ((rc = need_string(&jr->seq, "SequenceNumber", "Records", i, "",
                        errbuf, errlen)) != 0)
    return rc;
  if ((rc = decode_seq(&jr->seq, "Records", i, "SequenceNumber", buf,
                       sizeof(buf), &heap, &seq, errbuf, errlen)) != 0)
    return rc;
  size_t seq_len = jr->seq.len;
  if ((rc = need_string(&jr->data, "Data", "Records", i, "", errbuf,
                        errlen)) != 0 ||
      (rc = need_string(&jr->pk, "PartitionKey", "Records", i, "", errbuf,
                        errlen)) != 0)
    goto done;
  rc = KCLD_EPARSE;

  size_t b64_len = jr->data.len;
  if (b64_len % 4 != 0) {
    fail(errbuf, errlen, "Records[%zu] (SequenceNumber %s): Data is not "
         "valid base64 (length %zu is not a multiple of 4)", i, seq,
         b64_len);
    goto done;
  }
  if (present(&jr->ts)) {
    double t = jr->ts.num;
    if (jr->ts.type != KCLD_JSON_NUMBER) {
      fail(errbuf, errlen, "Records[%zu] (SequenceNumber %s): "
           "ApproximateArrivalTimestamp is not a number", i, seq);
      goto done;
    }
    if (!isfinite(t) || t < 0 || t > MAX_ARRIVAL_S) {
      fail(errbuf, errlen, "Records[%zu] (SequenceNumber %s): "
           "ApproximateArrivalTimestamp %g is out of range", i, seq, t);
      goto done;
    }
  }
  if (present(&jr->enc)) {
    if (jr->enc.type != KCLD_JSON_STRING) {
      fail(errbuf, errlen, "Records[%zu] (SequenceNumber %s): "
           "EncryptionType is not a string", i, seq);
      goto done;
    }
    int none = str_is(&jr->enc, "NONE"), kms = str_is(&jr->enc, "KMS");
    if (none < 0 || kms < 0) {
      fail(errbuf, errlen, "out of memory");
      rc = KCLD_ENOMEM;
      goto done;
    }
    if (!none && !kms)
      sz->str += jr->enc.len + 1;
  }
  sz->str += seq_len + 1 + jr->pk.len + 1;
  sz->data += b64_len / 4 * 3;
  rc = 0;
done:
  free(heap);
  return rc;
}

static const struct name k_child_names[] = {
  NAME("ShardId"), NAME("ParentShards"), NAME("HashKeyRange")
};
static const struct name k_range_names[] = {
  NAME("StartingHashKey"), NAME("EndingHashKey")
};

/* Opens a scan at the already validated value v that ends by `end`. */
static void scan_at(struct kcld_json_scan *sc, const struct kcld_json_val *v,
                    const char *end)
{
  kcld_json_scan_init(sc, v->p, (size_t)(end - v->p), KCLD_JSON_JANSSON);
}

/* Validates ChildShards (absent, null or an array) and adds its sizes. */
static int check_children(const struct kcld_json_val *children,
                          const char *end, struct sizes *sz, char *errbuf,
                          size_t errlen)
{
  struct kcld_json_scan sc, ps, rs;
  int first = 1, rc;
  size_t i = 0;

  if (!present(children))
    return 0;
  if (children->type != KCLD_JSON_ARRAY)
    return fail(errbuf, errlen, "ChildShards is not an array");
  scan_at(&sc, children, end);
  if (kcld_json_scan_open(&sc, '[', D_MEMBER) != 0)
    return fail(errbuf, errlen, "ChildShards: %s", sc.err);
  for (; (rc = kcld_json_scan_element(&sc, &first)) > 0; i++) {
    struct kcld_json_val c[3], r[2], p;
    memset(c, 0, sizeof(c));
    memset(r, 0, sizeof(r));
    if (kcld_json_scan_peek(&sc) != '{')
      return fail(errbuf, errlen, "ChildShards[%zu] is not an object", i);
    if (scan_members(&sc, D_ELEMENT, k_child_names, 3, c) != 0)
      return fail(errbuf, errlen, "ChildShards: %s", sc.err);
    if ((rc = need_string(&c[0], "ShardId", "ChildShards", i, "", errbuf,
                          errlen)) != 0)
      return rc;
    sz->str += c[0].len + 1;
    if (c[1].type != KCLD_JSON_ARRAY)
      return fail(errbuf, errlen, "ChildShards[%zu].ParentShards is %s", i,
                  present(&c[1]) ? "not an array" : "missing");
    scan_at(&ps, &c[1], end);
    int pfirst = 1;
    kcld_json_scan_open(&ps, '[', D_FIELD);
    for (size_t j = 0; kcld_json_scan_element(&ps, &pfirst) > 0; j++) {
      p.type = KCLD_JSON_ABSENT;
      kcld_json_scan_value(&ps, &p, D_FIELD + 1);
      if (p.type != KCLD_JSON_STRING)
        return fail(errbuf, errlen, "ChildShards[%zu].ParentShards[%zu] is "
                    "not a string", i, j);
      sz->str += p.len + 1;
      sz->n_parent++;
    }
    if (c[2].type != KCLD_JSON_OBJECT)
      return fail(errbuf, errlen, "ChildShards[%zu].HashKeyRange is %s", i,
                  present(&c[2]) ? "not an object" : "missing");
    scan_at(&rs, &c[2], end);
    scan_members(&rs, D_FIELD, k_range_names, 2, r);
    if ((rc = need_string(&r[0], "StartingHashKey", "ChildShards", i,
                          "HashKeyRange.", errbuf, errlen)) != 0)
      return rc;
    sz->str += r[0].len + 1;
    if ((rc = need_string(&r[1], "EndingHashKey", "ChildShards", i,
                          "HashKeyRange.", errbuf, errlen)) != 0)
      return rc;
    sz->str += r[1].len + 1;
    sz->n_child++;
  }
  if (rc < 0)
    return fail(errbuf, errlen, "ChildShards: %s", sc.err);
  return 0;
}

/* An event's ContinuationSequenceNumber: absent, null or a sequence
 * number. */
static int check_continuation(const struct kcld_json_val *v,
                              struct sizes *sz, char *errbuf, size_t errlen)
{
  char buf[256], *heap;
  const char *seq;
  int rc;

  if (!present(v))
    return 0;
  if (v->type != KCLD_JSON_STRING)
    return fail(errbuf, errlen, "ContinuationSequenceNumber is not a string");
  if ((rc = decode_seq(v, NULL, 0, "ContinuationSequenceNumber", buf,
                       sizeof(buf), &heap, &seq, errbuf, errlen)) != 0)
    return rc;
  free(heap);
  sz->str += v->len + 1;
  return 0;
}

/* Pass A: validates what the scan found and adds up the sizes. */
static int check_all(const struct found *f, const char *end,
                     struct sizes *sz, char *errbuf, size_t errlen)
{
  const struct kcld_json_val *next = &f->next, *mbl = &f->mbl;
  int rc;

  if (f->records.type != KCLD_JSON_ARRAY)
    return fail(errbuf, errlen, "Records is %s",
                present(&f->records) ? "not an array" : "missing");
  sz->n = f->n;
  for (size_t i = 0; i < f->n; i++)
    if ((rc = check_record(&f->recs[i], i, sz, errbuf, errlen)) != 0)
      return rc;
  if (f->event) {
    if ((rc = check_continuation(&f->cont, sz, errbuf, errlen)) != 0)
      return rc;
  } else if (present(next) && next->type != KCLD_JSON_STRING) {
    return fail(errbuf, errlen, "NextShardIterator is not a string");
  } else if (present(next)) {
    sz->str += next->len + 1;
  }
  if (present(mbl) && (mbl->type != KCLD_JSON_NUMBER || !isfinite(mbl->num) ||
                       mbl->num < 0 || mbl->num > 9e18))
    return fail(errbuf, errlen, "MillisBehindLatest is %s",
                mbl->type == KCLD_JSON_NUMBER ? "out of range"
                                              : "not a number");
  return check_children(&f->children, end, sz, errbuf, errlen);
}

/* ======== Pass B: fill the main block ======== */

static const char *put_str(char **sp, const struct kcld_json_val *s)
{
  char *out = *sp;
  kcld_json_decode(s, out);
  out[s->len] = '\0';
  *sp += s->len + 1;
  return out;
}

/* Fills from ChildShards, which pass A found valid. */
static void fill_children(const struct kcld_json_val *children,
                          const char *end, struct kcld_child_shard *cs,
                          const char **parents, char **sp)
{
  struct kcld_json_scan sc, ps, rs;
  int first = 1;

  scan_at(&sc, children, end);
  kcld_json_scan_open(&sc, '[', D_MEMBER);
  for (size_t i = 0; kcld_json_scan_element(&sc, &first) > 0; i++) {
    struct kcld_json_val c[3], r[2], p;
    memset(c, 0, sizeof(c));
    memset(r, 0, sizeof(r));
    scan_members(&sc, D_ELEMENT, k_child_names, 3, c);
    cs[i].shard_id = put_str(sp, &c[0]);
    cs[i].parent_shards = parents;
    cs[i].parent_count = 0;
    scan_at(&ps, &c[1], end);
    int pfirst = 1;
    kcld_json_scan_open(&ps, '[', D_FIELD);
    while (kcld_json_scan_element(&ps, &pfirst) > 0) {
      kcld_json_scan_value(&ps, &p, D_FIELD + 1);
      *parents++ = put_str(sp, &p);
      cs[i].parent_count++;
    }
    scan_at(&rs, &c[2], end);
    scan_members(&rs, D_FIELD, k_range_names, 2, r);
    cs[i].starting_hash_key = put_str(sp, &r[0]);
    cs[i].ending_hash_key = put_str(sp, &r[1]);
  }
}

/* Pass B's state: the batch being filled, where the next string and
 * payload go, and what pass C will need. */
struct fill {
  struct kcld_fetch_account *acct; /* blocks charged here; NULL = plain */
  struct kcld_record_batch *b;
  struct kcld_record *outer;  /* the Kinesis records, in the main block */
  char *sp;                   /* next string */
  uint8_t *dp;                /* next payload */
  char *tmp;                  /* scratch for escaped base64 (rare) */
  size_t total;               /* user records after expansion */
  size_t keys_total;          /* key room the aggregates need */
  size_t naggs;               /* aggregates that expand */
};

/* Fills Kinesis record i from jr (which pass A found valid): strings,
 * decoded payload, and the KPL verdict kept in r->aggregated. */
static int fill_record(struct fill *fl, const struct jrec *jr, size_t i,
                       char *errbuf, size_t errlen)
{
  struct kcld_record *r = &fl->outer[i];
  struct kcld_kpl_plan plan;
  size_t b64_len = jr->data.len, bad;
  const char *b64 = jr->data.p;

  r->sequence_number = put_str(&fl->sp, &jr->seq);
  r->partition_key = put_str(&fl->sp, &jr->pk);
  r->partition_key_len = jr->pk.len;
  r->explicit_hash_key = NULL;
  r->encryption_type = NULL;
  if (present(&jr->enc)) {
    r->encryption_type = str_is(&jr->enc, "NONE") == 1  ? "NONE"
                         : str_is(&jr->enc, "KMS") == 1 ? "KMS"
                                                        : put_str(&fl->sp,
                                                                  &jr->enc);
  }
  r->arrival_ms = present(&jr->ts) ? (int64_t)llround(jr->ts.num * 1000.0)
                                   : KCLD_RECORD_NO_ARRIVAL;
  r->sub_sequence_number = 0;
  r->batch = fl->b;
  r->filtered = 0;

  /* Base64 text has no escapes in practice; decode them first if so. */
  if (jr->data.esc) {
    char *t = realloc(fl->tmp, b64_len + 1);
    if (t == NULL) {
      fail(errbuf, errlen, "out of memory");
      return KCLD_ENOMEM;
    }
    fl->tmp = t;
    kcld_json_decode(&jr->data, t);
    b64 = t;
  }
  if (kcld_base64_decode(b64, b64_len, fl->dp, &r->data_len, &bad) != 0)
    return fail(errbuf, errlen, "Records[%zu] (SequenceNumber %s): Data is "
                "not valid base64 (at character %zu of %zu)", i,
                r->sequence_number, bad, b64_len);
  r->data = fl->dp;
  fl->dp += b64_len / 4 * 3;
  fl->b->data_bytes += r->data_len;

  switch (kcld_kpl_scan(r->data, r->data_len, &plan)) {
  case KCLD_KPL_AGGREGATE:
    r->aggregated = V_AGGREGATE;
    fl->total += plan.nrecords;
    fl->keys_total += plan.key_bytes;
    fl->naggs++;
    break;
  case KCLD_KPL_CORRUPT:
    r->aggregated = V_CORRUPT;
    fl->total++;
    break;
  default:
    r->aggregated = V_PLAIN;
    fl->total++;
  }
  return 0;
}

/* Pass B: allocates the main block (batch, Kinesis records, child shards,
 * parent ids, strings, payloads) and fills it. */
static int fill_block(struct fill *fl, const struct found *f,
                      const char *end, const struct sizes *sz, char *errbuf,
                      size_t errlen)
{
  struct kcld_record_batch *b;
  size_t off_recs = align8(sizeof(*b));
  size_t off_child = off_recs + sz->n * sizeof(struct kcld_record);
  size_t off_parent =
    off_child + sz->n_child * sizeof(struct kcld_child_shard);
  size_t off_str = off_parent + sz->n_parent * sizeof(const char *);
  size_t off_data = off_str + sz->str;
  size_t total_bytes = off_data + sz->data;
  const struct kcld_json_val *mbl = &f->mbl;
  char *mem = kcld_fetch_alloc(fl->acct, total_bytes);
  int rc;

  if (mem == NULL) {
    fail(errbuf, errlen, "out of memory for a %zu-byte batch", total_bytes);
    return KCLD_ENOMEM;
  }
  fl->b = b = (struct kcld_record_batch *)mem;
  memset(b, 0, sizeof(*b));
  atomic_init(&b->refs, 1);
  b->fetch_mem = 1;
  b->mem_bytes = total_bytes;
  b->kinesis_count = sz->n;
  b->millis_behind_latest =
    !present(mbl) ? -1 : mbl->isint ? mbl->inum : (int64_t)mbl->num;
  fl->outer = (struct kcld_record *)(mem + off_recs);
  fl->sp = mem + off_str;
  fl->dp = (uint8_t *)mem + off_data;

  if (f->event) {
    if (present(&f->cont))
      b->continuation_sequence_number = put_str(&fl->sp, &f->cont);
    b->shard_end = !present(&f->cont) && f->children.type == KCLD_JSON_ARRAY;
  } else {
    if (present(&f->next))
      b->next_shard_iterator = put_str(&fl->sp, &f->next);
    b->shard_end = !present(&f->next);
  }
  if (sz->n_child) {
    struct kcld_child_shard *cs = (struct kcld_child_shard *)(mem + off_child);
    fill_children(&f->children, end, cs, (const char **)(mem + off_parent),
                  &fl->sp);
    b->child_shards = cs;
    b->child_shard_count = sz->n_child;
  }
  for (size_t i = 0; i < sz->n; i++)
    if ((rc = fill_record(fl, &f->recs[i], i, errbuf, errlen)) != 0)
      return rc;
  return 0;
}

/* ======== Pass C: expand ======== */

static void warn_passed_through(const struct kcld_record *r,
                                const char *shard_id)
{
  struct kcld_kpl_plan plan;
  kcld_kpl_scan(r->data, r->data_len, &plan);
  kcld_log(KCLD_LOG_WARN, "KPL aggregate passed through unchanged",
           "shard", shard_id, "sequence_number", r->sequence_number,
           "reason", plan.why, NULL);
}

static int expand(struct fill *fl, size_t n, const char *shard_id,
                  char *errbuf, size_t errlen)
{
  struct kcld_record_batch *b = fl->b;
  struct kcld_record *outer = fl->outer;
  size_t total = fl->total, keys_total = fl->keys_total;
  size_t recs_bytes = total * sizeof(struct kcld_record);
  struct kcld_record *recs = kcld_fetch_alloc(fl->acct,
                                              recs_bytes + keys_total);
  char *keys;
  size_t j = 0, koff = 0, used;

  if (recs == NULL) {
    fail(errbuf, errlen, "out of memory for %zu records", total);
    return KCLD_ENOMEM;
  }
  b->extra = recs;
  b->mem_bytes += recs_bytes + keys_total;
  keys = (char *)recs + recs_bytes;
  for (size_t i = 0; i < n; i++) {
    if (outer[i].aggregated != V_AGGREGATE) {
      if (outer[i].aggregated == V_CORRUPT)
        warn_passed_through(&outer[i], shard_id);
      recs[j] = outer[i];
      recs[j++].aggregated = 0;
      continue;
    }
    long got = kcld_deagg_expand(&outer[i], &recs[j], total - j,
                                 keys + koff, keys_total - koff, &used);
    if (got < 0)
      return fail(errbuf, errlen, "Records[%zu] (SequenceNumber %s): KPL "
                  "aggregate could not be expanded after it was verified",
                  i, outer[i].sequence_number);
    j += (size_t)got;
    koff += used;
  }
  b->records = recs;
  b->count = j;
  return 0;
}

/* Pass C: the batch's records are the Kinesis records as they are, or,
 * when some aggregate expands, a second block with the user records. */
static int finish(struct fill *fl, size_t n, const char *shard_id,
                  char *errbuf, size_t errlen)
{
  if (fl->naggs > 0)
    return expand(fl, n, shard_id, errbuf, errlen);
  for (size_t i = 0; i < n; i++) {
    if (fl->outer[i].aggregated == V_CORRUPT) {
      warn_passed_through(&fl->outer[i], shard_id);
      fl->outer[i].aggregated = 0;
    }
  }
  fl->b->records = fl->outer;
  fl->b->count = n;
  return 0;
}

/* ======== The whole response ======== */

int kcld_getrecords_parse_mem(const char *body, size_t len,
                              const char *shard_id,
                              struct kcld_getrecords_mem *mem,
                              struct kcld_record_batch **out, char *errbuf,
                              size_t errlen)
{
  struct found f;
  struct sizes sz = {0, 0, 0, 0, 0};
  struct fill fl;
  int rc;

  if (out)
    *out = NULL;
  if (body == NULL || out == NULL) {
    fail(errbuf, errlen, "no body or no result pointer");
    return KCLD_EINVAL;
  }
  if (errbuf && errlen)
    errbuf[0] = '\0';
  memset(&f, 0, sizeof(f));
  memset(&fl, 0, sizeof(fl));
  if (mem) {
    /* The scan's array from the last call, reused. */
    f.recs = mem->scratch;
    f.cap = mem->scratch_cap;
    f.event = mem->event;
    fl.acct = mem->account;
  }
  if ((rc = scan_all(body, len, &f, errbuf, errlen)) != 0 ||
      (rc = check_all(&f, body + len, &sz, errbuf, errlen)) != 0 ||
      (rc = fill_block(&fl, &f, body + len, &sz, errbuf, errlen)) != 0 ||
      (rc = finish(&fl, sz.n, shard_id, errbuf, errlen)) != 0)
    goto done;
  *out = fl.b;
  fl.b = NULL;

done:
  kcld_record_batch_release(fl.b);
  if (mem) {
    mem->scratch = f.recs;
    mem->scratch_cap = f.cap;
  } else {
    free(f.recs);
  }
  free(fl.tmp);
  return rc;
}

int kcld_getrecords_parse(const char *body, size_t len, const char *shard_id,
                          struct kcld_record_batch **out, char *errbuf,
                          size_t errlen)
{
  return kcld_getrecords_parse_mem(body, len, shard_id, NULL, out, errbuf,
                                   errlen);
}

void kcld_getrecords_mem_clean_up(struct kcld_getrecords_mem *mem)
{
  free(mem->scratch);
  mem->scratch = NULL;
  mem->scratch_cap = 0;
}
