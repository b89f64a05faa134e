/* test_kinesis.c — the Kinesis wrappers against kinesalite: streams created
 * and waited for, ListShards across pages and through throttling, records
 * put and read back by every iterator type, iterator errors mapped, and
 * SplitShard / MergeShards seen in ListShards.
 *
 * "kinesis" is plain kinesalite.  "kinesis_paged" (tests/emulators/lib) is
 * kinesalite behind a proxy that pages ListShards as Kinesis does (kinesalite
 * ignores MaxResults), accepts StreamARN, injects LimitExceededException on
 * request and re-dates shard iterators so they expire. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "aws/call.h"
#include "aws/kinesis.h"
#include "awsenv.h"
#include "err.h"
#include "fault.h"
#include "harness.h"

#define WAIT_MS 20000

static struct kcld_emu s_emu;

struct env {
  struct kcld_test_awsenv c;
  struct kcld_kinesis *k;
  const char *url;
};

static void env_up(struct env *e, const char *emulator, int max_attempts)
{
  memset(e, 0, sizeof(*e));
  e->url = kcld_emu_url(&s_emu, emulator);
  kcld_test_awsenv_up(&e->c, KCLD_AWS_KINESIS, e->url, max_attempts);
  assert_int_equal(kcld_kinesis_new(e->c.aws, &e->c.loop, &e->k), 0);
}

static void env_down(struct env *e)
{
  kcld_kinesis_close(e->k);
  kcld_test_awsenv_down(&e->c);
}

/* ======== What the callbacks saw ======== */

struct seen {
  int done;
  int err;
  enum kcld_kinesis_fault fault;
  char type[96];
  char message[640];
  json_t *doc;         /* a copy of what came back */
  int pages, throttled;
  size_t count, failed;
  char text[256];      /* an iterator, a status */
  int number;
};

static void seen_status(struct seen *s, const struct kcld_svc_status *st)
{
  s->done++;
  s->err = st->err;
  s->fault = kcld_kinesis_fault(st);
  snprintf(s->type, sizeof(s->type), "%s", st->type);
  snprintf(s->message, sizeof(s->message), "%s", st->message);
}

static void seen_free(struct seen *s)
{
  json_decref(s->doc);
  memset(s, 0, sizeof(*s));
}

static void on_done(const struct kcld_svc_status *st, void *arg)
{
  seen_status(arg, st);
}

static void on_list(const struct kcld_kinesis_shard_list *r, void *arg)
{
  struct seen *s = arg;
  seen_status(s, &r->st);
  s->pages = r->pages;
  s->throttled = r->throttled;
  s->count = r->count;
  if (r->st.err)
    return;
  /* Check the typed view against the document while both are valid. */
  assert_int_equal(json_array_size(r->doc), r->count);
  for (size_t i = 0; i < r->count; i++) {
    json_t *d = json_array_get(r->doc, i);
    assert_string_equal(r->shards[i].shard_id,
                        json_string_value(json_object_get(d, "ShardId")));
  }
  s->doc = json_deep_copy(r->doc);
}

static void on_summary(const struct kcld_kinesis_stream_summary *r, void *arg)
{
  struct seen *s = arg;
  seen_status(s, &r->st);
  if (r->st.err)
    return;
  snprintf(s->text, sizeof(s->text), "%s", r->status);
  s->number = r->open_shard_count;
  s->doc = json_deep_copy(r->doc);
}

static void on_iterator(const struct kcld_kinesis_iterator *r, void *arg)
{
  struct seen *s = arg;
  seen_status(s, &r->st);
  if (r->st.err) {
    assert_null(r->shard_iterator);
    return;
  }
  snprintf(s->text, sizeof(s->text), "%s", r->shard_iterator);
}

static void on_records(const struct kcld_kinesis_records_raw *r, void *arg)
{
  struct seen *s = arg;
  json_error_t jerr;
  seen_status(s, &r->st);
  if (r->st.err) {
    assert_null(r->body);
    return;
  }
  s->doc = json_loadb(r->body, r->body_len, 0, &jerr);
  assert_non_null(s->doc);
}

