/* test_checkpoint.c — the per-shard checkpoint tracker with a fake writer:
 * one write in flight and coalescing, the interval, never a position past or
 * below what was reported (decimal order, sub-sequences), retries with
 * backoff after transient failures, KCLD_ELOST, flushes, lose and close with
 * a write in flight, and a writer that answers before it returns. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../harness/harness.h"
#include "base/seq.h"
#include "consume/checkpoint.h"
#include "consume/record.h"
#include "err.h"
#include "log.h"

#define MAXW 64

/* The fake writer: records every write and holds its callback until the
 * test completes it (or answers at once with sync_err when sync is set). */
struct fake {
  uv_loop_t *loop;
  int writes;
  char seq[MAXW][KCLD_SEQ_MAX + 1];
  uint64_t sub[MAXW];
  uint64_t at_ms[MAXW];
  kcld_lease_cb cb;
  void *cb_arg;
  int sync;
  int sync_err;
  int lost_calls;
  char window[MAXW][32];     /* the window text of each write; "-" none */
};

static void fake_write(void *ctx, const char *shard_id, const char *sequence,
                       uint64_t sub, kcld_lease_cb cb, void *cb_arg)
{
  struct fake *f = ctx;
  assert_string_equal(shard_id, "shardId-000000000001");
  assert_null(f->cb); /* never two writes in flight */
  assert_true(f->writes < MAXW);
  snprintf(f->seq[f->writes], sizeof(f->seq[0]), "%s", sequence);
  f->sub[f->writes] = sub;
  snprintf(f->window[f->writes], sizeof(f->window[0]), "-");
  f->at_ms[f->writes] = uv_now(f->loop);
  f->writes++;
  if (f->sync) {
    cb(f->sync_err, cb_arg);
    return;
  }
  f->cb = cb;
  f->cb_arg = cb_arg;
}

/* The window writer: a write as fake_write, its text noted. */
static void fake_write_window(void *ctx, const char *shard_id,
                              const char *sequence, uint64_t sub,
                              const char *window, kcld_lease_cb cb,
                              void *cb_arg)
{
  struct fake *f = ctx;
  int i = f->writes;
  fake_write(ctx, shard_id, sequence, sub, cb, cb_arg);
  snprintf(f->window[i], sizeof(f->window[0]), "%s", window);
}

/* Answers the write in flight with err. */
static void complete(struct fake *f, int err)
{
  kcld_lease_cb cb = f->cb;
  assert_non_null(cb);
  f->cb = NULL;
  cb(err, f->cb_arg);
}

static void on_lost(void *arg)
{
  ((struct fake *)arg)->lost_calls++;
}

struct flushed {
  int calls;
  int err;
};

static void on_flushed(int err, void *arg)
{
  struct flushed *fl = arg;
  fl->calls++;
  fl->err = err;
}

static struct kcld_checkpoint *make(uv_loop_t *loop, struct fake *f,
                                    uint64_t interval_ms,
                                    const char *written_seq,
                                    uint64_t written_sub)
{
  struct kcld_checkpoint *cp = NULL;
  struct kcld_checkpoint_opts o = {
    .loop = loop, .shard_id = "shardId-000000000001",
    .interval_ms = interval_ms, .retry_min_ms = 20, .retry_max_ms = 80,
    .write = fake_write, .write_ctx = f, .written_sequence = written_seq,
    .written_sub = written_sub, .lost = on_lost, .arg = f};
  memset(f, 0, sizeof(*f));
  f->loop = loop;
  assert_int_equal(kcld_checkpoint_new(&o, &cp), 0);
  return cp;
}

static void sleep_loop(uv_loop_t *loop, unsigned ms)
{
  int never = 0;
  kcld_test_run_until(loop, &never, ms);
}

static int setup(void **state)
{
  (void)state;
  kcld_log_setup(KCLD_LOG_ERROR, KCLD_LOG_JSON, NULL);
  return 0;
}

/* ======== Arguments ======== */

