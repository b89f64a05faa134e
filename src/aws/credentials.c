/* credentials.c — the AWS credential provider chain and region lookup.
 *
 * The local providers (explicit config, environment, shared files) are read
 * synchronously.  Container credentials and instance metadata go through one
 * small state machine, struct net_op, on the shared http client: each step is
 * one request with a short timeout, retried with backoff on transport errors
 * and 5xx.  A fetched set that expires is refreshed by a timer ahead of its
 * Expiration while get() keeps answering from the cache.
 *
 * Secrets (keys, session tokens, the IMDS token, the container Authorization
 * value) live only in heap strings that are wiped with OPENSSL_cleanse before
 * they are freed, and never reach a log line. */
#include "aws/credentials.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>

#include "base/backoff.h"
#include "err.h"
#include "log.h"

#define IMDS_DEFAULT "http://169.254.169.254"
#define IMDS_DEFAULT_V6 "http://[fd00:ec2::254]"
#define CONTAINER_DEFAULT "http://169.254.170.2"
#define IMDS_TOKEN_TTL "21600"
#define NET_ATTEMPTS 3         /* per request, the first included */
#define NET_BACKOFF_MS 100     /* base of the per-request backoff */
#define IMDS_TIMEOUT_MS 1000
#define CONTAINER_TIMEOUT_MS 2000
#define REFRESH_AHEAD_S 300    /* refresh 5 minutes before Expiration */
#define FRESH_MARGIN_S 60      /* get() answers at once until E - 1 minute */
#define REFRESH_FLOOR_MS 30000 /* when a new set is already inside the window */
#define REFRESH_RETRY_MS 1000  /* first retry after a failed refresh */
#define REFRESH_RETRY_MAX_MS 60000
#define REFETCH_GUARD_MS 5000  /* no new fetch within 5 s of the last one */
#define MAX_FILE_BYTES (4 << 20)

/* ===================== Small helpers ===================== */

static void wipe_free(char *s)
{
  if (s) {
    OPENSSL_cleanse(s, strlen(s));
    free(s);
  }
}

static void creds_clean_up(struct kcld_creds *c)
{
  wipe_free(c->access_key_id);
  wipe_free(c->secret_access_key);
  wipe_free(c->session_token);
  memset(c, 0, sizeof(*c));
}

static char *dup_or_null(const char *s)
{
  return s ? strdup(s) : NULL;
}

static const char *env_nonempty(const char *name)
{
  const char *v = getenv(name);
  return v && *v ? v : NULL;
}

static int env_true(const char *name)
{
  const char *v = getenv(name);
  return v && strcasecmp(v, "true") == 0;
}

/* Exponential backoff base * 2^(n-1), capped, with "equal jitter": the delay
 * lies in [d/2, d]. */
static uint64_t backoff_ms(uint64_t base, int n, uint64_t cap)
{
  struct kcld_backoff b = {base, cap, KCLD_BACKOFF_EQUAL};
  return kcld_backoff_ms(&b, n > 0 ? (unsigned)n : 1);
}

/* Parses an ISO 8601 UTC time ("2026-11-23T16:00:00Z", optional fraction,
 * or a +hh:mm / -hh:mm offset).  Returns epoch seconds, or -1. */
static time_t parse_iso8601(const char *s)
{
  struct tm tm;
  int n = 0, off = 0;
  const char *p;

  memset(&tm, 0, sizeof(tm));
  if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon,
             &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6)
    return -1;
  p = s + n;
  if (*p == '.')
    for (p++; isdigit((unsigned char)*p); p++)
      ;
  if (*p == 'Z' || *p == 'z') {
    p++;
  } else if (*p == '+' || *p == '-') {
    int hh, mm;
    if (sscanf(p + 1, "%2d:%2d", &hh, &mm) != 2)
      return -1;
    off = (hh * 3600 + mm * 60) * (*p == '+' ? 1 : -1);
    p += 6;
  } else {
    return -1;
  }
  if (*p != '\0')
    return -1;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  time_t t = timegm(&tm);
  return t == (time_t)-1 ? -1 : t - off;
}

