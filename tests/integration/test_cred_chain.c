/* test_cred_chain.c — the providers that go through STS, a process or
 * IAM Identity Center, against the fake endpoint tests/emulators/lib/sts.js
 * (which checks AssumeRole's SigV4 signature and the web identity token):
 * web identity (the token file read again at each refresh), assume-role
 * chains and loops, credential_source, credential_process (good, bad JSON,
 * timeout, expired, failing), the SSO token cache (valid, expired with and
 * without a refresh token), a refresh before expiry while signed calls are
 * in flight, and the named errors for settings kcld cannot use. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <uv.h>

#include "../harness/fault.h"
#include "../harness/creds.h"
#include "../harness/harness.h"
#include "aws/call.h"
#include "aws/credentials.h"
#include "aws/http.h"
#include "aws/sts.h"
#include "base/hex.h"
#include "err.h"
#include "log.h"

static struct kcld_emu s_emu;
static const char *s_sts, *s_imds;

static const char *const s_vars[] = {
  "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
  "AWS_ACCESS_KEY", "AWS_SECRET_KEY", "AWS_PROFILE", "AWS_REGION",
  "AWS_DEFAULT_REGION", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
  "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_EC2_METADATA_SERVICE_ENDPOINT",
  "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME",
  "AWS_ENDPOINT_URL", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE",
  NULL};

/* ======== The fake endpoint ======== */

static void control(const char *json)
{
  json_t *j = kcld_fault_post(s_sts, "/__control", json);
  assert_non_null(j);
  json_decref(j);
}

static json_t *sts_calls(void)
{
  json_t *st = kcld_fault_post(s_sts, "/__stats", NULL);
  json_t *calls;
  assert_non_null(st);
  calls = json_incref(json_object_get(st, "calls"));
  json_decref(st);
  return calls;
}

/* Field `key` of the i-th STS call (static copy; "" for null). */
static const char *call_field(json_t *calls, size_t i, const char *key)
{
  static char out[256];
  const char *v = json_string_value(json_object_get(json_array_get(calls, i),
                                                    key));
  snprintf(out, sizeof(out), "%s", v ? v : "");
  return out;
}

/* ======== Fixture ======== */

struct env {
  char home[64];
  char *old_home;
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
  if (kcld_emu_start(&s_emu, "sts imds") != 0)
    return -1;
  s_sts = kcld_emu_url(&s_emu, "sts");
  s_imds = kcld_emu_url(&s_emu, "imds");
  return s_sts && s_imds ? 0 : -1;
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
  char path[128];
  for (size_t i = 0; s_vars[i]; i++)
    unsetenv(s_vars[i]);
  snprintf(e->home, sizeof(e->home), "/tmp/kcld-chain-XXXXXX");
  if (!mkdtemp(e->home))
    return -1;
  snprintf(path, sizeof(path), "%s/.aws", e->home);
  mkdir(path, 0700);
  snprintf(path, sizeof(path), "%s/.aws/sso", e->home);
  mkdir(path, 0700);
  snprintf(path, sizeof(path), "%s/.aws/sso/cache", e->home);
  mkdir(path, 0700);
  e->old_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
  setenv("HOME", e->home, 1);
  setenv("AWS_ENDPOINT_URL_STS", s_sts, 1);
  setenv("AWS_ENDPOINT_URL_SSO", s_sts, 1);
  setenv("AWS_ENDPOINT_URL_SSO_OIDC", s_sts, 1);
  setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
  json_decref(kcld_fault_post(s_sts, "/__reset", "{}"));
  json_decref(kcld_fault_post(s_imds, "/__reset", "{}"));
  uv_loop_init(&e->loop);
  if (kcld_http_new(&e->loop, NULL, &e->http) != 0)
    return -1;
  e->opts.loop = &e->loop;
  e->opts.http = e->http;
  e->opts.region = "eu-west-1";
  e->opts.imds_endpoint = s_imds;
  e->log_mem = open_memstream(&e->log, &e->log_len);
  kcld_log_setup(KCLD_LOG_DEBUG, KCLD_LOG_JSON, e->log_mem);
  *state = e;
  return 0;
}

