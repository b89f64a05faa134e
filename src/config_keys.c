/* config_keys.c — the key table (config_keys.h): every key of kcld's
 * configuration, its type, field, default, range and doc, and the sections
 * they sit in; and kcld_config_diff, which walks it. */
#include "config_keys.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_values.h"
#include "err.h"

#define OFF(f) offsetof(struct kcld_config, f)

#define STR(n, f, d, chk, fl, doc) \
  {n, K_STR, OFF(f), d, 0, 0, NULL, chk, fl, NULL, doc}
#define REQ(n, f, chk, ex, doc) \
  {n, K_STR, OFF(f), NULL, 0, 0, NULL, chk, F_REQUIRED, ex, doc}
#define INT(n, f, d, lo, hi, fl, doc) \
  {n, K_INT, OFF(f), d, lo, hi, NULL, C_NONE, fl, NULL, doc}
#define BOOL(n, f, d, fl, doc) \
  {n, K_BOOL, OFF(f), d, 0, 1, NULL, C_NONE, fl, NULL, doc}
#define DUR(n, f, d, lo, hi, fl, doc) \
  {n, K_DUR, OFF(f), d, lo, hi, NULL, C_NONE, fl, NULL, doc}
#define SIZE(n, f, d, lo, hi, fl, doc) \
  {n, K_SIZE, OFF(f), d, lo, hi, NULL, C_NONE, fl, NULL, doc}
#define ENUM(n, f, d, vals, fl, doc) \
  {n, K_ENUM, OFF(f), d, 0, 0, vals, C_NONE, fl, NULL, doc}
#define LIST(n, f, d, fl, doc) \
  {n, K_LIST, OFF(f), d, 0, 0, NULL, C_NONE, fl, NULL, doc}
#define TMPL(n, f, d, fl, doc) \
  {n, K_TMPL, OFF(f), d, 0, 0, NULL, C_NONE, fl, NULL, doc}
#define TIME(n, f, fl, doc) \
  {n, K_TIME, OFF(f), "", 0, 0, NULL, C_NONE, fl, NULL, doc}
#define STREAMS(n, f, fl, doc) \
  {n, K_STREAMS, OFF(f), "[]", 0, 0, NULL, C_NONE, fl, NULL, doc}
#define FILTER(n, f, fl, doc) \
  {n, K_FILTER, OFF(f), "[]", 0, 0, NULL, C_NONE, fl, NULL, doc}

static const char *const s_positions[] = {"TRIM_HORIZON", "LATEST",
                                          "AT_TIMESTAMP", NULL};
static const char *const s_handlers[] = {"multilang", "lambda", "dynamodb",
                                         "plugin", "stdout", NULL};
static const char *const s_decodes[] = {"base64", "utf8", NULL};
static const char *const s_writes[] = {"batch", "conditional", NULL};
static const char *const s_levels[] = {"debug", "info", "warn", "error",
                                       NULL};
static const char *const s_formats[] = {"json", "text", NULL};
static const char *const s_switches[] = {"auto", "true", "false", NULL};
static const char *const s_fetch_modes[] = {"polling", "fanout", NULL};
static const char *const s_retry_modes[] = {"auto", "standard", "adaptive",
                                            "legacy", NULL};

/* Enum fields are written through an int pointer. */
_Static_assert(sizeof(enum kcld_config_position) == sizeof(int), "enum");
_Static_assert(sizeof(enum kcld_config_handler) == sizeof(int), "enum");
_Static_assert(sizeof(enum kcld_config_decode) == sizeof(int), "enum");
_Static_assert(sizeof(enum kcld_config_write) == sizeof(int), "enum");
_Static_assert(sizeof(enum kcld_log_level) == sizeof(int), "enum");
_Static_assert(sizeof(enum kcld_log_format) == sizeof(int), "enum");
_Static_assert(sizeof(enum kcld_config_switch) == sizeof(int), "enum");
_Static_assert(sizeof(enum kcld_config_retry_mode) == sizeof(int), "enum");
_Static_assert(sizeof(enum kcld_config_fetch_mode) == sizeof(int), "enum");
_Static_assert(KCLD_CONFIG_FETCH_POLLING == 0 && KCLD_CONFIG_FETCH_FANOUT == 1,
               "fetch modes");
_Static_assert(KCLD_CONFIG_AUTO == 0 && KCLD_CONFIG_ON == 1 &&
               KCLD_CONFIG_OFF == 2, "switches");
