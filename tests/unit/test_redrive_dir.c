/* test_redrive_dir.c — the dead-letter directory written by the real
 * directory store (process/dlq_dir.h) and replayed by `kcld redrive --dir`
 * (cmd/redrive_dir.h) into a fake handler, no emulator:
 *
 *   - every record comes back with its data, key, sequence and sub-sequence
 *     number, in order, batch_size at a time; the file moves to done/;
 *   - a handler that keeps failing stops the redrive: the lines not
 *     replayed stay in the claimed file, and the next run replays exactly
 *     those; a line without records is left in its file;
 *   - a line appended while a redrive has claimed the file goes to a new
 *     file, not into the claimed one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cmocka.h>
#include <jansson.h>

#include "base/base64.h"
#include "cmd/redrive_dir.h"
#include "consume/getrecords.h"
#include "err.h"
#include "harness.h"
#include "process/dlq.h"
#include "process/dlq_dir.h"

#define SHARD "shardId-000000000003"
#define MAXREC 256

struct fh {
  struct kcld_handler base;
  uv_loop_t *loop;
  unsigned ok_first;            /* calls that succeed before ... */
  unsigned fail_calls;          /* ... this many fail */
  unsigned calls;
  size_t got;                   /* records handled, in order */
  char seqs[MAXREC][40];
  char data[MAXREC][32];
  uint64_t subs[MAXREC];
  size_t max_batch;
  int bad_shard;
};

struct answer {
  uv_timer_t t;
  kcld_handler_done_cb done;
  void *arg;
  int fail;
};

static void answer_closed(uv_handle_t *h)
{
  free(h->data);
}

static void fire(uv_timer_t *t)
{
  struct answer *a = t->data;
  struct kcld_handler_result res = {.status = KCLD_HANDLER_OK};
  if (a->fail) {
    res.status = KCLD_HANDLER_FAILED;
    res.error_type = "StillBroken";
  }
  a->done(&res, a->arg);
  uv_close((uv_handle_t *)&a->t, answer_closed);
}

static int fh_process(struct kcld_handler *hd,
                      const struct kcld_handler_batch *b,
                      kcld_handler_done_cb done, void *arg)
{
  struct fh *h = (struct fh *)hd;
  struct answer *a = calloc(1, sizeof(*a));
  assert_non_null(a);
  h->calls++;
  if (b->count > h->max_batch)
    h->max_batch = b->count;
  if (strcmp(b->shard_id, SHARD) != 0)
    h->bad_shard++;
  a->done = done;
  a->arg = arg;
  if (h->calls > h->ok_first && h->fail_calls) {
    h->fail_calls--;
    a->fail = 1;
  } else {
    for (size_t i = 0; i < b->count && h->got < MAXREC; i++) {
      const struct kcld_record *r = b->records[i];
      snprintf(h->seqs[h->got], sizeof(h->seqs[0]), "%s",
               r->sequence_number);
      snprintf(h->data[h->got], sizeof(h->data[0]), "%.*s",
               (int)r->data_len, (const char *)r->data);
      h->subs[h->got] = r->sub_sequence_number;
      h->got++;
    }
  }
  uv_timer_init(h->loop, &a->t);
  a->t.data = a;
  uv_timer_start(&a->t, fire, 1, 0);
  return 0;
}

static void fh_close(struct kcld_handler *h)
{
  (void)h;
}

static const struct kcld_handler_ops s_fh_ops = {
  .name = "fake", .process = fh_process, .close = fh_close,
};

/* ======== Writing dead letters with the real store ======== */

static struct kcld_record_batch *make_batch(size_t from, size_t count)
{
  json_t *recs = json_array(), *doc;
  struct kcld_record_batch *b = NULL;
  char errbuf[256];

  for (size_t i = from; i < from + count; i++) {
    char data[32], b64[64], seq[40], key[32];
    int n = snprintf(data, sizeof(data), "rec-%zu", i);
    kcld_base64_encode(b64, data, (size_t)n);
    snprintf(seq, sizeof(seq), "49%030zu", i + 1);
    snprintf(key, sizeof(key), "key-%zu", i % 3);
    json_array_append_new(recs, json_pack("{s:s,s:s,s:s,s:f}",
                                          "SequenceNumber", seq,
                                          "PartitionKey", key, "Data", b64,
                                          "ApproximateArrivalTimestamp",
                                          1795344059.5));
  }
  doc = json_pack("{s:o,s:s}", "Records", recs, "NextShardIterator", "i");
  char *body = json_dumps(doc, JSON_COMPACT);
  json_decref(doc);
  assert_int_equal(kcld_getrecords_parse(body, strlen(body), SHARD, &b,
                                         errbuf, sizeof(errbuf)), 0);
  free(body);
  return b;
}

