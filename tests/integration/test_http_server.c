/* test_http_server.c — the metrics HTTP server on an ephemeral port,
 * spoken to over real sockets from client threads while the test thread
 * runs the loop: /metrics and /healthz answers, HEAD, 404/405/400/431,
 * keep-alive and pipelining, many clients at once, a slowloris request cut
 * off after the timeout, the connection cap, and a clean close of the
 * loop with connections still open.  Last, the real daemon with
 * metrics.listen on port 0 and metrics.emf: its /metrics counts every
 * record produced, /healthz answers, `status` sees its leases, and the EMF
 * file holds lines after a graceful stop. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <jansson.h>
#include <signal.h>
#include <sys/wait.h>

#include "awssync.h"
#include "cmd/produce.h"
#include "cmd/status.h"
#include "config.h"
#include "err.h"
#include "harness.h"
#include "kcld/version.h"
#include "log.h"
#include "ops/http_server.h"
#include "ops/metrics.h"
#include "ops/monitor.h"
#include "proc.h"

#define WAIT_MS 20000

/* ======== The server side ======== */

struct fixture {
  uv_loop_t loop;
  struct kcld_metrics *m;
  struct kcld_http_server *srv;
  uv_timer_t tick;     /* wakes the loop while a client thread runs */
  atomic_int healthy;
  int port;
};

static char *health(void *arg, int *healthy)
{
  struct fixture *f = arg;
  *healthy = atomic_load(&f->healthy);
  return strdup(*healthy ? "{\"status\":\"ok\"}"
                         : "{\"status\":\"unhealthy\",\"stalled\":"
                           "[{\"shard\":\"s-1\",\"reason\":\"no_progress\"}]}");
}

static void collect(struct kcld_metrics *m, void *arg)
{
  (void)arg;
  kcld_metrics_add(m, "test_scrapes_total", NULL, 1);
}

static void up(struct fixture *f, uint64_t timeout_ms, unsigned max_clients)
{
  struct kcld_http_server_opts o;
  const char *lb[] = {"shard", "shardId-000000000000", NULL};
  memset(f, 0, sizeof(*f));
  atomic_store(&f->healthy, 1);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  assert_int_equal(kcld_metrics_new(&f->m), 0);
  kcld_metrics_declare(f->m, "test_scrapes_total", KCLD_METRIC_COUNTER,
                       "Scrapes.", NULL, 0);
  kcld_metrics_declare(f->m, "kcld_millis_behind_latest", KCLD_METRIC_GAUGE,
                       "Lag.", NULL, 0);
  kcld_metrics_set(f->m, "kcld_millis_behind_latest", lb, 42);
  kcld_metrics_set_collector(f->m, collect, NULL);
  memset(&o, 0, sizeof(o));
  o.loop = &f->loop;
  o.listen = "127.0.0.1:0";
  o.metrics = f->m;
  o.health = health;
  o.health_arg = f;
  o.timeout_ms = timeout_ms;
  o.max_clients = max_clients;
  assert_int_equal(kcld_http_server_start(&o, &f->srv), 0);
  f->port = kcld_http_server_port(f->srv);
  assert_true(f->port > 0);
}

static void down(struct fixture *f)
{
  kcld_http_server_close(f->srv);
  kcld_test_loop_finish(&f->loop);
  kcld_metrics_free(f->m);
}

/* ======== The client side (no cmocka asserts off the main thread) ======== */

struct conn {
  int fd;
  char buf[1 << 16];
  size_t len;
};

struct resp {
  int status;
  char head[2048];
  char body[1 << 15];
  size_t body_len;
};

static int conn_open(struct conn *c, int port)
{
  struct sockaddr_in a;
  struct timeval tv = {5, 0};
  memset(c, 0, sizeof(*c));
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  if (c->fd < 0)
    return -1;
  setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(c->fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
    close(c->fd);
    return -1;
  }
  return 0;
}

static int conn_send(struct conn *c, const char *s, size_t n)
{
  while (n > 0) {
    ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);
    if (w <= 0)
      return -1;
    s += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Reads one response; -1 on error or EOF before a whole one, with `why`. */
static int conn_read(struct conn *c, struct resp *r, int head_only)
{
  char *end;
  size_t hlen, clen = 0;
  memset(r, 0, sizeof(*r));
  for (;;) {
    c->buf[c->len] = '\0';
    end = strstr(c->buf, "\r\n\r\n");
    if (end) {
      hlen = (size_t)(end - c->buf) + 4;
      const char *cl = strcasestr(c->buf, "\r\nContent-Length:");
      if (!cl || cl > end)
        return -1;
      clen = strtoul(cl + 17, NULL, 10);
      if (head_only || c->len >= hlen + clen)
        break;
    }
    if (c->len + 1 >= sizeof(c->buf))
      return -1;
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, 0);
    if (n <= 0)
      return -1;
    c->len += (size_t)n;
  }
  if (sscanf(c->buf, "HTTP/1.1 %d ", &r->status) != 1)
    return -1;
  if (hlen >= sizeof(r->head))
    return -1;
  memcpy(r->head, c->buf, hlen);
  if (head_only)
    clen = 0;
  if (clen >= sizeof(r->body))
    return -1;
  memcpy(r->body, c->buf + hlen, clen);
  r->body_len = clen;
  memmove(c->buf, c->buf + hlen + clen, c->len - hlen - clen);
  c->len -= hlen + clen;
  return 0;
}

/* 1 when the peer closes (EOF or reset) within the receive timeout. */
static int conn_closed_by_peer(struct conn *c)
{
  char tmp[256];
  for (;;) {
    ssize_t n = recv(c->fd, tmp, sizeof(tmp), 0);
    if (n == 0 || (n < 0 && errno == ECONNRESET))
      return 1;
    if (n < 0)
      return 0; /* timeout */
  }
}

static void conn_close(struct conn *c)
{
  close(c->fd);
}

/* A scenario runs on a client thread; the test thread runs the loop. */
struct run {
  struct fixture *f;
  const char *(*fn)(struct fixture *f, char *msg, size_t n);
  const char *err;
  char msg[512];
  int done;
};

static void *client_main(void *arg)
{
  struct run *r = arg;
  r->err = r->fn(r->f, r->msg, sizeof(r->msg));
  __atomic_store_n(&r->done, 1, __ATOMIC_SEQ_CST);
  return NULL;
}

/* The loop needs waking to notice `done`: a repeating timer does that. */
static void on_tick(uv_timer_t *t)
{
  (void)t;
}

