/* test_lease_table.c — the KCL lease table against dynalite: the table is
 * created (PAY_PER_REQUEST, leaseKey S) or used as it is; every write leaves
 * exactly the KCL's attributes, checked attribute by attribute after create,
 * take, steal, renew, checkpoint, release, shard end and delete, and an
 * attribute written by another client survives all of them; stale writes
 * fail their condition and report the item as it is; a write whose answer
 * was lost is recognised on the re-read; scans skip items that are not
 * leases.  Tables written exactly as KCL 2.x and 3.x write them (names and
 * types) keep what the KCL's own updates keep: take removes
 * checkpointOwner, a checkpoint the pending checkpoint; a multi-stream
 * table is refused by a single-stream handle, and read and written with
 * streamName and shardId by a multi-stream one (which refuses a
 * single-stream lease). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "../harness/harness.h"
#include "aws/call.h"
#include "aws/credentials.h"
#include "aws/dynamodb.h"
#include "aws/http.h"
#include "err.h"
#include "lease/table.h"

static struct kcld_emu s_emu;
static int s_table_seq;

/* ======== Fixture ======== */

struct fx {
  uv_loop_t loop;
  struct kcld_http *http;
  struct kcld_credentials *creds;
  struct kcld_aws *aws;
  struct kcld_dynamodb *db;
  struct kcld_lease_table *t;
  char name[64];
};

static void fx_open(struct fx *f)
{
  memset(f, 0, sizeof(*f));
  assert_int_equal(uv_loop_init(&f->loop), 0);
  assert_int_equal(kcld_http_new(&f->loop, NULL, &f->http), 0);
  struct kcld_credentials_opts co = {.loop = &f->loop,
                                     .access_key_id = "AKIDLEASETEST",
                                     .secret_access_key = "lease-test-key"};
  assert_int_equal(kcld_credentials_new(&co, &f->creds), 0);
  struct kcld_aws_opts ao = {.loop = &f->loop, .http = f->http,
                             .creds = f->creds, .region = "us-east-1"};
  ao.endpoint[KCLD_AWS_DYNAMODB] = kcld_emu_url(&s_emu, "dynamodb");
  assert_int_equal(kcld_aws_new(&ao, &f->aws), 0);
  assert_int_equal(kcld_dynamodb_new(f->aws, &f->loop, &f->db), 0);
  snprintf(f->name, sizeof(f->name), "kcld-lease-table-%d", ++s_table_seq);
  assert_int_equal(kcld_lease_table_new(f->db, f->name, 0, &f->t), 0);
}

static void fx_close(struct fx *f)
{
  kcld_dynamodb_close(f->db);
  kcld_lease_table_free(f->t);
  kcld_aws_close(f->aws);
  kcld_credentials_close(f->creds);
  kcld_http_close(f->http);
  kcld_test_loop_finish(&f->loop);
}

/* ======== Synchronous wrappers ======== */

struct res {
  int done;
  int err;
  int flag;          /* created / via_reread */
  struct kcld_lease lease;
  int has_lease;
  json_t *json;
  size_t n;
};

static void res_reset(struct res *r)
{
  kcld_lease_clean_up(&r->lease);
  json_decref(r->json);
  memset(r, 0, sizeof(*r));
}

static void wait_done(struct fx *f, struct res *r)
{
  assert_true(kcld_test_run_until(&f->loop, &r->done, 10000));
}

/* Ends an ensure or a create: the error and `created`. */
static void on_made(const struct kcld_svc_status *st, int created, void *arg)
{
  struct res *r = arg;
  r->err = st->err;
  r->flag = created;
  r->done = 1;
}

static int ensure(struct fx *f, int *created)
{
  struct res r = {0};
  assert_int_equal(kcld_lease_table_ensure(f->t, 0, on_made, &r), 0);
  wait_done(f, &r);
  *created = r.flag;
  return r.err;
}

static int create(struct fx *f, const struct kcld_lease *l, int *created)
{
  struct res r = {0};
  assert_int_equal(kcld_lease_table_create(f->t, l, on_made, &r), 0);
  wait_done(f, &r);
  *created = r.flag;
  return r.err;
}

static void on_write(int err, int via_reread, const struct kcld_lease *cur,
                     void *arg)
{
  struct res *r = arg;
  r->err = err;
  r->flag = via_reread;
  if (cur) {
    assert_int_equal(kcld_lease_copy(&r->lease, cur), 0);
    r->has_lease = 1;
  }
  r->done = 1;
}

/* Writes `ch` on `seen`; on success applies it to *seen, as the coordinator
 * does. */
static int write_ch(struct fx *f, struct kcld_lease *seen,
                    const struct kcld_lease_change *ch, struct res *r)
{
  memset(r, 0, sizeof(*r));
  assert_int_equal(kcld_lease_table_write(f->t, seen, ch, on_write, r), 0);
  wait_done(f, r);
  if (r->err == 0 && !r->flag)
    assert_int_equal(kcld_lease_apply(seen, ch), 0);
  return r->err;
}

static void on_raw(const struct kcld_dynamodb_result *res, void *arg)
{
  struct res *r = arg;
  r->err = res->st.err;
  if (res->item)
    r->json = json_incref(res->item);
  r->done = 1;
}

static json_t *key_json(const char *id)
{
  return json_pack("{s:{s:s}}", "leaseKey", "S", id);
}

/* The raw item (new reference), or NULL when there is none. */
static json_t *raw_get(struct fx *f, const char *id)
{
  struct res r = {0};
  json_t *key = key_json(id);
  assert_int_equal(kcld_dynamodb_get_item(f->db, f->name, key, 1, on_raw,
                                          &r),
                   0);
  json_decref(key);
  wait_done(f, &r);
  assert_int_equal(r.err, 0);
  return r.json;
}

