/* test_static_files.c — the deployment files, checked without systemd
 * running and without a docker engine:
 *
 *   - the scripts in tests/static: the Dockerfile lint and its fixtures, the systemd
 *     unit and its template (systemd-analyze verify and security, sysusers,
 *     tmpfiles), the
 *     man page against `kcld --help`, `make install`/`uninstall`,
 *     shellcheck, `docker compose config` where the plugin exists, and
 *     `make run` from a build tree that does not exist yet (plain pass).
 *     Exit 0 passes, 77 skips (a tool is missing; the script says which).
 *   - here, with libyaml: docker/kcld.yaml uses only keys of conf/kcld.yaml
 *     and passes `kcld --check-config`; docker/compose.yaml, the LocalStack
 *     init script, docker/Dockerfile and docker/kcld.yaml agree on names,
 *     endpoint, ports, paths and timeouts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml.h>

#include "../harness/harness.h"

/* ======== Running the scripts ======== */

/* Runs `cmd` (a shell command line) in the project root with stderr joined
 * to stdout; returns the exit status (-1 when it did not exit) and the
 * output in *out (malloc'd). */
static int run(const char *cmd, char **out)
{
  size_t cap = 4096, len = 0;
  char *buf = malloc(cap);
  char *line = NULL;
  assert_non_null(buf);
  assert_true(asprintf(&line, "cd '%s' && %s 2>&1", kcld_test_root(), cmd) >
              0);
  FILE *p = popen(line, "r");
  assert_non_null(p);
  size_t n;
  while ((n = fread(buf + len, 1, cap - len - 1, p)) > 0) {
    len += n;
    if (cap - len < 1024) {
      cap *= 2;
      buf = realloc(buf, cap);
      assert_non_null(buf);
    }
  }
  buf[len] = '\0';
  int st = pclose(p);
  free(line);
  *out = buf;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Runs a tests/static script: passes on 0, skips on 77, fails otherwise;
 * the script's report goes to the test log either way. */
static void script(const char *name)
{
  char cmd[256], *out = NULL;
  snprintf(cmd, sizeof(cmd), "KCLD_BIN='%s' tests/static/%s",
           kcld_test_bin(), name);
  int rc = run(cmd, &out);
  printf("---- %s (exit %d)\n%s", name, rc, out);
  free(out);
  if (rc == 77)
    skip();
  assert_int_equal(rc, 0);
}

static void test_dockerfile_lint(void **state)
{
  (void)state;
  script("check-dockerfile.sh");
}

static void test_systemd_unit(void **state)
{
  (void)state;
  script("check-unit.sh");
}

static void test_man_page(void **state)
{
  (void)state;
  script("check-man.sh");
}

static void test_make_install(void **state)
{
  (void)state;
  script("check-install.sh");
}

static void test_shellcheck(void **state)
{
  (void)state;
  script("check-shell.sh");
}

static void test_compose_config(void **state)
{
  (void)state;
  script("check-compose.sh");
}

/* `make run` builds its own plain kcld in a fresh build tree, whatever the
 * build under test: once, in the plain pass, is enough. */
static void test_make_run(void **state)
{
  (void)state;
#if defined(__SANITIZE_ADDRESS__)
  printf("skip: make run builds a plain kcld; the plain pass runs it\n");
  skip();
#else
  script("check-make-run.sh");
#endif
}

/* The unit check is not a rubber stamp: a unit that lost its notify type,
 * stops before shutdown_timeout and carries a misspelt key fails it. */
static void test_systemd_unit_check_fails_on_bad_unit(void **state)
{
  (void)state;
  char dir[] = "/tmp/kcld-unit-XXXXXX", path[64], cmd[512], *out = NULL;
  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof(path), "%s/kcld.service", dir);
  snprintf(cmd, sizeof(cmd),
           "sed -e '/^Type=notify$/d' -e 's/^TimeoutStopSec=.*/"
           "TimeoutStopSec=10s/' -e 's/^UMask=0077$/UMask=0077\\nUMsk=0077/' "
           "systemd/kcld.service > %s", path);
  assert_int_equal(run(cmd, &out), 0);
  free(out);
  snprintf(cmd, sizeof(cmd), "KCLD_UNIT='%s' KCLD_BIN='%s' "
           "tests/static/check-unit.sh", path, kcld_test_bin());
  int rc = run(cmd, &out);
  printf("---- check-unit.sh on a broken unit (exit %d)\n%s", rc, out);
  unlink(path);
  rmdir(dir);
  if (rc == 77) {
    free(out);
    skip();
  }
  assert_int_equal(rc, 1);
  assert_non_null(strstr(out, "lacks the line 'Type=notify'"));
  assert_non_null(strstr(out, "TimeoutStopSec=10s is not above"));
  assert_non_null(strstr(out, "UMsk"));
  free(out);
}

