/* call.h — one AWS JSON-protocol call: sign, send, parse, retry.
 *
 * Speaks AWS JSON 1.0/1.1 (X-Amz-Target, application/x-amz-json-1.x) to
 * Kinesis, DynamoDB and SQS.  Errors become {HTTP status, short __type,
 * message}.  Retries follow the SDK "standard" mode: max attempts, backoff
 * rand(0,1) x min(2^(attempt-1) x base, 20 s), a 500-token retry quota,
 * throttling and transient error classes, clock-skew correction.
 *
 * Loop thread only. */
#ifndef KCLD_AWS_CALL_H
#define KCLD_AWS_CALL_H

#include <jansson.h>
#include <stddef.h>
#include <uv.h>

#include "aws/credentials.h"
#include "aws/http.h"

enum kcld_aws_service {
  KCLD_AWS_KINESIS = 0,
  KCLD_AWS_DYNAMODB = 1,
  KCLD_AWS_SQS = 2,
  KCLD_AWS_NSERVICES = 3
};

struct kcld_aws;

struct kcld_aws_opts {
  uv_loop_t *loop;
  struct kcld_http *http;              /* shared connection pool */
  struct kcld_credentials *creds;
  const char *region;
  /* Base URL per service ("http://127.0.0.1:4567"); NULL or "" = the AWS
   * endpoint https://<service>.<region>.amazonaws.com */
  const char *endpoint[KCLD_AWS_NSERVICES];
  int max_attempts;       /* total attempts incl. the first; 0 = 3 */
  long retry_base_ms;     /* backoff base; 0 = 100 (SDK default) */
  long timeout_ms;        /* per attempt; 0 = the http client's default */
};

/* Result of a call.  Valid only during the callback. */
struct kcld_aws_result {
  int err;                /* 0, KCLD_EAWS (service error), KCLD_ETRANSPORT,
                             KCLD_ETIMEDOUT, KCLD_EPARSE, KCLD_ECREDS,
                             KCLD_ECANCELED */
  long status;            /* HTTP status of the last attempt; 0 if none */
  const char *error_type; /* short __type ("ResourceNotFoundException"), or
                             "" when err is not KCLD_EAWS */
  const char *message;    /* human-readable detail, never a secret; "" if none */
  json_t *body;           /* parsed response on success (borrowed); NULL in
                             raw mode or on error */
  const char *raw;        /* raw body on success in raw mode, else NULL */
  size_t raw_len;
  int attempts;           /* attempts made */
};

typedef void (*kcld_aws_cb)(const struct kcld_aws_result *res, void *arg);

/* Per-call settings; NULL = defaults. */
struct kcld_aws_call_opts {
  int raw;                /* 1: hand back the body unparsed (large bodies are
                             parsed on the worker pool by the caller) */
  int max_attempts;       /* 0 = client default; 1 = no retry */
  long timeout_ms;        /* 0 = client default */
};

int kcld_aws_new(const struct kcld_aws_opts *opts, struct kcld_aws **out);

/* Sends `operation` (e.g. "GetRecords") with JSON body `request` (borrowed;
 * serialized before return).  Returns 0 and calls cb exactly once later, or
 * returns a negative KCLD_E* code and never calls cb. */
int kcld_aws_call(struct kcld_aws *aws, enum kcld_aws_service svc,
                  const char *operation, const json_t *request,
                  const struct kcld_aws_call_opts *opts, kcld_aws_cb cb,
                  void *arg);

/* The region the client signs for. */
const char *kcld_aws_region(const struct kcld_aws *aws);

/* Cancels calls in flight (their callbacks run with KCLD_ECANCELED), closes
 * timers and frees the client once closed: run the loop afterwards.  The
 * http client and credentials are not owned and stay open. */
void kcld_aws_close(struct kcld_aws *aws);

#endif
