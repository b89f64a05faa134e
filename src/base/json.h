/* json.h — a strict JSON scanner: one validating pass over the text, no
 * tree and (but for one rare case) no allocation.  Callers drive it value
 * by value and build only what they need: consume/getrecords.c a record
 * batch, handlers/ddb_item.c DynamoDB AttributeValues.
 *
 * Strict means RFC 8259 and nothing more: UTF-8 checked in strings (no
 * overlong forms, surrogates or code points above U+10FFFF), no control
 * characters in strings, \u escapes with surrogate pairs, numbers by the
 * JSON grammar (no leading zeros, '+', '.5', NaN), object keys without
 * U+0000, at most KCLD_JSON_MAX_DEPTH nested values.  Strings are not
 * copied: a scanned value points into the text, and kcld_json_decode()
 * writes its decoded form when the caller stores it.
 *
 * With KCLD_JSON_JANSSON the scanner accepts and refuses exactly what
 * jansson 2.14's json_loadb(..., JSON_ALLOW_NUL) does, which
 * tests/fuzz/fuzz_getrecords.c checks on every input: integers must fit an
 * int64_t and reals must not overflow a double, a number cannot end the
 * text, and one NUL byte right after a number or a literal is skipped.
 *
 * The text is a (pointer, length) view: it need not be NUL-terminated and
 * is never written or kept.  Pure functions; any thread. */
#ifndef KCLD_BASE_JSON_H
#define KCLD_BASE_JSON_H

#include <stddef.h>
#include <stdint.h>

/* jansson's JSON_PARSER_MAX_DEPTH: the top-level value is at depth 1. */
#define KCLD_JSON_MAX_DEPTH 2048

/* Scan flag: jansson's acceptance, number values computed (see above). */
#define KCLD_JSON_JANSSON 1u

enum kcld_json_type {
  KCLD_JSON_ABSENT = 0, /* not scanned (a member that was not there) */
  KCLD_JSON_NULL,
  KCLD_JSON_BOOL,
  KCLD_JSON_NUMBER,
  KCLD_JSON_STRING,
  KCLD_JSON_ARRAY,
  KCLD_JSON_OBJECT
};

/* One scanned value.  Zero it for "absent". */
struct kcld_json_val {
  const char *p;       /* where the value starts; for a string, the first
                          byte after the opening quote */
  size_t raw;          /* string: bytes between the quotes; number: the
                          text's length */
  size_t len;          /* string: decoded length in bytes */
  double num;          /* number, KCLD_JSON_JANSSON only: as a double */
  int64_t inum;        /* number, KCLD_JSON_JANSSON only: the exact value
                          when isint */
  unsigned char type;  /* enum kcld_json_type */
  unsigned char esc;   /* string: holds escapes (decode before use) */
  unsigned char nul;   /* string: decodes to text holding a NUL */
  unsigned char isint; /* number: written without fraction or exponent */
};

/* The scanning position.  After a failure, err is a static message and at
 * the offending byte.  Fields are read-only for callers. */
struct kcld_json_scan {
  const char *p, *end, *start;
  const char *err;
  const char *at;
  unsigned flags;
};

/* Starts scanning s[0..n) with `flags` (0 or KCLD_JSON_JANSSON). */
void kcld_json_scan_init(struct kcld_json_scan *sc, const char *s, size_t n,
                         unsigned flags);

/* Skips white space; returns the next byte (0..255), or -1 at the end. */
int kcld_json_scan_peek(struct kcld_json_scan *sc);

/* Scans one whole value of any type at nesting `depth` (1 for the top
 * level), validating all of it, into *v (may be NULL).  Returns 0, or -1
 * with sc->err set. */
int kcld_json_scan_value(struct kcld_json_scan *sc, struct kcld_json_val *v,
                         int depth);

/* Consumes the opening '{' or '[' (c) of a value at `depth`, for walking
 * its members or elements one at a time.  Returns 0, or -1 when the depth
 * is too great or the next byte is not c. */
int kcld_json_scan_open(struct kcld_json_scan *sc, int c, int depth);

/* Element iteration, after kcld_json_scan_open(sc, '[', ...) and with
 * *first = 1: returns 1 with the position at the next element (scan it
 * before the next call), 0 when the ']' was consumed, -1 on error. */
int kcld_json_scan_element(struct kcld_json_scan *sc, int *first);

/* Member iteration, after kcld_json_scan_open(sc, '{', ...) and with
 * *first = 1: returns 1 with the member's name in *key (a string value) and
 * the position at its value (scan it before the next call), 0 when the '}'
 * was consumed, -1 on error (a name holding U+0000 included). */
int kcld_json_scan_member(struct kcld_json_scan *sc, int *first,
                          struct kcld_json_val *key);

/* After the top-level value: 0 when only white space remains, else -1. */
int kcld_json_scan_finish(struct kcld_json_scan *sc);

/* The line and column (from 1, in bytes) of the failure. */
void kcld_json_scan_position(const struct kcld_json_scan *sc, int *line,
                             int *col);

/* Writes the decoded string v (a scanned KCLD_JSON_STRING) to
 * out[0..v->len); no terminator. */
void kcld_json_decode(const struct kcld_json_val *v, char *out);

/* 1 when the decoded string v (a scanned KCLD_JSON_STRING) is exactly the
 * n bytes at `s`, else 0.  Decodes nothing for a string without escapes. */
int kcld_json_equals(const struct kcld_json_val *v, const char *s, size_t n);

#endif
