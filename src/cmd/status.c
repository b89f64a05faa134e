/* status.c — `kcld status`: Scan the lease table, ListShards, optionally
 * measure each shard's lag and read the table again after the recheck
 * delay, then print one row per shard and one per worker.
 *
 * The steps run one after the other on a private loop:
 *   scan -> list shards -> lag of each shard (GetShardIterator after the
 *   checkpoint, GetRecords Limit 1) -> [wait recheck_ms, scan again]
 *   -> [fetch.mode: fanout: the stream consumer (DescribeStreamSummary
 *   for a stream name, DescribeStreamConsumer)]. */
#include "cmd/status.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aws/dynamodb.h"
#include "aws/fanout.h"
#include "aws/http.h"
#include "aws/kinesis.h"
#include "cmd/cli.h"
#include "err.h"
#include "lease/coordinator.h"
#include "lease/table.h"

struct shard {
  char *id, *parent, *adjacent, *ending_seq;
  int64_t lag_ms;                  /* -1 = unknown */
};

struct leases {
  struct kcld_lease *v;
  size_t n;
};

/* fetch.mode: fanout: what DescribeStreamConsumer said. */
struct consumer {
  char *name, *arn, *status, *error;
  int done;
};

struct st {
  const struct kcld_status_opts *o;
  struct kcld_cli_aws cli;
  struct kcld_kinesis *k;
  struct kcld_fanout *f;
  struct consumer consumer;
  struct kcld_dynamodb *db;
  struct kcld_lease_table *table;
  const char *stream, *table_name;
  int multi;                       /* a multi-stream table (streams:) */
  char *stream_id;                 /* multi: account:stream:epoch, whose
                                      leases are this stream's */
  struct leases first, second;
  struct shard *shards;
  size_t nshards, lag_next;
  uv_timer_t wait;
  int wait_init;
  int err, done;
};

static void step_list(struct st *s);
static void step_lag(struct st *s);
static void step_recheck(struct st *s);

static void finish(struct st *s, int err)
{
  if (err && !s->err)
    s->err = err;
  s->done = 1;
}

static void leases_free(struct leases *l)
{
  for (size_t i = 0; i < l->n; i++)
    kcld_lease_clean_up(&l->v[i]);
  free(l->v);
  l->v = NULL;
  l->n = 0;
}

/* The leases of v[0..n-1] into dst: all, or with stream_id those of that
 * stream. */
static int leases_copy(struct leases *dst, const struct kcld_lease *v,
                       size_t n, const char *stream_id)
{
  dst->v = calloc(n ? n : 1, sizeof(*dst->v));
  if (!dst->v)
    return KCLD_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    if (stream_id &&
        (!v[i].stream_id || strcmp(v[i].stream_id, stream_id) != 0))
      continue;
    if (kcld_lease_copy(&dst->v[dst->n], &v[i]) != 0)
      return KCLD_ENOMEM;
    dst->n++;
  }
  return 0;
}

/* The lease of shard `id` (a shard id, in either table format). */
static const struct kcld_lease *find_lease(const struct leases *l,
                                           const char *id)
{
  for (size_t i = 0; i < l->n; i++)
    if (strcmp(kcld_lease_shard(&l->v[i]), id) == 0)
      return &l->v[i];
  return NULL;
}

/* ======== Steps ======== */

static void on_scan(const struct kcld_svc_status *st,
                    struct kcld_lease *leases, size_t n, void *arg)
{
  struct st *s = arg;
  struct leases *into = s->first.v ? &s->second : &s->first;
  int err = st->err;
  if (err) {
    fprintf(stderr, "kcld status: cannot scan lease table %s: %s\n",
            s->table_name, st->message);
    finish(s, err);
    return;
  }
  if ((err = leases_copy(into, leases, n, s->stream_id)) != 0) {
    finish(s, err);
    return;
  }
  if (into == &s->first)
    step_list(s);
  else
    finish(s, 0);
}

static char *dup_or_null(const char *v)
{
  return v ? strdup(v) : NULL;
}

