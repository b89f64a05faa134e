/* pool.c — sizing libuv's thread pool, which serves as kcld's worker pool. */
#include "process/pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static unsigned s_size;

unsigned kcld_pool_init(unsigned workers)
{
  const char *env = getenv("UV_THREADPOOL_SIZE");
  char buf[16];

  if (s_size)
    return s_size;
  if (env && atoi(env) > 0) {
    s_size = (unsigned)atoi(env);
    return s_size;
  }
  if (workers == 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    workers = n > 0 ? (unsigned)n : 4;
  }
  if (workers > 1024) /* libuv's own limit */
    workers = 1024;
  /* libuv reads the variable when the pool starts (the first queued job). */
  snprintf(buf, sizeof(buf), "%u", workers);
  setenv("UV_THREADPOOL_SIZE", buf, 1);
  s_size = workers;
  return s_size;
}
