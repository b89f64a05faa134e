/* hex.c — hex digit values and lower-case hex text. */
#include "base/hex.h"

int kcld_hex_value(int c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

long kcld_hex_parse(const char *s, size_t n)
{
  long v = 0;
  for (size_t i = 0; i < n; i++) {
    int h = kcld_hex_value((unsigned char)s[i]);
    if (h < 0)
      return -1;
    v = v * 16 + h;
  }
  return v;
}

char *kcld_hex_put(char *out, const void *in, size_t n)
{
  static const char digits[] = "0123456789abcdef";
  const unsigned char *b = in;
  for (size_t i = 0; i < n; i++) {
    *out++ = digits[b[i] >> 4];
    *out++ = digits[b[i] & 15];
  }
  return out;
}