static void run_scenario(struct fixture *f,
                         const char *(*fn)(struct fixture *, char *, size_t))
{
  struct run r;
  pthread_t th;
  memset(&r, 0, sizeof(r));
  r.f = f;
  r.fn = fn;
  uv_timer_init(&f->loop, &f->tick);
  uv_timer_start(&f->tick, on_tick, 10, 10);
  assert_int_equal(pthread_create(&th, NULL, client_main, &r), 0);
  kcld_test_run_until(&f->loop, &r.done, WAIT_MS);
  assert_true(__atomic_load_n(&r.done, __ATOMIC_SEQ_CST));
  pthread_join(th, NULL);
  uv_close((uv_handle_t *)&f->tick, NULL);
  if (r.err)
    fail_msg("%s: %s", r.err, r.msg);
}

#define CHECK(cond, ...)                                                      \
  do {                                                                        \
    if (!(cond)) {                                                            \
      snprintf(msg, n, __VA_ARGS__);                                          \
      return #cond;                                                           \
    }                                                                         \
  } while (0)

static const char *get(struct conn *c, const char *path, struct resp *r,
                       char *msg, size_t n)
{
  char req[256];
  int len = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: test\r\n\r\n", path);
  CHECK(conn_send(c, req, (size_t)len) == 0, "send %s", path);
  CHECK(conn_read(c, r, 0) == 0, "read answer to %s", path);
  return NULL;
}

/* ======== Scenarios ======== */

static const char *sc_basic(struct fixture *f, char *msg, size_t n)
{
  struct conn c;
  struct resp r;
  const char *e;
  CHECK(conn_open(&c, f->port) == 0, "connect");
  if ((e = get(&c, "/metrics", &r, msg, n)))
    return e;
  CHECK(r.status == 200, "status %d", r.status);
  CHECK(strcasestr(r.head, "Content-Type: text/plain; version=0.0.4"),
        "head %s", r.head);
  CHECK(strcasestr(r.head, "Connection: keep-alive"), "head %s", r.head);
  CHECK(strstr(r.body, "# TYPE kcld_millis_behind_latest gauge\n"), "body %s",
        r.body);
  CHECK(strstr(r.body, "kcld_millis_behind_latest{shard=\"shardId-"
                       "000000000000\"} 42\n"), "body %s", r.body);
  CHECK(strstr(r.body, "test_scrapes_total 1\n"), "body %s", r.body);
  /* Same connection, second scrape: the collector ran again. */
  if ((e = get(&c, "/metrics?name=x", &r, msg, n)))
    return e;
  CHECK(strstr(r.body, "test_scrapes_total 2\n"), "body %s", r.body);
  if ((e = get(&c, "/healthz", &r, msg, n)))
    return e;
  CHECK(r.status == 200 && strcmp(r.body, "{\"status\":\"ok\"}\n") == 0,
        "%d %s", r.status, r.body);
  CHECK(strcasestr(r.head, "Content-Type: application/json\r\n"), "head %s",
        r.head);
  atomic_store(&f->healthy, 0);
  if ((e = get(&c, "/healthz", &r, msg, n)))
    return e;
  CHECK(r.status == 503 && strstr(r.body, "\"shard\":\"s-1\""), "%d %s",
        r.status, r.body);
  atomic_store(&f->healthy, 1);
  if ((e = get(&c, "/nope", &r, msg, n)))
    return e;
  CHECK(r.status == 404, "status %d", r.status);
  /* HEAD: the length of the body, but no body. */
  const char head[] = "HEAD /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
  CHECK(conn_send(&c, head, sizeof(head) - 1) == 0, "send HEAD");
  CHECK(conn_read(&c, &r, 1) == 0, "read HEAD");
  CHECK(r.status == 200 && strstr(r.head, "Content-Length: 16"), "%s",
        r.head);
  /* A method we do not serve: 405, Allow, and the connection stays. */
  const char post[] = "POST /metrics HTTP/1.1\r\nHost: t\r\n\r\n";
  CHECK(conn_send(&c, post, sizeof(post) - 1) == 0, "send POST");
  CHECK(conn_read(&c, &r, 0) == 0, "read POST");
  CHECK(r.status == 405 && strstr(r.head, "Allow: GET, HEAD"), "%s", r.head);
  if ((e = get(&c, "/healthz", &r, msg, n)))
    return e;
  CHECK(r.status == 200, "status %d", r.status);
  /* Connection: close is honoured. */
  const char bye[] = "GET /healthz HTTP/1.1\r\nHost: t\r\n"
                     "Connection: close\r\n\r\n";
  CHECK(conn_send(&c, bye, sizeof(bye) - 1) == 0, "send close");
  CHECK(conn_read(&c, &r, 0) == 0, "read close");
  CHECK(strstr(r.head, "Connection: close"), "%s", r.head);
  CHECK(conn_closed_by_peer(&c), "server kept the connection");
  conn_close(&c);
  return NULL;
}

static const char *sc_pipelined(struct fixture *f, char *msg, size_t n)
{
  struct conn c;
  struct resp r;
  const char reqs[] = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
                      "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n"
                      "GET /x HTTP/1.1\r\nHost: t\r\n\r\n";
  CHECK(conn_open(&c, f->port) == 0, "connect");
  CHECK(conn_send(&c, reqs, sizeof(reqs) - 1) == 0, "send");
  CHECK(conn_read(&c, &r, 0) == 0 && r.status == 200 &&
          strncmp(r.body, "{\"status\":\"ok\"", 14) == 0, "first: %d %s",
        r.status, r.body);
  CHECK(conn_read(&c, &r, 0) == 0 && r.status == 200 &&
          strstr(r.body, "# TYPE"), "second: %d", r.status);
  CHECK(conn_read(&c, &r, 0) == 0 && r.status == 404, "third: %d",
        r.status);
  /* Byte by byte also works. */
  const char one[] = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
  for (size_t i = 0; i < sizeof(one) - 1; i++)
    CHECK(conn_send(&c, one + i, 1) == 0, "send byte %zu", i);
  CHECK(conn_read(&c, &r, 0) == 0 && r.status == 200, "bytewise: %d",
        r.status);
  conn_close(&c);
  return NULL;
}

