/* redrive_s3.c — dead-letter objects back into the stream (see
 * redrive_s3.h). */
#include "cmd/redrive_s3.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws/http.h"
#include "cmd/cli.h"
#include "cmd/redrive_line.h"
#include "err.h"
#include "log.h"
#include "process/policy.h"

#define ATTEMPTS 3

struct run {
  struct kcld_redrive_s3_opts o;
  struct kcld_s3_uri uri;
  char list_prefix[KCLD_S3_KEY_MAX + 16];
  char *stream;
  kcld_redrive_s3_cb cb;
  void *arg;
  struct kcld_redrive_s3_result res;
  uv_timer_t timer;              /* backoff */
  void (*step)(struct run *r);   /* what a retry runs again */
  char **keys;                   /* this page's keys */
  size_t nkeys, ki;
  int more;                      /* the listing goes on after this page */
  char *after;                   /* the last key listed */
  struct kcld_redrive_line line; /* the object being replayed */
  unsigned tries;
};

static void list(struct run *r);
static void next_object(struct run *r);

static void on_timer(uv_timer_t *t)
{
  struct run *r = t->data;
  r->step(r);
}

/* ======== Ending ======== */

static void free_page(struct run *r)
{
  for (size_t i = 0; i < r->nkeys; i++)
    free(r->keys[i]);
  free(r->keys);
  r->keys = NULL;
  r->nkeys = r->ki = 0;
}

static void on_closed(uv_handle_t *h)
{
  struct run *r = h->data;
  r->cb(&r->res, r->arg);
  kcld_redrive_line_free(&r->line);
  free_page(r);
  free(r->after);
  free(r->stream);
  free(r);
}

static void finish(struct run *r)
{
  uv_close((uv_handle_t *)&r->timer, on_closed);
}

static const char *current(const struct run *r)
{
  return r->ki < r->nkeys ? r->keys[r->ki] : r->list_prefix;
}

/* A call failed: again after a backoff, or stop (the object stays). */
static void failed(struct run *r, int err, const char *why, int progress)
{
  struct kcld_policy p = {0, 0, -1, r->o.backoff_base_ms,
                          r->o.backoff_max_ms};
  if (progress)
    r->tries = 0;
  if (++r->tries >= r->o.attempts) {
    if (!r->res.err)
      r->res.err = err;
    kcld_log(KCLD_LOG_ERROR, "redrive stopped; the object stays in the "
             "bucket", "bucket", r->uri.bucket, "key", current(r), "reason",
             why, "error", kcld_strerror(err), NULL);
    finish(r);
    return;
  }
  kcld_log(KCLD_LOG_WARN, "redrive call failed; trying again", "key",
           current(r), "reason", why, "error", kcld_strerror(err), NULL);
  uv_timer_start(&r->timer, on_timer,
                 kcld_policy_backoff_ms(&p, r->tries, (uint32_t)rand()), 0);
}

/* ======== One object ======== */

/* The object is left in the bucket; on to the next. */
/* This object is dealt with: the progress, then the next one. */
static void advance(struct run *r)
{
  kcld_redrive_line_free(&r->line);
  r->ki++;
  r->tries = 0;
  if (r->o.progress)
    r->o.progress(&r->res, r->arg);
  next_object(r);
}

static void keep(struct run *r, const char *why)
{
  kcld_log(KCLD_LOG_WARN, "dead-letter object left in the bucket", "bucket",
           r->uri.bucket, "key", current(r), "reason", why, NULL);
  r->res.kept++;
  advance(r);
}

static void on_deleted(const struct kcld_svc_status *st, void *arg)
{
  struct run *r = arg;
  if (st->err) {
    failed(r, st->err, "DeleteObject failed", 0);
    return;
  }
  r->res.objects++;
  r->res.records += r->line.count;
  advance(r);
}

static void delete_object(struct run *r)
{
  int rc;
  r->step = delete_object;
  rc = kcld_s3_delete_object(r->o.s3, r->uri.bucket, r->keys[r->ki],
                             on_deleted, r);
  if (rc != 0)
    failed(r, rc, "DeleteObject could not start", 0);
}

static void put(struct run *r);