/* UpdateItem without condition, as another client would. */
static void raw_update(struct fx *f, const char *id, const char *expr,
                       json_t *names, json_t *values)
{
  struct res r = {0};
  json_t *key = key_json(id);
  struct kcld_dynamodb_cond cond = {.names = names, .values = values};
  assert_int_equal(kcld_dynamodb_update_item(f->db, f->name, key, expr, &cond,
                                             on_raw, &r),
                   0);
  json_decref(key);
  json_decref(names);
  json_decref(values);
  wait_done(f, &r);
  assert_int_equal(r.err, 0);
}

static void raw_put(struct fx *f, json_t *item)
{
  struct res r = {0};
  assert_int_equal(kcld_dynamodb_put_item(f->db, f->name, item, NULL, on_raw,
                                          &r),
                   0);
  json_decref(item);
  wait_done(f, &r);
  assert_int_equal(r.err, 0);
}

/* ======== Attribute checks ======== */

static void assert_s(const json_t *item, const char *name, const char *want)
{
  const char *got = kcld_dynamodb_as_s(kcld_dynamodb_attr(item, name));
  if (!want) {
    assert_null(kcld_dynamodb_attr(item, name));
    return;
  }
  assert_non_null(got);
  assert_string_equal(got, want);
}

static void assert_n(const json_t *item, const char *name, const char *want)
{
  const char *got = kcld_dynamodb_as_n(kcld_dynamodb_attr(item, name));
  assert_non_null(got);
  assert_string_equal(got, want);
}

/* SS equal to the given set (any order). */
static void assert_ss(const json_t *item, const char *name,
                      const char *const *want, size_t n)
{
  json_t *av = kcld_dynamodb_attr(item, name);
  if (n == 0) {
    assert_null(av);
    return;
  }
  json_t *arr = kcld_dynamodb_as_ss(av);
  assert_non_null(arr);
  assert_int_equal(json_array_size(arr), n);
  for (size_t i = 0; i < n; i++) {
    int found = 0;
    for (size_t j = 0; j < n; j++)
      if (strcmp(json_string_value(json_array_get(arr, j)), want[i]) == 0)
        found = 1;
    assert_true(found);
  }
}

/* The item has exactly these attribute names. */
static void assert_names(const json_t *item, const char *const *names)
{
  size_t n = 0;
  for (; names[n]; n++)
    assert_non_null(kcld_dynamodb_attr(item, names[n]));
  assert_int_equal(json_object_size(item), n);
}

/* ======== Tests ======== */

static void on_describe(const struct kcld_dynamodb_table *t, void *arg)
{
  struct res *r = arg;
  r->err = t->st.err;
  if (t->table)
    r->json = json_incref(t->table);
  r->done = 1;
}

static json_t *describe(struct fx *f, const char *name)
{
  struct res r = {0};
  assert_int_equal(kcld_dynamodb_describe_table(f->db, name, on_describe,
                                                &r),
                   0);
  wait_done(f, &r);
  assert_int_equal(r.err, 0);
  return r.json;
}

static void test_table_created_then_reused(void **state)
{
  (void)state;
  struct fx f;
  fx_open(&f);
  int created = -1;
  assert_int_equal(ensure(&f, &created), 0);
  assert_int_equal(created, 1);
  json_t *d = describe(&f, f.name);
  assert_string_equal(json_string_value(json_object_get(d, "TableStatus")),
                      "ACTIVE");
  json_t *ks = json_array_get(json_object_get(d, "KeySchema"), 0);
  assert_string_equal(json_string_value(json_object_get(ks, "AttributeName")),
                      "leaseKey");
  assert_string_equal(json_string_value(json_object_get(ks, "KeyType")),
                      "HASH");
  assert_int_equal(json_array_size(json_object_get(d, "KeySchema")), 1);
  json_t *ad = json_array_get(json_object_get(d, "AttributeDefinitions"), 0);
  assert_string_equal(json_string_value(json_object_get(ad, "AttributeType")),
                      "S");
  json_t *bm = json_object_get(json_object_get(d, "BillingModeSummary"),
                               "BillingMode");
  assert_string_equal(json_string_value(bm), "PAY_PER_REQUEST");
  json_decref(d);

  /* Again: used as it is. */
  created = -1;
  assert_int_equal(ensure(&f, &created), 0);
  assert_int_equal(created, 0);
  fx_close(&f);
}

static void on_table(const struct kcld_dynamodb_table *t, void *arg)
{
  struct res *r = arg;
  r->err = t->st.err;
  r->done = 1;
}

static void test_existing_table_used_as_is(void **state)
{
  (void)state;
  struct fx f;
  fx_open(&f);
  /* A provisioned table made by someone else. */
  json_t *req = json_pack(
    "{s:s, s:[{s:s, s:s}], s:[{s:s, s:s}], s:{s:i, s:i}}", "TableName",
    f.name, "KeySchema", "AttributeName", "leaseKey", "KeyType", "HASH",
    "AttributeDefinitions", "AttributeName", "leaseKey", "AttributeType", "S",
    "ProvisionedThroughput", "ReadCapacityUnits", 7, "WriteCapacityUnits", 3);
  struct res r = {0};
  assert_int_equal(kcld_dynamodb_create_table(f.db, req, on_table, &r), 0);
  json_decref(req);
  wait_done(&f, &r);
  assert_int_equal(r.err, 0);
  int created = -1;
  assert_int_equal(ensure(&f, &created), 0);
  assert_int_equal(created, 0);
  json_t *d = describe(&f, f.name);
  json_t *pt = json_object_get(d, "ProvisionedThroughput");
  assert_int_equal(json_integer_value(json_object_get(pt,
                                                      "ReadCapacityUnits")),
                   7);
  json_decref(d);
  fx_close(&f);
}

