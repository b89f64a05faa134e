/* seq.c — sequence number validity and numeric order, and positions. */
#include "base/seq.h"

#include <stdio.h>
#include <string.h>

int kcld_seq_valid(const char *seq)
{
  size_t n = 0;
  if (seq == NULL)
    return 0;
  for (; seq[n] != '\0'; n++) {
    if (seq[n] < '0' || seq[n] > '9' || n >= KCLD_SEQ_MAX)
      return 0;
  }
  return n > 0;
}

int kcld_seq_compare(const char *a, const char *b)
{
  int va = kcld_seq_valid(a), vb = kcld_seq_valid(b);
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

int kcld_seq_position_compare(const char *seq_a, uint64_t sub_a,
                              const char *seq_b, uint64_t sub_b)
{
  int c = kcld_seq_compare(seq_a, seq_b);
  if (c != 0)
    return c;
  return (sub_a > sub_b) - (sub_a < sub_b);
}

void kcld_seq_pos_set(struct kcld_seq_pos *p, const char *seq, uint64_t sub)
{
  snprintf(p->seq, sizeof(p->seq), "%s", seq);
  p->sub = sub;
  p->set = 1;
}

int kcld_seq_pos_compare(const struct kcld_seq_pos *p, const char *seq,
                         uint64_t sub)
{
  return kcld_seq_position_compare(p->seq, p->sub, seq, sub);
}
