/* test_http_stream.c — streamed answers over HTTP/2 (aws/h2.c), with prior
 * knowledge (h2c) and over TLS (ALPN), against a loopback endpoint
 * (tests/emulators/lib/h2test.js): bytes arrive in order while the answer
 * is still being sent; many streams share one connection, h2c and TLS; a
 * paused stream holds the server back by flow control while another
 * stream on the same connection goes on, and gets everything on resume;
 * cancel resets the stream at once (also from its own data callback); a
 * reset mid-answer hands over what came, then a transport error; an error
 * status is gathered, not streamed;
 * a data callback that takes only part of its bytes pauses the stream and
 * gets the rest first on resume; a plain request never joins the HTTP/2
 * connection of a stream (paused there), over h2c or TLS: it goes over
 * HTTP/1.1 and gets its answer;
 * closing the client ends every stream once; the loop always closes clean. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <jansson.h>
#include <unistd.h>

#include "../harness/fault.h"
#include "../harness/harness.h"
#include "../harness/tls.h"
#include "aws/http.h"
#include "err.h"

static struct kcld_emu s_emu;
static const char *s_url;
static char *s_tls_url;
static char s_ca_path[] = "/tmp/kcld-test-h2ca-XXXXXX";

enum mode { H2C = 1, H2TLS = 2 };

struct strm {
  struct kcld_http_stream *s;
  size_t bytes;          /* received, all checked against the pattern */
  int data_calls;
  int bad;               /* a byte was not the pattern's */
  int done;              /* on_done calls */
  int err;
  long status;
  char *body;            /* on_done's body */
  char error_type[128];
  uint64_t first_ms, done_ms;
  uv_loop_t *loop;
  /* Actions taken from on_data. */
  int pause_at_first;    /* pause on the first bytes */
  int cancel_at_first;   /* cancel from inside on_data */
  int data_while_paused; /* on_data ran while paused: a failure */
  size_t pause_every;    /* pause each time this many more bytes came */
  size_t next_pause;
  int pauses;
  /* A take (kcld_http_take_cb): 0 none, 1 half of each chunk, 2 all. */
  int take;
  size_t taken;          /* bytes it took */
  int take_while_paused; /* it ran while paused: a failure */
  int empty_data;        /* on_data calls with len 0 */
  size_t take_max;       /* on_data takes at most this many a call (0: all) */
  int partial;           /* on_data calls that took less than they got */
};

/* Checks `len` bytes against the pattern from where the stream is. */
static void check_bytes(struct strm *t, const char *data, size_t len)
{
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)data[i] != (t->bytes + i) % 251)
      t->bad++;
  t->bytes += len;
}

static size_t on_take(const char *data, size_t len, void *arg)
{
  struct strm *t = arg;
  size_t n = t->take == 2 ? len : len / 2;

  if (t->s && kcld_http_stream_paused(t->s))
    t->take_while_paused++;
  check_bytes(t, data, n);
  t->taken += n;
  return n;
}

static size_t on_data(const char *data, size_t len, void *arg)
{
  struct strm *t = arg;

  if (t->s && kcld_http_stream_paused(t->s))
    t->data_while_paused++;
  if (t->data_calls++ == 0)
    t->first_ms = uv_now(t->loop);
  if (len == 0)
    t->empty_data++;
  if (t->take_max && len > t->take_max) {
    len = t->take_max;
    t->partial++;
  }
  check_bytes(t, data, len);
  if (t->data_calls == 1 && t->pause_at_first)
    kcld_http_stream_pause(t->s);
  if (t->pause_every && t->bytes >= t->next_pause) {
    t->next_pause = t->bytes + t->pause_every;
    t->pauses++;
    kcld_http_stream_pause(t->s);
  }
  if (t->data_calls == 1 && t->cancel_at_first) {
    kcld_http_stream_cancel(t->s);
    assert_int_equal(t->done, 1);
    t->s = NULL;
  }
  return len;
}

