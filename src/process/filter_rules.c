/* filter_rules.c — matching records against compiled patterns
 * (filter_rules.h), and freeing them.
 *
 * A record becomes a small document: a mapping of its metadata fields and,
 * when some pattern names data, its payload parsed into the same tree by
 * the strict JSON scanner (strings decoded, numbers kept as written).  The
 * tree lives in one array (on the stack for small payloads), so matching a
 * record allocates at most twice: the array and the decoded strings. */
#include "process/filter_rules.h"

#include <arpa/inet.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "base/utf8.h"
#include "err.h"

/* ======== Freeing ======== */

static void matcher_clear(struct matcher *m)
{
  for (size_t i = 0; m->strs && i < m->n; i++)
    free(m->strs[i].s);
  for (size_t i = 0; m->wild && i < m->n; i++) {
    if (m->wild[i].seg)
      free(m->wild[i].seg[0].s);
    free(m->wild[i].seg);
  }
  free(m->strs);
  free(m->nums);
  free(m->wild);
}

void kcld_filter_field_clear(struct field *f)
{
  for (size_t i = 0; i < f->nm; i++)
    matcher_clear(&f->m[i]);
  free(f->m);
  kcld_filter_pnode_free(f->obj);
  free(f->name);
  memset(f, 0, sizeof(*f));
}

void kcld_filter_pnode_free(struct pnode *p)
{
  if (!p)
    return;
  for (size_t i = 0; i < p->nf; i++)
    kcld_filter_field_clear(&p->f[i]);
  for (size_t i = 0; i < p->nors; i++) {
    for (size_t j = 0; j < p->ors[i].n; j++)
      kcld_filter_pnode_free(p->ors[i].alts[j]);
    free(p->ors[i].alts);
  }
  free(p->f);
  free(p->ors);
  free(p);
}

/* ======== Text ======== */

uint32_t kcld_filter_utf8_next(const unsigned char **p,
                               const unsigned char *end)
{
  const unsigned char *s = *p;
  size_t n = kcld_utf8_char_len(s, (size_t)(end - s));
  uint32_t cp;

  if (n == 0) {
    *p = s + 1;
    return KCLD_FILTER_BAD_BYTE | s[0];
  }
  *p = s + n;
  if (n == 1)
    return s[0];
  cp = s[0] & (0x7fu >> n);
  for (size_t i = 1; i < n; i++)
    cp = (cp << 6) | (s[i] & 0x3fu);
  return cp;
}

uint32_t kcld_filter_fold(uint32_t cp)
{
  if (cp < 0x80)
    return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
  if (cp >= 0xc0 && cp <= 0xde && cp != 0xd7)
    return cp + 32;
  /* Latin Extended-A: pairs, upper case first (the dotted and dotless
   * Turkish i, U+0130/U+0131, fold to nothing else). */
  if ((cp >= 0x100 && cp <= 0x12f) || (cp >= 0x132 && cp <= 0x137) ||
      (cp >= 0x14a && cp <= 0x177))
    return cp | 1;
  if ((cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17e))
    return (cp & 1) ? cp + 1 : cp;
  if (cp == 0x178)
    return 0xff;
  if (cp >= 0x391 && cp <= 0x3ab && cp != 0x3a2)
    return cp + 32;
  if (cp == 0x3c2) /* final sigma */
    return 0x3c3;
  if (cp >= 0x410 && cp <= 0x42f)
    return cp + 32;
  if (cp >= 0x400 && cp <= 0x40f)
    return cp + 80;
  return cp;
}

/* Compares the value s[0..n) folded with the folded pattern text t[0..tn)
 * from their starts: 1 when t is all consumed and (when whole) s too. */
static int ic_compare(const char *s, size_t n, const struct fstr *t,
                      int whole)
{
  const unsigned char *p = (const unsigned char *)s, *pe = p + n;
  const unsigned char *q = (const unsigned char *)t->s, *qe = q + t->len;

  while (q < qe) {
    if (p >= pe)
      return 0;
    uint32_t a = kcld_filter_utf8_next(&p, pe);
    uint32_t b = kcld_filter_utf8_next(&q, qe);
    if (a < KCLD_FILTER_BAD_BYTE)
      a = kcld_filter_fold(a);
    if (a != b)
      return 0;
  }
  return !whole || p == pe;
}

