/* http_server.c — GET /metrics and /healthz over HTTP/1.1 on the uv loop.
 *
 * The parser works on the bytes received so far and either finds a whole
 * request head, asks for more, or names the status to refuse it with.  A
 * connection holds one fixed buffer of KCLD_HTTP_MAX_HEAD bytes; while a
 * response is written, reading stops, so pipelined requests wait in the
 * buffer (or in the kernel) and are answered in order. */
#include "ops/http_server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "err.h"
#include "log.h"

#define DEFAULT_TIMEOUT_MS 3000
#define DEFAULT_MAX_CLIENTS 64
#define MAX_METHOD 16

/* ======== The parser ======== */

static int is_tchar(unsigned char c)
{
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
      (c >= 'A' && c <= 'Z'))
    return 1;
  return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static long fail(struct kcld_http_parsed *out, int status)
{
  out->status = status;
  return KCLD_EINVAL;
}

/* Finds the CRLF ending the line that starts at `pos`.  Returns 1 with
 * *eol at the CR, 0 when the line is not complete yet, -1 when a bare LF
 * or a CR not followed by LF makes it malformed. */
static int find_eol(const char *buf, size_t len, size_t pos, size_t *eol)
{
  for (size_t i = pos; i < len; i++) {
    if (buf[i] == '\n')
      return -1;
    if (buf[i] == '\r') {
      if (i + 1 == len)
        return 0;
      if (buf[i + 1] != '\n')
        return -1;
      *eol = i;
      return 1;
    }
  }
  return 0;
}

static int ieq(const char *a, size_t n, const char *lit)
{
  return strlen(lit) == n && strncasecmp(a, lit, n) == 0;
}

static long parse_request_line(const char *p, size_t n,
                               struct kcld_http_parsed *out)
{
  size_t i = 0, t0, tn;

  while (i < n && p[i] != ' ') {
    if (!is_tchar((unsigned char)p[i]))
      return fail(out, 400);
    i++;
  }
  if (i == 0 || i == n)
    return fail(out, 400);
  if (i > MAX_METHOD)
    return fail(out, 501);
  out->method_text = p;
  out->method_len = i;
  if (i == 3 && memcmp(p, "GET", 3) == 0)
    out->method = KCLD_HTTP_GET;
  else if (i == 4 && memcmp(p, "HEAD", 4) == 0)
    out->method = KCLD_HTTP_HEAD;
  else
    out->method = KCLD_HTTP_OTHER;
  t0 = ++i;
  while (i < n && p[i] != ' ') {
    unsigned char c = (unsigned char)p[i];
    if (c < 0x21 || c > 0x7e)
      return fail(out, 400);
    i++;
  }
  tn = i - t0;
  if (tn > KCLD_HTTP_MAX_TARGET)
    return fail(out, 414);
  if (tn == 0 || i == n || p[t0] != '/')
    return fail(out, 400);
  out->path = p + t0;
  out->path_len = tn;
  const char *q = memchr(p + t0, '?', tn);
  if (q) {
    out->path_len = (size_t)(q - (p + t0));
    out->query = q + 1;
    out->query_len = tn - out->path_len - 1;
  }
  i++;
  if (n - i != 8 || memcmp(p + i, "HTTP/", 5) != 0 || p[i + 6] != '.' ||
      p[i + 5] < '0' || p[i + 5] > '9' || p[i + 7] < '0' || p[i + 7] > '9')
    return fail(out, 400);
  if (p[i + 5] != '1' || p[i + 7] > '1')
    return fail(out, 505);
  out->minor = p[i + 7] - '0';
  return 0;
}

/* Reads a Connection header's comma-separated tokens. */
static void connection_tokens(const char *v, size_t n, int *close_,
                              int *keep)
{
  size_t i = 0;
  while (i < n) {
    while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
      i++;
    size_t s = i;
    while (i < n && v[i] != ',' && v[i] != ' ' && v[i] != '\t')
      i++;
    if (ieq(v + s, i - s, "close"))
      *close_ = 1;
    else if (ieq(v + s, i - s, "keep-alive"))
      *keep = 1;
  }
}

struct head_state {
  int hosts, lengths, conn_close, conn_keep;
};

