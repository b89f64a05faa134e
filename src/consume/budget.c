/* budget.c — memory for fetched data: the process-wide budget, accounts,
 * the block pool and the parse queue.  See budget.h.
 *
 * Blocks carry a small header (capacity, account).  Capacities are rounded
 * to size classes (eight per power of two, 4 KiB at least) so that answers
 * of about the same size reuse the same blocks; a pooled block is handed
 * out for a request at most half its size.  The pool and the account
 * counters may be touched from any thread (atomics, and a mutex for the
 * pool's lists); admission, the wait queue and wakes belong to the loop,
 * which threads reach through one uv_async handle. */
#include "consume/budget.h"

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

#define MIN_CLASS_SHIFT 12                 /* 4 KiB */
#define NBINS 256
#define SPAN 8                             /* bins searched above a class */
#define IDLE_MAX_UNLIMITED ((size_t)64 << 20)

/* The header in front of every block. */
struct blk {
  alignas(16) size_t cap;                  /* bytes, header included */
  struct kcld_fetch_account *acct;         /* NULL: plain, not pooled */
  struct blk *next;                        /* in a pool bin */
};

enum job_state { J_IDLE, J_QUEUED, J_RUNNING };

struct kcld_fetch_budget {
  uv_loop_t *loop;
  uv_async_t async;
  size_t max_total;
  unsigned slots;
  atomic_size_t used;                      /* held + reservations */
  atomic_size_t held;                      /* bytes of live blocks */
  atomic_size_t peak;
  atomic_uint_fast64_t fresh, reused;
  atomic_int refs;                         /* open + accounts */
  atomic_int waiters;                      /* accounts in the wait queue */
  atomic_int wanting;                      /* accounts with want_wake set */
  pthread_mutex_t mu;                      /* bins, idle, closed, wakes */
  struct blk *bins[NBINS];
  size_t idle;
  int closed;
  struct kcld_fetch_account *wakes;        /* to wake on the loop (LIFO) */
  /* Loop only. */
  struct kcld_fetch_account *qhead, *qtail; /* waiting for the budget */
  struct kcld_fetch_job *jhead, *jtail;    /* waiting for a parse slot */
  unsigned running, queued;
};

struct kcld_fetch_account {
  struct kcld_fetch_budget *b;
  size_t max;
  kcld_fetch_wake_cb wake;
  void *arg;
  atomic_size_t held;                      /* bytes of live blocks */
  atomic_size_t reserved;                  /* admitted, not yet used */
  atomic_size_t peak;
  atomic_uint_fast64_t fresh, reused;
  atomic_int refs;                         /* open + blocks */
  atomic_int want_wake;                    /* refused by its own limit */
  atomic_int wake_pending;                 /* cleared: its wake is void */
  struct kcld_fetch_account *wnext;        /* in b->wakes (b->mu) */
  int on_wakes, dead;                      /* b->mu */
  /* Loop only. */
  struct kcld_fetch_account *qnext;        /* in the wait queue */
  size_t need;                             /* what it waits for */
  int queued, granted, open;
};

/* ======== Size classes ======== */

static unsigned floor_log2(size_t n)
{
  unsigned e = 0;
  while (n >>= 1)
    e++;
  return e;
}

/* The class capacity for n bytes (header included) and its bin. */
static size_t class_cap(size_t n, unsigned *bin)
{
  size_t min = (size_t)1 << MIN_CLASS_SHIFT;
  if (n <= min) {
    *bin = 0;
    return min;
  }
  unsigned e = floor_log2(n - 1);          /* 2^e < n <= 2^(e+1) */
  size_t step = (size_t)1 << (e - 3);
  size_t cap = (n + step - 1) / step * step;
  unsigned ce = floor_log2(cap);
  unsigned m = (unsigned)(cap >> (ce - 3)) - 8;
  unsigned idx = (ce - MIN_CLASS_SHIFT) * 8 + m;
  *bin = idx < NBINS ? idx : NBINS; /* NBINS: too large to pool */
  return cap;
}

