/* chaos.c — the chaos driver: two consumer groups of kcld on a
 * multi-shard stream while a producer runs and faults are injected at
 * seeded random moments, with the default retry and on_failure settings.
 *
 * Included (#include "../chaos/chaos.c") by the short run in make test
 * (tests/integration/test_chaos_short.c) and by the long run of make chaos
 * (tests/chaos/test_chaos.c); everything here is static, the includer calls
 * chaos_run().
 *
 * The groups.  The lambda group (application chaosapp, three workers)
 * runs tests/processors/chaos_lambda.py as its lambda function, through a
 * wrapper (start.sh, written here) that exits at once while the worker's
 * flag file exists: a handler that cannot start.  The function appends
 * each record it handled to its worker's output file.  The sink group
 * (chaossink, one worker) writes every record to the DynamoDB table
 * chaossink_items with the dynamodb sink, keyed by shard and sequence
 * number.  The producer marks about one record in CH_POISON_EVERY as
 * poison: its data is not JSON, which the function reports in
 * batchItemFailures and the sink refuses (InvalidJSON), both record
 * failures.  Dead letters go to the default directory,
 * $STATE_DIRECTORY/dead-letter (the run's directory).
 *
 * Set-up.  kinesalite and dynalite run in emulator processes of their own;
 * in front of them run fault proxies (tests/emulators/lib/fault.js, each
 * in its own emulator process): fk for Kinesis (both groups), fd for the
 * lambda group's DynamoDB, fs for the sink group's (its lease table and
 * its sink).  The test itself (producer, table reads, SplitShard) talks to
 * the emulators directly.  A restarted kinesalite or dynalite would lose
 * its data, so an emulator outage is simulated at the proxy: for the
 * outage's duration every request's connection is closed unanswered (the
 * "reset" fault), which is what a client sees from a restarting endpoint.
 *
 * Events of the lambda group, one at a time, in a seeded shuffled order
 * (the seed is printed; CHAOS_SEED replays it): kill -9 of a worker and a
 * restart after a pause; SIGSTOP/SIGCONT for a moment; SIGSTOP past
 * lease.failover_time + the take interval (the worker comes back a zombie
 * whose leases were stolen); throttles (400
 * ProvisionedThroughputExceededException), 500s, resets and slow responses
 * on fk or fd for 1.5-3 s; a handler that fails to start for 2-5 s (the
 * flag file of a worker that holds leases: its child exits between
 * batches and every restart fails); SIGHUP with an invalid file
 * (batch.size 0), which kcld must refuse and run on, and at the event's
 * end with a valid one that switches batch.size (the log must say
 * "configuration reload refused" and "configuration reloaded" each time;
 * the worker must end with exit 0 at SIGTERM).  Beside them, the sink's own timeline:
 * its BatchWriteItem calls throttled or answered 500 for sink_min_ms ..
 * sink_max_ms, then a quiet gap.  Once, at 40% of the run, a SplitShard
 * of a random shard.
 *
 * Checks.  At least once: every produced record (shard + sequence number)
 * is handled by each group (in some worker's output with the produced
 * payload, whose checksum is valid; in the sink's table with the produced
 * fields) or, only if it is poison, dead-lettered for a record failure
 * (RetryAttemptsExhausted); no good record is ever dead-lettered and no
 * record skipped (no RECORD SKIPPED line).  Checkpoint safety: every
 * ~300 ms the lease tables are scanned and then the workers' output files
 * and the dead-letter files are read to their end (in that order: a
 * checkpoint seen by the scan was written after its records reached the
 * file, so the later read holds them; reading first would blame kcld for
 * records written between the read and the scan).  Every record up to a
 * checkpoint seen must be handled (for the sink group: found in its table
 * with BatchGetItem) or dead-lettered, poison records dead-lettered.  In
 * the lambda group a checkpoint that moved since the previous sample must
 * also be <= the highest sequence number of that shard that its owner (now
 * or at the previous sample) had handled, or a dead-lettered record; no
 * checkpoint ever moves back or leaves SHARD_END.  At the end, each open
 * shard's checkpoint is its last record and the split parent's is
 * SHARD_END, in both groups.  Duplicates (lambda group): bounded by the
 * un-checkpointed backlog (records handled beyond the checkpoint) sampled
 * around each failure, plus one batch per shard in flight per failure (a
 * handler that fails to start adds none: its child never reads the batch
 * it fails).  Order: within one worker's output a shard's records rise in
 * sequence order, except where a new run starts over (a replay from a
 * checkpoint after a lost lease or a restart); per partition key, no
 * child-shard record precedes the parent's last record of that key.
 *
 * The fan-out variant (chaos_opts.fanout): the last lambda worker reads
 * with fetch.mode: fanout from the kinesis_efo emulator, whose own Kinesis
 * calls go through fk to the shared kinesalite, so fk's faults end its
 * subscriptions (exception events) and leases move between polling and
 * fan-out workers; subscriptions also end every 10 s. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "awssync.h"
#include "base/seq.h"
#include "consume/record.h"
#include "fault.h"
#include "harness.h"
#include "proc.h"

#define CH_WORKERS 3
#define CH_KEYS 16
#define CH_BATCH 25
#define CH_FAILOVER_MS 1000
#define CH_TAKE_MS 2000
#define CH_MAX_EVENTS 256
#define CH_SINK_WORKERS 1
#define CH_SINK_FAILOVER_MS 5000
#define CH_POISON_EVERY 100 /* one record in about this many is poison */
#define CH_APP "chaosapp"
#define CH_SINK_APP "chaossink"
#define CH_SINK_TABLE "chaossink_items"

struct chaos_opts {
  unsigned seconds; /* how long the producer runs with faults */
  unsigned seed;    /* 0: from the clock (printed either way) */
  int shards;
  unsigned sink_min_ms, sink_max_ms; /* the sink's fault windows */
  int fanout;       /* 1: the fan-out variant (see the top) */
};

enum ch_kind {
  EV_KILL, EV_STOP, EV_ZOMBIE,
  EV_K_THROTTLE, EV_K_500, EV_K_RESET, EV_K_SLOW,
  EV_D_THROTTLE, EV_D_500, EV_D_RESET, EV_D_SLOW,
  EV_NOSTART, EV_HUP,
  EV_KINDS,
  /* The sink's own timeline, beside the events above. */
  EV_S_THROTTLE = EV_KINDS, EV_S_500
};

