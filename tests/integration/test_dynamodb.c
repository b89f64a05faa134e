/* test_dynamodb.c — the DynamoDB wrappers against dynalite: a lease-style
 * table created and waited for, items put, read, updated and deleted under
 * conditions that hold and that fail, Scan across pages, BatchWriteItem of
 * 60 items (and its UnprocessedItems retries through the fault endpoint),
 * and the AttributeValue helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "aws/call.h"
#include "aws/dynamodb.h"
#include "awsenv.h"
#include "err.h"
#include "fault.h"
#include "harness.h"

#define WAIT_MS 20000

static struct kcld_emu s_emu;

struct env {
  struct kcld_test_awsenv c;
  struct kcld_dynamodb *db;
};

static void env_up_at(struct env *e, const char *url)
{
  memset(e, 0, sizeof(*e));
  kcld_test_awsenv_up(&e->c, KCLD_AWS_DYNAMODB, url, 0);
  assert_int_equal(kcld_dynamodb_new(e->c.aws, &e->c.loop, &e->db), 0);
}

static void env_up(struct env *e)
{
  env_up_at(e, kcld_emu_url(&s_emu, "dynamodb"));
}

static void env_down(struct env *e)
{
  kcld_dynamodb_close(e->db);
  kcld_test_awsenv_down(&e->c);
}

/* ======== What the callbacks saw ======== */

struct seen {
  int done;
  int err;
  enum kcld_dynamodb_fault fault;
  char type[96];
  char message[640];
  char status[64];
  json_t *doc;
  size_t count, written, unprocessed;
  int pages, calls, stopped;
  int stop_after;   /* page callback: stop after this many pages (0 = no) */
  int page_calls;
  json_t *keys;     /* page callback: leaseKeys seen */
};

static void seen_status(struct seen *s, const struct kcld_svc_status *st)
{
  s->done++;
  s->err = st->err;
  s->fault = kcld_dynamodb_fault(st);
  snprintf(s->type, sizeof(s->type), "%s", st->type);
  snprintf(s->message, sizeof(s->message), "%s", st->message);
}

static void seen_free(struct seen *s)
{
  json_decref(s->doc);
  json_decref(s->keys);
  memset(s, 0, sizeof(*s));
}

static void on_table(const struct kcld_dynamodb_table *r, void *arg)
{
  struct seen *s = arg;
  seen_status(s, &r->st);
  if (r->st.err) {
    assert_null(r->table);
    return;
  }
  snprintf(s->status, sizeof(s->status), "%s", r->status);
  s->doc = json_deep_copy(r->table);
}

static void on_item(const struct kcld_dynamodb_result *r, void *arg)
{
  struct seen *s = arg;
  seen_status(s, &r->st);
  if (r->st.err) {
    assert_null(r->body);
    return;
  }
  assert_non_null(r->body);
  s->doc = r->item ? json_deep_copy(r->item) : NULL;
}

static int on_page(json_t *items, void *arg)
{
  struct seen *s = arg;
  s->page_calls++;
  for (size_t i = 0; i < json_array_size(items); i++)
    json_array_append_new(
      s->keys, json_string(kcld_dynamodb_as_s(kcld_dynamodb_attr(
                 json_array_get(items, i), "leaseKey"))));
  return s->stop_after && s->page_calls >= s->stop_after;
}

static void on_scan(const struct kcld_dynamodb_scan_result *r, void *arg)
{
  struct seen *s = arg;
  seen_status(s, &r->st);
  s->count = r->count;
  s->pages = r->pages;
  s->stopped = r->stopped;
  s->doc = r->items ? json_deep_copy(r->items) : NULL;
}

static void on_batch(const struct kcld_dynamodb_batch_result *r, void *arg)
{
  struct seen *s = arg;
  seen_status(s, &r->st);
  s->written = r->written;
  s->unprocessed = r->unprocessed_count;
  s->calls = r->calls;
  s->doc = r->unprocessed ? json_deep_copy(r->unprocessed) : NULL;
}

