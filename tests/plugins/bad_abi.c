/* bad_abi.c — a plugin built for another ABI version: kcld must refuse it.
 * old_abi.c is this plugin with TEST_PLUGIN_ABI set to 1. */
#include "kcld/handler.h"

#ifndef TEST_PLUGIN_ABI
#define TEST_PLUGIN_ABI (KCLD_HANDLER_ABI_VERSION + 41u)
#endif

const uint32_t kcld_handler_abi_version = TEST_PLUGIN_ABI;

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
