/* test_shard_consumer_lease.c — shard consumers through the real lease
 * coordinator, on kinesalite and dynalite: the daemon's part in small (one
 * consumer per acquired lease, each with a sink that deals with every
 * record at once).
 *
 * Two shards are consumed and checkpointed at their last records; a split
 * ends one (SHARD_END recorded, the two children's leases created and
 * consumed by this worker); every record reaches a sink exactly once, in
 * shard order; a graceful stop and release_all leave every lease
 * checkpointed at its last record and without an owner.  A window text
 * reported with progress is written into the lease item with its
 * checkpoint, each closed consumer tells its sink so once (sink.closed),
 * and the next owner of the lease gets the text (take_window).
 *
 * test_shard_consumer.c covers the consumer alone, with the coordinator
 * faked at link time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "aws/call.h"
#include "aws/credentials.h"
#include "aws/http.h"
#include "aws/kinesis.h"
#include "base/seq.h"
#include "consume/shard_consumer.h"
#include "e2e.h"
#include "err.h"
#include "harness.h"
#include "lease/coordinator.h"
#include "log.h"

#define SHARD0 "shardId-000000000000"
#define SHARD1 "shardId-000000000001"
#define MAXC 8
#define MAXGOT 512

static struct kcld_emu s_emu;
static struct kcld_test_aws *s_t;

/* ======== The sink: every record dealt with at once ======== */

struct got {
  char seq[KCLD_SEQ_MAX + 1];
  char data[16];
};

struct sink {
  struct got got[MAXGOT];
  size_t n;
  int windowed;        /* report "w-<last record's data>" as the window */
  int closed_calls;    /* sink.closed */
};

static int sink_deliver(void *impl, struct kcld_shard_delivery *d)
{
  struct sink *s = impl;
  for (size_t i = 0; i < d->count; i++) {
    const struct kcld_record *r = &d->records[i];
    size_t l = r->data_len < sizeof(s->got[0].data) - 1
                 ? r->data_len : sizeof(s->got[0].data) - 1;
    assert_true(s->n < MAXGOT);
    snprintf(s->got[s->n].seq, sizeof(s->got[s->n].seq), "%s",
             r->sequence_number);
    memcpy(s->got[s->n].data, r->data, l);
    s->got[s->n].data[l] = '\0';
    s->n++;
  }
  const struct kcld_record *last = &d->records[d->count - 1];
  char window[24];
  snprintf(window, sizeof(window), "w-%s", s->got[s->n - 1].data);
  kcld_shard_consumer_progress_window(d->consumer, last->sequence_number,
                                      last->sub_sequence_number,
                                      s->windowed ? window : NULL);
  kcld_shard_consumer_done(d);
  return 0;
}

static void sink_cancel(void *impl, struct kcld_shard_consumer *c)
{
  (void)impl;
  (void)c; /* nothing is ever held */
}

static void sink_closed(void *impl, struct kcld_shard_consumer *c)
{
  struct sink *s = impl;
  (void)c;
  s->closed_calls++;
}

/* ======== The worker: one consumer per acquired lease ======== */

struct world {
  uv_loop_t loop;
  struct kcld_http *http;
  struct kcld_credentials *creds;
  struct kcld_aws *aws;
  struct kcld_kinesis *kin;
  struct kcld_coordinator *coord;
  char stream[64];
  int ready, ready_err;
  struct slot {
    char shard[32];
    struct kcld_shard_consumer *c;
    struct sink sink;
    int finished;
    enum kcld_shard_consumer_end how;
    int err;
    int closed;
  } slots[MAXC];
  int nslots;
  const char *windowed;     /* this shard's sink reports a window */
  char took[32];            /* what take_window gave for it */
  char took_seq[KCLD_SEQ_MAX + 1];
  int lost_calls;
  int released, release_err;
};

static void w_ready(int err, const char *why, void *arg)
{
  struct world *w = arg;
  (void)why;
  w->ready = 1;
  w->ready_err = err;
}

static void on_finished(struct kcld_shard_consumer *c,
                        enum kcld_shard_consumer_end how, int err, void *arg)
{
  struct slot *sl = arg;
  (void)c;
  sl->finished++;
  sl->how = how;
  sl->err = err;
}