static const char *sc_malformed(struct fixture *f, char *msg, size_t n)
{
  struct conn c;
  struct resp r;
  static char big[KCLD_HTTP_MAX_HEAD + 512];
  const char bad[] = "GET / HTTP/1.1\nHost: t\n\n";
  CHECK(conn_open(&c, f->port) == 0, "connect");
  CHECK(conn_send(&c, bad, sizeof(bad) - 1) == 0, "send");
  CHECK(conn_read(&c, &r, 0) == 0 && r.status == 400, "status %d",
        r.status);
  CHECK(strstr(r.head, "Connection: close"), "%s", r.head);
  CHECK(conn_closed_by_peer(&c), "not closed after 400");
  conn_close(&c);
  /* An endless header block: 431, then closed. */
  CHECK(conn_open(&c, f->port) == 0, "connect");
  size_t len = (size_t)snprintf(big, sizeof(big),
                                "GET / HTTP/1.1\r\nHost: t\r\n");
  while (len + 40 < sizeof(big))
    len += (size_t)snprintf(big + len, sizeof(big) - len,
                            "X-Pad: 0123456789012345678901234\r\n");
  CHECK(conn_send(&c, big, len) == 0, "send big");
  CHECK(conn_read(&c, &r, 0) == 0 && r.status == 431, "status %d",
        r.status);
  CHECK(conn_closed_by_peer(&c), "not closed after 431");
  conn_close(&c);
  return NULL;
}

struct par {
  int port, ok;
  pthread_t th;
};

static void *par_main(void *arg)
{
  struct par *p = arg;
  struct conn c;
  struct resp r;
  char msg[128];
  if (conn_open(&c, p->port) != 0)
    return NULL;
  for (int i = 0; i < 25; i++)
    if (!get(&c, i % 2 ? "/metrics" : "/healthz", &r, msg, sizeof(msg)) &&
        r.status == 200)
      p->ok++;
  conn_close(&c);
  return NULL;
}

static const char *sc_concurrent(struct fixture *f, char *msg, size_t n)
{
  struct par ps[12];
  int total = 0;
  for (int i = 0; i < 12; i++) {
    ps[i].port = f->port;
    ps[i].ok = 0;
    CHECK(pthread_create(&ps[i].th, NULL, par_main, &ps[i]) == 0, "thread");
  }
  for (int i = 0; i < 12; i++) {
    pthread_join(ps[i].th, NULL);
    total += ps[i].ok;
  }
  CHECK(total == 12 * 25, "%d of %d answers were 200", total, 12 * 25);
  return NULL;
}

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The server's timeout is 300 ms here. */
static const char *sc_slowloris(struct fixture *f, char *msg, size_t n)
{
  struct conn c, d;
  struct resp r;
  const char *e;
  const char part[] = "GET /metrics HTTP/1.1\r\nHost: t\r\nX-Slow: ";
  CHECK(conn_open(&c, f->port) == 0, "connect");
  double t0 = now_s();
  CHECK(conn_send(&c, part, sizeof(part) - 1) == 0, "send");
  /* Trickle a byte every 100 ms: the deadline counts from the first byte,
   * so this does not keep the connection. */
  int closed = 0;
  for (int i = 0; i < 30 && !closed; i++) {
    usleep(100 * 1000);
    if (conn_send(&c, "a", 1) != 0)
      closed = 1;
  }
  if (!closed)
    closed = conn_closed_by_peer(&c);
  double dt = now_s() - t0;
  CHECK(closed, "slow request never cut off");
  CHECK(dt >= 0.25 && dt < 2.5, "cut off after %.2fs", dt);
  conn_close(&c);
  /* An idle keep-alive connection goes after the timeout too, and the
   * server still answers others meanwhile. */
  CHECK(conn_open(&c, f->port) == 0, "connect");
  CHECK(conn_open(&d, f->port) == 0, "connect");
  if ((e = get(&c, "/healthz", &r, msg, n)))
    return e;
  if ((e = get(&d, "/healthz", &r, msg, n)))
    return e;
  CHECK(r.status == 200, "status %d", r.status);
  CHECK(conn_closed_by_peer(&c), "idle connection kept");
  conn_close(&c);
  conn_close(&d);
  return NULL;
}

/* max_clients is 2 here. */
static const char *sc_cap(struct fixture *f, char *msg, size_t n)
{
  struct conn a, b, c;
  struct resp r;
  const char *e;
  CHECK(conn_open(&a, f->port) == 0, "connect a");
  if ((e = get(&a, "/healthz", &r, msg, n)))
    return e;
  usleep(20 * 1000); /* b waits for its next request after a does */
  CHECK(conn_open(&b, f->port) == 0, "connect b");
  if ((e = get(&b, "/healthz", &r, msg, n)))
    return e;
  /* A third: the connection idle longest (a) makes room for it. */
  CHECK(conn_open(&c, f->port) == 0, "connect c");
  if ((e = get(&c, "/healthz", &r, msg, n)))
    return e;
  CHECK(r.status == 200, "status %d", r.status);
  CHECK(conn_closed_by_peer(&a), "the oldest waiting connection was kept");
  conn_close(&a);
  /* Then b, the oldest waiting now, for a fourth. */
  CHECK(conn_open(&a, f->port) == 0, "connect a again");
  if ((e = get(&a, "/healthz", &r, msg, n)))
    return e;
  CHECK(r.status == 200, "status %d", r.status);
  CHECK(conn_closed_by_peer(&b), "b kept");
  if ((e = get(&c, "/healthz", &r, msg, n))) /* c stays */
    return e;
  CHECK(r.status == 200, "status %d", r.status);
  conn_close(&a);
  conn_close(&b);
  conn_close(&c);
  return NULL;
}

/* 100 connections trickle request heads (slowloris), reconnecting as they
 * are cut, while /healthz is probed on fresh connections: with the default
 * cap (64) and header deadline (3 s) every probe answers. */
#define FLOOD_CONNS 100
#define FLOOD_PROBES 25

struct flood {
  int port;
  atomic_int stop, reconnects;
};

static void *flood_main(void *arg)
{
  struct flood *fl = arg;
  static struct conn cs[FLOOD_CONNS];
  const char part[] = "GET /metrics HTTP/1.1\r\nHost: t\r\nX-Slow: ";
  int open_[FLOOD_CONNS] = {0};
  while (!atomic_load(&fl->stop)) {
    for (int i = 0; i < FLOOD_CONNS; i++) {
      if (open_[i] && conn_send(&cs[i], "a", 1) != 0) {
        conn_close(&cs[i]);
        open_[i] = 0;
        atomic_fetch_add(&fl->reconnects, 1);
      }
      if (!open_[i] && conn_open(&cs[i], fl->port) == 0) {
        open_[i] = conn_send(&cs[i], part, sizeof(part) - 1) == 0;
        if (!open_[i])
          conn_close(&cs[i]);
      }
    }
    usleep(50 * 1000);
  }
  for (int i = 0; i < FLOOD_CONNS; i++)
    if (open_[i])
      conn_close(&cs[i]);
  return NULL;
}

