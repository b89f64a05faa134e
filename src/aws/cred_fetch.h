/* cred_fetch.h — the asynchronous credential fetchers behind
 * credentials.c: instance metadata and container credentials
 * (cred_metadata.c), credential_process (cred_process.c), the SSO token
 * cache and portal (cred_sso.c), and STS web identity and AssumeRole
 * (cred_sts.c), with the few helpers they share.
 *
 * A fetch starts with kcld_cred_*_start and ends with exactly one call of
 * its callback, with a credential set the callback takes, or with an error
 * and a reason that names the step and never holds a secret.  The job
 * handle is stored before anything is sent, and the callback may run before
 * the start function returns (a request that cannot be sent): the caller
 * must not touch its state after a successful start.  Cancelling a job
 * means its callback never runs.  Loop thread only. */
#ifndef KCLD_AWS_CRED_FETCH_H
#define KCLD_AWS_CRED_FETCH_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <uv.h>

#include "aws/credentials.h"
#include "aws/http.h"

struct kcld_sts;

/* A fetch in flight. */
struct kcld_cred_job {
  void (*cancel)(struct kcld_cred_job *job);
};

/* The end of a fetch: err 0 and `creds` (the callback takes its strings:
 * move them or kcld_creds_clean_up them), or a negative KCLD_E* code with
 * `why`. */
typedef void (*kcld_cred_fetch_cb)(void *arg, int err, struct kcld_creds *creds,
                                   const char *why);

/* What the fetchers work with.  Borrowed; outlives every job. */
struct kcld_cred_env {
  uv_loop_t *loop;
  struct kcld_http *http;
  const char *imds_endpoint;       /* NULL = the environment's or default */
  const char *container_endpoint;  /* base of the relative URI; NULL =
                                      http://169.254.170.2 */
  long metadata_timeout_ms;        /* per instance metadata request */
  int metadata_attempts;           /* per metadata request (instance and
                                      container), the first included */
  long process_timeout_ms;         /* credential_process */
};

/* Stops the job: its callback will not run.  NULL is ignored. */
void kcld_cred_job_cancel(struct kcld_cred_job *job);

/* ---- cred_metadata.c ---- */

struct kcld_profile;

/* Sets env's metadata_timeout_ms and metadata_attempts from
 * AWS_METADATA_SERVICE_TIMEOUT (seconds) and
 * AWS_METADATA_SERVICE_NUM_ATTEMPTS, else the profile's
 * metadata_service_timeout and metadata_service_num_attempts (may be NULL),
 * else kcld's 1 s and 3 attempts.  A bad value is logged and ignored. */
void kcld_cred_metadata_settings(struct kcld_cred_env *env,
                                 const struct kcld_profile *profile);

/* Container credentials: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI (under
 * env->container_endpoint) or _FULL_URI (https, or http to loopback or the
 * ECS / EKS Pod Identity addresses), with AWS_CONTAINER_AUTHORIZATION_TOKEN
 * _FILE (read again on each fetch) or _TOKEN.  Returns 0 or KCLD_ECREDS /
 * KCLD_ENOMEM with `why` (no callback). */
int kcld_cred_container_start(const struct kcld_cred_env *env,
                              kcld_cred_fetch_cb cb, void *arg,
                              struct kcld_cred_job **out, char *why,
                              size_t why_len);

/* Instance metadata (IMDSv2, IMDSv1 where the token PUT is refused): the
 * role, then its credentials.  Sets *role (malloc'd, the caller frees) when
 * it succeeds.  Returns 0 or KCLD_ENOMEM. */
int kcld_cred_imds_start(const struct kcld_cred_env *env, char **role,
                         kcld_cred_fetch_cb cb, void *arg,
                         struct kcld_cred_job **out);

/* ---- cred_process.c ---- */