static void test_new_rejects_bad_options(void **state)
{
  (void)state;
  uv_loop_t loop;
  struct fake f = {0};
  struct kcld_checkpoint *cp = (void *)1;
  assert_int_equal(uv_loop_init(&loop), 0);
  struct kcld_checkpoint_opts o = {.loop = &loop, .shard_id = "s",
                                   .write = fake_write, .write_ctx = &f};
  o.write = NULL;
  assert_int_equal(kcld_checkpoint_new(&o, &cp), KCLD_EINVAL);
  assert_null(cp);
  o.write = fake_write;
  o.shard_id = NULL;
  assert_int_equal(kcld_checkpoint_new(&o, &cp), KCLD_EINVAL);
  o.shard_id = "s";
  o.written_sequence = "TRIM_HORIZON";
  assert_int_equal(kcld_checkpoint_new(&o, &cp), KCLD_EINVAL);
  o.loop = NULL;
  o.written_sequence = NULL;
  assert_int_equal(kcld_checkpoint_new(&o, &cp), KCLD_EINVAL);
  kcld_test_loop_finish(&loop);
}

/* ======== One write in flight, coalescing ======== */

static void test_every_report_one_in_flight(void **state)
{
  (void)state;
  uv_loop_t loop;
  struct fake f;
  assert_int_equal(uv_loop_init(&loop), 0);
  struct kcld_checkpoint *cp = make(&loop, &f, 0, NULL, 0);

  assert_int_equal(kcld_checkpoint_pending(cp), 0);
  assert_int_equal(kcld_checkpoint_progress(cp, "100", 0), 0);
  assert_int_equal(f.writes, 1);
  assert_string_equal(f.seq[0], "100");
  assert_int_equal(kcld_checkpoint_pending(cp), 1);
  /* Reports while the write is in flight start nothing... */
  assert_int_equal(kcld_checkpoint_progress(cp, "200", 0), 0);
  assert_int_equal(kcld_checkpoint_progress(cp, "300", 2), 0);
  assert_int_equal(f.writes, 1);
  assert_int_equal(kcld_checkpoint_written(cp, NULL, NULL), 0);
  /* ...and become one write of the latest position once it lands. */
  complete(&f, 0);
  assert_int_equal(f.writes, 2);
  assert_string_equal(f.seq[1], "300");
  assert_int_equal(f.sub[1], 2);
  const char *seq;
  uint64_t sub;
  assert_int_equal(kcld_checkpoint_written(cp, &seq, &sub), 1);
  assert_string_equal(seq, "100");
  complete(&f, 0);
  assert_int_equal(f.writes, 2);
  assert_int_equal(kcld_checkpoint_written(cp, &seq, &sub), 1);
  assert_string_equal(seq, "300");
  assert_int_equal(sub, 2);
  assert_int_equal(kcld_checkpoint_pending(cp), 0);
  assert_int_equal(kcld_checkpoint_handled(cp, &seq, &sub), 1);
  assert_string_equal(seq, "300");

  struct kcld_checkpoint_stats st;
  kcld_checkpoint_stats(cp, &st);
  assert_int_equal(st.writes, 2);
  assert_int_equal(st.written, 2);
  assert_int_equal(st.failures, 0);
  kcld_checkpoint_close(cp);
  kcld_test_loop_finish(&loop);
}

/* ======== Never below, never past ======== */

static void test_order_is_numeric_and_forward_only(void **state)
{
  (void)state;
  uv_loop_t loop;
  struct fake f;
  assert_int_equal(uv_loop_init(&loop), 0);
  /* The stored checkpoint is 9...9 (40 digits) sub 3. */
  const char *stored = "9999999999999999999999999999999999999999";
  struct kcld_checkpoint *cp = make(&loop, &f, 0, stored, 3);

  /* Textually larger but numerically smaller: not written. */
  assert_int_equal(kcld_checkpoint_progress(cp, "99999", 0), 0);
  /* Same sequence, lower or equal sub-sequence: not written. */
  assert_int_equal(kcld_checkpoint_progress(cp, stored, 3), 0);
  assert_int_equal(kcld_checkpoint_progress(cp, stored, 1), 0);
  /* Leading zeros do not make a number larger. */
  assert_int_equal(
    kcld_checkpoint_progress(cp, "0009999999999999999999999999999999999999999",
                             2), 0);
  assert_int_equal(f.writes, 0);
  assert_int_equal(kcld_checkpoint_pending(cp), 0);
  /* Invalid strings are refused. */
  assert_int_equal(kcld_checkpoint_progress(cp, "SHARD_END", 0), KCLD_EINVAL);
  assert_int_equal(kcld_checkpoint_progress(cp, "", 0), KCLD_EINVAL);
  assert_int_equal(kcld_checkpoint_progress(cp, NULL, 0), KCLD_EINVAL);
  assert_int_equal(kcld_checkpoint_progress(cp, "12a", 0), KCLD_EINVAL);
  assert_int_equal(f.writes, 0);

  /* A higher sub-sequence of the same aggregate moves forward. */
  assert_int_equal(kcld_checkpoint_progress(cp, stored, 4), 0);
  assert_int_equal(f.writes, 1);
  assert_string_equal(f.seq[0], stored);
  assert_int_equal(f.sub[0], 4);
  /* While it is in flight, a lower report does not lower what is next. */
  const char *bigger = "10000000000000000000000000000000000000000"; /* 41 */
  assert_int_equal(kcld_checkpoint_progress(cp, bigger, 0), 0);
  assert_int_equal(kcld_checkpoint_progress(cp, stored, 9), 0);
  complete(&f, 0);
  assert_int_equal(f.writes, 2);
  assert_string_equal(f.seq[1], bigger);
  assert_int_equal(f.sub[1], 0);
  complete(&f, 0);
  assert_int_equal(kcld_checkpoint_progress(cp, bigger, 0), 0);
  assert_int_equal(f.writes, 2);
  /* Every write was a position some report named, in increasing order. */
  for (int i = 1; i < f.writes; i++)
    assert_true(kcld_seq_position_compare(f.seq[i - 1], f.sub[i - 1],
                                             f.seq[i], f.sub[i]) < 0);
  kcld_checkpoint_close(cp);
  kcld_test_loop_finish(&loop);
}

