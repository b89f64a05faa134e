/* subscriber.h — the enhanced fan-out fetch source of a shard consumer
 * (source.h): SubscribeToShard subscriptions of one consumer to one shard,
 * one after the other, each event's records parsed on the worker pool and
 * handed to the core in order.  No GetRecords call is ever made.
 *
 *  - Where: the first subscription starts at the core's start position
 *    (the lease's checkpoint, or the initial position); every later one
 *    AFTER_SEQUENCE_NUMBER the last ContinuationSequenceNumber handed to
 *    the core (not the checkpoint: nothing is read twice).  While no event
 *    has carried a continuation yet, the start position again.
 *  - When: a subscription ends after at most 5 minutes (or earlier, when
 *    the service says so); the next one starts at once, once the events
 *    received are parsed - but never sooner than min_call_ms after the
 *    last SubscribeToShard (the service allows 1 call per second per
 *    consumer and shard).  LimitExceededException, ResourceInUseException
 *    (a subscription still open elsewhere, e.g. just after a lease moved)
 *    and every other failure back off (exponential with jitter, capped);
 *    a frame with a bad CRC, a reset or cut stream, a timeout or an event
 *    that does not parse resubscribe from the last continuation after that
 *    backoff (none for the first failure in a row).  A failure is logged
 *    once per run (shard, type, message); LimitExceeded and ResourceInUse
 *    are expected and logged at debug level.  Until an event is handed
 *    to the core again, the last failure is the source's fetch_failing
 *    and fetch_error (source.h stats): a shard whose subscriptions keep
 *    failing is stalled for the stall detector (ops/stall.h).
 *  - The end: an event with ChildShards and no continuation is the
 *    shard's last batch (batch->shard_end); nothing is read after it.
 *  - Memory (budget.h): every event's payload is copied into a block of
 *    the shard's account as it arrives and parsed from there; reading on
 *    needs the account's admission with the last event's sizes as
 *    estimates (the largest seen while the shard is behind).  Refused, or
 *    while the core does not want more, the subscription is paused
 *    (kcld_fanout_sub_pause: HTTP/2 flow control holds the service back)
 *    and resumed when the account wakes or the core resumes.  Events
 *    curl had already received when it paused (HTTP/2 flow control acts
 *    only from then on) need an admission too: the first refused ends the
 *    subscription, and the next one starts after the events kept.  A
 *    subscription paused for long is ended by the service; the next one
 *    starts from the last continuation once reading may go on.
 *  - Stop and close cancel the subscription at once (the HTTP/2 stream is
 *    reset), e.g. when the lease is lost.
 * Loop thread only, except the parse job (getrecords.h). */
#ifndef KCLD_CONSUME_SUBSCRIBER_H
#define KCLD_CONSUME_SUBSCRIBER_H

#include <stdint.h>
#include <uv.h>

#include "aws/fanout.h"
#include "consume/budget.h"
#include "consume/source.h"

struct kcld_subscriber_opts {
  struct kcld_source_args src;   /* min_call_ms: between two
                                    SubscribeToShard calls */
  struct kcld_fanout *fanout;    /* borrowed */
  const char *consumer_arn;      /* copied */
};

/* The fan-out source's ops. */
extern const struct kcld_source_ops kcld_subscriber_ops;

/* Creates a fan-out source and starts it: the first subscription is asked
 * for now (callbacks run later).  Returns 0 and the source in *out, or
 * KCLD_EINVAL / KCLD_ENOMEM and nothing was started. */
int kcld_subscriber_start(const struct kcld_subscriber_opts *opts, void **out);

#endif
