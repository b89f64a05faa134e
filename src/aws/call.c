/* call.c — AWS JSON-protocol calls: sign, send, parse, retry.
 *
 * A call goes through attempts.  Each attempt asks the credentials for a
 * current set, signs a POST "/" with X-Amz-Target for the service, sends it
 * through the shared http client and classifies the answer: success, an
 * error worth retrying (throttling, transient, clock skew) or a final error.
 * Retries wait rand(0,1) x min(2^(attempt-1) x base, 20 s) on the call's own
 * uv_timer and draw on the client's retry quota, as the SDK "standard" retry
 * mode does.  The first attempt, too, starts from the timer, so a callback
 * never runs before kcld_aws_call() has returned.
 *
 * Lifetime: a call is linked in its client until it finishes (its callback
 * ran).  Its memory outlives that until its timer has closed and any
 * credentials callback it waits for has come back. */
#include "aws/call.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "aws/endpoint.h"
#include "aws/errtext.h"
#include "aws/ratelimit.h"
#include "aws/sigv4.h"
#include "aws/turns.h"
#include "aws/xml.h"
#include "base/backoff.h"
#include "base/buf.h"
#include "base/uri.h"
#include "err.h"
#include "log.h"

#define QUOTA_MAX 500
#define RETRY_COST 5
#define RETRY_COST_NO_ANSWER 10
#define NO_RETRY_INCREMENT 1
#define BACKOFF_MAX_MS 20000L
#define DEFAULT_MAX_ATTEMPTS 3
#define DEFAULT_RETRY_BASE_MS 100L
#define SKEW_THRESHOLD_S 240
#define OP_MAX 64
#define MESSAGE_MAX 512

enum protocol {
  PROTO_JSON,  /* AWS JSON 1.0/1.1: X-Amz-Target, JSON in and out */
  PROTO_QUERY, /* AWS Query: form-encoded Action=...&Version=..., XML out */
  PROTO_REST   /* REST-XML (S3): method, path, query, headers, raw body */
};

static const struct service {
  struct kcld_endpoint_spec ep; /* signing name, hostname rules */
  const char *target_prefix;    /* JSON: X-Amz-Target "<prefix>.<Op>" */
  const char *content_type;
  enum protocol protocol;
  const char *version;          /* Query: the API version */
  const char *env_id;           /* AWS_ENDPOINT_URL_<env_id> */
} s_services[KCLD_AWS_NSERVICES] = {
  {{"kinesis", 0, 0}, "Kinesis_20131202", "application/x-amz-json-1.1",
   PROTO_JSON, NULL, "KINESIS"},
  {{"dynamodb", 1, 0}, "DynamoDB_20120810", "application/x-amz-json-1.0",
   PROTO_JSON, NULL, "DYNAMODB"},
  {{"sqs", 1, 0}, "AmazonSQS", "application/x-amz-json-1.0", PROTO_JSON, NULL,
   "SQS"},
  {{"sts", 1, 0}, NULL, "application/x-www-form-urlencoded; charset=utf-8",
   PROTO_QUERY, "2011-06-15", "STS"},
  {{"s3", 0, 1}, NULL, NULL, PROTO_REST, NULL, "S3"},
};

static const char *const s_throttling[] = {
  "Throttling", "ThrottlingException", "ThrottledException",
  "RequestThrottledException", "TooManyRequestsException",
  "ProvisionedThroughputExceededException", "TransactionInProgressException",
  "RequestLimitExceeded", "BandwidthLimitExceeded", "LimitExceededException",
  "RequestThrottled", "SlowDown", "PriorRequestNotComplete",
  "EC2ThrottledException", "KMSThrottlingException", NULL};

static const char *const s_transient[] = {
  "RequestTimeout", "RequestTimeoutException", "InternalError", NULL};

static const char *const s_skew[] = {
  "RequestTimeTooSkewed", "InvalidSignatureException", "SignatureDoesNotMatch",
  "RequestExpired", "AuthFailure", NULL};


/* A REST call's request, as kcld_aws_rest_call() was given it. */
struct rest_req {
  char method[8];
  char *host;                        /* the Host header */
  char *url;                         /* encoded path and query */
  char *path;                        /* decoded: the signer encodes it */
  char *query;                       /* encoded, or NULL */
  struct kcld_sigv4_header *headers; /* Host, then the caller's (copied) */
  char **lines;                      /* the same as "Name: value" */
  size_t n_headers;
  int has_type;                      /* a Content-Type is among them */
};

struct aws_call;

struct kcld_aws {
  uv_loop_t *loop;
  struct kcld_http *http;
  struct kcld_credentials *creds;
  char *region;
  struct kcld_endpoint ep[KCLD_AWS_NSERVICES];
  struct kcld_sigv4 *signer[KCLD_AWS_NSERVICES];
  int max_attempts;
  int adaptive;        /* retry mode adaptive: the rate limiter is on */
  struct kcld_ratelimit rl;
  long retry_base_ms;
  long timeout_ms;
  int quota;           /* retry tokens left */
  long skew_s;         /* server clock minus ours */
  struct aws_call *calls;
  struct kcld_turns turns[KCLD_AWS_NSERVICES]; /* requests, not streams */
  kcld_aws_observer_fn observer;
  void *observer_arg;
  int closing;
};

enum call_state {
  CALL_WAITING,  /* timer set for the next attempt */
  CALL_QUEUED,   /* waiting for a turn under the service's cap */
  CALL_CREDS,    /* waiting for credentials */
  CALL_HTTP,     /* request in flight */
  CALL_DONE      /* callback has run */
};

struct aws_call {
  struct kcld_aws *aws;        /* NULL once done */
  enum kcld_aws_service svc;
  char op[OP_MAX];
  char *body;                  /* wiped when freed: may hold a token */
  size_t body_len;
  struct rest_req *rest;       /* REST calls only; their body is data and
                                  is not wiped */
  int raw;
  int anonymous;               /* send unsigned */
  int has_own;                 /* sign with `own`, not the provider's */
  struct kcld_creds own;
  struct kcld_http_body *body_into;
  int max_attempts;
  long timeout_ms;
  int attempt;                 /* attempts started */
  int last_cost;               /* tokens taken for the latest retry */
  uint64_t started_ns;         /* uv_hrtime() at kcld_aws_call() */
  enum call_state state;
  int refs;                    /* timer not yet closed + creds pending */
  uv_timer_t timer;
  kcld_aws_cb cb;
  void *arg;
  struct aws_call *prev, *next;
  int turn;                    /* holds one of its service's turns */
  int uncapped;                /* never needs one */
  struct kcld_turn_waiter waiter; /* CALL_QUEUED: in its service's queue */
  /* The latest failure, reported if no attempt succeeds. */
  int err;
  long status;
  char type[128];
  char *message;               /* MESSAGE_MAX bytes from the first failure
                                  on: the call stays within malloc's
                                  per-thread cache (< 1 KiB) */
  /* Streams only (kcld_aws_stream_start). */
  kcld_http_data_cb on_data;   /* NULL for a gathered answer */
  kcld_http_take_cb on_take;   /* optional */
  struct kcld_http_stream *hs; /* while the request is in flight */
  int paused;                  /* the owner wants it paused */
};

