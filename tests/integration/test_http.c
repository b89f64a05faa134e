/* test_http.c — the curl-multi-on-libuv client against the fault endpoint:
 * status, headers and dates come through; concurrent requests share
 * keep-alive connections, as many as max_connections allows (one the
 * server closes while idle is let go quietly); large bodies
 * both ways; a body written into the caller's buffer; timeouts, refused and
 * broken connections become transport errors; TLS is verified (and a CA
 * file can be given); proxy variables apply; cancel and close run every
 * callback exactly once; the loop always closes clean. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "../harness/fault.h"
#include "../harness/harness.h"
#include "../harness/tls.h"
#include "aws/http.h"
#include "err.h"

static struct kcld_emu s_emu;
static const char *s_fault, *s_proxy;

/* What one request's callback saw. */
struct result {
  int calls;
  int err;
  long status;
  char *body;
  size_t body_len;
  time_t server_date;
  char content_type[128];
  char error_type[256];
  char errmsg[256];
};

static void on_done(const struct kcld_http_response *resp, void *arg)
{
  struct result *r = arg;
  r->calls++;
  r->err = resp->err;
  r->status = resp->status;
  free(r->body);
  r->body = malloc(resp->body_len + 1);
  assert_non_null(r->body);
  memcpy(r->body, resp->body, resp->body_len + 1);
  r->body_len = resp->body_len;
  r->server_date = resp->server_date;
  snprintf(r->content_type, sizeof(r->content_type), "%s",
           resp->content_type);
  snprintf(r->error_type, sizeof(r->error_type), "%s", resp->error_type);
  snprintf(r->errmsg, sizeof(r->errmsg), "%s", resp->errmsg);
}

static void result_free(struct result *r)
{
  free(r->body);
  r->body = NULL;
}

static const char *const s_json_headers[] = {
  "Content-Type: application/x-amz-json-1.1",
  "X-Amz-Target: Kinesis_20131202.ListStreams", "X-Test: yes", NULL};

static void post(struct kcld_http *http, const char *url, const char *body,
                 long timeout_ms, struct result *r)
{
  struct kcld_http_request req = {
    .method = "POST", .url = url, .headers = s_json_headers, .body = body,
    .body_len = body ? strlen(body) : 0, .timeout_ms = timeout_ms};
  assert_int_equal(kcld_http_send(http, &req, on_done, r), 0);
}

static int setup(void **state)
{
  (void)state;
  if (kcld_emu_start(&s_emu, "fault proxy") != 0)
    return -1;
  s_fault = kcld_emu_url(&s_emu, "fault");
  s_proxy = kcld_emu_url(&s_emu, "proxy");
  return s_fault && s_proxy ? 0 : -1;
}

static int teardown(void **state)
{
  (void)state;
  kcld_emu_stop(&s_emu);
  kcld_http_global_cleanup();
  return 0;
}

static struct kcld_http *client(uv_loop_t *loop,
                                const struct kcld_http_opts *opts)
{
  struct kcld_http *http = NULL;
  assert_int_equal(uv_loop_init(loop), 0);
  assert_int_equal(kcld_http_new(loop, opts, &http), 0);
  return http;
}

static void finish(uv_loop_t *loop, struct kcld_http *http)
{
  kcld_http_close(http);
  kcld_test_loop_finish(loop);
}

/* ======== Answers come through whole ======== */

static void test_status_headers_date(void **state)
{
  (void)state;
  uv_loop_t loop;
  struct kcld_http *http = client(&loop, NULL);
  struct result r = {0}, echo = {0};

  assert_int_equal(kcld_fault_script(s_fault,
    "{\"steps\":[{\"status\":404,\"skew_seconds\":600,"
    "\"body\":{\"__type\":\"ResourceNotFoundException\",\"message\":\"no\"},"
    "\"headers\":{\"x-amzn-ErrorType\":"
    "\"ResourceNotFoundException:http://internal.amazon.com/\"}},"
    "{\"echo\":\"headers\"}]}"), 0);
  post(http, s_fault, "{\"a\":1}", 0, &r);
  assert_int_equal(kcld_http_pending(http), 1);
  assert_true(kcld_test_run_until(&loop, &r.calls, 10000));
  assert_int_equal(r.err, 0);
  assert_int_equal(r.status, 404);
  assert_string_equal(r.body,
    "{\"__type\":\"ResourceNotFoundException\",\"message\":\"no\"}");
  assert_string_equal(r.error_type,
                      "ResourceNotFoundException:http://internal.amazon.com/");
  assert_string_equal(r.content_type, "application/x-amz-json-1.1");
  assert_string_equal(r.errmsg, "");
  /* The Date header is parsed: the endpoint's clock ran 600 s ahead. */
  long off = (long)(r.server_date - time(NULL));
  assert_true(off > 590 && off < 610);

  /* What went on the wire: our headers, no Expect, a User-Agent. */
  post(http, s_fault, "{\"b\":2}", 0, &echo);
  assert_true(kcld_test_run_until(&loop, &echo.calls, 10000));
  assert_int_equal(echo.err, 0);
  assert_int_equal(echo.status, 200);
  json_t *j = json_loads(echo.body, 0, NULL);
  assert_non_null(j);
  json_t *h = json_object_get(j, "headers");
  assert_string_equal(json_string_value(json_object_get(j, "method")), "POST");
  assert_int_equal(json_integer_value(json_object_get(j, "body_length")), 7);
  assert_string_equal(json_string_value(json_object_get(h, "x-amz-target")),
                      "Kinesis_20131202.ListStreams");
  assert_string_equal(json_string_value(json_object_get(h, "x-test")), "yes");
  assert_null(json_object_get(h, "expect"));
  assert_true(strncmp(json_string_value(json_object_get(h, "user-agent")),
                      "kcld/", 5) == 0);
  assert_string_equal(echo.error_type, ""); /* absent header -> "" */
  assert_int_equal(echo.calls, 1);
  assert_int_equal(r.calls, 1);
  json_decref(j);
  result_free(&r);
  result_free(&echo);
  finish(&loop, http);
}

