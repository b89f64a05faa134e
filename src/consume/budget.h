/* budget.h — memory for fetched data: a process-wide budget, one account per
 * shard, blocks reused across answers, and a bounded queue of parse jobs.
 *
 * The daemon owns one budget (fetch.max_total_buffered_bytes) and passes it
 * to every shard consumer; each consumer opens an account on it
 * (fetch.max_buffered_bytes).  Every byte of fetched data lives in a block
 * of an account: GetRecords bodies from their first byte until they are
 * parsed, parsed batches until their last reference is released (on any
 * thread; also after the sink called done).  Blocks go back to the budget's
 * pool when freed and are handed out again, so a steady stream of answers
 * allocates (and faults in) no new memory.
 *
 * Admission, before each fetch (kcld_fetch_account_admit), with estimates of
 * the answer's body and parsed batch:
 *  - the shard: its bytes (blocks held plus reservations) + the body
 *    estimate fit its max_bytes, or it holds nothing;
 *  - the process: the budget's bytes + both estimates fit max_total_bytes,
 *    or nothing is held at all; and fewer bodies wait for a parse thread
 *    than there are parse slots.  Shards waiting for the process budget are
 *    served first come, first served.
 * The estimates are reserved until kcld_fetch_account_settle; blocks first
 * use up the reservation.  So the budget holds unless an answer is larger
 * than its estimate.  Idle pooled blocks count toward max_total_bytes too:
 * a freed block is kept only while live and idle blocks fit it, and idle
 * blocks are freed when a new block would not fit beside them.
 *
 * Loop thread only, except kcld_fetch_alloc, kcld_fetch_grow and
 * kcld_fetch_free (any thread).  Callbacks (wakes, job completions) run on
 * the loop, never from inside a call into this module. */
#ifndef KCLD_CONSUME_BUDGET_H
#define KCLD_CONSUME_BUDGET_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct kcld_fetch_budget;
struct kcld_fetch_account;

struct kcld_fetch_budget_opts {
  uv_loop_t *loop;
  size_t max_total_bytes;  /* 0 = no process-wide limit */
  unsigned parse_slots;    /* parse jobs on the worker pool at once; 0 = 1 */
};

/* Creates a budget.  Returns 0, KCLD_EINVAL or KCLD_ENOMEM. */
int kcld_fetch_budget_new(const struct kcld_fetch_budget_opts *opts,
                          struct kcld_fetch_budget **out);

/* Closes the budget (its loop handle closes: run the loop afterwards); the
 * memory goes once every account is closed and every block freed.  NULL is
 * ignored. */
void kcld_fetch_budget_close(struct kcld_fetch_budget *b);

struct kcld_fetch_budget_stats {
  size_t max_total_bytes;
  size_t used_bytes;       /* blocks held + reservations */
  size_t peak_bytes;       /* highest used_bytes seen */
  size_t idle_bytes;       /* pooled blocks waiting for reuse */
  size_t waiting;          /* accounts waiting for the process budget */
  unsigned parsing;        /* parse jobs on the pool */
  unsigned parse_queued;   /* parse jobs waiting for a slot */
  uint64_t fresh_blocks;   /* blocks allocated anew */
  uint64_t reused_blocks;  /* blocks taken from the pool */
};

void kcld_fetch_budget_stats(const struct kcld_fetch_budget *b,
                             struct kcld_fetch_budget_stats *out);

/* ======== Accounts ======== */

/* Runs on the loop when an account that was refused admission may try
 * again (its own bytes went down, or the process budget has room). */
typedef void (*kcld_fetch_wake_cb)(void *arg);

/* Opens an account of at most max_bytes (0 = no per-shard limit) on `b`.
 * Returns 0, KCLD_EINVAL or KCLD_ENOMEM. */
int kcld_fetch_account_new(struct kcld_fetch_budget *b, size_t max_bytes,
                           kcld_fetch_wake_cb wake, void *arg,
                           struct kcld_fetch_account **out);

/* No more wakes; its reservation is returned; the account goes with its
 * last block.  NULL is ignored. */
void kcld_fetch_account_close(struct kcld_fetch_account *a);

/* Asks to fetch an answer estimated at body_bytes of body and batch_bytes
 * once parsed.  Returns 1: go, both estimates are reserved; or 0: not now,
 * wake runs later (then ask again).  Reservations add up until settled (a
 * poller fetches one answer at a time; a subscriber admits event after
 * event, each before the last one is parsed). */
int kcld_fetch_account_admit(struct kcld_fetch_account *a, size_t body_bytes,
                             size_t batch_bytes);

/* The fetch admitted last is over (parsed or failed): its unused
 * reservation goes back. */
void kcld_fetch_account_settle(struct kcld_fetch_account *a);

/* Gives back up to n bytes of the account's reservation: the unused part
 * of one admission while others are still outstanding (a stream's events
 * are admitted one by one, each before the last one's batch is parsed). */
void kcld_fetch_account_unreserve(struct kcld_fetch_account *a, size_t n);

struct kcld_fetch_account_stats {
  size_t bytes;            /* blocks held + reservation */
  size_t peak_bytes;
  uint64_t fresh_blocks;   /* blocks allocated anew for this account */
  uint64_t reused_blocks;  /* blocks reused from the pool */
  int waiting;             /* refused admission, wake due */
};

void kcld_fetch_account_stats(const struct kcld_fetch_account *a,
                              struct kcld_fetch_account_stats *out);

/* ======== Blocks (any thread) ======== */

/* A block of at least `size` bytes charged to `a` (NULL: a plain
 * allocation, charged to nobody).  NULL when out of memory. */
void *kcld_fetch_alloc(struct kcld_fetch_account *a, size_t size);

/* Makes block p (of account a, or NULL for a new one) hold at least `size`
 * bytes, keeping its first `keep` bytes; returns the block (p or a new
 * one; p is freed then) or NULL (p unchanged). */
void *kcld_fetch_grow(struct kcld_fetch_account *a, void *p, size_t keep,
                      size_t size);

/* What a block of `size` bytes is charged at (its size class and header):
 * kcld_fetch_charged() of what kcld_fetch_alloc(a, size) returns. */
size_t kcld_fetch_cost(size_t size);

/* Bytes usable at p. */
size_t kcld_fetch_capacity(const void *p);

/* Bytes p is charged at (its capacity and header). */
size_t kcld_fetch_charged(const void *p);

/* Gives a block back (to the pool, or to the system).  NULL is ignored. */
void kcld_fetch_free(void *p);

/* ======== Parse jobs ======== */

/* A job for the worker pool, run when a parse slot is free. */
struct kcld_fetch_job {
  uv_work_t work;          /* work.data is free for the caller */
  void (*run)(struct kcld_fetch_job *j);             /* on a pool thread */
  void (*done)(struct kcld_fetch_job *j, int status); /* on the loop; status
                                                         UV_ECANCELED or 0 */
  /* Private. */
  struct kcld_fetch_budget *budget;
  struct kcld_fetch_job *next;
  int state;
};

/* Queues j (run and done set).  Returns 0 (done will run), or a negative
 * KCLD_E* code. */
int kcld_fetch_job_submit(struct kcld_fetch_budget *b,
                          struct kcld_fetch_job *j);

/* Cancels j: returns 1 when it had not started (done will not run), or 0
 * (done runs as usual, with UV_ECANCELED if the pool had not started it). */
int kcld_fetch_job_cancel(struct kcld_fetch_job *j);

#endif