static void on_done(const struct kcld_http_response *resp, void *arg)
{
  struct strm *t = arg;

  t->done++;
  t->err = resp->err;
  t->status = resp->status;
  t->done_ms = uv_now(t->loop);
  if (resp->err && resp->err != KCLD_ECANCELED)
    fprintf(stderr, "stream ended: %s\n", resp->errmsg);
  free(t->body);
  t->body = strndup(resp->body, resp->body_len);
  snprintf(t->error_type, sizeof(t->error_type), "%s", resp->error_type);
  t->s = NULL;
}

static int setup(void **state)
{
  (void)state;
  if (kcld_emu_start(&s_emu, "h2test") != 0)
    return -1;
  s_url = kcld_emu_url(&s_emu, "h2test");
  if (!s_url)
    return -1;
  /* The same endpoint over TLS, trusted through a CA file. */
  s_tls_url = kcld_test_tls_front(s_url, "/__h2/tls", s_ca_path);
  return s_tls_url ? 0 : -1;
}

static int teardown(void **state)
{
  (void)state;
  kcld_emu_stop(&s_emu);
  kcld_http_global_cleanup();
  unlink(s_ca_path);
  free(s_tls_url);
  return 0;
}

static int reset_stats(void **state)
{
  (void)state;
  json_t *r = kcld_fault_post(s_url, "/__h2/reset", "{}");
  assert_non_null(r);
  json_decref(r);
  return 0;
}

static struct kcld_http *client(uv_loop_t *loop)
{
  struct kcld_http *http = NULL;
  struct kcld_http_opts opts = {.ca_file = s_ca_path};
  assert_int_equal(uv_loop_init(loop), 0);
  assert_int_equal(kcld_http_new(loop, &opts, &http), 0);
  return http;
}

static void finish(uv_loop_t *loop, struct kcld_http *http)
{
  kcld_http_close(http);
  kcld_test_loop_finish(loop);
}

static void start(struct kcld_http *http, uv_loop_t *loop, struct strm *t,
                  const char *query, enum mode mode)
{
  char url[512];
  static const char *const hdrs[] = {"Content-Type: application/json", NULL};
  snprintf(url, sizeof(url), "%s/stream?%s", mode == H2TLS ? s_tls_url : s_url,
           query);
  struct kcld_http_request req = {.method = "POST", .url = url,
                                  .headers = hdrs, .body = "{}",
                                  .body_len = 2,
                                  .take = t->take ? on_take : NULL};
  t->loop = loop;
  assert_int_equal(kcld_http_stream_start(http, &req, on_data, on_done, t,
                                          &t->s), 0);
  assert_non_null(t->s);
}

/* The server's record of stream `id` (a new reference), or NULL. */
static json_t *server_stream(const char *id, json_t **stats_out)
{
  json_t *st = kcld_fault_post(s_url, "/__h2/stats", "{}");
  assert_non_null(st);
  json_t *s = json_object_get(json_object_get(st, "streams"), id);
  json_incref(s);
  if (stats_out)
    *stats_out = st;
  else
    json_decref(st);
  return s;
}

static long server_long(const char *id, const char *key)
{
  json_t *s = server_stream(id, NULL);
  long v = s ? (long)json_integer_value(json_object_get(s, key)) : -1;
  json_decref(s);
  return v;
}

static const char *server_proto(const char *id, char *buf, size_t cap)
{
  json_t *s = server_stream(id, NULL);
  snprintf(buf, cap, "%s",
           s ? json_string_value(json_object_get(s, "proto")) : "");
  json_decref(s);
  return buf;
}

static void run_ms(uv_loop_t *loop, unsigned ms)
{
  int never = 0;
  kcld_test_run_until(loop, &never, ms);
}

/* ======== Tests ======== */