static long parse_header(const char *p, size_t n, struct head_state *hs,
                         struct kcld_http_parsed *out)
{
  size_t i = 0, vs, ve;

  if (p[0] == ' ' || p[0] == '\t') /* obsolete line folding */
    return fail(out, 400);
  while (i < n && p[i] != ':') {
    if (!is_tchar((unsigned char)p[i]))
      return fail(out, 400);
    i++;
  }
  if (i == 0 || i == n)
    return fail(out, 400);
  size_t name_len = i;
  vs = i + 1;
  while (vs < n && (p[vs] == ' ' || p[vs] == '\t'))
    vs++;
  ve = n;
  while (ve > vs && (p[ve - 1] == ' ' || p[ve - 1] == '\t'))
    ve--;
  for (size_t k = vs; k < ve; k++) {
    unsigned char c = (unsigned char)p[k];
    if ((c < 0x20 && c != '\t') || c == 0x7f)
      return fail(out, 400);
  }
  if (ieq(p, name_len, "host")) {
    hs->hosts++;
  } else if (ieq(p, name_len, "content-length")) {
    if (++hs->lengths > 1 || ve == vs)
      return fail(out, 400);
    for (size_t k = vs; k < ve; k++)
      if (p[k] < '0' || p[k] > '9')
        return fail(out, 400);
    for (size_t k = vs; k < ve; k++)
      if (p[k] != '0')
        return fail(out, 413);
  } else if (ieq(p, name_len, "transfer-encoding")) {
    return fail(out, 501);
  } else if (ieq(p, name_len, "connection")) {
    connection_tokens(p + vs, ve - vs, &hs->conn_close, &hs->conn_keep);
  }
  return 0;
}

long kcld_http_request_parse(const char *buf, size_t len,
                             struct kcld_http_parsed *out)
{
  struct head_state hs = {0};
  size_t pos = 0, eol = 0;
  int r;
  long rc;

  memset(out, 0, sizeof(*out));
  if (!buf)
    return len ? fail(out, 400) : 0;
  /* Request line. */
  r = find_eol(buf, len, 0, &eol);
  if (r < 0)
    return fail(out, 400);
  if (r == 0) {
    /* Refuse early what more bytes cannot fix: a bad method character, a
     * line too long. */
    for (size_t i = 0; i < len && buf[i] != ' ' && buf[i] != '\r'; i++)
      if (!is_tchar((unsigned char)buf[i]) || i >= MAX_METHOD)
        return fail(out, i >= MAX_METHOD ? 501 : 400);
    if (len > KCLD_HTTP_MAX_TARGET + MAX_METHOD + 11)
      return fail(out, 414);
    return 0;
  }
  if ((rc = parse_request_line(buf, eol, out)) < 0)
    return rc;
  pos = eol + 2;
  /* Header fields, up to the blank line. */
  for (;;) {
    if (pos >= KCLD_HTTP_MAX_HEAD)
      return fail(out, 431);
    r = find_eol(buf, len, pos, &eol);
    if (r < 0)
      return fail(out, 400);
    if (r == 0) {
      if (len >= KCLD_HTTP_MAX_HEAD)
        return fail(out, 431);
      if (len > pos && (buf[pos] == ' ' || buf[pos] == '\t'))
        return fail(out, 400);
      return 0;
    }
    if (eol + 2 > KCLD_HTTP_MAX_HEAD)
      return fail(out, 431);
    if (eol == pos)
      break;
    if (++out->headers > KCLD_HTTP_MAX_HEADERS)
      return fail(out, 431);
    if ((rc = parse_header(buf + pos, eol - pos, &hs, out)) < 0)
      return rc;
    pos = eol + 2;
  }
  if (hs.hosts > 1 || (out->minor == 1 && hs.hosts == 0))
    return fail(out, 400);
  if (out->minor == 1)
    out->keep_alive = !hs.conn_close;
  else
    out->keep_alive = hs.conn_keep && !hs.conn_close;
  return (long)(eol + 2);
}

/* ======== The server ======== */

struct client {
  struct client *prev, *next;
  struct kcld_http_server *srv;
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_write_t wreq;
  char *out;             /* the response being written */
  size_t len;            /* bytes in buf */
  uint64_t waiting_since; /* uv_now when it began waiting for a head */
  int writing, closing, close_after, handles;
  char buf[KCLD_HTTP_MAX_HEAD];
};

