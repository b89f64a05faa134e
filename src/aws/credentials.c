/* credentials.c — the credential provider: the chain's plan (cred_chain.c)
 * fetched, cached and refreshed; region lookup; helpers the fetchers share.
 *
 * The first get() walks the chain.  A static set (config, environment,
 * profile keys) is cached for good.  Anything else is a fetch: a base set
 * (web identity, credential_process, SSO, container, instance metadata, or
 * static keys under a role), then each role of the plan assumed with the
 * set before it.  A set that expires is refreshed by a timer ahead of its
 * Expiration while get() keeps answering from the cache, so calls in
 * flight never wait for a refresh; the plan found first is kept for every
 * refresh.
 *
 * Secrets (keys, session tokens) live only in heap strings that are wiped
 * with OPENSSL_cleanse before they are freed, and never reach a log line. */
#include "aws/credentials.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "aws/call.h"
#include "aws/cred_chain.h"
#include "aws/cred_fetch.h"
#include "aws/profile.h"
#include "aws/sts.h"
#include "base/backoff.h"
#include "err.h"
#include "log.h"

#define REFRESH_AHEAD_S 300    /* refresh 5 minutes before Expiration */
#define FRESH_MARGIN_S 60      /* get() answers at once until E - 1 minute */
#define REFRESH_FLOOR_MS 30000 /* when a new set is already inside the window */
#define REFRESH_RETRY_MS 1000  /* first retry after a failed refresh */
#define REFRESH_RETRY_MAX_MS 60000
#define REFETCH_GUARD_MS 5000  /* no new fetch within 5 s of the last one */
#define PROCESS_TIMEOUT_MS 60000
#define STS_FALLBACK_REGION "us-east-1"

/* ===================== Shared helpers ===================== */

void kcld_cred_wipe_free(char *s)
{
  if (s) {
    OPENSSL_cleanse(s, strlen(s));
    free(s);
  }
}

void kcld_creds_clean_up(struct kcld_creds *c)
{
  if (!c)
    return;
  kcld_cred_wipe_free(c->access_key_id);
  kcld_cred_wipe_free(c->secret_access_key);
  kcld_cred_wipe_free(c->session_token);
  memset(c, 0, sizeof(*c));
}

int kcld_cred_set(struct kcld_creds *out, const char *access_key_id,
                  const char *secret_access_key, const char *session_token,
                  time_t expiration)
{
  int tok = session_token && *session_token;
  memset(out, 0, sizeof(*out));
  out->access_key_id = strdup(access_key_id);
  out->secret_access_key = strdup(secret_access_key);
  out->session_token = tok ? strdup(session_token) : NULL;
  out->expiration = expiration;
  if (!out->access_key_id || !out->secret_access_key ||
      (tok && !out->session_token)) {
    kcld_creds_clean_up(out);
    return KCLD_ENOMEM;
  }
  return 0;
}

int kcld_creds_copy(struct kcld_creds *dst, const struct kcld_creds *src)
{
  return kcld_cred_set(dst, src->access_key_id, src->secret_access_key,
                       src->session_token, src->expiration);
}

const char *kcld_cred_env(const char *name)
{
  const char *v = getenv(name);
  return v && *v ? v : NULL;
}

void kcld_cred_job_cancel(struct kcld_cred_job *job)
{
  if (job)
    job->cancel(job);
}

uint64_t kcld_cred_backoff_ms(uint64_t base, int n, uint64_t cap)
{
  struct kcld_backoff b = {base, cap, KCLD_BACKOFF_EQUAL};
  return kcld_backoff_ms(&b, n > 0 ? (unsigned)n : 1);
}

time_t kcld_cred_parse_time(const char *s)
{
  struct tm tm;
  int n = 0, off = 0;
  const char *p;
  time_t t;

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
  t = timegm(&tm);
  return t == (time_t)-1 ? -1 : t - off;
}

