/* test_credentials.c — the local credential providers (explicit config,
 * environment, shared files), their precedence, the INI reader, and region
 * resolution without the network.  Each test gets an empty environment (for
 * the AWS variables) and a fresh temporary HOME. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "aws/credentials.h"
#include "err.h"
#include "../harness/creds.h"
#include "../harness/harness.h"
#include "log.h"

static const char *const s_vars[] = {
  "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
  "AWS_ACCESS_KEY", "AWS_SECRET_KEY", "AWS_PROFILE",
  "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_REGION",
  "AWS_DEFAULT_REGION", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
  "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN",
  "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "AWS_EC2_METADATA_DISABLED",
  "AWS_EC2_METADATA_SERVICE_ENDPOINT",
  "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", NULL};

struct fixture {
  char home[64];
  char *old_home;
  uv_loop_t loop;
};

static int setup(void **state)
{
  struct fixture *f = calloc(1, sizeof(*f));
  char path[128];
  for (size_t i = 0; s_vars[i]; i++)
    unsetenv(s_vars[i]);
  snprintf(f->home, sizeof(f->home), "/tmp/kcld-creds-XXXXXX");
  if (!mkdtemp(f->home))
    return -1;
  snprintf(path, sizeof(path), "%s/.aws", f->home);
  mkdir(path, 0700);
  f->old_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
  setenv("HOME", f->home, 1);
  uv_loop_init(&f->loop);
  *state = f;
  return 0;
}

static int teardown(void **state)
{
  struct fixture *f = *state;
  char cmd[160];
  kcld_test_loop_finish(&f->loop);
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->home);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", f->home);
  if (f->old_home) {
    setenv("HOME", f->old_home, 1);
    free(f->old_home);
  } else {
    unsetenv("HOME");
  }
  for (size_t i = 0; s_vars[i]; i++)
    unsetenv(s_vars[i]);
  free(f);
  return 0;
}

/* Writes `text` to HOME-relative `rel`; returns the full path (static). */
static const char *put(struct fixture *f, const char *rel, const char *text)
{
  static char path[256];
  snprintf(path, sizeof(path), "%s/%s", f->home, rel);
  FILE *fp = fopen(path, "w");
  assert_non_null(fp);
  fputs(text, fp);
  fclose(fp);
  return path;
}

/* Runs the chain once with `opts` (no http client: local providers only)
 * and requires a synchronous answer.  Returns the source. */
static const char *resolve(struct fixture *f, struct kcld_credentials_opts *o,
                           struct kcld_test_got *g)
{
  static char source[32];
  struct kcld_credentials *c;
  o->loop = &f->loop;
  memset(g, 0, sizeof(*g));
  assert_int_equal(kcld_credentials_new(o, &c), 0);
  kcld_credentials_get(c, kcld_test_on_creds, g);
  assert_int_equal(g->called, 1); /* synchronous */
  const char *s = kcld_credentials_source(c);
  snprintf(source, sizeof(source), "%s", s ? s : "(none)");
  kcld_credentials_close(c);
  return source;
}

static void set_env_creds(void)
{
  setenv("AWS_ACCESS_KEY_ID", "AKIAENV", 1);
  setenv("AWS_SECRET_ACCESS_KEY", "envSecret", 1);
  setenv("AWS_SESSION_TOKEN", "envToken", 1);
}

static const char *s_default_creds =
  "[default]\n"
  "aws_access_key_id = AKIAFILEDEFAULT\n"
  "aws_secret_access_key = fileDefaultSecret\n";

/* ---------------------------------------------------------------- */

static void test_explicit_config_wins(void **state)
{
  struct fixture *f = *state;
  struct kcld_credentials_opts o = {0};
  struct kcld_test_got g;
  set_env_creds();
  put(f, ".aws/credentials", s_default_creds);
  o.access_key_id = "AKIACONFIG";
  o.secret_access_key = "configSecret";
  assert_string_equal(resolve(f, &o, &g), "config");
  assert_int_equal(g.err, 0);
  assert_string_equal(g.ak, "AKIACONFIG");
  assert_string_equal(g.sk, "configSecret");
  assert_false(g.has_tok); /* no token configured: none, not env's */
  assert_int_equal(g.exp, 0);

  o.session_token = "configToken";
  resolve(f, &o, &g);
  assert_string_equal(g.tok, "configToken");
}

