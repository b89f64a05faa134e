/* test_json.c — the strict JSON scanner on its own: texts accepted and
 * refused (with the message and the byte it points at), the three jansson
 * quirks only under KCLD_JSON_JANSSON (a number ending the text, a NUL
 * after a token, int64/double limits with the values), walking members and
 * elements, decoding and comparing strings with escapes and surrogate
 * pairs, the nesting limit, and the error's line and column.  (getrecords'
 * and ddb_item's own tests, and the getrecords fuzz target's differential
 * check against jansson, cover it through its two users.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/json.h"

/* Scans text[0..n) as one whole value; 0 or -1, with *sc for the error. */
static int scan(const char *text, size_t n, unsigned flags,
                struct kcld_json_scan *sc, struct kcld_json_val *v)
{
  kcld_json_scan_init(sc, text, n, flags);
  if (kcld_json_scan_value(sc, v, 1) != 0)
    return -1;
  return kcld_json_scan_finish(sc);
}

static void refused(const char *text, unsigned flags, const char *msg,
                    size_t at)
{
  struct kcld_json_scan sc;
  if (scan(text, strlen(text), flags, &sc, NULL) != -1 ||
      strcmp(sc.err ? sc.err : "", msg) != 0 ||
      (size_t)(sc.at - text) != at)
    fail_msg("%s: err \"%s\" at %td (want \"%s\" at %zu)", text,
             sc.err ? sc.err : "(none)", sc.at - text, msg, at);
}

static void test_accepted(void **state)
{
  static const char *const ok[] = {
    "{}", "[]", "0", "-0", "1.5e-3", "-12E+2", "true", "false", "null",
    "\"\"", " {\"a\" : [1, \"x\", {\"b\": null}] } ",
    "\"\\u00e9\\ud83d\\ude00\\/\\\\\\\"\\b\\f\\n\\r\\t\"",
    "\"caf\xc3\xa9 \xf0\x9f\x98\x80\"", "123456789012345678901234567890",
    "1e999",
  };
  struct kcld_json_scan sc;
  (void)state;
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
    if (scan(ok[i], strlen(ok[i]), 0, &sc, NULL) != 0)
      fail_msg("%s: %s", ok[i], sc.err);
}

static void test_refused(void **state)
{
  (void)state;
  refused("", 0, "unexpected end of input", 0);
  refused("  ", 0, "unexpected end of input", 2);
  refused("nul", 0, "unexpected character", 0);
  refused("+1", 0, "unexpected character", 0);
  refused(".5", 0, "unexpected character", 0);
  refused("-", 0, "bad number", 0);
  refused("01", 0, "leading zero in a number", 0);
  refused("-01", KCLD_JSON_JANSSON, "leading zero in a number", 0);
  refused("1.", 0, "bad number fraction", 0);
  refused("1e+", 0, "bad number exponent", 0);
  refused("\"abc", 0, "unterminated string", 4);
  refused("\"a\\", 0, "unterminated string", 2);
  refused("\"a\x01\"", 0, "control character in a string", 2);
  refused("\"\xc0\xaf\"", 0, "invalid UTF-8 in a string", 1);
  refused("\"\xed\xa0\x80\"", 0, "invalid UTF-8 in a string", 1);
  refused("\"\\x\"", 0, "bad escape", 1);
  refused("\"\\u12\"", 0, "bad \\u escape", 1);
  refused("\"\\u12g4\"", 0, "bad \\u escape", 1);
  refused("\"\\udc00\"", 0, "lone low surrogate", 1);
  refused("\"\\ud800\"", 0, "lone high surrogate", 1);
  refused("\"\\ud800\\u0041\"", 0, "lone high surrogate", 1);
  refused("[1,]", 0, "unexpected character", 3);
  refused("[1 2]", 0, "expected ',' or ']'", 3);
  refused("{\"a\":1,}", 0, "expected a member name", 7);
  refused("{a:1}", 0, "expected a member name", 1);
  refused("{\"a\" 1}", 0, "expected ':'", 5);
  refused("{\"a\":1 \"b\":2}", 0, "expected ',' or '}'", 7);
  refused("{\"a\\u0000\":1}", 0, "member name holds U+0000", 2);
  refused("{} x", 0, "trailing data after the JSON value", 3);
}

