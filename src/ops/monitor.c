/* monitor.c — kcld's metric families, collected from the modules' stats
 * at scrape time; shard progress tracking for /healthz; the EMF file. */
#include "ops/monitor.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "consume/checkpoint.h"
#include "err.h"
#include "log.h"
#include "ops/http_server.h"

#define SAMPLE_MS 5000
#define DEFAULT_STUCK_MS 300000
#define DEFAULT_EMF_MS 60000

/* ======== The families ======== */

#define F_RECORDS "kcld_records_fetched_total"
#define F_KRECORDS "kcld_kinesis_records_fetched_total"
#define F_BYTES "kcld_bytes_fetched_total"
#define F_CALLS "kcld_get_records_calls_total"
#define F_THROTTLES "kcld_get_records_throttles_total"
#define F_EXPIRED "kcld_get_records_expired_iterators_total"
#define F_FETCH_ERRORS "kcld_get_records_errors_total"
#define F_BUFFERED "kcld_buffered_bytes"
#define F_BEHIND "kcld_millis_behind_latest"
#define F_CP_WRITES "kcld_checkpoint_writes_total"
#define F_CP_FAILURES "kcld_checkpoint_failures_total"
#define F_STUCK "kcld_shard_seconds_since_progress"
#define F_AWS_DURATION "kcld_aws_call_duration_seconds"
#define F_HANDLER_DURATION "kcld_handler_duration_seconds"

static const char *const s_shard_families[] = {
  F_RECORDS, F_KRECORDS, F_BYTES, F_CALLS, F_THROTTLES, F_EXPIRED,
  F_FETCH_ERRORS, F_BUFFERED, F_BEHIND, F_CP_WRITES, F_CP_FAILURES, F_STUCK,
};

static const double s_latency_buckets[] = {
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
};

static const struct {
  const char *name;
  enum kcld_metric_type type;
  const char *help;
} s_families[] = {
  /* Per shard, from the shard consumers (and their checkpoint trackers). */
  {F_RECORDS, KCLD_METRIC_COUNTER, "User records fetched (after KPL "
   "de-aggregation), per shard consumer run."},
  {F_KRECORDS, KCLD_METRIC_COUNTER, "Kinesis records fetched."},
  {F_BYTES, KCLD_METRIC_COUNTER, "Payload bytes fetched."},
  {F_CALLS, KCLD_METRIC_COUNTER, "GetRecords calls started."},
  {F_THROTTLES, KCLD_METRIC_COUNTER, "GetRecords answers throttled "
   "(ProvisionedThroughputExceeded, KMSThrottling)."},
  {F_EXPIRED, KCLD_METRIC_COUNTER, "ExpiredIteratorException answers."},
  {F_FETCH_ERRORS, KCLD_METRIC_COUNTER, "Other failed GetRecords calls "
   "and parses."},
  {F_BUFFERED, KCLD_METRIC_GAUGE, "Bytes fetched and not yet done with."},
  {F_BEHIND, KCLD_METRIC_GAUGE, "MillisBehindLatest of the shard's last "
   "GetRecords answer."},
  {F_CP_WRITES, KCLD_METRIC_COUNTER, "Checkpoint writes started."},
  {F_CP_FAILURES, KCLD_METRIC_COUNTER, "Checkpoint writes that failed "
   "(transient)."},
  {F_STUCK, KCLD_METRIC_GAUGE, "Seconds since the shard last fetched or "
   "delivered anything."},
  /* Whole process, from the dispatcher. */
  {"kcld_records_handled_total", KCLD_METRIC_COUNTER, "Records the handler "
   "reported as handled."},
  {"kcld_handler_calls_total", KCLD_METRIC_COUNTER, "Batches given to the "
   "handler."},
  {"kcld_batches_succeeded_total", KCLD_METRIC_COUNTER, "Batches handled."},
  {"kcld_batches_failed_total", KCLD_METRIC_COUNTER, "Failed, partial, "
   "timed-out or refused batch attempts."},
  {"kcld_batches_retried_total", KCLD_METRIC_COUNTER, "Retry decisions."},
  {"kcld_batches_bisected_total", KCLD_METRIC_COUNTER, "Bisect decisions."},
  {"kcld_handler_timeouts_total", KCLD_METRIC_COUNTER, "Handler calls that "
   "timed out."},
  {"kcld_records_given_up_total", KCLD_METRIC_COUNTER, "Records given up "
   "on (to the dead-letter queue or skipped)."},
  {"kcld_dlq_messages_total", KCLD_METRIC_COUNTER, "Dead-letter messages "
   "acknowledged by SQS."},
  {"kcld_dlq_records_total", KCLD_METRIC_COUNTER, "Records in dead-letter "
   "messages."},
  {"kcld_batches_in_flight", KCLD_METRIC_GAUGE, "Shards with work plus "
   "handler calls not yet answered."},
  {"kcld_bytes_handled_total", KCLD_METRIC_COUNTER, "Payload bytes the "
   "handler reported as handled."},
  /* Leases, from the coordinator. */
  {"kcld_leases_held", KCLD_METRIC_GAUGE, "Leases this worker holds."},
  {"kcld_leases_taken_total", KCLD_METRIC_COUNTER, "Unowned or expired "
   "leases taken."},
  {"kcld_leases_stolen_total", KCLD_METRIC_COUNTER, "Leases stolen to "
   "balance."},
  {"kcld_leases_lost_total", KCLD_METRIC_COUNTER, "Leases lost (stolen by "
   "a peer, expired, or a write found another owner)."},
};

