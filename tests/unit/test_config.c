/* test_config.c — the config table and parser: every bad file gets the exact
 * "file:line:col: key: message" text; good files give the values and the
 * derived defaults; endpoints resolve in the documented order; the committed
 * reference files are what the table generates; conf/kcld.yaml yields
 * exactly the defaults; conf/local.yaml is valid; secrets never show. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "aws/call.h"
#include "config.h"
#include "err.h"
#include "../harness/harness.h"
#include "lease/coordinator.h"
#include "process/filter.h"

#define H "application: app\nstream: s\n"

struct bad_case {
  const char *name;
  const char *yaml;
  const char *expect;       /* the whole error text */
  const char *env;          /* "NAME=value" set during the case, or NULL */
  const char *hidden;       /* text that must not appear (a secret) */
};

static const struct bad_case s_bad[] = {
  /* Integers. */
  {"int below range", H "batch:\n  size: 0\n",
   "kcld.yaml:4:9: batch.size: must be 1..10000, got 0\n", NULL, NULL},
  {"int not a number", H "batch:\n  size: ten\n",
   "kcld.yaml:4:9: batch.size: must be an integer, got \"ten\"\n", NULL,
   NULL},
  {"int above range", H "batch:\n  parallelization_factor: 11\n",
   "kcld.yaml:4:27: batch.parallelization_factor: must be 1..10, got 11\n",
   NULL, NULL},
  {"int -1 floor", H "retry:\n  max_retry_attempts: -2\n",
   "kcld.yaml:4:23: retry.max_retry_attempts: must be -1..10000, got -2\n",
   NULL, NULL},
  {"workers negative", H "workers: -1\n",
   "kcld.yaml:3:10: workers: must be 0..1024, got -1\n", NULL, NULL},
  {"int empty value", H "batch:\n  size:\n",
   "kcld.yaml:4:8: batch.size: must be an integer, got an empty value\n",
   NULL, NULL},
  {"int from env out of range", H "batch:\n  size: ${KCLD_T_SIZE}\n",
   "kcld.yaml:4:9: batch.size: must be 1..10000, got 0\n", "KCLD_T_SIZE=0",
   NULL},
  /* Booleans. */
  {"bool", H "retry:\n  bisect_on_error: maybe\n",
   "kcld.yaml:4:20: retry.bisect_on_error: must be true or false, got "
   "\"maybe\"\n",
   NULL, NULL},
  /* Durations. */
  {"duration without unit", H "batch:\n  window: 10\n",
   "kcld.yaml:4:11: batch.window: must be a duration such as 250ms, 10s, 5m, "
   "1h or 7d, got \"10\"\n",
   NULL, NULL},
  {"duration above range", H "batch:\n  window: 301s\n",
   "kcld.yaml:4:11: batch.window: must be 0s..5m, got 301s\n", NULL, NULL},
  {"duration below minimum", H "fetch:\n  idle_time: 100ms\n",
   "kcld.yaml:4:14: fetch.idle_time: must be 200ms..5m, got 100ms\n", NULL,
   NULL},
  {"duration -1 or range", H "retry:\n  max_record_age: 30s\n",
   "kcld.yaml:4:19: retry.max_record_age: must be -1 or 1m..7d, got 30s\n",
   NULL, NULL},
  {"duration over 7d", H "retry:\n  max_record_age: 8d\n",
   "kcld.yaml:4:19: retry.max_record_age: must be -1 or 1m..7d, got 8d\n",
   NULL, NULL},
  {"duration overflow", H "lease:\n  failover_time: 99999999999999999d\n",
   "kcld.yaml:4:18: lease.failover_time: must be a duration such as 250ms, "
   "10s, 5m, 1h or 7d, got \"99999999999999999d\"\n",
   NULL, NULL},
  {"duration -1 not allowed", H "handler:\n  ttl: -1\n",
   "kcld.yaml:4:8: handler.ttl: must be a duration such as 250ms, 10s, 5m, "
   "1h or 7d, got \"-1\"\n",
   NULL, NULL},
  /* Sizes. */
  {"size bad unit", H "fetch:\n  max_buffered_bytes: 8M\n",
   "kcld.yaml:4:23: fetch.max_buffered_bytes: must be a size such as 100B, "
   "512KiB, 8MiB, 1GiB or 10MB, got \"8M\"\n",
   NULL, NULL},
  {"size above range", H "fetch:\n  max_buffered_bytes: 2GiB\n",
   "kcld.yaml:4:23: fetch.max_buffered_bytes: must be 64KiB..1GiB, got "
   "2GiB\n",
   NULL, NULL},
  /* Enums. */
  {"enum typo", H "handler:\n  type: lamda\n",
   "kcld.yaml:4:9: handler.type: must be one of multilang, lambda, dynamodb, "
   "plugin, stdout, got \"lamda\" (did you mean lambda?)\n",
   NULL, NULL},
  {"enum case", H "starting_position: latest\n",
   "kcld.yaml:3:20: starting_position: must be one of TRIM_HORIZON, LATEST, "
   "AT_TIMESTAMP, got \"latest\" (did you mean LATEST?)\n",
   NULL, NULL},
  {"enum no suggestion", H "log:\n  format: xml\n",
   "kcld.yaml:4:11: log.format: must be one of json, text, got \"xml\"\n",
   NULL, NULL},
  /* Unknown keys. */
  {"unknown key suggestion", H "batch:\n  sise: 5\n",
   "kcld.yaml:4:3: batch.sise: unknown key (did you mean batch.size?)\n",
   NULL, NULL},
  {"unknown key plain", H "frobnicate: 1\n",
   "kcld.yaml:3:1: frobnicate: unknown key\n", NULL, NULL},
  {"unknown key in wrong section", H "timeout: 5s\n",
   "kcld.yaml:3:1: timeout: unknown key (did you mean http.timeout or "
   "handler.timeout?)\n",
   NULL, NULL},
  {"unknown section", H "leas:\n  table: x\n",
   "kcld.yaml:3:1: leas: unknown key (did you mean lease?)\n", NULL, NULL},
  {"unknown nested key", H "handler:\n  key:\n    pkk: x\n",
   "kcld.yaml:5:5: handler.key.pkk: unknown key (did you mean "
   "handler.key.pk?)\n",
   NULL, NULL},
  {"dotted key", H "batch.size: 5\n",
   "kcld.yaml:3:1: batch.size: unknown key (dotted names are not read: nest "
   "the key under its section, as in conf/kcld.yaml)\n",
   NULL, NULL},
  /* Duplicates. */
  {"duplicate key", H "batch:\n  size: 5\n  size: 6\n",
   "kcld.yaml:5:3: batch.size: duplicate key (first at line 4)\n", NULL,
   NULL},
  {"duplicate section", H "batch:\n  size: 5\nbatch:\n  window: 1s\n",
   "kcld.yaml:5:1: batch: duplicate key (first at line 3)\n", NULL, NULL},
  /* YAML structure. */
  {"syntax error", "application: app\nstream: [s\n",
   "kcld.yaml:3:1: YAML syntax error: did not find expected ',' or ']' "
   "(while parsing a flow sequence at line 2, column 9)\n",
   NULL, NULL},
  {"tab indentation", H "batch:\n\tsize: 1\n",
   "kcld.yaml:4:1: YAML syntax error: found character that cannot start any "
   "token (while scanning for the next token at line 4, column 1)\n",
   NULL, NULL},
  {"undefined alias", H "region: *nope\n",
   "kcld.yaml:3:9: YAML syntax error: found undefined alias\n", NULL, NULL},
  {"mapping for scalar", H "batch:\n  size: {a: 1}\n",
   "kcld.yaml:4:9: batch.size: expected an integer, got a mapping\n", NULL,
   NULL},
  {"list for scalar", H "region: [a]\n",
   "kcld.yaml:3:9: region: expected a string, got a list\n", NULL, NULL},
  {"scalar for section", H "lease: 5\n",
   "kcld.yaml:3:8: lease: expected a mapping of keys, got a scalar\n", NULL,
   NULL},
  {"complex key", H "? [a, b]\n: 1\n",
   "kcld.yaml:3:3: keys must be plain names, got a list\n", NULL, NULL},
  {"second document", H "---\nfoo: 1\n",
   "kcld.yaml:4:1: only one YAML document is allowed in the file\n", NULL,
   NULL},
  {"root is a list", "- a\n- b\n",
   "kcld.yaml:1:1: expected a mapping of keys at the top level, got a list\n"
   "kcld.yaml:1:1: application: required key is missing\n"
   "kcld.yaml:1:1: stream: required key is missing\n",
   NULL, NULL},
  /* Lists. */
  {"list item not a string", H "handler:\n  type: lambda\n"
                               "  command: [\"a\", {b: 1}]\n",
   "kcld.yaml:5:18: handler.command: list items must be strings, got a "
   "mapping\n",
   NULL, NULL},
  {"list as mapping", H "handler:\n  command: {a: b}\n",
   "kcld.yaml:4:12: handler.command: expected a list of strings or a string, "
   "got a mapping\n",
   NULL, NULL},
  /* Environment expansion. */
  {"env missing", H "region: \"us-${KCLD_T_UNSET}\"\n",
   "kcld.yaml:3:13: region: environment variable KCLD_T_UNSET is not set "
   "(give a default with ${KCLD_T_UNSET:-value})\n",
   NULL, NULL},
  {"env unterminated", H "region: \"${ABC\"\n",
   "kcld.yaml:3:10: region: \"${\" is not closed by \"}\" (write \"$$\" for "
   "a literal \"$\")\n",
   NULL, NULL},
  {"env bad name", H "region: \"${1A}\"\n",
   "kcld.yaml:3:10: region: \"1A\" is not a valid environment variable "
   "name\n",
   NULL, NULL},
  {"env nested in a default",
   H "region: \"${KCLD_T_UNSET:-a${KCLD_T_REGION}b}\"\n",
   "kcld.yaml:3:27: region: \"${\" inside \"${...}\" is not allowed: a "
   "variable's name and default are plain text\n",
   NULL, NULL},
  {"env nested in a name", H "region: ${A${B}}\n",
   "kcld.yaml:3:12: region: \"${\" inside \"${...}\" is not allowed: a "
   "variable's name and default are plain text\n",
   NULL, NULL},
  {"env missing in list item", H "handler:\n  type: lambda\n"
                                 "  command:\n    - python3\n"
                                 "    - ${KCLD_T_UNSET}/app.py\n",
   "kcld.yaml:7:7: handler.command: environment variable KCLD_T_UNSET is "
   "not set (give a default with ${KCLD_T_UNSET:-value})\n",
   NULL, NULL},
  /* streams: */
#define MS "application: app\nstreams:\n"
  {"streams with stream", H "streams:\n  - name: o\n",
   "kcld.yaml:4:3: streams: cannot be combined with stream (s): list every "
   "stream under streams\n", NULL, NULL},
  {"streams with consumer_arn", MS "  - name: o\nfetch:\n  mode: fanout\n"
   "  consumer_arn: arn:aws:kinesis:us-east-1:123456789012:stream/o/"
   "consumer/c:1\n",
   "kcld.yaml:6:17: fetch.consumer_arn: names one stream's consumer and "
   "cannot be used with streams: leave it empty (a consumer named "
   "fetch.consumer_name is registered or found on each stream)\n", NULL,
   NULL},
  {"streams own handler type", MS "  - name: o\n    handler: {type: x}\n",
   "kcld.yaml:4:21: handler.type: must be one of multilang, lambda, "
   "dynamodb, plugin, stdout, got \"x\"\n", NULL, NULL},
  {"streams own handler incomplete", MS
   "  - name: o\n    handler: {type: lambda}\n",
   "kcld.yaml:4:21: handler.command: required with handler.type: "
   "lambda\n", NULL, NULL},
  {"streams own bad bucket", MS "  - name: o\n    on_failure: {s3: my-bucket}\n",
   "kcld.yaml:4:22: on_failure.s3: must be s3://BUCKET[/PREFIX]: not an "
   "s3://BUCKET[/PREFIX] location\n", NULL, NULL},
  {"streams own bucket with top dir",
   "application: app\non_failure:\n  dir: /var/dl\nstreams:\n"
   "  - name: o\n    on_failure: {s3: s3://o-dl/}\n",
   "kcld.yaml:3:8: on_failure.dir: cannot be combined with on_failure.s3: "
   "records that fail for good go to one destination\n", NULL, NULL},
  {"streams own filter", MS "  - name: o\n    filter: [{a: 1}]\n",
   "kcld.yaml:4:18: filter[0]: a: \"a\" is not a field of a Kinesis "
   "record (data, partitionKey, sequenceNumber, "
   "approximateArrivalTimestamp, kinesisSchemaVersion); fields of the "
   "payload go under data\n", NULL, NULL},
  {"streams own key not a section", MS "  - name: o\n    batch: 5\n",
   "kcld.yaml:4:12: batch: expected a mapping of keys, got a scalar\n", NULL, NULL},
  {"streams ARN as name", MS
   "  - name: arn:aws:kinesis:us-east-1:123456789012:stream/o\n",
   "kcld.yaml:3:11: streams[0]: name: must be a stream name (an ARN goes in "
   "arn:)\n", NULL, NULL},
  {"streams bad name", MS "  - name: \"a b\"\n",
   "kcld.yaml:3:11: streams[0]: stream: must be a stream name (1..128 "
   "characters of a-z A-Z 0-9 _ . -) or a stream ARN, got \"a b\"\n",
   NULL, NULL},
  {"streams no name", MS "  - starting_position: LATEST\n",
   "kcld.yaml:3:5: streams[0]: needs name: or arn:\n", NULL, NULL},
  {"streams name and arn", MS "  - name: o\n"
   "    arn: arn:aws:kinesis:us-east-1:123456789012:stream/o\n",
   "kcld.yaml:4:5: streams[0]: takes one of name: and arn:, once\n", NULL,
   NULL},
  {"streams unknown key", MS "  - name: o\n    shards: 2\n",
   "kcld.yaml:4:5: streams[0]: unknown key shards (a stream takes name or "
   "arn, starting_position, starting_timestamp, and handler, batch, retry, "
   "on_failure, filter to override the top-level ones)\n", NULL, NULL},
  {"streams bad position", MS "  - name: o\n    starting_position: NOW\n",
   "kcld.yaml:4:24: streams[0]: starting_position: must be one of "
   "TRIM_HORIZON, LATEST, AT_TIMESTAMP, got \"NOW\"\n", NULL, NULL},
  {"streams item not a mapping", MS "  - orders\n",
   "kcld.yaml:3:5: streams[0]: expected a mapping (name: or arn:, optional "
   "starting_position and starting_timestamp), got a scalar\n", NULL, NULL},
  {"streams twice", MS "  - name: o\n  - name: o\n",
   "kcld.yaml:4:5: streams: lists o twice\n", NULL, NULL},
  {"streams AT_TIMESTAMP without time", MS
   "  - name: o\n    starting_position: AT_TIMESTAMP\n",
   "kcld.yaml:3:3: streams: o: starting_timestamp is required with "
   "starting_position: AT_TIMESTAMP\n", NULL, NULL},
  {"streams not a list", MS "  name: o\n",
   "kcld.yaml:3:3: streams: expected a list of streams, got a mapping\n",
   NULL, NULL},
#undef MS
  /* Required keys. */
  {"required missing", "batch:\n  size: 5\n",
   "kcld.yaml:1:1: application: required key is missing\n"
   "kcld.yaml:1:1: stream: required key is missing\n",
   NULL, NULL},
  {"empty file", "",
   "kcld.yaml:1:1: application: required key is missing\n"
   "kcld.yaml:1:1: stream: required key is missing\n",
   NULL, NULL},
  {"required empty", "application: \"\"\nstream: s\n",
   "kcld.yaml:1:14: application: must not be empty\n", NULL, NULL},
  {"required from empty env", "application: app\nstream: ${KCLD_T_EMPTY}\n",
   "kcld.yaml:2:9: stream: must not be empty\n", "KCLD_T_EMPTY=", NULL},
  /* Strings with rules. */
  {"url", H "endpoint: localhost:4566\n",
   "kcld.yaml:3:11: endpoint: must be an http:// or https:// URL, or \"\", "
   "got \"localhost:4566\"\n",
   NULL, NULL},
  /* Credentials in a URL: refused, and never shown. */
  {"url with user and password",
   H "endpoint: \"http://AKIDUSER:s3cretPW@localhost:4566\"\n",
   "kcld.yaml:3:11: endpoint: must not contain credentials (a user or password before \"@\"); "
   "AWS credentials come from the credentials section or the AWS SDK "
   "chain (value not shown)\n",
   NULL, "s3cretPW"},
  {"url with a user", H "endpoints:\n  sqs: https://deployer@sqs.local/1/q\n",
   "kcld.yaml:4:8: endpoints.sqs: must not contain credentials (a user or password before \"@\"); "
   "AWS credentials come from the credentials section or the AWS SDK "
   "chain (value not shown)\n",
   NULL, "deployer"},
  {"dead-letter url with credentials from env",
   H "on_failure:\n  sqs: ${KCLD_T_DLQ}\n",
   "kcld.yaml:4:8: on_failure.sqs: must not contain credentials (a user or password before \"@\"); "
   "AWS credentials come from the credentials section or the AWS SDK "
   "chain (value not shown)\n",
   "KCLD_T_DLQ=https://u:pw0rd@sqs.local/1/q", "pw0rd"},
  {"credentials without a scheme", H "endpoint: ops:pw0rd@localhost:4566\n",
   "kcld.yaml:3:11: endpoint: must not contain credentials (a user or password before \"@\"); "
   "AWS credentials come from the credentials section or the AWS SDK "
   "chain (value not shown)\n",
   NULL, "pw0rd"},
  {"table name", H "lease:\n  table: \"a b\"\n",
   "kcld.yaml:4:10: lease.table: must be a DynamoDB table name (3..255 "
   "characters of a-z A-Z 0-9 _ . -), got \"a b\"\n",
   NULL, NULL},
  {"application as table", "application: my app\nstream: s\n",
   "kcld.yaml:1:14: application: names the lease table when lease.table is "
   "not set, so must be 3..255 characters of a-z A-Z 0-9 _ . -, got "
   "\"my app\"\n",
   NULL, NULL},
  {"stream name", "application: app\nstream: my stream\n",
   "kcld.yaml:2:9: stream: must be a stream name (1..128 characters of a-z "
   "A-Z 0-9 _ . -) or a stream ARN, got \"my stream\"\n",
   NULL, NULL},
  {"region", H "region: US-EAST-1\n",
   "kcld.yaml:3:9: region: must be a region name such as us-east-1, got "
   "\"US-EAST-1\"\n",
   NULL, NULL},
  {"host:port", H "metrics:\n  listen: \"9464\"\n",
   "kcld.yaml:4:11: metrics.listen: must be host:port such as "
   "127.0.0.1:9464 or [::1]:9464, or \"\" to disable, got \"9464\"\n",
   NULL, NULL},
  {"host:port port too big", H "metrics:\n  listen: 127.0.0.1:65536\n",
   "kcld.yaml:4:11: metrics.listen: must be host:port such as "
   "127.0.0.1:9464 or [::1]:9464, or \"\" to disable, got "
   "\"127.0.0.1:65536\"\n",
   NULL, NULL},
  {"ca file", H "http:\n  ca_file: /nonexistent/ca.pem\n",
   "kcld.yaml:4:12: http.ca_file: cannot read \"/nonexistent/ca.pem\": No "
   "such file or directory\n",
   NULL, NULL},
  {"template unterminated", H "handler:\n  key:\n    pk: \"${data.id\"\n",
   "kcld.yaml:5:9: handler.key.pk: \"${\" at character 1 is not closed by "
   "\"}\"\n",
   NULL, NULL},
  /* Times. */
  {"time", H "starting_position: AT_TIMESTAMP\nstarting_timestamp: yesterday\n",
   "kcld.yaml:4:21: starting_timestamp: must be an RFC 3339 time such as "
   "2024-05-01T12:00:00Z, or epoch seconds, got \"yesterday\"\n",
   NULL, NULL},
  {"time 30 February",
   H "starting_position: AT_TIMESTAMP\n"
     "starting_timestamp: 2024-02-30T00:00:00Z\n",
   "kcld.yaml:4:21: starting_timestamp: must be an RFC 3339 time such as "
   "2024-05-01T12:00:00Z, or epoch seconds, got \"2024-02-30T00:00:00Z\"\n",
   NULL, NULL},
  /* Rules between keys. */
  {"AT_TIMESTAMP without time", H "starting_position: AT_TIMESTAMP\n",
   "kcld.yaml:3:20: starting_timestamp: required with starting_position: "
   "AT_TIMESTAMP\n",
   NULL, NULL},
  {"time without AT_TIMESTAMP",
   H "starting_position: LATEST\nstarting_timestamp: 2024-05-01T12:00:00Z\n",
   "kcld.yaml:4:21: starting_timestamp: only used with starting_position: "
   "AT_TIMESTAMP (starting_position is LATEST)\n",
   NULL, NULL},
  {"consumer name when polling", H "fetch:\n  consumer_name: c\n",
   "kcld.yaml:4:18: fetch.consumer_name: only used with fetch.mode: "
   "fanout\n", NULL, NULL},
  {"consumer ARN not an ARN", H "fetch:\n  mode: fanout\n"
                                "  consumer_arn: arn:aws:kinesis:x\n",
   "kcld.yaml:5:17: fetch.consumer_arn: must be a stream consumer ARN "
   "(arn:aws:kinesis:REGION:ACCOUNT:stream/STREAM/consumer/NAME:TIMESTAMP), "
   "got \"arn:aws:kinesis:x\"\n", NULL, NULL},
  {"consumer ARN and name", H "fetch:\n  mode: fanout\n"
                              "  consumer_name: c\n  consumer_arn: "
                              "arn:aws:kinesis:us-east-1:1:stream/s/"
                              "consumer/c:1\n",
   "kcld.yaml:5:18: fetch.consumer_name: cannot be combined with "
   "fetch.consumer_arn (nothing is registered then)\n", NULL, NULL},
  {"application no consumer name",
   "application: my app\nstream: s\nlease:\n  table: tbl\n"
   "fetch:\n  mode: fanout\n",
   "kcld.yaml:1:14: application: names the stream consumer when "
   "fetch.consumer_name is not set, so must be 1..128 characters of a-z "
   "A-Z 0-9 _ . -, got \"my app\"\n", NULL, NULL},
  {"backoff base over max", H "retry:\n  backoff_base: 1m\n"
                              "  backoff_max: 30s\n",
   "kcld.yaml:4:17: retry.backoff_base: must not exceed retry.backoff_max "
   "(30s), got 1m\n",
   NULL, NULL},
  {"backoff max under default base", H "retry:\n  backoff_max: 50ms\n",
   "kcld.yaml:4:16: retry.backoff_max: must be at least retry.backoff_base "
   "(100ms), got 50ms\n",
   NULL, NULL},
  {"connect timeout over timeout", H "http:\n  connect_timeout: 1m\n"
                                     "  timeout: 30s\n",
   "kcld.yaml:4:20: http.connect_timeout: must not exceed http.timeout "
   "(30s), got 1m\n",
   NULL, NULL},
  {"dead-letter dir not absolute", H "on_failure:\n  dir: dead\n",
   "kcld.yaml:4:8: on_failure.dir: must be an absolute path, got dead\n",
   NULL, NULL},
  {"dead-letter dir and queue",
   H "on_failure:\n  sqs: http://q.local/1/q\n  dir: /var/dl\n",
   "kcld.yaml:5:8: on_failure.dir: cannot be combined with on_failure.sqs: "
   "records that fail for good go to one destination\n",
   NULL, NULL},
  {"discard and queue",
   H "on_failure:\n  sqs: http://q.local/1/q\n  discard: true\n",
   "kcld.yaml:5:12: on_failure.discard: cannot be combined with "
   "on_failure.sqs: discard keeps no copy\n",
   NULL, NULL},
  {"dead-letter bucket not s3://", H "on_failure:\n  s3: my-bucket/kcld\n",
   "kcld.yaml:4:7: on_failure.s3: must be s3://BUCKET[/PREFIX]: not an "
   "s3://BUCKET[/PREFIX] location\n",
   NULL, NULL},
  {"dead-letter bucket name bad", H "on_failure:\n  s3: s3://My_Bucket/\n",
   "kcld.yaml:4:7: on_failure.s3: must be s3://BUCKET[/PREFIX]: bad bucket "
   "name (3..63 of a-z 0-9 . -, starting and ending with a letter or "
   "digit)\n",
   NULL, NULL},
  {"dead-letter bucket and dir",
   H "on_failure:\n  s3: s3://dl-bucket/kcld\n  dir: /var/dl\n",
   "kcld.yaml:5:8: on_failure.dir: cannot be combined with on_failure.s3: "
   "records that fail for good go to one destination\n",
   NULL, NULL},
  {"block and bucket",
   H "on_failure:\n  s3: s3://dl-bucket/kcld\n  block: true\n",
   "kcld.yaml:5:10: on_failure.block: cannot be combined with "
   "on_failure.s3: block never gives a record up\n",
   NULL, NULL},
  {"block and discard", H "on_failure:\n  discard: true\n  block: true\n",
   "kcld.yaml:5:10: on_failure.block: cannot be combined with "
   "on_failure.discard: block never gives a record up\n",
   NULL, NULL},
  {"access key without secret", H "credentials:\n  access_key_id: AKIAX\n",
   "kcld.yaml:4:18: credentials.access_key_id: set without "
   "credentials.secret_access_key\n",
   NULL, NULL},
  {"secret without access key",
   H "credentials:\n  secret_access_key: SeCrEtVaLuE42\n",
   "kcld.yaml:4:22: credentials.secret_access_key: set without "
   "credentials.access_key_id\n",
   NULL, "SeCrEtVaLuE42"},
  {"session token alone", H "credentials:\n  session_token: ToKeN42\n",
   "kcld.yaml:4:18: credentials.session_token: set without "
   "credentials.access_key_id and credentials.secret_access_key\n",
   NULL, "ToKeN42"},
  {"profile and keys",
   H "credentials:\n  profile: dev\n  access_key_id: AKIAX\n"
     "  secret_access_key: SeCrEt42\n",
   "kcld.yaml:4:12: credentials.profile: cannot be combined with explicit "
   "keys (credentials.access_key_id)\n",
   NULL, "SeCrEt42"},
  {"secret with a bad value",
   H "credentials:\n  access_key_id: AKIAX\n"
     "  secret_access_key: \"wJalr XUtnFEMI\"\n",
   "kcld.yaml:5:22: credentials.secret_access_key: must be printable ASCII "
   "without spaces (value not shown)\n",
   NULL, "wJalr"},
  {"secret from env with a bad value",
   H "credentials:\n  access_key_id: AKIAX\n"
     "  session_token: \"${KCLD_T_TOKEN}\"\n  secret_access_key: ok\n",
   "kcld.yaml:5:18: credentials.session_token: must be printable ASCII "
   "without spaces (value not shown)\n",
   "KCLD_T_TOKEN=tok\tsecretpart", "secretpart"},
  {"lambda without command", H "handler:\n  type: lambda\n",
   "kcld.yaml:4:9: handler.command: required with handler.type: lambda\n",
   NULL, NULL},
  {"multilang with empty command", H "handler:\n  type: multilang\n"
                                     "  command: \"  \"\n",
   "kcld.yaml:5:12: handler.command: required with handler.type: "
   "multilang\n",
   NULL, NULL},
  {"dynamodb without table", H "handler:\n  type: dynamodb\n",
   "kcld.yaml:4:9: handler.table: required with handler.type: dynamodb\n",
   NULL, NULL},
  {"dynamodb into the lease table",
   "application: app-table\nstream: s\nhandler:\n  type: dynamodb\n"
   "  table: app-table\n",
   "kcld.yaml:5:10: handler.table: must not be the lease table "
   "(app-table)\n",
   NULL, NULL},
  {"dynamodb with empty pk", H "handler:\n  type: dynamodb\n  table: res\n"
                               "  key:\n    pk: \"\"\n",
   "kcld.yaml:7:9: handler.key.pk: must not be empty with handler.type: "
   "dynamodb\n",
   NULL, NULL},
  {"plugin without path", H "handler:\n  type: plugin\n",
   "kcld.yaml:4:9: handler.path: required with handler.type: plugin\n", NULL,
   NULL},
  /* filter: each pattern compiled at load; errors at the offending node
   * (a mapping) or at the string, with the position inside it. */
  {"filter bad operator", H "filter:\n  - data: {t: [{numeric: [\"=>\", 30]}]}\n",
   "kcld.yaml:4:27: filter[0]: data.t[0].numeric: \"=>\" is not an operator "
   "here (=, <, <=, >, >=; a range is one lower and one upper bound)\n",
   NULL, NULL},
  {"filter field outside data", H "filter:\n  - partitionKey: [k]\n"
                                  "  - order:\n      type: [buy]\n",
   "kcld.yaml:6:7: filter[1]: order: \"order\" is not a field of a Kinesis "
   "record (data, partitionKey, sequenceNumber, approximateArrivalTimestamp, "
   "kinesisSchemaVersion); fields of the payload go under data\n",
   NULL, NULL},
  {"filter scalar value", H "filter:\n  - data:\n      n: 300\n",
   "kcld.yaml:5:10: filter[0]: data.n: expected a list of values (write "
   "[300]) or a mapping, got a number\n",
   NULL, NULL},
  {"filter JSON string", H "filter:\n  - '{\"data\": {\"a\": [1,]}}'\n"
                           "  - '{\"Pattern\": \"{\\\"x\\\": [1]}\"}'\n",
   "kcld.yaml:4:5: filter[0]: not JSON: unexpected character (line 1, "
   "column 19 of the pattern)\n"
   "kcld.yaml:5:5: filter[1]: Pattern.x: \"x\" is not a field of a Kinesis "
   "record (data, partitionKey, sequenceNumber, approximateArrivalTimestamp, "
   "kinesisSchemaVersion); fields of the payload go under data (line 1, "
   "column 7 of the pattern)\n",
   NULL, NULL},
  {"filter list in list", H "filter:\n  - [data]\n  -\n",
   "kcld.yaml:4:5: filter[0]: expected a pattern (a mapping, or Lambda's "
   "JSON as a string), got a list\n"
   "kcld.yaml:5:4: filter[1]: expected a pattern (a mapping, or Lambda's "
   "JSON as a string), got an empty value\n",
   NULL, NULL},
  {"filter of 11 patterns", H "filter:\n  - partitionKey: [a]\n"
   "  - '{\"Filters\": [{\"Pattern\": \"{\\\"partitionKey\\\": [1]}\"}, "
   "{\"Pattern\": \"{\\\"partitionKey\\\": [2]}\"}]}'\n"
   "  - {partitionKey: [c]}\n  - {partitionKey: [d]}\n"
   "  - {partitionKey: [e]}\n  - {partitionKey: [f]}\n"
   "  - {partitionKey: [g]}\n  - {partitionKey: [h]}\n"
   "  - {partitionKey: [i]}\n  - {partitionKey: [j]}\n",
   "kcld.yaml:13:5: filter[9]: more than 10 patterns (Lambda's limit)\n",
   NULL, NULL},
  {"filter key not a name", H "filter:\n  - data: {[a]: [1]}\n",
   "kcld.yaml:4:12: filter[0]: pattern keys must be names, got a list\n",
   NULL, NULL},
  {"filter alias bomb", H "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n"
   "filter:\n  - data:\n      x: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
   "      y: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
   "      z: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n",
   "kcld.yaml:3:1: a: unknown key\n"
   "kcld.yaml:5:5: filter[0]: a pattern of more than 10000 values "
   "(aliases count each time they are used)\n",
   NULL, NULL},
  /* Several errors at once, in file order. */
  {"several errors", H "log:\n  level: loud\nbatch:\n  size: 0\n"
                       "  window: 1x\nzzz: 1\n",
   "kcld.yaml:4:10: log.level: must be one of debug, info, warn, error, got "
   "\"loud\"\n"
   "kcld.yaml:6:9: batch.size: must be 1..10000, got 0\n"
   "kcld.yaml:7:11: batch.window: must be a duration such as 250ms, 10s, "
   "5m, 1h or 7d, got \"1x\"\n"
   "kcld.yaml:8:1: zzz: unknown key\n",
   NULL, NULL},
  /* window: */
  {"window on stdout", H "window:\n  tumbling: 60s\n",
   "kcld.yaml:4:13: window.tumbling: only the lambda and plugin handlers take "
   "a window; handler.type is stdout\n", NULL, NULL},
  {"window on dynamodb", H "handler:\n  type: dynamodb\n  table: tbl\n"
   "window:\n  tumbling: 1m\n",
   "kcld.yaml:7:13: window.tumbling: only the lambda and plugin handlers take "
   "a window; handler.type is dynamodb\n", NULL, NULL},
  {"window over 900 s", H "window:\n  tumbling: 901s\n",
   "kcld.yaml:4:13: window.tumbling: must be 0s..15m, got 901s\n", NULL,
   NULL},
  {"window not whole seconds", H "handler:\n  type: plugin\n  path: /p.so\n"
   "window:\n  tumbling: 1500ms\n",
   "kcld.yaml:7:13: window.tumbling: must be whole seconds (Lambda's "
   "TumblingWindowInSeconds), got 1500ms\n", NULL, NULL},
  {"window with parallelization", H "handler:\n  type: plugin\n"
   "  path: /p.so\nbatch:\n  parallelization_factor: 2\n"
   "window:\n  tumbling: 60s\n",
   "kcld.yaml:7:27: window.tumbling: needs batch.parallelization_factor 1 (a "
   "shard's state goes from one call to the next), got 2\n", NULL, NULL},
  /* ... and for each stream's own handler and batch. */
  {"window with a stream's own handler", "application: app\n"
   "handler:\n  type: plugin\n  path: /p.so\nwindow:\n  tumbling: 60s\n"
   "streams:\n  - name: o\n  - name: p\n    handler: {type: stdout}\n",
   "kcld.yaml:6:13: window.tumbling: only the lambda and plugin handlers "
   "take a window; handler.type is stdout\n", NULL, NULL},
  {"window with a stream's own parallelization", "application: app\n"
   "handler:\n  type: plugin\n  path: /p.so\nwindow:\n  tumbling: 60s\n"
   "streams:\n  - name: o\n"
   "    batch: {parallelization_factor: 3}\n",
   "kcld.yaml:9:37: window.tumbling: needs batch.parallelization_factor 1 "
   "(a shard's state goes from one call to the next), got 3\n", NULL, NULL},
};