static void test_attributes_through_every_write(void **state)
{
  (void)state;
  struct fx f;
  fx_open(&f);
  int created;
  assert_int_equal(ensure(&f, &created), 0);

  char *parents[] = {"shardId-000000000000", "shardId-000000000001"};
  struct kcld_lease l = {.shard_id = "shardId-000000000002",
                         .checkpoint = "TRIM_HORIZON",
                         .parents = parents, .n_parents = 2,
                         .starting_hash_key = "0",
                         .ending_hash_key =
                           "340282366920938463463374607431768211455"};
  assert_int_equal(create(&f, &l, &created), 0);
  assert_int_equal(created, 1);
  json_t *it = raw_get(&f, l.shard_id);
  static const char *const base[] = {
    "leaseKey", "leaseCounter", "checkpoint", "checkpointSubSequenceNumber",
    "ownerSwitchesSinceCheckpoint", "parentShardId", "startingHashKey",
    "endingHashKey", NULL};
  assert_names(it, base);
  assert_s(it, "leaseKey", "shardId-000000000002");
  assert_n(it, "leaseCounter", "0");
  assert_s(it, "checkpoint", "TRIM_HORIZON");
  assert_n(it, "checkpointSubSequenceNumber", "0");
  assert_n(it, "ownerSwitchesSinceCheckpoint", "0");
  assert_ss(it, "parentShardId", (const char *const *)parents, 2);
  assert_s(it, "startingHashKey", "0");
  assert_s(it, "endingHashKey", "340282366920938463463374607431768211455");
  assert_s(it, "leaseOwner", NULL);
  json_decref(it);

  /* Another client adds its own attributes. */
  raw_update(&f, l.shard_id, "SET #x = :x, #y = :y",
             json_pack("{s:s, s:s}", "#x", "javaOnlyAttr", "#y",
                       "pendingCheckpoint"),
             json_pack("{s:{s:s}, s:{s:s}}", ":x", "S", "keep me", ":y", "S",
                       "49590338271490256608559692538361571095921575989136"
                       "588898"));
  static const char *const with_extra[] = {
    "leaseKey", "leaseCounter", "checkpoint", "checkpointSubSequenceNumber",
    "ownerSwitchesSinceCheckpoint", "parentShardId", "startingHashKey",
    "endingHashKey", "javaOnlyAttr", "pendingCheckpoint", NULL};
  static const char *const owned_extra[] = {
    "leaseKey", "leaseOwner", "leaseCounter", "checkpoint",
    "checkpointSubSequenceNumber", "ownerSwitchesSinceCheckpoint",
    "parentShardId", "startingHashKey", "endingHashKey", "javaOnlyAttr",
    "pendingCheckpoint", NULL};

  /* Creating it again does not overwrite it. */
  struct kcld_lease l2 = {.shard_id = l.shard_id, .checkpoint = "LATEST"};
  assert_int_equal(create(&f, &l2, &created), 0);
  assert_int_equal(created, 0);
  it = raw_get(&f, l.shard_id);
  assert_names(it, with_extra);
  assert_s(it, "checkpoint", "TRIM_HORIZON");
  json_decref(it);

  /* Our view of it. */
  struct kcld_lease seen;
  struct res r;
  {
    json_t *item = raw_get(&f, l.shard_id);
    assert_int_equal(kcld_lease_from_item(item, &seen), 0);
    json_decref(item);
  }
  assert_int_equal(seen.n_parents, 2);

  /* Take (unowned): owner, counter+1, no owner switch. */
  struct kcld_lease_change take_a = {.kind = KCLD_LEASE_TAKE,
                                     .worker = "worker-a"};
  assert_int_equal(write_ch(&f, &seen, &take_a, &r), 0);
  it = raw_get(&f, l.shard_id);
  assert_names(it, owned_extra);
  assert_s(it, "leaseOwner", "worker-a");
  assert_n(it, "leaseCounter", "1");
  assert_n(it, "ownerSwitchesSinceCheckpoint", "0");
  assert_s(it, "javaOnlyAttr", "keep me");
  json_decref(it);

  /* Steal by worker-b: owner switch counted. */
  struct kcld_lease_change take_b = {.kind = KCLD_LEASE_TAKE,
                                     .worker = "worker-b"};
  assert_int_equal(write_ch(&f, &seen, &take_b, &r), 0);
  it = raw_get(&f, l.shard_id);
  assert_names(it, owned_extra);
  assert_s(it, "leaseOwner", "worker-b");
  assert_n(it, "leaseCounter", "2");
  assert_n(it, "ownerSwitchesSinceCheckpoint", "1");
  json_decref(it);
  assert_int_equal(seen.owner_switches, 1);

  /* Renew: only the counter. */
  struct kcld_lease_change renew_b = {.kind = KCLD_LEASE_RENEW,
                                      .worker = "worker-b"};
  assert_int_equal(write_ch(&f, &seen, &renew_b, &r), 0);
  it = raw_get(&f, l.shard_id);
  assert_names(it, owned_extra);
  assert_n(it, "leaseCounter", "3");
  assert_s(it, "leaseOwner", "worker-b");
  assert_s(it, "checkpoint", "TRIM_HORIZON");
  assert_n(it, "ownerSwitchesSinceCheckpoint", "1");
  json_decref(it);

  /* Checkpoint: sequence, sub-sequence, switches reset, counter+1; the
   * KCL's pending checkpoint is removed, as its own checkpoints do. */
  struct kcld_lease_change cp = {
    .kind = KCLD_LEASE_CHECKPOINT, .worker = "worker-b",
    .checkpoint = "49590338271490256608559692538361571095921575989136588898",
    .sub = 7};
  assert_int_equal(write_ch(&f, &seen, &cp, &r), 0);
  it = raw_get(&f, l.shard_id);
  static const char *const owned_java[] = {
    "leaseKey", "leaseOwner", "leaseCounter", "checkpoint",
    "checkpointSubSequenceNumber", "ownerSwitchesSinceCheckpoint",
    "parentShardId", "startingHashKey", "endingHashKey", "javaOnlyAttr",
    NULL};
  static const char *const unowned_java[] = {
    "leaseKey", "leaseCounter", "checkpoint", "checkpointSubSequenceNumber",
    "ownerSwitchesSinceCheckpoint", "parentShardId", "startingHashKey",
    "endingHashKey", "javaOnlyAttr", NULL};
  assert_names(it, owned_java);
  assert_s(it, "checkpoint", cp.checkpoint);
  assert_n(it, "checkpointSubSequenceNumber", "7");
  assert_n(it, "ownerSwitchesSinceCheckpoint", "0");
  assert_n(it, "leaseCounter", "4");
  assert_s(it, "leaseOwner", "worker-b");
  assert_s(it, "pendingCheckpoint", NULL);
  json_decref(it);

  /* Release: owner removed, counter+1, the rest untouched. */
  struct kcld_lease_change rel_b = {.kind = KCLD_LEASE_RELEASE,
                                    .worker = "worker-b"};
  assert_int_equal(write_ch(&f, &seen, &rel_b, &r), 0);
  it = raw_get(&f, l.shard_id);
  assert_names(it, unowned_java);
  assert_n(it, "leaseCounter", "5");
  assert_s(it, "checkpoint", cp.checkpoint);
  assert_n(it, "checkpointSubSequenceNumber", "7");
  json_decref(it);
  assert_null(seen.owner);

  /* Take again (unowned: no switch), then the shard ends. */
  assert_int_equal(write_ch(&f, &seen, &take_a, &r), 0);
  it = raw_get(&f, l.shard_id);
  assert_n(it, "ownerSwitchesSinceCheckpoint", "0");
  assert_n(it, "leaseCounter", "6");
  json_decref(it);
  const char *kids[] = {"shardId-000000000003", "shardId-000000000004",
                        "shardId-000000000003"};
  struct kcld_lease_change end = {.kind = KCLD_LEASE_END,
                                  .worker = "worker-a", .children = kids,
                                  .n_children = 3};
  assert_int_equal(write_ch(&f, &seen, &end, &r), 0);
  it = raw_get(&f, l.shard_id);
  static const char *const ended[] = {
    "leaseKey", "leaseCounter", "checkpoint", "checkpointSubSequenceNumber",
    "ownerSwitchesSinceCheckpoint", "parentShardId", "childShardIds",
    "startingHashKey", "endingHashKey", "javaOnlyAttr", NULL};
  assert_names(it, ended);
  assert_s(it, "checkpoint", "SHARD_END");
  assert_n(it, "checkpointSubSequenceNumber", "0");
  assert_n(it, "leaseCounter", "7");
  assert_ss(it, "childShardIds", kids, 2);
  assert_s(it, "javaOnlyAttr", "keep me");
  json_decref(it);
  assert_int_equal(seen.n_children, 2);
  assert_true(kcld_lease_is_finished(&seen));

  /* The model read back equals the one we kept. */
  {
    struct kcld_lease back;
    json_t *item = raw_get(&f, l.shard_id);
    assert_int_equal(kcld_lease_from_item(item, &back), 0);
    json_decref(item);
    assert_int_equal(back.counter, seen.counter);
    assert_null(back.owner);
    assert_string_equal(back.checkpoint, seen.checkpoint);
    assert_int_equal(back.n_children, 2);
    kcld_lease_clean_up(&back);
  }

  /* Delete: conditional on the counter. */
  struct kcld_lease stale;
  assert_int_equal(kcld_lease_copy(&stale, &seen), 0);
  stale.counter--;
  struct kcld_lease_change del = {.kind = KCLD_LEASE_DELETE};
  assert_int_equal(write_ch(&f, &stale, &del, &r), KCLD_ECONDITION);
  assert_true(r.has_lease);
  assert_int_equal(r.lease.counter, 7);
  res_reset(&r);
  kcld_lease_clean_up(&stale);
  assert_int_equal(write_ch(&f, &seen, &del, &r), 0);
  assert_null(raw_get(&f, l.shard_id));
  /* Deleting again: the re-read finds nothing, which is what we wanted. */
  assert_int_equal(write_ch(&f, &seen, &del, &r), 0);
  assert_int_equal(r.flag, 1);

  kcld_lease_clean_up(&seen);
  fx_close(&f);
}

