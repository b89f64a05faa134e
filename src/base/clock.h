/* clock.h — wall-clock time, for records' ages, item timestamps and metric
 * files.  Timers and lease expiry use the loop's monotonic clock instead
 * (uv_now), never this. */
#ifndef KCLD_BASE_CLOCK_H
#define KCLD_BASE_CLOCK_H

#include <stdint.h>

/* Milliseconds since the Unix epoch (CLOCK_REALTIME).  Any thread. */
int64_t kcld_clock_wall_ms(void);

#endif
