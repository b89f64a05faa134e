/* monitor.c — kcld's metric families, collected from the modules' stats
 * at scrape time; shard progress tracking for /healthz; the EMF file. */
#include "ops/monitor.h"

#include <dirent.h>
#include <inttypes.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <jansson.h>

#include "base/clock.h"
#include "consume/checkpoint.h"
#include "err.h"
#include "log.h"
#include "kcld/version.h"
#include "lease/table.h"
#include "ops/http_server.h"

#define SAMPLE_MS 5000
#define DEFAULT_EMF_MS 60000
#define HEALTH_FRESH_MS 1000 /* /healthz walks at most this often */

/* ======== The families ======== */

#define F_RECORDS "kcld_records_fetched_total"
#define F_KRECORDS "kcld_kinesis_records_fetched_total"
#define F_BYTES "kcld_bytes_fetched_total"
#define F_CALLS "kcld_get_records_calls_total"
#define F_THROTTLES "kcld_get_records_throttles_total"
#define F_EXPIRED "kcld_get_records_expired_iterators_total"
#define F_FETCH_ERRORS "kcld_get_records_errors_total"
#define F_BUFFERED "kcld_buffered_bytes"
#define F_BEHIND "kcld_millis_behind_latest" /* deprecated: F_LAG */
#define F_LAG "kcld_shard_lag_seconds"
#define F_CP_WRITES "kcld_checkpoint_writes_total"
#define F_CP_FAILURES "kcld_checkpoint_failures_total"
#define F_STUCK "kcld_shard_seconds_since_progress"
#define F_STALLED "kcld_shard_stalled"
#define F_AWS_DURATION "kcld_aws_call_duration_seconds"
#define F_HANDLER_DURATION "kcld_handler_duration_seconds"
#define F_AWS_ERRORS "kcld_aws_errors_total"
#define F_BUILD_INFO "kcld_build_info"
#define F_CPU "process_cpu_seconds_total"
#define F_RSS "process_resident_memory_bytes"
#define F_FDS "process_open_fds"
#define F_MAX_FDS "process_max_fds"
#define F_START "process_start_time_seconds"

/* A shard's series, in the order of a track's handles. */
enum {
  S_RECORDS, S_KRECORDS, S_BYTES, S_CALLS, S_THROTTLES, S_EXPIRED,
  S_FETCH_ERRORS, S_BUFFERED, S_BEHIND, S_LAG, S_CP_WRITES, S_CP_FAILURES,
  S_STUCK, S_COUNT
};

static const char *const s_shard_families[S_COUNT] = {
  F_RECORDS, F_KRECORDS, F_BYTES, F_CALLS, F_THROTTLES, F_EXPIRED,
  F_FETCH_ERRORS, F_BUFFERED, F_BEHIND, F_LAG, F_CP_WRITES, F_CP_FAILURES,
  F_STUCK,
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
  {F_BEHIND, KCLD_METRIC_GAUGE, "Deprecated: kcld_shard_lag_seconds in "
   "milliseconds; goes in the next release."},
  {F_LAG, KCLD_METRIC_GAUGE, "How far the shard's last GetRecords answer "
   "was behind the tip of the stream (MillisBehindLatest), in seconds."},
  {F_CP_WRITES, KCLD_METRIC_COUNTER, "Checkpoint writes started."},
  {F_CP_FAILURES, KCLD_METRIC_COUNTER, "Checkpoint writes that failed "
   "(transient)."},
  {F_STUCK, KCLD_METRIC_GAUGE, "Seconds since the shard last made "
   "progress: an answer that moved it on, records dealt with, a checkpoint "
   "written."},
  {F_STALLED, KCLD_METRIC_GAUGE, "1 while the shard is stalled (no "
   "progress for metrics.stuck_after while it has work or cannot fetch), "
   "with the reason; absent otherwise."},
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
  {"kcld_records_filtered_total", KCLD_METRIC_COUNTER, "Records that "
   "matched no filter pattern: not given to the handler, checkpointed "
   "past."},
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
  /* AWS calls, from the observer. */
  {F_AWS_ERRORS, KCLD_METRIC_COUNTER, "AWS calls that failed, retries "
   "exhausted, by service, operation and error code."},
  /* The build and the process, Prometheus client conventions. */
  {F_BUILD_INFO, KCLD_METRIC_GAUGE, "Always 1; the version as a label."},
  {F_CPU, KCLD_METRIC_COUNTER, "Total user and system CPU time spent in "
   "seconds."},
  {F_RSS, KCLD_METRIC_GAUGE, "Resident memory size in bytes."},
  {F_FDS, KCLD_METRIC_GAUGE, "Number of open file descriptors."},
  {F_MAX_FDS, KCLD_METRIC_GAUGE, "Maximum number of open file "
   "descriptors."},
  {F_START, KCLD_METRIC_GAUGE, "Start time of the process since unix epoch "
   "in seconds."},
};