static void wait_for(struct env *e, struct seen *s)
{
  assert_true(kcld_test_run_until(&e->c.loop, &s->done, WAIT_MS));
  assert_int_equal(s->done, 1);
  if (s->err)
    fprintf(stderr, "note: %s\n", s->message); /* expected or not */
}

/* ======== Steps ======== */

static json_t *lease_table_request(const char *name)
{
  return json_pack("{ss s[{ssss}] s[{ssss}] ss}", "TableName", name,
                   "KeySchema", "AttributeName", "leaseKey", "KeyType", "HASH",
                   "AttributeDefinitions", "AttributeName", "leaseKey",
                   "AttributeType", "S", "BillingMode", "PAY_PER_REQUEST");
}

static void create_active(struct env *e, const char *name)
{
  struct seen s = {0};
  json_t *req = lease_table_request(name);
  assert_int_equal(kcld_dynamodb_create_table(e->db, req, on_table, &s), 0);
  json_decref(req);
  wait_for(e, &s);
  assert_int_equal(s.err, 0);
  seen_free(&s);
  assert_int_equal(kcld_dynamodb_wait_active(e->db, name, 10000, on_table, &s),
                   0);
  wait_for(e, &s);
  assert_int_equal(s.err, 0);
  assert_string_equal(s.status, "ACTIVE");
  seen_free(&s);
}

static json_t *key_of(const char *lease_key)
{
  json_t *k = json_object();
  assert_int_equal(kcld_dynamodb_item_set(k, "leaseKey",
                                          kcld_dynamodb_av_s(lease_key)),
                   0);
  return k;
}

static json_t *lease_item(const char *lease_key, int64_t counter,
                          const char *owner)
{
  json_t *it = key_of(lease_key);
  assert_int_equal(kcld_dynamodb_item_set(it, "leaseCounter",
                                          kcld_dynamodb_av_n_i64(counter)),
                   0);
  if (owner)
    assert_int_equal(kcld_dynamodb_item_set(it, "leaseOwner",
                                            kcld_dynamodb_av_s(owner)),
                     0);
  return it;
}

static void get(struct env *e, const char *table, const char *lease_key,
                struct seen *s)
{
  json_t *k = key_of(lease_key);
  memset(s, 0, sizeof(*s));
  assert_int_equal(kcld_dynamodb_get_item(e->db, table, k, 1, on_item, s), 0);
  json_decref(k);
  wait_for(e, s);
}

static void batch(struct env *e, const json_t *items,
                  const struct kcld_dynamodb_batch_opts *o, struct seen *s)
{
  memset(s, 0, sizeof(*s));
  assert_int_equal(kcld_dynamodb_batch_write(e->db, items, o, on_batch, s), 0);
  wait_for(e, s);
}

/* {"table": [60 PutRequests for lease-000 .. lease-059]} */
static json_t *puts_for(const char *table, int n)
{
  json_t *list = json_array();
  for (int i = 0; i < n; i++) {
    char key[32];
    snprintf(key, sizeof(key), "lease-%03d", i);
    json_array_append_new(list, json_pack("{s{so}}", "PutRequest", "Item",
                                          lease_item(key, i, "worker-a")));
  }
  return json_pack("{so}", table, list);
}

static void scan_all(struct env *e, const char *table, int limit,
                     struct seen *s)
{
  struct kcld_dynamodb_scan_req req = {.table = table, .limit = limit};
  memset(s, 0, sizeof(*s));
  assert_int_equal(kcld_dynamodb_scan(e->db, &req, NULL, on_scan, s), 0);
  wait_for(e, s);
}

/* Replaces the fault endpoint's script with `script` (taken). */
static void fault_script(json_t *script)
{
  char *text = json_dumps(script, JSON_COMPACT);
  assert_int_equal(kcld_fault_script(kcld_emu_url(&s_emu, "fault"), text), 0);
  free(text);
  json_decref(script);
}

/* ======== Tests ======== */

/* CreateTable as the lease table needs it, the wait, DescribeTable; a
 * second create says "exists"; a missing table is KCLD_ENOTFOUND. */
