/* json.c — the strict JSON scanner (see json.h).  Every function checks as
 * it goes, so a value scanned is a value valid; strings are classified a
 * byte at a time through a table, which keeps the common case (plain ASCII
 * text) one load and one compare per byte. */
#include "base/json.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/hex.h"
#include "base/utf8.h"

/* Byte classes inside a string: 0 plain ASCII, 1 '"', 2 '\\', 3 a control
 * character, 4 a byte above 0x7f. */
static const unsigned char k_str_cls[256] = {
  3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
  3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
  0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
  4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
  4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
  4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
  4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
  4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
  4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
  4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
};

static int fail(struct kcld_json_scan *sc, const char *at, const char *msg)
{
  sc->err = msg;
  sc->at = at;
  return -1;
}

void kcld_json_scan_init(struct kcld_json_scan *sc, const char *s, size_t n,
                         unsigned flags)
{
  sc->p = s;
  sc->start = s;
  sc->end = s + n;
  sc->err = NULL;
  sc->at = s;
  sc->flags = flags;
}

int kcld_json_scan_peek(struct kcld_json_scan *sc)
{
  const char *p = sc->p, *end = sc->end;
  while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
    p++;
  sc->p = p;
  return p < end ? (unsigned char)*p : -1;
}

/* ======== Strings ======== */

/* Checks the escape at p ('\\' at p[0], p + 2 <= end): returns the bytes it
 * takes, and adds to *extra the raw bytes beyond what it decodes to;
 * 0 with sc->err set when it is malformed. */
static size_t scan_escape(struct kcld_json_scan *sc, const unsigned char *p,
                          const unsigned char *end, size_t *extra,
                          unsigned char *nul)
{
  const char *at = (const char *)p;
  long u, lo;

  switch (p[1]) {
  case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r':
  case 't':
    *extra += 1;
    return 2;
  case 'u':
    break;
  default:
    fail(sc, at, "bad escape");
    return 0;
  }
  if (end - p < 6 || (u = kcld_hex_parse(at + 2, 4)) < 0) {
    fail(sc, at, "bad \\u escape");
    return 0;
  }
  if (u >= 0xdc00 && u <= 0xdfff) {
    fail(sc, at, "lone low surrogate");
    return 0;
  }
  if (u < 0xd800 || u > 0xdbff) {
    *extra += 6 - (u < 0x80 ? 1 : u < 0x800 ? 2 : 3);
    if (u == 0)
      *nul = 1;
    return 6;
  }
  if (end - p < 12 || p[6] != '\\' || p[7] != 'u' ||
      (lo = kcld_hex_parse(at + 8, 4)) < 0 || lo < 0xdc00 || lo > 0xdfff) {
    fail(sc, at, "lone high surrogate");
    return 0;
  }
  *extra += 12 - 4;
  return 12;
}

/* A word with a byte below 0x20, at or above 0x80, '"' or '\\' (the exact
 * "has less than" and "has zero byte" tests; which byte is left to the
 * table). */
static int word_special(uint64_t w)
{
  const uint64_t ones = 0x0101010101010101ULL, high = ones << 7;
  uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');
  uint64_t lt = (w - ones * 0x20) & ~w, zq = (q - ones) & ~q,
           zb = (b - ones) & ~b;
  return ((lt | zq | zb | w) & high) != 0;
}

/* The first byte at or after p that is not plain string text (class 0 of
 * k_str_cls), or end: eight bytes a step while they are all plain.  Long
 * strings (base64 payloads) are most of a GetRecords body. */
static const unsigned char *skip_plain(const unsigned char *p,
                                       const unsigned char *end)
{
  uint64_t w;
  while (end - p >= 8) {
    memcpy(&w, p, 8);
    if (word_special(w))
      break;
    p += 8;
  }
  while (p < end && k_str_cls[*p] == 0)
    p++;
  return p;
}

