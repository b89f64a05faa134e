/* test_s3.c — the S3 client against s3rver ("s3", tests/emulators/lib/s3.js,
 * whose front checks every SigV4 signature and x-amz-content-sha256 as S3
 * does): buckets created and headed, objects put, got, copied, listed page
 * by page and deleted with keys that need encoding, a 10 MiB object both
 * ways, S3's errors as KCLD_E* codes with their types, throttling retried,
 * a wrong secret refused, and the addressing styles (virtual-hosted over
 * https, seen through a proxy's CONNECT; path-style for dotted names). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "aws/call.h"
#include "aws/s3.h"
#include "awsenv.h"
#include "err.h"
#include "fault.h"
#include "harness.h"

#define WAIT_MS 30000

static struct kcld_emu s_emu;
static const char *s_url;

struct env {
  struct kcld_test_awsenv c;
  struct kcld_s3 *s3;
};

static void env_up(struct env *e, const char *url, int max_attempts)
{
  memset(e, 0, sizeof(*e));
  kcld_test_awsenv_up(&e->c, KCLD_AWS_S3, url, max_attempts);
  assert_int_equal(kcld_s3_new(e->c.aws, &e->c.loop, &e->s3), 0);
}

static void env_down(struct env *e)
{
  kcld_s3_close(e->s3);
  kcld_test_awsenv_down(&e->c);
}

/* ======== What the callbacks saw ======== */

struct seen {
  int done;
  int err;
  int attempts;
  long http_status;
  char type[96];
  char message[640];
  char *body;        /* GetObject */
  size_t len;
  json_t *keys;      /* ListObjectsV2: [[key, size], ...] */
  char token[1024];
  int truncated;
};

static void seen_status(struct seen *s, const struct kcld_svc_status *st)
{
  s->done++;
  s->err = st->err;
  s->attempts = st->attempts;
  s->http_status = st->http_status;
  snprintf(s->type, sizeof(s->type), "%s", st->type);
  snprintf(s->message, sizeof(s->message), "%s", st->message);
}

static void seen_free(struct seen *s)
{
  free(s->body);
  json_decref(s->keys);
  memset(s, 0, sizeof(*s));
}

static void on_done(const struct kcld_svc_status *st, void *arg)
{
  seen_status(arg, st);
}

static void on_object(const struct kcld_s3_object *r, void *arg)
{
  struct seen *s = arg;
  seen_status(s, &r->st);
  if (r->body) {
    s->body = malloc(r->len + 1);
    assert_non_null(s->body);
    memcpy(s->body, r->body, r->len);
    s->body[r->len] = '\0';
    s->len = r->len;
  }
}

static void on_list(const struct kcld_s3_list *r, void *arg)
{
  struct seen *s = arg;
  seen_status(s, &r->st);
  s->keys = json_array();
  for (size_t i = 0; i < r->count; i++)
    json_array_append_new(s->keys, json_pack("[sI]", r->entries[i].key,
                                             (json_int_t)r->entries[i].size));
  s->truncated = r->truncated;
  snprintf(s->token, sizeof(s->token), "%s",
           r->next_token ? r->next_token : "");
}

static void wait_for(struct env *e, struct seen *s)
{
  assert_true(kcld_test_run_until(&e->c.loop, &s->done, WAIT_MS));
  assert_int_equal(s->done, 1);
  if (s->err)
    fprintf(stderr, "note: %s\n", s->message); /* expected or not */
}

/* ======== Steps that must work ======== */

static void create_bucket(struct env *e, const char *bucket)
{
  struct seen s = {0};
  assert_int_equal(kcld_s3_create_bucket(e->s3, bucket, on_done, &s), 0);
  wait_for(e, &s);
  assert_int_equal(s.err, 0);
}

static void put(struct env *e, const char *bucket, const char *key,
                const char *data, size_t len)
{
  struct seen s = {0};
  struct kcld_s3_put_req r = {.bucket = bucket, .key = key,
                              .content_type = "application/json",
                              .body = malloc(len ? len : 1),
                              .body_len = len};
  assert_non_null(r.body);
  memcpy(r.body, data, len);
  assert_int_equal(kcld_s3_put_object(e->s3, &r, on_done, &s), 0);
  assert_null(r.body); /* taken */
  wait_for(e, &s);
  assert_int_equal(s.err, 0);
  assert_int_equal(s.http_status, 200);
}