static const char *const ch_kind_name[EV_S_500 + 1] = {
  "kill-9+restart", "sigstop-short", "sigstop-zombie",
  "kinesis-throttle", "kinesis-500", "kinesis-reset", "kinesis-slow",
  "dynamodb-throttle", "dynamodb-500", "dynamodb-reset", "dynamodb-slow",
  "handler-nostart", "sighup-reload", "sink-throttle", "sink-500",
};

struct ch_event {
  enum ch_kind kind;
  int worker;
  unsigned long long start, end;
};

struct ch_file {
  char path[256];
  long off;          /* bytes consumed (whole lines only) */
  json_t *recs;      /* array of {shard, seq, pk, data} in file order */
  json_t *max;       /* shard -> highest handled seq */
  json_t *seen;      /* "shard/seq" -> true over every output (borrowed) */
};

struct ch_worker {
  char id[16], conf[256], log[256], flag[256];
  pid_t pid;
  int restarts;
  int batch;          /* batch.size in its file (reloads change it) */
  int hups_ok, hups_bad; /* SIGHUPs with a valid file, an invalid one */
  struct ch_file out;
};

/* A worker of the sink group: a DynamoDB sink whose table the checks
 * read. */
struct ch_sworker {
  char id[16], conf[256], log[256];
  pid_t pid;
};

struct ch_sample {
  unsigned long long t;
  long backlog;
};

struct chaos {
  struct chaos_opts o;
  struct kcld_emu emu, ed, fk, fd, fs, fe; /* fe: kinesis_efo (fan-out) */
  struct kcld_test_aws *aws;
  char dir[64];
  unsigned rng;
  struct ch_worker w[CH_WORKERS];
  struct ch_sworker sw[CH_SINK_WORKERS];
  json_t *seen;      /* "shard/seq" -> true: handled by the lambda group */
  json_t *dead;      /* "app/shard/seq" -> "condition/errorType" */
  json_t *dead_causes; /* "app condition/errorType" -> records */
  json_t *dl_off;    /* dead-letter file name -> bytes read */
  json_t *verified;  /* "app/shard" -> index of the first record whose
                        handling no checkpoint has vouched for yet */
  json_t *prev_sink; /* shard -> checkpoint of the sink group's last sample */
  long good_dead, sink_lookups, sink_faulted, nostart_refusals;
  struct ch_event sev[CH_MAX_EVENTS]; /* the sink's fault windows */
  int nsev;
  json_t *produced;  /* array of {shard, seq, pk, data, n} in put order */
  json_t *by_key;    /* "shard/seq" -> index into produced */
  json_t *shard_seqs; /* shard -> array of seqs in order */
  json_t *prev;      /* shard -> {owner, checkpoint} of the last sample */
  char parent[64];   /* the split shard, "" before the split */
  struct ch_event ev[CH_MAX_EVENTS];
  int nev;
  struct ch_sample *samples;
  size_t nsamples, capsamples;
  long samples_checked, ckpt_moves_checked, faults_injected;
  unsigned long long t0;
  char violation[1024];
};

/* ======== Small helpers ======== */

static unsigned ch_rand(struct chaos *c, unsigned lo, unsigned hi)
{
  c->rng = c->rng * 1103515245u + 12345u;
  return lo + ((c->rng >> 8) % (hi - lo + 1));
}

static uint32_t ch_fnv(const char *s)
{
  uint32_t h = 2166136261u;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 16777619u;
  return h;
}

/* A good payload is the JSON {"k":"pk-K","n":N,"c":"CHECKSUM"} (checksum:
 * FNV-1a of "pk-K|N", hex), which the lambda function and the DynamoDB
 * sink both take; a poison one is "poison pk-K|N|CHECKSUM", not JSON,
 * which both fail as a record failure. */
static void ch_payload(char *buf, size_t n, const char *pk, long i,
                       int poison)
{
  char body[64];
  snprintf(body, sizeof(body), "%s|%ld", pk, i);
  if (poison)
    snprintf(buf, n, "poison %s|%08x", body, ch_fnv(body));
  else
    snprintf(buf, n, "{\"k\":\"%s\",\"n\":%ld,\"c\":\"%08x\"}", pk, i,
             ch_fnv(body));
}

/* The checksum of payload parts k, n, c. */
static int ch_sum_ok(const char *k, long i, const char *sum)
{
  char body[64], want[16];
  snprintf(body, sizeof(body), "%s|%ld", k, i);
  snprintf(want, sizeof(want), "%08x", ch_fnv(body));
  return strcmp(sum, want) == 0;
}

static int ch_payload_ok(const char *data)
{
  char k[24], sum[16];
  long i;
  return sscanf(data, "{\"k\":\"%23[^\"]\",\"n\":%ld,\"c\":\"%15[0-9a-f]\"}",
                k, &i, sum) == 3 && ch_sum_ok(k, i, sum);
}

static json_t *ch_call(struct chaos *c, enum kcld_aws_service svc,
                       const char *op, json_t *req)
{
  const char *type = NULL;
  json_t *res = kcld_test_aws_call(c->aws, svc, op, req, &type);
  json_decref(req);
  if (!res)
    fail_msg("%s failed: %s", op, type);
  return res;
}

static const char *ch_attr_s(json_t *item, const char *name)
{
  return json_string_value(json_object_get(json_object_get(item, name), "S"));
}

static int ch_is_seq(const char *s)
{
  return s && *s >= '0' && *s <= '9';
}

static void ch_log_tail(const char *path)
{
  size_t len = 0;
  char *text = kcld_test_slurp(path, &len);
  if (text) {
    size_t from = len > 4000 ? len - 4000 : 0;
    fprintf(stderr, "---- %s (last %zu bytes) ----\n%s\n", path, len - from,
            text + from);
    free(text);
  }
}

static void ch_wait_active(struct chaos *c, const char *stream)
{
  for (int i = 0; i < 200; i++) {
    json_t *r = ch_call(c, KCLD_AWS_KINESIS, "DescribeStreamSummary",
                        json_pack("{s:s}", "StreamName", stream));
    const char *st = json_string_value(json_object_get(
      json_object_get(r, "StreamDescriptionSummary"), "StreamStatus"));
    int active = st && strcmp(st, "ACTIVE") == 0;
    json_decref(r);
    if (active)
      return;
    kcld_test_sleep_ms(50);
  }
  fail_msg("stream %s never became ACTIVE", stream);
}

