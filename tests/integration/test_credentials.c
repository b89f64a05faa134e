/* test_credentials.c — container credentials and EC2 instance metadata
 * (IMDSv2) against the fake endpoint tests/emulators/lib/imds.js: the
 * request flow, the container URI rules and authorization token, retries
 * with backoff, background refresh ahead of Expiration while get() keeps
 * answering from the cache, cancellation, the region, and that no secret
 * reaches the log. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>
#include <uv.h>

#include "../harness/creds.h"
#include "../harness/harness.h"
#include "aws/credentials.h"
#include "aws/http.h"
#include "err.h"
#include "log.h"

static struct kcld_emu s_emu;
static const char *s_url;

static const char *const s_vars[] = {
  "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
  "AWS_ACCESS_KEY", "AWS_SECRET_KEY", "AWS_PROFILE", "AWS_REGION",
  "AWS_DEFAULT_REGION", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
  "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN",
  "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "AWS_EC2_METADATA_DISABLED",
  "AWS_EC2_METADATA_SERVICE_ENDPOINT",
  "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "AWS_METADATA_SERVICE_TIMEOUT",
  NULL};

/* ---------- the control plane of the fake endpoint (blocking curl) ------ */

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
  FILE *f = arg;
  return fwrite(p, size, n, f);
}

static json_t *emu_call(const char *method, const char *path, const char *body)
{
  char url[256], *buf = NULL;
  size_t len = 0;
  long status = 0;
  FILE *mem = open_memstream(&buf, &len);
  CURL *e = curl_easy_init();
  json_error_t jerr;

  assert_non_null(mem);
  assert_non_null(e);
  snprintf(url, sizeof(url), "%s%s", s_url, path);
  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
  if (body)
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, mem);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 5000L);
  assert_int_equal(curl_easy_perform(e), CURLE_OK);
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(e);
  fclose(mem);
  assert_int_equal(status, 200);
  json_t *j = json_loads(buf, 0, &jerr);
  if (!j)
    fail_msg("bad JSON from the fake endpoint: %s", buf);
  free(buf);
  return j;
}

static void control(const char *json)
{
  json_decref(emu_call("POST", "/__control", json));
}

static long stat_int(const char *name)
{
  json_t *j = emu_call("GET", "/__stats", NULL);
  long v = (long)json_integer_value(json_object_get(j, name));
  json_decref(j);
  return v;
}

/* A string stat, copied into a static buffer ("" when null). */
static const char *stat_str(const char *name)
{
  static char out[512];
  json_t *j = emu_call("GET", "/__stats", NULL);
  const char *v = json_string_value(json_object_get(j, name));
  snprintf(out, sizeof(out), "%s", v ? v : "");
  json_decref(j);
  return out;
}

/* ---------- fixture ---------- */

struct env {
  uv_loop_t loop;
  struct kcld_http *http;
  struct kcld_credentials *creds;
  struct kcld_credentials_opts opts;
  char *log;
  size_t log_len;
  FILE *log_mem;
};

static int group_setup(void **state)
{
  (void)state;
  curl_global_init(CURL_GLOBAL_DEFAULT);
  if (kcld_emu_start(&s_emu, "imds") != 0)
    return -1;
  s_url = kcld_emu_url(&s_emu, "imds");
  return s_url ? 0 : -1;
}

static int group_teardown(void **state)
{
  (void)state;
  kcld_emu_stop(&s_emu);
  kcld_http_global_cleanup();
  return 0;
}

static int setup(void **state)
{
  struct env *e = calloc(1, sizeof(*e));
  for (size_t i = 0; s_vars[i]; i++)
    unsetenv(s_vars[i]);
  /* No shared files either. */
  setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/kcld/credentials", 1);
  setenv("AWS_CONFIG_FILE", "/nonexistent/kcld/config", 1);
  /* The tests count the fake's requests: a loaded machine must not turn
   * a slow answer into a timeout and a retry (the 1 s default is tested
   * on its own, test_imds_slow_then_answers). */
  setenv("AWS_METADATA_SERVICE_TIMEOUT", "5", 1);
  json_decref(emu_call("POST", "/__reset", "{}"));
  uv_loop_init(&e->loop);
  if (kcld_http_new(&e->loop, NULL, &e->http) != 0)
    return -1;
  e->opts.loop = &e->loop;
  e->opts.http = e->http;
  e->opts.imds_endpoint = s_url;
  e->opts.container_endpoint = s_url;
  e->log_mem = open_memstream(&e->log, &e->log_len);
  kcld_log_setup(KCLD_LOG_DEBUG, KCLD_LOG_JSON, e->log_mem);
  *state = e;
  return 0;
}

