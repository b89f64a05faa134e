/* kcld/handler.h — the plugin ABI: a C shared object that handles records
 * in kcld's own process (handler.type: plugin, handler.path: the .so).
 *
 * A plugin defines these four symbols with C linkage:
 *
 *   const uint32_t kcld_handler_abi_version = KCLD_HANDLER_ABI_VERSION;
 *   int  kcld_plugin_init(const struct kcld_plugin_kv *cfg, size_t n,
 *                         void **state, char *err, size_t errlen);
 *   void kcld_plugin_process(void *state,
 *                            const struct kcld_plugin_batch *batch,
 *                            struct kcld_plugin_result *result);
 *   void kcld_plugin_shutdown(void *state);
 *
 * kcld loads the object with dlopen() at start-up and refuses to start,
 * with a message naming the file, when kcld_handler_abi_version is missing
 * or is neither the version kcld was built with nor an older one it still
 * takes, or when another symbol is missing, or when init fails.  The
 * version changes whenever a struct below or a function's meaning changes.
 *
 * Versions.  2 adds tumbling windows (window.tumbling): the batch's
 * `window` and the result's `set_state`, appended to the structs of
 * version 1, whose members are unchanged.  kcld still loads a version 1
 * plugin and gives it version 1's structs, unless window.tumbling is set:
 * then it refuses to start (rebuild the plugin against this header).
 *
 * Threads.  kcld_plugin_init and kcld_plugin_shutdown run once, on kcld's
 * main thread.  kcld_plugin_process runs on kcld's worker pool threads, and
 * may run on several threads at once for batches of different shards (or of
 * one shard with batch.parallelization_factor > 1): shared state must be
 * guarded by the plugin.  Batches of one shard (factor 1) arrive one at a
 * time, in order.
 *
 * Memory.  Everything kcld passes in stays valid only during the call; the
 * plugin copies what it keeps.  The plugin returns nothing that kcld must
 * free: messages are written into the result's fixed buffers.
 *
 * Only plain C types appear here: no kcld internals, no libuv, no jansson. */
#ifndef KCLD_HANDLER_H
#define KCLD_HANDLER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KCLD_HANDLER_ABI_VERSION 2u

/* One configuration entry: a key of the handler's config subtree relative
 * to `handler.` ("type", "path", "timeout", "concurrency", "command", ...)
 * and its value as text (durations in the config's own form, e.g. "5m";
 * lists joined with single spaces).  Unset string keys are passed as "". */
struct kcld_plugin_kv {
  const char *key;
  const char *value;
};

/* One Kinesis user record (after KPL de-aggregation). */
struct kcld_plugin_record {
  const uint8_t *data;            /* payload, NOT NUL-terminated */
  size_t data_len;
  const char *partition_key;      /* NUL-terminated UTF-8 */
  size_t partition_key_len;       /* bytes, without the terminator */
  const char *sequence_number;    /* NUL-terminated decimal */
  uint64_t sub_sequence_number;   /* index in its KPL aggregate, else 0 */
  int64_t arrival_ms;             /* epoch ms; -1 when unknown */
  const char *explicit_hash_key;  /* decimal string, or NULL */
};

/* ABI 2: the tumbling window of a batch (window.tumbling), as AWS
 * Lambda's KinesisTimeWindowEvent has it.  Each record belongs to the
 * window [start, end) of its arrival time (end - start = window.tumbling,
 * start a multiple of it); a batch never spans two windows. */
struct kcld_plugin_window {
  int64_t start_ms;               /* epoch ms */
  int64_t end_ms;
  const char *state;              /* NUL-terminated JSON object: the state
                                     the previous call of this window set;
                                     "{}" at the window's start */
  size_t state_len;               /* bytes, without the terminator */
  int is_final;                   /* isFinalInvokeForWindow: the call that
                                     closes the window, count is 0; the
                                     state it sets is dropped */
  int is_terminated_early;        /* isWindowTerminatedEarly: the window
                                     closes before its end (the state
                                     outgrew 1 MiB, or the shard ended) */
};

/* A batch of records of one shard, in shard order. */
struct kcld_plugin_batch {
  const char *shard_id;
  const struct kcld_plugin_record *records;
  size_t count;                   /* >= 1; 0 only when window->is_final */
  int64_t millis_behind_latest;   /* -1 when unknown */
  unsigned attempt;               /* 1 on the first try, 2 on a retry ... */
  /* ABI 2: */
  const struct kcld_plugin_window *window; /* NULL without window.tumbling */
};

enum kcld_plugin_status {
  KCLD_PLUGIN_OK = 0,       /* every record was handled */
  KCLD_PLUGIN_FAILED = 1,   /* the whole batch failed: retry it */
  KCLD_PLUGIN_PARTIAL = 2   /* records [0, first_failed) were handled;
                               retry from first_failed (Lambda's
                               ReportBatchItemFailures) */
};

#define KCLD_PLUGIN_ERROR_TYPE_MAX 64
#define KCLD_PLUGIN_ERROR_MESSAGE_MAX 512

/* What kcld_plugin_process answers.  kcld zeroes it before the call (but
 * for set_state and kcld_private), so a plugin that only sets nothing
 * answers OK - except with a window, where OK and PARTIAL need a state. */
struct kcld_plugin_result {
  int status;                     /* enum kcld_plugin_status */
  size_t first_failed;            /* PARTIAL: index < count */
  char error_type[KCLD_PLUGIN_ERROR_TYPE_MAX];        /* NUL-terminated */
  char error_message[KCLD_PLUGIN_ERROR_MESSAGE_MAX];  /* NUL-terminated */
  /* ABI 2, with a window: sets the window's new state, a JSON object of
   * json[0..len) (copied; a later call replaces it).  Returns 0, or -1
   * when out of memory.  An OK or PARTIAL answer without a state, or with
   * one that is not a JSON object, fails the batch (MissingState,
   * InvalidState) as in Lambda; a state over 1 MiB ends the window early.
   * Call it from kcld_plugin_process only. */
  int (*set_state)(struct kcld_plugin_result *result, const char *json,
                   size_t len);
  void *kcld_private;             /* kcld's; the plugin leaves it alone */
};

/* The ABI version the plugin was built for: KCLD_HANDLER_ABI_VERSION. */
extern const uint32_t kcld_handler_abi_version;

/* Starts the plugin with the n entries of cfg.  Returns 0 and may set
 * *state (passed to every later call), or non-zero with a NUL-terminated
 * reason in err[0..errlen) - kcld then refuses to start. */
int kcld_plugin_init(const struct kcld_plugin_kv *cfg, size_t n,
                     void **state, char *err, size_t errlen);

/* Handles one batch and fills *result.  A status other than the three
 * above, or PARTIAL with first_failed >= count, counts as FAILED. */
void kcld_plugin_process(void *state, const struct kcld_plugin_batch *batch,
                         struct kcld_plugin_result *result);

/* Frees the plugin's state; no batch is in flight.  Called once, after a
 * successful init, before kcld unloads the object. */
void kcld_plugin_shutdown(void *state);

#ifdef __cplusplus
}
#endif

#endif
