/* http.h — asynchronous HTTP on the uv loop: one curl multi handle driven by
 * uv_poll (one per socket) and a uv_timer (curl's timeout), so every request
 * made through one client shares one keep-alive connection pool.  Requests
 * go over HTTP/1.1; streamed answers (SubscribeToShard) over HTTP/2, many
 * to a connection, by the client's own HTTP/2 client (aws/h2.c).
 *
 * Loop thread only.  Completion callbacks run on the loop thread, exactly once
 * per accepted request, also when the client is closed with requests in
 * flight (they complete with KCLD_ECANCELED). */
#ifndef KCLD_AWS_HTTP_H
#define KCLD_AWS_HTTP_H

#include <stddef.h>
#include <time.h>
#include <uv.h>

struct kcld_http;

struct kcld_http_opts {
  const char *ca_file;     /* CA bundle for TLS verification; NULL =
                              AWS_CA_BUNDLE, else the profile's ca_bundle,
                              else the system's */
  const char *profile;     /* for ca_bundle; NULL = AWS_PROFILE or default */
  long connect_timeout_ms; /* default per request (http.connect_timeout);
                              0 = libcurl's own (300 s) */
  long timeout_ms;         /* default total time per request
                              (http.timeout); 0 = no limit */
  long max_connections;    /* idle keep-alive connections kept; 0 =
                              libcurl's own (4 per transfer) */
};

/* What one finished request produced.  Valid only during the callback. */
struct kcld_http_response {
  int err;             /* 0 when an HTTP answer arrived (any status), else
                          KCLD_ETRANSPORT, KCLD_ETIMEDOUT or KCLD_ECANCELED */
  long status;         /* HTTP status; 0 when err != 0 */
  const char *errmsg;  /* transport error text when err != 0, else "" */
  const char *body;    /* response body, NUL-terminated (may hold NULs) */
  size_t body_len;
  time_t server_date;  /* the Date header as epoch seconds; 0 when absent */
  const char *content_type; /* Content-Type header value, or "" */
  const char *error_type;   /* x-amzn-ErrorType header value, or "" */
};

typedef void (*kcld_http_cb)(const struct kcld_http_response *resp,
                             void *arg);

/* A caller's growable buffer that a gathered answer's body is written into,
 * instead of a buffer of the client's own (kcld_http_request.body_into), so
 * the caller can keep and reuse it without a copy.  The client sets len to 0
 * when the request starts, asks `reserve` for room (once, from
 * Content-Length, when the server sends one), appends, and keeps the bytes
 * NUL-terminated (p[len] == 0; cap counts the terminator).  The response's
 * body then points at p. */
struct kcld_http_body {
  char *p;
  size_t len;
  size_t cap;
  /* Makes p hold at least `need` bytes, keeping the first len: 0, or a
   * negative KCLD_E* code (the transfer then fails).  NULL = realloc. */
  int (*reserve)(struct kcld_http_body *b, size_t need);
  void *arg;
  /* The size the caller expects (e.g. its last answer's); 0 = unknown.
   * curl reads an answer expected large, or of unknown size, 256 KiB a
   * call; one expected up to 64 KiB through curl's default 16 KiB buffer,
   * and one up to 4 KiB (an idle shard's) through a 1 KiB one. */
  size_t expect;
};

/* Optional for a stream: takes body bytes straight from the read buffer,
 * so that they are copied once.  Runs inside the HTTP/2 client's reading
 * (an nghttp2 callback), in order, only while the
 * stream is not paused and holds no bytes for on_data; it must not call
 * the client (nor anything that may): it only copies.  Returns how many of
 * the `len` bytes it took, from the front; the rest is held for on_data as
 * usual.  Whenever it took some, on_data runs afterwards from the loop
 * (with the bytes held after them, or with len 0), so the owner acts there
 * on what it took. */
typedef size_t (*kcld_http_take_cb)(const char *data, size_t len, void *arg);

/* Per-request settings; NULL fields / zero values take the client defaults. */
struct kcld_http_request {
  const char *method;          /* "GET", "PUT", "POST", ... */
  const char *url;
  const char *const *headers;  /* NULL-terminated "Name: value" lines */
  const void *body;            /* may be NULL */
  size_t body_len;
  long timeout_ms;             /* 0 = client default */
  long connect_timeout_ms;     /* 0 = client default; streams: the
                                  client's always */
  int no_proxy;                /* 1: never through a proxy (metadata) */
  struct kcld_http_body *body_into; /* NULL = the client's own buffer;
                                  borrowed until the callback; not for
                                  streams */
  int borrow_body;             /* 1: the body is not copied: it must stay
                                  valid and unchanged until the callback
                                  has run (large S3 objects) */
  kcld_http_take_cb take;      /* streams only, optional: see the type */
  void *take_arg;              /* take's argument (NULL: the stream's) */
};

/* Initializes libcurl once per process (thread-safe, idempotent; called by
 * kcld_http_new too).  Returns 0 or KCLD_EIO. */
int kcld_http_global_init(void);

/* Releases libcurl's global state at process end, after every client has
 * been closed and its loop run; no kcld_http_* call may follow. */
void kcld_http_global_cleanup(void);

