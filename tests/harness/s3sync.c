/* s3sync.c — see s3sync.h. */
#include "s3sync.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

#define WAIT_MS 30000

struct seen {
  int done, err;
  char *body;
  size_t len;
  json_t *keys;
};

static void on_done(const struct kcld_svc_status *st, void *arg)
{
  struct seen *s = arg;
  s->err = st->err;
  s->done = 1;
}

static void on_object(const struct kcld_s3_object *o, void *arg)
{
  struct seen *s = arg;
  s->err = o->st.err;
  if (o->body) {
    s->body = malloc(o->len + 1);
    assert_non_null(s->body);
    memcpy(s->body, o->body, o->len);
    s->body[o->len] = '\0';
    s->len = o->len;
  }
  s->done = 1;
}

static void on_list(const struct kcld_s3_list *l, void *arg)
{
  struct seen *s = arg;
  s->err = l->st.err;
  s->keys = json_array();
  for (size_t i = 0; i < l->count; i++)
    json_array_append_new(s->keys, json_string(l->entries[i].key));
  s->done = 1;
}

int kcld_test_s3_create_bucket(struct kcld_s3 *s3, uv_loop_t *loop,
                               const char *bucket)
{
  struct seen s = {0};
  assert_int_equal(kcld_s3_create_bucket(s3, bucket, on_done, &s), 0);
  assert_true(kcld_test_run_until(loop, &s.done, WAIT_MS));
  return s.err;
}

json_t *kcld_test_s3_keys(struct kcld_s3 *s3, uv_loop_t *loop,
                          const char *bucket, const char *prefix)
{
  struct seen s = {0};
  struct kcld_s3_list_req rq = {bucket, prefix, NULL, NULL, 0};
  assert_int_equal(kcld_s3_list_objects(s3, &rq, on_list, &s), 0);
  assert_true(kcld_test_run_until(loop, &s.done, WAIT_MS));
  assert_int_equal(s.err, 0);
  return s.keys;
}

void kcld_test_s3_check_pointer(const json_t *body, const char *bucket,
                                const char *key, size_t more_than)
{
  const json_t *loc = json_object_get(body, "s3Object");
  assert_non_null(body);
  assert_null(json_object_get(body, "records"));
  assert_string_equal(json_string_value(json_object_get(loc, "bucket")),
                      bucket);
  assert_string_equal(json_string_value(json_object_get(loc, "key")), key);
  assert_true(json_integer_value(json_object_get(loc, "size")) >
              (json_int_t)more_than);
}

char *kcld_test_s3_get(struct kcld_s3 *s3, uv_loop_t *loop,
                       const char *bucket, const char *key, size_t *len)
{
  struct seen s = {0};
  assert_int_equal(kcld_s3_get_object(s3, bucket, key, on_object, &s), 0);
  assert_true(kcld_test_run_until(loop, &s.done, WAIT_MS));
  assert_int_equal(s.err, 0);
  if (len)
    *len = s.len;
  return s.body;
}
