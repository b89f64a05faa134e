/* cred_chain.c — the credential provider chain without the network: from
 * the config keys, the environment and the shared files to a plan (see
 * cred_chain.h for the order and the rules). */
#include "aws/cred_chain.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "aws/endpoint.h"
#include "aws/profile.h"
#include "err.h"
#include "log.h"

#define MAX_HOPS 16 /* profiles in one source_profile chain */

/* The walk's state. */
struct walk {
  const struct kcld_cred_chain_in *in;
  struct kcld_profile_files *files;
  struct kcld_cred_plan *plan;
  char *why;
  size_t why_len;
  const char *visited[MAX_HOPS];
  int n_visited;
};

/* Appends "; text" (or "text" first) to the reasons. */
static void note(struct walk *w, const char *fmt, ...)
  __attribute__((format(printf, 2, 3)));

static void note(struct walk *w, const char *fmt, ...)
{
  size_t n = strlen(w->why);
  va_list ap;
  if (n > 0 && n + 2 < w->why_len) {
    memcpy(w->why + n, "; ", 3);
    n += 2;
  }
  va_start(ap, fmt);
  vsnprintf(w->why + n, w->why_len - n, fmt, ap);
  va_end(ap);
}

/* Sets the reason of a hard error (replacing the notes); KCLD_ECREDS. */
static int refuse(struct walk *w, const char *fmt, ...)
  __attribute__((format(printf, 2, 3)));

static int refuse(struct walk *w, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(w->why, w->why_len, fmt, ap);
  va_end(ap);
  return KCLD_ECREDS;
}

static int dup_to(char **dst, const char *src)
{
  *dst = src ? strdup(src) : NULL;
  return src && !*dst ? KCLD_ENOMEM : 0;
}

static int set_label(struct kcld_cred_plan *p, const char *source,
                     const char *fmt, const char *arg)
{
  p->source = source;
  free(p->label);
  p->label = NULL;
  return asprintf(&p->label, fmt, arg) < 0 ? KCLD_ENOMEM : 0;
}

static void role_clean_up(struct kcld_cred_role *r)
{
  free(r->role_arn);
  free(r->session_name);
  kcld_cred_wipe_free(r->external_id);
  free(r->profile);
  memset(r, 0, sizeof(*r));
}

void kcld_cred_plan_clean_up(struct kcld_cred_plan *p)
{
  free(p->label);
  free(p->profile);
  kcld_creds_clean_up(&p->creds);
  free(p->token_file);
  role_clean_up(&p->web_role);
  free(p->command);
  free(p->sso.session);
  free(p->sso.start_url);
  free(p->sso.region);
  free(p->sso.account_id);
  free(p->sso.role_name);
  free(p->sso.portal_url);
  free(p->sso.oidc_url);
  for (size_t i = 0; i < p->n_roles; i++)
    role_clean_up(&p->roles[i]);
  free(p->roles);
  free(p->region);
  memset(p, 0, sizeof(*p));
}

/* ======== Environment ======== */

static int from_env_keys(struct walk *w, int quiet)
{
  const char *ak = kcld_cred_env("AWS_ACCESS_KEY_ID");
  const char *sk = kcld_cred_env("AWS_SECRET_ACCESS_KEY");
  if (!ak && !sk) { /* the names the first Java SDK read */
    ak = kcld_cred_env("AWS_ACCESS_KEY");
    sk = kcld_cred_env("AWS_SECRET_KEY");
  }
  if (ak && sk) {
    w->plan->kind = KCLD_CRED_STATIC;
    return kcld_cred_set(&w->plan->creds, ak, sk,
                         kcld_cred_env("AWS_SESSION_TOKEN"), 0) == 0
             ? 1
             : KCLD_ENOMEM;
  }
  if (ak || sk) {
    if (!quiet)
      kcld_log(KCLD_LOG_WARN, "environment has only one of AWS_ACCESS_KEY_ID "
               "and AWS_SECRET_ACCESS_KEY; ignoring it", NULL);
    note(w, "env: only one of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
         "is set");
  } else {
    note(w, "env: AWS_ACCESS_KEY_ID not set");
  }
  return 0;
}

