/* test_template.c — key templates: every field, literal text and "$$",
 * payload paths through maps and lists, time buckets, and bad templates
 * refused at compile time with the template and column named. */
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
#include "handlers/ddb_item.h"
#include "handlers/template.h"

static struct kcld_record make_record(const char *pk, const char *seq,
                                      uint64_t sub, int64_t arrival_ms)
{
  struct kcld_record r;
  memset(&r, 0, sizeof(r));
  r.data = (const uint8_t *)"";
  r.partition_key = pk;
  r.partition_key_len = strlen(pk);
  r.sequence_number = seq;
  r.sub_sequence_number = sub;
  r.arrival_ms = arrival_ms;
  return r;
}

/* Compiles and renders; returns the render code and the text in out. */
static int render(const char *tmpl, const struct kcld_record *r,
                  const char *payload, char *out, size_t outlen)
{
  struct kcld_template *t = NULL;
  struct kcld_template_input in = {.rec = r,
                                   .shard_id = "shardId-000000000007"};
  json_t *av = NULL;
  char err[256], *text = NULL;
  size_t len = 0;
  int rc;

  assert_int_equal(kcld_template_compile("handler.key.pk", tmpl, &t, err,
                                         sizeof(err)), 0);
  assert_string_equal(kcld_template_text(t), tmpl);
  if (payload) {
    assert_int_equal(kcld_ddb_item_from_json(payload, strlen(payload), &av,
                                             err, sizeof(err)), 0);
    in.field = kcld_ddb_item_field;
    in.field_arg = av;
  }
  err[0] = '\0';
  rc = kcld_template_render(t, &in, &text, &len, err, sizeof(err));
  if (rc == 0) {
    assert_non_null(text);
    snprintf(out, outlen, "%s", text);
    assert_int_equal(len, strlen(text));
  } else {
    assert_null(text);
    snprintf(out, outlen, "%s", err);
  }
  free(text);
  json_decref(av);
  kcld_template_free(t);
  return rc;
}

static void test_metadata_fields(void **state)
{
  struct kcld_record r = make_record("user-42", "4960000000000000000000012",
                                     3, 1763893800123LL);
  char out[512];
  (void)state;

  assert_int_equal(render("${partitionKey}", &r, NULL, out, sizeof(out)), 0);
  assert_string_equal(out, "user-42");
  assert_int_equal(render("${sequenceNumber}", &r, NULL, out, sizeof(out)),
                   0);
  assert_string_equal(out, "4960000000000000000000012");
  assert_int_equal(render("${sequenceNumber}#${subSequenceNumber}", &r, NULL,
                          out, sizeof(out)), 0);
  assert_string_equal(out, "4960000000000000000000012#3");
  assert_int_equal(render("s=${shardId}", &r, NULL, out, sizeof(out)), 0);
  assert_string_equal(out, "s=shardId-000000000007");
  /* 1763893800123 ms = 2025-11-23T10:30:00.123Z */
  assert_int_equal(render("${hour(arrival)}", &r, NULL, out, sizeof(out)), 0);
  assert_string_equal(out, "2025-11-23T10");
  assert_int_equal(render("d/${day(arrival)}/", &r, NULL, out, sizeof(out)),
                   0);
  assert_string_equal(out, "d/2025-11-23/");
}

static void test_literals_and_dollars(void **state)
{
  struct kcld_record r = make_record("k", "1", 0, 0);
  char out[256];
  (void)state;

  assert_int_equal(render("plain", &r, NULL, out, sizeof(out)), 0);
  assert_string_equal(out, "plain");
  assert_int_equal(render("$$${partitionKey}$$", &r, NULL, out, sizeof(out)),
                   0);
  assert_string_equal(out, "$k$");
  assert_int_equal(render("cost $5 {x} $", &r, NULL, out, sizeof(out)), 0);
  assert_string_equal(out, "cost $5 {x} $");
  assert_int_equal(render("$${notafield}", &r, NULL, out, sizeof(out)), 0);
  assert_string_equal(out, "${notafield}");
  assert_int_equal(render("", &r, NULL, out, sizeof(out)), 0);
  assert_string_equal(out, "");
  /* Epoch 0 is a real arrival time. */
  assert_int_equal(render("${day(arrival)}", &r, NULL, out, sizeof(out)), 0);
  assert_string_equal(out, "1970-01-01");
}

static void test_payload_fields(void **state)
{
  struct kcld_record r = make_record("k", "1", 0, 1763893800123LL);
  const char *doc =
    "{\"deviceId\":\"dev-9\",\"reading\":{\"temp\":21.50,\"ok\":true,"
    "\"tags\":[\"a\",{\"id\":7}]},\"n\":null,\"big\":1.0e2,\"s\":\"\"}";
  char out[256];
  (void)state;

  assert_int_equal(render("${data.deviceId}#${hour(arrival)}", &r, doc, out,
                          sizeof(out)), 0);
  assert_string_equal(out, "dev-9#2025-11-23T10");
  /* Numbers render as written, not re-formatted. */
  assert_int_equal(render("${data.reading.temp}", &r, doc, out, sizeof(out)),
                   0);
  assert_string_equal(out, "21.50");
  assert_int_equal(render("${data.big}", &r, doc, out, sizeof(out)), 0);
  assert_string_equal(out, "1.0e2");
  assert_int_equal(render("${data.reading.ok}", &r, doc, out, sizeof(out)),
                   0);
  assert_string_equal(out, "true");
  assert_int_equal(render("${data.reading.tags.0}-${data.reading.tags.1.id}",
                          &r, doc, out, sizeof(out)), 0);
  assert_string_equal(out, "a-7");
  assert_int_equal(render("[${data.s}]", &r, doc, out, sizeof(out)), 0);
  assert_string_equal(out, "[]");
  /* ${data} is the payload itself when it is a scalar. */
  assert_int_equal(render("${data}", &r, "\"just text\"", out, sizeof(out)),
                   0);
  assert_string_equal(out, "just text");
  assert_int_equal(render("${data}", &r, "12.000", out, sizeof(out)), 0);
  assert_string_equal(out, "12.000");
}

