/* credentials.h — AWS credentials and region, found the way the AWS SDKs do.
 *
 * Provider chain, first that yields wins: explicit config keys; environment
 * (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN; else the old
 * AWS_ACCESS_KEY / AWS_SECRET_KEY); the shared
 * files (~/.aws/credentials, ~/.aws/config; AWS_PROFILE,
 * AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE); container credentials
 * (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI / _FULL_URI with
 * AWS_CONTAINER_AUTHORIZATION_TOKEN[_FILE]); EC2 instance metadata (IMDSv2).
 * Expiring credentials are refreshed in the background ahead of expiry;
 * callers keep signing with the current set meanwhile.
 *
 * Container and instance metadata requests use 1-2 s timeouts and up to 3
 * attempts with backoff.  AWS_EC2_METADATA_DISABLED=true skips instance
 * metadata; AWS_EC2_METADATA_SERVICE_ENDPOINT (or _MODE=IPv6) moves it.
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
};

typedef void (*kcld_credentials_cb)(int err, const struct kcld_creds *creds,
                                    void *arg);

/* Creates a provider; nothing is looked up until the first get.  Returns 0,
 * KCLD_EINVAL (no loop, or only one of the explicit key id and secret) or
 * KCLD_ENOMEM. */
int kcld_credentials_new(const struct kcld_credentials_opts *opts,
                         struct kcld_credentials **out);

/* Calls cb with usable credentials: at once (synchronously, before returning)
 * when the cached set is valid for at least another minute (or the local
 * providers yield), else after the chain has been walked; callers that ask
 * meanwhile wait for the same fetch.  When a fetch fails while the cached set
 * has not yet expired, cb gets that set.  err is KCLD_ECREDS when no provider
 * yielded (the reason is logged, without secrets), KCLD_ECANCELED when the
 * provider or the http client is shut down.  `creds` is valid during cb. */
void kcld_credentials_get(struct kcld_credentials *c, kcld_credentials_cb cb,
                          void *arg);

/* Name of the provider that yielded the current set ("config", "env",
 * "profile", "container", "imds"), or NULL.  Safe to log. */
const char *kcld_credentials_source(const struct kcld_credentials *c);

/* Stops background refresh, fails waiting callers with KCLD_ECANCELED, wipes
 * and frees.  Its timer is closed on the loop: run the loop afterwards. */
void kcld_credentials_destroy(struct kcld_credentials *c);

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
