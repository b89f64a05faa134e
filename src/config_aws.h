/* config_aws.h — the options of the HTTP client, the credential chain and
 * the AWS client that a configuration asks for, in one place for the
 * daemon and the commands.  Fills structs only: no I/O, nothing opened. */
#ifndef KCLD_CONFIG_AWS_H
#define KCLD_CONFIG_AWS_H

#include <uv.h>

#include "aws/call.h"
#include "aws/credentials.h"
#include "aws/http.h"
#include "config.h"

/* http.max_connections 0 (auto): keep a connection for every lease held
 * and this margin, never fewer than the floor (the daemon grows it as it
 * takes leases; the commands keep the floor). */
#define KCLD_CONFIG_AUTO_CONNECTIONS_MIN 128
#define KCLD_CONFIG_AUTO_CONNECTIONS_MARGIN 64

/* The HTTP client's options from http.* and the profile (max_connections
 * auto: the floor above). */
void kcld_config_aws_http(const struct kcld_config *cfg,
                          struct kcld_http_opts *o);

/* The credential chain's options from credentials.* and region. */
void kcld_config_aws_credentials(const struct kcld_config *cfg,
                                 uv_loop_t *loop, struct kcld_http *http,
                                 struct kcld_credentials_opts *o);

/* The AWS client's options: endpoints (kcld_config_endpoint), retries,
 * FIPS and dual-stack, timeout; region is the one resolved at start-up. */
void kcld_config_aws_client(const struct kcld_config *cfg, uv_loop_t *loop,
                            struct kcld_http *http,
                            struct kcld_credentials *creds,
                            const char *region, struct kcld_aws_opts *o);

#endif