struct kcld_http_server {
  uv_loop_t *loop;
  uv_tcp_t listener;
  struct kcld_metrics *metrics;
  kcld_http_health_fn health;
  void *health_arg;
  uint64_t timeout_ms;
  unsigned max_clients;
  struct client *clients;
  size_t nclients;             /* with those closing */
  size_t nopen;                /* not closing */
  int port;
  int closing, listener_open;
};

static void maybe_free_server(struct kcld_http_server *s)
{
  if (s->closing && !s->listener_open && !s->clients)
    free(s);
}

static void on_client_closed(uv_handle_t *h)
{
  struct client *c = h->data;
  struct kcld_http_server *s = c->srv;
  if (--c->handles > 0)
    return;
  if (c->prev)
    c->prev->next = c->next;
  else
    s->clients = c->next;
  if (c->next)
    c->next->prev = c->prev;
  s->nclients--;
  free(c->out);
  free(c);
  maybe_free_server(s);
}

static void client_close(struct client *c)
{
  if (c->closing)
    return;
  c->closing = 1;
  c->srv->nopen--;
  uv_timer_stop(&c->timer);
  uv_close((uv_handle_t *)&c->timer, on_client_closed);
  uv_close((uv_handle_t *)&c->tcp, on_client_closed);
}

static const char *reason(int status)
{
  switch (status) {
  case 200: return "OK";
  case 400: return "Bad Request";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 413: return "Content Too Large";
  case 414: return "URI Too Long";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 503: return "Service Unavailable";
  case 505: return "HTTP Version Not Supported";
  default: return "Error";
  }
}

static void on_write(uv_write_t *req, int status);

/* Sends a response; `body` is copied.  With head_only the body is left out
 * but Content-Length still counts it. */
static void respond(struct client *c, int status, const char *ctype,
                    const char *body, size_t body_len, int head_only,
                    int keep_alive)
{
  char hdr[512];
  int n = snprintf(hdr, sizeof(hdr),
                   "HTTP/1.1 %d %s\r\n"
                   "Content-Type: %s\r\n"
                   "Content-Length: %zu\r\n"
                   "Cache-Control: no-store\r\n"
                   "%s"
                   "Connection: %s\r\n\r\n",
                   status, reason(status), ctype, body_len,
                   status == 405 ? "Allow: GET, HEAD\r\n" : "",
                   keep_alive ? "keep-alive" : "close");
  size_t blen = head_only ? 0 : body_len;
  uv_buf_t b;

  c->close_after = !keep_alive;
  c->out = malloc((size_t)n + blen);
  if (!c->out) {
    client_close(c);
    return;
  }
  memcpy(c->out, hdr, (size_t)n);
  if (blen)
    memcpy(c->out + n, body, blen);
  b = uv_buf_init(c->out, (unsigned)((size_t)n + blen));
  uv_read_stop((uv_stream_t *)&c->tcp);
  c->writing = 1;
  if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
    c->writing = 0;
    free(c->out);
    c->out = NULL;
    client_close(c);
  }
}

static void respond_text(struct client *c, int status, const char *text,
                         int head_only, int keep_alive)
{
  respond(c, status, "text/plain; charset=utf-8", text, strlen(text),
          head_only, keep_alive);
}

static void route(struct client *c, const struct kcld_http_parsed *rq)
{
  struct kcld_http_server *s = c->srv;
  int head = rq->method == KCLD_HTTP_HEAD;

  if (rq->method == KCLD_HTTP_OTHER) {
    respond_text(c, 405, "method not allowed\n", 0, rq->keep_alive);
  } else if (ieq(rq->path, rq->path_len, "/metrics") && s->metrics) {
    size_t len = 0;
    char *text = kcld_metrics_render(s->metrics, &len);
    if (!text) {
      respond_text(c, 500, "out of memory\n", head, 0);
      return;
    }
    respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", text, len,
            head, rq->keep_alive);
    free(text);
  } else if (ieq(rq->path, rq->path_len, "/healthz")) {
    int ok = 1;
    char *body = s->health ? s->health(s->health_arg, &ok)
                           : strdup("{\"status\":\"ok\"}");
    size_t n = body ? strlen(body) : 0;
    char *nl = body ? realloc(body, n + 2) : NULL;
    if (!nl) {
      free(body);
      respond_text(c, 500, "out of memory\n", head, 0);
      return;
    }
    memcpy(nl + n, "\n", 2);
    respond(c, ok ? 200 : 503, "application/json", nl, n + 1, head,
            rq->keep_alive);
    free(nl);
  } else {
    respond_text(c, 404, "not found\n", head, rq->keep_alive);
  }
}