/* ======== Small helpers ======== */

/* rand(0,1) x min(2^(attempt-1) x base, 20 s), in ms. */
static uint64_t backoff_ms(struct kcld_aws *aws, int attempt)
{
  struct kcld_backoff b = {(uint64_t)aws->retry_base_ms, BACKOFF_MAX_MS,
                           KCLD_BACKOFF_FULL};
  return kcld_backoff_ms(&b, attempt > 0 ? (unsigned)attempt : 1);
}

static int in_list(const char *const *list, const char *s)
{
  for (; *list; list++)
    if (strcmp(*list, s) == 0)
      return 1;
  return 0;
}

static int valid_region(const char *r)
{
  size_t n = r ? strlen(r) : 0;
  if (n == 0 || n > 64)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!((r[i] >= 'a' && r[i] <= 'z') || (r[i] >= '0' && r[i] <= '9') ||
          r[i] == '-'))
      return 0;
  return 1;
}

static int valid_operation(const char *op)
{
  size_t n = op ? strlen(op) : 0;
  if (n == 0 || n >= OP_MAX)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!((op[i] >= 'a' && op[i] <= 'z') || (op[i] >= 'A' && op[i] <= 'Z') ||
          (op[i] >= '0' && op[i] <= '9')))
      return 0;
  return 1;
}

/* ======== Call lifetime ======== */

static void call_link(struct kcld_aws *aws, struct aws_call *c)
{
  c->prev = NULL;
  c->next = aws->calls;
  if (aws->calls)
    aws->calls->prev = c;
  aws->calls = c;
}

static void call_unlink(struct kcld_aws *aws, struct aws_call *c)
{
  if (c->prev)
    c->prev->next = c->next;
  else
    aws->calls = c->next;
  if (c->next)
    c->next->prev = c->prev;
  c->prev = c->next = NULL;
}

static void rest_free(struct rest_req *r)
{
  if (!r)
    return;
  free(r->host);
  free(r->url);
  free(r->path);
  free(r->query);
  for (size_t i = 0; i < r->n_headers; i++) {
    if (i > 0) { /* Host's value is r->host */
      free((char *)r->headers[i].name);
      free((char *)r->headers[i].value);
    }
    free(r->lines[i]);
  }
  free(r->headers);
  free(r->lines);
  free(r);
}

static void call_unref(struct aws_call *c)
{
  if (--c->refs == 0) {
    if (!c->rest)
      OPENSSL_cleanse(c->body, c->body_len);
    rest_free(c->rest);
    free(c->body);
    kcld_creds_clean_up(&c->own);
    free(c->message);
    free(c);
  }
}

/* c's message buffer, for writing; a scratch one when out of memory (the
 * message then reads as that). */
static char *message_buf(struct aws_call *c)
{
  static char s_scratch[MESSAGE_MAX];
  if (!c->message && !(c->message = malloc(MESSAGE_MAX)))
    return s_scratch;
  return c->message;
}

static void on_call_timer_closed(uv_handle_t *h)
{
  call_unref(h->data);
}

/* ======== Turns: requests in flight per service (aws/turns.h) ======== */

static void on_retry_timer(uv_timer_t *t);
static void call_fail(struct aws_call *c, int err, const char *message);

static struct aws_call *call_of_waiter(struct kcld_turn_waiter *w)
{
  return (struct aws_call *)(void *)((char *)w -
                                     offsetof(struct aws_call, waiter));
}

/* Whether c may send now: it holds a turn or took one (a stream never
 * needs one).  Else it waits in its service's queue (CALL_QUEUED). */
static int turn_take(struct aws_call *c)
{
  if (c->turn || c->on_data || c->uncapped)
    return 1;
  if (kcld_turns_take(&c->aws->turns[c->svc], &c->waiter)) {
    c->turn = 1;
    return 1;
  }
  c->state = CALL_QUEUED;
  return 0;
}

/* Free turns of service svc go to the oldest waiting calls, which start
 * their attempts from their own timers (never inside a callback). */
static void turn_give(struct kcld_aws *aws, enum kcld_aws_service svc)
{
  struct kcld_turn_waiter *w;

  while (!aws->closing && (w = kcld_turns_next(&aws->turns[svc])) != NULL) {
    struct aws_call *n = call_of_waiter(w);
    n->turn = 1;
    n->state = CALL_WAITING;
    if (uv_timer_start(&n->timer, on_retry_timer, 0, 0) != 0)
      call_fail(n, KCLD_EINVAL, "the request could not be started");
  }
}

/* c's request has ended: its turn goes to the oldest waiting call. */
static void turn_end(struct aws_call *c)
{
  if (!c->turn)
    return;
  c->turn = 0;
  kcld_turns_end(&c->aws->turns[c->svc]);
  turn_give(c->aws, c->svc);
}

/* Runs the callback once and lets the call go.  `parsed` is handed to the
 * callback (borrowed) and released after it. */
static void call_finish(struct aws_call *c, int err, json_t *parsed,
                        const char *raw, size_t raw_len)
{
  struct kcld_aws *aws = c->aws;
  struct kcld_aws_result res;

  if (c->state == CALL_DONE)
    return;
  kcld_turns_remove(&aws->turns[c->svc], &c->waiter);
  turn_end(c);
  c->state = CALL_DONE;
  call_unlink(aws, c);
  c->aws = NULL;
  uv_timer_stop(&c->timer);

  memset(&res, 0, sizeof(res));
  res.err = err;
  res.status = c->status;
  res.error_type = err == KCLD_EAWS ? c->type : "";
  res.message = !err ? "" : c->message ? c->message : "out of memory";
  res.body = err ? NULL : parsed;
  res.raw = err ? NULL : raw;
  res.raw_len = err ? 0 : raw_len;
  res.attempts = c->attempt;
  /* Before the callback, which may close the client. */
  if (aws->observer)
    aws->observer(aws->observer_arg, s_services[c->svc].ep.prefix, c->op,
                  (double)(uv_hrtime() - c->started_ns) / 1e9, err,
                  res.error_type);
  c->cb(&res, c->arg);
  if (parsed && s_services[c->svc].protocol == PROTO_QUERY)
    kcld_json_wipe(parsed);
  json_decref(parsed);
  uv_close((uv_handle_t *)&c->timer, on_call_timer_closed);
}

