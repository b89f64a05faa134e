/* test_sigv4.c — the SigV4 signer against AWS's test suites and on its own.
 *
 * One cmocka test per case of ../shared/testdata/aws-sigv4-suite: every
 * header-signing case of v4/ (canonical request, string to sign, signature
 * and the Authorization value, byte for byte) and every case of the legacy
 * aws4_testsuite (.creq, .sts, .authz), then focused tests of the key
 * cache, request checks and the session-token header. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "aws/sigv4.h"
#include "err.h"
#include "../harness/harness.h"

#define SUITE "testdata/aws-sigv4-suite"
#define MAX_HEADERS 32

/* Counts reported by the last test. */
static unsigned s_v4_found, s_v4_ok, s_legacy_found, s_legacy_ok;
static int s_v4_absent, s_legacy_absent;

/* ======== Parsing the suite's raw requests ======== */

struct preq {
  char *method, *path, *query;
  struct kcld_sigv4_header h[MAX_HEADERS];
  size_t n;
  const char *body; /* points into the file buffer */
  size_t body_len;
};

static void preq_free(struct preq *r)
{
  free(r->method);
  free(r->path);
  free(r->query);
  for (size_t i = 0; i < r->n; i++) {
    free((char *)r->h[i].name);
    free((char *)r->h[i].value);
  }
  memset(r, 0, sizeof(*r));
}

/* Parses "METHOD target HTTP/1.1\nName:value\n...\n\nbody".  The target may
 * hold spaces (the method ends at the first, the version starts after the
 * last).  An indented line continues the previous header's value: it is
 * kept with its newline and indentation, as it came.  Returns 0 or -1. */
static int preq_parse(const char *buf, size_t len, struct preq *r)
{
  const char *end = buf + len, *p = buf;
  memset(r, 0, sizeof(*r));

  const char *eol = memchr(p, '\n', (size_t)(end - p));
  if (!eol)
    eol = end;
  const char *sp1 = memchr(p, ' ', (size_t)(eol - p));
  const char *sp2 = eol;
  while (sp2 > p && sp2[-1] != ' ')
    sp2--;
  if (!sp1 || sp2 <= sp1 + 1)
    return -1;
  r->method = strndup(p, (size_t)(sp1 - p));
  const char *target = sp1 + 1, *tend = sp2 - 1;
  const char *qm = memchr(target, '?', (size_t)(tend - target));
  r->path = strndup(target, (size_t)((qm ? qm : tend) - target));
  r->query = qm ? strndup(qm + 1, (size_t)(tend - qm - 1)) : strdup("");
  p = eol < end ? eol + 1 : end;

  while (p < end) {
    eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol)
      eol = end;
    size_t ll = (size_t)(eol - p);
    if (ll && p[ll - 1] == '\r')
      ll--;
    if (ll == 0) {
      p = eol < end ? eol + 1 : end;
      r->body = p;
      r->body_len = (size_t)(end - p);
      return 0;
    }
    if (p[0] == ' ' || p[0] == '\t') {
      if (r->n == 0)
        return -1;
      char *old = (char *)r->h[r->n - 1].value;
      size_t ol = strlen(old);
      char *nv = malloc(ol + 1 + ll + 1);
      memcpy(nv, old, ol);
      nv[ol] = '\n';
      memcpy(nv + ol + 1, p, ll);
      nv[ol + 1 + ll] = '\0';
      free(old);
      r->h[r->n - 1].value = nv;
    } else {
      const char *colon = memchr(p, ':', ll);
      if (!colon || r->n == MAX_HEADERS)
        return -1;
      r->h[r->n].name = strndup(p, (size_t)(colon - p));
      r->h[r->n].value = strndup(colon + 1, (size_t)(p + ll - colon - 1));
      r->n++;
    }
    p = eol < end ? eol + 1 : end;
  }
  r->body = end;
  r->body_len = 0;
  return 0;
}

/* Removes header `name` (any case) and returns its value (caller frees), or
 * NULL when absent. */
static char *preq_take(struct preq *r, const char *name)
{
  for (size_t i = 0; i < r->n; i++) {
    if (strcasecmp(r->h[i].name, name) == 0) {
      char *v = (char *)r->h[i].value;
      free((char *)r->h[i].name);
      memmove(&r->h[i], &r->h[i + 1], (r->n - i - 1) * sizeof(r->h[0]));
      r->n--;
      return v;
    }
  }
  return NULL;
}

