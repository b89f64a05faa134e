/* test_consume_e2e.c — kcld worker processes against kinesalite + dynalite.
 *
 * The handler is the stdout handler writing JSON lines to a file per worker;
 * the test produces records with PutRecords, runs workers, and checks what
 * every worker handled against what was produced, and the lease table
 * against the KCL's schema. */
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "awssync.h"
#include "base/seq.h"
#include "consume/record.h"
#include "e2e.h"
#include "harness.h"
#include "proc.h"

#define MAX_WORKERS 3

struct env {
  struct kcld_emu emu;
  struct kcld_test_aws *aws;
  char dir[64];
  json_t *produced;   /* array of {shard, seq, data} in put order */
  pid_t live[8];      /* workers expected to be running */
};

static struct env E;

/* ======== Set-up helpers ======== */

static json_t *call(enum kcld_aws_service svc, const char *op, json_t *req)
{
  return kcld_e2e_call(E.aws, svc, op, req);
}

/* Puts n records with partition keys "pk-<i % keys>" and data
 * "<tag>-<i>"; appends {shard, seq, data, pk} to E.produced. */
static void put_records(const char *stream, int n, int keys, const char *tag)
{
  for (int base = 0; base < n; base += 250) {
    int count = n - base < 250 ? n - base : 250;
    char data[250][64], pk[250][32];
    const char *dp[250], *kp[250];
    for (int i = 0; i < count; i++) {
      snprintf(data[i], sizeof(data[i]), "%s-%d", tag, base + i);
      snprintf(pk[i], sizeof(pk[i]), "pk-%d", (base + i) % keys);
      dp[i] = data[i];
      kp[i] = pk[i];
    }
    kcld_e2e_put_records(E.aws, stream, dp, kp, (size_t)count, E.produced);
  }
}

static json_t *scan_leases(const char *table)
{
  json_t *r = call(KCLD_AWS_DYNAMODB, "Scan",
                   json_pack("{s:s,s:b}", "TableName", table,
                             "ConsistentRead", 1));
  json_t *items = json_incref(json_object_get(r, "Items"));
  json_decref(r);
  return items;
}

/* As scan_leases, but an empty list while the workers have not created the
 * table yet. */
