/* s3_uri.c — S3 bucket names and s3:// locations (see s3_uri.h). */
#include "aws/s3_uri.h"

#include <arpa/inet.h>
#include <string.h>

#include "base/utf8.h"
#include "err.h"

static int alnum(char c)
{
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

int kcld_s3_bucket_valid(const char *b)
{
  size_t n = b ? strlen(b) : 0;
  unsigned char addr[4];
  if (n < 3 || n > KCLD_S3_BUCKET_MAX || !alnum(b[0]) || !alnum(b[n - 1]) ||
      strspn(b, "abcdefghijklmnopqrstuvwxyz0123456789.-") != n ||
      strstr(b, "..") || inet_pton(AF_INET, b, addr) == 1)
    return 0;
  return 1;
}

int kcld_s3_bucket_hostable(const char *b)
{
  return kcld_s3_bucket_valid(b) && !strchr(b, '.');
}


int kcld_s3_uri_parse(const char *uri, struct kcld_s3_uri *out,
                      const char **why)
{
  const char *b, *slash;
  size_t bn, pn;

  memset(out, 0, sizeof(*out));
  *why = NULL;
  if (!uri || strncmp(uri, "s3://", 5) != 0) {
    *why = "not an s3://BUCKET[/PREFIX] location";
    return KCLD_EINVAL;
  }
  b = uri + 5;
  slash = strchr(b, '/');
  bn = slash ? (size_t)(slash - b) : strlen(b);
  if (bn > KCLD_S3_BUCKET_MAX) {
    *why = "bucket name longer than 63 characters";
    return KCLD_EINVAL;
  }
  memcpy(out->bucket, b, bn);
  if (!kcld_s3_bucket_valid(out->bucket)) {
    *why = "bad bucket name (3..63 of a-z 0-9 . -, starting and ending "
           "with a letter or digit)";
    return KCLD_EINVAL;
  }
  pn = slash ? strlen(slash + 1) : 0;
  if (pn + 1 > KCLD_S3_KEY_MAX || (pn && !kcld_utf8_valid(slash + 1, pn))) {
    *why = "prefix longer than 1023 bytes or not UTF-8";
    return KCLD_EINVAL;
  }
  if (pn) {
    memcpy(out->prefix, slash + 1, pn);
    if (out->prefix[pn - 1] != '/')
      out->prefix[pn] = '/';
  }
  return 0;
}
