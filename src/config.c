/* config.c — YAML → struct kcld_config, driven by the key table
 * (config_keys.c).
 *
 * The file is read with libyaml's document API; node marks give the line
 * and column of every key and value.  Each value is converted by
 * config_values.c; the rules between keys and the derived defaults are
 * here.  All errors are collected, sorted by position and reported together
 * (at most KCLD_CONFIG_MAX_ERRORS). */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <yaml.h>

#include "config_keys.h"
#include "config_runtime.h"
#include "config_values.h"
#include "err.h"
#include "process/filter.h"

/* ======== The parse context and its errors ======== */

struct perr {
  size_t line, col, seq;
  char *msg;
};

struct kstate {
  int set, bad;
  size_t line, col;          /* of the value, 1-based */
  size_t key_line;           /* of the key */
  const char *label;         /* a setting's name in messages; NULL = key */
};

/* Errors kept per file: the walk stops at this many, so that a hostile
 * file of many bad keys costs little. */
#define ERR_KEEP 1000

struct ctx {
  const char *file;
  const unsigned char *src;
  size_t len;
  size_t *lines;             /* byte offset of each line's start */
  size_t nlines;
  yaml_document_t *doc;
  struct kcld_config *cfg;
  struct kstate *st;         /* one per key row */
  struct perr *errs;
  size_t nerr, cap;
  int truncated;             /* more than ERR_KEEP errors: checking stopped */
  int oom;
  const yaml_node_t *streams_node; /* streams: as stored, for its items'
                                      overrides */
};

static void add_err(struct ctx *c, size_t line, size_t col, const char *key,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void add_err(struct ctx *c, size_t line, size_t col, const char *key,
                    const char *fmt, ...)
{
  char msg[1024];
  int k;
  va_list ap;
  if (c->nerr >= ERR_KEEP) {
    c->truncated = 1;
    return;
  }
  if (key)
    k = snprintf(msg, sizeof(msg), "%s:%zu:%zu: %s: ", c->file, line, col,
                 key);
  else
    k = snprintf(msg, sizeof(msg), "%s:%zu:%zu: ", c->file, line, col);
  if (k < 0 || (size_t)k >= sizeof(msg))
    k = 0;
  va_start(ap, fmt);
  vsnprintf(msg + k, sizeof(msg) - (size_t)k, fmt, ap);
  va_end(ap);
  if (c->nerr == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 16;
    struct perr *n = realloc(c->errs, cap * sizeof(*n));
    if (!n) {
      c->oom = 1;
      return;
    }
    c->errs = n;
    c->cap = cap;
  }
  char *m = strdup(msg);
  if (!m) {
    c->oom = 1;
    return;
  }
  c->errs[c->nerr] = (struct perr){line, col, c->nerr, m};
  c->nerr++;
}

static int perr_cmp(const void *a, const void *b)
{
  const struct perr *x = a, *y = b;
  if (x->line != y->line)
    return x->line < y->line ? -1 : 1;
  if (x->col != y->col)
    return x->col < y->col ? -1 : 1;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* The errors, sorted by position, as one text; NULL when out of memory. */
static char *errors_text(struct ctx *c)
{
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f)
    return NULL;
  qsort(c->errs, c->nerr, sizeof(*c->errs), perr_cmp);
  for (size_t i = 0; i < c->nerr && i < KCLD_CONFIG_MAX_ERRORS; i++)
    fprintf(f, "%s\n", c->errs[i].msg);
  if (c->truncated)
    fprintf(f, "%s: %zu more errors not shown; checking stopped after %d\n",
            c->file, c->nerr - KCLD_CONFIG_MAX_ERRORS, ERR_KEEP);
  else if (c->nerr > KCLD_CONFIG_MAX_ERRORS)
    fprintf(f, "%s: %zu more errors not shown\n", c->file,
            c->nerr - KCLD_CONFIG_MAX_ERRORS);
  if (fclose(f) != 0) {
    free(buf);
    return NULL;
  }
  return buf;
}

static int index_lines(struct ctx *c)
{
  size_t cap = 64, start = 0;
  if (c->len >= 3 && memcmp(c->src, "\xef\xbb\xbf", 3) == 0)
    start = 3; /* libyaml does not count the BOM */
  c->lines = malloc(cap * sizeof(size_t));
  if (!c->lines)
    return KCLD_ENOMEM;
  c->lines[c->nlines++] = start;
  for (size_t i = start; i < c->len; i++) {
    if (c->src[i] == '\n' ||
        (c->src[i] == '\r' && (i + 1 == c->len || c->src[i + 1] != '\n'))) {
      if (c->nlines == cap) {
        size_t *n = realloc(c->lines, cap * 2 * sizeof(size_t));
        if (!n)
          return KCLD_ENOMEM;
        c->lines = n;
        cap *= 2;
      }
      c->lines[c->nlines++] = i + 1;
    }
  }
  return 0;
}

/* Byte offset of a libyaml mark (0-based line, column in characters). */
static size_t mark_offset(const struct ctx *c, yaml_mark_t m)
{
  if (m.line >= c->nlines)
    return c->len;
  size_t o = c->lines[m.line];
  for (size_t col = 0; col < m.column && o < c->len; col++) {
    o++;
    while (o < c->len && (c->src[o] & 0xc0) == 0x80)
      o++;
  }
  return o;
}

/* 1-based line and column of `needle` within the source text of node; the
 * node's start when it is not found there. */
static void locate(const struct ctx *c, const yaml_node_t *node,
                   const char *needle, size_t nlen, size_t *line, size_t *col)
{
  size_t from = mark_offset(c, node->start_mark);
  size_t to = mark_offset(c, node->end_mark);
  *line = node->start_mark.line + 1;
  *col = node->start_mark.column + 1;
  if (to > c->len || from >= to || nlen == 0)
    return;
  const unsigned char *hit = memmem(c->src + from, to - from, needle, nlen);
  if (!hit)
    return;
  size_t l = *line, k = *col;
  for (const unsigned char *p = c->src + from; p < hit; p++) {
    if (*p == '\n' || (*p == '\r' && p[1] != '\n')) {
      l++;
      k = 1;
    } else if (*p != '\r' && (*p & 0xc0) != 0x80) {
      k++;
    }
  }
  *line = l;
  *col = k;
}

static void err_node(struct ctx *c, const yaml_node_t *node, const char *key,
                     const char *fmt, ...)
  __attribute__((format(printf, 4, 5)));

static void err_node(struct ctx *c, const yaml_node_t *node, const char *key,
                     const char *fmt, ...)
{
  char msg[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  add_err(c, node->start_mark.line + 1, node->start_mark.column + 1, key,
          "%s", msg);
}

/* ======== Storing values ======== */

static const char *node_kind(const yaml_node_t *n)
{
  return n->type == YAML_MAPPING_NODE    ? "a mapping"
         : n->type == YAML_SEQUENCE_NODE ? "a list"
                                         : "a scalar";
}


static int is_null_scalar(const yaml_node_t *n)
{
  const char *v = (const char *)n->data.scalar.value;
  return n->type == YAML_SCALAR_NODE &&
         n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
         (n->data.scalar.length == 0 || strcmp(v, "~") == 0 ||
          strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
          strcmp(v, "NULL") == 0);
}


static int expand_node(struct ctx *c, const yaml_node_t *node,
                       const char *key, char **out)
{
  struct kcld_config_expand_err e;
  const char *v = (const char *)node->data.scalar.value;
  int rc = kcld_config_value_expand(v, out, &e);
  if (rc == KCLD_EINVAL) {
    size_t line, col;
    locate(c, node, v + e.off, e.len, &line, &col);
    add_err(c, line, col, key, "%s", e.why);
  }
  return rc;
}

/* Stores the list items[0..n) as key k's value when rc is 0; else frees
 * it.  Returns rc. */
static int put_list(struct ctx *c, const struct kcld_config_key *k,
                    char **items, size_t n, int rc)
{
  struct kcld_config_list tmp = {items, n};
  if (rc != 0) {
    kcld_config_value_list_free(&tmp);
    return rc;
  }
  kcld_config_value_list_free(kcld_config_key_field(c->cfg, k));
  *(struct kcld_config_list *)kcld_config_key_field(c->cfg, k) = tmp;
  return 0;
}

static int store_list_node(struct ctx *c, const struct kcld_config_key *k,
                           const yaml_node_t *seq)
{
  yaml_node_item_t *it = seq->data.sequence.items.start;
  size_t n = (size_t)(seq->data.sequence.items.top - it), got_n = 0;
  char **items = calloc(n + 1, sizeof(char *));
  int rc = 0;
  if (!items)
    return KCLD_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    yaml_node_t *item = yaml_document_get_node(c->doc, it[i]);
    if (!item || item->type != YAML_SCALAR_NODE) {
      if (item)
        err_node(c, item, k->name, "list items must be strings, got %s",
                 node_kind(item));
      rc = KCLD_EINVAL;
      continue;
    }
    char *s;
    int e = expand_node(c, item, k->name, &s);
    if (e != 0) {
      rc = rc ? rc : e;
      if (e == KCLD_ENOMEM)
        break;
      continue;
    }
    items[got_n++] = s;
  }
  return put_list(c, k, items, got_n, rc);
}

/* ======== Filter patterns ======== */

/* Nodes one pattern may have once aliases are expanded (an alias repeats
 * its whole subtree). */
#define FILTER_NODES_MAX 10000

/* The YAML node n as a pattern tree node under parent; NULL with *rc set
 * (an error reported, or KCLD_ENOMEM; or *budget used up, with nothing
 * reported: the caller reports it at the pattern). */
static struct kcld_filter_node *pattern_node(struct ctx *c,
                                             const yaml_node_t *n,
                                             struct kcld_filter_node *parent,
                                             const yaml_node_t *key,
                                             const char *label,
                                             size_t *budget, int *rc)
{
  struct kcld_filter_node *t;
  enum kcld_filter_type type;
  const char *text = NULL, *k = NULL;
  size_t len = 0, klen = 0;

  if (*budget == 0) {
    *rc = KCLD_EINVAL;
    return NULL;
  }
  (*budget)--;
  if (key) {
    if (key->type != YAML_SCALAR_NODE) {
      err_node(c, key, label, "pattern keys must be names, got %s",
               node_kind(key));
      *rc = KCLD_EINVAL;
      return NULL;
    }
    k = (const char *)key->data.scalar.value;
    klen = key->data.scalar.length;
  }
  if (n->type == YAML_MAPPING_NODE) {
    type = KCLD_FILTER_OBJECT;
  } else if (n->type == YAML_SEQUENCE_NODE) {
    type = KCLD_FILTER_ARRAY;
  } else {
    text = (const char *)n->data.scalar.value;
    len = n->data.scalar.length;
    type = n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE
             ? kcld_filter_scalar_type(text, len)
             : KCLD_FILTER_STRING;
  }
  t = kcld_filter_node_add(parent, type, k, klen, text, len,
                           (int)n->start_mark.line + 1,
                           (int)n->start_mark.column + 1);
  if (!t) {
    *rc = KCLD_ENOMEM;
    return NULL;
  }
  if (n->type == YAML_MAPPING_NODE) {
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start;
         p < n->data.mapping.pairs.top; p++) {
      yaml_node_t *kn = yaml_document_get_node(c->doc, p->key);
      yaml_node_t *vn = yaml_document_get_node(c->doc, p->value);
      if (kn && vn && !pattern_node(c, vn, t, kn, label, budget, rc))
        goto fail;
    }
  } else if (n->type == YAML_SEQUENCE_NODE) {
    for (yaml_node_item_t *i = n->data.sequence.items.start;
         i < n->data.sequence.items.top; i++) {
      yaml_node_t *vn = yaml_document_get_node(c->doc, *i);
      if (vn && !pattern_node(c, vn, t, NULL, label, budget, rc))
        goto fail;
    }
  }
  return t;
fail:
  if (!parent) /* the root: children belong to their parents */
    kcld_filter_node_free(t);
  return NULL;
}

