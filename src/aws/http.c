/* http.c — asynchronous HTTP on the uv loop (curl's multi-uv pattern).
 *
 * One CURLM per client.  curl tells us which sockets to watch
 * (CURLMOPT_SOCKETFUNCTION): each gets a uv_poll_t, attached to the socket
 * with curl_multi_assign() so curl hands it back as `socketp`.  curl's single
 * timeout (CURLMOPT_TIMERFUNCTION) drives one uv_timer_t.  Events go back to
 * curl through curl_multi_socket_action(), and finished transfers are always
 * drained from curl_multi_info_read() afterwards.  curl is never re-entered
 * from one of its own callbacks: a 0 ms timeout becomes 1 ms, and user
 * callbacks run only after curl_multi_socket_action() has returned.
 *
 * A timeout of 0 ("act now", set by every curl_multi_add_handle) is not a
 * timer but the `soon` idle handle: it runs in the same loop turn when set
 * from a timer callback, else in the next turn without the loop sleeping -
 * where a 1 ms timer cost a wake-up of its own per batch of new requests
 * and delayed each by a millisecond or two.
 *
 * Every transfer carries its struct http_req in CURLOPT_PRIVATE.  Handles are
 * freed in their close callbacks; the client itself (and the multi handle)
 * goes when the last of its handles has closed.
 *
 * Streams (kcld_http_stream_start) are not curl transfers: they go to
 * the HTTP/2 client of aws/h2.c, made at the first.
 */
#include "aws/http.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "aws/h2.h"
#include "aws/http_setup.h"
#include "aws/profile.h"
#include "err.h"

/* Finished easy handles kept for the next requests: a handle and its
 * buffers are set up once instead of per request (1024 idle leases make
 * ~1,300 requests a second; malloc and free were ~12% of kcld's CPU). */
#define EASY_KEPT 64
/* Freed requests kept for the next ones (1024 idle leases start ~1,300
 * requests a second).  Measured when a struct http_req was ~1.5 KiB, past
 * glibc's per-thread cache: malloc's large-chunk path (with
 * malloc_consolidate) cost more than the reuse.  It is 832 bytes now. */
#define REQS_KEPT 32
#define BODY_INITIAL_CAP 16384u
/* A GetRecords answer is at most 10 MiB of data, ~14 MiB as base64 JSON;
 * anything far beyond that is not an AWS answer. */
#define BODY_MAX ((size_t)256 << 20)

struct http_sock;
struct http_req;

struct kcld_http {
  uv_loop_t *loop;
  CURLM *multi;
  uv_timer_t timer;          /* curl's timeout */
  uv_idle_t soon;            /* curl's timeout of 0: acts on the next turn */
  char *ca_file;
  char *proxy_https, *proxy_http, *no_proxy; /* from the environment */
  long connect_timeout_ms;
  long timeout_ms;
  struct http_req *reqs;     /* in flight, doubly linked */
  struct http_sock *socks;   /* watched sockets, doubly linked */
  struct http_sock **parked; /* by fd: idle connections' stopped polls */
  size_t n_parked;           /* the array's length */
  size_t pending;
  size_t open_handles;       /* uv handles not yet closed (timers + polls) */
  uint64_t next_seq;         /* numbers requests in the order they start */
  long max_connections;      /* curl's connection cache size */
  CURL *idle_easy[EASY_KEPT]; /* finished handles, for the next */
  unsigned char idle_plain[EASY_KEPT]; /* set up for a plain request */
  size_t n_idle_easy;
  struct http_req *spare_reqs[REQS_KEPT]; /* freed requests, for the next */
  size_t n_spare_reqs;
  struct kcld_h2 *h2;         /* streams, from the first */
  int closing;
};

struct http_sock {
  uv_poll_t poll;
  curl_socket_t fd;
  int events;                /* UV_READABLE | UV_WRITABLE watched, or 0 */
  int parked;                /* in http->parked: curl does not watch it */
  struct kcld_http *http;
  struct http_sock *prev, *next;
};

struct http_req {
  struct kcld_http *http;
  CURL *easy;
  struct curl_slist *headers; /* one block: the nodes, then the lines */
  size_t headers_size;
  char *body;                /* copy of the request body */
  const char *body_ref;      /* what is sent: body, or the caller's */
  char *resp;                /* response body, NUL-terminated when non-NULL */
  size_t resp_len, resp_cap;
  struct kcld_http_body *into; /* the caller's buffer, or NULL */
  int too_large;
  int headers_done;          /* the blank line after the headers was seen */
  time_t server_date;
  char content_type[128];
  char error_type[256];
  char errbuf[CURL_ERROR_SIZE];
  kcld_http_cb cb;
  void *arg;
  uint64_t seq;
  struct http_req *prev, *next;
  unsigned char plain;       /* a gathered HTTP/1.1 POST (easy_put) */
};

