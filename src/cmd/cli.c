/* cli.c — configuration and a private AWS client for the subcommands. */
#include "cmd/cli.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "aws/credentials.h"
#include "aws/http.h"
#include "config_aws.h"
#include "err.h"

static const char *opt(const char *s)
{
  return s && *s ? s : NULL;
}

struct kcld_config *kcld_cli_config(const char *path, const char *stream)
{
  struct kcld_config *cfg = NULL;
  char *errors = NULL, *text = NULL;
  int rc;

  if (path) {
    rc = kcld_config_load(path, &cfg, &errors);
  } else {
    json_t *s = json_string(stream ? stream : "");
    char *q = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
    json_decref(s);
    if (!q || asprintf(&text, "application: kcld-cli\nstream: %s\n", q) < 0)
      text = NULL;
    free(q);
    if (!text) {
      fprintf(stderr, "kcld: out of memory\n");
      return NULL;
    }
    rc = kcld_config_parse("(command line)", text, strlen(text), &cfg,
                           &errors);
    free(text);
  }
  if (rc != 0) {
    fprintf(stderr, "%s", errors ? errors : "");
    fprintf(stderr, "kcld: %s: %s\n", path ? path : "configuration",
            kcld_strerror(rc));
    free(errors);
    return NULL;
  }
  free(errors);
  return cfg;
}

struct kcld_config *kcld_cli_config_args(const char *name, int argc,
                                         char **argv, int first,
                                         const char *path, const char *stream,
                                         const char *usage, int *code)
{
  struct kcld_config *cfg;

  *code = 2;
  if (first < argc) {
    fprintf(stderr, "kcld %s: unexpected argument '%s'\n\n%s", name,
            argv[first], usage);
    return NULL;
  }
  if (!path && !stream) {
    fprintf(stderr, "kcld %s: give --config or --stream\n\n%s", name, usage);
    return NULL;
  }
  cfg = kcld_cli_config(path, stream);
  *code = cfg ? 0 : 1;
  return cfg;
}

int kcld_cli_aws_init(struct kcld_cli_aws *c, const struct kcld_config *cfg)
{
  struct kcld_http_opts ho;
  struct kcld_credentials_opts cro;
  struct kcld_aws_opts ao;
  int rc;

  memset(c, 0, sizeof(*c));
  if ((rc = kcld_http_global_init()) != 0) {
    fprintf(stderr, "kcld: cannot initialize libcurl\n");
    return rc;
  }
  c->global = 1;
  if (uv_loop_init(&c->loop) != 0) {
    fprintf(stderr, "kcld: cannot create an event loop\n");
    return KCLD_EIO;
  }
  c->loop_open = 1;
  kcld_config_aws_http(cfg, &ho);
  if ((rc = kcld_http_new(&c->loop, &ho, &c->http)) != 0)
    goto fail;
  kcld_config_aws_credentials(cfg, &c->loop, c->http, &cro);
  if ((rc = kcld_credentials_new(&cro, &c->creds)) != 0)
    goto fail;
  c->region = kcld_region_from_env(opt(cfg->region),
                                   opt(cfg->credentials.profile));
  if (!c->region) {
    fprintf(stderr, "kcld: no region: set `region` in the config, or "
            "AWS_REGION\n");
    return KCLD_ECONFIG;
  }
  kcld_config_aws_client(cfg, &c->loop, c->http, c->creds, c->region, &ao);
  if ((rc = kcld_aws_new(&ao, &c->aws)) != 0)
    goto fail;
  return 0;
fail:
  fprintf(stderr, "kcld: cannot set up the AWS client: %s\n",
          kcld_strerror(rc));
  return rc;
}

void kcld_cli_aws_clean_up(struct kcld_cli_aws *c)
{
  if (c->aws)
    kcld_aws_close(c->aws);
  if (c->creds)
    kcld_credentials_close(c->creds);
  if (c->http)
    kcld_http_close(c->http);
  c->aws = NULL;
  c->creds = NULL;
  c->http = NULL;
  if (c->loop_open) {
    uv_run(&c->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&c->loop) != 0)
      fprintf(stderr, "kcld: event loop closed with handles open\n");
    c->loop_open = 0;
  }
  free(c->region);
  c->region = NULL;
}

void kcld_cli_run_until(struct kcld_cli_aws *c, const int *flag)
{
  while (!*flag)
    if (uv_run(&c->loop, UV_RUN_ONCE) == 0)
      break;
}

void kcld_cli_progress(int final, const char *fmt, ...)
{
  static int tty = -1;
  static uint64_t last_ns;
  uint64_t now = uv_hrtime();
  va_list ap;

  if (tty < 0)
    tty = isatty(STDERR_FILENO);
  if (!tty || (!final && last_ns && now - last_ns < 100000000u))
    return;
  last_ns = now;
  fputs("\r", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputs(final ? "\n" : "   ", stderr);
  fflush(stderr);
}
