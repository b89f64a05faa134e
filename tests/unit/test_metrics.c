/* test_metrics.c — the metrics registry: declarations checked, series found
 * by labels, Prometheus text exactly as the exposition format wants it
 * (HELP/TYPE, escaping, cumulative buckets, +Inf, _sum/_count), the
 * collector run at render time, EMF lines that parse; lookups that stay
 * O(1) as series grow (counted, not timed), and handles. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "err.h"
#include "ops/metrics.h"

static struct kcld_metrics *fresh(void)
{
  struct kcld_metrics *m = NULL;
  assert_int_equal(kcld_metrics_new(&m), 0);
  assert_non_null(m);
  return m;
}

static char *render(struct kcld_metrics *m)
{
  size_t len = 0;
  char *t = kcld_metrics_render(m, &len);
  assert_non_null(t);
  assert_int_equal(strlen(t), len);
  return t;
}

static void test_declare_rules(void **state)
{
  struct kcld_metrics *m = fresh();
  const double ok[] = {0.1, 1, 10};
  const double bad[] = {1, 1};
  const double inf[] = {1, INFINITY};
  (void)state;
  assert_int_equal(kcld_metrics_declare(m, "a_total", KCLD_METRIC_COUNTER,
                                        "A.", NULL, 0), 0);
  /* Same again: fine; other type: refused. */
  assert_int_equal(kcld_metrics_declare(m, "a_total", KCLD_METRIC_COUNTER,
                                        "A.", NULL, 0), 0);
  assert_int_equal(kcld_metrics_declare(m, "a_total", KCLD_METRIC_GAUGE,
                                        "A.", NULL, 0), KCLD_EINVAL);
  assert_int_equal(kcld_metrics_declare(m, "9bad", KCLD_METRIC_GAUGE, "x",
                                        NULL, 0), KCLD_EINVAL);
  assert_int_equal(kcld_metrics_declare(m, "bad-name", KCLD_METRIC_GAUGE,
                                        "x", NULL, 0), KCLD_EINVAL);
  assert_int_equal(kcld_metrics_declare(m, "", KCLD_METRIC_GAUGE, "x", NULL,
                                        0), KCLD_EINVAL);
  assert_int_equal(kcld_metrics_declare(m, "ns:ok", KCLD_METRIC_GAUGE,
                                        "two\nlines", NULL, 0), KCLD_EINVAL);
  assert_int_equal(kcld_metrics_declare(m, "h", KCLD_METRIC_HISTOGRAM, "h",
                                        NULL, 0), KCLD_EINVAL);
  assert_int_equal(kcld_metrics_declare(m, "h", KCLD_METRIC_HISTOGRAM, "h",
                                        bad, 2), KCLD_EINVAL);
  assert_int_equal(kcld_metrics_declare(m, "h", KCLD_METRIC_HISTOGRAM, "h",
                                        inf, 2), KCLD_EINVAL);
  assert_int_equal(kcld_metrics_declare(m, "g", KCLD_METRIC_GAUGE, "g", ok,
                                        3), KCLD_EINVAL);
  assert_int_equal(kcld_metrics_declare(m, "h", KCLD_METRIC_HISTOGRAM, "h",
                                        ok, 3), 0);
  kcld_metrics_free(m);
}

