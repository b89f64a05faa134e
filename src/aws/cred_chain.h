/* cred_chain.h — which credentials to use: the SDKs' provider chain walked
 * without the network, into a plan that credentials.c then fetches.
 *
 * In order, the first that applies wins:
 *  1. the explicit config keys;
 *  2. the environment: AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+
 *     AWS_SESSION_TOKEN), else the old AWS_ACCESS_KEY + AWS_SECRET_KEY;
 *     skipped when the config names a profile (credentials.profile), as an
 *     explicit profile does in the SDKs (AWS_PROFILE does not);
 *  3. web identity from the environment: AWS_WEB_IDENTITY_TOKEN_FILE +
 *     AWS_ROLE_ARN (+ AWS_ROLE_SESSION_NAME);
 *  4. the profile (credentials.profile, else AWS_PROFILE, else default) in
 *     the shared files: role_arn with source_profile (a chain of profiles;
 *     a loop is refused, except a profile that is its own source and has
 *     static keys) or credential_source (Environment, Ec2InstanceMetadata,
 *     EcsContainer) or web_identity_token_file, with external_id,
 *     role_session_name and duration_seconds; static keys;
 *     credential_process; SSO (sso_session and its [sso-session] section,
 *     or the legacy sso_start_url and sso_region; sso_account_id,
 *     sso_role_name).  A source profile with static keys gives them, as in
 *     the SDKs, even when it has a role_arn of its own;
 *  5. container credentials (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or
 *     _FULL_URI);
 *  6. EC2 instance metadata, unless AWS_EC2_METADATA_DISABLED is true.
 *
 * A setting kcld cannot use ends the walk with an error that names it and
 * says why (a profile with half a key pair, a role without a source, a
 * source profile that is missing, a loop, an unknown credential_source, an
 * explicitly chosen profile that is missing or has no credentials): never
 * another identity instead.  When nothing applies, the reasons of every
 * step are listed. */
#ifndef KCLD_AWS_CRED_CHAIN_H
#define KCLD_AWS_CRED_CHAIN_H

#include <stddef.h>

#include "aws/cred_fetch.h"
#include "aws/credentials.h"

enum kcld_cred_kind {
  KCLD_CRED_STATIC,
  KCLD_CRED_WEB_IDENTITY,
  KCLD_CRED_PROCESS,
  KCLD_CRED_SSO,
  KCLD_CRED_CONTAINER,
  KCLD_CRED_IMDS
};

/* What to fetch: a base set, then each role assumed with the set before. */
struct kcld_cred_plan {
  const char *source;          /* "config", "env", "web-identity",
                                  "profile", "process", "sso",
                                  "assume-role", "container", "imds" */
  char *label;                 /* "profile dev", "environment": for logs */
  char *profile;               /* the profile the walk looked at (also on
                                  failure), or NULL before that step */
  enum kcld_cred_kind kind;
  struct kcld_creds creds;     /* STATIC */
  char *token_file;            /* WEB_IDENTITY, with web_role */
  struct kcld_cred_role web_role;
  char *command;               /* PROCESS */
  struct {
    char *session, *start_url, *region, *account_id, *role_name;
    char *portal_url, *oidc_url;
  } sso;                       /* SSO */
  struct kcld_cred_role *roles; /* assumed in order after the base */
  size_t n_roles;
  char *region;                /* the profile's region, for STS; or NULL */
};

struct kcld_cred_chain_in {
  const char *access_key_id;   /* explicit config; NULL when not set */
  const char *secret_access_key;
  const char *session_token;
  const char *profile;         /* configured; NULL = AWS_PROFILE/default */
  int network;                 /* 0: container and instance metadata are
                                  out (no http client) */
};

/* Walks the chain.  Returns 1 with `plan` filled; 0 when nothing applies
 * (`why` lists each step's reason, "; "-separated); KCLD_ECREDS when a
 * setting cannot be used (`why` names it and says why); KCLD_ENOMEM.  The
 * plan is to be cleaned up in every case. */
int kcld_cred_chain_resolve(const struct kcld_cred_chain_in *in,
                            struct kcld_cred_plan *plan, char *why,
                            size_t why_len);

/* Wipes and frees what the plan holds; it is zeroed. */
void kcld_cred_plan_clean_up(struct kcld_cred_plan *plan);

#endif
