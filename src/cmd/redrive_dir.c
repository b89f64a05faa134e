/* redrive_dir.c — dead-letter files back into the stream or the handler
 * (see redrive_dir.h). */
#include "cmd/redrive_dir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "aws/http.h"
#include "cmd/cli.h"
#include "cmd/redrive_line.h"
#include "err.h"
#include "log.h"
#include "process/dlq_dir.h"


struct run {
  struct kcld_redrive_dir_opts o;
  char *dir, *stream;
  kcld_redrive_totals_cb cb;
  void *arg;
  struct kcld_redrive_totals res;
  uv_timer_t timer;              /* backoff, and the hop after an answer */
  void (*next)(struct run *r);   /* what the timer runs */
  char **files;
  size_t nfiles, fi;
  char *claimed;                 /* the file being replayed */
  char *text;                    /* its content; lines point into it */
  char **lines;
  size_t nlines, li;
  char **keep;                   /* lines left in the file */
  size_t nkeep;
  struct kcld_redrive_line line; /* the line being replayed */
  size_t at;                     /* its records done */
  size_t chunk_end;              /* handler: records in the call out */
  const struct kcld_record **ptrs; /* handler: the call's records */
  struct kcld_handler_result answer;
  int answered_ok;
  unsigned tries;
};

static void next_file(struct run *r);
static void next_line(struct run *r);
static void send_line(struct run *r);
static void on_timer(uv_timer_t *t);

/* ======== Ending ======== */

static void free_file(struct run *r)
{
  kcld_redrive_line_free(&r->line);
  free(r->claimed);
  free(r->text);
  free(r->lines);
  free(r->keep);
  r->claimed = r->text = NULL;
  r->lines = r->keep = NULL;
  r->nlines = r->nkeep = r->li = 0;
}

static void on_closed(uv_handle_t *h)
{
  struct run *r = h->data;
  r->cb(&r->res, r->arg);
  free_file(r);
  for (size_t i = 0; i < r->nfiles; i++)
    free(r->files[i]);
  free(r->files);
  free(r->ptrs);
  free(r->dir);
  free(r->stream);
  free(r);
}

static void finish(struct run *r)
{
  uv_close((uv_handle_t *)&r->timer, on_closed);
}

/* Stops the redrive: what is not replayed stays in the claimed file. */
static void stop(struct run *r, int err, const char *why)
{
  if (!r->res.err)
    r->res.err = err;
  kcld_log(KCLD_LOG_ERROR, "redrive stopped; the rest stays in the file",
           "file", r->claimed ? r->claimed : r->dir, "reason", why, "error",
           kcld_strerror(err), NULL);
  if (r->claimed) {
    for (size_t i = r->li; i < r->nlines; i++)
      r->keep[r->nkeep++] = r->lines[i];
    r->res.kept += r->nkeep;
    if (kcld_dlq_dir_keep(r->claimed, r->keep, r->nkeep) != 0)
      kcld_log(KCLD_LOG_ERROR, "cannot rewrite the claimed file; it still "
               "holds every line it had", "file", r->claimed, NULL);
  }
  finish(r);
}

/* ======== Files and lines ======== */

static void end_file(struct run *r)
{
  int rc;

  if (r->o.how.dry_run) {
    r->res.kept += r->nkeep;
    rc = 0;
  } else if (r->nkeep == 0) {
    rc = kcld_dlq_dir_done(r->dir, r->claimed);
    if (rc == 0)
      r->res.files++;
  } else {
    rc = kcld_dlq_dir_keep(r->claimed, r->keep, r->nkeep);
    r->res.kept += r->nkeep;
  }
  if (rc != 0)
    kcld_log(KCLD_LOG_ERROR, "cannot move the replayed file aside", "file",
             r->claimed, "error", kcld_strerror(rc), NULL);
  free_file(r);
  r->fi++;
  next_file(r);
}

/* Splits r->text into lines (empty ones dropped). */
static int split_lines(struct run *r)
{
  size_t n = 1;
  for (const char *p = r->text; *p; p++)
    n += *p == '\n';
  r->lines = calloc(n, sizeof(*r->lines));
  r->keep = calloc(n, sizeof(*r->keep));
  if (!r->lines || !r->keep)
    return KCLD_ENOMEM;
  for (char *p = r->text, *nl; *p; p = nl + 1) {
    nl = strchr(p, '\n');
    if (nl)
      *nl = '\0';
    if (*p)
      r->lines[r->nlines++] = p;
    if (!nl)
      break;
  }
  return 0;
}

static char *slurp(const char *path)
{
  FILE *f = fopen(path, "rb");
  char *buf = NULL;
  long len;

  if (!f)
    return NULL;
  if (fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 &&
      fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)len + 1)) &&
      fread(buf, 1, (size_t)len, f) == (size_t)len) {
    buf[len] = '\0';
  } else {
    free(buf);
    buf = NULL;
  }
  fclose(f);
  return buf;
}

