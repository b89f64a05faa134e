/* sts.h — AWS STS calls on the shared skeleton (Query protocol): the two
 * ways kcld assumes a role, and who the client's credentials are.
 *
 * AssumeRole is signed with the caller's source credentials (given per
 * call, not the client's provider); AssumeRoleWithWebIdentity is sent
 * unsigned, the token being the proof.  Requests go to the STS endpoint of
 * the AWS client (sts.{region}.{dnsSuffix}, AWS_ENDPOINT_URL_STS,
 * AWS_ENDPOINT_URL, the profile's; see call.h).
 *
 * Every call returns 0 and later calls its callback exactly once, or
 * returns a negative KCLD_E* code (KCLD_EINVAL, logged with the reason;
 * KCLD_ECANCELED after close; KCLD_ENOMEM) and never calls it.  A result
 * and its strings are valid only during the callback; the strings are
 * wiped after it.  Loop thread only. */
#ifndef KCLD_AWS_STS_H
#define KCLD_AWS_STS_H

#include <time.h>
#include <uv.h>

#include "aws/call.h"
#include "aws/credentials.h"
#include "aws/svc.h"

struct kcld_sts;

/* Creates an STS client over `aws` (borrowed; it must outlive this client).
 * Returns 0, KCLD_EINVAL or KCLD_ENOMEM. */
int kcld_sts_new(struct kcld_aws *aws, uv_loop_t *loop, struct kcld_sts **out);

/* Runs the callback of every pending call with KCLD_ECANCELED, now, and
 * frees the client; calls still in flight in the AWS client only free
 * their operation on the loop: run it afterwards.  Close this before the
 * AWS client.  NULL is ignored. */
void kcld_sts_close(struct kcld_sts *sts);

struct kcld_sts_role_req {
  const char *role_arn;           /* required */
  const char *session_name;       /* required: 2..64 of [A-Za-z0-9+=,.@_-] */
  const char *external_id;        /* AssumeRole only; NULL = none */
  long duration_s;                /* 0 = STS's default; else 900..43200 */
  const char *web_identity_token; /* AssumeRoleWithWebIdentity only */
};

struct kcld_sts_credentials {
  struct kcld_svc_status st;
  struct kcld_creds creds;        /* borrowed strings; expiration set */
  const char *assumed_role_arn;   /* AssumedRoleUser.Arn, or NULL */
};

typedef void (*kcld_sts_cb)(const struct kcld_sts_credentials *res,
                            void *arg);

/* AssumeRole as `source`.  AccessDenied and the like end with KCLD_EAWS and
 * st.type set. */
int kcld_sts_assume_role(struct kcld_sts *sts,
                         const struct kcld_sts_role_req *req,
                         const struct kcld_creds *source, kcld_sts_cb cb,
                         void *arg);

/* AssumeRoleWithWebIdentity, unsigned. */
int kcld_sts_assume_role_with_web_identity(struct kcld_sts *sts,
                                           const struct kcld_sts_role_req *req,
                                           kcld_sts_cb cb, void *arg);

struct kcld_sts_identity {
  struct kcld_svc_status st;
  const char *account;            /* "123456789012"; NULL on error */
  const char *arn;                /* the caller's ARN */
  const char *user_id;
};

typedef void (*kcld_sts_identity_cb)(const struct kcld_sts_identity *res,
                                     void *arg);

/* GetCallerIdentity, signed with the AWS client's own credentials (the
 * account of the identity kcld runs as). */
int kcld_sts_get_caller_identity(struct kcld_sts *sts, kcld_sts_identity_cb cb,
                                 void *arg);

#endif