/* ======== Budget counters ======== */

static void peak_max(atomic_size_t *peak, size_t v)
{
  size_t p = atomic_load(peak);
  while (v > p && !atomic_compare_exchange_weak(peak, &p, v))
    ;
}

static void used_add(struct kcld_fetch_budget *b, size_t n)
{
  size_t v = atomic_fetch_add(&b->used, n) + n;
  peak_max(&b->peak, v);
}

static void account_note(struct kcld_fetch_account *a)
{
  peak_max(&a->peak, atomic_load(&a->held) + atomic_load(&a->reserved));
}

static void budget_unref(struct kcld_fetch_budget *b)
{
  if (atomic_fetch_sub(&b->refs, 1) != 1)
    return;
  for (unsigned i = 0; i < NBINS; i++) {
    while (b->bins[i]) {
      struct blk *k = b->bins[i];
      b->bins[i] = k->next;
      free(k);
    }
  }
  pthread_mutex_destroy(&b->mu);
  free(b);
}

static void account_unref(struct kcld_fetch_account *a)
{
  if (atomic_fetch_sub(&a->refs, 1) != 1)
    return;
  struct kcld_fetch_budget *b = a->b;
  free(a);
  budget_unref(b);
}

/* Asks the loop to look at waiters and wakes (any thread). */
static void signal_loop(struct kcld_fetch_budget *b)
{
  pthread_mutex_lock(&b->mu);
  if (!b->closed)
    uv_async_send(&b->async);
  pthread_mutex_unlock(&b->mu);
}

/* Sets or clears an account's request for a wake, keeping the count the
 * loop looks at instead of walking every account. */
static void want_set(struct kcld_fetch_account *a, int on)
{
  if (atomic_exchange(&a->want_wake, on) != on)
    atomic_fetch_add(&a->b->wanting, on ? 1 : -1);
}

/* Any thread: the account wanted a wake and now gets one.  Puts it on the
 * budget's wake list (so the loop wakes just those, not a walk over every
 * account: 1024 idle shards made that walk a measurable part of kcld's CPU)
 * and signals the loop. */
static void wake_later(struct kcld_fetch_account *a)
{
  struct kcld_fetch_budget *b = a->b;
  atomic_store(&a->wake_pending, 1);
  pthread_mutex_lock(&b->mu);
  if (!a->dead && !a->on_wakes) {
    a->wnext = b->wakes;
    b->wakes = a;
    a->on_wakes = 1;
  }
  if (!b->closed)
    uv_async_send(&b->async);
  pthread_mutex_unlock(&b->mu);
}

/* Frees idle blocks, largest first, until a new block of `need` bytes
 * keeps the memory of blocks (live and idle) within the process budget, or
 * none are left. */
static void evict_for(struct kcld_fetch_budget *b, size_t need)
{
  if (!b->max_total)
    return;
  pthread_mutex_lock(&b->mu);
  for (int i = NBINS - 1; i >= 0 && b->idle > 0; i--) {
    while (b->bins[i] &&
           atomic_load(&b->held) + b->idle + need > b->max_total) {
      struct blk *k = b->bins[i];
      b->bins[i] = k->next;
      b->idle -= k->cap;
      free(k);
    }
  }
  pthread_mutex_unlock(&b->mu);
}

/* Whether `need` more bytes fit the process budget. */
static int global_fits(struct kcld_fetch_budget *b, size_t need)
{
  size_t used = atomic_load(&b->used);
  return !b->max_total || used == 0 || used + need <= b->max_total;
}

static void reserve(struct kcld_fetch_account *a, size_t n)
{
  atomic_fetch_add(&a->reserved, n);
  used_add(a->b, n);
  account_note(a);
}

/* ======== The loop side: grants and wakes ======== */

