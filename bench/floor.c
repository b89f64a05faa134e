/* floor.c — the C floor of a consumer's work: find each record's data in a
 * GetRecords body and base64-decode it, and (http) receive the bodies first.
 *
 *   floor mem BODIES_FILE [PASSES]
 *   floor http URL SHARDS [recv]
 *
 * mem: BODIES_FILE holds the bodies the fixture serves (bench/node/fixture.mjs
 * --dump), each prefixed by its length as uint32 little-endian; the file is
 * read into memory first, then every body is scanned PASSES times (default
 * 1).  http: reads every shard 0..SHARDS-1 of the fixture at URL from its
 * first body to its end, one shard after the other, over one libcurl
 * keep-alive connection, receiving each body into one buffer reused across
 * calls (the next iterator comes in the fixture's x-bench-next header); with
 * `recv` the bodies are received and not scanned (the cost of receiving
 * alone).
 *
 * The scan is the least any consumer does: memmem() for `"Data":"`, memchr()
 * for the closing quote, EVP_DecodeBlock() into one reused buffer; no JSON
 * validation, no record structure, no other field.  One thread.  One JSON
 * line goes to stdout: records, decoded bytes, bodies, body bytes, seconds of
 * wall time, CPU seconds, minor + major page faults over the measured part,
 * and peak RSS (KiB). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/evp.h>

struct buf {
  char *p;
  size_t len, cap;
};

struct tally {
  unsigned long long records, bytes, bodies, body_bytes;
  unsigned char *out;
  size_t out_cap;
};

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The measured part of a run: wall clock, CPU and page faults at its start. */
struct span {
  double wall, cpu;
  long faults;
};

static void usage_now(struct span *sp, long *maxrss)
{
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  sp->wall = now_s();
  sp->cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
            (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
  sp->faults = ru.ru_minflt + ru.ru_majflt;
  *maxrss = ru.ru_maxrss;
}

/* Prints the JSON line of a run whose measured part began at *start. */
static void report(const struct tally *t, const struct span *start)
{
  struct span end;
  long rss;
  usage_now(&end, &rss);
  printf("{\"records\":%llu,\"bytes\":%llu,\"bodies\":%llu,"
         "\"body_bytes\":%llu,\"seconds\":%.6f,\"cpu\":%.6f,"
         "\"faults\":%ld,\"rss_kib\":%ld}\n",
         t->records, t->bytes, t->bodies, t->body_bytes, end.wall - start->wall,
         end.cpu - start->cpu, end.faults - start->faults, rss);
}

/* Ensures room for n bytes in b; 0 or -1. */
static int reserve(struct buf *b, size_t n)
{
  if (n <= b->cap)
    return 0;
  size_t cap = b->cap ? b->cap : 65536;
  while (cap < n)
    cap *= 2;
  char *p = realloc(b->p, cap);
  if (!p)
    return -1;
  b->p = p;
  b->cap = cap;
  return 0;
}

/* Decodes every record's Data in body[0..len); 0, or -1 on a body that is
 * not what the fixture serves. */
static int scan(struct tally *t, const char *body, size_t len)
{
  static const char key[] = "\"Data\":\"";
  const char *p = body, *end = body + len;

  t->bodies++;
  t->body_bytes += len;
  for (;;) {
    const char *d = memmem(p, (size_t)(end - p), key, sizeof key - 1);
    if (!d)
      return 0;
    d += sizeof key - 1;
    const char *q = memchr(d, '"', (size_t)(end - d));
    if (!q)
      return -1;
    size_t n = (size_t)(q - d);
    if (n / 4 * 3 > t->out_cap) {
      unsigned char *o = realloc(t->out, n / 4 * 3);
      if (!o)
        return -1;
      t->out = o;
      t->out_cap = n / 4 * 3;
    }
    int m = EVP_DecodeBlock(t->out, (const unsigned char *)d, (int)n);
    if (m < 0)
      return -1;
    if (n > 0 && d[n - 1] == '=')
      m--;
    if (n > 1 && d[n - 2] == '=')
      m--;
    t->records++;
    t->bytes += (unsigned long long)m;
    p = q + 1;
  }
}

static int run_mem(struct tally *t, const char *file, int passes)
{
  FILE *f = fopen(file, "rb");
  if (!f) {
    fprintf(stderr, "floor: cannot open %s\n", file);
    return -1;
  }
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *all = malloc(size > 0 ? (size_t)size : 1);
  if (!all || fread(all, 1, (size_t)size, f) != (size_t)size) {
    fprintf(stderr, "floor: cannot read %s\n", file);
    fclose(f);
    free(all);
    return -1;
  }
  fclose(f);
  /* Touch the decode buffer once so the measured part is the scan. */
  t->out = malloc(1 << 16);
  t->out_cap = t->out ? 1 << 16 : 0;
  int rc = 0;
  struct span sp;
  long rss;
  usage_now(&sp, &rss);
  for (int pass = 0; pass < passes && rc == 0; pass++) {
    for (long off = 0; off + 4 <= size;) {
      uint32_t len;
      memcpy(&len, all + off, 4);
      off += 4;
      if ((long)len > size - off || scan(t, all + off, len) != 0) {
        fprintf(stderr, "floor: bad body at offset %ld\n", off);
        rc = -1;
        break;
      }
      off += len;
    }
  }
  if (rc == 0)
    report(t, &sp);
  free(all);
  return rc;
}

struct xfer {
  struct buf body;
  char next[64];
};

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
  struct xfer *x = arg;
  size_t len = size * n;
  if (reserve(&x->body, x->body.len + len) != 0)
    return 0;
  memcpy(x->body.p + x->body.len, data, len);
  x->body.len += len;
  return len;
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
  static const char name[] = "x-bench-next:";
  struct xfer *x = arg;
  size_t len = size * n;
  if (len > sizeof name - 1 && strncasecmp(data, name, sizeof name - 1) == 0) {
    const char *v = data + sizeof name - 1;
    size_t vl = len - (sizeof name - 1);
    while (vl && (*v == ' ' || *v == '\t'))
      v++, vl--;
    while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
      vl--;
    if (vl >= sizeof x->next)
      vl = sizeof x->next - 1;
    memcpy(x->next, v, vl);
    x->next[vl] = '\0';
  }
  return len;
}

