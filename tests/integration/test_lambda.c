/* test_lambda.c — handler.type: lambda, in process with a real uv loop and
 * real children (tests/processors/lambda_test.py, which also checks the
 * event's shape on its side): success, partial failure, error answers,
 * garbage and crashes (batch failed, child restarted, next batch served),
 * a child that misbehaves right after a good answer (batch OK),
 * handler.timeout, concurrency across shards, stderr to the log, a command
 * that cannot run; and the Python example (examples/lambda-python): its
 * analytics for known events, run directly with python3 and through the
 * handler. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "config.h"
#include "consume/getrecords.h"
#include "err.h"
#include "handlers/handler.h"
#include "handlers/lambda.h"
#include "harness.h"
#include "log.h"
#include "proc.h"

#define SHARD "shardId-000000000001"

/* ======== Helpers ======== */

static struct kcld_config *config(const char *command, const char *extra)
{
  char yaml[4096];
  struct kcld_config *cfg = NULL;
  char *errors = NULL;
  int n = snprintf(yaml, sizeof(yaml),
                   "application: app\n"
                   "stream: arn:aws:kinesis:us-east-1:123456789012:stream/s\n"
                   "region: us-east-1\n"
                   "handler:\n  type: lambda\n  command: %s\n%s",
                   command, extra ? extra : "");
  if (kcld_config_parse("test.yaml", yaml, (size_t)n, &cfg, &errors) != 0)
    fail_msg("config: %s", errors ? errors : "?");
  return cfg;
}

/* The command list running a script of the project with python3. */
static const char *py(const char *script, const char *arg)
{
  static char cmd[1024];
  snprintf(cmd, sizeof(cmd), "[%s, \"%s/%s\"%s%s%s]", kcld_test_python(),
           kcld_test_root(), script, arg ? ", \"" : "", arg ? arg : "",
           arg ? "\"" : "");
  return cmd;
}

struct logcap {
  FILE *f;
};

static void log_capture(struct logcap *c)
{
  c->f = tmpfile();
  assert_non_null(c->f);
  kcld_log_setup(KCLD_LOG_INFO, KCLD_LOG_JSON, c->f);
}

static char *log_release(struct logcap *c)
{
  long n;
  char *text;
  kcld_log_setup(KCLD_LOG_INFO, KCLD_LOG_JSON, NULL);
  fflush(c->f);
  n = ftell(c->f);
  rewind(c->f);
  text = calloc(1, (size_t)n + 1);
  assert_non_null(text);
  assert_int_equal(fread(text, 1, (size_t)n, c->f), (size_t)n);
  fclose(c->f);
  return text;
}

/* A GetRecords batch with one record per payload; sequence numbers
 * 4960000000000000000000<base+i>. */
static struct kcld_record_batch *make_batch(const char *const *data,
                                            size_t n, unsigned base)
{
  json_t *recs = json_array(), *body;
  struct kcld_record_batch *b = NULL;
  char err[256], *text;

  for (size_t i = 0; i < n; i++) {
    size_t len = strlen(data[i]);
    unsigned char *enc = malloc(4 * ((len + 2) / 3) + 1);
    char seq[64];
    assert_non_null(enc);
    EVP_EncodeBlock(enc, (const unsigned char *)data[i], (int)len);
    snprintf(seq, sizeof(seq), "4960000000000000000000%04u",
             base + (unsigned)i);
    json_array_append_new(recs, json_pack("{s:s,s:s,s:s,s:f}", "Data", enc,
                                          "PartitionKey", "pk",
                                          "SequenceNumber", seq,
                                          "ApproximateArrivalTimestamp",
                                          1700000000.25 + (double)i));
    free(enc);
  }
  body = json_pack("{s:o,s:s}", "Records", recs, "NextShardIterator", "it");
  text = json_dumps(body, JSON_COMPACT);
  if (kcld_getrecords_parse(text, strlen(text), SHARD, &b, err,
                            sizeof(err)) != 0)
    fail_msg("parse: %s", err);
  free(text);
  json_decref(body);
  return b;
}

struct call {
  struct kcld_record_batch *rb;
  const struct kcld_record *ptrs[16];
  struct kcld_handler_batch hb;
  int done;
  struct kcld_handler_result res;
  char type[128];
  char msg[1024];
};

