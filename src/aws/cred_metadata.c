/* cred_metadata.c — credentials from the container endpoint (ECS, EKS Pod
 * Identity) and from EC2 instance metadata (IMDSv2, IMDSv1 where the token
 * PUT is refused), and the region from instance metadata.
 *
 * One small state machine, struct net_op, on the shared http client: each
 * step is one request with a short timeout, retried with backoff on
 * transport errors and 5xx.  Metadata requests never go through a proxy.
 * Secrets (the IMDS token, the container Authorization value, the
 * credentials) live only in heap strings wiped before they are freed. */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>

#include "aws/cred_fetch.h"
#include "aws/profile.h"
#include "aws/xml.h"
#include "err.h"
#include "log.h"

#define IMDS_DEFAULT "http://169.254.169.254"
#define IMDS_DEFAULT_V6 "http://[fd00:ec2::254]"
#define CONTAINER_DEFAULT "http://169.254.170.2"
#define IMDS_TOKEN_TTL "21600"
#define NET_BACKOFF_MS 100     /* base of the per-request backoff */
#define IMDS_TIMEOUT_MS 1000   /* kcld's defaults for the settings */
#define IMDS_ATTEMPTS 3
#define CONTAINER_TIMEOUT_MS 2000

enum op_kind { OP_IMDS_CREDS, OP_IMDS_REGION, OP_CONTAINER };
enum op_step { STEP_TOKEN, STEP_ROLE, STEP_FINAL };

/* One container or instance-metadata fetch.  Freed through its timer's close
 * callback.  When its owner goes away mid-request it is "orphaned": the http
 * callback, which always comes, then frees it. */
struct net_op {
  struct kcld_cred_job job;
  struct kcld_http *http;
  uv_timer_t timer;          /* backoff between attempts */
  enum op_kind kind;
  enum op_step step;
  int attempt;               /* attempts made at the current step */
  int max_attempts;
  long timeout_ms;
  int in_http;               /* a request is in flight */
  int orphaned;
  int v1;                    /* IMDS answered the token PUT with 404/405 */
  char *base;                /* IMDS endpoint without trailing / */
  char *url;                 /* container URL */
  char *auth;                /* container Authorization value (secret) */
  char *token;               /* IMDS session token (secret) */
  char *role;
  char *region;
  char **role_out;
  struct kcld_creds creds;   /* the result */
  char why[200];             /* failure reason, never a secret */
  kcld_cred_fetch_cb cb;
  void *arg;
  kcld_region_cb region_cb;
  void *region_arg;
};

static void op_on_closed(uv_handle_t *h)
{
  free(h->data);
}

static void op_free(struct net_op *op)
{
  free(op->base);
  free(op->url);
  kcld_cred_wipe_free(op->auth);
  kcld_cred_wipe_free(op->token);
  free(op->role);
  free(op->region);
  kcld_creds_clean_up(&op->creds);
  op->base = op->url = op->auth = op->token = op->role = op->region = NULL;
  uv_close((uv_handle_t *)&op->timer, op_on_closed);
}

static void op_finish(struct net_op *op, int err)
{
  if (!op->orphaned) {
    if (op->kind == OP_IMDS_REGION) {
      if (err && err != KCLD_ECANCELED)
        kcld_log(KCLD_LOG_WARN, "no region from instance metadata", "reason",
                 op->why, NULL);
      op->region_cb(err ? (err == KCLD_ECANCELED ? err : KCLD_ENOTFOUND) : 0,
                    err ? NULL : op->region, op->region_arg);
    } else {
      if (err == 0 && op->role_out) {
        *op->role_out = op->role;
        op->role = NULL;
      }
      op->cb(op->arg, err, err ? NULL : &op->creds, op->why);
    }
  }
  op_free(op);
}

/* Stops an op on behalf of an owner that goes away: no callback will run. */
static void op_on_http(const struct kcld_http_response *resp, void *arg);