static void test_table(void **state)
{
  struct env e;
  struct seen s = {0};
  json_t *req, *ks;
  (void)state;
  env_up(&e);
  create_active(&e, "kcld-leases");

  assert_int_equal(kcld_dynamodb_describe_table(e.db, "kcld-leases", on_table,
                                                &s),
                   0);
  wait_for(&e, &s);
  assert_int_equal(s.err, 0);
  assert_string_equal(s.status, "ACTIVE");
  ks = json_array_get(json_object_get(s.doc, "KeySchema"), 0);
  assert_string_equal(json_string_value(json_object_get(ks, "AttributeName")),
                      "leaseKey");
  assert_string_equal(json_string_value(json_object_get(ks, "KeyType")),
                      "HASH");
  assert_string_equal(json_string_value(json_object_get(
                        json_object_get(s.doc, "BillingModeSummary"),
                        "BillingMode")),
                      "PAY_PER_REQUEST");
  seen_free(&s);

  req = lease_table_request("kcld-leases");
  assert_int_equal(kcld_dynamodb_create_table(e.db, req, on_table, &s), 0);
  json_decref(req);
  wait_for(&e, &s);
  assert_int_equal(s.err, KCLD_EAWS);
  assert_int_equal(s.fault, KCLD_DYNAMODB_IN_USE);
  assert_string_equal(s.type, "ResourceInUseException");
  assert_non_null(strstr(s.message, "CreateTable table kcld-leases: "
                                    "ResourceInUseException"));
  seen_free(&s);

  assert_int_equal(kcld_dynamodb_describe_table(e.db, "kcld-nosuch", on_table,
                                                &s),
                   0);
  wait_for(&e, &s);
  assert_int_equal(s.err, KCLD_ENOTFOUND);
  assert_int_equal(s.fault, KCLD_DYNAMODB_NOT_FOUND);
  assert_non_null(strstr(s.message, "DescribeTable table kcld-nosuch: "
                                    "ResourceNotFoundException"));
  seen_free(&s);

  /* The wait gives up on a table nobody creates. */
  assert_int_equal(kcld_dynamodb_wait_active(e.db, "kcld-nosuch", 400,
                                             on_table, &s),
                   0);
  wait_for(&e, &s);
  assert_int_equal(s.err, KCLD_ETIMEDOUT);
  assert_non_null(strstr(s.message, "not ACTIVE after 400 ms (last: not "
                                    "found)"));
  seen_free(&s);

  req = json_pack("{si}", "KeySchema", 1);
  assert_int_equal(kcld_dynamodb_create_table(e.db, req, on_table, &s),
                   KCLD_EINVAL);
  json_decref(req);
  env_down(&e);
}

/* Put, get, update under a condition that holds and one that does not,
 * delete; every attribute type survives the round trip exactly. */