/* ======== State ======== */

struct track {
  struct track *next;
  char *shard_id;
  uint64_t sig;           /* records + empty answers + deliveries */
  uint64_t changed_ms;    /* uv_now when sig last changed */
  int fetched;            /* a GetRecords call was ever made */
  int seen;
};

struct kcld_monitor {
  uv_loop_t *loop;
  struct kcld_metrics *m;
  struct kcld_http_server *srv;
  uv_timer_t sample, emf;
  char *emf_path;
  uint64_t stuck_ms, emf_ms;
  kcld_monitor_walk_fn walk;
  void *arg;
  struct track *tracks;
  int handles, closing, in_walk;
};

struct kcld_monitor_visit {
  struct kcld_monitor *mon;
  uint64_t now;
};

/* ======== Visits ======== */

static struct track *track_get(struct kcld_monitor *mon, const char *id)
{
  struct track *t;
  for (t = mon->tracks; t; t = t->next)
    if (strcmp(t->shard_id, id) == 0)
      return t;
  t = calloc(1, sizeof(*t));
  if (!t || !(t->shard_id = strdup(id))) {
    free(t);
    return NULL;
  }
  t->changed_ms = uv_now(mon->loop);
  t->sig = UINT64_MAX;
  t->next = mon->tracks;
  mon->tracks = t;
  return t;
}

void kcld_monitor_visit_shard(struct kcld_monitor_visit *v,
                              const struct kcld_shard_consumer *c)
{
  struct kcld_metrics *m = v->mon->m;
  struct kcld_shard_consumer_stats st;
  struct kcld_checkpoint_stats cs;
  const struct kcld_checkpoint *cp;
  const char *id = kcld_shard_consumer_shard_id(c);
  const char *lb[] = {"shard", id, NULL};

  kcld_shard_consumer_stats(c, &st);
  kcld_metrics_set(m, F_RECORDS, lb, (double)st.records);
  kcld_metrics_set(m, F_KRECORDS, lb, (double)st.kinesis_records);
  kcld_metrics_set(m, F_BYTES, lb, (double)st.bytes);
  kcld_metrics_set(m, F_CALLS, lb, (double)st.get_records_calls);
  kcld_metrics_set(m, F_THROTTLES, lb, (double)st.throttles);
  kcld_metrics_set(m, F_EXPIRED, lb, (double)st.expired_iterators);
  kcld_metrics_set(m, F_FETCH_ERRORS, lb, (double)st.errors);
  kcld_metrics_set(m, F_BUFFERED, lb, (double)st.buffered_bytes);
  if (st.millis_behind_latest >= 0)
    kcld_metrics_set(m, F_BEHIND, lb, (double)st.millis_behind_latest);
  if ((cp = kcld_shard_consumer_checkpoint(c))) {
    kcld_checkpoint_stats(cp, &cs);
    kcld_metrics_set(m, F_CP_WRITES, lb, (double)cs.writes);
    kcld_metrics_set(m, F_CP_FAILURES, lb, (double)cs.failures);
  }
  kcld_monitor_visit_progress(v, id, st.get_records_calls,
                              st.records + st.empty_responses +
                                st.deliveries);
}

