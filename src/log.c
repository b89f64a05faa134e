/* log.c — JSON-lines / text logger with a per-message rate limit.
 *
 * Thread-safe: each line is built in a local buffer and written with one
 * fwrite under a mutex; the rate limiter's table lives under the same
 * mutex.  The limiter keeps a small open table of message texts (hashed,
 * four places each), each with a token bucket and the lines suppressed; a
 * slot taken over by another message first writes its pending summary. */
#include "log.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#define LIMIT_SLOTS 256     /* messages tracked at once (a power of two) */
#define LIMIT_WAYS 4        /* slots a message may take, from its hash's */
#define SUMMARY_EVERY_MS 1000 /* one summary a second at most */
#define SUMMARY_MSG_MAX 160 /* the message text kept for its summary */
#define CONTEXT_MAX 256

const char kcld_log_typed[] = "kcld_log_typed";

static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static int s_level = KCLD_LOG_INFO; /* read without the lock: atomics */
static enum kcld_log_format s_format = KCLD_LOG_JSON;
static FILE *s_out;
static int s_prefix;                /* journald <N> prefix */
static char s_application[CONTEXT_MAX], s_worker[CONTEXT_MAX];

static const char *const s_names[] = {"debug", "info", "warn", "error", "off"};
static const char *const s_prio[] = {"<7>", "<6>", "<4>", "<3>", ""};

struct slot {
  uint64_t hash;           /* 0 = free */
  uint64_t refill_ms;      /* when tokens were last topped up */
  uint64_t first_cut_ms;   /* when the first line now counted was cut */
  uint64_t suppressed;     /* lines cut since the last summary */
  unsigned tokens_milli;   /* lines that may be written now, x1000 */
  int level;               /* highest level cut */
  char msg[SUMMARY_MSG_MAX];
};

static struct slot s_slots[LIMIT_SLOTS];
static unsigned s_sweep;   /* next slot the sweep looks at */

/* ======== Building a line ======== */

struct line {
  char buf[4096];
  size_t len;
};

static void put(struct line *l, const char *s, size_t n)
{
  size_t room = sizeof(l->buf) - 2 - l->len; /* keep room for "\n\0" */
  if (n > room)
    n = room;
  memcpy(l->buf + l->len, s, n);
  l->len += n;
}

static void puts_(struct line *l, const char *s) { put(l, s, strlen(s)); }

/* Appends s as the inside of a JSON string (quotes not included). */
static void put_json(struct line *l, const char *s)
{
  char esc[8];
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      esc[0] = '\\';
      esc[1] = (char)c;
      put(l, esc, 2);
    } else if (c == '\n') {
      put(l, "\\n", 2);
    } else if (c == '\r') {
      put(l, "\\r", 2);
    } else if (c == '\t') {
      put(l, "\\t", 2);
    } else if (c < 0x20) {
      snprintf(esc, sizeof(esc), "\\u%04x", c);
      put(l, esc, 6);
    } else {
      put(l, (const char *)&c, 1);
    }
  }
}

static int is_secret_key(const char *key)
{
  static const char *const words[] = {"secret", "token", "password",
                                      "authorization", "credential"};
  for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
    if (strcasestr(key, words[i]))
      return 1;
  return 0;
}

static void stamp(char *out, size_t n)
{
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  size_t k = strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + k, n - k, ".%03dZ", (int)(ts.tv_nsec / 1000000));
}

/* Appends one field; `text` is the value already rendered, `quoted` whether
 * it is a JSON string (NULL text = null). */
static void put_field(struct line *l, const char *key, const char *text,
                      int quoted)
{
  if (s_format == KCLD_LOG_JSON) {
    puts_(l, ",\"");
    put_json(l, key);
    if (!text) {
      puts_(l, "\":null");
    } else if (quoted) {
      puts_(l, "\":\"");
      put_json(l, text);
      puts_(l, "\"");
    } else {
      puts_(l, "\":");
      puts_(l, text);
    }
  } else {
    puts_(l, " ");
    puts_(l, key);
    puts_(l, "=");
    puts_(l, text ? text : "-");
  }
}

static void put_typed(struct line *l, const struct kcld_log_field *f)
{
  char num[48];
  const char *text = num;
  int quoted = 0;

  switch (f->type) {
  case KCLD_LOG_FIELD_INT:
    snprintf(num, sizeof(num), "%lld", (long long)f->v.i);
    break;
  case KCLD_LOG_FIELD_UINT:
    snprintf(num, sizeof(num), "%llu", (unsigned long long)f->v.u);
    break;
  case KCLD_LOG_FIELD_DOUBLE:
    if (!isfinite(f->v.d)) {
      text = NULL;
      break;
    }
    for (int prec = 15; prec <= 17; prec++) { /* shortest that reads back */
      snprintf(num, sizeof(num), "%.*g", prec, f->v.d);
      if (strtod(num, NULL) == f->v.d)
        break;
    }
    break;
  case KCLD_LOG_FIELD_BOOL:
    text = f->v.i ? "true" : "false";
    break;
  default:
    text = f->v.s && is_secret_key(f->key) ? "[redacted]" : f->v.s;
    quoted = 1;
    break;
  }
  put_field(l, f->key, text, quoted);
}