static void format_iso8601(time_t t, char *out, size_t n)
{
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Reads a whole file without stdio (so no unwiped stdio buffer keeps a copy
 * of a secret).  Returns 0 and a NUL-terminated buffer the caller must wipe
 * and free, KCLD_ENOTFOUND when absent, else KCLD_EIO. */
static int read_file(const char *path, char **out, size_t *len)
{
  struct stat st;
  char *buf = NULL;
  size_t n = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);

  *out = NULL;
  if (fd < 0)
    return errno == ENOENT || errno == ENOTDIR ? KCLD_ENOTFOUND : KCLD_EIO;
  if (fstat(fd, &st) != 0 || st.st_size > MAX_FILE_BYTES) {
    close(fd);
    return KCLD_EIO;
  }
  buf = malloc((size_t)st.st_size + 1);
  if (!buf) {
    close(fd);
    return KCLD_ENOMEM;
  }
  while (n < (size_t)st.st_size) {
    ssize_t r = read(fd, buf + n, (size_t)st.st_size - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    n += (size_t)r;
  }
  close(fd);
  buf[n] = '\0';
  *out = buf;
  if (len)
    *len = n;
  return 0;
}

/* ~ and the home directory. */
static const char *home_dir(char *buf, size_t len)
{
  const char *h = env_nonempty("HOME");
  struct passwd pw, *res = NULL;
  if (h)
    return h;
  if (getpwuid_r(getuid(), &pw, buf, len, &res) != 0 || !res || !pw.pw_dir)
    return NULL;
  return pw.pw_dir;
}

/* The path in env var `var` (with a leading ~ expanded), else ~/.aws/<name>.
 * Returns a malloc'd path or NULL. */
static char *aws_file_path(const char *var, const char *name)
{
  char pwbuf[1024];
  const char *v = env_nonempty(var), *home = home_dir(pwbuf, sizeof(pwbuf));
  char *out = NULL;

  if (v && v[0] == '~' && (v[1] == '/' || v[1] == '\0')) {
    if (!home || asprintf(&out, "%s%s", home, v + 1) < 0)
      return NULL;
    return out;
  }
  if (v)
    return strdup(v);
  if (!home || asprintf(&out, "%s/.aws/%s", home, name) < 0)
    return NULL;
  return out;
}

static const char *profile_name(const char *configured)
{
  if (configured && *configured)
    return configured;
  const char *p = env_nonempty("AWS_PROFILE");
  return p ? p : "default";
}

/* ===================== Shared files (INI) ===================== */

struct profile {
  char *access_key_id;
  char *secret_access_key;
  char *session_token;
  char *region;
};

static void profile_clean_up(struct profile *p)
{
  wipe_free(p->access_key_id);
  wipe_free(p->secret_access_key);
  wipe_free(p->session_token);
  wipe_free(p->region);
  memset(p, 0, sizeof(*p));
}

static char *trim(char *s)
{
  while (*s == ' ' || *s == '\t')
    s++;
  char *e = s + strlen(s);
  while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
    *--e = '\0';
  return s;
}

static void profile_set(struct profile *p, const char *key, const char *val)
{
  char **slot = NULL;
  if (strcasecmp(key, "aws_access_key_id") == 0)
    slot = &p->access_key_id;
  else if (strcasecmp(key, "aws_secret_access_key") == 0)
    slot = &p->secret_access_key;
  else if (strcasecmp(key, "aws_session_token") == 0)
    slot = &p->session_token;
  else if (strcasecmp(key, "region") == 0)
    slot = &p->region;
  if (!slot)
    return;
  wipe_free(*slot);
  *slot = *val ? strdup(val) : NULL;
}

/* Does section header text `name` (inside the brackets, trimmed) name
 * profile `want`?  The config file writes [profile NAME] and [default]; the
 * credentials file writes [NAME]. */
static int section_matches(const char *name, int is_config, const char *want)
{
  if (!is_config)
    return strcmp(name, want) == 0;
  if (strcmp(name, "default") == 0)
    return strcmp(want, "default") == 0;
  if (strncmp(name, "profile", 7) == 0 && (name[7] == ' ' || name[7] == '\t')) {
    const char *rest = name + 8;
    while (*rest == ' ' || *rest == '\t')
      rest++;
    return strcmp(rest, want) == 0;
  }
  return 0;
}

/* Parses an AWS shared config/credentials file held in `buf` (modified in
 * place) and merges the properties of profile `want` into `p`.  Comments are
 * whole lines starting with # or ;, or # / ; after whitespace in a value.
 * Indented lines after a property continue it (sub-properties) and are
 * skipped.  Section names are case-sensitive, keys are not.  Returns 1 when
 * the profile's section was present. */
static int ini_merge(char *buf, int is_config, const char *want,
                     struct profile *p)
{
  int in_section = 0, found = 0, had_property = 0;
  char *line = buf, *next;

  if ((unsigned char)buf[0] == 0xEF && (unsigned char)buf[1] == 0xBB &&
      (unsigned char)buf[2] == 0xBF)
    line += 3;
  for (; line; line = next) {
    next = strchr(line, '\n');
    if (next)
      *next++ = '\0';
    int indented = line[0] == ' ' || line[0] == '\t';
    char *t = trim(line);
    if (*t == '\0' || *t == '#' || *t == ';')
      continue;
    if (*t == '[') {
      char *close = strchr(t, ']');
      had_property = 0;
      if (!close) {
        in_section = 0;
        continue;
      }
      *close = '\0';
      in_section = section_matches(trim(t + 1), is_config, want);
      found |= in_section;
      continue;
    }
    if (indented && had_property)
      continue;
    char *eq = strchr(t, '=');
    if (!eq)
      continue;
    *eq = '\0';
    char *key = trim(t), *val = trim(eq + 1);
    for (char *c = val; *c; c++)
      if ((*c == '#' || *c == ';') && c > val &&
          (c[-1] == ' ' || c[-1] == '\t')) {
        *c = '\0';
        val = trim(val);
        break;
      }
    had_property = 1;
    if (in_section)
      profile_set(p, key, val);
  }
  return found;
}

/* Loads profile `name` from both shared files; the credentials file wins
 * where both set a key.  Returns 1 when either file has the profile. */
static int profile_load(const char *name, struct profile *p)
{
  static const struct {
    const char *var, *file;
    int is_config;
  } files[] = {{"AWS_CONFIG_FILE", "config", 1},
               {"AWS_SHARED_CREDENTIALS_FILE", "credentials", 0}};
  int found = 0;

  memset(p, 0, sizeof(*p));
  for (size_t i = 0; i < 2; i++) {
    char *path = aws_file_path(files[i].var, files[i].file), *buf;
    size_t len;
    int rc;
    if (!path)
      continue;
    rc = read_file(path, &buf, &len);
    if (rc == 0) {
      found |= ini_merge(buf, files[i].is_config, name, p);
      OPENSSL_cleanse(buf, len);
      free(buf);
    } else if (rc != KCLD_ENOTFOUND) {
      kcld_log(KCLD_LOG_WARN, "cannot read AWS shared file", "path", path,
               "error", kcld_strerror(rc), NULL);
    }
    free(path);
  }
  return found;
}

/* ===================== Network fetches ===================== */

enum op_kind { OP_IMDS_CREDS, OP_IMDS_REGION, OP_CONTAINER };
enum op_step { STEP_TOKEN, STEP_ROLE, STEP_FINAL };

struct net_op;
typedef void (*net_op_done)(struct net_op *op, int err);

/* One container or instance-metadata fetch.  Freed through its timer's close
 * callback.  When its owner goes away mid-request it is "orphaned": the http
 * callback, which always comes, then frees it. */
struct net_op {
  struct kcld_http *http;
  uv_timer_t timer;          /* backoff between attempts */
  enum op_kind kind;
  enum op_step step;
  int attempt;               /* attempts made at the current step */
  int in_http;               /* a request is in flight */
  int orphaned;
  int v1;                    /* IMDS answered the token PUT with 404/405 */
  char *base;                /* IMDS endpoint without trailing / */
  char *url;                 /* container URL */
  char *auth;                /* container Authorization value (secret) */
  char *token;               /* IMDS session token (secret) */
  char *role;
  char *region;
  struct kcld_creds creds;   /* the result */
  char why[200];             /* failure reason, never a secret */
  net_op_done done;
  void *owner;
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
  wipe_free(op->auth);
  wipe_free(op->token);
  free(op->role);
  free(op->region);
  creds_clean_up(&op->creds);
  op->base = op->url = op->auth = op->token = op->role = op->region = NULL;
  uv_close((uv_handle_t *)&op->timer, op_on_closed);
}

static void op_finish(struct net_op *op, int err)
{
  if (!op->orphaned && op->done)
    op->done(op, err);
  op_free(op);
}

/* Stops an op on behalf of an owner that goes away: no callback will run. */
static void op_on_http(const struct kcld_http_response *resp, void *arg);

static void op_abandon(struct net_op *op)
{
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
  if (retryable && op->attempt < NET_ATTEMPTS) {
    uint64_t d = backoff_ms(NET_BACKOFF_MS, op->attempt, 2000);
    kcld_log(KCLD_LOG_DEBUG, "metadata request failed, retrying", "step",
             step_name(op), "reason", what, NULL);
    uv_timer_start(&op->timer, op_on_timer, d, 0);
    return;
  }
  snprintf(op->why, sizeof(op->why), "%s: %s after %d attempt%s",
           step_name(op), what, op->attempt, op->attempt == 1 ? "" : "s");
  op_finish(op, err);
}

/* Wipes every string value of a parsed object before it is freed. */
static void json_wipe(json_t *obj)
{
  const char *k;
  json_t *v;
  json_object_foreach(obj, k, v) {
    if (json_is_string(v))
      OPENSSL_cleanse((char *)json_string_value(v), json_string_length(v));
  }
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
  if (exp && (e = parse_iso8601(exp)) < 0) {
    snprintf(op->why, sizeof(op->why), "%s: bad Expiration", step_name(op));
    goto done;
  }
  op->creds.access_key_id = strdup(ak);
  op->creds.secret_access_key = strdup(sk);
  op->creds.session_token = tok && *tok ? strdup(tok) : NULL;
  op->creds.expiration = e;
  if (!op->creds.access_key_id || !op->creds.secret_access_key ||
      (tok && *tok && !op->creds.session_token)) {
    creds_clean_up(&op->creds);
    rc = KCLD_ENOMEM;
    snprintf(op->why, sizeof(op->why), "out of memory");
    goto done;
  }
  rc = 0;

done:
  if (j) {
    json_wipe(j);
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
    wipe_free(op->token);
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
  req.timeout_ms = op->kind == OP_CONTAINER ? CONTAINER_TIMEOUT_MS
                                            : IMDS_TIMEOUT_MS;
  req.connect_timeout_ms = IMDS_TIMEOUT_MS;
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
  wipe_free(hdr);
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

static struct net_op *op_new(uv_loop_t *loop, struct kcld_http *http,
                             enum op_kind kind)
{
  struct net_op *op = calloc(1, sizeof(*op));
  if (!op)
    return NULL;
  op->http = http;
  op->kind = kind;
  op->step = kind == OP_CONTAINER ? STEP_FINAL : STEP_TOKEN;
  uv_timer_init(loop, &op->timer);
  op->timer.data = op;
  return op;
}

/* The IMDS base URL: the argument, AWS_EC2_METADATA_SERVICE_ENDPOINT, the
 * IPv6 address when AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6, else the
 * IPv4 one.  Without a trailing slash; malloc'd. */
static char *imds_base(const char *configured)
{
  const char *b = configured && *configured ? configured
                  : env_nonempty("AWS_EC2_METADATA_SERVICE_ENDPOINT");
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
  const char *file = env_nonempty("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
  const char *tok = env_nonempty("AWS_CONTAINER_AUTHORIZATION_TOKEN");
  char *v = NULL;
  size_t len = 0;

  *out = NULL;
  if (file) {
    int rc = read_file(file, &v, &len);
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
    wipe_free(v);
    return KCLD_ECREDS;
  }
  *out = v;
  return 0;
}

/* ===================== The provider ===================== */

/* Source names; compared by address. */
static const char SRC_CONFIG[] = "config";
static const char SRC_ENV[] = "env";
static const char SRC_PROFILE[] = "profile";
static const char SRC_CONTAINER[] = "container";
static const char SRC_IMDS[] = "imds";

struct waiter {
  kcld_credentials_cb cb;
  void *arg;
  struct waiter *next;
};

struct kcld_credentials {
  uv_loop_t *loop;
  struct kcld_http *http;
  int http_gone;              /* the http client cancelled us: closed */
  char *cfg_ak, *cfg_sk, *cfg_token;
  char *profile;
  char *imds_endpoint;
  char *container_endpoint;

  struct kcld_creds cur;      /* the cached set */
  int have;
  const char *source;         /* "config", "env", "profile", "container",
                                 "imds" */
  char *role;                 /* IMDS role of the cached set */
  uint64_t fetched_at;        /* uv_now() when the last fetch ended */

  uv_timer_t timer;           /* background refresh */
  int refresh_failures;
  struct net_op *op;          /* fetch in flight */
  struct waiter *waiters, **tail;
  int destroyed;
  int failed_logged;          /* "no credentials" already said at error */
};

static void on_closed(uv_handle_t *h)
{
  free(h->data);
}

static int cached_fresh(const struct kcld_credentials *c)
{
  if (!c->have)
    return 0;
  if (c->cur.expiration == 0)
    return 1;
  time_t now = time(NULL);
  if (now + FRESH_MARGIN_S < c->cur.expiration)
    return 1;
  /* A set that is already short-lived stays in use for a few seconds after
   * the fetch that brought it, so callers do not hammer the endpoint. */
  return now < c->cur.expiration &&
         uv_now(c->loop) - c->fetched_at < REFETCH_GUARD_MS;
}

static int cached_unexpired(const struct kcld_credentials *c)
{
  return c->have && (c->cur.expiration == 0 || time(NULL) < c->cur.expiration);
}

/* Calls every waiting callback once, with the cached set or `err`. */
static void answer_waiters(struct kcld_credentials *c, int err)
{
  struct waiter *w = c->waiters;
  c->waiters = NULL;
  c->tail = &c->waiters;
  while (w) {
    struct waiter *next = w->next;
    if (c->destroyed)
      w->cb(KCLD_ECANCELED, NULL, w->arg);
    else if (err)
      w->cb(err, NULL, w->arg);
    else
      w->cb(0, &c->cur, w->arg);
    free(w);
    w = next;
  }
}

/* Takes ownership of `n` as the cached set, wiping the old one. */
static void cache_set(struct kcld_credentials *c, struct kcld_creds *n,
                      const char *source, char *role)
{
  creds_clean_up(&c->cur);
  c->cur = *n;
  memset(n, 0, sizeof(*n));
  c->have = 1;
  c->source = source;
  free(c->role);
  c->role = role;
}

static int set_static(struct kcld_creds *out, const char *ak, const char *sk,
                      const char *tok)
{
  memset(out, 0, sizeof(*out));
  out->access_key_id = strdup(ak);
  out->secret_access_key = strdup(sk);
  out->session_token = tok && *tok ? strdup(tok) : NULL;
  if (!out->access_key_id || !out->secret_access_key ||
      (tok && *tok && !out->session_token)) {
    creds_clean_up(out);
    return KCLD_ENOMEM;
  }
  return 0;
}

/* The synchronous providers: config, env, profile.  Returns 1 when one
 * yielded (and the cache holds its set), else 0. */
static int walk_local(struct kcld_credentials *c)
{
  struct kcld_creds n;
  const char *ak, *sk;

  if (c->cfg_ak && c->cfg_sk &&
      set_static(&n, c->cfg_ak, c->cfg_sk, c->cfg_token) == 0) {
    cache_set(c, &n, SRC_CONFIG, NULL);
    kcld_log(KCLD_LOG_INFO, "credentials from config", "source", "config",
             NULL);
    return 1;
  }

  ak = env_nonempty("AWS_ACCESS_KEY_ID");
  sk = env_nonempty("AWS_SECRET_ACCESS_KEY");
  if (!ak && !sk) {
    /* The names the first Java SDK read. */
    ak = env_nonempty("AWS_ACCESS_KEY");
    sk = env_nonempty("AWS_SECRET_KEY");
  }
  if (ak && sk) {
    if (set_static(&n, ak, sk, env_nonempty("AWS_SESSION_TOKEN")) == 0) {
      cache_set(c, &n, SRC_ENV, NULL);
      kcld_log(KCLD_LOG_INFO, "credentials from env", "source", "env", NULL);
      return 1;
    }
  } else if (ak || sk) {
    kcld_log(KCLD_LOG_WARN,
             "environment has only one of AWS_ACCESS_KEY_ID and "
             "AWS_SECRET_ACCESS_KEY; ignoring it", NULL);
  }

  struct profile p;
  const char *name = profile_name(c->profile);
  int found = profile_load(name, &p);
  int yielded = 0;
  if (p.access_key_id && p.secret_access_key) {
    if (set_static(&n, p.access_key_id, p.secret_access_key,
                   p.session_token) == 0) {
      cache_set(c, &n, SRC_PROFILE, NULL);
      kcld_log(KCLD_LOG_INFO, "credentials from profile", "source", "profile",
               "profile", name, NULL);
      yielded = 1;
    }
  } else if (p.access_key_id || p.secret_access_key) {
    kcld_log(KCLD_LOG_WARN,
             "profile has only one of aws_access_key_id and "
             "aws_secret_access_key; ignoring it", "profile", name, NULL);
  } else if (!found && strcmp(name, "default") != 0) {
    kcld_log(KCLD_LOG_WARN, "profile not found in the AWS shared files",
             "profile", name, NULL);
  }
  profile_clean_up(&p);
  return yielded;
}

static void fetch_done(struct net_op *op, int err);

/* Starts the network provider: container credentials when their variables
 * are set, else instance metadata unless disabled.  Returns 0 when a fetch
 * is under way, else KCLD_ECREDS / KCLD_ENOMEM with `why` filled. */
static int start_fetch(struct kcld_credentials *c, char *why, size_t why_len)
{
  const char *rel = env_nonempty("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
  const char *full = env_nonempty("AWS_CONTAINER_CREDENTIALS_FULL_URI");
  struct net_op *op;
  int rc;

  if (!c->http || c->http_gone) {
    snprintf(why, why_len, "no provider yielded (config, env, profile)%s",
             c->http ? "; http client closed" : "");
    return KCLD_ECREDS;
  }
  if (rel || full) {
    char *auth = NULL, *url = NULL;
    if (rel) {
      const char *base = c->container_endpoint ? c->container_endpoint
                                               : CONTAINER_DEFAULT;
      if (asprintf(&url, "%s%s%s", base, rel[0] == '/' ? "" : "/", rel) < 0)
        url = NULL;
    } else if (!container_uri_allowed(full)) {
      snprintf(why, why_len,
               "container: AWS_CONTAINER_CREDENTIALS_FULL_URI host is not "
               "allowed (http only to loopback, 169.254.170.2, "
               "169.254.170.23, fd00:ec2::23; else https)");
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
    op = op_new(c->loop, c->http, OP_CONTAINER);
    if (!op) {
      free(url);
      wipe_free(auth);
      snprintf(why, why_len, "out of memory");
      return KCLD_ENOMEM;
    }
    op->url = url;
    op->auth = auth;
  } else {
    if (env_true("AWS_EC2_METADATA_DISABLED")) {
      snprintf(why, why_len,
               "no provider yielded (config, env, profile; instance "
               "metadata disabled by AWS_EC2_METADATA_DISABLED)");
      return KCLD_ECREDS;
    }
    op = op_new(c->loop, c->http, OP_IMDS_CREDS);
    if (!op || !(op->base = imds_base(c->imds_endpoint))) {
      if (op)
        op_free(op);
      snprintf(why, why_len, "out of memory");
      return KCLD_ENOMEM;
    }
  }
  op->done = fetch_done;
  op->owner = c;
  c->op = op;
  op_send(op);
  return 0;
}

static void on_refresh_timer(uv_timer_t *t);

static void schedule_refresh(struct kcld_credentials *c)
{
  uint64_t delay;

  if (c->destroyed || !c->have || c->cur.expiration == 0 || c->http_gone)
    return;
  if (c->refresh_failures > 0) {
    delay = backoff_ms(REFRESH_RETRY_MS * 2, c->refresh_failures,
                       REFRESH_RETRY_MAX_MS);
  } else {
    time_t at = c->cur.expiration - REFRESH_AHEAD_S, now = time(NULL);
    delay = at > now ? (uint64_t)(at - now) * 1000 : REFRESH_FLOOR_MS;
  }
  uv_timer_start(&c->timer, on_refresh_timer, delay, 0);
}

/* Answers the waiters with an error, logging why (at error level the first
 * time in a row, then at debug). */
static void fail_chain(struct kcld_credentials *c, int err,
                       const char *provider, const char *why)
{
  if (err != KCLD_ECANCELED) {
    kcld_log(c->failed_logged ? KCLD_LOG_DEBUG : KCLD_LOG_ERROR,
             "no credentials", "provider", provider, "reason", why, NULL);
    c->failed_logged = 1;
    err = KCLD_ECREDS;
  }
  answer_waiters(c, err);
}

static void fetch_done(struct net_op *op, int err)
{
  struct kcld_credentials *c = op->owner;
  const char *source = op->kind == OP_CONTAINER ? SRC_CONTAINER : SRC_IMDS;
  int refresh = c->have && c->source == source;

  c->op = NULL;
  c->fetched_at = uv_now(c->loop);
  if (err == KCLD_ECANCELED)
    c->http_gone = 1;
  if (err == 0) {
    char exp[32] = "never";
    char *role = op->role;
    op->role = NULL;
    if (op->creds.expiration)
      format_iso8601(op->creds.expiration, exp, sizeof(exp));
    cache_set(c, &op->creds, source, role);
    c->refresh_failures = 0;
    c->failed_logged = 0;
    kcld_log(KCLD_LOG_INFO,
             refresh ? "credentials refreshed"
             : source == SRC_CONTAINER ? "credentials from container"
                                       : "credentials from imds",
             "source", source, "role", c->role, "expires", exp, NULL);
    schedule_refresh(c);
    answer_waiters(c, 0);
    return;
  }
  if (refresh)
    c->refresh_failures++;
  if (err != KCLD_ECANCELED && cached_unexpired(c)) {
    /* Keep signing with the set we have while it lasts. */
    kcld_log(KCLD_LOG_WARN,
             "credentials refresh failed; keeping the current set",
             "source", source, "reason", op->why, NULL);
    schedule_refresh(c);
    answer_waiters(c, 0);
    return;
  }
  fail_chain(c, err, source, op->why);
}

static void on_refresh_timer(uv_timer_t *t)
{
  struct kcld_credentials *c = t->data;
  char why[256];

  if (c->op || c->destroyed)
    return;
  kcld_log(KCLD_LOG_DEBUG, "refreshing credentials", "source", c->source,
           NULL);
  int rc = start_fetch(c, why, sizeof(why));
  if (rc != 0) {
    if (c->http_gone)
      return;
    c->refresh_failures++;
    kcld_log(KCLD_LOG_WARN,
             "credentials refresh failed; keeping the current set",
             "source", c->source, "reason", why, NULL);
    if (cached_unexpired(c))
      schedule_refresh(c);
  }
}

int kcld_credentials_new(const struct kcld_credentials_opts *opts,
                         struct kcld_credentials **out)
{
  struct kcld_credentials *c;
  int has_ak, has_sk;

  *out = NULL;
  if (!opts || !opts->loop)
    return KCLD_EINVAL;
  has_ak = opts->access_key_id && *opts->access_key_id;
  has_sk = opts->secret_access_key && *opts->secret_access_key;
  if (has_ak != has_sk)
    return KCLD_EINVAL;
  c = calloc(1, sizeof(*c));
  if (!c)
    return KCLD_ENOMEM;
  c->loop = opts->loop;
  c->http = opts->http;
  c->tail = &c->waiters;
  if (has_ak) {
    c->cfg_ak = strdup(opts->access_key_id);
    c->cfg_sk = strdup(opts->secret_access_key);
    c->cfg_token = dup_or_null(opts->session_token && *opts->session_token
                                   ? opts->session_token : NULL);
  }
  c->profile = dup_or_null(opts->profile);
  c->imds_endpoint = dup_or_null(opts->imds_endpoint);
  c->container_endpoint = dup_or_null(opts->container_endpoint);
  if ((has_ak && (!c->cfg_ak || !c->cfg_sk ||
                  (opts->session_token && *opts->session_token &&
                   !c->cfg_token))) ||
      (opts->profile && !c->profile) ||
      (opts->imds_endpoint && !c->imds_endpoint) ||
      (opts->container_endpoint && !c->container_endpoint)) {
    wipe_free(c->cfg_ak);
    wipe_free(c->cfg_sk);
    wipe_free(c->cfg_token);
    free(c->profile);
    free(c->imds_endpoint);
    free(c->container_endpoint);
    free(c);
    return KCLD_ENOMEM;
  }
  uv_timer_init(c->loop, &c->timer);
  c->timer.data = c;
  *out = c;
  return 0;
}

void kcld_credentials_get(struct kcld_credentials *c, kcld_credentials_cb cb,
                          void *arg)
{
  char why[256];
  struct waiter *w;
  int rc;

  if (c->destroyed) {
    cb(KCLD_ECANCELED, NULL, arg);
    return;
  }
  if (cached_fresh(c)) {
    cb(0, &c->cur, arg);
    return;
  }
  if (!c->op && !c->have && walk_local(c)) {
    cb(0, &c->cur, arg);
    return;
  }
  w = malloc(sizeof(*w));
  if (!w) {
    cb(KCLD_ENOMEM, NULL, arg);
    return;
  }
  w->cb = cb;
  w->arg = arg;
  w->next = NULL;
  *c->tail = w;
  c->tail = &w->next;
  if (c->op)
    return;
  uv_timer_stop(&c->timer);
  rc = start_fetch(c, why, sizeof(why));
  if (rc == 0)
    return;
  if (cached_unexpired(c)) {
    kcld_log(KCLD_LOG_WARN,
             "credentials refresh failed; keeping the current set",
             "source", c->source, "reason", why, NULL);
    c->refresh_failures++;
    schedule_refresh(c);
    answer_waiters(c, 0);
    return;
  }
  fail_chain(c, KCLD_ECREDS, "chain", why);
}

const char *kcld_credentials_source(const struct kcld_credentials *c)
{
  return c && c->have ? c->source : NULL;
}

void kcld_credentials_destroy(struct kcld_credentials *c)
{
  if (!c || c->destroyed)
    return;
  c->destroyed = 1;
  uv_timer_stop(&c->timer);
  if (c->op) {
    op_abandon(c->op);
    c->op = NULL;
  }
  answer_waiters(c, KCLD_ECANCELED);
  creds_clean_up(&c->cur);
  c->have = 0;
  wipe_free(c->cfg_ak);
  wipe_free(c->cfg_sk);
  wipe_free(c->cfg_token);
  free(c->profile);
  free(c->imds_endpoint);
  free(c->container_endpoint);
  free(c->role);
  c->cfg_ak = c->cfg_sk = c->cfg_token = NULL;
  c->profile = c->imds_endpoint = c->container_endpoint = c->role = NULL;
  uv_close((uv_handle_t *)&c->timer, on_closed);
}

/* ===================== Region ===================== */

char *kcld_region_from_env(const char *configured, const char *profile)
{
  const char *r;
  char *out = NULL;

  if (configured && *configured)
    return strdup(configured);
  if ((r = env_nonempty("AWS_REGION")) ||
      (r = env_nonempty("AWS_DEFAULT_REGION")))
    return strdup(r);

  char *path = aws_file_path("AWS_CONFIG_FILE", "config"), *buf;
  size_t len;
  if (path && read_file(path, &buf, &len) == 0) {
    struct profile p;
    memset(&p, 0, sizeof(p));
    ini_merge(buf, 1, profile_name(profile), &p);
    if (p.region) {
      out = p.region;
      p.region = NULL;
    }
    profile_clean_up(&p);
    OPENSSL_cleanse(buf, len);
    free(buf);
  }
  free(path);
  return out;
}

static void region_done(struct net_op *op, int err)
{
  if (err && err != KCLD_ECANCELED)
    kcld_log(KCLD_LOG_WARN, "no region from instance metadata", "reason",
             op->why, NULL);
  op->region_cb(err ? (err == KCLD_ECANCELED ? err : KCLD_ENOTFOUND) : 0,
                err ? NULL : op->region, op->region_arg);
}

int kcld_region_from_imds(uv_loop_t *loop, struct kcld_http *http,
                          const char *imds_endpoint, kcld_region_cb cb,
                          void *arg)
{
  struct net_op *op;

  if (!loop || !http || !cb)
    return KCLD_EINVAL;
  if (env_true("AWS_EC2_METADATA_DISABLED"))
    return KCLD_ENOTFOUND;
  op = op_new(loop, http, OP_IMDS_REGION);
  if (!op)
    return KCLD_ENOMEM;
  if (!(op->base = imds_base(imds_endpoint))) {
    op_free(op);
    return KCLD_ENOMEM;
  }
  op->done = region_done;
  op->region_cb = cb;
  op->region_arg = arg;
  /* The first request goes out from the loop, so cb never runs before this
   * returns. */
  uv_timer_start(&op->timer, op_on_timer, 0, 0);
  return 0;
}