/* Item `item` (number i) of filter: compiled into f (errors reported at
 * their node) and kept as JSON text in *json. */
static int filter_item(struct ctx *c, const struct kcld_config_key *k,
                       const yaml_node_t *item, size_t i,
                       struct kcld_filter *f, char **json)
{
  struct kcld_filter_node *root = NULL;
  struct kcld_filter_error e;
  char label[48], why[512];
  size_t budget = FILTER_NODES_MAX;
  int rc = 0;

  snprintf(label, sizeof(label), "%s[%zu]", k->name, i);
  if (item->type == YAML_SCALAR_NODE && !is_null_scalar(item)) {
    const char *s = (const char *)item->data.scalar.value;
    rc = kcld_filter_add_text(f, s, item->data.scalar.length, &e);
    if (rc == KCLD_ECONFIG) {
      rc = kcld_config_value_filter_error(&e, 1, why, sizeof(why));
      err_node(c, item, label, "%s", why);
    } else if (rc == 0 && (*json = strdup(s)) == NULL) {
      rc = KCLD_ENOMEM;
    }
    return rc;
  }
  if (item->type != YAML_MAPPING_NODE) {
    err_node(c, item, label, "expected a pattern (a mapping, or Lambda's "
             "JSON as a string), got %s",
             item->type == YAML_SEQUENCE_NODE ? "a list" : "an empty value");
    return KCLD_EINVAL;
  }
  root = pattern_node(c, item, NULL, NULL, label, &budget, &rc);
  if (!root && budget == 0)
    err_node(c, item, label, "a pattern of more than %d values (aliases "
             "count each time they are used)", FILTER_NODES_MAX);
  if (root) {
    rc = kcld_filter_add(f, root, &e);
    if (rc == KCLD_ECONFIG) {
      rc = kcld_config_value_filter_error(&e, 0, why, sizeof(why));
      add_err(c, e.line > 0 ? (size_t)e.line : item->start_mark.line + 1,
              e.col > 0 ? (size_t)e.col : item->start_mark.column + 1,
              label, "%s", why);
    } else if (rc == 0 && (*json = kcld_filter_node_json(root)) == NULL) {
      rc = KCLD_ENOMEM;
    }
  }
  kcld_filter_node_free(root);
  return rc;
}