/* A GET without a body, a PUT with an empty one (the IMDS token shape). */
static void test_methods(void **state)
{
  (void)state;
  uv_loop_t loop;
  struct kcld_http *http = client(&loop, NULL);
  struct result g = {0}, p = {0};
  const char *const hdr[] = {"X-aws-ec2-metadata-token-ttl-seconds: 60", NULL};

  assert_int_equal(kcld_fault_script(s_fault,
    "{\"steps\":[{\"echo\":\"headers\",\"times\":2}]}"), 0);
  struct kcld_http_request get = {.method = "GET", .url = s_fault};
  struct kcld_http_request put = {.method = "PUT", .url = s_fault,
                                  .headers = hdr};
  assert_int_equal(kcld_http_send(http, &get, on_done, &g), 0);
  assert_true(kcld_test_run_until(&loop, &g.calls, 10000));
  assert_int_equal(kcld_http_send(http, &put, on_done, &p), 0);
  assert_true(kcld_test_run_until(&loop, &p.calls, 10000));
  json_t *jg = json_loads(g.body, 0, NULL), *jp = json_loads(p.body, 0, NULL);
  assert_non_null(jg);
  assert_non_null(jp);
  assert_string_equal(json_string_value(json_object_get(jg, "method")), "GET");
  assert_string_equal(json_string_value(json_object_get(jp, "method")), "PUT");
  assert_string_equal(json_string_value(json_object_get(
    json_object_get(jp, "headers"), "content-length")), "0");
  assert_string_equal(json_string_value(json_object_get(
    json_object_get(jp, "headers"), "x-aws-ec2-metadata-token-ttl-seconds")),
    "60");
  json_decref(jg);
  json_decref(jp);
  result_free(&g);
  result_free(&p);
  finish(&loop, http);
}

/* ======== One connection pool ======== */

#define WAVE 32

struct wave {
  struct result r[WAVE];
  int done;
};

static void on_wave(const struct kcld_http_response *resp, void *arg)
{
  struct result *r = arg;
  on_done(resp, r);
}

static void run_wave(uv_loop_t *loop, struct kcld_http *http, struct wave *w)
{
  memset(w, 0, sizeof(*w));
  for (int i = 0; i < WAVE; i++) {
    struct kcld_http_request req = {.method = "POST", .url = s_fault,
                                    .headers = s_json_headers, .body = "{}",
                                    .body_len = 2};
    assert_int_equal(kcld_http_send(http, &req, on_wave, &w->r[i]), 0);
  }
  assert_int_equal(kcld_http_pending(http), WAVE);
  while (kcld_http_pending(http) > 0) {
    int never = 0;
    kcld_test_run_until(loop, &never, 100);
  }
  for (int i = 0; i < WAVE; i++) {
    assert_int_equal(w->r[i].calls, 1);
    assert_int_equal(w->r[i].err, 0);
    assert_int_equal(w->r[i].status, 200);
    result_free(&w->r[i]);
  }
}

static void test_concurrent_reuse(void **state)
{
  (void)state;
  uv_loop_t loop;
  struct kcld_http *http = client(&loop, NULL);
  struct wave w;

  /* The first wave is held 150 ms at the endpoint, so all are in flight at
   * once and each needs a connection of its own. */
  assert_int_equal(kcld_fault_script(s_fault,
    "{\"steps\":[{\"delay_ms\":150,\"times\":32}]}"), 0);
  assert_int_equal(kcld_http_spare_requests(http), 0);
  run_wave(&loop, http, &w);
  long first = kcld_fault_count(s_fault, "data_connections", NULL);
  assert_true(first > 1 && first <= WAVE);
  /* The wave's request structs are kept for the next (at most 32). */
  assert_int_equal(kcld_http_spare_requests(http), WAVE);
  /* Two more waves: every request rides a pooled connection, in a kept
   * struct (the spare list neither grows nor leaks: ASan). */
  run_wave(&loop, http, &w);
  run_wave(&loop, http, &w);
  assert_int_equal(kcld_http_spare_requests(http), WAVE);
  assert_int_equal(kcld_fault_count(s_fault, "total", NULL), 3 * WAVE);
  assert_int_equal(kcld_fault_count(s_fault, "data_connections", NULL),
                   first);
  finish(&loop, http);
}

