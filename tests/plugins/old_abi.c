/* old_abi.c — a plugin built for ABI version 1 (before tumbling windows):
 * kcld still runs it without a window, and refuses it with one.  It is
 * bad_abi.c with that version. */
#define TEST_PLUGIN_ABI 1u
#include "bad_abi.c"