static void test_stale_writes_fail(void **state)
{
  (void)state;
  struct fx f;
  fx_open(&f);
  int created;
  assert_int_equal(ensure(&f, &created), 0);
  struct kcld_lease l = {.shard_id = "shardId-000000000007",
                         .checkpoint = "TRIM_HORIZON"};
  assert_int_equal(create(&f, &l, &created), 0);
  struct kcld_lease seen;
  json_t *item = raw_get(&f, l.shard_id);
  assert_int_equal(kcld_lease_from_item(item, &seen), 0);
  json_decref(item);
  struct res r;
  struct kcld_lease_change take = {.kind = KCLD_LEASE_TAKE, .worker = "me"};
  assert_int_equal(write_ch(&f, &seen, &take, &r), 0);

  /* A competing writer takes it (counter 2, owner other). */
  raw_update(&f, l.shard_id, "SET #o = :o, #c = :c",
             json_pack("{s:s, s:s}", "#o", "leaseOwner", "#c", "leaseCounter"),
             json_pack("{s:{s:s}, s:{s:s}}", ":o", "S", "other", ":c", "N",
                       "2"));
  struct kcld_lease_change renew = {.kind = KCLD_LEASE_RENEW, .worker = "me"};
  assert_int_equal(write_ch(&f, &seen, &renew, &r), KCLD_ECONDITION);
  assert_int_equal(r.flag, 0);
  assert_true(r.has_lease);
  assert_string_equal(r.lease.owner, "other");
  assert_int_equal(r.lease.counter, 2);
  res_reset(&r);
  struct kcld_lease_change cp = {.kind = KCLD_LEASE_CHECKPOINT,
                                 .worker = "me", .checkpoint = "12345"};
  assert_int_equal(write_ch(&f, &seen, &cp, &r), KCLD_ECONDITION);
  res_reset(&r);
  struct kcld_lease_change rel = {.kind = KCLD_LEASE_RELEASE, .worker = "me"};
  assert_int_equal(write_ch(&f, &seen, &rel, &r), KCLD_ECONDITION);
  res_reset(&r);
  /* Same counter but another owner: still refused (owner is checked). */
  seen.counter = 2;
  assert_int_equal(write_ch(&f, &seen, &renew, &r), KCLD_ECONDITION);
  res_reset(&r);
  /* Nothing we did changed it. */
  item = raw_get(&f, l.shard_id);
  assert_s(item, "leaseOwner", "other");
  assert_n(item, "leaseCounter", "2");
  assert_s(item, "checkpoint", "TRIM_HORIZON");
  json_decref(item);
  /* An item that is gone. */
  struct kcld_lease ghost = {.shard_id = "shardId-999", .owner = "me",
                             .checkpoint = "TRIM_HORIZON", .counter = 3};
  assert_int_equal(write_ch(&f, &ghost, &renew, &r), KCLD_ECONDITION);
  assert_false(r.has_lease);
  res_reset(&r);
  kcld_lease_clean_up(&seen);
  fx_close(&f);
}

