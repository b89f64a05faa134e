/* cred_sso.c — credentials for an IAM Identity Center (SSO) profile: the
 * access token from the SDKs' token cache (written by `aws sso login`),
 * refreshed with SSO OIDC CreateToken when it nears its end and a refresh
 * token is there, then the portal's GetRoleCredentials.
 *
 * Tokens and credentials are secrets: kept in heap strings wiped before
 * they are freed, never logged; the cache file is rewritten with mode 0600
 * through a temporary file and a rename. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "aws/cred_fetch.h"
#include "aws/profile.h"
#include "aws/xml.h"
#include "base/hex.h"
#include "err.h"
#include "log.h"

#define REFRESH_WINDOW_S 300  /* refresh a token that ends within 5 min */

enum step { STEP_REFRESH, STEP_ROLE };

struct sso_job {
  struct kcld_cred_job job;
  struct kcld_http *http;
  enum step step;
  int in_http, cancelled;
  char *label;                /* "sso-session NAME" or "start URL X" */
  char *cache_path;
  json_t *cache;              /* the cache file's JSON (secrets inside) */
  char *portal_url, *oidc_url, *account_id, *role_name;
  kcld_cred_fetch_cb cb;
  void *arg;
};

static void job_free(struct sso_job *j)
{
  free(j->label);
  free(j->cache_path);
  kcld_json_wipe(j->cache);
  json_decref(j->cache);
  free(j->portal_url);
  free(j->oidc_url);
  free(j->account_id);
  free(j->role_name);
  free(j);
}

static void on_http(const struct kcld_http_response *r, void *arg);

static void job_cancel(struct kcld_cred_job *job)
{
  struct sso_job *j = (struct sso_job *)job;
  j->cancelled = 1;
  if (j->in_http)
    kcld_http_cancel(j->http, on_http, j); /* its callback frees the job */
  else
    job_free(j);
}

static void finish(struct sso_job *j, int err, struct kcld_creds *c,
                   const char *why)
{
  if (!j->cancelled)
    j->cb(j->arg, err, c, why);
  job_free(j);
}

static void failf(struct sso_job *j, const char *fmt, const char *a)
{
  char why[400];
  snprintf(why, sizeof(why), fmt, j->label, a ? a : "");
  finish(j, KCLD_ECREDS, NULL, why);
}

/* ~/.aws/sso/cache/<sha1 hex of key>.json */
static char *cache_path(const char *key)
{
  unsigned char md[20];
  unsigned int n = 0;
  char rel[80] = "sso/cache/", *end;
  if (!EVP_Digest(key, strlen(key), md, &n, EVP_sha1(), NULL) || n != 20)
    return NULL;
  end = kcld_hex_put(rel + strlen(rel), md, sizeof(md));
  memcpy(end, ".json", sizeof(".json"));
  return kcld_profile_path(NULL, rel);
}

/* Rewrites the cache file (mode 0600, through a rename).  Best effort: a
 * failure is logged, the fetched token is used anyway. */