static void grant_waiters(struct kcld_fetch_budget *b)
{
  while (b->qhead && b->queued < b->slots &&
         global_fits(b, b->qhead->need)) {
    struct kcld_fetch_account *a = b->qhead;
    b->qhead = a->qnext;
    if (!b->qhead)
      b->qtail = NULL;
    a->qnext = NULL;
    a->queued = 0;
    atomic_fetch_sub(&b->waiters, 1);
    reserve(a, a->need);
    a->granted = 1;
    a->wake(a->arg); /* it may admit (granted), close, or settle */
  }
}

/* The async handle keeps the loop alive only while someone waits for a
 * wake. */
static void hold_loop(struct kcld_fetch_budget *b, int hold)
{
  if (b->closed)
    return;
  if (hold)
    uv_ref((uv_handle_t *)&b->async);
  else
    uv_unref((uv_handle_t *)&b->async);
}

static void on_async(uv_async_t *h)
{
  struct kcld_fetch_budget *b = h->data;
  grant_waiters(b);
  /* Accounts whose own bytes went down while they waited for them, one at
   * a time: a wake may close accounts, which leave the list then. */
  for (;;) {
    pthread_mutex_lock(&b->mu);
    struct kcld_fetch_account *a = b->wakes;
    if (a) {
      b->wakes = a->wnext;
      a->wnext = NULL;
      a->on_wakes = 0;
    }
    pthread_mutex_unlock(&b->mu);
    if (!a)
      break;
    if (atomic_exchange(&a->wake_pending, 0))
      a->wake(a->arg);
  }
  hold_loop(b, b->qhead != NULL || atomic_load(&b->wanting) > 0);
}

static void on_async_closed(uv_handle_t *h)
{
  budget_unref(h->data);
}

/* ======== Budget ======== */

int kcld_fetch_budget_new(const struct kcld_fetch_budget_opts *opts,
                          struct kcld_fetch_budget **out)
{
  struct kcld_fetch_budget *b;
  if (!opts || !opts->loop || !out)
    return KCLD_EINVAL;
  *out = NULL;
  b = calloc(1, sizeof(*b));
  if (!b)
    return KCLD_ENOMEM;
  b->loop = opts->loop;
  b->max_total = opts->max_total_bytes;
  b->slots = opts->parse_slots ? opts->parse_slots : 1;
  atomic_init(&b->refs, 1);
  pthread_mutex_init(&b->mu, NULL);
  if (uv_async_init(b->loop, &b->async, on_async) != 0) {
    pthread_mutex_destroy(&b->mu);
    free(b);
    return KCLD_EINVAL;
  }
  b->async.data = b;
  uv_unref((uv_handle_t *)&b->async); /* wakes only; keeps no loop alive */
  *out = b;
  return 0;
}

void kcld_fetch_budget_close(struct kcld_fetch_budget *b)
{
  if (!b)
    return;
  pthread_mutex_lock(&b->mu);
  b->closed = 1;
  pthread_mutex_unlock(&b->mu);
  uv_close((uv_handle_t *)&b->async, on_async_closed);
}

void kcld_fetch_budget_stats(const struct kcld_fetch_budget *b,
                             struct kcld_fetch_budget_stats *out)
{
  struct kcld_fetch_budget *mb = (struct kcld_fetch_budget *)b;
  memset(out, 0, sizeof(*out));
  out->max_total_bytes = b->max_total;
  out->used_bytes = atomic_load(&mb->used);
  out->peak_bytes = atomic_load(&mb->peak);
  pthread_mutex_lock(&mb->mu);
  out->idle_bytes = b->idle;
  pthread_mutex_unlock(&mb->mu);
  out->waiting = (size_t)atomic_load(&mb->waiters);
  out->parsing = b->running;
  out->parse_queued = b->queued;
  out->fresh_blocks = atomic_load(&mb->fresh);
  out->reused_blocks = atomic_load(&mb->reused);
}

/* ======== Accounts ======== */

