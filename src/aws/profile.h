/* profile.h — the AWS shared files: ~/.aws/config and ~/.aws/credentials,
 * read the way the AWS SDKs read them.
 *
 * Locations: AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE (a leading ~
 * is the home directory), else ~/.aws/config and ~/.aws/credentials.
 * Sections: [default] and [profile NAME] in the config file, [NAME] in the
 * credentials file (both files may hold the same profile; the credentials
 * file wins key by key), [sso-session NAME] and [services NAME] in the
 * config file.  Keys are case-insensitive, section names are not.  Comments
 * are whole lines starting with # or ;, or # / ; after whitespace in a
 * value.  An indented line after a property with an empty value is a
 * sub-property of it (`kinesis =` then `  endpoint_url = ...` in a services
 * section); other indented lines continue nothing and are skipped.
 *
 * Values may be secrets: they are wiped when the files are freed and are
 * never logged.  Thread-safe as long as one set of files is used by one
 * thread; no global state. */
#ifndef KCLD_AWS_PROFILE_H
#define KCLD_AWS_PROFILE_H

#include <stddef.h>

struct kcld_profile_files;
struct kcld_profile;

enum kcld_profile_kind {
  KCLD_PROFILE = 0,         /* [default], [profile NAME], credentials [NAME] */
  KCLD_PROFILE_SSO_SESSION, /* [sso-session NAME] */
  KCLD_PROFILE_SERVICES     /* [services NAME] */
};

/* Reads both files.  A missing file is no error; one that cannot be read
 * is logged (warning, with its path) and skipped.  Returns 0 or
 * KCLD_ENOMEM. */
int kcld_profile_files_load(struct kcld_profile_files **out);

/* Wipes and frees.  NULL is ignored. */
void kcld_profile_files_free(struct kcld_profile_files *f);

/* The section of that kind and name, or NULL. */
const struct kcld_profile *
kcld_profile_find(const struct kcld_profile_files *f,
                  enum kcld_profile_kind kind, const char *name);

/* The section's name (the profile name for profiles). */
const char *kcld_profile_name(const struct kcld_profile *p);

/* The value of `key` (case-insensitive), or NULL when absent.  An empty
 * value reads as absent.  NULL `p` reads as an empty section. */
const char *kcld_profile_get(const struct kcld_profile *p, const char *key);

/* The value of `key` as the config file alone sets it (settings such as
 * region are read from there only), or NULL. */
const char *kcld_profile_get_config(const struct kcld_profile *p,
                                   const char *key);

/* The value of sub-property `sub` of property `key`, or NULL. */
const char *kcld_profile_get_sub(const struct kcld_profile *p,
                                 const char *key, const char *sub);

/* The profile to use: `configured` when non-empty, else AWS_PROFILE, else
 * "default".  *explicit_out (may be NULL) is 1 unless it is the implicit
 * default. */
const char *kcld_profile_selected(const char *configured, int *explicit_out);

/* Path of one of the shared files, or of a file under ~/.aws (`name`
 * "config", "credentials", "sso/cache/X.json"): the environment variable
 * `var` (NULL = none) with ~ expanded, else ~/.aws/<name>.  malloc'd, or
 * NULL when there is no home directory or out of memory. */
char *kcld_profile_path(const char *var, const char *name);

/* Reads a whole file without stdio buffers (so no unwiped copy of a secret
 * stays behind), at most 4 MiB.  Returns 0 with a NUL-terminated malloc'd
 * buffer the caller must wipe and free, KCLD_ENOTFOUND when absent, else
 * KCLD_EIO or KCLD_ENOMEM. */
int kcld_profile_read_file(const char *path, char **out, size_t *len);

/* A boolean setting as the SDKs read one: "true" / "false" in any case.
 * Returns 1, 0, or -1 when `v` is NULL or neither. */
int kcld_profile_bool(const char *v);

#endif
