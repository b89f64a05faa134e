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
#include "process/pipeline.h"
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
  size_t slot;          /* its stream: dm->slots[slot] */
};

/* A stream kcld consumes: with `streams:` one per item (those added by a
 * reload appended), else the one `stream`. */
struct stream_slot {
  const struct kcld_config *cfg; /* its configuration as started */
  const char *name;             /* name or ARN, as configured */
  enum kcld_config_position pos;
  int64_t timestamp_ms;         /* starting_timestamp; -1 = none */
  char *arn;                    /* resolved; "" when unknown; NULL = not
                                   yet */
  struct kcld_pipeline *pipe;   /* NULL until built */
  int coord_idx;                /* its index in the coordinator; -1 = not
                                   added yet */
  int removed;                  /* gone from the list (a reload) */
  char *consumer_arn;           /* fanout: its ACTIVE stream consumer */
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
  struct kcld_config **kept;      /* reloaded files whose added streams run:
                                     freed at the end (nkept) */
  size_t nkept;
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
  struct stream_slot *slots;   /* n_streams: every stream's ARN and
                                  pipeline */
  size_t n_streams;
  size_t resolving;            /* the slot whose ARN is being resolved */
  int resolving_busy;          /* a resolution is under way */
  char *function_arn;          /* the on-failure records' functionArn */
  struct kcld_fanout *fanout;  /* fetch.mode: fanout only */
  struct kcld_coordinator *coord;
  struct kcld_notify *notify;
  struct kcld_monitor *monitor; /* metrics.listen / metrics.emf */
  struct kcld_stall *stall;     /* stalled shards: log, gauge, /healthz */
  struct kcld_fetch_budget *budget; /* fetch.max_total_buffered_bytes */
  struct shard *shards;
  size_t nshards;
};

static void begin_shutdown(struct daemon *dm, int rc);
static int resolve_identity(struct daemon *dm);

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

/* Stream i's configuration in `c` (with `streams:`, the top-level keys
 * with the item's overrides). */
static const struct kcld_config *stream_cfg(const struct kcld_config *c,
                                            size_t i)
{
  return c->streams.len && c->streams.v[i].cfg ? c->streams.v[i].cfg : c;
}

/* The configuration in `c` of stream dm->slots[i] (its item of the same
 * name); NULL when `c` lists no such stream. */
static const struct kcld_config *same_stream(const struct daemon *dm,
                                             const struct kcld_config *c,
                                             size_t i)
{
  if (!dm->cfg->streams.len)
    return c;
  for (size_t j = 0; j < c->streams.len; j++)
    if (strcmp(c->streams.v[j].stream, dm->slots[i].name) == 0)
      return stream_cfg(c, j);
  return NULL;
}

/* A slot for stream j of `c` (with `streams:` its item j, else `stream`),
 * its ARN not yet resolved nor its leases taken. */
static struct stream_slot new_slot(const struct kcld_config *c, size_t j)
{
  const struct kcld_config_stream *it =
    c->streams.len ? &c->streams.v[j] : NULL;
  return (struct stream_slot){
    .cfg = stream_cfg(c, j),
    .name = it ? it->stream : c->stream,
    .pos = it ? it->starting_position : c->starting_position,
    .timestamp_ms = it ? it->starting_timestamp_ms : c->starting_timestamp_ms,
    .coord_idx = -1};
}

/* Where stream i's live keys are read: its item of the last reloaded file
 * (the top-level keys of that file when the item is gone from it), else
 * the configuration kcld started with. */
static const struct kcld_config *live_stream_cfg(const struct daemon *dm,
                                                 size_t i)
{
  const struct kcld_config *c = same_stream(dm, live(dm), i);
  return c ? c : live(dm);
}