static void w_acquired(const struct kcld_lease *lease, void *arg)
{
  struct world *w = arg;
  assert_true(w->nslots < MAXC);
  struct slot *sl = &w->slots[w->nslots++];
  snprintf(sl->shard, sizeof(sl->shard), "%s", lease->shard_id);
  struct kcld_shard_consumer_opts o = {
    .loop = &w->loop, .kinesis = w->kin, .coordinator = w->coord,
    .stream = w->stream, .lease = lease, .idle_ms = 200,
    .parents_poll_ms = 200, .max_records = 50,
    .max_buffered_bytes =
      (size_t)kcld_test_key_default("fetch.max_buffered_bytes"),
    .sink = {.deliver = sink_deliver, .cancel = sink_cancel,
             .closed = sink_closed, .impl = &sl->sink},
    .finished = on_finished, .arg = sl};
  sl->sink.windowed = w->windowed && strcmp(sl->shard, w->windowed) == 0;
  assert_int_equal(kcld_shard_consumer_start(&o, &sl->c), 0);
  if (sl->sink.windowed) {
    const char *seq;
    uint64_t sub;
    char *text = kcld_shard_consumer_take_window(sl->c, &seq, &sub);
    snprintf(w->took, sizeof(w->took), "%s", text ? text : "(none)");
    snprintf(w->took_seq, sizeof(w->took_seq), "%s", seq ? seq : "");
    free(text);
    /* Handed over once. */
    assert_null(kcld_shard_consumer_take_window(sl->c, &seq, &sub));
  }
}

static void w_lost(const char *shard_id, void *arg)
{
  struct world *w = arg;
  w->lost_calls++;
  for (int i = 0; i < w->nslots; i++)
    if (strcmp(w->slots[i].shard, shard_id) == 0 && !w->slots[i].closed)
      kcld_shard_consumer_lose(w->slots[i].c);
}

static void w_released(int err, void *arg)
{
  struct world *w = arg;
  w->released = 1;
  w->release_err = err;
}

static struct slot *w_slot(struct world *w, const char *shard)
{
  for (int i = 0; i < w->nslots; i++)
    if (strcmp(w->slots[i].shard, shard) == 0)
      return &w->slots[i];
  return NULL;
}

static size_t w_got(const struct world *w)
{
  size_t total = 0;
  for (int i = 0; i < w->nslots; i++)
    total += w->slots[i].sink.n;
  return total;
}

static void w_sleep(struct world *w, unsigned ms)
{
  int never = 0;
  kcld_test_run_until(&w->loop, &never, ms);
}

static void w_wait_got(struct world *w, size_t n, unsigned ms)
{
  uint64_t until = uv_now(&w->loop) + ms;
  while (w_got(w) < n && uv_now(&w->loop) < until)
    w_sleep(w, 50);
  assert_int_equal(w_got(w), n);
}

static void w_open(struct world *w)
{
  static int s_no;
  memset(w, 0, sizeof(*w));
  assert_int_equal(uv_loop_init(&w->loop), 0);
  assert_int_equal(kcld_http_new(&w->loop, NULL, &w->http), 0);
  struct kcld_credentials_opts co = {
    .loop = &w->loop, .http = w->http, .access_key_id = "AKIDTESTTEST",
    .secret_access_key = "test-secret-key"};
  assert_int_equal(kcld_credentials_new(&co, &w->creds), 0);
  struct kcld_aws_opts ao = {.loop = &w->loop, .http = w->http,
                             .creds = w->creds, .region = "us-east-1"};
  ao.endpoint[KCLD_AWS_KINESIS] = kcld_emu_url(&s_emu, "kinesis");
  ao.endpoint[KCLD_AWS_DYNAMODB] = kcld_emu_url(&s_emu, "dynamodb");
  assert_int_equal(kcld_aws_new(&ao, &w->aws), 0);
  assert_int_equal(kcld_kinesis_new(w->aws, &w->loop, &w->kin), 0);
  snprintf(w->stream, sizeof(w->stream), "scl-%d-%d", (int)getpid(), ++s_no);
}

