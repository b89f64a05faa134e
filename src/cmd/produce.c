/* produce.c — `kcld produce`: events generated at a rate, PutRecords calls
 * of up to 500 records (at most MAX_INFLIGHT at a time), failed entries
 * retried with backoff, a progress line and a final count.
 *
 * The pump runs on every tick (TICK_MS) and after every answer: it fills
 * calls from the retry list first, then with new records as far as the rate,
 * the count and the duration allow.  The run ends when nothing is left to
 * generate or retry and no call is in flight. */
#include "cmd/produce.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "aws/http.h"
#include "base/backoff.h"
#include "base/kpl.h"
#include "base/rand.h"
#include "cmd/cli.h"
#include "err.h"

#define TICK_MS 20
#define PROGRESS_MS 1000
#define MAX_INFLIGHT 4
#define MAX_WHOLE_FAILURES 10
#define AGG_MAX_BYTES (900 * 1024)
#define DEFAULT_KEYS 100
#define DEFAULT_ATTEMPTS 10

/* ======== Random numbers ======== */

static double rnd01(uint64_t *s)
{
  return (double)(kcld_rand_next(s) >> 11) / 9007199254740992.0;
}

/* ======== Events ======== */

static const char *const s_devices[] = {"mobile", "desktop", "tablet"};
static const char *const s_places[][2] = {
  {"US", "Seattle"}, {"US", "New York"}, {"DE", "Berlin"},
  {"GB", "London"},  {"JP", "Tokyo"},    {"BR", "Sao Paulo"},
  {"IN", "Mumbai"},  {"FR", "Paris"},
};
static const char *const s_currencies[] = {"USD", "EUR", "GBP", "JPY"};
static const char *const s_signups[] = {"email", "google", "apple",
                                        "facebook"};
static const char *const s_campaigns[] = {"organic", "newsletter", "search",
                                          "social", "referral"};

#define PICK(rng, a) \
  ((a)[kcld_rand_next(rng) % (sizeof(a) / sizeof((a)[0]))])

char *kcld_produce_event(uint64_t *rng, unsigned user, int64_t now_ms,
                         size_t size, size_t *len)
{
  char ts[96], typed[256], *out;
  time_t secs = (time_t)(now_ms / 1000);
  struct tm tm;
  int n, kind = (int)(kcld_rand_next(rng) % 4);
  static const char *const kinds[] = {"page_view", "purchase", "user_signup",
                                      "click"};
  const char *const *place = s_places[kcld_rand_next(rng) % 8];

  gmtime_r(&secs, &tm);
  snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
           tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
           tm.tm_min, tm.tm_sec, (int)(now_ms % 1000));
  switch (kind) {
  case 1:
    snprintf(typed, sizeof(typed),
             "\"amount\":%u.%02u,\"currency\":\"%s\",\"itemsCount\":%u",
             (unsigned)(kcld_rand_next(rng) % 500),
             (unsigned)(kcld_rand_next(rng) % 100), PICK(rng, s_currencies),
             1 + (unsigned)(kcld_rand_next(rng) % 9));
    break;
  case 2:
    snprintf(typed, sizeof(typed),
             "\"signupMethod\":\"%s\",\"campaignSource\":\"%s\"",
             PICK(rng, s_signups), PICK(rng, s_campaigns));
    break;
  default:
    snprintf(typed, sizeof(typed),
             "\"pageUrl\":\"/products/%u\",\"loadTime\":%u.%03u,"
             "\"sessionLength\":%u,\"pagesViewed\":%u",
             (unsigned)(kcld_rand_next(rng) % 1000),
             (unsigned)(kcld_rand_next(rng) % 3),
             (unsigned)(kcld_rand_next(rng) % 1000),
             (unsigned)(kcld_rand_next(rng) % 3600),
             1 + (unsigned)(kcld_rand_next(rng) % 40));
    break;
  }
  char *base = NULL;
  n = asprintf(&base,
               "{\"eventType\":\"%s\",\"userId\":\"user-%u\","
               "\"sessionId\":\"sess-%016" PRIx64 "\",\"deviceType\":\"%s\","
               "\"timestamp\":\"%s\",\"location\":{\"country\":\"%s\","
               "\"city\":\"%s\"},%s}",
               kinds[kind], user, kcld_rand_next(rng), PICK(rng, s_devices), ts,
               place[0], place[1], typed);
  if (n < 0)
    return NULL;
  static const char pad_field[] = ",\"padding\":\"\"";
  size_t blen = (size_t)n, extra = 0;
  if (size > blen) {
    extra = size - blen;
    extra = extra > sizeof(pad_field) - 1 ? extra - (sizeof(pad_field) - 1)
                                          : 0;
  }
  if (size <= blen) {
    *len = blen;
    return base;
  }
  out = malloc(blen + sizeof(pad_field) + extra);
  if (!out) {
    free(base);
    return NULL;
  }
  /* base ends with '}': insert the padding field before it. */
  memcpy(out, base, blen - 1);
  size_t o = blen - 1;
  memcpy(out + o, ",\"padding\":\"", 12);
  o += 12;
  memset(out + o, 'x', extra);
  o += extra;
  memcpy(out + o, "\"}", 3);
  o += 2;
  free(base);
  *len = o;
  return out;
}

