/* config_values.c — one configuration value (config_values.h): durations,
 * sizes and times, the string rules, ${VAR} expansion, and the conversion
 * of a value's text into its field as its key's row says. */
#include "config_values.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "aws/s3_uri.h"
#include "err.h"
#include "process/filter.h"

/* ======== Small helpers ======== */

void kcld_config_value_wipe(char *s)
{
  if (s) {
    OPENSSL_cleanse(s, strlen(s));
    free(s);
  }
}

void kcld_config_value_streams_free(struct kcld_config_streams *s)
{
  for (size_t i = 0; i < s->len; i++) {
    free(s->v[i].stream);
    kcld_config_free(s->v[i].cfg);
  }
  free(s->v);
  s->v = NULL;
  s->len = 0;
}

void kcld_config_value_list_free(struct kcld_config_list *l)
{
  if (l->items)
    for (size_t i = 0; i < l->len; i++)
      free(l->items[i]);
  free(l->items);
  l->items = NULL;
  l->len = 0;
}

size_t kcld_config_value_distance(const char *a, const char *b)
{
  size_t la = strlen(a), lb = strlen(b);
  if (la > 63 || lb > 63)
    return 100;
  size_t d[64][64];
  for (size_t i = 0; i <= la; i++)
    d[i][0] = i;
  for (size_t j = 0; j <= lb; j++)
    d[0][j] = j;
  for (size_t i = 1; i <= la; i++) {
    for (size_t j = 1; j <= lb; j++) {
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      size_t v = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < v)
        v = d[i][j - 1] + 1;
      if (d[i - 1][j - 1] + cost < v)
        v = d[i - 1][j - 1] + cost;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
          d[i - 2][j - 2] + 1 < v)
        v = d[i - 2][j - 2] + 1;
      d[i][j] = v;
    }
  }
  return d[la][lb];
}

size_t kcld_config_value_close_enough(size_t len)
{
  return len <= 4 ? 1 : len <= 12 ? 2 : 3;
}

char *kcld_config_value_quote(const char *s, char *buf, size_t n)
{
  size_t o = 0;
  buf[o++] = '"';
  for (size_t i = 0; s[i] && o + 8 < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (i == 60) {
      memcpy(buf + o, "...", 3);
      o += 3;
      break;
    }
    if (ch == '"' || ch == '\\') {
      buf[o++] = '\\';
      buf[o++] = (char)ch;
    } else if (ch == '\n') {
      buf[o++] = '\\';
      buf[o++] = 'n';
    } else if (ch < 0x20 || ch == 0x7f) {
      o += (size_t)snprintf(buf + o, n - o, "\\x%02x", ch);
    } else {
      buf[o++] = (char)ch;
    }
  }
  buf[o++] = '"';
  buf[o] = '\0';
  return buf;
}

/* ======== Durations, sizes, times ======== */

/* Parses digits[.digits] at *p; returns 0 with the integer part, the
 * fraction digits and their count. */
static int parse_number(const char **p, int64_t *ip, int64_t *frac,
                        int *fdigits)
{
  const char *s = *p;
  *ip = 0;
  *frac = 0;
  *fdigits = 0;
  if (*s < '0' || *s > '9')
    return -1;
  while (*s >= '0' && *s <= '9') {
    if (__builtin_mul_overflow(*ip, 10, ip) ||
        __builtin_add_overflow(*ip, *s - '0', ip))
      return -1;
    s++;
  }
  if (*s == '.') {
    s++;
    if (*s < '0' || *s > '9')
      return -1;
    while (*s >= '0' && *s <= '9') {
      if (*fdigits == 9)
        return -1;
      *frac = *frac * 10 + (*s - '0');
      (*fdigits)++;
      s++;
    }
  }
  *p = s;
  return 0;
}

/* ip.frac × unit, which must be whole; returns 0 or -1. */
static int scale(int64_t ip, int64_t frac, int fdigits, int64_t unit,
                 int64_t *out)
{
  int64_t pow10 = 1, whole, part;
  for (int i = 0; i < fdigits; i++)
    pow10 *= 10;
  if (__builtin_mul_overflow(ip, unit, &whole) ||
      __builtin_mul_overflow(frac, unit, &part) || part % pow10 != 0 ||
      __builtin_add_overflow(whole, part / pow10, out))
    return -1;
  return 0;
}