static void on_done(const struct kcld_handler_result *res, void *arg)
{
  struct call *c = arg;
  c->done++;
  c->res = *res;
  snprintf(c->type, sizeof(c->type), "%s",
           res->error_type ? res->error_type : "");
  snprintf(c->msg, sizeof(c->msg), "%s",
           res->error_message ? res->error_message : "");
}

static void start(struct kcld_handler *h, struct call *c,
                  const char *const *data, size_t n, const char *shard)
{
  memset(c, 0, sizeof(*c));
  assert_true(n <= 16);
  c->rb = make_batch(data, n, 0);
  for (size_t i = 0; i < n; i++)
    c->ptrs[i] = &c->rb->records[i];
  c->hb.shard_id = shard;
  c->hb.records = c->ptrs;
  c->hb.count = n;
  c->hb.millis_behind_latest = -1;
  c->hb.attempt = 1;
  assert_int_equal(kcld_handler_process(h, &c->hb, on_done, c), 0);
}

static void wait_call(uv_loop_t *loop, struct call *c, unsigned ms)
{
  if (!kcld_test_run_until(loop, &c->done, ms))
    fail_msg("no answer within %u ms", ms);
  assert_int_equal(c->done, 1);
  kcld_record_batch_release(c->rb);
  c->rb = NULL;
}

static void run(uv_loop_t *loop, struct kcld_handler *h, struct call *c,
                const char *const *data, size_t n)
{
  start(h, c, data, n, SHARD);
  wait_call(loop, c, 10000);
}

struct fixture {
  uv_loop_t loop;
  struct kcld_config *cfg;
  struct kcld_handler *h;
};

static void open_lambda(struct fixture *f, const char *command,
                        const char *extra)
{
  struct kcld_handler_env env = {.region = "us-east-1", .stream_arn = ""};
  uv_loop_init(&f->loop);
  f->cfg = config(command, extra);
  env.loop = &f->loop;
  env.cfg = f->cfg;
  assert_int_equal(kcld_handler_new(&env, &f->h), 0);
  assert_string_equal(f->h->ops->name, "lambda");
}

static void close_lambda(struct fixture *f)
{
  kcld_handler_close(f->h);
  kcld_config_free(f->cfg);
  kcld_test_loop_finish(&f->loop);
}

static struct kcld_lambda_stats stats(struct fixture *f)
{
  struct kcld_lambda_stats s;
  kcld_handler_lambda_stats(f->h, &s);
  return s;
}

/* Runs the loop until `n` children have been started (at most 5 s). */
static void await_spawned(struct fixture *f, uint64_t n)
{
  for (int i = 0; i < 100 && stats(f).spawned < n; i++) {
    int never = 0;
    kcld_test_run_until(&f->loop, &never, 50);
  }
}

/* ======== The test child ======== */

static void test_success_and_partial(void **state)
{
  struct fixture f;
  struct call c;
  (void)state;

  open_lambda(&f, py("tests/processors/lambda_test.py", NULL), NULL);
  const char *ok[] = {"a", "b", "c"};
  run(&f.loop, f.h, &c, ok, 3);
  if (c.res.status != KCLD_HANDLER_OK)
    fail_msg("status %d %s %s", c.res.status, c.type, c.msg);

  const char *nul[] = {"null"};
  run(&f.loop, f.h, &c, nul, 1);
  assert_int_equal(c.res.status, KCLD_HANDLER_OK);

  const char *part[] = {"a", "bad-1", "c", "bad-2", "d"};
  run(&f.loop, f.h, &c, part, 5);
  assert_int_equal(c.res.status, KCLD_HANDLER_PARTIAL);
  assert_int_equal(c.res.failure_class, KCLD_HANDLER_RECORD);
  assert_int_equal(c.res.first_failed, 1);
  assert_string_equal(c.type, "BatchItemFailures");

  const char *err[] = {"a", "error"};
  run(&f.loop, f.h, &c, err, 2);
  assert_int_equal(c.res.status, KCLD_HANDLER_FAILED);
  assert_int_equal(c.res.failure_class, KCLD_HANDLER_RECORD);
  assert_string_equal(c.type, "ValueError");
  assert_string_equal(c.msg, "boom");

  /* The child's environment tells it handler.timeout (default 5m). */
  const char *env[] = {"env"};
  run(&f.loop, f.h, &c, env, 1);
  assert_string_equal(c.type, "Env");
  assert_string_equal(c.msg, "300000");

  struct kcld_lambda_stats s = stats(&f);
  assert_int_equal(s.spawned, 1); /* one child served all five */
  assert_int_equal(s.crashed, 0);
  assert_int_equal(s.garbage, 0);
  close_lambda(&f);
}

