/* sigv4.c — AWS Signature Version 4, Authorization-header signing.
 *
 * One pass per request: the canonical request, the string to sign and the
 * header lines are written into one block sized up front from the inputs
 * (no string is grown or rebuilt).  Header and query entries are sorted in
 * scratch arrays that the signer keeps between calls.  SHA-256 and HMAC come
 * from OpenSSL 3 (EVP_MD / EVP_MAC), fetched once per signer. */
#include "aws/sigv4.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "base/hex.h"
#include "err.h"

#define HASH_LEN 32
#define HEX_LEN 64
#define ALGORITHM "AWS4-HMAC-SHA256"
#define TERMINATOR "aws4_request"

/* One header to sign: the caller's (name trimmed) or one the signer adds. */
struct hent {
  const char *name;
  size_t name_len;
  const char *value;
  size_t value_len;
  size_t order; /* position in the request: keeps repeated names in order */
};

/* One query parameter, key and value already re-encoded, in s->qbuf. */
struct qent {
  const char *key;
  size_t key_len;
  const char *val;
  size_t val_len;
};

struct kcld_sigv4 {
  char *region;
  char *service;
  size_t region_len, service_len;
  EVP_MD *sha256;
  EVP_MD_CTX *md;
  EVP_MAC *hmac;
  EVP_MAC_CTX *mac;

  /* The signing-key cache: key for key_date ("" = none), derived from
   * "AWS4" + secret (ksecret) for access key id akid. */
  unsigned char key[HASH_LEN];
  char key_date[9];
  char *ksecret;
  size_t ksecret_len;
  char *akid;
  unsigned long derivations;

  /* Scratch reused between calls. */
  struct hent *hents;
  size_t hents_cap;
  struct qent *qents;
  size_t qents_cap;
  char *qbuf;
  size_t qbuf_cap;
};

/* ======== Small helpers ======== */

static const char s_hex_upper[] = "0123456789ABCDEF";

static int is_unreserved(unsigned char c)
{
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
         c == '~';
}

static int is_ws(unsigned char c)
{
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static unsigned char lower(unsigned char c)
{
  return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

/* An RFC 7230 token character (what a header name may hold). */
static int is_tchar(unsigned char c)
{
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || (c != 0 && strchr("!#$%&'*+-.^_`|~", c));
}

static char *put(char *p, const char *s, size_t n)
{
  memcpy(p, s, n);
  return p + n;
}

static char *put_str(char *p, const char *s)
{
  return put(p, s, strlen(s));
}

/* URI-encodes one byte: unreserved bytes (and '/' when keep_slash) as they
 * are, the rest as %XX. */
static char *put_enc_byte(char *p, unsigned char c, int keep_slash)
{
  if (is_unreserved(c) || (keep_slash && c == '/')) {
    *p++ = (char)c;
  } else {
    *p++ = '%';
    *p++ = s_hex_upper[c >> 4];
    *p++ = s_hex_upper[c & 15];
  }
  return p;
}

static char *put_encoded(char *p, const char *s, size_t n, int keep_slash)
{
  for (size_t i = 0; i < n; i++)
    p = put_enc_byte(p, (unsigned char)s[i], keep_slash);
  return p;
}

/* Percent-decodes then re-encodes a query key or value.  A '%' not followed
 * by two hex digits is taken literally (and becomes %25). */
static char *put_recoded(char *p, const char *s, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    int hi, lo;
    if (c == '%' && i + 2 < n &&
        (hi = kcld_hex_value((unsigned char)s[i + 1])) >= 0 &&
        (lo = kcld_hex_value((unsigned char)s[i + 2])) >= 0) {
      c = (unsigned char)(hi << 4 | lo);
      i += 2;
    }
    p = put_enc_byte(p, c, 0);
  }
  return p;
}

/* Writes a header value trimmed, with inner whitespace runs folded. */
static char *put_folded(char *p, const char *v, size_t n)
{
  int pending = 0, any = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)v[i];
    if (is_ws(c)) {
      pending = any;
      continue;
    }
    if (pending)
      *p++ = ' ';
    pending = 0;
    any = 1;
    *p++ = (char)c;
  }
  return p;
}

/* The canonical path.  Normalized the way the AWS SDKs do it: empty and "."
 * segments dropped, ".." removes the previous segment (never above the
 * root), a trailing '/' kept when any segment remains.  Each segment is
 * encoded as it appears on the wire (AWS's double encoding). */