int kcld_config_parse_duration(const char *text, int64_t *ms)
{
  static const struct {
    const char *name;
    int64_t ms;
  } units[] = {{"ms", 1}, {"s", SEC}, {"m", MIN}, {"h", HOUR}, {"d", DAY}};
  const char *p = text;
  int64_t total = 0;
  if (!text || !*text)
    return KCLD_EINVAL;
  if (strcmp(text, "0") == 0) {
    *ms = 0;
    return 0;
  }
  while (*p) {
    int64_t ip, frac, v;
    int fd;
    size_t u, best = 0, best_len = 0;
    if (parse_number(&p, &ip, &frac, &fd) != 0)
      return KCLD_EINVAL;
    for (u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
      size_t l = strlen(units[u].name);
      if (strncmp(p, units[u].name, l) == 0 && l > best_len) {
        best = u;
        best_len = l;
      }
    }
    if (best_len == 0 || scale(ip, frac, fd, units[best].ms, &v) != 0 ||
        __builtin_add_overflow(total, v, &total))
      return KCLD_EINVAL;
    p += best_len;
  }
  *ms = total;
  return 0;
}

int kcld_config_parse_size(const char *text, int64_t *bytes)
{
  static const struct {
    const char *name;
    int64_t n;
  } units[] = {{"B", 1},           {"KiB", KIB},       {"MiB", MIB},
               {"GiB", GIB},       {"TiB", 1024 * GIB}, {"kB", 1000},
               {"MB", 1000000},    {"GB", 1000000000}, {"TB", 1000000000000}};
  const char *p = text;
  int64_t ip, frac;
  int fd;
  if (!text || !*text)
    return KCLD_EINVAL;
  if (strcmp(text, "0") == 0) {
    *bytes = 0;
    return 0;
  }
  if (parse_number(&p, &ip, &frac, &fd) != 0)
    return KCLD_EINVAL;
  for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++)
    if (strcmp(p, units[u].name) == 0)
      return scale(ip, frac, fd, units[u].n, bytes) == 0 ? 0 : KCLD_EINVAL;
  return KCLD_EINVAL;
}

char *kcld_config_format_duration(int64_t ms, char *buf, size_t n)
{
  static const struct {
    const char *name;
    int64_t ms;
  } units[] = {{"d", DAY}, {"h", HOUR}, {"m", MIN}, {"s", SEC}};
  if (ms == -1) {
    snprintf(buf, n, "-1");
    return buf;
  }
  if (ms == 0) {
    snprintf(buf, n, "0s");
    return buf;
  }
  for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
    if (ms % units[u].ms == 0) {
      snprintf(buf, n, "%lld%s", (long long)(ms / units[u].ms),
               units[u].name);
      return buf;
    }
  }
  snprintf(buf, n, "%lldms", (long long)ms);
  return buf;
}

char *kcld_config_format_size(int64_t bytes, char *buf, size_t n)
{
  static const struct {
    const char *name;
    int64_t n;
  } units[] = {{"TiB", 1024 * GIB}, {"GiB", GIB}, {"MiB", MIB}, {"KiB", KIB},
               {"TB", 1000000000000}, {"GB", 1000000000}, {"MB", 1000000},
               {"kB", 1000}};
  if (bytes != 0) {
    for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
      if (bytes % units[u].n == 0) {
        snprintf(buf, n, "%lld%s", (long long)(bytes / units[u].n),
                 units[u].name);
        return buf;
      }
    }
  }
  snprintf(buf, n, "%lldB", (long long)bytes);
  return buf;
}

static int digits(const char **p, int count, int *out)
{
  int v = 0;
  for (int i = 0; i < count; i++) {
    char ch = (*p)[i];
    if (ch < '0' || ch > '9')
      return -1;
    v = v * 10 + (ch - '0');
  }
  *p += count;
  *out = v;
  return 0;
}

/* RFC 3339 ("2024-05-01T12:00:00Z", "...12:00:00.250+02:00") or epoch
 * seconds ("1714564800", "1714564800.25"); returns 0 and epoch ms. */