static void test_items(void **state)
{
  const char *table = "kcld-items";
  const char *parents[] = {"shardId-000000000000", "shardId-000000000001"};
  struct env e;
  struct seen s = {0};
  json_t *item, *key, *vals, *names, *m, *l;
  int64_t counter;
  int b;
  (void)state;
  env_up(&e);
  create_active(&e, table);

  item = lease_item("shardId-000000000002", 1, "worker-a");
  assert_int_equal(kcld_dynamodb_item_set(item, "checkpoint",
                                          kcld_dynamodb_av_s("TRIM_HORIZON")),
                   0);
  assert_int_equal(kcld_dynamodb_item_set(item, "parentShardId",
                                          kcld_dynamodb_av_ss(parents, 2)),
                   0);
  /* 38 significant digits, and a fraction: kept as text, exactly. */
  assert_int_equal(
    kcld_dynamodb_item_set(item, "big",
                           kcld_dynamodb_av_n(
                             "12345678901234567890123456789012345678")),
    0);
  assert_int_equal(kcld_dynamodb_item_set(item, "ratio",
                                          kcld_dynamodb_av_n("-0.125")),
                   0);
  assert_int_equal(kcld_dynamodb_item_set(item, "flag",
                                          kcld_dynamodb_av_bool(1)),
                   0);
  assert_int_equal(kcld_dynamodb_item_set(item, "nothing",
                                          kcld_dynamodb_av_null()),
                   0);
  m = json_object();
  assert_int_equal(kcld_dynamodb_item_set(m, "host",
                                          kcld_dynamodb_av_s("h1")), 0);
  assert_int_equal(kcld_dynamodb_item_set(item, "meta", kcld_dynamodb_av_m(m)),
                   0);
  l = json_array();
  json_array_append_new(l, kcld_dynamodb_av_n_i64(7));
  json_array_append_new(l, kcld_dynamodb_av_s("seven"));
  assert_int_equal(kcld_dynamodb_item_set(item, "list", kcld_dynamodb_av_l(l)),
                   0);

  /* Create only if absent: holds once, then fails. */
  {
    struct kcld_dynamodb_cond c = {
      .condition = "attribute_not_exists(leaseKey)"};
    assert_int_equal(kcld_dynamodb_put_item(e.db, table, item, &c, on_item,
                                            &s),
                     0);
    wait_for(&e, &s);
    assert_int_equal(s.err, 0);
    assert_null(s.doc);
    seen_free(&s);
    assert_int_equal(kcld_dynamodb_put_item(e.db, table, item, &c, on_item,
                                            &s),
                     0);
    wait_for(&e, &s);
    assert_int_equal(s.err, KCLD_ECONDITION);
    assert_int_equal(s.fault, KCLD_DYNAMODB_CONDITION);
    assert_non_null(strstr(s.message, "PutItem table kcld-items: "));
    assert_null(strstr(s.message, "\"S\"")); /* no item payload */
    assert_non_null(strstr(s.message, "ConditionalCheckFailedException"));
    seen_free(&s);
  }

  get(&e, table, "shardId-000000000002", &s);
  assert_int_equal(s.err, 0);
  assert_non_null(s.doc);
  assert_true(json_equal(s.doc, item));
  assert_string_equal(kcld_dynamodb_as_s(kcld_dynamodb_attr(s.doc,
                                                            "leaseOwner")),
                      "worker-a");
  assert_int_equal(kcld_dynamodb_as_i64(kcld_dynamodb_attr(s.doc,
                                                           "leaseCounter"),
                                        &counter),
                   0);
  assert_int_equal(counter, 1);
  assert_string_equal(kcld_dynamodb_as_n(kcld_dynamodb_attr(s.doc, "big")),
                      "12345678901234567890123456789012345678");
  assert_int_equal(kcld_dynamodb_as_i64(kcld_dynamodb_attr(s.doc, "big"),
                                        &counter),
                   KCLD_EINVAL); /* out of int64 range */
  assert_int_equal(json_array_size(kcld_dynamodb_as_ss(
                     kcld_dynamodb_attr(s.doc, "parentShardId"))),
                   2);
  assert_int_equal(kcld_dynamodb_as_bool(kcld_dynamodb_attr(s.doc, "flag"),
                                         &b),
                   0);
  assert_int_equal(b, 1);
  assert_true(kcld_dynamodb_is_null(kcld_dynamodb_attr(s.doc, "nothing")));
  assert_string_equal(
    kcld_dynamodb_as_s(kcld_dynamodb_attr(
      kcld_dynamodb_as_m(kcld_dynamodb_attr(s.doc, "meta")), "host")),
    "h1");
  assert_int_equal(json_array_size(kcld_dynamodb_as_l(
                     kcld_dynamodb_attr(s.doc, "list"))),
                   2);
  assert_null(kcld_dynamodb_as_s(kcld_dynamodb_attr(s.doc, "absent")));
  seen_free(&s);

  /* Renew as the lease table does: counter + 1 if it is still 1. */
  key = key_of("shardId-000000000002");
  names = json_pack("{ssss}", "#c", "leaseCounter", "#o", "leaseOwner");
  vals = json_object();
  kcld_dynamodb_item_set(vals, ":seen", kcld_dynamodb_av_n_i64(1));
  kcld_dynamodb_item_set(vals, ":one", kcld_dynamodb_av_n_i64(1));
  kcld_dynamodb_item_set(vals, ":me", kcld_dynamodb_av_s("worker-b"));
  {
    struct kcld_dynamodb_cond c = {.condition = "#c = :seen",
                                   .names = names,
                                   .values = vals,
                                   .return_values = "ALL_NEW"};
    assert_int_equal(kcld_dynamodb_update_item(e.db, table, key,
                                               "SET #c = #c + :one, #o = :me",
                                               &c, on_item, &s),
                     0);
    wait_for(&e, &s);
    assert_int_equal(s.err, 0);
    assert_non_null(s.doc);
    assert_int_equal(kcld_dynamodb_as_i64(kcld_dynamodb_attr(s.doc,
                                                             "leaseCounter"),
                                          &counter),
                     0);
    assert_int_equal(counter, 2);
    assert_string_equal(kcld_dynamodb_as_s(kcld_dynamodb_attr(s.doc,
                                                              "leaseOwner")),
                        "worker-b");
    seen_free(&s);

    /* The same renew again: the counter moved on, the condition fails. */
    assert_int_equal(kcld_dynamodb_update_item(e.db, table, key,
                                               "SET #c = #c + :one, #o = :me",
                                               &c, on_item, &s),
                     0);
    wait_for(&e, &s);
    assert_int_equal(s.err, KCLD_ECONDITION);
    assert_int_equal(s.fault, KCLD_DYNAMODB_CONDITION);
    assert_string_equal(s.type, "ConditionalCheckFailedException");
    assert_non_null(strstr(s.message,
                           "UpdateItem table kcld-items key "
                           "{\"leaseKey\":{\"S\":\"shardId-000000000002\"}}: "
                           "ConditionalCheckFailedException (HTTP 400"));
    seen_free(&s);
  }
  get(&e, table, "shardId-000000000002", &s);
  assert_int_equal(kcld_dynamodb_as_i64(kcld_dynamodb_attr(s.doc,
                                                           "leaseCounter"),
                                        &counter),
                   0);
  assert_int_equal(counter, 2); /* the failed update changed nothing */
  seen_free(&s);

  /* Delete only if still owned by worker-a: fails; by worker-b: holds. */
  {
    json_t *v = json_object();
    struct kcld_dynamodb_cond c = {.condition = "leaseOwner = :o",
                                   .values = v,
                                   .return_values = "ALL_OLD"};
    kcld_dynamodb_item_set(v, ":o", kcld_dynamodb_av_s("worker-a"));
    assert_int_equal(kcld_dynamodb_delete_item(e.db, table, key, &c, on_item,
                                               &s),
                     0);
    wait_for(&e, &s);
    assert_int_equal(s.err, KCLD_ECONDITION);
    seen_free(&s);
    kcld_dynamodb_item_set(v, ":o", kcld_dynamodb_av_s("worker-b"));
    assert_int_equal(kcld_dynamodb_delete_item(e.db, table, key, &c, on_item,
                                               &s),
                     0);
    wait_for(&e, &s);
    assert_int_equal(s.err, 0);
    assert_string_equal(kcld_dynamodb_as_s(kcld_dynamodb_attr(s.doc,
                                                              "leaseOwner")),
                        "worker-b");
    seen_free(&s);
    json_decref(v);
  }
  get(&e, table, "shardId-000000000002", &s);
  assert_int_equal(s.err, 0);
  assert_null(s.doc); /* gone: success without an item */
  seen_free(&s);

  get(&e, "kcld-nosuch", "x", &s);
  assert_int_equal(s.err, KCLD_ENOTFOUND);
  seen_free(&s);

  /* Arguments refused before sending. */
  assert_int_equal(kcld_dynamodb_update_item(e.db, table, key, "", NULL,
                                             on_item, &s),
                   KCLD_EINVAL);
  assert_int_equal(kcld_dynamodb_get_item(e.db, table, NULL, 0, on_item, &s),
                   KCLD_EINVAL);
  json_decref(key);
  json_decref(names);
  json_decref(vals);
  json_decref(item);
  env_down(&e);
}

