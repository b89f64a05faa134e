/* properties.c — KCL .properties files: Java properties syntax, then each
 * KCL key mapped to a kcld setting (config.h's kcld_config_from_settings
 * does the checking, so errors read like the YAML loader's). */
#include "properties.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "base/buf.h"
#include "base/hex.h"
#include "base/utf8.h"
#include "err.h"
#include "log.h"

struct entry {
  char *key;
  char *value;
  size_t line;
};

struct kcld_properties {
  struct entry *e;
  size_t n, cap;
};

/* ======== Java properties syntax ======== */

static int put_utf8(struct kcld_buf *b, unsigned cp)
{
  char u[4];
  return kcld_buf_add(b, u, (size_t)(kcld_utf8_put(u, cp) - u));
}

static int is_blank(char c)
{
  return c == ' ' || c == '\t' || c == '\f';
}

/* Unescapes s[0..n-1] into b.  A malformed \u escape keeps its text. */
static int unescape(struct kcld_buf *b, const char *s, size_t n)
{
  unsigned hi = 0; /* a pending high surrogate */
  if (kcld_buf_add(b, "", 0) != 0)
    return -1;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c != '\\' || i + 1 == n) {
      if (kcld_buf_add(b, &c, 1) != 0)
        return -1;
      continue;
    }
    c = s[++i];
    if (c == 'u') {
      long v = i + 4 < n ? kcld_hex_parse(s + i + 1, 4) : -1;
      unsigned cp = (unsigned)v;
      if (v < 0) {
        if (kcld_buf_add(b, "\\u", 2) != 0)
          return -1;
        continue;
      }
      i += 4;
      if (cp >= 0xd800 && cp < 0xdc00) {
        hi = cp;
        continue;
      }
      if (cp >= 0xdc00 && cp < 0xe000 && hi) {
        cp = 0x10000 + ((hi - 0xd800) << 10) + (cp - 0xdc00);
      }
      hi = 0;
      if (put_utf8(b, cp) != 0)
        return -1;
      continue;
    }
    char out = c == 't' ? '\t' : c == 'n' ? '\n' : c == 'r' ? '\r'
             : c == 'f' ? '\f' : c;
    if (kcld_buf_add(b, &out, 1) != 0)
      return -1;
  }
  return 0;
}

static struct entry *find(const struct kcld_properties *p, const char *key)
{
  for (size_t i = 0; i < p->n; i++)
    if (strcmp(p->e[i].key, key) == 0)
      return &p->e[i];
  return NULL;
}

static void wipe_free(char *s)
{
  if (s) {
    OPENSSL_cleanse(s, strlen(s));
    free(s);
  }
}

/* Takes key and value (malloc'd). */
static int add(struct kcld_properties *p, char *key, char *value, size_t line)
{
  struct entry *e = find(p, key);
  if (e) {
    free(key);
    wipe_free(e->value);
    e->value = value;
    e->line = line;
    return 0;
  }
  if (p->n == p->cap) {
    size_t cap = p->cap ? 2 * p->cap : 16;
    struct entry *ne = realloc(p->e, cap * sizeof(*ne));
    if (!ne) {
      free(key);
      wipe_free(value);
      return -1;
    }
    p->e = ne;
    p->cap = cap;
  }
  p->e[p->n++] = (struct entry){key, value, line};
  return 0;
}

/* One logical line (continuations joined, escapes still in place). */
static int logical(struct kcld_properties *p, const char *s, size_t n,
                   size_t line)
{
  struct kcld_buf k = {0}, v = {0};
  size_t i = 0, ks;
  while (i < n && !(s[i] == '=' || s[i] == ':' || is_blank(s[i]))) {
    if (s[i] == '\\' && i + 1 < n)
      i++;
    i++;
  }
  ks = i;
  while (i < n && is_blank(s[i]))
    i++;
  if (i < n && (s[i] == '=' || s[i] == ':')) {
    i++;
    while (i < n && is_blank(s[i]))
      i++;
  }
  if (unescape(&k, s, ks) != 0 || unescape(&v, s + i, n - i) != 0) {
    free(k.p);
    if (v.p)
      OPENSSL_cleanse(v.p, v.len);
    free(v.p);
    return -1;
  }
  return add(p, k.p, v.p, line);
}

int kcld_properties_parse(const char *text, size_t len,
                          struct kcld_properties **out)
{
  struct kcld_properties *p = calloc(1, sizeof(*p));
  struct kcld_buf l = {0};
  size_t i = 0, line = 1;
  int rc = 0;

