/* redrive_cmd.c — what the file and bucket redrives share (see
 * redrive_cmd.h). */
#include "cmd/redrive_cmd.h"

#include <stdio.h>
#include <stdlib.h>

#include "err.h"
#include "process/policy.h"

#define ATTEMPTS 3

int kcld_redrive_how_valid(const struct kcld_redrive_how *h)
{
  return h->attempts >= 1 && h->backoff_base_ms > 0 &&
         h->backoff_max_ms >= h->backoff_base_ms;
}

uint64_t kcld_redrive_backoff_ms(const struct kcld_redrive_how *h,
                                 unsigned tries)
{
  struct kcld_policy p = {0, 0, -1, h->backoff_base_ms, h->backoff_max_ms};
  return kcld_policy_backoff_ms(&p, tries, (uint32_t)rand());
}

static void show(const struct kcld_redrive_cmd *s,
                 const struct kcld_redrive_totals *r, int final)
{
  const char *unit = s->objects ? "objects" : "lines";
  kcld_cli_progress(final, "redrive: %zu %s, %zu records %s, %zu %s left",
                    s->objects ? r->objects : r->lines, unit, r->records,
                    s->dry_run ? "to replay" : "replayed", r->kept, unit);
}

static void on_progress(const struct kcld_redrive_totals *r, void *arg)
{
  show(arg, r, 0);
}

void kcld_redrive_cmd_init(struct kcld_redrive_cmd *s,
                           const struct kcld_config *cfg, const char *stream,
                           int dry_run, int objects,
                           struct kcld_redrive_how *how)
{
  *s = (struct kcld_redrive_cmd){.dry_run = dry_run, .objects = objects};
  *how = (struct kcld_redrive_how){
    .stream = stream ? stream : cfg->stream,
    .stream_from_message = stream == NULL,
    .attempts = ATTEMPTS,
    .backoff_base_ms = (uint64_t)cfg->retry.backoff_base_ms,
    .backoff_max_ms = (uint64_t)cfg->retry.backoff_max_ms,
    .dry_run = dry_run,
    .progress = on_progress};
}

void kcld_redrive_cmd_done(const struct kcld_redrive_totals *r, void *arg)
{
  struct kcld_redrive_cmd *s = arg;
  s->res = *r;
  s->done = 1;
}

int kcld_redrive_cmd_wait(struct kcld_redrive_cmd *s, struct kcld_cli_aws *c)
{
  const struct kcld_redrive_totals *r = &s->res;
  kcld_cli_run_until(c, &s->done);
  show(s, r, 1);
  if (s->objects)
    printf("{\"objects\":%zu,", r->objects);
  else
    printf("{\"files\":%zu,\"lines\":%zu,", r->files, r->lines);
  printf("\"records\":%zu,\"kept\":%zu,\"dry_run\":%s,\"error\":%s%s%s}\n",
         r->records, r->kept, s->dry_run ? "true" : "false",
         r->err ? "\"" : "", r->err ? kcld_strerror(r->err) : "null",
         r->err ? "\"" : "");
  return s->done && !r->err && !r->kept ? 0 : 1;
}