static void on_put(const struct kcld_kinesis_put_result *r, void *arg)
{
  struct seen *s = arg;
  seen_status(s, &r->st);
  s->count = r->count;
  s->failed = r->failed;
  if (r->st.err)
    return;
  s->doc = json_array();
  for (size_t i = 0; i < r->count; i++) {
    const struct kcld_kinesis_put_entry *pe = &r->entries[i];
    json_array_append_new(
      s->doc, pe->error_code
                ? json_pack("{ss}", "error", pe->error_code)
                : json_pack("{ssss}", "seq", pe->sequence_number, "shard",
                            pe->shard_id));
  }
}

static void wait_for(struct env *e, struct seen *s)
{
  assert_true(kcld_test_run_until(&e->c.loop, &s->done, WAIT_MS));
  assert_int_equal(s->done, 1);
  if (s->err)
    fprintf(stderr, "note: %s\n", s->message); /* expected or not */
}

/* ======== Steps ======== */

static void create_active(struct env *e, const char *name, int shards)
{
  struct seen s = {0};
  assert_int_equal(kcld_kinesis_create_stream(e->k, name, shards, on_done, &s),
                   0);
  wait_for(e, &s);
  assert_int_equal(s.err, 0);
  seen_free(&s);
  assert_int_equal(kcld_kinesis_wait_active(e->k, name, 10000, on_summary, &s),
                   0);
  wait_for(e, &s);
  assert_int_equal(s.err, 0);
  assert_string_equal(s.text, "ACTIVE");
  assert_int_equal(s.number, shards);
  seen_free(&s);
}

static void list(struct env *e, const char *stream,
                 const struct kcld_kinesis_list_opts *o, struct seen *s)
{
  memset(s, 0, sizeof(*s));
  assert_int_equal(kcld_kinesis_list_shards(e->k, stream, o, on_list, s), 0);
  wait_for(e, s);
}

static const char *shard_field(json_t *shards, size_t i, const char *key)
{
  return json_string_value(json_object_get(json_array_get(shards, i), key));
}

static const char *hash_field(json_t *shards, size_t i, const char *key)
{
  return json_string_value(json_object_get(
    json_object_get(json_array_get(shards, i), "HashKeyRange"), key));
}

/* Decimal text + 1. */
static void dec_inc(const char *in, char *out, size_t cap)
{
  size_t n = strlen(in);
  int carry = 1;
  assert_true(n + 2 <= cap);
  out[n + 1] = '\0';
  for (size_t i = n; i-- > 0;) {
    int d = in[i] - '0' + carry;
    carry = d / 10;
    out[i + 1] = (char)('0' + d % 10);
  }
  if (carry) {
    out[0] = '1';
  } else {
    memmove(out, out + 1, n + 1);
  }
}

/* A POST of `body` (taken) to the kinesis_paged control plane; returns its
 * JSON answer. */
static json_t *ctrl(struct env *e, const char *path, json_t *body)
{
  char *text = json_dumps(body, JSON_COMPACT);
  json_t *answer = kcld_fault_post(e->url, path, text);
  free(text);
  json_decref(body);
  assert_non_null(answer);
  return answer;
}

static int target_count(json_t *stats, const char *op)
{
  return (int)json_integer_value(
    json_object_get(json_object_get(stats, "targets"), op));
}

static size_t b64_decode(const char *in, unsigned char *out, size_t cap)
{
  size_t len = strlen(in), pad = 0;
  int n;
  assert_true(len / 4 * 3 <= cap);
  if (len == 0)
    return 0;
  n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)len);
  assert_true(n >= 0);
  if (len >= 1 && in[len - 1] == '=')
    pad++;
  if (len >= 2 && in[len - 2] == '=')
    pad++;
  return (size_t)n - pad;
}

/* ======== Tests ======== */

/* CreateStream, the wait, DescribeStreamSummary, ListShards: four shards
 * covering the whole hash-key space without gaps; a second create is
 * "in use". */
