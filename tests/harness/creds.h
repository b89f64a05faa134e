/* creds.h — what the credential tests share: a record of one
 * kcld_credentials_get() answer. */
#ifndef KCLD_TEST_CREDS_H
#define KCLD_TEST_CREDS_H

#include <time.h>

#include "aws/credentials.h"

/* One answer (zero it before the call). */
struct kcld_test_got {
  int called;                  /* times the callback ran */
  int err;
  char ak[128], sk[128], tok[256];
  int has_tok;                 /* a session token came with the set */
  time_t exp;
};

/* A kcld_credentials_cb that copies the answer into `arg` (a struct
 * kcld_test_got), asserting a set comes with err 0 and none otherwise. */
void kcld_test_on_creds(int err, const struct kcld_creds *c, void *arg);

#endif
