/* daemon.c — the running daemon: wires the loop, the AWS clients, the lease
 * coordinator, one shard consumer per held lease, the dispatcher and the
 * handler, and runs the graceful shutdown.
 *
 * Start:    region -> clients -> the stream's ARN (aws/identity.h) ->
 *           handler -> coordinator (table, shard sync); READY=1 to systemd
 *           once the lease table answered.
 * Running:  acquired lease -> shard consumer -> dispatcher -> handler;
 *           lost lease -> the consumer stops at once.
 * Reload:   (SIGHUP) the file is read and checked again; the keys that
 *           may change live go to the log, the dispatcher, the consumers;
 *           the others are named in one warning and keep their values.
 * Shutdown: (first SIGTERM/SIGINT/SIGQUIT) stop fetching, let in-flight batches
 *           finish within shutdown_timeout, flush checkpoints, release every
 *           lease, close everything.  A handler still busy when the time is
 *           up is killed (its children's process groups SIGKILLed, its
 *           batches answered and not checkpointed), so the run ends within
 *           shutdown_timeout + 2 s; past that, it ends without cleaning up.
 *           A second signal ends the run at once, without checkpointing
 *           anything unhandled. */
#include "daemon.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "aws/call.h"
#include "aws/credentials.h"
#include "aws/fanout.h"
#include "aws/http.h"
#include "aws/identity.h"
#include "aws/kinesis.h"
#include "aws/sqs.h"
#include "aws/sts.h"
#include "config_aws.h"
#include "consume/budget.h"
#include "consume/shard_consumer.h"
#include "err.h"
#include "handlers/child.h"
#include "handlers/handler.h"
#include "lease/coordinator.h"
#include "log.h"
#include "ops/monitor.h"
#include "ops/notify.h"
#include "ops/stall.h"
#include "process/dispatcher.h"
#include "process/filter.h"
#include "process/dlq.h"
#include "process/dlq_dir.h"
#include "process/dlq_sqs.h"
#include "process/pool.h"

#define STATUS_INTERVAL_MS 10000
#define DRAIN_POLL_MS 50
#define KILL_MARGIN_MS 250   /* shutdown_timeout -> the handler is killed:
                                after the consumers gave up its batches */
#define FORCE_AFTER_MS 1500  /* the kill -> leave without cleaning up */

enum phase {
  PHASE_STARTING = 0,
  PHASE_RUNNING,
  PHASE_STOPPING,   /* consumers finishing their work */
  PHASE_RELEASING,  /* leases being released */
  PHASE_DRAINING,   /* waiting for the handler's last answers */
  PHASE_CLOSED
};

struct shard {
  struct shard *next;
  struct kcld_shard_consumer *consumer;
};

/* fetch.mode: fanout: the stream consumer of one stream (a consumer ARN
 * names one stream: with streams:, one each). */
struct stream_consumer {
  struct daemon *dm;
  const char *stream;  /* the config's */
  char *arn;           /* once ACTIVE */
};

/* The signals the daemon handles (daemon.h says what each does). */
enum sig { SIG_TERM, SIG_INT, SIG_QUIT, SIG_HUP, SIG_USR1, SIG_USR2, NSIGS };
static const int s_signums[NSIGS] = {SIGTERM, SIGINT, SIGQUIT,
                                     SIGHUP,  SIGUSR1, SIGUSR2};

struct daemon {
  const struct kcld_daemon_opts *opts;
  const struct kcld_config *cfg;  /* as started: what restart keys keep */
  struct kcld_config *reloaded;   /* the last file a reload applied; NULL =
                                     none yet (cfg) */
  uv_loop_t loop;
  uv_signal_t sig[NSIGS];
  uv_timer_t status;     /* sd_notify STATUS and the drain poll */
  uv_timer_t deadline;   /* shutdown_timeout: kill, then leave */
  enum phase phase;
  int signals;
  int rc;                /* what kcld_daemon_run returns */
  int immediate;         /* second signal, or out of time: leave now */
  int handler_killed;
  int forced;            /* the deadline has passed the kill */
  char *region;
  struct kcld_http *http;
  struct kcld_credentials *creds;
  struct kcld_aws *aws;
  struct kcld_kinesis *kinesis;
  struct kcld_sts *sts;        /* GetCallerIdentity at start-up */
  char *stream_arn;            /* resolved at start-up; "" when unknown */
  char *function_arn;          /* the on-failure records' functionArn */
  struct kcld_fanout *fanout;  /* fetch.mode: fanout only */
  struct stream_consumer *consumers; /* fanout: one per stream, in the
                                        order of streams: (or stream:) */
  size_t nconsumers;
  size_t consumers_active;
  struct kcld_handler *handler;
  struct kcld_sqs *sqs;        /* on_failure.sqs only */
  struct kcld_dlq *dlq;
  struct kcld_dispatcher *disp;
  struct kcld_filter *filter;  /* `filter`; NULL = none; freed last */
  struct kcld_coordinator *coord;
  struct kcld_notify *notify;
  struct kcld_monitor *monitor; /* metrics.listen / metrics.emf */
  struct kcld_stall *stall;     /* stalled shards: log, gauge, /healthz */
  struct kcld_fetch_budget *budget; /* fetch.max_total_buffered_bytes */
  struct shard *shards;
  size_t nshards;
};

static void begin_shutdown(struct daemon *dm, int rc);

/* ======== Empty strings in the config mean "not set" ======== */

static const char *opt(const char *s)
{
  return s && *s ? s : NULL;
}

/* Where the keys that may change live are read (kcld_config_key_live):
 * the last reloaded file, else the one kcld started with. */
static const struct kcld_config *live(const struct daemon *dm)
{
  return dm->reloaded ? dm->reloaded : dm->cfg;
}

/* ======== Shard consumers ======== */

static void on_consumer_finished(struct kcld_shard_consumer *c,
                                 enum kcld_shard_consumer_end how, int err,
                                 void *arg);

/* http.max_connections 0: keep a connection for every held lease and a
 * margin (never fewer than the floor), growing only, so a burst of calls
 * reuses connections instead of opening and closing them. */
static void size_connections(struct daemon *dm)
{
  long want = (long)dm->nshards + KCLD_CONFIG_AUTO_CONNECTIONS_MARGIN;
  if (dm->cfg->http.max_connections != 0 || !dm->http)
    return;
  if (want > kcld_http_max_connections(dm->http))
    kcld_http_set_max_connections(dm->http, want);
}