_Static_assert(KCLD_CONFIG_RETRY_AUTO == 0 && KCLD_CONFIG_RETRY_STANDARD == 1 &&
               KCLD_CONFIG_RETRY_ADAPTIVE == 2 &&
               KCLD_CONFIG_RETRY_LEGACY == 3, "retry modes");
_Static_assert(KCLD_LOG_DEBUG == 0 && KCLD_LOG_INFO == 1 &&
               KCLD_LOG_WARN == 2 && KCLD_LOG_ERROR == 3, "levels");
_Static_assert(KCLD_LOG_JSON == 0 && KCLD_LOG_TEXT == 1, "formats");

/* The order of rows is the order of the reference texts; the rows of one
 * section stay together. */
const struct kcld_config_key kcld_config_keys[] = {
  REQ("application", application, C_NONEMPTY, "my-application",
      "KCL applicationName: identifies the consumer group and names the "
      "lease table"),
  REQ("stream", stream, C_STREAM, "my-stream",
      "stream name or ARN (or `streams`)"),
  STREAMS("streams", streams, F_LIVE,
          "instead of `stream`: several streams through one lease table in "
          "the KCL's multi-stream format; each item `name:` or `arn:`, "
          "optional `starting_position`, `starting_timestamp` (default: the "
          "top-level ones), and its own `handler`, `batch`, `retry`, "
          "`on_failure`, `filter` over the top-level ones; a reload adds and "
          "removes streams"),
  STR("region", region, "", C_REGION, 0,
      "AWS region; \"\" = AWS_REGION, AWS_DEFAULT_REGION, the profile, "
      "then instance metadata"),
  STR("endpoint", endpoint, "", C_URL, 0,
      "one base URL for every service (LocalStack: http://localhost:4566); "
      "\"\" = AWS"),
  STR("worker_id", worker_id, "", C_PRINTABLE, 0,
      "lease owner name of this process; \"\" = hostname:pid"),
  ENUM("starting_position", starting_position, "TRIM_HORIZON", s_positions, 0,
       "where a shard without a checkpoint starts"),
  TIME("starting_timestamp", starting_timestamp_ms, 0,
       "with AT_TIMESTAMP: RFC 3339 time or epoch seconds"),
  DUR("shutdown_timeout", shutdown_timeout_ms, "20s", 0, HOUR, 0,
      "on SIGTERM, how long work in flight may take to finish"),
  INT("workers", workers, "0", 0, 1024, 0,
      "worker pool threads for CPU-heavy work; 0 = number of CPUs"),
  FILTER("filter", filter, 0,
         "Lambda FilterCriteria: up to 10 patterns, OR'ed; records that match "
         "none skip the handler (a mapping or a JSON string each)"),

  STR("endpoints.kinesis", endpoints.kinesis, "", C_URL, 0,
      "Kinesis base URL; wins over endpoint and AWS_ENDPOINT_URL_KINESIS"),
  STR("endpoints.dynamodb", endpoints.dynamodb, "", C_URL, 0,
      "DynamoDB base URL; wins over endpoint and AWS_ENDPOINT_URL_DYNAMODB"),
  STR("endpoints.sqs", endpoints.sqs, "", C_URL, 0,
      "SQS base URL; wins over endpoint and AWS_ENDPOINT_URL_SQS"),
  STR("endpoints.s3", endpoints.s3, "", C_URL, 0,
      "S3 base URL (on_failure.s3, redrive --s3); wins over endpoint and "
      "AWS_ENDPOINT_URL_S3; http:// and IP addresses get path-style "
      "requests"),
  ENUM("endpoints.fips", endpoints.fips, "auto", s_switches, 0,
       "FIPS endpoints (kinesis-fips.REGION.amazonaws.com); auto = "
       "AWS_USE_FIPS_ENDPOINT, else the profile's use_fips_endpoint"),
  ENUM("endpoints.dualstack", endpoints.dualstack, "auto", s_switches, 0,
       "dual-stack endpoints (kinesis.REGION.api.aws); auto = "
       "AWS_USE_DUALSTACK_ENDPOINT, else the profile's "
       "use_dualstack_endpoint"),

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
      "CA bundle for TLS verification; \"\" = AWS_CA_BUNDLE, else the "
      "profile's ca_bundle, else the system's"),
  DUR("http.connect_timeout", http.connect_timeout_ms, "5s", 100, 5 * MIN, 0,
      "connect timeout per request"),
  DUR("http.timeout", http.timeout_ms, "30s", SEC, HOUR, 0,
      "total time per request attempt"),
  INT("http.max_attempts", http.max_attempts, "0", 0, 20, 0,
      "attempts per AWS call, the first included; 0 = AWS_MAX_ATTEMPTS, "
      "else the profile's max_attempts, else 3"),
  ENUM("http.retry_mode", http.retry_mode, "auto", s_retry_modes, 0,
       "the SDKs' retry mode (adaptive adds their client-side rate limiter; "
       "legacy reads as standard); auto = AWS_RETRY_MODE, else the "
       "profile's retry_mode, else standard"),
  INT("http.max_connections", http.max_connections, "0", 0, 100000, 0,
      "keep-alive connections kept open for reuse; 0 = leases held + 64, "
      "at least 128"),
  INT("http.dynamodb_max_in_flight", http.dynamodb_max_in_flight, "16", 0,
      10000, 0,
      "lease-table requests (renewals, takes, checkpoints) in flight at "
      "once; more wait their turn, so bursts reuse a bounded set of "
      "connections (the dynamodb handler's writes are not counted); "
      "0 = no cap"),

  STR("lease.table", lease.table, "", C_TABLE, 0,
      "lease table name; \"\" = application"),
  DUR("lease.failover_time", lease.failover_ms, "10s", SEC, HOUR, 0,
      "KCL failoverTimeMillis: a lease not renewed this long has expired"),
  DUR("lease.take_interval", lease.take_interval_ms, "", SEC, HOUR, F_EMPTY,
      "how often to take and steal leases; \"\" = 2 x failover_time"),
  INT("lease.max_leases", lease.max_leases, "0", 0, 100000, 0,
      "KCL maxLeasesForWorker; 0 = no cap"),
  INT("lease.max_steal", lease.max_steal, "1", 0, 1000, 0,
      "KCL maxLeasesToStealAtOneTime; 0 = never steal"),
  DUR("lease.shard_sync_interval", lease.shard_sync_interval_ms, "60s", SEC,
      DAY, 0, "how often to list shards and add leases for new ones"),
  DUR("lease.cleanup_delay", lease.cleanup_delay_ms, "5m", 0, 7 * DAY, 0,
      "grace before the leases of finished shards are deleted"),

  ENUM("fetch.mode", fetch.mode, "polling", s_fetch_modes, 0,
       "KCL retrievalMode: polling = GetRecords (shares 2 MB/s and 5 "
       "calls/s per shard with every polling consumer); fanout = enhanced "
       "fan-out, SubscribeToShard over HTTP/2 (2 MB/s per shard of its own, "
       "records pushed within ~70 ms; billed per consumer-shard-hour and "
       "GB)"),
  STR("fetch.consumer_name", fetch.consumer_name, "", C_TOKEN, 0,
      "fanout: the stream consumer registered (and never deregistered) at "
      "start-up, shared by every worker of the application; \"\" = "
      "application"),
  STR("fetch.consumer_arn", fetch.consumer_arn, "", C_TOKEN, 0,
      "fanout: the ARN of an existing consumer to use; nothing is "
      "registered; \"\" = register fetch.consumer_name"),
  INT("fetch.max_records", fetch.max_records, "10000", 1, 10000, F_LIVE,
      "KCL maxRecords: records per GetRecords call (polling only)"),
  DUR("fetch.idle_time", fetch.idle_time_ms, "1s", 200, 5 * MIN, F_LIVE,
      "KCL idleTimeBetweenReadsInMillis: wait after an empty read (polling "
      "only)"),
  SIZE("fetch.max_buffered_bytes", fetch.max_buffered_bytes, "8MiB",
       64 * KIB, GIB, 0,
       "fetched bytes held per shard (bodies, parse work, batches): no "
       "GetRecords while over"),
  SIZE("fetch.max_total_buffered_bytes", fetch.max_total_buffered_bytes,
       "48MiB", MIB, 64 * GIB, 0,
       "fetched bytes held over all shards: fetches wait their turn while "
       "over"),

  DUR("checkpoint.interval", checkpoint.interval_ms, "0s", 0, HOUR, 0,
      "coalesce checkpoint writes; 0 = after every batch"),

  INT("batch.size", batch.size, "100", 1, 10000, F_LIVE,
      "Lambda BatchSize: records per handler call"),
  DUR("batch.window", batch.window_ms, "0s", 0, 300 * SEC, F_LIVE,
      "Lambda MaximumBatchingWindowInSeconds: wait to fill a batch"),
  INT("batch.parallelization_factor", batch.parallelization_factor, "1", 1,
      10, F_LIVE,
      "Lambda ParallelizationFactor: concurrent batches per shard, split by "
      "key hash"),

  DUR("window.tumbling", window.tumbling_ms, "0s", 0, 900 * SEC, 0,
      "Lambda TumblingWindowInSeconds: per-shard windows of this many whole "
      "seconds of arrival time whose state passes from one handler call to "
      "the next (lambda, plugin); 0 = off"),

  INT("retry.max_retry_attempts", retry.max_retry_attempts, "3", -1, 10000,
      F_LIVE,
      "Lambda MaximumRetryAttempts: retries after the first; -1 = until the "
      "record ages out"),
  BOOL("retry.bisect_on_error", retry.bisect_on_error, "true", F_LIVE,
       "Lambda BisectBatchOnFunctionError: split a failing batch in halves"),
  DUR("retry.max_record_age", retry.max_record_age_ms, "-1", MIN, 7 * DAY,
      F_MINUS1 | F_LIVE,
      "Lambda MaximumRecordAgeInSeconds: older records are not retried; -1 "
      "= no limit"),
  DUR("retry.backoff_base", retry.backoff_base_ms, "100ms", 1, HOUR, F_LIVE,
      "first retry delay; doubles per retry, with jitter"),
  DUR("retry.backoff_max", retry.backoff_max_ms, "30s", 1, HOUR, F_LIVE,
      "longest retry delay"),

  STR("on_failure.sqs", on_failure.sqs, "", C_URL, 0,
      "dead-letter SQS queue URL; \"\" = the dead-letter directory"),
  STR("on_failure.s3", on_failure.s3, "", C_S3, 0,
      "dead-letter S3 location s3://bucket/prefix: one object per failed "
      "batch, every record whole; with on_failure.sqs only the messages too "
      "large for SQS go there; \"\" = none"),
  STR("on_failure.dir", on_failure.dir, "", C_NONE, 0,
      "dead-letter directory (JSON lines, fsync'ed) when neither "
      "on_failure.sqs nor on_failure.s3 is set; \"\" = $STATE_DIRECTORY/dead-letter under systemd, "
      "/var/lib/kcld/dead-letter as root, else "
      "${XDG_STATE_HOME:-~/.local/state}/kcld/dead-letter"),
  BOOL("on_failure.include_records", on_failure.include_records, "true",
       F_LIVE, "put the failed records themselves in the dead-letter message"),
  BOOL("on_failure.discard", on_failure.discard, "false", 0,
       "keep no copy of a record that fails for good: log it and skip it"),
  BOOL("on_failure.block", on_failure.block, "false", F_LIVE,
       "never give a failing record up: stop the shard and keep retrying"),

  ENUM("handler.type", handler.type, "stdout", s_handlers, 0,
       "how records are handled"),
  LIST("handler.command", handler.command, "[]", 0,
       "multilang, lambda: the child's argv (a list, or a string split on "
       "spaces)"),
  DUR("handler.timeout", handler.timeout_ms, "5m", SEC, DAY, 0,
      "a batch not answered within this time has failed"),
  INT("handler.concurrency", handler.concurrency, "1", 1, 1024, 0,
      "lambda: child processes serving batches of different shards"),
  STR("handler.path", handler.path, "", C_NONE, 0,
      "stdout: output file (\"\" = standard output); plugin: the .so"),
  ENUM("handler.decode", handler.decode, "base64", s_decodes, 0,
       "stdout: record data as base64, or as UTF-8 text"),
  STR("handler.table", handler.table, "", C_TABLE, 0,
      "dynamodb: the table items are written to"),
  TMPL("handler.key.pk", handler.key.pk, "${partitionKey}", 0,
       "dynamodb: partition key template over record fields"),
  TMPL("handler.key.sk", handler.key.sk,
       "${sequenceNumber}#${subSequenceNumber}", 0,
       "dynamodb: sort key template; \"\" = the table has no sort key"),
  ENUM("handler.write", handler.write, "batch", s_writes, 0,
       "dynamodb: BatchWriteItem, or conditional PutItem"),
  DUR("handler.ttl", handler.ttl_ms, "", 0, 3650 * DAY, F_EMPTY,
      "dynamodb: ttl attribute = processing time + this; \"\" = none"),

  STR("metrics.listen", metrics.listen, "127.0.0.1:9464", C_HOSTPORT, 0,
      "host:port of /metrics and /healthz, bound at start-up or kcld "
      "does not start; \"\" disables"),
  STR("metrics.emf", metrics.emf, "", C_NONE, 0,
      "file for CloudWatch Embedded Metric Format lines; \"\" = none"),
  DUR("metrics.stuck_after", metrics.stuck_after_ms, "5m", SEC, DAY, F_LIVE,
      "a shard with work that makes no progress this long is stalled: an "
      "error line, kcld_shard_stalled and /healthz 503 (counted after "
      "batch.window)"),

  ENUM("log.level", log.level, "info", s_levels, F_LIVE,
       "lowest level logged; each -v goes one lower"),
  ENUM("log.format", log.format, "json", s_formats, F_LIVE,
       "json lines, or text for people"),
};

