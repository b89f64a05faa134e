/* http_setup.c — a request's easy handle set up from its
 * kcld_http_request (see http_setup.h). */
#include "aws/http_setup.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "err.h"
#include "kcld/version.h"

/* An answer expected no larger is read through curl's default buffer;
 * one expected no larger than READ_TINY (an idle shard's: its size class
 * is 4 KiB), through curl's smallest, 1 KiB, which malloc serves from its
 * per-thread cache: curl allocates the buffer per transfer. */
#define READ_SMALL ((size_t)64 << 10)
#define READ_TINY ((size_t)4 << 10)
/* curl's smallest and default upload buffers (CURLOPT_UPLOAD_BUFFERSIZE). */
#define UPLOAD_BUFFER_MIN 16384u
#define UPLOAD_BUFFER_DEFAULT 65536L

static int method_has_body(const char *method)
{
  return strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
         strcmp(method, "PATCH") == 0;
}

int kcld_http_headers_build(const char *const *lines,
                            struct curl_slist **out, size_t *size)
{
  size_t n = 1, text = sizeof("Expect:");
  int has_expect = 0;
  struct curl_slist *nodes;
  char *p;

  for (size_t i = 0; lines && lines[i]; i++) {
    n++;
    text += strlen(lines[i]) + 1;
    if (strncasecmp(lines[i], "Expect:", 7) == 0)
      has_expect = 1;
  }
  *out = NULL;
  *size = n * sizeof(*nodes) + text;
  if (!(nodes = malloc(*size)))
    return KCLD_ENOMEM;
  p = (char *)(nodes + n);
  n = 0;
  for (size_t i = 0; lines && lines[i]; i++) {
    size_t len = strlen(lines[i]) + 1;
    nodes[n].data = memcpy(p, lines[i], len);
    nodes[n].next = &nodes[n + 1];
    p += len;
    n++;
  }
  if (!has_expect) {
    nodes[n].data = memcpy(p, "Expect:", sizeof("Expect:"));
    nodes[n].next = NULL;
  } else {
    nodes[n - 1].next = NULL; /* n > 0: a line was "Expect:" */
  }
  *out = nodes;
  return 0;
}

/* curl's read buffer for req's answer (see setup_each). */
static long read_buffer_size(const struct kcld_http_request *req)
{
  const struct kcld_http_body *b = req->body_into;
  if (b && (b->expect == 0 || b->expect > READ_SMALL))
    return 256L * 1024;
  if (b && b->expect <= READ_TINY)
    return 1024L; /* malloc's per-thread cache: an idle shard's answer */
  return (long)CURL_MAX_WRITE_SIZE;
}

/* The options every request sets anew: where it goes, its callbacks'
 * data, headers and body.  Every one is set both ways, so that a kept
 * plain handle is fully set up by these alone. */
