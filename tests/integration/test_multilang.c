/* test_multilang.c — the multilang handler with real record processors
 * (the Python files in tests/processors: standard library only, speaking
 * the protocol as amazon_kclpy does).
 *
 * Part 1 drives the handler directly on a loop, with a fake checkpoint
 * function standing in for the daemon: checkpoints mid-batch, shardEnded
 * answered by a checkpoint, leaseLost refusing one, a crash and a hang
 * (FAILED, restart from the last checkpoint), garbage on stdout and stderr,
 * a command that cannot start, two shards at once.
 *
 * Part 2 runs the real kcld binary with `--properties` against kinesalite
 * and dynalite: the processor sees every record, its mid-batch checkpoints
 * land in the lease table, and SIGTERM ends with shutdownRequested. */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "awssync.h"
#include "base/seq.h"
#include "config.h"
#include "e2e.h"
#include "err.h"
#include "handlers/handler.h"
#include "harness.h"
#include "log.h"
#include "proc.h"

#define SHARD "shardId-000000000000"

struct fx {
  uv_loop_t loop;
  struct kcld_config *cfg;
  struct kcld_handler *h;
  char dir[64];
  char ml_log[128];
  /* The fake checkpoint. */
  int ck_calls;
  char ck_seq[16][KCLD_SEQ_MAX + 1];
  uint64_t ck_sub[16];
  int ck_answer;
  /* kcld's own log. */
  FILE *logf;
  char *logbuf;
  size_t loglen;
};

struct result {
  int done;
  enum kcld_handler_status status;
  enum kcld_handler_failure_class cls;
  char type[64];
  char msg[256];
};

static void fake_checkpoint(void *ctx, const char *shard_id,
                            const char *sequence, uint64_t sub,
                            kcld_handler_checkpoint_cb cb, void *arg)
{
  struct fx *f = ctx;
  assert_string_equal(shard_id, SHARD);
  assert_true(f->ck_calls < 16);
  snprintf(f->ck_seq[f->ck_calls], sizeof(f->ck_seq[0]), "%s", sequence);
  f->ck_sub[f->ck_calls] = sub;
  f->ck_calls++;
  cb(f->ck_answer, arg);
}

static const char *proc_path(const char *name)
{
  static char p[512];
  snprintf(p, sizeof(p), "%s/tests/processors/%s", kcld_test_root(), name);
  return p;
}

/* Sets up a handler running `command` (a YAML flow list). */
static struct fx *fx_new(const char *command, const char *extra)
{
  struct fx *f = calloc(1, sizeof(*f));
  char yaml[2048], *errors = NULL;
  struct kcld_handler_env env;

