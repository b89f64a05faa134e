/* shard_sync.c — shards to leases: what to create, what may be cleaned up,
 * and the asynchronous sync (see shard_sync.h). */
#include "lease/shard_sync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"

/* ======== Sorted string lookups ======== */

static int cmp_str_ptr(const void *a, const void *b)
{
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_lease_ptr(const void *a, const void *b)
{
  const struct kcld_lease *x = *(const struct kcld_lease *const *)a;
  const struct kcld_lease *y = *(const struct kcld_lease *const *)b;
  return strcmp(kcld_lease_shard(x), kcld_lease_shard(y));
}

/* Leases (of one stream) sorted by shard id, for lookups. */
struct lease_index {
  const struct kcld_lease **v;
  size_t n;
  const char **named_parents; /* every parent named by some lease, sorted */
  size_t n_named;
};

static int index_build(struct lease_index *ix,
                       const struct kcld_lease *const *leases, size_t n)
{
  memset(ix, 0, sizeof(*ix));
  size_t np = 0;
  for (size_t i = 0; i < n; i++)
    np += leases[i]->n_parents;
  ix->v = calloc(n ? n : 1, sizeof(*ix->v));
  ix->named_parents = calloc(np ? np : 1, sizeof(*ix->named_parents));
  if (!ix->v || !ix->named_parents) {
    free(ix->v);
    free(ix->named_parents);
    memset(ix, 0, sizeof(*ix)); /* index_free stays safe */
    return KCLD_ENOMEM;
  }
  for (size_t i = 0; i < n; i++) {
    ix->v[i] = leases[i];
    for (size_t j = 0; j < leases[i]->n_parents; j++)
      ix->named_parents[ix->n_named++] = leases[i]->parents[j];
  }
  ix->n = n;
  qsort(ix->v, n, sizeof(*ix->v), cmp_lease_ptr);
  qsort(ix->named_parents, ix->n_named, sizeof(*ix->named_parents),
        cmp_str_ptr);
  return 0;
}

static void index_free(struct lease_index *ix)
{
  free(ix->v);
  free(ix->named_parents);
}

static const struct kcld_lease *index_find(const struct lease_index *ix,
                                           const char *id)
{
  struct kcld_lease key = {.shard_id = (char *)id};
  const struct kcld_lease *kp = &key;
  const struct kcld_lease **hit =
    bsearch(&kp, ix->v, ix->n, sizeof(*ix->v), cmp_lease_ptr);
  return hit ? *hit : NULL;
}

/* Some lease names `id` as a parent. */
static int index_named_parent(const struct lease_index *ix, const char *id)
{
  return bsearch(&id, ix->named_parents, ix->n_named,
                 sizeof(*ix->named_parents), cmp_str_ptr) != NULL;
}

/* ======== Plan ======== */

struct planner {
  const struct kcld_kinesis_shard *shards;
  size_t n;
  size_t *order;          /* shard indices sorted by id */
  size_t **kids;          /* kids[i]: indices of listed children of i */
  size_t *n_kids;
  unsigned char *desc;    /* 0 unknown, 1 no, 2 yes, 3 computing */
  unsigned char *state;   /* 0 unvisited, 1 visiting, 2 done */
  unsigned char *planned; /* got a lease in this plan */
  struct lease_index ix;
  enum kcld_shard_sync_position pos;
  struct kcld_lease *out;
  size_t n_out;
  int err;
};

static int cmp_shard_idx(const void *a, const void *b, void *ctx)
{
  const struct kcld_kinesis_shard *shards = ctx;
  size_t x = *(const size_t *)a, y = *(const size_t *)b;
  return strcmp(shards[x].shard_id, shards[y].shard_id);
}

/* Index of the listed shard `id`, or -1. */
static long shard_find(const struct planner *p, const char *id)
{
  size_t lo = 0, hi = p->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(p->shards[p->order[mid]].shard_id, id);
    if (c == 0)
      return (long)p->order[mid];
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return -1;
}

static int shard_parents(const struct kcld_kinesis_shard *s, const char **v)
{
  int n = 0;
  if (s->parent_shard_id && s->parent_shard_id[0])
    v[n++] = s->parent_shard_id;
  if (s->adjacent_parent_shard_id && s->adjacent_parent_shard_id[0] &&
      (n == 0 || strcmp(v[0], s->adjacent_parent_shard_id) != 0))
    v[n++] = s->adjacent_parent_shard_id;
  return n;
}

/* Whether a descendant of shard i has a lease already. */
static int has_leased_descendant(struct planner *p, size_t i)
{
  if (p->desc[i] == 1 || p->desc[i] == 3)
    return 0;
  if (p->desc[i] == 2)
    return 1;
  p->desc[i] = 3;
  int r = index_named_parent(&p->ix, p->shards[i].shard_id);
  for (size_t k = 0; !r && k < p->n_kids[i]; k++) {
    size_t j = p->kids[i][k];
    r = index_find(&p->ix, p->shards[j].shard_id) != NULL ||
        has_leased_descendant(p, j);
  }
  p->desc[i] = r ? 2 : 1;
  return r;
}

static int lease_for_shard(const struct kcld_kinesis_shard *s,
                           const char *checkpoint, struct kcld_lease *l)
{
  const char *par[2];
  int np = shard_parents(s, par);
  memset(l, 0, sizeof(*l));
  l->shard_id = strdup(s->shard_id);
  l->checkpoint = strdup(checkpoint);
  if (s->starting_hash_key)
    l->starting_hash_key = strdup(s->starting_hash_key);
  if (s->ending_hash_key)
    l->ending_hash_key = strdup(s->ending_hash_key);
  int fail = !l->shard_id || !l->checkpoint ||
             (s->starting_hash_key && !l->starting_hash_key) ||
             (s->ending_hash_key && !l->ending_hash_key);
  if (np) {
    l->parents = calloc((size_t)np, sizeof(*l->parents));
    if (!l->parents)
      fail = 1;
    for (int k = 0; l->parents && k < np; k++) {
      if (!(l->parents[k] = strdup(par[k])))
        fail = 1;
      l->n_parents++;
    }
  }
  if (fail) {
    kcld_lease_clean_up(l);
    return KCLD_ENOMEM;
  }
  return 0;
}

static void plan_visit(struct planner *p, size_t i)
{
  if (p->state[i] != 0 || p->err)
    return;
  p->state[i] = 1;
  const struct kcld_kinesis_shard *s = &p->shards[i];
  const char *par[2];
  int np = shard_parents(s, par);
  for (int k = 0; k < np; k++) {
    long j = shard_find(p, par[k]);
    if (j >= 0)
      plan_visit(p, (size_t)j);
  }
  p->state[i] = 2;
  if (p->err || index_find(&p->ix, s->shard_id) ||
      has_leased_descendant(p, i))
    return;
  int parent_leased = 0;
  for (int k = 0; k < np; k++) {
    long j = shard_find(p, par[k]);
    if (index_find(&p->ix, par[k]) || (j >= 0 && p->planned[j]))
      parent_leased = 1;
  }
  const char *cp;
  switch (p->pos) {
  case KCLD_SHARD_SYNC_LATEST:
    if (parent_leased)
      cp = KCLD_LEASE_TRIM_HORIZON;
    else if (!s->ending_sequence_number)
      cp = KCLD_LEASE_LATEST;
    else
      return;
    break;
  case KCLD_SHARD_SYNC_AT_TIMESTAMP:
    cp = KCLD_LEASE_AT_TIMESTAMP;
    break;
  default:
    cp = KCLD_LEASE_TRIM_HORIZON;
    break;
  }
  int rc = lease_for_shard(s, cp, &p->out[p->n_out]);
  if (rc) {
    p->err = rc;
    return;
  }
  p->n_out++;
  p->planned[i] = 1;
}

int kcld_shard_sync_plan(const struct kcld_kinesis_shard *shards, size_t n,
                         const struct kcld_lease *const *leases,
                         size_t n_leases, enum kcld_shard_sync_position pos,
                         struct kcld_lease **out, size_t *n_out)
{
  *out = NULL;
  *n_out = 0;
  if ((n && !shards) || (n_leases && !leases))
    return KCLD_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (!shards[i].shard_id || !shards[i].shard_id[0])
      return KCLD_EINVAL;
  struct planner p = {.shards = shards, .n = n, .pos = pos};
  int rc = KCLD_ENOMEM;
  size_t m = n ? n : 1;
  p.order = calloc(m, sizeof(*p.order));
  p.kids = calloc(m, sizeof(*p.kids));
  p.n_kids = calloc(m, sizeof(*p.n_kids));
  p.desc = calloc(m, 1);
  p.state = calloc(m, 1);
  p.planned = calloc(m, 1);
  p.out = calloc(m, sizeof(*p.out));
  int ix_ok = 0;
  if (!p.order || !p.kids || !p.n_kids || !p.desc || !p.state || !p.planned ||
      !p.out)
    goto done;
  if (index_build(&p.ix, leases, n_leases) != 0)
    goto done;
  ix_ok = 1;
  for (size_t i = 0; i < n; i++)
    p.order[i] = i;
  qsort_r(p.order, n, sizeof(*p.order), cmp_shard_idx, (void *)shards);
  /* Children lists from the shard list's parent links. */
  for (size_t i = 0; i < n; i++) {
    const char *par[2];
    int np = shard_parents(&shards[i], par);
    for (int k = 0; k < np; k++) {
      long j = shard_find(&p, par[k]);
      if (j < 0)
        continue;
      size_t *v = realloc(p.kids[j], (p.n_kids[j] + 1) * sizeof(*v));
      if (!v)
        goto done;
      p.kids[j] = v;
      v[p.n_kids[j]++] = i;
    }
  }
  for (size_t i = 0; i < n && !p.err; i++)
    plan_visit(&p, i);
  if (p.err)
    goto done;
  rc = 0;
  *out = p.out;
  *n_out = p.n_out;
  p.out = NULL;
done:
  if (p.out) {
    for (size_t i = 0; i < p.n_out; i++)
      kcld_lease_clean_up(&p.out[i]);
    free(p.out);
  }
  if (ix_ok)
    index_free(&p.ix);
  for (size_t i = 0; p.kids && i < n; i++)
    free(p.kids[i]);
  free(p.kids);
  free(p.n_kids);
  free(p.order);
  free(p.desc);
  free(p.state);
  free(p.planned);
  return rc;
}

/* ======== Cleanup ======== */

static int child_started(const struct lease_index *ix, const char *id)
{
  const struct kcld_lease *c = index_find(ix, id);
  if (c)
    return !kcld_lease_checkpoint_is_initial(c->checkpoint);
  return index_named_parent(ix, id);
}

int kcld_shard_sync_cleanable(const struct kcld_lease *const *leases,
                              size_t n, unsigned char *out)
{
  struct lease_index ix;
  if (index_build(&ix, leases, n) != 0)
    return KCLD_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    const struct kcld_lease *f = leases[i];
    out[i] = 0;
    if (!kcld_lease_is_finished(f))
      continue;
    size_t known = 0;
    int ok = 1;
    for (size_t k = 0; ok && k < f->n_children; k++) {
      known++;
      ok = child_started(&ix, f->children[k]);
    }
    for (size_t j = 0; ok && j < n; j++) {
      if (!kcld_lease_has_parent(leases[j], kcld_lease_shard(f)))
        continue;
      known++;
      ok = child_started(&ix, kcld_lease_shard(leases[j]));
    }
    out[i] = ok && known > 0;
  }
  index_free(&ix);
  return 0;
}