/* Freed request structs are kept for the next requests, 32 at most:
 * requests in flight take them, and more than 32 finishing keep 32. */
static void test_spare_requests(void **state)
{
  (void)state;
  uv_loop_t loop;
  struct kcld_http *http = client(&loop, NULL);
  struct result r[40];

  memset(r, 0, sizeof(r));
  for (int i = 0; i < 40; i++)
    post(http, s_fault, "{}", 0, &r[i]);
  while (kcld_http_pending(http) > 0) {
    int never = 0;
    kcld_test_run_until(&loop, &never, 100);
  }
  assert_int_equal(kcld_http_spare_requests(http), 32);
  for (int i = 0; i < 5; i++) {
    result_free(&r[i]);
    memset(&r[i], 0, sizeof(r[i]));
    post(http, s_fault, "{}", 0, &r[i]);
  }
  assert_int_equal(kcld_http_spare_requests(http), 27);
  while (kcld_http_pending(http) > 0) {
    int never = 0;
    kcld_test_run_until(&loop, &never, 100);
  }
  assert_int_equal(kcld_http_spare_requests(http), 32);
  for (int i = 0; i < 40; i++) {
    assert_int_equal(r[i].calls, 1);
    assert_int_equal(r[i].status, 200);
    result_free(&r[i]);
  }
  finish(&loop, http); /* the kept ones are freed: ASan */
}

/* The connection cache keeps max_connections idle connections: a wave of
 * concurrent requests larger than it opens new ones, and raising it lets
 * the next waves reuse them all. */
static void test_max_connections(void **state)
{
  (void)state;
  uv_loop_t loop;
  struct kcld_http_opts o = {.max_connections = 4};
  struct kcld_http *http = client(&loop, &o);
  struct wave w;

  /* Four waves, each held at the endpoint so all 32 are in flight at once;
   * the endpoint counts the distinct connections used. */
  assert_int_equal(kcld_fault_script(s_fault,
    "{\"steps\":[{\"delay_ms\":150,\"times\":128}]}"), 0);
  assert_int_equal(kcld_http_max_connections(http), 4);
  run_wave(&loop, http, &w);
  long first = kcld_fault_count(s_fault, "data_connections", NULL);
  assert_true(first > 4);
  /* Only 4 were kept: the second wave opens new ones. */
  run_wave(&loop, http, &w);
  long second = kcld_fault_count(s_fault, "data_connections", NULL);
  assert_true(second >= first + (first - 4));
  /* Room for all: after one wave fills the cache, the next opens none. */
  assert_int_equal(kcld_http_set_max_connections(http, 64), 0);
  assert_int_equal(kcld_http_max_connections(http), 64);
  assert_int_equal(kcld_http_set_max_connections(http, 0), KCLD_EINVAL);
  run_wave(&loop, http, &w);
  long third = kcld_fault_count(s_fault, "data_connections", NULL);
  assert_true(third > second);
  run_wave(&loop, http, &w);
  assert_int_equal(kcld_fault_count(s_fault, "data_connections", NULL),
                   third);
  finish(&loop, http);
}

/* ======== Kept connections closed by the server ======== */

static void count_turn(uv_prepare_t *h)
{
  (*(int *)h->data)++;
}

/* A kept connection goes on being watched between transfers (its next one
 * then costs no epoll_ctl); when the server closes it meanwhile, the loop
 * stops watching it rather than waking on every turn for it, and the next
 * request finds it gone and opens a new one. */
static void test_kept_connection_closed(void **state)
{
  (void)state;
  uv_loop_t loop;
  uv_prepare_t turns;
  struct kcld_http *http = client(&loop, NULL);
  struct result r = {0};
  int n_turns = 0, never = 0;

  assert_int_equal(kcld_fault_script(s_fault,
    "{\"steps\":[],\"keep_alive_ms\":50}"), 0);
  post(http, s_fault, "{}", 0, &r);
  kcld_test_run_until(&loop, &r.calls, 5000);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.status, 200);
  assert_int_equal(kcld_fault_count(s_fault, "data_connections", NULL), 1);

  /* The endpoint closes the idle connection (after ~1 s: Node adds 1 s to
   * keep_alive_ms); then the loop runs 200 ms more: woken on every turn by
   * the closed socket it would turn thousands of times, where the
   * harness's 5 ms tick makes ~40. */
  for (int i = 0; i < 100 &&
                  kcld_fault_count(s_fault, "open_data_connections", NULL) != 0;
       i++)
    kcld_test_run_until(&loop, &never, 50);
  assert_int_equal(kcld_fault_count(s_fault, "open_data_connections", NULL),
                   0);
  assert_int_equal(uv_prepare_init(&loop, &turns), 0);
  turns.data = &n_turns;
  assert_int_equal(uv_prepare_start(&turns, count_turn), 0);
  kcld_test_run_until(&loop, &never, 200);
  uv_prepare_stop(&turns);
  assert_true(n_turns < 120);

  result_free(&r);
  memset(&r, 0, sizeof(r));
  post(http, s_fault, "{}", 0, &r);
  kcld_test_run_until(&loop, &r.calls, 5000);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.err, 0);
  assert_int_equal(r.status, 200);
  assert_int_equal(kcld_fault_count(s_fault, "data_connections", NULL), 2);
  result_free(&r);
  uv_close((uv_handle_t *)&turns, NULL);
  assert_int_equal(kcld_fault_script(s_fault, "{\"steps\":[]}"), 0);
  finish(&loop, http);
}