static void next_file(struct run *r)
{
  int rc;

  if (r->fi >= r->nfiles) {
    finish(r);
    return;
  }
  if (r->o.how.dry_run)
    rc = asprintf(&r->claimed, "%s/%s", r->dir, r->files[r->fi]) < 0
           ? KCLD_ENOMEM : 0;
  else
    rc = kcld_dlq_dir_claim(r->dir, r->files[r->fi], &r->claimed);
  if (rc != 0) {
    stop(r, rc, "cannot claim the file");
    return;
  }
  if (!(r->text = slurp(r->claimed))) {
    stop(r, KCLD_EIO, "cannot read the file");
    return;
  }
  if ((rc = split_lines(r)) != 0) {
    stop(r, rc, "out of memory");
    return;
  }
  kcld_log(KCLD_LOG_INFO, r->o.how.dry_run ? "reading a dead-letter file (dry "
           "run)" : "replaying a dead-letter file", "file", r->claimed, NULL);
  next_line(r);
}

/* The progress callback, the lines kept in this file so far counted in. */
static void report(struct run *r)
{
  struct kcld_redrive_totals sofar = r->res;
  if (!r->o.how.progress)
    return;
  sofar.kept += r->nkeep;
  r->o.how.progress(&sofar, r->arg);
}

static void count_line(struct run *r)
{
  r->res.lines++;
  r->res.records += r->line.count;
  r->li++;
  report(r);
}

static void next_line(struct run *r)
{
  while (r->li < r->nlines) {
    const char *why = NULL;
    kcld_redrive_line_free(&r->line);
    if (kcld_redrive_line_parse(r->lines[r->li], &r->line, &why) == 0 &&
        (r->o.handler || r->line.stream || (r->stream && *r->stream))) {
      r->at = 0;
      r->tries = 0;
      if (r->o.how.dry_run) {
        count_line(r);
        continue;
      }
      send_line(r);
      return;
    }
    kcld_log(KCLD_LOG_WARN, "dead-letter line left in its file", "file",
             r->claimed, "reason", why ? why : "no stream: give --stream",
             NULL);
    r->keep[r->nkeep++] = r->lines[r->li++];
    report(r);
  }
  end_file(r);
}

static void line_done(struct run *r)
{
  count_line(r);
  next_line(r);
}

/* A call failed (or took nothing): again after a backoff, or stop. */
static void failed(struct run *r, int err, const char *why, int progress)
{
  if (progress)
    r->tries = 0;
  if (++r->tries >= r->o.how.attempts) {
    stop(r, err, why);
    return;
  }
  kcld_log(KCLD_LOG_WARN, "redrive call failed; trying again", "file",
           r->claimed, "reason", why, NULL);
  r->next = send_line;
  uv_timer_start(&r->timer, on_timer,
                 kcld_redrive_backoff_ms(&r->o.how, r->tries), 0);
}

/* ======== To the stream ======== */

static void on_put(const struct kcld_kinesis_put_result *res, void *arg)
{
  struct run *r = arg;
  size_t took = kcld_redrive_line_took(&r->line, res);

  if (r->line.put_at == r->line.count) {
    line_done(r);
    return;
  }
  failed(r, res->st.err ? res->st.err : KCLD_EAWS,
         res->st.err ? "PutRecords failed" : "PutRecords refused records",
         took > 0);
}

static void put(struct run *r)
{
  int rc = kcld_redrive_line_put(
    &r->line, r->o.kinesis,
    kcld_redrive_line_target(&r->line, r->stream, r->o.how.stream_from_message),
    on_put, r);
  if (rc != 0)
    failed(r, rc, "PutRecords could not start", 0);
}

/* ======== To the handler ======== */

static void after_answer(struct run *r)
{
  const struct kcld_handler_result *a = &r->answer;
  size_t n = r->chunk_end - r->at;

  if (a->status == KCLD_HANDLER_OK) {
    r->at = r->chunk_end;
    r->tries = 0;
    if (r->at == r->line.count)
      line_done(r);
    else
      send_line(r);
    return;
  }
  if (a->status == KCLD_HANDLER_PARTIAL && a->first_failed < n) {
    r->at += a->first_failed;
    failed(r, KCLD_EIO, "the handler failed part of a batch",
           a->first_failed > 0);
    return;
  }
  failed(r, KCLD_EIO, a->failure_class == KCLD_HANDLER_INFRA
                        ? "the handler is unavailable"
                        : "the handler failed the batch", 0);
}

