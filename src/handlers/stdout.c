/* stdout.c — JSON lines, one per record:
 *
 *   {"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":"k",
 *    "sequenceNumber":"496...","subSequenceNumber":0,"data":"aGk=",
 *    "approximateArrivalTimestamp":1700000000.123},
 *    "eventSource":"aws:kinesis","eventVersion":"1.0",
 *    "eventID":"shardId-000000000000:496...","eventName":"aws:kinesis:record",
 *    "awsRegion":"us-east-1","eventSourceARN":"arn:..."}
 *
 * With handler.decode: utf8 the data is a JSON string of the payload when it
 * is valid UTF-8 (else base64, with "dataEncoding":"base64").
 * Formatting and the write run on the worker pool (handlers/job.h); one
 * write(2) per batch under a lock, so lines of concurrent batches never
 * interleave.  A failed write says nothing about the records: it is an
 * infrastructure failure. */
#include "handlers/stdout.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "base/base64.h"
#include "base/seq.h"
#include "err.h"
#include "handlers/job.h"
#include "log.h"

struct stdout_handler {
  struct kcld_handler base;
  uv_loop_t *loop;
  int fd;
  int own_fd;
  int utf8;
  char *region;
  char *stream_arn;
  pthread_mutex_t lock;
  struct kcld_jobs jobs;
  int killed;
};

struct job {
  struct kcld_job base; /* base.owner: the handler */
  int err;          /* 0 or errno of the failed write */
};

/* Appends s to a growing buffer; returns 0 or -1 when out of memory. */
static int append(char **buf, size_t *len, size_t *cap, const char *s,
                  size_t n)
{
  if (*len + n + 1 > *cap) {
    size_t ncap = *cap ? *cap : 4096;
    while (*len + n + 1 > ncap)
      ncap *= 2;
    char *nb = realloc(*buf, ncap);
    if (!nb)
      return -1;
    *buf = nb;
    *cap = ncap;
  }
  memcpy(*buf + *len, s, n);
  *len += n;
  return 0;
}

static json_t *record_json(const struct stdout_handler *h, const char *shard,
                           const struct kcld_record *r)
{
  json_t *k = json_object(), *ev = json_object(), *data = NULL;
  char id[256 + KCLD_SEQ_MAX];

  if (h->utf8)
    data = json_stringn((const char *)r->data, r->data_len);
  if (!data) {
    size_t n;
    char *b64 = kcld_base64_encode_new(r->data, r->data_len, &n);
    if (b64) {
      data = json_stringn(b64, n);
      free(b64);
    }
    if (h->utf8)
      json_object_set_new(k, "dataEncoding", json_string("base64"));
  }
  json_object_set_new(k, "kinesisSchemaVersion", json_string("1.0"));
  json_object_set_new(k, "partitionKey",
                      json_stringn(r->partition_key, r->partition_key_len));
  json_object_set_new(k, "sequenceNumber", json_string(r->sequence_number));
  json_object_set_new(k, "subSequenceNumber",
                      json_integer((json_int_t)r->sub_sequence_number));
  json_object_set_new(k, "data", data ? data : json_null());
  if (r->arrival_ms != KCLD_RECORD_NO_ARRIVAL)
    json_object_set_new(k, "approximateArrivalTimestamp",
                        json_real((double)r->arrival_ms / 1000.0));
  json_object_set_new(ev, "kinesis", k);
  json_object_set_new(ev, "eventSource", json_string("aws:kinesis"));
  json_object_set_new(ev, "eventVersion", json_string("1.0"));
  snprintf(id, sizeof(id), "%s:%s", shard, r->sequence_number);
  json_object_set_new(ev, "eventID", json_string(id));
  json_object_set_new(ev, "eventName", json_string("aws:kinesis:record"));
  json_object_set_new(ev, "awsRegion", json_string(h->region));
  json_object_set_new(ev, "eventSourceARN", json_string(h->stream_arn));
  return ev;
}

