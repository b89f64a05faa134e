/* pipeline.c — one stream's handler, filter, failure destination and
 * dispatcher (see pipeline.h). */
#include "process/pipeline.h"

#include <stdlib.h>
#include <string.h>

#include "aws/s3.h"
#include "aws/sqs.h"
#include "err.h"
#include "log.h"
#include "process/dlq.h"
#include "process/dlq_dir.h"
#include "process/dlq_s3.h"
#include "process/dlq_sqs.h"
#include "process/filter.h"

struct kcld_pipeline {
  uv_loop_t *loop;
  const struct kcld_config *cfg;  /* as started */
  struct kcld_aws *aws;
  struct kcld_handler *handler;
  struct kcld_sqs *sqs;           /* on_failure.sqs only */
  struct kcld_s3 *s3;             /* on_failure.s3 only */
  struct kcld_dlq *dlq;
  struct kcld_filter *filter;     /* `filter`; NULL = none; freed last */
  struct kcld_dispatcher *disp;
  int killed;
};

/* ======== The failure destination ======== */

/* The store of on_failure.sqs, on_failure.s3, or both (large messages to
 * S3, their location to the queue). */
static int open_remote_store(struct kcld_pipeline *p,
                             struct kcld_dlq_store **store)
{
  const struct kcld_config *cfg = p->cfg;
  struct kcld_dlq_store *q = NULL, *o = NULL;
  const char *why = NULL;
  int rc = 0;

  if (*cfg->on_failure.sqs &&
      ((rc = kcld_sqs_new(p->aws, p->loop, &p->sqs)) != 0 ||
       (rc = kcld_dlq_sqs_new(p->sqs, cfg->on_failure.sqs, &q)) != 0))
    return rc;
  if (*cfg->on_failure.s3 &&
      ((rc = kcld_s3_new(p->aws, p->loop, &p->s3)) != 0 ||
       (rc = kcld_dlq_s3_new(p->s3, cfg->on_failure.s3, cfg->application,
                             &o, &why)) != 0)) {
    if (why)
      kcld_log(KCLD_LOG_ERROR, "bad on_failure.s3", "error", why, NULL);
    if (q)
      q->ops->free(q);
    return rc;
  }
  if (q && o)
    rc = kcld_dlq_s3_offload_new(q, o, store);
  else
    *store = q ? q : o;
  if (rc == 0)
    kcld_log(KCLD_LOG_INFO, "records that fail for good go to the "
             "dead-letter destination", "destination", (*store)->ops->name,
             "where", o ? o->where : q->where, NULL);
  return rc;
}

/* The store given-up records go to: on_failure.sqs and/or .s3, else the
 * dead-letter directory, created and probed here (kcld does not start
 * without it).  *store stays NULL with on_failure.discard or .block. */
