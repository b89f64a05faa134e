/* sigv4.h — AWS Signature Version 4, Authorization-header signing.
 *
 * One signer per (region, service).  The signing key is derived once per
 * date and credential set (access key id + secret) and cached; it and the
 * signer's copy of the secret are wiped with OPENSSL_cleanse when replaced
 * or freed.  Signing reuses the signer's scratch space, so after the first
 * calls a signature costs one allocation (the result block).
 * Not thread-safe: one owner (the loop thread).
 *
 * Canonical form, as AWS's JSON-protocol services (Kinesis, DynamoDB, SQS)
 * and the AWS SigV4 test suite expect it:
 *  - path: the wire path is URI-encoded once more per segment (so "%20"
 *    becomes "%2520": AWS "double encoding"); with normalize_path, empty,
 *    "." and ".." segments are resolved first (a trailing '/' is kept);
 *  - query: split on '&' (empty pieces ignored), each key and value
 *    percent-decoded then re-encoded (unreserved bytes kept, the rest %XX),
 *    a missing '=' means an empty value, sorted by key then value;
 *  - headers: names trimmed and lower-cased, values trimmed with inner runs
 *    of space, tab, CR and LF folded to one space (so obsolete multi-line
 *    values fold too), repeated names joined with ',' in the given order.
 *    Every header given is signed: pass only headers that go on the wire
 *    unchanged (not User-Agent if a proxy may rewrite it, not Expect). */
#ifndef KCLD_AWS_SIGV4_H
#define KCLD_AWS_SIGV4_H

#include <stddef.h>
#include <time.h>

#include "aws/credentials.h"

struct kcld_sigv4;

struct kcld_sigv4_header {
  const char *name;
  const char *value;
};

struct kcld_sigv4_request {
  const char *method;  /* "POST" */
  const char *path;    /* as sent on the wire, starts with '/'; NULL = "/" */
  const char *query;   /* without '?', as sent; NULL or "" when none */
  const struct kcld_sigv4_header *headers; /* must include Host */
  size_t n_headers;
  const void *body;
  size_t body_len;
  int normalize_path;  /* 1 for every service but S3 */
  int sign_body_header;/* 1: also add and sign x-amz-content-sha256 */
  int omit_session_token; /* 1: add X-Amz-Security-Token unsigned (suite) */
};

/* Everything signing produced.  The strings live in one malloc'd block
 * (`size` bytes, wiped and freed by kcld_sigv4_result_clean_up()).
 * `headers` are what to add to the request, as "Name: value" lines,
 * NULL-terminated, in this order: X-Amz-Date, [X-Amz-Security-Token],
 * [x-amz-content-sha256], Authorization.  The token and Authorization lines
 * are secrets: never log them. */
struct kcld_sigv4_result {
  char *canonical_request;
  char *string_to_sign;
  char *headers[5];
  char signature[65];     /* lower-case hex */
  char amz_date[17];      /* 20150830T123600Z */
  size_t size;
};

/* Creates a signer for `region` and `service` (both non-empty, copied).
 * Returns NULL when out of memory or when an argument is NULL or empty. */
struct kcld_sigv4 *kcld_sigv4_new(const char *region, const char *service);

/* Wipes the cached key and secret and frees the signer.  NULL is a no-op. */
void kcld_sigv4_free(struct kcld_sigv4 *s);

/* Signs `req` with `creds` at wall-clock time `now` and fills `out` (which
 * the caller releases with kcld_sigv4_result_clean_up(), also after an
 * error).  A session token (non-empty creds->session_token) is added as
 * X-Amz-Security-Token and signed unless req->omit_session_token.
 * Returns 0; KCLD_EINVAL for a malformed request (no Host or an empty one,
 * a path not starting with '/', an empty or invalid header name, a NULL
 * value, a header the signer adds itself - X-Amz-Date, Authorization, and
 * X-Amz-Security-Token / x-amz-content-sha256 when it adds those - missing
 * credentials, or a date outside years 1000-9999); KCLD_ENOMEM. */
int kcld_sigv4_sign(struct kcld_sigv4 *s, const struct kcld_creds *creds,
                    time_t now, const struct kcld_sigv4_request *req,
                    struct kcld_sigv4_result *out);

/* Wipes and frees what kcld_sigv4_sign() put in `r` and zeroes it; safe on
 * a zeroed or already cleaned result. */
void kcld_sigv4_result_clean_up(struct kcld_sigv4_result *r);

/* How many times this signer has derived a signing key (cache misses).
 * For tests and metrics. */
unsigned long kcld_sigv4_key_derivations(const struct kcld_sigv4 *s);

#endif
