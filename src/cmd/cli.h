/* cli.h — what the one-shot subcommands (produce, status, redrive) share:
 * the configuration they read endpoints, region and credentials from, and an
 * AWS client on a private loop.  Internal to src/cmd. */
#ifndef KCLD_CMD_CLI_H
#define KCLD_CMD_CLI_H

#include <stddef.h>
#include <uv.h>

#include "aws/call.h"
#include "config.h"

/* A private loop with the AWS stack on it. */
struct kcld_cli_aws {
  uv_loop_t loop;
  struct kcld_http *http;
  struct kcld_credentials *creds;
  struct kcld_aws *aws;
  char *region;
  int loop_open, global;
};

/* Loads `path`, or when it is NULL builds a config from the environment
 * (application "kcld-cli", `stream`; endpoints, region and credentials from
 * the usual variables).  Prints why not to stderr and returns NULL on
 * failure. */
struct kcld_config *kcld_cli_config(const char *path, const char *stream);

/* The end of a subcommand's command line: no operand may be left in
 * argv[first..argc), and a configuration file (`path`) or a stream must be
 * given.  Returns the configuration (kcld_cli_config), or NULL with *code
 * set to the exit code: 2 after printing "kcld NAME: ..." and `usage` to
 * stderr, 1 when the configuration does not load. */
struct kcld_config *kcld_cli_config_args(const char *name, int argc,
                                         char **argv, int first,
                                         const char *path, const char *stream,
                                         const char *usage, int *code);

/* Fills caller-owned `c`: the loop, http client, credentials and AWS client
 * for `cfg` (region from the config or the environment; no instance
 * metadata).  Returns 0, or a KCLD_E* code with the reason printed to
 * stderr (then call kcld_cli_aws_clean_up). */
int kcld_cli_aws_init(struct kcld_cli_aws *c, const struct kcld_config *cfg);

/* Synchronous: closes whatever init opened, runs the loop dry and closes
 * it.  Service clients made on c->aws must be closed first.  libcurl's global state is
 * left to the caller (kcld_http_global_cleanup at process end). */
void kcld_cli_aws_clean_up(struct kcld_cli_aws *c);

/* A progress line on stderr, when stderr is a terminal (else nothing):
 * printf-style, rewritten in place ("\r"); `final` ends it with a newline.
 * Rate-limited to 10 lines a second (a final one always shows). */
void kcld_cli_progress(int final, const char *fmt, ...)
  __attribute__((format(printf, 2, 3)));

/* Runs the loop until *flag is set or it has nothing left to do. */
void kcld_cli_run_until(struct kcld_cli_aws *c, const int *flag);

#endif
