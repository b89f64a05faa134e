/* buf.h — a growable byte buffer for building text or binary output.
 *
 * Zero it to start (struct kcld_buf b = {0}).  Appends keep the bytes
 * NUL-terminated (the terminator is not counted in len), so text can be
 * used as a C string at any time.  A failed growth sets `oom` and later
 * appends do nothing, so a run of appends can be checked once at the end.
 * The caller owns p: free(b.p) (or kcld_buf_free) when done. */
#ifndef KCLD_BASE_BUF_H
#define KCLD_BASE_BUF_H

#include <stddef.h>

struct kcld_buf {
  char *p;      /* NULL until the first append */
  size_t len;   /* bytes appended */
  size_t cap;   /* bytes allocated */
  int oom;      /* a growth failed: the contents are incomplete */
};

/* Appends s[0..n) (n may be 0, s then may be NULL).  Returns 0, or
 * KCLD_ENOMEM when out of memory now or before. */
int kcld_buf_add(struct kcld_buf *b, const void *s, size_t n);

/* Frees the bytes and zeroes the buffer for reuse. */
void kcld_buf_free(struct kcld_buf *b);

#endif