static void work_cb(struct kcld_job *base)
{
  struct job *j = (struct job *)base;
  struct stdout_handler *h = base->owner;
  const struct kcld_handler_batch *b = &base->batch;
  char *buf = NULL;
  size_t len = 0, cap = 0;

  for (size_t i = 0; i < b->count && j->err == 0; i++) {
    json_t *ev = record_json(h, b->shard_id, b->records[i]);
    char *line = ev ? json_dumps(ev, JSON_COMPACT) : NULL;
    if (!line || append(&buf, &len, &cap, line, strlen(line)) != 0 ||
        append(&buf, &len, &cap, "\n", 1) != 0)
      j->err = ENOMEM;
    free(line);
    json_decref(ev);
  }
  if (j->err == 0) {
    pthread_mutex_lock(&h->lock);
    for (size_t off = 0; off < len;) {
      ssize_t n = write(h->fd, buf + off, len - off);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0) {
        j->err = n < 0 ? errno : EIO;
        break;
      }
      off += (size_t)n;
    }
    pthread_mutex_unlock(&h->lock);
  }
  free(buf);
}

static void after_cb(struct kcld_job *base)
{
  struct job *j = (struct job *)base;
  struct kcld_handler_result res = {.status = KCLD_HANDLER_OK};

  if (j->err) {
    res.status = KCLD_HANDLER_FAILED;
    res.failure_class = KCLD_HANDLER_INFRA;
    res.error_type = "HandlerIOError";
    res.error_message = strerror(j->err);
    kcld_log(KCLD_LOG_ERROR, "stdout handler: write failed", "shard",
             base->batch.shard_id, "error", res.error_message, NULL);
  }
  kcld_job_answer(base, &res);
}

static int process(struct kcld_handler *base, const struct kcld_handler_batch *b,
                   kcld_handler_done_cb done, void *arg)
{
  struct stdout_handler *h = (struct stdout_handler *)base;

  if (h->killed)
    return KCLD_ECANCELED;
  return kcld_job_submit(h->loop, &h->jobs, sizeof(struct job), b, done, arg,
                         h, work_cb, after_cb);
}

/* A write already running on a pool thread cannot be interrupted: only
 * the batches still waiting for a thread are cancelled. */
static void kill_handler(struct kcld_handler *base)
{
  struct stdout_handler *h = (struct stdout_handler *)base;
  h->killed = 1;
  kcld_job_cancel_all(&h->jobs);
}

static void handler_close(struct kcld_handler *base)
{
  struct stdout_handler *h = (struct stdout_handler *)base;
  if (h->own_fd)
    close(h->fd);
  pthread_mutex_destroy(&h->lock);
  free(h->region);
  free(h->stream_arn);
  free(h);
}

static const struct kcld_handler_ops s_ops = {
  .name = "stdout",
  .process = process,
  .kill = kill_handler,
  .close = handler_close,
};

int kcld_handler_stdout_new(const struct kcld_handler_env *env,
                            struct kcld_handler **out)
{
  const char *path = env->cfg->handler.path;
  struct stdout_handler *h = calloc(1, sizeof(*h));

  if (!h)
    return KCLD_ENOMEM;
  h->base.ops = &s_ops;
  h->loop = env->loop;
  h->utf8 = env->cfg->handler.decode == KCLD_CONFIG_DECODE_UTF8;
  h->region = strdup(env->region ? env->region : "");
  h->stream_arn = strdup(env->stream_arn ? env->stream_arn : "");
  pthread_mutex_init(&h->lock, NULL);
  if (path && *path) {
    h->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (h->fd < 0) {
      kcld_log(KCLD_LOG_ERROR, "stdout handler: cannot open handler.path",
               "path", path, "error", strerror(errno), NULL);
      h->own_fd = 0;
      handler_close(&h->base);
      return KCLD_EIO;
    }
    h->own_fd = 1;
  } else {
    h->fd = STDOUT_FILENO;
  }
  if (!h->region || !h->stream_arn) {
    handler_close(&h->base);
    return KCLD_ENOMEM;
  }
  *out = &h->base;
  return 0;
}
