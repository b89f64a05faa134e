/* policy.c — pure failure-policy decisions (see policy.h). */
#include "process/policy.h"

#include "base/backoff.h"

struct kcld_policy_decision kcld_policy_decide(
  const struct kcld_policy *p, const struct kcld_policy_failure *f)
{
  struct kcld_policy_decision d = {KCLD_POLICY_RETRY,
                                   KCLD_POLICY_RETRIES_EXHAUSTED, f->count};

  if (f->cls == KCLD_POLICY_INFRA) {
    size_t head = f->expired_head < f->count ? f->expired_head : f->count;
    d.action = KCLD_POLICY_WAIT;
    if (head > 0) {
      d.action = KCLD_POLICY_GIVE_UP;
      d.condition = KCLD_POLICY_AGE_EXCEEDED;
      d.give_up = head;
    }
    return d;
  }
  if (f->count > 0 && f->expired >= f->count) {
    d.action = KCLD_POLICY_GIVE_UP;
    d.condition = KCLD_POLICY_AGE_EXCEEDED;
    return d;
  }
  if (p->bisect_on_error && f->count > 1) {
    d.action = KCLD_POLICY_BISECT;
    return d;
  }
  if (f->expired > 0) {
    d.action = KCLD_POLICY_GIVE_UP;
    d.condition = KCLD_POLICY_AGE_EXCEEDED;
    return d;
  }
  if (p->max_retry_attempts >= 0 &&
      f->retries >= (unsigned)p->max_retry_attempts)
    d.action = KCLD_POLICY_GIVE_UP;
  return d;
}

size_t kcld_policy_split(size_t count)
{
  return (count + 1) / 2;
}

int kcld_policy_expired(const struct kcld_policy *p, int64_t arrival_ms,
                        int64_t now_ms)
{
  if (p->max_record_age_ms <= 0 || arrival_ms < 0)
    return 0;
  return now_ms - arrival_ms > p->max_record_age_ms;
}

uint64_t kcld_policy_backoff_ms(const struct kcld_policy *p, unsigned retry,
                                uint32_t rnd)
{
  struct kcld_backoff b = {p->backoff_base_ms, p->backoff_max_ms,
                           KCLD_BACKOFF_EQUAL};
  return kcld_backoff_delay_ms(&b, retry, rnd);
}

unsigned kcld_policy_bisect_rounds(size_t count)
{
  unsigned rounds = 1;
  size_t n = 1;

  while (n < count) {
    n *= 2;
    rounds++;
  }
  return rounds;
}

const char *kcld_policy_condition_name(enum kcld_policy_condition c)
{
  return c == KCLD_POLICY_AGE_EXCEEDED ? "RecordAgeExceeded"
                                       : "RetryAttemptsExhausted";
}