static int ic_suffix(const char *s, size_t n, const struct fstr *t)
{
  const unsigned char *q = (const unsigned char *)t->s, *qe = q + t->len;
  size_t chars = 0, at = n;

  while (q < qe) {
    kcld_filter_utf8_next(&q, qe);
    chars++;
  }
  /* Back over as many characters of s (continuation bytes 10xxxxxx). */
  while (chars > 0 && at > 0) {
    at--;
    if (((unsigned char)s[at] & 0xc0) != 0x80)
      chars--;
  }
  return chars == 0 && ic_compare(s + at, n - at, t, 1);
}

static int wild_match(const struct wild *w, const char *s, size_t n)
{
  const struct fstr *g = w->seg, *last = &w->seg[w->nseg - 1];
  const char *p, *end;

  if (w->nseg == 1)
    return n == g->len && memcmp(s, g->s, n) == 0;
  if (n < g->len + last->len || memcmp(s, g->s, g->len) != 0 ||
      memcmp(s + n - last->len, last->s, last->len) != 0)
    return 0;
  /* Stars only: placing each middle segment at its first occurrence after
   * the one before is never worse than any other placement. */
  p = s + g->len;
  end = s + n - last->len;
  for (size_t i = 1; i + 1 < w->nseg; i++) {
    const char *hit = memmem(p, (size_t)(end - p), w->seg[i].s,
                             w->seg[i].len);
    if (!hit)
      return 0;
    p = hit + w->seg[i].len;
  }
  return 1;
}

static int cidr_match(const struct matcher *m, const char *s, size_t n)
{
  char buf[64];
  unsigned char a[16];
  unsigned full = m->bits / 8u, rem = m->bits % 8u;

  if (n == 0 || n >= sizeof(buf))
    return 0;
  memcpy(buf, s, n);
  buf[n] = '\0';
  if (inet_pton(m->family == 4 ? AF_INET : AF_INET6, buf, a) != 1)
    return 0;
  if (memcmp(a, m->net, full) != 0)
    return 0;
  return rem == 0 || ((a[full] ^ m->net[full]) & (0xffu << (8 - rem)) &
                      0xffu) == 0;
}

/* ======== The record as a document ======== */

enum dtype { D_OBJECT = 1, D_ARRAY, D_STRING, D_NUMBER, D_TRUE, D_FALSE,
             D_NULL };

struct dval {
  const char *s;            /* string: decoded; number: as written */
  size_t len;
  const char *key;          /* member name in a mapping */
  size_t klen;
  double num;               /* numstate 1 */
  uint32_t child, next;     /* indexes into doc.v; 0 = none */
  unsigned char type;       /* enum dtype */
  unsigned char numstate;   /* 0 not read, 1 num is it, 2 not a finite
                               double */
};

#define DOC_STACK 64

struct doc {
  const struct kcld_filter *f;
  struct dval *v;           /* v[0] unused: index 0 means "none" */
  uint32_t n, cap;
  char *dec;                /* decoded strings, room for the whole text */
  size_t dec_used;
  const char *text;
  size_t text_len;
  struct dval stack[DOC_STACK];
};

static void doc_init(struct doc *d, const struct kcld_filter *f,
                     const char *text, size_t len)
{
  d->f = f;
  d->v = d->stack;
  d->n = 1;
  d->cap = DOC_STACK;
  d->dec = NULL;
  d->dec_used = 0;
  d->text = text;
  d->text_len = len;
}

static void doc_free(struct doc *d)
{
  if (d->v != d->stack)
    free(d->v);
  free(d->dec);
}

/* A new zeroed value; 0 when out of memory. */
static uint32_t dnew(struct doc *d)
{
  if (d->n == d->cap) {
    struct dval *v;
    if (d->cap > UINT32_MAX / 2)
      return 0;
    if (d->v == d->stack) {
      if ((v = malloc(2 * d->cap * sizeof(*v))) != NULL)
        memcpy(v, d->stack, sizeof(d->stack));
    } else {
      v = realloc(d->v, 2 * d->cap * sizeof(*v));
    }
    if (!v)
      return 0;
    d->v = v;
    d->cap *= 2;
  }
  memset(&d->v[d->n], 0, sizeof(d->v[0]));
  return d->n++;
}

static uint32_t dadd(struct doc *d, uint32_t parent, uint32_t *prev,
                     const char *key, unsigned char type, const char *s,
                     size_t len)
{
  uint32_t i = dnew(d);
  if (!i)
    return 0;
  d->v[i].key = key;
  d->v[i].klen = key ? strlen(key) : 0;
  d->v[i].type = type;
  d->v[i].s = s;
  d->v[i].len = len;
  if (*prev)
    d->v[*prev].next = i;
  else
    d->v[parent].child = i;
  *prev = i;
  return i;
}

