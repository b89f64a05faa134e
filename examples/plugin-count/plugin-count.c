/* plugin-count.c — the smallest useful kcld plugin: counts records and
 * payload bytes, and says so at shutdown.  The benchmarks use it as the
 * no-op handler.  With window.tumbling it also counts the records of each
 * window in the window's state ({"records":N}) and prints the total at the
 * window's final call.
 *
 *   handler:
 *     type: plugin
 *     path: /usr/local/lib/kcld/plugin-count.so
 *
 * Build: cc -std=c11 -O2 -fPIC -shared -I../../include \
 *           -o plugin-count.so plugin-count.c */
#include <stdatomic.h>
#include <stdint.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "kcld/handler.h"

/* The totals are per process (there is one handler per kcld). */
static atomic_uint_least64_t s_records;
static atomic_uint_least64_t s_bytes;
static atomic_uint_least64_t s_batches;

/* Also exported: the totals so far, for tests and benchmarks that load the
 * same object. */
void plugin_count_totals(uint64_t *records, uint64_t *bytes,
                         uint64_t *batches);

const uint32_t kcld_handler_abi_version = KCLD_HANDLER_ABI_VERSION;

int kcld_plugin_init(const struct kcld_plugin_kv *cfg, size_t n,
                     void **state, char *err, size_t errlen)
{
  (void)cfg;
  (void)n;
  (void)err;
  (void)errlen;
  atomic_store(&s_records, 0);
  atomic_store(&s_bytes, 0);
  atomic_store(&s_batches, 0);
  *state = NULL;
  return 0;
}

/* The window's count so far: {"records":N}; 0 for "{}". */
static uint64_t window_records(const struct kcld_plugin_window *w)
{
  unsigned long long n = 0;
  const char *p = strstr(w->state, "\"records\":");
  if (p)
    sscanf(p + 10, "%llu", &n);
  return n;
}

/* Counts the batch into the window's state; the final call reports. */
static void count_window(const struct kcld_plugin_batch *batch,
                         struct kcld_plugin_result *result)
{
  const struct kcld_plugin_window *w = batch->window;
  uint64_t n = window_records(w) + batch->count;
  char text[48];
  int len;

  if (w->is_final)
    fprintf(stderr,
            "{\"plugin\":\"count\",\"shard\":\"%s\",\"window_start_ms\":%"
            PRId64 ",\"window_records\":%" PRIu64 ",\"early\":%s}\n",
            batch->shard_id, w->start_ms, n,
            w->is_terminated_early ? "true" : "false");
  len = snprintf(text, sizeof(text), "{\"records\":%" PRIu64 "}", n);
  if (result->set_state(result, text, (size_t)len) != 0)
    result->status = KCLD_PLUGIN_FAILED;
}

void kcld_plugin_process(void *state, const struct kcld_plugin_batch *batch,
                         struct kcld_plugin_result *result)
{
  uint64_t bytes = 0;

  (void)state;
  for (size_t i = 0; i < batch->count; i++)
    bytes += batch->records[i].data_len;
  atomic_fetch_add(&s_records, batch->count);
  atomic_fetch_add(&s_bytes, bytes);
  atomic_fetch_add(&s_batches, 1);
  result->status = KCLD_PLUGIN_OK;
  if (batch->window)
    count_window(batch, result);
}

void kcld_plugin_shutdown(void *state)
{
  (void)state;
  fprintf(stderr,
          "{\"plugin\":\"count\",\"records\":%llu,\"bytes\":%llu,"
          "\"batches\":%llu}\n",
          (unsigned long long)atomic_load(&s_records),
          (unsigned long long)atomic_load(&s_bytes),
          (unsigned long long)atomic_load(&s_batches));
}

void plugin_count_totals(uint64_t *records, uint64_t *bytes,
                         uint64_t *batches)
{
  *records = atomic_load(&s_records);
  *bytes = atomic_load(&s_bytes);
  *batches = atomic_load(&s_batches);
}
