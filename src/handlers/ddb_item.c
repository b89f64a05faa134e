/* ddb_item.c — a strict JSON parser that builds DynamoDB AttributeValues
 * as it goes, keeping number text, plus the item size rules. */
#include "handlers/ddb_item.h"

#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws/dynamodb.h"
#include "base/hex.h"
#include "base/utf8.h"
#include "err.h"

struct parser {
  const char *s;
  size_t len;
  size_t pos;
  int depth;
  int oom;
  char *err;
  size_t errlen;
  char *tmp;        /* string scratch buffer */
  size_t tmp_cap;
};

static int fail(struct parser *p, const char *fmt, ...)
{
  va_list ap;
  char msg[160];

  if (p->err && p->errlen && !p->err[0]) {
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(p->err, p->errlen, "%s at byte %zu", msg, p->pos);
  }
  return KCLD_EPARSE;
}

static int oom(struct parser *p)
{
  p->oom = 1;
  return KCLD_ENOMEM;
}

static void skip_ws(struct parser *p)
{
  while (p->pos < p->len &&
         (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' ||
          p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
    p->pos++;
}

static int tmp_put(struct parser *p, size_t *n, const char *b, size_t k)
{
  if (*n + k + 1 > p->tmp_cap) {
    size_t ncap = p->tmp_cap ? p->tmp_cap * 2 : 256;
    while (*n + k + 1 > ncap)
      ncap *= 2;
    char *nt = realloc(p->tmp, ncap);
    if (!nt)
      return oom(p);
    p->tmp = nt;
    p->tmp_cap = ncap;
  }
  memcpy(p->tmp + *n, b, k);
  *n += k;
  p->tmp[*n] = '\0';
  return 0;
}

static int hex4(struct parser *p, uint32_t *out)
{
  long v;
  if (p->pos + 4 > p->len)
    return fail(p, "truncated \\u escape");
  if ((v = kcld_hex_parse(p->s + p->pos, 4)) < 0)
    return fail(p, "bad \\u escape");
  p->pos += 4;
  *out = (uint32_t)v;
  return 0;
}

/* Parses a string (p->pos at the opening quote) into p->tmp[0..*n). */
static int parse_string(struct parser *p, size_t *n)
{
  *n = 0;
  p->pos++;
  if (tmp_put(p, n, "", 0) != 0)
    return KCLD_ENOMEM;
  for (;;) {
    if (p->pos >= p->len)
      return fail(p, "unterminated string");
    unsigned char c = (unsigned char)p->s[p->pos];
    if (c == '"') {
      p->pos++;
      return 0;
    }
    if (c < 0x20)
      return fail(p, "control character in a string");
    if (c != '\\') {
      size_t k = kcld_utf8_char_len(p->s + p->pos, p->len - p->pos);
      if (k == 0)
        return fail(p, "invalid UTF-8");
      if (tmp_put(p, n, p->s + p->pos, k) != 0)
        return KCLD_ENOMEM;
      p->pos += k;
      continue;
    }
    p->pos++;
    if (p->pos >= p->len)
      return fail(p, "unterminated string");
    char e = p->s[p->pos++], out[4];
    uint32_t cp;
    size_t k = 1;
    switch (e) {
    case '"': out[0] = '"'; break;
    case '\\': out[0] = '\\'; break;
    case '/': out[0] = '/'; break;
    case 'b': out[0] = '\b'; break;
    case 'f': out[0] = '\f'; break;
    case 'n': out[0] = '\n'; break;
    case 'r': out[0] = '\r'; break;
    case 't': out[0] = '\t'; break;
    case 'u':
      if (hex4(p, &cp) != 0)
        return KCLD_EPARSE;
      if (cp >= 0xdc00 && cp <= 0xdfff)
        return fail(p, "lone low surrogate");
      if (cp >= 0xd800 && cp <= 0xdbff) {
        uint32_t lo;
        if (p->pos + 2 > p->len || p->s[p->pos] != '\\' ||
            p->s[p->pos + 1] != 'u')
          return fail(p, "lone high surrogate");
        p->pos += 2;
        if (hex4(p, &lo) != 0)
          return KCLD_EPARSE;
        if (lo < 0xdc00 || lo > 0xdfff)
          return fail(p, "lone high surrogate");
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
      }
      k = (size_t)(kcld_utf8_put(out, cp) - out);
      break;
    default:
      return fail(p, "bad escape \\%c", e);
    }
    if (tmp_put(p, n, out, k) != 0)
      return KCLD_ENOMEM;
  }
}

/* Checks the JSON number grammar at p->pos and DynamoDB's limits; builds
 * {"N": text}. */
static int parse_number(struct parser *p, json_t **out)
{
  size_t start = p->pos, i = p->pos;
  const char *s = p->s;
  long exp10 = 0, lead = 0;   /* exponent of the first significant digit */
  int seen_nonzero = 0, neg_exp = 0;
  long int_digits = 0, frac_pos = 0;

  if (i < p->len && s[i] == '-')
    i++;
  if (i >= p->len || !isdigit((unsigned char)s[i]))
    return fail(p, "bad number");
  if (s[i] == '0') {
    i++;
    if (i < p->len && isdigit((unsigned char)s[i]))
      return fail(p, "leading zero in a number");
  } else {
    while (i < p->len && isdigit((unsigned char)s[i])) {
      if (!seen_nonzero && s[i] != '0')
        seen_nonzero = 1;
      if (seen_nonzero)
        int_digits++;
      i++;
    }
  }
  if (seen_nonzero)
    lead = int_digits - 1;
  if (i < p->len && s[i] == '.') {
    i++;
    if (i >= p->len || !isdigit((unsigned char)s[i]))
      return fail(p, "bad number fraction");
    while (i < p->len && isdigit((unsigned char)s[i])) {
      frac_pos++;
      if (!seen_nonzero && s[i] != '0') {
        seen_nonzero = 1;
        lead = -frac_pos;
      }
      i++;
    }
  }
  if (i < p->len && (s[i] == 'e' || s[i] == 'E')) {
    i++;
    if (i < p->len && (s[i] == '+' || s[i] == '-'))
      neg_exp = s[i++] == '-';
    if (i >= p->len || !isdigit((unsigned char)s[i]))
      return fail(p, "bad number exponent");
    while (i < p->len && isdigit((unsigned char)s[i])) {
      if (exp10 < 100000)
        exp10 = exp10 * 10 + (s[i] - '0');
      i++;
    }
    if (neg_exp)
      exp10 = -exp10;
  }
  p->pos = i;
  if (seen_nonzero && (lead + exp10 > 125 || lead + exp10 < -130))
    return fail(p, "number %.*s is out of DynamoDB's range (1E-130 .. "
                "9.99E+125)", (int)(i - start > 40 ? 40 : i - start),
                s + start);
  if (tmp_put(p, &(size_t){0}, s + start, i - start) != 0)
    return KCLD_ENOMEM;
  *out = kcld_dynamodb_av_n(p->tmp);
  if (!*out)
    return fail(p, "number %.*s has more than 38 significant digits",
                (int)(i - start > 60 ? 60 : i - start), s + start);
  return 0;
}

static json_t *av_s_n(const char *s, size_t n)
{
  json_t *v = json_stringn(s, n), *av;
  if (!v)
    return NULL;
  av = json_object();
  if (!av || json_object_set_new(av, "S", v) != 0) {
    json_decref(av);
    return NULL;
  }
  return av;
}

static int parse_value(struct parser *p, json_t **out);

static int parse_object(struct parser *p, json_t **out)
{
  json_t *map = json_object();
  size_t n;
  int rc;

  if (!map)
    return oom(p);
  p->pos++;
  skip_ws(p);
  if (p->pos < p->len && p->s[p->pos] == '}') {
    p->pos++;
    goto done;
  }
  for (;;) {
    json_t *v = NULL;
    char *name;

    skip_ws(p);
    if (p->pos >= p->len || p->s[p->pos] != '"') {
      rc = fail(p, "expected a member name");
      goto fail;
    }
    rc = parse_string(p, &n);
    if (rc != 0)
      goto fail;
    if (n == 0) {
      rc = fail(p, "empty member name (DynamoDB attribute names need at "
                "least one byte)");
      goto fail;
    }
    if (memchr(p->tmp, '\0', n)) {
      rc = fail(p, "member name holds U+0000");
      goto fail;
    }
    name = strndup(p->tmp, n);
    if (!name) {
      rc = oom(p);
      goto fail;
    }
    skip_ws(p);
    if (p->pos >= p->len || p->s[p->pos] != ':') {
      free(name);
      rc = fail(p, "expected ':'");
      goto fail;
    }
    p->pos++;
    rc = parse_value(p, &v);
    if (rc == 0 && json_object_set_new(map, name, v) != 0)
      rc = oom(p);
    free(name);
    if (rc != 0)
      goto fail;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == ',') {
      p->pos++;
      continue;
    }
    if (p->pos < p->len && p->s[p->pos] == '}') {
      p->pos++;
      break;
    }
    rc = fail(p, "expected ',' or '}'");
    goto fail;
  }
done:
  *out = kcld_dynamodb_av_m(map);
  return *out ? 0 : oom(p);
fail:
  json_decref(map);
  return rc;
}

static int parse_array(struct parser *p, json_t **out)
{
  json_t *list = json_array();
  int rc;

  if (!list)
    return oom(p);
  p->pos++;
  skip_ws(p);
  if (p->pos < p->len && p->s[p->pos] == ']') {
    p->pos++;
    goto done;
  }
  for (;;) {
    json_t *v = NULL;
    rc = parse_value(p, &v);
    if (rc == 0 && json_array_append_new(list, v) != 0)
      rc = oom(p);
    if (rc != 0)
      goto fail;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == ',') {
      p->pos++;
      continue;
    }
    if (p->pos < p->len && p->s[p->pos] == ']') {
      p->pos++;
      break;
    }
    rc = fail(p, "expected ',' or ']'");
    goto fail;
  }
done:
  *out = kcld_dynamodb_av_l(list);
  return *out ? 0 : oom(p);
fail:
  json_decref(list);
  return rc;
}