static void test_garbage_restarts(void **state)
{
  struct fixture f;
  struct call c;
  struct logcap lc;
  char *log;
  (void)state;

  log_capture(&lc);
  open_lambda(&f, py("tests/processors/lambda_test.py", NULL), NULL);
  const char *g[] = {"a", "garbage"};
  run(&f.loop, f.h, &c, g, 2);
  assert_int_equal(c.res.status, KCLD_HANDLER_FAILED);
  assert_int_equal(c.res.failure_class, KCLD_HANDLER_RECORD);
  assert_string_equal(c.type, "HandlerMalformedAnswer");
  /* The next batch waits for the restarted child and succeeds. */
  const char *ok[] = {"a"};
  run(&f.loop, f.h, &c, ok, 1);
  assert_int_equal(c.res.status, KCLD_HANDLER_OK);
  struct kcld_lambda_stats s = stats(&f);
  assert_int_equal(s.garbage, 1);
  assert_int_equal(s.spawned, 2);
  close_lambda(&f);
  log = log_release(&lc);
  assert_non_null(strstr(log, "not a protocol answer"));
  assert_non_null(strstr(log, "\"line\":\"this is not json\""));
  free(log);
}

/* An answer in pieces is one answer; output with no batch pending is
 * garbage: the child is restarted and the next batch still served. */
static void test_split_and_unsolicited(void **state)
{
  struct fixture f;
  struct call c;
  (void)state;

  open_lambda(&f, py("tests/processors/lambda_test.py", NULL), NULL);
  const char *split[] = {"split"};
  run(&f.loop, f.h, &c, split, 1);
  assert_int_equal(c.res.status, KCLD_HANDLER_OK);
  const char *chatty[] = {"chatty"};
  run(&f.loop, f.h, &c, chatty, 1);
  assert_int_equal(c.res.status, KCLD_HANDLER_OK);
  /* Wait for the stray line and the restart it causes. */
  await_spawned(&f, 2);
  assert_int_equal(stats(&f).garbage, 1);
  assert_int_equal(stats(&f).spawned, 2);
  const char *ok[] = {"a"};
  run(&f.loop, f.h, &c, ok, 1);
  assert_int_equal(c.res.status, KCLD_HANDLER_OK);
  close_lambda(&f);
}

/* An answer is parsed on the pool after it arrives.  What the child does
 * meanwhile does not change the answer: a stray line right behind it (in
 * the same read) is garbage that restarts the child, and a child that
 * exits right after answering is no crash of that batch.  Either way the
 * batch is OK and the next one is served by the new child. */
static void test_answer_then_misbehave(void **state)
{
  struct fixture f;
  struct call c;
  (void)state;

  open_lambda(&f, py("tests/processors/lambda_test.py", NULL), NULL);
  const char *blurt[] = {"blurt"};
  run(&f.loop, f.h, &c, blurt, 1);
  if (c.res.status != KCLD_HANDLER_OK)
    fail_msg("blurt: status %d %s %s", c.res.status, c.type, c.msg);
  const char *ok[] = {"a"};
  run(&f.loop, f.h, &c, ok, 1);
  assert_int_equal(c.res.status, KCLD_HANDLER_OK);
  assert_int_equal(stats(&f).garbage, 1);
  assert_int_equal(stats(&f).spawned, 2);

  const char *last[] = {"last"};
  run(&f.loop, f.h, &c, last, 1);
  if (c.res.status != KCLD_HANDLER_OK)
    fail_msg("last: status %d %s %s", c.res.status, c.type, c.msg);
  /* Its exit may come after the slot is free again: a batch sent then
   * would meet a dead child (HandlerUnavailable, retried by the
   * dispatcher).  Wait for the restart to test the answer alone. */
  await_spawned(&f, 3);
  run(&f.loop, f.h, &c, ok, 1);
  assert_int_equal(c.res.status, KCLD_HANDLER_OK);
  struct kcld_lambda_stats s = stats(&f);
  assert_int_equal(s.spawned, 3);
  assert_int_equal(s.garbage, 1);
  close_lambda(&f);
}

