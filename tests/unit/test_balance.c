/* test_balance.c — the lease taker's decision: targets, takes, the
 * steal rules, expiry, finished leases, the max_leases cap, and simulated
 * fleets that must converge to within one lease of S/N. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "lease/balance.h"

#define MAXL 64

static const char *const s_ids[] = {
  "shardId-000000000000", "shardId-000000000001", "shardId-000000000002",
  "shardId-000000000003", "shardId-000000000004", "shardId-000000000005",
  "shardId-000000000006", "shardId-000000000007", "shardId-000000000008",
  "shardId-000000000009", "shardId-000000000010", "shardId-000000000011"};

/* A table of n leases with owners given as a string: one character per
 * lease, '.' unowned, a letter the worker "w<letter>". */
struct table {
  struct kcld_balance_lease l[MAXL];
  char names[MAXL][8];
  size_t n;
};

static void table_set(struct table *t, const char *owners, const char *self)
{
  memset(t, 0, sizeof(*t));
  t->n = strlen(owners);
  for (size_t i = 0; i < t->n; i++) {
    t->l[i].shard_id = s_ids[i % 12];
    if (owners[i] != '.') {
      snprintf(t->names[i], sizeof(t->names[i]), "w%c", owners[i]);
      t->l[i].owner = t->names[i];
      t->l[i].held = strcmp(t->names[i], self) == 0;
    }
  }
}

static struct kcld_balance_plan decide(const struct table *t,
                                       const char *self, unsigned max_leases,
                                       unsigned max_steal)
{
  struct kcld_balance_opts o = {.self = self, .max_leases = max_leases,
                                .max_steal = max_steal};
  struct kcld_balance_plan p;
  assert_int_equal(kcld_balance_decide(t->l, t->n, &o, &p), 0);
  return p;
}

static void test_rejects_bad_arguments(void **state)
{
  (void)state;
  struct kcld_balance_plan p;
  struct kcld_balance_opts o = {.self = NULL};
  assert_int_equal(kcld_balance_decide(NULL, 0, &o, &p), KCLD_EINVAL);
  o.self = "wa";
  assert_int_equal(kcld_balance_decide(NULL, 3, &o, &p), KCLD_EINVAL);
  assert_int_equal(kcld_balance_decide(NULL, 0, &o, &p), 0);
  assert_int_equal(p.n_take, 0);
  assert_int_equal(p.target, 0);
  assert_int_equal(p.workers, 1);
}

static void test_alone_takes_everything(void **state)
{
  (void)state;
  struct table t;
  table_set(&t, ".....", "wa");
  struct kcld_balance_plan p = decide(&t, "wa", 0, 1);
  assert_int_equal(p.workers, 1);
  assert_int_equal(p.target, 5);
  assert_int_equal(p.n_take, 5);
  assert_int_equal(p.steal, 0);
  /* Each lease once. */
  int seen[5] = {0};
  for (size_t i = 0; i < p.n_take; i++)
    seen[p.take[i]]++;
  for (int i = 0; i < 5; i++)
    assert_int_equal(seen[i], 1);
  kcld_balance_plan_clean_up(&p);
}

static void test_target_counts_live_owners(void **state)
{
  (void)state;
  struct table t;
  /* wb holds 4, wc holds 2, 2 unowned: live = a, b, c; target ceil(8/3). */
  table_set(&t, "bbbbcc..", "wa");
  struct kcld_balance_plan p = decide(&t, "wa", 0, 1);
  assert_int_equal(p.leases, 8);
  assert_int_equal(p.workers, 3);
  assert_int_equal(p.target, 3);
  assert_int_equal(p.available, 2);
  assert_int_equal(p.n_take, 2);
  assert_int_equal(p.steal, 0); /* never steal while some are available */
  assert_true(p.take[0] >= 6 && p.take[1] >= 6);
  kcld_balance_plan_clean_up(&p);
}

static void test_no_more_than_target(void **state)
{
  (void)state;
  struct table t;
  table_set(&t, "aaa.b...", "wa"); /* target ceil(8/2) = 4, hold 3 */
  struct kcld_balance_plan p = decide(&t, "wa", 0, 1);
  assert_int_equal(p.target, 4);
  assert_int_equal(p.held, 3);
  assert_int_equal(p.n_take, 1);
  kcld_balance_plan_clean_up(&p);
  table_set(&t, "aaaab...", "wa"); /* at target: nothing */
  p = decide(&t, "wa", 0, 1);
  assert_int_equal(p.n_take, 0);
  kcld_balance_plan_clean_up(&p);
}

