/* chaos_final.c — the end of a chaos run: whether everything produced
 * has been handled (the drain's test), the logs shown on a failure, the
 * fan-out variant's emulator and its check, and the checks made after
 * every worker stopped (checkpoints at each shard's end, payloads, order,
 * the duplicate bound, the sink's table).  Included by chaos.c, whose
 * state it reads (see its file comment). */

/* Every produced record handled by the lambda group or dead-lettered by
 * it, and the sink group's checkpoints verified to each shard's end. */
static int ch_all_handled(struct chaos *c, long *missing_out,
                          const char **first_missing)
{
  json_t *e;
  const char *shard;
  size_t i;
  long missing = 0;
  *first_missing = NULL;
  json_array_foreach(c->produced, i, e) {
    char key[192];
    const char *sh = json_string_value(json_object_get(e, "shard"));
    const char *seq = json_string_value(json_object_get(e, "seq"));
    snprintf(key, sizeof(key), "%s/%s", sh, seq);
    if (!json_object_get(c->seen, key) && !ch_is_dead(c, CH_APP, sh, seq)) {
      if (!missing)
        *first_missing = json_string_value(json_object_get(e, "data"));
      missing++;
    }
  }
  json_object_foreach(c->shard_seqs, shard, e) {
    char vkey[192];
    snprintf(vkey, sizeof(vkey), "%s/%s", CH_SINK_APP, shard);
    size_t done = (size_t)json_integer_value(json_object_get(c->verified,
                                                             vkey));
    if (done < json_array_size(e)) {
      if (!missing)
        *first_missing = "(a record the sink group's checkpoints have not "
                         "passed)";
      missing += (long)(json_array_size(e) - done);
    }
  }
  *missing_out = missing;
  return missing == 0;
}

/* The sequence number of the last record put into `shard`, or NULL. */
static const char *shard_last_seq(struct chaos *c, const char *shard)
{
  json_t *list = json_object_get(c->shard_seqs, shard);
  return json_string_value(json_array_get(list, json_array_size(list) - 1));
}

/* The sink group's end: the split parent at SHARD_END, every other shard
 * checkpointed at its last record; every good record in the table with
 * its payload.  Returns the number of good records in the table. */
static long ch_check_sink(struct chaos *c)
{
  json_t *items = ch_scan(c, CH_SINK_APP), *item, *e;
  json_t *last_key = NULL, *found = json_object();
  size_t i;
  json_array_foreach(items, i, item) {
    const char *shard = ch_attr_s(item, "leaseKey");
    const char *ckpt = ch_attr_s(item, "checkpoint");
    const char *last = shard_last_seq(c, shard);
    const char *want = c->parent[0] && strcmp(shard, c->parent) == 0
                         ? "SHARD_END" : last;
    if (want && (!ckpt || strcmp(ckpt, want) != 0))
      fail_msg("seed %u: %s ends at checkpoint %s of %s, not %s", c->o.seed,
               CH_SINK_APP, ckpt ? ckpt : "(none)", shard, want);
  }
  json_decref(items);
  do {
    json_t *req = json_pack("{s:s,s:b}", "TableName", CH_SINK_TABLE,
                            "ConsistentRead", 1);
    if (last_key)
      json_object_set_new(req, "ExclusiveStartKey", last_key);
    json_t *r = ch_call(c, KCLD_AWS_DYNAMODB, "Scan", req);
    json_array_foreach(json_object_get(r, "Items"), i, item) {
      char seq[160], key[192];
      const char *shard = ch_attr_s(item, "pk"), *sk = ch_attr_s(item, "sk");
      const char *k = ch_attr_s(item, "k"), *sum = ch_attr_s(item, "c");
      const char *n = json_string_value(json_object_get(
        json_object_get(item, "n"), "N"));
      snprintf(seq, sizeof(seq), "%.*s", (int)strcspn(sk ? sk : "", "#"),
               sk ? sk : "");
      json_t *p = shard ? ch_produced_at(c, shard, seq) : NULL;
      char data[96];
      if (!p || !k || !n || !sum)
        fail_msg("%s holds an item that was never produced: %s/%s",
                 CH_SINK_TABLE, shard ? shard : "-", sk ? sk : "-");
      ch_payload(data, sizeof(data), k, strtol(n, NULL, 10), 0);
      if (!ch_sum_ok(k, strtol(n, NULL, 10), sum) ||
          strcmp(data, json_string_value(json_object_get(p, "data"))) != 0)
        fail_msg("%s item %s/%s holds k=%s n=%s c=%s, produced '%s'",
                 CH_SINK_TABLE, shard, sk, k, n, sum,
                 json_string_value(json_object_get(p, "data")));
      snprintf(key, sizeof(key), "%s/%s", shard, seq);
      json_object_set_new(found, key, json_true());
    }
    last_key = json_incref(json_object_get(r, "LastEvaluatedKey"));
    json_decref(r);
  } while (last_key);
  json_array_foreach(c->produced, i, e) {
    char key[192];
    const char *sh = json_string_value(json_object_get(e, "shard"));
    const char *seq = json_string_value(json_object_get(e, "seq"));
    snprintf(key, sizeof(key), "%s/%s", sh, seq);
    if (!json_is_true(json_object_get(e, "poison")) &&
        !json_object_get(found, key))
      fail_msg("seed %u: the good record %s is not in %s", c->o.seed, key,
               CH_SINK_TABLE);
    if (json_is_true(json_object_get(e, "poison")) &&
        !ch_is_dead(c, CH_SINK_APP, sh, seq))
      fail_msg("seed %u: the poison record %s is not dead-lettered by %s",
               c->o.seed, key, CH_SINK_APP);
  }
  long n = (long)json_object_size(found);
  json_decref(found);
  return n;
}

