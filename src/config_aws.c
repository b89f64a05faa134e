/* config_aws.c — see config_aws.h. */
#include "config_aws.h"

#include <string.h>

/* An empty string in the config means "not set". */
static const char *opt(const char *s)
{
  return s && *s ? s : NULL;
}

void kcld_config_aws_http(const struct kcld_config *cfg,
                          struct kcld_http_opts *o)
{
  memset(o, 0, sizeof(*o));
  o->ca_file = opt(cfg->http.ca_file);
  o->profile = opt(cfg->credentials.profile);
  o->connect_timeout_ms = (long)cfg->http.connect_timeout_ms;
  o->timeout_ms = (long)cfg->http.timeout_ms;
  o->max_connections = cfg->http.max_connections
                         ? cfg->http.max_connections
                         : KCLD_CONFIG_AUTO_CONNECTIONS_MIN;
}

void kcld_config_aws_credentials(const struct kcld_config *cfg,
                                 uv_loop_t *loop, struct kcld_http *http,
                                 struct kcld_credentials_opts *o)
{
  memset(o, 0, sizeof(*o));
  o->loop = loop;
  o->http = http;
  o->access_key_id = opt(cfg->credentials.access_key_id);
  o->secret_access_key = opt(cfg->credentials.secret_access_key);
  o->session_token = opt(cfg->credentials.session_token);
  o->profile = opt(cfg->credentials.profile);
  o->region = opt(cfg->region);
}

void kcld_config_aws_client(const struct kcld_config *cfg, uv_loop_t *loop,
                            struct kcld_http *http,
                            struct kcld_credentials *creds,
                            const char *region, struct kcld_aws_opts *o)
{
  memset(o, 0, sizeof(*o));
  o->loop = loop;
  o->http = http;
  o->creds = creds;
  o->region = region;
  o->profile = opt(cfg->credentials.profile);
  o->endpoint[KCLD_AWS_KINESIS] =
    kcld_config_endpoint(cfg, KCLD_CONFIG_KINESIS, NULL);
  o->endpoint[KCLD_AWS_DYNAMODB] =
    kcld_config_endpoint(cfg, KCLD_CONFIG_DYNAMODB, NULL);
  o->endpoint[KCLD_AWS_SQS] = kcld_config_endpoint(cfg, KCLD_CONFIG_SQS, NULL);
  o->endpoint[KCLD_AWS_S3] = kcld_config_endpoint(cfg, KCLD_CONFIG_S3, NULL);
  o->max_attempts = cfg->http.max_attempts;
  o->retry_mode = kcld_config_retry_mode_name(cfg);
  o->use_fips = kcld_config_switch_value(cfg->endpoints.fips);
  o->use_dualstack = kcld_config_switch_value(cfg->endpoints.dualstack);
  o->timeout_ms = (long)cfg->http.timeout_ms;
  o->max_in_flight[KCLD_AWS_DYNAMODB] = cfg->http.dynamodb_max_in_flight;
}
