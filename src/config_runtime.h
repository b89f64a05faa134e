/* config_runtime.h — the derived defaults that read the machine (the
 * host name, the process id, the environment), for the parse.
 *
 * Internal to the config module (config_runtime.c). */
#ifndef KCLD_CONFIG_RUNTIME_H
#define KCLD_CONFIG_RUNTIME_H

#include "config.h"

/* worker_id when not set: hostname:pid.  Returns 0 or KCLD_ENOMEM. */
int kcld_config_derive_worker_id(struct kcld_config *cfg);

/* on_failure.dir when no destination is set: $STATE_DIRECTORY/dead-letter
 * (its first directory, under systemd), /var/lib/kcld/dead-letter as root,
 * else ${XDG_STATE_HOME:-$HOME/.local/state}/kcld/dead-letter.  Returns 0
 * or KCLD_ENOMEM. */
int kcld_config_derive_dead_letter_dir(struct kcld_config *cfg);

#endif
