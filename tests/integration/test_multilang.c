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
#include "config.h"
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
  char ck_seq[16][KCLD_RECORD_SEQ_MAX + 1];
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
  f->h->ops->destroy(f->h);
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
  snprintf(cmd, sizeof(cmd), "[python3, \"%s\"]",
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
  snprintf(cmd, sizeof(cmd), "[python3, \"%s\"]",
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
  snprintf(cmd, sizeof(cmd), "[python3, \"%s\"]",
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
  snprintf(cmd, sizeof(cmd), "[python3, \"%s\"]", proc_path("crash.py"));
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
  snprintf(cmd, sizeof(cmd), "[python3, \"%s\"]", proc_path("crash.py"));
  struct fx *f = fx_new(cmd, NULL);
  snprintf(marker, sizeof(marker), "%s/hung", f->dir);
  setenv("ML_MARKER", marker, 1);
  setenv("ML_CRASH_SEQ", "300", 1);
  setenv("ML_HANG", "1", 1);

  make_recs(&a, 300, 1);
  unsigned long long t0 = kcld_test_now_ms();
  run_batch(f, SHARD, &a, &r);
  assert_int_equal(r.status, KCLD_HANDLER_FAILED);
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
  snprintf(cmd, sizeof(cmd), "[python3, \"%s\"]", proc_path("garbage.py"));
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

static void test_command_cannot_start(void **state)
{
  (void)state;
  struct recs a;
  struct result r;
  struct fx *f = fx_new("[/nonexistent/kcld-processor]", NULL);
  make_recs(&a, 1, 1);
  run_batch(f, SHARD, &a, &r);
  assert_int_equal(r.status, KCLD_HANDLER_FAILED);
  assert_string_equal(r.type, "HandlerSpawnFailed");
  assert_non_null(strstr(r.msg, "cannot start"));
  fx_free(f);
}

static void test_two_shards(void **state)
{
  (void)state;
  char cmd[600];
  struct recs a, b;
  struct result ra, rb;
  struct kcld_handler_batch ba, bb;
  snprintf(cmd, sizeof(cmd), "[python3, \"%s\"]",
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

/* ======== Part 2: kcld --properties against the emulators ======== */

static json_t *aws(struct kcld_test_aws *t, enum kcld_aws_service svc,
                   const char *op, json_t *req)
{
  const char *type = NULL;
  json_t *res = kcld_test_aws_call(t, svc, op, req, &type);
  if (!res)
    fail_msg("%s failed: %s", op, type);
  json_decref(req);
  return res;
}

static pid_t spawn_kcld_properties(const char *props, const char *log)
{
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    setenv("AWS_ACCESS_KEY_ID", "test", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "test", 1);
    execl(kcld_test_bin(), "kcld", "--properties", props, (char *)NULL);
    _exit(127);
  }
  return pid;
}

static void test_kcld_properties_e2e(void **state)
{
  (void)state;
  struct kcld_emu emu;
  char dir[] = "/tmp/kcld-mle2e-XXXXXX", props[128], log[128], mlog[128];
  char cmd[256];
  struct stat st;
  int status = 0;

  if (stat(kcld_test_bin(), &st) != 0)
    skip(); /* kcld does not link yet in this tree */
  assert_non_null(mkdtemp(dir));
  assert_int_equal(kcld_emu_start(&emu, "kinesis dynamodb"), 0);
  struct kcld_test_aws *t = kcld_test_aws_new(kcld_emu_url(&emu, "kinesis"),
                                              kcld_emu_url(&emu, "dynamodb"),
                                              NULL);
  json_decref(aws(t, KCLD_AWS_KINESIS, "CreateStream",
                  json_pack("{s:s,s:i}", "StreamName", "mlstream",
                            "ShardCount", 1)));
  for (int i = 0; i < 200; i++) {
    json_t *r = aws(t, KCLD_AWS_KINESIS, "DescribeStreamSummary",
                    json_pack("{s:s}", "StreamName", "mlstream"));
    const char *s = json_string_value(json_object_get(
      json_object_get(r, "StreamDescriptionSummary"), "StreamStatus"));
    int active = s && strcmp(s, "ACTIVE") == 0;
    json_decref(r);
    if (active)
      break;
    kcld_test_sleep_ms(50);
  }
  char last_seq[KCLD_RECORD_SEQ_MAX + 1] = "";
  for (int i = 0; i < 20; i++) {
    char data[16];
    unsigned char b64[32];
    int n = snprintf(data, sizeof(data), "rec-%d", i);
    EVP_EncodeBlock(b64, (const unsigned char *)data, n);
    json_t *r = aws(t, KCLD_AWS_KINESIS, "PutRecord",
                    json_pack("{s:s,s:s,s:s}", "StreamName", "mlstream",
                              "Data", (char *)b64, "PartitionKey", "k"));
    snprintf(last_seq, sizeof(last_seq), "%s",
             json_string_value(json_object_get(r, "SequenceNumber")));
    json_decref(r);
  }

  snprintf(props, sizeof(props), "%s/app.properties", dir);
  snprintf(log, sizeof(log), "%s/kcld.log", dir);
  snprintf(mlog, sizeof(mlog), "%s/ml.log", dir);
  FILE *pf = fopen(props, "w");
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
          "kcld.batch.size = 5\n"
          "kcld.metrics.listen =\n"
          "kcld.shutdown_timeout = 10s\n",
          proc_path("checkpoint_mid.py"), kcld_emu_url(&emu, "kinesis"),
          kcld_emu_url(&emu, "dynamodb"));
  fclose(pf);
  setenv("ML_LOG", mlog, 1);
  pid_t pid = spawn_kcld_properties(props, log);

  /* Every record reaches the processor. */
  struct fx view;
  memset(&view, 0, sizeof(view));
  snprintf(view.ml_log, sizeof(view.ml_log), "%s", mlog);
  unsigned long long end = kcld_test_now_ms() + 30000;
  int seen = 0;
  while (kcld_test_now_ms() < end && seen < 20) {
    json_t *pr = got_actions(&view, "processRecords"), *e;
    size_t i;
    seen = 0;
    json_array_foreach(pr, i, e)
      seen += (int)json_array_size(json_object_get(e, "records"));
    json_decref(pr);
    kcld_test_sleep_ms(100);
  }
  if (seen < 20) {
    char *l = kcld_test_slurp(log, NULL);
    fail_msg("processor saw %d of 20 records; kcld log:\n%s", seen,
             l ? l : "");
  }
  /* The lease table holds the end of the last batch (kcld checkpoints it
   * after the child's status), at or past the child's mid-batch ones. */
  int ok = 0;
  for (int i = 0; i < 100 && !ok; i++) {
    json_t *r = aws(t, KCLD_AWS_DYNAMODB, "Scan",
                    json_pack("{s:s,s:b}", "TableName", "mlapp",
                              "ConsistentRead", 1));
    json_t *item = json_array_get(json_object_get(r, "Items"), 0);
    const char *cp = json_string_value(
      json_object_get(json_object_get(item, "checkpoint"), "S"));
    ok = cp && strcmp(cp, last_seq) == 0;
    json_decref(r);
    if (!ok)
      kcld_test_sleep_ms(100);
  }
  assert_true(ok);
  json_t *ck = ml_entries(&view, "checkpoint"), *e;
  size_t i;
  assert_true(json_array_size(ck) >= 4);
  json_array_foreach(ck, i, e)
    assert_true(json_is_null(json_object_get(e, "error")));
  json_decref(ck);

  kill(pid, SIGTERM);
  if (!kcld_test_wait_exit(pid, 20000, &status))
    fail_msg("kcld did not stop on SIGTERM");
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  json_t *sd = got_actions(&view, "shutdownRequested");
  assert_int_equal(json_array_size(sd), 1);
  json_decref(sd);
  json_t *eof = ml_entries(&view, "eof");
  assert_int_equal(json_array_size(eof), 1);
  json_decref(eof);

  unsetenv("ML_LOG");
  kcld_test_aws_free(t);
  kcld_emu_stop(&emu);
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
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
    cmocka_unit_test(test_two_shards),
    cmocka_unit_test(test_kcld_properties_e2e),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