static int teardown(void **state)
{
  struct env *e = *state;
  if (e->creds)
    kcld_credentials_close(e->creds);
  kcld_http_close(e->http);
  kcld_test_loop_finish(&e->loop);
  kcld_log_setup(KCLD_LOG_INFO, KCLD_LOG_JSON, NULL);
  fclose(e->log_mem);
  free(e->log);
  for (size_t i = 0; s_vars[i]; i++)
    unsetenv(s_vars[i]);
  unsetenv("AWS_SHARED_CREDENTIALS_FILE");
  unsetenv("AWS_CONFIG_FILE");
  free(e);
  return 0;
}

/* The log so far (NUL-terminated). */
static const char *log_text(struct env *e)
{
  fflush(e->log_mem);
  return e->log ? e->log : "";
}

static void start(struct env *e)
{
  assert_int_equal(kcld_credentials_new(&e->opts, &e->creds), 0);
}

/* get() and wait for the answer; returns 1 when it came synchronously. */
static int get_wait(struct env *e, struct kcld_test_got *g, unsigned timeout_ms)
{
  memset(g, 0, sizeof(*g));
  kcld_credentials_get(e->creds, kcld_test_on_creds, g);
  int sync = g->called;
  kcld_test_run_until(&e->loop, &g->called, timeout_ms);
  assert_int_equal(g->called, 1);
  return sync;
}

static void assert_fake_set(const struct kcld_test_got *g, int n)
{
  char want[32];
  snprintf(want, sizeof(want), "ASIAFAKE%04d", n);
  assert_int_equal(g->err, 0);
  assert_string_equal(g->ak, want);
  assert_non_null(strstr(g->sk, "fakeSecret"));
  assert_non_null(strstr(g->tok, "fakeSessionToken"));
}

/* ================= container ================= */

static void test_container_relative_uri(void **state)
{
  struct env *e = *state;
  struct kcld_test_got g;
  setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/abc-123",
         1);
  start(e);
  time_t before = time(NULL);
  assert_false(get_wait(e, &g, 5000));
  assert_fake_set(&g, 1);
  /* Expiration parsed from the answer (the fake says now + 3600 s). */
  assert_true(g.exp >= before + 3600 - 2 && g.exp <= time(NULL) + 3600 + 1);
  assert_string_equal(kcld_credentials_source(e->creds), "container");
  assert_int_equal(stat_int("container_creds"), 1);
  assert_int_equal(stat_int("token_puts"), 0); /* no IMDS */
  assert_string_equal(stat_str("last_path"), "/v2/credentials/abc-123");
  assert_string_equal(stat_str("last_container_auth"), "");
  assert_non_null(strstr(log_text(e), "credentials from container"));

  /* The cached set answers at once, without a request. */
  assert_true(get_wait(e, &g, 100));
  assert_fake_set(&g, 1);
  assert_int_equal(stat_int("container_creds"), 1);
}

static void test_container_full_uri_with_token(void **state)
{
  struct env *e = *state;
  struct kcld_test_got g;
  char uri[256];
  snprintf(uri, sizeof(uri), "%s/eks/pod-identity", s_url);
  setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri, 1);
  setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "Bearer pod-token-1", 1);
  control("{\"container_auth\": \"Bearer pod-token-1\"}");
  start(e);
  get_wait(e, &g, 5000);
  assert_fake_set(&g, 1);
  assert_string_equal(stat_str("last_container_auth"), "Bearer pod-token-1");
  assert_string_equal(stat_str("last_path"), "/eks/pod-identity");
  assert_int_equal(stat_int("unauthorized"), 0);
}

