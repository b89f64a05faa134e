/* test_sqs.c — the SQS wrappers against fauxqs: queues created and found,
 * SendMessageBatch with an oversized entry refused before sending and the
 * rest received back intact, batches split by size, a failed call reported
 * per entry, and queue URLs whose host does not resolve (requests go to the
 * configured endpoint; the URL only travels in the body).
 *
 * "sqs_unresolvable" (tests/emulators/lib) is fauxqs handing out URLs on
 * the host sqs.<region>.kcld-test.invalid. */
#include <netdb.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <cmocka.h>
#include <jansson.h>

#include "aws/call.h"
#include "aws/sqs.h"
#include "awsenv.h"
#include "err.h"
#include "harness.h"

#define WAIT_MS 20000

static struct kcld_emu s_emu;

struct env {
  struct kcld_test_awsenv c;
  struct kcld_sqs *sqs;
};

static void env_up(struct env *e, const char *emulator)
{
  memset(e, 0, sizeof(*e));
  kcld_test_awsenv_up(&e->c, KCLD_AWS_SQS, kcld_emu_url(&s_emu, emulator), 0);
  assert_int_equal(kcld_sqs_new(e->c.aws, &e->c.loop, &e->sqs), 0);
}

static void env_down(struct env *e)
{
  kcld_sqs_close(e->sqs);
  kcld_test_awsenv_down(&e->c);
}

/* ======== What the callbacks saw ======== */

struct seen {
  int done;
  int err;
  char type[96];
  char message[640];
  char url[512];
  json_t *doc;
  size_t count, failed;
  int calls;
};

static void seen_status(struct seen *s, const struct kcld_svc_status *st)
{
  s->done++;
  s->err = st->err;
  snprintf(s->type, sizeof(s->type), "%s", st->type);
  snprintf(s->message, sizeof(s->message), "%s", st->message);
}

static void seen_free(struct seen *s)
{
  json_decref(s->doc);
  memset(s, 0, sizeof(*s));
}

static void on_done(const struct kcld_svc_status *st, void *arg)
{
  seen_status(arg, st);
}

static void on_queue(const struct kcld_sqs_queue *r, void *arg)
{
  struct seen *s = arg;
  seen_status(s, &r->st);
  if (r->queue_url)
    snprintf(s->url, sizeof(s->url), "%s", r->queue_url);
}

static void on_attrs(const struct kcld_sqs_attributes *r, void *arg)
{
  struct seen *s = arg;
  seen_status(s, &r->st);
  s->doc = r->attributes ? json_deep_copy(r->attributes) : NULL;
}

/* doc: [{"id", "ok", "message_id" | "code", "message", "sender_fault"}] */
static void on_batch(const struct kcld_sqs_batch_result *r, void *arg)
{
  struct seen *s = arg;
  seen_status(s, &r->st);
  s->count = r->count;
  s->failed = r->failed;
  s->calls = r->calls;
  s->doc = json_array();
  for (size_t i = 0; i < r->count; i++) {
    const struct kcld_sqs_entry_result *e = &r->entries[i];
    json_array_append_new(
      s->doc, e->ok ? json_pack("{sssbss}", "id", e->id, "ok", 1,
                                "message_id", e->message_id)
                    : json_pack("{sssbsssssb}", "id", e->id, "ok", 0, "code",
                                e->code, "message", e->message,
                                "sender_fault", e->sender_fault));
  }
}

/* doc: [{"body", "receipt", "attrs"}] */
static void on_receive(const struct kcld_sqs_receive_result *r, void *arg)
{
  struct seen *s = arg;
  seen_status(s, &r->st);
  s->count = r->count;
  s->doc = json_array();
  for (size_t i = 0; i < r->count; i++) {
    const struct kcld_sqs_message *m = &r->messages[i];
    json_array_append_new(
      s->doc,
      json_pack("{sssssO?sO?}", "body", m->body, "receipt", m->receipt_handle,
                "attrs", m->message_attributes, "system", m->attributes));
  }
}

static void wait_for(struct env *e, struct seen *s)
{
  assert_true(kcld_test_run_until(&e->c.loop, &s->done, WAIT_MS));
  assert_int_equal(s->done, 1);
  if (s->err)
    fprintf(stderr, "note: %s\n", s->message); /* expected or not */
}

/* ======== Steps ======== */

static void create_queue(struct env *e, const char *name, char *url,
                         size_t cap)
{
  struct seen s = {0};
  assert_int_equal(kcld_sqs_create_queue(e->sqs, name, NULL, on_queue, &s),
                   0);
  wait_for(e, &s);
  assert_int_equal(s.err, 0);
  snprintf(url, cap, "%s", s.url);
}

