/* table.c — the KCL lease item model and each conditional write to the lease
 * table (see table.h). */
#include "lease/table.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fmt.h"
#include "base/seq.h"
#include "err.h"
#include "log.h"

#define A_KEY "leaseKey"
#define A_OWNER "leaseOwner"
#define A_COUNTER "leaseCounter"
#define A_CHECKPOINT "checkpoint"
#define A_SUB "checkpointSubSequenceNumber"
#define A_SWITCHES "ownerSwitchesSinceCheckpoint"
#define A_PARENTS "parentShardId"
#define A_CHILDREN "childShardIds"
#define A_START_HASH "startingHashKey"
#define A_END_HASH "endingHashKey"
#define A_CP_OWNER "checkpointOwner"
#define A_PENDING "pendingCheckpoint"
#define A_PENDING_SUB "pendingCheckpointSubSequenceNumber"
#define A_PENDING_STATE "pendingCheckpointState"
#define A_ENTITY "entityType"
#define A_STREAM "streamName"
#define A_SHARD "shardId"

/* ======== Model ======== */

static void free_strv(char **v, size_t n)
{
  for (size_t i = 0; i < n; i++)
    free(v[i]);
  free(v);
}

void kcld_lease_clean_up(struct kcld_lease *l)
{
  if (!l)
    return;
  free(l->shard_id);
  free(l->stream_id);
  free(l->stream_shard);
  free(l->owner);
  free(l->checkpoint);
  free_strv(l->parents, l->n_parents);
  free_strv(l->children, l->n_children);
  free(l->starting_hash_key);
  free(l->ending_hash_key);
  memset(l, 0, sizeof(*l));
}

/* strdup that maps NULL to NULL; *fail is set on allocation failure. */
static char *dup_opt(const char *s, int *fail)
{
  if (!s)
    return NULL;
  char *d = strdup(s);
  if (!d)
    *fail = 1;
  return d;
}

static char **dup_strv(char *const *v, size_t n, int *fail)
{
  if (n == 0)
    return NULL;
  char **d = calloc(n, sizeof(*d));
  if (!d) {
    *fail = 1;
    return NULL;
  }
  for (size_t i = 0; i < n; i++)
    d[i] = dup_opt(v[i], fail);
  return d;
}

int kcld_lease_copy(struct kcld_lease *dst, const struct kcld_lease *src)
{
  int fail = 0;
  memset(dst, 0, sizeof(*dst));
  dst->shard_id = dup_opt(src->shard_id, &fail);
  dst->stream_id = dup_opt(src->stream_id, &fail);
  dst->stream_shard = dup_opt(src->stream_shard, &fail);
  dst->owner = dup_opt(src->owner, &fail);
  dst->counter = src->counter;
  dst->checkpoint = dup_opt(src->checkpoint, &fail);
  dst->checkpoint_sub = src->checkpoint_sub;
  dst->owner_switches = src->owner_switches;
  dst->parents = dup_strv(src->parents, src->n_parents, &fail);
  dst->n_parents = dst->parents ? src->n_parents : 0;
  dst->children = dup_strv(src->children, src->n_children, &fail);
  dst->n_children = dst->children ? src->n_children : 0;
  dst->starting_hash_key = dup_opt(src->starting_hash_key, &fail);
  dst->ending_hash_key = dup_opt(src->ending_hash_key, &fail);
  if (fail) {
    kcld_lease_clean_up(dst);
    return KCLD_ENOMEM;
  }
  return 0;
}

/* Reads an optional non-negative integer N attribute (absent = 0). */
static int read_u64(const json_t *item, const char *name, uint64_t *out)
{
  json_t *av = kcld_dynamodb_attr(item, name);
  *out = 0;
  if (!av)
    return 0;
  int64_t v;
  if (kcld_dynamodb_as_i64(av, &v) != 0 || v < 0)
    return KCLD_EPARSE;
  *out = (uint64_t)v;
  return 0;
}

/* Reads an optional SS attribute into a string vector. */
static int read_ss(const json_t *item, const char *name, char ***out,
                   size_t *n_out)
{
  *out = NULL;
  *n_out = 0;
  json_t *av = kcld_dynamodb_attr(item, name);
  if (!av)
    return 0;
  json_t *arr = kcld_dynamodb_as_ss(av);
  if (!arr)
    return KCLD_EPARSE;
  size_t n = json_array_size(arr);
  if (n == 0)
    return 0;
  char **v = calloc(n, sizeof(*v));
  if (!v)
    return KCLD_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    const char *s = json_string_value(json_array_get(arr, i));
    v[i] = s ? strdup(s) : NULL;
    if (!v[i]) {
      free_strv(v, n);
      return s ? KCLD_ENOMEM : KCLD_EPARSE;
    }
  }
  *out = v;
  *n_out = n;
  return 0;
}

/* Reads an optional S attribute; a present attribute of another type is an
 * error. */
static int read_s(const json_t *item, const char *name, char **out)
{
  *out = NULL;
  json_t *av = kcld_dynamodb_attr(item, name);
  if (!av)
    return 0;
  const char *s = kcld_dynamodb_as_s(av);
  if (!s)
    return KCLD_EPARSE;
  *out = strdup(s);
  return *out ? 0 : KCLD_ENOMEM;
}