static void test_lost_answer_found_on_reread(void **state)
{
  (void)state;
  struct fx f;
  fx_open(&f);
  int created;
  assert_int_equal(ensure(&f, &created), 0);
  struct kcld_lease l = {.shard_id = "shardId-000000000009",
                         .checkpoint = "TRIM_HORIZON"};
  assert_int_equal(create(&f, &l, &created), 0);
  struct kcld_lease seen;
  json_t *item = raw_get(&f, l.shard_id);
  assert_int_equal(kcld_lease_from_item(item, &seen), 0);
  json_decref(item);
  struct res r;
  struct kcld_lease_change take = {.kind = KCLD_LEASE_TAKE, .worker = "me"};
  assert_int_equal(write_ch(&f, &seen, &take, &r), 0);

  /* Our renew landed but we never heard: the item has counter seen+1 and
   * our owner.  Renewing on the old counter fails its condition, and the
   * re-read shows it was ours. */
  raw_update(&f, l.shard_id, "SET #c = :c",
             json_pack("{s:s}", "#c", "leaseCounter"),
             json_pack("{s:{s:s}}", ":c", "N", "2"));
  struct kcld_lease_change renew = {.kind = KCLD_LEASE_RENEW, .worker = "me"};
  assert_int_equal(write_ch(&f, &seen, &renew, &r), 0);
  assert_int_equal(r.flag, 1);
  assert_true(r.has_lease);
  assert_int_equal(r.lease.counter, 2);
  res_reset(&r);

  /* Same for a checkpoint: only when the checkpoint is the one we wrote. */
  seen.counter = 2;
  raw_update(&f, l.shard_id, "SET #c = :c, #cp = :cp, #cs = :cs",
             json_pack("{s:s, s:s, s:s}", "#c", "leaseCounter", "#cp",
                       "checkpoint", "#cs", "checkpointSubSequenceNumber"),
             json_pack("{s:{s:s}, s:{s:s}, s:{s:s}}", ":c", "N", "3", ":cp",
                       "S", "777", ":cs", "N", "2"));
  struct kcld_lease_change cp = {.kind = KCLD_LEASE_CHECKPOINT,
                                 .worker = "me", .checkpoint = "777",
                                 .sub = 2};
  assert_int_equal(write_ch(&f, &seen, &cp, &r), 0);
  assert_int_equal(r.flag, 1);
  res_reset(&r);
  struct kcld_lease_change cp2 = {.kind = KCLD_LEASE_CHECKPOINT,
                                  .worker = "me", .checkpoint = "778"};
  assert_int_equal(write_ch(&f, &seen, &cp2, &r), KCLD_ECONDITION);
  res_reset(&r);
  /* Counter seen+1 but another owner: lost, not landed. */
  raw_update(&f, l.shard_id, "SET #o = :o",
             json_pack("{s:s}", "#o", "leaseOwner"),
             json_pack("{s:{s:s}}", ":o", "S", "thief"));
  assert_int_equal(write_ch(&f, &seen, &renew, &r), KCLD_ECONDITION);
  assert_string_equal(r.lease.owner, "thief");
  res_reset(&r);
  kcld_lease_clean_up(&seen);
  fx_close(&f);
}

static void on_scan(const struct kcld_svc_status *st,
                    struct kcld_lease *leases, size_t n, void *arg)
{
  struct res *r = arg;
  r->err = st->err;
  r->n = n;
  size_t sum = 0;
  for (size_t i = 0; i < n; i++)
    sum += leases[i].counter;
  r->flag = (int)sum;
  r->done = 1;
}

static void test_scan_skips_foreign_items(void **state)
{
  (void)state;
  struct fx f;
  fx_open(&f);
  int created;
  assert_int_equal(ensure(&f, &created), 0);
  for (int i = 0; i < 40; i++) {
    char id[32];
    snprintf(id, sizeof(id), "shardId-%012d", i);
    struct kcld_lease l = {.shard_id = id, .checkpoint = "LATEST",
                           .counter = (uint64_t)i};
    assert_int_equal(create(&f, &l, &created), 0);
    assert_int_equal(created, 1);
  }
  /* Not leases: no checkpoint; a counter that is not an integer. */
  raw_put(&f, json_pack("{s:{s:s}}", "leaseKey", "S", "not-a-lease"));
  raw_put(&f, json_pack("{s:{s:s}, s:{s:s}, s:{s:s}}", "leaseKey", "S",
                        "bad-counter", "checkpoint", "S", "LATEST",
                        "leaseCounter", "N", "1.5"));
  struct res r = {0};
  assert_int_equal(kcld_lease_table_scan(f.t, on_scan, &r), 0);
  wait_done(&f, &r);
  assert_int_equal(r.err, 0);
  assert_int_equal(r.n, 40);
  assert_int_equal(r.flag, 40 * 39 / 2);
  fx_close(&f);
}

