/* test_h2_setup.c — what the HTTP/2 client sends before a stream's body:
 * URLs split into scheme, host, port and path (IPv6 in brackets, default
 * ports, bad ones refused); the header block (pseudo-headers first,
 * :authority from the signed Host line, names lower-cased, forbidden and
 * empty headers dropped, content-length and user-agent added); no_proxy
 * matching; the CONNECT request of a proxy tunnel (credentials decoded
 * and sent as Basic; none for a host no_proxy names; https:// proxies
 * refused). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "aws/h2_setup.h"
#include "err.h"
#include "kcld/version.h"

static void test_parse_url(void **state)
{
  char host[64], port[8];
  const char *path;
  int tls = -1;

  (void)state;
  assert_int_equal(kcld_h2_parse_url("https://kinesis.us-east-1.amazonaws"
                                     ".com", &tls, host, sizeof(host), port,
                                     sizeof(port), &path), 0);
  assert_int_equal(tls, 1);
  assert_string_equal(host, "kinesis.us-east-1.amazonaws.com");
  assert_string_equal(port, "443");
  assert_string_equal(path, "/");
  assert_int_equal(kcld_h2_parse_url("http://127.0.0.1:4567/a/b?x=1", &tls,
                                     host, sizeof(host), port, sizeof(port),
                                     &path), 0);
  assert_int_equal(tls, 0);
  assert_string_equal(host, "127.0.0.1");
  assert_string_equal(port, "4567");
  assert_string_equal(path, "/a/b?x=1");
  assert_int_equal(kcld_h2_parse_url("http://[::1]:80", &tls, host,
                                     sizeof(host), port, sizeof(port),
                                     &path), 0);
  assert_string_equal(host, "::1");
  assert_string_equal(port, "80");
  assert_int_equal(kcld_h2_parse_url("http://[::1]", &tls, host,
                                     sizeof(host), port, sizeof(port),
                                     &path), 0);
  assert_string_equal(port, "80");
  static const char *const bad[] = {"ftp://h", "h:1", "http://", "http://:1",
                                    "http://h:x1", "http://h:", "http://[::1",
                                    "http://h:123456789", NULL};
  for (const char *const *u = bad; *u; u++)
    assert_int_equal(kcld_h2_parse_url(*u, &tls, host, sizeof(host), port,
                                       sizeof(port), &path), KCLD_EINVAL);
}

/* The header block as "name=value" pairs joined by '|'. */
static void joined(const struct kcld_h2_headers *h, char *out, size_t cap)
{
  out[0] = '\0';
  for (size_t i = 0; i < h->nvlen; i++) {
    size_t n = strlen(out);
    snprintf(out + n, cap - n, "%s%.*s=%.*s", i ? "|" : "",
             (int)h->nv[i].namelen, (const char *)h->nv[i].name,
             (int)h->nv[i].valuelen, (const char *)h->nv[i].value);
  }
}

static void test_headers(void **state)
{
  const char *const lines[] = {
    "Host: kinesis.example:8443", "Content-Type: application/x-amz-json-1.1",
    "X-Amz-Target: Kinesis_20131202.SubscribeToShard", "Expect:",
    "Connection: keep-alive", "Content-Length: 9", "X-Empty: ",
    "Authorization:  AWS4-HMAC-SHA256 sig", NULL};
  struct kcld_http_request req = {.method = "POST", .headers = lines,
                                  .body = "{}", .body_len = 2};
  struct kcld_h2_headers h;
  char out[1024];

  (void)state;
  assert_int_equal(kcld_h2_headers_build(&h, &req, 1, "kinesis.example",
                                         "8443", "/"), 0);
  joined(&h, out, sizeof(out));
  assert_string_equal(out,
    ":method=POST|:scheme=https|:authority=kinesis.example:8443|:path=/|"
    "content-type=application/x-amz-json-1.1|"
    "x-amz-target=Kinesis_20131202.SubscribeToShard|"
    "authorization=AWS4-HMAC-SHA256 sig|content-length=2|"
    "user-agent=kcld/" KCLD_VERSION_STRING);
  kcld_h2_headers_clean_up(&h);
  assert_null(h.block);

  /* No Host line: the authority from the URL, the port only when not the
   * scheme's own; an IPv6 host in brackets. */
  req.headers = NULL;
  assert_int_equal(kcld_h2_headers_build(&h, &req, 0, "::1", "4567", "/p"),
                   0);
  joined(&h, out, sizeof(out));
  assert_non_null(strstr(out, ":scheme=http|:authority=[::1]:4567|:path=/p"));
  kcld_h2_headers_clean_up(&h);
  assert_int_equal(kcld_h2_headers_build(&h, &req, 0, "h", "80", "/"), 0);
  joined(&h, out, sizeof(out));
  assert_non_null(strstr(out, ":authority=h|"));
  kcld_h2_headers_clean_up(&h);

  const char *const nameless[] = {": v", NULL};
  req.headers = nameless;
  assert_int_equal(kcld_h2_headers_build(&h, &req, 0, "h", "80", "/"),
                   KCLD_EINVAL);
  kcld_h2_headers_clean_up(&h);
}