/* Prints " CONDITION/ERRORTYPE N," per cause of `app`'s dead letters. */
static void ch_print_causes(struct chaos *c, const char *app)
{
  const char *cause;
  json_t *cnt;
  size_t len = strlen(app);
  json_object_foreach(c->dead_causes, cause, cnt)
    if (strncmp(cause, app, len) == 0 && cause[len] == ' ')
      printf(" %s %lld", cause + len + 1,
             (long long)json_integer_value(cnt));
}

/* How often `needle` occurs in the file `log`. */
static long ch_count_lines(const char *log, const char *needle)
{
  size_t len = 0;
  char *text = kcld_test_slurp(log, &len), *p = text;
  long n = 0;
  while (p && (p = strstr(p, needle)) != NULL) {
    n++;
    p++;
  }
  free(text);
  return n;
}

/* "RECORD SKIPPED" lines in a log (a record given up with no copy kept). */
static long ch_skipped(const char *log)
{
  return ch_count_lines(log, "RECORD SKIPPED");
}

/* Payloads, checksums and duplicates across all outputs. */
static long ch_check_payloads(struct chaos *c, long *handled)
{
  json_t *count = json_object(), *e;
  size_t i;
  long dups = 0;
  *handled = 0;
  for (int w = 0; w < CH_WORKERS; w++)
    json_array_foreach(c->w[w].out.recs, i, e) {
      char key[192];
      const char *data = json_string_value(json_object_get(e, "data"));
      snprintf(key, sizeof(key), "%s/%s",
               json_string_value(json_object_get(e, "shard")),
               json_string_value(json_object_get(e, "seq")));
      json_t *idx = json_object_get(c->by_key, key);
      if (!idx)
        fail_msg("%s handled %s, which was never produced", c->w[w].id, key);
      json_t *p = json_array_get(c->produced,
                                 (size_t)json_integer_value(idx));
      if (!ch_payload_ok(data) ||
          strcmp(data, json_string_value(json_object_get(p, "data"))) != 0)
        fail_msg("%s handled %s with payload '%s', produced '%s'", c->w[w].id,
                 key, data, json_string_value(json_object_get(p, "data")));
      if (json_object_get(count, key))
        dups++;
      json_object_set_new(count, key, json_true());
      (*handled)++;
    }
  json_decref(count);
  return dups;
}

/* Order within each worker's output; returns the number of runs that
 * started over (replays).  See the file comment. */
