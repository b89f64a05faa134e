/* clock.c — the wall clock in milliseconds, and as text. */
#include "base/clock.h"

#include <time.h>

int64_t kcld_clock_wall_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void kcld_clock_iso8601(int64_t seconds, char *out, size_t n)
{
  struct tm tm;
  time_t t = (time_t)seconds;

  if (n == 0)
    return;
  out[0] = '\0';
  if (gmtime_r(&t, &tm))
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

uint64_t kcld_clock_coalesce_ms(uint64_t due_ms, uint64_t wait_ms)
{
  uint64_t q = 16;
  while (q > 1 && q > wait_ms / 64)
    q /= 2;
  if (q < 2 || due_ms > UINT64_MAX - q)
    return due_ms;
  return (due_ms + q - 1) / q * q;
}
