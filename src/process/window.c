/* window.c — one shard's tumbling window: its start, its state.  See
 * window.h. */
#include "process/window.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "err.h"

static int64_t floor_to(int64_t v, int64_t step)
{
  int64_t q = v / step;
  if (v % step < 0)
    q--;
  return q * step;
}

int64_t kcld_window_start_of(const struct kcld_window *w, int64_t arrival_ms,
                             int64_t now_ms)
{
  if (arrival_ms < 0) {
    if (w->open)
      return w->start_ms;
    arrival_ms = now_ms;
  }
  return floor_to(arrival_ms, w->tumbling_ms);
}

void kcld_window_take_state(struct kcld_window *w, char *state, size_t len)
{
  free(w->state);
  w->state = state;
  w->state_len = len;
}

int kcld_window_set_state(struct kcld_window *w, const char *state,
                          size_t len)
{
  char *copy = malloc(len + 1);

  if (!copy)
    return KCLD_ENOMEM;
  memcpy(copy, state, len);
  copy[len] = '\0';
  kcld_window_take_state(w, copy, len);
  return 0;
}

int kcld_window_begin(struct kcld_window *w, int64_t start_ms)
{
  int rc = kcld_window_set_state(w, "{}", 2);

  if (rc == 0) {
    w->open = 1;
    w->start_ms = start_ms;
  }
  return rc;
}

void kcld_window_close(struct kcld_window *w)
{
  free(w->state);
  w->state = NULL;
  w->state_len = 0;
  w->open = 0;
}

char *kcld_window_encode(const struct kcld_window *w, const char *sequence,
                         uint64_t sub, int *too_big)
{
  char *text = NULL;
  int n;

  *too_big = 0;
  if (!w->open || kcld_window_early(w) || !sequence)
    return strdup("");
  n = asprintf(&text,
               "{\"v\":1,\"tumbling\":%" PRId64 ",\"start\":%" PRId64
               ",\"checkpoint\":\"%s\",\"sub\":%" PRIu64 ",\"state\":%s}",
               w->tumbling_ms, w->start_ms, sequence, sub, w->state);
  if (n < 0)
    return NULL;
  if ((size_t)n > KCLD_WINDOW_STORE_MAX) {
    *too_big = 1;
    free(text);
    return strdup("");
  }
  return text;
}

int kcld_window_restore(struct kcld_window *w, const char *text,
                        const char *sequence, uint64_t sub,
                        const char **why)
{
  json_error_t jerr;
  json_t *root = json_loads(text, 0, &jerr);
  const json_t *state = json_object_get(root, "state");
  const char *cp = json_string_value(json_object_get(root, "checkpoint"));
  json_int_t tumbling =
    json_integer_value(json_object_get(root, "tumbling"));
  const json_t *start = json_object_get(root, "start");
  char *st = NULL;
  int rc = 0;

  if (!json_is_object(state) || !cp || !json_is_integer(start) ||
      json_integer_value(json_object_get(root, "v")) != 1) {
    *why = "not a window kcld wrote";
  } else if (tumbling != w->tumbling_ms) {
    *why = "written with another window.tumbling";
  } else if (!sequence || strcmp(cp, sequence) != 0 ||
             (uint64_t)json_integer_value(json_object_get(root, "sub")) !=
               sub) {
    *why = "written with another checkpoint (another consumer "
           "checkpointed since)";
  } else if (!(st = json_dumps(state, JSON_COMPACT | JSON_REAL_PRECISION(17)))) {
    rc = KCLD_ENOMEM;
  } else if ((rc = kcld_window_set_state(w, st, strlen(st))) == 0) {
    w->open = 1;
    w->start_ms = json_integer_value(start);
    rc = 1;
  }
  free(st);
  json_decref(root);
  return rc;
}