#define NBAD (sizeof(s_bad) / sizeof(s_bad[0]))

static void set_case_env(const char *env, int on)
{
  char name[64];
  const char *eq;
  if (!env)
    return;
  eq = strchr(env, '=');
  snprintf(name, sizeof(name), "%.*s", (int)(eq - env), env);
  if (on)
    setenv(name, eq + 1, 1);
  else
    unsetenv(name);
}

static void test_bad_configs(void **state)
{
  (void)state;
  size_t failed = 0;
  unsetenv("KCLD_T_UNSET");
  for (size_t i = 0; i < NBAD; i++) {
    const struct bad_case *bc = &s_bad[i];
    struct kcld_config *cfg = (struct kcld_config *)1;
    char *errs = NULL;
    set_case_env(bc->env, 1);
    int rc = kcld_config_parse("kcld.yaml", bc->yaml, strlen(bc->yaml), &cfg,
                               &errs);
    set_case_env(bc->env, 0);
    int ok = rc == KCLD_ECONFIG && cfg == NULL && errs &&
             strcmp(errs, bc->expect) == 0 &&
             (!bc->hidden || !strstr(errs, bc->hidden));
    if (!ok) {
      failed++;
      print_error("case '%s': rc %d\n  expected: %s  got:      %s", bc->name,
                  rc, bc->expect, errs ? errs : "(none)\n");
    }
    free(errs);
    if (rc == 0)
      kcld_config_free(cfg);
  }
  print_message("%zu bad-config cases, %zu failed\n", NBAD, failed);
  assert_int_equal(failed, 0);
}

