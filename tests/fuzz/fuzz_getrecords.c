/* fuzz_getrecords.c — libFuzzer target for kcld_getrecords_parse().
 *
 * The input is a GetRecords response body, given without a terminating NUL
 * (the parser must not read past `len`).  Besides "no crash, no leak, no
 * sanitizer report", every successful parse is checked against the contract
 * in getrecords.h and record.h: each record's bytes are readable, its
 * sequence number is valid, its batch is the batch, and a Kinesis record
 * yields at least one user record.  A failed parse must return nothing and
 * say why in errbuf.
 *
 * Differential check: kcld_getrecords_parse() scans the JSON itself
 * (base/json.h).  Below, ref_parse() is the implementation it
 * replaced, built on a jansson tree; for every input the two must agree on
 * accept or refuse, on the message (when the body is JSON) and on every
 * field of every record and child shard. */
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/base64.h"
#include "base/kpl.h"
#include "base/seq.h"
#include "consume/deagg.h"
#include "consume/getrecords.h"
#include "consume/record.h"
#include "err.h"
#include "fuzz.h"
#include "log.h"

/* ======== The reference: the jansson-tree parser ======== */


/* Verdicts kept in an outer record's `aggregated` between passes B and C. */
enum { V_PLAIN = 0, V_AGGREGATE = 1, V_CORRUPT = 2 };

/* Largest accepted ApproximateArrivalTimestamp, in seconds (year ~5138). */
#define MAX_ARRIVAL_S 1e11

/* The members of one element of Records, as found in pass A. */
struct jrec {
  json_t *data, *pk, *seq, *ts, *enc;
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

/* ======== Pass A: validate and size ======== */

/* A required string member, named in messages as where[i].infix key. */
static int need_string(json_t *obj, const char *key, json_t **out,
                       const char *where, size_t i, const char *infix,
                       char *errbuf, size_t errlen)
{
  json_t *v = json_object_get(obj, key);
  if (v == NULL || json_is_null(v))
    return fail(errbuf, errlen, "%s[%zu].%s%s is missing", where, i, infix,
                key);
  if (!json_is_string(v))
    return fail(errbuf, errlen, "%s[%zu].%s%s is not a string", where, i,
                infix, key);
  *out = v;
  return 0;
}

/* An optional member: NULL when absent or null. */
static json_t *maybe(json_t *obj, const char *key)
{
  json_t *v = json_object_get(obj, key);
  return json_is_null(v) ? NULL : v;
}

/* Validates Records[i] and adds its sizes. */
static int check_record(json_t *rec, size_t i, struct jrec *jr,
                        struct sizes *sz, char *errbuf, size_t errlen)
{
  int rc;

  if (!json_is_object(rec))
    return fail(errbuf, errlen, "Records[%zu] is not an object", i);
  if ((rc = need_string(rec, "SequenceNumber", &jr->seq, "Records", i, "",
                        errbuf, errlen)) != 0)
    return rc;
  const char *seq = json_string_value(jr->seq);
  size_t seq_len = json_string_length(jr->seq);
  if (strlen(seq) != seq_len)
    return fail(errbuf, errlen, "Records[%zu].SequenceNumber holds a NUL "
                "character", i);
  if (!kcld_seq_valid(seq))
    return fail(errbuf, errlen, "Records[%zu].SequenceNumber \"%.*s\" is "
                "not a decimal sequence number", i,
                (int)(seq_len < 64 ? seq_len : 64), seq);
  if ((rc = need_string(rec, "Data", &jr->data, "Records", i, "", errbuf,
                        errlen)) != 0 ||
      (rc = need_string(rec, "PartitionKey", &jr->pk, "Records", i, "",
                        errbuf, errlen)) != 0)
    return rc;

  size_t b64_len = json_string_length(jr->data);
  if (b64_len % 4 != 0)
    return fail(errbuf, errlen, "Records[%zu] (SequenceNumber %s): Data is "
                "not valid base64 (length %zu is not a multiple of 4)", i, seq,
                b64_len);

