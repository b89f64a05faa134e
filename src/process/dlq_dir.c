/* dlq_dir.c — dead-letter messages appended to JSON-lines files, fsync'ed
 * (see dlq_dir.h). */
#include "process/dlq_dir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "err.h"

#define CLAIMED ".redriving"
#define OPEN_TRIES 8

struct req;

struct dir_store {
  struct kcld_dlq_store base;
  uv_loop_t *loop;
  char *dir;
  char *app;                     /* sanitized application */
  struct req *head, *tail;       /* waiting; head is on the pool */
};

struct req {
  struct req *next;
  struct dir_store *s;
  struct kcld_dlq_msg *const *msgs;
  size_t n;
  kcld_dlq_store_cb cb;
  void *arg;
  uv_work_t work;
  int err;
  char detail[PATH_MAX + 128];
};

/* ======== Small helpers ======== */

/* Keeps [A-Za-z0-9._-]; anything else becomes '_'. */
static void sanitize(char *s)
{
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
          (*s >= '0' && *s <= '9') || *s == '.' || *s == '_' || *s == '-'))
      *s = '_';
}

static int fsync_dir(const char *dir)
{
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int rc;
  if (fd < 0)
    return -1;
  rc = fsync(fd);
  close(fd);
  return rc;
}

/* mkdir -p with mode 0750; 0 or -1 with errno. */
static int make_dirs(const char *path)
{
  char buf[PATH_MAX];
  size_t len = strlen(path);

  if (len == 0 || len >= sizeof(buf)) {
    errno = ENAMETOOLONG;
    return -1;
  }
  memcpy(buf, path, len + 1);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/')
      continue;
    *p = '\0';
    if (mkdir(buf, 0750) != 0 && errno != EEXIST)
      return -1;
    *p = '/';
  }
  if (mkdir(buf, 0750) != 0 && errno != EEXIST)
    return -1;
  return 0;
}

static int write_all(int fd, const struct iovec *iov, int n)
{
  struct iovec v[64];
  int k = 0;

  while (k < n) {
    int m = n - k < 64 ? n - k : 64;
    memcpy(v, iov + k, (size_t)m * sizeof(*v));
    struct iovec *p = v;
    int left = m;
    while (left > 0) {
      ssize_t w = writev(fd, p, left);
      if (w < 0) {
        if (errno == EINTR)
          continue;
        return -1;
      }
      while (left > 0 && (size_t)w >= p->iov_len) {
        w -= (ssize_t)p->iov_len;
        p++;
        left--;
      }
      if (left > 0) {
        p->iov_base = (char *)p->iov_base + w;
        p->iov_len -= (size_t)w;
      }
    }
    k += m;
  }
  return 0;
}

/* Opens `path` for appending under an exclusive lock, making sure the path
 * still names the file locked (a redrive may rename it away).  Returns the
 * fd and *created, or -1 with errno. */
static int open_locked(const char *path, int *created)
{
  for (int tries = 0; tries < OPEN_TRIES; tries++) {
    struct stat a, b;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC,
                  0640);
    *created = fd >= 0;
    if (fd < 0 && errno == EEXIST)
      fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT)
        continue; /* renamed between the two opens */
      return -1;
    }
    while (flock(fd, LOCK_EX) != 0) {
      if (errno != EINTR) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
      }
    }
    if (fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
        a.st_ino == b.st_ino)
      return fd;
    close(fd); /* claimed by a redrive meanwhile: a new file */
  }
  errno = EAGAIN;
  return -1;
}

/* ======== Appending (pool thread) ======== */

static void fail(struct req *r, const char *what, const char *path)
{
  r->err = KCLD_EIO;
  snprintf(r->detail, sizeof(r->detail), "%s %s: %s", what, path,
           strerror(errno));
}

