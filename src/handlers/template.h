/* template.h — record templates: the DynamoDB sink's key templates.
 *
 * A template is literal text with fields in ${...}:
 *
 *   ${partitionKey}       the record's partition key
 *   ${sequenceNumber}     its sequence number (decimal text)
 *   ${subSequenceNumber}  its KPL sub-sequence number (0 when not aggregated)
 *   ${shardId}            the shard it came from
 *   ${data}               the JSON payload itself, when it is a scalar
 *   ${data.a.b}           a field of the JSON payload (a number segment
 *                         indexes an array: ${data.items.0.id})
 *   ${hour(arrival)}      the arrival time's UTC hour, "2026-11-23T10"
 *   ${day(arrival)}       the arrival time's UTC day, "2026-11-23"
 *
 * "$$" is a literal "$"; any other "$" not followed by "{" is literal too.
 * Only fields that stay the same when a record is delivered again are
 * offered (no processing time), so a key rendered twice is the same key.
 *
 * A template is compiled once at start-up; errors name the template and
 * the column.  Rendering is pure and thread-safe: any number of threads may
 * render one compiled template at once. */
#ifndef KCLD_HANDLERS_TEMPLATE_H
#define KCLD_HANDLERS_TEMPLATE_H

#include <stddef.h>

#include "consume/record.h"

struct kcld_template;

/* Looks up the payload field at path[0..n) (n == 0: the payload itself).
 * Returns 0 with *text and *len set (borrowed, valid during the render) when
 * the field exists and is a string, a number or a boolean; any other value
 * when it is missing or is an object, an array or null. */
typedef int (*kcld_template_field_fn)(void *arg, const char *const *path,
                                      size_t n, const char **text,
                                      size_t *len);

/* What a template renders from. */
struct kcld_template_input {
  const struct kcld_record *rec;
  const char *shard_id;
  kcld_template_field_fn field;  /* NULL: no payload fields */
  void *field_arg;
};

/* Compiles `text`; `name` (e.g. "handler.key.pk") names it in errors.
 * Returns 0 and *out, KCLD_EINVAL with a message in err (errlen bytes; may
 * be NULL/0) such as
 *
 *   handler.key.pk: "${data.}" column 3: empty field name segment
 *
 * or KCLD_ENOMEM. */
int kcld_template_compile(const char *name, const char *text,
                          struct kcld_template **out, char *err,
                          size_t errlen);

/* Renders `t` for one record into a new malloc'd NUL-terminated string
 * (*len bytes without the terminator; it may hold a NUL from a partition
 * key).  Returns 0, KCLD_ENOTFOUND (a payload field is missing or not a
 * scalar, or the record has no arrival time for hour()/day(); err names
 * the field), or KCLD_ENOMEM.  On error *out is NULL. */
int kcld_template_render(const struct kcld_template *t,
                         const struct kcld_template_input *in, char **out,
                         size_t *len, char *err, size_t errlen);

/* 1 when the template reads the payload (${data...}), else 0. */
int kcld_template_uses_data(const struct kcld_template *t);

/* The source text, as compiled. */
const char *kcld_template_text(const struct kcld_template *t);

/* Frees a template; NULL is a no-op. */
void kcld_template_free(struct kcld_template *t);

#endif
