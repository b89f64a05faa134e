/* fanout.h — Kinesis enhanced fan-out: stream consumers and SubscribeToShard.
 *
 * A client on the shared AWS client, like kinesis.h (its own struct until
 * the Kinesis wrappers share one skeleton; then these calls belong in
 * kinesis.c).  Consumer calls answer once, on the loop; a subscription
 * delivers the events of one SubscribeToShard stream as they arrive and
 * ends once.  Every call returns 0 and later calls its callback, or returns
 * a negative KCLD_E* code (KCLD_EINVAL, KCLD_ECANCELED after close,
 * KCLD_ENOMEM) and never calls it.  Errors are classified with
 * kcld_kinesis_fault() (kinesis.h).
 *
 * Loop thread only. */
#ifndef KCLD_AWS_FANOUT_H
#define KCLD_AWS_FANOUT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "aws/call.h"
#include "aws/eventstream.h"
#include "aws/svc.h"

struct kcld_fanout;

/* Creates a client over `aws` (borrowed; it must outlive this client).
 * Returns 0, KCLD_EINVAL or KCLD_ENOMEM. */
int kcld_fanout_new(struct kcld_aws *aws, uv_loop_t *loop,
                    struct kcld_fanout **out);

/* Cancels every pending call and subscription (callbacks run now with
 * KCLD_ECANCELED) and frees the client; timers close on the loop: run it
 * afterwards.  Close this before the AWS client.  NULL is ignored. */
void kcld_fanout_close(struct kcld_fanout *f);

/* ======== Consumers ======== */

/* A stream consumer.  Valid only during the callback. */
struct kcld_fanout_consumer {
  struct kcld_svc_status st;
  const char *name;
  const char *arn;
  const char *status;       /* "CREATING", "ACTIVE", "DELETING" */
  const char *stream_arn;   /* NULL when the answer does not say */
  double created;           /* epoch seconds */
  int registered;           /* kcld_fanout_ensure: 1 when this call
                               registered it, 0 when it existed */
};

typedef void (*kcld_fanout_consumer_cb)(const struct kcld_fanout_consumer *c,
                                        void *arg);

/* RegisterStreamConsumer `name` on the stream `stream_arn`.  An existing
 * consumer of that name ends with KCLD_EAWS, type ResourceInUseException
 * (KCLD_KINESIS_IN_USE). */
int kcld_fanout_register(struct kcld_fanout *f, const char *stream_arn,
                         const char *name, kcld_fanout_consumer_cb cb,
                         void *arg);

/* DescribeStreamConsumer, by consumer_arn when given, else by stream_arn
 * and name.  A missing consumer ends with KCLD_ENOTFOUND. */
int kcld_fanout_describe(struct kcld_fanout *f, const char *stream_arn,
                         const char *name, const char *consumer_arn,
                         kcld_fanout_consumer_cb cb, void *arg);

struct kcld_fanout_consumer_list {
  struct kcld_svc_status st;
  const struct kcld_fanout_consumer *consumers; /* st unused in these */
  size_t count;
  int pages;
};

typedef void (*kcld_fanout_list_cb)(
  const struct kcld_fanout_consumer_list *res, void *arg);

/* ListStreamConsumers of `stream_arn`, every NextToken page, all at once. */
int kcld_fanout_list(struct kcld_fanout *f, const char *stream_arn,
                     kcld_fanout_list_cb cb, void *arg);

/* Makes sure consumer `name` exists on `stream` (a name, looked up with
 * DescribeStreamSummary, or an ARN) and is ACTIVE, safe when several
 * workers race: registers it, and when it exists (ResourceInUseException)
 * describes it; then polls DescribeStreamConsumer (100 ms doubling to 2 s)
 * until ACTIVE.  One being deleted is waited out and registered again;
 * LimitExceededException on Register is backed off and retried.  Ends
 * with the ACTIVE consumer, KCLD_ETIMEDOUT after timeout_ms (0 = 60000),
 * or the first other error.  A transient failure (kcld_svc_transient: a
 * 5xx, throttling, no answer) after the client's attempts is tried again,
 * that step, until the timeout.  Never deregisters anything. */
int kcld_fanout_ensure(struct kcld_fanout *f, const char *stream,
                       const char *name, long timeout_ms,
                       kcld_fanout_consumer_cb cb, void *arg);

/* Waits until the consumer `consumer_arn` is ACTIVE: DescribeStreamConsumer
 * polled as kcld_fanout_ensure does (transient failures tried again), but
 * nothing registered; a missing one ends with KCLD_ENOTFOUND.  Ends with the
 * ACTIVE consumer, KCLD_ETIMEDOUT after timeout_ms (0 = 60000), or the first
 * other error. */