/* 10 chunks 40 ms apart: bytes come while the answer is being sent. */
static void test_streams_as_it_arrives(void **state)
{
  uv_loop_t loop;
  struct kcld_http *http = client(&loop);
  struct strm t = {0};
  char proto[16];

  (void)state;
  start(http, &loop, &t, "id=paced&bytes=300000&chunk=30000&interval=40", H2C);
  assert_true(kcld_test_run_until(&loop, &t.done, 10000));
  assert_int_equal(t.done, 1);
  assert_int_equal(t.err, 0);
  assert_int_equal(t.status, 200);
  assert_string_equal(t.body, "");
  assert_int_equal(t.bytes, 300000);
  assert_int_equal(t.bad, 0);
  assert_true(t.data_calls >= 5);
  /* The first bytes came about 9 x 40 ms before the end. */
  assert_true(t.done_ms - t.first_ms >= 300);
  assert_string_equal(server_proto("paced", proto, sizeof(proto)), "2.0");
  free(t.body);
  /* And over TLS, where ALPN picks HTTP/2. */
  memset(&t, 0, sizeof(t));
  start(http, &loop, &t, "id=tls&bytes=200000&chunk=20000&interval=20", H2TLS);
  assert_true(kcld_test_run_until(&loop, &t.done, 10000));
  assert_int_equal(t.err, 0);
  assert_int_equal(t.bytes, 200000);
  assert_int_equal(t.bad, 0);
  assert_true(t.done_ms - t.first_ms >= 150);
  assert_string_equal(server_proto("tls", proto, sizeof(proto)), "2.0");
  free(t.body);
  finish(&loop, http);
}

/* A take gets the bytes first, as they are read; what it leaves goes to on_data
 * in order, and on_data runs after each take (with len 0 when it took all)
 * so the owner can act; a paused stream's take does not run either. */
static void test_take(void **state)
{
  uv_loop_t loop;
  struct kcld_http *http = client(&loop);
  struct strm half = {0}, all = {0};
  const size_t total = 3000000;
  char q[128];

  (void)state;
  half.take = 1;
  all.take = 2;
  all.pause_every = all.next_pause = 700000;
  snprintf(q, sizeof(q), "id=half&bytes=%zu&chunk=60000&interval=2", total);
  start(http, &loop, &half, q, H2C);
  snprintf(q, sizeof(q), "id=all&bytes=%zu&chunk=60000&interval=2", total);
  start(http, &loop, &all, q, H2TLS);
  for (int i = 0; i < 1000 && !(half.done && all.done); i++) {
    run_ms(&loop, 10);
    if (all.s && kcld_http_stream_paused(all.s))
      kcld_http_stream_resume(all.s);
  }
  assert_int_equal(half.done, 1);
  assert_int_equal(half.err, 0);
  assert_int_equal(half.bytes, total);
  assert_int_equal(half.bad, 0);
  assert_true(half.taken > 0 && half.taken < total);
  assert_int_equal(all.done, 1);
  assert_int_equal(all.err, 0);
  assert_string_equal(all.body, "");
  assert_int_equal(all.bytes, total);
  assert_int_equal(all.bad, 0);
  assert_true(all.pauses >= 2);
  assert_int_equal(all.take_while_paused, 0);
  assert_int_equal(all.data_while_paused, 0);
  /* The take copied nearly everything; on_data only ran to be told. */
  assert_true(all.taken > total / 2);
  assert_true(all.empty_data > 0);
  free(half.body);
  free(all.body);
  finish(&loop, http);
}

/* 40 streams started at once, all whole: they share one HTTP/2
 * connection, over TLS and over h2c. */
static void run_multiplexed(enum mode mode, long want_sessions)
{
  uv_loop_t loop;
  struct kcld_http *http = client(&loop);
  struct strm t[40];
  char q[128];
  int all = 0;

  reset_stats(NULL);
  memset(t, 0, sizeof(t));
  for (int i = 0; i < 40; i++) {
    snprintf(q, sizeof(q), "id=m%d&bytes=%d&chunk=5000&interval=5", i,
             50000 + i);
    start(http, &loop, &t[i], q, mode);
  }
  assert_int_equal(kcld_http_pending(http), 40);
  for (int round = 0; round < 2000 && !all; round++) {
    run_ms(&loop, 10);
    all = 1;
    for (int i = 0; i < 40; i++)
      all &= t[i].done == 1;
  }
  assert_true(all);
  for (int i = 0; i < 40; i++) {
    assert_int_equal(t[i].err, 0);
    assert_int_equal(t[i].bytes, (size_t)(50000 + i));
    assert_int_equal(t[i].bad, 0);
    free(t[i].body);
  }
  json_t *st = kcld_fault_post(s_url, "/__h2/stats", "{}");
  assert_non_null(st);
  assert_int_equal(json_integer_value(json_object_get(st, "h2")),
                   want_sessions);
  for (int i = 0; i < 40; i++) {
    snprintf(q, sizeof(q), "m%d", i);
    json_t *one = json_object_get(json_object_get(st, "streams"), q);
    assert_string_equal(json_string_value(json_object_get(one, "proto")),
                        "2.0");
  }
  json_decref(st);
  finish(&loop, http);
}

