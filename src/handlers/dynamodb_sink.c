/* dynamodb_sink.c — the DynamoDB sink: items built on the pool
 * (handlers/job.h), written on the loop with BatchWriteItem or conditional
 * PutItem.
 *
 * A failure's class follows what it says about the record: DynamoDB
 * refusing an item for its content (ValidationException, Serialization-
 * Exception) and an item that cannot be built (not JSON, a key field
 * missing, over 400 KB) are record failures; throttling, 5xx, transport
 * errors and timeouts of the sink's own calls, a missing table, refused
 * credentials, a cancelled call are infrastructure failures. */
#include "handlers/dynamodb_sink.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws/dynamodb.h"
#include "base/clock.h"
#include "err.h"
#include "handlers/ddb_item.h"
#include "handlers/job.h"
#include "log.h"

#define PUT_WINDOW 16

struct sink {
  struct kcld_handler base;
  uv_loop_t *loop;
  struct kcld_dynamodb *db;
  char *table;
  int conditional;
  struct kcld_template *pk, *sk;
  struct kcld_dynamodb_sink_keys keys;
  struct kcld_dynamodb_sink_stats stats;
  struct kcld_jobs building;
  int killed;
};

struct put_ctx {
  struct job *job;
  size_t index;
};

struct job {
  struct kcld_job base;
  struct sink *s;
  const struct kcld_record *const *records;
  size_t count;
  char *shard_id;
  int64_t now_ms;
  /* Built on the pool. */
  json_t **items;          /* n_ok items */
  char **keys;             /* identity of each item's key */
  size_t *key_lens;
  size_t n_ok;             /* records before the first refused one */
  int bad_rc;              /* why record n_ok was refused; 0 = none */
  char bad_msg[512];
  /* Writes, on the loop. */
  size_t next;             /* next item to send */
  size_t chunk_start, chunk_end;
  size_t in_flight;
  struct put_ctx *puts;
  json_t *seen;            /* conditional: keys met in this batch */
  int write_failed;
  size_t first_failed;     /* lowest item index whose write failed */
  enum kcld_handler_failure_class write_class;
  char write_type[96];
  char write_msg[512];
};

/* ======== Items ======== */

static int set(json_t *item, const char *name, json_t *av)
{
  return kcld_dynamodb_item_set(item, name, av) == 0 ? 0 : KCLD_ENOMEM;
}

static int set_s(json_t *item, const char *name, const char *s, size_t n)
{
  json_t *v = json_stringn(s, n), *av = v ? json_object() : NULL;
  if (!av || json_object_set_new(av, "S", v) != 0) {
    json_decref(av);
    return KCLD_ENOMEM;
  }
  return set(item, name, av);
}

/* Renders one key template into *out (*len bytes). */
static int render_key(const char *name, const struct kcld_template *t,
                      const struct kcld_template_input *in, size_t max,
                      char **out, size_t *len, char *err, size_t errlen)
{
  char why[256];
  int rc = kcld_template_render(t, in, out, len, why, sizeof(why));

  if (rc == KCLD_ENOTFOUND) {
    snprintf(err, errlen, "key %s: %s", name, why);
    return rc;
  }
  if (rc != 0)
    return rc;
  if (*len == 0 || *len > max) {
    snprintf(err, errlen, "key %s: \"%s\" renders %zu bytes (DynamoDB "
             "needs 1 to %zu)", name, kcld_template_text(t), *len, max);
    free(*out);
    *out = NULL;
    return KCLD_ENOTFOUND;
  }
  return 0;
}

