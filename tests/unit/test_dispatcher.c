/* test_dispatcher.c — the dispatcher alone, no emulator: a scripted fake
 * handler, fake shard consumers and the dead-letter destination with its
 * real directory store (or a fake store that fails on purpose).
 *
 * The consumer side is faked at link time: this file defines
 * kcld_shard_consumer_progress and kcld_shard_consumer_done, so the linker
 * never pulls consume/shard_consumer.o in.  Every call into them checks
 * that it does not come from inside deliver(), cancel(), a handler's
 * process() or its answer: the record path is one way.
 *
 * Covered: batches of batch.size and the rest, batch.window filling across
 * deliveries, lanes keeping per-key order, the retry budget, bisection to
 * the dead-letter directory (the line read back), record vs infrastructure
 * failures (throttled, refused, partial), infrastructure waits bounded by
 * max_record_age, a destination that fails before it keeps, a handler that
 * answers from inside process(), a timeout with its late answer, cancel
 * with a call in flight, on_failure.block and discard, new settings from
 * a reload (kcld_dispatcher_configure), and filter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "base/base64.h"
#include "base/seq.h"
#include "consumer_fakes.h"
#include "consume/getrecords.h"
#include "err.h"
#include "harness.h"
#include "process/dispatcher.h"
#include "process/dlq.h"
#include "process/dlq_dir.h"

#define MAXREC 512
#define NSHARDS 2
#define WAIT_MS 10000

struct fx;

/* ======== Records ======== */

static void seq_of(size_t i, char *buf, size_t n)
{
  snprintf(buf, n, "49%030zu", i + 1);
}

/* Records [from, from+count) with keys key-(i % keys), arrived age_ms ago;
 * `last`: the shard's end (no NextShardIterator). */
static struct kcld_record_batch *make_batch(const char *shard, size_t from,
                                            size_t count, unsigned keys,
                                            int64_t age_ms, int last)
{
  json_t *recs = json_array(), *doc;
  struct kcld_record_batch *b = NULL;
  struct timespec ts;
  char errbuf[256];
  double now;

  clock_gettime(CLOCK_REALTIME, &ts);
  now = (double)ts.tv_sec + ts.tv_nsec / 1e9 - (double)age_ms / 1000.0;
  for (size_t i = from; i < from + count; i++) {
    char data[32], b64[64], seq[40], key[32];
    int n = snprintf(data, sizeof(data), "rec-%zu", i);
    kcld_base64_encode(b64, data, (size_t)n);
    seq_of(i, seq, sizeof(seq));
    snprintf(key, sizeof(key), "key-%zu", i % keys);
    json_array_append_new(recs, json_pack("{s:s,s:s,s:s,s:f}",
                                          "SequenceNumber", seq,
                                          "PartitionKey", key, "Data", b64,
                                          "ApproximateArrivalTimestamp",
                                          now));
  }
  doc = json_pack("{s:o,s:i}", "Records", recs, "MillisBehindLatest", 0);
  if (!last)
    json_object_set_new(doc, "NextShardIterator", json_string("iter"));
  char *body = json_dumps(doc, JSON_COMPACT);
  json_decref(doc);
  assert_int_equal(kcld_getrecords_parse(body, strlen(body), shard, &b,
                                         errbuf, sizeof(errbuf)), 0);
  free(body);
  return b;
}

static size_t rec_index(const struct kcld_record *r)
{
  char buf[32];
  size_t n = r->data_len < sizeof(buf) - 1 ? r->data_len : sizeof(buf) - 1;
  memcpy(buf, r->data, n);
  buf[n] = '\0';
  return (size_t)strtoul(buf + 4, NULL, 10);
}

/* ======== The fake handler ======== */

struct fh {
  struct kcld_handler base;
  struct fx *x;
  uv_loop_t *loop;
  int poison[MAXREC];        /* 1: a record failure while it is seen */
  int partial;               /* answer PARTIAL at the first poison */
  unsigned infra_left;       /* calls answered FAILED, class INFRA */
  unsigned infra_partial;    /* ... as PARTIAL from this index (0 = no) */
  const char *infra_type;
  unsigned refuse_left;      /* process() returns KCLD_EIO */
  unsigned hang_first_ms;    /* the first call answers this late */
  int sync;                  /* answer from inside process() */
  unsigned delay_ms;
  unsigned calls, in_flight, max_in_flight;
  unsigned seen[MAXREC], handled[MAXREC];
  size_t sizes[256];
  uint64_t first_call_ms;
  long last_key[16];
  int order_violations;
};

struct fcall {
  uv_timer_t t;
  struct fh *h;
  struct kcld_handler_result res;
  kcld_handler_done_cb done;
  void *arg;
  size_t n;
  size_t idx[MAXREC];
};

/* ======== The fake consumers ======== */

struct fc {
  struct fx *x;
  char shard[32];
  struct kcld_shard_delivery d;
  int delivering;
  struct kcld_record_batch *queue[16];
  size_t nq, next;
  char progress[KCLD_SEQ_MAX + 1];
  size_t progress_calls, dones;
  int regress, cancelled, after_cancel;
};

struct fx {
  uv_loop_t loop;
  struct kcld_dispatcher *disp;
  struct kcld_dispatcher_opts o;
  struct kcld_shard_sink sink;
  struct kcld_dlq *dlq;
  struct fh h;
  struct fc c[NSHARDS];
  char dir[64];
  int in_deliver, in_cancel, in_process, in_answer;
  int reentered;             /* consumer calls from inside those */
};

static void check_not_nested(struct fx *x)
{
  if (x->in_deliver || x->in_cancel || x->in_process || x->in_answer)
    x->reentered++;
}

static void fc_deliver_next(struct fc *f);

