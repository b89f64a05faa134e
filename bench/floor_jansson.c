/* floor_jansson.c — the jansson-tree figure: parse GetRecords bodies into a
 * jansson tree and base64-decode every record's Data, in a tight loop, in
 * process.  Not a floor (kcld's scanner builds no tree and costs far less);
 * kept as the reference the earlier benchmarks used.  The floor is floor.c.
 *
 *   floor-jansson BODIES_FILE [PASSES]
 *
 * BODIES_FILE holds the bodies the fixture serves (bench/node/fixture.mjs
 * --dump), each prefixed by its length as uint32 little-endian.  The file is
 * read into memory first; then the bodies are parsed and decoded PASSES times
 * (default 1) and one JSON line goes to stdout: records, decoded bytes,
 * seconds of wall time, CPU seconds, page faults (minor + major) of the loop,
 * and peak RSS (KiB). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(long *faults, long *maxrss)
{
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  *faults = ru.ru_minflt + ru.ru_majflt;
  *maxrss = ru.ru_maxrss;
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv)
{
  FILE *f;
  long size;
  unsigned char *buf, *out = NULL;
  size_t out_cap = 0;
  unsigned long long records = 0, bytes = 0;
  int passes = argc > 2 ? atoi(argv[2]) : 1;

  if (argc < 2 || !(f = fopen(argv[1], "rb"))) {
    fprintf(stderr, "usage: floor-jansson BODIES_FILE [PASSES]\n");
    return 2;
  }
  fseek(f, 0, SEEK_END);
  size = ftell(f);
  fseek(f, 0, SEEK_SET);
  buf = malloc((size_t)size);
  if (!buf || fread(buf, 1, (size_t)size, f) != (size_t)size) {
    fprintf(stderr, "floor-jansson: cannot read %s\n", argv[1]);
    return 1;
  }
  fclose(f);

  long f0, f1, rss;
  double t0 = now_s(), c0 = cpu_s(&f0, &rss);
  for (int p = 0; p < passes; p++) {
    for (long off = 0; off + 4 <= size;) {
      uint32_t len;
      memcpy(&len, buf + off, 4);
      off += 4;
      json_error_t err;
      json_t *body = json_loadb((const char *)buf + off, len, 0, &err);
      off += len;
      if (!body) {
        fprintf(stderr, "floor-jansson: bad body: %s\n", err.text);
        return 1;
      }
      json_t *recs = json_object_get(body, "Records"), *r;
      size_t i;
      json_array_foreach(recs, i, r) {
        json_t *d = json_object_get(r, "Data");
        const char *b64 = json_string_value(d);
        size_t n = json_string_length(d);
        if (n / 4 * 3 + 1 > out_cap) {
          out_cap = n / 4 * 3 + 1;
          out = realloc(out, out_cap);
        }
        int m = EVP_DecodeBlock(out, (const unsigned char *)b64, (int)n);
        if (m < 0) {
          fprintf(stderr, "floor-jansson: bad base64\n");
          return 1;
        }
        if (n > 0 && b64[n - 1] == '=')
          m--;
        if (n > 1 && b64[n - 2] == '=')
          m--;
        records++;
        bytes += (unsigned long long)m;
      }
      json_decref(body);
    }
  }
  double secs = now_s() - t0, cpu = cpu_s(&f1, &rss) - c0;
  printf("{\"records\":%llu,\"bytes\":%llu,\"seconds\":%.6f,\"cpu\":%.6f,"
         "\"faults\":%ld,\"rss_kib\":%ld}\n",
         records, bytes, secs, cpu, f1 - f0, rss);
  free(out);
  free(buf);
  return 0;
}