static int from_env_web_identity(struct walk *w)
{
  const char *file = kcld_cred_env("AWS_WEB_IDENTITY_TOKEN_FILE");
  const char *arn = kcld_cred_env("AWS_ROLE_ARN");
  struct kcld_cred_plan *p = w->plan;

  if (!file && !arn) {
    note(w, "web identity: AWS_WEB_IDENTITY_TOKEN_FILE not set");
    return 0;
  }
  if (!file || !arn)
    return refuse(w, "web identity: %s is set but %s is not",
                  file ? "AWS_WEB_IDENTITY_TOKEN_FILE" : "AWS_ROLE_ARN",
                  file ? "AWS_ROLE_ARN" : "AWS_WEB_IDENTITY_TOKEN_FILE");
  p->kind = KCLD_CRED_WEB_IDENTITY;
  if (set_label(p, "web-identity", "web identity (%s)", "environment") ||
      dup_to(&p->token_file, file) || dup_to(&p->web_role.role_arn, arn) ||
      dup_to(&p->web_role.session_name,
             kcld_cred_env("AWS_ROLE_SESSION_NAME")))
    return KCLD_ENOMEM;
  return 1;
}

/* ======== Profiles ======== */

static const struct kcld_profile *find(struct walk *w, const char *name)
{
  return kcld_profile_find(w->files, KCLD_PROFILE, name);
}

static int has_static(const struct kcld_profile *p)
{
  return kcld_profile_get(p, "aws_access_key_id") &&
         kcld_profile_get(p, "aws_secret_access_key");
}

static int static_from(struct walk *w, const struct kcld_profile *p)
{
  w->plan->kind = KCLD_CRED_STATIC;
  return kcld_cred_set(&w->plan->creds,
                       kcld_profile_get(p, "aws_access_key_id"),
                       kcld_profile_get(p, "aws_secret_access_key"),
                       kcld_profile_get(p, "aws_session_token"), 0) == 0
           ? 1
           : KCLD_ENOMEM;
}

/* The role of a profile with role_arn.  Returns 0 or KCLD_E*. */
static int role_from(struct walk *w, const struct kcld_profile *p,
                     struct kcld_cred_role *r)
{
  const char *name = kcld_profile_name(p);
  const char *d = kcld_profile_get(p, "duration_seconds");
  memset(r, 0, sizeof(*r));
  if (d) {
    char *end;
    errno = 0;
    r->duration_s = strtol(d, &end, 10);
    if (errno || *end || r->duration_s < 900 || r->duration_s > 43200)
      return refuse(w, "profile %s: duration_seconds %s is not 900..43200",
                    name, d);
  }
  if (strncmp(kcld_profile_get(p, "role_arn"), "arn:", 4) != 0)
    return refuse(w, "profile %s: role_arn is not an ARN", name);
  if (dup_to(&r->role_arn, kcld_profile_get(p, "role_arn")) ||
      dup_to(&r->session_name, kcld_profile_get(p, "role_session_name")) ||
      dup_to(&r->external_id, kcld_profile_get(p, "external_id")) ||
      dup_to(&r->profile, name)) {
    role_clean_up(r);
    return KCLD_ENOMEM;
  }
  return 0;
}