/* BatchWriteItem of 60 items (three calls), Scan across pages, the page
 * callback and its stop, deletes through BatchWriteItem. */
static void test_batch_and_scan(void **state)
{
  const char *table = "kcld-batch";
  struct env e;
  struct seen s = {0};
  json_t *items;
  (void)state;
  env_up(&e);
  create_active(&e, table);

  items = puts_for(table, 60);
  batch(&e, items, NULL, &s);
  assert_int_equal(s.err, 0);
  assert_int_equal(s.written, 60);
  assert_int_equal(s.calls, 3);
  assert_int_equal(s.unprocessed, 0);
  assert_null(s.doc);
  seen_free(&s);

  /* All pages at once: every item once, with what was written. */
  scan_all(&e, table, 7, &s);
  assert_int_equal(s.err, 0);
  assert_int_equal(s.count, 60);
  assert_int_equal(json_array_size(s.doc), 60);
  assert_true(s.pages >= 9); /* 60 / 7 */
  {
    int hits[60] = {0};
    for (size_t i = 0; i < 60; i++) {
      json_t *it = json_array_get(s.doc, i);
      const char *k = kcld_dynamodb_as_s(kcld_dynamodb_attr(it, "leaseKey"));
      int64_t c;
      int n;
      assert_int_equal(sscanf(k, "lease-%d", &n), 1);
      assert_true(n >= 0 && n < 60);
      hits[n]++;
      assert_int_equal(kcld_dynamodb_as_i64(
                         kcld_dynamodb_attr(it, "leaseCounter"), &c),
                       0);
      assert_int_equal(c, n);
    }
    for (int i = 0; i < 60; i++)
      assert_int_equal(hits[i], 1);
  }
  seen_free(&s);

  /* Page by page, stopping after two pages of ten. */
  {
    struct kcld_dynamodb_scan_req req = {.table = table, .limit = 10};
    s.stop_after = 2;
    s.keys = json_array();
    assert_int_equal(kcld_dynamodb_scan(e.db, &req, on_page, on_scan, &s), 0);
    wait_for(&e, &s);
    assert_int_equal(s.err, 0);
    assert_int_equal(s.stopped, 1);
    assert_int_equal(s.pages, 2);
    assert_int_equal(s.page_calls, 2);
    assert_int_equal(s.count, 20);
    assert_int_equal(json_array_size(s.keys), 20);
    assert_null(s.doc);
    seen_free(&s);
  }

  /* A filtered scan with names and values. */
  {
    json_t *names = json_pack("{ss}", "#c", "leaseCounter");
    json_t *vals = json_object();
    struct kcld_dynamodb_scan_req req = {.table = table, .limit = 25,
                                         .filter = "#c >= :min",
                                         .names = names, .values = vals};
    kcld_dynamodb_item_set(vals, ":min", kcld_dynamodb_av_n_i64(50));
    assert_int_equal(kcld_dynamodb_scan(e.db, &req, NULL, on_scan, &s), 0);
    wait_for(&e, &s);
    assert_int_equal(s.err, 0);
    assert_int_equal(json_array_size(s.doc), 10);
    seen_free(&s);
    json_decref(names);
    json_decref(vals);
  }

  /* Delete 45 of them in one batch (two calls). */
  {
    json_t *list = json_array();
    for (int i = 0; i < 45; i++) {
      char key[32];
      snprintf(key, sizeof(key), "lease-%03d", i);
      json_array_append_new(list, json_pack("{s{so}}", "DeleteRequest", "Key",
                                            key_of(key)));
    }
    json_decref(items);
    items = json_pack("{so}", table, list);
    batch(&e, items, NULL, &s);
    assert_int_equal(s.err, 0);
    assert_int_equal(s.written, 45);
    assert_int_equal(s.calls, 2);
    seen_free(&s);
    scan_all(&e, table, 0, &s);
    assert_int_equal(s.count, 15);
    seen_free(&s);
  }

  /* A missing table: the call fails and everything is handed back. */
  json_decref(items);
  items = puts_for("kcld-nosuch", 30);
  batch(&e, items, NULL, &s);
  assert_int_equal(s.err, KCLD_ENOTFOUND);
  assert_int_equal(s.written, 0);
  assert_int_equal(s.calls, 1);
  assert_int_equal(s.unprocessed, 30);
  assert_int_equal(json_array_size(json_object_get(s.doc, "kcld-nosuch")), 30);
  assert_non_null(strstr(s.message, "BatchWriteItem table kcld-nosuch (30 "
                                    "requests): ResourceNotFoundException"));
  seen_free(&s);
  json_decref(items);

  items = json_pack("{s[]}", table);
  assert_int_equal(kcld_dynamodb_batch_write(e.db, items, NULL, on_batch, &s),
                   KCLD_EINVAL);
  json_decref(items);
  env_down(&e);
}