/* ======== The asynchronous sync ======== */

struct sync_op {
  struct kcld_lease_table *table;
  struct kcld_kinesis *kinesis;
  char *stream;
  char *stream_id;       /* multi-stream: the stream's identifier */
  enum kcld_shard_sync_position pos;
  /* Children mode. */
  char *parent;
  char **children;
  size_t n_children;
  /* Table snapshot, then the leases to create. */
  struct kcld_lease *leases;
  size_t n_leases;
  struct kcld_lease *todo;
  size_t n_todo, next;
  unsigned char *done;   /* todo[i] exists now */
  struct lease_index todo_ix; /* todo by shard id */
  size_t inflight;
  int err;               /* the first create that failed */
  char why[640];         /* the message of the first failure */
  struct kcld_shard_sync_result res;
  kcld_shard_sync_cb cb;
  void *arg;
};

static void leases_free(struct kcld_lease *v, size_t n)
{
  for (size_t i = 0; i < n; i++)
    kcld_lease_clean_up(&v[i]);
  free(v);
}

/* Frees the op and what it holds (leases read, leases to create, the
 * children of the shard that ended). */
static void op_free(struct sync_op *op)
{
  leases_free(op->leases, op->n_leases);
  leases_free(op->todo, op->n_todo);
  free(op->done);
  index_free(&op->todo_ix);
  for (size_t i = 0; i < op->n_children; i++)
    free(op->children[i]);
  free(op->children);
  free(op->parent);
  free(op->stream);
  free(op->stream_id);
  free(op);
}