int kcld_dynamodb_sink_item(const struct kcld_dynamodb_sink_keys *keys,
                            const char *shard_id,
                            const struct kcld_record *rec, int64_t now_ms,
                            json_t **item, char *err, size_t errlen)
{
  struct kcld_template_input in = {.rec = rec, .shard_id = shard_id};
  json_t *payload = NULL, *it = NULL;
  char why[256], dummy[1], *pk = NULL, *sk = NULL;
  size_t size, pk_len = 0, sk_len = 0;
  int rc;

  if (!err || errlen == 0) {
    err = dummy;
    errlen = sizeof(dummy);
  }
  err[0] = '\0';
  *item = NULL;
  rc = kcld_ddb_item_from_json((const char *)rec->data, rec->data_len,
                               &payload, why, sizeof(why));
  if (rc != 0) {
    snprintf(err, errlen, "payload is not JSON DynamoDB can hold: %s", why);
    goto done;
  }
  it = kcld_dynamodb_as_m(payload);
  if (it) {
    json_incref(it);
  } else {
    rc = KCLD_ENOMEM;
    it = json_object();
    if (!it || set(it, "data", json_incref(payload)) != 0)
      goto done;
  }
  /* Both keys are rendered before the item (which may share the payload's
   * map) changes, so ${data.pk} reads the payload's own pk. */
  in.field = kcld_ddb_item_field;
  in.field_arg = payload;
  rc = render_key(KCLD_DYNAMODB_SINK_PK, keys->pk, &in,
                  KCLD_DYNAMODB_SINK_PK_MAX, &pk, &pk_len, err, errlen);
  if (rc == 0 && keys->sk)
    rc = render_key(KCLD_DYNAMODB_SINK_SK, keys->sk, &in,
                    KCLD_DYNAMODB_SINK_SK_MAX, &sk, &sk_len, err, errlen);
  if (rc != 0)
    goto done;
  rc = KCLD_ENOMEM;
  if (set_s(it, KCLD_DYNAMODB_SINK_PK, pk, pk_len) != 0 ||
      (sk && set_s(it, KCLD_DYNAMODB_SINK_SK, sk, sk_len) != 0))
    goto done;
  if (set(it, "sequenceNumber", kcld_dynamodb_av_s(rec->sequence_number)) ||
      set(it, "subSequenceNumber",
          kcld_dynamodb_av_n_i64((int64_t)rec->sub_sequence_number)) ||
      set(it, "shardId", kcld_dynamodb_av_s(shard_id ? shard_id : "")) ||
      set(it, "processedAt", kcld_dynamodb_av_n_i64(now_ms)))
    goto done;
  if (rec->arrival_ms != KCLD_RECORD_NO_ARRIVAL &&
      set(it, "approximateArrivalTimestamp",
          kcld_dynamodb_av_n_i64(rec->arrival_ms)))
    goto done;
  if (keys->ttl_ms > 0 &&
      set(it, "ttl", kcld_dynamodb_av_n_i64((now_ms + keys->ttl_ms) / 1000)))
    goto done;
  size = kcld_ddb_item_size(it);
  if (size > KCLD_DDB_ITEM_MAX_BYTES) {
    snprintf(err, errlen, "item of %zu bytes is over DynamoDB's %d-byte "
             "limit", size, KCLD_DDB_ITEM_MAX_BYTES);
    rc = KCLD_EINVAL;
    goto done;
  }
  rc = 0;

done:
  if (rc == KCLD_ENOMEM)
    snprintf(err, errlen, "out of memory");
  json_decref(payload);
  free(pk);
  free(sk);
  if (rc != 0) {
    json_decref(it);
    return rc;
  }
  *item = it;
  return 0;
}

/* The identity of an item's key: pk, a 0x00 byte, sk. */
static int key_identity(const json_t *item, char **out, size_t *len)
{
  json_t *pk = json_object_get(kcld_dynamodb_attr(item,
                                                  KCLD_DYNAMODB_SINK_PK), "S");
  json_t *sk = json_object_get(kcld_dynamodb_attr(item,
                                                  KCLD_DYNAMODB_SINK_SK), "S");
  size_t pl = json_string_length(pk), sl = sk ? json_string_length(sk) : 0;
  char *k = malloc(pl + sl + 2);

  if (!k)
    return KCLD_ENOMEM;
  memcpy(k, json_string_value(pk), pl);
  k[pl] = '\0';
  if (sk)
    memcpy(k + pl + 1, json_string_value(sk), sl);
  k[pl + 1 + sl] = '\0';
  *out = k;
  *len = pl + 1 + sl;
  return 0;
}

