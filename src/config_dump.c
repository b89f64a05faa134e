/* config_dump.c — configuration as text: the effective configuration
 * (kcld_config_dump, secrets redacted) and the reference texts generated
 * from the key table (conf/kcld.yaml, docs/configuration.md). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_keys.h"
#include "config_values.h"

/* Writes s as a YAML double-quoted string; with `dollar`, $ is doubled so
 * that ${...} expansion gives s back. */
static void put_quoted(FILE *f, const char *s, int dollar)
{
  fputc('"', f);
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\')
      fprintf(f, "\\%c", ch);
    else if (ch < 0x20 || ch == 0x7f)
      fprintf(f, "\\x%02x", ch);
    else if (ch == '$' && dollar)
      fputs("$$", f);
    else
      fputc(ch, f);
  }
  fputc('"', f);
}

static void put_overrides(FILE *f, const struct kcld_config *top,
                          const struct kcld_config *own);

/* The value of key k in cfg, as YAML. */
static void put_value(FILE *f, const struct kcld_config_key *k,
                      const struct kcld_config *cfg)
{
  const void *v = kcld_config_key_cfield(cfg, k);
  char buf[64];
  switch (k->type) {
  case K_STR: {
    const char *s = *(char *const *)v;
    if ((k->flags & F_SECRET) && *s)
      s = "[redacted]";
    put_quoted(f, s, 1);
    break;
  }
  case K_TMPL:
    put_quoted(f, *(char *const *)v, 0);
    break;
  case K_INT:
    fprintf(f, "%d", *(const int *)v);
    break;
  case K_BOOL:
    fputs(*(const bool *)v ? "true" : "false", f);
    break;
  case K_DUR:
    if ((k->flags & F_EMPTY) && *(const int64_t *)v == 0)
      fputs("\"\"", f);
    else
      fputs(kcld_config_format_duration(*(const int64_t *)v, buf,
                                        sizeof(buf)),
            f);
    break;
  case K_SIZE:
    fputs(kcld_config_format_size(*(const int64_t *)v, buf, sizeof(buf)), f);
    break;
  case K_ENUM:
    fputs(k->values[*(const int *)v], f);
    break;
  case K_LIST:
  case K_FILTER: {
    const struct kcld_config_list *l = v;
    fputc('[', f);
    for (size_t i = 0; i < l->len; i++) {
      if (i)
        fputs(", ", f);
      put_quoted(f, l->items[i], k->type == K_LIST); /* patterns: no ${} */
    }
    fputc(']', f);
    break;
  }
  case K_TIME:
    if (*(const int64_t *)v < 0) {
      fputs("\"\"", f);
    } else {
      kcld_config_value_format_time(*(const int64_t *)v, buf, sizeof(buf));
      fputs(buf, f);
    }
    break;
  case K_STREAMS: {
    const struct kcld_config_streams *l = v;
    fputc('[', f);
    for (size_t i = 0; i < l->len; i++) {
      const struct kcld_config_stream *s = &l->v[i];
      fprintf(f, "%s{%s: ", i ? ", " : "",
              strncmp(s->stream, "arn:", 4) == 0 ? "arn" : "name");
      put_quoted(f, s->stream, 1);
      fprintf(f, ", starting_position: %s",
              kcld_config_key_enum_name("starting_position",
                                        (int)s->starting_position));
      if (s->starting_timestamp_ms >= 0) {
        kcld_config_value_format_time(s->starting_timestamp_ms, buf,
                                      sizeof(buf));
        fprintf(f, ", starting_timestamp: %s", buf);
      }
      if (s->cfg)
        put_overrides(f, cfg, s->cfg);
      fputc('}', f);
    }
    fputc(']', f);
    break;
  }
  }
}

/* The keys of section `sec` (its first len bytes) in cfg, as a YAML flow
 * mapping (subsections nested). */