const char *kcld_lease_shard(const struct kcld_lease *l)
{
  return l->stream_id ? l->stream_shard : l->shard_id;
}

const char *kcld_lease_key_parts(const char *key, char *buf, size_t n)
{
  const char *shard = strrchr(key, ':');
  char id[512], *name;
  if (n)
    buf[0] = '\0';
  if (!shard || (size_t)(shard - key) >= sizeof(id))
    return key;
  memcpy(id, key, (size_t)(shard - key));
  id[shard - key] = '\0';
  if (!kcld_lease_stream_id_valid(id))
    return key;
  name = strchr(id, ':') + 1; /* account:NAME:epoch */
  *strchr(name, ':') = '\0';
  snprintf(buf, n, "%s", name);
  return shard + 1;
}

int kcld_lease_of_stream(const struct kcld_lease *l, const char *stream_id)
{
  if (!l->stream_id || !stream_id)
    return !l->stream_id && !stream_id;
  return strcmp(l->stream_id, stream_id) == 0;
}

/* A run of decimal digits from *p (advanced past it); 0 when none. */
static size_t digits(const char **p)
{
  const char *s = *p;
  while (**p >= '0' && **p <= '9')
    (*p)++;
  return (size_t)(*p - s);
}

int kcld_lease_stream_id_valid(const char *id)
{
  const char *p = id, *name;
  int epoch_nonzero = 0;
  if (!id || !digits(&p) || *p++ != ':')
    return 0;
  name = p;
  while (*p && *p != ':')
    p++;
  if (p == name || *p++ != ':')
    return 0;
  for (const char *q = p; *q; q++)
    epoch_nonzero |= *q != '0';
  return digits(&p) && !*p && epoch_nonzero;
}

int kcld_lease_key(char *buf, size_t n, const char *stream_id,
                   const char *shard)
{
  if (!kcld_lease_stream_id_valid(stream_id) || !shard || !shard[0] ||
      strchr(shard, ':'))
    return KCLD_EINVAL;
  int len = snprintf(buf, n, "%s:%s", stream_id, shard);
  return len < 0 || (size_t)len >= n ? KCLD_EINVAL : 0;
}

int kcld_lease_set_stream(struct kcld_lease *l, const char *stream_id)
{
  char key[512];
  int rc = kcld_lease_key(key, sizeof(key), stream_id, l->shard_id);
  if (rc != 0)
    return rc;
  char *k = strdup(key), *id = strdup(stream_id);
  if (!k || !id) {
    free(k);
    free(id);
    return KCLD_ENOMEM;
  }
  free(l->stream_id);
  free(l->stream_shard);
  l->stream_shard = l->shard_id;
  l->shard_id = k;
  l->stream_id = id;
  return 0;
}

/* The stream attributes of an item: none, or streamName and shardId that
 * make up its key. */
static int read_stream(const json_t *item, struct kcld_lease *out)
{
  char key[512];
  int rc;
  if ((rc = read_s(item, A_STREAM, &out->stream_id)) != 0 ||
      (rc = read_s(item, A_SHARD, &out->stream_shard)) != 0)
    return rc;
  if (!out->stream_id && !out->stream_shard)
    return strchr(out->shard_id, ':') ? KCLD_EPARSE : 0;
  if (!out->stream_id || !out->stream_shard ||
      kcld_lease_key(key, sizeof(key), out->stream_id, out->stream_shard) !=
        0 ||
      strcmp(key, out->shard_id) != 0)
    return KCLD_EPARSE;
  return 0;
}

int kcld_lease_from_item(const json_t *item, struct kcld_lease *out)
{
  memset(out, 0, sizeof(*out));
  if (!json_is_object(item))
    return KCLD_EPARSE;
  int rc;
  if ((rc = read_s(item, A_KEY, &out->shard_id)) != 0 ||
      (rc = read_s(item, A_OWNER, &out->owner)) != 0 ||
      (rc = read_s(item, A_CHECKPOINT, &out->checkpoint)) != 0 ||
      (rc = read_u64(item, A_COUNTER, &out->counter)) != 0 ||
      (rc = read_u64(item, A_SUB, &out->checkpoint_sub)) != 0 ||
      (rc = read_u64(item, A_SWITCHES, &out->owner_switches)) != 0 ||
      (rc = read_ss(item, A_PARENTS, &out->parents, &out->n_parents)) != 0 ||
      (rc = read_ss(item, A_CHILDREN, &out->children, &out->n_children)) !=
        0 ||
      (rc = read_s(item, A_START_HASH, &out->starting_hash_key)) != 0 ||
      (rc = read_s(item, A_END_HASH, &out->ending_hash_key)) != 0)
    goto fail;
  if (!out->shard_id || !out->shard_id[0] || !out->checkpoint ||
      !out->checkpoint[0]) {
    rc = KCLD_EPARSE;
    goto fail;
  }
  if ((rc = read_stream(item, out)) != 0)
    goto fail;
  return 0;
fail:
  kcld_lease_clean_up(out);
  return rc;
}

