/* config.c — YAML → struct kcld_config, driven by one table of keys.
 *
 * The table below (s_keys) is the whole schema: each row names a key by its
 * dotted path, its type, the struct field it fills, its default (as YAML
 * text, parsed by the same code as the file), its range or values, flags and
 * a one-line doc.  Parsing, validation, defaults, the dump and both
 * reference texts (conf/kcld.yaml, docs/configuration.md) all walk it.
 *
 * The file is read with libyaml's document API; node marks give the line
 * and column of every key and value.  All errors are collected, sorted by
 * position and reported together (at most KCLD_CONFIG_MAX_ERRORS). */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <yaml.h>

#include "err.h"

/* ======== The key table ======== */

enum ktype {
  K_STR,      /* string, env-expanded */
  K_INT,      /* int */
  K_BOOL,     /* bool */
  K_DUR,      /* int64_t milliseconds */
  K_SIZE,     /* int64_t bytes */
  K_ENUM,     /* enum stored as int; values[i] is the name of value i */
  K_LIST,     /* struct kcld_config_list */
  K_TMPL,     /* string, a record-field template: not env-expanded */
  K_TIME      /* int64_t epoch milliseconds, -1 = not set */
};

enum kcheck {
  C_NONE,
  C_NONEMPTY,  /* any text, not empty */
  C_URL,       /* "" or http(s)://host... */
  C_HOSTPORT,  /* "" or host:port */
  C_TABLE,     /* "" or a DynamoDB table name */
  C_STREAM,    /* a stream name or ARN */
  C_REGION,    /* "" or a region name */
  C_TOKEN,     /* "" or printable ASCII without spaces */
  C_FILE,      /* "" or a readable file */
  C_PRINTABLE  /* no control characters */
};

#define F_REQUIRED 0x1u /* no default; the file must set it */
#define F_SECRET 0x2u   /* value never printed */
#define F_MINUS1 0x4u   /* -1 ("none") allowed besides min..max */
#define F_EMPTY 0x8u    /* "" allowed: stored as 0, meaning "not set" */

struct key {
  const char *name;          /* dotted path */
  enum ktype type;
  size_t off;                /* offsetof(struct kcld_config, field) */
  const char *def;           /* default as YAML text; NULL when required */
  int64_t min, max;          /* K_INT, K_DUR, K_SIZE */
  const char *const *values; /* K_ENUM, NULL-terminated */
  enum kcheck check;         /* K_STR */
  unsigned flags;
  const char *example;       /* F_REQUIRED: the value the reference shows */
  const char *doc;           /* one line */
};

#define OFF(f) offsetof(struct kcld_config, f)
#define SEC 1000LL
#define MIN (60 * SEC)
#define HOUR (60 * MIN)
#define DAY (24 * HOUR)
#define KIB 1024LL
#define MIB (1024 * KIB)
#define GIB (1024 * MIB)

#define STR(n, f, d, chk, fl, doc) \
  {n, K_STR, OFF(f), d, 0, 0, NULL, chk, fl, NULL, doc}
#define REQ(n, f, chk, ex, doc) \
  {n, K_STR, OFF(f), NULL, 0, 0, NULL, chk, F_REQUIRED, ex, doc}
#define INT(n, f, d, lo, hi, doc) \
  {n, K_INT, OFF(f), d, lo, hi, NULL, C_NONE, 0, NULL, doc}
#define BOOL(n, f, d, doc) \
  {n, K_BOOL, OFF(f), d, 0, 1, NULL, C_NONE, 0, NULL, doc}
#define DUR(n, f, d, lo, hi, fl, doc) \
  {n, K_DUR, OFF(f), d, lo, hi, NULL, C_NONE, fl, NULL, doc}
#define SIZE(n, f, d, lo, hi, doc) \
  {n, K_SIZE, OFF(f), d, lo, hi, NULL, C_NONE, 0, NULL, doc}
#define ENUM(n, f, d, vals, doc) \
  {n, K_ENUM, OFF(f), d, 0, 0, vals, C_NONE, 0, NULL, doc}
#define LIST(n, f, d, doc) \
  {n, K_LIST, OFF(f), d, 0, 0, NULL, C_NONE, 0, NULL, doc}
#define TMPL(n, f, d, doc) \
  {n, K_TMPL, OFF(f), d, 0, 0, NULL, C_NONE, 0, NULL, doc}
#define TIME(n, f, doc) \
  {n, K_TIME, OFF(f), "", 0, 0, NULL, C_NONE, 0, NULL, doc}

static const char *const s_positions[] = {"TRIM_HORIZON", "LATEST",
                                          "AT_TIMESTAMP", NULL};
static const char *const s_handlers[] = {"multilang", "lambda", "dynamodb",
                                         "plugin", "stdout", NULL};
static const char *const s_decodes[] = {"base64", "utf8", NULL};
static const char *const s_writes[] = {"batch", "conditional", NULL};
static const char *const s_levels[] = {"debug", "info", "warn", "error",
                                       NULL};
static const char *const s_formats[] = {"json", "text", NULL};

/* Enum fields are written through an int pointer. */
_Static_assert(sizeof(enum kcld_config_position) == sizeof(int), "enum");
_Static_assert(sizeof(enum kcld_config_handler) == sizeof(int), "enum");
_Static_assert(sizeof(enum kcld_config_decode) == sizeof(int), "enum");
_Static_assert(sizeof(enum kcld_config_write) == sizeof(int), "enum");
_Static_assert(sizeof(enum kcld_log_level) == sizeof(int), "enum");
_Static_assert(sizeof(enum kcld_log_format) == sizeof(int), "enum");
_Static_assert(KCLD_LOG_DEBUG == 0 && KCLD_LOG_INFO == 1 &&
               KCLD_LOG_WARN == 2 && KCLD_LOG_ERROR == 3, "levels");
_Static_assert(KCLD_LOG_JSON == 0 && KCLD_LOG_TEXT == 1, "formats");

/* The order of rows is the order of the reference texts; the rows of one
 * section stay together. */
