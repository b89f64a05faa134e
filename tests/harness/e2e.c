/* e2e.c — see e2e.h. */
#include "e2e.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "proc.h"

int kcld_e2e_fixture_start(struct kcld_emu *emu, struct kcld_test_aws **aws,
                           char *dir, size_t dirlen, const char *tag)
{
  return kcld_e2e_fixture_start_with(emu, aws, dir, dirlen, tag,
                                     "kinesis dynamodb", "kinesis");
}

int kcld_e2e_fixture_start_with(struct kcld_emu *emu,
                                struct kcld_test_aws **aws, char *dir,
                                size_t dirlen, const char *tag,
                                const char *emulators, const char *kinesis)
{
  if (kcld_emu_start(emu, emulators) != 0)
    return -1;
  *aws = kcld_test_aws_new(kcld_emu_url(emu, kinesis),
                           kcld_emu_url(emu, "dynamodb"), NULL);
  snprintf(dir, dirlen, "/tmp/kcld-%s-XXXXXX", tag);
  return *aws && mkdtemp(dir) ? 0 : -1;
}

void kcld_e2e_fixture_stop(struct kcld_emu *emu, struct kcld_test_aws *aws,
                           const char *dir)
{
  char cmd[256];
  kcld_test_aws_free(aws);
  kcld_emu_stop(emu);
  if (!*dir)
    return;
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", dir);
}

json_t *kcld_e2e_call(struct kcld_test_aws *t, enum kcld_aws_service svc,
                      const char *op, json_t *req)
{
  const char *type = NULL;
  json_t *res = kcld_test_aws_call(t, svc, op, req, &type);
  json_decref(req);
  if (!res)
    fail_msg("%s failed: %s", op, type ? type : "?");
  return res;
}

/* Polls `op` on `name` (the request's `key`) until the answer's
 * obj.field is ACTIVE: 200 polls 50 ms apart, then fails the test. */
static void wait_active(struct kcld_test_aws *t, enum kcld_aws_service svc,
                        const char *op, const char *key, const char *name,
                        const char *obj, const char *field)
{
  for (int i = 0; i < 200; i++) {
    json_t *r = kcld_e2e_call(t, svc, op, json_pack("{s:s}", key, name));
    const char *st =
      json_string_value(json_object_get(json_object_get(r, obj), field));
    int active = st && strcmp(st, "ACTIVE") == 0;
    json_decref(r);
    if (active)
      return;
    kcld_test_sleep_ms(50);
  }
  fail_msg("%s did not become ACTIVE within 200 polls of %s", name, op);
}

void kcld_e2e_wait_stream_active(struct kcld_test_aws *t, const char *stream)
{
  wait_active(t, KCLD_AWS_KINESIS, "DescribeStreamSummary", "StreamName",
              stream, "StreamDescriptionSummary", "StreamStatus");
}

void kcld_e2e_create_stream(struct kcld_test_aws *t, const char *stream,
                            int shards)
{
  json_decref(kcld_e2e_call(t, KCLD_AWS_KINESIS, "CreateStream",
                            json_pack("{s:s,s:i}", "StreamName", stream,
                                      "ShardCount", shards)));
  kcld_e2e_wait_stream_active(t, stream);
}

void kcld_e2e_create_lease_table(struct kcld_test_aws *t, const char *name)
{
  json_decref(kcld_e2e_call(
    t, KCLD_AWS_DYNAMODB, "CreateTable",
    json_pack("{s:s, s:[{s:s, s:s}], s:[{s:s, s:s}], s:s}", "TableName", name,
              "KeySchema", "AttributeName", "leaseKey", "KeyType", "HASH",
              "AttributeDefinitions", "AttributeName", "leaseKey",
              "AttributeType", "S", "BillingMode", "PAY_PER_REQUEST")));
  wait_active(t, KCLD_AWS_DYNAMODB, "DescribeTable", "TableName", name,
              "Table", "TableStatus");
}