static void send_batch(struct env *e, const char *url,
                       const struct kcld_sqs_entry *entries, size_t n,
                       struct seen *s)
{
  memset(s, 0, sizeof(*s));
  assert_int_equal(kcld_sqs_send_message_batch(e->sqs, url, entries, n,
                                               on_batch, s),
                   0);
  wait_for(e, s);
}

/* Receives until `want` messages came (or a receive brings nothing),
 * deleting each; returns them as [{"body", "attrs"}]. */
static json_t *drain(struct env *e, const char *url, size_t want)
{
  json_t *all = json_array();
  while (json_array_size(all) < want) {
    struct seen s = {0};
    struct kcld_sqs_receive_req r = {.queue_url = url, .max_messages = 10,
                                     .wait_seconds = 1,
                                     .visibility_timeout = 30};
    assert_int_equal(kcld_sqs_receive_message(e->sqs, &r, on_receive, &s),
                     0);
    wait_for(e, &s);
    assert_int_equal(s.err, 0);
    if (s.count == 0) {
      seen_free(&s);
      break;
    }
    for (size_t i = 0; i < s.count; i++) {
      json_t *m = json_array_get(s.doc, i);
      struct seen d = {0};
      assert_int_equal(
        kcld_sqs_delete_message(e->sqs, url,
                                json_string_value(json_object_get(m,
                                                                  "receipt")),
                                on_done, &d),
        0);
      wait_for(e, &d);
      assert_int_equal(d.err, 0);
      json_array_append(all, m);
    }
    seen_free(&s);
  }
  return all;
}

static json_t *find_body(json_t *msgs, const char *body)
{
  for (size_t i = 0; i < json_array_size(msgs); i++) {
    json_t *m = json_array_get(msgs, i);
    if (strcmp(json_string_value(json_object_get(m, "body")), body) == 0)
      return m;
  }
  return NULL;
}

static const char *entry_str(const struct seen *s, size_t i, const char *key)
{
  return json_string_value(json_object_get(json_array_get(s->doc, i), key));
}

static int entry_bool(const struct seen *s, size_t i, const char *key)
{
  return json_is_true(json_object_get(json_array_get(s->doc, i), key));
}

static char *filled(size_t len, char c)
{
  char *p = malloc(len + 1);
  assert_non_null(p);
  memset(p, c, len);
  p[len] = '\0';
  return p;
}

/* ======== Tests ======== */

/* CreateQueue, GetQueueUrl; SendMessageBatch of ten where one is over
 * 256 KiB: that one is refused without being sent, the nine arrive with
 * their bodies and attributes; the queue ends empty. */
static void test_queue_batch_receive(void **state)
{
  struct env e;
  struct seen s = {0};
  struct kcld_sqs_entry in[10];
  char url[512], ids[10][16], bodies[10][64];
  char *big = filled(KCLD_SQS_MESSAGE_MAX + 1, 'x');
  json_t *attrs, *got;
  (void)state;
  env_up(&e, "sqs");
  create_queue(&e, "kcld-dlq", url, sizeof(url));

  assert_int_equal(kcld_sqs_get_queue_url(e.sqs, "kcld-dlq", on_queue, &s), 0);
  wait_for(&e, &s);
  assert_int_equal(s.err, 0);
  assert_string_equal(s.url, url);
  seen_free(&s);

  assert_int_equal(kcld_sqs_get_queue_url(e.sqs, "kcld-nosuch", on_queue, &s),
                   0);
  wait_for(&e, &s);
  assert_int_equal(s.err, KCLD_ENOTFOUND);
  assert_non_null(strstr(s.message, "GetQueueUrl queue kcld-nosuch: "));
  assert_string_equal(s.type, "QueueDoesNotExist");
  seen_free(&s);

  attrs = json_pack("{s{ssss}s{ssss}}", "shardId", "DataType", "String",
                    "StringValue", "shardId-000000000003", "errorClass",
                    "DataType", "String", "StringValue", "handler");
  memset(in, 0, sizeof(in));
  for (int i = 0; i < 10; i++) {
    snprintf(ids[i], sizeof(ids[i]), "e%d", i);
    snprintf(bodies[i], sizeof(bodies[i]),
             "{\"record\":%d,\"text\":\"caf\xc3\xa9 \\u00e9\"}", i);
    in[i].id = ids[i];
    in[i].body = bodies[i];
    in[i].attributes = i % 2 ? attrs : NULL;
  }
  in[4].body = big;
  send_batch(&e, url, in, 10, &s);
  assert_int_equal(s.err, 0);
  assert_int_equal(s.count, 10);
  assert_int_equal(s.failed, 1);
  assert_int_equal(s.calls, 1);
  for (size_t i = 0; i < 10; i++) {
    assert_string_equal(entry_str(&s, i, "id"), ids[i]);
    if (i == 4) {
      assert_false(entry_bool(&s, i, "ok"));
      assert_string_equal(entry_str(&s, i, "code"), KCLD_SQS_TOO_LARGE);
      assert_true(entry_bool(&s, i, "sender_fault"));
      assert_non_null(strstr(entry_str(&s, i, "message"), "262145 bytes"));
    } else {
      assert_true(entry_bool(&s, i, "ok"));
      assert_non_null(entry_str(&s, i, "message_id"));
    }
  }
  seen_free(&s);

  got = drain(&e, url, 9);
  assert_int_equal(json_array_size(got), 9);
  for (int i = 0; i < 10; i++) {
    json_t *m = find_body(got, in[i].body);
    if (i == 4) {
      assert_null(m);
      continue;
    }
    assert_non_null(m);
    if (i % 2)
      assert_true(json_equal(json_object_get(m, "attrs"), attrs));
    else /* absent, or {} as fauxqs answers */
      assert_int_equal(json_object_size(json_object_get(m, "attrs")), 0);
    assert_non_null(json_object_get(json_object_get(m, "system"),
                                    "SentTimestamp"));
  }
  json_decref(got);

  {
    const char *names[] = {"ApproximateNumberOfMessages",
                           "ApproximateNumberOfMessagesNotVisible", NULL};
    assert_int_equal(kcld_sqs_get_queue_attributes(e.sqs, url, names,
                                                   on_attrs, &s),
                     0);
    wait_for(&e, &s);
    assert_int_equal(s.err, 0);
    assert_string_equal(json_string_value(json_object_get(
                          s.doc, "ApproximateNumberOfMessages")),
                        "0");
    assert_string_equal(json_string_value(json_object_get(
                          s.doc, "ApproximateNumberOfMessagesNotVisible")),
                        "0");
    seen_free(&s);
  }
  json_decref(attrs);
  free(big);
  env_down(&e);
}

