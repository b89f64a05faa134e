/* ddb_item.h — JSON text -> DynamoDB AttributeValue JSON, keeping every
 * number's decimal text exactly as it was written.
 *
 * Why not jansson's parser: jansson turns numbers into json_int_t or double,
 * so 0.1000, 12345678901234567890123 and 1e2 would come out as other text
 * (or rounded).  DynamoDB stores numbers as decimal text of up to 38
 * significant digits, so the mapping parses the payload itself (a small
 * recursive-descent parser, strict RFC 8259) and builds the AttributeValues
 * directly, with the builders of aws/dynamodb.h:
 *
 *   string -> {"S": ...}   (empty strings are kept: DynamoDB allows them
 *                           outside key attributes)
 *   number -> {"N": "<text as written>"}
 *   true/false -> {"BOOL": ...}     null -> {"NULL": true}
 *   object -> {"M": {...}}          array -> {"L": [...]} (empty allowed)
 *
 * JSON has no sets, so no SS/NS/BS (whose empty form DynamoDB refuses) is
 * ever produced.  Refused (KCLD_EPARSE, with the reason): text that is not
 * JSON or not UTF-8, a number DynamoDB cannot hold (more than 38 significant
 * digits, magnitude outside 1E-130 .. 9.99E+125), an empty member name
 * (DynamoDB names are at least one byte), nesting deeper than 32 levels.
 *
 * Pure functions; any thread. */
#ifndef KCLD_HANDLERS_DDB_ITEM_H
#define KCLD_HANDLERS_DDB_ITEM_H

#include <jansson.h>
#include <stddef.h>

/* DynamoDB's item size limit (names and values, UTF-8). */
#define KCLD_DDB_ITEM_MAX_BYTES (400 * 1024)

/* Deepest nesting of objects and arrays accepted. */
#define KCLD_DDB_ITEM_MAX_DEPTH 32

/* Parses text[0..len) (need not be NUL-terminated) into one AttributeValue.
 * Returns 0 and *out (a new reference), KCLD_EPARSE with the reason and
 * byte offset in err (errlen bytes; may be NULL/0), or KCLD_ENOMEM. */
int kcld_ddb_item_from_json(const char *text, size_t len, json_t **out,
                            char *err, size_t errlen);

/* The size DynamoDB counts for `item` (an object of name -> AttributeValue),
 * following the documented rules: names and strings in UTF-8 bytes, a
 * number 1 byte per two significant digits plus 1 (plus 1 here for a
 * sign, erring high), BOOL and NULL 1 byte, M and L 3 bytes plus 1 per
 * element plus their contents.  An estimate that errs high, never low. */
size_t kcld_ddb_item_size(const json_t *item);

/* For struct kcld_template_input.field, with `arg` the AttributeValue:
 * follows path[0..n) from it (M members by name, L elements by decimal
 * index) and gives the text of the scalar found there: an S's string, an
 * N's decimal text, "true"/"false" for a BOOL.  Returns 0 with *text and
 * *len borrowed from `arg`, or KCLD_ENOTFOUND (missing, or an M, L or
 * NULL). */
int kcld_ddb_item_field(void *arg, const char *const *path, size_t n,
                        const char **text, size_t *len);

#endif
