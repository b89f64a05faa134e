/* main.c — kcld's command line: options, subcommands, then the daemon.
 *
 *   kcld [--config PATH] [-v...]        run the daemon
 *   kcld --properties FILE [-v...]      run from a KCL .properties file
 *   kcld --check-config [PATH]          validate a file, exit 0 or 1
 *   kcld COMMAND ARGS...                a subcommand (argv[1] not an option)
 *
 * Exit codes: 0 success, 1 invalid configuration or failed run, 2 usage
 * error.  This is the only file that calls exit (by returning from main). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/produce.h"
#include "cmd/redrive.h"
#include "cmd/status.h"
#include "config.h"
#include "daemon.h"
#include "err.h"
#include "kcld/version.h"
#include "log.h"
#include "properties.h"

#define EXIT_USAGE 2

static const char s_usage[] =
  "usage: kcld [OPTIONS]\n"
  "       kcld --check-config [PATH]\n"
  "       kcld COMMAND [ARGS]   (kcld COMMAND --help)\n"
  "\n"
  "Consumes an Amazon Kinesis stream as configured in PATH (default\n"
  KCLD_CONFIG_DEFAULT_PATH "); see docs/configuration.md.\n"
  "\n"
  "options:\n"
  "  -c, --config PATH     configuration file (default "
  KCLD_CONFIG_DEFAULT_PATH ")\n"
  "  -p, --properties FILE a KCL MultiLangDaemon .properties file instead\n"
  "                        of the YAML configuration (docs/handlers.md)\n"
  "  -t, --check-config    validate the configuration and exit: 0 when it\n"
  "                        is valid, 1 with every error; PATH may follow\n"
  "      --dump-config     print the effective configuration (secrets\n"
  "                        redacted) and exit\n"
  "  -v, --verbose         log more: each -v lowers log.level by one\n"
  "  -V, --version         print the version and exit\n"
  "  -h, --help            print this help and exit\n";

/* ======== Subcommands ======== */

static const char s_config_reference_usage[] =
  "usage: kcld config-reference yaml|markdown\n"
  "\n"
  "Prints every configuration key with its type, default, range and\n"
  "description, from the table kcld validates with: yaml is the commented\n"
  "example file (conf/kcld.yaml), markdown the reference\n"
  "(docs/configuration.md).\n";

static int cmd_config_reference(int argc, char **argv)
{
  enum kcld_config_ref fmt;
  if (argc == 2 && (strcmp(argv[1], "--help") == 0 ||
                    strcmp(argv[1], "-h") == 0)) {
    fputs(s_config_reference_usage, stdout);
    return 0;
  }
  if (argc == 2 && strcmp(argv[1], "yaml") == 0) {
    fmt = KCLD_CONFIG_REF_YAML;
  } else if (argc == 2 && strcmp(argv[1], "markdown") == 0) {
    fmt = KCLD_CONFIG_REF_MARKDOWN;
  } else {
    fputs(s_config_reference_usage, stderr);
    return EXIT_USAGE;
  }
  char *text = kcld_config_reference(fmt);
  if (!text) {
    fprintf(stderr, "kcld: out of memory\n");
    return 1;
  }
  fputs(text, stdout);
  free(text);
  return fflush(stdout) == 0 ? 0 : 1;
}

/* A subcommand gets argv from its own name on; --help lists them all. */
static const struct command {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *summary;
} s_commands[] = {
  {"config-reference", cmd_config_reference,
   "print every configuration key: yaml or markdown"},
  {"produce", kcld_produce_command,
   "put sample events on a stream (load generator)"},
  {"status", kcld_status_command,
   "show shards, leases, owners, checkpoints and lag"},
  {"redrive", kcld_redrive_command,
   "put dead-lettered records back into the stream"},
};

static void usage(FILE *out)
{
  fputs(s_usage, out);
  fputs("\ncommands:\n", out);
  for (size_t i = 0; i < sizeof(s_commands) / sizeof(s_commands[0]); i++)
    fprintf(out, "  %-20s  %s\n", s_commands[i].name, s_commands[i].summary);
}

static int run_command(int argc, char **argv)
{
  /* The commands are tools for people: warnings and errors only, as text. */
  kcld_log_setup(KCLD_LOG_WARN, KCLD_LOG_TEXT, NULL);
  for (size_t i = 0; i < sizeof(s_commands) / sizeof(s_commands[0]); i++)
    if (strcmp(argv[0], s_commands[i].name) == 0)
      return s_commands[i].run(argc, argv);
  fprintf(stderr, "kcld: unknown command '%s'\n\n", argv[0]);
  usage(stderr);
  return EXIT_USAGE;
}

/* ======== Options and the daemon ======== */

/* The checks against this machine (the handler's program, the plugin);
 * prints what is wrong.  Returns 0 or -1. */
static int check_runtime(const struct kcld_config *cfg, const char *path)
{
  char *errors = NULL;
  int rc = kcld_config_check_runtime(cfg, &errors);
  if (rc == KCLD_ECONFIG) {
    fputs(errors ? errors : "", stderr);
    fprintf(stderr, "kcld: %s: configuration invalid\n", path);
  } else if (rc != 0) {
    fprintf(stderr, "kcld: %s: %s\n", path, kcld_strerror(rc));
  }
  free(errors);
  return rc == 0 ? 0 : -1;
}