static int parse_time(const char *s, int64_t *ms)
{
  const char *p = s;
  int64_t ip, frac, v;
  int fd, year, mon, day, hh, mm, ss, oh = 0, om = 0, sign = 0;
  if (parse_number(&p, &ip, &frac, &fd) == 0 && *p == '\0') {
    /* Epoch seconds; a fraction beyond milliseconds is cut. */
    while (fd > 3) {
      frac /= 10;
      fd--;
    }
    while (fd < 3) {
      frac *= 10;
      fd++;
    }
    if (__builtin_mul_overflow(ip, 1000, &v) ||
        __builtin_add_overflow(v, frac, ms))
      return -1;
    return 0;
  }
  p = s;
  if (digits(&p, 4, &year) || *p++ != '-' || digits(&p, 2, &mon) ||
      *p++ != '-' || digits(&p, 2, &day) ||
      (*p != 'T' && *p != 't' && *p != ' '))
    return -1;
  p++;
  if (digits(&p, 2, &hh) || *p++ != ':' || digits(&p, 2, &mm) ||
      *p++ != ':' || digits(&p, 2, &ss))
    return -1;
  frac = 0;
  if (*p == '.') {
    int n = 0;
    p++;
    if (*p < '0' || *p > '9')
      return -1;
    for (; *p >= '0' && *p <= '9'; p++, n++)
      if (n < 3)
        frac = frac * 10 + (*p - '0');
    for (; n < 3; n++)
      frac *= 10;
  }
  if (*p == 'Z' || *p == 'z') {
    p++;
  } else if (*p == '+' || *p == '-') {
    sign = *p++ == '+' ? 1 : -1;
    if (digits(&p, 2, &oh) || *p++ != ':' || digits(&p, 2, &om) || oh > 23 ||
        om > 59)
      return -1;
  } else {
    return -1;
  }
  if (*p != '\0' || mon < 1 || mon > 12 || day < 1 || day > 31 || hh > 23 ||
      mm > 59 || ss > 59)
    return -1;
  struct tm tm = {0};
  tm.tm_year = year - 1900;
  tm.tm_mon = mon - 1;
  tm.tm_mday = day;
  tm.tm_hour = hh;
  tm.tm_min = mm;
  tm.tm_sec = ss;
  time_t t = timegm(&tm);
  if (tm.tm_mday != day || tm.tm_mon != mon - 1) /* 31 April, 30 Feb */
    return -1;
  t -= sign * (oh * 3600 + om * 60);
  if (t < 0)
    return -1;
  *ms = (int64_t)t * 1000 + frac;
  return 0;
}

void kcld_config_value_format_time(int64_t ms, char *buf, size_t n)
{
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  size_t k = strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm);
  if (ms % 1000)
    k += (size_t)snprintf(buf + k, n - k, ".%03d", (int)(ms % 1000));
  snprintf(buf + k, n - k, "Z");
}

/* ======== String checks ======== */

static int is_table_char(char ch)
{
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
         (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == '-';
}

static int valid_name(const char *s, size_t lo, size_t hi)
{
  size_t n = strlen(s);
  if (n < lo || n > hi)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!is_table_char(s[i]))
      return 0;
  return 1;
}

int kcld_config_value_among(const char *s, const char *const *names)
{
  for (size_t i = 0; names && names[i]; i++)
    if (strcmp(s, names[i]) == 0)
      return 1;
  return 0;
}

int kcld_config_value_is_table_name(const char *s)
{
  return valid_name(s, 3, 255);
}

int kcld_config_value_is_consumer_name(const char *s)
{
  return valid_name(s, 1, 128);
}

static int valid_url(const char *s)
{
  const char *host;
  if (strncmp(s, "http://", 7) == 0)
    host = s + 7;
  else if (strncmp(s, "https://", 8) == 0)
    host = s + 8;
  else
    return 0;
  if (*host == '\0' || *host == '/' || *host == '?' || *host == '#' ||
      *host == ':')
    return 0;
  for (const char *p = s; *p; p++)
    if ((unsigned char)*p <= 0x20 || *p == 0x7f)
      return 0;
  return 1;
}

int kcld_config_value_has_userinfo(const char *s)
{
  const char *p = strstr(s, "://");
  const char *host = p ? p + 3 : s;
  return memchr(host, '@', strcspn(host, "/?#")) != NULL;
}

static int valid_hostport(const char *s)
{
  const char *colon;
  if (*s == '[') {
    const char *close = strchr(s, ']');
    if (!close || close == s + 1 || close[1] != ':')
      return 0;
    for (const char *p = s + 1; p < close; p++)
      if (!strchr("0123456789abcdefABCDEF:.", *p))
        return 0;
    colon = close + 1;
  } else {
    colon = strrchr(s, ':');
    if (!colon || colon == s)
      return 0;
    for (const char *p = s; p < colon; p++)
      if (!is_table_char(*p) || *p == '_')
        return 0;
  }
  const char *port = colon + 1;
  size_t n = strlen(port);
  if (n < 1 || n > 5)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (port[i] < '0' || port[i] > '9')
      return 0;
  return atoi(port) <= 65535;
}

