/* rand.h — the one pseudo-random generator (splitmix64), for jitter and
 * generated test data.  Not for secrets.
 *
 * Two ways to draw:
 *   kcld_rand_next(&state)  a reproducible stream from a seed the caller
 *                           keeps (kcld produce --seed);
 *   kcld_rand_u64()         a per-thread stream, seeded from the clock on
 *                           first use, for retry jitter; no state to keep,
 *                           and no lock (each thread has its own). */
#ifndef KCLD_BASE_RAND_H
#define KCLD_BASE_RAND_H

#include <stdint.h>

/* Advances *state (any value, 0 included) and returns the next 64 random
 * bits.  The same seed gives the same stream. */
uint64_t kcld_rand_next(uint64_t *state);

/* The next 64 random bits of the calling thread's stream.  Any thread. */
uint64_t kcld_rand_u64(void);

/* The next 32 random bits of the calling thread's stream (the high half of
 * kcld_rand_u64()).  Any thread. */
uint32_t kcld_rand_u32(void);

#endif
