/* test_call.c — AWS JSON calls through the fault endpoint and kinesalite:
 * what goes on the wire (signed, checked by the AWS SDK's signer), which
 * failures are retried and what they cost from the retry quota, which become
 * clear errors at once, clock-skew correction, raw mode, cancellation on
 * close, and real calls to kinesalite directly and through the fault proxy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <jansson.h>

#include "../harness/fault.h"
#include "../harness/harness.h"
#include "aws/call.h"
#include "aws/credentials.h"
#include "aws/http.h"
#include "err.h"
#include "log.h"

#define AKID "AKIDKCLDTEST0000"
#define SECRET "kcldTestSecretKey/0123456789abcdefghijklmn"
#define TOKEN "kcldTestSessionTokenNeverPrinted0123456789"

static struct kcld_emu s_emu;
static const char *s_fault;
static const char *s_kinesis;

struct env {
  uv_loop_t loop;
  struct kcld_http *http;
  struct kcld_credentials *creds;
  struct kcld_aws *aws;
};

/* What a call's callback saw. */
struct outcome {
  int done;
  int err;
  long status;
  int attempts;
  char type[128];
  char message[512];
  char *json;       /* the parsed body, dumped again */
  char *raw;
  size_t raw_len;
  int has_body;
};

static int setup(void **state)
{
  (void)state;
  if (kcld_emu_start(&s_emu, "fault kinesis") != 0)
    return -1;
  s_fault = kcld_emu_url(&s_emu, "fault");
  s_kinesis = kcld_emu_url(&s_emu, "kinesis");
  return s_fault && s_kinesis ? 0 : -1;
}

static int teardown(void **state)
{
  (void)state;
  kcld_emu_stop(&s_emu);
  kcld_http_global_cleanup();
  return 0;
}

/* A script in JSON with ' for " (readable in C). */
static void script(const char *text)
{
  char *s = strdup(text);
  assert_non_null(s);
  for (char *p = s; *p; p++)
    if (*p == '\'')
      *p = '"';
  assert_int_equal(kcld_fault_script(s_fault, s), 0);
  free(s);
}

static long stat_of(const char *key)
{
  return kcld_fault_count(s_fault, key, NULL);
}

static void env_open(struct env *e, const char *endpoint,
                     const struct kcld_aws_opts *tmpl)
{
  struct kcld_aws_opts o;
  struct kcld_credentials_opts co = {0};

  memset(e, 0, sizeof(*e));
  assert_int_equal(uv_loop_init(&e->loop), 0);
  assert_int_equal(kcld_http_new(&e->loop, NULL, &e->http), 0);
  co.loop = &e->loop;
  co.http = e->http;
  co.access_key_id = AKID;
  co.secret_access_key = SECRET;
  co.session_token = TOKEN;
  assert_int_equal(kcld_credentials_new(&co, &e->creds), 0);
  if (tmpl)
    o = *tmpl;
  else
    memset(&o, 0, sizeof(o));
  o.loop = &e->loop;
  o.http = e->http;
  o.creds = e->creds;
  o.region = "us-east-1";
  for (int i = 0; i < KCLD_AWS_NSERVICES; i++)
    o.endpoint[i] = endpoint;
  if (!o.retry_base_ms)
    o.retry_base_ms = 1; /* fast tests; the formula is unchanged */
  assert_int_equal(kcld_aws_new(&o, &e->aws), 0);
  assert_int_equal(kcld_aws_retry_quota(e->aws), 500);
}

static void env_close(struct env *e)
{
  kcld_aws_close(e->aws);
  kcld_credentials_close(e->creds);
  kcld_http_close(e->http);
  kcld_test_loop_finish(&e->loop);
}

static void on_result(const struct kcld_aws_result *r, void *arg)
{
  struct outcome *o = arg;
  o->done++;
  o->err = r->err;
  o->status = r->status;
  o->attempts = r->attempts;
  assert_non_null(r->error_type);
  assert_non_null(r->message);
  snprintf(o->type, sizeof(o->type), "%s", r->error_type);
  snprintf(o->message, sizeof(o->message), "%s", r->message);
  o->has_body = r->body != NULL;
  if (r->body) {
    free(o->json);
    o->json = json_dumps(r->body, JSON_COMPACT | JSON_SORT_KEYS);
  }
  if (r->raw) {
    free(o->raw);
    o->raw = malloc(r->raw_len + 1);
    assert_non_null(o->raw);
    memcpy(o->raw, r->raw, r->raw_len);
    o->raw[r->raw_len] = '\0';
    o->raw_len = r->raw_len;
  }
}

static void outcome_free(struct outcome *o)
{
  free(o->json);
  free(o->raw);
  o->json = o->raw = NULL;
}

static void start(struct env *e, enum kcld_aws_service svc, const char *op,
                  const char *request, const struct kcld_aws_call_opts *opts,
                  struct outcome *o)
{
  json_t *req = request ? json_loads(request, 0, NULL) : NULL;
  if (request)
    assert_non_null(req);
  outcome_free(o); /* outcomes are reused: they start zeroed */
  memset(o, 0, sizeof(*o));
  assert_int_equal(kcld_aws_call(e->aws, svc, op, req, opts, on_result, o),
                   0);
  json_decref(req);
  assert_int_equal(o->done, 0); /* never before the call returns */
}

static void call(struct env *e, enum kcld_aws_service svc, const char *op,
                 const char *request, const struct kcld_aws_call_opts *opts,
                 struct outcome *o)
{
  start(e, svc, op, request, opts, o);
  assert_true(kcld_test_run_until(&e->loop, &o->done, 20000));
  assert_int_equal(o->done, 1);
}

/* ======== On the wire ======== */

static void check_wire(const struct outcome *o, const char *service,
                       const char *content_type, const char *target,
                       size_t body_len)
{
  char scope[128];
  json_t *j = json_loads(o->json, 0, NULL);
  assert_non_null(j);
  json_t *h = json_object_get(j, "headers");
  assert_string_equal(json_string_value(json_object_get(j, "method")), "POST");
  assert_string_equal(json_string_value(json_object_get(j, "url")), "/");
  assert_int_equal(json_integer_value(json_object_get(j, "body_length")),
                   body_len);
  assert_string_equal(json_string_value(json_object_get(h, "content-type")),
                      content_type);
  assert_string_equal(json_string_value(json_object_get(h, "x-amz-target")),
                      target);
  assert_string_equal(json_string_value(json_object_get(h, "host")),
                      s_fault + strlen("http://"));
  assert_string_equal(
    json_string_value(json_object_get(h, "x-amz-security-token")), TOKEN);
  const char *auth = json_string_value(json_object_get(h, "authorization"));
  assert_non_null(auth);
  snprintf(scope, sizeof(scope), "/us-east-1/%s/aws4_request, ", service);
  assert_true(strncmp(auth, "AWS4-HMAC-SHA256 Credential=" AKID "/",
                      strlen("AWS4-HMAC-SHA256 Credential=" AKID "/")) == 0);
  assert_non_null(strstr(auth, scope));
  assert_non_null(strstr(auth, "SignedHeaders=content-type;host;x-amz-date;"
                               "x-amz-security-token;x-amz-target, "));
  assert_non_null(json_object_get(h, "x-amz-date"));
  json_decref(j);
}