static const struct key s_keys[] = {
  REQ("application", application, C_NONEMPTY, "my-application",
      "KCL applicationName: identifies the consumer group and names the "
      "lease table"),
  REQ("stream", stream, C_STREAM, "my-stream",
      "stream name or ARN"),
  STR("region", region, "", C_REGION, 0,
      "AWS region; \"\" = AWS_REGION, AWS_DEFAULT_REGION, the profile, "
      "then instance metadata"),
  STR("endpoint", endpoint, "", C_URL, 0,
      "one base URL for every service (LocalStack: http://localhost:4566); "
      "\"\" = AWS"),
  STR("worker_id", worker_id, "", C_PRINTABLE, 0,
      "lease owner name of this process; \"\" = hostname:pid"),
  ENUM("starting_position", starting_position, "TRIM_HORIZON", s_positions,
       "where a shard without a checkpoint starts"),
  TIME("starting_timestamp", starting_timestamp_ms,
       "with AT_TIMESTAMP: RFC 3339 time or epoch seconds"),
  DUR("shutdown_timeout", shutdown_timeout_ms, "30s", 0, HOUR, 0,
      "on SIGTERM, how long work in flight may take to finish"),
  INT("workers", workers, "0", 0, 1024,
      "worker pool threads for CPU-heavy work; 0 = number of CPUs"),

  STR("endpoints.kinesis", endpoints.kinesis, "", C_URL, 0,
      "Kinesis base URL; wins over endpoint and AWS_ENDPOINT_URL_KINESIS"),
  STR("endpoints.dynamodb", endpoints.dynamodb, "", C_URL, 0,
      "DynamoDB base URL; wins over endpoint and AWS_ENDPOINT_URL_DYNAMODB"),
  STR("endpoints.sqs", endpoints.sqs, "", C_URL, 0,
      "SQS base URL; wins over endpoint and AWS_ENDPOINT_URL_SQS"),

  STR("credentials.profile", credentials.profile, "", C_TOKEN, 0,
      "shared config/credentials profile; \"\" = AWS_PROFILE or default"),
  STR("credentials.access_key_id", credentials.access_key_id, "", C_TOKEN, 0,
      "explicit access key id; \"\" = the AWS SDK provider chain"),
  STR("credentials.secret_access_key", credentials.secret_access_key, "",
      C_TOKEN, F_SECRET,
      "explicit secret access key (secret: never printed)"),
  STR("credentials.session_token", credentials.session_token, "", C_TOKEN,
      F_SECRET, "session token of temporary explicit keys (secret)"),

  STR("http.ca_file", http.ca_file, "", C_FILE, 0,
      "CA bundle for TLS verification; \"\" = the system's"),
  DUR("http.connect_timeout", http.connect_timeout_ms, "5s", 100, 5 * MIN, 0,
      "connect timeout per request"),
  DUR("http.timeout", http.timeout_ms, "30s", SEC, HOUR, 0,
      "total time per request attempt"),
  INT("http.max_attempts", http.max_attempts, "3", 1, 20,
      "attempts per AWS call, the first included; SDK standard retry mode"),

  STR("lease.table", lease.table, "", C_TABLE, 0,
      "lease table name; \"\" = application"),
  DUR("lease.failover_time", lease.failover_ms, "10s", SEC, HOUR, 0,
      "KCL failoverTimeMillis: a lease not renewed this long has expired"),
  DUR("lease.take_interval", lease.take_interval_ms, "", SEC, HOUR, F_EMPTY,
      "how often to take and steal leases; \"\" = 2 x failover_time"),
  INT("lease.max_leases", lease.max_leases, "0", 0, 100000,
      "KCL maxLeasesForWorker; 0 = no cap"),
  INT("lease.max_steal", lease.max_steal, "1", 0, 1000,
      "KCL maxLeasesToStealAtOneTime; 0 = never steal"),
  DUR("lease.shard_sync_interval", lease.shard_sync_interval_ms, "60s", SEC,
      DAY, 0, "how often to list shards and add leases for new ones"),
  DUR("lease.cleanup_delay", lease.cleanup_delay_ms, "5m", 0, 7 * DAY, 0,
      "grace before the leases of finished shards are deleted"),

  INT("fetch.max_records", fetch.max_records, "10000", 1, 10000,
      "KCL maxRecords: records per GetRecords call"),
  DUR("fetch.idle_time", fetch.idle_time_ms, "1s", 200, 5 * MIN, 0,
      "KCL idleTimeBetweenReadsInMillis: wait after an empty read"),
  SIZE("fetch.max_buffered_bytes", fetch.max_buffered_bytes, "8MiB",
       64 * KIB, GIB, "prefetched record bytes held per shard"),

  DUR("checkpoint.interval", checkpoint.interval_ms, "0s", 0, HOUR, 0,
      "coalesce checkpoint writes; 0 = after every batch"),

  INT("batch.size", batch.size, "100", 1, 10000,
      "Lambda BatchSize: records per handler call"),
  DUR("batch.window", batch.window_ms, "0s", 0, 300 * SEC, 0,
      "Lambda MaximumBatchingWindowInSeconds: wait to fill a batch"),
  INT("batch.parallelization_factor", batch.parallelization_factor, "1", 1,
      10, "Lambda ParallelizationFactor: concurrent batches per shard, "
      "split by key hash"),

  INT("retry.max_retry_attempts", retry.max_retry_attempts, "3", -1, 10000,
      "Lambda MaximumRetryAttempts: retries after the first; -1 = until "
      "the record ages out"),
  BOOL("retry.bisect_on_error", retry.bisect_on_error, "true",
       "Lambda BisectBatchOnFunctionError: split a failing batch in halves"),
  DUR("retry.max_record_age", retry.max_record_age_ms, "-1", MIN, 7 * DAY,
      F_MINUS1, "Lambda MaximumRecordAgeInSeconds: older records are not "
      "retried; -1 = no limit"),
  DUR("retry.backoff_base", retry.backoff_base_ms, "100ms", 1, HOUR, 0,
      "first retry delay; doubles per retry, with jitter"),
  DUR("retry.backoff_max", retry.backoff_max_ms, "30s", 1, HOUR, 0,
      "longest retry delay"),

  STR("on_failure.sqs", on_failure.sqs, "", C_URL, 0,
      "dead-letter SQS queue URL; \"\" = none (log, count and move on)"),
  BOOL("on_failure.include_records", on_failure.include_records, "true",
       "put the failed records themselves in the dead-letter message"),
  BOOL("on_failure.block", on_failure.block, "false",
       "never skip a failing record: stop the shard and keep retrying"),

  ENUM("handler.type", handler.type, "stdout", s_handlers,
       "how records are handled"),
  LIST("handler.command", handler.command, "[]",
       "multilang, lambda: the child's argv (a list, or a string split on "
       "spaces)"),
  DUR("handler.timeout", handler.timeout_ms, "5m", SEC, DAY, 0,
      "a batch not answered within this time has failed"),
  INT("handler.concurrency", handler.concurrency, "1", 1, 1024,
      "lambda: child processes serving batches of different shards"),
  STR("handler.path", handler.path, "", C_NONE, 0,
      "stdout: output file (\"\" = standard output); plugin: the .so"),
  ENUM("handler.decode", handler.decode, "base64", s_decodes,
       "stdout: record data as base64, or as UTF-8 text"),
  STR("handler.table", handler.table, "", C_TABLE, 0,
      "dynamodb: the table items are written to"),
  TMPL("handler.key.pk", handler.key.pk, "${partitionKey}",
       "dynamodb: partition key template over record fields"),
  TMPL("handler.key.sk", handler.key.sk,
       "${sequenceNumber}#${subSequenceNumber}",
       "dynamodb: sort key template; \"\" = the table has no sort key"),
  ENUM("handler.write", handler.write, "batch", s_writes,
       "dynamodb: BatchWriteItem, or conditional PutItem"),
  DUR("handler.ttl", handler.ttl_ms, "", 0, 3650 * DAY, F_EMPTY,
      "dynamodb: ttl attribute = processing time + this; \"\" = none"),

  STR("metrics.listen", metrics.listen, "127.0.0.1:9464", C_HOSTPORT, 0,
      "host:port of /metrics and /healthz; \"\" disables"),
  STR("metrics.emf", metrics.emf, "", C_NONE, 0,
      "file for CloudWatch Embedded Metric Format lines; \"\" = none"),

  ENUM("log.level", log.level, "info", s_levels,
       "lowest level logged; each -v goes one lower"),
  ENUM("log.format", log.format, "json", s_formats,
       "json lines, or text for people"),
};