/* Finishes with a failure that is not an AWS answer. */
static void call_fail(struct aws_call *c, int err, const char *message)
{
  c->status = 0;
  c->type[0] = '\0';
  snprintf(message_buf(c), MESSAGE_MAX, "%s", message);
  call_finish(c, err, NULL, NULL, 0);
}

/* ======== Attempts ======== */

static void start_attempt(struct aws_call *c);

static void on_retry_timer(uv_timer_t *t)
{
  start_attempt(t->data);
}

static void log_failure(enum kcld_log_level level, const char *msg,
                        const struct aws_call *c, const char *extra_key,
                        const char *extra_value)
{
  if (!kcld_log_enabled(level))
    return;
  kcld_log(level, msg, "service", s_services[c->svc].ep.prefix, "op", c->op,
           KCLD_LOG_INT("attempt", c->attempt),
           KCLD_LOG_INT("status", c->status),
           "error", c->err == KCLD_EAWS ? c->type : kcld_strerror(c->err),
           extra_key, extra_value, NULL);
}

/* The attempt failed with c->err/status/type/message; retry if the budget
 * allows (`cost` tokens), else report the failure. */
static void maybe_retry(struct aws_call *c, int cost)
{
  struct kcld_aws *aws = c->aws;
  char delay[24];

  if (c->attempt >= c->max_attempts) {
    if (c->attempt > 1)
      log_failure(KCLD_LOG_WARN, "AWS call failed after retries", c, NULL,
                  NULL);
    call_finish(c, c->err, NULL, NULL, 0);
    return;
  }
  if (aws->quota < cost) {
    log_failure(KCLD_LOG_WARN, "AWS retry quota exhausted; not retrying", c,
                NULL, NULL);
    call_finish(c, c->err, NULL, NULL, 0);
    return;
  }
  aws->quota -= cost;
  c->last_cost = cost;
  uint64_t ms = backoff_ms(aws, c->attempt);
  snprintf(delay, sizeof(delay), "%llu", (unsigned long long)ms);
  log_failure(KCLD_LOG_DEBUG, "AWS call retrying", c, "delay_ms", delay);
  c->state = CALL_WAITING;
  if (uv_timer_start(&c->timer, on_retry_timer, ms, 0) != 0)
    call_finish(c, c->err, NULL, NULL, 0);
}

/* Parses an answer body the protocol's way into an object: *out, or NULL
 * with `why` set (never a piece of the body).  An empty body reads as {}.
 * Returns 0, KCLD_EPARSE or KCLD_ENOMEM. */
static int parse_body(enum protocol proto, const char *body, size_t len,
                      json_t **out, char *why, size_t why_len)
{
  json_error_t jerr;
  size_t i = 0;

  *out = NULL;
  while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' ||
                     body[i] == '\n'))
    i++;
  if (i == len) {
    *out = json_object(); /* e.g. DeleteStream answers with no body */
    return *out ? 0 : KCLD_ENOMEM;
  }
  if (proto == PROTO_QUERY)
    return kcld_xml_to_json(body, len, out, why, why_len);
  *out = json_loadb(body, len, 0, &jerr);
  if (*out && json_is_object(*out))
    return 0;
  snprintf(why, why_len, "%s", *out ? "other JSON value" : jerr.text);
  json_decref(*out);
  *out = NULL;
  return KCLD_EPARSE;
}

static void on_success(struct aws_call *c, const struct kcld_http_response *r)
{
  struct kcld_aws *aws = c->aws;
  json_t *parsed = NULL;

  /* Parse first: an answer we cannot read is not a success. */
  if (!c->raw) {
    char why[160];
    int rc = parse_body(s_services[c->svc].protocol, r->body, r->body_len,
                        &parsed, why, sizeof(why));
    if (rc == KCLD_EPARSE) {
      c->err = KCLD_EPARSE;
      c->type[0] = '\0';
      snprintf(message_buf(c), MESSAGE_MAX,
               "HTTP %ld answer is not a%s (%s)", r->status,
               s_services[c->svc].protocol == PROTO_QUERY
                 ? "n XML document"
                 : " JSON object",
               why);
      log_failure(KCLD_LOG_WARN, "AWS answer unreadable", c, NULL, NULL);
      call_finish(c, KCLD_EPARSE, NULL, NULL, 0);
      return;
    }
    if (rc != 0) {
      call_fail(c, KCLD_ENOMEM, "out of memory");
      return;
    }
  }
  aws->quota += c->last_cost ? c->last_cost : NO_RETRY_INCREMENT;
  if (aws->quota > QUOTA_MAX)
    aws->quota = QUOTA_MAX;
  c->err = 0;
  call_finish(c, 0, parsed, c->raw ? r->body : NULL, c->raw ? r->body_len : 0);
}

/* The error type of a REST answer without an error document (HEAD), as
 * the SDKs name it; NULL for the statuses that have no name. */
static const char *status_type(long status)
{
  switch (status) {
  case 301: return "PermanentRedirect";
  case 307: return "TemporaryRedirect";
  case 400: return "BadRequest";
  case 403: return "Forbidden";
  case 404: return "NotFound";
  case 405: return "MethodNotAllowed";
  case 409: return "Conflict";
  case 412: return "PreconditionFailed";
  default: return NULL;
  }
}

/* Reads {__type, message} (Query: Error.Code, Error.Message; REST: the
 * <Error> document's Code and Message) from an error answer into the
 * call. */
static void read_error(struct aws_call *c, const struct kcld_http_response *r)
{
  enum protocol proto = s_services[c->svc].protocol;
  json_t *j = NULL;
  const char *type = NULL, *msg = NULL;
  char why[8];

  c->type[0] = '\0';
  message_buf(c)[0] = '\0';
  if (proto == PROTO_QUERY || proto == PROTO_REST) {
    json_t *e;
    if (r->body_len > 0 &&
        kcld_xml_to_json(r->body, r->body_len, &j, why, sizeof(why)) == 0 &&
        json_is_object(e = proto == PROTO_QUERY ? json_object_get(j, "Error")
                                                : j)) {
      type = json_string_value(json_object_get(e, "Code"));
      msg = json_string_value(json_object_get(e, "Message"));
    }
    if (!type && proto == PROTO_REST)
      type = status_type(r->status);
  } else if ((j = json_loadb(r->body, r->body_len, 0, NULL)) &&
             json_is_object(j)) {
    type = json_string_value(json_object_get(j, "__type"));
    if (!type)
      type = json_string_value(json_object_get(j, "code"));
    msg = json_string_value(json_object_get(j, "message"));
    if (!msg)
      msg = json_string_value(json_object_get(j, "Message"));
    if (!msg)
      msg = json_string_value(json_object_get(j, "errorMessage"));
  }
  /* The header is what the protocol defines; the body is the fallback. */
  if (r->error_type && *r->error_type)
    kcld_aws_error_type(c->type, sizeof(c->type), r->error_type);
  else if (type)
    kcld_aws_error_type(c->type, sizeof(c->type), type);
  if (msg) {
    kcld_aws_error_message(message_buf(c), MESSAGE_MAX, msg, strlen(msg));
  } else if (!j && r->body_len > 0) {
    char snippet[160];
    kcld_aws_error_message(snippet, sizeof(snippet), r->body,
                 r->body_len < 159 ? r->body_len : 159);
    snprintf(message_buf(c), MESSAGE_MAX, "HTTP %ld: %s", r->status,
             snippet);
  } else {
    snprintf(message_buf(c), MESSAGE_MAX, "HTTP %ld", r->status);
  }
  json_decref(j);
}