static time_t parse_time(const char *s, const char *fmt)
{
  struct tm tm;
  memset(&tm, 0, sizeof(tm));
  if (sscanf(s, fmt, &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
             &tm.tm_min, &tm.tm_sec) != 6)
    return (time_t)-1;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return timegm(&tm);
}

/* The value of line "Name:value" in a raw request text, malloc'd, or NULL. */
static char *line_value(const char *text, const char *name)
{
  size_t nl = strlen(name);
  for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : p) {
    if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
      const char *v = p + nl + 1, *e = strchr(v, '\n');
      while (*v == ' ')
        v++;
      return strndup(v, e ? (size_t)(e - v) : strlen(v));
    }
  }
  return NULL;
}

/* ======== Comparing ======== */

static char *slurp_at(const char *dir, const char *file)
{
  char path[4096];
  snprintf(path, sizeof(path), "%s/%s", dir, file);
  return kcld_test_slurp(path, NULL);
}

/* Compares `got` with the exact bytes of dir/file; prints both when they
 * differ.  Returns 1 when equal. */
static int same_as_file(const char *what, const char *got, const char *dir,
                        const char *file)
{
  char *want = slurp_at(dir, file);
  int ok = want && got && strcmp(want, got) == 0;
  if (!ok)
    fprintf(stderr, "%s: %s differs\n--- expected (%s)\n%s\n--- got\n%s\n",
            dir, what, file, want ? want : "(unreadable)",
            got ? got : "(none)");
  free(want);
  return ok;
}

static const char *find_header(const struct kcld_sigv4_result *res,
                               const char *prefix)
{
  for (size_t i = 0; res->headers[i]; i++)
    if (strncmp(res->headers[i], prefix, strlen(prefix)) == 0)
      return res->headers[i] + strlen(prefix);
  return NULL;
}

/* ======== The v4 suite (aws-c-auth) ======== */

static void test_v4_case(void **state)
{
  const char *dir = *state;
  struct kcld_sigv4_result res;
  struct kcld_sigv4 *s = NULL;
  struct preq r;
  json_error_t jerr;
  char path[4096];
  int ok = 1, rc = -1;

  memset(&res, 0, sizeof(res));
  snprintf(path, sizeof(path), "%s/context.json", dir);
  json_t *ctx = json_load_file(path, 0, &jerr);
  size_t raw_len = 0;
  snprintf(path, sizeof(path), "%s/request.txt", dir);
  char *raw = kcld_test_slurp(path, &raw_len);
  assert_non_null(ctx);
  assert_non_null(raw);
  assert_int_equal(preq_parse(raw, raw_len, &r), 0);

  json_t *c = json_object_get(ctx, "credentials");
  struct kcld_creds creds = {
    .access_key_id =
      (char *)json_string_value(json_object_get(c, "access_key_id")),
    .secret_access_key =
      (char *)json_string_value(json_object_get(c, "secret_access_key")),
    .session_token = (char *)json_string_value(json_object_get(c, "token")),
  };
  time_t now = parse_time(
    json_string_value(json_object_get(ctx, "timestamp")),
    "%4d-%2d-%2dT%2d:%2d:%2dZ");
  struct kcld_sigv4_request req = {
    .method = r.method, .path = r.path, .query = r.query,
    .headers = r.h, .n_headers = r.n,
    .body = r.body, .body_len = r.body_len,
    .normalize_path = json_is_true(json_object_get(ctx, "normalize")),
    .sign_body_header = json_is_true(json_object_get(ctx, "sign_body")),
    .omit_session_token =
      json_is_true(json_object_get(ctx, "omit_session_token")),
  };

  s = kcld_sigv4_new(json_string_value(json_object_get(ctx, "region")),
                     json_string_value(json_object_get(ctx, "service")));
  if (s && now != (time_t)-1)
    rc = kcld_sigv4_sign(s, &creds, now, &req, &res);
  if (rc != 0) {
    fprintf(stderr, "%s: signing failed: %d\n", dir, rc);
    ok = 0;
  } else {
    ok &= same_as_file("canonical request", res.canonical_request, dir,
                       "header-canonical-request.txt");
    ok &= same_as_file("string to sign", res.string_to_sign, dir,
                       "header-string-to-sign.txt");
    ok &= same_as_file("signature", res.signature, dir,
                       "header-signature.txt");
    /* The signed request: same Authorization and token headers. */
    char *sreq = slurp_at(dir, "header-signed-request.txt");
    char *authz = sreq ? line_value(sreq, "Authorization") : NULL;
    char *tok = sreq ? line_value(sreq, "X-Amz-Security-Token") : NULL;
    const char *got_authz = find_header(&res, "Authorization: ");
    const char *got_tok = find_header(&res, "X-Amz-Security-Token: ");
    if (!authz || !got_authz || strcmp(authz, got_authz) != 0) {
      fprintf(stderr, "%s: Authorization differs\n", dir);
      ok = 0;
    }
    if ((tok == NULL) != (got_tok == NULL) ||
        (tok && strcmp(tok, got_tok) != 0)) {
      fprintf(stderr, "%s: X-Amz-Security-Token differs\n", dir);
      ok = 0;
    }
    free(sreq);
    free(authz);
    free(tok);
  }
  kcld_sigv4_result_clean_up(&res);
  kcld_sigv4_free(s);
  preq_free(&r);
  free(raw);
  json_decref(ctx);
  assert_true(ok);
  s_v4_ok++;
}

