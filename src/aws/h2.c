/* h2.c — HTTP/2 streams on nghttp2 sessions over libuv sockets (h2.h).
 *
 * A connection (struct h2_conn) is one origin's TCP socket, its TLS
 * (OpenSSL over memory BIOs: ciphertext goes through libuv, plaintext
 * through nghttp2), an optional HTTP CONNECT tunnel through a proxy, and
 * one nghttp2 client session.  A new stream joins the first connection of
 * its origin with room (the server's SETTINGS_MAX_CONCURRENT_STREAMS, at
 * most H2_STREAMS_MAX), or opens one; it waits there until the session is
 * up.
 *
 * nghttp2 is fed with nghttp2_session_mem_recv and drained with
 * nghttp2_session_mem_send, never re-entered from its own callbacks: those
 * only copy.  A 2xx answer's bytes go to the stream's take (straight from
 * the read buffer) or into the stream's `held` bytes; deliver() hands held
 * bytes to on_data, and ends streams, once nghttp2 has returned - from the
 * read callback, or from the `kick` timer (0 ms) after a resume, a cancel
 * or a failure.  Flow control is the stream's own: automatic window
 * updates are off and a byte is consumed (its window reopened) only once
 * its owner took it, so a paused stream holds at most its window
 * (H2_STREAM_WINDOW) and the server waits; the connection's window is
 * large (H2_CONN_WINDOW), so that paused streams do not hold up the
 * others.
 *
 * Memory is freed in close callbacks (a connection when its socket has
 * closed, the client when its last handle has), never under a callback
 * of ours still running; a connection that never had a socket (its
 * lookup failed, its address not connected yet) is freed at once, so
 * whoever fails one keeps the client's pointer first.  A stream whose
 * data callback ends it is freed when that callback returns (`in_cb`). */
#include "aws/h2.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "aws/h2_setup.h"
#include "base/buf.h"
#include "err.h"
#include "log.h"

/* Streams on one connection at most, whatever the server allows. */
#define H2_STREAMS_MAX 100u
/* Bytes a stream may be sent before its owner takes them: what a paused
 * stream holds at most, outside its owner's budget.  Measured at the
 * fixture (BENCH=fanout/latency): with 128 KiB, 16 shards over h2c cost
 * 2.5-2.9 CPU s per million records and each window update (at half of
 * it) ~20 ms to the next event, latency p99 22-26 ms at 50 records/s;
 * with 256 KiB 3.3 s/M and 6.6 ms; with 1 MiB 4.1 s/M and 4.5 ms (paused
 * streams' held bytes grow: page faults 0.05 -> 0.17 per record). */
#define H2_STREAM_WINDOW (128 << 10)
/* The connection's window, raised from HTTP/2's 64 KiB once its first DATA
 * frame came: paused streams must not hold up the others. */
#define H2_CONN_WINDOW (1 << 30)
/* A stream keeps its held bytes' buffer after a delivery at least this
 * large (events coming back to back: no growing it again); an idle one
 * (an empty event every few seconds) gives it back. */
#define H2_HELD_KEEP_MIN 4096u
#define H2_READ_BUF (64u << 10)
#define H2_CONNECT_TIMEOUT_MS 10000L
/* A connection with no stream for this long is closed. */
#define H2_IDLE_MS 60000u
/* An error answer's body is kept up to this size. */
#define H2_ERRBODY_MAX (64u << 10)
#define H2_TUNNEL_ANSWER_MAX 8192u

enum conn_state {
  C_RESOLVING = 0, C_CONNECTING, C_TUNNEL, C_HANDSHAKE, C_READY, C_DEAD
};

struct h2_conn {
  struct kcld_h2 *h2;
  struct h2_conn *prev, *next;       /* in h2->conns while usable */
  struct kcld_http_stream *streams;  /* on it, submitted or waiting */
  size_t n_streams;
  enum conn_state state;
  int tls;
  int goaway;                        /* no new streams */
  int tcp_open;                      /* c->tcp initialized */
  int writing;                       /* c->wreq in flight */
  int retrying;                      /* closing tcp for the next address */
  int window_raised;                 /* H2_CONN_WINDOW asked for */
  int connect_soon;                  /* the kick connects (an address) */
  char host[256], port[8];           /* the origin */
  char *via;                         /* the tunnel's CONNECT request */
  struct kcld_buf tunnel_in;         /* the proxy's answer so far */
  uv_getaddrinfo_t gai;
  struct addrinfo *addrs, *next_addr;
  uv_tcp_t tcp;
  uv_connect_t creq;
  uv_write_t wreq;
  struct kcld_buf out, flight;       /* to write; being written */
  SSL *ssl;
  BIO *rbio, *wbio;
  nghttp2_session *ng;
  uint64_t deadline;                 /* connect by then; 0 once ready */
  uint64_t idle_until;               /* close then when streamless */
  char why[200];                     /* why it failed */
};

struct kcld_http_stream {
  struct kcld_h2 *h2;
  struct h2_conn *c;                 /* NULL once detached */
  struct kcld_http_stream *cprev, *cnext; /* on c */
  struct kcld_http_stream *prev, *next;   /* in h2->streams */
  struct kcld_http_stream *qnext;    /* in h2's delivery queue */
  int32_t id;                        /* 0 until submitted */
  kcld_http_data_cb on_data;
  kcld_http_cb on_done;
  kcld_http_take_cb take;
  void *take_arg, *arg;
  struct kcld_h2_headers hdr;        /* until submitted */
  char *body;
  size_t body_len, body_off;
  long status;
  time_t date;
  struct kcld_buf held;              /* bytes for on_data, from held_off */
  size_t held_off;
  struct h2_err *err;                /* a non-2xx answer's, made then */
  uint64_t deadline;
  long timeout_ms;
  unsigned paused : 1, queued : 1, closed : 1, done : 1, took : 1,
    freeing : 1;
  unsigned in_cb;
  uint32_t close_code;
  int fail;                          /* KCLD_E* to end with, or 0 */
  char *errmsg;                      /* made when it fails */
};

/* What an error answer keeps (a 2xx one keeps none of it). */
struct h2_err {
  char content_type[128];
  char error_type[128];
  struct kcld_buf body;
};

