/* fuzz_eventstream.c — libFuzzer target for the event-stream decoder
 * (src/aws/eventstream.c).
 *
 * Input: one byte that picks chunk sizes, then the stream.  With bit 7 of
 * that byte set, the target first rewrites both CRCs of every frame it can
 * walk to the right values, so that mutations reach the header parser
 * (like fuzz_deagg's MD5 trailer); clear, the CRC refusals are tested.  The
 * stream is
 * fed to one decoder whole and to another in chunks of 1..16 bytes (sizes
 * from a PRNG seeded by the first byte), then byte by byte to a third, and
 * to a fourth in chunks of 1..64 bytes, two in three of them gathered (as
 * inside curl: what gather leaves is fed at once) and the others fed.  The
 * second and the fourth run behind a gate that holds every third frame
 * back once (the bytes not taken are fed again; a hold takes at most the
 * frame's prelude).
 * Checked against eventstream.h: all four deliver the same frames (count,
 * header names, types, values, payloads) and end the same way (taken,
 * refused, or holding the same unfinished bytes); every pointer handed back
 * lies inside the input or is NUL-terminated as promised; the byte-by-byte
 * decoder gathers into buffers of its owner's and every frame's buffer is
 * taken (kcld_evs_decoder_take) and holds the payload; a refusal says
 * why and the decoder then refuses more input; frames plus pending bytes
 * add up to what was fed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libdeflate.h>

#include "aws/eventstream.h"
#include "err.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc;
  (void)argv;
  return 0;
}

#define MAX_SEEN 4096

struct seen {
  const uint8_t *in;  /* the whole input, for the bounds checks */
  size_t in_len;
  size_t n;
  uint32_t digest[MAX_SEEN]; /* one CRC over each frame's decoded content */
  size_t bytes;       /* frame bytes delivered (payload + headers + 16) */
  struct kcld_evs_decoder *take_from; /* takes each frame's buffer */
};

static void *own_alloc(void *ctx, size_t size)
{
  (void)ctx;
  return malloc(size);
}

static uint32_t digest_add(uint32_t c, const void *p, size_t n)
{
  return libdeflate_crc32(c, p, n);
}

static int on_msg(const struct kcld_evs_message *m, void *arg)
{
  struct seen *s = arg;
  uint32_t c = 0;
  size_t hbytes = 0;

  CHECK(m->n_headers == 0 || m->headers != NULL);
  CHECK(m->payload != NULL || m->payload_len == 0);
  touch(m->payload, m->payload_len);
  for (size_t i = 0; i < m->n_headers; i++) {
    const struct kcld_evs_header *h = &m->headers[i];
    CHECK(h->name_len >= 1 && h->name_len <= 255);
    CHECK(strlen(h->name) == h->name_len);
    CHECK((int)h->type >= 0 && (int)h->type <= 9);
    hbytes += 2 + h->name_len;
    switch (h->type) {
    case KCLD_EVS_STRING:
      CHECK(h->value && h->value[h->value_len] == '\0');
      hbytes += 2 + h->value_len;
      break;
    case KCLD_EVS_BYTES:
      CHECK(h->value || h->value_len == 0);
      hbytes += 2 + h->value_len;
      break;
    case KCLD_EVS_UUID:
      CHECK(h->value && h->value_len == 16);
      hbytes += 16;
      break;
    case KCLD_EVS_TRUE:
    case KCLD_EVS_FALSE:
      CHECK(h->num == (h->type == KCLD_EVS_TRUE));
      CHECK(!h->value && h->value_len == 0);
      break;
    default:
      CHECK(!h->value && h->value_len == 0);
      hbytes += h->type == KCLD_EVS_BYTE ? 1 : h->type == KCLD_EVS_SHORT ? 2
                : h->type == KCLD_EVS_INT ? 4 : 8;
    }
    if (h->value)
      touch(h->value, h->value_len);
    c = digest_add(c, h->name, h->name_len);
    c = digest_add(c, &h->type, sizeof(h->type));
    c = digest_add(c, &h->num, sizeof(h->num));
    if (h->value_len)
      c = digest_add(c, h->value, h->value_len);
  }
  /* The well-known fields are the headers' strings. */
  const char *known[] = {m->message_type, m->event_type, m->exception_type,
                         m->content_type, m->error_code, m->error_message};
  const char *names[] = {":message-type", ":event-type", ":exception-type",
                         ":content-type", ":error-code", ":error-message"};
  for (size_t k = 0; k < 6; k++) {
    const struct kcld_evs_header *h = kcld_evs_message_header(m, names[k]);
    CHECK(h ? known[k] == (const char *)h->value : known[k] == NULL);
    if (h)
      CHECK(strlen(known[k]) == h->value_len);
  }
  if (m->payload_len)
    c = digest_add(c, m->payload, m->payload_len);
  c = digest_add(c, &m->payload_len, sizeof(m->payload_len));
  if (s->n < MAX_SEEN)
    s->digest[s->n] = c;
  s->n++;
  s->bytes += 16 + hbytes + m->payload_len;
  if (s->take_from) {
    /* Fed a byte at a time, every frame was gathered. */
    uint8_t *b = kcld_evs_decoder_take(s->take_from);
    CHECK(b != NULL && kcld_evs_decoder_take(s->take_from) == NULL);
    CHECK((const uint8_t *)m->payload >= b + 12 &&
          (const uint8_t *)m->payload + m->payload_len <=
            b + 12 + hbytes + m->payload_len);
    free(b);
  }
  return 0;
}