void kcld_monitor_visit_progress(struct kcld_monitor_visit *v,
                                 const char *shard_id, uint64_t calls,
                                 uint64_t progress)
{
  const char *lb[] = {"shard", shard_id, NULL};
  struct track *t = track_get(v->mon, shard_id);
  if (!t)
    return;
  t->seen = 1;
  t->fetched = calls > 0;
  if (progress != t->sig) {
    t->sig = progress;
    t->changed_ms = v->now;
  }
  kcld_metrics_set(v->mon->m, F_STUCK, lb,
                   (double)(v->now - t->changed_ms) / 1000.0);
}

void kcld_monitor_visit_dispatcher(struct kcld_monitor_visit *v,
                                   const struct kcld_dispatcher *d)
{
  struct kcld_metrics *m = v->mon->m;
  struct kcld_dispatcher_stats st;
  kcld_dispatcher_stats(d, &st);
  kcld_metrics_set(m, "kcld_records_handled_total", NULL,
                   (double)st.records_handled);
  kcld_metrics_set(m, "kcld_handler_calls_total", NULL,
                   (double)st.handler_calls);
  kcld_metrics_set(m, "kcld_batches_succeeded_total", NULL,
                   (double)st.batches_ok);
  kcld_metrics_set(m, "kcld_batches_failed_total", NULL,
                   (double)st.batches_failed);
  kcld_metrics_set(m, "kcld_batches_retried_total", NULL,
                   (double)st.batches_retried);
  kcld_metrics_set(m, "kcld_batches_bisected_total", NULL,
                   (double)st.batches_bisected);
  kcld_metrics_set(m, "kcld_handler_timeouts_total", NULL,
                   (double)st.handler_timeouts);
  kcld_metrics_set(m, "kcld_records_given_up_total", NULL,
                   (double)st.records_given_up);
  kcld_metrics_set(m, "kcld_dlq_messages_total", NULL,
                   (double)st.dlq_messages);
  kcld_metrics_set(m, "kcld_dlq_records_total", NULL,
                   (double)st.dlq_records);
  kcld_metrics_set(m, "kcld_batches_in_flight", NULL, (double)st.in_flight);
  kcld_metrics_set(m, "kcld_bytes_handled_total", NULL,
                   (double)st.bytes_handled);
}

void kcld_monitor_visit_leases(struct kcld_monitor_visit *v, size_t held)
{
  kcld_metrics_set(v->mon->m, "kcld_leases_held", NULL, (double)held);
}

void kcld_monitor_visit_coordinator(struct kcld_monitor_visit *v,
                                    const struct kcld_coordinator *c)
{
  struct kcld_metrics *m = v->mon->m;
  struct kcld_coordinator_stats st;
  kcld_coordinator_stats(c, &st);
  kcld_monitor_visit_leases(v, kcld_coordinator_held(c));
  kcld_metrics_set(m, "kcld_leases_taken_total", NULL, (double)st.taken);
  kcld_metrics_set(m, "kcld_leases_stolen_total", NULL, (double)st.stolen);
  kcld_metrics_set(m, "kcld_leases_lost_total", NULL, (double)st.lost);
}

