/* s3.h — Amazon S3 calls (REST-XML) on the shared AWS client: what the S3
 * dead letter (on_failure.s3) and `kcld redrive --s3` need.
 *
 * Requests are signed with SigV4 for S3: the path encoded once, and
 * x-amz-content-sha256 the SHA-256 of the body (aws/call.h).  The endpoint
 * is the AWS client's for S3 (endpoints.s3 or endpoint in kcld's config,
 * AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, the profile's, else
 * s3.{region}.{dnsSuffix}; FIPS s3-fips., dual-stack s3.dualstack.).  A
 * bucket is addressed virtual-hosted style (https://bucket.host/key) when
 * the endpoint is https to a host name and the bucket's name is a DNS label
 * (kcld_s3_bucket_hostable); else path-style (http://host:port/bucket/key):
 * always for http:// endpoints, IP addresses, and names with dots.
 *
 * Errors: NoSuchBucket, NoSuchKey and a HEAD's 404 (NotFound) are
 * KCLD_ENOTFOUND; others KCLD_EAWS with st.type (AccessDenied, Forbidden,
 * PermanentRedirect for a bucket in another region, ...); no answer is
 * KCLD_ETRANSPORT / KCLD_ETIMEDOUT.  Throttling (SlowDown, 503), 500s and
 * RequestTimeout are retried by the call layer.
 *
 * Every call returns 0 and later calls its callback exactly once, or
 * returns a negative KCLD_E* code (KCLD_EINVAL for a bad argument, logged
 * with the reason; KCLD_ECANCELED after close; KCLD_ENOMEM) and never calls
 * it.  A result and every pointer in it are valid only during the
 * callback.  Loop thread only. */
#ifndef KCLD_AWS_S3_H
#define KCLD_AWS_S3_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "aws/call.h"
#include "aws/s3_uri.h"
#include "aws/svc.h"

struct kcld_s3;

/* Creates an S3 client over `aws` (borrowed; it must outlive this client).
 * Returns 0, KCLD_EINVAL or KCLD_ENOMEM. */
int kcld_s3_new(struct kcld_aws *aws, uv_loop_t *loop, struct kcld_s3 **out);

/* Runs the callback of every pending call with KCLD_ECANCELED, now, and
 * frees the client; no callback of it runs afterwards.  Run the loop
 * afterwards.  Close this before the AWS client.  NULL is ignored. */
void kcld_s3_close(struct kcld_s3 *s3);

/* ======== Buckets ======== */

typedef void (*kcld_s3_done_cb)(const struct kcld_svc_status *st, void *arg);

/* HeadBucket: succeeds when the bucket exists and may be used; a missing
 * one is KCLD_ENOTFOUND, one of another owner KCLD_EAWS Forbidden. */
int kcld_s3_head_bucket(struct kcld_s3 *s3, const char *bucket,
                        kcld_s3_done_cb cb, void *arg);

/* CreateBucket in the client's region (a LocationConstraint outside
 * us-east-1).  BucketAlreadyOwnedByYou is KCLD_EAWS with that type. */
int kcld_s3_create_bucket(struct kcld_s3 *s3, const char *bucket,
                          kcld_s3_done_cb cb, void *arg);

/* ======== Objects ======== */

struct kcld_s3_put_req {
  const char *bucket;
  const char *key;
  const char *content_type;   /* NULL = application/octet-stream */
  char *body;                 /* malloc'd; taken by kcld_s3_put_object,
                                 also when it fails; NULL = empty */
  size_t body_len;
};

/* PutObject.  The body is sent as it is (no copy; hashed once per attempt
 * for the signature).  req->body is NULL on return. */
int kcld_s3_put_object(struct kcld_s3 *s3, struct kcld_s3_put_req *req,
                       kcld_s3_done_cb cb, void *arg);

struct kcld_s3_object {
  struct kcld_svc_status st;
  const char *body;           /* the object's bytes (NUL-terminated, may
                                 hold NULs); NULL on error */
  size_t len;
};

typedef void (*kcld_s3_object_cb)(const struct kcld_s3_object *res,
                                  void *arg);

/* GetObject, the whole object.  NoSuchKey is KCLD_ENOTFOUND. */
int kcld_s3_get_object(struct kcld_s3 *s3, const char *bucket,
                       const char *key, kcld_s3_object_cb cb, void *arg);

/* DeleteObject.  Deleting a key that does not exist succeeds (as S3 has
 * it). */
int kcld_s3_delete_object(struct kcld_s3 *s3, const char *bucket,
                          const char *key, kcld_s3_done_cb cb, void *arg);

/* CopyObject from src_bucket/src_key to bucket/key (metadata copied).  An
 * error S3 reports in a 200 answer is an error too. */
int kcld_s3_copy_object(struct kcld_s3 *s3, const char *src_bucket,
                        const char *src_key, const char *bucket,
                        const char *key, kcld_s3_done_cb cb, void *arg);

/* ======== ListObjectsV2 ======== */

struct kcld_s3_list_req {
  const char *bucket;
  const char *prefix;             /* NULL = every key */
  const char *continuation_token; /* the previous page's next_token, or
                                     NULL for the first page */
  const char *start_after;        /* NULL = from the first key */
  int max_keys;                   /* 1..1000; 0 = S3's 1000 */
};

struct kcld_s3_entry {
  const char *key;
  uint64_t size;
  const char *last_modified;      /* "2024-05-01T12:00:00.000Z", or "" */
  const char *etag;               /* as S3 gives it (quoted), or "" */
};

struct kcld_s3_list {
  struct kcld_svc_status st;
  const struct kcld_s3_entry *entries; /* in key order */
  size_t count;
  int truncated;                  /* 1: more pages; ask with next_token */
  const char *next_token;         /* NULL when not truncated */
};

typedef void (*kcld_s3_list_cb)(const struct kcld_s3_list *res, void *arg);

/* One page of ListObjectsV2. */
int kcld_s3_list_objects(struct kcld_s3 *s3,
                         const struct kcld_s3_list_req *req,
                         kcld_s3_list_cb cb, void *arg);

#endif
