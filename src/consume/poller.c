/* poller.c — the polling fetch source: iterator, GetRecords loop, rate
 * limit, idle waits, backoff, expired iterators, parsing on the worker pool
 * (small answers on the loop).  See poller.h and source.h.
 *
 * Everything here runs on the loop thread except parse_work() when it runs
 * on the pool: it reads the raw body and writes the parse result of the one
 * job in flight and touches nothing else. */
#include "consume/poller.h"

#include <stdlib.h>
#include <string.h>

#include "base/rand.h"
#include "consume/getrecords.h"
#include "consume/shard_consumer.h"
#include "err.h"
#include "log.h"

#define FAILS_BEFORE_NEW_ITERATOR 3
#define MIN_ESTIMATE 4096       /* bytes of an empty answer, about */
#define IDLE_JITTER_PCT 10
#define FIRST_BODY ((size_t)14 << 20)
#define FIRST_BATCH ((size_t)11 << 20)

/* What is in flight (at most one thing). */
enum fetch_state { F_IDLE, F_ITER, F_CALL, F_PARSE };

struct poller {
  struct kcld_source_base base; /* first: the parse job and timer find us */
  struct kcld_kinesis *kinesis;
  char *stream;
  int max_records;
  uint64_t idle_ms;

  enum fetch_state fetch;
  char *iterator;          /* NULL: a new one is needed (or the end) */
  struct kcld_seq_pos last_fetched; /* last Kinesis record fetched */

  /* The body, received into a block of the account; owned by the parse
   * job while fetch == F_PARSE. */
  struct kcld_http_body body;

  size_t first_estimate;   /* before the first answer */
  int answered;            /* an answer was parsed: the sizes are known */

  uint64_t get_records_calls, empty_responses, throttles, expired_iterators,
    errors, loop_parses;
};

static void schedule(struct poller *p);
static uint64_t idle_wait(const struct poller *p);

/* ======== Freeing ======== */

static void maybe_free(struct poller *p)
{
  if (!p->base.closing || p->base.timer_open || p->fetch != F_IDLE)
    return;
  struct kcld_source_cbs cbs = p->base.args.cbs;
  free(p->iterator);
  kcld_fetch_free(p->body.p);
  kcld_source_base_clean_up(&p->base);
  free(p->stream);
  free(p);
  cbs.closed(cbs.arg);
}

static void on_timer_closed(uv_handle_t *h)
{
  struct poller *p = h->data;
  p->base.timer_open = 0;
  maybe_free(p);
}

/* ======== Failures ======== */

/* A call or a parse failed: count it, log it, back off (or, for an expired
 * iterator, get a new one at once). */
static void fetch_failed(struct poller *p, const char *op,
                         const struct kcld_svc_status *st)
{
  enum kcld_kinesis_fault fault = kcld_kinesis_fault(st);
  const char *type = st->type && st->type[0] ? st->type
                                             : kcld_strerror(st->err);
  if (fault == KCLD_KINESIS_EXPIRED_ITERATOR) {
    p->expired_iterators++;
    kcld_log(KCLD_LOG_INFO, "shard iterator expired; getting a new one",
             "shard", p->base.shard_id, "op", op, "after",
             p->last_fetched.set ? p->last_fetched.seq : "(start)", NULL);
    free(p->iterator);
    p->iterator = NULL;
    p->base.next_at_ms = 0;
    schedule(p);
    return;
  }
  if (fault == KCLD_KINESIS_CANCELED) {
    /* The Kinesis client is closed: the owner is shutting down and will
     * stop or close this consumer. */
    kcld_log(KCLD_LOG_INFO, "Kinesis client closed; fetching stops", "shard",
             p->base.shard_id, "op", op, NULL);
    return;
  }
  p->base.fails_in_row++;
  uint64_t delay = kcld_source_backoff_ms(&p->base, p->base.fails_in_row);
  kcld_source_note_failure(&p->base, op, fault, type, st->message);
  if (fault == KCLD_KINESIS_THROUGHPUT || fault == KCLD_KINESIS_KMS_THROTTLED) {
    p->throttles++;
    kcld_log(KCLD_LOG_DEBUG, "throttled; backing off", "shard",
             p->base.shard_id, "op", op, "type", type,
             KCLD_LOG_UINT("retry_ms", delay), NULL);
  } else {
    p->errors++;
    kcld_log(KCLD_LOG_WARN, "Kinesis call failed; backing off",
             "shard", p->base.shard_id, "op", op, "type", type,
             KCLD_LOG_INT("status", st->http_status), "message",
             st->message ? st->message : "", KCLD_LOG_UINT("retry_ms", delay),
             NULL);
    if (p->iterator && p->base.fails_in_row >= FAILS_BEFORE_NEW_ITERATOR &&
        fault != KCLD_KINESIS_TRANSIENT) {
      /* The iterator itself may be the problem: start afresh after the
       * last record fetched. */
      free(p->iterator);
      p->iterator = NULL;
    }
  }
  p->base.next_at_ms = uv_now(p->base.args.loop) + delay;
  schedule(p);
}