static void on_list(const struct kcld_kinesis_shard_list *res, void *arg)
{
  struct st *s = arg;
  if (res->st.err) {
    fprintf(stderr, "kcld status: %s\n", res->st.message);
    finish(s, res->st.err);
    return;
  }
  s->shards = calloc(res->count ? res->count : 1, sizeof(*s->shards));
  if (!s->shards) {
    finish(s, KCLD_ENOMEM);
    return;
  }
  for (size_t i = 0; i < res->count; i++) {
    const struct kcld_kinesis_shard *k = &res->shards[i];
    struct shard *d = &s->shards[s->nshards++];
    d->lag_ms = -1;
    d->id = strdup(k->shard_id);
    d->parent = dup_or_null(k->parent_shard_id);
    d->adjacent = dup_or_null(k->adjacent_parent_shard_id);
    d->ending_seq = dup_or_null(k->ending_sequence_number);
    if (!d->id) {
      finish(s, KCLD_ENOMEM);
      return;
    }
  }
  step_lag(s);
}

static void step_list(struct st *s)
{
  int rc = kcld_kinesis_list_shards(s->k, s->stream, NULL, on_list, s);
  if (rc != 0)
    finish(s, rc);
}

static void on_records(const struct kcld_kinesis_records_raw *res, void *arg)
{
  struct st *s = arg;
  struct shard *d = &s->shards[s->lag_next];
  if (res->st.err == 0 && res->body) {
    json_t *doc = json_loadb(res->body, res->body_len, 0, NULL);
    json_t *m = json_object_get(doc, "MillisBehindLatest");
    if (json_is_integer(m))
      d->lag_ms = (int64_t)json_integer_value(m);
    json_decref(doc);
  }
  s->lag_next++;
  step_lag(s);
}

static void on_iterator(const struct kcld_kinesis_iterator *res, void *arg)
{
  struct st *s = arg;
  struct kcld_kinesis_get_records_req rq;
  if (res->st.err || !res->shard_iterator) {
    s->lag_next++;
    step_lag(s);
    return;
  }
  memset(&rq, 0, sizeof(rq));
  rq.shard_iterator = res->shard_iterator;
  rq.limit = 1;
  rq.shard_id = s->shards[s->lag_next].id;
  rq.max_attempts = 1;
  if (kcld_kinesis_get_records(s->k, &rq, on_records, s) != 0) {
    s->lag_next++;
    step_lag(s);
  }
}

/* Measures the next shard that has a position to measure from. */
static void step_lag(struct st *s)
{
  while (s->o->lag && s->lag_next < s->nshards) {
    struct shard *d = &s->shards[s->lag_next];
    const struct kcld_lease *l = find_lease(&s->first, d->id);
    struct kcld_kinesis_iterator_req rq;
    memset(&rq, 0, sizeof(rq));
    rq.stream = s->stream;
    rq.shard_id = d->id;
    if (!l || kcld_lease_is_finished(l) ||
        strcmp(l->checkpoint, KCLD_LEASE_LATEST) == 0 ||
        strcmp(l->checkpoint, KCLD_LEASE_AT_TIMESTAMP) == 0) {
      s->lag_next++;
      continue;
    }
    if (strcmp(l->checkpoint, KCLD_LEASE_TRIM_HORIZON) == 0) {
      rq.type = KCLD_KINESIS_TRIM_HORIZON;
    } else {
      rq.type = KCLD_KINESIS_AFTER_SEQUENCE_NUMBER;
      rq.sequence_number = l->checkpoint;
    }
    if (kcld_kinesis_get_shard_iterator(s->k, &rq, on_iterator, s) == 0)
      return;
    s->lag_next++;
  }
  step_recheck(s);
}

static void on_wait(uv_timer_t *t)
{
  struct st *s = t->data;
  int rc = kcld_lease_table_scan(s->table, on_scan, s);
  if (rc != 0)
    finish(s, rc);
}

static void step_recheck(struct st *s)
{
  if (!s->o->recheck_ms) {
    finish(s, 0);
    return;
  }
  uv_timer_init(&s->cli.loop, &s->wait);
  s->wait.data = s;
  s->wait_init = 1;
  uv_timer_start(&s->wait, on_wait, s->o->recheck_ms, 0);
}