/* The handler of shard s's stream. */
static struct kcld_handler *shard_handler(const struct daemon *dm,
                                          const struct shard *s)
{
  return kcld_pipeline_handler(dm->slots[s->slot].pipe);
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

/* The slot of the coordinator's stream index ci; -1 when none. */
static int slot_of(const struct daemon *dm, int ci)
{
  for (size_t i = 0; ci >= 0 && i < dm->n_streams; i++)
    if (dm->slots[i].coord_idx == ci && !dm->slots[i].removed)
      return (int)i;
  return -1;
}

/* A lease of a removed stream given up (kcld_coordinator_release). */
static void on_given_up(int err, void *arg)
{
  (void)arg;
  if (err != 0 && err != KCLD_ECANCELED)
    kcld_log(KCLD_LOG_WARN, "a lease of a removed stream could not be "
             "released; it expires after the failover time", "error",
             kcld_strerror(err), NULL);
}

static void on_acquired(const struct kcld_lease *lease, void *arg)
{
  struct daemon *dm = arg;
  const struct kcld_config *cfg = dm->cfg;
  struct kcld_shard_consumer_opts o;
  struct shard *s;
  int rc, si = slot_of(dm, kcld_coordinator_stream_index(dm->coord, lease));

  if (dm->phase != PHASE_RUNNING && dm->phase != PHASE_STARTING)
    return; /* shutting down: the lease is released with the others */
  if (si < 0) { /* its stream was removed since the take was answered */
    kcld_coordinator_release(dm->coord, lease->shard_id, on_given_up, dm);
    return;
  }
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
  o.consumer_arn = dm->slots[si].consumer_arn;
  o.coordinator = dm->coord;
  o.stream = dm->slots[si].name;
  o.lease = lease;
  o.initial_timestamp_ms = dm->slots[si].timestamp_ms;
  o.max_records = live(dm)->fetch.max_records;
  o.idle_ms = (uint64_t)live(dm)->fetch.idle_time_ms;
  o.max_buffered_bytes = (size_t)cfg->fetch.max_buffered_bytes;
  o.budget = dm->budget;
  o.checkpoint_interval_ms = (uint64_t)cfg->checkpoint.interval_ms;
  o.sink =
    kcld_dispatcher_sink(kcld_pipeline_dispatcher(dm->slots[si].pipe));
  o.finished = on_consumer_finished;
  o.arg = dm;
  rc = kcld_shard_consumer_start(&o, &s->consumer);
  if (rc != 0) {
    kcld_log(KCLD_LOG_ERROR, "cannot start the shard consumer", "shard",
             lease->shard_id, "error", kcld_strerror(rc), NULL);
    free(s);
    return;
  }
  s->slot = (size_t)si;
  s->next = dm->shards;
  dm->shards = s;
  dm->nshards++;
  size_connections(dm);
  struct kcld_handler *h = shard_handler(dm, s);
  if (h->ops->shard_started)
    h->ops->shard_started(h, lease->shard_id, lease->checkpoint,
                          lease->checkpoint_sub);
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
  if (p) {
    struct kcld_handler *h = shard_handler(dm, *p);
    if (h->ops->shard_stopped)
      h->ops->shard_stopped(h, shard_id, why[how]);
    if (dm->slots[(*p)->slot].removed && how == KCLD_SHARD_CONSUMER_STOPPED &&
        dm->phase == PHASE_RUNNING) /* its checkpoint is flushed */
      kcld_coordinator_release(dm->coord, shard_id, on_given_up, dm);
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
static void dispatcher_hold(const struct daemon *dm, const struct shard *s,
                            const char *shard_id,
                            struct kcld_dispatcher_shard_state *st,
                            struct kcld_stall_hold *out)
{
  const struct kcld_dispatcher *d =
    kcld_pipeline_dispatcher(dm->slots[s->slot].pipe);
  out->reason = NULL;
  out->error = NULL;
  if (!d)
    return;
  kcld_dispatcher_shard_state(d, shard_id, st);
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
    dispatcher_hold(dm, s, id, &ds, &hold);
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

/* Every stream's dispatcher counters, summed into *st. */
static void dispatcher_stats(const struct daemon *dm,
                             struct kcld_dispatcher_stats *st)
{
  memset(st, 0, sizeof(*st));
  for (size_t i = 0; i < dm->n_streams; i++)
    if (dm->slots[i].pipe)
      kcld_pipeline_add_stats(dm->slots[i].pipe, st);
}

/* What /metrics and /healthz read, at scrape time. */
static void monitor_walk(void *arg, struct kcld_monitor_visit *v)
{
  struct daemon *dm = arg;
  struct kcld_dispatcher_stats st;
  for (struct shard *s = dm->shards; s; s = s->next) {
    kcld_monitor_visit_shard(v, s->consumer);
  }
  kcld_stall_each(dm->stall, on_stalled, v);
  if (dm->n_streams) {
    dispatcher_stats(dm, &st);
    kcld_monitor_visit_dispatcher(v, &st);
  }
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
  for (size_t i = 0; i < dm->n_streams; i++) {
    struct kcld_dispatcher *d = kcld_pipeline_dispatcher(dm->slots[i].pipe);
    if (d)
      kcld_dispatcher_set_observer(d, NULL, NULL);
  }
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
  for (size_t i = 0; i < dm->n_streams; i++)
    kcld_pipeline_close(dm->slots[i].pipe);
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
  if (dm->n_streams && !dm->handler_killed) {
    kcld_log(KCLD_LOG_WARN, "killing the handler's work in flight", "reason",
             why, NULL);
    dm->handler_killed = 1;
    for (size_t i = 0; i < dm->n_streams; i++)
      if (dm->slots[i].pipe)
        kcld_pipeline_kill(dm->slots[i].pipe);
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
  dispatcher_stats(dm, &st);
  if (st.in_flight > 0) {
    uv_ref((uv_handle_t *)&dm->status);
    uv_timer_start(&dm->status, on_status_timer, DRAIN_POLL_MS, 0);
    return;
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
    for (struct shard *s = dm->shards; s; s = s->next)
      kcld_shard_consumer_log_wait(s->consumer);
    kcld_aws_log_calls(dm->aws);
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
  for (size_t i = 0; i < dm->n_streams; i++)
    if (dm->slots[i].pipe) /* no waiting for batch.window now */
      kcld_pipeline_flush(dm->slots[i].pipe);
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
  dispatcher_stats(dm, &st);
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

/* The change in ch[0..n-1] to `key`, marked as needing a restart (turning
 * on_failure.block off needs the destination only a start opens; the
 * streams of a single-stream kcld, or of one not running yet, are fixed). */
static void needs_restart(struct kcld_config_change *ch, int n,
                          const char *key)
{
  for (int i = 0; i < n; i++)
    if (strcmp(ch[i].key, key) == 0)
      ch[i].live = false;
}

/* Whether the list of streams may change now (a running `streams:` kcld,
 * and `next` has `streams:` too). */
static bool streams_live(const struct daemon *dm,
                         const struct kcld_config *next)
{
  return dm->cfg->streams.len && next->streams.len && dm->coord &&
         dm->phase == PHASE_RUNNING;
}

/* A stream gone from the list: no more leases taken; its consumers stop
 * (their checkpoints flushed), then their leases are released
 * (on_consumer_finished), not deleted. */
static void remove_slot(struct daemon *dm, size_t i)
{
  struct stream_slot *sl = &dm->slots[i];
  size_t n = 0;
  sl->removed = 1;
  if (sl->coord_idx >= 0)
    kcld_coordinator_remove_stream(dm->coord, (size_t)sl->coord_idx);
  for (struct shard *s = dm->shards; s; s = s->next)
    if (s->slot == i) {
      kcld_shard_consumer_stop(s->consumer,
                               (uint64_t)dm->cfg->shutdown_timeout_ms);
      n++;
    }
  if (sl->pipe)
    kcld_pipeline_flush(sl->pipe);
  kcld_log(KCLD_LOG_INFO, "stream removed from the configuration: its "
           "consumers stop and its leases are released", "stream", sl->name,
           KCLD_LOG_UINT("shards", n), NULL);
}

/* Adds slots for the streams of `next` that run nowhere here and removes
 * those it does not list.  Returns 1 when a slot was added (it points into
 * `next`, which must then be kept), 0, or KCLD_ENOMEM. */
static int apply_streams(struct daemon *dm, const struct kcld_config *next)
{
  const struct kcld_config_streams *l = &next->streams;
  int added = 0;
  for (size_t i = 0; i < dm->n_streams; i++)
    if (!dm->slots[i].removed && !same_stream(dm, next, i))
      remove_slot(dm, i);
  for (size_t j = 0; j < l->len; j++) {
    size_t i = 0;
    while (i < dm->n_streams && (dm->slots[i].removed ||
                                 strcmp(dm->slots[i].name, l->v[j].stream)))
      i++;
    if (i < dm->n_streams)
      continue; /* runs already */
    struct stream_slot *v =
      realloc(dm->slots, (dm->n_streams + 1) * sizeof(*v));
    if (!v)
      return KCLD_ENOMEM;
    dm->slots = v;
    v[dm->n_streams++] = new_slot(next, j);
    kcld_log(KCLD_LOG_INFO, "stream added to the configuration: resolving "
             "its ARN, then taking its leases", "stream", l->v[j].stream,
             NULL);
    added = 1;
  }
  if (added && !dm->resolving_busy) {
    dm->resolving = 0;
    int rc = resolve_identity(dm);
    dm->resolving_busy = rc == 0;
    if (rc < 0)
      kcld_log(KCLD_LOG_ERROR, "cannot resolve an added stream", "error",
               kcld_strerror(rc), NULL);
  }
  return added;
}

/* dm->reloaded replaced by next; a file whose streams run stays (kept). */
static int take_reloaded(struct daemon *dm, struct kcld_config *next,
                         bool keep)
{
  bool kept = false;
  for (size_t i = 0; i < dm->nkept; i++)
    kept |= dm->kept[i] == dm->reloaded;
  if (!kept)
    kcld_config_free(dm->reloaded);
  dm->reloaded = next;
  if (!keep)
    return 0;
  struct kcld_config **v = realloc(dm->kept, (dm->nkept + 1) * sizeof(*v));
  if (!v)
    return KCLD_ENOMEM;
  dm->kept = v;
  v[dm->nkept++] = next;
  return 0;
}

/* Whether `next` turns on_failure.block off for a stream that has no
 * destination (only a start opens one) nor discard. */
static bool block_off_needs_restart(const struct daemon *dm,
                                    const struct kcld_config *next)
{
  for (size_t i = 0; i < dm->n_streams; i++) {
    const struct kcld_config *c = same_stream(dm, next, i);
    if (c && !c->on_failure.block && dm->slots[i].pipe &&
        kcld_pipeline_must_block(dm->slots[i].pipe, c))
      return true;
  }
  return false;
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

/* Names, one warning per stream, the keys of a stream's own configuration
 * (its item's overrides) that changed in `next` and need a restart,
 * beyond the top-level ones of later[0..nlater-1]. */
static void warn_stream_restart(const struct daemon *dm,
                                const struct kcld_config *next,
                                const struct kcld_config_change *later,
                                int nlater)
{
  static const char *const own[] = {"stream", "streams", "starting_position",
                                    "starting_timestamp", NULL};
  for (size_t i = 0; i < dm->n_streams; i++) {
    const struct kcld_config *c = same_stream(dm, next, i);
    struct kcld_config_change *ch = NULL;
    char keys[1024];
    int n;
    if (dm->slots[i].removed || !c ||
        (c == next && dm->slots[i].cfg == dm->cfg))
      continue; /* no item overrides anything: the top-level keys say */
    if ((n = kcld_config_diff(dm->slots[i].cfg, c, &ch)) <= 0)
      continue;
    for (int k = 0; k < n; k++) {
      for (int j = 0; j < nlater; j++)
        ch[k].live |= strcmp(ch[k].key, later[j].key) == 0;
      for (size_t j = 0; own[j]; j++)
        ch[k].live |= strcmp(ch[k].key, own[j]) == 0;
    }
    if (key_list(ch, n, false, keys, sizeof(keys)) > 0)
      kcld_log(KCLD_LOG_WARN, "a stream's keys changed that need a restart; "
               "they keep their running values until then", "stream",
               dm->slots[i].name, "keys", keys, NULL);
    free(ch);
  }
}

/* Gives the modules the live keys' values of live(dm): the log, the
 * dispatcher (next batch), every shard consumer (next fetch), the stall
 * detector (next check). */
static void apply_live(struct daemon *dm, bool log_changed)
{
  const struct kcld_config *l = live(dm);
  if (log_changed)
    kcld_log_setup(kcld_log_level_lower(l->log.level, dm->opts->verbose),
                   l->log.format, NULL);
  int refused = 0;
  for (size_t i = 0; i < dm->n_streams; i++)
    if (dm->slots[i].pipe && !dm->slots[i].removed)
      refused |= kcld_pipeline_configure(dm->slots[i].pipe,
                                         live_stream_cfg(dm, i)) != 0;
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
  if (block_off_needs_restart(dm, next)) {
    needs_restart(now, n, "on_failure.block");
    needs_restart(later, nlater, "on_failure.block");
  }
  if (!streams_live(dm, next)) {
    needs_restart(now, n, "streams");
    needs_restart(later, nlater, "streams");
  }
  for (int i = 0; i < n; i++)
    log_changed |= now[i].live && strncmp(now[i].key, "log.", 4) == 0;
  key_list(now, n, true, applied, sizeof(applied));
  if (dm->cfg->streams.len && next->streams.len)
    warn_stream_restart(dm, next, later, nlater);
  rc = streams_live(dm, next) ? apply_streams(dm, next) : 0;
  if (rc < 0 || take_reloaded(dm, next, rc == 1) != 0) {
    /* Added slots point into next: it is kept (leaked) rather than freed. */
    kcld_log(KCLD_LOG_ERROR, "reload: out of memory", NULL);
    next = NULL;
    goto done;
  }
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

/* Starts the coordinator with `co` and, for `streams:`, the streams. */
static int start_coordinator(struct daemon *dm,
                             struct kcld_coordinator_opts *co)
{
  size_t n = dm->cfg->streams.len ? dm->n_streams : 0;
  struct kcld_coordinator_stream *v = NULL;
  int rc;
  if (n && !(v = calloc(n, sizeof(*v))))
    return KCLD_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    v[i] = (struct kcld_coordinator_stream){
      .stream = dm->slots[i].name,
      .initial_position = (enum kcld_initial_position)dm->slots[i].pos};
    dm->slots[i].coord_idx = (int)i;
  }
  co->streams = v;
  co->n_streams = n;
  rc = kcld_coordinator_start(co, &dm->coord);
  free(v);
  return rc;
}

static int start_rest(struct daemon *dm);
static void start_added(struct daemon *dm, size_t i);
static int find_stream_consumer(struct daemon *dm, size_t i);

/* Fan-out start-up: whether every stream has its ACTIVE consumer. */
static bool consumers_ready(const struct daemon *dm)
{
  for (size_t i = 0; i < dm->n_streams; i++)
    if (!dm->slots[i].consumer_arn)
      return false;
  return true;
}

/* A stream a reload added that cannot be started: logged and dropped;
 * the other streams go on. */
static void drop_added(struct daemon *dm, size_t i, int rc)
{
  kcld_log(KCLD_LOG_ERROR, "cannot start consuming an added stream; "
           "restart kcld to consume it", "stream", dm->slots[i].name,
           "error", kcld_strerror(rc), NULL);
  dm->slots[i].removed = 1;
}

/* A stream consumer being looked up for slot `slot` (slots move when a
 * reload adds some, so the index, not a pointer). */
struct consumer_req {
  struct daemon *dm;
  size_t slot;
};

/* Fan-out: slot's consumer is ACTIVE, or could not be had.  At start-up,
 * once every stream's is, the rest starts; for a stream a reload added,
 * its pipeline and leases.  A transient failure (the lookup's own retries
 * ran out of time) is looked up again, as long as it takes; any other ends
 * start-up, or drops the added stream.  KCLD_ECANCELED: the run ended. */
static void on_stream_consumer(const struct kcld_fanout_consumer *c,
                               void *arg)
{
  struct consumer_req *req = arg;
  struct daemon *dm = req->dm;
  size_t i = req->slot;
  int rc = c->st.err, starting = dm->phase == PHASE_STARTING;
  struct stream_slot *sl = &dm->slots[i];

  free(req);
  if ((!starting && dm->phase != PHASE_RUNNING) || rc == KCLD_ECANCELED ||
      sl->removed)
    return;
  if (rc == 0 && strcmp(c->status, "ACTIVE") != 0)
    rc = KCLD_EAWS;
  if (rc != 0 && kcld_svc_transient(&c->st)) {
    kcld_log(KCLD_LOG_WARN, "start-up waits: a transient failure; trying "
             "again", "step", "stream consumer", "stream", sl->name,
             "error", c->st.message[0] ? c->st.message : kcld_strerror(rc),
             NULL);
    rc = find_stream_consumer(dm, i);
  } else if (rc != 0) {
    kcld_log(KCLD_LOG_ERROR, starting ? "start-up failed: no ACTIVE stream "
             "consumer for fetch.mode: fanout" : "no ACTIVE stream consumer "
             "for fetch.mode: fanout", "stream", sl->name, "consumer",
             *dm->cfg->fetch.consumer_arn ? dm->cfg->fetch.consumer_arn
                                          : dm->cfg->fetch.consumer_name,
             "status", rc == KCLD_EAWS && c->status ? c->status : "",
             "type", c->st.type ? c->st.type : "", "error",
             kcld_strerror(rc), NULL);
    if (starting) {
      begin_shutdown(dm, rc);
      return;
    }
  } else {
    kcld_log(KCLD_LOG_INFO, "stream consumer ACTIVE; fetching with "
             "enhanced fan-out", "stream", sl->name, "consumer",
             c->name ? c->name : "", "consumer_arn", c->arn, "registered",
             c->registered ? "true" : "false", NULL);
    if (!(sl->consumer_arn = strdup(c->arn)))
      rc = KCLD_ENOMEM;
    else if (!starting)
      start_added(dm, i);
    else if (consumers_ready(dm))
      rc = start_rest(dm);
  }
  if (rc == 0)
    return;
  if (!starting) {
    drop_added(dm, i, rc);
    return;
  }
  kcld_log(KCLD_LOG_ERROR, "start-up failed", "error", kcld_strerror(rc),
           NULL);
  begin_shutdown(dm, rc);
}

/* fetch.mode: fanout: slot i's consumer: that of fetch.consumer_arn
 * (described; one stream only, the config's rule), or fetch.consumer_name
 * registered or found on the stream; waited for until ACTIVE
 * (on_stream_consumer follows).  Never deregistered: the application's
 * other workers use them too. */
static int find_stream_consumer(struct daemon *dm, size_t i)
{
  const struct kcld_config_fetch *f = &dm->cfg->fetch;
  struct consumer_req *req = malloc(sizeof(*req));
  int rc;
  if (!req)
    return KCLD_ENOMEM;
  *req = (struct consumer_req){dm, i};
  rc = *f->consumer_arn
         ? kcld_fanout_await(dm->fanout, f->consumer_arn, 0,
                             on_stream_consumer, req)
         : kcld_fanout_ensure(dm->fanout, dm->slots[i].name,
                              f->consumer_name, 0, on_stream_consumer, req);
  if (rc != 0)
    free(req);
  return rc;
}

/* Every stream's consumer, all at once. */
static int find_stream_consumers(struct daemon *dm)
{
  int rc = kcld_fanout_new(dm->aws, &dm->loop, &dm->fanout);
  for (size_t i = 0; i < dm->n_streams && rc == 0; i++)
    rc = find_stream_consumer(dm, i);
  return rc;
}

static void on_identity(int err, const struct kcld_identity *id, void *arg);

/* Resolves the ARN of the next stream that has none from dm->resolving
 * on (on_identity follows); returns 1 when there is none left. */
static int resolve_identity(struct daemon *dm)
{
  while (dm->resolving < dm->n_streams &&
         (dm->slots[dm->resolving].arn || dm->slots[dm->resolving].removed))
    dm->resolving++;
  if (dm->resolving == dm->n_streams)
    return 1;
  struct kcld_identity_opts io = {
    .kinesis = dm->kinesis,
    .sts = dm->sts,
    .stream = dm->slots[dm->resolving].name,
    .region = dm->region,
    .application = dm->cfg->application};
  return kcld_identity_resolve(&io, on_identity, dm);
}

/* The AWS clients, then each stream's ARN in turn (start_engine
 * follows). */
static int start_clients(struct daemon *dm)
{
  const struct kcld_config *cfg = dm->cfg;
  struct kcld_aws_opts ao;
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
  dm->resolving = 0;
  return resolve_identity(dm); /* never 1: there is a stream */
}

/* Once the stream's ARN is known: with fetch.mode: fanout the stream
 * consumer first (start_rest() once it is ACTIVE), else the rest. */
static int start_engine(struct daemon *dm)
{
  if (dm->cfg->fetch.mode == KCLD_CONFIG_FETCH_FANOUT)
    return find_stream_consumers(dm);
  return start_rest(dm);
}

/* Stream i's pipeline: its handler, destination, filter, dispatcher. */
static int open_pipeline(struct daemon *dm, size_t i)
{
  struct kcld_pipeline_opts po = {
    .loop = &dm->loop,
    .aws = dm->aws,
    .cfg = dm->slots[i].cfg,
    .live = live_stream_cfg(dm, i),
    .region = dm->region,
    .stream_arn = dm->slots[i].arn,
    .function_arn = dm->function_arn,
    .checkpoint = handler_checkpoint,
    .checkpoint_ctx = dm,
    .observer = dm->monitor ? kcld_monitor_observe_handler : NULL,
    .observer_arg = dm->monitor};
  if (dm->cfg->streams.len)
    kcld_log(KCLD_LOG_INFO, "stream pipeline", "stream", dm->slots[i].name,
             "stream_arn", dm->slots[i].arn, NULL);
  return kcld_pipeline_new(&po, &dm->slots[i].pipe);
}

/* Every stream's pipeline, then the coordinator: leases are taken from
 * here on. */
static int start_rest(struct daemon *dm)
{
  const struct kcld_config *cfg = dm->cfg;
  struct kcld_coordinator_opts co;
  int rc;

  for (size_t i = 0; i < dm->n_streams; i++)
    if ((rc = open_pipeline(dm, i)) != 0)
      return rc;

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

/* A stream added by a reload has its ARN: with fetch.mode: fanout its
 * stream consumer first (on_stream_consumer comes back here), then its
 * pipeline, then its leases (the coordinator identifies and syncs it).  A
 * failure is logged; the other streams go on. */
static void start_added(struct daemon *dm, size_t i)
{
  struct stream_slot *sl = &dm->slots[i];
  struct kcld_coordinator_stream cs = {
    .stream = sl->name,
    .initial_position = (enum kcld_initial_position)sl->pos};
  int rc = 0;
  if (dm->fanout && !sl->consumer_arn && (rc = find_stream_consumer(dm, i))
      == 0)
    return;
  if (rc == 0)
    rc = open_pipeline(dm, i);
  if (rc == 0 && (rc = kcld_coordinator_add_stream(dm->coord, &cs)) >= 0) {
    sl->coord_idx = rc;
    return;
  }
  drop_added(dm, i, rc);
}

static void on_identity(int err, const struct kcld_identity *id, void *arg)
{
  struct daemon *dm = arg;
  struct stream_slot *sl = &dm->slots[dm->resolving];
  int starting = dm->phase == PHASE_STARTING;

  if (!starting && dm->phase != PHASE_RUNNING)
    return; /* shutting down (the clients were closed: KCLD_ECANCELED) */
  if (err == 0) {
    /* The first stream's answer gives the account of functionArn. */
    if (!(sl->arn = strdup(id->stream_arn)) ||
        (!dm->function_arn && !(dm->function_arn = strdup(id->function_arn))))
      err = KCLD_ENOMEM;
  }
  if (err == 0 && !starting && !sl->removed)
    start_added(dm, dm->resolving);
  if (err == 0 && (err = resolve_identity(dm)) == 1)
    err = starting ? start_engine(dm) : 0; /* none left */
  dm->resolving_busy = err == 0 && dm->resolving < dm->n_streams;
  if (err != 0) {
    kcld_log(KCLD_LOG_ERROR, starting ? "start-up failed"
                                      : "cannot resolve an added stream",
             "error", kcld_strerror(err), NULL);
    if (starting)
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

/* A slot per stream: the items of `streams:`, or `stream`. */
static int alloc_streams(struct daemon *dm)
{
  const struct kcld_config *cfg = dm->cfg;
  size_t n = cfg->streams.len ? cfg->streams.len : 1;
  if (!(dm->slots = calloc(n, sizeof(*dm->slots))))
    return KCLD_ENOMEM;
  dm->n_streams = n;
  for (size_t i = 0; i < n; i++)
    dm->slots[i] = new_slot(cfg, i);
  if (!cfg->streams.len)
    dm->slots[0].coord_idx = 0; /* the coordinator's one stream */
  return 0;
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
  rc = alloc_streams(&dm);
  if (rc == 0)
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
  for (size_t i = 0; i < dm.n_streams; i++) {
    kcld_pipeline_free(dm.slots[i].pipe);
    free(dm.slots[i].arn);
    free(dm.slots[i].consumer_arn);
  }
  free(dm.slots);
  for (size_t i = 0; i < dm.nkept; i++)
    if (dm.kept[i] != dm.reloaded)
      kcld_config_free(dm.kept[i]);
  free(dm.kept);
  free(dm.region);
  free(dm.function_arn);
  kcld_config_free(dm.reloaded);
  kcld_log_flush(1);
  kcld_log(KCLD_LOG_INFO, "stopped", NULL);
  return dm.rc;
}