/* Nor for the template: one that reads kcld.yaml, shares the state
 * directory, drifts from kcld.service and carries a misspelt key fails. */
static void test_systemd_template_check_fails_on_bad_template(void **state)
{
  (void)state;
  char dir[] = "/tmp/kcld-unit-XXXXXX", path[64], cmd[512], *out = NULL;
  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof(path), "%s/kcld@.service", dir);
  snprintf(cmd, sizeof(cmd),
           "sed -e 's|/etc/kcld/%%i.yaml|/etc/kcld/kcld.yaml|' "
           "-e 's|^StateDirectory=kcld/%%i|StateDirectory=kcld|' "
           "-e 's/^LockPersonality=yes/LockPersonality=no/' "
           "-e 's/^UMask=0077$/UMask=0077\\nUMsk=0077/' "
           "systemd/kcld@.service > %s", path);
  assert_int_equal(run(cmd, &out), 0);
  free(out);
  snprintf(cmd, sizeof(cmd), "KCLD_TEMPLATE='%s' KCLD_BIN='%s' "
           "tests/static/check-unit.sh", path, kcld_test_bin());
  int rc = run(cmd, &out);
  printf("---- check-unit.sh on a broken template (exit %d)\n%s", rc, out);
  unlink(path);
  rmdir(dir);
  if (rc == 77) {
    free(out);
    skip();
  }
  assert_int_equal(rc, 1);
  assert_non_null(strstr(out, "ExecStart is '/usr/local/bin/kcld --config "
                              "/etc/kcld/kcld.yaml'"));
  assert_non_null(strstr(out, "StateDirectory is 'kcld'"));
  assert_non_null(strstr(out, "> LockPersonality=no"));
  assert_non_null(strstr(out, "UMsk"));
  free(out);
}

/* ======== YAML, flattened ======== */

/* Every node of a YAML document by path: "a.b", "a.list[0]", "a.list[1].c".
 * Mappings and sequences appear with value NULL, scalars with their text. */
struct entry {
  char *path;
  char *value;
};

struct flat {
  struct entry *e;
  size_t n, cap;
};

static void flat_add(struct flat *f, const char *path, const char *value)
{
  if (f->n == f->cap) {
    f->cap = f->cap ? f->cap * 2 : 64;
    f->e = realloc(f->e, f->cap * sizeof(*f->e));
    assert_non_null(f->e);
  }
  f->e[f->n].path = strdup(path);
  f->e[f->n].value = value ? strdup(value) : NULL;
  assert_non_null(f->e[f->n].path);
  f->n++;
}

static void flat_free(struct flat *f)
{
  for (size_t i = 0; i < f->n; i++) {
    free(f->e[i].path);
    free(f->e[i].value);
  }
  free(f->e);
  memset(f, 0, sizeof(*f));
}

struct frame {
  int is_map;
  int want_key;
  long idx;
  char path[256];
  char key[128];
};

