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
  advance(r);
}

static void put(struct run *r);

static void on_put(const struct kcld_kinesis_put_result *res, void *arg)
{
  struct run *r = arg;
  size_t k = 0, left = 0;

  if (res->st.err) {
    fail(r, res->st.err, "PutRecords", res->st.message);
    return;
  }
  for (size_t i = 0; i < r->line.count; i++) {
    if (r->line.recs[i].put)
      continue;
    if (k < res->count && !res->entries[k].error_code) {
      r->line.recs[i].put = 1;
      r->res.records++;
    } else {
      left++;
    }
    k++;
  }
  if (left) {
    if (++r->rounds >= PUT_ROUNDS) {
      keep(r, "records not accepted by PutRecords after retries");
      return;
    }
    put(r);
    return;
  }
  json_t *m = json_array_get(r->msgs, r->at);
  int rc = kcld_sqs_delete_message(
    r->o.sqs, r->queue, json_string_value(json_object_get(m, "receipt")),
    on_deleted, r);
  if (rc)
    fail(r, rc, "DeleteMessage", kcld_strerror(rc));
}

static void put(struct run *r)
{
  struct kcld_kinesis_record *kr = calloc(r->line.count, sizeof(*kr));
  size_t n = 0;
  int rc;

  if (!kr) {
    fail(r, KCLD_ENOMEM, "PutRecords", "out of memory");
    return;
  }
  for (size_t i = 0; i < r->line.count; i++) {
    const struct kcld_redrive_rec *x = &r->line.recs[i];
    if (x->put)
      continue;
    kr[n].data = x->data;
    kr[n].len = x->len;
    kr[n].partition_key = x->key;
    n++;
  }
  rc = kcld_kinesis_put_records(r->o.kinesis, r->target, kr, n, on_put, r);
  free(kr);
  if (rc)
    fail(r, rc, "PutRecords", kcld_strerror(rc));
}

static void next_message(struct run *r)
{
  const char *why;
  json_t *m;

  if (r->at >= json_array_size(r->msgs)) {
    receive(r);
    return;
  }
  m = json_array_get(r->msgs, r->at);
  if (decode(r, json_string_value(json_object_get(m, "body")), &why) != 0) {
    keep(r, why);
    return;
  }
  if (r->line.count > KCLD_KINESIS_PUT_MAX_RECORDS) {
    keep(r, "more records than one PutRecords call takes");
    return;
  }
  if (r->o.dry_run) {
    kcld_log(KCLD_LOG_INFO, "dry run: a message to put back", "message_id",
             json_string_value(json_object_get(m, "id")),
             KCLD_LOG_UINT("records", r->line.count), "stream", r->target,
             NULL);
    r->res.messages++;
    r->res.records += r->line.count;
    json_array_append(r->seen, json_object_get(m, "receipt"));
    advance(r);
    return;
  }
  r->rounds = 0;
  put(r);
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
  "usage: kcld redrive [--queue URL | --dir PATH] [--config PATH]\n"
  "                    [--stream NAME | --to-handler] [--max-messages N]\n"
  "                    [--dry-run]\n"
  "\n"
  "Puts dead-lettered records back: from the SQS queue on_failure.sqs fills\n"
  "(--queue) or the directory on_failure.dir fills (--dir), into the stream\n"
  "(same partition key and data, new sequence numbers) or, with --dir and\n"
  "--to-handler, straight into the configured handler.  A message is\n"
  "deleted, a file moved to PATH/done/, only once all its records went\n"
  "through; what cannot be put back stays, with a warning.\n"
  "\n"
  "  -q, --queue URL       the dead-letter queue (default: the config's\n"
  "                        on_failure.sqs)\n"
  "  -d, --dir PATH        the dead-letter directory (default, when the\n"
  "                        config has no on_failure.sqs: its on_failure.dir)\n"
  "  -c, --config PATH     endpoints, region, credentials, the stream, the\n"
  "                        handler and the defaults above; without it, the\n"
  "                        environment, and --queue or --dir is needed\n"
  "  -s, --stream NAME     put every record into NAME (default: the stream\n"
  "                        each record came from, else the config's)\n"
  "  -H, --to-handler      (--dir) give the records to the config's handler\n"
  "  -n, --max-messages N  (--queue) stop after N messages (default: when\n"
  "                        the queue answers empty)\n"
  "      --dry-run         put nothing, delete or move nothing: count what\n"
  "                        would be put back (the queue's messages are made\n"
  "                        visible again at the end)\n"
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
  struct cmd_state st;
  int rc, status = 1;

  memset(&st, 0, sizeof(st));
  st.dry_run = o->dry_run;
  rc = kcld_cli_aws_init(&c, cfg);
  if (rc == 0)
    rc = kcld_sqs_new(c.aws, &c.loop, &sqs);
  if (rc == 0 && !o->dry_run)
    rc = kcld_kinesis_new(c.aws, &c.loop, &kin);
  if (rc == 0) {
    o->loop = &c.loop;
    o->sqs = sqs;
    o->kinesis = kin;
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
    {"dry-run", no_argument, NULL, 'D'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
  };
  struct kcld_redrive_opts o;
  struct kcld_config *cfg;
  const char *path = NULL, *stream = NULL, *queue = NULL, *dir = NULL;
  char *end;
  int ch, status, to_handler = 0;

  memset(&o, 0, sizeof(o));
  optind = 0;
  opterr = 0;
  while ((ch = getopt_long(argc, argv, ":q:s:c:n:d:Hh", opts, NULL)) !=
         -1) {
    switch (ch) {
    case 'd':
      dir = optarg;
      break;
    case 'H':
      to_handler = 1;
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
  if (queue && dir)
    return usage_error("--queue or --dir, not both", NULL);
  if (!queue && !dir && !path)
    return usage_error("give --queue or --dir (or --config, whose "
                       "on_failure.sqs or on_failure.dir is the default)",
                       NULL);
  cfg = kcld_cli_config(path, stream);
  if (!cfg)
    return 1;
  if (!queue && !dir) {
    if (cfg->on_failure.sqs && *cfg->on_failure.sqs)
      queue = cfg->on_failure.sqs;
    else if (cfg->on_failure.dir && *cfg->on_failure.dir)
      dir = cfg->on_failure.dir;
  }
  if (!queue && !dir) {
    kcld_config_free(cfg);
    return usage_error("no --queue or --dir, and the configuration has no "
                       "on_failure.sqs or on_failure.dir", NULL);
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