/* ======== Process-wide initialization ======== */

static pthread_once_t s_once = PTHREAD_ONCE_INIT;
static int s_init_rc = KCLD_EIO;

static void global_init_once(void)
{
  s_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : KCLD_EIO;
}

int kcld_http_global_init(void)
{
  if (pthread_once(&s_once, global_init_once) != 0)
    return KCLD_EIO;
  return s_init_rc;
}

void kcld_http_global_cleanup(void)
{
  if (s_init_rc == 0) {
    curl_global_cleanup();
    s_init_rc = KCLD_EIO;
  }
}

/* ======== Lists ======== */

static void req_link(struct kcld_http *http, struct http_req *r)
{
  r->prev = NULL;
  r->next = http->reqs;
  if (http->reqs)
    http->reqs->prev = r;
  http->reqs = r;
  http->pending++;
}

static void req_unlink(struct kcld_http *http, struct http_req *r)
{
  if (r->prev)
    r->prev->next = r->next;
  else
    http->reqs = r->next;
  if (r->next)
    r->next->prev = r->prev;
  r->prev = r->next = NULL;
  http->pending--;
}

static void sock_link(struct kcld_http *http, struct http_sock *sk)
{
  sk->prev = NULL;
  sk->next = http->socks;
  if (http->socks)
    http->socks->prev = sk;
  http->socks = sk;
}

static void sock_unlink(struct kcld_http *http, struct http_sock *sk)
{
  if (sk->prev)
    sk->prev->next = sk->next;
  else
    http->socks = sk->next;
  if (sk->next)
    sk->next->prev = sk->prev;
  sk->prev = sk->next = NULL;
}

/* ======== Settings: CA bundle, proxies ======== */

static void free_settings(struct kcld_http *http)
{
  free(http->ca_file);
  free(http->proxy_https);
  free(http->proxy_http);
  free(http->no_proxy);
}

/* A copy of the first of the variables that is set and not empty, or NULL
 * (also when out of memory: *oom is set then). */
static char *env_first(const char *a, const char *b, int *oom)
{
  const char *v = getenv(a);
  char *out;
  if ((!v || !*v) && b)
    v = getenv(b);
  if (!v || !*v)
    return NULL;
  out = strdup(v);
  if (!out)
    *oom = 1;
  return out;
}

/* The CA bundle (opts->ca_file, AWS_CA_BUNDLE, the profile's ca_bundle)
 * and the proxies (https_proxy / HTTPS_PROXY, http_proxy / HTTP_PROXY,
 * no_proxy / NO_PROXY; the lower-case spelling first, as curl reads them).
 * Returns 0 or KCLD_ENOMEM. */
static int read_settings(struct kcld_http *http,
                         const struct kcld_http_opts *opts)
{
  int oom = 0;
  if (opts && opts->ca_file && *opts->ca_file)
    oom = !(http->ca_file = strdup(opts->ca_file));
  else
    http->ca_file = env_first("AWS_CA_BUNDLE", NULL, &oom);
  if (!http->ca_file && !oom) {
    struct kcld_profile_files *files = NULL;
    const char *v;
    if (kcld_profile_files_load(&files) != 0)
      return KCLD_ENOMEM;
    v = kcld_profile_get(
      kcld_profile_find(files, KCLD_PROFILE,
                        kcld_profile_selected(opts ? opts->profile : NULL,
                                              NULL)),
      "ca_bundle");
    if (v)
      oom = !(http->ca_file = strdup(v));
    kcld_profile_files_free(files);
  }
  http->proxy_https = env_first("https_proxy", "HTTPS_PROXY", &oom);
  http->proxy_http = env_first("http_proxy", "HTTP_PROXY", &oom);
  http->no_proxy = env_first("no_proxy", "NO_PROXY", &oom);
  return oom ? KCLD_ENOMEM : 0;
}

/* ======== Teardown ======== */