  jr->ts = maybe(rec, "ApproximateArrivalTimestamp");
  if (jr->ts) {
    double t = json_number_value(jr->ts);
    if (!json_is_number(jr->ts))
      return fail(errbuf, errlen, "Records[%zu] (SequenceNumber %s): "
                  "ApproximateArrivalTimestamp is not a number", i, seq);
    if (!isfinite(t) || t < 0 || t > MAX_ARRIVAL_S)
      return fail(errbuf, errlen, "Records[%zu] (SequenceNumber %s): "
                  "ApproximateArrivalTimestamp %g is out of range", i, seq,
                  t);
  }
  jr->enc = maybe(rec, "EncryptionType");
  if (jr->enc && !json_is_string(jr->enc))
    return fail(errbuf, errlen, "Records[%zu] (SequenceNumber %s): "
                "EncryptionType is not a string", i, seq);

  sz->str += seq_len + 1 + json_string_length(jr->pk) + 1;
  if (jr->enc && strcmp(json_string_value(jr->enc), "NONE") != 0 &&
      strcmp(json_string_value(jr->enc), "KMS") != 0)
    sz->str += json_string_length(jr->enc) + 1;
  sz->data += b64_len / 4 * 3;
  return 0;
}

static void get_record(json_t *rec, struct jrec *jr)
{
  jr->seq = json_object_get(rec, "SequenceNumber");
  jr->data = json_object_get(rec, "Data");
  jr->pk = json_object_get(rec, "PartitionKey");
  jr->ts = maybe(rec, "ApproximateArrivalTimestamp");
  jr->enc = maybe(rec, "EncryptionType");
}

/* Validates ChildShards (absent, null or an array) and adds its sizes. */
static int check_children(json_t *children, struct sizes *sz, char *errbuf,
                     size_t errlen)
{
  size_t i, j;
  json_t *c, *v, *parents, *range, *p;
  int rc;

  if (children == NULL)
    return 0;
  if (!json_is_array(children))
    return fail(errbuf, errlen, "ChildShards is not an array");
  json_array_foreach(children, i, c) {
    if (!json_is_object(c))
      return fail(errbuf, errlen, "ChildShards[%zu] is not an object", i);
    if ((rc = need_string(c, "ShardId", &v, "ChildShards", i, "", errbuf,
                          errlen)) != 0)
      return rc;
    sz->str += json_string_length(v) + 1;
    parents = json_object_get(c, "ParentShards");
    if (!json_is_array(parents))
      return fail(errbuf, errlen, "ChildShards[%zu].ParentShards is %s", i,
                  parents && !json_is_null(parents) ? "not an array"
                                                    : "missing");
    json_array_foreach(parents, j, p) {
      if (!json_is_string(p))
        return fail(errbuf, errlen, "ChildShards[%zu].ParentShards[%zu] is "
                    "not a string", i, j);
      sz->str += json_string_length(p) + 1;
      sz->n_parent++;
    }
    range = json_object_get(c, "HashKeyRange");
    if (!json_is_object(range))
      return fail(errbuf, errlen, "ChildShards[%zu].HashKeyRange is %s", i,
                  range && !json_is_null(range) ? "not an object"
                                                : "missing");
    if ((rc = need_string(range, "StartingHashKey", &v, "ChildShards", i,
                          "HashKeyRange.", errbuf, errlen)) != 0)
      return rc;
    sz->str += json_string_length(v) + 1;
    if ((rc = need_string(range, "EndingHashKey", &v, "ChildShards", i,
                          "HashKeyRange.", errbuf, errlen)) != 0)
      return rc;
    sz->str += json_string_length(v) + 1;
    sz->n_child++;
  }
  return 0;
}

/* ======== Pass B: fill the main block ======== */

static const char *put_str(char **sp, json_t *s)
{
  size_t n = json_string_length(s);
  char *out = *sp;
  memcpy(out, json_string_value(s), n);
  out[n] = '\0';
  *sp += n + 1;
  return out;
}

static void fill_children(json_t *children, struct kcld_child_shard *cs,
                          const char **parents, char **sp)
{
  size_t i, j;
  json_t *c, *p;

  json_array_foreach(children, i, c) {
    json_t *range = json_object_get(c, "HashKeyRange");
    json_t *plist = json_object_get(c, "ParentShards");
    cs[i].shard_id = put_str(sp, json_object_get(c, "ShardId"));
    cs[i].parent_shards = parents;
    cs[i].parent_count = json_array_size(plist);
    json_array_foreach(plist, j, p)
      *parents++ = put_str(sp, p);
    cs[i].starting_hash_key =
      put_str(sp, json_object_get(range, "StartingHashKey"));
    cs[i].ending_hash_key =
      put_str(sp, json_object_get(range, "EndingHashKey"));
  }
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

static int expand(struct kcld_record_batch *b, struct kcld_record *outer,
                  size_t n, size_t total, size_t keys_total,
                  const char *shard_id, char *errbuf, size_t errlen)
{
  size_t recs_bytes = total * sizeof(struct kcld_record);
  struct kcld_record *recs = malloc(recs_bytes + keys_total);
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

/* ======== The whole response ======== */

static int ref_parse(const char *body, size_t len, const char *shard_id,
                     struct kcld_record_batch **out, char *errbuf,
                     size_t errlen)
{
  json_error_t jerr;
  json_t *root = NULL, *records, *next, *mbl, *children, *rec;
  struct kcld_record_batch *b = NULL;
  struct sizes sz = {0, 0, 0, 0, 0};
  struct jrec jr;
  size_t i;
  int rc = KCLD_EPARSE;

  if (out)
    *out = NULL;
  if (body == NULL || out == NULL) {
    fail(errbuf, errlen, "no body or no result pointer");
    return KCLD_EINVAL;
  }
  if (errbuf && errlen)
    errbuf[0] = '\0';

  root = json_loadb(body, len, JSON_ALLOW_NUL, &jerr);
  if (root == NULL) {
    rc = fail(errbuf, errlen, "GetRecords response is not JSON: %s (line %d, "
              "column %d)", jerr.text, jerr.line, jerr.column);
    goto cleanup;
  }
  if (!json_is_object(root)) {
    rc = fail(errbuf, errlen, "GetRecords response is not a JSON object");
    goto cleanup;
  }

  /* Pass A. */
  records = json_object_get(root, "Records");
  if (!json_is_array(records)) {
    rc = fail(errbuf, errlen, "Records is %s",
              records && !json_is_null(records) ? "not an array" : "missing");
    goto cleanup;
  }
  sz.n = json_array_size(records);
  json_array_foreach(records, i, rec) {
    if ((rc = check_record(rec, i, &jr, &sz, errbuf, errlen)) != 0)
      goto cleanup;
  }
  next = maybe(root, "NextShardIterator");
  if (next && !json_is_string(next)) {
    rc = fail(errbuf, errlen, "NextShardIterator is not a string");
    goto cleanup;
  }
  if (next)
    sz.str += json_string_length(next) + 1;
  mbl = maybe(root, "MillisBehindLatest");
  if (mbl && (!json_is_number(mbl) || !isfinite(json_number_value(mbl)) ||
              json_number_value(mbl) < 0 ||
              json_number_value(mbl) > 9e18)) {
    rc = fail(errbuf, errlen, "MillisBehindLatest is %s",
              json_is_number(mbl) ? "out of range" : "not a number");
    goto cleanup;
  }
  children = maybe(root, "ChildShards");
  if ((rc = check_children(children, &sz, errbuf, errlen)) != 0)
    goto cleanup;

  /* Pass B: the main block. */
  size_t off_recs = align8(sizeof(*b));
  size_t off_child = off_recs + sz.n * sizeof(struct kcld_record);
  size_t off_parent = off_child + sz.n_child * sizeof(struct kcld_child_shard);
  size_t off_str = off_parent + sz.n_parent * sizeof(const char *);
  size_t off_data = off_str + sz.str;
  size_t total_bytes = off_data + sz.data;
  char *mem = malloc(total_bytes);
  if (mem == NULL) {
    fail(errbuf, errlen, "out of memory for a %zu-byte batch", total_bytes);
    rc = KCLD_ENOMEM;
    goto cleanup;
  }
  b = (struct kcld_record_batch *)mem;
  memset(b, 0, sizeof(*b));
  atomic_init(&b->refs, 1);
  b->mem_bytes = total_bytes;
  b->kinesis_count = sz.n;
  b->millis_behind_latest =
    mbl ? (json_is_integer(mbl) ? (int64_t)json_integer_value(mbl)
                                : (int64_t)json_number_value(mbl))
        : -1;

  struct kcld_record *outer = (struct kcld_record *)(mem + off_recs);
  char *sp = mem + off_str;
  uint8_t *dp = (uint8_t *)mem + off_data;
  size_t total = 0, keys_total = 0, naggs = 0;

  if (next)
    b->next_shard_iterator = put_str(&sp, next);
  if (sz.n_child) {
    struct kcld_child_shard *cs = (struct kcld_child_shard *)(mem + off_child);
    fill_children(children, cs, (const char **)(mem + off_parent), &sp);
    b->child_shards = cs;
    b->child_shard_count = sz.n_child;
  }

  json_array_foreach(records, i, rec) {
    struct kcld_record *r = &outer[i];
    struct kcld_kpl_plan plan;
    size_t b64_len, bad;

    get_record(rec, &jr);
    r->sequence_number = put_str(&sp, jr.seq);
    r->partition_key = put_str(&sp, jr.pk);
    r->partition_key_len = json_string_length(jr.pk);
    r->explicit_hash_key = NULL;
    r->encryption_type = NULL;
    if (jr.enc) {
      const char *e = json_string_value(jr.enc);
      r->encryption_type = strcmp(e, "NONE") == 0  ? "NONE"
                           : strcmp(e, "KMS") == 0 ? "KMS"
                                                   : put_str(&sp, jr.enc);
    }
    r->arrival_ms = jr.ts ? (int64_t)llround(json_number_value(jr.ts) * 1000.0)
                          : KCLD_RECORD_NO_ARRIVAL;
    r->sub_sequence_number = 0;
    r->batch = b;

    b64_len = json_string_length(jr.data);
    if (kcld_base64_decode(json_string_value(jr.data), b64_len, dp,
                           &r->data_len, &bad) != 0) {
      rc = fail(errbuf, errlen, "Records[%zu] (SequenceNumber %s): Data is "
                "not valid base64 (at character %zu of %zu)", i,
                r->sequence_number, bad, b64_len);
      goto cleanup;
    }
    r->data = dp;
    dp += b64_len / 4 * 3;
    b->data_bytes += r->data_len;

    switch (kcld_kpl_scan(r->data, r->data_len, &plan)) {
    case KCLD_KPL_AGGREGATE:
      r->aggregated = V_AGGREGATE;
      total += plan.nrecords;
      keys_total += plan.key_bytes;
      naggs++;
      break;
    case KCLD_KPL_CORRUPT:
      r->aggregated = V_CORRUPT;
      total++;
      break;
    default:
      r->aggregated = V_PLAIN;
      total++;
    }
  }

  /* Pass C. */
  if (naggs > 0) {
    if ((rc = expand(b, outer, sz.n, total, keys_total, shard_id, errbuf,
                     errlen)) != 0)
      goto cleanup;
  } else {
    for (i = 0; i < sz.n; i++) {
      if (outer[i].aggregated == V_CORRUPT) {
        warn_passed_through(&outer[i], shard_id);
        outer[i].aggregated = 0;
      }
    }
    b->records = outer;
    b->count = sz.n;
  }
  *out = b;
  b = NULL;
  rc = 0;

cleanup:
  kcld_record_batch_release(b);
  json_decref(root);
  return rc;
}

/* ======== The target ======== */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc;
  (void)argv;
  /* A fixed hash seed keeps runs reproducible; the log goes to /dev/null
   * so that its escaping of hostile strings is exercised too. */
  json_object_seed(1);
  FILE *null = fopen("/dev/null", "w");
  kcld_log_setup(KCLD_LOG_DEBUG, KCLD_LOG_JSON, null);
  return 0;
}

static void check_batch(struct kcld_record_batch *b)
{
  CHECK(b->count >= b->kinesis_count);
  CHECK(b->count == 0 || b->records != NULL);
  for (size_t i = 0; i < b->count; i++) {
    const struct kcld_record *r = &b->records[i];
    CHECK(r->data != NULL);
    touch(r->data, r->data_len);
    CHECK(r->partition_key != NULL);
    touch(r->partition_key, r->partition_key_len + 1);
    CHECK(r->partition_key[r->partition_key_len] == '\0');
    CHECK(kcld_seq_valid(r->sequence_number));
    if (r->explicit_hash_key)
      touch(r->explicit_hash_key, strlen(r->explicit_hash_key));
    CHECK(r->aggregated || r->explicit_hash_key == NULL);
    CHECK(r->aggregated || r->sub_sequence_number == 0);
    if (r->encryption_type)
      touch(r->encryption_type, strlen(r->encryption_type));
    CHECK(r->batch == b);
    CHECK(r->arrival_ms >= KCLD_RECORD_NO_ARRIVAL);
    /* The user records of one aggregate come together, numbered 0, 1, ... */
    if (r->sub_sequence_number > 0) {
      CHECK(i > 0);
      const struct kcld_record *p = &b->records[i - 1];
      CHECK(p->aggregated && r->aggregated);
      CHECK(p->sub_sequence_number + 1 == r->sub_sequence_number);
      CHECK(strcmp(p->sequence_number, r->sequence_number) == 0);
    }
  }
  if (b->next_shard_iterator)
    touch(b->next_shard_iterator, strlen(b->next_shard_iterator));
  CHECK(b->millis_behind_latest >= -1);
  for (size_t i = 0; i < b->child_shard_count; i++) {
    const struct kcld_child_shard *c = &b->child_shards[i];
    touch(c->shard_id, strlen(c->shard_id));
    for (size_t k = 0; k < c->parent_count; k++)
      touch(c->parent_shards[k], strlen(c->parent_shards[k]));
    touch(c->starting_hash_key, strlen(c->starting_hash_key));
    touch(c->ending_hash_key, strlen(c->ending_hash_key));
  }
}

/* Both NULL, or equal C strings. */
static int same_str(const char *a, const char *b)
{
  return (a == NULL && b == NULL) ||
         (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* The scanner's batch a holds exactly what the reference's batch b does. */
static void check_same(const struct kcld_record_batch *a,
                       const struct kcld_record_batch *b)
{
  CHECK(a->count == b->count);
  CHECK(a->kinesis_count == b->kinesis_count);
  CHECK(a->data_bytes == b->data_bytes);
  CHECK(a->mem_bytes == b->mem_bytes);
  CHECK(a->millis_behind_latest == b->millis_behind_latest);
  CHECK(same_str(a->next_shard_iterator, b->next_shard_iterator));
  for (size_t i = 0; i < a->count; i++) {
    const struct kcld_record *x = &a->records[i], *y = &b->records[i];
    CHECK(strcmp(x->sequence_number, y->sequence_number) == 0);
    CHECK(x->sub_sequence_number == y->sub_sequence_number);
    CHECK(x->partition_key_len == y->partition_key_len);
    CHECK(memcmp(x->partition_key, y->partition_key,
                 x->partition_key_len + 1) == 0);
    CHECK(same_str(x->explicit_hash_key, y->explicit_hash_key));
    CHECK(same_str(x->encryption_type, y->encryption_type));
    CHECK(x->arrival_ms == y->arrival_ms);
    CHECK(x->aggregated == y->aggregated);
    CHECK(x->data_len == y->data_len);
    CHECK(x->data_len == 0 || memcmp(x->data, y->data, x->data_len) == 0);
  }
  CHECK(a->child_shard_count == b->child_shard_count);
  for (size_t i = 0; i < a->child_shard_count; i++) {
    const struct kcld_child_shard *x = &a->child_shards[i];
    const struct kcld_child_shard *y = &b->child_shards[i];
    CHECK(strcmp(x->shard_id, y->shard_id) == 0);
    CHECK(x->parent_count == y->parent_count);
    for (size_t k = 0; k < x->parent_count; k++)
      CHECK(strcmp(x->parent_shards[k], y->parent_shards[k]) == 0);
    CHECK(strcmp(x->starting_hash_key, y->starting_hash_key) == 0);
    CHECK(strcmp(x->ending_hash_key, y->ending_hash_key) == 0);
  }
}

static const char k_not_json[] = "GetRecords response is not JSON";

/* The same input as a SubscribeToShardEvent payload: the batch's contract
 * holds, a continuation is a sequence number, the end has none, no
 * iterator is kept; when both parses accept, the records are the same. */
static void check_event(const uint8_t *data, size_t size,
                        const struct kcld_record_batch *polled)
{
  struct kcld_getrecords_mem mem = {.event = 1};
  struct kcld_record_batch *b = (struct kcld_record_batch *)1;
  char errbuf[256];
  int rc = kcld_getrecords_parse_mem((const char *)data, size, "shardId-fuzz",
                                     &mem, &b, errbuf, sizeof(errbuf));
  kcld_getrecords_mem_clean_up(&mem);
  if (rc != 0) {
    CHECK(rc == KCLD_EPARSE || rc == KCLD_ENOMEM);
    CHECK(b == NULL);
    CHECK(errbuf[0] != '\0');
    return;
  }
  check_batch(b);
  CHECK(b->next_shard_iterator == NULL);
  CHECK(!b->continuation_sequence_number ||
        kcld_seq_valid(b->continuation_sequence_number));
  CHECK(!b->shard_end || !b->continuation_sequence_number);
  if (polled) {
    CHECK(b->count == polled->count);
    CHECK(b->kinesis_count == polled->kinesis_count);
    for (size_t i = 0; i < b->count; i++)
      CHECK(strcmp(b->records[i].sequence_number,
                   polled->records[i].sequence_number) == 0);
  }
  kcld_record_batch_release(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct kcld_record_batch *b = (struct kcld_record_batch *)1;
  struct kcld_record_batch *ref = (struct kcld_record_batch *)1;
  char errbuf[256], referr[256];

  errbuf[0] = '\0';
  referr[0] = '\0';
  int rc = kcld_getrecords_parse((const char *)data, size, "shardId-fuzz",
                                 &b, errbuf, sizeof(errbuf));
  int refrc = ref_parse((const char *)data, size, "shardId-fuzz", &ref,
                        referr, sizeof(referr));
  if (rc != KCLD_ENOMEM && refrc != KCLD_ENOMEM) {
    if (rc != refrc) {
      fprintf(stderr, "scanner %d \"%s\", jansson %d \"%s\"\n", rc, errbuf,
              refrc, referr);
      CHECK(rc == refrc);
    }
    if (rc == KCLD_EPARSE) {
      int nj = strncmp(errbuf, k_not_json, sizeof(k_not_json) - 1) == 0;
      int ref_nj = strncmp(referr, k_not_json, sizeof(k_not_json) - 1) == 0;
      if (nj != ref_nj || (!nj && strcmp(errbuf, referr) != 0)) {
        fprintf(stderr, "scanner \"%s\", jansson \"%s\"\n", errbuf, referr);
        CHECK(!"the same message");
      }
    }
  }
  if (rc == 0 && refrc == 0)
    check_same(b, ref);
  if (refrc == 0)
    kcld_record_batch_release(ref);
  else
    CHECK(ref == NULL);

  check_event(data, size, rc == 0 ? b : NULL);
  if (rc == 0) {
    CHECK(b != NULL);
    check_batch(b);
    /* A second holder, released in the other order. */
    CHECK(kcld_record_batch_acquire(b) == b);
    kcld_record_batch_release(b);
    kcld_record_batch_release(b);
    return 0;
  }
  CHECK(rc == KCLD_EPARSE || rc == KCLD_ENOMEM);
  CHECK(b == NULL);
  CHECK(errbuf[0] != '\0');
  CHECK(memchr(errbuf, '\0', sizeof(errbuf)) != NULL);
  return 0;
}