/* ======== Tables as the Java KCL writes them ======== */

/* A KCL 2.x lease (DynamoDBLeaseSerializer.toDynamoRecord, then an
 * updateLease that stored a two-phase pending checkpoint): note the types,
 * pendingCheckpointState is B. */
static json_t *kcl2_item(const char *id)
{
  return json_pack(
    "{s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}, s:{s:[s]}, "
    "s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}}",
    "leaseKey", "S", id, "leaseOwner", "S", "kcl2-worker-7b6c",
    "leaseCounter", "N", "118", "ownerSwitchesSinceCheckpoint", "N", "3",
    "checkpoint", "S", "49590338271490256608559692538361571095921575989136588898",
    "checkpointSubSequenceNumber", "N", "0",
    "parentShardId", "SS", "shardId-000000000004",
    "pendingCheckpoint", "S",
    "49590338271490256608559692540779422735150834338548891746",
    "pendingCheckpointSubSequenceNumber", "N", "2",
    "pendingCheckpointState", "B", "YXBwIHN0YXRl",
    "startingHashKey", "S", "0",
    "endingHashKey", "S", "170141183460469231731687303715884105727");
}

/* A KCL 3.5 lease in the middle of a graceful handoff: leaseOwner is the
 * next owner, checkpointOwner the one that must checkpoint first; with its
 * measured throughput and the single-table entityType. */
static json_t *kcl3_item(const char *id)
{
  return json_pack(
    "{s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}, "
    "s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}}",
    "leaseKey", "S", id, "leaseOwner", "S", "kcl3-worker-b",
    "checkpointOwner", "S", "kcl3-worker-a", "leaseCounter", "N", "9",
    "ownerSwitchesSinceCheckpoint", "N", "0", "checkpoint", "S", "TRIM_HORIZON",
    "checkpointSubSequenceNumber", "N", "0", "throughputKBps", "N", "17.25",
    "startingHashKey", "S", "170141183460469231731687303715884105728",
    "endingHashKey", "S", "340282366920938463463374607431768211455",
    "entityType", "S", "LEASE");
}

static const char *const s_kcl2_attrs[] = {
  "leaseKey", "leaseOwner", "leaseCounter", "ownerSwitchesSinceCheckpoint",
  "checkpoint", "checkpointSubSequenceNumber", "parentShardId",
  "pendingCheckpoint", "pendingCheckpointSubSequenceNumber",
  "pendingCheckpointState", "startingHashKey", "endingHashKey", NULL};

static const char *const s_kcl3_attrs[] = {
  "leaseKey", "leaseOwner", "leaseCounter", "ownerSwitchesSinceCheckpoint",
  "checkpoint", "checkpointSubSequenceNumber", "throughputKBps",
  "startingHashKey", "endingHashKey", "entityType", NULL};

/* The same names without `drop` (a NULL-terminated list of names). */
static void assert_names_but(const json_t *item, const char *const *names,
                             const char *const *drop)
{
  const char *keep[32];
  size_t n = 0;
  for (size_t i = 0; names[i]; i++) {
    int dropped = 0;
    for (size_t j = 0; drop[j]; j++)
      dropped |= strcmp(names[i], drop[j]) == 0;
    if (!dropped)
      keep[n++] = names[i];
  }
  keep[n] = NULL;
  assert_names(item, keep);
}

struct leases {
  int done;
  int err;
  size_t n;
  struct kcld_lease l[4];
};

static void on_leases(const struct kcld_svc_status *st,
                      struct kcld_lease *leases, size_t n, void *arg)
{
  struct leases *r = arg;
  r->err = st->err;
  for (size_t i = 0; i < n && i < 4; i++)
    assert_int_equal(kcld_lease_copy(&r->l[i], &leases[i]), 0);
  r->n = n;
  r->done = 1;
}

static void leases_free(struct leases *r)
{
  for (size_t i = 0; i < r->n && i < 4; i++)
    kcld_lease_clean_up(&r->l[i]);
}

