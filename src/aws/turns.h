/* turns.h — a cap on requests in flight, and the requests waiting for a
 * turn, oldest first.  The AWS client keeps one per service: a burst of
 * calls (a tick's lease renewals) then goes out over a bounded set of
 * connections that all stay in use, instead of opening connections that
 * the burst needs once and the server closes after they sat idle.
 *
 * The waiter is embedded in the caller's request; the turns never own it.
 * Not thread-safe: one per service of an AWS client, on its loop. */
#ifndef KCLD_AWS_TURNS_H
#define KCLD_AWS_TURNS_H

struct kcld_turn_waiter {
  struct kcld_turn_waiter *next;
  int queued;              /* in the queue now */
};

struct kcld_turns {
  int max;                 /* 0 = no cap */
  int in_flight;           /* turns taken */
  struct kcld_turn_waiter *head, *tail;
};

/* Takes a turn when one is free (or there is no cap): returns 1.  Else
 * queues w (last) and returns 0. */
int kcld_turns_take(struct kcld_turns *t, struct kcld_turn_waiter *w);

/* Takes w out of the queue, if it is there (it gave up waiting). */
void kcld_turns_remove(struct kcld_turns *t, struct kcld_turn_waiter *w);

/* Gives back a turn taken. */
void kcld_turns_end(struct kcld_turns *t);

/* The oldest waiter when a turn is free for it: it is dequeued and holds
 * the turn (counted).  NULL when none waits or no turn is free. */
struct kcld_turn_waiter *kcld_turns_next(struct kcld_turns *t);

#endif