static int open_store(struct kcld_pipeline *p, struct kcld_dlq_store **store)
{
  const struct kcld_config *cfg = p->cfg;
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
  if (*cfg->on_failure.sqs || *cfg->on_failure.s3)
    return open_remote_store(p, store);
  memset(&d, 0, sizeof(d));
  d.loop = p->loop;
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

/* The destination's live settings from `live`. */
static void dlq_live_opts(const struct kcld_config *live,
                          struct kcld_dlq_opts *o)
{
  o->include_records = live->on_failure.include_records;
  o->backoff_base_ms = (uint64_t)live->retry.backoff_base_ms;
  o->backoff_max_ms = (uint64_t)live->retry.backoff_max_ms;
}

/* The failure destination over that store (none with discard or block). */
static int open_dlq(struct kcld_pipeline *p,
                    const struct kcld_pipeline_opts *po)
{
  struct kcld_dlq_opts qo;
  int rc;

  memset(&qo, 0, sizeof(qo));
  if ((rc = open_store(p, &qo.store)) != 0 || !qo.store)
    return rc;
  qo.loop = p->loop;
  qo.function_arn = po->function_arn;
  qo.stream_arn = po->stream_arn;
  dlq_live_opts(po->live, &qo);
  return kcld_dlq_new(&qo, &p->dlq);
}

/* ======== The filter and the dispatcher ======== */

/* Compiles `filter` (checked at load already, so only memory can fail). */
static int open_filter(struct kcld_pipeline *p)
{
  const struct kcld_config_list *l = &p->cfg->filter;
  struct kcld_filter_error e;
  int rc = 0;

  if (l->len == 0)
    return 0;
  if ((p->filter = kcld_filter_new()) == NULL)
    return KCLD_ENOMEM;
  for (size_t i = 0; i < l->len && rc == 0; i++)
    rc = kcld_filter_add_text(p->filter, l->items[i], strlen(l->items[i]),
                              &e);
  if (rc != 0) {
    kcld_log(KCLD_LOG_ERROR, "cannot compile the filter", "error",
             rc == KCLD_ECONFIG ? e.msg : kcld_strerror(rc), NULL);
    return rc;
  }
  kcld_log(KCLD_LOG_INFO, "filter on: records that match no pattern skip "
           "the handler",
           KCLD_LOG_UINT("patterns", kcld_filter_count(p->filter)), NULL);
  return 0;
}

/* The dispatcher's settings: the live keys' from `live`, the others as
 * started. */
static void dispatcher_opts(const struct kcld_pipeline *p,
                            const struct kcld_config *live,
                            struct kcld_dispatcher_opts *o)
{
  memset(o, 0, sizeof(*o));
  o->loop = p->loop;
  o->handler = p->handler;
  o->batch_size = (unsigned)live->batch.size;
  o->window_ms = (uint64_t)live->batch.window_ms;
  o->parallelization = (unsigned)live->batch.parallelization_factor;
  o->handler_timeout_ms = (uint64_t)p->cfg->handler.timeout_ms;
  o->tumbling_ms = p->cfg->window.tumbling_ms;
  o->max_retry_attempts = live->retry.max_retry_attempts;
  o->bisect_on_error = live->retry.bisect_on_error;
  o->max_record_age_ms = live->retry.max_record_age_ms;
  o->backoff_base_ms = (uint64_t)live->retry.backoff_base_ms;
  o->backoff_max_ms = (uint64_t)live->retry.backoff_max_ms;
  o->dlq = p->dlq;
  o->discard = p->cfg->on_failure.discard;
  o->block_on_failure = kcld_pipeline_must_block(p, live);
  o->filter = p->filter;
}

/* ======== Lifecycle ======== */

int kcld_pipeline_new(const struct kcld_pipeline_opts *opts,
                      struct kcld_pipeline **out)
{
  struct kcld_pipeline *p = calloc(1, sizeof(*p));
  struct kcld_handler_env env = {
    .loop = opts->loop,
    .cfg = opts->cfg,
    .aws = opts->aws,
    .region = opts->region,
    .stream_arn = opts->stream_arn,
    .checkpoint = opts->checkpoint,
    .checkpoint_ctx = opts->checkpoint_ctx};
  struct kcld_dispatcher_opts dop;
  int rc;

  *out = p;
  if (!p)
    return KCLD_ENOMEM;
  p->loop = opts->loop;
  p->cfg = opts->cfg;
  p->aws = opts->aws;
  if ((rc = kcld_handler_new(&env, &p->handler)) != 0)
    goto out;
  if ((rc = open_dlq(p, opts)) != 0 || (rc = open_filter(p)) != 0)
    goto out;
  dispatcher_opts(p, opts->live, &dop);
  if ((rc = kcld_dispatcher_new(&dop, &p->disp)) != 0)
    goto out;
  if (opts->observer)
    kcld_dispatcher_set_observer(p->disp, opts->observer,
                                 opts->observer_arg);
out:
  return rc;
}

int kcld_pipeline_configure(struct kcld_pipeline *p,
                            const struct kcld_config *live)
{
  struct kcld_dispatcher_opts dop;
  struct kcld_dlq_opts qo;
  int refused = 0;

  if (p->dlq) {
    memset(&qo, 0, sizeof(qo));
    dlq_live_opts(live, &qo);
    refused |= kcld_dlq_configure(p->dlq, &qo) != 0;
  }
  if (p->disp) {
    dispatcher_opts(p, live, &dop);
    refused |= kcld_dispatcher_configure(p->disp, &dop) != 0;
  }
  return refused ? KCLD_EINVAL : 0;
}

bool kcld_pipeline_must_block(const struct kcld_pipeline *p,
                              const struct kcld_config *live)
{
  return live->on_failure.block || (!p->dlq && !p->cfg->on_failure.discard);
}

struct kcld_handler *kcld_pipeline_handler(const struct kcld_pipeline *p)
{
  return p ? p->handler : NULL;
}

struct kcld_dispatcher *kcld_pipeline_dispatcher(
  const struct kcld_pipeline *p)
{
  return p ? p->disp : NULL;
}

void kcld_pipeline_add_stats(const struct kcld_pipeline *p,
                             struct kcld_dispatcher_stats *sum)
{
  struct kcld_dispatcher_stats st;
  if (!p->disp)
    return;
  kcld_dispatcher_stats(p->disp, &st);
  sum->records_handled += st.records_handled;
  sum->bytes_handled += st.bytes_handled;
  sum->handler_calls += st.handler_calls;
  sum->batches_ok += st.batches_ok;
  sum->batches_failed += st.batches_failed;
  sum->batches_retried += st.batches_retried;
  sum->batches_bisected += st.batches_bisected;
  sum->batches_waited += st.batches_waited;
  sum->handler_timeouts += st.handler_timeouts;
  sum->records_given_up += st.records_given_up;
  sum->records_filtered += st.records_filtered;
  sum->records_skipped += st.records_skipped;
  sum->dlq_messages += st.dlq_messages;
  sum->dlq_records += st.dlq_records;
  sum->in_flight += st.in_flight;
}

void kcld_pipeline_flush(struct kcld_pipeline *p)
{
  if (p->disp)
    kcld_dispatcher_flush(p->disp);
}

void kcld_pipeline_kill(struct kcld_pipeline *p)
{
  if (p->handler && !p->killed) {
    p->killed = 1;
    kcld_handler_kill(p->handler);
  }
}

void kcld_pipeline_close(struct kcld_pipeline *p)
{
  if (!p)
    return;
  if (p->disp) {
    kcld_dispatcher_set_observer(p->disp, NULL, NULL);
    kcld_dispatcher_close(p->disp);
  }
  kcld_dlq_close(p->dlq);
  if (p->sqs)
    kcld_sqs_close(p->sqs);
  if (p->s3)
    kcld_s3_close(p->s3);
  if (p->handler)
    kcld_handler_close(p->handler);
  p->disp = NULL;
  p->dlq = NULL;
  p->sqs = NULL;
  p->s3 = NULL;
  p->handler = NULL;
}

void kcld_pipeline_free(struct kcld_pipeline *p)
{
  if (!p)
    return;
  kcld_filter_free(p->filter); /* after the dispatcher that borrowed it */
  free(p);
}
