/* errtext.h — a service's error type and message as kcld reports them:
 * short, printable, and never carrying what was signed. */
#ifndef KCLD_AWS_ERRTEXT_H
#define KCLD_AWS_ERRTEXT_H

#include <stddef.h>

/* The short form of an error type into dst (cap > 0): "ns#Name:uri" ->
 * "Name", blanks trimmed, cut to fit. */
void kcld_aws_error_type(char *dst, size_t cap, const char *src);

/* A service message (len bytes of src) into dst (cap > 0) for logs and
 * callers: printable text only, cut at the first line break and before any
 * echo of the canonical request or string to sign (AWS includes them in
 * signature errors, with every signed header, the session token among
 * them), trailing blanks trimmed, cut to fit. */
void kcld_aws_error_message(char *dst, size_t cap, const char *src,
                            size_t len);

#endif
