/* errtext.c — a service's error type and message as kcld reports them
 * (see errtext.h). */
#include "aws/errtext.h"

#include <string.h>

void kcld_aws_error_type(char *dst, size_t cap, const char *src)
{
  size_t end = strcspn(src, ":");
  size_t start = 0, n;
  for (size_t i = 0; i < end; i++)
    if (src[i] == '#')
      start = i + 1;
  while (start < end && (src[start] == ' ' || src[start] == '\t'))
    start++;
  while (end > start && (src[end - 1] == ' ' || src[end - 1] == '\t'))
    end--;
  n = end - start;
  if (n >= cap)
    n = cap - 1;
  memcpy(dst, src + start, n);
  dst[n] = '\0';
}

void kcld_aws_error_message(char *dst, size_t cap, const char *src, size_t len)
{
  static const char *const cuts[] = {"The Canonical String",
                                     "The String-to-Sign", "\n", "\r", NULL};
  size_t n = len;
  for (int i = 0; cuts[i]; i++) {
    const char *p = memmem(src, len, cuts[i], strlen(cuts[i]));
    if (p && (size_t)(p - src) < n)
      n = (size_t)(p - src);
  }
  while (n > 0 && (src[n - 1] == ' ' || src[n - 1] == '\t'))
    n--;
  if (n >= cap)
    n = cap - 1;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)src[i];
    dst[i] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
  }
  dst[n] = '\0';
}