/* The link-time fakes of consume/shard_consumer.c. */
void kcld_shard_consumer_progress(struct kcld_shard_consumer *c,
                                  const char *sequence, uint64_t sub)
{
  struct fc *f = (struct fc *)c;
  (void)sub;
  check_not_nested(f->x);
  if (f->cancelled)
    f->after_cancel++;
  if (f->progress[0] && kcld_seq_compare(sequence, f->progress) < 0)
    f->regress++;
  snprintf(f->progress, sizeof(f->progress), "%s", sequence);
  f->progress_calls++;
}

void kcld_shard_consumer_done(struct kcld_shard_delivery *d)
{
  struct fc *f = (struct fc *)d->consumer;
  check_not_nested(f->x);
  assert_true(f->delivering);
  f->dones++;
  f->delivering = 0;
  kcld_record_batch_release(d->batch);
  /* The next delivery from inside done: harder on the dispatcher than the
   * real consumer, which delivers from its own loop callback. */
  if (f->next < f->nq && !f->cancelled)
    fc_deliver_next(f);
}

static void fc_deliver_next(struct fc *f)
{
  struct fx *x = f->x;
  struct kcld_record_batch *b = f->queue[f->next++];
  memset(&f->d, 0, sizeof(f->d));
  f->d.consumer = (struct kcld_shard_consumer *)f;
  f->d.shard_id = f->shard;
  f->d.batch = b;
  f->d.records = b->records;
  f->d.count = b->count;
  f->d.millis_behind_latest = 0;
  f->delivering = 1;
  x->in_deliver++;
  assert_int_equal(x->sink.deliver(x->sink.impl, &f->d), 0);
  x->in_deliver--;
}

static void fc_cancel(struct fc *f)
{
  struct fx *x = f->x;
  f->cancelled = 1;
  x->in_cancel++;
  x->sink.cancel(x->sink.impl, (struct kcld_shard_consumer *)f);
  x->in_cancel--;
}

/* ======== The fake handler's calls ======== */

static void fcall_closed(uv_handle_t *t)
{
  free(t->data);
}

static void fcall_answer(struct fcall *c)
{
  struct fh *h = c->h;
  h->in_flight--;
  if (c->res.status == KCLD_HANDLER_OK ||
      c->res.status == KCLD_HANDLER_PARTIAL) {
    size_t upto = c->res.status == KCLD_HANDLER_OK ? c->n
                                                   : c->res.first_failed;
    for (size_t i = 0; i < upto; i++)
      h->handled[c->idx[i]]++;
  }
  h->x->in_answer++;
  c->done(&c->res, c->arg);
  h->x->in_answer--;
}

static void fcall_fire(uv_timer_t *t)
{
  struct fcall *c = t->data;
  fcall_answer(c);
  uv_close((uv_handle_t *)&c->t, fcall_closed);
}

/* What the fake handler answers for this batch. */
static void decide(struct fh *h, struct fcall *c)
{
  int bad = -1;
  for (size_t i = 0; i < c->n && bad < 0; i++)
    if (h->poison[c->idx[i]])
      bad = (int)i;
  if (h->infra_left) {
    h->infra_left--;
    c->res.status = KCLD_HANDLER_FAILED;
    if (h->infra_partial && h->infra_partial < c->n) {
      c->res.status = KCLD_HANDLER_PARTIAL;
      c->res.first_failed = h->infra_partial;
    }
    c->res.failure_class = KCLD_HANDLER_INFRA;
    c->res.error_type = h->infra_type ? h->infra_type : "ThrottlingException";
    c->res.error_message = "injected infrastructure failure";
  } else if (bad >= 0) {
    c->res.status = h->partial ? KCLD_HANDLER_PARTIAL : KCLD_HANDLER_FAILED;
    c->res.first_failed = (size_t)bad;
    c->res.failure_class = KCLD_HANDLER_RECORD;
    c->res.error_type = "PoisonError";
    c->res.error_message = "record rejected by the test handler";
  }
}

static int fh_process(struct kcld_handler *hd,
                      const struct kcld_handler_batch *b,
                      kcld_handler_done_cb done, void *arg)
{
  struct fh *h = (struct fh *)hd;
  struct fcall *c;
  unsigned delay = h->delay_ms;
  int rc = 0;

  h->x->in_process++;
  if (h->calls < 256)
    h->sizes[h->calls] = b->count;
  if (h->calls++ == 0)
    h->first_call_ms = uv_now(h->loop);
  if (h->refuse_left) {
    h->refuse_left--;
    rc = KCLD_EIO;
    goto out;
  }
  c = calloc(1, sizeof(*c));
  assert_non_null(c);
  c->h = h;
  c->done = done;
  c->arg = arg;
  c->n = b->count;
  for (size_t i = 0; i < b->count; i++) {
    c->idx[i] = rec_index(b->records[i]);
    h->seen[c->idx[i]]++;
  }
  decide(h, c);
  if (c->res.status == KCLD_HANDLER_OK)
    for (size_t i = 0; i < c->n; i++) { /* per-key order */
      size_t k = c->idx[i], key = k % 8;
      if ((long)k <= h->last_key[key])
        h->order_violations++;
      h->last_key[key] = (long)k;
    }
  if (h->calls == 1 && h->hang_first_ms)
    delay = h->hang_first_ms;
  h->in_flight++;
  if (h->in_flight > h->max_in_flight)
    h->max_in_flight = h->in_flight;
  if (h->sync && delay == 0) {
    fcall_answer(c);
    free(c);
    goto out;
  }
  uv_timer_init(h->loop, &c->t);
  c->t.data = c;
  uv_timer_start(&c->t, fcall_fire, delay, 0);
out:
  h->x->in_process--;
  return rc;
}

static void fh_close(struct kcld_handler *h)
{
  (void)h;
}

static const struct kcld_handler_ops s_fh_ops = {
  .name = "fake", .process = fh_process, .close = fh_close,
};

