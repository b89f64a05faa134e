/* daemon.h — the running daemon: everything after the configuration is
 * loaded and logging is set up.
 *
 * Contract with src/main.c: main loads and validates the config, sets up
 * logging (log.level, log.format, -v), then calls kcld_daemon_run() once and
 * exits 0 when it returns 0, else 1.  The daemon owns the loop, the AWS
 * clients, the lease coordinator, the handlers and signals:
 *   SIGTERM, SIGINT, SIGQUIT  graceful shutdown, within shutdown_timeout +
 *                             2 s; a second one: exit at once;
 *   SIGHUP                    reload the configuration (below);
 *   SIGUSR1                   one "status" log line (leases, lag, batches);
 *   SIGUSR2                   ignored (logged);
 *   SIGPIPE                   ignored (a closed pipe is an EPIPE error).
 *
 * Reload (SIGHUP): opts->load reads and validates the file again.  When it
 * fails, the errors (file:line:col) are logged and nothing changes.  When it
 * succeeds, the keys that may change live (kcld_config_key_live: log.*,
 * batch.*, retry.*, on_failure.*, fetch.max_records, fetch.idle_time, ...)
 * take effect from the next batch or fetch, and the changed keys that need
 * a restart are named in one warning line (they keep their running value).
 *
 * Placeholder: the lead replaces this module. */
#ifndef KCLD_DAEMON_H
#define KCLD_DAEMON_H

#include "config.h"

/* Reads and validates the configuration again (as at start-up, including
 * kcld_config_check_runtime).  Returns 0 and *out, or a negative KCLD_E*
 * code and *errors: a malloc'd text, one line per problem
 * ("file:line:col: key: message\n"), or NULL. */
typedef int (*kcld_daemon_load_fn)(void *arg, struct kcld_config **out,
                                   char **errors);

struct kcld_daemon_opts {
  const struct kcld_config *cfg; /* valid until kcld_daemon_run returns */
  kcld_daemon_load_fn load;      /* SIGHUP; NULL: reload refused */
  void *load_arg;
  int verbose;                   /* -v given this many times: log.level
                                    lowered by as many levels, on reload
                                    too */
};

/* Runs kcld until shutdown.  Returns 0 after a clean shutdown, or a negative
 * KCLD_E* code (already logged) when start-up or the run failed, or
 * KCLD_ECANCELED when main must leave at once without cleaning up (a second
 * signal, or a shutdown still not done 2 s past shutdown_timeout: a thread
 * of the pool may be stuck in a handler).  Every handler child's process
 * group has been SIGKILLed then. */
int kcld_daemon_run(const struct kcld_daemon_opts *opts);

#endif