static void build_cb(struct kcld_job *base)
{
  struct job *j = (struct job *)base;
  const struct kcld_dynamodb_sink_keys *keys = &j->s->keys;

  j->items = calloc(j->count, sizeof(*j->items));
  j->keys = calloc(j->count, sizeof(*j->keys));
  j->key_lens = calloc(j->count, sizeof(*j->key_lens));
  if (!j->items || !j->keys || !j->key_lens) {
    j->bad_rc = KCLD_ENOMEM;
    snprintf(j->bad_msg, sizeof(j->bad_msg), "out of memory");
    return;
  }
  for (size_t i = 0; i < j->count; i++) {
    int rc = kcld_dynamodb_sink_item(keys, j->shard_id, j->records[i],
                                     j->now_ms, &j->items[i], j->bad_msg,
                                     sizeof(j->bad_msg));
    if (rc == 0)
      rc = key_identity(j->items[i], &j->keys[i], &j->key_lens[i]);
    if (rc != 0) {
      j->bad_rc = rc;
      return;
    }
    j->n_ok = i + 1;
  }
}

/* ======== Answer ======== */

static void job_clean_up(struct kcld_job *base)
{
  struct job *j = (struct job *)base;
  for (size_t i = 0; j->items && i < j->count; i++)
    json_decref(j->items[i]);
  for (size_t i = 0; j->keys && i < j->count; i++)
    free(j->keys[i]);
  free(j->items);
  free(j->keys);
  free(j->key_lens);
  free(j->puts);
  json_decref(j->seen);
  free(j->shard_id);
}

static const char *refusal_type(int rc)
{
  switch (rc) {
  case KCLD_EPARSE:
    return "InvalidJSON";
  case KCLD_ENOTFOUND:
    return "MissingKeyField";
  case KCLD_EINVAL:
    return "ItemTooLarge";
  default:
    return "HandlerError";
  }
}

static void finish(struct job *j)
{
  struct kcld_handler_result res = {.status = KCLD_HANDLER_OK};
  struct sink *s = j->s;

  if (j->write_failed && j->first_failed < j->n_ok) {
    s->stats.write_failures++;
    res.status = j->first_failed > 0 ? KCLD_HANDLER_PARTIAL
                                     : KCLD_HANDLER_FAILED;
    res.failure_class = j->write_class;
    res.first_failed = j->first_failed;
    res.error_type = j->write_type[0] ? j->write_type : "DynamoDBWriteError";
    res.error_message = j->write_msg;
    kcld_log(KCLD_LOG_WARN, "dynamodb sink: write failed", "shard",
             j->shard_id, "sequence_number",
             j->records[j->first_failed]->sequence_number, "error_type",
             res.error_type, "error", j->write_msg, NULL);
  } else if (j->bad_rc != 0) {
    if (j->bad_rc != KCLD_ENOMEM)
      s->stats.record_failures++;
    res.status = KCLD_HANDLER_PARTIAL;
    res.failure_class = j->bad_rc == KCLD_ENOMEM ? KCLD_HANDLER_INFRA
                                                 : KCLD_HANDLER_RECORD;
    res.first_failed = j->n_ok;
    res.error_type = refusal_type(j->bad_rc);
    res.error_message = j->bad_msg;
    kcld_log(KCLD_LOG_WARN, "dynamodb sink: record refused", "shard",
             j->shard_id, "sequence_number",
             j->records[j->n_ok]->sequence_number, "error_type",
             res.error_type, "error", j->bad_msg, NULL);
  }
  kcld_job_answer(&j->base, &res);
}

/* Records that item `index` (and so the batch from there) failed; the
 * lowest index wins, with its class. */
static void fail_at(struct job *j, size_t index,
                    enum kcld_handler_failure_class cls, const char *type,
                    const char *msg)
{
  if (j->write_failed && j->first_failed <= index)
    return;
  j->write_failed = 1;
  j->first_failed = index;
  j->write_class = cls;
  snprintf(j->write_type, sizeof(j->write_type), "%s", type ? type : "");
  snprintf(j->write_msg, sizeof(j->write_msg), "%s", msg ? msg : "");
}

enum kcld_handler_failure_class
kcld_dynamodb_sink_class(const struct kcld_svc_status *st)
{
  return kcld_dynamodb_fault(st) == KCLD_DYNAMODB_INVALID
           ? KCLD_HANDLER_RECORD : KCLD_HANDLER_INFRA;
}

