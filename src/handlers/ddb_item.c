/* ddb_item.c — DynamoDB AttributeValues built while the strict JSON scanner
 * (base/json.h) walks the payload, keeping number text; plus the item size
 * rules. */
#include "handlers/ddb_item.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws/dynamodb.h"
#include "base/json.h"
#include "err.h"

struct parser {
  struct kcld_json_scan sc;
  int depth;        /* objects and arrays open */
  int oom;
  char *err;
  size_t errlen;
  char *tmp;        /* string scratch buffer */
  size_t tmp_cap;
};

/* Records the first error, at the byte `at` of the text. */
static int fail(struct parser *p, const char *at, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));

static int fail(struct parser *p, const char *at, const char *fmt, ...)
{
  va_list ap;
  char msg[160];

  if (p->err && p->errlen && !p->err[0]) {
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(p->err, p->errlen, "%s at byte %zu", msg,
             (size_t)(at - p->sc.start));
  }
  return KCLD_EPARSE;
}

/* The scanner refused the text. */
static int scan_fail(struct parser *p)
{
  return fail(p, p->sc.at, "%s", p->sc.err);
}

static int oom(struct parser *p)
{
  p->oom = 1;
  return KCLD_ENOMEM;
}

/* Makes room for n bytes and a terminator in p->tmp. */
static int tmp_fit(struct parser *p, size_t n)
{
  if (n + 1 > p->tmp_cap) {
    size_t ncap = p->tmp_cap ? p->tmp_cap : 256;
    while (n + 1 > ncap)
      ncap *= 2;
    char *nt = realloc(p->tmp, ncap);
    if (!nt)
      return oom(p);
    p->tmp = nt;
    p->tmp_cap = ncap;
  }
  return 0;
}

/* The decoded string v in p->tmp[0..v->len], NUL-terminated. */
static int tmp_string(struct parser *p, const struct kcld_json_val *v)
{
  if (tmp_fit(p, v->len) != 0)
    return KCLD_ENOMEM;
  kcld_json_decode(v, p->tmp);
  p->tmp[v->len] = '\0';
  return 0;
}

/* Checks DynamoDB's range on the number v (valid JSON) and builds
 * {"N": text}. */