/* ======== Bodies into the caller's buffer ======== */

static int s_reserves;

static int count_reserve(struct kcld_http_body *b, size_t need)
{
  char *n = realloc(b->p, need);
  if (!n)
    return KCLD_ENOMEM;
  s_reserves++;
  b->p = n;
  b->cap = need;
  return 0;
}

/* The body lands in the caller's buffer, sized once from Content-Length,
 * and the next answer reuses it without growing it. */
static void test_body_into(void **state)
{
  (void)state;
  uv_loop_t loop;
  struct kcld_http *http = client(&loop, NULL);
  struct kcld_http_body into = {.reserve = count_reserve};
  const char *seen[2];

  assert_int_equal(kcld_fault_script(s_fault,
    "{\"steps\":[{\"body_bytes\":300000},{\"body_bytes\":200000}]}"),
    0);
  for (int i = 0; i < 2; i++) {
    struct result r = {0};
    struct kcld_http_request req = {.method = "POST", .url = s_fault,
                                    .headers = s_json_headers, .body = "{}",
                                    .body_len = 2, .body_into = &into};
    assert_int_equal(kcld_http_send(http, &req, on_done, &r), 0);
    assert_true(kcld_test_run_until(&loop, &r.calls, 10000));
    assert_int_equal(r.err, 0);
    assert_int_equal(r.body_len, i == 0 ? 300000 : 200000);
    assert_int_equal(into.len, r.body_len);
    assert_int_equal(into.p[into.len], '\0');
    assert_memory_equal(into.p, r.body, r.body_len);
    seen[i] = into.p;
    result_free(&r);
  }
  assert_int_equal(s_reserves, 1);     /* one reserve: Content-Length */
  assert_int_equal(into.cap, 300001);
  assert_ptr_equal(seen[0], seen[1]);  /* reused, not grown */
  free(into.p);
  finish(&loop, http);
}

/* ======== Large bodies ======== */

static void test_big_bodies(void **state)
{
  (void)state;
  uv_loop_t loop;
  struct kcld_http *http = client(&loop, NULL);
  struct result up = {0}, down = {0};
  const size_t up_len = (size_t)16 << 20, down_len = 15000000;
  char *big = malloc(up_len);

  assert_non_null(big);
  for (size_t i = 0; i < up_len; i++)
    big[i] = (char)('A' + (i * 7) % 26);
  assert_int_equal(kcld_fault_script(s_fault,
    "{\"steps\":[{\"echo\":true},{\"body_bytes\":15000000}]}"), 0);
  struct kcld_http_request req = {.method = "POST", .url = s_fault,
                                  .headers = s_json_headers, .body = big,
                                  .body_len = up_len};
  assert_int_equal(kcld_http_send(http, &req, on_done, &up), 0);
  free(big); /* the client copied it */
  assert_true(kcld_test_run_until(&loop, &up.calls, 20000));
  assert_int_equal(up.err, 0);
  assert_int_equal(up.status, 200);
  assert_int_equal(up.body_len, up_len);
  for (size_t i = 0; i < up_len; i++)
    if (up.body[i] != (char)('A' + (i * 7) % 26))
      fail_msg("echoed byte %zu differs", i);

  post(http, s_fault, "{}", 0, &down);
  assert_true(kcld_test_run_until(&loop, &down.calls, 20000));
  assert_int_equal(down.err, 0);
  assert_int_equal(down.body_len, down_len);
  assert_int_equal(strlen(down.body), down_len); /* NUL-terminated */
  json_t *j = json_loadb(down.body, down.body_len, 0, NULL);
  assert_non_null(j);
  const char *pad = json_string_value(json_object_get(j, "pad"));
  assert_non_null(pad);
  assert_int_equal(strlen(pad), down_len - 10);
  for (size_t i = 0; pad[i]; i++)
    if (pad[i] != (char)('a' + i % 26))
      fail_msg("pad byte %zu differs", i);
  json_decref(j);
  result_free(&up);
  result_free(&down);
  finish(&loop, http);
}

/* ======== Failures ======== */