struct kcld_h2 {
  uv_loop_t *loop;
  SSL_CTX *ssl_ctx;
  nghttp2_session_callbacks *cbs;
  nghttp2_option *ngopt;
  uv_timer_t timer;                  /* deadlines and idle connections */
  uv_timer_t kick;                   /* deliver() and writes, soon */
  uint64_t timer_due;
  struct h2_conn *conns;
  struct kcld_http_stream *streams;
  struct kcld_http_stream *q_head, *q_tail;
  size_t n_streams;
  size_t open_handles;               /* timers + connections not freed */
  long connect_timeout_ms;
  char *proxy_https, *proxy_http, *no_proxy;
  int closing;
  char rbuf[H2_READ_BUF];            /* what a socket read gives */
  char pbuf[H2_READ_BUF];            /* TLS plaintext */
};

static void conn_fail(struct h2_conn *c, int err, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));
static void conn_flush(struct h2_conn *c);
static void tls_error(struct h2_conn *c, const char *what);
static void deliver(struct kcld_h2 *h2);
static void stream_finish(struct kcld_http_stream *s, int err,
                          const char *msg);

/* ======== Small helpers ======== */

static char *dup_or_null(const char *s)
{
  return s && *s ? strdup(s) : NULL;
}

static void on_kick(uv_timer_t *t);
static void on_timer(uv_timer_t *t);

static void kick(struct kcld_h2 *h2)
{
  if (!h2->closing && !uv_is_active((uv_handle_t *)&h2->kick))
    uv_timer_start(&h2->kick, on_kick, 0, 0);
}

/* Has the deadline timer fire by `due` (loop time) at the latest. */
static void arm(struct kcld_h2 *h2, uint64_t due)
{
  uint64_t now = uv_now(h2->loop);
  if (h2->closing || !due)
    return;
  if (uv_is_active((uv_handle_t *)&h2->timer) && h2->timer_due <= due)
    return;
  h2->timer_due = due;
  uv_timer_start(&h2->timer, on_timer, due > now ? due - now : 0, 0);
}

static void queue(struct kcld_http_stream *s)
{
  struct kcld_h2 *h2 = s->h2;
  if (s->queued || s->done)
    return;
  s->queued = 1;
  s->qnext = NULL;
  if (h2->q_tail)
    h2->q_tail->qnext = s;
  else
    h2->q_head = s;
  h2->q_tail = s;
}

static void unqueue(struct kcld_http_stream *s)
{
  struct kcld_h2 *h2 = s->h2;
  struct kcld_http_stream **pp = &h2->q_head, *prev = NULL;

  if (!s->queued)
    return;
  while (*pp && *pp != s) {
    prev = *pp;
    pp = &(*pp)->qnext;
  }
  if (*pp)
    *pp = s->qnext;
  if (h2->q_tail == s)
    h2->q_tail = prev;
  s->queued = 0;
  s->qnext = NULL;
}

static int is_2xx(const struct kcld_http_stream *s)
{
  return s->status >= 200 && s->status < 300;
}

static char s_errmsg_oom[] = "out of memory for the error's text";

static void set_errmsg(struct kcld_http_stream *s, const char *fmt, ...)
  __attribute__((format(printf, 2, 3)));

/* Keeps why the stream fails (the first reason given), in a block made
 * now: an open stream carries none. */
static void set_errmsg(struct kcld_http_stream *s, const char *fmt, ...)
{
  va_list ap;

  if (s->errmsg)
    return;
  if (!(s->errmsg = malloc(200))) {
    s->errmsg = s_errmsg_oom;
    return;
  }
  va_start(ap, fmt);
  vsnprintf(s->errmsg, 200, fmt, ap);
  va_end(ap);
}

/* ======== Streams and connections, linked ======== */

static void conn_link_stream(struct h2_conn *c, struct kcld_http_stream *s)
{
  s->c = c;
  s->cprev = NULL;
  s->cnext = c->streams;
  if (c->streams)
    c->streams->cprev = s;
  c->streams = s;
  c->n_streams++;
  c->idle_until = 0;
}

/* Takes `s` off its connection: the nghttp2 stream forgets it (and is
 * reset, when still open and `reset`). */
static void conn_unlink_stream(struct kcld_http_stream *s, int reset)
{
  struct h2_conn *c = s->c;

  if (!c)
    return;
  if (s->id > 0 && c->ng) {
    /* held bytes never taken still count against the connection's window */
    if (s->held.len > s->held_off)
      nghttp2_session_consume_connection(c->ng, s->held.len - s->held_off);
    nghttp2_session_set_stream_user_data(c->ng, s->id, NULL);
    if (reset && !s->closed &&
        nghttp2_submit_rst_stream(c->ng, NGHTTP2_FLAG_NONE, s->id,
                                  NGHTTP2_CANCEL) == 0)
      kick(c->h2);
  }
  if (s->cprev)
    s->cprev->cnext = s->cnext;
  else
    c->streams = s->cnext;
  if (s->cnext)
    s->cnext->cprev = s->cprev;
  s->cprev = s->cnext = NULL;
  s->c = NULL;
  if (--c->n_streams == 0 && c->state != C_DEAD) {
    c->idle_until = uv_now(c->h2->loop) + H2_IDLE_MS;
    arm(c->h2, c->idle_until);
  }
}

static void stream_free(struct kcld_http_stream *s)
{
  kcld_h2_headers_clean_up(&s->hdr);
  free(s->body);
  kcld_buf_free(&s->held);
  if (s->err)
    kcld_buf_free(&s->err->body);
  free(s->err);
  if (s->errmsg != s_errmsg_oom)
    free(s->errmsg);
  free(s);
}

/* Ends `s` now: on_done runs once, with err (0: the answer, a 2xx one's
 * body ""). */
static void stream_finish(struct kcld_http_stream *s, int err,
                          const char *msg)
{
  struct kcld_h2 *h2 = s->h2;
  struct kcld_http_response resp;

  if (s->done)
    return;
  s->done = 1;
  unqueue(s);
  conn_unlink_stream(s, 1);
  if (s->prev)
    s->prev->next = s->next;
  else
    h2->streams = s->next;
  if (s->next)
    s->next->prev = s->prev;
  h2->n_streams--;

  memset(&resp, 0, sizeof(resp));
  resp.err = err;
  resp.status = err ? 0 : s->status;
  resp.errmsg = err ? (msg ? msg : kcld_strerror(err)) : "";
  resp.body = "";
  if (!err && s->err && s->err->body.p) {
    resp.body = s->err->body.p;
    resp.body_len = s->err->body.len;
  }
  resp.server_date = s->date;
  resp.content_type = s->err ? s->err->content_type : "";
  resp.error_type = s->err ? s->err->error_type : "";
  s->in_cb++;
  s->on_done(&resp, s->arg);
  s->in_cb--;
  if (!s->in_cb)
    stream_free(s);
  else
    s->freeing = 1;
}

