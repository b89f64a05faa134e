/* credentials.h — AWS credentials and region, found the way the AWS SDKs do.
 *
 * Provider chain, first that yields wins (details in cred_chain.h):
 * explicit config keys; environment (AWS_ACCESS_KEY_ID,
 * AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN; else the old AWS_ACCESS_KEY /
 * AWS_SECRET_KEY); web identity (AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN,
 * AWS_ROLE_SESSION_NAME; STS AssumeRoleWithWebIdentity); the profile in the
 * shared files (~/.aws/credentials, ~/.aws/config; AWS_PROFILE,
 * AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE): static keys, role_arn with
 * source_profile or credential_source (STS AssumeRole, chains of them),
 * web_identity_token_file, credential_process, SSO; container credentials
 * (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI / _FULL_URI with
 * AWS_CONTAINER_AUTHORIZATION_TOKEN[_FILE]); EC2 instance metadata (IMDSv2).
 * A setting that cannot be used is an error naming it, never another
 * identity instead; when nothing yields, the error lists every step.
 * Expiring credentials are refreshed in the background ahead of expiry;
 * callers keep signing with the current set meanwhile.
 *
 * Instance metadata requests time out after AWS_METADATA_SERVICE_TIMEOUT
 * seconds (default 1) and make up to AWS_METADATA_SERVICE_NUM_ATTEMPTS
 * attempts (default 3) with backoff (container credentials: 2 s); neither
 * goes through a proxy.  AWS_EC2_METADATA_DISABLED=true skips instance
 * metadata; AWS_EC2_METADATA_SERVICE_ENDPOINT (or _MODE=IPv6) moves it.
 * STS calls go to the region's STS endpoint (call.h) of `region`, else
 * AWS_REGION, AWS_DEFAULT_REGION, the profile's region, else us-east-1.
 *
 * Loop thread only.  Secrets are wiped (OPENSSL_cleanse) when freed and never
 * logged: log lines name only the source, the profile and the role. */
#ifndef KCLD_AWS_CREDENTIALS_H
#define KCLD_AWS_CREDENTIALS_H

#include <stdint.h>
#include <time.h>
#include <uv.h>

#include "aws/http.h"

/* One credential set.  Owned by the provider; callers borrow it. */
struct kcld_creds {
  char *access_key_id;
  char *secret_access_key;
  char *session_token; /* NULL when none */
  time_t expiration;   /* epoch seconds; 0 = does not expire */
};

struct kcld_credentials;

/* Strings are copied by kcld_credentials_new(). */
struct kcld_credentials_opts {
  uv_loop_t *loop;
  struct kcld_http *http;         /* for container and instance metadata;
                                     NULL = only the local providers.  Must
                                     outlive the provider. */
  const char *access_key_id;      /* explicit config; NULL when not set */
  const char *secret_access_key;
  const char *session_token;
  const char *profile;            /* NULL = AWS_PROFILE or "default" */
  const char *imds_endpoint;      /* NULL = AWS_EC2_METADATA_SERVICE_ENDPOINT
                                     or http://169.254.169.254 */
  const char *container_endpoint; /* base for the _RELATIVE_URI; NULL =
                                     http://169.254.170.2 (tests move it) */
  const char *region;             /* for STS; NULL = see above */
  long process_timeout_ms;        /* credential_process; 0 = 1 minute */
};

typedef void (*kcld_credentials_cb)(int err, const struct kcld_creds *creds,
                                    void *arg);

/* Wipes and frees the strings of a set (not the struct); it is zeroed.
 * NULL is ignored. */
void kcld_creds_clean_up(struct kcld_creds *c);

/* Copies `src` into `dst`.  Returns 0 or KCLD_ENOMEM (then `dst` is
 * empty). */
int kcld_creds_copy(struct kcld_creds *dst, const struct kcld_creds *src);

/* Creates a provider; nothing is looked up until the first get.  Returns 0,
 * KCLD_EINVAL (no loop, only one of the explicit key id and secret, a
 * negative timeout) or KCLD_ENOMEM. */
int kcld_credentials_new(const struct kcld_credentials_opts *opts,
                         struct kcld_credentials **out);

/* Calls cb with usable credentials: at once (synchronously, before returning)
 * when the cached set is valid for at least another minute (or a static set
 * is found, or nothing can be), else after the fetch; callers that ask
 * meanwhile wait for the same fetch.  When a fetch fails while the cached set
 * has not yet expired, cb gets that set.  err is KCLD_ECREDS when no provider
 * yielded or the chosen one failed (the reason is logged, without secrets),
 * KCLD_ECANCELED when the provider or the http client is shut down.  `creds`
 * is valid during cb. */
void kcld_credentials_get(struct kcld_credentials *c, kcld_credentials_cb cb,
                          void *arg);

/* Name of the provider that yielded the current set ("config", "env",
 * "web-identity", "profile", "assume-role", "process", "sso", "container",
 * "imds"), or NULL.  Safe to log. */
const char *kcld_credentials_source(const struct kcld_credentials *c);

/* Stops background refresh, fails waiting callers with KCLD_ECANCELED, wipes
 * and frees.  Its timer is closed on the loop: run the loop afterwards. */
void kcld_credentials_close(struct kcld_credentials *c);

/* Region without the network: `configured` if non-empty, else AWS_REGION,
 * AWS_DEFAULT_REGION, then the profile's `region` in the config file.
 * Returns a malloc'd string or NULL (then ask instance metadata). */
char *kcld_region_from_env(const char *configured, const char *profile);

/* Region from instance metadata (IMDSv2, /latest/meta-data/placement/region),
 * asynchronously.  imds_endpoint as in the options; `http` must stay open
 * until cb has run.  Returns 0 and later calls
 * cb with 0 and the region (valid during cb) or a KCLD_E* code and NULL; or
 * returns KCLD_ENOTFOUND (AWS_EC2_METADATA_DISABLED), KCLD_EINVAL or
 * KCLD_ENOMEM and never calls cb. */
typedef void (*kcld_region_cb)(int err, const char *region, void *arg);
int kcld_region_from_imds(uv_loop_t *loop, struct kcld_http *http,
                          const char *imds_endpoint, kcld_region_cb cb,
                          void *arg);

#endif