/* ======== Producer ======== */

static void ch_produce(struct chaos *c, int count)
{
  json_t *recs = json_array(), *meta = json_array();
  for (int i = 0; i < count; i++) {
    char pk[16], data[96];
    unsigned char b64[160];
    long n = (long)json_array_size(c->produced) + i;
    int poison = ch_rand(c, 1, CH_POISON_EVERY) == 1;
    snprintf(pk, sizeof(pk), "pk-%u", ch_rand(c, 0, CH_KEYS - 1));
    ch_payload(data, sizeof(data), pk, n, poison);
    EVP_EncodeBlock(b64, (const unsigned char *)data, (int)strlen(data));
    json_array_append_new(recs, json_pack("{s:s,s:s}", "Data", (char *)b64,
                                          "PartitionKey", pk));
    json_array_append_new(meta, json_pack("{s:s,s:s,s:b}", "pk", pk, "data",
                                          data, "poison", poison));
  }
  json_t *r = ch_call(c, KCLD_AWS_KINESIS, "PutRecords",
                      json_pack("{s:s,s:o}", "StreamName", "chaos",
                                "Records", recs));
  json_t *entries = json_object_get(r, "Records");
  assert_int_equal(json_integer_value(json_object_get(r,
                                                      "FailedRecordCount")),
                   0);
  for (int i = 0; i < count; i++) {
    json_t *e = json_array_get(entries, (size_t)i);
    json_t *m = json_array_get(meta, (size_t)i);
    const char *shard = json_string_value(json_object_get(e, "ShardId"));
    const char *seq = json_string_value(json_object_get(e, "SequenceNumber"));
    char key[160];
    json_t *list = json_object_get(c->shard_seqs, shard);
    if (!list) {
      list = json_array();
      json_object_set_new(c->shard_seqs, shard, list);
    }
    /* kinesalite hands out rising sequence numbers per shard. */
    if (json_array_size(list) > 0)
      assert_true(kcld_seq_compare(
                    json_string_value(json_array_get(
                      list, json_array_size(list) - 1)), seq) < 0);
    json_array_append_new(list, json_string(seq));
    snprintf(key, sizeof(key), "%s/%s", shard, seq);
    json_object_set_new(c->by_key, key,
                        json_integer((json_int_t)json_array_size(
                          c->produced)));
    json_array_append_new(c->produced,
                          json_pack("{s:s,s:s,s:O,s:O,s:O}", "shard", shard,
                                    "seq", seq, "pk", json_object_get(m, "pk"),
                                    "data", json_object_get(m, "data"),
                                    "poison", json_object_get(m, "poison")));
  }
  json_decref(r);
  json_decref(meta);
}

/* ======== Workers' output ======== */

static void ch_file_line(struct ch_file *f, const char *line)
{
  json_error_t err;
  json_t *ev = json_loads(line, 0, &err);
  if (!ev)
    fail_msg("%s: a line that is not JSON: %.200s", f->path, line);
  json_t *k = json_object_get(ev, "kinesis");
  const char *id = json_string_value(json_object_get(ev, "eventID"));
  const char *b64 = json_string_value(json_object_get(k, "data"));
  const char *seq = json_string_value(json_object_get(k, "sequenceNumber"));
  const char *colon = id ? strchr(id, ':') : NULL;
  unsigned char raw[256];
  size_t len = b64 ? strlen(b64) : 0;
  if (!colon || !b64 || !seq || len >= 340)
    fail_msg("%s: a record line without a shard:sequence eventID, data or "
             "sequenceNumber: %.300s", f->path, line);
  int n = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)len);
  assert_true(n >= 0);
  if (len > 0 && b64[len - 1] == '=')
    n--;
  if (len > 1 && b64[len - 2] == '=')
    n--;
  char shard[128];
  snprintf(shard, sizeof(shard), "%.*s", (int)(colon - id), id);
  json_array_append_new(
    f->recs, json_pack("{s:s,s:s,s:O,s:s%}", "shard", shard, "seq", seq, "pk",
                       json_object_get(k, "partitionKey"), "data",
                       (char *)raw, (size_t)n));
  const char *hi = json_string_value(json_object_get(f->max, shard));
  if (!hi || kcld_seq_compare(hi, seq) < 0)
    json_object_set_new(f->max, shard, json_string(seq));
  char key[192];
  snprintf(key, sizeof(key), "%s/%s", shard, seq);
  json_object_set_new(f->seen, key, json_true());
  json_decref(ev);
}

/* Reads the whole lines appended since the last call. */
static void ch_file_catch_up(struct ch_file *f)
{
  FILE *fp = fopen(f->path, "r");
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  if (!fp)
    return;
  if (fseek(fp, f->off, SEEK_SET) != 0) {
    fclose(fp);
    return;
  }
  while ((n = getline(&line, &cap, fp)) > 0) {
    if (line[n - 1] != '\n')
      break; /* being written right now: read it next time */
    f->off += n;
    ch_file_line(f, line);
  }
  free(line);
  fclose(fp);
}

/* Creates the configuration file `path` with what both groups share, for
 * the caller to add its handler section and close.  retry and on_failure
 * keep their defaults (dead letters go to $STATE_DIRECTORY/dead-letter,
 * the run's directory: see kcld_test_spawn_kcld). */
static FILE *ch_config_open(const char *path, const char *app,
                            const char *id, const char *kinesis,
                            const char *dynamodb, int failover_ms,
                            int batch, int fanout)
{
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fprintf(f,
          "application: %s\n"
          "stream: chaos\n"
          "region: us-east-1\n"
          "worker_id: %s\n"
          "endpoints:\n"
          "  kinesis: %s\n"
          "  dynamodb: %s\n"
          "credentials:\n"
          "  access_key_id: test\n"
          "  secret_access_key: test\n"
          "shutdown_timeout: 10s\n"
          "workers: 2\n"
          "lease:\n"
          "  failover_time: %dms\n"
          "  take_interval: %dms\n"
          "  shard_sync_interval: 1s\n"
          "fetch:\n"
          "  idle_time: 200ms\n"
          "%s"
          "batch:\n"
          "  size: %d\n"
          "metrics:\n"
          "  listen: \"\"\n"
          "log:\n"
          "  level: info\n",
          app, id, kinesis, dynamodb, failover_ms, CH_TAKE_MS,
          fanout ? "  mode: fanout\n" : "", batch);
  return f;
}

