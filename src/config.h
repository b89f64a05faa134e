/* config.h — kcld's configuration: a YAML file becomes a struct kcld_config.
 *
 * One table of keys in config_keys.c (name, type, target field, default,
 * range, one-line doc) drives parsing, validation, defaults, the reference
 * file conf/kcld.yaml and docs/configuration.md.  Every error names the file,
 * line, column and key and says what was expected:
 *
 *   kcld.yaml:12:9: batch.size: must be 1..10000, got 0
 *
 * Hostile files are refused early and cheaply: a file over
 * KCLD_CONFIG_MAX_BYTES or nested deeper than KCLD_CONFIG_MAX_DEPTH is an
 * error (at the position where the limit is passed) before anything is
 * built from it.  URL values never carry credentials ("user:password@"):
 * they are refused, without echoing the value.
 *
 * Units are part of every field name: `_ms` fields are milliseconds,
 * `_bytes` fields are bytes.  Strings are never NULL after a successful load;
 * "" means "not set".  Secrets (credentials.secret_access_key,
 * credentials.session_token) never appear in an error or a dump, and are
 * wiped when the config is freed.
 *
 * A loaded config is read-only and may be shared by every module and thread. */
#ifndef KCLD_CONFIG_H
#define KCLD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"

#define KCLD_CONFIG_DEFAULT_PATH "/etc/kcld/kcld.yaml"

/* At most this many errors are reported for one file (the first ones in
 * file order); a last line says how many more there were. */
#define KCLD_CONFIG_MAX_ERRORS 20

/* The largest configuration file read (1 MiB), and the deepest nesting of
 * mappings and lists in it (the top-level mapping is depth 1). */
#define KCLD_CONFIG_MAX_BYTES (1024 * 1024)
#define KCLD_CONFIG_MAX_DEPTH 64

/* starting_position.  Same values as enum kcld_initial_position
 * (lease/coordinator.h). */
enum kcld_config_position {
  KCLD_CONFIG_POS_TRIM_HORIZON = 0,
  KCLD_CONFIG_POS_LATEST = 1,
  KCLD_CONFIG_POS_AT_TIMESTAMP = 2
};

/* handler.type */
enum kcld_config_handler {
  KCLD_CONFIG_HANDLER_MULTILANG = 0,
  KCLD_CONFIG_HANDLER_LAMBDA = 1,
  KCLD_CONFIG_HANDLER_DYNAMODB = 2,
  KCLD_CONFIG_HANDLER_PLUGIN = 3,
  KCLD_CONFIG_HANDLER_STDOUT = 4
};

/* handler.decode */
enum kcld_config_decode {
  KCLD_CONFIG_DECODE_BASE64 = 0,
  KCLD_CONFIG_DECODE_UTF8 = 1
};

/* handler.write */
enum kcld_config_write {
  KCLD_CONFIG_WRITE_BATCH = 0,
  KCLD_CONFIG_WRITE_CONDITIONAL = 1
};

/* endpoints.fips, endpoints.dualstack */
enum kcld_config_switch {
  KCLD_CONFIG_AUTO = 0,        /* the environment's, else the profile's */
  KCLD_CONFIG_ON = 1,
  KCLD_CONFIG_OFF = 2
};

/* http.retry_mode */
enum kcld_config_retry_mode {
  KCLD_CONFIG_RETRY_AUTO = 0,  /* AWS_RETRY_MODE, the profile's, standard */
  KCLD_CONFIG_RETRY_STANDARD = 1,
  KCLD_CONFIG_RETRY_ADAPTIVE = 2,
  KCLD_CONFIG_RETRY_LEGACY = 3 /* read as standard */
};

/* fetch.mode */
enum kcld_config_fetch_mode {
  KCLD_CONFIG_FETCH_POLLING = 0,  /* GetRecords */
  KCLD_CONFIG_FETCH_FANOUT = 1    /* enhanced fan-out: SubscribeToShard */
};

/* The services kcld_config_endpoint() answers for.  Same values as enum
 * kcld_aws_service (aws/call.h); STS (3) has no key of its own. */
enum kcld_config_service {
  KCLD_CONFIG_KINESIS = 0,
  KCLD_CONFIG_DYNAMODB = 1,
  KCLD_CONFIG_SQS = 2,
  KCLD_CONFIG_S3 = 4
};

/* A list of strings: items[0..len-1], then items[len] == NULL, so `items` can
 * be passed as an argv. */
struct kcld_config_list {
  char **items;
  size_t len;
};

