/* s3.c — S3 requests built (addressing, query, headers), answers mapped
 * (XML through aws/xml.h).  The skeleton (svc.c) runs the calls, the call
 * layer signs and retries them. */
#include "aws/s3.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws/xml.h"
#include "base/buf.h"
#include "base/uri.h"
#include "base/utf8.h"
#include "err.h"

struct kcld_s3 {
  struct kcld_svc svc;
};

int kcld_s3_new(struct kcld_aws *aws, uv_loop_t *loop, struct kcld_s3 **out)
{
  return kcld_svc_new(sizeof(**out), aws, loop, KCLD_AWS_S3, (void **)out);
}

void kcld_s3_close(struct kcld_s3 *s3)
{
  if (s3)
    kcld_svc_close(&s3->svc);
}

/* ======== Names ======== */

static int key_valid(const char *key)
{
  size_t n = key ? strlen(key) : 0;
  return n > 0 && n <= KCLD_S3_KEY_MAX && kcld_utf8_valid(key, n);
}

/* ======== Requests ======== */

/* Where a bucket's request goes: out->host_prefix and out->path (in
 * `path`, cap bytes) for `key` (NULL = the bucket itself). */
static int address(const struct kcld_s3 *s3, const char *bucket,
                   const char *key, char *prefix, size_t pcap, char *path,
                   size_t cap, struct kcld_aws_rest *out)
{
  int n;
  if (kcld_aws_endpoint_hostable(s3->svc.aws, KCLD_AWS_S3) &&
      kcld_s3_bucket_hostable(bucket)) {
    snprintf(prefix, pcap, "%s.", bucket);
    out->host_prefix = prefix;
    n = snprintf(path, cap, "/%s", key ? key : "");
  } else {
    n = snprintf(path, cap, "/%s%s%s", bucket, key ? "/" : "", key ? key : "");
  }
  out->path = path;
  return n > 0 && (size_t)n < cap ? 0 : KCLD_EINVAL;
}

#define PATH_CAP (KCLD_S3_BUCKET_MAX + KCLD_S3_KEY_MAX + 4)

/* Sends `spec` for bucket/key with `rest` (method, query, headers, body:
 * taken) and names the resource.  The callback gets the shape's result. */
static int s3_send(struct kcld_s3 *s3, const struct kcld_svc_spec *spec,
                   const char *bucket, const char *key,
                   struct kcld_aws_rest *rest, kcld_svc_fn cb, void *arg)
{
  char prefix[KCLD_S3_BUCKET_MAX + 2], path[PATH_CAP];
  struct kcld_svc_op *op;
  int rc;

  rc = address(s3, bucket, key, prefix, sizeof(prefix), path, sizeof(path),
               rest);
  op = rc == 0 ? kcld_svc_request_new(&s3->svc, spec, 0, cb, arg, &rc)
               : NULL;
  if (!op) {
    free(rest->body);
    rest->body = NULL;
    return rc;
  }
  if (key)
    kcld_svc_op_resource(op, "s3://%s/%s", bucket, key);
  else
    kcld_svc_op_resource(op, "bucket %s", bucket);
  return kcld_svc_request_start_rest(op, rest, NULL);
}

/* Why bucket/key cannot be sent (key NULL: not asked), or NULL. */
static const char *check(const char *bucket, const char *key, int want_key)
{
  if (!kcld_s3_bucket_valid(bucket))
    return "bad bucket name";
  if (want_key && !key_valid(key))
    return "object key empty, longer than 1024 bytes or not UTF-8";
  return NULL;
}

/* Refuses what check() refuses: the body is freed, the reason logged. */
static int refuse(struct kcld_s3 *s3, const char *operation,
                  const char *why, char **body)
{
  if (body) {
    free(*body);
    *body = NULL;
  }
  return kcld_svc_bad_arg(&s3->svc, operation, why);
}

KCLD_SVC_SHAPE(s_done_shape, struct kcld_svc_status, kcld_s3_done_cb);

/* ======== Buckets ======== */

