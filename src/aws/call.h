/* call.h — one AWS call: sign, send, parse, retry.
 *
 * Speaks AWS JSON 1.0/1.1 (X-Amz-Target, application/x-amz-json-1.x) to
 * Kinesis, DynamoDB and SQS, and the AWS Query protocol to STS: the request
 * object's string, number and boolean members become form fields after
 * Action and Version, and the XML answer comes back as a JSON object (see
 * aws/xml.h: {"AssumeRoleResult": {...}, "ResponseMetadata": {...}}).
 * S3 speaks REST-XML (kcld_aws_rest_call): a method, a path, a query,
 * headers and a raw body, signed with x-amz-content-sha256 (the body's
 * SHA-256) and the path encoded once, as S3 signs it; the answer's body
 * comes back raw.
 * Errors become {HTTP status, short __type (Query: Error.Code; REST:
 * <Error><Code>, or for an answer without a body, as HEAD's are, the
 * status's name: NotFound, Forbidden, BadRequest, ...), message}.  Retries follow the SDK "standard" mode: max attempts, backoff
 * rand(0,1) x min(2^(attempt-1) x base, 20 s), a 500-token retry quota,
 * throttling and transient error classes, clock-skew correction.
 *
 * Retry classes and costs (retry quota of 500 tokens per client):
 *  - throttling: ThrottlingException, ProvisionedThroughputExceededException,
 *    LimitExceededException, RequestLimitExceeded, TooManyRequestsException,
 *    ... (the SDK list) and HTTP 429: 5 tokens;
 *  - transient: HTTP 500/502/503/504, RequestTimeout[Exception],
 *    InternalError: 5 tokens; no answer at all (connection refused, reset or
 *    cut short, timeout): 10 tokens;
 *  - clock skew: RequestTimeTooSkewed, InvalidSignatureException,
 *    SignatureDoesNotMatch, RequestExpired, AuthFailure with a server Date
 *    more than 4 minutes off: the offset is kept and later requests are
 *    signed with the corrected time; 5 tokens.
 * A success refunds the cost of its last retry, or 1 token when it needed
 * none.  With the quota short, the error is returned without retrying.
 * The "adaptive" mode adds the SDKs' client-side rate limiter
 * (aws/ratelimit.h): after a throttling answer every attempt of the client
 * waits for a token of a bucket whose rate follows CUBIC.
 * A 2xx answer that is not a JSON object is KCLD_EPARSE (not retried); an
 * empty 2xx body reads as {}.  Service messages are cut before any echo of
 * the canonical request (which could carry a session token).
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
  KCLD_AWS_STS = 3,
  KCLD_AWS_S3 = 4,
  KCLD_AWS_NSERVICES = 5
};

struct kcld_aws;

struct kcld_aws_opts {
  uv_loop_t *loop;
  struct kcld_http *http;              /* shared connection pool */
  struct kcld_credentials *creds;      /* NULL: every call brings its own
                                          credentials or is anonymous */
  const char *region;
  /* Base URL per service ("http://127.0.0.1:4567"); NULL or "" = the one
   * configured in the environment or the profile (aws/endpoint.h), else
   * the partition's endpoint for the region (FIPS, dual-stack as below) */
  const char *endpoint[KCLD_AWS_NSERVICES];
  const char *profile;    /* for configured endpoints and the FIPS and
                             dual-stack settings; NULL = AWS_PROFILE or
                             default */
  int use_fips;           /* 1 on, -1 off, 0 = AWS_USE_FIPS_ENDPOINT, else
                             the profile's use_fips_endpoint */
  int use_dualstack;      /* likewise: AWS_USE_DUALSTACK_ENDPOINT,
                             use_dualstack_endpoint */
  int max_attempts;       /* total attempts incl. the first; 0 =
                             AWS_MAX_ATTEMPTS, else the profile's
                             max_attempts, else 3 */
  const char *retry_mode; /* "standard" or "adaptive" ("legacy" reads as
                             standard); NULL = AWS_RETRY_MODE, else the
                             profile's retry_mode, else standard */
  long retry_base_ms;     /* backoff base; 0 = 100 (SDK default) */
  long timeout_ms;        /* per attempt; 0 = the http client's default */
  /* Requests in flight at once per service (streams not counted); the
   * attempts beyond wait their turn in order; 0 = no cap */
  int max_in_flight[KCLD_AWS_NSERVICES];
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
  const struct kcld_creds *creds; /* sign with these (copied) instead of
                                     the client's provider */
  int anonymous;          /* 1: send the request unsigned */
  struct kcld_http_body *body_into; /* raw mode: each attempt's answer is
                             written into this caller's buffer (http.h), and
                             res->raw points into it; NULL = the client's */
  int uncapped;           /* 1: not under the service's max_in_flight */
};