/* ======== The legacy aws4_testsuite (botocore's copy) ======== */

static void test_legacy_case(void **state)
{
  const char *dir = *state;
  const char *name = strrchr(dir, '/') + 1;
  struct kcld_sigv4_result res;
  struct kcld_sigv4 *s = NULL;
  struct preq r;
  char file[512];
  int ok = 1, rc = -1;

  memset(&res, 0, sizeof(res));
  snprintf(file, sizeof(file), "%s.req", name);
  size_t raw_len = 0;
  char *raw = slurp_at(dir, file);
  assert_non_null(raw);
  raw_len = strlen(raw);
  assert_int_equal(preq_parse(raw, raw_len, &r), 0);

  /* The .req already carries X-Amz-Date (the signing time) and, in
   * post-sts-header-before, the token: the signer adds both itself. */
  char *date = preq_take(&r, "X-Amz-Date");
  char *token = preq_take(&r, "X-Amz-Security-Token");
  if (!token) {
    /* get-vanilla-with-session-token and post-sts-header-after give the
     * token only in the signed request (its token line is right even where
     * its signature is not). */
    snprintf(file, sizeof(file), "%s.sreq", name);
    char *sreq = slurp_at(dir, file);
    token = sreq ? line_value(sreq, "X-Amz-Security-Token") : NULL;
    free(sreq);
  }
  time_t now = date ? parse_time(date, "%4d%2d%2dT%2d%2d%2dZ") : (time_t)-1;
  struct kcld_creds creds = {
    .access_key_id = "AKIDEXAMPLE",
    .secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    .session_token = token,
  };
  struct kcld_sigv4_request req = {
    .method = r.method, .path = r.path, .query = r.query,
    .headers = r.h, .n_headers = r.n,
    .body = r.body, .body_len = r.body_len,
    .normalize_path = 1,
    /* post-sts-token/readme.txt: "after" adds the token after signing. */
    .omit_session_token = strcmp(name, "post-sts-header-after") == 0,
  };

  s = kcld_sigv4_new("us-east-1", "service");
  if (s && now != (time_t)-1)
    rc = kcld_sigv4_sign(s, &creds, now, &req, &res);
  if (rc != 0) {
    fprintf(stderr, "%s: signing failed: %d\n", dir, rc);
    ok = 0;
  } else {
    if (strcmp(res.amz_date, date) != 0) {
      fprintf(stderr, "%s: X-Amz-Date %s, want %s\n", dir, res.amz_date, date);
      ok = 0;
    }
    snprintf(file, sizeof(file), "%s.creq", name);
    ok &= same_as_file("canonical request", res.canonical_request, dir, file);
    snprintf(file, sizeof(file), "%s.sts", name);
    ok &= same_as_file("string to sign", res.string_to_sign, dir, file);
    snprintf(file, sizeof(file), "%s.authz", name);
    ok &= same_as_file("Authorization", find_header(&res, "Authorization: "),
                       dir, file);
    const char *got_tok = find_header(&res, "X-Amz-Security-Token: ");
    if ((token == NULL) != (got_tok == NULL) ||
        (token && strcmp(token, got_tok) != 0)) {
      fprintf(stderr, "%s: X-Amz-Security-Token differs\n", dir);
      ok = 0;
    }
  }
  kcld_sigv4_result_clean_up(&res);
  kcld_sigv4_free(s);
  free(date);
  free(token);
  preq_free(&r);
  free(raw);
  assert_true(ok);
  s_legacy_ok++;
}