/* ======== State ======== */

/* A shard the walk visited (held here, or stalled): its series' handles
 * (NULL until first set) and its stall.  Found by shard id in a tree
 * (tsearch), listed for the sweep. */
struct track {
  struct track *next;
  char *shard_id;
  struct kcld_metric_series *h[S_COUNT];
  struct kcld_metric_series *stalled_h; /* kcld_shard_stalled{reason} */
  char stalled_reason[40];  /* the reason label of stalled_h */
  uint64_t seen;          /* the walk that last visited it */
  int held;               /* visited as a held shard in that walk */
  char stall[40];         /* the stall reason in that walk, or "" */
  uint64_t stall_since_ms; /* no progress since (loop ms) */
};

struct kcld_monitor {
  uv_loop_t *loop;
  struct kcld_metrics *m;
  struct kcld_http_server *srv;
  uv_timer_t sample, emf;
  char *emf_path;
  uint64_t emf_ms;
  kcld_monitor_walk_fn walk;
  void *arg;
  struct track *tracks;   /* every track, for the sweep */
  void *by_id;            /* tsearch root: track by shard_id */
  uint64_t walks;         /* walks done (the current one during a walk) */
  uint64_t walked_ms;     /* uv_now of the last walk */
  int handles, closing, in_walk;
};

struct kcld_monitor_visit {
  struct kcld_monitor *mon;
  uint64_t now;
};

/* ======== Tracks ======== */

static int track_cmp(const void *a, const void *b)
{
  return strcmp(((const struct track *)a)->shard_id,
                ((const struct track *)b)->shard_id);
}

static struct track *track_get(struct kcld_monitor *mon, const char *id)
{
  struct track key, *t, **found;
  key.shard_id = (char *)id;
  found = tfind(&key, &mon->by_id, track_cmp);
  if (found)
    return *found;
  t = calloc(1, sizeof(*t));
  if (!t || !(t->shard_id = strdup(id))) {
    free(t);
    return NULL;
  }
  if (!tsearch(t, &mon->by_id, track_cmp)) {
    free(t->shard_id);
    free(t);
    return NULL;
  }
  t->next = mon->tracks;
  mon->tracks = t;
  return t;
}

/* Forgets a track and drops its series (the registry stays consistent). */
static void track_free(struct kcld_monitor *mon, struct track *t)
{
  tdelete(t, &mon->by_id, track_cmp);
  for (size_t i = 0; i < S_COUNT; i++)
    kcld_metrics_series_drop(mon->m, t->h[i]);
  kcld_metrics_series_drop(mon->m, t->stalled_h);
  free(t->shard_id);
  free(t);
}

/* Series `family` of t's shard, labelled `shard` (a multi-stream lease
 * key: its stream and shard apart, `stream` and `shard`) and, when not
 * NULL, `reason`.  Returns kcld_metrics_series' result. */
static int shard_series(struct kcld_monitor *mon, const struct track *t,
                        const char *family, const char *reason,
                        struct kcld_metric_series **h)
{
  char stream[160];
  const char *lb[7] = {"shard"};
  size_t n = 1;
  lb[n++] = kcld_lease_key_parts(t->shard_id, stream, sizeof(stream));
  if (stream[0]) {
    lb[n++] = "stream";
    lb[n++] = stream;
  }
  if (reason) {
    lb[n++] = "reason";
    lb[n++] = reason;
  }
  lb[n] = NULL;
  return kcld_metrics_series(mon->m, family, lb, h);
}