static void test_more_workers_than_leases(void **state)
{
  (void)state;
  struct table t;
  /* 3 leases, 4 other live workers are invisible unless they hold one:
   * wb and wc hold one each, one is unowned. */
  table_set(&t, "bc.", "wa");
  struct kcld_balance_plan p = decide(&t, "wa", 0, 1);
  assert_int_equal(p.target, 1);
  assert_int_equal(p.n_take, 1);
  assert_int_equal(p.take[0], 2);
  kcld_balance_plan_clean_up(&p);
  /* Every lease held by someone with one each: no steal for a worker that
   * holds nothing (the most loaded is at target and we need only 1). */
  table_set(&t, "bcd", "wa");
  p = decide(&t, "wa", 0, 5);
  assert_int_equal(p.target, 1);
  assert_int_equal(p.n_take, 0);
  kcld_balance_plan_clean_up(&p);
}

static void test_max_leases_cap(void **state)
{
  (void)state;
  struct table t;
  table_set(&t, "..........", "wa");
  struct kcld_balance_plan p = decide(&t, "wa", 4, 1);
  assert_int_equal(p.target, 4);
  assert_int_equal(p.n_take, 4);
  kcld_balance_plan_clean_up(&p);
  /* Holding the cap already: nothing more, even when alone. */
  table_set(&t, "aaaa......", "wa");
  p = decide(&t, "wa", 4, 1);
  assert_int_equal(p.n_take, 0);
  kcld_balance_plan_clean_up(&p);
}

static void test_steal_from_most_loaded(void **state)
{
  (void)state;
  struct table t;
  /* 8 leases, wb 5, wc 3, wa 0: target 3; wb is 2 over. */
  table_set(&t, "bbbbbccc", "wa");
  struct kcld_balance_plan p = decide(&t, "wa", 0, 1);
  assert_int_equal(p.target, 3);
  assert_int_equal(p.steal, 1);
  assert_string_equal(p.steal_from, "wb");
  assert_int_equal(p.n_take, 1); /* max_steal */
  assert_true(p.take[0] < 5);
  kcld_balance_plan_clean_up(&p);
  p = decide(&t, "wa", 0, 10);
  assert_int_equal(p.n_take, 2); /* min(needed 3, over 2) */
  assert_true(p.take[0] < 5 && p.take[1] < 5 && p.take[0] != p.take[1]);
  kcld_balance_plan_clean_up(&p);
  /* max_steal 0: never. */
  p = decide(&t, "wa", 0, 0);
  assert_int_equal(p.n_take, 0);
  kcld_balance_plan_clean_up(&p);
}

static void test_steal_equal_counts_rule(void **state)
{
  (void)state;
  struct table t;
  /* 9 leases, wb wc wd hold 3 each, wa none: target 3, nobody over target,
   * but we need 3 > 1: steal exactly 1 (KCL rule). */
  table_set(&t, "bbbcccddd", "wa");
  struct kcld_balance_plan p = decide(&t, "wa", 0, 5);
  assert_int_equal(p.target, 3);
  assert_int_equal(p.steal, 1);
  assert_int_equal(p.n_take, 1);
  assert_string_equal(p.steal_from, "wb"); /* ties by name */
  kcld_balance_plan_clean_up(&p);
  /* 8 leases, wb 3, wc 3, wa 2: need 1, most loaded at target: stable. */
  table_set(&t, "bbbcccaa", "wa");
  p = decide(&t, "wa", 0, 5);
  assert_int_equal(p.n_take, 0);
  kcld_balance_plan_clean_up(&p);
  /* 4 leases, wb and wc at target 2, we need 2: steal 1. */
  table_set(&t, "bbcc", "wa");
  p = decide(&t, "wa", 0, 5);
  assert_int_equal(p.target, 2);
  assert_int_equal(p.n_take, 1); /* need 2 > 1, wb at target: steal 1 */
  kcld_balance_plan_clean_up(&p);
  table_set(&t, "bcd", "wa"); /* target 1, need 1, all at target */
  p = decide(&t, "wa", 0, 5);
  assert_int_equal(p.n_take, 0);
  kcld_balance_plan_clean_up(&p);
}

