/* coord_streams.c — the streams of a coordinator (see coordinator.h): one
 * in a single-stream table; several in a KCL multi-stream table, each
 * known by its identifier account:stream:creationEpoch once
 * DescribeStreamSummary has answered (a start-up step, or the first sync
 * step of a stream added while running), streams added and removed while
 * running, and which stream a lease belongs to. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws/kinesis.h"
#include "err.h"
#include "lease/coord_internal.h"
#include "log.h"

int kcld_coordinator_stream_id(const char *stream_arn, double created_s,
                               char *buf, size_t n)
{
  /* arn:<partition>:kinesis:<region>:<account>:stream/<name> */
  const char *p = stream_arn, *account, *name;
  int field = 0;
  if (!p || strncmp(p, "arn:", 4) != 0 || !(created_s >= 1))
    return KCLD_EINVAL;
  while (*p && field < 4)
    field += *p++ == ':';
  account = p;
  while (*p && *p != ':')
    p++;
  if (field != 4 || *p != ':' || strncmp(p + 1, "stream/", 7) != 0)
    return KCLD_EINVAL;
  name = p + 8;
  int len = snprintf(buf, n, "%.*s:%s:%.0f", (int)(p - account), account,
                     name, floor(created_s));
  if (len < 0 || (size_t)len >= n || !kcld_lease_stream_id_valid(buf))
    return KCLD_EINVAL;
  return 0;
}

int kcld_coord_streams_init(struct kcld_coordinator *c,
                            const struct kcld_coordinator_opts *opts)
{
  const struct kcld_coordinator_stream one = {
    .stream = opts->stream, .initial_position = opts->initial_position};
  const struct kcld_coordinator_stream *v =
    opts->n_streams ? opts->streams : &one;
  size_t n = opts->n_streams ? opts->n_streams : 1;
  c->multi = opts->n_streams > 0;
  if (!(c->streams = calloc(n, sizeof(*c->streams))))
    return KCLD_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    if (!v[i].stream || !v[i].stream[0] ||
        v[i].initial_position > KCLD_POS_AT_TIMESTAMP)
      return KCLD_EINVAL;
    if (!(c->streams[i].name = strdup(v[i].stream)))
      return KCLD_ENOMEM;
    c->n_streams++;
    c->streams[i].pos = v[i].initial_position;
  }
  return 0;
}

void kcld_coord_streams_clean_up(struct kcld_coordinator *c)
{
  for (size_t i = 0; i < c->n_streams; i++) {
    free(c->streams[i].name);
    free(c->streams[i].id);
  }
  free(c->streams);
  c->streams = NULL;
  c->n_streams = 0;
}

const struct coord_stream *kcld_coord_stream_of(
  const struct kcld_coordinator *c, const struct kcld_lease *l)
{
  if (!c->multi)
    return l->stream_id ? NULL : &c->streams[0];
  for (size_t i = 0; l->stream_id && i < c->n_streams; i++)
    if (c->streams[i].id && !c->streams[i].removed &&
        strcmp(c->streams[i].id, l->stream_id) == 0)
      return &c->streams[i];
  return NULL;
}

int kcld_coordinator_add_stream(struct kcld_coordinator *c,
                                const struct kcld_coordinator_stream *s)
{
  struct coord_stream *v;
  if (!c->multi || !s->stream || !s->stream[0] ||
      s->initial_position > KCLD_POS_AT_TIMESTAMP)
    return KCLD_EINVAL;
  if (!(v = realloc(c->streams, (c->n_streams + 1) * sizeof(*v))))
    return KCLD_ENOMEM;
  c->streams = v;
  v += c->n_streams;
  memset(v, 0, sizeof(*v));
  if (!(v->name = strdup(s->stream)))
    return KCLD_ENOMEM;
  v->pos = s->initial_position;
  kcld_log(KCLD_LOG_INFO, "stream added", "stream", v->name, NULL);
  if (c->syncing) /* identified and synced by the next sync */
    c->sync_again = 1;
  else if (c->ready)
    kcld_coord_sync_start(c);
  return (int)c->n_streams++;
}

void kcld_coordinator_remove_stream(struct kcld_coordinator *c, size_t index)
{
  if (index >= c->n_streams || !c->multi || c->streams[index].removed)
    return;
  c->streams[index].removed = 1;
  kcld_log(KCLD_LOG_INFO, "stream removed: its leases are no longer taken "
           "and are released as their consumers stop", "stream",
           c->streams[index].name, NULL);
}