static void fail_status(struct job *j, size_t index,
                        const struct kcld_svc_status *st)
{
  char msg[512];
  snprintf(msg, sizeof(msg), "%s%s%s", kcld_strerror(st->err),
           st->message && st->message[0] ? ": " : "",
           st->message ? st->message : "");
  fail_at(j, index, kcld_dynamodb_sink_class(st),
          j->s->killed ? "HandlerCanceled"
          : st->type && st->type[0] ? st->type : NULL, msg);
}

/* A write that could not even be sent (out of memory, the client closed
 * by kill): nothing to do with the record. */
static void fail_call(struct job *j, size_t index, int rc)
{
  fail_at(j, index, KCLD_HANDLER_INFRA,
          j->s->killed ? "HandlerCanceled" : NULL, kcld_strerror(rc));
}

/* ======== batch: BatchWriteItem ======== */

static void send_chunk(struct job *j);

/* A chunk DynamoDB refused as a whole (ValidationException): one of its
 * items is bad, but the answer does not say which.  The items go again one
 * PutItem at a time, in order, and the first one refused is the record
 * that failed. */
static void isolate_next(struct job *j);

static void on_isolated(const struct kcld_dynamodb_result *r, void *arg)
{
  struct job *j = arg;

  if (r->st.err != 0) {
    fail_status(j, j->next, &r->st);
    finish(j);
    return;
  }
  j->s->stats.items_written++;
  j->next++;
  isolate_next(j);
}

static void isolate_next(struct job *j)
{
  struct sink *s = j->s;
  int rc;

  if (j->next >= j->chunk_end) {
    send_chunk(j);
    return;
  }
  s->stats.calls++;
  rc = s->killed ? KCLD_ECANCELED
                 : kcld_dynamodb_put_item(s->db, s->table, j->items[j->next],
                                          NULL, on_isolated, j);
  if (rc != 0) {
    fail_call(j, j->next, rc);
    finish(j);
  }
}

static void on_batch(const struct kcld_dynamodb_batch_result *r, void *arg)
{
  struct job *j = arg;
  struct sink *s = j->s;

  s->stats.items_written += r->written;
  if (r->st.err == 0) {
    j->next = j->chunk_end;
    send_chunk(j);
    return;
  }
  if (kcld_dynamodb_fault(&r->st) == KCLD_DYNAMODB_INVALID &&
      r->written == 0) {
    kcld_log(KCLD_LOG_WARN, "dynamodb sink: BatchWriteItem refused; "
             "writing the chunk item by item to find the bad record",
             "shard", j->shard_id, "error", r->st.message, NULL);
    j->next = j->chunk_start;
    isolate_next(j);
    return;
  }
  /* The first item of this chunk still among the unprocessed ones (or the
   * chunk's first when the call failed as a whole). */
  size_t ff = j->chunk_start;
  json_t *left = json_object_get(r->unprocessed, s->table);
  if (json_array_size(left) > 0 && json_array_size(left) < j->chunk_end -
                                                           j->chunk_start) {
    for (ff = j->chunk_start; ff < j->chunk_end; ff++) {
      size_t k;
      json_t *req;
      int found = 0;
      json_array_foreach(left, k, req) {
        json_t *it = json_object_get(json_object_get(req, "PutRequest"),
                                     "Item");
        char *id = NULL;
        size_t len = 0;
        if (it && key_identity(it, &id, &len) == 0) {
          found = len == j->key_lens[ff] &&
                  memcmp(id, j->keys[ff], len) == 0;
          free(id);
        }
        if (found)
          break;
      }
      if (found)
        break;
    }
    if (ff == j->chunk_end)
      ff = j->chunk_start;
  }
  fail_status(j, ff, &r->st);
  finish(j);
}