static void test_update_rules(void **state)
{
  struct kcld_metrics *m = fresh();
  const char *lb[] = {"shard", "s-1", NULL};
  const char *badlb[] = {"__reserved", "x", NULL};
  const char *badlb2[] = {"has-dash", "x", NULL};
  const char *odd[] = {"k", NULL};
  const double b[] = {1};
  (void)state;
  kcld_metrics_declare(m, "c_total", KCLD_METRIC_COUNTER, "c", NULL, 0);
  kcld_metrics_declare(m, "g", KCLD_METRIC_GAUGE, "g", NULL, 0);
  kcld_metrics_declare(m, "h", KCLD_METRIC_HISTOGRAM, "h", b, 1);
  assert_int_equal(kcld_metrics_set(m, "nope", NULL, 1), KCLD_ENOTFOUND);
  assert_int_equal(kcld_metrics_add(m, "c_total", NULL, -1), KCLD_EINVAL);
  assert_int_equal(kcld_metrics_set(m, "c_total", NULL, NAN), KCLD_EINVAL);
  assert_int_equal(kcld_metrics_set(m, "h", NULL, 1), KCLD_EINVAL);
  assert_int_equal(kcld_metrics_observe(m, "g", NULL, 1), KCLD_EINVAL);
  assert_int_equal(kcld_metrics_set(m, "g", badlb, 1), KCLD_EINVAL);
  assert_int_equal(kcld_metrics_set(m, "g", badlb2, 1), KCLD_EINVAL);
  assert_int_equal(kcld_metrics_set(m, "g", odd, 1), KCLD_EINVAL);
  assert_int_equal(kcld_metrics_add(m, "c_total", lb, 2), 0);
  assert_int_equal(kcld_metrics_add(m, "c_total", lb, 3), 0);
  assert_true(kcld_metrics_get(m, "c_total", lb) == 5);
  assert_int_equal(kcld_metrics_set(m, "g", NULL, -2.5), 0);
  assert_true(kcld_metrics_get(m, "g", NULL) == -2.5);
  assert_true(isnan(kcld_metrics_get(m, "g", lb)));
  assert_int_equal(kcld_metrics_observe(m, "h", lb, 0.5), 0);
  assert_true(kcld_metrics_get(m, "h", lb) == 1);
  assert_int_equal(kcld_metrics_clear(m, "c_total"), 0);
  assert_true(isnan(kcld_metrics_get(m, "c_total", lb)));
  assert_int_equal(kcld_metrics_clear(m, "zzz"), KCLD_ENOTFOUND);
  kcld_metrics_free(m);
}

static void test_text_counter_gauge(void **state)
{
  struct kcld_metrics *m = fresh();
  const char *a[] = {"shard", "shardId-1", NULL};
  const char *b[] = {"shard", "shardId-2", NULL};
  char *t;
  (void)state;
  kcld_metrics_declare(m, "kcld_records_total", KCLD_METRIC_COUNTER,
                       "Records fetched.", NULL, 0);
  kcld_metrics_declare(m, "kcld_up", KCLD_METRIC_GAUGE, "Up.", NULL, 0);
  t = render(m);
  /* Unlabelled families show their zero sample. */
  assert_string_equal(t,
    "# HELP kcld_records_total Records fetched.\n"
    "# TYPE kcld_records_total counter\n"
    "kcld_records_total 0\n"
    "# HELP kcld_up Up.\n"
    "# TYPE kcld_up gauge\n"
    "kcld_up 0\n");
  free(t);
  kcld_metrics_set(m, "kcld_records_total", a, 12);
  kcld_metrics_set(m, "kcld_records_total", b, 3);
  kcld_metrics_set(m, "kcld_up", NULL, 1);
  t = render(m);
  assert_string_equal(t,
    "# HELP kcld_records_total Records fetched.\n"
    "# TYPE kcld_records_total counter\n"
    "kcld_records_total{shard=\"shardId-1\"} 12\n"
    "kcld_records_total{shard=\"shardId-2\"} 3\n"
    "# HELP kcld_up Up.\n"
    "# TYPE kcld_up gauge\n"
    "kcld_up 1\n");
  free(t);
  kcld_metrics_free(m);
}

static void test_text_escaping_and_values(void **state)
{
  struct kcld_metrics *m = fresh();
  const char *lb[] = {"path", "a\"b\\c\nd", "op", "x", NULL};
  char *t;
  (void)state;
  kcld_metrics_declare(m, "g", KCLD_METRIC_GAUGE, "back\\slash", NULL, 0);
  kcld_metrics_set(m, "g", lb, 0.25);
  t = render(m);
  assert_non_null(strstr(t, "# HELP g back\\\\slash\n"));
  assert_non_null(strstr(t, "g{path=\"a\\\"b\\\\c\\nd\",op=\"x\"} 0.25\n"));
  free(t);
  kcld_metrics_set(m, "g", lb, INFINITY);
  t = render(m);
  assert_non_null(strstr(t, "} +Inf\n"));
  free(t);
  kcld_metrics_set(m, "g", lb, -INFINITY);
  t = render(m);
  assert_non_null(strstr(t, "} -Inf\n"));
  free(t);
  kcld_metrics_set(m, "g", lb, 1e300);
  t = render(m);
  assert_non_null(strstr(t, "} 1e+300\n"));
  free(t);
  kcld_metrics_free(m);
}

