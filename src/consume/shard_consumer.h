/* shard_consumer.h — one held shard: wait for its parents, get an iterator,
 * fetch with GetRecords (prefetching within a byte budget) - or, in
 * enhanced fan-out mode, subscribe with SubscribeToShard - parse on the
 * worker pool, hand the records to a sink in shard order, checkpoint what the
 * sink reports as dealt with, and finish the shard at its end.
 *
 * Life of a consumer (all on the loop thread):
 *
 * 1. Parents: kcld_coordinator_parents_done, asked again every
 *    parents_poll_ms until it says done.
 * 2. Iterator: GetShardIterator AFTER_SEQUENCE_NUMBER the lease checkpoint;
 *    AT_SEQUENCE_NUMBER when checkpoint_sub > 0 (then the user records at
 *    or below (checkpoint, sub) are skipped); TRIM_HORIZON, LATEST or
 *    AT_TIMESTAMP (initial_timestamp_ms) for a fresh lease.  A lease at
 *    SHARD_END finishes at once (KCLD_SHARD_CONSUMER_ENDED).
 * 3. GetRecords loop, Limit max_records.  After an answer with no records
 *    and MillisBehindLatest 0 (or absent), wait idle_ms; otherwise call
 *    again at once, but never start more than one call (GetRecords or
 *    GetShardIterator) per min_call_interval_ms (200 ms = 5 calls/s).
 *    Prefetch: fetching goes on while the sink works, within memory
 *    budgets (budget.h): a GetRecords is not issued while this shard's
 *    bytes (bodies, parse work, batches until their last reference goes)
 *    plus the expected body exceed max_buffered_bytes, nor while the
 *    process-wide budget (opts.budget) cannot take the expected answer.
 *    Errors: ProvisionedThroughputExceededException and
 *    KMSThrottlingException back off (exponential with jitter, capped);
 *    ExpiredIteratorException gets a new iterator AFTER_SEQUENCE_NUMBER the
 *    last record fetched (or the start position when nothing was fetched
 *    yet); anything else backs off with one warning line (shard, op, type,
 *    message) and tries again, with a new iterator after three non-transient
 *    failures in a row.  Never a crash, never a silent stall.
 * 4. Deliveries: one batch at a time to the sink, in fetch order; the sink
 *    reports progress and says when each delivery is done.  Progress goes
 *    to the shard's checkpoint (checkpoint.h, checkpoint_interval_ms).
 * 5. An answer without NextShardIterator is the shard's end: once every
 *    delivered record is reported dealt with, flush the checkpoint, then
 *    kcld_coordinator_shard_ended (SHARD_END; children from the ChildShards
 *    of that answer) and finish with KCLD_SHARD_CONSUMER_ENDED.
 *
 * Every consumer finishes exactly once through opts.finished (ENDED, STOPPED
 * or LOST), always from a later loop iteration, never from inside a call into
 * this module; then the owner calls kcld_shard_consumer_close().
 *
 * The record path runs one way: progress() and done() only note what the
 * sink says; the consumer acts on it (the next delivery, the shard's end,
 * a stop's flush) from its own loop callback on a later turn.  So deliver()
 * is never called from inside done(), progress() or cancel(), and a sink
 * may call those from anywhere.
 *
 * Fetching is the job of a fetch source (source.h): polling (poller.h,
 * steps 2 and 3 above), or enhanced fan-out when opts.fanout is set
 * (subscriber.h: SubscribeToShard from the same start position, then from
 * each subscription's last continuation; no GetRecords call; an event
 * with ChildShards and no continuation is the end, as in step 5).
 * Parsing (base64, KPL de-aggregation; getrecords.h) and the sink's keep
 * test (its filter) run on the worker pool (the budget's parse jobs);
 * batches come back on the loop and are queued in fetch order.
 * The program must have called json_object_seed(0) (see getrecords.h). */
#ifndef KCLD_CONSUME_SHARD_CONSUMER_H
#define KCLD_CONSUME_SHARD_CONSUMER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "aws/fanout.h"
#include "aws/kinesis.h"
#include "consume/budget.h"
#include "consume/checkpoint.h"
#include "consume/record.h"
#include "lease/coordinator.h"

