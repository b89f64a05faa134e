/* proc.h — kcld worker processes for end-to-end tests.
 *
 * Workers are forked with PR_SET_PDEATHSIG=SIGKILL, so none outlives the
 * test that started it, however the test ends. */
#ifndef KCLD_TEST_PROC_H
#define KCLD_TEST_PROC_H

#include <sys/types.h>

/* In a child about to exec kcld: STATE_DIRECTORY (unless set already)
 * becomes the directory of config_path, so kcld's default dead-letter
 * directory is <that directory>/dead-letter, inside the test's temporary
 * directory, as it is under systemd's StateDirectory=. */
void kcld_test_state_dir(const char *config_path);

/* Starts `kcld --config config_path` (the build under test), stdout and
 * stderr appended to log_path, STATE_DIRECTORY set by kcld_test_state_dir.
 * Returns the pid (asserts on failure). */
pid_t kcld_test_spawn_kcld(const char *config_path, const char *log_path);

/* Waits up to timeout_ms for pid to exit.  Returns 1 and the wait status in
 * *status when it did, 0 when it is still running. */
int kcld_test_wait_exit(pid_t pid, unsigned timeout_ms, int *status);

/* Kills (SIGKILL) and reaps pid if it is still running. */
void kcld_test_reap(pid_t pid);

/* 1 while `pid` is a process that has not exited (a zombie has), by
 * /proc/PID/stat: also for processes that are not the caller's children. */
int kcld_test_pid_alive(pid_t pid);

/* Waits up to timeout_ms for kcld_test_pid_alive(pid) to turn 0; returns 1
 * when it did. */
int kcld_test_wait_dead(pid_t pid, unsigned timeout_ms);

/* Milliseconds on the monotonic clock. */
unsigned long long kcld_test_now_ms(void);

/* Sleeps ms milliseconds. */
void kcld_test_sleep_ms(unsigned ms);

#endif