static void cache_write(struct sso_job *j)
{
  char *text = json_dumps(j->cache, JSON_INDENT(2)), *tmp = NULL;
  size_t len = text ? strlen(text) : 0, off = 0;
  int fd = -1, ok = 0;

  if (!text || asprintf(&tmp, "%s.kcld-%ld", j->cache_path,
                        (long)getpid()) < 0)
    goto done;
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    goto done;
  while (off < len) {
    ssize_t w = write(fd, text + off, len - off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      goto done;
    off += (size_t)w;
  }
  ok = close(fd) == 0 && rename(tmp, j->cache_path) == 0;
  fd = -1;

done:
  if (fd >= 0)
    close(fd);
  if (!ok) {
    kcld_log(KCLD_LOG_WARN, "cannot rewrite the SSO token cache", "path",
             j->cache_path, NULL);
    if (tmp)
      unlink(tmp);
  }
  if (text) {
    OPENSSL_cleanse(text, len);
    free(text);
  }
  free(tmp);
}

static int send_role(struct sso_job *j);

/* The token, or NULL. */
static const char *token_of(const struct sso_job *j)
{
  return json_string_value(json_object_get(j->cache, "accessToken"));
}

static time_t token_expires(const struct sso_job *j)
{
  const char *e = json_string_value(json_object_get(j->cache, "expiresAt"));
  return e ? kcld_cred_parse_time(e) : -1;
}

/* A CreateToken answer: the new token into the cache (and the file). */
static void on_refreshed(struct sso_job *j, const struct kcld_http_response *r)
{
  json_t *a = json_loadb(r->body, r->body_len, 0, NULL);
  const char *tok = json_string_value(json_object_get(a, "accessToken"));
  const char *rt = json_string_value(json_object_get(a, "refreshToken"));
  json_int_t in = json_integer_value(json_object_get(a, "expiresIn"));
  char exp[32];
  time_t at = time(NULL) + (time_t)in;
  struct tm tm;

  if (!tok || !*tok || in <= 0) {
    kcld_json_wipe(a);
    json_decref(a);
    if (token_expires(j) > time(NULL)) { /* still usable a while */
      kcld_log(KCLD_LOG_WARN, "SSO token refresh failed; using the cached "
               "token", "session", j->label, "reason",
               "answer lacks accessToken or expiresIn", NULL);
      if (send_role(j) != 0)
        failf(j, "%s: cannot ask for role credentials%s", NULL);
      return;
    }
    failf(j, "%s: the SSO token refresh answer lacks accessToken or "
          "expiresIn%s", NULL);
    return;
  }
  gmtime_r(&at, &tm);
  strftime(exp, sizeof(exp), "%Y-%m-%dT%H:%M:%SZ", &tm);
  json_object_set_new(j->cache, "accessToken", json_string(tok));
  json_object_set_new(j->cache, "expiresAt", json_string(exp));
  if (rt && *rt)
    json_object_set_new(j->cache, "refreshToken", json_string(rt));
  kcld_json_wipe(a);
  json_decref(a);
  cache_write(j);
  kcld_log(KCLD_LOG_INFO, "SSO token refreshed", "session", j->label,
           "expires", exp, NULL);
  if (send_role(j) != 0)
    failf(j, "%s: cannot ask for role credentials%s", NULL);
}

/* A GetRoleCredentials answer. */
static void on_role(struct sso_job *j, const struct kcld_http_response *r)
{
  json_t *a = json_loadb(r->body, r->body_len, 0, NULL);
  json_t *rc = json_object_get(a, "roleCredentials");
  const char *ak = json_string_value(json_object_get(rc, "accessKeyId"));
  const char *sk = json_string_value(json_object_get(rc, "secretAccessKey"));
  const char *tok = json_string_value(json_object_get(rc, "sessionToken"));
  json_int_t exp_ms = json_integer_value(json_object_get(rc, "expiration"));
  struct kcld_creds c;
  int err;

  if (!ak || !*ak || !sk || !*sk || exp_ms <= 0) {
    kcld_json_wipe(a);
    json_decref(a);
    failf(j, "%s: GetRoleCredentials answer lacks roleCredentials%s", NULL);
    return;
  }
  err = kcld_cred_set(&c, ak, sk, tok, (time_t)(exp_ms / 1000));
  kcld_json_wipe(a);
  json_decref(a);
  finish(j, err, err ? NULL : &c, err ? "out of memory" : "");
}

static void on_http(const struct kcld_http_response *r, void *arg)
{
  struct sso_job *j = arg;
  char status[48];

  j->in_http = 0;
  if (j->cancelled) {
    job_free(j);
    return;
  }
  if (r->err) {
    finish(j, r->err == KCLD_ECANCELED ? KCLD_ECANCELED : KCLD_ECREDS, NULL,
           j->step == STEP_ROLE ? "GetRoleCredentials: no answer"
                                : "SSO token refresh: no answer");
    return;
  }
  if (r->status == 200) {
    if (j->step == STEP_REFRESH)
      on_refreshed(j, r);
    else
      on_role(j, r);
    return;
  }
  snprintf(status, sizeof(status), "HTTP %ld", r->status);
  if (j->step == STEP_REFRESH && token_expires(j) > time(NULL)) {
    kcld_log(KCLD_LOG_WARN, "SSO token refresh failed; using the cached "
             "token", "session", j->label, "reason", status, NULL);
    if (send_role(j) != 0)
      failf(j, "%s: cannot ask for role credentials%s", NULL);
    return;
  }
  if (j->step == STEP_REFRESH)
    failf(j, "%s: the SSO token expired and its refresh failed (%s); run "
          "`aws sso login`", status);
  else if (r->status == 401 || r->status == 403)
    failf(j, "%s: the portal refused the SSO token (%s); run "
          "`aws sso login`", status);
  else
    failf(j, "%s: GetRoleCredentials failed (%s)", status);
}

static int send_role(struct sso_job *j)
{
  char *url = NULL, *hdr = NULL, *acct, *role;
  const char *headers[2] = {NULL, NULL};
  struct kcld_http_request req;
  int rc = KCLD_ENOMEM;

  acct = curl_easy_escape(NULL, j->account_id, 0);
  role = curl_easy_escape(NULL, j->role_name, 0);
  if (acct && role &&
      asprintf(&url, "%s/federation/credentials?account_id=%s&role_name=%s",
               j->portal_url, acct, role) >= 0 &&
      asprintf(&hdr, "x-amz-sso_bearer_token: %s", token_of(j)) >= 0) {
    memset(&req, 0, sizeof(req));
    req.method = "GET";
    req.url = url;
    headers[0] = hdr;
    req.headers = headers;
    j->step = STEP_ROLE;
    rc = kcld_http_send(j->http, &req, on_http, j);
    j->in_http = rc == 0;
  }
  curl_free(acct);
  curl_free(role);
  free(url);
  kcld_cred_wipe_free(hdr);
  return rc;
}

static int send_refresh(struct sso_job *j)
{
  json_t *body = json_pack(
    "{s:O, s:O, s:s, s:O}", "clientId", json_object_get(j->cache, "clientId"),
    "clientSecret", json_object_get(j->cache, "clientSecret"), "grantType",
    "refresh_token", "refreshToken", json_object_get(j->cache, "refreshToken"));
  char *text = body ? json_dumps(body, JSON_COMPACT) : NULL, *url = NULL;
  const char *headers[] = {"Content-Type: application/json", NULL};
  struct kcld_http_request req;
  int rc = KCLD_ENOMEM;

  if (text && asprintf(&url, "%s/token", j->oidc_url) >= 0) {
    memset(&req, 0, sizeof(req));
    req.method = "POST";
    req.url = url;
    req.headers = headers;
    req.body = text;
    req.body_len = strlen(text);
    j->step = STEP_REFRESH;
    rc = kcld_http_send(j->http, &req, on_http, j);
    j->in_http = rc == 0;
  }
  free(url);
  kcld_cred_wipe_free(text);
  json_decref(body); /* its strings are the cache's, wiped with it */
  return rc;
}

/* Can the cached token be refreshed (refresh token and a client
 * registration that has not ended)? */
static int refreshable(const struct sso_job *j)
{
  const char *reg =
    json_string_value(json_object_get(j->cache, "registrationExpiresAt"));
  return json_string_value(json_object_get(j->cache, "refreshToken")) &&
         json_string_value(json_object_get(j->cache, "clientId")) &&
         json_string_value(json_object_get(j->cache, "clientSecret")) &&
         (!reg || kcld_cred_parse_time(reg) > time(NULL));
}

int kcld_cred_sso_start(const struct kcld_cred_env *env,
                        const struct kcld_cred_sso *sso,
                        kcld_cred_fetch_cb cb, void *arg,
                        struct kcld_cred_job **out, char *why,
                        size_t why_len)
{
  struct sso_job *j = calloc(1, sizeof(*j));
  char *text = NULL;
  size_t len = 0;
  time_t exp;
  int rc;

  if (!j || !(j->cache_path = cache_path(sso->session ? sso->session
                                                      : sso->start_url)) ||
      !(j->portal_url = strdup(sso->portal_url)) ||
      !(j->oidc_url = strdup(sso->oidc_url)) ||
      !(j->account_id = strdup(sso->account_id)) ||
      !(j->role_name = strdup(sso->role_name)) ||
      asprintf(&j->label, "%s %s", sso->session ? "sso-session" : "start URL",
               sso->session ? sso->session : sso->start_url) < 0) {
    if (j)
      job_free(j);
    snprintf(why, why_len, "out of memory");
    return KCLD_ENOMEM;
  }
  j->job.cancel = job_cancel;
  j->http = env->http;
  j->cb = cb;
  j->arg = arg;
  rc = kcld_profile_read_file(j->cache_path, &text, &len);
  if (rc == 0) {
    j->cache = json_loadb(text, len, 0, NULL);
    OPENSSL_cleanse(text, len);
    free(text);
  }
  if (!json_is_object(j->cache) || !token_of(j) ||
      (exp = token_expires(j)) <= 0) {
    snprintf(why, why_len, "%s: no usable SSO token in %s (%s); run "
             "`aws sso login`", j->label, j->cache_path,
             rc == KCLD_ENOTFOUND ? "no such file"
             : rc != 0            ? kcld_strerror(rc)
                                  : "not a token cache entry");
    job_free(j);
    return KCLD_ECREDS;
  }
  if (exp - REFRESH_WINDOW_S > time(NULL))
    rc = send_role(j);
  else if (sso->session && refreshable(j))
    rc = send_refresh(j);
  else if (exp > time(NULL))
    rc = send_role(j);
  else {
    snprintf(why, why_len, "%s: the SSO token expired and cannot be "
             "refreshed; run `aws sso login`", j->label);
    job_free(j);
    return KCLD_ECREDS;
  }
  if (rc != 0) {
    snprintf(why, why_len, "%s: cannot send (%s)", j->label,
             kcld_strerror(rc));
    job_free(j);
    return rc == KCLD_ENOMEM ? rc : KCLD_ECREDS;
  }
  *out = &j->job;
  return 0;
}
