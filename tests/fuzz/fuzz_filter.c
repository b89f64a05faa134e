/* fuzz_filter.c — libFuzzer target for the filter pattern parser and
 * compiler (kcld_filter_parse_text, kcld_filter_add_text) and the matcher
 * (kcld_filter_match).
 *
 * Input: one flags byte, then the pattern text up to the first NUL byte,
 * then the record's payload (the rest).  Flags bit 0: the record has no
 * arrival time; bit 1: its partition key is "device-1" (else "k").
 *
 * Checked against filter.h: a refused pattern is KCLD_ECONFIG with a
 * message, terminated path and message, and no pattern added (all or
 * none); a tree read from text prints as JSON that reads back to the same
 * text; an added pattern is one of at most KCLD_FILTER_MAX_PATTERNS; a
 * match answers 0 or 1 (or KCLD_ENOMEM), the same every time and the same
 * for the filter compiled again from the printed pattern. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "fuzz.h"
#include "process/filter.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc;
  (void)argv;
  return 0;
}

static void check_error(const struct kcld_filter_error *err)
{
  CHECK(memchr(err->path, '\0', sizeof(err->path)) != NULL);
  CHECK(memchr(err->msg, '\0', sizeof(err->msg)) != NULL);
  CHECK(err->msg[0] != '\0');
  CHECK(err->line >= 0 && err->col >= 0);
}

/* The tree of `text` printed, or NULL when it does not parse; checks that
 * the print reads back to itself. */
static char *round_trip(const char *text, size_t len)
{
  struct kcld_filter_node *root = NULL, *again = NULL;
  struct kcld_filter_error err;
  char *json, *json2;
  int rc = kcld_filter_parse_text(text, len, &root, &err);

  if (rc != 0) {
    CHECK(rc == KCLD_ECONFIG || rc == KCLD_ENOMEM);
    CHECK(root == NULL);
    check_error(&err);
    return NULL;
  }
  json = kcld_filter_node_json(root);
  kcld_filter_node_free(root);
  if (!json)
    return NULL;
  rc = kcld_filter_parse_text(json, strlen(json), &again, &err);
  CHECK(rc == 0 || rc == KCLD_ENOMEM);
  if (rc == 0) {
    json2 = kcld_filter_node_json(again);
    CHECK(json2 == NULL || strcmp(json, json2) == 0);
    free(json2);
  }
  kcld_filter_node_free(again);
  return json;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct kcld_filter *f, *g = NULL;
  struct kcld_filter_error err;
  struct kcld_record r;
  const char *text, *nul;
  size_t tlen;
  char *json;
  int rc, keep;

  if (size < 1)
    return 0;
  text = (const char *)data + 1;
  nul = memchr(text, '\0', size - 1);
  tlen = nul ? (size_t)(nul - text) : size - 1;

  memset(&r, 0, sizeof(r));
  r.data = nul ? (const uint8_t *)nul + 1 : (const uint8_t *)"";
  r.data_len = nul ? size - 1 - tlen - 1 : 0;
  r.partition_key = (data[0] & 2) ? "device-1" : "k";
  r.partition_key_len = strlen(r.partition_key);
  r.sequence_number = "49590338271490256608559692538361571095921575989";
  r.arrival_ms = (data[0] & 1) ? KCLD_RECORD_NO_ARRIVAL : 1545084650987;

  json = round_trip(text, tlen);

  if ((f = kcld_filter_new()) == NULL)
    goto done;
  CHECK(kcld_filter_match(f, &r) == 1); /* no pattern: every record */
  memset(&err, 0, sizeof(err));
  rc = kcld_filter_add_text(f, text, tlen, &err);
  if (rc != 0) {
    CHECK(rc == KCLD_ECONFIG || rc == KCLD_ENOMEM);
    check_error(&err);
    CHECK(kcld_filter_count(f) == 0);
    goto done;
  }
  CHECK(kcld_filter_count(f) >= 1);
  CHECK(kcld_filter_count(f) <= KCLD_FILTER_MAX_PATTERNS);

  keep = kcld_filter_match(f, &r);
  CHECK(keep == 0 || keep == 1 || keep == KCLD_ENOMEM);
  if (keep != KCLD_ENOMEM) {
    rc = kcld_filter_match(f, &r);
    CHECK(rc == keep || rc == KCLD_ENOMEM);
  }

  /* The printed pattern compiles to a filter that answers the same. */
  if (!json || (g = kcld_filter_new()) == NULL)
    goto done;
  rc = kcld_filter_add_text(g, json, strlen(json), &err);
  CHECK(rc == 0 || rc == KCLD_ENOMEM);
  if (rc == 0 && keep != KCLD_ENOMEM) {
    CHECK(kcld_filter_count(g) == kcld_filter_count(f));
    rc = kcld_filter_match(g, &r);
    CHECK(rc == keep || rc == KCLD_ENOMEM);
  }
done:
  kcld_filter_free(g);
  kcld_filter_free(f);
  free(json);
  return 0;
}
