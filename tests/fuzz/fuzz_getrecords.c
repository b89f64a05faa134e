/* fuzz_getrecords.c — libFuzzer target for kcld_getrecords_parse().
 *
 * The input is a GetRecords response body, given without a terminating NUL
 * (the parser must not read past `len`).  Besides "no crash, no leak, no
 * sanitizer report", every successful parse is checked against the contract
 * in getrecords.h and record.h: each record's bytes are readable, its
 * sequence number is valid, its batch is the batch, and a Kinesis record
 * yields at least one user record.  A failed parse must return nothing and
 * say why in errbuf. */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "consume/getrecords.h"
#include "consume/record.h"
#include "err.h"
#include "fuzz.h"
#include "log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc;
  (void)argv;
  /* A fixed hash seed keeps runs reproducible; the log goes to /dev/null
   * so that its escaping of hostile strings is exercised too. */
  json_object_seed(1);
  FILE *null = fopen("/dev/null", "w");
  kcld_log_setup(KCLD_LOG_DEBUG, KCLD_LOG_JSON, null);
  return 0;
}

static void check_batch(struct kcld_record_batch *b)
{
  CHECK(b->count >= b->kinesis_count);
  CHECK(b->count == 0 || b->records != NULL);
  for (size_t i = 0; i < b->count; i++) {
    const struct kcld_record *r = &b->records[i];
    CHECK(r->data != NULL);
    touch(r->data, r->data_len);
    CHECK(r->partition_key != NULL);
    touch(r->partition_key, r->partition_key_len + 1);
    CHECK(r->partition_key[r->partition_key_len] == '\0');
    CHECK(kcld_record_seq_valid(r->sequence_number));
    if (r->explicit_hash_key)
      touch(r->explicit_hash_key, strlen(r->explicit_hash_key));
    CHECK(r->aggregated || r->explicit_hash_key == NULL);
    CHECK(r->aggregated || r->sub_sequence_number == 0);
    if (r->encryption_type)
      touch(r->encryption_type, strlen(r->encryption_type));
    CHECK(r->batch == b);
    CHECK(r->arrival_ms >= KCLD_RECORD_NO_ARRIVAL);
    /* The user records of one aggregate come together, numbered 0, 1, ... */
    if (r->sub_sequence_number > 0) {
      CHECK(i > 0);
      const struct kcld_record *p = &b->records[i - 1];
      CHECK(p->aggregated && r->aggregated);
      CHECK(p->sub_sequence_number + 1 == r->sub_sequence_number);
      CHECK(strcmp(p->sequence_number, r->sequence_number) == 0);
    }
  }
  if (b->next_shard_iterator)
    touch(b->next_shard_iterator, strlen(b->next_shard_iterator));
  CHECK(b->millis_behind_latest >= -1);
  for (size_t i = 0; i < b->child_shard_count; i++) {
    const struct kcld_child_shard *c = &b->child_shards[i];
    touch(c->shard_id, strlen(c->shard_id));
    for (size_t k = 0; k < c->parent_count; k++)
      touch(c->parent_shards[k], strlen(c->parent_shards[k]));
    touch(c->starting_hash_key, strlen(c->starting_hash_key));
    touch(c->ending_hash_key, strlen(c->ending_hash_key));
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct kcld_record_batch *b = (struct kcld_record_batch *)1;
  char errbuf[256];

  errbuf[0] = '\0';
  int rc = kcld_getrecords_parse((const char *)data, size, "shardId-fuzz",
                                 &b, errbuf, sizeof(errbuf));
  if (rc == 0) {
    CHECK(b != NULL);
    check_batch(b);
    /* A second holder, released in the other order. */
    CHECK(kcld_record_batch_acquire(b) == b);
    kcld_record_batch_release(b);
    kcld_record_batch_release(b);
    return 0;
  }
  CHECK(rc == KCLD_EPARSE || rc == KCLD_ENOMEM);
  CHECK(b == NULL);
  CHECK(errbuf[0] != '\0');
  CHECK(memchr(errbuf, '\0', sizeof(errbuf)) != NULL);
  return 0;
}
