/* template.c — record templates compiled into a list of parts: literal text
 * and fields.  A payload path is split into its segments at compile time so
 * rendering does no parsing. */
#include "handlers/template.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/buf.h"
#include "err.h"

enum part_kind {
  P_LITERAL = 0,
  P_PARTITION_KEY,
  P_SEQUENCE,
  P_SUBSEQUENCE,
  P_SHARD,
  P_DATA,
  P_HOUR,
  P_DAY
};

struct part {
  enum part_kind kind;
  char *text;         /* P_LITERAL: the text; P_DATA: the field's name */
  size_t len;         /* P_LITERAL: bytes of text */
  char **path;        /* P_DATA: segments */
  size_t npath;
};

struct kcld_template {
  char *source;
  struct part *parts;
  size_t nparts;
  int uses_data;
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
  va_list ap;
  if (!err || errlen == 0)
    return;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

void kcld_template_free(struct kcld_template *t)
{
  if (!t)
    return;
  for (size_t i = 0; i < t->nparts; i++) {
    free(t->parts[i].text);
    for (size_t j = 0; j < t->parts[i].npath; j++)
      free(t->parts[i].path[j]);
    free(t->parts[i].path);
  }
  free(t->parts);
  free(t->source);
  free(t);
}

static struct part *add_part(struct kcld_template *t, enum part_kind kind)
{
  struct part *np = realloc(t->parts, (t->nparts + 1) * sizeof(*np));
  if (!np)
    return NULL;
  t->parts = np;
  memset(&np[t->nparts], 0, sizeof(*np));
  np[t->nparts].kind = kind;
  return &np[t->nparts++];
}

/* Appends literal bytes, merging with a literal part just before. */
static int add_literal(struct kcld_template *t, const char *s, size_t n)
{
  struct part *p = t->nparts ? &t->parts[t->nparts - 1] : NULL;
  char *nt;

  if (n == 0)
    return 0;
  if (!p || p->kind != P_LITERAL) {
    p = add_part(t, P_LITERAL);
    if (!p)
      return KCLD_ENOMEM;
  }
  nt = realloc(p->text, p->len + n + 1);
  if (!nt)
    return KCLD_ENOMEM;
  memcpy(nt + p->len, s, n);
  p->len += n;
  nt[p->len] = '\0';
  p->text = nt;
  return 0;
}

/* Splits "a.b.c" into segments; returns 0, KCLD_EINVAL (an empty segment,
 * column offset in *bad) or KCLD_ENOMEM. */
static int split_path(struct part *p, const char *s, size_t n, size_t *bad)
{
  size_t start = 0;
  for (size_t i = 0; i <= n; i++) {
    if (i < n && s[i] != '.')
      continue;
    if (i == start) {
      *bad = i;
      return KCLD_EINVAL;
    }
    char **np = realloc(p->path, (p->npath + 1) * sizeof(*np));
    if (!np)
      return KCLD_ENOMEM;
    p->path = np;
    p->path[p->npath] = strndup(s + start, i - start);
    if (!p->path[p->npath])
      return KCLD_ENOMEM;
    p->npath++;
    start = i + 1;
  }
  return 0;
}

static int valid_name_char(char c)
{
  return c != '{' && c != '}' && c != '$' && (unsigned char)c >= 0x20;
}

/* Compiles the field `s[0..n)` found at column `col` (1-based). */
static int add_field(struct kcld_template *t, const char *name,
                     const char *s, size_t n, size_t col, char *err,
                     size_t errlen)
{
  static const struct {
    const char *name;
    enum part_kind kind;
  } simple[] = {
    {"partitionKey", P_PARTITION_KEY},
    {"sequenceNumber", P_SEQUENCE},
    {"subSequenceNumber", P_SUBSEQUENCE},
    {"shardId", P_SHARD},
    {"hour(arrival)", P_HOUR},
    {"day(arrival)", P_DAY},
  };
  struct part *p;
  size_t bad = 0;
  int rc;

  if (n == 0) {
    set_err(err, errlen, "%s: \"%s\" column %zu: empty field ${}", name,
            t->source, col);
    return KCLD_EINVAL;
  }
  for (size_t i = 0; i < n; i++) {
    if (!valid_name_char(s[i])) {
      set_err(err, errlen, "%s: \"%s\" column %zu: unexpected character in "
              "a field name", name, t->source, col + 2 + i);
      return KCLD_EINVAL;
    }
  }
  for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++) {
    if (strlen(simple[i].name) == n && memcmp(simple[i].name, s, n) == 0)
      return add_part(t, simple[i].kind) ? 0 : KCLD_ENOMEM;
  }
  if (n >= 4 && memcmp(s, "data", 4) == 0 && (n == 4 || s[4] == '.')) {
    p = add_part(t, P_DATA);
    if (!p)
      return KCLD_ENOMEM;
    t->uses_data = 1;
    p->text = strndup(s, n);
    if (!p->text)
      return KCLD_ENOMEM;
    if (n == 4)
      return 0;
    rc = split_path(p, s + 5, n - 5, &bad);
    if (rc == KCLD_EINVAL)
      set_err(err, errlen, "%s: \"%s\" column %zu: empty segment in the "
              "payload path %.*s", name, t->source, col + 2 + 5 + bad,
              (int)n, s);
    return rc;
  }
  if (memchr(s, '(', n)) {
    set_err(err, errlen, "%s: \"%s\" column %zu: unknown function %.*s "
            "(known: hour(arrival), day(arrival))", name, t->source, col,
            (int)n, s);
    return KCLD_EINVAL;
  }
  set_err(err, errlen, "%s: \"%s\" column %zu: unknown field %.*s (known: "
          "partitionKey, sequenceNumber, subSequenceNumber, shardId, data, "
          "data.<path>, hour(arrival), day(arrival))", name, t->source, col,
          (int)n, s);
  return KCLD_EINVAL;
}

