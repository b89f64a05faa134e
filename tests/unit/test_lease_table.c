/* test_lease_table.c — the lease item model and the conditional write
 * expressions: parsing a KCL item (and refusing what is not a lease), the
 * item for a new lease, which items are leases (KCL 3.5 entities of another
 * type are not; multi-stream leases are told apart), multi-stream items
 * (key, streamName and shardId, read and written as the KCL's
 * DynamoDBMultiStreamLeaseSerializer does), the exact
 * update/condition expressions with exactly
 * the names and values they use, applying a write to the model, and telling
 * a write that landed from one that lost. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "err.h"
#include "base/seq.h"
#include "lease/table.h"

static json_t *load(const char *text)
{
  json_error_t e;
  json_t *j = json_loads(text, 0, &e);
  if (!j)
    fail_msg("bad JSON in test: %s", e.text);
  return j;
}

static const char *s_kcl_item =
  "{\"leaseKey\":{\"S\":\"shardId-000000000004\"},"
  "\"leaseOwner\":{\"S\":\"stale-worker\"},"
  "\"leaseCounter\":{\"N\":\"1234\"},"
  "\"checkpoint\":{\"S\":\"49590338271490256608559692538361571095921575989136"
  "588898\"},"
  "\"checkpointSubSequenceNumber\":{\"N\":\"3\"},"
  "\"ownerSwitchesSinceCheckpoint\":{\"N\":\"2\"},"
  "\"parentShardId\":{\"SS\":[\"shardId-000000000001\","
  "\"shardId-000000000002\"]},"
  "\"childShardIds\":{\"SS\":[\"shardId-000000000007\"]},"
  "\"startingHashKey\":{\"S\":\"0\"},"
  "\"endingHashKey\":{\"S\":\"170141183460469231731687303715884105727\"},"
  "\"pendingCheckpoint\":{\"S\":\"123\"},"
  "\"throughputKBps\":{\"N\":\"0.5\"}}";

static void test_parse_kcl_item(void **state)
{
  (void)state;
  json_t *j = load(s_kcl_item);
  struct kcld_lease l;
  assert_int_equal(kcld_lease_from_item(j, &l), 0);
  assert_string_equal(l.shard_id, "shardId-000000000004");
  assert_string_equal(l.owner, "stale-worker");
  assert_int_equal(l.counter, 1234);
  assert_string_equal(l.checkpoint, "4959033827149025660855969253836157109592"
                                    "1575989136588898");
  assert_int_equal(l.checkpoint_sub, 3);
  assert_int_equal(l.owner_switches, 2);
  assert_int_equal(l.n_parents, 2);
  assert_string_equal(l.parents[1], "shardId-000000000002");
  assert_int_equal(l.n_children, 1);
  assert_string_equal(l.starting_hash_key, "0");
  assert_true(kcld_lease_has_parent(&l, "shardId-000000000001"));
  assert_false(kcld_lease_has_parent(&l, "shardId-000000000003"));
  assert_false(kcld_lease_is_finished(&l));
  struct kcld_lease copy;
  assert_int_equal(kcld_lease_copy(&copy, &l), 0);
  assert_string_equal(copy.parents[0], l.parents[0]);
  assert_ptr_not_equal(copy.parents[0], l.parents[0]);
  kcld_lease_clean_up(&copy);
  kcld_lease_clean_up(&l);
  assert_null(l.shard_id);
  json_decref(j);
}

static void test_parse_minimal_and_bad(void **state)
{
  (void)state;
  struct kcld_lease l;
  json_t *j = load("{\"leaseKey\":{\"S\":\"s\"},\"checkpoint\":"
                   "{\"S\":\"LATEST\"}}");
  assert_int_equal(kcld_lease_from_item(j, &l), 0);
  assert_null(l.owner);
  assert_int_equal(l.counter, 0);
  assert_int_equal(l.n_parents, 0);
  kcld_lease_clean_up(&l);
  json_decref(j);
  static const char *const bad[] = {
    "{\"checkpoint\":{\"S\":\"LATEST\"}}",
    "{\"leaseKey\":{\"S\":\"s\"}}",
    "{\"leaseKey\":{\"S\":\"\"},\"checkpoint\":{\"S\":\"LATEST\"}}",
    "{\"leaseKey\":{\"N\":\"1\"},\"checkpoint\":{\"S\":\"LATEST\"}}",
    "{\"leaseKey\":{\"S\":\"s\"},\"checkpoint\":{\"S\":\"LATEST\"},"
    "\"leaseCounter\":{\"N\":\"-1\"}}",
    "{\"leaseKey\":{\"S\":\"s\"},\"checkpoint\":{\"S\":\"LATEST\"},"
    "\"leaseCounter\":{\"S\":\"1\"}}",
    "{\"leaseKey\":{\"S\":\"s\"},\"checkpoint\":{\"S\":\"LATEST\"},"
    "\"parentShardId\":{\"S\":\"p\"}}",
    "{\"leaseKey\":{\"S\":\"s\"},\"checkpoint\":{\"S\":\"LATEST\"},"
    "\"leaseOwner\":{\"N\":\"3\"}}",
    NULL};
  for (int i = 0; bad[i]; i++) {
    j = load(bad[i]);
    assert_int_equal(kcld_lease_from_item(j, &l), KCLD_EPARSE);
    assert_null(l.shard_id);
    json_decref(j);
  }
  assert_int_equal(kcld_lease_from_item(NULL, &l), KCLD_EPARSE);
}

static void test_item_for_new_lease(void **state)
{
  (void)state;
  char *par[] = {"p1"};
  struct kcld_lease l = {.shard_id = "s1", .checkpoint = "TRIM_HORIZON",
                         .parents = par, .n_parents = 1,
                         .starting_hash_key = "10", .ending_hash_key = "20"};
  json_t *it = kcld_lease_to_item(&l);
  json_t *want = load(
    "{\"leaseKey\":{\"S\":\"s1\"},\"leaseCounter\":{\"N\":\"0\"},"
    "\"checkpoint\":{\"S\":\"TRIM_HORIZON\"},"
    "\"checkpointSubSequenceNumber\":{\"N\":\"0\"},"
    "\"ownerSwitchesSinceCheckpoint\":{\"N\":\"0\"},"
    "\"parentShardId\":{\"SS\":[\"p1\"]},\"startingHashKey\":{\"S\":\"10\"},"
    "\"endingHashKey\":{\"S\":\"20\"}}");
  assert_true(json_equal(it, want));
  json_decref(it);
  json_decref(want);
  /* Round trip. */
  it = load(s_kcl_item);
  struct kcld_lease back;
  assert_int_equal(kcld_lease_from_item(it, &back), 0);
  json_t *again = kcld_lease_to_item(&back);
  json_object_del(it, "pendingCheckpoint");
  json_object_del(it, "throughputKBps");
  assert_true(json_equal(it, again));
  json_decref(again);
  json_decref(it);
  kcld_lease_clean_up(&back);
  struct kcld_lease none = {.shard_id = "x"};
  assert_null(kcld_lease_to_item(&none));
}