/* ======== Hash keys ======== */

char *kcld_produce_hash_key(const char *partition_key, char *buf, size_t n)
{
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  char digits[48];
  size_t nd = 0;

  if (n == 0)
    return buf;
  buf[0] = '\0';
  if (EVP_Digest(partition_key, strlen(partition_key), md, &mdlen, EVP_md5(),
                 NULL) != 1 || mdlen != 16)
    return buf;
  /* Repeated division of the 16-byte big-endian number by 10. */
  for (;;) {
    int zero = 1;
    unsigned rem = 0;
    for (int i = 0; i < 16; i++) {
      unsigned cur = (rem << 8) | md[i];
      md[i] = (unsigned char)(cur / 10);
      rem = cur % 10;
      if (md[i])
        zero = 0;
    }
    digits[nd++] = (char)('0' + rem);
    if (zero)
      break;
  }
  size_t o = 0;
  while (nd > 0 && o + 1 < n)
    buf[o++] = digits[--nd];
  buf[o] = '\0';
  return buf;
}

/* ======== The run ======== */

struct rec {
  struct rec *next;
  uint8_t *data;
  size_t len;
  char pk[32];
  char ehk[48];             /* "" = none */
  unsigned users;           /* user records inside */
  unsigned poison;          /* of which malformed */
  int attempts;
};

struct call {
  struct producer *p;
  struct rec **recs;
  size_t n;
};

struct producer {
  const struct kcld_produce_opts *o;
  struct kcld_produce_result *res;
  struct kcld_cli_aws cli;
  struct kcld_kinesis *k;
  const char *stream;
  uv_timer_t tick;
  uv_signal_t sigint, sigterm;
  uint64_t rng;
  uint64_t start_ms, last_progress_ms, backoff_until_ms;
  uint64_t generated;       /* user records generated */
  unsigned keys, agg;
  struct rec *retry, **retry_tail;
  int in_flight, whole_failures, stop, fatal, done, handles;
  uint64_t last_progress_count;
};

static void rec_free(struct rec *r)
{
  if (r) {
    free(r->data);
    free(r);
  }
}

static uint64_t now_ms(struct producer *p)
{
  return uv_now(&p->cli.loop);
}

/* How many more user records may be generated now. */
static uint64_t allowance(struct producer *p)
{
  const struct kcld_produce_opts *o = p->o;
  uint64_t left = UINT64_MAX, t = now_ms(p) - p->start_ms;
  if (p->stop)
    return 0;
  if (o->duration_ms && t >= o->duration_ms)
    return 0;
  if (o->count)
    left = o->count > p->generated ? o->count - p->generated : 0;
  if (o->rate > 0) {
    double may = floor(o->rate * (double)t / 1000.0) + 1;
    uint64_t by_rate = may > (double)p->generated
                         ? (uint64_t)(may - (double)p->generated) : 0;
    if (by_rate < left)
      left = by_rate;
  }
  return left;
}

static int more_to_generate(struct producer *p)
{
  const struct kcld_produce_opts *o = p->o;
  if (p->stop || p->fatal)
    return 0;
  if (o->count && p->generated >= o->count)
    return 0;
  if (o->duration_ms && now_ms(p) - p->start_ms >= o->duration_ms)
    return 0;
  return 1;
}