static void test_multiplexed(void **state)
{
  (void)state;
  run_multiplexed(H2TLS, 1);
  run_multiplexed(H2C, 1);
}

/* A paused stream holds the server back while another stream on the same
 * connection goes on; on resume everything arrives, in order. */
static void test_pause_resume(void **state)
{
  uv_loop_t loop;
  struct kcld_http *http = client(&loop);
  struct strm big = {0}, other = {0};
  const long total = 16L << 20;
  char q[128];

  (void)state;
  big.pause_at_first = 1;
  snprintf(q, sizeof(q), "id=big&bytes=%ld&chunk=65536", total);
  start(http, &loop, &big, q, H2TLS);
  for (int i = 0; i < 500 && big.data_calls == 0; i++)
    run_ms(&loop, 10);
  assert_int_equal(big.data_calls, 1);
  assert_true(kcld_http_stream_paused(big.s));
  size_t at_pause = big.bytes;
  run_ms(&loop, 300);
  long acked1 = server_long("big", "acked");
  run_ms(&loop, 300);
  long acked2 = server_long("big", "acked");
  /* Flow control stopped the server far short of the end, and it stays. */
  assert_true(acked1 > 0);
  assert_true(acked1 < total / 2);
  assert_int_equal(acked2, acked1);
  assert_int_equal(big.bytes, at_pause);
  assert_int_equal(big.data_calls, 1);
  assert_int_equal(big.done, 0);
  /* Another stream on the same connection is not held back. */
  start(http, &loop, &other, "id=other&bytes=500000", H2TLS);
  assert_true(kcld_test_run_until(&loop, &other.done, 10000));
  assert_int_equal(other.err, 0);
  assert_int_equal(other.bytes, 500000);
  assert_int_equal(big.bytes, at_pause);
  /* Pausing twice is harmless; resume twice too. */
  kcld_http_stream_pause(big.s);
  kcld_http_stream_resume(big.s);
  kcld_http_stream_resume(big.s);
  assert_false(kcld_http_stream_paused(big.s));
  assert_true(kcld_test_run_until(&loop, &big.done, 20000));
  assert_int_equal(big.err, 0);
  assert_int_equal(big.bytes, (size_t)total);
  assert_int_equal(big.bad, 0);
  assert_int_equal(big.data_while_paused, 0);
  json_t *st = kcld_fault_post(s_url, "/__h2/stats", "{}");
  assert_int_equal(json_integer_value(json_object_get(st, "h2")), 1);
  json_decref(st);
  free(big.body);
  free(other.body);
  finish(&loop, http);
}

/* Eight h2c streams of two ~15 MB parts, each paused at its first bytes
 * and again after its first part, resumed at staggered times - as fan-out
 * subscriptions with events over their memory budget are: every byte and
 * the end of each arrive, also when the server has sent everything while
 * they were paused (with libcurl 7.88 some stood still for good). */