static void send_chunk(struct job *j)
{
  struct sink *s = j->s;
  json_t *keys = NULL, *list = NULL, *req = NULL;
  int rc = KCLD_ENOMEM;

  if (j->next >= j->n_ok) {
    finish(j);
    return;
  }
  j->chunk_start = j->next;
  keys = json_object();
  list = json_array();
  if (!keys || !list)
    goto fail;
  for (j->chunk_end = j->chunk_start;
       j->chunk_end < j->n_ok &&
       j->chunk_end - j->chunk_start < KCLD_DYNAMODB_BATCH_MAX;
       j->chunk_end++) {
    size_t i = j->chunk_end;
    if (json_object_getn(keys, j->keys[i], j->key_lens[i]))
      break;  /* the same key again: the next call, so the last one wins */
    json_t *put = json_pack("{s{sO}}", "PutRequest", "Item", j->items[i]);
    if (!put || json_array_append_new(list, put) != 0 ||
        json_object_setn_new(keys, j->keys[i], j->key_lens[i],
                             json_true()) != 0)
      goto fail;
  }
  req = json_object();
  if (!req || json_object_set(req, s->table, list) != 0)
    goto fail;
  s->stats.calls++;
  rc = s->killed ? KCLD_ECANCELED
                 : kcld_dynamodb_batch_write(s->db, req, NULL, on_batch, j);
  if (rc != 0)
    goto fail;
  json_decref(keys);
  json_decref(list);
  json_decref(req);
  return;

fail:
  json_decref(keys);
  json_decref(list);
  json_decref(req);
  fail_call(j, j->chunk_start, rc);
  finish(j);
}

/* ======== conditional: PutItem ======== */

static void launch_puts(struct job *j);

static void on_put(const struct kcld_dynamodb_result *r, void *arg)
{
  struct put_ctx *c = arg;
  struct job *j = c->job;
  struct sink *s = j->s;

  j->in_flight--;
  if (r->st.err == 0)
    s->stats.items_written++;
  else if (kcld_dynamodb_fault(&r->st) == KCLD_DYNAMODB_CONDITION)
    s->stats.duplicates++;
  else
    fail_status(j, c->index, &r->st);
  launch_puts(j);
}

static void launch_puts(struct job *j)
{
  static const struct kcld_dynamodb_cond cond = {
    .condition = "attribute_not_exists(" KCLD_DYNAMODB_SINK_PK ")",
  };
  struct sink *s = j->s;

  while (!j->write_failed && j->in_flight < PUT_WINDOW && j->next < j->n_ok) {
    size_t i = j->next++;
    if (json_object_getn(j->seen, j->keys[i], j->key_lens[i])) {
      s->stats.duplicates++;
      continue;
    }
    if (json_object_setn_new(j->seen, j->keys[i], j->key_lens[i],
                             json_true()) != 0) {
      fail_call(j, i, KCLD_ENOMEM);
      break;
    }
    j->puts[i].job = j;
    j->puts[i].index = i;
    s->stats.calls++;
    int rc = s->killed ? KCLD_ECANCELED
                       : kcld_dynamodb_put_item(s->db, s->table, j->items[i],
                                                &cond, on_put, &j->puts[i]);
    if (rc != 0) {
      fail_call(j, i, rc);
      break;
    }
    j->in_flight++;
  }
  if (j->in_flight == 0)
    finish(j);
}

/* ======== The handler ======== */

/* Ends the batch as FAILED as a whole (nothing was written), an
 * infrastructure failure. */
static void fail_whole(struct job *j, const char *type, const char *msg)
{
  kcld_log(KCLD_LOG_WARN, "dynamodb sink: batch failed", "shard",
           j->shard_id, "error_type", type, "error", msg, NULL);
  kcld_job_fail(&j->base, KCLD_HANDLER_INFRA, type, msg);
}

static void after_build(struct kcld_job *base)
{
  struct job *j = (struct job *)base;

  if (j->s->killed) {
    fail_whole(j, "HandlerCanceled", "the handler was killed");
    return;
  }
  if (j->bad_rc == KCLD_ENOMEM) {
    fail_whole(j, "HandlerError", "out of memory");
    return;
  }
  if (j->s->conditional) {
    j->seen = json_object();
    j->puts = calloc(j->n_ok ? j->n_ok : 1, sizeof(*j->puts));
    if (!j->seen || !j->puts) {
      fail_whole(j, "HandlerError", "out of memory");
      return;
    }
    launch_puts(j);
  } else {
    send_chunk(j);
  }
}