static void test_create_describe_list(void **state)
{
  struct env e;
  struct seen s = {0};
  (void)state;
  env_up(&e, "kinesis", 0);
  create_active(&e, "kcld-create", 4);

  assert_int_equal(kcld_kinesis_describe_stream_summary(e.k, "kcld-create",
                                                        on_summary, &s),
                   0);
  wait_for(&e, &s);
  assert_int_equal(s.err, 0);
  assert_string_equal(
    json_string_value(json_object_get(s.doc, "StreamName")), "kcld-create");
  assert_int_equal(s.number, 4);
  seen_free(&s);

  list(&e, "kcld-create", NULL, &s);
  assert_int_equal(s.err, 0);
  assert_int_equal(s.count, 4);
  assert_int_equal(s.pages, 1);
  assert_string_equal(hash_field(s.doc, 0, "StartingHashKey"), "0");
  assert_string_equal(hash_field(s.doc, 3, "EndingHashKey"),
                      "340282366920938463463374607431768211455");
  for (size_t i = 1; i < 4; i++) {
    char next[64];
    dec_inc(hash_field(s.doc, i - 1, "EndingHashKey"), next, sizeof(next));
    assert_string_equal(hash_field(s.doc, i, "StartingHashKey"), next);
    assert_string_not_equal(shard_field(s.doc, i, "ShardId"),
                            shard_field(s.doc, i - 1, "ShardId"));
  }
  seen_free(&s);

  assert_int_equal(kcld_kinesis_create_stream(e.k, "kcld-create", 4, on_done,
                                              &s),
                   0);
  wait_for(&e, &s);
  assert_int_equal(s.err, KCLD_EAWS);
  assert_int_equal(s.fault, KCLD_KINESIS_IN_USE);
  assert_string_equal(s.type, "ResourceInUseException");
  assert_non_null(strstr(s.message, "CreateStream"));
  assert_non_null(strstr(s.message, "kcld-create"));
  seen_free(&s);

  /* A stream that is not there. */
  assert_int_equal(kcld_kinesis_describe_stream_summary(e.k, "kcld-nosuch",
                                                        on_summary, &s),
                   0);
  wait_for(&e, &s);
  assert_int_equal(s.err, KCLD_ENOTFOUND);
  assert_int_equal(s.fault, KCLD_KINESIS_NOT_FOUND);
  assert_non_null(strstr(s.message, "DescribeStreamSummary stream "
                                    "kcld-nosuch: ResourceNotFoundException"));
  seen_free(&s);
  env_down(&e);
}

/* ListShards follows NextToken pages, by name and by ARN, and never names
 * the stream together with a NextToken (the proxy refuses that as Kinesis
 * does). */
static void test_list_pages(void **state)
{
  struct env e;
  struct seen s = {0}, all = {0};
  struct kcld_kinesis_list_opts o = {.page_size = 2};
  json_t *stats, *log;
  char arn[256];
  (void)state;
  env_up(&e, "kinesis_paged", 0);
  create_active(&e, "kcld-pages", 7);
  json_decref(ctrl(&e, "/__paged/reset", json_object()));

  list(&e, "kcld-pages", &o, &s);
  assert_int_equal(s.err, 0);
  assert_int_equal(s.count, 7);
  assert_int_equal(s.pages, 4);
  for (size_t i = 0; i < 7; i++) {
    char want[32];
    snprintf(want, sizeof(want), "shardId-%012zu", i);
    assert_string_equal(shard_field(s.doc, i, "ShardId"), want);
  }
  stats = ctrl(&e, "/__paged/stats", json_object());
  assert_int_equal(target_count(stats, "ListShards"), 4);
  log = json_object_get(stats, "log");
  assert_int_equal(json_array_size(log), 4);
  assert_string_equal(json_string_value(json_object_get(
                        json_array_get(log, 0), "StreamName")),
                      "kcld-pages");
  assert_null(json_object_get(json_array_get(log, 0), "NextToken"));
  for (size_t i = 1; i < 4; i++) {
    json_t *req = json_array_get(log, i);
    assert_non_null(json_object_get(req, "NextToken"));
    assert_null(json_object_get(req, "StreamName"));
    assert_int_equal(json_integer_value(json_object_get(req, "MaxResults")),
                     2);
  }
  json_decref(stats);

  /* The same list in one page is the same list. */
  list(&e, "kcld-pages", NULL, &all);
  assert_int_equal(all.err, 0);
  assert_int_equal(all.pages, 1);
  assert_true(json_equal(all.doc, s.doc));
  seen_free(&s);

  /* By ARN, three to a page, and from an exclusive start. */
  assert_int_equal(kcld_kinesis_describe_stream_summary(e.k, "kcld-pages",
                                                        on_summary, &s),
                   0);
  wait_for(&e, &s);
  assert_int_equal(s.err, 0);
  snprintf(arn, sizeof(arn), "%s",
           json_string_value(json_object_get(s.doc, "StreamARN")));
  assert_int_equal(strncmp(arn, "arn:aws:kinesis:", 16), 0);
  seen_free(&s);
  o.page_size = 3;
  list(&e, arn, &o, &s);
  assert_int_equal(s.err, 0);
  assert_int_equal(s.pages, 3);
  assert_true(json_equal(all.doc, s.doc));
  seen_free(&s);
  o.exclusive_start_shard_id = "shardId-000000000004";
  list(&e, "kcld-pages", &o, &s);
  assert_int_equal(s.err, 0);
  assert_int_equal(s.count, 2);
  assert_string_equal(shard_field(s.doc, 0, "ShardId"),
                      "shardId-000000000005");
  seen_free(&s);
  seen_free(&all);
  env_down(&e);
}