static void test_no_proxy(void **state)
{
  (void)state;
  assert_false(kcld_h2_no_proxy_for(NULL, "a.example.com"));
  assert_false(kcld_h2_no_proxy_for("", "a.example.com"));
  assert_true(kcld_h2_no_proxy_for("*", "a.example.com"));
  assert_true(kcld_h2_no_proxy_for("x.org, example.com", "a.example.com"));
  assert_true(kcld_h2_no_proxy_for(".example.com", "a.example.com"));
  assert_true(kcld_h2_no_proxy_for("EXAMPLE.com:443", "example.com"));
  assert_true(kcld_h2_no_proxy_for("169.254.169.254,127.0.0.1",
                                   "127.0.0.1"));
  assert_false(kcld_h2_no_proxy_for("ample.com", "a.example.com"));
  assert_false(kcld_h2_no_proxy_for("a.example.com", "example.com"));
  assert_false(kcld_h2_no_proxy_for("127.0.0.1", "127.0.0.10"));
}

static void test_tunnel(void **state)
{
  char host[64], port[8], *req = (char *)"untouched";

  (void)state;
  /* None set, or the host goes direct: no tunnel. */
  assert_int_equal(kcld_h2_tunnel(NULL, NULL, "k.example", "443", host,
                                  sizeof(host), port, sizeof(port), &req), 0);
  assert_null(req);
  assert_int_equal(kcld_h2_tunnel("http://p:3128", "k.example", "k.example",
                                  "443", host, sizeof(host), port,
                                  sizeof(port), &req), 0);
  assert_null(req);

  assert_int_equal(kcld_h2_tunnel("http://us%40er:p%3Aw@proxy.lan:3128",
                                  "other", "k.example", "443", host,
                                  sizeof(host), port, sizeof(port), &req),
                   0);
  assert_string_equal(host, "proxy.lan");
  assert_string_equal(port, "3128");
  assert_string_equal(req, "CONNECT k.example:443 HTTP/1.1\r\n"
                           "Host: k.example:443\r\n"
                           "Proxy-Authorization: Basic dXNAZXI6cDp3\r\n\r\n");
  free(req);

  /* No scheme: http; no port: 1080 (curl's default); an IPv6 target in
   * brackets. */
  assert_int_equal(kcld_h2_tunnel("proxy.lan", NULL, "::1", "8443", host,
                                  sizeof(host), port, sizeof(port), &req),
                   0);
  assert_string_equal(port, "1080");
  assert_string_equal(req, "CONNECT [::1]:8443 HTTP/1.1\r\n"
                           "Host: [::1]:8443\r\n\r\n");
  free(req);

  assert_int_equal(kcld_h2_tunnel("https://proxy.lan", NULL, "k", "443",
                                  host, sizeof(host), port, sizeof(port),
                                  &req), KCLD_EINVAL);
  assert_null(req);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_parse_url),
    cmocka_unit_test(test_headers),
    cmocka_unit_test(test_no_proxy),
    cmocka_unit_test(test_tunnel),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