static void put_flow(FILE *f, const struct kcld_config *cfg, const char *sec,
                     size_t len)
{
  const char *sep = "";
  fputc('{', f);
  for (size_t i = 0; i < kcld_config_nkeys; i++) {
    const char *name = kcld_config_keys[i].name, *leaf, *dot;
    if (strncmp(name, sec, len) != 0 || name[len] != '.')
      continue;
    leaf = name + len + 1;
    dot = strchr(leaf, '.');
    if (!dot) {
      fprintf(f, "%s%s: ", sep, leaf);
      put_value(f, &kcld_config_keys[i], cfg);
    } else if (i == 0 || strncmp(kcld_config_keys[i - 1].name, name,
                                 (size_t)(dot - name) + 1) != 0) {
      fprintf(f, "%s%.*s: ", sep, (int)(dot - leaf), leaf); /* its first */
      put_flow(f, cfg, name, (size_t)(dot - name));
    } else {
      continue;
    }
    sep = ", ";
  }
  fputc('}', f);
}

/* A streams: item's overrides: the sections (and filter) whose keys differ
 * in its own configuration from the top-level ones, whole. */
static void put_overrides(FILE *f, const struct kcld_config *top,
                          const struct kcld_config *own)
{
  const char *const *secs = kcld_config_stream_overrides;
  for (size_t j = 0; secs[j]; j++) {
    size_t len = strlen(secs[j]);
    int differs = 0, leaf = -1;
    for (size_t i = 0; i < kcld_config_nkeys; i++) {
      const struct kcld_config_key *k = &kcld_config_keys[i];
      if (strncmp(k->name, secs[j], len) != 0 ||
          (k->name[len] != '.' && k->name[len] != '\0'))
        continue;
      if (!k->name[len])
        leaf = (int)i;
      differs |= !kcld_config_value_equal(k, top, own);
    }
    if (!differs)
      continue;
    fprintf(f, ", %s: ", secs[j]);
    if (leaf >= 0)
      put_value(f, &kcld_config_keys[leaf], own);
    else
      put_flow(f, own, secs[j], len);
  }
}

/* The default of key k, as YAML. */
static void put_default(FILE *f, const struct kcld_config_key *k)
{
  if (k->flags & F_REQUIRED)
    put_quoted(f, k->example, 0);
  else if (k->type == K_STR || k->type == K_TMPL || k->type == K_TIME ||
           !*k->def)
    put_quoted(f, k->def, 0);
  else
    fputs(k->def, f);
}

static void put_range(FILE *f, const struct kcld_config_key *k, const char *sep,
                      const char *tick)
{
  char r[96];
  if (k->type == K_INT || k->type == K_DUR || k->type == K_SIZE) {
    kcld_config_value_range(k, r, sizeof(r));
    fprintf(f, "%s", r);
  } else if (k->type == K_ENUM) {
    for (size_t i = 0; k->values[i]; i++)
      fprintf(f, "%s%s%s%s", i ? sep : "", tick, k->values[i], tick);
  }
}

/* Components of the section path of key name (all but the last). */
static size_t section_parts(const char *name, const char **part,
                            size_t *plen, size_t max)
{
  size_t n = 0;
  for (const char *p = name, *dot; (dot = strchr(p, '.')) && n < max;
       p = dot + 1) {
    part[n] = p;
    plen[n] = (size_t)(dot - p);
    n++;
  }
  return n;
}