/* ======== Delivery ======== */

static void consume(struct kcld_http_stream *s, size_t n)
{
  struct h2_conn *c = s->c;
  /* (a closed stream's bytes still count against the connection) */
  if (n && c && c->ng && s->id > 0 &&
      nghttp2_session_consume(c->ng, s->id, n) == 0)
    kick(s->h2);
}

/* Hands `s`'s held bytes to on_data while it is not paused, and ends it
 * when its answer has ended or failed.  0, or 1 when it was freed. */
static int deliver_one(struct kcld_http_stream *s)
{
  while (!s->paused && (s->held.len > s->held_off || s->took)) {
    const char *p = s->held.p ? s->held.p + s->held_off : "";
    size_t len = s->held.len - s->held_off, n;

    s->took = 0;
    s->in_cb++;
    n = s->on_data(p, len, s->arg);
    s->in_cb--;
    if (s->freeing) {
      if (!s->in_cb)
        stream_free(s);
      return 1;
    }
    if (s->done)
      return 0;
    if (n > len)
      n = len;
    s->held_off += n;
    consume(s, n);
    if (s->held_off == s->held.len) {
      if (n < H2_HELD_KEEP_MIN)
        kcld_buf_free(&s->held);
      s->held.len = s->held_off = 0;
    } else if (n < len) {
      s->paused = 1;
    }
  }
  if (s->fail && (s->paused || s->held.len == s->held_off)) {
    stream_finish(s, s->fail, s->errmsg);
    return 0;
  }
  if (s->closed && !s->paused && s->held.len == s->held_off) {
    if (s->close_code != NGHTTP2_NO_ERROR || !s->status)
      stream_finish(s, KCLD_ETRANSPORT,
                    s->status ? (s->errmsg ? s->errmsg : "reset")
                              : "the stream ended without an answer");
    else
      stream_finish(s, 0, NULL);
  }
  return 0;
}

/* Delivers every queued stream (a callback may queue, end or free any). */
static void deliver(struct kcld_h2 *h2)
{
  struct kcld_http_stream *s;

  while ((s = h2->q_head) != NULL) {
    h2->q_head = s->qnext;
    if (!h2->q_head)
      h2->q_tail = NULL;
    s->queued = 0;
    s->qnext = NULL;
    deliver_one(s);
  }
}

/* ======== nghttp2 callbacks: they only copy ======== */

static struct kcld_http_stream *stream_of(nghttp2_session *ng, int32_t id)
{
  return nghttp2_session_get_stream_user_data(ng, id);
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame,
                     const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *arg)
{
  struct kcld_http_stream *s = stream_of(ng, frame->hd.stream_id);
  char v[128];
  (void)flags;
  (void)arg;

  if (!s || frame->hd.type != NGHTTP2_HEADERS)
    return 0;
  snprintf(v, sizeof(v), "%.*s", (int)valuelen, (const char *)value);
  if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
    long st = strtol(v, NULL, 10);
    if (st >= 200) /* not a 1xx */
      s->status = st;
    /* (pseudo-headers come first) */
    if (st >= 300 && !s->err && !(s->err = calloc(1, sizeof(*s->err))) &&
        !s->fail) {
      s->fail = KCLD_ENOMEM;
      set_errmsg(s, "out of memory for an error answer");
    }
  } else if (s->err && namelen == 12 &&
             memcmp(name, "content-type", 12) == 0) {
    snprintf(s->err->content_type, sizeof(s->err->content_type), "%s", v);
  } else if (s->err && namelen == 16 &&
             memcmp(name, "x-amzn-errortype", 16) == 0) {
    snprintf(s->err->error_type, sizeof(s->err->error_type), "%s", v);
  } else if (namelen == 4 && memcmp(name, "date", 4) == 0) {
    time_t t = curl_getdate(v, NULL);
    s->date = t > 0 ? t : 0;
  }
  return 0;
}

static int on_chunk(nghttp2_session *ng, uint8_t flags, int32_t id,
                    const uint8_t *data, size_t len, void *arg)
{
  struct kcld_http_stream *s = stream_of(ng, id);
  struct h2_conn *c = arg;
  (void)flags;

  if (!c->window_raised) {
    /* Not before: kinesis-mock (LocalStack's Kinesis engine) stops
     * sending for good when a connection's window is raised earlier. */
    c->window_raised = 1;
    nghttp2_session_set_local_window_size(ng, NGHTTP2_FLAG_NONE, 0,
                                          H2_CONN_WINDOW);
  }
  if (!s) { /* ended by us: the connection's window is opened again */
    nghttp2_session_consume_connection(ng, len);
    return 0;
  }
  if (!is_2xx(s)) {
    if (s->err) {
      size_t room = H2_ERRBODY_MAX - s->err->body.len;
      kcld_buf_add(&s->err->body, data, len < room ? len : room);
    }
    nghttp2_session_consume(ng, id, len);
    return 0;
  }
  if (s->take && !s->paused && s->held.len == s->held_off) {
    size_t n = s->take((const char *)data, len, s->take_arg);
    if (n > len)
      n = len;
    if (n) {
      nghttp2_session_consume(ng, id, n);
      s->took = 1;
    }
    data += n;
    len -= n;
  }
  if (len && kcld_buf_add(&s->held, data, len) != 0 && !s->fail) {
    s->fail = KCLD_ENOMEM;
    set_errmsg(s, "out of memory for a stream");
  }
  queue(s);
  return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code,
                           void *arg)
{
  struct kcld_http_stream *s = stream_of(ng, id);
  (void)arg;

  if (!s)
    return 0;
  s->closed = 1;
  s->close_code = code;
  if (code != NGHTTP2_NO_ERROR && !s->fail) { /* ends it, paused or not */
    s->fail = KCLD_ETRANSPORT;
    set_errmsg(s, "HTTP/2 stream reset by the server (%s)",
               nghttp2_http2_strerror(code));
  }
  queue(s);
  return 0;
}