static double now_s(void)
{
  return (double)uv_hrtime() / 1e9;
}

/* Tells the adaptive mode's rate limiter how an attempt ended. */
static void learn(struct aws_call *c, int throttled)
{
  if (c->aws->adaptive)
    kcld_ratelimit_update(&c->aws->rl, now_s(), throttled);
}

static void on_http(const struct kcld_http_response *r, void *arg)
{
  struct aws_call *c = arg;
  struct kcld_aws *aws = c->aws;

  c->hs = NULL;
  turn_end(c);
  if (r->err == KCLD_ECANCELED) {
    call_fail(c, KCLD_ECANCELED, "cancelled");
    return;
  }
  if (r->err) {
    /* No answer: refused, reset, cut short or timed out.  Transient. */
    learn(c, 0);
    c->err = r->err;
    c->status = 0;
    c->type[0] = '\0';
    snprintf(message_buf(c), MESSAGE_MAX, "%s", r->errmsg);
    maybe_retry(c, RETRY_COST_NO_ANSWER);
    return;
  }
  c->status = r->status;
  if (r->status >= 200 && r->status < 300) {
    learn(c, 0);
    on_success(c, r);
    return;
  }
  c->err = KCLD_EAWS;
  read_error(c, r);
  learn(c, in_list(s_throttling, c->type) || r->status == 429);

  if (in_list(s_skew, c->type) && r->server_date > 0) {
    time_t now = time(NULL);
    long off = (long)(r->server_date - (now + aws->skew_s));
    if (off > SKEW_THRESHOLD_S || off < -SKEW_THRESHOLD_S) {
      char skew[24];
      aws->skew_s = (long)(r->server_date - now);
      snprintf(skew, sizeof(skew), "%ld", aws->skew_s);
      log_failure(KCLD_LOG_WARN, "clock skew: signing with the server's time",
                  c, "skew_s", skew);
      maybe_retry(c, RETRY_COST);
      return;
    }
  }
  if (kcld_aws_error_is_transient(r->status, c->type)) {
    maybe_retry(c, RETRY_COST);
    return;
  }
  log_failure(KCLD_LOG_DEBUG, "AWS call failed", c, NULL, NULL);
  call_finish(c, KCLD_EAWS, NULL, NULL, 0);
}

static size_t on_stream_data(const char *data, size_t len, void *arg)
{
  struct aws_call *c = arg;
  return c->on_data(data, len, c->arg);
}

/* Signs `sreq` into *sig unless `creds` is NULL (anonymous: *sig stays
 * empty).  0, or the call failed (and *sig cleaned up): nothing to send. */
static int sign(struct aws_call *c, const struct kcld_creds *creds,
                const struct kcld_sigv4_request *sreq,
                struct kcld_sigv4_result *sig)
{
  struct kcld_aws *aws = c->aws;
  int rc;
  memset(sig, 0, sizeof(*sig));
  rc = creds ? kcld_sigv4_sign(aws->signer[c->svc], creds,
                               time(NULL) + aws->skew_s, sreq, sig)
             : 0;
  if (rc != 0) {
    kcld_sigv4_result_clean_up(sig);
    call_fail(c, rc == KCLD_ENOMEM ? KCLD_ENOMEM : KCLD_ECREDS,
              "the request could not be signed");
  }
  return rc;
}

/* Signs (unless `creds` is NULL: anonymous) and sends one attempt of a
 * REST call: the caller's headers and Host signed, x-amz-content-sha256
 * added, the path encoded once (S3's canonical form). */
static void send_rest_attempt(struct aws_call *c,
                              const struct kcld_creds *creds)
{
  struct kcld_aws *aws = c->aws;
  const struct rest_req *rr = c->rest;
  const char *ptrs[1 + KCLD_AWS_REST_HEADERS_MAX + 1 + 5 + 1];
  struct kcld_sigv4_result sig;
  size_t n = 0;
  int rc;

  const struct kcld_sigv4_request sreq = {
    .method = rr->method, .path = rr->path, .query = rr->query,
    .headers = rr->headers, .n_headers = rr->n_headers, .body = c->body,
    .body_len = c->body_len, .normalize_path = 0, .sign_body_header = 1};
  if (sign(c, creds, &sreq, &sig) != 0)
    return;
  for (size_t i = 0; i < rr->n_headers; i++)
    ptrs[n++] = rr->lines[i];
  if (!rr->has_type) /* not curl's form type for a PUT or POST body */
    ptrs[n++] = "Content-Type:";
  for (int i = 0; creds && i < 5 && sig.headers[i]; i++)
    ptrs[n++] = sig.headers[i];
  ptrs[n] = NULL;

  const struct kcld_http_request hreq = {
    .method = rr->method, .url = rr->url, .headers = ptrs, .body = c->body,
    .body_len = c->body_len, .timeout_ms = c->timeout_ms, .borrow_body = 1,
    .body_into = c->body_into};
  c->state = CALL_HTTP;
  rc = kcld_http_send(aws->http, &hreq, on_http, c);
  kcld_sigv4_result_clean_up(&sig); /* the http client copied the lines */
  if (rc != 0)
    call_fail(c, rc, "the request could not be sent");
}

