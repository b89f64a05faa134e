/* filter.h — Lambda event filtering (an event source mapping's
 * FilterCriteria) on Kinesis records: up to KCLD_FILTER_MAX_PATTERNS
 * patterns, OR'ed; a record that matches none is dropped before the
 * handler.  The rule syntax is EventBridge's event patterns.
 *
 * What a pattern sees of a record (Lambda's `kinesis` object):
 *
 *   {"kinesisSchemaVersion": "1.0", "partitionKey": "...",
 *    "sequenceNumber": "...", "approximateArrivalTimestamp": 1545084650.987,
 *    "data": <the record's payload, parsed as JSON>}
 *
 * A pattern names only those fields (a field of the payload goes under
 * `data`, which must be a mapping); any other top-level name is an error.
 * A pattern that names `data` never matches a record whose payload is not
 * valid JSON (RFC 8259, UTF-8); one that does not name it does not look at
 * the payload at all.  (Lambda today filters Kinesis on `data` only; the
 * metadata fields follow its earlier documentation.)
 *
 * Rules (on a field's value, or on each value of an array: a field matches
 * when any value matches any rule of its list; fields of a mapping are
 * AND'ed; "$or": [{...}, {...}] ORs mappings):
 *   "x", 12, true, false, null       equal (a number as written: 300 is not
 *                                    300.0, as the Lambda docs say)
 *   {"prefix": "x"}, {"suffix": "x"} and with {"equals-ignore-case": "x"}
 *   {"equals-ignore-case": "x"}      case folded for ASCII, Latin-1, Latin
 *                                    Extended-A, Greek and Cyrillic
 *   {"wildcard": "a*b"}              * any run of characters; \* and \\
 *   {"anything-but": "x" | 5 | [...] | {"prefix"|"suffix"|
 *                    "equals-ignore-case"|"wildcard": "x" | [...]}}
 *                                    any value but those (present fields
 *                                    only; a value of another type matches)
 *   {"numeric": ["=", 5]}, [">", 0, "<=", 5] ...
 *                                    JSON numbers, compared as IEEE doubles
 *   {"exists": true|false}           a leaf value is there (null counts; a
 *                                    mapping or an empty list does not)
 *   {"cidr": "10.0.0.0/24"}          IPv4 or IPv6 text in the block
 *   {"exact": "x"}                   equal
 * A pattern mapping nested in a pattern matches an array of mappings when
 * one element matches all of it.  When a key appears twice in one mapping,
 * the last one counts (as in Lambda).
 *
 * Patterns come as trees of struct kcld_filter_node: built by the caller
 * (config.c, from YAML, with the line and column of every node) or parsed
 * from JSON text, which may be the pattern itself, Lambda's filter object
 * {"Pattern": "<pattern JSON>"} or a whole FilterCriteria
 * {"Filters": [{"Pattern": ...}, ...]}.
 *
 * A compiled filter is immutable: kcld_filter_match() may run on any number
 * of threads at once (the dispatcher's sink has it called on the worker
 * pool, in the jobs that parse the batches).  No I/O. */
#ifndef KCLD_PROCESS_FILTER_H
#define KCLD_PROCESS_FILTER_H

#include <stddef.h>

#include "consume/record.h"

/* Patterns per filter (Lambda's quota: 5, raised on request to 10). */
#define KCLD_FILTER_MAX_PATTERNS 10

/* Deepest nesting of mappings and lists in one pattern. */
#define KCLD_FILTER_MAX_DEPTH 32

enum kcld_filter_type {
  KCLD_FILTER_OBJECT = 0,
  KCLD_FILTER_ARRAY,
  KCLD_FILTER_STRING,
  KCLD_FILTER_NUMBER,
  KCLD_FILTER_TRUE,
  KCLD_FILTER_FALSE,
  KCLD_FILTER_NULL
};

