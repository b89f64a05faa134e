/* policy.h — the failure policy as pure decisions: what to do with a range
 * of records the handler failed on, how long to wait before a retry, which
 * records are too old, where a bisection splits.  No I/O, no clock: callers
 * pass the time and the random number in, so every rule is unit-tested.
 *
 * A failure has a class (handlers/handler.h):
 *
 * Record failures (the handler's verdict on the data) follow the rules of
 * the Lambda event source mapping:
 *   - A failed range of more than one record is split in halves when
 *     retry.bisect_on_error is on; each half gets a fresh retry budget
 *     (splitting never uses the budget).
 *   - A range (a single record when bisecting) is retried up to
 *     retry.max_retry_attempts times after its first attempt; -1 means
 *     without limit.
 *   - A range in which every record is older than retry.max_record_age
 *     (by arrival time) is given up at once (RecordAgeExceeded); without
 *     bisection, one expired record gives up its whole range, as in Lambda.
 *   - A given-up range goes to the failure destination.
 *
 * Infrastructure failures (throttling, 5xx, transport errors, a handler
 * that cannot start: nothing said about the records) wait: the same range
 * again after a backoff, for as long as it takes.  They never use the
 * retry budget and never bisect.  Only retry.max_record_age bounds them:
 * the records at the front of the range that are older than it are given
 * up (RecordAgeExceeded), as Lambda does with records it cannot invoke the
 * function for; the younger rest keeps waiting. */
#ifndef KCLD_PROCESS_POLICY_H
#define KCLD_PROCESS_POLICY_H

#include <stddef.h>
#include <stdint.h>

struct kcld_policy {
  int max_retry_attempts;     /* retries after the first attempt; -1 = no
                                 limit */
  int bisect_on_error;        /* 1: split failing ranges in halves */
  int64_t max_record_age_ms;  /* -1 (or <= 0) = no limit */
  uint64_t backoff_base_ms;   /* first retry delay (before jitter) */
  uint64_t backoff_max_ms;    /* cap */
};

enum kcld_policy_action {
  KCLD_POLICY_RETRY = 0,      /* the same range again after a backoff; one
                                 retry of the budget used */
  KCLD_POLICY_BISECT = 1,     /* split: left half first, then the right */
  KCLD_POLICY_GIVE_UP = 2,    /* send to on_failure */
  KCLD_POLICY_WAIT = 3        /* infrastructure: the same range again after
                                 a backoff; the budget is not touched */
};

/* Why a range was given up: the `condition` of the on-failure record. */
enum kcld_policy_condition {
  KCLD_POLICY_RETRIES_EXHAUSTED = 0, /* "RetryAttemptsExhausted" */
  KCLD_POLICY_AGE_EXCEEDED = 1       /* "RecordAgeExceeded" */
};

/* The class of a failure (the handler's, handlers/handler.h). */
enum kcld_policy_class {
  KCLD_POLICY_RECORD = 0,
  KCLD_POLICY_INFRA = 1
};

/* A failed range as the policy sees it. */
struct kcld_policy_failure {
  size_t count;               /* records in the range, >= 1 */
  size_t expired;             /* of them, older than max_record_age */
  unsigned retries;           /* retries this range has had already */
  enum kcld_policy_class cls;
  size_t expired_head;        /* leading records of the range (in shard
                                 order) older than max_record_age */
};

struct kcld_policy_decision {
  enum kcld_policy_action action;
  enum kcld_policy_condition condition; /* GIVE_UP only */
  size_t give_up;             /* GIVE_UP: records given up from the front of
                                 the range (all of them but for an
                                 infrastructure failure) */
};

/* Decides what happens to a range that just failed.  Pure. */
struct kcld_policy_decision kcld_policy_decide(
  const struct kcld_policy *p, const struct kcld_policy_failure *f);

/* Size of the left half of a range of `count` (>= 2) records when it is
 * bisected: ceil(count / 2), so the halves differ by at most one. */
size_t kcld_policy_split(size_t count);

/* 1 when a record that arrived at arrival_ms (epoch ms; negative = unknown,
 * never expired) is older than p->max_record_age_ms at now_ms, else 0. */
int kcld_policy_expired(const struct kcld_policy *p, int64_t arrival_ms,
                        int64_t now_ms);

/* Delay before retry number `retry` (1 for the first retry): base doubled
 * per earlier retry, capped at max, then "equal jitter": half of it fixed
 * and the other half scaled by rnd (any 32-bit value); that is,
 * kcld_backoff_delay_ms() with KCLD_BACKOFF_EQUAL (base/backoff.h).  Pure.
 * Waits after infrastructure failures use it too, numbered by failures in
 * a row. */
uint64_t kcld_policy_backoff_ms(const struct kcld_policy *p, unsigned retry,
                                uint32_t rnd);

/* Attempts that bisection needs at most to isolate one failing record in a
 * batch of `count`, with no retries: 1 + ceil(log2(count)). */
unsigned kcld_policy_bisect_rounds(size_t count);

/* "RetryAttemptsExhausted" or "RecordAgeExceeded". */
const char *kcld_policy_condition_name(enum kcld_policy_condition c);

#endif
