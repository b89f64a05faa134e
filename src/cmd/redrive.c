/* redrive.c — dead-letter messages back into the stream (see redrive.h). */
#include "cmd/redrive.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "aws/http.h"
#include "cmd/cli.h"
#include "cmd/redrive_dir.h"
#include "cmd/redrive_line.h"
#include "cmd/redrive_s3.h"
#include "err.h"
#include "log.h"

#define PUT_ROUNDS 5

struct run {
  struct kcld_redrive_opts o;
  char *queue, *stream;
  kcld_redrive_cb cb;
  void *arg;
  struct kcld_redrive_result res;
  json_t *msgs;                  /* [{body, receipt, id}] of this receive */
  size_t at;                     /* message being worked on */
  struct kcld_redrive_line line; /* this message's records */
  const char *target;            /* this message's stream */
  char *obj_bucket, *obj_key;    /* the S3 object this message names */
  int rounds;
};

static void receive(struct run *r);
static void next_message(struct run *r);

static void finish(struct run *r)
{
  json_decref(r->msgs);
  r->cb(&r->res, r->arg);
  free(r->queue);
  free(r->stream);
  free(r);
}

static void free_recs(struct run *r)
{
  kcld_redrive_line_free(&r->line);
  r->target = NULL;
  free(r->obj_bucket);
  free(r->obj_key);
  r->obj_bucket = r->obj_key = NULL;
}

static void fail(struct run *r, int err, const char *what, const char *msg)
{
  if (!r->res.err)
    r->res.err = err;
  kcld_log(KCLD_LOG_ERROR, "redrive stopped", "step", what, "error", msg,
           NULL);
  free_recs(r);
  finish(r);
}

static void keep(struct run *r, const char *why)
{
  json_t *m = json_array_get(r->msgs, r->at);
  kcld_log(KCLD_LOG_WARN, "dead-letter message left in the queue",
           "messageId", json_string_value(json_object_get(m, "id")),
           "reason", why, NULL);
  r->res.kept++;
  free_recs(r);
  r->at++;
  next_message(r);
}

/* Reads the message's records and where they go; 0, or -1 with *why. */
static int decode(struct run *r, const char *body, const char **why)
{
  if (kcld_redrive_line_parse(body, &r->line, why) != 0)
    return -1;
  r->target = r->o.stream_from_message && r->line.stream ? r->line.stream
                                                         : r->stream;
  if (!r->target || !*r->target) {
    *why = "no stream: give --stream";
    return -1;
  }
  return 0;
}

static void on_deleted(const struct kcld_svc_status *st, void *arg)
{
  struct run *r = arg;
  if (st->err) {
    fail(r, st->err, "DeleteMessage", st->message);
    return;
  }
  r->res.messages++;
  free_recs(r);
  r->at++;
  next_message(r);
}

static void put(struct run *r);

static void delete_message(struct run *r)
{
  json_t *m = json_array_get(r->msgs, r->at);
  int rc = kcld_sqs_delete_message(
    r->o.sqs, r->queue, json_string_value(json_object_get(m, "receipt")),
    on_deleted, r);
  if (rc)
    fail(r, rc, "DeleteMessage", kcld_strerror(rc));
}

static void on_object_deleted(const struct kcld_svc_status *st, void *arg)
{
  struct run *r = arg;
  if (st->err) {
    fail(r, st->err, "DeleteObject", st->message);
    return;
  }
  delete_message(r);
}

/* Every record is back: the S3 object (if any), then the message. */
static void replayed(struct run *r)
{
  int rc;
  if (!r->obj_key) {
    delete_message(r);
    return;
  }
  rc = kcld_s3_delete_object(r->o.s3, r->obj_bucket, r->obj_key,
                             on_object_deleted, r);
  if (rc)
    fail(r, rc, "DeleteObject", kcld_strerror(rc));
}

static void on_put(const struct kcld_kinesis_put_result *res, void *arg)
{
  struct run *r = arg;

  if (res->st.err) {
    fail(r, res->st.err, "PutRecords", res->st.message);
    return;
  }
  r->res.records += kcld_redrive_line_took(&r->line, res);
  if (r->line.put_at == r->line.count) {
    replayed(r);
    return;
  }
  if (r->line.put_at >= r->line.put_end) { /* took all: the next call */
    r->rounds = 0;
  } else if (++r->rounds >= PUT_ROUNDS) {
    keep(r, "records not accepted by PutRecords after retries");
    return;
  }
  put(r);
}

static void put(struct run *r)
{
  int rc = kcld_redrive_line_put(&r->line, r->o.kinesis, r->target, on_put,
                                 r);
  if (rc)
    fail(r, rc, "PutRecords", kcld_strerror(rc));
}

/* The records are read: put them back. */
static void start_put(struct run *r)
{
  r->rounds = 0;
  put(r);
}