static void test_text_histogram(void **state)
{
  struct kcld_metrics *m = fresh();
  const double b[] = {0.005, 0.1, 1};
  const char *lb[] = {"op", "GetRecords", NULL};
  char *t;
  (void)state;
  kcld_metrics_declare(m, "lat_seconds", KCLD_METRIC_HISTOGRAM, "Latency.", b,
                       3);
  t = render(m);
  /* No series yet: only HELP and TYPE. */
  assert_string_equal(t, "# HELP lat_seconds Latency.\n"
                         "# TYPE lat_seconds histogram\n");
  free(t);
  kcld_metrics_observe(m, "lat_seconds", lb, 0.00390625);
  kcld_metrics_observe(m, "lat_seconds", lb, 0.0625);
  kcld_metrics_observe(m, "lat_seconds", lb, 1);  /* le is inclusive */
  kcld_metrics_observe(m, "lat_seconds", lb, 7);
  t = render(m);
  assert_string_equal(t,
    "# HELP lat_seconds Latency.\n"
    "# TYPE lat_seconds histogram\n"
    "lat_seconds_bucket{op=\"GetRecords\",le=\"0.005\"} 1\n"
    "lat_seconds_bucket{op=\"GetRecords\",le=\"0.1\"} 2\n"
    "lat_seconds_bucket{op=\"GetRecords\",le=\"1\"} 3\n"
    "lat_seconds_bucket{op=\"GetRecords\",le=\"+Inf\"} 4\n"
    "lat_seconds_sum{op=\"GetRecords\"} 8.06640625\n"
    "lat_seconds_count{op=\"GetRecords\"} 4\n");
  free(t);
  kcld_metrics_free(m);
}

struct coll {
  int calls;
};

static void collect(struct kcld_metrics *m, void *arg)
{
  struct coll *c = arg;
  const char *lb[] = {"shard", "s", NULL};
  c->calls++;
  kcld_metrics_clear(m, "behind");
  if (c->calls == 1)
    kcld_metrics_set(m, "behind", lb, 100);
}

static void test_collector(void **state)
{
  struct kcld_metrics *m = fresh();
  struct coll c = {0};
  char *t;
  (void)state;
  kcld_metrics_declare(m, "behind", KCLD_METRIC_GAUGE, "Lag.", NULL, 0);
  kcld_metrics_set_collector(m, collect, &c);
  t = render(m);
  assert_int_equal(c.calls, 1);
  assert_non_null(strstr(t, "behind{shard=\"s\"} 100\n"));
  free(t);
  /* Second scrape: the shard is gone, and so is its series. */
  t = render(m);
  assert_int_equal(c.calls, 2);
  assert_null(strstr(t, "behind{"));
  free(t);
  kcld_metrics_free(m);
}

static void test_emf(void **state)
{
  struct kcld_metrics *m = fresh();
  const double b[] = {1};
  const char *lb[] = {"shard", "s-1", NULL};
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  json_error_t e;
  (void)state;
  assert_non_null(f);
  kcld_metrics_declare(m, "c_total", KCLD_METRIC_COUNTER, "c", NULL, 0);
  kcld_metrics_declare(m, "h", KCLD_METRIC_HISTOGRAM, "h", b, 1);
  kcld_metrics_set(m, "c_total", lb, 9);
  kcld_metrics_observe(m, "h", NULL, 2);
  assert_int_equal(kcld_metrics_emf_write(m, f, "kcld", 1700000000000), 2);
  fclose(f);
  char *nl = strchr(text, '\n');
  assert_non_null(nl);
  *nl = '\0';
  json_t *l1 = json_loads(text, 0, &e), *l2 = json_loads(nl + 1, 0, &e);
  assert_non_null(l1);
  assert_non_null(l2);
  assert_true(json_real_value(json_object_get(l1, "c_total")) == 9);
  assert_string_equal(json_string_value(json_object_get(l1, "shard")), "s-1");
  json_t *cw = json_array_get(json_object_get(json_object_get(l1, "_aws"),
                                              "CloudWatchMetrics"), 0);
  assert_string_equal(json_string_value(json_object_get(cw, "Namespace")),
                      "kcld");
  assert_string_equal(json_string_value(json_array_get(json_array_get(
                        json_object_get(cw, "Dimensions"), 0), 0)), "shard");
  assert_int_equal(json_integer_value(json_object_get(
                     json_object_get(l1, "_aws"), "Timestamp")),
                   1700000000000);
  assert_int_equal(json_integer_value(json_object_get(l2, "h_count")), 1);
  assert_true(json_real_value(json_object_get(l2, "h_sum")) == 2);
  json_decref(l1);
  json_decref(l2);
  free(text);
  kcld_metrics_free(m);
}

/* 4096 shards x 11 gauges: the probes per lookup stay small and flat (the
 * old list walk compared half the family's series per lookup: ~2000 here). */