enum kcld_lease_item_kind kcld_lease_item_kind(const json_t *item)
{
  const char *type = kcld_dynamodb_as_s(kcld_dynamodb_attr(item, A_ENTITY));
  if (type && strcmp(type, "LEASE") != 0)
    return KCLD_LEASE_ITEM_OTHER;
  /* A multi-stream lease names its stream ("streamName", the whole stream
   * identifier account:stream:epoch) and is keyed
   * account:stream:epoch:shardId; a shard id never holds a colon. */
  const char *key = kcld_dynamodb_as_s(kcld_dynamodb_attr(item, A_KEY));
  if (kcld_dynamodb_attr(item, A_STREAM) || kcld_dynamodb_attr(item, A_SHARD) ||
      (key && strchr(key, ':')))
    return KCLD_LEASE_ITEM_MULTI_STREAM;
  return KCLD_LEASE_ITEM_LEASE;
}

static json_t *av_u64(uint64_t v)
{
  char buf[24];
  return kcld_dynamodb_av_n(kcld_fmt_u64(buf, sizeof(buf), v));
}

json_t *kcld_lease_to_item(const struct kcld_lease *l)
{
  if (!l || !l->shard_id || !l->checkpoint)
    return NULL;
  json_t *item = json_object();
  if (!item)
    return NULL;
  int rc = 0;
  rc |= kcld_dynamodb_item_set(item, A_KEY, kcld_dynamodb_av_s(l->shard_id));
  if (l->stream_id) {
    if (!l->stream_shard) {
      json_decref(item);
      return NULL;
    }
    rc |= kcld_dynamodb_item_set(item, A_STREAM,
                                 kcld_dynamodb_av_s(l->stream_id));
    rc |= kcld_dynamodb_item_set(item, A_SHARD,
                                 kcld_dynamodb_av_s(l->stream_shard));
  }
  if (l->owner)
    rc |= kcld_dynamodb_item_set(item, A_OWNER, kcld_dynamodb_av_s(l->owner));
  rc |= kcld_dynamodb_item_set(item, A_COUNTER, av_u64(l->counter));
  rc |= kcld_dynamodb_item_set(item, A_CHECKPOINT,
                               kcld_dynamodb_av_s(l->checkpoint));
  rc |= kcld_dynamodb_item_set(item, A_SUB, av_u64(l->checkpoint_sub));
  rc |= kcld_dynamodb_item_set(item, A_SWITCHES, av_u64(l->owner_switches));
  if (l->n_parents)
    rc |= kcld_dynamodb_item_set(
      item, A_PARENTS,
      kcld_dynamodb_av_ss((const char *const *)l->parents, l->n_parents));
  if (l->n_children)
    rc |= kcld_dynamodb_item_set(
      item, A_CHILDREN,
      kcld_dynamodb_av_ss((const char *const *)l->children, l->n_children));
  if (l->starting_hash_key)
    rc |= kcld_dynamodb_item_set(item, A_START_HASH,
                                 kcld_dynamodb_av_s(l->starting_hash_key));
  if (l->ending_hash_key)
    rc |= kcld_dynamodb_item_set(item, A_END_HASH,
                                 kcld_dynamodb_av_s(l->ending_hash_key));
  if (rc != 0) {
    json_decref(item);
    return NULL;
  }
  return item;
}

int kcld_lease_checkpoint_is_initial(const char *checkpoint)
{
  return checkpoint && (strcmp(checkpoint, KCLD_LEASE_TRIM_HORIZON) == 0 ||
                        strcmp(checkpoint, KCLD_LEASE_LATEST) == 0 ||
                        strcmp(checkpoint, KCLD_LEASE_AT_TIMESTAMP) == 0);
}

int kcld_lease_checkpoint_valid(const char *checkpoint)
{
  if (!checkpoint)
    return 0;
  if (kcld_lease_checkpoint_is_initial(checkpoint) ||
      strcmp(checkpoint, KCLD_LEASE_SHARD_END) == 0)
    return 1;
  return kcld_seq_valid(checkpoint);
}

int kcld_lease_is_finished(const struct kcld_lease *l)
{
  return l->checkpoint && strcmp(l->checkpoint, KCLD_LEASE_SHARD_END) == 0;
}

int kcld_lease_has_parent(const struct kcld_lease *l, const char *id)
{
  for (size_t i = 0; i < l->n_parents; i++)
    if (strcmp(l->parents[i], id) == 0)
      return 1;
  return 0;
}

/* ======== Expressions ======== */

void kcld_lease_update_clean_up(struct kcld_lease_update *u)
{
  if (!u)
    return;
  json_decref(u->key);
  json_decref(u->names);
  json_decref(u->values);
  free(u->update);
  free(u->condition);
  memset(u, 0, sizeof(*u));
}

/* Children as a set: duplicates and empty strings dropped (DynamoDB refuses
 * both).  Returns the count kept in *out (a borrowed-pointer array). */
static size_t unique_children(const struct kcld_lease_change *ch,
                              const char **out)
{
  size_t n = 0;
  for (size_t i = 0; i < ch->n_children; i++) {
    const char *s = ch->children[i];
    if (!s || !s[0])
      continue;
    size_t j = 0;
    while (j < n && strcmp(out[j], s) != 0)
      j++;
    if (j == n)
      out[n++] = s;
  }
  return n;
}

