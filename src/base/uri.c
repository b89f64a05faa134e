/* uri.c — percent-encoding (uri.h). */
#include "base/uri.h"

#include "err.h"

static int unreserved(unsigned char c)
{
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
         c == '~';
}

int kcld_uri_escape(struct kcld_buf *b, const char *s, size_t n,
                    int keep_slash)
{
  static const char hex[] = "0123456789ABCDEF";
  size_t i = 0;
  while (i < n) {
    size_t run = i;
    while (run < n && (unreserved((unsigned char)s[run]) ||
                       (keep_slash && s[run] == '/')))
      run++;
    kcld_buf_add(b, s + i, run - i);
    if (run < n) {
      unsigned char c = (unsigned char)s[run];
      char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
      kcld_buf_add(b, esc, 3);
      run++;
    }
    i = run;
  }
  return b->oom ? KCLD_ENOMEM : 0;
}