static void test_explicit_needs_both_keys(void **state)
{
  struct fixture *f = *state;
  struct kcld_credentials_opts o = {0};
  struct kcld_credentials *c = (void *)1;
  o.loop = &f->loop;
  o.access_key_id = "AKIAONLY";
  assert_int_equal(kcld_credentials_new(&o, &c), KCLD_EINVAL);
  assert_null(c);
  o.access_key_id = NULL;
  o.secret_access_key = "secretOnly";
  assert_int_equal(kcld_credentials_new(&o, &c), KCLD_EINVAL);
  o.secret_access_key = NULL;
  o.loop = NULL;
  assert_int_equal(kcld_credentials_new(&o, &c), KCLD_EINVAL);
}

static void test_env(void **state)
{
  struct fixture *f = *state;
  struct kcld_credentials_opts o = {0};
  struct kcld_test_got g;
  set_env_creds();
  put(f, ".aws/credentials", s_default_creds);
  assert_string_equal(resolve(f, &o, &g), "env");
  assert_string_equal(g.ak, "AKIAENV");
  assert_string_equal(g.sk, "envSecret");
  assert_string_equal(g.tok, "envToken");

  unsetenv("AWS_SESSION_TOKEN");
  resolve(f, &o, &g);
  assert_string_equal(g.ak, "AKIAENV");
  assert_false(g.has_tok);
}

static void test_env_legacy_names(void **state)
{
  struct fixture *f = *state;
  struct kcld_credentials_opts o = {0};
  struct kcld_test_got g;
  setenv("AWS_ACCESS_KEY", "AKIALEGACY", 1);
  setenv("AWS_SECRET_KEY", "legacySecret", 1);
  assert_string_equal(resolve(f, &o, &g), "env");
  assert_string_equal(g.ak, "AKIALEGACY");
  assert_string_equal(g.sk, "legacySecret");
  /* The standard names win when both are set. */
  set_env_creds();
  resolve(f, &o, &g);
  assert_string_equal(g.ak, "AKIAENV");
}

static void test_env_half_set_falls_through(void **state)
{
  struct fixture *f = *state;
  struct kcld_credentials_opts o = {0};
  struct kcld_test_got g;
  setenv("AWS_ACCESS_KEY_ID", "AKIAHALF", 1);
  put(f, ".aws/credentials", s_default_creds);
  assert_string_equal(resolve(f, &o, &g), "profile");
  assert_string_equal(g.ak, "AKIAFILEDEFAULT");
  /* An empty variable counts as unset. */
  setenv("AWS_SECRET_ACCESS_KEY", "", 1);
  assert_string_equal(resolve(f, &o, &g), "profile");
}

static void test_profile_default(void **state)
{
  struct fixture *f = *state;
  struct kcld_credentials_opts o = {0};
  struct kcld_test_got g;
  put(f, ".aws/credentials",
      "[default]\n"
      "aws_access_key_id = AKIAFILEDEFAULT\n"
      "aws_secret_access_key = fileDefaultSecret\n"
      "aws_session_token = fileDefaultToken\n"
      "[other]\n"
      "aws_access_key_id = AKIAOTHER\n"
      "aws_secret_access_key = otherSecret\n");
  assert_string_equal(resolve(f, &o, &g), "profile");
  assert_int_equal(g.err, 0);
  assert_string_equal(g.ak, "AKIAFILEDEFAULT");
  assert_string_equal(g.sk, "fileDefaultSecret");
  assert_string_equal(g.tok, "fileDefaultToken");
  assert_int_equal(g.exp, 0);
}

static void test_profile_named(void **state)
{
  struct fixture *f = *state;
  struct kcld_credentials_opts o = {0};
  struct kcld_test_got g;
  put(f, ".aws/credentials",
      "[default]\n"
      "aws_access_key_id = AKIAFILEDEFAULT\n"
      "aws_secret_access_key = fileDefaultSecret\n"
      "[dev]\n"
      "aws_access_key_id = AKIADEV\n"
      "aws_secret_access_key = devSecret\n"
      "[prod]\n"
      "aws_access_key_id = AKIAPROD\n"
      "aws_secret_access_key = prodSecret\n");
  setenv("AWS_PROFILE", "dev", 1);
  resolve(f, &o, &g);
  assert_string_equal(g.ak, "AKIADEV");
  assert_false(g.has_tok);
  /* The configured profile beats AWS_PROFILE. */
  o.profile = "prod";
  resolve(f, &o, &g);
  assert_string_equal(g.ak, "AKIAPROD");
  assert_string_equal(g.sk, "prodSecret");
  /* A profile that is not there yields nothing (no fallback to default). */
  o.profile = "missing";
  assert_string_equal(resolve(f, &o, &g), "(none)");
  assert_int_equal(g.err, KCLD_ECREDS);
}