static void get(struct env *e, const char *bucket, const char *key,
                struct seen *s)
{
  memset(s, 0, sizeof(*s));
  assert_int_equal(kcld_s3_get_object(e->s3, bucket, key, on_object, s), 0);
  wait_for(e, s);
}

/* Every key under `prefix`, `page` keys per ListObjectsV2 call; the number
 * of calls in *pages. */
static json_t *list_all(struct env *e, const char *bucket, const char *prefix,
                        int page, int *pages)
{
  json_t *all = json_array();
  char token[1024] = "";
  *pages = 0;
  do {
    struct seen s = {0};
    struct kcld_s3_list_req r = {.bucket = bucket, .prefix = prefix,
                                 .continuation_token = token[0] ? token : NULL,
                                 .max_keys = page};
    assert_int_equal(kcld_s3_list_objects(e->s3, &r, on_list, &s), 0);
    wait_for(e, &s);
    assert_int_equal(s.err, 0);
    json_array_extend(all, s.keys);
    snprintf(token, sizeof(token), "%s", s.truncated ? s.token : "");
    (*pages)++;
    seen_free(&s);
  } while (token[0]);
  return all;
}

/* ======== Tests ======== */

/* Put, get, copy, list (paged), delete; keys with characters that must be
 * encoded on the wire and in the signature. */
static void test_objects(void **state)
{
  static const char *const keys[] = {
    "dl/a b (1).json", "dl/plus+percent%41=.json", "dl/ünïcødé/é.json",
    "dl/tilde~star*.json", "dl/x/y/z.json"};
  struct env e;
  struct seen s = {0};
  int pages;
  json_t *all;
  (void)state;
  env_up(&e, s_url, 0);
  create_bucket(&e, "kcld-objects");

  /* HeadBucket of a bucket that is there. */
  assert_int_equal(kcld_s3_head_bucket(e.s3, "kcld-objects", on_done, &s), 0);
  wait_for(&e, &s);
  assert_int_equal(s.err, 0);
  seen_free(&s);

  for (size_t i = 0; i < 5; i++) {
    char body[128];
    snprintf(body, sizeof(body), "{\"n\":%zu,\"key\":\"%s\"}", i, keys[i]);
    put(&e, "kcld-objects", keys[i], body, strlen(body));
  }
  put(&e, "kcld-objects", "other/empty", "", 0);
  for (size_t i = 0; i < 5; i++) {
    char want[128];
    snprintf(want, sizeof(want), "{\"n\":%zu,\"key\":\"%s\"}", i, keys[i]);
    get(&e, "kcld-objects", keys[i], &s);
    assert_int_equal(s.err, 0);
    assert_int_equal(s.len, strlen(want));
    assert_string_equal(s.body, want);
    seen_free(&s);
  }
  get(&e, "kcld-objects", "other/empty", &s);
  assert_int_equal(s.err, 0);
  assert_int_equal(s.len, 0);
  seen_free(&s);

  /* Five keys under dl/, two a page: three pages, in key order. */
  all = list_all(&e, "kcld-objects", "dl/", 2, &pages);
  assert_int_equal(pages, 3);
  assert_int_equal(json_array_size(all), 5);
  for (size_t i = 1; i < 5; i++)
    assert_true(strcmp(json_string_value(json_array_get(
                         json_array_get(all, i - 1), 0)),
                       json_string_value(json_array_get(
                         json_array_get(all, i), 0))) < 0);
  json_decref(all);

  /* Copy aside, then delete the original: what a redrive does.  (s3rver
   * reads x-amz-copy-source with decodeURI, which leaves %2B and the like
   * encoded: the copied key has none of those.) */
  assert_int_equal(kcld_s3_copy_object(e.s3, "kcld-objects", keys[0],
                                       "kcld-objects", "done/a b (1).json",
                                       on_done, &s),
                   0);
  wait_for(&e, &s);
  assert_int_equal(s.err, 0);
  seen_free(&s);
  assert_int_equal(kcld_s3_delete_object(e.s3, "kcld-objects", keys[0],
                                         on_done, &s),
                   0);
  wait_for(&e, &s);
  assert_int_equal(s.err, 0);
  assert_int_equal(s.http_status, 204);
  seen_free(&s);
  get(&e, "kcld-objects", "done/a b (1).json", &s);
  assert_int_equal(s.err, 0);
  assert_non_null(strstr(s.body, "\"n\":0"));
  seen_free(&s);
  all = list_all(&e, "kcld-objects", "dl/", 1000, &pages);
  assert_int_equal(pages, 1);
  assert_int_equal(json_array_size(all), 4);
  json_decref(all);
  env_down(&e);
}