static void test_wire_format(void **state)
{
  (void)state;
  struct env e;
  struct outcome k = {0}, d = {0}, q = {0};

  env_open(&e, s_fault, NULL);
  script("{'steps':[{'echo':'headers','times':3}]}");
  call(&e, KCLD_AWS_KINESIS, "ListStreams", "{\"Limit\":5}", NULL, &k);
  call(&e, KCLD_AWS_DYNAMODB, "DescribeTable", "{\"TableName\":\"t\"}", NULL,
       &d);
  call(&e, KCLD_AWS_SQS, "GetQueueUrl", NULL, NULL, &q);
  assert_int_equal(k.err, 0);
  assert_int_equal(k.attempts, 1);
  check_wire(&k, "kinesis", "application/x-amz-json-1.1",
             "Kinesis_20131202.ListStreams", strlen("{\"Limit\":5}"));
  check_wire(&d, "dynamodb", "application/x-amz-json-1.0",
             "DynamoDB_20120810.DescribeTable",
             strlen("{\"TableName\":\"t\"}"));
  check_wire(&q, "sqs", "application/x-amz-json-1.0", "AmazonSQS.GetQueueUrl",
             2);
  outcome_free(&k);
  outcome_free(&d);
  outcome_free(&q);
  env_close(&e);
}

/* The AWS SDK's signer reproduces every signature; a wrong secret on the
 * server side is a 403 that is not retried, and the canonical string AWS
 * echoes (with the session token in it) never reaches the caller. */
static void test_signatures_verified(void **state)
{
  (void)state;
  struct env e;
  struct outcome o = {0};
  const struct {
    enum kcld_aws_service svc;
    const char *op, *body;
  } calls[] = {
    {KCLD_AWS_KINESIS, "GetRecords", "{\"ShardIterator\":\"AAA/+=\"}"},
    {KCLD_AWS_DYNAMODB, "PutItem",
     "{\"TableName\":\"leases\",\"Item\":{\"k\":{\"S\":\"caf\\u00e9 \"}}}"},
    {KCLD_AWS_SQS, "SendMessageBatch", "{\"QueueUrl\":\"http://x/1/q\"}"},
  };

  env_open(&e, s_fault, NULL);
  script("{'verify':{'secret':'" SECRET "'}}");
  for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
    call(&e, calls[i].svc, calls[i].op, calls[i].body, NULL, &o);
    assert_int_equal(o.err, 0);
    assert_int_equal(o.attempts, 1);
    outcome_free(&o);
  }
  assert_int_equal(stat_of("signature_rejected"), 0);
  assert_int_equal(stat_of("total"), 3);

  script("{'verify':{'secret':'not-the-secret'}}");
  call(&e, KCLD_AWS_KINESIS, "ListStreams", NULL, NULL, &o);
  assert_int_equal(o.err, KCLD_EAWS);
  assert_int_equal(o.status, 403);
  assert_string_equal(o.type, "InvalidSignatureException");
  assert_int_equal(o.attempts, 1); /* the clock is right: not skew */
  assert_non_null(strstr(o.message, "signature"));
  assert_null(strstr(o.message, TOKEN));
  assert_null(strstr(o.message, "Canonical"));
  assert_int_equal(stat_of("signature_rejected"), 1);
  outcome_free(&o);
  env_close(&e);
}

/* ======== The observer ======== */

struct seen {
  int calls;
  char service[32], op[64];
  double seconds;
  int err;
  char code[64];
  int cb_done_before;   /* the call's callback had run when observed */
  const struct outcome *o;
};

static void observe(void *arg, const char *service, const char *operation,
                    double seconds, int err, const char *code)
{
  struct seen *s = arg;
  s->calls++;
  snprintf(s->code, sizeof(s->code), "%s", code);
  snprintf(s->service, sizeof(s->service), "%s", service);
  snprintf(s->op, sizeof(s->op), "%s", operation);
  s->seconds = seconds;
  s->err = err;
  s->cb_done_before = s->o->done;
}

static void test_observer(void **state)
{
  (void)state;
  struct env e;
  struct outcome o = {0};
  struct seen s = {.o = &o};
  struct kcld_aws_opts fast = {.retry_base_ms = 1};

  env_open(&e, s_fault, &fast);
  kcld_aws_set_observer(e.aws, observe, &s);
  /* A retry and a slow answer: both inside the observed time. */
  script("{'steps':[{'status':500},{'delay_ms':150}]}");
  uint64_t t0 = uv_hrtime();
  call(&e, KCLD_AWS_KINESIS, "ListStreams", NULL, NULL, &o);
  double wall = (double)(uv_hrtime() - t0) / 1e9;
  assert_int_equal(o.err, 0);
  assert_int_equal(o.attempts, 2);
  assert_int_equal(s.calls, 1);
  assert_string_equal(s.service, "kinesis");
  assert_string_equal(s.op, "ListStreams");
  assert_int_equal(s.err, 0);
  assert_string_equal(s.code, "");
  assert_int_equal(s.cb_done_before, 0);
  assert_true(s.seconds >= 0.15);
  assert_true(s.seconds <= wall);
  outcome_free(&o);
  memset(&o, 0, sizeof(o));

  /* A failure is observed with its error. */
  script("{'steps':[{'status':400,'body':{'__type':'ValidationException'}}]}");
  call(&e, KCLD_AWS_DYNAMODB, "GetItem", NULL, NULL, &o);
  assert_int_equal(o.err, KCLD_EAWS);
  assert_int_equal(s.calls, 2);
  assert_string_equal(s.service, "dynamodb");
  assert_string_equal(s.op, "GetItem");
  assert_int_equal(s.err, KCLD_EAWS);
  assert_string_equal(s.code, "ValidationException"); /* the error code */
  assert_true(s.seconds > 0 && s.seconds < 0.15);
  outcome_free(&o);
  memset(&o, 0, sizeof(o));

  /* Removed: no longer told. */
  kcld_aws_set_observer(e.aws, NULL, &s);
  script("{'steps':[]}");
  call(&e, KCLD_AWS_SQS, "ListQueues", NULL, NULL, &o);
  assert_int_equal(o.err, 0);
  assert_int_equal(s.calls, 2);
  outcome_free(&o);
  env_close(&e);
}