/* Answers the request at the start of the buffer, when complete. */
static void process(struct client *c)
{
  struct kcld_http_parsed rq;
  long n;

  if (c->writing || c->closing || c->len == 0)
    return;
  n = kcld_http_request_parse(c->buf, c->len, &rq);
  if (n == 0)
    return;
  if (n < 0) {
    char body[64];
    snprintf(body, sizeof(body), "%s\n", reason(rq.status));
    c->len = 0; /* nothing after a malformed request is trusted */
    respond_text(c, rq.status, body, 0, 0);
    return;
  }
  route(c, &rq);
  memmove(c->buf, c->buf + n, c->len - (size_t)n);
  c->len -= (size_t)n;
}

static void on_timeout(uv_timer_t *t)
{
  struct client *c = t->data;
  kcld_log(KCLD_LOG_DEBUG, "metrics server: connection timed out", NULL);
  client_close(c);
}

/* The request-head deadline, from now. */
static void arm_timer(struct client *c)
{
  c->waiting_since = uv_now(c->srv->loop);
  uv_timer_start(&c->timer, on_timeout, c->srv->timeout_ms, 0);
}

/* Past the cap: closes the connection that has waited longest for its
 * request head, other than `keep`.  Returns 0 when every other connection
 * is busy answering. */
static int evict_oldest_waiting(struct kcld_http_server *s,
                                const struct client *keep)
{
  struct client *victim = NULL;
  for (struct client *c = s->clients; c; c = c->next)
    if (c != keep && !c->closing && !c->writing &&
        (!victim || c->waiting_since <= victim->waiting_since))
      victim = c;
  if (!victim)
    return 0;
  client_close(victim);
  return 1;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
  struct client *c = h->data;
  (void)hint;
  *b = uv_buf_init(c->buf + c->len, (unsigned)(sizeof(c->buf) - c->len));
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
  struct client *c = st->data;
  (void)b;
  if (nread < 0) {
    client_close(c);
    return;
  }
  if (nread == 0)
    return;
  c->len += (size_t)nread;
  process(c);
}

static void on_write(uv_write_t *req, int status)
{
  struct client *c = req->data;
  free(c->out);
  c->out = NULL;
  c->writing = 0;
  if (status < 0 || c->closing || c->close_after) {
    client_close(c);
    return;
  }
  arm_timer(c);
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
    client_close(c);
    return;
  }
  process(c); /* the next pipelined request, if already here */
}

static void on_connection(uv_stream_t *ls, int status)
{
  struct kcld_http_server *s = ls->data;
  struct client *c;

  if (status < 0 || s->closing)
    return;
  c = calloc(1, sizeof(*c));
  if (!c)
    return; /* the connection waits in the backlog */
  c->srv = s;
  uv_tcp_init(s->loop, &c->tcp);
  uv_timer_init(s->loop, &c->timer);
  c->tcp.data = c->timer.data = c->wreq.data = c;
  c->handles = 2;
  c->next = s->clients;
  if (s->clients)
    s->clients->prev = c;
  s->clients = c;
  s->nclients++;
  s->nopen++;
  if (uv_accept(ls, (uv_stream_t *)&c->tcp) != 0) {
    client_close(c);
    return;
  }
  if (s->nopen > s->max_clients) {
    if (!evict_oldest_waiting(s, c)) {
      kcld_log(KCLD_LOG_WARN, "metrics server: too many connections, all "
               "busy; closing a new one", KCLD_LOG_UINT("max_clients",
                                                        s->max_clients),
               NULL);
      client_close(c);
      return;
    }
    kcld_log(KCLD_LOG_WARN, "metrics server: too many connections; closed "
             "the one waiting longest for its request",
             KCLD_LOG_UINT("max_clients", s->max_clients), NULL);
  }
  arm_timer(c);
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
    client_close(c);
}