/* The lambda group: the function of tests/processors/chaos_lambda.py
 * behind the wrapper start.sh, which exits at once while the worker's flag
 * file exists. */
static void ch_write_config(struct chaos *c, struct ch_worker *w, int batch)
{
  int fanout = c->o.fanout && w == &c->w[CH_WORKERS - 1];
  FILE *f = ch_config_open(w->conf, CH_APP, w->id,
                           fanout ? kcld_emu_url(&c->fe, "kinesis_efo")
                                  : kcld_emu_url(&c->fk, "fault"),
                           kcld_emu_url(&c->fd, "fault"), CH_FAILOVER_MS,
                           batch, fanout);
  fprintf(f,
          "handler:\n"
          "  type: lambda\n"
          "  command: [\"%s/start.sh\", \"%s\", \"%s\", \"%s\",\n"
          "            \"%s/tests/processors/chaos_lambda.py\"]\n",
          c->dir, w->flag, w->out.path, kcld_test_python(),
          kcld_test_root());
  fclose(f);
}

/* The sink group: every record to the table CH_SINK_TABLE, keyed by shard
 * and sequence number; its DynamoDB endpoint (lease table and sink) is
 * the proxy fs.  No process event hits its one worker, so its leases
 * need no quick failover; a 1 s one made a loaded machine's slow renewals
 * lose them. */
static void ch_write_sink_config(struct chaos *c, struct ch_sworker *w)
{
  FILE *f = ch_config_open(w->conf, CH_SINK_APP, w->id,
                           kcld_emu_url(&c->fk, "fault"),
                           kcld_emu_url(&c->fs, "fault"),
                           CH_SINK_FAILOVER_MS, CH_BATCH, 0);
  fprintf(f,
          "handler:\n"
          "  type: dynamodb\n"
          "  table: %s\n"
          "  key:\n"
          "    pk: \"${shardId}\"\n",
          CH_SINK_TABLE);
  fclose(f);
}

static void ch_write_wrapper(struct chaos *c)
{
  char path[128];
  FILE *f;
  snprintf(path, sizeof(path), "%s/start.sh", c->dir);
  f = fopen(path, "w");
  assert_non_null(f);
  fprintf(f,
          "#!/bin/sh\n"
          "# start.sh FLAG OUT PYTHON SCRIPT: fails to start while FLAG "
          "exists\n"
          "if [ -e \"$1\" ]; then\n"
          "  echo \"chaos: $1 exists: the handler does not start\" >&2\n"
          "  echo refused >> \"$1.refused\"\n"
          "  exit 1\n"
          "fi\n"
          "exec \"$3\" \"$4\" \"$1\" \"$2\"\n");
  fclose(f);
  assert_int_equal(chmod(path, 0755), 0);
}

/* ======== Lease table samples ======== */

static json_t *ch_scan(struct chaos *c, const char *table)
{
  const char *type = NULL;
  json_t *req = json_pack("{s:s,s:b}", "TableName", table,
                          "ConsistentRead", 1);
  json_t *r = kcld_test_aws_call(c->aws, KCLD_AWS_DYNAMODB, "Scan", req,
                                 &type);
  json_t *items;
  json_decref(req);
  if (!r) {
    if (strcmp(type, "ResourceNotFoundException") != 0)
      fail_msg("Scan failed: %s", type);
    return json_array();
  }
  items = json_incref(json_object_get(r, "Items"));
  json_decref(r);
  return items;
}

static struct ch_worker *ch_worker_by_id(struct chaos *c, const char *id)
{
  for (int i = 0; id && i < CH_WORKERS; i++)
    if (strcmp(c->w[i].id, id) == 0)
      return &c->w[i];
  return NULL;
}

/* The highest sequence number of `shard` in worker `id`'s output, for
 * messages: "-" when none. */
static const char *ch_max_of(struct chaos *c, const char *id,
                             const char *shard)
{
  struct ch_worker *w = ch_worker_by_id(c, id);
  const char *s = w ? json_string_value(json_object_get(w->out.max, shard))
                    : NULL;
  return s ? s : "-";
}

/* The highest sequence number of `shard` in any worker's output. */
static const char *ch_max_all(struct chaos *c, const char *shard)
{
  const char *best = NULL;
  for (int i = 0; i < CH_WORKERS; i++) {
    const char *s = json_string_value(json_object_get(c->w[i].out.max,
                                                      shard));
    if (s && (!best || kcld_seq_compare(best, s) < 0))
      best = s;
  }
  return best;
}

/* Records of `shard` with ckpt < seq <= hi (ckpt NULL: from the start). */
static long ch_count_between(struct chaos *c, const char *shard,
                             const char *ckpt, const char *hi)
{
  json_t *list = json_object_get(c->shard_seqs, shard), *s;
  size_t i;
  long n = 0;
  if (!hi)
    return 0;
  json_array_foreach(list, i, s) {
    const char *q = json_string_value(s);
    if ((!ckpt || kcld_seq_compare(q, ckpt) > 0) &&
        kcld_seq_compare(q, hi) <= 0)
      n++;
  }
  return n;
}

#include "chaos_verify.c"

/* Scans the lease tables, then reads the outputs and the dead letters (so
 * every checkpoint seen was written before the files were read), checks
 * moved checkpoints against their owners' outputs, verifies every record
 * up to each checkpoint and records the backlog. */