/* ======== Retried, then success ======== */

static void test_500_then_success(void **state)
{
  (void)state;
  struct env e;
  struct outcome o = {0};

  env_open(&e, s_fault, NULL);
  script("{'steps':[{'status':500}]}");
  call(&e, KCLD_AWS_KINESIS, "ListStreams", NULL, NULL, &o);
  assert_int_equal(o.err, 0);
  assert_int_equal(o.status, 200);
  assert_int_equal(o.attempts, 2);
  assert_true(o.has_body);
  assert_string_equal(o.json, "{}");
  assert_string_equal(o.type, "");
  assert_string_equal(o.message, "");
  assert_int_equal(stat_of("total"), 2);
  /* 5 tokens for the retry, refunded by the success. */
  assert_int_equal(kcld_aws_retry_quota(e.aws), 500);
  outcome_free(&o);
  env_close(&e);
}

static void test_503_exhausts_attempts(void **state)
{
  (void)state;
  struct env e;
  struct outcome o = {0};
  struct kcld_aws_opts opts = {.max_attempts = 4};

  env_open(&e, s_fault, &opts);
  script("{'steps':[{'status':503,'times':10,'body':{'__type':"
         "'ServiceUnavailableException','message':'Please try again'}}]}");
  call(&e, KCLD_AWS_DYNAMODB, "GetItem", "{\"TableName\":\"t\"}", NULL, &o);
  assert_int_equal(o.err, KCLD_EAWS);
  assert_int_equal(o.status, 503);
  assert_string_equal(o.type, "ServiceUnavailableException");
  assert_string_equal(o.message, "Please try again");
  assert_int_equal(o.attempts, 4);
  assert_false(o.has_body);
  assert_int_equal(kcld_fault_count(s_fault, NULL,
                                    "DynamoDB_20120810.GetItem"), 4);
  assert_int_equal(kcld_aws_retry_quota(e.aws), 500 - 3 * 5);
  outcome_free(&o);

  /* Per call: max_attempts 2 and 1. */
  struct kcld_aws_call_opts two = {.max_attempts = 2}, one = {.max_attempts = 1};
  call(&e, KCLD_AWS_DYNAMODB, "GetItem", NULL, &two, &o);
  assert_int_equal(o.attempts, 2);
  assert_int_equal(o.err, KCLD_EAWS);
  call(&e, KCLD_AWS_DYNAMODB, "GetItem", NULL, &one, &o);
  assert_int_equal(o.attempts, 1);
  assert_int_equal(o.status, 503);
  assert_int_equal(stat_of("total"), 7);
  assert_int_equal(kcld_aws_retry_quota(e.aws), 500 - 4 * 5);
  /* A success without retries earns one token back. */
  script("{'steps':[]}");
  call(&e, KCLD_AWS_DYNAMODB, "GetItem", NULL, NULL, &o);
  assert_int_equal(o.err, 0);
  assert_int_equal(kcld_aws_retry_quota(e.aws), 500 - 4 * 5 + 1);
  outcome_free(&o);
  env_close(&e);
}

static const char *const s_throttling[] = {
  "Throttling", "ThrottlingException", "ThrottledException",
  "RequestThrottledException", "TooManyRequestsException",
  "ProvisionedThroughputExceededException", "TransactionInProgressException",
  "RequestLimitExceeded", "BandwidthLimitExceeded", "LimitExceededException",
  "RequestThrottled", "SlowDown", "PriorRequestNotComplete",
  "EC2ThrottledException", "KMSThrottlingException", NULL};

/* The adaptive mode: off until throttled, then the retry of a fresh
 * client (no sending rate measured yet, an empty bucket) waits for a token
 * of a bucket filling at 0.5..1.6 a second, where the standard mode
 * retries after a backoff of at most a few ms here. */
static void test_adaptive_rate_limiter(void **state)
{
  struct kcld_aws_opts t = {.retry_mode = "adaptive"};
  struct env e;
  struct outcome o = {0};
  uint64_t t0, ms;
  (void)state;

  env_open(&e, s_fault, &t);
  script("{'steps':[{'status':400,'body':{'__type':'ThrottlingException',"
         "'message':'slow down'}}],'then':'ok'}");
  assert_true(kcld_aws_send_rate(e.aws) == 0);
  t0 = uv_hrtime();
  call(&e, KCLD_AWS_KINESIS, "ListStreams", NULL, NULL, &o);
  ms = (uv_hrtime() - t0) / 1000000;
  assert_int_equal(o.err, 0);
  assert_int_equal(o.attempts, 2);
  if (ms < 600)
    fail_msg("the retry went out after %llu ms, without waiting for the "
             "rate limiter", (unsigned long long)ms);
  assert_true(kcld_aws_send_rate(e.aws) >= 0.5);
  outcome_free(&o);
  env_close(&e);
}

static void test_throttling_retried(void **state)
{
  (void)state;
  struct env e;
  struct outcome o = {0};
  char buf[512];
  int n = 0;

  env_open(&e, s_fault, NULL);
  for (int i = 0; s_throttling[i]; i++, n++) {
    /* Namespaced in the body, as the services send it. */
    snprintf(buf, sizeof(buf),
             "{'steps':[{'status':400,'body':{'__type':"
             "'com.amazonaws.kinesis.v20131202#%s','message':'slow down'}}]}",
             s_throttling[i]);
    script(buf);
    /* Round the JSON-protocol services (STS speaks XML: test_sts.c). */
    call(&e, (enum kcld_aws_service)(i % KCLD_AWS_STS), "Op", NULL, NULL,
         &o);
    if (o.err != 0 || o.attempts != 2)
      fail_msg("%s: err %d after %d attempts", s_throttling[i], o.err,
               o.attempts);
    assert_int_equal(stat_of("total"), 2);
    outcome_free(&o);
  }
  /* HTTP 429 without a type, and the type given only in the header. */
  script("{'steps':[{'status':429,'body':''},{'status':400,'body':'{}',"
         "'headers':{'x-amzn-ErrorType':'ThrottlingException:http://x/'}}]}");
  call(&e, KCLD_AWS_KINESIS, "GetRecords", NULL, NULL, &o);
  assert_int_equal(o.err, 0);
  assert_int_equal(o.attempts, 3);
  outcome_free(&o);
  assert_int_equal(n, 15);
  /* Throttled throughout: the type comes back after the last attempt. */
  script("{'steps':[{'status':400,'times':3,'body':{'__type':"
         "'ProvisionedThroughputExceededException','message':'Rate exceeded "
         "for shard shardId-000000000000'}}]}");
  call(&e, KCLD_AWS_KINESIS, "GetRecords", NULL, NULL, &o);
  assert_int_equal(o.err, KCLD_EAWS);
  assert_int_equal(o.status, 400);
  assert_int_equal(o.attempts, 3);
  assert_string_equal(o.type, "ProvisionedThroughputExceededException");
  assert_string_equal(o.message,
                      "Rate exceeded for shard shardId-000000000000");
  outcome_free(&o);
  env_close(&e);
}