static void test_suite_absent(void **state)
{
  (void)state;
  fprintf(stderr, "../shared/" SUITE " is absent: the AWS SigV4 suite "
          "cases are not run\n");
  skip();
}

/* Runs last: the suites were all there and every case was checked. */
static void test_suite_totals(void **state)
{
  (void)state;
  if (s_v4_absent || s_legacy_absent)
    skip();
  printf("sigv4 suite: v4 %u/%u header-signing cases passed, legacy "
         "aws4_testsuite %u/%u cases passed\n",
         s_v4_ok, s_v4_found, s_legacy_ok, s_legacy_found);
  /* The README lists 38 v4 cases and 34 legacy ones: none went missing. */
  assert_int_equal(s_v4_found, 38);
  assert_int_equal(s_legacy_found, 34);
  assert_int_equal(s_v4_ok, s_v4_found);
  assert_int_equal(s_legacy_ok, s_legacy_found);
}

/* ======== Focused tests ======== */

static const struct kcld_sigv4_header s_hdrs[] = {
  {"Host", "kinesis.us-east-1.amazonaws.com"},
  {"Content-Type", "application/x-amz-json-1.1"},
  {"X-Amz-Target", "Kinesis_20131202.GetRecords"},
};

static struct kcld_sigv4_request basic_request(void)
{
  static const char body[] = "{\"ShardIterator\":\"AAA\"}";
  struct kcld_sigv4_request req = {
    .method = "POST", .path = "/", .headers = s_hdrs, .n_headers = 3,
    .body = body, .body_len = sizeof(body) - 1, .normalize_path = 1,
  };
  return req;
}

/* Signs with a fresh signer (no cache) and returns the signature. */
static void fresh_signature(const struct kcld_creds *creds, time_t now,
                            char sig[65])
{
  struct kcld_sigv4 *s = kcld_sigv4_new("us-east-1", "kinesis");
  struct kcld_sigv4_request req = basic_request();
  struct kcld_sigv4_result res;
  assert_non_null(s);
  assert_int_equal(kcld_sigv4_sign(s, creds, now, &req, &res), 0);
  assert_int_equal(kcld_sigv4_key_derivations(s), 1);
  memcpy(sig, res.signature, 65);
  kcld_sigv4_result_clean_up(&res);
  kcld_sigv4_free(s);
}

/* Signs with `s` and checks the signature against a fresh signer's. */
static void sign_and_match(struct kcld_sigv4 *s, const struct kcld_creds *c,
                           time_t now, char sig[65])
{
  struct kcld_sigv4_request req = basic_request();
  struct kcld_sigv4_result res;
  char want[65];
  assert_int_equal(kcld_sigv4_sign(s, c, now, &req, &res), 0);
  fresh_signature(c, now, want);
  assert_string_equal(res.signature, want);
  memcpy(sig, res.signature, 65);
  kcld_sigv4_result_clean_up(&res);
}