/* LimitExceededException beyond the call layer's retries: the wrapper backs
 * off and goes on; with no wrapper retries it ends with a clear error. */
static void test_list_throttled(void **state)
{
  struct env e;
  struct seen s = {0};
  struct kcld_kinesis_list_opts o = {.page_size = 3, .backoff_base_ms = 20,
                                     .backoff_max_ms = 100};
  json_t *stats;
  (void)state;
  env_up(&e, "kinesis_paged", 2); /* two attempts per call */
  create_active(&e, "kcld-throttle", 5);
  json_decref(ctrl(&e, "/__paged/reset", json_object()));
  /* Five refusals: two calls of two attempts each fail (two wrapper
   * backoffs), the fifth attempt is refused, the sixth answers; page two
   * follows. */
  json_decref(ctrl(&e, "/__paged/throttle",
                   json_pack("{sssi}", "target", "ListShards", "times", 5)));
  list(&e, "kcld-throttle", &o, &s);
  assert_int_equal(s.err, 0);
  assert_int_equal(s.count, 5);
  assert_int_equal(s.pages, 2);
  assert_int_equal(s.throttled, 2);
  stats = ctrl(&e, "/__paged/stats", json_object());
  assert_int_equal(target_count(stats, "ListShards"), 5 + 2);
  json_decref(stats);
  seen_free(&s);

  o.max_retries = -1;
  json_decref(ctrl(&e, "/__paged/throttle",
                   json_pack("{sssi}", "target", "ListShards", "times", 2)));
  list(&e, "kcld-throttle", &o, &s);
  assert_int_equal(s.err, KCLD_EAWS);
  assert_int_equal(s.fault, KCLD_KINESIS_LIMIT);
  assert_int_equal(s.throttled, 0);
  assert_non_null(strstr(s.message, "ListShards stream kcld-throttle: "
                                    "LimitExceededException (HTTP 400, 2 "
                                    "attempts)"));
  seen_free(&s);
  env_down(&e);
}

struct putrec {
  char key[32];
  unsigned char data[64];
  size_t len;
  char seq[128];
  char shard[64];
  int seen;
};

/* Reads a whole shard from an iterator; marks the records it finds and
 * returns how many there were.  Checks data and partition keys exactly. */
static size_t read_shard(struct env *e, const char *iterator,
                         struct putrec *recs, size_t n, const char *shard,
                         char *first_seq, size_t first_cap)
{
  char it[512];
  size_t found = 0;
  snprintf(it, sizeof(it), "%s", iterator);
  if (first_seq)
    first_seq[0] = '\0';
  for (int round = 0; round < 10; round++) {
    struct seen s = {0};
    struct kcld_kinesis_get_records_req req = {.shard_iterator = it,
                                               .limit = 1000,
                                               .shard_id = shard};
    json_t *records;
    size_t got;
    assert_int_equal(kcld_kinesis_get_records(e->k, &req, on_records, &s), 0);
    wait_for(e, &s);
    assert_int_equal(s.err, 0);
    records = json_object_get(s.doc, "Records");
    assert_true(json_is_array(records));
    got = json_array_size(records);
    for (size_t i = 0; i < got; i++) {
      json_t *r = json_array_get(records, i);
      const char *key = json_string_value(json_object_get(r, "PartitionKey"));
      const char *seq =
        json_string_value(json_object_get(r, "SequenceNumber"));
      unsigned char data[128];
      size_t len = b64_decode(json_string_value(json_object_get(r, "Data")),
                              data, sizeof(data));
      size_t j;
      if (first_seq && !first_seq[0])
        snprintf(first_seq, first_cap, "%s", seq);
      for (j = 0; j < n; j++)
        if (strcmp(recs[j].key, key) == 0)
          break;
      assert_true(j < n);
      assert_int_equal(len, recs[j].len);
      assert_memory_equal(data, recs[j].data, len);
      assert_string_equal(seq, recs[j].seq);
      assert_string_equal(shard, recs[j].shard);
      recs[j].seen++;
      found++;
    }
    if (got == 0 ||
        !json_string_value(json_object_get(s.doc, "NextShardIterator"))) {
      seen_free(&s);
      break;
    }
    snprintf(it, sizeof(it), "%s",
             json_string_value(json_object_get(s.doc, "NextShardIterator")));
    seen_free(&s);
  }
  return found;
}