  *out = NULL;
  if (!p)
    return KCLD_ENOMEM;
  while (i < len && rc == 0) {
    size_t start_line = line, s;
    int first = 1, comment = 0;
    l.len = 0;
    for (;;) {
      /* Leading blanks of every natural line are dropped. */
      while (i < len && is_blank(text[i]))
        i++;
      s = i;
      while (i < len && text[i] != '\n' && text[i] != '\r')
        i++;
      size_t e = i, bs = 0;
      if (i < len) {
        if (text[i] == '\r' && i + 1 < len && text[i + 1] == '\n')
          i++;
        i++;
        line++;
      }
      if (first && (s == e || text[s] == '#' || text[s] == '!')) {
        comment = 1;
        break;
      }
      first = 0;
      while (bs < e - s && text[e - 1 - bs] == '\\')
        bs++;
      if (bs % 2 == 1) {
        if (kcld_buf_add(&l, text + s, e - s - 1) != 0)
          rc = KCLD_ENOMEM;
        if (i < len && rc == 0)
          continue;
        break;
      }
      if (kcld_buf_add(&l, text + s, e - s) != 0)
        rc = KCLD_ENOMEM;
      break;
    }
    if (!comment && rc == 0 && logical(p, l.p ? l.p : "", l.len,
                                       start_line) != 0)
      rc = KCLD_ENOMEM;
  }
  if (l.p)
    OPENSSL_cleanse(l.p, l.len);
  free(l.p);
  if (rc != 0) {
    kcld_properties_free(p);
    return rc;
  }
  *out = p;
  return 0;
}

size_t kcld_properties_count(const struct kcld_properties *p)
{
  return p->n;
}

const char *kcld_properties_get(const struct kcld_properties *p,
                                const char *key, size_t *line)
{
  const struct entry *e = find(p, key);
  if (e && line)
    *line = e->line;
  return e ? e->value : NULL;
}

void kcld_properties_entry(const struct kcld_properties *p, size_t i,
                           const char **key, const char **value,
                           size_t *line)
{
  *key = p->e[i].key;
  *value = p->e[i].value;
  *line = p->e[i].line;
}

void kcld_properties_free(struct kcld_properties *p)
{
  if (!p)
    return;
  for (size_t i = 0; i < p->n; i++) {
    free(p->e[i].key);
    wipe_free(p->e[i].value);
  }
  free(p->e);
  free(p);
}

/* ======== KCL keys → kcld settings ======== */

enum how {
  H_STR,       /* the value as is */
  H_INT,       /* an integer */
  H_MS,        /* integer milliseconds → duration */
  H_SEC,       /* integer seconds → duration */
  H_URL,       /* an endpoint; https:// added when there is no scheme */
  H_SPECIAL,   /* handled in map_special() */
  H_IGNORE     /* no meaning in kcld: logged with the reason */
};

struct mapping {
  const char *kcl;
  enum how how;
  const char *kcld;   /* the kcld key, or for H_IGNORE the reason */
};