/* Signs (unless `creds` is NULL: anonymous) and sends one attempt. */
static void send_attempt(struct aws_call *c, const struct kcld_creds *creds)
{
  struct kcld_aws *aws = c->aws;
  const struct service *svc = &s_services[c->svc];
  const struct kcld_endpoint *ep = &aws->ep[c->svc];
  int json = svc->protocol == PROTO_JSON;
  struct kcld_sigv4_result sig;
  char target[OP_MAX + 32], host_line[300], ct_line[80], target_line[128];
  const char *lines[3 + 5 + 1];
  size_t n = 0;
  int rc;

  if (c->rest) {
    send_rest_attempt(c, creds);
    return;
  }
  snprintf(target, sizeof(target), "%s.%s",
           json ? svc->target_prefix : "", c->op);
  const struct kcld_sigv4_header hs[] = {
    {"Host", ep->host},
    {"Content-Type", svc->content_type},
    {"X-Amz-Target", target},
  };
  const struct kcld_sigv4_request sreq = {
    .method = "POST", .path = ep->path, .headers = hs,
    .n_headers = json ? 3 : 2, .body = c->body, .body_len = c->body_len,
    .normalize_path = 1};

  if (sign(c, creds, &sreq, &sig) != 0)
    return;
  snprintf(host_line, sizeof(host_line), "Host: %s", ep->host);
  snprintf(ct_line, sizeof(ct_line), "Content-Type: %s", svc->content_type);
  snprintf(target_line, sizeof(target_line), "X-Amz-Target: %s", target);
  lines[n++] = host_line;
  lines[n++] = ct_line;
  if (json)
    lines[n++] = target_line;
  for (int i = 0; creds && i < 5 && sig.headers[i]; i++)
    lines[n++] = sig.headers[i];
  lines[n] = NULL;

  const struct kcld_http_request hreq = {
    .method = "POST", .url = ep->url, .headers = lines, .body = c->body,
    .body_len = c->body_len, .timeout_ms = c->timeout_ms,
    .body_into = c->on_data ? NULL : c->body_into,
    .take = c->on_take, .take_arg = c->arg};
  c->state = CALL_HTTP;
  if (c->on_data) {
    rc = kcld_http_stream_start(aws->http, &hreq, on_stream_data, on_http, c,
                                &c->hs);
    if (rc == 0 && c->paused)
      kcld_http_stream_pause(c->hs);
  } else {
    rc = kcld_http_send(aws->http, &hreq, on_http, c);
  }
  kcld_sigv4_result_clean_up(&sig); /* the http client copied the lines */
  if (rc != 0)
    call_fail(c, rc, "the request could not be sent");
}

static void on_creds(int err, const struct kcld_creds *creds, void *arg)
{
  struct aws_call *c = arg;

  if (c->state == CALL_DONE) { /* cancelled meanwhile */
    call_unref(c);
    return;
  }
  c->refs--; /* the call itself still holds its timer's reference */
  if (err == KCLD_ECANCELED)
    call_fail(c, KCLD_ECANCELED, "cancelled");
  else if (err || !creds)
    call_fail(c, KCLD_ECREDS, "no AWS credentials");
  else
    send_attempt(c, creds);
}

static void start_attempt(struct aws_call *c)
{
  if (!turn_take(c))
    return; /* turn_end() starts it */
  if (c->aws->adaptive) {
    /* The adaptive mode's rate limiter: wait for a token. */
    uint64_t wait = kcld_ratelimit_acquire(&c->aws->rl, now_s());
    if (wait && uv_timer_start(&c->timer, on_retry_timer, wait, 0) == 0) {
      c->state = CALL_WAITING;
      return;
    }
  }
  c->attempt++;
  if (c->anonymous || c->has_own) {
    send_attempt(c, c->has_own ? &c->own : NULL);
    return;
  }
  if (!c->aws->creds) {
    call_fail(c, KCLD_ECREDS, "no AWS credentials for this client");
    return;
  }
  c->state = CALL_CREDS;
  c->refs++;
  kcld_credentials_get(c->aws->creds, on_creds, c);
}

/* ======== Public interface ======== */

/* A tri-state option: 1 / -1 as given, 0 = the environment or profile. */
static int setting(int given, const char *env,
                   const struct kcld_profile *profile, const char *key)
{
  if (given)
    return given > 0;
  return kcld_endpoint_flag(env, profile, key);
}

/* Each service's endpoint: the one given, the one configured in the
 * environment or the profile, else the partition's.  Returns 0 or
 * KCLD_E*. */
static int resolve_endpoints(struct kcld_aws *aws,
                             const struct kcld_aws_opts *opts,
                             const struct kcld_profile_files *files,
                             const struct kcld_profile *prof)
{
  int fips, dual, rc = 0;

  fips = setting(opts->use_fips, "AWS_USE_FIPS_ENDPOINT", prof,
                 "use_fips_endpoint");
  dual = setting(opts->use_dualstack, "AWS_USE_DUALSTACK_ENDPOINT", prof,
                 "use_dualstack_endpoint");
  for (int i = 0; rc == 0 && i < KCLD_AWS_NSERVICES; i++) {
    const struct service *svc = &s_services[i];
    const char *given = opts->endpoint[i];
    char *conf = NULL, url[256];
    char key[32];
    size_t k;
    for (k = 0; svc->env_id[k] && k + 1 < sizeof(key); k++)
      key[k] = (char)(svc->env_id[k] | 0x20); /* services key: lower case */
    key[k] = '\0';
    if (!given || !*given) {
      conf = kcld_endpoint_configured(svc->env_id, key, files, prof);
      given = conf;
    }
    if (given)
      rc = kcld_endpoint_parse(&aws->ep[i], given);
    else if ((rc = kcld_endpoint_default(&svc->ep, aws->region, fips, dual,
                                         url, sizeof(url))) == 0)
      rc = kcld_endpoint_parse(&aws->ep[i], url);
    if (rc == KCLD_EINVAL)
      kcld_log(KCLD_LOG_ERROR, "bad AWS endpoint URL", "service",
               svc->ep.prefix, "endpoint",
               kcld_endpoint_loggable_url(given ? given : url), NULL);
    free(conf);
  }
  return rc;
}

/* A setting from the environment variable `env`, else the profile's `key`;
 * *from names where it came from.  NULL when neither sets it. */
static const char *env_or_profile(const char *env,
                                  const struct kcld_profile *prof,
                                  const char *key, const char **from)
{
  const char *v = getenv(env);
  *from = env;
  if (v && *v)
    return v;
  *from = key;
  return kcld_profile_get(prof, key);
}

/* The retry mode and the attempts: the options, else AWS_RETRY_MODE /
 * AWS_MAX_ATTEMPTS, else the profile's retry_mode / max_attempts, else
 * standard and 3.  Returns 0 or KCLD_EINVAL (logged). */
static int retry_settings(struct kcld_aws *aws,
                          const struct kcld_aws_opts *opts,
                          const struct kcld_profile *prof)
{
  const char *from, *v;
  aws->max_attempts = opts->max_attempts;
  if (!aws->max_attempts &&
      (v = env_or_profile("AWS_MAX_ATTEMPTS", prof, "max_attempts", &from))) {
    char *end;
    long n = strtol(v, &end, 10);
    if (*end || n < 1 || n > 100) {
      kcld_log(KCLD_LOG_ERROR, "bad retry setting: not 1..100", "setting",
               from, "value", v, NULL);
      return KCLD_EINVAL;
    }
    aws->max_attempts = (int)n;
  }
  if (!aws->max_attempts)
    aws->max_attempts = DEFAULT_MAX_ATTEMPTS;
  v = opts->retry_mode && *opts->retry_mode ? opts->retry_mode : NULL;
  from = "retry_mode";
  if (!v)
    v = env_or_profile("AWS_RETRY_MODE", prof, "retry_mode", &from);
  if (!v || strcmp(v, "standard") == 0 || strcmp(v, "legacy") == 0) {
    aws->adaptive = 0;
  } else if (strcmp(v, "adaptive") == 0) {
    aws->adaptive = 1;
  } else {
    kcld_log(KCLD_LOG_ERROR, "bad retry setting: not standard, adaptive or "
             "legacy", "setting", from, "value", v, NULL);
    return KCLD_EINVAL;
  }
  kcld_ratelimit_init(&aws->rl, (double)uv_hrtime() / 1e9);
  return 0;
}

