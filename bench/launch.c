/* launch.c — run a program that dies with the process that started it.
 *
 *   launch [-p PARENT_PID] PROG [ARG]...
 *
 * Asks the kernel to send SIGKILL to this process when its parent ends
 * (prctl PR_SET_PDEATHSIG, kept across execve), then execs PROG.  The parent
 * may already be gone when the request is made: with -p, launch exits 1
 * unless its parent is still PARENT_PID once the request is in force; without
 * it, unless the parent is the one it had before the request.  Every process
 * the benchmarks start (kcld, the peers, the fixture, the floors, and the
 * driver itself under make) goes through it, so a driver killed by SIGKILL
 * or a timeout leaves nothing running.  Exits 127 when PROG cannot be run. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

int main(int argc, char **argv)
{
  pid_t want = getppid();
  int first = 1;

  if (argc > 2 && strcmp(argv[1], "-p") == 0) {
    char *end;
    long p = strtol(argv[2], &end, 10);
    if (*argv[2] == '\0' || *end != '\0' || p <= 1) {
      fprintf(stderr, "launch: bad parent pid %s\n", argv[2]);
      return 2;
    }
    want = (pid_t)p;
    first = 3;
  }
  if (first >= argc) {
    fprintf(stderr, "usage: launch [-p PARENT_PID] PROG [ARG]...\n");
    return 2;
  }
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) {
    fprintf(stderr, "launch: prctl: %s\n", strerror(errno));
    return 1;
  }
  if (getppid() != want)
    return 1;   /* The parent ended before the request took hold. */
  execvp(argv[first], argv + first);
  fprintf(stderr, "launch: %s: %s\n", argv[first], strerror(errno));
  return 127;
}
