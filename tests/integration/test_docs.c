/* test_docs.c — the documentation agrees with the code.
 *
 *   - every key of the config table (src/config_keys.c, as
 *     kcld_config_reference renders it) is in docs/configuration.md, and
 *     every `section.key` that docs/NAME.md, README.md or the man page
 *     mention is a key (or a section) of the table;
 *   - every metric family the monitor exports (src/ops/monitor.c, read from
 *     a real registry's Prometheus rendering) is in docs/operations.md, and
 *     every kcld_* name in the docs is such a family (with _bucket/_sum/
 *     _count for a histogram) or an identifier the sources define;
 *   - every long option that `kcld --help` and each command's --help print
 *     is in the docs or the man page, and every command listed is there;
 *   - every `kcld WORD` in a code span or block of the docs is a command
 *     kcld knows;
 *   - every signal the daemon handles or ignores (src/daemon.c) is in the
 *     man page's SIGNALS section and operations.md's Signals section.
 *
 * The last test feeds the checkers made-up text, so that a checker that
 * finds nothing cannot pass unnoticed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>
#include <sys/wait.h>
#include <uv.h>

#include "../harness/harness.h"
#include "config.h"
#include "ops/metrics.h"
#include "ops/monitor.h"

/* ======== A set of strings ======== */

struct strset {
  char **v;
  size_t n, cap;
};

static int set_has(const struct strset *s, const char *str)
{
  for (size_t i = 0; i < s->n; i++)
    if (strcmp(s->v[i], str) == 0)
      return 1;
  return 0;
}

static void set_addn(struct strset *s, const char *str, size_t len)
{
  char *copy = strndup(str, len);
  assert_non_null(copy);
  if (set_has(s, copy)) {
    free(copy);
    return;
  }
  if (s->n == s->cap) {
    s->cap = s->cap ? 2 * s->cap : 32;
    s->v = realloc(s->v, s->cap * sizeof(char *));
    assert_non_null(s->v);
  }
  s->v[s->n++] = copy;
}

static void set_add(struct strset *s, const char *str)
{
  set_addn(s, str, strlen(str));
}

static void set_free(struct strset *s)
{
  for (size_t i = 0; i < s->n; i++)
    free(s->v[i]);
  free(s->v);
  memset(s, 0, sizeof(*s));
}

/* ======== Running commands ======== */

/* Runs `cmd` in the project root with stderr joined to stdout; returns the
 * exit status (-1 when it did not exit) and the output in *out. */