static void test_key_cache(void **state)
{
  (void)state;
  struct kcld_creds a = {"AKIDA", "secretAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                         NULL, 0};
  struct kcld_creds b = {"AKIDA", "secretBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB",
                         NULL, 0};
  struct kcld_creds c = {"AKIDC", "secretBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB",
                         NULL, 0};
  struct kcld_sigv4 *s = kcld_sigv4_new("us-east-1", "kinesis");
  const time_t day = 1440936960; /* 2015-08-30T12:16:00Z */
  char s1[65], s2[65], s3[65], s4[65];

  assert_non_null(s);
  assert_int_equal(kcld_sigv4_key_derivations(s), 0);
  sign_and_match(s, &a, day, s1);
  assert_int_equal(kcld_sigv4_key_derivations(s), 1);
  /* Same date (up to the last second of the day): the key is reused. */
  sign_and_match(s, &a, day + 3600, s2);
  sign_and_match(s, &a, day + 42239, s2);
  assert_int_equal(kcld_sigv4_key_derivations(s), 1);
  assert_string_not_equal(s1, s2);
  /* A new day: derived again, once. */
  sign_and_match(s, &a, day + 42240, s3);
  sign_and_match(s, &a, day + 50000, s3);
  assert_int_equal(kcld_sigv4_key_derivations(s), 2);
  /* Back to the first day: its key is derived again, and right. */
  sign_and_match(s, &a, day, s4);
  assert_string_equal(s4, s1);
  assert_int_equal(kcld_sigv4_key_derivations(s), 3);
  /* New secret: a new key and a different signature. */
  sign_and_match(s, &b, day, s4);
  assert_string_not_equal(s4, s1);
  assert_int_equal(kcld_sigv4_key_derivations(s), 4);
  /* New access key id, same secret: a new credential set. */
  sign_and_match(s, &c, day, s4);
  assert_int_equal(kcld_sigv4_key_derivations(s), 5);
  sign_and_match(s, &c, day + 1, s4);
  assert_int_equal(kcld_sigv4_key_derivations(s), 5);
  /* A session token does not change the key. */
  c.session_token = "token";
  sign_and_match(s, &c, day, s4);
  assert_int_equal(kcld_sigv4_key_derivations(s), 5);
  kcld_sigv4_free(s);
}

static int sign_headers(const struct kcld_sigv4_header *h, size_t n,
                        const struct kcld_creds *creds, int omit,
                        struct kcld_sigv4_result *res)
{
  struct kcld_sigv4 *s = kcld_sigv4_new("us-east-1", "kinesis");
  struct kcld_sigv4_request req = basic_request();
  req.headers = h;
  req.n_headers = n;
  req.omit_session_token = omit;
  int rc = kcld_sigv4_sign(s, creds, 1440938160, &req, res);
  kcld_sigv4_free(s);
  return rc;
}

static void test_refused(void **state)
{
  (void)state;
  struct kcld_creds creds = {"AKID", "secret", NULL, 0};
  struct kcld_creds tok = {"AKID", "secret", "tok", 0};
  struct kcld_sigv4_result res;
  struct kcld_sigv4_header no_host[] = {{"Content-Type", "x"}};
  struct kcld_sigv4_header empty_host[] = {{"Host", " \t "}};
  struct kcld_sigv4_header has_date[] = {{"Host", "h"},
                                         {"x-amz-date", "20150830T123600Z"}};
  struct kcld_sigv4_header has_authz[] = {{"Host", "h"},
                                          {"Authorization", "x"}};
  struct kcld_sigv4_header has_token[] = {{"Host", "h"},
                                          {"X-AMZ-Security-Token", "tok"}};
  struct kcld_sigv4_header bad_name[] = {{"Host", "h"}, {"My Header", "x"}};
  struct kcld_sigv4_header empty_name[] = {{"Host", "h"}, {" ", "x"}};
  struct kcld_sigv4_header null_value[] = {{"Host", "h"}, {"X-A", NULL}};

  assert_int_equal(sign_headers(no_host, 1, &creds, 0, &res), KCLD_EINVAL);
  assert_null(res.canonical_request);
  assert_null(res.headers[0]);
  kcld_sigv4_result_clean_up(&res);
  assert_int_equal(sign_headers(no_host, 0, &creds, 0, &res), KCLD_EINVAL);
  assert_int_equal(sign_headers(empty_host, 1, &creds, 0, &res), KCLD_EINVAL);
  assert_int_equal(sign_headers(has_date, 2, &creds, 0, &res), KCLD_EINVAL);
  assert_int_equal(sign_headers(has_authz, 2, &creds, 0, &res), KCLD_EINVAL);
  assert_int_equal(sign_headers(has_token, 2, &tok, 0, &res), KCLD_EINVAL);
  assert_int_equal(sign_headers(has_token, 2, &tok, 1, &res), KCLD_EINVAL);
  assert_int_equal(sign_headers(bad_name, 2, &creds, 0, &res), KCLD_EINVAL);
  assert_int_equal(sign_headers(empty_name, 2, &creds, 0, &res),
                   KCLD_EINVAL);
  assert_int_equal(sign_headers(null_value, 2, &creds, 0, &res),
                   KCLD_EINVAL);
  /* Without a token of its own, a caller's token header is just signed. */
  assert_int_equal(sign_headers(has_token, 2, &creds, 0, &res), 0);
  assert_non_null(strstr(res.canonical_request,
                         "\nx-amz-security-token:tok\n"));
  kcld_sigv4_result_clean_up(&res);

  /* A path must be absolute; credentials must be complete. */
  struct kcld_sigv4 *s = kcld_sigv4_new("us-east-1", "kinesis");
  struct kcld_sigv4_request req = basic_request();
  req.path = "relative/path";
  assert_int_equal(kcld_sigv4_sign(s, &creds, 1440938160, &req, &res),
                   KCLD_EINVAL);
  req = basic_request();
  struct kcld_creds no_secret = {"AKID", "", NULL, 0};
  assert_int_equal(kcld_sigv4_sign(s, &no_secret, 1440938160, &req, &res),
                   KCLD_EINVAL);
  /* Year 10000 does not fit X-Amz-Date. */
  if (sizeof(time_t) >= 8)
    assert_int_equal(kcld_sigv4_sign(s, &creds, (time_t)253402300800LL,
                                     &req, &res), KCLD_EINVAL);
  assert_int_equal(kcld_sigv4_sign(s, &creds, 1440938160, &req, &res), 0);
  kcld_sigv4_result_clean_up(&res);
  kcld_sigv4_result_clean_up(&res); /* twice is harmless */
  kcld_sigv4_free(s);
  assert_null(kcld_sigv4_new("", "kinesis"));
  assert_null(kcld_sigv4_new("us-east-1", NULL));
}

static void test_session_token(void **state)
{
  (void)state;
  struct kcld_creds none = {"AKID", "secret", NULL, 0};
  struct kcld_creds empty = {"AKID", "secret", "", 0};
  struct kcld_creds tok = {"AKID", "secret", "FwoGZXIvYXdzEXAMPLE==", 0};
  struct kcld_sigv4_result res;

  /* No token (NULL or empty): X-Amz-Date and Authorization only. */
  const struct kcld_creds *no_token[] = {&none, &empty};
  for (size_t i = 0; i < 2; i++) {
    assert_int_equal(sign_headers(s_hdrs, 3, no_token[i], 0, &res), 0);
    assert_string_equal(res.headers[0], "X-Amz-Date: 20150830T123600Z");
    assert_non_null(strstr(res.headers[1], "Authorization: "));
    assert_null(res.headers[2]);
    assert_null(strstr(res.canonical_request, "x-amz-security-token"));
    assert_non_null(strstr(res.headers[1], "SignedHeaders=content-type;host;"
                           "x-amz-date;x-amz-target, Signature="));
    kcld_sigv4_result_clean_up(&res);
  }

  /* A token: added and signed. */
  assert_int_equal(sign_headers(s_hdrs, 3, &tok, 0, &res), 0);
  assert_string_equal(res.headers[1],
                      "X-Amz-Security-Token: FwoGZXIvYXdzEXAMPLE==");
  assert_non_null(strstr(res.canonical_request,
                         "\nx-amz-security-token:FwoGZXIvYXdzEXAMPLE==\n"));
  assert_non_null(strstr(res.headers[2], "SignedHeaders=content-type;host;"
                         "x-amz-date;x-amz-security-token;x-amz-target, "));
  assert_null(res.headers[3]);
  char signed_sig[65];
  memcpy(signed_sig, res.signature, 65);
  kcld_sigv4_result_clean_up(&res);

  /* omit_session_token: added, not signed, so the signature is the one
   * without a token. */
  assert_int_equal(sign_headers(s_hdrs, 3, &tok, 1, &res), 0);
  assert_string_equal(res.headers[1],
                      "X-Amz-Security-Token: FwoGZXIvYXdzEXAMPLE==");
  assert_null(strstr(res.canonical_request, "x-amz-security-token"));
  assert_null(strstr(res.headers[2], "x-amz-security-token"));
  char omitted_sig[65];
  memcpy(omitted_sig, res.signature, 65);
  kcld_sigv4_result_clean_up(&res);
  assert_int_equal(sign_headers(s_hdrs, 3, &none, 0, &res), 0);
  assert_string_equal(res.signature, omitted_sig);
  assert_string_not_equal(res.signature, signed_sig);
  kcld_sigv4_result_clean_up(&res);
}

static void test_body_header(void **state)
{
  (void)state;
  struct kcld_creds creds = {"AKID", "secret", "tok", 0};
  struct kcld_sigv4 *s = kcld_sigv4_new("eu-west-1", "dynamodb");
  struct kcld_sigv4_request req = basic_request();
  struct kcld_sigv4_result res;
  unsigned char md[32];
  char hex[65];

  EVP_Digest(req.body, req.body_len, md, NULL, EVP_sha256(), NULL);
  for (int i = 0; i < 32; i++)
    snprintf(hex + 2 * i, 3, "%02x", md[i]);
  req.sign_body_header = 1;
  assert_int_equal(kcld_sigv4_sign(s, &creds, 1440938160, &req, &res), 0);
  assert_non_null(strstr(res.headers[2], "x-amz-content-sha256: "));
  assert_string_equal(res.headers[2] + strlen("x-amz-content-sha256: "), hex);
  assert_null(res.headers[4]);
  /* The payload hash ends the canonical request and is signed. */
  size_t cl = strlen(res.canonical_request);
  assert_string_equal(res.canonical_request + cl - 64, hex);
  assert_non_null(strstr(res.canonical_request, "x-amz-content-sha256:"));
  assert_non_null(strstr(res.headers[3], "/eu-west-1/dynamodb/aws4_request"));
  kcld_sigv4_result_clean_up(&res);
  kcld_sigv4_free(s);
}

/* Path, query and header rules on inputs the suites do not cover. */
static void test_canonical_forms(void **state)
{
  (void)state;
  struct kcld_creds creds = {"AKID", "secret", NULL, 0};
  struct kcld_sigv4_header h[] = {
    {"Host", "h"}, {"X-B", " a \t b\r\n  c "}, {"x-b", "2"},
    {" X-A ", ""}, {"X-C", "\"q  q\""},
  };
  struct kcld_sigv4 *s = kcld_sigv4_new("us-east-1", "sqs");
  struct kcld_sigv4_request req = {
    .method = "GET", .path = "/a/./b/../c//d%2F/", .headers = h,
    .n_headers = 5, .normalize_path = 1,
    .query = "b=2&a=&a&=x&&c=%zz%41%2b+&d=%e1%88%b4%",
  };
  struct kcld_sigv4_result res;

  assert_int_equal(kcld_sigv4_sign(s, &creds, 1440938160, &req, &res), 0);
  const char *want =
    "GET\n"
    "/a/c/d%252F/\n"
    "=x&a=&a=&b=2&c=%25zzA%2B%2B&d=%E1%88%B4%25\n"
    "host:h\n"
    "x-a:\n"
    "x-amz-date:20150830T123600Z\n"
    "x-b:a b c,2\n"
    "x-c:\"q q\"\n"
    "\n"
    "host;x-a;x-amz-date;x-b;x-c\n"
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
  assert_string_equal(res.canonical_request, want);
  kcld_sigv4_result_clean_up(&res);

  /* Dot segments above the root and a lone "..": the root remains. */
  const char *paths[][2] = {
    {"/../../x/..", "/"}, {"/..", "/"}, {"//", "/"}, {"/a/.", "/a"},
    {"/a/b/..//", "/a/"}, {"/ä b", "/%C3%A4%20b"}, {"/a%20b", "/a%2520b"},
  };
  for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
    req.path = paths[i][0];
    req.query = NULL;
    assert_int_equal(kcld_sigv4_sign(s, &creds, 1440938160, &req, &res), 0);
    char line[64];
    snprintf(line, sizeof(line), "GET\n%s\n\n", paths[i][1]);
    assert_memory_equal(res.canonical_request, line, strlen(line));
    kcld_sigv4_result_clean_up(&res);
  }
  /* Unnormalized (S3 style): only encoded. */
  req.path = "/a/./b/../c//";
  req.normalize_path = 0;
  assert_int_equal(kcld_sigv4_sign(s, &creds, 1440938160, &req, &res), 0);
  assert_memory_equal(res.canonical_request, "GET\n/a/./b/../c//\n\n", 19);
  kcld_sigv4_result_clean_up(&res);
  kcld_sigv4_free(s);
}