static int literal(struct parser *p, const char *word)
{
  size_t n = strlen(word);
  if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0)
    return fail(p, "unexpected character");
  p->pos += n;
  return 0;
}

static int parse_value(struct parser *p, json_t **out)
{
  size_t n;
  int rc;

  *out = NULL;
  skip_ws(p);
  if (p->pos >= p->len)
    return fail(p, "unexpected end of input");
  switch (p->s[p->pos]) {
  case '{':
  case '[':
    if (++p->depth > KCLD_DDB_ITEM_MAX_DEPTH)
      return fail(p, "nested deeper than %d levels",
                  KCLD_DDB_ITEM_MAX_DEPTH);
    rc = p->s[p->pos] == '{' ? parse_object(p, out) : parse_array(p, out);
    p->depth--;
    return rc;
  case '"':
    rc = parse_string(p, &n);
    if (rc != 0)
      return rc;
    *out = av_s_n(p->tmp, n);
    return *out ? 0 : oom(p);
  case 't':
  case 'f':
    rc = literal(p, p->s[p->pos] == 't' ? "true" : "false");
    if (rc != 0)
      return rc;
    *out = kcld_dynamodb_av_bool(p->s[p->pos - 1] == 'e' &&
                                 p->s[p->pos - 2] == 'u');
    return *out ? 0 : oom(p);
  case 'n':
    rc = literal(p, "null");
    if (rc != 0)
      return rc;
    *out = kcld_dynamodb_av_null();
    return *out ? 0 : oom(p);
  default:
    if (p->s[p->pos] != '-' && !isdigit((unsigned char)p->s[p->pos]))
      return fail(p, "unexpected character");
    return parse_number(p, out);
  }
}