static char *one_payload(struct producer *p, unsigned user, int *poison,
                         size_t *len)
{
  if (p->o->poison_rate > 0 && rnd01(&p->rng) < p->o->poison_rate) {
    char *s = NULL;
    int n = asprintf(&s, "!poison %" PRIu64 ": this is not JSON {\"user\":",
                     p->generated);
    *poison = 1;
    if (n < 0)
      return NULL;
    *len = (size_t)n;
    return s;
  }
  *poison = 0;
  return kcld_produce_event(&p->rng, user, (int64_t)time(NULL) * 1000 +
                            (int64_t)(now_ms(p) % 1000), p->o->size, len);
}

/* Makes the next Kinesis record of up to `users` user records. */
static struct rec *generate(struct producer *p, uint64_t users)
{
  struct rec *r = calloc(1, sizeof(*r));
  if (!r)
    return NULL;
  if (users <= 1) {
    unsigned user = (unsigned)(kcld_rand_next(&p->rng) % p->keys);
    int poison;
    snprintf(r->pk, sizeof(r->pk), "user-%u", user);
    r->data = (uint8_t *)one_payload(p, user, &poison, &r->len);
    if (!r->data) {
      free(r);
      return NULL;
    }
    r->users = 1;
    r->poison = (unsigned)poison;
    p->generated++;
    return r;
  }
  /* An aggregate: user records until `users` or the size cap. */
  struct kcld_kpl_record *subs = calloc(users, sizeof(*subs));
  char (*pks)[32] = calloc(users, sizeof(*pks));
  size_t n = 0, total = 0;
  int ok = subs && pks;
  while (ok && n < users && total < AGG_MAX_BYTES) {
    unsigned user = (unsigned)(kcld_rand_next(&p->rng) % p->keys);
    int poison;
    size_t len;
    char *d = one_payload(p, user, &poison, &len);
    if (!d) {
      ok = 0;
      break;
    }
    snprintf(pks[n], sizeof(pks[n]), "user-%u", user);
    subs[n].data = (const uint8_t *)d;
    subs[n].data_len = len;
    subs[n].partition_key = pks[n];
    r->poison += (unsigned)poison;
    total += len + 16;
    n++;
    p->generated++;
  }
  if (ok && kcld_kpl_encode(subs, n, &r->data, &r->len) != 0)
    ok = 0;
  if (ok) {
    r->users = (unsigned)n;
    snprintf(r->pk, sizeof(r->pk), "a");
    kcld_produce_hash_key(pks[0], r->ehk, sizeof(r->ehk));
  }
  for (size_t i = 0; subs && i < n; i++)
    free((void *)subs[i].data);
  free(subs);
  free(pks);
  if (!ok) {
    rec_free(r);
    return NULL;
  }
  return r;
}

static void pump(struct producer *p);

static void give_up(struct producer *p, struct rec *r)
{
  p->res->failed += r->users;
  rec_free(r);
}

static void requeue(struct producer *p, struct rec *r)
{
  if (++r->attempts >= (p->o->max_attempts ? p->o->max_attempts
                                            : DEFAULT_ATTEMPTS) ||
      p->fatal) {
    give_up(p, r);
    return;
  }
  p->res->retried += r->users;
  r->next = NULL;
  *p->retry_tail = r;
  p->retry_tail = &r->next;
}

static void backoff(struct producer *p, int level)
{
  static const struct kcld_backoff b = {100, 5000, KCLD_BACKOFF_EQUAL};
  uint32_t rnd = (uint32_t)(kcld_rand_next(&p->rng) >> 32);
  p->backoff_until_ms =
    now_ms(p) + kcld_backoff_delay_ms(&b, (unsigned)level + 1, rnd);
}

static void on_put(const struct kcld_kinesis_put_result *res, void *arg)
{
  struct call *c = arg;
  struct producer *p = c->p;
  int throttled = 0;

  p->in_flight--;
  if (res->st.err) {
    enum kcld_kinesis_fault f = kcld_kinesis_fault(&res->st);
    if (f == KCLD_KINESIS_CANCELED || f == KCLD_KINESIS_NOT_FOUND ||
        f == KCLD_KINESIS_INVALID || f == KCLD_KINESIS_ACCESS_DENIED ||
        f == KCLD_KINESIS_KMS || ++p->whole_failures >= MAX_WHOLE_FAILURES) {
      if (!p->fatal)
        fprintf(stderr, "kcld produce: %s\n", res->st.message);
      p->fatal = 1;
    }
    for (size_t i = 0; i < c->n; i++)
      requeue(p, c->recs[i]);
    backoff(p, p->whole_failures);
  } else {
    p->whole_failures = 0;
    for (size_t i = 0; i < c->n; i++) {
      struct rec *r = c->recs[i];
      if (i < res->count && !res->entries[i].error_code) {
        p->res->produced += r->users;
        p->res->poison += r->poison;
        p->res->kinesis_records++;
        rec_free(r);
      } else {
        throttled = 1;
        requeue(p, r);
      }
    }
    if (throttled)
      backoff(p, 1);
  }
  free(c->recs);
  free(c);
  pump(p);
}