static const char *sc_flood(struct fixture *f, char *msg, size_t n)
{
  struct flood fl = {.port = f->port};
  pthread_t th;
  struct resp r;
  int ok = 0;
  CHECK(pthread_create(&th, NULL, flood_main, &fl) == 0, "thread");
  usleep(300 * 1000); /* the attackers hold the port */
  for (int i = 0; i < FLOOD_PROBES; i++) {
    struct conn c;
    if (conn_open(&c, f->port) == 0) {
      if (!get(&c, "/healthz", &r, msg, n) && r.status == 200)
        ok++;
      conn_close(&c);
    }
    usleep(100 * 1000);
  }
  atomic_store(&fl.stop, 1);
  pthread_join(th, NULL);
  CHECK(ok == FLOOD_PROBES, "%d of %d probes answered", ok, FLOOD_PROBES);
  CHECK(atomic_load(&fl.reconnects) > 0, "the cap was never reached");
  return NULL;
}

/* Leaves a connection open mid-request for the close test. */
static int s_open_fd = -1;

static const char *sc_leave_open(struct fixture *f, char *msg, size_t n)
{
  static struct conn c;
  CHECK(conn_open(&c, f->port) == 0, "connect");
  CHECK(conn_send(&c, "GET /met", 8) == 0, "send");
  s_open_fd = c.fd;
  usleep(100 * 1000);
  return NULL;
}



/* ======== The monitor's health rule ======== */

static double sample_of(const char *text, const char *series);

struct fake_shards {
  uint64_t progress_ms[2]; /* loop time of each shard's last progress */
  size_t n;
  const char *stall[2];   /* a reason reported by the walk, or NULL */
  uint64_t since[2];      /* ... since this loop time */
  const char *elsewhere;  /* the shard held elsewhere (n == 0); NULL: s-9 */
};

static void fake_walk(void *arg, struct kcld_monitor_visit *v)
{
  struct fake_shards *fs = arg;
  static const char *const ids[] = {"s-0", "s-1"};
  for (size_t i = 0; i < fs->n; i++) {
    kcld_monitor_visit_held(v, ids[i], fs->progress_ms[i]);
    if (fs->stall[i])
      kcld_monitor_visit_stalled(v, ids[i], fs->stall[i], fs->since[i]);
  }
  if (fs->n == 0 && fs->stall[0]) /* a shard of the table held elsewhere */
    kcld_monitor_visit_stalled(v, fs->elsewhere ? fs->elsewhere : "s-9",
                               fs->stall[0], fs->since[0]);
  kcld_monitor_visit_leases(v, fs->n);
}

/* The monitor shows what the walk reports (the stall detector, ops/stall.h,
 * decides): seconds since progress per held shard, kcld_shard_stalled
 * {shard,reason} while a stall is reported (with its reason, a new series
 * when the reason changes), and /healthz 503 listing it. */