/* Checks one built write: expressions and the exact names and values. */
static void check_update(const struct kcld_lease *seen,
                         const struct kcld_lease_change *ch,
                         const char *update, const char *cond,
                         const char *names, const char *values)
{
  struct kcld_lease_update u;
  assert_int_equal(kcld_lease_update_build(seen, ch, &u), 0);
  if (update)
    assert_string_equal(u.update, update);
  else
    assert_null(u.update);
  assert_string_equal(u.condition, cond);
  json_t *n = load(names), *v = load(values);
  json_t *key = load("{\"leaseKey\":{\"S\":\"shardId-1\"}}");
  if (!json_equal(u.names, n)) {
    char *got = json_dumps(u.names, JSON_SORT_KEYS);
    fail_msg("names: %s", got);
  }
  if (!json_equal(u.values, v)) {
    char *got = json_dumps(u.values, JSON_SORT_KEYS);
    fail_msg("values: %s", got);
  }
  assert_true(json_equal(u.key, key));
  json_decref(n);
  json_decref(v);
  json_decref(key);
  kcld_lease_update_clean_up(&u);
}

/* The KCL's two-phase checkpoint attributes, REMOVEd by every checkpoint
 * and by the shard end. */
#define PENDING_NAMES                                                        \
  "\"#p\":\"pendingCheckpoint\","                                             \
  "\"#ps\":\"pendingCheckpointSubSequenceNumber\","                           \
  "\"#pst\":\"pendingCheckpointState\""