static void test_timeouts(void **state)
{
  (void)state;
  uv_loop_t loop;
  struct kcld_http_opts opts = {.timeout_ms = 300};
  struct kcld_http *http = client(&loop, &opts);
  struct result a = {0}, b = {0};

  assert_int_equal(kcld_fault_script(s_fault,
    "{\"steps\":[{\"delay_ms\":5000,\"times\":2}]}"), 0);
  uint64_t t0 = uv_hrtime();
  post(http, s_fault, "{}", 0, &a);    /* client default: 300 ms */
  post(http, s_fault, "{}", 600, &b);  /* per request: 600 ms */
  assert_true(kcld_test_run_until(&loop, &a.calls, 10000));
  uint64_t ta = (uv_hrtime() - t0) / 1000000;
  assert_true(kcld_test_run_until(&loop, &b.calls, 10000));
  uint64_t tb = (uv_hrtime() - t0) / 1000000;
  assert_int_equal(a.err, KCLD_ETIMEDOUT);
  assert_int_equal(b.err, KCLD_ETIMEDOUT);
  assert_int_equal(a.status, 0);
  assert_true(a.errmsg[0] != '\0');
  assert_true(ta >= 250 && ta < 2000);
  assert_true(tb >= 550 && tb < 2500);
  assert_int_equal(a.calls, 1);
  assert_int_equal(b.calls, 1);
  result_free(&a);
  result_free(&b);
  finish(&loop, http);
}

static int free_port(void)
{
  uv_loop_t loop;
  uv_tcp_t tcp;
  struct sockaddr_in addr;
  struct sockaddr_storage name;
  int len = sizeof(name);

  assert_int_equal(uv_loop_init(&loop), 0);
  uv_tcp_init(&loop, &tcp);
  uv_ip4_addr("127.0.0.1", 0, &addr);
  assert_int_equal(uv_tcp_bind(&tcp, (struct sockaddr *)&addr, 0), 0);
  uv_tcp_getsockname(&tcp, (struct sockaddr *)&name, &len);
  uv_close((uv_handle_t *)&tcp, NULL);
  kcld_test_loop_finish(&loop);
  return ntohs(((struct sockaddr_in *)&name)->sin_port);
}

static void test_connection_refused(void **state)
{
  (void)state;
  uv_loop_t loop;
  struct kcld_http *http = client(&loop, NULL);
  struct result r = {0};
  char url[64];

  snprintf(url, sizeof(url), "http://127.0.0.1:%d/", free_port());
  post(http, url, "{}", 0, &r);
  assert_true(kcld_test_run_until(&loop, &r.calls, 10000));
  assert_int_equal(r.err, KCLD_ETRANSPORT);
  assert_int_equal(r.status, 0);
  assert_non_null(strstr(r.errmsg, "onnect"));
  assert_int_equal(r.body_len, 0);
  result_free(&r);
  finish(&loop, http);
}

static void test_broken_answers(void **state)
{
  (void)state;
  uv_loop_t loop;
  struct kcld_http *http = client(&loop, NULL);
  struct result r[3] = {{0}};

  assert_int_equal(kcld_fault_script(s_fault,
    "{\"steps\":[{\"close\":true},{\"close\":\"mid\"},{\"truncate\":true}]}"),
    0);
  for (int i = 0; i < 3; i++) {
    post(http, s_fault, "{}", 0, &r[i]);
    assert_true(kcld_test_run_until(&loop, &r[i].calls, 10000));
    assert_int_equal(r[i].err, KCLD_ETRANSPORT);
    assert_int_equal(r[i].status, 0);
    assert_true(r[i].errmsg[0] != '\0');
    result_free(&r[i]);
  }
  assert_int_equal(kcld_fault_count(s_fault, "steps_used", NULL), 3);
  finish(&loop, http);
}

/* ======== TLS ======== */

static void test_tls_verified(void **state)
{
  (void)state;
  char *cert, *key, ca_path[] = "/tmp/kcld-test-ca-XXXXXX";
  assert_int_equal(kcld_test_make_cert(&cert, &key), 0);
  json_t *req = json_pack("{s:s,s:s}", "cert", cert, "key", key);
  char *body = json_dumps(req, 0);
  json_t *ans = kcld_fault_post(s_fault, "/__fault/tls", body);
  assert_non_null(ans);
  char *tls_url = strdup(json_string_value(json_object_get(ans, "url")));
  assert_true(strncmp(tls_url, "https://127.0.0.1:", 18) == 0);
  int fd = mkstemp(ca_path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, cert, strlen(cert)), (ssize_t)strlen(cert));
  close(fd);
  assert_int_equal(kcld_fault_script(s_fault, "{\"steps\":[]}"), 0);

  /* The system store does not know this certificate: refused. */
  uv_loop_t loop;
  struct kcld_http *http = client(&loop, NULL);
  struct result r = {0};
  post(http, tls_url, "{}", 0, &r);
  assert_true(kcld_test_run_until(&loop, &r.calls, 10000));
  assert_int_equal(r.err, KCLD_ETRANSPORT);
  assert_non_null(strcasestr(r.errmsg, "certificate"));
  result_free(&r);
  finish(&loop, http);
  assert_int_equal(kcld_fault_count(s_fault, "total", NULL), 0);

  /* With the CA file configured the same endpoint is trusted. */
  struct kcld_http_opts opts = {.ca_file = ca_path};
  http = client(&loop, &opts);
  memset(&r, 0, sizeof(r));
  post(http, tls_url, "{}", 0, &r);
  assert_true(kcld_test_run_until(&loop, &r.calls, 10000));
  assert_int_equal(r.err, 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "{}");
  result_free(&r);
  finish(&loop, http);
  assert_int_equal(kcld_fault_count(s_fault, "total", NULL), 1);

  /* Without the option: AWS_CA_BUNDLE, then the profile's ca_bundle. */
  char cfg_path[] = "/tmp/kcld-test-config-XXXXXX", text[128];
  int cfd = mkstemp(cfg_path);
  assert_true(cfd >= 0);
  snprintf(text, sizeof(text), "[profile tls]\nca_bundle = %s\n", ca_path);
  assert_int_equal(write(cfd, text, strlen(text)), (ssize_t)strlen(text));
  close(cfd);
  for (int i = 0; i < 2; i++) {
    struct kcld_http_opts popts = {.profile = "tls"};
    if (i == 0)
      setenv("AWS_CA_BUNDLE", ca_path, 1);
    else
      setenv("AWS_CONFIG_FILE", cfg_path, 1);
    http = client(&loop, i == 0 ? NULL : &popts);
    unsetenv("AWS_CA_BUNDLE");
    unsetenv("AWS_CONFIG_FILE");
    memset(&r, 0, sizeof(r));
    post(http, tls_url, "{}", 0, &r);
    assert_true(kcld_test_run_until(&loop, &r.calls, 10000));
    assert_int_equal(r.err, 0);
    assert_int_equal(r.status, 200);
    result_free(&r);
    finish(&loop, http);
  }
  assert_int_equal(kcld_fault_count(s_fault, "total", NULL), 3);
  unlink(cfg_path);

  unlink(ca_path);
  free(tls_url);
  json_decref(ans);
  free(body);
  json_decref(req);
  free(cert);
  free(key);
}

