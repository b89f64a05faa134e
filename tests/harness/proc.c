/* proc.c — see proc.h. */
#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

void kcld_test_state_dir(const char *config_path)
{
  char dir[4096];
  const char *slash = strrchr(config_path, '/');

  if (getenv("STATE_DIRECTORY"))
    return;
  snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - config_path) : 1,
           slash ? config_path : ".");
  setenv("STATE_DIRECTORY", dir, 1);
}

pid_t kcld_test_spawn_kcld(const char *config_path, const char *log_path)
{
  pid_t parent = getpid();
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
      _exit(127);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    kcld_test_state_dir(config_path);
    execl(kcld_test_bin(), "kcld", "--config", config_path, (char *)NULL);
    _exit(127);
  }
  return pid;
}

int kcld_test_wait_exit(pid_t pid, unsigned timeout_ms, int *status)
{
  unsigned long long end = kcld_test_now_ms() + timeout_ms;
  for (;;) {
    pid_t r = waitpid(pid, status, WNOHANG);
    if (r == pid)
      return 1;
    if (r < 0 && errno != EINTR)
      return 1;
    if (kcld_test_now_ms() >= end)
      return 0;
    kcld_test_sleep_ms(20);
  }
}

void kcld_test_reap(pid_t pid)
{
  int status;
  if (pid <= 0)
    return;
  if (waitpid(pid, &status, WNOHANG) == 0) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
}

int kcld_test_pid_alive(pid_t pid)
{
  char path[64], buf[512], *rp;
  FILE *fp;
  snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
  if (!(fp = fopen(path, "r")))
    return 0;
  if (!fgets(buf, sizeof(buf), fp))
    buf[0] = '\0';
  fclose(fp);
  rp = strrchr(buf, ')'); /* the state follows the command's ")" */
  return rp && rp[1] == ' ' && rp[2] != 'Z' && rp[2] != 'X';
}

int kcld_test_wait_dead(pid_t pid, unsigned timeout_ms)
{
  unsigned long long end = kcld_test_now_ms() + timeout_ms;
  while (kcld_test_pid_alive(pid)) {
    if (kcld_test_now_ms() >= end)
      return 0;
    kcld_test_sleep_ms(10);
  }
  return 1;
}

unsigned long long kcld_test_now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (unsigned long long)ts.tv_sec * 1000ULL +
         (unsigned long long)ts.tv_nsec / 1000000ULL;
}

void kcld_test_sleep_ms(unsigned ms)
{
  struct timespec ts = {.tv_sec = ms / 1000,
                        .tv_nsec = (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
}
