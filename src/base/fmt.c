/* fmt.c — decimal text of numbers. */
#include "base/fmt.h"

#include <inttypes.h>
#include <stdio.h>

char *kcld_fmt_u64(char *buf, size_t cap, uint64_t v)
{
  snprintf(buf, cap, "%" PRIu64, v);
  return buf;
}