/* ======== Proxy variables ======== */

static void test_proxy_env(void **state)
{
  (void)state;
  uv_loop_t loop;
  struct kcld_http *http;
  struct result r = {0};
  char *saved[4];
  const char *names[4] = {"http_proxy", "no_proxy", "NO_PROXY", "ALL_PROXY"};

  for (int i = 0; i < 4; i++) {
    const char *v = getenv(names[i]);
    saved[i] = v ? strdup(v) : NULL;
    unsetenv(names[i]);
  }
  setenv("http_proxy", s_fault, 1);
  assert_int_equal(kcld_fault_script(s_fault,
    "{\"steps\":[{\"echo\":\"headers\"}]}"), 0);
  http = client(&loop, NULL);
  /* The name does not resolve; only a proxy can answer. */
  post(http, "http://kinesis.example.invalid/", "{}", 0, &r);
  assert_true(kcld_test_run_until(&loop, &r.calls, 10000));
  for (int i = 0; i < 4; i++) {
    if (saved[i])
      setenv(names[i], saved[i], 1);
    else
      unsetenv(names[i]);
    free(saved[i]);
  }
  assert_int_equal(r.err, 0);
  assert_int_equal(r.status, 200);
  json_t *j = json_loads(r.body, 0, NULL);
  assert_non_null(j);
  assert_string_equal(json_string_value(json_object_get(j, "url")),
                      "http://kinesis.example.invalid/");
  json_decref(j);
  result_free(&r);
  finish(&loop, http);
}

/* Every proxy variable unset, the old values kept in `saved`. */
static const char *const s_proxy_vars[] = {
  "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy",
  "NO_PROXY", "ALL_PROXY", "all_proxy"};
#define N_PROXY_VARS (sizeof(s_proxy_vars) / sizeof(s_proxy_vars[0]))

static void proxy_vars_save(char **saved)
{
  for (size_t i = 0; i < N_PROXY_VARS; i++) {
    const char *v = getenv(s_proxy_vars[i]);
    saved[i] = v ? strdup(v) : NULL;
    unsetenv(s_proxy_vars[i]);
  }
}

static void proxy_vars_restore(char **saved)
{
  for (size_t i = 0; i < N_PROXY_VARS; i++) {
    if (saved[i])
      setenv(s_proxy_vars[i], saved[i], 1);
    else
      unsetenv(s_proxy_vars[i]);
    free(saved[i]);
  }
}

/* How many entries of the proxy's `list` ("forwarded" or "connects") hold
 * `needle`; the stats are reset after. */
static int proxy_saw(const char *list, const char *needle)
{
  json_t *st = kcld_fault_post(s_proxy, "/__stats", NULL), *e;
  size_t i;
  int n = 0;
  assert_non_null(st);
  json_array_foreach(json_object_get(st, list), i, e)
    n += strstr(json_string_value(e), needle) != NULL;
  json_decref(st);
  json_decref(kcld_fault_post(s_proxy, "/__reset", NULL));
  return n;
}

/* One request to `url` with only proxy variable `var` = `value` (and
 * `var2` = `value2` when not NULL) set; `no_proxy` as the request's flag. */
static void through(const char *var, const char *value, const char *var2,
                    const char *value2, const char *url, int no_proxy,
                    struct result *r)
{
  uv_loop_t loop;
  struct kcld_http *http;
  struct kcld_http_request req = {.method = "POST", .url = url,
                                  .headers = s_json_headers, .body = "{}",
                                  .body_len = 2, .no_proxy = no_proxy};
  setenv(var, value, 1);
  if (var2)
    setenv(var2, value2, 1);
  http = client(&loop, NULL);
  unsetenv(var);
  if (var2)
    unsetenv(var2);
  memset(r, 0, sizeof(*r));
  assert_int_equal(kcld_http_send(http, &req, on_done, r), 0);
  assert_true(kcld_test_run_until(&loop, &r->calls, 10000));
  finish(&loop, http);
}

