/* main.c — command line, signals and lifecycle of the kcld daemon. */
#include <stdio.h>
#include <string.h>

#include "kcld/version.h"

int main(int argc, char **argv)
{
  if (argc > 1 && strcmp(argv[1], "--version") == 0) {
    printf("kcld %s\n", KCLD_VERSION_STRING);
    return 0;
  }
  fprintf(stderr, "usage: kcld --version\n");
  return 2;
}