static void test_expired_are_taken_oldest_first(void **state)
{
  (void)state;
  struct table t;
  /* wb's two leases expired (wb is dead); wc live with 2. */
  table_set(&t, "bbccaa", "wa");
  t.l[0].expired = 1;
  t.l[0].stale_ms = 5000;
  t.l[1].expired = 1;
  t.l[1].stale_ms = 9000;
  struct kcld_balance_plan p = decide(&t, "wa", 0, 1);
  assert_int_equal(p.workers, 2); /* wb not live */
  assert_int_equal(p.target, 3);
  assert_int_equal(p.available, 2);
  assert_int_equal(p.n_take, 1);
  assert_int_equal(p.take[0], 1); /* the stalest */
  assert_int_equal(p.steal, 0);
  kcld_balance_plan_clean_up(&p);
  /* Within one quantum the two are equal: the choice is by the worker's
   * preference hash and differs between workers for some pair. */
  t.l[1].stale_ms = 5010;
  struct kcld_balance_opts o = {.self = "wa", .max_steal = 1,
                                .stale_quantum_ms = 200};
  assert_int_equal(kcld_balance_decide(t.l, t.n, &o, &p), 0);
  assert_int_equal(p.n_take, 1);
  size_t first_a = p.take[0];
  kcld_balance_plan_clean_up(&p);
  int differs = 0;
  char self[8];
  for (char c = 'd'; c <= 'z' && !differs; c++) {
    snprintf(self, sizeof(self), "w%c", c);
    o.self = self;
    assert_int_equal(kcld_balance_decide(t.l, t.n, &o, &p), 0);
    if (p.n_take && p.take[0] != first_a)
      differs = 1;
    kcld_balance_plan_clean_up(&p);
  }
  assert_true(differs);
}

static void test_finished_not_counted(void **state)
{
  (void)state;
  struct table t;
  /* Two finished leases (one unowned, one held by live wb) and 2 open. */
  table_set(&t, ".b..", "wa");
  t.l[0].finished = 1;
  t.l[1].finished = 1;
  struct kcld_balance_plan p = decide(&t, "wa", 0, 1);
  assert_int_equal(p.leases, 2);
  assert_int_equal(p.workers, 2); /* wb counts as live */
  assert_int_equal(p.target, 1);
  assert_int_equal(p.n_take, 1);
  assert_true(p.take[0] == 2 || p.take[0] == 3);
  kcld_balance_plan_clean_up(&p);
}

static void test_own_name_not_held_is_available(void **state)
{
  (void)state;
  struct table t;
  table_set(&t, "aab", "wa");
  t.l[0].held = 0; /* a previous run of this worker */
  t.l[1].held = 0;
  struct kcld_balance_plan p = decide(&t, "wa", 0, 1);
  assert_int_equal(p.workers, 2);
  assert_int_equal(p.target, 2);
  assert_int_equal(p.available, 2);
  assert_int_equal(p.n_take, 2);
  kcld_balance_plan_clean_up(&p);
}

/* ---- Simulated fleets ---- */

struct fleet {
  int owner[MAXL];    /* worker index, -1 unowned */
  size_t shards;
  int workers;
  char names[8][16];
};

/* One take pass of worker w; every take succeeds (passes are sequential).
 * Returns how many leases changed hands. */
static int fleet_pass(struct fleet *f, int w, unsigned max_steal)
{
  struct kcld_balance_lease l[MAXL];
  memset(l, 0, sizeof(l));
  for (size_t i = 0; i < f->shards; i++) {
    l[i].shard_id = s_ids[i % 12];
    l[i].owner = f->owner[i] >= 0 ? f->names[f->owner[i]] : NULL;
    l[i].held = f->owner[i] == w;
  }
  struct kcld_balance_opts o = {.self = f->names[w], .max_steal = max_steal};
  struct kcld_balance_plan p;
  assert_int_equal(kcld_balance_decide(l, f->shards, &o, &p), 0);
  for (size_t i = 0; i < p.n_take; i++)
    f->owner[p.take[i]] = w;
  int moved = (int)p.n_take;
  kcld_balance_plan_clean_up(&p);
  return moved;
}

/* Runs rounds (each worker one pass, in order) until nothing moves; returns
 * the number of rounds that moved something. */
static int fleet_run(struct fleet *f, unsigned max_steal, int max_rounds)
{
  int rounds = 0;
  for (int r = 0; r < max_rounds; r++) {
    int moved = 0;
    for (int w = 0; w < f->workers; w++)
      moved += fleet_pass(f, w, max_steal);
    if (!moved)
      return rounds;
    rounds++;
  }
  fail_msg("no convergence after %d rounds", max_rounds);
  return rounds;
}

static void fleet_init(struct fleet *f, int workers, size_t shards)
{
  memset(f, 0, sizeof(*f));
  f->workers = workers;
  f->shards = shards;
  for (size_t i = 0; i < shards; i++)
    f->owner[i] = -1;
  for (int w = 0; w < workers; w++)
    snprintf(f->names[w], sizeof(f->names[w]), "worker-%d", w & 7);
}