static char *put_path(char *p, const char *path, size_t n, int normalize)
{
  if (!normalize)
    return put_encoded(p, path, n, 1);
  char *root = p;
  size_t count = 0, i = 0;
  *p++ = '/';
  while (i < n) {
    size_t j = i;
    while (j < n && path[j] != '/')
      j++;
    size_t len = j - i;
    if (len == 0 || (len == 1 && path[i] == '.')) {
      /* Nothing to add. */
    } else if (len == 2 && path[i] == '.' && path[i + 1] == '.') {
      if (count > 0) {
        /* Encoded segments hold no '/': step back to the one before. */
        while (p[-1] != '/')
          p--;
        p--;
        if (p == root)
          p++;
        count--;
      }
    } else {
      if (count > 0)
        *p++ = '/';
      p = put_encoded(p, path + i, len, 0);
      count++;
    }
    i = j + 1;
  }
  if (count > 0 && path[n - 1] == '/')
    *p++ = '/';
  return p;
}

static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
  if (need <= *cap)
    return 0;
  size_t ncap = *cap ? *cap : 16;
  while (ncap < need)
    ncap *= 2;
  void *n = realloc(*arr, ncap * elem);
  if (!n)
    return KCLD_ENOMEM;
  *arr = n;
  *cap = ncap;
  return 0;
}

/* Case-insensitive comparison of two header names of given lengths. */
static int name_cmp(const char *a, size_t al, const char *b, size_t bl)
{
  size_t n = al < bl ? al : bl;
  for (size_t i = 0; i < n; i++) {
    unsigned char x = lower((unsigned char)a[i]);
    unsigned char y = lower((unsigned char)b[i]);
    if (x != y)
      return x < y ? -1 : 1;
  }
  return al < bl ? -1 : al > bl;
}

static int name_is(const struct hent *h, const char *lname)
{
  return name_cmp(h->name, h->name_len, lname, strlen(lname)) == 0;
}

static int hent_cmp(const void *a, const void *b)
{
  const struct hent *x = a, *y = b;
  int c = name_cmp(x->name, x->name_len, y->name, y->name_len);
  if (c)
    return c;
  return x->order < y->order ? -1 : x->order > y->order;
}

static int bytes_cmp(const char *a, size_t al, const char *b, size_t bl)
{
  int c = memcmp(a, b, al < bl ? al : bl);
  if (c)
    return c;
  return al < bl ? -1 : al > bl;
}

static int qent_cmp(const void *a, const void *b)
{
  const struct qent *x = a, *y = b;
  int c = bytes_cmp(x->key, x->key_len, y->key, y->key_len);
  if (c)
    return c;
  return bytes_cmp(x->val, x->val_len, y->val, y->val_len);
}

/* ======== Crypto ======== */

static int sha256(struct kcld_sigv4 *s, const void *data, size_t n,
                  unsigned char out[HASH_LEN])
{
  if (!EVP_DigestInit_ex(s->md, s->sha256, NULL) ||
      !EVP_DigestUpdate(s->md, data, n) ||
      !EVP_DigestFinal_ex(s->md, out, NULL))
    return KCLD_ENOMEM;
  return 0;
}

static int hmac(struct kcld_sigv4 *s, const void *key, size_t key_len,
                const void *data, size_t n, unsigned char out[HASH_LEN])
{
  size_t outl = 0;
  if (!EVP_MAC_init(s->mac, key, key_len, NULL) ||
      !EVP_MAC_update(s->mac, data, n) ||
      !EVP_MAC_final(s->mac, out, &outl, HASH_LEN) || outl != HASH_LEN)
    return KCLD_ENOMEM;
  return 0;
}

static void drop_key(struct kcld_sigv4 *s)
{
  OPENSSL_cleanse(s->key, sizeof(s->key));
  s->key_date[0] = '\0';
  if (s->ksecret) {
    OPENSSL_cleanse(s->ksecret, s->ksecret_len);
    free(s->ksecret);
    s->ksecret = NULL;
    s->ksecret_len = 0;
  }
  free(s->akid);
  s->akid = NULL;
}

/* Makes s->key the signing key for `date` (YYYYMMDD) and these credentials,
 * deriving it only when the date or the credentials changed. */