static void test_transient_retried(void **state)
{
  (void)state;
  struct env e;
  struct outcome o = {0};
  const char *const steps[] = {
    "{'status':400,'body':{'__type':'RequestTimeout'}}",
    "{'status':400,'body':{'__type':'RequestTimeoutException'}}",
    "{'status':400,'body':{'__type':'InternalError'}}",
    "{'status':500,'body':{'__type':'InternalFailure'}}",
    "{'status':502,'body':'<html>Bad Gateway</html>'}",
    "{'status':503,'body':''}",
    "{'status':504,'body':'upstream timed out'}",
    NULL};
  char buf[256];

  env_open(&e, s_fault, NULL);
  for (int i = 0; steps[i]; i++) {
    snprintf(buf, sizeof(buf), "{'steps':[%s]}", steps[i]);
    script(buf);
    call(&e, KCLD_AWS_DYNAMODB, "Scan", NULL, NULL, &o);
    if (o.err != 0 || o.attempts != 2)
      fail_msg("%s: err %d after %d attempts", steps[i], o.err, o.attempts);
    outcome_free(&o);
  }
  assert_int_equal(kcld_aws_retry_quota(e.aws), 500);
  env_close(&e);
}

/* ======== Not retried ======== */

static void test_client_errors_not_retried(void **state)
{
  (void)state;
  struct env e;
  struct outcome o = {0};

  env_open(&e, s_fault, NULL);
  script("{'steps':[{'status':400,'body':{'__type':"
         "'com.amazon.coral.validate#ValidationException','message':"
         "'1 validation error detected: Value at streamName failed'},"
         "'headers':{'x-amzn-ErrorType':'ValidationException:"
         "http://internal.amazon.com/coral/com.amazon.coral.validate/'}}]}");
  call(&e, KCLD_AWS_KINESIS, "DescribeStreamSummary", "{}", NULL, &o);
  assert_int_equal(o.err, KCLD_EAWS);
  assert_int_equal(o.status, 400);
  assert_int_equal(o.attempts, 1);
  assert_string_equal(o.type, "ValidationException");
  assert_string_equal(o.message,
                      "1 validation error detected: Value at streamName failed");
  assert_int_equal(stat_of("total"), 1);
  outcome_free(&o);

  /* "Message" spelt with a capital, the type only in the body. */
  script("{'steps':[{'status':400,'body':{'__type':"
         "'com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException',"
         "'Message':'The conditional request failed'}}]}");
  call(&e, KCLD_AWS_DYNAMODB, "UpdateItem", NULL, NULL, &o);
  assert_int_equal(o.err, KCLD_EAWS);
  assert_int_equal(o.attempts, 1);
  assert_string_equal(o.type, "ConditionalCheckFailedException");
  assert_string_equal(o.message, "The conditional request failed");
  outcome_free(&o);

  /* Not JSON at all: no type, the status and a snippet. */
  script("{'steps':[{'status':403,'body':'<html>Forbidden</html>'}]}");
  call(&e, KCLD_AWS_SQS, "GetQueueUrl", NULL, NULL, &o);
  assert_int_equal(o.err, KCLD_EAWS);
  assert_int_equal(o.status, 403);
  assert_int_equal(o.attempts, 1);
  assert_string_equal(o.type, "");
  assert_string_equal(o.message, "HTTP 403: <html>Forbidden</html>");
  outcome_free(&o);
  assert_int_equal(kcld_aws_retry_quota(e.aws), 500);
  env_close(&e);
}

static void test_garbage_body(void **state)
{
  (void)state;
  struct env e;
  struct outcome o = {0};

  env_open(&e, s_fault, NULL);
  script("{'steps':[{'garbage':true},{'body':'[1,2]'},{'body':'  '},"
         "{'garbage':true}]}");
  call(&e, KCLD_AWS_KINESIS, "GetRecords", NULL, NULL, &o);
  assert_int_equal(o.err, KCLD_EPARSE);
  assert_int_equal(o.status, 200);
  assert_int_equal(o.attempts, 1);
  assert_false(o.has_body);
  assert_non_null(strstr(o.message, "not a JSON object"));
  call(&e, KCLD_AWS_KINESIS, "GetRecords", NULL, NULL, &o);
  assert_int_equal(o.err, KCLD_EPARSE);
  assert_int_equal(o.attempts, 1);
  /* An empty answer (DeleteStream, CreateStream) is an empty object. */
  call(&e, KCLD_AWS_KINESIS, "DeleteStream", NULL, NULL, &o);
  assert_int_equal(o.err, 0);
  assert_string_equal(o.json, "{}");
  outcome_free(&o);
  /* Raw mode hands the bytes back; parsing them is the caller's business. */
  struct kcld_aws_call_opts raw = {.raw = 1};
  call(&e, KCLD_AWS_KINESIS, "GetRecords", NULL, &raw, &o);
  assert_int_equal(o.err, 0);
  assert_false(o.has_body);
  assert_string_equal(o.raw, "<html><body>Service Unavailable</body></html>");
  assert_int_equal(stat_of("total"), 4);
  outcome_free(&o);
  env_close(&e);
}