static int teardown(void **state)
{
  struct env *e = *state;
  char cmd[160];
  if (e->creds)
    kcld_credentials_close(e->creds);
  kcld_http_close(e->http);
  kcld_test_loop_finish(&e->loop);
  kcld_log_setup(KCLD_LOG_INFO, KCLD_LOG_JSON, NULL);
  fclose(e->log_mem);
  free(e->log);
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", e->home);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", e->home);
  if (e->old_home)
    setenv("HOME", e->old_home, 1);
  free(e->old_home);
  for (size_t i = 0; s_vars[i]; i++)
    unsetenv(s_vars[i]);
  unsetenv("AWS_ENDPOINT_URL_STS");
  unsetenv("AWS_ENDPOINT_URL_SSO");
  unsetenv("AWS_ENDPOINT_URL_SSO_OIDC");
  unsetenv("AWS_EC2_METADATA_DISABLED");
  free(e);
  return 0;
}

static const char *log_text(struct env *e)
{
  fflush(e->log_mem);
  return e->log ? e->log : "";
}

/* Writes `text` to HOME-relative `rel`; returns the full path (static). */
static const char *put(struct env *e, const char *rel, const char *text)
{
  static char path[256];
  FILE *fp;
  snprintf(path, sizeof(path), "%s/%s", e->home, rel);
  fp = fopen(path, "w");
  assert_non_null(fp);
  fputs(text, fp);
  fclose(fp);
  return path;
}

/* Creates the provider (once) and waits for one get(). */
static void get_wait(struct env *e, struct kcld_test_got *g)
{
  if (!e->creds)
    assert_int_equal(kcld_credentials_new(&e->opts, &e->creds), 0);
  memset(g, 0, sizeof(*g));
  kcld_credentials_get(e->creds, kcld_test_on_creds, g);
  kcld_test_run_until(&e->loop, &g->called, 10000);
  assert_int_equal(g->called, 1);
}

/* The credentials fail, and the error log names `what`. */
static void assert_refused(struct env *e, const char *what)
{
  struct kcld_test_got g;
  get_wait(e, &g);
  assert_int_equal(g.err, KCLD_ECREDS);
  assert_null(kcld_credentials_source(e->creds));
  if (!strstr(log_text(e), what))
    fail_msg("no \"%s\" in the log:\n%s", what, log_text(e));
  assert_non_null(strstr(log_text(e), "\"msg\":\"no credentials\""));
}

/* ======== Web identity ======== */

static void test_web_identity(void **state)
{
  struct env *e = *state;
  struct kcld_test_got g;
  json_t *calls;
  const char *file = put(e, "token", "good-web-token\n");
  setenv("AWS_WEB_IDENTITY_TOKEN_FILE", file, 1);
  setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/irsa", 1);
  setenv("AWS_ROLE_SESSION_NAME", "kcld-pod", 1);
  control("{\"expires_in\": 301}"); /* refresh due in about 1 s */
  get_wait(e, &g);
  assert_int_equal(g.err, 0);
  assert_string_equal(g.ak, "ASIASTS0001");
  assert_non_null(strstr(g.tok, "stsSessionToken1x"));
  assert_true(g.exp > time(NULL) + 290);
  assert_string_equal(kcld_credentials_source(e->creds), "web-identity");
  calls = sts_calls();
  assert_int_equal(json_array_size(calls), 1);
  assert_string_equal(call_field(calls, 0, "action"),
                      "AssumeRoleWithWebIdentity");
  assert_string_equal(call_field(calls, 0, "role_arn"),
                      "arn:aws:iam::123456789012:role/irsa");
  assert_string_equal(call_field(calls, 0, "session_name"), "kcld-pod");
  assert_string_equal(call_field(calls, 0, "version"), "2011-06-15");
  assert_false(json_is_true(json_object_get(json_array_get(calls, 0),
                                            "signed")));
  assert_non_null(strstr(call_field(calls, 0, "content_type"),
                         "application/x-www-form-urlencoded"));
  json_decref(calls);

  /* The token rotates (as the kubelet does): the refresh reads it again. */
  put(e, "token", "rotated-web-token");
  control("{\"web_token\": \"rotated-web-token\", \"expires_in\": 3600}");
  for (int i = 0; i < 500; i++) {
    kcld_test_run_until(&e->loop, &(int){0}, 10);
    if (strstr(log_text(e), "\"msg\":\"credentials refreshed\""))
      break;
  }
  get_wait(e, &g);
  assert_int_equal(g.err, 0);
  assert_string_equal(g.ak, "ASIASTS0002");
  calls = sts_calls();
  assert_int_equal(json_array_size(calls), 2);
  json_decref(calls);
}

