/* test_http_server.c — kcld_http_request_parse(): valid heads (with their
 * slices and keep-alive), incomplete heads at every cut, malformed request
 * lines and headers, oversized targets and heads, bodies refused, methods
 * other than GET and HEAD, and pipelined requests found one after the
 * other. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "ops/http_server.h"

static long parse(const char *s, struct kcld_http_parsed *rq)
{
  return kcld_http_request_parse(s, strlen(s), rq);
}

/* Expects `s` to be refused with `status`. */
static void refused(const char *s, int status)
{
  struct kcld_http_parsed rq;
  long n = parse(s, &rq);
  if (n != KCLD_EINVAL || rq.status != status)
    fail_msg("'%s': got %ld status %d, wanted status %d", s, n, rq.status,
             status);
}

static void test_valid_get(void **state)
{
  struct kcld_http_parsed rq;
  const char *s = "GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n"
                  "Accept:  text/plain \r\nUser-Agent: t\r\n\r\n";
  (void)state;
  assert_int_equal(parse(s, &rq), (long)strlen(s));
  assert_int_equal(rq.method, KCLD_HTTP_GET);
  assert_int_equal(rq.path_len, 8);
  assert_memory_equal(rq.path, "/metrics", 8);
  assert_int_equal(rq.query_len, 3);
  assert_memory_equal(rq.query, "x=1", 3);
  assert_int_equal(rq.minor, 1);
  assert_int_equal(rq.keep_alive, 1);
  assert_int_equal(rq.headers, 3);
  assert_int_equal(rq.status, 0);
}