static void on_put(const struct kcld_kinesis_put_result *res, void *arg)
{
  struct run *r = arg;
  size_t took = kcld_redrive_line_took(&r->line, res);

  if (r->line.put_at == r->line.count) {
    r->tries = 0;
    delete_object(r);
    return;
  }
  if (took > 0 && r->line.put_at >= r->line.put_end) {
    put(r);                    /* the call took all: the next one */
    return;
  }
  failed(r, res->st.err ? res->st.err : KCLD_EAWS,
         res->st.err ? "PutRecords failed" : "PutRecords refused records",
         took > 0);
}

static void put(struct run *r)
{
  int rc;
  r->step = put;
  rc = kcld_redrive_line_put(
    &r->line, r->o.kinesis,
    kcld_redrive_line_target(&r->line, r->stream, r->o.stream_from_message),
    on_put, r);
  if (rc != 0)
    failed(r, rc, "PutRecords could not start", 0);
}

static void on_got(const struct kcld_s3_object *res, void *arg)
{
  struct run *r = arg;
  const char *why = NULL;

  if (res->st.err == KCLD_ENOTFOUND) { /* gone meanwhile: nothing to do */
    advance(r);
    return;
  }
  if (res->st.err) {
    failed(r, res->st.err, "GetObject failed", 0);
    return;
  }
  r->tries = 0;
  if (kcld_redrive_line_parse(res->body, &r->line, &why) != 0) {
    keep(r, why);
    return;
  }
  if (!*kcld_redrive_line_target(&r->line, r->stream,
                                  r->o.stream_from_message)) {
    keep(r, "no stream: give --stream");
    return;
  }
  if (r->o.dry_run) {
    r->res.objects++;
    r->res.records += r->line.count;
    advance(r);
    return;
  }
  put(r);
}

static void get(struct run *r)
{
  int rc;
  r->step = get;
  rc = kcld_s3_get_object(r->o.s3, r->uri.bucket, r->keys[r->ki], on_got, r);
  if (rc != 0)
    failed(r, rc, "GetObject could not start", 0);
}

static void next_object(struct run *r)
{
  if (r->ki < r->nkeys) {
    get(r);
    return;
  }
  if (r->more) {
    list(r);
    return;
  }
  finish(r);
}

/* ======== Listing ======== */

static void on_listed(const struct kcld_s3_list *res, void *arg)
{
  struct run *r = arg;

  if (res->st.err) {
    failed(r, res->st.err, "ListObjectsV2 failed", 0);
    return;
  }
  r->tries = 0;
  free_page(r);
  r->keys = calloc(res->count ? res->count : 1, sizeof(*r->keys));
  for (size_t i = 0; r->keys && i < res->count; i++)
    if ((r->keys[r->nkeys] = strdup(res->entries[i].key)) != NULL)
      r->nkeys++;
  if (!r->keys || r->nkeys < res->count) {
    r->res.err = KCLD_ENOMEM;
    finish(r);
    return;
  }
  r->more = res->truncated && res->count > 0;
  if (res->count > 0) {
    free(r->after);
    if (!(r->after = strdup(res->entries[res->count - 1].key))) {
      r->res.err = KCLD_ENOMEM;
      finish(r);
      return;
    }
  }
  next_object(r);
}

/* A page of keys after the last one listed: objects kept stay behind it,
 * replayed ones are gone. */
static void list(struct run *r)
{
  struct kcld_s3_list_req rq;
  int rc;

  r->step = list;
  memset(&rq, 0, sizeof(rq));
  rq.bucket = r->uri.bucket;
  rq.prefix = r->list_prefix;
  rq.start_after = r->after;
  rq.max_keys = 100;
  rc = kcld_s3_list_objects(r->o.s3, &rq, on_listed, r);
  if (rc != 0)
    failed(r, rc, "ListObjectsV2 could not start", 0);
}

/* ======== Interface ======== */