/* One write's expressions as they are built: the update and condition
 * texts and exactly the names and values they use. */
struct expr {
  char update[320];
  char cond[160];
  json_t *names;
  json_t *values;
  int err;
};

static void x_name(struct expr *x, const char *ph, const char *attr)
{
  x->err |= json_object_set_new(x->names, ph, json_string(attr));
}

static void x_value(struct expr *x, const char *ph, json_t *av)
{
  x->err |= kcld_dynamodb_item_set(x->values, ph, av);
}

/* The two-phase checkpoint attributes, which the KCL REMOVEs with every
 * checkpoint that carries no pending one (ours never do). */
static void x_pending(struct expr *x)
{
  x_name(x, "#p", A_PENDING);
  x_name(x, "#ps", A_PENDING_SUB);
  x_name(x, "#pst", A_PENDING_STATE);
}

/* TAKE: as the KCL's takeLease (3.x): the new owner, the counter, an owner
 * switch when it had another owner, and checkpointOwner REMOVEd (a fresh
 * assignment: no graceful handoff is pending any more). */
static void build_take(const struct kcld_lease *seen,
                       const struct kcld_lease_change *ch, struct expr *x)
{
  int other = seen->owner && strcmp(seen->owner, ch->worker) != 0;
  if (!seen->owner)
    snprintf(x->cond, sizeof(x->cond),
             "#c = :c AND attribute_not_exists(#o)");
  else if (other)
    snprintf(x->cond, sizeof(x->cond), "#c = :c AND #o = :old");
  else
    snprintf(x->cond, sizeof(x->cond), "#c = :c AND #o = :me");
  x_name(x, "#co", A_CP_OWNER);
  if (other) {
    x_value(x, ":old", kcld_dynamodb_av_s(seen->owner));
    x_name(x, "#s", A_SWITCHES);
    x_value(x, ":one", av_u64(1));
    snprintf(x->update, sizeof(x->update),
             "SET #o = :me, #c = :n REMOVE #co ADD #s :one");
  } else {
    snprintf(x->update, sizeof(x->update),
             "SET #o = :me, #c = :n REMOVE #co");
  }
}

static void build_checkpoint(const struct kcld_lease_change *ch,
                             struct expr *x)
{
  snprintf(x->update, sizeof(x->update),
           "SET #cp = :cp, #cs = :cs, #s = :zero, #c = :n "
           "REMOVE #p, #ps, #pst");
  x_name(x, "#cp", A_CHECKPOINT);
  x_name(x, "#cs", A_SUB);
  x_name(x, "#s", A_SWITCHES);
  x_pending(x);
  x_value(x, ":cp", kcld_dynamodb_av_s(ch->checkpoint));
  x_value(x, ":cs", av_u64(ch->sub));
  x_value(x, ":zero", av_u64(0));
}

/* END: the checkpoint SHARD_END (a checkpoint like any other for the
 * pending attributes), the children added to the set, the owner removed. */
static int build_end(const struct kcld_lease_change *ch, struct expr *x)
{
  const char **kids = NULL;
  size_t nk = 0;
  x_name(x, "#cp", A_CHECKPOINT);
  x_name(x, "#cs", A_SUB);
  x_name(x, "#s", A_SWITCHES);
  x_pending(x);
  x_value(x, ":cp", kcld_dynamodb_av_s(KCLD_LEASE_SHARD_END));
  x_value(x, ":zero", av_u64(0));
  if (ch->n_children) {
    kids = calloc(ch->n_children, sizeof(*kids));
    if (!kids)
      return KCLD_ENOMEM;
    nk = unique_children(ch, kids);
  }
  snprintf(x->update, sizeof(x->update),
           "SET #cp = :cp, #cs = :zero, #s = :zero, #c = :n "
           "REMOVE #o, #p, #ps, #pst%s",
           nk ? " ADD #ch :ch" : "");
  if (nk) {
    x_name(x, "#ch", A_CHILDREN);
    x_value(x, ":ch", kcld_dynamodb_av_ss(kids, nk));
  }
  free(kids);
  return 0;
}

int kcld_lease_update_build(const struct kcld_lease *seen,
                            const struct kcld_lease_change *ch,
                            struct kcld_lease_update *out)
{
  memset(out, 0, sizeof(*out));
  if (!seen || !seen->shard_id || !ch || ch->kind > KCLD_LEASE_DELETE)
    return KCLD_EINVAL;
  if (ch->kind != KCLD_LEASE_DELETE && (!ch->worker || !ch->worker[0]))
    return KCLD_EINVAL;
  if (ch->kind == KCLD_LEASE_CHECKPOINT &&
      (!ch->checkpoint || !ch->checkpoint[0]))
    return KCLD_EINVAL;

  int rc = KCLD_ENOMEM;
  struct expr x = {.names = json_object(), .values = json_object()};
  out->key = json_object();
  if (!out->key || !x.names || !x.values ||
      kcld_dynamodb_item_set(out->key, A_KEY,
                             kcld_dynamodb_av_s(seen->shard_id)) != 0)
    goto fail;