/* Entries that fit alone but not together go in several calls; the size
 * counts attributes; text SQS refuses is refused before sending; a call
 * that fails marks its entries failed (not the sender's fault). */
static void test_sizes_and_failures(void **state)
{
  struct env e;
  struct seen s = {0};
  struct kcld_sqs_entry in[4];
  char url[512], bad_url[600];
  char *b100 = filled(100 * 1024, 'a');
  char *b100b = filled(100 * 1024, 'b');
  char *b100c = filled(100 * 1024, 'c');
  char *exact = filled(KCLD_SQS_MESSAGE_MAX, 'd');
  char *near = filled(KCLD_SQS_MESSAGE_MAX - 10, 'e');
  json_t *attrs = json_pack("{s{ssss}}", "k", "DataType", "String",
                            "StringValue", "0123456789"); /* 1+6+10 bytes */
  json_t *got;
  (void)state;
  env_up(&e, "sqs");
  create_queue(&e, "kcld-sizes", url, sizeof(url));

  /* 3 x 100 KiB: two calls (200 KiB + 100 KiB). */
  memset(in, 0, sizeof(in));
  in[0] = (struct kcld_sqs_entry){.id = "a", .body = b100};
  in[1] = (struct kcld_sqs_entry){.id = "b", .body = b100b};
  in[2] = (struct kcld_sqs_entry){.id = "c", .body = b100c};
  send_batch(&e, url, in, 3, &s);
  assert_int_equal(s.err, 0);
  assert_int_equal(s.failed, 0);
  assert_int_equal(s.calls, 2);
  seen_free(&s);
  got = drain(&e, url, 3);
  assert_int_equal(json_array_size(got), 3);
  assert_non_null(find_body(got, b100c));
  json_decref(got);

  /* Exactly 256 KiB fits; 10 bytes short of it plus 17 bytes of attribute
   * does not; a control character is refused. */
  in[0] = (struct kcld_sqs_entry){.id = "exact", .body = exact};
  in[1] = (struct kcld_sqs_entry){.id = "near", .body = near,
                                  .attributes = attrs};
  in[2] = (struct kcld_sqs_entry){.id = "ctl", .body = "bell\x07"};
  in[3] = (struct kcld_sqs_entry){.id = "fine", .body = "fine",
                                  .delay_seconds = 0};
  send_batch(&e, url, in, 4, &s);
  assert_int_equal(s.err, 0);
  assert_int_equal(s.failed, 2);
  assert_int_equal(s.calls, 2);
  assert_true(entry_bool(&s, 0, "ok"));
  assert_string_equal(entry_str(&s, 1, "code"), KCLD_SQS_TOO_LARGE);
  assert_non_null(strstr(entry_str(&s, 1, "message"), "262151 bytes"));
  assert_string_equal(entry_str(&s, 2, "code"), KCLD_SQS_INVALID_CONTENTS);
  assert_true(entry_bool(&s, 2, "sender_fault"));
  assert_true(entry_bool(&s, 3, "ok"));
  seen_free(&s);
  got = drain(&e, url, 2);
  assert_int_equal(json_array_size(got), 2);
  assert_non_null(find_body(got, exact));
  assert_non_null(find_body(got, "fine"));
  json_decref(got);

  /* Every entry refused: no call, the callback still comes later. */
  in[0] = (struct kcld_sqs_entry){.id = "ctl", .body = "\x01"};
  assert_int_equal(kcld_sqs_send_message_batch(e.sqs, url, in, 1, on_batch,
                                               &s),
                   0);
  assert_int_equal(s.done, 0);
  wait_for(&e, &s);
  assert_int_equal(s.calls, 0);
  assert_int_equal(s.failed, 1);
  seen_free(&s);

  /* A queue that is not there: the call fails, each entry says so. */
  snprintf(bad_url, sizeof(bad_url), "%s-gone", url);
  in[0] = (struct kcld_sqs_entry){.id = "x", .body = "x"};
  in[1] = (struct kcld_sqs_entry){.id = "y", .body = "y"};
  send_batch(&e, bad_url, in, 2, &s);
  assert_int_equal(s.err, KCLD_ENOTFOUND);
  assert_int_equal(s.failed, 2);
  assert_string_equal(entry_str(&s, 0, "code"), "QueueDoesNotExist");
  assert_false(entry_bool(&s, 0, "sender_fault"));
  assert_non_null(strstr(s.message, "SendMessageBatch queue "));
  assert_non_null(strstr(s.message, "-gone: QueueDoesNotExist"));
  seen_free(&s);

  /* Refused outright: no entries, a bad id, a repeated id. */
  assert_int_equal(kcld_sqs_send_message_batch(e.sqs, url, in, 0, on_batch,
                                               &s),
                   KCLD_EINVAL);
  in[1].id = "x";
  assert_int_equal(kcld_sqs_send_message_batch(e.sqs, url, in, 2, on_batch,
                                               &s),
                   KCLD_EINVAL);
  in[1].id = "has space";
  assert_int_equal(kcld_sqs_send_message_batch(e.sqs, url, in, 2, on_batch,
                                               &s),
                   KCLD_EINVAL);
  assert_int_equal(s.done, 0);

  json_decref(attrs);
  free(b100);
  free(b100b);
  free(b100c);
  free(exact);
  free(near);
  env_down(&e);
}