/* Many headers and a long query grow the signer's scratch space; the
 * second, smaller request reuses it and still signs right. */
static void test_scratch_growth(void **state)
{
  (void)state;
  struct kcld_creds creds = {"AKID", "secret", NULL, 0};
  struct kcld_sigv4_header h[60];
  char names[60][16], query[60 * 12], *q = query;
  struct kcld_sigv4 *s = kcld_sigv4_new("us-east-1", "kinesis");
  struct kcld_sigv4_result res, again;

  h[0] = (struct kcld_sigv4_header){"Host", "h"};
  for (int i = 1; i < 60; i++) {
    snprintf(names[i], sizeof(names[i]), "X-H%02d", 60 - i);
    h[i] = (struct kcld_sigv4_header){names[i], "v"};
    q += sprintf(q, "%sk%02d=%d", i > 1 ? "&" : "", 60 - i, i);
  }
  struct kcld_sigv4_request req = {
    .method = "POST", .path = "/", .query = query, .headers = h,
    .n_headers = 60, .normalize_path = 1,
  };
  assert_int_equal(kcld_sigv4_sign(s, &creds, 1440938160, &req, &res), 0);
  assert_non_null(strstr(res.canonical_request, "\nk01=59&k02=58&"));
  assert_non_null(strstr(res.canonical_request, "&k59=1\n"));
  assert_non_null(strstr(res.canonical_request, "\nx-h01:v\nx-h02:v\n"));
  assert_non_null(strstr(res.canonical_request, "x-amz-date;x-h01;x-h02;"));
  struct kcld_sigv4_request small = basic_request();
  assert_int_equal(kcld_sigv4_sign(s, &creds, 1440938160, &small, &again),
                   0);
  kcld_sigv4_result_clean_up(&again);
  /* The big one signed again matches the first time. */
  assert_int_equal(kcld_sigv4_sign(s, &creds, 1440938160, &req, &again), 0);
  assert_string_equal(again.signature, res.signature);
  kcld_sigv4_result_clean_up(&again);
  kcld_sigv4_result_clean_up(&res);
  kcld_sigv4_free(s);
}