/* The server's SETTINGS allow fewer concurrent streams than `c` has: the
 * streams not opened yet beyond them end (their owners start them again,
 * on another connection) rather than wait for one of these to end. */
static void conn_fit(struct h2_conn *c)
{
  uint32_t m = nghttp2_session_get_remote_settings(
    c->ng, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
  size_t n = 0;

  for (struct kcld_http_stream *s = c->streams; s; s = s->cnext)
    n += !s->fail;
  for (struct kcld_http_stream *s = c->streams; s && n > m; s = s->cnext) {
    if (s->fail || s->id <= 0 || nghttp2_session_find_stream(c->ng, s->id))
      continue; /* opened: its HEADERS went */
    s->fail = KCLD_ETRANSPORT;
    set_errmsg(s, "%.150s:%s allows %u streams on a connection", c->host,
               c->port, m);
    queue(s);
    n--;
  }
}

static int on_frame(nghttp2_session *ng, const nghttp2_frame *frame,
                    void *arg)
{
  struct h2_conn *c = arg;
  (void)ng;

  if (frame->hd.type == NGHTTP2_GOAWAY)
    c->goaway = 1;
  else if (frame->hd.type == NGHTTP2_SETTINGS &&
           !(frame->hd.flags & NGHTTP2_FLAG_ACK))
    conn_fit(c);
  return 0;
}

static ssize_t read_body(nghttp2_session *ng, int32_t id, uint8_t *buf,
                         size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *arg)
{
  struct kcld_http_stream *s = stream_of(ng, id); /* NULL once ended */
  size_t n;
  (void)src;
  (void)arg;

  if (!s) { /* ended by us before its body went */
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    return 0;
  }
  n = s->body_len - s->body_off;
  if (n > len)
    n = len;
  memcpy(buf, s->body + s->body_off, n);
  s->body_off += n;
  if (s->body_off == s->body_len) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    free(s->body); /* sent: an open stream keeps nothing of it */
    s->body = NULL;
  }
  return (ssize_t)n;
}

/* ======== Requests ======== */

static void submit(struct kcld_http_stream *s)
{
  struct h2_conn *c = s->c;
  nghttp2_data_provider prd = {.read_callback = read_body};
  int32_t id = nghttp2_submit_request(c->ng, NULL, s->hdr.nv, s->hdr.nvlen,
                                      &prd, s);

  kcld_h2_headers_clean_up(&s->hdr); /* nghttp2 copied it */
  if (id < 0) {
    s->fail = KCLD_ETRANSPORT;
    set_errmsg(s, "HTTP/2: %s", nghttp2_strerror(id));
    queue(s);
    return;
  }
  s->id = id;
}

/* ======== Connections ======== */

/* The client goes when its last handle (a timer, a connection) has. */
static void h2_unref(struct kcld_h2 *h2)
{
  if (--h2->open_handles > 0 || !h2->closing)
    return;
  SSL_CTX_free(h2->ssl_ctx);
  nghttp2_session_callbacks_del(h2->cbs);
  nghttp2_option_del(h2->ngopt);
  free(h2->proxy_https);
  free(h2->proxy_http);
  free(h2->no_proxy);
  free(h2);
}

static void on_timer_closed(uv_handle_t *h)
{
  h2_unref(h->data);
}

static void conn_free(struct h2_conn *c)
{
  struct kcld_h2 *h2 = c->h2;

  if (c->ng)
    nghttp2_session_del(c->ng);
  if (c->ssl)
    SSL_free(c->ssl); /* and its BIOs */
  if (c->addrs)
    uv_freeaddrinfo(c->addrs);
  kcld_buf_free(&c->out);
  kcld_buf_free(&c->flight);
  kcld_buf_free(&c->tunnel_in);
  free(c->via);
  free(c);
  h2_unref(h2);
}

static void on_conn_closed(uv_handle_t *h)
{
  conn_free(h->data);
}

static void conn_unlink(struct h2_conn *c)
{
  struct kcld_h2 *h2 = c->h2;
  if (c->prev)
    c->prev->next = c->next;
  else if (h2->conns == c)
    h2->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  c->prev = c->next = NULL;
}

/* Closes `c` (its streams, if any left, must have been detached). */
static void conn_close(struct h2_conn *c)
{
  if (c->state == C_DEAD)
    return;
  c->state = C_DEAD;
  conn_unlink(c);
  if (c->tcp_open)
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
  else if (c->gai.data) /* resolving: its callback frees it */
    uv_cancel((uv_req_t *)&c->gai);
  else if (!c->retrying) /* else on_retry_closed does */
    conn_free(c);
}

/* Fails `c` and ends each of its streams with `err` (on the next
 * delivery: bytes they hold go to their owners first). */
static void conn_fail(struct h2_conn *c, int err, const char *fmt, ...)
{
  struct kcld_h2 *h2 = c->h2; /* conn_close may free c */
  struct kcld_http_stream *s;
  va_list ap;

  if (c->state == C_DEAD)
    return;
  va_start(ap, fmt);
  vsnprintf(c->why, sizeof(c->why), fmt, ap);
  va_end(ap);
  while ((s = c->streams) != NULL) {
    conn_unlink_stream(s, 0);
    if (!s->fail && !(s->closed && s->close_code == NGHTTP2_NO_ERROR &&
                      s->status)) { /* a whole answer stays one */
      s->fail = err;
      set_errmsg(s, "%s", c->why);
    }
    queue(s);
  }
  conn_close(c);
  kick(h2);
}

static void on_written(uv_write_t *w, int status)
{
  struct h2_conn *c = w->data;

  c->writing = 0;
  if (c->flight.cap > (16u << 10))
    kcld_buf_free(&c->flight); /* a burst's: idle connections keep none */
  c->flight.len = 0;
  if (c->state == C_DEAD)
    return;
  if (status < 0) {
    conn_fail(c, KCLD_ETRANSPORT, "writing to %s:%s: %s", c->host, c->port,
              uv_strerror(status));
    return;
  }
  conn_flush(c);
}

