/* getrecords.c — GetRecords response parsing into one record batch.
 *
 * No JSON tree and no allocation per record:
 *   0. one validating scan of the body (json_scan.h) notes where the value
 *      of each member of interest lies - for every record its Data,
 *      PartitionKey, SequenceNumber, ApproximateArrivalTimestamp and
 *      EncryptionType - in a temporary array; unknown members are checked
 *      and skipped, and a member given twice counts by its last value, as
 *      jansson does;
 *   A. validate every member and add up the exact sizes;
 *   B. allocate the main block (batch, Kinesis records, child shards,
 *      strings, decoded payloads), copy and decode into it, and scan each
 *      payload for a KPL aggregate;
 *   C. only if some aggregate expands: allocate a second block for the user
 *      records and their key tables and expand into it.
 * Warnings for aggregates passed through are logged in pass C, so that a
 * response refused as a whole logs nothing but its error. */
#include "consume/getrecords.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base64.h"
#include "base/hex.h"
#include "base/seq.h"
#include "base/utf8.h"
#include "consume/deagg.h"
#include "err.h"
#include "log.h"

/* ======== JSON scanning ========
 *
 * A validating scanner (it allocates only to convert a real number written
 * in over 63 characters) that accepts and refuses exactly what
 * jansson 2.14's json_loadb(..., JSON_ALLOW_NUL) does: strict UTF-8 in
 * strings, no control characters, \u escapes with surrogate pairs, numbers
 * per the JSON grammar with integers that fit an int64_t and reals that do
 * not overflow a double, object keys without NUL, at most JSON_MAX_DEPTH
 * nested values.  Strings are not copied: a scanned value points into the
 * body and is decoded when it is stored.  fuzz_getrecords.c checks it
 * against jansson on every input. */

/* jansson's JSON_PARSER_MAX_DEPTH: the top-level value is at depth 1. */
#define JSON_MAX_DEPTH 2048

enum jtype {
  J_ABSENT = 0,
  J_NULL,
  J_BOOL,
  J_NUMBER,
  J_STRING,
  J_ARRAY,
  J_OBJECT
};

/* One scanned value.  For a string, p..p+raw is the text between the quotes
 * and len its decoded length; for an array or object, p is its opening
 * bracket. */
struct jval {
  const char *p;
  size_t raw;
  size_t len;
  double num;          /* numbers: the value as a double */
  int64_t inum;        /* integers: the exact value */
  unsigned char type;  /* enum jtype */
  unsigned char esc;   /* string: holds escapes (decode before use) */
  unsigned char nul;   /* string: decodes to text holding a NUL */
  unsigned char isint; /* number: written without fraction or exponent */
};

/* The scanning position.  On error, err is a static message and at the
 * offending position. */
struct jscan {
  const char *p, *end, *start;
  const char *err;
  const char *at;
};

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

static void js_decode(const struct jval *v, char *out);

static int jfail(struct jscan *sc, const char *at, const char *msg)
{
  sc->err = msg;
  sc->at = at;
  return -1;
}

/* Starts scanning s[0..n). */
static void js_init(struct jscan *sc, const char *s, size_t n)
{
  sc->p = s;
  sc->start = s;
  sc->end = s + n;
  sc->err = NULL;
  sc->at = s;
}

/* Skips white space; returns the next byte, or -1 at the end. */
static int js_peek(struct jscan *sc)
{
  const char *p = sc->p, *end = sc->end;
  while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
    p++;
  sc->p = p;
  return p < end ? (unsigned char)*p : -1;
}

/* Scans a string whose opening quote is at sc->p. */
static int scan_string(struct jscan *sc, struct jval *v)
{
  const unsigned char *p = (const unsigned char *)sc->p + 1;
  const unsigned char *end = (const unsigned char *)sc->end;
  const unsigned char *s = p;
  size_t extra = 0; /* raw bytes minus decoded bytes */
  unsigned char esc = 0, nul = 0;

  for (;;) {
    while (p < end && k_str_cls[*p] == 0)
      p++;
    if (p >= end)
      return jfail(sc, (const char *)p, "premature end of input in string");
    switch (k_str_cls[*p]) {
    case 1:
      goto done;
    case 3:
      return jfail(sc, (const char *)p, "control character in string");
    case 4: {
      size_t n = kcld_utf8_char_len(p, (size_t)(end - p));
      if (n == 0)
        return jfail(sc, (const char *)p, "invalid UTF-8 in string");
      p += n;
      break;
    }
    default: /* '\\' */
      esc = 1;
      if (end - p < 2)
        return jfail(sc, (const char *)p, "premature end of input in string");
      switch (p[1]) {
      case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r':
      case 't':
        p += 2;
        extra += 1;
        break;
      case 'u': {
        long u;
        if (end - p < 6 || (u = kcld_hex_parse((const char *)p + 2, 4)) < 0)
          return jfail(sc, (const char *)p, "invalid \\u escape");
        if (u >= 0xd800 && u <= 0xdbff) {
          long lo;
          if (end - p < 12 || p[6] != '\\' || p[7] != 'u' ||
              (lo = kcld_hex_parse((const char *)p + 8, 4)) < 0 ||
              lo < 0xdc00 || lo > 0xdfff)
            return jfail(sc, (const char *)p, "invalid Unicode surrogate");
          p += 12;
          extra += 12 - 4;
        } else if (u >= 0xdc00 && u <= 0xdfff) {
          return jfail(sc, (const char *)p, "invalid Unicode surrogate");
        } else {
          p += 6;
          extra += 6 - (u < 0x80 ? 1 : u < 0x800 ? 2 : 3);
          if (u == 0)
            nul = 1;
        }
        break;
      }
      default:
        return jfail(sc, (const char *)p, "invalid escape");
      }
    }
  }
done:
  if (v) {
    v->type = J_STRING;
    v->p = (const char *)s;
    v->raw = (size_t)(p - s);
    v->len = v->raw - extra;
    v->esc = esc;
    v->nul = nul;
  }
  sc->p = (const char *)p + 1;
  return 0;
}

