/* test_plugin.c — handler.type: plugin, in process with a real uv loop:
 * shared objects with a wrong ABI version, no version, a missing entry
 * point, a missing file and a refusing init are each refused with a message
 * that names the cause; the test plugin's OK, PARTIAL, FAILED and invalid
 * answers map to handler results; init gets the handler's config as
 * key/value pairs; plugin-count counts records and bytes of concurrent
 * batches. */
#include <dlfcn.h>
#include <libgen.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "config.h"
#include "consume/getrecords.h"
#include "err.h"
#include "handlers/handler.h"
#include "handlers/plugin.h"
#include "harness.h"
#include "log.h"

/* ======== Helpers ======== */

/* The .so built for this build: <build>/tests/plugins/<name>.so. */
static const char *plugin_path(const char *name)
{
  static char path[PATH_MAX];
  char bin[PATH_MAX];
  snprintf(bin, sizeof(bin), "%s", kcld_test_bin());
  snprintf(path, sizeof(path), "%s/tests/plugins/%s.so", dirname(bin), name);
  return path;
}

static struct kcld_config *config(const char *path, const char *extra)
{
  char yaml[2048];
  struct kcld_config *cfg = NULL;
  char *errors = NULL;
  int n = snprintf(yaml, sizeof(yaml),
                   "application: app\nstream: s\nregion: us-east-1\n"
                   "handler:\n  type: plugin\n  path: \"%s\"\n%s",
                   path, extra ? extra : "");
  int rc = kcld_config_parse("test.yaml", yaml, (size_t)n, &cfg, &errors);
  if (rc != 0)
    fail_msg("config: %s", errors ? errors : "?");
  return cfg;
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

/* Restores logging to stderr and returns what was logged (malloc'd). */
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

/* Tries to create the handler and expects a refusal whose log names every
 * string of `needles` (NULL-terminated). */
static void expect_refused(const char *path, const char *extra, ...)
{
  uv_loop_t loop;
  struct kcld_config *cfg = config(path, extra);
  struct kcld_handler_env env = {.cfg = cfg, .region = "us-east-1",
                                 .stream_arn = ""};
  struct kcld_handler *h = NULL;
  struct logcap lc;
  char *log;
  va_list ap;

  uv_loop_init(&loop);
  env.loop = &loop;
  log_capture(&lc);
  assert_int_equal(kcld_handler_new(&env, &h), KCLD_ECONFIG);
  assert_null(h);
  log = log_release(&lc);
  va_start(ap, extra);
  for (const char *s; (s = va_arg(ap, const char *)) != NULL;)
    if (!strstr(log, s))
      fail_msg("log lacks \"%s\":\n%s", s, log);
  va_end(ap);
  free(log);
  kcld_config_free(cfg);
  kcld_test_loop_finish(&loop);
}

/* A batch from a GetRecords body with one record per string of data[]. */
static struct kcld_record_batch *make_batch(const char *const *data,
                                            size_t n, unsigned seq_base)
{
  json_t *recs = json_array(), *body;
  struct kcld_record_batch *b = NULL;
  char err[256], *text;

  for (size_t i = 0; i < n; i++) {
    unsigned char enc[512];
    char seq[64];
    EVP_EncodeBlock(enc, (const unsigned char *)data[i],
                    (int)strlen(data[i]));
    snprintf(seq, sizeof(seq), "4960000000000000000%05u",
             seq_base + (unsigned)i);
    json_array_append_new(recs, json_pack("{s:s,s:s,s:s,s:f}", "Data", enc,
                                          "PartitionKey", "pk",
                                          "SequenceNumber", seq,
                                          "ApproximateArrivalTimestamp",
                                          1700000000.5));
  }
  body = json_pack("{s:o,s:s,s:i}", "Records", recs, "NextShardIterator",
                   "it", "MillisBehindLatest", 0);
  text = json_dumps(body, JSON_COMPACT);
  if (kcld_getrecords_parse(text, strlen(text), "shardId-0", &b, err,
                            sizeof(err)) != 0)
    fail_msg("parse: %s", err);
  free(text);
  json_decref(body);
  return b;
}

struct answer {
  int done;
  struct kcld_handler_result res;
  char type[128];
  char msg[1024];
};

static void on_done(const struct kcld_handler_result *res, void *arg)
{
  struct answer *a = arg;
  a->done++;
  a->res = *res;
  snprintf(a->type, sizeof(a->type), "%s",
           res->error_type ? res->error_type : "");
  snprintf(a->msg, sizeof(a->msg), "%s",
           res->error_message ? res->error_message : "");
}

/* Runs one batch of the given payloads through h and waits for it. */
static void run_batch(uv_loop_t *loop, struct kcld_handler *h,
                      const char *const *data, size_t n, struct answer *a)
{
  struct kcld_record_batch *b = make_batch(data, n, 0);
  const struct kcld_record *ptrs[16];
  struct kcld_handler_batch hb = {.shard_id = "shardId-0", .records = ptrs,
                                  .count = n, .millis_behind_latest = 0,
                                  .attempt = 1};
  assert_true(n <= 16);
  for (size_t i = 0; i < n; i++)
    ptrs[i] = &b->records[i];
  memset(a, 0, sizeof(*a));
  assert_int_equal(kcld_handler_process(h, &hb, on_done, a), 0);
  assert_true(kcld_test_run_until(loop, &a->done, 10000));
  assert_int_equal(a->done, 1);
  kcld_record_batch_release(b);
}

/* ======== Refusals ======== */

static void test_bad_abi_refused(void **state)
{
  (void)state;
  const char *p = plugin_path("bad_abi");
  expect_refused(p, NULL, "ABI version mismatch", p, "\"plugin_abi\":\"42\"",
                 "\"kcld_abi\":\"1\"", NULL);
}

static void test_no_version_refused(void **state)
{
  (void)state;
  const char *p = plugin_path("no_version");
  expect_refused(p, NULL, "lacks a required symbol",
                 "kcld_handler_abi_version", p, NULL);
}

static void test_missing_symbol_refused(void **state)
{
  (void)state;
  const char *p = plugin_path("missing_symbol");
  expect_refused(p, NULL, "lacks a required symbol", "kcld_plugin_shutdown",
                 p, NULL);
}

static void test_missing_file_refused(void **state)
{
  (void)state;
  expect_refused("/nonexistent/kcld/plugin.so", NULL,
                 "cannot load the shared object", "/nonexistent/kcld", NULL);
}

static void test_init_refusal(void **state)
{
  (void)state;
  expect_refused(plugin_path("partial"), "  table: refuse-init\n",
                 "init failed", "table refuse-init is refused", NULL);
}

/* ======== Results ======== */

struct fixture {
  uv_loop_t loop;
  struct kcld_config *cfg;
  struct kcld_handler *h;
};

static void open_plugin(struct fixture *f, const char *path,
                        const char *extra)
{
  struct kcld_handler_env env = {.region = "us-east-1", .stream_arn = ""};
  uv_loop_init(&f->loop);
  f->cfg = config(path, extra);
  env.loop = &f->loop;
  env.cfg = f->cfg;
  assert_int_equal(kcld_handler_new(&env, &f->h), 0);
  assert_string_equal(f->h->ops->name, "plugin");
}

static void close_plugin(struct fixture *f)
{
  kcld_handler_close(f->h);
  kcld_config_free(f->cfg);
  kcld_test_loop_finish(&f->loop);
}

static void test_results(void **state)
{
  struct fixture f;
  struct answer a;
  (void)state;

  open_plugin(&f, plugin_path("partial"), NULL);

  const char *ok[] = {"a", "b", "c"};
  run_batch(&f.loop, f.h, ok, 3, &a);
  assert_int_equal(a.res.status, KCLD_HANDLER_OK);
  assert_null(a.res.error_type);

  const char *part[] = {"a", "b", "bad-1", "c", "bad-2"};
  run_batch(&f.loop, f.h, part, 5, &a);
  assert_int_equal(a.res.status, KCLD_HANDLER_PARTIAL);
  assert_int_equal(a.res.first_failed, 2);
  assert_string_equal(a.type, "BadRecord");
  assert_string_equal(a.msg, "record 496000000000000000000002 is bad");

  const char *first[] = {"bad", "b"};
  run_batch(&f.loop, f.h, first, 2, &a);
  assert_int_equal(a.res.status, KCLD_HANDLER_PARTIAL);
  assert_int_equal(a.res.first_failed, 0);

  const char *fail[] = {"a", "fail"};
  run_batch(&f.loop, f.h, fail, 2, &a);
  assert_int_equal(a.res.status, KCLD_HANDLER_FAILED);
  assert_string_equal(a.type, "Failed");
  assert_string_equal(a.msg, "");

  const char *bogus[] = {"bogus"};
  run_batch(&f.loop, f.h, bogus, 1, &a);
  assert_int_equal(a.res.status, KCLD_HANDLER_FAILED);
  assert_string_equal(a.type, "HandlerInvalidResult");

  close_plugin(&f);
}

static void test_config_pairs(void **state)
{
  struct fixture f;
  struct answer a;
  char want[PATH_MAX + 256];
  const char *cfgrec[] = {"config"};
  (void)state;

  open_plugin(&f, plugin_path("partial"),
              "  timeout: 90s\n  concurrency: 3\n  table: tbl1\n");
  run_batch(&f.loop, f.h, cfgrec, 1, &a);
  assert_int_equal(a.res.status, KCLD_HANDLER_FAILED);
  assert_string_equal(a.type, "Config");
  snprintf(want, sizeof(want),
           "type=plugin;path=%s;command=;timeout=90s;concurrency=3;"
           "decode=base64;table=tbl1;",
           plugin_path("partial"));
  if (strncmp(a.msg, want, strlen(want)) != 0)
    fail_msg("pairs: got %s\nwant prefix %s", a.msg, want);
  assert_non_null(strstr(a.msg, "write=batch;"));
  close_plugin(&f);
}

/* ======== plugin-count ======== */

struct count_batch {
  struct kcld_record_batch *b;
  const struct kcld_record *ptrs[8];
  struct kcld_handler_batch hb;
  struct answer a;
};

static void test_plugin_count(void **state)
{
  char so[PATH_MAX];
  struct fixture f;
  struct count_batch cb[6];
  const char *data[] = {"x", "yy", "zzz", "four", "fivee", "", "seven77"};
  uint64_t want_recs = 0, want_bytes = 0, recs, bytes, batches;
  void (*totals)(uint64_t *, uint64_t *, uint64_t *);
  void *dl;
  (void)state;

  snprintf(so, sizeof(so), "%s/examples/plugin-count/plugin-count.so",
           kcld_test_root());
  open_plugin(&f, so, NULL);
  /* Six batches of different shards in flight at once, on the pool. */
  for (size_t i = 0; i < 6; i++) {
    size_t n = 1 + i;
    memset(&cb[i], 0, sizeof(cb[i]));
    cb[i].b = make_batch(data, n, (unsigned)(i * 10));
    for (size_t k = 0; k < n; k++) {
      cb[i].ptrs[k] = &cb[i].b->records[k];
      want_bytes += strlen(data[k]);
    }
    want_recs += n;
    cb[i].hb.shard_id = "shardId-x";
    cb[i].hb.records = cb[i].ptrs;
    cb[i].hb.count = n;
    cb[i].hb.attempt = 1;
    assert_int_equal(kcld_handler_process(f.h, &cb[i].hb, on_done, &cb[i].a),
                     0);
  }
  for (size_t i = 0; i < 6; i++) {
    assert_true(kcld_test_run_until(&f.loop, &cb[i].a.done, 10000));
    assert_int_equal(cb[i].a.res.status, KCLD_HANDLER_OK);
    kcld_record_batch_release(cb[i].b);
  }
  /* The handler holds the object open: this is the same instance. */
  dl = dlopen(so, RTLD_NOW | RTLD_NOLOAD);
  assert_non_null(dl);
  totals = (void (*)(uint64_t *, uint64_t *, uint64_t *))dlsym(
    dl, "plugin_count_totals");
  assert_non_null(totals);
  totals(&recs, &bytes, &batches);
  assert_int_equal(recs, want_recs);
  assert_int_equal(bytes, want_bytes);
  assert_int_equal(batches, 6);
  dlclose(dl);
  close_plugin(&f);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_bad_abi_refused),
    cmocka_unit_test(test_no_version_refused),
    cmocka_unit_test(test_missing_symbol_refused),
    cmocka_unit_test(test_missing_file_refused),
    cmocka_unit_test(test_init_refusal),
    cmocka_unit_test(test_results),
    cmocka_unit_test(test_config_pairs),
    cmocka_unit_test(test_plugin_count),
  };
  json_object_seed(0);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