static int run(const char *cmd, char **out)
{
  size_t cap = 4096, len = 0, n;
  char *buf = malloc(cap), *line = NULL;
  assert_non_null(buf);
  assert_true(asprintf(&line, "cd '%s' && %s 2>&1", kcld_test_root(), cmd) >
              0);
  FILE *p = popen(line, "r");
  assert_non_null(p);
  while ((n = fread(buf + len, 1, cap - len - 1, p)) > 0) {
    len += n;
    if (cap - len < 1024) {
      cap *= 2;
      buf = realloc(buf, cap);
      assert_non_null(buf);
    }
  }
  buf[len] = '\0';
  int st = pclose(p);
  free(line);
  *out = buf;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ======== The documents ======== */

struct doc {
  char name[64];
  char *text;
  int man;        /* a roff page: "\-" already turned into "-" */
};

#define MAX_DOCS 32

struct docs {
  struct doc d[MAX_DOCS];
  size_t n;
};

static void doc_add(struct docs *ds, const char *rel, int man)
{
  char path[1024];
  struct doc *d;
  assert_true(ds->n < MAX_DOCS);
  d = &ds->d[ds->n];
  snprintf(path, sizeof(path), "%s/%s", kcld_test_root(), rel);
  d->text = kcld_test_slurp(path, NULL);
  if (!d->text)
    fail_msg("cannot read %s", path);
  snprintf(d->name, sizeof(d->name), "%s", rel);
  d->man = man;
  if (man) { /* roff's "\-" is a "-" */
    char *w = d->text;
    for (const char *r = d->text; *r; r++) {
      if (r[0] == '\\' && r[1] == '-')
        continue;
      *w++ = *r;
    }
    *w = '\0';
  }
  ds->n++;
}

static int cmp_str(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* docs/NAME.md, README.md and (with_man) docs/man/kcld.8. */
static void docs_load(struct docs *ds, int with_man)
{
  char path[1024];
  struct strset names = {0};
  DIR *dir;
  struct dirent *e;

  memset(ds, 0, sizeof(*ds));
  snprintf(path, sizeof(path), "%s/docs", kcld_test_root());
  dir = opendir(path);
  assert_non_null(dir);
  while ((e = readdir(dir)) != NULL) {
    size_t len = strlen(e->d_name);
    if (len > 3 && strcmp(e->d_name + len - 3, ".md") == 0)
      set_add(&names, e->d_name);
  }
  closedir(dir);
  qsort(names.v, names.n, sizeof(char *), cmp_str);
  for (size_t i = 0; i < names.n; i++) {
    snprintf(path, sizeof(path), "docs/%s", names.v[i]);
    doc_add(ds, path, 0);
  }
  set_free(&names);
  doc_add(ds, "README.md", 0);
  if (with_man)
    doc_add(ds, "docs/man/kcld.8", 1);
}

static void docs_free(struct docs *ds)
{
  for (size_t i = 0; i < ds->n; i++)
    free(ds->d[i].text);
  ds->n = 0;
}

static const struct doc *docs_find(const struct docs *ds, const char *name)
{
  for (size_t i = 0; i < ds->n; i++)
    if (strcmp(ds->d[i].name, name) == 0)
      return &ds->d[i];
  return NULL;
}

static int is_word(char c)
{
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '_';
}

/* `word` occurs in `text` with no word character either side (for an
 * option, no '-' either side: "--config" is not in "--dump-config"). */
static int has_word(const char *text, const char *word)
{
  size_t len = strlen(word);
  int opt = word[0] == '-';
  for (const char *p = text; (p = strstr(p, word)) != NULL; p++) {
    char before = p == text ? ' ' : p[-1], after = p[len];
    if (is_word(before) || (opt && before == '-'))
      continue;
    if (is_word(after) || (opt && after == '-'))
      continue;
    return 1;
  }
  return 0;
}

/* ======== The config table ======== */

/* Keys from the markdown reference (rows "| `key` |"), and sections: every
 * proper dotted prefix of a key ("handler", "handler.key"). */
static void table_keys(struct strset *keys, struct strset *sections)
{
  char *ref = kcld_config_reference(KCLD_CONFIG_REF_MARKDOWN);
  assert_non_null(ref);
  for (const char *l = ref; l && *l;) {
    if (strncmp(l, "| `", 3) == 0) {
      const char *k = l + 3, *end = strchr(k, '`');
      assert_non_null(end);
      set_addn(keys, k, (size_t)(end - k));
      for (const char *dot = k; (dot = memchr(dot, '.', (size_t)(end - dot)));
           dot++)
        set_addn(sections, k, (size_t)(dot - k));
    }
    l = strchr(l, '\n');
    if (l)
      l++;
  }
  free(ref);
}

static int is_key_char(char c)
{
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.';
}

/* A dotted name that ends like a file (handler.py, kcld.yaml) is a file. */
static int is_file_name(const char *tok)
{
  static const char *const ext[] = {
    "py", "js", "so", "yaml", "yml", "md", "c", "h", "sh", "json", "txt",
    "properties", "service", "conf", "sysusers", "tmpfiles", "8", "jar",
    "rb", "java", "toml", "ini", "log", NULL,
  };
  const char *dot = strrchr(tok, '.');
  for (size_t i = 0; dot && ext[i]; i++)
    if (strcmp(dot + 1, ext[i]) == 0)
      return 1;
  return 0;
}

/* Checks one candidate token: a dotted name whose first segment is a
 * top-level section must be a key or a section.  Appends "doc: token" to
 * `bad` otherwise. */
static void check_key_token(const char *doc, const char *p, size_t len,
                            const struct strset *keys,
                            const struct strset *sections, struct strset *bad)
{
  char tok[128], first[128];
  while (len > 0 && p[len - 1] == '.')
    len--;
  if (len == 0 || len >= sizeof(tok))
    return;
  memcpy(tok, p, len);
  tok[len] = '\0';
  const char *dot = strchr(tok, '.');
  if (!dot || is_file_name(tok))
    return;
  memcpy(first, tok, (size_t)(dot - tok));
  first[dot - tok] = '\0';
  if (!set_has(sections, first))
    return;
  if (set_has(keys, tok) || set_has(sections, tok))
    return;
  char line[256];
  snprintf(line, sizeof(line), "%s: `%s`", doc, tok);
  set_add(bad, line);
}

/* Every `section.key` mention of one document: the leading name of an
 * inline code span (markdown) or the first word of a .B/.BR/.BI/.I line
 * (roff). */
static void check_keys_in(const struct doc *d, const struct strset *keys,
                          const struct strset *sections, struct strset *bad)
{
  const char *t = d->text;
  if (d->man) {
    for (const char *l = t; l && *l;) {
      if (l[0] == '.' && (l[1] == 'B' || l[1] == 'I')) {
        const char *p = l + 2;
        while (*p && *p != ' ' && *p != '\n')
          p++;
        while (*p == ' ' || *p == '"')
          p++;
        size_t n = 0;
        while (is_key_char(p[n]))
          n++;
        check_key_token(d->name, p, n, keys, sections, bad);
      }
      l = strchr(l, '\n');
      if (l)
        l++;
    }
    return;
  }
  int fenced = 0;
  for (const char *l = t; l && *l;) {
    const char *eol = strchr(l, '\n');
    size_t ll = eol ? (size_t)(eol - l) : strlen(l);
    const char *s = l;
    while (s < l + ll && (*s == ' '))
      s++;
    if (strncmp(s, "```", 3) == 0) {
      fenced = !fenced;
    } else if (!fenced) {
      /* Inline spans on this line. */
      for (const char *p = l; p < l + ll; p++) {
        if (*p != '`')
          continue;
        const char *end = memchr(p + 1, '`', (size_t)(l + ll - p - 1));
        if (!end)
          break;
        size_t n = 0;
        while (p + 1 + n < end && is_key_char(p[1 + n]))
          n++;
        check_key_token(d->name, p + 1, n, keys, sections, bad);
        p = end;
      }
    }
    l = eol ? eol + 1 : NULL;
  }
}

static char *joined(const struct strset *s)
{
  size_t len = 1;
  for (size_t i = 0; i < s->n; i++)
    len += strlen(s->v[i]) + 3;
  char *out = calloc(1, len);
  assert_non_null(out);
  for (size_t i = 0; i < s->n; i++) {
    strcat(out, "\n  ");
    strcat(out, s->v[i]);
  }
  return out;
}

static void assert_empty(const struct strset *bad, const char *what)
{
  if (bad->n == 0)
    return;
  char *list = joined(bad);
  print_error("%zu %s:%s\n", bad->n, what, list);
  free(list);
  fail();
}

static void test_config_keys_documented(void **state)
{
  struct strset keys = {0}, sections = {0}, bad = {0};
  struct docs ds;
  (void)state;
  table_keys(&keys, &sections);
  assert_true(keys.n >= 40);
  assert_true(set_has(&keys, "batch.size"));
  assert_true(set_has(&sections, "handler.key"));
  docs_load(&ds, 0);
  const struct doc *cfg = docs_find(&ds, "docs/configuration.md");
  assert_non_null(cfg);
  for (size_t i = 0; i < keys.n; i++) {
    char quoted[160];
    snprintf(quoted, sizeof(quoted), "`%s`", keys.v[i]);
    if (!strstr(cfg->text, quoted))
      set_add(&bad, keys.v[i]);
  }
  assert_empty(&bad, "config keys missing from docs/configuration.md");
  docs_free(&ds);
  set_free(&keys);
  set_free(&sections);
  set_free(&bad);
}

static void test_doc_keys_exist(void **state)
{
  struct strset keys = {0}, sections = {0}, bad = {0};
  struct docs ds;
  (void)state;
  table_keys(&keys, &sections);
  docs_load(&ds, 1);
  for (size_t i = 0; i < ds.n; i++)
    check_keys_in(&ds.d[i], &keys, &sections, &bad);
  assert_empty(&bad, "keys mentioned in the docs are not in the config "
               "table");
  docs_free(&ds);
  set_free(&keys);
  set_free(&sections);
  set_free(&bad);
}

/* ======== Metrics ======== */

/* The families a real monitor declares, from its Prometheus rendering
 * ("# TYPE name type" lines), with their types. */
static void exported_families(struct strset *names, struct strset *hists)
{
  uv_loop_t loop;
  struct kcld_monitor_opts o;
  struct kcld_monitor *mon = NULL;

  assert_int_equal(uv_loop_init(&loop), 0);
  memset(&o, 0, sizeof(o));
  o.loop = &loop;
  assert_int_equal(kcld_monitor_start(&o, &mon), 0);
  char *text = kcld_metrics_render(kcld_monitor_metrics(mon), NULL);
  assert_non_null(text);
  for (const char *l = text; l && *l;) {
    if (strncmp(l, "# TYPE ", 7) == 0) {
      const char *n = l + 7, *sp = strchr(n, ' ');
      assert_non_null(sp);
      set_addn(names, n, (size_t)(sp - n));
      if (strncmp(sp + 1, "histogram", 9) == 0)
        set_addn(hists, n, (size_t)(sp - n));
    }
    l = strchr(l, '\n');
    if (l)
      l++;
  }
  free(text);
  kcld_monitor_close(mon);
  kcld_test_loop_finish(&loop);
}

/* A kcld_ name that is neither a family nor a series of one but reads like
 * a metric (a Prometheus unit suffix) is a wrong metric name. */
static int looks_like_metric(const char *tok)
{
  static const char *const suffix[] = {
    "_total", "_seconds", "_bytes", "_latest", "_held", "_in_flight",
    "_progress", "_bucket", "_sum", "_count", "_milliseconds", "_ms", NULL,
  };
  size_t len = strlen(tok);
  for (size_t i = 0; suffix[i]; i++) {
    size_t sl = strlen(suffix[i]);
    if (len > sl && strcmp(tok + len - sl, suffix[i]) == 0)
      return 1;
  }
  return 0;
}

/* The family a sample name belongs to (itself, or a histogram's series). */
static int is_family_series(const char *tok, const struct strset *names,
                            const struct strset *hists)
{
  static const char *const suffix[] = {"_bucket", "_sum", "_count", NULL};
  char base[128];
  size_t len = strlen(tok);
  if (set_has(names, tok))
    return 1;
  for (size_t i = 0; suffix[i]; i++) {
    size_t sl = strlen(suffix[i]);
    if (len > sl && len - sl < sizeof(base) &&
        strcmp(tok + len - sl, suffix[i]) == 0) {
      memcpy(base, tok, len - sl);
      base[len - sl] = '\0';
      if (set_has(hists, base))
        return 1;
    }
  }
  return 0;
}

/* A name the sources define: a whole word in src/, include/ or examples/
 * (C and the examples' Python), outside this check. */
static int defined_in_sources(const char *tok)
{
  char cmd[512], *out = NULL;
  snprintf(cmd, sizeof(cmd), "grep -rqw --include='*.c' --include='*.h' "
           "--include='*.py' -e '%s' src include examples", tok);
  int rc = run(cmd, &out);
  free(out);
  return rc == 0;
}

/* Every kcld_ word of a text that is not a metric family nor a name the
 * sources define, into `bad`. */
static void check_metric_names_in(const char *docname, const char *text,
                                  const struct strset *names,
                                  const struct strset *hists,
                                  struct strset *bad, struct strset *seen)
{
  for (const char *p = text; (p = strstr(p, "kcld_")) != NULL;) {
    if (p != text && is_word(p[-1])) {
      p += 5;
      continue;
    }
    size_t n = 0;
    while (is_word(p[n]))
      n++;
    char tok[128], line[256];
    snprintf(tok, sizeof(tok), "%.*s", (int)n, p);
    p += n;
    if (n == 5) /* the bare prefix, as in `grep kcld_` */
      continue;
    if (is_family_series(tok, names, hists)) {
      if (seen)
        set_add(seen, tok);
      continue;
    }
    if (looks_like_metric(tok) || !defined_in_sources(tok)) {
      snprintf(line, sizeof(line), "%s: %s", docname, tok);
      set_add(bad, line);
    }
  }
}

static void test_metrics_documented(void **state)
{
  struct strset names = {0}, hists = {0}, bad = {0};
  struct docs ds;
  (void)state;
  exported_families(&names, &hists);
  assert_true(names.n >= 20);
  assert_true(set_has(&names, "kcld_millis_behind_latest"));
  assert_true(set_has(&hists, "kcld_aws_call_duration_seconds"));
  docs_load(&ds, 0);
  const struct doc *ops = docs_find(&ds, "docs/operations.md");
  assert_non_null(ops);
  for (size_t i = 0; i < names.n; i++)
    if (!has_word(ops->text, names.v[i]))
      set_add(&bad, names.v[i]);
  assert_empty(&bad, "exported metrics missing from docs/operations.md");
  docs_free(&ds);
  set_free(&names);
  set_free(&hists);
  set_free(&bad);
}

static void test_doc_metrics_exist(void **state)
{
  struct strset names = {0}, hists = {0}, bad = {0};
  struct docs ds;
  (void)state;
  exported_families(&names, &hists);
  docs_load(&ds, 1);
  for (size_t i = 0; i < ds.n; i++)
    check_metric_names_in(ds.d[i].name, ds.d[i].text, &names, &hists, &bad,
                          NULL);
  assert_empty(&bad, "kcld_ names in the docs that are neither an exported "
               "metric nor defined in the sources");
  docs_free(&ds);
  set_free(&names);
  set_free(&hists);
  set_free(&bad);
}

/* ======== The command line ======== */

/* Output of `kcld ARGS`. */
static char *kcld_out(const char *args)
{
  char *cmd = NULL, *out = NULL;
  assert_true(asprintf(&cmd, "'%s' %s", kcld_test_bin(), args) > 0);
  run(cmd, &out);
  free(cmd);
  return out;
}

/* The commands `kcld --help` lists (the lines after "commands:"). */
static void help_commands(const char *help, struct strset *cmds)
{
  const char *p = strstr(help, "\ncommands:\n");
  assert_non_null(p);
  for (p = strchr(p + 1, '\n') + 1; *p == ' ';) {
    while (*p == ' ')
      p++;
    size_t n = 0;
    while (p[n] && p[n] != ' ' && p[n] != '\n')
      n++;
    set_addn(cmds, p, n);
    p = strchr(p, '\n');
    if (!p)
      break;
    p++;
  }
}

/* Every "--long-option" of a help text. */
static void long_options(const char *help, struct strset *opts)
{
  for (const char *p = help; (p = strstr(p, "--")) != NULL;) {
    if (p != help && (is_word(p[-1]) || p[-1] == '-')) {
      p += 2;
      continue;
    }
    size_t n = 2;
    while ((p[n] >= 'a' && p[n] <= 'z') || p[n] == '-' ||
           (n > 2 && p[n] >= '0' && p[n] <= '9')) /* --s3 */
      n++;
    if (n > 2)
      set_addn(opts, p, n);
    p += n;
  }
}

static void test_cli_options_documented(void **state)
{
  struct strset cmds = {0}, opts = {0}, bad = {0};
  struct docs ds;
  (void)state;
  char *help = kcld_out("--help");
  help_commands(help, &cmds);
  assert_true(set_has(&cmds, "status"));
  long_options(help, &opts);
  assert_true(set_has(&opts, "--check-config"));
  for (size_t i = 0; i < cmds.n; i++) {
    char args[128];
    snprintf(args, sizeof(args), "%s --help", cmds.v[i]);
    char *sub = kcld_out(args);
    assert_null(strstr(sub, "unknown"));
    long_options(sub, &opts);
    free(sub);
  }
  assert_true(set_has(&opts, "--partition-keys"));
  docs_load(&ds, 1);
  for (size_t i = 0; i < opts.n; i++) {
    int found = 0;
    for (size_t j = 0; j < ds.n && !found; j++)
      found = has_word(ds.d[j].text, opts.v[i]);
    if (!found)
      set_add(&bad, opts.v[i]);
  }
  for (size_t i = 0; i < cmds.n; i++) {
    char phrase[128];
    int found = 0;
    snprintf(phrase, sizeof(phrase), "kcld %s", cmds.v[i]);
    for (size_t j = 0; j < ds.n && !found; j++)
      found = has_word(ds.d[j].text, phrase);
    if (!found)
      set_add(&bad, phrase);
  }
  assert_empty(&bad, "options or commands of kcld --help not in docs/NAME.md, "
               "README.md or the man page");
  docs_free(&ds);
  free(help);
  set_free(&cmds);
  set_free(&opts);
  set_free(&bad);
}

/* Whether the "kcld" at p starts a command: at the start of the line
 * (`s`, after its indent) or of a code span, or after a prompt, sudo, a
 * shell operator or "=" (ExecStart=); a path before it (/usr/bin/kcld)
 * counts as part of the command. */
static int command_position(const char *s, const char *p)
{
  static const char *const before[] = {
    "`", "$ ", "# ", "sudo ", "&& ", "| ", "; ", "=", "exec ", NULL,
  };
  while (p > s && p[-1] != ' ' && p[-1] != '`' && p[-1] != '=' &&
         (p[-1] == '/' || is_word(p[-1]) || p[-1] == '.' || p[-1] == '-'))
    p--;
  if (p == s)
    return 1;
  for (size_t i = 0; before[i]; i++) {
    size_t n = strlen(before[i]);
    if ((size_t)(p - s) >= n && strncmp(p - n, before[i], n) == 0) {
      /* "# " only as a root prompt at the start of the line. */
      if (strcmp(before[i], "# ") == 0 && p - n != s)
        continue;
      return 1;
    }
  }
  return 0;
}

/* Every "kcld WORD" inside code (inline spans and fenced blocks) of a
 * markdown text, WORD lower-case and not an option.  A block fenced as
 * ```text is a program's output (a benchmark's labels), not commands. */
static void code_commands(const char *docname, const char *text,
                          struct strset *words)
{
  int fenced = 0, output = 0;
  for (const char *l = text; l && *l;) {
    const char *eol = strchr(l, '\n');
    size_t ll = eol ? (size_t)(eol - l) : strlen(l);
    const char *s = l;
    while (s < l + ll && *s == ' ')
      s++;
    if (strncmp(s, "```", 3) == 0) {
      if (!fenced)
        output = strncmp(s + 3, "text", 4) == 0;
      fenced = !fenced;
      l = eol ? eol + 1 : NULL;
      continue;
    }
    if (fenced && output) {
      l = eol ? eol + 1 : NULL;
      continue;
    }
    int in_span = 0;
    for (const char *p = l; p < l + ll; p++) {
      if (*p == '`') {
        in_span = !in_span;
        continue;
      }
      if (!(fenced || in_span) || strncmp(p, "kcld ", 5) != 0)
        continue;
      if (!command_position(s, p))
        continue;
      const char *w = p + 5;
      size_t n = 0;
      while (w + n < l + ll && ((w[n] >= 'a' && w[n] <= 'z') ||
                                (n > 0 && w[n] == '-')))
        n++;
      if (n == 0)
        continue;
      char line[160];
      snprintf(line, sizeof(line), "%s\t%.*s", docname, (int)n, w);
      set_add(words, line);
    }
    l = eol ? eol + 1 : NULL;
  }
}

static void test_doc_commands_exist(void **state)
{
  struct strset words = {0}, bad = {0}, known = {0};
  struct docs ds;
  (void)state;
  docs_load(&ds, 0);
  for (size_t i = 0; i < ds.n; i++)
    code_commands(ds.d[i].name, ds.d[i].text, &words);
  assert_true(words.n > 0);
  for (size_t i = 0; i < words.n; i++) {
    const char *w = strchr(words.v[i], '\t') + 1;
    if (set_has(&known, w))
      continue;
    char args[128];
    snprintf(args, sizeof(args), "%s --help", w);
    char *out = kcld_out(args);
    if (strstr(out, "unknown command"))
      set_add(&bad, words.v[i]);
    else
      set_add(&known, w);
    free(out);
  }
  assert_empty(&bad, "`kcld COMMAND` in the docs that kcld does not know");
  docs_free(&ds);
  set_free(&words);
  set_free(&known);
  set_free(&bad);
}

/* ======== Log messages ======== */

/* Appends every C string literal of `src` to `out`, adjacent literals
 * joined (as the compiler does), each result followed by a newline.
 * Comments and character literals are skipped. */
static void literals(const char *src, char **out, size_t *len, size_t *cap)
{
  int open = 0;
  for (const char *p = src; *p;) {
    if (p[0] == '/' && p[1] == '*') {
      const char *e = strstr(p + 2, "*/");
      p = e ? e + 2 : p + strlen(p);
      continue;
    }
    if (p[0] == '/' && p[1] == '/') {
      while (*p && *p != '\n')
        p++;
      continue;
    }
    if (*p == '\'') {
      p++;
      while (*p && *p != '\'') {
        if (*p == '\\' && p[1])
          p++;
        p++;
      }
      if (*p)
        p++;
      continue;
    }
    if (*p == '"') {
      for (p++; *p && *p != '"'; p++) {
        char c = *p;
        if (c == '\\' && p[1]) {
          p++;
          c = *p == 'n' ? '\n' : *p;
        }
        if (*len + 2 >= *cap) {
          *cap = *cap ? 2 * *cap : 65536;
          *out = realloc(*out, *cap);
          assert_non_null(*out);
        }
        (*out)[(*len)++] = c;
      }
      if (*p)
        p++;
      open = 1;
      continue;
    }
    if (open && *p != ' ' && *p != '\n' && *p != '\t') {
      if (*len + 2 >= *cap) {
        *cap = *cap ? 2 * *cap : 65536;
        *out = realloc(*out, *cap);
        assert_non_null(*out);
      }
      (*out)[(*len)++] = '\n';
      open = 0;
    }
    p++;
  }
  if (*out)
    (*out)[*len] = '\0';
}

/* Every string literal of src/ (NAME.c and NAME.h, one level of
 * subdirectories), joined into one text. */
static char *source_literals(void)
{
  char *out = NULL, *list = NULL;
  size_t len = 0, cap = 0;
  run("ls src/*.c src/*/*.c src/*.h src/*/*.h", &list);
  for (char *l = strtok(list, "\n"); l; l = strtok(NULL, "\n")) {
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", kcld_test_root(), l);
    char *text = kcld_test_slurp(path, NULL);
    if (!text)
      fail_msg("cannot read %s", path);
    literals(text, &out, &len, &cap);
    free(text);
  }
  free(list);
  assert_non_null(out);
  return out;
}

/* Every inline code span of a markdown text that is a quoted message
 * (`"..."`, possibly across lines: a line break and its indent read as one
 * space) whose text is not in `lits`, into `bad`. */
static void check_messages_in(const char *docname, const char *text,
                              const char *lits, struct strset *bad,
                              size_t *checked)
{
  int fenced = 0, bol = 1;
  for (const char *p = text; *p; p++) {
    if (bol) {
      const char *s = p;
      while (*s == ' ')
        s++;
      if (strncmp(s, "```", 3) == 0) {
        fenced = !fenced;
        while (*p && *p != '\n')
          p++;
        if (!*p)
          break;
        bol = 1; /* p is at the newline: the next line starts */
        continue;
      }
    }
    bol = *p == '\n';
    if (fenced || *p != '`')
      continue;
    const char *end = strchr(p + 1, '`');
    if (!end)
      break;
    char msg[512];
    size_t n = 0;
    for (const char *q = p + 1; q < end && n + 1 < sizeof(msg); q++) {
      if (*q == '\n') {
        while (q + 1 < end && q[1] == ' ')
          q++;
        msg[n++] = ' ';
      } else {
        msg[n++] = *q;
      }
    }
    msg[n] = '\0';
    for (const char *q = p; q < end; q++)
      if (*q == '\n')
        bol = 0;
    p = end;
    if (n < 3 || msg[0] != '"' || msg[n - 1] != '"')
      continue;
    msg[n - 1] = '\0';
    (*checked)++;
    if (!strstr(lits, msg + 1)) {
      char line[600];
      snprintf(line, sizeof(line), "%s: %s", docname, msg + 1);
      set_add(bad, line);
    }
  }
}

static void test_log_messages_exist(void **state)
{
  struct strset bad = {0};
  struct docs ds;
  size_t checked = 0;
  (void)state;
  char *lits = source_literals();
  assert_non_null(strstr(lits, "lease lost\n"));
  docs_load(&ds, 0);
  const struct doc *t = docs_find(&ds, "docs/troubleshooting.md");
  assert_non_null(t);
  check_messages_in(t->name, t->text, lits, &bad, &checked);
  assert_true(checked >= 30);
  assert_empty(&bad, "log messages quoted in docs/troubleshooting.md that "
               "the sources do not print");
  docs_free(&ds);
  free(lits);
  set_free(&bad);
}

/* ======== Signals ======== */

/* The SIGNAME words of src/daemon.c's s_signums table and of its signal()
 * calls: what the daemon handles or ignores. */
static void daemon_signals(struct strset *out)
{
  char path[1024];
  snprintf(path, sizeof(path), "%s/src/daemon.c", kcld_test_root());
  char *src = kcld_test_slurp(path, NULL);
  assert_non_null(src);
  const char *table = strstr(src, "s_signums[NSIGS] = {");
  assert_non_null(table);
  const char *end = strstr(table, "};");
  assert_non_null(end);
  for (const char *p = table; p; p = strstr(p + 1, "signal(SIG")) {
    const char *q = p == table ? p : p + strlen("signal(");
    const char *stop = p == table ? end : q + 16;
    while ((q = strstr(q, "SIG")) && q < stop) {
      size_t n = 3;
      while ((q[n] >= 'A' && q[n] <= 'Z') || (q[n] >= '0' && q[n] <= '9'))
        n++;
      if (n > 3 && !is_word(q[-1]))
        set_addn(out, q, n);
      q += n;
    }
  }
  free(src);
}

/* The text of `doc` from `start` to the next `next` (or its end). */
static char *section_of(const struct doc *d, const char *start,
                        const char *next)
{
  const char *s = d ? strstr(d->text, start) : NULL;
  if (!s)
    fail_msg("%s has no \"%s\"", d ? d->name : "?", start);
  const char *e = strstr(s + strlen(start), next);
  return strndup(s, e ? (size_t)(e - s) : strlen(s));
}

/* Every signal the daemon handles or ignores is described in the man
 * page's SIGNALS section and in operations.md's Signals section. */
static void test_signals_documented(void **state)
{
  struct strset sigs = {0}, bad = {0};
  struct docs ds;
  (void)state;
  daemon_signals(&sigs);
  assert_true(sigs.n >= 7); /* TERM INT QUIT HUP USR1 USR2, PIPE */
  docs_load(&ds, 1);
  char *man = section_of(docs_find(&ds, "docs/man/kcld.8"), ".SH SIGNALS",
                         ".SH ");
  char *ops = section_of(docs_find(&ds, "docs/operations.md"),
                         "### Signals", "\n### ");
  for (size_t i = 0; i < sigs.n; i++) {
    char line[128];
    if (!strstr(man, sigs.v[i])) {
      snprintf(line, sizeof(line), "docs/man/kcld.8 SIGNALS: %s", sigs.v[i]);
      set_add(&bad, line);
    }
    if (!strstr(ops, sigs.v[i])) {
      snprintf(line, sizeof(line), "docs/operations.md Signals: %s",
               sigs.v[i]);
      set_add(&bad, line);
    }
  }
  assert_empty(&bad, "signals kcld handles that are not documented");
  free(man);
  free(ops);
  docs_free(&ds);
  set_free(&sigs);
  set_free(&bad);
}

/* ======== The checkers catch what they should ======== */

static void test_checkers_find_errors(void **state)
{
  struct strset keys = {0}, sections = {0}, bad = {0}, names = {0},
                hists = {0}, words = {0};
  struct doc d;
  (void)state;
  table_keys(&keys, &sections);
  memset(&d, 0, sizeof(d));
  snprintf(d.name, sizeof(d.name), "made-up.md");
  d.text = "Set `batch.size` and `batch.sise`, `lease.failover_time`/3,\n"
           "`handler.key.pk`, `handler.key`, `handler.py`, `kcld.yaml`,\n"
           "`retry.max_retry_attemps: 3`.\n"
           "```yaml\nbatch.bogus: 1\n```\n";
  check_keys_in(&d, &keys, &sections, &bad);
  assert_int_equal(bad.n, 2);
  assert_true(set_has(&bad, "made-up.md: `batch.sise`"));
  assert_true(set_has(&bad, "made-up.md: `retry.max_retry_attemps`"));
  set_free(&bad);

  d.man = 1;
  d.text = ".B metrics.listen\n.BR lease.failover_tim )\n.B kcld\n";
  check_keys_in(&d, &keys, &sections, &bad);
  assert_int_equal(bad.n, 1);
  assert_true(set_has(&bad, "made-up.md: `lease.failover_tim`"));
  set_free(&bad);

  exported_families(&names, &hists);
  check_metric_names_in("m", "kcld_leases_lost_total kcld_leases_lost "
                        "kcld_handler_duration_seconds_bucket "
                        "kcld_records_fetched kcld_made_up_total "
                        "kcld_config_reference xkcld_nothing", &names,
                        &hists, &bad, NULL);
  assert_int_equal(bad.n, 3);
  assert_true(set_has(&bad, "m: kcld_leases_lost"));
  assert_true(set_has(&bad, "m: kcld_records_fetched"));
  assert_true(set_has(&bad, "m: kcld_made_up_total"));
  set_free(&bad);

  code_commands("c", "run `kcld status --json` or\n```sh\n"
                "$ kcld produce -n 5\nkcld --help\n"
                "# Any kcld key can be set\n"
                "/usr/local/bin/kcld redrive --queue Q\n```\n"
                "kcld reads prose, `kcld statuz`\n"
                "```text\nkcld polling   : 1.5 CPU s/M\n```\n", &words);
  assert_int_equal(words.n, 4); /* not the output's label */
  assert_true(set_has(&words, "c\tredrive"));
  assert_true(set_has(&words, "c\tstatuz"));
  assert_true(has_word("a --dump-config b", "--dump-config"));
  assert_false(has_word("a --dump-config b", "--config"));
  assert_false(has_word("kcld_leases_lost_total", "kcld_leases_lost"));

  char *lits = source_literals();
  size_t checked = 0;
  check_messages_in("t", "`\"lease lost\"` and `\"second signal: exiting at\n"
                    "  once without checkpointing unhandled records\"`, "
                    "`\"lease lots\"`, `\"truncated\": true`\n"
                    "```\n`\"not checked\"`\n```\n"
                    "`\"lease lost\"` `\"lease last\"`\n",
                    lits, &bad, &checked);
  assert_int_equal(checked, 5);
  assert_int_equal(bad.n, 2);
  assert_true(set_has(&bad, "t: lease last"));
  assert_true(set_has(&bad, "t: lease lots"));
  free(lits);
  set_free(&bad);

  set_free(&keys);
  set_free(&sections);
  set_free(&names);
  set_free(&hists);
  set_free(&words);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_config_keys_documented),
    cmocka_unit_test(test_doc_keys_exist),
    cmocka_unit_test(test_metrics_documented),
    cmocka_unit_test(test_doc_metrics_exist),
    cmocka_unit_test(test_cli_options_documented),
    cmocka_unit_test(test_doc_commands_exist),
    cmocka_unit_test(test_log_messages_exist),
    cmocka_unit_test(test_signals_documented),
    cmocka_unit_test(test_checkers_find_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