/* A caller's field that the context already writes is left out. */
static int in_context(const char *key)
{
  return (s_application[0] && strcmp(key, "application") == 0) ||
         (s_worker[0] && strcmp(key, "worker") == 0);
}

static void begin(struct line *l, int level, const char *msg)
{
  char ts[64];
  l->len = 0;
  stamp(ts, sizeof(ts));
  if (s_prefix)
    puts_(l, s_prio[level]);
  if (s_format == KCLD_LOG_JSON) {
    puts_(l, "{\"ts\":\"");
    puts_(l, ts);
    puts_(l, "\",\"level\":\"");
    puts_(l, s_names[level]);
    puts_(l, "\",\"msg\":\"");
    put_json(l, msg);
    puts_(l, "\"");
  } else {
    puts_(l, ts);
    puts_(l, " ");
    puts_(l, s_names[level]);
    puts_(l, " ");
    puts_(l, msg);
  }
  if (s_application[0])
    put_field(l, "application", s_application, 1);
  if (s_worker[0])
    put_field(l, "worker", s_worker, 1);
}

/* Ends the line and writes it.  Called with s_lock held. */
static void finish_locked(struct line *l)
{
  FILE *out = s_out ? s_out : stderr;
  if (s_format == KCLD_LOG_JSON)
    puts_(l, "}");
  l->buf[l->len++] = '\n';
  fwrite(l->buf, 1, l->len, out);
  fflush(out);
}

static void build(struct line *l, int level, const char *msg, va_list ap)
{
  const char *key, *val;
  begin(l, level, msg);
  while ((key = va_arg(ap, const char *)) != NULL) {
    if (key == kcld_log_typed) {
      const struct kcld_log_field *f =
        va_arg(ap, const struct kcld_log_field *);
      if (f && f->key && !in_context(f->key))
        put_typed(l, f);
      continue;
    }
    val = va_arg(ap, const char *);
    if (in_context(key))
      continue;
    if (val && is_secret_key(key))
      val = "[redacted]";
    put_field(l, key, val, 1);
  }
}

/* ======== The rate limit ======== */