const size_t kcld_config_nkeys =
  sizeof(kcld_config_keys) / sizeof(kcld_config_keys[0]);

const struct kcld_config_section kcld_config_sections[] = {
  {"endpoints", "per-service endpoint overrides"},
  {"credentials", "explicit credentials; default: the AWS SDK chain"},
  {"http", "the HTTP client every AWS call shares"},
  {"lease", "leases in the KCL-compatible DynamoDB lease table"},
  {"fetch", "reading records from shards"},
  {"checkpoint", "checkpoint writes to the lease table"},
  {"batch", "batches handed to the handler"},
  {"window", "tumbling windows: a state carried across handler calls"},
  {"retry", "failure policy: retries, bisection, record age"},
  {"on_failure", "where records that exhaust their retries go"},
  {"handler", "what handles the records"},
  {"handler.key", "dynamodb: item key templates"},
  {"metrics", "Prometheus metrics and health"},
  {"log", "logging (stderr)"},
};
const size_t kcld_config_nsections =
  sizeof(kcld_config_sections) / sizeof(kcld_config_sections[0]);

const char *const kcld_config_stream_overrides[] = {
  "handler", "batch", "retry", "on_failure", "filter", NULL};

int kcld_config_key_index(const char *name)
{
  for (size_t i = 0; i < kcld_config_nkeys; i++)
    if (strcmp(kcld_config_keys[i].name, name) == 0)
      return (int)i;
  return -1;
}

