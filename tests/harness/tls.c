/* tls.c — a throw-away TLS identity for tests (see tls.h). */
#include "tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "fault.h"

static char *pem_of(int (*write)(BIO *, void *), void *obj)
{
  BIO *b = BIO_new(BIO_s_mem());
  char *data, *out = NULL;
  long n;

  if (b && write(b, obj) == 1 && (n = BIO_get_mem_data(b, &data)) > 0) {
    out = malloc((size_t)n + 1); /* data is not NUL-terminated */
    if (out) {
      memcpy(out, data, (size_t)n);
      out[n] = '\0';
    }
  }
  BIO_free(b);
  return out;
}

static int write_cert(BIO *b, void *x) { return PEM_write_bio_X509(b, x); }

static int write_key(BIO *b, void *k)
{
  return PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
}

static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
  X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
  int ok = ext && X509_add_ext(x, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

int kcld_test_make_cert(char **cert_pem, char **key_pem)
{
  EVP_PKEY *pkey = EVP_EC_gen("P-256");
  X509 *x = X509_new();
  X509V3_CTX ctx;
  int rc = -1;

  *cert_pem = *key_pem = NULL;
  if (!pkey || !x)
    goto done;
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), (long)time(NULL));
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 86400);
  X509_set_pubkey(x, pkey);
  X509_NAME *name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             (const unsigned char *)"kcld test", -1, -1, 0);
  X509_set_issuer_name(x, name);
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
  if (!add_ext(x, &ctx, NID_subject_alt_name, "IP:127.0.0.1") ||
      !add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE") ||
      X509_sign(x, pkey, EVP_sha256()) <= 0)
    goto done;
  *cert_pem = pem_of(write_cert, x);
  *key_pem = pem_of(write_key, pkey);
  if (*cert_pem && *key_pem)
    rc = 0;
done:
  if (rc != 0) {
    fprintf(stderr, "kcld_test_make_cert: could not make a certificate\n");
    free(*cert_pem);
    free(*key_pem);
    *cert_pem = *key_pem = NULL;
  }
  X509_free(x);
  EVP_PKEY_free(pkey);
  return rc;
}

char *kcld_test_tls_front(const char *url, const char *path, char *ca_path)
{
  char *cert, *key, *tls_url = NULL;
  if (kcld_test_make_cert(&cert, &key) != 0)
    return NULL;
  json_t *req = json_pack("{s:s,s:s}", "cert", cert, "key", key);
  char *body = req ? json_dumps(req, 0) : NULL;
  json_t *ans = body ? kcld_fault_post(url, path, body) : NULL;
  const char *got = json_string_value(json_object_get(ans, "url"));
  int fd = got ? mkstemp(ca_path) : -1;
  int ok = fd >= 0 && write(fd, cert, strlen(cert)) == (ssize_t)strlen(cert);
  if (fd >= 0 && close(fd) != 0)
    ok = 0;
  if (ok)
    tls_url = strdup(got);
  json_decref(ans);
  free(body);
  json_decref(req);
  free(cert);
  free(key);
  return tls_url;
}
