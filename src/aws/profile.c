/* profile.c — the AWS shared config and credentials files as sections of
 * properties (see profile.h for the syntax).  Values are wiped on free. */
#include "aws/profile.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "err.h"
#include "log.h"

#define MAX_FILE_BYTES (4 << 20)

struct prop {
  char *key, *value;
  struct prop *subs;  /* sub-properties, in order */
  struct prop *next;
};

struct kcld_profile {
  enum kcld_profile_kind kind;
  char *name;
  struct prop *props;         /* both files; the credentials file wins */
  struct prop *config_props;  /* the config file's alone */
  struct kcld_profile *next;
};

struct kcld_profile_files {
  struct kcld_profile *sections;
};

/* ======== Files ======== */

static const char *env_nonempty(const char *name)
{
  const char *v = getenv(name);
  return v && *v ? v : NULL;
}

static const char *home_dir(char *buf, size_t len)
{
  const char *h = env_nonempty("HOME");
  struct passwd pw, *res = NULL;
  if (h)
    return h;
  if (getpwuid_r(getuid(), &pw, buf, len, &res) != 0 || !res || !pw.pw_dir)
    return NULL;
  return pw.pw_dir;
}

char *kcld_profile_path(const char *var, const char *name)
{
  char pwbuf[1024];
  const char *v = var ? env_nonempty(var) : NULL;
  const char *home = home_dir(pwbuf, sizeof(pwbuf));
  char *out = NULL;

  if (v && v[0] == '~' && (v[1] == '/' || v[1] == '\0')) {
    if (!home || asprintf(&out, "%s%s", home, v + 1) < 0)
      return NULL;
    return out;
  }
  if (v)
    return strdup(v);
  if (!home || asprintf(&out, "%s/.aws/%s", home, name) < 0)
    return NULL;
  return out;
}

int kcld_profile_read_file(const char *path, char **out, size_t *len)
{
  struct stat st;
  char *buf = NULL;
  size_t n = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);

  *out = NULL;
  if (fd < 0)
    return errno == ENOENT || errno == ENOTDIR ? KCLD_ENOTFOUND : KCLD_EIO;
  if (fstat(fd, &st) != 0 || st.st_size > MAX_FILE_BYTES) {
    close(fd);
    return KCLD_EIO;
  }
  buf = malloc((size_t)st.st_size + 1);
  if (!buf) {
    close(fd);
    return KCLD_ENOMEM;
  }
  while (n < (size_t)st.st_size) {
    ssize_t r = read(fd, buf + n, (size_t)st.st_size - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    n += (size_t)r;
  }
  close(fd);
  buf[n] = '\0';
  *out = buf;
  if (len)
    *len = n;
  return 0;
}

int kcld_profile_bool(const char *v)
{
  if (!v)
    return -1;
  if (strcasecmp(v, "true") == 0)
    return 1;
  if (strcasecmp(v, "false") == 0)
    return 0;
  return -1;
}

const char *kcld_profile_selected(const char *configured, int *explicit_out)
{
  const char *p = configured && *configured ? configured
                                            : env_nonempty("AWS_PROFILE");
  if (explicit_out)
    *explicit_out = p != NULL;
  return p ? p : "default";
}

/* ======== The model ======== */

static void wipe_free(char *s)
{
  if (s) {
    OPENSSL_cleanse(s, strlen(s));
    free(s);
  }
}

static void props_free(struct prop *p)
{
  while (p) {
    struct prop *next = p->next;
    props_free(p->subs);
    wipe_free(p->key);
    wipe_free(p->value);
    free(p);
    p = next;
  }
}

void kcld_profile_files_free(struct kcld_profile_files *f)
{
  if (!f)
    return;
  while (f->sections) {
    struct kcld_profile *s = f->sections;
    f->sections = s->next;
    props_free(s->props);
    props_free(s->config_props);
    free(s->name);
    free(s);
  }
  free(f);
}