static int send_batch(struct producer *p, struct rec **recs, size_t n)
{
  struct kcld_kinesis_record kr[KCLD_KINESIS_PUT_MAX_RECORDS];
  struct call *c = calloc(1, sizeof(*c));
  int rc;
  if (!c)
    return KCLD_ENOMEM;
  c->p = p;
  c->recs = recs;
  c->n = n;
  for (size_t i = 0; i < n; i++) {
    kr[i].data = recs[i]->data;
    kr[i].len = recs[i]->len;
    kr[i].partition_key = recs[i]->pk;
    kr[i].explicit_hash_key = recs[i]->ehk[0] ? recs[i]->ehk : NULL;
  }
  rc = kcld_kinesis_put_records(p->k, p->stream, kr, n, on_put, c);
  if (rc != 0) {
    free(c);
    return rc;
  }
  p->in_flight++;
  p->res->calls++;
  return 0;
}

static void progress(struct producer *p, int final)
{
  FILE *f = p->o->progress;
  uint64_t t = now_ms(p);
  if (!f)
    return;
  if (!final && t - p->last_progress_ms < PROGRESS_MS)
    return;
  double dt = (double)(t - p->last_progress_ms) / 1000.0;
  double rate = dt > 0 ? (double)(p->res->produced - p->last_progress_count)
                           / dt : 0;
  int tty = isatty(fileno(f));
  fprintf(f, "%sproduce: %" PRIu64 " produced, %" PRIu64 " failed, %"
          PRIu64 " poison, %.0f records/s%s", tty ? "\r" : "",
          p->res->produced, p->res->failed, p->res->poison, rate,
          tty && !final ? "   " : "\n");
  fflush(f);
  p->last_progress_ms = t;
  p->last_progress_count = p->res->produced;
}

static void on_closed(uv_handle_t *h)
{
  struct producer *p = h->data;
  p->handles--;
}

static void finish(struct producer *p)
{
  if (p->done)
    return;
  p->done = 1;
  progress(p, 1);
  uv_timer_stop(&p->tick);
  uv_close((uv_handle_t *)&p->tick, on_closed);
  uv_close((uv_handle_t *)&p->sigint, on_closed);
  uv_close((uv_handle_t *)&p->sigterm, on_closed);
}

static void pump(struct producer *p)
{
  if (p->done)
    return;
  while (!p->fatal && p->in_flight < MAX_INFLIGHT &&
         now_ms(p) >= p->backoff_until_ms) {
    struct rec **batch = calloc(KCLD_KINESIS_PUT_MAX_RECORDS, sizeof(*batch));
    size_t n = 0, bytes = 0;
    if (!batch) {
      p->fatal = 1;
      break;
    }
    while (n < KCLD_KINESIS_PUT_MAX_RECORDS && p->retry) {
      struct rec *r = p->retry;
      if (bytes + r->len + strlen(r->pk) > KCLD_KINESIS_PUT_MAX_TOTAL)
        break;
      p->retry = r->next;
      if (!p->retry)
        p->retry_tail = &p->retry;
      batch[n++] = r;
      bytes += r->len + strlen(r->pk);
    }
    uint64_t allow = allowance(p);
    while (n < KCLD_KINESIS_PUT_MAX_RECORDS && allow > 0 &&
           bytes < KCLD_KINESIS_PUT_MAX_TOTAL - KCLD_KINESIS_PUT_MAX_RECORD) {
      uint64_t users = p->agg > 1 ? (allow < p->agg ? allow : p->agg) : 1;
      struct rec *r = generate(p, users);
      if (!r) {
        p->fatal = 1;
        break;
      }
      allow = allow > r->users ? allow - r->users : 0;
      batch[n++] = r;
      bytes += r->len + strlen(r->pk);
    }
    if (n == 0) {
      free(batch);
      break;
    }
    int rc = send_batch(p, batch, n);
    if (rc != 0) {
      fprintf(stderr, "kcld produce: PutRecords not sent: %s\n",
              kcld_strerror(rc));
      for (size_t i = 0; i < n; i++)
        give_up(p, batch[i]);
      free(batch);
      p->fatal = 1;
      break;
    }
  }
  if (p->fatal) {
    /* Nothing more goes out: what waits for a retry is given up on. */
    while (p->retry) {
      struct rec *r = p->retry;
      p->retry = r->next;
      give_up(p, r);
    }
    p->retry_tail = &p->retry;
  }
  if (p->in_flight == 0 && !p->retry && !more_to_generate(p))
    finish(p);
}