/* Reads the project file `rel` into *f; fails the test on a YAML error. */
static void flatten(const char *rel, struct flat *f)
{
  char file[1024];
  struct frame st[16];
  int depth = -1, done = 0;
  yaml_parser_t p;
  yaml_event_t ev;

  memset(f, 0, sizeof(*f));
  snprintf(file, sizeof(file), "%s/%s", kcld_test_root(), rel);
  FILE *fp = fopen(file, "rb");
  if (!fp)
    fail_msg("cannot open %s", file);
  assert_true(yaml_parser_initialize(&p));
  yaml_parser_set_input_file(&p, fp);
  while (!done) {
    if (!yaml_parser_parse(&p, &ev))
      fail_msg("%s:%zu: YAML error: %s", rel, p.problem_mark.line + 1,
               p.problem ? p.problem : "?");
    char path[256] = "";
    int node = ev.type == YAML_SCALAR_EVENT ||
               ev.type == YAML_MAPPING_START_EVENT ||
               ev.type == YAML_SEQUENCE_START_EVENT;
    if (node && depth >= 0) {
      struct frame *t = &st[depth];
      if (t->is_map && t->want_key) {
        assert_int_equal(ev.type, YAML_SCALAR_EVENT);
        snprintf(t->key, sizeof(t->key), "%s",
                 (const char *)ev.data.scalar.value);
        t->want_key = 0;
        yaml_event_delete(&ev);
        continue;
      }
      if (t->is_map) {
        snprintf(path, sizeof(path), "%s%s%s", t->path,
                 t->path[0] ? "." : "", t->key);
        t->want_key = 1;
      } else {
        snprintf(path, sizeof(path), "%s[%ld]", t->path, t->idx++);
      }
    }
    switch (ev.type) {
    case YAML_SCALAR_EVENT:
      flat_add(f, path, (const char *)ev.data.scalar.value);
      break;
    case YAML_MAPPING_START_EVENT:
    case YAML_SEQUENCE_START_EVENT:
      if (path[0])
        flat_add(f, path, NULL);
      assert_true(depth + 1 < (int)(sizeof(st) / sizeof(st[0])));
      depth++;
      memset(&st[depth], 0, sizeof(st[depth]));
      st[depth].is_map = ev.type == YAML_MAPPING_START_EVENT;
      st[depth].want_key = 1;
      snprintf(st[depth].path, sizeof(st[depth].path), "%s", path);
      break;
    case YAML_MAPPING_END_EVENT:
    case YAML_SEQUENCE_END_EVENT:
      depth--;
      break;
    case YAML_STREAM_END_EVENT:
      done = 1;
      break;
    default:
      break;
    }
    yaml_event_delete(&ev);
  }
  yaml_parser_delete(&p);
  fclose(fp);
}

static const struct entry *flat_find(const struct flat *f, const char *path)
{
  for (size_t i = 0; i < f->n; i++)
    if (strcmp(f->e[i].path, path) == 0)
      return &f->e[i];
  return NULL;
}

/* The scalar at `path`, or "" when absent or not a scalar. */
static const char *flat_get(const struct flat *f, const char *path)
{
  const struct entry *e = flat_find(f, path);
  return e && e->value ? e->value : "";
}

/* The scalars of the sequence at `prefix` ("services.kcld.ports"), by
 * index: "" past the end. */
static const char *flat_item(const struct flat *f, const char *prefix,
                             int i)
{
  char path[320];
  int w = snprintf(path, sizeof(path), "%s[%d]", prefix, i);
  if (w < 0 || (size_t)w >= sizeof(path))
    return "";
  return flat_get(f, path);
}

/* A service's environment variable, in mapping or "K=V" list form. */
static const char *env_of(const struct flat *f, const char *service,
                          const char *name)
{
  char path[300];
  snprintf(path, sizeof(path), "services.%s.environment.%s", service, name);
  if (flat_find(f, path))
    return flat_get(f, path);
  snprintf(path, sizeof(path), "services.%s.environment", service);
  size_t n = strlen(name);
  for (int i = 0;; i++) {
    const char *kv = flat_item(f, path, i);
    if (!*kv)
      return "";
    if (strncmp(kv, name, n) == 0 && kv[n] == '=')
      return kv + n + 1;
  }
}

