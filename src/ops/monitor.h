/* monitor.h — the daemon's metrics and health: kcld's metric families, the
 * /metrics and /healthz server (metrics.listen) and the optional CloudWatch
 * EMF file (metrics.emf).
 *
 * Nothing is counted on the hot path: at each scrape (and every
 * SAMPLE_MS for health) the monitor asks its owner to walk what runs now,
 * and the owner hands each piece over with the kcld_monitor_visit_*
 * functions, which copy the modules' stats structs into the registry.
 * Latency histograms are the exception: the observers below record one
 * observation per AWS call or handler answer (never per record).
 *
 * Health: /healthz answers from the loop, so an answer at all means the
 * loop turns.  It is 503 when the walk reports a stalled shard
 * (kcld_monitor_visit_stalled, with its reason; the stall detector,
 * ops/stall.h, decides), and lists each:
 *
 *   {"status":"unhealthy","shards":4,"stalled":[{"shard":"shardId-...",
 *    "reason":"no_iterator","seconds_since_progress":312}]}
 *
 * ("shards": the held shards visited).  A stalled shard also has the gauge
 * kcld_shard_stalled{shard,reason} = 1, dropped once it is not reported.
 *
 * Per-shard series are kept by handle and dropped when the walk no longer
 * visits the shard, so a walk costs the same per shard at any shard count.
 *
 * Loop thread only. */
#ifndef KCLD_OPS_MONITOR_H
#define KCLD_OPS_MONITOR_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "consume/shard_consumer.h"
#include "lease/coordinator.h"
#include "ops/metrics.h"
#include "process/dispatcher.h"

struct kcld_monitor;
struct kcld_monitor_visit;

/* Called at each collection: hand over every running piece. */
typedef void (*kcld_monitor_walk_fn)(void *arg, struct kcld_monitor_visit *v);

struct kcld_monitor_opts {
  uv_loop_t *loop;
  const char *listen;          /* metrics.listen; NULL or "" = no server */
  const char *emf_path;        /* metrics.emf; NULL or "" = none */
  uint64_t emf_interval_ms;    /* 0 = 60000 */
  kcld_monitor_walk_fn walk;
  void *arg;
};

/* Declares the families, starts the server and the timers.  Returns 0,
 * KCLD_EINVAL (listen does not parse), KCLD_EIO (cannot listen) or
 * KCLD_ENOMEM; the reason is logged. */
int kcld_monitor_start(const struct kcld_monitor_opts *opts,
                       struct kcld_monitor **out);

/* The registry, for modules that feed a metric directly. */
struct kcld_metrics *kcld_monitor_metrics(struct kcld_monitor *m);

/* The server's port (0 without a server). */
int kcld_monitor_port(const struct kcld_monitor *m);

/* Walks now; 1 when healthy, 0 when a shard is stalled; a one-line reason
 * (the first stalled shard) in why. */
int kcld_monitor_healthy(struct kcld_monitor *m, char *why, size_t n);

/* What /healthz answers: the JSON body above (malloc'd; NULL when out of
 * memory) and *healthy.  Walks again only when the last walk is more than
 * a second old, so that probes cannot make the loop walk every shard at
 * their rate. */
char *kcld_monitor_health_json(struct kcld_monitor *m, int *healthy);

/* Stops the timers and the server (a last EMF write first); memory goes in
 * the close callbacks: run the loop afterwards.  NULL is ignored. */
void kcld_monitor_close(struct kcld_monitor *m);

/* ======== For the walk ======== */

void kcld_monitor_visit_shard(struct kcld_monitor_visit *v,
                              const struct kcld_shard_consumer *c);
/* The dispatchers' counters (summed over every stream's). */
void kcld_monitor_visit_dispatcher(struct kcld_monitor_visit *v,
                                   const struct kcld_dispatcher_stats *st);
void kcld_monitor_visit_leases(struct kcld_monitor_visit *v, size_t held);

/* Leases held, taken, stolen and lost (calls kcld_monitor_visit_leases). */
void kcld_monitor_visit_coordinator(struct kcld_monitor_visit *v,
                                    const struct kcld_coordinator *c);

/* ======== Observers ========
 *
 * Latencies are observed as they happen: install these on the AWS client
 * (kcld_aws_set_observer) and the dispatcher (kcld_dispatcher_set_observer)
 * with the monitor as `arg`, and remove them before kcld_monitor_close. */

/* kcld_aws_call_duration_seconds{service,operation}, and for a failed call
 * kcld_aws_errors_total{service,operation,code} (code: the service's error
 * code, else transport, timeout, unparsable_answer, no_credentials or
 * other); calls cancelled (KCLD_ECANCELED) are not observed.  A
 * kcld_aws_observer_fn. */
void kcld_monitor_observe_aws(void *monitor, const char *service,
                              const char *operation, double seconds, int err,
                              const char *code);

/* kcld_handler_duration_seconds. */
void kcld_monitor_observe_handler(void *monitor, double seconds);

/* The health half of kcld_monitor_visit_shard (which calls it): a held
 * shard and the loop time (uv_now, ms) of its last progress, for
 * kcld_shard_seconds_since_progress and the "shards" count of /healthz.
 * For tests, and for a shard whose stats come from elsewhere. */
void kcld_monitor_visit_held(struct kcld_monitor_visit *v,
                             const char *shard_id, uint64_t last_progress_ms);

/* Reports a shard (held here or not) as stalled for `reason` (a
 * snake_case word, e.g. "invalid_checkpoint"; copied) since since_ms (loop
 * time of its last progress) in this walk: /healthz answers 503 and lists
 * it, and kcld_shard_stalled{shard,reason} is 1.  Call it in every walk
 * while the stall lasts. */
void kcld_monitor_visit_stalled(struct kcld_monitor_visit *v,
                                const char *shard_id, const char *reason,
                                uint64_t since_ms);

#endif