static int signing_key(struct kcld_sigv4 *s, const struct kcld_creds *creds,
                       const char *date)
{
  size_t slen = strlen(creds->secret_access_key);
  unsigned char k[HASH_LEN];
  int rc;

  if (s->ksecret && s->ksecret_len == slen + 4 &&
      CRYPTO_memcmp(s->ksecret + 4, creds->secret_access_key, slen) == 0 &&
      strcmp(s->akid, creds->access_key_id) == 0) {
    if (memcmp(s->key_date, date, 9) == 0)
      return 0;
  } else {
    drop_key(s);
    s->ksecret = malloc(slen + 5);
    s->akid = strdup(creds->access_key_id);
    if (!s->ksecret || !s->akid) {
      drop_key(s);
      return KCLD_ENOMEM;
    }
    memcpy(s->ksecret, "AWS4", 4);
    memcpy(s->ksecret + 4, creds->secret_access_key, slen + 1);
    s->ksecret_len = slen + 4;
  }

  s->key_date[0] = '\0';
  s->derivations++;
  rc = hmac(s, s->ksecret, s->ksecret_len, date, 8, k);
  if (!rc)
    rc = hmac(s, k, HASH_LEN, s->region, s->region_len, k);
  if (!rc)
    rc = hmac(s, k, HASH_LEN, s->service, s->service_len, k);
  if (!rc)
    rc = hmac(s, k, HASH_LEN, TERMINATOR, strlen(TERMINATOR), s->key);
  OPENSSL_cleanse(k, sizeof(k));
  if (rc) {
    OPENSSL_cleanse(s->key, sizeof(s->key));
    return rc;
  }
  memcpy(s->key_date, date, 9);
  return 0;
}

/* ======== Lifecycle ======== */

struct kcld_sigv4 *kcld_sigv4_new(const char *region, const char *service)
{
  OSSL_PARAM params[2];
  struct kcld_sigv4 *s;

  if (!region || !*region || !service || !*service)
    return NULL;
  s = calloc(1, sizeof(*s));
  if (!s)
    return NULL;
  s->region = strdup(region);
  s->service = strdup(service);
  s->region_len = strlen(region);
  s->service_len = strlen(service);
  s->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
  s->md = EVP_MD_CTX_new();
  s->hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
  s->mac = s->hmac ? EVP_MAC_CTX_new(s->hmac) : NULL;
  if (!s->region || !s->service || !s->sha256 || !s->md || !s->mac)
    goto fail;
  params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                               "SHA256", 0);
  params[1] = OSSL_PARAM_construct_end();
  if (!EVP_MAC_CTX_set_params(s->mac, params))
    goto fail;
  return s;

fail:
  kcld_sigv4_free(s);
  return NULL;
}

void kcld_sigv4_free(struct kcld_sigv4 *s)
{
  if (!s)
    return;
  drop_key(s);
  EVP_MAC_CTX_free(s->mac);
  EVP_MAC_free(s->hmac);
  EVP_MD_CTX_free(s->md);
  EVP_MD_free(s->sha256);
  free(s->region);
  free(s->service);
  free(s->hents);
  free(s->qents);
  if (s->qbuf) {
    OPENSSL_cleanse(s->qbuf, s->qbuf_cap);
    free(s->qbuf);
  }
  free(s);
}

unsigned long kcld_sigv4_key_derivations(const struct kcld_sigv4 *s)
{
  return s ? s->derivations : 0;
}

void kcld_sigv4_result_clean_up(struct kcld_sigv4_result *r)
{
  if (!r)
    return;
  if (r->canonical_request) {
    OPENSSL_cleanse(r->canonical_request, r->size);
    free(r->canonical_request);
  }
  OPENSSL_cleanse(r, sizeof(*r));
  memset(r, 0, sizeof(*r));
}

/* ======== Signing ======== */

static const char s_date_name[] = "x-amz-date";
static const char s_token_name[] = "x-amz-security-token";
static const char s_sha_name[] = "x-amz-content-sha256";

/* One signing in progress: the inputs, checked and measured. */
struct job {
  const struct kcld_sigv4_request *req;
  const char *path, *query, *token;
  size_t path_len, query_len, method_len, akid_len, token_len;
  size_t n_hdr;       /* entries in s->hents */
  size_t hdr_bytes;   /* their name and value bytes */
  size_t names_bytes; /* their name bytes, plus one each */
  size_t n_q;         /* entries in s->qents */
  char date[9];       /* YYYYMMDD */
  char body_hash[HEX_LEN + 1];
};