static void on_acquired(const struct kcld_lease *lease, void *arg)
{
  struct daemon *dm = arg;
  const struct kcld_config *cfg = dm->cfg;
  struct kcld_shard_consumer_opts o;
  struct shard *s;
  int rc, si = kcld_coordinator_stream_index(dm->coord, lease);

  if (dm->phase != PHASE_RUNNING && dm->phase != PHASE_STARTING)
    return; /* shutting down: the lease is released with the others */
  if (si < 0) /* never: the coordinator takes leases of our streams only */
    return;
  s = calloc(1, sizeof(*s));
  if (!s) {
    kcld_log(KCLD_LOG_ERROR, "out of memory starting a shard consumer",
             "shard", lease->shard_id, NULL);
    return;
  }
  memset(&o, 0, sizeof(o));
  o.loop = &dm->loop;
  o.kinesis = dm->kinesis;
  o.fanout = dm->fanout;
  o.consumer_arn = dm->consumers ? dm->consumers[si].arn : NULL;
  o.coordinator = dm->coord;
  o.stream = cfg->streams.len ? cfg->streams.v[si].stream : cfg->stream;
  o.lease = lease;
  o.initial_timestamp_ms = cfg->streams.len
                             ? cfg->streams.v[si].starting_timestamp_ms
                             : cfg->starting_timestamp_ms;
  o.max_records = live(dm)->fetch.max_records;
  o.idle_ms = (uint64_t)live(dm)->fetch.idle_time_ms;
  o.max_buffered_bytes = (size_t)cfg->fetch.max_buffered_bytes;
  o.budget = dm->budget;
  o.checkpoint_interval_ms = (uint64_t)cfg->checkpoint.interval_ms;
  o.sink = kcld_dispatcher_sink(dm->disp);
  o.finished = on_consumer_finished;
  o.arg = dm;
  rc = kcld_shard_consumer_start(&o, &s->consumer);
  if (rc != 0) {
    kcld_log(KCLD_LOG_ERROR, "cannot start the shard consumer", "shard",
             lease->shard_id, "error", kcld_strerror(rc), NULL);
    free(s);
    return;
  }
  s->next = dm->shards;
  dm->shards = s;
  dm->nshards++;
  size_connections(dm);
  if (dm->handler->ops->shard_started)
    dm->handler->ops->shard_started(dm->handler, lease->shard_id,
                                    lease->checkpoint, lease->checkpoint_sub);
}

static struct shard **find_shard(struct daemon *dm, const char *shard_id)
{
  for (struct shard **p = &dm->shards; *p; p = &(*p)->next)
    if (strcmp(kcld_shard_consumer_shard_id((*p)->consumer), shard_id) == 0)
      return p;
  return NULL;
}

static void on_lost(const char *shard_id, void *arg)
{
  struct daemon *dm = arg;
  struct shard **p = find_shard(dm, shard_id);
  if (p)
    kcld_shard_consumer_lose((*p)->consumer);
}

/* The handler's checkpoint requests (multilang) go to the shard consumer's
 * tracker, not through kcld_shard_consumer_progress: the consumer's view of
 * what is dealt with stays the dispatcher's, so a stop or a shard end still
 * waits for the dispatcher's last progress. */
static void handler_checkpoint(void *ctx, const char *shard_id,
                               const char *sequence, uint64_t sub,
                               kcld_handler_checkpoint_cb cb, void *arg)
{
  struct daemon *dm = ctx;
  struct shard **p = find_shard(dm, shard_id);

  if (!p) {
    cb(KCLD_ELOST, arg);
    return;
  }
  kcld_shard_consumer_checkpoint_at((*p)->consumer, sequence, sub, cb, arg);
}

static void on_released(int err, void *arg);

/* Every consumer has finished during shutdown: release the leases. */
static void maybe_release(struct daemon *dm)
{
  if (dm->phase != PHASE_STOPPING || dm->shards)
    return;
  dm->phase = PHASE_RELEASING;
  kcld_log(KCLD_LOG_INFO, "consumers stopped; releasing leases", NULL);
  kcld_coordinator_release_all(dm->coord, on_released, dm);
}

static void on_consumer_finished(struct kcld_shard_consumer *c,
                                 enum kcld_shard_consumer_end how, int err,
                                 void *arg)
{
  struct daemon *dm = arg;
  const char *shard_id = kcld_shard_consumer_shard_id(c);
  struct shard **p = find_shard(dm, shard_id), *s;
  static const enum kcld_shard_stop why[] = {
    [KCLD_SHARD_CONSUMER_ENDED] = KCLD_SHARD_STOP_ENDED,
    [KCLD_SHARD_CONSUMER_STOPPED] = KCLD_SHARD_STOP_SHUTDOWN,
    [KCLD_SHARD_CONSUMER_LOST] = KCLD_SHARD_STOP_LOST,
  };
  static const char *const names[] = {"ended", "stopped", "lost"};

  kcld_log(err ? KCLD_LOG_WARN : KCLD_LOG_INFO, "shard consumer finished",
           "shard", shard_id, "how", names[how], "error",
           err ? kcld_strerror(err) : NULL, NULL);
  if (dm->handler->ops->shard_stopped)
    dm->handler->ops->shard_stopped(dm->handler, shard_id, why[how]);
  if (p) {
    s = *p;
    *p = s->next;
    free(s);
    dm->nshards--;
  }
  kcld_shard_consumer_close(c);
  maybe_release(dm);
}

/* ======== Coordinator ======== */

static void on_ready(int err, const char *why, void *arg)
{
  struct daemon *dm = arg;
  if (err) {
    kcld_log(KCLD_LOG_ERROR, "start-up failed: the lease table or the stream "
             "cannot be used", "error", why, "code", kcld_strerror(err),
             NULL);
    begin_shutdown(dm, err);
    return;
  }
  if (dm->phase == PHASE_STARTING)
    dm->phase = PHASE_RUNNING;
  kcld_log(KCLD_LOG_INFO, "lease table ready", "table", dm->cfg->lease.table,
           NULL);
  kcld_notify_ready(dm->notify, "lease table reachable");
}

/* ======== Stalls and metrics ======== */