  /* Every write is conditional on the counter seen; all but DELETE also
   * on our owner (TAKE: on the owner seen) and bump the counter. */
  x_name(&x, "#c", A_COUNTER);
  x_value(&x, ":c", av_u64(seen->counter));
  if (ch->kind != KCLD_LEASE_DELETE) {
    x_name(&x, "#o", A_OWNER);
    x_value(&x, ":me", kcld_dynamodb_av_s(ch->worker));
    x_value(&x, ":n", av_u64(seen->counter + 1));
    snprintf(x.cond, sizeof(x.cond), "#c = :c AND #o = :me");
  }
  switch (ch->kind) {
  case KCLD_LEASE_RENEW:
    snprintf(x.update, sizeof(x.update), "SET #c = :n");
    break;
  case KCLD_LEASE_TAKE:
    build_take(seen, ch, &x);
    break;
  case KCLD_LEASE_RELEASE:
    /* As the KCL's evictLease: checkpointOwner goes too. */
    x_name(&x, "#co", A_CP_OWNER);
    snprintf(x.update, sizeof(x.update), "SET #c = :n REMOVE #o, #co");
    break;
  case KCLD_LEASE_CHECKPOINT:
    build_checkpoint(ch, &x);
    break;
  case KCLD_LEASE_END:
    if (build_end(ch, &x) != 0)
      goto fail;
    break;
  case KCLD_LEASE_DELETE:
    snprintf(x.cond, sizeof(x.cond), "#c = :c AND #cp = :end");
    x_name(&x, "#cp", A_CHECKPOINT);
    x_value(&x, ":end", kcld_dynamodb_av_s(KCLD_LEASE_SHARD_END));
    break;
  }
  if (x.err)
    goto fail;
  out->names = x.names;
  out->values = x.values;
  x.names = x.values = NULL;
  out->condition = strdup(x.cond);
  out->update = ch->kind == KCLD_LEASE_DELETE ? NULL : strdup(x.update);
  if (!out->condition || (ch->kind != KCLD_LEASE_DELETE && !out->update))
    goto fail;
  return 0;
fail:
  json_decref(x.names);
  json_decref(x.values);
  kcld_lease_update_clean_up(out);
  return rc;
}

/* Adds the children of `ch` not yet in the lease's set. */
static int merge_children(struct kcld_lease *l,
                          const struct kcld_lease_change *ch)
{
  for (size_t i = 0; i < ch->n_children; i++) {
    const char *s = ch->children[i];
    if (!s || !s[0])
      continue;
    size_t j = 0;
    while (j < l->n_children && strcmp(l->children[j], s) != 0)
      j++;
    if (j < l->n_children)
      continue;
    char **v = realloc(l->children, (l->n_children + 1) * sizeof(*v));
    if (!v)
      return KCLD_ENOMEM;
    l->children = v;
    if (!(v[l->n_children] = strdup(s)))
      return KCLD_ENOMEM;
    l->n_children++;
  }
  return 0;
}

static int set_str(char **dst, const char *s)
{
  char *d = NULL;
  if (s && !(d = strdup(s)))
    return KCLD_ENOMEM;
  free(*dst);
  *dst = d;
  return 0;
}

int kcld_lease_apply(struct kcld_lease *l, const struct kcld_lease_change *ch)
{
  switch (ch->kind) {
  case KCLD_LEASE_RENEW:
    l->counter++;
    return 0;
  case KCLD_LEASE_TAKE:
    if (l->owner && strcmp(l->owner, ch->worker) != 0)
      l->owner_switches++;
    l->counter++;
    return set_str(&l->owner, ch->worker);
  case KCLD_LEASE_RELEASE:
    l->counter++;
    return set_str(&l->owner, NULL);
  case KCLD_LEASE_CHECKPOINT:
    l->counter++;
    l->checkpoint_sub = ch->sub;
    l->owner_switches = 0;
    return set_str(&l->checkpoint, ch->checkpoint);
  case KCLD_LEASE_END:
    l->counter++;
    l->checkpoint_sub = 0;
    l->owner_switches = 0;
    if (set_str(&l->owner, NULL) || set_str(&l->checkpoint,
                                            KCLD_LEASE_SHARD_END))
      return KCLD_ENOMEM;
    return merge_children(l, ch);
  case KCLD_LEASE_DELETE:
    return 0;
  }
  return KCLD_EINVAL;
}

static int str_eq(const char *a, const char *b)
{
  return a && b && strcmp(a, b) == 0;
}

int kcld_lease_landed(const struct kcld_lease *seen,
                      const struct kcld_lease_change *ch,
                      const struct kcld_lease *now)
{
  if (ch->kind == KCLD_LEASE_DELETE)
    return now == NULL;
  if (!now || now->counter != seen->counter + 1)
    return 0;
  switch (ch->kind) {
  case KCLD_LEASE_RENEW:
  case KCLD_LEASE_TAKE:
    return str_eq(now->owner, ch->worker);
  case KCLD_LEASE_RELEASE:
    return now->owner == NULL;
  case KCLD_LEASE_CHECKPOINT:
    return str_eq(now->owner, ch->worker) &&
           str_eq(now->checkpoint, ch->checkpoint) &&
           now->checkpoint_sub == ch->sub;
  case KCLD_LEASE_END:
    return now->owner == NULL &&
           str_eq(now->checkpoint, KCLD_LEASE_SHARD_END);
  case KCLD_LEASE_DELETE:
    break;
  }
  return 0;
}