static void test_proxy_spellings(void **state)
{
  char *saved[N_PROXY_VARS], url[160], host[80];
  struct result r;
  (void)state;
  proxy_vars_save(saved);
  assert_int_equal(kcld_fault_script(s_fault, "{\"steps\":[],\"then\":"
                                              "\"ok\"}"), 0);
  json_decref(kcld_fault_post(s_proxy, "/__reset", NULL));
  snprintf(url, sizeof(url), "%s/", s_fault);
  snprintf(host, sizeof(host), "%s", s_fault + strlen("http://"));

  /* Plain HTTP: both spellings (curl alone reads only http_proxy). */
  through("http_proxy", s_proxy, NULL, NULL, url, 0, &r);
  assert_int_equal(r.status, 200);
  assert_int_equal(proxy_saw("forwarded", url), 1);
  result_free(&r);
  through("HTTP_PROXY", s_proxy, NULL, NULL, url, 0, &r);
  assert_int_equal(r.status, 200);
  assert_int_equal(proxy_saw("forwarded", url), 1);
  result_free(&r);

  /* HTTPS: a CONNECT tunnel, in both spellings (the endpoint behind it is
   * plain HTTP, so TLS then fails: the tunnel is what counts). */
  snprintf(url, sizeof(url), "https://%s/", host);
  through("https_proxy", s_proxy, NULL, NULL, url, 0, &r);
  assert_int_equal(r.err, KCLD_ETRANSPORT);
  assert_int_equal(proxy_saw("connects", host), 1);
  result_free(&r);
  through("HTTPS_PROXY", s_proxy, NULL, NULL, url, 0, &r);
  assert_int_equal(proxy_saw("connects", host), 1);
  result_free(&r);

  /* no_proxy in both spellings, and the request's own flag (metadata):
   * straight to the endpoint. */
  snprintf(url, sizeof(url), "%s/", s_fault);
  through("http_proxy", s_proxy, "no_proxy", "127.0.0.1", url, 0, &r);
  assert_int_equal(r.status, 200);
  result_free(&r);
  through("HTTP_PROXY", s_proxy, "NO_PROXY", "127.0.0.1", url, 0, &r);
  assert_int_equal(r.status, 200);
  result_free(&r);
  through("http_proxy", s_proxy, NULL, NULL, url, 1, &r);
  assert_int_equal(r.status, 200);
  result_free(&r);
  assert_int_equal(proxy_saw("forwarded", url), 0);
  proxy_vars_restore(saved);
}

/* ======== Cancel and close ======== */

static void test_cancel_one(void **state)
{
  (void)state;
  uv_loop_t loop;
  struct kcld_http *http = client(&loop, NULL);
  struct result a = {0}, b = {0};

  assert_int_equal(kcld_fault_script(s_fault,
    "{\"steps\":[{\"delay_ms\":300,\"times\":2}]}"), 0);
  post(http, s_fault, "{}", 0, &a);
  post(http, s_fault, "{}", 0, &b);
  int never = 0;
  kcld_test_run_until(&loop, &never, 50);
  assert_int_equal(kcld_http_cancel(http, on_done, &a), 1);
  assert_int_equal(a.calls, 1); /* before cancel returned */
  assert_int_equal(a.err, KCLD_ECANCELED);
  assert_int_equal(kcld_http_cancel(http, on_done, &a), 0);
  assert_int_equal(kcld_http_pending(http), 1);
  assert_true(kcld_test_run_until(&loop, &b.calls, 10000));
  assert_int_equal(b.err, 0);
  assert_int_equal(b.status, 200);
  assert_int_equal(a.calls, 1);
  result_free(&a);
  result_free(&b);
  finish(&loop, http);
}

#define INFLIGHT 20

struct closing {
  struct kcld_http *http;
  int calls[INFLIGHT];
  int errs[INFLIGHT];
  int resend_rc;
};

static struct closing s_closing;

static void on_cancelled(const struct kcld_http_response *resp, void *arg)
{
  int i = (int)(intptr_t)arg;
  s_closing.calls[i]++;
  s_closing.errs[i] = resp->err;
  assert_string_equal(resp->body, "");
  /* A callback that tries again while the client closes is refused. */
  struct kcld_http_request req = {.method = "GET", .url = s_fault};
  s_closing.resend_rc = kcld_http_send(s_closing.http, &req, on_cancelled,
                                       arg);
}

