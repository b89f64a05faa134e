/* backoff.c — capped exponential backoff with jitter. */
#include "base/backoff.h"

#include "base/rand.h"

/* x * rnd / UINT32_MAX, exactly and without overflow. */
static uint64_t scale(uint64_t x, uint32_t rnd)
{
  return x / UINT32_MAX * rnd + x % UINT32_MAX * rnd / UINT32_MAX;
}

uint64_t kcld_backoff_delay_ms(const struct kcld_backoff *b, unsigned retry,
                               uint32_t rnd)
{
  uint64_t d = b->base_ms, half;

  for (unsigned i = 1; i < retry && d > 0 && d < b->max_ms &&
                      d <= UINT64_MAX / 2; i++)
    d *= 2;
  if (d > b->max_ms)
    d = b->max_ms;
  switch (b->jitter) {
  case KCLD_BACKOFF_FULL:
    return scale(d, rnd);
  case KCLD_BACKOFF_NONE:
    return d;
  default:
    half = d / 2;
    return d - half + scale(half, rnd);
  }
}

uint64_t kcld_backoff_ms(const struct kcld_backoff *b, unsigned retry)
{
  return kcld_backoff_delay_ms(b, retry, kcld_rand_u32());
}