static const struct kcld_svc_spec s_head_bucket = {
  "HeadBucket", &s_done_shape, NULL, NULL, NULL};
static const struct kcld_svc_spec s_create_bucket = {
  "CreateBucket", &s_done_shape, NULL, NULL, NULL};

int kcld_s3_head_bucket(struct kcld_s3 *s3, const char *bucket,
                        kcld_s3_done_cb cb, void *arg)
{
  struct kcld_aws_rest rest = {.method = "HEAD"};
  const char *why;
  if (!s3 || !cb)
    return KCLD_EINVAL;
  if ((why = check(bucket, NULL, 0)) != NULL)
    return refuse(s3, s_head_bucket.operation, why, NULL);
  return s3_send(s3, &s_head_bucket, bucket, NULL, &rest, (kcld_svc_fn)cb,
                 arg);
}

int kcld_s3_create_bucket(struct kcld_s3 *s3, const char *bucket,
                          kcld_s3_done_cb cb, void *arg)
{
  struct kcld_aws_rest rest = {.method = "PUT"};
  const char *region, *why;
  if (!s3 || !cb)
    return KCLD_EINVAL;
  if ((why = check(bucket, NULL, 0)) != NULL)
    return refuse(s3, s_create_bucket.operation, why, NULL);
  region = kcld_aws_region(s3->svc.aws);
  if (strcmp(region, "us-east-1") != 0) {
    int n = asprintf(&rest.body,
                     "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws"
                     ".com/doc/2006-03-01/\"><LocationConstraint>%s"
                     "</LocationConstraint></CreateBucketConfiguration>",
                     region);
    if (n < 0)
      return KCLD_ENOMEM;
    rest.body_len = (size_t)n;
  }
  return s3_send(s3, &s_create_bucket, bucket, NULL, &rest, (kcld_svc_fn)cb,
                 arg);
}

/* ======== Objects ======== */

static const struct kcld_svc_spec s_put = {
  "PutObject", &s_done_shape, NULL, NULL, NULL};
static const struct kcld_svc_spec s_delete = {
  "DeleteObject", &s_done_shape, NULL, NULL, NULL};

int kcld_s3_put_object(struct kcld_s3 *s3, struct kcld_s3_put_req *req,
                       kcld_s3_done_cb cb, void *arg)
{
  const char *why;
  struct kcld_aws_header h = {"Content-Type", "application/octet-stream"};
  struct kcld_aws_rest rest = {.method = "PUT", .headers = &h,
                               .n_headers = 1};
  if (!req)
    return KCLD_EINVAL;
  if (!s3 || !cb) {
    free(req->body);
    req->body = NULL;
    return KCLD_EINVAL;
  }
  if ((why = check(req->bucket, req->key, 1)) != NULL)
    return refuse(s3, s_put.operation, why, &req->body);
  if (req->content_type)
    h.value = req->content_type;
  rest.body = req->body;
  rest.body_len = req->body ? req->body_len : 0;
  req->body = NULL;
  return s3_send(s3, &s_put, req->bucket, req->key, &rest, (kcld_svc_fn)cb,
                 arg);
}

int kcld_s3_delete_object(struct kcld_s3 *s3, const char *bucket,
                          const char *key, kcld_s3_done_cb cb, void *arg)
{
  struct kcld_aws_rest rest = {.method = "DELETE"};
  const char *why;
  if (!s3 || !cb)
    return KCLD_EINVAL;
  if ((why = check(bucket, key, 1)) != NULL)
    return refuse(s3, s_delete.operation, why, NULL);
  return s3_send(s3, &s_delete, bucket, key, &rest, (kcld_svc_fn)cb, arg);
}

KCLD_SVC_SHAPE(s_object_shape, struct kcld_s3_object, kcld_s3_object_cb);

static int object_map(struct kcld_svc_op *op,
                      const struct kcld_aws_result *res, void *result)
{
  struct kcld_s3_object *r = result;
  (void)op;
  r->body = res->raw ? res->raw : "";
  r->len = res->raw ? res->raw_len : 0;
  return 0;
}