/* A 10 MiB object goes up and comes back byte for byte. */
static void test_large_object(void **state)
{
  const size_t n = (size_t)10 << 20;
  struct env e;
  struct seen s = {0};
  char *data = malloc(n);
  (void)state;
  assert_non_null(data);
  for (size_t i = 0; i < n; i++)
    data[i] = (char)((i * 7 + i / 4096) & 0xff);
  env_up(&e, s_url, 0);
  create_bucket(&e, "kcld-large");
  put(&e, "kcld-large", "big/object.bin", data, n);
  get(&e, "kcld-large", "big/object.bin", &s);
  assert_int_equal(s.err, 0);
  assert_int_equal(s.len, n);
  assert_memory_equal(s.body, data, n);
  seen_free(&s);
  free(data);
  env_down(&e);
}

/* S3's errors: a clear code and type each. */
static void test_errors(void **state)
{
  struct env e;
  struct seen s = {0};
  struct kcld_s3_put_req r = {.bucket = "kcld-no-such-bucket", .key = "k",
                              .body = strdup("{}"), .body_len = 2};
  (void)state;
  env_up(&e, s_url, 0);
  create_bucket(&e, "kcld-errors");

  assert_int_equal(kcld_s3_put_object(e.s3, &r, on_done, &s), 0);
  wait_for(&e, &s);
  assert_int_equal(s.err, KCLD_ENOTFOUND);
  assert_string_equal(s.type, "NoSuchBucket");
  assert_int_equal(s.http_status, 404);
  assert_int_equal(s.attempts, 1); /* not retried */
  assert_non_null(strstr(s.message, "PutObject s3://kcld-no-such-bucket/k"));
  seen_free(&s);

  /* HEAD has no body: the status names the error. */
  assert_int_equal(kcld_s3_head_bucket(e.s3, "kcld-no-such-bucket", on_done,
                                       &s),
                   0);
  wait_for(&e, &s);
  assert_int_equal(s.err, KCLD_ENOTFOUND);
  assert_string_equal(s.type, "NotFound");
  seen_free(&s);

  get(&e, "kcld-errors", "missing.json", &s);
  assert_int_equal(s.err, KCLD_ENOTFOUND);
  assert_string_equal(s.type, "NoSuchKey");
  assert_null(s.body);
  seen_free(&s);

  /* Refused before sending: no callback, the body freed (ASan). */
  r = (struct kcld_s3_put_req){.bucket = "Bad_Bucket", .key = "k",
                               .body = strdup("x"), .body_len = 1};
  assert_int_equal(kcld_s3_put_object(e.s3, &r, on_done, &s), KCLD_EINVAL);
  assert_null(r.body);
  r = (struct kcld_s3_put_req){.bucket = "kcld-errors", .key = "",
                               .body = strdup("x"), .body_len = 1};
  assert_int_equal(kcld_s3_put_object(e.s3, &r, on_done, &s), KCLD_EINVAL);
  assert_int_equal(kcld_s3_get_object(e.s3, "ab", "k", on_object, &s),
                   KCLD_EINVAL);
  assert_int_equal(s.done, 0);
  env_down(&e);
}

/* Throttling is retried; a wrong secret is not accepted. */
static void test_retry_and_signature(void **state)
{
  struct env e;
  struct seen s = {0};
  json_t *j;
  (void)state;
  env_up(&e, s_url, 3);
  create_bucket(&e, "kcld-retry");
  j = kcld_fault_post(s_url, "/__s3/fault",
                      "{\"status\":503,\"code\":\"SlowDown\",\"times\":2,"
                      "\"method\":\"PUT\"}");
  json_decref(j);
  {
    struct kcld_s3_put_req r = {.bucket = "kcld-retry", .key = "k",
                                .body = strdup("{}"), .body_len = 2};
    assert_int_equal(kcld_s3_put_object(e.s3, &r, on_done, &s), 0);
    wait_for(&e, &s);
    assert_int_equal(s.err, 0);
    assert_int_equal(s.attempts, 3);
    seen_free(&s);
  }
  /* Only the front's secrets sign right. */
  j = kcld_fault_post(s_url, "/__s3/config", "{\"secrets\":[\"other\"]}");
  json_decref(j);
  get(&e, "kcld-retry", "k", &s);
  assert_int_equal(s.err, KCLD_EAWS);
  assert_string_equal(s.type, "SignatureDoesNotMatch");
  assert_int_equal(s.http_status, 403);
  seen_free(&s);
  j = kcld_fault_post(s_url, "/__s3/config",
                      "{\"secrets\":[\"kcld-test-secret\",\"test\"]}");
  json_decref(j);
  j = kcld_fault_post(s_url, "/__s3/stats", "");
  assert_non_null(j);
  assert_true(json_integer_value(json_object_get(j, "rejected")) >= 1);
  json_decref(j);
  env_down(&e);
}

