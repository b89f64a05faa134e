/* balance.h — which leases this worker should take or steal: the lease
 * taker's decision as a pure function, so it can be tested on its own.
 *
 * Rules (those of the KCL's lease taker, made deterministic):
 *  - Leases at SHARD_END need no worker: they are neither counted nor taken.
 *  - Live workers: this worker plus every owner of an unexpired lease.
 *  - target = ceil(leases / live workers), capped by max_leases (0 = no cap).
 *  - Below target, take available leases (unowned, expired by our clock, or
 *    owned by our own worker id but not held — a previous run of this
 *    worker), oldest-stale first; ties (within stale_quantum_ms) are broken
 *    by a hash of (worker id, shard id), so that peers looking at the same
 *    table prefer different leases.
 *  - Only when nothing is available and we are still below target, steal
 *    from the most-loaded worker (most unexpired leases; ties by name):
 *    min(needed, its leases above target, max_steal), and 1 when it holds
 *    exactly target while we need more than 1 (the KCL's rule, which lets
 *    e.g. 4 workers on 9 leases reach 3/2/2/2).  Never from a worker at or
 *    below target otherwise.  N workers on S leases converge to within one
 *    lease of S/N. */
#ifndef KCLD_LEASE_BALANCE_H
#define KCLD_LEASE_BALANCE_H

#include <stddef.h>
#include <stdint.h>

struct kcld_balance_lease {
  const char *shard_id;
  const char *owner;   /* leaseOwner as last seen; NULL when unowned */
  int held;            /* this worker holds it now */
  int expired;         /* its counter has not changed for failover_time on
                          our clock */
  int finished;        /* at SHARD_END */
  uint64_t stale_ms;   /* how long its counter has not changed */
};

struct kcld_balance_opts {
  const char *self;           /* this worker's id */
  unsigned max_leases;        /* 0 = no cap */
  unsigned max_steal;         /* 0 = never steal */
  uint64_t stale_quantum_ms;  /* staleness closer than this counts as equal;
                                 0 = exact */
};

struct kcld_balance_plan {
  size_t *take;        /* indices into the lease array, in the order to try */
  size_t n_take;
  int steal;           /* 1: the takes are steals from steal_from */
  const char *steal_from; /* borrowed from the lease array; NULL when none */
  size_t leases;       /* leases that need a worker (not finished) */
  size_t workers;      /* live workers, self included */
  size_t target;
  size_t held;         /* of those, held by this worker */
  size_t available;    /* unowned / expired / ours-not-held */
};

/* Decides.  Returns 0 (plan filled; n_take may be 0), KCLD_EINVAL (no self,
 * or a NULL array with n > 0) or KCLD_ENOMEM. */
int kcld_balance_decide(const struct kcld_balance_lease *leases, size_t n,
                        const struct kcld_balance_opts *opts,
                        struct kcld_balance_plan *out);

void kcld_balance_plan_clean_up(struct kcld_balance_plan *p);

#endif
