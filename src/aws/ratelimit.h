/* ratelimit.h — the client-side rate limiter of the SDKs' "adaptive" retry
 * mode: a token bucket whose fill rate follows CUBIC, cut by a factor of
 * 0.7 at each throttling answer and grown back along a cubic curve after
 * it, never above twice the rate the client was measured to send at.
 *
 * Off until the first throttling answer; from then on each attempt takes a
 * token first, waiting when the bucket is empty.  Time is seconds on any
 * clock that only goes forward (callers use the monotonic one).  The
 * constants are the SDKs': minimum fill rate 0.5/s, minimum capacity 1,
 * smoothing 0.8 over half-second buckets, beta 0.7, scale 0.4.
 *
 * Not thread-safe: one per AWS client, on its loop. */
#ifndef KCLD_AWS_RATELIMIT_H
#define KCLD_AWS_RATELIMIT_H

#include <stdint.h>

struct kcld_ratelimit {
  double fill_rate;       /* tokens a second */
  double max_capacity;
  double capacity;
  double last_refill;     /* < 0: never */
  double measured_rate;   /* smoothed requests a second */
  double last_bucket;     /* start of the half-second bucket being counted */
  double count;           /* requests in it */
  double last_max_rate;   /* the rate when last throttled */
  double last_throttle;   /* when */
  double time_window;     /* CUBIC's K for last_max_rate */
  double calculated_rate;
  int enabled;
};

/* Sets up a limiter (off) at time `now`. */
void kcld_ratelimit_init(struct kcld_ratelimit *rl, double now);

/* Takes a token for an attempt at `now`.  Returns 0 when it may be sent,
 * else how many milliseconds to wait before asking again (at least 1). */
uint64_t kcld_ratelimit_acquire(struct kcld_ratelimit *rl, double now);

/* Learns from an answer at `now`: throttling or not. */
void kcld_ratelimit_update(struct kcld_ratelimit *rl, double now,
                           int throttled);

#endif