struct env {
  uv_loop_t loop;
  char dir[64];
  struct kcld_dlq *dlq;
  struct fh h;
  int kept;
};

static void on_kept(size_t messages, void *arg)
{
  struct env *e = arg;
  e->kept += (int)messages;
}

/* Dead-letters records [from, from+count) as one line. */
static void dead_letter(struct env *e, size_t from, size_t count,
                        int include_records)
{
  struct kcld_record_batch *b = make_batch(from, count);
  const struct kcld_record *p[MAXREC];
  struct kcld_dlq_failure f = {0};
  int want = e->kept + 1;
  struct kcld_dlq_dir_opts d = {0};
  struct kcld_dlq_opts o = {0};
  struct kcld_dlq *q = e->dlq;
  char err[256];

  if (!include_records) {
    d.loop = &e->loop;
    d.dir = e->dir;
    d.application = "rd";
    assert_int_equal(kcld_dlq_dir_new(&d, &o.store, err, sizeof(err)), 0);
    o.loop = &e->loop;
    o.function_arn = "arn:aws:lambda:us-east-1::function:kcld-rd";
    o.backoff_base_ms = 5;
    o.backoff_max_ms = 20;
    assert_int_equal(kcld_dlq_new(&o, &q), 0);
  }
  for (size_t i = 0; i < count; i++)
    p[i] = &b->records[i];
  f.shard_id = SHARD;
  f.records = p;
  f.count = count;
  f.error_type = "PoisonError";
  assert_int_equal(kcld_dlq_send(q, &f, on_kept, e, NULL), 0);
  assert_true(kcld_test_run_until(&e->loop, (const int *)&e->kept, 5000));
  while (e->kept < want)
    uv_run(&e->loop, UV_RUN_ONCE);
  kcld_record_batch_release(b);
  if (q != e->dlq)
    kcld_dlq_close(q);
}

static void env_up(struct env *e)
{
  struct kcld_dlq_dir_opts d = {0};
  struct kcld_dlq_opts o = {0};
  char err[256];

  memset(e, 0, sizeof(*e));
  assert_int_equal(uv_loop_init(&e->loop), 0);
  snprintf(e->dir, sizeof(e->dir), "/tmp/kcld-rdir-XXXXXX");
  assert_non_null(mkdtemp(e->dir));
  d.loop = &e->loop;
  d.dir = e->dir;
  d.application = "rd";
  assert_int_equal(kcld_dlq_dir_new(&d, &o.store, err, sizeof(err)), 0);
  o.loop = &e->loop;
  o.function_arn = "arn:aws:lambda:us-east-1::function:kcld-rd";
  o.include_records = 1;
  o.backoff_base_ms = 5;
  o.backoff_max_ms = 20;
  assert_int_equal(kcld_dlq_new(&o, &e->dlq), 0);
  e->h.base.ops = &s_fh_ops;
  e->h.loop = &e->loop;
}

static void env_down(struct env *e)
{
  char cmd[128];
  kcld_dlq_close(e->dlq);
  kcld_test_loop_finish(&e->loop);
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", e->dir);
  assert_int_equal(system(cmd), 0);
}

struct outcome {
  int done;
  struct kcld_redrive_totals r;
};

static void on_redriven(const struct kcld_redrive_totals *r, void *arg)
{
  struct outcome *o = arg;
  o->r = *r;
  o->done = 1;
}

static struct kcld_redrive_totals redrive(struct env *e)
{
  struct kcld_redrive_dir_opts o = {0};
  struct outcome out = {0};
  o.loop = &e->loop;
  o.dir = e->dir;
  o.handler = &e->h.base;
  o.batch_size = 4;
  o.how.attempts = 2;
  o.how.backoff_base_ms = 5;
  o.how.backoff_max_ms = 10;
  assert_int_equal(kcld_redrive_dir_run(&o, on_redriven, &out), 0);
  assert_int_equal(out.done, 0); /* never before it returns */
  assert_true(kcld_test_run_until(&e->loop, &out.done, 10000));
  return out.r;
}

static size_t count_files(const char *dir)
{
  char **names;
  size_t n;
  assert_int_equal(kcld_dlq_dir_list(dir, &names, &n), 0);
  for (size_t i = 0; i < n; i++)
    free(names[i]);
  free(names);
  return n;
}