static void test_monitor_health(void **state)
{
  uv_loop_t loop;
  struct kcld_monitor *mon = NULL;
  struct kcld_monitor_opts o;
  struct fake_shards fs;
  char why[256];
  (void)state;
  assert_int_equal(uv_loop_init(&loop), 0);
  memset(&fs, 0, sizeof(fs));
  fs.n = 2;
  fs.progress_ms[0] = fs.progress_ms[1] = uv_now(&loop);
  memset(&o, 0, sizeof(o));
  o.loop = &loop;
  o.listen = "127.0.0.1:0";
  o.walk = fake_walk;
  o.arg = &fs;
  assert_int_equal(kcld_monitor_start(&o, &mon), 0);
  assert_true(kcld_monitor_port(mon) > 0);
  assert_int_equal(kcld_monitor_healthy(mon, why, sizeof(why)), 1);
  /* No progress is not a stall by itself: the detector says when. */
  kcld_test_sleep_ms(600);
  uv_update_time(&loop);
  assert_int_equal(kcld_monitor_healthy(mon, why, sizeof(why)), 1);
  size_t len;
  char *text = kcld_metrics_render(kcld_monitor_metrics(mon), &len);
  const char *line = strstr(text, "kcld_shard_seconds_since_progress{shard="
                                  "\"s-0\"} ");
  assert_non_null(line);
  assert_true(strtod(strchr(line, ' ') + 1, NULL) >= 0.5);
  assert_non_null(strstr(text, "kcld_leases_held 2\n"));
  assert_null(strstr(text, "kcld_shard_stalled{"));
  free(text);
  /* s-0 reported stalled: unhealthy, named, with its reason and age. */
  fs.stall[0] = "no_iterator";
  fs.since[0] = fs.progress_ms[0];
  assert_int_equal(kcld_monitor_healthy(mon, why, sizeof(why)), 0);
  assert_non_null(strstr(why, "s-0: no_iterator"));
  text = kcld_metrics_render(kcld_monitor_metrics(mon), &len);
  assert_true(sample_of(text, "kcld_shard_stalled{shard=\"s-0\","
                        "reason=\"no_iterator\"}") == 1);
  assert_null(strstr(text, "kcld_shard_stalled{shard=\"s-1\""));
  free(text);
  int healthy = -1;
  char *body = kcld_monitor_health_json(mon, &healthy);
  json_error_t jerr;
  json_t *doc = json_loads(body, 0, &jerr);
  assert_non_null(doc);
  assert_int_equal(healthy, 0);
  assert_string_equal(json_string_value(json_object_get(doc, "status")),
                      "unhealthy");
  assert_int_equal(json_integer_value(json_object_get(doc, "shards")), 2);
  json_t *st = json_object_get(doc, "stalled");
  assert_int_equal(json_array_size(st), 1);
  json_t *one = json_array_get(st, 0);
  assert_string_equal(json_string_value(json_object_get(one, "shard")),
                      "s-0");
  assert_string_equal(json_string_value(json_object_get(one, "reason")),
                      "no_iterator");
  assert_true(json_integer_value(json_object_get(one,
                                                 "seconds_since_progress"))
              == 0); /* 600 ms: whole seconds */
  json_decref(doc);
  free(body);
  /* The reason changes: the old series goes, the new one is there. */
  fs.stall[0] = "throttled";
  assert_int_equal(kcld_monitor_healthy(mon, why, sizeof(why)), 0);
  text = kcld_metrics_render(kcld_monitor_metrics(mon), &len);
  assert_null(strstr(text, "reason=\"no_iterator\""));
  assert_true(sample_of(text, "kcld_shard_stalled{shard=\"s-0\","
                        "reason=\"throttled\"}") == 1);
  free(text);
  /* No longer reported: healthy, the gauge gone. */
  fs.stall[0] = NULL;
  assert_int_equal(kcld_monitor_healthy(mon, why, sizeof(why)), 1);
  text = kcld_metrics_render(kcld_monitor_metrics(mon), &len);
  assert_null(strstr(text, "kcld_shard_stalled{"));
  free(text);
  body = kcld_monitor_health_json(mon, &healthy);
  assert_int_equal(healthy, 1);
  assert_non_null(strstr(body, "\"status\":\"ok\""));
  assert_non_null(strstr(body, "\"stalled\":[]"));
  free(body);
  /* A shard held nowhere here (the lease layer's report) counts too, but
   * not as a held shard. */
  fs.n = 0;
  fs.stall[0] = "invalid_checkpoint";
  assert_int_equal(kcld_monitor_healthy(mon, why, sizeof(why)), 0);
  assert_non_null(strstr(why, "s-9: invalid_checkpoint"));
  body = kcld_monitor_health_json(mon, &healthy); /* that walk, fresh */
  assert_int_equal(healthy, 0);
  assert_non_null(strstr(body, "\"shards\":0"));
  assert_non_null(strstr(body, "\"s-9\""));
  free(body);
  /* A multi-stream lease key: the gauge, like /healthz, names its stream
   * and its shard apart. */
  fs.elsewhere = "123456789012:orders:1700000000:shardId-000000000003";
  assert_int_equal(kcld_monitor_healthy(mon, why, sizeof(why)), 0);
  text = kcld_metrics_render(kcld_monitor_metrics(mon), &len);
  assert_true(sample_of(text, "kcld_shard_stalled{shard=\"shardId-"
                        "000000000003\",stream=\"orders\",reason=\""
                        "invalid_checkpoint\"}") == 1);
  assert_null(strstr(text, "shard=\"123456789012:"));
  free(text);
  body = kcld_monitor_health_json(mon, &healthy);
  assert_non_null(strstr(body, "\"shard\":\"shardId-000000000003\""));
  assert_non_null(strstr(body, "\"stream\":\"orders\""));
  free(body);
  fs.elsewhere = NULL;
  fs.n = 2;
  fs.stall[0] = NULL;
  /* The standard families, and AWS errors by service, operation, code. */
  kcld_monitor_observe_aws(mon, "kinesis", "GetRecords", 0.01, KCLD_EAWS,
                           "ProvisionedThroughputExceededException");
  kcld_monitor_observe_aws(mon, "kinesis", "GetRecords", 0.01, KCLD_EAWS,
                           "ProvisionedThroughputExceededException");
  kcld_monitor_observe_aws(mon, "dynamodb", "UpdateItem", 5, KCLD_ETIMEDOUT,
                           "");
  kcld_monitor_observe_aws(mon, "sqs", "SendMessageBatch", 0.1, 0, "");
  kcld_monitor_observe_aws(mon, "sqs", "SendMessageBatch", 0.1,
                           KCLD_ECANCELED, "");
  text = kcld_metrics_render(kcld_monitor_metrics(mon), &len);
  assert_non_null(strstr(text, "kcld_build_info{version=\"" KCLD_VERSION_STRING
                               "\"} 1\n"));
  assert_non_null(strstr(text, "\nkcld_aws_errors_total{service=\"kinesis\","
                               "operation=\"GetRecords\",code=\"Provisioned"
                               "ThroughputExceededException\"} 2\n"));
  assert_non_null(strstr(text, "\nkcld_aws_errors_total{service=\"dynamodb\","
                               "operation=\"UpdateItem\",code=\"timeout\"} "
                               "1\n"));
  assert_null(strstr(text, "kcld_aws_errors_total{service=\"sqs\""));
  assert_true(sample_of(text, "process_cpu_seconds_total") > 0);
  assert_true(sample_of(text, "process_resident_memory_bytes") > 1e6);
  assert_true(sample_of(text, "process_open_fds") >= 3);
  double started = sample_of(text, "process_start_time_seconds");
  assert_true(started > 1.7e9 && started <= (double)time(NULL) + 1);
  free(text);
  /* A shard that is gone is forgotten. */
  fs.n = 0;
  assert_int_equal(kcld_monitor_healthy(mon, why, sizeof(why)), 1);
  text = kcld_metrics_render(kcld_monitor_metrics(mon), &len);
  assert_null(strstr(text, "kcld_shard_seconds_since_progress{"));
  free(text);
  kcld_monitor_close(mon);
  kcld_test_loop_finish(&loop);
}

/* 4096 shards: the second walk finds every shard's series by handle (no
 * lookups per shard), and shards no longer visited take their series with
 * them. */
#define MANY 4096

struct many {
  char ids[MANY][24];
  size_t n;
};

static void many_walk(void *arg, struct kcld_monitor_visit *v)
{
  struct many *ms = arg;
  for (size_t i = 0; i < ms->n; i++)
    kcld_monitor_visit_held(v, ms->ids[i], i);
}

static void test_monitor_walk_scales(void **state)
{
  uv_loop_t loop;
  struct kcld_monitor *mon = NULL;
  struct kcld_monitor_opts o;
  struct many *ms = calloc(1, sizeof(*ms));
  char why[128];
  (void)state;
  assert_non_null(ms);
  for (size_t i = 0; i < MANY; i++)
    snprintf(ms->ids[i], sizeof(ms->ids[i]), "shardId-%012zu", i);
  ms->n = MANY;
  assert_int_equal(uv_loop_init(&loop), 0);
  memset(&o, 0, sizeof(o));
  o.loop = &loop;
  o.walk = many_walk;
  o.arg = ms;
  assert_int_equal(kcld_monitor_start(&o, &mon), 0);
  struct kcld_metrics *m = kcld_monitor_metrics(mon);
  size_t base = kcld_metrics_series_count(m);
  kcld_monitor_healthy(mon, why, sizeof(why));
  /* One series per shard (the progress gauge; its bare sample went). */
  assert_int_equal(kcld_metrics_series_count(m), base - 1 + MANY);
  uint64_t p0 = kcld_metrics_probes(m);
  kcld_monitor_healthy(mon, why, sizeof(why));
  assert_true(kcld_metrics_probes(m) - p0 < 16); /* not per shard */
  ms->n = 10;
  kcld_monitor_healthy(mon, why, sizeof(why));
  assert_int_equal(kcld_metrics_series_count(m), base - 1 + 10);
  kcld_monitor_close(mon);
  kcld_test_loop_finish(&loop);
  free(ms);
}