/* What holds a shard's records at the dispatcher, for the stall detector
 * (reason NULL: nothing but the handler's pace).  out->error points into
 * *st. */
static void dispatcher_hold(const struct daemon *dm, const char *shard_id,
                            struct kcld_dispatcher_shard_state *st,
                            struct kcld_stall_hold *out)
{
  out->reason = NULL;
  out->error = NULL;
  if (!dm->disp)
    return;
  kcld_dispatcher_shard_state(dm->disp, shard_id, st);
  if (st->wait == KCLD_DISPATCHER_MOVING)
    return;
  out->reason = kcld_dispatcher_wait_name(st->wait);
  out->error = st->error[0] ? st->error : st->error_type;
}

struct lease_walk {
  struct kcld_stall_visit *v;
  uint64_t table_missing_ms;   /* since when the lease table is gone */
};

static void on_lease_stall(const char *shard_id, const char *reason,
                           void *arg)
{
  struct lease_walk *lw = arg;
  kcld_stall_visit_lease(lw->v, shard_id, reason,
                         strcmp(reason, KCLD_STALL_LEASE_TABLE_MISSING) == 0
                           ? lw->table_missing_ms
                           : 0);
}

/* What the stall detector judges: every held shard, and the shards the
 * lease layer keeps from progressing. */
static void stall_walk(void *arg, struct kcld_stall_visit *v)
{
  struct daemon *dm = arg;
  struct kcld_shard_consumer_stats st;
  struct kcld_dispatcher_shard_state ds;
  struct kcld_stall_hold hold;
  struct kcld_coordinator_health h;
  struct lease_walk lw = {v, 0};

  for (struct shard *s = dm->shards; s; s = s->next) {
    const char *id = kcld_shard_consumer_shard_id(s->consumer);
    kcld_shard_consumer_stats(s->consumer, &st);
    dispatcher_hold(dm, id, &ds, &hold);
    kcld_stall_visit_shard(v, id, &st, &hold);
  }
  if (dm->coord) {
    kcld_coordinator_health(dm->coord, &h);
    lw.table_missing_ms = h.table_missing_ms;
    kcld_coordinator_stalls(dm->coord, on_lease_stall, &lw);
  }
}

static void on_stalled(const char *shard_id, const char *reason,
                       uint64_t since_ms, void *arg)
{
  kcld_monitor_visit_stalled(arg, shard_id, reason, since_ms);
}

/* What /metrics and /healthz read, at scrape time. */
static void monitor_walk(void *arg, struct kcld_monitor_visit *v)
{
  struct daemon *dm = arg;
  for (struct shard *s = dm->shards; s; s = s->next) {
    kcld_monitor_visit_shard(v, s->consumer);
  }
  kcld_stall_each(dm->stall, on_stalled, v);
  if (dm->disp)
    kcld_monitor_visit_dispatcher(v, dm->disp);
  if (dm->coord)
    kcld_monitor_visit_coordinator(v, dm->coord);
}

/* ======== Closing ======== */

static void close_all(struct daemon *dm)
{
  dm->phase = PHASE_CLOSED;
  /* Handler answers may come after the monitor is gone. */
  if (dm->aws)
    kcld_aws_set_observer(dm->aws, NULL, NULL);
  if (dm->disp)
    kcld_dispatcher_set_observer(dm->disp, NULL, NULL);
  kcld_monitor_close(dm->monitor);
  dm->monitor = NULL;
  kcld_stall_close(dm->stall);
  dm->stall = NULL;
  uv_timer_stop(&dm->status);
  uv_close((uv_handle_t *)&dm->status, NULL);
  for (int i = 0; i < NSIGS; i++)
    uv_close((uv_handle_t *)&dm->sig[i], NULL);
  if (dm->coord)
    kcld_coordinator_close(dm->coord);
  if (dm->disp)
    kcld_dispatcher_close(dm->disp);
  kcld_dlq_close(dm->dlq);
  if (dm->sqs)
    kcld_sqs_close(dm->sqs);
  if (dm->handler)
    kcld_handler_close(dm->handler);
  kcld_fanout_close(dm->fanout); /* a start-up lookup ends: ECANCELED */
  if (dm->kinesis)
    kcld_kinesis_close(dm->kinesis);
  if (dm->sts)
    kcld_sts_close(dm->sts);
  if (dm->aws)
    kcld_aws_close(dm->aws);
  if (dm->creds)
    kcld_credentials_close(dm->creds);
  if (dm->http)
    kcld_http_close(dm->http);
  kcld_fetch_budget_close(dm->budget);
  dm->budget = NULL;
  kcld_notify_close(dm->notify);
  dm->coord = NULL;
  dm->disp = NULL;
  dm->dlq = NULL;
  dm->sqs = NULL;
  dm->handler = NULL;
  dm->kinesis = NULL;
  dm->sts = NULL;
  dm->fanout = NULL;
  dm->aws = NULL;
  dm->creds = NULL;
  dm->http = NULL;
  dm->notify = NULL;
}

static void on_status_timer(uv_timer_t *t);

/* Kills what the handler still runs: its batches are answered (and not
 * checkpointed: their consumers gave them up), its children's process
 * groups SIGKILLed, every child process group too. */
static void kill_handler(struct daemon *dm, const char *why)
{
  if (dm->handler && !dm->handler_killed) {
    kcld_log(KCLD_LOG_WARN, "killing the handler's work in flight", "reason",
             why, NULL);
    dm->handler_killed = 1;
    kcld_handler_kill(dm->handler);
  }
  kcld_child_kill_all();
}

/* The handler may still owe answers for batches whose consumer gave up
 * waiting (shutdown deadline): wait for them before destroying it.  The
 * deadline kills whatever still runs at shutdown_timeout + KILL_MARGIN_MS
 * (not earlier: a record processor finishing shutdownRequested may be
 * what keeps a shard busy here). */
static void drain_then_close(struct daemon *dm)
{
  struct kcld_dispatcher_stats st;
  dm->phase = PHASE_DRAINING;
  if (dm->disp) {
    kcld_dispatcher_stats(dm->disp, &st);
    if (st.in_flight > 0) {
      uv_ref((uv_handle_t *)&dm->status);
      uv_timer_start(&dm->status, on_status_timer, DRAIN_POLL_MS, 0);
      return;
    }
  }
  close_all(dm);
}