static void test_container_wrong_token_fails_without_retry(void **state)
{
  struct env *e = *state;
  struct kcld_test_got g;
  char uri[256];
  snprintf(uri, sizeof(uri), "%s/eks/pod-identity", s_url);
  setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri, 1);
  setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "Bearer wrong", 1);
  control("{\"container_auth\": \"Bearer right\"}");
  start(e);
  get_wait(e, &g, 5000);
  assert_int_equal(g.err, KCLD_ECREDS);
  assert_null(kcld_credentials_source(e->creds));
  assert_int_equal(stat_int("unauthorized"), 1);
  assert_int_equal(stat_int("container_creds"), 1); /* a 401 is final */
  assert_non_null(strstr(log_text(e), "HTTP 401"));
  /* Never IMDS instead: the container variables choose the provider. */
  assert_int_equal(stat_int("token_puts"), 0);
}

/* The token file wins over the variable and is read again on each fetch; a
 * set that expires within 5 minutes is refreshed in the background. */
static void test_container_token_file_reread(void **state)
{
  struct env *e = *state;
  struct kcld_test_got g;
  char path[] = "/tmp/kcld-pod-token-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, "file-token-1\n", 13), 13);
  close(fd);
  setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/creds", 1);
  setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "variable-token", 1);
  setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", path, 1);
  control("{\"container_auth\": \"file-token-1\", \"expires_in\": 302}");
  start(e);
  get_wait(e, &g, 5000);
  assert_fake_set(&g, 1);
  assert_string_equal(stat_str("last_container_auth"), "file-token-1");

  /* The agent rotates the token; the refresh (due 2 s from now) must send
   * the new one. */
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs("file-token-2", f);
  fclose(f);
  control("{\"container_auth\": \"file-token-2\", \"expires_in\": 3600}");
  for (int i = 0; i < 60 && stat_int("container_creds") < 2; i++)
    kcld_test_run_until(&e->loop, &(int){0}, 100);
  assert_int_equal(stat_int("container_creds"), 2);
  assert_int_equal(stat_int("unauthorized"), 0);
  assert_string_equal(stat_str("last_container_auth"), "file-token-2");
  kcld_test_run_until(&e->loop, &(int){0}, 100);
  assert_true(get_wait(e, &g, 100));
  assert_fake_set(&g, 2);
  assert_non_null(strstr(log_text(e), "credentials refreshed"));
  unlink(path);
}

/* http to any host but loopback and the ECS / EKS addresses is refused
 * before a request is made; so is another scheme. */
static void test_container_full_uri_refused(void **state)
{
  struct env *e = *state;
  static const char *const refused[] = {
    "http://192.0.2.10/creds", "http://169.254.170.3/creds",
    "http://169.254.169.254/latest", "http://[fd00:ec2::24]/creds",
    "http://example.com/creds", "ftp://127.0.0.1/creds", "not a url", NULL};
  struct kcld_test_got g;
  for (size_t i = 0; refused[i]; i++) {
    setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", refused[i], 1);
    start(e);
    memset(&g, 0, sizeof(g));
    kcld_credentials_get(e->creds, kcld_test_on_creds, &g);
    if (g.called != 1)
      fail_msg("%s: not refused at once", refused[i]);
    assert_int_equal(g.err, KCLD_ECREDS);
    kcld_credentials_close(e->creds);
    e->creds = NULL;
  }
  assert_int_equal(stat_int("requests"), 0);
  assert_non_null(strstr(log_text(e), "host is not allowed"));
}

static void test_container_full_uri_localhost_allowed(void **state)
{
  struct env *e = *state;
  struct kcld_test_got g;
  char uri[256];
  /* http://127.0.0.1:PORT -> http://localhost:PORT */
  snprintf(uri, sizeof(uri), "http://localhost%s/creds", strrchr(s_url, ':'));
  setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri, 1);
  start(e);
  get_wait(e, &g, 5000);
  assert_fake_set(&g, 1);
}

/* ================= IMDS ================= */