static void test_config_file_sections(void **state)
{
  struct fixture *f = *state;
  struct kcld_credentials_opts o = {0};
  struct kcld_test_got g;
  put(f, ".aws/config",
      "[default]\n"
      "region = us-east-2\n"
      "aws_access_key_id = AKIACFGDEFAULT\n"
      "aws_secret_access_key = cfgDefaultSecret\n"
      "[profile  dev]\n"
      "aws_access_key_id = AKIACFGDEV\n"
      "aws_secret_access_key = cfgDevSecret\n"
      "[bare]\n" /* not a profile in the config file */
      "aws_access_key_id = AKIABARE\n"
      "aws_secret_access_key = bareSecret\n");
  assert_string_equal(resolve(f, &o, &g), "profile");
  assert_string_equal(g.ak, "AKIACFGDEFAULT");
  o.profile = "dev";
  resolve(f, &o, &g);
  assert_string_equal(g.ak, "AKIACFGDEV");
  o.profile = "bare";
  resolve(f, &o, &g);
  assert_int_equal(g.err, KCLD_ECREDS);

  /* The credentials file uses bare names; "[profile x]" there is not x. */
  put(f, ".aws/credentials",
      "[profile bare]\n"
      "aws_access_key_id = AKIAWRONG\n"
      "aws_secret_access_key = wrongSecret\n");
  resolve(f, &o, &g);
  assert_int_equal(g.err, KCLD_ECREDS);
}

static void test_credentials_file_beats_config_file(void **state)
{
  struct fixture *f = *state;
  struct kcld_credentials_opts o = {0};
  struct kcld_test_got g;
  put(f, ".aws/config",
      "[profile dev]\n"
      "aws_access_key_id = AKIACFGDEV\n"
      "aws_secret_access_key = cfgDevSecret\n"
      "aws_session_token = cfgDevToken\n");
  put(f, ".aws/credentials",
      "[dev]\n"
      "aws_access_key_id = AKIACREDDEV\n"
      "aws_secret_access_key = credDevSecret\n");
  o.profile = "dev";
  resolve(f, &o, &g);
  assert_string_equal(g.ak, "AKIACREDDEV");
  assert_string_equal(g.sk, "credDevSecret");
  /* Keys are merged: the token only the config file sets still applies. */
  assert_string_equal(g.tok, "cfgDevToken");
}

static void test_ini_syntax(void **state)
{
  struct fixture *f = *state;
  struct kcld_credentials_opts o = {0};
  struct kcld_test_got g;
  put(f, ".aws/credentials",
      "\xEF\xBB\xBF# leading comment\r\n"
      "; another comment\r\n"
      "\r\n"
      "  [ Dev ]   ; the section name is trimmed, comments after ] ignored\r\n"
      "AWS_ACCESS_KEY_ID=AKIAUPPER   # inline comment\r\n"
      "aws_secret_access_key\t =\t spaced#Secret;kept  ; comment\r\n"
      "s3 =\r\n"
      "  aws_access_key_id = AKIANESTED\r\n" /* a sub-property, not ours */
      "  max_concurrent_requests = 10\r\n"
      "[dev]\r\n" /* section names are case-sensitive: another profile */
      "aws_access_key_id = AKIALOWER\r\n"
      "  aws_session_token = continuation\r\n" /* continues the line above */
      "aws_secret_access_key = lowerSecret\r\n"
      "[Dev]\r\n" /* a repeated section merges; later keys win */
      "aws_session_token = devToken\r\n"
      "aws_access_key_id = AKIAUPPER2\r\n"
      "not a property line\r\n"
      "[broken\r\n"
      "aws_access_key_id = AKIABROKEN\r\n");
  o.profile = "Dev";
  resolve(f, &o, &g);
  assert_int_equal(g.err, 0);
  assert_string_equal(g.ak, "AKIAUPPER2");
  assert_string_equal(g.sk, "spaced#Secret;kept");
  assert_string_equal(g.tok, "devToken");
  o.profile = "dev";
  resolve(f, &o, &g);
  assert_string_equal(g.ak, "AKIALOWER");
  assert_false(g.has_tok);
}