static void test_jansson_quirks(void **state)
{
  struct kcld_json_scan sc;
  struct kcld_json_val v;
  (void)state;
  /* A number may end the text, unless jansson's rules apply. */
  assert_int_equal(scan("42", 2, 0, &sc, &v), 0);
  assert_int_equal(v.type, KCLD_JSON_NUMBER);
  assert_int_equal(v.raw, 2);
  assert_true(v.isint);
  refused("42", KCLD_JSON_JANSSON, "unexpected end of input after a number",
          2);
  /* One NUL right after a number or literal is skipped by jansson only. */
  assert_int_equal(scan("[1\0]", 4, KCLD_JSON_JANSSON, &sc, NULL), 0);
  assert_int_equal(scan("[true\0]", 7, KCLD_JSON_JANSSON, &sc, NULL), 0);
  assert_int_equal(scan("[1\0]", 4, 0, &sc, NULL), -1);
  assert_int_equal(scan("[1\0\0]", 5, KCLD_JSON_JANSSON, &sc, NULL), -1);
  /* Integers must fit an int64_t, reals a double; values are computed. */
  assert_int_equal(scan("[-9223372036854775808]", 22, KCLD_JSON_JANSSON, &sc,
                        NULL), 0);
  refused("[9223372036854775808]", KCLD_JSON_JANSSON, "too big integer", 1);
  refused("[-9223372036854775809]", KCLD_JSON_JANSSON,
          "too big negative integer", 1);
  refused("[12345678901234567890123]", KCLD_JSON_JANSSON, "too big integer",
          1);
  refused("[1e999]", KCLD_JSON_JANSSON, "real number overflow", 1);
  assert_int_equal(scan("[1e999]", 7, 0, &sc, NULL), 0);
  kcld_json_scan_init(&sc, "1234567890123 ", 14, KCLD_JSON_JANSSON);
  assert_int_equal(kcld_json_scan_value(&sc, &v, 1), 0);
  assert_true(v.inum == 1234567890123LL);
  kcld_json_scan_init(&sc, "-2.5e3 ", 7, KCLD_JSON_JANSSON);
  assert_int_equal(kcld_json_scan_value(&sc, &v, 1), 0);
  assert_false(v.isint);
  assert_true(v.num == -2500.0);
}

static void test_walk(void **state)
{
  static const char text[] =
    "{\"id\":\"x\",\"t\\u0061gs\":[1,[2],{}],\"id\":\"y\",\"n\":null}";
  struct kcld_json_scan sc;
  struct kcld_json_val key, v;
  int first = 1, efirst = 1, members = 0, elements = 0, rc;
  char got[8];
  (void)state;
  kcld_json_scan_init(&sc, text, sizeof(text) - 1, 0);
  assert_int_equal(kcld_json_scan_open(&sc, '{', 1), 0);
  while ((rc = kcld_json_scan_member(&sc, &first, &key)) > 0) {
    members++;
    if (kcld_json_equals(&key, "tags", 4)) {
      assert_true(key.esc);
      assert_int_equal(kcld_json_scan_open(&sc, '[', 2), 0);
      while (kcld_json_scan_element(&sc, &efirst) > 0) {
        assert_int_equal(kcld_json_scan_value(&sc, &v, 3), 0);
        elements++;
      }
      assert_int_equal(v.type, KCLD_JSON_OBJECT);
      continue;
    }
    assert_int_equal(kcld_json_scan_value(&sc, &v, 2), 0);
    if (kcld_json_equals(&key, "id", 2)) {
      assert_int_equal(v.type, KCLD_JSON_STRING);
      kcld_json_decode(&v, got);
      got[v.len] = '\0';
    }
  }
  assert_int_equal(rc, 0);
  assert_int_equal(kcld_json_scan_finish(&sc), 0);
  assert_int_equal(members, 4);
  assert_int_equal(elements, 3);
  assert_string_equal(got, "y"); /* the last one */
  /* open() wants the bracket it is told. */
  static const char arr[] = " [";
  kcld_json_scan_init(&sc, arr, 2, 0);
  assert_int_equal(kcld_json_scan_open(&sc, '{', 1), -1);
  assert_string_equal(sc.err, "expected '{'");
  assert_ptr_equal(sc.at, arr + 1);
}

