/* dlq_sqs.c — dead-letter messages into an SQS queue (see dlq_sqs.h). */
#include "process/dlq_sqs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "err.h"

/* Room left in a message for the attributes. */
#define ATTR_ROOM 1024

struct sqs_store {
  struct kcld_dlq_store base;
  struct kcld_sqs *sqs;
  char *queue_url;
};

struct call {
  struct kcld_dlq_msg *const *msgs;
  size_t n;
  kcld_dlq_store_cb cb;
  void *arg;
};

static json_t *attr(const char *v)
{
  return json_pack("{s:s,s:s}", "DataType", "String", "StringValue",
                   v && *v ? v : "-");
}

static void on_sent(const struct kcld_sqs_batch_result *res, void *arg)
{
  struct call *c = arg;
  const char *code = NULL, *detail = NULL;
  char buf[512];

  for (size_t i = 0; i < c->n && i < res->count; i++) {
    if (res->entries[i].ok) {
      c->msgs[i]->stored = 1;
    } else if (!code) {
      code = res->entries[i].code;
      detail = res->entries[i].message;
    }
  }
  if (code)
    snprintf(buf, sizeof(buf), "%s%s%s", code, detail && *detail ? ": " : "",
             detail ? detail : "");
  c->cb(res->st.err ? res->st.err : res->failed ? KCLD_EAWS : 0,
        code ? buf : res->st.message, c->arg);
  free(c);
}

static int store(struct kcld_dlq_store *base, struct kcld_dlq_msg *const *msgs,
                 size_t n, kcld_dlq_store_cb cb, void *arg)
{
  struct sqs_store *s = (struct sqs_store *)base;
  struct kcld_sqs_entry *e = calloc(n, sizeof(*e));
  json_t **attrs = calloc(n, sizeof(*attrs));
  char (*ids)[24] = calloc(n, sizeof(*ids));
  struct call *c = calloc(1, sizeof(*c));
  int rc = KCLD_ENOMEM;

  if (!e || !attrs || !ids || !c)
    goto done;
  for (size_t i = 0; i < n; i++) {
    attrs[i] = json_pack("{s:o,s:o,s:o}", "shardId", attr(msgs[i]->shard_id),
                         "startSequenceNumber",
                         attr(msgs[i]->start_sequence), "errorClass",
                         attr(msgs[i]->error_class));
    if (!attrs[i])
      goto done;
    snprintf(ids[i], sizeof(ids[i]), "m%zu", i);
    e[i].id = ids[i];
    e[i].body = msgs[i]->body;
    e[i].attributes = attrs[i];
  }
  c->msgs = msgs;
  c->n = n;
  c->cb = cb;
  c->arg = arg;
  rc = kcld_sqs_send_message_batch(s->sqs, s->queue_url, e, n, on_sent, c);
  if (rc == 0)
    c = NULL;
done:
  for (size_t i = 0; attrs && i < n; i++)
    json_decref(attrs[i]);
  free(attrs);
  free(ids);
  free(e);
  free(c);
  return rc;
}

static void store_free(struct kcld_dlq_store *base)
{
  struct sqs_store *s = (struct sqs_store *)base;
  free(s->queue_url);
  free(s);
}

static const struct kcld_dlq_store_ops s_ops = {
  .name = "sqs", .store = store, .free = store_free,
};

int kcld_dlq_sqs_new(struct kcld_sqs *sqs, const char *queue_url,
                     struct kcld_dlq_store **out)
{
  struct sqs_store *s;

  if (!sqs || !queue_url || !*queue_url || !out)
    return KCLD_EINVAL;
  s = calloc(1, sizeof(*s));
  if (!s || !(s->queue_url = strdup(queue_url))) {
    free(s);
    return KCLD_ENOMEM;
  }
  s->sqs = sqs;
  s->base.ops = &s_ops;
  s->base.body_limit = KCLD_SQS_MESSAGE_MAX - ATTR_ROOM;
  s->base.where = s->queue_url;
  *out = &s->base;
  return 0;
}
