/* fuzz_http_request.c — libFuzzer target for kcld_http_request_parse(), the
 * metrics endpoint's request-head parser.
 *
 * The input is the bytes received so far, without a terminating NUL.
 * Checked against http_server.h: a complete head ends in CRLF CRLF within
 * the input and its slices point into it; an error carries one of the
 * documented statuses; a buffer of KCLD_HTTP_MAX_HEAD bytes or more is
 * never answered with "more bytes needed"; and a complete head parses the
 * same whatever the bytes after it, while its prefixes only ever ask for
 * more (TCP may deliver a valid request in any pieces). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "fuzz.h"
#include "ops/http_server.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc;
  (void)argv;
  return 0;
}

static int inside(const char *p, size_t n, const char *base, size_t len)
{
  return p >= base && n <= len && (size_t)(p - base) <= len - n;
}

static void check_ok(const char *buf, size_t len, long rc,
                     const struct kcld_http_parsed *h)
{
  CHECK((size_t)rc <= len && rc >= 4);
  CHECK(memcmp(buf + rc - 4, "\r\n\r\n", 4) == 0);
  CHECK(h->status == 0);
  CHECK(h->method == KCLD_HTTP_OTHER || h->method == KCLD_HTTP_GET ||
        h->method == KCLD_HTTP_HEAD);
  CHECK(h->method_len > 0 && inside(h->method_text, h->method_len, buf, rc));
  CHECK(h->path_len > 0 && inside(h->path, h->path_len, buf, rc));
  CHECK(h->path[0] == '/');
  CHECK(h->path_len <= KCLD_HTTP_MAX_TARGET);
  if (h->query)
    CHECK(inside(h->query, h->query_len, buf, rc));
  CHECK(h->minor == 0 || h->minor == 1);
  CHECK(h->keep_alive == 0 || h->keep_alive == 1);
  CHECK(h->headers <= KCLD_HTTP_MAX_HEADERS);
}

static int documented(int status)
{
  static const int ok[] = {400, 405, 413, 414, 431, 501, 505};
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
    if (status == ok[i])
      return 1;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  const char *buf = (const char *)data;
  struct kcld_http_parsed h, again;

  memset(&h, 0xA5, sizeof(h));
  long rc = kcld_http_request_parse(buf, size, &h);
  if (rc < 0) {
    CHECK(rc == KCLD_EINVAL);
    CHECK(documented(h.status));
    return 0;
  }
  if (rc == 0) {
    CHECK(size < KCLD_HTTP_MAX_HEAD);
    return 0;
  }
  check_ok(buf, size, rc, &h);

  /* The head alone, in a buffer of its own size, parses the same. */
  char *head = malloc((size_t)rc);
  CHECK(head != NULL);
  memcpy(head, buf, (size_t)rc);
  memset(&again, 0, sizeof(again));
  CHECK(kcld_http_request_parse(head, (size_t)rc, &again) == rc);
  CHECK(again.method == h.method && again.path_len == h.path_len &&
        again.minor == h.minor && again.keep_alive == h.keep_alive &&
        again.headers == h.headers);

  /* Some prefixes: each must ask for more, not refuse. */
  size_t cuts[] = {0, 1, (size_t)rc / 3, (size_t)rc / 2, (size_t)rc - 2,
                   (size_t)rc - 1};
  for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
    char *part = malloc(cuts[i] ? cuts[i] : 1);
    CHECK(part != NULL);
    memcpy(part, head, cuts[i]);
    long prc = kcld_http_request_parse(part, cuts[i], &again);
    if (prc != 0)
      fprintf(stderr, "prefix of %zu bytes of a %ld-byte head: %ld "
              "(status %d)\n", cuts[i], rc, prc, again.status);
    CHECK(prc == 0);
    free(part);
  }
  free(head);
  return 0;
}