static void iterator(struct env *e, const struct kcld_kinesis_iterator_req *r,
                     struct seen *s)
{
  memset(s, 0, sizeof(*s));
  assert_int_equal(kcld_kinesis_get_shard_iterator(e->k, r, on_iterator, s),
                   0);
  wait_for(e, s);
}

/* PutRecords, then every iterator type reads back exactly what was put. */
static void test_put_get_roundtrip(void **state)
{
  enum { N = 24 };
  struct env e;
  struct seen s = {0};
  struct putrec recs[N];
  struct kcld_kinesis_record in[N];
  const char *shards[2] = {"shardId-000000000000", "shardId-000000000001"};
  size_t total = 0;
  (void)state;
  env_up(&e, "kinesis", 0);
  create_active(&e, "kcld-roundtrip", 2);

  memset(recs, 0, sizeof(recs));
  for (int i = 0; i < N; i++) {
    snprintf(recs[i].key, sizeof(recs[i].key), "key-%d", i);
    recs[i].len = (size_t)(i % 7) + 1 + (size_t)i;
    for (size_t b = 0; b < recs[i].len; b++)
      recs[i].data[b] = (unsigned char)(i * 31 + (int)b * 7); /* binary */
    in[i].data = recs[i].data;
    in[i].len = recs[i].len;
    in[i].partition_key = recs[i].key;
    in[i].explicit_hash_key = NULL;
  }
  /* Pin one record to the second shard by hash key. */
  in[0].explicit_hash_key = "340282366920938463463374607431768211455";
  assert_int_equal(kcld_kinesis_put_records(e.k, "kcld-roundtrip", in, N,
                                            on_put, &s),
                   0);
  wait_for(&e, &s);
  assert_int_equal(s.err, 0);
  assert_int_equal(s.count, N);
  assert_int_equal(s.failed, 0);
  for (int i = 0; i < N; i++) {
    json_t *pe = json_array_get(s.doc, (size_t)i);
    snprintf(recs[i].seq, sizeof(recs[i].seq), "%s",
             json_string_value(json_object_get(pe, "seq")));
    snprintf(recs[i].shard, sizeof(recs[i].shard), "%s",
             json_string_value(json_object_get(pe, "shard")));
    assert_true(recs[i].seq[0] && recs[i].shard[0]);
  }
  assert_string_equal(recs[0].shard, shards[1]);
  seen_free(&s);

  /* TRIM_HORIZON on both shards: every record once, on the shard PutRecords
   * named, with its sequence number. */
  for (int sh = 0; sh < 2; sh++) {
    struct kcld_kinesis_iterator_req r = {.stream = "kcld-roundtrip",
                                          .shard_id = shards[sh],
                                          .type = KCLD_KINESIS_TRIM_HORIZON};
    iterator(&e, &r, &s);
    assert_int_equal(s.err, 0);
    total += read_shard(&e, s.text, recs, N, shards[sh], NULL, 0);
    seen_free(&s);
  }
  assert_int_equal(total, N);
  for (int i = 0; i < N; i++)
    assert_int_equal(recs[i].seen, 1);

  /* AT_ / AFTER_SEQUENCE_NUMBER of record 0, LATEST, AT_TIMESTAMP. */
  {
    struct kcld_kinesis_iterator_req r = {
      .stream = "kcld-roundtrip", .shard_id = shards[1],
      .type = KCLD_KINESIS_AT_SEQUENCE_NUMBER, .sequence_number = recs[0].seq};
    char first[128];
    size_t at, after, latest, stamp, horizon = 0;
    for (int i = 0; i < N; i++)
      horizon += strcmp(recs[i].shard, shards[1]) == 0;

    iterator(&e, &r, &s);
    assert_int_equal(s.err, 0);
    at = read_shard(&e, s.text, recs, N, shards[1], first, sizeof(first));
    assert_string_equal(first, recs[0].seq);
    seen_free(&s);

    r.type = KCLD_KINESIS_AFTER_SEQUENCE_NUMBER;
    iterator(&e, &r, &s);
    assert_int_equal(s.err, 0);
    after = read_shard(&e, s.text, recs, N, shards[1], first, sizeof(first));
    assert_int_equal(after, at - 1);
    assert_string_not_equal(first, recs[0].seq);
    seen_free(&s);

    r.type = KCLD_KINESIS_LATEST;
    r.sequence_number = NULL;
    iterator(&e, &r, &s);
    assert_int_equal(s.err, 0);
    latest = read_shard(&e, s.text, recs, N, shards[1], NULL, 0);
    assert_int_equal(latest, 0);
    seen_free(&s);

    r.type = KCLD_KINESIS_AT_TIMESTAMP;
    r.timestamp_ms = ((int64_t)time(NULL) - 600) * 1000;
    iterator(&e, &r, &s);
    assert_int_equal(s.err, 0);
    stamp = read_shard(&e, s.text, recs, N, shards[1], NULL, 0);
    assert_int_equal(stamp, horizon);
    seen_free(&s);
  }
  env_down(&e);
}