/* A 129-digit sequence number (the longest Kinesis allows) round-trips. */
static void test_longest_sequence(void **state)
{
  (void)state;
  uv_loop_t loop;
  struct fake f;
  char big[KCLD_SEQ_MAX + 1];
  memset(big, '7', KCLD_SEQ_MAX);
  big[KCLD_SEQ_MAX] = '\0';
  assert_int_equal(uv_loop_init(&loop), 0);
  struct kcld_checkpoint *cp = make(&loop, &f, 0, NULL, 0);
  assert_int_equal(kcld_checkpoint_progress(cp, big, 0), 0);
  assert_string_equal(f.seq[0], big);
  complete(&f, 0);
  kcld_checkpoint_close(cp);
  kcld_test_loop_finish(&loop);
}

/* ======== Window text ======== */

/* A window text travels with the position it belongs to: a new text is
 * written even at a position already written, the same text again is not,
 * and a text reported with a position behind the written one never moves
 * the checkpoint back.  A flush waits for the text too. */
static void test_window_text_written_with_progress(void **state)
{
  (void)state;
  uv_loop_t loop;
  struct fake f;
  struct kcld_checkpoint *cp = NULL;
  assert_int_equal(uv_loop_init(&loop), 0);
  memset(&f, 0, sizeof(f));
  f.loop = &loop;
  struct kcld_checkpoint_opts o = {
    .loop = &loop, .shard_id = "shardId-000000000001", .interval_ms = 0,
    .retry_min_ms = 20, .retry_max_ms = 80, .write = fake_write,
    .write_window = fake_write_window, .write_ctx = &f,
    .written_sequence = "100", .lost = on_lost, .arg = &f};
  assert_int_equal(kcld_checkpoint_new(&o, &cp), 0);

  /* A new text at the position already written: written. */
  assert_int_equal(kcld_checkpoint_progress_window(cp, "100", 0, "w1"), 0);
  assert_int_equal(f.writes, 1);
  assert_string_equal(f.seq[0], "100");
  assert_string_equal(f.window[0], "w1");
  complete(&f, 0);
  /* The same text again at the same position: nothing to write. */
  assert_int_equal(kcld_checkpoint_progress_window(cp, "100", 0, "w1"), 0);
  assert_int_equal(f.writes, 1);
  /* A new text reported behind what is written: written at the written
   * position, not at the one reported. */
  assert_int_equal(kcld_checkpoint_progress_window(cp, "50", 0, "w2"), 0);
  assert_int_equal(f.writes, 2);
  assert_string_equal(f.seq[1], "100");
  assert_string_equal(f.window[1], "w2");
  /* A flush asked while it is in flight waits for it. */
  struct flushed fl = {0, 0};
  kcld_checkpoint_flush(cp, on_flushed, &fl);
  assert_int_equal(fl.calls, 0);
  complete(&f, 0);
  assert_int_equal(fl.calls, 1);
  assert_int_equal(fl.err, 0);
  /* Progress with the text unchanged moves on; the writer still gets the
   * text (it is the item's whole window state). */
  assert_int_equal(kcld_checkpoint_progress_window(cp, "200", 0, "w2"), 0);
  assert_int_equal(f.writes, 3);
  assert_string_equal(f.seq[2], "200");
  assert_string_equal(f.window[2], "w2");
  complete(&f, 0);
  kcld_checkpoint_close(cp);
  kcld_test_loop_finish(&loop);
}