/* fetch_failed() for an error of our own (not a service answer). */
static void local_failure(struct poller *p, const char *op, int err,
                          const char *message)
{
  struct kcld_svc_status st = {.err = err, .type = "", .message = message};
  fetch_failed(p, op, &st);
}

/* ======== GetShardIterator ======== */

/* A call came back: 1 when its answer is to be used; 0 when the source
 * is closing (freed now if nothing else is out), stopped, or the call failed
 * (handled here). */
static int call_returned(struct poller *p, const char *op,
                         const struct kcld_svc_status *st)
{
  p->fetch = F_IDLE;
  if (p->base.closing) {
    maybe_free(p);
    return 0;
  }
  if (p->base.stopped)
    return 0;
  if (st->err) {
    fetch_failed(p, op, st);
    return 0;
  }
  return 1;
}

static void on_iterator(const struct kcld_kinesis_iterator *res, void *arg)
{
  struct poller *p = arg;
  if (!call_returned(p, "GetShardIterator", &res->st))
    return;
  p->base.fails_in_row = 0;
  if (!res->shard_iterator) {
    /* No iterator: the shard is closed and nothing is left after the
     * position asked for (the KCL reads it the same way). */
    p->base.stopped = 1;
    p->base.args.cbs.ended(p->base.args.cbs.arg);
    return;
  }
  p->iterator = strdup(res->shard_iterator);
  if (!p->iterator) {
    local_failure(p, "GetShardIterator", KCLD_ENOMEM, "out of memory");
    return;
  }
  schedule(p);
}

static void get_iterator(struct poller *p)
{
  static const enum kcld_kinesis_iterator_type types[] = {
    [KCLD_SOURCE_AFTER] = KCLD_KINESIS_AFTER_SEQUENCE_NUMBER,
    [KCLD_SOURCE_AT] = KCLD_KINESIS_AT_SEQUENCE_NUMBER,
    [KCLD_SOURCE_TRIM_HORIZON] = KCLD_KINESIS_TRIM_HORIZON,
    [KCLD_SOURCE_LATEST] = KCLD_KINESIS_LATEST,
    [KCLD_SOURCE_AT_TIMESTAMP] = KCLD_KINESIS_AT_TIMESTAMP};
  struct kcld_kinesis_iterator_req req = {
    .stream = p->stream, .shard_id = p->base.shard_id,
    .timestamp_ms = p->base.args.start.timestamp_ms};
  if (p->last_fetched.set) {
    req.type = KCLD_KINESIS_AFTER_SEQUENCE_NUMBER;
    req.sequence_number = p->last_fetched.seq;
  } else {
    req.type = types[p->base.args.start.type];
    if (p->base.args.start.type == KCLD_SOURCE_AFTER ||
        p->base.args.start.type == KCLD_SOURCE_AT)
      req.sequence_number = p->base.start_seq;
  }
  p->fetch = F_ITER;
  p->base.called = 1;
  p->base.last_call_ms = uv_now(p->base.args.loop);
  int rc = kcld_kinesis_get_shard_iterator(p->kinesis, &req, on_iterator, p);
  if (rc < 0) {
    p->fetch = F_IDLE;
    local_failure(p, "GetShardIterator", rc, "the call was not sent");
  }
}

/* ======== GetRecords and the parse ======== */

/* Applies a parsed batch (position, next iterator, when to call next) and
 * hands it to the core; undone when the core cannot take it. */
