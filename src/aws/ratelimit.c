/* ratelimit.c — the adaptive retry mode's token bucket and CUBIC rate (see
 * ratelimit.h). */
#include "aws/ratelimit.h"

#include <float.h>
#include <math.h>
#include <string.h>

#define MIN_FILL_RATE 0.5
#define MIN_CAPACITY 1.0
#define SMOOTH 0.8
#define BETA 0.7
#define SCALE 0.4
#define MAX_RATE_SCALE 2.0

void kcld_ratelimit_init(struct kcld_ratelimit *rl, double now)
{
  memset(rl, 0, sizeof(*rl));
  rl->max_capacity = DBL_MAX;
  rl->last_refill = -1;
  rl->last_bucket = floor(now);
  rl->last_throttle = now;
}

static void refill(struct kcld_ratelimit *rl, double now)
{
  if (rl->last_refill >= 0) {
    double c = rl->capacity + (now - rl->last_refill) * rl->fill_rate;
    rl->capacity = c < rl->max_capacity ? c : rl->max_capacity;
  }
  rl->last_refill = now;
}

uint64_t kcld_ratelimit_acquire(struct kcld_ratelimit *rl, double now)
{
  double ms;
  if (!rl->enabled)
    return 0;
  refill(rl, now);
  if (rl->capacity >= 1.0) {
    rl->capacity -= 1.0;
    return 0;
  }
  ms = ceil((1.0 - rl->capacity) / rl->fill_rate * 1000.0);
  return ms < 1 ? 1 : (uint64_t)ms;
}

/* The smoothed sending rate, counted in half-second buckets. */
static void measure(struct kcld_ratelimit *rl, double now)
{
  double bucket = floor(now * 2.0) / 2.0;
  rl->count += 1;
  if (bucket > rl->last_bucket) {
    double rate = rl->count / (bucket - rl->last_bucket);
    rl->measured_rate = rate * SMOOTH + rl->measured_rate * (1.0 - SMOOTH);
    rl->count = 0;
    rl->last_bucket = bucket;
  }
}

/* CUBIC's K: when the curve is back at the rate it was throttled at. */
static void time_window(struct kcld_ratelimit *rl)
{
  rl->time_window = cbrt(rl->last_max_rate * (1.0 - BETA) / SCALE);
}

void kcld_ratelimit_update(struct kcld_ratelimit *rl, double now,
                           int throttled)
{
  double rate;

  measure(rl, now);
  if (throttled) {
    rate = rl->enabled && rl->fill_rate < rl->measured_rate
             ? rl->fill_rate
             : rl->measured_rate;
    rl->last_max_rate = rate;
    time_window(rl);
    rl->last_throttle = now;
    rl->calculated_rate = rate * BETA;
    rl->enabled = 1;
  } else {
    double dt;
    time_window(rl);
    dt = now - rl->last_throttle - rl->time_window;
    rl->calculated_rate = SCALE * dt * dt * dt + rl->last_max_rate;
  }
  rate = rl->calculated_rate < MAX_RATE_SCALE * rl->measured_rate
           ? rl->calculated_rate
           : MAX_RATE_SCALE * rl->measured_rate;
  refill(rl, now);
  rl->fill_rate = rate > MIN_FILL_RATE ? rate : MIN_FILL_RATE;
  rl->max_capacity = rate > MIN_CAPACITY ? rate : MIN_CAPACITY;
  if (rl->capacity > rl->max_capacity)
    rl->capacity = rl->max_capacity;
}
