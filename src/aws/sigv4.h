/* sigv4.h — AWS Signature Version 4, Authorization-header signing.
 *
 * One signer per (region, service).  The signing key is derived once per
 * date and credential set and cached; it and every copy of the secret are
 * wiped with OPENSSL_cleanse when dropped.  Not thread-safe: one owner. */
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
  const char *path;    /* as sent on the wire, e.g. "/" or "/a%20b/../c" */
  const char *query;   /* without '?', as sent; NULL or "" when none */
  const struct kcld_sigv4_header *headers; /* must include Host */
  size_t n_headers;
  const void *body;
  size_t body_len;
  int normalize_path;  /* 1 for every service but S3 */
  int sign_body_header;/* 1: also add and sign x-amz-content-sha256 */
  int omit_session_token; /* 1: add X-Amz-Security-Token unsigned (suite) */
};

/* Everything signing produced; strings are malloc'd, free with
 * kcld_sigv4_result_clean_up().  `headers` are what to add to the request:
 * X-Amz-Date, [X-Amz-Security-Token], [x-amz-content-sha256], Authorization,
 * as "Name: value" lines, NULL-terminated. */
struct kcld_sigv4_result {
  char *canonical_request;
  char *string_to_sign;
  char signature[65];
  char amz_date[17];      /* 20150830T123600Z */
  char *headers[5];
};

/* Creates a signer; returns NULL when out of memory. */
struct kcld_sigv4 *kcld_sigv4_new(const char *region, const char *service);
void kcld_sigv4_destroy(struct kcld_sigv4 *s);

/* Signs `req` with `creds` at wall-clock time `now`.  Returns 0, or
 * KCLD_EINVAL (malformed request, e.g. no Host) / KCLD_ENOMEM. */
int kcld_sigv4_sign(struct kcld_sigv4 *s, const struct kcld_creds *creds,
                    time_t now, const struct kcld_sigv4_request *req,
                    struct kcld_sigv4_result *out);

void kcld_sigv4_result_clean_up(struct kcld_sigv4_result *r);

#endif