/* The base of a role from credential_source. */
static int credential_source(struct walk *w, const char *name, const char *cs)
{
  struct kcld_cred_plan *p = w->plan;
  char scratch[8] = "";
  if (strcmp(cs, "Environment") == 0) {
    char *keep = w->why;
    size_t keep_len = w->why_len;
    int rc;
    w->why = scratch; /* the notes of this look-up are not wanted */
    w->why_len = sizeof(scratch);
    rc = from_env_keys(w, 1);
    w->why = keep;
    w->why_len = keep_len;
    if (rc == 0)
      return refuse(w, "profile %s: credential_source Environment, but "
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not "
                    "both set", name);
    return rc;
  }
  if (strcmp(cs, "Ec2InstanceMetadata") == 0) {
    if (kcld_profile_bool(getenv("AWS_EC2_METADATA_DISABLED")) == 1)
      return refuse(w, "profile %s: credential_source Ec2InstanceMetadata, "
                    "but AWS_EC2_METADATA_DISABLED is true", name);
    if (!w->in->network)
      return refuse(w, "profile %s: credential_source Ec2InstanceMetadata "
                    "needs the network", name);
    p->kind = KCLD_CRED_IMDS;
    return 1;
  }
  if (strcmp(cs, "EcsContainer") == 0) {
    if (!kcld_cred_env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") &&
        !kcld_cred_env("AWS_CONTAINER_CREDENTIALS_FULL_URI"))
      return refuse(w, "profile %s: credential_source EcsContainer, but "
                    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI and _FULL_URI "
                    "are not set", name);
    if (!w->in->network)
      return refuse(w, "profile %s: credential_source EcsContainer needs "
                    "the network", name);
    p->kind = KCLD_CRED_CONTAINER;
    return 1;
  }
  return refuse(w, "profile %s: credential_source %s is not Environment, "
                "Ec2InstanceMetadata or EcsContainer", name, cs);
}

static int sso_from(struct walk *w, const struct kcld_profile *p)
{
  struct kcld_cred_plan *pl = w->plan;
  const char *name = kcld_profile_name(p);
  const char *session = kcld_profile_get(p, "sso_session");
  const struct kcld_profile *s = NULL, *where = p;
  const char *region, *url;
  char buf[256], *conf;
  struct kcld_endpoint_spec portal = {"portal.sso", 0, 0}, oidc = {"oidc", 0, 0};

  if (session) {
    s = kcld_profile_find(w->files, KCLD_PROFILE_SSO_SESSION, session);
    if (!s)
      return refuse(w, "profile %s: sso_session %s has no [sso-session %s] "
                    "section", name, session, session);
    where = s;
  }
  region = kcld_profile_get(where, "sso_region");
  url = kcld_profile_get(where, "sso_start_url");
  if (!region || !url)
    return refuse(w, "profile %s: %s lacks sso_region or sso_start_url", name,
                  session ? "the sso-session section" : "the profile");
  if (!kcld_profile_get(p, "sso_account_id") ||
      !kcld_profile_get(p, "sso_role_name"))
    return refuse(w, "profile %s: SSO needs sso_account_id and "
                  "sso_role_name", name);
  pl->kind = KCLD_CRED_SSO;
  if (dup_to(&pl->sso.session, session) ||
      dup_to(&pl->sso.start_url, url) || dup_to(&pl->sso.region, region) ||
      dup_to(&pl->sso.account_id, kcld_profile_get(p, "sso_account_id")) ||
      dup_to(&pl->sso.role_name, kcld_profile_get(p, "sso_role_name")))
    return KCLD_ENOMEM;
  conf = kcld_endpoint_configured("SSO", "sso", w->files, p);
  if (!conf && kcld_endpoint_default(&portal, region, 0, 0, buf,
                                     sizeof(buf)) == 0)
    conf = strdup(buf);
  pl->sso.portal_url = conf;
  conf = kcld_endpoint_configured("SSO_OIDC", "sso_oidc", w->files, p);
  if (!conf && kcld_endpoint_default(&oidc, region, 0, 0, buf,
                                     sizeof(buf)) == 0)
    conf = strdup(buf);
  pl->sso.oidc_url = conf;
  return pl->sso.portal_url && pl->sso.oidc_url ? 1 : KCLD_ENOMEM;
}

static int profile_plan(struct walk *w, const char *name);

