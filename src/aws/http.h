/* http.h — asynchronous HTTP on the uv loop: one curl multi handle driven by
 * uv_poll (one per socket) and a uv_timer (curl's timeout), so every request
 * made through one client shares one keep-alive connection pool.
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
  const char *ca_file;     /* CA bundle for TLS verification; NULL = system */
  long connect_timeout_ms; /* default per request; 0 = 5000 */
  long timeout_ms;         /* default total time per request; 0 = 30000 */
  long max_connections;    /* idle keep-alive connections kept; 0 = 128 */
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

/* Per-request settings; NULL fields / zero values take the client defaults. */
struct kcld_http_request {
  const char *method;          /* "GET", "PUT", "POST", ... */
  const char *url;
  const char *const *headers;  /* NULL-terminated "Name: value" lines */
  const void *body;            /* may be NULL */
  size_t body_len;
  long timeout_ms;             /* 0 = client default */
  long connect_timeout_ms;     /* 0 = client default */
};

/* Initializes libcurl once per process (thread-safe, idempotent; called by
 * kcld_http_new too).  Returns 0 or KCLD_EIO. */
int kcld_http_global_init(void);

/* Releases libcurl's global state at process end, after every client has
 * been closed and its loop run; no kcld_http_* call may follow. */
void kcld_http_global_cleanup(void);

/* Creates a client on `loop`.  Returns 0 or KCLD_ENOMEM / KCLD_EINVAL. */
int kcld_http_new(uv_loop_t *loop, const struct kcld_http_opts *opts,
                  struct kcld_http **out);

/* Starts a request; the request struct and everything it points to may be
 * freed once this returns (they are copied).  Redirects are not followed;
 * proxy variables (http_proxy, https_proxy, no_proxy) apply as in curl.
 * curl's "Expect: 100-continue" is suppressed unless a header sets Expect.  Returns 0 and later calls cb,
 * or returns a negative KCLD_E* code and never calls cb. */
int kcld_http_send(struct kcld_http *http, const struct kcld_http_request *req,
                   kcld_http_cb cb, void *arg);

/* Cancels the requests in flight that were started with this cb and arg:
 * their callbacks run with KCLD_ECANCELED before this returns.  Returns how
 * many were cancelled. */
size_t kcld_http_cancel(struct kcld_http *http, kcld_http_cb cb, void *arg);

/* Number of requests in flight. */
size_t kcld_http_pending(const struct kcld_http *http);

/* Cancels every request in flight (callbacks run with KCLD_ECANCELED before
 * this returns; kcld_http_send from such a callback fails with
 * KCLD_ECANCELED), closes all uv handles, and frees the client once they
 * are closed: run the loop afterwards.  No further calls on `http`. */
void kcld_http_close(struct kcld_http *http);

#endif
