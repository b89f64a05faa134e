/* endpoint.h — where an AWS service answers: the partition of a region and
 * its DNS suffixes, the standard, FIPS and dual-stack hostnames, and the
 * endpoint URLs a user configures outside kcld's own config.
 *
 * Partitions (the SDKs' partitions.json): aws (amazonaws.com, dual-stack
 * api.aws), aws-cn (amazonaws.com.cn, api.amazonwebservices.com.cn),
 * aws-us-gov (amazonaws.com, api.aws), aws-iso (c2s.ic.gov,
 * api.aws.ic.gov), aws-iso-b (sc2s.sgov.gov, api.aws.scloud), aws-iso-e
 * (cloud.adc-e.uk, api.cloud-aws.adc-e.uk), aws-iso-f (csp.hci.ic.gov,
 * api.aws.hci.ic.gov), aws-eusc (amazonaws.eu, api.amazonwebservices.eu).
 * A region no partition claims is in aws.
 *
 * Hostnames, as the services' endpoint rules give them:
 *   standard            {service}.{region}.{dnsSuffix}
 *   FIPS                {service}-fips.{region}.{dnsSuffix}
 *   dual-stack          {service}.{region}.{dualStackDnsSuffix}
 *   FIPS + dual-stack   {service}-fips.{region}.{dualStackDnsSuffix}
 * except S3's dual-stack ({service}[-fips].dualstack.{region}.{dnsSuffix}).
 * In aws-us-gov, FIPS without dual-stack is the standard hostname for the
 * services whose endpoints are FIPS there already (DynamoDB, SQS, STS).
 *
 * Configured endpoints, first found wins (none of them when
 * AWS_IGNORE_CONFIGURED_ENDPOINT_URLS or the profile's
 * ignore_configured_endpoint_urls is true): AWS_ENDPOINT_URL_<ID> (ID as
 * "KINESIS", "SSO_OIDC"), AWS_ENDPOINT_URL, the profile's services section
 * (`services = NAME`, then `[services NAME]` with `<key> =` and an indented
 * `endpoint_url = ...`), the profile's endpoint_url. */
#ifndef KCLD_AWS_ENDPOINT_H
#define KCLD_AWS_ENDPOINT_H

#include <stddef.h>

#include "aws/profile.h"

struct kcld_partition {
  const char *id;                    /* "aws-cn" */
  const char *dns_suffix;            /* "amazonaws.com.cn" */
  const char *dual_stack_dns_suffix; /* "api.amazonwebservices.com.cn" */
};

/* The partition of `region` (aws when none claims it; never NULL). */
const struct kcld_partition *kcld_partition_of(const char *region);

/* What decides a default endpoint. */
struct kcld_endpoint_spec {
  const char *prefix;   /* hostname prefix and signing name: "kinesis" */
  int gov_fips_plain;   /* 1: FIPS in aws-us-gov is the standard hostname */
  int dualstack_label;  /* 1: dual-stack is {service}[-fips].dualstack.
                           {region}.{dnsSuffix}, as S3 names it */
};

/* Writes https://<host> for `spec` in `region` into `out` (cap bytes).
 * Returns 0, or KCLD_EINVAL when it does not fit. */
int kcld_endpoint_default(const struct kcld_endpoint_spec *spec,
                          const char *region, int fips, int dualstack,
                          char *out, size_t cap);

/* The endpoint URL configured for the service with environment id `env_id`
 * ("SSO_OIDC") and services-section key `key` ("sso_oidc"), looked up in
 * the environment and in `profile` (may be NULL).  Returns a malloc'd URL,
 * or NULL when none is configured (or out of memory). */
char *kcld_endpoint_configured(const char *env_id, const char *key,
                               const struct kcld_profile_files *files,
                               const struct kcld_profile *profile);

/* A FIPS or dual-stack switch: the environment variable `env` when it is
 * true or false, else the profile's `key`; 0 when neither says. */
int kcld_endpoint_flag(const char *env, const struct kcld_profile *profile,
                       const char *key);

/* A base URL split into what a request needs. */
struct kcld_endpoint {
  char *url;   /* where to POST */
  char *host;  /* Host header: host[:port] as given */
  char *path;  /* request path, "/" unless the endpoint has one */
  int https;   /* the scheme is https */
  int ip_host; /* the host is an IP address literal */
};

/* Splits `url` (http or https; no user part, query or fragment) into *ep.
 * Returns 0 or KCLD_E*; on failure *ep may hold parts: clean it up. */
int kcld_endpoint_parse(struct kcld_endpoint *ep, const char *url);

/* Frees ep's parts and zeroes it. */
void kcld_endpoint_clean_up(struct kcld_endpoint *ep);

/* `url` as a log line may show it: not at all when it has a user part,
 * which may hold a password (kcld_endpoint_parse() refuses such URLs). */
const char *kcld_endpoint_loggable_url(const char *url);

#endif
