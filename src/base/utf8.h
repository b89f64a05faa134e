/* utf8.h — UTF-8 checks and encoding, strict as RFC 3629: no overlong
 * forms, no surrogates (U+D800..U+DFFF), nothing above U+10FFFF.
 * Pure functions; any thread. */
#ifndef KCLD_BASE_UTF8_H
#define KCLD_BASE_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* The length (1 to 4) of the well-formed character at s[0..n) (n >= 1), or
 * 0 when it is malformed or cut off by n. */
size_t kcld_utf8_char_len(const void *s, size_t n);

/* 1 when s[0..n) is well-formed UTF-8 (U+0000 allowed), else 0. */
int kcld_utf8_valid(const void *s, size_t n);

/* The number of characters (code points) in s[0..n), or -1 when it is not
 * well-formed UTF-8. */
long kcld_utf8_count(const void *s, size_t n);

/* Writes code point cp (<= 0x10FFFF) as 1 to 4 bytes at `out` (no NUL;
 * room for 4 is enough) and returns the end of what it wrote.  It does not
 * refuse surrogates: the caller decides what is a character. */
char *kcld_utf8_put(char *out, uint32_t cp);

#endif