static void ch_sample(struct chaos *c)
{
  json_t *items = ch_scan(c, CH_APP), *item;
  json_t *sink_items = ch_scan(c, CH_SINK_APP);
  size_t i;
  long backlog = 0;
  for (int w = 0; w < CH_WORKERS; w++)
    ch_file_catch_up(&c->w[w].out);
  ch_dead_catch_up(c);
  ch_sample_sink(c, sink_items);
  json_decref(sink_items);
  json_array_foreach(items, i, item) {
    const char *shard = ch_attr_s(item, "leaseKey");
    const char *owner = ch_attr_s(item, "leaseOwner");
    const char *ckpt = ch_attr_s(item, "checkpoint");
    json_t *prev = json_object_get(c->prev, shard);
    const char *pckpt = json_string_value(json_object_get(prev,
                                                          "checkpoint"));
    const char *powner = json_string_value(json_object_get(prev, "owner"));
    if (!shard)
      continue;
    /* A checkpoint never moves back (a zombie writing an old position
     * over its successor's would). */
    if (ch_is_seq(ckpt) && ch_is_seq(pckpt) &&
        kcld_seq_compare(ckpt, pckpt) < 0 && !c->violation[0])
      snprintf(c->violation, sizeof(c->violation),
               "checkpoint of %s moved back from %s (owner %s) to %s "
               "(owner %s)", shard, pckpt, powner ? powner : "-", ckpt,
               owner ? owner : "-");
    if (pckpt && strcmp(pckpt, "SHARD_END") == 0 &&
        (!ckpt || strcmp(ckpt, "SHARD_END") != 0) && !c->violation[0])
      snprintf(c->violation, sizeof(c->violation),
               "checkpoint of %s moved from SHARD_END to %s", shard,
               ckpt ? ckpt : "(none)");
    if (ch_is_seq(ckpt) && (!pckpt || strcmp(pckpt, ckpt) != 0)) {
      int ok = 0;
      const char *cand[2] = {owner, powner};
      c->ckpt_moves_checked++;
      for (int j = 0; j < 2 && !ok; j++) {
        struct ch_worker *w = ch_worker_by_id(c, cand[j]);
        const char *hi = w ? json_string_value(json_object_get(w->out.max,
                                                               shard))
                           : NULL;
        ok = hi && kcld_seq_compare(ckpt, hi) <= 0;
      }
      /* A checkpoint on a dead-lettered poison record is past what any
       * output holds: ch_verify below checks everything up to it. */
      ok = ok || ch_is_dead(c, CH_APP, shard, ckpt);
      if (!ok && !c->violation[0])
        snprintf(c->violation, sizeof(c->violation),
                 "checkpoint %s of %s (owner %s, before %s) is past every "
                 "record its owner had handled (highest: %s by %s, %s by %s)",
                 ckpt, shard, owner ? owner : "-", powner ? powner : "-",
                 ch_max_of(c, owner, shard), owner ? owner : "-",
                 ch_max_of(c, powner, shard), powner ? powner : "-");
    }
    ch_verify(c, CH_APP, shard, ckpt);
    if (!ckpt || ch_is_seq(ckpt) || strcmp(ckpt, "TRIM_HORIZON") == 0)
      backlog += ch_count_between(c, shard, ch_is_seq(ckpt) ? ckpt : NULL,
                                  ch_max_all(c, shard));
    json_object_set_new(c->prev, shard,
                        json_pack("{s:s?,s:s?}", "owner", owner, "checkpoint",
                                  ckpt));
  }
  json_decref(items);
  c->samples_checked++;
  if (c->nsamples == c->capsamples) {
    c->capsamples = c->capsamples ? 2 * c->capsamples : 256;
    c->samples = realloc(c->samples, c->capsamples * sizeof(*c->samples));
    assert_non_null(c->samples);
  }
  c->samples[c->nsamples].t = kcld_test_now_ms();
  c->samples[c->nsamples].backlog = backlog;
  c->nsamples++;
}

/* ======== Faults ======== */

/* Scripts one proxy: fk (kinesis), fd (the lambda group's DynamoDB) or fs
 * (the sink group's DynamoDB: its lease table and its sink); `step` NULL
 * passes everything on. */
static void ch_proxy(struct chaos *c, struct kcld_emu *fx, const char *step)
{
  int dynamo = fx != &c->fk;
  const char *url = kcld_emu_url(fx, "fault");
  const char *up = dynamo ? kcld_emu_url(&c->ed, "dynamodb")
                          : kcld_emu_url(&c->emu, "kinesis");
  char script[512];
  if (step)
    snprintf(script, sizeof(script),
             "{\"upstream\":\"%s\",\"steps\":[%s],\"then\":\"repeat-last\"}",
             up, step);
  else
    snprintf(script, sizeof(script),
             "{\"upstream\":\"%s\",\"steps\":[],\"then\":\"proxy\"}", up);
  if (kcld_fault_script(url, script) != 0)
    fail_msg("could not script the %s fault proxy",
             dynamo ? "dynamodb" : "kinesis");
}

static const char *ch_step(enum ch_kind k)
{
  switch (k) {
  case EV_S_THROTTLE: /* the sink's writes only, not its lease table's */
    return "{\"target\":\"BatchWriteItem\",\"status\":400,\"body\":{"
           "\"__type\":\"ProvisionedThroughputExceededException\","
           "\"message\":\"Rate exceeded (injected)\"}}";
  case EV_S_500:
    return "{\"target\":\"BatchWriteItem\",\"status\":500}";
  case EV_K_THROTTLE:
  case EV_D_THROTTLE:
    return "{\"status\":400,\"body\":{\"__type\":"
           "\"ProvisionedThroughputExceededException\","
           "\"message\":\"Rate exceeded (injected)\"}}";
  case EV_K_500:
  case EV_D_500:
    return "{\"status\":500}";
  case EV_K_RESET:
  case EV_D_RESET:
    return "{\"close\":true}";
  case EV_K_SLOW:
  case EV_D_SLOW:
    return "{\"delay_ms\":1200}";
  default:
    return NULL;
  }
}