struct kcld_shard_consumer;

/* ======== The sink: where records go (the dispatcher) ======== */

/* One delivery: records[0..count-1] of one GetRecords response, in shard
 * order, count >= 1.  Lives (and the consumer's reference on `batch` with
 * it) until kcld_shard_consumer_done(d).  Read-only for the sink. */
struct kcld_shard_delivery {
  struct kcld_shard_consumer *consumer;
  const char *shard_id;
  struct kcld_record_batch *batch;   /* owns the records */
  const struct kcld_record *records; /* points into batch->records */
  size_t count;
  int64_t millis_behind_latest;      /* of the response; -1 when absent */
};

/* The sink contract, per shard:
 *
 *  deliver(impl, d): hands over the next records of the shard.  Called only
 *    when the previous delivery of this shard is done, so deliveries of one
 *    shard never overlap and arrive in shard order, each record exactly
 *    once.  Returns 0 when accepted: kcld_shard_consumer_done(d) must then
 *    follow exactly once (it may be called from inside deliver; the next
 *    delivery comes on a later loop turn either way).  Returns a
 *    negative KCLD_E* code to refuse: nothing is kept, done must not be
 *    called, and the same records are offered again after a short wait.
 *
 *  kcld_shard_consumer_progress(d->consumer, seq, sub): "every record of
 *    this shard up to and including (seq, sub) that was delivered is dealt
 *    with" (handled, or given up on by the sink's own policy).  Any number of
 *    times, in non-decreasing order, from inside deliver, between deliver and
 *    done, or after done for records whose batch the sink still holds (it
 *    then took its own reference with kcld_record_batch_acquire).  Only this
 *    moves the checkpoint, and never past the last position reported.
 *
 *  kcld_shard_consumer_done(d): the sink no longer needs `d` nor the
 *    consumer's reference on d->batch: the batch's bytes leave the prefetch
 *    budget and the next delivery may start.  It does not by itself mean the
 *    records are dealt with; progress says that.
 *
 *  cancel(impl, consumer): the consumer stops (lease lost, close, or a
 *    graceful stop past its deadline) while something it delivered is not yet
 *    reported dealt with.  The sink abandons that work as soon as it can:
 *    after cancel returns it must not call progress for this consumer again
 *    nor use any delivery's records unless it holds its own batch reference.
 *    kcld_shard_consumer_done() is still due, exactly once, for a delivery
 *    in flight (inside cancel or later); the consumer's memory lives until
 *    then.  Called at most once per consumer.
 *
 *  keep(keep_arg, r), optional: whether the sink takes record r (1) or
 *    passes it over (0).  Asked where each batch is parsed: on the worker
 *    pool (on the loop only for a small answer: poller.c), so that a costly
 *    test (a filter) never holds up the loop for a large batch;
 *    the answer is r->filtered, and such records are still delivered (the
 *    sink deals with them as it likes).  keep_arg must stay valid and
 *    unchanged until every consumer given this sink is freed. */
struct kcld_shard_sink {
  int (*deliver)(void *impl, struct kcld_shard_delivery *d);
  void (*cancel)(void *impl, struct kcld_shard_consumer *c);
  /* Optional: the consumer is being closed (kcld_shard_consumer_close),
   * after cancel when that was due: the sink drops whatever it still
   * keeps for it (a window's state) and never calls it again, except
   * kcld_shard_consumer_done for a delivery in flight. */
  void (*closed)(void *impl, struct kcld_shard_consumer *c);
  void *impl;
  kcld_record_keep_fn keep;
  const void *keep_arg;
};

/* See struct kcld_shard_sink.  Ignored after the consumer has finished or
 * been told to stop at once (lost, close); a position beyond the last
 * delivered record is clamped to it, with a warning. */
void kcld_shard_consumer_progress(struct kcld_shard_consumer *c,
                                  const char *sequence, uint64_t sub);

/* kcld_shard_consumer_progress, with the shard's tumbling window as of
 * this position (kcldWindowState text, written with the checkpoint; NULL =
 * unchanged, "" = none).  A new text at a position already reported is
 * written at that position. */