/* ======== The stream consumer (fan-out) ======== */

/* A failed look-up is shown, not fatal: the shards' rows still stand. */
static void consumer_failed(struct st *s, const struct kcld_svc_status *st)
{
  struct consumer *c = &s->consumer;
  if (st->err == KCLD_ENOTFOUND)
    c->status = strdup("NOT_REGISTERED");
  else
    c->error = strdup(st->message && *st->message ? st->message
                                                  : kcld_strerror(st->err));
  c->done = 1;
}

static void on_consumer(const struct kcld_fanout_consumer *res, void *arg)
{
  struct st *s = arg;
  struct consumer *c = &s->consumer;
  if (res->st.err) {
    consumer_failed(s, &res->st);
    return;
  }
  free(c->name);
  free(c->arn);
  c->name = dup_or_null(res->name);
  c->arn = dup_or_null(res->arn);
  c->status = dup_or_null(res->status);
  c->done = 1;
}

static void on_summary(const struct kcld_kinesis_stream_summary *res,
                       void *arg)
{
  struct st *s = arg;
  struct kcld_svc_status st = {.err = KCLD_EINVAL, .type = "",
                               .message = "the call was not sent"};
  if (res->st.err) {
    consumer_failed(s, &res->st);
    return;
  }
  if (kcld_fanout_describe(s->f, res->stream_arn, s->consumer.name, NULL,
                           on_consumer, s) != 0)
    consumer_failed(s, &st);
}

/* Looks the stream consumer of fetch.mode: fanout up; s->consumer.done
 * once known (or not). */
static int step_consumer(struct st *s)
{
  const struct kcld_config_fetch *f = &s->o->cfg->fetch;
  int rc = kcld_fanout_new(s->cli.aws, &s->cli.loop, &s->f);
  if (rc != 0)
    return rc;
  if (*f->consumer_arn) {
    s->consumer.arn = strdup(f->consumer_arn);
    if (!s->consumer.arn)
      return KCLD_ENOMEM;
    return kcld_fanout_describe(s->f, NULL, NULL, f->consumer_arn,
                                on_consumer, s);
  }
  s->consumer.name = strdup(f->consumer_name);
  if (!s->consumer.name)
    return KCLD_ENOMEM;
  if (strncmp(s->stream, "arn:", 4) == 0)
    return kcld_fanout_describe(s->f, s->stream, s->consumer.name, NULL,
                                on_consumer, s);
  return kcld_kinesis_describe_stream_summary(s->k, s->stream, on_summary,
                                              s);
}

/* The "consumer" member: null in polling mode. */
static json_t *consumer_json(const struct st *s)
{
  const struct consumer *c = &s->consumer;
  if (s->o->cfg->fetch.mode != KCLD_CONFIG_FETCH_FANOUT)
    return json_null();
  return json_pack("{s:s?,s:s?,s:s?,s:s?}", "name", c->name, "arn", c->arn,
                   "status", c->status, "error", c->error);
}

/* ======== The document ======== */

static int parents_finished(const struct st *s, const struct shard *d)
{
  const char *ps[2] = {d->parent, d->adjacent};
  for (int i = 0; i < 2; i++) {
    if (!ps[i])
      continue;
    const struct kcld_lease *pl = find_lease(&s->first, ps[i]);
    if (pl && !kcld_lease_is_finished(pl))
      return 0;
  }
  return 1;
}

static json_t *strings(char **v, size_t n)
{
  json_t *a = json_array();
  for (size_t i = 0; a && i < n; i++)
    json_array_append_new(a, json_string(v[i]));
  return a;
}

