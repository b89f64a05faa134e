/* chaos_verify.c — the chaos run's checkpoint verification: the dead
 * letters read as they are written, and every record up to each
 * checkpoint seen checked handled (the lambda group's outputs, the sink's
 * table) or dead-lettered.  Included by chaos.c, whose state it reads (see
 * its file comment). */

static void ch_violation(struct chaos *c, const char *fmt, ...)
{
  va_list ap;
  if (c->violation[0])
    return; /* the first one tells */
  va_start(ap, fmt);
  vsnprintf(c->violation, sizeof(c->violation), fmt, ap);
  va_end(ap);
}

static json_t *ch_produced_at(struct chaos *c, const char *shard,
                              const char *seq)
{
  char key[192];
  snprintf(key, sizeof(key), "%s/%s", shard, seq);
  json_t *idx = json_object_get(c->by_key, key);
  return idx ? json_array_get(c->produced, (size_t)json_integer_value(idx))
             : NULL;
}

static int ch_is_dead(struct chaos *c, const char *app, const char *shard,
                      const char *seq)
{
  char key[256];
  snprintf(key, sizeof(key), "%s/%s/%s", app, shard, seq);
  return json_object_get(c->dead, key) != NULL;
}

/* One dead-letter line of `app`: its records join c->dead, counted by
 * cause; a good record there is a violation. */
static void ch_dead_line(struct chaos *c, const char *app, const char *line)
{
  json_error_t err;
  json_t *m = json_loads(line, 0, &err), *r;
  size_t i;
  if (!m)
    fail_msg("a dead-letter line of %s that is not JSON: %.200s", app, line);
  const char *shard = json_string_value(json_object_get(
    json_object_get(m, "KinesisBatchInfo"), "shardId"));
  const char *cond = json_string_value(json_object_get(
    json_object_get(m, "requestContext"), "condition"));
  const char *type = json_string_value(json_object_get(m, "errorType"));
  char cause[160];
  snprintf(cause, sizeof(cause), "%s %s/%s", app, cond ? cond : "-",
           type ? type : "-");
  json_array_foreach(json_object_get(m, "records"), i, r) {
    const char *seq = json_string_value(json_object_get(r, "sequenceNumber"));
    char key[256];
    json_t *p = shard && seq ? ch_produced_at(c, shard, seq) : NULL;
    if (!p)
      fail_msg("%s dead-lettered a record that was never produced: %.300s",
               app, line);
    snprintf(key, sizeof(key), "%s/%s/%s", app, shard, seq);
    if (json_object_get(c->dead, key))
      continue; /* dead-lettered again after a replay */
    json_object_set_new(c->dead, key, json_string(cause));
    json_t *n = json_object_get(c->dead_causes, cause);
    json_object_set_new(c->dead_causes, cause,
                        json_integer(n ? json_integer_value(n) + 1 : 1));
    if (!json_is_true(json_object_get(p, "poison"))) {
      c->good_dead++;
      ch_violation(c, "%s dead-lettered the good record %s/%s (%s): %.300s",
                   app, shard, seq, cause, line);
    }
  }
  json_decref(m);
}

/* Reads the whole lines appended to the dead-letter directory since the
 * last call ("<app>.<shard>.<day>.jsonl", fsync'ed before the checkpoint
 * moves past them). */
static void ch_dead_catch_up(struct chaos *c)
{
  char dir[128];
  DIR *d;
  struct dirent *de;
  snprintf(dir, sizeof(dir), "%s/dead-letter", c->dir);
  if (!(d = opendir(dir)))
    return;
  while ((de = readdir(d)) != NULL) {
    char path[512], app[64];
    const char *dot = strchr(de->d_name, '.');
    size_t len = strlen(de->d_name);
    if (!dot || len < 6 || strcmp(de->d_name + len - 6, ".jsonl") != 0)
      continue;
    snprintf(app, sizeof(app), "%.*s", (int)(dot - de->d_name), de->d_name);
    snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
    json_t *off = json_object_get(c->dl_off, de->d_name);
    long pos = off ? (long)json_integer_value(off) : 0;
    FILE *fp = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    if (!fp)
      continue;
    if (fseek(fp, pos, SEEK_SET) == 0)
      while ((n = getline(&line, &cap, fp)) > 0 && line[n - 1] == '\n') {
        pos += n;
        ch_dead_line(c, app, line);
      }
    free(line);
    fclose(fp);
    json_object_set_new(c->dl_off, de->d_name, json_integer(pos));
  }
  closedir(d);
}