/* Runs `command` with /bin/sh -c, stdin from /dev/null, stderr inherited,
 * killed after env->process_timeout_ms, and reads its standard output: JSON
 * with Version 1, AccessKeyId, SecretAccessKey, optional SessionToken and
 * Expiration (an expired one is refused).  Returns 0 or KCLD_ECREDS /
 * KCLD_ENOMEM with `why`. */
int kcld_cred_process_start(const struct kcld_cred_env *env,
                            const char *command, kcld_cred_fetch_cb cb,
                            void *arg, struct kcld_cred_job **out, char *why,
                            size_t why_len);

/* ---- cred_sso.c ---- */

struct kcld_cred_sso {
  const char *session;     /* sso_session name; NULL for a legacy profile */
  const char *start_url;
  const char *region;      /* sso_region */
  const char *account_id;
  const char *role_name;
  const char *portal_url;  /* https://portal.sso.{region}.{dnsSuffix} or
                              the configured one */
  const char *oidc_url;    /* https://oidc.{region}.{dnsSuffix} or the
                              configured one */
};

/* Reads the token from ~/.aws/sso/cache/<sha1 of the session name, or of
 * the start URL>.json; refreshes it through SSO OIDC CreateToken when it
 * expires within 5 minutes and a refresh token is there (and writes the
 * cache back); then GetRoleCredentials.  Returns 0 or KCLD_ECREDS /
 * KCLD_ENOMEM with `why`. */
int kcld_cred_sso_start(const struct kcld_cred_env *env,
                        const struct kcld_cred_sso *sso,
                        kcld_cred_fetch_cb cb, void *arg,
                        struct kcld_cred_job **out, char *why,
                        size_t why_len);

/* ---- cred_sts.c ---- */

struct kcld_cred_role {
  char *role_arn;
  char *session_name;      /* NULL = kcld-<time> */
  char *external_id;       /* NULL = none */
  long duration_s;         /* 0 = STS's default (1 hour) */
  char *profile;           /* the profile that names the role, for
                              messages; NULL for the environment */
};

/* AssumeRoleWithWebIdentity (unsigned) with the token read now from
 * `token_file`.  Returns 0 or KCLD_ECREDS / KCLD_ENOMEM with `why`. */
int kcld_cred_web_identity_start(struct kcld_sts *sts, const char *token_file,
                                 const struct kcld_cred_role *role,
                                 kcld_cred_fetch_cb cb, void *arg,
                                 struct kcld_cred_job **out, char *why,
                                 size_t why_len);

/* AssumeRole signed with `source` (copied).  Returns 0 or KCLD_ECREDS /
 * KCLD_ENOMEM with `why`. */
int kcld_cred_assume_role_start(struct kcld_sts *sts,
                                const struct kcld_cred_role *role,
                                const struct kcld_creds *source,
                                kcld_cred_fetch_cb cb, void *arg,
                                struct kcld_cred_job **out, char *why,
                                size_t why_len);

/* ---- shared helpers (credentials.c) ---- */

/* An ISO 8601 UTC time ("2026-11-23T16:00:00Z", optional fraction, or a
 * +hh:mm / -hh:mm offset) as epoch seconds, or -1. */
time_t kcld_cred_parse_time(const char *s);

/* Fills `out` with copies (a NULL or empty token is none).  Returns 0 or
 * KCLD_ENOMEM (then `out` is empty). */
int kcld_cred_set(struct kcld_creds *out, const char *access_key_id,
                  const char *secret_access_key, const char *session_token,
                  time_t expiration);

/* Wipes and frees a string.  NULL is ignored. */
void kcld_cred_wipe_free(char *s);

/* The value of environment variable `name`, or NULL when unset or empty. */
const char *kcld_cred_env(const char *name);

/* Exponential backoff base x 2^(n-1), capped, with "equal jitter": the
 * delay lies in [d/2, d]. */
uint64_t kcld_cred_backoff_ms(uint64_t base, int n, uint64_t cap);

#endif