void kcld_shard_consumer_progress_window(struct kcld_shard_consumer *c,
                                         const char *sequence, uint64_t sub,
                                         const char *window);

/* See struct kcld_shard_sink. */
void kcld_shard_consumer_done(struct kcld_shard_delivery *d);

/* ======== The consumer ======== */

enum kcld_shard_consumer_end {
  /* The shard is finished: SHARD_END is stored and the children's leases
   * exist (err 0).  Also for a lease that was at SHARD_END already. */
  KCLD_SHARD_CONSUMER_ENDED = 0,
  /* kcld_shard_consumer_stop() completed: err 0 when everything delivered
   * was dealt with and checkpointed; KCLD_ETIMEDOUT when the deadline cut
   * the sink or the final checkpoint short (what was reported before that is
   * written when the write got through). */
  KCLD_SHARD_CONSUMER_STOPPED = 1,
  /* The lease is gone: kcld_shard_consumer_lose() (err 0) or a checkpoint
   * answered KCLD_ELOST (err KCLD_ELOST).  Nothing more was delivered or
   * checkpointed. */
  KCLD_SHARD_CONSUMER_LOST = 2
};

typedef void (*kcld_shard_consumer_cb)(struct kcld_shard_consumer *c,
                                       enum kcld_shard_consumer_end how,
                                       int err, void *arg);

struct kcld_shard_consumer_opts {
  uv_loop_t *loop;
  struct kcld_kinesis *kinesis;      /* Kinesis calls */
  struct kcld_fanout *fanout;        /* enhanced fan-out: subscribe with
                                        this client as consumer_arn; NULL =
                                        polling */
  const char *consumer_arn;          /* with fanout: the ACTIVE consumer */
  uint64_t subscribe_interval_ms;    /* fan-out: between SubscribeToShard
                                        calls; 0 = 1000 (1 call/s) */
  struct kcld_coordinator *coordinator; /* parents, checkpoints and the
                                        shard's end (lease/coordinator.h);
                                        required */
  const char *stream;                /* stream name or ARN (arn:...) */
  /* The lease as acquired: shard_id (the lease key: the consumer's name
   * towards the coordinator, the sink and the user), checkpoint,
   * checkpoint_sub are copied; Kinesis is asked for kcld_lease_shard()
   * (the same, but for a multi-stream lease); nothing else is read. */
  const struct kcld_lease *lease;
  int64_t initial_timestamp_ms;      /* for a lease at AT_TIMESTAMP */
  int max_records;                   /* fetch.max_records; > 0 */
  uint64_t idle_ms;                  /* fetch.idle_time; > 0, min 200 */
  size_t max_buffered_bytes;         /* fetch.max_buffered_bytes; > 0 */
  struct kcld_fetch_budget *budget;  /* the process-wide budget (budget.h),
                                        borrowed; NULL = a private one with
                                        no process-wide limit */
  uint64_t checkpoint_interval_ms;   /* checkpoint.interval; 0 = every
                                        progress report */
  uint64_t parents_poll_ms;          /* 0 = 2000 */
  uint64_t min_call_interval_ms;     /* 0 = 200 (5 calls/s) */
  uint64_t backoff_base_ms;          /* 0 = 200 */
  uint64_t backoff_max_ms;           /* 0 = 10000 */
  struct kcld_shard_sink sink;       /* deliver and cancel required */
  kcld_shard_consumer_cb finished;   /* required */
  void *arg;
};

