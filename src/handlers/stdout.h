/* stdout.h — the stdout handler: one JSON line per record, in the shape of a
 * Lambda Kinesis event record, to standard output or to handler.path.  For
 * debugging, piping, and as the simplest handler in tests. */
#ifndef KCLD_HANDLERS_STDOUT_H
#define KCLD_HANDLERS_STDOUT_H

#include "handlers/handler.h"

/* Opens handler.path for appending (or uses stdout).  Returns 0 or
 * KCLD_EIO with the reason logged. */
int kcld_handler_stdout_new(const struct kcld_handler_env *env,
                            struct kcld_handler **out);

#endif