/* Collects and checks the caller's headers, adds the signer's own and sorts
 * them all into s->hents.  `own` names what the caller may not send. */
static int collect_headers(struct kcld_sigv4 *s, struct job *j,
                           const char *const *own, size_t n_own,
                           const struct hent *extra, size_t n_extra)
{
  const struct kcld_sigv4_request *req = j->req;
  size_t n = 0;
  int have_host = 0;

  if (req->n_headers && !req->headers)
    return KCLD_EINVAL;
  if (grow((void **)&s->hents, &s->hents_cap, req->n_headers + n_extra,
           sizeof(*s->hents)))
    return KCLD_ENOMEM;
  j->hdr_bytes = j->names_bytes = 0;
  for (size_t i = 0; i < req->n_headers + n_extra; i++) {
    struct hent *h = &s->hents[n++];
    if (i >= req->n_headers) {
      *h = extra[i - req->n_headers];
      h->order = i;
      j->hdr_bytes += h->name_len + h->value_len;
      j->names_bytes += h->name_len + 1;
      continue;
    }
    const char *name = req->headers[i].name;
    const char *value = req->headers[i].value;
    if (!name || !value)
      return KCLD_EINVAL;
    size_t len = strlen(name);
    while (len && (name[len - 1] == ' ' || name[len - 1] == '\t'))
      len--;
    while (len && (*name == ' ' || *name == '\t')) {
      name++;
      len--;
    }
    if (len == 0)
      return KCLD_EINVAL;
    for (size_t k = 0; k < len; k++)
      if (!is_tchar((unsigned char)name[k]))
        return KCLD_EINVAL;
    *h = (struct hent){name, len, value, strlen(value), i};
    for (size_t k = 0; k < n_own; k++)
      if (name_is(h, own[k]))
        return KCLD_EINVAL;
    if (name_is(h, "host")) {
      size_t v = 0;
      while (v < h->value_len && is_ws((unsigned char)h->value[v]))
        v++;
      if (v == h->value_len)
        return KCLD_EINVAL;
      have_host = 1;
    }
    j->hdr_bytes += h->name_len + h->value_len;
    j->names_bytes += h->name_len + 1;
  }
  if (!have_host)
    return KCLD_EINVAL;
  qsort(s->hents, n, sizeof(*s->hents), hent_cmp);
  j->n_hdr = n;
  return 0;
}

/* Splits, re-encodes and sorts the query into s->qents / s->qbuf. */
static int collect_query(struct kcld_sigv4 *s, struct job *j)
{
  const char *q = j->query;
  size_t qlen = j->query_len, n = 0, pieces = 1;
  char *p;

  for (size_t i = 0; i < qlen; i++)
    pieces += q[i] == '&';
  if (grow((void **)&s->qents, &s->qents_cap, pieces, sizeof(*s->qents)) ||
      grow((void **)&s->qbuf, &s->qbuf_cap, 3 * qlen + 1, 1))
    return KCLD_ENOMEM;
  p = s->qbuf;
  for (size_t i = 0; i < qlen;) {
    size_t end = i, eq;
    while (end < qlen && q[end] != '&')
      end++;
    if (end > i) {
      eq = i;
      while (eq < end && q[eq] != '=')
        eq++;
      struct qent *e = &s->qents[n++];
      e->key = p;
      p = put_recoded(p, q + i, eq - i);
      e->key_len = (size_t)(p - e->key);
      e->val = p;
      if (eq < end)
        p = put_recoded(p, q + eq + 1, end - eq - 1);
      e->val_len = (size_t)(p - e->val);
    }
    i = end + 1;
  }
  qsort(s->qents, n, sizeof(*s->qents), qent_cmp);
  j->n_q = n;
  return 0;
}

/* Checks the request, formats the date, hashes the body and collects the
 * headers and the query. */
static int prepare(struct kcld_sigv4 *s, const struct kcld_creds *creds,
                   time_t now, const struct kcld_sigv4_request *req,
                   struct kcld_sigv4_result *out, struct job *j)
{
  const char *own[4] = {"authorization", s_date_name};
  struct hent extra[3];
  size_t n_own = 2, n_extra = 0;
  unsigned char hash[HASH_LEN];
  struct tm tm;
  int rc;