/* One shard row; `d` may be NULL (a lease whose shard is not listed). */
static json_t *shard_row(struct st *s, const struct shard *d,
                         const struct kcld_lease *l, int *unowned,
                         int *expired)
{
  const char *state;
  json_t *row, *parents, *children;

  if (d) {
    parents = json_array();
    if (d->parent)
      json_array_append_new(parents, json_string(d->parent));
    if (d->adjacent)
      json_array_append_new(parents, json_string(d->adjacent));
  } else {
    parents = strings(l->parents, l->n_parents);
  }
  children = l ? strings(l->children, l->n_children) : json_array();
  if (l && kcld_lease_is_finished(l)) {
    state = "finished";
  } else if (l && l->owner) {
    state = "owned";
    if (s->o->recheck_ms) {
      const struct kcld_lease *again = find_lease(&s->second, l->shard_id);
      if (again && again->owner && strcmp(again->owner, l->owner) == 0 &&
          again->counter == l->counter) {
        state = "expired";
        (*expired)++;
      }
    }
  } else if (l) {
    state = "unowned";
    (*unowned)++;
  } else if (d && parents_finished(s, d)) {
    state = "unowned";
    (*unowned)++;
  } else {
    state = "waiting";
  }
  row = json_pack("{s:s,s:b,s:o,s:o,s:b,s:b}", "shard_id",
                  d ? d->id : kcld_lease_shard(l), "open",
                  d && !d->ending_seq,
                  "parents", parents, "children", children, "in_stream",
                  d != NULL, "lease", l != NULL);
  if (!row)
    return NULL;
  json_object_set_new(row, "owner", l && l->owner ? json_string(l->owner)
                                                  : json_null());
  json_object_set_new(row, "checkpoint",
                      l ? json_string(l->checkpoint) : json_null());
  json_object_set_new(row, "checkpoint_sub",
                      json_integer(l ? (json_int_t)l->checkpoint_sub : 0));
  json_object_set_new(row, "lease_counter",
                      json_integer(l ? (json_int_t)l->counter : 0));
  json_object_set_new(row, "owner_switches",
                      json_integer(l ? (json_int_t)l->owner_switches : 0));
  json_object_set_new(row, "lag_ms", d && d->lag_ms >= 0
                                       ? json_integer(d->lag_ms)
                                       : json_null());
  json_object_set_new(row, "state", json_string(state));
  return row;
}

static void add_worker(json_t *workers, const char *owner,
                       const char *shard_id, const char *state)
{
  json_t *w = NULL;
  size_t i;
  json_array_foreach(workers, i, w) {
    if (strcmp(json_string_value(json_object_get(w, "worker_id")), owner) ==
        0)
      break;
    w = NULL;
  }
  if (!w) {
    w = json_pack("{s:s,s:i,s:[],s:n}", "worker_id", owner, "leases_held", 0,
                  "shards", "renewing");
    if (!w)
      return;
    json_array_append_new(workers, w);
  }
  json_object_set_new(w, "leases_held", json_integer(json_integer_value(
    json_object_get(w, "leases_held")) + 1));
  json_array_append_new(json_object_get(w, "shards"), json_string(shard_id));
  if (strcmp(state, "expired") == 0)
    json_object_set_new(w, "renewing", json_false());
  else if (strcmp(state, "owned") == 0 &&
           !json_is_false(json_object_get(w, "renewing")))
    json_object_set(w, "renewing", json_true());
}