/* Creates a client on `loop`; `opts` may be NULL (every option 0).  Returns
 * 0 or KCLD_ENOMEM / KCLD_EINVAL. */
int kcld_http_new(uv_loop_t *loop, const struct kcld_http_opts *opts,
                  struct kcld_http **out);

/* Starts a request; the request struct and everything it points to may be
 * freed once this returns (they are copied; the body only without
 * borrow_body).  Redirects are not followed.
 * Proxies come from the environment as the client read it when created, in
 * both spellings, the lower-case one first: https_proxy / HTTPS_PROXY for
 * https URLs, http_proxy / HTTP_PROXY for http URLs, no_proxy / NO_PROXY for
 * the hosts that go direct; they are set on each transfer explicitly (curl
 * itself reads only the lower-case http_proxy).
 * curl's "Expect: 100-continue" is suppressed unless a header sets Expect.
 * Returns 0 and later calls cb, or returns a negative KCLD_E* code and
 * never calls cb. */
int kcld_http_send(struct kcld_http *http, const struct kcld_http_request *req,
                   kcld_http_cb cb, void *arg);

/* Cancels the requests in flight that were started with this cb and arg:
 * their callbacks run with KCLD_ECANCELED before this returns.  Returns how
 * many were cancelled. */
size_t kcld_http_cancel(struct kcld_http *http, kcld_http_cb cb, void *arg);

/* ======== Streamed answers ======== */

/* A request whose answer body is handed over as it arrives instead of
 * being gathered (SubscribeToShard's event stream).  Valid from
 * kcld_http_stream_start() until its done callback has run. */
struct kcld_http_stream;

/* Body bytes of a 2xx answer, in order, as they arrive.  Runs on the loop,
 * never inside the HTTP/2 client's reading: it may pause, resume or cancel
 * any stream, start requests, or close the client.  `data` is valid only
 * during the call.  Returns how many bytes it took: fewer than len pauses
 * the stream (as kcld_http_stream_pause) and keeps the rest, which is
 * handed over first after kcld_http_stream_resume().  An answer that ends
 * meanwhile ends (its done callback runs) once the rest is taken, or when
 * it is cancelled; one that fails drops the rest. */
typedef size_t (*kcld_http_data_cb)(const char *data, size_t len, void *arg);

/* Starts `req` as a stream.  A 2xx answer's body goes to on_data as it
 * arrives; an answer with another status is gathered as usual.  on_done then
 * runs exactly once, as for kcld_http_send(): for a 2xx answer its body is
 * "" (every byte went to on_data first, also bytes that arrived just before
 * a transport error, unless the stream was paused then); for another
 * status it holds the answer's body (up to 64 KiB).  req->timeout_ms
 * bounds the whole answer (0 = the client's default): pass a long one for
 * a long stream.  Returns 0 and the stream in *out, or
 * a negative KCLD_E* code (no callback runs). */
int kcld_http_stream_start(struct kcld_http *http,
                           const struct kcld_http_request *req,
                           kcld_http_data_cb on_data, kcld_http_cb on_done,
                           void *arg, struct kcld_http_stream **out);

/* Stops handing over the stream's answer: HTTP/2 flow control holds the
 * server back once the stream's window (128 KiB) is used, on this stream
 * alone; other streams on the connection go on.  From the return on,
 * on_data does not run until kcld_http_stream_resume(); an answer that
 * ends meanwhile hands its last bytes over after the resume, then runs
 * on_done (one that fails, or is cancelled, drops them).  Idempotent. */
void kcld_http_stream_pause(struct kcld_http_stream *s);

/* Reads the stream again; bytes held meanwhile are handed over from the
 * loop soon after (never from inside this call).  Idempotent. */
void kcld_http_stream_resume(struct kcld_http_stream *s);

/* 1 while the stream is paused. */
int kcld_http_stream_paused(const struct kcld_http_stream *s);

/* Ends the stream at once (over HTTP/2 the stream is reset, the connection
 * stays): on_done runs with KCLD_ECANCELED before this returns, and
 * on_data does not run again. */
void kcld_http_stream_cancel(struct kcld_http_stream *s);

/* Sets how many idle keep-alive connections the client keeps for reuse
 * (curl's connection cache; beyond it the oldest idle one is closed).  Size
 * it to the requests that run at once (one per held lease, and a margin),
 * so connections are reused instead of closed and opened again.  Returns 0
 * or KCLD_EINVAL (n < 1). */
int kcld_http_set_max_connections(struct kcld_http *http, long n);

/* The connection cache size in force (0 = libcurl's own). */
long kcld_http_max_connections(const struct kcld_http *http);

/* Number of requests in flight, streams included. */
size_t kcld_http_pending(const struct kcld_http *http);

/* Number of freed request structs kept for the next requests (at most 32;
 * freed when the client closes).  For tests. */
size_t kcld_http_spare_requests(const struct kcld_http *http);

/* Cancels every request in flight (callbacks run with KCLD_ECANCELED before
 * this returns; kcld_http_send from such a callback fails with
 * KCLD_ECANCELED), closes all uv handles, and frees the client once they
 * are closed: run the loop afterwards.  No further calls on `http`. */
void kcld_http_close(struct kcld_http *http);

#endif
