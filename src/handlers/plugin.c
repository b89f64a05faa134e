/* plugin.c — handler.type: plugin.
 *
 * The shared object is opened once at start-up (RTLD_NOW, so an unresolved
 * symbol fails here and not at the first batch) and closed at close.  Each
 * batch becomes one pool job (handlers/job.h): the work converts the
 * records to the ABI's plain structs and calls kcld_plugin_process on a pool
 * thread; the after-work checks the result and answers on the loop thread.
 * A plugin's failure answer is a record failure; a batch the pool
 * cancelled (kill) is an infrastructure failure.  With window.tumbling the
 * batch carries its window and the plugin answers the window's state
 * through set_state (ABI 2); a version 1 plugin is refused then. */
#include "handlers/plugin.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "err.h"
#include "handlers/job.h"
#include "kcld/handler.h"
#include "log.h"

typedef int (*init_fn)(const struct kcld_plugin_kv *, size_t, void **,
                       char *, size_t);
typedef void (*process_fn)(void *, const struct kcld_plugin_batch *,
                           struct kcld_plugin_result *);
typedef void (*shutdown_fn)(void *);

struct plugin_handler {
  struct kcld_handler base;
  uv_loop_t *loop;
  void *dl;
  void *state;
  int inited;
  init_fn init;
  process_fn process;
  shutdown_fn shutdown;
  struct kcld_jobs jobs;
  int killed;
};

struct job {
  struct kcld_job base; /* base.owner: the handler */
  int nomem;
  struct kcld_plugin_result res;
  char *state;          /* set_state's copy */
  size_t state_len;
  int state_bad;        /* not a JSON object */
};

/* ======== Configuration as key/value pairs ======== */

#define MAX_KV 16

struct kvset {
  struct kcld_plugin_kv kv[MAX_KV];
  char *owned[MAX_KV];
  size_t n;
};

/* Adds key = value (copied); returns 0 or -1 when out of memory. */
static int kv_add(struct kvset *s, const char *key, const char *value)
{
  char *v = strdup(value ? value : "");
  if (!v || s->n == MAX_KV) {
    free(v);
    return -1;
  }
  s->owned[s->n] = v;
  s->kv[s->n].key = key;
  s->kv[s->n].value = v;
  s->n++;
  return 0;
}

static void kv_free(struct kvset *s)
{
  for (size_t i = 0; i < s->n; i++)
    free(s->owned[i]);
  s->n = 0;
}

static int kv_build(const struct kcld_config_handler_cfg *hc, struct kvset *s)
{
  static const char *const types[] = {"multilang", "lambda", "dynamodb",
                                      "plugin", "stdout"};
  char num[64], cmd[4096];
  size_t off = 0;
  int rc = 0;

  cmd[0] = '\0';
  for (size_t i = 0; i < hc->command.len; i++) {
    int n = snprintf(cmd + off, sizeof(cmd) - off, "%s%s", i ? " " : "",
                     hc->command.items[i]);
    if (n < 0 || (size_t)n >= sizeof(cmd) - off)
      break;
    off += (size_t)n;
  }
  rc |= kv_add(s, "type", types[hc->type]);
  rc |= kv_add(s, "path", hc->path);
  rc |= kv_add(s, "command", cmd);
  rc |= kv_add(s, "timeout",
               kcld_config_format_duration(hc->timeout_ms, num, sizeof(num)));
  snprintf(num, sizeof(num), "%d", hc->concurrency);
  rc |= kv_add(s, "concurrency", num);
  rc |= kv_add(s, "decode",
               hc->decode == KCLD_CONFIG_DECODE_UTF8 ? "utf8" : "base64");
  rc |= kv_add(s, "table", hc->table);
  rc |= kv_add(s, "key.pk", hc->key.pk);
  rc |= kv_add(s, "key.sk", hc->key.sk);
  rc |= kv_add(s, "write", hc->write == KCLD_CONFIG_WRITE_CONDITIONAL
                             ? "conditional" : "batch");
  rc |= kv_add(s, "ttl", hc->ttl_ms ? kcld_config_format_duration(
                                        hc->ttl_ms, num, sizeof(num))
                                    : "");
  return rc ? -1 : 0;
}

/* ======== Batches on the pool ======== */

/* The result's set_state (ABI 2), on the plugin's pool thread. */
static int set_state(struct kcld_plugin_result *result, const char *json,
                     size_t len)
{
  struct job *j = result ? result->kcld_private : NULL;
  char *copy;

  if (!j || (!json && len))
    return -1;
  if (!(copy = malloc(len + 1)))
    return -1;
  memcpy(copy, json, len);
  copy[len] = '\0';
  free(j->state);
  j->state = copy;
  j->state_len = len;
  return 0;
}

