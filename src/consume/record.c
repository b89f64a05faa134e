/* record.c — batch reference counting and sequence number ordering. */
#include "consume/record.h"

#include <stdlib.h>
#include <string.h>

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
  free(batch->extra);
  free(batch); /* the batch struct heads its own main block */
}

int kcld_record_seq_valid(const char *seq)
{
  size_t n = 0;
  if (seq == NULL)
    return 0;
  for (; seq[n] != '\0'; n++) {
    if (seq[n] < '0' || seq[n] > '9' || n >= KCLD_RECORD_SEQ_MAX)
      return 0;
  }
  return n > 0;
}

int kcld_record_seq_compare(const char *a, const char *b)
{
  int va = kcld_record_seq_valid(a), vb = kcld_record_seq_valid(b);
  if (!va || !vb) {
    if (va != vb)
      return va ? 1 : -1;
    if (a == NULL || b == NULL)
      return (a != NULL) - (b != NULL);
    return strcmp(a, b);
  }
  /* Both are digit strings: drop leading zeros (keep one digit), then the
   * longer is the larger, and equal lengths compare digit by digit. */
  while (a[0] == '0' && a[1] != '\0')
    a++;
  while (b[0] == '0' && b[1] != '\0')
    b++;
  size_t la = strlen(a), lb = strlen(b);
  if (la != lb)
    return la < lb ? -1 : 1;
  int c = memcmp(a, b, la);
  return (c > 0) - (c < 0);
}

int kcld_record_position_compare(const char *seq_a, uint64_t sub_a,
                                 const char *seq_b, uint64_t sub_b)
{
  int c = kcld_record_seq_compare(seq_a, seq_b);
  if (c != 0)
    return c;
  return (sub_a > sub_b) - (sub_a < sub_b);
}