/* Scans a string whose opening quote is at sc->p. */
static int scan_string(struct kcld_json_scan *sc, struct kcld_json_val *v)
{
  const unsigned char *p = (const unsigned char *)sc->p + 1;
  const unsigned char *end = (const unsigned char *)sc->end;
  const unsigned char *s = p;
  size_t extra = 0, n; /* extra: raw bytes minus decoded bytes */
  unsigned char esc = 0, nul = 0;

  for (;;) {
    p = skip_plain(p, end);
    if (p >= end)
      return fail(sc, (const char *)p, "unterminated string");
    switch (k_str_cls[*p]) {
    case 1:
      goto done;
    case 3:
      return fail(sc, (const char *)p, "control character in a string");
    case 4:
      if ((n = kcld_utf8_char_len(p, (size_t)(end - p))) == 0)
        return fail(sc, (const char *)p, "invalid UTF-8 in a string");
      p += n;
      break;
    default: /* '\\' */
      esc = 1;
      if (end - p < 2)
        return fail(sc, (const char *)p, "unterminated string");
      if ((n = scan_escape(sc, p, end, &extra, &nul)) == 0)
        return -1;
      p += n;
    }
  }
done:
  if (v) {
    v->type = KCLD_JSON_STRING;
    v->p = (const char *)s;
    v->raw = (size_t)(p - s);
    v->len = v->raw - extra;
    v->esc = esc;
    v->nul = nul;
  }
  sc->p = (const char *)p + 1;
  return 0;
}

/* Decodes the escape at p (scanned, so well-formed) into out; returns the
 * bytes written and advances *pp past it. */
static size_t decode_escape(const char **pp, char *out)
{
  const char *p = *pp;
  unsigned long u;

  *pp = p + 2;
  switch (p[1]) {
  case 'b': *out = '\b'; return 1;
  case 'f': *out = '\f'; return 1;
  case 'n': *out = '\n'; return 1;
  case 'r': *out = '\r'; return 1;
  case 't': *out = '\t'; return 1;
  case 'u': break;
  default: *out = p[1]; return 1; /* '"', '\\', '/' */
  }
  u = (unsigned long)kcld_hex_parse(p + 2, 4);
  *pp = p + 6;
  if (u >= 0xd800 && u <= 0xdbff) {
    unsigned long lo = (unsigned long)kcld_hex_parse(p + 8, 4);
    u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
    *pp = p + 12;
  }
  return (size_t)(kcld_utf8_put(out, (uint32_t)u) - out);
}

void kcld_json_decode(const struct kcld_json_val *v, char *out)
{
  const char *p = v->p, *end = v->p + v->raw;

  if (!v->esc) {
    memcpy(out, p, v->raw);
    return;
  }
  while (p < end) {
    const char *bs = memchr(p, '\\', (size_t)(end - p));
    size_t n = bs ? (size_t)(bs - p) : (size_t)(end - p);
    memcpy(out, p, n);
    out += n;
    p += n;
    if (bs)
      out += decode_escape(&p, out);
  }
}

int kcld_json_equals(const struct kcld_json_val *v, const char *s, size_t n)
{
  const char *p = v->p, *end = v->p + v->raw;
  char u[4];

  if (v->len != n)
    return 0;
  if (!v->esc)
    return memcmp(p, s, n) == 0;
  while (p < end) {
    size_t k = 1;
    if (*p != '\\')
      u[0] = *p++;
    else
      k = decode_escape(&p, u);
    if (memcmp(u, s, k) != 0)
      return 0;
    s += k;
  }
  return 1;
}

/* ======== Numbers and literals ======== */

/* jansson quirk, kept so that the same texts pass: after a number or a
 * literal it puts back the byte that ended the token, and a NUL byte put
 * back reads as "nothing buffered", so one NUL byte right after such a
 * token is skipped ({"a":1<NUL>} is accepted). */
static const char *token_end(const struct kcld_json_scan *sc, const char *p)
{
  if ((sc->flags & KCLD_JSON_JANSSON) && p < sc->end && *p == '\0')
    return p + 1;
  return p;
}