int kcld_coordinator_stream_index(const struct kcld_coordinator *c,
                                  const struct kcld_lease *lease)
{
  const struct coord_stream *s = kcld_coord_stream_of(c, lease);
  return s ? (int)(s - c->streams) : -1;
}

/* ---- resolving the identifiers (a start-up step) ---- */

static void resolve_next(struct kcld_coordinator *c);

/* s's identifier from a DescribeStreamSummary answer (err 0): 0, or
 * KCLD_EPARSE with why[0..n-1] / KCLD_ENOMEM. */
static int set_id(struct coord_stream *s,
                  const struct kcld_kinesis_stream_summary *res, char *why,
                  size_t n)
{
  char id[512];
  json_t *ts = json_object_get(res->doc, "StreamCreationTimestamp");
  if (kcld_coordinator_stream_id(res->stream_arn, json_number_value(ts), id,
                                 sizeof(id)) != 0) {
    snprintf(why, n, "DescribeStreamSummary %s: no usable StreamARN and "
             "StreamCreationTimestamp for the multi-stream lease key",
             s->name);
    return KCLD_EPARSE;
  }
  if (!(s->id = strdup(id))) {
    snprintf(why, n, "out of memory");
    return KCLD_ENOMEM;
  }
  kcld_log(KCLD_LOG_INFO, "stream identified", "stream", s->name,
           "stream_id", s->id, NULL);
  return 0;
}

static void on_summary(const struct kcld_kinesis_stream_summary *res,
                       void *arg)
{
  struct kcld_coordinator *c = arg;
  char why[640];
  int rc;
  if (c->closing)
    return;
  if (res->st.err) {
    kcld_coord_start_failed(c, KCLD_COORD_STEP_STREAM, res->st.err,
                            kcld_svc_transient(&res->st), res->st.message);
    return;
  }
  rc = set_id(&c->streams[c->resolve_idx], res, why, sizeof(why));
  if (rc != 0) {
    kcld_coord_start_failed(c, KCLD_COORD_STEP_STREAM, rc, 0, why);
    return;
  }
  c->resolve_idx++;
  resolve_next(c);
}

/* A stream added while running, identified: its sync follows; a failure
 * leaves it to the next sync. */
static void on_added_summary(const struct kcld_kinesis_stream_summary *res,
                             void *arg)
{
  struct kcld_coordinator *c = arg;
  struct coord_stream *s = &c->streams[c->sync_idx];
  char why[640];
  c->syncing = 0;
  if (c->closing)
    return;
  if (res->st.err || set_id(s, res, why, sizeof(why)) != 0) {
    kcld_log(KCLD_LOG_WARN, "cannot identify an added stream; trying again "
             "at the next shard sync", "stream", s->name, "error",
             !res->st.err ? why
             : res->st.message ? res->st.message
                               : kcld_strerror(res->st.err), NULL);
    c->sync_idx++;
  }
  kcld_coord_sync_next(c); /* its sync, now that it has an id */
}

int kcld_coord_stream_identify(struct kcld_coordinator *c)
{
  int rc = kcld_kinesis_describe_stream_summary(
    c->kin, c->streams[c->sync_idx].name, on_added_summary, c);
  return rc < 0 ? rc : 0;
}

static void resolve_next(struct kcld_coordinator *c)
{
  while (c->resolve_idx < c->n_streams && c->streams[c->resolve_idx].id)
    c->resolve_idx++;
  if (c->resolve_idx == c->n_streams) {
    c->resolved = 1;
    kcld_coord_start_step(c);
    return;
  }
  int rc = kcld_kinesis_describe_stream_summary(
    c->kin, c->streams[c->resolve_idx].name, on_summary, c);
  if (rc < 0)
    kcld_coord_start_failed(c, KCLD_COORD_STEP_STREAM, rc, 0,
                            kcld_strerror(rc));
}

void kcld_coord_streams_resolve(struct kcld_coordinator *c)
{
  if (!c->multi) {
    c->resolved = 1;
    kcld_coord_start_step(c);
    return;
  }
  c->resolve_idx = 0;
  resolve_next(c);
}