static void ch_event_begin(struct chaos *c, struct ch_event *e)
{
  struct ch_worker *w = &c->w[e->worker];
  unsigned long long now = kcld_test_now_ms();
  e->start = now;
  c->faults_injected++;
  switch (e->kind) {
  case EV_KILL:
    kill(w->pid, SIGKILL);
    kcld_test_reap(w->pid);
    w->pid = 0;
    e->end = now + ch_rand(c, 300, 1500);
    break;
  case EV_STOP:
    kill(w->pid, SIGSTOP);
    e->end = now + ch_rand(c, 200, 600);
    break;
  case EV_ZOMBIE:
    kill(w->pid, SIGSTOP);
    e->end = now + CH_FAILOVER_MS + CH_TAKE_MS + ch_rand(c, 500, 1500);
    break;
  case EV_NOSTART: {
    /* The child exits after its next answer; the wrapper then fails to
     * start it until the flag is gone. */
    FILE *f = fopen(w->flag, "w");
    assert_non_null(f);
    fclose(f);
    e->end = now + ch_rand(c, 2000, 5000);
    break;
  }
  case EV_HUP:
    /* First a reload of an invalid file (batch.size 0), which kcld must
     * refuse and run on; at the end a valid one (ch_event_end). */
    ch_write_config(c, w, 0);
    w->hups_bad++;
    kill(w->pid, SIGHUP);
    e->end = now + ch_rand(c, 800, 1500);
    break;
  default:
    ch_proxy(c, e->kind >= EV_D_THROTTLE ? &c->fd : &c->fk,
             ch_step(e->kind));
    e->end = now + ch_rand(c, 1500, 3000);
    break;
  }
  printf("chaos: t=%5.1fs %-18s %s\n", (double)(now - c->t0) / 1e3,
         ch_kind_name[e->kind],
         e->kind <= EV_ZOMBIE || e->kind == EV_NOSTART ||
           e->kind == EV_HUP ? w->id : "");
}

static void ch_event_end(struct chaos *c, struct ch_event *e)
{
  struct ch_worker *w = &c->w[e->worker];
  switch (e->kind) {
  case EV_KILL:
    w->pid = kcld_test_spawn_kcld(w->conf, w->log);
    w->restarts++;
    break;
  case EV_STOP:
  case EV_ZOMBIE:
    kill(w->pid, SIGCONT);
    break;
  case EV_NOSTART:
    assert_int_equal(unlink(w->flag), 0);
    break;
  case EV_HUP:
    if (!kcld_test_pid_alive(w->pid))
      ch_violation(c, "%s did not survive SIGHUP with an invalid file",
                   w->id);
    /* A valid file again, batch.size switched between CH_BATCH and
     * CH_BATCH - 5 (the duplicate bound's batch stays the larger): the
     * reload applies it; a later restart reads it. */
    w->batch = w->batch == CH_BATCH ? CH_BATCH - 5 : CH_BATCH;
    ch_write_config(c, w, w->batch);
    w->hups_ok++;
    kill(w->pid, SIGHUP);
    break;
  default:
    ch_proxy(c, e->kind >= EV_D_THROTTLE ? &c->fd : &c->fk, NULL);
    break;
  }
  e->end = kcld_test_now_ms();
}

/* The sink's timeline: its writes throttled or failing with 500s for
 * sink_min_ms..sink_max_ms, then a quiet gap. */
static void ch_sink_begin(struct chaos *c, struct ch_event *e,
                          unsigned long long until)
{
  unsigned long long now = kcld_test_now_ms();
  e->kind = ch_rand(c, 0, 1) ? EV_S_THROTTLE : EV_S_500;
  e->worker = 0;
  e->start = now;
  e->end = now + ch_rand(c, c->o.sink_min_ms, c->o.sink_max_ms);
  if (e->end > until)
    e->end = until;
  ch_proxy(c, &c->fs, ch_step(e->kind));
  printf("chaos: t=%5.1fs %-18s for %.1f s\n", (double)(now - c->t0) / 1e3,
         ch_kind_name[e->kind], (double)(e->end - now) / 1e3);
}

static void ch_sink_end(struct chaos *c, struct ch_event *e)
{
  long used = kcld_fault_count(kcld_emu_url(&c->fs, "fault"), "steps_used",
                               NULL);
  if (used > 0)
    c->sink_faulted += used;
  ch_proxy(c, &c->fs, NULL);
  e->end = kcld_test_now_ms();
}

/* ======== SplitShard ======== */

static unsigned __int128 ch_u128(const char *s)
{
  unsigned __int128 v = 0;
  for (; *s >= '0' && *s <= '9'; s++)
    v = v * 10 + (unsigned)(*s - '0');
  return v;
}

static void ch_u128_str(unsigned __int128 v, char *buf, size_t n)
{
  char tmp[48];
  int i = (int)sizeof(tmp) - 1;
  tmp[i] = '\0';
  do {
    tmp[--i] = (char)('0' + (int)(v % 10));
    v /= 10;
  } while (v && i > 0);
  snprintf(buf, n, "%s", tmp + i);
}

static void ch_split(struct chaos *c)
{
  json_t *r = ch_call(c, KCLD_AWS_KINESIS, "ListShards",
                      json_pack("{s:s}", "StreamName", "chaos"));
  json_t *shards = json_object_get(r, "Shards");
  json_t *s = json_array_get(shards, ch_rand(c, 0, (unsigned)c->o.shards - 1));
  json_t *range = json_object_get(s, "HashKeyRange");
  unsigned __int128 lo = ch_u128(json_string_value(
    json_object_get(range, "StartingHashKey")));
  unsigned __int128 hi = ch_u128(json_string_value(
    json_object_get(range, "EndingHashKey")));
  char mid[48];
  ch_u128_str(lo + (hi - lo) / 2 + 1, mid, sizeof(mid));
  snprintf(c->parent, sizeof(c->parent), "%s",
           json_string_value(json_object_get(s, "ShardId")));
  json_decref(r);
  json_decref(ch_call(c, KCLD_AWS_KINESIS, "SplitShard",
                      json_pack("{s:s,s:s,s:s}", "StreamName", "chaos",
                                "ShardToSplit", c->parent,
                                "NewStartingHashKey", mid)));
  ch_wait_active(c, "chaos");
  printf("chaos: SplitShard %s at %s\n", c->parent, mid);
}

/* ======== Final checks ======== */

#include "chaos_final.c"

/* A worker that holds a lease of the lambda group by the last sample,
 * from `from` on; `from` when none does. */
static int ch_lease_holder(struct chaos *c, int from)
{
  for (int k = 0; k < CH_WORKERS; k++) {
    int w = (from + k) % CH_WORKERS;
    const char *shard;
    json_t *p;
    json_object_foreach(c->prev, shard, p) {
      const char *owner = json_string_value(json_object_get(p, "owner"));
      if (owner && strcmp(owner, c->w[w].id) == 0)
        return w;
    }
  }
  return from;
}

/* ======== The run ======== */

