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
  json_t *seen;                  /* dry run: receipts to release at the end */
};

static void receive(struct run *r);
static void next_message(struct run *r);

static void finish(struct run *r);

/* Dry run: the messages read become visible again at once, one by one. */
static void on_released(const struct kcld_svc_status *st, void *arg)
{
  struct run *r = arg;
  if (st->err)
    kcld_log(KCLD_LOG_WARN, "dry run: a message stays invisible until its "
             "visibility timeout", "error", st->message, NULL);
  json_array_remove(r->seen, 0);
  finish(r);
}

static void finish(struct run *r)
{
  if (r->seen && json_array_size(r->seen) > 0) {
    int rc = kcld_sqs_change_visibility(
      r->o.sqs, r->queue, json_string_value(json_array_get(r->seen, 0)), 0,
      on_released, r);
    if (rc == 0)
      return;
    json_array_clear(r->seen);
  }
  json_decref(r->seen);
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

/* This message is dealt with: the next one. */
static void advance(struct run *r)
{
  free_recs(r);
  r->at++;
  if (r->o.progress)
    r->o.progress(&r->res, r->arg);
  next_message(r);
}

static void keep(struct run *r, const char *why)
{
  json_t *m = json_array_get(r->msgs, r->at);
  kcld_log(KCLD_LOG_WARN, "dead-letter message left in the queue",
           "message_id", json_string_value(json_object_get(m, "id")),
           "reason", why, NULL);
  r->res.kept++;
  if (r->seen)
    json_array_append(r->seen, json_object_get(m, "receipt"));
  advance(r);
}

/* Reads the message's records and where they go; 0, or -1 with *why. */
static int decode(struct run *r, const json_t *doc, const char **why)
{
  if (kcld_redrive_line_read(doc, &r->line, why) != 0)
    return -1;
  r->target = kcld_redrive_line_target(&r->line, r->stream,
                                       r->o.stream_from_message);
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
  advance(r);
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

/* The message's records are read (from its body or its S3 object): put
 * them back, or in a dry run count them. */
static void start_put(struct run *r)
{
  json_t *m = json_array_get(r->msgs, r->at);

  if (r->o.dry_run) {
    kcld_log(KCLD_LOG_INFO, "dry run: a message to put back", "message_id",
             json_string_value(json_object_get(m, "id")),
             KCLD_LOG_UINT("records", r->line.count), "stream", r->target,
             "s3_key", r->obj_key, NULL);
    r->res.messages++;
    r->res.records += r->line.count;
    json_array_append(r->seen, json_object_get(m, "receipt"));
    advance(r);
    return;
  }
  r->rounds = 0;
  put(r);
}

static void on_object(const struct kcld_s3_object *res, void *arg)
{
  struct run *r = arg;
  const char *why;
  json_t *doc;
  int rc;

  if (res->st.err == KCLD_ENOTFOUND) {
    keep(r, "its S3 object is gone (replayed by redrive --s3?)");
    return;
  }
  if (res->st.err) {
    fail(r, res->st.err, "GetObject", res->st.message);
    return;
  }
  doc = json_loads(res->body, 0, NULL);
  rc = decode(r, doc, &why);
  json_decref(doc);
  if (rc != 0) {
    keep(r, why);
    return;
  }
  start_put(r);
}

/* A message naming an S3 object ("s3Object": {bucket, key}) and carrying
 * no records: its bucket and key into r; 1, else 0. */
static int names_object(struct run *r, const json_t *j)
{
  json_t *o = json_object_get(j, "s3Object");
  const char *b = json_string_value(json_object_get(o, "bucket"));
  const char *k = json_string_value(json_object_get(o, "key"));
  int yes = b && k && !json_object_get(j, "records");

  if (yes) {
    r->obj_bucket = strdup(b);
    r->obj_key = strdup(k);
  }
  return yes;
}

/* The message names an S3 object: its records come from GetObject. */
static void get_object(struct run *r)
{
  int rc;
  if (!r->obj_bucket || !r->obj_key) {
    fail(r, KCLD_ENOMEM, "GetObject", "out of memory");
    return;
  }
  if (!r->o.s3) {
    keep(r, "it names an S3 object and there is no S3 client");
    return;
  }
  rc = kcld_s3_get_object(r->o.s3, r->obj_bucket, r->obj_key, on_object, r);
  if (rc)
    fail(r, rc, "GetObject", kcld_strerror(rc));
}

/* The body is parsed once: whether it names an S3 object, else its
 * records. */
static void next_message(struct run *r)
{
  const char *why = NULL;
  json_t *m, *doc;
  int rc;

  if (r->at >= json_array_size(r->msgs)) {
    receive(r);
    return;
  }
  m = json_array_get(r->msgs, r->at);
  doc = json_loads(json_string_value(json_object_get(m, "body")), 0, NULL);
  rc = names_object(r, doc) ? 1 : decode(r, doc, &why);
  json_decref(doc);
  if (rc == 1)
    get_object(r);
  else if (rc != 0)
    keep(r, why);
  else
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

  if (!o || !o->loop || !o->sqs || (!o->kinesis && !o->dry_run) ||
      !o->queue_url ||
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
  if (o->dry_run && !(r->seen = json_array())) {
    free(r->queue);
    free(r->stream);
    free(r);
    return KCLD_ENOMEM;
  }
  receive(r);
  return 0;
}

/* ======== The subcommand ======== */

static const char s_usage[] =
  "usage: kcld redrive [--queue URL | --s3 s3://BUCKET[/PREFIX] | --dir PATH]\n"
  "                    [--config PATH] [--stream NAME | --to-handler]\n"
  "                    [--max-messages N] [--dry-run]\n"
  "\n"
  "Puts dead-lettered records back: from the SQS queue on_failure.sqs fills\n"
  "(--queue; a message naming an S3 object is replayed from the object),\n"
  "the S3 objects on_failure.s3 writes (--s3) or the directory\n"
  "on_failure.dir fills (--dir), into the stream (same partition key and\n"
  "data, new sequence numbers) or, with --dir and --to-handler, straight\n"
  "into the configured handler.  A message or object is deleted, a file\n"
  "moved to PATH/done/, only once all its records went through; what\n"
  "cannot be put back stays, with a warning.\n"
  "\n"
  "  -q, --queue URL       the dead-letter queue (default: the config's\n"
  "                        on_failure.sqs)\n"
  "  -S, --s3 s3://BUCKET[/PREFIX]\n"
  "                        the dead-letter objects under PREFIX/aws/kinesis/\n"
  "                        (default, when the config has no on_failure.sqs:\n"
  "                        its on_failure.s3)\n"
  "  -d, --dir PATH        the dead-letter directory (default, when the\n"
  "                        config has neither: its on_failure.dir)\n"
  "  -c, --config PATH     endpoints, region, credentials, the stream, the\n"
  "                        handler and the defaults above; without it, the\n"
  "                        environment, and --queue, --s3 or --dir is\n"
  "                        needed\n"
  "  -s, --stream NAME     put every record into NAME (default: the stream\n"
  "                        each record came from, else the config's)\n"
  "  -H, --to-handler      (--dir) give the records to the config's handler\n"
  "  -n, --max-messages N  (--queue) stop after N messages (default: when\n"
  "                        the queue answers empty)\n"
  "      --dry-run         put nothing, delete or move nothing: count what\n"
  "                        would be put back (the queue's messages are made\n"
  "                        visible again at the end; S3 objects are read)\n"
  "  -h, --help            this text\n"
  "\n"
  "A progress line on stderr when it is a terminal; one JSON summary line on\n"
  "stdout.  Exit status: 0 everything was (or would be) put back, 1 some\n"
  "stayed or a call failed, 2 usage.\n";

struct cmd_state {
  int done;
  int dry_run;
  struct kcld_redrive_result res;
};

static void show(const struct kcld_redrive_result *r, int dry_run, int final)
{
  kcld_cli_progress(final, "redrive: %zu messages, %zu records %s, %zu "
                    "messages left", r->messages, r->records,
                    dry_run ? "to put back" : "put back", r->kept);
}

static void on_cmd_progress(const struct kcld_redrive_result *res, void *arg)
{
  const struct cmd_state *s = arg;
  show(res, s->dry_run, 0);
}

static void on_cmd_done(const struct kcld_redrive_result *res, void *arg)
{
  struct cmd_state *s = arg;
  s->res = *res;
  s->done = 1;
}

static int usage_error(const char *what, const char *arg)
{
  fprintf(stderr, "kcld redrive: %s%s%s\n\n%s", what, arg ? " " : "",
          arg ? arg : "", s_usage);
  return 2;
}

/* The queue at `queue` into o->stream (see redrive.h); the exit status. */
static int redrive_queue(const struct kcld_config *cfg, const char *queue,
                         struct kcld_redrive_opts *o)
{
  struct kcld_cli_aws c;
  struct kcld_sqs *sqs = NULL;
  struct kcld_kinesis *kin = NULL;
  struct kcld_s3 *s3 = NULL;
  struct cmd_state st;
  int rc, status = 1;

  memset(&st, 0, sizeof(st));
  st.dry_run = o->dry_run;
  rc = kcld_cli_aws_init(&c, cfg);
  if (rc == 0)
    rc = kcld_sqs_new(c.aws, &c.loop, &sqs);
  if (rc == 0 && !o->dry_run)
    rc = kcld_kinesis_new(c.aws, &c.loop, &kin);
  if (rc == 0)
    rc = kcld_s3_new(c.aws, &c.loop, &s3);
  if (rc == 0) {
    o->loop = &c.loop;
    o->sqs = sqs;
    o->kinesis = kin;
    o->s3 = s3;
    o->queue_url = queue;
    o->progress = on_cmd_progress;
    rc = kcld_redrive_run(o, on_cmd_done, &st);
  }
  if (rc == 0) {
    kcld_cli_run_until(&c, &st.done);
    show(&st.res, o->dry_run, 1);
    printf("{\"messages\":%zu,\"records\":%zu,\"kept\":%zu,\"dry_run\":%s,"
           "\"error\":%s%s%s}\n", st.res.messages, st.res.records,
           st.res.kept, o->dry_run ? "true" : "false",
           st.res.err ? "\"" : "",
           st.res.err ? kcld_strerror(st.res.err) : "null",
           st.res.err ? "\"" : "");
    status = st.done && !st.res.err && !st.res.kept ? 0 : 1;
  } else {
    fprintf(stderr, "kcld redrive: %s\n", kcld_strerror(rc));
  }
  if (s3)
    kcld_s3_close(s3);
  if (kin)
    kcld_kinesis_close(kin);
  if (sqs)
    kcld_sqs_close(sqs);
  kcld_cli_aws_clean_up(&c);
  kcld_http_global_cleanup();
  return status;
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
    {"dry-run", no_argument, NULL, 'D'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
  };
  struct kcld_redrive_opts o;
  struct kcld_config *cfg;
  const char *path = NULL, *stream = NULL, *queue = NULL, *dir = NULL;
  const char *s3 = NULL;
  char *end;
  int ch, status, to_handler = 0;

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
    case 'D':
      o.dry_run = 1;
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
      if (*end || !*optarg)
        return usage_error("bad --max-messages", optarg);
      break;
    case 'h':
      fputs(s_usage, stdout);
      return 0;
    default:
      return usage_error("bad option", argv[optind - 1]);
    }
  }
  if (optind < argc)
    return usage_error("unexpected argument", argv[optind]);
  if (!!queue + !!s3 + !!dir > 1)
    return usage_error("one of --queue, --s3, --dir", NULL);
  if (!queue && !s3 && !dir && !path)
    return usage_error("give --queue, --s3 or --dir (or --config, whose "
                       "on_failure.sqs, .s3 or .dir is the default)", NULL);
  cfg = kcld_cli_config(path, stream);
  if (!cfg)
    return 1;
  if (!queue && !s3 && !dir) {
    if (cfg->on_failure.sqs && *cfg->on_failure.sqs)
      queue = cfg->on_failure.sqs;
    else if (cfg->on_failure.s3 && *cfg->on_failure.s3)
      s3 = cfg->on_failure.s3;
    else if (cfg->on_failure.dir && *cfg->on_failure.dir)
      dir = cfg->on_failure.dir;
  }
  if (!queue && !s3 && !dir) {
    kcld_config_free(cfg);
    return usage_error("no --queue, --s3 or --dir, and the configuration "
                       "has no on_failure.sqs, .s3 or .dir", NULL);
  }
  if (to_handler && (!dir || stream || !path)) {
    kcld_config_free(cfg);
    return usage_error(!dir ? "--to-handler goes with --dir"
                       : stream ? "--to-handler or --stream, not both"
                                : "--to-handler needs --config (the handler)",
                       NULL);
  }
  if (dir) {
    status = kcld_redrive_dir_command(cfg, dir, stream, to_handler,
                                      o.dry_run);
  } else if (s3) {
    status = kcld_redrive_s3_command(cfg, s3, stream, o.dry_run);
  } else {
    /* Without --stream: the stream each message names (an ARN), else the
     * config's. */
    o.stream = stream ? stream : cfg->stream;
    o.stream_from_message = stream == NULL;
    status = redrive_queue(cfg, queue, &o);
  }
  kcld_config_free(cfg);
  return status;
}