static void format_iso8601(time_t t, char *out, size_t n)
{
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ===================== The provider ===================== */

struct waiter {
  kcld_credentials_cb cb;
  void *arg;
  struct waiter *next;
};

struct run;

struct kcld_credentials {
  uv_loop_t *loop;
  struct kcld_http *http;
  int http_gone;              /* the http client cancelled us: closed */
  char *cfg_ak, *cfg_sk, *cfg_token;
  char *profile;
  char *imds_endpoint;
  char *container_endpoint;
  char *region;               /* for STS; NULL = found when needed */
  struct kcld_cred_env env;
  struct kcld_aws *sts_aws;   /* made at the first STS call */
  struct kcld_sts *sts;

  struct kcld_cred_plan plan; /* what the chain found */
  int planned;
  char notes[700];            /* why the steps before the plan gave nothing */

  struct kcld_creds cur;      /* the cached set */
  int have;
  const char *source;         /* the plan's source of the cached set */
  char *role;                 /* IMDS role of the cached set */
  uint64_t fetched_at;        /* uv_now() when the last fetch ended */

  uv_timer_t timer;           /* background refresh */
  int refresh_failures;
  struct run *run;            /* fetch in flight */
  struct waiter *waiters, **tail;
  int closing;
  int failed_logged;          /* "no credentials" already said at error */
};

/* One fetch of the plan: its base, then its roles. */
struct run {
  struct kcld_credentials *c;
  struct kcld_cred_job *job;  /* the step in flight */
  size_t hop;                 /* roles assumed so far */
  struct kcld_creds cur;      /* the set so far */
  char *role;                 /* the IMDS role */
};

static void on_closed(uv_handle_t *h)
{
  free(h->data);
}

static int cached_fresh(const struct kcld_credentials *c)
{
  time_t now;
  if (!c->have)
    return 0;
  if (c->cur.expiration == 0)
    return 1;
  now = time(NULL);
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
    if (c->closing)
      w->cb(KCLD_ECANCELED, NULL, w->arg);
    else if (err)
      w->cb(err, NULL, w->arg);
    else
      w->cb(0, &c->cur, w->arg);
    free(w);
    w = next;
  }
}

/* The log line for a new set from `source` (literal, for the docs). */
static const char *from_message(const char *source)
{
  static const struct {
    const char *source, *msg;
  } m[] = {
    {"config", "credentials from config"},
    {"env", "credentials from env"},
    {"profile", "credentials from profile"},
    {"web-identity", "credentials from web identity"},
    {"assume-role", "credentials from an assumed role"},
    {"process", "credentials from credential_process"},
    {"sso", "credentials from SSO"},
    {"container", "credentials from container"},
    {"imds", "credentials from imds"},
  };
  for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++)
    if (strcmp(m[i].source, source) == 0)
      return m[i].msg;
  return "credentials found";
}

/* Takes `n` as the cached set, wiping the old one, and says so. */
static void cache_set(struct kcld_credentials *c, struct kcld_creds *n,
                      char *role)
{
  int refresh = c->have;
  char exp[32] = "never";

  kcld_creds_clean_up(&c->cur);
  c->cur = *n;
  memset(n, 0, sizeof(*n));
  c->have = 1;
  c->source = c->plan.source;
  free(c->role);
  c->role = role;
  if (c->cur.expiration)
    format_iso8601(c->cur.expiration, exp, sizeof(exp));
  kcld_log(KCLD_LOG_INFO,
           refresh ? "credentials refreshed" : from_message(c->source),
           "source", c->source, "profile", c->plan.profile, "role", c->role,
           "expires", exp, NULL);
}

static void on_refresh_timer(uv_timer_t *t);

static void schedule_refresh(struct kcld_credentials *c)
{
  uint64_t delay;

  if (c->closing || !c->have || c->cur.expiration == 0 || c->http_gone)
    return;
  if (c->refresh_failures > 0) {
    delay = kcld_cred_backoff_ms(REFRESH_RETRY_MS * 2, c->refresh_failures,
                                 REFRESH_RETRY_MAX_MS);
  } else {
    time_t at = c->cur.expiration - REFRESH_AHEAD_S, now = time(NULL);
    delay = at > now ? (uint64_t)(at - now) * 1000 : REFRESH_FLOOR_MS;
  }
  uv_timer_start(&c->timer, on_refresh_timer, delay, 0);
}