/* "250ms", "30s", "5m", "1h" -> ms; -1 when not that shape. */
static long long duration_ms(const char *s)
{
  char *end;
  long long v = strtoll(s, &end, 10);
  if (end == s || v < 0)
    return -1;
  if (strcmp(end, "ms") == 0)
    return v;
  if (strcmp(end, "s") == 0)
    return v * 1000;
  if (strcmp(end, "m") == 0)
    return v * 60000;
  if (strcmp(end, "h") == 0)
    return v * 3600000;
  return -1;
}

/* Collects mismatches so that one run shows all of them. */
static int s_bad;

static void check(int ok, const char *fmt, ...)
  __attribute__((format(printf, 2, 3)));

static void check(int ok, const char *fmt, ...)
{
  va_list ap;
  if (ok)
    return;
  va_start(ap, fmt);
  printf("MISMATCH: ");
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
  s_bad++;
}

static char *slurp_rel(const char *rel)
{
  char file[1024];
  snprintf(file, sizeof(file), "%s/%s", kcld_test_root(), rel);
  char *text = kcld_test_slurp(file, NULL);
  if (!text)
    fail_msg("cannot read %s", file);
  return text;
}

/* ======== docker/kcld.yaml and conf/ ======== */

static void test_docker_config_keys_known(void **state)
{
  (void)state;
  struct flat ref, cfg;
  flatten("conf/kcld.yaml", &ref);
  flatten("docker/kcld.yaml", &cfg);
  assert_true(ref.n > 20); /* the reference lists every key */
  s_bad = 0;
  for (size_t i = 0; i < cfg.n; i++) {
    if (strchr(cfg.e[i].path, '['))
      continue; /* list items (handler.command) */
    check(flat_find(&ref, cfg.e[i].path) != NULL,
          "docker/kcld.yaml key %s is not in conf/kcld.yaml",
          cfg.e[i].path);
    const struct entry *r = flat_find(&ref, cfg.e[i].path);
    if (r)
      check((r->value == NULL) == (cfg.e[i].value == NULL),
            "docker/kcld.yaml %s: a section in one file, a value in the "
            "other", cfg.e[i].path);
  }
  /* No keys in the file: the container gets dummy ones from compose. */
  check(!*flat_get(&cfg, "credentials.secret_access_key"),
        "docker/kcld.yaml holds a secret key");
  flat_free(&ref);
  flat_free(&cfg);
  assert_int_equal(s_bad, 0);
}

static void test_docker_config_passes_check(void **state)
{
  (void)state;
  char cmd[1200], *out = NULL;
  const char *bin = kcld_test_bin();
  if (access(bin, X_OK) != 0) {
    printf("skip: no kcld binary at %s\n", bin);
    skip();
  }
  snprintf(cmd, sizeof(cmd), "'%s' --help", bin);
  int rc = run(cmd, &out);
  int has_check = rc == 0 && strstr(out, "--check-config");
  free(out);
  if (!has_check) {
    printf("skip: %s has no --check-config yet\n", bin);
    skip();
  }
  /* The container's environment, as compose gives it. */
  snprintf(cmd, sizeof(cmd),
           "env -u AWS_ENDPOINT_URL AWS_REGION=us-east-1 "
           "AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test "
           "'%s' --check-config docker/kcld.yaml", bin);
  rc = run(cmd, &out);
  printf("%s", out);
  assert_int_equal(rc, 0);
  assert_non_null(strstr(out, "configuration ok"));
  free(out);
}

/* ======== compose.yaml, the init script, the Dockerfile ======== */

/* The container port of a short-syntax port "[ip:]host:container[/tcp]". */
static int container_port(const char *spec)
{
  const char *c = strrchr(spec, ':');
  return atoi(c ? c + 1 : spec);
}