struct kcld_config_endpoints {
  char *kinesis;               /* base URL; "" = not set */
  char *dynamodb;
  char *sqs;
  char *s3;
  enum kcld_config_switch fips;      /* FIPS endpoints */
  enum kcld_config_switch dualstack; /* dual-stack endpoints */
};

struct kcld_config_credentials {
  char *profile;               /* "" = AWS_PROFILE or "default" */
  char *access_key_id;         /* explicit keys; "" = the provider chain */
  char *secret_access_key;     /* SECRET: never print */
  char *session_token;         /* SECRET: never print; "" = none */
};

struct kcld_config_http {
  char *ca_file;               /* CA bundle path; "" = the system's */
  int64_t connect_timeout_ms;  /* per request */
  int64_t timeout_ms;          /* total per request attempt */
  int max_attempts;            /* total attempts per call; 0 =
                                  AWS_MAX_ATTEMPTS, the profile's, 3 */
  enum kcld_config_retry_mode retry_mode;
  int max_connections;         /* keep-alive connections kept; 0 = auto */
  int dynamodb_max_in_flight;  /* DynamoDB requests at once; 0 = no cap */
};

struct kcld_config_lease {
  char *table;                 /* resolved: application when not set */
  int64_t failover_ms;         /* KCL failoverTimeMillis */
  int64_t take_interval_ms;    /* resolved: 2 x failover_ms when not set */
  int max_leases;              /* per worker; 0 = no cap */
  int max_steal;               /* leases stolen per take; 0 = never steal */
  int64_t shard_sync_interval_ms;
  int64_t cleanup_delay_ms;    /* before finished shards' leases go */
};

struct kcld_config_fetch {
  enum kcld_config_fetch_mode mode;
  char *consumer_name;         /* fan-out; resolved: application when not
                                  set */
  char *consumer_arn;          /* fan-out: an existing consumer; "" =
                                  register consumer_name */
  int max_records;             /* GetRecords Limit */
  int64_t idle_time_ms;        /* wait after an empty GetRecords */
  int64_t max_buffered_bytes;  /* per shard prefetch bound */
  int64_t max_total_buffered_bytes; /* the same, over all shards */
};

struct kcld_config_checkpoint {
  int64_t interval_ms;         /* 0 = after every batch */
};

struct kcld_config_batch {
  int size;                    /* records per handler call */
  int64_t window_ms;           /* wait this long to fill a batch */
  int parallelization_factor;  /* concurrent batches per shard */
};

/* Tumbling windows (process/window.h). */
struct kcld_config_window {
  int64_t tumbling_ms;         /* Lambda TumblingWindowInSeconds; 0 = off;
                                  whole seconds, lambda and plugin only */
};

struct kcld_config_retry {
  int max_retry_attempts;      /* after the first; -1 = until expiry */
  bool bisect_on_error;
  int64_t max_record_age_ms;   /* -1 = no limit */
  int64_t backoff_base_ms;
  int64_t backoff_max_ms;      /* >= backoff_base_ms */
};

struct kcld_config_on_failure {
  char *sqs;                   /* dead-letter queue URL; "" = none */
  char *s3;                    /* dead-letter s3://bucket/prefix; "" = none */
  char *dir;                   /* dead-letter directory; resolved after
                                  loading: "" only with sqs, discard or
                                  block */
  bool include_records;        /* the failed records in the message */
  bool discard;                /* skip records that fail for good */
  bool block;                  /* never give a failing record up */
};

struct kcld_config_handler_key {
  char *pk;                    /* record template, e.g. "${partitionKey}";
                                  not env-expanded */
  char *sk;                    /* "" = table without a sort key */
};

struct kcld_config_handler_cfg {
  enum kcld_config_handler type;
  struct kcld_config_list command; /* multilang, lambda: argv of the child */
  int64_t timeout_ms;          /* per batch */
  int concurrency;             /* lambda children */
  char *path;                  /* stdout: output file; plugin: the .so */
  enum kcld_config_decode decode;  /* stdout */
  char *table;                 /* dynamodb: target table */
  struct kcld_config_handler_key key;
  enum kcld_config_write write;    /* dynamodb */
  int64_t ttl_ms;              /* dynamodb TTL attribute; 0 = none */
};

struct kcld_config_metrics {
  char *listen;                /* host:port; "" = disabled; port 0 = any */
  char *emf;                   /* EMF output file; "" = none */
  int64_t stuck_after_ms;      /* no progress this long: stalled */
};