static void test_expressions(void **state)
{
  (void)state;
  struct kcld_lease seen = {.shard_id = "shardId-1", .owner = "me",
                            .counter = 41, .checkpoint = "TRIM_HORIZON"};
  struct kcld_lease_change ch = {.kind = KCLD_LEASE_RENEW, .worker = "me"};
  check_update(&seen, &ch, "SET #c = :n", "#c = :c AND #o = :me",
               "{\"#c\":\"leaseCounter\",\"#o\":\"leaseOwner\"}",
               "{\":c\":{\"N\":\"41\"},\":n\":{\"N\":\"42\"},"
               "\":me\":{\"S\":\"me\"}}");

  /* Take from another owner: switch counted, old owner in the condition. */
  seen.owner = "other";
  ch.kind = KCLD_LEASE_TAKE;
  check_update(&seen, &ch, "SET #o = :me, #c = :n REMOVE #co ADD #s :one",
               "#c = :c AND #o = :old",
               "{\"#c\":\"leaseCounter\",\"#o\":\"leaseOwner\","
               "\"#co\":\"checkpointOwner\","
               "\"#s\":\"ownerSwitchesSinceCheckpoint\"}",
               "{\":c\":{\"N\":\"41\"},\":n\":{\"N\":\"42\"},"
               "\":me\":{\"S\":\"me\"},\":old\":{\"S\":\"other\"},"
               "\":one\":{\"N\":\"1\"}}");
  /* Take unowned. */
  seen.owner = NULL;
  check_update(&seen, &ch, "SET #o = :me, #c = :n REMOVE #co",
               "#c = :c AND attribute_not_exists(#o)",
               "{\"#c\":\"leaseCounter\",\"#o\":\"leaseOwner\","
               "\"#co\":\"checkpointOwner\"}",
               "{\":c\":{\"N\":\"41\"},\":n\":{\"N\":\"42\"},"
               "\":me\":{\"S\":\"me\"}}");
  /* Take back our own (a previous run): no switch. */
  seen.owner = "me";
  check_update(&seen, &ch, "SET #o = :me, #c = :n REMOVE #co",
               "#c = :c AND #o = :me",
               "{\"#c\":\"leaseCounter\",\"#o\":\"leaseOwner\","
               "\"#co\":\"checkpointOwner\"}",
               "{\":c\":{\"N\":\"41\"},\":n\":{\"N\":\"42\"},"
               "\":me\":{\"S\":\"me\"}}");

  ch.kind = KCLD_LEASE_RELEASE;
  check_update(&seen, &ch, "SET #c = :n REMOVE #o, #co",
               "#c = :c AND #o = :me",
               "{\"#c\":\"leaseCounter\",\"#o\":\"leaseOwner\","
               "\"#co\":\"checkpointOwner\"}",
               "{\":c\":{\"N\":\"41\"},\":n\":{\"N\":\"42\"},"
               "\":me\":{\"S\":\"me\"}}");

  ch.kind = KCLD_LEASE_CHECKPOINT;
  ch.checkpoint = "123456789012345678901234567890";
  ch.sub = 9;
  check_update(&seen, &ch,
               "SET #cp = :cp, #cs = :cs, #s = :zero, #c = :n "
               "REMOVE #p, #ps, #pst",
               "#c = :c AND #o = :me",
               "{\"#c\":\"leaseCounter\",\"#o\":\"leaseOwner\","
               "\"#cp\":\"checkpoint\","
               "\"#cs\":\"checkpointSubSequenceNumber\","
               "\"#s\":\"ownerSwitchesSinceCheckpoint\"," PENDING_NAMES "}",
               "{\":c\":{\"N\":\"41\"},\":n\":{\"N\":\"42\"},"
               "\":me\":{\"S\":\"me\"},"
               "\":cp\":{\"S\":\"123456789012345678901234567890\"},"
               "\":cs\":{\"N\":\"9\"},\":zero\":{\"N\":\"0\"}}");

  const char *kids[] = {"k1", "k2", "k1", ""};
  struct kcld_lease_change end = {.kind = KCLD_LEASE_END, .worker = "me",
                                  .children = kids, .n_children = 4};
  check_update(&seen, &end,
               "SET #cp = :cp, #cs = :zero, #s = :zero, #c = :n "
               "REMOVE #o, #p, #ps, #pst ADD #ch :ch",
               "#c = :c AND #o = :me",
               "{\"#c\":\"leaseCounter\",\"#o\":\"leaseOwner\","
               "\"#cp\":\"checkpoint\","
               "\"#cs\":\"checkpointSubSequenceNumber\","
               "\"#s\":\"ownerSwitchesSinceCheckpoint\"," PENDING_NAMES ","
               "\"#ch\":\"childShardIds\"}",
               "{\":c\":{\"N\":\"41\"},\":n\":{\"N\":\"42\"},"
               "\":me\":{\"S\":\"me\"},\":cp\":{\"S\":\"SHARD_END\"},"
               "\":zero\":{\"N\":\"0\"},\":ch\":{\"SS\":[\"k1\",\"k2\"]}}");
  end.n_children = 0;
  check_update(&seen, &end,
               "SET #cp = :cp, #cs = :zero, #s = :zero, #c = :n "
               "REMOVE #o, #p, #ps, #pst",
               "#c = :c AND #o = :me",
               "{\"#c\":\"leaseCounter\",\"#o\":\"leaseOwner\","
               "\"#cp\":\"checkpoint\","
               "\"#cs\":\"checkpointSubSequenceNumber\","
               "\"#s\":\"ownerSwitchesSinceCheckpoint\"," PENDING_NAMES "}",
               "{\":c\":{\"N\":\"41\"},\":n\":{\"N\":\"42\"},"
               "\":me\":{\"S\":\"me\"},\":cp\":{\"S\":\"SHARD_END\"},"
               "\":zero\":{\"N\":\"0\"}}");

  struct kcld_lease_change del = {.kind = KCLD_LEASE_DELETE};
  check_update(&seen, &del, NULL, "#c = :c AND #cp = :end",
               "{\"#c\":\"leaseCounter\",\"#cp\":\"checkpoint\"}",
               "{\":c\":{\"N\":\"41\"},\":end\":{\"S\":\"SHARD_END\"}}");

  /* Refused. */
  struct kcld_lease_update u;
  struct kcld_lease_change bad = {.kind = KCLD_LEASE_RENEW};
  assert_int_equal(kcld_lease_update_build(&seen, &bad, &u), KCLD_EINVAL);
  bad = (struct kcld_lease_change){.kind = KCLD_LEASE_CHECKPOINT,
                                   .worker = "me", .checkpoint = ""};
  assert_int_equal(kcld_lease_update_build(&seen, &bad, &u), KCLD_EINVAL);
  struct kcld_lease nokey = {.counter = 1};
  assert_int_equal(kcld_lease_update_build(&nokey, &ch, &u), KCLD_EINVAL);
}