/* Answers the waiters with an error, logging why (at error level the first
 * time in a row, then at debug).  `provider`: the plan's source, or "chain"
 * when the walk itself found nothing usable. */
static void fail_chain(struct kcld_credentials *c, int err,
                       const char *provider, const char *why)
{
  if (err != KCLD_ECANCELED) {
    kcld_log(c->failed_logged ? KCLD_LOG_DEBUG : KCLD_LOG_ERROR,
             "no credentials", "provider", provider, "reason", why,
             "profile", c->plan.profile, NULL);
    c->failed_logged = 1;
    err = KCLD_ECREDS;
  }
  answer_waiters(c, err);
}

/* A fetch failed: keep the current set while it lasts, else fail. */
static void fetch_failed(struct kcld_credentials *c, int err, const char *why)
{
  if (err != KCLD_ECANCELED && cached_unexpired(c)) {
    c->refresh_failures++;
    kcld_log(KCLD_LOG_WARN,
             "credentials refresh failed; keeping the current set",
             "source", c->source, "reason", why, NULL);
    schedule_refresh(c);
    answer_waiters(c, 0);
    return;
  }
  if (c->have)
    c->refresh_failures++;
  fail_chain(c, err, c->plan.source ? c->plan.source : "chain", why);
}

static void run_free(struct run *r)
{
  kcld_cred_job_cancel(r->job);
  kcld_creds_clean_up(&r->cur);
  free(r->role);
  free(r);
}

/* The run ended (its job, if any, has answered). */
static void run_done(struct run *r, int err, const char *why)
{
  struct kcld_credentials *c = r->c;
  char full[1024];

  r->job = NULL;
  c->run = NULL;
  c->fetched_at = uv_now(c->loop);
  if (err == KCLD_ECANCELED)
    c->http_gone = 1;
  if (err == 0) {
    cache_set(c, &r->cur, r->role);
    r->role = NULL;
    c->refresh_failures = 0;
    c->failed_logged = 0;
    schedule_refresh(c);
    answer_waiters(c, 0);
  } else if (c->plan.kind >= KCLD_CRED_CONTAINER && c->plan.n_roles == 0 &&
             c->notes[0]) {
    /* The network providers are the chain's last steps: list all. */
    snprintf(full, sizeof(full), "%s; %s: %s", c->notes, c->plan.source, why);
    fetch_failed(c, err, full);
  } else {
    snprintf(full, sizeof(full), "%s: %s", c->plan.label, why);
    fetch_failed(c, err, full);
  }
  run_free(r);
}

/* The STS client, made at first use.  Returns NULL when it cannot be. */
static struct kcld_sts *sts_client(struct kcld_credentials *c, char *why,
                                   size_t why_len)
{
  struct kcld_aws_opts ao;
  char *region;
  int rc;

  if (c->sts)
    return c->sts;
  region = kcld_region_from_env(c->region, c->profile);
  if (!region && c->plan.region)
    region = strdup(c->plan.region);
  memset(&ao, 0, sizeof(ao));
  ao.loop = c->loop;
  ao.http = c->http;
  ao.region = region ? region : STS_FALLBACK_REGION;
  ao.profile = c->profile;
  rc = kcld_aws_new(&ao, &c->sts_aws);
  if (rc == 0)
    rc = kcld_sts_new(c->sts_aws, c->loop, &c->sts);
  free(region);
  if (rc != 0)
    snprintf(why, why_len, "cannot set up the STS client (%s)",
             kcld_strerror(rc));
  return c->sts;
}

static void run_step(struct run *r);

static void on_step(void *arg, int err, struct kcld_creds *creds,
                    const char *why)
{
  struct run *r = arg;
  r->job = NULL;
  if (err) {
    run_done(r, err, why);
    return;
  }
  kcld_creds_clean_up(&r->cur);
  r->cur = *creds;
  memset(creds, 0, sizeof(*creds));
  run_step(r);
}