/* Notes how the first failure of the sync ended: its message and whether
 * it is transient. */
static void sync_note(struct sync_op *op, const struct kcld_svc_status *st)
{
  if (op->why[0])
    return;
  op->res.transient = kcld_svc_transient(st);
  snprintf(op->why, sizeof(op->why), "%s",
           st->message && *st->message ? st->message
                                       : kcld_strerror(st->err));
}

static void sync_end(struct sync_op *op, int err)
{
  op->res.err = err;
  if (err && !op->why[0])
    snprintf(op->why, sizeof(op->why), "%s", kcld_strerror(err));
  op->res.message = op->why;
  op->cb(&op->res, op->arg);
  op_free(op);
}

/* Ends the sync with the failure `st`. */
static void sync_fail(struct sync_op *op, const struct kcld_svc_status *st)
{
  sync_note(op, st);
  sync_end(op, st->err);
}

/* Leases created at once: creating a thousand one at a time took seconds
 * of start-up. */
#define CREATES_IN_FLIGHT 32

static void sync_create_more(struct sync_op *op);

struct create_req {
  struct sync_op *op;
  size_t i;
};

/* Whether every parent of todo[i] that this sync creates exists now. */
static int parents_created(const struct sync_op *op, size_t i)
{
  const struct kcld_lease *l = &op->todo[i];
  for (size_t k = 0; k < l->n_parents; k++) {
    const struct kcld_lease *p = index_find(&op->todo_ix, l->parents[k]);
    if (p && !op->done[p - op->todo])
      return 0;
  }
  return 1;
}