/* Creates a client: one SigV4 signer per service, endpoints resolved and
 * parsed (an endpoint with user info, a query or a fragment is refused),
 * retry quota full.  Returns 0, KCLD_EINVAL (missing loop, http or region,
 * a bad region or endpoint, negative limits) or KCLD_ENOMEM. */
int kcld_aws_new(const struct kcld_aws_opts *opts, struct kcld_aws **out);

/* Sends `operation` (e.g. "GetRecords") with JSON body `request` (borrowed;
 * serialized before return) to a JSON or Query service.  Returns 0 and
 * calls cb exactly once later, or returns a negative KCLD_E* code
 * (KCLD_EINVAL also for a REST service) and never calls cb. */
int kcld_aws_call(struct kcld_aws *aws, enum kcld_aws_service svc,
                  const char *operation, const json_t *request,
                  const struct kcld_aws_call_opts *opts, kcld_aws_cb cb,
                  void *arg);

/* A header of a REST request. */
struct kcld_aws_header {
  const char *name;
  const char *value;
};

#define KCLD_AWS_REST_HEADERS_MAX 16

/* A REST request (S3). */
struct kcld_aws_rest {
  const char *method;        /* "GET", "PUT", "HEAD", "DELETE", "POST" */
  const char *host_prefix;   /* put before the endpoint's host ("bucket."
                                for S3's virtual-hosted style); NULL =
                                none */
  const char *path;          /* decoded, starts with '/', after the
                                endpoint's own path; each byte but
                                unreserved ones and '/' is %XX-encoded
                                once, on the wire and for signing */
  const char *query;         /* encoded, without '?'; NULL = none */
  const struct kcld_aws_header *headers; /* signed and sent as given, at
                                most KCLD_AWS_REST_HEADERS_MAX (copied);
                                not Host, X-Amz-Date, Authorization,
                                X-Amz-Security-Token, x-amz-content-sha256 */
  size_t n_headers;
  char *body;                /* malloc'd; taken (freed by the call, also
                                when refused); NULL = empty */
  size_t body_len;
};

/* Sends a REST request to a REST service (kcld_aws_call's retries,
 * credentials and observer).  The body is sent as it is, with no copy, in
 * every attempt.  On success the answer's body is in res->raw (res->body is
 * NULL).  Returns 0 and calls cb exactly once later, or returns a negative
 * KCLD_E* code (KCLD_EINVAL: not a REST service, a bad method or path, too
 * many or bad headers) and never calls cb. */
int kcld_aws_rest_call(struct kcld_aws *aws, enum kcld_aws_service svc,
                       const char *operation, struct kcld_aws_rest *req,
                       const struct kcld_aws_call_opts *opts, kcld_aws_cb cb,
                       void *arg);

/* 1 when requests to `svc` go over https to a host name (not an IP
 * address): where a name can be put before the host (S3's
 * virtual-hosted-style buckets); else 0. */
int kcld_aws_endpoint_hostable(const struct kcld_aws *aws,
                               enum kcld_aws_service svc);

/* ======== Streamed calls (SubscribeToShard) ======== */

/* A call whose 2xx answer body is handed over as it arrives.  Valid from
 * kcld_aws_stream_start() until its callback has run. */
struct kcld_aws_stream;