static void test_pauses_to_the_end(void **state)
{
  enum { N = 8 };
  uv_loop_t loop;
  struct kcld_http *http = client(&loop);
  struct strm t[N];
  const long total = 30411708;
  int all = 0;

  (void)state;
  memset(t, 0, sizeof(t));
  for (int k = 0; k < N; k++) {
    char q[128];
    t[k].pause_every = t[k].next_pause = 15205854;
    t[k].pause_at_first = 1;
    snprintf(q, sizeof(q), "id=pauses%d&bytes=%ld&chunk=15205854", k, total);
    start(http, &loop, &t[k], q, H2C);
  }
  for (int i = 0; i < 300 && !all; i++) {
    run_ms(&loop, 100);
    all = 1;
    for (int k = 0; k < N; k++) {
      if (t[k].s && kcld_http_stream_paused(t[k].s) && (i + k) % 7 == 0)
        kcld_http_stream_resume(t[k].s);
      all = all && t[k].done;
    }
  }
  for (int k = 0; k < N; k++) {
    assert_int_equal(t[k].done, 1);
    assert_int_equal(t[k].err, 0);
    assert_int_equal(t[k].bytes, (size_t)total);
    assert_int_equal(t[k].bad, 0);
    assert_true(t[k].pauses >= 1);
    assert_int_equal(t[k].data_while_paused, 0);
    free(t[k].body);
  }
  finish(&loop, http);
}

/* A data callback that takes at most 1000 bytes a call: each partial take
 * pauses the stream (no data while paused), and on each resume the rest
 * comes first - every byte once, in order, over h2c and TLS. */
static void test_partial_take(void **state)
{
  uv_loop_t loop;
  struct kcld_http *http = client(&loop);
  const enum mode modes[] = {H2C, H2TLS};

  (void)state;
  for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
    struct strm t = {0};
    int resumes = 0;
    t.take_max = 1000;
    start(http, &loop, &t, "id=partial&bytes=60000&chunk=20000&interval=5",
          modes[m]);
    for (int i = 0; i < 2000 && !t.done; i++) {
      run_ms(&loop, 1);
      if (t.s && kcld_http_stream_paused(t.s)) {
        kcld_http_stream_resume(t.s);
        resumes++;
      }
    }
    assert_int_equal(t.done, 1);
    assert_int_equal(t.err, 0);
    assert_int_equal(t.bytes, 60000);
    assert_int_equal(t.bad, 0);
    assert_int_equal(t.data_while_paused, 0);
    assert_true(t.partial >= 1);
    assert_true(resumes >= 1);
    free(t.body);
  }
  finish(&loop, http);
}

/* Cancel: done runs at once with KCLD_ECANCELED and no more data comes.
 * The server sees the stream reset (RST_STREAM CANCEL = 8) while the
 * other streams on its connection go on. */
static void test_cancel(void **state)
{
  uv_loop_t loop;
  struct kcld_http *http = client(&loop);
  struct strm a = {0}, b = {0}, c = {0}, d = {0};

  (void)state;
  start(http, &loop, &a, "id=ca&bytes=10000000&chunk=1000&interval=10",
        H2TLS);
  b.cancel_at_first = 1;
  start(http, &loop, &b, "id=cb&bytes=10000000&chunk=1000&interval=10",
        H2TLS);
  start(http, &loop, &c, "id=cc&bytes=400000&chunk=10000&interval=10", H2TLS);
  start(http, &loop, &d, "id=cd&bytes=10000000&chunk=1000&interval=10", H2C);
  for (int i = 0; i < 500 && (a.data_calls == 0 || b.done == 0 ||
                              d.data_calls == 0); i++)
    run_ms(&loop, 10);
  assert_true(a.data_calls > 0 && d.data_calls > 0);
  kcld_http_stream_cancel(a.s);
  assert_int_equal(a.done, 1);
  assert_int_equal(a.err, KCLD_ECANCELED);
  kcld_http_stream_cancel(d.s);
  assert_int_equal(d.done, 1);
  assert_int_equal(d.err, KCLD_ECANCELED);
  assert_int_equal(b.done, 1);
  assert_int_equal(b.err, KCLD_ECANCELED);
  assert_int_equal(b.data_calls, 1);
  int ca = a.data_calls, cd = d.data_calls;
  assert_true(kcld_test_run_until(&loop, &c.done, 10000));
  assert_int_equal(c.err, 0);
  assert_int_equal(c.bytes, 400000);
  assert_int_equal(a.data_calls, ca);
  assert_int_equal(b.data_calls, 1);
  assert_int_equal(d.data_calls, cd);
  assert_int_equal(kcld_http_pending(http), 0);
  long rst_a = -1, rst_b = -1, rst_d = -1;
  for (int i = 0; i < 100 && (rst_a <= 0 || rst_b <= 0 || rst_d <= 0); i++) {
    run_ms(&loop, 20);
    rst_a = server_long("ca", "rst");
    rst_b = server_long("cb", "rst");
    rst_d = server_long("cd", "rst");
  }
  assert_int_equal(rst_a, 8);
  assert_int_equal(rst_b, 8);
  assert_int_equal(rst_d, 8);
  free(a.body);
  free(b.body);
  free(c.body);
  free(d.body);
  finish(&loop, http);
}

