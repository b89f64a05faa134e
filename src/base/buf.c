/* buf.c — a growable byte buffer, doubling from 64 bytes. */
#include "base/buf.h"

#include <stdlib.h>
#include <string.h>

#include "err.h"

int kcld_buf_add(struct kcld_buf *b, const void *s, size_t n)
{
  if (b->oom)
    return KCLD_ENOMEM;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + n + 1)
      cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->oom = 1;
      return KCLD_ENOMEM;
    }
    b->p = p;
    b->cap = cap;
  }
  if (n)
    memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
  return 0;
}

void kcld_buf_free(struct kcld_buf *b)
{
  free(b->p);
  memset(b, 0, sizeof(*b));
}
