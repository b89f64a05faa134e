/* filter.c — pattern trees, their JSON text, and compiling them into rules
 * (see filter.h).  Matching the rules against records is filter_match.c. */
#include "process/filter.h"

#include <arpa/inet.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/buf.h"
#include "base/json.h"
#include "base/utf8.h"
#include "err.h"
#include "process/filter_rules.h"

/* ======== Pattern trees ======== */

static char *dup_text(const char *s, size_t n)
{
  char *d = malloc(n + 1);
  if (d) {
    if (n)
      memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

struct kcld_filter_node *kcld_filter_node_add(struct kcld_filter_node *parent,
                                              enum kcld_filter_type type,
                                              const char *key, size_t key_len,
                                              const char *text, size_t len,
                                              int line, int col)
{
  struct kcld_filter_node *n = calloc(1, sizeof(*n));
  if (!n)
    return NULL;
  n->type = type;
  n->line = line;
  n->col = col;
  if (parent && parent->type == KCLD_FILTER_OBJECT) {
    if ((n->key = dup_text(key ? key : "", key ? key_len : 0)) == NULL)
      goto fail;
    n->key_len = key ? key_len : 0;
  }
  if (type == KCLD_FILTER_STRING || type == KCLD_FILTER_NUMBER) {
    if ((n->text = dup_text(text ? text : "", text ? len : 0)) == NULL)
      goto fail;
    n->len = text ? len : 0;
  }
  if (parent) {
    if (parent->last)
      parent->last->next = n;
    else
      parent->first = n;
    parent->last = n;
  }
  return n;
fail:
  free(n->key);
  free(n);
  return NULL;
}

void kcld_filter_node_free(struct kcld_filter_node *root)
{
  if (!root)
    return;
  struct kcld_filter_node *c = root->first;
  while (c) {
    struct kcld_filter_node *next = c->next;
    kcld_filter_node_free(c);
    c = next;
  }
  free(root->key);
  free(root->text);
  free(root);
}

static int is_json_number(const char *s, size_t n)
{
  struct kcld_json_scan sc;
  struct kcld_json_val v;
  if (n == 0 || !(s[0] == '-' || (s[0] >= '0' && s[0] <= '9')))
    return 0;
  kcld_json_scan_init(&sc, s, n, 0);
  return kcld_json_scan_value(&sc, &v, 1) == 0 &&
         v.type == KCLD_JSON_NUMBER && sc.p == s + n;
}

static int word_is(const char *s, size_t n, const char *const *words)
{
  for (; *words; words++)
    if (strlen(*words) == n && memcmp(s, *words, n) == 0)
      return 1;
  return 0;
}

enum kcld_filter_type kcld_filter_scalar_type(const char *s, size_t n)
{
  static const char *const nulls[] = {"null", "Null", "NULL", "~", "", NULL};
  static const char *const trues[] = {"true", "True", "TRUE", NULL};
  static const char *const falses[] = {"false", "False", "FALSE", NULL};

  if (word_is(s, n, nulls))
    return KCLD_FILTER_NULL;
  if (word_is(s, n, trues))
    return KCLD_FILTER_TRUE;
  if (word_is(s, n, falses))
    return KCLD_FILTER_FALSE;
  if (is_json_number(s, n))
    return KCLD_FILTER_NUMBER;
  return KCLD_FILTER_STRING;
}

/* ======== JSON text to a tree ======== */

struct tparse {
  struct kcld_json_scan sc;
  const char *lp;           /* line counting has reached here */
  const char *line_start;
  int line;
  struct kcld_filter_error *err;
};

/* Line and column of `at` (never before an earlier call's). */
static void tpos(struct tparse *t, const char *at, int *line, int *col)
{
  for (; t->lp < at; t->lp++) {
    if (*t->lp == '\n') {
      t->line++;
      t->line_start = t->lp + 1;
    }
  }
  *line = t->line;
  *col = (int)(at - t->line_start) + 1;
}

static void set_err(struct kcld_filter_error *err, int line, int col,
                    const char *path, const char *fmt, ...)
  __attribute__((format(printf, 5, 6)));

static void set_err(struct kcld_filter_error *err, int line, int col,
                    const char *path, const char *fmt, ...)
{
  va_list ap;
  if (!err)
    return;
  err->line = line;
  err->col = col;
  snprintf(err->path, sizeof(err->path), "%s", path);
  va_start(ap, fmt);
  vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
  va_end(ap);
}

static int tfail(struct tparse *t)
{
  int line, col;
  kcld_json_scan_position(&t->sc, &line, &col);
  set_err(t->err, line, col, "", "not JSON: %s", t->sc.err);
  return KCLD_ECONFIG;
}

/* A scanned string, decoded into a new NUL-terminated buffer. */
static char *decoded(const struct kcld_json_val *v)
{
  char *s = malloc(v->len + 1);
  if (s) {
    kcld_json_decode(v, s);
    s[v->len] = '\0';
  }
  return s;
}

static int parse_node(struct tparse *t, struct kcld_filter_node *parent,
                      const struct kcld_json_val *key, int depth,
                      struct kcld_filter_node **out);

/* The members or elements of the container `n` just opened. */
static int parse_children(struct tparse *t, struct kcld_filter_node *n,
                          int depth)
{
  struct kcld_json_val key;
  int first = 1, rc;

  for (;;) {
    if (n->type == KCLD_FILTER_OBJECT)
      rc = kcld_json_scan_member(&t->sc, &first, &key);
    else
      rc = kcld_json_scan_element(&t->sc, &first);
    if (rc < 0)
      return tfail(t);
    if (rc == 0)
      return 0;
    rc = parse_node(t, n, n->type == KCLD_FILTER_OBJECT ? &key : NULL,
                    depth + 1, NULL);
    if (rc != 0)
      return rc;
  }
}

static int parse_node(struct tparse *t, struct kcld_filter_node *parent,
                      const struct kcld_json_val *key, int depth,
                      struct kcld_filter_node **out)
{
  struct kcld_json_val v;
  struct kcld_filter_node *n = NULL;
  enum kcld_filter_type type;
  char *k = NULL, *s = NULL;
  int line, col, rc = KCLD_ENOMEM;
  int c = kcld_json_scan_peek(&t->sc);

  tpos(t, t->sc.p, &line, &col);
  if (depth > KCLD_FILTER_MAX_DEPTH) {
    set_err(t->err, line, col, "", "nested deeper than %d levels",
            KCLD_FILTER_MAX_DEPTH);
    return KCLD_ECONFIG;
  }
  if (key && (k = decoded(key)) == NULL)
    goto done;
  if (c == '{' || c == '[') {
    t->sc.p++;
    type = c == '{' ? KCLD_FILTER_OBJECT : KCLD_FILTER_ARRAY;
    if ((n = kcld_filter_node_add(parent, type, k, key ? key->len : 0, NULL,
                                  0, line, col)) == NULL)
      goto done;
    if (out)
      *out = n;
    rc = parse_children(t, n, depth);
    goto done;
  }
  if (kcld_json_scan_value(&t->sc, &v, depth) != 0) {
    rc = tfail(t);
    goto done;
  }
  if (v.type == KCLD_JSON_STRING) {
    type = KCLD_FILTER_STRING;
    if ((s = decoded(&v)) == NULL)
      goto done;
  } else if (v.type == KCLD_JSON_NUMBER) {
    type = KCLD_FILTER_NUMBER;
  } else if (v.type == KCLD_JSON_BOOL) {
    type = v.p[0] == 't' ? KCLD_FILTER_TRUE : KCLD_FILTER_FALSE;
  } else {
    type = KCLD_FILTER_NULL;
  }
  n = kcld_filter_node_add(parent, type, k, key ? key->len : 0,
                           s ? s : v.p, s ? v.len : v.raw, line, col);
  if (n) {
    if (out)
      *out = n;
    rc = 0;
  }
done:
  free(k);
  free(s);
  return rc;
}

int kcld_filter_parse_text(const char *text, size_t len,
                           struct kcld_filter_node **root,
                           struct kcld_filter_error *err)
{
  struct tparse t;
  struct kcld_filter_node *r = NULL;
  int rc;

  *root = NULL;
  kcld_json_scan_init(&t.sc, text, len, 0);
  t.lp = t.line_start = text;
  t.line = 1;
  t.err = err;
  rc = parse_node(&t, NULL, NULL, 1, &r);
  if (rc == 0 && kcld_json_scan_finish(&t.sc) != 0)
    rc = tfail(&t);
  if (rc == KCLD_ENOMEM)
    set_err(err, 0, 0, "", "out of memory");
  if (rc != 0) {
    kcld_filter_node_free(r);
    return rc;
  }
  *root = r;
  return 0;
}

/* ======== A tree as JSON text ======== */

static void put_string(struct kcld_buf *b, const char *s, size_t n)
{
  json_t *j = json_stringn(s, n);
  char *e = j ? json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
  if (e)
    kcld_buf_add(b, e, strlen(e));
  else
    b->oom = 1;
  free(e);
  json_decref(j);
}

static void put_node(struct kcld_buf *b, const struct kcld_filter_node *n)
{
  static const char *const words[] = {
    [KCLD_FILTER_TRUE] = "true",
    [KCLD_FILTER_FALSE] = "false",
    [KCLD_FILTER_NULL] = "null",
  };
  const struct kcld_filter_node *c;

  switch (n->type) {
  case KCLD_FILTER_OBJECT:
  case KCLD_FILTER_ARRAY:
    kcld_buf_add(b, n->type == KCLD_FILTER_OBJECT ? "{" : "[", 1);
    for (c = n->first; c; c = c->next) {
      if (c != n->first)
        kcld_buf_add(b, ",", 1);
      if (n->type == KCLD_FILTER_OBJECT) {
        put_string(b, c->key, c->key_len);
        kcld_buf_add(b, ":", 1);
      }
      put_node(b, c);
    }
    kcld_buf_add(b, n->type == KCLD_FILTER_OBJECT ? "}" : "]", 1);
    break;
  case KCLD_FILTER_STRING:
    put_string(b, n->text, n->len);
    break;
  case KCLD_FILTER_NUMBER:
    kcld_buf_add(b, n->text, n->len);
    break;
  default:
    kcld_buf_add(b, words[n->type], strlen(words[n->type]));
  }
}

char *kcld_filter_node_json(const struct kcld_filter_node *n)
{
  struct kcld_buf b = {0};
  put_node(&b, n);
  if (b.oom || kcld_buf_add(&b, "", 0) != 0) {
    kcld_buf_free(&b);
    return NULL;
  }
  return b.p;
}

/* ======== Compiling ======== */

struct comp {
  struct kcld_filter_error *err;
  char path[160];
  size_t plen;
};

static int cfail(struct comp *c, const struct kcld_filter_node *n,
                 const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int cfail(struct comp *c, const struct kcld_filter_node *n,
                 const char *fmt, ...)
{
  va_list ap;
  const char *last;
  size_t k;
  if (c->err) {
    c->err->line = n ? n->line : 0;
    c->err->col = n ? n->col : 0;
    snprintf(c->err->path, sizeof(c->err->path), "%s", c->path);
    va_start(ap, fmt);
    vsnprintf(c->err->msg, sizeof(c->err->msg), fmt, ap);
    va_end(ap);
    /* "numeric: ..." at path "...numeric": the operator once. */
    last = strrchr(c->path, '.');
    last = last ? last + 1 : c->path;
    k = strlen(last);
    if (k && strncmp(c->err->msg, last, k) == 0 &&
        strncmp(c->err->msg + k, ": ", 2) == 0)
      memmove(c->err->msg, c->err->msg + k + 2,
              strlen(c->err->msg + k + 2) + 1);
  }
  return KCLD_ECONFIG;
}

static int cnomem(struct comp *c)
{
  cfail(c, NULL, "out of memory");
  return KCLD_ENOMEM;
}

/* Path steps: push returns the length to pop back to. */
static size_t push_key(struct comp *c, const char *key)
{
  size_t old = c->plen;
  int n = snprintf(c->path + old, sizeof(c->path) - old, "%s%s",
                   old ? "." : "", key);
  if (n > 0)
    c->plen = old + (size_t)n < sizeof(c->path) ? old + (size_t)n
                                                : sizeof(c->path) - 1;
  return old;
}

static size_t push_index(struct comp *c, size_t i)
{
  size_t old = c->plen;
  int n = snprintf(c->path + old, sizeof(c->path) - old, "[%zu]", i);
  if (n > 0)
    c->plen = old + (size_t)n < sizeof(c->path) ? old + (size_t)n
                                                : sizeof(c->path) - 1;
  return old;
}

static void pop(struct comp *c, size_t old)
{
  c->plen = old;
  c->path[old] = '\0';
}

static size_t nchildren(const struct kcld_filter_node *n)
{
  size_t k = 0;
  for (const struct kcld_filter_node *c = n->first; c; c = c->next)
    k++;
  return k;
}

static const char *type_name(enum kcld_filter_type t)
{
  static const char *const names[] = {
    [KCLD_FILTER_OBJECT] = "a mapping",
    [KCLD_FILTER_ARRAY] = "a list",
    [KCLD_FILTER_STRING] = "a string",
    [KCLD_FILTER_NUMBER] = "a number",
    [KCLD_FILTER_TRUE] = "true",
    [KCLD_FILTER_FALSE] = "false",
    [KCLD_FILTER_NULL] = "null",
  };
  return names[t];
}

static int set_str(struct fstr *d, const char *s, size_t n)
{
  d->s = dup_text(s, n);
  d->len = n;
  return d->s ? 0 : KCLD_ENOMEM;
}

/* The number text n->text as a finite double. */
static int number_of(struct comp *c, const struct kcld_filter_node *n,
                     double *out)
{
  *out = strtod(n->text, NULL);
  if (!isfinite(*out))
    return cfail(c, n, "%s is too large to compare", n->text);
  return 0;
}

/* Case folding: UTF-8 in, folded UTF-8 out (dst has room for n bytes:
 * folding never makes a character longer in the ranges folded). */
static size_t fold_text(const char *s, size_t n, char *dst)
{
  const unsigned char *p = (const unsigned char *)s, *end = p + n;
  char *o = dst;
  while (p < end) {
    const unsigned char *q = p;
    uint32_t cp = kcld_filter_utf8_next(&q, end);
    if (cp >= KCLD_FILTER_BAD_BYTE) {
      *o++ = (char)*p; /* not UTF-8: kept as it is */
    } else {
      o = kcld_utf8_put(o, kcld_filter_fold(cp));
    }
    p = q;
  }
  return (size_t)(o - dst);
}

static int set_folded(struct fstr *d, const char *s, size_t n)
{
  if ((d->s = malloc(n + 1)) == NULL)
    return KCLD_ENOMEM;
  d->len = fold_text(s, n, d->s);
  d->s[d->len] = '\0';
  return 0;
}

/* "a*b\*c" -> segments split at the unescaped stars, unescaped. */
static int compile_wildcard(struct comp *c, const struct kcld_filter_node *n,
                            struct wild *w)
{
  const char *s = n->text;
  size_t stars = 0, k = 0;
  char *seg;

  for (size_t i = 0; i < n->len; i++) {
    if (s[i] == '\\') {
      if (i + 1 >= n->len || (s[i + 1] != '*' && s[i + 1] != '\\'))
        return cfail(c, n, "wildcard: a backslash escapes only * or \\");
      i++;
    } else if (s[i] == '*') {
      if (i + 1 < n->len && s[i + 1] == '*')
        return cfail(c, n, "wildcard: consecutive * are not allowed");
      stars++;
    }
  }
  if ((w->seg = calloc(stars + 1, sizeof(*w->seg))) == NULL)
    return cnomem(c);
  w->nseg = stars + 1;
  if ((seg = malloc(n->len + 1)) == NULL)
    return cnomem(c);
  w->seg[0].s = seg;
  for (size_t i = 0; i < n->len; i++) {
    if (s[i] == '*') {
      w->seg[k].len = (size_t)(seg - w->seg[k].s);
      *seg++ = '\0';
      w->seg[++k].s = seg;
    } else {
      *seg++ = s[i] == '\\' ? s[++i] : s[i];
    }
  }
  w->seg[k].len = (size_t)(seg - w->seg[k].s);
  *seg = '\0';
  return 0;
}

static int compile_cidr(struct comp *c, const struct kcld_filter_node *n,
                        struct matcher *m)
{
  const char *slash = memchr(n->text, '/', n->len);
  char ip[64];
  size_t iplen = slash ? (size_t)(slash - n->text) : 0;
  unsigned long bits = 0;
  const char *d;

  if (!slash || iplen == 0 || iplen >= sizeof(ip))
    return cfail(c, n, "cidr: expected ADDRESS/BITS, got \"%s\"", n->text);
  memcpy(ip, n->text, iplen);
  ip[iplen] = '\0';
  if (inet_pton(AF_INET, ip, m->net) == 1)
    m->family = 4;
  else if (inet_pton(AF_INET6, ip, m->net) == 1)
    m->family = 6;
  else
    return cfail(c, n, "cidr: \"%s\" is not an IPv4 or IPv6 address", ip);
  d = slash + 1;
  if (d == n->text + n->len || n->text + n->len - d > 3)
    return cfail(c, n, "cidr: the prefix length must be a number");
  for (; d < n->text + n->len; d++) {
    if (*d < '0' || *d > '9')
      return cfail(c, n, "cidr: the prefix length must be a number");
    bits = bits * 10 + (unsigned long)(*d - '0');
  }
  if (bits > (m->family == 4 ? 32u : 128u))
    return cfail(c, n, "cidr: a prefix of %lu bits is too long for IPv%d",
                 bits, m->family);
  m->bits = (unsigned char)bits;
  return 0;
}

/* ["=", 5] / [">", 0, "<=", 5] / ["<", 10] ... */
static int compile_numeric(struct comp *c, const struct kcld_filter_node *n,
                           struct matcher *m)
{
  const struct kcld_filter_node *op = n->first;
  size_t count = nchildren(n);
  int have_lo = 0, have_hi = 0, rc;
  double v;

  m->lo = -HUGE_VAL;
  m->hi = HUGE_VAL;
  if (n->type != KCLD_FILTER_ARRAY || (count != 2 && count != 4))
    return cfail(c, n, "numeric: expected [OP, NUMBER] or "
                       "[\">\"|\">=\", NUMBER, \"<\"|\"<=\", NUMBER]");
  for (; op; op = op->next->next) {
    const struct kcld_filter_node *num = op->next;
    const char *o = op->type == KCLD_FILTER_STRING ? op->text : "";
    if (num->type != KCLD_FILTER_NUMBER)
      return cfail(c, num, "numeric: the value after \"%s\" must be a "
                           "number, got %s", o, type_name(num->type));
    if ((rc = number_of(c, num, &v)) != 0)
      return rc;
    if (strcmp(o, "=") == 0 && count == 2) {
      m->lo = m->hi = v;
      m->lo_incl = m->hi_incl = 1;
      have_lo = have_hi = 1;
    } else if ((strcmp(o, ">") == 0 || strcmp(o, ">=") == 0) && !have_lo) {
      m->lo = v;
      m->lo_incl = o[1] == '=';
      have_lo = 1;
    } else if ((strcmp(o, "<") == 0 || strcmp(o, "<=") == 0) && !have_hi) {
      m->hi = v;
      m->hi_incl = o[1] == '=';
      have_hi = 1;
    } else {
      return cfail(c, op, "numeric: \"%s\" is not an operator here (=, <, "
                          "<=, >, >=; a range is one lower and one upper "
                          "bound)", op->type == KCLD_FILTER_STRING
                                      ? op->text : type_name(op->type));
    }
  }
  if (have_lo && have_hi && !(m->lo < m->hi || (m->lo == m->hi &&
                                                count == 2)))
    return cfail(c, n, "numeric: the lower bound must be below the upper");
  return 0;
}

/* How compile_strings keeps each string of an operator. */
enum keep {
  KEEP_AS_IS,     /* m->strs */
  KEEP_NONEMPTY,  /* m->strs; "" refused */
  KEEP_FOLDED,    /* m->strs, case folded */
  KEEP_WILDCARD   /* m->wild, compiled */
};

/* The string (or list of strings) `v` of operator `op` into m. */
static int compile_strings(struct comp *c, const struct kcld_filter_node *v,
                           const char *op, enum keep how, struct matcher *m)
{
  const struct kcld_filter_node *s = v->type == KCLD_FILTER_ARRAY ? v->first
                                                                  : v;
  size_t count = v->type == KCLD_FILTER_ARRAY ? nchildren(v) : 1;
  int rc;

  if (count == 0)
    return cfail(c, v, "%s: an empty list", op);
  if (how == KEEP_WILDCARD)
    m->wild = calloc(count, sizeof(*m->wild));
  else
    m->strs = calloc(count, sizeof(*m->strs));
  if (!m->wild && !m->strs)
    return cnomem(c);
  for (; s; s = v->type == KCLD_FILTER_ARRAY ? s->next : NULL) {
    if (s->type != KCLD_FILTER_STRING)
      return cfail(c, s, "%s: expected a string, got %s", op,
                   type_name(s->type));
    if (how == KEEP_NONEMPTY && s->len == 0)
      return cfail(c, s, "%s: an empty string is not allowed here", op);
    m->n++;
    if (how == KEEP_WILDCARD) {
      if ((rc = compile_wildcard(c, s, &m->wild[m->n - 1])) != 0)
        return rc;
      continue;
    }
    rc = how == KEEP_FOLDED ? set_folded(&m->strs[m->n - 1], s->text, s->len)
                            : set_str(&m->strs[m->n - 1], s->text, s->len);
    if (rc != 0)
      return cnomem(c);
  }
  return 0;
}

/* {"prefix": {"equals-ignore-case": "x"}} and the like: the inner string. */
static const struct kcld_filter_node *ignore_case_of(
  struct comp *c, const struct kcld_filter_node *v, const char *op)
{
  if (nchildren(v) != 1 || strcmp(v->first->key, "equals-ignore-case") != 0 ||
      v->first->type != KCLD_FILTER_STRING) {
    cfail(c, v, "%s: expected a string or {\"equals-ignore-case\": "
                "STRING}", op);
    return NULL;
  }
  return v->first;
}

static int compile_anything_but(struct comp *c,
                                 const struct kcld_filter_node *v,
                                 struct matcher *m)
{
  static const struct {
    const char *name;
    enum mkind kind;
  } forms[] = {
    {"prefix", M_NOT_PREFIX},
    {"suffix", M_NOT_SUFFIX},
    {"equals-ignore-case", M_NOT_EQUALS_IC},
    {"wildcard", M_NOT_WILDCARD},
  };
  const struct kcld_filter_node *e;
  size_t count;
  double d;
  int rc;

  if (v->type == KCLD_FILTER_OBJECT) {
    if (nchildren(v) != 1)
      return cfail(c, v, "anything-but: one of prefix, suffix, "
                         "equals-ignore-case or wildcard");
    e = v->first;
    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
      if (strcmp(e->key, forms[i].name) != 0)
        continue;
      m->kind = forms[i].kind;
      return compile_strings(c, e, forms[i].name,
                             m->kind == M_NOT_WILDCARD    ? KEEP_WILDCARD
                             : m->kind == M_NOT_EQUALS_IC ? KEEP_FOLDED
                                                          : KEEP_NONEMPTY,
                             m);
    }
    return cfail(c, e, "anything-but: \"%s\" is not one of prefix, suffix, "
                       "equals-ignore-case, wildcard", e->key);
  }
  e = v->type == KCLD_FILTER_ARRAY ? v->first : v;
  if (!e)
    return cfail(c, v, "anything-but: an empty list");
  if (e->type == KCLD_FILTER_STRING) {
    m->kind = M_NOT_STRING;
    return compile_strings(c, v, "anything-but", KEEP_AS_IS, m);
  }
  if (e->type != KCLD_FILTER_NUMBER)
    return cfail(c, e, "anything-but: expected strings or numbers, got %s",
                 type_name(e->type));
  m->kind = M_NOT_NUMBER;
  count = v->type == KCLD_FILTER_ARRAY ? nchildren(v) : 1;
  if ((m->nums = calloc(count, sizeof(*m->nums))) == NULL)
    return cnomem(c);
  for (; e; e = v->type == KCLD_FILTER_ARRAY ? e->next : NULL) {
    if (e->type != KCLD_FILTER_NUMBER)
      return cfail(c, e, "anything-but: a list is all strings or all "
                         "numbers, got %s", type_name(e->type));
    if ((rc = number_of(c, e, &d)) != 0)
      return rc;
    m->nums[m->n++] = d;
  }
  return 0;
}

/* prefix / suffix: a string, or {"equals-ignore-case": STRING}. */
static int compile_affix(struct comp *c, const struct kcld_filter_node *v,
                         const char *op, enum mkind plain, enum mkind ic,
                         struct matcher *m)
{
  if (v->type == KCLD_FILTER_OBJECT) {
    if ((v = ignore_case_of(c, v, op)) == NULL)
      return KCLD_ECONFIG;
    m->kind = ic;
    return compile_strings(c, v, op, KEEP_FOLDED, m);
  }
  if (v->type != KCLD_FILTER_STRING)
    return cfail(c, v, "%s: expected a string or {\"equals-ignore-case\": "
                       "STRING}, got %s", op, type_name(v->type));
  m->kind = plain;
  return compile_strings(c, v, op, KEEP_AS_IS, m);
}

/* One operator mapping of a value list, e.g. {"prefix": "x"}. */
static int compile_op(struct comp *c, const struct kcld_filter_node *n,
                      struct matcher *m)
{
  const struct kcld_filter_node *v = n->first;
  const char *op;
  size_t old;
  int rc;

  if (nchildren(n) != 1)
    return cfail(c, n, "expected one operator in {...} (prefix, suffix, "
                       "equals-ignore-case, wildcard, anything-but, "
                       "numeric, exists, cidr), got %zu keys", nchildren(n));
  op = v->key;
  old = push_key(c, op);
  if (strcmp(op, "prefix") == 0) {
    rc = compile_affix(c, v, op, M_PREFIX, M_PREFIX_IC, m);
  } else if (strcmp(op, "suffix") == 0) {
    rc = compile_affix(c, v, op, M_SUFFIX, M_SUFFIX_IC, m);
  } else if (strcmp(op, "equals-ignore-case") == 0 ||
             strcmp(op, "exact") == 0) {
    m->kind = op[0] == 'e' && op[1] == 'q' ? M_EQUALS_IC : M_STRING;
    rc = v->type == KCLD_FILTER_STRING
           ? compile_strings(c, v, op,
                             m->kind == M_EQUALS_IC ? KEEP_FOLDED
                                                    : KEEP_AS_IS, m)
           : cfail(c, v, "%s: expected a string, got %s", op,
                   type_name(v->type));
  } else if (strcmp(op, "wildcard") == 0) {
    m->kind = M_WILDCARD;
    rc = v->type == KCLD_FILTER_STRING
           ? compile_strings(c, v, op, KEEP_WILDCARD, m)
           : cfail(c, v, "wildcard: expected a string, got %s",
                   type_name(v->type));
  } else if (strcmp(op, "anything-but") == 0) {
    rc = compile_anything_but(c, v, m);
  } else if (strcmp(op, "numeric") == 0) {
    m->kind = M_NUMERIC;
    rc = compile_numeric(c, v, m);
  } else if (strcmp(op, "exists") == 0) {
    m->kind = M_EXISTS;
    m->exists = v->type == KCLD_FILTER_TRUE;
    rc = v->type == KCLD_FILTER_TRUE || v->type == KCLD_FILTER_FALSE
           ? 0
           : cfail(c, v, "exists: expected true or false, got %s",
                   type_name(v->type));
  } else if (strcmp(op, "cidr") == 0) {
    m->kind = M_CIDR;
    rc = v->type == KCLD_FILTER_STRING
           ? compile_cidr(c, v, m)
           : cfail(c, v, "cidr: expected a string, got %s",
                   type_name(v->type));
  } else {
    rc = cfail(c, v, "unknown operator \"%s\" (prefix, suffix, "
                     "equals-ignore-case, wildcard, anything-but, numeric, "
                     "exists, cidr, exact)", op);
  }
  pop(c, old);
  return rc;
}

/* A list of values and operators, OR'ed. */
static int compile_leaf(struct comp *c, const struct kcld_filter_node *list,
                        struct field *f)
{
  const struct kcld_filter_node *e;
  size_t i = 0, old;
  int rc = 0;

  if (!list->first)
    return cfail(c, list, "an empty list matches nothing");
  if ((f->m = calloc(nchildren(list), sizeof(*f->m))) == NULL)
    return cnomem(c);
  for (e = list->first; e && rc == 0; e = e->next, i++) {
    struct matcher *m = &f->m[f->nm++];
    old = push_index(c, i);
    switch (e->type) {
    case KCLD_FILTER_STRING:
      m->kind = M_STRING;
      rc = compile_strings(c, e, "value", KEEP_AS_IS, m);
      break;
    case KCLD_FILTER_NUMBER:
      m->kind = M_NUMBER;
      if ((m->strs = calloc(1, sizeof(*m->strs))) == NULL ||
          set_str(&m->strs[0], e->text, e->len) != 0)
        rc = cnomem(c);
      else
        m->n = 1;
      break;
    case KCLD_FILTER_TRUE:
      m->kind = M_TRUE;
      break;
    case KCLD_FILTER_FALSE:
      m->kind = M_FALSE;
      break;
    case KCLD_FILTER_NULL:
      m->kind = M_NULL;
      break;
    case KCLD_FILTER_OBJECT:
      rc = compile_op(c, e, m);
      break;
    default:
      rc = cfail(c, e, "a list inside a list of values");
    }
    pop(c, old);
  }
  return rc;
}

/* The record fields a top-level pattern may name. */
static const char *const k_record_fields[] = {
  "data", "partitionKey", "sequenceNumber", "approximateArrivalTimestamp",
  "kinesisSchemaVersion", NULL,
};

static int compile_object(struct comp *c, const struct kcld_filter_node *n,
                          int top, int depth, struct pnode **out);

static int compile_or(struct comp *c, const struct kcld_filter_node *n,
                      int top, int depth, struct pnode *p)
{
  struct orgroup *g;
  const struct kcld_filter_node *e;
  size_t i = 0, old;
  int rc = 0;

  if (n->type != KCLD_FILTER_ARRAY || nchildren(n) < 2)
    return cfail(c, n, "$or: expected a list of two or more mappings");
  g = realloc(p->ors, (p->nors + 1) * sizeof(*p->ors));
  if (!g)
    return cnomem(c);
  p->ors = g;
  g = &p->ors[p->nors++];
  memset(g, 0, sizeof(*g));
  if ((g->alts = calloc(nchildren(n), sizeof(*g->alts))) == NULL)
    return cnomem(c);
  for (e = n->first; e && rc == 0; e = e->next, i++) {
    old = push_index(c, i);
    if (e->type != KCLD_FILTER_OBJECT)
      rc = cfail(c, e, "$or: expected a mapping, got %s",
                 type_name(e->type));
    else
      rc = compile_object(c, e, top, depth + 1, &g->alts[g->n++]);
    pop(c, old);
  }
  return rc;
}

/* One member of a pattern mapping into p (a later one of the same name
 * replaces an earlier one). */
static int compile_member(struct comp *c, const struct kcld_filter_node *e,
                          int top, int depth, struct pnode *p)
{
  struct field nf = {0}, *f;
  size_t i;
  int rc;

  if (top && !word_is(e->key, e->key_len, k_record_fields))
    return cfail(c, e, "\"%s\" is not a field of a Kinesis record (data, "
                       "partitionKey, sequenceNumber, "
                       "approximateArrivalTimestamp, kinesisSchemaVersion);"
                       " fields of the payload go under data", e->key);
  if (top && strcmp(e->key, "data") == 0 && e->type != KCLD_FILTER_OBJECT)
    return cfail(c, e, "data: expected a mapping of the payload's fields "
                       "(a filter reads the payload as JSON), got %s",
                 type_name(e->type));
  if (e->type == KCLD_FILTER_OBJECT && top && strcmp(e->key, "data") != 0)
    return cfail(c, e, "%s: expected a list of values, got a mapping",
                 e->key);
  if (e->type == KCLD_FILTER_OBJECT)
    rc = compile_object(c, e, 0, depth + 1, &nf.obj);
  else if (e->type == KCLD_FILTER_ARRAY)
    rc = compile_leaf(c, e, &nf);
  else
    rc = cfail(c, e, "expected a list of values (write [%s%s%s]) or a "
                     "mapping, got %s", e->type == KCLD_FILTER_STRING ? "\""
                                                                      : "",
               e->text ? e->text : type_name(e->type),
               e->type == KCLD_FILTER_STRING ? "\"" : "", type_name(e->type));
  if (rc == 0 && (nf.name = dup_text(e->key, e->key_len)) == NULL)
    rc = cnomem(c);
  nf.name_len = e->key_len;
  if (rc != 0) {
    kcld_filter_field_clear(&nf);
    return rc;
  }
  for (i = 0; i < p->nf; i++) {
    if (p->f[i].name_len == nf.name_len &&
        memcmp(p->f[i].name, nf.name, nf.name_len) == 0) {
      kcld_filter_field_clear(&p->f[i]);
      p->f[i] = nf;
      return 0;
    }
  }
  if ((f = realloc(p->f, (p->nf + 1) * sizeof(*f))) == NULL) {
    kcld_filter_field_clear(&nf);
    return cnomem(c);
  }
  p->f = f;
  p->f[p->nf++] = nf;
  return 0;
}

static int compile_object(struct comp *c, const struct kcld_filter_node *n,
                          int top, int depth, struct pnode **out)
{
  struct pnode *p;
  size_t old;
  int rc = 0;

  if (depth > KCLD_FILTER_MAX_DEPTH)
    return cfail(c, n, "nested deeper than %d levels", KCLD_FILTER_MAX_DEPTH);
  if (!n->first)
    return cfail(c, n, "an empty mapping (a pattern needs a field)");
  if ((p = calloc(1, sizeof(*p))) == NULL)
    return cnomem(c);
  *out = p;
  for (const struct kcld_filter_node *e = n->first; e && rc == 0;
       e = e->next) {
    old = push_key(c, e->key);
    if (strcmp(e->key, "$or") == 0)
      rc = compile_or(c, e, top, depth, p);
    else
      rc = compile_member(c, e, top, depth, p);
    pop(c, old);
  }
  return rc;
}

/* 1 when the top-level mapping p (or one of its $or branches) names the
 * record field `name`. */
static int names_field(const struct pnode *p, const char *name)
{
  for (size_t i = 0; i < p->nf; i++)
    if (strcmp(p->f[i].name, name) == 0)
      return 1;
  for (size_t i = 0; i < p->nors; i++)
    for (size_t j = 0; j < p->ors[i].n; j++)
      if (names_field(p->ors[i].alts[j], name))
        return 1;
  return 0;
}

/* Adds the field names of mapping p and all below it to f->names. */
static int collect_names(struct kcld_filter *f, const struct pnode *p)
{
  for (size_t i = 0; i < p->nf; i++) {
    const struct field *fd = &p->f[i];
    size_t k = 0;
    while (k < f->nnames && !(f->names[k].len == fd->name_len &&
                              memcmp(f->names[k].s, fd->name,
                                     fd->name_len) == 0))
      k++;
    if (k == f->nnames) {
      struct fstr *nn = realloc(f->names, (k + 1) * sizeof(*nn));
      if (!nn)
        return KCLD_ENOMEM;
      f->names = nn;
      if (set_str(&f->names[k], fd->name, fd->name_len) != 0)
        return KCLD_ENOMEM;
      f->nnames++;
    }
    if (fd->obj && collect_names(f, fd->obj) != 0)
      return KCLD_ENOMEM;
  }
  for (size_t i = 0; i < p->nors; i++)
    for (size_t j = 0; j < p->ors[i].n; j++)
      if (collect_names(f, p->ors[i].alts[j]) != 0)
        return KCLD_ENOMEM;
  return 0;
}

/* The payload field names of top-level mapping p (its data mappings). */
static int collect_data_names(struct kcld_filter *f, const struct pnode *p)
{
  for (size_t i = 0; i < p->nf; i++)
    if (strcmp(p->f[i].name, "data") == 0 &&
        collect_names(f, p->f[i].obj) != 0)
      return KCLD_ENOMEM;
  for (size_t i = 0; i < p->nors; i++)
    for (size_t j = 0; j < p->ors[i].n; j++)
      if (collect_data_names(f, p->ors[i].alts[j]) != 0)
        return KCLD_ENOMEM;
  return 0;
}

struct kcld_filter *kcld_filter_new(void)
{
  return calloc(1, sizeof(struct kcld_filter));
}

void kcld_filter_free(struct kcld_filter *f)
{
  if (!f)
    return;
  for (size_t i = 0; i < f->n; i++)
    kcld_filter_pnode_free(f->p[i].root);
  for (size_t i = 0; i < f->nnames; i++)
    free(f->names[i].s);
  free(f->names);
  free(f);
}

size_t kcld_filter_count(const struct kcld_filter *f)
{
  return f->n;
}

int kcld_filter_add(struct kcld_filter *f,
                    const struct kcld_filter_node *pattern,
                    struct kcld_filter_error *err)
{
  struct comp c = {.err = err};
  struct pnode *root = NULL;
  int rc;

  if (f->n >= KCLD_FILTER_MAX_PATTERNS)
    return cfail(&c, pattern, "more than %d patterns (Lambda's limit)",
                 KCLD_FILTER_MAX_PATTERNS);
  if (pattern->type != KCLD_FILTER_OBJECT)
    return cfail(&c, pattern, "a pattern is a mapping of record fields "
                              "(data, partitionKey, ...), got %s",
                 type_name(pattern->type));
  rc = compile_object(&c, pattern, 1, 1, &root);
  /* The names only grow: a name of a pattern refused later costs a
   * little parsing, never a wrong answer. */
  if (rc == 0 && collect_data_names(f, root) != 0)
    rc = cnomem(&c);
  if (rc != 0) {
    kcld_filter_pnode_free(root);
    return rc;
  }
  f->p[f->n].root = root;
  f->p[f->n].uses_data = names_field(root, "data");
  f->any_data |= f->p[f->n].uses_data;
  f->any_arrival |= names_field(root, "approximateArrivalTimestamp");
  f->n++;
  return 0;
}

/* Prefixes err->path with `what` (e.g. "Pattern", "Filters[2].Pattern"). */
static void prefix_path(struct kcld_filter_error *err, const char *what)
{
  char old[sizeof(err->path)];
  size_t w, o, cap = sizeof(err->path) - 1;
  if (!err)
    return;
  memcpy(old, err->path, sizeof(old));
  w = strlen(what) < cap ? strlen(what) : cap;
  memcpy(err->path, what, w);
  if (old[0] && w < cap)
    err->path[w++] = '.';
  o = strlen(old) < cap - w ? strlen(old) : cap - w;
  memcpy(err->path + w, old, o);
  err->path[w + o] = '\0';
}

/* Adds the pattern held as JSON text in the string node s. */
static int add_pattern_string(struct kcld_filter *f,
                              const struct kcld_filter_node *s,
                              const char *what, struct kcld_filter_error *err)
{
  struct kcld_filter_node *inner = NULL;
  int rc;

  if (s->type != KCLD_FILTER_STRING) {
    set_err(err, s->line, s->col, what, "expected the pattern as a JSON "
            "string, got %s", type_name(s->type));
    return KCLD_ECONFIG;
  }
  rc = kcld_filter_parse_text(s->text, s->len, &inner, err);
  if (rc == 0)
    rc = kcld_filter_add(f, inner, err);
  if (rc != 0)
    prefix_path(err, what);
  kcld_filter_node_free(inner);
  return rc;
}

static int add_filters(struct kcld_filter *f,
                       const struct kcld_filter_node *list,
                       struct kcld_filter_error *err)
{
  char what[48];
  size_t i = 0;
  int rc = 0;

  if (list->type != KCLD_FILTER_ARRAY || !list->first) {
    set_err(err, list->line, list->col, "Filters", "expected a list of "
            "one or more {\"Pattern\": ...}, got %s",
            list->first ? type_name(list->type) : "an empty list");
    return KCLD_ECONFIG;
  }
  for (const struct kcld_filter_node *e = list->first; e && rc == 0;
       e = e->next, i++) {
    snprintf(what, sizeof(what), "Filters[%zu]", i);
    if (e->type != KCLD_FILTER_OBJECT || nchildren(e) != 1 ||
        strcmp(e->first->key, "Pattern") != 0) {
      set_err(err, e->line, e->col, what, "expected {\"Pattern\": "
              "\"<pattern JSON>\"}");
      rc = KCLD_ECONFIG;
    } else {
      snprintf(what, sizeof(what), "Filters[%zu].Pattern", i);
      rc = add_pattern_string(f, e->first, what, err);
    }
  }
  return rc;
}

int kcld_filter_add_text(struct kcld_filter *f, const char *text, size_t len,
                         struct kcld_filter_error *err)
{
  struct kcld_filter_node *root = NULL;
  size_t before = f->n;
  int rc = kcld_filter_parse_text(text, len, &root, err);

  if (rc != 0)
    return rc;
  if (root->type == KCLD_FILTER_OBJECT && nchildren(root) == 1 &&
      strcmp(root->first->key, "Pattern") == 0)
    rc = add_pattern_string(f, root->first, "Pattern", err);
  else if (root->type == KCLD_FILTER_OBJECT && nchildren(root) == 1 &&
           strcmp(root->first->key, "Filters") == 0)
    rc = add_filters(f, root->first, err);
  else
    rc = kcld_filter_add(f, root, err);
  kcld_filter_node_free(root);
  if (rc != 0) {
    while (f->n > before)
      kcld_filter_pnode_free(f->p[--f->n].root);
    f->any_data = f->any_arrival = 0;
    for (size_t i = 0; i < f->n; i++) {
      f->any_data |= f->p[i].uses_data;
      f->any_arrival |= names_field(f->p[i].root,
                                    "approximateArrivalTimestamp");
    }
  }
  return rc;
}
