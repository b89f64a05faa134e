/* eventstream.c — the event-stream frame decoder (see eventstream.h).
 *
 * State: `pre` gathers a prelude, then `buf` (of the frame's size, from
 * the owner's allocator if it gave one) the whole frame under way; `total`
 * is its length once its prelude is in and checked (0 before); buf is made
 * once the gate lets the frame in.  A frame that lies whole in the chunk
 * being fed, with nothing gathered before it, is decoded in place (once the
 * gate lets it in).
 * Header names and string values are copied, NUL-terminated, into `strs`,
 * which is sized once per frame from the header block's length (each header
 * takes at least 3 bytes of it, so 2 x length + 1 bytes always suffice). */
#include "aws/eventstream.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libdeflate.h>

#include "err.h"

struct kcld_evs_decoder {
  size_t max_message;
  size_t max_headers;
  struct kcld_evs_alloc alloc; /* alloc.alloc NULL: malloc and free */
  uint8_t pre[KCLD_EVS_PRELUDE_LEN];
  uint8_t *buf;              /* the frame being gathered */
  size_t len;
  size_t total;              /* its length, once the prelude is checked */
  uint8_t *ready;            /* a gathered frame, complete, not delivered */
  size_t ready_total;
  uint8_t *cur;              /* the gathered frame in the callback, until
                                taken */
  int feeding;               /* inside kcld_evs_decoder_feed() */
  int gathering;             /* inside kcld_evs_decoder_gather() */
  int gather_err;            /* what gather met, reported after the frame
                                before it */
  kcld_evs_gate_cb gate;     /* NULL: every frame goes in */
  void *gate_ctx;
  int held;                  /* a frame was held back (the gate, or a
                                gather that starts none under a gate) */
  struct kcld_evs_header *hdrs;
  size_t hdrs_cap;
  char *strs;
  size_t strs_cap;
  uint64_t messages;         /* frames delivered */
  int done;                  /* failed or stopped: takes nothing more */
  char error[192];
};

static uint32_t be32(const uint8_t *p)
{
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         (uint32_t)p[3];
}

static uint64_t be64(const uint8_t *p)
{
  return (uint64_t)be32(p) << 32 | be32(p + 4);
}

static uint32_t crc(const uint8_t *p, size_t n)
{
  /* libdeflate, not zlib: 13.7 against 5.7 GB/s on the bench machine (a
   * 1.4 MB event), where zlib's crc32 was ~8% of fan-out's CPU. */
  return libdeflate_crc32(0, p, n);
}

static int fail(struct kcld_evs_decoder *d, const char *fmt, ...)
  __attribute__((format(printf, 2, 3)));

static int fail(struct kcld_evs_decoder *d, const char *fmt, ...)
{
  va_list ap;
  /* Gathering, the frame ready before this one is not delivered yet. */
  int n = snprintf(d->error, sizeof(d->error), "frame %llu: ",
                   (unsigned long long)(d->messages + 1 +
                                        (d->gathering && d->ready)));

  va_start(ap, fmt);
  if (n > 0 && (size_t)n < sizeof(d->error))
    vsnprintf(d->error + n, sizeof(d->error) - (size_t)n, fmt, ap);
  va_end(ap);
  return KCLD_EPARSE;
}

int kcld_evs_decoder_new(const struct kcld_evs_limits *lim,
                         struct kcld_evs_decoder **out)
{
  struct kcld_evs_decoder *d;

  if (!out)
    return KCLD_EINVAL;
  *out = NULL;
  if (lim && lim->max_message && lim->max_message < KCLD_EVS_MIN_MESSAGE)
    return KCLD_EINVAL;
  d = calloc(1, sizeof(*d));
  if (!d)
    return KCLD_ENOMEM;
  d->max_message = lim && lim->max_message ? lim->max_message
                                           : KCLD_EVS_DEFAULT_MAX_MESSAGE;
  d->max_headers = lim && lim->max_headers ? lim->max_headers
                                           : KCLD_EVS_DEFAULT_MAX_HEADERS;
  /* The prelude's fields are 32 bits wide. */
  if (d->max_message > UINT32_MAX)
    d->max_message = UINT32_MAX;
  *out = d;
  return 0;
}

