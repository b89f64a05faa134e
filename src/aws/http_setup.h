/* http_setup.h — how aws/http.c sets up a request's curl easy handle: the
 * header list in one allocation, the options every request sets anew, and
 * the rest, which a kept handle of a plain request (a gathered HTTP/1.1
 * POST) keeps.  For aws/http.c only. */
#ifndef KCLD_AWS_HTTP_SETUP_H
#define KCLD_AWS_HTTP_SETUP_H

#include <stddef.h>

#include <curl/curl.h>

#include "aws/http.h"

/* What a request's handle is set up from, besides the request. */
struct kcld_http_setup {
  /* The client's. */
  const char *ca_file;               /* CURLOPT_CAINFO, or NULL */
  const char *proxy_https, *proxy_http, *no_proxy; /* NULL: none */
  long timeout_ms, connect_timeout_ms; /* when the request gives none */
  curl_write_callback on_write, on_header;
  curl_closesocket_callback on_close;
  void *close_arg;
  /* The request's. */
  void *req;                         /* PRIVATE, WRITEDATA, HEADERDATA */
  char *errbuf;                      /* CURL_ERROR_SIZE bytes */
  const char *body;                  /* what is sent (req->body_len) */
};

/* The header list of `lines` (NULL-terminated; NULL for none) in one
 * malloc'd block that curl only reads: the lines in order, then "Expect:"
 * unless one of them is an Expect header (no 100-continue round trip
 * before large bodies).  *out is the block (free() it; it may hold a
 * signature: cleanse *size bytes first).  Returns 0 or KCLD_ENOMEM. */
int kcld_http_headers_build(const char *const *lines,
                            struct curl_slist **out, size_t *size);

/* Sets up `easy` for `req`: every option, or (set_up: a handle set up so
 * for an earlier plain request, and `req` is plain too) only those that
 * change between requests.  Returns 0 or KCLD_EINVAL. */
int kcld_http_setup(CURL *easy, const struct kcld_http_setup *s,
                    struct curl_slist *headers,
                    const struct kcld_http_request *req, int set_up);

#endif
