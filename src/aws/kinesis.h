/* kinesis.h — Kinesis Data Streams calls on the shared AWS client.
 *
 * Thin and asynchronous: each call builds its request, sends it through
 * kcld_aws_call (signing, the standard retries), maps the answer to a small
 * result and calls the caller's callback exactly once, on the loop thread.
 * A result and every pointer in it are valid only during the callback.
 * Beyond the call layer's retries only ListShards loops: it follows
 * NextToken pages and backs off on LimitExceededException.
 *
 * Every call returns 0 and later calls its callback, or returns a negative
 * KCLD_E* code (KCLD_EINVAL for a bad argument, logged with the reason;
 * KCLD_ECANCELED after close; KCLD_ENOMEM) and never calls it.
 *
 * A `stream` argument is a stream name, or a stream ARN ("arn:...") which
 * is sent as StreamARN.
 *
 * Loop thread only. */
#ifndef KCLD_AWS_KINESIS_H
#define KCLD_AWS_KINESIS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "aws/call.h"
#include "aws/svc.h"

struct kcld_kinesis;

/* Creates a Kinesis client over `aws` (borrowed; it must outlive this
 * client).  `loop` runs the timers of ListShards and of the waits.
 * Returns 0, KCLD_EINVAL or KCLD_ENOMEM. */
int kcld_kinesis_new(struct kcld_aws *aws, uv_loop_t *loop,
                     struct kcld_kinesis **out);

/* Runs the callback of every pending operation with KCLD_ECANCELED, now,
 * and frees the client; no callback of it runs afterwards.  Timers close on
 * the loop: run it afterwards.  Close this before the AWS client. */
void kcld_kinesis_close(struct kcld_kinesis *k);

/* What a caller does about an error. */
enum kcld_kinesis_fault {
  KCLD_KINESIS_OK = 0,
  KCLD_KINESIS_EXPIRED_ITERATOR, /* ExpiredIteratorException: get a new
                                    iterator after the last record seen */
  KCLD_KINESIS_THROUGHPUT,       /* ProvisionedThroughputExceededException */
  KCLD_KINESIS_KMS_THROTTLED,    /* KMSThrottlingException */
  KCLD_KINESIS_KMS,              /* other KMS*Exception: key disabled,
                                    missing, access denied, opt-in */
  KCLD_KINESIS_LIMIT,            /* LimitExceededException */
  KCLD_KINESIS_NOT_FOUND,        /* ResourceNotFoundException */
  KCLD_KINESIS_IN_USE,           /* ResourceInUseException (exists, or is
                                    being updated) */
  KCLD_KINESIS_INVALID,          /* InvalidArgumentException,
                                    ValidationException */
  KCLD_KINESIS_ACCESS_DENIED,    /* AccessDeniedException */
  KCLD_KINESIS_EXPIRED_TOKEN,    /* ExpiredNextTokenException */
  KCLD_KINESIS_TRANSIENT,        /* no answer, a timeout, a 5xx, a body
                                    that did not parse */
  KCLD_KINESIS_CANCELED,         /* the client was closed */
  KCLD_KINESIS_OTHER             /* anything else (credentials, ...) */
};

/* Classifies how an operation ended. */
enum kcld_kinesis_fault kcld_kinesis_fault(const struct kcld_svc_status *st);

/* Callback of the calls that only succeed or fail. */
typedef void (*kcld_kinesis_done_cb)(const struct kcld_svc_status *st,
                                     void *arg);

/* ======== ListShards ======== */

struct kcld_kinesis_shard {
  const char *shard_id;
  const char *parent_shard_id;          /* NULL when none */
  const char *adjacent_parent_shard_id; /* NULL when none (merges only) */
  const char *starting_hash_key;        /* decimal text, as given */
  const char *ending_hash_key;
  const char *starting_sequence_number;
  const char *ending_sequence_number;   /* NULL while the shard is open */
};

struct kcld_kinesis_shard_list {
  struct kcld_svc_status st;
  const struct kcld_kinesis_shard *shards; /* in the order listed */
  size_t count;
  int pages;          /* ListShards answers that made up the list */
  int throttled;      /* LimitExceeded answers the wrapper backed off on */
  json_t *doc;        /* all Shards as one JSON array (borrowed); NULL on
                         error */
};