static json_t *build(struct st *s)
{
  json_t *doc, *rows = json_array(), *workers = json_array();
  int unowned = 0, expired = 0;
  char ts[40];
  time_t now = time(NULL);
  struct tm tm;

  gmtime_r(&now, &tm);
  strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
  for (size_t i = 0; rows && i < s->nshards; i++) {
    const struct kcld_lease *l = find_lease(&s->first, s->shards[i].id);
    json_t *row = shard_row(s, &s->shards[i], l, &unowned, &expired);
    if (row)
      json_array_append_new(rows, row);
  }
  for (size_t i = 0; rows && i < s->first.n; i++) {
    const struct kcld_lease *l = &s->first.v[i];
    int listed = 0;
    for (size_t j = 0; j < s->nshards && !listed; j++)
      listed = strcmp(s->shards[j].id, kcld_lease_shard(l)) == 0;
    if (!listed) {
      json_t *row = shard_row(s, NULL, l, &unowned, &expired);
      if (row)
        json_array_append_new(rows, row);
    }
  }
  size_t i;
  json_t *row;
  json_array_foreach(rows, i, row) {
    json_t *owner = json_object_get(row, "owner");
    if (json_is_string(owner))
      add_worker(workers, json_string_value(owner),
                 json_string_value(json_object_get(row, "shard_id")),
                 json_string_value(json_object_get(row, "state")));
  }
  if (!s->o->recheck_ms) {
    json_t *w;
    json_array_foreach(workers, i, w)
      json_object_set_new(w, "renewing", json_null());
  }
  doc = json_pack("{s:s,s:s,s:s,s:I,s:o,s:o,s:o,s:i,s:i,s:b}", "stream",
                  s->stream, "table", s->table_name, "time", ts,
                  "recheck_ms", (json_int_t)s->o->recheck_ms, "consumer",
                  consumer_json(s), "shards", rows, "workers", workers,
                  "unowned", unowned, "expired", expired, "healthy",
                  unowned == 0 && expired == 0);
  return doc;
}

/* Multi-stream: the stream's identifier, then the first scan. */
static void on_stream_id(const struct kcld_kinesis_stream_summary *res,
                         void *arg)
{
  struct st *s = arg;
  char id[512];
  json_t *ts = json_object_get(res->doc, "StreamCreationTimestamp");
  int rc = res->st.err;
  if (rc != 0) {
    fprintf(stderr, "kcld status: %s\n", res->st.message);
  } else if (kcld_coordinator_stream_id(res->stream_arn,
                                        json_number_value(ts), id,
                                        sizeof(id)) != 0) {
    fprintf(stderr, "kcld status: %s: no usable StreamARN and "
            "StreamCreationTimestamp\n", s->stream);
    rc = KCLD_EPARSE;
  } else if (!(s->stream_id = strdup(id))) {
    rc = KCLD_ENOMEM;
  } else {
    rc = kcld_lease_table_scan(s->table, on_scan, s);
  }
  if (rc != 0)
    finish(s, rc);
}

static int collect_one(const struct kcld_status_opts *o, const char *stream,
                       int multi, json_t **out);

/* streams: one document per stream, under "streams"; healthy when each
 * is. */
static int collect_streams(const struct kcld_status_opts *o, json_t **out)
{
  const struct kcld_config_streams *l = &o->cfg->streams;
  json_t *docs = json_array(), *one;
  json_int_t unowned = 0, expired = 0;
  int rc = docs ? 0 : KCLD_ENOMEM, healthy = 1;
  for (size_t i = 0; rc == 0 && i < l->len; i++) {
    if ((rc = collect_one(o, l->v[i].stream, 1, &one)) != 0)
      break;
    unowned += json_integer_value(json_object_get(one, "unowned"));
    expired += json_integer_value(json_object_get(one, "expired"));
    healthy &= json_is_true(json_object_get(one, "healthy"));
    json_array_append_new(docs, one);
  }
  if (rc == 0 &&
      !(*out = json_pack("{s:s,s:O,s:I,s:I,s:b}", "table",
                         o->table && *o->table ? o->table
                                               : o->cfg->lease.table,
                         "streams", docs, "unowned", unowned, "expired",
                         expired, "healthy", healthy)))
    rc = KCLD_ENOMEM;
  json_decref(docs);
  return rc;
}

int kcld_status_collect(const struct kcld_status_opts *o, json_t **out)
{
  if (out)
    *out = NULL;
  if (!o || !o->cfg || !out)
    return KCLD_EINVAL;
  if (o->cfg->streams.len && !(o->stream && *o->stream))
    return collect_streams(o, out);
  return collect_one(o, o->stream && *o->stream ? o->stream : o->cfg->stream,
                     o->cfg->streams.len > 0, out);
}