int kcld_redrive_s3_run(const struct kcld_redrive_s3_opts *o,
                        kcld_redrive_s3_cb cb, void *arg)
{
  struct run *r;
  const char *why;

  if (!o || !o->loop || !o->s3 || (!o->kinesis && !o->dry_run) ||
      !o->location || !cb ||
      !o->attempts || !o->backoff_base_ms ||
      o->backoff_max_ms < o->backoff_base_ms)
    return KCLD_EINVAL;
  r = calloc(1, sizeof(*r));
  if (!r)
    return KCLD_ENOMEM;
  if (kcld_s3_uri_parse(o->location, &r->uri, &why) != 0) {
    kcld_log(KCLD_LOG_ERROR, "bad S3 location", "location", o->location,
             "error", why, NULL);
    free(r);
    return KCLD_EINVAL;
  }
  snprintf(r->list_prefix, sizeof(r->list_prefix), "%saws/kinesis/",
           r->uri.prefix);
  r->o = *o;
  r->cb = cb;
  r->arg = arg;
  if (!(r->stream = strdup(o->stream ? o->stream : ""))) {
    free(r);
    return KCLD_ENOMEM;
  }
  uv_timer_init(o->loop, &r->timer);
  r->timer.data = r;
  r->step = list;
  uv_timer_start(&r->timer, on_timer, 0, 0);
  return 0;
}

/* ======== The subcommand ======== */

struct cmd_state {
  int done;
  int dry_run;
  struct kcld_redrive_s3_result res;
};

static void show(const struct kcld_redrive_s3_result *r, int dry_run,
                 int final)
{
  kcld_cli_progress(final, "redrive: %zu objects, %zu records %s, %zu "
                    "objects left", r->objects, r->records,
                    dry_run ? "to replay" : "replayed", r->kept);
}

static void on_cmd_progress(const struct kcld_redrive_s3_result *r,
                            void *arg)
{
  const struct cmd_state *s = arg;
  show(r, s->dry_run, 0);
}

static void on_cmd_done(const struct kcld_redrive_s3_result *res, void *arg)
{
  struct cmd_state *s = arg;
  s->res = *res;
  s->done = 1;
}

int kcld_redrive_s3_command(const struct kcld_config *cfg,
                            const char *location, const char *stream,
                            int dry_run)
{
  struct kcld_redrive_s3_opts o;
  struct kcld_cli_aws c;
  struct kcld_kinesis *kin = NULL;
  struct kcld_s3 *s3 = NULL;
  struct cmd_state st;
  int rc, status = 1;

  memset(&o, 0, sizeof(o));
  memset(&st, 0, sizeof(st));
  st.dry_run = dry_run;
  rc = kcld_cli_aws_init(&c, cfg);
  if (rc == 0 && !dry_run)
    rc = kcld_kinesis_new(c.aws, &c.loop, &kin);
  if (rc == 0)
    rc = kcld_s3_new(c.aws, &c.loop, &s3);
  if (rc == 0) {
    o.loop = &c.loop;
    o.s3 = s3;
    o.kinesis = kin;
    o.location = location;
    o.stream = stream ? stream : cfg->stream;
    o.stream_from_message = stream == NULL;
    o.attempts = ATTEMPTS;
    o.backoff_base_ms = (uint64_t)cfg->retry.backoff_base_ms;
    o.backoff_max_ms = (uint64_t)cfg->retry.backoff_max_ms;
    o.dry_run = dry_run;
    o.progress = on_cmd_progress;
    rc = kcld_redrive_s3_run(&o, on_cmd_done, &st);
  }
  if (rc == 0) {
    kcld_cli_run_until(&c, &st.done);
    show(&st.res, dry_run, 1);
    printf("{\"objects\":%zu,\"records\":%zu,\"kept\":%zu,\"dry_run\":%s,"
           "\"error\":%s%s%s}\n", st.res.objects, st.res.records,
           st.res.kept, dry_run ? "true" : "false",
           st.res.err ? "\"" : "",
           st.res.err ? kcld_strerror(st.res.err) : "null",
           st.res.err ? "\"" : "");
    status = st.done && !st.res.err && !st.res.kept ? 0 : 1;
  } else {
    fprintf(stderr, "kcld redrive: %s: %s\n", location, kcld_strerror(rc));
  }
  if (s3)
    kcld_s3_close(s3);
  if (kin)
    kcld_kinesis_close(kin);
  kcld_cli_aws_clean_up(&c);
  kcld_http_global_cleanup();
  return status;
}