static void test_raw_mode(void **state)
{
  (void)state;
  struct env e;
  struct outcome o = {0};
  struct kcld_aws_call_opts raw = {.raw = 1};

  env_open(&e, s_fault, NULL);
  script("{'steps':[{'status':500},{'body':{'Records':[],"
         "'NextShardIterator':'AAAA','MillisBehindLatest':0}},"
         "{'status':400,'body':{'__type':'ExpiredIteratorException',"
         "'message':'Iterator expired'}}]}");
  call(&e, KCLD_AWS_KINESIS, "GetRecords", NULL, &raw, &o);
  assert_int_equal(o.err, 0);
  assert_int_equal(o.attempts, 2);
  assert_false(o.has_body);
  assert_string_equal(o.raw,
    "{\"Records\":[],\"NextShardIterator\":\"AAAA\",\"MillisBehindLatest\":0}");
  assert_int_equal(o.raw_len, strlen(o.raw));
  outcome_free(&o);
  /* Errors are parsed in raw mode too. */
  call(&e, KCLD_AWS_KINESIS, "GetRecords", NULL, &raw, &o);
  assert_int_equal(o.err, KCLD_EAWS);
  assert_string_equal(o.type, "ExpiredIteratorException");
  assert_null(o.raw);
  outcome_free(&o);
  /* A full-size GetRecords answer (~15 MB), untouched; and parsed. */
  script("{'steps':[{'body_bytes':15000000,'times':2}]}");
  call(&e, KCLD_AWS_KINESIS, "GetRecords", NULL, &raw, &o);
  assert_int_equal(o.err, 0);
  assert_int_equal(o.raw_len, 15000000);
  assert_true(strncmp(o.raw, "{\"pad\":\"abcdefghijklmnopqrstuvwxyzabc", 35) == 0);
  assert_string_equal(o.raw + o.raw_len - 4, "qr\"}");
  outcome_free(&o);
  call(&e, KCLD_AWS_KINESIS, "GetRecords", NULL, NULL, &o);
  assert_int_equal(o.err, 0);
  assert_true(o.has_body);
  assert_int_equal(strlen(o.json), 15000000);
  outcome_free(&o);
  env_close(&e);
}

/* ======== Broken connections ======== */

static void test_truncated_body(void **state)
{
  (void)state;
  struct env e;
  struct outcome o = {0};

  env_open(&e, s_fault, NULL);
  script("{'steps':[{'truncate':true}]}");
  call(&e, KCLD_AWS_KINESIS, "GetRecords", NULL, NULL, &o);
  assert_int_equal(o.err, 0);
  assert_int_equal(o.attempts, 2);
  /* A cut-short answer costs the no-answer price, refunded on success. */
  assert_int_equal(kcld_aws_retry_quota(e.aws), 500);
  outcome_free(&o);

  script("{'steps':[{'truncate':true,'times':3}]}");
  call(&e, KCLD_AWS_KINESIS, "GetRecords", NULL, NULL, &o);
  assert_int_equal(o.err, KCLD_ETRANSPORT);
  assert_int_equal(o.status, 0);
  assert_int_equal(o.attempts, 3);
  assert_string_equal(o.type, "");
  assert_true(o.message[0] != '\0');
  assert_int_equal(kcld_aws_retry_quota(e.aws), 480);
  outcome_free(&o);
  env_close(&e);
}

static void test_connection_closed(void **state)
{
  (void)state;
  struct env e;
  struct outcome o = {0};

  /* A fresh connection closed without an answer: our retry. */
  env_open(&e, s_fault, NULL);
  script("{'steps':[{'close':true}]}");
  call(&e, KCLD_AWS_DYNAMODB, "Query", NULL, NULL, &o);
  assert_int_equal(o.err, 0);
  assert_int_equal(o.attempts, 2);
  assert_int_equal(stat_of("total"), 2);
  outcome_free(&o);
  /* Closed halfway through the headers. */
  script("{'steps':[{'close':'mid'}]}");
  call(&e, KCLD_AWS_DYNAMODB, "Query", NULL, NULL, &o);
  assert_int_equal(o.err, 0);
  assert_int_equal(o.attempts, 2);
  assert_int_equal(stat_of("total"), 2);
  outcome_free(&o);
  /* A pooled connection the server dropped before answering (the stale
   * keep-alive race): curl sends again once on a new connection within the
   * same attempt; that one is closed too, so the attempt fails and ours
   * follows. */
  script("{'steps':[{'close':true},{'close':true}]}");
  call(&e, KCLD_AWS_DYNAMODB, "Query", NULL, NULL, &o);
  assert_int_equal(o.err, 0);
  assert_int_equal(o.attempts, 2);
  assert_int_equal(stat_of("total"), 3);
  outcome_free(&o);
  /* Closed every time: a transport error after the last attempt. */
  script("{'steps':[{'close':true}],'then':'repeat-last'}");
  call(&e, KCLD_AWS_DYNAMODB, "Query", NULL, NULL, &o);
  assert_int_equal(o.err, KCLD_ETRANSPORT);
  assert_int_equal(o.status, 0);
  assert_int_equal(o.attempts, 3);
  assert_int_equal(stat_of("total"), 4); /* 3 + curl's one re-send */
  assert_true(o.message[0] != '\0');
  outcome_free(&o);
  env_close(&e);
}

static void test_slow_past_timeout(void **state)
{
  (void)state;
  struct env e;
  struct outcome o = {0};
  struct kcld_aws_call_opts fast = {.timeout_ms = 300};

  env_open(&e, s_fault, NULL);
  script("{'steps':[{'delay_ms':3000}]}");
  uint64_t t0 = uv_hrtime();
  call(&e, KCLD_AWS_KINESIS, "GetRecords", NULL, &fast, &o);
  uint64_t ms = (uv_hrtime() - t0) / 1000000;
  assert_int_equal(o.err, 0);
  assert_int_equal(o.attempts, 2);
  assert_true(ms >= 290 && ms < 2500);
  assert_int_equal(kcld_aws_retry_quota(e.aws), 500);
  outcome_free(&o);

  /* Slow every time: the timeout is the answer. */
  struct kcld_aws_call_opts two = {.timeout_ms = 200, .max_attempts = 2};
  script("{'steps':[{'delay_ms':2000,'times':2}]}");
  call(&e, KCLD_AWS_KINESIS, "GetRecords", NULL, &two, &o);
  assert_int_equal(o.err, KCLD_ETIMEDOUT);
  assert_int_equal(o.attempts, 2);
  assert_int_equal(o.status, 0);
  assert_int_equal(kcld_aws_retry_quota(e.aws), 490); /* one timeout retry */
  outcome_free(&o);

  /* The client-wide default applies when the call sets none. */
  struct kcld_aws_opts co = {.timeout_ms = 200, .max_attempts = 1};
  struct env e2;
  env_open(&e2, s_fault, &co);
  script("{'steps':[{'delay_ms':2000}]}");
  call(&e2, KCLD_AWS_KINESIS, "GetRecords", NULL, NULL, &o);
  assert_int_equal(o.err, KCLD_ETIMEDOUT);
  assert_int_equal(o.attempts, 1);
  outcome_free(&o);
  env_close(&e2);
  env_close(&e);
}

static int free_port(void)
{
  uv_loop_t loop;
  uv_tcp_t tcp;
  struct sockaddr_in addr;
  struct sockaddr_storage name;
  int len = sizeof(name);

  assert_int_equal(uv_loop_init(&loop), 0);
  uv_tcp_init(&loop, &tcp);
  uv_ip4_addr("127.0.0.1", 0, &addr);
  assert_int_equal(uv_tcp_bind(&tcp, (struct sockaddr *)&addr, 0), 0);
  uv_tcp_getsockname(&tcp, (struct sockaddr *)&name, &len);
  uv_close((uv_handle_t *)&tcp, NULL);
  kcld_test_loop_finish(&loop);
  return ntohs(((struct sockaddr_in *)&name)->sin_port);
}