static void test_kcl_written_items(void **state)
{
  (void)state;
  struct fx f;
  fx_open(&f);
  int created;
  assert_int_equal(ensure(&f, &created), 0);
  const char *k2 = "shardId-000000000010", *k3 = "shardId-000000000011";
  raw_put(&f, kcl2_item(k2));
  raw_put(&f, kcl3_item(k3));
  /* KCL 3.5 single-table mode keeps other entities beside the leases. */
  raw_put(&f, json_pack("{s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}}",
                        "leaseKey", "S", "Leader", "entityType", "S",
                        "LEADER", "ownerName", "S", "kcl3-worker-a",
                        "leaseDuration", "S", "20000",
                        "recordVersionNumber", "S", "4b1f0c2e"));
  raw_put(&f, json_pack("{s:{s:s}, s:{s:s}, s:{s:s}}", "leaseKey", "S",
                        "ip-10-0-0-7:5e1d", "entityType", "S",
                        "WORKER_METRIC_STATS", "lastUpdateTime", "N",
                        "1700000000"));

  /* The scan finds the two leases, quietly passes the other entities. */
  struct leases sc = {0};
  assert_int_equal(kcld_lease_table_scan(f.t, on_leases, &sc), 0);
  assert_true(kcld_test_run_until(&f.loop, &sc.done, 10000));
  assert_int_equal(sc.err, 0);
  assert_int_equal(sc.n, 2);
  struct kcld_lease *l2 = strcmp(sc.l[0].shard_id, k2) == 0 ? &sc.l[0]
                                                            : &sc.l[1];
  struct kcld_lease *l3 = l2 == &sc.l[0] ? &sc.l[1] : &sc.l[0];
  assert_string_equal(l2->owner, "kcl2-worker-7b6c");
  assert_int_equal(l2->counter, 118);
  assert_int_equal(l2->n_parents, 1);
  assert_string_equal(l3->owner, "kcl3-worker-b");
  assert_string_equal(l3->checkpoint, "TRIM_HORIZON");

  /* Take both (their owners are gone): owner and counter, one owner
   * switch each, checkpointOwner removed; everything else as KCL left it,
   * the pending checkpoint included. */
  struct res r;
  struct kcld_lease_change take = {.kind = KCLD_LEASE_TAKE, .worker = "kcld"};
  assert_int_equal(write_ch(&f, l2, &take, &r), 0);
  assert_int_equal(write_ch(&f, l3, &take, &r), 0);
  json_t *it = raw_get(&f, k2);
  assert_names(it, s_kcl2_attrs);
  assert_s(it, "leaseOwner", "kcld");
  assert_n(it, "leaseCounter", "119");
  assert_n(it, "ownerSwitchesSinceCheckpoint", "4");
  assert_s(it, "pendingCheckpoint",
           "49590338271490256608559692540779422735150834338548891746");
  assert_string_equal(json_string_value(json_object_get(
                        kcld_dynamodb_attr(it, "pendingCheckpointState"),
                        "B")),
                      "YXBwIHN0YXRl");
  json_decref(it);
  it = raw_get(&f, k3);
  assert_names(it, s_kcl3_attrs); /* no checkpointOwner any more */
  assert_s(it, "checkpointOwner", NULL);
  assert_s(it, "leaseOwner", "kcld");
  assert_n(it, "leaseCounter", "10");
  assert_n(it, "ownerSwitchesSinceCheckpoint", "1");
  assert_n(it, "throughputKBps", "17.25");
  assert_s(it, "entityType", "LEASE");
  json_decref(it);

  /* Renew: the counter only. */
  struct kcld_lease_change renew = {.kind = KCLD_LEASE_RENEW,
                                    .worker = "kcld"};
  assert_int_equal(write_ch(&f, l2, &renew, &r), 0);
  it = raw_get(&f, k2);
  assert_names(it, s_kcl2_attrs);
  assert_n(it, "leaseCounter", "120");
  json_decref(it);

  /* Checkpoint: the pending checkpoint goes, as KCL's own checkpoints
   * remove it; KCL 3's attributes stay. */
  static const char *const pending[] = {
    "pendingCheckpoint", "pendingCheckpointSubSequenceNumber",
    "pendingCheckpointState", NULL};
  struct kcld_lease_change cp = {
    .kind = KCLD_LEASE_CHECKPOINT, .worker = "kcld",
    .checkpoint = "49590338271490256608559692540779422735150834338548891746",
    .sub = 2};
  assert_int_equal(write_ch(&f, l2, &cp, &r), 0);
  assert_int_equal(write_ch(&f, l3, &cp, &r), 0);
  it = raw_get(&f, k2);
  assert_names_but(it, s_kcl2_attrs, pending);
  assert_s(it, "checkpoint", cp.checkpoint);
  assert_n(it, "checkpointSubSequenceNumber", "2");
  assert_n(it, "ownerSwitchesSinceCheckpoint", "0");
  assert_n(it, "leaseCounter", "121");
  json_decref(it);
  it = raw_get(&f, k3);
  assert_names(it, s_kcl3_attrs);
  assert_n(it, "throughputKBps", "17.25");
  assert_n(it, "leaseCounter", "11");
  json_decref(it);

  /* Release: no owner; the rest stays for the next KCL worker. */
  static const char *const owner[] = {"leaseOwner", NULL};
  static const char *const owner_pending[] = {
    "leaseOwner", "pendingCheckpoint", "pendingCheckpointSubSequenceNumber",
    "pendingCheckpointState", NULL};
  struct kcld_lease_change rel = {.kind = KCLD_LEASE_RELEASE,
                                  .worker = "kcld"};
  assert_int_equal(write_ch(&f, l2, &rel, &r), 0);
  assert_int_equal(write_ch(&f, l3, &rel, &r), 0);
  it = raw_get(&f, k2);
  assert_names_but(it, s_kcl2_attrs, owner_pending);
  assert_n(it, "leaseCounter", "122");
  assert_s(it, "checkpoint", cp.checkpoint);
  json_decref(it);
  it = raw_get(&f, k3);
  assert_names_but(it, s_kcl3_attrs, owner);
  assert_s(it, "entityType", "LEASE");
  json_decref(it);
  leases_free(&sc);
  fx_close(&f);
}

static void test_multi_stream_table_refused(void **state)
{
  (void)state;
  struct fx f;
  fx_open(&f);
  int created;
  assert_int_equal(ensure(&f, &created), 0);
  struct kcld_lease l = {.shard_id = "shardId-000000000000",
                         .checkpoint = "LATEST"};
  assert_int_equal(create(&f, &l, &created), 0);
  /* As DynamoDBMultiStreamLeaseSerializer writes it. */
  raw_put(&f, json_pack(
                "{s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}, "
                "s:{s:s}, s:{s:s}}",
                "leaseKey", "S",
                "123456789012:orders:1700000000:shardId-000000000000",
                "leaseOwner", "S", "kcl-ms-worker", "leaseCounter", "N", "4",
                "ownerSwitchesSinceCheckpoint", "N", "0", "checkpoint", "S",
                "TRIM_HORIZON", "checkpointSubSequenceNumber", "N", "0",
                "streamName", "S", "123456789012:orders:1700000000",
                "shardId", "S", "shardId-000000000000"));
  struct leases sc = {0};
  assert_int_equal(kcld_lease_table_scan(f.t, on_leases, &sc), 0);
  assert_true(kcld_test_run_until(&f.loop, &sc.done, 10000));
  assert_int_equal(sc.err, KCLD_ECONFIG);
  assert_int_equal(sc.n, 0);
  fx_close(&f);
}

/* A KCL multi-stream lease item, as DynamoDBMultiStreamLeaseSerializer
 * writes it. */
