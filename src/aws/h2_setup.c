/* h2_setup.c — what aws/h2.c sends before a stream's body: the request's
 * HTTP/2 header block, and the CONNECT request of a proxy tunnel (see
 * h2_setup.h). */
#include "aws/h2_setup.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "base/base64.h"
#include "base/buf.h"
#include "err.h"
#include "kcld/version.h"

/* Splits "https://host:port/path?q" into its parts.  0 or KCLD_EINVAL. */
int kcld_h2_parse_url(const char *url, int *tls, char *host, size_t hcap,
                      char *port, size_t pcap, const char **path)
{
  const char *h, *end, *colon;
  size_t n;

  if (strncmp(url, "https://", 8) == 0) {
    *tls = 1;
    h = url + 8;
  } else if (strncmp(url, "http://", 7) == 0) {
    *tls = 0;
    h = url + 7;
  } else {
    return KCLD_EINVAL;
  }
  end = h + strcspn(h, "/?#");
  *path = *end == '/' ? end : "/";
  if (*h == '[') { /* an IPv6 literal */
    const char *rb = memchr(h, ']', (size_t)(end - h));
    if (!rb)
      return KCLD_EINVAL;
    n = (size_t)(rb - h - 1);
    if (n == 0 || n >= hcap)
      return KCLD_EINVAL;
    memcpy(host, h + 1, n);
    host[n] = 0;
    colon = rb[1] == ':' ? rb + 1 : NULL;
  } else {
    colon = memchr(h, ':', (size_t)(end - h));
    n = (size_t)((colon ? colon : end) - h);
    if (n == 0 || n >= hcap)
      return KCLD_EINVAL;
    memcpy(host, h, n);
    host[n] = 0;
  }
  if (colon) {
    n = (size_t)(end - colon - 1);
    if (n == 0 || n >= pcap || strspn(colon + 1, "0123456789") < n)
      return KCLD_EINVAL;
    memcpy(port, colon + 1, n);
    port[n] = 0;
  } else {
    snprintf(port, pcap, "%s", *tls ? "443" : "80");
  }
  return 0;
}

/* The value of a "Name: value" line (after the colon and blanks). */
static const char *line_value(const char *colon)
{
  return colon + 1 + strspn(colon + 1, " \t");
}

/* Appends a name/value pair, both copied into the block at *off. */
static void add(struct kcld_h2_headers *h, size_t *off, const char *name,
                size_t nlen, const char *value, size_t vlen, int lower)
{
  char *n = h->block + *off, *v = n + nlen + 1;

  for (size_t i = 0; i < nlen; i++)
    n[i] = lower ? (char)tolower((unsigned char)name[i]) : name[i];
  n[nlen] = '\0';
  memcpy(v, value, vlen);
  v[vlen] = '\0';
  *off += nlen + vlen + 2;
  h->nv[h->nvlen++] = (nghttp2_nv){(uint8_t *)n, (uint8_t *)v, nlen, vlen,
                                   NGHTTP2_NV_FLAG_NONE};
}

/* Whether HTTP/2 (or this client, which sets its own) leaves the header
 * with this lower-case name out. */
static int dropped(const char *name, size_t n)
{
  static const char *const names[] = {"connection", "transfer-encoding",
                                      "expect", "keep-alive", "upgrade",
                                      "content-length", "host",
                                      "user-agent", NULL};
  for (const char *const *d = names; *d; d++)
    if (strlen(*d) == n && strncasecmp(*d, name, n) == 0)
      return 1;
  return 0;
}

int kcld_h2_headers_build(struct kcld_h2_headers *h,
                          const struct kcld_http_request *req, int tls,
                          const char *host, const char *port,
                          const char *path)
{
  static const char ua[] = "kcld/" KCLD_VERSION_STRING;
  const char *method = req->method ? req->method : "POST";
  size_t lines = 0, size = 0, off = 0;
  char authority[300], clen[24];

  memset(h, 0, sizeof(*h));
  if (strcmp(port, tls ? "443" : "80") == 0)
    snprintf(authority, sizeof(authority), "%s", host);
  else
    snprintf(authority, sizeof(authority),
             strchr(host, ':') ? "[%s]:%s" : "%s:%s", host, port);
  for (const char *const *ln = req->headers; ln && *ln; ln++) {
    const char *colon = strchr(*ln, ':');
    if (!colon || colon == *ln)
      return KCLD_EINVAL;
    if (colon - *ln == 4 && strncasecmp(*ln, "host", 4) == 0)
      snprintf(authority, sizeof(authority), "%s", line_value(colon));
    lines++;
    size += strlen(*ln) + 2;
  }
  snprintf(clen, sizeof(clen), "%zu", req->body_len);
  size += strlen(method) + strlen(authority) + strlen(path) + strlen(clen) +
          sizeof(ua) + 96; /* the names of the pseudo-headers and others */
  h->nv = calloc(lines + 6, sizeof(*h->nv));
  h->block = malloc(size);
  h->block_size = size;
  if (!h->nv || !h->block)
    return KCLD_ENOMEM;
  add(h, &off, ":method", 7, method, strlen(method), 0);
  add(h, &off, ":scheme", 7, tls ? "https" : "http", tls ? 5 : 4, 0);
  add(h, &off, ":authority", 10, authority, strlen(authority), 0);
  add(h, &off, ":path", 5, path, strlen(path), 0);
  for (const char *const *ln = req->headers; ln && *ln; ln++) {
    const char *colon = strchr(*ln, ':'), *v = line_value(colon);
    size_t nl = (size_t)(colon - *ln);
    if (*v && !dropped(*ln, nl))
      add(h, &off, *ln, nl, v, strlen(v), 1);
  }
  add(h, &off, "content-length", 14, clen, strlen(clen), 0);
  add(h, &off, "user-agent", 10, ua, sizeof(ua) - 1, 0);
  return 0;
}