int kcld_ddb_item_from_json(const char *text, size_t len, json_t **out,
                            char *err, size_t errlen)
{
  struct parser p = {.s = text, .len = len, .err = err, .errlen = errlen};
  json_t *v = NULL;
  int rc;

  *out = NULL;
  if (err && errlen)
    err[0] = '\0';
  if (!text)
    return fail(&p, "no payload");
  rc = parse_value(&p, &v);
  if (rc == 0) {
    skip_ws(&p);
    if (p.pos != p.len)
      rc = fail(&p, "trailing data after the JSON value");
  }
  free(p.tmp);
  if (p.oom)
    rc = KCLD_ENOMEM;
  if (rc != 0) {
    if (rc == KCLD_ENOMEM && err && errlen)
      snprintf(err, errlen, "out of memory");
    json_decref(v);
    return rc;
  }
  *out = v;
  return 0;
}

/* ======== Size ======== */

static size_t number_size(const char *s)
{
  int sig = 0, zeros = 0, nonzero = 0;
  for (; *s && *s != 'e' && *s != 'E'; s++) {
    if (!isdigit((unsigned char)*s))
      continue;
    if (*s != '0') {
      nonzero = 1;
      sig += zeros + 1;
      zeros = 0;
    } else if (nonzero) {
      zeros++;
    }
  }
  return (size_t)(sig + 1) / 2 + 2;
}