/* `path` (256 bytes): <the run's directory>/<id>.<ext>. */
static void ch_worker_file(const struct chaos *c, const char *id,
                           const char *ext, char path[256])
{
  char dir[64];
  memcpy(dir, c->dir, sizeof(dir));
  dir[sizeof(dir) - 1] = '\0';
  snprintf(path, 256, "%s/%s.%s", dir, id, ext);
}

/* Worker `i` of a group: its id "<group>-<a + i>", its config and log
 * paths in the run's directory. */
static void ch_worker_paths(const struct chaos *c, char group, int i,
                            char id[16], char conf[256], char log[256])
{
  snprintf(id, 16, "%c-%c", group, 'a' + i);
  ch_worker_file(c, id, "yaml", conf);
  ch_worker_file(c, id, "log", log);
}

/* The emulators, the fault proxies, the sink's table, the stream and the
 * workers of both groups, started. */
static void ch_begin(struct chaos *c)
{
  /* kinesalite and dynalite in processes of their own: on a loaded
   * machine one process serving both fell behind the lease renewals. */
  assert_int_equal(kcld_emu_start(&c->emu, "kinesis"), 0);
  assert_int_equal(kcld_emu_start(&c->ed, "dynamodb"), 0);
  assert_int_equal(kcld_emu_start(&c->fk, "fault"), 0);
  assert_int_equal(kcld_emu_start(&c->fd, "fault"), 0);
  assert_int_equal(kcld_emu_start(&c->fs, "fault"), 0);
  c->aws = kcld_test_aws_new(kcld_emu_url(&c->emu, "kinesis"),
                             kcld_emu_url(&c->ed, "dynamodb"), NULL);
  snprintf(c->dir, sizeof(c->dir), "/tmp/kcld-chaos-XXXXXX");
  assert_non_null(mkdtemp(c->dir));
  c->produced = json_array();
  c->by_key = json_object();
  c->shard_seqs = json_object();
  c->prev = json_object();
  c->seen = json_object();
  c->dead = json_object();
  c->dead_causes = json_object();
  c->dl_off = json_object();
  c->verified = json_object();
  c->prev_sink = json_object();
  ch_proxy(c, &c->fk, NULL);
  ch_proxy(c, &c->fd, NULL);
  ch_proxy(c, &c->fs, NULL);
  if (c->o.fanout)
    ch_fanout_start(c);
  ch_write_wrapper(c);
  json_decref(ch_call(
    c, KCLD_AWS_DYNAMODB, "CreateTable",
    json_pack("{s:s,s:[{s:s,s:s},{s:s,s:s}],s:[{s:s,s:s},{s:s,s:s}],s:s}",
              "TableName", CH_SINK_TABLE, "AttributeDefinitions",
              "AttributeName", "pk", "AttributeType", "S",
              "AttributeName", "sk", "AttributeType", "S", "KeySchema",
              "AttributeName", "pk", "KeyType", "HASH",
              "AttributeName", "sk", "KeyType", "RANGE",
              "BillingMode", "PAY_PER_REQUEST")));

  json_decref(ch_call(c, KCLD_AWS_KINESIS, "CreateStream",
                      json_pack("{s:s,s:i}", "StreamName", "chaos",
                                "ShardCount", c->o.shards)));
  ch_wait_active(c, "chaos");

  for (int i = 0; i < CH_WORKERS; i++) {
    struct ch_worker *w = &c->w[i];
    ch_worker_paths(c, 'w', i, w->id, w->conf, w->log);
    ch_worker_file(c, w->id, "jsonl", w->out.path);
    ch_worker_file(c, w->id, "nostart", w->flag);
    w->out.recs = json_array();
    w->out.max = json_object();
    w->out.seen = c->seen;
    w->batch = CH_BATCH;
    ch_write_config(c, w, w->batch);
    w->pid = kcld_test_spawn_kcld(w->conf, w->log);
  }
  for (int i = 0; i < CH_SINK_WORKERS; i++) {
    struct ch_sworker *w = &c->sw[i];
    ch_worker_paths(c, 's', i, w->id, w->conf, w->log);
    ch_write_sink_config(c, w);
    w->pid = kcld_test_spawn_kcld(w->conf, w->log);
  }
}

/* The schedule of the lambda group's events into order[]: every kind once
 * in a shuffled order, then random kinds. */
