/* metrics.h — a registry of counters, gauges and histograms with labels,
 * rendered as Prometheus text (exposition format 0.0.4) and as CloudWatch
 * Embedded Metric Format lines.
 *
 * A family is declared once (name, type, help; buckets for a histogram) and
 * holds one series per set of label values.  Labels are passed as a
 * NULL-terminated array of name/value pairs, or NULL for none:
 *
 *   const char *lb[] = {"shard", "shardId-000000000001", NULL};
 *   kcld_metrics_set(m, "kcld_millis_behind_latest", lb, 1200);
 *
 * Modules keep their own counters in their stats structs; a collector
 * (kcld_metrics_set_collector) copies them in at scrape time, so the hot
 * path pays nothing.  What no stats struct holds is fed directly with
 * kcld_metrics_add / kcld_metrics_observe.
 *
 * Series are found in O(1) (hashed by name and labels).  A caller that sets
 * the same series over and over may keep a handle instead
 * (kcld_metrics_series), e.g. one per shard and metric.
 *
 * Every function may be called from any thread (one mutex per registry);
 * the collector runs on the thread that renders (the loop thread, for the
 * HTTP server). */
#ifndef KCLD_OPS_METRICS_H
#define KCLD_OPS_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum kcld_metric_type {
  KCLD_METRIC_COUNTER = 0,
  KCLD_METRIC_GAUGE = 1,
  KCLD_METRIC_HISTOGRAM = 2
};

/* Most buckets a histogram may have (besides +Inf). */
#define KCLD_METRICS_MAX_BUCKETS 32

struct kcld_metrics;
struct kcld_metric_series;

/* Called by kcld_metrics_render() and kcld_metrics_emf_write() before they
 * read the registry (without the registry's lock held): copy stats in. */
typedef void (*kcld_metrics_collect_fn)(struct kcld_metrics *m, void *arg);

/* Creates an empty registry.  Returns 0 or KCLD_ENOMEM. */
int kcld_metrics_new(struct kcld_metrics **out);

/* Frees the registry and every series.  NULL is ignored. */
void kcld_metrics_free(struct kcld_metrics *m);

/* Declares a family.  `name` must match [a-zA-Z_:][a-zA-Z0-9_:]* (counters
 * should end in _total), `help` is one line of text.  For a histogram,
 * `buckets` holds nbuckets (1..KCLD_METRICS_MAX_BUCKETS) strictly increasing
 * finite upper bounds (+Inf is implied); NULL/0 otherwise.  Declaring the
 * same name again with the same type is a no-op (0).  Returns 0, KCLD_EINVAL
 * (bad name, bad buckets, or the name declared with another type) or
 * KCLD_ENOMEM. */
int kcld_metrics_declare(struct kcld_metrics *m, const char *name,
                         enum kcld_metric_type type, const char *help,
                         const double *buckets, size_t nbuckets);

/* Sets a counter or gauge series to `value` (for a counter: the absolute
 * count, as read from a stats struct).  The series is created when new.
 * Label names must match [a-zA-Z_][a-zA-Z0-9_]* and not start with "__";
 * values are any UTF-8 text.  Returns 0, KCLD_ENOTFOUND (no such family),
 * KCLD_EINVAL (a histogram, a bad label name, a negative or NaN counter
 * value) or KCLD_ENOMEM. */
int kcld_metrics_set(struct kcld_metrics *m, const char *name,
                     const char *const *labels, double value);

/* Adds `delta` (>= 0 for a counter) to a counter or gauge series.  Same
 * returns as kcld_metrics_set(). */
int kcld_metrics_add(struct kcld_metrics *m, const char *name,
                     const char *const *labels, double delta);

/* Records one observation in a histogram series.  Returns 0,
 * KCLD_ENOTFOUND, KCLD_EINVAL (not a histogram, NaN) or KCLD_ENOMEM. */
int kcld_metrics_observe(struct kcld_metrics *m, const char *name,
                         const char *const *labels, double value);

/* The current value of a counter or gauge series (the count of a
 * histogram's series), or NAN when there is no such series.  For tests and
 * for health checks. */
double kcld_metrics_get(struct kcld_metrics *m, const char *name,
                        const char *const *labels);

/* Drops every series of a family (its declaration stays), e.g. before a
 * collector refills per-shard gauges so that shards no longer held vanish.
 * Returns 0 or KCLD_ENOTFOUND. */
int kcld_metrics_clear(struct kcld_metrics *m, const char *name);

/* Finds or creates the series of a counter or gauge family for `labels`
 * and hands back a handle to it, valid until kcld_metrics_series_drop(),
 * kcld_metrics_clear() of its family, or kcld_metrics_free().  Returns 0,
 * KCLD_ENOTFOUND, KCLD_EINVAL (a histogram, a bad label) or KCLD_ENOMEM;
 * *out is NULL on error. */
int kcld_metrics_series(struct kcld_metrics *m, const char *name,
                        const char *const *labels,
                        struct kcld_metric_series **out);

/* Sets a series by its handle, without a lookup (a NaN, or a negative value
 * for a counter, is ignored).  NULL s is ignored. */
void kcld_metrics_series_set(struct kcld_metrics *m,
                             struct kcld_metric_series *s, double value);

/* Removes a series (it is no longer rendered) and frees its handle.  NULL
 * s is ignored. */
void kcld_metrics_series_drop(struct kcld_metrics *m,
                              struct kcld_metric_series *s);

/* Families and series compared during lookups so far: for tests that check
 * lookups stay O(1) as series grow. */
uint64_t kcld_metrics_probes(struct kcld_metrics *m);

/* Series held now, all families together. */
size_t kcld_metrics_series_count(struct kcld_metrics *m);

/* Installs the collector (NULL removes it). */
void kcld_metrics_set_collector(struct kcld_metrics *m,
                                kcld_metrics_collect_fn fn, void *arg);

/* Runs the collector, then renders every family in declaration order, and
 * its series in creation order, as Prometheus text: "# HELP", "# TYPE",
 * then one line per sample; a family with no series gets its HELP and TYPE
 * lines only (an unlabelled counter or gauge is created at 0 on
 * declaration, so it always has one).  Returns a malloc'd NUL-terminated
 * text and its length in *len (when not NULL), or NULL when out of
 * memory. */
char *kcld_metrics_render(struct kcld_metrics *m, size_t *len);

/* Runs the collector, then writes one CloudWatch Embedded Metric Format
 * JSON line per series to `out`: namespace `ns`, timestamp `now_ms` (epoch
 * ms), the labels as dimensions.  Histograms are written as their count
 * and sum (name_count, name_sum).  Returns the lines written or KCLD_EIO /
 * KCLD_ENOMEM. */
int kcld_metrics_emf_write(struct kcld_metrics *m, FILE *out, const char *ns,
                           int64_t now_ms);

#endif
