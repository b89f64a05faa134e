/* test_sigv4_crosscheck.c — kcld's signer against the AWS SDK's.
 *
 * Generates random requests from a fixed seed (printed; KCLD_SIGV4_SEED
 * overrides it): methods, paths with odd characters and dot segments,
 * queries with repeated, empty and reserved keys, headers with odd spacing,
 * case and repeats, binary bodies, with and without a session token, over
 * several dates, regions and services.  Each is signed by kcld and by
 * @smithy/signature-v4 (tests/emulators/sigv4-crosscheck.js, one node
 * process, JSON lines over pipes), and the Authorization headers (hence
 * the signatures), X-Amz-Date, token and payload-hash headers must agree. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "../harness/harness.h"
#include "aws/sigv4.h"
#include "err.h"

#define N_REQUESTS 400
#define DEFAULT_SEED 0x5167763420240905ULL
#define MAX_HEADERS 48
#define SHOW_MISMATCHES 5

extern char **environ;

/* ======== Randomness (splitmix64: the same sequence everywhere) ======== */

static uint64_t s_rng;

static uint64_t rnd(void)
{
  uint64_t z = (s_rng += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

static size_t pick(size_t n)
{
  return (size_t)(rnd() % n);
}

static int chance(unsigned pct)
{
  return pick(100) < pct;
}

#define PICK(arr) ((arr)[pick(sizeof(arr) / sizeof((arr)[0]))])

/* ======== A growable string ======== */

struct sb {
  char *p;
  size_t n, cap;
};

static void sb_putn(struct sb *b, const char *s, size_t n)
{
  if (b->n + n + 1 > b->cap) {
    b->cap = (b->n + n + 1) * 2;
    b->p = realloc(b->p, b->cap);
    assert_non_null(b->p);
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = '\0';
}

static void sb_put(struct sb *b, const char *s)
{
  sb_putn(b, s, strlen(s));
}

static void sb_putc(struct sb *b, char c)
{
  sb_putn(b, &c, 1);
}

static char *sb_take(struct sb *b)
{
  if (!b->p)
    sb_putn(b, "", 0);
  char *p = b->p;
  memset(b, 0, sizeof(*b));
  return p;
}

/* ======== Generating requests ======== */

static const char *const s_methods[] = {
  "GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS",
};
static const char *const s_regions[] = {
  "us-east-1", "eu-west-1", "ap-southeast-2", "us-gov-west-1", "cn-north-1",
};
static const char *const s_services[] = {
  "kinesis", "dynamodb", "sqs", "service", "monitoring",
};
static const char *const s_akids[] = {
  "AKIDEXAMPLE", "ASIAIOSFODNN7EXAMPLE", "AKIAI44QH8DHBEXAMPLE",
};

/* Path pieces as they appear on the wire (raw UTF-8 included). */
static const char *const s_path_pieces[] = {
  "a", "b", "z", "Q", "0", "9", "-", "_", ".", "~", " ", "$", "&", "+",
  ",", ";", "=", ":", "@", "!", "*", "'", "(", ")", "%20", "%2F", "%2f",
  "%", "%41", "\"", "<", ">", "[", "]", "{", "}", "|", "^", "`", "\\",
  "\xc3\xa9", "\xe1\x88\xb4", "\xf0\x9f\x98\x80", "example",
};

/* Query pieces, decoded (what the key or value means). */
static const char *const s_query_pieces[] = {
  "a", "B", "c", "7", "-", "_", ".", "~", " ", "&", "=", "+", "%", "/",
  "?", "#", ":", "@", "!", "$", "'", "(", ")", "*", ",", ";", "[", "]",
  "\xc3\xa9", "\xe1\x88\xb4", "\xf0\x9f\x98\x80", "value", "Value",
};
static const char *const s_query_keys[] = {
  "a", "b", "Param1", "param1", "Param-3", "x y", "k=1", "&", "\xc3\xa9",
  "Action", "Version", "MaxResults", "", "z~", "A+B", "%41",
};

static const char *const s_header_names[] = {
  "Content-Type", "X-Amz-Target", "My-Header1", "X-Custom",
  "x-odd!#$%&'*+.^_`|~", "Accept", "Content-Length", "X-Amz-Meta-Foo",
  "X-Dup", "Content-Encoding", "X-Amz-Json-Version", "A", "ZZ-Last",
};
static const char *const s_header_words[] = {
  "value1", "application/x-amz-json-1.1", "Kinesis_20131202.GetRecords",
  "\"a   b   c\"", "1234", "gzip", "\xc3\xa9", "\xe1\x88\xb4", "x=y;z",
  "a,b", "(c)", "",
};
static const char *const s_header_seps[] = {
  " ", "  ", "\t", " \t ", "\r\n ", "\n\t",
};
static const char *const s_header_pads[] = {
  "", "", "", " ", "  ", "\t", "\t \r\n",
};
static const char *const s_hosts[] = {
  "kinesis.us-east-1.amazonaws.com", "dynamodb.eu-west-1.amazonaws.com",
  "127.0.0.1:4567", "localhost:8000", "example.amazonaws.com",
};

static char s_secrets[3][41];

struct greq {
  const char *method;
  char *path;
  char *query;          /* wire form */
  json_t *pairs;        /* [[key, value], ...] decoded */
  size_t n;
  char *name[MAX_HEADERS], *value[MAX_HEADERS];
  unsigned char *body;
  size_t body_len;
  const char *akid, *secret;
  char *token;
  size_t region, service;
  time_t time;
  int sign_body;
};

static void greq_free(struct greq *g)
{
  free(g->path);
  free(g->query);
  json_decref(g->pairs);
  for (size_t i = 0; i < g->n; i++) {
    free(g->name[i]);
    free(g->value[i]);
  }
  free(g->body);
  free(g->token);
  memset(g, 0, sizeof(*g));
}

static char *gen_path(void)
{
  struct sb b = {0};
  size_t nseg = pick(7);
  for (size_t i = 0; i < nseg; i++) {
    sb_putc(&b, '/');
    unsigned r = (unsigned)pick(100);
    if (r < 12) {
      /* An empty segment. */
    } else if (r < 22) {
      sb_put(&b, ".");
    } else if (r < 32) {
      sb_put(&b, "..");
    } else {
      for (size_t k = 1 + pick(6); k > 0; k--)
        sb_put(&b, PICK(s_path_pieces));
    }
  }
  if (nseg == 0 || chance(30))
    sb_putc(&b, '/');
  return sb_take(&b);
}

static void put_pct(struct sb *b, unsigned char c)
{
  static const char up[] = "0123456789ABCDEF", low[] = "0123456789abcdef";
  const char *hex = chance(30) ? low : up;
  char e[3] = {'%', hex[c >> 4], hex[c & 15]};
  sb_putn(b, e, 3);
}

/* Writes decoded `s` in a wire form that decodes back to it, choosing at
 * random between raw and %XX wherever both are valid. */
static void put_wire(struct sb *b, const char *s, int is_key)
{
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    unsigned char c = *p;
    int unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                     (c >= '0' && c <= '9') || strchr("-_.~", c);
    int must = c == '&' || c == '#' || c == '%' || c == ' ' ||
               (c == '=' && is_key);
    if (must || (unreserved && chance(10)) ||
        (!unreserved && c < 0x80 && chance(50)) ||
        (c >= 0x80 && chance(70)))
      put_pct(b, c);
    else
      sb_putc(b, (char)c);
  }
}

static char *gen_query_text(int key)
{
  struct sb b = {0};
  if (key)
    return strdup(PICK(s_query_keys));
  if (chance(20))
    return strdup("");
  for (size_t k = 1 + pick(5); k > 0; k--)
    sb_put(&b, PICK(s_query_pieces));
  return sb_take(&b);
}

static void gen_query(struct greq *g)
{
  struct sb b = {0};
  char *prev = NULL;
  g->pairs = json_array();
  if (chance(40)) {
    g->query = strdup(chance(10) ? "&" : "");
    return;
  }
  if (chance(5))
    sb_putc(&b, '&');
  for (size_t i = 0, n = 1 + pick(6); i < n; i++) {
    char *key = prev && chance(25) ? strdup(prev) : gen_query_text(1);
    char *val = gen_query_text(0);
    if (i > 0)
      sb_put(&b, chance(10) ? "&&" : "&");
    put_wire(&b, key, 1);
    if (*val || !*key || chance(50))
      sb_putc(&b, '=');
    put_wire(&b, val, 0);
    json_array_append_new(g->pairs, json_pack("[s,s]", key, val));
    free(prev);
    free(val);
    prev = key;
  }
  free(prev);
  if (chance(5))
    sb_putc(&b, '&');
  g->query = sb_take(&b);
}

static char *mangle_case(const char *s)
{
  char *d = strdup(s);
  if (chance(40))
    for (char *p = d; *p; p++)
      if (chance(30))
        *p = (char)(chance(50) ? toupper((unsigned char)*p)
                               : tolower((unsigned char)*p));
  return d;
}

static char *gen_header_value(void)
{
  struct sb b = {0};
  sb_put(&b, PICK(s_header_pads));
  for (size_t k = pick(5); k > 0; k--) {
    sb_put(&b, PICK(s_header_words));
    if (k > 1)
      sb_put(&b, PICK(s_header_seps));
  }
  sb_put(&b, PICK(s_header_pads));
  return sb_take(&b);
}

static void gen_headers(struct greq *g)
{
  size_t extra = chance(5) ? 20 + pick(21) : pick(8);
  size_t host_at = pick(extra + 1);
  for (size_t i = 0; i < extra + 1; i++) {
    if (i == host_at) {
      static const char *const names[] = {"Host", "host", "HOST"};
      struct sb v = {0};
      if (chance(20))
        sb_put(&v, " ");
      sb_put(&v, PICK(s_hosts));
      if (chance(20))
        sb_put(&v, "\t");
      g->name[g->n] = strdup(PICK(names));
      g->value[g->n++] = sb_take(&v);
    } else {
      g->name[g->n] = mangle_case(PICK(s_header_names));
      g->value[g->n++] = gen_header_value();
    }
  }
}

static void gen_body(struct greq *g)
{
  unsigned r = (unsigned)pick(100);
  if (r < 35)
    return;
  if (r < 45) {
    static const char json[] = "{\"StreamName\":\"s\",\"Limit\":10000}";
    g->body_len = sizeof(json) - 1;
    g->body = malloc(g->body_len);
    memcpy(g->body, json, g->body_len);
    return;
  }
  g->body_len = 1 + (chance(5) ? pick(70000) : pick(4096));
  g->body = malloc(g->body_len);
  for (size_t i = 0; i < g->body_len; i++)
    g->body[i] = (unsigned char)rnd();
}

static const char s_b64[] =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void gen_request(struct greq *g)
{
  memset(g, 0, sizeof(*g));
  g->method = PICK(s_methods);
  g->path = gen_path();
  gen_query(g);
  gen_headers(g);
  gen_body(g);
  g->akid = PICK(s_akids);
  g->secret = s_secrets[pick(3)];
  if (chance(50)) {
    size_t n = 16 + pick(600);
    g->token = malloc(n + 3);
    for (size_t i = 0; i < n; i++)
      g->token[i] = s_b64[pick(64)];
    strcpy(g->token + n, chance(50) ? "==" : "");
  }
  g->region = pick(sizeof(s_regions) / sizeof(s_regions[0]));
  g->service = pick(sizeof(s_services) / sizeof(s_services[0]));
  /* Mostly a few days (the key cache is hit and missed), sometimes any
   * second from 1970 to 2099. */
  static const time_t days[] = {1440892800, 1709164800, 1768003200};
  uint64_t span = sizeof(time_t) >= 8 ? 4102444800ULL : 2147483647ULL;
  g->time = chance(70) ? PICK(days) + (time_t)pick(86400)
                       : (time_t)(rnd() % span);
  g->sign_body = chance(25);
}

static json_t *greq_json(const struct greq *g, size_t id)
{
  json_t *headers = json_array();
  for (size_t i = 0; i < g->n; i++)
    json_array_append_new(headers, json_pack("[s,s]", g->name[i],
                                             g->value[i]));
  char *hex = malloc(2 * g->body_len + 1);
  for (size_t i = 0; i < g->body_len; i++)
    snprintf(hex + 2 * i, 3, "%02x", g->body[i]);
  hex[2 * g->body_len] = '\0';
  json_t *j = json_pack(
    "{s:I, s:s, s:s, s:O, s:o, s:s, s:s, s:s, s:s?, s:s, s:s, s:I, s:b}",
    "id", (json_int_t)id, "method", g->method, "path", g->path,
    "query", g->pairs, "headers", headers, "body_hex", hex,
    "akid", g->akid, "secret", g->secret, "token", g->token,
    "region", s_regions[g->region], "service", s_services[g->service],
    "time", (json_int_t)g->time, "sign_body", g->sign_body);
  free(hex);
  return j;
}

/* ======== The node side ======== */

struct node {
  pid_t pid;
  FILE *to, *from;
};

/* Starts node on the script.  Returns 0, or an errno value when node
 * cannot be run. */
static int node_start(struct node *nd, const char *script)
{
  int in[2], out[2];
  posix_spawn_file_actions_t fa;
  char *argv[] = {"node", (char *)script, NULL};

  memset(nd, 0, sizeof(*nd));
  nd->pid = -1;
  if (pipe2(in, O_CLOEXEC) != 0)
    return errno;
  if (pipe2(out, O_CLOEXEC) != 0) {
    int e = errno;
    close(in[0]);
    close(in[1]);
    return e;
  }
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  int rc = posix_spawnp(&nd->pid, "node", &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(in[0]);
  close(out[1]);
  if (rc != 0) {
    close(in[1]);
    close(out[0]);
    nd->pid = -1;
    return rc;
  }
  nd->to = fdopen(in[1], "w");
  nd->from = fdopen(out[0], "r");
  return 0;
}

static void node_stop(struct node *nd)
{
  int status;
  if (nd->to)
    fclose(nd->to);
  if (nd->from)
    fclose(nd->from);
  if (nd->pid > 0)
    waitpid(nd->pid, &status, 0);
  memset(nd, 0, sizeof(*nd));
}

/* Reads one JSON line from node; NULL at EOF or on garbage. */
static json_t *node_read(struct node *nd, char **line, size_t *cap)
{
  json_error_t err;
  if (getline(line, cap, nd->from) <= 0)
    return NULL;
  return json_loads(*line, 0, &err);
}

/* ======== The test ======== */

static const char *find_header(const struct kcld_sigv4_result *res,
                               const char *prefix)
{
  for (size_t i = 0; res->headers[i]; i++)
    if (strncmp(res->headers[i], prefix, strlen(prefix)) == 0)
      return res->headers[i] + strlen(prefix);
  return NULL;
}

static int has_repeat(const struct greq *g)
{
  for (size_t a = 0; a < g->n; a++)
    for (size_t b = a + 1; b < g->n; b++)
      if (strcasecmp(g->name[a], g->name[b]) == 0)
        return 1;
  return 0;
}

static const char *or_dash(const char *s)
{
  return s ? s : "-";
}

static int same_opt(const char *a, const char *b)
{
  return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void test_crosscheck(void **state)
{
  (void)state;
  char script[4096], probe[4096];
  struct stat st;
  struct node nd;

  snprintf(script, sizeof(script), "%s/tests/emulators/sigv4-crosscheck.js",
           kcld_test_root());
  snprintf(probe, sizeof(probe),
           "%s/tests/emulators/node_modules/@smithy/signature-v4/package.json",
           kcld_test_root());
  if (stat(probe, &st) != 0) {
    fprintf(stderr, "@smithy/signature-v4 is not installed in "
            "tests/emulators/node_modules: cross-check skipped\n");
    skip();
  }
  snprintf(probe, sizeof(probe),
           "%s/tests/emulators/node_modules/@aws-crypto/sha256-js/"
           "package.json", kcld_test_root());
  if (stat(probe, &st) != 0) {
    fprintf(stderr, "@aws-crypto/sha256-js is not installed in "
            "tests/emulators/node_modules: cross-check skipped\n");
    skip();
  }
  int err = node_start(&nd, script);
  if (err != 0) {
    fprintf(stderr, "node cannot be run (%s): cross-check skipped\n",
            strerror(err));
    skip();
  }

  uint64_t seed = DEFAULT_SEED;
  const char *env = getenv("KCLD_SIGV4_SEED");
  if (env && *env)
    seed = strtoull(env, NULL, 0);
  s_rng = seed;
  for (size_t i = 0; i < 3; i++) {
    for (size_t k = 0; k < 40; k++)
      s_secrets[i][k] = s_b64[pick(64)];
    s_secrets[i][40] = '\0';
  }

  char *line = NULL;
  size_t cap = 0;
  json_t *hello = node_read(&nd, &line, &cap);
  const char *version = json_string_value(json_object_get(hello, "version"));
  int ready = json_is_true(json_object_get(hello, "ready"));
  char smithy[64];
  snprintf(smithy, sizeof(smithy), "%s", version ? version : "?");
  json_decref(hello);
  if (!ready)
    fprintf(stderr, "%s did not start (its stderr is above)\n", script);

  struct kcld_sigv4 *signers[5][5] = {{NULL}};
  size_t matched = 0, done = 0, shown = 0, with_token = 0, with_query = 0,
         with_body = 0, repeated = 0;
  for (size_t id = 0; ready && id < N_REQUESTS; id++) {
    struct greq g;
    struct kcld_sigv4_header h[MAX_HEADERS];
    struct kcld_sigv4_result res;
    gen_request(&g);
    for (size_t i = 0; i < g.n; i++)
      h[i] = (struct kcld_sigv4_header){g.name[i], g.value[i]};
    struct kcld_sigv4 **s = &signers[g.region][g.service];
    if (!*s)
      *s = kcld_sigv4_new(s_regions[g.region], s_services[g.service]);
    struct kcld_creds creds = {(char *)g.akid, (char *)g.secret, g.token, 0};
    struct kcld_sigv4_request req = {
      .method = g.method, .path = g.path, .query = g.query,
      .headers = h, .n_headers = g.n, .body = g.body,
      .body_len = g.body_len, .normalize_path = 1,
      .sign_body_header = g.sign_body,
    };
    int rc = kcld_sigv4_sign(*s, &creds, g.time, &req, &res);

    json_t *j = greq_json(&g, id);
    char *text = json_dumps(j, JSON_COMPACT);
    fprintf(nd.to, "%s\n", text);
    fflush(nd.to);
    json_t *ans = node_read(&nd, &line, &cap);
    if (!ans) {
      fprintf(stderr, "request %zu: no answer from node\n", id);
      ready = 0;
    } else {
      done++;
      const char *authz = json_string_value(json_object_get(ans,
                                                            "authorization"));
      int ok = rc == 0 && authz &&
               same_opt(find_header(&res, "Authorization: "), authz) &&
               same_opt(res.amz_date, json_string_value(
                          json_object_get(ans, "amz_date"))) &&
               same_opt(find_header(&res, "X-Amz-Security-Token: "),
                        json_string_value(json_object_get(ans, "token"))) &&
               same_opt(find_header(&res, "x-amz-content-sha256: "),
                        json_string_value(json_object_get(ans,
                                                          "content_sha256")));
      if (ok) {
        matched++;
      } else if (shown++ < SHOW_MISMATCHES) {
        fprintf(stderr, "request %zu differs (kcld rc %d)\n  request: %s\n"
                "  kcld:   %s\n  smithy: %s\n--- kcld canonical request\n%s\n"
                "--- smithy canonical request\n%s\n--- smithy error\n%s\n",
                id, rc, text, or_dash(find_header(&res, "Authorization: ")),
                or_dash(authz), or_dash(res.canonical_request),
                or_dash(json_string_value(json_object_get(ans, "creq"))),
                or_dash(json_string_value(json_object_get(ans, "error"))));
      }
      with_token += g.token != NULL;
      with_query += json_array_size(g.pairs) > 0;
      with_body += g.body_len > 0;
      repeated += has_repeat(&g);
    }
    json_decref(ans);
    free(text);
    json_decref(j);
    kcld_sigv4_result_clean_up(&res);
    greq_free(&g);
  }

  unsigned long derivations = 0;
  for (size_t a = 0; a < 5; a++)
    for (size_t b = 0; b < 5; b++) {
      derivations += kcld_sigv4_key_derivations(signers[a][b]);
      kcld_sigv4_free(signers[a][b]);
    }
  free(line);
  node_stop(&nd);

  printf("sigv4 cross-check: seed 0x%016llx, %zu/%d requests signed "
         "identically by kcld and @smithy/signature-v4 %s (%zu with a session "
         "token, %zu with a query, %zu with a body, %zu with a repeated "
         "header; %lu key derivations)\n",
         (unsigned long long)seed, matched, N_REQUESTS, smithy, with_token,
         with_query, with_body, repeated, derivations);
  assert_int_equal(done, N_REQUESTS);
  assert_int_equal(matched, N_REQUESTS);
}

int main(void)
{
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_crosscheck),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