static void test_connection_refused(void **state)
{
  (void)state;
  struct env e;
  struct outcome o = {0};
  char url[64];

  snprintf(url, sizeof(url), "http://127.0.0.1:%d", free_port());
  env_open(&e, url, NULL);
  call(&e, KCLD_AWS_SQS, "SendMessageBatch", NULL, NULL, &o);
  assert_int_equal(o.err, KCLD_ETRANSPORT);
  assert_int_equal(o.attempts, 3);
  assert_non_null(strstr(o.message, "onnect"));
  assert_int_equal(kcld_aws_retry_quota(e.aws), 480);
  outcome_free(&o);
  env_close(&e);
}

/* ======== Clock skew ======== */

static void skew_case(long skew)
{
  struct env e;
  struct outcome o = {0};
  char buf[128];

  env_open(&e, s_fault, NULL);
  snprintf(buf, sizeof(buf), "{'clock_skew_seconds':%ld}", skew);
  script(buf);
  call(&e, KCLD_AWS_KINESIS, "ListShards", NULL, NULL, &o);
  assert_int_equal(o.err, 0);
  assert_int_equal(o.attempts, 2);
  long learnt = kcld_aws_clock_skew(e.aws);
  assert_true(learnt > skew - 5 && learnt < skew + 5);
  assert_int_equal(stat_of("skew_rejected"), 1);
  /* Remembered: the next call is signed with the corrected time. */
  call(&e, KCLD_AWS_DYNAMODB, "GetItem", NULL, NULL, &o);
  assert_int_equal(o.err, 0);
  assert_int_equal(o.attempts, 1);
  assert_int_equal(stat_of("skew_rejected"), 1);
  assert_int_equal(stat_of("total"), 3);
  outcome_free(&o);
  env_close(&e);
}

static void test_clock_skew_corrected(void **state)
{
  (void)state;
  skew_case(900);
  skew_case(-900);
}

/* A skew error whose Date agrees with our clock is a real signing problem:
 * nothing to correct, not retried. */
static void test_skew_error_without_skew(void **state)
{
  (void)state;
  struct env e;
  struct outcome o = {0};

  env_open(&e, s_fault, NULL);
  script("{'steps':[{'status':400,'body':{'__type':"
         "'InvalidSignatureException','message':'Signature expired'}},"
         "{'status':403,'skew_seconds':60,'body':{'__type':"
         "'SignatureDoesNotMatch','message':'no'}}]}");
  call(&e, KCLD_AWS_KINESIS, "ListShards", NULL, NULL, &o);
  assert_int_equal(o.err, KCLD_EAWS);
  assert_int_equal(o.attempts, 1);
  assert_string_equal(o.type, "InvalidSignatureException");
  call(&e, KCLD_AWS_KINESIS, "ListShards", NULL, NULL, &o);
  assert_int_equal(o.err, KCLD_EAWS);
  assert_int_equal(o.attempts, 1); /* 60 s is within tolerance */
  assert_int_equal(kcld_aws_clock_skew(e.aws), 0);
  outcome_free(&o);
  env_close(&e);
}

/* ======== Retry quota ======== */

#define DRAIN_CALLS 50

static void test_retry_quota_drained(void **state)
{
  (void)state;
  struct env e;
  static struct outcome os[DRAIN_CALLS];
  struct outcome o = {0};

  env_open(&e, s_fault, NULL);
  script("{'steps':[{'status':500}],'then':'repeat-last'}");
  /* 50 failing calls x 2 retries x 5 tokens = the whole quota. */
  for (int i = 0; i < DRAIN_CALLS; i++)
    start(&e, KCLD_AWS_KINESIS, "GetRecords", NULL, NULL, &os[i]);
  for (int i = 0; i < DRAIN_CALLS; i++)
    assert_true(kcld_test_run_until(&e.loop, &os[i].done, 20000));
  for (int i = 0; i < DRAIN_CALLS; i++) {
    assert_int_equal(os[i].done, 1);
    assert_int_equal(os[i].err, KCLD_EAWS);
    assert_int_equal(os[i].status, 500);
    assert_int_equal(os[i].attempts, 3);
    outcome_free(&os[i]);
  }
  assert_int_equal(kcld_aws_retry_quota(e.aws), 0);
  assert_int_equal(stat_of("total"), 3 * DRAIN_CALLS);

  /* Drained: the next failure comes back at once. */
  call(&e, KCLD_AWS_KINESIS, "GetRecords", NULL, NULL, &o);
  assert_int_equal(o.err, KCLD_EAWS);
  assert_int_equal(o.attempts, 1);
  assert_int_equal(stat_of("total"), 3 * DRAIN_CALLS + 1);
  outcome_free(&o);

  /* Successes refill it one token at a time. */
  script("{'steps':[]}");
  for (int i = 0; i < 5; i++) {
    call(&e, KCLD_AWS_KINESIS, "GetRecords", NULL, NULL, &o);
    assert_int_equal(o.err, 0);
    outcome_free(&o);
  }
  assert_int_equal(kcld_aws_retry_quota(e.aws), 5);
  script("{'steps':[{'status':500}]}");
  call(&e, KCLD_AWS_KINESIS, "GetRecords", NULL, NULL, &o);
  assert_int_equal(o.err, 0);
  assert_int_equal(o.attempts, 2);
  assert_int_equal(kcld_aws_retry_quota(e.aws), 5);
  outcome_free(&o);
  env_close(&e);
}

/* ======== Kinesalite ======== */

static void test_kinesalite(void **state)
{
  (void)state;
  struct env e;
  struct outcome o = {0};

  env_open(&e, s_kinesis, NULL);
  call(&e, KCLD_AWS_KINESIS, "CreateStream",
       "{\"StreamName\":\"kcld-call\",\"ShardCount\":1}", NULL, &o);
  assert_int_equal(o.err, 0);
  assert_int_equal(o.attempts, 1);
  call(&e, KCLD_AWS_KINESIS, "ListStreams", "{}", NULL, &o);
  assert_int_equal(o.err, 0);
  assert_int_equal(o.status, 200);
  assert_non_null(strstr(o.json, "\"StreamNames\":["));
  assert_non_null(strstr(o.json, "\"kcld-call\""));
  outcome_free(&o);
  call(&e, KCLD_AWS_KINESIS, "DescribeStreamSummary",
       "{\"StreamName\":\"no-such-stream\"}", NULL, &o);
  assert_int_equal(o.err, KCLD_EAWS);
  assert_int_equal(o.status, 400);
  assert_int_equal(o.attempts, 1);
  assert_string_equal(o.type, "ResourceNotFoundException");
  assert_non_null(strstr(o.message, "no-such-stream"));
  outcome_free(&o);
  env_close(&e);
}