static void on_object(const struct kcld_s3_object *res, void *arg)
{
  struct run *r = arg;
  const char *why;

  if (res->st.err == KCLD_ENOTFOUND) {
    keep(r, "its S3 object is gone (replayed by redrive --s3?)");
    return;
  }
  if (res->st.err) {
    fail(r, res->st.err, "GetObject", res->st.message);
    return;
  }
  if (decode(r, res->body, &why) != 0) {
    keep(r, why);
    return;
  }
  start_put(r);
}

/* A message naming an S3 object ("s3Object": {bucket, key}) and carrying
 * no records: its bucket and key into r; 1, else 0. */
static int names_object(struct run *r, const char *body)
{
  json_t *j = json_loads(body, 0, NULL);
  json_t *o = json_object_get(j, "s3Object");
  const char *b = json_string_value(json_object_get(o, "bucket"));
  const char *k = json_string_value(json_object_get(o, "key"));
  int yes = b && k && !json_object_get(j, "records");

  if (yes) {
    r->obj_bucket = strdup(b);
    r->obj_key = strdup(k);
  }
  json_decref(j);
  return yes;
}

static void next_message(struct run *r)
{
  const char *why, *body;
  json_t *m;

  if (r->at >= json_array_size(r->msgs)) {
    receive(r);
    return;
  }
  m = json_array_get(r->msgs, r->at);
  body = json_string_value(json_object_get(m, "body"));
  if (names_object(r, body)) {
    int rc;
    if (!r->obj_bucket || !r->obj_key) {
      fail(r, KCLD_ENOMEM, "GetObject", "out of memory");
      return;
    }
    if (!r->o.s3) {
      keep(r, "it names an S3 object and there is no S3 client");
      return;
    }
    rc = kcld_s3_get_object(r->o.s3, r->obj_bucket, r->obj_key, on_object,
                            r);
    if (rc)
      fail(r, rc, "GetObject", kcld_strerror(rc));
    return;
  }
  if (decode(r, body, &why) != 0) {
    keep(r, why);
    return;
  }
  start_put(r);
}

static void on_received(const struct kcld_sqs_receive_result *res,
                        void *arg)
{
  struct run *r = arg;

  if (res->st.err) {
    fail(r, res->st.err, "ReceiveMessage", res->st.message);
    return;
  }
  json_decref(r->msgs);
  r->msgs = json_array();
  for (size_t i = 0; i < res->count; i++)
    json_array_append_new(r->msgs, json_pack(
      "{s:s,s:s,s:s}", "body", res->messages[i].body, "receipt",
      res->messages[i].receipt_handle, "id", res->messages[i].message_id));
  r->at = 0;
  if (res->count == 0) {
    finish(r);
    return;
  }
  next_message(r);
}

static void receive(struct run *r)
{
  struct kcld_sqs_receive_req rq;
  size_t seen = r->res.messages + r->res.kept;
  int rc;

  if (r->o.max_messages && seen >= r->o.max_messages) {
    finish(r);
    return;
  }
  memset(&rq, 0, sizeof(rq));
  rq.queue_url = r->queue;
  rq.max_messages = 10;
  if (r->o.max_messages && r->o.max_messages - seen < 10)
    rq.max_messages = (int)(r->o.max_messages - seen);
  rq.wait_seconds = 0;
  rq.visibility_timeout = r->o.visibility_timeout;
  rc = kcld_sqs_receive_message(r->o.sqs, &rq, on_received, r);
  if (rc)
    fail(r, rc, "ReceiveMessage", kcld_strerror(rc));
}

int kcld_redrive_run(const struct kcld_redrive_opts *o, kcld_redrive_cb cb,
                     void *arg)
{
  struct run *r;

  if (!o || !o->loop || !o->sqs || !o->kinesis || !o->queue_url ||
      !*o->queue_url || !cb ||
      (!o->stream_from_message && (!o->stream || !*o->stream)))
    return KCLD_EINVAL;
  r = calloc(1, sizeof(*r));
  if (!r)
    return KCLD_ENOMEM;
  r->o = *o;
  if (!r->o.visibility_timeout)
    r->o.visibility_timeout = 60;
  r->queue = strdup(o->queue_url);
  r->stream = strdup(o->stream ? o->stream : "");
  if (!r->queue || !r->stream) {
    free(r->queue);
    free(r->stream);
    free(r);
    return KCLD_ENOMEM;
  }
  r->cb = cb;
  r->arg = arg;
  receive(r);
  return 0;
}

/* ======== The subcommand ======== */

static const char s_usage[] =
  "usage: kcld redrive --queue URL [--stream NAME] [--config PATH]\n"
  "                    [--max-messages N]\n"
  "       kcld redrive --dir PATH [--stream NAME | --to-handler]\n"
  "                    [--config PATH]\n"
  "       kcld redrive --s3 s3://BUCKET[/PREFIX] [--stream NAME]\n"
  "                    [--config PATH]\n";