/* jansson quirk, kept so that the same bodies pass: after a number or a
 * literal it puts back the byte that ended the token, and a NUL byte put
 * back reads as "nothing buffered", so one NUL byte right after such a
 * token is skipped ({"a":1<NUL>} is accepted). */
static const char *skip_nul(const char *p, const char *end)
{
  return p < end && *p == '\0' ? p + 1 : p;
}

static int is_digit(const char *p, const char *end)
{
  return p < end && *p >= '0' && *p <= '9';
}

/* Scans a number at sc->p ('-' or a digit). */
static int scan_number(struct jscan *sc, struct jval *v)
{
  const char *p = sc->p, *end = sc->end, *q = p, *digits;
  int isint = 1;

  if (*q == '-')
    q++;
  if (!is_digit(q, end))
    return jfail(sc, p, "invalid number");
  digits = q;
  if (*q == '0')
    q++;
  else
    while (is_digit(q, end))
      q++;
  size_t ndig = (size_t)(q - digits);
  if (q < end && *q == '.') {
    q++;
    if (!is_digit(q, end))
      return jfail(sc, p, "invalid number");
    while (is_digit(q, end))
      q++;
    isint = 0;
  }
  if (q < end && (*q == 'e' || *q == 'E')) {
    q++;
    if (q < end && (*q == '+' || *q == '-'))
      q++;
    if (!is_digit(q, end))
      return jfail(sc, p, "invalid number");
    while (is_digit(q, end))
      q++;
    isint = 0;
  }
  /* A number cannot end a document. */
  if (q >= end)
    return jfail(sc, q, "premature end of input after a number");

  /* strtoll() and strtod() want a C string: the text is copied (into buf
   * unless it is a very long real).  An integer of over 19 digits cannot
   * fit (JSON has no leading zeros). */
  size_t tlen = (size_t)(q - p);
  int64_t iv = 0;
  double dv;
  char buf[64], *text = buf, *e;
  if (isint && ndig <= 18) {
    for (const char *d = digits; d < q; d++)
      iv = iv * 10 + (*d - '0');
    if (*p == '-')
      iv = -iv;
    dv = (double)iv;
  } else if (isint) {
    if (ndig > 19)
      return jfail(sc, p, *p == '-' ? "too big negative integer"
                                    : "too big integer");
    memcpy(buf, p, tlen);
    buf[tlen] = '\0';
    errno = 0;
    long long ll = strtoll(buf, &e, 10);
    if (errno == ERANGE)
      return jfail(sc, p, ll < 0 ? "too big negative integer"
                                 : "too big integer");
    iv = ll;
    dv = (double)iv;
  } else {
    if (tlen >= sizeof(buf) && (text = malloc(tlen + 1)) == NULL)
      return jfail(sc, p, "out of memory");
    memcpy(text, p, tlen);
    text[tlen] = '\0';
    errno = 0;
    dv = strtod(text, &e);
    int overflow = (dv == HUGE_VAL || dv == -HUGE_VAL) && errno == ERANGE;
    if (text != buf)
      free(text);
    if (overflow)
      return jfail(sc, p, "real number overflow");
  }
  if (v) {
    v->type = J_NUMBER;
    v->p = p;
    v->raw = (size_t)(q - p);
    v->isint = (unsigned char)isint;
    v->inum = iv;
    v->num = dv;
  }
  sc->p = skip_nul(q, end);
  return 0;
}

static int scan_word(struct jscan *sc, const char *w, size_t n)
{
  if ((size_t)(sc->end - sc->p) < n || memcmp(sc->p, w, n) != 0)
    return jfail(sc, sc->p, "invalid token");
  sc->p = skip_nul(sc->p + n, sc->end);
  return 0;
}

/* Consumes the opening '{' or '[' (c) of a value at `depth`; -1 if the
 * depth is too great or the byte is not c. */