static void got_batch(struct poller *p, struct kcld_record_batch *b)
{
  char *old_iterator = p->iterator;
  struct kcld_seq_pos old_last = p->last_fetched;
  p->iterator = NULL;
  if (b->count > 0)
    kcld_seq_pos_set(&p->last_fetched,
                     b->records[b->count - 1].sequence_number, 0);
  if (b->next_shard_iterator)
    /* Without memory for it, the next call gets a new iterator after the
     * last record fetched: nothing is lost. */
    p->iterator = strdup(b->next_shard_iterator);
  else
    p->base.stopped = 1; /* the shard's last batch */
  if (b->kinesis_count == 0 && b->millis_behind_latest <= 0)
    p->base.next_at_ms = uv_now(p->base.args.loop) + idle_wait(p);
  else
    p->base.next_at_ms = 0; /* behind: as soon as the rate allows */
  unsigned old_fails = p->base.fails_in_row;
  int old_failing = p->base.failing;
  p->base.fails_in_row = 0;
  p->base.failing = KCLD_SHARD_FETCH_OK;
  if (b->kinesis_count == 0)
    p->empty_responses++;
  if (p->base.args.cbs.batch(p->base.args.cbs.arg, b) != 0) {
    /* Nothing has changed: the same iterator fetches it again. */
    free(p->iterator);
    p->iterator = old_iterator;
    p->last_fetched = old_last;
    p->base.stopped = 0;
    p->base.fails_in_row = old_fails;
    p->base.failing = old_failing;
    if (b->kinesis_count == 0)
      p->empty_responses--;
    kcld_record_batch_release(b);
    local_failure(p, "GetRecords", KCLD_ENOMEM, "out of memory");
    return;
  }
  free(old_iterator);
  schedule(p);
}

/* Gives the body's block back and the admitted reservation's rest. */
static void body_done(struct poller *p)
{
  kcld_fetch_free(p->body.p);
  p->body.p = NULL;
  p->body.len = p->body.cap = 0;
  kcld_fetch_account_settle(p->base.args.account);
}

static void parse_work(struct kcld_fetch_job *j)
{
  struct poller *p = (struct poller *)j;
  kcld_source_parse(&p->base, p->body.p, p->body.len);
}

static void parse_done(struct kcld_fetch_job *j, int status)
{
  struct poller *p = (struct poller *)j;
  struct kcld_record_batch *b = p->base.parsed;
  p->base.parsed = NULL;
  p->fetch = F_IDLE;
  kcld_source_note_body(&p->base,
                        p->body.p ? kcld_fetch_charged(p->body.p) : 0);
  body_done(p);
  if (p->base.closing) {
    kcld_record_batch_release(b);
    maybe_free(p);
    return;
  }
  if (status != 0 || p->base.stopped) {
    kcld_record_batch_release(b);
    return;
  }
  if (p->base.parse_err) {
    local_failure(p, "GetRecords", p->base.parse_err, p->base.parse_msg);
    return;
  }
  p->answered = 1;
  kcld_source_note_batch(&p->base, b);
  got_batch(p, b);
}

static void on_records(const struct kcld_kinesis_records_raw *res, void *arg)
{
  struct poller *p = arg;
  if (p->base.closing || p->base.stopped || res->st.err)
    body_done(p);
  if (!call_returned(p, "GetRecords", &res->st))
    return;
  /* The body is in p->body already: the parser reads it there; a small
   * answer right here (source.h). */
  p->fetch = F_PARSE;
  if (p->body.len <= KCLD_SOURCE_INLINE_PARSE_MAX) {
    p->loop_parses++;
    parse_work(&p->base.job);
    parse_done(&p->base.job, 0);
    return;
  }
  int rc = kcld_fetch_job_submit(p->base.args.budget, &p->base.job);
  if (rc != 0) {
    p->fetch = F_IDLE;
    body_done(p);
    local_failure(p, "GetRecords", rc, "the parse could not be queued");
  }
}

/* Room in the body block: from the account, sized by the answer. */
static int body_reserve(struct kcld_http_body *hb, size_t need)
{
  struct poller *p = hb->arg;
  char *n = kcld_fetch_grow(p->base.args.account, hb->p, hb->len, need);
  if (!n)
    return KCLD_ENOMEM;
  hb->p = n;
  hb->cap = kcld_fetch_capacity(n);
  return 0;
}

static void get_records(struct poller *p)
{
  struct kcld_kinesis_get_records_req req = {
    .shard_iterator = p->iterator, .limit = p->max_records,
    .stream_arn = strncmp(p->stream, "arn:", 4) == 0 ? p->stream : NULL,
    .shard_id = p->base.shard_id,
    .max_attempts = 1, /* throttling and failures back off here */
    .body_into = &p->body};
  p->body.expect = p->answered ? p->base.last_body : 0; /* curl's buffer */
  p->fetch = F_CALL;
  p->base.called = 1;
  p->base.last_call_ms = uv_now(p->base.args.loop);
  p->get_records_calls++;
  int rc = kcld_kinesis_get_records(p->kinesis, &req, on_records, p);
  if (rc < 0) {
    p->fetch = F_IDLE;
    body_done(p);
    local_failure(p, "GetRecords", rc, "the call was not sent");
  }
}