/* ======== Interval ======== */

static void test_interval_coalesces(void **state)
{
  (void)state;
  uv_loop_t loop;
  struct fake f;
  assert_int_equal(uv_loop_init(&loop), 0);
  struct kcld_checkpoint *cp = make(&loop, &f, 150, NULL, 0);
  f.sync = 1; /* the writer answers at once */

  uint64_t t0 = uv_now(&loop);
  assert_int_equal(kcld_checkpoint_progress(cp, "10", 0), 0);
  assert_int_equal(f.writes, 1); /* the first write goes at once */
  for (int i = 11; i < 40; i++) {
    char s[16];
    snprintf(s, sizeof(s), "%d", i);
    assert_int_equal(kcld_checkpoint_progress(cp, s, 0), 0);
  }
  assert_int_equal(f.writes, 1);
  assert_int_equal(kcld_checkpoint_pending(cp), 1);
  sleep_loop(&loop, 60);
  assert_int_equal(f.writes, 1); /* not before the interval */
  sleep_loop(&loop, 200);
  assert_int_equal(f.writes, 2); /* one write, of the latest */
  assert_string_equal(f.seq[1], "39");
  assert_true(f.at_ms[1] - t0 >= 150);
  assert_int_equal(kcld_checkpoint_pending(cp), 0);
  /* Nothing new: no more writes. */
  sleep_loop(&loop, 200);
  assert_int_equal(f.writes, 2);
  /* A report long after the last write goes at once. */
  assert_int_equal(kcld_checkpoint_progress(cp, "50", 0), 0);
  assert_int_equal(f.writes, 3);
  kcld_checkpoint_close(cp);
  kcld_test_loop_finish(&loop);
}

/* ======== Failures ======== */

static void test_transient_failure_retried(void **state)
{
  (void)state;
  uv_loop_t loop;
  struct fake f;
  assert_int_equal(uv_loop_init(&loop), 0);
  struct kcld_checkpoint *cp = make(&loop, &f, 0, NULL, 0);

  assert_int_equal(kcld_checkpoint_progress(cp, "5", 0), 0);
  complete(&f, KCLD_ETRANSPORT);
  /* No write right away, even on a new report (backoff), ... */
  assert_int_equal(kcld_checkpoint_progress(cp, "6", 0), 0);
  assert_int_equal(f.writes, 1);
  /* ... but the timer retries, with the latest position. */
  sleep_loop(&loop, 150);
  assert_int_equal(f.writes, 2);
  assert_string_equal(f.seq[1], "6");
  complete(&f, KCLD_EAWS);
  sleep_loop(&loop, 150);
  assert_int_equal(f.writes, 3);
  complete(&f, 0);
  const char *seq;
  assert_int_equal(kcld_checkpoint_written(cp, &seq, NULL), 1);
  assert_string_equal(seq, "6");
  sleep_loop(&loop, 150);
  assert_int_equal(f.writes, 3);
  assert_int_equal(f.lost_calls, 0);
  struct kcld_checkpoint_stats st;
  kcld_checkpoint_stats(cp, &st);
  assert_int_equal(st.failures, 2);
  assert_int_equal(st.written, 1);
  kcld_checkpoint_close(cp);
  kcld_test_loop_finish(&loop);
}

static void test_lost_stops_writing(void **state)
{
  (void)state;
  uv_loop_t loop;
  struct fake f;
  struct flushed fl = {0};
  assert_int_equal(uv_loop_init(&loop), 0);
  struct kcld_checkpoint *cp = make(&loop, &f, 0, NULL, 0);

  assert_int_equal(kcld_checkpoint_progress(cp, "5", 0), 0);
  assert_int_equal(kcld_checkpoint_progress(cp, "7", 0), 0);
  kcld_checkpoint_flush(cp, on_flushed, &fl);
  assert_int_equal(fl.calls, 0);
  complete(&f, KCLD_ELOST);
  assert_int_equal(f.lost_calls, 1);
  assert_int_equal(fl.calls, 1);
  assert_int_equal(fl.err, KCLD_ELOST);
  assert_int_equal(kcld_checkpoint_progress(cp, "8", 0), KCLD_ELOST);
  kcld_checkpoint_flush(cp, on_flushed, &fl);
  assert_int_equal(fl.calls, 2);
  assert_int_equal(fl.err, KCLD_ELOST);
  sleep_loop(&loop, 100);
  assert_int_equal(f.writes, 1);
  assert_int_equal(f.lost_calls, 1);
  kcld_checkpoint_close(cp);
  kcld_test_loop_finish(&loop);
}

