/* s3_uri.h — S3 names: bucket names, s3://BUCKET/PREFIX locations.  Pure
 * functions, no client (the config checks on_failure.s3 with them); any
 * thread. */
#ifndef KCLD_AWS_S3_URI_H
#define KCLD_AWS_S3_URI_H

#define KCLD_S3_BUCKET_MAX 63
#define KCLD_S3_KEY_MAX 1024   /* bytes of UTF-8 */

/* 1 when `bucket` is a valid bucket name: 3..63 of a-z 0-9 . -, starting
 * and ending with a letter or digit, no "..", not an IPv4 address. */
int kcld_s3_bucket_valid(const char *bucket);

/* 1 when a valid `bucket` can be a host name label (no dots): addressed
 * virtual-hosted style over https. */
int kcld_s3_bucket_hostable(const char *bucket);

/* An s3:// location. */
struct kcld_s3_uri {
  char bucket[KCLD_S3_BUCKET_MAX + 1];
  char prefix[KCLD_S3_KEY_MAX + 1]; /* "" or ending in '/' */
};

/* Parses "s3://BUCKET[/PREFIX]".  A prefix that does not end in '/' gets
 * one ("s3://b/kcld" and "s3://b/kcld/" both give "kcld/").  Returns 0, or
 * KCLD_EINVAL with the reason in *why (a constant): not s3://, a bad
 * bucket name, a prefix too long or not UTF-8. */
int kcld_s3_uri_parse(const char *uri, struct kcld_s3_uri *out,
                      const char **why);

#endif