/* ======== The table ======== */

struct kcld_lease_table {
  struct kcld_dynamodb *db;
  char *name;
  int multi_stream;
};

int kcld_lease_table_new(struct kcld_dynamodb *db, const char *name,
                         int multi_stream, struct kcld_lease_table **out)
{
  *out = NULL;
  if (!db || !name || !name[0])
    return KCLD_EINVAL;
  struct kcld_lease_table *t = calloc(1, sizeof(*t));
  if (!t)
    return KCLD_ENOMEM;
  t->db = db;
  t->multi_stream = multi_stream != 0;
  if (!(t->name = strdup(name))) {
    free(t);
    return KCLD_ENOMEM;
  }
  *out = t;
  return 0;
}

void kcld_lease_table_free(struct kcld_lease_table *t)
{
  if (!t)
    return;
  free(t->name);
  free(t);
}

const char *kcld_lease_table_name(const struct kcld_lease_table *t)
{
  return t->name;
}

/* Sets *st to `err` (0: success) with a message printf'd into buf (cap
 * bytes; none when fmt is NULL), for answers made here. */
static void table_status(struct kcld_svc_status *st, int err, char *buf,
                         size_t cap, const char *fmt, ...)
  __attribute__((format(printf, 5, 6)));
static void table_status(struct kcld_svc_status *st, int err, char *buf,
                         size_t cap, const char *fmt, ...)
{
  memset(st, 0, sizeof(*st));
  st->err = err;
  st->type = "";
  st->message = "";
  if (fmt && buf && cap) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    st->message = buf;
  }
}

/* ---- ensure ---- */

struct ensure_op {
  struct kcld_lease_table *t;
  long timeout_ms;
  int created;
  kcld_lease_table_ensure_cb cb;
  void *arg;
};

static void ensure_end(struct ensure_op *op, const struct kcld_svc_status *st)
{
  op->cb(st, op->created, op->arg);
  free(op);
}

/* Ends the ensure with an error of its own (a request not sent). */
static void ensure_fail(struct ensure_op *op, const char *operation, int err)
{
  char msg[256];
  struct kcld_svc_status st;
  table_status(&st, err, msg, sizeof(msg), "%s table %s: %s", operation,
               op->t->name, kcld_strerror(err));
  ensure_end(op, &st);
}

static void ensure_on_active(const struct kcld_dynamodb_table *res, void *arg)
{
  ensure_end(arg, &res->st);
}

static void ensure_wait(struct ensure_op *op)
{
  int rc = kcld_dynamodb_wait_active(op->t->db, op->t->name, op->timeout_ms,
                                     ensure_on_active, op);
  if (rc < 0)
    ensure_fail(op, "DescribeTable", rc);
}

static void ensure_on_create(const struct kcld_dynamodb_table *res, void *arg)
{
  struct ensure_op *op = arg;
  if (res->st.err == 0) {
    op->created = 1;
    kcld_log(KCLD_LOG_INFO, "lease table created", "table", op->t->name,
             NULL);
  } else if (kcld_dynamodb_fault(&res->st) != KCLD_DYNAMODB_IN_USE) {
    ensure_end(op, &res->st);
    return;
  }
  ensure_wait(op);
}

static json_t *create_table_request(const char *name)
{
  return json_pack("{s:s, s:[{s:s, s:s}], s:[{s:s, s:s}], s:s}", "TableName",
                   name, "KeySchema", "AttributeName", A_KEY, "KeyType",
                   "HASH", "AttributeDefinitions", "AttributeName", A_KEY,
                   "AttributeType", "S", "BillingMode", "PAY_PER_REQUEST");
}

static void ensure_on_describe(const struct kcld_dynamodb_table *res,
                               void *arg)
{
  struct ensure_op *op = arg;
  if (res->st.err == 0) {
    if (res->status && strcmp(res->status, "ACTIVE") == 0) {
      ensure_end(op, &res->st);
      return;
    }
    ensure_wait(op);
    return;
  }
  if (res->st.err != KCLD_ENOTFOUND) {
    ensure_end(op, &res->st);
    return;
  }
  json_t *req = create_table_request(op->t->name);
  int rc = req ? kcld_dynamodb_create_table(op->t->db, req, ensure_on_create,
                                            op)
               : KCLD_ENOMEM;
  json_decref(req);
  if (rc < 0)
    ensure_fail(op, "CreateTable", rc);
}

int kcld_lease_table_ensure(struct kcld_lease_table *t, long timeout_ms,
                            kcld_lease_table_ensure_cb cb, void *arg)
{
  if (!t || !cb)
    return KCLD_EINVAL;
  struct ensure_op *op = calloc(1, sizeof(*op));
  if (!op)
    return KCLD_ENOMEM;
  *op = (struct ensure_op){.t = t, .timeout_ms = timeout_ms, .cb = cb,
                           .arg = arg};
  int rc = kcld_dynamodb_describe_table(t->db, t->name, ensure_on_describe,
                                        op);
  if (rc < 0)
    free(op);
  return rc;
}

/* ---- scan ---- */