/* PutRecords limits are checked before anything is sent. */
static void test_put_limits(void **state)
{
  static unsigned char big[KCLD_KINESIS_PUT_MAX_RECORD];
  struct env e;
  struct seen s = {0};
  struct kcld_kinesis_record r = {.data = "x", .len = 1, .partition_key = "k"};
  struct kcld_kinesis_record *many;
  char longkey[300];
  (void)state;
  env_up(&e, "kinesis", 0);

  assert_int_equal(kcld_kinesis_put_records(e.k, "s", &r, 0, on_put, &s),
                   KCLD_EINVAL);
  many = calloc(501, sizeof(*many));
  assert_non_null(many);
  for (int i = 0; i < 501; i++)
    many[i] = r;
  assert_int_equal(kcld_kinesis_put_records(e.k, "s", many, 501, on_put, &s),
                   KCLD_EINVAL);
  free(many);
  memset(longkey, 'k', 257);
  longkey[257] = '\0';
  r.partition_key = longkey;
  assert_int_equal(kcld_kinesis_put_records(e.k, "s", &r, 1, on_put, &s),
                   KCLD_EINVAL);
  r.partition_key = "";
  assert_int_equal(kcld_kinesis_put_records(e.k, "s", &r, 1, on_put, &s),
                   KCLD_EINVAL);
  r.partition_key = "k";
  r.data = big;
  r.len = sizeof(big); /* 1 MiB of data plus the key: not beside another */
  {
    struct kcld_kinesis_record two[2] = {
      r, {.data = "x", .len = 1, .partition_key = "k"}};
    assert_int_equal(kcld_kinesis_put_records(e.k, "s", two, 2, on_put, &s),
                     KCLD_EINVAL);
  }
  /* Alone, up to 10 MiB of data plus key; not one byte more. */
  r.len = KCLD_KINESIS_MAX_RECORD;
  r.data = calloc(1, r.len);
  assert_non_null(r.data);
  assert_int_equal(kcld_kinesis_put_records(e.k, "s", &r, 1, on_put, &s),
                   KCLD_EINVAL);
  free((void *)r.data);
  assert_int_equal(s.done, 0);
  env_down(&e);
}

