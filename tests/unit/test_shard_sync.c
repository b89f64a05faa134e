/* test_shard_sync.c — which leases a shard sync creates (positions, parents
 * first, LATEST after a reshard, cleaned-up parents never recreated) and
 * which finished leases may be deleted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "lease/shard_sync.h"

#define S0 "shardId-000000000000"
#define S1 "shardId-000000000001"
#define S2 "shardId-000000000002"
#define S3 "shardId-000000000003"
#define S4 "shardId-000000000004"

static struct kcld_kinesis_shard shard(const char *id, const char *parent,
                                       const char *adjacent, int closed)
{
  return (struct kcld_kinesis_shard){
    .shard_id = id, .parent_shard_id = parent,
    .adjacent_parent_shard_id = adjacent, .starting_hash_key = "0",
    .ending_hash_key = "99", .starting_sequence_number = "1",
    .ending_sequence_number = closed ? "2" : NULL};
}

/* A lease with the given checkpoint and parents (NULL-terminated). */
static struct kcld_lease *lease(const char *id, const char *cp, ...)
{
  struct kcld_lease *l = calloc(1, sizeof(*l));
  assert_non_null(l);
  l->shard_id = strdup(id);
  l->checkpoint = strdup(cp);
  va_list ap;
  va_start(ap, cp);
  const char *p;
  while ((p = va_arg(ap, const char *))) {
    l->parents = realloc(l->parents, (l->n_parents + 1) * sizeof(char *));
    l->parents[l->n_parents++] = strdup(p);
  }
  va_end(ap);
  return l;
}

static void add_child(struct kcld_lease *l, const char *id)
{
  l->children = realloc(l->children, (l->n_children + 1) * sizeof(char *));
  l->children[l->n_children++] = strdup(id);
}

static void free_leases(struct kcld_lease **v, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    kcld_lease_clean_up(v[i]);
    free(v[i]);
  }
}

struct plan {
  struct kcld_lease *v;
  size_t n;
};

static struct plan run(const struct kcld_kinesis_shard *s, size_t n,
                       struct kcld_lease **leases, size_t nl,
                       enum kcld_shard_sync_position pos)
{
  struct plan p;
  assert_int_equal(kcld_shard_sync_plan(s, n, (const struct kcld_lease *const
                                                 *)leases,
                                        nl, pos, &p.v, &p.n),
                   0);
  return p;
}

static void plan_free(struct plan *p)
{
  for (size_t i = 0; i < p->n; i++)
    kcld_lease_clean_up(&p->v[i]);
  free(p->v);
}

/* Index of id in the plan, or -1. */
static int at(const struct plan *p, const char *id)
{
  for (size_t i = 0; i < p->n; i++)
    if (strcmp(p->v[i].shard_id, id) == 0)
      return (int)i;
  return -1;
}

static void test_fresh_stream_trim_horizon(void **state)
{
  (void)state;
  struct kcld_kinesis_shard s[] = {shard(S0, NULL, NULL, 0),
                                   shard(S1, NULL, NULL, 0),
                                   shard(S2, NULL, NULL, 0)};
  struct plan p = run(s, 3, NULL, 0, KCLD_SHARD_SYNC_TRIM_HORIZON);
  assert_int_equal(p.n, 3);
  for (size_t i = 0; i < 3; i++) {
    assert_string_equal(p.v[i].checkpoint, "TRIM_HORIZON");
    assert_int_equal(p.v[i].n_parents, 0);
    assert_null(p.v[i].owner);
    assert_int_equal(p.v[i].counter, 0);
    assert_string_equal(p.v[i].starting_hash_key, "0");
    assert_string_equal(p.v[i].ending_hash_key, "99");
  }
  plan_free(&p);
  /* Nothing to do when every shard has its lease. */
  struct kcld_lease *l[] = {lease(S0, "1", NULL), lease(S1, "LATEST", NULL),
                            lease(S2, "SHARD_END", NULL)};
  p = run(s, 3, l, 3, KCLD_SHARD_SYNC_TRIM_HORIZON);
  assert_int_equal(p.n, 0);
  plan_free(&p);
  free_leases(l, 3);
}

