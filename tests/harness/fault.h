/* fault.h — test-side control of the fault endpoint
 * (tests/emulators/lib/fault.js, started as the emulator "fault").
 *
 * These calls block (plain curl easy handles): use them between loop runs,
 * never from a uv callback that the endpoint must answer first. */
#ifndef KCLD_TEST_FAULT_H
#define KCLD_TEST_FAULT_H

#include <jansson.h>

/* Replaces the endpoint's script (JSON text, see fault.js) and resets its
 * stats.  Returns 0, or -1 with a message on stderr. */
int kcld_fault_script(const char *fault_url, const char *script_json);

/* A script of `steps` (a JSON array's text) in front of `upstream`, to
 * which every request goes once the steps are used up ("then": "proxy").
 * Returns 0, or -1 with a message on stderr. */
int kcld_fault_steps(const char *fault_url, const char *upstream,
                     const char *steps);

/* POSTs `body` to fault_url + path and returns the parsed JSON answer (the
 * caller decrefs), or NULL with a message on stderr. */
json_t *kcld_fault_post(const char *fault_url, const char *path,
                        const char *body);

/* The endpoint's stats object (the caller decrefs), or NULL. */
json_t *kcld_fault_stats(const char *fault_url);

/* One integer from the stats ("total", "data_connections", ...), or, when
 * `target` is non-NULL, the count for that X-Amz-Target; -1 on error. */
long kcld_fault_count(const char *fault_url, const char *key,
                      const char *target);

#endif