int kcld_fetch_account_new(struct kcld_fetch_budget *b, size_t max_bytes,
                           kcld_fetch_wake_cb wake, void *arg,
                           struct kcld_fetch_account **out)
{
  struct kcld_fetch_account *a;
  if (!b || !wake || !out || b->closed)
    return KCLD_EINVAL;
  *out = NULL;
  a = calloc(1, sizeof(*a));
  if (!a)
    return KCLD_ENOMEM;
  a->b = b;
  a->max = max_bytes;
  a->wake = wake;
  a->arg = arg;
  a->open = 1;
  atomic_init(&a->refs, 1);
  atomic_fetch_add(&b->refs, 1);
  *out = a;
  return 0;
}

static void unqueue(struct kcld_fetch_account *a)
{
  struct kcld_fetch_budget *b = a->b;
  struct kcld_fetch_account **pp = &b->qhead, *prev = NULL;
  if (!a->queued)
    return;
  while (*pp && *pp != a) {
    prev = *pp;
    pp = &(*pp)->qnext;
  }
  if (*pp) {
    *pp = a->qnext;
    if (b->qtail == a)
      b->qtail = prev;
    atomic_fetch_sub(&b->waiters, 1);
  }
  a->qnext = NULL;
  a->queued = 0;
}

void kcld_fetch_account_close(struct kcld_fetch_account *a)
{
  if (!a || !a->open)
    return;
  struct kcld_fetch_budget *b = a->b;
  a->open = 0;
  unqueue(a);
  kcld_fetch_account_settle(a);
  want_set(a, 0);
  atomic_store(&a->wake_pending, 0);
  pthread_mutex_lock(&b->mu);
  a->dead = 1;
  for (struct kcld_fetch_account **pp = &b->wakes; *pp; pp = &(*pp)->wnext)
    if (*pp == a) {
      *pp = a->wnext;
      break;
    }
  a->on_wakes = 0;
  pthread_mutex_unlock(&b->mu);
  signal_loop(b); /* whether the loop is still held for a wake */
  account_unref(a);
}

int kcld_fetch_account_admit(struct kcld_fetch_account *a, size_t body_bytes,
                             size_t batch_bytes)
{
  struct kcld_fetch_budget *b = a->b;
  if (a->granted) {
    a->granted = 0;
    return 1;
  }
  if (a->queued)
    return 0;
  if (a->max) {
    /* Ask for a wake first, then look: a block freed meanwhile on another
     * thread either sees the request or is seen here. */
    want_set(a, 1);
    size_t mine = atomic_load(&a->held) + atomic_load(&a->reserved);
    if (mine > 0 && mine + body_bytes > a->max) {
      hold_loop(b, 1);
      return 0;
    }
    want_set(a, 0);
    atomic_store(&a->wake_pending, 0);
  }
  /* An estimate beyond a limit reserves the limit: the answer is let in
   * alone (nothing else held) and counted as it comes. */
  size_t need = body_bytes + batch_bytes;
  if (b->max_total && need > b->max_total)
    need = b->max_total;
  if (b->qhead || b->queued >= b->slots || !global_fits(b, need)) {
    a->need = need;
    a->queued = 1;
    if (b->qtail)
      b->qtail->qnext = a;
    else
      b->qhead = a;
    b->qtail = a;
    atomic_fetch_add(&b->waiters, 1);
    hold_loop(b, 1);
    return 0;
  }
  reserve(a, need);
  return 1;
}

/* Takes up to n bytes off the account's reservation (any thread);
 * returns how many. */
static size_t take_reserved(struct kcld_fetch_account *a, size_t n)
{
  size_t r = atomic_load(&a->reserved), take;
  do {
    take = r < n ? r : n;
  } while (take && !atomic_compare_exchange_weak(&a->reserved, &r, r - take));
  return take;
}

void kcld_fetch_account_unreserve(struct kcld_fetch_account *a, size_t n)
{
  size_t r = take_reserved(a, n);
  if (r) {
    atomic_fetch_sub(&a->b->used, r);
    if (a->b->qhead)
      signal_loop(a->b);
  }
}