static int process(struct kcld_handler *base,
                   const struct kcld_handler_batch *b,
                   kcld_handler_done_cb done, void *arg)
{
  struct sink *s = (struct sink *)base;
  struct job *j;

  if (s->killed)
    return KCLD_ECANCELED;
  j = kcld_job_new(sizeof(*j), b, done, arg);
  if (!j)
    return KCLD_ENOMEM;
  j->base.clean_up = job_clean_up;
  j->s = s;
  j->records = b->records;
  j->count = b->count;
  j->shard_id = strdup(b->shard_id ? b->shard_id : "");
  j->now_ms = kcld_clock_wall_ms();
  if (!j->shard_id) {
    kcld_job_free(&j->base);
    return KCLD_ENOMEM;
  }
  if (kcld_job_queue(s->loop, &s->building, &j->base, build_cb,
                     after_build) != 0) {
    kcld_job_free(&j->base);
    return KCLD_EIO;
  }
  return 0;
}

/* Batches still on the pool are cancelled, and closing the client answers
 * every call in flight at once (KCLD_ECANCELED): each batch ends, as an
 * infrastructure failure. */
static void kill_handler(struct kcld_handler *base)
{
  struct sink *s = (struct sink *)base;
  struct kcld_dynamodb *db = s->db;
  s->killed = 1;
  kcld_job_cancel_all(&s->building);
  s->db = NULL;
  if (db)
    kcld_dynamodb_close(db);
}

static void handler_close(struct kcld_handler *base)
{
  struct sink *s = (struct sink *)base;
  if (s->db)
    kcld_dynamodb_close(s->db);
  kcld_template_free(s->pk);
  kcld_template_free(s->sk);
  free(s->table);
  free(s);
}

static const struct kcld_handler_ops s_ops = {
  .name = "dynamodb",
  .process = process,
  .kill = kill_handler,
  .close = handler_close,
};

void kcld_dynamodb_sink_stats(const struct kcld_handler *h,
                              struct kcld_dynamodb_sink_stats *out)
{
  *out = ((const struct sink *)h)->stats;
}

int kcld_dynamodb_sink_new(const struct kcld_handler_env *env,
                           struct kcld_handler **out)
{
  const struct kcld_config_handler_cfg *hc = &env->cfg->handler;
  struct sink *s = calloc(1, sizeof(*s));
  char err[512];
  int rc;

  *out = NULL;
  if (!s)
    return KCLD_ENOMEM;
  s->base.ops = &s_ops;
  s->loop = env->loop;
  s->conditional = hc->write == KCLD_CONFIG_WRITE_CONDITIONAL;
  s->keys.ttl_ms = hc->ttl_ms;
  rc = KCLD_ECONFIG;
  if (!hc->table || !*hc->table) {
    kcld_log(KCLD_LOG_ERROR, "dynamodb sink: handler.table is not set",
             NULL);
    goto fail;
  }
  if (!env->aws) {
    kcld_log(KCLD_LOG_ERROR, "dynamodb sink: no AWS client", NULL);
    goto fail;
  }
  rc = kcld_template_compile("handler.key.pk", hc->key.pk ? hc->key.pk : "",
                             &s->pk, err, sizeof(err));
  if (rc == 0 && !kcld_template_text(s->pk)[0]) {
    snprintf(err, sizeof(err), "handler.key.pk: must not be empty");
    rc = KCLD_EINVAL;
  }
  if (rc == 0 && hc->key.sk && *hc->key.sk)
    rc = kcld_template_compile("handler.key.sk", hc->key.sk, &s->sk, err,
                               sizeof(err));
  if (rc != 0) {
    kcld_log(KCLD_LOG_ERROR, "dynamodb sink: bad key template", "error", err,
             NULL);
    rc = rc == KCLD_ENOMEM ? rc : KCLD_ECONFIG;
    goto fail;
  }
  s->keys.pk = s->pk;
  s->keys.sk = s->sk;
  s->table = strdup(hc->table);
  if (!s->table) {
    rc = KCLD_ENOMEM;
    goto fail;
  }
  rc = kcld_dynamodb_new(env->aws, env->loop, &s->db);
  if (rc != 0)
    goto fail;
  kcld_dynamodb_set_uncapped(s->db); /* renewals never wait for writes */
  *out = &s->base;
  return 0;

fail:
  handler_close(&s->base);
  return rc;
}