static const struct mapping s_map[] = {
  {"executableName", H_SPECIAL, "handler.command"},
  {"streamName", H_SPECIAL, "stream"},
  {"streamArn", H_SPECIAL, "stream"},
  {"applicationName", H_STR, "application"},
  {"tableName", H_STR, "lease.table"},
  {"leaseTableName", H_STR, "lease.table"},
  {"workerId", H_STR, "worker_id"},
  {"regionName", H_STR, "region"},
  {"kinesisEndpoint", H_URL, "endpoints.kinesis"},
  {"dynamoDBEndpoint", H_URL, "endpoints.dynamodb"},
  {"initialPositionInStream", H_SPECIAL, "starting_position"},
  {"initialPositionInStreamExtended", H_SPECIAL, "starting_timestamp"},
  {"retrievalMode", H_SPECIAL, "fetch.mode"},
  {"maxRecords", H_INT, "fetch.max_records"},
  {"idleTimeBetweenReadsInMillis", H_MS, "fetch.idle_time"},
  {"failoverTimeMillis", H_MS, "lease.failover_time"},
  {"shardSyncIntervalMillis", H_MS, "lease.shard_sync_interval"},
  {"maxLeasesForWorker", H_SPECIAL, "lease.max_leases"},
  {"maxLeasesToStealAtOneTime", H_INT, "lease.max_steal"},
  {"timeoutInSeconds", H_SEC, "handler.timeout"},
  {"shutdownGraceMillis", H_MS, "shutdown_timeout"},
  {"taskBackoffTimeMillis", H_MS, "retry.backoff_base"},
  {"AWSCredentialsProvider", H_SPECIAL, "credentials.profile"},
  {"cleanupLeasesUponShardCompletion", H_SPECIAL, "lease.cleanup_delay"},

  {"parentShardPollIntervalMillis", H_IGNORE,
   "kcld polls for finished parent shards every 2s; not configurable"},
  {"processingLanguage", H_IGNORE,
   "informational in the KCL; kcld runs executableName whatever its "
   "language"},
  {"AWSCredentialsProviderDynamoDB", H_IGNORE,
   "kcld uses one set of credentials for every service "
   "(AWSCredentialsProvider)"},
  {"AWSCredentialsProviderCloudWatch", H_IGNORE,
   "kcld does not call CloudWatch"},
  {"cloudWatchEndpoint", H_IGNORE, "kcld does not call CloudWatch"},
  {"metricsLevel", H_IGNORE,
   "kcld does not publish to CloudWatch; see metrics.listen and "
   "metrics.emf"},
  {"metricsEnabledDimensions", H_IGNORE,
   "kcld does not publish to CloudWatch; see metrics.listen and "
   "metrics.emf"},
  {"metricsBufferTimeMillis", H_IGNORE, "kcld does not publish to "
   "CloudWatch; see metrics.listen and metrics.emf"},
  {"metricsMaxQueueSize", H_IGNORE, "kcld does not publish to CloudWatch; "
   "see metrics.listen and metrics.emf"},
  {"callProcessRecordsEvenForEmptyRecordList", H_IGNORE,
   "kcld never sends an empty processRecords"},
  {"validateSequenceNumberBeforeCheckpointing", H_IGNORE,
   "kcld always checks a checkpoint against the records delivered"},
  {"maxGetRecordsThreadPool", H_IGNORE,
   "kcld fetches on its event loop, without a thread pool"},
  {"retryGetRecordsInSeconds", H_IGNORE,
   "kcld retries GetRecords with its own backoff"},
  {"listShardsBackoffTimeInMillis", H_IGNORE,
   "kcld retries ListShards with the SDK standard retry mode "
   "(http.max_attempts)"},
  {"maxListShardsRetryAttempts", H_IGNORE,
   "kcld retries ListShards with the SDK standard retry mode "
   "(http.max_attempts)"},
  {"initialLeaseTableReadCapacity", H_IGNORE,
   "kcld does not choose the lease table's capacity"},
  {"initialLeaseTableWriteCapacity", H_IGNORE,
   "kcld does not choose the lease table's capacity"},
  {"billingMode", H_IGNORE,
   "kcld does not choose the lease table's capacity"},
  {"skipShardSyncAtStartupIfLeasesExist", H_IGNORE,
   "kcld syncs shards every lease.shard_sync_interval"},
  {"shardSyncStrategyType", H_IGNORE,
   "kcld syncs shards every lease.shard_sync_interval"},
  {"userAgent", H_IGNORE, "kcld sends its own User-Agent"},
  {"kinesisClientConfig", H_IGNORE, "Java SDK client settings"},
  {"dynamoDBClientConfig", H_IGNORE, "Java SDK client settings"},
  {"cloudWatchClientConfig", H_IGNORE, "Java SDK client settings"},
  {"shardPrioritization", H_IGNORE,
   "kcld takes leases in the coordinator's order"},
};

#define NMAP (sizeof(s_map) / sizeof(s_map[0]))

struct build {
  struct kcld_config_setting *s;
  char **owned;         /* values and labels this module allocated */
  size_t n, cap, nowned, capowned;
  int oom;
};

static char *own(struct build *b, char *s)
{
  if (!s) {
    b->oom = 1;
    return NULL;
  }
  if (b->nowned == b->capowned) {
    size_t cap = b->capowned ? 2 * b->capowned : 32;
    char **no = realloc(b->owned, cap * sizeof(*no));
    if (!no) {
      free(s);
      b->oom = 1;
      return NULL;
    }
    b->owned = no;
    b->capowned = cap;
  }
  b->owned[b->nowned++] = s;
  return s;
}

static void set(struct build *b, const char *key, const char *value,
                const char *kcl, size_t line)
{
  char *label = NULL;
  if (b->oom)
    return;
  if (b->n == b->cap) {
    size_t cap = b->cap ? 2 * b->cap : 32;
    struct kcld_config_setting *ns = realloc(b->s, cap * sizeof(*ns));
    if (!ns) {
      b->oom = 1;
      return;
    }
    b->s = ns;
    b->cap = cap;
  }
  if (kcl && asprintf(&label, "%s (%s)", kcl, key) < 0)
    label = NULL, b->oom = 1;
  if (kcl && !own(b, label))
    return;
  b->s[b->n++] = (struct kcld_config_setting){key, value, label, line};
}