static void test_web_identity_refused(void **state)
{
  struct env *e = *state;
  setenv("AWS_WEB_IDENTITY_TOKEN_FILE", put(e, "token", "stolen-token"), 1);
  setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/irsa", 1);
  assert_refused(e, "InvalidIdentityToken");
  assert_non_null(strstr(log_text(e), "web identity (environment)"));
  /* The token never reaches the log. */
  assert_null(strstr(log_text(e), "stolen-token"));
}

static void test_web_identity_half_set(void **state)
{
  struct env *e = *state;
  setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/irsa", 1);
  assert_refused(e, "AWS_ROLE_ARN is set but AWS_WEB_IDENTITY_TOKEN_FILE "
                    "is not");
}

/* ======== Assume-role chains ======== */

static const char *s_chain_config =
  "[profile base]\n"
  "aws_access_key_id = AKIDBASE\n"
  "aws_secret_access_key = baseSecret\n"
  "[profile mid]\n"
  "role_arn = arn:aws:iam::111111111111:role/mid\n"
  "source_profile = base\n"
  "external_id = ext-1\n"
  "role_session_name = mid-session\n"
  "duration_seconds = 1800\n"
  "[profile top]\n"
  "role_arn = arn:aws:iam::222222222222:role/top\n"
  "source_profile = mid\n";

static void test_assume_role_chain(void **state)
{
  struct env *e = *state;
  struct kcld_test_got g;
  json_t *calls;
  setenv("AWS_CONFIG_FILE", put(e, "config", s_chain_config), 1);
  control("{\"keys\": {\"AKIDBASE\": \"baseSecret\"}}");
  e->opts.profile = "top";
  get_wait(e, &g);
  assert_int_equal(g.err, 0);
  assert_string_equal(g.ak, "ASIASTS0002");
  assert_string_equal(kcld_credentials_source(e->creds), "assume-role");
  calls = sts_calls();
  assert_int_equal(json_array_size(calls), 2);
  /* mid first, signed by the base keys; then top, signed by mid's set. */
  assert_string_equal(call_field(calls, 0, "action"), "AssumeRole");
  assert_string_equal(call_field(calls, 0, "role_arn"),
                      "arn:aws:iam::111111111111:role/mid");
  assert_string_equal(call_field(calls, 0, "caller"), "AKIDBASE");
  assert_string_equal(call_field(calls, 0, "external_id"), "ext-1");
  assert_string_equal(call_field(calls, 0, "session_name"), "mid-session");
  assert_string_equal(call_field(calls, 0, "duration"), "1800");
  assert_string_equal(call_field(calls, 0, "region"), "eu-west-1");
  assert_string_equal(call_field(calls, 1, "role_arn"),
                      "arn:aws:iam::222222222222:role/top");
  assert_string_equal(call_field(calls, 1, "caller"), "ASIASTS0001");
  assert_non_null(strstr(call_field(calls, 1, "session_name"), "kcld-"));
  json_decref(calls);
}