static void on_created(const struct kcld_svc_status *st, int created,
                       void *arg)
{
  struct create_req *rq = arg;
  struct sync_op *op = rq->op;
  const struct kcld_lease *l = &op->todo[rq->i];
  free(rq);
  op->inflight--;
  if (st->err) {
    if (st->err != KCLD_ECANCELED && !op->err)
      kcld_log(KCLD_LOG_WARN, "creating a lease failed; sync stops here",
               "shard", l->shard_id, "error", st->message, NULL);
    if (!op->err) {
      op->err = st->err;
      sync_note(op, st);
    }
  } else if (created) {
    op->done[l - op->todo] = 1;
    op->res.created++;
    kcld_log(KCLD_LOG_INFO, "lease created", "shard", l->shard_id,
             "checkpoint", l->checkpoint, "parents",
             l->n_parents ? l->parents[0] : NULL, "adjacent_parent",
             l->n_parents > 1 ? l->parents[1] : NULL, NULL);
  } else {
    op->done[l - op->todo] = 1;
    op->res.existed++;
  }
  sync_create_more(op);
}

/* Creates the planned leases, up to CREATES_IN_FLIGHT at once, a child only
 * once its parents' leases exist: a failure stops the sync (after the
 * creates in flight answered) so that no child lease exists without its
 * parent's. */