static void ch_schedule(struct chaos *c, enum ch_kind order[EV_KINDS])
{
  for (int i = 0; i < EV_KINDS; i++)
    order[i] = (enum ch_kind)i;
  for (int i = EV_KINDS - 1; i > 0; i--) {
    int j = (int)ch_rand(c, 0, (unsigned)i);
    enum ch_kind t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  /* A kill -9, a zombie and a handler that fails to start come early, so
   * that even the shortest run has all three. */
  for (int i = 0; i < EV_KINDS; i++) {
    int want = order[i] == EV_KILL ? (int)ch_rand(c, 0, 1)
             : order[i] == EV_NOSTART ? 2
             : order[i] == EV_ZOMBIE ? (int)ch_rand(c, 3, 4)
             : order[i] == EV_HUP ? 5 : -1;
    if (want >= 0 && i > want) {
      enum ch_kind t = order[want];
      order[want] = order[i];
      order[i] = t;
      i = -1; /* the swap may have moved the other one: look again */
    }
  }
}

/* The producer runs for the run's seconds while the events of `order`
 * (then random ones) and the sink's fault windows come and go, the lease
 * tables sampled every 300 ms; the split at 40%. */
static void ch_faults(struct chaos *c, const enum ch_kind order[EV_KINDS])
{
  unsigned long long t0 = kcld_test_now_ms();
  unsigned long long stop_at = t0 + c->o.seconds * 1000ull;
  unsigned long long split_at = t0 + c->o.seconds * 400ull;
  unsigned long long next_sample = t0, next_event = t0 + 2500;
  unsigned long long next_sink = t0 + 2000;
  struct ch_event *cur = NULL, *scur = NULL;
  int split_done = 0;
  c->t0 = t0; /* the time base of the printed schedule */
  while (kcld_test_now_ms() < stop_at) {
    unsigned long long now;
    ch_produce(c, 6);
    kcld_test_sleep_ms(30);
    now = kcld_test_now_ms();
    if (now >= next_sample) {
      ch_sample(c);
      next_sample = now + 300;
    }
    if (!split_done && now >= split_at) {
      ch_split(c);
      split_done = 1;
    }
    if (cur && now >= cur->end) {
      ch_event_end(c, cur);
      cur = NULL;
      next_event = now + ch_rand(c, 500, 1500);
    }
    if (!cur && now >= next_event && now + 3000 < stop_at &&
        c->nev < CH_MAX_EVENTS) {
      cur = &c->ev[c->nev];
      cur->kind = c->nev < EV_KINDS ? order[c->nev]
                                    : (enum ch_kind)ch_rand(c, 0,
                                                            EV_KINDS - 1);
      cur->worker = (int)ch_rand(c, 0, CH_WORKERS - 1);
      if (cur->kind == EV_NOSTART)
        cur->worker = ch_lease_holder(c, cur->worker);
      c->nev++;
      ch_event_begin(c, cur);
    }
    if (scur && now >= scur->end) {
      ch_sink_end(c, scur);
      scur = NULL;
      next_sink = now + ch_rand(c, c->o.sink_min_ms / 2, c->o.sink_min_ms);
    }
    /* The last window ends 2 s before production does, so that the drain
     * does not wait out the sink's longest backoff. */
    if (!scur && now >= next_sink &&
        now + c->o.sink_min_ms + 2000 < stop_at && c->nsev < CH_MAX_EVENTS) {
      scur = &c->sev[c->nsev++];
      ch_sink_begin(c, scur, stop_at - 2000);
    }
  }
  if (cur)
    ch_event_end(c, cur);
  if (scur)
    ch_sink_end(c, scur);
  if (!split_done)
    ch_split(c);
}

/* No more records or faults: waits until everything is handled; returns
 * how long that took (ms). */
static unsigned long long ch_drain(struct chaos *c)
{
  unsigned long long drain0 = kcld_test_now_ms(), drained = 0;
  long missing = 0;
  const char *first_missing = NULL;
  while (kcld_test_now_ms() - drain0 < 90000) {
    ch_sample(c);
    if (ch_all_handled(c, &missing, &first_missing)) {
      drained = kcld_test_now_ms() - drain0;
      break;
    }
    kcld_test_sleep_ms(250);
  }
  if (!drained) {
    ch_dump_logs(c);
    fail_msg("seed %u: %ld of %zu records never handled within 90 s of the "
             "end of production (first: %s)", c->o.seed, missing,
             json_array_size(c->produced), first_missing);
  }
  return drained;
}

/* Lets the last checkpoints land, then stops every worker with SIGTERM;
 * each must exit 0.  Returns how long they took (ms). */
static unsigned long long ch_stop_workers(struct chaos *c)
{
  kcld_test_sleep_ms(1500);
  ch_sample(c);
  unsigned long long term0 = kcld_test_now_ms();
  for (int i = 0; i < CH_WORKERS; i++)
    kill(c->w[i].pid, SIGTERM);
  for (int i = 0; i < CH_SINK_WORKERS; i++)
    kill(c->sw[i].pid, SIGTERM);
  for (int i = 0; i < CH_WORKERS + CH_SINK_WORKERS; i++) {
    int status = 0;
    pid_t pid = i < CH_WORKERS ? c->w[i].pid : c->sw[i - CH_WORKERS].pid;
    const char *id = i < CH_WORKERS ? c->w[i].id : c->sw[i - CH_WORKERS].id;
    if (!kcld_test_wait_exit(pid, 30000, &status)) {
      kcld_test_reap(pid);
      ch_dump_logs(c);
      fail_msg("seed %u: %s did not stop within 30 s of SIGTERM", c->o.seed,
               id);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      ch_dump_logs(c);
      fail_msg("seed %u: %s ended with %s %d by SIGTERM time (23/24: a "
               "sanitizer report, 127: exec failed; see its log above)",
               c->o.seed, id, WIFEXITED(status) ? "exit code" : "signal",
               WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    }
  }
  return kcld_test_now_ms() - term0;
}

/* Frees what the run held, stops the emulators, removes its directory
 * (unless CHAOS_KEEP is set). */
static void ch_end(struct chaos *c)
{
  for (int w = 0; w < CH_WORKERS; w++) {
    json_decref(c->w[w].out.recs);
    json_decref(c->w[w].out.max);
  }
  json_decref(c->produced);
  json_decref(c->by_key);
  json_decref(c->shard_seqs);
  json_decref(c->prev);
  json_decref(c->seen);
  json_decref(c->dead);
  json_decref(c->dead_causes);
  json_decref(c->dl_off);
  json_decref(c->verified);
  json_decref(c->prev_sink);
  free(c->samples);
  kcld_test_aws_free(c->aws);
  kcld_emu_stop(&c->fe);
  kcld_emu_stop(&c->fs);
  kcld_emu_stop(&c->fd);
  kcld_emu_stop(&c->fk);
  kcld_emu_stop(&c->ed);
  kcld_emu_stop(&c->emu);
  char cmd[128], dir[64];
  memcpy(dir, c->dir, sizeof(dir));
  dir[sizeof(dir) - 1] = '\0';
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  if (getenv("CHAOS_KEEP") || system(cmd) != 0)
    fprintf(stderr, "chaos: outputs kept in %s\n", c->dir);
}

static void chaos_run(const struct chaos_opts *o)
{
  static struct chaos C;
  struct chaos *c = &C;
  memset(c, 0, sizeof(*c));
  c->o = *o;
  if (!c->o.seed)
    c->o.seed = (unsigned)time(NULL) ^ (unsigned)getpid();
  c->rng = c->o.seed;
  printf("chaos: seed %u (CHAOS_SEED=%u replays the schedule), %u s, "
         "%d shards, %d workers%s, kcld %s\n", c->o.seed, c->o.seed,
         c->o.seconds, c->o.shards, CH_WORKERS,
         c->o.fanout ? " (the last one in fan-out mode)" : "",
         kcld_test_bin());
  fflush(stdout);
  enum ch_kind order[EV_KINDS];
  ch_begin(c);
  ch_schedule(c, order);
  ch_faults(c, order);
  unsigned long long drained = ch_drain(c);
  unsigned long long term_ms = ch_stop_workers(c);
  ch_sample(c);

  if (c->violation[0]) {
    ch_dump_logs(c);
    fail_msg("seed %u: %s", c->o.seed, c->violation);
  }

  ch_final(c, drained, term_ms);
  ch_end(c);
}