int kcld_aws_new(const struct kcld_aws_opts *opts, struct kcld_aws **out)
{
  struct kcld_profile_files *files = NULL;
  const struct kcld_profile *prof;
  struct kcld_aws *aws;
  int rc = KCLD_EINVAL;

  if (!out)
    return KCLD_EINVAL;
  *out = NULL;
  if (!opts || !opts->loop || !opts->http || !valid_region(opts->region) ||
      opts->max_attempts < 0 ||
      opts->retry_base_ms < 0 || opts->timeout_ms < 0)
    return KCLD_EINVAL;
  for (int i = 0; i < KCLD_AWS_NSERVICES; i++)
    if (opts->max_in_flight[i] < 0)
      return KCLD_EINVAL;
  aws = calloc(1, sizeof(*aws));
  if (!aws)
    return KCLD_ENOMEM;
  aws->loop = opts->loop;
  aws->http = opts->http;
  aws->creds = opts->creds;
  aws->retry_base_ms =
    opts->retry_base_ms > 0 ? opts->retry_base_ms : DEFAULT_RETRY_BASE_MS;
  aws->timeout_ms = opts->timeout_ms;
  for (int i = 0; i < KCLD_AWS_NSERVICES; i++)
    aws->turns[i].max = opts->max_in_flight[i];
  aws->quota = QUOTA_MAX;
  aws->region = strdup(opts->region);
  if (!aws->region) {
    rc = KCLD_ENOMEM;
    goto fail;
  }
  if ((rc = kcld_profile_files_load(&files)) != 0)
    goto fail;
  prof = kcld_profile_find(files, KCLD_PROFILE,
                           kcld_profile_selected(opts->profile, NULL));
  if ((rc = retry_settings(aws, opts, prof)) != 0 ||
      (rc = resolve_endpoints(aws, opts, files, prof)) != 0)
    goto fail;
  for (int i = 0; i < KCLD_AWS_NSERVICES; i++) {
    aws->signer[i] = kcld_sigv4_new(aws->region, s_services[i].ep.prefix);
    if (!aws->signer[i]) {
      rc = KCLD_ENOMEM;
      goto fail;
    }
  }
  kcld_profile_files_free(files);
  *out = aws;
  return 0;

fail:
  kcld_profile_files_free(files);
  for (int i = 0; i < KCLD_AWS_NSERVICES; i++) {
    kcld_endpoint_clean_up(&aws->ep[i]);
    kcld_sigv4_free(aws->signer[i]);
  }
  free(aws->region);
  free(aws);
  return rc;
}

/* Appends the NUL-terminated `s` percent-encoded. */
static void form_escape(struct kcld_buf *b, const char *s)
{
  kcld_uri_escape(b, s, strlen(s), 0);
}

/* The Query protocol body: Action, Version, then the request's members.
 * Returns 0, KCLD_EINVAL (a member that is not a string, number or
 * boolean) or KCLD_ENOMEM. */
static int form_body(const struct service *svc, const char *op,
                     const json_t *request, char **out, size_t *len)
{
  struct kcld_buf b = {0};
  char num[32];
  const char *key;
  json_t *v;
  int rc = 0;

  kcld_buf_add(&b, "Action=", 7);
  kcld_buf_add(&b, op, strlen(op));
  kcld_buf_add(&b, "&Version=", 9);
  kcld_buf_add(&b, svc->version, strlen(svc->version));
  json_object_foreach((json_t *)request, key, v) {
    kcld_buf_add(&b, "&", 1);
    form_escape(&b, key);
    kcld_buf_add(&b, "=", 1);
    if (json_is_string(v)) {
      form_escape(&b, json_string_value(v));
    } else if (json_is_integer(v)) {
      snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
               json_integer_value(v));
      kcld_buf_add(&b, num, strlen(num));
    } else if (json_is_boolean(v)) {
      form_escape(&b, json_is_true(v) ? "true" : "false");
    } else {
      rc = KCLD_EINVAL;
    }
  }
  if (rc == 0 && b.oom)
    rc = KCLD_ENOMEM;
  if (rc != 0) {
    OPENSSL_cleanse(b.p, b.cap);
    kcld_buf_free(&b);
    return rc;
  }
  *out = b.p;
  *len = b.len;
  return 0;
}

/* The request body in the service's protocol. */
static int encode_body(enum kcld_aws_service svc, const char *op,
                       const json_t *request, char **out, size_t *len)
{
  char text[2048]; /* json_dumps grows a buffer of its own: ~8 mallocs */
  size_t n = 2;

  if (s_services[svc].protocol == PROTO_QUERY)
    return form_body(&s_services[svc], op, request, out, len);
  if (request)
    n = json_dumpb(request, text, sizeof(text), JSON_COMPACT);
  else
    memcpy(text, "{}", 2);
  *out = n > sizeof(text) ? json_dumps(request, JSON_COMPACT)
         : n > 0          ? malloc(n + 1)
                          : NULL;
  if (*out && n <= sizeof(text)) {
    memcpy(*out, text, n);
    (*out)[n] = '\0';
  }
  OPENSSL_cleanse(text, n < sizeof(text) ? n : sizeof(text)); /* a token */
  if (!*out)
    return KCLD_ENOMEM;
  *len = strlen(*out);
  return 0;
}

/* ======== REST requests ======== */

static int valid_rest_method(const char *m)
{
  static const char *const ok[] = {"GET", "PUT", "HEAD", "DELETE", "POST",
                                   NULL};
  return m && in_list(ok, m);
}

/* Printable ASCII but space and the characters listed in `bad`. */
static int printable(const char *s, const char *bad)
{
  for (; *s; s++)
    if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f ||
        strchr(bad, *s))
      return 0;
  return 1;
}

