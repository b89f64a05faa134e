/* fuzz_config.c — libFuzzer target for kcld_config_parse(), and for the
 * duration and size parsers it uses.
 *
 * The input is the YAML text, given without a terminating NUL.  Most
 * mutations would fail on the two required keys alone, so when the input
 * does not mention "application" or "stream" those lines are put in front
 * (which suits block mappings, the usual shape).  Checked
 * against config.h: a failed parse returns no config and (unless out of
 * memory) an error text of whole lines; a config that parses dumps to YAML
 * that parses back to a config that dumps the same (the round trip that
 * kcld --dump-config promises).  Inputs under 64 bytes are also given, as a
 * string, to kcld_config_parse_duration() and kcld_config_parse_size(),
 * whose results must survive formatting and parsing back. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "err.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc;
  (void)argv;
  /* Fixed values for the variables a config may expand, so that the run
   * does not depend on the caller's environment. */
  setenv("KCLD_FUZZ_VAR", "42s", 1);
  unsetenv("AWS_REGION");
  unsetenv("AWS_DEFAULT_REGION");
  unsetenv("AWS_PROFILE");
  return 0;
}

static void check_units(const uint8_t *data, size_t size)
{
  char text[64], buf[64];
  int64_t v, w;
  if (size >= sizeof(text))
    return;
  memcpy(text, data, size);
  text[size] = '\0';
  if (kcld_config_parse_duration(text, &v) == 0) {
    kcld_config_format_duration(v, buf, sizeof(buf));
    CHECK(kcld_config_parse_duration(buf, &w) == 0);
    CHECK(w == v);
  }
  if (kcld_config_parse_size(text, &v) == 0) {
    kcld_config_format_size(v, buf, sizeof(buf));
    CHECK(kcld_config_parse_size(buf, &w) == 0);
    CHECK(w == v);
  }
}

/* A copy of data[0..size) in a new exact-size buffer, with the required
 * keys in front when the input does not mention them; NULL when out of
 * memory. */
static char *with_required(const uint8_t *data, size_t size, size_t *len)
{
  static const char app[] = "application: fuzz-app\n";
  static const char stream[] = "stream: fuzz-stream\n";
  size_t a = memmem(data, size, "application", 11) ? 0 : sizeof(app) - 1;
  size_t s = memmem(data, size, "stream", 6) ? 0 : sizeof(stream) - 1;
  char *text = malloc(a + s + size + 1);
  if (!text)
    return NULL;
  memcpy(text, app, a);
  memcpy(text + a, stream, s);
  if (size)
    memcpy(text + a + s, data, size);
  *len = a + s + size;
  return text;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct kcld_config *cfg = (struct kcld_config *)1, *again = NULL;
  char *errors = (char *)1, *dump = NULL, *dump2 = NULL;
  size_t len = 0;

  check_units(data, size);
  char *text = with_required(data, size, &len);
  if (!text)
    return 0;
  int rc = kcld_config_parse("fuzz.yaml", text, len, &cfg, &errors);
  free(text);
  if (rc != 0) {
    CHECK(rc == KCLD_ECONFIG || rc == KCLD_ENOMEM);
    CHECK(cfg == NULL);
    if (rc == KCLD_ECONFIG) {
      CHECK(errors != NULL && errors[0] != '\0');
      CHECK(errors[strlen(errors) - 1] == '\n');
    }
    free(errors);
    return 0;
  }
  CHECK(cfg != NULL);
  CHECK(errors == NULL);

  dump = kcld_config_dump(cfg);
  CHECK(dump != NULL);
  rc = kcld_config_parse("dump.yaml", dump, strlen(dump), &again, &errors);
  if (rc != 0) {
    fprintf(stderr, "the dump does not parse back:\n%s\n--- errors:\n%s",
            dump, errors ? errors : "(none)\n");
    CHECK(rc == 0);
  }
  dump2 = kcld_config_dump(again);
  CHECK(dump2 != NULL);
  /* The first line names the file; the rest must be equal. */
  const char *a = strchr(dump, '\n'), *b = strchr(dump2, '\n');
  CHECK(a && b);
  if (strcmp(a, b) != 0) {
    fprintf(stderr, "dump of the dump differs:\n%s\n--- vs:\n%s\n", dump,
            dump2);
    CHECK(strcmp(a, b) == 0);
  }
  free(dump);
  free(dump2);
  kcld_config_free(again);
  kcld_config_free(cfg);
  return 0;
}
