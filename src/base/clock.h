/* clock.h — wall-clock time, for records' ages, item timestamps and metric
 * files.  Timers and lease expiry use the loop's monotonic clock instead
 * (uv_now), never this. */
#ifndef KCLD_BASE_CLOCK_H
#define KCLD_BASE_CLOCK_H

#include <stddef.h>
#include <stdint.h>

/* Milliseconds since the Unix epoch (CLOCK_REALTIME).  Any thread. */
int64_t kcld_clock_wall_ms(void);

/* Epoch `seconds` as RFC 3339 UTC text without a fraction,
 * "2020-12-09T07:04:00Z", into out (cap n; 21 bytes hold it). */
void kcld_clock_iso8601(int64_t seconds, char *out, size_t n);

#endif