static int valid_rest_header(const struct kcld_aws_header *h)
{
  static const char *const own[] = {"host", "x-amz-date", "authorization",
                                    "x-amz-security-token",
                                    "x-amz-content-sha256", NULL};
  char lower[64];
  size_t n = h->name ? strlen(h->name) : 0;
  if (n == 0 || n >= sizeof(lower) || !h->value ||
      !printable(h->name, "()<>@,;:\\\"/[]?={}") ||
      strpbrk(h->value, "\r\n"))
    return 0;
  for (size_t i = 0; i <= n; i++)
    lower[i] = (char)((h->name[i] >= 'A' && h->name[i] <= 'Z')
                        ? h->name[i] | 0x20 : h->name[i]);
  return !in_list(own, lower);
}

/* The request's target and headers, copied.  Returns 0, KCLD_EINVAL or
 * KCLD_ENOMEM. */
static int rest_build(const struct kcld_endpoint *ep,
                      const struct kcld_aws_rest *req, struct rest_req **out)
{
  struct rest_req *r;
  const char *base = strcmp(ep->path, "/") == 0 ? "" : ep->path;
  size_t blen = strlen(base);
  const char *prefix = req->host_prefix ? req->host_prefix : "";
  struct kcld_buf url = {0};
  int rc = KCLD_ENOMEM;

  *out = NULL;
  if (!valid_rest_method(req->method) || !req->path || req->path[0] != '/' ||
      strpbrk(req->path, "\r\n") ||
      (req->query && !printable(req->query, "#")) ||
      strspn(prefix, "abcdefghijklmnopqrstuvwxyz0123456789.-") !=
        strlen(prefix) ||
      req->n_headers > KCLD_AWS_REST_HEADERS_MAX ||
      (req->n_headers && !req->headers))
    return KCLD_EINVAL;
  for (size_t i = 0; i < req->n_headers; i++)
    if (!valid_rest_header(&req->headers[i]))
      return KCLD_EINVAL;
  if (blen > 0 && base[blen - 1] == '/')
    blen--;
  if (!(r = calloc(1, sizeof(*r))))
    return KCLD_ENOMEM;
  snprintf(r->method, sizeof(r->method), "%s", req->method);
  r->headers = calloc(1 + req->n_headers, sizeof(*r->headers));
  r->lines = calloc(1 + req->n_headers, sizeof(*r->lines));
  if (!r->headers || !r->lines ||
      asprintf(&r->host, "%s%s", prefix, ep->host) < 0 ||
      asprintf(&r->path, "%.*s%s", (int)blen, base, req->path) < 0 ||
      (req->query && *req->query && !(r->query = strdup(req->query))))
    goto done;
  r->headers[0] = (struct kcld_sigv4_header){"Host", r->host};
  r->n_headers = 1;
  if (asprintf(&r->lines[0], "Host: %s", r->host) < 0)
    goto done;
  for (size_t i = 0; i < req->n_headers; i++) {
    const struct kcld_aws_header *h = &req->headers[i];
    char *name = strdup(h->name), *value = strdup(h->value);
    r->headers[r->n_headers] = (struct kcld_sigv4_header){name, value};
    if (!name || !value ||
        asprintf(&r->lines[r->n_headers++], "%s: %s", name, value) < 0)
      goto done;
    r->has_type |= strcasecmp(name, "Content-Type") == 0;
  }
  kcld_buf_add(&url, ep->https ? "https://" : "http://", ep->https ? 8 : 7);
  kcld_buf_add(&url, r->host, strlen(r->host));
  kcld_buf_add(&url, base, blen);
  kcld_uri_escape(&url, req->path, strlen(req->path), 1);
  if (r->query) {
    kcld_buf_add(&url, "?", 1);
    kcld_buf_add(&url, r->query, strlen(r->query));
  }
  if (!url.oom) {
    r->url = url.p;
    url.p = NULL;
    rc = 0;
  }
  kcld_buf_free(&url);

done:
  if (rc == 0)
    *out = r;
  else
    rest_free(r);
  return rc;
}

/* ======== Starting calls ======== */

/* Starts a call with a JSON `request` or a REST `rest` (its body is taken,
 * also on refusal). */
static int call_start(struct kcld_aws *aws, enum kcld_aws_service svc,
                      const char *operation, const json_t *request,
                      struct kcld_aws_rest *rest,
                      const struct kcld_aws_call_opts *opts, kcld_aws_cb cb,
                      void *arg, kcld_http_data_cb on_data,
                      kcld_http_take_cb on_take, struct aws_call **out)
{
  int rc = KCLD_EINVAL;
  struct aws_call *c = NULL;

  if (!aws || (int)svc < 0 || svc >= KCLD_AWS_NSERVICES || !cb ||
      !valid_operation(operation) || (request && !json_is_object(request)) ||
      (s_services[svc].protocol == PROTO_REST) != (rest != NULL) ||
      (opts && (opts->max_attempts < 0 || opts->timeout_ms < 0)))
    goto refuse;
  rc = KCLD_ECANCELED;
  if (aws->closing)
    goto refuse;
  rc = KCLD_ENOMEM;
  if (!(c = calloc(1, sizeof(*c))))
    goto refuse;
  c->refs = 1;
  if (rest) {
    rc = rest_build(&aws->ep[svc], rest, &c->rest);
    c->body = rest->body;
    c->body_len = rest->body ? rest->body_len : 0;
    rest->body = NULL;
  } else {
    rc = encode_body(svc, operation, request, &c->body, &c->body_len);
  }
  if (rc == 0 && opts && opts->creds && !opts->anonymous) {
    rc = kcld_creds_copy(&c->own, opts->creds);
    c->has_own = rc == 0;
  }
  if (rc != 0)
    goto refuse;
  c->anonymous = opts ? opts->anonymous : 0;
  c->uncapped = opts ? opts->uncapped : 0;
  c->aws = aws;
  c->svc = svc;
  snprintf(c->op, sizeof(c->op), "%s", operation);
  c->raw = rest || (opts && opts->raw);
  c->body_into = opts && c->raw ? opts->body_into : NULL;
  c->max_attempts = opts && opts->max_attempts > 0 ? opts->max_attempts
                                                   : aws->max_attempts;
  c->timeout_ms = opts && opts->timeout_ms > 0 ? opts->timeout_ms
                                               : aws->timeout_ms;
  c->cb = cb;
  c->arg = arg;
  if (on_data) { /* one attempt, the answer streamed */
    c->on_data = on_data;
    c->on_take = on_take;
    c->raw = 1;
    c->max_attempts = 1;
  }
  c->started_ns = uv_hrtime();
  c->state = CALL_WAITING;
  rc = KCLD_EINVAL;
  if (uv_timer_init(aws->loop, &c->timer) != 0)
    goto refuse;
  c->timer.data = c;
  call_link(aws, c);
  if (uv_timer_start(&c->timer, on_retry_timer, 0, 0) != 0) {
    /* Not started: undo without a callback. */
    call_unlink(aws, c);
    c->state = CALL_DONE;
    uv_close((uv_handle_t *)&c->timer, on_call_timer_closed);
    return KCLD_EINVAL;
  }
  if (out)
    *out = c;
  return 0;

refuse:
  if (rest) {
    free(rest->body);
    rest->body = NULL;
  }
  if (c)
    call_unref(c);
  return rc;
}