/* Sets one of the shard's series, through its handle. */
static void track_set(struct kcld_monitor *mon, struct track *t, int which,
                      double value)
{
  if (!t->h[which] &&
      shard_series(mon, t, s_shard_families[which], NULL, &t->h[which]) != 0)
    return;
  kcld_metrics_series_set(mon->m, t->h[which], value);
}

/* The track of shard `id` for this walk: what an earlier walk said of it
 * is forgotten at its first visit. */
static struct track *track_visit(struct kcld_monitor_visit *v, const char *id)
{
  struct track *t = track_get(v->mon, id);
  if (t && t->seen != v->mon->walks) {
    t->seen = v->mon->walks;
    t->held = 0;
    t->stall[0] = '\0';
  }
  return t;
}

/* ======== Visits ======== */

void kcld_monitor_visit_shard(struct kcld_monitor_visit *v,
                              const struct kcld_shard_consumer *c)
{
  struct kcld_monitor *mon = v->mon;
  struct kcld_shard_consumer_stats st;
  struct kcld_checkpoint_stats cs;
  const struct kcld_checkpoint *cp;
  const char *id = kcld_shard_consumer_shard_id(c);
  struct track *t = track_visit(v, id);

  if (!t)
    return;
  kcld_shard_consumer_stats(c, &st);
  track_set(mon, t, S_RECORDS, (double)st.records);
  track_set(mon, t, S_KRECORDS, (double)st.kinesis_records);
  track_set(mon, t, S_BYTES, (double)st.bytes);
  track_set(mon, t, S_CALLS, (double)st.get_records_calls);
  track_set(mon, t, S_THROTTLES, (double)st.throttles);
  track_set(mon, t, S_EXPIRED, (double)st.expired_iterators);
  track_set(mon, t, S_FETCH_ERRORS, (double)st.errors);
  track_set(mon, t, S_BUFFERED, (double)st.held_bytes);
  if (st.millis_behind_latest >= 0) {
    track_set(mon, t, S_BEHIND, (double)st.millis_behind_latest);
    track_set(mon, t, S_LAG, (double)st.millis_behind_latest / 1000.0);
  }
  if ((cp = kcld_shard_consumer_checkpoint(c))) {
    kcld_checkpoint_stats(cp, &cs);
    track_set(mon, t, S_CP_WRITES, (double)cs.writes);
    track_set(mon, t, S_CP_FAILURES, (double)cs.failures);
  }
  kcld_monitor_visit_held(v, id, st.last_progress_ms);
}

void kcld_monitor_visit_held(struct kcld_monitor_visit *v,
                             const char *shard_id, uint64_t last_progress_ms)
{
  struct track *t = track_visit(v, shard_id);
  if (!t)
    return;
  t->held = 1;
  track_set(v->mon, t, S_STUCK,
            v->now > last_progress_ms
              ? (double)(v->now - last_progress_ms) / 1000.0
              : 0.0);
}

void kcld_monitor_visit_stalled(struct kcld_monitor_visit *v,
                                const char *shard_id, const char *reason,
                                uint64_t since_ms)
{
  struct kcld_monitor *mon = v->mon;
  struct track *t = track_visit(v, shard_id);
  if (!t)
    return;
  snprintf(t->stall, sizeof(t->stall), "%s", reason);
  t->stall_since_ms = since_ms;
  if (t->stalled_h && strcmp(t->stalled_reason, t->stall) != 0) {
    kcld_metrics_series_drop(mon->m, t->stalled_h);
    t->stalled_h = NULL;
  }
  if (!t->stalled_h) {
    if (shard_series(mon, t, F_STALLED, t->stall, &t->stalled_h) != 0)
      return;
    snprintf(t->stalled_reason, sizeof(t->stalled_reason), "%s", t->stall);
  }
  kcld_metrics_series_set(mon->m, t->stalled_h, 1);
}