/* ======== Observers ======== */

void kcld_monitor_observe_aws(void *monitor, const char *service,
                              const char *operation, double seconds, int err)
{
  struct kcld_monitor *mon = monitor;
  const char *lb[] = {"service", service, "operation", operation, NULL};
  if (!mon || mon->closing || err == KCLD_ECANCELED)
    return;
  kcld_metrics_observe(mon->m, F_AWS_DURATION, lb, seconds);
}

void kcld_monitor_observe_handler(void *monitor, double seconds)
{
  struct kcld_monitor *mon = monitor;
  if (!mon || mon->closing)
    return;
  kcld_metrics_observe(mon->m, F_HANDLER_DURATION, NULL, seconds);
}

/* Walks the owner's pieces: per-shard series are rebuilt, so that shards
 * no longer held vanish, and so do their progress tracks. */
static void collect_all(struct kcld_monitor *mon)
{
  struct kcld_monitor_visit v;
  if (mon->closing || mon->in_walk)
    return;
  for (size_t i = 0; i < sizeof(s_shard_families) / sizeof(char *); i++)
    kcld_metrics_clear(mon->m, s_shard_families[i]);
  for (struct track *t = mon->tracks; t; t = t->next)
    t->seen = 0;
  v.mon = mon;
  v.now = uv_now(mon->loop);
  mon->in_walk = 1;
  if (mon->walk)
    mon->walk(mon->arg, &v);
  mon->in_walk = 0;
  for (struct track **p = &mon->tracks; *p;) {
    struct track *t = *p;
    if (!t->seen) {
      *p = t->next;
      free(t->shard_id);
      free(t);
    } else {
      p = &t->next;
    }
  }
}

static void on_collect(struct kcld_metrics *m, void *arg)
{
  (void)m;
  collect_all(arg);
}

int kcld_monitor_healthy(struct kcld_monitor *mon, char *why, size_t n)
{
  uint64_t now = uv_now(mon->loop);
  collect_all(mon);
  for (struct track *t = mon->tracks; t; t = t->next) {
    if (t->fetched && now - t->changed_ms > mon->stuck_ms) {
      snprintf(why, n, "shard %s has made no progress for %" PRIu64 " s",
               t->shard_id, (now - t->changed_ms) / 1000);
      return 0;
    }
  }
  snprintf(why, n, "loop running; no held shard stuck");
  return 1;
}

static int health(void *arg, char *why, size_t n)
{
  return kcld_monitor_healthy(arg, why, n);
}

/* ======== Timers ======== */

static void on_sample(uv_timer_t *t)
{
  collect_all(t->data);
}

static void emf_write(struct kcld_monitor *mon)
{
  FILE *f = fopen(mon->emf_path, "a");
  if (!f) {
    kcld_log(KCLD_LOG_WARN, "cannot open the EMF file", "path",
             mon->emf_path, NULL);
    return;
  }
  if (kcld_metrics_emf_write(mon->m, f, "kcld", kcld_clock_wall_ms()) < 0)
    kcld_log(KCLD_LOG_WARN, "cannot write the EMF file", "path",
             mon->emf_path, NULL);
  fclose(f);
}

static void on_emf(uv_timer_t *t)
{
  emf_write(t->data);
}

/* ======== Life ======== */

static void monitor_free(struct kcld_monitor *mon)
{
  while (mon->tracks) {
    struct track *t = mon->tracks;
    mon->tracks = t->next;
    free(t->shard_id);
    free(t);
  }
  kcld_metrics_free(mon->m);
  free(mon->emf_path);
  free(mon);
}

static void on_closed(uv_handle_t *h)
{
  struct kcld_monitor *mon = h->data;
  if (--mon->handles == 0)
    monitor_free(mon);
}