static void test_error_cap(void **state)
{
  (void)state;
  char text[2048];
  size_t o = (size_t)snprintf(text, sizeof(text), H);
  for (int i = 1; i <= 25; i++)
    o += (size_t)snprintf(text + o, sizeof(text) - o, "zz%02d: 1\n", i);
  struct kcld_config *cfg;
  char *errs;
  assert_int_equal(kcld_config_parse("k.yaml", text, o, &cfg, &errs),
                   KCLD_ECONFIG);
  size_t lines = 0;
  for (char *p = errs; *p; p++)
    lines += *p == '\n';
  assert_int_equal(lines, KCLD_CONFIG_MAX_ERRORS + 1);
  assert_non_null(strstr(errs, "k.yaml:3:1: zz01: unknown key\n"));
  assert_non_null(strstr(errs, "k.yaml:22:1: zz20: unknown key\n"));
  assert_null(strstr(errs, "zz21"));
  assert_non_null(strstr(errs, "k.yaml: 5 more errors not shown\n"));
  free(errs);
}

static struct kcld_config *parse_ok(const char *text)
{
  struct kcld_config *cfg = NULL;
  char *errs = NULL;
  int rc = kcld_config_parse("kcld.yaml", text, strlen(text), &cfg, &errs);
  if (rc != 0)
    print_error("unexpected errors (%d):\n%s", rc, errs ? errs : "");
  free(errs);
  assert_int_equal(rc, 0);
  assert_non_null(cfg);
  return cfg;
}