static int run_http(struct tally *t, const char *url, int shards, int recv_only)
{
  struct xfer x = { { NULL, 0, 0 }, "" };
  struct curl_slist *hdr = NULL;
  char req[128];
  int rc = 0;
  CURL *c = curl_easy_init();
  if (!c)
    return -1;
  hdr = curl_slist_append(hdr, "Content-Type: application/x-amz-json-1.1");
  hdr = curl_slist_append(hdr, "X-Amz-Target: Kinesis_20131202.GetRecords");
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &x);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &x);
  curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
  t->out = malloc(1 << 16);
  t->out_cap = t->out ? 1 << 16 : 0;
  struct span sp;
  long rss;
  usage_now(&sp, &rss);
  for (int s = 0; s < shards && rc == 0; s++) {
    snprintf(x.next, sizeof x.next, "it-%d-0", s);
    while (x.next[0] && rc == 0) {
      snprintf(req, sizeof req, "{\"ShardIterator\":\"%s\",\"Limit\":10000}",
               x.next);
      x.next[0] = '\0';
      x.body.len = 0;
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, req);
      CURLcode cc = curl_easy_perform(c);
      long status = 0;
      curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
      if (cc != CURLE_OK || status != 200) {
        fprintf(stderr, "floor: GetRecords: %s, HTTP %ld\n",
                curl_easy_strerror(cc), status);
        rc = -1;
      } else if (recv_only) {
        t->bodies++;
        t->body_bytes += x.body.len;
      } else if (scan(t, x.body.p, x.body.len) != 0) {
        fprintf(stderr, "floor: bad body from %s\n", url);
        rc = -1;
      }
    }
  }
  if (rc == 0)
    report(t, &sp);
  curl_easy_cleanup(c);
  curl_slist_free_all(hdr);
  free(x.body.p);
  return rc;
}

int main(int argc, char **argv)
{
  struct tally t = { 0, 0, 0, 0, NULL, 0 };
  int rc = -1;

  if (argc >= 3 && strcmp(argv[1], "mem") == 0) {
    rc = run_mem(&t, argv[2], argc > 3 ? atoi(argv[3]) : 1);
  } else if (argc >= 4 && strcmp(argv[1], "http") == 0) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    rc = run_http(&t, argv[2], atoi(argv[3]),
                  argc > 4 && strcmp(argv[4], "recv") == 0);
    curl_global_cleanup();
  } else {
    fprintf(stderr, "usage: floor mem BODIES_FILE [PASSES]\n"
                    "       floor http URL SHARDS [recv]\n");
    return 2;
  }
  free(t.out);
  return rc == 0 ? 0 : 1;
}