/* ======== A store that fails first ======== */

struct fstore {
  struct kcld_dlq_store base;
  uv_loop_t *loop;
  unsigned fail_left;
  unsigned calls, kept;
};

struct fstore_call {
  uv_timer_t t;
  struct fstore *s;
  struct kcld_dlq_msg *const *msgs;
  size_t n;
  kcld_dlq_store_cb cb;
  void *arg;
};

static void fstore_fire(uv_timer_t *t)
{
  struct fstore_call *c = t->data;
  int err = 0;
  if (c->s->fail_left) {
    c->s->fail_left--;
    err = KCLD_EAWS;
  } else {
    for (size_t i = 0; i < c->n; i++) {
      c->msgs[i]->stored = 1;
      c->s->kept++;
    }
  }
  c->cb(err, err ? "QueueDoesNotExist: injected" : NULL, c->arg);
  uv_close((uv_handle_t *)&c->t, fcall_closed);
}

static int fstore_store(struct kcld_dlq_store *base,
                        struct kcld_dlq_msg *const *msgs, size_t n,
                        kcld_dlq_store_cb cb, void *arg)
{
  struct fstore *s = (struct fstore *)base;
  struct fstore_call *c = calloc(1, sizeof(*c));
  assert_non_null(c);
  s->calls++;
  c->s = s;
  c->msgs = msgs;
  c->n = n;
  c->cb = cb;
  c->arg = arg;
  uv_timer_init(s->loop, &c->t);
  c->t.data = c;
  uv_timer_start(&c->t, fstore_fire, 5, 0);
  return 0;
}

static void fstore_free(struct kcld_dlq_store *s)
{
  (void)s; /* the test owns it */
}

static const struct kcld_dlq_store_ops s_fstore_ops = {
  .name = "fake", .store = fstore_store, .free = fstore_free,
};

/* ======== The fixture ======== */

static struct fx *fx_new(void)
{
  struct fx *x = calloc(1, sizeof(*x));
  assert_non_null(x);
  assert_int_equal(uv_loop_init(&x->loop), 0);
  x->h.base.ops = &s_fh_ops;
  x->h.x = x;
  x->h.loop = &x->loop;
  for (size_t i = 0; i < 16; i++)
    x->h.last_key[i] = -1;
  for (size_t i = 0; i < NSHARDS; i++) {
    x->c[i].x = x;
    snprintf(x->c[i].shard, sizeof(x->c[i].shard), "shardId-%012zu", i);
  }
  x->o.loop = &x->loop;
  x->o.handler = &x->h.base;
  x->o.batch_size = 100;
  x->o.parallelization = 1;
  x->o.handler_timeout_ms = 5000;
  x->o.max_retry_attempts = 0;
  x->o.bisect_on_error = 1;
  x->o.max_record_age_ms = -1;
  x->o.backoff_base_ms = 2;
  x->o.backoff_max_ms = 20;
  x->o.discard = 1;
  return x;
}

static struct kcld_dlq *dlq_on(struct fx *x, struct kcld_dlq_store *store)
{
  struct kcld_dlq_opts qo = {0};
  struct kcld_dlq *q;
  qo.loop = &x->loop;
  qo.store = store;
  qo.function_arn = "arn:aws:lambda:us-east-1:000000000000:function:kcld-t";
  qo.stream_arn = "arn:aws:kinesis:us-east-1:000000000000:stream/t";
  qo.include_records = 1;
  qo.backoff_base_ms = 2;
  qo.backoff_max_ms = 10;
  assert_int_equal(kcld_dlq_new(&qo, &q), 0);
  return q;
}

/* A dead-letter directory in a fresh temporary directory. */
static void dir_dlq(struct fx *x)
{
  struct kcld_dlq_dir_opts d = {0};
  struct kcld_dlq_store *st;
  char err[256];
  snprintf(x->dir, sizeof(x->dir), "/tmp/kcld-disp-XXXXXX");
  assert_non_null(mkdtemp(x->dir));
  d.loop = &x->loop;
  d.dir = x->dir;
  d.application = "disp-test";
  assert_int_equal(kcld_dlq_dir_new(&d, &st, err, sizeof(err)), 0);
  x->dlq = dlq_on(x, st);
  x->o.dlq = x->dlq;
}

static void fx_start(struct fx *x)
{
  assert_int_equal(kcld_dispatcher_new(&x->o, &x->disp), 0);
  x->sink = kcld_dispatcher_sink(x->disp);
}

/* Queues batches on consumer k and delivers the first.  Each batch meets
 * the sink's keep test first, as a consumer's parse job does. */
static void feed(struct fx *x, size_t k, struct kcld_record_batch **b,
                 size_t n)
{
  struct fc *f = &x->c[k];
  for (size_t i = 0; i < n; i++) {
    kcld_record_batch_filter(b[i], x->sink.keep, x->sink.keep_arg);
    f->queue[f->nq++] = b[i];
  }
  if (!f->delivering && f->next < f->nq)
    fc_deliver_next(f);
}

static int done_upto(struct fx *x, size_t k, size_t last)
{
  char seq[40];
  struct fc *f = &x->c[k];
  seq_of(last, seq, sizeof(seq));
  return f->next == f->nq && !f->delivering &&
         strcmp(f->progress, seq) == 0;
}

static void run_ms(struct fx *x, unsigned ms)
{
  int flag = 0;
  kcld_test_run_until(&x->loop, &flag, ms);
}

static void wait_done(struct fx *x, size_t k, size_t last)
{
  uint64_t until = uv_now(&x->loop) + WAIT_MS;
  while (!done_upto(x, k, last) && uv_now(&x->loop) < until)
    uv_run(&x->loop, UV_RUN_ONCE);
  assert_true(done_upto(x, k, last));
}