/* The text of scanned string v: in place, or decoded into d->dec. */
static int dstring(struct doc *d, const struct kcld_json_val *v,
                   const char **s, size_t *len)
{
  if (!v->esc) {
    *s = v->p;
    *len = v->raw;
    return 0;
  }
  if (!d->dec && (d->dec = malloc(d->text_len)) == NULL)
    return KCLD_ENOMEM;
  kcld_json_decode(v, d->dec + d->dec_used);
  *s = d->dec + d->dec_used;
  *len = v->len;
  d->dec_used += v->len;
  return 0;
}

/* 1 when some pattern names a payload field called key. */
static int named(const struct doc *d, const struct kcld_json_val *key)
{
  for (size_t i = 0; i < d->f->nnames; i++)
    if (kcld_json_equals(key, d->f->names[i].s, d->f->names[i].len))
      return 1;
  return 0;
}

/* Parses the value at the scanner into the document: *out its index.
 * Members no pattern names are checked and skipped, not kept.
 * KCLD_EPARSE when the text is not JSON. */
static int build(struct doc *d, struct kcld_json_scan *sc, int depth,
                 uint32_t *out)
{
  struct kcld_json_val v;
  uint32_t me = dnew(d), prev = 0, ch;
  int c = kcld_json_scan_peek(sc), first = 1, rc;

  if (!me)
    return KCLD_ENOMEM;
  *out = me;
  if (c != '{' && c != '[') {
    if (kcld_json_scan_value(sc, &v, depth) != 0)
      return KCLD_EPARSE;
    switch (v.type) {
    case KCLD_JSON_STRING:
      d->v[me].type = D_STRING;
      return dstring(d, &v, &d->v[me].s, &d->v[me].len);
    case KCLD_JSON_NUMBER:
      d->v[me].type = D_NUMBER;
      d->v[me].s = v.p;
      d->v[me].len = v.raw;
      return 0;
    case KCLD_JSON_BOOL:
      d->v[me].type = v.p[0] == 't' ? D_TRUE : D_FALSE;
      return 0;
    default:
      d->v[me].type = D_NULL;
      return 0;
    }
  }
  if (kcld_json_scan_open(sc, c, depth) != 0)
    return KCLD_EPARSE;
  d->v[me].type = c == '{' ? D_OBJECT : D_ARRAY;
  for (;;) {
    struct kcld_json_val key;
    rc = c == '{' ? kcld_json_scan_member(sc, &first, &key)
                  : kcld_json_scan_element(sc, &first);
    if (rc <= 0)
      return rc < 0 ? KCLD_EPARSE : 0;
    if (c == '{' && !named(d, &key)) {
      if (kcld_json_scan_value(sc, NULL, depth + 1) != 0)
        return KCLD_EPARSE;
      continue;
    }
    if ((rc = build(d, sc, depth + 1, &ch)) != 0)
      return rc;
    if (c == '{' &&
        (rc = dstring(d, &key, &d->v[ch].key, &d->v[ch].klen)) != 0)
      return rc;
    if (prev)
      d->v[prev].next = ch;
    else
      d->v[me].child = ch;
    prev = ch;
  }
}

/* The payload as JSON into *out; KCLD_EPARSE when it is not JSON. */
static int build_data(struct doc *d, uint32_t *out)
{
  struct kcld_json_scan sc;
  int rc;

  kcld_json_scan_init(&sc, d->text, d->text_len, 0);
  rc = build(d, &sc, 1, out);
  if (rc == 0 && kcld_json_scan_finish(&sc) != 0)
    rc = KCLD_EPARSE;
  return rc;
}

/* approximateArrivalTimestamp as Lambda writes it: epoch seconds with the
 * milliseconds as a fraction, no trailing zeros (1545084650.987). */
static size_t arrival_text(int64_t ms, char *buf, size_t cap)
{
  int n = snprintf(buf, cap, "%lld.%03lld", (long long)(ms / 1000),
                   (long long)(ms % 1000));
  size_t len = n > 0 ? (size_t)n : 0;
  while (len > 0 && buf[len - 1] == '0')
    len--;
  if (len > 0 && buf[len - 1] == '.')
    len--;
  return len;
}

