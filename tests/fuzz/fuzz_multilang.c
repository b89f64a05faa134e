/* fuzz_multilang.c — libFuzzer target for the MultiLang child side:
 * kcld_child_lines_feed() (stdout bytes -> lines, handlers/child.h) and
 * kcld_multilang_parse() (one line -> message).
 *
 * Input: byte 0 picks the chunk size the bytes arrive in (1..16), byte 1
 * the longest line kept (1..256), the rest is what the child wrote.  The
 * lines that come out are compared with a model of child.h's promise:
 * one callback per complete line, CR before LF dropped; a line longer than
 * the limit (CR included) reported once, as too long, with its first bytes
 * (also when it has no newline yet); a short incomplete last line kept back.
 * Every line is then parsed, and the parsed message must be one of the
 * documented kinds with NUL-terminated strings. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "fuzz.h"
#include "handlers/child.h"
#include "handlers/multilang.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc;
  (void)argv;
  return 0;
}

struct expect {
  const char *in;   /* the stream */
  size_t len, pos;  /* where the next expected line starts */
  size_t max;
  size_t calls;
};

static void check_msg(const struct kcld_multilang_msg *m)
{
  CHECK(m->kind >= KCLD_MULTILANG_NOT_JSON &&
        m->kind <= KCLD_MULTILANG_CHECKPOINT);
  CHECK(memchr(m->response_for, '\0', sizeof(m->response_for)) != NULL);
  CHECK(memchr(m->sequence, '\0', sizeof(m->sequence)) != NULL);
  if (m->kind == KCLD_MULTILANG_STATUS)
    CHECK(m->response_for[0] != '\0');
  if (m->kind == KCLD_MULTILANG_CHECKPOINT)
    CHECK(m->has_sequence == 0 || m->has_sequence == 1);
}

/* The line callback: checks the line against the model, then parses it. */
static void on_line(void *arg, const char *line, size_t len, int too_long)
{
  struct expect *e = arg;
  CHECK(e->pos <= e->len);
  const char *start = e->in + e->pos;
  size_t left = e->len - e->pos;
  const char *nl = memchr(start, '\n', left);
  size_t raw = nl ? (size_t)(nl - start) : left;
  e->calls++;
  if (raw > e->max) {
    CHECK(too_long == 1);
    CHECK(len == e->max);
    CHECK(memcmp(line, start, len) == 0);
  } else {
    CHECK(nl != NULL);  /* a short line is given only once complete */
    CHECK(too_long == 0);
    size_t want = raw > 0 && start[raw - 1] == '\r' ? raw - 1 : raw;
    CHECK(len == want);
    CHECK(len == 0 || memcmp(line, start, len) == 0);
  }
  e->pos += nl ? raw + 1 : left;

  struct kcld_multilang_msg m;
  memset(&m, 0xA5, sizeof(m));
  kcld_multilang_parse(line, len, &m);
  check_msg(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 2)
    return 0;
  size_t chunk = (size_t)(data[0] % 16) + 1;
  size_t max = (size_t)data[1] + 1;
  const char *in = (const char *)data + 2;
  size_t len = size - 2;

  /* The whole rest as one line, as a child might write it. */
  struct kcld_multilang_msg m;
  memset(&m, 0xA5, sizeof(m));
  kcld_multilang_parse(in, len, &m);
  check_msg(&m);

  struct expect e = {in, len, 0, max, 0};
  struct kcld_child_lines l;
  memset(&l, 0, sizeof(l));
  l.max = max;
  for (size_t off = 0; off < len; off += chunk) {
    size_t n = len - off < chunk ? len - off : chunk;
    CHECK(kcld_child_lines_feed(&l, in + off, n, on_line, &e) == 0);
  }
  /* Whatever is left unreported is a short last line without its LF. */
  size_t rest = len - e.pos;
  CHECK(memchr(in + e.pos, '\n', rest) == NULL && rest <= max);
  kcld_child_lines_free(&l);
  return 0;
}