/* The fault endpoint in front of kinesalite: a step bound to one operation
 * leaves the others alone. */
static void test_kinesalite_through_faults(void **state)
{
  (void)state;
  struct env e;
  struct outcome o = {0};
  char buf[512];

  env_open(&e, s_fault, NULL);
  snprintf(buf, sizeof(buf),
           "{'upstream':'%s','steps':[{'target':'ListStreams','status':400,"
           "'body':{'__type':'LimitExceededException','message':"
           "'Rate exceeded'}}]}", s_kinesis);
  script(buf);
  call(&e, KCLD_AWS_KINESIS, "CreateStream",
       "{\"StreamName\":\"kcld-proxied\",\"ShardCount\":2}", NULL, &o);
  assert_int_equal(o.err, 0);
  assert_int_equal(o.attempts, 1);
  call(&e, KCLD_AWS_KINESIS, "ListStreams", NULL, NULL, &o);
  assert_int_equal(o.err, 0);
  assert_int_equal(o.attempts, 2);
  assert_non_null(strstr(o.json, "\"kcld-proxied\""));
  outcome_free(&o);
  assert_int_equal(kcld_fault_count(s_fault, NULL,
                                    "Kinesis_20131202.CreateStream"), 1);
  assert_int_equal(kcld_fault_count(s_fault, NULL,
                                    "Kinesis_20131202.ListStreams"), 2);
  assert_int_equal(stat_of("passed"), 2);
  env_close(&e);
}

/* ======== Close ======== */

struct cancel_probe {
  struct kcld_aws *aws;
  struct outcome o;
  int retry_rc;
};

static void on_cancel_probe(const struct kcld_aws_result *r, void *arg)
{
  struct cancel_probe *p = arg;
  on_result(r, &p->o);
  p->retry_rc = kcld_aws_call(p->aws, KCLD_AWS_KINESIS, "ListStreams", NULL,
                              NULL, on_cancel_probe, p);
}

static void test_close_cancels(void **state)
{
  (void)state;
  struct env e;
  struct cancel_probe p[3];
  struct kcld_aws_opts slow = {.retry_base_ms = 20000};

  env_open(&e, s_fault, &slow);
  script("{'steps':[{'status':500},{'delay_ms':5000,'times':5}]}");
  memset(p, 0, sizeof(p));
  for (int i = 0; i < 3; i++)
    p[i].aws = e.aws;
  /* p[0]: fails once, then waits in backoff or in flight; p[1]: in flight. */
  assert_int_equal(kcld_aws_call(e.aws, KCLD_AWS_KINESIS, "GetRecords", NULL,
                                 NULL, on_cancel_probe, &p[0]), 0);
  for (int tries = 0; tries < 100 && stat_of("total") < 1; tries++) {
    int never = 0;
    kcld_test_run_until(&e.loop, &never, 20);
  }
  assert_int_equal(kcld_aws_call(e.aws, KCLD_AWS_KINESIS, "GetRecords", NULL,
                                 NULL, on_cancel_probe, &p[1]), 0);
  for (int tries = 0; tries < 100 && stat_of("total") < 2; tries++) {
    int never = 0;
    kcld_test_run_until(&e.loop, &never, 20);
  }
  assert_true(stat_of("total") >= 2);
  assert_int_equal(kcld_http_pending(e.http) >= 1, 1);
  /* p[2]: started, its first attempt not yet begun. */
  assert_int_equal(kcld_aws_call(e.aws, KCLD_AWS_KINESIS, "GetRecords", NULL,
                                 NULL, on_cancel_probe, &p[2]), 0);
  uint64_t t0 = uv_hrtime();
  kcld_aws_close(e.aws);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(p[i].o.done, 1);
    assert_int_equal(p[i].o.err, KCLD_ECANCELED);
    assert_int_equal(p[i].retry_rc, KCLD_ECANCELED);
  }
  assert_int_equal(p[0].o.attempts >= 1, 1);
  assert_int_equal(p[2].o.attempts, 0);
  assert_int_equal(kcld_http_pending(e.http), 0);
  kcld_credentials_close(e.creds);
  kcld_http_close(e.http);
  kcld_test_loop_finish(&e.loop);
  assert_true((uv_hrtime() - t0) / 1000000 < 1000);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(p[i].o.done, 1);
    outcome_free(&p[i].o);
  }
}

/* A service's cap on requests in flight: DynamoDB calls beyond it wait
 * their turn in order and all finish; another service (no cap) and an
 * uncapped call (the dynamodb handler's writes) are not held back; waiting
 * calls are cancelled when the client closes. */