static void write_out(struct h2_conn *c)
{
  struct kcld_buf t;
  uv_buf_t b;
  int rc;

  if (c->writing || c->out.len == 0 || c->state == C_DEAD)
    return;
  t = c->flight;
  c->flight = c->out;
  c->out = t;
  c->out.len = 0;
  b = uv_buf_init(c->flight.p, (unsigned)c->flight.len);
  c->wreq.data = c;
  rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_written);
  if (rc != 0) {
    conn_fail(c, KCLD_ETRANSPORT, "writing to %s:%s: %s", c->host, c->port,
              uv_strerror(rc));
    return;
  }
  c->writing = 1;
}

/* TLS: what OpenSSL wrote goes out. */
static void tls_drain(struct h2_conn *c)
{
  char tmp[16384];
  int n;

  while ((n = BIO_read(c->wbio, tmp, sizeof(tmp))) > 0)
    kcld_buf_add(&c->out, tmp, (size_t)n);
}

/* Sends what nghttp2 has to send (and, if nothing is left to do on the
 * session, closes the connection). */
static void conn_flush(struct h2_conn *c)
{
  const uint8_t *data;
  ssize_t n;

  if (c->state == C_DEAD)
    return;
  while (c->state == C_READY && c->out.len < (256u << 10) &&
         (n = nghttp2_session_mem_send(c->ng, &data)) != 0) {
    if (n < 0) {
      conn_fail(c, KCLD_ETRANSPORT, "HTTP/2 to %s:%s: %s", c->host, c->port,
                nghttp2_strerror((int)n));
      return;
    }
    if (!c->tls)
      kcld_buf_add(&c->out, data, (size_t)n);
    else if (SSL_write(c->ssl, data, (int)n) != (int)n) { /* memory BIO */
      tls_error(c, "write");
      return;
    }
  }
  if (c->ssl)
    tls_drain(c);
  if (c->out.oom) {
    conn_fail(c, KCLD_ENOMEM, "out of memory writing to %s", c->host);
    return;
  }
  write_out(c);
  if (c->h2->q_head) /* mem_send ended streams (refused after a GOAWAY) */
    kick(c->h2);
  if (c->state == C_READY && !nghttp2_session_want_read(c->ng) &&
      !nghttp2_session_want_write(c->ng) && !c->writing && !c->streams)
    conn_close(c);
}

/* The session is up: the waiting streams go. */
static void conn_ready(struct h2_conn *c)
{
  struct kcld_h2 *h2 = c->h2;
  nghttp2_settings_entry iv[] = {
    {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
    {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_STREAM_WINDOW}};
  int rc = nghttp2_session_client_new2(&c->ng, h2->cbs, c, h2->ngopt);

  if (rc == 0)
    rc = nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, iv, 2);

  if (rc != 0) {
    conn_fail(c, KCLD_ENOMEM, "HTTP/2 session: %s", nghttp2_strerror(rc));
    return;
  }
  c->state = C_READY;
  c->deadline = 0;
  for (struct kcld_http_stream *s = c->streams; s; s = s->cnext)
    if (!s->id && !s->fail)
      submit(s);
  conn_flush(c);
  deliver(h2); /* streams whose submission failed */
}

static void tls_error(struct h2_conn *c, const char *what)
{
  long v = SSL_get_verify_result(c->ssl);
  unsigned long e = ERR_get_error();
  char text[160];

  if (v != X509_V_OK)
    snprintf(text, sizeof(text), "certificate: %s",
             X509_verify_cert_error_string(v));
  else if (e)
    ERR_error_string_n(e, text, sizeof(text));
  else
    snprintf(text, sizeof(text), "connection closed");
  ERR_clear_error();
  conn_fail(c, KCLD_ETRANSPORT, "TLS %s with %s:%s: %s", what, c->host,
            c->port, text);
}

static void tls_handshake(struct h2_conn *c)
{
  int rc = SSL_do_handshake(c->ssl);
  const unsigned char *alpn = NULL;
  unsigned alpn_len = 0;

  tls_drain(c);
  write_out(c);
  if (rc != 1) {
    int e = SSL_get_error(c->ssl, rc);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
      tls_error(c, "handshake");
    return;
  }
  SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_len);
  if (alpn_len != 2 || memcmp(alpn, "h2", 2) != 0) {
    conn_fail(c, KCLD_ETRANSPORT, "%s:%s does not offer HTTP/2 (ALPN h2)",
              c->host, c->port);
    return;
  }
  conn_ready(c);
}

static int tls_start(struct h2_conn *c)
{
  struct in6_addr a6;
  struct in_addr a4;
  int ip = inet_pton(AF_INET, c->host, &a4) == 1 ||
           inet_pton(AF_INET6, c->host, &a6) == 1;

  if (!(c->ssl = SSL_new(c->h2->ssl_ctx)))
    return KCLD_ENOMEM;
  c->rbio = BIO_new(BIO_s_mem());
  c->wbio = BIO_new(BIO_s_mem());
  if (!c->rbio || !c->wbio) {
    BIO_free(c->rbio);
    BIO_free(c->wbio);
    return KCLD_ENOMEM;
  }
  SSL_set_bio(c->ssl, c->rbio, c->wbio);
  SSL_set_connect_state(c->ssl);
  SSL_set_mode(c->ssl, SSL_MODE_RELEASE_BUFFERS);
  if (ip) {
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), c->host) != 1)
      return KCLD_ENOMEM;
  } else {
    if (SSL_set_tlsext_host_name(c->ssl, c->host) != 1 ||
        SSL_set1_host(c->ssl, c->host) != 1)
      return KCLD_ENOMEM; /* no check of the name: no connection */
  }
  c->state = C_HANDSHAKE;
  tls_handshake(c);
  return 0;
}

/* The socket (or the tunnel) is through to the origin. */
static void conn_through(struct h2_conn *c)
{
  int rc;

  if (!c->tls) {
    conn_ready(c);
    return;
  }
  if ((rc = tls_start(c)) != 0)
    conn_fail(c, rc, "TLS set-up for %s: %s", c->host, kcld_strerror(rc));
}