static void w_close(struct world *w)
{
  kcld_coordinator_close(w->coord);
  kcld_kinesis_close(w->kin);
  kcld_aws_close(w->aws);
  kcld_credentials_close(w->creds);
  kcld_http_close(w->http);
  kcld_test_loop_finish(&w->loop);
}

/* Starts w's coordinator on `table` as worker_id and waits until it is
 * ready. */
static void w_start(struct world *w, const char *table, const char *worker_id)
{
  struct kcld_coordinator_opts co = {
    .loop = &w->loop, .aws = w->aws, .table = table, .stream = w->stream,
    .worker_id = worker_id, .failover_ms = 6000, .take_interval_ms = 1000,
    .shard_sync_interval_ms = 60000, .cleanup_delay_ms = 600000,
    .initial_position = KCLD_POS_TRIM_HORIZON,
    .cbs = {.ready = w_ready, .acquired = w_acquired, .lost = w_lost,
            .arg = w}};
  assert_int_equal(kcld_coordinator_start(&co, &w->coord), 0);
  assert_true(kcld_test_run_until(&w->loop, &w->ready, 15000));
  assert_int_equal(w->ready_err, 0);
}

/* ======== Records and the lease table ======== */

/* Puts records "rec-<id>" ids first..first+n-1 under keys "k<id>",
 * appending {shard, seq, data, pk} to produced. */
static void put_records(const char *stream, int first, int n,
                        json_t *produced)
{
  char bufs[200][16], keys[200][16];
  const char *data[200], *pk[200];
  assert_true(n <= 200);
  for (int i = 0; i < n; i++) {
    snprintf(bufs[i], sizeof(bufs[i]), "rec-%06d", first + i);
    snprintf(keys[i], sizeof(keys[i]), "k%d", first + i);
    data[i] = bufs[i];
    pk[i] = keys[i];
  }
  kcld_e2e_put_records(s_t, stream, data, pk, (size_t)n, produced);
}

/* The lease items, by lease key (a new reference). */
static json_t *scan_leases(const char *table)
{
  json_t *res = kcld_e2e_call(s_t, KCLD_AWS_DYNAMODB, "Scan",
                              json_pack("{s:s,s:b}", "TableName", table,
                                        "ConsistentRead", 1));
  json_t *by = json_object(), *item;
  size_t i;
  json_array_foreach(json_object_get(res, "Items"), i, item)
  {
    const char *k = json_string_value(
      json_object_get(json_object_get(item, "leaseKey"), "S"));
    json_object_set(by, k, item);
  }
  json_decref(res);
  return by;
}

static const char *attr_s(json_t *items, const char *shard, const char *name)
{
  return json_string_value(json_object_get(
    json_object_get(json_object_get(items, shard), name), "S"));
}

/* The sequence number of the last record produced into `shard`. */
static const char *last_seq(json_t *produced, const char *shard)
{
  const char *last = NULL;
  size_t i;
  json_t *p;
  json_array_foreach(produced, i, p)
  {
    const char *seq = json_string_value(json_object_get(p, "seq"));
    if (strcmp(json_string_value(json_object_get(p, "shard")), shard) == 0 &&
        (!last || kcld_seq_compare(last, seq) < 0))
      last = seq;
  }
  return last;
}

/* Every produced record reached a sink once, and each sink's records are
 * in shard order. */
static void assert_all_once(const struct world *w, json_t *produced)
{
  size_t i;
  json_t *p;
  for (int s = 0; s < w->nslots; s++) {
    const struct sink *k = &w->slots[s].sink;
    for (size_t j = 1; j < k->n; j++)
      assert_true(kcld_seq_compare(k->got[j - 1].seq, k->got[j].seq) < 0);
  }
  assert_int_equal(w_got(w), json_array_size(produced));
  json_array_foreach(produced, i, p)
  {
    const char *seq = json_string_value(json_object_get(p, "seq"));
    const char *data = json_string_value(json_object_get(p, "data"));
    int found = 0;
    for (int s = 0; s < w->nslots; s++) {
      const struct sink *k = &w->slots[s].sink;
      for (size_t j = 0; j < k->n; j++)
        if (strcmp(k->got[j].seq, seq) == 0 &&
            strcmp(k->got[j].data, data) == 0)
          found++;
    }
    assert_int_equal(found, 1);
  }
}

