/* pool.h — the worker pool: CPU-heavy work (GetRecords parsing, base64 and
 * KPL de-aggregation, in-process handlers) runs here, off the loop thread.
 *
 * It is libuv's thread pool, sized once at start-up.  A job's work function
 * runs on a pool thread and must not touch loop state; its done function runs
 * on the loop thread, also when the job was cancelled (status UV_ECANCELED). */
#ifndef KCLD_PROCESS_POOL_H
#define KCLD_PROCESS_POOL_H

#include <uv.h>

/* Sizes the pool to `workers` threads (0 = number of CPUs).  Must be called
 * before the first job is queued, from the main thread; later calls and an
 * explicit UV_THREADPOOL_SIZE in the environment win.  Returns the size. */
unsigned kcld_pool_init(unsigned workers);

#endif