/* One item of `streams:`. */
struct kcld_config_stream {
  char *stream;                /* name or ARN (its `name:` or `arn:`) */
  enum kcld_config_position starting_position; /* its own, else the
                                  top-level starting_position */
  int64_t starting_timestamp_ms; /* likewise; epoch ms with AT_TIMESTAMP,
                                  else -1 */
  bool own_position;           /* starting_position set in the item */
  bool own_timestamp;          /* starting_timestamp set in the item */
  struct kcld_config *cfg;     /* the stream's configuration: the top-level
                                  keys with the item's overrides (handler,
                                  batch, retry, on_failure, filter); NULL =
                                  the top-level configuration as it is */
};

struct kcld_config_streams {
  struct kcld_config_stream *v;
  size_t len;                  /* 0: `stream` is used */
};

struct kcld_config_log {
  enum kcld_log_level level;
  enum kcld_log_format format;
};

struct kcld_config {
  char *path;                  /* the file as given, for messages */
  char *application;           /* required; KCL applicationName */
  char *stream;                /* name or ARN; required unless `streams`
                                  is set ("" then) */
  struct kcld_config_streams streams; /* several streams through one lease
                                  table in the KCL's multi-stream format;
                                  exclusive with `stream` */
  char *region;                /* "" = resolve elsewhere (credentials.h:
                                  AWS_REGION, AWS_DEFAULT_REGION, profile,
                                  instance metadata) */
  char *endpoint;              /* one base URL for every service; "" = none.
                                  Use kcld_config_endpoint() to resolve. */
  struct kcld_config_endpoints endpoints;
  struct kcld_config_credentials credentials;
  struct kcld_config_http http;
  char *worker_id;             /* resolved: hostname:pid when not set */
  enum kcld_config_position starting_position;
  int64_t starting_timestamp_ms; /* epoch ms with AT_TIMESTAMP, else -1 */
  int64_t shutdown_timeout_ms;
  int workers;                 /* pool threads; 0 = number of CPUs */
  struct kcld_config_list filter; /* filter patterns (process/filter.h),
                                  each a JSON text kcld_filter_add_text()
                                  accepts, all compiled together at load
                                  (so valid, at most 10 patterns); empty =
                                  no filter */
  struct kcld_config_lease lease;
  struct kcld_config_fetch fetch;
  struct kcld_config_checkpoint checkpoint;
  struct kcld_config_batch batch;
  struct kcld_config_window window;
  struct kcld_config_retry retry;
  struct kcld_config_on_failure on_failure;
  struct kcld_config_handler_cfg handler;
  struct kcld_config_metrics metrics;
  struct kcld_config_log log;
  struct kcld_config_origin *origin; /* where each key was set, for
                                        kcld_config_check_runtime();
                                        private to config.c */
};

/* Reads and validates the YAML file at `path` (named as given in messages).
 * Returns 0 and *out, or a negative code and *out == NULL:
 * KCLD_ECONFIG (the file is invalid), KCLD_EIO (it cannot be read),
 * KCLD_ENOMEM.  On error and when `errors` is not NULL, *errors receives a
 * malloc'd text of one line per error ("file:line:col: key: message\n");
 * otherwise *errors is set to NULL.  Environment variables are read during
 * the call (${VAR} expansion). */
int kcld_config_load(const char *path, struct kcld_config **out,
                     char **errors);

/* As kcld_config_load(), from `len` bytes of YAML text; `name` stands for the
 * file in messages. */
int kcld_config_parse(const char *name, const char *text, size_t len,
                      struct kcld_config **out, char **errors);

/* One key set by its dotted name, for configs that come from elsewhere than
 * YAML (kcld --properties). */
struct kcld_config_setting {
  const char *key;             /* e.g. "lease.failover_time" */
  const char *value;           /* text as a YAML scalar would give it */
  const char *label;           /* names the setting in messages; NULL = key */
  size_t line;                 /* line in `name`, for messages */
};

/* As kcld_config_parse(), from the defaults plus settings[0..n-1] applied in
 * order (a later one wins) with the same checks and derived defaults; no
 * ${VAR} expansion.  Errors read "name:line:1: label: message". */
int kcld_config_from_settings(const char *name,
                              const struct kcld_config_setting *settings,
                              size_t n, struct kcld_config **out,
                              char **errors);

/* Wipes the secrets and frees the config and every string it owns.  NULL is
 * a no-op. */
void kcld_config_free(struct kcld_config *cfg);

/* The checks that look at the machine rather than the text, for
 * `--check-config` and daemon start-up (after a successful load):
 *   - handler.type multilang or lambda: handler.command's program exists
 *     and is executable (searched in PATH when it has no "/", as execvp
 *     does);
 *   - handler.type plugin: handler.path is a readable regular file;
 *   (both for the top-level handler and each stream's own);
 *   - the endpoint variables kcld_config_endpoint() reads
 *     (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_<SVC>) carry no credentials.
 * Returns 0, KCLD_ECONFIG with *errors (when not NULL) a malloc'd text of
 * one line per problem, "file:line:col: key: message\n" at the key's value,
 * or KCLD_ENOMEM.  *errors is NULL when there is nothing to report. */