/* Sends `operation` with `request` as kcld_aws_call() does (credentials,
 * SigV4 over the JSON body, the observer), over HTTP/2 (kcld_http_request
 * .http2), in one attempt: a stream is not retried, its owner starts
 * another.  A 2xx answer's body goes to on_data as it arrives (from the
 * loop, never inside curl; the owner may pause, resume or cancel from
 * there; on_take, optional, is the stream's kcld_http_take_cb, with arg);
 * cb then runs once, when the answer has ended: err 0 (res->raw is
 * "", every byte went to on_data), or the error as for kcld_aws_call()
 * (KCLD_EAWS with the error type for an error answer; KCLD_ETRANSPORT for
 * a reset or cut connection, also mid-answer; KCLD_ETIMEDOUT after
 * timeout_ms, 0 = the client's; KCLD_ECANCELED).  Returns 0 and the stream
 * in *out, or a negative KCLD_E* code (no callback). */
int kcld_aws_stream_start(struct kcld_aws *aws, enum kcld_aws_service svc,
                          const char *operation, const json_t *request,
                          long timeout_ms, kcld_http_data_cb on_data,
                          kcld_http_take_cb on_take, kcld_aws_cb cb,
                          void *arg, struct kcld_aws_stream **out);

/* Stops and restarts reading the answer (kcld_http_stream_pause/resume;
 * also before the request has gone out).  Idempotent. */
void kcld_aws_stream_pause(struct kcld_aws_stream *s);
void kcld_aws_stream_resume(struct kcld_aws_stream *s);

/* Ends the stream now: its callback runs with KCLD_ECANCELED before this
 * returns. */
void kcld_aws_stream_cancel(struct kcld_aws_stream *s);

/* Logs at warn level each call not finished yet ("AWS call unfinished"):
 * its service, operation, state and age. */
void kcld_aws_log_calls(const struct kcld_aws *aws);

/* Told of every finished call (just before its callback): the service's
 * signing name ("kinesis"), the operation, the seconds from kcld_aws_call()
 * to the result, retries and backoff included, the result's err and, for
 * KCLD_EAWS, the service's error code (the result's error_type, e.g.
 * "ProvisionedThroughputExceededException"; "" otherwise).  For metrics;
 * runs on the loop thread, also for calls cancelled by kcld_aws_close (err
 * KCLD_ECANCELED). */
typedef void (*kcld_aws_observer_fn)(void *arg, const char *service,
                                     const char *operation, double seconds,
                                     int err, const char *code);

/* Installs the observer (NULL removes it).  Its cost to a call is two clock
 * reads. */
void kcld_aws_set_observer(struct kcld_aws *aws, kcld_aws_observer_fn fn,
                           void *arg);

/* 1 when an error answer is one this layer retries as throttling or
 * transient (the classes above): HTTP 429, 500, 502, 503 or 504, or an
 * `error_type` (short __type; NULL = none) of the throttling or transient
 * lists; else 0.  Clock-skew errors are not counted. */
int kcld_aws_error_is_transient(long status, const char *error_type);

/* The signing name of a service ("kinesis"), or "" for an unknown one. */
const char *kcld_aws_service_name(enum kcld_aws_service svc);

/* The URL requests to `svc` go to. */
const char *kcld_aws_endpoint(const struct kcld_aws *aws,
                              enum kcld_aws_service svc);

/* 1 when `error_type` (an AWS __type, e.g. "ThrottlingException") is one
 * of the SDKs' throttling errors (the list above), else 0.  NULL is 0. */
int kcld_aws_error_is_throttling(const char *error_type);

/* The region the client signs for. */
const char *kcld_aws_region(const struct kcld_aws *aws);

/* The adaptive mode's sending rate (requests a second) once a throttling
 * answer turned its limiter on; 0 until then and in standard mode. */
double kcld_aws_send_rate(const struct kcld_aws *aws);

/* Tokens left in the retry quota (0..500).  For metrics and tests. */
int kcld_aws_retry_quota(const struct kcld_aws *aws);

/* Seconds the services' clock runs ahead of ours, as learnt from clock-skew
 * errors (0 until one is seen).  Added to the signing time. */
long kcld_aws_clock_skew(const struct kcld_aws *aws);

/* Cancels calls in flight (their callbacks run with KCLD_ECANCELED before
 * this returns; kcld_aws_call from such a callback fails with
 * KCLD_ECANCELED) and frees the client; the calls' timers close on the
 * loop: run it afterwards.  The http client and credentials are not owned
 * and stay open: close this client before them. */
void kcld_aws_close(struct kcld_aws *aws);

#endif
