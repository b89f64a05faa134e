/* test_window.c — one shard's tumbling window (process/window.h): the
 * window of an arrival time (Lambda's floor(arrival / tumbling) *
 * tumbling), the state kept and its 1 MiB limit, and the text the lease
 * item keeps: written with its checkpoint, resumed only at that checkpoint
 * and window length, not kept past the item's room. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "process/window.h"

static void test_start_of(void **state)
{
  struct kcld_window w = {.tumbling_ms = 120000};
  (void)state;

  /* The documentation's example: 2020-12-09T07:04:00Z..07:06:00Z. */
  assert_int_equal(kcld_window_start_of(&w, 1607497475000, 0),
                   1607497440000);
  assert_int_equal(kcld_window_start_of(&w, 1607497440000, 0),
                   1607497440000);
  assert_int_equal(kcld_window_start_of(&w, 1607497559999, 0),
                   1607497440000);
  assert_int_equal(kcld_window_start_of(&w, 1607497560000, 0),
                   1607497560000);
  /* Unknown arrival: the open window, else the window of now. */
  assert_int_equal(kcld_window_start_of(&w, -1, 1607497475000),
                   1607497440000);
  assert_int_equal(kcld_window_begin(&w, 1000 * 120), 0);
  assert_int_equal(kcld_window_start_of(&w, -1, 1607497475000), 120000);
  kcld_window_close(&w);
}

static void test_state(void **state)
{
  struct kcld_window w = {.tumbling_ms = 60000};
  char *big = malloc(KCLD_WINDOW_STATE_MAX + 2);
  (void)state;

  assert_int_equal(kcld_window_begin(&w, 60000), 0);
  assert_true(w.open);
  assert_string_equal(w.state, "{}");
  assert_int_equal(kcld_window_set_state(&w, "{\"n\":1}", 7), 0);
  assert_string_equal(w.state, "{\"n\":1}");
  assert_false(kcld_window_early(&w));
  /* Exactly 1 MiB is within the limit; one byte more ends it early. */
  memset(big, ' ', KCLD_WINDOW_STATE_MAX + 1);
  big[0] = '{';
  big[KCLD_WINDOW_STATE_MAX - 1] = '}';
  assert_int_equal(kcld_window_set_state(&w, big, KCLD_WINDOW_STATE_MAX), 0);
  assert_false(kcld_window_early(&w));
  big[KCLD_WINDOW_STATE_MAX] = '}';
  assert_int_equal(kcld_window_set_state(&w, big, KCLD_WINDOW_STATE_MAX + 1),
                   0);
  assert_true(kcld_window_early(&w));
  kcld_window_close(&w);
  assert_false(w.open);
  assert_null(w.state);
  free(big);
}

static void test_lease_text(void **state)
{
  struct kcld_window w = {.tumbling_ms = 60000}, r = {.tumbling_ms = 60000};
  struct kcld_window other = {.tumbling_ms = 30000};
  const char *why = NULL;
  char *text, *pad;
  int big;
  (void)state;

  /* No window open: nothing kept. */
  text = kcld_window_encode(&w, "49", 0, &big);
  assert_string_equal(text, "");
  free(text);

  assert_int_equal(kcld_window_begin(&w, 1700000040000), 0);
  assert_int_equal(kcld_window_set_state(&w, "{\"count\":5}", 11), 0);
  text = kcld_window_encode(&w, "49590338271490256608559692538361571095921575989136588898", 2, &big);
  assert_false(big);
  assert_string_equal(text,
                      "{\"v\":1,\"tumbling\":60000,\"start\":1700000040000,"
                      "\"checkpoint\":\"4959033827149025660855969253836157109"
                      "5921575989136588898\",\"sub\":2,\"state\":"
                      "{\"count\":5}}");
  /* Resumed at that checkpoint only, with that window length. */
  assert_int_equal(kcld_window_restore(&r, text, "49", 2, &why), 0);
  assert_non_null(strstr(why, "another checkpoint"));
  why = NULL;
  assert_int_equal(kcld_window_restore(&r, text, "4959033827149025660855969253"
                                       "8361571095921575989136588898", 0,
                                       &why),
                   0);
  assert_non_null(why);
  assert_non_null(strstr(why, "another checkpoint")); /* the sub differs */
  assert_int_equal(kcld_window_restore(&other, text, "4959033827149025660855"
                                       "9692538361571095921575989136588898",
                                       2, &why),
                   0);
  assert_non_null(strstr(why, "window.tumbling"));
  assert_false(other.open);
  why = NULL;
  assert_int_equal(kcld_window_restore(&r, "{\"x\":1}", "49", 2, &why), 0);
  assert_non_null(why);
  assert_non_null(strstr(why, "not a window kcld wrote"));
  assert_false(r.open); /* nothing refused was opened */
  assert_int_equal(kcld_window_restore(&r, text, "495903382714902566085596925"
                                       "38361571095921575989136588898", 2,
                                       &why),
                   1);
  assert_true(r.open);
  assert_int_equal(r.start_ms, 1700000040000);
  assert_string_equal(r.state, "{\"count\":5}");
  free(text);
  kcld_window_close(&r);

  /* A window that ended early, or whose text passes the item's room, is
   * not kept. */
  pad = calloc(1, KCLD_WINDOW_STORE_MAX + 16);
  memset(pad, ' ', KCLD_WINDOW_STORE_MAX + 8);
  pad[0] = '{';
  pad[KCLD_WINDOW_STORE_MAX + 7] = '}';
  assert_int_equal(kcld_window_set_state(&w, pad, strlen(pad)), 0);
  text = kcld_window_encode(&w, "49", 0, &big);
  assert_true(big);
  assert_string_equal(text, "");
  free(text);
  free(pad);
  /* A state over 1 MiB ends the window early: not kept, and not said too
   * big for the item either (it is not kept on purpose). */
  pad = calloc(1, KCLD_WINDOW_STATE_MAX + 2);
  memset(pad, ' ', KCLD_WINDOW_STATE_MAX + 1);
  pad[0] = '{';
  pad[KCLD_WINDOW_STATE_MAX] = '}';
  assert_int_equal(kcld_window_set_state(&w, pad, strlen(pad)), 0);
  assert_true(kcld_window_early(&w));
  text = kcld_window_encode(&w, "49", 0, &big);
  assert_false(big);
  assert_string_equal(text, "");
  free(text);
  free(pad);
  kcld_window_close(&w);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_start_of),
    cmocka_unit_test(test_state),
    cmocka_unit_test(test_lease_text),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