static void fx_free(struct fx *x)
{
  char cmd[128];
  run_ms(x, 30); /* late answers */
  for (size_t i = 0; i < NSHARDS; i++)
    if (x->c[i].delivering && !x->c[i].cancelled)
      fc_cancel(&x->c[i]);
  kcld_dispatcher_close(x->disp);
  kcld_dlq_close(x->dlq);
  kcld_test_loop_finish(&x->loop);
  assert_int_equal(x->reentered, 0);
  for (size_t i = 0; i < NSHARDS; i++) {
    assert_int_equal(x->c[i].regress, 0);
    assert_int_equal(x->c[i].after_cancel, 0);
    for (size_t j = x->c[i].next; j < x->c[i].nq; j++)
      kcld_record_batch_release(x->c[i].queue[j]);
  }
  if (x->dir[0]) {
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", x->dir);
    assert_int_equal(system(cmd), 0);
  }
  free(x);
}

static struct kcld_dispatcher_shard_state state_of(struct fx *x, size_t k)
{
  struct kcld_dispatcher_shard_state st;
  kcld_dispatcher_shard_state(x->disp, x->c[k].shard, &st);
  return st;
}

/* Every line of every dead-letter file of x->dir, as JSON. */
static json_t *dead_letters(struct fx *x)
{
  json_t *all = json_array();
  char **names;
  size_t n;
  assert_int_equal(kcld_dlq_dir_list(x->dir, &names, &n), 0);
  for (size_t i = 0; i < n; i++) {
    char path[256];
    char *text, *line, *save = NULL;
    snprintf(path, sizeof(path), "%s/%s", x->dir, names[i]);
    text = kcld_test_slurp(path, NULL);
    assert_non_null(text);
    for (line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
      json_t *j = json_loads(line, 0, NULL);
      assert_non_null(j);
      json_array_append_new(all, j);
    }
    free(text);
    free(names[i]);
  }
  free(names);
  return all;
}

/* ======== Tests ======== */

static void test_batch_sizes(void **state)
{
  struct fx *x = fx_new();
  struct kcld_record_batch *b[2];
  struct kcld_dispatcher_stats st;
  (void)state;

  x->o.batch_size = 10;
  fx_start(x);
  b[0] = make_batch(x->c[0].shard, 0, 25, 4, 0, 0);
  b[1] = make_batch(x->c[0].shard, 25, 3, 4, 0, 0);
  feed(x, 0, b, 2);
  wait_done(x, 0, 27);
  /* 10, 10, then 5 + 3 together: the rest of the first delivery waits
   * for the next one only while the lane is busy. */
  assert_int_equal(x->h.sizes[0], 10);
  assert_int_equal(x->h.sizes[1], 10);
  assert_int_equal(x->h.sizes[0] + x->h.sizes[1] + x->h.sizes[2] +
                   (x->h.calls > 3 ? x->h.sizes[3] : 0), 28);
  for (size_t i = 0; i < 28; i++)
    assert_int_equal(x->h.handled[i], 1);
  assert_int_equal(x->c[0].dones, 2);
  kcld_dispatcher_stats(x->disp, &st);
  assert_int_equal(st.records_handled, 28);
  assert_int_equal(st.batches_failed, 0);
  fx_free(x);
}

static void test_window_fills_across_deliveries(void **state)
{
  struct fx *x = fx_new();
  struct kcld_record_batch *b[2];
  uint64_t t0;
  (void)state;

  x->o.window_ms = 80;
  fx_start(x);
  b[0] = make_batch(x->c[0].shard, 0, 30, 4, 0, 0);
  b[1] = make_batch(x->c[0].shard, 30, 30, 4, 0, 0);
  t0 = uv_now(&x->loop);
  feed(x, 0, b, 2);
  wait_done(x, 0, 59);
  assert_int_equal(x->h.calls, 1);
  assert_int_equal(x->h.sizes[0], 60);
  assert_true(x->h.first_call_ms >= t0 + 80);
  fx_free(x);
}

static void test_lanes_keep_key_order(void **state)
{
  struct fx *x = fx_new();
  struct kcld_record_batch *b[1];
  (void)state;

  x->o.batch_size = 5;
  x->o.parallelization = 4;
  x->h.delay_ms = 3;
  fx_start(x);
  b[0] = make_batch(x->c[0].shard, 0, 200, 8, 0, 0);
  feed(x, 0, b, 1);
  wait_done(x, 0, 199);
  assert_int_equal(x->h.order_violations, 0);
  assert_true(x->h.max_in_flight > 1 && x->h.max_in_flight <= 4);
  for (size_t i = 0; i < 200; i++)
    assert_int_equal(x->h.handled[i], 1);
  fx_free(x);
}

static void test_retry_budget_then_discard(void **state)
{
  struct fx *x = fx_new();
  struct kcld_record_batch *b[1];
  struct kcld_dispatcher_stats st;
  (void)state;

  x->o.batch_size = 4;
  x->o.bisect_on_error = 0;
  x->o.max_retry_attempts = 2;
  x->h.poison[5] = 1;
  fx_start(x);
  b[0] = make_batch(x->c[0].shard, 0, 8, 8, 0, 0);
  feed(x, 0, b, 1);
  wait_done(x, 0, 7);
  /* Batch 0-3 once, batch 4-7 three times (two retries), then skipped. */
  assert_int_equal(x->h.calls, 4);
  assert_int_equal(x->h.seen[5], 3);
  kcld_dispatcher_stats(x->disp, &st);
  assert_int_equal(st.batches_retried, 2);
  assert_int_equal(st.records_skipped, 4);
  assert_int_equal(st.records_given_up, 4);
  assert_int_equal(x->h.handled[5], 0);
  fx_free(x);
}