static int is_digit(const char *p, const char *end)
{
  return p < end && *p >= '0' && *p <= '9';
}

/* jansson's limits on the number p[0..q) (ndig integer digits from
 * `digits`): an integer must fit an int64_t, a real must not overflow a
 * double.  Sets v's values. */
static int number_value(struct kcld_json_scan *sc, const char *p,
                        const char *q, const char *digits, int isint,
                        struct kcld_json_val *v)
{
  size_t ndig = (size_t)(q - digits), tlen = (size_t)(q - p);
  int64_t iv = 0;
  double dv;
  char buf[64], *text = buf, *e;

  /* strtoll() and strtod() want a C string: the text is copied (into buf
   * unless it is a very long real).  An integer of over 19 digits cannot
   * fit (JSON has no leading zeros). */
  if (isint && ndig <= 18) {
    for (const char *d = digits; d < q; d++)
      iv = iv * 10 + (*d - '0');
    if (*p == '-')
      iv = -iv;
    dv = (double)iv;
  } else if (isint) {
    if (ndig > 19)
      return fail(sc, p, *p == '-' ? "too big negative integer"
                                   : "too big integer");
    memcpy(buf, p, tlen);
    buf[tlen] = '\0';
    errno = 0;
    long long ll = strtoll(buf, &e, 10);
    if (errno == ERANGE)
      return fail(sc, p, ll < 0 ? "too big negative integer"
                                : "too big integer");
    iv = ll;
    dv = (double)iv;
  } else {
    if (tlen >= sizeof(buf) && (text = malloc(tlen + 1)) == NULL)
      return fail(sc, p, "out of memory");
    memcpy(text, p, tlen);
    text[tlen] = '\0';
    errno = 0;
    dv = strtod(text, &e);
    int overflow = (dv == HUGE_VAL || dv == -HUGE_VAL) && errno == ERANGE;
    if (text != buf)
      free(text);
    if (overflow)
      return fail(sc, p, "real number overflow");
  }
  if (v) {
    v->inum = iv;
    v->num = dv;
  }
  return 0;
}

/* Scans a number at sc->p ('-' or a digit). */
static int scan_number(struct kcld_json_scan *sc, struct kcld_json_val *v)
{
  const char *p = sc->p, *end = sc->end, *q = p, *digits;
  int isint = 1;

  if (*q == '-')
    q++;
  if (!is_digit(q, end))
    return fail(sc, p, "bad number");
  digits = q;
  if (*q == '0') {
    if (is_digit(++q, end))
      return fail(sc, p, "leading zero in a number");
  } else {
    while (is_digit(q, end))
      q++;
  }
  if (q < end && *q == '.') {
    if (!is_digit(++q, end))
      return fail(sc, p, "bad number fraction");
    while (is_digit(q, end))
      q++;
    isint = 0;
  }
  if (q < end && (*q == 'e' || *q == 'E')) {
    q++;
    if (q < end && (*q == '+' || *q == '-'))
      q++;
    if (!is_digit(q, end))
      return fail(sc, p, "bad number exponent");
    while (is_digit(q, end))
      q++;
    isint = 0;
  }
  if (sc->flags & KCLD_JSON_JANSSON) {
    /* jansson: a number cannot end a document. */
    if (q >= end)
      return fail(sc, q, "unexpected end of input after a number");
    if (number_value(sc, p, q, digits, isint, v) != 0)
      return -1;
  }
  if (v) {
    v->type = KCLD_JSON_NUMBER;
    v->p = p;
    v->raw = (size_t)(q - p);
    v->isint = (unsigned char)isint;
  }
  sc->p = token_end(sc, q);
  return 0;
}

static int scan_word(struct kcld_json_scan *sc, const char *w, size_t n)
{
  if ((size_t)(sc->end - sc->p) < n || memcmp(sc->p, w, n) != 0)
    return fail(sc, sc->p, "unexpected character");
  sc->p = token_end(sc, sc->p + n);
  return 0;
}