#define NKEYS (sizeof(s_keys) / sizeof(s_keys[0]))

struct section {
  const char *name;
  const char *doc;
};

static const struct section s_sections[] = {
  {"endpoints", "per-service endpoint overrides"},
  {"credentials", "explicit credentials; default: the AWS SDK chain"},
  {"http", "the HTTP client every AWS call shares"},
  {"lease", "leases in the KCL-compatible DynamoDB lease table"},
  {"fetch", "reading records from shards"},
  {"checkpoint", "checkpoint writes to the lease table"},
  {"batch", "batches handed to the handler"},
  {"retry", "failure policy: retries, bisection, record age"},
  {"on_failure", "where records that exhaust their retries go"},
  {"handler", "what handles the records"},
  {"handler.key", "dynamodb: item key templates"},
  {"metrics", "Prometheus metrics and health"},
  {"log", "logging (stderr)"},
};

#define NSECTIONS (sizeof(s_sections) / sizeof(s_sections[0]))

static int key_index(const char *name)
{
  for (size_t i = 0; i < NKEYS; i++)
    if (strcmp(s_keys[i].name, name) == 0)
      return (int)i;
  return -1;
}

static const char *section_doc(const char *name, size_t len)
{
  for (size_t i = 0; i < NSECTIONS; i++)
    if (strlen(s_sections[i].name) == len &&
        strncmp(s_sections[i].name, name, len) == 0)
      return s_sections[i].doc;
  return "";
}

/* True when `name` is a section: some key's name starts with "name.". */
static int is_section(const char *name)
{
  size_t n = strlen(name);
  for (size_t i = 0; i < NKEYS; i++)
    if (strncmp(s_keys[i].name, name, n) == 0 && s_keys[i].name[n] == '.')
      return 1;
  return 0;
}

static void *field(void *cfg, const struct key *k)
{
  return (char *)cfg + k->off;
}

static const void *cfield(const void *cfg, const struct key *k)
{
  return (const char *)cfg + k->off;
}

/* ======== Small helpers ======== */

static void free_wipe(char *s)
{
  if (s) {
    OPENSSL_cleanse(s, strlen(s));
    free(s);
  }
}

static void list_free(struct kcld_config_list *l)
{
  if (l->items)
    for (size_t i = 0; i < l->len; i++)
      free(l->items[i]);
  free(l->items);
  l->items = NULL;
  l->len = 0;
}

/* Optimal string alignment distance, for did-you-mean; large for long
 * strings. */
static size_t edit_distance(const char *a, const char *b)
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

static size_t close_enough(size_t len)
{
  return len <= 4 ? 1 : len <= 12 ? 2 : 3;
}

/* Writes `s` quoted, with control characters, quotes and backslashes
 * escaped, cut after 60 characters. */
static char *quote(const char *s, char *buf, size_t n)
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

static void format_time(int64_t ms, char *buf, size_t n)
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
static const char *got(const struct key *k, const char *text, char *buf,
                       size_t n)
{
  char q[96];
  if (k->flags & F_SECRET)
    snprintf(buf, n, " (value not shown)");
  else if (!text || !*text)
    snprintf(buf, n, ", got an empty value");
  else
    snprintf(buf, n, ", got %s", quote(text, q, sizeof(q)));
  return buf;
}

/* Checks a string value against the key's rule; returns 0 or -1 with the
 * message in why. */
static int check_string(const struct key *k, const char *s, char *why,
                        size_t n)
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
    if (!*s || valid_url(s))
      return 0;
    snprintf(why, n, "must be an http:// or https:// URL, or \"\"%s",
             got(k, s, g, sizeof(g)));
    return -1;
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
    snprintf(why, n, "cannot read %s: %s", quote(s, g, sizeof(g)),
             strerror(errno));
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

struct expand_err {
  size_t off, len;  /* the offending "${..." in the input */
  char why[512];
};

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

/* Expands ${VAR}, ${VAR:-default} (default when unset or empty) and $$ (a
 * literal $).  Returns 0 and a malloc'd *out, KCLD_EINVAL with *e filled,
 * or KCLD_ENOMEM. */
static int expand_env(const char *in, char **out, struct expand_err *e)
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
    const char *dflt = strstr(body, ":-");
    if (dflt && dflt > close)
      dflt = NULL;
    size_t nlen = (size_t)((dflt ? dflt : close) - body);
    e->len = 2 + nlen;
    if (!valid_var(body, nlen) || nlen >= 128) {
      char q[96], tmp[80];
      snprintf(tmp, sizeof(tmp), "%.*s", (int)(close - body), body);
      snprintf(e->why, sizeof(e->why),
               "%s is not a valid environment variable name",
               quote(tmp, q, sizeof(q)));
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
    free_wipe(buf);
    return rc;
  }
  *out = buf;
  return 0;
}

/* ======== The parse context and its errors ======== */

struct perr {
  size_t line, col, seq;
  char *msg;
};

struct kstate {
  int set, bad;
  size_t line, col;          /* of the value, 1-based */
  size_t key_line;           /* of the key */
};

struct ctx {
  const char *file;
  const unsigned char *src;
  size_t len;
  size_t *lines;             /* byte offset of each line's start */
  size_t nlines;
  yaml_document_t *doc;
  struct kcld_config *cfg;
  struct kstate st[NKEYS];
  struct perr *errs;
  size_t nerr, cap;
  int oom;
};

static void add_err(struct ctx *c, size_t line, size_t col, const char *key,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void add_err(struct ctx *c, size_t line, size_t col, const char *key,
                    const char *fmt, ...)
{
  char msg[1024];
  int k;
  va_list ap;
  if (c->nerr >= 1000)
    return;
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
  if (c->nerr > KCLD_CONFIG_MAX_ERRORS)
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

static const char *type_desc(const struct key *k)
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
  }
  return "a value";
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

static void join_values(const char *const *v, char *buf, size_t n)
{
  size_t o = 0;
  buf[0] = '\0';
  for (size_t i = 0; v[i] && o < n; i++)
    o += (size_t)snprintf(buf + o, n - o, "%s%s", i ? ", " : "", v[i]);
}

static int set_string(char **dst, const char *s)
{
  char *copy = strdup(s);
  if (!copy)
    return KCLD_ENOMEM;
  free_wipe(*dst);
  *dst = copy;
  return 0;
}

static int range_ok(const struct key *k, int64_t v)
{
  if ((k->flags & F_MINUS1) && v == -1)
    return 1;
  return v >= k->min && v <= k->max;
}

static void range_text(const struct key *k, char *buf, size_t n)
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
      list_free(&tmp);
      return KCLD_ENOMEM;
    }
    n++;
  }
  list_free(l);
  l->items = items;
  l->len = n;
  return 0;
}

/* Converts `text` (env-expanded already, NULL for a YAML null) for key k
 * and stores it.  Returns 0, KCLD_ENOMEM, or KCLD_EINVAL with why. */