static void sync_create_more(struct sync_op *op)
{
  while (!op->err && op->inflight < CREATES_IN_FLIGHT &&
         op->next < op->n_todo && parents_created(op, op->next)) {
    struct create_req *rq = malloc(sizeof(*rq));
    int rc = rq ? 0 : KCLD_ENOMEM;
    if (rq) {
      *rq = (struct create_req){.op = op, .i = op->next};
      rc = kcld_lease_table_create(op->table, &op->todo[op->next],
                                   on_created, rq);
    }
    if (rc < 0) {
      free(rq);
      op->err = rc;
      break;
    }
    op->next++;
    op->inflight++;
  }
  if (op->inflight == 0 && (op->err || op->next >= op->n_todo))
    sync_end(op, op->err);
}

/* Starts creating op->todo (planned by shard id: in a multi-stream table
 * they get their stream and key here). */
static void sync_create(struct sync_op *op)
{
  const struct kcld_lease **lp = calloc(op->n_todo ? op->n_todo : 1,
                                        sizeof(*lp));
  op->done = calloc(op->n_todo ? op->n_todo : 1, 1);
  int rc = lp && op->done ? 0 : KCLD_ENOMEM;
  for (size_t i = 0; !rc && op->stream_id && i < op->n_todo; i++)
    rc = kcld_lease_set_stream(&op->todo[i], op->stream_id);
  for (size_t i = 0; !rc && i < op->n_todo; i++)
    lp[i] = &op->todo[i];
  if (!rc)
    rc = index_build(&op->todo_ix, lp, op->n_todo);
  free(lp);
  if (rc) {
    sync_end(op, rc);
    return;
  }
  sync_create_more(op);
}

static void on_children_listed(const struct kcld_kinesis_shard_list *res,
                               void *arg)
{
  struct sync_op *op = arg;
  if (res->st.err) {
    if (res->st.err != KCLD_ECANCELED)
      kcld_log(KCLD_LOG_WARN, "listing shards for a shard end failed",
               "shard", op->parent, "error", res->st.message, NULL);
    sync_fail(op, &res->st);
    return;
  }
  op->res.shards = res->count;
  op->todo = calloc(op->n_children ? op->n_children : 1, sizeof(*op->todo));
  if (!op->todo) {
    sync_end(op, KCLD_ENOMEM);
    return;
  }
  for (size_t i = 0; i < op->n_children; i++) {
    const struct kcld_kinesis_shard *s = NULL;
    for (size_t j = 0; j < res->count && !s; j++)
      if (strcmp(res->shards[j].shard_id, op->children[i]) == 0)
        s = &res->shards[j];
    if (!s) {
      kcld_log(KCLD_LOG_WARN, "a child shard is not listed yet", "shard",
               op->parent, "child", op->children[i], NULL);
      sync_end(op, KCLD_ENOTFOUND);
      return;
    }
    int rc = lease_for_shard(s, KCLD_LEASE_TRIM_HORIZON, &op->todo[i]);
    if (rc) {
      sync_end(op, rc);
      return;
    }
    op->n_todo++;
  }
  sync_create(op);
}

static void on_listed(const struct kcld_kinesis_shard_list *res, void *arg)
{
  struct sync_op *op = arg;
  if (res->st.err) {
    if (res->st.err != KCLD_ECANCELED)
      kcld_log(KCLD_LOG_WARN, "listing shards failed", "stream", op->stream,
               "error", res->st.message, NULL);
    sync_fail(op, &res->st);
    return;
  }
  op->res.shards = res->count;
  const struct kcld_lease **lp =
    calloc(op->n_leases ? op->n_leases : 1, sizeof(*lp));
  if (!lp) {
    sync_end(op, KCLD_ENOMEM);
    return;
  }
  for (size_t i = 0; i < op->n_leases; i++)
    lp[i] = &op->leases[i];
  int rc = kcld_shard_sync_plan(res->shards, res->count, lp, op->n_leases,
                                op->pos, &op->todo, &op->n_todo);
  free(lp);
  if (rc) {
    sync_end(op, rc);
    return;
  }
  sync_create(op);
}

