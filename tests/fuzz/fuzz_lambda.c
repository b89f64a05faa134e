/* fuzz_lambda.c — libFuzzer target for kcld_lambda_answer_parse(), a Lambda
 * child's answer line, against a fixed batch of six records (two of them
 * sub-records of one KPL aggregate, sharing a sequence number).
 *
 * The input is the line, without its newline and without a terminating NUL.
 * Checked against lambda.h: only 0 or KCLD_EPARSE; OK has no error type;
 * FAILED has one; PARTIAL points at a record of the batch, the first one of
 * its sequence number; the texts are NUL-terminated in their arrays. */
#include <stdint.h>
#include <string.h>

#include <jansson.h>

#include "consume/record.h"
#include "err.h"
#include "fuzz.h"
#include "handlers/lambda.h"

#define NREC 6

static struct kcld_record s_recs[NREC];
static const struct kcld_record *s_ptrs[NREC];
static struct kcld_handler_batch s_batch;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  static const char *const seqs[NREC] = {
    "49590338271490256608559692538361571095921575989136588898",
    "49590338271490256608559692538361571095921575989136588899",
    "49590338271490256608559692538361571095921575989136588899",
    "100", "0", "49590338271490256608559692540925702759324208523137515618"};
  (void)argc;
  (void)argv;
  json_object_seed(1);
  for (size_t i = 0; i < NREC; i++) {
    s_recs[i].data = (const uint8_t *)"payload";
    s_recs[i].data_len = 7;
    s_recs[i].partition_key = "pk";
    s_recs[i].partition_key_len = 2;
    s_recs[i].sequence_number = seqs[i];
    s_recs[i].sub_sequence_number = i == 2 ? 1 : 0;
    s_recs[i].aggregated = i == 1 || i == 2;
    s_recs[i].arrival_ms = KCLD_RECORD_NO_ARRIVAL;
    s_ptrs[i] = &s_recs[i];
  }
  s_batch.shard_id = "shardId-000000000000";
  s_batch.records = s_ptrs;
  s_batch.count = NREC;
  s_batch.millis_behind_latest = -1;
  s_batch.attempt = 1;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct kcld_lambda_answer a;
  memset(&a, 0xA5, sizeof(a));
  int rc = kcld_lambda_answer_parse((const char *)data, size, &s_batch, &a);
  CHECK(rc == 0 || rc == KCLD_EPARSE);
  if (rc != 0)
    return 0;
  CHECK(memchr(a.error_type, '\0', sizeof(a.error_type)) != NULL);
  CHECK(memchr(a.error_message, '\0', sizeof(a.error_message)) != NULL);
  switch (a.status) {
  case KCLD_HANDLER_OK:
    CHECK(a.error_type[0] == '\0');
    break;
  case KCLD_HANDLER_FAILED:
    CHECK(a.error_type[0] != '\0');
    break;
  case KCLD_HANDLER_PARTIAL:
    CHECK(a.first_failed < NREC);
    CHECK(a.first_failed == 0 ||
          strcmp(s_recs[a.first_failed - 1].sequence_number,
                 s_recs[a.first_failed].sequence_number) != 0);
    break;
  default:
    CHECK(!"unknown status");
  }
  return 0;
}