/* The base of a role from its source profile (static keys win there). */
static int source_profile(struct walk *w, const char *name, const char *src)
{
  const struct kcld_profile *sp = find(w, src);
  int rc;
  for (int i = 0; i < w->n_visited; i++) {
    if (strcmp(w->visited[i], src) != 0)
      continue;
    if (strcmp(src, name) == 0 && has_static(sp))
      return static_from(w, sp); /* a profile that is its own source */
    return refuse(w, "profile %s: the source_profile chain loops back to "
                  "profile %s", name, src);
  }
  if (!sp)
    return refuse(w, "profile %s: source_profile %s is not in the shared "
                  "files", name, src);
  if (has_static(sp))
    return static_from(w, sp);
  rc = profile_plan(w, src);
  if (rc == 0)
    return refuse(w, "profile %s: source_profile %s has no credentials",
                  name, src);
  return rc;
}

/* A profile with role_arn: its base, then its role appended. */
static int role_plan(struct walk *w, const struct kcld_profile *p)
{
  struct kcld_cred_plan *pl = w->plan;
  const char *name = kcld_profile_name(p);
  const char *src = kcld_profile_get(p, "source_profile");
  const char *cs = kcld_profile_get(p, "credential_source");
  const char *wif = kcld_profile_get(p, "web_identity_token_file");
  struct kcld_cred_role r, *grown;
  int rc;

  if (src && cs)
    return refuse(w, "profile %s: both source_profile and "
                  "credential_source are set", name);
  if (!src && !cs && !wif)
    return refuse(w, "profile %s: role_arn needs source_profile, "
                  "credential_source or web_identity_token_file", name);
  if ((rc = role_from(w, p, &r)) != 0)
    return rc;
  if (!src && !cs) {
    pl->kind = KCLD_CRED_WEB_IDENTITY;
    pl->web_role = r;
    return dup_to(&pl->token_file, wif) ? KCLD_ENOMEM : 1;
  }
  rc = cs ? credential_source(w, name, cs) : source_profile(w, name, src);
  if (rc != 1) {
    role_clean_up(&r);
    return rc;
  }
  grown = realloc(pl->roles, (pl->n_roles + 1) * sizeof(*grown));
  if (!grown) {
    role_clean_up(&r);
    return KCLD_ENOMEM;
  }
  pl->roles = grown;
  pl->roles[pl->n_roles++] = r;
  return 1;
}

/* Plans profile `name` (which exists).  Returns 1, 0 when it holds no
 * credential settings at all, KCLD_ECREDS or KCLD_ENOMEM. */
static int profile_plan(struct walk *w, const char *name)
{
  const struct kcld_profile *p = find(w, name);
  const char *ak, *sk, *cmd;

  if (w->n_visited == MAX_HOPS)
    return refuse(w, "profile %s: more than %d profiles in the "
                  "source_profile chain", name, MAX_HOPS);
  w->visited[w->n_visited++] = kcld_profile_name(p);
  if (kcld_profile_get(p, "role_arn"))
    return role_plan(w, p);
  ak = kcld_profile_get(p, "aws_access_key_id");
  sk = kcld_profile_get(p, "aws_secret_access_key");
  if (ak && sk)
    return static_from(w, p);
  if (ak || sk)
    return refuse(w, "profile %s: has only one of aws_access_key_id and "
                  "aws_secret_access_key", name);
  if ((cmd = kcld_profile_get(p, "credential_process"))) {
    w->plan->kind = KCLD_CRED_PROCESS;
    return dup_to(&w->plan->command, cmd) ? KCLD_ENOMEM : 1;
  }
  if (kcld_profile_get(p, "sso_session") ||
      kcld_profile_get(p, "sso_start_url"))
    return sso_from(w, p);
  if (kcld_profile_get(p, "web_identity_token_file"))
    return refuse(w, "profile %s: web_identity_token_file needs role_arn",
                  name);
  return 0;
}

/* The source and label of a profile's plan. */
static int profile_label(struct kcld_cred_plan *p, const char *name)
{
  static const char *const sources[] = {
    [KCLD_CRED_STATIC] = "profile", [KCLD_CRED_WEB_IDENTITY] = "web-identity",
    [KCLD_CRED_PROCESS] = "process", [KCLD_CRED_SSO] = "sso",
    [KCLD_CRED_CONTAINER] = "container", [KCLD_CRED_IMDS] = "imds"};
  return set_label(p, p->n_roles ? "assume-role" : sources[p->kind],
                   "profile %s", name);
}