static void test_missing_fields(void **state)
{
  struct kcld_record r = make_record("k", "1", 0, KCLD_RECORD_NO_ARRIVAL);
  const char *doc = "{\"a\":{\"b\":[1,2]},\"n\":null,\"m\":{}}";
  char out[256];
  (void)state;

  assert_int_equal(render("${data.deviceId}", &r, doc, out, sizeof(out)),
                   KCLD_ENOTFOUND);
  assert_non_null(strstr(out, "data.deviceId"));
  /* Objects, arrays and null are not key material. */
  assert_int_equal(render("${data.a}", &r, doc, out, sizeof(out)),
                   KCLD_ENOTFOUND);
  assert_int_equal(render("${data.a.b}", &r, doc, out, sizeof(out)),
                   KCLD_ENOTFOUND);
  assert_int_equal(render("${data.n}", &r, doc, out, sizeof(out)),
                   KCLD_ENOTFOUND);
  assert_int_equal(render("${data.m}", &r, doc, out, sizeof(out)),
                   KCLD_ENOTFOUND);
  assert_int_equal(render("${data}", &r, doc, out, sizeof(out)),
                   KCLD_ENOTFOUND);
  /* Index out of range, non-numeric index, a path through a scalar. */
  assert_int_equal(render("${data.a.b.2}", &r, doc, out, sizeof(out)),
                   KCLD_ENOTFOUND);
  assert_int_equal(render("${data.a.b.x}", &r, doc, out, sizeof(out)),
                   KCLD_ENOTFOUND);
  assert_int_equal(render("${data.a.b.0.z}", &r, doc, out, sizeof(out)),
                   KCLD_ENOTFOUND);
  assert_int_equal(render("${data.a.b.1}", &r, doc, out, sizeof(out)), 0);
  assert_string_equal(out, "2");
  /* No payload lookup at all. */
  assert_int_equal(render("${data.x}", &r, NULL, out, sizeof(out)),
                   KCLD_ENOTFOUND);
  /* No arrival time: no time bucket. */
  assert_int_equal(render("${hour(arrival)}", &r, NULL, out, sizeof(out)),
                   KCLD_ENOTFOUND);
  assert_non_null(strstr(out, "arrival"));
}

static void test_bad_templates(void **state)
{
  static const struct {
    const char *text;
    const char *want;   /* in the message */
  } bad[] = {
    {"${", "column 1"},
    {"abc${partitionKey", "without a closing"},
    {"${}", "empty field"},
    {"x${nope}", "unknown field nope"},
    {"${PartitionKey}", "unknown field PartitionKey"},
    {"${data.}", "empty segment"},
    {"${data..a}", "empty segment"},
    {"${data.a.}", "empty segment"},
    {"${datax}", "unknown field datax"},
    {"${hour(processed)}", "unknown function hour(processed)"},
    {"${minute(arrival)}", "unknown function"},
    {"${a${b}}", "unexpected character"},
    {"${data.a b\t}", "unexpected character"},
  };
  (void)state;

  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    struct kcld_template *t = (struct kcld_template *)0x1;
    char err[512] = "";
    int rc = kcld_template_compile("handler.key.sk", bad[i].text, &t, err,
                                   sizeof(err));
    if (rc != KCLD_EINVAL || !strstr(err, bad[i].want) ||
        !strstr(err, "handler.key.sk") || !strstr(err, bad[i].text))
      fail_msg("template %s: rc %d, message \"%s\" (want \"%s\")",
               bad[i].text, rc, err, bad[i].want);
    assert_null(t);
  }
  /* The column points at the field. */
  {
    struct kcld_template *t = NULL;
    char err[512];
    assert_int_equal(kcld_template_compile("k", "abc${zzz}", &t, err,
                                           sizeof(err)), KCLD_EINVAL);
    assert_non_null(strstr(err, "column 4"));
  }
}

static void test_uses_data_and_nul(void **state)
{
  struct kcld_template *t = NULL;
  struct kcld_record r = make_record("a", "1", 0, 0);
  struct kcld_template_input in = {.rec = &r, .shard_id = NULL};
  char err[128], *out = NULL;
  size_t len = 0;
  (void)state;

  assert_int_equal(kcld_template_compile("k", "${partitionKey}|${shardId}",
                                         &t, err, sizeof(err)), 0);
  assert_int_equal(kcld_template_uses_data(t), 0);
  /* A partition key holding U+0000 keeps its length. */
  r.partition_key = "a\0b";
  r.partition_key_len = 3;
  assert_int_equal(kcld_template_render(t, &in, &out, &len, err, sizeof(err)),
                   0);
  assert_int_equal(len, 4);
  assert_memory_equal(out, "a\0b|", 4);
  free(out);
  kcld_template_free(t);
  assert_int_equal(kcld_template_compile("k", "x${data.y}", &t, err,
                                         sizeof(err)), 0);
  assert_int_equal(kcld_template_uses_data(t), 1);
  kcld_template_free(t);
  kcld_template_free(NULL);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_metadata_fields),
    cmocka_unit_test(test_literals_and_dollars),
    cmocka_unit_test(test_payload_fields),
    cmocka_unit_test(test_missing_fields),
    cmocka_unit_test(test_bad_templates),
    cmocka_unit_test(test_uses_data_and_nul),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