static void append_work(uv_work_t *w)
{
  struct req *r = w->data;
  struct dir_store *s = r->s;
  char path[PATH_MAX], day[16];
  struct iovec *iov = calloc(2 * r->n, sizeof(*iov));
  time_t now = time(NULL);
  struct stat st = {.st_size = -1};
  struct tm tm;
  int fd = -1, created = 0;

  if (!iov) {
    r->err = KCLD_ENOMEM;
    return;
  }
  gmtime_r(&now, &tm);
  strftime(day, sizeof(day), "%Y-%m-%d", &tm);
  snprintf(path, sizeof(path), "%s/%s.%s.%s.jsonl", s->dir, s->app,
           r->msgs[0]->shard_id, day);
  {
    /* The shard id is part of a file name: no path tricks. */
    char *name = strrchr(path, '/') + 1;
    sanitize(name);
  }
  for (size_t i = 0; i < r->n; i++) {
    iov[2 * i].iov_base = (void *)r->msgs[i]->body;
    iov[2 * i].iov_len = r->msgs[i]->len;
    iov[2 * i + 1].iov_base = "\n";
    iov[2 * i + 1].iov_len = 1;
  }
  fd = open_locked(path, &created);
  if (fd < 0) {
    fail(r, "cannot open", path);
  } else if (fstat(fd, &st) != 0) {
    fail(r, "cannot stat", path);
  } else if (write_all(fd, iov, (int)(2 * r->n)) != 0) {
    fail(r, "cannot write", path);
  } else if (fsync(fd) != 0) {
    fail(r, "cannot fsync", path);
  } else if (created && fsync_dir(s->dir) != 0) {
    fail(r, "cannot fsync the directory of", path);
  }
  if (r->err && fd >= 0 && st.st_size >= 0 && ftruncate(fd, st.st_size) == 0)
    (void)fsync(fd); /* whole lines only */
  if (fd >= 0)
    close(fd);
  free(iov);
}

static void start_next(struct dir_store *s);

static void append_done(uv_work_t *w, int status)
{
  struct req *r = w->data;
  struct dir_store *s = r->s;

  if (status != 0 && !r->err) {
    r->err = KCLD_ECANCELED;
    snprintf(r->detail, sizeof(r->detail), "the write was cancelled");
  }
  if (!r->err)
    for (size_t i = 0; i < r->n; i++)
      r->msgs[i]->stored = 1;
  s->head = r->next;
  if (!s->head)
    s->tail = NULL;
  start_next(s);
  r->cb(r->err, r->err ? r->detail : NULL, r->arg);
  free(r);
}

static void start_next(struct dir_store *s)
{
  struct req *r = s->head;
  int rc;

  if (!r)
    return;
  rc = uv_queue_work(s->loop, &r->work, append_work, append_done);
  if (rc == 0)
    return;
  /* Cannot happen with a valid loop; answer the waiting calls anyway. */
  s->head = s->tail = NULL;
  while (r) {
    struct req *next = r->next;
    r->cb(KCLD_EIO, uv_strerror(rc), r->arg);
    free(r);
    r = next;
  }
}

static int store(struct kcld_dlq_store *base, struct kcld_dlq_msg *const *msgs,
                 size_t n, kcld_dlq_store_cb cb, void *arg)
{
  struct dir_store *s = (struct dir_store *)base;
  struct req *r;

  if (!msgs || n == 0 || !cb)
    return KCLD_EINVAL;
  r = calloc(1, sizeof(*r));
  if (!r)
    return KCLD_ENOMEM;
  r->s = s;
  r->msgs = msgs;
  r->n = n;
  r->cb = cb;
  r->arg = arg;
  r->work.data = r;
  if (s->tail) {
    s->tail->next = r;
    s->tail = r;
    return 0;
  }
  s->head = s->tail = r;
  start_next(s);
  return 0;
}

static void store_free(struct kcld_dlq_store *base)
{
  struct dir_store *s = (struct dir_store *)base;
  free(s->dir);
  free(s->app);
  free(s);
}

static const struct kcld_dlq_store_ops s_ops = {
  .name = "dir", .store = store, .free = store_free,
};

/* ======== Start-up check ======== */