/* Starts the next step: the base, a role, or the end. */
static void run_step(struct run *r)
{
  struct kcld_credentials *c = r->c;
  const struct kcld_cred_plan *p = &c->plan;
  char why[512] = "";
  struct kcld_sts *sts;
  int rc = 0;

  if (r->cur.access_key_id && r->hop == p->n_roles) {
    run_done(r, 0, "");
    return;
  }
  if (r->cur.access_key_id) { /* the next role, as the set so far */
    const struct kcld_cred_role *role = &p->roles[r->hop++];
    if (!(sts = sts_client(c, why, sizeof(why))))
      rc = KCLD_ECREDS;
    else
      rc = kcld_cred_assume_role_start(sts, role, &r->cur, on_step, r,
                                       &r->job, why, sizeof(why));
  } else {
    switch (p->kind) {
    case KCLD_CRED_STATIC:
      if ((rc = kcld_creds_copy(&r->cur, &p->creds)) == 0) {
        run_step(r);
        return;
      }
      snprintf(why, sizeof(why), "out of memory");
      break;
    case KCLD_CRED_WEB_IDENTITY:
      if (!(sts = sts_client(c, why, sizeof(why))))
        rc = KCLD_ECREDS;
      else
        rc = kcld_cred_web_identity_start(sts, p->token_file, &p->web_role,
                                          on_step, r, &r->job, why,
                                          sizeof(why));
      break;
    case KCLD_CRED_PROCESS:
      rc = kcld_cred_process_start(&c->env, p->command, on_step, r, &r->job,
                                   why, sizeof(why));
      break;
    case KCLD_CRED_SSO: {
      const struct kcld_cred_sso sso = {
        p->sso.session, p->sso.start_url, p->sso.region, p->sso.account_id,
        p->sso.role_name, p->sso.portal_url, p->sso.oidc_url};
      rc = kcld_cred_sso_start(&c->env, &sso, on_step, r, &r->job, why,
                               sizeof(why));
      break;
    }
    case KCLD_CRED_CONTAINER:
      rc = kcld_cred_container_start(&c->env, on_step, r, &r->job, why,
                                     sizeof(why));
      break;
    case KCLD_CRED_IMDS:
      rc = kcld_cred_imds_start(&c->env, &r->role, on_step, r, &r->job);
      if (rc)
        snprintf(why, sizeof(why), "out of memory");
      break;
    }
  }
  if (rc != 0)
    run_done(r, rc, why);
}

/* Starts a fetch of the plan (or fails the waiters). */
static void start_run(struct kcld_credentials *c)
{
  struct run *r;
  int network = c->plan.kind != KCLD_CRED_STATIC || c->plan.n_roles > 0;

  if (network && (!c->http || c->http_gone)) {
    fetch_failed(c, KCLD_ECREDS, c->http ? "the http client is closed"
                                         : "no http client to fetch with");
    return;
  }
  r = calloc(1, sizeof(*r));
  if (!r) {
    fetch_failed(c, KCLD_ENOMEM, "out of memory");
    return;
  }
  r->c = c;
  c->run = r;
  run_step(r);
}

static void on_refresh_timer(uv_timer_t *t)
{
  struct kcld_credentials *c = t->data;
  if (c->run || c->closing)
    return;
  kcld_log(KCLD_LOG_DEBUG, "refreshing credentials", "source", c->source,
           NULL);
  start_run(c);
}

/* Walks the chain once.  Returns 1 with the plan kept, else 0 after
 * failing the waiters. */
static int plan(struct kcld_credentials *c)
{
  const struct kcld_cred_chain_in in = {c->cfg_ak, c->cfg_sk, c->cfg_token,
                                        c->profile, c->http != NULL};
  int rc = kcld_cred_chain_resolve(&in, &c->plan, c->notes, sizeof(c->notes));
  if (rc == 1) {
    c->planned = 1;
    return 1;
  }
  fail_chain(c, rc == KCLD_ENOMEM ? KCLD_ENOMEM : KCLD_ECREDS, "chain",
             c->notes);
  kcld_cred_plan_clean_up(&c->plan);
  return 0;
}

/* Wipes and frees the copied options. */
static void free_settings(struct kcld_credentials *c)
{
  kcld_cred_wipe_free(c->cfg_ak);
  kcld_cred_wipe_free(c->cfg_sk);
  kcld_cred_wipe_free(c->cfg_token);
  free(c->profile);
  free(c->imds_endpoint);
  free(c->container_endpoint);
  free(c->region);
  c->cfg_ak = c->cfg_sk = c->cfg_token = NULL;
  c->profile = c->imds_endpoint = c->container_endpoint = c->region = NULL;
}