static void release(struct kcld_evs_decoder *d, void *p)
{
  if (p && d->alloc.alloc)
    d->alloc.release(p);
  else
    free(p);
}

static void buf_free(struct kcld_evs_decoder *d)
{
  release(d, d->buf);
  d->buf = NULL;
}


void kcld_evs_decoder_set_alloc(struct kcld_evs_decoder *d,
                                const struct kcld_evs_alloc *a)
{
  buf_free(d);
  if (a && a->alloc && a->release)
    d->alloc = *a;
  else
    memset(&d->alloc, 0, sizeof(d->alloc));
}

void kcld_evs_decoder_set_gate(struct kcld_evs_decoder *d,
                               kcld_evs_gate_cb gate, void *ctx)
{
  d->gate = gate;
  d->gate_ctx = ctx;
}

void *kcld_evs_decoder_take(struct kcld_evs_decoder *d)
{
  void *p;
  if (!d)
    return NULL;
  p = d->cur;
  d->cur = NULL;
  return p;
}

void kcld_evs_decoder_free(struct kcld_evs_decoder *d)
{
  if (!d)
    return;
  buf_free(d);
  release(d, d->ready);
  free(d->hdrs);
  free(d->strs);
  free(d);
}

size_t kcld_evs_decoder_pending(const struct kcld_evs_decoder *d)
{
  return d ? d->len : 0;
}

uint64_t kcld_evs_decoder_messages(const struct kcld_evs_decoder *d)
{
  return d ? d->messages : 0;
}

const char *kcld_evs_decoder_error(const struct kcld_evs_decoder *d)
{
  return d ? d->error : "";
}

const struct kcld_evs_header *
kcld_evs_message_header(const struct kcld_evs_message *msg, const char *name)
{
  if (!msg || !name)
    return NULL;
  for (size_t i = 0; i < msg->n_headers; i++)
    if (strcmp(msg->headers[i].name, name) == 0)
      return &msg->headers[i];
  return NULL;
}

/* Checks a prelude; returns 0 and the frame's length, or the error. */
static int prelude_check(struct kcld_evs_decoder *d, const uint8_t *p,
                         size_t *total)
{
  uint32_t tl = be32(p), hl = be32(p + 4), want = be32(p + 8);
  uint32_t got = crc(p, 8);

  if (got != want)
    return fail(d, "prelude CRC 0x%08x, computed 0x%08x", want, got);
  if (tl < KCLD_EVS_MIN_MESSAGE)
    return fail(d, "total length %u is below the minimum of %u", tl,
                KCLD_EVS_MIN_MESSAGE);
  if (tl > d->max_message)
    return fail(d, "total length %u is over the limit of %zu", tl,
                d->max_message);
  if (hl > d->max_headers)
    return fail(d, "headers length %u is over the limit of %zu", hl,
                d->max_headers);
  if (hl > tl - KCLD_EVS_MIN_MESSAGE)
    return fail(d, "headers length %u does not fit in a frame of %u bytes",
                hl, tl);
  *total = tl;
  return 0;
}

/* The fixed width of a value type's bytes, -1 for a length-prefixed one,
 * -2 for an unknown type. */
static int value_width(int type)
{
  switch (type) {
  case KCLD_EVS_TRUE:
  case KCLD_EVS_FALSE:
    return 0;
  case KCLD_EVS_BYTE:
    return 1;
  case KCLD_EVS_SHORT:
    return 2;
  case KCLD_EVS_INT:
    return 4;
  case KCLD_EVS_LONG:
  case KCLD_EVS_TIMESTAMP:
    return 8;
  case KCLD_EVS_UUID:
    return 16;
  case KCLD_EVS_BYTES:
  case KCLD_EVS_STRING:
    return -1;
  default:
    return -2;
  }
}