typedef void (*kcld_kinesis_list_cb)(
  const struct kcld_kinesis_shard_list *res, void *arg);

struct kcld_kinesis_list_opts {
  int page_size;                        /* MaxResults; 0 = the service's
                                           default, else 1..10000 */
  const char *exclusive_start_shard_id; /* NULL = from the first shard */
  int max_retries;     /* backoffs on LimitExceededException (after the call
                          layer's own retries) and restarts on
                          ExpiredNextTokenException; 0 = 10, -1 = none */
  long backoff_base_ms;                 /* 0 = 1000 */
  long backoff_max_ms;                  /* 0 = 10000 */
};

/* Lists every shard of `stream`, following NextToken pages, and hands back
 * all of them at once.  opts may be NULL. */
int kcld_kinesis_list_shards(struct kcld_kinesis *k, const char *stream,
                             const struct kcld_kinesis_list_opts *opts,
                             kcld_kinesis_list_cb cb, void *arg);

/* ======== DescribeStreamSummary, and waiting until ACTIVE ======== */

struct kcld_kinesis_stream_summary {
  struct kcld_svc_status st;
  const char *stream_name;
  const char *stream_arn;
  const char *status;         /* CREATING, DELETING, ACTIVE, UPDATING */
  int open_shard_count;
  int retention_hours;
  const char *encryption;     /* "NONE", "KMS"; NULL when not reported */
  const char *mode;           /* "PROVISIONED", "ON_DEMAND"; NULL when not
                                 reported */
  json_t *doc;                /* StreamDescriptionSummary (borrowed); NULL
                                 on error */
};

typedef void (*kcld_kinesis_summary_cb)(
  const struct kcld_kinesis_stream_summary *res, void *arg);

int kcld_kinesis_describe_stream_summary(struct kcld_kinesis *k,
                                         const char *stream,
                                         kcld_kinesis_summary_cb cb,
                                         void *arg);

/* Polls DescribeStreamSummary (100 ms, doubling to 2 s) until the stream is
 * ACTIVE, then hands back that summary.  ResourceNotFoundException is
 * polled through (a stream just created may not be visible yet).  Ends
 * with KCLD_ETIMEDOUT after timeout_ms (0 = 60000) or with the first other
 * error. */
int kcld_kinesis_wait_active(struct kcld_kinesis *k, const char *stream,
                             long timeout_ms, kcld_kinesis_summary_cb cb,
                             void *arg);

/* ======== GetShardIterator ======== */

enum kcld_kinesis_iterator_type {
  KCLD_KINESIS_TRIM_HORIZON = 0,
  KCLD_KINESIS_LATEST,
  KCLD_KINESIS_AT_SEQUENCE_NUMBER,
  KCLD_KINESIS_AFTER_SEQUENCE_NUMBER,
  KCLD_KINESIS_AT_TIMESTAMP
};

struct kcld_kinesis_iterator_req {
  const char *stream;
  const char *shard_id;
  enum kcld_kinesis_iterator_type type;
  const char *sequence_number; /* AT_ and AFTER_SEQUENCE_NUMBER only */
  int64_t timestamp_ms;        /* AT_TIMESTAMP only: epoch milliseconds */
};

struct kcld_kinesis_iterator {
  struct kcld_svc_status st;
  const char *shard_iterator;  /* NULL on error, or with st.err == 0 when
                                  the answer's ShardIterator was null: a
                                  closed shard has nothing past that point
                                  (its end) */
};

typedef void (*kcld_kinesis_iterator_cb)(
  const struct kcld_kinesis_iterator *res, void *arg);

int kcld_kinesis_get_shard_iterator(struct kcld_kinesis *k,
                                    const struct kcld_kinesis_iterator_req *req,
                                    kcld_kinesis_iterator_cb cb, void *arg);

/* ======== GetRecords (raw) ======== */