/* filter: a list of patterns, or one (a JSON string may hold several).
 * All are compiled together, so that more than KCLD_FILTER_MAX_PATTERNS
 * is an error at the pattern past the limit. */
static int store_filter_node(struct ctx *c, const struct kcld_config_key *k,
                             const yaml_node_t *val)
{
  const yaml_node_item_t *it = NULL;
  size_t n = 1, got_n = 0;
  struct kcld_filter *f = kcld_filter_new();
  char **items;
  int rc = 0;

  if (val->type == YAML_SEQUENCE_NODE) {
    it = val->data.sequence.items.start;
    n = (size_t)(val->data.sequence.items.top - it);
  }
  items = calloc(n + 1, sizeof(char *));
  if (!f || !items) {
    rc = KCLD_ENOMEM;
    goto done;
  }
  for (size_t i = 0; i < n && rc != KCLD_ENOMEM; i++) {
    yaml_node_t *item = it ? yaml_document_get_node(c->doc, it[i])
                           : (yaml_node_t *)val;
    int e = item ? filter_item(c, k, item, i, f, &items[got_n]) : 0;
    if (e == 0 && item)
      got_n++;
    else if (e != 0 && (rc == 0 || e == KCLD_ENOMEM))
      rc = e;
  }
done:
  kcld_filter_free(f);
  return put_list(c, k, items, got_n, rc);
}

static int store_streams_node(struct ctx *c, const struct kcld_config_key *k,
                              const yaml_node_t *seq);

/* Parses the value node of key row i. */
static void set_leaf(struct ctx *c, size_t i, const yaml_node_t *val)
{
  const struct kcld_config_key *k = &kcld_config_keys[i];
  struct kstate *st = &c->st[i];
  char why[512];
  char *text = NULL;
  int rc;
  st->line = val->start_mark.line + 1;
  st->col = val->start_mark.column + 1;
  st->set = 1;
  if (k->type == K_LIST && val->type == YAML_SEQUENCE_NODE) {
    rc = store_list_node(c, k, val);
    goto done;
  }
  if (k->type == K_STREAMS && val->type == YAML_SEQUENCE_NODE) {
    rc = store_streams_node(c, k, val);
    goto done;
  }
  if (k->type == K_FILTER && !is_null_scalar(val)) {
    rc = store_filter_node(c, k, val);
    goto done;
  }
  if (val->type != YAML_SCALAR_NODE) {
    err_node(c, val, k->name, "expected %s, got %s", kcld_config_value_type(k),
             node_kind(val));
    rc = KCLD_EINVAL;
    goto done;
  }
  if (is_null_scalar(val)) {
    rc = kcld_config_value_store(k, c->cfg, NULL, why, sizeof(why));
  } else if (k->type == K_TMPL) {
    rc = kcld_config_value_store(k, c->cfg,
                                 (const char *)val->data.scalar.value, why,
                                 sizeof(why));
  } else {
    rc = expand_node(c, val, k->name, &text);
    if (rc != 0)
      goto done;
    rc = kcld_config_value_store(k, c->cfg, text, why, sizeof(why));
  }
  if (rc == KCLD_EINVAL)
    err_node(c, val, k->name, "%s", why);
done:
  kcld_config_value_wipe(text);
  if (rc == KCLD_ENOMEM)
    c->oom = 1;
  if (rc != 0)
    st->bad = 1;
}

/* ======== Walking the document ======== */

/* Walks the keys of mapping `map` (under section `prefix`, NULL at the
 * top) into c->cfg, but for the names in `skip` (NULL-terminated; NULL =
 * none). */
static void walk_map(struct ctx *c, const yaml_node_t *map,
                     const char *prefix, const char *const *skip)
{
  yaml_node_pair_t *start = map->data.mapping.pairs.start;
  yaml_node_pair_t *top = map->data.mapping.pairs.top;
  for (yaml_node_pair_t *p = start; p < top && !c->oom && !c->truncated;
       p++) {
    yaml_node_t *kn = yaml_document_get_node(c->doc, p->key);
    yaml_node_t *vn = yaml_document_get_node(c->doc, p->value);
    char full[256], hint[160];
    if (!kn || !vn)
      continue;
    if (kn->type != YAML_SCALAR_NODE) {
      err_node(c, kn, prefix, "keys must be plain names, got %s",
               node_kind(kn));
      continue;
    }
    const char *name = (const char *)kn->data.scalar.value;
    if (kcld_config_value_among(name, skip))
      continue;
    snprintf(full, sizeof(full), "%s%s%s", prefix ? prefix : "",
             prefix ? "." : "", name);
    /* Duplicates within this mapping. */
    yaml_node_pair_t *q;
    for (q = start; q < p; q++) {
      yaml_node_t *prev = yaml_document_get_node(c->doc, q->key);
      if (prev && prev->type == YAML_SCALAR_NODE &&
          strcmp((const char *)prev->data.scalar.value, name) == 0)
        break;
    }
    if (q < p) {
      yaml_node_t *prev = yaml_document_get_node(c->doc, q->key);
      err_node(c, kn, full, "duplicate key (first at line %zu)",
               prev->start_mark.line + 1);
      continue;
    }
    if (strchr(name, '.')) {
      err_node(c, kn, full,
               "unknown key (dotted names are not read: nest the key under "
               "its section, as in conf/kcld.yaml)");
      continue;
    }
    int i = kcld_config_key_index(full);
    if (i >= 0) {
      c->st[i].key_line = kn->start_mark.line + 1;
      set_leaf(c, (size_t)i, vn);
    } else if (kcld_config_key_is_section(full)) {
      if (vn->type == YAML_MAPPING_NODE)
        walk_map(c, vn, full, NULL);
      else if (!is_null_scalar(vn))
        err_node(c, vn, full, "expected a mapping of keys, got %s",
                 node_kind(vn));
    } else {
      kcld_config_key_suggest(full, hint, sizeof(hint));
      err_node(c, kn, full, "unknown key%s", hint);
    }
  }
}

/* ======== streams: ======== */

/* A stream item's own keys (the others override top-level ones for that
 * stream: kcld_config_stream_overrides, derive_streams). */
static const char *const s_stream_own[] = {
  "name", "arn", "starting_position", "starting_timestamp", NULL};

/* Stores the value node v of a stream item's key `name` (a top-level key
 * of the same name checks it) into *s.  Returns 0 or KCLD_EINVAL
 * (reported) or KCLD_ENOMEM. */