static void op_cancel(struct kcld_cred_job *job)
{
  struct net_op *op = (struct net_op *)job;
  op->orphaned = 1;
  if (op->in_http) {
    /* Its callback runs now with KCLD_ECANCELED and frees the op. */
    kcld_http_cancel(op->http, op_on_http, op);
    return;
  }
  uv_timer_stop(&op->timer);
  op_free(op);
}

static const char *step_name(const struct net_op *op)
{
  if (op->kind == OP_CONTAINER)
    return "container request";
  switch (op->step) {
  case STEP_TOKEN:
    return "token request";
  case STEP_ROLE:
    return "role lookup";
  default:
    return op->kind == OP_IMDS_REGION ? "region lookup" : "role credentials";
  }
}

static void op_send(struct net_op *op);

static void op_on_timer(uv_timer_t *t)
{
  op_send(t->data);
}

/* Fails the op, or schedules another attempt when `retryable`. */
static void op_fail(struct net_op *op, int retryable, int err,
                    const char *what)
{
  if (retryable && op->attempt < op->max_attempts) {
    uint64_t d = kcld_cred_backoff_ms(NET_BACKOFF_MS, op->attempt, 2000);
    kcld_log(KCLD_LOG_DEBUG, "metadata request failed, retrying", "step",
             step_name(op), "reason", what, NULL);
    uv_timer_start(&op->timer, op_on_timer, d, 0);
    return;
  }
  snprintf(op->why, sizeof(op->why), "%s: %s after %d attempt%s",
           step_name(op), what, op->attempt, op->attempt == 1 ? "" : "s");
  op_finish(op, err);
}