/* One stream's document (of a multi-stream table with `multi`). */
static int collect_one(const struct kcld_status_opts *o, const char *stream,
                       int multi, json_t **out)
{
  struct st s;
  int rc;

  memset(&s, 0, sizeof(s));
  s.o = o;
  s.multi = multi;
  s.stream = stream;
  s.table_name = o->table && *o->table ? o->table : o->cfg->lease.table;
  if (!s.stream || !*s.stream || !s.table_name || !*s.table_name) {
    fprintf(stderr, "kcld status: give the stream and the lease table\n");
    return KCLD_EINVAL;
  }
  if ((rc = kcld_cli_aws_init(&s.cli, o->cfg)) != 0)
    goto done;
  if ((rc = kcld_kinesis_new(s.cli.aws, &s.cli.loop, &s.k)) != 0 ||
      (rc = kcld_dynamodb_new(s.cli.aws, &s.cli.loop, &s.db)) != 0 ||
      (rc = kcld_lease_table_new(s.db, s.table_name, multi, &s.table)) != 0)
    goto done;
  rc = multi ? kcld_kinesis_describe_stream_summary(s.k, s.stream,
                                                    on_stream_id, &s)
             : kcld_lease_table_scan(s.table, on_scan, &s);
  if (rc < 0)
    goto done;
  rc = 0;
  kcld_cli_run_until(&s.cli, &s.done);
  rc = s.done ? s.err : KCLD_EIO;
  if (rc == 0 && o->cfg->fetch.mode == KCLD_CONFIG_FETCH_FANOUT) {
    struct kcld_svc_status st = {.err = 0, .type = "", .message = ""};
    if ((st.err = step_consumer(&s)) != 0)
      consumer_failed(&s, &st);
    else
      kcld_cli_run_until(&s.cli, &s.consumer.done);
  }
  if (rc == 0 && !(*out = build(&s)))
    rc = KCLD_ENOMEM;
done:
  if (s.wait_init)
    uv_close((uv_handle_t *)&s.wait, NULL);
  kcld_fanout_close(s.f);
  if (s.k)
    kcld_kinesis_close(s.k);
  if (s.db)
    kcld_dynamodb_close(s.db);
  kcld_lease_table_free(s.table);
  kcld_cli_aws_clean_up(&s.cli);
  leases_free(&s.first);
  leases_free(&s.second);
  for (size_t i = 0; i < s.nshards; i++) {
    free(s.shards[i].id);
    free(s.shards[i].parent);
    free(s.shards[i].adjacent);
    free(s.shards[i].ending_seq);
  }
  free(s.shards);
  free(s.consumer.name);
  free(s.consumer.arn);
  free(s.consumer.status);
  free(s.consumer.error);
  free(s.stream_id);
  return rc;
}

/* ======== Text ======== */

static const char *str_or(const json_t *v, const char *dflt)
{
  return json_is_string(v) ? json_string_value(v) : dflt;
}

static void join(const json_t *arr, char *buf, size_t n)
{
  size_t i, o = 0;
  json_t *v;
  buf[0] = '\0';
  json_array_foreach(arr, i, v) {
    int w = snprintf(buf + o, n - o, "%s%s", i ? "," : "",
                     json_string_value(v));
    if (w < 0 || (size_t)w >= n - o)
      break;
    o += (size_t)w;
  }
  if (!o)
    snprintf(buf, n, "-");
}

#define NCOL 8

static void print_one(const json_t *doc, FILE *out);

void kcld_status_print(const json_t *doc, FILE *out)
{
  const json_t *streams = json_object_get(doc, "streams");
  size_t i;
  json_t *one;
  if (!json_is_array(streams)) {
    print_one(doc, out);
    return;
  }
  json_array_foreach(streams, i, one) {
    if (i)
      fputc('\n', out);
    print_one(one, out);
  }
}

