/* test_xml.c — Query-protocol answers as jansson trees: the STS answer
 * shapes, repeated elements as arrays, namespaces and attributes dropped,
 * text kept as sent; and what is refused: malformed XML, a DOCTYPE (no
 * entity tricks), nesting beyond 32, invalid UTF-8. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "aws/xml.h"
#include "err.h"

static json_t *parse_ok(const char *xml)
{
  json_t *j = NULL;
  char err[128] = "";
  int rc = kcld_xml_to_json(xml, strlen(xml), &j, err, sizeof(err));
  if (rc != 0)
    fail_msg("%s: %s", xml, err);
  return j;
}

static void assert_json(json_t *j, const char *want)
{
  char *got = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
  assert_string_equal(got, want);
  free(got);
  json_decref(j);
}

static void test_shapes(void **state)
{
  (void)state;
  assert_json(parse_ok(
    "<?xml version=\"1.0\"?>\n"
    "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"
    "  <AssumeRoleResult>\n"
    "    <Credentials><AccessKeyId>ASIA1</AccessKeyId>"
    "<SessionToken> a b </SessionToken></Credentials>\n"
    "  </AssumeRoleResult>"
    "<ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata>"
    "</AssumeRoleResponse>"),
    "{\"AssumeRoleResult\":{\"Credentials\":{\"AccessKeyId\":\"ASIA1\","
    "\"SessionToken\":\" a b \"}},\"ResponseMetadata\":{\"RequestId\":"
    "\"r-1\"}}");
  /* Repeats become arrays, in order; prefixes and attributes go. */
  assert_json(parse_ok("<r><m a=\"1\">x</m><m>y</m><ns:m>z</ns:m><e/>"
                       "<t>&lt;&amp;&#65;</t></r>"),
              "{\"e\":\"\",\"m\":[\"x\",\"y\",\"z\"],\"t\":\"<&A\"}");
  /* A root with only text. */
  assert_json(parse_ok("<r>hello</r>"), "{\"\":\"hello\"}");
}

static void test_refused(void **state)
{
  static const char *const bad[] = {
    "", "not xml", "<r><a></r>", "<r>",
    "<!DOCTYPE r [<!ENTITY x \"boom\">]><r>&x;</r>",
    "<r>\xff\xfe</r>",
  };
  char deep[600] = "";
  json_t *j;
  char err[128];
  (void)state;
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    j = (json_t *)1;
    assert_int_equal(kcld_xml_to_json(bad[i], strlen(bad[i]), &j, err,
                                      sizeof(err)),
                     KCLD_EPARSE);
    assert_null(j);
    assert_true(err[0] != '\0');
  }
  assert_int_equal(kcld_xml_to_json(bad[4], strlen(bad[4]), &j, err,
                                    sizeof(err)),
                   KCLD_EPARSE);
  assert_string_equal(err, "a DOCTYPE is not accepted");
  for (int i = 0; i < 33; i++)
    strcat(deep, "<a>");
  for (int i = 0; i < 33; i++)
    strcat(deep, "</a>");
  assert_int_equal(kcld_xml_to_json(deep, strlen(deep), &j, err, sizeof(err)),
                   KCLD_EPARSE);
  assert_string_equal(err, "elements nested too deep");
  /* 32 levels are fine. */
  deep[0] = '\0';
  for (int i = 0; i < 32; i++)
    strcat(deep, "<a>");
  for (int i = 0; i < 32; i++)
    strcat(deep, "</a>");
  json_decref(parse_ok(deep));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_shapes),
    cmocka_unit_test(test_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
