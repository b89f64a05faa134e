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

struct run {
  struct kcld_redrive_s3_opts o;
  struct kcld_s3_uri uri;
  char list_prefix[KCLD_S3_KEY_MAX + 16];
  char *stream;
  kcld_redrive_totals_cb cb;
  void *arg;
  struct kcld_redrive_totals res;
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
  if (progress)
    r->tries = 0;
  if (++r->tries >= r->o.how.attempts) {
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
                 kcld_redrive_backoff_ms(&r->o.how, r->tries), 0);
}

/* ======== One object ======== */

/* This object is dealt with: the progress, then the next one. */
static void advance(struct run *r)
{
  kcld_redrive_line_free(&r->line);
  r->ki++;
  r->tries = 0;
  if (r->o.how.progress)
    r->o.how.progress(&r->res, r->arg);
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
    kcld_redrive_line_target(&r->line, r->stream, r->o.how.stream_from_message),
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
                                  r->o.how.stream_from_message)) {
    keep(r, "no stream: give --stream");
    return;
  }
  if (r->o.how.dry_run) {
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
                        kcld_redrive_totals_cb cb, void *arg)
{
  struct run *r;
  const char *why;

  if (!o || !o->loop || !o->s3 || (!o->kinesis && !o->how.dry_run) ||
      !o->location || !cb || !kcld_redrive_how_valid(&o->how))
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
  if (!(r->stream = strdup(o->how.stream ? o->how.stream : ""))) {
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

int kcld_redrive_s3_command(const struct kcld_config *cfg,
                            const char *location, const char *stream,
                            int dry_run)
{
  struct kcld_redrive_s3_opts o;
  struct kcld_cli_aws c;
  struct kcld_kinesis *kin = NULL;
  struct kcld_s3 *s3 = NULL;
  struct kcld_redrive_cmd st;
  int rc, status = 1;

  memset(&o, 0, sizeof(o));
  kcld_redrive_cmd_init(&st, cfg, stream, dry_run, 1, &o.how);
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
    rc = kcld_redrive_s3_run(&o, kcld_redrive_cmd_done, &st);
  }
  if (rc == 0)
    status = kcld_redrive_cmd_wait(&st, &c);
  else
    fprintf(stderr, "kcld redrive: %s: %s\n", location, kcld_strerror(rc));
  if (s3)
    kcld_s3_close(s3);
  if (kin)
    kcld_kinesis_close(kin);
  kcld_cli_aws_clean_up(&c);
  kcld_http_global_cleanup();
  return status;
}