/* True when the service mounts `src` at `dst` (short volume syntax). */
static int mounts(const struct flat *f, const char *service, const char *src,
                  const char *dst)
{
  char prefix[300], want[512];
  snprintf(prefix, sizeof(prefix), "services.%s.volumes", service);
  snprintf(want, sizeof(want), "%s:%s", src, dst);
  size_t n = strlen(want);
  for (int i = 0;; i++) {
    const char *v = flat_item(f, prefix, i);
    if (!*v)
      return 0;
    if (strncmp(v, want, n) == 0 && (v[n] == '\0' || v[n] == ':'))
      return 1;
  }
}

static void test_compose_agrees(void **state)
{
  (void)state;
  struct flat cmp, cfg;
  char want[512], path[300];
  flatten("docker/compose.yaml", &cmp);
  flatten("docker/kcld.yaml", &cfg);
  char *dockerfile = slurp_rel("docker/Dockerfile");
  char *init = slurp_rel("docker/init/01-kcld-resources.sh");
  s_bad = 0;

  const char *stream = flat_get(&cfg, "stream");
  const char *region = flat_get(&cfg, "region");
  const char *table = flat_get(&cfg, "handler.table");
  const char *dlq = flat_get(&cfg, "on_failure.sqs");
  const char *endpoint = flat_get(&cfg, "endpoint");
  const char *listen = flat_get(&cfg, "metrics.listen");
  assert_true(*stream && *region && *table && *dlq && *endpoint && *listen);

  /* LocalStack runs the three services under the name and port of the
   * endpoint. */
  const char *services = env_of(&cmp, "localstack", "SERVICES");
  check(strstr(services, "kinesis") && strstr(services, "dynamodb") &&
        strstr(services, "sqs"), "localstack SERVICES is '%s'", services);
  check(strncmp(endpoint, "http://", 7) == 0, "endpoint %s", endpoint);
  char host[128] = "";
  int port = 0;
  sscanf(endpoint + 7, "%127[^:/]:%d", host, &port);
  snprintf(path, sizeof(path), "services.%s", host);
  check(flat_find(&cmp, path) != NULL,
        "endpoint host '%s' is not a compose service", host);
  int published = 0;
  snprintf(path, sizeof(path), "services.%s.ports", host);
  for (int i = 0; *flat_item(&cmp, path, i); i++)
    published |= container_port(flat_item(&cmp, path, i)) == port;
  check(published, "%s does not publish the endpoint's port %d", host, port);
  check(strcmp(env_of(&cmp, "localstack", "AWS_DEFAULT_REGION"), region) == 0,
        "localstack region %s, kcld.yaml region %s",
        env_of(&cmp, "localstack", "AWS_DEFAULT_REGION"), region);

  /* The init hook creates what kcld.yaml names, by default and as compose
   * passes it. */
  check(mounts(&cmp, "localstack", "./init", "/etc/localstack/init/ready.d"),
        "localstack does not mount ./init at /etc/localstack/init/ready.d");
  check(strcmp(env_of(&cmp, "localstack", "KCLD_STREAM"), stream) == 0,
        "KCLD_STREAM %s, stream %s", env_of(&cmp, "localstack", "KCLD_STREAM"),
        stream);
  check(strcmp(env_of(&cmp, "localstack", "KCLD_RESULTS_TABLE"), table) == 0,
        "KCLD_RESULTS_TABLE %s, handler.table %s",
        env_of(&cmp, "localstack", "KCLD_RESULTS_TABLE"), table);
  const char *queue = strrchr(dlq, '/');
  queue = queue ? queue + 1 : dlq;
  check(strcmp(env_of(&cmp, "localstack", "KCLD_DLQ"), queue) == 0,
        "KCLD_DLQ %s, on_failure.sqs queue %s",
        env_of(&cmp, "localstack", "KCLD_DLQ"), queue);
  snprintf(want, sizeof(want), "%s/", endpoint);
  check(strncmp(dlq, want, strlen(want)) == 0,
        "on_failure.sqs %s is not under the endpoint %s", dlq, endpoint);
  const char *defaults[][2] = {
    {"KCLD_STREAM", stream}, {"KCLD_RESULTS_TABLE", table},
    {"KCLD_DLQ", queue},
  };
  for (size_t i = 0; i < 3; i++) {
    snprintf(want, sizeof(want), "${%s:-%s}", defaults[i][0], defaults[i][1]);
    check(strstr(init, want) != NULL, "the init script lacks %s", want);
  }
  check(strstr(init, "AttributeName=pk") && strstr(init, "AttributeName=sk"),
        "the results table is not keyed pk/sk");
  check(strcmp(flat_get(&cfg, "handler.type"), "dynamodb") == 0 &&
        strcmp(flat_get(&cfg, "handler.key.sk"), "") != 0,
        "kcld.yaml does not write a pk/sk table");
  char file[1024];
  snprintf(file, sizeof(file), "%s/docker/init/01-kcld-resources.sh",
           kcld_test_root());
  check(access(file, X_OK) == 0, "the init script is not executable");

  /* kcld: waits for the hook, gets dummy keys and the region, reads the
   * mounted file the image's CMD names. */
  check(strcmp(flat_get(&cmp, "services.kcld.depends_on.localstack."
                        "condition"), "service_healthy") == 0,
        "kcld does not wait for localstack to be healthy");
  check(flat_find(&cmp, "services.localstack.healthcheck.test") != NULL,
        "localstack has no healthcheck");
  check(*env_of(&cmp, "kcld", "AWS_ACCESS_KEY_ID") &&
        *env_of(&cmp, "kcld", "AWS_SECRET_ACCESS_KEY"),
        "kcld has no dummy credentials");
  check(strcmp(env_of(&cmp, "kcld", "AWS_REGION"), region) == 0,
        "kcld AWS_REGION %s, region %s", env_of(&cmp, "kcld", "AWS_REGION"),
        region);
  check(mounts(&cmp, "kcld", "./kcld.yaml", "/etc/kcld/kcld.yaml"),
        "kcld does not mount ./kcld.yaml at /etc/kcld/kcld.yaml");
  check(strstr(dockerfile, "CMD [\"--config\", \"/etc/kcld/kcld.yaml\"]") !=
        NULL, "the Dockerfile CMD does not read /etc/kcld/kcld.yaml");
  check(strstr(dockerfile, "ENTRYPOINT [\"kcld\"]") != NULL,
        "the Dockerfile ENTRYPOINT is not kcld");
  /* The default dead-letter directory is $STATE_DIRECTORY/dead-letter: a
   * volume the kcld user owns, kept by compose in a named volume. */
  check(strstr(dockerfile, "ENV STATE_DIRECTORY=/var/lib/kcld\n") != NULL &&
        strstr(dockerfile, "VOLUME [\"/var/lib/kcld\"]") != NULL &&
        strstr(dockerfile, "-o 10001 -g 10001 /var/lib/kcld") != NULL,
        "the Dockerfile has no STATE_DIRECTORY volume owned by kcld");
  check(mounts(&cmp, "kcld", "kcld-state", "/var/lib/kcld") &&
        flat_find(&cmp, "volumes.kcld-state") != NULL,
        "kcld does not keep /var/lib/kcld in the named volume kcld-state");
  check(strcmp(flat_get(&cmp, "services.kcld.build.context"), "..") == 0 &&
        strcmp(flat_get(&cmp, "services.kcld.build.dockerfile"),
               "docker/Dockerfile") == 0,
        "kcld is not built from docker/Dockerfile in the repository root");

  /* Metrics: listening on all interfaces, on the port compose publishes,
   * the image exposes and the HEALTHCHECK asks. */
  check(strncmp(listen, "0.0.0.0:", 8) == 0,
        "metrics.listen %s is not on 0.0.0.0", listen);
  int mport = container_port(listen);
  published = 0;
  for (int i = 0; *flat_item(&cmp, "services.kcld.ports", i); i++)
    published |= container_port(flat_item(&cmp, "services.kcld.ports", i)) ==
                 mport;
  check(published, "kcld does not publish the metrics port %d", mport);
  snprintf(want, sizeof(want), "EXPOSE %d\n", mport);
  check(strstr(dockerfile, want) != NULL, "the Dockerfile lacks %s", want);
  snprintf(want, sizeof(want), "http://127.0.0.1:%d/healthz", mport);
  check(strstr(dockerfile, want) != NULL,
        "the Dockerfile HEALTHCHECK does not ask %s", want);

  /* docker stop waits longer than the graceful shutdown can take
   * (shutdown_timeout + 2s). */
  long long grace = duration_ms(flat_get(&cmp,
                                         "services.kcld.stop_grace_period"));
  long long shut = duration_ms(flat_get(&cfg, "shutdown_timeout"));
  check(grace > 0 && shut > 0 && grace > shut + 2000,
        "stop_grace_period %s is not above shutdown_timeout %s + 2s",
        flat_get(&cmp, "services.kcld.stop_grace_period"),
        flat_get(&cfg, "shutdown_timeout"));

  /* The optional producer writes to the same stream. */
  int producer_stream = 0;
  for (int i = 0; *flat_item(&cmp, "services.producer.command", i); i++)
    if (strcmp(flat_item(&cmp, "services.producer.command", i),
               "--stream") == 0)
      producer_stream = strcmp(flat_item(&cmp, "services.producer.command",
                                         i + 1), stream) == 0;
  check(producer_stream, "the producer does not write to %s", stream);
  check(strcmp(env_of(&cmp, "producer", "AWS_ENDPOINT_URL"), endpoint) == 0,
        "the producer's AWS_ENDPOINT_URL is not %s", endpoint);

  free(dockerfile);
  free(init);
  flat_free(&cmp);
  flat_free(&cfg);
  assert_int_equal(s_bad, 0);
}