/* What SIGHUP re-reads: the same file, the same way. */
struct source {
  const char *path;
  int properties;
};

/* kcld_daemon_load_fn: the file loaded and checked as at start-up; the
 * daemon logs the errors. */
static int reload(void *arg, struct kcld_config **out, char **errors)
{
  const struct source *src = arg;
  int rc = src->properties ? kcld_properties_load(src->path, out, errors)
                           : kcld_config_load(src->path, out, errors);
  if (rc != 0)
    return rc;
  if ((rc = kcld_config_check_runtime(*out, errors)) != 0) {
    kcld_config_free(*out);
    *out = NULL;
  }
  return rc;
}

/* Loads the config or prints why not; returns NULL on failure. */
static struct kcld_config *load(const char *path, int properties)
{
  struct kcld_config *cfg = NULL;
  char *errors = NULL;
  int rc = properties ? kcld_properties_load(path, &cfg, &errors)
                      : kcld_config_load(path, &cfg, &errors);
  if (rc == 0)
    return cfg;
  if (rc == KCLD_ECONFIG) {
    fputs(errors ? errors : "", stderr);
    fprintf(stderr, "kcld: %s: configuration invalid\n", path);
  } else if (errors) {
    fprintf(stderr, "kcld: %s", errors);
  } else {
    fprintf(stderr, "kcld: %s: %s\n", path, kcld_strerror(rc));
  }
  free(errors);
  return NULL;
}

int main(int argc, char **argv)
{
  static const struct option opts[] = {
    {"config", required_argument, NULL, 'c'},
    {"check-config", optional_argument, NULL, 't'},
    {"properties", required_argument, NULL, 'p'},
    {"dump-config", no_argument, NULL, 'D'},
    {"verbose", no_argument, NULL, 'v'},
    {"version", no_argument, NULL, 'V'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
  };
  const char *path = NULL, *check_path = NULL, *props = NULL;
  int check = 0, dump = 0, verbose = 0, c;

  if (argc > 1 && argv[1][0] != '-')
    return run_command(argc - 1, argv + 1);

  opterr = 0;
  while ((c = getopt_long(argc, argv, ":c:p:tvVh", opts, NULL)) != -1) {
    switch (c) {
    case 'c':
      path = optarg;
      break;
    case 'p':
      props = optarg;
      break;
    case 't':
      check = 1;
      if (optarg)
        check_path = optarg;
      break;
    case 'D':
      dump = 1;
      break;
    case 'v':
      verbose++;
      break;
    case 'V':
      printf("kcld %s\n", KCLD_VERSION_STRING);
      return 0;
    case 'h':
      usage(stdout);
      return 0;
    case ':':
      fprintf(stderr, "kcld: option '%s' needs an argument\n\n",
              argv[optind - 1]);
      usage(stderr);
      return EXIT_USAGE;
    default:
      if (optopt)
        fprintf(stderr, "kcld: unknown option '-%c'\n\n", optopt);
      else
        fprintf(stderr, "kcld: unknown option '%s'\n\n", argv[optind - 1]);
      usage(stderr);
      return EXIT_USAGE;
    }
  }
  /* `--check-config PATH` / `--dump-config PATH`: one positional path. */
  if ((check || dump) && optind == argc - 1 && !check_path)
    check_path = argv[optind++];
  if (optind < argc) {
    fprintf(stderr, "kcld: unexpected argument '%s'\n\n", argv[optind]);
    usage(stderr);
    return EXIT_USAGE;
  }
  if (check_path) {
    if (path && strcmp(path, check_path) != 0) {
      fprintf(stderr, "kcld: two configuration files given: '%s' and '%s'\n",
              path, check_path);
      return EXIT_USAGE;
    }
    path = check_path;
  }
  if (props && path) {
    fprintf(stderr, "kcld: --properties cannot be combined with a YAML "
            "configuration ('%s')\n", path);
    return EXIT_USAGE;
  }
  if (props)
    path = props;
  if (!path)
    path = KCLD_CONFIG_DEFAULT_PATH;

  struct kcld_config *cfg = load(path, props != NULL);
  if (!cfg)
    return 1;
  if (!dump && check_runtime(cfg, path) != 0) {
    kcld_config_free(cfg);
    return 1;
  }
  if (check || dump) {
    int rc = 0;
    if (dump) {
      char *text = kcld_config_dump(cfg);
      if (text)
        fputs(text, stdout);
      else
        rc = 1;
      free(text);
    } else {
      printf("kcld: %s: configuration ok\n", path);
    }
    kcld_config_free(cfg);
    return fflush(stdout) == 0 ? rc : 1;
  }

  kcld_log_setup(kcld_log_level_lower(cfg->log.level, verbose),
                 cfg->log.format, NULL);
  struct source src = {path, props != NULL};
  struct kcld_daemon_opts dopts = {
    .cfg = cfg, .load = reload, .load_arg = &src, .verbose = verbose};
  int rc = kcld_daemon_run(&dopts);
  if (rc == KCLD_ECANCELED) /* a second signal: leave at once */
    _Exit(1);
  kcld_config_free(cfg);
  return rc == 0 ? 0 : 1;
}