static void test_assume_role_signature_checked(void **state)
{
  struct env *e = *state;
  setenv("AWS_CONFIG_FILE", put(e, "config", s_chain_config), 1);
  /* STS knows another secret for the key: the signature cannot match. */
  control("{\"keys\": {\"AKIDBASE\": \"otherSecret\"}}");
  e->opts.profile = "mid";
  assert_refused(e, "SignatureDoesNotMatch");
  assert_non_null(strstr(log_text(e), "profile mid: AssumeRole role "
                                      "arn:aws:iam::111111111111:role/mid"));
  assert_null(strstr(log_text(e), "baseSecret"));
}

static void test_assume_role_denied(void **state)
{
  struct env *e = *state;
  setenv("AWS_CONFIG_FILE", put(e, "config", s_chain_config), 1);
  control("{\"keys\": {\"AKIDBASE\": \"baseSecret\"}, "
          "\"deny\": [\"arn:aws:iam::222222222222:role/top\"]}");
  e->opts.profile = "top";
  assert_refused(e, "AccessDenied (HTTP 403");
  json_t *calls = sts_calls();
  assert_int_equal(json_array_size(calls), 2); /* mid went through */
  json_decref(calls);
}

static void test_assume_role_loops(void **state)
{
  struct env *e = *state;
  struct kcld_test_got g;
  setenv("AWS_CONFIG_FILE",
         put(e, "config",
             "[profile a]\nrole_arn = arn:aws:iam::1:role/a\n"
             "source_profile = b\n"
             "[profile b]\nrole_arn = arn:aws:iam::1:role/b\n"
             "source_profile = a\n"
             "[profile self]\nrole_arn = arn:aws:iam::1:role/self\n"
             "source_profile = self\n"
             "aws_access_key_id = AKIDSELF\n"
             "aws_secret_access_key = selfSecret\n"),
         1);
  e->opts.profile = "a";
  assert_refused(e, "profile b: the source_profile chain loops back to "
                    "profile a");
  kcld_credentials_close(e->creds);
  e->creds = NULL;
  /* A profile that is its own source uses its keys for its role. */
  control("{\"keys\": {\"AKIDSELF\": \"selfSecret\"}}");
  e->opts.profile = "self";
  get_wait(e, &g);
  assert_int_equal(g.err, 0);
  json_t *calls = sts_calls();
  assert_string_equal(call_field(calls, 0, "caller"), "AKIDSELF");
  assert_string_equal(call_field(calls, 0, "role_arn"),
                      "arn:aws:iam::1:role/self");
  json_decref(calls);
}

/* ======== credential_source ======== */

static void test_credential_source(void **state)
{
  struct env *e = *state;
  struct kcld_test_got g;
  json_t *calls;
  setenv("AWS_CONFIG_FILE",
         put(e, "config",
             "[profile fromenv]\nrole_arn = arn:aws:iam::1:role/env\n"
             "credential_source = Environment\n"
             "[profile fromimds]\nrole_arn = arn:aws:iam::1:role/imds\n"
             "credential_source = Ec2InstanceMetadata\n"
             "[profile fromecs]\nrole_arn = arn:aws:iam::1:role/ecs\n"
             "credential_source = EcsContainer\n"
             "[profile bogus]\nrole_arn = arn:aws:iam::1:role/x\n"
             "credential_source = Ec2Instance\n"),
         1);
  /* Environment: the environment's keys sign, the role is what counts. */
  setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
  setenv("AWS_SECRET_ACCESS_KEY", "envSecret", 1);
  control("{\"keys\": {\"AKIDENV\": \"envSecret\"}}");
  e->opts.profile = "fromenv";
  get_wait(e, &g);
  assert_int_equal(g.err, 0);
  assert_string_equal(g.ak, "ASIASTS0001");
  calls = sts_calls();
  assert_string_equal(call_field(calls, 0, "caller"), "AKIDENV");
  json_decref(calls);
  kcld_credentials_close(e->creds);
  e->creds = NULL;

  /* Ec2InstanceMetadata: the instance role's set signs. */
  unsetenv("AWS_EC2_METADATA_DISABLED");
  control("{\"accept_unknown\": true}");
  e->opts.profile = "fromimds";
  get_wait(e, &g);
  assert_int_equal(g.err, 0);
  calls = sts_calls();
  assert_string_equal(call_field(calls, 1, "caller"), "ASIAFAKE0001");
  assert_string_equal(call_field(calls, 1, "role_arn"),
                      "arn:aws:iam::1:role/imds");
  json_decref(calls);
  kcld_credentials_close(e->creds);
  e->creds = NULL;

  /* EcsContainer: the container endpoint's set signs. */
  setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/t", 1);
  e->opts.container_endpoint = s_imds;
  e->opts.profile = "fromecs";
  get_wait(e, &g);
  assert_int_equal(g.err, 0);
  calls = sts_calls();
  assert_string_equal(call_field(calls, 2, "caller"), "ASIAFAKE0002");
  assert_string_equal(call_field(calls, 2, "role_arn"),
                      "arn:aws:iam::1:role/ecs");
  json_decref(calls);
  kcld_credentials_close(e->creds);
  e->creds = NULL;

  e->opts.profile = "bogus";
  assert_refused(e, "profile bogus: credential_source Ec2Instance is not "
                    "Environment, Ec2InstanceMetadata or EcsContainer");
}

