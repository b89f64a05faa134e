/* config_runtime.c — a loaded config checked against the machine
 * (kcld_config_check_runtime): the handler's program can be run, the
 * plugin can be read, the endpoint variables carry no credentials.
 *
 * These look at the filesystem and the environment, so they are kept out
 * of the parse: a config naming a program that is not installed here still
 * parses (tests, --dump-config), and `--check-config` and daemon start-up
 * call this as well.  The derived defaults worker_id and on_failure.dir
 * (config_runtime.h), and the resolution of endpoints and of the SDK
 * switches (kcld_config_endpoint and friends), read the machine too and
 * live here for the same reason. */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_keys.h"
#include "config_runtime.h"
#include "config_values.h"
#include "err.h"

/* execvp's search path when PATH is not set (glibc's confstr _CS_PATH). */
#define DEFAULT_PATH "/bin:/usr/bin"

struct report {
  const struct kcld_config *cfg;
  FILE *f;
  size_t n;
};

static void problem(struct report *r, const char *key, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));

/* One line "file:line:col: key: message" at the position of key's value
 * (1:1 when it was not set). */
static void problem(struct report *r, const char *key, const char *fmt, ...)
{
  const struct kcld_config_origin *o = NULL;
  int i = kcld_config_key_index(key);
  va_list ap;
  if (i >= 0 && r->cfg->origin && r->cfg->origin[i].line)
    o = &r->cfg->origin[i];
  fprintf(r->f, "%s:%zu:%zu: %s: ", r->cfg->path ? r->cfg->path : "(config)",
          o ? o->line : 1, o ? o->col : 1, o && o->label ? o->label : key);
  va_start(ap, fmt);
  vfprintf(r->f, fmt, ap);
  va_end(ap);
  fputc('\n', r->f);
  r->n++;
}

/* 0 when `file` is a regular file we may run, else an errno value (EISDIR,
 * or EACCES for anything else that is not a file). */
static int runnable(const char *file)
{
  struct stat st;
  if (stat(file, &st) != 0)
    return errno;
  if (S_ISDIR(st.st_mode))
    return EISDIR;
  if (!S_ISREG(st.st_mode))
    return EACCES;
  return access(file, X_OK) == 0 ? 0 : errno;
}

/* Looks for `prog` (no "/") in PATH as execvp does (an empty entry is the
 * current directory).  Returns 0 when found runnable, EACCES when found
 * only where it cannot be run (*where names the first such place), else
 * ENOENT. */
static int search_path(const char *prog, char *where, size_t n)
{
  const char *path = getenv("PATH");
  int rc = ENOENT;
  char cand[4096];
  if (!path)
    path = DEFAULT_PATH;
  for (const char *p = path;; p++) {
    size_t len = strcspn(p, ":");
    snprintf(cand, sizeof(cand), "%.*s%s%s", (int)len, len ? p : ".",
             "/", prog);
    int e = runnable(cand);
    if (e == 0)
      return 0;
    if (e != ENOENT && e != ENOTDIR && rc == ENOENT) {
      rc = EACCES;
      snprintf(where, n, "%s", cand);
    }
    p += len;
    if (!*p)
      break;
  }
  return rc;
}

static void check_command(struct report *r, const struct kcld_config *cfg)
{
  const char *prog = cfg->handler.command.items[0];
  char q[96], qw[96], where[4096];
  int e;
  kcld_config_value_quote(prog, q, sizeof(q));
  if (!*prog) {
    problem(r, "handler.command", "the program name is empty");
  } else if (strchr(prog, '/')) {
    if ((e = runnable(prog)) != 0)
      problem(r, "handler.command", "cannot run %s: %s", q, strerror(e));
  } else if ((e = search_path(prog, where, sizeof(where))) == ENOENT) {
    problem(r, "handler.command", "cannot run %s: not found in PATH", q);
  } else if (e != 0) {
    problem(r, "handler.command", "cannot run %s: %s is not executable", q,
            kcld_config_value_quote(where, qw, sizeof(qw)));
  }
}

/* A plugin named without "/" is searched by dlopen in the library path;
 * only a path is checked here. */
static void check_plugin(struct report *r, const struct kcld_config *cfg)
{
  const char *path = cfg->handler.path;
  struct stat st;
  char q[96];
  if (!strchr(path, '/'))
    return;
  kcld_config_value_quote(path, q, sizeof(q));
  if (stat(path, &st) != 0 || access(path, R_OK) != 0)
    problem(r, "handler.path", "cannot load %s: %s", q, strerror(errno));
  else if (!S_ISREG(st.st_mode))
    problem(r, "handler.path", "cannot load %s: not a regular file", q);
}

/* What r->cfg's handler needs from the machine. */
static void check_handler(struct report *r)
{
  const struct kcld_config *cfg = r->cfg;
  switch (cfg->handler.type) {
  case KCLD_CONFIG_HANDLER_MULTILANG:
  case KCLD_CONFIG_HANDLER_LAMBDA:
    if (cfg->handler.command.len > 0)
      check_command(r, cfg);
    break;
  case KCLD_CONFIG_HANDLER_PLUGIN:
    check_plugin(r, cfg);
    break;
  default:
    break;
  }
}