static int valid_region(const char *s)
{
  size_t n = strlen(s);
  if (n < 1 || n > 32)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
          s[i] == '-'))
      return 0;
  return 1;
}

static int valid_token(const char *s)
{
  for (; *s; s++)
    if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
      return 0;
  return 1;
}

static int valid_printable(const char *s)
{
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || *s == 0x7f)
      return 0;
  return 1;
}

/* ", got "text"", or " (value not shown)" for a secret. */
static const char *got(const struct kcld_config_key *k, const char *text,
                       char *buf, size_t n)
{
  char q[96];
  if (k->flags & F_SECRET)
    snprintf(buf, n, " (value not shown)");
  else if (!text || !*text)
    snprintf(buf, n, ", got an empty value");
  else
    snprintf(buf, n, ", got %s", kcld_config_value_quote(text, q, sizeof(q)));
  return buf;
}

/* Checks a string value against the key's rule; returns 0 or -1 with the
 * message in why. */
static int check_string(const struct kcld_config_key *k, const char *s,
                        char *why, size_t n)
{
  char g[128];
  if ((k->flags & F_REQUIRED) && !*s) {
    snprintf(why, n, "must not be empty");
    return -1;
  }
  switch (k->check) {
  case C_NONE:
    return 0;
  case C_NONEMPTY:
  case C_PRINTABLE:
    if (valid_printable(s))
      return 0;
    snprintf(why, n, "must not contain control characters%s",
             got(k, s, g, sizeof(g)));
    return -1;
  case C_URL:
    if (kcld_config_value_has_userinfo(s)) {
      snprintf(why, n,
               "must not contain credentials (a user or password before "
               "\"@\"); AWS credentials come from the credentials section "
               "or the AWS SDK chain (value not shown)");
      return -1;
    }
    if (!*s || valid_url(s))
      return 0;
    snprintf(why, n, "must be an http:// or https:// URL, or \"\"%s",
             got(k, s, g, sizeof(g)));
    return -1;
  case C_S3: {
    struct kcld_s3_uri uri;
    const char *bad;
    if (!*s || kcld_s3_uri_parse(s, &uri, &bad) == 0)
      return 0;
    snprintf(why, n, "must be s3://BUCKET[/PREFIX]: %s", bad);
    return -1;
  }
  case C_HOSTPORT:
    if (!*s || valid_hostport(s))
      return 0;
    snprintf(why, n,
             "must be host:port such as 127.0.0.1:9464 or [::1]:9464, or "
             "\"\" to disable%s",
             got(k, s, g, sizeof(g)));
    return -1;
  case C_TABLE:
    if (!*s || valid_name(s, 3, 255))
      return 0;
    snprintf(why, n,
             "must be a DynamoDB table name (3..255 characters of a-z A-Z "
             "0-9 _ . -)%s",
             got(k, s, g, sizeof(g)));
    return -1;
  case C_STREAM:
    if (valid_name(s, 1, 128) ||
        (strncmp(s, "arn:", 4) == 0 && strstr(s, ":kinesis:") &&
         strstr(s, ":stream/") && valid_token(s)))
      return 0;
    snprintf(why, n,
             "must be a stream name (1..128 characters of a-z A-Z 0-9 _ . -) "
             "or a stream ARN%s",
             got(k, s, g, sizeof(g)));
    return -1;
  case C_REGION:
    if (!*s || valid_region(s))
      return 0;
    snprintf(why, n, "must be a region name such as us-east-1%s",
             got(k, s, g, sizeof(g)));
    return -1;
  case C_TOKEN:
    if (valid_token(s))
      return 0;
    snprintf(why, n, "must be printable ASCII without spaces%s",
             got(k, s, g, sizeof(g)));
    return -1;
  case C_FILE:
    if (!*s || access(s, R_OK) == 0)
      return 0;
    snprintf(why, n, "cannot read %s: %s",
             kcld_config_value_quote(s, g, sizeof(g)), strerror(errno));
    return -1;
  }
  return 0;
}