static void test_imds_v2_flow(void **state)
{
  struct env *e = *state;
  struct kcld_test_got g;
  control("{\"role\": \"kcld-reader\"}");
  start(e);
  assert_false(get_wait(e, &g, 5000));
  assert_fake_set(&g, 1);
  assert_true(g.exp > time(NULL) + 3500);
  assert_string_equal(kcld_credentials_source(e->creds), "imds");
  assert_int_equal(stat_int("token_puts"), 1);
  assert_string_equal(stat_str("last_ttl"), "21600");
  assert_int_equal(stat_int("role_lists"), 1);
  assert_int_equal(stat_int("imds_creds"), 1);
  assert_int_equal(stat_int("unauthorized"), 0); /* token on every GET */
  assert_string_equal(stat_str("last_path"),
                      "/latest/meta-data/iam/security-credentials/"
                      "kcld-reader");
  const char *log = log_text(e);
  assert_non_null(strstr(log, "credentials from imds"));
  assert_non_null(strstr(log, "\"role\":\"kcld-reader\""));
}

/* Metadata requests never go through a proxy, whatever the environment
 * says (both spellings point at a port nothing listens on here). */
static void test_metadata_never_proxied(void **state)
{
  struct env *e = *state;
  struct kcld_test_got g;
  static const char *const vars[] = {"http_proxy", "HTTP_PROXY"};
  for (int i = 0; i < 2; i++) {
    kcld_http_close(e->http);
    setenv(vars[i], "http://127.0.0.1:1", 1);
    assert_int_equal(kcld_http_new(&e->loop, NULL, &e->http), 0);
    unsetenv(vars[i]);
    e->opts.http = e->http;
    if (e->creds)
      kcld_credentials_close(e->creds);
    e->creds = NULL;
    start(e);
    get_wait(e, &g, 5000);
    assert_int_equal(g.err, 0);
    assert_string_equal(kcld_credentials_source(e->creds), "imds");
  }
  /* The container endpoint neither. */
  kcld_http_close(e->http);
  setenv("http_proxy", "http://127.0.0.1:1", 1);
  assert_int_equal(kcld_http_new(&e->loop, NULL, &e->http), 0);
  unsetenv("http_proxy");
  e->opts.http = e->http;
  kcld_credentials_close(e->creds);
  e->creds = NULL;
  setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/p", 1);
  start(e);
  get_wait(e, &g, 5000);
  assert_int_equal(g.err, 0);
  assert_string_equal(kcld_credentials_source(e->creds), "container");
}

static void test_imds_endpoint_from_env(void **state)
{
  struct env *e = *state;
  struct kcld_test_got g;
  char ep[256];
  snprintf(ep, sizeof(ep), "%s/", s_url); /* a trailing slash is fine */
  setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", ep, 1);
  e->opts.imds_endpoint = NULL;
  start(e);
  get_wait(e, &g, 5000);
  assert_fake_set(&g, 1);
  assert_int_equal(stat_int("unauthorized"), 0);
}

static void test_imds_disabled(void **state)
{
  struct env *e = *state;
  struct kcld_test_got g;
  setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
  start(e);
  assert_true(get_wait(e, &g, 1000));
  assert_int_equal(g.err, KCLD_ECREDS);
  assert_int_equal(stat_int("requests"), 0);
  assert_non_null(strstr(log_text(e), "AWS_EC2_METADATA_DISABLED"));
}

/* The first token request outlasts the 1 s timeout; the retry succeeds. */
static void test_imds_slow_then_answers(void **state)
{
  struct env *e = *state;
  struct kcld_test_got g;
  control("{\"delay_ms\": 1500, \"delay_count\": 1}");
  unsetenv("AWS_METADATA_SERVICE_TIMEOUT"); /* the default, 1 s */
  start(e);
  uint64_t t0 = uv_hrtime();
  get_wait(e, &g, 8000);
  uint64_t ms = (uv_hrtime() - t0) / 1000000;
  assert_fake_set(&g, 1);
  assert_int_equal(stat_int("delayed"), 1);
  /* Two token PUTs (the slow one counted on arrival), role, credentials. */
  assert_int_equal(stat_int("requests"), 4);
  assert_true(ms >= 1000); /* it did wait for the timeout */
  assert_true(ms < 4000);
}