static void test_replay_into_handler(void **state)
{
  struct env e;
  struct kcld_redrive_totals r;
  char done[128];
  struct stat st;
  (void)state;

  env_up(&e);
  dead_letter(&e, 0, 6, 1);
  dead_letter(&e, 6, 3, 1);
  assert_int_equal(count_files(e.dir), 1); /* one file per shard and day */
  r = redrive(&e);
  assert_int_equal(r.err, 0);
  assert_int_equal(r.lines, 2);
  assert_int_equal(r.records, 9);
  assert_int_equal(r.files, 1);
  assert_int_equal(r.kept, 0);
  assert_int_equal(e.h.got, 9);
  assert_true(e.h.max_batch <= 4);
  assert_int_equal(e.h.bad_shard, 0);
  for (size_t i = 0; i < 9; i++) {
    char seq[40], data[32];
    snprintf(seq, sizeof(seq), "49%030zu", i + 1);
    snprintf(data, sizeof(data), "rec-%zu", i);
    assert_string_equal(e.h.seqs[i], seq);
    assert_string_equal(e.h.data[i], data);
    assert_int_equal(e.h.subs[i], 0);
  }
  assert_int_equal(count_files(e.dir), 0);
  snprintf(done, sizeof(done), "%s/done", e.dir);
  assert_int_equal(stat(done, &st), 0);
  assert_int_equal(count_files(done), 1);
  /* Nothing left: a second run replays nothing. */
  r = redrive(&e);
  assert_int_equal(r.err, 0);
  assert_int_equal(r.lines, 0);
  env_down(&e);
}

static void test_failure_keeps_the_rest(void **state)
{
  struct env e;
  struct kcld_redrive_totals r;
  (void)state;

  env_up(&e);
  dead_letter(&e, 0, 2, 1);
  dead_letter(&e, 2, 2, 0);   /* no records: cannot be replayed */
  dead_letter(&e, 4, 2, 1);
  dead_letter(&e, 6, 2, 1);
  /* Line 1 goes; line 3 fails twice (attempts 2): stop. */
  e.h.ok_first = 1;
  e.h.fail_calls = 2;
  r = redrive(&e);
  assert_int_equal(r.err, KCLD_EIO);
  assert_int_equal(r.lines, 1);
  assert_int_equal(r.kept, 3); /* the record-less line and the two after */
  assert_int_equal(e.h.got, 2);
  assert_int_equal(count_files(e.dir), 1); /* the claimed file */
  /* The next run replays what was left, and keeps the record-less line. */
  r = redrive(&e);
  assert_int_equal(r.err, 0);
  assert_int_equal(r.lines, 2);
  assert_int_equal(r.records, 4);
  assert_int_equal(r.kept, 1);
  assert_int_equal(r.files, 0);
  assert_int_equal(e.h.got, 6);
  assert_string_equal(e.h.data[2], "rec-4");
  assert_string_equal(e.h.data[5], "rec-7");
  env_down(&e);
}

static void test_append_while_claimed(void **state)
{
  struct env e;
  char **names, *path;
  size_t n;
  (void)state;

  env_up(&e);
  dead_letter(&e, 0, 2, 1);
  assert_int_equal(kcld_dlq_dir_list(e.dir, &names, &n), 0);
  assert_int_equal(n, 1);
  assert_int_equal(kcld_dlq_dir_claim(e.dir, names[0], &path), 0);
  dead_letter(&e, 2, 2, 1); /* kcld writes on meanwhile */
  {
    char *claimed = kcld_test_slurp(path, NULL);
    size_t lines = 0;
    for (char *p = claimed; p && *p; p++)
      lines += *p == '\n';
    assert_int_equal(lines, 1); /* nothing appended to the claimed file */
    free(claimed);
  }
  free(names[0]);
  free(names);
  assert_int_equal(kcld_dlq_dir_list(e.dir, &names, &n), 0);
  assert_int_equal(n, 2); /* NAME.jsonl.redriving first, NAME.jsonl (new) */
  assert_non_null(strstr(names[0], ".jsonl.redriving"));
  assert_null(strstr(names[1], ".redriving"));
  for (size_t i = 0; i < n; i++)
    free(names[i]);
  free(names);
  free(path);
  {
    struct kcld_redrive_totals r = redrive(&e);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.records, 4);
    assert_int_equal(r.files, 2);
  }
  env_down(&e);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_replay_into_handler),
    cmocka_unit_test(test_failure_keeps_the_rest),
    cmocka_unit_test(test_append_while_claimed),
  };
  json_object_seed(1);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