static void on_sync_scan(const struct kcld_svc_status *st,
                         struct kcld_lease *leases, size_t n, void *arg)
{
  struct sync_op *op = arg;
  if (st->err) {
    if (st->err != KCLD_ECANCELED)
      kcld_log(KCLD_LOG_WARN, "scanning the lease table for a sync failed",
               "table", kcld_lease_table_name(op->table), "error",
               st->message, NULL);
    sync_fail(op, st);
    return;
  }
  op->leases = calloc(n ? n : 1, sizeof(*op->leases));
  if (!op->leases) {
    sync_end(op, KCLD_ENOMEM);
    return;
  }
  /* The leases of this stream only (a multi-stream table holds others). */
  for (size_t i = 0; i < n; i++) {
    if (!kcld_lease_of_stream(&leases[i], op->stream_id))
      continue;
    op->leases[op->n_leases++] = leases[i];
    memset(&leases[i], 0, sizeof(leases[i]));
  }
  op->res.leases = op->n_leases;
  int rc = kcld_kinesis_list_shards(op->kinesis, op->stream, NULL, on_listed,
                                    op);
  if (rc < 0)
    sync_end(op, rc);
}

static struct sync_op *op_new(struct kcld_lease_table *table,
                              struct kcld_kinesis *kinesis,
                              const char *stream, const char *stream_id,
                              kcld_shard_sync_cb cb, void *arg)
{
  struct sync_op *op = calloc(1, sizeof(*op));
  if (!op)
    return NULL;
  op->table = table;
  op->kinesis = kinesis;
  op->cb = cb;
  op->arg = arg;
  op->stream = strdup(stream);
  op->stream_id = stream_id ? strdup(stream_id) : NULL;
  if (!op->stream || (stream_id && !op->stream_id)) {
    op_free(op);
    return NULL;
  }
  return op;
}

int kcld_shard_sync_run(struct kcld_lease_table *table,
                        struct kcld_kinesis *kinesis, const char *stream,
                        const char *stream_id,
                        enum kcld_shard_sync_position pos,
                        kcld_shard_sync_cb cb, void *arg)
{
  if (!table || !kinesis || !stream || !cb)
    return KCLD_EINVAL;
  struct sync_op *op = op_new(table, kinesis, stream, stream_id, cb, arg);
  if (!op)
    return KCLD_ENOMEM;
  op->pos = pos;
  int rc = kcld_lease_table_scan(table, on_sync_scan, op);
  if (rc < 0)
    op_free(op);
  return rc;
}

int kcld_shard_sync_children(struct kcld_lease_table *table,
                             struct kcld_kinesis *kinesis, const char *stream,
                             const char *stream_id, const char *parent,
                             const char *const *children, size_t n_children,
                             kcld_shard_sync_cb cb, void *arg)
{
  if (!table || !kinesis || !stream || !parent || !cb ||
      (n_children && !children))
    return KCLD_EINVAL;
  struct sync_op *op = op_new(table, kinesis, stream, stream_id, cb, arg);
  if (!op)
    return KCLD_ENOMEM;
  op->parent = strdup(parent);
  if (n_children)
    op->children = calloc(n_children, sizeof(*op->children));
  int fail = !op->parent || (n_children && !op->children);
  for (size_t i = 0; !fail && i < n_children; i++) {
    if (!children[i] || !children[i][0]) {
      op_free(op);
      return KCLD_EINVAL;
    }
    if (!(op->children[i] = strdup(children[i])))
      fail = 1;
    else
      op->n_children++;
  }
  if (fail) {
    op_free(op);
    return KCLD_ENOMEM;
  }
  int rc = kcld_kinesis_list_shards(kinesis, stream, NULL, on_children_listed,
                                    op);
  if (rc < 0)
    op_free(op);
  return rc;
}