/* ======== credential_process ======== */

static void process_profile(struct env *e, const char *script)
{
  char text[512];
  const char *path = put(e, "proc.sh", script);
  chmod(path, 0700);
  snprintf(text, sizeof(text), "[profile proc]\ncredential_process = %s\n",
           path);
  setenv("AWS_CONFIG_FILE", put(e, "config", text), 1);
  e->opts.profile = "proc";
  if (e->creds) {
    kcld_credentials_close(e->creds);
    e->creds = NULL;
  }
}

static void test_credential_process(void **state)
{
  struct env *e = *state;
  struct kcld_test_got g;
  char script[400];
  time_t later = time(NULL) + 7200;
  struct tm tm;
  char exp[32];

  gmtime_r(&later, &tm);
  strftime(exp, sizeof(exp), "%Y-%m-%dT%H:%M:%SZ", &tm);
  snprintf(script, sizeof(script),
           "#!/bin/sh\necho 'chatter on stderr' >&2\n"
           "printf '{\"Version\": 1, \"AccessKeyId\": \"AKIDPROC\", "
           "\"SecretAccessKey\": \"procSecret\", \"SessionToken\": "
           "\"procToken\", \"Expiration\": \"%s\"}'\n",
           exp);
  process_profile(e, script);
  get_wait(e, &g);
  assert_int_equal(g.err, 0);
  assert_string_equal(g.ak, "AKIDPROC");
  assert_string_equal(g.sk, "procSecret");
  assert_string_equal(g.tok, "procToken");
  assert_int_equal(g.exp, later);
  assert_string_equal(kcld_credentials_source(e->creds), "process");
  assert_null(strstr(log_text(e), "procSecret"));

  process_profile(e, "#!/bin/sh\necho '{\"Version\": 1, \"AccessKeyId\"'\n");
  assert_refused(e, "credential_process output is not a JSON object");

  process_profile(e, "#!/bin/sh\necho '{\"Version\": 2, \"AccessKeyId\": "
                     "\"A\", \"SecretAccessKey\": \"S\"}'\n");
  assert_refused(e, "credential_process output has no \\\"Version\\\": 1");

  process_profile(e, "#!/bin/sh\necho '{\"Version\": 1, \"AccessKeyId\": "
                     "\"A\", \"SecretAccessKey\": \"S\", \"Expiration\": "
                     "\"2001-01-01T00:00:00Z\"}'\n");
  assert_refused(e, "credential_process returned credentials that expired "
                    "at 2001-01-01T00:00:00Z");

  process_profile(e, "#!/bin/sh\nexit 3\n");
  assert_refused(e, "credential_process exited with status 3");
}

