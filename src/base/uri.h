/* uri.h — percent-encoding as AWS signs it (RFC 3986: every byte but the
 * unreserved A-Z a-z 0-9 - _ . ~ becomes %XX, upper-case hex).  Pure
 * functions; any thread. */
#ifndef KCLD_BASE_URI_H
#define KCLD_BASE_URI_H

#include <stddef.h>

#include "base/buf.h"

/* Appends s[0..n) to b percent-encoded; '/' is kept as it is when
 * keep_slash (an S3 object key in a path).  Returns 0 or KCLD_ENOMEM. */
int kcld_uri_escape(struct kcld_buf *b, const char *s, size_t n,
                    int keep_slash);

#endif