static json_t *kcl_multi_item(const char *stream_id, const char *shard,
                              const char *owner, const char *checkpoint)
{
  char key[256];
  snprintf(key, sizeof(key), "%s:%s", stream_id, shard);
  return json_pack("{s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}, "
                   "s:{s:s}, s:{s:s}}",
                   "leaseKey", "S", key, "leaseOwner", "S", owner,
                   "leaseCounter", "N", "4", "ownerSwitchesSinceCheckpoint",
                   "N", "0", "checkpoint", "S", checkpoint,
                   "checkpointSubSequenceNumber", "N", "0", "streamName", "S",
                   stream_id, "shardId", "S", shard);
}

/* The same table through a multi-stream handle: the leases of two streams
 * are read with their stream and shard, every write keeps streamName and
 * shardId, a new lease is written in the KCL's format, and a single-stream
 * lease among them is refused. */
static void test_multi_stream_table(void **state)
{
  (void)state;
  struct fx f;
  fx_open(&f);
  kcld_lease_table_free(f.t);
  assert_int_equal(kcld_lease_table_new(f.db, f.name, 1, &f.t), 0);
  int created;
  assert_int_equal(ensure(&f, &created), 0);
  const char *orders = "123456789012:orders:1700000000";
  const char *clicks = "123456789012:clicks:1700000123";
  raw_put(&f, kcl_multi_item(orders, "shardId-000000000000", "kcl-w",
                             "49590338271490256608559692538361571095921575989136"
                             "588898"));
  raw_put(&f, kcl_multi_item(clicks, "shardId-000000000000", "kcl-w",
                             "TRIM_HORIZON"));
  struct kcld_lease nl = {0};
  nl.shard_id = strdup("shardId-000000000001");
  nl.checkpoint = strdup("TRIM_HORIZON");
  assert_int_equal(kcld_lease_set_stream(&nl, clicks), 0);
  assert_int_equal(create(&f, &nl, &created), 0);
  assert_int_equal(created, 1);
  kcld_lease_clean_up(&nl);

  struct leases sc = {0};
  assert_int_equal(kcld_lease_table_scan(f.t, on_leases, &sc), 0);
  assert_true(kcld_test_run_until(&f.loop, &sc.done, 10000));
  assert_int_equal(sc.err, 0);
  assert_int_equal(sc.n, 3);
  int seen_orders = 0, seen_clicks = 0;
  for (size_t i = 0; i < sc.n; i++) {
    assert_non_null(sc.l[i].stream_id);
    seen_orders += strcmp(sc.l[i].stream_id, orders) == 0;
    seen_clicks += strcmp(sc.l[i].stream_id, clicks) == 0;
  }
  assert_int_equal(seen_orders, 1);
  assert_int_equal(seen_clicks, 2);

  /* Take and checkpoint the orders lease: the stream attributes stay. */
  char okey[128];
  assert_int_equal(kcld_lease_key(okey, sizeof(okey), orders,
                                   "shardId-000000000000"), 0);
  struct kcld_lease *ol = NULL;
  for (size_t i = 0; i < sc.n; i++)
    if (strcmp(sc.l[i].shard_id, okey) == 0)
      ol = &sc.l[i];
  assert_non_null(ol);
  assert_string_equal(kcld_lease_shard(ol), "shardId-000000000000");
  struct res r;
  struct kcld_lease_change take = {.kind = KCLD_LEASE_TAKE, .worker = "kcld"};
  assert_int_equal(write_ch(&f, ol, &take, &r), 0);
  struct kcld_lease_change cp = {.kind = KCLD_LEASE_CHECKPOINT,
                                 .worker = "kcld",
                                 .checkpoint = "49590338271490256608559692538"
                                               "361571095921575989136588999"};
  assert_int_equal(write_ch(&f, ol, &cp, &r), 0);
  json_t *it = raw_get(&f, okey);
  assert_s(it, "streamName", orders);
  assert_s(it, "shardId", "shardId-000000000000");
  assert_s(it, "leaseOwner", "kcld");
  assert_s(it, "checkpoint", cp.checkpoint);
  assert_n(it, "leaseCounter", "6");
  json_decref(it);
  char ckey[128];
  assert_int_equal(kcld_lease_key(ckey, sizeof(ckey), clicks,
                                  "shardId-000000000001"), 0);
  it = raw_get(&f, ckey);
  static const char *const new_attrs[] = {
    "leaseKey", "leaseCounter", "checkpoint", "checkpointSubSequenceNumber",
    "ownerSwitchesSinceCheckpoint", "streamName", "shardId", NULL};
  assert_names(it, new_attrs);
  assert_s(it, "streamName", clicks);
  assert_s(it, "shardId", "shardId-000000000001");
  json_decref(it);
  leases_free(&sc);

  /* A single-stream lease in it: the table is not one format. */
  struct kcld_lease single = {.shard_id = "shardId-000000000007",
                              .checkpoint = "LATEST"};
  assert_int_equal(create(&f, &single, &created), 0);
  struct leases bad = {0};
  assert_int_equal(kcld_lease_table_scan(f.t, on_leases, &bad), 0);
  assert_true(kcld_test_run_until(&f.loop, &bad.done, 10000));
  assert_int_equal(bad.err, KCLD_ECONFIG);
  assert_int_equal(bad.n, 0);
  fx_close(&f);
}

static int setup(void **state)
{
  (void)state;
  if (kcld_http_global_init() != 0)
    return -1;
  return kcld_emu_start(&s_emu, "dynamodb");
}

static int teardown(void **state)
{
  (void)state;
  kcld_emu_stop(&s_emu);
  kcld_http_global_cleanup();
  return 0;
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_table_created_then_reused),
    cmocka_unit_test(test_existing_table_used_as_is),
    cmocka_unit_test(test_attributes_through_every_write),
    cmocka_unit_test(test_stale_writes_fail),
    cmocka_unit_test(test_lost_answer_found_on_reread),
    cmocka_unit_test(test_scan_skips_foreign_items),
    cmocka_unit_test(test_kcl_written_items),
    cmocka_unit_test(test_multi_stream_table_refused),
    cmocka_unit_test(test_multi_stream_table),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