static int stream_item_key(struct ctx *c, const char *label, const char *name,
                           const yaml_node_t *v, struct kcld_config_stream *s)
{
  const struct kcld_config_key *k =
    &kcld_config_keys[kcld_config_key_index(name)];
  struct kcld_config scratch;
  char why[512], *text = NULL;
  int rc;
  if (v->type != YAML_SCALAR_NODE || is_null_scalar(v)) {
    err_node(c, v, label, "%s: expected %s, got %s", name,
             kcld_config_value_type(k), node_kind(v));
    return KCLD_EINVAL;
  }
  if ((rc = expand_node(c, v, label, &text)) != 0)
    return rc;
  memset(&scratch, 0, sizeof(scratch));
  rc = kcld_config_value_store(k, &scratch, text, why, sizeof(why));
  if (rc == KCLD_EINVAL)
    err_node(c, v, label, "%s: %s", name, why);
  kcld_config_value_wipe(text);
  if (rc != 0)
    return rc;
  if (k->off == offsetof(struct kcld_config, stream)) {
    s->stream = scratch.stream;
  } else if (k->off == offsetof(struct kcld_config, starting_position)) {
    s->starting_position = scratch.starting_position;
    s->own_position = 1;
  } else {
    s->starting_timestamp_ms = scratch.starting_timestamp_ms;
    s->own_timestamp = 1;
  }
  return 0;
}

/* One item of streams: (number i) into *s. */
static int stream_item(struct ctx *c, const yaml_node_t *item, size_t i,
                       struct kcld_config_stream *s)
{
  char label[32];
  int rc = 0, named = 0;
  snprintf(label, sizeof(label), "streams[%zu]", i);
  s->starting_timestamp_ms = -1;
  if (item->type != YAML_MAPPING_NODE) {
    err_node(c, item, label, "expected a mapping (name: or arn:, optional "
             "starting_position and starting_timestamp), got %s",
             node_kind(item));
    return KCLD_EINVAL;
  }
  for (yaml_node_pair_t *p = item->data.mapping.pairs.start;
       p < item->data.mapping.pairs.top && rc != KCLD_ENOMEM; p++) {
    yaml_node_t *kn = yaml_document_get_node(c->doc, p->key);
    yaml_node_t *vn = yaml_document_get_node(c->doc, p->value);
    const char *name = kn && kn->type == YAML_SCALAR_NODE
                         ? (const char *)kn->data.scalar.value : "";
    int e = 0;
    if (!kn || !vn)
      continue;
    if (strcmp(name, "name") == 0 || strcmp(name, "arn") == 0) {
      int arn = name[0] == 'a';
      if (named++) {
        err_node(c, kn, label, "takes one of name: and arn:, once");
        e = KCLD_EINVAL;
      } else if ((e = stream_item_key(c, label, "stream", vn, s)) == 0 &&
                 (strncmp(s->stream, "arn:", 4) == 0) != arn) {
        err_node(c, vn, label, arn ? "arn: must be a stream ARN "
                 "(arn:aws:kinesis:REGION:ACCOUNT:stream/NAME)"
                                   : "name: must be a stream name (an ARN "
                 "goes in arn:)");
        e = KCLD_EINVAL;
      }
    } else if (strcmp(name, "starting_position") == 0 ||
               strcmp(name, "starting_timestamp") == 0) {
      e = stream_item_key(c, label, name, vn, s);
    } else if (!kcld_config_value_among(name, kcld_config_stream_overrides)) {
      err_node(c, kn, label, "unknown key %s (a stream takes name or arn, "
               "starting_position, starting_timestamp, and handler, batch, "
               "retry, on_failure, filter to override the top-level ones)",
               name);
      e = KCLD_EINVAL;
    }
    if (e != 0 && (rc == 0 || e == KCLD_ENOMEM))
      rc = e;
  }
  if (rc == 0 && !named) {
    err_node(c, item, label, "needs name: or arn:");
    rc = KCLD_EINVAL;
  }
  return rc;
}

/* streams: a list of stream items, each stream once. */
static int store_streams_node(struct ctx *c, const struct kcld_config_key *k,
                              const yaml_node_t *seq)
{
  yaml_node_item_t *it = seq->data.sequence.items.start;
  size_t n = (size_t)(seq->data.sequence.items.top - it);
  struct kcld_config_streams tmp = {calloc(n ? n : 1, sizeof(*tmp.v)), 0};
  int rc = tmp.v ? 0 : KCLD_ENOMEM;
  for (size_t i = 0; i < n && rc != KCLD_ENOMEM; i++) {
    yaml_node_t *item = yaml_document_get_node(c->doc, it[i]);
    struct kcld_config_stream *s = &tmp.v[tmp.len];
    int e = item ? stream_item(c, item, i, s) : 0;
    for (size_t j = 0; e == 0 && s->stream && j < tmp.len; j++)
      if (strcmp(tmp.v[j].stream, s->stream) == 0) {
        err_node(c, item, k->name, "lists %s twice", s->stream);
        e = KCLD_EINVAL;
      }
    if (e == 0 && s->stream) {
      tmp.len++;
    } else {
      free(s->stream); /* the slot is used again */
      memset(s, 0, sizeof(*s));
    }
    if (e != 0 && (rc == 0 || e == KCLD_ENOMEM))
      rc = e;
  }
  if (rc != 0) {
    kcld_config_value_streams_free(&tmp);
    return rc;
  }
  kcld_config_value_streams_free(kcld_config_key_field(c->cfg, k));
  *(struct kcld_config_streams *)kcld_config_key_field(c->cfg, k) = tmp;
  c->streams_node = seq;
  return 0;
}

/* ======== Defaults, derived values, cross-key checks ======== */

static int apply_defaults(struct kcld_config *cfg)
{
  char why[256];
  for (size_t i = 0; i < kcld_config_nkeys; i++) {
    const struct kcld_config_key *k = &kcld_config_keys[i];
    int rc;
    if (k->type == K_LIST || k->type == K_FILTER) {
      struct kcld_config_list *l = kcld_config_key_field(cfg, k);
      kcld_config_value_list_free(l);
      l->items = calloc(1, sizeof(char *));
      rc = l->items ? 0 : KCLD_ENOMEM;
    } else {
      rc = kcld_config_value_store(k, cfg, k->def ? k->def : "", why,
                                   sizeof(why));
      if (rc == KCLD_EINVAL && (k->flags & F_REQUIRED))
        rc = kcld_config_value_set(kcld_config_key_field(cfg, k), "");
    }
    if (rc != 0)
      return rc == KCLD_EINVAL ? KCLD_ECONFIG : rc; /* a bad table row */
  }
  return 0;
}

/* Position of key `name`'s value when set, else 1:1. */
static void pos(const struct ctx *c, const char *name, size_t *line,
                size_t *col)
{
  int i = kcld_config_key_index(name);
  *line = 1;
  *col = 1;
  if (i >= 0 && c->st[i].set) {
    *line = c->st[i].line;
    *col = c->st[i].col;
  }
}

static int bad(const struct ctx *c, const char *name)
{
  int i = kcld_config_key_index(name);
  return i >= 0 && c->st[i].bad;
}

static int is_set(const struct ctx *c, const char *name)
{
  int i = kcld_config_key_index(name);
  return i >= 0 && c->st[i].set;
}

