/* old_abi.c — a plugin built for ABI version 1 (before tumbling windows):
 * kcld still runs it without a window, and refuses it with one. */
#include "kcld/handler.h"

const uint32_t kcld_handler_abi_version = 1u;

int kcld_plugin_init(const struct kcld_plugin_kv *cfg, size_t n,
                     void **state, char *err, size_t errlen)
{
  (void)cfg, (void)n, (void)err, (void)errlen;
  *state = 0;
  return 0;
}

void kcld_plugin_process(void *state, const struct kcld_plugin_batch *batch,
                         struct kcld_plugin_result *result)
{
  (void)state, (void)batch;
  result->status = KCLD_PLUGIN_OK;
}

void kcld_plugin_shutdown(void *state)
{
  (void)state;
}