static void test_bisect_to_dead_letter_dir(void **state)
{
  struct fx *x = fx_new();
  struct kcld_record_batch *b[1];
  struct kcld_dispatcher_stats st;
  json_t *lines, *l, *recs;
  char seq[40];
  (void)state;

  x->o.batch_size = 16;
  x->o.discard = 0;
  x->h.poison[11] = 1;
  dir_dlq(x);
  fx_start(x);
  b[0] = make_batch(x->c[0].shard, 0, 16, 16, 0, 0);
  feed(x, 0, b, 1);
  wait_done(x, 0, 15);
  /* 1 + ceil(log2 16) = 5 calls hold record 11. */
  assert_int_equal(x->h.seen[11], 5);
  for (size_t i = 0; i < 16; i++)
    assert_int_equal(x->h.handled[i], i == 11 ? 0 : 1);
  kcld_dispatcher_stats(x->disp, &st);
  assert_int_equal(st.dlq_records, 1);
  assert_int_equal(st.records_skipped, 0);
  lines = dead_letters(x);
  assert_int_equal(json_array_size(lines), 1);
  l = json_array_get(lines, 0);
  seq_of(11, seq, sizeof(seq));
  assert_string_equal(json_string_value(json_object_get(json_object_get(
    l, "KinesisBatchInfo"), "startSequenceNumber")), seq);
  assert_string_equal(json_string_value(json_object_get(json_object_get(
    l, "requestContext"), "condition")), "RetryAttemptsExhausted");
  assert_int_equal(json_integer_value(json_object_get(json_object_get(
    l, "requestContext"), "approximateInvokeCount")), 5);
  assert_string_equal(json_string_value(json_object_get(l, "errorType")),
                      "PoisonError");
  recs = json_object_get(l, "records");
  assert_int_equal(json_array_size(recs), 1);
  assert_string_equal(json_string_value(json_object_get(
    json_array_get(recs, 0), "data")), "cmVjLTEx"); /* "rec-11" */
  json_decref(lines);
  fx_free(x);
}

static void test_infra_waits_without_budget(void **state)
{
  struct fx *x = fx_new();
  struct kcld_record_batch *b[1];
  struct kcld_dispatcher_stats st;
  struct kcld_dispatcher_shard_state ss;
  uint64_t until;
  (void)state;

  x->o.batch_size = 10;
  x->o.max_retry_attempts = 0; /* a record failure would give up at once */
  x->o.discard = 0;
  dir_dlq(x);
  x->h.infra_left = 6;
  x->h.infra_type = "ProvisionedThroughputExceededException";
  fx_start(x);
  b[0] = make_batch(x->c[0].shard, 0, 10, 4, 0, 0);
  feed(x, 0, b, 1);
  /* While it fails: no progress, no bisection, state throttled. */
  until = uv_now(&x->loop) + WAIT_MS;
  while (x->h.calls < 3 && uv_now(&x->loop) < until)
    uv_run(&x->loop, UV_RUN_ONCE);
  assert_true(x->h.calls >= 3);
  assert_string_equal(x->c[0].progress, "");
  ss = state_of(x, 0);
  assert_int_equal(ss.wait, KCLD_DISPATCHER_THROTTLED);
  assert_string_equal(kcld_dispatcher_wait_name(ss.wait), "throttled");
  assert_true(ss.failures >= 2);
  assert_string_equal(ss.error_type, "ProvisionedThroughputExceededException");
  for (unsigned i = 0; i < x->h.calls; i++)
    assert_int_equal(x->h.sizes[i], 10); /* never bisected */
  wait_done(x, 0, 9);
  assert_int_equal(x->h.calls, 7);
  kcld_dispatcher_stats(x->disp, &st);
  assert_int_equal(st.batches_waited, 6);
  assert_int_equal(st.batches_bisected, 0);
  assert_int_equal(st.batches_retried, 0);
  assert_int_equal(st.records_given_up, 0);
  assert_int_equal(st.records_handled, 10);
  assert_int_equal(state_of(x, 0).wait, KCLD_DISPATCHER_MOVING);
  fx_free(x);
}

static void test_refusal_is_handler_unavailable(void **state)
{
  struct fx *x = fx_new();
  struct kcld_record_batch *b[1];
  struct kcld_dispatcher_stats st;
  struct kcld_dispatcher_shard_state ss;
  uint64_t until;
  (void)state;

  x->o.backoff_base_ms = 20;
  x->o.backoff_max_ms = 40;
  x->h.refuse_left = 3;
  fx_start(x);
  b[0] = make_batch(x->c[0].shard, 0, 5, 4, 0, 0);
  feed(x, 0, b, 1);
  until = uv_now(&x->loop) + WAIT_MS;
  while (x->h.calls < 2 && uv_now(&x->loop) < until)
    uv_run(&x->loop, UV_RUN_ONCE);
  ss = state_of(x, 0);
  assert_int_equal(ss.wait, KCLD_DISPATCHER_HANDLER_UNAVAILABLE);
  assert_string_equal(kcld_dispatcher_wait_name(ss.wait),
                      "handler_unavailable");
  assert_string_equal(ss.error_type, "HandlerUnavailable");
  wait_done(x, 0, 4);
  assert_int_equal(x->h.calls, 4);
  kcld_dispatcher_stats(x->disp, &st);
  assert_int_equal(st.records_skipped, 0);
  assert_int_equal(st.batches_waited, 3);
  fx_free(x);
}