/* Reports an error about key `key` at the position of key `at`. */
static void err_at(struct ctx *c, const char *at, const char *key,
                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void err_at(struct ctx *c, const char *at, const char *key,
                   const char *fmt, ...)
{
  char msg[768];
  size_t line, col;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  pos(c, at, &line, &col);
  add_err(c, line, col, key, "%s", msg);
}

/* base <= max for two duration keys. */
static void check_order(struct ctx *c, const char *lo_key, int64_t lo,
                        const char *hi_key, int64_t hi)
{
  char a[32], b[32];
  if (bad(c, lo_key) || bad(c, hi_key) || lo <= hi)
    return;
  kcld_config_format_duration(lo, a, sizeof(a));
  kcld_config_format_duration(hi, b, sizeof(b));
  if (is_set(c, lo_key))
    err_at(c, lo_key, lo_key, "must not exceed %s (%s), got %s", hi_key, b,
           a);
  else
    err_at(c, hi_key, hi_key, "must be at least %s (%s), got %s", lo_key, a,
           b);
}

/* on_failure: one place for records that fail for good (SQS and S3
 * together count as one: S3 takes what SQS cannot). */
static void check_on_failure(struct ctx *c)
{
  const struct kcld_config_on_failure *f = &c->cfg->on_failure;
  const char *remote = *f->sqs ? "sqs" : *f->s3 ? "s3" : NULL;

  if (bad(c, "on_failure.sqs") || bad(c, "on_failure.s3") ||
      bad(c, "on_failure.dir") || bad(c, "on_failure.discard") ||
      bad(c, "on_failure.block"))
    return;
  if (*f->dir && *f->dir != '/')
    err_at(c, "on_failure.dir", "on_failure.dir",
           "must be an absolute path, got %s", f->dir);
  if (remote && *f->dir)
    err_at(c, "on_failure.dir", "on_failure.dir",
           "cannot be combined with on_failure.%s: records that fail for "
           "good go to one destination", remote);
  if (f->discard && (remote || *f->dir))
    err_at(c, "on_failure.discard", "on_failure.discard",
           "cannot be combined with on_failure.%s: discard keeps no copy",
           remote ? remote : "dir");
  if (f->block && (remote || *f->dir || f->discard))
    err_at(c, "on_failure.block", "on_failure.block",
           "cannot be combined with on_failure.%s: block never gives a "
           "record up", remote ? remote : *f->dir ? "dir" : "discard");
}

/* Items without their own starting_position/starting_timestamp take the
 * top-level ones; AT_TIMESTAMP needs a timestamp, and only it takes one. */
static void finish_streams(struct ctx *c)
{
  struct kcld_config *cfg = c->cfg;
  if (bad(c, "streams") || bad(c, "starting_position") ||
      bad(c, "starting_timestamp"))
    return;
  for (size_t i = 0; i < cfg->streams.len; i++) {
    struct kcld_config_stream *s = &cfg->streams.v[i];
    if (!s->own_position)
      s->starting_position = cfg->starting_position;
    if (!s->own_timestamp && !s->own_position)
      s->starting_timestamp_ms = cfg->starting_timestamp_ms;
    int at = s->starting_position == KCLD_CONFIG_POS_AT_TIMESTAMP;
    if (at != (s->starting_timestamp_ms >= 0))
      err_at(c, "streams", "streams",
             "%s: starting_timestamp %s with starting_position: %s",
             s->stream, at ? "is required" : "is only used",
             at ? "AT_TIMESTAMP" : "AT_TIMESTAMP (set its own "
                                   "starting_position)");
  }
  if (*cfg->stream && cfg->streams.len)
    err_at(c, "streams", "streams", "cannot be combined with stream "
           "(%s): list every stream under streams", cfg->stream);
}

/* fetch.consumer_name (application when not set) and fetch.consumer_arn:
 * what fan-out mode needs; set in polling mode, they are an error rather
 * than silently unused. */
static void check_fanout(struct ctx *c)
{
  struct kcld_config *cfg = c->cfg;
  const struct kcld_config_fetch *f = &cfg->fetch;
  char q[96];

  if (bad(c, "fetch.mode") || bad(c, "fetch.consumer_name") ||
      bad(c, "fetch.consumer_arn"))
    return;
  if (f->mode != KCLD_CONFIG_FETCH_FANOUT) {
    if (*f->consumer_name)
      err_at(c, "fetch.consumer_name", "fetch.consumer_name",
             "only used with fetch.mode: fanout");
    if (*f->consumer_arn)
      err_at(c, "fetch.consumer_arn", "fetch.consumer_arn",
             "only used with fetch.mode: fanout");
    return;
  }
  if (*f->consumer_arn && cfg->streams.len) {
    /* A consumer belongs to one stream; with several, one is registered
     * (or found) per stream under fetch.consumer_name. */
    err_at(c, "fetch.consumer_arn", "fetch.consumer_arn",
           "names one stream's consumer and cannot be used with streams: "
           "leave it empty (a consumer named fetch.consumer_name is "
           "registered or found on each stream)");
    return;
  }
  if (*f->consumer_arn) {
    if (strncmp(f->consumer_arn, "arn:", 4) != 0 ||
        !strstr(f->consumer_arn, ":stream/") ||
        !strstr(f->consumer_arn, "/consumer/"))
      err_at(c, "fetch.consumer_arn", "fetch.consumer_arn",
             "must be a stream consumer ARN (arn:aws:kinesis:REGION:ACCOUNT:"
             "stream/STREAM/consumer/NAME:TIMESTAMP), got %s",
             kcld_config_value_quote(f->consumer_arn, q, sizeof(q)));
    if (*f->consumer_name)
      err_at(c, "fetch.consumer_name", "fetch.consumer_name",
             "cannot be combined with fetch.consumer_arn (nothing is "
             "registered then)");
    return;
  }
  if (*f->consumer_name) {
    if (!kcld_config_value_is_consumer_name(f->consumer_name))
      err_at(c, "fetch.consumer_name", "fetch.consumer_name",
             "must be 1..128 characters of a-z A-Z 0-9 _ . -, got %s",
             kcld_config_value_quote(f->consumer_name, q, sizeof(q)));
  } else if (*cfg->application) {
    if (!kcld_config_value_is_consumer_name(cfg->application))
      err_at(c, "application", "application",
             "names the stream consumer when fetch.consumer_name is not "
             "set, so must be 1..128 characters of a-z A-Z 0-9 _ . -, "
             "got %s", kcld_config_value_quote(cfg->application, q,
                                               sizeof(q)));
    else if (kcld_config_value_set(&cfg->fetch.consumer_name,
                                   cfg->application) != 0)
      c->oom = 1;
  }
}

static void finish(struct ctx *c)
{
  struct kcld_config *cfg = c->cfg;
  const struct kcld_config_handler_cfg *h = &cfg->handler;
  const char *type = kcld_config_key_enum_name("handler.type", (int)h->type);
  char q[96], msg[3][160];
  const char *wat[3];

  for (size_t i = 0; i < kcld_config_nkeys; i++)
    if ((kcld_config_keys[i].flags & F_REQUIRED) && !c->st[i].set &&
        !(kcld_config_keys[i].off == offsetof(struct kcld_config, stream) &&
          is_set(c, "streams"))) /* streams: stands for stream */
      add_err(c, 1, 1, kcld_config_keys[i].name, "required key is missing");
  finish_streams(c);

  /* Derived defaults. */
  if (!*cfg->lease.table && *cfg->application && !bad(c, "lease.table")) {
    if (!kcld_config_value_is_table_name(cfg->application))
      err_at(c, "application", "application",
             "names the lease table when lease.table is not set, so must be "
             "3..255 characters of a-z A-Z 0-9 _ . -, got %s",
             kcld_config_value_quote(cfg->application, q, sizeof(q)));
    else if (kcld_config_value_set(&cfg->lease.table, cfg->application) != 0)
      c->oom = 1;
  }
  check_fanout(c);
  if (!bad(c, "window.tumbling") && !bad(c, "handler.type"))
    for (int i = 0, n = kcld_config_window_check(cfg, wat, msg); i < n; i++)
      err_at(c, wat[i], "window.tumbling", "%s", msg[i]);
  if (!*cfg->worker_id && kcld_config_derive_worker_id(cfg) != 0)
    c->oom = 1;
  check_on_failure(c);
  if (!*cfg->on_failure.dir && !*cfg->on_failure.sqs &&
      !*cfg->on_failure.s3 && !cfg->on_failure.discard &&
      !cfg->on_failure.block && kcld_config_derive_dead_letter_dir(cfg) != 0)
    c->oom = 1;
  if (cfg->lease.take_interval_ms == 0)
    cfg->lease.take_interval_ms = 2 * cfg->lease.failover_ms;

  /* starting_position and starting_timestamp. */
  if (!bad(c, "starting_position") && !bad(c, "starting_timestamp")) {
    int at = cfg->starting_position == KCLD_CONFIG_POS_AT_TIMESTAMP;
    if (at && cfg->starting_timestamp_ms < 0)
      err_at(c, "starting_position", "starting_timestamp",
             "required with starting_position: AT_TIMESTAMP");
    else if (!at && cfg->starting_timestamp_ms >= 0)
      err_at(c, "starting_timestamp", "starting_timestamp",
             "only used with starting_position: AT_TIMESTAMP "
             "(starting_position is %s)",
             kcld_config_key_enum_name("starting_position",
                                       (int)cfg->starting_position));
  }

  check_order(c, "retry.backoff_base", cfg->retry.backoff_base_ms,
              "retry.backoff_max", cfg->retry.backoff_max_ms);
  check_order(c, "http.connect_timeout", cfg->http.connect_timeout_ms,
              "http.timeout", cfg->http.timeout_ms);

  /* Explicit credentials come as a pair. */
  if (!bad(c, "credentials.access_key_id") &&
      !bad(c, "credentials.secret_access_key") &&
      !bad(c, "credentials.session_token") &&
      !bad(c, "credentials.profile")) {
    const struct kcld_config_credentials *cr = &cfg->credentials;
    if (*cr->access_key_id && !*cr->secret_access_key)
      err_at(c, "credentials.access_key_id", "credentials.access_key_id",
             "set without credentials.secret_access_key");
    if (*cr->secret_access_key && !*cr->access_key_id)
      err_at(c, "credentials.secret_access_key",
             "credentials.secret_access_key",
             "set without credentials.access_key_id");
    if (*cr->session_token && !*cr->access_key_id &&
        !*cr->secret_access_key)
      err_at(c, "credentials.session_token", "credentials.session_token",
             "set without credentials.access_key_id and "
             "credentials.secret_access_key");
    if (*cr->profile && (*cr->access_key_id || *cr->secret_access_key))
      err_at(c, "credentials.profile", "credentials.profile",
             "cannot be combined with explicit keys "
             "(credentials.access_key_id)");
  }

  /* What each handler type needs. */
  if (!bad(c, "handler.type")) {
    if ((h->type == KCLD_CONFIG_HANDLER_MULTILANG ||
         h->type == KCLD_CONFIG_HANDLER_LAMBDA) &&
        h->command.len == 0 && !bad(c, "handler.command"))
      err_at(c, is_set(c, "handler.command") ? "handler.command"
                                             : "handler.type",
             "handler.command", "required with handler.type: %s", type);
    if (h->type == KCLD_CONFIG_HANDLER_PLUGIN && !*h->path &&
        !bad(c, "handler.path"))
      err_at(c, is_set(c, "handler.path") ? "handler.path" : "handler.type",
             "handler.path", "required with handler.type: plugin");
    if (h->type == KCLD_CONFIG_HANDLER_DYNAMODB && !bad(c, "handler.table")) {
      if (!*h->table)
        err_at(c, is_set(c, "handler.table") ? "handler.table"
                                             : "handler.type",
               "handler.table", "required with handler.type: dynamodb");
      else if (strcmp(h->table, cfg->lease.table) == 0)
        err_at(c, "handler.table", "handler.table",
               "must not be the lease table (%s)", cfg->lease.table);
    }
    if (h->type == KCLD_CONFIG_HANDLER_DYNAMODB && !*h->key.pk &&
        !bad(c, "handler.key.pk"))
      err_at(c, "handler.key.pk", "handler.key.pk",
             "must not be empty with handler.type: dynamodb");
  }
}

/* ======== Loading ======== */

/* 1-based line and column of byte offset `off` of the text. */
static void offset_pos(const struct ctx *c, size_t off, size_t *line,
                       size_t *col)
{
  size_t l = 0;
  while (l + 1 < c->nlines && c->lines[l + 1] <= off)
    l++;
  *line = l + 1;
  *col = 1;
  for (size_t o = c->lines[l]; o < off && o < c->len; o++)
    if ((c->src[o] & 0xc0) != 0x80)
      (*col)++;
}

static void syntax_error(struct ctx *c, const yaml_parser_t *p)
{
  size_t line, col;
  if (p->error == YAML_MEMORY_ERROR) {
    c->oom = 1;
    return;
  }
  if (p->error == YAML_READER_ERROR) {
    /* Only a byte offset; never print the byte (it may be a secret's). */
    offset_pos(c, p->problem_offset, &line, &col);
    add_err(c, line, col, NULL, "YAML error: %s",
            p->problem ? p->problem : "cannot read the text");
    return;
  }
  line = p->problem_mark.line + 1;
  col = p->problem_mark.column + 1;
  if (p->context)
    add_err(c, line, col, NULL,
            "YAML syntax error: %s (%s at line %zu, column %zu)",
            p->problem ? p->problem : "invalid YAML", p->context,
            p->context_mark.line + 1, p->context_mark.column + 1);
  else
    add_err(c, line, col, NULL, "YAML syntax error: %s",
            p->problem ? p->problem : "invalid YAML");
}

static void wipe_document(yaml_document_t *d)
{
  for (yaml_node_t *n = d->nodes.start; n && n < d->nodes.top; n++)
    if (n->type == YAML_SCALAR_NODE && n->data.scalar.value)
      OPENSSL_cleanse(n->data.scalar.value, n->data.scalar.length);
}

static void wipe_parser(yaml_parser_t *p)
{
  if (p->raw_buffer.start)
    OPENSSL_cleanse(p->raw_buffer.start,
                    (size_t)(p->raw_buffer.end - p->raw_buffer.start));
  if (p->buffer.start)
    OPENSSL_cleanse(p->buffer.start,
                    (size_t)(p->buffer.end - p->buffer.start));
}

/* Refuses a text over KCLD_CONFIG_MAX_BYTES, or nested deeper than
 * KCLD_CONFIG_MAX_DEPTH, before any document is built: libyaml's event
 * stream holds state in proportion to the depth, and is stopped at the
 * first event past the limit (building the document of a deep text, and
 * scanning it whole, take time that grows with the square of the depth).
 * Returns 1 when the text is refused (reported), else 0; a syntax error is
 * left to the loader, which reports it. */
static int over_limits(struct ctx *c)
{
  yaml_parser_t p;
  yaml_event_t ev;
  int depth = 0, refused = 0, end = 0;
  size_t line, col;
  if (c->len > KCLD_CONFIG_MAX_BYTES) {
    offset_pos(c, KCLD_CONFIG_MAX_BYTES, &line, &col);
    add_err(c, line, col, NULL,
            "the file is larger than 1MiB, the limit for a configuration "
            "file");
    return 1;
  }
  if (!yaml_parser_initialize(&p)) {
    c->oom = 1;
    return 1;
  }
  yaml_parser_set_input_string(&p, c->src, c->len);
  while (!end && !refused && yaml_parser_parse(&p, &ev)) {
    if (ev.type == YAML_SEQUENCE_START_EVENT ||
        ev.type == YAML_MAPPING_START_EVENT) {
      if (++depth > KCLD_CONFIG_MAX_DEPTH) {
        add_err(c, ev.start_mark.line + 1, ev.start_mark.column + 1, NULL,
                "nested deeper than %d levels, the limit for a "
                "configuration file",
                KCLD_CONFIG_MAX_DEPTH);
        refused = 1;
      }
    } else if (ev.type == YAML_SEQUENCE_END_EVENT ||
               ev.type == YAML_MAPPING_END_EVENT) {
      depth--;
    } else if (ev.type == YAML_SCALAR_EVENT) {
      OPENSSL_cleanse(ev.data.scalar.value, ev.data.scalar.length);
    }
    end = ev.type == YAML_STREAM_END_EVENT;
    yaml_event_delete(&ev);
  }
  if (p.error == YAML_MEMORY_ERROR) {
    c->oom = 1;
    refused = 1;
  }
  wipe_parser(&p);
  yaml_parser_delete(&p);
  return refused;
}

static void derive_streams(struct ctx *c);

/* Builds the document of c->src and walks it into c->cfg; errors go to c.
 * Returns 0 or KCLD_ENOMEM. */
static int load_document(struct ctx *c)
{
  yaml_parser_t parser;
  yaml_document_t doc, next;
  if (!yaml_parser_initialize(&parser))
    return KCLD_ENOMEM;
  yaml_parser_set_input_string(&parser, c->src, c->len);
  if (!yaml_parser_load(&parser, &doc)) {
    syntax_error(c, &parser);
    goto done;
  }
  c->doc = &doc;
  yaml_node_t *root = yaml_document_get_root_node(&doc);
  if (root && root->type == YAML_MAPPING_NODE)
    walk_map(c, root, NULL, NULL);
  else if (root && !is_null_scalar(root))
    err_node(c, root, NULL,
             "expected a mapping of keys at the top level, got %s",
             node_kind(root));
  if (root && !yaml_parser_load(&parser, &next)) {
    syntax_error(c, &parser);
  } else if (root) {
    yaml_node_t *again = yaml_document_get_root_node(&next);
    if (again)
      err_node(c, again, NULL,
               "only one YAML document is allowed in the file");
    wipe_document(&next);
    yaml_document_delete(&next);
  }
  if (!c->oom && !c->truncated)
    finish(c);
  derive_streams(c);
  c->doc = NULL;
  wipe_document(&doc);
  yaml_document_delete(&doc);
done:
  wipe_parser(&parser);
  yaml_parser_delete(&parser);
  return c->oom ? KCLD_ENOMEM : 0;
}

/* Starts a parse of the config called `name`: the defaults applied. */
static int ctx_init(struct ctx *c, const char *name,
                    struct kcld_config **out, char **errors)
{
  memset(c, 0, sizeof(*c));
  *out = NULL;
  if (errors)
    *errors = NULL;
  c->file = name;
  c->cfg = calloc(1, sizeof(*c->cfg));
  c->st = calloc(kcld_config_nkeys, sizeof(*c->st));
  if (!c->cfg || !c->st)
    return KCLD_ENOMEM;
  int rc = apply_defaults(c->cfg);
  if (rc == 0 && kcld_config_value_set(&c->cfg->path, name) != 0)
    rc = KCLD_ENOMEM;
  return rc;
}

static void origin_free(struct kcld_config_origin *o)
{
  if (o)
    for (size_t i = 0; i < kcld_config_nkeys; i++)
      free(o[i].label);
  free(o);
}

/* cfg->origin from the parse state; 0 or KCLD_ENOMEM. */
static int keep_origin(struct ctx *c)
{
  struct kcld_config_origin *o = calloc(kcld_config_nkeys, sizeof(*o));
  if (!o)
    return KCLD_ENOMEM;
  c->cfg->origin = o;
  for (size_t i = 0; i < kcld_config_nkeys; i++) {
    if (!c->st[i].set)
      continue;
    o[i].line = c->st[i].line;
    o[i].col = c->st[i].col;
    if (c->st[i].label && !(o[i].label = strdup(c->st[i].label)))
      return KCLD_ENOMEM;
  }
  return 0;
}

/* Ends a parse begun by ctx_init(): rc (0 = as the errors say) becomes the
 * result, with *out or *errors. */
static int ctx_end(struct ctx *c, int rc, struct kcld_config **out,
                   char **errors)
{
  if (rc == 0)
    rc = c->oom ? KCLD_ENOMEM : c->nerr ? KCLD_ECONFIG : 0;
  if (rc == 0)
    rc = keep_origin(c);
  if (rc == KCLD_ECONFIG && errors) {
    *errors = errors_text(c);
    if (!*errors)
      rc = KCLD_ENOMEM;
  }
  if (rc == KCLD_ENOMEM && errors &&
      asprintf(errors, "%s: out of memory\n", c->file) < 0)
    *errors = NULL;
  for (size_t i = 0; i < c->nerr; i++)
    free(c->errs[i].msg);
  free(c->errs);
  free(c->lines);
  free(c->st);
  if (rc != 0)
    kcld_config_free(c->cfg);
  else
    *out = c->cfg;
  return rc;
}

/* Stream i's own configuration (its streams: item `item` overrides keys):
 * the file's top-level keys, then the item's, checked as a file of that
 * one stream; errors go to c.  Returns it, or NULL. */
static struct kcld_config *derive_stream(struct ctx *c,
                                         const yaml_node_t *item, size_t i)
{
  static const char *const top_skip[] = {"streams", NULL};
  const struct kcld_config_stream *s = &c->cfg->streams.v[i];
  struct kcld_config *out;
  struct ctx d;
  size_t nerr = c->nerr;
  int si = kcld_config_key_index("stream");

  if (ctx_init(&d, c->file, &out, NULL) != 0 ||
      kcld_config_value_set(&d.cfg->stream, s->stream) != 0)
    d.oom = 1;
  d.src = c->src;
  d.len = c->len;
  d.lines = c->lines;
  d.nlines = c->nlines;
  d.doc = c->doc;
  d.errs = c->errs; /* the same list of errors */
  d.nerr = c->nerr;
  d.cap = c->cap;
  if (!d.oom) {
    walk_map(&d, yaml_document_get_root_node(c->doc), NULL, top_skip);
    walk_map(&d, item, NULL, s_stream_own);
    d.st[si] = (struct kstate){1, 0, item->start_mark.line + 1,
                               item->start_mark.column + 1,
                               item->start_mark.line + 1, NULL};
    d.cfg->starting_position = s->starting_position;
    d.cfg->starting_timestamp_ms = s->starting_timestamp_ms;
  }
  if (!d.oom && !d.truncated)
    finish(&d);
  if (!d.oom && d.nerr == nerr && keep_origin(&d) != 0)
    d.oom = 1;
  c->errs = d.errs;
  c->nerr = d.nerr;
  c->cap = d.cap;
  c->oom |= d.oom;
  c->truncated |= d.truncated;
  free(d.st);
  if (!c->oom && c->nerr == nerr)
    return d.cfg;
  kcld_config_free(d.cfg);
  return NULL;
}

/* Items of streams: with handler, batch, retry, on_failure or filter get
 * their own configuration (kcld_config_stream.cfg).  Only once the rest of
 * the file is valid, so that no error is reported twice. */
static void derive_streams(struct ctx *c)
{
  const yaml_node_t *seq = c->streams_node;
  if (!seq || c->nerr || c->oom || c->truncated)
    return;
  for (size_t i = 0; i < c->cfg->streams.len && !c->oom; i++) {
    const yaml_node_t *item =
      yaml_document_get_node(c->doc, seq->data.sequence.items.start[i]);
    int own = 0;
    for (yaml_node_pair_t *p = item->data.mapping.pairs.start;
         p < item->data.mapping.pairs.top; p++) {
      yaml_node_t *kn = yaml_document_get_node(c->doc, p->key);
      own |= !kcld_config_value_among((const char *)kn->data.scalar.value,
                                      s_stream_own);
    }
    if (own)
      c->cfg->streams.v[i].cfg = derive_stream(c, item, i);
  }
}

int kcld_config_parse(const char *name, const char *text, size_t len,
                      struct kcld_config **out, char **errors)
{
  struct ctx c;
  int rc = ctx_init(&c, name, out, errors);
  c.src = (const unsigned char *)text;
  /* Past the size limit only the limit's position matters. */
  c.len = len > KCLD_CONFIG_MAX_BYTES ? KCLD_CONFIG_MAX_BYTES + 1 : len;
  if (rc == 0)
    rc = index_lines(&c);
  if (rc == 0 && !over_limits(&c))
    rc = load_document(&c);
  return ctx_end(&c, rc, out, errors);
}

/* Settings by key name (kcld --properties): the same conversion, checks and
 * derived defaults as a file; positions are the settings' lines. */
int kcld_config_from_settings(const char *name,
                              const struct kcld_config_setting *settings,
                              size_t n, struct kcld_config **out,
                              char **errors)
{
  struct ctx c;
  char why[512];
  int rc = ctx_init(&c, name, out, errors);
  for (size_t i = 0; rc == 0 && i < n; i++) {
    const struct kcld_config_setting *s = &settings[i];
    const char *label = s->label ? s->label : s->key;
    int k = kcld_config_key_index(s->key);
    if (k < 0) {
      add_err(&c, s->line, 1, label, "unknown setting %s", s->key);
      continue;
    }
    c.st[k] = (struct kstate){1, 0, s->line, 1, s->line, s->label};
    int r = kcld_config_value_store(&kcld_config_keys[k], c.cfg, s->value,
                                    why, sizeof(why));
    if (r == KCLD_ENOMEM)
      rc = r;
    else if (r != 0) {
      c.st[k].bad = 1;
      add_err(&c, s->line, 1, label, "%s", why);
    }
  }
  if (rc == 0 && !c.oom)
    finish(&c);
  return ctx_end(&c, rc, out, errors);
}

/* Reads the file at path, at most KCLD_CONFIG_MAX_BYTES + 1 bytes (enough
 * to tell that it is too large).  Returns 0 and *text (*len bytes, NUL
 * after them; to wipe and free), KCLD_EIO with errno, or KCLD_ENOMEM. */
static int read_file(const char *path, char **text, size_t *len)
{
  const size_t max = KCLD_CONFIG_MAX_BYTES + 1;
  FILE *f = fopen(path, "rb");
  char *buf = NULL;
  size_t n = 0, cap = 0;
  int rc = 0;
  if (!f)
    return KCLD_EIO;
  while (n < max) {
    if (n + 4096 > cap) {
      size_t ncap = cap ? cap * 2 : 16384;
      char *b = malloc(ncap);
      if (!b) {
        rc = KCLD_ENOMEM;
        break;
      }
      if (buf) {
        memcpy(b, buf, n);
        OPENSSL_cleanse(buf, n);
        free(buf);
      }
      buf = b;
      cap = ncap;
    }
    size_t want = cap - n - 1 < max - n ? cap - n - 1 : max - n;
    size_t got_n = fread(buf + n, 1, want, f);
    n += got_n;
    buf[n] = '\0';
    if (got_n == 0)
      break;
  }
  if (rc == 0 && ferror(f))
    rc = KCLD_EIO;
  int e = errno;
  fclose(f);
  if (rc != 0) {
    if (buf)
      OPENSSL_cleanse(buf, n);
    free(buf);
    errno = e;
    return rc;
  }
  *text = buf;
  *len = n;
  return 0;
}

int kcld_config_load(const char *path, struct kcld_config **out,
                     char **errors)
{
  char *buf = NULL;
  size_t len = 0;
  int rc;
  *out = NULL;
  if (errors)
    *errors = NULL;
  rc = read_file(path, &buf, &len);
  if (rc == KCLD_EIO && errors &&
      asprintf(errors, "%s: cannot read: %s\n", path, strerror(errno)) < 0)
    *errors = NULL;
  if (rc != 0)
    return rc;
  rc = kcld_config_parse(path, buf, len, out, errors);
  OPENSSL_cleanse(buf, len);
  free(buf);
  return rc;
}

void kcld_config_free(struct kcld_config *cfg)
{
  if (!cfg)
    return;
  for (size_t i = 0; i < kcld_config_nkeys; i++) {
    const struct kcld_config_key *k = &kcld_config_keys[i];
    if (k->type == K_STR || k->type == K_TMPL) {
      char **s = kcld_config_key_field(cfg, k);
      kcld_config_value_wipe(*s);
      *s = NULL;
    } else if (k->type == K_LIST || k->type == K_FILTER) {
      kcld_config_value_list_free(kcld_config_key_field(cfg, k));
    } else if (k->type == K_STREAMS) {
      kcld_config_value_streams_free(kcld_config_key_field(cfg, k));
    }
  }
  origin_free(cfg->origin);
  free(cfg->path);
  free(cfg);
}