void kcld_fetch_account_settle(struct kcld_fetch_account *a)
{
  kcld_fetch_account_unreserve(a, SIZE_MAX);
}

void kcld_fetch_account_stats(const struct kcld_fetch_account *a,
                              struct kcld_fetch_account_stats *out)
{
  struct kcld_fetch_account *ma = (struct kcld_fetch_account *)a;
  out->bytes = atomic_load(&ma->held) + atomic_load(&ma->reserved);
  out->peak_bytes = atomic_load(&ma->peak);
  out->fresh_blocks = atomic_load(&ma->fresh);
  out->reused_blocks = atomic_load(&ma->reused);
  out->waiting = a->queued || atomic_load(&ma->want_wake);
}

/* ======== Blocks ======== */

/* An idle block of class `bin` or up to SPAN classes above, or NULL. */
static struct blk *pool_take(struct kcld_fetch_budget *b, unsigned bin)
{
  struct blk *k = NULL;
  if (bin >= NBINS)
    return NULL;
  pthread_mutex_lock(&b->mu);
  for (unsigned i = bin; i < NBINS && i <= bin + SPAN && !k; i++) {
    if (b->bins[i]) {
      k = b->bins[i];
      b->bins[i] = k->next;
      b->idle -= k->cap;
    }
  }
  pthread_mutex_unlock(&b->mu);
  return k;
}

void *kcld_fetch_alloc(struct kcld_fetch_account *a, size_t size)
{
  struct blk *k;
  unsigned bin;
  size_t cap;
  if (size > SIZE_MAX / 2)
    return NULL;
  if (!a) {
    k = malloc(sizeof(*k) + size);
    if (!k)
      return NULL;
    k->cap = sizeof(*k) + size;
    k->acct = NULL;
    return k + 1;
  }
  cap = class_cap(sizeof(*k) + size, &bin);
  k = pool_take(a->b, bin);
  if (k) {
    atomic_fetch_add(&a->b->reused, 1);
    atomic_fetch_add(&a->reused, 1);
  } else {
    evict_for(a->b, cap);
    k = malloc(cap);
    if (!k)
      return NULL;
    k->cap = cap;
    atomic_fetch_add(&a->b->fresh, 1);
    atomic_fetch_add(&a->fresh, 1);
  }
  k->acct = a;
  atomic_fetch_add(&a->refs, 1);
  /* The reservation pays first; the rest is new to the budget. */
  size_t take = take_reserved(a, k->cap);
  atomic_fetch_add(&a->held, k->cap);
  atomic_fetch_add(&a->b->held, k->cap);
  if (k->cap > take)
    used_add(a->b, k->cap - take);
  account_note(a);
  return k + 1;
}

size_t kcld_fetch_cost(size_t size)
{
  unsigned bin;
  if (size > SIZE_MAX / 2)
    return SIZE_MAX;
  return class_cap(sizeof(struct blk) + size, &bin);
}

size_t kcld_fetch_capacity(const void *p)
{
  const struct blk *k = (const struct blk *)p - 1;
  return k->cap - sizeof(*k);
}

size_t kcld_fetch_charged(const void *p)
{
  return ((const struct blk *)p - 1)->cap;
}

void *kcld_fetch_grow(struct kcld_fetch_account *a, void *p, size_t keep,
                      size_t size)
{
  void *n;
  if (p && kcld_fetch_capacity(p) >= size)
    return p;
  n = kcld_fetch_alloc(p ? ((struct blk *)p - 1)->acct : a, size);
  if (!n)
    return NULL;
  if (p) {
    memcpy(n, p, keep);
    kcld_fetch_free(p);
  }
  return n;
}