int kcld_config_check_runtime(const struct kcld_config *cfg, char **errors);

/* One key whose effective value differs between two configs. */
struct kcld_config_change {
  const char *key;             /* dotted name, e.g. "batch.size"; static */
  bool live;                   /* true: may take effect in a running kcld
                                  (from the next batch); false: needs a
                                  restart */
};

/* The keys whose values differ between `before` and `after` (derived values
 * included: lease.table follows application when not set), in key-table
 * order, for a reload: apply the live ones, name the others in one
 * warning.  Returns the number of changes (0 when none) and *changes, a
 * malloc'd array (NULL when none) to free(); or KCLD_ENOMEM. */
int kcld_config_diff(const struct kcld_config *before,
                     const struct kcld_config *after,
                     struct kcld_config_change **changes);

/* True when key `name` (dotted) can change in a running kcld; false for
 * keys that need a restart and for unknown names. */
bool kcld_config_key_live(const char *name);

/* The default of key `name` (dotted, e.g. "lease.failover_time") as the key
 * table gives it: milliseconds for a duration, bytes for a size, the value
 * of an integer, 0/1 of a bool, the index of an enum value.  For code that
 * fills a module's options without a loaded configuration (tests, tools):
 * modules never default a value that comes from the configuration, and no
 * one copies the number.  Returns 0 and *out, or KCLD_ENOTFOUND for an
 * unknown key, a key of another type, or one whose default is "not set". */
int kcld_config_key_default(const char *name, int64_t *out);

/* http.retry_mode as the AWS client takes it: "standard", "adaptive",
 * "legacy", or NULL for auto (the environment's, else the profile's). */
const char *kcld_config_retry_mode_name(const struct kcld_config *cfg);

/* endpoints.fips / endpoints.dualstack as the AWS client takes them: 1 on,
 * -1 off, 0 auto (the environment's, else the profile's). */
int kcld_config_switch_value(enum kcld_config_switch s);

/* The base URL to send `svc` requests to, first that is set:
 * endpoints.<svc>, endpoint, $AWS_ENDPOINT_URL_<SVC>, $AWS_ENDPOINT_URL.
 * The variables are ignored when AWS_IGNORE_CONFIGURED_ENDPOINT_URLS is
 * true, as in the AWS SDKs.  Returns NULL when none is set (use the AWS
 * endpoint of the region).  When `source` is not NULL it receives the name
 * of the key or variable that answered, or NULL.  Values from the
 * environment stay valid while the environment is unchanged. */
const char *kcld_config_endpoint(const struct kcld_config *cfg,
                                 enum kcld_config_service svc,
                                 const char **source);

/* The effective configuration as YAML that kcld_config_parse() accepts and
 * that yields the same config, with set secrets written as "[redacted]".
 * Returns a malloc'd string, or NULL when out of memory. */
char *kcld_config_dump(const struct kcld_config *cfg);

enum kcld_config_ref {
  KCLD_CONFIG_REF_YAML = 0,    /* conf/kcld.yaml */
  KCLD_CONFIG_REF_MARKDOWN = 1 /* docs/configuration.md */
};

/* The reference text generated from the key table: every key with its
 * default and doc.  Returns a malloc'd string, or NULL when out of memory. */
char *kcld_config_reference(enum kcld_config_ref format);

/* Parses a duration: "0", or one or more <number><unit> terms, units ms, s,
 * m, h, d ("250ms", "1.5s", "1h30m").  The result must be whole
 * milliseconds.  Returns 0 and *ms, or KCLD_EINVAL. */
int kcld_config_parse_duration(const char *text, int64_t *ms);

/* Parses a size: "0", or <number><unit> with unit B, KiB, MiB, GiB, TiB
 * (1024-based) or kB, MB, GB, TB (1000-based), e.g. "8MiB", "1.5GB".  The
 * result must be whole bytes.  Returns 0 and *bytes, or KCLD_EINVAL. */
int kcld_config_parse_size(const char *text, int64_t *bytes);

/* Writes ms in the largest unit that divides it ("5m", "1500ms", "0s",
 * "-1" for -1) into buf; returns buf. */
char *kcld_config_format_duration(int64_t ms, char *buf, size_t n);

/* Writes bytes in the largest unit that divides it ("8MiB", "1MB", "100B")
 * into buf; returns buf. */
char *kcld_config_format_size(int64_t bytes, char *buf, size_t n);

#endif