/* Counters and gauges, for metrics and status. */
struct kcld_shard_consumer_stats {
  uint64_t records;            /* user records fetched (after de-agg.) */
  uint64_t kinesis_records;    /* Kinesis records fetched */
  uint64_t bytes;              /* payload bytes fetched (data_bytes) */
  uint64_t get_records_calls;  /* GetRecords calls started */
  uint64_t loop_parses;        /* GetRecords answers small enough to be
                                  parsed on the loop (not the pool) */
  uint64_t subscriptions;      /* SubscribeToShard calls started (fan-out) */
  uint64_t empty_responses;    /* GetRecords answers with no records; in
                                  fan-out mode, events with no records and
                                  nothing behind (a heartbeat at the tip) */
  uint64_t throttles;          /* ProvisionedThroughputExceeded + KMS;
                                  fan-out: LimitExceeded + KMS throttling */
  uint64_t expired_iterators;
  uint64_t errors;             /* other failed calls and parses */
  uint64_t deliveries;         /* accepted by the sink */
  size_t buffered_bytes;       /* batches fetched, not yet done with */
  size_t queued_batches;       /* fetched, not yet delivered */
  int64_t millis_behind_latest; /* last response's; -1 until known */
  /* Memory (budget.h): every byte of this shard's fetching - bodies,
   * parse work, batches until their last reference goes, reservations -
   * which fetch.max_buffered_bytes bounds; and its blocks allocated anew
   * versus reused from the pool. */
  size_t held_bytes;
  size_t held_bytes_peak;
  uint64_t fresh_blocks;
  uint64_t reused_blocks;
  /* For the stall detector (ops/stall.h), in loop time (uv_now, ms):
   *  - last_progress_ms: the last progress of any kind (a fetch answer that
   *    moved the shard on, records reported dealt with, a checkpoint
   *    written), or the consumer's start;
   *  - pending_since_ms: 0 when every record fetched is dealt with; else
   *    since when the records waiting have seen no handling progress: the
   *    later of when they began to wait (nothing was waiting before) and
   *    the last progress report or checkpoint written;
   *  - fetch_ms: 0 while the shard does not fetch (waiting for its parents,
   *    at its end, stopping); else the last answer that moved it on (see
   *    struct kcld_source_ops.every_answer_moves), or when fetching began;
   *  - fetch_failing: KCLD_SHARD_FETCH_*, what the source's last attempt
   *    met, and fetch_error its error type and message ("" when OK);
   *  - blocked: why the shard is not moving, if it is not:
   *    KCLD_SHARD_BLOCKED_*. */
  uint64_t last_progress_ms;
  uint64_t pending_since_ms;
  uint64_t fetch_ms;
  int fetch_failing;
  char fetch_error[160];
  int blocked;
};

/* What the fetch source's last attempt met (stats.fetch_failing). */
enum {
  KCLD_SHARD_FETCH_OK = 0,          /* it answered */
  KCLD_SHARD_FETCH_THROTTLED = 1,   /* throttled (ProvisionedThroughput-
                                       Exceeded, KMSThrottling) */
  KCLD_SHARD_FETCH_NO_ITERATOR = 2, /* no iterator: the stream or shard is
                                       not found, or GetShardIterator
                                       refuses the position
                                       (InvalidArgument): the stream
                                       deleted or re-created */
  KCLD_SHARD_FETCH_ERROR = 3        /* any other failure */
};

/* The KCLD_SHARD_FETCH_* kind of a failed Kinesis call `op` of a fetch
 * source ("GetRecords", "GetShardIterator", "SubscribeToShard") that met
 * `fault`, for its stats: THROTTLED (throughput, KMS throttling, the
 * subscribe rate), NO_ITERATOR (the stream or shard not found, or a
 * starting position GetShardIterator or SubscribeToShard refuses), else
 * ERROR.  Every source classifies its failures with this one rule. */
int kcld_shard_fetch_failure(const char *op, enum kcld_kinesis_fault fault);

/* Why a shard is not moving (stats.blocked). */
enum {
  KCLD_SHARD_BLOCKED_NONE = 0,
  KCLD_SHARD_BLOCKED_PARENTS = 1, /* waits for its parent shards */
  KCLD_SHARD_BLOCKED_MEMORY = 2,  /* its own or the process budget is full */
  KCLD_SHARD_BLOCKED_SINK = 3     /* a delivery is at the sink, more queued */
};

/* Creates and starts a consumer for opts->lease.  Everything in opts is
 * copied or borrowed for the consumer's life (kinesis, coordinator, sink).
 * Returns 0 (opts.finished will report the end), or KCLD_EINVAL (a
 * required option missing; a checkpoint that is neither a sequence number
 * nor TRIM_HORIZON, LATEST, AT_TIMESTAMP or SHARD_END) or KCLD_ENOMEM, and
 * then nothing was started. */