static void test_crash_restarts(void **state)
{
  struct fixture f;
  struct call c;
  (void)state;

  open_lambda(&f, py("tests/processors/lambda_test.py", NULL), NULL);
  const char *crash[] = {"a", "crash"};
  run(&f.loop, f.h, &c, crash, 2);
  assert_int_equal(c.res.status, KCLD_HANDLER_FAILED);
  /* It read the batch, then died: the handler's verdict on the data. */
  assert_int_equal(c.res.failure_class, KCLD_HANDLER_RECORD);
  assert_string_equal(c.type, "HandlerCrashed");
  assert_string_equal(c.msg, "the handler process exited with status 3");
  const char *ok[] = {"a", "b"};
  run(&f.loop, f.h, &c, ok, 2);
  assert_int_equal(c.res.status, KCLD_HANDLER_OK);
  /* Crash twice more: still served, backoff grows but stays short. */
  run(&f.loop, f.h, &c, crash, 2);
  assert_string_equal(c.type, "HandlerCrashed");
  run(&f.loop, f.h, &c, ok, 2);
  assert_int_equal(c.res.status, KCLD_HANDLER_OK);
  struct kcld_lambda_stats s = stats(&f);
  assert_int_equal(s.crashed, 2);
  assert_int_equal(s.spawned, 3);
  close_lambda(&f);
}

/* The command vanishes while its child is down: queued batches fail as
 * HandlerUnavailable (an infrastructure failure) instead of waiting; once
 * it is back, batches are served again. */
static void test_command_vanishes(void **state)
{
  char dir[] = "/tmp/kcld-lambda-XXXXXX", script[128], moved[128];
  char cmd[256];
  struct fixture f;
  struct call c;
  FILE *fp;
  (void)state;

  assert_non_null(mkdtemp(dir));
  snprintf(script, sizeof(script), "%s/child.sh", dir);
  snprintf(moved, sizeof(moved), "%s/moved.sh", dir);
  fp = fopen(script, "w");
  assert_non_null(fp);
  fprintf(fp, "#!/bin/sh\nexec %s %s/tests/processors/lambda_test.py\n",
          kcld_test_python(), kcld_test_root());
  fclose(fp);
  assert_int_equal(chmod(script, 0755), 0);
  snprintf(cmd, sizeof(cmd), "[\"%s\"]", script);

  open_lambda(&f, cmd, NULL);
  const char *crash[] = {"crash"};
  run(&f.loop, f.h, &c, crash, 1);
  assert_string_equal(c.type, "HandlerCrashed");
  assert_int_equal(rename(script, moved), 0);
  const char *ok[] = {"a"};
  run(&f.loop, f.h, &c, ok, 1);
  assert_int_equal(c.res.status, KCLD_HANDLER_FAILED);
  assert_int_equal(c.res.failure_class, KCLD_HANDLER_INFRA);
  assert_string_equal(c.type, "HandlerUnavailable");
  assert_int_equal(rename(moved, script), 0);
  /* The restart is retried with backoff; the next batch waits for it. */
  await_spawned(&f, 2);
  run(&f.loop, f.h, &c, ok, 1);
  assert_int_equal(c.res.status, KCLD_HANDLER_OK);
  close_lambda(&f);
  unlink(script);
  rmdir(dir);
}

static void test_timeout(void **state)
{
  struct fixture f;
  struct call c;
  unsigned long long t0;
  (void)state;

  /* A shell child (python may take over a second to start under pyenv):
   * it answers null, and hangs after reading a batch with "hang". */
  open_lambda(&f, "[sh, -c, \"while read -r l; do case \\\"$l\\\" in "
              "*aGFuZw==*) exec sleep 1000;; esac; echo null; done\"]",
              "  timeout: 1s\n");
  const char *hang[] = {"hang"};
  t0 = kcld_test_now_ms();
  run(&f.loop, f.h, &c, hang, 1);
  assert_int_equal(c.res.status, KCLD_HANDLER_FAILED);
  /* It read the batch, then hung: the records' failure. */
  assert_int_equal(c.res.failure_class, KCLD_HANDLER_RECORD);
  assert_string_equal(c.type, "HandlerTimeout");
  assert_true(kcld_test_now_ms() - t0 >= 1000);
  assert_true(kcld_test_now_ms() - t0 < 5000);
  const char *ok[] = {"a"};
  run(&f.loop, f.h, &c, ok, 1);
  assert_int_equal(c.res.status, KCLD_HANDLER_OK);
  struct kcld_lambda_stats s = stats(&f);
  assert_int_equal(s.timeouts, 1);
  assert_int_equal(s.spawned, 2);
  close_lambda(&f);
}