static const struct kcld_svc_spec s_get = {
  "GetObject", &s_object_shape, object_map, NULL, NULL};

int kcld_s3_get_object(struct kcld_s3 *s3, const char *bucket,
                       const char *key, kcld_s3_object_cb cb, void *arg)
{
  struct kcld_aws_rest rest = {.method = "GET"};
  const char *why;
  if (!s3 || !cb)
    return KCLD_EINVAL;
  if ((why = check(bucket, key, 1)) != NULL)
    return refuse(s3, s_get.operation, why, NULL);
  return s3_send(s3, &s_get, bucket, key, &rest, (kcld_svc_fn)cb, arg);
}

/* The answer's XML as an object kept by the op, or NULL with the status
 * set to KCLD_EPARSE. */
static json_t *xml_answer(struct kcld_svc_op *op,
                          const struct kcld_aws_result *res,
                          struct kcld_svc_status *st)
{
  json_t *j = NULL;
  char why[96];
  int rc = kcld_xml_to_json(res->raw ? res->raw : "", res->raw_len, &j, why,
                            sizeof(why));
  if (rc == 0 && kcld_svc_op_keep(op, j)) {
    json_decref(j);
    return j;
  }
  json_decref(j);
  kcld_svc_status_set(op, st,
                      rc == 0 || rc == KCLD_ENOMEM ? KCLD_ENOMEM : KCLD_EPARSE,
                      NULL, "answer is not an XML document (%s)",
                      rc == 0 ? "out of memory" : why);
  return NULL;
}

/* CopyObject may answer 200 with an <Error> document. */
static int copy_map(struct kcld_svc_op *op, const struct kcld_aws_result *res,
                    void *result)
{
  struct kcld_svc_status *st = result;
  json_t *j = xml_answer(op, res, st);
  const char *code, *msg;
  if (!j)
    return KCLD_EPARSE;
  code = kcld_svc_str(j, "Code");
  if (!code)
    return 0;
  msg = kcld_svc_str(j, "Message");
  kcld_svc_status_set(op, st,
                      strcmp(code, "NoSuchKey") == 0 ||
                          strcmp(code, "NoSuchBucket") == 0
                        ? KCLD_ENOTFOUND
                        : KCLD_EAWS,
                      code, "%s (in a 200 answer)", msg ? msg : "");
  return st->err;
}

static const struct kcld_svc_spec s_copy = {
  "CopyObject", &s_done_shape, copy_map, NULL, NULL};

int kcld_s3_copy_object(struct kcld_s3 *s3, const char *src_bucket,
                        const char *src_key, const char *bucket,
                        const char *key, kcld_s3_done_cb cb, void *arg)
{
  struct kcld_buf src = {0};
  struct kcld_aws_header h = {"x-amz-copy-source", NULL};
  struct kcld_aws_rest rest = {.method = "PUT", .headers = &h,
                               .n_headers = 1};
  const char *why;
  int rc;
  if (!s3 || !cb)
    return KCLD_EINVAL;
  if ((why = check(src_bucket, src_key, 1)) != NULL ||
      (why = check(bucket, key, 1)) != NULL)
    return refuse(s3, s_copy.operation, why, NULL);
  kcld_buf_add(&src, "/", 1);
  kcld_buf_add(&src, src_bucket, strlen(src_bucket));
  kcld_buf_add(&src, "/", 1);
  if (kcld_uri_escape(&src, src_key, strlen(src_key), 1) != 0) {
    kcld_buf_free(&src);
    return KCLD_ENOMEM;
  }
  h.value = src.p;
  rc = s3_send(s3, &s_copy, bucket, key, &rest, (kcld_svc_fn)cb, arg);
  kcld_buf_free(&src);
  return rc;
}

/* ======== ListObjectsV2 ======== */

KCLD_SVC_SHAPE(s_list_shape, struct kcld_s3_list, kcld_s3_list_cb);