/* Checks the state set_state gave: a JSON object (on the pool). */
static void check_state(struct job *j)
{
  json_error_t jerr;
  json_t *v;

  if (!j->state)
    return;
  v = json_loadb(j->state, j->state_len, 0, &jerr);
  j->state_bad = !json_is_object(v);
  json_decref(v);
}

static void work_cb(struct kcld_job *base)
{
  struct job *j = (struct job *)base;
  const struct plugin_handler *h = base->owner;
  const struct kcld_handler_batch *b = &base->batch;
  struct kcld_plugin_record *recs;
  struct kcld_plugin_batch pb;
  struct kcld_plugin_window pw;

  recs = calloc(b->count ? b->count : 1, sizeof(*recs));
  if (!recs) {
    j->nomem = 1;
    return;
  }
  for (size_t i = 0; i < b->count; i++) {
    const struct kcld_record *r = b->records[i];
    recs[i].data = r->data;
    recs[i].data_len = r->data_len;
    recs[i].partition_key = r->partition_key;
    recs[i].partition_key_len = r->partition_key_len;
    recs[i].sequence_number = r->sequence_number;
    recs[i].sub_sequence_number = r->sub_sequence_number;
    recs[i].arrival_ms = r->arrival_ms;
    recs[i].explicit_hash_key = r->explicit_hash_key;
  }
  pb.shard_id = b->shard_id;
  pb.records = recs;
  pb.count = b->count;
  pb.millis_behind_latest = b->millis_behind_latest;
  pb.attempt = b->attempt;
  pb.window = NULL;
  if (b->window) {
    pw.start_ms = b->window->start_ms;
    pw.end_ms = b->window->end_ms;
    pw.state = b->window->state;
    pw.state_len = b->window->state_len;
    pw.is_final = b->window->final;
    pw.is_terminated_early = b->window->terminated_early;
    pb.window = &pw;
  }
  memset(&j->res, 0, sizeof(j->res));
  j->res.set_state = set_state;
  j->res.kcld_private = j;
  h->process(h->state, &pb, &j->res);
  if (b->window)
    check_state(j);
  j->res.error_type[sizeof(j->res.error_type) - 1] = '\0';
  j->res.error_message[sizeof(j->res.error_message) - 1] = '\0';
  free(recs);
}

static void after_cb(struct kcld_job *base)
{
  struct job *j = (struct job *)base;
  struct kcld_handler_result res = {.status = KCLD_HANDLER_OK};
  const char *type = j->res.error_type[0] ? j->res.error_type : NULL;
  const char *msg = j->res.error_message[0] ? j->res.error_message : NULL;
  char *state = j->state; /* freed after the answer, which frees j */
  int needs_state = base->batch.window &&
                    (j->res.status == KCLD_PLUGIN_OK ||
                     j->res.status == KCLD_PLUGIN_PARTIAL);

  if (j->nomem) {
    res.status = KCLD_HANDLER_FAILED;
    res.failure_class = KCLD_HANDLER_INFRA;
    res.error_type = "HandlerError";
    res.error_message = "out of memory";
  } else if (needs_state && (!state || j->state_bad)) {
    res.status = KCLD_HANDLER_FAILED;
    res.error_type = state ? "InvalidState" : "MissingState";
    res.error_message = state ? "the plugin's state is not a JSON object"
                              : "with window.tumbling the plugin must set "
                                "a state (set_state)";
  } else if (j->res.status == KCLD_PLUGIN_OK) {
    res.status = KCLD_HANDLER_OK;
  } else if (j->res.status == KCLD_PLUGIN_FAILED) {
    res.status = KCLD_HANDLER_FAILED;
    res.error_type = type ? type : "HandlerError";
    res.error_message = msg;
  } else if (j->res.status == KCLD_PLUGIN_PARTIAL &&
             j->res.first_failed < base->batch.count) {
    res.status = KCLD_HANDLER_PARTIAL;
    res.first_failed = j->res.first_failed;
    res.error_type = type ? type : "HandlerError";
    res.error_message = msg;
  } else {
    kcld_log(KCLD_LOG_ERROR, "plugin handler: invalid result, batch failed",
             "shard", base->batch.shard_id,
             KCLD_LOG_UINT("first_failed", j->res.first_failed), NULL);
    res.status = KCLD_HANDLER_FAILED;
    res.error_type = "HandlerInvalidResult";
    res.error_message = "the plugin answered an invalid status or index";
  }
  if (res.status != KCLD_HANDLER_FAILED && base->batch.window) {
    res.state = state;
    res.state_len = j->state_len;
  }
  kcld_job_answer(base, &res);
  free(state);
}