/* UnprocessedItems: the fault endpoint answers the first call of each run
 * with the whole chunk unprocessed (and writes nothing), then passes calls
 * on to dynalite.  With retries the items all land; without, they are
 * handed back. */
static void test_batch_unprocessed(void **state)
{
  const char *table = "kcld-unproc";
  struct env direct, e;
  struct seen s = {0};
  json_t *items, *chunk, *script;
  (void)state;
  env_up(&direct);
  create_active(&direct, table);
  env_down(&direct);
  env_up_at(&e, kcld_emu_url(&s_emu, "fault"));

  items = puts_for(table, 60);
  /* The first 25 requests, as the wrapper sends them, all unprocessed. */
  chunk = json_array();
  for (size_t i = 0; i < 25; i++)
    json_array_append(chunk,
                      json_array_get(json_object_get(items, table), i));
  script = json_pack("{ss ss s[{ss s{s{so}}}]}", "upstream",
                     kcld_emu_url(&s_emu, "dynamodb"), "then", "proxy",
                     "steps", "target", "BatchWriteItem", "body",
                     "UnprocessedItems", table, chunk);
  fault_script(json_incref(script));
  {
    struct kcld_dynamodb_batch_opts o = {.backoff_base_ms = 5,
                                         .backoff_max_ms = 20};
    batch(&e, items, &o, &s);
  }
  assert_int_equal(s.err, 0);
  assert_int_equal(s.written, 60);
  assert_int_equal(s.calls, 4); /* 25 refused, 25 again, 25, 10 */
  assert_int_equal(s.unprocessed, 0);
  seen_free(&s);
  scan_all(&e, table, 0, &s);
  assert_int_equal(s.count, 60);
  seen_free(&s);

  /* No retries: the unprocessed chunk and the chunks never sent come back,
   * in order. */
  fault_script(json_incref(script));
  {
    struct kcld_dynamodb_batch_opts o = {.max_retries = -1};
    batch(&e, items, &o, &s);
  }
  assert_int_equal(s.err, KCLD_ETIMEDOUT);
  assert_int_equal(s.written, 0);
  assert_int_equal(s.calls, 1);
  assert_int_equal(s.unprocessed, 60);
  assert_true(json_equal(json_object_get(s.doc, table),
                         json_object_get(items, table)));
  assert_non_null(strstr(s.message, "25 write requests still unprocessed "
                                    "after 0 retries"));
  seen_free(&s);
  json_decref(script);
  json_decref(items);
  env_down(&e);
}