/* One stream's tables. */
static void print_one(const json_t *doc, FILE *out)
{
  static const char *const head[NCOL] = {"SHARD", "STATE", "OPEN", "OWNER",
                                         "CHECKPOINT", "LAG_MS", "PARENTS",
                                         "CHILDREN"};
  const json_t *rows = json_object_get(doc, "shards");
  size_t nrows = json_array_size(rows), w[NCOL];
  char (*cells)[NCOL][256] = calloc(nrows ? nrows : 1, sizeof(*cells));
  size_t i;
  json_t *r;

  if (!cells)
    return;
  for (int c = 0; c < NCOL; c++)
    w[c] = strlen(head[c]);
  json_array_foreach(rows, i, r) {
    snprintf(cells[i][0], 256, "%s", str_or(json_object_get(r, "shard_id"),
                                            "?"));
    snprintf(cells[i][1], 256, "%s", str_or(json_object_get(r, "state"),
                                            "?"));
    snprintf(cells[i][2], 256, "%s",
             !json_is_true(json_object_get(r, "in_stream")) ? "gone"
             : json_is_true(json_object_get(r, "open")) ? "open" : "closed");
    snprintf(cells[i][3], 256, "%s", str_or(json_object_get(r, "owner"),
                                            "-"));
    const json_t *cp = json_object_get(r, "checkpoint");
    json_int_t sub = json_integer_value(json_object_get(r, "checkpoint_sub"));
    if (json_is_string(cp) && sub > 0)
      snprintf(cells[i][4], 256, "%s/%" JSON_INTEGER_FORMAT,
               json_string_value(cp), sub);
    else
      snprintf(cells[i][4], 256, "%s", str_or(cp, "-"));
    const json_t *lag = json_object_get(r, "lag_ms");
    if (json_is_integer(lag))
      snprintf(cells[i][5], 256, "%" JSON_INTEGER_FORMAT,
               json_integer_value(lag));
    else
      snprintf(cells[i][5], 256, "-");
    join(json_object_get(r, "parents"), cells[i][6], 256);
    join(json_object_get(r, "children"), cells[i][7], 256);
    for (int c = 0; c < NCOL; c++)
      if (strlen(cells[i][c]) > w[c])
        w[c] = strlen(cells[i][c]);
  }
  fprintf(out, "STREAM %s  TABLE %s  (%s)\n",
          str_or(json_object_get(doc, "stream"), "?"),
          str_or(json_object_get(doc, "table"), "?"),
          str_or(json_object_get(doc, "time"), "?"));
  const json_t *con = json_object_get(doc, "consumer");
  if (json_is_object(con))
    fprintf(out, "CONSUMER %s  %s  (%s)\n",
            str_or(json_object_get(con, "name"), "-"),
            str_or(json_object_get(con, "status"),
                   str_or(json_object_get(con, "error"), "?")),
            str_or(json_object_get(con, "arn"), "-"));
  fputc('\n', out);
  /* The last column is not padded: no trailing blanks. */
  for (int c = 0; c < NCOL; c++)
    fprintf(out, "%-*s%s", c + 1 < NCOL ? (int)w[c] : 0, head[c],
            c + 1 < NCOL ? "  " : "\n");
  for (i = 0; i < nrows; i++)
    for (int c = 0; c < NCOL; c++)
      fprintf(out, "%-*s%s", c + 1 < NCOL ? (int)w[c] : 0, cells[i][c],
              c + 1 < NCOL ? "  " : "\n");
  free(cells);

  const json_t *workers = json_object_get(doc, "workers");
  size_t ww = strlen("WORKER");
  json_array_foreach(workers, i, r) {
    size_t l = strlen(str_or(json_object_get(r, "worker_id"), ""));
    if (l > ww)
      ww = l;
  }
  fprintf(out, "\n%-*s  LEASES  RENEWING  SHARDS\n", (int)ww, "WORKER");
  json_array_foreach(workers, i, r) {
    char shards[1024];
    const json_t *ren = json_object_get(r, "renewing");
    join(json_object_get(r, "shards"), shards, sizeof(shards));
    fprintf(out, "%-*s  %-6" JSON_INTEGER_FORMAT "  %-8s  %s\n", (int)ww,
            str_or(json_object_get(r, "worker_id"), "?"),
            json_integer_value(json_object_get(r, "leases_held")),
            json_is_null(ren) ? "?" : json_is_true(ren) ? "yes" : "NO",
            shards);
  }
  if (json_array_size(workers) == 0)
    fprintf(out, "(no worker holds a lease)\n");
  fprintf(out, "\n%" JSON_INTEGER_FORMAT " unowned, %" JSON_INTEGER_FORMAT
          " expired%s\n",
          json_integer_value(json_object_get(doc, "unowned")),
          json_integer_value(json_object_get(doc, "expired")),
          json_integer_value(json_object_get(doc, "recheck_ms"))
            ? "" : " (one read: run with --recheck to see expired leases)");
}