static int js_open(struct jscan *sc, int c, int depth)
{
  if (depth > JSON_MAX_DEPTH)
    return jfail(sc, sc->p, "maximum parsing depth reached");
  if (js_peek(sc) != c)
    return jfail(sc, sc->p, c == '{' ? "'{' expected" : "'[' expected");
  sc->p++;
  return 0;
}

/* Element iteration, after js_open(sc, '[', ...) and with *first = 1:
 * returns 1 with the position at the next element, 0 when the ']' was
 * consumed, -1 on error. */
static int js_element(struct jscan *sc, int *first)
{
  int c = js_peek(sc);
  if (c == ']') {
    if (*first)
      *first = 0;
    sc->p++;
    return 0;
  }
  if (*first) {
    *first = 0;
    return 1;
  }
  if (c != ',')
    return jfail(sc, sc->p, "']' expected");
  sc->p++;
  return 1;
}

/* Member iteration, after js_open(sc, '{', ...) and with *first = 1:
 * returns 1 with the decoded key in key[0..*keylen) (incomplete when longer
 * than keycap; *keylen is the full length) and the position at the value,
 * 0 when the '}' was consumed, -1 on error. */
static int js_member(struct jscan *sc, int *first, char *key,
                          size_t keycap, size_t *keylen)
{
  struct jval k;
  int c = js_peek(sc);

  if (*first) {
    *first = 0;
    if (c == '}') {
      sc->p++;
      return 0;
    }
  } else {
    if (c == '}') {
      sc->p++;
      return 0;
    }
    if (c != ',')
      return jfail(sc, sc->p, "'}' expected");
    sc->p++;
    c = js_peek(sc);
  }
  if (c != '"')
    return jfail(sc, sc->p, "string or '}' expected");
  if (scan_string(sc, &k) != 0)
    return -1;
  if (k.nul)
    return jfail(sc, k.p, "NUL byte in object key not supported");
  *keylen = k.len;
  if (!k.esc)
    memcpy(key, k.p, k.len < keycap ? k.len : keycap);
  else if (k.len <= keycap)
    js_decode(&k, key);
  if (js_peek(sc) != ':')
    return jfail(sc, sc->p, "':' expected");
  sc->p++;
  return 1;
}

/* Scans one value of any type at `depth`, validating all of it, into *v
 * (may be NULL).  Returns 0, or -1 with sc->err set. */
static int js_value(struct jscan *sc, struct jval *v,
                         int depth)
{
  int c = js_peek(sc), first = 1, rc;

  if (depth > JSON_MAX_DEPTH)
    return jfail(sc, sc->p, "maximum parsing depth reached");
  if (v)
    v->p = sc->p;
  switch (c) {
  case '"':
    return scan_string(sc, v);
  case '{':
    sc->p++;
    for (;;) {
      char key[1];
      size_t klen;
      if ((rc = js_member(sc, &first, key, 0, &klen)) <= 0)
        break;
      if (js_value(sc, NULL, depth + 1) != 0)
        return -1;
    }
    if (rc < 0)
      return -1;
    if (v)
      v->type = J_OBJECT;
    return 0;
  case '[':
    sc->p++;
    while ((rc = js_element(sc, &first)) > 0) {
      if (js_value(sc, NULL, depth + 1) != 0)
        return -1;
    }
    if (rc < 0)
      return -1;
    if (v)
      v->type = J_ARRAY;
    return 0;
  case 't':
    if (v)
      v->type = J_BOOL;
    return scan_word(sc, "true", 4);
  case 'f':
    if (v)
      v->type = J_BOOL;
    return scan_word(sc, "false", 5);
  case 'n':
    if (v)
      v->type = J_NULL;
    return scan_word(sc, "null", 4);
  case -1:
    return jfail(sc, sc->p, "premature end of input");
  default:
    if (c == '-' || (c >= '0' && c <= '9'))
      return scan_number(sc, v);
    return jfail(sc, sc->p, "invalid token");
  }
}

/* After the top-level value: 0 if only white space remains, else -1. */
static int js_finish(struct jscan *sc)
{
  if (js_peek(sc) != -1)
    return jfail(sc, sc->p, "end of file expected");
  return 0;
}

/* Writes the decoded string v (type J_STRING) into out[0..v->len). */
static void js_decode(const struct jval *v, char *out)
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
    if (!bs)
      break;
    switch (p[1]) {
    case 'b': *out++ = '\b'; p += 2; break;
    case 'f': *out++ = '\f'; p += 2; break;
    case 'n': *out++ = '\n'; p += 2; break;
    case 'r': *out++ = '\r'; p += 2; break;
    case 't': *out++ = '\t'; p += 2; break;
    case 'u': {
      unsigned long u = (unsigned long)kcld_hex_parse(p + 2, 4);
      p += 6;
      if (u >= 0xd800 && u <= 0xdbff) {
        unsigned long lo = (unsigned long)kcld_hex_parse(p + 2, 4);
        u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
        p += 6;
      }
      out = kcld_utf8_put(out, (uint32_t)u);
      break;
    }
    default: /* '"', '\\', '/' */
      *out++ = p[1];
      p += 2;
    }
  }
}