/* S0 split into S1 and S2; S1 and S2 merged into S3; S4 separate. */
static void history(struct kcld_kinesis_shard *s)
{
  s[0] = shard(S3, S1, S2, 0); /* listed out of order on purpose */
  s[1] = shard(S1, S0, NULL, 1);
  s[2] = shard(S0, NULL, NULL, 1);
  s[3] = shard(S2, S0, NULL, 1);
  s[4] = shard(S4, NULL, NULL, 0);
}

static void test_parents_before_children(void **state)
{
  (void)state;
  struct kcld_kinesis_shard s[5];
  history(s);
  struct plan p = run(s, 5, NULL, 0, KCLD_SHARD_SYNC_TRIM_HORIZON);
  assert_int_equal(p.n, 5);
  assert_true(at(&p, S0) < at(&p, S1));
  assert_true(at(&p, S0) < at(&p, S2));
  assert_true(at(&p, S1) < at(&p, S3));
  assert_true(at(&p, S2) < at(&p, S3));
  const struct kcld_lease *m = &p.v[at(&p, S3)];
  assert_int_equal(m->n_parents, 2);
  assert_string_equal(m->parents[0], S1);
  assert_string_equal(m->parents[1], S2);
  assert_int_equal(p.v[at(&p, S1)].n_parents, 1);
  assert_string_equal(p.v[at(&p, S1)].parents[0], S0);
  plan_free(&p);

  p = run(s, 5, NULL, 0, KCLD_SHARD_SYNC_AT_TIMESTAMP);
  assert_int_equal(p.n, 5);
  for (size_t i = 0; i < p.n; i++)
    assert_string_equal(p.v[i].checkpoint, "AT_TIMESTAMP");
  plan_free(&p);
}

static void test_latest(void **state)
{
  (void)state;
  struct kcld_kinesis_shard s[5];
  history(s);
  /* Fresh: only the open shards, at LATEST. */
  struct plan p = run(s, 5, NULL, 0, KCLD_SHARD_SYNC_LATEST);
  assert_int_equal(p.n, 2);
  assert_string_equal(p.v[at(&p, S3)].checkpoint, "LATEST");
  assert_string_equal(p.v[at(&p, S4)].checkpoint, "LATEST");
  assert_int_equal(p.v[at(&p, S3)].n_parents, 2);
  plan_free(&p);

  /* S0 is being consumed: its descendants must not skip anything. */
  struct kcld_lease *l[] = {lease(S0, "12345", NULL),
                            lease(S4, "LATEST", NULL)};
  p = run(s, 5, l, 2, KCLD_SHARD_SYNC_LATEST);
  assert_int_equal(p.n, 3);
  assert_string_equal(p.v[at(&p, S1)].checkpoint, "TRIM_HORIZON");
  assert_string_equal(p.v[at(&p, S2)].checkpoint, "TRIM_HORIZON");
  assert_string_equal(p.v[at(&p, S3)].checkpoint, "TRIM_HORIZON");
  assert_true(at(&p, S1) < at(&p, S3));
  plan_free(&p);
  free_leases(l, 2);
}

static void test_cleaned_up_parents_not_recreated(void **state)
{
  (void)state;
  struct kcld_kinesis_shard s[5];
  history(s);
  /* S0 was finished and deleted; S1 and S2 have leases. */
  struct kcld_lease *l[] = {lease(S1, "5", S0, NULL),
                            lease(S2, "SHARD_END", S0, NULL),
                            lease(S4, "7", NULL)};
  struct plan p = run(s, 5, l, 3, KCLD_SHARD_SYNC_TRIM_HORIZON);
  assert_int_equal(p.n, 1);
  assert_int_equal(at(&p, S3), 0); /* only the merge child is missing */
  plan_free(&p);
  free_leases(l, 3);

  /* Only S3's lease is left: S0, S1, S2 are all done. */
  struct kcld_lease *l2[] = {lease(S3, "9", S1, S2, NULL),
                             lease(S4, "7", NULL)};
  p = run(s, 5, l2, 2, KCLD_SHARD_SYNC_TRIM_HORIZON);
  assert_int_equal(p.n, 0);
  plan_free(&p);
  free_leases(l2, 2);

  /* S1's children are not listed any more but a lease names S1: S1 done. */
  struct kcld_kinesis_shard s3[] = {shard(S1, NULL, NULL, 1)};
  struct kcld_lease *l3[] = {lease("shardId-000000000077", "3", S1, NULL)};
  p = run(s3, 1, l3, 1, KCLD_SHARD_SYNC_TRIM_HORIZON);
  assert_int_equal(p.n, 0);
  plan_free(&p);
  free_leases(l3, 1);
}