static void test_infra_partial_moves_the_head(void **state)
{
  struct fx *x = fx_new();
  struct kcld_record_batch *b[1];
  char seq[40];
  uint64_t until;
  (void)state;

  x->o.backoff_base_ms = 30;
  x->o.backoff_max_ms = 30;
  x->h.infra_left = 2;
  x->h.infra_partial = 4;
  fx_start(x);
  b[0] = make_batch(x->c[0].shard, 0, 10, 4, 0, 0);
  feed(x, 0, b, 1);
  until = uv_now(&x->loop) + WAIT_MS;
  while (x->c[0].progress_calls == 0 && uv_now(&x->loop) < until)
    uv_run(&x->loop, UV_RUN_ONCE);
  seq_of(3, seq, sizeof(seq));
  assert_string_equal(x->c[0].progress, seq); /* the handled head only */
  wait_done(x, 0, 9);
  /* 0-9 (4 kept), 4-9 (4 kept), 8-9. */
  assert_int_equal(x->h.calls, 3);
  assert_int_equal(x->h.sizes[1], 6);
  assert_int_equal(x->h.sizes[2], 2);
  fx_free(x);
}

static void test_infra_bounded_by_record_age(void **state)
{
  struct fx *x = fx_new();
  struct kcld_record_batch *b[2];
  struct kcld_dispatcher_stats st;
  json_t *lines, *l;
  (void)state;

  x->o.batch_size = 20;
  x->o.max_record_age_ms = 60000;
  x->o.discard = 0;
  dir_dlq(x);
  x->h.infra_left = 1000000; /* the handler never comes back */
  x->h.infra_type = "HandlerCrashed";
  x->o.window_ms = 50; /* both deliveries in one batch */
  fx_start(x);
  /* 6 records two minutes old, then 4 young ones, in one batch. */
  b[0] = make_batch(x->c[0].shard, 0, 6, 4, 120000, 0);
  b[1] = make_batch(x->c[0].shard, 6, 4, 4, 0, 0);
  feed(x, 0, b, 2);
  {
    uint64_t until = uv_now(&x->loop) + WAIT_MS;
    char seq[40];
    seq_of(5, seq, sizeof(seq));
    while (strcmp(x->c[0].progress, seq) != 0 && uv_now(&x->loop) < until)
      uv_run(&x->loop, UV_RUN_ONCE);
    assert_string_equal(x->c[0].progress, seq);
  }
  run_ms(x, 50);
  /* The old head went as RecordAgeExceeded; the young rest still waits. */
  kcld_dispatcher_stats(x->disp, &st);
  assert_int_equal(st.dlq_records, 6);
  assert_int_equal(st.records_given_up, 6);
  assert_int_equal(state_of(x, 0).wait, KCLD_DISPATCHER_HANDLER_UNAVAILABLE);
  lines = dead_letters(x);
  assert_true(json_array_size(lines) >= 1);
  l = json_array_get(lines, 0);
  assert_string_equal(json_string_value(json_object_get(json_object_get(
    l, "requestContext"), "condition")), "RecordAgeExceeded");
  /* An infrastructure failure is no attempt on the records. */
  assert_int_equal(json_integer_value(json_object_get(json_object_get(
    l, "requestContext"), "approximateInvokeCount")), 0);
  json_decref(lines);
  for (size_t i = 6; i < 10; i++)
    assert_int_equal(x->h.handled[i], 0);
  fc_cancel(&x->c[0]);
  fx_free(x);
}

static void test_destination_unavailable_waits(void **state)
{
  struct fx *x = fx_new();
  struct fstore store = {0};
  struct kcld_record_batch *b[1];
  struct kcld_dispatcher_shard_state ss;
  char seq[40];
  uint64_t until;
  (void)state;

  store.base.ops = &s_fstore_ops;
  store.base.where = "fake";
  store.loop = &x->loop;
  store.fail_left = 4;
  x->o.batch_size = 4;
  x->o.discard = 0;
  x->dlq = dlq_on(x, &store.base);
  x->o.dlq = x->dlq;
  x->h.poison[1] = 1;
  fx_start(x);
  b[0] = make_batch(x->c[0].shard, 0, 4, 4, 0, 0);
  feed(x, 0, b, 1);
  until = uv_now(&x->loop) + WAIT_MS;
  while (store.calls < 2 && uv_now(&x->loop) < until)
    uv_run(&x->loop, UV_RUN_ONCE);
  ss = state_of(x, 0);
  assert_int_equal(ss.wait, KCLD_DISPATCHER_DESTINATION_UNAVAILABLE);
  assert_string_equal(kcld_dispatcher_wait_name(ss.wait),
                      "destination_unavailable");
  assert_non_null(strstr(ss.error, "QueueDoesNotExist"));
  seq_of(0, seq, sizeof(seq));
  assert_string_equal(x->c[0].progress, seq); /* not past the poison */
  wait_done(x, 0, 3);
  assert_int_equal(store.calls, 5);
  assert_int_equal(store.kept, 1);
  fx_free(x);
}

static void test_sync_answers_do_not_reenter(void **state)
{
  struct fx *x = fx_new();
  struct kcld_record_batch *b[3];
  struct kcld_dispatcher_stats st;
  (void)state;

  x->o.batch_size = 7;
  x->h.sync = 1;
  x->h.poison[30] = 1;
  fx_start(x);
  b[0] = make_batch(x->c[0].shard, 0, 20, 4, 0, 0);
  b[1] = make_batch(x->c[0].shard, 20, 20, 4, 0, 0);
  b[2] = make_batch(x->c[0].shard, 40, 5, 4, 0, 1);
  feed(x, 0, b, 3);
  b[0] = make_batch(x->c[1].shard, 0, 9, 4, 0, 0);
  feed(x, 1, b, 1);
  wait_done(x, 0, 44);
  wait_done(x, 1, 8);
  assert_int_equal(x->reentered, 0);
  assert_int_equal(x->h.handled[30], 0);
  kcld_dispatcher_stats(x->disp, &st);
  assert_int_equal(st.records_skipped, 1);
  assert_int_equal(st.records_handled, 44 + 9);
  fx_free(x);
}