static void test_credential_process_timeout(void **state)
{
  struct env *e = *state;
  uint64_t t0;
  /* The child holds stdout open in a grandchild too: the whole group goes. */
  process_profile(e, "#!/bin/sh\nsleep 30 &\nsleep 30\n");
  e->opts.process_timeout_ms = 300;
  t0 = uv_hrtime();
  assert_refused(e, "credential_process timed out after 300 ms");
  assert_true((uv_hrtime() - t0) / 1000000 < 5000);
}

/* ======== SSO ======== */

/* HOME-relative path of the SDK token cache entry of sso-session
 * `session` (static). */
static const char *sso_cache_rel(const char *session)
{
  static char rel[128];
  unsigned char md[20];
  unsigned int n = 0;
  char *end;
  EVP_Digest(session, strlen(session), md, &n, EVP_sha1(), NULL);
  snprintf(rel, sizeof(rel), ".aws/sso/cache/");
  end = kcld_hex_put(rel + strlen(rel), md, sizeof(md));
  memcpy(end, ".json", sizeof(".json"));
  return rel;
}

/* Writes the SDK token cache entry for sso-session `session`. */
static void sso_cache(struct env *e, const char *session, const char *json)
{
  put(e, sso_cache_rel(session), json);
}

static const char *s_sso_config =
  "[profile dev]\n"
  "sso_session = corp\n"
  "sso_account_id = 123456789012\n"
  "sso_role_name = Reader\n"
  "[sso-session corp]\n"
  "sso_region = us-east-1\n"
  "sso_start_url = https://corp.awsapps.com/start\n";

