/* base64.h — standard base64 (RFC 4648 section 4, with '=' padding):
 * encoding on OpenSSL's block coder, strict decoding by table.  Pure
 * functions; any thread. */
#ifndef KCLD_BASE_BASE64_H
#define KCLD_BASE_BASE64_H

#include <stddef.h>
#include <stdint.h>

/* The length of the base64 text of n bytes, without a terminator. */
size_t kcld_base64_encoded_len(size_t n);

/* Encodes in[0..n) at `out`, which has room for kcld_base64_encoded_len(n)
 * + 1 bytes, NUL-terminated.  Returns the length of the text. */
size_t kcld_base64_encode(char *out, const void *in, size_t n);

/* Encodes in[0..n) into a new NUL-terminated text (free it) and sets *len
 * (may be NULL) to its length.  NULL when out of memory. */
char *kcld_base64_encode_new(const void *in, size_t n, size_t *len);

/* The most bytes the base64 text of length n decodes to (n / 4 * 3). */
size_t kcld_base64_decoded_max(size_t n);

/* Decodes the base64 text in[0..n) strictly: only the standard alphabet, a
 * length that is a multiple of 4, '=' only as one or two padding bytes at
 * the end; no white space.  `out` has room for kcld_base64_decoded_max(n)
 * bytes.  Returns 0 with *out_len set, or -1 with *bad = the offset of the
 * first offending character (n when the length is what is wrong). */
int kcld_base64_decode(const char *in, size_t n, uint8_t *out,
                       size_t *out_len, size_t *bad);

#endif
