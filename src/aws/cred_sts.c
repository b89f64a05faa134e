/* cred_sts.c — credential fetches through STS: web identity (the token
 * file read again on every fetch) and AssumeRole with source credentials,
 * as jobs of the credential provider. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "aws/cred_fetch.h"
#include "aws/profile.h"
#include "aws/sts.h"
#include "err.h"

struct sts_job {
  struct kcld_cred_job job;
  kcld_cred_fetch_cb cb;
  void *arg;
  int cancelled;
  char role_arn[256];
};

static void job_cancel(struct kcld_cred_job *job)
{
  ((struct sts_job *)job)->cancelled = 1; /* freed when STS answers */
}

static void on_sts(const struct kcld_sts_credentials *res, void *arg)
{
  struct sts_job *j = arg;
  struct kcld_creds c;
  char why[700];
  int rc;

  if (j->cancelled) {
    free(j);
    return;
  }
  if (res->st.err) {
    snprintf(why, sizeof(why), "%s", res->st.message);
    j->cb(j->arg, res->st.err == KCLD_ECANCELED ? KCLD_ECANCELED : KCLD_ECREDS,
          NULL, why);
    free(j);
    return;
  }
  rc = kcld_cred_set(&c, res->creds.access_key_id,
                     res->creds.secret_access_key, res->creds.session_token,
                     res->creds.expiration);
  j->cb(j->arg, rc, rc == 0 ? &c : NULL, rc == 0 ? "" : "out of memory");
  free(j);
}

static struct sts_job *job_new(const struct kcld_cred_role *role,
                               kcld_cred_fetch_cb cb, void *arg)
{
  struct sts_job *j = calloc(1, sizeof(*j));
  if (!j)
    return NULL;
  j->job.cancel = job_cancel;
  j->cb = cb;
  j->arg = arg;
  snprintf(j->role_arn, sizeof(j->role_arn), "%s", role->role_arn);
  return j;
}

/* The request for `role`; the session name is the role's, else
 * kcld-<epoch seconds> (written into `name`). */
static void role_req(struct kcld_sts_role_req *req,
                     const struct kcld_cred_role *role, char *name,
                     size_t name_len)
{
  memset(req, 0, sizeof(*req));
  req->role_arn = role->role_arn;
  req->session_name = role->session_name;
  if (!req->session_name || !*req->session_name) {
    snprintf(name, name_len, "kcld-%lld", (long long)time(NULL));
    req->session_name = name;
  }
  req->external_id = role->external_id;
  req->duration_s = role->duration_s;
}

/* Reports a call that could not start; frees the job. */
static int start_failed(struct sts_job *j, int rc, const char *what,
                        char *why, size_t why_len)
{
  snprintf(why, why_len, "%s %s: cannot send (%s)", what, j->role_arn,
           kcld_strerror(rc));
  free(j);
  return rc == KCLD_ENOMEM ? rc : KCLD_ECREDS;
}

int kcld_cred_web_identity_start(struct kcld_sts *sts, const char *token_file,
                                 const struct kcld_cred_role *role,
                                 kcld_cred_fetch_cb cb, void *arg,
                                 struct kcld_cred_job **out, char *why,
                                 size_t why_len)
{
  struct kcld_sts_role_req req;
  struct sts_job *j;
  char name[32], *token = NULL;
  size_t len = 0;
  int rc;

  rc = kcld_profile_read_file(token_file, &token, &len);
  if (rc != 0) {
    snprintf(why, why_len, "cannot read the web identity token file %s (%s)",
             token_file, kcld_strerror(rc));
    return rc == KCLD_ENOMEM ? rc : KCLD_ECREDS;
  }
  while (len > 0 && (token[len - 1] == '\n' || token[len - 1] == '\r' ||
                     token[len - 1] == ' ' || token[len - 1] == '\t'))
    token[--len] = '\0';
  if (len == 0) {
    snprintf(why, why_len, "the web identity token file %s is empty",
             token_file);
    free(token);
    return KCLD_ECREDS;
  }
  j = job_new(role, cb, arg);
  if (!j) {
    OPENSSL_cleanse(token, len);
    free(token);
    snprintf(why, why_len, "out of memory");
    return KCLD_ENOMEM;
  }
  role_req(&req, role, name, sizeof(name));
  req.external_id = NULL; /* AssumeRole only */
  req.web_identity_token = token;
  rc = kcld_sts_assume_role_with_web_identity(sts, &req, on_sts, j);
  OPENSSL_cleanse(token, len);
  free(token);
  if (rc != 0)
    return start_failed(j, rc, "AssumeRoleWithWebIdentity", why, why_len);
  *out = &j->job;
  return 0;
}

int kcld_cred_assume_role_start(struct kcld_sts *sts,
                                const struct kcld_cred_role *role,
                                const struct kcld_creds *source,
                                kcld_cred_fetch_cb cb, void *arg,
                                struct kcld_cred_job **out, char *why,
                                size_t why_len)
{
  struct kcld_sts_role_req req;
  struct sts_job *j = job_new(role, cb, arg);
  char name[32];
  int rc;

  if (!j) {
    snprintf(why, why_len, "out of memory");
    return KCLD_ENOMEM;
  }
  role_req(&req, role, name, sizeof(name));
  rc = kcld_sts_assume_role(sts, &req, source, on_sts, j);
  if (rc != 0)
    return start_failed(j, rc, "AssumeRole", why, why_len);
  *out = &j->job;
  return 0;
}