static int64_t value_num(int type, const uint8_t *v)
{
  switch (type) {
  case KCLD_EVS_TRUE:
    return 1;
  case KCLD_EVS_BYTE:
    return (int8_t)v[0];
  case KCLD_EVS_SHORT:
    return (int16_t)(uint16_t)((unsigned)v[0] << 8 | v[1]);
  case KCLD_EVS_INT:
    return (int32_t)be32(v);
  case KCLD_EVS_LONG:
  case KCLD_EVS_TIMESTAMP:
    return (int64_t)be64(v);
  default:
    return 0;
  }
}

static int reserve(struct kcld_evs_decoder *d, size_t hl)
{
  size_t need = 2 * hl + 1, nh = hl / 3 + 1;

  if (d->strs_cap < need) {
    char *s = realloc(d->strs, need);
    if (!s)
      return KCLD_ENOMEM;
    d->strs = s;
    d->strs_cap = need;
  }
  if (d->hdrs_cap < nh) {
    struct kcld_evs_header *h = realloc(d->hdrs, nh * sizeof(*h));
    if (!h)
      return KCLD_ENOMEM;
    d->hdrs = h;
    d->hdrs_cap = nh;
  }
  return 0;
}

/* Sets a well-known header of msg from h, when h is one.  Returns 0 or the
 * error. */
static int well_known(struct kcld_evs_decoder *d, struct kcld_evs_message *m,
                      const struct kcld_evs_header *h)
{
  static const char *const names[] = {":message-type", ":event-type",
                                      ":exception-type", ":content-type",
                                      ":error-code", ":error-message"};
  const char **slots[] = {&m->message_type, &m->event_type,
                          &m->exception_type, &m->content_type,
                          &m->error_code, &m->error_message};

  if (h->name[0] != ':')
    return 0;
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    if (strcmp(h->name, names[i]) != 0)
      continue;
    if (h->type != KCLD_EVS_STRING)
      return fail(d, "header %s has value type %d, not string", h->name,
                  (int)h->type);
    if (*slots[i])
      return fail(d, "header %s appears twice", h->name);
    if (memchr(h->value, '\0', h->value_len))
      return fail(d, "header %s value holds a NUL byte", h->name);
    *slots[i] = (const char *)h->value;
  }
  return 0;
}

/* Decodes the header block h[0..hl) into d->hdrs and m. */
static int headers_parse(struct kcld_evs_decoder *d, const uint8_t *h,
                         size_t hl, struct kcld_evs_message *m)
{
  size_t pos = 0, n = 0, used = 0;
  int rc = reserve(d, hl);

  if (rc != 0)
    return rc;
  while (pos < hl) {
    struct kcld_evs_header *hd = &d->hdrs[n];
    size_t nlen = h[pos++], vlen;
    int type, width;

    if (nlen == 0)
      return fail(d, "header %zu has an empty name", n + 1);
    if (nlen > hl - pos)
      return fail(d, "header %zu name runs past the header block", n + 1);
    if (memchr(h + pos, '\0', nlen))
      return fail(d, "header %zu name holds a NUL byte", n + 1);
    memcpy(d->strs + used, h + pos, nlen);
    d->strs[used + nlen] = '\0';
    hd->name = d->strs + used;
    hd->name_len = nlen;
    used += nlen + 1;
    pos += nlen;
    if (pos == hl)
      return fail(d, "header %s has no value type", hd->name);
    type = h[pos++];
    width = value_width(type);
    if (width == -2)
      return fail(d, "header %s has unknown value type %d", hd->name, type);
    if (width == -1) {
      if (hl - pos < 2)
        return fail(d, "header %s value length runs past the header block",
                    hd->name);
      vlen = (size_t)h[pos] << 8 | h[pos + 1];
      pos += 2;
    } else {
      vlen = (size_t)width;
    }
    if (vlen > hl - pos)
      return fail(d, "header %s value runs past the header block", hd->name);
    hd->type = (enum kcld_evs_type)type;
    hd->num = value_num(type, h + pos);
    hd->value = NULL;
    hd->value_len = 0;
    if (type == KCLD_EVS_STRING) {
      memcpy(d->strs + used, h + pos, vlen);
      d->strs[used + vlen] = '\0';
      hd->value = (const uint8_t *)d->strs + used;
      used += vlen + 1;
    } else if (type == KCLD_EVS_BYTES || type == KCLD_EVS_UUID) {
      hd->value = h + pos;
    }
    hd->value_len = hd->value ? vlen : 0;
    pos += vlen;
    n++;
    rc = well_known(d, m, hd);
    if (rc != 0)
      return rc;
  }
  m->headers = d->hdrs;
  m->n_headers = n;
  return 0;
}

