/* http_server.h — a tiny HTTP/1.1 server on the uv loop for GET /metrics
 * (Prometheus text from a kcld_metrics registry) and GET /healthz.
 *
 * Deliberately small: GET and HEAD only, no request bodies, request heads of
 * at most KCLD_HTTP_MAX_HEAD bytes.  A connection is closed when the next
 * request head is not complete within timeout_ms of the connection opening
 * or of the previous answer, however slowly its bytes trickle in (so a
 * keep-alive connection idle that long goes too).  At most max_clients
 * connections are open: a new one past that closes the oldest connection
 * still waiting for its request head (a slow or idle client), so that a
 * prober always gets in however many slow clients hold the port; only when
 * every connection is busy answering is the new one closed instead.  The
 * line logged for that is rate-limited like every log line.  Pipelined
 * requests are answered in order, one at a time; a malformed one gets its
 * 4xx/5xx with Connection: close.
 *
 * The request parser is a pure function (no allocation, no state, no I/O)
 * so that a fuzz target can call it directly. */
#ifndef KCLD_OPS_HTTP_SERVER_H
#define KCLD_OPS_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "ops/metrics.h"

/* Longest request head (request line + headers + blank line). */
#define KCLD_HTTP_MAX_HEAD 8192
/* Longest request target. */
#define KCLD_HTTP_MAX_TARGET 2048
/* Most header fields in one request. */
#define KCLD_HTTP_MAX_HEADERS 64

/* ======== The request parser (pure) ======== */

enum kcld_http_method {
  KCLD_HTTP_OTHER = 0, /* a valid token that is not GET or HEAD */
  KCLD_HTTP_GET = 1,
  KCLD_HTTP_HEAD = 2
};

/* A parsed request head.  Slices point into the caller's buffer. */
struct kcld_http_parsed {
  enum kcld_http_method method;
  const char *method_text;  /* the method token as sent */
  size_t method_len;
  const char *path;         /* origin-form target up to '?' (starts '/') */
  size_t path_len;
  const char *query;        /* after '?', or NULL */
  size_t query_len;
  int minor;                /* HTTP/1.<minor>: 0 or 1 */
  int keep_alive;           /* 1: the connection may stay open afterwards */
  size_t headers;           /* header fields seen */
  int status;               /* on error: the HTTP status to answer with
                               (400, 405, 413, 414, 431, 501, 505); 0
                               otherwise */
};

/* Parses the request head at the start of buf[0..len-1].  Returns the
 * length of the complete head (through the blank line; the next pipelined
 * request starts there), 0 when more bytes are needed (len may grow up to
 * KCLD_HTTP_MAX_HEAD), or a negative KCLD_EINVAL with out->status set when
 * the request is malformed or refused.  Only errors that no further bytes
 * could fix are reported before the head is complete (a bad method
 * character, an over-long line).
 *
 * Strict by design: CRLF line ends (no bare LF), one SP between the three
 * request-line parts, origin-form targets of visible ASCII, HTTP/1.0 or
 * HTTP/1.1 (other 1.x and 2+ versions get 505), tokens for header names, no
 * whitespace before the colon, no obsolete line folding, no control
 * characters in values, Host required in HTTP/1.1 (once).  A body is
 * refused: Transfer-Encoding gets 501, a Content-Length other than 0 gets
 * 413 (a malformed or repeated one 400).  A valid method other than GET and
 * HEAD parses successfully with method KCLD_HTTP_OTHER (the server answers
 * 405).  Connection: close / keep-alive decide keep_alive (default: on for
 * 1.1, off for 1.0). */
long kcld_http_request_parse(const char *buf, size_t len,
                             struct kcld_http_parsed *out);

/* ======== The server ======== */

struct kcld_http_server;

/* Health check: returns the body of the /healthz answer, a malloc'd JSON
 * document the server frees (NULL when out of memory: 500), and sets
 * *healthy to 1 (200) or 0 (503). */
typedef char *(*kcld_http_health_fn)(void *arg, int *healthy);

struct kcld_http_server_opts {
  uv_loop_t *loop;
  const char *listen;          /* "host:port" or "[v6]:port"; host an IP
                                  literal or "localhost"; port 0 = any free
                                  port */
  struct kcld_metrics *metrics; /* rendered on /metrics; borrowed; NULL =
                                  404 */
  kcld_http_health_fn health;  /* NULL = always healthy */
  void *health_arg;
  uint64_t timeout_ms;         /* request head / keep-alive idle; 0 =
                                  3000 */
  unsigned max_clients;        /* 0 = 64 */
};

/* Binds and listens; logs the bound address.  Returns 0, KCLD_EINVAL (a
 * listen string that does not parse), KCLD_EIO (bind or listen failed,
 * logged) or KCLD_ENOMEM. */
int kcld_http_server_start(const struct kcld_http_server_opts *opts,
                           struct kcld_http_server **out);

/* The port actually bound (useful with port 0). */
int kcld_http_server_port(const struct kcld_http_server *s);

/* Connections open now (for tests). */
size_t kcld_http_server_clients(const struct kcld_http_server *s);

/* Stops listening and closes every connection (responses being written are
 * cut); memory goes in the close callbacks: run the loop afterwards.  NULL
 * is ignored. */
void kcld_http_server_close(struct kcld_http_server *s);

#endif
