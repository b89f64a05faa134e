/* fuzz.h — what the libFuzzer targets in tests/fuzz share: the entry point
 * prototypes, CHECK() for contract checks (abort, so libFuzzer keeps the
 * input as a crash) and touch() to make ASan look at every byte a parser
 * hands back. */
#ifndef KCLD_FUZZ_H
#define KCLD_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Stops the run with a message naming the broken promise. */
#define CHECK(cond)                                                     \
  do {                                                                  \
    if (!(cond)) {                                                      \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
              #cond);                                                   \
      abort();                                                          \
    }                                                                   \
  } while (0)

/* Reads every byte of [p, p+n), so that a bad pointer or length shows. */
static inline void touch(const void *p, size_t n)
{
  const volatile unsigned char *c = p;
  for (size_t i = 0; i < n; i++)
    (void)c[i];
}

#endif