/* Two 500s, then success: retried with backoff within one fetch. */
static void test_imds_transient_errors_retried(void **state)
{
  struct env *e = *state;
  struct kcld_test_got g;
  control("{\"fail_count\": 2}");
  start(e);
  get_wait(e, &g, 8000);
  assert_fake_set(&g, 1);
  assert_int_equal(stat_int("failed"), 2);
  assert_int_equal(stat_int("token_puts"), 3);
}

static void test_imds_failing(void **state)
{
  struct env *e = *state;
  struct kcld_test_got g;
  control("{\"fail_count\": -1}");
  start(e);
  get_wait(e, &g, 8000);
  assert_int_equal(g.err, KCLD_ECREDS);
  assert_null(kcld_credentials_source(e->creds));
  assert_int_equal(stat_int("requests"), 3); /* three attempts, then stop */
  const char *log = log_text(e);
  assert_non_null(
    strstr(log, "\"level\":\"error\",\"msg\":\"no credentials\""));
  assert_non_null(strstr(log, "\"provider\":\"imds\""));
  assert_non_null(strstr(log, "token request: HTTP 500 after 3 attempts"));

  /* The next get() tries again, and succeeds once IMDS is back. */
  control("{\"fail_count\": 0}");
  get_wait(e, &g, 8000);
  assert_fake_set(&g, 1);
}

static void test_imds_unreachable(void **state)
{
  struct env *e = *state;
  struct kcld_test_got g;
  /* A port nothing listens on: connection refused, three times. */
  uv_tcp_t probe;
  struct sockaddr_in addr;
  struct sockaddr_storage bound;
  int blen = sizeof(bound);
  char ep[64];
  uv_tcp_init(&e->loop, &probe);
  uv_ip4_addr("127.0.0.1", 0, &addr);
  assert_int_equal(uv_tcp_bind(&probe, (struct sockaddr *)&addr, 0), 0);
  uv_tcp_getsockname(&probe, (struct sockaddr *)&bound, &blen);
  snprintf(ep, sizeof(ep), "http://127.0.0.1:%d",
           ntohs(((struct sockaddr_in *)&bound)->sin_port));
  uv_close((uv_handle_t *)&probe, NULL);
  e->opts.imds_endpoint = ep;
  start(e);
  get_wait(e, &g, 8000);
  assert_int_equal(g.err, KCLD_ECREDS);
  assert_non_null(strstr(log_text(e), "after 3 attempts"));
}

static void test_imds_no_role(void **state)
{
  struct env *e = *state;
  struct kcld_test_got g;
  control("{\"role\": \"\"}");
  start(e);
  get_wait(e, &g, 5000);
  assert_int_equal(g.err, KCLD_ECREDS);
  assert_non_null(strstr(log_text(e), "no IAM role"));
}

static void test_imds_code_not_success(void **state)
{
  struct env *e = *state;
  struct kcld_test_got g;
  control("{\"code\": \"AssumeRoleUnauthorizedAccess\"}");
  start(e);
  get_wait(e, &g, 5000);
  assert_int_equal(g.err, KCLD_ECREDS);
  assert_non_null(strstr(log_text(e), "AssumeRoleUnauthorizedAccess"));
}

/* Callers that ask while a fetch is under way wait for it: one fetch, every
 * callback once. */
static void test_concurrent_gets_share_one_fetch(void **state)
{
  struct env *e = *state;
  struct kcld_test_got g[6];
  int done = 0;
  memset(g, 0, sizeof(g));
  control("{\"delay_ms\": 200, \"delay_count\": 1}");
  start(e);
  for (int i = 0; i < 6; i++) {
    kcld_credentials_get(e->creds, kcld_test_on_creds, &g[i]);
    assert_int_equal(g[i].called, 0);
  }
  for (int i = 0; i < 50 && !done; i++) {
    kcld_test_run_until(&e->loop, &g[5].called, 100);
    done = g[5].called;
  }
  for (int i = 0; i < 6; i++) {
    assert_int_equal(g[i].called, 1);
    assert_fake_set(&g[i], 1);
  }
  assert_int_equal(stat_int("token_puts"), 1);
  assert_int_equal(stat_int("imds_creds"), 1);
}

