/* backoff.h — the one retry delay policy: exponential growth from a base,
 * capped, then jittered.
 *
 * The delay before retry n (1 for the first retry) is
 *   d = min(base_ms * 2^(n-1), max_ms)
 * and then, by the jitter kind:
 *   KCLD_BACKOFF_EQUAL  half fixed, half random: [d - d/2, d]   (the
 *                       default; retry loops of kcld's own)
 *   KCLD_BACKOFF_FULL   all random: [0, d]   (the AWS SDKs' "standard"
 *                       retry mode, for AWS calls)
 *   KCLD_BACKOFF_NONE   d exactly   (child process restarts) */
#ifndef KCLD_BASE_BACKOFF_H
#define KCLD_BASE_BACKOFF_H

#include <stdint.h>

enum kcld_backoff_jitter {
  KCLD_BACKOFF_EQUAL = 0,
  KCLD_BACKOFF_FULL,
  KCLD_BACKOFF_NONE
};

struct kcld_backoff {
  uint64_t base_ms;                 /* the first delay, before jitter */
  uint64_t max_ms;                  /* cap, before jitter */
  enum kcld_backoff_jitter jitter;
};

/* The delay before retry number `retry` (1 for the first; 0 counts as 1),
 * with the random part scaled by `rnd` (0 = the least delay, UINT32_MAX =
 * the most).  Pure. */
uint64_t kcld_backoff_delay_ms(const struct kcld_backoff *b, unsigned retry,
                               uint32_t rnd);

/* kcld_backoff_delay_ms() with `rnd` drawn from the calling thread's
 * generator (kcld_rand_u32). */
uint64_t kcld_backoff_ms(const struct kcld_backoff *b, unsigned retry);

#endif