/* The last handle has closed: nothing on the loop refers to us any more. */
static void http_release(struct kcld_http *http)
{
  while (http->n_idle_easy > 0)
    curl_easy_cleanup(http->idle_easy[--http->n_idle_easy]);
  while (http->n_spare_reqs > 0)
    free(http->spare_reqs[--http->n_spare_reqs]);
  /* curl may report sockets or timeouts while it closes its connections;
   * nothing is left to tell. */
  curl_multi_setopt(http->multi, CURLMOPT_SOCKETFUNCTION, NULL);
  curl_multi_setopt(http->multi, CURLMOPT_TIMERFUNCTION, NULL);
  curl_multi_cleanup(http->multi);
  free(http->parked);
  free_settings(http);
  free(http);
}

static void on_handle_closed(struct kcld_http *http)
{
  if (--http->open_handles == 0 && http->closing)
    http_release(http);
}

static void on_sock_closed(uv_handle_t *h)
{
  struct http_sock *sk = h->data;
  struct kcld_http *http = sk->http;
  free(sk);
  on_handle_closed(http);
}

static void on_timer_closed(uv_handle_t *h)
{
  on_handle_closed(h->data);
}

/* Stops watching a socket; curl forgets our pointer, the poll handle is
 * freed in its close callback. */
static void sock_close(struct kcld_http *http, struct http_sock *sk)
{
  sock_unlink(http, sk);
  curl_multi_assign(http->multi, sk->fd, NULL);
  uv_poll_stop(&sk->poll);
  uv_close((uv_handle_t *)&sk->poll, on_sock_closed);
}

/* Watches `events` on the socket (0: none).  A handle already watching
 * them is left alone: libuv's uv_poll_start stops the watcher first, and
 * then re-adds the fd to epoll (an EPOLL_CTL_ADD that fails with EEXIST,
 * then an EPOLL_CTL_MOD) even when nothing changed.  Returns 0 or -1. */
static int sock_watch(struct http_sock *sk, int events, uv_poll_cb cb)
{
  if (sk->events == events)
    return 0;
  if (events == 0) {
    uv_poll_stop(&sk->poll);
  } else if (uv_poll_start(&sk->poll, events, cb) != 0) {
    sk->events = 0;
    return -1;
  }
  sk->events = events;
  return 0;
}

static void on_poll(uv_poll_t *p, int status, int events);

/* A kept connection's socket: curl no longer watches it, but will again
 * for its next transfer.  Its poll handle is kept by fd, and taken up
 * again then instead of a new one (uv_poll_init and uv_close cost an
 * allocation, an ioctl and three epoll_ctl calls per transfer; with 1024
 * idle leases, ~1,350 transfers a second).  It goes on watching for
 * readability, which its next transfer asks for too: so that takes no
 * epoll_ctl call; if the socket does become readable meanwhile (the
 * server closed the connection), on_poll() stops watching it, and curl
 * finds the connection dead when it next picks it.  on_curl_close()
 * closes the handle before curl closes the socket, so a kept handle
 * never outlives its fd.  Without room to keep it, it is closed. */
static void sock_park(struct kcld_http *http, struct http_sock *sk)
{
  size_t fd = (size_t)sk->fd;

  if (fd >= http->n_parked) {
    size_t n = http->n_parked ? http->n_parked : 64;
    struct http_sock **p;
    while (n <= fd)
      n *= 2;
    p = realloc(http->parked, n * sizeof(*p));
    if (!p) {
      sock_close(http, sk);
      return;
    }
    memset(p + http->n_parked, 0, (n - http->n_parked) * sizeof(*p));
    http->parked = p;
    http->n_parked = n;
  }
  if (http->parked[fd]) /* never: one handle per open fd */
    uv_close((uv_handle_t *)&http->parked[fd]->poll, on_sock_closed);
  sock_unlink(http, sk);
  curl_multi_assign(http->multi, sk->fd, NULL);
  if (sock_watch(sk, UV_READABLE, on_poll) != 0)
    sock_watch(sk, 0, on_poll);
  sk->parked = 1;
  http->parked[fd] = sk;
}

/* The kept handle of fd, taken out of the array; NULL when none. */
static struct http_sock *sock_unpark(struct kcld_http *http,
                                     curl_socket_t fd)
{
  struct http_sock *sk;

  if (fd < 0 || (size_t)fd >= http->n_parked || !http->parked[fd])
    return NULL;
  sk = http->parked[fd];
  http->parked[fd] = NULL;
  sk->parked = 0;
  return sk;
}

/* curl closes a socket (CURLOPT_CLOSESOCKETFUNCTION): its kept handle goes
 * first (uv_close takes it out of epoll while the fd is still open). */
static int on_curl_close(void *clientp, curl_socket_t fd)
{
  struct http_sock *sk = sock_unpark(clientp, fd);

  if (sk)
    uv_close((uv_handle_t *)&sk->poll, on_sock_closed);
  return close(fd);
}

