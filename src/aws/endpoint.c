/* endpoint.c — the partition table, default hostnames, configured
 * endpoint URLs and their parts (see endpoint.h). */
#include "aws/endpoint.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "err.h"

/* Region patterns, most specific first: `head` then "-\w+-\d+" (or `head`
 * alone followed by "-\w+-\d+" for any of the listed heads). */
static const struct {
  const char *heads; /* '|'-separated first labels, "" for none */
  struct kcld_partition p;
} s_partitions[] = {
  {"us-gov", {"aws-us-gov", "amazonaws.com", "api.aws"}},
  {"us-iso", {"aws-iso", "c2s.ic.gov", "api.aws.ic.gov"}},
  {"us-isob", {"aws-iso-b", "sc2s.sgov.gov", "api.aws.scloud"}},
  {"us-isof", {"aws-iso-f", "csp.hci.ic.gov", "api.aws.hci.ic.gov"}},
  {"eu-isoe", {"aws-iso-e", "cloud.adc-e.uk", "api.cloud-aws.adc-e.uk"}},
  {"eusc-de", {"aws-eusc", "amazonaws.eu", "api.amazonwebservices.eu"}},
  {"cn", {"aws-cn", "amazonaws.com.cn", "api.amazonwebservices.com.cn"}},
  {"us|eu|ap|sa|ca|me|af|il|mx", {"aws", "amazonaws.com", "api.aws"}},
};

#define AWS_PARTITION (sizeof(s_partitions) / sizeof(s_partitions[0]) - 1)

/* Does `s` match "-\w+-\d+$" (word characters, then digits)? */
static int tail_matches(const char *s)
{
  const char *p = s;
  size_t word = 0, digits = 0;
  if (*p++ != '-')
    return 0;
  while (isalnum((unsigned char)*p) || *p == '_') {
    p++;
    word++;
  }
  if (word == 0 || *p++ != '-')
    return 0;
  while (isdigit((unsigned char)*p)) {
    p++;
    digits++;
  }
  return digits > 0 && *p == '\0';
}

/* Does `region` start with one of the '|'-separated `heads` followed by
 * the "-\w+-\d+" tail? */
static int region_matches(const char *heads, const char *region)
{
  const char *h = heads;
  while (*h) {
    size_t n = strcspn(h, "|");
    if (strncmp(region, h, n) == 0 && tail_matches(region + n))
      return 1;
    h += n;
    if (*h == '|')
      h++;
  }
  return 0;
}

const struct kcld_partition *kcld_partition_of(const char *region)
{
  for (size_t i = 0; region && i < AWS_PARTITION; i++)
    if (region_matches(s_partitions[i].heads, region))
      return &s_partitions[i].p;
  return &s_partitions[AWS_PARTITION].p;
}

int kcld_endpoint_default(const struct kcld_endpoint_spec *spec,
                          const char *region, int fips, int dualstack,
                          char *out, size_t cap)
{
  const struct kcld_partition *p = kcld_partition_of(region);
  const char *suffix = dualstack ? p->dual_stack_dns_suffix : p->dns_suffix;
  const char *label = "";
  int n;
  if (fips && !dualstack && spec->gov_fips_plain &&
      strcmp(p->id, "aws-us-gov") == 0)
    fips = 0;
  if (dualstack && spec->dualstack_label) {
    suffix = p->dns_suffix;
    label = ".dualstack";
  }
  n = snprintf(out, cap, "https://%s%s%s.%s.%s", spec->prefix,
               fips ? "-fips" : "", label, region, suffix);
  return n > 0 && (size_t)n < cap ? 0 : KCLD_EINVAL;
}

int kcld_endpoint_flag(const char *env, const struct kcld_profile *profile,
                       const char *key)
{
  int v = kcld_profile_bool(getenv(env));
  if (v < 0)
    v = kcld_profile_bool(kcld_profile_get(profile, key));
  return v > 0;
}

char *kcld_endpoint_configured(const char *env_id, const char *key,
                               const struct kcld_profile_files *files,
                               const struct kcld_profile *profile)
{
  char var[96];
  const char *v, *svc;

  if (kcld_endpoint_flag("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", profile,
                         "ignore_configured_endpoint_urls"))
    return NULL;
  snprintf(var, sizeof(var), "AWS_ENDPOINT_URL_%s", env_id);
  if (((v = getenv(var)) && *v) ||
      ((v = getenv("AWS_ENDPOINT_URL")) && *v))
    return strdup(v);
  svc = kcld_profile_get(profile, "services");
  if (svc &&
      (v = kcld_profile_get_sub(
         kcld_profile_find(files, KCLD_PROFILE_SERVICES, svc), key,
         "endpoint_url")))
    return strdup(v);
  v = kcld_profile_get(profile, "endpoint_url");
  return v ? strdup(v) : NULL;
}

/* ======== Endpoint URLs ======== */

const char *kcld_endpoint_loggable_url(const char *url)
{
  const char *p = strstr(url, "://");
  const char *host = p ? p + 3 : url;
  if (memchr(host, '@', strcspn(host, "/?#")))
    return "(not shown: it has a user part, which may hold a password)";
  return url;
}

int kcld_endpoint_parse(struct kcld_endpoint *ep, const char *url)
{
  CURLU *u = curl_url();
  char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *full = NULL;
  char *extra = NULL;
  int rc = KCLD_EINVAL;

  if (!u)
    return KCLD_ENOMEM;
  if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
    goto done;
  if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
      (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0))
    goto done;
  if (curl_url_get(u, CURLUPART_USER, &extra, 0) == CURLUE_OK ||
      curl_url_get(u, CURLUPART_QUERY, &extra, 0) == CURLUE_OK ||
      curl_url_get(u, CURLUPART_FRAGMENT, &extra, 0) == CURLUE_OK)
    goto done;
  if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host)
    goto done;
  if (curl_url_get(u, CURLUPART_PORT, &port, 0) != CURLUE_OK)
    port = NULL; /* none given */
  if (curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_URL, &full, 0) != CURLUE_OK)
    goto done;
  rc = KCLD_ENOMEM;
  size_t hl = strlen(host) + (port ? strlen(port) + 1 : 0) + 1;
  ep->host = malloc(hl);
  ep->url = strdup(full);
  ep->path = strdup(path && *path ? path : "/");
  if (!ep->host || !ep->url || !ep->path)
    goto done;
  snprintf(ep->host, hl, "%s%s%s", host, port ? ":" : "", port ? port : "");
  ep->https = strcmp(scheme, "https") == 0;
  {
    unsigned char addr[16];
    ep->ip_host = host[0] == '[' || inet_pton(AF_INET, host, addr) == 1;
  }
  rc = 0;

done:
  curl_free(scheme);
  curl_free(host);
  curl_free(port);
  curl_free(path);
  curl_free(full);
  curl_free(extra);
  curl_url_cleanup(u);
  return rc;
}

void kcld_endpoint_clean_up(struct kcld_endpoint *ep)
{
  free(ep->url);
  free(ep->host);
  free(ep->path);
  memset(ep, 0, sizeof(*ep));
}