/* shutdown_timeout (+ a margin) has passed: kill the handler's work; if
 * the run still has not ended FORCE_AFTER_MS later (a plugin call that
 * does not return, a write that blocks), leave without cleaning up. */
static void on_deadline(uv_timer_t *t)
{
  struct daemon *dm = t->data;
  if (!dm->forced) {
    dm->forced = 1;
    kill_handler(dm, "shutdown_timeout passed");
    uv_timer_start(&dm->deadline, on_deadline, FORCE_AFTER_MS, 0);
    return;
  }
  kcld_log(KCLD_LOG_ERROR, "shutdown did not finish in time; exiting "
           "without cleaning up", NULL);
  kcld_child_kill_all();
  dm->immediate = 1;
  uv_stop(&dm->loop);
}

static void on_released(int err, void *arg)
{
  struct daemon *dm = arg;
  if (err)
    kcld_log(KCLD_LOG_WARN, "some leases could not be released; peers take "
             "them after the failover time", "error", kcld_strerror(err), NULL);
  else
    kcld_log(KCLD_LOG_INFO, "leases released", NULL);
  drain_then_close(dm);
}

static void begin_shutdown(struct daemon *dm, int rc)
{
  if (dm->phase >= PHASE_STOPPING)
    return;
  if (rc && !dm->rc)
    dm->rc = rc;
  kcld_notify_stopping(dm->notify, "shutting down");
  /* Unreferenced: it bounds the run without keeping the loop alive. */
  uv_timer_start(&dm->deadline, on_deadline,
                 (uint64_t)dm->cfg->shutdown_timeout_ms + KILL_MARGIN_MS, 0);
  if (!dm->coord) {
    drain_then_close(dm);
    return;
  }
  dm->phase = PHASE_STOPPING;
  if (!dm->shards) {
    maybe_release(dm);
    return;
  }
  for (struct shard *s = dm->shards; s; s = s->next)
    kcld_shard_consumer_stop(s->consumer,
                             (uint64_t)dm->cfg->shutdown_timeout_ms);
  kcld_dispatcher_flush(dm->disp); /* no waiting for batch.window now */
}

static void on_stop_signal(struct daemon *dm, int signum)
{
  dm->signals++;
  if (dm->signals == 1) {
    kcld_log(KCLD_LOG_INFO, "shutting down: finishing in-flight work; "
             "signal again to exit at once", "signal", strsignal(signum),
             NULL);
    begin_shutdown(dm, 0);
    return;
  }
  kcld_log(KCLD_LOG_WARN, "second signal: exiting at once without "
           "checkpointing unhandled records", NULL);
  kcld_child_kill_all();
  dm->immediate = 1;
  uv_stop(&dm->loop);
}

/* The highest MillisBehindLatest of the held shards, or -1 when none is
 * known. */
static int64_t max_lag(const struct daemon *dm)
{
  int64_t lag = -1;
  for (struct shard *s = dm->shards; s; s = s->next) {
    int64_t ms = kcld_shard_consumer_millis_behind(s->consumer);
    lag = ms > lag ? ms : lag;
  }
  return lag;
}

/* SIGUSR1: one line saying where the daemon is. */
static void log_status(struct daemon *dm)
{
  static const char *const phases[] = {"starting", "running", "stopping",
                                       "releasing", "draining", "closed"};
  struct kcld_dispatcher_stats st;
  memset(&st, 0, sizeof(st));
  if (dm->disp)
    kcld_dispatcher_stats(dm->disp, &st);
  kcld_log(KCLD_LOG_INFO, "status", "phase", phases[dm->phase],
           KCLD_LOG_UINT("leases", dm->coord ? kcld_coordinator_held(dm->coord)
                                            : 0),
           KCLD_LOG_UINT("shards", dm->nshards),
           KCLD_LOG_INT("millis_behind", max_lag(dm)),
           KCLD_LOG_UINT("records_handled", st.records_handled),
           KCLD_LOG_UINT("records_given_up", st.records_given_up),
           KCLD_LOG_UINT("in_flight", st.in_flight), NULL);
}

static void on_status_timer(uv_timer_t *t)
{
  struct daemon *dm = t->data;
  kcld_log_flush(0); /* "N similar lines suppressed" of quiet messages */
  if (dm->phase == PHASE_DRAINING) {
    drain_then_close(dm);
    return;
  }
  if (dm->coord) {
    int64_t lag = max_lag(dm);
    if (lag >= 0)
      kcld_notify_status(dm->notify, "%zu leases held, %lld ms behind",
                         kcld_coordinator_held(dm->coord), (long long)lag);
    else
      kcld_notify_status(dm->notify, "%zu leases held",
                         kcld_coordinator_held(dm->coord));
  }
}

/* ======== Reload (SIGHUP) ======== */

/* The dispatcher's settings: the live keys' from live(dm), the others as
 * kcld started. */
static void dispatcher_opts(struct daemon *dm,
                            struct kcld_dispatcher_opts *o)
{
  const struct kcld_config *l = live(dm);
  memset(o, 0, sizeof(*o));
  o->loop = &dm->loop;
  o->handler = dm->handler;
  o->batch_size = (unsigned)l->batch.size;
  o->window_ms = (uint64_t)l->batch.window_ms;
  o->parallelization = (unsigned)l->batch.parallelization_factor;
  o->handler_timeout_ms = (uint64_t)dm->cfg->handler.timeout_ms;
  o->max_retry_attempts = l->retry.max_retry_attempts;
  o->bisect_on_error = l->retry.bisect_on_error;
  o->max_record_age_ms = l->retry.max_record_age_ms;
  o->backoff_base_ms = (uint64_t)l->retry.backoff_base_ms;
  o->backoff_max_ms = (uint64_t)l->retry.backoff_max_ms;
  o->dlq = dm->dlq;
  o->discard = dm->cfg->on_failure.discard;
  /* Without a destination (only a start opens one) nor discard, a record
   * that fails for good has nowhere to go but its retries. */
  o->block_on_failure = l->on_failure.block || (!o->dlq && !o->discard);
}

/* The changes in ch[0..n-1] to on_failure.block, marked as needing a
 * restart: turning it off needs the destination only a start opens. */
static void block_needs_restart(struct kcld_config_change *ch, int n)
{
  for (int i = 0; i < n; i++)
    if (strcmp(ch[i].key, "on_failure.block") == 0)
      ch[i].live = false;
}