/* ======== Test list ======== */

struct list {
  struct CMUnitTest *t;
  size_t n, cap;
};

static void add(struct list *l, const char *name, CMUnitTestFunction fn,
                void *state)
{
  if (l->n == l->cap) {
    l->cap = l->cap ? l->cap * 2 : 64;
    l->t = realloc(l->t, l->cap * sizeof(*l->t));
  }
  l->t[l->n++] = (struct CMUnitTest){name, fn, NULL, NULL, state};
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
  return strcmp((*a)->d_name, (*b)->d_name);
}

/* Adds one test per case directory below `dir`: v4 cases hold
 * context.json, legacy cases hold <name>.req (found recursively). */
static void add_cases(struct list *l, const char *dir, const char *label,
                      int legacy, unsigned *found)
{
  struct dirent **ents;
  int n = scandir(dir, &ents, NULL, by_name);
  for (int i = 0; i < n; i++) {
    const char *e = ents[i]->d_name;
    char *path = NULL, *probe = NULL, *name = NULL;
    struct stat st;
    if (e[0] != '.' && asprintf(&path, "%s/%s", dir, e) > 0 &&
        stat(path, &st) == 0 && S_ISDIR(st.st_mode) &&
        asprintf(&probe, legacy ? "%s/%s.req" : "%s/context.json", path,
                 e) > 0 &&
        asprintf(&name, "%s/%s", label, e) > 0) {
      if (stat(probe, &st) == 0) {
        add(l, name, legacy ? test_legacy_case : test_v4_case, path);
        name = path = NULL; /* freed after the run */
        (*found)++;
      } else if (legacy) {
        add_cases(l, path, name, legacy, found);
      }
    }
    free(path);
    free(probe);
    free(name);
    free(ents[i]);
  }
  if (n >= 0)
    free(ents);
}