/* The record's metadata fields as a mapping; its index (always 1). */
static uint32_t record_doc(struct doc *d, const struct kcld_record *r,
                           char *ts, size_t tscap, uint32_t *last)
{
  uint32_t root = dnew(d), prev = 0;
  d->v[root].type = D_OBJECT;
  /* Fits the stack array: these never fail. */
  dadd(d, root, &prev, "kinesisSchemaVersion", D_STRING, "1.0", 3);
  dadd(d, root, &prev, "partitionKey", D_STRING, r->partition_key,
       r->partition_key_len);
  dadd(d, root, &prev, "sequenceNumber", D_STRING, r->sequence_number,
       strlen(r->sequence_number));
  if (r->arrival_ms >= 0 && d->f->any_arrival)
    dadd(d, root, &prev, "approximateArrivalTimestamp", D_NUMBER, ts,
         arrival_text(r->arrival_ms, ts, tscap));
  *last = prev;
  return root;
}

/* ======== Matching ======== */

/* The number value i as a double: 1, or 0 when it is not a finite one. */
static int num_of(struct doc *d, uint32_t i, double *out)
{
  struct dval *v = &d->v[i];
  char buf[64], *t = buf;

  if (v->numstate == 0) {
    if (v->len >= sizeof(buf) && (t = malloc(v->len + 1)) == NULL)
      return 0; /* not cached: tried again next time */
    memcpy(t, v->s, v->len);
    t[v->len] = '\0';
    v->num = strtod(t, NULL);
    v->numstate = isfinite(v->num) ? 1 : 2;
    if (t != buf)
      free(t);
  }
  *out = v->num;
  return v->numstate == 1;
}

/* 1 when string s[0..n) passes test `kind` (a string rule, without its
 * negation) against any entry of m. */
static int string_test(const struct matcher *m, enum mkind kind,
                       const char *s, size_t n)
{
  for (size_t i = 0; i < m->n; i++) {
    const struct fstr *t = m->strs ? &m->strs[i] : NULL;
    switch (kind) {
    case M_STRING:
      if (n == t->len && memcmp(s, t->s, n) == 0)
        return 1;
      break;
    case M_PREFIX:
      if (n >= t->len && memcmp(s, t->s, t->len) == 0)
        return 1;
      break;
    case M_SUFFIX:
      if (n >= t->len && memcmp(s + n - t->len, t->s, t->len) == 0)
        return 1;
      break;
    case M_PREFIX_IC:
    case M_EQUALS_IC:
      if (ic_compare(s, n, t, kind == M_EQUALS_IC))
        return 1;
      break;
    case M_SUFFIX_IC:
      if (ic_suffix(s, n, t))
        return 1;
      break;
    default: /* M_WILDCARD */
      if (wild_match(&m->wild[i], s, n))
        return 1;
    }
  }
  return 0;
}

/* 1 when value i passes rule m (not an exists rule). */
static int value_match(struct doc *d, const struct matcher *m, uint32_t i)
{
  const struct dval *v = &d->v[i];
  int str = v->type == D_STRING;
  double x;

  switch (m->kind) {
  case M_STRING:
  case M_PREFIX:
  case M_SUFFIX:
  case M_PREFIX_IC:
  case M_SUFFIX_IC:
  case M_EQUALS_IC:
  case M_WILDCARD:
    return str && string_test(m, m->kind, v->s, v->len);
  case M_NUMBER:
    return v->type == D_NUMBER && v->len == m->strs[0].len &&
           memcmp(v->s, m->strs[0].s, v->len) == 0;
  case M_NULL:
    return v->type == D_NULL;
  case M_TRUE:
    return v->type == D_TRUE;
  case M_FALSE:
    return v->type == D_FALSE;
  case M_NUMERIC:
    return v->type == D_NUMBER && num_of(d, i, &x) &&
           (m->lo_incl ? x >= m->lo : x > m->lo) &&
           (m->hi_incl ? x <= m->hi : x < m->hi);
  case M_CIDR:
    return str && cidr_match(m, v->s, v->len);
  case M_NOT_STRING:
    return !(str && string_test(m, M_STRING, v->s, v->len));
  case M_NOT_PREFIX:
    return !(str && string_test(m, M_PREFIX, v->s, v->len));
  case M_NOT_SUFFIX:
    return !(str && string_test(m, M_SUFFIX, v->s, v->len));
  case M_NOT_EQUALS_IC:
    return !(str && string_test(m, M_EQUALS_IC, v->s, v->len));
  case M_NOT_WILDCARD:
    return !(str && string_test(m, M_WILDCARD, v->s, v->len));
  case M_NOT_NUMBER:
    if (v->type != D_NUMBER || !num_of(d, i, &x))
      return 1;
    for (size_t k = 0; k < m->n; k++)
      if (x == m->nums[k])
        return 0;
    return 1;
  default: /* M_EXISTS: decided by the caller */
    return 0;
  }
}