/* Reset by the server mid-answer: the bytes before it, then an error. */
static void test_reset_mid_stream(void **state)
{
  uv_loop_t loop;
  struct kcld_http *http = client(&loop);
  struct strm t = {0};

  (void)state;
  start(http, &loop, &t, "id=rs&bytes=1000000&chunk=10000&reset_after=100000",
        H2C);
  assert_true(kcld_test_run_until(&loop, &t.done, 10000));
  assert_int_equal(t.err, KCLD_ETRANSPORT);
  assert_int_equal(t.status, 0);
  assert_int_equal(t.bytes, 100000);
  assert_int_equal(t.bad, 0);
  free(t.body);
  finish(&loop, http);
}

/* An error answer is gathered and handed to done, never to on_data. */
static void test_error_status(void **state)
{
  uv_loop_t loop;
  struct kcld_http *http = client(&loop);
  struct strm t = {0};
  char url[256];

  (void)state;
  snprintf(url, sizeof(url), "%s/status?code=400&type=ResourceInUseException",
           s_url);
  struct kcld_http_request req = {.method = "POST", .url = url, .body = "{}",
                                  .body_len = 2};
  t.loop = &loop;
  assert_int_equal(kcld_http_stream_start(http, &req, on_data, on_done, &t,
                                          &t.s), 0);
  assert_true(kcld_test_run_until(&loop, &t.done, 10000));
  assert_int_equal(t.err, 0);
  assert_int_equal(t.status, 400);
  assert_int_equal(t.data_calls, 0);
  assert_non_null(strstr(t.body, "\"__type\": \"ResourceInUseException\"") ?
                  t.body : strstr(t.body, "ResourceInUseException"));
  assert_non_null(strstr(t.error_type, "ResourceInUseException"));
  free(t.body);
  /* Bad arguments. */
  struct kcld_http_stream *s = (struct kcld_http_stream *)&t;
  assert_int_equal(kcld_http_stream_start(http, &req, NULL, on_done, &t, &s),
                   KCLD_EINVAL);
  assert_int_equal(kcld_http_stream_start(http, &req, on_data, on_done, &t,
                                          NULL), KCLD_EINVAL);
  finish(&loop, http);
}

static void on_echo(const struct kcld_http_response *resp, void *arg)
{
  json_t **out = arg;
  assert_int_equal(resp->err, 0);
  *out = json_loadb(resp->body, resp->body_len, 0, NULL);
}

/* A plain request while a paused stream holds an HTTP/2
 * connection to the same endpoint: over h2c and over TLS it takes an
 * HTTP/1.1 connection of its own and is answered (curl's default would
 * put it on the stream's connection, where libcurl 7.88 can sit on its
 * answer: a shard end's ListShards waited for good). */
static void test_request_apart_from_streams(void **state)
{
  uv_loop_t loop;
  struct kcld_http *http = client(&loop);
  struct strm a = {0}, b = {0};
  char url[256];

  (void)state;
  a.pause_at_first = b.pause_at_first = 1;
  start(http, &loop, &a, "id=pa&bytes=10000000&chunk=1000&interval=5", H2C);
  start(http, &loop, &b, "id=pb&bytes=10000000&chunk=1000&interval=5", H2TLS);
  for (int i = 0; i < 500 && (a.data_calls == 0 || b.data_calls == 0); i++)
    run_ms(&loop, 10);
  assert_true(a.data_calls > 0 && b.data_calls > 0);
  for (int tls = 0; tls < 2; tls++) {
    json_t *echo = NULL;
    snprintf(url, sizeof(url), "%s/echo", tls ? s_tls_url : s_url);
    struct kcld_http_request req = {.method = "POST", .url = url,
                                    .body = "hi", .body_len = 2};
    assert_int_equal(kcld_http_send(http, &req, on_echo, &echo), 0);
    for (int i = 0; i < 300 && !echo; i++)
      run_ms(&loop, 10);
    assert_non_null(echo);
    assert_string_equal(
      json_string_value(json_object_get(echo, "httpVersion")), "1.1");
    json_decref(echo);
  }
  kcld_http_close(http);
  kcld_test_loop_finish(&loop);
  free(a.body);
  free(b.body);
}

