/* balance.c — the lease taker's decision (see balance.h). */
#include "lease/balance.h"

#include <stdlib.h>
#include <string.h>

#include "err.h"

/* FNV-1a over "self\0shard": a per-worker preference among equals. */
static uint64_t pref_hash(const char *self, const char *shard)
{
  uint64_t h = 1469598103934665603ULL;
  for (const char *p = self; *p; p++)
    h = (h ^ (unsigned char)*p) * 1099511628211ULL;
  h = (h ^ 0) * 1099511628211ULL;
  for (const char *p = shard; *p; p++)
    h = (h ^ (unsigned char)*p) * 1099511628211ULL;
  return h;
}

struct cand {
  size_t idx;
  uint64_t stale;   /* quantized */
  uint64_t hash;
};

/* Oldest-stale first, then by preference hash, then by index. */
static int cand_cmp(const void *a, const void *b)
{
  const struct cand *x = a, *y = b;
  if (x->stale != y->stale)
    return x->stale > y->stale ? -1 : 1;
  if (x->hash != y->hash)
    return x->hash < y->hash ? -1 : 1;
  return x->idx < y->idx ? -1 : x->idx > y->idx;
}

struct worker {
  const char *name;
  size_t count;     /* unexpired, unfinished leases it holds */
};

static struct worker *find_worker(struct worker *w, size_t n, const char *name)
{
  for (size_t i = 0; i < n; i++)
    if (strcmp(w[i].name, name) == 0)
      return &w[i];
  return NULL;
}

void kcld_balance_plan_clean_up(struct kcld_balance_plan *p)
{
  if (!p)
    return;
  free(p->take);
  memset(p, 0, sizeof(*p));
}

int kcld_balance_decide(const struct kcld_balance_lease *leases, size_t n,
                        const struct kcld_balance_opts *opts,
                        struct kcld_balance_plan *out)
{
  memset(out, 0, sizeof(*out));
  if (!opts || !opts->self || (n > 0 && !leases))
    return KCLD_EINVAL;
  const char *self = opts->self;
  int rc = KCLD_ENOMEM;
  struct worker *w = calloc(n + 1, sizeof(*w));
  struct cand *cand = calloc(n + 1, sizeof(*cand));
  if (!w || !cand)
    goto done;

  /* Count workers (every owner of an unexpired lease, finished or not) and
   * what each holds of the leases that need a worker. */
  size_t nw = 0, navail = 0;
  uint64_t q = opts->stale_quantum_ms ? opts->stale_quantum_ms : 1;
  for (size_t i = 0; i < n; i++) {
    const struct kcld_balance_lease *l = &leases[i];
    if (!l->finished)
      out->leases++;
    if (l->held) {
      if (!l->finished)
        out->held++;
      continue;
    }
    int mine_by_name = l->owner && strcmp(l->owner, self) == 0;
    if (!l->finished && (!l->owner || l->expired || mine_by_name)) {
      cand[navail++] = (struct cand){
        .idx = i, .stale = l->stale_ms / q,
        .hash = pref_hash(self, l->shard_id)};
      continue;
    }
    if (!l->owner || l->expired || mine_by_name)
      continue;
    struct worker *wk = find_worker(w, nw, l->owner);
    if (!wk) {
      wk = &w[nw++];
      wk->name = l->owner;
    }
    if (!l->finished)
      wk->count++;
  }
  out->available = navail;
  out->workers = nw + 1;
  out->target = out->leases ? (out->leases + out->workers - 1) / out->workers
                            : 0;
  if (opts->max_leases && out->target > opts->max_leases)
    out->target = opts->max_leases;
  rc = 0;
  if (out->held >= out->target)
    goto done;
  size_t need = out->target - out->held;

  if (navail > 0) {
    qsort(cand, navail, sizeof(*cand), cand_cmp);
    size_t k = need < navail ? need : navail;
    if (!(out->take = calloc(k, sizeof(*out->take)))) {
      rc = KCLD_ENOMEM;
      goto done;
    }
    for (size_t i = 0; i < k; i++)
      out->take[i] = cand[i].idx;
    out->n_take = k;
    goto done;
  }

  /* Nothing available: steal from the most-loaded worker. */
  struct worker *most = NULL;
  for (size_t i = 0; i < nw; i++)
    if (!most || w[i].count > most->count ||
        (w[i].count == most->count && strcmp(w[i].name, most->name) < 0))
      most = &w[i];
  if (!most || most->count < out->target || opts->max_steal == 0)
    goto done;
  size_t over = most->count - out->target;
  size_t steal = need < over ? need : over;
  if (need > 1 && over == 0)
    steal = 1;
  if (steal > opts->max_steal)
    steal = opts->max_steal;
  if (steal == 0)
    goto done;
  size_t nc = 0;
  for (size_t i = 0; i < n; i++) {
    const struct kcld_balance_lease *l = &leases[i];
    if (l->held || l->finished || l->expired || !l->owner ||
        strcmp(l->owner, most->name) != 0)
      continue;
    cand[nc++] = (struct cand){.idx = i, .stale = 0,
                               .hash = pref_hash(self, l->shard_id)};
  }
  qsort(cand, nc, sizeof(*cand), cand_cmp);
  if (steal > nc)
    steal = nc;
  if (!(out->take = calloc(steal ? steal : 1, sizeof(*out->take)))) {
    rc = KCLD_ENOMEM;
    goto done;
  }
  for (size_t i = 0; i < steal; i++)
    out->take[i] = cand[i].idx;
  out->n_take = steal;
  out->steal = 1;
  out->steal_from = leases[cand[0].idx].owner;
done:
  free(w);
  free(cand);
  if (rc != 0)
    kcld_balance_plan_clean_up(out);
  return rc;
}