static void on_answer(const struct kcld_handler_result *res, void *arg)
{
  struct run *r = arg;
  r->answer = *res;
  r->answer.error_type = r->answer.error_message = NULL;
  if (res->status != KCLD_HANDLER_OK)
    kcld_log(KCLD_LOG_WARN, "handler answer", "file", r->claimed,
             "error_type", res->error_type ? res->error_type : "",
             "error", res->error_message ? res->error_message : "", NULL);
  /* The handler may answer from inside process(): go on from the loop. */
  r->next = after_answer;
  uv_timer_start(&r->timer, on_timer, 0, 0);
}

static void call_handler(struct run *r)
{
  struct kcld_handler_batch b;
  size_t n = r->line.count - r->at;
  int rc;

  if (n > r->o.batch_size)
    n = r->o.batch_size;
  for (size_t i = 0; i < n; i++)
    r->ptrs[i] = &r->line.batch->records[r->at + i];
  r->chunk_end = r->at + n;
  memset(&b, 0, sizeof(b));
  b.shard_id = r->line.shard_id;
  b.records = r->ptrs;
  b.count = n;
  b.millis_behind_latest = -1;
  b.attempt = r->tries + 1;
  rc = kcld_handler_process(r->o.handler, &b, on_answer, r);
  if (rc != 0)
    failed(r, rc, "the handler refused the batch", 0);
}

static void send_line(struct run *r)
{
  if (r->o.handler)
    call_handler(r);
  else
    put(r);
}

static void on_timer(uv_timer_t *t)
{
  struct run *r = t->data;
  r->next(r);
}

/* ======== Interface ======== */

int kcld_redrive_dir_run(const struct kcld_redrive_dir_opts *o,
                         kcld_redrive_totals_cb cb, void *arg)
{
  struct run *r;
  int rc;

  if (!o || !o->loop || !o->dir || !cb || !kcld_redrive_how_valid(&o->how) ||
      (o->handler && !o->batch_size) ||
      (!o->handler && !o->kinesis && !o->how.dry_run))
    return KCLD_EINVAL;
  r = calloc(1, sizeof(*r));
  if (!r)
    return KCLD_ENOMEM;
  r->o = *o;
  r->cb = cb;
  r->arg = arg;
  r->dir = strdup(o->dir);
  r->stream = strdup(o->how.stream ? o->how.stream : "");
  r->ptrs = o->handler ? calloc(o->batch_size, sizeof(*r->ptrs)) : NULL;
  rc = !r->dir || !r->stream || (o->handler && !r->ptrs) ? KCLD_ENOMEM : 0;
  if (rc == 0)
    rc = kcld_dlq_dir_list(r->dir, &r->files, &r->nfiles);
  if (rc != 0) {
    free(r->ptrs);
    free(r->dir);
    free(r->stream);
    free(r);
    return rc;
  }
  uv_timer_init(o->loop, &r->timer);
  r->timer.data = r;
  r->next = next_file;
  uv_timer_start(&r->timer, on_timer, 0, 0);
  return 0;
}

/* ======== The subcommand ======== */

static int new_handler(struct kcld_cli_aws *c, const struct kcld_config *cfg,
                       struct kcld_handler **out)
{
  struct kcld_handler_env env;
  memset(&env, 0, sizeof(env));
  env.loop = &c->loop;
  env.cfg = cfg;
  env.aws = c->aws;
  env.region = c->region;
  env.stream_arn = strncmp(cfg->stream, "arn:", 4) == 0 ? cfg->stream : "";
  return kcld_handler_new(&env, out);
}

int kcld_redrive_dir_command(const struct kcld_config *cfg, const char *dir,
                             const char *stream, int to_handler, int dry_run)
{
  struct kcld_redrive_dir_opts o;
  struct kcld_cli_aws c;
  struct kcld_kinesis *kin = NULL;
  struct kcld_handler *h = NULL;
  struct kcld_redrive_cmd st;
  int rc, status = 1;

  memset(&o, 0, sizeof(o));
  kcld_redrive_cmd_init(&st, cfg, stream, dry_run, 0, &o.how);
  rc = kcld_cli_aws_init(&c, cfg);
  if (rc == 0 && !dry_run)
    rc = to_handler ? new_handler(&c, cfg, &h)
                    : kcld_kinesis_new(c.aws, &c.loop, &kin);
  if (rc == 0) {
    o.loop = &c.loop;
    o.dir = dir;
    o.handler = h;
    o.batch_size = (size_t)cfg->batch.size;
    o.kinesis = kin;
    rc = kcld_redrive_dir_run(&o, kcld_redrive_cmd_done, &st);
  }
  if (rc == 0)
    status = kcld_redrive_cmd_wait(&st, &c);
  else
    fprintf(stderr, "kcld redrive: %s: %s\n", dir, kcld_strerror(rc));
  if (h)
    kcld_handler_close(h);
  if (kin)
    kcld_kinesis_close(kin);
  kcld_cli_aws_clean_up(&c);
  kcld_http_global_cleanup();
  return status;
}
