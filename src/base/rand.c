/* rand.c — splitmix64, and a per-thread instance of it seeded from the
 * monotonic clock, the thread and the process. */
#include "base/rand.h"

#include <time.h>
#include <unistd.h>

uint64_t kcld_rand_next(uint64_t *state)
{
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static _Thread_local uint64_t t_state;
static _Thread_local int t_seeded;

uint64_t kcld_rand_u64(void)
{
  if (!t_seeded) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    /* The address of the thread's own state tells threads apart. */
    t_state = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    t_state ^= (uint64_t)(uintptr_t)&t_state << 16;
    t_state ^= (uint64_t)getpid() << 40;
    t_seeded = 1;
  }
  return kcld_rand_next(&t_state);
}

uint32_t kcld_rand_u32(void)
{
  return (uint32_t)(kcld_rand_u64() >> 32);
}