static size_t value_size(const json_t *av)
{
  const char *type;
  json_t *v;
  size_t size = 0, i;

  if (!json_is_object(av) || json_object_size(av) != 1)
    return 0;
  json_object_foreach((json_t *)av, type, v) {
    if (strcmp(type, "S") == 0)
      return json_string_length(v);
    if (strcmp(type, "N") == 0)
      return number_size(json_string_value(v));
    if (strcmp(type, "BOOL") == 0 || strcmp(type, "NULL") == 0)
      return 1;
    if (strcmp(type, "M") == 0)
      return 3 + json_object_size(v) + kcld_ddb_item_size(v);
    if (strcmp(type, "L") == 0) {
      json_t *e;
      size = 3;
      json_array_foreach(v, i, e)
        size += 1 + value_size(e);
      return size;
    }
    if (strcmp(type, "B") == 0)
      return json_string_length(v); /* base64: errs high */
    if (json_is_array(v)) {           /* SS, NS, BS */
      json_t *e;
      json_array_foreach(v, i, e)
        size += json_string_length(e);
      return size;
    }
  }
  return size;
}

size_t kcld_ddb_item_size(const json_t *item)
{
  const char *name;
  json_t *v;
  size_t size = 0;

  json_object_foreach((json_t *)item, name, v)
    size += strlen(name) + value_size(v);
  return size;
}

/* ======== Lookup ======== */

int kcld_ddb_item_lookup(const json_t *av, const char *const *path, size_t n,
                         const char **text, size_t *len)
{
  const json_t *cur = av;
  json_t *v;
  int b;

  for (size_t i = 0; i < n && cur; i++) {
    json_t *m = kcld_dynamodb_as_m(cur), *l;
    if (m) {
      cur = json_object_get(m, path[i]);
      continue;
    }
    l = kcld_dynamodb_as_l(cur);
    if (!l || !*path[i] || strspn(path[i], "0123456789") != strlen(path[i]) ||
        strlen(path[i]) > 9)
      return KCLD_ENOTFOUND;
    cur = json_array_get(l, (size_t)strtoul(path[i], NULL, 10));
  }
  if (!cur)
    return KCLD_ENOTFOUND;
  if ((v = json_object_get(cur, "S")) && json_is_string(v)) {
    *text = json_string_value(v);
    *len = json_string_length(v);
    return 0;
  }
  if ((v = json_object_get(cur, "N")) && json_is_string(v)) {
    *text = json_string_value(v);
    *len = json_string_length(v);
    return 0;
  }
  if (kcld_dynamodb_as_bool(cur, &b) == 0) {
    *text = b ? "true" : "false";
    *len = strlen(*text);
    return 0;
  }
  return KCLD_ENOTFOUND;
}

int kcld_ddb_item_field(void *arg, const char *const *path, size_t n,
                        const char **text, size_t *len)
{
  return kcld_ddb_item_lookup(arg, path, n, text, len);
}