/* ======== Flush ======== */

static void test_flush_ignores_interval(void **state)
{
  (void)state;
  uv_loop_t loop;
  struct fake f;
  struct flushed fl = {0}, fl2 = {0}, fl3 = {0};
  assert_int_equal(uv_loop_init(&loop), 0);
  struct kcld_checkpoint *cp = make(&loop, &f, 60000, NULL, 0);

  /* Nothing reported: the flush is done at once. */
  kcld_checkpoint_flush(cp, on_flushed, &fl);
  assert_int_equal(fl.calls, 1);
  assert_int_equal(fl.err, 0);

  assert_int_equal(kcld_checkpoint_progress(cp, "1", 0), 0);
  complete(&f, 0);
  assert_int_equal(kcld_checkpoint_progress(cp, "2", 0), 0);
  assert_int_equal(f.writes, 1); /* the interval holds it back */
  kcld_checkpoint_flush(cp, on_flushed, &fl2);
  assert_int_equal(f.writes, 2); /* the flush does not wait */
  assert_string_equal(f.seq[1], "2");
  /* A report during the flush: the flush waits only for what came before,
   * a second flush for the new one. */
  assert_int_equal(kcld_checkpoint_progress(cp, "3", 0), 0);
  kcld_checkpoint_flush(cp, on_flushed, &fl3);
  assert_int_equal(fl2.calls, 0);
  complete(&f, KCLD_ETIMEDOUT); /* a transient failure: retried */
  assert_int_equal(fl2.calls, 0);
  sleep_loop(&loop, 150);
  assert_int_equal(f.writes, 3);
  assert_string_equal(f.seq[2], "3");
  complete(&f, 0);
  assert_int_equal(fl2.calls, 1);
  assert_int_equal(fl2.err, 0);
  assert_int_equal(fl3.calls, 1);
  assert_int_equal(fl3.err, 0);
  assert_int_equal(kcld_checkpoint_pending(cp), 0);
  kcld_checkpoint_close(cp);
  kcld_test_loop_finish(&loop);
}

static void test_flush_waits_for_in_flight(void **state)
{
  (void)state;
  uv_loop_t loop;
  struct fake f;
  struct flushed fl = {0};
  assert_int_equal(uv_loop_init(&loop), 0);
  struct kcld_checkpoint *cp = make(&loop, &f, 0, NULL, 0);
  assert_int_equal(kcld_checkpoint_progress(cp, "1", 0), 0);
  kcld_checkpoint_flush(cp, on_flushed, &fl);
  assert_int_equal(f.writes, 1); /* no second write for the same position */
  assert_int_equal(fl.calls, 0);
  complete(&f, 0);
  assert_int_equal(fl.calls, 1);
  assert_int_equal(fl.err, 0);
  assert_int_equal(f.writes, 1);
  kcld_checkpoint_close(cp);
  kcld_test_loop_finish(&loop);
}

/* ======== Lose and close ======== */

