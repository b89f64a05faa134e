/* creds.c — the credential tests' answer record. */
#include "creds.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <cmocka.h>

void kcld_test_on_creds(int err, const struct kcld_creds *c, void *arg)
{
  struct kcld_test_got *g = arg;
  g->called++;
  g->err = err;
  if (err == 0) {
    assert_non_null(c);
    snprintf(g->ak, sizeof(g->ak), "%s", c->access_key_id);
    snprintf(g->sk, sizeof(g->sk), "%s", c->secret_access_key);
    g->has_tok = c->session_token != NULL;
    snprintf(g->tok, sizeof(g->tok), "%s",
             c->session_token ? c->session_token : "");
    g->exp = c->expiration;
  } else {
    assert_null(c);
  }
}