/* One value of a pattern tree.  Children keep their order. */
struct kcld_filter_node {
  enum kcld_filter_type type;
  char *key;                /* member name inside an OBJECT, else NULL */
  size_t key_len;
  char *text;               /* STRING: the value; NUMBER: as written
                               (JSON number grammar); NUL-terminated */
  size_t len;
  int line, col;            /* where it was written, from 1; 0 = unknown */
  struct kcld_filter_node *first, *last, *next; /* children, sibling */
};

/* Where a pattern is wrong and why. */
struct kcld_filter_error {
  int line, col;            /* of the node (or, for JSON text, the byte) at
                               fault, from 1; 0 = unknown */
  char path[160];           /* in the pattern, e.g. data.t[0].numeric;
                               "" = the pattern as a whole */
  char msg[224];
};

struct kcld_filter;

/* Appends a node to `parent`'s children (parent NULL: a new root).  key
 * (key_len bytes) is required inside an OBJECT and ignored elsewhere; text
 * (len bytes) is copied for STRING and NUMBER.  Returns the node, or NULL
 * when out of memory.  Free a tree with kcld_filter_node_free(root). */
struct kcld_filter_node *kcld_filter_node_add(struct kcld_filter_node *parent,
                                              enum kcld_filter_type type,
                                              const char *key, size_t key_len,
                                              const char *text, size_t len,
                                              int line, int col);

/* Frees a tree made by kcld_filter_node_add or kcld_filter_parse_text.
 * NULL is ignored. */
void kcld_filter_node_free(struct kcld_filter_node *root);

/* How a plain (unquoted) YAML scalar reads as a pattern value, by the YAML
 * 1.2 core schema: "null", "Null", "NULL", "~" and "" are null; "true",
 * "True", "TRUE" and the three spellings of false are booleans; text in the
 * JSON number grammar is a number; everything else is a string. */
enum kcld_filter_type kcld_filter_scalar_type(const char *s, size_t n);

/* Parses JSON text[0..len) into a tree at *root.  Returns 0, or
 * KCLD_ECONFIG with err filled (line and column of the fault in the text)
 * when it is not JSON or nests deeper than KCLD_FILTER_MAX_DEPTH, or
 * KCLD_ENOMEM.  *root is NULL on error. */
int kcld_filter_parse_text(const char *text, size_t len,
                           struct kcld_filter_node **root,
                           struct kcld_filter_error *err);

/* A new filter with no pattern (it keeps every record), or NULL when out of
 * memory. */
struct kcld_filter *kcld_filter_new(void);

/* Frees the filter.  NULL is ignored. */
void kcld_filter_free(struct kcld_filter *f);

/* Compiles one pattern tree and adds it.  Returns 0; KCLD_ECONFIG with err
 * filled (err may be NULL) when the pattern is invalid or the filter holds
 * KCLD_FILTER_MAX_PATTERNS already; KCLD_ENOMEM.  The filter is unchanged
 * on error.  The tree is not kept. */
int kcld_filter_add(struct kcld_filter *f,
                    const struct kcld_filter_node *pattern,
                    struct kcld_filter_error *err);

/* Parses JSON text (a pattern, {"Pattern": "..."} or {"Filters": [...]})
 * and adds the pattern(s) it holds, all or none.  Returns as
 * kcld_filter_add; for an error inside a "Pattern" string, err->path starts
 * with "Pattern" and the line and column are in that string's text. */
int kcld_filter_add_text(struct kcld_filter *f, const char *text, size_t len,
                         struct kcld_filter_error *err);

/* The number of patterns added. */
size_t kcld_filter_count(const struct kcld_filter *f);

/* 1 when record r matches one of the patterns (or there is none): keep it;
 * 0 when it matches none: drop it.  KCLD_ENOMEM when memory ran out while
 * parsing its payload: callers keep the record (a filter never loses data).
 * Any thread. */
int kcld_filter_match(const struct kcld_filter *f,
                      const struct kcld_record *r);

/* The tree as compact JSON text (numbers as written), NUL-terminated, in a
 * new buffer; NULL when out of memory.  For dumps and messages. */
char *kcld_filter_node_json(const struct kcld_filter_node *n);

#endif
