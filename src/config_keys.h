/* config_keys.h — the key table: the schema of struct kcld_config.
 *
 * Internal to the config module (config.c, config_values.c, config_dump.c);
 * other modules use config.h.  One row per key names it by its dotted path
 * and gives its type, the struct field it fills, its default (as YAML text,
 * parsed by the same code as a file), its range or values, flags and a
 * one-line doc.  Parsing, validation, defaults, the dump and both reference
 * texts (conf/kcld.yaml, docs/configuration.md) walk it.
 *
 * Adding a key: a field in struct kcld_config (config.h), a row in
 * config_keys.c (in the section it belongs to; every row macro takes the
 * flags before the doc: F_LIVE when the running daemon applies a new value
 * on reload, else 0), then regenerate the reference texts (`kcld
 * config-reference yaml|markdown`). */
#ifndef KCLD_CONFIG_KEYS_H
#define KCLD_CONFIG_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

enum ktype {
  K_STR,      /* string, env-expanded */
  K_INT,      /* int */
  K_BOOL,     /* bool */
  K_DUR,      /* int64_t milliseconds */
  K_SIZE,     /* int64_t bytes */
  K_ENUM,     /* enum stored as int; values[i] is the name of value i */
  K_LIST,     /* struct kcld_config_list */
  K_TMPL,     /* string, a record-field template: not env-expanded */
  K_TIME,     /* int64_t epoch milliseconds, -1 = not set */
  K_STREAMS,  /* struct kcld_config_streams: a list of mappings (config.c
                 parses them; the default "[]" is the empty list) */
  K_FILTER    /* struct kcld_config_list of filter patterns as JSON text,
                 from mappings or JSON strings: not env-expanded */
};

enum kcheck {
  C_NONE,
  C_NONEMPTY,  /* any text, not empty */
  C_URL,       /* "" or http(s)://host... */
  C_S3,        /* "" or s3://BUCKET[/PREFIX] */
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
#define F_LIVE 0x10u    /* may change in a running kcld (reload): without
                           it, a change needs a restart */

struct kcld_config_key {
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

/* A section: the dotted prefix of some keys, with its one-line doc. */
struct kcld_config_section {
  const char *name;
  const char *doc;
};

/* Where a key of a loaded config was set: cfg->origin[i] for row i. */
struct kcld_config_origin {
  size_t line, col;          /* of the value; 0 = not set (a default) */
  char *label;               /* the name in messages (a --properties
                                setting's); NULL = the key's */
};

/* Units of the table's ranges, in milliseconds and bytes. */
#define SEC 1000LL
#define MIN (60 * SEC)
#define HOUR (60 * MIN)
#define DAY (24 * HOUR)
#define KIB 1024LL
#define MIB (1024 * KIB)
#define GIB (1024 * MIB)

/* The rows, in the order of the reference texts. */
extern const struct kcld_config_key kcld_config_keys[];
extern const size_t kcld_config_nkeys;
extern const struct kcld_config_section kcld_config_sections[];
extern const size_t kcld_config_nsections;

/* The keys and sections a `streams:` item may override for its stream
 * (NULL-terminated): handler, batch, retry, on_failure, filter. */
extern const char *const kcld_config_stream_overrides[];

/* The row number of the key called `name` (dotted), or -1. */
int kcld_config_key_index(const char *name);

/* The doc of the section whose name is name[0..len-1]; "" when none. */
const char *kcld_config_key_section_doc(const char *name, size_t len);

/* True when `name` is a section: some key's name starts with "name.". */
int kcld_config_key_is_section(const char *name);

/* A hint for the unknown key `full` (dotted) into buf (n bytes): " (did
 * you mean K?)" with the nearest key or section, else the keys that end
 * with the same leaf; "" when none is near. */
void kcld_config_key_suggest(const char *full, char *buf, size_t n);

/* The name of value `v` of the enum key called `name`. */
const char *kcld_config_key_enum_name(const char *name, int v);

/* The field of key k in cfg. */
static inline void *kcld_config_key_field(struct kcld_config *cfg,
                                          const struct kcld_config_key *k)
{
  return (char *)cfg + k->off;
}

static inline const void *
kcld_config_key_cfield(const struct kcld_config *cfg,
                       const struct kcld_config_key *k)
{
  return (const char *)cfg + k->off;
}

#endif