static int setup_each(CURL *easy, const struct kcld_http_setup *s,
                      struct curl_slist *headers,
                      const struct kcld_http_request *req, int has_body)
{
  long timeout = req->timeout_ms > 0 ? req->timeout_ms : s->timeout_ms;
  long ctimeout = req->connect_timeout_ms > 0 ? req->connect_timeout_ms
                                              : s->connect_timeout_ms;
  const char *proxy = req->no_proxy ? NULL
                      : strncasecmp(req->url, "https:", 6) == 0
                        ? s->proxy_https
                        : s->proxy_http;
  int bad = 0;

#define SET(opt, val) bad |= curl_easy_setopt(easy, opt, val) != CURLE_OK
  SET(CURLOPT_URL, req->url);
  SET(CURLOPT_PRIVATE, s->req);
  SET(CURLOPT_WRITEDATA, s->req);
  SET(CURLOPT_HEADERDATA, s->req);
  SET(CURLOPT_ERRORBUFFER, s->errbuf);
  SET(CURLOPT_TIMEOUT_MS, timeout);
  SET(CURLOPT_CONNECTTIMEOUT_MS, ctimeout);
  /* Proxies set here, not left to curl, so both spellings work for plain
   * HTTP too (curl reads only http_proxy); "" means none.  NOPROXY always
   * set: else curl reads no_proxy and NO_PROXY from the environment on
   * every request (read once, into s->no_proxy). */
  SET(CURLOPT_PROXY, proxy ? proxy : "");
  SET(CURLOPT_NOPROXY, s->no_proxy && !req->no_proxy ? s->no_proxy : "");
  /* A caller that receives into its own buffer expects a large answer (a
   * GetRecords body of up to ~14 MB): curl then reads 256 KiB a call rather
   * than 16 KiB, a sixteenth of the recv calls, socket events and write
   * callbacks (measured: 2.45 -> 2.20 CPU s per million 1 KiB records at
   * one shard).  Small answers keep curl's default: curl allocates the
   * buffer per transfer, and 1024 idle shards' 256 KiB buffers made the
   * heap grow and shrink (brk, page faults) ~1,000 times a second. */
  SET(CURLOPT_BUFFERSIZE, read_buffer_size(req));
  SET(CURLOPT_HTTPHEADER, headers);
  if (has_body) {
    /* curl sends a body through an upload buffer it keeps for the whole
     * transfer (over TLS), 64 KiB by default: a small body needs no more
     * than curl's minimum, 16 KiB. */
    SET(CURLOPT_UPLOAD_BUFFERSIZE, req->body_len <= UPLOAD_BUFFER_MIN
                                     ? (long)UPLOAD_BUFFER_MIN
                                     : UPLOAD_BUFFER_DEFAULT);
    SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    SET(CURLOPT_POSTFIELDS, s->body ? s->body : "");
  }
#undef SET
  return bad ? KCLD_EINVAL : 0;
}

int kcld_http_setup(CURL *easy, const struct kcld_http_setup *s,
                    struct curl_slist *headers,
                    const struct kcld_http_request *req, int set_up)
{
  const char *method = req->method && *req->method ? req->method : "GET";
  int has_body = req->body_len > 0 || method_has_body(method);
  int bad = 0;

  if (setup_each(easy, s, headers, req, has_body) != 0)
    return KCLD_EINVAL;
  if (set_up)
    return 0;

#define SET(opt, val) bad |= curl_easy_setopt(easy, opt, val) != CURLE_OK
  SET(CURLOPT_NOSIGNAL, 1L);
  SET(CURLOPT_PROTOCOLS_STR, "http,https");
  SET(CURLOPT_FOLLOWLOCATION, 0L);
  SET(CURLOPT_WRITEFUNCTION, s->on_write);
  SET(CURLOPT_HEADERFUNCTION, s->on_header);
  SET(CURLOPT_CLOSESOCKETFUNCTION, s->on_close);
  SET(CURLOPT_CLOSESOCKETDATA, s->close_arg);
  SET(CURLOPT_SSL_VERIFYPEER, 1L);
  SET(CURLOPT_SSL_VERIFYHOST, 2L);
  if (s->ca_file)
    SET(CURLOPT_CAINFO, s->ca_file);
  SET(CURLOPT_TCP_KEEPALIVE, 1L);
  SET(CURLOPT_USERAGENT, "kcld/" KCLD_VERSION_STRING);
  /* HTTP/1.1 only: curl's default (2TLS, "no preference") would have
   * requests to https endpoints take HTTP/2 where offered.  Streams
   * (SubscribeToShard) are aws/h2.c's; a request has a connection of its
   * own, kept alive for the next. */
  SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  if (has_body) {
    if (strcmp(method, "POST") != 0)
      SET(CURLOPT_CUSTOMREQUEST, method);
  } else if (strcmp(method, "HEAD") == 0) {
    SET(CURLOPT_NOBODY, 1L);
  } else if (strcmp(method, "GET") == 0) {
    SET(CURLOPT_HTTPGET, 1L);
  } else {
    SET(CURLOPT_CUSTOMREQUEST, method);
  }
#undef SET
  return bad ? KCLD_EINVAL : 0;
}