/* Streams through an HTTP proxy (https_proxy / http_proxy, read when the
 * client is made): each connection is a CONNECT tunnel, with the URL's
 * credentials as Basic Proxy-Authorization, h2c and TLS alike; a host
 * no_proxy names goes direct; a port nothing listens on fails the stream
 * at once with a transport error naming it. */
static void test_proxy_and_refused(void **state)
{
  json_t *r = kcld_fault_post(s_url, "/__h2/proxy", "{}");
  const char *purl = json_string_value(json_object_get(r, "url"));
  char proxy[256], url[128];
  uv_loop_t loop;
  struct kcld_http *http;
  struct strm a = {0}, b = {0}, c = {0};

  (void)state;
  assert_non_null(purl);
  /* "us@er" and "p:w", percent-encoded in the URL */
  snprintf(proxy, sizeof(proxy), "http://us%%40er:p%%3Aw@%s", purl + 7);
  json_decref(r);
  setenv("https_proxy", proxy, 1);
  setenv("http_proxy", proxy, 1);
  unsetenv("no_proxy");
  unsetenv("NO_PROXY");
  http = client(&loop);
  start(http, &loop, &a, "id=pxa&bytes=100000&chunk=10000", H2C);
  start(http, &loop, &b, "id=pxb&bytes=100000&chunk=10000", H2TLS);
  assert_true(kcld_test_run_until(&loop, &a.done, 10000));
  assert_true(kcld_test_run_until(&loop, &b.done, 10000));
  assert_int_equal(a.err, 0);
  assert_int_equal(a.bytes, 100000);
  assert_int_equal(b.err, 0);
  assert_int_equal(b.bytes, 100000);
  json_t *st = kcld_fault_post(s_url, "/__h2/stats", "{}");
  json_t *cs = json_object_get(st, "connects");
  assert_int_equal(json_array_size(cs), 2);
  for (size_t i = 0; i < 2; i++)
    assert_string_equal(
      json_string_value(json_object_get(json_array_get(cs, i), "auth")),
      "Basic dXNAZXI6cDp3"); /* base64("us@er:p:w") */
  json_decref(st);
  finish(&loop, http);
  free(a.body);
  free(b.body);

  /* no_proxy: direct. */
  setenv("no_proxy", "localhost, 127.0.0.1", 1);
  http = client(&loop);
  memset(&a, 0, sizeof(a));
  start(http, &loop, &a, "id=pxc&bytes=1000", H2C);
  assert_true(kcld_test_run_until(&loop, &a.done, 10000));
  assert_int_equal(a.err, 0);
  st = kcld_fault_post(s_url, "/__h2/stats", "{}");
  assert_int_equal(json_array_size(json_object_get(st, "connects")), 2);
  json_decref(st);
  unsetenv("https_proxy");
  unsetenv("http_proxy");
  unsetenv("no_proxy");

  /* Nothing listening (a port just bound and let go): refused, at once. */
  {
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t sl = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    close(fd);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/stream",
             ntohs(sa.sin_port));
    struct kcld_http_request req = {.method = "POST", .url = url,
                                    .body = "{}", .body_len = 2};
    c.loop = &loop;
    assert_int_equal(kcld_http_stream_start(http, &req, on_data, on_done,
                                            &c, &c.s), 0);
    assert_true(kcld_test_run_until(&loop, &c.done, 5000));
    assert_int_equal(c.err, KCLD_ETRANSPORT);
    assert_int_equal(c.data_calls, 0);
  }
  finish(&loop, http);
  free(a.body);
  free(c.body);
}

