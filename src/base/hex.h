/* hex.h — hexadecimal digits.  Pure functions; any thread. */
#ifndef KCLD_BASE_HEX_H
#define KCLD_BASE_HEX_H

#include <stddef.h>

/* The value 0..15 of the hex digit c (either case), or -1. */
int kcld_hex_value(int c);

/* The value of the n hex digits at s (n <= 15; the caller has checked that
 * they are there), or -1 when one of them is not a hex digit. */
long kcld_hex_parse(const char *s, size_t n);

/* Writes the n bytes at `in` as 2n lower-case hex digits at `out` (no NUL)
 * and returns the end of what it wrote. */
char *kcld_hex_put(char *out, const void *in, size_t n);

#endif
