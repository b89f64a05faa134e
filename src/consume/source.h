/* source.h — where a shard consumer's records come from: the interface
 * between the consumer core (shard_consumer.c: parents, delivery queue,
 * progress and checkpoints, shard end, stop, lose, close) and a fetch
 * source.  Internal to consume/.
 *
 * Two sources, chosen by the core at start: polling (poller.h:
 * GetShardIterator and GetRecords, rate limit, idle waits, backoff, expired
 * iterators) and enhanced fan-out (subscriber.h: SubscribeToShard
 * subscriptions, resubscribed after each end from the last continuation).
 *
 * The contract, all on the loop thread:
 *  - start: the core hands over the start position and its callbacks; the
 *    source starts reading at once.
 *  - The source hands the core each parsed answer through cbs.batch, in
 *    shard order, exactly once (a batch may hold no records: it still
 *    carries MillisBehindLatest and, at the end, the child shards).  A
 *    batch with shard_end set is the shard's last; the source reads no more
 *    after it.  cbs.ended says the shard is over without a
 *    batch (a closed shard with nothing after the position asked for).
 *  - Before asking for more (a call, or reading on in a stream) the source
 *    asks cbs.wanted; 0 means the core is over its budget or not reading
 *    (draining, stopping): the source waits without a timer until the core
 *    calls ops.resume.
 *  - ops.stop: no more batches or ends are handed over, ever; work in
 *    flight is dropped when it comes back.
 *  - ops.close: stop, then free once nothing is in flight; cbs.closed runs
 *    then, from a loop callback (never inside close).  After close the core
 *    calls nothing else on the source.
 * Callbacks never run from inside a call into the source's ops. */
#ifndef KCLD_CONSUME_SOURCE_H
#define KCLD_CONSUME_SOURCE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "aws/kinesis.h"
#include "base/seq.h"
#include "consume/budget.h"
#include "consume/getrecords.h"
#include "consume/record.h"

struct kcld_shard_consumer_stats;

/* Where reading starts. */
enum kcld_source_start {
  KCLD_SOURCE_AFTER,        /* AFTER_SEQUENCE_NUMBER seq */
  KCLD_SOURCE_AT,           /* AT_SEQUENCE_NUMBER seq */
  KCLD_SOURCE_TRIM_HORIZON,
  KCLD_SOURCE_LATEST,
  KCLD_SOURCE_AT_TIMESTAMP  /* timestamp_ms */
};

struct kcld_source_pos {
  enum kcld_source_start type;
  const char *seq;          /* AFTER and AT */
  int64_t timestamp_ms;     /* AT_TIMESTAMP */
};

/* What the source tells the core (arg is the core's). */
struct kcld_source_cbs {
  /* One answer, parsed: 0 and the core took the reference, or a negative
   * KCLD_E* code (out of memory) and nothing was kept: the source reads
   * the same records again after a backoff. */
  int (*batch)(void *arg, struct kcld_record_batch *b);
  /* The shard is over and no batch says so. */
  void (*ended)(void *arg);
  /* 1: read more now; 0: wait for ops.resume. */
  int (*wanted)(void *arg);
  /* After ops.close, once nothing is in flight. */
  void (*closed)(void *arg);
  void *arg;
};

/* The sink's keep test (struct kcld_shard_sink.keep), which the source's
 * parse job runs over each batch it parses (kcld_record_batch_filter),
 * before the batch is handed over: on the worker pool, or on the loop for
 * an answer the source parses there.  fn NULL: none. */
struct kcld_source_keep {
  kcld_record_keep_fn fn;
  const void *arg;
};

/* The ops a source implements.  `src` is what its start returned. */
struct kcld_source_ops {
  /* Wanted may say yes again: read on if idle. */
  void (*resume)(void *src);
  /* No more batches; work in flight is dropped. */
  void (*stop)(void *src);
  /* Stop and free; cbs.closed follows. */
  void (*close)(void *src);
  /* Adds the source's counters (calls, empty answers, throttles, expired
   * iterators, errors) to *st, and sets st->fetch_failing and
   * st->fetch_error from its last attempt (KCLD_SHARD_FETCH_OK and "" when
   * it answered), for the stall detector. */
  void (*stats)(const void *src, struct kcld_shard_consumer_stats *st);
  /* 1: every answer moves the shard on and is progress (polling: each
   * GetRecords answer carries the next iterator).  0: an answer with no
   * records while MillisBehindLatest > 0 is not progress (a stream's
   * events can keep coming while nothing moves). */
  int every_answer_moves;
  /* New fetch settings (a configuration reload), from the next call on:
   * records per call (polling only) and the wait after an empty answer.
   * NULL when the source has neither. */
  void (*configure)(void *src, int max_records, uint64_t idle_ms);
};

/* 1 when a source may start with these: every callback set, and a valid
 * sequence number for AFTER and AT; else 0. */