static int probe(const char *dir, char *errbuf, size_t errlen)
{
  char path[PATH_MAX];
  int fd;

  if (make_dirs(dir) != 0) {
    snprintf(errbuf, errlen, "cannot create the dead-letter directory %s: "
             "%s", dir, strerror(errno));
    return KCLD_EIO;
  }
  snprintf(path, sizeof(path), "%s/.kcld-probe-%ld", dir, (long)getpid());
  fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0 || write(fd, "\n", 1) != 1 || fsync(fd) != 0) {
    snprintf(errbuf, errlen, "cannot write in the dead-letter directory %s:"
             " %s", dir, strerror(errno));
    if (fd >= 0) {
      close(fd);
      unlink(path);
    }
    return KCLD_EIO;
  }
  close(fd);
  if (unlink(path) != 0 || fsync_dir(dir) != 0) {
    snprintf(errbuf, errlen, "cannot remove a file from the dead-letter "
             "directory %s: %s", dir, strerror(errno));
    return KCLD_EIO;
  }
  return 0;
}

int kcld_dlq_dir_new(const struct kcld_dlq_dir_opts *o,
                     struct kcld_dlq_store **out, char *errbuf,
                     size_t errlen)
{
  struct dir_store *s;
  int rc;

  if (!o || !o->loop || !o->dir || !*o->dir || !o->application || !out ||
      !errbuf || !errlen)
    return KCLD_EINVAL;
  errbuf[0] = '\0';
  if (strlen(o->dir) + 300 > PATH_MAX) {
    snprintf(errbuf, errlen, "dead-letter directory path too long");
    return KCLD_EINVAL;
  }
  if ((rc = probe(o->dir, errbuf, errlen)) != 0)
    return rc;
  s = calloc(1, sizeof(*s));
  if (!s)
    return KCLD_ENOMEM;
  s->dir = strdup(o->dir);
  s->app = strdup(o->application);
  if (!s->dir || !s->app) {
    store_free(&s->base);
    return KCLD_ENOMEM;
  }
  sanitize(s->app);
  s->loop = o->loop;
  s->base.ops = &s_ops;
  s->base.body_limit = 0;
  s->base.where = s->dir;
  *out = &s->base;
  return 0;
}

/* ======== Reading it back ======== */