static long ch_check_order(struct chaos *c)
{
  long replays = 0;
  for (int w = 0; w < CH_WORKERS; w++) {
    json_t *last = json_object();      /* shard -> last seq (this run) */
    json_t *parent_last = json_object(); /* pk -> position of the last
                                             parent record */
    json_t *child_first = json_object(); /* pk -> first child position */
    json_t *e;
    size_t i;
    json_array_foreach(c->w[w].out.recs, i, e) {
      const char *shard = json_string_value(json_object_get(e, "shard"));
      const char *seq = json_string_value(json_object_get(e, "seq"));
      const char *pk = json_string_value(json_object_get(e, "pk"));
      const char *prev = json_string_value(json_object_get(last, shard));
      if (prev && kcld_seq_compare(prev, seq) >= 0)
        replays++; /* a new run of this shard starts here */
      json_object_set_new(last, shard, json_string(seq));
      if (c->parent[0] && strcmp(shard, c->parent) == 0)
        json_object_set_new(parent_last, pk, json_integer((json_int_t)i));
      else if (c->parent[0]) {
        /* A child: its shard id sorts after the original shards. */
        char orig[64];
        snprintf(orig, sizeof(orig), "shardId-%012d", c->o.shards - 1);
        if (strcmp(shard, orig) > 0 && !json_object_get(child_first, pk))
          json_object_set_new(child_first, pk, json_integer((json_int_t)i));
      }
    }
    const char *pk;
    json_t *pos;
    json_object_foreach(parent_last, pk, pos) {
      json_t *cf = json_object_get(child_first, pk);
      if (cf && json_integer_value(cf) < json_integer_value(pos))
        fail_msg("%s: key %s has a child-shard record (line %lld) before "
                 "the parent %s's last record of that key (line %lld)",
                 c->w[w].id, pk, (long long)json_integer_value(cf) + 1,
                 c->parent, (long long)json_integer_value(pos) + 1);
    }
    json_decref(last);
    json_decref(parent_last);
    json_decref(child_first);
  }
  return replays;
}

/* The duplicate bound: for each failure, the largest backlog sampled from
 * just before it until the leases settled (its end + failover + 2 take
 * intervals), plus one batch per shard in flight. */
static long ch_dup_bound(struct chaos *c, int shards_now)
{
  long bound = 0;
  for (int i = 0; i < c->nev; i++) {
    if (c->ev[i].kind == EV_NOSTART || c->ev[i].kind == EV_HUP)
      continue; /* the child exits between batches, a reload keeps every
                   lease and batch: nothing replays */
    unsigned long long from = c->ev[i].start > 500 ? c->ev[i].start - 500
                                                   : 0;
    unsigned long long to = c->ev[i].end + CH_FAILOVER_MS + 2 * CH_TAKE_MS;
    long worst = 0;
    for (size_t s = 0; s < c->nsamples; s++)
      if (c->samples[s].t >= from && c->samples[s].t <= to &&
          c->samples[s].backlog > worst)
        worst = c->samples[s].backlog;
    bound += worst + (long)shards_now * CH_BATCH;
  }
  return bound;
}

static void ch_dump_logs(struct chaos *c)
{
  for (int w = 0; w < CH_WORKERS; w++)
    ch_log_tail(c->w[w].log);
  for (int w = 0; w < CH_SINK_WORKERS; w++)
    ch_log_tail(c->sw[w].log);
}

/* The fan-out variant: the kinesis_efo emulator, its Kinesis calls sent
 * through fk, its subscriptions ended every 10 s. */
static void ch_fanout_start(struct chaos *c)
{
  char efo[256];
  json_t *r;
  assert_int_equal(kcld_emu_start(&c->fe, "kinesis_efo"), 0);
  snprintf(efo, sizeof(efo), "{\"upstream\":\"%s\",\"end_after_ms\":10000}",
           kcld_emu_url(&c->fk, "fault"));
  r = kcld_fault_post(kcld_emu_url(&c->fe, "kinesis_efo"), "/__efo/script",
                      efo);
  assert_non_null(r);
  json_decref(r);
}