static void test_defaults(void **state)
{
  (void)state;
  struct kcld_config *cfg = parse_ok("application: orders\nstream: s1\n");
  char host[256], wid[300];
  gethostname(host, sizeof(host));
  host[sizeof(host) - 1] = '\0';
  snprintf(wid, sizeof(wid), "%s:%ld", host, (long)getpid());

  assert_string_equal(cfg->path, "kcld.yaml");
  assert_string_equal(cfg->application, "orders");
  assert_string_equal(cfg->stream, "s1");
  assert_string_equal(cfg->region, "");
  assert_string_equal(cfg->endpoint, "");
  assert_string_equal(cfg->endpoints.kinesis, "");
  assert_string_equal(cfg->credentials.secret_access_key, "");
  assert_string_equal(cfg->http.ca_file, "");
  assert_int_equal(cfg->http.connect_timeout_ms, 5000);
  assert_int_equal(cfg->http.timeout_ms, 30000);
  assert_int_equal(cfg->http.max_attempts, 0); /* the SDK settings, else 3 */
  assert_int_equal(cfg->http.retry_mode, KCLD_CONFIG_RETRY_AUTO);
  assert_null(kcld_config_retry_mode_name(cfg));
  assert_int_equal(cfg->endpoints.fips, KCLD_CONFIG_AUTO);
  assert_int_equal(cfg->endpoints.dualstack, KCLD_CONFIG_AUTO);
  assert_int_equal(kcld_config_switch_value(cfg->endpoints.fips), 0);
  assert_string_equal(cfg->worker_id, wid);
  assert_int_equal(cfg->starting_position, KCLD_CONFIG_POS_TRIM_HORIZON);
  assert_int_equal(cfg->starting_timestamp_ms, -1);
  assert_int_equal(cfg->shutdown_timeout_ms, 20000);
  assert_int_equal(cfg->workers, 0);
  assert_string_equal(cfg->lease.table, "orders");
  assert_int_equal(cfg->lease.failover_ms, 10000);
  assert_int_equal(cfg->lease.take_interval_ms, 20000);
  assert_int_equal(cfg->lease.max_leases, 0);
  assert_int_equal(cfg->lease.max_steal, 1);
  assert_int_equal(cfg->lease.shard_sync_interval_ms, 60000);
  assert_int_equal(cfg->lease.cleanup_delay_ms, 300000);
  assert_int_equal(cfg->fetch.max_records, 10000);
  assert_int_equal(cfg->fetch.idle_time_ms, 1000);
  assert_int_equal(cfg->fetch.max_buffered_bytes, 8 * 1024 * 1024);
  assert_int_equal(cfg->checkpoint.interval_ms, 0);
  assert_int_equal(cfg->batch.size, 100);
  assert_int_equal(cfg->batch.window_ms, 0);
  assert_int_equal(cfg->batch.parallelization_factor, 1);
  assert_int_equal(cfg->retry.max_retry_attempts, 3);
  assert_true(cfg->retry.bisect_on_error);
  assert_int_equal(cfg->retry.max_record_age_ms, -1);
  assert_int_equal(cfg->retry.backoff_base_ms, 100);
  assert_int_equal(cfg->retry.backoff_max_ms, 30000);
  assert_string_equal(cfg->on_failure.sqs, "");
  assert_non_null(strstr(cfg->on_failure.dir, "/dead-letter"));
  assert_true(cfg->on_failure.include_records);
  assert_false(cfg->on_failure.discard);
  assert_false(cfg->on_failure.block);
  assert_int_equal(cfg->handler.type, KCLD_CONFIG_HANDLER_STDOUT);
  assert_int_equal(cfg->handler.command.len, 0);
  assert_non_null(cfg->handler.command.items);
  assert_null(cfg->handler.command.items[0]);
  assert_int_equal(cfg->handler.timeout_ms, 300000);
  assert_int_equal(cfg->handler.concurrency, 1);
  assert_string_equal(cfg->handler.path, "");
  assert_int_equal(cfg->handler.decode, KCLD_CONFIG_DECODE_BASE64);
  assert_string_equal(cfg->handler.table, "");
  assert_string_equal(cfg->handler.key.pk, "${partitionKey}");
  assert_string_equal(cfg->handler.key.sk,
                      "${sequenceNumber}#${subSequenceNumber}");
  assert_int_equal(cfg->handler.write, KCLD_CONFIG_WRITE_BATCH);
  assert_int_equal(cfg->handler.ttl_ms, 0);
  assert_string_equal(cfg->metrics.listen, "127.0.0.1:9464");
  assert_string_equal(cfg->metrics.emf, "");
  assert_int_equal(cfg->log.level, KCLD_LOG_INFO);
  assert_int_equal(cfg->log.format, KCLD_LOG_JSON);
  kcld_config_free(cfg);
}

/* kcld_config_key_default gives what a config with nothing set holds, by
 * type; keys without a numeric default are refused. */
static void test_key_default(void **state)
{
  (void)state;
  struct kcld_config *cfg = parse_ok("application: orders\nstream: s1\n");
  int64_t v = -7;

  assert_int_equal(kcld_config_key_default("lease.failover_time", &v), 0);
  assert_int_equal(v, cfg->lease.failover_ms);
  assert_int_equal(kcld_config_key_default("fetch.max_buffered_bytes", &v),
                   0);
  assert_int_equal(v, cfg->fetch.max_buffered_bytes);
  assert_int_equal(kcld_config_key_default("fetch.max_records", &v), 0);
  assert_int_equal(v, cfg->fetch.max_records);
  assert_int_equal(kcld_config_key_default("retry.max_record_age", &v), 0);
  assert_int_equal(v, cfg->retry.max_record_age_ms);
  assert_int_equal(v, -1);
  assert_int_equal(kcld_config_key_default("retry.bisect_on_error", &v), 0);
  assert_int_equal(v, cfg->retry.bisect_on_error);
  assert_int_equal(kcld_config_key_default("log.format", &v), 0);
  assert_int_equal(v, cfg->log.format);
  v = -7;
  assert_int_equal(kcld_config_key_default("lease.take_interval", &v),
                   KCLD_ENOTFOUND); /* "" = derived from failover_time */
  assert_int_equal(kcld_config_key_default("metrics.listen", &v),
                   KCLD_ENOTFOUND);
  assert_int_equal(kcld_config_key_default("application", &v),
                   KCLD_ENOTFOUND);
  assert_int_equal(kcld_config_key_default("no.such_key", &v),
                   KCLD_ENOTFOUND);
  assert_int_equal(kcld_config_key_default(NULL, &v), KCLD_ENOTFOUND);
  assert_int_equal(v, -7);
  kcld_config_free(cfg);
}

/* on_failure.dir when not set: systemd's StateDirectory first, then
 * /var/lib as root, else the XDG state home or ~/.local/state; nothing
 * with another destination. */
static void test_dead_letter_dir(void **state)
{
  (void)state;
  const char *sd = getenv("STATE_DIRECTORY");
  char *saved = sd ? strdup(sd) : NULL;
  struct kcld_config *cfg;

  setenv("STATE_DIRECTORY", "/var/lib/kcld:/var/lib/other", 1);
  cfg = parse_ok(H);
  assert_string_equal(cfg->on_failure.dir, "/var/lib/kcld/dead-letter");
  kcld_config_free(cfg);
  setenv("STATE_DIRECTORY", "/srv/state", 1);
  cfg = parse_ok(H);
  assert_string_equal(cfg->on_failure.dir, "/srv/state/dead-letter");
  kcld_config_free(cfg);
  unsetenv("STATE_DIRECTORY");
  setenv("XDG_STATE_HOME", "/home/u/.state", 1);
  cfg = parse_ok(H);
  assert_string_equal(cfg->on_failure.dir,
                      geteuid() == 0 ? "/var/lib/kcld/dead-letter"
                                     : "/home/u/.state/kcld/dead-letter");
  kcld_config_free(cfg);
  unsetenv("XDG_STATE_HOME");
  /* Set, it stays; with a queue, discard or block there is none. */
  cfg = parse_ok(H "on_failure:\n  dir: /data/dl\n");
  assert_string_equal(cfg->on_failure.dir, "/data/dl");
  kcld_config_free(cfg);
  cfg = parse_ok(H "on_failure:\n  sqs: http://q.local/1/q\n");
  assert_string_equal(cfg->on_failure.dir, "");
  kcld_config_free(cfg);
  cfg = parse_ok(H "on_failure:\n  discard: true\n");
  assert_string_equal(cfg->on_failure.dir, "");
  assert_true(cfg->on_failure.discard);
  kcld_config_free(cfg);
  /* S3 alone, or with a queue (S3 takes what SQS cannot): no directory. */
  cfg = parse_ok(H "on_failure:\n  s3: s3://dl-bucket/kcld\n");
  assert_string_equal(cfg->on_failure.s3, "s3://dl-bucket/kcld");
  assert_string_equal(cfg->on_failure.dir, "");
  kcld_config_free(cfg);
  cfg = parse_ok(H "on_failure:\n  sqs: http://q.local/1/q\n"
                   "  s3: s3://dl-bucket\n");
  assert_string_equal(cfg->on_failure.dir, "");
  kcld_config_free(cfg);
  if (saved)
    setenv("STATE_DIRECTORY", saved, 1);
  free(saved);
}

/* streams: each item's stream, and its starting position (its own or the
 * top-level one). */
static void test_streams(void **state)
{
  (void)state;
  struct kcld_config *cfg = parse_ok(
    "application: app\n"
    "starting_position: AT_TIMESTAMP\n"
    "starting_timestamp: 2024-05-01T12:00:00Z\n"
    "streams:\n"
    "  - name: orders\n"
    "  - arn: arn:aws:kinesis:us-east-1:123456789012:stream/clicks\n"
    "    starting_position: LATEST\n"
    "  - name: late\n"
    "    starting_timestamp: 2024-05-02T00:00:00Z\n");
  assert_string_equal(cfg->stream, "");
  assert_int_equal(cfg->streams.len, 3);
  assert_string_equal(cfg->streams.v[0].stream, "orders");
  assert_int_equal(cfg->streams.v[0].starting_position,
                   KCLD_CONFIG_POS_AT_TIMESTAMP);
  assert_true(cfg->streams.v[0].starting_timestamp_ms == 1714564800000LL);
  assert_string_equal(cfg->streams.v[1].stream,
                      "arn:aws:kinesis:us-east-1:123456789012:stream/clicks");
  assert_int_equal(cfg->streams.v[1].starting_position,
                   KCLD_CONFIG_POS_LATEST);
  assert_true(cfg->streams.v[1].starting_timestamp_ms == -1);
  assert_int_equal(cfg->streams.v[2].starting_position,
                   KCLD_CONFIG_POS_AT_TIMESTAMP);
  assert_true(cfg->streams.v[2].starting_timestamp_ms == 1714608000000LL);
  /* The dump reads back as the same streams. */
  char *dump = kcld_config_dump(cfg);
  assert_non_null(dump);
  assert_non_null(strstr(dump, "streams: [{name: \"orders\", "
                               "starting_position: AT_TIMESTAMP"));
  struct kcld_config *again = parse_ok(dump);
  struct kcld_config_change *ch = NULL;
  assert_int_equal(kcld_config_diff(cfg, again, &ch), 0);
  free(ch);
  kcld_config_free(again);
  free(dump);
  kcld_config_free(cfg);
  /* Without streams: the empty list. */
  cfg = parse_ok(H);
  assert_int_equal(cfg->streams.len, 0);
  kcld_config_free(cfg);
}

/* streams: an item's handler, batch, retry, on_failure and filter
 * override the top-level keys for its stream, key by key; the dump reads
 * back with them, and a changed override is a change. */
#define OVERRIDES(window)                                                    \
  "application: app\nbatch:\n  size: 50\n"                                \
  "handler:\n  type: stdout\n  path: /tmp/all.jsonl\n"                    \
  "streams:\n  - name: orders\n  - name: clicks\n"                        \
  "    handler: {path: /tmp/clicks.jsonl}\n"                               \
  "    batch: {window: " window "}\n"                                      \
  "    on_failure: {discard: true}\n"                                      \
  "    filter: [{partitionKey: [{prefix: \"c-\"}]}]\n"