  if (!req->method || !*req->method || !creds->access_key_id ||
      !*creds->access_key_id || !creds->secret_access_key ||
      !*creds->secret_access_key || (req->body_len && !req->body))
    return KCLD_EINVAL;
  memset(j, 0, sizeof(*j));
  j->req = req;
  j->path = req->path && *req->path ? req->path : "/";
  j->query = req->query ? req->query : "";
  if (creds->session_token && *creds->session_token)
    j->token = creds->session_token;
  j->path_len = strlen(j->path);
  j->query_len = strlen(j->query);
  j->method_len = strlen(req->method);
  j->akid_len = strlen(creds->access_key_id);
  j->token_len = j->token ? strlen(j->token) : 0;
  if (j->path[0] != '/' || j->path_len > SIZE_MAX / 8 ||
      j->query_len > SIZE_MAX / 8)
    return KCLD_EINVAL;

  if (!gmtime_r(&now, &tm) || tm.tm_year < 1000 - 1900 ||
      tm.tm_year > 9999 - 1900 ||
      strftime(out->amz_date, sizeof(out->amz_date), "%Y%m%dT%H%M%SZ",
               &tm) != 16)
    return KCLD_EINVAL;
  memcpy(j->date, out->amz_date, 8);
  j->date[8] = '\0';

  rc = sha256(s, req->body ? req->body : "", req->body_len, hash);
  if (rc)
    return rc;
  kcld_hex_put(j->body_hash, hash, HASH_LEN);
  j->body_hash[HEX_LEN] = '\0';

  extra[n_extra++] = (struct hent){s_date_name, sizeof(s_date_name) - 1,
                                   out->amz_date, 16, 0};
  if (j->token) {
    own[n_own++] = s_token_name;
    if (!req->omit_session_token)
      extra[n_extra++] = (struct hent){s_token_name, sizeof(s_token_name) - 1,
                                       j->token, j->token_len, 0};
  }
  if (req->sign_body_header) {
    own[n_own++] = s_sha_name;
    extra[n_extra++] = (struct hent){s_sha_name, sizeof(s_sha_name) - 1,
                                     j->body_hash, HEX_LEN, 0};
  }
  rc = collect_headers(s, j, own, n_own, extra, n_extra);
  if (!rc)
    rc = collect_query(s, j);
  return rc;
}

static size_t scope_len(const struct kcld_sigv4 *s)
{
  return 8 + 1 + s->region_len + 1 + s->service_len + 1 + strlen(TERMINATOR);
}

/* An upper bound of the canonical request, string to sign and header lines
 * (with their NULs): encoding at most triples a byte, folding only
 * shrinks. */
static size_t block_size(const struct kcld_sigv4 *s, const struct job *j)
{
  size_t creq = j->method_len + 1 + 3 * j->path_len + 3 + 1 +
                3 * j->query_len + 2 * j->n_q + 1 +
                j->hdr_bytes + 2 * j->n_hdr + 1 +
                j->names_bytes + 1 + HEX_LEN + 1;
  size_t sts = strlen(ALGORITHM) + 1 + 16 + 1 + scope_len(s) + 1 +
               HEX_LEN + 1;
  size_t lines = sizeof("X-Amz-Date: ") + 16 +
                 sizeof("X-Amz-Security-Token: ") + j->token_len +
                 sizeof("x-amz-content-sha256: ") + HEX_LEN +
                 sizeof("Authorization: " ALGORITHM " Credential=") +
                 j->akid_len + 1 + scope_len(s) + sizeof(", SignedHeaders=") +
                 j->names_bytes + sizeof(", Signature=") + HEX_LEN + 1;
  return creq + sts + lines;
}

static char *put_lower(char *p, const char *s, size_t n)
{
  for (size_t k = 0; k < n; k++)
    *p++ = (char)lower((unsigned char)s[k]);
  return p;
}

static int same_name(const struct hent *a, const struct hent *b)
{
  return name_cmp(a->name, a->name_len, b->name, b->name_len) == 0;
}

/* Writes the canonical request (without NUL); *signed_at gets where its
 * signed-headers list starts. */