/* One <Contents> element into `e`; 0, or KCLD_EPARSE without a Key. */
static int list_entry(const json_t *c, struct kcld_s3_entry *e)
{
  const char *size = kcld_svc_str(c, "Size");
  e->key = kcld_svc_str(c, "Key");
  e->last_modified = kcld_svc_str(c, "LastModified");
  e->etag = kcld_svc_str(c, "ETag");
  if (!e->last_modified)
    e->last_modified = "";
  if (!e->etag)
    e->etag = "";
  e->size = size ? strtoull(size, NULL, 10) : 0;
  return e->key ? 0 : KCLD_EPARSE;
}

static int list_map(struct kcld_svc_op *op, const struct kcld_aws_result *res,
                    void *result)
{
  struct kcld_s3_list *r = result;
  json_t *j = xml_answer(op, res, &r->st), *contents;
  struct kcld_s3_entry *entries;
  const char *trunc;
  size_t n;

  if (!j)
    return KCLD_EPARSE;
  contents = json_object_get(j, "Contents");
  /* One element reads as an object, several as an array (aws/xml.h). */
  n = json_is_array(contents) ? json_array_size(contents) : contents ? 1 : 0;
  entries = kcld_svc_op_alloc(op, (n ? n : 1) * sizeof(*entries));
  if (!entries) {
    kcld_svc_status_set(op, &r->st, KCLD_ENOMEM, NULL, "out of memory");
    return KCLD_ENOMEM;
  }
  for (size_t i = 0; i < n; i++) {
    const json_t *c = json_is_array(contents) ? json_array_get(contents, i)
                                               : contents;
    if (list_entry(c, &entries[i]) != 0) {
      kcld_svc_status_set(op, &r->st, KCLD_EPARSE, NULL,
                          "a Contents element without a Key");
      return KCLD_EPARSE;
    }
  }
  trunc = kcld_svc_str(j, "IsTruncated");
  r->entries = entries;
  r->count = n;
  r->truncated = trunc && strcmp(trunc, "true") == 0;
  r->next_token = r->truncated ? kcld_svc_str(j, "NextContinuationToken")
                               : NULL;
  if (r->truncated && !r->next_token) {
    kcld_svc_status_set(op, &r->st, KCLD_EPARSE, NULL,
                        "IsTruncated without a NextContinuationToken");
    return KCLD_EPARSE;
  }
  return 0;
}

static const struct kcld_svc_spec s_list = {
  "ListObjectsV2", &s_list_shape, list_map, NULL, NULL};

/* "&name=value" with the value encoded. */
static void query_add(struct kcld_buf *q, const char *name, const char *v)
{
  kcld_buf_add(q, "&", 1);
  kcld_buf_add(q, name, strlen(name));
  kcld_buf_add(q, "=", 1);
  kcld_uri_escape(q, v, strlen(v), 0);
}

int kcld_s3_list_objects(struct kcld_s3 *s3,
                         const struct kcld_s3_list_req *req,
                         kcld_s3_list_cb cb, void *arg)
{
  struct kcld_aws_rest rest = {.method = "GET"};
  struct kcld_buf q = {0};
  char num[16];
  const char *why;
  int rc;
  if (!s3 || !req || !cb)
    return KCLD_EINVAL;
  why = check(req->bucket, NULL, 0);
  if (!why && (req->max_keys < 0 || req->max_keys > 1000))
    why = "max_keys not 0..1000";
  if (why)
    return refuse(s3, s_list.operation, why, NULL);
  kcld_buf_add(&q, "list-type=2", 11);
  if (req->prefix && *req->prefix)
    query_add(&q, "prefix", req->prefix);
  if (req->continuation_token)
    query_add(&q, "continuation-token", req->continuation_token);
  if (req->start_after && *req->start_after)
    query_add(&q, "start-after", req->start_after);
  if (req->max_keys) {
    snprintf(num, sizeof(num), "%d", req->max_keys);
    query_add(&q, "max-keys", num);
  }
  if (q.oom) {
    kcld_buf_free(&q);
    return KCLD_ENOMEM;
  }
  rest.query = q.p;
  rc = s3_send(s3, &s_list, req->bucket, NULL, &rest, (kcld_svc_fn)cb, arg);
  kcld_buf_free(&q);
  return rc;
}