int kcld_monitor_start(const struct kcld_monitor_opts *o,
                       struct kcld_monitor **out)
{
  struct kcld_monitor *mon;
  int rc;

  *out = NULL;
  if (!o || !o->loop)
    return KCLD_EINVAL;
  if (!(mon = calloc(1, sizeof(*mon))))
    return KCLD_ENOMEM;
  mon->loop = o->loop;
  mon->walk = o->walk;
  mon->arg = o->arg;
  mon->stuck_ms = o->stuck_ms ? o->stuck_ms : DEFAULT_STUCK_MS;
  mon->emf_ms = o->emf_interval_ms ? o->emf_interval_ms : DEFAULT_EMF_MS;
  if ((rc = kcld_metrics_new(&mon->m)) != 0)
    goto fail;
  for (size_t i = 0; i < sizeof(s_families) / sizeof(s_families[0]); i++)
    if ((rc = kcld_metrics_declare(mon->m, s_families[i].name,
                                   s_families[i].type, s_families[i].help,
                                   NULL, 0)) != 0)
      goto fail;
  if ((rc = kcld_metrics_declare(mon->m, F_AWS_DURATION,
                                 KCLD_METRIC_HISTOGRAM, "AWS call latency "
                                 "per service and operation, retries "
                                 "included.", s_latency_buckets,
                                 sizeof(s_latency_buckets) /
                                   sizeof(double))) != 0 ||
      (rc = kcld_metrics_declare(mon->m, F_HANDLER_DURATION,
                                 KCLD_METRIC_HISTOGRAM, "Handler call "
                                 "latency per batch.", s_latency_buckets,
                                 sizeof(s_latency_buckets) /
                                   sizeof(double))) != 0)
    goto fail;
  kcld_metrics_set_collector(mon->m, on_collect, mon);
  if (o->emf_path && *o->emf_path &&
      !(mon->emf_path = strdup(o->emf_path))) {
    rc = KCLD_ENOMEM;
    goto fail;
  }
  if (o->listen && *o->listen) {
    struct kcld_http_server_opts so;
    memset(&so, 0, sizeof(so));
    so.loop = o->loop;
    so.listen = o->listen;
    so.metrics = mon->m;
    so.health = health;
    so.health_arg = mon;
    if ((rc = kcld_http_server_start(&so, &mon->srv)) != 0)
      goto fail;
  }
  uv_timer_init(o->loop, &mon->sample);
  uv_timer_init(o->loop, &mon->emf);
  mon->sample.data = mon->emf.data = mon;
  mon->handles = 2;
  uv_timer_start(&mon->sample, on_sample, SAMPLE_MS, SAMPLE_MS);
  uv_unref((uv_handle_t *)&mon->sample);
  if (mon->emf_path) {
    uv_timer_start(&mon->emf, on_emf, mon->emf_ms, mon->emf_ms);
    uv_unref((uv_handle_t *)&mon->emf);
  }
  *out = mon;
  return 0;
fail:
  kcld_log(KCLD_LOG_ERROR, "cannot start metrics", "error",
           kcld_strerror(rc), NULL);
  monitor_free(mon);
  return rc;
}

struct kcld_metrics *kcld_monitor_metrics(struct kcld_monitor *m)
{
  return m ? m->m : NULL;
}

int kcld_monitor_port(const struct kcld_monitor *m)
{
  return m && m->srv ? kcld_http_server_port(m->srv) : 0;
}

void kcld_monitor_close(struct kcld_monitor *mon)
{
  if (!mon || mon->closing)
    return;
  if (mon->emf_path)
    emf_write(mon);
  mon->closing = 1;
  kcld_metrics_set_collector(mon->m, NULL, NULL);
  kcld_http_server_close(mon->srv);
  mon->srv = NULL;
  uv_timer_stop(&mon->sample);
  uv_timer_stop(&mon->emf);
  uv_close((uv_handle_t *)&mon->sample, on_closed);
  uv_close((uv_handle_t *)&mon->emf, on_closed);
}
