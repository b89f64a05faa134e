/* consumer_fakes.h — for the tests that fake consume/shard_consumer.c at
 * link time (they define kcld_shard_consumer_progress and _done): the
 * consumer's other calls the dispatcher makes, faked the same way.  A
 * window text goes with progress as plain progress, the shard is always
 * caught up, and no lease carries a window.  Include it once, in the test's
 * one .c file. */
#ifndef KCLD_TEST_CONSUMER_FAKES_H
#define KCLD_TEST_CONSUMER_FAKES_H

#include "consume/shard_consumer.h"

void kcld_shard_consumer_progress_window(struct kcld_shard_consumer *c,
                                         const char *sequence, uint64_t sub,
                                         const char *window)
{
  (void)window;
  kcld_shard_consumer_progress(c, sequence, sub);
}

int64_t kcld_shard_consumer_millis_behind(const struct kcld_shard_consumer *c)
{
  (void)c;
  return 0;
}

char *kcld_shard_consumer_take_window(struct kcld_shard_consumer *c,
                                     const char **sequence, uint64_t *sub)
{
  (void)c;
  *sequence = NULL;
  *sub = 0;
  return NULL;
}

#endif