/* ======== Containers ======== */

int kcld_json_scan_open(struct kcld_json_scan *sc, int c, int depth)
{
  if (depth > KCLD_JSON_MAX_DEPTH)
    return fail(sc, sc->p, "maximum parsing depth reached");
  if (kcld_json_scan_peek(sc) != c)
    return fail(sc, sc->p, c == '{' ? "expected '{'" : "expected '['");
  sc->p++;
  return 0;
}

int kcld_json_scan_element(struct kcld_json_scan *sc, int *first)
{
  int c = kcld_json_scan_peek(sc);
  if (c == ']') {
    *first = 0;
    sc->p++;
    return 0;
  }
  if (*first) {
    *first = 0;
    return 1;
  }
  if (c != ',')
    return fail(sc, sc->p, "expected ',' or ']'");
  sc->p++;
  return 1;
}

int kcld_json_scan_member(struct kcld_json_scan *sc, int *first,
                          struct kcld_json_val *key)
{
  int c = kcld_json_scan_peek(sc);

  if (c == '}') {
    *first = 0;
    sc->p++;
    return 0;
  }
  if (!*first) {
    if (c != ',')
      return fail(sc, sc->p, "expected ',' or '}'");
    sc->p++;
    c = kcld_json_scan_peek(sc);
  }
  *first = 0;
  if (c != '"')
    return fail(sc, sc->p, "expected a member name");
  if (scan_string(sc, key) != 0)
    return -1;
  if (key->nul)
    return fail(sc, key->p, "member name holds U+0000");
  if (kcld_json_scan_peek(sc) != ':')
    return fail(sc, sc->p, "expected ':'");
  sc->p++;
  return 1;
}

int kcld_json_scan_value(struct kcld_json_scan *sc, struct kcld_json_val *v,
                         int depth)
{
  struct kcld_json_val key;
  int c = kcld_json_scan_peek(sc), first = 1, rc;

  if (depth > KCLD_JSON_MAX_DEPTH)
    return fail(sc, sc->p, "maximum parsing depth reached");
  if (v)
    v->p = sc->p;
  switch (c) {
  case '"':
    return scan_string(sc, v);
  case '{':
    sc->p++;
    while ((rc = kcld_json_scan_member(sc, &first, &key)) > 0)
      if (kcld_json_scan_value(sc, NULL, depth + 1) != 0)
        return -1;
    if (rc == 0 && v)
      v->type = KCLD_JSON_OBJECT;
    return rc;
  case '[':
    sc->p++;
    while ((rc = kcld_json_scan_element(sc, &first)) > 0)
      if (kcld_json_scan_value(sc, NULL, depth + 1) != 0)
        return -1;
    if (rc == 0 && v)
      v->type = KCLD_JSON_ARRAY;
    return rc;
  case 't':
  case 'f':
  case 'n':
    if (v)
      v->type = c == 'n' ? KCLD_JSON_NULL : KCLD_JSON_BOOL;
    return c == 't'   ? scan_word(sc, "true", 4)
           : c == 'f' ? scan_word(sc, "false", 5)
                      : scan_word(sc, "null", 4);
  case -1:
    return fail(sc, sc->p, "unexpected end of input");
  default:
    if (c == '-' || (c >= '0' && c <= '9'))
      return scan_number(sc, v);
    return fail(sc, sc->p, "unexpected character");
  }
}

int kcld_json_scan_finish(struct kcld_json_scan *sc)
{
  if (kcld_json_scan_peek(sc) != -1)
    return fail(sc, sc->p, "trailing data after the JSON value");
  return 0;
}

void kcld_json_scan_position(const struct kcld_json_scan *sc, int *line,
                             int *col)
{
  const char *line_start = sc->start;
  *line = 1;
  for (const char *p = sc->start; p < sc->at; p++) {
    if (*p == '\n') {
      (*line)++;
      line_start = p + 1;
    }
  }
  *col = (int)(sc->at - line_start) + 1;
}