static void test_in_flight_cap(void **state)
{
  (void)state;
  struct env e;
  struct outcome ddb[5] = {{0}}, kin[2] = {{0}}, late[3] = {{0}}, free1 = {0};
  struct kcld_aws_opts capped = {.max_attempts = 1};
  const struct kcld_aws_call_opts uncapped = {.uncapped = 1};
  size_t most = 0;

  capped.max_in_flight[KCLD_AWS_DYNAMODB] = 2;
  env_open(&e, s_fault, &capped);
  script("{'steps':[{'delay_ms':150,'times':8}]}");
  for (int i = 0; i < 5; i++)
    start(&e, KCLD_AWS_DYNAMODB, "UpdateItem", NULL, NULL, &ddb[i]);
  int ddb_done = 0;
  for (int tries = 0; tries < 1000 && ddb_done < 5; tries++) {
    int never = 0;
    kcld_test_run_until(&e.loop, &never, 5);
    size_t n = kcld_http_pending(e.http);
    assert_true(n <= 2);
    most = n > most ? n : most;
    if (tries == 2) { /* DynamoDB's turns are taken; Kinesis goes at once */
      start(&e, KCLD_AWS_KINESIS, "GetRecords", NULL, NULL, &kin[0]);
      start(&e, KCLD_AWS_KINESIS, "GetRecords", NULL, NULL, &kin[1]);
      start(&e, KCLD_AWS_DYNAMODB, "PutItem", NULL, &uncapped, &free1);
      for (int k = 0; k < 100 && kcld_http_pending(e.http) < 5; k++)
        kcld_test_run_until(&e.loop, &never, 2);
      assert_int_equal(kcld_http_pending(e.http), 5);
      assert_true(kcld_test_run_until(&e.loop, &kin[1].done, 5000));
      assert_true(kcld_test_run_until(&e.loop, &kin[0].done, 5000));
      assert_true(kcld_test_run_until(&e.loop, &free1.done, 5000));
    }
    ddb_done = 0;
    for (int i = 0; i < 5; i++)
      ddb_done += ddb[i].done;
  }
  assert_int_equal(most, 2);
  for (int i = 0; i < 5; i++) {
    assert_int_equal(ddb[i].done, 1);
    assert_int_equal(ddb[i].err, 0);
  }
  for (int i = 0; i < 2; i++)
    assert_int_equal(kin[i].err, 0);
  assert_int_equal(free1.err, 0);
  assert_int_equal(stat_of("total"), 8);

  /* Two in flight, one waiting: closing cancels all three. */
  script("{'steps':[{'delay_ms':5000,'times':3}]}");
  for (int i = 0; i < 3; i++)
    start(&e, KCLD_AWS_DYNAMODB, "UpdateItem", NULL, NULL, &late[i]);
  for (int tries = 0; tries < 200 && kcld_http_pending(e.http) < 2; tries++) {
    int never = 0;
    kcld_test_run_until(&e.loop, &never, 5);
  }
  assert_int_equal(kcld_http_pending(e.http), 2);
  kcld_aws_close(e.aws);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(late[i].done, 1);
    assert_int_equal(late[i].err, KCLD_ECANCELED);
  }
  assert_int_equal(late[2].attempts, 0);
  kcld_credentials_close(e.creds);
  kcld_http_close(e.http);
  kcld_test_loop_finish(&e.loop);
  for (int i = 0; i < 5; i++)
    outcome_free(&ddb[i]);
  for (int i = 0; i < 2; i++)
    outcome_free(&kin[i]);
  outcome_free(&free1);
  for (int i = 0; i < 3; i++)
    outcome_free(&late[i]);
}

static void test_bad_arguments(void **state)
{
  (void)state;
  struct env e;
  struct kcld_aws *aws = NULL;
  struct outcome o = {0};

  env_open(&e, s_fault, NULL);
  struct kcld_aws_opts opts = {.loop = &e.loop, .http = e.http,
                               .creds = e.creds, .region = "us-east-1"};
  opts.endpoint[KCLD_AWS_SQS] = "http://127.0.0.1:1/?q=1";
  assert_int_equal(kcld_aws_new(&opts, &aws), KCLD_EINVAL);
  assert_null(aws);
  opts.endpoint[KCLD_AWS_SQS] = "ftp://127.0.0.1/";
  assert_int_equal(kcld_aws_new(&opts, &aws), KCLD_EINVAL);
  /* A URL with a user part is refused, and its password is not logged. */
  char *logged = NULL;
  size_t logged_len = 0;
  FILE *log = open_memstream(&logged, &logged_len);
  assert_non_null(log);
  kcld_log_setup(KCLD_LOG_INFO, KCLD_LOG_TEXT, log);
  opts.endpoint[KCLD_AWS_SQS] = "http://AKIDUSER:s3cretPW@127.0.0.1:1/";
  assert_int_equal(kcld_aws_new(&opts, &aws), KCLD_EINVAL);
  kcld_log_setup(KCLD_LOG_INFO, KCLD_LOG_JSON, NULL);
  fclose(log);
  assert_non_null(strstr(logged, "bad AWS endpoint URL"));
  assert_non_null(strstr(logged, "not shown: it has a user part"));
  assert_null(strstr(logged, "s3cretPW"));
  free(logged);
  opts.endpoint[KCLD_AWS_SQS] = NULL;
  opts.region = "us-east-1/../x";
  assert_int_equal(kcld_aws_new(&opts, &aws), KCLD_EINVAL);
  opts.region = NULL;
  assert_int_equal(kcld_aws_new(&opts, &aws), KCLD_EINVAL);
  opts.region = "eu-west-1";
  opts.max_in_flight[KCLD_AWS_DYNAMODB] = -1;
  assert_int_equal(kcld_aws_new(&opts, &aws), KCLD_EINVAL);
  opts.max_in_flight[KCLD_AWS_DYNAMODB] = 0;
  /* Default endpoints need no network to set up. */
  assert_int_equal(kcld_aws_new(&opts, &aws), 0);
  assert_string_equal(kcld_aws_region(aws), "eu-west-1");
  kcld_aws_close(aws);

  json_t *arr = json_array();
  assert_int_equal(kcld_aws_call(e.aws, KCLD_AWS_KINESIS, "List Streams",
                                 NULL, NULL, on_result, &o), KCLD_EINVAL);
  assert_int_equal(kcld_aws_call(e.aws, KCLD_AWS_KINESIS, "", NULL, NULL,
                                 on_result, &o), KCLD_EINVAL);
  assert_int_equal(kcld_aws_call(e.aws, KCLD_AWS_NSERVICES, "ListStreams",
                                 NULL, NULL, on_result, &o), KCLD_EINVAL);
  assert_int_equal(kcld_aws_call(e.aws, KCLD_AWS_KINESIS, "ListStreams", arr,
                                 NULL, on_result, &o), KCLD_EINVAL);
  assert_int_equal(kcld_aws_call(e.aws, KCLD_AWS_KINESIS, "ListStreams",
                                 NULL, NULL, NULL, &o), KCLD_EINVAL);
  json_decref(arr);
  env_close(&e);
  assert_int_equal(o.done, 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_wire_format),
    cmocka_unit_test(test_signatures_verified),
    cmocka_unit_test(test_observer),
    cmocka_unit_test(test_500_then_success),
    cmocka_unit_test(test_503_exhausts_attempts),
    cmocka_unit_test(test_throttling_retried),
    cmocka_unit_test(test_adaptive_rate_limiter),
    cmocka_unit_test(test_transient_retried),
    cmocka_unit_test(test_client_errors_not_retried),
    cmocka_unit_test(test_garbage_body),
    cmocka_unit_test(test_raw_mode),
    cmocka_unit_test(test_truncated_body),
    cmocka_unit_test(test_connection_closed),
    cmocka_unit_test(test_slow_past_timeout),
    cmocka_unit_test(test_connection_refused),
    cmocka_unit_test(test_clock_skew_corrected),
    cmocka_unit_test(test_skew_error_without_skew),
    cmocka_unit_test(test_retry_quota_drained),
    cmocka_unit_test(test_kinesalite),
    cmocka_unit_test(test_kinesalite_through_faults),
    cmocka_unit_test(test_close_cancels),
    cmocka_unit_test(test_in_flight_cap),
    cmocka_unit_test(test_bad_arguments),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