int main(void)
{
  struct list l = {NULL, 0, 0};
  size_t first_case;
  const char *dir;
  char *v4 = NULL, *legacy = NULL;
  int rc;

  add(&l, "key_cache", test_key_cache, NULL);
  add(&l, "refused", test_refused, NULL);
  add(&l, "session_token", test_session_token, NULL);
  add(&l, "body_header", test_body_header, NULL);
  add(&l, "canonical_forms", test_canonical_forms, NULL);
  add(&l, "scratch_growth", test_scratch_growth, NULL);
  first_case = l.n;
  if ((dir = kcld_test_shared(SUITE "/v4")) != NULL)
    v4 = strdup(dir);
  if ((dir = kcld_test_shared(SUITE "/legacy-aws4_testsuite")) != NULL)
    legacy = strdup(dir);
  s_v4_absent = !v4;
  s_legacy_absent = !legacy;
  if (v4)
    add_cases(&l, v4, "v4", 0, &s_v4_found);
  if (legacy)
    add_cases(&l, legacy, "legacy", 1, &s_legacy_found);
  if (!v4 || !legacy)
    add(&l, "suite_absent", test_suite_absent, NULL);
  add(&l, "suite_totals", test_suite_totals, NULL);

  rc = _cmocka_run_group_tests("sigv4", l.t, l.n, NULL, NULL);
  for (size_t i = first_case; i < l.n; i++) {
    if (l.t[i].test_func == test_v4_case ||
        l.t[i].test_func == test_legacy_case) {
      free((char *)l.t[i].name);
      free(l.t[i].initial_state);
    }
  }
  free(l.t);
  free(v4);
  free(legacy);
  return rc;
}
