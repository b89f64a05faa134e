/* config_values.h — one configuration value: its text checked, converted
 * and stored in its field as its key's row (config_keys.h) says.
 *
 * Internal to the config module.  The public parsers and formatters of
 * durations and sizes (kcld_config_parse_duration() and friends) are
 * declared in config.h and live here too. */
#ifndef KCLD_CONFIG_VALUES_H
#define KCLD_CONFIG_VALUES_H

#include <stddef.h>
#include <stdint.h>

#include "config_keys.h"

/* Converts `text` (env-expanded already; NULL for a YAML null) for key k
 * and stores it in cfg, replacing (and wiping) what was there.  Returns 0,
 * KCLD_ENOMEM, or KCLD_EINVAL with the reason in why[0..n-1], e.g. "must be
 * 1..10000, got 0" (never a secret's value). */
int kcld_config_value_store(const struct kcld_config_key *k,
                            struct kcld_config *cfg, const char *text,
                            char *why, size_t n);

/* Where and why ${...} expansion failed. */
struct kcld_config_expand_err {
  size_t off, len;  /* the offending "${..." in the input */
  char why[512];
};

/* Expands ${VAR}, ${VAR:-default} (default when unset or empty) and $$ (a
 * literal $) in `in`.  Returns 0 and a malloc'd *out, KCLD_EINVAL with *e
 * filled, or KCLD_ENOMEM. */
int kcld_config_value_expand(const char *in, char **out,
                             struct kcld_config_expand_err *e);

/* True when key k has the same value in a and b. */
int kcld_config_value_equal(const struct kcld_config_key *k,
                            const struct kcld_config *a,
                            const struct kcld_config *b);

/* What key k's values are, for messages: "an integer", "a duration"... */
const char *kcld_config_value_type(const struct kcld_config_key *k);

/* key k's range as the reference shows it: "1..10000", "-1 or 1m..7d". */
void kcld_config_value_range(const struct kcld_config_key *k, char *buf,
                             size_t n);

/* Replaces *dst (wiped and freed) by a copy of s.  0 or KCLD_ENOMEM. */
int kcld_config_value_set(char **dst, const char *s);

/* Wipes and frees s; NULL is a no-op. */
void kcld_config_value_wipe(char *s);

/* Frees the items and the array, and empties l. */
void kcld_config_value_list_free(struct kcld_config_list *l);

/* Frees the streams and the array, and empties s. */
void kcld_config_value_streams_free(struct kcld_config_streams *s);

struct kcld_filter_error;

/* Writes a refused filter pattern's error as a message into why (n
 * bytes): its path, what is wrong and, when in_text (the pattern was JSON
 * text), its line and column in that text.  Returns KCLD_EINVAL. */
int kcld_config_value_filter_error(const struct kcld_filter_error *e,
                                   int in_text, char *why, size_t n);

/* True when `names` (NULL-terminated; NULL = empty) holds s. */
int kcld_config_value_among(const char *s, const char *const *names);

/* True when s is a DynamoDB table name (3..255 of a-z A-Z 0-9 _ . -). */
int kcld_config_value_is_table_name(const char *s);

/* True when s is a stream consumer name (1..128 of a-z A-Z 0-9 _ . -). */
int kcld_config_value_is_consumer_name(const char *s);

/* True when URL s has a user part ("user:password@host", "user@host"),
 * with or without a scheme: the part a password would be in. */
int kcld_config_value_has_userinfo(const char *s);

/* Writes s double-quoted into buf[0..n-1] (n >= 96 holds any s), with
 * control characters, quotes and backslashes escaped, cut after 60
 * characters; returns buf. */
char *kcld_config_value_quote(const char *s, char *buf, size_t n);

/* Writes epoch ms as RFC 3339 UTC ("2024-05-01T12:00:00.250Z"). */
void kcld_config_value_format_time(int64_t ms, char *buf, size_t n);

/* Optimal string alignment distance of a and b, for did-you-mean; large
 * for strings over 63 characters. */
size_t kcld_config_value_distance(const char *a, const char *b);

/* The largest distance from a word of `len` characters that is still
 * worth a did-you-mean. */
size_t kcld_config_value_close_enough(size_t len);

#endif
