/* metrics.c — the metrics registry and its Prometheus and EMF renderings.
 *
 * Families live in an array in declaration order; each holds its series in
 * a list in creation order.  Lookups are O(1): one hash table maps a family
 * name to its family, another (name, labels) to the series, so a walk that
 * sets a dozen series per shard costs the same per shard at 4 or 4096
 * shards.  Callers that set the same series again and again may also keep
 * a handle (kcld_metrics_series) and skip the lookup. */
#include "ops/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/buf.h"
#include "err.h"

struct family;

struct kcld_metric_series {
  struct kcld_metric_series *prev, *next; /* the family's, creation order */
  struct kcld_metric_series *hnext;       /* hash chain */
  struct family *fam;
  uint64_t hash;
  char **labels;          /* name, value, name, value, ..., NULL */
  size_t nlabels;         /* pairs */
  double value;           /* counter, gauge */
  uint64_t *counts;       /* histogram: per bucket (not cumulative), +Inf
                             last */
  uint64_t count;         /* histogram */
  double sum;             /* histogram */
};

struct family {
  char *name;
  char *help;
  uint64_t hash;          /* of the name */
  enum kcld_metric_type type;
  double buckets[KCLD_METRICS_MAX_BUCKETS];
  size_t nbuckets;
  struct kcld_metric_series *first, *last;
  struct kcld_metric_series *bare;    /* the unlabelled series, if any */
};

struct kcld_metrics {
  pthread_mutex_t mu;
  struct family **fams;   /* declaration order */
  size_t nfams, cap;
  struct family **fidx;   /* open addressing by name hash; NULL = free */
  size_t fidx_cap;        /* a power of two, > 2 * nfams */
  struct kcld_metric_series **bkt;    /* series hash chains */
  size_t nbkt, nseries;   /* nbkt a power of two */
  uint64_t probes;        /* series and families compared in lookups */
  kcld_metrics_collect_fn collect;
  void *collect_arg;
};

/* ======== Names and labels ======== */