static int number_av(struct parser *p, const struct kcld_json_val *v,
                     json_t **out)
{
  const char *s = v->p, *end = v->p + v->raw;
  long exp10 = 0, lead = 0, frac_pos = 0; /* lead: exponent of the first
                                              significant digit */
  int seen_nonzero = 0, neg_exp = 0, in_frac = 0;
  int n = (int)v->raw;

  for (; s < end && *s != 'e' && *s != 'E'; s++) {
    if (*s == '.') {
      in_frac = 1;
      continue;
    }
    if (!isdigit((unsigned char)*s))
      continue;
    if (in_frac)
      frac_pos++;
    if (seen_nonzero) {
      if (!in_frac)
        lead++;
    } else if (*s != '0') {
      seen_nonzero = 1;
      lead = in_frac ? -frac_pos : 0;
    }
  }
  if (s < end) {
    s++;
    if (*s == '+' || *s == '-')
      neg_exp = *s++ == '-';
    for (; s < end; s++)
      if (exp10 < 100000)
        exp10 = exp10 * 10 + (*s - '0');
    if (neg_exp)
      exp10 = -exp10;
  }
  if (seen_nonzero && (lead + exp10 > 125 || lead + exp10 < -130))
    return fail(p, v->p, "number %.*s is out of DynamoDB's range (1E-130 .. "
                "9.99E+125)", n > 40 ? 40 : n, v->p);
  if (tmp_fit(p, v->raw) != 0)
    return KCLD_ENOMEM;
  memcpy(p->tmp, v->p, v->raw);
  p->tmp[v->raw] = '\0';
  *out = kcld_dynamodb_av_n(p->tmp);
  if (!*out)
    return fail(p, v->p, "number %.*s has more than 38 significant digits",
                n > 60 ? 60 : n, v->p);
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

/* The decoded name of a member, in a new string (*name). */
static int member_name(struct parser *p, const struct kcld_json_val *key,
                       char **name)
{
  if (key->len == 0)
    return fail(p, key->p, "empty member name (DynamoDB attribute names "
                "need at least one byte)");
  if ((*name = malloc(key->len + 1)) == NULL)
    return oom(p);
  kcld_json_decode(key, *name);
  (*name)[key->len] = '\0';
  return 0;
}

/* An object ('{') into {"M": ...} or an array ('[') into {"L": ...}. */
static int parse_container(struct parser *p, int c, json_t **out)
{
  json_t *con = c == '{' ? json_object() : json_array();
  struct kcld_json_val key;
  int first = 1, rc;

  if (!con)
    return oom(p);
  if (kcld_json_scan_open(&p->sc, c, p->depth) != 0) {
    rc = scan_fail(p);
    goto fail;
  }
  for (;;) {
    json_t *v = NULL;
    char *name = NULL;
    rc = c == '{' ? kcld_json_scan_member(&p->sc, &first, &key)
                  : kcld_json_scan_element(&p->sc, &first);
    if (rc <= 0)
      break;
    if (c == '{' && (rc = member_name(p, &key, &name)) != 0)
      goto fail;
    rc = parse_value(p, &v);
    if (rc == 0 && (name ? json_object_set_new(con, name, v)
                         : json_array_append_new(con, v)) != 0)
      rc = oom(p);
    free(name);
    if (rc != 0)
      goto fail;
  }
  if (rc < 0) {
    rc = scan_fail(p);
    goto fail;
  }
  *out = c == '{' ? kcld_dynamodb_av_m(con) : kcld_dynamodb_av_l(con);
  return *out ? 0 : oom(p);
fail:
  json_decref(con);
  return rc;
}

static int parse_value(struct parser *p, json_t **out)
{
  struct kcld_json_val v;
  int c = kcld_json_scan_peek(&p->sc), rc;

  *out = NULL;
  if (c == '{' || c == '[') {
    if (p->depth >= KCLD_DDB_ITEM_MAX_DEPTH)
      return fail(p, p->sc.p, "nested deeper than %d levels",
                  KCLD_DDB_ITEM_MAX_DEPTH);
    p->depth++;
    rc = parse_container(p, c, out);
    p->depth--;
    return rc;
  }
  if (kcld_json_scan_value(&p->sc, &v, p->depth + 1) != 0)
    return scan_fail(p);
  switch (v.type) {
  case KCLD_JSON_STRING:
    if (tmp_string(p, &v) != 0)
      return KCLD_ENOMEM;
    *out = av_s_n(p->tmp, v.len);
    break;
  case KCLD_JSON_NUMBER:
    return number_av(p, &v, out);
  case KCLD_JSON_BOOL:
    *out = kcld_dynamodb_av_bool(v.p[0] == 't');
    break;
  default:
    *out = kcld_dynamodb_av_null();
  }
  return *out ? 0 : oom(p);
}

int kcld_ddb_item_from_json(const char *text, size_t len, json_t **out,
                            char *err, size_t errlen)
{
  struct parser p = {.err = err, .errlen = errlen};
  json_t *v = NULL;
  int rc;

  *out = NULL;
  if (err && errlen)
    err[0] = '\0';
  kcld_json_scan_init(&p.sc, text ? text : "", text ? len : 0, 0);
  if (!text)
    return fail(&p, p.sc.start, "no payload");
  rc = parse_value(&p, &v);
  if (rc == 0 && kcld_json_scan_finish(&p.sc) != 0)
    rc = scan_fail(&p);
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

static int lookup(const json_t *av, const char *const *path, size_t n,
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
  return lookup(arg, path, n, text, len);
}