static int store(const struct key *k, struct kcld_config *cfg,
                 const char *text, char *why, size_t n)
{
  void *f = field(cfg, k);
  char g[128], r[96];
  int64_t v;
  if (!text && k->type != K_STR && k->type != K_LIST) {
    if (k->type == K_ENUM) {
      join_values(k->values, r, sizeof(r));
      snprintf(why, n, "must be one of %s, got an empty value", r);
    } else {
      snprintf(why, n, "must be %s, got an empty value", type_desc(k));
    }
    return KCLD_EINVAL;
  }
  switch (k->type) {
  case K_STR:
    if (!text)
      text = "";
    if (check_string(k, text, why, n) != 0)
      return KCLD_EINVAL;
    return set_string(f, text);
  case K_TMPL:
    if (check_template(text, why, n) != 0)
      return KCLD_EINVAL;
    return set_string(f, text);
  case K_LIST:
    return split_words(text ? text : "", f);
  case K_INT: {
    char *end;
    errno = 0;
    long long ll = strtoll(text, &end, 10);
    if (!*text || *end || errno ||
        ((text[0] < '0' || text[0] > '9') && text[0] != '-')) {
      snprintf(why, n, "must be an integer%s", got(k, text, g, sizeof(g)));
      return KCLD_EINVAL;
    }
    if (!range_ok(k, ll)) {
      range_text(k, r, sizeof(r));
      snprintf(why, n, "must be %s, got %s", r, text);
      return KCLD_EINVAL;
    }
    *(int *)f = (int)ll;
    return 0;
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
    if (!range_ok(k, v)) {
      range_text(k, r, sizeof(r));
      snprintf(why, n, "must be %s, got %s", r, text);
      return KCLD_EINVAL;
    }
    *(int64_t *)f = v;
    return 0;
  case K_SIZE:
    if (kcld_config_parse_size(text, &v) != 0) {
      snprintf(why, n,
               "must be a size such as 100B, 512KiB, 8MiB, 1GiB or 10MB%s",
               got(k, text, g, sizeof(g)));
      return KCLD_EINVAL;
    }
    if (!range_ok(k, v)) {
      range_text(k, r, sizeof(r));
      snprintf(why, n, "must be %s, got %s", r, text);
      return KCLD_EINVAL;
    }
    *(int64_t *)f = v;
    return 0;
  case K_ENUM: {
    const char *hint = NULL;
    for (int i = 0; k->values[i]; i++) {
      if (strcmp(text, k->values[i]) == 0) {
        *(int *)f = i;
        return 0;
      }
      if (strcasecmp(text, k->values[i]) == 0 ||
          edit_distance(text, k->values[i]) <= close_enough(strlen(text)))
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
static int expand_node(struct ctx *c, const yaml_node_t *node,
                       const char *key, char **out)
{
  struct expand_err e;
  const char *v = (const char *)node->data.scalar.value;
  int rc = expand_env(v, out, &e);
  if (rc == KCLD_EINVAL) {
    size_t line, col;
    locate(c, node, v + e.off, e.len, &line, &col);
    add_err(c, line, col, key, "%s", e.why);
  }
  return rc;
}

static int store_list_node(struct ctx *c, const struct key *k,
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
  struct kcld_config_list tmp = {items, got_n};
  if (rc != 0) {
    list_free(&tmp);
    return rc;
  }
  list_free(field(c->cfg, k));
  *(struct kcld_config_list *)field(c->cfg, k) = tmp;
  return 0;
}

/* Parses the value node of key row i. */
static void set_leaf(struct ctx *c, size_t i, const yaml_node_t *val)
{
  const struct key *k = &s_keys[i];
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
  if (val->type != YAML_SCALAR_NODE) {
    err_node(c, val, k->name, "expected %s, got %s", type_desc(k),
             node_kind(val));
    rc = KCLD_EINVAL;
    goto done;
  }
  if (is_null_scalar(val)) {
    rc = store(k, c->cfg, NULL, why, sizeof(why));
  } else if (k->type == K_TMPL) {
    rc = store(k, c->cfg, (const char *)val->data.scalar.value, why,
               sizeof(why));
  } else {
    rc = expand_node(c, val, k->name, &text);
    if (rc != 0)
      goto done;
    rc = store(k, c->cfg, text, why, sizeof(why));
  }
  if (rc == KCLD_EINVAL)
    err_node(c, val, k->name, "%s", why);
done:
  free_wipe(text);
  if (rc == KCLD_ENOMEM)
    c->oom = 1;
  if (rc != 0)
    st->bad = 1;
}

/* ======== Walking the document ======== */

static void suggest(const char *full, char *buf, size_t n)
{
  const char *best = NULL;
  size_t bestd = close_enough(strlen(full)) + 1;
  const char *leaf = strrchr(full, '.');
  const char *same[3];
  size_t nsame = 0;
  leaf = leaf ? leaf + 1 : full;
  buf[0] = '\0';
  for (size_t i = 0; i < NKEYS + NSECTIONS; i++) {
    const char *cand = i < NKEYS ? s_keys[i].name : s_sections[i - NKEYS].name;
    size_t d = edit_distance(full, cand);
    if (d < bestd) {
      best = cand;
      bestd = d;
    }
    const char *cl = strrchr(cand, '.');
    if (i < NKEYS && cl && strcmp(cl + 1, leaf) == 0 && nsame < 3)
      same[nsame++] = cand;
  }
  if (best) {
    snprintf(buf, n, " (did you mean %s?)", best);
  } else if (nsame == 1) {
    snprintf(buf, n, " (did you mean %s?)", same[0]);
  } else if (nsame > 1) {
    snprintf(buf, n, " (did you mean %s%s%s%s%s?)", same[0],
             nsame == 2 ? " or " : ", ", same[1], nsame == 3 ? " or " : "",
             nsame == 3 ? same[2] : "");
  }
}

static void walk_map(struct ctx *c, const yaml_node_t *map,
                     const char *prefix)
{
  yaml_node_pair_t *start = map->data.mapping.pairs.start;
  yaml_node_pair_t *top = map->data.mapping.pairs.top;
  for (yaml_node_pair_t *p = start; p < top && !c->oom; p++) {
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
    int i = key_index(full);
    if (i >= 0) {
      c->st[i].key_line = kn->start_mark.line + 1;
      set_leaf(c, (size_t)i, vn);
    } else if (is_section(full)) {
      if (vn->type == YAML_MAPPING_NODE)
        walk_map(c, vn, full);
      else if (!is_null_scalar(vn))
        err_node(c, vn, full, "expected a mapping of keys, got %s",
                 node_kind(vn));
    } else {
      suggest(full, hint, sizeof(hint));
      err_node(c, kn, full, "unknown key%s", hint);
    }
  }
}

/* ======== Defaults, derived values, cross-key checks ======== */

static int apply_defaults(struct kcld_config *cfg)
{
  char why[256];
  for (size_t i = 0; i < NKEYS; i++) {
    const struct key *k = &s_keys[i];
    int rc;
    if (k->type == K_LIST) {
      struct kcld_config_list *l = field(cfg, k);
      list_free(l);
      l->items = calloc(1, sizeof(char *));
      rc = l->items ? 0 : KCLD_ENOMEM;
    } else {
      rc = store(k, cfg, k->def ? k->def : "", why, sizeof(why));
      if (rc == KCLD_EINVAL && (k->flags & F_REQUIRED))
        rc = set_string(field(cfg, k), "");
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
  int i = key_index(name);
  *line = 1;
  *col = 1;
  if (i >= 0 && c->st[i].set) {
    *line = c->st[i].line;
    *col = c->st[i].col;
  }
}

static int bad(const struct ctx *c, const char *name)
{
  int i = key_index(name);
  return i >= 0 && c->st[i].bad;
}

static int is_set(const struct ctx *c, const char *name)
{
  int i = key_index(name);
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

static int derive_worker_id(struct kcld_config *cfg)
{
  char host[256], id[300];
  if (gethostname(host, sizeof(host)) != 0)
    snprintf(host, sizeof(host), "localhost");
  host[sizeof(host) - 1] = '\0';
  snprintf(id, sizeof(id), "%s:%ld", host, (long)getpid());
  return set_string(&cfg->worker_id, id);
}

static void finish(struct ctx *c)
{
  struct kcld_config *cfg = c->cfg;
  const struct kcld_config_handler_cfg *h = &cfg->handler;
  const char *type = s_handlers[h->type];
  char q[96];

  for (size_t i = 0; i < NKEYS; i++)
    if ((s_keys[i].flags & F_REQUIRED) && !c->st[i].set)
      add_err(c, 1, 1, s_keys[i].name, "required key is missing");

  /* Derived defaults. */
  if (!*cfg->lease.table && *cfg->application && !bad(c, "lease.table")) {
    if (!valid_name(cfg->application, 3, 255))
      err_at(c, "application", "application",
             "names the lease table when lease.table is not set, so must be "
             "3..255 characters of a-z A-Z 0-9 _ . -, got %s",
             quote(cfg->application, q, sizeof(q)));
    else if (set_string(&cfg->lease.table, cfg->application) != 0)
      c->oom = 1;
  }
  if (!*cfg->worker_id && derive_worker_id(cfg) != 0)
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
             s_positions[cfg->starting_position]);
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

static void syntax_error(struct ctx *c, const yaml_parser_t *p)
{
  size_t line, col;
  if (p->error == YAML_MEMORY_ERROR) {
    c->oom = 1;
    return;
  }
  if (p->error == YAML_READER_ERROR) {
    /* Only a byte offset; never print the byte (it may be a secret's). */
    size_t off = p->problem_offset, l = 0;
    while (l + 1 < c->nlines && c->lines[l + 1] <= off)
      l++;
    line = l + 1;
    col = 1;
    for (size_t o = c->lines[l]; o < off && o < c->len; o++)
      if ((c->src[o] & 0xc0) != 0x80)
        col++;
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

int kcld_config_parse(const char *name, const char *text, size_t len,
                      struct kcld_config **out, char **errors)
{
  struct ctx c;
  yaml_parser_t parser;
  yaml_document_t doc, next;
  int have_parser = 0, have_doc = 0, rc;

  memset(&c, 0, sizeof(c));
  *out = NULL;
  if (errors)
    *errors = NULL;
  c.file = name;
  c.src = (const unsigned char *)text;
  c.len = len;
  c.cfg = calloc(1, sizeof(*c.cfg));
  if (!c.cfg || index_lines(&c) != 0) {
    rc = KCLD_ENOMEM;
    goto cleanup;
  }
  rc = apply_defaults(c.cfg);
  if (rc == 0 && set_string(&c.cfg->path, name) != 0)
    rc = KCLD_ENOMEM;
  if (rc != 0)
    goto cleanup;
  if (!yaml_parser_initialize(&parser)) {
    rc = KCLD_ENOMEM;
    goto cleanup;
  }
  have_parser = 1;
  yaml_parser_set_input_string(&parser, c.src, len);
  if (!yaml_parser_load(&parser, &doc)) {
    syntax_error(&c, &parser);
  } else {
    have_doc = 1;
    c.doc = &doc;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root && root->type == YAML_MAPPING_NODE)
      walk_map(&c, root, NULL);
    else if (root && !is_null_scalar(root))
      err_node(&c, root, NULL,
               "expected a mapping of keys at the top level, got %s",
               node_kind(root));
    if (root && !yaml_parser_load(&parser, &next)) {
      syntax_error(&c, &parser);
    } else if (root) {
      yaml_node_t *again = yaml_document_get_root_node(&next);
      if (again)
        err_node(&c, again, NULL,
                 "only one YAML document is allowed in the file");
      wipe_document(&next);
      yaml_document_delete(&next);
    }
    if (!c.oom)
      finish(&c);
  }
  rc = c.oom ? KCLD_ENOMEM : c.nerr ? KCLD_ECONFIG : 0;

cleanup:
  if (have_doc) {
    wipe_document(&doc);
    yaml_document_delete(&doc);
  }
  if (have_parser) {
    wipe_parser(&parser);
    yaml_parser_delete(&parser);
  }
  if (rc == KCLD_ECONFIG && errors) {
    *errors = errors_text(&c);
    if (!*errors)
      rc = KCLD_ENOMEM;
  }
  if (rc == KCLD_ENOMEM && errors && asprintf(errors, "%s: out of memory\n",
                                              name) < 0)
    *errors = NULL;
  for (size_t i = 0; i < c.nerr; i++)
    free(c.errs[i].msg);
  free(c.errs);
  free(c.lines);
  if (rc != 0)
    kcld_config_free(c.cfg);
  else
    *out = c.cfg;
  return rc;
}

/* Settings by key name (kcld --properties): the same store, checks and
 * derived defaults as a file; positions are the settings' lines. */
int kcld_config_from_settings(const char *name,
                              const struct kcld_config_setting *settings,
                              size_t n, struct kcld_config **out,
                              char **errors)
{
  struct ctx c;
  char why[512];
  int rc;

  memset(&c, 0, sizeof(c));
  *out = NULL;
  if (errors)
    *errors = NULL;
  c.file = name;
  c.cfg = calloc(1, sizeof(*c.cfg));
  rc = c.cfg ? apply_defaults(c.cfg) : KCLD_ENOMEM;
  if (rc == 0 && set_string(&c.cfg->path, name) != 0)
    rc = KCLD_ENOMEM;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    const struct kcld_config_setting *s = &settings[i];
    const char *label = s->label ? s->label : s->key;
    int k = key_index(s->key);
    if (k < 0) {
      add_err(&c, s->line, 1, label, "unknown setting %s", s->key);
      continue;
    }
    c.st[k] = (struct kstate){1, 0, s->line, 1, s->line};
    int r = store(&s_keys[k], c.cfg, s->value, why, sizeof(why));
    if (r == KCLD_ENOMEM)
      rc = r;
    else if (r != 0) {
      c.st[k].bad = 1;
      add_err(&c, s->line, 1, label, "%s", why);
    }
  }
  if (rc == 0 && !c.oom)
    finish(&c);
  if (rc == 0)
    rc = c.oom ? KCLD_ENOMEM : c.nerr ? KCLD_ECONFIG : 0;
  if (rc == KCLD_ECONFIG && errors) {
    *errors = errors_text(&c);
    if (!*errors)
      rc = KCLD_ENOMEM;
  }
  if (rc == KCLD_ENOMEM && errors && asprintf(errors, "%s: out of memory\n",
                                              name) < 0)
    *errors = NULL;
  for (size_t i = 0; i < c.nerr; i++)
    free(c.errs[i].msg);
  free(c.errs);
  if (rc != 0)
    kcld_config_free(c.cfg);
  else
    *out = c.cfg;
  return rc;
}

int kcld_config_load(const char *path, struct kcld_config **out,
                     char **errors)
{
  FILE *f = fopen(path, "rb");
  char *buf = NULL;
  size_t len = 0, cap = 0;
  int rc;
  *out = NULL;
  if (errors)
    *errors = NULL;
  if (!f)
    goto io_error;
  for (;;) {
    if (len + 4096 > cap) {
      size_t ncap = cap ? cap * 2 : 16384;
      char *n = malloc(ncap);
      if (!n) {
        fclose(f);
        free_wipe(buf);
        return KCLD_ENOMEM;
      }
      if (buf) {
        memcpy(n, buf, len);
        OPENSSL_cleanse(buf, len);
        free(buf);
      }
      buf = n;
      cap = ncap;
    }
    size_t got_n = fread(buf + len, 1, cap - len - 1, f);
    len += got_n;
    buf[len] = '\0';
    if (got_n == 0)
      break;
  }
  if (ferror(f)) {
    int e = errno;
    fclose(f);
    OPENSSL_cleanse(buf, len);
    free(buf);
    errno = e;
    goto io_error;
  }
  fclose(f);
  rc = kcld_config_parse(path, buf, len, out, errors);
  OPENSSL_cleanse(buf, len);
  free(buf);
  return rc;

io_error:
  if (errors && asprintf(errors, "%s: cannot read: %s\n", path,
                         strerror(errno)) < 0)
    *errors = NULL;
  return KCLD_EIO;
}

void kcld_config_free(struct kcld_config *cfg)
{
  if (!cfg)
    return;
  for (size_t i = 0; i < NKEYS; i++) {
    const struct key *k = &s_keys[i];
    if (k->type == K_STR || k->type == K_TMPL) {
      char **s = field(cfg, k);
      free_wipe(*s);
      *s = NULL;
    } else if (k->type == K_LIST) {
      list_free(field(cfg, k));
    }
  }
  free(cfg->path);
  free(cfg);
}

/* ======== Endpoints ======== */

const char *kcld_config_endpoint(const struct kcld_config *cfg,
                                 enum kcld_config_service svc,
                                 const char **source)
{
  static const char *const keys[] = {"endpoints.kinesis",
                                     "endpoints.dynamodb", "endpoints.sqs"};
  static const char *const vars[] = {"AWS_ENDPOINT_URL_KINESIS",
                                     "AWS_ENDPOINT_URL_DYNAMODB",
                                     "AWS_ENDPOINT_URL_SQS"};
  const char *per, *v;
  if (source)
    *source = NULL;
  if ((int)svc < 0 || (int)svc > KCLD_CONFIG_SQS)
    return NULL;
  per = svc == KCLD_CONFIG_KINESIS    ? cfg->endpoints.kinesis
        : svc == KCLD_CONFIG_DYNAMODB ? cfg->endpoints.dynamodb
                                      : cfg->endpoints.sqs;
  if (per && *per) {
    if (source)
      *source = keys[svc];
    return per;
  }
  if (cfg->endpoint && *cfg->endpoint) {
    if (source)
      *source = "endpoint";
    return cfg->endpoint;
  }
  v = getenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS");
  if (v && strcasecmp(v, "true") == 0)
    return NULL;
  v = getenv(vars[svc]);
  if (v && *v) {
    if (source)
      *source = vars[svc];
    return v;
  }
  v = getenv("AWS_ENDPOINT_URL");
  if (v && *v) {
    if (source)
      *source = "AWS_ENDPOINT_URL";
    return v;
  }
  return NULL;
}

/* ======== Dump and reference texts ======== */

/* Writes s as a YAML double-quoted string; with `dollar`, $ is doubled so
 * that ${...} expansion gives s back. */
static void put_quoted(FILE *f, const char *s, int dollar)
{
  fputc('"', f);
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\')
      fprintf(f, "\\%c", ch);
    else if (ch < 0x20 || ch == 0x7f)
      fprintf(f, "\\x%02x", ch);
    else if (ch == '$' && dollar)
      fputs("$$", f);
    else
      fputc(ch, f);
  }
  fputc('"', f);
}

/* The value of key k in cfg, as YAML. */
static void put_value(FILE *f, const struct key *k,
                      const struct kcld_config *cfg)
{
  const void *v = cfield(cfg, k);
  char buf[64];
  switch (k->type) {
  case K_STR: {
    const char *s = *(char *const *)v;
    if ((k->flags & F_SECRET) && *s)
      s = "[redacted]";
    put_quoted(f, s, 1);
    break;
  }
  case K_TMPL:
    put_quoted(f, *(char *const *)v, 0);
    break;
  case K_INT:
    fprintf(f, "%d", *(const int *)v);
    break;
  case K_BOOL:
    fputs(*(const bool *)v ? "true" : "false", f);
    break;
  case K_DUR:
    if ((k->flags & F_EMPTY) && *(const int64_t *)v == 0)
      fputs("\"\"", f);
    else
      fputs(kcld_config_format_duration(*(const int64_t *)v, buf,
                                        sizeof(buf)),
            f);
    break;
  case K_SIZE:
    fputs(kcld_config_format_size(*(const int64_t *)v, buf, sizeof(buf)), f);
    break;
  case K_ENUM:
    fputs(k->values[*(const int *)v], f);
    break;
  case K_LIST: {
    const struct kcld_config_list *l = v;
    fputc('[', f);
    for (size_t i = 0; i < l->len; i++) {
      if (i)
        fputs(", ", f);
      put_quoted(f, l->items[i], 1);
    }
    fputc(']', f);
    break;
  }
  case K_TIME:
    if (*(const int64_t *)v < 0) {
      fputs("\"\"", f);
    } else {
      format_time(*(const int64_t *)v, buf, sizeof(buf));
      fputs(buf, f);
    }
    break;
  }
}

/* The default of key k, as YAML. */
static void put_default(FILE *f, const struct key *k)
{
  if (k->flags & F_REQUIRED)
    put_quoted(f, k->example, 0);
  else if (k->type == K_STR || k->type == K_TMPL || k->type == K_TIME ||
           !*k->def)
    put_quoted(f, k->def, 0);
  else
    fputs(k->def, f);
}

static void put_range(FILE *f, const struct key *k, const char *sep,
                      const char *tick)
{
  char r[96];
  if (k->type == K_INT || k->type == K_DUR || k->type == K_SIZE) {
    range_text(k, r, sizeof(r));
    fprintf(f, "%s", r);
  } else if (k->type == K_ENUM) {
    for (size_t i = 0; k->values[i]; i++)
      fprintf(f, "%s%s%s%s", i ? sep : "", tick, k->values[i], tick);
  }
}

/* Components of the section path of key name (all but the last). */
static size_t section_parts(const char *name, const char **part,
                            size_t *plen, size_t max)
{
  size_t n = 0;
  for (const char *p = name, *dot; (dot = strchr(p, '.')) && n < max;
       p = dot + 1) {
    part[n] = p;
    plen[n] = (size_t)(dot - p);
    n++;
  }
  return n;
}

/* cfg == NULL: the reference (defaults and comments); else the dump. */
static void put_yaml(FILE *f, const struct kcld_config *cfg)
{
  const char *prev[4], *cur[4];
  size_t prevlen[4], curlen[4], nprev = 0;
  for (size_t i = 0; i < NKEYS; i++) {
    const struct key *k = &s_keys[i];
    size_t ncur = section_parts(k->name, cur, curlen, 4), same = 0;
    while (same < ncur && same < nprev && curlen[same] == prevlen[same] &&
           strncmp(cur[same], prev[same], curlen[same]) == 0)
      same++;
    for (size_t j = same; j < ncur; j++) {
      long start = ftell(f);
      if (j == 0)
        fputc('\n', f);
      fprintf(f, "%*s%.*s:", (int)(2 * j), "", (int)curlen[j], cur[j]);
      if (!cfg) {
        size_t full = (size_t)(cur[j] + curlen[j] - k->name);
        long w = ftell(f) - start - (j == 0);
        fprintf(f, "%*s# %s", w < 36 ? (int)(36 - w) : 1, "",
                section_doc(k->name, full));
      }
      fputc('\n', f);
    }
    memcpy(prev, cur, sizeof(cur));
    memcpy(prevlen, curlen, sizeof(curlen));
    nprev = ncur;

    long start = ftell(f);
    const char *leaf = ncur ? cur[ncur - 1] + curlen[ncur - 1] + 1 : k->name;
    fprintf(f, "%*s%s: ", (int)(2 * ncur), "", leaf);
    if (cfg) {
      put_value(f, k, cfg);
      fputc('\n', f);
      continue;
    }
    put_default(f, k);
    long w = ftell(f) - start;
    fprintf(f, "%*s# %s%s", w < 36 ? (int)(36 - w) : 1, "",
            (k->flags & F_REQUIRED) ? "required: " : "", k->doc);
    if (k->type == K_INT || k->type == K_DUR || k->type == K_SIZE ||
        k->type == K_ENUM) {
      fputs(" (", f);
      put_range(f, k, " | ", "");
      fputc(')', f);
    }
    fputc('\n', f);
  }
}

char *kcld_config_dump(const struct kcld_config *cfg)
{
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f)
    return NULL;
  fprintf(f, "# kcld: effective configuration of %s (secrets redacted)\n",
          cfg->path ? cfg->path : "(none)");
  put_yaml(f, cfg);
  if (fclose(f) != 0) {
    free(buf);
    return NULL;
  }
  return buf;
}

static const char s_yaml_head[] =
  "# kcld.yaml: every configuration key of kcld, with its default.\n"
  "#\n"
  "# Generated by `kcld config-reference yaml` from the key table in\n"
  "# src/config.c (a test fails when they differ); docs/configuration.md\n"
  "# explains each key.  Check a file with `kcld --check-config PATH`.\n"
  "#\n"
  "# Durations: 250ms, 10s, 5m, 1h, 7d (also 1h30m, 1.5s).  Sizes: 100B,\n"
  "# 512KiB, 8MiB, 1GiB, or decimal kB, MB, GB.  Values may use ${VAR}\n"
  "# and ${VAR:-default} from the environment; $$ is a literal $.\n"
  "# Only application and stream are required; \"\" means not set.\n"
  "\n";

static const char s_md_head[] =
  "# kcld configuration reference\n"
  "\n"
  "<!-- Generated by `kcld config-reference markdown` from the key table "
  "in\n"
  "     src/config.c. Do not edit: change the table and regenerate; "
  "tests/unit/test_config.c\n"
  "     fails when this file and the table differ. -->\n"
  "\n"
  "kcld reads one YAML file: `/etc/kcld/kcld.yaml`, or the file given "
  "with\n"
  "`--config PATH`. [`conf/kcld.yaml`](../conf/kcld.yaml) lists every key "
  "with\n"
  "its default; [`conf/local.yaml`](../conf/local.yaml) points kcld at the "
  "local\n"
  "emulators. Only `application` and `stream` are required. A string "
  "value of `\"\"`\n"
  "means \"not set\".\n"
  "\n"
  "Key names follow the Lambda event source mapping and the KCL where they "
  "overlap\n"
  "(`batch.size` is Lambda's BatchSize, `lease.failover_time` the KCL's\n"
  "failoverTimeMillis), so settings carry over.\n"
  "\n"
  "## Checking a file\n"
  "\n"
  "`kcld --check-config [PATH]` (or `kcld --check-config --config PATH`) "
  "reads and\n"
  "validates the file, then exits 0 and prints `kcld: PATH: configuration "
  "ok`, or\n"
  "exits 1 and prints every error (the first 20, in file order). Each "
  "error names\n"
  "the file as given, the line and column, the key, and what was "
  "expected:\n"
  "\n"
  "```\n"
  "kcld.yaml:12:9: batch.size: must be 1..10000, got 0\n"
  "kcld.yaml:3:3: batch.sise: unknown key (did you mean batch.size?)\n"
  "kcld.yaml:7:13: region: environment variable AWS_X is not set "
  "(give a default with ${AWS_X:-value})\n"
  "```\n"
  "\n"
  "Unknown keys, duplicate keys, a mapping where a value belongs, YAML "
  "syntax\n"
  "errors, values out of range and inconsistent keys are all errors; "
  "kcld does\n"
  "not start with a file that has any. `kcld --dump-config` prints the "
  "effective\n"
  "configuration, with derived defaults filled in and secrets shown as\n"
  "`[redacted]`.\n"
  "\n"
  "## Value types\n"
  "\n"
  "| Type | Written as | Stored as |\n"
  "|---|---|---|\n"
  "| string | any scalar; `\"\"` = not set | text |\n"
  "| integer | `100`, `-1` | int |\n"
  "| boolean | `true`/`false` (also `yes`/`no`, `on`/`off`) | bool |\n"
  "| duration | `250ms`, `10s`, `5m`, `1h`, `7d`; combined `1h30m`; "
  "fractions `1.5s`; `0` | milliseconds (int64) |\n"
  "| size | `100B`, `512KiB`, `8MiB`, `1GiB` (1024-based) or `10kB`, "
  "`10MB`, `1GB` (1000-based); `0` | bytes (int64) |\n"
  "| enum | one of the listed words, exactly | enum |\n"
  "| list of strings | a YAML list `[\"python3\", \"app.py\"]`, or one "
  "string split on spaces (`python3 app.py`, as the KCL's executableName; "
  "no quoting) | argv |\n"
  "| template | text with `${field}` references to record fields, e.g. "
  "`${partitionKey}`, `${data.deviceId}`; not expanded from the "
  "environment | text |\n"
  "| time | RFC 3339 (`2024-05-01T12:00:00Z`, `2024-05-01T14:00:00+02:00`) "
  "or epoch seconds (`1714564800`) | epoch milliseconds |\n"
  "| URL | `http://...` or `https://...` | text |\n"
  "| host:port | `127.0.0.1:9464`, `[::1]:9464`, `0.0.0.0:9464`; port 0 = "
  "any free port | text |\n"
  "\n"
  "## Environment variables in values\n"
  "\n"
  "Every value except a template may refer to the environment: `${VAR}` "
  "is\n"
  "replaced by the variable's value, and `${VAR:-default}` by the default "
  "when\n"
  "the variable is unset or empty. A variable that is unset and has no "
  "default is\n"
  "an error at its position. `$$` is a literal `$`. The expansion happens "
  "once,\n"
  "before the value is read as its type, so `size: ${BATCH:-100}` works.\n"
  "\n"
  "```yaml\n"
  "endpoints:\n"
  "  kinesis: \"${KCLD_KINESIS_ENDPOINT:-http://127.0.0.1:4567}\"\n"
  "credentials:\n"
  "  secret_access_key: \"${MY_SECRET}\"   # error when MY_SECRET is "
  "unset\n"
  "```\n"
  "\n"
  "## Endpoints\n"
  "\n"
  "Each service (Kinesis, DynamoDB, SQS) is sent to the first of these "
  "that is set:\n"
  "\n"
  "1. `endpoints.kinesis`, `endpoints.dynamodb`, `endpoints.sqs`;\n"
  "2. `endpoint`: one base URL for every service (LocalStack: "
  "`http://localhost:4566`);\n"
  "3. the environment variable `AWS_ENDPOINT_URL_KINESIS`, "
  "`AWS_ENDPOINT_URL_DYNAMODB`\n"
  "   or `AWS_ENDPOINT_URL_SQS`;\n"
  "4. `AWS_ENDPOINT_URL`;\n"
  "5. otherwise the AWS endpoint of the region "
  "(`https://kinesis.REGION.amazonaws.com`).\n"
  "\n"
  "As in the AWS SDKs, `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true` makes "
  "kcld ignore\n"
  "the variables (3 and 4); the keys in the file still apply. A dead-letter "
  "queue\n"
  "URL (`on_failure.sqs`) travels in the request body; requests go to the "
  "SQS\n"
  "endpoint above, never to the URL's host.\n"
  "\n"
  "## Region and credentials\n"
  "\n"
  "`region` is used when set. When it is `\"\"`, kcld takes `AWS_REGION`, "
  "then\n"
  "`AWS_DEFAULT_REGION`, then the `region` of the profile in the shared "
  "config file,\n"
  "then the instance metadata service (IMDSv2).\n"
  "\n"
  "Credentials come from the first source that yields, in the AWS SDKs' "
  "order:\n"
  "explicit keys in this file (`credentials.access_key_id` with\n"
  "`credentials.secret_access_key`, and `credentials.session_token` for "
  "temporary\n"
  "keys); the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,\n"
  "`AWS_SESSION_TOKEN`); the shared files `~/.aws/credentials` and "
  "`~/.aws/config`\n"
  "(profile `credentials.profile`, else `AWS_PROFILE`, else `default`); "
  "container\n"
  "credentials; instance metadata. Prefer the chain to keys in a file; if "
  "you\n"
  "must, take them from the environment (`\"${MY_KEY}\"`). The secret "
  "access key\n"
  "and the session token never appear in a log line, an error message or a "
  "dump.\n"
  "\n"
  "## Derived defaults and rules between keys\n"
  "\n"
  "- `lease.table` defaults to `application` (which must then be a valid "
  "table\n"
  "  name), `lease.take_interval` to twice `lease.failover_time`, "
  "`worker_id` to\n"
  "  `hostname:pid`; `workers: 0` means one thread per CPU.\n"
  "- `starting_timestamp` is required with `starting_position: "
  "AT_TIMESTAMP`, and\n"
  "  not allowed otherwise.\n"
  "- `retry.backoff_base` must not exceed `retry.backoff_max`; "
  "`http.connect_timeout`\n"
  "  must not exceed `http.timeout`.\n"
  "- `credentials.access_key_id` and `credentials.secret_access_key` come "
  "together;\n"
  "  `credentials.session_token` needs them; `credentials.profile` cannot "
  "be\n"
  "  combined with them.\n"
  "- `handler.type: multilang` and `lambda` need `handler.command`; "
  "`dynamodb` needs\n"
  "  `handler.table` (not the lease table) and a non-empty "
  "`handler.key.pk`;\n"
  "  `plugin` needs `handler.path`.\n"
  "\n"
  "## Keys\n";

static void put_md_cell(FILE *f, const char *s)
{
  for (; *s; s++) {
    if (*s == '|')
      fputs("\\|", f);
    else
      fputc(*s, f);
  }
}

static const char *md_type(const struct key *k)
{
  switch (k->type) {
  case K_STR:
    switch (k->check) {
    case C_URL:
      return "URL";
    case C_HOSTPORT:
      return "host:port";
    case C_TABLE:
      return "table name";
    case C_STREAM:
      return "name or ARN";
    case C_REGION:
      return "region";
    case C_FILE:
      return "file path";
    case C_TOKEN:
      return (k->flags & F_SECRET) ? "string, secret" : "string";
    default:
      return "string";
    }
  case K_INT:
    return "integer";
  case K_BOOL:
    return "boolean";
  case K_DUR:
    return "duration";
  case K_SIZE:
    return "size";
  case K_ENUM:
    return "enum";
  case K_LIST:
    return "list of strings";
  case K_TMPL:
    return "template";
  case K_TIME:
    return "time";
  }
  return "string";
}

static void put_markdown(FILE *f)
{
  const char *section = NULL;
  size_t seclen = 0;
  fputs(s_md_head, f);
  for (size_t i = 0; i < NKEYS; i++) {
    const struct key *k = &s_keys[i];
    const char *dot = strchr(k->name, '.');
    size_t len = dot ? (size_t)(dot - k->name) : 0;
    if (!section || len != seclen || strncmp(section, k->name, len) != 0) {
      if (len)
        fprintf(f, "\n### `%.*s`: %s\n", (int)len, k->name,
                section_doc(k->name, len));
      else
        fputs("\n### Top level\n", f);
      fputs("\n| Key | Type | Default | Range or values | Description |\n"
            "|---|---|---|---|---|\n",
            f);
      section = k->name;
      seclen = len;
    }
    fprintf(f, "| `%s` | %s | ", k->name, md_type(k));
    if (k->flags & F_REQUIRED) {
      fputs("*required*", f);
    } else {
      fputc('`', f);
      put_default(f, k);
      fputc('`', f);
    }
    fputs(" | ", f);
    put_range(f, k, " \\| ", "`");
    fputs(" | ", f);
    put_md_cell(f, k->doc);
    fputs(" |\n", f);
  }
}

char *kcld_config_reference(enum kcld_config_ref format)
{
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f)
    return NULL;
  if (format == KCLD_CONFIG_REF_MARKDOWN) {
    put_markdown(f);
  } else {
    fputs(s_yaml_head, f);
    put_yaml(f, NULL);
  }
  if (fclose(f) != 0) {
    free(buf);
    return NULL;
  }
  return buf;
}