static void test_keep_alive_rules(void **state)
{
  struct kcld_http_parsed rq;
  (void)state;
  assert_true(parse("HEAD / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                    &rq) > 0);
  assert_int_equal(rq.method, KCLD_HTTP_HEAD);
  assert_int_equal(rq.keep_alive, 0);
  assert_true(parse("GET / HTTP/1.1\r\nHost: a\r\n"
                    "connection: Upgrade, CLOSE\r\n\r\n", &rq) > 0);
  assert_int_equal(rq.keep_alive, 0);
  assert_true(parse("GET / HTTP/1.0\r\n\r\n", &rq) > 0);
  assert_int_equal(rq.minor, 0);
  assert_int_equal(rq.keep_alive, 0);
  assert_true(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &rq) >
              0);
  assert_int_equal(rq.keep_alive, 1);
  assert_true(parse("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 000\r\n\r\n",
                    &rq) > 0);
}

static void test_incomplete_at_every_cut(void **state)
{
  struct kcld_http_parsed rq;
  const char *s = "GET /healthz HTTP/1.1\r\nHost: localhost:1\r\n"
                  "Connection: keep-alive\r\n\r\n";
  size_t n = strlen(s);
  (void)state;
  for (size_t cut = 0; cut < n; cut++) {
    long r = kcld_http_request_parse(s, cut, &rq);
    if (r != 0)
      fail_msg("cut at %zu: got %ld (status %d)", cut, r, rq.status);
  }
  assert_int_equal(kcld_http_request_parse(s, n, &rq), (long)n);
}

static void test_bad_request_lines(void **state)
{
  (void)state;
  refused("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400);   /* two spaces */
  refused("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400);   /* trailing space */
  refused("GET /\r\n\r\n", 400);                         /* HTTP/0.9 */
  refused("GET http://x/ HTTP/1.1\r\nHost: a\r\n\r\n", 400);
  refused("GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400);
  refused("GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400);
  refused("GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400);
  refused("GET / http/1.1\r\nHost: a\r\n\r\n", 400);
  refused("GET / HTTP/1.x\r\nHost: a\r\n\r\n", 400);
  refused("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505);
  refused("GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505);
  refused("GET / HTTP/1.1\nHost: a\n\n", 400);           /* bare LF */
  refused("GET / HTTP/1.1\rX", 400);                     /* CR without LF */
  refused("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
  refused(" GET / HTTP/1.1\r\n", 400);
  refused("G@T / HTTP/1.1\r\n", 400);
  /* Refused before the line is complete. */
  refused("GE(", 400);
  refused("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 501);
}

static void test_bad_headers(void **state)
{
  (void)state;
  refused("GET / HTTP/1.1\r\n\r\n", 400);                 /* no Host */
  refused("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
  refused("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400);     /* space, colon */
  refused("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n b\r\n\r\n", 400);
  refused("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 400);
  refused("GET / HTTP/1.1\r\nHost: a\r\n: empty\r\n\r\n", 400);
  refused("GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n", 400);
  refused("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", 413);
  refused("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400);
  refused("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n"
          "Content-Length: 0\r\n\r\n", 400);
  refused("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
          501);
  /* Folding is refused as soon as the continuation line starts. */
  refused("GET / HTTP/1.1\r\nHost: a\r\n\t", 400);
}

static void test_nul_inside(void **state)
{
  struct kcld_http_parsed rq;
  const char s[] = "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n";
  (void)state;
  assert_int_equal(kcld_http_request_parse(s, sizeof(s) - 1, &rq),
                   KCLD_EINVAL);
  assert_int_equal(rq.status, 400);
}

static void test_methods(void **state)
{
  struct kcld_http_parsed rq;
  (void)state;
  assert_true(parse("POST /metrics HTTP/1.1\r\nHost: a\r\n\r\n", &rq) > 0);
  assert_int_equal(rq.method, KCLD_HTTP_OTHER);
  assert_int_equal(rq.method_len, 4);
  assert_memory_equal(rq.method_text, "POST", 4);
  assert_true(parse("get / HTTP/1.1\r\nHost: a\r\n\r\n", &rq) > 0);
  assert_int_equal(rq.method, KCLD_HTTP_OTHER); /* methods are case-sensitive */
  assert_true(parse("BREW / HTTP/1.1\r\nHost: a\r\n\r\n", &rq) > 0);
  assert_int_equal(rq.method, KCLD_HTTP_OTHER);
}

static void test_oversized(void **state)
{
  struct kcld_http_parsed rq;
  size_t cap = 3 * KCLD_HTTP_MAX_HEAD;
  char *b = malloc(cap);
  int n;
  (void)state;
  assert_non_null(b);
  /* A target just at the limit is fine; one byte more is 414. */
  n = snprintf(b, cap, "GET /");
  memset(b + n, 'a', KCLD_HTTP_MAX_TARGET - 1);
  n += KCLD_HTTP_MAX_TARGET - 1;
  n += snprintf(b + n, cap - (size_t)n, " HTTP/1.1\r\nHost: a\r\n\r\n");
  assert_int_equal(kcld_http_request_parse(b, (size_t)n, &rq), n);
  n = snprintf(b, cap, "GET /");
  memset(b + n, 'a', KCLD_HTTP_MAX_TARGET);
  n += KCLD_HTTP_MAX_TARGET;
  n += snprintf(b + n, cap - (size_t)n, " HTTP/1.1\r\nHost: a\r\n\r\n");
  assert_int_equal(kcld_http_request_parse(b, (size_t)n, &rq), KCLD_EINVAL);
  assert_int_equal(rq.status, 414);
  /* A request line that never ends is refused once it is too long. */
  n = snprintf(b, cap, "GET /");
  memset(b + n, 'a', KCLD_HTTP_MAX_HEAD);
  assert_int_equal(kcld_http_request_parse(b, KCLD_HTTP_MAX_HEAD, &rq),
                   KCLD_EINVAL);
  assert_int_equal(rq.status, 414);
  /* Headers past the head limit: 431, whether complete or not. */
  n = snprintf(b, cap, "GET / HTTP/1.1\r\nHost: a\r\n");
  while ((size_t)n < KCLD_HTTP_MAX_HEAD + 100)
    n += snprintf(b + n, cap - (size_t)n, "X-Pad: %0100d\r\n", 0);
  assert_int_equal(kcld_http_request_parse(b, (size_t)n, &rq), KCLD_EINVAL);
  assert_int_equal(rq.status, 431);
  n += snprintf(b + n, cap - (size_t)n, "\r\n");
  assert_int_equal(kcld_http_request_parse(b, (size_t)n, &rq), KCLD_EINVAL);
  assert_int_equal(rq.status, 431);
  /* Too many header fields, though short. */
  n = snprintf(b, cap, "GET / HTTP/1.1\r\nHost: a\r\n");
  for (int i = 0; i < KCLD_HTTP_MAX_HEADERS; i++)
    n += snprintf(b + n, cap - (size_t)n, "X: %d\r\n", i);
  n += snprintf(b + n, cap - (size_t)n, "\r\n");
  assert_int_equal(kcld_http_request_parse(b, (size_t)n, &rq), KCLD_EINVAL);
  assert_int_equal(rq.status, 431);
  free(b);
}

static void test_pipelining(void **state)
{
  struct kcld_http_parsed rq;
  const char *s = "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n"
                  "HEAD /healthz HTTP/1.1\r\nHost: a\r\n\r\n"
                  "GET /x HTTP/1.1\r\nHo";
  size_t len = strlen(s), pos = 0;
  long n;
  (void)state;
  n = kcld_http_request_parse(s, len, &rq);
  assert_true(n > 0);
  assert_int_equal(rq.method, KCLD_HTTP_GET);
  assert_memory_equal(rq.path, "/metrics", 8);
  pos += (size_t)n;
  n = kcld_http_request_parse(s + pos, len - pos, &rq);
  assert_true(n > 0);
  assert_int_equal(rq.method, KCLD_HTTP_HEAD);
  assert_memory_equal(rq.path, "/healthz", 8);
  pos += (size_t)n;
  assert_int_equal(kcld_http_request_parse(s + pos, len - pos, &rq), 0);
}

/* Random bytes and random mutations of a valid head: the parser never reads
 * past len (ASan watches the exact-size copies) and either accepts, asks for
 * more, or refuses with a status. */
static void test_random_inputs(void **state)
{
  const char *base = "GET /metrics HTTP/1.1\r\nHost: a\r\n"
                     "Connection: keep-alive\r\n\r\n";
  size_t blen = strlen(base);
  unsigned seed = 12345;
  (void)state;
  for (int it = 0; it < 20000; it++) {
    size_t len;
    char tmp[256];
    seed = seed * 1103515245u + 12345u;
    if (it % 2) {
      len = (seed >> 8) % sizeof(tmp);
      for (size_t i = 0; i < len; i++) {
        seed = seed * 1103515245u + 12345u;
        tmp[i] = (char)(seed >> 16);
      }
    } else {
      memcpy(tmp, base, blen);
      len = blen;
      for (int k = 0; k < 3; k++) {
        seed = seed * 1103515245u + 12345u;
        tmp[(seed >> 8) % blen] = (char)(seed >> 20);
      }
    }
    char *exact = malloc(len ? len : 1);
    assert_non_null(exact);
    memcpy(exact, tmp, len);
    struct kcld_http_parsed rq;
    long r = kcld_http_request_parse(exact, len, &rq);
    assert_true(r == 0 || r == KCLD_EINVAL || (r > 0 && (size_t)r <= len));
    if (r == KCLD_EINVAL)
      assert_true(rq.status >= 400 && rq.status <= 505);
    if (r > 0) {
      assert_true(rq.path >= exact && rq.path + rq.path_len <= exact + len);
      assert_true(rq.path[0] == '/');
    }
    free(exact);
  }
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_valid_get),
    cmocka_unit_test(test_keep_alive_rules),
    cmocka_unit_test(test_incomplete_at_every_cut),
    cmocka_unit_test(test_bad_request_lines),
    cmocka_unit_test(test_bad_headers),
    cmocka_unit_test(test_nul_inside),
    cmocka_unit_test(test_methods),
    cmocka_unit_test(test_oversized),
    cmocka_unit_test(test_pipelining),
    cmocka_unit_test(test_random_inputs),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
