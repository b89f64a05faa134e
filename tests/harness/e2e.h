/* e2e.h — set-up steps shared by the end-to-end tests that run kcld (or
 * its engine) against the emulators: AWS calls that must succeed, streams
 * created and awaited, records put, a kcld config written, a log shown when
 * a test fails. */
#ifndef KCLD_TEST_E2E_H
#define KCLD_TEST_E2E_H

#include <jansson.h>
#include <stddef.h>
#include <sys/types.h>

#include "awssync.h"
#include "harness.h"

/* The usual fixture of an end-to-end test: the kinesis and dynamodb
 * emulators, a client on them in *aws, and a new directory
 * /tmp/kcld-<tag>-XXXXXX in dir (of dirlen bytes).  Returns 0, or -1 (a
 * cmocka setup then fails). */
int kcld_e2e_fixture_start(struct kcld_emu *emu, struct kcld_test_aws **aws,
                           char *dir, size_t dirlen, const char *tag);

/* kcld_e2e_fixture_start with the emulators `emulators` (as for
 * kcld_emu_start, e.g. "kinesis_efo dynamodb" or "kinesis dynamodb
 * fault"), the client's Kinesis endpoint the emulator named `kinesis`
 * among them (e.g. "kinesis_efo"); DynamoDB is "dynamodb". */
int kcld_e2e_fixture_start_with(struct kcld_emu *emu,
                                struct kcld_test_aws **aws, char *dir,
                                size_t dirlen, const char *tag,
                                const char *emulators, const char *kinesis);

/* Undoes kcld_e2e_fixture_start: the client, the emulators, the directory
 * and what it holds. */
void kcld_e2e_fixture_stop(struct kcld_emu *emu, struct kcld_test_aws *aws,
                           const char *dir);

/* Calls `op` with `req` (taken) and returns the answer (a new reference);
 * fails the test, naming `op` and the AWS error type, when the call fails. */
json_t *kcld_e2e_call(struct kcld_test_aws *t, enum kcld_aws_service svc,
                      const char *op, json_t *req);

/* Polls DescribeStreamSummary every 50 ms until `stream` is ACTIVE; fails
 * the test when it is not after 200 polls. */
void kcld_e2e_wait_stream_active(struct kcld_test_aws *t, const char *stream);

/* CreateStream `stream` with `shards` shards, then waits for ACTIVE as
 * kcld_e2e_wait_stream_active does. */
void kcld_e2e_create_stream(struct kcld_test_aws *t, const char *stream,
                            int shards);

/* CreateTable `name` as kcld creates a lease table (hash key leaseKey S,
 * on-demand), then waits for ACTIVE (50 ms polls; fails the test after
 * 200): a table for a test to write KCL lease items into before kcld
 * starts. */
void kcld_e2e_create_lease_table(struct kcld_test_aws *t, const char *name);

/* One PutRecords of `n` records (at most 500): data[i], text that is base64
 * encoded here, under partition key keys[i].  Asserts that none failed.
 * When `produced` is not NULL, appends {shard, seq, data, pk} to it for
 * each record, in put order. */
void kcld_e2e_put_records(struct kcld_test_aws *t, const char *stream,
                          const char *const *data, const char *const *keys,
                          size_t n, json_t *produced);

/* Writes a kcld YAML config to `path`: application `app`, stream `stream`
 * (none when NULL: `rest` then lists `streams:`),
 * the emulators' kinesis and dynamodb endpoints, test credentials,
 * shutdown_timeout 10s, 2 workers, failover_time 1s, fetch idle_time 200ms,
 * no metrics listener (unless `rest` has a metrics: section), log level
 * info; then `rest` (top-level YAML lines:
 * the handler and whatever else the test sets).  Fails the test when the
 * file cannot be written. */
void kcld_e2e_write_config(const char *path, const struct kcld_emu *emu,
                           const char *app, const char *stream,
                           const char *rest);

/* kcld_e2e_write_config with these Kinesis and DynamoDB endpoints (e.g. a
 * fault endpoint in front of one emulator). */
void kcld_e2e_write_config_at(const char *path, const char *kinesis_url,
                              const char *dynamodb_url, const char *app,
                              const char *stream, const char *rest);

/* Sends kcld `pid` SIGTERM and waits up to `timeout_ms` for it to exit;
 * fails the test (after showing `log`, when not NULL, as kcld_e2e_dump_file
 * does) unless it exits with status 0 in time.  Reaps it either way. */
void kcld_e2e_stop_kcld(pid_t pid, const char *log, unsigned timeout_ms);

/* Waits up to `timeout_ms` for kcld `*pid` to exit by itself (a refused
 * start-up, a signal the test sent) and returns its exit code; *pid is 0
 * afterwards (reaped).  Fails the test, showing `log` (when not NULL) as
 * kcld_e2e_dump_file does and saying "kcld <what>", when it is still
 * running then (it is killed) or ended by a signal. */
int kcld_e2e_await_exit(pid_t *pid, const char *log, unsigned timeout_ms,
                        const char *what);

/* Writes the file at `path` to stderr between "---- path ----" and a blank
 * line; nothing when it cannot be read.  For a failing test's kcld log. */
void kcld_e2e_dump_file(const char *path);

/* Lines in the file at `path` (0 when it cannot be read). */
size_t kcld_e2e_lines_in(const char *path);

/* Lines of the file at `path` that contain both `a` and `b` (0 when it
 * cannot be read). */
size_t kcld_e2e_lines_with(const char *path, const char *a, const char *b);

/* 1 when the file at `path` contains `what`, else 0. */
int kcld_e2e_file_has(const char *path, const char *what);

#endif
