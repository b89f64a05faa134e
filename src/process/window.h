/* window.h — one shard's tumbling window (window.tumbling), as Lambda's
 * TumblingWindowInSeconds: which window a record belongs to, the state the
 * handler carries from one call of the window to the next, and when the
 * window has outgrown its state limit.
 *
 * A record belongs to the window [start, start + tumbling) with start =
 * floor(approximateArrivalTimestamp / tumbling) * tumbling (epoch ms).  A
 * window is open from its first record's batch until its final call: the
 * state starts as "{}" and each answer replaces it.  The dispatcher
 * (process/dispatcher.h) decides when calls happen; this module only keeps
 * the values.  Loop thread only. */
#ifndef KCLD_PROCESS_WINDOW_H
#define KCLD_PROCESS_WINDOW_H

#include <stddef.h>
#include <stdint.h>

/* Lambda's limit on a shard's window state: a larger answer ends the
 * window early. */
#define KCLD_WINDOW_STATE_MAX (1024u * 1024u)

struct kcld_window {
  int64_t tumbling_ms;         /* 0 = windows are off */
  int open;                    /* a window has begun and not closed */
  int64_t start_ms;            /* with open: the window's start */
  char *state;                 /* with open: JSON object text (malloc'd) */
  size_t state_len;
};

/* The open window's state outgrew KCLD_WINDOW_STATE_MAX: the next call is
 * the final one (the window ends early). */
static inline int kcld_window_early(const struct kcld_window *w)
{
  return w->open && w->state_len > KCLD_WINDOW_STATE_MAX;
}

/* The start of the window of a record that arrived at arrival_ms (epoch
 * ms; < 0 = unknown: the window open now, else the one of now_ms). */
int64_t kcld_window_start_of(const struct kcld_window *w, int64_t arrival_ms,
                             int64_t now_ms);

/* Opens the window that starts at start_ms with the state "{}".  Returns
 * 0 or KCLD_ENOMEM (nothing changed). */
int kcld_window_begin(struct kcld_window *w, int64_t start_ms);

/* Replaces the open window's state with a copy of state[0..len).  Returns
 * 0, or KCLD_ENOMEM (nothing changed).  A state over KCLD_WINDOW_STATE_MAX
 * is kept for the final call (kcld_window_early). */
int kcld_window_set_state(struct kcld_window *w, const char *state,
                          size_t len);

/* As kcld_window_set_state, taking `state` (malloc'd, NUL-terminated at
 * len) instead of copying it: the answer's copy becomes the window's. */
void kcld_window_take_state(struct kcld_window *w, char *state, size_t len);

/* Closes the window: its state is dropped. */
void kcld_window_close(struct kcld_window *w);

/* What the lease item keeps of the window (kcldWindowState, lease/table.h)
 * with the checkpoint (sequence, sub) it belongs to:
 *   {"v":1,"tumbling":ms,"start":ms,"checkpoint":"seq","sub":n,
 *    "state":{...}}
 * or "" (no window kept: none open, or one that ended early; also one
 * whose text would pass KCLD_WINDOW_STORE_MAX, which *too_big then says).
 * Returns malloc'd text, or NULL when out of memory. */
char *kcld_window_encode(const struct kcld_window *w, const char *sequence,
                         uint64_t sub, int *too_big);

/* The room for kcldWindowState in a lease item (DynamoDB items hold 400
 * KB in all). */
#define KCLD_WINDOW_STORE_MAX (350u * 1000u)

/* Opens the window a lease item kept (text from kcld_window_encode) when
 * it belongs to the checkpoint the shard starts from (sequence, sub) and
 * to this window length.  Returns 1 (open, with its state), 0 (not
 * taken: *why says why, for the log) or KCLD_ENOMEM. */
int kcld_window_restore(struct kcld_window *w, const char *text,
                        const char *sequence, uint64_t sub,
                        const char **why);

#endif