/* Which of the sink's keys (shard, seqs[i]#0) are in its table: found[i]. */
static void ch_sink_lookup(struct chaos *c, const char *shard,
                           const char **seqs, int *found, size_t n)
{
  json_t *index = json_object();
  for (size_t i = 0; i < n; i++) {
    char sk[160];
    snprintf(sk, sizeof(sk), "%s#0", seqs[i]);
    json_object_set_new(index, sk, json_integer((json_int_t)i));
    found[i] = 0;
  }
  for (size_t from = 0; from < n; from += 100) {
    json_t *keys = json_array();
    for (size_t i = from; i < n && i < from + 100; i++) {
      char sk[160];
      snprintf(sk, sizeof(sk), "%s#0", seqs[i]);
      json_array_append_new(keys, json_pack("{s:{s:s},s:{s:s}}", "pk", "S",
                                            shard, "sk", "S", sk));
    }
    json_t *req = json_pack("{s:{s:{s:o,s:b}}}", "RequestItems",
                            CH_SINK_TABLE, "Keys", keys, "ConsistentRead", 1);
    while (req) {
      json_t *r = ch_call(c, KCLD_AWS_DYNAMODB, "BatchGetItem", req), *it;
      size_t k;
      json_array_foreach(json_object_get(json_object_get(r, "Responses"),
                                         CH_SINK_TABLE), k, it) {
        json_t *idx = json_object_get(index, ch_attr_s(it, "sk"));
        if (idx)
          found[json_integer_value(idx)] = 1;
      }
      json_t *un = json_object_get(r, "UnprocessedKeys");
      req = un && json_object_size(un) > 0
              ? json_pack("{s:O}", "RequestItems", un) : NULL;
      json_decref(r);
    }
    c->sink_lookups++;
  }
  json_decref(index);
}

/* A checkpoint `ckpt` of `shard` in `app`'s lease table was seen: every
 * record up to it must be handled (in the lambda group's outputs, or the
 * sink's table) or dead-lettered, poison records dead-lettered.  Checks
 * the records no earlier checkpoint vouched for. */
static void ch_verify(struct chaos *c, const char *app, const char *shard,
                      const char *ckpt)
{
  int sink = strcmp(app, CH_SINK_APP) == 0, end;
  char vkey[192];
  json_t *list = json_object_get(c->shard_seqs, shard);
  size_t from, to, n = 0;
  if (!ckpt)
    return;
  end = strcmp(ckpt, "SHARD_END") == 0;
  if (!end && !ch_is_seq(ckpt))
    return;
  snprintf(vkey, sizeof(vkey), "%s/%s", app, shard);
  from = (size_t)json_integer_value(json_object_get(c->verified, vkey));
  for (to = from; to < json_array_size(list); to++)
    if (!end && kcld_seq_compare(json_string_value(json_array_get(list, to)),
                                 ckpt) > 0)
      break;
  if (to <= from)
    return;
  const char **good = calloc(to - from, sizeof(*good));
  int *found = calloc(to - from, sizeof(*found));
  assert_true(good && found);
  for (size_t i = from; i < to; i++) {
    const char *seq = json_string_value(json_array_get(list, i));
    json_t *p = ch_produced_at(c, shard, seq);
    int dead = ch_is_dead(c, app, shard, seq);
    char key[192];
    snprintf(key, sizeof(key), "%s/%s", shard, seq);
    if (json_is_true(json_object_get(p, "poison"))) {
      if (!dead)
        ch_violation(c, "%s: checkpoint %s of %s is past the poison record "
                     "%s, which is not dead-lettered", app, ckpt, shard, seq);
    } else if (sink) {
      good[n++] = seq;
    } else if (!dead && !json_object_get(c->seen, key)) {
      ch_violation(c, "%s: checkpoint %s of %s is past the record %s, which "
                   "no worker has handled", app, ckpt, shard, seq);
    }
  }
  if (n > 0) {
    ch_sink_lookup(c, shard, good, found, n);
    for (size_t i = 0; i < n; i++)
      if (!found[i] && !ch_is_dead(c, app, shard, good[i]))
        ch_violation(c, "%s: checkpoint %s of %s is past the record %s, "
                     "which is not in %s", app, ckpt, shard, good[i],
                     CH_SINK_TABLE);
  }
  free(good);
  free(found);
  json_object_set_new(c->verified, vkey, json_integer((json_int_t)to));
}

/* The sink group's lease table: checkpoints never move back or leave
 * SHARD_END, and each one seen is verified. */
static void ch_sample_sink(struct chaos *c, json_t *items)
{
  json_t *item;
  size_t i;
  json_array_foreach(items, i, item) {
    const char *shard = ch_attr_s(item, "leaseKey");
    const char *ckpt = ch_attr_s(item, "checkpoint");
    const char *pckpt = json_string_value(json_object_get(c->prev_sink,
                                                          shard ? shard
                                                                : ""));
    if (!shard)
      continue;
    if (ch_is_seq(ckpt) && ch_is_seq(pckpt) &&
        kcld_seq_compare(ckpt, pckpt) < 0)
      ch_violation(c, "%s: checkpoint of %s moved back from %s to %s",
                   CH_SINK_APP, shard, pckpt, ckpt);
    if (pckpt && strcmp(pckpt, "SHARD_END") == 0 &&
        (!ckpt || strcmp(ckpt, "SHARD_END") != 0))
      ch_violation(c, "%s: checkpoint of %s moved from SHARD_END to %s",
                   CH_SINK_APP, shard, ckpt ? ckpt : "(none)");
    ch_verify(c, CH_SINK_APP, shard, ckpt);
    if (ckpt)
      json_object_set_new(c->prev_sink, shard, json_string(ckpt));
  }
}