/* A child that dies before it has read its batch (the script does not
 * exist: python3 exits at once) says nothing about the records: every
 * batch fails as an infrastructure failure, none as the records' fault. */
static void test_start_failure_is_infra(void **state)
{
  struct fixture f;
  struct call c;
  (void)state;

  char cmd[1100];
  snprintf(cmd, sizeof(cmd), "[%s, /nonexistent/kcld-handler.py]",
           kcld_test_python());
  open_lambda(&f, cmd, NULL);
  const char *ok[] = {"a"};
  for (int i = 0; i < 3; i++) {
    run(&f.loop, f.h, &c, ok, 1);
    assert_int_equal(c.res.status, KCLD_HANDLER_FAILED);
    assert_int_equal(c.res.failure_class, KCLD_HANDLER_INFRA);
    assert_string_equal(c.type, "HandlerUnavailable");
  }
  /* Either it died with the batch in its pipe, or it was already down. */
  assert_true(strstr(c.msg, "exited with status 2 before it read the batch") ||
              strstr(c.msg, "cannot be run"));
  close_lambda(&f);
}

/* A child that never reads its stdin: the batch outlives handler.timeout
 * unread, an infrastructure failure; it is killed and started again. */
static void test_unread_timeout_is_infra(void **state)
{
  struct fixture f;
  struct call c;
  (void)state;

  open_lambda(&f, "[sh, -c, \"exec sleep 1000\"]", "  timeout: 1s\n");
  const char *ok[] = {"a"};
  run(&f.loop, f.h, &c, ok, 1);
  assert_int_equal(c.res.status, KCLD_HANDLER_FAILED);
  assert_int_equal(c.res.failure_class, KCLD_HANDLER_INFRA);
  assert_string_equal(c.type, "HandlerUnavailable");
  assert_non_null(strstr(c.msg, "did not read the batch"));
  assert_int_equal(stats(&f).timeouts, 1);
  close_lambda(&f);
}

/* kill: the batch in flight is answered at once (canceled, an
 * infrastructure failure), the child and what it started die, and the
 * handler takes no more batches. */
static void test_kill(void **state)
{
  char dir[] = "/tmp/kcld-lambda-XXXXXX", cmd[1024], path[160];
  struct fixture f;
  struct call c, c2;
  unsigned long long t0;
  char *text = NULL;
  pid_t gc = 0;
  (void)state;

  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof(path), "%s/grandchild", dir);
  snprintf(cmd, sizeof(cmd), "[sh, -c, \"sleep 1000 & echo $! > %s; exec "
           "%s %s/tests/processors/lambda_test.py\"]", path,
           kcld_test_python(), kcld_test_root());
  open_lambda(&f, cmd, NULL);
  const char *ok[] = {"a"}, *hang[] = {"hang"};
  run(&f.loop, f.h, &c, ok, 1);
  assert_int_equal(c.res.status, KCLD_HANDLER_OK);
  text = kcld_test_slurp(path, NULL);
  assert_non_null(text);
  gc = atoi(text);
  free(text);
  assert_true(gc > 0 && kcld_test_pid_alive(gc));
  start(f.h, &c, hang, 1, SHARD);
  for (int i = 0; i < 20; i++) { /* let it read the batch */
    int never = 0;
    kcld_test_run_until(&f.loop, &never, 10);
  }
  assert_int_equal(c.done, 0);
  t0 = kcld_test_now_ms();
  kcld_handler_kill(f.h);
  assert_int_equal(c.done, 1);
  assert_int_equal(c.res.status, KCLD_HANDLER_FAILED);
  assert_int_equal(c.res.failure_class, KCLD_HANDLER_INFRA);
  assert_string_equal(c.type, "HandlerCanceled");
  kcld_record_batch_release(c.rb);
  memset(&c2, 0, sizeof(c2));
  c2.hb = c.hb;
  assert_int_equal(kcld_handler_process(f.h, &c2.hb, on_done, &c2),
                   KCLD_ECANCELED);
  close_lambda(&f);
  assert_true(kcld_test_now_ms() - t0 < 1000);
  assert_true(kcld_test_wait_dead(gc, 1000));
  unlink(path);
  rmdir(dir);
}

