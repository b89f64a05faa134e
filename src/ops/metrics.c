/* metrics.c — the metrics registry and its Prometheus and EMF renderings.
 *
 * Families live in an array in declaration order; each holds its series in
 * a list in creation order.  A series is found by comparing its label
 * pairs; there are few series per family (one per shard at most), so a
 * linear search is fine and keeps the code small. */
#include "ops/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/buf.h"
#include "err.h"

struct series {
  struct series *next;
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
  enum kcld_metric_type type;
  double buckets[KCLD_METRICS_MAX_BUCKETS];
  size_t nbuckets;
  struct series *series, **tail;
};

struct kcld_metrics {
  pthread_mutex_t mu;
  struct family **fams;
  size_t nfams, cap;
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

static int labels_equal(const struct series *s, const char *const *labels)
{
  size_t n = 0;
  if (labels)
    for (; labels[2 * n]; n++)
      if (n >= s->nlabels || strcmp(labels[2 * n], s->labels[2 * n]) != 0 ||
          strcmp(labels[2 * n + 1], s->labels[2 * n + 1]) != 0)
        return 0;
  return n == s->nlabels;
}

static void series_free(struct series *s)
{
  if (!s)
    return;
  for (size_t i = 0; i < 2 * s->nlabels; i++)
    free(s->labels[i]);
  free(s->labels);
  free(s->counts);
  free(s);
}

static struct series *series_new(const struct family *f,
                                 const char *const *labels)
{
  struct series *s = calloc(1, sizeof(*s));
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

static struct family *find_family(const struct kcld_metrics *m,
                                  const char *name)
{
  for (size_t i = 0; i < m->nfams; i++)
    if (strcmp(m->fams[i]->name, name) == 0)
      return m->fams[i];
  return NULL;
}

/* The series for `labels`, created when new; NULL when out of memory. */
static struct series *get_series(struct family *f, const char *const *labels)
{
  struct series *s;
  for (s = f->series; s; s = s->next)
    if (labels_equal(s, labels))
      return s;
  if (!(s = series_new(f, labels)))
    return NULL;
  *f->tail = s;
  f->tail = &s->next;
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

static void family_clear(struct family *f)
{
  struct series *s = f->series, *next;
  for (; s; s = next) {
    next = s->next;
    series_free(s);
  }
  f->series = NULL;
  f->tail = &f->series;
}

void kcld_metrics_free(struct kcld_metrics *m)
{
  if (!m)
    return;
  for (size_t i = 0; i < m->nfams; i++) {
    family_clear(m->fams[i]);
    free(m->fams[i]->name);
    free(m->fams[i]->help);
    free(m->fams[i]);
  }
  free(m->fams);
  pthread_mutex_destroy(&m->mu);
  free(m);
}

static int declare_locked(struct kcld_metrics *m, const char *name,
                          enum kcld_metric_type type, const char *help,
                          const double *buckets, size_t nbuckets)
{
  struct family *f = find_family(m, name);
  if (f)
    return f->type == type ? 0 : KCLD_EINVAL;
  if (type == KCLD_METRIC_HISTOGRAM) {
    if (!buckets || nbuckets == 0 || nbuckets > KCLD_METRICS_MAX_BUCKETS)
      return KCLD_EINVAL;
    for (size_t i = 0; i < nbuckets; i++)
      if (!isfinite(buckets[i]) || (i > 0 && buckets[i] <= buckets[i - 1]))
        return KCLD_EINVAL;
  } else if (buckets || nbuckets) {
    return KCLD_EINVAL;
  }
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
  if (!f->name || !f->help) {
    free(f->name);
    free(f->help);
    free(f);
    return KCLD_ENOMEM;
  }
  f->type = type;
  f->tail = &f->series;
  if (type == KCLD_METRIC_HISTOGRAM) {
    memcpy(f->buckets, buckets, nbuckets * sizeof(double));
    f->nbuckets = nbuckets;
  }
  m->fams[m->nfams++] = f;
  if (type != KCLD_METRIC_HISTOGRAM && !get_series(f, NULL)) {
    m->nfams--;
    free(f->name);
    free(f->help);
    free(f);
    return KCLD_ENOMEM;
  }
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
static void drop_bare(struct family *f, const struct series *keep)
{
  struct series **p = &f->series;
  while (*p) {
    struct series *s = *p;
    if (s != keep && s->nlabels == 0 && s->value == 0) {
      *p = s->next;
      series_free(s);
    } else {
      p = &s->next;
    }
  }
  f->tail = &f->series;
  while (*f->tail)
    f->tail = &(*f->tail)->next;
}

static int update(struct kcld_metrics *m, const char *name,
                  const char *const *labels, double v, int add)
{
  struct family *f;
  struct series *s;
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
  } else if (!(s = get_series(f, labels))) {
    rc = KCLD_ENOMEM;
  } else {
    s->value = add ? s->value + v : v;
    if (s->nlabels > 0)
      drop_bare(f, s);
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
  struct series *s;
  int rc = 0;

  if (!m || !name || isnan(value) || !valid_labels(labels))
    return KCLD_EINVAL;
  pthread_mutex_lock(&m->mu);
  f = find_family(m, name);
  if (!f) {
    rc = KCLD_ENOTFOUND;
  } else if (f->type != KCLD_METRIC_HISTOGRAM) {
    rc = KCLD_EINVAL;
  } else if (!(s = get_series(f, labels))) {
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
  if ((f = find_family(m, name)))
    for (struct series *s = f->series; s; s = s->next)
      if (labels_equal(s, labels)) {
        v = f->type == KCLD_METRIC_HISTOGRAM ? (double)s->count : s->value;
        break;
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
    family_clear(f);
  else
    rc = KCLD_ENOTFOUND;
  pthread_mutex_unlock(&m->mu);
  return rc;
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
                       const struct series *s, const char *extra,
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
  for (const struct series *s = f->series; s; s = s->next) {
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

static json_t *emf_line(const struct family *f, const struct series *s,
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
    for (const struct series *s = f->series; rc == 0 && s; s = s->next) {
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