static int from_profile(struct walk *w)
{
  int explicit_profile;
  const char *name = kcld_profile_selected(w->in->profile, &explicit_profile);
  const struct kcld_profile *p;
  int rc;

  if ((rc = kcld_profile_files_load(&w->files)) != 0 ||
      (rc = dup_to(&w->plan->profile, name)) != 0)
    return rc;
  p = find(w, name);
  if (!p) {
    if (explicit_profile)
      return refuse(w, "profile %s: not in the shared files (%s, %s)", name,
                    getenv("AWS_CONFIG_FILE") ? "AWS_CONFIG_FILE"
                                              : "~/.aws/config",
                    getenv("AWS_SHARED_CREDENTIALS_FILE")
                      ? "AWS_SHARED_CREDENTIALS_FILE"
                      : "~/.aws/credentials");
    note(w, "profile %s: not in the shared files", name);
    return 0;
  }
  rc = profile_plan(w, name);
  if (rc == 0) {
    if (explicit_profile)
      return refuse(w, "profile %s: no credentials in it (no "
                    "aws_access_key_id, role_arn, credential_process or "
                    "sso_session)", name);
    note(w, "profile %s: no credentials in it", name);
    return 0;
  }
  if (rc == 1 &&
      (profile_label(w->plan, name) ||
       dup_to(&w->plan->region, kcld_profile_get_config(p, "region"))))
    return KCLD_ENOMEM;
  return rc;
}

/* ======== The chain ======== */

static int from_network(struct walk *w)
{
  struct kcld_cred_plan *p = w->plan;
  if (kcld_cred_env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") ||
      kcld_cred_env("AWS_CONTAINER_CREDENTIALS_FULL_URI")) {
    if (!w->in->network) {
      note(w, "container: no http client");
      return 0;
    }
    p->kind = KCLD_CRED_CONTAINER;
    return set_label(p, "container", "%s", "container") ? KCLD_ENOMEM : 1;
  }
  note(w, "container: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI and _FULL_URI "
       "not set");
  if (kcld_profile_bool(getenv("AWS_EC2_METADATA_DISABLED")) == 1) {
    note(w, "imds: disabled by AWS_EC2_METADATA_DISABLED");
    return 0;
  }
  if (!w->in->network) {
    note(w, "imds: no http client");
    return 0;
  }
  p->kind = KCLD_CRED_IMDS;
  return set_label(p, "imds", "%s", "instance metadata") ? KCLD_ENOMEM : 1;
}

int kcld_cred_chain_resolve(const struct kcld_cred_chain_in *in,
                            struct kcld_cred_plan *plan, char *why,
                            size_t why_len)
{
  struct walk w = {.in = in, .plan = plan, .why = why, .why_len = why_len};
  int rc;

  memset(plan, 0, sizeof(*plan));
  why[0] = '\0';

  if (in->access_key_id && *in->access_key_id && in->secret_access_key &&
      *in->secret_access_key) {
    plan->kind = KCLD_CRED_STATIC;
    rc = kcld_cred_set(&plan->creds, in->access_key_id,
                       in->secret_access_key, in->session_token, 0) ||
             set_label(plan, "config", "%s", "config")
           ? KCLD_ENOMEM
           : 1;
    goto done;
  }
  note(&w, "config: no keys");
  if (in->profile && *in->profile) {
    /* A profile named in the config is what the user asked for: the
     * environment's keys (still usable as its credential_source) must not
     * stand in for it, as with an explicit profile in the SDKs. */
    note(&w, "env: not used, credentials.profile names the profile");
  } else if ((rc = from_env_keys(&w, 0)) != 0) {
    if (rc == 1 && set_label(plan, "env", "%s", "environment"))
      rc = KCLD_ENOMEM;
    goto done;
  }
  if ((rc = from_env_web_identity(&w)) != 0 || (rc = from_profile(&w)) != 0)
    goto done;
  rc = from_network(&w);

done:
  kcld_profile_files_free(w.files);
  return rc;
}