/* cfg == NULL: the reference (defaults and comments); else the dump. */
static void put_yaml(FILE *f, const struct kcld_config *cfg)
{
  const char *prev[4], *cur[4];
  size_t prevlen[4], curlen[4], nprev = 0;
  for (size_t i = 0; i < kcld_config_nkeys; i++) {
    const struct kcld_config_key *k = &kcld_config_keys[i];
    size_t ncur = section_parts(k->name, cur, curlen, 4), same = 0;
    /* A required key left empty has a stand-in (stream: streams). */
    if (cfg && (k->flags & F_REQUIRED) && k->type == K_STR &&
        !**(char *const *)kcld_config_key_cfield(cfg, k))
      continue;
    while (same < ncur && same < nprev && curlen[same] == prevlen[same] &&
           strncmp(cur[same], prev[same], curlen[same]) == 0)
      same++;
    for (size_t j = same; j < ncur; j++) {
      long start = ftell(f);
      if (j == 0)
        fputc('\n', f);
      fprintf(f, "%*s%.*s:", (int)(2 * j), "", (int)curlen[j], cur[j]);
      if (!cfg) {
        size_t full = (size_t)(cur[j] + curlen[j] - k->name);
        long w = ftell(f) - start - (j == 0);
        fprintf(f, "%*s# %s", w < 36 ? (int)(36 - w) : 1, "",
                kcld_config_key_section_doc(k->name, full));
      }
      fputc('\n', f);
    }
    memcpy(prev, cur, sizeof(cur));
    memcpy(prevlen, curlen, sizeof(curlen));
    nprev = ncur;

    long start = ftell(f);
    const char *leaf = ncur ? cur[ncur - 1] + curlen[ncur - 1] + 1 : k->name;
    fprintf(f, "%*s%s: ", (int)(2 * ncur), "", leaf);
    if (cfg) {
      put_value(f, k, cfg);
      fputc('\n', f);
      continue;
    }
    put_default(f, k);
    long w = ftell(f) - start;
    fprintf(f, "%*s# %s%s", w < 36 ? (int)(36 - w) : 1, "",
            (k->flags & F_REQUIRED) ? "required: " : "", k->doc);
    if (k->type == K_INT || k->type == K_DUR || k->type == K_SIZE ||
        k->type == K_ENUM) {
      fputs(" (", f);
      put_range(f, k, " | ", "");
      fputc(')', f);
    }
    fputc('\n', f);
  }
}

char *kcld_config_dump(const struct kcld_config *cfg)
{
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f)
    return NULL;
  fprintf(f, "# kcld: effective configuration of %s (secrets redacted)\n",
          cfg->path ? cfg->path : "(none)");
  put_yaml(f, cfg);
  if (fclose(f) != 0) {
    free(buf);
    return NULL;
  }
  return buf;
}

static const char s_yaml_head[] =
  "# kcld.yaml: every configuration key of kcld, with its default.\n"
  "#\n"
  "# Generated by `kcld config-reference yaml` from the key table in\n"
  "# src/config_keys.c (a test fails when they differ);\n"
  "# docs/configuration.md explains each key.  Check a file with\n"
  "# `kcld --check-config PATH`.\n"
  "#\n"
  "# Durations: 250ms, 10s, 5m, 1h, 7d (also 1h30m, 1.5s).  Sizes: 100B,\n"
  "# 512KiB, 8MiB, 1GiB, or decimal kB, MB, GB.  Values may use ${VAR}\n"
  "# and ${VAR:-default} from the environment; $$ is a literal $.\n"
  "# Only application and stream are required; \"\" means not set.\n"
  "\n";