static void on_tick(uv_timer_t *t)
{
  struct producer *p = t->data;
  progress(p, 0);
  pump(p);
}

static void on_signal(uv_signal_t *h, int signum)
{
  struct producer *p = h->data;
  (void)signum;
  if (p->stop) {
    p->fatal = 1; /* second signal: give up on retries too */
  }
  p->stop = 1;
  pump(p);
}

int kcld_produce_run(const struct kcld_produce_opts *o,
                     struct kcld_produce_result *res)
{
  struct producer p = {.o = o, .res = res};
  int rc;

  memset(res, 0, sizeof(*res));
  p.retry_tail = &p.retry;
  if (!o || !o->cfg || o->rate < 0 || o->poison_rate < 0 ||
      o->poison_rate > 1 || o->size > KCLD_KINESIS_PUT_MAX_RECORD - 256)
    return KCLD_EINVAL;
  p.stream = o->stream && *o->stream ? o->stream : o->cfg->stream;
  if (!p.stream || !*p.stream) {
    fprintf(stderr, "kcld produce: no stream: give --stream or a config\n");
    return KCLD_EINVAL;
  }
  p.keys = o->partition_keys ? o->partition_keys : DEFAULT_KEYS;
  p.agg = o->aggregate;
  p.rng = o->seed ? o->seed : (uint64_t)time(NULL) ^ (uint64_t)getpid();
  if ((rc = kcld_cli_aws_init(&p.cli, o->cfg)) != 0) {
    kcld_cli_aws_clean_up(&p.cli);
    return rc;
  }
  if ((rc = kcld_kinesis_new(p.cli.aws, &p.cli.loop, &p.k)) != 0) {
    kcld_cli_aws_clean_up(&p.cli);
    return rc;
  }
  uv_update_time(&p.cli.loop);
  p.start_ms = p.last_progress_ms = now_ms(&p);
  uv_timer_init(&p.cli.loop, &p.tick);
  uv_signal_init(&p.cli.loop, &p.sigint);
  uv_signal_init(&p.cli.loop, &p.sigterm);
  p.tick.data = p.sigint.data = p.sigterm.data = &p;
  p.handles = 3;
  uv_timer_start(&p.tick, on_tick, TICK_MS, TICK_MS);
  uv_signal_start(&p.sigint, on_signal, SIGINT);
  uv_signal_start(&p.sigterm, on_signal, SIGTERM);
  pump(&p);
  while (p.handles > 0)
    if (uv_run(&p.cli.loop, UV_RUN_ONCE) == 0)
      break;
  kcld_kinesis_close(p.k);
  kcld_cli_aws_clean_up(&p.cli);
  if (p.fatal && res->produced == 0)
    return KCLD_EAWS;
  return 0;
}

/* ======== The command ======== */

static const char s_usage[] =
  "usage: kcld produce [OPTIONS]\n"
  "\n"
  "Puts the reference pipeline's sample events on a stream.\n"
  "\n"
  "  -c, --config PATH         endpoints, region, credentials and stream\n"
  "                            (default: the environment)\n"
  "  -s, --stream NAME|ARN     the stream (default: the config's)\n"
  "  -r, --rate N              records per second (default: no limit)\n"
  "  -n, --count N             records to produce\n"
  "  -d, --duration D          how long to produce, e.g. 30s, 5m\n"
  "      --size SIZE           pad each event to at least SIZE, e.g. 1KiB\n"
  "  -k, --partition-keys N    distinct partition keys (default 100)\n"
  "  -p, --poison-rate X       share 0..1 of payloads that are not JSON\n"
  "  -a, --aggregate[=N]       KPL aggregates of N records (default 100)\n"
  "      --seed N              random seed (default: the clock)\n"
  "  -q, --quiet               no progress line\n"
  "\n"
  "Without --count and --duration it runs until interrupted.  The last\n"
  "line on stdout is: produced=N failed=N poison=N kinesis_records=N\n"
  "calls=N retried=N.  Exit 0 when nothing failed.\n";