const struct kcld_profile *
kcld_profile_find(const struct kcld_profile_files *f,
                  enum kcld_profile_kind kind, const char *name)
{
  if (!f || !name)
    return NULL;
  for (const struct kcld_profile *s = f->sections; s; s = s->next)
    if (s->kind == kind && strcmp(s->name, name) == 0)
      return s;
  return NULL;
}

const char *kcld_profile_name(const struct kcld_profile *p)
{
  return p ? p->name : "";
}

static const struct prop *prop_find(const struct prop *list, const char *key)
{
  for (const struct prop *p = list; p; p = p->next)
    if (strcasecmp(p->key, key) == 0)
      return p;
  return NULL;
}

const char *kcld_profile_get(const struct kcld_profile *p, const char *key)
{
  const struct prop *pr = p ? prop_find(p->props, key) : NULL;
  return pr && *pr->value ? pr->value : NULL;
}

const char *kcld_profile_get_config(const struct kcld_profile *p,
                                   const char *key)
{
  const struct prop *pr = p ? prop_find(p->config_props, key) : NULL;
  return pr && *pr->value ? pr->value : NULL;
}

const char *kcld_profile_get_sub(const struct kcld_profile *p,
                                 const char *key, const char *sub)
{
  const struct prop *pr = p ? prop_find(p->props, key) : NULL;
  const struct prop *s = pr ? prop_find(pr->subs, sub) : NULL;
  return s && *s->value ? s->value : NULL;
}

/* The section of that kind and name, created (appended) when new. */
static struct kcld_profile *section_get(struct kcld_profile_files *f,
                                        enum kcld_profile_kind kind,
                                        const char *name)
{
  struct kcld_profile **tail = &f->sections, *s;
  for (s = f->sections; s; s = s->next) {
    if (s->kind == kind && strcmp(s->name, name) == 0)
      return s;
    tail = &s->next;
  }
  s = calloc(1, sizeof(*s));
  if (!s || !(s->name = strdup(name))) {
    free(s);
    return NULL;
  }
  s->kind = kind;
  *tail = s;
  return s;
}

/* Sets `key` in `*list` (replacing its value and sub-properties when it is
 * there).  Returns the property, or NULL when out of memory. */
static struct prop *prop_set(struct prop **list, const char *key,
                             const char *value)
{
  struct prop **tail = list, *p;
  char *v = strdup(value);
  if (!v)
    return NULL;
  for (p = *list; p; p = p->next) {
    if (strcasecmp(p->key, key) == 0) {
      wipe_free(p->value);
      p->value = v;
      props_free(p->subs);
      p->subs = NULL;
      return p;
    }
    tail = &p->next;
  }
  p = calloc(1, sizeof(*p));
  if (!p || !(p->key = strdup(key))) {
    free(p);
    wipe_free(v);
    return NULL;
  }
  p->value = v;
  *tail = p;
  return p;
}

/* ======== Parsing ======== */

static char *trim(char *s)
{
  char *e;
  while (*s == ' ' || *s == '\t')
    s++;
  e = s + strlen(s);
  while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
    *--e = '\0';
  return s;
}

/* What a section header (inside the brackets, trimmed) names: its kind and
 * name into *kind / *name, or 0 when the section is not one kcld reads.
 * `name` points into `head`. */
static int section_kind(char *head, int is_config, enum kcld_profile_kind *kind,
                        char **name)
{
  static const struct {
    const char *word;
    enum kcld_profile_kind kind;
  } words[] = {{"profile", KCLD_PROFILE},
               {"sso-session", KCLD_PROFILE_SSO_SESSION},
               {"services", KCLD_PROFILE_SERVICES}};

  *kind = KCLD_PROFILE;
  if (!is_config) {
    *name = head;
    return *head != '\0';
  }
  if (strcmp(head, "default") == 0) {
    *name = head;
    return 1;
  }
  for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
    size_t n = strlen(words[i].word);
    if (strncmp(head, words[i].word, n) == 0 &&
        (head[n] == ' ' || head[n] == '\t')) {
      *kind = words[i].kind;
      *name = trim(head + n);
      return **name != '\0';
    }
  }
  return 0;
}