/* ======== The daemon ======== */

/* Sum of every sample of `name` (any labels) in a Prometheus text. */
static double sum_samples(const char *text, const char *name, int *found)
{
  double sum = 0;
  size_t nl = strlen(name);
  *found = 0;
  for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : p) {
    if (strncmp(p, name, nl) != 0 || (p[nl] != ' ' && p[nl] != '{'))
      continue;
    const char *sp = strchr(p, ' ');
    const char *eol = strchr(p, '\n');
    if (p[nl] == '{')
      sp = strstr(p, "} ") ? strstr(p, "} ") + 1 : NULL;
    if (!sp || (eol && sp > eol))
      continue;
    sum += strtod(sp + 1, NULL);
    (*found)++;
  }
  return sum;
}

/* The value of the sample whose line starts with `series` (name and
 * labels exactly as rendered, e.g. `m_count{a="b"}`), or -1 when absent. */
static double sample_of(const char *text, const char *series)
{
  size_t n = strlen(series);
  for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : p)
    if (strncmp(p, series, n) == 0 && p[n] == ' ')
      return strtod(p + n + 1, NULL);
  return -1;
}

/* Payload bytes of every record in the stream's `shards` shards, read
 * with GetRecords from TRIM_HORIZON (what kcld should report handled). */
static double stream_bytes(const char *kinesis, const char *stream,
                           int shards, int *records)
{
  struct kcld_test_aws *aws = kcld_test_aws_new(kinesis, NULL, NULL);
  double bytes = 0;
  *records = 0;
  for (int i = 0; i < shards; i++) {
    char shard[32];
    snprintf(shard, sizeof(shard), "shardId-%012d", i);
    json_t *req = json_pack("{s:s,s:s,s:s}", "StreamName", stream, "ShardId",
                            shard, "ShardIteratorType", "TRIM_HORIZON");
    json_t *ans = kcld_test_aws_call(aws, 0, "GetShardIterator", req, NULL);
    json_decref(req);
    assert_non_null(ans);
    char *it = strdup(json_string_value(json_object_get(ans,
                                                        "ShardIterator")));
    json_decref(ans);
    for (int calls = 0; it && calls < 50; calls++) {
      req = json_pack("{s:s,s:i}", "ShardIterator", it, "Limit", 10000);
      ans = kcld_test_aws_call(aws, 0, "GetRecords", req, NULL);
      json_decref(req);
      assert_non_null(ans);
      json_t *recs = json_object_get(ans, "Records"), *rec;
      size_t k;
      json_array_foreach(recs, k, rec) {
        const char *d = json_string_value(json_object_get(rec, "Data"));
        size_t len = strlen(d);
        bytes += (double)(len / 4 * 3 - (len && d[len - 1] == '=') -
                          (len > 1 && d[len - 2] == '='));
        (*records)++;
      }
      free(it);
      it = NULL;
      if (json_array_size(recs) > 0 ||
          json_integer_value(json_object_get(ans, "MillisBehindLatest")) > 0)
        it = strdup(json_string_value(json_object_get(ans,
                                                      "NextShardIterator")));
      json_decref(ans);
    }
    free(it);
  }
  kcld_test_aws_free(aws);
  return bytes;
}

static int scrape(int port, const char *path, struct resp *r)
{
  static struct conn c;
  char msg[128];
  if (conn_open(&c, port) != 0)
    return -1;
  const char *e = get(&c, path, r, msg, sizeof(msg));
  conn_close(&c);
  return e ? -1 : 0;
}

/* The port from the daemon's "metrics server listening" log line. */
static int logged_port(const char *log)
{
  char *text = kcld_test_slurp(log, NULL);
  int port = 0;
  const char *p = text ? strstr(text, "\"metrics server listening\"") : NULL;
  if (p && (p = strstr(p, "\"address\":\"127.0.0.1:")))
    port = atoi(p + strlen("\"address\":\"127.0.0.1:"));
  free(text);
  return port;
}

