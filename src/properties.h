/* properties.h — KCL MultiLangDaemon .properties files (kcld --properties).
 *
 * Reads Java properties syntax (java.util.Properties.load): `key=value`,
 * `key:value` or `key value`; `#` and `!` comment lines; a line ending in an
 * odd number of backslashes continues on the next (whose leading blanks are
 * dropped); escapes \t \n \r \f \uXXXX (written as UTF-8) and \x for any
 * other x.  A later key replaces an earlier one.  Bytes are taken as UTF-8.
 *
 * Each KCL key is mapped to its kcld setting (config.h): executableName to
 * handler.command (and handler.type multilang), streamArn (wins) or
 * streamName to stream, failoverTimeMillis to lease.failover_time, and so on
 * (the table in properties.c).  Keys "kcld.<key>" set any kcld key directly,
 * e.g. kcld.batch.size = 50.  KCL keys that mean nothing to kcld are logged
 * once each at WARN as ignored, with the reason; unknown keys likewise. */
#ifndef KCLD_PROPERTIES_H
#define KCLD_PROPERTIES_H

#include <stddef.h>

#include "config.h"

struct kcld_properties;

/* Parses `len` bytes of properties text.  Returns 0 and *out, or
 * KCLD_ENOMEM.  Every text parses (as Java's loader does). */
int kcld_properties_parse(const char *text, size_t len,
                          struct kcld_properties **out);

/* The number of distinct keys. */
size_t kcld_properties_count(const struct kcld_properties *p);

/* The value of `key` (after unescaping), or NULL when absent.  *line (when
 * not NULL) gets the line where the key's entry starts. */
const char *kcld_properties_get(const struct kcld_properties *p,
                                const char *key, size_t *line);

/* Entry i (0 <= i < count) in order of first appearance: its key, value and
 * line. */
void kcld_properties_entry(const struct kcld_properties *p, size_t i,
                           const char **key, const char **value,
                           size_t *line);

/* Frees p (wiping values).  NULL is a no-op. */
void kcld_properties_free(struct kcld_properties *p);

/* Maps p to a config as kcld_config_parse() would make one (same checks,
 * defaults and errors; `name` names the file in messages and becomes
 * cfg->path).  Keys with no meaning in kcld are logged as ignored.  Returns
 * 0, KCLD_ECONFIG (with *errors when errors is not NULL) or KCLD_ENOMEM. */
int kcld_properties_to_config(const struct kcld_properties *p,
                              const char *name, struct kcld_config **out,
                              char **errors);

/* Reads the file at `path` and maps it: kcld_properties_parse then
 * kcld_properties_to_config.  KCLD_EIO when it cannot be read (*errors
 * says why). */
int kcld_properties_load(const char *path, struct kcld_config **out,
                         char **errors);

#endif