/* ================= background refresh ================= */

struct ticker {
  uv_timer_t timer;
  struct env *e;
  int ticks, sync, async;
  char first_ak[128], last_ak[128];
  struct kcld_test_got g;
};

/* Asks for credentials every 50 ms as a busy client would; every answer
 * must come at once. */
static void on_tick(uv_timer_t *t)
{
  struct ticker *k = t->data;
  memset(&k->g, 0, sizeof(k->g));
  kcld_credentials_get(k->e->creds, kcld_test_on_creds, &k->g);
  k->ticks++;
  if (k->g.called == 1 && k->g.err == 0) {
    k->sync++;
    if (!k->first_ak[0])
      snprintf(k->first_ak, sizeof(k->first_ak), "%s", k->g.ak);
    snprintf(k->last_ak, sizeof(k->last_ak), "%s", k->g.ak);
  } else {
    k->async++;
  }
}

/* Runs the ticker until `key` in the stats reaches `want` (or 8 s). */
static void tick_until(struct ticker *k, const char *key, long want)
{
  uv_timer_init(&k->e->loop, &k->timer);
  k->timer.data = k;
  uv_timer_start(&k->timer, on_tick, 0, 50);
  for (int i = 0; i < 80 && stat_int(key) < want; i++)
    kcld_test_run_until(&k->e->loop, &(int){0}, 100);
  /* Let the answer land. */
  kcld_test_run_until(&k->e->loop, &(int){0}, 150);
  uv_close((uv_handle_t *)&k->timer, NULL);
  uv_run(&k->e->loop, UV_RUN_NOWAIT);
}

static void test_background_refresh_before_expiry(void **state)
{
  struct env *e = *state;
  struct kcld_test_got g;
  struct ticker k;
  /* Expires in 302 s: the refresh is due 5 minutes ahead, i.e. in 2 s. */
  control("{\"expires_in\": 302}");
  start(e);
  get_wait(e, &g, 5000);
  assert_fake_set(&g, 1);
  control("{\"expires_in\": 3600}");

  memset(&k, 0, sizeof(k));
  k.e = e;
  tick_until(&k, "imds_creds", 2);
  assert_int_equal(stat_int("imds_creds"), 2);
  assert_int_equal(stat_int("token_puts"), 2);
  assert_true(k.ticks > 20);
  assert_int_equal(k.async, 0); /* get() never waited for the refresh */
  assert_string_equal(k.first_ak, "ASIAFAKE0001");
  assert_string_equal(k.last_ak, "ASIAFAKE0002");
  assert_non_null(strstr(log_text(e), "credentials refreshed"));
  /* The new set lasts an hour: no further refresh is due. */
  kcld_test_run_until(&e->loop, &(int){0}, 500);
  assert_int_equal(stat_int("imds_creds"), 2);
}

/* The refresh fails (three 500s): the current set stays in use, and a retry
 * with backoff gets the new one. */
static void test_refresh_failure_keeps_current_set(void **state)
{
  struct env *e = *state;
  struct kcld_test_got g;
  struct ticker k;
  control("{\"expires_in\": 302}");
  start(e);
  get_wait(e, &g, 5000);
  assert_fake_set(&g, 1);
  control("{\"expires_in\": 3600, \"fail_count\": 3}");

  memset(&k, 0, sizeof(k));
  k.e = e;
  tick_until(&k, "imds_creds", 2);
  assert_int_equal(stat_int("failed"), 3);
  assert_int_equal(stat_int("imds_creds"), 2);
  assert_int_equal(k.async, 0);
  assert_string_equal(k.first_ak, "ASIAFAKE0001");
  assert_string_equal(k.last_ak, "ASIAFAKE0002");
  const char *log = log_text(e);
  assert_non_null(strstr(log, "credentials refresh failed; keeping the "
                              "current set"));
  assert_non_null(strstr(log, "credentials refreshed"));
}

/* A set inside its last minute is not served at once any more: get() waits
 * for a fetch, and when that fails the set (not yet expired) still answers. */