static int all_digits(const char *s)
{
  if (*s == '-')
    s++;
  if (!*s)
    return 0;
  for (; *s; s++)
    if (*s < '0' || *s > '9')
      return 0;
  return 1;
}

/* "<digits><unit>" when v is an integer, else v (which then fails the
 * duration check with the key named). */
static const char *with_unit(struct build *b, const char *v, const char *unit)
{
  char *s = NULL;
  if (!all_digits(v))
    return v;
  if (strcmp(v, "0") == 0)
    return "0";
  if (asprintf(&s, "%s%s", v, unit) < 0)
    s = NULL;
  return own(b, s);
}

static void ignored(const char *kcl, size_t line, const char *why)
{
  kcld_log(KCLD_LOG_WARN, "properties: key ignored", "key", kcl,
           KCLD_LOG_UINT("line", line), "reason", why, NULL);
}

static int starts(const char *s, const char *prefix)
{
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

static void map_credentials(struct build *b, const char *v, size_t line)
{
  const char *bar = strchr(v, '|');
  size_t n = bar ? (size_t)(bar - v) : strlen(v);
  char cls[128];
  snprintf(cls, sizeof(cls), "%.*s", (int)(n < 127 ? n : 127), v);
  if (strstr(cls, "ProfileCredentialsProvider")) {
    if (bar && bar[1])
      set(b, "credentials.profile", bar + 1, "AWSCredentialsProvider", line);
    return;
  }
  if (strstr(cls, "DefaultCredentialsProvider") ||
      strstr(cls, "DefaultAWSCredentialsProviderChain") || !*cls)
    return; /* kcld's default chain is the same idea */
  if (strstr(cls, "EnvironmentVariable") || strstr(cls, "InstanceProfile") ||
      strstr(cls, "ContainerCredentials") || strstr(cls, "EC2Container") ||
      strstr(cls, "SystemProperty")) {
    ignored("AWSCredentialsProvider", line,
            "kcld's provider chain (environment, shared files, container, "
            "instance metadata) covers it");
    return;
  }
  ignored("AWSCredentialsProvider", line,
          "provider class not supported; kcld uses its provider chain "
          "(environment, shared files, container, instance metadata) or "
          "kcld.credentials.* keys");
}

static void map_special(struct build *b, const struct kcld_properties *p,
                        const struct mapping *m, const char *v, size_t line)
{
  const char *kcl = m->kcl;
  if (strcmp(kcl, "executableName") == 0) {
    set(b, "handler.type", "multilang", kcl, line);
    set(b, "handler.command", v, kcl, line);
  } else if (strcmp(kcl, "streamName") == 0) {
    const char *arn = kcld_properties_get(p, "streamArn", NULL);
    if (arn && *arn)
      ignored(kcl, line, "streamArn is set and takes precedence");
    else
      set(b, "stream", v, kcl, line);
  } else if (strcmp(kcl, "streamArn") == 0) {
    if (*v)
      set(b, "stream", v, kcl, line);
  } else if (strcmp(kcl, "initialPositionInStream") == 0) {
    set(b, "starting_position", v, kcl, line);
  } else if (strcmp(kcl, "initialPositionInStreamExtended") == 0) {
    /* A timestamp (epoch milliseconds, epoch seconds with a fraction, or
     * RFC 3339) to start a fresh shard at: AT_TIMESTAMP. */
    const char *ts = v;
    if (all_digits(v) && strlen(v) >= 12) {
      char *s = NULL;
      size_t n = strlen(v);
      if (asprintf(&s, "%.*s.%s", (int)(n - 3), v, v + n - 3) < 0)
        s = NULL;
      ts = own(b, s);
      if (!ts)
        return;
    }
    set(b, "starting_position", "AT_TIMESTAMP", kcl, line);
    set(b, "starting_timestamp", ts, kcl, line);
  } else if (strcmp(kcl, "maxLeasesForWorker") == 0) {
    /* The KCL's default is Integer.MAX_VALUE: no cap. */
    long long n = all_digits(v) ? strtoll(v, NULL, 10) : 0;
    set(b, "lease.max_leases", all_digits(v) && n > 100000 ? "0" : v, kcl,
        line);
  } else if (strcmp(kcl, "retrievalMode") == 0) {
    /* FANOUT / POLLING; anything else is refused by fetch.mode. */
    if (strcasecmp(v, "FANOUT") == 0)
      v = "fanout";
    else if (strcasecmp(v, "POLLING") == 0)
      v = "polling";
    set(b, "fetch.mode", v, kcl, line);
  } else if (strcmp(kcl, "AWSCredentialsProvider") == 0) {
    map_credentials(b, v, line);
  } else if (strcmp(kcl, "cleanupLeasesUponShardCompletion") == 0) {
    if (strcasecmp(v, "true") != 0)
      ignored(kcl, line, "kcld always deletes the leases of finished "
              "shards, after lease.cleanup_delay (set kcld.lease."
              "cleanup_delay to keep them longer)");
  }
}

static char *trimmed(const char *v)
{
  size_t n = strlen(v);
  while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t' ||
                   v[n - 1] == '\f'))
    n--;
  return strndup(v, n);
}