/* Tries every leaf value at i (a scalar, or the scalars of an array and of
 * the arrays in it) against the rules of f; sets *any when there is one. */
static int leaf_values(struct doc *d, const struct field *f, uint32_t i,
                       int *any)
{
  if (d->v[i].type == D_OBJECT)
    return 0;
  if (d->v[i].type == D_ARRAY) {
    for (uint32_t e = d->v[i].child; e; e = d->v[e].next)
      if (leaf_values(d, f, e, any))
        return 1;
    return 0;
  }
  *any = 1;
  for (size_t k = 0; k < f->nm; k++)
    if (f->m[k].kind != M_EXISTS && value_match(d, &f->m[k], i))
      return 1;
  return 0;
}

static int leaf_match(struct doc *d, const struct field *f, uint32_t i)
{
  int any = 0;
  if (i && leaf_values(d, f, i, &any))
    return 1;
  for (size_t k = 0; k < f->nm; k++)
    if (f->m[k].kind == M_EXISTS && f->m[k].exists == any)
      return 1;
  return 0;
}

/* The last member of mapping obj named name (duplicates: the last one
 * counts, as jansson and Lambda read them); 0 when none. */
static uint32_t member(const struct doc *d, uint32_t obj, const char *name,
                       size_t len)
{
  uint32_t found = 0;
  if (!obj || d->v[obj].type != D_OBJECT)
    return 0;
  for (uint32_t c = d->v[obj].child; c; c = d->v[c].next)
    if (d->v[c].klen == len && memcmp(d->v[c].key, name, len) == 0)
      found = c;
  return found;
}

static int object_match(struct doc *d, const struct pnode *p, uint32_t obj);

/* Mapping pattern p against the mappings in array a (and arrays in it):
 * 1 when one matches; *seen set when there is a mapping at all. */
static int array_match(struct doc *d, const struct pnode *p, uint32_t a,
                       int *seen)
{
  for (uint32_t e = d->v[a].child; e; e = d->v[e].next) {
    if (d->v[e].type == D_OBJECT) {
      *seen = 1;
      if (object_match(d, p, e))
        return 1;
    } else if (d->v[e].type == D_ARRAY && array_match(d, p, e, seen)) {
      return 1;
    }
  }
  return 0;
}

/* Mapping pattern p against value i (0: absent).  What is not a mapping
 * (nor an array of them) is matched as an absent field. */
static int nested_match(struct doc *d, const struct pnode *p, uint32_t i)
{
  int seen = 0;
  if (i && d->v[i].type == D_OBJECT)
    return object_match(d, p, i);
  if (i && d->v[i].type == D_ARRAY) {
    if (array_match(d, p, i, &seen))
      return 1;
    if (seen)
      return 0;
  }
  return object_match(d, p, 0);
}

static int object_match(struct doc *d, const struct pnode *p, uint32_t obj)
{
  for (size_t k = 0; k < p->nf; k++) {
    const struct field *f = &p->f[k];
    uint32_t v = member(d, obj, f->name, f->name_len);
    if (!(f->obj ? nested_match(d, f->obj, v) : leaf_match(d, f, v)))
      return 0;
  }
  for (size_t k = 0; k < p->nors; k++) {
    size_t a = 0;
    while (a < p->ors[k].n && !object_match(d, p->ors[k].alts[a], obj))
      a++;
    if (a == p->ors[k].n)
      return 0;
  }
  return 1;
}

int kcld_filter_match(const struct kcld_filter *f,
                      const struct kcld_record *r)
{
  struct doc d;
  char ts[48];
  uint32_t root, last, data;
  int rc = 0;

  if (f->n == 0)
    return 1;
  doc_init(&d, f, (const char *)r->data, r->data_len);
  root = record_doc(&d, r, ts, sizeof(ts), &last);
  /* Patterns on metadata alone first: the payload is read only when
   * they all fail and one names data. */
  for (size_t i = 0; i < f->n; i++)
    if (!f->p[i].uses_data && object_match(&d, f->p[i].root, root))
      goto keep;
  if (!f->any_data)
    goto done;
  rc = build_data(&d, &data);
  if (rc != 0) {
    rc = rc == KCLD_ENOMEM ? KCLD_ENOMEM : 0; /* not JSON: no match */
    goto done;
  }
  d.v[data].key = "data";
  d.v[data].klen = 4;
  d.v[last].next = data;
  for (size_t i = 0; i < f->n; i++)
    if (f->p[i].uses_data && object_match(&d, f->p[i].root, root))
      goto keep;
  goto done;
keep:
  rc = 1;
done:
  doc_free(&d);
  return rc;
}