static void test_file_locations_from_env(void **state)
{
  struct fixture *f = *state;
  struct kcld_credentials_opts o = {0};
  struct kcld_test_got g;
  char path[256];
  put(f, ".aws/credentials", s_default_creds);
  put(f, "elsewhere-creds",
      "[default]\n"
      "aws_access_key_id = AKIAELSEWHERE\n"
      "aws_secret_access_key = elsewhereSecret\n");
  put(f, "elsewhere-config",
      "[profile cfgonly]\n"
      "aws_access_key_id = AKIACFGONLY\n"
      "aws_secret_access_key = cfgOnlySecret\n");
  snprintf(path, sizeof(path), "%s/elsewhere-creds", f->home);
  setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
  resolve(f, &o, &g);
  assert_string_equal(g.ak, "AKIAELSEWHERE");

  /* ~ expands to HOME. */
  setenv("AWS_SHARED_CREDENTIALS_FILE", "~/nothing-here", 1);
  setenv("AWS_CONFIG_FILE", "~/elsewhere-config", 1);
  o.profile = "cfgonly";
  resolve(f, &o, &g);
  assert_string_equal(g.ak, "AKIACFGONLY");
  o.profile = NULL;
  assert_string_equal(resolve(f, &o, &g), "(none)");
  assert_int_equal(g.err, KCLD_ECREDS);
}

static void test_half_profile_ignored(void **state)
{
  struct fixture *f = *state;
  struct kcld_credentials_opts o = {0};
  struct kcld_test_got g;
  put(f, ".aws/credentials", "[default]\naws_access_key_id = AKIAHALF\n");
  assert_string_equal(resolve(f, &o, &g), "(none)");
  assert_int_equal(g.err, KCLD_ECREDS);
}

static void test_precedence_chain(void **state)
{
  struct fixture *f = *state;
  struct kcld_credentials_opts o = {0};
  struct kcld_test_got g;
  /* Take the providers away one by one, from the top. */
  put(f, ".aws/credentials", s_default_creds);
  set_env_creds();
  o.access_key_id = "AKIACONFIG";
  o.secret_access_key = "configSecret";
  assert_string_equal(resolve(f, &o, &g), "config");
  o.access_key_id = o.secret_access_key = NULL;
  assert_string_equal(resolve(f, &o, &g), "env");
  unsetenv("AWS_ACCESS_KEY_ID");
  unsetenv("AWS_SECRET_ACCESS_KEY");
  unsetenv("AWS_SESSION_TOKEN");
  assert_string_equal(resolve(f, &o, &g), "profile");
  assert_string_equal(g.ak, "AKIAFILEDEFAULT");
  unlink(put(f, ".aws/credentials", ""));
  /* Nothing local and no http client: container and IMDS are out. */
  setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/x", 1);
  assert_string_equal(resolve(f, &o, &g), "(none)");
  assert_int_equal(g.err, KCLD_ECREDS);
}

static void test_static_set_is_cached(void **state)
{
  struct fixture *f = *state;
  struct kcld_credentials_opts o = {0};
  struct kcld_credentials *c;
  struct kcld_test_got g1 = {0}, g2 = {0};
  set_env_creds();
  o.loop = &f->loop;
  assert_int_equal(kcld_credentials_new(&o, &c), 0);
  assert_null(kcld_credentials_source(c)); /* nothing looked up yet */
  kcld_credentials_get(c, kcld_test_on_creds, &g1);
  setenv("AWS_ACCESS_KEY_ID", "AKIACHANGED", 1);
  kcld_credentials_get(c, kcld_test_on_creds, &g2);
  assert_int_equal(g1.called + g2.called, 2);
  assert_string_equal(g2.ak, "AKIAENV");
  assert_string_equal(kcld_credentials_source(c), "env");
  kcld_credentials_close(c);
}

/* Log lines name the source and the profile, never a secret. */
static void test_log_has_no_secrets(void **state)
{
  struct fixture *f = *state;
  struct kcld_credentials_opts o = {0};
  struct kcld_test_got g;
  char *buf = NULL;
  size_t len = 0;
  FILE *mem = open_memstream(&buf, &len);
  assert_non_null(mem);
  kcld_log_setup(KCLD_LOG_DEBUG, KCLD_LOG_JSON, mem);
  put(f, ".aws/credentials",
      "[dev]\n"
      "aws_access_key_id = AKIADEVLOG\n"
      "aws_secret_access_key = devLogSecret\n"
      "aws_session_token = devLogToken\n"
      "[half]\n"
      "aws_secret_access_key = halfLogSecret\n");
  o.profile = "dev";
  resolve(f, &o, &g);
  o.profile = "half";
  resolve(f, &o, &g);
  o.profile = NULL;
  setenv("AWS_ACCESS_KEY_ID", "AKIAENVLOG", 1);
  setenv("AWS_SECRET_ACCESS_KEY", "envLogSecret", 1);
  setenv("AWS_SESSION_TOKEN", "envLogToken", 1);
  resolve(f, &o, &g);
  o.access_key_id = "AKIACFGLOG";
  o.secret_access_key = "cfgLogSecret";
  o.session_token = "cfgLogToken";
  resolve(f, &o, &g);
  kcld_log_setup(KCLD_LOG_INFO, KCLD_LOG_JSON, NULL);
  fclose(mem);

  assert_non_null(strstr(buf, "\"msg\":\"credentials from profile\""));
  assert_non_null(strstr(buf, "\"profile\":\"dev\""));
  assert_non_null(strstr(buf, "\"profile\":\"half\""));
  assert_non_null(strstr(buf, "\"msg\":\"credentials from env\""));
  assert_non_null(strstr(buf, "\"msg\":\"credentials from config\""));
  static const char *const secrets[] = {
    "devLogSecret", "devLogToken", "halfLogSecret", "envLogSecret",
    "envLogToken", "cfgLogSecret", "cfgLogToken", "LogSecret", "LogToken"};
  for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
    if (strstr(buf, secrets[i]))
      fail_msg("secret %s in the log:\n%s", secrets[i], buf);
  free(buf);
}