struct kcld_kinesis_get_records_req {
  const char *shard_iterator;
  int limit;              /* 1..10000; 0 = the service's default */
  const char *stream_arn; /* sent as StreamARN when set; else NULL */
  const char *shard_id;   /* names the shard in messages; may be NULL */
  int max_attempts;       /* 0 = the client's; 1 = no call-layer retry (the
                             caller backs off on throttling itself) */
  long timeout_ms;        /* per attempt; 0 = the client's */
  struct kcld_http_body *body_into; /* receive the body into this caller's
                             buffer (http.h; it then holds the answer in the
                             callback and after, with no copy); NULL = the
                             client's own, valid only during the callback */
};

struct kcld_kinesis_records_raw {
  struct kcld_svc_status st;
  const char *body;       /* the answer's JSON, unparsed; NULL on error */
  size_t body_len;
};

typedef void (*kcld_kinesis_records_cb)(
  const struct kcld_kinesis_records_raw *res, void *arg);

/* GetRecords in raw mode: the body is handed back unparsed (the caller
 * parses it on the worker pool; it lives in req->body_into when given, else
 * only during the callback).
 * Errors are mapped: see kcld_kinesis_fault(). */
int kcld_kinesis_get_records(struct kcld_kinesis *k,
                             const struct kcld_kinesis_get_records_req *req,
                             kcld_kinesis_records_cb cb, void *arg);

/* ======== PutRecords ======== */

#define KCLD_KINESIS_PUT_MAX_RECORDS 500
#define KCLD_KINESIS_PUT_MAX_RECORD (1024 * 1024)     /* data + key */
#define KCLD_KINESIS_PUT_MAX_TOTAL (5 * 1024 * 1024)  /* all data + keys */
/* A record up to 10 MiB (data + key) goes in a call of its own: streams
 * whose MaxRecordSizeInKiB is raised take those (UpdateMaxRecordSize). */
#define KCLD_KINESIS_MAX_RECORD (10 * 1024 * 1024)

struct kcld_kinesis_record {
  const void *data;
  size_t len;
  const char *partition_key;     /* 1..256 characters */
  const char *explicit_hash_key; /* NULL = hash of the partition key */
};

struct kcld_kinesis_put_entry {
  const char *sequence_number; /* NULL when not written */
  const char *shard_id;        /* NULL when not written */
  const char *error_code;      /* NULL when written, else e.g.
                                  "ProvisionedThroughputExceededException",
                                  "InternalFailure", a KMS error */
  const char *error_message;
};

struct kcld_kinesis_put_result {
  struct kcld_svc_status st;   /* the call; entries may fail when err == 0 */
  const struct kcld_kinesis_put_entry *entries; /* one per record, in order;
                                                   NULL when st.err != 0 */
  size_t count;
  size_t failed;               /* entries with error_code set */
};

typedef void (*kcld_kinesis_put_cb)(const struct kcld_kinesis_put_result *res,
                                    void *arg);

/* Puts 1..500 records in one call (data is base64'd and copied before
 * return).  Reports which entries failed, so the caller retries just those;
 * a whole failed call has st.err set.  KCLD_EINVAL when a limit above is
 * broken: a record over 1 MiB must be the only one of its call. */
int kcld_kinesis_put_records(struct kcld_kinesis *k, const char *stream,
                             const struct kcld_kinesis_record *records,
                             size_t n, kcld_kinesis_put_cb cb, void *arg);

/* ======== Stream management (tests and tooling) ======== */

/* CreateStream with `shard_count` provisioned shards.  An existing stream
 * ends with KCLD_KINESIS_IN_USE.  Follow with kcld_kinesis_wait_active(). */
int kcld_kinesis_create_stream(struct kcld_kinesis *k, const char *name,
                               int shard_count, kcld_kinesis_done_cb cb,
                               void *arg);

/* SplitShard `shard_id` at `new_starting_hash_key` (decimal text). */
int kcld_kinesis_split_shard(struct kcld_kinesis *k, const char *stream,
                             const char *shard_id,
                             const char *new_starting_hash_key,
                             kcld_kinesis_done_cb cb, void *arg);

/* MergeShards `shard_id` with its hash-key neighbour `adjacent_shard_id`. */
int kcld_kinesis_merge_shards(struct kcld_kinesis *k, const char *stream,
                              const char *shard_id,
                              const char *adjacent_shard_id,
                              kcld_kinesis_done_cb cb, void *arg);

#endif