int kcld_template_compile(const char *name, const char *text,
                          struct kcld_template **out, char *err,
                          size_t errlen)
{
  struct kcld_template *t;
  size_t i = 0, lit = 0, n;
  int rc = 0;

  *out = NULL;
  if (!text || !name) {
    set_err(err, errlen, "template: missing text");
    return KCLD_EINVAL;
  }
  t = calloc(1, sizeof(*t));
  if (!t)
    return KCLD_ENOMEM;
  t->source = strdup(text);
  if (!t->source) {
    rc = KCLD_ENOMEM;
    goto done;
  }
  n = strlen(text);
  while (i < n) {
    if (text[i] != '$') {
      i++;
      continue;
    }
    if (i + 1 < n && text[i + 1] == '$') {
      rc = add_literal(t, text + lit, i + 1 - lit);
      if (rc != 0)
        goto done;
      i += 2;
      lit = i;
      continue;
    }
    if (i + 1 >= n || text[i + 1] != '{') {
      i++;
      continue;
    }
    rc = add_literal(t, text + lit, i - lit);
    if (rc != 0)
      goto done;
    const char *close = memchr(text + i + 2, '}', n - i - 2);
    if (!close) {
      set_err(err, errlen, "%s: \"%s\" column %zu: \"${\" without a "
              "closing \"}\"", name, text, i + 1);
      rc = KCLD_EINVAL;
      goto done;
    }
    rc = add_field(t, name, text + i + 2, (size_t)(close - (text + i + 2)),
                   i + 1, err, errlen);
    if (rc != 0)
      goto done;
    i = (size_t)(close - text) + 1;
    lit = i;
  }
  rc = add_literal(t, text + lit, n - lit);

done:
  if (rc == KCLD_ENOMEM)
    set_err(err, errlen, "%s: out of memory", name);
  if (rc != 0) {
    kcld_template_free(t);
    return rc;
  }
  *out = t;
  return 0;
}

int kcld_template_uses_data(const struct kcld_template *t)
{
  return t->uses_data;
}

const char *kcld_template_text(const struct kcld_template *t)
{
  return t->source;
}

/* Formats the arrival time's bucket, or returns KCLD_ENOTFOUND. */
static int time_bucket(const struct kcld_record *r, int hour, char *out,
                       size_t outlen)
{
  struct tm tm;
  time_t secs;

  if (r->arrival_ms == KCLD_RECORD_NO_ARRIVAL || r->arrival_ms < 0)
    return KCLD_ENOTFOUND;
  secs = (time_t)(r->arrival_ms / 1000);
  if (!gmtime_r(&secs, &tm))
    return KCLD_ENOTFOUND;
  strftime(out, outlen, hour ? "%Y-%m-%dT%H" : "%Y-%m-%d", &tm);
  return 0;
}

int kcld_template_render(const struct kcld_template *t,
                         const struct kcld_template_input *in, char **out,
                         size_t *len, char *err, size_t errlen)
{
  struct kcld_buf b = {0};
  char tmp[32];
  int rc = 0;

  *out = NULL;
  *len = 0;
  rc = kcld_buf_add(&b, "", 0);
  for (size_t i = 0; i < t->nparts && rc == 0; i++) {
    const struct part *p = &t->parts[i];
    const char *text = NULL;
    size_t n = 0;

    switch (p->kind) {
    case P_LITERAL:
      rc = kcld_buf_add(&b, p->text, p->len);
      break;
    case P_PARTITION_KEY:
      rc = kcld_buf_add(&b, in->rec->partition_key, in->rec->partition_key_len);
      break;
    case P_SEQUENCE:
      rc = kcld_buf_add(&b, in->rec->sequence_number,
                        strlen(in->rec->sequence_number));
      break;
    case P_SUBSEQUENCE:
      snprintf(tmp, sizeof(tmp), "%" PRIu64, in->rec->sub_sequence_number);
      rc = kcld_buf_add(&b, tmp, strlen(tmp));
      break;
    case P_SHARD:
      rc = kcld_buf_add(&b, in->shard_id ? in->shard_id : "",
                        in->shard_id ? strlen(in->shard_id) : 0);
      break;
    case P_HOUR:
    case P_DAY:
      if (time_bucket(in->rec, p->kind == P_HOUR, tmp, sizeof(tmp)) != 0) {
        set_err(err, errlen, "\"%s\": the record has no arrival time for "
                "%s(arrival)", t->source, p->kind == P_HOUR ? "hour" : "day");
        rc = KCLD_ENOTFOUND;
        break;
      }
      rc = kcld_buf_add(&b, tmp, strlen(tmp));
      break;
    case P_DATA:
      if (!in->field ||
          in->field(in->field_arg, (const char *const *)p->path, p->npath,
                    &text, &n) != 0) {
        set_err(err, errlen, "\"%s\": payload field %s is missing or not a "
                "string, number or boolean", t->source, p->text);
        rc = KCLD_ENOTFOUND;
        break;
      }
      rc = kcld_buf_add(&b, text, n);
      break;
    }
  }
  if (rc != 0) {
    if (rc == KCLD_ENOMEM)
      set_err(err, errlen, "out of memory");
    free(b.p);
    return rc;
  }
  *out = b.p;
  *len = b.len;
  return 0;
}