/* Stops and closes every consumer still open: each tells its sink once. */
static void w_stop_all(struct world *w)
{
  for (int i = 0; i < w->nslots; i++)
    if (!w->slots[i].closed)
      kcld_shard_consumer_stop(w->slots[i].c, 5000);
  for (int i = 0; i < w->nslots; i++) {
    if (w->slots[i].closed)
      continue;
    assert_true(kcld_test_run_until(&w->loop, &w->slots[i].finished, 10000));
    assert_int_equal(w->slots[i].how, KCLD_SHARD_CONSUMER_STOPPED);
    assert_int_equal(w->slots[i].err, 0);
    assert_int_equal(w->slots[i].sink.closed_calls, 0);
    kcld_shard_consumer_close(w->slots[i].c);
    w->slots[i].closed = 1;
  }
  for (int i = 0; i < w->nslots; i++)
    assert_int_equal(w->slots[i].sink.closed_calls, 1);
}

/* Worker b takes over the released leases of stream/table: the consumer of
 * `shard` is handed the window text `want`, acquired at checkpoint
 * want_seq. */
static void take_over(const char *stream, const char *table,
                      const char *shard, const char *want,
                      const char *want_seq)
{
  static struct world w;
  w_open(&w);
  snprintf(w.stream, sizeof(w.stream), "%s", stream);
  w.windowed = shard;
  w_start(&w, table, "worker-b");
  for (int i = 0; i < 100 && !w_slot(&w, shard); i++)
    w_sleep(&w, 100);
  assert_non_null(w_slot(&w, shard));
  assert_string_equal(w.took, want);
  assert_string_equal(w.took_seq, want_seq);
  w_stop_all(&w);
  kcld_coordinator_release_all(w.coord, w_released, &w);
  assert_true(kcld_test_run_until(&w.loop, &w.released, 10000));
  w_close(&w);
}

/* The lease items of `table` (a new reference) once the leases of SHARD0
 * and SHARD1 hold their shard's last produced record as checkpoint, or
 * after `ms` (the caller's assertions then say what is wrong); w's loop
 * runs in between. */
static json_t *w_wait_checkpointed(struct world *w, const char *table,
                                   json_t *produced, unsigned ms)
{
  uint64_t until = uv_now(&w->loop) + ms;
  json_t *items = scan_leases(table);
  while (uv_now(&w->loop) < until) {
    const char *c0 = attr_s(items, SHARD0, "checkpoint");
    const char *c1 = attr_s(items, SHARD1, "checkpoint");
    if (c0 && c1 && strcmp(c0, last_seq(produced, SHARD0)) == 0 &&
        strcmp(c1, last_seq(produced, SHARD1)) == 0)
      break;
    json_decref(items);
    w_sleep(w, 50);
    items = scan_leases(table);
  }
  return items;
}

/* ======== The test ======== */