/* Checks and delivers the whole frame p[0..total). */
static int frame_deliver(struct kcld_evs_decoder *d, const uint8_t *p,
                         size_t total, kcld_evs_message_cb cb, void *arg)
{
  struct kcld_evs_message m;
  uint32_t want = be32(p + total - 4), got = crc(p, total - 4);
  size_t hl = be32(p + 4);
  int rc;

  if (got != want)
    return fail(d, "message CRC 0x%08x, computed 0x%08x", want, got);
  memset(&m, 0, sizeof(m));
  rc = headers_parse(d, p + KCLD_EVS_PRELUDE_LEN, hl, &m);
  if (rc != 0)
    return rc;
  m.payload = p + KCLD_EVS_PRELUDE_LEN + hl;
  m.payload_len = total - KCLD_EVS_MIN_MESSAGE - hl;
  d->messages++;
  rc = cb(&m, arg);
  if (rc != 0)
    d->done = 1;
  /* The header scratch goes back: a decoder between frames (an idle
   * subscription's, most of the time) holds none. */
  free(d->hdrs);
  free(d->strs);
  d->hdrs = NULL;
  d->strs = NULL;
  d->hdrs_cap = d->strs_cap = 0;
  return rc;
}

/* A buffer for the frame whose prelude is in d->pre; the prelude goes in
 * first. */
static int buf_start(struct kcld_evs_decoder *d, size_t total)
{
  d->buf = d->alloc.alloc ? d->alloc.alloc(d->alloc.ctx, total)
                          : malloc(total);
  if (!d->buf)
    return KCLD_ENOMEM;
  memcpy(d->buf, d->pre, KCLD_EVS_PRELUDE_LEN);
  d->total = total;
  return 0;
}

/* The gathered frame is complete: it waits in `ready`. */
static void frame_ready(struct kcld_evs_decoder *d)
{
  d->ready = d->buf;
  d->ready_total = d->total;
  d->buf = NULL;
  d->len = d->total = 0;
}

/* Delivers the ready frame, if any; its buffer goes back unless the
 * callback took it. */
static int ready_deliver(struct kcld_evs_decoder *d, kcld_evs_message_cb cb,
                         void *arg)
{
  int rc;

  if (!d->ready)
    return 0;
  d->cur = d->ready;
  d->ready = NULL;
  rc = frame_deliver(d, d->cur, d->ready_total, cb, arg);
  release(d, d->cur);
  d->cur = NULL;
  return rc;
}

/* Whether a frame of `total` bytes may come in: the gate says, outside a
 * gather (inside curl, where the owner must not act, a gated frame is not
 * begun: the next feed asks).  Notes a hold. */
static int gate_lets_in(struct kcld_evs_decoder *d, size_t total)
{
  if (!d->gate || (!d->gathering && d->gate(d->gate_ctx, total)))
    return 1;
  d->held = 1;
  return 0;
}