static int valid_name(const char *s, int colon)
{
  if (!s || !*s)
    return 0;
  for (size_t i = 0; s[i]; i++) {
    char c = s[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
             (colon && c == ':') || (i > 0 && c >= '0' && c <= '9');
    if (!ok)
      return 0;
  }
  return 1;
}

static int valid_labels(const char *const *labels)
{
  if (!labels)
    return 1;
  for (size_t i = 0; labels[i]; i += 2) {
    if (!valid_name(labels[i], 0) || strncmp(labels[i], "__", 2) == 0)
      return 0;
    if (!labels[i + 1])
      return 0;
  }
  return 1;
}

/* FNV-1a over a string and its terminating NUL. */
static uint64_t hash_str(uint64_t h, const char *s)
{
  do {
    h ^= (unsigned char)*s;
    h *= 1099511628211ULL;
  } while (*s++);
  return h;
}

#define HASH_SEED 1469598103934665603ULL

static uint64_t hash_series(uint64_t name_hash, const char *const *labels)
{
  uint64_t h = name_hash;
  if (labels)
    for (size_t i = 0; labels[i]; i++)
      h = hash_str(h, labels[i]);
  return h;
}

static int labels_equal(const struct kcld_metric_series *s,
                        const char *const *labels)
{
  size_t n = 0;
  if (labels)
    for (; labels[2 * n]; n++)
      if (n >= s->nlabels || strcmp(labels[2 * n], s->labels[2 * n]) != 0 ||
          strcmp(labels[2 * n + 1], s->labels[2 * n + 1]) != 0)
        return 0;
  return n == s->nlabels;
}

static void series_free(struct kcld_metric_series *s)
{
  if (!s)
    return;
  for (size_t i = 0; i < 2 * s->nlabels; i++)
    free(s->labels[i]);
  free(s->labels);
  free(s->counts);
  free(s);
}

static struct kcld_metric_series *series_new(struct family *f,
                                             const char *const *labels,
                                 uint64_t hash)
{
  struct kcld_metric_series *s = calloc(1, sizeof(*s));
  size_t n = 0;
  if (!s)
    return NULL;
  if (labels)
    while (labels[2 * n])
      n++;
  s->labels = calloc(2 * n + 1, sizeof(char *));
  if (!s->labels)
    goto fail;
  s->nlabels = n;
  s->fam = f;
  s->hash = hash;
  for (size_t i = 0; i < 2 * n; i++)
    if (!(s->labels[i] = strdup(labels[i])))
      goto fail;
  if (f->type == KCLD_METRIC_HISTOGRAM &&
      !(s->counts = calloc(f->nbuckets + 1, sizeof(uint64_t))))
    goto fail;
  return s;
fail:
  series_free(s);
  return NULL;
}

static struct family *find_family(struct kcld_metrics *m, const char *name)
{
  uint64_t h;
  if (!m->fidx_cap)
    return NULL;
  h = hash_str(HASH_SEED, name);
  for (size_t i = h & (m->fidx_cap - 1);; i = (i + 1) & (m->fidx_cap - 1)) {
    struct family *f = m->fidx[i];
    if (!f)
      return NULL;
    m->probes++;
    if (f->hash == h && strcmp(f->name, name) == 0)
      return f;
  }
}

/* Puts f in the name index, growing it to stay under half full. */
static int index_family(struct kcld_metrics *m, struct family *f)
{
  if (2 * (m->nfams + 1) >= m->fidx_cap) {
    size_t cap = m->fidx_cap ? 2 * m->fidx_cap : 64;
    struct family **idx = calloc(cap, sizeof(*idx));
    if (!idx)
      return KCLD_ENOMEM;
    for (size_t k = 0; k < m->nfams; k++) {
      size_t i = m->fams[k]->hash & (cap - 1);
      while (idx[i])
        i = (i + 1) & (cap - 1);
      idx[i] = m->fams[k];
    }
    free(m->fidx);
    m->fidx = idx;
    m->fidx_cap = cap;
  }
  size_t i = f->hash & (m->fidx_cap - 1);
  while (m->fidx[i])
    i = (i + 1) & (m->fidx_cap - 1);
  m->fidx[i] = f;
  return 0;
}

/* Doubles the series table when it holds more series than chains. */
static void grow_series_index(struct kcld_metrics *m)
{
  size_t nb = m->nbkt ? 2 * m->nbkt : 256;
  struct kcld_metric_series **b;
  if (m->nseries < m->nbkt)
    return;
  if (!(b = calloc(nb, sizeof(*b))))
    return; /* longer chains, still correct */
  for (size_t i = 0; i < m->nbkt; i++) {
    struct kcld_metric_series *s = m->bkt[i], *next;
    for (; s; s = next) {
      next = s->hnext;
      s->hnext = b[s->hash & (nb - 1)];
      b[s->hash & (nb - 1)] = s;
    }
  }
  free(m->bkt);
  m->bkt = b;
  m->nbkt = nb;
}

/* Takes s out of the index and its family's list, and frees it. */
static void series_remove(struct kcld_metrics *m, struct kcld_metric_series *s)
{
  struct family *f = s->fam;
  struct kcld_metric_series **p = &m->bkt[s->hash & (m->nbkt - 1)];
  while (*p != s)
    p = &(*p)->hnext;
  *p = s->hnext;
  if (s->prev)
    s->prev->next = s->next;
  else
    f->first = s->next;
  if (s->next)
    s->next->prev = s->prev;
  else
    f->last = s->prev;
  if (f->bare == s)
    f->bare = NULL;
  m->nseries--;
  series_free(s);
}

/* The series for `labels`, created when new; NULL when out of memory. */
static struct kcld_metric_series *get_series(struct kcld_metrics *m,
                                             struct family *f,
                                 const char *const *labels)
{
  uint64_t h = hash_series(f->hash, labels);
  struct kcld_metric_series *s;

  if (m->nbkt)
    for (s = m->bkt[h & (m->nbkt - 1)]; s; s = s->hnext) {
      m->probes++;
      if (s->hash == h && s->fam == f && labels_equal(s, labels))
        return s;
    }
  grow_series_index(m);
  if (!m->nbkt || !(s = series_new(f, labels, h)))
    return NULL;
  s->hnext = m->bkt[h & (m->nbkt - 1)];
  m->bkt[h & (m->nbkt - 1)] = s;
  m->nseries++;
  s->prev = f->last;
  if (f->last)
    f->last->next = s;
  else
    f->first = s;
  f->last = s;
  if (s->nlabels == 0)
    f->bare = s;
  return s;
}

/* ======== The registry ======== */

int kcld_metrics_new(struct kcld_metrics **out)
{
  struct kcld_metrics *m = calloc(1, sizeof(*m));
  *out = NULL;
  if (!m)
    return KCLD_ENOMEM;
  pthread_mutex_init(&m->mu, NULL);
  *out = m;
  return 0;
}

static void family_clear(struct kcld_metrics *m, struct family *f)
{
  while (f->first)
    series_remove(m, f->first);
}

static void family_free(struct family *f)
{
  free(f->name);
  free(f->help);
  free(f);
}

void kcld_metrics_free(struct kcld_metrics *m)
{
  if (!m)
    return;
  for (size_t i = 0; i < m->nfams; i++) {
    family_clear(m, m->fams[i]);
    family_free(m->fams[i]);
  }
  free(m->fams);
  free(m->fidx);
  free(m->bkt);
  pthread_mutex_destroy(&m->mu);
  free(m);
}

static int check_buckets(enum kcld_metric_type type, const double *buckets,
                         size_t nbuckets)
{
  if (type != KCLD_METRIC_HISTOGRAM)
    return buckets || nbuckets ? KCLD_EINVAL : 0;
  if (!buckets || nbuckets == 0 || nbuckets > KCLD_METRICS_MAX_BUCKETS)
    return KCLD_EINVAL;
  for (size_t i = 0; i < nbuckets; i++)
    if (!isfinite(buckets[i]) || (i > 0 && buckets[i] <= buckets[i - 1]))
      return KCLD_EINVAL;
  return 0;
}

static int declare_locked(struct kcld_metrics *m, const char *name,
                          enum kcld_metric_type type, const char *help,
                          const double *buckets, size_t nbuckets)
{
  struct family *f = find_family(m, name);
  int rc;
  if (f)
    return f->type == type ? 0 : KCLD_EINVAL;
  if ((rc = check_buckets(type, buckets, nbuckets)) != 0)
    return rc;
  if (m->nfams == m->cap) {
    size_t cap = m->cap ? 2 * m->cap : 16;
    struct family **p = realloc(m->fams, cap * sizeof(*p));
    if (!p)
      return KCLD_ENOMEM;
    m->fams = p;
    m->cap = cap;
  }
  if (!(f = calloc(1, sizeof(*f))))
    return KCLD_ENOMEM;
  f->name = strdup(name);
  f->help = strdup(help ? help : "");
  f->hash = hash_str(HASH_SEED, name);
  f->type = type;
  if (type == KCLD_METRIC_HISTOGRAM) {
    memcpy(f->buckets, buckets, nbuckets * sizeof(double));
    f->nbuckets = nbuckets;
  }
  if (!f->name || !f->help || index_family(m, f) != 0) {
    family_free(f);
    return KCLD_ENOMEM;
  }
  m->fams[m->nfams++] = f;
  if (type != KCLD_METRIC_HISTOGRAM && !get_series(m, f, NULL))
    return KCLD_ENOMEM; /* declared, without its 0 sample */
  return 0;
}

int kcld_metrics_declare(struct kcld_metrics *m, const char *name,
                         enum kcld_metric_type type, const char *help,
                         const double *buckets, size_t nbuckets)
{
  int rc;
  if (!m || !valid_name(name, 1) || type > KCLD_METRIC_HISTOGRAM)
    return KCLD_EINVAL;
  if (help && strchr(help, '\n'))
    return KCLD_EINVAL;
  pthread_mutex_lock(&m->mu);
  rc = declare_locked(m, name, type, help, buckets, nbuckets);
  pthread_mutex_unlock(&m->mu);
  return rc;
}

/* The declaration's unlabelled series is dropped as soon as a labelled one
 * appears, so that a labelled family does not show a stray bare sample. */
static void drop_bare(struct kcld_metrics *m, struct family *f)
{
  if (f->bare && f->bare->value == 0)
    series_remove(m, f->bare);
}

static void set_value(struct kcld_metrics *m, struct kcld_metric_series *s,
                      double v,
                      int add)
{
  s->value = add ? s->value + v : v;
  if (s->nlabels > 0 && s->fam->bare)
    drop_bare(m, s->fam);
}

static int update(struct kcld_metrics *m, const char *name,
                  const char *const *labels, double v, int add)
{
  struct family *f;
  struct kcld_metric_series *s;
  int rc = 0;

  if (!m || !name || isnan(v) || !valid_labels(labels))
    return KCLD_EINVAL;
  pthread_mutex_lock(&m->mu);
  f = find_family(m, name);
  if (!f) {
    rc = KCLD_ENOTFOUND;
  } else if (f->type == KCLD_METRIC_HISTOGRAM ||
             (f->type == KCLD_METRIC_COUNTER && v < 0)) {
    rc = KCLD_EINVAL;
  } else if (!(s = get_series(m, f, labels))) {
    rc = KCLD_ENOMEM;
  } else {
    set_value(m, s, v, add);
  }
  pthread_mutex_unlock(&m->mu);
  return rc;
}

int kcld_metrics_set(struct kcld_metrics *m, const char *name,
                     const char *const *labels, double value)
{
  return update(m, name, labels, value, 0);
}

int kcld_metrics_add(struct kcld_metrics *m, const char *name,
                     const char *const *labels, double delta)
{
  return update(m, name, labels, delta, 1);
}

int kcld_metrics_observe(struct kcld_metrics *m, const char *name,
                         const char *const *labels, double value)
{
  struct family *f;
  struct kcld_metric_series *s;
  int rc = 0;

  if (!m || !name || isnan(value) || !valid_labels(labels))
    return KCLD_EINVAL;
  pthread_mutex_lock(&m->mu);
  f = find_family(m, name);
  if (!f) {
    rc = KCLD_ENOTFOUND;
  } else if (f->type != KCLD_METRIC_HISTOGRAM) {
    rc = KCLD_EINVAL;
  } else if (!(s = get_series(m, f, labels))) {
    rc = KCLD_ENOMEM;
  } else {
    size_t i = 0;
    while (i < f->nbuckets && value > f->buckets[i])
      i++;
    s->counts[i]++;
    s->count++;
    s->sum += value;
  }
  pthread_mutex_unlock(&m->mu);
  return rc;
}

double kcld_metrics_get(struct kcld_metrics *m, const char *name,
                        const char *const *labels)
{
  double v = NAN;
  struct family *f;
  if (!m || !name)
    return NAN;
  pthread_mutex_lock(&m->mu);
  if ((f = find_family(m, name)) && m->nbkt) {
    uint64_t h = hash_series(f->hash, labels);
    for (struct kcld_metric_series *s = m->bkt[h & (m->nbkt - 1)]; s;
         s = s->hnext)
      if (s->hash == h && s->fam == f && labels_equal(s, labels)) {
        v = f->type == KCLD_METRIC_HISTOGRAM ? (double)s->count : s->value;
        break;
      }
  }
  pthread_mutex_unlock(&m->mu);
  return v;
}

int kcld_metrics_clear(struct kcld_metrics *m, const char *name)
{
  struct family *f;
  int rc = 0;
  if (!m || !name)
    return KCLD_EINVAL;
  pthread_mutex_lock(&m->mu);
  if ((f = find_family(m, name)))
    family_clear(m, f);
  else
    rc = KCLD_ENOTFOUND;
  pthread_mutex_unlock(&m->mu);
  return rc;
}

/* ======== Handles ======== */

int kcld_metrics_series(struct kcld_metrics *m, const char *name,
                        const char *const *labels,
                        struct kcld_metric_series **out)
{
  struct family *f;
  int rc = 0;

  *out = NULL;
  if (!m || !name || !valid_labels(labels))
    return KCLD_EINVAL;
  pthread_mutex_lock(&m->mu);
  f = find_family(m, name);
  if (!f)
    rc = KCLD_ENOTFOUND;
  else if (f->type == KCLD_METRIC_HISTOGRAM)
    rc = KCLD_EINVAL;
  else if (!(*out = get_series(m, f, labels)))
    rc = KCLD_ENOMEM;
  else if ((*out)->nlabels > 0)
    drop_bare(m, f);
  pthread_mutex_unlock(&m->mu);
  return rc;
}

void kcld_metrics_series_set(struct kcld_metrics *m,
                             struct kcld_metric_series *s, double value)
{
  if (!m || !s || isnan(value) ||
      (s->fam->type == KCLD_METRIC_COUNTER && value < 0))
    return;
  pthread_mutex_lock(&m->mu);
  s->value = value;
  pthread_mutex_unlock(&m->mu);
}

void kcld_metrics_series_drop(struct kcld_metrics *m,
                              struct kcld_metric_series *s)
{
  if (!m || !s)
    return;
  pthread_mutex_lock(&m->mu);
  series_remove(m, s);
  pthread_mutex_unlock(&m->mu);
}

uint64_t kcld_metrics_probes(struct kcld_metrics *m)
{
  uint64_t n;
  pthread_mutex_lock(&m->mu);
  n = m->probes;
  pthread_mutex_unlock(&m->mu);
  return n;
}

size_t kcld_metrics_series_count(struct kcld_metrics *m)
{
  size_t n;
  pthread_mutex_lock(&m->mu);
  n = m->nseries;
  pthread_mutex_unlock(&m->mu);
  return n;
}

void kcld_metrics_set_collector(struct kcld_metrics *m,
                                kcld_metrics_collect_fn fn, void *arg)
{
  pthread_mutex_lock(&m->mu);
  m->collect = fn;
  m->collect_arg = arg;
  pthread_mutex_unlock(&m->mu);
}

static void run_collector(struct kcld_metrics *m)
{
  kcld_metrics_collect_fn fn;
  void *arg;
  pthread_mutex_lock(&m->mu);
  fn = m->collect;
  arg = m->collect_arg;
  pthread_mutex_unlock(&m->mu);
  if (fn)
    fn(m, arg);
}

/* ======== Prometheus text ======== */

static void put(struct kcld_buf *b, const char *s, size_t n)
{
  kcld_buf_add(b, s, n); /* a failure shows in b->oom, checked at the end */
}

static void puts_(struct kcld_buf *b, const char *s)
{
  put(b, s, strlen(s));
}

/* Escapes backslash and newline (help), and also '"' (label values). */
static void put_escaped(struct kcld_buf *b, const char *s, int quote)
{
  for (; *s; s++) {
    if (*s == '\\')
      puts_(b, "\\\\");
    else if (*s == '\n')
      puts_(b, "\\n");
    else if (quote && *s == '"')
      puts_(b, "\\\"");
    else
      put(b, s, 1);
  }
}

static void put_value(struct kcld_buf *b, double v)
{
  char tmp[64];
  if (isnan(v))
    puts_(b, "NaN");
  else if (isinf(v))
    puts_(b, v > 0 ? "+Inf" : "-Inf");
  else if (v == floor(v) && fabs(v) < 9007199254740992.0) {
    snprintf(tmp, sizeof(tmp), "%.0f", v);
    puts_(b, tmp);
  } else {
    /* The shortest text that reads back as the same double. */
    for (int prec = 15; prec <= 17; prec++) {
      snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
      if (strtod(tmp, NULL) == v)
        break;
    }
    puts_(b, tmp);
  }
}

/* name{l1="v1",...,extra="xv"} value\n; extra may be NULL. */
static void put_sample(struct kcld_buf *b, const char *name, const char *suffix,
                       const struct kcld_metric_series *s, const char *extra,
                       const char *extra_value, double v)
{
  puts_(b, name);
  puts_(b, suffix);
  if (s->nlabels || extra) {
    puts_(b, "{");
    for (size_t i = 0; i < s->nlabels; i++) {
      if (i)
        puts_(b, ",");
      puts_(b, s->labels[2 * i]);
      puts_(b, "=\"");
      put_escaped(b, s->labels[2 * i + 1], 1);
      puts_(b, "\"");
    }
    if (extra) {
      if (s->nlabels)
        puts_(b, ",");
      puts_(b, extra);
      puts_(b, "=\"");
      puts_(b, extra_value);
      puts_(b, "\"");
    }
    puts_(b, "}");
  }
  puts_(b, " ");
  put_value(b, v);
  puts_(b, "\n");
}

static void render_family(struct kcld_buf *b, const struct family *f)
{
  static const char *const types[] = {"counter", "gauge", "histogram"};
  puts_(b, "# HELP ");
  puts_(b, f->name);
  puts_(b, " ");
  put_escaped(b, f->help, 0);
  puts_(b, "\n# TYPE ");
  puts_(b, f->name);
  puts_(b, " ");
  puts_(b, types[f->type]);
  puts_(b, "\n");
  for (const struct kcld_metric_series *s = f->first; s; s = s->next) {
    if (f->type != KCLD_METRIC_HISTOGRAM) {
      put_sample(b, f->name, "", s, NULL, NULL, s->value);
      continue;
    }
    uint64_t cum = 0;
    char le[64];
    for (size_t i = 0; i <= f->nbuckets; i++) {
      cum += s->counts[i];
      if (i == f->nbuckets) {
        snprintf(le, sizeof(le), "+Inf");
      } else {
        struct kcld_buf t = {0};
        put_value(&t, f->buckets[i]);
        snprintf(le, sizeof(le), "%s", t.p ? t.p : "0");
        free(t.p);
      }
      put_sample(b, f->name, "_bucket", s, "le", le, (double)cum);
    }
    put_sample(b, f->name, "_sum", s, NULL, NULL, s->sum);
    put_sample(b, f->name, "_count", s, NULL, NULL, (double)s->count);
  }
}

char *kcld_metrics_render(struct kcld_metrics *m, size_t *len)
{
  struct kcld_buf b = {0};
  run_collector(m);
  pthread_mutex_lock(&m->mu);
  puts_(&b, "");
  for (size_t i = 0; i < m->nfams; i++)
    render_family(&b, m->fams[i]);
  pthread_mutex_unlock(&m->mu);
  if (b.oom) {
    free(b.p);
    return NULL;
  }
  if (len)
    *len = b.len;
  return b.p;
}

/* ======== Embedded Metric Format ======== */

static json_t *emf_line(const struct family *f,
                        const struct kcld_metric_series *s,
                        const char *ns, int64_t now_ms)
{
  json_t *o = json_object(), *dims = json_array(), *mets = json_array();
  char name[256];
  int ok = o && dims && mets;

  for (size_t i = 0; ok && i < s->nlabels; i++) {
    ok = json_array_append_new(dims, json_string(s->labels[2 * i])) == 0 &&
         json_object_set_new(o, s->labels[2 * i],
                             json_string(s->labels[2 * i + 1])) == 0;
  }
  if (ok && f->type == KCLD_METRIC_HISTOGRAM) {
    snprintf(name, sizeof(name), "%s_count", f->name);
    ok = json_array_append_new(mets, json_pack("{s:s}", "Name", name)) == 0 &&
         json_object_set_new(o, name, json_integer((json_int_t)s->count)) ==
           0;
    snprintf(name, sizeof(name), "%s_sum", f->name);
    ok = ok &&
         json_array_append_new(mets, json_pack("{s:s}", "Name", name)) == 0 &&
         json_object_set_new(o, name, json_real(s->sum)) == 0;
  } else if (ok) {
    ok = json_array_append_new(mets, json_pack("{s:s}", "Name", f->name)) ==
           0 &&
         json_object_set_new(o, f->name, json_real(s->value)) == 0;
  }
  if (ok) {
    json_t *aws = json_pack("{s:I,s:[{s:s,s:[O],s:O}]}", "Timestamp",
                            (json_int_t)now_ms, "CloudWatchMetrics",
                            "Namespace", ns, "Dimensions", dims, "Metrics",
                            mets);
    ok = aws && json_object_set_new(o, "_aws", aws) == 0;
  }
  json_decref(dims);
  json_decref(mets);
  if (!ok) {
    json_decref(o);
    return NULL;
  }
  return o;
}

int kcld_metrics_emf_write(struct kcld_metrics *m, FILE *out, const char *ns,
                           int64_t now_ms)
{
  int n = 0, rc = 0;
  run_collector(m);
  pthread_mutex_lock(&m->mu);
  for (size_t i = 0; rc == 0 && i < m->nfams; i++) {
    const struct family *f = m->fams[i];
    for (const struct kcld_metric_series *s = f->first; rc == 0 && s;
         s = s->next) {
      json_t *line = emf_line(f, s, ns, now_ms);
      if (!line) {
        rc = KCLD_ENOMEM;
        break;
      }
      if (json_dumpf(line, out, JSON_COMPACT) != 0 || fputc('\n', out) < 0)
        rc = KCLD_EIO;
      json_decref(line);
      n++;
    }
  }
  pthread_mutex_unlock(&m->mu);
  if (rc == 0 && fflush(out) != 0)
    rc = KCLD_EIO;
  return rc ? rc : n;
}