static void test_stale_set_served_when_fetch_fails(void **state)
{
  struct env *e = *state;
  struct kcld_test_got g;
  control("{\"expires_in\": 40}");
  start(e);
  get_wait(e, &g, 5000);
  assert_fake_set(&g, 1);
  control("{\"fail_count\": -1}");
  /* For a few seconds after a fetch the short-lived set answers at once. */
  assert_true(get_wait(e, &g, 100));
  assert_int_equal(stat_int("requests"), 3);
  kcld_test_run_until(&e->loop, &(int){0}, 5200);
  assert_false(get_wait(e, &g, 8000));
  assert_fake_set(&g, 1);
  assert_int_equal(stat_int("failed"), 3);
  assert_non_null(strstr(log_text(e), "keeping the current set"));
}

/* ================= cancellation ================= */

static void test_destroy_cancels_waiters(void **state)
{
  struct env *e = *state;
  struct kcld_test_got g1 = {0}, g2 = {0};
  control("{\"delay_ms\": 300, \"delay_count\": -1}");
  start(e);
  kcld_credentials_get(e->creds, kcld_test_on_creds, &g1);
  kcld_credentials_get(e->creds, kcld_test_on_creds, &g2);
  kcld_test_run_until(&e->loop, &(int){0}, 100); /* the token PUT is out */
  assert_int_equal(kcld_http_pending(e->http), 1);
  kcld_credentials_close(e->creds);
  e->creds = NULL;
  assert_int_equal(g1.called, 1);
  assert_int_equal(g1.err, KCLD_ECANCELED);
  assert_int_equal(g2.called, 1);
  assert_int_equal(g2.err, KCLD_ECANCELED);
  assert_int_equal(kcld_http_pending(e->http), 0);
}

static void test_destroy_during_backoff(void **state)
{
  struct env *e = *state;
  struct kcld_test_got g = {0};
  control("{\"fail_count\": 1}");
  start(e);
  kcld_credentials_get(e->creds, kcld_test_on_creds, &g);
  assert_int_equal(kcld_http_pending(e->http), 1);
  /* Once the 500 is in, nothing is in flight until the retry (50-100 ms). */
  int in_backoff = 0;
  for (int i = 0; i < 400 && !in_backoff; i++) {
    kcld_test_run_until(&e->loop, &(int){0}, 2);
    in_backoff = kcld_http_pending(e->http) == 0;
  }
  assert_true(in_backoff);
  assert_int_equal(g.called, 0);
  assert_int_equal(stat_int("failed"), 1);
  kcld_credentials_close(e->creds);
  e->creds = NULL;
  assert_int_equal(g.err, KCLD_ECANCELED);
}

static void test_http_closed_first(void **state)
{
  struct env *e = *state;
  struct kcld_test_got g = {0};
  control("{\"delay_ms\": 300, \"delay_count\": -1}");
  start(e);
  kcld_credentials_get(e->creds, kcld_test_on_creds, &g);
  kcld_test_run_until(&e->loop, &(int){0}, 50);
  kcld_http_close(e->http);
  assert_int_equal(g.called, 1);
  assert_int_equal(g.err, KCLD_ECANCELED);
  /* The provider stays usable for local answers and does not touch the
   * closed client again. */
  kcld_credentials_get(e->creds, kcld_test_on_creds, &g);
  assert_int_equal(g.called, 2);
  assert_int_equal(g.err, KCLD_ECREDS);
  kcld_credentials_close(e->creds);
  e->creds = NULL;
  e->http = NULL;
}

/* ================= region ================= */

struct region_got {
  int called, err;
  char region[64];
};

static void on_region(int err, const char *region, void *arg)
{
  struct region_got *r = arg;
  r->called++;
  r->err = err;
  snprintf(r->region, sizeof(r->region), "%s", region ? region : "(null)");
}

