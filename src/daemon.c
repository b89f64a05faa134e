/* daemon.c — placeholder until the daemon lands (see daemon.h). */
#include "daemon.h"

#include "err.h"
#include "log.h"

int kcld_daemon_run(const struct kcld_config *cfg)
{
  (void)cfg;
  kcld_log(KCLD_LOG_ERROR, "daemon not built in this revision", NULL);
  return KCLD_EINVAL;
}