/* A template: text with ${field} references, each closed and non-empty. */
static int check_template(const char *s, char *why, size_t n)
{
  for (const char *p = s; (p = strstr(p, "${")) != NULL;) {
    const char *close = strchr(p + 2, '}');
    if (!close) {
      snprintf(why, n, "\"${\" at character %d is not closed by \"}\"",
               (int)(p - s) + 1);
      return -1;
    }
    if (close == p + 2) {
      snprintf(why, n, "empty \"${}\" at character %d", (int)(p - s) + 1);
      return -1;
    }
    p = close + 1;
  }
  return 0;
}

/* ======== ${ENV} expansion ======== */

static int valid_var(const char *s, size_t n)
{
  if (n == 0 || (s[0] >= '0' && s[0] <= '9'))
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
          (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
      return 0;
  return 1;
}

int kcld_config_value_expand(const char *in, char **out,
                             struct kcld_config_expand_err *e)
{
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  int rc = 0;
  if (!f)
    return KCLD_ENOMEM;
  for (size_t i = 0; in[i];) {
    if (in[i] != '$' || (in[i + 1] != '$' && in[i + 1] != '{')) {
      fputc(in[i++], f);
      continue;
    }
    if (in[i + 1] == '$') {
      fputc('$', f);
      i += 2;
      continue;
    }
    const char *body = in + i + 2, *close = strchr(body, '}');
    e->off = i;
    if (!close) {
      e->len = 2;
      snprintf(e->why, sizeof(e->why),
               "\"${\" is not closed by \"}\" (write \"$$\" for a literal "
               "\"$\")");
      rc = KCLD_EINVAL;
      break;
    }
    const char *inner = memmem(body, (size_t)(close - body), "${", 2);
    if (inner) {
      e->off = (size_t)(inner - in);
      e->len = (size_t)(close - inner) + 1; /* "${Y}": where, in the file */
      snprintf(e->why, sizeof(e->why),
               "\"${\" inside \"${...}\" is not allowed: a variable's name "
               "and default are plain text");
      rc = KCLD_EINVAL;
      break;
    }
    const char *dflt = memmem(body, (size_t)(close - body), ":-", 2);
    size_t nlen = (size_t)((dflt ? dflt : close) - body);
    e->len = 2 + nlen;
    if (!valid_var(body, nlen) || nlen >= 128) {
      char q[96], tmp[80];
      snprintf(tmp, sizeof(tmp), "%.*s", (int)(close - body), body);
      snprintf(e->why, sizeof(e->why),
               "%s is not a valid environment variable name",
               kcld_config_value_quote(tmp, q, sizeof(q)));
      rc = KCLD_EINVAL;
      break;
    }
    char name[128];
    snprintf(name, sizeof(name), "%.*s", (int)nlen, body);
    const char *val = getenv(name);
    if ((!val || !*val) && dflt) {
      fwrite(dflt + 2, 1, (size_t)(close - dflt - 2), f);
    } else if (!val) {
      snprintf(e->why, sizeof(e->why),
               "environment variable %s is not set (give a default with "
               "${%s:-value})",
               name, name);
      rc = KCLD_EINVAL;
      break;
    } else {
      fputs(val, f);
    }
    i = (size_t)(close - in) + 1;
  }
  if (fclose(f) != 0 && rc == 0)
    rc = KCLD_ENOMEM;
  if (rc != 0) {
    kcld_config_value_wipe(buf);
    return rc;
  }
  *out = buf;
  return 0;
}

/* ======== Storing values ======== */

const char *kcld_config_value_type(const struct kcld_config_key *k)
{
  switch (k->type) {
  case K_STR:
  case K_TMPL:
    return "a string";
  case K_INT:
    return "an integer";
  case K_BOOL:
    return "true or false";
  case K_DUR:
    return "a duration";
  case K_SIZE:
    return "a size";
  case K_ENUM:
    return "one of its values";
  case K_LIST:
    return "a list of strings or a string";
  case K_TIME:
    return "a time";
  case K_STREAMS:
    return "a list of streams";
  case K_FILTER:
    return "a list of filter patterns";
  }
  return "a value";
}

static void join_values(const char *const *v, char *buf, size_t n)
{
  size_t o = 0;
  buf[0] = '\0';
  for (size_t i = 0; v[i] && o < n; i++)
    o += (size_t)snprintf(buf + o, n - o, "%s%s", i ? ", " : "", v[i]);
}

int kcld_config_value_set(char **dst, const char *s)
{
  char *copy = strdup(s);
  if (!copy)
    return KCLD_ENOMEM;
  kcld_config_value_wipe(*dst);
  *dst = copy;
  return 0;
}

static int range_ok(const struct kcld_config_key *k, int64_t v)
{
  if ((k->flags & F_MINUS1) && v == -1)
    return 1;
  return v >= k->min && v <= k->max;
}

void kcld_config_value_range(const struct kcld_config_key *k, char *buf,
                             size_t n)
{
  char a[32], b[32];
  if (k->type == K_DUR) {
    kcld_config_format_duration(k->min, a, sizeof(a));
    kcld_config_format_duration(k->max, b, sizeof(b));
  } else if (k->type == K_SIZE) {
    kcld_config_format_size(k->min, a, sizeof(a));
    kcld_config_format_size(k->max, b, sizeof(b));
  } else {
    snprintf(a, sizeof(a), "%lld", (long long)k->min);
    snprintf(b, sizeof(b), "%lld", (long long)k->max);
  }
  snprintf(buf, n, "%s%s..%s", (k->flags & F_MINUS1) ? "-1 or " : "",
           a, b);
}

int kcld_config_value_filter_error(const struct kcld_filter_error *e,
                                   int in_text, char *why, size_t n)
{
  char at[64] = "";
  if (in_text && e->line > 0)
    snprintf(at, sizeof(at), " (line %d, column %d of the pattern)",
             e->line, e->col);
  snprintf(why, n, "%s%s%s%s", e->path, e->path[0] ? ": " : "", e->msg, at);
  return KCLD_EINVAL;
}

/* One filter pattern text (a pattern, {"Pattern": ...} or {"Filters":
 * [...]}), checked by compiling it, as the whole list; "" = no filter. */
static int store_filter_text(const char *s, struct kcld_config_list *l,
                             char *why, size_t n)
{
  struct kcld_filter *f = NULL;
  struct kcld_filter_error e;
  char **items = NULL;
  int rc = KCLD_ENOMEM;

  if (*s) {
    if ((f = kcld_filter_new()) == NULL)
      goto done;
    rc = kcld_filter_add_text(f, s, strlen(s), &e);
    if (rc == KCLD_ECONFIG)
      rc = kcld_config_value_filter_error(&e, 1, why, n);
    if (rc != 0)
      goto done;
    rc = KCLD_ENOMEM;
  }
  if ((items = calloc(2, sizeof(char *))) == NULL ||
      (*s && (items[0] = strdup(s)) == NULL))
    goto done;
  kcld_config_value_list_free(l);
  l->items = items;
  l->len = *s ? 1 : 0;
  items = NULL;
  rc = 0;
done:
  if (items)
    free(items[0]);
  free(items);
  kcld_filter_free(f);
  return rc;
}

/* Splits s on runs of spaces and tabs into the list (KCL executableName). */
static int split_words(const char *s, struct kcld_config_list *l)
{
  size_t n = 0;
  char **items;
  for (const char *p = s; *p;) {
    while (*p == ' ' || *p == '\t')
      p++;
    if (!*p)
      break;
    n++;
    while (*p && *p != ' ' && *p != '\t')
      p++;
  }
  items = calloc(n + 1, sizeof(char *));
  if (!items)
    return KCLD_ENOMEM;
  n = 0;
  for (const char *p = s; *p;) {
    while (*p == ' ' || *p == '\t')
      p++;
    if (!*p)
      break;
    const char *w = p;
    while (*p && *p != ' ' && *p != '\t')
      p++;
    items[n] = strndup(w, (size_t)(p - w));
    if (!items[n]) {
      struct kcld_config_list tmp = {items, n};
      kcld_config_value_list_free(&tmp);
      return KCLD_ENOMEM;
    }
    n++;
  }
  kcld_config_value_list_free(l);
  l->items = items;
  l->len = n;
  return 0;
}

/* Stores v (an int for K_INT, else an int64_t) when it is in k's range;
 * `text` is what it was read from, for the message. */
static int store_number(const struct kcld_config_key *k, void *f, int64_t v,
                        const char *text, char *why, size_t n)
{
  char r[96];
  if (!range_ok(k, v)) {
    kcld_config_value_range(k, r, sizeof(r));
    snprintf(why, n, "must be %s, got %s", r, text);
    return KCLD_EINVAL;
  }
  if (k->type == K_INT)
    *(int *)f = (int)v;
  else
    *(int64_t *)f = v;
  return 0;
}

int kcld_config_value_store(const struct kcld_config_key *k,
                            struct kcld_config *cfg, const char *text,
                            char *why, size_t n)
{
  void *f = kcld_config_key_field(cfg, k);
  char g[128], r[96];
  int64_t v;
  if (!text && k->type != K_STR && k->type != K_LIST &&
      k->type != K_STREAMS && k->type != K_FILTER) {
    if (k->type == K_ENUM) {
      join_values(k->values, r, sizeof(r));
      snprintf(why, n, "must be one of %s, got an empty value", r);
    } else {
      snprintf(why, n, "must be %s, got an empty value",
               kcld_config_value_type(k));
    }
    return KCLD_EINVAL;
  }
  switch (k->type) {
  case K_STR:
    if (!text)
      text = "";
    if (check_string(k, text, why, n) != 0)
      return KCLD_EINVAL;
    return kcld_config_value_set(f, text);
  case K_TMPL:
    if (check_template(text, why, n) != 0)
      return KCLD_EINVAL;
    return kcld_config_value_set(f, text);
  case K_LIST:
    return split_words(text ? text : "", f);
  case K_STREAMS:
    /* Only the empty list comes as text (the default, or an empty
     * value); items are mappings, parsed by config.c. */
    if (text && *text && strcmp(text, "[]") != 0) {
      snprintf(why, n, "must be a list of streams (mappings with name: or "
               "arn:)%s", got(k, text, g, sizeof(g)));
      return KCLD_EINVAL;
    }
    kcld_config_value_streams_free(f);
    return 0;
  case K_FILTER:
    return store_filter_text(text ? text : "", f, why, n);
  case K_INT: {
    char *end;
    errno = 0;
    long long ll = strtoll(text, &end, 10);
    if (!*text || *end || errno ||
        ((text[0] < '0' || text[0] > '9') && text[0] != '-')) {
      snprintf(why, n, "must be an integer%s", got(k, text, g, sizeof(g)));
      return KCLD_EINVAL;
    }
    return store_number(k, f, ll, text, why, n);
  }
  case K_BOOL: {
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    for (int i = 0; i < 3; i++) {
      if (strcasecmp(text, yes[i]) == 0) {
        *(bool *)f = true;
        return 0;
      }
      if (strcasecmp(text, no[i]) == 0) {
        *(bool *)f = false;
        return 0;
      }
    }
    snprintf(why, n, "must be true or false%s", got(k, text, g, sizeof(g)));
    return KCLD_EINVAL;
  }
  case K_DUR:
    if ((k->flags & F_EMPTY) && !*text) {
      *(int64_t *)f = 0;
      return 0;
    }
    if ((k->flags & F_MINUS1) && strcmp(text, "-1") == 0) {
      v = -1;
    } else if (kcld_config_parse_duration(text, &v) != 0) {
      snprintf(why, n,
               "must be a duration such as 250ms, 10s, 5m, 1h or 7d%s%s",
               (k->flags & F_MINUS1) ? ", or -1" : "",
               got(k, text, g, sizeof(g)));
      return KCLD_EINVAL;
    }
    return store_number(k, f, v, text, why, n);
  case K_SIZE:
    if (kcld_config_parse_size(text, &v) != 0) {
      snprintf(why, n,
               "must be a size such as 100B, 512KiB, 8MiB, 1GiB or 10MB%s",
               got(k, text, g, sizeof(g)));
      return KCLD_EINVAL;
    }
    return store_number(k, f, v, text, why, n);
  case K_ENUM: {
    const char *hint = NULL;
    for (int i = 0; k->values[i]; i++) {
      if (strcmp(text, k->values[i]) == 0) {
        *(int *)f = i;
        return 0;
      }
      if (strcasecmp(text, k->values[i]) == 0 ||
          kcld_config_value_distance(text, k->values[i]) <=
            kcld_config_value_close_enough(strlen(text)))
        if (!hint)
          hint = k->values[i];
    }
    join_values(k->values, r, sizeof(r));
    if (hint)
      snprintf(why, n, "must be one of %s%s (did you mean %s?)", r,
               got(k, text, g, sizeof(g)), hint);
    else
      snprintf(why, n, "must be one of %s%s", r, got(k, text, g, sizeof(g)));
    return KCLD_EINVAL;
  }
  case K_TIME:
    if (!*text) {
      *(int64_t *)f = -1;
      return 0;
    }
    if (parse_time(text, &v) != 0) {
      snprintf(why, n,
               "must be an RFC 3339 time such as 2024-05-01T12:00:00Z, or "
               "epoch seconds%s",
               got(k, text, g, sizeof(g)));
      return KCLD_EINVAL;
    }
    *(int64_t *)f = v;
    return 0;
  }
  return KCLD_EINVAL;
}

/* Expands a scalar's environment references; on error reports it at the
 * reference's position.  Returns 0 with *out (malloc'd), KCLD_EINVAL
 * (reported) or KCLD_ENOMEM. */

/* Whether two streams: items override the same keys with the same values:
 * own_a (NULL = none) of a config under top-level `a`, own_b of `b`.  A
 * key one item does not override equals its top-level value. */
static int same_overrides(const struct kcld_config *a,
                          const struct kcld_config *own_a,
                          const struct kcld_config *b,
                          const struct kcld_config *own_b)
{
  const struct kcld_config *ea = own_a ? own_a : a, *eb = own_b ? own_b : b;
  if (!own_a && !own_b)
    return 1;
  for (size_t i = 0; i < kcld_config_nkeys; i++) {
    const struct kcld_config_key *k = &kcld_config_keys[i];
    size_t n = strcspn(k->name, ".");
    int over = 0;
    for (size_t j = 0; kcld_config_stream_overrides[j]; j++)
      over |= strlen(kcld_config_stream_overrides[j]) == n &&
              strncmp(k->name, kcld_config_stream_overrides[j], n) == 0;
    if (over && !kcld_config_value_equal(k, ea, eb) &&
        !(kcld_config_value_equal(k, ea, a) &&
          kcld_config_value_equal(k, eb, b)))
      return 0;
  }
  return 1;
}

int kcld_config_value_equal(const struct kcld_config_key *k,
                            const struct kcld_config *a,
                            const struct kcld_config *b)
{
  const void *x = kcld_config_key_cfield(a, k);
  const void *y = kcld_config_key_cfield(b, k);
  switch (k->type) {
  case K_STR:
  case K_TMPL:
    return strcmp(*(char *const *)x, *(char *const *)y) == 0;
  case K_INT:
  case K_ENUM:
    return *(const int *)x == *(const int *)y;
  case K_BOOL:
    return *(const bool *)x == *(const bool *)y;
  case K_DUR:
  case K_SIZE:
  case K_TIME:
    return *(const int64_t *)x == *(const int64_t *)y;
  case K_STREAMS: {
    const struct kcld_config_streams *l = x, *m = y;
    if (l->len != m->len)
      return 0;
    for (size_t i = 0; i < l->len; i++)
      if (strcmp(l->v[i].stream, m->v[i].stream) != 0 ||
          l->v[i].starting_position != m->v[i].starting_position ||
          l->v[i].starting_timestamp_ms != m->v[i].starting_timestamp_ms ||
          !same_overrides(a, l->v[i].cfg, b, m->v[i].cfg))
        return 0;
    return 1;
  }
  case K_LIST:
  case K_FILTER: {
    const struct kcld_config_list *l = x, *m = y;
    if (l->len != m->len)
      return 0;
    for (size_t i = 0; i < l->len; i++)
      if (strcmp(l->items[i], m->items[i]) != 0)
        return 0;
    return 1;
  }
  }
  return 0;
}

int kcld_config_key_default(const char *name, int64_t *out)
{
  struct kcld_config scratch;
  char why[256];
  int i = name ? kcld_config_key_index(name) : -1;
  const struct kcld_config_key *k = i >= 0 ? &kcld_config_keys[i] : NULL;
  const void *field;

  if (!k || !k->def || !*k->def ||
      (k->type != K_INT && k->type != K_ENUM && k->type != K_BOOL &&
       k->type != K_DUR && k->type != K_SIZE))
    return KCLD_ENOTFOUND;
  memset(&scratch, 0, sizeof(scratch));
  if (kcld_config_value_store(k, &scratch, k->def, why, sizeof(why)) != 0)
    return KCLD_ENOTFOUND; /* a bad table row; test_config catches it */
  field = kcld_config_key_field(&scratch, k);
  if (k->type == K_BOOL)
    *out = *(const bool *)field;
  else if (k->type == K_INT || k->type == K_ENUM)
    *out = *(const int *)field;
  else
    *out = *(const int64_t *)field;
  return 0;
}
