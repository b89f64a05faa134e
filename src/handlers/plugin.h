/* plugin.h — the plugin handler: a C shared object (handler.path) that
 * implements include/kcld/handler.h, loaded with dlopen() and called on the
 * worker pool. */
#ifndef KCLD_HANDLERS_PLUGIN_H
#define KCLD_HANDLERS_PLUGIN_H

#include "handlers/handler.h"

/* Loads handler.path, checks kcld_handler_abi_version against
 * KCLD_HANDLER_ABI_VERSION and that every entry point is there, and calls
 * the plugin's init with the handler's config subtree as key/value pairs.
 * Returns 0 and *out, or KCLD_ECONFIG (cannot load, wrong or missing ABI
 * version, missing symbol, init refused: the reason is logged with the
 * path), or KCLD_ENOMEM. */
int kcld_handler_plugin_new(const struct kcld_handler_env *env,
                            struct kcld_handler **out);

#endif
