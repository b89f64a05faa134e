/* partial.c — a plugin for the handler tests.
 *
 * init refuses handler.table "refuse-init" and keeps a copy of the pairs.
 * process, per batch: the first record whose data starts with "bad" makes
 * the batch PARTIAL at its index (error type "BadRecord"); a record "fail"
 * makes it FAILED; a record "config" makes it FAILED with the pairs it got
 * as the message ("k=v;k=v;..."); a record "bogus" answers PARTIAL with an
 * index past the batch.  Otherwise OK. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kcld/handler.h"

struct state {
  char config[KCLD_PLUGIN_ERROR_MESSAGE_MAX];
};

const uint32_t kcld_handler_abi_version = KCLD_HANDLER_ABI_VERSION;

int kcld_plugin_init(const struct kcld_plugin_kv *cfg, size_t n,
                     void **state, char *err, size_t errlen)
{
  struct state *s;
  size_t off = 0;

  for (size_t i = 0; i < n; i++)
    if (strcmp(cfg[i].key, "table") == 0 &&
        strcmp(cfg[i].value, "refuse-init") == 0) {
      snprintf(err, errlen, "table refuse-init is refused");
      return 1;
    }
  s = calloc(1, sizeof(*s));
  if (!s)
    return 1;
  for (size_t i = 0; i < n && off < sizeof(s->config); i++) {
    int w = snprintf(s->config + off, sizeof(s->config) - off, "%s=%s;",
                     cfg[i].key, cfg[i].value);
    if (w < 0)
      break;
    off += (size_t)w;
  }
  *state = s;
  return 0;
}

static int is(const struct kcld_plugin_record *r, const char *text)
{
  return r->data_len == strlen(text) && memcmp(r->data, text,
                                               r->data_len) == 0;
}

void kcld_plugin_process(void *state, const struct kcld_plugin_batch *batch,
                         struct kcld_plugin_result *result)
{
  struct state *s = state;

  for (size_t i = 0; i < batch->count; i++) {
    const struct kcld_plugin_record *r = &batch->records[i];
    if (r->data_len >= 3 && memcmp(r->data, "bad", 3) == 0) {
      result->status = KCLD_PLUGIN_PARTIAL;
      result->first_failed = i;
      snprintf(result->error_type, sizeof(result->error_type), "BadRecord");
      snprintf(result->error_message, sizeof(result->error_message),
               "record %s is bad", r->sequence_number);
      return;
    }
    if (is(r, "fail")) {
      result->status = KCLD_PLUGIN_FAILED;
      snprintf(result->error_type, sizeof(result->error_type), "Failed");
      return;
    }
    if (is(r, "config")) {
      result->status = KCLD_PLUGIN_FAILED;
      snprintf(result->error_type, sizeof(result->error_type), "Config");
      snprintf(result->error_message, sizeof(result->error_message), "%s",
               s->config);
      return;
    }
    if (is(r, "bogus")) {
      result->status = KCLD_PLUGIN_PARTIAL;
      result->first_failed = batch->count + 5;
      return;
    }
  }
  result->status = KCLD_PLUGIN_OK;
}

void kcld_plugin_shutdown(void *state)
{
  free(state);
}
