/* turns.c — see turns.h. */
#include "aws/turns.h"

#include <stddef.h>

static int turn_free(const struct kcld_turns *t)
{
  return t->max <= 0 || t->in_flight < t->max;
}

int kcld_turns_take(struct kcld_turns *t, struct kcld_turn_waiter *w)
{
  if (turn_free(t) && !t->head) {
    t->in_flight++;
    return 1;
  }
  w->next = NULL;
  w->queued = 1;
  if (t->tail)
    t->tail->next = w;
  else
    t->head = w;
  t->tail = w;
  return 0;
}

void kcld_turns_remove(struct kcld_turns *t, struct kcld_turn_waiter *w)
{
  struct kcld_turn_waiter **pp = &t->head, *prev = NULL;

  if (!w->queued)
    return;
  while (*pp && *pp != w) {
    prev = *pp;
    pp = &(*pp)->next;
  }
  if (*pp) {
    *pp = w->next;
    if (t->tail == w)
      t->tail = prev;
  }
  w->next = NULL;
  w->queued = 0;
}

void kcld_turns_end(struct kcld_turns *t)
{
  if (t->in_flight > 0)
    t->in_flight--;
}

struct kcld_turn_waiter *kcld_turns_next(struct kcld_turns *t)
{
  struct kcld_turn_waiter *w = t->head;

  if (!w || !turn_free(t))
    return NULL;
  t->head = w->next;
  if (!t->head)
    t->tail = NULL;
  w->next = NULL;
  w->queued = 0;
  t->in_flight++;
  return w;
}