/* The dead-letter queue's live settings from live(dm). */
static void dlq_live_opts(const struct daemon *dm, struct kcld_dlq_opts *o)
{
  const struct kcld_config *l = live(dm);
  o->include_records = l->on_failure.include_records;
  o->backoff_base_ms = (uint64_t)l->retry.backoff_base_ms;
  o->backoff_max_ms = (uint64_t)l->retry.backoff_max_ms;
}

/* The keys of ch[0..n-1] that may change live (live true) or need a
 * restart (false), as "a, b, c" in buf ("" when none); returns how many. */
static size_t key_list(const struct kcld_config_change *ch, int n, bool live,
                       char *buf, size_t cap)
{
  size_t count = 0, len = 0;
  buf[0] = '\0';
  for (int i = 0; i < n; i++) {
    if (ch[i].live != live)
      continue;
    int w = snprintf(buf + len, cap - len, "%s%s", count ? ", " : "",
                     ch[i].key);
    count++;
    if (w > 0 && (size_t)w < cap - len)
      len += (size_t)w;
  }
  return count;
}

/* Gives the modules the live keys' values of live(dm): the log, the
 * dispatcher (next batch), every shard consumer (next fetch), the stall
 * detector (next check). */
static void apply_live(struct daemon *dm, bool log_changed)
{
  const struct kcld_config *l = live(dm);
  struct kcld_dispatcher_opts dop;
  struct kcld_dlq_opts qo;
  if (log_changed)
    kcld_log_setup(kcld_log_level_lower(l->log.level, dm->opts->verbose),
                   l->log.format, NULL);
  int refused = 0;
  if (dm->dlq) {
    memset(&qo, 0, sizeof(qo));
    dlq_live_opts(dm, &qo);
    refused |= kcld_dlq_configure(dm->dlq, &qo) != 0;
  }
  if (dm->disp) {
    dispatcher_opts(dm, &dop);
    refused |= kcld_dispatcher_configure(dm->disp, &dop) != 0;
  }
  if (refused) /* the config's checks should have caught it */
    kcld_log(KCLD_LOG_ERROR, "reload: a module refused a reloaded value "
             "and keeps its running settings", NULL);
  for (struct shard *s = dm->shards; s; s = s->next)
    kcld_shard_consumer_set_fetch(s->consumer, l->fetch.max_records,
                                  (uint64_t)l->fetch.idle_time_ms);
  if (dm->stall)
    kcld_stall_set_limits(dm->stall, (uint64_t)l->metrics.stuck_after_ms,
                          (uint64_t)l->batch.window_ms);
}

/* A reload that failed: the errors, one per line of `errors`, in one log
 * line; nothing changes. */
static void log_refused(const struct daemon *dm, int rc, char *errors)
{
  size_t len = errors ? strlen(errors) : 0;
  while (len > 0 && errors[len - 1] == '\n')
    errors[--len] = '\0';
  kcld_log(KCLD_LOG_ERROR, "configuration reload refused; the running "
           "configuration is unchanged", "path", dm->cfg->path,
           "error", len ? errors : kcld_strerror(rc), NULL);
}

/* SIGHUP: read and check the file again; apply the live keys that changed
 * since the last reload, name in one warning the changed keys that need a
 * restart (compared with the configuration kcld started with). */
static void reload(struct daemon *dm)
{
  struct kcld_config *next = NULL;
  struct kcld_config_change *now = NULL, *later = NULL;
  char *errors = NULL, applied[1024], restart[1024];
  int n, nlater, rc;
  bool log_changed = false;

  if (dm->phase >= PHASE_STOPPING) {
    kcld_log(KCLD_LOG_INFO, "configuration reload ignored: shutting down",
             NULL);
    return;
  }
  rc = dm->opts->load ? dm->opts->load(dm->opts->load_arg, &next, &errors)
                      : KCLD_EINVAL;
  if (rc != 0) {
    log_refused(dm, rc, errors);
    goto done;
  }
  n = kcld_config_diff(live(dm), next, &now);
  nlater = kcld_config_diff(dm->cfg, next, &later);
  if (n < 0 || nlater < 0) {
    log_refused(dm, KCLD_ENOMEM, NULL);
    goto done;
  }
  if (!next->on_failure.block && !dm->dlq && !dm->cfg->on_failure.discard) {
    block_needs_restart(now, n);
    block_needs_restart(later, nlater);
  }
  for (int i = 0; i < n; i++)
    log_changed |= now[i].live && strncmp(now[i].key, "log.", 4) == 0;
  key_list(now, n, true, applied, sizeof(applied));
  kcld_config_free(dm->reloaded);
  dm->reloaded = next;
  next = NULL;
  apply_live(dm, log_changed);
  kcld_log(KCLD_LOG_INFO, "configuration reloaded", "path", dm->cfg->path,
           "applied", applied, NULL);
  if (key_list(later, nlater, false, restart, sizeof(restart)) > 0)
    kcld_log(KCLD_LOG_WARN, "configuration keys changed that need a restart; "
             "they keep their running values until then", "keys",
             restart, NULL);
done:
  kcld_config_free(next);
  free(now);
  free(later);
  free(errors);
}

static void on_signal(uv_signal_t *h, int signum)
{
  struct daemon *dm = h->data;
  switch (signum) {
  case SIGHUP:
    reload(dm);
    break;
  case SIGUSR1:
    log_status(dm);
    break;
  case SIGUSR2:
    kcld_log(KCLD_LOG_INFO, "signal ignored", "signal", strsignal(signum),
             NULL);
    break;
  default: /* SIGTERM, SIGINT, SIGQUIT */
    on_stop_signal(dm, signum);
    break;
  }
}

/* ======== Start-up ======== */

/* The store given-up records go to: the queue of on_failure.sqs, else the
 * dead-letter directory, created and probed here (kcld does not start
 * without it).  *store stays NULL with on_failure.discard or .block. */