/* Over https to a host name, a bucket is a subdomain; a dotted bucket or
 * an http endpoint keeps it in the path.  A proxy sees the host. */
static void test_addressing(void **state)
{
  const char *proxy = kcld_emu_url(&s_emu, "proxy");
  struct env e;
  struct seen s = {0};
  json_t *j;
  char *connects;
  (void)state;
  setenv("https_proxy", proxy, 1);
  env_up(&e, "https://s3.us-east-1.amazonaws.com", 1);
  unsetenv("https_proxy");
  assert_true(kcld_aws_endpoint_hostable(e.c.aws, KCLD_AWS_S3));
  assert_int_equal(kcld_s3_head_bucket(e.s3, "kcld-vhost", on_done, &s), 0);
  wait_for(&e, &s);
  assert_int_equal(s.err, KCLD_ETRANSPORT); /* the proxy cannot reach it */
  seen_free(&s);
  assert_int_equal(kcld_s3_head_bucket(e.s3, "kcld.dotted", on_done, &s), 0);
  wait_for(&e, &s);
  seen_free(&s);
  j = kcld_fault_post(proxy, "/__stats", "");
  assert_non_null(j);
  /* The bucket in the host name; a dotted name path-style. */
  connects = json_dumps(json_object_get(j, "connects"), JSON_COMPACT);
  assert_string_equal(connects,
                      "[\"kcld-vhost.s3.us-east-1.amazonaws.com:443\","
                      "\"s3.us-east-1.amazonaws.com:443\"]");
  free(connects);
  json_decref(j);
  env_down(&e);

  env_up(&e, s_url, 1);
  assert_false(kcld_aws_endpoint_hostable(e.c.aws, KCLD_AWS_S3));
  env_down(&e);
}

/* Names and s3:// locations. */
static void test_names(void **state)
{
  struct kcld_s3_uri u;
  const char *why;
  (void)state;
  assert_true(kcld_s3_bucket_valid("my-bucket.logs"));
  assert_true(kcld_s3_bucket_hostable("my-bucket"));
  assert_false(kcld_s3_bucket_hostable("my.bucket"));
  assert_false(kcld_s3_bucket_valid("ab"));
  assert_false(kcld_s3_bucket_valid("My-Bucket"));
  assert_false(kcld_s3_bucket_valid("-bucket"));
  assert_false(kcld_s3_bucket_valid("a..b"));
  assert_false(kcld_s3_bucket_valid("192.168.1.1"));
  assert_int_equal(kcld_s3_uri_parse("s3://my-bucket/kcld", &u, &why), 0);
  assert_string_equal(u.bucket, "my-bucket");
  assert_string_equal(u.prefix, "kcld/");
  assert_int_equal(kcld_s3_uri_parse("s3://my-bucket/a/b/", &u, &why), 0);
  assert_string_equal(u.prefix, "a/b/");
  assert_int_equal(kcld_s3_uri_parse("s3://my-bucket", &u, &why), 0);
  assert_string_equal(u.prefix, "");
  assert_int_equal(kcld_s3_uri_parse("https://b/x", &u, &why), KCLD_EINVAL);
  assert_non_null(strstr(why, "s3://"));
  assert_int_equal(kcld_s3_uri_parse("s3://B/x", &u, &why), KCLD_EINVAL);
  assert_non_null(strstr(why, "bucket"));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_names),
    cmocka_unit_test(test_objects),
    cmocka_unit_test(test_large_object),
    cmocka_unit_test(test_errors),
    cmocka_unit_test(test_retry_and_signature),
    cmocka_unit_test(test_addressing),
  };
  if (kcld_emu_start(&s_emu, "s3 proxy") != 0) {
    fprintf(stderr, "emulators did not start\n");
    return 1;
  }
  s_url = kcld_emu_url(&s_emu, "s3");
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  kcld_emu_stop(&s_emu);
  return rc;
}