static void test_daemon_metrics(void **state)
{
  struct kcld_emu emu;
  char dir[] = "/tmp/kcld-metrics-XXXXXX", conf[128], log[128], out[128],
       emf[128];
  struct kcld_produce_opts po;
  struct kcld_produce_result pr;
  struct kcld_config *cfg = NULL;
  char *errors = NULL;
  struct resp *r = calloc(1, sizeof(*r));
  int found = 0, port = 0, status;
  (void)state;
  assert_non_null(r);
  if (access(kcld_test_bin(), X_OK) != 0) {
    free(r);
    skip();
  }
  assert_int_equal(kcld_emu_start(&emu, "kinesis dynamodb"), 0);
  assert_non_null(mkdtemp(dir));
  snprintf(conf, sizeof(conf), "%s/kcld.yaml", dir);
  snprintf(log, sizeof(log), "%s/kcld.log", dir);
  snprintf(out, sizeof(out), "%s/out.jsonl", dir);
  snprintf(emf, sizeof(emf), "%s/emf.jsonl", dir);
  FILE *f = fopen(conf, "w");
  assert_non_null(f);
  fprintf(f,
          "application: metrics-app\nstream: metrics-stream\n"
          "region: us-east-1\n"
          "endpoints:\n  kinesis: %s\n  dynamodb: %s\n"
          "credentials:\n  access_key_id: test\n  secret_access_key: test\n"
          "shutdown_timeout: 10s\nworkers: 2\n"
          "lease:\n  failover_time: 1s\n"
          "fetch:\n  idle_time: 200ms\n"
          "metrics:\n  listen: 127.0.0.1:0\n  emf: %s\n"
          "handler:\n  type: stdout\n  path: %s\n"
          "log:\n  level: info\n",
          kcld_emu_url(&emu, "kinesis"), kcld_emu_url(&emu, "dynamodb"), emf,
          out);
  fclose(f);
  assert_int_equal(kcld_config_load(conf, &cfg, &errors), 0);
  struct kcld_test_aws *aws = kcld_test_aws_new(
    kcld_emu_url(&emu, "kinesis"), NULL, NULL);
  json_t *req = json_pack("{s:s,s:i}", "StreamName", "metrics-stream",
                          "ShardCount", 2);
  json_decref(kcld_test_aws_call(aws, 0, "CreateStream", req, NULL));
  json_decref(req);
  kcld_test_aws_free(aws);
  kcld_test_sleep_ms(600); /* kinesalite: CREATING -> ACTIVE */
  memset(&po, 0, sizeof(po));
  po.cfg = cfg;
  po.count = 300;
  po.seed = 3;
  assert_int_equal(kcld_produce_run(&po, &pr), 0);
  assert_int_equal(pr.produced, 300);
  int in_stream = 0;
  double bytes = stream_bytes(kcld_emu_url(&emu, "kinesis"),
                              "metrics-stream", 2, &in_stream);
  assert_int_equal(in_stream, 300);
  assert_true(bytes >= 300 * 50); /* reference events are JSON objects */

  pid_t pid = kcld_test_spawn_kcld(conf, log);
  unsigned long long t0 = kcld_test_now_ms();
  while (!(port = logged_port(log)) && kcld_test_now_ms() - t0 < 10000)
    kcld_test_sleep_ms(50);
  assert_true(port > 0);
  double fetched = 0, handled = 0;
  while (kcld_test_now_ms() - t0 < 30000) {
    if (scrape(port, "/metrics", r) == 0 && r->status == 200) {
      fetched = sum_samples(r->body, "kcld_records_fetched_total", &found);
      handled = sum_samples(r->body, "kcld_records_handled_total", &found);
      if (fetched == 300 && handled == 300)
        break;
    }
    kcld_test_sleep_ms(200);
  }
  if (fetched != 300 || handled != 300) {
    kcld_test_reap(pid);
    fail_msg("fetched %.0f handled %.0f of 300", fetched, handled);
  }
  assert_true(sum_samples(r->body, "kcld_leases_held", &found) == 2);
  sum_samples(r->body, "kcld_millis_behind_latest", &found);
  assert_int_equal(found, 2); /* one series per held shard */
  sum_samples(r->body, "kcld_shard_lag_seconds", &found);
  assert_int_equal(found, 2);
  sum_samples(r->body, "kcld_checkpoint_writes_total", &found);
  assert_int_equal(found, 2);
  assert_non_null(strstr(r->body, "# TYPE kcld_aws_call_duration_seconds "
                                  "histogram\n"));
  /* AWS latency: GetRecords at least once per shard, every observation in
   * the +Inf bucket, a sum of seconds that fits the run. */
  double gr = sample_of(r->body, "kcld_aws_call_duration_seconds_count"
                        "{service=\"kinesis\",operation=\"GetRecords\"}");
  double gr_calls = sum_samples(r->body, "kcld_get_records_calls_total",
                                &found);
  assert_true(gr >= 2);
  assert_true(gr <= gr_calls);
  assert_true(sample_of(r->body, "kcld_aws_call_duration_seconds_bucket"
                        "{service=\"kinesis\",operation=\"GetRecords\","
                        "le=\"+Inf\"}") == gr);
  double gr_sum = sample_of(r->body, "kcld_aws_call_duration_seconds_sum"
                            "{service=\"kinesis\",operation=\"GetRecords\"}");
  assert_true(gr_sum > 0 && gr_sum < gr * 30);
  assert_true(sample_of(r->body, "kcld_aws_call_duration_seconds_count"
                        "{service=\"dynamodb\",operation=\"UpdateItem\"}")
              >= 2); /* takes, renewals, checkpoints */
  /* Handler latency: one observation per answer. */
  double hc = sample_of(r->body, "kcld_handler_duration_seconds_count");
  assert_true(hc >= 2); /* two shards, so two batches at least */
  assert_true(hc <= sample_of(r->body, "kcld_handler_calls_total"));
  assert_true(sample_of(r->body, "kcld_handler_duration_seconds_sum") > 0);
  /* Bytes handled: every payload byte in the stream, as fetched. */
  assert_true(sample_of(r->body, "kcld_bytes_handled_total") == bytes);
  assert_true(sum_samples(r->body, "kcld_bytes_fetched_total", &found) ==
              bytes);
  /* Leases: both taken, none stolen or lost. */
  assert_true(sample_of(r->body, "kcld_leases_taken_total") >= 2);
  assert_true(sample_of(r->body, "kcld_leases_stolen_total") == 0);
  assert_true(sample_of(r->body, "kcld_leases_lost_total") == 0);
  assert_int_equal(scrape(port, "/healthz", r), 0);
  assert_int_equal(r->status, 200);

  /* status sees this worker holding both leases. */
  struct kcld_status_opts so;
  json_t *doc = NULL;
  memset(&so, 0, sizeof(so));
  so.cfg = cfg;
  so.lag = 1;
  assert_int_equal(kcld_status_collect(&so, &doc), 0);
  assert_true(json_is_true(json_object_get(doc, "healthy")));
  json_t *w = json_array_get(json_object_get(doc, "workers"), 0);
  assert_int_equal(json_integer_value(json_object_get(w, "leases_held")), 2);
  const char *wid = json_string_value(json_object_get(w, "worker_id"));
  size_t i;
  json_t *row;
  json_array_foreach(json_object_get(doc, "shards"), i, row)
    assert_string_equal(json_string_value(json_object_get(row, "owner")),
                        wid);
  json_decref(doc);

  kill(pid, SIGTERM);
  assert_true(kcld_test_wait_exit(pid, 20000, &status));
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  char *lines = kcld_test_slurp(emf, NULL);
  assert_non_null(lines);
  assert_non_null(strstr(lines, "\"CloudWatchMetrics\""));
  assert_non_null(strstr(lines, "\"kcld_records_handled_total\":300.0"));
  free(lines);
  /* Every line of the daemon's log names the application and the worker
   * (hostname:pid by default: the daemon's pid). */
  char worker[64];
  snprintf(worker, sizeof(worker), ":%d", (int)pid);
  lines = kcld_test_slurp(log, NULL);
  assert_non_null(lines);
  int nlines = 0;
  for (char *p = lines, *nl; *p; p = nl + 1) {
    assert_non_null(nl = strchr(p, '\n'));
    *nl = '\0';
    json_t *j = json_loads(p, 0, NULL);
    if (!j)
      fail_msg("not a JSON line: %s", p);
    assert_string_equal(json_string_value(json_object_get(j, "application")),
                        "metrics-app");
    const char *wk = json_string_value(json_object_get(j, "worker"));
    assert_non_null(wk);
    assert_non_null(strstr(wk, worker));
    json_decref(j);
    nlines++;
  }
  assert_true(nlines > 3);
  free(lines);
  unlink(conf);
  unlink(log);
  unlink(out);
  unlink(emf);
  rmdir(dir);
  /* The port is closed with the daemon. */
  assert_int_equal(scrape(port, "/healthz", r), -1);
  free(r);
  kcld_config_free(cfg);
  free(errors);
  kcld_emu_stop(&emu);
}

/* A metrics.listen whose port is taken: the daemon refuses to start, says
 * why, and exits 1 (it used to warn and run without /metrics and
 * /healthz). */