static void test_stream_overrides(void **state)
{
  (void)state;
  struct kcld_config *cfg = parse_ok(OVERRIDES("2s"));
  struct kcld_config_change *ch = NULL;
  assert_null(cfg->streams.v[0].cfg); /* the top-level one as it is */
  const struct kcld_config *c = cfg->streams.v[1].cfg;
  assert_non_null(c);
  assert_string_equal(c->stream, "clicks");
  assert_int_equal(c->streams.len, 0);
  assert_int_equal(c->handler.type, KCLD_CONFIG_HANDLER_STDOUT);
  assert_string_equal(c->handler.path, "/tmp/clicks.jsonl");
  assert_int_equal(c->batch.size, 50);
  assert_true(c->batch.window_ms == 2000);
  assert_true(c->on_failure.discard);
  assert_string_equal(c->on_failure.dir, ""); /* none derived for discard */
  assert_int_equal(c->filter.len, 1);
  assert_string_equal(cfg->handler.path, "/tmp/all.jsonl");
  assert_true(cfg->batch.window_ms != 2000);
  assert_false(cfg->on_failure.discard);
  assert_int_equal(cfg->filter.len, 0);

  char *dump = kcld_config_dump(cfg);
  assert_non_null(dump);
  struct kcld_config *again = parse_ok(dump);
  assert_int_equal(kcld_config_diff(cfg, again, &ch), 0);
  free(ch);
  assert_non_null(again->streams.v[1].cfg);
  assert_string_equal(again->streams.v[1].cfg->handler.path,
                      "/tmp/clicks.jsonl");
  assert_null(again->streams.v[0].cfg);
  kcld_config_free(again);
  free(dump);

  struct kcld_config *other = parse_ok(OVERRIDES("3s"));
  assert_int_equal(kcld_config_diff(cfg, other, &ch), 1);
  assert_string_equal(ch[0].key, "streams");
  free(ch);
  kcld_config_free(other);
  kcld_config_free(cfg);
}

/* streams: an item's on_failure.s3 joins the top-level on_failure.sqs
 * for its stream only (large messages to its bucket). */
static void test_stream_s3(void **state)
{
  (void)state;
  struct kcld_config *cfg = parse_ok(
    "application: app\non_failure:\n  sqs: http://q.local/1/q\n"
    "streams:\n  - name: orders\n  - name: clicks\n"
    "    on_failure: {s3: s3://clicks-dl/kcld}\n");
  const struct kcld_config *c = cfg->streams.v[1].cfg;
  assert_null(cfg->streams.v[0].cfg);
  assert_non_null(c);
  assert_string_equal(c->on_failure.s3, "s3://clicks-dl/kcld");
  assert_string_equal(c->on_failure.sqs, "http://q.local/1/q");
  assert_string_equal(c->on_failure.dir, "");
  assert_string_equal(cfg->on_failure.s3, "");
  kcld_config_free(cfg);
}

static void test_values(void **state)
{
  (void)state;
  setenv("KCLD_T_REGION", "eu-west-1", 1);
  setenv("KCLD_T_EMPTY", "", 1);
  setenv("KCLD_T_SIZE", "250", 1);
  setenv("partitionKey", "WRONG", 1); /* templates are not env-expanded */
  unsetenv("KCLD_T_UNSET");
  struct kcld_config *cfg = parse_ok(
    "application: ${KCLD_T_UNSET:-fallback-app}\n"
    "stream: arn:aws:kinesis:us-east-1:123456789012:stream/orders\n"
    "region: ${KCLD_T_REGION}\n"
    "endpoint: \"${KCLD_T_EMPTY:-http://localhost:4566}\"\n"
    "worker_id: \"w$$1-${KCLD_T_EMPTY}\"\n"
    "starting_position: AT_TIMESTAMP\n"
    "starting_timestamp: 2024-05-01T14:00:00.250+02:00\n"
    "workers: 4\n"
    "lease:\n"
    "  failover_time: 30s\n"
    "  max_leases: 12\n"
    "  max_steal: 0\n"
    "fetch:\n"
    "  max_buffered_bytes: 10MB\n"
    "  idle_time: 1.5s\n"
    "batch:\n"
    "  size: \"${KCLD_T_SIZE}\"\n"
    "  window: 1m30s\n"
    "retry:\n"
    "  max_retry_attempts: -1\n"
    "  bisect_on_error: no\n"
    "  max_record_age: 7d\n"
    "on_failure:\n"
    "  block: On\n"
    "handler:\n"
    "  type: lambda\n"
    "  command: \"python3  handler.py\t--fast \"\n"
    "  ttl: 30d\n"
    "  key:\n"
    "    pk: \"${data.deviceId}#${hour(arrival)}\"\n"
    "    sk: ${partitionKey}\n"
    "metrics:\n"
    "  listen: \"[::1]:0\"\n"
    "log:\n"
    "  level: debug\n"
    "  format: text\n");
  unsetenv("partitionKey");
  assert_string_equal(cfg->application, "fallback-app");
  assert_string_equal(cfg->stream,
                      "arn:aws:kinesis:us-east-1:123456789012:stream/orders");
  assert_string_equal(cfg->region, "eu-west-1");
  assert_string_equal(cfg->endpoint, "http://localhost:4566");
  assert_string_equal(cfg->worker_id, "w$1-");
  assert_int_equal(cfg->starting_position, KCLD_CONFIG_POS_AT_TIMESTAMP);
  assert_int_equal(cfg->starting_timestamp_ms, 1714564800250LL);
  assert_int_equal(cfg->workers, 4);
  assert_string_equal(cfg->lease.table, "fallback-app");
  assert_int_equal(cfg->lease.failover_ms, 30000);
  assert_int_equal(cfg->lease.take_interval_ms, 60000); /* 2 x failover */
  assert_int_equal(cfg->lease.max_leases, 12);
  assert_int_equal(cfg->lease.max_steal, 0);
  assert_int_equal(cfg->fetch.max_buffered_bytes, 10000000);
  assert_int_equal(cfg->fetch.idle_time_ms, 1500);
  assert_int_equal(cfg->batch.size, 250);
  assert_int_equal(cfg->batch.window_ms, 90000);
  assert_int_equal(cfg->retry.max_retry_attempts, -1);
  assert_false(cfg->retry.bisect_on_error);
  assert_int_equal(cfg->retry.max_record_age_ms, 7LL * 86400000);
  assert_true(cfg->on_failure.block);
  assert_int_equal(cfg->handler.type, KCLD_CONFIG_HANDLER_LAMBDA);
  assert_int_equal(cfg->handler.command.len, 3);
  assert_string_equal(cfg->handler.command.items[0], "python3");
  assert_string_equal(cfg->handler.command.items[1], "handler.py");
  assert_string_equal(cfg->handler.command.items[2], "--fast");
  assert_null(cfg->handler.command.items[3]);
  assert_int_equal(cfg->handler.ttl_ms, 30LL * 86400000);
  assert_string_equal(cfg->handler.key.pk, "${data.deviceId}#${hour(arrival)}");
  assert_string_equal(cfg->handler.key.sk, "${partitionKey}");
  assert_string_equal(cfg->metrics.listen, "[::1]:0");
  assert_int_equal(cfg->log.level, KCLD_LOG_DEBUG);
  assert_int_equal(cfg->log.format, KCLD_LOG_TEXT);
  kcld_config_free(cfg);

  /* An explicit take_interval is kept; a list keeps spaces inside items;
   * epoch seconds; a quoted empty value and "" durations. */
  cfg = parse_ok(H "lease:\n  take_interval: 5s\n"
                   "starting_position: AT_TIMESTAMP\n"
                   "starting_timestamp: 1714564800.5\n"
                   "handler:\n  type: multilang\n"
                   "  command:\n    - /usr/bin/my processor\n    - \"-x\"\n"
                   "  ttl: \"\"\n"
                   "metrics:\n  listen: \"\"\n"
                   "retry:\n  max_record_age: -1\n");
  assert_int_equal(cfg->lease.take_interval_ms, 5000);
  assert_int_equal(cfg->starting_timestamp_ms, 1714564800500LL);
  assert_int_equal(cfg->handler.command.len, 2);
  assert_string_equal(cfg->handler.command.items[0], "/usr/bin/my processor");
  assert_string_equal(cfg->handler.command.items[1], "-x");
  assert_int_equal(cfg->handler.ttl_ms, 0);
  assert_string_equal(cfg->metrics.listen, "");
  assert_int_equal(cfg->retry.max_record_age_ms, -1);
  kcld_config_free(cfg);

  /* BOM, CRLF line ends, flow mappings, an empty section. */
  const char crlf[] = "\xef\xbb\xbf" "application: app\r\nstream: s\r\n"
                      "endpoints: {kinesis: \"http://127.0.0.1:1\"}\r\n"
                      "lease:\r\n"
                      "batch:\r\n  size: 7\r\n";
  cfg = parse_ok(crlf);
  assert_string_equal(cfg->endpoints.kinesis, "http://127.0.0.1:1");
  assert_int_equal(cfg->batch.size, 7);
  kcld_config_free(cfg);
  unsetenv("KCLD_T_REGION");
  unsetenv("KCLD_T_EMPTY");
  unsetenv("KCLD_T_SIZE");
}

static void test_parse_units(void **state)
{
  (void)state;
  static const struct {
    const char *text;
    int64_t ms;
  } durs[] = {{"0", 0},         {"250ms", 250},       {"10s", 10000},
              {"5m", 300000},   {"1h", 3600000},      {"7d", 604800000},
              {"1h30m", 5400000}, {"1.5s", 1500},     {"0.25s", 250},
              {"2m500ms", 120500}, {"0s", 0}};
  static const char *const bad_durs[] = {"", "10", "s", "1x", "-5s", "1.s",
                                         "0.5ms", "1 s", "5M", ".5s",
                                         "9999999999999999999s"};
  static const struct {
    const char *text;
    int64_t bytes;
  } sizes[] = {{"0", 0},
               {"100B", 100},
               {"512KiB", 524288},
               {"8MiB", 8388608},
               {"1GiB", 1073741824},
               {"1kB", 1000},
               {"10MB", 10000000},
               {"1GB", 1000000000},
               {"1.5KiB", 1536}};
  static const char *const bad_sizes[] = {"", "8", "8M", "KiB", "1.1B",
                                          "8 MiB", "8mib", "-1B", "8MiBs"};
  int64_t v;
  char buf[32];
  for (size_t i = 0; i < sizeof(durs) / sizeof(durs[0]); i++) {
    assert_int_equal(kcld_config_parse_duration(durs[i].text, &v), 0);
    assert_int_equal(v, durs[i].ms);
  }
  for (size_t i = 0; i < sizeof(bad_durs) / sizeof(bad_durs[0]); i++)
    if (kcld_config_parse_duration(bad_durs[i], &v) != KCLD_EINVAL)
      fail_msg("duration '%s' accepted", bad_durs[i]);
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    assert_int_equal(kcld_config_parse_size(sizes[i].text, &v), 0);
    assert_int_equal(v, sizes[i].bytes);
  }
  for (size_t i = 0; i < sizeof(bad_sizes) / sizeof(bad_sizes[0]); i++)
    if (kcld_config_parse_size(bad_sizes[i], &v) != KCLD_EINVAL)
      fail_msg("size '%s' accepted", bad_sizes[i]);
  assert_string_equal(kcld_config_format_duration(300000, buf, 32), "5m");
  assert_string_equal(kcld_config_format_duration(90000, buf, 32), "90s");
  assert_string_equal(kcld_config_format_duration(1500, buf, 32), "1500ms");
  assert_string_equal(kcld_config_format_duration(0, buf, 32), "0s");
  assert_string_equal(kcld_config_format_duration(-1, buf, 32), "-1");
  assert_string_equal(kcld_config_format_duration(604800000, buf, 32), "7d");
  assert_string_equal(kcld_config_format_size(8388608, buf, 32), "8MiB");
  assert_string_equal(kcld_config_format_size(1000000, buf, 32), "1MB");
  assert_string_equal(kcld_config_format_size(100, buf, 32), "100B");
  assert_string_equal(kcld_config_format_size(0, buf, 32), "0B");
}

static void clear_endpoint_env(void)
{
  unsetenv("AWS_ENDPOINT_URL");
  unsetenv("AWS_ENDPOINT_URL_KINESIS");
  unsetenv("AWS_ENDPOINT_URL_DYNAMODB");
  unsetenv("AWS_ENDPOINT_URL_SQS");
  unsetenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS");
}

static void expect_endpoint(const struct kcld_config *cfg,
                            enum kcld_config_service svc, const char *url,
                            const char *source)
{
  const char *src = "unset";
  const char *got = kcld_config_endpoint(cfg, svc, &src);
  if (!url) {
    assert_null(got);
    assert_null(src);
    return;
  }
  assert_non_null(got);
  assert_string_equal(got, url);
  assert_string_equal(src, source);
}