static const char *json_str(json_t *obj, const char *key)
{
  json_t *v = json_object_get(obj, key);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Parses the credentials JSON of IMDS or a container endpoint. */
static int parse_creds(struct net_op *op, const char *body, size_t len)
{
  json_error_t jerr;
  json_t *j = json_loadb(body, len, 0, &jerr);
  const char *code, *ak, *sk, *tok, *exp;
  int rc = KCLD_EPARSE;

  if (!j || !json_is_object(j)) {
    snprintf(op->why, sizeof(op->why), "%s: answer is not a JSON object",
             step_name(op));
    goto done;
  }
  code = json_str(j, "Code");
  if (code && strcmp(code, "Success") != 0) {
    /* The Code is an AWS status word ("Success", "AssumeRoleUnauthorized-
     * Access"), safe to log. */
    snprintf(op->why, sizeof(op->why), "%s: Code %.60s", step_name(op), code);
    rc = KCLD_ECREDS;
    goto done;
  }
  ak = json_str(j, "AccessKeyId");
  sk = json_str(j, "SecretAccessKey");
  tok = json_str(j, "Token");
  exp = json_str(j, "Expiration");
  if (!ak || !*ak || !sk || !*sk) {
    snprintf(op->why, sizeof(op->why),
             "%s: answer lacks AccessKeyId or SecretAccessKey", step_name(op));
    goto done;
  }
  time_t e = 0;
  if (exp && (e = kcld_cred_parse_time(exp)) < 0) {
    snprintf(op->why, sizeof(op->why), "%s: bad Expiration", step_name(op));
    goto done;
  }
  if (kcld_cred_set(&op->creds, ak, sk, tok, e) != 0) {
    rc = KCLD_ENOMEM;
    snprintf(op->why, sizeof(op->why), "out of memory");
    goto done;
  }
  rc = 0;

done:
  if (j) {
    kcld_json_wipe(j);
    json_decref(j);
  }
  return rc;
}

/* Handles a 200 answer for the current step: sends the next step or
 * finishes the op. */
static void op_on_ok(struct net_op *op, const char *body, size_t len)
{
  int rc;

  switch (op->step) {
  case STEP_TOKEN:
    kcld_cred_wipe_free(op->token);
    op->token = strndup(body, len);
    if (!op->token) {
      snprintf(op->why, sizeof(op->why), "out of memory");
      op_finish(op, KCLD_ENOMEM);
      return;
    }
    op->step = op->kind == OP_IMDS_REGION ? STEP_FINAL : STEP_ROLE;
    break;
  case STEP_ROLE: {
    /* The listing holds one role per line; take the first. */
    size_t n = 0;
    while (n < len && body[n] != '\n' && body[n] != '\r')
      n++;
    while (n > 0 && (body[n - 1] == ' ' || body[n - 1] == '\t'))
      n--;
    if (n == 0) {
      snprintf(op->why, sizeof(op->why),
               "role lookup: no IAM role attached to the instance");
      op_finish(op, KCLD_ECREDS);
      return;
    }
    free(op->role);
    op->role = strndup(body, n);
    if (!op->role) {
      snprintf(op->why, sizeof(op->why), "out of memory");
      op_finish(op, KCLD_ENOMEM);
      return;
    }
    op->step = STEP_FINAL;
    break;
  }
  case STEP_FINAL:
    if (op->kind == OP_IMDS_REGION) {
      size_t n = 0;
      while (n < len && !isspace((unsigned char)body[n]))
        n++;
      op->region = n ? strndup(body, n) : NULL;
      if (!op->region)
        snprintf(op->why, sizeof(op->why), "region lookup: empty answer");
      op_finish(op, op->region ? 0 : KCLD_EPARSE);
      return;
    }
    rc = parse_creds(op, body, len);
    op_finish(op, rc);
    return;
  }
  op->attempt = 0;
  op_send(op);
}

static void op_on_http(const struct kcld_http_response *resp, void *arg)
{
  struct net_op *op = arg;
  char what[120];

  op->in_http = 0;
  if (op->orphaned) {
    op_free(op);
    return;
  }
  if (resp->err == KCLD_ECANCELED) {
    snprintf(op->why, sizeof(op->why), "%s: http client closed",
             step_name(op));
    op_finish(op, KCLD_ECANCELED);
    return;
  }
  if (resp->err) {
    snprintf(what, sizeof(what), "%s",
             resp->err == KCLD_ETIMEDOUT ? "timed out"
                                         : "no answer (connection failed)");
    op_fail(op, 1, KCLD_ECREDS, what);
    return;
  }
  if (resp->status == 200) {
    op_on_ok(op, resp->body ? resp->body : "", resp->body ? resp->body_len : 0);
    return;
  }
  if (op->kind != OP_CONTAINER && op->step == STEP_TOKEN &&
      (resp->status == 404 || resp->status == 405)) {
    /* No IMDSv2 here: carry on without a token, as the SDKs do. */
    kcld_log(KCLD_LOG_INFO, "instance metadata has no IMDSv2, using IMDSv1",
             NULL);
    op->v1 = 1;
    op->step = op->kind == OP_IMDS_REGION ? STEP_FINAL : STEP_ROLE;
    op->attempt = 0;
    op_send(op);
    return;
  }
  snprintf(what, sizeof(what), "HTTP %ld", resp->status);
  op_fail(op, resp->status >= 500 || resp->status == 429, KCLD_ECREDS, what);
}

static void op_send(struct net_op *op)
{
  const char *headers[3] = {NULL, NULL, NULL};
  char *hdr = NULL, *url = NULL;
  struct kcld_http_request req;
  int rc;

  memset(&req, 0, sizeof(req));
  req.method = "GET";
  req.headers = headers;
  req.timeout_ms = op->timeout_ms;
  req.connect_timeout_ms = op->timeout_ms;
  req.no_proxy = 1;
  if (op->kind == OP_CONTAINER) {
    req.url = op->url;
    if (op->auth && asprintf(&hdr, "Authorization: %s", op->auth) < 0)
      hdr = NULL;
    headers[0] = hdr;
  } else if (op->step == STEP_TOKEN) {
    req.method = "PUT";
    if (asprintf(&url, "%s/latest/api/token", op->base) < 0)
      url = NULL;
    headers[0] = "X-aws-ec2-metadata-token-ttl-seconds: " IMDS_TOKEN_TTL;
  } else {
    if (op->step == STEP_ROLE)
      rc = asprintf(&url, "%s/latest/meta-data/iam/security-credentials/",
                    op->base);
    else if (op->kind == OP_IMDS_REGION)
      rc = asprintf(&url, "%s/latest/meta-data/placement/region", op->base);
    else
      rc = asprintf(&url, "%s/latest/meta-data/iam/security-credentials/%s",
                    op->base, op->role);
    if (rc < 0)
      url = NULL;
    if (!op->v1 && op->token &&
        asprintf(&hdr, "X-aws-ec2-metadata-token: %s", op->token) < 0)
      hdr = NULL;
    headers[0] = hdr;
  }
  if (op->kind != OP_CONTAINER)
    req.url = url;
  if (!req.url || (op->kind == OP_CONTAINER && op->auth && !hdr) ||
      (op->kind != OP_CONTAINER && op->step != STEP_TOKEN && !op->v1 && !hdr)) {
    snprintf(op->why, sizeof(op->why), "out of memory");
    rc = KCLD_ENOMEM;
  } else {
    op->attempt++;
    rc = kcld_http_send(op->http, &req, op_on_http, op);
  }
  free(url);
  kcld_cred_wipe_free(hdr);
  if (rc == 0) {
    op->in_http = 1;
    return;
  }
  if (!op->why[0])
    snprintf(op->why, sizeof(op->why), "%s: cannot send (%s)", step_name(op),
             kcld_strerror(rc));
  /* KCLD_ECANCELED: the http client is closing. */
  op_finish(op, rc == KCLD_ENOMEM || rc == KCLD_ECANCELED ? rc : KCLD_ECREDS);
}

static struct net_op *op_new(const struct kcld_cred_env *env,
                             enum op_kind kind)
{
  struct net_op *op = calloc(1, sizeof(*op));
  if (!op)
    return NULL;
  op->job.cancel = op_cancel;
  op->http = env->http;
  op->kind = kind;
  op->timeout_ms = kind == OP_CONTAINER ? CONTAINER_TIMEOUT_MS
                                        : env->metadata_timeout_ms;
  op->max_attempts = env->metadata_attempts;
  op->step = kind == OP_CONTAINER ? STEP_FINAL : STEP_TOKEN;
  uv_timer_init(env->loop, &op->timer);
  op->timer.data = op;
  return op;
}

/* The IMDS base URL: the argument, AWS_EC2_METADATA_SERVICE_ENDPOINT, the
 * IPv6 address when AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6, else the
 * IPv4 one.  Without a trailing slash; malloc'd. */
static char *imds_base(const char *configured)
{
  const char *b = configured && *configured ? configured
                  : kcld_cred_env("AWS_EC2_METADATA_SERVICE_ENDPOINT");
  const char *mode = getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE");
  if (!b)
    b = mode && strcasecmp(mode, "IPv6") == 0 ? IMDS_DEFAULT_V6 : IMDS_DEFAULT;
  char *s = strdup(b);
  if (s)
    for (size_t n = strlen(s); n > 0 && s[n - 1] == '/'; n--)
      s[n - 1] = '\0';
  return s;
}

/* ===================== Container endpoint rules ===================== */

/* May a full container credentials URI be used?  https anywhere; plain http
 * only to loopback, the ECS (169.254.170.2) and EKS Pod Identity
 * (169.254.170.23, fd00:ec2::23) addresses, as the SDKs allow.  "localhost"
 * counts as loopback: curl resolves it to loopback without DNS. */
static int container_uri_allowed(const char *uri)
{
  CURLU *u = curl_url();
  char *scheme = NULL, *host = NULL;
  int ok = 0;

  if (!u)
    return 0;
  if (curl_url_set(u, CURLUPART_URL, uri, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
    goto done;
  if (strcasecmp(scheme, "https") == 0) {
    ok = 1;
    goto done;
  }
  if (strcasecmp(scheme, "http") != 0)
    goto done;
  if (strcasecmp(host, "localhost") == 0) {
    ok = 1;
    goto done;
  }
  unsigned char a[16];
  char h[INET6_ADDRSTRLEN + 2];
  size_t hl = strlen(host);
  if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']' && hl - 2 < sizeof(h)) {
    memcpy(h, host + 1, hl - 2);
    h[hl - 2] = '\0';
    if (inet_pton(AF_INET6, h, a) == 1) {
      static const unsigned char lo[16] = {[15] = 1};
      static const unsigned char eks[16] = {0xfd, 0x00, 0x0e, 0xc2,
                                            [15] = 0x23};
      ok = memcmp(a, lo, 16) == 0 || memcmp(a, eks, 16) == 0;
    }
  } else if (inet_pton(AF_INET, host, a) == 1) {
    ok = a[0] == 127 ||
         (a[0] == 169 && a[1] == 254 && a[2] == 170 &&
          (a[3] == 2 || a[3] == 23));
  }

done:
  curl_free(scheme);
  curl_free(host);
  curl_url_cleanup(u);
  return ok;
}

/* Reads the container Authorization value, from the file named in
 * AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE (preferred, re-read on each fetch)
 * or AWS_CONTAINER_AUTHORIZATION_TOKEN.  Returns 0 with *out NULL when none
 * is configured, or KCLD_ECREDS with `why` set. */
static int container_auth(char **out, char *why, size_t why_len)
{
  const char *file = kcld_cred_env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
  const char *tok = kcld_cred_env("AWS_CONTAINER_AUTHORIZATION_TOKEN");
  char *v = NULL;
  size_t len = 0;

  *out = NULL;
  if (file) {
    int rc = kcld_profile_read_file(file, &v, &len);
    if (rc != 0) {
      snprintf(why, why_len, "cannot read the authorization token file %s",
               file);
      return KCLD_ECREDS;
    }
    while (len > 0 && isspace((unsigned char)v[len - 1]))
      v[--len] = '\0';
  } else if (tok) {
    v = strdup(tok);
    if (!v) {
      snprintf(why, why_len, "out of memory");
      return KCLD_ECREDS;
    }
  } else {
    return 0;
  }
  if (!*v || strpbrk(v, "\r\n")) {
    snprintf(why, why_len, "the container authorization token is %s",
             *v ? "not a single line" : "empty");
    kcld_cred_wipe_free(v);
    return KCLD_ECREDS;
  }
  *out = v;
  return 0;
}


/* ===================== Starting a fetch ===================== */

/* A positive number in `v`, or -1. */
static double positive(const char *v)
{
  char *end;
  double d;
  if (!v || !*v)
    return -1;
  d = strtod(v, &end);
  return *end == '\0' && d > 0 && d < 86400 ? d : -1;
}

void kcld_cred_metadata_settings(struct kcld_cred_env *env,
                                 const struct kcld_profile *profile)
{
  static const struct {
    const char *env, *key;
  } names[] = {{"AWS_METADATA_SERVICE_TIMEOUT", "metadata_service_timeout"},
               {"AWS_METADATA_SERVICE_NUM_ATTEMPTS",
                "metadata_service_num_attempts"}};
  double v[2];
  for (int i = 0; i < 2; i++) {
    const char *text = kcld_cred_env(names[i].env);
    const char *from = names[i].env;
    if (!text) {
      text = kcld_profile_get(profile, names[i].key);
      from = names[i].key;
    }
    v[i] = positive(text);
    if (text && (v[i] < 0 || (i == 1 && v[i] != (double)(int)v[i])))
      kcld_log(KCLD_LOG_WARN, "ignoring a bad metadata service setting",
               "setting", from, "value", text, NULL);
  }
  env->metadata_timeout_ms = v[0] > 0 ? (long)(v[0] * 1000) : IMDS_TIMEOUT_MS;
  env->metadata_attempts = v[1] >= 1 && v[1] == (double)(int)v[1]
                             ? (int)v[1]
                             : IMDS_ATTEMPTS;
}

int kcld_cred_container_start(const struct kcld_cred_env *env,
                              kcld_cred_fetch_cb cb, void *arg,
                              struct kcld_cred_job **out, char *why,
                              size_t why_len)
{
  const char *rel = kcld_cred_env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
  const char *full = kcld_cred_env("AWS_CONTAINER_CREDENTIALS_FULL_URI");
  char *auth = NULL, *url = NULL;
  struct net_op *op;
  int rc;

  if (rel) {
    const char *base = env->container_endpoint ? env->container_endpoint
                                               : CONTAINER_DEFAULT;
    if (asprintf(&url, "%s%s%s", base, rel[0] == '/' ? "" : "/", rel) < 0)
      url = NULL;
  } else if (!full || !container_uri_allowed(full)) {
    snprintf(why, why_len,
             "AWS_CONTAINER_CREDENTIALS_FULL_URI host is not allowed (http "
             "only to loopback, 169.254.170.2, 169.254.170.23, "
             "fd00:ec2::23; else https)");
    return KCLD_ECREDS;
  } else {
    url = strdup(full);
  }
  if (!url) {
    snprintf(why, why_len, "out of memory");
    return KCLD_ENOMEM;
  }
  /* Only the relative URI (ECS) goes without a token; the full URI may
   * carry one too. */
  if ((rc = container_auth(&auth, why, why_len)) != 0) {
    free(url);
    return rc;
  }
  op = op_new(env, OP_CONTAINER);
  if (!op) {
    free(url);
    kcld_cred_wipe_free(auth);
    snprintf(why, why_len, "out of memory");
    return KCLD_ENOMEM;
  }
  op->url = url;
  op->auth = auth;
  op->cb = cb;
  op->arg = arg;
  *out = &op->job;
  op_send(op); /* a failure to send answers now, through cb */
  return 0;
}

int kcld_cred_imds_start(const struct kcld_cred_env *env, char **role,
                         kcld_cred_fetch_cb cb, void *arg,
                         struct kcld_cred_job **out)
{
  struct net_op *op = op_new(env, OP_IMDS_CREDS);
  if (!op || !(op->base = imds_base(env->imds_endpoint))) {
    if (op)
      op_free(op);
    return KCLD_ENOMEM;
  }
  op->role_out = role;
  op->cb = cb;
  op->arg = arg;
  *out = &op->job;
  op_send(op); /* a failure to send answers now, through cb */
  return 0;
}

int kcld_region_from_imds(uv_loop_t *loop, struct kcld_http *http,
                          const char *imds_endpoint, kcld_region_cb cb,
                          void *arg)
{
  struct kcld_cred_env env;
  struct net_op *op;

  if (!loop || !http || !cb)
    return KCLD_EINVAL;
  if (kcld_profile_bool(getenv("AWS_EC2_METADATA_DISABLED")) == 1)
    return KCLD_ENOTFOUND;
  memset(&env, 0, sizeof(env));
  env.loop = loop;
  env.http = http;
  kcld_cred_metadata_settings(&env, NULL);
  op = op_new(&env, OP_IMDS_REGION);
  if (!op)
    return KCLD_ENOMEM;
  if (!(op->base = imds_base(imds_endpoint))) {
    op_free(op);
    return KCLD_ENOMEM;
  }
  op->region_cb = cb;
  op->region_arg = arg;
  /* The first request goes out from the loop, so cb never runs before this
   * returns. */
  uv_timer_start(&op->timer, op_on_timer, 0, 0);
  return 0;
}