  assert_non_null(f);
  signal(SIGPIPE, SIG_IGN); /* as the daemon does: see multilang.h */
  snprintf(f->dir, sizeof(f->dir), "/tmp/kcld-ml-XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  snprintf(f->ml_log, sizeof(f->ml_log), "%s/ml.log", f->dir);
  setenv("ML_LOG", f->ml_log, 1);
  snprintf(yaml, sizeof(yaml),
           "application: app\nstream: s\n"
           "handler:\n  type: multilang\n  command: %s\n  timeout: 2s\n"
           "retry:\n  backoff_base: 20ms\n  backoff_max: 100ms\n%s",
           command, extra ? extra : "");
  if (kcld_config_parse("t.yaml", yaml, strlen(yaml), &f->cfg, &errors))
    fail_msg("config: %s", errors);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  f->logf = open_memstream(&f->logbuf, &f->loglen);
  kcld_log_setup(KCLD_LOG_DEBUG, KCLD_LOG_JSON, f->logf);
  memset(&env, 0, sizeof(env));
  env.loop = &f->loop;
  env.cfg = f->cfg;
  env.region = "us-east-1";
  env.stream_arn = "";
  env.checkpoint = fake_checkpoint;
  env.checkpoint_ctx = f;
  assert_int_equal(kcld_handler_new(&env, &f->h), 0);
  return f;
}

static void fx_free(struct fx *f)
{
  char cmd[128];
  kcld_handler_close(f->h);
  kcld_test_loop_finish(&f->loop);
  kcld_log_setup(KCLD_LOG_INFO, KCLD_LOG_JSON, NULL);
  fclose(f->logf);
  free(f->logbuf);
  kcld_config_free(f->cfg);
  snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
  assert_int_equal(system(cmd), 0);
  unsetenv("ML_LOG");
  unsetenv("ML_MARKER");
  unsetenv("ML_CRASH_SEQ");
  unsetenv("ML_HANG");
  free(f);
}

/* The processor's log: one object per line. */
static json_t *ml_log(const struct fx *f)
{
  json_t *all = json_array();
  FILE *in = fopen(f->ml_log, "r");
  char *line = NULL;
  size_t cap = 0;
  if (!in)
    return all;
  while (getline(&line, &cap, in) > 0) {
    json_t *o = json_loads(line, 0, NULL);
    if (o)
      json_array_append_new(all, o);
  }
  free(line);
  fclose(in);
  return all;
}

/* Entries of the processor's log that have `key`, in order. */
static json_t *ml_entries(const struct fx *f, const char *key)
{
  json_t *all = ml_log(f), *out = json_array(), *e;
  size_t i;
  json_array_foreach(all, i, e)
    if (json_object_get(e, key))
      json_array_append(out, e);
  json_decref(all);
  return out;
}

/* Messages the processor got with this action. */
static json_t *got_actions(const struct fx *f, const char *action)
{
  json_t *all = ml_entries(f, "got"), *out = json_array(), *e;
  size_t i;
  json_array_foreach(all, i, e) {
    const char *a = json_string_value(
      json_object_get(json_object_get(e, "got"), "action"));
    if (a && strcmp(a, action) == 0)
      json_array_append(out, json_object_get(e, "got"));
  }
  json_decref(all);
  return out;
}

/* Runs the loop until the processor's log has n entries with `key`. */
static void wait_log(struct fx *f, const char *key, size_t n)
{
  unsigned long long end = kcld_test_now_ms() + 10000;
  for (;;) {
    json_t *e = ml_entries(f, key);
    size_t have = json_array_size(e);
    json_decref(e);
    if (have >= n)
      return;
    if (kcld_test_now_ms() > end)
      fail_msg("timed out waiting for %zu '%s' entries", n, key);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    kcld_test_sleep_ms(5);
  }
}

static void on_done(const struct kcld_handler_result *res, void *arg)
{
  struct result *r = arg;
  assert_int_equal(r->done, 0);
  r->done = 1;
  r->status = res->status;
  r->cls = res->failure_class;
  snprintf(r->type, sizeof(r->type), "%s",
           res->error_type ? res->error_type : "");
  snprintf(r->msg, sizeof(r->msg), "%s",
           res->error_message ? res->error_message : "");
}

/* Records with sequence numbers first..first+n-1 (data "r<seq>"). */
struct recs {
  struct kcld_record r[16];
  const struct kcld_record *p[16];
  char seq[16][24];
  char data[16][24];
  size_t n;
};

static void make_recs(struct recs *rs, unsigned first, size_t n)
{
  memset(rs, 0, sizeof(*rs));
  rs->n = n;
  for (size_t i = 0; i < n; i++) {
    snprintf(rs->seq[i], sizeof(rs->seq[i]), "%u", first + (unsigned)i);
    snprintf(rs->data[i], sizeof(rs->data[i]), "r%u", first + (unsigned)i);
    rs->r[i].sequence_number = rs->seq[i];
    rs->r[i].data = (const uint8_t *)rs->data[i];
    rs->r[i].data_len = strlen(rs->data[i]);
    rs->r[i].partition_key = "pk";
    rs->r[i].partition_key_len = 2;
    rs->r[i].arrival_ms = 1700000000000LL + (int64_t)i;
    rs->p[i] = &rs->r[i];
  }
}

static void run_batch(struct fx *f, const char *shard, struct recs *rs,
                      struct result *r)
{
  struct kcld_handler_batch b = {shard, rs->p, rs->n, 5, 1};
  memset(r, 0, sizeof(*r));
  assert_int_equal(kcld_handler_process(f->h, &b, on_done, r), 0);
  if (!kcld_test_run_until(&f->loop, &r->done, 10000))
    fail_msg("batch never answered");
}

static size_t log_count(struct fx *f, const char *needle)
{
  size_t n = 0;
  fflush(f->logf);
  for (const char *s = f->logbuf; s && (s = strstr(s, needle));
       s += strlen(needle))
    n++;
  return n;
}

static const char *jstr(json_t *o, const char *k)
{
  return json_string_value(json_object_get(o, k));
}

/* ======== Part 1: the handler and real processors ======== */

static void test_checkpoint_mid_batch(void **state)
{
  (void)state;
  char cmd[600];
  struct recs a, b;
  struct result r;
  snprintf(cmd, sizeof(cmd), "[%s, \"%s\"]", kcld_test_python(),
           proc_path("checkpoint_mid.py"));
  struct fx *f = fx_new(cmd, NULL);

  f->h->ops->shard_started(f->h, SHARD, NULL, 0);
  make_recs(&a, 100, 4);
  run_batch(f, SHARD, &a, &r);
  assert_int_equal(r.status, KCLD_HANDLER_OK);
  assert_int_equal(f->ck_calls, 1);
  assert_string_equal(f->ck_seq[0], "102");
  make_recs(&b, 104, 3);
  run_batch(f, SHARD, &b, &r);
  assert_int_equal(r.status, KCLD_HANDLER_OK);
  assert_int_equal(f->ck_calls, 2);
  assert_string_equal(f->ck_seq[1], "105");

  /* Graceful stop: shutdownRequested; its checkpoint (null = 106, all
   * answered) is already covered and needs no write. */
  f->h->ops->shard_stopped(f->h, SHARD, KCLD_SHARD_STOP_SHUTDOWN);
  wait_log(f, "eof", 1);
  assert_int_equal(f->ck_calls, 2);

  json_t *init = got_actions(f, "initialize");
  assert_int_equal(json_array_size(init), 1);
  assert_string_equal(jstr(json_array_get(init, 0), "shardId"), SHARD);
  assert_true(json_is_null(json_object_get(json_array_get(init, 0),
                                           "sequenceNumber")));
  json_t *pr = got_actions(f, "processRecords");
  assert_int_equal(json_array_size(pr), 2);
  json_t *recs = json_object_get(json_array_get(pr, 0), "records");
  assert_int_equal(json_array_size(recs), 4);
  assert_string_equal(jstr(json_array_get(recs, 0), "data"), "cjEwMA==");
  assert_string_equal(jstr(json_array_get(recs, 3), "sequenceNumber"), "103");
  json_t *ck = ml_entries(f, "checkpoint");
  assert_int_equal(json_array_size(ck), 3);
  assert_string_equal(jstr(json_array_get(ck, 0), "checkpoint"), "102");
  assert_true(json_is_null(json_object_get(json_array_get(ck, 0), "error")));
  assert_string_equal(jstr(json_array_get(ck, 2), "checkpoint"), "106");
  assert_true(json_is_null(json_object_get(json_array_get(ck, 2), "error")));
  json_t *sd = got_actions(f, "shutdownRequested");
  assert_int_equal(json_array_size(sd), 1);
  json_decref(sd);
  json_decref(init);
  json_decref(pr);
  json_decref(ck);
  fx_free(f);
}

static void test_checkpoint_failure_mapped(void **state)
{
  (void)state;
  char cmd[600];
  struct recs a;
  struct result r;
  snprintf(cmd, sizeof(cmd), "[%s, \"%s\"]", kcld_test_python(),
           proc_path("checkpoint_mid.py"));
  struct fx *f = fx_new(cmd, NULL);

  f->ck_answer = KCLD_ELOST;
  make_recs(&a, 10, 3);
  run_batch(f, SHARD, &a, &r);
  assert_int_equal(r.status, KCLD_HANDLER_OK); /* the child went on */
  f->ck_answer = KCLD_ETIMEDOUT;
  make_recs(&a, 13, 3);
  run_batch(f, SHARD, &a, &r);
  json_t *ck = ml_entries(f, "checkpoint");
  assert_int_equal(json_array_size(ck), 2);
  assert_string_equal(jstr(json_array_get(ck, 0), "error"),
                      "ShutdownException");
  assert_string_equal(jstr(json_array_get(ck, 1), "error"),
                      "ThrottlingException");
  json_decref(ck);

  /* leaseLost: the processor's checkpoint is refused without a write. */
  f->h->ops->shard_stopped(f->h, SHARD, KCLD_SHARD_STOP_LOST);
  wait_log(f, "eof", 1);
  assert_int_equal(f->ck_calls, 2);
  ck = ml_entries(f, "checkpoint");
  assert_int_equal(json_array_size(ck), 3);
  assert_string_equal(jstr(json_array_get(ck, 2), "error"),
                      "ShutdownException");
  json_decref(ck);
  fx_free(f);
}

static void test_shard_ended_checkpoint(void **state)
{
  (void)state;
  char cmd[600];
  struct recs a;
  struct result r;
  snprintf(cmd, sizeof(cmd), "[%s, \"%s\"]", kcld_test_python(),
           proc_path("shard_end.py"));
  struct fx *f = fx_new(cmd, NULL);

  f->h->ops->shard_started(f->h, SHARD, "5", 0);
  make_recs(&a, 20, 2);
  run_batch(f, SHARD, &a, &r);
  assert_int_equal(r.status, KCLD_HANDLER_OK);
  f->h->ops->shard_stopped(f->h, SHARD, KCLD_SHARD_STOP_ENDED);
  wait_log(f, "eof", 1);
  json_t *done = ml_entries(f, "shard_end_checkpointed");
  assert_int_equal(json_array_size(done), 1);
  json_decref(done);
  json_t *init = got_actions(f, "initialize");
  assert_string_equal(jstr(json_array_get(init, 0), "sequenceNumber"), "5");
  json_decref(init);
  assert_int_equal(f->ck_calls, 0); /* the consumer wrote SHARD_END */
  assert_int_equal(log_count(f, "record processor ended"), 0);
  fx_free(f);
}

static void test_crash_restarts_from_checkpoint(void **state)
{
  (void)state;
  char cmd[600], marker[160];
  struct recs a, b;
  struct result r;
  snprintf(cmd, sizeof(cmd), "[%s, \"%s\"]", kcld_test_python(), proc_path("crash.py"));
  struct fx *f = fx_new(cmd, NULL);
  snprintf(marker, sizeof(marker), "%s/crashed", f->dir);
  setenv("ML_MARKER", marker, 1);
  setenv("ML_CRASH_SEQ", "203", 1);

  f->h->ops->shard_started(f->h, SHARD, "150", 0);
  make_recs(&a, 200, 2);
  run_batch(f, SHARD, &a, &r);
  assert_int_equal(r.status, KCLD_HANDLER_OK);
  assert_int_equal(f->ck_calls, 1);
  assert_string_equal(f->ck_seq[0], "201");

  make_recs(&b, 202, 2);
  run_batch(f, SHARD, &b, &r);
  assert_int_equal(r.status, KCLD_HANDLER_FAILED);
  /* It read the batch, then died: the records' failure. */
  assert_int_equal(r.cls, KCLD_HANDLER_RECORD);
  assert_string_equal(r.type, "HandlerCrashed");
  assert_non_null(strstr(r.msg, "exited with status 3"));
  /* The engine retries: the restarted child starts at 201. */
  run_batch(f, SHARD, &b, &r);
  assert_int_equal(r.status, KCLD_HANDLER_OK);
  assert_int_equal(f->ck_calls, 2);
  assert_string_equal(f->ck_seq[1], "203");

  json_t *init = got_actions(f, "initialize");
  assert_int_equal(json_array_size(init), 2);
  assert_string_equal(jstr(json_array_get(init, 0), "sequenceNumber"), "150");
  assert_string_equal(jstr(json_array_get(init, 1), "sequenceNumber"), "201");
  json_decref(init);
  f->h->ops->shard_stopped(f->h, SHARD, KCLD_SHARD_STOP_SHUTDOWN);
  wait_log(f, "eof", 1);
  fx_free(f);
}

static void test_hang_times_out(void **state)
{
  (void)state;
  char cmd[600], marker[160];
  struct recs a;
  struct result r;
  snprintf(cmd, sizeof(cmd), "[%s, \"%s\"]", kcld_test_python(), proc_path("crash.py"));
  struct fx *f = fx_new(cmd, NULL);
  snprintf(marker, sizeof(marker), "%s/hung", f->dir);
  setenv("ML_MARKER", marker, 1);
  setenv("ML_CRASH_SEQ", "300", 1);
  setenv("ML_HANG", "1", 1);

  make_recs(&a, 300, 1);
  unsigned long long t0 = kcld_test_now_ms();
  run_batch(f, SHARD, &a, &r);
  assert_int_equal(r.status, KCLD_HANDLER_FAILED);
  assert_int_equal(r.cls, KCLD_HANDLER_RECORD);
  assert_string_equal(r.type, "HandlerTimeout");
  assert_true(kcld_test_now_ms() - t0 >= 1900);
  run_batch(f, SHARD, &a, &r);
  assert_int_equal(r.status, KCLD_HANDLER_OK);
  fx_free(f);
}

static void test_garbage_is_skipped(void **state)
{
  (void)state;
  char cmd[600];
  struct recs a;
  struct result r;
  snprintf(cmd, sizeof(cmd), "[%s, \"%s\"]", kcld_test_python(), proc_path("garbage.py"));
  struct fx *f = fx_new(cmd, NULL);

  make_recs(&a, 300, 3);
  run_batch(f, SHARD, &a, &r);
  assert_int_equal(r.status, KCLD_HANDLER_OK);
  json_t *m = ml_entries(f, "malformed_answer");
  assert_string_equal(
    jstr(json_object_get(json_array_get(m, 0), "malformed_answer"), "error"),
    "IllegalArgumentException");
  json_decref(m);
  json_t *ck = ml_entries(f, "checkpoint");
  assert_int_equal(json_array_size(ck), 1);
  assert_string_equal(jstr(json_array_get(ck, 0), "error"),
                      "IllegalArgumentException");
  json_decref(ck);
  m = ml_entries(f, "split_answer");
  json_t *ans = json_object_get(json_array_get(m, 0), "split_answer");
  assert_true(json_is_null(json_object_get(ans, "error")));
  assert_string_equal(jstr(ans, "sequenceNumber"), "302");
  json_decref(m);
  assert_int_equal(f->ck_calls, 1);
  assert_string_equal(f->ck_seq[0], "302");
  /* Every bad line logged once, tagged with the shard. */
  assert_int_equal(log_count(f, "is not a protocol message"), 4);
  assert_int_equal(log_count(f, "longer than the limit"), 1);
  assert_int_equal(log_count(f, "malformed message"), 2);
  assert_int_equal(log_count(f, "outside the records it was given"), 1);
  assert_int_equal(log_count(f, "a warning on stderr"), 1);
  assert_non_null(strstr(f->logbuf, "\"shard\":\"" SHARD "\""));
  fx_free(f);
}

/* A command that is not there is a start-up error; one that vanishes
 * later cannot start, which says nothing about the records: the batch
 * fails as an infrastructure failure. */
static void test_command_cannot_start(void **state)
{
  (void)state;
  struct recs a;
  struct result r;
  char yaml[256], *errors = NULL, script[160];
  struct kcld_config *cfg = NULL;
  struct kcld_handler *h = NULL;
  uv_loop_t loop;
  struct kcld_handler_env env = {.loop = &loop, .region = "us-east-1"};

  snprintf(yaml, sizeof(yaml), "application: app\nstream: s\nhandler:\n"
           "  type: multilang\n  command: [/nonexistent/kcld-processor]\n");
  assert_int_equal(kcld_config_parse("t.yaml", yaml, strlen(yaml), &cfg,
                                     &errors), 0);
  assert_int_equal(uv_loop_init(&loop), 0);
  env.cfg = cfg;
  assert_int_equal(kcld_handler_new(&env, &h), KCLD_ECONFIG);
  assert_null(h);
  kcld_test_loop_finish(&loop);
  kcld_config_free(cfg);

  char dir[] = "/tmp/kcld-mlgone-XXXXXX", cmd[200];
  assert_non_null(mkdtemp(dir));
  snprintf(script, sizeof(script), "%s/gone.sh", dir);
  FILE *fp = fopen(script, "w");
  assert_non_null(fp);
  fputs("#!/bin/sh\nexit 0\n", fp);
  fclose(fp);
  assert_int_equal(chmod(script, 0755), 0);
  snprintf(cmd, sizeof(cmd), "[\"%s\"]", script);
  struct fx *f = fx_new(cmd, NULL);
  assert_int_equal(unlink(script), 0);
  assert_int_equal(rmdir(dir), 0);
  make_recs(&a, 1, 1);
  run_batch(f, SHARD, &a, &r);
  assert_int_equal(r.status, KCLD_HANDLER_FAILED);
  assert_int_equal(r.cls, KCLD_HANDLER_INFRA);
  assert_string_equal(r.type, "HandlerUnavailable");
  assert_non_null(strstr(r.msg, "cannot start"));
  fx_free(f);
}

/* python3 on a script that does not exist exits at once, before reading
 * anything: every batch is an infrastructure failure, again and again. */
static void test_script_missing_is_infra(void **state)
{
  (void)state;
  struct recs a;
  struct result r;
  char cmd[1100];
  snprintf(cmd, sizeof(cmd), "[%s, /nonexistent/kcld-processor.py]",
           kcld_test_python());
  struct fx *f = fx_new(cmd, NULL);
  make_recs(&a, 1, 2);
  for (int i = 0; i < 2; i++) {
    run_batch(f, SHARD, &a, &r);
    assert_int_equal(r.status, KCLD_HANDLER_FAILED);
    assert_int_equal(r.cls, KCLD_HANDLER_INFRA);
    assert_string_equal(r.type, "HandlerUnavailable");
    assert_non_null(strstr(r.msg, "exited with status 2"));
  }
  fx_free(f);
}

/* The child exits (without reading its batch) while a grandchild keeps
 * its stdout open: the grandchild, in the child's process group, is
 * killed with it, and the batch fails at once. */
static void test_grandchild_holds_stdout(void **state)
{
  (void)state;
  struct recs a;
  struct result r;
  struct fx *f = fx_new("[sh, -c, \"sleep 1 & exit 4\"]", NULL);
  make_recs(&a, 1, 1);
  unsigned long long t0 = kcld_test_now_ms();
  run_batch(f, SHARD, &a, &r);
  assert_int_equal(r.status, KCLD_HANDLER_FAILED);
  assert_int_equal(r.cls, KCLD_HANDLER_INFRA);
  assert_string_equal(r.type, "HandlerUnavailable");
  assert_non_null(strstr(r.msg, "exited with status 4"));
  assert_true(kcld_test_now_ms() - t0 < 1000);
  fx_free(f);
}

/* kill: a processor hanging on a batch, and a grandchild it started, die
 * at once; the batch in flight and the one queued behind it are answered
 * HandlerCanceled (infrastructure); the handler takes no more. */
static void test_kill(void **state)
{
  (void)state;
  char cmd[1024], gcpath[128], marker[160];
  struct recs a, b;
  struct result r1, r2, r3;
  struct kcld_handler_batch b1, b2;
  snprintf(gcpath, sizeof(gcpath), "/tmp/kcld-ml-gc-%d", (int)getpid());
  snprintf(cmd, sizeof(cmd), "[sh, -c, \"sleep 1000 & echo $! > %s; exec "
           "%s %s\"]", gcpath, kcld_test_python(), proc_path("crash.py"));
  struct fx *f = fx_new(cmd, NULL);
  snprintf(marker, sizeof(marker), "%s/hung", f->dir);
  setenv("ML_MARKER", marker, 1);
  setenv("ML_CRASH_SEQ", "401", 1);
  setenv("ML_HANG", "1", 1);

  make_recs(&a, 400, 2);
  make_recs(&b, 402, 1);
  b1 = (struct kcld_handler_batch){SHARD, a.p, a.n, -1, 1};
  b2 = (struct kcld_handler_batch){SHARD, b.p, b.n, -1, 1};
  memset(&r1, 0, sizeof(r1));
  memset(&r2, 0, sizeof(r2));
  memset(&r3, 0, sizeof(r3));
  assert_int_equal(kcld_handler_process(f->h, &b1, on_done, &r1), 0);
  assert_int_equal(kcld_handler_process(f->h, &b2, on_done, &r2), 0);
  wait_log(f, "crashing", 1); /* it hangs on the first batch */
  char *text = kcld_test_slurp(gcpath, NULL);
  assert_non_null(text);
  pid_t gc = atoi(text);
  free(text);
  unlink(gcpath);
  assert_true(gc > 0 && kcld_test_pid_alive(gc));
  assert_int_equal(r1.done + r2.done, 0);
  kcld_handler_kill(f->h);
  assert_int_equal(r1.done, 1);
  assert_int_equal(r2.done, 1);
  assert_int_equal(r1.cls, KCLD_HANDLER_INFRA);
  assert_string_equal(r1.type, "HandlerCanceled");
  assert_int_equal(r2.cls, KCLD_HANDLER_INFRA);
  assert_string_equal(r2.type, "HandlerCanceled");
  assert_int_equal(kcld_handler_process(f->h, &b2, on_done, &r3),
                   KCLD_ECANCELED);
  unsigned long long t0 = kcld_test_now_ms();
  fx_free(f);
  assert_true(kcld_test_now_ms() - t0 < 1000);
  assert_true(kcld_test_wait_dead(gc, 1000));
}

static void test_two_shards(void **state)
{
  (void)state;
  char cmd[600];
  struct recs a, b;
  struct result ra, rb;
  struct kcld_handler_batch ba, bb;
  snprintf(cmd, sizeof(cmd), "[%s, \"%s\"]", kcld_test_python(),
           proc_path("shard_end.py"));
  struct fx *f = fx_new(cmd, NULL);
  make_recs(&a, 1, 2);
  make_recs(&b, 7, 2);
  ba = (struct kcld_handler_batch){"shardId-A", a.p, a.n, -1, 1};
  bb = (struct kcld_handler_batch){"shardId-B", b.p, b.n, -1, 1};
  memset(&ra, 0, sizeof(ra));
  memset(&rb, 0, sizeof(rb));
  assert_int_equal(kcld_handler_process(f->h, &ba, on_done, &ra), 0);
  assert_int_equal(kcld_handler_process(f->h, &bb, on_done, &rb), 0);
  assert_true(kcld_test_run_until(&f->loop, &ra.done, 10000));
  assert_true(kcld_test_run_until(&f->loop, &rb.done, 10000));
  assert_int_equal(ra.status, KCLD_HANDLER_OK);
  assert_int_equal(rb.status, KCLD_HANDLER_OK);
  json_t *pr = ml_entries(f, "got"), *e;
  size_t i;
  int seen_a = 0, seen_b = 0;
  json_array_foreach(pr, i, e) {
    json_t *g = json_object_get(e, "got");
    const char *sh = jstr(e, "shard");
    if (strcmp(jstr(g, "action"), "processRecords") != 0)
      continue;
    const char *first = jstr(json_array_get(json_object_get(g, "records"),
                                            0), "sequenceNumber");
    if (strcmp(sh, "shardId-A") == 0 && strcmp(first, "1") == 0)
      seen_a++;
    if (strcmp(sh, "shardId-B") == 0 && strcmp(first, "7") == 0)
      seen_b++;
  }
  json_decref(pr);
  assert_int_equal(seen_a, 1);
  assert_int_equal(seen_b, 1);
  f->h->ops->shard_stopped(f->h, "shardId-A", KCLD_SHARD_STOP_LOST);
  f->h->ops->shard_stopped(f->h, "shardId-B", KCLD_SHARD_STOP_LOST);
  wait_log(f, "eof", 2);
  fx_free(f);
}

/* ======== Part 2: kcld against the emulators ======== */

struct e2e {
  struct kcld_emu emu;
  struct kcld_test_aws *t;
  char dir[32];
  char conf[128], log[128];
  struct fx view;                 /* only view.ml_log is used */
  char seqs[32][KCLD_SEQ_MAX + 1];
  int n;
  pid_t pid;
};

/* Emulators, a one-shard stream "mlstream" with n records "rec-<i>". */
static void e2e_setup(struct e2e *e, int n)
{
  struct stat st;
  memset(e, 0, sizeof(*e));
  if (stat(kcld_test_bin(), &st) != 0)
    skip(); /* no binary: make check builds it before the tests */
  snprintf(e->dir, sizeof(e->dir), "/tmp/kcld-mle2e-XXXXXX");
  assert_non_null(mkdtemp(e->dir));
  snprintf(e->log, sizeof(e->log), "%s/kcld.log", e->dir);
  snprintf(e->view.ml_log, sizeof(e->view.ml_log), "%s/ml.log", e->dir);
  setenv("ML_LOG", e->view.ml_log, 1);
  assert_int_equal(kcld_emu_start(&e->emu, "kinesis dynamodb"), 0);
  e->t = kcld_test_aws_new(kcld_emu_url(&e->emu, "kinesis"),
                           kcld_emu_url(&e->emu, "dynamodb"), NULL);
  kcld_e2e_create_stream(e->t, "mlstream", 1);
  e->n = n;
  for (int i = 0; i < n; i++) {
    char data[16];
    unsigned char b64[32];
    int len = snprintf(data, sizeof(data), "rec-%d", i);
    EVP_EncodeBlock(b64, (const unsigned char *)data, len);
    json_t *r = kcld_e2e_call(e->t, KCLD_AWS_KINESIS, "PutRecord",
                              json_pack("{s:s,s:s,s:s}", "StreamName",
                                        "mlstream", "Data", (char *)b64,
                                        "PartitionKey", "k"));
    snprintf(e->seqs[i], sizeof(e->seqs[i]), "%s",
             json_string_value(json_object_get(r, "SequenceNumber")));
    json_decref(r);
  }
}

static void e2e_teardown(struct e2e *e)
{
  char cmd[64];
  if (e->pid > 0)
    kcld_test_reap(e->pid);
  unsetenv("ML_LOG");
  unsetenv("ML_MARKER");
  unsetenv("ML_CRASH_SEQ");
  kcld_test_aws_free(e->t);
  kcld_emu_stop(&e->emu);
  snprintf(cmd, sizeof(cmd), "rm -rf %s", e->dir);
  assert_int_equal(system(cmd), 0);
}

/* A .properties file for `processor`, with `extra` lines appended. */
static void write_properties(struct e2e *e, const char *processor,
                             const char *extra)
{
  snprintf(e->conf, sizeof(e->conf), "%s/app.properties", e->dir);
  FILE *pf = fopen(e->conf, "w");
  assert_non_null(pf);
  fprintf(pf,
          "# A KCL MultiLangDaemon properties file, as the samples have it.\n"
          "executableName = python3 %s\n"
          "streamName = mlstream\n"
          "applicationName = mlapp\n"
          "regionName = us-east-1\n"
          "kinesisEndpoint = %s\n"
          "dynamoDBEndpoint : %s\n"
          "initialPositionInStream = TRIM_HORIZON\n"
          "processingLanguage = python/3\n"
          "maxRecords = 5\n"
          "idleTimeBetweenReadsInMillis = 200\n"
          "failoverTimeMillis = 2000\n"
          "shardSyncIntervalMillis = 1000\n"
          "kcld.batch.size = 5\n"
          "kcld.metrics.listen =\n"
          "kcld.shutdown_timeout = 10s\n"
          "kcld.retry.backoff_base = 50ms\n"
          "kcld.retry.max_retry_attempts = -1\n"
          "%s",
          proc_path(processor), kcld_emu_url(&e->emu, "kinesis"),
          kcld_emu_url(&e->emu, "dynamodb"), extra ? extra : "");
  fclose(pf);
}

static void spawn_kcld(struct e2e *e, int properties)
{
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int fd = open(e->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    setenv("AWS_ACCESS_KEY_ID", "test", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "test", 1);
    kcld_test_state_dir(e->conf);
    execl(kcld_test_bin(), "kcld", properties ? "--properties" : "--config",
          e->conf, (char *)NULL);
    _exit(127);
  }
  e->pid = pid;
}

static void fail_with_log(struct e2e *e, const char *what)
{
  char *l = kcld_test_slurp(e->log, NULL);
  char *m = kcld_test_slurp(e->view.ml_log, NULL);
  fail_msg("%s\nkcld log:\n%s\nprocessor log:\n%s", what, l ? l : "",
           m ? m : "");
}

/* Distinct records the processor was given (by sequence number). */
static int distinct_seen(struct e2e *e)
{
  json_t *pr = got_actions(&e->view, "processRecords"), *b, *r;
  size_t i, j;
  int seen = 0;
  for (int k = 0; k < e->n; k++) {
    int hit = 0;
    json_array_foreach(pr, i, b)
      json_array_foreach(json_object_get(b, "records"), j, r)
        if (strcmp(jstr(r, "sequenceNumber"), e->seqs[k]) == 0)
          hit = 1;
    seen += hit;
  }
  json_decref(pr);
  return seen;
}

static void wait_all_seen(struct e2e *e)
{
  unsigned long long end = kcld_test_now_ms() + 20000;
  int status;
  while (kcld_test_now_ms() < end && distinct_seen(e) < e->n) {
    if (kcld_test_wait_exit(e->pid, 0, &status)) {
      e->pid = 0;
      fail_with_log(e, "kcld exited early");
    }
    kcld_test_sleep_ms(100);
  }
  if (distinct_seen(e) < e->n)
    fail_with_log(e, "the processor did not see every record");
}

/* Waits until some lease's checkpoint is `want`. */
static void wait_checkpoint(struct e2e *e, const char *want)
{
  for (int i = 0; i < 150; i++) {
    json_t *req = json_pack("{s:s,s:b}", "TableName", "mlapp",
                            "ConsistentRead", 1);
    json_t *r = kcld_test_aws_call(e->t, KCLD_AWS_DYNAMODB, "Scan", req,
                                   NULL); /* NULL until kcld made the table */
    json_t *item;
    json_decref(req);
    size_t k;
    int ok = 0;
    json_array_foreach(json_object_get(r, "Items"), k, item) {
      const char *cp = json_string_value(
        json_object_get(json_object_get(item, "checkpoint"), "S"));
      ok |= cp && strcmp(cp, want) == 0;
    }
    json_decref(r);
    if (ok)
      return;
    kcld_test_sleep_ms(100);
  }
  fail_with_log(e, "the lease table never showed the checkpoint");
}

static void stop_kcld(struct e2e *e)
{
  int status = 0;
  kill(e->pid, SIGTERM);
  if (!kcld_test_wait_exit(e->pid, 20000, &status))
    fail_with_log(e, "kcld did not stop on SIGTERM");
  e->pid = 0;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail_with_log(e, "kcld did not exit 0");
}

static size_t count_in(const char *path, const char *needle)
{
  char *text = kcld_test_slurp(path, NULL);
  size_t n = 0;
  for (const char *s = text; s && (s = strstr(s, needle));
       s += strlen(needle))
    n++;
  free(text);
  return n;
}

static void test_e2e_properties_checkpoint_mid(void **state)
{
  (void)state;
  struct e2e e;
  e2e_setup(&e, 20);
  write_properties(&e, "checkpoint_mid.py", NULL);
  spawn_kcld(&e, 1);
  wait_all_seen(&e);
  /* kcld checkpoints the end of each answered batch; the child's
   * mid-batch checkpoints went through the same writes, all accepted. */
  wait_checkpoint(&e, e.seqs[19]);
  json_t *ck = ml_entries(&e.view, "checkpoint"), *x;
  size_t i;
  assert_true(json_array_size(ck) >= 4);
  json_array_foreach(ck, i, x)
    if (!json_is_null(json_object_get(x, "error")))
      fail_with_log(&e, "a mid-batch checkpoint was refused");
  json_decref(ck);
  if (count_in(e.log, "processingLanguage") != 1)
    fail_with_log(&e, "processingLanguage not logged once");
  stop_kcld(&e);
  json_t *sd = got_actions(&e.view, "shutdownRequested");
  assert_int_equal(json_array_size(sd), 1);
  json_decref(sd);
  json_t *eof = ml_entries(&e.view, "eof");
  assert_int_equal(json_array_size(eof), 1);
  json_decref(eof);
  e2e_teardown(&e);
}

static void test_e2e_yaml_minimal_processor(void **state)
{
  (void)state;
  struct e2e e;
  e2e_setup(&e, 12);
  snprintf(e.conf, sizeof(e.conf), "%s/kcld.yaml", e.dir);
  FILE *f = fopen(e.conf, "w");
  assert_non_null(f);
  fprintf(f,
          "application: mlapp\nstream: mlstream\nregion: us-east-1\n"
          "endpoints:\n  kinesis: %s\n  dynamodb: %s\n"
          "lease:\n  failover_time: 2s\n"
          "fetch:\n  idle_time: 200ms\n"
          "metrics:\n  listen: \"\"\n"
          "batch:\n  size: 4\n"
          "handler:\n  type: multilang\n  command: [python3, \"%s\"]\n",
          kcld_emu_url(&e.emu, "kinesis"), kcld_emu_url(&e.emu, "dynamodb"),
          proc_path("minimal.py"));
  fclose(f);
  spawn_kcld(&e, 0);
  wait_checkpoint(&e, e.seqs[11]);
  /* The processor's stderr reached kcld's log, tagged with the shard. */
  unsigned long long end = kcld_test_now_ms() + 5000;
  while (count_in(e.log, "\"line\":\"k 5\"") +
           count_in(e.log, "\"line\":\"k 6\"") < 12 &&
         kcld_test_now_ms() < end)
    kcld_test_sleep_ms(50);
  assert_int_equal(count_in(e.log, "\"line\":\"k 5\"") +
                     count_in(e.log, "\"line\":\"k 6\""), 12);
  assert_true(count_in(e.log, "\"shard\":\"shardId-000000000000\"") >= 12);
  assert_int_equal(count_in(e.log, "checkpoint failed"), 0);
  stop_kcld(&e);
  e2e_teardown(&e);
}

static void test_e2e_crash_restarts(void **state)
{
  (void)state;
  struct e2e e;
  char marker[64];
  e2e_setup(&e, 20);
  snprintf(marker, sizeof(marker), "%s/crashed", e.dir);
  setenv("ML_MARKER", marker, 1);
  setenv("ML_CRASH_SEQ", e.seqs[12], 1);
  write_properties(&e, "crash.py", NULL);
  spawn_kcld(&e, 1);
  wait_all_seen(&e);
  wait_checkpoint(&e, e.seqs[19]);
  json_t *init = got_actions(&e.view, "initialize");
  if (json_array_size(init) != 2)
    fail_with_log(&e, "expected exactly one restart");
  /* The restarted child starts at the checkpoint before the crash. */
  assert_true(json_is_null(json_object_get(json_array_get(init, 0),
                                           "sequenceNumber")));
  const char *at = jstr(json_array_get(init, 1), "sequenceNumber");
  assert_non_null(at);
  assert_true(strcmp(at, e.seqs[9]) == 0);
  json_decref(init);
  assert_true(count_in(e.log, "exited with status 3") >= 1);
  stop_kcld(&e);
  e2e_teardown(&e);
}

static void test_e2e_garbage(void **state)
{
  (void)state;
  struct e2e e;
  e2e_setup(&e, 10);
  write_properties(&e, "garbage.py", NULL);
  spawn_kcld(&e, 1);
  wait_all_seen(&e);
  wait_checkpoint(&e, e.seqs[9]);
  assert_true(count_in(e.log, "is not a protocol message") >= 8);
  assert_true(count_in(e.log, "a warning on stderr") >= 2);
  stop_kcld(&e);
  e2e_teardown(&e);
}

static void test_e2e_shard_end(void **state)
{
  (void)state;
  struct e2e e;
  e2e_setup(&e, 6);
  write_properties(&e, "shard_end.py", NULL);
  spawn_kcld(&e, 1);
  wait_all_seen(&e);
  /* Reshard: the parent ends, its processor gets shardEnded and answers
   * with a checkpoint, which must succeed. */
  json_decref(kcld_e2e_call(
    e.t, KCLD_AWS_KINESIS, "SplitShard",
    json_pack("{s:s,s:s,s:s}", "StreamName", "mlstream", "ShardToSplit",
              "shardId-000000000000", "NewStartingHashKey",
              "170141183460469231731687303715884105728")));
  kcld_e2e_wait_stream_active(e.t, "mlstream");
  unsigned long long end = kcld_test_now_ms() + 25000;
  json_t *done = NULL;
  while (kcld_test_now_ms() < end) {
    done = ml_entries(&e.view, "shard_end_checkpointed");
    if (json_array_size(done) >= 1)
      break;
    json_decref(done);
    done = NULL;
    kcld_test_sleep_ms(100);
  }
  if (!done)
    fail_with_log(&e, "the processor never checkpointed shardEnded");
  json_decref(done);
  wait_checkpoint(&e, "SHARD_END");
  stop_kcld(&e);
  e2e_teardown(&e);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_checkpoint_mid_batch),
    cmocka_unit_test(test_checkpoint_failure_mapped),
    cmocka_unit_test(test_shard_ended_checkpoint),
    cmocka_unit_test(test_crash_restarts_from_checkpoint),
    cmocka_unit_test(test_hang_times_out),
    cmocka_unit_test(test_garbage_is_skipped),
    cmocka_unit_test(test_command_cannot_start),
    cmocka_unit_test(test_script_missing_is_infra),
    cmocka_unit_test(test_grandchild_holds_stdout),
    cmocka_unit_test(test_kill),
    cmocka_unit_test(test_two_shards),
    cmocka_unit_test(test_e2e_properties_checkpoint_mid),
    cmocka_unit_test(test_e2e_yaml_minimal_processor),
    cmocka_unit_test(test_e2e_crash_restarts),
    cmocka_unit_test(test_e2e_garbage),
    cmocka_unit_test(test_e2e_shard_end),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
