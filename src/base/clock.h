/* clock.h — wall-clock time, for records' ages, item timestamps and metric
 * files.  Timers and lease expiry use the loop's monotonic clock instead
 * (uv_now), never this; kcld_clock_coalesce_ms rounds such timers. */
#ifndef KCLD_BASE_CLOCK_H
#define KCLD_BASE_CLOCK_H

#include <stddef.h>
#include <stdint.h>

/* Milliseconds since the Unix epoch (CLOCK_REALTIME).  Any thread. */
int64_t kcld_clock_wall_ms(void);

/* Epoch `seconds` as RFC 3339 UTC text without a fraction,
 * "2020-12-09T07:04:00Z", into out (cap n; 21 bytes hold it). */
void kcld_clock_iso8601(int64_t seconds, char *out, size_t n);

/* A timer's due time (monotonic ms, e.g. uv_now + wait) rounded up to a
 * multiple of a quantum: the largest power of two not above wait / 64, at
 * most 16 ms (no rounding when that is under 2 ms).  So the timers of many
 * waits due at nearby times fall due at the same time and fire on one
 * wake-up of the loop, each late by under 1/64 of its wait; quanta of
 * different waits nest.  Returns due_ms when wait_ms is 0. */
uint64_t kcld_clock_coalesce_ms(uint64_t due_ms, uint64_t wait_ms);

#endif