static void test_endpoints(void **state)
{
  (void)state;
  /* The enums line up with the modules that use them. */
  assert_int_equal(KCLD_CONFIG_KINESIS, KCLD_AWS_KINESIS);
  assert_int_equal(KCLD_CONFIG_DYNAMODB, KCLD_AWS_DYNAMODB);
  assert_int_equal(KCLD_CONFIG_SQS, KCLD_AWS_SQS);
  assert_int_equal(KCLD_CONFIG_POS_TRIM_HORIZON, KCLD_POS_TRIM_HORIZON);
  assert_int_equal(KCLD_CONFIG_POS_LATEST, KCLD_POS_LATEST);
  assert_int_equal(KCLD_CONFIG_POS_AT_TIMESTAMP, KCLD_POS_AT_TIMESTAMP);

  clear_endpoint_env();
  struct kcld_config *none = parse_ok(H);
  struct kcld_config *one = parse_ok(H "endpoint: http://one:4566\n");
  struct kcld_config *per = parse_ok(H "endpoint: http://one:4566\n"
                                       "endpoints:\n  sqs: http://sqs:1\n");

  /* Nothing anywhere: the AWS endpoint. */
  expect_endpoint(none, KCLD_CONFIG_KINESIS, NULL, NULL);
  /* AWS_ENDPOINT_URL, then the per-service variable over it. */
  setenv("AWS_ENDPOINT_URL", "http://env-all:1", 1);
  expect_endpoint(none, KCLD_CONFIG_DYNAMODB, "http://env-all:1",
                  "AWS_ENDPOINT_URL");
  setenv("AWS_ENDPOINT_URL_KINESIS", "http://env-kin:2", 1);
  expect_endpoint(none, KCLD_CONFIG_KINESIS, "http://env-kin:2",
                  "AWS_ENDPOINT_URL_KINESIS");
  expect_endpoint(none, KCLD_CONFIG_SQS, "http://env-all:1",
                  "AWS_ENDPOINT_URL");
  /* An empty variable counts as unset. */
  setenv("AWS_ENDPOINT_URL_SQS", "", 1);
  expect_endpoint(none, KCLD_CONFIG_SQS, "http://env-all:1",
                  "AWS_ENDPOINT_URL");
  /* endpoint in the file beats both variables. */
  expect_endpoint(one, KCLD_CONFIG_KINESIS, "http://one:4566", "endpoint");
  expect_endpoint(one, KCLD_CONFIG_SQS, "http://one:4566", "endpoint");
  /* endpoints.<svc> beats endpoint. */
  expect_endpoint(per, KCLD_CONFIG_SQS, "http://sqs:1", "endpoints.sqs");
  expect_endpoint(per, KCLD_CONFIG_DYNAMODB, "http://one:4566", "endpoint");
  /* The SDK switch turns the variables off, not the file's keys. */
  setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true", 1);
  expect_endpoint(none, KCLD_CONFIG_KINESIS, NULL, NULL);
  expect_endpoint(per, KCLD_CONFIG_SQS, "http://sqs:1", "endpoints.sqs");
  /* A NULL source pointer is allowed. */
  assert_string_equal(kcld_config_endpoint(per, KCLD_CONFIG_SQS, NULL),
                      "http://sqs:1");
  clear_endpoint_env();
  kcld_config_free(none);
  kcld_config_free(one);
  kcld_config_free(per);

  /* FIPS, dual-stack and the retry mode as the AWS client takes them. */
  struct kcld_config *sdk = parse_ok(H "endpoints:\n  fips: true\n"
                                       "  dualstack: false\n"
                                       "http:\n  retry_mode: adaptive\n"
                                       "  max_attempts: 5\n");
  assert_int_equal(kcld_config_switch_value(sdk->endpoints.fips), 1);
  assert_int_equal(kcld_config_switch_value(sdk->endpoints.dualstack), -1);
  assert_string_equal(kcld_config_retry_mode_name(sdk), "adaptive");
  assert_int_equal(sdk->http.max_attempts, 5);
  kcld_config_free(sdk);
  const char *bad = H "http:\n  retry_mode: eager\n";
  char *errs = NULL;
  assert_int_equal(kcld_config_parse("kcld.yaml", bad, strlen(bad), &sdk,
                                     &errs),
                   KCLD_ECONFIG);
  assert_non_null(strstr(errs, "http.retry_mode: must be one of auto, "
                               "standard, adaptive, legacy"));
  free(errs);
}

static char *slurp_root(const char *rel)
{
  char path[4096];
  snprintf(path, sizeof(path), "%s/%s", kcld_test_root(), rel);
  char *text = kcld_test_slurp(path, NULL);
  if (!text)
    fail_msg("cannot read %s", path);
  return text;
}

/* Fails with the first differing line when the committed file is not what
 * the table generates. */
static void expect_same(const char *rel, const char *committed,
                        const char *generated, const char *how)
{
  if (strcmp(committed, generated) == 0)
    return;
  size_t line = 1;
  const char *a = committed, *b = generated;
  while (*a && *a == *b) {
    line += *a == '\n';
    a++;
    b++;
  }
  fail_msg("%s differs from the key table at line %zu; regenerate it with "
           "`%s`",
           rel, line, how);
}

static void test_reference_files(void **state)
{
  (void)state;
  char *yaml = kcld_config_reference(KCLD_CONFIG_REF_YAML);
  char *md = kcld_config_reference(KCLD_CONFIG_REF_MARKDOWN);
  char *cy = slurp_root("conf/kcld.yaml");
  char *cm = slurp_root("docs/configuration.md");
  assert_non_null(yaml);
  assert_non_null(md);
  expect_same("conf/kcld.yaml", cy, yaml,
              "./kcld config-reference yaml > conf/kcld.yaml");
  expect_same("docs/configuration.md", cm, md,
              "./kcld config-reference markdown > docs/configuration.md");
  /* Every key of the sketch the other modules build on is documented. */
  static const char *const keys[] = {
    "`application`", "`stream`", "`lease.take_interval`",
    "`fetch.max_buffered_bytes`", "`retry.max_record_age`",
    "`handler.key.sk`", "`metrics.emf`", "`credentials.session_token`",
    "`http.max_attempts`", "`endpoints.sqs`", "`log.format`"};
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
    if (!strstr(md, keys[i]))
      fail_msg("%s missing from docs/configuration.md", keys[i]);
  free(yaml);
  free(md);
  free(cy);
  free(cm);
}

static void test_reference_yields_defaults(void **state)
{
  (void)state;
  struct kcld_config *ref = NULL, *min;
  char *errs = NULL, *text = slurp_root("conf/kcld.yaml");
  clear_endpoint_env();
  int rc = kcld_config_parse("conf/kcld.yaml", text, strlen(text), &ref,
                             &errs);
  if (rc != 0)
    fail_msg("conf/kcld.yaml: %s", errs ? errs : "?");
  min = parse_ok("application: my-application\nstream: my-stream\n");
  char *a = kcld_config_dump(ref), *b = kcld_config_dump(min);
  /* The dumps differ only in the first line, which names the file. */
  assert_non_null(a);
  assert_non_null(b);
  assert_string_equal(strchr(a, '\n'), strchr(b, '\n'));
  assert_int_equal(ref->batch.size, 100);
  assert_int_equal(ref->lease.take_interval_ms, 20000);
  assert_string_equal(ref->lease.table, "my-application");
  assert_int_equal(ref->retry.max_record_age_ms, -1);
  assert_int_equal(ref->handler.ttl_ms, 0);
  free(a);
  free(b);
  free(text);
  kcld_config_free(ref);
  kcld_config_free(min);
}

static void test_local_yaml(void **state)
{
  (void)state;
  char path[4096];
  struct kcld_config *cfg = NULL;
  char *errs = NULL;
  static const char *const vars[] = {"KCLD_KINESIS_ENDPOINT",
                                     "KCLD_DYNAMODB_ENDPOINT",
                                     "KCLD_SQS_ENDPOINT", "KCLD_DLQ_URL"};
  for (size_t i = 0; i < 4; i++)
    unsetenv(vars[i]);
  snprintf(path, sizeof(path), "%s/conf/local.yaml", kcld_test_root());
  int rc = kcld_config_load(path, &cfg, &errs);
  if (rc != 0)
    fail_msg("%s", errs ? errs : "cannot load conf/local.yaml");
  assert_string_equal(cfg->application, "kcld-local");
  assert_string_equal(cfg->stream, "kcld-local");
  assert_string_equal(cfg->region, "us-east-1");
  assert_string_equal(cfg->endpoints.kinesis, "http://127.0.0.1:4567");
  assert_string_equal(cfg->endpoints.dynamodb, "http://127.0.0.1:4568");
  assert_string_equal(cfg->endpoints.sqs, "http://127.0.0.1:4569");
  assert_string_equal(cfg->credentials.access_key_id, "test");
  assert_string_equal(cfg->credentials.secret_access_key, "test");
  assert_int_equal(cfg->handler.type, KCLD_CONFIG_HANDLER_DYNAMODB);
  assert_string_equal(cfg->handler.table, "kcld-local-results");
  assert_string_equal(cfg->on_failure.sqs,
                      "http://127.0.0.1:4569/000000000000/kcld-local-dlq");
  assert_true(cfg->retry.bisect_on_error);
  assert_string_equal(cfg->metrics.listen, "127.0.0.1:9464");
  kcld_config_free(cfg);

  /* The variables the demo sets win over the defaults. */
  setenv("KCLD_KINESIS_ENDPOINT", "http://127.0.0.1:40001", 1);
  setenv("KCLD_DLQ_URL", "http://127.0.0.1:40003/000000000000/dlq", 1);
  rc = kcld_config_load(path, &cfg, &errs);
  assert_int_equal(rc, 0);
  assert_string_equal(kcld_config_endpoint(cfg, KCLD_CONFIG_KINESIS, NULL),
                      "http://127.0.0.1:40001");
  assert_string_equal(cfg->on_failure.sqs,
                      "http://127.0.0.1:40003/000000000000/dlq");
  kcld_config_free(cfg);
  for (size_t i = 0; i < 4; i++)
    unsetenv(vars[i]);
}

static void test_full_file_round_trip(void **state)
{
  (void)state;
  char path[4096];
  struct kcld_config *cfg = NULL, *again = NULL;
  char *errs = NULL;
  snprintf(path, sizeof(path), "%s/tests/unit/config/full.yaml",
           kcld_test_root());
  int rc = kcld_config_load(path, &cfg, &errs);
  if (rc != 0)
    fail_msg("%s", errs ? errs : "cannot load full.yaml");
  /* Every key differs from its default here. */
  assert_string_equal(cfg->endpoints.dynamodb, "https://ddb.example:8443/x");
  assert_string_equal(cfg->credentials.profile, "analytics");
  assert_string_equal(cfg->http.ca_file, "/dev/null");
  assert_int_equal(cfg->http.connect_timeout_ms, 2500);
  assert_int_equal(cfg->http.max_attempts, 5);
  assert_int_equal(cfg->lease.cleanup_delay_ms, 3600000);
  assert_int_equal(cfg->checkpoint.interval_ms, 5000);
  assert_int_equal(cfg->handler.type, KCLD_CONFIG_HANDLER_DYNAMODB);
  assert_int_equal(cfg->handler.decode, KCLD_CONFIG_DECODE_UTF8);
  assert_int_equal(cfg->handler.write, KCLD_CONFIG_WRITE_CONDITIONAL);
  assert_int_equal(cfg->handler.concurrency, 3);
  assert_string_equal(cfg->metrics.emf, "/var/log/kcld/emf.log");
  assert_int_equal(cfg->log.level, KCLD_LOG_WARN);
  assert_false(cfg->on_failure.include_records);
  assert_int_equal(cfg->filter.len, 2);

  /* The dump is a config that gives the same config. */
  char *d1 = kcld_config_dump(cfg);
  assert_non_null(d1);
  rc = kcld_config_parse("dump.yaml", d1, strlen(d1), &again, &errs);
  if (rc != 0)
    fail_msg("dump does not parse: %s\n%s", errs ? errs : "?", d1);
  char *d2 = kcld_config_dump(again);
  assert_string_equal(strchr(d1, '\n'), strchr(d2, '\n'));
  /* Every key is in the dump. */
  assert_non_null(
    strstr(d1, "\n    pk: \"${data.deviceId}#${hour(arrival)}\""));
  assert_non_null(strstr(d1, "\nworker_id: \"host-$$1\"\n"));
  free(d1);
  free(d2);
  kcld_config_free(cfg);
  kcld_config_free(again);
}