static char *put_canonical(const struct kcld_sigv4 *s, const struct job *j,
                           char *p, char **signed_at)
{
  p = put(p, j->req->method, j->method_len);
  *p++ = '\n';
  p = put_path(p, j->path, j->path_len, j->req->normalize_path);
  *p++ = '\n';
  for (size_t i = 0; i < j->n_q; i++) {
    const struct qent *e = &s->qents[i];
    if (i)
      *p++ = '&';
    p = put(p, e->key, e->key_len);
    *p++ = '=';
    p = put(p, e->val, e->val_len);
  }
  *p++ = '\n';
  for (size_t i = 0; i < j->n_hdr; i++) {
    const struct hent *h = &s->hents[i];
    if (i && same_name(h, h - 1)) {
      *p++ = ',';
    } else {
      if (i)
        *p++ = '\n';
      p = put_lower(p, h->name, h->name_len);
      *p++ = ':';
    }
    p = put_folded(p, h->value, h->value_len);
  }
  *p++ = '\n';
  *p++ = '\n';
  *signed_at = p;
  for (size_t i = 0; i < j->n_hdr; i++) {
    const struct hent *h = &s->hents[i];
    if (i && same_name(h, h - 1))
      continue;
    if (i)
      *p++ = ';';
    p = put_lower(p, h->name, h->name_len);
  }
  *p++ = '\n';
  return put(p, j->body_hash, HEX_LEN);
}

/* Writes "date/region/service/aws4_request". */
static char *put_scope(const struct kcld_sigv4 *s, const struct job *j,
                       char *p)
{
  p = put(p, j->date, 8);
  *p++ = '/';
  p = put(p, s->region, s->region_len);
  *p++ = '/';
  p = put(p, s->service, s->service_len);
  *p++ = '/';
  return put_str(p, TERMINATOR);
}

int kcld_sigv4_sign(struct kcld_sigv4 *s, const struct kcld_creds *creds,
                    time_t now, const struct kcld_sigv4_request *req,
                    struct kcld_sigv4_result *out)
{
  unsigned char hash[HASH_LEN];
  char *p, *signed_at;
  struct job j;
  int rc;

  if (!out)
    return KCLD_EINVAL;
  memset(out, 0, sizeof(*out));
  if (!s || !creds || !req)
    return KCLD_EINVAL;
  rc = prepare(s, creds, now, req, out, &j);
  if (rc)
    return rc;
  out->size = block_size(s, &j);
  out->canonical_request = malloc(out->size);
  if (!out->canonical_request)
    return KCLD_ENOMEM;

  p = put_canonical(s, &j, out->canonical_request, &signed_at);
  size_t signed_len = (size_t)(p - HEX_LEN - 1 - signed_at);
  rc = sha256(s, out->canonical_request,
              (size_t)(p - out->canonical_request), hash);
  if (rc)
    return rc;
  *p++ = '\0';

  out->string_to_sign = p;
  p = put_str(p, ALGORITHM "\n");
  p = put(p, out->amz_date, 16);
  *p++ = '\n';
  p = put_scope(s, &j, p);
  *p++ = '\n';
  p = kcld_hex_put(p, hash, HASH_LEN);
  rc = signing_key(s, creds, j.date);
  if (!rc)
    rc = hmac(s, s->key, HASH_LEN, out->string_to_sign,
              (size_t)(p - out->string_to_sign), hash);
  if (rc)
    return rc;
  *p++ = '\0';
  kcld_hex_put(out->signature, hash, HASH_LEN);
  out->signature[HEX_LEN] = '\0';
  OPENSSL_cleanse(hash, sizeof(hash));

  size_t nh = 0;
  out->headers[nh++] = p;
  p = put_str(p, "X-Amz-Date: ");
  p = put(p, out->amz_date, 17);
  if (j.token) {
    out->headers[nh++] = p;
    p = put_str(p, "X-Amz-Security-Token: ");
    p = put(p, j.token, j.token_len + 1);
  }
  if (req->sign_body_header) {
    out->headers[nh++] = p;
    p = put_str(p, "x-amz-content-sha256: ");
    p = put(p, j.body_hash, HEX_LEN + 1);
  }
  out->headers[nh++] = p;
  p = put_str(p, "Authorization: " ALGORITHM " Credential=");
  p = put(p, creds->access_key_id, j.akid_len);
  *p++ = '/';
  p = put_scope(s, &j, p);
  p = put_str(p, ", SignedHeaders=");
  p = put(p, signed_at, signed_len);
  p = put_str(p, ", Signature=");
  put(p, out->signature, HEX_LEN + 1);
  out->headers[nh] = NULL;
  return 0;
}