static int ends_with(const char *s, const char *suffix)
{
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Length of NAME.jsonl in a dead-letter file name (NAME.jsonl,
 * NAME.jsonl.redriving or NAME.jsonl.N.redriving), or 0 for another name. */
static size_t base_len(const char *name)
{
  const char *j = strstr(name, ".jsonl");
  size_t n;

  if (!j || name[0] == '.')
    return 0;
  n = (size_t)(j - name) + strlen(".jsonl");
  if (name[n] == '\0')
    return n;
  if (!ends_with(name, CLAIMED))
    return 0;
  if (strcmp(name + n, CLAIMED) == 0)
    return n;
  for (const char *p = name + n + 1; *p != '.'; p++)
    if (*p < '0' || *p > '9')
      return 0;
  return name[n] == '.' && name[n + 1] != '.' ? n : 0;
}

/* Claimed files first (older), in claim order, then the one still written. */
static long claim_rank(const char *name, size_t n)
{
  if (name[n] == '\0')
    return 1L << 30;
  if (strcmp(name + n, CLAIMED) == 0)
    return 0;
  return strtol(name + n + 1, NULL, 10);
}

static int by_name(const void *a, const void *b)
{
  const char *x = *(char *const *)a, *y = *(char *const *)b;
  size_t nx = base_len(x), ny = base_len(y);
  int c = strncmp(x, y, nx < ny ? nx : ny);
  long rx, ry;

  if (c != 0 || nx != ny)
    return c != 0 ? c : nx < ny ? -1 : 1;
  rx = claim_rank(x, nx);
  ry = claim_rank(y, ny);
  return rx < ry ? -1 : rx > ry;
}

int kcld_dlq_dir_list(const char *dir, char ***names, size_t *n)
{
  DIR *d = opendir(dir);
  struct dirent *e;
  char **v = NULL;
  size_t cnt = 0, cap = 0;
  int rc = 0;

  if (!d)
    return KCLD_EIO;
  while ((e = readdir(d)) != NULL) {
    char path[PATH_MAX];
    struct stat st;
    if (base_len(e->d_name) == 0)
      continue;
    snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
      continue;
    if (cnt == cap) {
      size_t ncap = cap ? cap * 2 : 16;
      char **nv = realloc(v, ncap * sizeof(*nv));
      if (!nv) {
        rc = KCLD_ENOMEM;
        break;
      }
      v = nv;
      cap = ncap;
    }
    if (!(v[cnt] = strdup(e->d_name))) {
      rc = KCLD_ENOMEM;
      break;
    }
    cnt++;
  }
  closedir(d);
  if (rc != 0) {
    for (size_t i = 0; i < cnt; i++)
      free(v[i]);
    free(v);
    return rc;
  }
  if (cnt)
    qsort(v, cnt, sizeof(*v), by_name);
  *names = v;
  *n = cnt;
  return 0;
}

/* Renames `from` to the first free NAME.jsonl[.N].redriving, never over an
 * existing file (link, then unlink).  0, or -1 with errno. */
static int claim_name(const char *from, char *to, size_t n)
{
  for (unsigned i = 0; i < 100000; i++) {
    if (i == 0)
      snprintf(to, n, "%s%s", from, CLAIMED);
    else
      snprintf(to, n, "%s.%u%s", from, i, CLAIMED);
    if (link(from, to) == 0)
      return unlink(from);
    if (errno != EEXIST)
      return -1;
  }
  errno = EEXIST;
  return -1;
}

int kcld_dlq_dir_claim(const char *dir, const char *name, char **path)
{
  char from[PATH_MAX], to[PATH_MAX + 32];
  int fd;

  if (snprintf(from, sizeof(from), "%s/%s", dir, name) >= (int)sizeof(from))
    return KCLD_EIO;
  if (ends_with(name, CLAIMED))
    snprintf(to, sizeof(to), "%s", from);
  else if (claim_name(from, to, sizeof(to)) != 0)
    return KCLD_EIO;
  /* A writer that opened the file before the claim holds or waits for the
   * lock; once we had it, no writer appends to this file any more (each
   * checks, under the lock, that the path still names its file). */
  fd = open(to, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return KCLD_EIO;
  while (flock(fd, LOCK_EX) != 0 && errno == EINTR)
    ;
  close(fd);
  *path = strdup(to);
  return *path ? 0 : KCLD_ENOMEM;
}

int kcld_dlq_dir_done(const char *dir, const char *claimed)
{
  char done[PATH_MAX], to[PATH_MAX + NAME_MAX + 32], name[NAME_MAX + 1];
  const char *base = strrchr(claimed, '/');
  size_t len;

  base = base ? base + 1 : claimed;
  len = base_len(base);
  if (len == 0 || len > NAME_MAX)
    return KCLD_EIO;
  memcpy(name, base, len);
  name[len] = '\0';
  snprintf(done, sizeof(done), "%s/done", dir);
  if (make_dirs(done) != 0)
    return KCLD_EIO;
  for (unsigned i = 0; i < 10000; i++) {
    struct stat st;
    if (i == 0)
      snprintf(to, sizeof(to), "%s/%s", done, name);
    else
      snprintf(to, sizeof(to), "%s/%s.%u", done, name, i);
    if (stat(to, &st) == 0)
      continue;
    if (rename(claimed, to) != 0)
      return KCLD_EIO;
    return fsync_dir(done) == 0 && fsync_dir(dir) == 0 ? 0 : KCLD_EIO;
  }
  return KCLD_EIO;
}

int kcld_dlq_dir_keep(const char *claimed, char *const *lines, size_t n)
{
  char tmp[PATH_MAX + 8];
  char dir[PATH_MAX];
  const char *slash = strrchr(claimed, '/');
  int fd, rc = KCLD_EIO;

  if (n == 0)
    return KCLD_EINVAL;
  snprintf(tmp, sizeof(tmp), "%s.tmp", claimed);
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0)
    return KCLD_EIO;
  for (size_t i = 0; i < n; i++) {
    struct iovec v[2] = {{lines[i], strlen(lines[i])}, {"\n", 1}};
    if (write_all(fd, v, 2) != 0)
      goto done;
  }
  if (fsync(fd) != 0)
    goto done;
  close(fd);
  fd = -1;
  if (rename(tmp, claimed) != 0)
    goto done;
  snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - claimed) : 1,
           slash ? claimed : ".");
  rc = fsync_dir(dir) == 0 ? 0 : KCLD_EIO;
done:
  if (fd >= 0) {
    close(fd);
    unlink(tmp);
  }
  return rc;
}