/* The fan-out worker registered its consumer, read records through
 * subscriptions, and never called GetRecords. */
static void ch_fanout_check(struct chaos *c)
{
  const struct ch_worker *fw = &c->w[CH_WORKERS - 1];
  json_t *st = kcld_fault_post(kcld_emu_url(&c->fe, "kinesis_efo"),
                               "/__efo/stats", "{}");
  json_t *calls = json_object_get(st, "calls");
  json_int_t subs = json_integer_value(json_object_get(calls,
                                                       "SubscribeToShard"));
  printf("chaos: fan-out worker %s: %zu records in its output, %lld "
         "SubscribeToShard calls, %lld GetRecords\n", fw->id,
         json_array_size(fw->out.recs), (long long)subs,
         (long long)json_integer_value(json_object_get(calls, "GetRecords")));
  assert_true(ch_count_lines(fw->log, "stream consumer ACTIVE") >= 1);
  assert_true(subs > 0);
  assert_null(json_object_get(calls, "GetRecords"));
  assert_true(json_array_size(fw->out.recs) > 0);
  json_decref(st);
}

/* The checks at the end, after every worker stopped; prints the counts
 * the run measured. */
static void ch_final(struct chaos *c, unsigned long long drained,
                     unsigned long long term_ms)
{
  /* Final checkpoints. */
  json_t *items = ch_scan(c, CH_APP), *item;
  size_t i;
  int open_shards = 0;
  json_array_foreach(items, i, item) {
    const char *shard = ch_attr_s(item, "leaseKey");
    const char *ckpt = ch_attr_s(item, "checkpoint");
    const char *last = shard_last_seq(c, shard);
    if (c->parent[0] && strcmp(shard, c->parent) == 0) {
      if (!ckpt || strcmp(ckpt, "SHARD_END") != 0)
        fail_msg("seed %u: the split parent %s ends at checkpoint %s, not "
                 "SHARD_END", c->o.seed, shard, ckpt ? ckpt : "(none)");
      continue;
    }
    open_shards++;
    if (!last)
      continue; /* a child that got no record */
    const char *hi = ch_max_all(c, shard);
    if (ch_is_seq(ckpt) && ch_is_dead(c, CH_APP, shard, ckpt))
      hi = ckpt; /* a poison record, dead-lettered: ch_verify vouched */
    if (!ch_is_seq(ckpt) || !hi || kcld_seq_compare(ckpt, hi) > 0)
      fail_msg("seed %u: final checkpoint %s of %s is past the highest "
               "handled %s", c->o.seed, ckpt ? ckpt : "(none)", shard,
               hi ? hi : "(none)");
    if (strcmp(ckpt, last) != 0)
      fail_msg("seed %u: final checkpoint of %s is %s, its last record %s",
               c->o.seed, shard, ckpt, last);
  }
  assert_int_equal(open_shards, c->o.shards + 1);
  json_decref(items);

  long handled = 0;
  long dups = ch_check_payloads(c, &handled);
  long replays = ch_check_order(c);
  long bound = ch_dup_bound(c, c->o.shards + 1);
  long max_backlog = 0;
  for (size_t s = 0; s < c->nsamples; s++)
    if (c->samples[s].backlog > max_backlog)
      max_backlog = c->samples[s].backlog;
  int restarts = 0;
  for (int w = 0; w < CH_WORKERS; w++)
    restarts += c->w[w].restarts;
  long sink_written = ch_check_sink(c);
  long skipped = 0, poison = 0, nostarts = 0, sink_ms = 0;
  for (int w = 0; w < CH_WORKERS; w++) {
    char refused[300];
    size_t len = 0;
    char *t;
    skipped += ch_skipped(c->w[w].log);
    snprintf(refused, sizeof(refused), "%s.refused", c->w[w].flag);
    if ((t = kcld_test_slurp(refused, &len)) != NULL)
      for (char *p = t; (p = strchr(p, '\n')) != NULL; p++)
        c->nostart_refusals++;
    free(t);
  }
  for (int w = 0; w < CH_SINK_WORKERS; w++)
    skipped += ch_skipped(c->sw[w].log);
  long hups_ok = 0, hups_bad = 0, reloaded = 0, refused = 0;
  for (int w = 0; w < CH_WORKERS; w++) {
    hups_ok += c->w[w].hups_ok;
    hups_bad += c->w[w].hups_bad;
    reloaded += ch_count_lines(c->w[w].log,
                               "\"msg\":\"configuration reloaded\"");
    refused += ch_count_lines(c->w[w].log,
                              "\"msg\":\"configuration reload refused");
  }
  printf("chaos: SIGHUP %ld times with a valid file (%ld \"configuration "
         "reloaded\" lines), %ld with an invalid one (%ld refused)\n",
         hups_ok, reloaded, hups_bad, refused);
  assert_true(reloaded >= hups_ok);
  assert_true(refused >= hups_bad);
  if (c->o.fanout)
    ch_fanout_check(c);
  for (int e = 0; e < c->nev; e++)
    nostarts += c->ev[e].kind == EV_NOSTART;
  for (int e = 0; e < c->nsev; e++)
    sink_ms += (long)(c->sev[e].end - c->sev[e].start);
  json_t *pe;
  json_array_foreach(c->produced, i, pe)
    poison += json_is_true(json_object_get(pe, "poison"));
  printf("measured: seed %u: %zu records produced (%ld poison, marked by "
         "the producer); lambda group (%s, %d workers): %zu handled, dead-"
         "lettered", c->o.seed, json_array_size(c->produced), poison,
         CH_APP, CH_WORKERS, json_object_size(c->seen));
  ch_print_causes(c, CH_APP);
  printf("; sink group (%s, %d workers): %ld written to %s, dead-lettered",
         CH_SINK_APP, CH_SINK_WORKERS, sink_written, CH_SINK_TABLE);
  ch_print_causes(c, CH_SINK_APP);
  printf("; good records dead-lettered %ld, skipped %ld; %d handler-nostart "
         "windows (%ld refused starts), %d sink fault windows (%.1f s, %ld "
         "writes refused), %ld sink lookups\n", c->good_dead, skipped,
         (int)nostarts, c->nostart_refusals, c->nsev,
         (double)sink_ms / 1e3, c->sink_faulted, c->sink_lookups);
  printf("measured: seed %u: %ld faults injected (%d restarts) + 1 "
         "SplitShard in %u s; %zu records produced, %ld handled, %ld "
         "duplicates (bound %ld: backlog around each failure + one batch "
         "per shard), %ld replayed runs; %ld lease samples, %ld checkpoint "
         "moves checked against their owners' outputs, max backlog %ld; "
         "drained in %llu ms, SIGTERM of all in %llu ms\n",
         c->o.seed, c->faults_injected, restarts, c->o.seconds,
         json_array_size(c->produced), handled, dups, bound, replays,
         c->samples_checked, c->ckpt_moves_checked, max_backlog, drained,
         term_ms);
  fflush(stdout);
  assert_true(c->ckpt_moves_checked > 0);
  /* Every record handled or dead-lettered by each group (checked above
   * and in ch_check_sink); now: only poison records dead-lettered, each
   * for a record failure, and none skipped. */
  assert_int_equal(c->good_dead, 0);
  assert_int_equal(skipped, 0);
  assert_int_equal((long)json_object_size(c->seen) + poison,
                   (long)json_array_size(c->produced));
  assert_int_equal(sink_written + poison, (long)json_array_size(c->produced));
  const char *cause;
  json_t *cnt;
  json_object_foreach(c->dead_causes, cause, cnt)
    if (!strstr(cause, " RetryAttemptsExhausted/"))
      fail_msg("seed %u: records dead-lettered for %s, not for running out "
               "of retries on a record failure", c->o.seed, cause);
  /* The faults of this run happened. */
  assert_true(nostarts == 0 || c->nostart_refusals > 0);
  assert_true(c->nsev == 0 || c->sink_faulted > 0);
  if (dups >= bound)
    fail_msg("seed %u: %ld duplicates, bound %ld", c->o.seed, dups, bound);
}