static int process(struct kcld_handler *base,
                   const struct kcld_handler_batch *b,
                   kcld_handler_done_cb done, void *arg)
{
  struct plugin_handler *h = (struct plugin_handler *)base;

  if (h->killed)
    return KCLD_ECANCELED;
  return kcld_job_submit(h->loop, &h->jobs, sizeof(struct job), b, done, arg,
                         h, work_cb, after_cb);
}

/* ======== Life cycle ======== */

/* A plugin call running on a pool thread cannot be interrupted: only the
 * batches still waiting for a thread are cancelled. */
static void kill_handler(struct kcld_handler *base)
{
  struct plugin_handler *h = (struct plugin_handler *)base;
  h->killed = 1;
  kcld_job_cancel_all(&h->jobs);
}

static void handler_close(struct kcld_handler *base)
{
  struct plugin_handler *h = (struct plugin_handler *)base;
  if (h->inited && h->shutdown)
    h->shutdown(h->state);
  if (h->dl)
    dlclose(h->dl);
  free(h);
}

static const struct kcld_handler_ops s_ops = {
  .name = "plugin",
  .process = process,
  .kill = kill_handler,
  .close = handler_close,
};

/* Looks up `name` in the object; logs and returns NULL when missing. */
static void *need(struct plugin_handler *h, const char *path,
                  const char *name)
{
  void *p;
  dlerror();
  p = dlsym(h->dl, name);
  if (!p)
    kcld_log(KCLD_LOG_ERROR,
             "plugin handler: the shared object lacks a required symbol "
             "(not built against include/kcld/handler.h?)",
             "path", path, "symbol", name, NULL);
  return p;
}

int kcld_handler_plugin_new(const struct kcld_handler_env *env,
                            struct kcld_handler **out)
{
  const char *path = env->cfg->handler.path;
  struct plugin_handler *h = calloc(1, sizeof(*h));
  struct kvset kv = {.n = 0};
  const uint32_t *version;
  char err[512] = "";
  int rc = KCLD_ECONFIG;

  if (!h)
    return KCLD_ENOMEM;
  h->base.ops = &s_ops;
  h->loop = env->loop;
  if (!path || !*path) {
    kcld_log(KCLD_LOG_ERROR, "plugin handler: handler.path is not set", NULL);
    goto done;
  }
  h->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h->dl) {
    const char *why = dlerror();
    kcld_log(KCLD_LOG_ERROR, "plugin handler: cannot load the shared object",
             "path", path, "error", why ? why : "unknown", NULL);
    goto done;
  }
  version = need(h, path, "kcld_handler_abi_version");
  if (!version)
    goto done;
  if (*version == 1 && env->cfg->window.tumbling_ms > 0) {
    kcld_log(KCLD_LOG_ERROR,
             "plugin handler: window.tumbling needs a plugin built for ABI "
             "2 or later (the window and set_state); rebuild it against this "
             "kcld's include/kcld/handler.h", "path", path,
             "plugin_abi", "1", NULL);
    goto done;
  }
  if (*version != KCLD_HANDLER_ABI_VERSION && *version != 1) {
    char want[16], got[16];
    snprintf(want, sizeof(want), "%u", (unsigned)KCLD_HANDLER_ABI_VERSION);
    snprintf(got, sizeof(got), "%u", (unsigned)*version);
    kcld_log(KCLD_LOG_ERROR,
             "plugin handler: ABI version mismatch; rebuild the plugin "
             "against this kcld's include/kcld/handler.h",
             "path", path, "plugin_abi", got, "kcld_abi", want, NULL);
    goto done;
  }
  /* POSIX allows converting dlsym's void * to a function pointer. */
  h->init = (init_fn)need(h, path, "kcld_plugin_init");
  h->process = (process_fn)need(h, path, "kcld_plugin_process");
  h->shutdown = (shutdown_fn)need(h, path, "kcld_plugin_shutdown");
  if (!h->init || !h->process || !h->shutdown)
    goto done;
  if (kv_build(&env->cfg->handler, &kv) != 0) {
    rc = KCLD_ENOMEM;
    goto done;
  }
  if (h->init(kv.kv, kv.n, &h->state, err, sizeof(err)) != 0) {
    err[sizeof(err) - 1] = '\0';
    kcld_log(KCLD_LOG_ERROR, "plugin handler: the plugin's init failed",
             "path", path, "error", err[0] ? err : "no reason given", NULL);
    goto done;
  }
  h->inited = 1;
  kcld_log(KCLD_LOG_INFO, "plugin handler loaded", "path", path, NULL);
  *out = &h->base;
  rc = 0;

done:
  kv_free(&kv);
  if (rc != 0)
    handler_close(&h->base);
  return rc;
}