/* n batches of payload `what` at once; returns the elapsed ms. */
static unsigned long long batches(struct fixture *f, size_t n,
                                  const char *what)
{
  const char *data[] = {what};
  struct call c[4];
  unsigned long long t0 = kcld_test_now_ms();

  assert_true(n <= 4);
  for (size_t i = 0; i < n; i++)
    start(f->h, &c[i], data, 1, SHARD);
  for (size_t i = 0; i < n; i++) {
    wait_call(&f->loop, &c[i], 10000);
    assert_int_equal(c[i].res.status, KCLD_HANDLER_OK);
  }
  return kcld_test_now_ms() - t0;
}

static void test_concurrency(void **state)
{
  struct fixture f;
  unsigned long long ms;
  (void)state;

  /* Three children: three batches at once (python's start-up is paid
   * first, by a warm-up round that reaches every idle child). */
  open_lambda(&f, py("tests/processors/lambda_test.py", NULL),
              "  concurrency: 3\n");
  assert_int_equal(stats(&f).spawned, 3);
  batches(&f, 3, "warm-up");
  ms = batches(&f, 3, "slow");
  if (ms >= 1100)
    fail_msg("3 children took %llu ms for 3 x 400 ms", ms);
  close_lambda(&f);

  /* One child: the batches queue on the loop and run one after another. */
  open_lambda(&f, py("tests/processors/lambda_test.py", NULL), NULL);
  batches(&f, 1, "warm-up");
  ms = batches(&f, 3, "slow");
  if (ms < 1200)
    fail_msg("1 child took only %llu ms for 3 x 400 ms", ms);
  close_lambda(&f);
}

static void test_stderr_logged(void **state)
{
  struct fixture f;
  struct call c;
  struct logcap lc;
  char *log;
  (void)state;

  log_capture(&lc);
  open_lambda(&f, py("tests/processors/lambda_test.py", NULL), NULL);
  const char *e[] = {"stderr"};
  run(&f.loop, f.h, &c, e, 1);
  assert_int_equal(c.res.status, KCLD_HANDLER_OK);
  close_lambda(&f);
  log = log_release(&lc);
  assert_non_null(strstr(log, "\"msg\":\"lambda handler: child stderr\""));
  assert_non_null(strstr(log, "\"line\":\"hello from the child\""));
  free(log);
}

static void test_bad_command(void **state)
{
  uv_loop_t loop;
  struct kcld_config *cfg = config("[/nonexistent/kcld-handler, x]", NULL);
  struct kcld_handler_env env = {.cfg = cfg, .region = "us-east-1"};
  struct kcld_handler *h = NULL;
  struct logcap lc;
  char *log;
  (void)state;

  uv_loop_init(&loop);
  env.loop = &loop;
  log_capture(&lc);
  assert_int_equal(kcld_handler_new(&env, &h), KCLD_ECONFIG);
  assert_null(h);
  log = log_release(&lc);
  assert_non_null(strstr(log, "not an executable file"));
  assert_non_null(strstr(log, "/nonexistent/kcld-handler"));
  free(log);
  kcld_config_free(cfg);
  kcld_test_loop_finish(&loop);
}

/* ======== The Python example ======== */