struct cmd_state {
  int done;
  struct kcld_redrive_result res;
};

static void on_cmd_done(const struct kcld_redrive_result *res, void *arg)
{
  struct cmd_state *s = arg;
  s->res = *res;
  s->done = 1;
}

int kcld_redrive_command(int argc, char **argv)
{
  static const struct option opts[] = {
    {"queue", required_argument, NULL, 'q'},
    {"stream", required_argument, NULL, 's'},
    {"config", required_argument, NULL, 'c'},
    {"max-messages", required_argument, NULL, 'n'},
    {"dir", required_argument, NULL, 'd'},
    {"to-handler", no_argument, NULL, 'H'},
    {"s3", required_argument, NULL, 'S'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
  };
  struct kcld_redrive_opts o;
  struct kcld_cli_aws c;
  struct kcld_config *cfg;
  struct kcld_sqs *sqs = NULL;
  struct kcld_kinesis *kin = NULL;
  struct kcld_s3 *s3c = NULL;
  struct cmd_state st;
  const char *path = NULL, *stream = NULL, *queue = NULL, *dir = NULL;
  const char *s3 = NULL;
  char *end;
  int ch, rc, status = 1, to_handler = 0;

  memset(&o, 0, sizeof(o));
  optind = 0;
  opterr = 0;
  while ((ch = getopt_long(argc, argv, ":q:s:c:n:d:S:Hh", opts, NULL)) !=
         -1) {
    switch (ch) {
    case 'd':
      dir = optarg;
      break;
    case 'H':
      to_handler = 1;
      break;
    case 'S':
      s3 = optarg;
      break;
    case 'q':
      queue = optarg;
      break;
    case 's':
      stream = optarg;
      break;
    case 'c':
      path = optarg;
      break;
    case 'n':
      o.max_messages = (size_t)strtoul(optarg, &end, 10);
      if (*end || !*optarg) {
        fprintf(stderr, "kcld redrive: bad --max-messages '%s'\n%s", optarg,
                s_usage);
        return 2;
      }
      break;
    case 'h':
      fputs(s_usage, stdout);
      return 0;
    default:
      fprintf(stderr, "kcld redrive: bad option '%s'\n%s", argv[optind - 1],
              s_usage);
      return 2;
    }
  }
  if ((!!queue + !!dir + !!s3) != 1 || optind < argc ||
      (to_handler && (!dir || stream || !path))) {
    fprintf(stderr, "kcld redrive: %s\n%s",
            (!!queue + !!dir + !!s3) != 1 ? "give one of --queue, --dir, --s3"
            : to_handler && !dir ? "--to-handler goes with --dir"
            : to_handler && stream ? "--to-handler or --stream, not both"
            : to_handler ? "--to-handler needs --config (the handler)"
                         : "unexpected arguments",
            s_usage);
    return 2;
  }
  cfg = kcld_cli_config(path, stream);
  if (!cfg)
    return 1;
  if (dir || s3) {
    status = dir ? kcld_redrive_dir_command(cfg, dir, stream, to_handler)
                 : kcld_redrive_s3_command(cfg, s3, stream);
    kcld_config_free(cfg);
    return status;
  }
  /* Without --stream: the stream each message names (an ARN), else the
   * config's. */
  o.stream = stream ? stream : cfg->stream;
  o.stream_from_message = stream == NULL;
  rc = kcld_cli_aws_open(&c, cfg);
  if (rc == 0)
    rc = kcld_sqs_new(c.aws, &c.loop, &sqs);
  if (rc == 0)
    rc = kcld_kinesis_new(c.aws, &c.loop, &kin);
  if (rc == 0)
    rc = kcld_s3_new(c.aws, &c.loop, &s3c);
  if (rc == 0) {
    memset(&st, 0, sizeof(st));
    o.loop = &c.loop;
    o.sqs = sqs;
    o.kinesis = kin;
    o.s3 = s3c;
    o.queue_url = queue;
    rc = kcld_redrive_run(&o, on_cmd_done, &st);
    if (rc == 0) {
      kcld_cli_run_until(&c, &st.done);
      printf("{\"messages\":%zu,\"records\":%zu,\"kept\":%zu,\"error\":%s%s%s}"
             "\n", st.res.messages, st.res.records, st.res.kept,
             st.res.err ? "\"" : "",
             st.res.err ? kcld_strerror(st.res.err) : "null",
             st.res.err ? "\"" : "");
      status = st.done && !st.res.err && !st.res.kept ? 0 : 1;
    }
  }
  if (rc)
    fprintf(stderr, "kcld redrive: %s\n", kcld_strerror(rc));
  if (s3c)
    kcld_s3_close(s3c);
  if (kin)
    kcld_kinesis_close(kin);
  if (sqs)
    kcld_sqs_close(sqs);
  kcld_cli_aws_close(&c);
  kcld_http_global_cleanup();
  kcld_config_free(cfg);
  return status;
}