const char *kcld_config_key_section_doc(const char *name, size_t len)
{
  for (size_t i = 0; i < kcld_config_nsections; i++)
    if (strlen(kcld_config_sections[i].name) == len &&
        strncmp(kcld_config_sections[i].name, name, len) == 0)
      return kcld_config_sections[i].doc;
  return "";
}

int kcld_config_key_is_section(const char *name)
{
  size_t n = strlen(name);
  for (size_t i = 0; i < kcld_config_nkeys; i++)
    if (strncmp(kcld_config_keys[i].name, name, n) == 0 &&
        kcld_config_keys[i].name[n] == '.')
      return 1;
  return 0;
}

const char *kcld_config_key_enum_name(const char *name, int v)
{
  int i = kcld_config_key_index(name);
  return kcld_config_keys[i].values[v];
}

bool kcld_config_key_live(const char *name)
{
  int i = kcld_config_key_index(name);
  return i >= 0 && (kcld_config_keys[i].flags & F_LIVE);
}

/* ======== Reload ======== */

int kcld_config_diff(const struct kcld_config *before,
                     const struct kcld_config *after,
                     struct kcld_config_change **changes)
{
  struct kcld_config_change *out = NULL;
  int n = 0;
  *changes = NULL;
  for (size_t i = 0; i < kcld_config_nkeys; i++) {
    const struct kcld_config_key *k = &kcld_config_keys[i];
    if (kcld_config_value_equal(k, before, after))
      continue;
    if (!out && !(out = calloc(kcld_config_nkeys, sizeof(*out))))
      return KCLD_ENOMEM;
    out[n++] = (struct kcld_config_change){k->name, (k->flags & F_LIVE) != 0};
  }
  *changes = out;
  return n;
}

void kcld_config_key_suggest(const char *full, char *buf, size_t n)
{
  const char *best = NULL;
  size_t bestd = kcld_config_value_close_enough(strlen(full)) + 1;
  const char *leaf = strrchr(full, '.');
  const char *same[3];
  size_t nsame = 0;
  leaf = leaf ? leaf + 1 : full;
  buf[0] = '\0';
  for (size_t i = 0; i < kcld_config_nkeys + kcld_config_nsections; i++) {
    const char *cand =
      i < kcld_config_nkeys ? kcld_config_keys[i].name
                            : kcld_config_sections[i - kcld_config_nkeys].name;
    size_t d = kcld_config_value_distance(full, cand);
    if (d < bestd) {
      best = cand;
      bestd = d;
    }
    const char *cl = strrchr(cand, '.');
    if (i < kcld_config_nkeys && cl && strcmp(cl + 1, leaf) == 0 && nsame < 3)
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