static const char *const EXAMPLE[] = {
  "{\"event_type\":\"page_view\",\"user_id\":\"u1\",\"page\":\"/home\","
  "\"load_time_ms\":1234,\"session_page_count\":1}",
  "{\"event_type\":\"purchase\",\"user_id\":\"u2\",\"amount\":\"19.995\","
  "\"currency\":\"eur\",\"items\":[{\"sku\":\"b-2\",\"quantity\":2},"
  "{\"sku\":\"a-1\",\"quantity\":1}]}",
  "this is not an event",
  "{\"event_type\":\"user_signup\",\"user_id\":\"u3\",\"method\":\"google\","
  "\"campaign\":\"spring\"}",
  "{\"event_type\":\"click\",\"user_id\":\"u1\",\"element\":\"buy-button\","
  "\"page\":\"/item/7\"}",
  "{\"event_type\":\"page_view\",\"user_id\":\"u4\",\"page\":\"/slow\","
  "\"load_time_ms\":4000,\"session_page_count\":5}",
  "{\"event_type\":\"purchase\",\"user_id\":\"u5\",\"amount\":5,"
  "\"currency\":\"EUR\",\"items\":[]}",
};
#define NEXAMPLE (sizeof(EXAMPLE) / sizeof(EXAMPLE[0]))

/* The analytics line of sequence number `seq` among `lines` (JSON lines). */
static json_t *find_line(json_t *lines, const char *type, const char *seq)
{
  size_t i;
  json_t *l;
  json_array_foreach(lines, i, l) {
    const char *t = json_string_value(json_object_get(l, "type"));
    const char *s = json_string_value(json_object_get(l, "sequenceNumber"));
    if (t && strcmp(t, type) == 0 && (!seq || (s && strcmp(s, seq) == 0)))
      return l;
  }
  fail_msg("no %s line for %s", type, seq ? seq : "-");
  return NULL;
}

static void check_analytics(json_t *lines, struct kcld_record_batch *rb)
{
  json_t *l, *want;
  const char *seq;

#define SEQ(i) rb->records[i].sequence_number
#define EXPECT(i, json)                                                     \
  do {                                                                      \
    l = find_line(lines, "analytics", SEQ(i));                              \
    want = json_loads(json, 0, NULL);                                       \
    assert_non_null(want);                                                  \
    json_object_set_new(want, "type", json_string("analytics"));            \
    json_object_set_new(want, "sequenceNumber", json_string(SEQ(i)));       \
    if (!json_equal(l, want)) {                                             \
      char *got = json_dumps(l, JSON_SORT_KEYS);                            \
      fail_msg("record %d: got %s, want %s", i, got, json);                 \
    }                                                                       \
    json_decref(want);                                                      \
  } while (0)

  EXPECT(0, "{\"event_type\":\"page_view\",\"user_id\":\"u1\","
            "\"page\":\"/home\",\"load_time_ms\":1234.0,\"slow\":false,"
            "\"bounce\":true}");
  EXPECT(1, "{\"event_type\":\"purchase\",\"user_id\":\"u2\","
            "\"amount\":\"20.00\",\"currency\":\"EUR\",\"items\":3,"
            "\"skus\":[\"a-1\",\"b-2\"]}");
  EXPECT(3, "{\"event_type\":\"user_signup\",\"user_id\":\"u3\","
            "\"method\":\"google\",\"campaign\":\"spring\"}");
  EXPECT(4, "{\"event_type\":\"click\",\"user_id\":\"u1\","
            "\"element\":\"buy-button\",\"page\":\"/item/7\"}");
  EXPECT(5, "{\"event_type\":\"page_view\",\"user_id\":\"u4\","
            "\"page\":\"/slow\",\"load_time_ms\":4000.0,\"slow\":true,"
            "\"bounce\":false}");
  EXPECT(6, "{\"event_type\":\"purchase\",\"user_id\":\"u5\","
            "\"amount\":\"5.00\",\"currency\":\"EUR\",\"items\":0,"
            "\"skus\":[]}");
#undef EXPECT
  l = find_line(lines, "rejected", SEQ(2));
  assert_non_null(l);
  l = find_line(lines, "summary", NULL);
  want = json_loads("{\"type\":\"summary\",\"records\":7,\"failed\":1,"
                    "\"counts\":{\"page_view\":2,\"purchase\":2,"
                    "\"user_signup\":1,\"click\":1},"
                    "\"revenue\":{\"EUR\":\"25.00\"},"
                    "\"avg_load_time_ms\":2617.0,\"bounce_rate\":0.5}",
                    0, NULL);
  if (!json_equal(l, want)) {
    char *got = json_dumps(l, JSON_SORT_KEYS);
    fail_msg("summary: %s", got);
  }
  json_decref(want);
  seq = SEQ(2);
  (void)seq;
#undef SEQ
}