static int parse_u64(const char *s, uint64_t *out)
{
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (!*s || *end || errno || s[0] == '-')
    return -1;
  *out = v;
  return 0;
}

static int parse_double(const char *s, double *out)
{
  char *end;
  double v = strtod(s, &end);
  if (!*s || *end || !isfinite(v) || v < 0)
    return -1;
  *out = v;
  return 0;
}

int kcld_produce_command(int argc, char **argv)
{
  static const struct option opts[] = {
    {"config", required_argument, NULL, 'c'},
    {"stream", required_argument, NULL, 's'},
    {"rate", required_argument, NULL, 'r'},
    {"count", required_argument, NULL, 'n'},
    {"duration", required_argument, NULL, 'd'},
    {"size", required_argument, NULL, 'S'},
    {"partition-keys", required_argument, NULL, 'k'},
    {"poison-rate", required_argument, NULL, 'p'},
    {"aggregate", optional_argument, NULL, 'a'},
    {"seed", required_argument, NULL, 'R'},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
  };
  struct kcld_produce_opts o;
  struct kcld_produce_result res;
  const char *path = NULL;
  uint64_t u;
  int64_t v;
  int c, quiet = 0, rc;

  memset(&o, 0, sizeof(o));
  optind = 0; /* GNU: start over (this may not be the first getopt run) */
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":c:s:r:n:d:k:p:a::qh", opts, NULL)) !=
         -1) {
    switch (c) {
    case 'c':
      path = optarg;
      break;
    case 's':
      o.stream = optarg;
      break;
    case 'r':
      if (parse_double(optarg, &o.rate) != 0)
        goto bad_value;
      break;
    case 'n':
      if (parse_u64(optarg, &o.count) != 0 || o.count == 0)
        goto bad_value;
      break;
    case 'd':
      if (kcld_config_parse_duration(optarg, &v) != 0 || v <= 0)
        goto bad_value;
      o.duration_ms = (uint64_t)v;
      break;
    case 'S':
      if (kcld_config_parse_size(optarg, &v) != 0 || v < 0 ||
          v > KCLD_KINESIS_PUT_MAX_RECORD - 256)
        goto bad_value;
      o.size = (size_t)v;
      break;
    case 'k':
      if (parse_u64(optarg, &u) != 0 || u == 0 || u > 1000000)
        goto bad_value;
      o.partition_keys = (unsigned)u;
      break;
    case 'p':
      if (parse_double(optarg, &o.poison_rate) != 0 || o.poison_rate > 1)
        goto bad_value;
      break;
    case 'a':
      o.aggregate = 100;
      if (optarg && (parse_u64(optarg, &u) != 0 || u == 0 || u > 10000))
        goto bad_value;
      if (optarg)
        o.aggregate = (unsigned)u;
      break;
    case 'R':
      if (parse_u64(optarg, &o.seed) != 0)
        goto bad_value;
      break;
    case 'q':
      quiet = 1;
      break;
    case 'h':
      fputs(s_usage, stdout);
      return 0;
    case ':':
      fprintf(stderr, "kcld produce: option '%s' needs an argument\n\n%s",
              argv[optind - 1], s_usage);
      return 2;
    default:
      fprintf(stderr, "kcld produce: unknown option '%s'\n\n%s",
              argv[optind - 1], s_usage);
      return 2;
    }
  }
  struct kcld_config *cfg = kcld_cli_config_args("produce", argc, argv,
                                                 optind, path, o.stream,
                                                 s_usage, &rc);
  if (!cfg)
    return rc;
  o.cfg = cfg;
  o.progress = quiet ? NULL : stderr;
  rc = kcld_produce_run(&o, &res);
  kcld_config_free(cfg);
  kcld_http_global_cleanup();
  printf("produced=%" PRIu64 " failed=%" PRIu64 " poison=%" PRIu64
         " kinesis_records=%" PRIu64 " calls=%" PRIu64 " retried=%" PRIu64
         "\n", res.produced, res.failed, res.poison, res.kinesis_records,
         res.calls, res.retried);
  if (fflush(stdout) != 0)
    return 1;
  return rc == 0 && res.failed == 0 ? 0 : 1;
bad_value:
  fprintf(stderr, "kcld produce: bad value '%s'\n\n%s",
          optarg ? optarg : "", s_usage);
  return 2;
}
