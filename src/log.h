/* log.h — leveled logging: JSON lines (default) or text, on stderr.
 *
 * One call writes one whole line, safely from any thread:
 *
 *   kcld_log(KCLD_LOG_WARN, "GetRecords throttled", "shard", shard_id,
 *            KCLD_LOG_INT("attempt", 3), KCLD_LOG_BOOL("retry", 1), NULL);
 *
 * JSON: {"ts":"2026-11-23T09:50:00.123Z","level":"warn","msg":"...",
 *        "application":"...","worker":"...","shard":"...","attempt":3,...}
 *
 * Fields follow the message, ended by NULL: a plain key/value string pair, or
 * one of the typed field macros below, which write JSON numbers and
 * booleans.  Keys are snake_case, like the config keys and metric labels.
 * A string field whose key names a secret (secret, token, password,
 * authorization, credential) is printed as "[redacted]", as a last guard:
 * callers must not pass secrets at all.
 *
 * Every line carries `application` and `worker` once kcld_log_set_context()
 * set them (a field of the same key passed by a caller is then left out).
 * Under systemd (JOURNAL_STREAM names the stream written to) each line
 * starts with its syslog priority, "<3>" error, "<4>" warn, "<6>" info,
 * "<7>" debug, which journald turns into the entry's priority.
 *
 * Floods are cut inside kcld_log itself, per message text (the msg
 * argument; fields do not count): KCLD_LOG_BURST lines at once, then
 * KCLD_LOG_RATE a second.  The lines past that are counted, and one "N
 * similar lines suppressed" line of the same level (fields `suppressed` and
 * `suppressed_msg`) follows once the first of them is a second old — when
 * the message comes again, when another line is written, or at
 * kcld_log_flush().  So a flood writes about KCLD_LOG_RATE + 1 lines a
 * second.  A level OR'd with KCLD_LOG_UNLIMITED is never cut (for lines
 * that stand for a record, e.g. one given up on).  kcld_log_setup() starts
 * every count afresh. */
#ifndef KCLD_LOG_H
#define KCLD_LOG_H

#include <stdint.h>
#include <stdio.h>

enum kcld_log_level {
  KCLD_LOG_DEBUG = 0,
  KCLD_LOG_INFO = 1,
  KCLD_LOG_WARN = 2,
  KCLD_LOG_ERROR = 3,
  KCLD_LOG_OFF = 4,
  /* Flag OR'd into a level: this line is never rate-limited. */
  KCLD_LOG_UNLIMITED = 0x100
};

enum kcld_log_format { KCLD_LOG_JSON = 0, KCLD_LOG_TEXT = 1 };

/* Lines of one message text written at once, and then per second, before
 * the rest are counted instead. */
#define KCLD_LOG_BURST 20
#define KCLD_LOG_RATE 5

/* ======== Typed fields ======== */

enum kcld_log_field_type {
  KCLD_LOG_FIELD_INT = 0,
  KCLD_LOG_FIELD_UINT,
  KCLD_LOG_FIELD_DOUBLE, /* NaN and infinities are written as null */
  KCLD_LOG_FIELD_BOOL,
  KCLD_LOG_FIELD_STR
};

struct kcld_log_field {
  const char *key;
  enum kcld_log_field_type type;
  union {
    int64_t i;
    uint64_t u;
    double d;
    const char *s;
  } v;
};

/* The marker that tells kcld_log a struct kcld_log_field pointer follows in
 * place of a key/value pair.  Use the macros, not this. */
extern const char kcld_log_typed[];

#define KCLD_LOG_FIELD_(k, t, m, x)                                          \
  kcld_log_typed, (const struct kcld_log_field *)&(                          \
                    const struct kcld_log_field){(k), (t), {.m = (x)}}

/* A signed integer field, written as a JSON number. */
#define KCLD_LOG_INT(k, x)                                                   \
  KCLD_LOG_FIELD_(k, KCLD_LOG_FIELD_INT, i, (int64_t)(x))
/* An unsigned integer field (counts, sizes, sequence-free numbers). */
#define KCLD_LOG_UINT(k, x)                                                  \
  KCLD_LOG_FIELD_(k, KCLD_LOG_FIELD_UINT, u, (uint64_t)(x))
/* A floating-point field (seconds, ratios). */
#define KCLD_LOG_DOUBLE(k, x)                                                \
  KCLD_LOG_FIELD_(k, KCLD_LOG_FIELD_DOUBLE, d, (double)(x))
/* A boolean field: true when x is non-zero. */
#define KCLD_LOG_BOOL(k, x) KCLD_LOG_FIELD_(k, KCLD_LOG_FIELD_BOOL, i, !!(x))
/* A string field: the same as passing the key and value as a plain pair
 * (NULL is written as null). */
#define KCLD_LOG_STR(k, x) (const char *)(k), (const char *)(x)

/* ======== Set-up ======== */

/* Sets the threshold, format and stream (NULL = stderr), and decides the
 * journald priority prefix (JOURNAL_STREAM's device:inode equal to the
 * stream's).  May be called again at any time, e.g. once the config is
 * read. */
void kcld_log_setup(enum kcld_log_level level, enum kcld_log_format format,
                    FILE *out);

/* Sets the application and worker written on every line (copied; NULL or
 * "" leaves that field out).  Once at start-up. */
void kcld_log_set_context(const char *application, const char *worker);

/* Parses "debug", "info", "warn", "error", "off"; returns -1 when unknown. */
int kcld_log_level_parse(const char *name);

/* `level` lowered by `by` steps (each -v), never below KCLD_LOG_DEBUG. */
enum kcld_log_level kcld_log_level_lower(enum kcld_log_level level, int by);

/* True when a line at this level would be written. */
int kcld_log_enabled(enum kcld_log_level level);

/* ======== Writing ======== */

/* Writes one line: msg, then the fields (see above), ended by NULL.  A
 * NULL string value is written as JSON null. */
void kcld_log(enum kcld_log_level level, const char *msg, ...);

/* Writes one line whose message is printf-formatted; no fields.  The
 * formatted text is what the rate limit counts. */
void kcld_logf(enum kcld_log_level level, const char *fmt, ...)
  __attribute__((format(printf, 2, 3)));

/* Writes the pending "N similar lines suppressed" lines: those whose second
 * is over, or every one when `all` (at exit).  Returns the lines written.
 * A timer calling this now and then makes summaries appear even when
 * nothing else is logged. */
int kcld_log_flush(int all);

#endif