static void test_daemon_listen_taken(void **state)
{
  char dir[] = "/tmp/kcld-listen-XXXXXX", conf[128], log[128];
  struct sockaddr_in a;
  socklen_t alen = sizeof(a);
  int status, fd;
  (void)state;
  if (access(kcld_test_bin(), X_OK) != 0)
    skip();
  fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  assert_int_equal(listen(fd, 1), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
  assert_non_null(mkdtemp(dir));
  snprintf(conf, sizeof(conf), "%s/kcld.yaml", dir);
  snprintf(log, sizeof(log), "%s/kcld.log", dir);
  FILE *f = fopen(conf, "w");
  assert_non_null(f);
  /* Endpoints nobody answers on: start-up must stop before any call. */
  fprintf(f,
          "application: listen-app\nstream: listen-stream\n"
          "region: us-east-1\n"
          "endpoints:\n  kinesis: http://127.0.0.1:9\n"
          "  dynamodb: http://127.0.0.1:9\n"
          "credentials:\n  access_key_id: test\n  secret_access_key: test\n"
          "metrics:\n  listen: 127.0.0.1:%d\n"
          "handler:\n  type: stdout\n",
          ntohs(a.sin_port));
  fclose(f);
  pid_t pid = kcld_test_spawn_kcld(conf, log);
  if (!kcld_test_wait_exit(pid, 10000, &status)) {
    kcld_test_reap(pid);
    fail_msg("kcld kept running with its metrics port taken");
  }
  close(fd);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 1);
  char *text = kcld_test_slurp(log, NULL);
  assert_non_null(text);
  assert_non_null(strstr(text, "\"level\":\"error\",\"msg\":\"start-up "
                               "failed: cannot serve metrics.listen"));
  assert_non_null(strstr(text, "address already in use"));
  assert_null(strstr(text, "lease table ready"));
  free(text);
  unlink(conf);
  unlink(log);
  rmdir(dir);
}

/* ======== Tests ======== */

static void test_basic(void **state)
{
  struct fixture f;
  (void)state;
  up(&f, 0, 0);
  run_scenario(&f, sc_basic);
  down(&f);
}

static void test_pipelined(void **state)
{
  struct fixture f;
  (void)state;
  up(&f, 0, 0);
  run_scenario(&f, sc_pipelined);
  down(&f);
}

static void test_malformed(void **state)
{
  struct fixture f;
  (void)state;
  up(&f, 0, 0);
  run_scenario(&f, sc_malformed);
  down(&f);
}

static void test_concurrent(void **state)
{
  struct fixture f;
  (void)state;
  up(&f, 0, 0);
  run_scenario(&f, sc_concurrent);
  down(&f);
}

static void test_slowloris(void **state)
{
  struct fixture f;
  (void)state;
  up(&f, 300, 0);
  run_scenario(&f, sc_slowloris);
  down(&f);
}

static void test_connection_cap(void **state)
{
  struct fixture f;
  (void)state;
  up(&f, 0, 2);
  run_scenario(&f, sc_cap);
  down(&f);
}

static int count_lines(const char *text, const char *needle)
{
  int k = 0;
  for (const char *p = text; (p = strstr(p, needle)); p++)
    k++;
  return k;
}

static void test_slowloris_flood(void **state)
{
  struct fixture f;
  char path[] = "/tmp/kcld-flood-log-XXXXXX";
  int fd = mkstemp(path);
  FILE *log;
  (void)state;
  assert_true(fd >= 0);
  assert_non_null(log = fdopen(fd, "w"));
  kcld_log_setup(KCLD_LOG_INFO, KCLD_LOG_JSON, log);
  up(&f, 0, 0); /* the defaults: 64 connections, 3 s head deadline */
  double t0 = now_s();
  run_scenario(&f, sc_flood);
  double secs = now_s() - t0;
  down(&f);
  kcld_log_flush(1);
  kcld_log_setup(KCLD_LOG_INFO, KCLD_LOG_JSON, NULL);
  fclose(log);
  char *text = kcld_test_slurp(path, NULL);
  unlink(path);
  assert_non_null(text);
  /* The refusals are logged: a burst, then a few a second, summed up. */
  int lines = count_lines(text, "\"msg\":\"metrics server: too many "
                                "connections; closed the one waiting");
  int sums = count_lines(text, "\"suppressed_msg\":\"metrics server: too "
                               "many connections; closed the one waiting");
  assert_true(lines >= 1);
  assert_true(lines <= KCLD_LOG_BURST + KCLD_LOG_RATE * ((int)secs + 1));
  assert_true(sums >= 1);
  free(text);
}

static void test_close_with_clients(void **state)
{
  struct fixture f;
  (void)state;
  up(&f, 0, 0);
  run_scenario(&f, sc_leave_open);
  assert_int_equal(kcld_http_server_clients(f.srv), 1);
  down(&f); /* asserts the loop closes with the client still connected */
  close(s_open_fd);
}

static void test_bad_listen(void **state)
{
  uv_loop_t loop;
  struct kcld_http_server *s = NULL;
  struct kcld_http_server_opts o;
  const char *bad[] = {"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:99999",
                       "example.com:80", "[::1:80", "1.2.3:80", "::1:80"};
  (void)state;
  assert_int_equal(uv_loop_init(&loop), 0);
  memset(&o, 0, sizeof(o));
  o.loop = &loop;
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    o.listen = bad[i];
    assert_int_equal(kcld_http_server_start(&o, &s), KCLD_EINVAL);
    assert_null(s);
  }
  /* IPv6 loopback and "localhost" parse. */
  o.listen = "localhost:0";
  assert_int_equal(kcld_http_server_start(&o, &s), 0);
  kcld_http_server_close(s);
  o.listen = "[::1]:0";
  if (kcld_http_server_start(&o, &s) == 0) /* no IPv6 on some hosts */
    kcld_http_server_close(s);
  kcld_test_loop_finish(&loop);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_basic),
    cmocka_unit_test(test_pipelined),
    cmocka_unit_test(test_malformed),
    cmocka_unit_test(test_concurrent),
    cmocka_unit_test(test_slowloris),
    cmocka_unit_test(test_connection_cap),
    cmocka_unit_test(test_slowloris_flood),
    cmocka_unit_test(test_close_with_clients),
    cmocka_unit_test(test_bad_listen),
    cmocka_unit_test(test_monitor_health),
    cmocka_unit_test(test_monitor_walk_scales),
    cmocka_unit_test(test_daemon_metrics),
    cmocka_unit_test(test_daemon_listen_taken),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