static int open_store(struct daemon *dm, struct kcld_dlq_store **store)
{
  const struct kcld_config *cfg = dm->cfg;
  struct kcld_dlq_dir_opts d;
  char err[512];
  int rc;

  *store = NULL;
  if (cfg->on_failure.block) {
    kcld_log(KCLD_LOG_INFO, "on_failure.block is set: a record that fails "
             "for good stops its shard, which retries it", NULL);
    return 0;
  }
  if (cfg->on_failure.discard) {
    kcld_log(KCLD_LOG_WARN, "on_failure.discard is set: records that fail "
             "for good are logged and skipped", NULL);
    return 0;
  }
  if (opt(cfg->on_failure.sqs)) {
    if ((rc = kcld_sqs_new(dm->aws, &dm->loop, &dm->sqs)) != 0)
      return rc;
    return kcld_dlq_sqs_new(dm->sqs, cfg->on_failure.sqs, store);
  }
  memset(&d, 0, sizeof(d));
  d.loop = &dm->loop;
  d.dir = cfg->on_failure.dir;
  d.application = cfg->application;
  rc = kcld_dlq_dir_new(&d, store, err, sizeof(err));
  if (rc != 0) {
    kcld_log(KCLD_LOG_ERROR, "cannot use the dead-letter directory; not "
             "starting", "path", cfg->on_failure.dir, "error",
             *err ? err : kcld_strerror(rc), NULL);
    return rc;
  }
  kcld_log(KCLD_LOG_INFO, "records that fail for good go to the dead-letter "
           "directory", "path", cfg->on_failure.dir, NULL);
  return 0;
}

/* The failure destination over that store (none with discard or block). */
static int open_dlq(struct daemon *dm)
{
  struct kcld_dlq_opts qo;
  int rc;

  memset(&qo, 0, sizeof(qo));
  if ((rc = open_store(dm, &qo.store)) != 0 || !qo.store)
    return rc;
  qo.loop = &dm->loop;
  qo.function_arn = dm->function_arn;
  qo.stream_arn = dm->stream_arn;
  dlq_live_opts(dm, &qo);
  return kcld_dlq_new(&qo, &dm->dlq);
}

/* Starts the coordinator with `co` and, for `streams:`, the streams. */
static int start_coordinator(struct daemon *dm,
                             struct kcld_coordinator_opts *co)
{
  const struct kcld_config_streams *l = &dm->cfg->streams;
  struct kcld_coordinator_stream *v = NULL;
  int rc;
  if (l->len && !(v = calloc(l->len, sizeof(*v))))
    return KCLD_ENOMEM;
  for (size_t i = 0; i < l->len; i++)
    v[i] = (struct kcld_coordinator_stream){
      .stream = l->v[i].stream,
      .initial_position =
        (enum kcld_initial_position)l->v[i].starting_position};
  co->streams = v;
  co->n_streams = l->len;
  rc = kcld_coordinator_start(co, &dm->coord);
  free(v);
  return rc;
}

/* Compiles `filter` (checked at load already, so only memory can fail). */
static int open_filter(struct daemon *dm)
{
  const struct kcld_config_list *l = &dm->cfg->filter;
  struct kcld_filter_error e;
  int rc = 0;

  if (l->len == 0)
    return 0;
  if ((dm->filter = kcld_filter_new()) == NULL)
    return KCLD_ENOMEM;
  for (size_t i = 0; i < l->len && rc == 0; i++)
    rc = kcld_filter_add_text(dm->filter, l->items[i], strlen(l->items[i]),
                              &e);
  if (rc != 0) {
    kcld_log(KCLD_LOG_ERROR, "cannot compile the filter", "error",
             rc == KCLD_ECONFIG ? e.msg : kcld_strerror(rc), NULL);
    return rc;
  }
  kcld_log(KCLD_LOG_INFO, "filter on: records that match no pattern skip "
           "the handler",
           KCLD_LOG_UINT("patterns", kcld_filter_count(dm->filter)), NULL);
  return 0;
}

static int start_rest(struct daemon *dm);

/* Fan-out: a stream's consumer is ACTIVE (or could not be had); once
 * every stream's is, the rest starts.  Runs with KCLD_ECANCELED when the
 * run ends first. */
static void on_stream_consumer(const struct kcld_fanout_consumer *c,
                               void *arg)
{
  struct stream_consumer *sc = arg;
  struct daemon *dm = sc->dm;
  int rc = c->st.err;

  if (dm->phase != PHASE_STARTING)
    return;
  if (rc == 0 && strcmp(c->status, "ACTIVE") != 0)
    rc = KCLD_EAWS;
  if (rc != 0) {
    kcld_log(KCLD_LOG_ERROR, "start-up failed: no ACTIVE stream consumer "
             "for fetch.mode: fanout", "stream", sc->stream, "consumer",
             *dm->cfg->fetch.consumer_arn ? dm->cfg->fetch.consumer_arn
                                          : dm->cfg->fetch.consumer_name,
             "status", rc == KCLD_EAWS && c->status ? c->status : "",
             "type", c->st.type ? c->st.type : "", "error",
             kcld_strerror(rc), NULL);
    begin_shutdown(dm, rc);
    return;
  }
  kcld_log(KCLD_LOG_INFO, "stream consumer ACTIVE; fetching with enhanced "
           "fan-out", "stream", sc->stream, "consumer", c->name ? c->name
                                                             : "",
           "consumer_arn", c->arn, "registered",
           c->registered ? "true" : "false", NULL);
  if (!(sc->arn = strdup(c->arn)))
    rc = KCLD_ENOMEM;
  else if (++dm->consumers_active == dm->nconsumers)
    rc = start_rest(dm);
  if (rc != 0) {
    kcld_log(KCLD_LOG_ERROR, "start-up failed", "error", kcld_strerror(rc),
             NULL);
    begin_shutdown(dm, rc);
  }
}

/* fetch.mode: fanout: the consumer of fetch.consumer_arn (described; one
 * stream only, the config's rule), or fetch.consumer_name registered or
 * found on every stream, all at once, and waited for until ACTIVE.  Never
 * deregistered: the application's other workers use them too. */