/* Verdicts kept in an outer record's `aggregated` between passes B and C. */
enum { V_PLAIN = 0, V_AGGREGATE = 1, V_CORRUPT = 2 };

/* Largest accepted ApproximateArrivalTimestamp, in seconds (year ~5138). */
#define MAX_ARRIVAL_S 1e11

/* Depths of values, as jansson counts them: the response object is 1. */
#define D_TOP 1
#define D_MEMBER 2
#define D_ELEMENT 3
#define D_FIELD 4

/* The members of one element of Records, as found in the scan. */
struct jrec {
  struct jval data, pk, seq, ts, enc;
  int is_object;
};

/* What the scan found at the top level. */
struct found {
  struct jval records, next, mbl, children;
  struct jrec *recs; /* when records is an array: its elements */
  size_t n, cap;
};

/* Sizes of everything that goes into the main block. */
struct sizes {
  size_t n;        /* Kinesis records */
  size_t n_child;  /* child shards */
  size_t n_parent; /* parent shard ids over all child shards */
  size_t str;      /* NUL-terminated strings */
  size_t data;     /* decoded payload slots */
};

static int fail(char *errbuf, size_t errlen, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));

static int fail(char *errbuf, size_t errlen, const char *fmt, ...)
{
  if (errbuf && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
  }
  return KCLD_EPARSE;
}

static size_t align8(size_t n)
{
  return (n + 7) & ~(size_t)7;
}

/* ======== Scan ======== */

/* 1 when the decoded key k[0..klen) is `name`. */
static int key_is(const char *k, size_t klen, const char *name)
{
  size_t n = strlen(name);
  return klen == n && memcmp(k, name, n) == 0;
}

/* Key buffer size: longer keys match no member of interest. */
#define KEYCAP 32

/* Scans the object at the position (at `depth`) into v[k] for each member
 * named names[k] (the last one given wins); others are skipped. */
static int scan_members(struct jscan *sc, int depth,
                        const char *const *names, size_t nnames,
                        struct jval *v)
{
  char key[KEYCAP];
  size_t klen;
  int first = 1, rc;

  if (js_open(sc, '{', depth) != 0)
    return -1;
  while ((rc = js_member(sc, &first, key, sizeof(key),
                                     &klen)) > 0) {
    struct jval *dst = NULL;
    for (size_t k = 0; k < nnames && dst == NULL; k++)
      if (key_is(key, klen, names[k]))
        dst = &v[k];
    if (js_value(sc, dst, depth + 1) != 0)
      return -1;
  }
  return rc;
}

static const char *const k_rec_names[] = {
  "Data", "PartitionKey", "SequenceNumber", "ApproximateArrivalTimestamp",
  "EncryptionType"
};

/* Scans the Records array at the position into f->recs. */
static int scan_records(struct jscan *sc, struct found *f)
{
  int first = 1, rc;

  f->n = 0;
  if (js_open(sc, '[', D_MEMBER) != 0)
    return -1;
  while ((rc = js_element(sc, &first)) > 0) {
    if (f->n == f->cap) {
      size_t cap = f->cap ? f->cap * 2 : 64;
      struct jrec *r = realloc(f->recs, cap * sizeof(*r));
      if (r == NULL)
        return -2;
      f->recs = r;
      f->cap = cap;
    }
    struct jrec *jr = &f->recs[f->n++];
    struct jval v[5];
    memset(v, 0, sizeof(v));
    jr->is_object = js_peek(sc) == '{';
    if (jr->is_object) {
      if (scan_members(sc, D_ELEMENT, k_rec_names, 5, v) != 0)
        return -1;
    } else if (js_value(sc, NULL, D_ELEMENT) != 0) {
      return -1;
    }
    jr->data = v[0];
    jr->pk = v[1];
    jr->seq = v[2];
    jr->ts = v[3];
    jr->enc = v[4];
  }
  if (rc < 0)
    return -1;
  f->records.type = J_ARRAY;
  return 0;
}

/* The whole body: 0, -1 (not JSON; sc says why), -2 (out of memory) or -3
 * (JSON, but not an object). */
static int scan_body(struct jscan *sc, struct found *f)
{
  char key[KEYCAP];
  size_t klen;
  int first = 1, rc, c = js_peek(sc);

  if (c == '[') {
    if (js_value(sc, NULL, D_TOP) != 0 ||
        js_finish(sc) != 0)
      return -1;
    return -3;
  }
  if (c != '{') {
    sc->err = "'[' or '{' expected";
    sc->at = sc->p;
    return -1;
  }
  if (js_open(sc, '{', D_TOP) != 0)
    return -1;
  while ((rc = js_member(sc, &first, key, sizeof(key),
                                     &klen)) > 0) {
    struct jval *dst = NULL;
    if (key_is(key, klen, "Records")) {
      if (js_peek(sc) == '[') {
        if ((rc = scan_records(sc, f)) != 0)
          return rc;
        continue;
      }
      dst = &f->records;
    } else if (key_is(key, klen, "NextShardIterator")) {
      dst = &f->next;
    } else if (key_is(key, klen, "MillisBehindLatest")) {
      dst = &f->mbl;
    } else if (key_is(key, klen, "ChildShards")) {
      dst = &f->children;
    }
    if (js_value(sc, dst, D_MEMBER) != 0)
      return -1;
  }
  if (rc < 0 || js_finish(sc) != 0)
    return -1;
  return 0;
}

