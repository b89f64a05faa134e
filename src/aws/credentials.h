/* credentials.h — AWS credentials and region, found the way the AWS SDKs do.
 *
 * Provider chain, first that yields wins: explicit config keys; environment
 * (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN); the shared
 * files (~/.aws/credentials, ~/.aws/config; AWS_PROFILE,
 * AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE); container credentials
 * (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI / _FULL_URI with
 * AWS_CONTAINER_AUTHORIZATION_TOKEN[_FILE]); EC2 instance metadata (IMDSv2).
 * Expiring credentials are refreshed in the background ahead of expiry;
 * callers keep signing with the current set meanwhile.
 *
 * Loop thread only.  Secrets are wiped (OPENSSL_cleanse) when freed and never
 * logged. */
#ifndef KCLD_AWS_CREDENTIALS_H
#define KCLD_AWS_CREDENTIALS_H

#include <stdint.h>
#include <time.h>
#include <uv.h>

#include "aws/http.h"

struct kcld_creds {
  char *access_key_id;
  char *secret_access_key;
  char *session_token; /* NULL when none */
  time_t expiration;   /* epoch seconds; 0 = does not expire */
};

struct kcld_credentials;

struct kcld_credentials_opts {
  uv_loop_t *loop;
  struct kcld_http *http;         /* for container and instance metadata */
  const char *access_key_id;      /* explicit config; NULL when not set */
  const char *secret_access_key;
  const char *session_token;
  const char *profile;            /* NULL = AWS_PROFILE or "default" */
  const char *imds_endpoint;      /* NULL = AWS_EC2_METADATA_SERVICE_ENDPOINT
                                     or http://169.254.169.254 */
};

typedef void (*kcld_credentials_cb)(int err, const struct kcld_creds *creds,
                                    void *arg);

int kcld_credentials_new(const struct kcld_credentials_opts *opts,
                         struct kcld_credentials **out);

/* Calls cb with usable credentials: at once (synchronously, before returning)
 * when the cached set is valid for at least another minute, else after the
 * chain has been walked.  err is KCLD_ECREDS when no provider yielded; the
 * message is logged once, without secrets.  `creds` is valid during cb. */
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

/* Region from instance metadata (IMDSv2), asynchronously. cb gets 0 and the
 * region, or a KCLD_E* code and NULL. */
typedef void (*kcld_region_cb)(int err, const char *region, void *arg);
int kcld_region_from_imds(struct kcld_http *http, const char *imds_endpoint,
                          kcld_region_cb cb, void *arg);

#endif