static void test_apply_and_landed(void **state)
{
  (void)state;
  struct kcld_lease l = {0};
  l.shard_id = strdup("s");
  l.checkpoint = strdup("TRIM_HORIZON");
  l.owner = strdup("old");
  l.counter = 5;
  l.owner_switches = 1;
  struct kcld_lease before;
  assert_int_equal(kcld_lease_copy(&before, &l), 0);

  struct kcld_lease_change take = {.kind = KCLD_LEASE_TAKE, .worker = "me"};
  assert_int_equal(kcld_lease_apply(&l, &take), 0);
  assert_string_equal(l.owner, "me");
  assert_int_equal(l.counter, 6);
  assert_int_equal(l.owner_switches, 2);
  assert_true(kcld_lease_landed(&before, &take, &l));
  struct kcld_lease_change take2 = {.kind = KCLD_LEASE_TAKE,
                                    .worker = "other"};
  assert_false(kcld_lease_landed(&before, &take2, &l));
  assert_false(kcld_lease_landed(&before, &take, NULL));

  kcld_lease_clean_up(&before);
  assert_int_equal(kcld_lease_copy(&before, &l), 0);
  struct kcld_lease_change cp = {.kind = KCLD_LEASE_CHECKPOINT,
                                 .worker = "me", .checkpoint = "99",
                                 .sub = 4};
  assert_int_equal(kcld_lease_apply(&l, &cp), 0);
  assert_string_equal(l.checkpoint, "99");
  assert_int_equal(l.checkpoint_sub, 4);
  assert_int_equal(l.owner_switches, 0);
  assert_int_equal(l.counter, 7);
  assert_true(kcld_lease_landed(&before, &cp, &l));
  cp.sub = 5;
  assert_false(kcld_lease_landed(&before, &cp, &l)); /* another position */
  struct kcld_lease_change renew = {.kind = KCLD_LEASE_RENEW, .worker = "me"};
  assert_true(kcld_lease_landed(&before, &renew, &l)); /* counter + owner */
  before.counter = 7;
  assert_false(kcld_lease_landed(&before, &renew, &l)); /* counter != 8 */

  kcld_lease_clean_up(&before);
  assert_int_equal(kcld_lease_copy(&before, &l), 0);
  const char *kids[] = {"c1", "c2", "c1"};
  struct kcld_lease_change end = {.kind = KCLD_LEASE_END, .worker = "me",
                                  .children = kids, .n_children = 3};
  assert_int_equal(kcld_lease_apply(&l, &end), 0);
  assert_null(l.owner);
  assert_string_equal(l.checkpoint, "SHARD_END");
  assert_int_equal(l.checkpoint_sub, 0);
  assert_int_equal(l.n_children, 2);
  assert_true(kcld_lease_is_finished(&l));
  assert_true(kcld_lease_landed(&before, &end, &l));
  struct kcld_lease_change rel = {.kind = KCLD_LEASE_RELEASE,
                                  .worker = "me"};
  assert_true(kcld_lease_landed(&before, &rel, &l)); /* no owner, +1 */
  struct kcld_lease_change del = {.kind = KCLD_LEASE_DELETE};
  assert_true(kcld_lease_landed(&before, &del, NULL));
  assert_false(kcld_lease_landed(&before, &del, &l));

  assert_true(kcld_lease_checkpoint_is_initial("LATEST"));
  assert_true(kcld_lease_checkpoint_is_initial("AT_TIMESTAMP"));
  assert_true(kcld_lease_checkpoint_is_initial("TRIM_HORIZON"));
  assert_false(kcld_lease_checkpoint_is_initial("SHARD_END"));
  assert_false(kcld_lease_checkpoint_is_initial("123"));
  assert_false(kcld_lease_checkpoint_is_initial(NULL));
  assert_true(kcld_lease_checkpoint_valid("AT_TIMESTAMP"));
  assert_true(kcld_lease_checkpoint_valid("SHARD_END"));
  assert_true(kcld_lease_checkpoint_valid("0"));
  assert_true(kcld_lease_checkpoint_valid(
    "49590338271490256608559692538361571095921575989136588898"));
  assert_false(kcld_lease_checkpoint_valid("not-a-number"));
  assert_false(kcld_lease_checkpoint_valid("12a"));
  assert_false(kcld_lease_checkpoint_valid("-1"));
  assert_false(kcld_lease_checkpoint_valid(""));
  assert_false(kcld_lease_checkpoint_valid("shard_end"));
  assert_false(kcld_lease_checkpoint_valid(NULL));
  {
    char big[KCLD_SEQ_MAX + 2];
    memset(big, '7', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_false(kcld_lease_checkpoint_valid(big)); /* one digit too many */
    big[sizeof(big) - 2] = '\0';
    assert_true(kcld_lease_checkpoint_valid(big));
  }
  kcld_lease_clean_up(&before);
  kcld_lease_clean_up(&l);
}

static void test_item_kinds(void **state)
{
  (void)state;
  static const struct {
    const char *item;
    enum kcld_lease_item_kind kind;
  } cases[] = {
    /* KCL 2.x: no entityType. */
    {"{\"leaseKey\":{\"S\":\"shardId-000000000001\"},"
     "\"checkpoint\":{\"S\":\"TRIM_HORIZON\"}}", KCLD_LEASE_ITEM_LEASE},
    /* KCL 3.5 single-table mode. */
    {"{\"leaseKey\":{\"S\":\"shardId-000000000001\"},"
     "\"checkpoint\":{\"S\":\"LATEST\"},\"entityType\":{\"S\":\"LEASE\"}}",
     KCLD_LEASE_ITEM_LEASE},
    {"{\"leaseKey\":{\"S\":\"leader\"},\"entityType\":{\"S\":\"LEADER\"}}",
     KCLD_LEASE_ITEM_OTHER},
    {"{\"leaseKey\":{\"S\":\"host:1234\"},"
     "\"entityType\":{\"S\":\"WORKER_METRIC_STATS\"}}",
     KCLD_LEASE_ITEM_OTHER},
    /* Multi-stream: the key, or the streamName attribute, tells. */
    {"{\"leaseKey\":{\"S\":\"123456789012:orders:1700000000:"
     "shardId-000000000001\"},\"checkpoint\":{\"S\":\"TRIM_HORIZON\"},"
     "\"streamName\":{\"S\":\"123456789012:orders:1700000000\"},"
     "\"shardId\":{\"S\":\"shardId-000000000001\"}}",
     KCLD_LEASE_ITEM_MULTI_STREAM},
    {"{\"leaseKey\":{\"S\":\"123456789012:orders:1700000000:"
     "shardId-000000000002\"},\"checkpoint\":{\"S\":\"LATEST\"},"
     "\"entityType\":{\"S\":\"LEASE\"}}", KCLD_LEASE_ITEM_MULTI_STREAM},
    {"{\"leaseKey\":{\"S\":\"shardId-000000000003\"},"
     "\"checkpoint\":{\"S\":\"LATEST\"},\"streamName\":{\"S\":\"a:b:1\"}}",
     KCLD_LEASE_ITEM_MULTI_STREAM},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    json_t *j = load(cases[i].item);
    assert_int_equal(kcld_lease_item_kind(j), cases[i].kind);
    json_decref(j);
  }
}

/* A multi-stream lease, as the KCL's DynamoDBMultiStreamLeaseSerializer
 * writes it: the base attributes plus streamName (the whole stream
 * identifier) and shardId, both S. */
static const char *s_kcl_multi_item =
  "{\"leaseKey\":{\"S\":\"123456789012:orders:1700000000:"
  "shardId-000000000004\"},"
  "\"leaseOwner\":{\"S\":\"kcl-worker\"},"
  "\"leaseCounter\":{\"N\":\"17\"},"
  "\"checkpoint\":{\"S\":\"49590338271490256608559692538361571095921575989136"
  "588898\"},"
  "\"checkpointSubSequenceNumber\":{\"N\":\"0\"},"
  "\"ownerSwitchesSinceCheckpoint\":{\"N\":\"0\"},"
  "\"parentShardId\":{\"SS\":[\"shardId-000000000001\"]},"
  "\"startingHashKey\":{\"S\":\"0\"},"
  "\"endingHashKey\":{\"S\":\"170141183460469231731687303715884105727\"},"
  "\"streamName\":{\"S\":\"123456789012:orders:1700000000\"},"
  "\"shardId\":{\"S\":\"shardId-000000000004\"}}";

static void test_multi_stream_items(void **state)
{
  (void)state;
  json_t *j = load(s_kcl_multi_item);
  struct kcld_lease l;
  assert_int_equal(kcld_lease_item_kind(j), KCLD_LEASE_ITEM_MULTI_STREAM);
  assert_int_equal(kcld_lease_from_item(j, &l), 0);
  assert_string_equal(l.shard_id,
                      "123456789012:orders:1700000000:shardId-000000000004");
  assert_string_equal(l.stream_id, "123456789012:orders:1700000000");
  assert_string_equal(l.stream_shard, "shardId-000000000004");
  assert_string_equal(kcld_lease_shard(&l), "shardId-000000000004");
  assert_true(kcld_lease_has_parent(&l, "shardId-000000000001"));
  /* Written back attribute for attribute, types included. */
  json_t *again = kcld_lease_to_item(&l);
  assert_true(json_equal(j, again));
  json_decref(again);
  struct kcld_lease copy;
  assert_int_equal(kcld_lease_copy(&copy, &l), 0);
  assert_string_equal(copy.stream_id, l.stream_id);
  assert_string_equal(kcld_lease_shard(&copy), "shardId-000000000004");
  kcld_lease_clean_up(&copy);
  kcld_lease_clean_up(&l);
  json_decref(j);

  /* A new lease of a stream: shard id in, the KCL's key out. */
  struct kcld_lease n = {0};
  n.shard_id = strdup("shardId-000000000009");
  n.checkpoint = strdup("TRIM_HORIZON");
  assert_int_equal(kcld_lease_set_stream(&n, "1:a:0"), KCLD_EINVAL);
  assert_int_equal(kcld_lease_set_stream(&n, "123456789012:clicks:42"), 0);
  assert_string_equal(n.shard_id, "123456789012:clicks:42:shardId-000000000009");
  assert_string_equal(kcld_lease_shard(&n), "shardId-000000000009");
  j = kcld_lease_to_item(&n);
  json_t *want = load(
    "{\"leaseKey\":{\"S\":\"123456789012:clicks:42:shardId-000000000009\"},"
    "\"leaseCounter\":{\"N\":\"0\"},"
    "\"checkpoint\":{\"S\":\"TRIM_HORIZON\"},"
    "\"checkpointSubSequenceNumber\":{\"N\":\"0\"},"
    "\"ownerSwitchesSinceCheckpoint\":{\"N\":\"0\"},"
    "\"streamName\":{\"S\":\"123456789012:clicks:42\"},"
    "\"shardId\":{\"S\":\"shardId-000000000009\"}}");
  assert_true(json_equal(j, want));
  json_decref(j);
  json_decref(want);
  kcld_lease_clean_up(&n);

  /* Identifiers and keys. */
  char key[64];
  assert_true(kcld_lease_stream_id_valid("123456789012:orders:1700000000"));
  assert_false(kcld_lease_stream_id_valid("123456789012:orders"));
  assert_false(kcld_lease_stream_id_valid("acct:orders:17"));
  assert_false(kcld_lease_stream_id_valid("1::17"));
  assert_false(kcld_lease_stream_id_valid("1:a:b:17"));
  assert_false(kcld_lease_stream_id_valid("1:a:00"));
  assert_false(kcld_lease_stream_id_valid("1:a:17x"));
  assert_int_equal(kcld_lease_key(key, sizeof(key), "1:a:17", "s"), 0);
  assert_string_equal(key, "1:a:17:s");
  assert_int_equal(kcld_lease_key(key, sizeof(key), "1:a:17", ""),
                   KCLD_EINVAL);
  assert_int_equal(kcld_lease_key(key, sizeof(key), "1:a:17", "s:t"),
                   KCLD_EINVAL);
  assert_int_equal(kcld_lease_key(key, 8, "1:a:17", "s"), KCLD_EINVAL);
  /* ...and apart again, for labels. */
  char name[32];
  assert_string_equal(kcld_lease_key_parts("123456789012:orders:17:"
                                           "shardId-000000000004",
                                           name, sizeof(name)),
                      "shardId-000000000004");
  assert_string_equal(name, "orders");
  assert_string_equal(kcld_lease_key_parts("shardId-000000000004", name,
                                           sizeof(name)),
                      "shardId-000000000004");
  assert_string_equal(name, "");
  assert_string_equal(kcld_lease_key_parts("a:b:c", name, sizeof(name)),
                      "a:b:c");
  assert_string_equal(name, "");

  /* Items that claim to be multi-stream leases but do not add up. */
  static const char *const bad[] = {
    /* shardId missing */
    "{\"leaseKey\":{\"S\":\"1:a:17:s\"},\"checkpoint\":{\"S\":\"LATEST\"},"
    "\"streamName\":{\"S\":\"1:a:17\"}}",
    /* the key is not streamName:shardId */
    "{\"leaseKey\":{\"S\":\"1:a:17:s\"},\"checkpoint\":{\"S\":\"LATEST\"},"
    "\"streamName\":{\"S\":\"1:a:17\"},\"shardId\":{\"S\":\"t\"}}",
    /* a wrong type */
    "{\"leaseKey\":{\"S\":\"1:a:17:s\"},\"checkpoint\":{\"S\":\"LATEST\"},"
    "\"streamName\":{\"SS\":[\"1:a:17\"]},\"shardId\":{\"S\":\"s\"}}",
    /* a colon key without the attributes */
    "{\"leaseKey\":{\"S\":\"1:a:17:s\"},\"checkpoint\":{\"S\":\"LATEST\"}}",
    /* not an identifier */
    "{\"leaseKey\":{\"S\":\"orders:s\"},\"checkpoint\":{\"S\":\"LATEST\"},"
    "\"streamName\":{\"S\":\"orders\"},\"shardId\":{\"S\":\"s\"}}",
    NULL};
  for (int i = 0; bad[i]; i++) {
    j = load(bad[i]);
    assert_int_equal(kcld_lease_item_kind(j), KCLD_LEASE_ITEM_MULTI_STREAM);
    assert_int_equal(kcld_lease_from_item(j, &l), KCLD_EPARSE);
    assert_null(l.shard_id);
    assert_null(l.stream_id);
    json_decref(j);
  }
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_parse_kcl_item),
    cmocka_unit_test(test_parse_minimal_and_bad),
    cmocka_unit_test(test_item_for_new_lease),
    cmocka_unit_test(test_expressions),
    cmocka_unit_test(test_apply_and_landed),
    cmocka_unit_test(test_item_kinds),
    cmocka_unit_test(test_multi_stream_items),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