int kcld_properties_to_config(const struct kcld_properties *p,
                              const char *name, struct kcld_config **out,
                              char **errors)
{
  struct build b;
  int rc;

  memset(&b, 0, sizeof(b));
  *out = NULL;
  if (errors)
    *errors = NULL;
  /* KCL keys first, kcld.* keys last so that they win. */
  for (int pass = 0; pass < 2; pass++) {
    for (size_t i = 0; i < p->n && !b.oom; i++) {
      const struct entry *e = &p->e[i];
      int direct = starts(e->key, "kcld.");
      if (direct != pass)
        continue;
      const char *v = own(&b, trimmed(e->value));
      if (!v)
        break;
      if (direct) {
        set(&b, e->key + 5, v, NULL, e->line);
        continue;
      }
      const struct mapping *m = NULL;
      for (size_t k = 0; k < NMAP; k++)
        if (strcmp(s_map[k].kcl, e->key) == 0)
          m = &s_map[k];
      if (!m) {
        ignored(e->key, e->line, "not a KCL MultiLangDaemon key kcld knows");
        continue;
      }
      switch (m->how) {
      case H_STR:
      case H_INT:
        set(&b, m->kcld, v, m->kcl, e->line);
        break;
      case H_MS:
        set(&b, m->kcld, with_unit(&b, v, "ms"), m->kcl, e->line);
        break;
      case H_SEC:
        set(&b, m->kcld, with_unit(&b, v, "s"), m->kcl, e->line);
        break;
      case H_URL: {
        const char *u = v;
        if (*v && !strstr(v, "://")) {
          char *s = NULL;
          if (asprintf(&s, "https://%s", v) < 0)
            s = NULL;
          u = own(&b, s);
        }
        if (u)
          set(&b, m->kcld, u, m->kcl, e->line);
        break;
      }
      case H_SPECIAL:
        map_special(&b, p, m, v, e->line);
        break;
      case H_IGNORE:
        ignored(m->kcl, e->line, m->kcld);
        break;
      }
    }
  }
  if (b.oom)
    rc = KCLD_ENOMEM;
  else
    rc = kcld_config_from_settings(name, b.s, b.n, out, errors);
  for (size_t i = 0; i < b.nowned; i++)
    wipe_free(b.owned[i]);
  free(b.owned);
  free(b.s);
  return rc;
}

int kcld_properties_load(const char *path, struct kcld_config **out,
                         char **errors)
{
  FILE *f = fopen(path, "rb");
  struct kcld_properties *p = NULL;
  char *buf = NULL;
  size_t len = 0;
  int rc;

  *out = NULL;
  if (errors)
    *errors = NULL;
  if (f) {
    FILE *m = open_memstream(&buf, &len);
    char chunk[4096];
    size_t got;
    rc = m ? 0 : KCLD_ENOMEM;
    while (rc == 0 && (got = fread(chunk, 1, sizeof(chunk), f)) > 0)
      if (fwrite(chunk, 1, got, m) != got)
        rc = KCLD_ENOMEM;
    OPENSSL_cleanse(chunk, sizeof(chunk));
    if (rc == 0 && ferror(f))
      rc = KCLD_EIO;
    if (m && fclose(m) != 0 && rc == 0)
      rc = KCLD_ENOMEM;
    fclose(f);
  } else {
    rc = KCLD_EIO;
  }
  if (rc == KCLD_EIO && errors &&
      asprintf(errors, "%s: cannot read: %s\n", path, strerror(errno)) < 0)
    *errors = NULL;
  if (rc == 0)
    rc = kcld_properties_parse(buf ? buf : "", len, &p);
  if (buf)
    OPENSSL_cleanse(buf, len);
  free(buf);
  if (rc == 0)
    rc = kcld_properties_to_config(p, path, out, errors);
  kcld_properties_free(p);
  return rc;
}