struct run {
  int rc;
  size_t pending;
  size_t fed;         /* bytes accepted before the end or the refusal */
  struct seen seen;
};

/* Holds back every third frame it is asked about, once. */
static int gate(void *ctx, size_t frame_len)
{
  unsigned *asks = ctx;
  (void)frame_len;
  return ++*asks % 3 != 0;
}

static void run(struct run *r, const uint8_t *data, size_t size,
                unsigned seed, int mode)
{
  struct kcld_evs_decoder *d = NULL;
  struct kcld_evs_limits lim = {4096, 1024}; /* small, so limits are hit */
  size_t pos = 0;
  unsigned asks = 0;

  memset(r, 0, sizeof(*r));
  r->seen.in = data;
  r->seen.in_len = size;
  CHECK(kcld_evs_decoder_new(&lim, &d) == 0);
  if (mode == 2) {
    struct kcld_evs_alloc own = {own_alloc, free, NULL};
    kcld_evs_decoder_set_alloc(d, &own);
    r->seen.take_from = d;
  }
  if (mode == 1 || mode == 3)
    kcld_evs_decoder_set_gate(d, gate, &asks);
  while (pos < size && r->rc == 0) {
    size_t n = size - pos;
    int gather = 0;
    if (mode == 1 || mode == 3) {
      seed = seed * 1103515245u + 12345u;
      n = 1 + (seed >> 16) % (mode == 1 ? 16 : 64);
      gather = mode == 3 && (seed >> 8) % 3 != 0;
    } else if (mode == 2) {
      n = 1;
    }
    if (n > size - pos)
      n = size - pos;
    if (gather) { /* as inside curl: no callback; the rest fed after */
      size_t before = r->seen.n, took = kcld_evs_decoder_gather(d, data + pos,
                                                                 n);
      CHECK(took <= n && r->seen.n == before);
      pos += took;
      n -= took;
    }
    if (n > 0 || gather) {
      size_t taken = n;
      r->rc = kcld_evs_decoder_feed_some(d, data + pos, n, on_msg, &r->seen,
                                         &taken);
      CHECK(taken <= n);
      if (r->rc == 0 && taken < n)
        CHECK(kcld_evs_decoder_pending(d) <= KCLD_EVS_PRELUDE_LEN);
      if (r->rc == 0)
        n = taken;
    }
    pos += n;
  }
  r->pending = kcld_evs_decoder_pending(d);
  CHECK(kcld_evs_decoder_messages(d) == r->seen.n);
  if (r->rc == 0) {
    CHECK(kcld_evs_decoder_error(d)[0] == '\0');
    /* What was fed is whole frames plus the unfinished one.  (Header bytes
     * are counted from the decoded headers.) */
    CHECK(r->seen.bytes + r->pending == size);
  } else {
    CHECK(r->rc == KCLD_EPARSE);
    CHECK(kcld_evs_decoder_error(d)[0] != '\0');
    CHECK(kcld_evs_decoder_feed(d, data, size, on_msg, &r->seen) ==
          KCLD_EINVAL);
  }
  kcld_evs_decoder_free(d);
}

static uint32_t get32(const uint8_t *p)
{
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         p[3];
}

static void put32(uint8_t *p, uint32_t v)
{
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

/* Sets the prelude and message CRCs of each frame, as far as the lengths
 * allow walking. */
static void fix_crcs(uint8_t *p, size_t len)
{
  size_t pos = 0;
  while (len - pos >= 12) {
    uint32_t tl = get32(p + pos);
    put32(p + pos + 8, libdeflate_crc32(0, p + pos, 8));
    if (tl < 16 || tl > len - pos)
      break;
    put32(p + pos + tl - 4, libdeflate_crc32(0, p + pos, tl - 4));
    pos += tl;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static struct run a, b, c, g;
  uint8_t *owned = NULL;

  if (size < 1)
    return 0;
  unsigned seed = data[0];
  data++;
  size--;
  if (seed & 0x80) {
    owned = malloc(size ? size : 1);
    CHECK(owned);
    memcpy(owned, data, size);
    fix_crcs(owned, size);
    data = owned;
  }
  run(&a, data, size, seed, 0);
  run(&b, data, size, seed, 1);
  run(&c, data, size, seed, 2);
  run(&g, data, size, seed, 3);
  CHECK(a.rc == b.rc && a.rc == c.rc && a.rc == g.rc);
  CHECK(a.seen.n == b.seen.n && a.seen.n == c.seen.n && a.seen.n == g.seen.n);
  size_t n = a.seen.n < MAX_SEEN ? a.seen.n : MAX_SEEN;
  CHECK(memcmp(a.seen.digest, b.seen.digest, n * sizeof(uint32_t)) == 0);
  CHECK(memcmp(a.seen.digest, c.seen.digest, n * sizeof(uint32_t)) == 0);
  CHECK(memcmp(a.seen.digest, g.seen.digest, n * sizeof(uint32_t)) == 0);
  if (a.rc == 0)
    CHECK(a.pending == b.pending && a.pending == c.pending &&
          a.pending == g.pending);
  free(owned);
  return 0;
}