static json_t *scan_leases_early(const char *table)
{
  const char *type = NULL;
  json_t *req = json_pack("{s:s,s:b}", "TableName", table, "ConsistentRead",
                          1);
  json_t *r = kcld_test_aws_call(E.aws, KCLD_AWS_DYNAMODB, "Scan", req, &type);
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

static const char *attr_s(json_t *item, const char *name)
{
  return json_string_value(json_object_get(json_object_get(item, name), "S"));
}

static const char *attr_n(json_t *item, const char *name)
{
  return json_string_value(json_object_get(json_object_get(item, name), "N"));
}

static void write_config(const char *path, const char *app,
                         const char *stream, const char *out,
                         const char *extra)
{
  char rest[512];
  int n = snprintf(rest, sizeof(rest),
                   "handler:\n  type: stdout\n  path: %s\n%s", out,
                   extra ? extra : "");
  assert_true(n > 0 && (size_t)n < sizeof(rest));
  kcld_e2e_write_config(path, &E.emu, app, stream, rest);
}

/* What a worker handled: array of {shard, seq, sub, data}, in file order. */
static json_t *read_handled(const char *path)
{
  json_t *all = json_array();
  FILE *f = fopen(path, "r");
  char *line = NULL;
  size_t cap = 0;
  if (!f)
    return all;
  while (getline(&line, &cap, f) > 0) {
    json_error_t err;
    json_t *ev = json_loads(line, 0, &err);
    if (!ev) /* a line being written right now */
      continue;
    json_t *k = json_object_get(ev, "kinesis");
    const char *id = json_string_value(json_object_get(ev, "eventID"));
    const char *b64 = json_string_value(json_object_get(k, "data"));
    unsigned char raw[256];
    int n = EVP_DecodeBlock(raw, (const unsigned char *)b64,
                            (int)strlen(b64));
    size_t len = strlen(b64);
    if (n >= 0) {
      if (len > 0 && b64[len - 1] == '=')
        n--;
      if (len > 1 && b64[len - 2] == '=')
        n--;
    }
    char shard[128];
    snprintf(shard, sizeof(shard), "%.*s",
             (int)(strchr(id, ':') ? strchr(id, ':') - id : 0), id);
    json_array_append_new(
      all, json_pack("{s:s,s:O,s:O,s:s%,s:O}", "shard", shard, "seq",
                     json_object_get(k, "sequenceNumber"), "sub",
                     json_object_get(k, "subSequenceNumber"), "data",
                     (char *)raw, (size_t)(n < 0 ? 0 : n), "pk",
                     json_object_get(k, "partitionKey")));
    json_decref(ev);
  }
  free(line);
  fclose(f);
  return all;
}

static size_t count_lines(const char *path)
{
  json_t *h = read_handled(path);
  size_t n = json_array_size(h);
  json_decref(h);
  return n;
}

static pid_t spawn(const char *conf, const char *log)
{
  pid_t pid = kcld_test_spawn_kcld(conf, log);
  for (size_t i = 0; i < sizeof(E.live) / sizeof(E.live[0]); i++)
    if (E.live[i] == 0) {
      E.live[i] = pid;
      return pid;
    }
  fail_msg("too many workers");
  return -1;
}

static void forget(pid_t pid)
{
  for (size_t i = 0; i < sizeof(E.live) / sizeof(E.live[0]); i++)
    if (E.live[i] == pid)
      E.live[i] = 0;
}

/* Fails at once when a worker that should run has exited. */
static void check_alive(void)
{
  for (size_t i = 0; i < sizeof(E.live) / sizeof(E.live[0]); i++) {
    int status;
    if (E.live[i] > 0 && waitpid(E.live[i], &status, WNOHANG) == E.live[i]) {
      pid_t pid = E.live[i];
      E.live[i] = 0;
      fail_msg("worker %d exited early (%s %d)", (int)pid,
               WIFSIGNALED(status) ? "signal" : "status",
               WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    }
  }
}

/* Waits until the files together hold at least `want` records. */
static int wait_handled(const char *const *paths, int n, size_t want,
                        unsigned timeout_ms)
{
  unsigned long long end = kcld_test_now_ms() + timeout_ms;
  while (kcld_test_now_ms() < end) {
    check_alive();
    size_t got = 0;
    for (int i = 0; i < n; i++)
      got += count_lines(paths[i]);
    if (got >= want)
      return 1;
    kcld_test_sleep_ms(100);
  }
  return 0;
}

/* Key "shard/seq" of a produced or handled entry. */
static void key_of(json_t *e, char *buf, size_t n)
{
  snprintf(buf, n, "%s/%s", json_string_value(json_object_get(e, "shard")),
           json_string_value(json_object_get(e, "seq")));
}

/* Asserts every produced record from index `from` on is in `handled` with
 * its data; returns the number of duplicate deliveries seen.  Also checks
 * per-shard order within each worker's file (handled_each). */
static size_t check_all_handled(json_t *handled, size_t from)
{
  json_t *seen = json_object();
  size_t dups = 0, i;
  json_t *e;
  char key[256];

  json_array_foreach(handled, i, e) {
    key_of(e, key, sizeof(key));
    json_t *c = json_object_get(seen, key);
    if (c)
      dups++;
    json_object_set_new(seen, key, json_integer(c ? json_integer_value(c) + 1
                                                  : 1));
  }
  for (i = from; i < json_array_size(E.produced); i++) {
    e = json_array_get(E.produced, i);
    key_of(e, key, sizeof(key));
    if (!json_object_get(seen, key))
      fail_msg("record %s (%s) was never handled", key,
               json_string_value(json_object_get(e, "data")));
  }
  json_decref(seen);
  return dups;
}

/* Within one worker's output, sequence numbers rise per shard.  With
 * `replays`, a worker that lost a shard and got it back may start over from
 * the checkpoint: a drop is allowed when it goes back to a record this
 * worker had already handled (a replay), never forward past a gap. */
static void check_order(json_t *handled, int replays)
{
  json_t *last = json_object(), *seen = json_object(), *e;
  size_t i;
  char key[256];
  json_array_foreach(handled, i, e) {
    const char *shard = json_string_value(json_object_get(e, "shard"));
    const char *seq = json_string_value(json_object_get(e, "seq"));
    const char *prev = json_string_value(json_object_get(last, shard));
    key_of(e, key, sizeof(key));
    if (prev && kcld_seq_compare(prev, seq) >= 0 &&
        (!replays || !json_object_get(seen, key)))
      fail_msg("shard %s out of order: %s after %s", shard, seq, prev);
    json_object_set_new(last, shard, json_string(seq));
    json_object_set_new(seen, key, json_true());
  }
  json_decref(seen);
  json_decref(last);
}

static void check_shard_order(json_t *handled)
{
  check_order(handled, 0);
}

/* The last produced sequence number of each shard, as an object. */
static json_t *last_produced(void)
{
  json_t *last = json_object();
  size_t i;
  json_t *e;
  json_array_foreach(E.produced, i, e) {
    const char *shard = json_string_value(json_object_get(e, "shard"));
    const char *seq = json_string_value(json_object_get(e, "seq"));
    const char *prev = json_string_value(json_object_get(last, shard));
    if (!prev || kcld_seq_compare(prev, seq) < 0)
      json_object_set_new(last, shard, json_string(seq));
  }
  return last;
}

static void stop_worker(pid_t pid)
{
  forget(pid);
  kcld_e2e_stop_kcld(pid, NULL, 30000);
}

/* ======== Fixture ======== */

static int setup(void **state)
{
  (void)state;
  memset(&E, 0, sizeof(E));
  if (kcld_e2e_fixture_start(&E.emu, &E.aws, E.dir, sizeof(E.dir),
                             "e2e") != 0)
    return -1;
  E.produced = json_array();
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  for (size_t i = 0; i < sizeof(E.live) / sizeof(E.live[0]); i++)
    kcld_test_reap(E.live[i]);
  json_decref(E.produced);
  kcld_e2e_fixture_stop(&E.emu, E.aws, E.dir);
  return 0;
}

static void path_in(char *buf, size_t n, const char *name)
{
  snprintf(buf, n, "%s/%s", E.dir, name);
}

/* ======== Tests ======== */

/* One worker, 4 shards, TRIM_HORIZON: everything handled once, in shard
 * order; checkpoints end at each shard's last record; lease items match the
 * KCL schema; SIGTERM releases the leases.  Then a restart resumes after the
 * checkpoints and handles only the new records. */
static void test_one_worker_then_restart(void **state)
{
  char conf[256], out[256], out2[256], log[256];
  const char *outs[1];
  (void)state;

  kcld_e2e_create_stream(E.aws, "s1", 4);
  put_records("s1", 400, 40, "a");
  path_in(conf, sizeof(conf), "w1.yaml");
  path_in(out, sizeof(out), "w1.jsonl");
  path_in(log, sizeof(log), "w1.log");
  write_config(conf, "app1", "s1", out, NULL);

  pid_t pid = spawn(conf, log);
  outs[0] = out;
  if (!wait_handled(outs, 1, 400, 60000)) {
    kcld_e2e_dump_file(log);
    kcld_test_reap(pid);
    fail_msg("not every record was handled within 60 s");
  }
  stop_worker(pid);

  json_t *handled = read_handled(out);
  assert_int_equal(json_array_size(handled), 400);
  assert_int_equal(check_all_handled(handled, 0), 0);
  check_shard_order(handled);
  json_decref(handled);

  json_t *items = scan_leases("app1"), *last = last_produced(), *item;
  size_t i;
  assert_int_equal(json_array_size(items), 4);
  json_array_foreach(items, i, item) {
    const char *shard = attr_s(item, "leaseKey");
    assert_non_null(shard);
    assert_string_equal(attr_s(item, "checkpoint"),
                        json_string_value(json_object_get(last, shard)));
    assert_string_equal(attr_n(item, "checkpointSubSequenceNumber"), "0");
    assert_string_equal(attr_n(item, "ownerSwitchesSinceCheckpoint"), "0");
    assert_non_null(attr_n(item, "leaseCounter"));
    assert_null(json_object_get(item, "leaseOwner")); /* released */
    assert_non_null(attr_s(item, "startingHashKey"));
    assert_non_null(attr_s(item, "endingHashKey"));
    assert_null(json_object_get(item, "parentShardId")); /* no parents */
  }
  json_decref(items);
  json_decref(last);

  /* Restart from the checkpoints: only the new records are handled. */
  size_t before = json_array_size(E.produced);
  put_records("s1", 100, 40, "b");
  path_in(out2, sizeof(out2), "w1b.jsonl");
  write_config(conf, "app1", "s1", out2, NULL);
  pid = spawn(conf, log);
  outs[0] = out2;
  if (!wait_handled(outs, 1, 100, 60000)) {
    kcld_e2e_dump_file(log);
    kcld_test_reap(pid);
    fail_msg("the restarted worker did not handle the new records");
  }
  kcld_test_sleep_ms(1000); /* a re-handled old record would show by now */
  stop_worker(pid);
  handled = read_handled(out2);
  assert_int_equal(check_all_handled(handled, before), 0);
  assert_int_equal(json_array_size(handled), 100); /* nothing old again */
  json_decref(handled);
}

/* A lease table written in the Java KCL's format, one lease as KCL 2.x and
 * one as KCL 3.5 writes it (checkpoints mid-stream, owned by a worker that
 * is gone), is taken over after the failover time and resumed from those
 * checkpoints; KCL's own attributes survive, those its updates remove
 * (checkpointOwner on take, the pending checkpoint on checkpoint) go. */
static void test_kcl_table_takeover(void **state)
{
  char conf[256], out[256], log[256];
  const char *outs[1];
  json_t *per_shard = json_object(), *e, *cut = json_object();
  size_t i, expect = 0;
  (void)state;

  kcld_e2e_create_stream(E.aws, "s2", 2);
  put_records("s2", 200, 20, "k");
  kcld_e2e_create_lease_table(E.aws, "app2");
  /* Checkpoint each shard at its 10th record. */
  json_array_foreach(E.produced, i, e) {
    const char *shard = json_string_value(json_object_get(e, "shard"));
    json_int_t n = json_integer_value(json_object_get(per_shard, shard)) + 1;
    json_object_set_new(per_shard, shard, json_integer(n));
    if (n == 10)
      json_object_set(cut, shard, json_object_get(e, "seq"));
    else if (n > 10)
      expect++;
  }
  /* One shard's lease as KCL 2.x writes it (with a two-phase pending
   * checkpoint), the other's as KCL 3.5 does (a graceful handoff under
   * way, measured throughput, entityType); and a KCL 3.5 entity that is
   * not a lease. */
  const char *shard;
  json_t *seq;
  int nth = 0;
  json_object_foreach(cut, shard, seq) {
    json_t *item = json_pack(
      "{s:{s:s},s:{s:s},s:{s:s},s:{s:O},s:{s:s},s:{s:s},s:{s:s},s:{s:s}}",
      "leaseKey", "S", shard, "leaseOwner", "S", "stale-worker",
      "leaseCounter", "N", "7", "checkpoint", "S", seq,
      "checkpointSubSequenceNumber", "N", "0",
      "ownerSwitchesSinceCheckpoint", "N", "2", "startingHashKey", "S",
      nth ? "170141183460469231731687303715884105728" : "0",
      "endingHashKey", "S",
      nth ? "340282366920938463463374607431768211455"
          : "170141183460469231731687303715884105727");
    json_t *extra =
      nth++ == 0
        ? json_pack("{s:{s:s},s:{s:s},s:{s:s}}", "pendingCheckpoint", "S",
                    "99999999999999999999",
                    "pendingCheckpointSubSequenceNumber", "N", "0",
                    "pendingCheckpointState", "B", "c3RhdGU=")
        : json_pack("{s:{s:s},s:{s:s},s:{s:s}}", "checkpointOwner", "S",
                    "older-worker", "throughputKBps", "N", "3.5",
                    "entityType", "S", "LEASE");
    json_object_update(item, extra);
    json_decref(extra);
    json_decref(call(KCLD_AWS_DYNAMODB, "PutItem",
                     json_pack("{s:s,s:o}", "TableName", "app2", "Item",
                               item)));
  }
  json_decref(call(KCLD_AWS_DYNAMODB, "PutItem",
                   json_pack("{s:s,s:{s:{s:s},s:{s:s},s:{s:s}}}", "TableName",
                             "app2", "Item", "leaseKey", "S", "Leader",
                             "entityType", "S", "LEADER", "ownerName", "S",
                             "older-worker")));

  path_in(conf, sizeof(conf), "w2.yaml");
  path_in(out, sizeof(out), "w2.jsonl");
  path_in(log, sizeof(log), "w2.log");
  write_config(conf, "app2", "s2", out, NULL);
  pid_t pid = spawn(conf, log);
  outs[0] = out;
  if (!wait_handled(outs, 1, expect, 60000)) {
    kcld_e2e_dump_file(log);
    kcld_test_reap(pid);
    fail_msg("records after the KCL checkpoints were not handled");
  }
  kcld_test_sleep_ms(1000);
  stop_worker(pid);

  json_t *handled = read_handled(out);
  assert_int_equal(json_array_size(handled), expect);
  json_array_foreach(handled, i, e) {
    const char *s = json_string_value(json_object_get(e, "shard"));
    const char *q = json_string_value(json_object_get(e, "seq"));
    assert_true(kcld_seq_compare(
                  q, json_string_value(json_object_get(cut, s))) > 0);
  }
  check_shard_order(handled);
  json_decref(handled);

  /* After take, checkpoints and release: no owner of either kind and no
   * stale pending checkpoint; KCL 3's own attributes kept; the entity that
   * is not a lease untouched. */
  json_t *items = scan_leases("app2"), *item;
  size_t leases = 0;
  json_array_foreach(items, i, item) {
    if (strcmp(attr_s(item, "leaseKey"), "Leader") == 0) {
      assert_string_equal(attr_s(item, "ownerName"), "older-worker");
      assert_int_equal(json_object_size(item), 3);
      continue;
    }
    leases++;
    assert_null(json_object_get(item, "leaseOwner"));
    assert_null(json_object_get(item, "checkpointOwner"));
    assert_null(json_object_get(item, "pendingCheckpoint"));
    assert_null(json_object_get(item, "pendingCheckpointSubSequenceNumber"));
    assert_null(json_object_get(item, "pendingCheckpointState"));
    assert_true(kcld_seq_compare(
                  attr_s(item, "checkpoint"),
                  json_string_value(json_object_get(
                    cut, attr_s(item, "leaseKey")))) > 0);
    if (json_object_get(item, "entityType")) {
      assert_string_equal(attr_s(item, "entityType"), "LEASE");
      assert_string_equal(attr_n(item, "throughputKBps"), "3.5");
    }
  }
  assert_int_equal(leases, 2);
  json_decref(items);
  json_decref(per_shard);
  json_decref(cut);
}

/* Owners in the lease table, counted per worker id. */
static void owner_counts(const char *table, int *counts, const char **ids,
                         int n, int *unowned)
{
  json_t *items = scan_leases_early(table), *item;
  size_t i;
  memset(counts, 0, sizeof(int) * (size_t)n);
  *unowned = 0;
  json_array_foreach(items, i, item) {
    const char *o = attr_s(item, "leaseOwner");
    int found = 0;
    for (int w = 0; o && w < n; w++)
      if (strcmp(o, ids[w]) == 0) {
        counts[w]++;
        found = 1;
      }
    if (!found)
      (*unowned)++;
  }
  json_decref(items);
}

/* Three workers on 8 shards converge to 3/3/2; kill -9 of one moves its
 * shards to the survivors within failover + take interval; SIGTERM of
 * another releases its leases for the last one to take at its next take;
 * the union of what all handlers saw holds every produced record. */
static void test_three_workers_balance_and_failover(void **state)
{
  char conf[MAX_WORKERS][256], out[MAX_WORKERS][256], log[MAX_WORKERS][256];
  const char *outs[MAX_WORKERS], *ids[MAX_WORKERS] = {"w-a", "w-b", "w-c"};
  pid_t pid[MAX_WORKERS];
  int counts[MAX_WORKERS], unowned;
  char extra[128];
  (void)state;

  kcld_e2e_create_stream(E.aws, "s3", 8);
  put_records("s3", 400, 64, "c");
  for (int w = 0; w < MAX_WORKERS; w++) {
    char name[32];
    snprintf(name, sizeof(name), "w3%c.yaml", 'a' + w);
    path_in(conf[w], sizeof(conf[w]), name);
    snprintf(name, sizeof(name), "w3%c.jsonl", 'a' + w);
    path_in(out[w], sizeof(out[w]), name);
    snprintf(name, sizeof(name), "w3%c.log", 'a' + w);
    path_in(log[w], sizeof(log[w]), name);
    snprintf(extra, sizeof(extra), "worker_id: %s\n", ids[w]);
    write_config(conf[w], "app3", "s3", out[w], extra);
    outs[w] = out[w];
  }
  unsigned long long t0 = kcld_test_now_ms();
  for (int w = 0; w < MAX_WORKERS; w++)
    pid[w] = spawn(conf[w], log[w]);

  /* Converge: take interval is 2 s (2 x failover). */
  unsigned long long converged = 0;
  while (kcld_test_now_ms() - t0 < 20000) {
    owner_counts("app3", counts, ids, MAX_WORKERS, &unowned);
    int hi = 0, lo = 8;
    for (int w = 0; w < MAX_WORKERS; w++) {
      hi = counts[w] > hi ? counts[w] : hi;
      lo = counts[w] < lo ? counts[w] : lo;
    }
    if (unowned == 0 && hi == 3 && lo == 2) {
      converged = kcld_test_now_ms() - t0;
      break;
    }
    kcld_test_sleep_ms(100);
  }
  if (!converged) {
    for (int w = 0; w < MAX_WORKERS; w++)
      kcld_e2e_dump_file(log[w]);
    fail_msg("no 3/3/2 split within 20 s (%d/%d/%d, %d unowned)", counts[0],
             counts[1], counts[2], unowned);
  }
  printf("measured: 3 workers on 8 shards converged to 3/3/2 in %llu ms "
         "(take interval 2000 ms)\n", converged);
  assert_true(wait_handled(outs, MAX_WORKERS, 400, 60000));

  /* kill -9 worker a: its shards move within failover + take interval. */
  owner_counts("app3", counts, ids, MAX_WORKERS, &unowned);
  forget(pid[0]);
  kill(pid[0], SIGKILL);
  kcld_test_reap(pid[0]);
  put_records("s3", 200, 64, "d");
  unsigned long long t1 = kcld_test_now_ms(), moved = 0;
  while (kcld_test_now_ms() - t1 < 20000) {
    owner_counts("app3", counts, ids, MAX_WORKERS, &unowned);
    if (counts[0] == 0 && unowned == 0 && counts[1] + counts[2] == 8) {
      moved = kcld_test_now_ms() - t1;
      break;
    }
    kcld_test_sleep_ms(100);
  }
  if (!moved) {
    for (int w = 1; w < MAX_WORKERS; w++)
      kcld_e2e_dump_file(log[w]);
    fail_msg("the killed worker's leases were not taken within 20 s");
  }
  printf("measured: kill -9 failover: leases taken in %llu ms (failover "
         "1000 ms + take interval 2000 ms)\n", moved);
  assert_true(moved <= 1000 + 2000 + 2000); /* + one scan's slack */

  /* SIGTERM worker b: released at once, taken by c at its next take. */
  size_t before_b = json_array_size(E.produced);
  stop_worker(pid[1]);
  unsigned long long t2 = kcld_test_now_ms(), taken = 0;
  owner_counts("app3", counts, ids, MAX_WORKERS, &unowned);
  assert_int_equal(counts[1], 0); /* nothing left owned by b */
  while (kcld_test_now_ms() - t2 < 10000) {
    owner_counts("app3", counts, ids, MAX_WORKERS, &unowned);
    if (counts[2] == 8) {
      taken = kcld_test_now_ms() - t2;
      break;
    }
    kcld_test_sleep_ms(100);
  }
  assert_true(taken > 0);
  printf("measured: after SIGTERM the released leases were taken in %llu ms "
         "(take interval 2000 ms)\n", taken);
  assert_true(taken <= 2000 + 1000);
  put_records("s3", 100, 64, "e");
  assert_true(wait_handled(outs, MAX_WORKERS, json_array_size(E.produced),
                           60000));
  kcld_test_sleep_ms(1000);
  stop_worker(pid[2]);

  json_t *all = json_array();
  for (int w = 0; w < MAX_WORKERS; w++) {
    json_t *h = read_handled(out[w]);
    check_order(h, 1);
    json_array_extend(all, h);
    json_decref(h);
  }
  size_t dups = check_all_handled(all, 0);
  printf("measured: %zu records produced, %zu handled, %zu duplicates "
         "(kill -9 of a worker; %zu produced before the SIGTERM)\n",
         json_array_size(E.produced), json_array_size(all), dups, before_b);
  json_decref(all);
}


/* Put order of every produced record, keyed "shard/seq". */
static json_t *put_order(void)
{
  json_t *order = json_object(), *e;
  size_t i;
  char key[256];
  json_array_foreach(E.produced, i, e) {
    key_of(e, key, sizeof(key));
    json_object_set_new(order, key, json_integer((json_int_t)i));
  }
  return order;
}

/* SplitShard, then MergeShards, while producing with a fixed set of
 * partition keys: no child record is handled before its parents' last
 * record, and each key's records are handled in put order. */
static void test_reshard_keeps_key_order(void **state)
{
  char conf[256], out[256], log[256];
  const char *outs[1];
  (void)state;

  kcld_e2e_create_stream(E.aws, "s4", 2);
  path_in(conf, sizeof(conf), "w4.yaml");
  path_in(out, sizeof(out), "w4.jsonl");
  path_in(log, sizeof(log), "w4.log");
  write_config(conf, "app4", "s4", out, NULL);
  /* The data index counts across the three rounds: r-0 .. r-599. */
  put_records("s4", 200, 8, "r");
  pid_t pid = spawn(conf, log);
  outs[0] = out;
  assert_true(wait_handled(outs, 1, 200, 60000));

  /* Split shardId-000000000000 at the middle of its hash range. */
  json_decref(call(KCLD_AWS_KINESIS, "SplitShard",
                   json_pack("{s:s,s:s,s:s}", "StreamName", "s4",
                             "ShardToSplit", "shardId-000000000000",
                             "NewStartingHashKey",
                             "85070591730234615865843651857942052864")));
  kcld_e2e_wait_stream_active(E.aws, "s4");
  json_t *more = json_array();
  size_t before = json_array_size(E.produced);
  put_records("s4", 200, 8, "x");
  assert_true(wait_handled(outs, 1, 400, 60000));

  /* Merge the split's upper child with shardId-000000000001. */
  json_t *shards = call(KCLD_AWS_KINESIS, "ListShards",
                        json_pack("{s:s}", "StreamName", "s4"));
  const char *upper = NULL;
  size_t i;
  json_t *sh;
  json_array_foreach(json_object_get(shards, "Shards"), i, sh) {
    const char *parent = json_string_value(json_object_get(sh,
                                                            "ParentShardId"));
    const char *start = json_string_value(json_object_get(
      json_object_get(sh, "HashKeyRange"), "StartingHashKey"));
    if (parent && strcmp(parent, "shardId-000000000000") == 0 && start &&
        strcmp(start, "85070591730234615865843651857942052864") == 0)
      upper = json_string_value(json_object_get(sh, "ShardId"));
  }
  assert_non_null(upper);
  json_decref(call(KCLD_AWS_KINESIS, "MergeShards",
                   json_pack("{s:s,s:s,s:s}", "StreamName", "s4",
                             "ShardToMerge", upper, "AdjacentShardToMerge",
                             "shardId-000000000001")));
  json_decref(shards);
  kcld_e2e_wait_stream_active(E.aws, "s4");
  put_records("s4", 200, 8, "y");
  if (!wait_handled(outs, 1, 600, 90000)) {
    kcld_e2e_dump_file(log);
    fail_msg("records after the reshard were not all handled");
  }
  kcld_test_sleep_ms(500);
  stop_worker(pid);
  json_decref(more);
  (void)before;

  json_t *handled = read_handled(out);
  assert_int_equal(check_all_handled(handled, 0), 0);
  check_shard_order(handled);

  /* Parents before children: in the one worker's file, a child shard's
   * first line comes after its parents' last line. */
  json_t *first = json_object(), *last = json_object(), *e;
  json_array_foreach(handled, i, e) {
    const char *s = json_string_value(json_object_get(e, "shard"));
    if (!json_object_get(first, s))
      json_object_set_new(first, s, json_integer((json_int_t)i));
    json_object_set_new(last, s, json_integer((json_int_t)i));
  }
  shards = call(KCLD_AWS_KINESIS, "ListShards",
                json_pack("{s:s}", "StreamName", "s4"));
  int pairs = 0;
  json_array_foreach(json_object_get(shards, "Shards"), i, sh) {
    const char *child = json_string_value(json_object_get(sh, "ShardId"));
    const char *ps[2] = {
      json_string_value(json_object_get(sh, "ParentShardId")),
      json_string_value(json_object_get(sh, "AdjacentParentShardId"))};
    json_t *cf = json_object_get(first, child);
    for (int k = 0; k < 2; k++) {
      json_t *pl = ps[k] ? json_object_get(last, ps[k]) : NULL;
      if (!cf || !pl)
        continue;
      pairs++;
      if (json_integer_value(cf) < json_integer_value(pl))
        fail_msg("child %s handled (line %lld) before parent %s ended "
                 "(line %lld)", child, (long long)json_integer_value(cf),
                 ps[k], (long long)json_integer_value(pl));
    }
  }
  assert_true(pairs >= 3); /* split: 2 children; merge: 2 parents */
  printf("measured: reshard: %d parent/child pairs in order, %zu records\n",
         pairs, json_array_size(handled));

  /* Per key, put order: each key's records are handled in the order they
   * were put. */
  json_t *key_last = json_object(), *order = put_order();
  json_array_foreach(handled, i, e) {
    const char *pk = json_string_value(json_object_get(e, "pk"));
    char key[256];
    key_of(e, key, sizeof(key));
    long n = (long)json_integer_value(json_object_get(order, key));
    json_t *prev = json_object_get(key_last, pk);
    if (prev && n <= json_integer_value(prev))
      fail_msg("key %s: record %ld handled after %lld", pk, n,
               (long long)json_integer_value(prev));
    json_object_set_new(key_last, pk, json_integer(n));
  }
  json_decref(key_last);
  json_decref(order);
  json_decref(first);
  json_decref(last);
  json_decref(shards);
  json_decref(handled);
}

/* A zombie (SIGSTOP past the failover time, then SIGCONT) loses its
 * leases to its peer, says so, and cannot checkpoint over the new owner:
 * the checkpoints end at each shard's last record and nothing is lost. */
static void test_zombie_cannot_checkpoint(void **state)
{
  char conf[2][256], out[2][256], log[2][256], extra[64];
  const char *outs[2], *ids[2] = {"z-a", "z-b"};
  pid_t pid[2];
  int counts[2], unowned;
  (void)state;

  kcld_e2e_create_stream(E.aws, "s5", 4);
  for (int w = 0; w < 2; w++) {
    char name[32];
    snprintf(name, sizeof(name), "w5%c.yaml", 'a' + w);
    path_in(conf[w], sizeof(conf[w]), name);
    snprintf(name, sizeof(name), "w5%c.jsonl", 'a' + w);
    path_in(out[w], sizeof(out[w]), name);
    snprintf(name, sizeof(name), "w5%c.log", 'a' + w);
    path_in(log[w], sizeof(log[w]), name);
    snprintf(extra, sizeof(extra), "worker_id: %s\n", ids[w]);
    write_config(conf[w], "app5", "s5", out[w], extra);
    outs[w] = out[w];
  }
  put_records("s5", 200, 20, "p");
  for (int w = 0; w < 2; w++)
    pid[w] = spawn(conf[w], log[w]);
  assert_true(wait_handled(outs, 2, 200, 60000));
  unsigned long long t0 = kcld_test_now_ms();
  do {
    owner_counts("app5", counts, ids, 2, &unowned);
    if (counts[0] == 2 && counts[1] == 2)
      break;
    kcld_test_sleep_ms(100);
  } while (kcld_test_now_ms() - t0 < 20000);
  assert_int_equal(counts[0], 2);

  /* Freeze a past the failover time: b takes its shards. */
  kill(pid[0], SIGSTOP);
  t0 = kcld_test_now_ms();
  do {
    owner_counts("app5", counts, ids, 2, &unowned);
    if (counts[1] == 4)
      break;
    kcld_test_sleep_ms(100);
  } while (kcld_test_now_ms() - t0 < 20000);
  assert_int_equal(counts[1], 4);
  put_records("s5", 200, 20, "q");
  assert_true(wait_handled(outs, 2, 400, 60000));

  /* Wake it: it must notice the loss and not write over b. */
  kill(pid[0], SIGCONT);
  kcld_test_sleep_ms(3000);
  char *text = kcld_test_slurp(log[0], NULL);
  assert_non_null(text);
  if (!strstr(text, "lease lost"))
    fail_msg("the zombie did not log its lost leases:\n%s", text);
  free(text);
  put_records("s5", 100, 20, "s");
  assert_true(wait_handled(outs, 2, 500, 60000));
  kcld_test_sleep_ms(1000);
  stop_worker(pid[0]);
  stop_worker(pid[1]);

  json_t *all = json_array();
  for (int w = 0; w < 2; w++) {
    json_t *h = read_handled(out[w]);
    check_order(h, 1);
    json_array_extend(all, h);
    json_decref(h);
  }
  size_t dups = check_all_handled(all, 0);
  json_t *items = scan_leases("app5"), *lastp = last_produced(), *item;
  size_t i;
  json_array_foreach(items, i, item) {
    const char *shard = attr_s(item, "leaseKey");
    assert_string_equal(attr_s(item, "checkpoint"),
                        json_string_value(json_object_get(lastp, shard)));
  }
  printf("measured: zombie: %zu produced, %zu handled, %zu duplicates\n",
         json_array_size(E.produced), json_array_size(all), dups);
  json_decref(items);
  json_decref(lastp);
  json_decref(all);
}

/* A first SIGTERM waits for in-flight work (here a handler stuck writing to
 * a pipe nobody reads) up to shutdown_timeout; a second signal ends kcld at
 * once, with a failure status. */
static void test_second_signal_exits_at_once(void **state)
{
  char conf[256], fifo[256], log[256];
  int status = 0, rd;
  (void)state;

  kcld_e2e_create_stream(E.aws, "s6", 1);
  put_records("s6", 1000, 10, "w");
  path_in(conf, sizeof(conf), "w6.yaml");
  path_in(fifo, sizeof(fifo), "w6.fifo");
  path_in(log, sizeof(log), "w6.log");
  assert_int_equal(mkfifo(fifo, 0600), 0);
  rd = open(fifo, O_RDONLY | O_NONBLOCK); /* a reader that never reads */
  assert_true(rd >= 0);
  write_config(conf, "app6", "s6", fifo, NULL);
  pid_t pid = spawn(conf, log);
  kcld_test_sleep_ms(3000); /* fetched, and the handler is stuck */
  check_alive();
  forget(pid);
  kill(pid, SIGTERM);
  kcld_test_sleep_ms(500);
  assert_false(kcld_test_wait_exit(pid, 0, &status)); /* still waiting */
  unsigned long long t0 = kcld_test_now_ms();
  kill(pid, SIGINT);
  if (!kcld_test_wait_exit(pid, 3000, &status)) {
    kcld_test_reap(pid);
    close(rd);
    fail_msg("kcld did not exit within 3 s of the second signal");
  }
  printf("measured: exit %llu ms after the second signal\n",
         kcld_test_now_ms() - t0);
  assert_true(WIFEXITED(status));
  assert_int_not_equal(WEXITSTATUS(status), 0);
  close(rd);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_one_worker_then_restart, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_kcl_table_takeover, setup, teardown),
    cmocka_unit_test_setup_teardown(test_three_workers_balance_and_failover,
                                    setup, teardown),
    cmocka_unit_test_setup_teardown(test_reshard_keeps_key_order, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_zombie_cannot_checkpoint, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_second_signal_exits_at_once, setup,
                                    teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