static void test_secrets_never_shown(void **state)
{
  (void)state;
  static const char secret[] = "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY";
  static const char token[] = "IQoJb3JpZ2luX2VjEXAMPLETOKEN";
  char text[512];
  snprintf(text, sizeof(text),
           H "credentials:\n  access_key_id: AKIAEXAMPLE\n"
             "  secret_access_key: %s\n  session_token: \"%s\"\n",
           secret, token);
  struct kcld_config *cfg = parse_ok(text);
  assert_string_equal(cfg->credentials.secret_access_key, secret);
  assert_string_equal(cfg->credentials.session_token, token);
  char *dump = kcld_config_dump(cfg);
  assert_null(strstr(dump, secret));
  assert_null(strstr(dump, token));
  assert_non_null(strstr(dump, "  secret_access_key: \"[redacted]\"\n"));
  assert_non_null(strstr(dump, "  session_token: \"[redacted]\"\n"));
  assert_non_null(strstr(dump, "  access_key_id: \"AKIAEXAMPLE\"\n"));
  free(dump);
  kcld_config_free(cfg);

  /* Errors elsewhere in a file with secrets: the secrets stay out. */
  snprintf(text, sizeof(text),
           H "credentials:\n  secret_access_key: %s\n"
             "  session_token: \"%s x\"\nbatch:\n  size: 0\n",
           secret, token);
  char *errs = NULL;
  assert_int_equal(kcld_config_parse("k.yaml", text, strlen(text), &cfg,
                                     &errs),
                   KCLD_ECONFIG);
  assert_non_null(errs);
  assert_null(strstr(errs, secret));
  assert_null(strstr(errs, token));
  assert_non_null(strstr(errs, "k.yaml:5:18: credentials.session_token: must "
                               "be printable ASCII without spaces (value not "
                               "shown)\n"));
  free(errs);
}

/* ======== Hostile files: size, depth, floods ======== */

static unsigned long long mono_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (unsigned long long)ts.tv_sec * 1000 + (unsigned long long)ts.tv_nsec /
                                                  1000000;
}

/* H, then 64-byte comment lines, cut at `len` bytes. */
static char *big_text(size_t len)
{
  char *s = malloc(len + 1);
  size_t o = (size_t)snprintf(s, len + 1, H);
  while (o < len) {
    s[o] = (o - (sizeof(H) - 1)) % 64 == 63 ? '\n' : (o % 64 == 27 ? '#' : 'x');
    o++;
  }
  s[len] = '\0';
  return s;
}

static void test_size_limit(void **state)
{
  (void)state;
  struct kcld_config *cfg = NULL;
  char *errs = NULL, expect[256], path[] = "/tmp/kcld-big-XXXXXX";
  /* Byte 1048576 (offset 2^20, the first one over) sits after H and 16383
   * lines of 64 bytes, at column 1048576 - 27 - 16383 * 64 + 1. */
  const size_t line = 2 + 16383 + 1, col = 1048576 - 27 - 16383 * 64 + 1;
  char *ok = big_text(KCLD_CONFIG_MAX_BYTES);
  char *big = big_text(KCLD_CONFIG_MAX_BYTES + 1);

  assert_int_equal(kcld_config_parse("kcld.yaml", ok, strlen(ok), &cfg,
                                     &errs), 0);
  kcld_config_free(cfg);
  snprintf(expect, sizeof(expect),
           "kcld.yaml:%zu:%zu: the file is larger than 1MiB, the limit for a "
           "configuration file\n", line, col);
  assert_int_equal(kcld_config_parse("kcld.yaml", big, strlen(big), &cfg,
                                     &errs), KCLD_ECONFIG);
  assert_string_equal(errs, expect);
  free(errs);

  /* A file: read no further than the limit, same error. */
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  FILE *f = fdopen(fd, "w");
  fputs(big, f);
  fputs(big, f); /* 2 MiB */
  fclose(f);
  assert_int_equal(kcld_config_load(path, &cfg, &errs), KCLD_ECONFIG);
  snprintf(expect, sizeof(expect),
           "%s:%zu:%zu: the file is larger than 1MiB, the limit for a "
           "configuration file\n", path, line, col);
  assert_string_equal(errs, expect);
  free(errs);
  unlink(path);
  free(ok);
  free(big);
}

/* H, then `region:` with a value nested `depth` deep: flow lists, or flow
 * mappings {a: ...}. */
static char *deep_text(size_t depth, int maps)
{
  size_t cap = sizeof(H) + 16 + depth * 5, o;
  char *s = malloc(cap);
  o = (size_t)snprintf(s, cap, H "region: ");
  for (size_t i = 0; i < depth; i++)
    o += (size_t)snprintf(s + o, cap - o, "%s", maps ? "{a: " : "[");
  if (maps)
    s[o++] = '1';
  for (size_t i = 0; i < depth; i++)
    s[o++] = maps ? '}' : ']';
  s[o++] = '\n';
  s[o] = '\0';
  return s;
}

static void test_depth_limit(void **state)
{
  (void)state;
  struct kcld_config *cfg = NULL;
  char *errs = NULL;
  /* The top-level mapping is level 1: 63 lists inside it are allowed (and
   * wrong for region), the 64th is one too many. */
  char *text = deep_text(63, 0);
  assert_int_equal(kcld_config_parse("kcld.yaml", text, strlen(text), &cfg,
                                     &errs), KCLD_ECONFIG);
  assert_string_equal(errs,
                      "kcld.yaml:3:9: region: expected a string, got a "
                      "list\n");
  free(errs);
  free(text);
  text = deep_text(64, 0);
  assert_int_equal(kcld_config_parse("kcld.yaml", text, strlen(text), &cfg,
                                     &errs), KCLD_ECONFIG);
  assert_string_equal(errs,
                      "kcld.yaml:3:72: nested deeper than 64 levels, the "
                      "limit for a configuration file\n");
  free(errs);
  free(text);

  /* 100k deep (57 s before the limit existed): refused at once. */
  for (int maps = 0; maps <= 1; maps++) {
    text = deep_text(100000, maps);
    unsigned long long t0 = mono_ms();
    int rc = kcld_config_parse("kcld.yaml", text, strlen(text), &cfg, &errs);
    unsigned long long took = mono_ms() - t0;
    print_message("100000 nested %s refused in %llu ms\n",
                  maps ? "mappings" : "lists", took);
    assert_int_equal(rc, KCLD_ECONFIG);
    assert_non_null(strstr(errs, ": nested deeper than 64 levels"));
    assert_true(took < 1000);
    free(errs);
    free(text);
  }
}

/* A flood of bad keys: the check stops after 1000 errors, and does not
 * then report the keys it did not reach as missing. */
static void test_error_flood(void **state)
{
  (void)state;
  const size_t nkeys = 30000;
  size_t cap = nkeys * 16 + 64, o = 0;
  char *text = malloc(cap);
  for (size_t i = 0; i < nkeys; i++)
    o += (size_t)snprintf(text + o, cap - o, "zz%06zu: 1\n", i);
  o += (size_t)snprintf(text + o, cap - o, H);
  struct kcld_config *cfg = NULL;
  char *errs = NULL;
  unsigned long long t0 = mono_ms();
  assert_int_equal(kcld_config_parse("k.yaml", text, o, &cfg, &errs),
                   KCLD_ECONFIG);
  unsigned long long took = mono_ms() - t0;
  print_message("%zu unknown keys checked in %llu ms\n", nkeys, took);
  assert_true(took < 20000); /* quadratic before: 3.8 s of CPU, plain */
  assert_non_null(strstr(errs, "k.yaml:1:1: zz000000: unknown key\n"));
  assert_non_null(strstr(errs, "k.yaml:20:1: zz000019: unknown key\n"));
  assert_non_null(strstr(errs, "\nk.yaml: 980 more errors not shown; "
                               "checking stopped after 1000\n"));
  assert_null(strstr(errs, "required key is missing"));
  free(errs);
  free(text);
}

/* ======== Checks against the machine ======== */

static void expect_runtime(const char *yaml, const char *expect)
{
  struct kcld_config *cfg = parse_ok(yaml);
  char *errs = (char *)1;
  int rc = kcld_config_check_runtime(cfg, &errs);
  if (!expect) {
    if (rc != 0)
      fail_msg("unexpected: %s", errs ? errs : "?");
    assert_null(errs);
  } else {
    assert_int_equal(rc, KCLD_ECONFIG);
    assert_non_null(errs);
    assert_string_equal(errs, expect);
    free(errs);
  }
  kcld_config_free(cfg);
}

static void write_file(const char *path, const char *text, int mode)
{
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  assert_int_equal(chmod(path, (mode_t)mode), 0);
}

static void test_runtime_checks(void **state)
{
  (void)state;
  char dir[] = "/tmp/kcld-rt-XXXXXX", yaml[1024], expect[1024], p[600];
  const char *old_path = getenv("PATH");
  char *saved = old_path ? strdup(old_path) : NULL;
  assert_non_null(mkdtemp(dir));
  snprintf(p, sizeof(p), "%s/prog", dir);
  write_file(p, "#!/bin/sh\nexit 0\n", 0755);
  snprintf(p, sizeof(p), "%s/noexec", dir);
  write_file(p, "#!/bin/sh\nexit 0\n", 0644);
  snprintf(p, sizeof(p), "%s/p.so", dir);
  write_file(p, "not really a shared object", 0644);
  clear_endpoint_env();

  /* Parsing never looks at the machine; the runtime check does. */
  expect_runtime(H "handler:\n  type: lambda\n"
                   "  command: [kcld-no-such-program-xyz, app.py]\n",
                 "kcld.yaml:5:12: handler.command: cannot run "
                 "\"kcld-no-such-program-xyz\": not found in PATH\n");
  expect_runtime(H "handler:\n  type: lambda\n  command: [\"\", app.py]\n",
                 "kcld.yaml:5:12: handler.command: the program name is "
                 "empty\n");
  /* PATH is searched as execvp does. */
  snprintf(p, sizeof(p), "/nonexistent:%s", dir);
  setenv("PATH", p, 1);
  expect_runtime(H "handler:\n  type: multilang\n  command: prog --fast\n",
                 NULL);
  snprintf(expect, sizeof(expect),
           "kcld.yaml:5:12: handler.command: cannot run \"noexec\": "
           "\"%s/noexec\" is not executable\n", dir);
  expect_runtime(H "handler:\n  type: multilang\n  command: noexec\n",
                 expect);
  /* A path is taken as it is. */
  snprintf(yaml, sizeof(yaml), H "handler:\n  type: lambda\n  command: "
           "[\"%s/prog\"]\n", dir);
  expect_runtime(yaml, NULL);
  snprintf(yaml, sizeof(yaml), H "handler:\n  type: lambda\n  command: "
           "[\"%s\"]\n", dir);
  snprintf(expect, sizeof(expect), "kcld.yaml:5:12: handler.command: cannot "
           "run \"%s\": Is a directory\n", dir);
  expect_runtime(yaml, expect);
  snprintf(yaml, sizeof(yaml), H "handler:\n  type: lambda\n  command: "
           "\"%s/gone.py x\"\n", dir);
  snprintf(expect, sizeof(expect), "kcld.yaml:5:12: handler.command: cannot "
           "run \"%s/gone.py\": No such file or directory\n", dir);
  expect_runtime(yaml, expect);
  if (saved)
    setenv("PATH", saved, 1);
  else
    unsetenv("PATH");
  free(saved);

  /* Plugins: a readable file (dlopen itself is the handler's business). */
  snprintf(yaml, sizeof(yaml), H "handler:\n  type: plugin\n  path: "
           "%s/p.so\n", dir);
  expect_runtime(yaml, NULL);
  snprintf(yaml, sizeof(yaml), H "handler:\n  type: plugin\n  path: "
           "%s/none.so\n", dir);
  snprintf(expect, sizeof(expect), "kcld.yaml:5:9: handler.path: cannot "
           "load \"%s/none.so\": No such file or directory\n", dir);
  expect_runtime(yaml, expect);
  snprintf(yaml, sizeof(yaml), H "handler:\n  type: plugin\n  path: %s\n",
           dir);
  snprintf(expect, sizeof(expect), "kcld.yaml:5:9: handler.path: cannot "
           "load \"%s\": not a regular file\n", dir);
  expect_runtime(yaml, expect);
  /* A bare name is dlopen's to search in the library path. */
  expect_runtime(H "handler:\n  type: plugin\n  path: libkcld-x.so\n", NULL);
  /* Other handlers need nothing from the machine. */
  expect_runtime(H "handler:\n  type: stdout\n  path: /nonexistent/out\n",
                 NULL);

  /* Endpoint variables with credentials, each named once. */
  setenv("AWS_ENDPOINT_URL", "http://ops:pw0rd@127.0.0.1:4566", 1);
  setenv("AWS_ENDPOINT_URL_SQS", "http://sqs@127.0.0.1:4569", 1);
  expect_runtime(H "endpoints:\n  kinesis: http://127.0.0.1:4567\n",
                 "AWS_ENDPOINT_URL (environment): must not contain "
                 "credentials (a user or password before \"@\") (value not "
                 "shown)\n"
                 "AWS_ENDPOINT_URL_SQS (environment): must not contain "
                 "credentials (a user or password before \"@\") (value not "
                 "shown)\n");
  /* ...but not when the file's keys answer instead. */
  expect_runtime(H "endpoint: http://127.0.0.1:4566\n", NULL);
  clear_endpoint_env();

  snprintf(p, sizeof(p), "%s/prog", dir);
  unlink(p);
  snprintf(p, sizeof(p), "%s/noexec", dir);
  unlink(p);
  snprintf(p, sizeof(p), "%s/p.so", dir);
  unlink(p);
  rmdir(dir);
}