/* Takes up to `len` bytes into the prelude, then the frame, being
 * gathered; returns how many it took in *took.  Stops after the prelude
 * while the gate holds the frame back.  A complete frame is made ready. */
static int gather(struct kcld_evs_decoder *d, const uint8_t *p, size_t len,
                  size_t *took)
{
  size_t n, total;
  int rc;

  *took = 0;
  if (!d->total) {
    n = KCLD_EVS_PRELUDE_LEN - d->len < len ? KCLD_EVS_PRELUDE_LEN - d->len
                                            : len;
    memcpy(d->pre + d->len, p, n);
    d->len += n;
    *took = n;
    if (d->len < KCLD_EVS_PRELUDE_LEN)
      return 0;
    if ((rc = prelude_check(d, d->pre, &total)) != 0)
      return rc;
    d->total = total;
  }
  if (!d->buf) {
    if (!gate_lets_in(d, d->total))
      return 0;
    if ((rc = buf_start(d, d->total)) != 0)
      return rc;
  }
  n = d->total - d->len < len - *took ? d->total - d->len : len - *took;
  memcpy(d->buf + d->len, p + *took, n);
  d->len += n;
  *took += n;
  if (d->len == d->total)
    frame_ready(d);
  return 0;
}

size_t kcld_evs_decoder_gather(struct kcld_evs_decoder *d, const void *data,
                               size_t len)
{
  const uint8_t *p = data;
  size_t left = len;
  int rc = 0;

  if (!d || !data || d->done || d->feeding)
    return 0;
  if (d->gather_err)
    return len; /* the stream is over: the next feed says so */
  d->gathering = 1;
  d->held = 0;
  /* One complete frame at most: its owner may want to pause before more
   * bytes are gathered (and counted against its budget). */
  while (left > 0 && rc == 0 && !d->ready && !d->held) {
    size_t took = 0;
    rc = gather(d, p, left, &took);
    p += took;
    left -= took;
  }
  d->gathering = 0;
  if (rc != 0) {
    d->gather_err = rc;
    if (rc == KCLD_ENOMEM)
      fail(d, "out of memory");
    return len;
  }
  return len - left;
}

int kcld_evs_decoder_feed_some(struct kcld_evs_decoder *d, const void *data,
                               size_t len, kcld_evs_message_cb cb, void *arg,
                               size_t *taken)
{
  const uint8_t *p = data;
  size_t left = len;
  int rc;

  if (taken)
    *taken = 0;
  if (!d || !cb || (len > 0 && !p) || d->done)
    return KCLD_EINVAL;
  d->feeding = 1;
  d->held = 0;
  /* What gather took first, then what it met, then the bytes given. */
  rc = ready_deliver(d, cb, arg);
  if (rc == 0)
    rc = d->gather_err;
  while (left > 0 && rc == 0 && !d->held) {
    size_t took = 0, total = 0;

    if (d->len == 0 && left >= KCLD_EVS_PRELUDE_LEN) {
      /* At a frame boundary: decode in place when the frame is whole. */
      rc = prelude_check(d, p, &total);
      if (rc != 0)
        break;
      if (total <= left) {
        if (!gate_lets_in(d, total))
          break;
        rc = frame_deliver(d, p, total, cb, arg);
        p += total;
        left -= total;
        continue;
      }
    }
    rc = gather(d, p, left, &took);
    p += took;
    left -= took;
    if (rc == 0)
      rc = ready_deliver(d, cb, arg);
  }
  if (taken)
    *taken = len - left;
  d->feeding = 0;
  if (rc != 0) {
    d->done = 1;
    if (rc == KCLD_ENOMEM)
      fail(d, "out of memory");
  }
  return rc;
}

int kcld_evs_decoder_feed(struct kcld_evs_decoder *d, const void *data,
                          size_t len, kcld_evs_message_cb cb, void *arg)
{
  return kcld_evs_decoder_feed_some(d, data, len, cb, arg, NULL);
}
