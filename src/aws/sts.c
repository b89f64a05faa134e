/* sts.c — STS AssumeRole and AssumeRoleWithWebIdentity: requests built,
 * the Credentials of the answer mapped.  The skeleton (svc.c) runs the
 * calls, the call layer speaks the Query protocol. */
#include "aws/sts.h"

#include <string.h>

#include "aws/cred_fetch.h"
#include "err.h"

struct kcld_sts {
  struct kcld_svc svc;
};

int kcld_sts_new(struct kcld_aws *aws, uv_loop_t *loop, struct kcld_sts **out)
{
  return kcld_svc_new(sizeof(**out), aws, loop, KCLD_AWS_STS, (void **)out);
}

void kcld_sts_close(struct kcld_sts *sts)
{
  if (sts)
    kcld_svc_close(&sts->svc);
}

KCLD_SVC_SHAPE(s_creds_shape, struct kcld_sts_credentials, kcld_sts_cb);

/* <Op>Result.Credentials of the answer into the result. */
static int creds_map(struct kcld_svc_op *op, const struct kcld_aws_result *res,
                     void *result, const char *result_key)
{
  struct kcld_sts_credentials *r = result;
  json_t *out = json_object_get(res->body, result_key);
  json_t *c = json_object_get(out, "Credentials");
  const char *exp = kcld_svc_str(c, "Expiration");

  r->creds.access_key_id = (char *)kcld_svc_str(c, "AccessKeyId");
  r->creds.secret_access_key = (char *)kcld_svc_str(c, "SecretAccessKey");
  r->creds.session_token = (char *)kcld_svc_str(c, "SessionToken");
  r->creds.expiration = exp ? kcld_cred_parse_time(exp) : -1;
  r->assumed_role_arn =
    kcld_svc_str(json_object_get(out, "AssumedRoleUser"), "Arn");
  if (!r->creds.access_key_id || !*r->creds.access_key_id ||
      !r->creds.secret_access_key || !*r->creds.secret_access_key ||
      !r->creds.session_token || r->creds.expiration <= 0) {
    kcld_svc_status_set(op, &r->st, KCLD_EPARSE, NULL,
                        "no %s.Credentials with AccessKeyId, "
                        "SecretAccessKey, SessionToken and Expiration in "
                        "the answer", result_key);
    return KCLD_EPARSE;
  }
  return 0;
}

static int assume_map(struct kcld_svc_op *op, const struct kcld_aws_result *res,
                      void *result)
{
  return creds_map(op, res, result, "AssumeRoleResult");
}

static int web_map(struct kcld_svc_op *op, const struct kcld_aws_result *res,
                   void *result)
{
  return creds_map(op, res, result, "AssumeRoleWithWebIdentityResult");
}

static const struct kcld_svc_spec s_assume = {
  "AssumeRole", &s_creds_shape, assume_map, NULL, NULL};
static const struct kcld_svc_spec s_web = {
  "AssumeRoleWithWebIdentity", &s_creds_shape, web_map, NULL, NULL};

KCLD_SVC_SHAPE(s_identity_shape, struct kcld_sts_identity,
               kcld_sts_identity_cb);

static int identity_map(struct kcld_svc_op *op,
                        const struct kcld_aws_result *res, void *result)
{
  struct kcld_sts_identity *r = result;
  json_t *out = json_object_get(res->body, "GetCallerIdentityResult");
  r->account = kcld_svc_str(out, "Account");
  r->arn = kcld_svc_str(out, "Arn");
  r->user_id = kcld_svc_str(out, "UserId");
  if (!r->account || !r->arn) {
    kcld_svc_status_set(op, &r->st, KCLD_EPARSE, NULL,
                        "no GetCallerIdentityResult with Account and Arn in "
                        "the answer");
    return KCLD_EPARSE;
  }
  return 0;
}

static const struct kcld_svc_spec s_identity = {
  "GetCallerIdentity", &s_identity_shape, identity_map, NULL, NULL};

/* Why `req` cannot be sent, or NULL. */
static const char *check(const struct kcld_sts_role_req *req, int web)
{
  size_t n;
  if (!req->role_arn || strncmp(req->role_arn, "arn:", 4) != 0)
    return "role ARN is not an ARN";
  n = req->session_name ? strlen(req->session_name) : 0;
  if (n < 2 || n > 64 ||
      strspn(req->session_name, "abcdefghijklmnopqrstuvwxyz"
                                "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                                "+=,.@_-") != n)
    return "role session name not 2..64 of [A-Za-z0-9+=,.@_-]";
  if (req->duration_s != 0 &&
      (req->duration_s < 900 || req->duration_s > 43200))
    return "duration not in 900..43200 seconds";
  if (web && (!req->web_identity_token || !*req->web_identity_token))
    return "no web identity token";
  return NULL;
}

/* The request's parameters (the token is a secret: the call layer wipes
 * its copy of the body). */
static json_t *role_request(const struct kcld_sts_role_req *req, int web)
{
  json_t *j = json_pack("{s:s, s:s}", "RoleArn", req->role_arn,
                        "RoleSessionName", req->session_name);
  int rc = !j;
  if (!rc && req->duration_s)
    rc = kcld_svc_set_int(j, "DurationSeconds", req->duration_s);
  if (!rc && !web && req->external_id)
    rc = kcld_svc_set_str(j, "ExternalId", req->external_id);
  if (!rc && web)
    rc = kcld_svc_set_str(j, "WebIdentityToken", req->web_identity_token);
  return kcld_svc_req(j, rc);
}

int kcld_sts_assume_role(struct kcld_sts *sts,
                         const struct kcld_sts_role_req *req,
                         const struct kcld_creds *source, kcld_sts_cb cb,
                         void *arg)
{
  struct kcld_aws_call_opts o = {0};
  const char *why;
  if (!sts || !req || !cb)
    return KCLD_EINVAL;
  why = check(req, 0);
  if (!why && !source)
    why = "no source credentials";
  if (why)
    return kcld_svc_bad_arg(&sts->svc, s_assume.operation, why);
  o.creds = source;
  return kcld_svc_send(&sts->svc, &s_assume, role_request(req, 0), &o,
                       (kcld_svc_fn)cb, arg, "role %s", req->role_arn);
}

int kcld_sts_assume_role_with_web_identity(struct kcld_sts *sts,
                                           const struct kcld_sts_role_req *req,
                                           kcld_sts_cb cb, void *arg)
{
  struct kcld_aws_call_opts o = {0};
  const char *why;
  if (!sts || !req || !cb)
    return KCLD_EINVAL;
  if ((why = check(req, 1)) != NULL)
    return kcld_svc_bad_arg(&sts->svc, s_web.operation, why);
  o.anonymous = 1;
  return kcld_svc_send(&sts->svc, &s_web, role_request(req, 1), &o,
                       (kcld_svc_fn)cb, arg, "role %s", req->role_arn);
}

int kcld_sts_get_caller_identity(struct kcld_sts *sts, kcld_sts_identity_cb cb,
                                 void *arg)
{
  if (!sts || !cb)
    return KCLD_EINVAL;
  return kcld_svc_send(&sts->svc, &s_identity, json_object(), NULL,
                       (kcld_svc_fn)cb, arg, "%s", "");
}