/* Closing the client with a backoff pending cancels it at once. */
static void test_close_cancels(void **state)
{
  const char *table = "kcld-close";
  struct env direct, e;
  struct seen s = {0};
  json_t *items, *script;
  int never = 0;
  struct kcld_dynamodb_batch_opts o = {.backoff_base_ms = 5000,
                                       .backoff_max_ms = 5000};
  (void)state;
  env_up(&direct);
  create_active(&direct, table);
  env_down(&direct);
  env_up_at(&e, kcld_emu_url(&s_emu, "fault"));
  items = puts_for(table, 3);
  script = json_pack("{ss ss s[{ss s{s{sO}}}]}", "upstream",
                     kcld_emu_url(&s_emu, "dynamodb"), "then", "proxy",
                     "steps", "target", "BatchWriteItem", "body",
                     "UnprocessedItems", table, json_object_get(items, table));
  fault_script(script);
  assert_int_equal(kcld_dynamodb_batch_write(e.db, items, &o, on_batch, &s),
                   0);
  kcld_test_run_until(&e.c.loop, &never, 500);
  assert_int_equal(s.done, 0); /* backing off */
  kcld_dynamodb_close(e.db);
  e.db = NULL;
  assert_int_equal(s.done, 1);
  assert_int_equal(s.err, KCLD_ECANCELED);
  assert_int_equal(s.unprocessed, 3);
  seen_free(&s);
  json_decref(items);
  env_down(&e);
}