static const char s_md_head[] =
  "# kcld configuration reference\n"
  "\n"
  "<!-- Generated by `kcld config-reference markdown` from the key table "
  "in\n"
  "     src/config_keys.c. Do not edit: change the table and regenerate; "
  "tests/unit/test_config.c\n"
  "     fails when this file and the table differ. -->\n"
  "\n"
  "kcld reads one YAML file: `/etc/kcld/kcld.yaml`, or the file given "
  "with\n"
  "`--config PATH`. [`conf/kcld.yaml`](../conf/kcld.yaml) lists every key "
  "with\n"
  "its default; [`conf/local.yaml`](../conf/local.yaml) points kcld at the "
  "local\n"
  "emulators. Only `application` and `stream` (or `streams`) are required. "
  "A string "
  "value of `\"\"`\n"
  "means \"not set\".\n"
  "\n"
  "Key names follow the Lambda event source mapping and the KCL where they "
  "overlap\n"
  "(`batch.size` is Lambda's BatchSize, `lease.failover_time` the KCL's\n"
  "failoverTimeMillis), so settings carry over.\n"
  "\n"
  "## Checking a file\n"
  "\n"
  "`kcld --check-config [PATH]` (or `kcld --check-config --config PATH`) "
  "reads and\n"
  "validates the file, then exits 0 and prints `kcld: PATH: configuration "
  "ok`, or\n"
  "exits 1 and prints every error (the first 20, in file order). Each "
  "error names\n"
  "the file as given, the line and column, the key, and what was "
  "expected:\n"
  "\n"
  "```\n"
  "kcld.yaml:12:9: batch.size: must be 1..10000, got 0\n"
  "kcld.yaml:3:3: batch.sise: unknown key (did you mean batch.size?)\n"
  "kcld.yaml:7:13: region: environment variable AWS_X is not set "
  "(give a default with ${AWS_X:-value})\n"
  "```\n"
  "\n"
  "Unknown keys, duplicate keys, a mapping where a value belongs, YAML "
  "syntax\n"
  "errors, values out of range and inconsistent keys are all errors; "
  "kcld does\n"
  "not start with a file that has any. So are a file larger than 1 MiB, "
  "nesting\n"
  "deeper than 64 levels (both refused before the file is read further), "
  "and a URL\n"
  "with credentials in it (`https://user:password@host`: kcld signs its "
  "requests\n"
  "with AWS credentials; the value is not shown). After 1000 errors the "
  "check\n"
  "stops.\n"
  "\n"
  "Besides the file, `--check-config` and start-up check the machine: the "
  "program\n"
  "of a `multilang` or `lambda` handler (`handler.command`'s first word, "
  "looked\n"
  "up in `PATH` when it has no `/`) must exist and be executable, a "
  "plugin\n"
  "(`handler.path`, when it has a `/`) must be a readable file, and the\n"
  "`AWS_ENDPOINT_URL*` variables must not hold credentials. These errors "
  "name the\n"
  "key's position too.\n"
  "\n"
  "`kcld --dump-config` prints the effective configuration, with derived "
  "defaults\n"
  "filled in and secrets shown as `[redacted]`.\n"
  "\n"  "## Reloading\n"
  "\n"
  "On SIGHUP (`systemctl reload kcld`) a running kcld reads and checks the "
  "file\n"
  "again, as `--check-config` does. An invalid file is logged, every error "
  "with\n"
  "its file:line:col, and changes nothing. From a valid one, the keys marked "
  "*live*\n"
  "below take effect from the next batch or the next GetRecords call; every "
  "other\n"
  "key that changed is named in one warning and keeps its running value "
  "until\n"
  "kcld restarts.\n"
  "\n"
  "## Value types\n"
  "\n"
  "| Type | Written as | Stored as |\n"
  "|---|---|---|\n"
  "| string | any scalar; `\"\"` = not set | text |\n"
  "| integer | `100`, `-1` | int |\n"
  "| boolean | `true`/`false` (also `yes`/`no`, `on`/`off`) | bool |\n"
  "| duration | `250ms`, `10s`, `5m`, `1h`, `7d`; combined `1h30m`; "
  "fractions `1.5s`; `0` | milliseconds (int64) |\n"
  "| size | `100B`, `512KiB`, `8MiB`, `1GiB` (1024-based) or `10kB`, "
  "`10MB`, `1GB` (1000-based); `0` | bytes (int64) |\n"
  "| enum | one of the listed words, exactly | enum |\n"
  "| list of strings | a YAML list `[\"python3\", \"app.py\"]`, or one "
  "string split on spaces (`python3 app.py`, as the KCL's executableName; "
  "no quoting) | argv |\n"
  "| template | text with `${field}` references to record fields, e.g. "
  "`${partitionKey}`, `${data.deviceId}`; not expanded from the "
  "environment | text |\n"
  "| time | RFC 3339 (`2024-05-01T12:00:00Z`, `2024-05-01T14:00:00+02:00`) "
  "or epoch seconds (`1714564800`) | epoch milliseconds |\n"
  "| filter patterns | a YAML list of patterns, each a mapping "
  "(`{data: {type: [buy]}}`) or Lambda's JSON as a string (a pattern, "
  "`{\"Pattern\": \"...\"}` or a whole FilterCriteria); not expanded "
  "from the environment; see [handlers.md](handlers.md#filtering-records-"
  "before-the-handler-filter) | JSON texts, compiled at load |\n"
  "| URL | `http://...` or `https://...` | text |\n"
  "| host:port | `127.0.0.1:9464`, `[::1]:9464`, `0.0.0.0:9464`; port 0 = "
  "any free port | text |\n"
  "\n"
  "## Environment variables in values\n"
  "\n"
  "Every value except a template may refer to the environment: `${VAR}` "
  "is\n"
  "replaced by the variable's value, and `${VAR:-default}` by the default "
  "when\n"
  "the variable is unset or empty. A variable that is unset and has no "
  "default is\n"
  "an error at its position. `$$` is a literal `$`. A name and a default "
  "are plain\n"
  "text: `${A:-x${B}}` is an error, not a default that refers to `B`. The "
  "expansion\n"
  "happens once, before the value is read as its type, so\n"
  "`size: ${BATCH:-100}` works.\n"
  "\n"
  "```yaml\n"
  "endpoints:\n"
  "  kinesis: \"${KCLD_KINESIS_ENDPOINT:-http://127.0.0.1:4567}\"\n"
  "credentials:\n"
  "  secret_access_key: \"${MY_SECRET}\"   # error when MY_SECRET is "
  "unset\n"
  "```\n"
  "\n"
  "## Endpoints\n"
  "\n"
  "Each service (Kinesis, DynamoDB, SQS, S3) is sent to the first of these "
  "that is set:\n"
  "\n"
  "1. `endpoints.kinesis`, `endpoints.dynamodb`, `endpoints.sqs`, "
  "`endpoints.s3`;\n"
  "2. `endpoint`: one base URL for every service (LocalStack: "
  "`http://localhost:4566`);\n"
  "3. the environment variable `AWS_ENDPOINT_URL_KINESIS`, "
  "`AWS_ENDPOINT_URL_DYNAMODB`,\n"
  "   `AWS_ENDPOINT_URL_SQS` or `AWS_ENDPOINT_URL_S3`;\n"
  "4. `AWS_ENDPOINT_URL`;\n"
  "5. otherwise the AWS endpoint of the region "
  "(`https://kinesis.REGION.amazonaws.com`).\n"
  "\n"
  "As in the AWS SDKs, `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true` makes "
  "kcld ignore\n"
  "the variables (3 and 4); the keys in the file still apply. A dead-letter "
  "queue\n"
  "URL (`on_failure.sqs`) travels in the request body; requests go to the "
  "SQS\n"
  "endpoint above, never to the URL's host.\n"
  "\n"
  "## Region and credentials\n"
  "\n"
  "`region` is used when set. When it is `\"\"`, kcld takes `AWS_REGION`, "
  "then\n"
  "`AWS_DEFAULT_REGION`, then the `region` of the profile in the shared "
  "config file,\n"
  "then the instance metadata service (IMDSv2).\n"
  "\n"
  "Credentials come from the first source that yields, in the AWS SDKs' "
  "order:\n"
  "explicit keys in this file (`credentials.access_key_id` with\n"
  "`credentials.secret_access_key`, and `credentials.session_token` for "
  "temporary\n"
  "keys); the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,\n"
  "`AWS_SESSION_TOKEN`); the shared files `~/.aws/credentials` and "
  "`~/.aws/config`\n"
  "(profile `credentials.profile`, else `AWS_PROFILE`, else `default`); "
  "container\n"
  "credentials; instance metadata. Prefer the chain to keys in a file; if "
  "you\n"
  "must, take them from the environment (`\"${MY_KEY}\"`). The secret "
  "access key\n"
  "and the session token never appear in a log line, an error message or a "
  "dump.\n"
  "\n"
  "## Derived defaults and rules between keys\n"
  "\n"
  "- `lease.table` defaults to `application` (which must then be a valid "
  "table\n"
  "  name), `lease.take_interval` to twice `lease.failover_time`, "
  "`worker_id` to\n"
  "  `hostname:pid`; `workers: 0` means one thread per CPU.\n"
  "- `starting_timestamp` is required with `starting_position: "
  "AT_TIMESTAMP`, and\n"
  "  not allowed otherwise.\n"
  "- `retry.backoff_base` must not exceed `retry.backoff_max`; "
  "`http.connect_timeout`\n"
  "  must not exceed `http.timeout`.\n"
  "- `credentials.access_key_id` and `credentials.secret_access_key` come "
  "together;\n"
  "  `credentials.session_token` needs them; `credentials.profile` cannot "
  "be\n"
  "  combined with them.\n"
  "- `handler.type: multilang` and `lambda` need `handler.command`; "
  "`dynamodb` needs\n"
  "  `handler.table` (not the lease table) and a non-empty "
  "`handler.key.pk`;\n"
  "  `plugin` needs `handler.path`.\n"
  "- Records that fail for good go to one place: `on_failure.sqs` and/or\n"
  "  `on_failure.s3` (`s3://bucket/prefix`; with both, a message too large "
  "for SQS\n"
  "  goes to S3 and the queue gets its location), else the\n"
  "  directory `on_failure.dir` (an absolute path; when empty "
  "`$STATE_DIRECTORY/dead-letter`\n"
  "  under systemd, `/var/lib/kcld/dead-letter` as root, else\n"
  "  `${XDG_STATE_HOME:-~/.local/state}/kcld/dead-letter`), unless\n"
  "  `on_failure.discard` (skip them) or `on_failure.block` (retry them "
  "for ever);\n"
  "  these exclude each other.\n"
  "- `fetch.consumer_name` and `fetch.consumer_arn` are for `fetch.mode: "
  "fanout`\n"
  "  only, and exclude each other; `fetch.consumer_name` defaults to "
  "`application`\n"
  "  (which must then be a valid consumer name: 1..128 of a-z A-Z 0-9 _ . "
  "-). See\n"
  "  [operations.md](operations.md#enhanced-fan-out) for choosing a mode.\n"
  "  With `streams`, a consumer named `fetch.consumer_name` is registered "
  "on each\n"
  "  stream, and `fetch.consumer_arn` (one stream's consumer) is refused.\n"
  "- `streams` and `stream` exclude each other. Each `streams` item has "
  "`name:` or\n"
  "  `arn:` and may have its own `starting_position` and "
  "`starting_timestamp`\n"
  "  (else the top-level ones); a stream is listed once. An item may also "
  "have\n"
  "  `handler`, `batch`, `retry`, `on_failure` and `filter`: they override "
  "the\n"
  "  top-level keys for that stream, key by key (the keys it does not set "
  "keep\n"
  "  the top-level values), and the result is checked as a configuration "
  "of that\n"
  "  one stream.\n"
  "\n"
  "## Several streams\n"
  "\n"
  "```yaml\n"
  "streams:\n"
  "  - name: orders\n"
  "    starting_position: TRIM_HORIZON\n"
  "  - arn: arn:aws:kinesis:us-east-1:123456789012:stream/clicks\n"
  "    handler: {type: lambda, command: [python3, clicks.py]}\n"
  "    batch: {size: 500}\n"
  "    on_failure: {s3: s3://clicks-dead-letter/kcld/}\n"
  "```\n"
  "\n"
  "One process consumes every listed stream through one lease table in "
  "the Java\n"
  "KCL's multi-stream format (`MultiStreamTracker`): lease keys\n"
  "`account:stream:creationEpoch:shardId` with `streamName` and `shardId`\n"
  "attributes, the account taken from the ARN that DescribeStreamSummary "
  "returns and\n"
  "the epoch from its StreamCreationTimestamp. A KCL multi-stream "
  "application's\n"
  "table is taken over at its checkpoints; the leases of all streams are "
  "balanced\n"
  "together. Leases of streams the table holds but the list does not name "
  "are\n"
  "left alone. A `stream:` configuration refuses a multi-stream table at "
  "start-up\n"
  "(and `streams:` a single-stream one). Every stream has its own "
  "handler\n"
  "instance, dispatcher and dead-letter records: its event records and "
  "dead-letter\n"
  "bodies carry its own ARN (`eventSourceARN`, "
  "`KinesisBatchInfo.streamArn`).\n"
  "A reload (SIGHUP) adds and removes streams: an added stream's ARN is "
  "resolved,\n"
  "(with `fetch.mode: fanout`, its stream consumer registered or found),\n"
  "its handler started and its leases taken; a removed stream's "
  "consumers stop,\n"
  "their checkpoints are written and their leases released, not deleted "
  "(the KCL's\n"
  "deletion strategies for former streams are not applied). For a stream "
  "that\n"
  "stays, its live keys change as the top-level ones do; the others keep "
  "their\n"
  "values until a restart.\n"
  "\n"
  "## Keys\n";