void kcld_e2e_put_records(struct kcld_test_aws *t, const char *stream,
                          const char *const *data, const char *const *keys,
                          size_t n, json_t *produced)
{
  json_t *recs = json_array(), *r, *entries;

  assert_true(n <= 500);
  for (size_t i = 0; i < n; i++) {
    size_t len = strlen(data[i]);
    unsigned char *b64 = malloc(4 * ((len + 2) / 3) + 1);
    assert_non_null(b64);
    EVP_EncodeBlock(b64, (const unsigned char *)data[i], (int)len);
    json_array_append_new(recs, json_pack("{s:s,s:s}", "Data", (char *)b64,
                                          "PartitionKey", keys[i]));
    free(b64);
  }
  r = kcld_e2e_call(t, KCLD_AWS_KINESIS, "PutRecords",
                    json_pack("{s:s,s:o}", "StreamName", stream, "Records",
                              recs));
  assert_int_equal(json_integer_value(json_object_get(r, "FailedRecordCount")),
                   0);
  entries = json_object_get(r, "Records");
  for (size_t i = 0; produced && i < n; i++) {
    json_t *e = json_array_get(entries, i);
    json_array_append_new(
      produced,
      json_pack("{s:O,s:O,s:s,s:s}", "shard", json_object_get(e, "ShardId"),
                "seq", json_object_get(e, "SequenceNumber"), "data", data[i],
                "pk", keys[i]));
  }
  json_decref(r);
}

void kcld_e2e_write_config(const char *path, const struct kcld_emu *emu,
                           const char *app, const char *stream,
                           const char *rest)
{
  kcld_e2e_write_config_at(path, kcld_emu_url(emu, "kinesis"),
                           kcld_emu_url(emu, "dynamodb"), app, stream, rest);
}

void kcld_e2e_write_config_at(const char *path, const char *kinesis_url,
                              const char *dynamodb_url, const char *app,
                              const char *stream, const char *rest)
{
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fprintf(f, "application: %s\n", app);
  if (stream)
    fprintf(f, "stream: %s\n", stream);
  fprintf(f,
          "region: us-east-1\n"
          "endpoints:\n"
          "  kinesis: %s\n"
          "  dynamodb: %s\n"
          "credentials:\n"
          "  access_key_id: test\n"
          "  secret_access_key: test\n"
          "shutdown_timeout: 10s\n"
          "workers: 2\n"
          "lease:\n"
          "  failover_time: 1s\n"
          "fetch:\n"
          "  idle_time: 200ms\n"
          "%s"
          "log:\n"
          "  level: info\n"
          "%s",
          kinesis_url, dynamodb_url,
          rest && strstr(rest, "metrics:") ? "" : "metrics:\n  listen: \"\"\n",
          rest ? rest : "");
  assert_int_equal(fclose(f), 0);
}

void kcld_e2e_stop_kcld(pid_t pid, const char *log, unsigned timeout_ms)
{
  int status = 0;
  kill(pid, SIGTERM);
  if (!kcld_test_wait_exit(pid, timeout_ms, &status)) {
    kcld_test_reap(pid);
    if (log)
      kcld_e2e_dump_file(log);
    fail_msg("kcld %d did not stop within %u ms of SIGTERM", (int)pid,
             timeout_ms);
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    if (log)
      kcld_e2e_dump_file(log);
    fail_msg("kcld %d exited with status %d", (int)pid, status);
  }
}

int kcld_e2e_await_exit(pid_t *pid, const char *log, unsigned timeout_ms,
                        const char *what)
{
  int status = 0, exited = kcld_test_wait_exit(*pid, timeout_ms, &status);
  if (!exited)
    kcld_test_reap(*pid);
  *pid = 0;
  if (!exited || !WIFEXITED(status)) {
    if (log)
      kcld_e2e_dump_file(log);
    if (!exited)
      fail_msg("kcld %s: still running %u ms on", what, timeout_ms);
    fail_msg("kcld %s: ended by signal %d", what, WTERMSIG(status));
  }
  return WEXITSTATUS(status);
}

void kcld_e2e_dump_file(const char *path)
{
  char *text = kcld_test_slurp(path, NULL);
  if (text) {
    fprintf(stderr, "---- %s ----\n%s\n", path, text);
    free(text);
  }
}

size_t kcld_e2e_lines_in(const char *path)
{
  size_t n = 0;
  char *text = kcld_test_slurp(path, NULL);
  for (const char *p = text; p && *p; p++)
    n += *p == '\n';
  free(text);
  return n;
}

size_t kcld_e2e_lines_with(const char *path, const char *a, const char *b)
{
  char *text = kcld_test_slurp(path, NULL), *save = NULL;
  size_t n = 0;
  for (char *l = text ? strtok_r(text, "\n", &save) : NULL; l;
       l = strtok_r(NULL, "\n", &save))
    n += strstr(l, a) && strstr(l, b);
  free(text);
  return n;
}

int kcld_e2e_file_has(const char *path, const char *what)
{
  char *text = kcld_test_slurp(path, NULL);
  int found = text && strstr(text, what);
  free(text);
  return found;
}