/* Bad and expired iterators come back as errors a consumer can act on. */
static void test_iterator_errors(void **state)
{
  struct env e;
  struct seen s = {0};
  struct kcld_kinesis_iterator_req r = {.stream = "kcld-expire",
                                        .shard_id = "shardId-000000000000",
                                        .type = KCLD_KINESIS_TRIM_HORIZON};
  struct kcld_kinesis_get_records_req g = {.shard_id = "shardId-000000000000"};
  json_t *aged;
  (void)state;
  env_up(&e, "kinesis_paged", 0);
  create_active(&e, "kcld-expire", 1);

  iterator(&e, &r, &s);
  assert_int_equal(s.err, 0);
  aged = ctrl(&e, "/__paged/age_iterator",
              json_pack("{sssi}", "iterator", s.text, "ms", 301000));
  seen_free(&s);

  /* Five minutes old: ExpiredIteratorException, not retried. */
  g.shard_iterator = json_string_value(json_object_get(aged, "iterator"));
  assert_int_equal(kcld_kinesis_get_records(e.k, &g, on_records, &s), 0);
  wait_for(&e, &s);
  assert_int_equal(s.err, KCLD_EAWS);
  assert_int_equal(s.fault, KCLD_KINESIS_EXPIRED_ITERATOR);
  assert_string_equal(s.type, "ExpiredIteratorException");
  assert_non_null(strstr(s.message, "GetRecords shard shardId-000000000000: "
                                    "ExpiredIteratorException (HTTP 400, 1 "
                                    "attempt)"));
  seen_free(&s);
  json_decref(aged);

  /* Not an iterator at all. */
  g.shard_iterator = "AAAAAAAAAAFnotaniteratoratall";
  assert_int_equal(kcld_kinesis_get_records(e.k, &g, on_records, &s), 0);
  wait_for(&e, &s);
  assert_int_equal(s.err, KCLD_EAWS);
  assert_int_equal(s.fault, KCLD_KINESIS_INVALID);
  assert_string_equal(s.type, "InvalidArgumentException");
  seen_free(&s);

  /* A shard that does not exist. */
  r.shard_id = "shardId-000000000009";
  iterator(&e, &r, &s);
  assert_int_equal(s.err, KCLD_ENOTFOUND);
  assert_int_equal(s.fault, KCLD_KINESIS_NOT_FOUND);
  assert_non_null(strstr(s.message, "shardId-000000000009"));
  seen_free(&s);

  /* Arguments the wrapper refuses. */
  r.shard_id = "shardId-000000000000";
  r.type = KCLD_KINESIS_AFTER_SEQUENCE_NUMBER;
  assert_int_equal(kcld_kinesis_get_shard_iterator(e.k, &r, on_iterator, &s),
                   KCLD_EINVAL);
  g.shard_iterator = NULL;
  assert_int_equal(kcld_kinesis_get_records(e.k, &g, on_records, &s),
                   KCLD_EINVAL);
  env_down(&e);
}

static json_t *find_shard(json_t *shards, const char *id)
{
  for (size_t i = 0; i < json_array_size(shards); i++)
    if (strcmp(shard_field(shards, i, "ShardId"), id) == 0)
      return json_array_get(shards, i);
  return NULL;
}

static const char *ending_seq(json_t *shard)
{
  return json_string_value(json_object_get(
    json_object_get(shard, "SequenceNumberRange"), "EndingSequenceNumber"));
}

/* SplitShard and MergeShards: ListShards shows the closed parents and the
 * children that name them. */