struct scan_op {
  struct kcld_lease_table *t;
  kcld_lease_scan_cb cb;
  void *arg;
};

static void scan_end(struct scan_op *op, const struct kcld_svc_status *st,
                     struct kcld_lease *v, size_t n)
{
  op->cb(st, st->err ? NULL : v, st->err ? 0 : n, op->arg);
  for (size_t i = 0; i < n; i++)
    kcld_lease_clean_up(&v[i]);
  free(v);
  free(op);
}

/* Reads one scanned item into *out: 1 when it is a lease, 0 when it is
 * skipped, or KCLD_ENOMEM / KCLD_ECONFIG (a multi-stream table). */
static int scan_item(struct scan_op *op, const json_t *item,
                     struct kcld_lease *out)
{
  char key[128];
  enum kcld_lease_item_kind kind = kcld_lease_item_kind(item);
  kcld_svc_json_brief(key, sizeof(key), kcld_dynamodb_attr(item, A_KEY), 100);
  switch (kind) {
  case KCLD_LEASE_ITEM_OTHER:
    kcld_log(KCLD_LOG_DEBUG, "skipping a lease table item of another kind",
             "table", op->t->name, "key", key, NULL);
    return 0;
  case KCLD_LEASE_ITEM_MULTI_STREAM:
  case KCLD_LEASE_ITEM_LEASE:
    break;
  }
  if ((kind == KCLD_LEASE_ITEM_MULTI_STREAM) != op->t->multi_stream) {
    kcld_log(KCLD_LOG_ERROR, op->t->multi_stream
               ? "the lease table holds single-stream leases (leaseKey = a "
                 "shard id): `streams:` needs a table in the KCL's "
                 "multi-stream format; use another lease.table"
               : "the lease table belongs to a KCL multi-stream application "
                 "(leaseKey account:stream:epoch:shardId, or a streamName "
                 "attribute): configure it with `streams:`, or use another "
                 "lease.table",
             "table", op->t->name, "key", key, NULL);
    return KCLD_ECONFIG;
  }
  int rc = kcld_lease_from_item(item, out);
  if (rc == 0 || rc == KCLD_ENOMEM)
    return rc == 0 ? 1 : rc;
  kcld_log(KCLD_LOG_WARN, "skipping a lease table item that is not a lease",
           "table", op->t->name, "key", key, NULL);
  return 0;
}

static void on_scan(const struct kcld_dynamodb_scan_result *res, void *arg)
{
  struct scan_op *op = arg;
  if (res->st.err) {
    scan_end(op, &res->st, NULL, 0);
    return;
  }
  size_t n = json_array_size(res->items), k = 0;
  struct kcld_lease *v = n ? calloc(n, sizeof(*v)) : NULL;
  int err = n && !v ? KCLD_ENOMEM : 0;
  for (size_t i = 0; i < n && !err; i++) {
    int rc = scan_item(op, json_array_get(res->items, i), &v[k]);
    if (rc < 0)
      err = rc;
    else
      k += (size_t)rc;
  }
  char msg[256];
  struct kcld_svc_status st = res->st;
  if (err)
    table_status(&st, err, msg, sizeof(msg), "Scan table %s: %s",
                 op->t->name, err != KCLD_ECONFIG ? kcld_strerror(err)
                   : op->t->multi_stream
                   ? "a single-stream lease table (streams: needs the KCL's "
                     "multi-stream format)"
                   : "a KCL multi-stream lease table (needs streams:)");
  scan_end(op, &st, v, k);
}

int kcld_lease_table_scan(struct kcld_lease_table *t, kcld_lease_scan_cb cb,
                          void *arg)
{
  if (!t || !cb)
    return KCLD_EINVAL;
  struct scan_op *op = calloc(1, sizeof(*op));
  if (!op)
    return KCLD_ENOMEM;
  *op = (struct scan_op){.t = t, .cb = cb, .arg = arg};
  struct kcld_dynamodb_scan_req req = {.table = t->name,
                                       .consistent_read = 1};
  int rc = kcld_dynamodb_scan(t->db, &req, NULL, on_scan, op);
  if (rc < 0)
    free(op);
  return rc;
}

/* ---- get ---- */

static json_t *key_of(const char *shard_id)
{
  json_t *key = json_object();
  if (key && kcld_dynamodb_item_set(key, A_KEY,
                                    kcld_dynamodb_av_s(shard_id)) != 0) {
    json_decref(key);
    key = NULL;
  }
  return key;
}

struct get_op {
  kcld_lease_get_cb cb;
  void *arg;
};

static void on_get(const struct kcld_dynamodb_result *res, void *arg)
{
  struct get_op *op = arg;
  if (res->st.err || !res->item) {
    op->cb(res->st.err, NULL, op->arg);
    free(op);
    return;
  }
  struct kcld_lease l;
  int rc = kcld_lease_from_item(res->item, &l);
  op->cb(rc, rc ? NULL : &l, op->arg);
  kcld_lease_clean_up(&l);
  free(op);
}

