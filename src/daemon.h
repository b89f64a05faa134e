/* daemon.h — the running daemon: everything after the configuration is
 * loaded and logging is set up.
 *
 * Contract with src/main.c: main loads and validates the config, sets up
 * logging (log.level, log.format, -v), then calls kcld_daemon_run() once and
 * exits 0 when it returns 0, else 1.  The daemon owns signals (SIGTERM and
 * SIGINT: graceful shutdown, within shutdown_timeout + 2 s; a second one:
 * exit at once), the loop, the AWS clients, the lease coordinator and the
 * handlers; it returns after a graceful shutdown.  `cfg` stays valid until
 * it returns.
 *
 * Placeholder: the lead replaces this module. */
#ifndef KCLD_DAEMON_H
#define KCLD_DAEMON_H

#include "config.h"

/* Runs kcld until shutdown.  Returns 0 after a clean shutdown, or a negative
 * KCLD_E* code (already logged) when start-up or the run failed, or
 * KCLD_ECANCELED when main must leave at once without cleaning up (a second
 * signal, or a shutdown still not done 2 s past shutdown_timeout: a thread
 * of the pool may be stuck in a handler).  Every handler child's process
 * group has been SIGKILLed then. */
int kcld_daemon_run(const struct kcld_config *cfg);

#endif