static void iso_in(char *out, size_t n, long seconds)
{
  time_t t = time(NULL) + seconds;
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void test_sso_cache(void **state)
{
  struct env *e = *state;
  struct kcld_test_got g;
  char json[600], later[32];
  setenv("AWS_CONFIG_FILE", put(e, "config", s_sso_config), 1);
  e->opts.profile = "dev";
  iso_in(later, sizeof(later), 3600);
  snprintf(json, sizeof(json),
           "{\"startUrl\": \"https://corp.awsapps.com/start\", "
           "\"region\": \"us-east-1\", \"accessToken\": \"sso-token-1\", "
           "\"expiresAt\": \"%s\"}", later);
  sso_cache(e, "corp", json);
  control("{\"sso_token\": \"sso-token-1\", "
          "\"sso_roles\": [\"123456789012/Reader\"]}");
  get_wait(e, &g);
  assert_int_equal(g.err, 0);
  assert_string_equal(g.ak, "ASIASTS0001");
  assert_string_equal(kcld_credentials_source(e->creds), "sso");
  assert_null(strstr(log_text(e), "sso-token-1"));

  /* The portal refuses the token: a named error, not another identity. */
  kcld_credentials_close(e->creds);
  e->creds = NULL;
  control("{\"sso_token\": \"another\"}");
  assert_refused(e, "the portal refused the SSO token (HTTP 401)");
}

static void test_sso_expired(void **state)
{
  struct env *e = *state;
  struct kcld_test_got g;
  char json[800], past[32], reg[32];
  setenv("AWS_CONFIG_FILE", put(e, "config", s_sso_config), 1);
  e->opts.profile = "dev";
  iso_in(past, sizeof(past), -60);
  iso_in(reg, sizeof(reg), 86400);
  /* Expired, no refresh token: run aws sso login. */
  snprintf(json, sizeof(json),
           "{\"accessToken\": \"old\", \"expiresAt\": \"%s\"}", past);
  sso_cache(e, "corp", json);
  assert_refused(e, "the SSO token expired and cannot be refreshed; run "
                    "`aws sso login`");
  kcld_credentials_close(e->creds);
  e->creds = NULL;

  /* Expired with a refresh token: CreateToken, the cache rewritten. */
  snprintf(json, sizeof(json),
           "{\"accessToken\": \"old\", \"expiresAt\": \"%s\", "
           "\"refreshToken\": \"rt-1\", \"clientId\": \"cid\", "
           "\"clientSecret\": \"csecret\", \"registrationExpiresAt\": "
           "\"%s\"}", past, reg);
  sso_cache(e, "corp", json);
  control("{\"sso_roles\": [\"123456789012/Reader\"], \"oidc\": "
          "{\"client_id\": \"cid\", \"client_secret\": \"csecret\", "
          "\"refresh_token\": \"rt-1\", \"new_token\": \"fresh\"}}");
  get_wait(e, &g);
  assert_int_equal(g.err, 0);
  assert_string_equal(g.ak, "ASIASTS0001");
  assert_non_null(strstr(log_text(e), "\"msg\":\"SSO token refreshed\""));
  /* The cache file now holds the new tokens. */
  char path[256];
  snprintf(path, sizeof(path), "%s/%s", e->home, sso_cache_rel("corp"));
  char *text = kcld_test_slurp(path, NULL);
  assert_non_null(text);
  assert_non_null(strstr(text, "\"accessToken\": \"fresh\""));
  assert_non_null(strstr(text, "\"refreshToken\": \"rt-1-next\""));
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  free(text);
}

/* ======== Named errors ======== */

static void test_unusable_profiles_named(void **state)
{
  struct env *e = *state;
  static const struct {
    const char *profile, *reason;
  } cases[] = {
    {"missing", "profile missing: not in the shared files"},
    {"half", "profile half: has only one of aws_access_key_id and "
             "aws_secret_access_key"},
    {"nosource", "profile nosource: role_arn needs source_profile, "
                 "credential_source or web_identity_token_file"},
    {"both", "profile both: both source_profile and credential_source are "
             "set"},
    {"lost", "profile lost: source_profile gone is not in the shared files"},
    {"regiononly", "profile regiononly: no credentials in it"},
    {"ssohalf", "profile ssohalf: SSO needs sso_account_id and "
                "sso_role_name"},
    {"longrole", "profile longrole: duration_seconds 99999 is not "
                 "900..43200"},
  };
  setenv("AWS_CONFIG_FILE",
         put(e, "config",
             "[profile half]\naws_access_key_id = AKIDHALF\n"
             "[profile nosource]\nrole_arn = arn:aws:iam::1:role/r\n"
             "[profile both]\nrole_arn = arn:aws:iam::1:role/r\n"
             "source_profile = half\ncredential_source = Environment\n"
             "[profile lost]\nrole_arn = arn:aws:iam::1:role/r\n"
             "source_profile = gone\n"
             "[profile regiononly]\nregion = eu-west-1\n"
             "[profile ssohalf]\nsso_session = s\n"
             "[sso-session s]\nsso_region = us-east-1\n"
             "sso_start_url = https://x.awsapps.com/start\n"
             "[profile longrole]\nrole_arn = arn:aws:iam::1:role/r\n"
             "credential_source = Environment\n"
             "duration_seconds = 99999\n"),
         1);
  /* Keys in the environment must not stand in for a named profile. */
  setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
  setenv("AWS_SECRET_ACCESS_KEY", "envSecret", 1);
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    e->opts.profile = cases[i].profile;
    assert_refused(e, cases[i].reason);
    kcld_credentials_close(e->creds);
    e->creds = NULL;
  }
}

static void test_nothing_lists_every_provider(void **state)
{
  struct env *e = *state;
  assert_refused(e, "config: no keys; env: AWS_ACCESS_KEY_ID not set; web "
                    "identity: AWS_WEB_IDENTITY_TOKEN_FILE not set; profile "
                    "default: not in the shared files; container: "
                    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI and _FULL_URI "
                    "not set; imds: disabled by AWS_EC2_METADATA_DISABLED");
}

/* ======== A refresh while signed calls are in flight ======== */

struct caller {
  struct kcld_sts *sts;
  int in_flight, ok, failed, running;
};

static void fire(struct caller *c);

static void on_identity(const struct kcld_sts_identity *res, void *arg)
{
  struct caller *c = arg;
  c->in_flight--;
  if (res->st.err) {
    c->failed++;
    fprintf(stderr, "call failed: %s\n", res->st.message);
  } else {
    c->ok++;
  }
  if (c->running)
    fire(c);
}

