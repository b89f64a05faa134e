/* identity.h — what kcld consumes and what it is, named as Lambda names
 * them: the stream's ARN (a Kinesis event's eventSourceARN, the on-failure
 * record's KinesisBatchInfo.streamArn) and the function's
 * (requestContext.functionArn, arn:{partition}:lambda:{region}:{account}:
 * function:kcld-{application}).
 *
 * Resolved once, at start-up:
 *   - a stream configured by ARN is its own ARN;
 *   - a stream name is asked with DescribeStreamSummary;
 *   - when that is refused (AccessDeniedException: the role lacks
 *     kinesis:DescribeStreamSummary), STS GetCallerIdentity gives the
 *     account and the ARN is built from the partition of the region, the
 *     region, the account and the name;
 *   - otherwise (the stream not found, the service unreachable) the ARN
 *     stays "" and the consumer finds out what is wrong by itself.
 * The account is the stream ARN's, else the caller's (STS), else "".
 * Every failure is one warning; none stops start-up.
 *
 * Loop thread only. */
#ifndef KCLD_AWS_IDENTITY_H
#define KCLD_AWS_IDENTITY_H

#include <stddef.h>

#include "aws/kinesis.h"
#include "aws/sts.h"

struct kcld_identity {
  const char *stream_arn;   /* "" when unknown */
  const char *account;      /* "123456789012"; "" when unknown */
  const char *function_arn; /* arn:...:function:kcld-<application>; the
                               account part empty when unknown */
};

/* Ends a resolution: err 0 with *id (valid only during the callback;
 * copy what you keep), or KCLD_ECANCELED (a client was closed first) with
 * id NULL. */
typedef void (*kcld_identity_cb)(int err, const struct kcld_identity *id,
                                 void *arg);

struct kcld_identity_opts {
  struct kcld_kinesis *kinesis; /* for DescribeStreamSummary */
  struct kcld_sts *sts;         /* for GetCallerIdentity; NULL = none */
  const char *stream;           /* name or ARN (copied) */
  const char *region;           /* copied */
  const char *application;      /* copied */
};

/* Starts the resolution.  Returns 0 and later calls cb exactly once, on
 * the loop thread (possibly before returning, when the stream is an ARN);
 * or returns KCLD_EINVAL (an option missing) or KCLD_ENOMEM and never
 * calls it.  Closing the Kinesis or STS client ends it with
 * KCLD_ECANCELED. */
int kcld_identity_resolve(const struct kcld_identity_opts *opts,
                          kcld_identity_cb cb, void *arg);

/* ======== The names, for tests and for the ones above ======== */

/* The account of an ARN (its fifth field: arn:partition:service:region:
 * account:resource); "" when `arn` is not an ARN or has none.  Writes a
 * NUL-terminated string into buf (cap bytes, cut to fit); returns buf. */
char *kcld_identity_account_of(const char *arn, char *buf, size_t cap);

/* arn:{partition of region}:kinesis:{region}:{account}:stream/{name},
 * malloc'd; NULL when out of memory. */
char *kcld_identity_stream_arn(const char *region, const char *account,
                               const char *name);

/* arn:{partition}:lambda:{region}:{account}:function:kcld-{application},
 * malloc'd: partition, region and account from stream_arn when it is an
 * ARN with them, else kcld_partition_of(region), region and `account`
 * (NULL or "" = unknown, left empty).  NULL when out of memory. */
char *kcld_identity_function_arn(const char *stream_arn, const char *region,
                                 const char *account,
                                 const char *application);

#endif