static int find_stream_consumers(struct daemon *dm)
{
  const struct kcld_config *cfg = dm->cfg;
  const struct kcld_config_fetch *f = &cfg->fetch;
  size_t n = cfg->streams.len ? cfg->streams.len : 1;
  int rc = kcld_fanout_new(dm->aws, &dm->loop, &dm->fanout);
  if (rc != 0)
    return rc;
  if (!(dm->consumers = calloc(n, sizeof(*dm->consumers))))
    return KCLD_ENOMEM;
  dm->nconsumers = n;
  for (size_t i = 0; i < n; i++) {
    dm->consumers[i].dm = dm;
    dm->consumers[i].stream = cfg->streams.len ? cfg->streams.v[i].stream
                                               : cfg->stream;
  }
  if (*f->consumer_arn)
    return kcld_fanout_describe(dm->fanout, NULL, NULL, f->consumer_arn,
                                on_stream_consumer, &dm->consumers[0]);
  for (size_t i = 0; i < n && rc == 0; i++)
    rc = kcld_fanout_ensure(dm->fanout, dm->consumers[i].stream,
                            f->consumer_name, 0, on_stream_consumer,
                            &dm->consumers[i]);
  return rc;
}

static void on_identity(int err, const struct kcld_identity *id, void *arg);

/* The AWS clients, then the stream's ARN (start_engine follows). */
static int start_clients(struct daemon *dm)
{
  const struct kcld_config *cfg = dm->cfg;
  struct kcld_aws_opts ao;
  struct kcld_identity_opts io;
  int rc;

  kcld_config_aws_client(cfg, &dm->loop, dm->http, dm->creds, dm->region,
                         &ao);
  if ((rc = kcld_aws_new(&ao, &dm->aws)) != 0)
    return rc;
  if (dm->monitor)
    kcld_aws_set_observer(dm->aws, kcld_monitor_observe_aws, dm->monitor);
  if ((rc = kcld_kinesis_new(dm->aws, &dm->loop, &dm->kinesis)) != 0)
    return rc;
  if ((rc = kcld_sts_new(dm->aws, &dm->loop, &dm->sts)) != 0)
    return rc;
  memset(&io, 0, sizeof(io));
  io.kinesis = dm->kinesis;
  io.sts = dm->sts;
  /* streams: the first stream's answer gives the account for functionArn;
   * events carry no stream ARN yet (one per stream comes later). */
  io.stream = cfg->streams.len ? cfg->streams.v[0].stream : cfg->stream;
  io.region = dm->region;
  io.application = cfg->application;
  return kcld_identity_resolve(&io, on_identity, dm);
}

/* Once the stream's ARN is known: with fetch.mode: fanout the stream
 * consumer first (start_rest() once it is ACTIVE), else the rest. */
static int start_engine(struct daemon *dm)
{
  if (dm->cfg->fetch.mode == KCLD_CONFIG_FETCH_FANOUT)
    return find_stream_consumers(dm);
  return start_rest(dm);
}

/* The handler, the dead-letter queue, the dispatcher and the coordinator:
 * leases are taken from here on. */
static int start_rest(struct daemon *dm)
{
  const struct kcld_config *cfg = dm->cfg;
  struct kcld_coordinator_opts co;
  struct kcld_dispatcher_opts dop;
  struct kcld_handler_env env;
  int rc;

  memset(&env, 0, sizeof(env));
  env.loop = &dm->loop;
  env.cfg = cfg;
  env.aws = dm->aws;
  env.region = dm->region;
  env.stream_arn = dm->stream_arn;
  env.checkpoint = handler_checkpoint;
  env.checkpoint_ctx = dm;
  if ((rc = kcld_handler_new(&env, &dm->handler)) != 0)
    return rc;

  if ((rc = open_dlq(dm)) != 0 || (rc = open_filter(dm)) != 0)
    return rc;
  dispatcher_opts(dm, &dop);
  dop.filter = dm->filter;
  if ((rc = kcld_dispatcher_new(&dop, &dm->disp)) != 0)
    return rc;
  if (dm->monitor)
    kcld_dispatcher_set_observer(dm->disp, kcld_monitor_observe_handler,
                                 dm->monitor);

  memset(&co, 0, sizeof(co));
  co.loop = &dm->loop;
  co.aws = dm->aws;
  co.table = cfg->lease.table;
  co.stream = cfg->stream;
  co.worker_id = cfg->worker_id;
  co.failover_ms = (uint64_t)cfg->lease.failover_ms;
  co.take_interval_ms = (uint64_t)cfg->lease.take_interval_ms;
  co.shard_sync_interval_ms = (uint64_t)cfg->lease.shard_sync_interval_ms;
  co.cleanup_delay_ms = (uint64_t)cfg->lease.cleanup_delay_ms;
  co.max_leases = (unsigned)cfg->lease.max_leases;
  co.max_steal = (unsigned)cfg->lease.max_steal;
  co.initial_position = (enum kcld_initial_position)cfg->starting_position;
  co.initial_timestamp_ms = cfg->starting_timestamp_ms;
  co.cbs.ready = on_ready;
  co.cbs.acquired = on_acquired;
  co.cbs.lost = on_lost;
  co.cbs.arg = dm;
  return start_coordinator(dm, &co);
}

static void on_identity(int err, const struct kcld_identity *id, void *arg)
{
  struct daemon *dm = arg;

  if (dm->phase != PHASE_STARTING)
    return; /* shutting down (the clients were closed: KCLD_ECANCELED) */
  if (err == 0) {
    dm->stream_arn = strdup(dm->cfg->streams.len ? "" : id->stream_arn);
    dm->function_arn = strdup(id->function_arn);
    if (!dm->stream_arn || !dm->function_arn)
      err = KCLD_ENOMEM;
  }
  if (err == 0)
    err = start_engine(dm);
  if (err != 0) {
    kcld_log(KCLD_LOG_ERROR, "start-up failed", "error", kcld_strerror(err),
             NULL);
    begin_shutdown(dm, err);
  }
}

static void with_region(struct daemon *dm)
{
  int rc;
  /* application and worker are on every line (kcld_log_set_context). */
  kcld_log(KCLD_LOG_INFO, "starting", "stream", opt(dm->cfg->stream),
           "region", dm->region, NULL);
  rc = start_clients(dm);
  if (rc != 0) {
    kcld_log(KCLD_LOG_ERROR, "start-up failed", "error", kcld_strerror(rc),
             NULL);
    begin_shutdown(dm, rc);
  }
}

static void on_imds_region(int err, const char *region, void *arg)
{
  struct daemon *dm = arg;
  if (dm->phase != PHASE_STARTING)
    return;
  if (err || !region || !(dm->region = strdup(region))) {
    kcld_log(KCLD_LOG_ERROR, "no region: set `region` in the config, or "
             "AWS_REGION", "error", kcld_strerror(err ? err : KCLD_ENOMEM),
             NULL);
    begin_shutdown(dm, KCLD_ECONFIG);
    return;
  }
  with_region(dm);
}

