/* identity.c — the stream's and the function's ARNs (see identity.h). */
#include "aws/identity.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws/endpoint.h"
#include "err.h"
#include "log.h"

struct resolve {
  struct kcld_sts *sts;
  char *stream;
  char *region;
  char *application;
  kcld_identity_cb cb;
  void *arg;
};

/* ======== The names ======== */

/* Field i (0-based) of an ARN, into buf; "" when there is no such field. */
static void arn_field(const char *arn, int i, char *buf, size_t cap)
{
  const char *p = arn, *end;
  size_t n;

  buf[0] = '\0';
  if (!arn || strncmp(arn, "arn:", 4) != 0)
    return;
  for (; i > 0 && p; i--) {
    p = strchr(p, ':');
    if (p)
      p++;
  }
  if (!p)
    return;
  end = strchr(p, ':');
  n = end ? (size_t)(end - p) : strlen(p);
  if (n >= cap)
    n = cap - 1;
  memcpy(buf, p, n);
  buf[n] = '\0';
}

char *kcld_identity_account_of(const char *arn, char *buf, size_t cap)
{
  if (cap == 0)
    return buf;
  arn_field(arn, 4, buf, cap);
  return buf;
}

char *kcld_identity_stream_arn(const char *region, const char *account,
                               const char *name)
{
  char *s;
  if (asprintf(&s, "arn:%s:kinesis:%s:%s:stream/%s",
               kcld_partition_of(region)->id, region ? region : "",
               account ? account : "", name ? name : "") < 0)
    return NULL;
  return s;
}

char *kcld_identity_function_arn(const char *stream_arn, const char *region,
                                 const char *account,
                                 const char *application)
{
  char part[64] = "", reg[64] = "", acct[64] = "";
  char *s;

  arn_field(stream_arn, 1, part, sizeof(part));
  arn_field(stream_arn, 3, reg, sizeof(reg));
  arn_field(stream_arn, 4, acct, sizeof(acct));
  if (asprintf(&s, "arn:%s:lambda:%s:%s:function:kcld-%s",
               *part ? part : kcld_partition_of(region)->id,
               *reg ? reg : region ? region : "",
               *acct ? acct : account ? account : "",
               application ? application : "") < 0)
    return NULL;
  return s;
}

/* ======== Resolution ======== */

static void resolve_free(struct resolve *r)
{
  free(r->stream);
  free(r->region);
  free(r->application);
  free(r);
}

/* Calls the callback with what is known, then frees r. */
static void finish(struct resolve *r, int err, const char *stream_arn,
                   const char *account)
{
  struct kcld_identity id;
  char acct[32];
  char *fn = NULL;

  if (err == 0) {
    if (!account || !*account)
      account = kcld_identity_account_of(stream_arn, acct, sizeof(acct));
    fn = kcld_identity_function_arn(stream_arn, r->region, account,
                                    r->application);
  }
  if (err == 0 && fn) {
    id.stream_arn = stream_arn ? stream_arn : "";
    id.account = account;
    id.function_arn = fn;
    kcld_log(KCLD_LOG_INFO, "stream and function ARNs", "stream_arn",
             id.stream_arn, "function_arn", fn, NULL);
    r->cb(0, &id, r->arg);
  } else {
    r->cb(err ? err : KCLD_ENOMEM, NULL, r->arg);
  }
  free(fn);
  resolve_free(r);
}

static void on_identity(const struct kcld_sts_identity *res, void *arg)
{
  struct resolve *r = arg;
  char *arn;

  if (res->st.err == KCLD_ECANCELED) {
    finish(r, KCLD_ECANCELED, NULL, NULL);
    return;
  }
  if (res->st.err || !res->account || !*res->account) {
    kcld_log(KCLD_LOG_WARN, "account unknown: Lambda-shaped ARNs go "
             "without it", "error", res->st.message, NULL);
    finish(r, 0, "", "");
    return;
  }
  arn = kcld_identity_stream_arn(r->region, res->account, r->stream);
  if (!arn) {
    finish(r, KCLD_ENOMEM, NULL, NULL);
    return;
  }
  finish(r, 0, arn, res->account);
  free(arn);
}

static void on_summary(const struct kcld_kinesis_stream_summary *res,
                       void *arg)
{
  struct resolve *r = arg;
  enum kcld_kinesis_fault f = kcld_kinesis_fault(&res->st);
  int rc;

  if (f == KCLD_KINESIS_OK && res->stream_arn && *res->stream_arn) {
    finish(r, 0, res->stream_arn, NULL);
    return;
  }
  if (f == KCLD_KINESIS_CANCELED) {
    finish(r, KCLD_ECANCELED, NULL, NULL);
    return;
  }
  if (f == KCLD_KINESIS_ACCESS_DENIED && r->sts) {
    kcld_log(KCLD_LOG_WARN, "DescribeStreamSummary refused: the stream ARN "
             "is built from the account STS GetCallerIdentity names (grant "
             "kinesis:DescribeStreamSummary to skip this)", "stream",
             r->stream, "error", res->st.message, NULL);
    rc = kcld_sts_get_caller_identity(r->sts, on_identity, r);
    if (rc == 0)
      return;
    finish(r, rc == KCLD_ECANCELED ? rc : 0, "", "");
    return;
  }
  kcld_log(KCLD_LOG_WARN, "stream ARN unknown: Kinesis events and "
           "dead-letter records go without it", "stream", r->stream,
           "error", res->st.err ? res->st.message : "no StreamARN in the "
           "answer", NULL);
  finish(r, 0, "", "");
}

int kcld_identity_resolve(const struct kcld_identity_opts *opts,
                          kcld_identity_cb cb, void *arg)
{
  struct resolve *r;
  int rc;

  if (!opts || !opts->kinesis || !opts->stream || !*opts->stream || !cb)
    return KCLD_EINVAL;
  r = calloc(1, sizeof(*r));
  if (!r)
    return KCLD_ENOMEM;
  r->sts = opts->sts;
  r->cb = cb;
  r->arg = arg;
  r->stream = strdup(opts->stream);
  r->region = strdup(opts->region ? opts->region : "");
  r->application = strdup(opts->application ? opts->application : "");
  if (!r->stream || !r->region || !r->application) {
    resolve_free(r);
    return KCLD_ENOMEM;
  }
  if (strncmp(r->stream, "arn:", 4) == 0) {
    finish(r, 0, opts->stream, NULL);
    return 0;
  }
  rc = kcld_kinesis_describe_stream_summary(opts->kinesis, r->stream,
                                            on_summary, r);
  if (rc != 0)
    resolve_free(r);
  return rc;
}