/* What the next answer may take: its body and its parsed batch. */
static void estimate(const struct poller *p, size_t *body, size_t *batch)
{
  if (!p->answered) {
    /* Nothing known yet: as large as an answer may be (10 MB of records
     * is ~14 MB as base64 JSON), within the shard's own limit. */
    *body = p->first_estimate < FIRST_BODY ? p->first_estimate : FIRST_BODY;
    *batch = p->first_estimate < FIRST_BATCH ? p->first_estimate
                                             : FIRST_BATCH;
    return;
  }
  kcld_source_estimate(&p->base, MIN_ESTIMATE, body, batch);
}

/* idle_ms spread by up to +-IDLE_JITTER_PCT. */
static uint64_t idle_wait(const struct poller *p)
{
  uint64_t span = p->idle_ms * IDLE_JITTER_PCT / 100;
  if (span == 0)
    return p->idle_ms;
  return p->idle_ms - span + kcld_rand_u64() % (2 * span + 1);
}

/* ======== Scheduling ======== */

static void on_timer(uv_timer_t *t)
{
  struct poller *p = t->data;
  p->base.timer_armed = 0;
  if (!p->base.closing)
    schedule(p);
}

/* Starts the next call when nothing is in flight, the core wants more and
 * the rate, idle wait and backoff allow; else arms the timer for when they
 * will. */
static void schedule(struct poller *p)
{
  if (p->base.closing || p->base.stopped || p->fetch != F_IDLE ||
      p->base.timer_armed)
    return;
  if (p->iterator && !p->base.args.cbs.wanted(p->base.args.cbs.arg))
    return; /* ops.resume goes on */
  if (kcld_source_wait(&p->base, on_timer))
    return;
  if (!p->iterator) {
    get_iterator(p);
    return;
  }
  size_t body, batch;
  estimate(p, &body, &batch);
  if (!kcld_fetch_account_admit(p->base.args.account, body, batch))
    return; /* the account's wake resumes */
  get_records(p);
}

/* ======== Ops ======== */

static void poller_resume(void *src)
{
  schedule(src);
}

static void poller_stop(void *src)
{
  struct poller *p = src;
  p->base.stopped = 1;
  uv_timer_stop(&p->base.timer);
  p->base.timer_armed = 0;
}

static void poller_close(void *src)
{
  struct poller *p = src;
  poller_stop(p);
  p->base.closing = 1;
  if (p->fetch == F_PARSE && kcld_fetch_job_cancel(&p->base.job)) {
    p->fetch = F_IDLE; /* never started: parse_done will not run */
    body_done(p);
  }
  uv_close((uv_handle_t *)&p->base.timer, on_timer_closed);
}

static void poller_stats(const void *src, struct kcld_shard_consumer_stats *st)
{
  const struct poller *p = src;
  st->get_records_calls += p->get_records_calls;
  st->empty_responses += p->empty_responses;
  st->loop_parses += p->loop_parses;
  st->throttles += p->throttles;
  st->expired_iterators += p->expired_iterators;
  st->errors += p->errors;
  kcld_source_failing_stats(&p->base, st);
}

static void poller_configure(void *src, int max_records, uint64_t idle_ms)
{
  struct poller *p = src;
  p->max_records = max_records;
  p->idle_ms = idle_ms;
}

const struct kcld_source_ops kcld_poller_ops = {
  .resume = poller_resume, .stop = poller_stop, .close = poller_close,
  .stats = poller_stats, .every_answer_moves = 1,
  .configure = poller_configure};

int kcld_poller_start(const struct kcld_poller_opts *o, void **out)
{
  if (!o || !out || !o->kinesis || !o->stream)
    return KCLD_EINVAL;
  struct poller *p = calloc(1, sizeof(*p));
  if (!p)
    return KCLD_ENOMEM;
  if (!(p->stream = strdup(o->stream))) {
    free(p);
    return KCLD_ENOMEM;
  }
  int rc = kcld_source_base_init(&p->base, &o->src, parse_work, parse_done);
  if (rc != 0) {
    kcld_source_base_clean_up(&p->base);
    free(p->stream);
    free(p);
    return rc;
  }
  p->kinesis = o->kinesis;
  p->max_records = o->max_records;
  p->idle_ms = o->idle_ms;
  p->first_estimate = o->first_estimate > MIN_ESTIMATE ? o->first_estimate
                                                       : MIN_ESTIMATE;
  p->body.reserve = body_reserve;
  p->body.arg = p;
  *out = p;
  schedule(p);
  return 0;
}