/* The AttributeValue builders refuse what DynamoDB would. */
static void test_attribute_values(void **state)
{
  static const char *const good[] = {
    "0", "-1", "+7", "1.5", ".5", "5.", "1e10", "-1.25E-3",
    "00012345678901234567890123456789012345678000", /* 38 significant */
    "1234567890123456789012345678901234567.8"};
  static const char *const bad[] = {
    "", "-", ".", "1e", "e5", "1.2.3", "0x10", "NaN", " 1", "1 ",
    "123456789012345678901234567890123456789" /* 39 */};
  const char *dup[] = {"a", "b", "a"};
  json_t *av, *item;
  int64_t v;
  int b;
  (void)state;

  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
    av = kcld_dynamodb_av_n(good[i]);
    assert_non_null(av);
    assert_string_equal(kcld_dynamodb_as_n(av), good[i]);
    json_decref(av);
  }
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_null(kcld_dynamodb_av_n(bad[i]));

  av = kcld_dynamodb_av_n_i64(INT64_MIN);
  assert_string_equal(kcld_dynamodb_as_n(av), "-9223372036854775808");
  assert_int_equal(kcld_dynamodb_as_i64(av, &v), 0);
  assert_true(v == INT64_MIN);
  json_decref(av);
  av = kcld_dynamodb_av_n("1.5");
  assert_int_equal(kcld_dynamodb_as_i64(av, &v), KCLD_EINVAL);
  assert_null(kcld_dynamodb_as_s(av));
  assert_int_equal(kcld_dynamodb_as_bool(av, &b), KCLD_EINVAL);
  json_decref(av);
  assert_int_equal(kcld_dynamodb_as_i64(NULL, &v), KCLD_ENOTFOUND);

  assert_null(kcld_dynamodb_av_ss(dup, 3));
  assert_null(kcld_dynamodb_av_ss(dup, 0));
  av = kcld_dynamodb_av_ss(dup, 2);
  assert_int_equal(json_array_size(kcld_dynamodb_as_ss(av)), 2);
  json_decref(av);
  assert_null(kcld_dynamodb_av_s(NULL));
  assert_null(kcld_dynamodb_av_m(json_array()));

  item = json_object();
  assert_int_equal(kcld_dynamodb_item_set(item, "n", kcld_dynamodb_av_n("x")),
                   KCLD_EINVAL);
  assert_int_equal(json_object_size(item), 0);
  assert_int_equal(kcld_dynamodb_item_set(item, "e", kcld_dynamodb_av_m(NULL)),
                   0);
  assert_int_equal(json_object_size(kcld_dynamodb_as_m(
                     kcld_dynamodb_attr(item, "e"))),
                   0);
  json_decref(item);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_table),
    cmocka_unit_test(test_items),
    cmocka_unit_test(test_batch_and_scan),
    cmocka_unit_test(test_batch_unprocessed),
    cmocka_unit_test(test_close_cancels),
    cmocka_unit_test(test_attribute_values),
  };
  if (kcld_emu_start(&s_emu, "dynamodb fault") != 0) {
    fprintf(stderr, "emulators did not start\n");
    return 1;
  }
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  kcld_emu_stop(&s_emu);
  return rc;
}
