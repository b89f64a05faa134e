/* log.c — JSON-lines / text logger.  Thread-safe: each line is built in a
 * local buffer and written with one fwrite under a mutex. */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static enum kcld_log_level s_level = KCLD_LOG_INFO;
static enum kcld_log_format s_format = KCLD_LOG_JSON;
static FILE *s_out;

static const char *const s_names[] = {"debug", "info", "warn", "error", "off"};

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

static void emit(enum kcld_log_level level, const char *msg, va_list ap)
{
  struct line l;
  char ts[64];
  const char *key, *val;

  l.len = 0;
  stamp(ts, sizeof(ts));
  if (s_format == KCLD_LOG_JSON) {
    puts_(&l, "{\"ts\":\"");
    puts_(&l, ts);
    puts_(&l, "\",\"level\":\"");
    puts_(&l, s_names[level]);
    puts_(&l, "\",\"msg\":\"");
    put_json(&l, msg);
    puts_(&l, "\"");
  } else {
    puts_(&l, ts);
    puts_(&l, " ");
    puts_(&l, s_names[level]);
    puts_(&l, " ");
    puts_(&l, msg);
  }
  {
    while ((key = va_arg(ap, const char *)) != NULL) {
      val = va_arg(ap, const char *);
      if (val && is_secret_key(key))
        val = "[redacted]";
      if (s_format == KCLD_LOG_JSON) {
        puts_(&l, ",\"");
        put_json(&l, key);
        if (val) {
          puts_(&l, "\":\"");
          put_json(&l, val);
          puts_(&l, "\"");
        } else {
          puts_(&l, "\":null");
        }
      } else {
        puts_(&l, " ");
        puts_(&l, key);
        puts_(&l, "=");
        puts_(&l, val ? val : "-");
      }
    }
  }
  if (s_format == KCLD_LOG_JSON)
    puts_(&l, "}");
  l.buf[l.len++] = '\n';

  pthread_mutex_lock(&s_lock);
  FILE *out = s_out ? s_out : stderr;
  fwrite(l.buf, 1, l.len, out);
  fflush(out);
  pthread_mutex_unlock(&s_lock);
}

void kcld_log_setup(enum kcld_log_level level, enum kcld_log_format format,
                    FILE *out)
{
  pthread_mutex_lock(&s_lock);
  s_level = level;
  s_format = format;
  s_out = out;
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

int kcld_log_enabled(enum kcld_log_level level)
{
  return level >= s_level && level < KCLD_LOG_OFF;
}

void kcld_log(enum kcld_log_level level, const char *msg, ...)
{
  va_list ap;
  if (!kcld_log_enabled(level))
    return;
  va_start(ap, msg);
  emit(level, msg, ap);
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