/* The YAML checks can fail: a compose file that drifted is caught. */
static void test_flatten_paths(void **state)
{
  (void)state;
  struct flat f;
  flatten("docker/compose.yaml", &f);
  assert_string_equal(flat_get(&f, "services.localstack.environment."
                               "KCLD_SHARDS"), "4");
  assert_string_equal(flat_item(&f, "services.kcld.ports", 0),
                      "127.0.0.1:9464:9464");
  assert_null(flat_find(&f, "services.kcld.ports[1]"));
  assert_non_null(flat_find(&f, "services.kcld"));
  assert_null(flat_find(&f, "services.kcld")->value);
  assert_string_equal(env_of(&f, "kcld", "AWS_REGION"), "us-east-1");
  assert_string_equal(env_of(&f, "kcld", "NOPE"), "");
  assert_int_equal(container_port("127.0.0.1:4566:4566"), 4566);
  assert_int_equal(container_port("9464"), 9464);
  assert_int_equal(duration_ms("45s"), 45000);
  assert_int_equal(duration_ms("2m"), 120000);
  assert_int_equal(duration_ms("45"), -1);
  flat_free(&f);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_dockerfile_lint),
    cmocka_unit_test(test_systemd_unit),
    cmocka_unit_test(test_systemd_unit_check_fails_on_bad_unit),
    cmocka_unit_test(test_systemd_template_check_fails_on_bad_template),
    cmocka_unit_test(test_man_page),
    cmocka_unit_test(test_make_install),
    cmocka_unit_test(test_shellcheck),
    cmocka_unit_test(test_compose_config),
    cmocka_unit_test(test_make_run),
    cmocka_unit_test(test_flatten_paths),
    cmocka_unit_test(test_docker_config_keys_known),
    cmocka_unit_test(test_docker_config_passes_check),
    cmocka_unit_test(test_compose_agrees),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