static void fire(struct caller *c)
{
  assert_int_equal(kcld_sts_get_caller_identity(c->sts, on_identity, c), 0);
  c->in_flight++;
}

static void test_refresh_while_calls_in_flight(void **state)
{
  struct env *e = *state;
  struct kcld_aws_opts ao = {0};
  struct kcld_aws *aws;
  struct caller c = {0};
  struct kcld_test_got g;
  int during = 0, at_start = -1;
  const char *file = put(e, "token", "good-web-token");

  setenv("AWS_WEB_IDENTITY_TOKEN_FILE", file, 1);
  setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/irsa", 1);
  /* The refresh is due in about 1 s, and STS holds it 600 ms. */
  control("{\"expires_in\": 301}");
  get_wait(e, &g);
  assert_int_equal(g.err, 0);
  control("{\"delay_ms\": {\"AssumeRoleWithWebIdentity\": 600}, "
          "\"expires_in\": 3600}");
  ao.loop = &e->loop;
  ao.http = e->http;
  ao.creds = e->creds;
  ao.region = "eu-west-1";
  assert_int_equal(kcld_aws_new(&ao, &aws), 0);
  assert_int_equal(kcld_sts_new(aws, &e->loop, &c.sts), 0);
  c.running = 1;
  for (int i = 0; i < 3; i++)
    fire(&c);
  for (int i = 0; i < 400; i++) {
    const char *log;
    kcld_test_run_until(&e->loop, &(int){0}, 10);
    log = log_text(e);
    if (at_start < 0 && strstr(log, "\"msg\":\"refreshing credentials\""))
      at_start = c.ok;
    if (strstr(log, "\"msg\":\"credentials refreshed\"")) {
      during = c.ok - at_start;
      break;
    }
  }
  /* Calls fired after the refresh must use the new credentials: keep
   * firing until a few more have completed (the ones in flight when the
   * refresh landed were signed before it). */
  for (int i = 0, after = c.ok; i < 400 && c.ok < after + 6; i++)
    kcld_test_run_until(&e->loop, &(int){0}, 10);
  c.running = 0;
  kcld_test_run_until(&e->loop, &(int){0}, 200);
  while (c.in_flight > 0)
    kcld_test_run_until(&e->loop, &(int){0}, 10);
  kcld_sts_close(c.sts);
  kcld_aws_close(aws);
  assert_true(at_start >= 0);
  /* Calls kept completing, signed, while STS held the refresh. */
  if (during < 3)
    fail_msg("only %d calls completed during the refresh", during);
  assert_int_equal(c.failed, 0);
  json_t *calls = sts_calls();
  int first = 0, second = 0;
  for (size_t i = 0; i < json_array_size(calls); i++) {
    if (strcmp(call_field(calls, i, "action"), "GetCallerIdentity") != 0)
      continue;
    first += strcmp(call_field(calls, i, "caller"), "ASIASTS0001") == 0;
    second += strcmp(call_field(calls, i, "caller"), "ASIASTS0002") == 0;
  }
  json_decref(calls);
  assert_true(first > 0);
  assert_true(second > 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_web_identity, setup, teardown),
    cmocka_unit_test_setup_teardown(test_web_identity_refused, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_web_identity_half_set, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_assume_role_chain, setup, teardown),
    cmocka_unit_test_setup_teardown(test_assume_role_signature_checked, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_assume_role_denied, setup, teardown),
    cmocka_unit_test_setup_teardown(test_assume_role_loops, setup, teardown),
    cmocka_unit_test_setup_teardown(test_credential_source, setup, teardown),
    cmocka_unit_test_setup_teardown(test_credential_process, setup, teardown),
    cmocka_unit_test_setup_teardown(test_credential_process_timeout, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_sso_cache, setup, teardown),
    cmocka_unit_test_setup_teardown(test_sso_expired, setup, teardown),
    cmocka_unit_test_setup_teardown(test_unusable_profiles_named, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_nothing_lists_every_provider, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_refresh_while_calls_in_flight, setup,
                                    teardown),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