static void test_lose_and_close_with_write_in_flight(void **state)
{
  (void)state;
  uv_loop_t loop;
  struct fake f;
  struct flushed fl = {0};
  assert_int_equal(uv_loop_init(&loop), 0);
  struct kcld_checkpoint *cp = make(&loop, &f, 0, NULL, 0);
  assert_int_equal(kcld_checkpoint_progress(cp, "1", 0), 0);
  assert_int_equal(kcld_checkpoint_progress(cp, "2", 0), 0);
  kcld_checkpoint_flush(cp, on_flushed, &fl);
  kcld_checkpoint_lose(cp);
  assert_int_equal(fl.calls, 1);
  assert_int_equal(fl.err, KCLD_ELOST);
  assert_int_equal(kcld_checkpoint_progress(cp, "3", 0), KCLD_ELOST);
  complete(&f, 0); /* the result of the write in flight is ignored */
  assert_int_equal(f.writes, 1);
  assert_int_equal(f.lost_calls, 0);

  /* close with a write in flight: memory lives until the writer answers. */
  struct kcld_checkpoint *cp2 = make(&loop, &f, 0, NULL, 0);
  struct flushed fl2 = {0};
  assert_int_equal(kcld_checkpoint_progress(cp2, "1", 0), 0);
  assert_int_equal(kcld_checkpoint_progress(cp2, "2", 0), 0);
  kcld_checkpoint_flush(cp2, on_flushed, &fl2);
  kcld_checkpoint_close(cp2);
  assert_int_equal(fl2.calls, 1);
  assert_int_equal(fl2.err, KCLD_ECANCELED);
  uv_run(&loop, UV_RUN_NOWAIT); /* the timer closes; cp2 must survive */
  complete(&f, KCLD_ELOST); /* no lost callback after close; frees */
  assert_int_equal(f.lost_calls, 0);
  assert_int_equal(f.writes, 1);

  kcld_checkpoint_close(cp);
  kcld_checkpoint_close(NULL);
  kcld_test_loop_finish(&loop);
}

/* Closing from inside a flush callback is safe. */
static void close_in_cb(int err, void *arg)
{
  (void)err;
  kcld_checkpoint_close(arg);
}

static void test_close_from_flush_callback(void **state)
{
  (void)state;
  uv_loop_t loop;
  struct fake f;
  assert_int_equal(uv_loop_init(&loop), 0);
  struct kcld_checkpoint *cp = make(&loop, &f, 0, NULL, 0);
  assert_int_equal(kcld_checkpoint_progress(cp, "1", 0), 0);
  complete(&f, 0);
  assert_int_equal(kcld_checkpoint_progress(cp, "2", 0), 0);
  kcld_checkpoint_flush(cp, close_in_cb, cp);
  kcld_checkpoint_flush(cp, close_in_cb, cp);
  complete(&f, 0);
  assert_int_equal(f.writes, 2);
  kcld_test_loop_finish(&loop);
}

/* ======== A writer that answers before it returns ======== */

static void test_sync_writer(void **state)
{
  (void)state;
  uv_loop_t loop;
  struct fake f;
  struct flushed fl = {0};
  assert_int_equal(uv_loop_init(&loop), 0);
  struct kcld_checkpoint *cp = make(&loop, &f, 0, NULL, 0);
  f.sync = 1;
  for (int i = 1; i <= 20; i++) {
    char s[16];
    snprintf(s, sizeof(s), "%d", i);
    assert_int_equal(kcld_checkpoint_progress(cp, s, 0), 0);
  }
  assert_int_equal(f.writes, 20);
  assert_string_equal(f.seq[19], "20");
  f.sync_err = KCLD_ETRANSPORT;
  assert_int_equal(kcld_checkpoint_progress(cp, "21", 0), 0);
  assert_int_equal(f.writes, 21);
  f.sync_err = 0;
  kcld_checkpoint_flush(cp, on_flushed, &fl);
  assert_int_equal(fl.calls, 1);
  assert_int_equal(fl.err, 0);
  assert_int_equal(f.writes, 22);
  f.sync_err = KCLD_ELOST;
  assert_int_equal(kcld_checkpoint_progress(cp, "22", 0), 0);
  assert_int_equal(f.lost_calls, 1);
  assert_int_equal(kcld_checkpoint_progress(cp, "23", 0), KCLD_ELOST);
  kcld_checkpoint_close(cp);
  kcld_test_loop_finish(&loop);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_new_rejects_bad_options),
    cmocka_unit_test(test_every_report_one_in_flight),
    cmocka_unit_test(test_order_is_numeric_and_forward_only),
    cmocka_unit_test(test_longest_sequence),
    cmocka_unit_test(test_interval_coalesces),
    cmocka_unit_test(test_transient_failure_retried),
    cmocka_unit_test(test_lost_stops_writing),
    cmocka_unit_test(test_flush_ignores_interval),
    cmocka_unit_test(test_flush_waits_for_in_flight),
    cmocka_unit_test(test_lose_and_close_with_write_in_flight),
    cmocka_unit_test(test_close_from_flush_callback),
    cmocka_unit_test(test_sync_writer),
    cmocka_unit_test(test_window_text_written_with_progress),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
