/* h2_setup.h — what aws/h2.c sends before a stream's body: the request's
 * HTTP/2 header block, and the CONNECT request that opens a tunnel
 * through a proxy.  Pure functions (no I/O).  For aws/h2.c only. */
#ifndef KCLD_AWS_H2_SETUP_H
#define KCLD_AWS_H2_SETUP_H

#include <stddef.h>

#include <nghttp2/nghttp2.h>

#include "aws/http.h"

/* Splits "http[s]://host[:port][/path]" (an IPv6 host in brackets) into
 * *tls, host (no brackets), port (the scheme's when none: "443", "80")
 * and *path (into url; "/" when none).  0 or KCLD_EINVAL. */
int kcld_h2_parse_url(const char *url, int *tls, char *host, size_t hcap,
                      char *port, size_t pcap, const char **path);

/* A request's header block: nv[0..nvlen) point into `block`, which may
 * hold a signature (kcld_h2_headers_clean_up cleanses it). */
struct kcld_h2_headers {
  nghttp2_nv *nv;
  size_t nvlen;
  char *block;
  size_t block_size;
};

/* Builds h's block for `req` to (tls, host, port, path): :method, :scheme,
 * :authority (req's Host header as signed, else host[:port]), :path, then
 * req->headers in HTTP/2's form (names lower-cased; headers HTTP/2
 * forbids - Connection, Transfer-Encoding, Keep-Alive, Upgrade - and
 * Expect, Content-Length and empty ones dropped), then content-length and
 * user-agent.  0, KCLD_EINVAL (a line with no name) or KCLD_ENOMEM; clean
 * h up either way. */
int kcld_h2_headers_build(struct kcld_h2_headers *h,
                          const struct kcld_http_request *req, int tls,
                          const char *host, const char *port,
                          const char *path);

/* Cleanses and frees h's block; h is zeroed. */
void kcld_h2_headers_clean_up(struct kcld_h2_headers *h);

/* Whether `host` goes direct by the no_proxy list `list` (NULL: none):
 * "*", or an entry equal to it or a domain it is under (".example.com"
 * and "example.com" both take in "a.example.com"); ports in entries are
 * ignored.  1 or 0. */
int kcld_h2_no_proxy_for(const char *list, const char *host);

/* For a connection to (host, port): with `proxy` (an "[http://][user:
 * password@]host[:port]" URL, percent-encoded credentials, port 1080 by
 * default as for curl; NULL or "": none) and host not in no_proxy, the
 * proxy's host and port (into phost/pport) and the CONNECT request to
 * send it (*connect, malloc'd: with credentials, a Basic
 * Proxy-Authorization header); else *connect NULL.  0, KCLD_EINVAL (a
 * proxy URL that is not http://) or KCLD_ENOMEM. */
int kcld_h2_tunnel(const char *proxy, const char *no_proxy,
                   const char *host, const char *port, char *phost,
                   size_t hcap, char *pport, size_t pcap, char **connect);

#endif