int kcld_lease_table_get(struct kcld_lease_table *t, const char *shard_id,
                         kcld_lease_get_cb cb, void *arg)
{
  if (!t || !shard_id || !cb)
    return KCLD_EINVAL;
  struct get_op *op = calloc(1, sizeof(*op));
  json_t *key = key_of(shard_id);
  int rc = KCLD_ENOMEM;
  if (op && key) {
    *op = (struct get_op){.cb = cb, .arg = arg};
    rc = kcld_dynamodb_get_item(t->db, t->name, key, 1, on_get, op);
  }
  json_decref(key);
  if (rc < 0)
    free(op);
  return rc;
}

/* ---- create ---- */

struct create_op {
  kcld_lease_create_cb cb;
  void *arg;
};

static void on_create(const struct kcld_dynamodb_result *res, void *arg)
{
  struct create_op *op = arg;
  struct kcld_svc_status st = res->st;
  if (st.err == KCLD_ECONDITION) /* it exists: fine */
    table_status(&st, 0, NULL, 0, NULL);
  op->cb(&st, res->st.err == 0, op->arg);
  free(op);
}

int kcld_lease_table_create(struct kcld_lease_table *t,
                            const struct kcld_lease *l,
                            kcld_lease_create_cb cb, void *arg)
{
  if (!t || !l || !cb)
    return KCLD_EINVAL;
  json_t *item = kcld_lease_to_item(l);
  if (!item)
    return l->shard_id && l->checkpoint ? KCLD_ENOMEM : KCLD_EINVAL;
  json_t *names = json_pack("{s:s}", "#k", A_KEY);
  struct create_op *op = calloc(1, sizeof(*op));
  int rc = KCLD_ENOMEM;
  if (names && op) {
    *op = (struct create_op){.cb = cb, .arg = arg};
    struct kcld_dynamodb_cond cond = {
      .condition = "attribute_not_exists(#k)", .names = names};
    rc = kcld_dynamodb_put_item(t->db, t->name, item, &cond, on_create, op);
  }
  json_decref(names);
  json_decref(item);
  if (rc < 0)
    free(op);
  return rc;
}

/* ---- conditional writes ---- */

struct write_op {
  struct kcld_lease_table *t;
  struct kcld_lease seen;
  struct kcld_lease_change ch;
  char *worker;
  char *checkpoint;
  char **children;
  kcld_lease_write_cb cb;
  void *arg;
};

static void write_free(struct write_op *op)
{
  kcld_lease_clean_up(&op->seen);
  free(op->worker);
  free(op->checkpoint);
  free_strv(op->children, op->ch.n_children);
  free(op);
}

static void write_on_reread(int err, const struct kcld_lease *now, void *arg)
{
  struct write_op *op = arg;
  if (err) {
    op->cb(err, 0, NULL, op->arg);
  } else if (kcld_lease_landed(&op->seen, &op->ch, now)) {
    op->cb(0, 1, now, op->arg);
  } else {
    op->cb(KCLD_ECONDITION, 0, now, op->arg);
  }
  write_free(op);
}

static void write_on_result(const struct kcld_dynamodb_result *res, void *arg)
{
  struct write_op *op = arg;
  if (res->st.err != KCLD_ECONDITION) {
    op->cb(res->st.err, 0, NULL, op->arg);
    write_free(op);
    return;
  }
  int rc = kcld_lease_table_get(op->t, op->seen.shard_id, write_on_reread,
                                op);
  if (rc < 0) {
    op->cb(rc, 0, NULL, op->arg);
    write_free(op);
  }
}

int kcld_lease_table_write(struct kcld_lease_table *t,
                           const struct kcld_lease *seen,
                           const struct kcld_lease_change *ch,
                           kcld_lease_write_cb cb, void *arg)
{
  if (!t || !seen || !ch || !cb)
    return KCLD_EINVAL;
  struct kcld_lease_update u;
  int rc = kcld_lease_update_build(seen, ch, &u);
  if (rc < 0)
    return rc;
  struct write_op *op = calloc(1, sizeof(*op));
  if (!op) {
    kcld_lease_update_clean_up(&u);
    return KCLD_ENOMEM;
  }
  op->t = t;
  op->cb = cb;
  op->arg = arg;
  op->ch = *ch;
  int fail = kcld_lease_copy(&op->seen, seen) != 0;
  op->worker = dup_opt(ch->worker, &fail);
  op->checkpoint = dup_opt(ch->checkpoint, &fail);
  op->ch.worker = op->worker;
  op->ch.checkpoint = op->checkpoint;
  op->children = dup_strv((char *const *)ch->children, ch->n_children, &fail);
  op->ch.children = (const char *const *)op->children;
  if (!op->children)
    op->ch.n_children = 0;
  if (fail) {
    kcld_lease_update_clean_up(&u);
    write_free(op);
    return KCLD_ENOMEM;
  }
  struct kcld_dynamodb_cond cond = {
    .condition = u.condition, .names = u.names, .values = u.values};
  if (ch->kind == KCLD_LEASE_DELETE)
    rc = kcld_dynamodb_delete_item(t->db, t->name, u.key, &cond,
                                   write_on_result, op);
  else
    rc = kcld_dynamodb_update_item(t->db, t->name, u.key, u.update, &cond,
                                   write_on_result, op);
  kcld_lease_update_clean_up(&u);
  if (rc < 0)
    write_free(op);
  return rc;
}