void kcld_fetch_free(void *p)
{
  struct blk *k;
  struct kcld_fetch_account *a;
  struct kcld_fetch_budget *b;
  unsigned bin;
  int kept = 0;
  if (!p)
    return;
  k = (struct blk *)p - 1;
  a = k->acct;
  if (!a) {
    free(k);
    return;
  }
  b = a->b;
  atomic_fetch_sub(&a->held, k->cap);
  atomic_fetch_sub(&b->held, k->cap);
  atomic_fetch_sub(&b->used, k->cap);
  class_cap(k->cap, &bin);
  pthread_mutex_lock(&b->mu);
  size_t limit = b->max_total ? b->max_total : IDLE_MAX_UNLIMITED;
  size_t base = b->max_total ? atomic_load(&b->held) : 0;
  if (!b->closed && bin < NBINS && base + b->idle + k->cap <= limit) {
    k->next = b->bins[bin];
    b->bins[bin] = k;
    b->idle += k->cap;
    kept = 1;
  }
  pthread_mutex_unlock(&b->mu);
  if (!kept)
    free(k);
  if (atomic_load(&a->want_wake) && atomic_exchange(&a->want_wake, 0)) {
    atomic_fetch_sub(&b->wanting, 1);
    wake_later(a);
  } else if (atomic_load(&b->waiters) > 0) {
    signal_loop(b);
  }
  account_unref(a);
}

/* ======== Parse jobs ======== */

static void job_work(uv_work_t *w)
{
  struct kcld_fetch_job *j = (struct kcld_fetch_job *)w;
  j->run(j);
}

static void job_after(uv_work_t *w, int status);

static int job_start(struct kcld_fetch_job *j)
{
  struct kcld_fetch_budget *b = j->budget;
  j->state = J_RUNNING;
  b->running++;
  int rc = uv_queue_work(b->loop, &j->work, job_work, job_after);
  if (rc != 0) {
    b->running--;
    j->state = J_IDLE;
  }
  return rc;
}

/* Starts queued jobs while slots are free. */
static void jobs_pump(struct kcld_fetch_budget *b)
{
  while (b->jhead && b->running < b->slots) {
    struct kcld_fetch_job *j = b->jhead;
    b->jhead = j->next;
    if (!b->jhead)
      b->jtail = NULL;
    j->next = NULL;
    b->queued--;
    if (job_start(j) != 0)
      j->done(j, UV_EINVAL);
  }
  if (b->qhead)
    uv_async_send(&b->async); /* a waiter may fit now */
}

static void job_after(uv_work_t *w, int status)
{
  struct kcld_fetch_job *j = (struct kcld_fetch_job *)w;
  struct kcld_fetch_budget *b = j->budget;
  b->running--;
  j->state = J_IDLE;
  jobs_pump(b);
  j->done(j, status);
}

int kcld_fetch_job_submit(struct kcld_fetch_budget *b,
                          struct kcld_fetch_job *j)
{
  if (!b || !j || !j->run || !j->done || j->state != J_IDLE)
    return KCLD_EINVAL;
  j->budget = b;
  j->next = NULL;
  if (b->running < b->slots && !b->jhead)
    return job_start(j) == 0 ? 0 : KCLD_EIO;
  j->state = J_QUEUED;
  if (b->jtail)
    b->jtail->next = j;
  else
    b->jhead = j;
  b->jtail = j;
  b->queued++;
  return 0;
}

int kcld_fetch_job_cancel(struct kcld_fetch_job *j)
{
  struct kcld_fetch_budget *b = j->budget;
  if (j->state == J_RUNNING) {
    uv_cancel((uv_req_t *)&j->work);
    return 0;
  }
  if (j->state != J_QUEUED)
    return 1;
  struct kcld_fetch_job **pp = &b->jhead, *prev = NULL;
  while (*pp && *pp != j) {
    prev = *pp;
    pp = &(*pp)->next;
  }
  if (*pp) {
    *pp = j->next;
    if (b->jtail == j)
      b->jtail = prev;
    b->queued--;
  }
  j->next = NULL;
  j->state = J_IDLE;
  return 1;
}