/* Line and column (from 1, in bytes) of the scan error. */
static void err_position(const struct jscan *sc, int *line,
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

/* ======== Pass A: validate and size ======== */

/* Present: not absent and not null. */
static int present(const struct jval *v)
{
  return v->type != J_ABSENT && v->type != J_NULL;
}

/* A required string member, named in messages as where[i].infix key. */
static int need_string(const struct jval *v, const char *key,
                       const char *where, size_t i, const char *infix,
                       char *errbuf, size_t errlen)
{
  if (!present(v))
    return fail(errbuf, errlen, "%s[%zu].%s%s is missing", where, i, infix,
                key);
  if (v->type != J_STRING)
    return fail(errbuf, errlen, "%s[%zu].%s%s is not a string", where, i,
                infix, key);
  return 0;
}

/* Decodes string v into buf (cap bytes) or, when longer, into a new
 * allocation (*heap, to be freed); NUL-terminated.  NULL when out of
 * memory. */
static char *decode_tmp(const struct jval *v, char *buf, size_t cap,
                        char **heap)
{
  char *s = buf;
  *heap = NULL;
  if (v->len >= cap) {
    if ((s = *heap = malloc(v->len + 1)) == NULL)
      return NULL;
  }
  js_decode(v, s);
  s[v->len] = '\0';
  return s;
}

/* The string v compared as a C string (up to its first NUL) with `name`,
 * as strcmp(json_string_value(), name) == 0 did; -1 when out of memory. */
static int str_is(const struct jval *v, const char *name)
{
  char buf[64], *heap;
  if (!v->esc)
    return v->raw == strlen(name) && memcmp(v->p, name, v->raw) == 0;
  const char *s = decode_tmp(v, buf, sizeof(buf), &heap);
  if (s == NULL)
    return -1;
  int eq = strcmp(s, name) == 0;
  free(heap);
  return eq;
}

/* Validates Records[i] and adds its sizes. */
static int check_record(const struct jrec *jr, size_t i, struct sizes *sz,
                        char *errbuf, size_t errlen)
{
  char buf[256], *heap = NULL;
  int rc;

  if (!jr->is_object)
    return fail(errbuf, errlen, "Records[%zu] is not an object", i);
  if ((rc = need_string(&jr->seq, "SequenceNumber", "Records", i, "",
                        errbuf, errlen)) != 0)
    return rc;
  if (jr->seq.nul)
    return fail(errbuf, errlen, "Records[%zu].SequenceNumber holds a NUL "
                "character", i);
  const char *seq = decode_tmp(&jr->seq, buf, sizeof(buf), &heap);
  if (seq == NULL) {
    fail(errbuf, errlen, "out of memory");
    return KCLD_ENOMEM;
  }
  size_t seq_len = jr->seq.len;
  rc = KCLD_EPARSE;
  if (!kcld_seq_valid(seq)) {
    fail(errbuf, errlen, "Records[%zu].SequenceNumber \"%.*s\" is not a "
         "decimal sequence number", i, (int)(seq_len < 64 ? seq_len : 64),
         seq);
    goto out;
  }
  if ((rc = need_string(&jr->data, "Data", "Records", i, "", errbuf,
                        errlen)) != 0 ||
      (rc = need_string(&jr->pk, "PartitionKey", "Records", i, "", errbuf,
                        errlen)) != 0)
    goto out;
  rc = KCLD_EPARSE;

  size_t b64_len = jr->data.len;
  if (b64_len % 4 != 0) {
    fail(errbuf, errlen, "Records[%zu] (SequenceNumber %s): Data is not "
         "valid base64 (length %zu is not a multiple of 4)", i, seq,
         b64_len);
    goto out;
  }
  if (present(&jr->ts)) {
    double t = jr->ts.num;
    if (jr->ts.type != J_NUMBER) {
      fail(errbuf, errlen, "Records[%zu] (SequenceNumber %s): "
           "ApproximateArrivalTimestamp is not a number", i, seq);
      goto out;
    }
    if (!isfinite(t) || t < 0 || t > MAX_ARRIVAL_S) {
      fail(errbuf, errlen, "Records[%zu] (SequenceNumber %s): "
           "ApproximateArrivalTimestamp %g is out of range", i, seq, t);
      goto out;
    }
  }
  if (present(&jr->enc)) {
    if (jr->enc.type != J_STRING) {
      fail(errbuf, errlen, "Records[%zu] (SequenceNumber %s): "
           "EncryptionType is not a string", i, seq);
      goto out;
    }
    int none = str_is(&jr->enc, "NONE"), kms = str_is(&jr->enc, "KMS");
    if (none < 0 || kms < 0) {
      fail(errbuf, errlen, "out of memory");
      rc = KCLD_ENOMEM;
      goto out;
    }
    if (!none && !kms)
      sz->str += jr->enc.len + 1;
  }
  sz->str += seq_len + 1 + jr->pk.len + 1;
  sz->data += b64_len / 4 * 3;
  rc = 0;
out:
  free(heap);
  return rc;
}

static const char *const k_child_names[] = {
  "ShardId", "ParentShards", "HashKeyRange"
};
static const char *const k_range_names[] = {
  "StartingHashKey", "EndingHashKey"
};

/* Opens a scan at the already validated value v that ends by `end`. */
static void scan_at(struct jscan *sc, const struct jval *v,
                    const char *end)
{
  js_init(sc, v->p, (size_t)(end - v->p));
}

/* Validates ChildShards (absent, null or an array) and adds its sizes. */
static int check_children(const struct jval *children,
                          const char *end, struct sizes *sz, char *errbuf,
                          size_t errlen)
{
  struct jscan sc, ps, rs;
  int first = 1, rc;
  size_t i = 0;

  if (!present(children))
    return 0;
  if (children->type != J_ARRAY)
    return fail(errbuf, errlen, "ChildShards is not an array");
  scan_at(&sc, children, end);
  if (js_open(&sc, '[', D_MEMBER) != 0)
    return fail(errbuf, errlen, "ChildShards: %s", sc.err);
  for (; (rc = js_element(&sc, &first)) > 0; i++) {
    struct jval c[3], r[2], p;
    memset(c, 0, sizeof(c));
    memset(r, 0, sizeof(r));
    if (js_peek(&sc) != '{')
      return fail(errbuf, errlen, "ChildShards[%zu] is not an object", i);
    if (scan_members(&sc, D_ELEMENT, k_child_names, 3, c) != 0)
      return fail(errbuf, errlen, "ChildShards: %s", sc.err);
    if ((rc = need_string(&c[0], "ShardId", "ChildShards", i, "", errbuf,
                          errlen)) != 0)
      return rc;
    sz->str += c[0].len + 1;
    if (c[1].type != J_ARRAY)
      return fail(errbuf, errlen, "ChildShards[%zu].ParentShards is %s", i,
                  present(&c[1]) ? "not an array" : "missing");
    scan_at(&ps, &c[1], end);
    int pfirst = 1;
    js_open(&ps, '[', D_FIELD);
    for (size_t j = 0; js_element(&ps, &pfirst) > 0; j++) {
      p.type = J_ABSENT;
      js_value(&ps, &p, D_FIELD + 1);
      if (p.type != J_STRING)
        return fail(errbuf, errlen, "ChildShards[%zu].ParentShards[%zu] is "
                    "not a string", i, j);
      sz->str += p.len + 1;
      sz->n_parent++;
    }
    if (c[2].type != J_OBJECT)
      return fail(errbuf, errlen, "ChildShards[%zu].HashKeyRange is %s", i,
                  present(&c[2]) ? "not an object" : "missing");
    scan_at(&rs, &c[2], end);
    scan_members(&rs, D_FIELD, k_range_names, 2, r);
    if ((rc = need_string(&r[0], "StartingHashKey", "ChildShards", i,
                          "HashKeyRange.", errbuf, errlen)) != 0)
      return rc;
    sz->str += r[0].len + 1;
    if ((rc = need_string(&r[1], "EndingHashKey", "ChildShards", i,
                          "HashKeyRange.", errbuf, errlen)) != 0)
      return rc;
    sz->str += r[1].len + 1;
    sz->n_child++;
  }
  if (rc < 0)
    return fail(errbuf, errlen, "ChildShards: %s", sc.err);
  return 0;
}

/* ======== Pass B: fill the main block ======== */

static const char *put_str(char **sp, const struct jval *s)
{
  char *out = *sp;
  js_decode(s, out);
  out[s->len] = '\0';
  *sp += s->len + 1;
  return out;
}

/* Fills from ChildShards, which pass A found valid. */
static void fill_children(const struct jval *children,
                          const char *end, struct kcld_child_shard *cs,
                          const char **parents, char **sp)
{
  struct jscan sc, ps, rs;
  int first = 1;

  scan_at(&sc, children, end);
  js_open(&sc, '[', D_MEMBER);
  for (size_t i = 0; js_element(&sc, &first) > 0; i++) {
    struct jval c[3], r[2], p;
    memset(c, 0, sizeof(c));
    memset(r, 0, sizeof(r));
    scan_members(&sc, D_ELEMENT, k_child_names, 3, c);
    cs[i].shard_id = put_str(sp, &c[0]);
    cs[i].parent_shards = parents;
    cs[i].parent_count = 0;
    scan_at(&ps, &c[1], end);
    int pfirst = 1;
    js_open(&ps, '[', D_FIELD);
    while (js_element(&ps, &pfirst) > 0) {
      js_value(&ps, &p, D_FIELD + 1);
      *parents++ = put_str(sp, &p);
      cs[i].parent_count++;
    }
    scan_at(&rs, &c[2], end);
    scan_members(&rs, D_FIELD, k_range_names, 2, r);
    cs[i].starting_hash_key = put_str(sp, &r[0]);
    cs[i].ending_hash_key = put_str(sp, &r[1]);
  }
}

/* ======== Pass C: expand ======== */

static void warn_passed_through(const struct kcld_record *r,
                                const char *shard_id)
{
  struct kcld_deagg_plan plan;
  kcld_deagg_scan(r->data, r->data_len, &plan);
  kcld_log(KCLD_LOG_WARN, "KPL aggregate passed through unchanged",
           "shard", shard_id, "sequence_number", r->sequence_number,
           "reason", plan.why, NULL);
}

static int expand(struct kcld_record_batch *b, struct kcld_record *outer,
                  size_t n, size_t total, size_t keys_total,
                  const char *shard_id, char *errbuf, size_t errlen)
{
  size_t recs_bytes = total * sizeof(struct kcld_record);
  struct kcld_record *recs = malloc(recs_bytes + keys_total);
  char *keys;
  size_t j = 0, koff = 0, used;

  if (recs == NULL) {
    fail(errbuf, errlen, "out of memory for %zu records", total);
    return KCLD_ENOMEM;
  }
  b->extra = recs;
  b->mem_bytes += recs_bytes + keys_total;
  keys = (char *)recs + recs_bytes;
  for (size_t i = 0; i < n; i++) {
    if (outer[i].aggregated != V_AGGREGATE) {
      if (outer[i].aggregated == V_CORRUPT)
        warn_passed_through(&outer[i], shard_id);
      recs[j] = outer[i];
      recs[j++].aggregated = 0;
      continue;
    }
    long got = kcld_deagg_expand(&outer[i], &recs[j], total - j,
                                 keys + koff, keys_total - koff, &used);
    if (got < 0)
      return fail(errbuf, errlen, "Records[%zu] (SequenceNumber %s): KPL "
                  "aggregate could not be expanded after it was verified",
                  i, outer[i].sequence_number);
    j += (size_t)got;
    koff += used;
  }
  b->records = recs;
  b->count = j;
  return 0;
}

/* ======== The whole response ======== */

int kcld_getrecords_parse(const char *body, size_t len, const char *shard_id,
                          struct kcld_record_batch **out, char *errbuf,
                          size_t errlen)
{
  struct jscan sc;
  struct found f;
  struct kcld_record_batch *b = NULL;
  struct sizes sz = {0, 0, 0, 0, 0};
  const char *end = body + len;
  char *tmp = NULL;
  size_t i;
  int rc = KCLD_EPARSE;

  if (out)
    *out = NULL;
  if (body == NULL || out == NULL) {
    fail(errbuf, errlen, "no body or no result pointer");
    return KCLD_EINVAL;
  }
  if (errbuf && errlen)
    errbuf[0] = '\0';

  memset(&f, 0, sizeof(f));
  js_init(&sc, body, len);
  switch (scan_body(&sc, &f)) {
  case 0:
    break;
  case -2:
    fail(errbuf, errlen, "out of memory for %zu records", f.cap * 2);
    rc = KCLD_ENOMEM;
    goto cleanup;
  case -3:
    rc = fail(errbuf, errlen, "GetRecords response is not a JSON object");
    goto cleanup;
  default: {
    int line, col;
    err_position(&sc, &line, &col);
    rc = fail(errbuf, errlen, "GetRecords response is not JSON: %s (line %d, "
              "column %d)", sc.err, line, col);
    goto cleanup;
  }
  }

  /* Pass A. */
  if (f.records.type != J_ARRAY) {
    rc = fail(errbuf, errlen, "Records is %s",
              present(&f.records) ? "not an array" : "missing");
    goto cleanup;
  }
  sz.n = f.n;
  for (i = 0; i < f.n; i++) {
    if ((rc = check_record(&f.recs[i], i, &sz, errbuf, errlen)) != 0)
      goto cleanup;
  }
  const struct jval *next = present(&f.next) ? &f.next : NULL;
  if (next && next->type != J_STRING) {
    rc = fail(errbuf, errlen, "NextShardIterator is not a string");
    goto cleanup;
  }
  if (next)
    sz.str += next->len + 1;
  const struct jval *mbl = present(&f.mbl) ? &f.mbl : NULL;
  if (mbl && (mbl->type != J_NUMBER || !isfinite(mbl->num) ||
              mbl->num < 0 || mbl->num > 9e18)) {
    rc = fail(errbuf, errlen, "MillisBehindLatest is %s",
              mbl->type == J_NUMBER ? "out of range"
                                            : "not a number");
    goto cleanup;
  }
  if ((rc = check_children(&f.children, end, &sz, errbuf, errlen)) != 0)
    goto cleanup;

  /* Pass B: the main block. */
  size_t off_recs = align8(sizeof(*b));
  size_t off_child = off_recs + sz.n * sizeof(struct kcld_record);
  size_t off_parent = off_child + sz.n_child * sizeof(struct kcld_child_shard);
  size_t off_str = off_parent + sz.n_parent * sizeof(const char *);
  size_t off_data = off_str + sz.str;
  size_t total_bytes = off_data + sz.data;
  char *mem = malloc(total_bytes);
  if (mem == NULL) {
    fail(errbuf, errlen, "out of memory for a %zu-byte batch", total_bytes);
    rc = KCLD_ENOMEM;
    goto cleanup;
  }
  b = (struct kcld_record_batch *)mem;
  memset(b, 0, sizeof(*b));
  atomic_init(&b->refs, 1);
  b->mem_bytes = total_bytes;
  b->kinesis_count = sz.n;
  b->millis_behind_latest =
    mbl ? (mbl->isint ? mbl->inum : (int64_t)mbl->num) : -1;

  struct kcld_record *outer = (struct kcld_record *)(mem + off_recs);
  char *sp = mem + off_str;
  uint8_t *dp = (uint8_t *)mem + off_data;
  size_t total = 0, keys_total = 0, naggs = 0;

  if (next)
    b->next_shard_iterator = put_str(&sp, next);
  if (sz.n_child) {
    struct kcld_child_shard *cs = (struct kcld_child_shard *)(mem + off_child);
    fill_children(&f.children, end, cs, (const char **)(mem + off_parent),
                  &sp);
    b->child_shards = cs;
    b->child_shard_count = sz.n_child;
  }

  for (i = 0; i < sz.n; i++) {
    const struct jrec *jr = &f.recs[i];
    struct kcld_record *r = &outer[i];
    struct kcld_deagg_plan plan;
    size_t b64_len, bad;

    r->sequence_number = put_str(&sp, &jr->seq);
    r->partition_key = put_str(&sp, &jr->pk);
    r->partition_key_len = jr->pk.len;
    r->explicit_hash_key = NULL;
    r->encryption_type = NULL;
    if (present(&jr->enc)) {
      r->encryption_type = str_is(&jr->enc, "NONE") == 1  ? "NONE"
                           : str_is(&jr->enc, "KMS") == 1 ? "KMS"
                                                          : put_str(&sp,
                                                                    &jr->enc);
    }
    r->arrival_ms = present(&jr->ts) ? (int64_t)llround(jr->ts.num * 1000.0)
                                     : KCLD_RECORD_NO_ARRIVAL;
    r->sub_sequence_number = 0;
    r->batch = b;

    /* Base64 text has no escapes in practice; decode them first if so. */
    b64_len = jr->data.len;
    const char *b64 = jr->data.p;
    if (jr->data.esc) {
      char *t = realloc(tmp, b64_len + 1);
      if (t == NULL) {
        fail(errbuf, errlen, "out of memory");
        rc = KCLD_ENOMEM;
        goto cleanup;
      }
      tmp = t;
      js_decode(&jr->data, tmp);
      b64 = tmp;
    }
    if (kcld_base64_decode(b64, b64_len, dp, &r->data_len, &bad) != 0) {
      rc = fail(errbuf, errlen, "Records[%zu] (SequenceNumber %s): Data is "
                "not valid base64 (at character %zu of %zu)", i,
                r->sequence_number, bad, b64_len);
      goto cleanup;
    }
    r->data = dp;
    dp += b64_len / 4 * 3;
    b->data_bytes += r->data_len;

    switch (kcld_deagg_scan(r->data, r->data_len, &plan)) {
    case KCLD_DEAGG_AGGREGATE:
      r->aggregated = V_AGGREGATE;
      total += plan.nrecords;
      keys_total += plan.key_bytes;
      naggs++;
      break;
    case KCLD_DEAGG_CORRUPT:
      r->aggregated = V_CORRUPT;
      total++;
      break;
    default:
      r->aggregated = V_PLAIN;
      total++;
    }
  }

  /* Pass C. */
  if (naggs > 0) {
    if ((rc = expand(b, outer, sz.n, total, keys_total, shard_id, errbuf,
                     errlen)) != 0)
      goto cleanup;
  } else {
    for (i = 0; i < sz.n; i++) {
      if (outer[i].aggregated == V_CORRUPT) {
        warn_passed_through(&outer[i], shard_id);
        outer[i].aggregated = 0;
      }
    }
    b->records = outer;
    b->count = sz.n;
  }
  *out = b;
  b = NULL;
  rc = 0;

cleanup:
  kcld_record_batch_release(b);
  free(f.recs);
  free(tmp);
  return rc;
}