/* Cuts a value at a comment: # or ; after whitespace. */
static char *strip_comment(char *val)
{
  for (char *c = val; *c; c++)
    if ((*c == '#' || *c == ';') && c > val &&
        (c[-1] == ' ' || c[-1] == '\t')) {
      *c = '\0';
      return trim(val);
    }
  return val;
}

/* Parses one file held in `buf` (modified in place) into `f`.  Returns 0
 * or KCLD_ENOMEM. */
static int parse(struct kcld_profile_files *f, char *buf, int is_config)
{
  struct kcld_profile *sec = NULL;
  struct prop *last = NULL; /* the property sub-properties would go to */
  struct prop *last_cfg = NULL; /* its twin in config_props */
  int had_property = 0;     /* in this section */
  char *line = buf, *next;

  if ((unsigned char)buf[0] == 0xEF && (unsigned char)buf[1] == 0xBB &&
      (unsigned char)buf[2] == 0xBF)
    line += 3;
  for (; line; line = next) {
    int indented;
    char *t, *eq, *key, *val;

    next = strchr(line, '\n');
    if (next)
      *next++ = '\0';
    indented = line[0] == ' ' || line[0] == '\t';
    t = trim(line);
    if (*t == '\0' || *t == '#' || *t == ';')
      continue;
    if (*t == '[') {
      char *close = strchr(t, ']'), *name;
      enum kcld_profile_kind kind;
      last = last_cfg = NULL;
      sec = NULL;
      had_property = 0;
      if (!close)
        continue;
      *close = '\0';
      if (section_kind(trim(t + 1), is_config, &kind, &name) &&
          !(sec = section_get(f, kind, name)))
        return KCLD_ENOMEM;
      continue;
    }
    eq = strchr(t, '=');
    if (!eq)
      continue;
    *eq = '\0';
    key = trim(t);
    val = strip_comment(trim(eq + 1));
    if (indented && had_property) {
      if (last && !*last->value &&
          (!prop_set(&last->subs, key, val) ||
           (last_cfg && !prop_set(&last_cfg->subs, key, val))))
        return KCLD_ENOMEM;
      continue;
    }
    had_property = 1;
    last = last_cfg = NULL;
    if (sec && (!(last = prop_set(&sec->props, key, val)) ||
                (is_config &&
                 !(last_cfg = prop_set(&sec->config_props, key, val)))))
      return KCLD_ENOMEM;
  }
  return 0;
}

int kcld_profile_files_load(struct kcld_profile_files **out)
{
  static const struct {
    const char *var, *file;
    int is_config;
  } files[] = {{"AWS_CONFIG_FILE", "config", 1},
               {"AWS_SHARED_CREDENTIALS_FILE", "credentials", 0}};
  struct kcld_profile_files *f = calloc(1, sizeof(*f));
  int rc = 0;

  *out = NULL;
  if (!f)
    return KCLD_ENOMEM;
  for (size_t i = 0; rc == 0 && i < 2; i++) {
    char *path = kcld_profile_path(files[i].var, files[i].file), *buf;
    size_t len;
    int r;
    if (!path)
      continue;
    r = kcld_profile_read_file(path, &buf, &len);
    if (r == 0) {
      rc = parse(f, buf, files[i].is_config);
      OPENSSL_cleanse(buf, len);
      free(buf);
    } else if (r != KCLD_ENOTFOUND) {
      kcld_log(KCLD_LOG_WARN, "cannot read AWS shared file", "path", path,
               "error", kcld_strerror(r), NULL);
    }
    free(path);
  }
  if (rc != 0) {
    kcld_profile_files_free(f);
    return rc;
  }
  *out = f;
  return 0;
}
