/* deagg.c — the user records of a KPL aggregate as struct kcld_record, on
 * base/kpl.h's reader. */
#include "consume/deagg.h"

#include "base/kpl.h"
#include "err.h"

long kcld_deagg_expand(const struct kcld_record *outer,
                       struct kcld_record *out, size_t out_cap, void *keys,
                       size_t keys_cap, size_t *keys_used)
{
  struct kcld_kpl_reader rd;
  struct kcld_kpl_record u;
  size_t i = 0;
  int rc;

  if (kcld_kpl_reader_init(&rd, outer->data, outer->data_len, keys, keys_cap,
                           keys_used) != 0)
    return KCLD_EINVAL;
  while ((rc = kcld_kpl_reader_next(&rd, &u)) == 1) {
    if (i >= out_cap)
      return KCLD_EINVAL;
    struct kcld_record *r = &out[i];
    r->data = u.data;
    r->data_len = u.data_len;
    r->partition_key = u.partition_key;
    r->partition_key_len = u.partition_key_len;
    r->explicit_hash_key = u.explicit_hash_key;
    r->sequence_number = outer->sequence_number;
    r->encryption_type = outer->encryption_type;
    r->sub_sequence_number = i;
    r->arrival_ms = outer->arrival_ms;
    r->batch = outer->batch;
    r->aggregated = 1;
    r->filtered = 0;
    i++;
  }
  return rc == 0 && i > 0 ? (long)i : KCLD_EINVAL;
}