static void fleet_counts(const struct fleet *f, int *counts)
{
  for (int w = 0; w < f->workers; w++)
    counts[w] = 0;
  for (size_t i = 0; i < f->shards; i++) {
    assert_true(f->owner[i] >= 0); /* every lease owned */
    counts[f->owner[i]]++;
  }
}

static void assert_balanced(const struct fleet *f)
{
  int counts[8];
  fleet_counts(f, counts);
  int lo = counts[0], hi = counts[0];
  for (int w = 1; w < f->workers; w++) {
    lo = counts[w] < lo ? counts[w] : lo;
    hi = counts[w] > hi ? counts[w] : hi;
  }
  size_t s = f->shards, n = (size_t)f->workers;
  assert_true(hi - lo <= 1);
  assert_true((size_t)hi <= (s + n - 1) / n);
  assert_true((size_t)lo >= s / n);
}

static void test_fleet_3_workers_8_shards(void **state)
{
  (void)state;
  struct fleet f;
  fleet_init(&f, 3, 8);
  /* worker-0 arrives first and takes all 8; the others steal one at a time
   * (max_steal 1). */
  int rounds = fleet_run(&f, 1, 20);
  int c[8];
  fleet_counts(&f, c);
  int sorted[3] = {c[0], c[1], c[2]};
  for (int i = 0; i < 3; i++)
    for (int j = i + 1; j < 3; j++)
      if (sorted[j] > sorted[i]) {
        int x = sorted[i];
        sorted[i] = sorted[j];
        sorted[j] = x;
      }
  assert_int_equal(sorted[0], 3);
  assert_int_equal(sorted[1], 3);
  assert_int_equal(sorted[2], 2);
  assert_true(rounds <= 3);
  /* Stable: another round moves nothing. */
  assert_int_equal(fleet_run(&f, 1, 1), 0);
}

static void test_fleets_converge(void **state)
{
  (void)state;
  for (int w = 1; w <= 6; w++)
    for (size_t s = 1; s <= 12; s++)
      for (unsigned ms = 1; ms <= 3; ms++) {
        struct fleet f;
        fleet_init(&f, w, s);
        fleet_run(&f, ms, 40);
        if (s >= (size_t)w) {
          assert_balanced(&f);
        } else {
          int c[8];
          fleet_counts(&f, c);
          for (int i = 0; i < w; i++)
            assert_true(c[i] <= 1);
        }
      }
}

static void test_fleet_worker_dies(void **state)
{
  (void)state;
  struct fleet f;
  fleet_init(&f, 3, 8);
  fleet_run(&f, 1, 20);
  /* worker-2 dies: its leases expire; the two others share all 8. */
  struct kcld_balance_lease l[MAXL];
  for (int round = 0; round < 4; round++)
    for (int w = 0; w < 2; w++) {
      memset(l, 0, sizeof(l));
      for (size_t i = 0; i < f.shards; i++) {
        l[i].shard_id = s_ids[i];
        l[i].owner = f.owner[i] >= 0 ? f.names[f.owner[i]] : NULL;
        l[i].held = f.owner[i] == w;
        l[i].expired = f.owner[i] == 2;
      }
      struct kcld_balance_opts o = {.self = f.names[w], .max_steal = 1};
      struct kcld_balance_plan p;
      assert_int_equal(kcld_balance_decide(l, f.shards, &o, &p), 0);
      if (round == 0)
        assert_int_equal(p.target, 4);
      for (size_t i = 0; i < p.n_take; i++)
        f.owner[p.take[i]] = w;
      kcld_balance_plan_clean_up(&p);
    }
  int c[8];
  f.workers = 3;
  fleet_counts(&f, c);
  assert_int_equal(c[0], 4);
  assert_int_equal(c[1], 4);
  assert_int_equal(c[2], 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_rejects_bad_arguments),
    cmocka_unit_test(test_alone_takes_everything),
    cmocka_unit_test(test_target_counts_live_owners),
    cmocka_unit_test(test_no_more_than_target),
    cmocka_unit_test(test_more_workers_than_leases),
    cmocka_unit_test(test_max_leases_cap),
    cmocka_unit_test(test_steal_from_most_loaded),
    cmocka_unit_test(test_steal_equal_counts_rule),
    cmocka_unit_test(test_expired_are_taken_oldest_first),
    cmocka_unit_test(test_finished_not_counted),
    cmocka_unit_test(test_own_name_not_held_is_available),
    cmocka_unit_test(test_fleet_3_workers_8_shards),
    cmocka_unit_test(test_fleets_converge),
    cmocka_unit_test(test_fleet_worker_dies),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