static void put_md_cell(FILE *f, const char *s)
{
  for (; *s; s++) {
    if (*s == '|')
      fputs("\\|", f);
    else
      fputc(*s, f);
  }
}

static const char *md_type(const struct kcld_config_key *k)
{
  switch (k->type) {
  case K_STR:
    switch (k->check) {
    case C_URL:
      return "URL";
    case C_S3:
      return "s3:// location";
    case C_HOSTPORT:
      return "host:port";
    case C_TABLE:
      return "table name";
    case C_STREAM:
      return "name or ARN";
    case C_REGION:
      return "region";
    case C_FILE:
      return "file path";
    case C_TOKEN:
      return (k->flags & F_SECRET) ? "string, secret" : "string";
    default:
      return "string";
    }
  case K_INT:
    return "integer";
  case K_BOOL:
    return "boolean";
  case K_DUR:
    return "duration";
  case K_SIZE:
    return "size";
  case K_ENUM:
    return "enum";
  case K_LIST:
    return "list of strings";
  case K_FILTER:
    return "filter patterns";
  case K_TMPL:
    return "template";
  case K_TIME:
    return "time";
  case K_STREAMS:
    return "list of streams";
  }
  return "string";
}

static void put_markdown(FILE *f)
{
  const char *section = NULL;
  size_t seclen = 0;
  fputs(s_md_head, f);
  for (size_t i = 0; i < kcld_config_nkeys; i++) {
    const struct kcld_config_key *k = &kcld_config_keys[i];
    const char *dot = strchr(k->name, '.');
    size_t len = dot ? (size_t)(dot - k->name) : 0;
    if (!section || len != seclen || strncmp(section, k->name, len) != 0) {
      if (len)
        fprintf(f, "\n### `%.*s`: %s\n", (int)len, k->name,
                kcld_config_key_section_doc(k->name, len));
      else
        fputs("\n### Top level\n", f);
      fputs("\n| Key | Type | Default | Range or values | Description |\n"
            "|---|---|---|---|---|\n",
            f);
      section = k->name;
      seclen = len;
    }
    fprintf(f, "| `%s` | %s | ", k->name, md_type(k));
    if (k->flags & F_REQUIRED) {
      fputs("*required*", f);
    } else {
      fputc('`', f);
      put_default(f, k);
      fputc('`', f);
    }
    fputs(" | ", f);
    put_range(f, k, " \\| ", "`");
    fputs(" | ", f);
    put_md_cell(f, k->doc);
    fputs(k->flags & F_LIVE ? "; *live* |\n" : " |\n", f);
  }
}

char *kcld_config_reference(enum kcld_config_ref format)
{
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f)
    return NULL;
  if (format == KCLD_CONFIG_REF_MARKDOWN) {
    put_markdown(f);
  } else {
    fputs(s_yaml_head, f);
    put_yaml(f, NULL);
  }
  if (fclose(f) != 0) {
    free(buf);
    return NULL;
  }
  return buf;
}
