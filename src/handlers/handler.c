/* handler.c — picks the handler that handler.type names. */
#include "handlers/handler.h"

#include "err.h"
#include "handlers/dynamodb_sink.h"
#include "handlers/lambda.h"
#include "handlers/multilang.h"
#include "handlers/plugin.h"
#include "handlers/stdout.h"
#include "log.h"

int kcld_handler_new(const struct kcld_handler_env *env,
                     struct kcld_handler **out)
{
  switch (env->cfg->handler.type) {
  case KCLD_CONFIG_HANDLER_STDOUT:
    return kcld_handler_stdout_new(env, out);
  case KCLD_CONFIG_HANDLER_MULTILANG:
    return kcld_handler_multilang_new(env, out);
  case KCLD_CONFIG_HANDLER_DYNAMODB:
    return kcld_dynamodb_sink_new(env, out);
  case KCLD_CONFIG_HANDLER_PLUGIN:
    return kcld_handler_plugin_new(env, out);
  case KCLD_CONFIG_HANDLER_LAMBDA:
    return kcld_handler_lambda_new(env, out);
  }
  kcld_log(KCLD_LOG_ERROR,
           "handler.type is not available in this build (see issue tracker)",
           NULL);
  return KCLD_ECONFIG;
}