void kcld_h2_headers_clean_up(struct kcld_h2_headers *h)
{
  if (h->block) {
    OPENSSL_cleanse(h->block, h->block_size);
    free(h->block);
  }
  free(h->nv);
  memset(h, 0, sizeof(*h));
}

int kcld_h2_no_proxy_for(const char *list, const char *host)
{
  size_t hl = strlen(host);
  const char *p = list;

  if (!list)
    return 0;
  while (p && *p) {
    size_t n = strcspn(p, ",");
    const char *e = p, *colon;
    while (n && (*e == ' ' || *e == '.')) {
      e++;
      n--;
    }
    while (n && e[n - 1] == ' ')
      n--;
    colon = memchr(e, ':', n);
    if (colon && !memchr(e, ']', n) && e[0] != '[')
      n = (size_t)(colon - e);
    if ((n == 1 && *e == '*') ||
        (n == hl && strncasecmp(e, host, n) == 0) ||
        (n < hl && host[hl - n - 1] == '.' &&
         strncasecmp(e, host + hl - n, n) == 0))
      return 1;
    p += strcspn(p, ",");
    if (*p)
      p++;
  }
  return 0;
}

int kcld_h2_tunnel(const char *proxy, const char *no_proxy,
                   const char *host, const char *port, char *phost,
                   size_t hcap, char *pport, size_t pcap, char **connect)
{
  char url[512], cred[256] = "", auth[400] = "";
  const char *path, *at, *start;
  int ptls = 0;
  struct kcld_buf b = {0};

  *connect = NULL;
  if (!proxy || !*proxy || kcld_h2_no_proxy_for(no_proxy, host))
    return 0;
  snprintf(url, sizeof(url), "%s%s", strstr(proxy, "://") ? "" : "http://",
           proxy);
  start = strstr(url, "://") + 3;
  at = strchr(start, '@');
  if (at && at < start + strcspn(start, "/")) { /* user:password@ */
    size_t n = (size_t)(at - start);
    char *dec = NULL;
    if (n >= sizeof(cred))
      return KCLD_EINVAL;
    memcpy(cred, start, n);
    cred[n] = 0;
    dec = curl_easy_unescape(NULL, cred, (int)n, NULL);
    if (!dec)
      return KCLD_ENOMEM;
    if (kcld_base64_encoded_len(strlen(dec)) >= sizeof(auth)) {
      curl_free(dec);
      return KCLD_EINVAL;
    }
    auth[kcld_base64_encode(auth, dec, strlen(dec))] = 0;
    OPENSSL_cleanse(dec, strlen(dec));
    curl_free(dec);
    memmove((char *)start, at + 1, strlen(at + 1) + 1);
  }
  if (kcld_h2_parse_url(url, &ptls, phost, hcap, pport, pcap, &path) != 0 ||
      ptls)
    return KCLD_EINVAL; /* https:// proxies: not here */
  if (!strchr(start + (*start == '[' ? strcspn(start, "]") : 0), ':'))
    snprintf(pport, pcap, "1080"); /* curl's default for proxies */
  kcld_buf_add(&b, "CONNECT ", 8);
  for (int i = 0; i < 2; i++) {
    char hp[300];
    snprintf(hp, sizeof(hp), strchr(host, ':') ? "[%s]:%s" : "%s:%s", host,
             port);
    kcld_buf_add(&b, hp, strlen(hp));
    kcld_buf_add(&b, i ? "\r\n" : " HTTP/1.1\r\nHost: ", i ? 2 : 17);
  }
  if (*auth) {
    kcld_buf_add(&b, "Proxy-Authorization: Basic ", 27);
    kcld_buf_add(&b, auth, strlen(auth));
    kcld_buf_add(&b, "\r\n", 2);
  }
  kcld_buf_add(&b, "\r\n", 2);
  OPENSSL_cleanse(cred, sizeof(cred));
  OPENSSL_cleanse(auth, sizeof(auth));
  OPENSSL_cleanse(url, sizeof(url));
  if (b.oom) {
    kcld_buf_free(&b);
    return KCLD_ENOMEM;
  }
  *connect = b.p;
  return 0;
}

