/* multilang.h — the KCL MultiLangDaemon protocol: existing KCL record
 * processors (amazon_kclpy, the Node.js, Ruby and Java MultiLang clients)
 * run under kcld unchanged.
 *
 * One child per held shard, started from handler.command with KCLD_SHARD_ID
 * added to the environment, speaks JSON lines over its stdin and stdout:
 *
 *   kcld -> child   {"action":"initialize","shardId":..,"sequenceNumber":..,
 *                    "subSequenceNumber":..}
 *                   {"action":"processRecords","millisBehindLatest":N,
 *                    "records":[{"action":"record","data":"<base64>",
 *                    "partitionKey":..,"sequenceNumber":..,
 *                    "subSequenceNumber":..,
 *                    "approximateArrivalTimestamp":<epoch ms>}]}
 *                   {"action":"leaseLost"} {"action":"shardEnded"}
 *                   {"action":"shutdownRequested"}
 *                   {"action":"checkpoint","sequenceNumber":..,
 *                    "subSequenceNumber":..,"error":null|"<Exception>"}
 *   child -> kcld   {"action":"checkpoint","sequenceNumber":null|"..",
 *                    "subSequenceNumber":null|n}   (any time)
 *                   {"action":"status","responseFor":"<action>"} (done)
 *
 * A batch is done (OK) when the child answers its status.  A timeout
 * (handler.timeout: the child is killed) or a crash after the child read
 * the batch's processRecords line fails it as the records' failure
 * (HandlerTimeout, HandlerCrashed); a child that could not start, or
 * ended before it read the line, and the batches queued behind, fail as an
 * infrastructure failure (HandlerUnavailable).  A dead child is started
 * again from the shard's last checkpoint, with backoff (retry.backoff_base
 * doubling to retry.backoff_max).  Lines on stdout that are not protocol
 * JSON are logged and skipped; stderr lines go to the log with the shard
 * (handlers/child.h runs the processes: own process group, parent-death
 * signal).  After leaseLost, shardEnded or shutdownRequested (and its
 * status, or a bound), and when the handler is destroyed, kcld closes the
 * child's stdin, waits a bounded time for it to exit (SIGTERM, then
 * SIGKILL, to its process group), and reaps it: the loop must run until
 * then.  kill SIGKILLs every child's group and fails what they owed as
 * HandlerCanceled.
 *
 * Checkpoint requests: sequenceNumber null means the end of the last batch
 * delivered.  A position past it, or below the child's last checkpoint, or
 * not a sequence number answers IllegalArgumentException; otherwise the
 * request goes through the shard's conditional checkpoint
 * (env->checkpoint) and its answer is error null, ShutdownException (lease
 * lost, shard not held), ThrottlingException (a transient failure) or
 * InvalidStateException.  kcld writes the shard end itself before it sends
 * shardEnded, so a checkpoint in answer to shardEnded (or to
 * shutdownRequested, for what was handled) answers null without a write.
 *
 * The program must ignore SIGPIPE (the daemon does): a child that dies
 * while kcld writes to it must not end kcld. */
#ifndef KCLD_HANDLERS_MULTILANG_H
#define KCLD_HANDLERS_MULTILANG_H

#include <stddef.h>
#include <stdint.h>

#include "handlers/handler.h"

/* Longest stdout line kept; longer lines are dropped (logged). */
#define KCLD_MULTILANG_MAX_LINE (16u << 20)

/* Creates the handler; children start on shard_started (or on the first
 * batch of a shard).  Returns 0, KCLD_ECONFIG (no handler.command, or its
 * program is not an executable file; logged) or KCLD_ENOMEM. */
int kcld_handler_multilang_new(const struct kcld_handler_env *env,
                               struct kcld_handler **out);

/* ======== The protocol, for the handler and its tests ======== */

/* Each returns a malloc'd JSON line ending in "\n", or NULL when out of
 * memory.  sequence NULL is written as null (and then sub too). */
char *kcld_multilang_msg_initialize(const char *shard_id,
                                    const char *sequence, uint64_t sub);
char *kcld_multilang_msg_records(const struct kcld_handler_batch *b);
char *kcld_multilang_msg_checkpoint(const char *sequence, uint64_t sub,
                                    const char *error);
/* {"action":"<action>"} for leaseLost, shardEnded, shutdownRequested. */
char *kcld_multilang_msg_action(const char *action);

enum kcld_multilang_kind {
  KCLD_MULTILANG_NOT_JSON = 0,  /* not a JSON object: log and skip */
  KCLD_MULTILANG_UNKNOWN,       /* an object without a known action */
  KCLD_MULTILANG_BAD,           /* a known action with bad fields */
  KCLD_MULTILANG_STATUS,
  KCLD_MULTILANG_CHECKPOINT
};

/* A parsed child line.  Strings point into `buf`. */
struct kcld_multilang_msg {
  enum kcld_multilang_kind kind;
  char response_for[32];        /* STATUS */
  int has_sequence;             /* CHECKPOINT: 0 = null (end of batch) */
  char sequence[130];           /* CHECKPOINT: as sent (not yet checked) */
  uint64_t sub;                 /* CHECKPOINT: 0 when null or absent */
};

/* Parses one line (without its newline) from a child. */
void kcld_multilang_parse(const char *line, size_t len,
                          struct kcld_multilang_msg *out);

#endif