static void test_split_merge(void **state)
{
  struct env e;
  struct seen s = {0};
  json_t *sh, *c;
  const char *mid = "85070591730234615865843651857942052864"; /* 2^126 */
  (void)state;
  env_up(&e, "kinesis", 0);
  create_active(&e, "kcld-reshard", 2);

  assert_int_equal(kcld_kinesis_split_shard(e.k, "kcld-reshard",
                                            "shardId-000000000000", mid,
                                            on_done, &s),
                   0);
  wait_for(&e, &s);
  assert_int_equal(s.err, 0);
  seen_free(&s);
  assert_int_equal(kcld_kinesis_wait_active(e.k, "kcld-reshard", 10000,
                                            on_summary, &s),
                   0);
  wait_for(&e, &s);
  assert_int_equal(s.err, 0);
  assert_int_equal(s.number, 3);
  seen_free(&s);

  list(&e, "kcld-reshard", NULL, &s);
  assert_int_equal(s.err, 0);
  assert_int_equal(s.count, 4);
  sh = find_shard(s.doc, "shardId-000000000000");
  assert_non_null(sh);
  assert_non_null(ending_seq(sh)); /* closed */
  c = find_shard(s.doc, "shardId-000000000002");
  assert_non_null(c);
  assert_string_equal(
    json_string_value(json_object_get(c, "ParentShardId")),
    "shardId-000000000000");
  assert_string_equal(hash_field(s.doc, 2, "EndingHashKey"),
                      "85070591730234615865843651857942052863");
  c = find_shard(s.doc, "shardId-000000000003");
  assert_non_null(c);
  assert_string_equal(
    json_string_value(json_object_get(c, "ParentShardId")),
    "shardId-000000000000");
  assert_string_equal(hash_field(s.doc, 3, "StartingHashKey"), mid);
  assert_null(ending_seq(c));
  seen_free(&s);

  /* Merge the upper child with its neighbour, the old shard 1. */
  assert_int_equal(kcld_kinesis_merge_shards(e.k, "kcld-reshard",
                                             "shardId-000000000003",
                                             "shardId-000000000001", on_done,
                                             &s),
                   0);
  wait_for(&e, &s);
  assert_int_equal(s.err, 0);
  seen_free(&s);
  assert_int_equal(kcld_kinesis_wait_active(e.k, "kcld-reshard", 10000,
                                            on_summary, &s),
                   0);
  wait_for(&e, &s);
  assert_int_equal(s.number, 2);
  seen_free(&s);

  list(&e, "kcld-reshard", NULL, &s);
  assert_int_equal(s.err, 0);
  assert_int_equal(s.count, 5);
  c = find_shard(s.doc, "shardId-000000000004");
  assert_non_null(c);
  assert_string_equal(json_string_value(json_object_get(c, "ParentShardId")),
                      "shardId-000000000003");
  assert_string_equal(
    json_string_value(json_object_get(c, "AdjacentParentShardId")),
    "shardId-000000000001");
  assert_non_null(ending_seq(find_shard(s.doc, "shardId-000000000001")));
  assert_non_null(ending_seq(find_shard(s.doc, "shardId-000000000003")));
  assert_null(ending_seq(c));
  seen_free(&s);

  /* A split point that is not a number is refused before sending. */
  assert_int_equal(kcld_kinesis_split_shard(e.k, "kcld-reshard",
                                            "shardId-000000000004", "12ab",
                                            on_done, &s),
                   KCLD_EINVAL);
  env_down(&e);
}

/* Closing the client with calls in flight and a backoff pending: every
 * callback runs once, at once, with KCLD_ECANCELED; none afterwards. */
static void test_close_cancels(void **state)
{
  struct env e;
  struct seen a = {0}, b = {0};
  int never = 0;
  struct kcld_kinesis_list_opts o = {.backoff_base_ms = 5000,
                                     .backoff_max_ms = 5000};
  (void)state;
  env_up(&e, "kinesis_paged", 1);
  create_active(&e, "kcld-close", 1);
  json_decref(ctrl(&e, "/__paged/throttle",
                   json_pack("{sssi}", "target", "ListShards", "times", 1)));
  assert_int_equal(kcld_kinesis_list_shards(e.k, "kcld-close", &o, on_list,
                                            &a),
                   0);
  /* Let the first answer (throttled) arrive: the 2.5-5 s backoff runs. */
  kcld_test_run_until(&e.c.loop, &never, 500);
  assert_int_equal(a.done, 0);
  assert_int_equal(kcld_kinesis_describe_stream_summary(e.k, "kcld-close",
                                                        on_summary, &b),
                   0);
  kcld_kinesis_close(e.k);
  assert_int_equal(a.done, 1);
  assert_int_equal(a.err, KCLD_ECANCELED);
  assert_int_equal(a.fault, KCLD_KINESIS_CANCELED);
  assert_int_equal(b.done, 1);
  assert_int_equal(b.err, KCLD_ECANCELED);
  e.k = NULL;
  /* The call still in flight lands without a callback. */
  kcld_test_run_until(&e.c.loop, &never, 500);
  assert_int_equal(a.done, 1);
  assert_int_equal(b.done, 1);
  env_down(&e);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_create_describe_list),
    cmocka_unit_test(test_list_pages),
    cmocka_unit_test(test_list_throttled),
    cmocka_unit_test(test_put_get_roundtrip),
    cmocka_unit_test(test_put_limits),
    cmocka_unit_test(test_iterator_errors),
    cmocka_unit_test(test_split_merge),
    cmocka_unit_test(test_close_cancels),
  };
  if (kcld_emu_start(&s_emu, "kinesis kinesis_paged") != 0) {
    fprintf(stderr, "emulators did not start\n");
    return 1;
  }
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  kcld_emu_stop(&s_emu);
  return rc;
}
