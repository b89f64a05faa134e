/* s3sync.h — S3 calls a test waits for (on a kcld_s3 client and its loop):
 * a bucket made, the keys under a prefix, an object's body.  Each asserts
 * that the call ends within 30 s. */
#ifndef KCLD_TEST_S3SYNC_H
#define KCLD_TEST_S3SYNC_H

#include <jansson.h>
#include <stddef.h>
#include <uv.h>

#include "aws/s3.h"

/* CreateBucket; returns its error (KCLD_EAWS when it exists already). */
int kcld_test_s3_create_bucket(struct kcld_s3 *s3, uv_loop_t *loop,
                               const char *bucket);

/* The keys under `prefix` (one ListObjectsV2 page), as a JSON array of
 * strings (a new reference); asserts the call succeeds. */
json_t *kcld_test_s3_keys(struct kcld_s3 *s3, uv_loop_t *loop,
                          const char *bucket, const char *prefix);

/* The body of bucket/key, NUL-terminated (free it), its length in *len
 * (may be NULL); asserts the call succeeds. */
char *kcld_test_s3_get(struct kcld_s3 *s3, uv_loop_t *loop,
                       const char *bucket, const char *key, size_t *len);

/* Asserts that `body`, a dead-letter SQS message of on_failure.sqs with
 * on_failure.s3, carries no records and names bucket/key, an object of
 * more than `more_than` bytes ("s3Object"). */
void kcld_test_s3_check_pointer(const json_t *body, const char *bucket,
                                const char *key, size_t more_than);

#endif