/* A handle for a new request: a kept one, or a new one.  *set_up: it is
 * set up for a plain request already, and `plain` is one (a kept plain
 * handle for another request is reset first). */
static CURL *easy_get(struct kcld_http *http, int plain, int *set_up)
{
  CURL *easy;
  *set_up = 0;
  if (http->n_idle_easy == 0)
    return curl_easy_init();
  easy = http->idle_easy[--http->n_idle_easy];
  if (http->idle_plain[http->n_idle_easy] && plain)
    *set_up = 1;
  else if (http->idle_plain[http->n_idle_easy])
    curl_easy_reset(easy);
  return easy;
}

/* A finished handle (out of the multi handle), kept or freed.  A plain
 * request's handle (a gathered HTTP/1.1 POST, the requests of 1024 idle
 * leases) keeps its options, all but req_setup_each's the same for the
 * next plain request: curl_easy_reset and setting every option again cost
 * ~10 allocations a request.  Its pointers into the finished request are
 * cleared.  Any other is reset (every option back to its default). */
static void easy_put(struct kcld_http *http, CURL *easy, int plain)
{
  if (http->closing || http->n_idle_easy == EASY_KEPT) {
    curl_easy_cleanup(easy);
    return;
  }
  if (plain) {
    curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, NULL);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, NULL);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, NULL);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, "");
  } else {
    curl_easy_reset(easy);
  }
  http->idle_plain[http->n_idle_easy] = (unsigned char)(plain != 0);
  http->idle_easy[http->n_idle_easy++] = easy;
}

static void req_free(struct http_req *r)
{
  if (r->easy)
    curl_easy_cleanup(r->easy);
  /* Header lines may carry a session token or a signature. */
  if (r->headers) {
    OPENSSL_cleanse(r->headers, r->headers_size);
    free(r->headers);
  }
  free(r->body);
  free(r->resp);
  if (r->http && !r->http->closing && r->http->n_spare_reqs < REQS_KEPT)
    r->http->spare_reqs[r->http->n_spare_reqs++] = r;
  else
    free(r);
}

/* Takes a request out of the multi handle and runs its callback once. */
static void req_complete(struct http_req *r, int err, long status,
                         const char *errmsg)
{
  struct kcld_http *http = r->http;
  struct kcld_http_response resp;

  if (r->easy) {
    curl_multi_remove_handle(http->multi, r->easy);
    easy_put(http, r->easy, r->plain);
    r->easy = NULL;
  }
  req_unlink(http, r);

  memset(&resp, 0, sizeof(resp));
  resp.err = err;
  resp.status = err ? 0 : status;
  resp.errmsg = err ? errmsg : "";
  if (!err && r->into && r->into->p) {
    resp.body = r->into->p;
    resp.body_len = r->into->len;
  } else if (!err && r->resp) {
    resp.body = r->resp;
    resp.body_len = r->resp_len;
  } else {
    resp.body = "";
    resp.body_len = 0;
  }
  resp.server_date = r->server_date;
  resp.content_type = r->content_type;
  resp.error_type = r->error_type;
  r->cb(&resp, r->arg);
  req_free(r);
}

/* ======== Transfer callbacks (inside curl) ======== */

static int body_reserve(struct http_req *r, size_t more)
{
  size_t need, cap;
  char *nb;

  if (more > BODY_MAX || r->resp_len > BODY_MAX - more) {
    r->too_large = 1;
    return -1;
  }
  need = r->resp_len + more + 1;
  if (need <= r->resp_cap)
    return 0;
  cap = r->resp_cap ? r->resp_cap : BODY_INITIAL_CAP;
  while (cap < need)
    cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  nb = realloc(r->resp, cap);
  if (!nb)
    return -1;
  r->resp = nb;
  r->resp_cap = cap;
  return 0;
}

static int into_reserve(struct http_req *r, size_t need)
{
  struct kcld_http_body *b = r->into;
  if (need <= b->cap)
    return 0;
  if (b->reserve)
    return b->reserve(b, need) == 0 && b->cap >= need ? 0 : -1;
  char *nb = realloc(b->p, need);
  if (!nb)
    return -1;
  b->p = nb;
  b->cap = need;
  return 0;
}

/* Appends to the caller's buffer: sized once from Content-Length, else
 * grown by doubling. */
