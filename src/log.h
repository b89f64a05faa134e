/* log.h — leveled logging: JSON lines (default) or text, on stderr.
 *
 * One call writes one whole line, safely from any thread:
 *
 *   kcld_log(KCLD_LOG_WARN, "GetRecords throttled",
 *            "shard", shard_id, "attempt", "3", NULL);
 *
 * JSON: {"ts":"2026-11-23T09:50:00.123Z","level":"warn","msg":"...","shard":"...",...}
 * Fields are NULL-terminated key/value string pairs.  A field whose key names a
 * secret (secret, token, password, authorization, credential) is printed as
 * "[redacted]", as a last guard: callers must not pass secrets at all. */
#ifndef KCLD_LOG_H
#define KCLD_LOG_H

#include <stdio.h>

enum kcld_log_level {
  KCLD_LOG_DEBUG = 0,
  KCLD_LOG_INFO = 1,
  KCLD_LOG_WARN = 2,
  KCLD_LOG_ERROR = 3,
  KCLD_LOG_OFF = 4
};

enum kcld_log_format { KCLD_LOG_JSON = 0, KCLD_LOG_TEXT = 1 };

/* Sets the threshold, format and stream (NULL = stderr).  May be called again
 * at any time, e.g. once the config is read. */
void kcld_log_setup(enum kcld_log_level level, enum kcld_log_format format,
                    FILE *out);

/* Parses "debug", "info", "warn", "error", "off"; returns -1 when unknown. */
int kcld_log_level_parse(const char *name);

/* True when a line at this level would be written. */
int kcld_log_enabled(enum kcld_log_level level);

/* Writes one line: msg, then NULL-terminated key/value string pairs.  A NULL
 * value is written as JSON null. */
void kcld_log(enum kcld_log_level level, const char *msg, ...);

/* Writes one line whose message is printf-formatted; no fields. */
void kcld_logf(enum kcld_log_level level, const char *fmt, ...)
  __attribute__((format(printf, 2, 3)));

#endif