static void test_parent_outside_the_list(void **state)
{
  (void)state;
  struct kcld_kinesis_shard s[] = {shard(S4, "shardId-000000000099", NULL,
                                         0)};
  struct plan p = run(s, 1, NULL, 0, KCLD_SHARD_SYNC_LATEST);
  assert_int_equal(p.n, 1);
  assert_string_equal(p.v[0].checkpoint, "LATEST");
  assert_int_equal(p.v[0].n_parents, 1);
  assert_string_equal(p.v[0].parents[0], "shardId-000000000099");
  plan_free(&p);
  struct kcld_kinesis_shard bad[] = {shard("", NULL, NULL, 0)};
  struct kcld_lease *out;
  size_t n;
  assert_int_equal(kcld_shard_sync_plan(bad, 1, NULL, 0,
                                        KCLD_SHARD_SYNC_LATEST, &out, &n),
                   KCLD_EINVAL);
}

static void cleanable(struct kcld_lease **l, size_t n, unsigned char *out)
{
  assert_int_equal(
    kcld_shard_sync_cleanable((const struct kcld_lease *const *)l, n, out),
    0);
}

static void test_cleanable(void **state)
{
  (void)state;
  unsigned char ok[4];
  /* Finished parent with two children, one not started. */
  struct kcld_lease *a[] = {lease(S0, "SHARD_END", NULL),
                            lease(S1, "100", S0, NULL),
                            lease(S2, "TRIM_HORIZON", S0, NULL)};
  add_child(a[0], S1);
  add_child(a[0], S2);
  cleanable(a, 3, ok);
  assert_int_equal(ok[0], 0);
  assert_int_equal(ok[1], 0);
  assert_int_equal(ok[2], 0);
  free(a[2]->checkpoint);
  a[2]->checkpoint = strdup("SHARD_END");
  cleanable(a, 3, ok);
  assert_int_equal(ok[0], 1);
  assert_int_equal(ok[2], 0); /* S2 finished but has no known children */
  free_leases(a, 3);

  /* No childShardIds recorded (an older writer): children found through
   * their parentShardId. */
  struct kcld_lease *b[] = {lease(S0, "SHARD_END", NULL),
                            lease(S1, "LATEST", S0, NULL)};
  cleanable(b, 2, ok);
  assert_int_equal(ok[0], 0);
  free(b[1]->checkpoint);
  b[1]->checkpoint = strdup("4711");
  cleanable(b, 2, ok);
  assert_int_equal(ok[0], 1);
  free_leases(b, 2);

  /* No known child at all: kept. */
  struct kcld_lease *c[] = {lease(S0, "SHARD_END", NULL)};
  cleanable(c, 1, ok);
  assert_int_equal(ok[0], 0);
  /* A child recorded but its lease gone, and nobody names it: kept (it may
   * never have been created). */
  add_child(c[0], S1);
  cleanable(c, 1, ok);
  assert_int_equal(ok[0], 0);
  free_leases(c, 1);

  /* The child's lease is gone but a grandchild names it: it finished. */
  struct kcld_lease *d[] = {lease(S0, "SHARD_END", NULL),
                            lease(S3, "TRIM_HORIZON", S1, S2, NULL)};
  add_child(d[0], S1);
  cleanable(d, 2, ok);
  assert_int_equal(ok[0], 1);
  assert_int_equal(ok[1], 0);
  free_leases(d, 2);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_fresh_stream_trim_horizon),
    cmocka_unit_test(test_parents_before_children),
    cmocka_unit_test(test_latest),
    cmocka_unit_test(test_cleaned_up_parents_not_recreated),
    cmocka_unit_test(test_parent_outside_the_list),
    cmocka_unit_test(test_cleanable),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