static void test_lookups_constant(void **state)
{
  static const char *const fams[] = {"f0", "f1", "f2", "f3", "f4", "f5",
                                     "f6", "f7", "f8", "f9", "f10"};
  struct kcld_metrics *m = fresh();
  char id[32];
  (void)state;
  for (size_t f = 0; f < 11; f++)
    assert_int_equal(kcld_metrics_declare(m, fams[f], KCLD_METRIC_GAUGE, "x",
                                          NULL, 0), 0);
  for (int pass = 0; pass < 2; pass++) {
    uint64_t p0 = kcld_metrics_probes(m);
    for (int shard = 0; shard < 4096; shard++) {
      snprintf(id, sizeof(id), "shardId-%012d", shard);
      const char *lb[] = {"shard", id, NULL};
      for (size_t f = 0; f < 11; f++)
        assert_int_equal(kcld_metrics_set(m, fams[f], lb, shard + pass), 0);
    }
    uint64_t probes = kcld_metrics_probes(m) - p0, lookups = 4096 * 11;
    /* One family probe plus a short chain per lookup. */
    assert_true(probes < 4 * lookups);
    if (pass == 1) /* every series found, none created */
      assert_int_equal(kcld_metrics_series_count(m), 4096 * 11);
  }
  const char *lb[] = {"shard", "shardId-000000004095", NULL};
  assert_true(kcld_metrics_get(m, "f10", lb) == 4096);
  kcld_metrics_free(m);
}

static void test_handles(void **state)
{
  struct kcld_metrics *m = fresh();
  struct kcld_metric_series *a = NULL, *b = NULL, *again = NULL;
  const char *la[] = {"shard", "a", NULL}, *lbb[] = {"shard", "b", NULL};
  const double bk[] = {1};
  (void)state;
  kcld_metrics_declare(m, "kcld_g", KCLD_METRIC_GAUGE, "G.", NULL, 0);
  kcld_metrics_declare(m, "kcld_c_total", KCLD_METRIC_COUNTER, "C.", NULL, 0);
  kcld_metrics_declare(m, "kcld_h", KCLD_METRIC_HISTOGRAM, "H.", bk, 1);
  assert_int_equal(kcld_metrics_series(m, "kcld_g", la, &a), 0);
  assert_int_equal(kcld_metrics_series(m, "kcld_g", lbb, &b), 0);
  assert_int_equal(kcld_metrics_series(m, "kcld_g", la, &again), 0);
  assert_ptr_equal(a, again);
  assert_int_equal(kcld_metrics_series(m, "kcld_h", la, &again),
                   KCLD_EINVAL);
  assert_null(again);
  assert_int_equal(kcld_metrics_series(m, "nope", la, &again),
                   KCLD_ENOTFOUND);
  uint64_t p0 = kcld_metrics_probes(m);
  kcld_metrics_series_set(m, a, 7);
  kcld_metrics_series_set(m, b, -2.5);
  assert_int_equal(kcld_metrics_probes(m), p0); /* no lookup */
  char *t = render(m);
  /* The bare declaration sample went when labelled ones came. */
  assert_non_null(strstr(t, "# TYPE kcld_g gauge\nkcld_g{shard=\"a\"} 7\n"
                            "kcld_g{shard=\"b\"} -2.5\n"));
  free(t);
  kcld_metrics_series_drop(m, a);
  assert_true(isnan(kcld_metrics_get(m, "kcld_g", la)));
  assert_true(kcld_metrics_get(m, "kcld_g", lbb) == -2.5);
  /* A counter ignores a negative value. */
  assert_int_equal(kcld_metrics_series(m, "kcld_c_total", la, &a), 0);
  kcld_metrics_series_set(m, a, 3);
  kcld_metrics_series_set(m, a, -1);
  assert_true(kcld_metrics_get(m, "kcld_c_total", la) == 3);
  t = render(m);
  assert_non_null(strstr(t, "kcld_g{shard=\"b\"} -2.5\n# HELP kcld_c_total"));
  free(t);
  kcld_metrics_free(m);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_declare_rules),
    cmocka_unit_test(test_update_rules),
    cmocka_unit_test(test_text_counter_gauge),
    cmocka_unit_test(test_text_escaping_and_values),
    cmocka_unit_test(test_text_histogram),
    cmocka_unit_test(test_collector),
    cmocka_unit_test(test_emf),
    cmocka_unit_test(test_lookups_constant),
    cmocka_unit_test(test_handles),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