static void test_python_example_direct(void **state)
{
  char dir[] = "/tmp/kcld-lambda-XXXXXX", cmd[2048], path[256];
  const struct kcld_record *ptrs[NEXAMPLE];
  struct kcld_record_batch *rb = make_batch(EXAMPLE, NEXAMPLE, 100);
  struct kcld_handler_batch hb = {.shard_id = SHARD, .records = ptrs,
                                  .count = NEXAMPLE};
  char *line, *out, *err;
  json_t *answer, *lines = json_array();
  FILE *f;
  (void)state;

  for (size_t i = 0; i < NEXAMPLE; i++)
    ptrs[i] = &rb->records[i];
  assert_non_null(mkdtemp(dir));
  line = kcld_lambda_event_build(&hb, "us-east-1", "arn:x", NULL);
  snprintf(path, sizeof(path), "%s/in", dir);
  f = fopen(path, "w");
  assert_non_null(f);
  fputs(line, f);
  fclose(f);
  free(line);
  snprintf(cmd, sizeof(cmd),
           "python3 %s/examples/lambda-python/kcld_adapter.py "
           "<%s/in >%s/out 2>%s/err",
           kcld_test_root(), dir, dir, dir);
  assert_int_equal(system(cmd), 0);

  snprintf(path, sizeof(path), "%s/out", dir);
  out = kcld_test_slurp(path, NULL);
  assert_non_null(out);
  answer = json_loads(out, 0, NULL);
  assert_non_null(answer);
  json_t *want = json_pack("{s:[{s:s}]}", "batchItemFailures",
                           "itemIdentifier", rb->records[2].sequence_number);
  assert_true(json_equal(answer, want));
  json_decref(want);
  json_decref(answer);
  free(out);

  snprintf(path, sizeof(path), "%s/err", dir);
  err = kcld_test_slurp(path, NULL);
  assert_non_null(err);
  for (char *p = err, *nl; *p; p = nl + 1) {
    nl = strchr(p, '\n');
    assert_non_null(nl);
    *nl = '\0';
    json_t *l = json_loads(p, 0, NULL);
    if (!l)
      fail_msg("stderr line is not JSON: %s", p);
    json_array_append_new(lines, l);
  }
  assert_int_equal(json_array_size(lines), NEXAMPLE + 1);
  check_analytics(lines, rb);
  json_decref(lines);
  free(err);
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
  kcld_record_batch_release(rb);
}

static void test_python_example_handler(void **state)
{
  struct fixture f;
  struct call c;
  struct logcap lc;
  char *log;
  (void)state;

  log_capture(&lc);
  open_lambda(&f, py("examples/lambda-python/kcld_adapter.py", NULL), NULL);
  run(&f.loop, f.h, &c, EXAMPLE, NEXAMPLE);
  assert_int_equal(c.res.status, KCLD_HANDLER_PARTIAL);
  assert_int_equal(c.res.first_failed, 2);
  const char *ok[] = {EXAMPLE[0], EXAMPLE[1]};
  run(&f.loop, f.h, &c, ok, 2);
  assert_int_equal(c.res.status, KCLD_HANDLER_OK);
  close_lambda(&f);
  log = log_release(&lc);
  /* The function's print() output reached kcld's log through stderr. */
  assert_non_null(strstr(log, "\\\"amount\\\": \\\"20.00\\\""));
  assert_non_null(strstr(log, "\\\"type\\\": \\\"summary\\\""));
  free(log);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_success_and_partial),
    cmocka_unit_test(test_garbage_restarts),
    cmocka_unit_test(test_split_and_unsolicited),
    cmocka_unit_test(test_answer_then_misbehave),
    cmocka_unit_test(test_crash_restarts),
    cmocka_unit_test(test_command_vanishes),
    cmocka_unit_test(test_timeout),
    cmocka_unit_test(test_start_failure_is_infra),
    cmocka_unit_test(test_unread_timeout_is_infra),
    cmocka_unit_test(test_kill),
    cmocka_unit_test(test_concurrency),
    cmocka_unit_test(test_stderr_logged),
    cmocka_unit_test(test_bad_command),
    cmocka_unit_test(test_python_example_direct),
    cmocka_unit_test(test_python_example_handler),
  };
  signal(SIGPIPE, SIG_IGN); /* as kcld does */
  json_object_seed(0);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