/* Feeds nghttp2 what the origin sent.  0, or -1 when `c` failed. */
static int feed(struct h2_conn *c, const char *p, size_t n)
{
  ssize_t rv = nghttp2_session_mem_recv(c->ng, (const uint8_t *)p, n);
  if (rv < 0) {
    conn_fail(c, KCLD_ETRANSPORT, "HTTP/2 from %s:%s: %s", c->host, c->port,
              nghttp2_strerror((int)rv));
    return -1;
  }
  return 0;
}

/* TLS: ciphertext in, plaintext to nghttp2. */
static void tls_in(struct h2_conn *c, const char *p, size_t n)
{
  struct kcld_h2 *h2 = c->h2;
  int got;

  BIO_write(c->rbio, p, (int)n);
  if (c->state == C_HANDSHAKE) {
    tls_handshake(c);
    if (c->state != C_READY)
      return;
  }
  while ((got = SSL_read(c->ssl, h2->pbuf, sizeof(h2->pbuf))) > 0)
    if (feed(c, h2->pbuf, (size_t)got) != 0)
      return;
  switch (SSL_get_error(c->ssl, got)) {
  case SSL_ERROR_WANT_READ:
  case SSL_ERROR_WANT_WRITE:
    break;
  case SSL_ERROR_ZERO_RETURN:
    conn_fail(c, KCLD_ETRANSPORT, "%s:%s closed the connection", c->host,
              c->port);
    break;
  default:
    tls_error(c, "read");
  }
}

/* The proxy's answer to CONNECT: on 200, the tunnel is through. */
static void tunnel_in(struct h2_conn *c, const char *p, size_t n)
{
  char *end;
  size_t head;
  int code = 0;

  kcld_buf_add(&c->tunnel_in, p, n);
  if (c->tunnel_in.oom || c->tunnel_in.len > H2_TUNNEL_ANSWER_MAX) {
    conn_fail(c, KCLD_ETRANSPORT, "the proxy's answer to CONNECT %s:%s is "
              "too long", c->host, c->port);
    return;
  }
  if (!(end = strstr(c->tunnel_in.p, "\r\n\r\n")))
    return;
  head = (size_t)(end + 4 - c->tunnel_in.p);
  if (sscanf(c->tunnel_in.p, "HTTP/1.%*d %d", &code) != 1 || code != 200) {
    size_t l = strcspn(c->tunnel_in.p, "\r\n");
    conn_fail(c, KCLD_ETRANSPORT, "the proxy refused CONNECT %s:%s: %.*s",
              c->host, c->port, (int)(l > 100 ? 100 : l), c->tunnel_in.p);
    return;
  }
  conn_through(c);
  if (c->state != C_DEAD && c->tunnel_in.len > head) {
    /* the origin's first bytes came with the proxy's answer */
    struct kcld_buf rest = c->tunnel_in;
    memset(&c->tunnel_in, 0, sizeof(c->tunnel_in));
    if (c->tls)
      tls_in(c, rest.p + head, rest.len - head);
    else if (c->state == C_READY)
      feed(c, rest.p + head, rest.len - head);
    kcld_buf_free(&rest);
  }
  kcld_buf_free(&c->tunnel_in);
}

static void on_alloc(uv_handle_t *h, size_t want, uv_buf_t *b)
{
  struct h2_conn *c = h->data;
  (void)want;
  *b = uv_buf_init(c->h2->rbuf, sizeof(c->h2->rbuf));
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
  struct h2_conn *c = st->data;
  struct kcld_h2 *h2 = c->h2;

  if (nread == 0 || c->state == C_DEAD)
    return;
  if (nread < 0) {
    conn_fail(c, KCLD_ETRANSPORT, nread == UV_EOF
                ? "%s:%s closed the connection%s"
                : "reading from %s:%s: %s", c->host, c->port,
              nread == UV_EOF ? "" : uv_strerror((int)nread));
    deliver(h2);
    return;
  }
  if (c->state == C_TUNNEL)
    tunnel_in(c, b->base, (size_t)nread);
  else if (c->tls)
    tls_in(c, b->base, (size_t)nread);
  else if (c->state == C_READY)
    feed(c, b->base, (size_t)nread);
  deliver(h2);
  if (!h2->closing)
    conn_flush(c);
}

static void connect_next(struct h2_conn *c);

static void on_retry_closed(uv_handle_t *h)
{
  struct h2_conn *c = h->data;

  c->retrying = 0;
  if (c->state == C_DEAD) {
    conn_free(c);
  } else {
    struct kcld_h2 *h2 = c->h2;
    connect_next(c);
    deliver(h2); /* when it failed */
  }
}