static void test_timeout_and_late_answer(void **state)
{
  struct fx *x = fx_new();
  struct kcld_record_batch *b[1];
  struct kcld_dispatcher_stats st;
  (void)state;

  x->o.handler_timeout_ms = 30;
  x->o.max_retry_attempts = 1;
  x->o.bisect_on_error = 0;
  x->h.hang_first_ms = 150;
  fx_start(x);
  b[0] = make_batch(x->c[0].shard, 0, 3, 4, 0, 0);
  feed(x, 0, b, 1);
  wait_done(x, 0, 2);
  run_ms(x, 200); /* the late answer comes and is ignored */
  kcld_dispatcher_stats(x->disp, &st);
  assert_int_equal(st.handler_timeouts, 1);
  assert_int_equal(st.batches_retried, 1);
  assert_int_equal(st.records_handled, 3);
  assert_int_equal(st.in_flight, 0);
  fx_free(x);
}

static void test_cancel_with_call_in_flight(void **state)
{
  struct fx *x = fx_new();
  struct kcld_record_batch *b[2];
  struct kcld_dispatcher_stats st;
  (void)state;

  x->o.batch_size = 4;
  x->h.delay_ms = 50;
  fx_start(x);
  b[0] = make_batch(x->c[0].shard, 0, 12, 4, 0, 0);
  b[1] = make_batch(x->c[0].shard, 12, 4, 4, 0, 0);
  feed(x, 0, b, 2);
  run_ms(x, 10);
  assert_int_equal(x->h.in_flight, 1);
  assert_true(x->c[0].delivering); /* full batches still wait */
  fc_cancel(&x->c[0]);
  assert_true(x->c[0].delivering); /* done comes later, not in cancel */
  run_ms(x, 100);
  assert_false(x->c[0].delivering);
  assert_int_equal(x->c[0].dones, 1);
  kcld_dispatcher_stats(x->disp, &st);
  assert_int_equal(st.in_flight, 0);
  assert_int_equal(st.records_handled, 0); /* the late answer is ignored */
  fx_free(x);
}

static void test_block_retries_for_ever(void **state)
{
  struct fx *x = fx_new();
  struct kcld_record_batch *b[1];
  struct kcld_dispatcher_stats st;
  uint64_t until;
  (void)state;

  x->o.batch_size = 2;
  x->o.bisect_on_error = 0;
  x->o.discard = 0;
  x->o.block_on_failure = 1;
  x->h.poison[2] = 1;
  fx_start(x);
  b[0] = make_batch(x->c[0].shard, 0, 4, 4, 0, 0);
  feed(x, 0, b, 1);
  until = uv_now(&x->loop) + WAIT_MS;
  while (x->h.seen[2] < 6 && uv_now(&x->loop) < until)
    uv_run(&x->loop, UV_RUN_ONCE);
  assert_true(x->h.seen[2] >= 6);
  assert_int_equal(state_of(x, 0).wait, KCLD_DISPATCHER_RETRYING);
  kcld_dispatcher_stats(x->disp, &st);
  assert_int_equal(st.records_given_up, 0);
  {
    char seq[40];
    seq_of(1, seq, sizeof(seq));
    assert_string_equal(x->c[0].progress, seq);
  }
  x->h.poison[2] = 0; /* fixed: it goes through */
  wait_done(x, 0, 3);
  fx_free(x);
}

/* A reload: the next batches take the new batch.size and retry policy. */
static void test_configure_live(void **state)
{
  struct fx *x = fx_new();
  struct kcld_record_batch *b[2];
  struct kcld_dispatcher_opts o;
  struct kcld_dispatcher_stats st;
  (void)state;

  x->o.batch_size = 2;
  x->o.max_retry_attempts = 3;
  fx_start(x);
  b[0] = make_batch(x->c[0].shard, 0, 4, 4, 0, 0);
  feed(x, 0, b, 1);
  wait_done(x, 0, 3);
  assert_int_equal(x->h.calls, 2);
  o = x->o;
  o.batch_size = 50;
  o.max_retry_attempts = 0;
  o.bisect_on_error = 0;
  assert_int_equal(kcld_dispatcher_configure(x->disp, &o), 0);
  x->h.poison[6] = 1;
  b[1] = make_batch(x->c[0].shard, 4, 10, 4, 0, 0);
  feed(x, 0, &b[1], 1);
  wait_done(x, 0, 13);
  /* One batch of all ten, failed once and given up: no retry, no split. */
  assert_int_equal(x->h.calls, 3);
  assert_int_equal(x->h.sizes[2], 10);
  assert_int_equal(x->h.seen[6], 1);
  kcld_dispatcher_stats(x->disp, &st);
  assert_int_equal(st.batches_retried, 0);
  assert_int_equal(st.batches_bisected, 0);
  assert_int_equal(st.records_given_up, 10);
  fx_free(x);
}

/* A new parallelization applies once the shard holds nothing (its lanes
 * are made anew then); keys keep their order. */
static void test_configure_relanes(void **state)
{
  struct fx *x = fx_new();
  struct kcld_record_batch *b[2];
  struct kcld_dispatcher_opts o;
  (void)state;

  x->o.batch_size = 5;
  x->h.delay_ms = 3;
  fx_start(x);
  b[0] = make_batch(x->c[0].shard, 0, 40, 8, 0, 0);
  feed(x, 0, b, 1);
  wait_done(x, 0, 39);
  assert_int_equal(x->h.max_in_flight, 1);
  o = x->o;
  o.parallelization = 4;
  assert_int_equal(kcld_dispatcher_configure(x->disp, &o), 0);
  x->h.max_in_flight = 0;
  b[1] = make_batch(x->c[0].shard, 40, 200, 8, 0, 0);
  feed(x, 0, &b[1], 1);
  wait_done(x, 0, 239);
  assert_true(x->h.max_in_flight > 1 && x->h.max_in_flight <= 4);
  assert_int_equal(x->h.order_violations, 0);
  for (size_t i = 0; i < 240; i++)
    assert_int_equal(x->h.handled[i], 1);
  fx_free(x);
}

