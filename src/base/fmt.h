/* fmt.h — numbers as text, for log fields and AWS attribute values. */
#ifndef KCLD_BASE_FMT_H
#define KCLD_BASE_FMT_H

#include <stddef.h>
#include <stdint.h>

/* Writes v in decimal into buf (cap bytes; 21 hold any value),
 * NUL-terminated, cut to fit.  Returns buf. */
char *kcld_fmt_u64(char *buf, size_t cap, uint64_t v);

#endif
