/* harness.c — emulator processes, paths and loop checks for kcld's tests. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "config.h"

extern char **environ;

const char *kcld_test_root(void)
{
  static char root[PATH_MAX];
  const char *env = getenv("KCLD_ROOT");
  if (env && *env)
    return env;
  if (!root[0] && !getcwd(root, sizeof(root)))
    strcpy(root, ".");
  return root;
}

const char *kcld_test_bin(void)
{
  static char bin[PATH_MAX];
  const char *env = getenv("KCLD_BIN");
  if (env && *env)
    return env;
  snprintf(bin, sizeof(bin), "%s/build/kcld", kcld_test_root());
  return bin;
}

const char *kcld_test_shared(const char *rel)
{
  static char path[PATH_MAX];
  struct stat st;
  const char *env = getenv("KCLD_SHARED");
  if (env && *env)
    snprintf(path, sizeof(path), "%s/%s", env, rel);
  else
    snprintf(path, sizeof(path), "%s/../shared/%s", kcld_test_root(), rel);
  if (stat(path, &st) != 0) {
    fprintf(stderr, "note: %s is absent (../shared not beside the project?)\n",
            path);
    return NULL;
  }
  return path;
}

char *kcld_test_slurp(const char *path, size_t *len)
{
  FILE *f = fopen(path, "rb");
  char *buf = NULL;
  size_t n = 0, cap = 0;
  if (!f)
    return NULL;
  for (;;) {
    if (cap - n < 4097) {
      char *nb = realloc(buf, cap ? cap * 2 : 8192);
      if (!nb) {
        free(buf);
        fclose(f);
        return NULL;
      }
      buf = nb;
      cap = cap ? cap * 2 : 8192;
    }
    size_t r = fread(buf + n, 1, cap - n - 1, f);
    n += r;
    if (r == 0)
      break;
  }
  fclose(f);
  buf[n] = '\0';
  if (len)
    *len = n;
  return buf;
}

int kcld_test_count_in_file(const char *path, const char *needle)
{
  char *text = kcld_test_slurp(path, NULL);
  size_t step = strlen(needle);
  int n = 0;
  for (char *p = text; p && step && (p = strstr(p, needle)); p += step)
    n++;
  free(text);
  return n;
}

int kcld_emu_start(struct kcld_emu *emu, const char *names)
{
  int in[2] = {-1, -1}, out[2] = {-1, -1};
  char script[PATH_MAX], line[4096], *argv[32], *copy, *tok, *save = NULL;
  posix_spawn_file_actions_t fa;
  size_t argc = 0, len = 0;
  json_error_t jerr;
  int rc = -1;

  memset(emu, 0, sizeof(*emu));
  emu->pid = -1;
  emu->stdin_fd = -1;
  snprintf(script, sizeof(script), "%s/tests/emulators/emulators.js",
           kcld_test_root());
  copy = strdup(names);
  argv[argc++] = "node";
  argv[argc++] = script;
  argv[argc++] = "--ttl";
  argv[argc++] = "1200";
  for (tok = strtok_r(copy, " ", &save); tok && argc < 31;
       tok = strtok_r(NULL, " ", &save))
    argv[argc++] = tok;
  argv[argc] = NULL;

  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) {
    perror("emu: pipe");
    goto done;
  }
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  if (posix_spawnp(&emu->pid, "node", &fa, NULL, argv, environ) != 0) {
    perror("emu: spawn node");
    emu->pid = -1;
    posix_spawn_file_actions_destroy(&fa);
    goto done;
  }
  posix_spawn_file_actions_destroy(&fa);
  close(in[0]);
  in[0] = -1;
  close(out[1]);
  out[1] = -1;
  emu->stdin_fd = in[1];
  in[1] = -1;

  /* Wait (bounded) for the one line of URLs. */
  while (len < sizeof(line) - 1) {
    struct pollfd p = {.fd = out[0], .events = POLLIN};
    int pr = poll(&p, 1, 60000);
    if (pr <= 0) {
      fprintf(stderr, "emu: no answer from emulators (%s)\n", names);
      goto done;
    }
    ssize_t r = read(out[0], line + len, sizeof(line) - 1 - len);
    if (r <= 0) {
      fprintf(stderr, "emu: emulators exited before listening (%s)\n", names);
      goto done;
    }
    len += (size_t)r;
    if (memchr(line, '\n', len))
      break;
  }
  line[len] = '\0';
  emu->urls = json_loads(line, 0, &jerr);
  if (!emu->urls || !json_is_object((json_t *)emu->urls)) {
    fprintf(stderr, "emu: bad line from emulators: %s\n", line);
    goto done;
  }
  rc = 0;

done:
  free(copy);
  for (int i = 0; i < 2; i++) {
    if (in[i] >= 0)
      close(in[i]);
    if (out[i] >= 0)
      close(out[i]);
  }
  if (rc != 0)
    kcld_emu_stop(emu);
  return rc;
}

const char *kcld_emu_url(const struct kcld_emu *emu, const char *name)
{
  json_t *v = emu->urls ? json_object_get((json_t *)emu->urls, name) : NULL;
  return v ? json_string_value(v) : NULL;
}

void kcld_emu_stop(struct kcld_emu *emu)
{
  if (emu->stdin_fd >= 0) {
    close(emu->stdin_fd);
    emu->stdin_fd = -1;
  }
  if (emu->pid > 0) {
    int status;
    kill(emu->pid, SIGTERM);
    while (waitpid(emu->pid, &status, 0) < 0 && errno == EINTR)
      ;
    emu->pid = -1;
  }
  if (emu->urls) {
    json_decref((json_t *)emu->urls);
    emu->urls = NULL;
  }
}

const char *kcld_test_python(void)
{
  static char path[1024];
  FILE *p;
  size_t n;
  if (path[0])
    return path;
  snprintf(path, sizeof(path), "python3");
  p = popen("python3 -c 'import sys; print(sys.executable)' 2>/dev/null",
            "r");
  if (!p)
    return path;
  if (fgets(path, sizeof(path), p) && (n = strlen(path)) > 1 &&
      path[n - 1] == '\n')
    path[n - 1] = '\0';
  else
    snprintf(path, sizeof(path), "python3");
  pclose(p);
  return path;
}

void kcld_test_loop_finish(uv_loop_t *loop)
{
  uv_run(loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(loop), 0);
}

static void on_tick(uv_timer_t *t)
{
  (void)t; /* only wakes the loop so the flag is looked at again */
}

int kcld_test_run_until(uv_loop_t *loop, const volatile int *flag,
                        unsigned timeout_ms)
{
  /* A flag set by a timer callback would otherwise leave UV_RUN_ONCE
   * sitting in poll until the next event: tick every 5 ms. */
  uv_timer_t tick;
  uint64_t end;
  uv_update_time(loop);
  end = uv_now(loop) + timeout_ms;
  uv_timer_init(loop, &tick);
  uv_timer_start(&tick, on_tick, 5, 5);
  while (!*flag && uv_now(loop) < end)
    uv_run(loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&tick, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  return *flag;
}

int64_t kcld_test_key_default(const char *name)
{
  int64_t v = 0;
  assert_int_equal(kcld_config_key_default(name, &v), 0);
  return v;
}