/* The metrics server and EMF file.  A metrics.listen that cannot be bound
 * (port taken, no such address) is a start-up error: running without the
 * /healthz that the operator asked for would hide failures. */
static int start_monitor(struct daemon *dm)
{
  const struct kcld_config *cfg = dm->cfg;
  struct kcld_monitor_opts mo;
  int rc;

  if (!*cfg->metrics.listen && !*cfg->metrics.emf)
    return 0;
  memset(&mo, 0, sizeof(mo));
  mo.loop = &dm->loop;
  mo.listen = cfg->metrics.listen;
  mo.emf_path = cfg->metrics.emf;
  mo.walk = monitor_walk;
  mo.arg = dm;
  rc = kcld_monitor_start(&mo, &dm->monitor);
  if (rc != 0) {
    dm->monitor = NULL;
    kcld_log(KCLD_LOG_ERROR, "start-up failed: cannot serve metrics.listen; "
             "free the port, choose another, or set metrics.listen: \"\" to "
             "run without /metrics and /healthz", "listen",
             cfg->metrics.listen, "error", kcld_strerror(rc), NULL);
  }
  return rc;
}

static int start_stall(struct daemon *dm)
{
  struct kcld_stall_opts so = {
    .loop = &dm->loop,
    .stuck_ms = (uint64_t)live(dm)->metrics.stuck_after_ms,
    .grace_ms = (uint64_t)live(dm)->batch.window_ms,
    .walk = stall_walk,
    .arg = dm};
  return kcld_stall_start(&so, &dm->stall);
}

static int open_base(struct daemon *dm)
{
  const struct kcld_config *cfg = dm->cfg;
  struct kcld_http_opts ho;
  struct kcld_credentials_opts cro;
  int rc;

  kcld_config_aws_http(cfg, &ho);
  if ((rc = kcld_http_new(&dm->loop, &ho, &dm->http)) != 0)
    return rc;
  kcld_config_aws_credentials(cfg, &dm->loop, dm->http, &cro);
  return kcld_credentials_new(&cro, &dm->creds);
}

int kcld_daemon_run(const struct kcld_daemon_opts *opts)
{
  const struct kcld_config *cfg = opts->cfg;
  struct daemon dm;
  int rc;

  memset(&dm, 0, sizeof(dm));
  dm.opts = opts;
  dm.cfg = cfg;
  kcld_log_set_context(cfg->application, cfg->worker_id);
  json_object_seed(0); /* before any pool thread parses JSON */
  unsigned pool = kcld_pool_init((unsigned)cfg->workers);
  signal(SIGPIPE, SIG_IGN);
  if ((rc = kcld_http_global_init()) != 0)
    return rc;
  if ((rc = uv_loop_init(&dm.loop)) != 0) {
    kcld_log(KCLD_LOG_ERROR, "cannot create the event loop", "error",
             uv_strerror(rc), NULL);
    kcld_http_global_cleanup();
    return KCLD_EIO;
  }
  struct kcld_fetch_budget_opts bo = {
    .loop = &dm.loop,
    .max_total_bytes = (size_t)cfg->fetch.max_total_buffered_bytes,
    .parse_slots = pool};
  if ((rc = kcld_fetch_budget_new(&bo, &dm.budget)) != 0) {
    uv_loop_close(&dm.loop);
    kcld_http_global_cleanup();
    return rc;
  }
  if (kcld_notify_new(&dm.notify, true) != 0)
    dm.notify = NULL; /* logged; run without systemd notifications */
  for (int i = 0; i < NSIGS; i++) {
    uv_signal_init(&dm.loop, &dm.sig[i]);
    dm.sig[i].data = &dm;
    uv_signal_start(&dm.sig[i], on_signal, s_signums[i]);
  }
  uv_timer_init(&dm.loop, &dm.status);
  dm.status.data = &dm;
  uv_timer_init(&dm.loop, &dm.deadline);
  dm.deadline.data = &dm;
  uv_unref((uv_handle_t *)&dm.deadline);
  uv_timer_start(&dm.status, on_status_timer, STATUS_INTERVAL_MS,
                 STATUS_INTERVAL_MS);
  uv_unref((uv_handle_t *)&dm.status);
  kcld_notify_watchdog_start(dm.notify, &dm.loop);
  rc = start_monitor(&dm);
  if (rc == 0)
    rc = start_stall(&dm);
  if (rc == 0)
    rc = open_base(&dm);
  if (rc == 0) {
    dm.region = kcld_region_from_env(opt(cfg->region),
                                     opt(cfg->credentials.profile));
    if (dm.region) {
      with_region(&dm);
    } else {
      rc = kcld_region_from_imds(&dm.loop, dm.http, NULL, on_imds_region, &dm);
      if (rc != 0)
        kcld_log(KCLD_LOG_ERROR, "no region: set `region` in the config, or "
                 "AWS_REGION", NULL);
    }
  } else {
    kcld_log(KCLD_LOG_ERROR, "start-up failed", "error", kcld_strerror(rc),
             NULL);
  }
  if (rc != 0)
    begin_shutdown(&dm, rc);

  uv_run(&dm.loop, UV_RUN_DEFAULT);
  if (dm.immediate) /* main exits without cleaning up */
    return KCLD_ECANCELED;
  uv_timer_stop(&dm.deadline);
  uv_close((uv_handle_t *)&dm.deadline, NULL);
  /* A close callback or two may be left: run the loop dry, then close. */
  uv_run(&dm.loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&dm.loop) != 0)
    kcld_log(KCLD_LOG_WARN, "event loop closed with handles open", NULL);
  kcld_http_global_cleanup();
  kcld_filter_free(dm.filter); /* after the dispatcher that borrowed it */
  free(dm.region);
  free(dm.stream_arn);
  free(dm.function_arn);
  kcld_config_free(dm.reloaded);
  for (size_t i = 0; i < dm.nconsumers; i++)
    free(dm.consumers[i].arn);
  free(dm.consumers);
  kcld_log_flush(1);
  kcld_log(KCLD_LOG_INFO, "stopped", NULL);
  return dm.rc;
}
