/* recs.c — see recs.h. */
#include "recs.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

void kcld_test_recs_make(struct kcld_test_recs *s, size_t n,
                         const size_t *sizes, size_t size)
{
  assert_true(n <= KCLD_TEST_RECS_MAX);
  memset(s, 0, sizeof(*s));
  for (size_t i = 0; i < n; i++) {
    size_t len = sizes ? sizes[i] : size;
    snprintf(s->seq[i], sizeof(s->seq[i]), "4960%026zu", i + 1);
    snprintf(s->key[i], sizeof(s->key[i]), "k%zu", i);
    s->data[i] = malloc(len ? len : 1);
    assert_non_null(s->data[i]);
    memset(s->data[i], 'a' + (int)(i % 26), len);
    s->r[i].data = s->data[i];
    s->r[i].data_len = len;
    s->r[i].partition_key = s->key[i];
    s->r[i].partition_key_len = strlen(s->key[i]);
    s->r[i].sequence_number = s->seq[i];
    s->r[i].sub_sequence_number = i % 2;
    s->r[i].arrival_ms = 1795344059800 + (int64_t)i;
    s->p[i] = &s->r[i];
  }
}

void kcld_test_recs_free(struct kcld_test_recs *s)
{
  for (size_t i = 0; i < KCLD_TEST_RECS_MAX; i++)
    free(s->data[i]);
}