int kcld_fanout_await(struct kcld_fanout *f, const char *consumer_arn,
                      long timeout_ms, kcld_fanout_consumer_cb cb, void *arg);

/* ======== SubscribeToShard ======== */

enum kcld_fanout_position {
  KCLD_FANOUT_AT_SEQUENCE_NUMBER = 0,
  KCLD_FANOUT_AFTER_SEQUENCE_NUMBER,
  KCLD_FANOUT_TRIM_HORIZON,
  KCLD_FANOUT_LATEST,
  KCLD_FANOUT_AT_TIMESTAMP
};

struct kcld_fanout_subscribe_req {
  const char *consumer_arn;
  const char *shard_id;
  enum kcld_fanout_position position;
  const char *sequence_number; /* AT_ and AFTER_SEQUENCE_NUMBER */
  int64_t timestamp_ms;        /* AT_TIMESTAMP: epoch milliseconds */
  long timeout_ms;             /* the whole subscription; 0 = 330000 (the
                                  service ends one after 5 minutes) */
  /* Optional: buffers for events that arrive in pieces (all but small
   * ones), handed to the callback as kcld_fanout_event.frame. */
  const struct kcld_evs_alloc *alloc;
  /* Optional: asked before each frame is taken in, with its length (from
   * its prelude, before any buffer is made for it); 0 holds the frame back
   * - the subscription pauses right before it (the bytes after it wait
   * unread) until kcld_fanout_sub_resume(), when the gate is asked again.
   * A subscription the service ends meanwhile ends once the events held
   * back have been taken in. */
  kcld_evs_gate_cb gate;
  void *gate_arg;
};

enum kcld_fanout_event_kind {
  KCLD_FANOUT_INITIAL = 0,  /* initial-response: the subscription is on */
  KCLD_FANOUT_RECORDS       /* a SubscribeToShardEvent */
};

/* One event.  Valid only during the callback. */
struct kcld_fanout_event {
  enum kcld_fanout_event_kind kind;
  /* RECORDS: the event's JSON as received - Records (as GetRecords gives
   * them), ContinuationSequenceNumber, MillisBehindLatest, ChildShards;
   * not parsed here (parse it on the worker pool).  "" for INITIAL. */
  const char *payload;
  size_t payload_len;
  /* RECORDS with req.alloc: the buffer from it holding the event's frame
   * (payload points into it), now the callback's to give back with
   * alloc->release; NULL when the event was not gathered (copy it). */
  void *frame;
};

struct kcld_fanout_sub;

/* Called for each event, in order.  May pause, resume or cancel the
 * subscription (and anything else). */
typedef void (*kcld_fanout_event_cb)(const struct kcld_fanout_event *ev,
                                     void *arg);

/* Called once when the subscription ends: st.err 0 when the service ended
 * it (after 5 minutes, or at the shard's end); KCLD_EAWS or KCLD_ENOTFOUND
 * with st.type for a refusal before the stream started (HTTP 400:
 * ResourceInUseException, LimitExceededException, ...) or an exception
 * event in it (st.type the :exception-type, st.http_status 200);
 * KCLD_EPARSE for a frame that does not decode (a bad CRC: st.message says
 * which); KCLD_ETRANSPORT for a reset or cut connection, also one cut
 * mid-frame; KCLD_ETIMEDOUT; KCLD_ECANCELED. */
typedef void (*kcld_fanout_end_cb)(const struct kcld_svc_status *st,
                                   void *arg);

/* Subscribes; the handle in *out is valid until on_end has run. */
int kcld_fanout_subscribe(struct kcld_fanout *f,
                          const struct kcld_fanout_subscribe_req *req,
                          kcld_fanout_event_cb on_event,
                          kcld_fanout_end_cb on_end, void *arg,
                          struct kcld_fanout_sub **out);

/* Backpressure: stops reading the stream (HTTP/2 flow control holds the
 * service back) and reads it again.  Events decoded from bytes already
 * received may still be delivered after pause (at most one read's worth;
 * with a gate, the gate is asked first).  A subscription paused for long is
 * ended by the service. */
void kcld_fanout_sub_pause(struct kcld_fanout_sub *s);
void kcld_fanout_sub_resume(struct kcld_fanout_sub *s);

/* Ends the subscription now (the HTTP/2 stream is reset): on_end runs with
 * KCLD_ECANCELED before this returns, and no event after. */
void kcld_fanout_sub_cancel(struct kcld_fanout_sub *s);

#endif