static void test_strings(void **state)
{
  static const char text[] = "\"a\\n\\u00e9\\ud83d\\ude00\\\"\\/z\\u0000\"";
  static const char want[] = "a\n\xc3\xa9\xf0\x9f\x98\x80\"/z";
  struct kcld_json_scan sc;
  struct kcld_json_val v;
  char out[32];
  (void)state;
  assert_int_equal(scan(text, sizeof(text) - 1, 0, &sc, &v), 0);
  assert_int_equal(v.type, KCLD_JSON_STRING);
  assert_true(v.esc);
  assert_true(v.nul);
  assert_int_equal(v.len, sizeof(want)); /* with the U+0000 */
  kcld_json_decode(&v, out);
  assert_memory_equal(out, want, sizeof(want));
  assert_true(kcld_json_equals(&v, want, sizeof(want)));
  assert_false(kcld_json_equals(&v, want, sizeof(want) - 1));
  char other[sizeof(want)];
  memcpy(other, want, sizeof(want));
  other[4] = 'x';
  assert_false(kcld_json_equals(&v, other, sizeof(want)));
  /* Without escapes: a view into the text, no decoding needed. */
  static const char plain[] = "\"plain\"";
  assert_int_equal(scan(plain, 7, 0, &sc, &v), 0);
  assert_false(v.esc);
  assert_ptr_equal(v.p, plain + 1);
  assert_int_equal(v.raw, 5);
  assert_true(kcld_json_equals(&v, "plain", 5));
}

static void test_depth_and_position(void **state)
{
  size_t n = KCLD_JSON_MAX_DEPTH + 1;
  char *deep = malloc(2 * n);
  struct kcld_json_scan sc;
  int line, col;
  (void)state;
  assert_non_null(deep);
  memset(deep, '[', n - 1);
  memset(deep + n - 1, ']', n - 1);
  assert_int_equal(scan(deep, 2 * (n - 1), 0, &sc, NULL), 0);
  memset(deep, '[', n);
  memset(deep + n, ']', n);
  assert_int_equal(scan(deep, 2 * n, 0, &sc, NULL), -1);
  assert_string_equal(sc.err, "maximum parsing depth reached");
  free(deep);

  static const char text[] = "{\n  \"a\": 1,\n  \"b\": tru\n}";
  assert_int_equal(scan(text, sizeof(text) - 1, 0, &sc, NULL), -1);
  kcld_json_scan_position(&sc, &line, &col);
  assert_int_equal(line, 3);
  assert_int_equal(col, 8);
}

/* Long strings are skipped eight bytes a step: every kind of byte the
 * table must see (the closing quote, an escape, a control character, a
 * UTF-8 sequence, a byte that starts none) is found at every offset of the
 * step and after it, in strings of every length up to a few steps. */
static void test_long_strings(void **state)
{
  char text[64];
  struct kcld_json_scan sc;
  struct kcld_json_val v;
  (void)state;
  for (size_t len = 0; len < 40; len++) {
    /* Plain text: the quote after len bytes ends it. */
    text[0] = '"';
    memset(text + 1, 'A' + (int)(len % 26), len);
    text[len + 1] = '"';
    assert_int_equal(scan(text, len + 2, 0, &sc, &v), 0);
    assert_int_equal(v.len, len);
    assert_false(v.esc);
    for (size_t at = 0; at < len; at++) {
      char *c = text + 1 + at;
      *c = '\x1f';
      if (scan(text, len + 2, 0, &sc, NULL) != -1 || sc.at != c)
        fail_msg("control character at %zu of %zu not refused there", at,
                 len);
      *c = '\x80';
      if (scan(text, len + 2, 0, &sc, NULL) != -1 || sc.at != c)
        fail_msg("lone continuation byte at %zu of %zu not refused there",
                 at, len);
      *c = '\\';
      if (at + 1 < len) {
        c[1] = 'n';
        assert_int_equal(scan(text, len + 2, 0, &sc, &v), 0);
        assert_true(v.esc);
        assert_int_equal(v.len, len - 1);
        c[1] = 'A' + (int)(len % 26);
      }
      *c = '"';
      if (scan(text, len + 2, 0, &sc, NULL) != -1)
        fail_msg("quote at %zu of %zu did not end the string", at, len);
      if (at + 1 < len) {
        c[0] = '\xc3';
        c[1] = '\xa9';
        assert_int_equal(scan(text, len + 2, 0, &sc, &v), 0);
        assert_int_equal(v.len, len);
        c[1] = 'A' + (int)(len % 26);
      }
      *c = 'A' + (int)(len % 26);
    }
    /* No closing quote. */
    if (scan(text, len + 1, 0, &sc, NULL) != -1 ||
        strcmp(sc.err, "unterminated string") != 0)
      fail_msg("length %zu without its quote was not refused", len);
  }
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_accepted),
    cmocka_unit_test(test_refused),
    cmocka_unit_test(test_jansson_quirks),
    cmocka_unit_test(test_walk),
    cmocka_unit_test(test_strings),
    cmocka_unit_test(test_long_strings),
    cmocka_unit_test(test_depth_and_position),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