static size_t into_write(struct http_req *r, const char *ptr, size_t n)
{
  struct kcld_http_body *b = r->into;
  size_t need;
  if (n > BODY_MAX || b->len > BODY_MAX - n) {
    r->too_large = 1;
    return 0;
  }
  need = b->len + n + 1;
  if (b->len == 0) {
    curl_off_t cl = -1;
    if (curl_easy_getinfo(r->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) ==
          CURLE_OK && cl > 0 && (curl_off_t)n <= cl &&
        (uint64_t)cl <= (uint64_t)BODY_MAX && (size_t)cl + 1 > need)
      need = (size_t)cl + 1;
  } else if (need > b->cap) {
    size_t cap = b->cap * 2;
    need = cap > need ? cap : need;
  }
  if (into_reserve(r, need) != 0)
    return 0; /* curl fails the transfer with CURLE_WRITE_ERROR */
  memcpy(b->p + b->len, ptr, n);
  b->len += n;
  b->p[b->len] = '\0';
  return n;
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
  struct http_req *r = userdata;
  size_t n = size * nmemb;

  if (r->into)
    return into_write(r, ptr, n);
  if (!r->resp) {
    /* Size the buffer once when the length is announced. */
    curl_off_t cl = -1;
    if (curl_easy_getinfo(r->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) ==
          CURLE_OK && cl > 0 && (curl_off_t)n <= cl &&
        (uint64_t)cl <= (uint64_t)BODY_MAX && body_reserve(r, (size_t)cl) != 0)
      return 0;
  }
  if (body_reserve(r, n) != 0)
    return 0; /* curl fails the transfer with CURLE_WRITE_ERROR */
  memcpy(r->resp + r->resp_len, ptr, n);
  r->resp_len += n;
  r->resp[r->resp_len] = '\0';
  return n;
}

/* Copies a header value (trimmed) into dst, truncating to fit. */
static void header_value(char *dst, size_t cap, const char *v, size_t len)
{
  while (len && (*v == ' ' || *v == '\t')) {
    v++;
    len--;
  }
  while (len && (v[len - 1] == '\r' || v[len - 1] == '\n' ||
                 v[len - 1] == ' ' || v[len - 1] == '\t'))
    len--;
  if (len >= cap)
    len = cap - 1;
  memcpy(dst, v, len);
  dst[len] = '\0';
}

static int header_is(const char *line, size_t len, const char *name)
{
  size_t n = strlen(name);
  return len > n && line[n] == ':' && strncasecmp(line, name, n) == 0;
}

static size_t on_header(char *line, size_t size, size_t nmemb, void *userdata)
{
  struct http_req *r = userdata;
  size_t len = size * nmemb;

  if (len >= 5 && strncmp(line, "HTTP/", 5) == 0) {
    /* A new response (after a 100 Continue, say): forget the last one's. */
    r->server_date = 0;
    r->content_type[0] = '\0';
    r->error_type[0] = '\0';
    r->headers_done = 0;
  } else if ((len == 2 && line[0] == '\r' && line[1] == '\n') ||
             (len == 1 && line[0] == '\n')) {
    r->headers_done = 1;
  } else if (header_is(line, len, "Date")) {
    char date[128];
    header_value(date, sizeof(date), line + 5, len - 5);
    time_t t = curl_getdate(date, NULL);
    r->server_date = t > 0 ? t : 0;
  } else if (header_is(line, len, "Content-Type")) {
    header_value(r->content_type, sizeof(r->content_type), line + 13,
                 len - 13);
  } else if (header_is(line, len, "x-amzn-ErrorType")) {
    header_value(r->error_type, sizeof(r->error_type), line + 17, len - 17);
  }
  return len;
}

/* ======== Driving curl from the loop ======== */

/* Hands every finished transfer to its owner.  Stops when a callback closed
 * the client (it has cancelled the rest). */
static void drain(struct kcld_http *http)
{
  CURLMsg *msg;
  int left;

  while (!http->closing &&
         (msg = curl_multi_info_read(http->multi, &left)) != NULL) {
    struct http_req *r = NULL;
    CURLcode rc;
    long status = 0;

    if (msg->msg != CURLMSG_DONE)
      continue;
    rc = msg->data.result;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
    if (!r)
      continue;
    /* msg is not touched past this point: removing the handle frees it. */
    if (rc == CURLE_OK) {
      curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
      if (status < 100)
        req_complete(r, KCLD_ETRANSPORT, 0, "no HTTP status in the answer");
      else if (!r->headers_done)
        /* curl 7.88 takes a header block cut short by EOF for a whole
         * answer; it is a connection closed mid-response. */
        req_complete(r, KCLD_ETRANSPORT, 0,
                     "connection closed before the response headers ended");
      else
        req_complete(r, 0, status, "");
    } else if (rc == CURLE_OPERATION_TIMEDOUT) {
      req_complete(r, KCLD_ETIMEDOUT, 0,
                   r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc));
    } else if (r->too_large) {
      req_complete(r, KCLD_ETRANSPORT, 0, "response body too large");
    } else {
      req_complete(r, KCLD_ETRANSPORT, 0,
                   r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc));
    }
  }
}