void kcld_monitor_visit_dispatcher(struct kcld_monitor_visit *v,
                                   const struct kcld_dispatcher_stats *sp)
{
  struct kcld_metrics *m = v->mon->m;
  const struct kcld_dispatcher_stats st = *sp;
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
  kcld_metrics_set(m, "kcld_records_filtered_total", NULL,
                   (double)st.records_filtered);
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

/* The code label of a failed call: the service's error code, or what kind
 * of failure it was when the service did not answer one. */
static const char *error_code(int err, const char *code)
{
  if (err == KCLD_EAWS && code && *code)
    return code;
  switch (err) {
  case KCLD_ETRANSPORT: return "transport";
  case KCLD_ETIMEDOUT: return "timeout";
  case KCLD_EPARSE: return "unparsable_answer";
  case KCLD_ECREDS: return "no_credentials";
  default: return "other";
  }
}

void kcld_monitor_observe_aws(void *monitor, const char *service,
                              const char *operation, double seconds, int err,
                              const char *code)
{
  struct kcld_monitor *mon = monitor;
  const char *lb[] = {"service", service, "operation", operation, NULL};
  if (!mon || mon->closing || err == KCLD_ECANCELED)
    return;
  kcld_metrics_observe(mon->m, F_AWS_DURATION, lb, seconds);
  if (err) {
    const char *el[] = {"service", service, "operation", operation, "code",
                        error_code(err, code), NULL};
    kcld_metrics_add(mon->m, F_AWS_ERRORS, el, 1);
  }
}

void kcld_monitor_observe_handler(void *monitor, double seconds)
{
  struct kcld_monitor *mon = monitor;
  if (!mon || mon->closing)
    return;
  kcld_metrics_observe(mon->m, F_HANDLER_DURATION, NULL, seconds);
}

/* ======== The process ======== */

/* Seconds since the epoch at which this process started (/proc: its start
 * in clock ticks after boot, plus the boot time), or -1. */
static double process_start_time(void)
{
  char buf[1024], *p;
  unsigned long long ticks = 0, btime = 0;
  long hz = sysconf(_SC_CLK_TCK);
  FILE *f = fopen("/proc/self/stat", "r");
  size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
  if (f)
    fclose(f);
  buf[n] = '\0';
  /* Field 22; the command (field 2) may hold spaces: count after ')'. */
  if (!(p = strrchr(buf, ')')))
    return -1;
  for (int field = 2; field < 22 && p; field++)
    p = strchr(p + 1, ' ');
  if (!p || sscanf(p + 1, "%llu", &ticks) != 1 || hz <= 0)
    return -1;
  if (!(f = fopen("/proc/stat", "r")))
    return -1;
  while (fgets(buf, sizeof(buf), f))
    if (sscanf(buf, "btime %llu", &btime) == 1)
      break;
  fclose(f);
  return btime ? (double)btime + (double)ticks / (double)hz : -1;
}

static void collect_process(struct kcld_metrics *m)
{
  struct rusage ru;
  struct rlimit rl;
  long pages = 0, rss = 0;
  FILE *f;
  DIR *d;

  if (getrusage(RUSAGE_SELF, &ru) == 0)
    kcld_metrics_set(m, F_CPU, NULL,
                     (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
                       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) /
                         1e6);
  if ((f = fopen("/proc/self/statm", "r"))) {
    if (fscanf(f, "%ld %ld", &pages, &rss) == 2)
      kcld_metrics_set(m, F_RSS, NULL,
                       (double)rss * (double)sysconf(_SC_PAGESIZE));
    fclose(f);
  }
  if ((d = opendir("/proc/self/fd"))) {
    long fds = 0;
    for (struct dirent *e; (e = readdir(d));)
      fds += e->d_name[0] != '.';
    closedir(d);
    kcld_metrics_set(m, F_FDS, NULL, (double)(fds - 1)); /* less d's own */
  }
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
    kcld_metrics_set(m, F_MAX_FDS, NULL, (double)rl.rlim_cur);
}

/* ======== Collection and health ======== */

/* Walks the owner's pieces; shards not visited are forgotten, with their
 * series. */
static void collect_all(struct kcld_monitor *mon)
{
  struct kcld_monitor_visit v;
  if (mon->closing || mon->in_walk)
    return;
  v.mon = mon;
  v.now = uv_now(mon->loop);
  mon->walks++;
  mon->walked_ms = v.now;
  mon->in_walk = 1;
  if (mon->walk)
    mon->walk(mon->arg, &v);
  mon->in_walk = 0;
  for (struct track **p = &mon->tracks; *p;) {
    struct track *t = *p;
    if (t->seen != mon->walks) {
      *p = t->next;
      track_free(mon, t);
      continue;
    }
    if (!t->stall[0] && t->stalled_h) {
      kcld_metrics_series_drop(mon->m, t->stalled_h);
      t->stalled_h = NULL;
    }
    p = &t->next;
  }
}

static void on_collect(struct kcld_metrics *m, void *arg)
{
  collect_process(m);
  collect_all(arg);
}

/* Whole seconds from since_ms to now (0 when since is later). */
static uint64_t seconds_since(uint64_t since_ms, uint64_t now)
{
  return now > since_ms ? (now - since_ms) / 1000 : 0;
}

int kcld_monitor_healthy(struct kcld_monitor *mon, char *why, size_t n)
{
  uint64_t now = uv_now(mon->loop);
  collect_all(mon);
  for (struct track *t = mon->tracks; t; t = t->next) {
    if (t->stall[0]) {
      snprintf(why, n, "shard %s: %s for %" PRIu64 " s", t->shard_id,
               t->stall, seconds_since(t->stall_since_ms, now));
      return 0;
    }
  }
  snprintf(why, n, "loop running; no held shard stuck");
  return 1;
}

char *kcld_monitor_health_json(struct kcld_monitor *mon, int *healthy)
{
  uint64_t now = uv_now(mon->loop);
  json_t *doc = json_object(), *stalled = json_array();
  char *text = NULL;
  size_t shards = 0;
  int ok = doc && stalled;

  /* A probe more than once a second does not walk every shard again. */
  if (mon->walks == 0 || now - mon->walked_ms >= HEALTH_FRESH_MS)
    collect_all(mon);
  for (struct track *t = mon->tracks; ok && t; t = t->next) {
    shards += t->held;
    if (t->stall[0]) {
      char stream[160];
      const char *shard = kcld_lease_key_parts(t->shard_id, stream,
                                               sizeof(stream));
      ok = json_array_append_new(
             stalled,
             json_pack("{s:s,s:s*,s:s,s:I}", "shard", shard, "stream",
                       stream[0] ? stream : NULL, "reason", t->stall,
                       "seconds_since_progress",
                       (json_int_t)seconds_since(t->stall_since_ms, now))) ==
           0;
    }
  }
  *healthy = json_array_size(stalled) == 0;
  if (ok)
    ok = json_object_set_new(doc, "status",
                             json_string(*healthy ? "ok" : "unhealthy")) ==
           0 &&
         json_object_set_new(doc, "shards", json_integer((json_int_t)shards)) ==
           0 &&
         json_object_set(doc, "stalled", stalled) == 0;
  if (ok)
    text = json_dumps(doc, JSON_COMPACT);
  json_decref(stalled);
  json_decref(doc);
  return text;
}

static char *health(void *arg, int *healthy)
{
  return kcld_monitor_health_json(arg, healthy);
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
    track_free(mon, t);
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
  {
    const char *bl[] = {"version", KCLD_VERSION_STRING, NULL};
    double started = process_start_time();
    kcld_metrics_set(mon->m, F_BUILD_INFO, bl, 1);
    if (started > 0)
      kcld_metrics_set(mon->m, F_START, NULL, started);
  }
  kcld_metrics_set_collector(mon->m, on_collect, mon);
  if (o->emf_path && *o->emf_path &&
      !(mon->emf_path = strdup(o->emf_path))) {
    rc = KCLD_ENOMEM;
    goto fail;
  }
  if (o->listen && *o->listen) {
    struct kcld_http_server_opts so = {.loop = o->loop,
                                       .listen = o->listen,
                                       .metrics = mon->m,
                                       .health = health,
                                       .health_arg = mon};
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
  if (rc == KCLD_ENOMEM) /* the server logs its own failures */
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
