/* record.c — batch reference counting; the last release gives the
 * batch's blocks back (budget.h); the sink's keep test over a new batch. */
#include "consume/record.h"

#include <stdlib.h>
#include <string.h>

#include "consume/budget.h"

struct kcld_record_batch *kcld_record_batch_acquire(
  struct kcld_record_batch *batch)
{
  /* Relaxed is enough to take a reference: the caller already holds one, so
   * the batch cannot go away meanwhile. */
  atomic_fetch_add_explicit(&batch->refs, 1, memory_order_relaxed);
  return batch;
}

void kcld_record_batch_release(struct kcld_record_batch *batch)
{
  if (batch == NULL)
    return;
  /* Release on the decrement, acquire before freeing: every other holder's
   * reads of the batch happen before the memory is freed. */
  if (atomic_fetch_sub_explicit(&batch->refs, 1, memory_order_release) != 1)
    return;
  atomic_thread_fence(memory_order_acquire);
  /* The batch struct heads its own main block. */
  if (batch->fetch_mem) {
    kcld_fetch_free(batch->extra);
    kcld_fetch_free(batch);
  } else {
    free(batch->extra);
    free(batch);
  }
}

size_t kcld_record_batch_filter(struct kcld_record_batch *batch,
                                kcld_record_keep_fn keep, const void *arg)
{
  /* The parse job owns the batch still: no one else reads it yet. */
  struct kcld_record *r = (struct kcld_record *)batch->records;
  size_t n = 0;
  for (size_t i = 0; i < batch->count; i++) {
    r[i].filtered = keep && keep(arg, &r[i]) == 0;
    n += (size_t)r[i].filtered;
  }
  return n;
}