/* The endpoint variables kcld_config_endpoint() may answer with. */
static void check_endpoint_vars(struct report *r,
                                const struct kcld_config *cfg)
{
  const char *shown[KCLD_CONFIG_S3 + 1] = {NULL};
  for (int svc = KCLD_CONFIG_KINESIS; svc <= KCLD_CONFIG_S3; svc++) {
    const char *source = NULL;
    const char *url =
      kcld_config_endpoint(cfg, (enum kcld_config_service)svc, &source);
    int again = 0;
    if (!url || !source || strncmp(source, "AWS_", 4) != 0 ||
        !kcld_config_value_has_userinfo(url))
      continue;
    for (int i = 0; i < svc; i++)
      again |= shown[i] && strcmp(shown[i], source) == 0;
    shown[svc] = source;
    if (again)
      continue;
    fprintf(r->f,
            "%s (environment): must not contain credentials (a user or "
            "password before \"@\") (value not shown)\n",
            source);
    r->n++;
  }
}

int kcld_config_check_runtime(const struct kcld_config *cfg, char **errors)
{
  struct report r = {cfg, NULL, 0};
  char *buf = NULL;
  size_t len = 0;
  if (errors)
    *errors = NULL;
  r.f = open_memstream(&buf, &len);
  if (!r.f)
    return KCLD_ENOMEM;
  check_handler(&r);
  for (size_t i = 0; i < cfg->streams.len; i++)
    if (cfg->streams.v[i].cfg) { /* a stream's own handler */
      r.cfg = cfg->streams.v[i].cfg;
      check_handler(&r);
    }
  r.cfg = cfg;
  check_endpoint_vars(&r, cfg);
  if (fclose(r.f) != 0) {
    free(buf);
    return KCLD_ENOMEM;
  }
  if (r.n == 0) {
    free(buf);
    return 0;
  }
  if (errors)
    *errors = buf;
  else
    free(buf);
  return KCLD_ECONFIG;
}

/* ======== Derived defaults ======== */

int kcld_config_derive_worker_id(struct kcld_config *cfg)
{
  char host[256], id[300];
  if (gethostname(host, sizeof(host)) != 0)
    snprintf(host, sizeof(host), "localhost");
  host[sizeof(host) - 1] = '\0';
  snprintf(id, sizeof(id), "%s:%ld", host, (long)getpid());
  return kcld_config_value_set(&cfg->worker_id, id);
}

int kcld_config_derive_dead_letter_dir(struct kcld_config *cfg)
{
  const char *sd = getenv("STATE_DIRECTORY");
  const char *xdg = getenv("XDG_STATE_HOME");
  const char *home = getenv("HOME");
  char dir[4096];

  if (sd && *sd == '/')
    snprintf(dir, sizeof(dir), "%.*s/dead-letter", (int)strcspn(sd, ":"),
             sd);
  else if (geteuid() == 0)
    snprintf(dir, sizeof(dir), "/var/lib/kcld/dead-letter");
  else if (xdg && *xdg == '/')
    snprintf(dir, sizeof(dir), "%s/kcld/dead-letter", xdg);
  else if (home && *home == '/')
    snprintf(dir, sizeof(dir), "%s/.local/state/kcld/dead-letter", home);
  else
    snprintf(dir, sizeof(dir), "/var/lib/kcld/dead-letter");
  return kcld_config_value_set(&cfg->on_failure.dir, dir);
}

/* ======== Endpoints ======== */

const char *kcld_config_retry_mode_name(const struct kcld_config *cfg)
{
  static const char *const names[] = {NULL, "standard", "adaptive",
                                      "legacy"};
  unsigned m = (unsigned)cfg->http.retry_mode;
  return m < sizeof(names) / sizeof(names[0]) ? names[m] : NULL;
}

int kcld_config_switch_value(enum kcld_config_switch s)
{
  return s == KCLD_CONFIG_ON ? 1 : s == KCLD_CONFIG_OFF ? -1 : 0;
}

const char *kcld_config_endpoint(const struct kcld_config *cfg,
                                 enum kcld_config_service svc,
                                 const char **source)
{
  static const char *const keys[] = {"endpoints.kinesis",
                                     "endpoints.dynamodb", "endpoints.sqs",
                                     NULL, "endpoints.s3"};
  static const char *const vars[] = {"AWS_ENDPOINT_URL_KINESIS",
                                     "AWS_ENDPOINT_URL_DYNAMODB",
                                     "AWS_ENDPOINT_URL_SQS", NULL,
                                     "AWS_ENDPOINT_URL_S3"};
  const char *per, *v;
  if (source)
    *source = NULL;
  if ((int)svc < 0 || (int)svc > KCLD_CONFIG_S3 || !keys[svc])
    return NULL;
  per = svc == KCLD_CONFIG_KINESIS    ? cfg->endpoints.kinesis
        : svc == KCLD_CONFIG_DYNAMODB ? cfg->endpoints.dynamodb
        : svc == KCLD_CONFIG_SQS      ? cfg->endpoints.sqs
                                      : cfg->endpoints.s3;
  if (per && *per) {
    if (source)
      *source = keys[svc];
    return per;
  }
  if (cfg->endpoint && *cfg->endpoint) {
    if (source)
      *source = "endpoint";
    return cfg->endpoint;
  }
  v = getenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS");
  if (v && strcasecmp(v, "true") == 0)
    return NULL;
  v = getenv(vars[svc]);
  if (v && *v) {
    if (source)
      *source = vars[svc];
    return v;
  }
  v = getenv("AWS_ENDPOINT_URL");
  if (v && *v) {
    if (source)
      *source = "AWS_ENDPOINT_URL";
    return v;
  }
  return NULL;
}