/* ---------------------------------------------------------------- */

static void test_region_order(void **state)
{
  struct fixture *f = *state;
  char *r;
  put(f, ".aws/config",
      "[default]\n"
      "region = us-east-2\n"
      "[profile dev]\n"
      "region = ap-south-1 ; where dev lives\n");
  put(f, ".aws/credentials", "[prod]\nregion = sa-east-1\n");
  setenv("AWS_REGION", "eu-central-1", 1);
  setenv("AWS_DEFAULT_REGION", "eu-north-1", 1);

  r = kcld_region_from_env("us-west-1", "dev");
  assert_string_equal(r, "us-west-1");
  free(r);
  r = kcld_region_from_env("", "dev"); /* empty = not configured */
  assert_string_equal(r, "eu-central-1");
  free(r);
  unsetenv("AWS_REGION");
  r = kcld_region_from_env(NULL, "dev");
  assert_string_equal(r, "eu-north-1");
  free(r);
  unsetenv("AWS_DEFAULT_REGION");
  r = kcld_region_from_env(NULL, "dev");
  assert_string_equal(r, "ap-south-1");
  free(r);
  r = kcld_region_from_env(NULL, NULL);
  assert_string_equal(r, "us-east-2");
  free(r);
  setenv("AWS_PROFILE", "dev", 1);
  r = kcld_region_from_env(NULL, NULL);
  assert_string_equal(r, "ap-south-1");
  free(r);
  /* Only the config file carries the region. */
  assert_null(kcld_region_from_env(NULL, "prod"));
  setenv("AWS_CONFIG_FILE", "/nonexistent/kcld/config", 1);
  assert_null(kcld_region_from_env(NULL, NULL));
}

static void never_called(int err, const char *region, void *arg)
{
  (void)err;
  (void)region;
  (void)arg;
  fail_msg("region callback must not run");
}

static void test_region_imds_disabled(void **state)
{
  struct fixture *f = *state;
  (void)f;
  setenv("AWS_EC2_METADATA_DISABLED", "TRUE", 1);
  /* Refused before any http client is touched. */
  assert_int_equal(kcld_region_from_imds(&f->loop, (struct kcld_http *)1,
                                         NULL, never_called, NULL),
                   KCLD_ENOTFOUND);
  assert_int_equal(kcld_region_from_imds(&f->loop, NULL, NULL,
                                         never_called, NULL),
                   KCLD_EINVAL);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_explicit_config_wins, setup, teardown),
    cmocka_unit_test_setup_teardown(test_explicit_needs_both_keys, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_env, setup, teardown),
    cmocka_unit_test_setup_teardown(test_env_legacy_names, setup, teardown),
    cmocka_unit_test_setup_teardown(test_env_half_set_falls_through, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_profile_default, setup, teardown),
    cmocka_unit_test_setup_teardown(test_profile_named, setup, teardown),
    cmocka_unit_test_setup_teardown(test_config_file_sections, setup, teardown),
    cmocka_unit_test_setup_teardown(test_credentials_file_beats_config_file,
                                    setup, teardown),
    cmocka_unit_test_setup_teardown(test_ini_syntax, setup, teardown),
    cmocka_unit_test_setup_teardown(test_file_locations_from_env, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_half_profile_ignored, setup, teardown),
    cmocka_unit_test_setup_teardown(test_precedence_chain, setup, teardown),
    cmocka_unit_test_setup_teardown(test_static_set_is_cached, setup, teardown),
    cmocka_unit_test_setup_teardown(test_log_has_no_secrets, setup, teardown),
    cmocka_unit_test_setup_teardown(test_region_order, setup, teardown),
    cmocka_unit_test_setup_teardown(test_region_imds_disabled, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