/* Parses "host:port" / "[v6]:port" into addr. */
static int parse_listen(const char *listen, struct sockaddr_storage *addr)
{
  char host[128];
  const char *colon, *h = listen;
  size_t hl;
  char *end;
  long port;

  if (!listen || !*listen)
    return KCLD_EINVAL;
  colon = strrchr(listen, ':');
  if (!colon)
    return KCLD_EINVAL;
  port = strtol(colon + 1, &end, 10);
  if (colon[1] == '\0' || *end || port < 0 || port > 65535)
    return KCLD_EINVAL;
  hl = (size_t)(colon - listen);
  if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
    h++;
    hl -= 2;
    if (hl >= sizeof(host))
      return KCLD_EINVAL;
    memcpy(host, h, hl);
    host[hl] = '\0';
    return uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)addr) == 0
             ? 0 : KCLD_EINVAL;
  }
  if (hl >= sizeof(host) || memchr(h, ':', hl))
    return KCLD_EINVAL;
  memcpy(host, h, hl);
  host[hl] = '\0';
  if (hl == 0 || strcmp(host, "*") == 0)
    strcpy(host, "0.0.0.0");
  else if (strcmp(host, "localhost") == 0)
    strcpy(host, "127.0.0.1");
  return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)addr) == 0
           ? 0 : KCLD_EINVAL;
}

static void on_listener_closed(uv_handle_t *h)
{
  struct kcld_http_server *s = h->data;
  s->listener_open = 0;
  maybe_free_server(s);
}

int kcld_http_server_start(const struct kcld_http_server_opts *opts,
                           struct kcld_http_server **out)
{
  struct sockaddr_storage addr, bound;
  struct kcld_http_server *s;
  int rc, len = (int)sizeof(bound);
  char name[64] = "?", where[80];

  *out = NULL;
  if (!opts || !opts->loop)
    return KCLD_EINVAL;
  memset(&addr, 0, sizeof(addr));
  if (parse_listen(opts->listen, &addr) != 0) {
    kcld_log(KCLD_LOG_ERROR, "metrics.listen: expected host:port",
             "listen", opts->listen, NULL);
    return KCLD_EINVAL;
  }
  if (!(s = calloc(1, sizeof(*s))))
    return KCLD_ENOMEM;
  s->loop = opts->loop;
  s->metrics = opts->metrics;
  s->health = opts->health;
  s->health_arg = opts->health_arg;
  s->timeout_ms = opts->timeout_ms ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
  s->max_clients = opts->max_clients ? opts->max_clients
                                     : DEFAULT_MAX_CLIENTS;
  uv_tcp_init(s->loop, &s->listener);
  s->listener.data = s;
  s->listener_open = 1;
  rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&s->listener, 64, on_connection);
  if (rc == 0)
    rc = uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &len);
  if (rc != 0) {
    kcld_log(KCLD_LOG_ERROR, "metrics server: cannot listen", "listen",
             opts->listen, "error", uv_strerror(rc), NULL);
    s->closing = 1;
    uv_close((uv_handle_t *)&s->listener, on_listener_closed);
    return KCLD_EIO;
  }
  if (bound.ss_family == AF_INET6) {
    uv_ip6_name((struct sockaddr_in6 *)&bound, name, sizeof(name));
    s->port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
    snprintf(where, sizeof(where), "[%s]:%d", name, s->port);
  } else {
    uv_ip4_name((struct sockaddr_in *)&bound, name, sizeof(name));
    s->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
    snprintf(where, sizeof(where), "%s:%d", name, s->port);
  }
  kcld_log(KCLD_LOG_INFO, "metrics server listening", "address", where,
           NULL);
  *out = s;
  return 0;
}

int kcld_http_server_port(const struct kcld_http_server *s)
{
  return s->port;
}

size_t kcld_http_server_clients(const struct kcld_http_server *s)
{
  return s->nclients;
}

void kcld_http_server_close(struct kcld_http_server *s)
{
  if (!s || s->closing)
    return;
  s->closing = 1;
  uv_close((uv_handle_t *)&s->listener, on_listener_closed);
  for (struct client *c = s->clients; c; c = c->next)
    client_close(c);
}
