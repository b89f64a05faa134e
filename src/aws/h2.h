/* h2.h — the HTTP/2 client behind kcld_http_stream_start (http.h):
 * SubscribeToShard's long event streams, many to a connection, driven by
 * nghttp2 on libuv sockets, with TLS by OpenSSL (ALPN h2) for https URLs
 * and prior knowledge (h2c) for http:// ones.
 *
 * Not curl: a curl transfer costs each idle subscription ~20 KB more than
 * a polled shard (its easy handle, its read and upload buffers), and
 * libcurl 7.88 gives each h2c subscription a connection of its own.  Here
 * a stream is its struct, its nghttp2 stream and the bytes it holds.
 *
 * The stream calls (kcld_http_stream_pause, _resume, _paused, _cancel)
 * and their contract are http.h's.  For aws/http.c only.  Loop thread
 * only. */
#ifndef KCLD_AWS_H2_H
#define KCLD_AWS_H2_H

#include <stddef.h>
#include <uv.h>

#include "aws/http.h"

struct kcld_h2;

struct kcld_h2_opts {
  const char *ca_file;      /* CA bundle; NULL: the system's */
  long connect_timeout_ms;  /* 0: 10 s */
  /* Proxies as http.c read them from the environment (NULL: none): a
   * stream to a host no_proxy does not name goes through an HTTP CONNECT
   * tunnel to the proxy for its scheme. */
  const char *proxy_https, *proxy_http, *no_proxy;
};

/* Creates a client on `loop`.  Returns 0, KCLD_ENOMEM or KCLD_EIO (TLS
 * set-up, e.g. an unreadable CA file). */
int kcld_h2_new(uv_loop_t *loop, const struct kcld_h2_opts *opts,
                struct kcld_h2 **out);

/* Starts `req` (POST with a body; req->http2 is implied; body_into and
 * borrow_body do not apply) as a stream: as kcld_http_stream_start. */
int kcld_h2_stream_start(struct kcld_h2 *h2,
                         const struct kcld_http_request *req,
                         kcld_http_data_cb on_data, kcld_http_cb on_done,
                         void *arg, struct kcld_http_stream **out);

/* Streams not ended yet. */
size_t kcld_h2_streams(const struct kcld_h2 *h2);

/* Ends every stream (on_done with KCLD_ECANCELED, before this returns),
 * closes the connections and frees the client once its handles have
 * closed: run the loop afterwards.  NULL is ignored. */
void kcld_h2_close(struct kcld_h2 *h2);

#endif