/* Settings from --properties name the setting they came from. */
static void test_runtime_checks_settings(void **state)
{
  (void)state;
  const struct kcld_config_setting s[] = {
    {"application", "app", NULL, 1},
    {"stream", "s", NULL, 2},
    {"handler.type", "multilang", NULL, 3},
    {"handler.command", "kcld-no-such-program-xyz", "executableName", 7},
  };
  struct kcld_config *cfg = NULL;
  char *errs = NULL;
  assert_int_equal(kcld_config_from_settings("app.properties", s, 4, &cfg,
                                             &errs), 0);
  assert_int_equal(kcld_config_check_runtime(cfg, &errs), KCLD_ECONFIG);
  assert_string_equal(errs, "app.properties:7:1: executableName: cannot run "
                            "\"kcld-no-such-program-xyz\": not found in "
                            "PATH\n");
  free(errs);
  /* A NULL errors pointer is allowed. */
  assert_int_equal(kcld_config_check_runtime(cfg, NULL), KCLD_ECONFIG);
  kcld_config_free(cfg);
}

/* ======== filter ======== */

/* The stored patterns, compiled again as the daemon does. */
static struct kcld_filter *compile_cfg(const struct kcld_config *cfg)
{
  struct kcld_filter *f = kcld_filter_new();
  struct kcld_filter_error e;
  assert_non_null(f);
  for (size_t i = 0; i < cfg->filter.len; i++)
    assert_int_equal(kcld_filter_add_text(f, cfg->filter.items[i],
                                          strlen(cfg->filter.items[i]), &e),
                     0);
  return f;
}

static int keeps(const struct kcld_filter *f, const char *data,
                 const char *pk)
{
  struct kcld_record r;
  memset(&r, 0, sizeof(r));
  r.data = (const uint8_t *)data;
  r.data_len = strlen(data);
  r.partition_key = pk;
  r.partition_key_len = strlen(pk);
  r.sequence_number = "1";
  r.arrival_ms = KCLD_RECORD_NO_ARRIVAL;
  return kcld_filter_match(f, &r);
}

/* The issue's config shape: YAML mappings and a JSON string; YAML scalars
 * typed as the pattern means them; no environment expansion; the dump
 * gives the same patterns back ($ not doubled); a --properties setting;
 * filter: with no value or a list of none is no filter. */
static void test_filter_key(void **state)
{
  struct kcld_config *cfg, *again;
  struct kcld_filter *f;
  char *dump, *errs = NULL;
  const struct kcld_config_setting s[] = {
    {"application", "app", NULL, 1},
    {"stream", "s", NULL, 2},
    {"filter", "{\"Filters\": [{\"Pattern\": \"{\\\"data\\\": "
               "{\\\"a\\\": [1]}}\"}]}", "kcld.filter", 3},
  };
  (void)state;

  cfg = parse_ok(H "filter:\n"
                 "  - {data: {temperature: [{numeric: [\">\", 30]}]}}\n"
                 "  - {partitionKey: [{prefix: \"device-\"}]}\n"
                 "  - data:\n      n: [300.0, '12', true, ~]\n"
                 "      $or: [{k: [\"${HOME}\"]}, {k: [x]}]\n"
                 "  - '{\"data\": {\"order\": {\"type\": [\"buy\"]}}}'\n");
  assert_int_equal(cfg->filter.len, 4);
  assert_null(cfg->filter.items[4]);
  assert_string_equal(cfg->filter.items[2],
                      "{\"data\":{\"n\":[300.0,\"12\",true,null],\"$or\":"
                      "[{\"k\":[\"${HOME}\"]},{\"k\":[\"x\"]}]}}");
  f = compile_cfg(cfg);
  assert_int_equal(kcld_filter_count(f), 4);
  assert_int_equal(keeps(f, "{\"temperature\": 31}", "k"), 1);
  assert_int_equal(keeps(f, "{\"temperature\": 30}", "k"), 0);
  assert_int_equal(keeps(f, "{\"temperature\": 30}", "device-1"), 1);
  assert_int_equal(keeps(f, "{\"n\": \"12\", \"k\": \"${HOME}\"}", "k"), 1);
  assert_int_equal(keeps(f, "{\"n\": 12, \"k\": \"x\"}", "k"), 0);
  assert_int_equal(keeps(f, "{\"order\": {\"type\": \"buy\"}}", "k"), 1);
  kcld_filter_free(f);

  dump = kcld_config_dump(cfg);
  assert_non_null(dump);
  assert_int_equal(kcld_config_parse("dump.yaml", dump, strlen(dump), &again,
                                     &errs), 0);
  assert_int_equal(again->filter.len, 4);
  for (size_t i = 0; i < 4; i++)
    assert_string_equal(again->filter.items[i], cfg->filter.items[i]);
  free(dump);
  kcld_config_free(again);
  kcld_config_free(cfg);

  assert_int_equal(kcld_config_from_settings("app.properties", s, 3, &cfg,
                                             &errs), 0);
  assert_int_equal(cfg->filter.len, 1);
  f = compile_cfg(cfg);
  assert_int_equal(keeps(f, "{\"a\": 1}", "k"), 1);
  assert_int_equal(keeps(f, "{\"a\": 2}", "k"), 0);
  kcld_filter_free(f);
  kcld_config_free(cfg);
  /* A bad setting: the setting's line, the position inside the text. */
  const struct kcld_config_setting bad[] = {
    {"application", "app", NULL, 1},
    {"stream", "s", NULL, 2},
    {"filter", "{\"data\": {\"a\": 1}}", "kcld.filter", 9},
  };
  assert_int_equal(kcld_config_from_settings("app.properties", bad, 3, &cfg,
                                             &errs), KCLD_ECONFIG);
  assert_string_equal(errs, "app.properties:9:1: kcld.filter: data.a: "
                            "expected a list of values (write [1]) or a "
                            "mapping, got a number (line 1, column 16 of "
                            "the pattern)\n");
  free(errs);

  cfg = parse_ok(H "filter:\n");
  assert_int_equal(cfg->filter.len, 0);
  kcld_config_free(cfg);
  cfg = parse_ok(H "filter: []\n");
  assert_int_equal(cfg->filter.len, 0);
  kcld_config_free(cfg);
  /* One JSON string instead of a list. */
  cfg = parse_ok(H "filter: '{\"partitionKey\": [\"a\"]}'\n");
  assert_int_equal(cfg->filter.len, 1);
  f = compile_cfg(cfg); /* that pattern, not just any one */
  assert_int_equal(keeps(f, "{}", "a"), 1);
  assert_int_equal(keeps(f, "{}", "b"), 0);
  kcld_filter_free(f);
  kcld_config_free(cfg);
}

/* ======== Reload ======== */

static void expect_changes(const char *before, const char *after,
                           const char *expect)
{
  struct kcld_config *a = parse_ok(before), *b = parse_ok(after);
  struct kcld_config_change *ch = (struct kcld_config_change *)1;
  char got[1024] = "";
  size_t o = 0;
  int n = kcld_config_diff(a, b, &ch);
  assert_true(n >= 0);
  if (n == 0)
    assert_null(ch);
  for (int i = 0; i < n; i++)
    o += (size_t)snprintf(got + o, sizeof(got) - o, "%s%s:%s",
                          i ? " " : "", ch[i].key,
                          ch[i].live ? "live" : "restart");
  assert_string_equal(got, expect);
  free(ch);
  kcld_config_free(a);
  kcld_config_free(b);
}

static void test_diff(void **state)
{
  (void)state;
  /* Nothing changed: nothing listed (the derived worker_id is the same). */
  expect_changes(H, H "batch:\n  size: 100\n", "");
  /* In table order, each marked; derived values count. */
  expect_changes(H "log:\n  level: info\nbatch:\n  size: 10\n",
                 H "batch:\n  size: 20\nlease:\n  failover_time: 20s\n"
                   "log:\n  level: debug\n",
                 "lease.failover_time:restart lease.take_interval:restart "
                 "batch.size:live log.level:live");
  expect_changes(H, "application: app2\nstream: s\n",
                 "application:restart lease.table:restart");
  expect_changes(H "retry:\n  max_record_age: 1h\non_failure:\n  sqs: "
                   "http://q:1/1/a\n",
                 H "retry:\n  max_record_age: -1\nfetch:\n  idle_time: 2s\n"
                   "  max_records: 50\n",
                 "fetch.max_records:live fetch.idle_time:live "
                 "retry.max_record_age:live on_failure.sqs:restart "
                 "on_failure.dir:restart");
  /* Lists compare item by item; templates and secrets by value. */
  expect_changes(H "handler:\n  type: lambda\n  command: [a, b]\n",
                 H "handler:\n  type: lambda\n  command: [a, c]\n  key:\n"
                   "    pk: x\n",
                 "handler.command:restart handler.key.pk:restart");
  expect_changes(H "credentials:\n  access_key_id: A\n"
                   "  secret_access_key: one\n",
                 H "credentials:\n  access_key_id: A\n"
                   "  secret_access_key: two\n",
                 "credentials.secret_access_key:restart");
}

/* The keys a running kcld may change on reload, and only those. */
static void test_live_keys(void **state)
{
  (void)state;
  static const char *const live[] = {
    "log.level", "log.format", "batch.size", "batch.window",
    "batch.parallelization_factor", "retry.max_retry_attempts",
    "retry.bisect_on_error", "retry.max_record_age", "retry.backoff_base",
    "retry.backoff_max", "on_failure.include_records",
    "on_failure.block", "fetch.idle_time", "fetch.max_records"};
  static const char *const restart[] = {
    "application", "stream", "region", "endpoint", "endpoints.kinesis",
    "credentials.profile", "http.timeout", "worker_id", "shutdown_timeout",
    "workers", "lease.table", "lease.failover_time",
    "fetch.max_buffered_bytes", "checkpoint.interval", "handler.type",
    "handler.command", "handler.timeout", "metrics.listen", "on_failure.sqs",
    "no.such.key",
    "batch", ""};
  for (size_t i = 0; i < sizeof(live) / sizeof(live[0]); i++)
    if (!kcld_config_key_live(live[i]))
      fail_msg("%s is not live", live[i]);
  for (size_t i = 0; i < sizeof(restart) / sizeof(restart[0]); i++)
    if (kcld_config_key_live(restart[i]))
      fail_msg("%s is live", restart[i]);
}

static void test_load_errors(void **state)
{
  (void)state;
  struct kcld_config *cfg = (struct kcld_config *)1;
  char *errs = NULL;
  assert_int_equal(kcld_config_load("/nonexistent/kcld.yaml", &cfg, &errs),
                   KCLD_EIO);
  assert_null(cfg);
  assert_string_equal(errs, "/nonexistent/kcld.yaml: cannot read: No such "
                            "file or directory\n");
  free(errs);
  /* A NULL errors pointer is allowed. */
  assert_int_equal(kcld_config_parse("x", "a: 1\n", 5, &cfg, NULL),
                   KCLD_ECONFIG);
  assert_null(cfg);
  kcld_config_free(NULL);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_bad_configs),
    cmocka_unit_test(test_error_cap),
    cmocka_unit_test(test_defaults),
    cmocka_unit_test(test_key_default),
    cmocka_unit_test(test_dead_letter_dir),
    cmocka_unit_test(test_values),
    cmocka_unit_test(test_streams),
    cmocka_unit_test(test_stream_overrides),
    cmocka_unit_test(test_stream_s3),
    cmocka_unit_test(test_parse_units),
    cmocka_unit_test(test_endpoints),
    cmocka_unit_test(test_reference_files),
    cmocka_unit_test(test_reference_yields_defaults),
    cmocka_unit_test(test_local_yaml),
    cmocka_unit_test(test_full_file_round_trip),
    cmocka_unit_test(test_secrets_never_shown),
    cmocka_unit_test(test_load_errors),
    cmocka_unit_test(test_live_keys),
    cmocka_unit_test(test_size_limit),
    cmocka_unit_test(test_depth_limit),
    cmocka_unit_test(test_error_flood),
    cmocka_unit_test(test_runtime_checks),
    cmocka_unit_test(test_runtime_checks_settings),
    cmocka_unit_test(test_diff),
    cmocka_unit_test(test_filter_key),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