static void test_close_in_flight(void **state)
{
  (void)state;
  uv_loop_t loop;
  struct kcld_http *http = client(&loop, NULL);

  memset(&s_closing, 0, sizeof(s_closing));
  s_closing.http = http;
  assert_int_equal(kcld_fault_script(s_fault,
    "{\"steps\":[{\"delay_ms\":5000,\"times\":20}]}"), 0);
  for (int i = 0; i < INFLIGHT; i++) {
    struct kcld_http_request req = {.method = "POST", .url = s_fault,
                                    .headers = s_json_headers, .body = "{}",
                                    .body_len = 2};
    assert_int_equal(kcld_http_send(http, &req, on_cancelled,
                                    (void *)(intptr_t)i), 0);
  }
  /* Let the requests reach the endpoint (connections, polls, timer). */
  for (int tries = 0; tries < 100; tries++) {
    int never = 0;
    kcld_test_run_until(&loop, &never, 50);
    if (kcld_fault_count(s_fault, "total", NULL) == INFLIGHT)
      break;
  }
  assert_int_equal(kcld_fault_count(s_fault, "total", NULL), INFLIGHT);
  uint64_t t0 = uv_hrtime();
  kcld_http_close(http);
  for (int i = 0; i < INFLIGHT; i++) {
    assert_int_equal(s_closing.calls[i], 1);
    assert_int_equal(s_closing.errs[i], KCLD_ECANCELED);
  }
  assert_int_equal(s_closing.resend_rc, KCLD_ECANCELED);
  kcld_test_loop_finish(&loop);
  assert_true((uv_hrtime() - t0) / 1000000 < 1000); /* did not wait */
  for (int i = 0; i < INFLIGHT; i++)
    assert_int_equal(s_closing.calls[i], 1);
}

/* Callbacks chain requests, and the last one closes the client from inside
 * its own completion. */
struct chain {
  struct kcld_http *http;
  int left;
  int calls;
  int closed;
};

static void on_chain(const struct kcld_http_response *resp, void *arg)
{
  struct chain *c = arg;
  c->calls++;
  assert_int_equal(resp->err, 0);
  assert_int_equal(resp->status, 200);
  if (--c->left > 0) {
    struct kcld_http_request req = {.method = "POST", .url = s_fault,
                                    .body = "{}", .body_len = 2};
    assert_int_equal(kcld_http_send(c->http, &req, on_chain, c), 0);
  } else {
    kcld_http_close(c->http);
    c->closed = 1;
  }
}

static void test_close_from_callback(void **state)
{
  (void)state;
  uv_loop_t loop;
  struct chain c = {0};

  assert_int_equal(kcld_fault_script(s_fault, "{\"steps\":[]}"), 0);
  c.http = client(&loop, NULL);
  c.left = 5;
  struct kcld_http_request req = {.method = "POST", .url = s_fault,
                                  .body = "{}", .body_len = 2};
  assert_int_equal(kcld_http_send(c.http, &req, on_chain, &c), 0);
  assert_true(kcld_test_run_until(&loop, &c.closed, 10000));
  assert_int_equal(c.calls, 5);
  kcld_test_loop_finish(&loop);
  assert_int_equal(kcld_fault_count(s_fault, "total", NULL), 5);
  /* One connection carried the whole chain. */
  assert_int_equal(kcld_fault_count(s_fault, "data_connections", NULL), 1);
}

static void test_bad_arguments(void **state)
{
  (void)state;
  uv_loop_t loop;
  struct kcld_http *http = NULL;
  struct kcld_http_opts bad = {.timeout_ms = -1};
  struct result r = {0};

  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(kcld_http_new(&loop, &bad, &http), KCLD_EINVAL);
  assert_null(http);
  assert_int_equal(kcld_http_new(NULL, NULL, &http), KCLD_EINVAL);
  assert_int_equal(kcld_http_new(&loop, NULL, &http), 0);
  struct kcld_http_request noreq = {.method = "GET"};
  assert_int_equal(kcld_http_send(http, &noreq, on_done, &r), KCLD_EINVAL);
  struct kcld_http_request nobody = {.method = "POST", .url = s_fault,
                                     .body_len = 3};
  assert_int_equal(kcld_http_send(http, &nobody, on_done, &r), KCLD_EINVAL);
  struct kcld_http_request ok = {.url = s_fault};
  assert_int_equal(kcld_http_send(http, &ok, NULL, &r), KCLD_EINVAL);
  assert_int_equal(kcld_http_pending(http), 0);
  assert_int_equal(r.calls, 0);
  kcld_http_close(http);
  kcld_test_loop_finish(&loop);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_status_headers_date),
    cmocka_unit_test(test_methods),
    cmocka_unit_test(test_concurrent_reuse),
    cmocka_unit_test(test_spare_requests),
    cmocka_unit_test(test_big_bodies),
    cmocka_unit_test(test_timeouts),
    cmocka_unit_test(test_max_connections),
    cmocka_unit_test(test_body_into),
    cmocka_unit_test(test_kept_connection_closed),
    cmocka_unit_test(test_connection_refused),
    cmocka_unit_test(test_broken_answers),
    cmocka_unit_test(test_tls_verified),
    cmocka_unit_test(test_proxy_env),
    cmocka_unit_test(test_proxy_spellings),
    cmocka_unit_test(test_cancel_one),
    cmocka_unit_test(test_close_in_flight),
    cmocka_unit_test(test_close_from_callback),
    cmocka_unit_test(test_bad_arguments),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