int kcld_credentials_new(const struct kcld_credentials_opts *opts,
                         struct kcld_credentials **out)
{
  struct kcld_credentials *c;
  int has_ak, has_sk, oom = 0;

  *out = NULL;
  if (!opts || !opts->loop || opts->process_timeout_ms < 0)
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
#define DUP(dst, src)                                                        \
  do {                                                                       \
    if ((src) && *(src) && !((dst) = strdup(src)))                           \
      oom = 1;                                                               \
  } while (0)
  if (has_ak) {
    DUP(c->cfg_ak, opts->access_key_id);
    DUP(c->cfg_sk, opts->secret_access_key);
    DUP(c->cfg_token, opts->session_token);
  }
  DUP(c->profile, opts->profile);
  DUP(c->imds_endpoint, opts->imds_endpoint);
  DUP(c->container_endpoint, opts->container_endpoint);
  DUP(c->region, opts->region);
#undef DUP
  if (oom) {
    free_settings(c);
    free(c);
    return KCLD_ENOMEM;
  }
  c->env.loop = c->loop;
  c->env.http = c->http;
  c->env.imds_endpoint = c->imds_endpoint;
  c->env.container_endpoint = c->container_endpoint;
  c->env.process_timeout_ms =
    opts->process_timeout_ms ? opts->process_timeout_ms : PROCESS_TIMEOUT_MS;
  {
    struct kcld_profile_files *files = NULL;
    if (kcld_profile_files_load(&files) == 0)
      kcld_cred_metadata_settings(
        &c->env, kcld_profile_find(files, KCLD_PROFILE,
                                   kcld_profile_selected(c->profile, NULL)));
    else
      kcld_cred_metadata_settings(&c->env, NULL);
    kcld_profile_files_free(files);
  }
  uv_timer_init(c->loop, &c->timer);
  c->timer.data = c;
  *out = c;
  return 0;
}

void kcld_credentials_get(struct kcld_credentials *c, kcld_credentials_cb cb,
                          void *arg)
{
  struct waiter *w;

  if (c->closing) {
    cb(KCLD_ECANCELED, NULL, arg);
    return;
  }
  if (cached_fresh(c)) {
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
  if (c->run)
    return;
  if (!c->planned && !plan(c))
    return;
  uv_timer_stop(&c->timer);
  start_run(c);
}

const char *kcld_credentials_source(const struct kcld_credentials *c)
{
  return c && c->have ? c->source : NULL;
}

void kcld_credentials_close(struct kcld_credentials *c)
{
  if (!c || c->closing)
    return;
  c->closing = 1;
  uv_timer_stop(&c->timer);
  if (c->run) {
    run_free(c->run);
    c->run = NULL;
  }
  answer_waiters(c, KCLD_ECANCELED);
  kcld_sts_close(c->sts);
  kcld_aws_close(c->sts_aws);
  c->sts = NULL;
  c->sts_aws = NULL;
  kcld_creds_clean_up(&c->cur);
  kcld_cred_plan_clean_up(&c->plan);
  c->have = 0;
  free_settings(c);
  free(c->role);
  c->role = NULL;
  uv_close((uv_handle_t *)&c->timer, on_closed);
}

/* ===================== Region ===================== */

char *kcld_region_from_env(const char *configured, const char *profile)
{
  struct kcld_profile_files *files = NULL;
  const char *r;
  char *out = NULL;

  if (configured && *configured)
    return strdup(configured);
  if ((r = kcld_cred_env("AWS_REGION")) ||
      (r = kcld_cred_env("AWS_DEFAULT_REGION")))
    return strdup(r);
  if (kcld_profile_files_load(&files) != 0)
    return NULL;
  r = kcld_profile_get_config(
    kcld_profile_find(files, KCLD_PROFILE,
                      kcld_profile_selected(profile, NULL)),
    "region");
  if (r)
    out = strdup(r);
  kcld_profile_files_free(files);
  return out;
}
