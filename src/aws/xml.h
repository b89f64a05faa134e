/* xml.h — an XML answer (the AWS Query protocol's) as a jansson tree, read
 * with expat.
 *
 * An element with child elements becomes an object of its children (a name
 * that repeats becomes an array of its values, in order); an element
 * without child elements becomes the string of its text.  Attributes,
 * namespaces, comments and processing instructions are dropped.  A document
 * with a DOCTYPE is refused (no entity expansion to exploit), as is one
 * nested deeper than 32 elements.  Every block expat and this reader
 * allocate is wiped before it is freed: answers may carry credentials. */
#ifndef KCLD_AWS_XML_H
#define KCLD_AWS_XML_H

#include <jansson.h>
#include <stddef.h>

/* Parses `len` bytes of `buf`.  Returns 0 and the root element's value as
 * an object in *out ({} for an empty root; a root with only text gives
 * {"": text}), or KCLD_EPARSE with a reason (never a piece of the document)
 * in `err`, or KCLD_ENOMEM. */
int kcld_xml_to_json(const char *buf, size_t len, json_t **out, char *err,
                     size_t err_len);

/* Wipes the text of every string in `v` (objects and arrays included)
 * before it is released. */
void kcld_json_wipe(json_t *v);

#endif