static void test_with_coordinator_through_a_split(void **state)
{
  (void)state;
  enum { N1 = 120, N2 = 80 };
  static struct world w;
  char table[96];
  json_t *produced = json_array(), *items;
  w_open(&w);
  kcld_e2e_create_stream(s_t, w.stream, 2);
  put_records(w.stream, 0, N1, produced);
  snprintf(table, sizeof(table), "%s-leases", w.stream);
  w.windowed = SHARD1;
  w_start(&w, table, "worker-a");
  w_wait_got(&w, N1, 15000);
  assert_int_equal(w.nslots, 2);

  /* Both leases hold their shard's last record as checkpoint. */
  items = w_wait_checkpointed(&w, table, produced, 10000);
  assert_string_equal(attr_s(items, SHARD0, "checkpoint"),
                      last_seq(produced, SHARD0));
  assert_string_equal(attr_s(items, SHARD0, "leaseOwner"), "worker-a");
  assert_string_equal(attr_s(items, SHARD1, "checkpoint"),
                      last_seq(produced, SHARD1));
  /* Shard 1's window text went with its checkpoint; a new lease had none. */
  struct slot *s1 = w_slot(&w, SHARD1);
  char want[24];
  snprintf(want, sizeof(want), "w-%s", s1->sink.got[s1->sink.n - 1].data);
  assert_string_equal(attr_s(items, SHARD1, "kcldWindowState"), want);
  assert_null(attr_s(items, SHARD0, "kcldWindowState"));
  assert_string_equal(w.took, "(none)");
  json_decref(items);

  /* Split shard 0: its consumer reaches the end, records SHARD_END, and the
   * children's consumers take over; new records flow through them. */
  json_decref(kcld_e2e_call(
    s_t, KCLD_AWS_KINESIS, "SplitShard",
    json_pack("{s:s,s:s,s:s}", "StreamName", w.stream, "ShardToSplit",
              SHARD0, "NewStartingHashKey",
              "85070591730234615865843651857942052864")));
  struct slot *s0 = w_slot(&w, SHARD0);
  assert_true(kcld_test_run_until(&w.loop, &s0->finished, 20000));
  assert_int_equal(s0->how, KCLD_SHARD_CONSUMER_ENDED);
  assert_int_equal(s0->err, 0);
  kcld_shard_consumer_close(s0->c);
  s0->closed = 1;
  assert_int_equal(s0->sink.closed_calls, 1);

  kcld_e2e_wait_stream_active(s_t, w.stream);
  put_records(w.stream, N1, N2, produced);
  w_wait_got(&w, N1 + N2, 20000);
  assert_all_once(&w, produced);
  assert_int_equal(w.lost_calls, 0);

  items = scan_leases(table);
  assert_string_equal(attr_s(items, SHARD0, "checkpoint"), "SHARD_END");
  int children = 0;
  const char *key;
  json_t *item;
  json_object_foreach(items, key, item)
  {
    json_t *parents = json_object_get(json_object_get(item, "parentShardId"),
                                      "SS");
    if (json_array_size(parents) == 1 &&
        strcmp(json_string_value(json_array_get(parents, 0)), SHARD0) == 0) {
      children++;
      assert_non_null(w_slot(&w, key)); /* this worker consumed it */
    }
  }
  assert_int_equal(children, 2);
  json_decref(items);

  /* Graceful stop of every consumer, then release. */
  w_stop_all(&w);
  kcld_coordinator_release_all(w.coord, w_released, &w);
  assert_true(kcld_test_run_until(&w.loop, &w.released, 10000));
  assert_int_equal(w.release_err, 0);

  /* Every child lease is checkpointed at its shard's last record. */
  items = scan_leases(table);
  for (int i = 0; i < w.nslots; i++) {
    const struct sink *k = &w.slots[i].sink;
    const char *cp = attr_s(items, w.slots[i].shard, "checkpoint");
    assert_non_null(cp);
    if (strcmp(w.slots[i].shard, SHARD0) == 0)
      assert_string_equal(cp, "SHARD_END");
    else if (k->n > 0)
      assert_string_equal(cp, k->got[k->n - 1].seq);
    assert_null(attr_s(items, w.slots[i].shard, "leaseOwner"));
  }
  snprintf(want, sizeof(want), "w-%s", s1->sink.got[s1->sink.n - 1].data);
  assert_string_equal(attr_s(items, SHARD1, "kcldWindowState"), want);
  json_decref(items);
  json_decref(produced);
  w_close(&w);

  /* The next owner of shard 1 is handed its window, with the checkpoint
   * it belongs to. */
  take_over(w.stream, table, SHARD1, want, s1->sink.got[s1->sink.n - 1].seq);
}

static int setup(void **state)
{
  (void)state;
  kcld_log_setup(getenv("TEST_LOG") ? KCLD_LOG_DEBUG : KCLD_LOG_ERROR,
                 KCLD_LOG_JSON, NULL);
  json_object_seed(0);
  if (kcld_emu_start(&s_emu, "kinesis dynamodb") != 0)
    return -1;
  s_t = kcld_test_aws_new(kcld_emu_url(&s_emu, "kinesis"),
                          kcld_emu_url(&s_emu, "dynamodb"), NULL);
  return s_t ? 0 : -1;
}

static int teardown(void **state)
{
  (void)state;
  kcld_test_aws_free(s_t);
  kcld_emu_stop(&s_emu);
  kcld_http_global_cleanup();
  return 0;
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_with_coordinator_through_a_split),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