int kcld_aws_rest_call(struct kcld_aws *aws, enum kcld_aws_service svc,
                       const char *operation, struct kcld_aws_rest *req,
                       const struct kcld_aws_call_opts *opts, kcld_aws_cb cb,
                       void *arg)
{
  if (!req)
    return KCLD_EINVAL;
  return call_start(aws, svc, operation, NULL, req, opts, cb, arg, NULL, NULL,
                    NULL);
}

int kcld_aws_endpoint_hostable(const struct kcld_aws *aws,
                               enum kcld_aws_service svc)
{
  return aws && (int)svc >= 0 && svc < KCLD_AWS_NSERVICES &&
         aws->ep[svc].https && !aws->ep[svc].ip_host;
}

int kcld_aws_call(struct kcld_aws *aws, enum kcld_aws_service svc,
                  const char *operation, const json_t *request,
                  const struct kcld_aws_call_opts *opts, kcld_aws_cb cb,
                  void *arg)
{
  return call_start(aws, svc, operation, request, NULL, opts, cb, arg, NULL,
                    NULL, NULL);
}

/* ======== Streamed calls ======== */

static struct aws_call *stream_call(struct kcld_aws_stream *s)
{
  return (struct aws_call *)(void *)s;
}

int kcld_aws_stream_start(struct kcld_aws *aws, enum kcld_aws_service svc,
                          const char *operation, const json_t *request,
                          long timeout_ms, kcld_http_data_cb on_data,
                          kcld_http_take_cb on_take, kcld_aws_cb cb,
                          void *arg, struct kcld_aws_stream **out)
{
  struct kcld_aws_call_opts opts = {.timeout_ms = timeout_ms};
  struct aws_call *c = NULL;
  int rc;

  if (!on_data || !out || timeout_ms < 0)
    return KCLD_EINVAL;
  *out = NULL;
  rc = call_start(aws, svc, operation, request, NULL, &opts, cb, arg, on_data,
                  on_take, &c);
  if (rc == 0)
    *out = (struct kcld_aws_stream *)(void *)c;
  return rc;
}

void kcld_aws_stream_pause(struct kcld_aws_stream *s)
{
  struct aws_call *c = stream_call(s);

  if (!c || c->state == CALL_DONE)
    return;
  c->paused = 1;
  if (c->hs)
    kcld_http_stream_pause(c->hs);
}

void kcld_aws_stream_resume(struct kcld_aws_stream *s)
{
  struct aws_call *c = stream_call(s);

  if (!c || c->state == CALL_DONE)
    return;
  c->paused = 0;
  if (c->hs)
    kcld_http_stream_resume(c->hs);
}

void kcld_aws_stream_cancel(struct kcld_aws_stream *s)
{
  struct aws_call *c = stream_call(s);

  if (!c || c->state == CALL_DONE)
    return;
  if (c->hs)
    kcld_http_stream_cancel(c->hs); /* on_http finishes the call */
  else
    call_fail(c, KCLD_ECANCELED, "cancelled");
}

void kcld_aws_set_observer(struct kcld_aws *aws, kcld_aws_observer_fn fn,
                           void *arg)
{
  if (!aws)
    return;
  aws->observer = fn;
  aws->observer_arg = fn ? arg : NULL;
}

int kcld_aws_error_is_transient(long status, const char *error_type)
{
  if (status == 429 || status == 500 || status == 502 || status == 503 ||
      status == 504)
    return 1;
  return error_type && (in_list(s_throttling, error_type) ||
                        in_list(s_transient, error_type));
}

const char *kcld_aws_service_name(enum kcld_aws_service svc)
{
  return (int)svc >= 0 && svc < KCLD_AWS_NSERVICES ? s_services[svc].ep.prefix
                                                   : "";
}

const char *kcld_aws_endpoint(const struct kcld_aws *aws,
                              enum kcld_aws_service svc)
{
  return aws && (int)svc >= 0 && svc < KCLD_AWS_NSERVICES ? aws->ep[svc].url
                                                          : NULL;
}

int kcld_aws_error_is_throttling(const char *error_type)
{
  return error_type && in_list(s_throttling, error_type);
}

const char *kcld_aws_region(const struct kcld_aws *aws)
{
  return aws ? aws->region : NULL;
}

double kcld_aws_send_rate(const struct kcld_aws *aws)
{
  return aws && aws->adaptive && aws->rl.enabled ? aws->rl.fill_rate : 0;
}

int kcld_aws_retry_quota(const struct kcld_aws *aws)
{
  return aws ? aws->quota : 0;
}

long kcld_aws_clock_skew(const struct kcld_aws *aws)
{
  return aws ? aws->skew_s : 0;
}

void kcld_aws_close(struct kcld_aws *aws)
{
  if (!aws || aws->closing)
    return;
  aws->closing = 1;
  while (aws->calls) {
    struct aws_call *c = aws->calls;
    /* In flight: the http client runs our callback, which finishes it
     * (a stream's, from its cancel). */
    if (c->state == CALL_HTTP && c->hs) {
      kcld_http_stream_cancel(c->hs);
      continue;
    }
    if (c->state == CALL_HTTP && kcld_http_cancel(aws->http, on_http, c) > 0)
      continue;
    call_fail(c, KCLD_ECANCELED, "client closed");
  }
  for (int i = 0; i < KCLD_AWS_NSERVICES; i++) {
    kcld_endpoint_clean_up(&aws->ep[i]);
    kcld_sigv4_free(aws->signer[i]);
  }
  free(aws->region);
  free(aws);
}

void kcld_aws_log_calls(const struct kcld_aws *aws)
{
  static const char *const states[] = {
    [CALL_WAITING] = "waiting", [CALL_QUEUED] = "queued for a turn",
    [CALL_CREDS] = "credentials", [CALL_HTTP] = "http", [CALL_DONE] = "done"};
  uint64_t now = uv_hrtime();
  if (!aws)
    return;
  for (const struct aws_call *c = aws->calls; c; c = c->next)
    kcld_log(KCLD_LOG_WARN, "AWS call unfinished", "service",
             s_services[c->svc].ep.prefix, "op", c->op, "state",
             states[c->state], KCLD_LOG_INT("attempt", c->attempt),
             KCLD_LOG_INT("turn", c->turn),
             KCLD_LOG_INT("stream", c->on_data != NULL),
             KCLD_LOG_UINT("age_ms", (now - c->started_ns) / 1000000),
             KCLD_LOG_INT("turns_in_flight", aws->turns[c->svc].in_flight),
             NULL);
}