static inline int kcld_source_args_valid(const struct kcld_source_cbs *cbs,
                                         const struct kcld_source_pos *start)
{
  return cbs->batch && cbs->ended && cbs->wanted && cbs->closed &&
         ((start->type != KCLD_SOURCE_AFTER &&
           start->type != KCLD_SOURCE_AT) || kcld_seq_valid(start->seq));
}

/* ======== What both sources share ======== */

/* The part of a source's options both kinds take. */
struct kcld_source_args {
  uv_loop_t *loop;
  const char *shard_id;               /* copied */
  struct kcld_source_pos start;       /* seq copied */
  uint64_t min_call_ms;               /* between two calls */
  uint64_t backoff_base_ms;
  uint64_t backoff_max_ms;
  struct kcld_fetch_budget *budget;   /* parse jobs; borrowed */
  struct kcld_fetch_account *account; /* the shard's; borrowed */
  struct kcld_source_cbs cbs;
  struct kcld_source_keep keep;       /* run in the parse job */
};

/* What both sources keep the same way; each embeds one first, so the
 * parse job, the timer's data and the source are one address. */
struct kcld_source_base {
  struct kcld_fetch_job job;          /* the one parse job */
  uv_timer_t timer;                   /* rate limit, idle, backoff */
  struct kcld_source_args args;       /* as given; args.shard_id is
                                         shard_id, args.start.seq
                                         start_seq */
  char *shard_id;
  char start_seq[KCLD_SEQ_MAX + 1];

  /* The parse job's input is the source's; its results: */
  struct kcld_getrecords_mem mem;
  struct kcld_record_batch *parsed;
  int parse_err;
  char parse_msg[256];

  int timer_armed;
  int timer_open;
  int stopped;                        /* no more batches to the core */
  int closing;
  int called;                         /* last_call_ms is set */
  uint64_t last_call_ms;
  uint64_t next_at_ms;                /* no call before this */
  unsigned fails_in_row;
  int failing;                        /* KCLD_SHARD_FETCH_*: the last
                                         failure since the last answer or
                                         event handed over, else OK */
  char failing_error[160];            /* its type and message */

  /* Estimates for admission: the last answer's sizes, the largest seen. */
  size_t last_body, last_batch, top_body, top_batch;
  int behind;                         /* the last answer was behind */
};

/* Fills b from a (shard id and start sequence copied) and opens its timer
 * (timer.data = b); `run` and `done` are the parse job's.  Returns 0,
 * KCLD_EINVAL (a missing loop, shard, budget, account, callback or a bad
 * start; nothing opened) or KCLD_ENOMEM. */
int kcld_source_base_init(struct kcld_source_base *b,
                          const struct kcld_source_args *a,
                          void (*run)(struct kcld_fetch_job *j),
                          void (*done)(struct kcld_fetch_job *j, int status));

/* Frees what init copied and the parse scratch (the timer must be closed:
 * timer_open 0).  The source struct itself is the caller's. */
void kcld_source_base_clean_up(struct kcld_source_base *b);

/* Answers (GetRecords bodies, SubscribeToShard events) up to this size -
 * an idle shard's empty one is ~300 bytes - are parsed on the loop: the
 * parse takes a few microseconds, where the round trip through a pool
 * thread (queue, wake-up, completion signal) costs the loop itself more
 * than that, and the thread as much again; idle shards then start no
 * pool thread at all. */
#define KCLD_SOURCE_INLINE_PARSE_MAX 4096

/* Parses body[0..len) into b->parsed / b->parse_err / b->parse_msg and
 * runs the keep test over the batch: the parse job's work, any thread. */
void kcld_source_parse(struct kcld_source_base *b, const char *body,
                       size_t len);

/* The backoff after `fails` failures in a row (base/backoff's equal
 * jitter between backoff_base_ms and backoff_max_ms). */
uint64_t kcld_source_backoff_ms(const struct kcld_source_base *b,
                                unsigned fails);

/* Remembers what a failed `op` says about the shard, for the stall
 * detector (kcld_shard_fetch_failure), with its type and message. */
void kcld_source_note_failure(struct kcld_source_base *b, const char *op,
                              enum kcld_kinesis_fault fault,
                              const char *type, const char *message);

/* Sets st->fetch_failing and st->fetch_error from b. */
void kcld_source_failing_stats(const struct kcld_source_base *b,
                               struct kcld_shard_consumer_stats *st);

/* Notes the bytes an answer's body took, and a parsed batch's blocks and
 * whether it was behind the tip: the next admission's estimates. */
void kcld_source_note_body(struct kcld_source_base *b, size_t bytes);
void kcld_source_note_batch(struct kcld_source_base *b,
                            const struct kcld_record_batch *batch);

/* What the next answer may take (the largest seen while behind, else the
 * last), each at least `floor` bytes. */
void kcld_source_estimate(const struct kcld_source_base *b, size_t floor,
                          size_t *body, size_t *batch);

/* 1 and the timer armed (to `cb`) when the backoff or the call rate does
 * not allow a call yet; 0 when a call may go now. */
int kcld_source_wait(struct kcld_source_base *b, uv_timer_cb cb);

#endif