/* What a reload may not set is refused, and nothing changes. */
static void test_configure_refused(void **state)
{
  struct fx *x = fx_new();
  struct kcld_record_batch *b[1];
  struct kcld_dispatcher_opts o;
  (void)state;

  x->o.batch_size = 3;
  x->o.discard = 0;
  x->o.block_on_failure = 1;
  fx_start(x);
  o = x->o;
  o.block_on_failure = 0; /* nowhere for given-up records */
  o.batch_size = 1;
  assert_int_equal(kcld_dispatcher_configure(x->disp, &o), KCLD_EINVAL);
  o.block_on_failure = 1;
  o.batch_size = 0;
  assert_int_equal(kcld_dispatcher_configure(x->disp, &o), KCLD_EINVAL);
  o.batch_size = 1;
  o.backoff_max_ms = 1; /* below backoff_base_ms */
  assert_int_equal(kcld_dispatcher_configure(x->disp, &o), KCLD_EINVAL);
  b[0] = make_batch(x->c[0].shard, 0, 6, 4, 0, 0);
  feed(x, 0, b, 1);
  wait_done(x, 0, 5);
  assert_int_equal(x->h.calls, 2); /* still batches of 3 */
  assert_int_equal(x->h.sizes[0], 3);
  fx_free(x);
}

/* filter: records no pattern matches never reach the handler, count in
 * records_filtered and are passed by the checkpoint, but never ahead of a
 * kept record still at the handler; a delivery that is all filtered (the
 * shard's end here) still moves it to its last record. */
static void test_filter_skips_handler(void **state)
{
  static const char *pat = "{\"partitionKey\": [\"key-1\", \"key-2\"]}";
  struct fx *x = fx_new();
  struct kcld_record_batch *b[2];
  struct kcld_dispatcher_stats st;
  struct kcld_filter *f = kcld_filter_new();
  char seq[40];
  uint64_t until;
  (void)state;

  assert_non_null(f);
  assert_int_equal(kcld_filter_add_text(f, pat, strlen(pat), NULL), 0);
  x->o.filter = f;
  x->o.batch_size = 3;
  x->h.hang_first_ms = 150;
  fx_start(x);
  b[0] = make_batch(x->c[0].shard, 0, 20, 4, 0, 0);  /* keys 0..3 */
  b[1] = make_batch(x->c[0].shard, 20, 10, 1, 0, 1); /* key-0 only */
  feed(x, 0, b, 2);
  /* Record 0 is filtered, record 1 is in the first (hanging) call: the
   * first progress passes record 0 and stops there. */
  until = uv_now(&x->loop) + WAIT_MS;
  while (!x->c[0].progress_calls && uv_now(&x->loop) < until)
    uv_run(&x->loop, UV_RUN_ONCE);
  assert_int_equal(x->h.seen[1], 1);
  assert_int_equal(x->h.handled[1], 0);
  seq_of(0, seq, sizeof(seq));
  assert_string_equal(x->c[0].progress, seq);
  wait_done(x, 0, 29);
  for (size_t i = 0; i < 30; i++) {
    int keep = i < 20 && (i % 4 == 1 || i % 4 == 2);
    assert_int_equal(x->h.seen[i], keep);
    assert_int_equal(x->h.handled[i], keep);
  }
  assert_int_equal(x->c[0].dones, 2);
  kcld_dispatcher_stats(x->disp, &st);
  assert_int_equal(st.records_filtered, 20);
  assert_int_equal(st.records_handled, 10);
  assert_int_equal(st.records_given_up, 0);
  fx_free(x);
  kcld_filter_free(f);
}

static void test_bad_options(void **state)
{
  struct fx *x = fx_new();
  struct kcld_dispatcher *d;
  (void)state;
  x->o.discard = 0; /* nowhere for given-up records */
  assert_int_equal(kcld_dispatcher_new(&x->o, &d), KCLD_EINVAL);
  x->o.discard = 1;
  x->o.batch_size = 0;
  assert_int_equal(kcld_dispatcher_new(&x->o, &d), KCLD_EINVAL);
  x->o.batch_size = 1;
  x->o.parallelization = 11;
  assert_int_equal(kcld_dispatcher_new(&x->o, &d), KCLD_EINVAL);
  x->o.parallelization = 1;
  x->o.backoff_max_ms = 1;
  assert_int_equal(kcld_dispatcher_new(&x->o, &d), KCLD_EINVAL);
  x->o.backoff_max_ms = 20;
  fx_start(x);
  fx_free(x);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_batch_sizes),
    cmocka_unit_test(test_window_fills_across_deliveries),
    cmocka_unit_test(test_lanes_keep_key_order),
    cmocka_unit_test(test_retry_budget_then_discard),
    cmocka_unit_test(test_bisect_to_dead_letter_dir),
    cmocka_unit_test(test_infra_waits_without_budget),
    cmocka_unit_test(test_refusal_is_handler_unavailable),
    cmocka_unit_test(test_infra_partial_moves_the_head),
    cmocka_unit_test(test_infra_bounded_by_record_age),
    cmocka_unit_test(test_destination_unavailable_waits),
    cmocka_unit_test(test_sync_answers_do_not_reenter),
    cmocka_unit_test(test_timeout_and_late_answer),
    cmocka_unit_test(test_cancel_with_call_in_flight),
    cmocka_unit_test(test_block_retries_for_ever),
    cmocka_unit_test(test_configure_live),
    cmocka_unit_test(test_configure_relanes),
    cmocka_unit_test(test_configure_refused),
    cmocka_unit_test(test_filter_skips_handler),
    cmocka_unit_test(test_bad_options),
  };
  json_object_seed(1);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