static void on_connected(uv_connect_t *req, int status)
{
  struct h2_conn *c = req->data;
  int rc;

  if (c->state == C_DEAD)
    return;
  if (status < 0) {
    if (c->next_addr) { /* the name's next address, on a new socket */
      c->tcp_open = 0;
      c->retrying = 1;
      uv_close((uv_handle_t *)&c->tcp, on_retry_closed);
      return;
    }
    conn_fail(c, KCLD_ETRANSPORT, "connecting to %s:%s: %s", c->host,
              c->port, uv_strerror(status));
    deliver(c->h2);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  uv_tcp_keepalive(&c->tcp, 1, 60); /* as curl's connections */
  rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  if (rc != 0) {
    conn_fail(c, KCLD_ETRANSPORT, "reading from %s: %s", c->host,
              uv_strerror(rc));
    deliver(c->h2);
    return;
  }
  if (c->via) {
    c->state = C_TUNNEL;
    kcld_buf_add(&c->out, c->via, strlen(c->via));
    write_out(c);
  } else {
    conn_through(c);
  }
  deliver(c->h2);
}

static void connect_next(struct h2_conn *c)
{
  struct addrinfo *ai = c->next_addr;
  int rc;

  c->next_addr = ai->ai_next;
  rc = uv_tcp_init(c->h2->loop, &c->tcp);
  if (rc == 0) {
    c->tcp_open = 1;
    c->tcp.data = c;
    c->creq.data = c;
    rc = uv_tcp_connect(&c->creq, &c->tcp, ai->ai_addr, on_connected);
  }
  if (rc != 0 && c->tcp_open && c->next_addr) { /* e.g. no IPv6 route */
    c->tcp_open = 0;
    c->retrying = 1;
    uv_close((uv_handle_t *)&c->tcp, on_retry_closed);
  } else if (rc != 0) { /* the caller delivers */
    conn_fail(c, KCLD_ETRANSPORT, "connecting to %s:%s: %s", c->host,
              c->port, uv_strerror(rc));
  }
}

static void on_resolved(uv_getaddrinfo_t *req, int status,
                        struct addrinfo *res)
{
  struct h2_conn *c = req->data;
  struct kcld_h2 *h2 = c->h2; /* conn_fail may free c */

  c->gai.data = NULL;
  c->addrs = res;
  if (c->state == C_DEAD) { /* closed meanwhile: conn_close left it here */
    conn_free(c);
    return;
  }
  if (status < 0 || !res) {
    conn_fail(c, KCLD_ETRANSPORT, "resolving %s: %s", c->host,
              uv_strerror(status));
    deliver(h2);
    return;
  }
  c->state = C_CONNECTING;
  c->next_addr = res;
  connect_next(c);
  deliver(h2); /* when it failed */
}

/* A new connection to (tls, host, port), resolving. */
static struct h2_conn *conn_new(struct kcld_h2 *h2, int tls,
                                const char *host, const char *port, int *rc)
{
  struct h2_conn *c = calloc(1, sizeof(*c));
  char dhost[256], dport[8];
  struct addrinfo hints;

  if (!c) {
    *rc = KCLD_ENOMEM;
    return NULL;
  }
  c->h2 = h2;
  c->tls = tls;
  snprintf(c->host, sizeof(c->host), "%s", host);
  snprintf(c->port, sizeof(c->port), "%s", port);
  snprintf(dhost, sizeof(dhost), "%s", host);
  snprintf(dport, sizeof(dport), "%s", port);
  if ((*rc = kcld_h2_tunnel(tls ? h2->proxy_https : h2->proxy_http,
                            h2->no_proxy, host, port, dhost, sizeof(dhost),
                            dport, sizeof(dport), &c->via)) != 0) {
    free(c->via);
    free(c);
    return NULL;
  }
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  if (getaddrinfo(dhost, dport, &hints, &c->addrs) == 0) {
    /* An address already: no lookup on the thread pool (which would start
     * its threads); the kick connects. */
    c->state = C_CONNECTING;
    c->next_addr = c->addrs;
    c->connect_soon = 1;
    kick(h2);
    *rc = 0;
  } else {
    c->addrs = NULL;
    hints.ai_flags = 0;
    c->gai.data = c;
    *rc = uv_getaddrinfo(h2->loop, &c->gai, on_resolved, dhost, dport,
                         &hints);
  }
  if (*rc != 0) {
    free(c->via);
    free(c);
    *rc = KCLD_ETRANSPORT;
    return NULL;
  }
  uv_update_time(h2->loop);
  c->deadline = uv_now(h2->loop) + (uint64_t)h2->connect_timeout_ms;
  arm(h2, c->deadline);
  c->next = h2->conns;
  if (h2->conns)
    h2->conns->prev = c;
  h2->conns = c;
  h2->open_handles++;
  return c;
}

/* The connection a new stream to (tls, host, port) goes on. */
static struct h2_conn *conn_for(struct kcld_h2 *h2, int tls,
                                const char *host, const char *port, int *rc)
{
  for (struct h2_conn *c = h2->conns; c; c = c->next) {
    size_t cap = H2_STREAMS_MAX;
    if (c->tls != tls || c->goaway || strcmp(c->host, host) != 0 ||
        strcmp(c->port, port) != 0)
      continue;
    if (c->ng) {
      uint32_t m = nghttp2_session_get_remote_settings(
        c->ng, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
      if (m < cap)
        cap = m;
    }
    if (c->n_streams < cap)
      return c;
  }
  return conn_new(h2, tls, host, port, rc);
}

/* ======== Timers ======== */

static void on_kick(uv_timer_t *t)
{
  struct kcld_h2 *h2 = t->data;

  for (struct h2_conn *c = h2->conns, *next; c; c = next) {
    next = c->next;
    if (c->connect_soon) {
      c->connect_soon = 0;
      connect_next(c);
    }
  }
  deliver(h2);
  for (struct h2_conn *c = h2->conns, *next; c && !h2->closing; c = next) {
    next = c->next;
    conn_flush(c);
  }
  deliver(h2); /* connections that failed writing */
}

/* Ends the streams and connections past their deadlines; closes
 * connections idle for long; re-arms for the next deadline. */
static void on_timer(uv_timer_t *t)
{
  struct kcld_h2 *h2 = t->data;
  uint64_t now = uv_now(h2->loop), next = 0;
  struct kcld_http_stream *s, *sn;
  struct h2_conn *c, *cn;

  for (c = h2->conns; c; c = cn) {
    cn = c->next;
    if (c->deadline && c->deadline <= now)
      conn_fail(c, KCLD_ETIMEDOUT, "connecting to %s:%s: no connection "
                "after %ld ms", c->host, c->port, h2->connect_timeout_ms);
    else if (!c->streams && c->idle_until && c->idle_until <= now)
      conn_close(c);
  }
  deliver(h2);
  for (s = h2->streams; s; s = sn) {
    sn = s->next;
    if (s->deadline && s->deadline <= now) {
      char msg[96];
      snprintf(msg, sizeof(msg), "the answer did not end within %ld ms",
               s->timeout_ms);
      stream_finish(s, KCLD_ETIMEDOUT, msg);
      sn = h2->streams; /* the callback may have ended any */
    }
  }
  if (h2->closing)
    return;
  for (c = h2->conns; c; c = c->next) {
    uint64_t d = c->deadline ? c->deadline
                             : (!c->streams ? c->idle_until : 0);
    if (d && (!next || d < next))
      next = d;
  }
  for (s = h2->streams; s; s = s->next)
    if (s->deadline && (!next || s->deadline < next))
      next = s->deadline;
  if (next)
    arm(h2, next);
}

/* ======== Interface ======== */

int kcld_h2_new(uv_loop_t *loop, const struct kcld_h2_opts *opts,
                struct kcld_h2 **out)
{
  static const unsigned char alpn[] = {2, 'h', '2'};
  const struct kcld_h2_opts none = {0};
  struct kcld_h2 *h2;
  int rc = KCLD_ENOMEM;

  if (!loop || !out)
    return KCLD_EINVAL;
  *out = NULL;
  if (!opts)
    opts = &none;
  if (!(h2 = calloc(1, sizeof(*h2))))
    return KCLD_ENOMEM;
  h2->loop = loop;
  h2->connect_timeout_ms = opts->connect_timeout_ms > 0
                             ? opts->connect_timeout_ms
                             : H2_CONNECT_TIMEOUT_MS;
  h2->proxy_https = dup_or_null(opts->proxy_https);
  h2->proxy_http = dup_or_null(opts->proxy_http);
  h2->no_proxy = dup_or_null(opts->no_proxy);
  h2->ssl_ctx = SSL_CTX_new(TLS_client_method());
  if (!h2->ssl_ctx || nghttp2_session_callbacks_new(&h2->cbs) != 0 ||
      nghttp2_option_new(&h2->ngopt) != 0 ||
      (opts->proxy_https && *opts->proxy_https && !h2->proxy_https) ||
      (opts->proxy_http && *opts->proxy_http && !h2->proxy_http) ||
      (opts->no_proxy && *opts->no_proxy && !h2->no_proxy))
    goto fail;
  SSL_CTX_set_min_proto_version(h2->ssl_ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(h2->ssl_ctx, SSL_VERIFY_PEER, NULL);
  SSL_CTX_set_alpn_protos(h2->ssl_ctx, alpn, sizeof(alpn));
  if ((opts->ca_file && *opts->ca_file
         ? SSL_CTX_load_verify_locations(h2->ssl_ctx, opts->ca_file, NULL)
         : SSL_CTX_set_default_verify_paths(h2->ssl_ctx)) != 1) {
    ERR_clear_error();
    rc = KCLD_EIO;
    goto fail;
  }
  for (int i = 0; i < 2; i++) {
    const char *px = i ? h2->proxy_http : h2->proxy_https;
    if (px && strncasecmp(px, "https://", 8) == 0)
      kcld_log(KCLD_LOG_WARN, "an https:// proxy is not supported for "
               "fan-out subscriptions: they will fail (use an http:// "
               "proxy, or no_proxy)", "variable",
               i ? "http_proxy" : "https_proxy", NULL);
  }
  nghttp2_session_callbacks_set_on_header_callback(h2->cbs, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(h2->cbs,
                                                            on_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(h2->cbs,
                                                         on_stream_close);
  nghttp2_session_callbacks_set_on_frame_recv_callback(h2->cbs, on_frame);
  nghttp2_option_set_no_auto_window_update(h2->ngopt, 1);
  uv_timer_init(loop, &h2->timer);
  uv_timer_init(loop, &h2->kick);
  h2->timer.data = h2->kick.data = h2;
  h2->open_handles = 2;
  *out = h2;
  return 0;

fail:
  h2->closing = 1;
  h2->open_handles = 1;
  h2_unref(h2);
  return rc;
}

int kcld_h2_stream_start(struct kcld_h2 *h2,
                         const struct kcld_http_request *req,
                         kcld_http_data_cb on_data, kcld_http_cb on_done,
                         void *arg, struct kcld_http_stream **out)
{
  struct kcld_http_stream *s;
  struct h2_conn *c;
  char host[256], port[8];
  const char *path;
  int tls, rc;

  if (!h2 || !req || !req->url || !on_data || !on_done || !out)
    return KCLD_EINVAL;
  *out = NULL;
  if (h2->closing)
    return KCLD_ECANCELED;
  if (kcld_h2_parse_url(req->url, &tls, host, sizeof(host), port, sizeof(port),
                &path) != 0)
    return KCLD_EINVAL;
  if (!(s = calloc(1, sizeof(*s))))
    return KCLD_ENOMEM;
  s->h2 = h2;
  s->on_data = on_data;
  s->on_done = on_done;
  s->arg = arg;
  s->take = req->take;
  s->take_arg = req->take_arg ? req->take_arg : arg;
  rc = kcld_h2_headers_build(&s->hdr, req, tls, host, port, path);
  if (rc == 0 && req->body_len &&
      !(s->body = malloc(req->body_len)))
    rc = KCLD_ENOMEM;
  if (rc == 0 && req->body_len) {
    memcpy(s->body, req->body, req->body_len);
    s->body_len = req->body_len;
  }
  if (rc != 0 || !(c = conn_for(h2, tls, host, port, &rc))) {
    stream_free(s);
    return rc;
  }
  uv_update_time(h2->loop);
  s->timeout_ms = req->timeout_ms;
  if (s->timeout_ms > 0) {
    s->deadline = uv_now(h2->loop) + (uint64_t)s->timeout_ms;
    arm(h2, s->deadline);
  }
  s->next = h2->streams;
  if (h2->streams)
    h2->streams->prev = s;
  h2->streams = s;
  h2->n_streams++;
  conn_link_stream(c, s);
  if (c->state == C_READY) {
    submit(s);
    kick(h2); /* sends it, or ends it when it could not be submitted */
  }
  *out = s;
  return 0;
}

void kcld_http_stream_pause(struct kcld_http_stream *s)
{
  if (s && !s->done)
    s->paused = 1;
}

void kcld_http_stream_resume(struct kcld_http_stream *s)
{
  if (!s || s->done || !s->paused)
    return;
  s->paused = 0;
  if (s->held.len > s->held_off || s->took || s->closed || s->fail) {
    queue(s);
    kick(s->h2);
  }
}

int kcld_http_stream_paused(const struct kcld_http_stream *s)
{
  return s && !s->done ? s->paused : 0;
}

void kcld_http_stream_cancel(struct kcld_http_stream *s)
{
  if (s && !s->done)
    stream_finish(s, KCLD_ECANCELED, "cancelled");
}

size_t kcld_h2_streams(const struct kcld_h2 *h2)
{
  return h2 ? h2->n_streams : 0;
}

void kcld_h2_close(struct kcld_h2 *h2)
{
  if (!h2 || h2->closing)
    return;
  h2->closing = 1;
  while (h2->streams)
    stream_finish(h2->streams, KCLD_ECANCELED, "client closed");
  while (h2->conns)
    conn_close(h2->conns);
  uv_timer_stop(&h2->timer);
  uv_timer_stop(&h2->kick);
  uv_close((uv_handle_t *)&h2->timer, on_timer_closed);
  uv_close((uv_handle_t *)&h2->kick, on_timer_closed);
}