/* A server that allows 2 concurrent streams per connection: of 5 started
 * at once, 2 are answered and 3 end with a transport error (refused, or
 * not opened once its SETTINGS came); a stream started afterwards goes on
 * a new connection and is answered. */
static void test_stream_limit(void **state)
{
  json_t *r = kcld_fault_post(s_url, "/__h2/limited?streams=2", "{}");
  const char *base = json_string_value(json_object_get(r, "url"));
  uv_loop_t loop;
  struct kcld_http *http = client(&loop);
  static const char *const hdrs[] = {"Content-Type: application/json", NULL};
  struct strm t[6];
  char url[256];
  int ok = 0, refused = 0, all = 0;

  (void)state;
  assert_non_null(base);
  memset(t, 0, sizeof(t));
  for (int i = 0; i < 6; i++) {
    snprintf(url, sizeof(url), "%s/stream?id=lim%d&bytes=100000&chunk=5000"
             "&interval=10", base, i);
    struct kcld_http_request req = {.method = "POST", .url = url,
                                    .headers = hdrs, .body = "{}",
                                    .body_len = 2};
    t[i].loop = &loop;
    assert_int_equal(kcld_http_stream_start(http, &req, on_data, on_done,
                                            &t[i], &t[i].s), 0);
    if (i == 4) { /* the first 5 end, then the 6th starts */
      for (int k = 0; k < 500 && !all; k++) {
        run_ms(&loop, 10);
        all = 1;
        for (int j = 0; j < 5; j++)
          all &= t[j].done;
      }
      assert_true(all);
    }
  }
  for (int j = 0; j < 5; j++) {
    ok += t[j].err == 0 && t[j].bytes == 100000;
    refused += t[j].err == KCLD_ETRANSPORT && t[j].data_calls == 0;
  }
  assert_int_equal(ok, 2);
  assert_int_equal(refused, 3);
  assert_true(kcld_test_run_until(&loop, &t[5].done, 10000));
  assert_int_equal(t[5].err, 0);
  assert_int_equal(t[5].bytes, 100000);
  for (int j = 0; j < 6; j++)
    free(t[j].body);
  json_decref(r);
  finish(&loop, http);
}

/* Closing the client ends paused and running streams, each once. */
static void test_close_with_streams(void **state)
{
  uv_loop_t loop;
  struct kcld_http *http = client(&loop);
  struct strm a = {0}, b = {0};

  (void)state;
  a.pause_at_first = 1;
  start(http, &loop, &a, "id=xa&bytes=10000000&chunk=1000&interval=5", H2TLS);
  start(http, &loop, &b, "id=xb&bytes=10000000&chunk=1000&interval=5", H2C);
  for (int i = 0; i < 500 && (a.data_calls == 0 || b.data_calls == 0); i++)
    run_ms(&loop, 10);
  assert_true(a.data_calls > 0 && b.data_calls > 0);
  kcld_http_close(http);
  assert_int_equal(a.done, 1);
  assert_int_equal(a.err, KCLD_ECANCELED);
  assert_int_equal(b.done, 1);
  assert_int_equal(b.err, KCLD_ECANCELED);
  kcld_test_loop_finish(&loop);
  free(a.body);
  free(b.body);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(test_streams_as_it_arrives, reset_stats),
    cmocka_unit_test_setup(test_multiplexed, reset_stats),
    cmocka_unit_test_setup(test_take, reset_stats),
    cmocka_unit_test_setup(test_pause_resume, reset_stats),
    cmocka_unit_test_setup(test_partial_take, reset_stats),
    cmocka_unit_test_setup(test_pauses_to_the_end, reset_stats),
    cmocka_unit_test_setup(test_cancel, reset_stats),
    cmocka_unit_test_setup(test_reset_mid_stream, reset_stats),
    cmocka_unit_test_setup(test_error_status, reset_stats),
    cmocka_unit_test_setup(test_request_apart_from_streams, reset_stats),
    cmocka_unit_test_setup(test_close_with_streams, reset_stats),
    cmocka_unit_test_setup(test_proxy_and_refused, reset_stats),
    cmocka_unit_test_setup(test_stream_limit, reset_stats),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