static void on_poll(uv_poll_t *p, int status, int events)
{
  struct http_sock *sk = p->data;
  struct kcld_http *http = sk->http;
  curl_socket_t fd = sk->fd;
  int flags = 0, running = 0;

  if (sk->parked) {
    /* A kept connection with no transfer: closed by the server, most
     * likely.  Level-triggered, it would fire on every loop turn. */
    sock_watch(sk, 0, on_poll);
    return;
  }
  if (status < 0) {
    sk->events = 0; /* libuv has stopped the handle */
    flags = CURL_CSELECT_ERR;
  } else {
    if (events & UV_READABLE)
      flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
      flags |= CURL_CSELECT_OUT;
  }
  /* curl may close `sk` from inside this call; only locals are used after. */
  curl_multi_socket_action(http->multi, fd, flags, &running);
  drain(http);
}

static void timeout_action(struct kcld_http *http)
{
  int running = 0;

  curl_multi_socket_action(http->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  drain(http);
}

static void on_timeout(uv_timer_t *t)
{
  timeout_action(t->data);
}

static void on_soon(uv_idle_t *h)
{
  uv_idle_stop(h);
  timeout_action(h->data);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what,
                          void *userp, void *socketp)
{
  struct kcld_http *http = userp;
  struct http_sock *sk = socketp;
  int events = 0;

  (void)easy;
  if (what == CURL_POLL_REMOVE) {
    if (sk && http->closing)
      sock_close(http, sk);
    else if (sk)
      sock_park(http, sk);
    return 0;
  }
  if (http->closing)
    return 0;
  if (!sk && (sk = sock_unpark(http, fd)) != NULL) {
    sock_link(http, sk);
    if (curl_multi_assign(http->multi, fd, sk) != CURLM_OK) {
      sock_unlink(http, sk);
      uv_close((uv_handle_t *)&sk->poll, on_sock_closed);
      return -1;
    }
  } else if (!sk) {
    sk = calloc(1, sizeof(*sk));
    if (!sk)
      return -1;
    if (uv_poll_init_socket(http->loop, &sk->poll, fd) != 0) {
      free(sk);
      return -1;
    }
    sk->fd = fd;
    sk->http = http;
    sk->poll.data = sk;
    http->open_handles++;
    sock_link(http, sk);
    if (curl_multi_assign(http->multi, fd, sk) != CURLM_OK) {
      sock_unlink(http, sk);
      uv_close((uv_handle_t *)&sk->poll, on_sock_closed);
      return -1;
    }
  }
  if (what & CURL_POLL_IN)
    events |= UV_READABLE;
  if (what & CURL_POLL_OUT)
    events |= UV_WRITABLE;
  return sock_watch(sk, events, on_poll);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
  struct kcld_http *http = userp;

  (void)multi;
  if (http->closing)
    return 0;
  if (timeout_ms < 0) {
    uv_timer_stop(&http->timer);
    uv_idle_stop(&http->soon);
    return 0;
  }
  /* Never call curl back from inside its own callback: 0 runs from the
   * loop, on the idle handle.  The timer may stay armed: curl takes a call
   * before its time in its stride (it acts on nothing and asks again). */
  if (timeout_ms == 0)
    return uv_idle_start(&http->soon, on_soon) == 0 ? 0 : -1;
  uv_idle_stop(&http->soon);
  /* Armed to fire no later than asked: left so.  curl moves its timeout
   * at every request's start and end; moving the timer each time cost two
   * heap operations among ~2,000 timers (1024 idle leases: ~4% of CPU). */
  if (uv_is_active((uv_handle_t *)&http->timer) &&
      uv_timer_get_due_in(&http->timer) <= (uint64_t)timeout_ms)
    return 0;
  return uv_timer_start(&http->timer, on_timeout, (uint64_t)timeout_ms, 0) == 0
           ? 0 : -1;
}

/* ======== Public interface ======== */

int kcld_http_new(uv_loop_t *loop, const struct kcld_http_opts *opts,
                  struct kcld_http **out)
{
  struct kcld_http *http = NULL;
  long maxconn = 0;
  int rc;

  if (!loop || !out)
    return KCLD_EINVAL;
  *out = NULL;
  rc = kcld_http_global_init();
  if (rc != 0)
    return rc;
  http = calloc(1, sizeof(*http));
  if (!http)
    return KCLD_ENOMEM;
  http->loop = loop;
  if (opts) {
    if (opts->connect_timeout_ms < 0 || opts->timeout_ms < 0 ||
        opts->max_connections < 0) {
      rc = KCLD_EINVAL;
      goto fail;
    }
    http->connect_timeout_ms = opts->connect_timeout_ms;
    http->timeout_ms = opts->timeout_ms;
    maxconn = opts->max_connections;
  }
  if ((rc = read_settings(http, opts)) != 0)
    goto fail;
  http->multi = curl_multi_init();
  if (!http->multi) {
    rc = KCLD_ENOMEM;
    goto fail;
  }
  if (curl_multi_setopt(http->multi, CURLMOPT_SOCKETFUNCTION,
                        on_curl_socket) != CURLM_OK ||
      curl_multi_setopt(http->multi, CURLMOPT_SOCKETDATA, http) != CURLM_OK ||
      curl_multi_setopt(http->multi, CURLMOPT_TIMERFUNCTION,
                        on_curl_timer) != CURLM_OK ||
      curl_multi_setopt(http->multi, CURLMOPT_TIMERDATA, http) != CURLM_OK ||
      curl_multi_setopt(http->multi, CURLMOPT_MAXCONNECTS, maxconn) !=
        CURLM_OK ||
      curl_multi_setopt(http->multi, CURLMOPT_PIPELINING,
                        (long)CURLPIPE_MULTIPLEX) != CURLM_OK) {
    rc = KCLD_EINVAL;
    goto fail;
  }
  http->max_connections = maxconn;
  if (uv_timer_init(loop, &http->timer) != 0) {
    rc = KCLD_EINVAL;
    goto fail;
  }
  http->timer.data = http;
  http->open_handles = 1;
  if (uv_idle_init(loop, &http->soon) != 0) {
    /* The timer is open: close the client the usual way. */
    kcld_http_close(http);
    return KCLD_EINVAL;
  }
  http->soon.data = http;
  http->open_handles = 2;
  *out = http;
  return 0;

fail:
  if (http->multi)
    curl_multi_cleanup(http->multi);
  free_settings(http);
  free(http);
  return rc;
}

/* Sets up r's easy handle: all of it, or (set_up: a kept plain handle)
 * what changes (aws/http_setup.h).  Returns 0 or a KCLD_E* code. */
static int req_setup(struct http_req *r, const struct kcld_http_request *req,
                     int set_up)
{
  struct kcld_http *http = r->http;
  const struct kcld_http_setup s = {
    .ca_file = http->ca_file, .proxy_https = http->proxy_https,
    .proxy_http = http->proxy_http, .no_proxy = http->no_proxy,
    .timeout_ms = http->timeout_ms,
    .connect_timeout_ms = http->connect_timeout_ms, .on_write = on_write,
    .on_header = on_header, .on_close = on_curl_close, .close_arg = http,
    .req = r, .errbuf = r->errbuf, .body = r->body_ref};

  if (kcld_http_headers_build(req->headers, &r->headers, &r->headers_size))
    return KCLD_ENOMEM;
  return kcld_http_setup(r->easy, &s, r->headers, req, set_up);
}

static int req_start(struct kcld_http *http,
                     const struct kcld_http_request *req, kcld_http_cb cb,
                     void *arg)
{
  struct http_req *r;
  int rc, set_up;

  if (!http || !req || !req->url || !*req->url || !cb ||
      (req->body_len > 0 && !req->body))
    return KCLD_EINVAL;
  if (http->closing)
    return KCLD_ECANCELED;
  if (http->n_spare_reqs > 0) {
    r = http->spare_reqs[--http->n_spare_reqs];
    memset(r, 0, sizeof(*r));
  } else if (!(r = calloc(1, sizeof(*r)))) {
    return KCLD_ENOMEM;
  }
  r->http = http;
  r->cb = cb;
  r->arg = arg;
  r->seq = http->next_seq++;
  if (req->body_into) {
    r->into = req->body_into;
    r->into->len = 0;
    if (r->into->p && r->into->cap)
      r->into->p[0] = '\0';
  }
  if (req->body_len > 0 && req->borrow_body) {
    r->body_ref = req->body;
  } else if (req->body_len > 0) {
    r->body = malloc(req->body_len);
    if (!r->body) {
      rc = KCLD_ENOMEM;
      goto fail;
    }
    memcpy(r->body, req->body, req->body_len);
    r->body_ref = r->body;
  }
  r->plain = req->method &&
             strcmp(req->method, "POST") == 0;
  r->easy = easy_get(http, r->plain, &set_up);
  if (!r->easy) {
    rc = KCLD_ENOMEM;
    goto fail;
  }
  rc = req_setup(r, req, set_up);
  if (rc != 0)
    goto fail;
  if (curl_multi_add_handle(http->multi, r->easy) != CURLM_OK) {
    rc = KCLD_ENOMEM;
    goto fail;
  }
  req_link(http, r);
  return 0;

fail:
  req_free(r);
  return rc;
}

int kcld_http_send(struct kcld_http *http, const struct kcld_http_request *req,
                   kcld_http_cb cb, void *arg)
{
  return req_start(http, req, cb, arg);
}

int kcld_http_stream_start(struct kcld_http *http,
                           const struct kcld_http_request *req,
                           kcld_http_data_cb on_data, kcld_http_cb on_done,
                           void *arg, struct kcld_http_stream **out)
{
  if (!http || !out)
    return KCLD_EINVAL;
  *out = NULL;
  if (http->closing)
    return KCLD_ECANCELED;
  if (!http->h2) {
    const struct kcld_h2_opts o = {
      .ca_file = http->ca_file, .connect_timeout_ms = http->connect_timeout_ms,
      .proxy_https = http->proxy_https, .proxy_http = http->proxy_http,
      .no_proxy = http->no_proxy};
    int rc = kcld_h2_new(http->loop, &o, &http->h2);
    if (rc != 0)
      return rc;
  }
  if (req && req->timeout_ms == 0 && http->timeout_ms > 0) {
    struct kcld_http_request r = *req;
    r.timeout_ms = http->timeout_ms;
    return kcld_h2_stream_start(http->h2, &r, on_data, on_done, arg, out);
  }
  return kcld_h2_stream_start(http->h2, req, on_data, on_done, arg, out);
}

size_t kcld_http_cancel(struct kcld_http *http, kcld_http_cb cb, void *arg)
{
  size_t n = 0;
  int again = 1;
  uint64_t end;

  if (!http)
    return 0;
  end = http->next_seq;
  /* A callback may start or cancel other requests: rescan after each one,
   * and leave alone what was started after this call began. */
  while (again) {
    again = 0;
    for (struct http_req *r = http->reqs; r; r = r->next) {
      if (r->cb == cb && r->arg == arg && r->seq < end) {
        req_complete(r, KCLD_ECANCELED, 0, "cancelled");
        n++;
        again = 1;
        break;
      }
    }
  }
  return n;
}

int kcld_http_set_max_connections(struct kcld_http *http, long n)
{
  if (!http || n < 1 || http->closing)
    return KCLD_EINVAL;
  if (curl_multi_setopt(http->multi, CURLMOPT_MAXCONNECTS, n) != CURLM_OK)
    return KCLD_EINVAL;
  http->max_connections = n;
  return 0;
}

size_t kcld_http_spare_requests(const struct kcld_http *http)
{
  return http ? http->n_spare_reqs : 0;
}

long kcld_http_max_connections(const struct kcld_http *http)
{
  return http ? http->max_connections : 0;
}

size_t kcld_http_pending(const struct kcld_http *http)
{
  return http ? http->pending + kcld_h2_streams(http->h2) : 0;
}

void kcld_http_close(struct kcld_http *http)
{
  if (!http || http->closing)
    return;
  http->closing = 1;
  kcld_h2_close(http->h2);
  while (http->reqs)
    req_complete(http->reqs, KCLD_ECANCELED, 0, "client closed");
  uv_timer_stop(&http->timer);
  uv_close((uv_handle_t *)&http->timer, on_timer_closed);
  if (http->soon.data) {
    uv_idle_stop(&http->soon);
    uv_close((uv_handle_t *)&http->soon, on_timer_closed);
  }
  while (http->socks)
    sock_close(http, http->socks);
  for (size_t fd = 0; fd < http->n_parked; fd++) {
    struct http_sock *sk = sock_unpark(http, (curl_socket_t)fd);
    if (sk)
      uv_close((uv_handle_t *)&sk->poll, on_sock_closed);
  }
}