/* fauxqs here hands out URLs on a host that cannot resolve; everything
 * still works because requests go to the configured endpoint. */
static void test_unresolvable_queue_host(void **state)
{
  struct env e;
  struct seen s = {0};
  struct kcld_sqs_entry in[2] = {{.id = "one", .body = "first"},
                                 {.id = "two", .body = "second"}};
  struct addrinfo *ai = NULL;
  char url[512], host[256];
  json_t *got;
  (void)state;
  env_up(&e, "sqs_unresolvable");
  create_queue(&e, "kcld-faraway", url, sizeof(url));
  assert_int_equal(sscanf(url, "http://%255[^:/]", host), 1);
  assert_non_null(strstr(host, ".invalid"));
  assert_int_not_equal(getaddrinfo(host, "80", NULL, &ai), 0);

  send_batch(&e, url, in, 2, &s);
  assert_int_equal(s.err, 0);
  assert_int_equal(s.failed, 0);
  seen_free(&s);
  got = drain(&e, url, 2);
  assert_int_equal(json_array_size(got), 2);
  assert_non_null(find_body(got, "first"));
  assert_non_null(find_body(got, "second"));
  json_decref(got);
  env_down(&e);
}

/* Closing the client with a call in flight cancels it at once. */
static void test_close_cancels(void **state)
{
  struct env e;
  struct seen s = {0};
  struct kcld_sqs_receive_req r = {.max_messages = 1, .wait_seconds = 5,
                                   .visibility_timeout = -1};
  char url[512];
  int never = 0;
  (void)state;
  env_up(&e, "sqs");
  create_queue(&e, "kcld-close", url, sizeof(url));
  r.queue_url = url;
  assert_int_equal(kcld_sqs_receive_message(e.sqs, &r, on_receive, &s), 0);
  kcld_test_run_until(&e.c.loop, &never, 200);
  assert_int_equal(s.done, 0); /* long poll */
  kcld_sqs_close(e.sqs);
  e.sqs = NULL;
  assert_int_equal(s.done, 1);
  assert_int_equal(s.err, KCLD_ECANCELED);
  seen_free(&s);
  env_down(&e);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_queue_batch_receive),
    cmocka_unit_test(test_sizes_and_failures),
    cmocka_unit_test(test_unresolvable_queue_host),
    cmocka_unit_test(test_close_cancels),
  };
  if (kcld_emu_start(&s_emu, "sqs sqs_unresolvable") != 0) {
    fprintf(stderr, "emulators did not start\n");
    return 1;
  }
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  kcld_emu_stop(&s_emu);
  return rc;
}