int kcld_shard_consumer_start(const struct kcld_shard_consumer_opts *opts,
                              struct kcld_shard_consumer **out);

/* Graceful stop: fetch no more and drop what is queued; let the delivery in
 * flight finish and wait until everything delivered is reported dealt with,
 * for at most timeout_ms (then cancel the sink); flush the checkpoint (at
 * most another max(timeout_ms left, 5 s)); then finish with STOPPED.  A
 * consumer still waiting for its parents or its iterator stops at once, and
 * one whose shard has ended but is still draining stops as STOPPED too (the
 * lease's next owner finds the end again).  Once the end is being recorded
 * (the final flush, then shard_ended), that goes on for at most timeout_ms
 * and finishes ENDED; a failure in it is not retried any more and, like
 * the deadline (KCLD_ETIMEDOUT), finishes STOPPED with the error.  No
 * effect after lose(), or once finished. */
void kcld_shard_consumer_stop(struct kcld_shard_consumer *c,
                              uint64_t timeout_ms);

/* The lease is lost: at once, no more deliveries, no checkpoint ever again,
 * drop every buffered batch, cancel the sink (when something delivered is
 * not yet reported dealt with); finish with LOST.  No effect once finished. */
void kcld_shard_consumer_lose(struct kcld_shard_consumer *c);

/* Logs at warn level "shard consumer unfinished": the consumer's phase,
 * what it waits for in it (the sink, the source, the checkpoint's flush,
 * the coordinator), its checkpoint tracker's state, the last record
 * delivered and the last reported handled.  For a stop that overran its
 * deadline. */
void kcld_shard_consumer_log_wait(const struct kcld_shard_consumer *c);

/* A handler asks to checkpoint at (sequence, sub) (the multilang
 * protocol): moves this shard's checkpoint tracker there, writes it now
 * (ignoring checkpoint_interval_ms) and calls cb once it is stored: 0,
 * KCLD_ELOST (the lease is lost, or lose() was called), KCLD_ECANCELED
 * (closed first), or the tracker's refusal of the position.  It is not the
 * sink's progress: a stop or a shard end still waits for the sink.  cb runs
 * before this returns when there is nothing to write or the consumer is
 * lost. */
void kcld_shard_consumer_checkpoint_at(struct kcld_shard_consumer *c,
                                       const char *sequence, uint64_t sub,
                                       kcld_lease_cb cb, void *arg);

/* Frees the consumer (stopping it first as kcld_shard_consumer_lose does,
 * but without calling finished).  May be called from inside finished.
 * Memory goes once the timers are closed and calls, parses and a delivery in
 * flight have come back: run the loop afterwards.  NULL is ignored. */
void kcld_shard_consumer_close(struct kcld_shard_consumer *c);

/* New fetch.max_records and fetch.idle_time (a configuration reload; both
 * > 0, as kcld_shard_consumer_start takes them): from the next GetRecords
 * call and the next idle wait on. */
void kcld_shard_consumer_set_fetch(struct kcld_shard_consumer *c,
                                   int max_records, uint64_t idle_ms);

const char *kcld_shard_consumer_shard_id(const struct kcld_shard_consumer *c);

/* The lease's kcldWindowState as acquired, handed over once (malloc'd:
 * the caller frees it; NULL when it had none, and on later calls), and the
 * checkpoint it was acquired at: *sequence (NULL unless a sequence
 * number) and *sub. */
char *kcld_shard_consumer_take_window(struct kcld_shard_consumer *c,
                                     const char **sequence, uint64_t *sub);

/* MillisBehindLatest of the last response, or -1 until one is known. */
int64_t kcld_shard_consumer_millis_behind(const struct kcld_shard_consumer *c);

void kcld_shard_consumer_stats(const struct kcld_shard_consumer *c,
                               struct kcld_shard_consumer_stats *out);

/* The checkpoint tracker of this shard (for status: handled and written
 * positions).  Valid until close. */
const struct kcld_checkpoint *kcld_shard_consumer_checkpoint(
  const struct kcld_shard_consumer *c);

#endif