static void test_region_from_imds(void **state)
{
  struct env *e = *state;
  struct region_got r = {0};
  control("{\"region\": \"ap-northeast-2\"}");
  assert_int_equal(kcld_region_from_imds(&e->loop, e->http, s_url, on_region,
                                         &r), 0);
  assert_int_equal(r.called, 0); /* never before returning */
  kcld_test_run_until(&e->loop, &r.called, 5000);
  assert_int_equal(r.called, 1);
  assert_int_equal(r.err, 0);
  assert_string_equal(r.region, "ap-northeast-2");
  assert_int_equal(stat_int("token_puts"), 1);
  assert_int_equal(stat_int("region"), 1);
  assert_int_equal(stat_int("unauthorized"), 0);

  /* Failing IMDS: an error, no crash. */
  memset(&r, 0, sizeof(r));
  control("{\"fail_count\": -1}");
  assert_int_equal(kcld_region_from_imds(&e->loop, e->http, s_url, on_region,
                                         &r), 0);
  kcld_test_run_until(&e->loop, &r.called, 8000);
  assert_int_equal(r.called, 1);
  assert_true(r.err < 0);
  assert_string_equal(r.region, "(null)");
}

/* ================= secrets ================= */

static void assert_absent(const char *log, const char *secret)
{
  if (secret[0] && strstr(log, secret))
    fail_msg("secret \"%s\" found in the log:\n%s", secret, log);
}

/* Every path that logs, at debug level: nothing secret in the lines. */
static void test_log_has_no_secrets(void **state)
{
  struct env *e = *state;
  struct kcld_test_got g;
  char imds_token[512], uri[256];
  struct ticker k;

  /* IMDS: fetch, a refresh after a failure. */
  control("{\"expires_in\": 302, \"fail_count\": 1}");
  start(e);
  get_wait(e, &g, 5000);
  assert_fake_set(&g, 1);
  snprintf(imds_token, sizeof(imds_token), "%s", stat_str("last_token"));
  assert_true(strlen(imds_token) > 10);
  control("{\"expires_in\": 3600, \"fail_count\": 3}");
  memset(&k, 0, sizeof(k));
  k.e = e;
  tick_until(&k, "imds_creds", 2);
  assert_string_equal(k.last_ak, "ASIAFAKE0002");
  kcld_credentials_close(e->creds);
  e->creds = NULL;

  /* Container with a token, then with a wrong one. */
  snprintf(uri, sizeof(uri), "%s/creds", s_url);
  setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri, 1);
  setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "Bearer sekrit-pod-token", 1);
  control("{\"container_auth\": \"Bearer sekrit-pod-token\"}");
  start(e);
  get_wait(e, &g, 5000);
  assert_int_equal(g.err, 0);
  kcld_credentials_close(e->creds);
  e->creds = NULL;
  control("{\"container_auth\": \"Bearer other\"}");
  start(e);
  get_wait(e, &g, 5000);
  assert_int_equal(g.err, KCLD_ECREDS);

  const char *log = log_text(e);
  assert_non_null(strstr(log, "credentials from imds"));
  assert_non_null(strstr(log, "credentials from container"));
  assert_absent(log, "fakeSecret");       /* every secret key issued */
  assert_absent(log, "fakeSessionToken"); /* every session token issued */
  assert_absent(log, imds_token);
  assert_absent(log, "sekrit-pod-token");
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
  const struct CMUnitTest tests[] = {
    T(test_container_relative_uri),
    T(test_container_full_uri_with_token),
    T(test_container_wrong_token_fails_without_retry),
    T(test_container_token_file_reread),
    T(test_container_full_uri_refused),
    T(test_container_full_uri_localhost_allowed),
    T(test_imds_v2_flow),
    T(test_metadata_never_proxied),
    T(test_imds_endpoint_from_env),
    T(test_imds_disabled),
    T(test_imds_slow_then_answers),
    T(test_imds_transient_errors_retried),
    T(test_imds_failing),
    T(test_imds_unreachable),
    T(test_imds_no_role),
    T(test_imds_code_not_success),
    T(test_concurrent_gets_share_one_fetch),
    T(test_background_refresh_before_expiry),
    T(test_refresh_failure_keeps_current_set),
    T(test_stale_set_served_when_fetch_fails),
    T(test_destroy_cancels_waiters),
    T(test_destroy_during_backoff),
    T(test_http_closed_first),
    T(test_region_from_imds),
    T(test_log_has_no_secrets),
  };
#undef T
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
