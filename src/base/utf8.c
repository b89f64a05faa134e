/* utf8.c — UTF-8 validation, counting and encoding. */
#include "base/utf8.h"

size_t kcld_utf8_char_len(const void *s, size_t n)
{
  const unsigned char *p = s;
  unsigned c = p[0], lo = 0x80, hi = 0xbf;
  size_t k;

  if (c < 0x80)
    return 1;
  if (c >= 0xc2 && c <= 0xdf) {
    k = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    k = 3;
    if (c == 0xe0)
      lo = 0xa0;      /* overlong below U+0800 */
    else if (c == 0xed)
      hi = 0x9f;      /* surrogates */
  } else if (c >= 0xf0 && c <= 0xf4) {
    k = 4;
    if (c == 0xf0)
      lo = 0x90;      /* overlong below U+10000 */
    else if (c == 0xf4)
      hi = 0x8f;      /* above U+10FFFF */
  } else {
    return 0;
  }
  if (n < k || p[1] < lo || p[1] > hi)
    return 0;
  for (size_t i = 2; i < k; i++)
    if (p[i] < 0x80 || p[i] > 0xbf)
      return 0;
  return k;
}

long kcld_utf8_count(const void *s, size_t n)
{
  const unsigned char *p = s;
  long chars = 0;
  size_t i = 0;

  while (i < n) {
    size_t k = p[i] < 0x80 ? 1 : kcld_utf8_char_len(p + i, n - i);
    if (k == 0)
      return -1;
    i += k;
    chars++;
  }
  return chars;
}

int kcld_utf8_valid(const void *s, size_t n)
{
  return kcld_utf8_count(s, n) >= 0;
}

char *kcld_utf8_put(char *o, uint32_t u)
{
  if (u < 0x80) {
    *o++ = (char)u;
  } else if (u < 0x800) {
    *o++ = (char)(0xc0 | (u >> 6));
    *o++ = (char)(0x80 | (u & 0x3f));
  } else if (u < 0x10000) {
    *o++ = (char)(0xe0 | (u >> 12));
    *o++ = (char)(0x80 | ((u >> 6) & 0x3f));
    *o++ = (char)(0x80 | (u & 0x3f));
  } else {
    *o++ = (char)(0xf0 | (u >> 18));
    *o++ = (char)(0x80 | ((u >> 12) & 0x3f));
    *o++ = (char)(0x80 | ((u >> 6) & 0x3f));
    *o++ = (char)(0x80 | (u & 0x3f));
  }
  return o;
}