/* ======== The command ======== */

static const char s_usage[] =
  "usage: kcld status [OPTIONS]\n"
  "\n"
  "Shows each shard's lease (owner, checkpoint, lag) and each worker's\n"
  "leases, from the lease table and ListShards.\n"
  "\n"
  "  -c, --config PATH     endpoints, region, credentials, stream and lease\n"
  "                        table (default: the environment)\n"
  "  -s, --stream NAME     the stream (default: the config's)\n"
  "  -t, --table NAME      the lease table (default: the config's\n"
  "                        lease.table, itself by default the\n"
  "                        application); required without --config\n"
  "  -r, --recheck[=D]     read the table again after D (default: the\n"
  "                        failover time) and count owned leases whose\n"
  "                        counter did not move as expired\n"
  "      --no-lag          do not measure lag (no GetRecords calls)\n"
  "  -j, --json            print the JSON document\n"
  "\n"
  "Exit 0 when every shard that needs an owner has one, 3 when some are\n"
  "unowned (or expired, with --recheck), 1 when the table or stream could\n"
  "not be read, 2 for a usage error.\n";

int kcld_status_command(int argc, char **argv)
{
  static const struct option opts[] = {
    {"config", required_argument, NULL, 'c'},
    {"stream", required_argument, NULL, 's'},
    {"table", required_argument, NULL, 't'},
    {"recheck", optional_argument, NULL, 'r'},
    {"no-lag", no_argument, NULL, 'L'},
    {"json", no_argument, NULL, 'j'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
  };
  struct kcld_status_opts o;
  const char *path = NULL;
  int c, as_json = 0, recheck = 0, rc;
  int64_t recheck_ms = -1;
  json_t *doc = NULL;

  memset(&o, 0, sizeof(o));
  o.lag = 1;
  optind = 0;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":c:s:t:r::jh", opts, NULL)) != -1) {
    switch (c) {
    case 'c':
      path = optarg;
      break;
    case 's':
      o.stream = optarg;
      break;
    case 't':
      o.table = optarg;
      break;
    case 'r':
      recheck = 1;
      if (optarg && (kcld_config_parse_duration(optarg, &recheck_ms) != 0 ||
                     recheck_ms <= 0)) {
        fprintf(stderr, "kcld status: bad duration '%s'\n", optarg);
        return 2;
      }
      break;
    case 'L':
      o.lag = 0;
      break;
    case 'j':
      as_json = 1;
      break;
    case 'h':
      fputs(s_usage, stdout);
      return 0;
    default:
      fprintf(stderr, "kcld status: bad option '%s'\n\n%s", argv[optind - 1],
              s_usage);
      return 2;
    }
  }
  if (!path && !o.table && optind == argc) {
    fprintf(stderr, "kcld status: give --table NAME (the lease table, named "
            "after the application by default) or --config PATH\n\n%s",
            s_usage);
    return 2;
  }
  struct kcld_config *cfg = kcld_cli_config_args("status", argc, argv,
                                                 optind, path, o.stream,
                                                 s_usage, &rc);
  if (!cfg)
    return rc;
  o.cfg = cfg;
  if (recheck)
    o.recheck_ms = (uint64_t)(recheck_ms > 0 ? recheck_ms
                                             : cfg->lease.failover_ms);
  rc = kcld_status_collect(&o, &doc);
  kcld_config_free(cfg);
  kcld_http_global_cleanup();
  if (rc != 0)
    return 1;
  if (as_json) {
    json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', stdout);
  } else {
    kcld_status_print(doc, stdout);
  }
  rc = json_is_true(json_object_get(doc, "healthy")) ? 0 : 3;
  json_decref(doc);
  return fflush(stdout) == 0 ? rc : 1;
}