static uint64_t now_ms(void)
{
  struct timespec ts;
#ifdef CLOCK_MONOTONIC_COARSE
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
#else
  clock_gettime(CLOCK_MONOTONIC, &ts);
#endif
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t hash_msg(const char *s)
{
  uint64_t h = 1469598103934665603ULL; /* FNV-1a */
  for (; *s; s++) {
    h ^= (unsigned char)*s;
    h *= 1099511628211ULL;
  }
  return h ? h : 1;
}

/* Writes the slot's summary when it has lines cut.  s_lock held. */
static int summarize_locked(struct slot *sl)
{
  struct line l;
  char msg[64];
  if (sl->suppressed == 0)
    return 0;
  snprintf(msg, sizeof(msg), "%llu similar lines suppressed",
           (unsigned long long)sl->suppressed);
  begin(&l, sl->level, msg);
  put_typed(&l, &(const struct kcld_log_field){
                  "suppressed", KCLD_LOG_FIELD_UINT, {.u = sl->suppressed}});
  put_field(&l, "suppressed_msg", sl->msg, 1);
  finish_locked(&l);
  sl->suppressed = 0;
  return 1;
}

/* A summary is due once its first cut line is a second old. */
static int summary_due(const struct slot *sl, uint64_t now)
{
  return sl->suppressed > 0 && now - sl->first_cut_ms >= SUMMARY_EVERY_MS;
}

/* Looks at one slot per line written, so that summaries of messages that
 * stopped coming still appear.  s_lock held. */
static void sweep_locked(uint64_t now)
{
  struct slot *sl = &s_slots[s_sweep++ % LIMIT_SLOTS];
  if (sl->hash && summary_due(sl, now))
    summarize_locked(sl);
}

/* The slot of `msg`: its own among the LIMIT_WAYS from its hash's place,
 * else a free one, else the one refilled longest ago (its summary is
 * written before it is taken over).  s_lock held. */
static struct slot *slot_for(const char *msg, uint64_t h, uint64_t now)
{
  struct slot *victim = NULL;
  for (unsigned k = 0; k < LIMIT_WAYS; k++) {
    struct slot *sl = &s_slots[(h + k) & (LIMIT_SLOTS - 1)];
    if (sl->hash == h && strncmp(sl->msg, msg, sizeof(sl->msg) - 1) == 0)
      return sl;
    if (!victim || !sl->hash ||
        (victim->hash && sl->refill_ms < victim->refill_ms))
      victim = sl;
  }
  summarize_locked(victim);
  victim->hash = h;
  victim->refill_ms = now;
  victim->tokens_milli = KCLD_LOG_BURST * 1000;
  victim->suppressed = 0;
  snprintf(victim->msg, sizeof(victim->msg), "%s", msg);
  return victim;
}

/* Whether a line of `msg` may be written now (a token bucket: KCLD_LOG_BURST
 * lines at once, KCLD_LOG_RATE a second after that); counts it otherwise.
 * A pending summary goes first once due.  s_lock held. */
static int admit_locked(int level, const char *msg, uint64_t now)
{
  struct slot *sl = slot_for(msg, hash_msg(msg), now);
  uint64_t add = (now - sl->refill_ms) * KCLD_LOG_RATE;

  sl->refill_ms = now;
  sl->tokens_milli = add >= KCLD_LOG_BURST * 1000 - sl->tokens_milli
                       ? KCLD_LOG_BURST * 1000
                       : sl->tokens_milli + (unsigned)add;
  if (summary_due(sl, now))
    summarize_locked(sl);
  if (sl->tokens_milli >= 1000) {
    sl->tokens_milli -= 1000;
    return 1;
  }
  if (sl->suppressed++ == 0) {
    sl->first_cut_ms = now;
    sl->level = level;
  } else if (level > sl->level) {
    sl->level = level;
  }
  return 0;
}

static void emit(int level, int limited, const char *msg, va_list ap)
{
  struct line l;
  uint64_t now = now_ms();

  pthread_mutex_lock(&s_lock);
  sweep_locked(now);
  if (!limited || admit_locked(level, msg, now)) {
    build(&l, level, msg, ap);
    finish_locked(&l);
  }
  pthread_mutex_unlock(&s_lock);
}

int kcld_log_flush(int all)
{
  uint64_t now = now_ms();
  int n = 0;
  pthread_mutex_lock(&s_lock);
  for (size_t i = 0; i < LIMIT_SLOTS; i++) {
    struct slot *sl = &s_slots[i];
    if (sl->hash && (all || summary_due(sl, now)))
      n += summarize_locked(sl);
  }
  pthread_mutex_unlock(&s_lock);
  return n;
}

/* ======== Set-up ======== */

/* True when JOURNAL_STREAM ("device:inode") names the file behind out. */
static int journal_stream(FILE *out)
{
  const char *js = getenv("JOURNAL_STREAM");
  unsigned long long dev, ino;
  struct stat st;
  int fd;

  if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2)
    return 0;
  fd = fileno(out);
  if (fd < 0 || fstat(fd, &st) != 0)
    return 0;
  return (unsigned long long)st.st_dev == dev &&
         (unsigned long long)st.st_ino == ino;
}

void kcld_log_setup(enum kcld_log_level level, enum kcld_log_format format,
                    FILE *out)
{
  pthread_mutex_lock(&s_lock);
  /* A new stream starts afresh; what was cut goes to the old one. */
  for (size_t i = 0; i < LIMIT_SLOTS; i++)
    summarize_locked(&s_slots[i]);
  memset(s_slots, 0, sizeof(s_slots));
  __atomic_store_n(&s_level, (int)level, __ATOMIC_RELAXED);
  s_format = format;
  s_out = out;
  s_prefix = journal_stream(out ? out : stderr);
  pthread_mutex_unlock(&s_lock);
}

void kcld_log_set_context(const char *application, const char *worker)
{
  pthread_mutex_lock(&s_lock);
  snprintf(s_application, sizeof(s_application), "%s",
           application ? application : "");
  snprintf(s_worker, sizeof(s_worker), "%s", worker ? worker : "");
  pthread_mutex_unlock(&s_lock);
}

int kcld_log_level_parse(const char *name)
{
  for (int i = 0; i <= KCLD_LOG_OFF; i++)
    if (strcasecmp(name, s_names[i]) == 0)
      return i;
  if (strcasecmp(name, "warning") == 0)
    return KCLD_LOG_WARN;
  return -1;
}

enum kcld_log_level kcld_log_level_lower(enum kcld_log_level level, int by)
{
  int lv = (int)level - (by > 0 ? by : 0);
  return lv < KCLD_LOG_DEBUG ? KCLD_LOG_DEBUG : (enum kcld_log_level)lv;
}

int kcld_log_enabled(enum kcld_log_level level)
{
  int lv = (int)level & 0xff;
  return lv >= __atomic_load_n(&s_level, __ATOMIC_RELAXED) &&
         lv < KCLD_LOG_OFF;
}

void kcld_log(enum kcld_log_level level, const char *msg, ...)
{
  va_list ap;
  if (!kcld_log_enabled(level))
    return;
  va_start(ap, msg);
  emit((int)level & 0xff, !((int)level & KCLD_LOG_UNLIMITED), msg, ap);
  va_end(ap);
}

void kcld_logf(enum kcld_log_level level, const char *fmt, ...)
{
  char msg[2048];
  va_list ap;
  if (!kcld_log_enabled(level))
    return;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  kcld_log(level, msg, NULL);
}
