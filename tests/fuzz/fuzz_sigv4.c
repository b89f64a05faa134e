/* fuzz_sigv4.c — libFuzzer target for SigV4 canonicalization through
 * kcld_sigv4_sign(): method, path, query, headers and body from the input.
 *
 * Input layout: one flag byte, 8 bytes of time (little-endian, used when
 * flag bit 7 is set, else 2015-08-30T12:36:00Z), then NUL-separated fields:
 * method, path, query, body, and name/value pairs of headers (at most 32).
 * Flags: bit 0 normalize_path, 1 sign_body_header, 2 omit_session_token,
 * 3 a session token, 4 path NULL, 5 query NULL, 6 add "Host: example.com".
 *
 * Checked against sigv4.h: only 0, KCLD_EINVAL or KCLD_ENOMEM come back; a
 * signature is 64 lower-case hex digits, the canonical request starts with
 * the method, the header lines end with Authorization; signing the same
 * request again (now from the cached key) gives the same result. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aws/credentials.h"
#include "aws/sigv4.h"
#include "err.h"
#include "fuzz.h"

#define MAX_FIELDS (4 + 2 * 32)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc;
  (void)argv;
  return 0;
}

static void check_result(const struct kcld_sigv4_request *req,
                         const struct kcld_sigv4_result *r)
{
  size_t ml = strlen(req->method), n = 0;
  CHECK(strlen(r->signature) == 64);
  CHECK(strspn(r->signature, "0123456789abcdef") == 64);
  CHECK(strlen(r->amz_date) == 16);
  CHECK(r->canonical_request && r->string_to_sign);
  CHECK(strncmp(r->canonical_request, req->method, ml) == 0 &&
        r->canonical_request[ml] == '\n');
  CHECK(strncmp(r->string_to_sign, "AWS4-HMAC-SHA256\n", 17) == 0);
  while (n < 5 && r->headers[n])
    n++;
  CHECK(n >= 2 && n < 5);
  CHECK(strncmp(r->headers[0], "X-Amz-Date: ", 12) == 0);
  CHECK(strncmp(r->headers[n - 1], "Authorization: ", 15) == 0);
  CHECK(strstr(r->headers[n - 1], r->signature) != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static char akid[] = "AKIDEXAMPLE";
  static char secret[] = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
  static char token[] = "IQoJb3JpZ2luX2VjEFAKE//TOKEN+value==";
  struct kcld_sigv4_header hdrs[MAX_FIELDS / 2 + 1];
  const char *field[MAX_FIELDS];
  size_t nf = 0, nh = 0;

  if (size < 9)
    return 0;
  uint8_t flags = data[0];
  uint64_t t = 0;
  for (int i = 8; i >= 1; i--)
    t = (t << 8) | data[i];
  time_t now = (flags & 0x80) ? (time_t)t : (time_t)1440938160;

  /* One copy with a NUL after the last field; fields point into it. */
  size_t len = size - 9;
  char *text = malloc(len + 1);
  if (!text)
    return 0;
  memcpy(text, data + 9, len);
  text[len] = '\0';
  for (size_t i = 0; nf < MAX_FIELDS;) {
    field[nf++] = text + i;
    const char *z = memchr(text + i, '\0', len + 1 - i);
    i = (size_t)(z - text) + 1;
    if (i > len)
      break;
  }
  if (flags & 0x40)
    hdrs[nh++] = (struct kcld_sigv4_header){"Host", "example.com"};
  for (size_t i = 4; i + 1 < nf; i += 2)
    hdrs[nh++] = (struct kcld_sigv4_header){field[i], field[i + 1]};

  const char *body = nf > 3 ? field[3] : "";
  struct kcld_sigv4_request req = {
    .method = field[0],
    .path = (flags & 0x10) ? NULL : (nf > 1 ? field[1] : "/"),
    .query = (flags & 0x20) ? NULL : (nf > 2 ? field[2] : ""),
    .headers = hdrs,
    .n_headers = nh,
    .body = body,
    .body_len = strlen(body),
    .normalize_path = flags & 1,
    .sign_body_header = (flags >> 1) & 1,
    .omit_session_token = (flags >> 2) & 1,
  };
  struct kcld_creds creds = {
    .access_key_id = akid,
    .secret_access_key = secret,
    .session_token = (flags & 8) ? token : NULL,
  };

  struct kcld_sigv4 *s = kcld_sigv4_new("us-east-1", "service");
  CHECK(s != NULL);
  struct kcld_sigv4_result r1, r2;
  memset(&r1, 0, sizeof(r1));
  memset(&r2, 0, sizeof(r2));
  int rc = kcld_sigv4_sign(s, &creds, now, &req, &r1);
  CHECK(rc == 0 || rc == KCLD_EINVAL || rc == KCLD_ENOMEM);
  if (rc == 0) {
    check_result(&req, &r1);
    CHECK(kcld_sigv4_sign(s, &creds, now, &req, &r2) == 0);
    CHECK(strcmp(r1.signature, r2.signature) == 0);
    CHECK(strcmp(r1.canonical_request, r2.canonical_request) == 0);
    CHECK(kcld_sigv4_key_derivations(s) == 1);
  }
  kcld_sigv4_result_clean_up(&r1);
  kcld_sigv4_result_clean_up(&r2);
  kcld_sigv4_free(s);
  free(text);
  return 0;
}
