/* test_eventstream.c — the event-stream decoder against frames made by the
 * AWS SDK's own encoder (tests/unit/eventstream/vectors.json, written by
 * tests/emulators/make-eventstream-vectors.js with @smithy/eventstream-codec):
 * every header type and payload decoded; every frame split at every byte
 * boundary and the whole stream fed in odd-sized chunks and byte by byte;
 * every prelude and message byte corrupted (CRC errors, nothing delivered);
 * truncated frames (held, not delivered); lengths over the limits refused
 * from the prelude alone; malformed header blocks with good CRCs; a callback
 * that stops the stream. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <libdeflate.h>

#include "aws/eventstream.h"
#include "err.h"
#include "harness.h"

/* ======== Vectors ======== */

struct vec {
  const char *name;
  uint8_t *frame;
  size_t len;
  json_t *headers; /* borrowed from the document */
  uint8_t *payload;
  size_t payload_len;
};

static json_t *s_doc;
static struct vec s_vecs[64];
static size_t s_nvecs;
static uint8_t *s_stream; /* every frame back to back */
static size_t s_stream_len;

static uint8_t *unhex(const char *h, size_t *len)
{
  size_t n = strlen(h) / 2;
  uint8_t *out = malloc(n ? n : 1);
  assert_non_null(out);
  for (size_t i = 0; i < n; i++) {
    unsigned v;
    assert_int_equal(sscanf(h + 2 * i, "%2x", &v), 1);
    out[i] = (uint8_t)v;
  }
  *len = n;
  return out;
}

static int setup(void **state)
{
  char path[1024];
  json_error_t jerr;
  size_t i;
  json_t *v;

  (void)state;
  snprintf(path, sizeof(path), "%s/tests/unit/eventstream/vectors.json",
           kcld_test_root());
  s_doc = json_load_file(path, 0, &jerr);
  if (!s_doc) {
    fprintf(stderr, "%s: %s\n", path, jerr.text);
    return -1;
  }
  json_array_foreach(json_object_get(s_doc, "vectors"), i, v) {
    struct vec *x = &s_vecs[s_nvecs++];
    assert_true(s_nvecs < sizeof(s_vecs) / sizeof(s_vecs[0]));
    x->name = json_string_value(json_object_get(v, "name"));
    x->frame = unhex(json_string_value(json_object_get(v, "frame")), &x->len);
    x->payload = unhex(json_string_value(json_object_get(v, "payload")),
                       &x->payload_len);
    x->headers = json_object_get(v, "headers");
    s_stream = realloc(s_stream, s_stream_len + x->len);
    assert_non_null(s_stream);
    memcpy(s_stream + s_stream_len, x->frame, x->len);
    s_stream_len += x->len;
  }
  return s_nvecs >= 10 ? 0 : -1;
}

static int teardown(void **state)
{
  (void)state;
  for (size_t i = 0; i < s_nvecs; i++) {
    free(s_vecs[i].frame);
    free(s_vecs[i].payload);
  }
  free(s_stream);
  json_decref(s_doc);
  return 0;
}

/* ======== Checking what the decoder hands back ======== */

struct got {
  size_t n;          /* frames delivered */
  size_t next;       /* index of the vector expected next */
  int stop_at;       /* return 99 on this frame number (1-based); 0 never */
};

static void check_header(const struct kcld_evs_header *h, json_t *want)
{
  const char *name = json_string_value(json_object_get(want, "name"));
  const char *num = json_string_value(json_object_get(want, "num"));
  const char *value = json_string_value(json_object_get(want, "value"));
  int type = (int)json_integer_value(json_object_get(want, "type"));

  assert_string_equal(h->name, name);
  assert_int_equal(h->name_len, strlen(name));
  assert_int_equal((int)h->type, type);
  if (num) {
    char buf[32];
    snprintf(buf, sizeof(buf), "%lld", (long long)h->num);
    assert_string_equal(buf, num);
  } else {
    assert_int_equal(h->num, 0);
  }
  if (value) {
    size_t len;
    uint8_t *v = unhex(value, &len);
    assert_non_null(h->value);
    assert_int_equal(h->value_len, len);
    if (len)
      assert_memory_equal(h->value, v, len);
    if (type == KCLD_EVS_STRING)
      assert_int_equal(h->value[len], '\0');
    free(v);
  } else {
    assert_null(h->value);
    assert_int_equal(h->value_len, 0);
  }
}

static const char *well_known(const struct vec *v, const char *name)
{
  size_t i;
  json_t *h;
  json_array_foreach(v->headers, i, h) {
    if (strcmp(json_string_value(json_object_get(h, "name")), name) == 0)
      return json_string_value(json_object_get(h, "value"));
  }
  return NULL;
}

/* The well-known field equals the header's (hex) value, or both are absent. */
static void check_known(const char *field, const struct vec *v,
                        const char *name)
{
  const char *hexv = well_known(v, name);
  if (!hexv) {
    assert_null(field);
    return;
  }
  size_t len;
  uint8_t *want = unhex(hexv, &len);
  assert_non_null(field);
  assert_int_equal(strlen(field), len);
  assert_memory_equal(field, want, len);
  free(want);
}

static int on_msg(const struct kcld_evs_message *m, void *arg)
{
  struct got *g = arg;
  const struct vec *v = &s_vecs[g->next % s_nvecs];
  size_t i;
  json_t *h;

  assert_int_equal(m->n_headers, json_array_size(v->headers));
  json_array_foreach(v->headers, i, h)
    check_header(&m->headers[i], h);
  assert_int_equal(m->payload_len, v->payload_len);
  if (v->payload_len)
    assert_memory_equal(m->payload, v->payload, v->payload_len);
  check_known(m->message_type, v, ":message-type");
  check_known(m->event_type, v, ":event-type");
  check_known(m->exception_type, v, ":exception-type");
  check_known(m->content_type, v, ":content-type");
  check_known(m->error_code, v, ":error-code");
  check_known(m->error_message, v, ":error-message");
  g->n++;
  g->next++;
  return g->stop_at && (int)g->n == g->stop_at ? 99 : 0;
}

static struct kcld_evs_decoder *decoder(size_t max_message, size_t max_headers)
{
  struct kcld_evs_decoder *d = NULL;
  struct kcld_evs_limits lim = {max_message, max_headers};
  assert_int_equal(kcld_evs_decoder_new(&lim, &d), 0);
  assert_non_null(d);
  assert_string_equal(kcld_evs_decoder_error(d), "");
  return d;
}

static const struct vec *vec_named(const char *name)
{
  for (size_t i = 0; i < s_nvecs; i++)
    if (strcmp(s_vecs[i].name, name) == 0)
      return &s_vecs[i];
  fail_msg("no vector %s", name);
  return NULL;
}

/* One step of a xorshift64 generator: fixed, reproducible chunk sizes. */
static uint64_t xorshift(uint64_t *x)
{
  *x ^= *x << 13;
  *x ^= *x >> 7;
  *x ^= *x << 17;
  return *x;
}

/* ======== Tests ======== */

static void test_vectors_whole(void **state)
{
  (void)state;
  for (size_t i = 0; i < s_nvecs; i++) {
    struct kcld_evs_decoder *d = decoder(0, 0);
    struct got g = {0, i, 0};
    assert_int_equal(kcld_evs_decoder_feed(d, s_vecs[i].frame, s_vecs[i].len,
                                           on_msg, &g), 0);
    assert_int_equal(g.n, 1);
    assert_int_equal(kcld_evs_decoder_pending(d), 0);
    assert_int_equal(kcld_evs_decoder_messages(d), 1);
    kcld_evs_decoder_free(d);
  }
  /* The vectors hold the kinds the decoder must know. */
  const char *need[] = {"initial-response", "records", "child-shards",
                        "exception-in-use", "error", "all-types", "empty",
                        "large-payload"};
  for (size_t k = 0; k < sizeof(need) / sizeof(need[0]); k++) {
    size_t i = 0;
    while (i < s_nvecs && strcmp(s_vecs[i].name, need[k]) != 0)
      i++;
    assert_true(i < s_nvecs);
  }
}

/* Every frame in two pieces, cut at every byte (the large ones at 97
 * places, among them the prelude and the 16 KiB mark). */
static void test_split_every_boundary(void **state)
{
  (void)state;
  for (size_t i = 0; i < s_nvecs; i++) {
    const struct vec *v = &s_vecs[i];
    size_t step = v->len > 4096 ? v->len / 97 : 1;
    for (size_t cut = 0; cut <= v->len; cut += step) {
      struct kcld_evs_decoder *d = decoder(0, 0);
      struct got g = {0, i, 0};
      assert_int_equal(kcld_evs_decoder_feed(d, v->frame, cut, on_msg, &g),
                       0);
      assert_int_equal(g.n, cut == v->len ? 1 : 0);
      assert_int_equal(kcld_evs_decoder_pending(d),
                       cut == v->len ? 0 : cut);
      assert_int_equal(kcld_evs_decoder_feed(d, v->frame + cut, v->len - cut,
                                             on_msg, &g), 0);
      assert_int_equal(g.n, 1);
      assert_int_equal(kcld_evs_decoder_pending(d), 0);
      kcld_evs_decoder_free(d);
    }
  }
}

/* The whole stream byte by byte, then in pseudo-random chunks of 1..40000
 * bytes: every frame in order. */
static void test_stream_chunks(void **state)
{
  struct kcld_evs_decoder *d = decoder(0, 0);
  struct got g = {0, 0, 0};
  uint64_t rng = 88172645463325252ull;

  (void)state;
  for (size_t i = 0; i < s_stream_len; i++)
    assert_int_equal(kcld_evs_decoder_feed(d, s_stream + i, 1, on_msg, &g), 0);
  assert_int_equal(g.n, s_nvecs);
  for (int round = 0; round < 20; round++) {
    size_t pos = 0;
    while (pos < s_stream_len) {
      xorshift(&rng);
      size_t n = 1 + (size_t)(rng % (round % 2 ? 40000 : 300));
      if (n > s_stream_len - pos)
        n = s_stream_len - pos;
      assert_int_equal(kcld_evs_decoder_feed(d, s_stream + pos, n, on_msg, &g),
                       0);
      pos += n;
    }
    assert_int_equal(kcld_evs_decoder_pending(d), 0);
  }
  assert_int_equal(g.n, s_nvecs * 21);
  assert_int_equal(kcld_evs_decoder_messages(d), s_nvecs * 21);
  /* Zero bytes are fine. */
  assert_int_equal(kcld_evs_decoder_feed(d, NULL, 0, on_msg, &g), 0);
  kcld_evs_decoder_free(d);
}

/* ======== Frames in the owner's buffers ======== */

struct owner {
  int allocs, releases;
  struct kcld_evs_decoder *d;
  struct got g;
  uint8_t *kept[256];      /* frames taken, in order */
  size_t kept_vec[256];
  size_t n_kept, n_in_place;
};

static void *own_alloc(void *ctx, size_t size)
{
  struct owner *o = ctx;
  o->allocs++;
  return malloc(size);
}

static struct owner *s_owner; /* for own_release, which has no context */

static void own_release(void *p)
{
  s_owner->releases++;
  free(p);
}

/* Checks the frame, then takes every other gathered frame's buffer. */
static int on_take(const struct kcld_evs_message *m, void *arg)
{
  struct owner *o = arg;
  size_t vec = o->g.next % s_nvecs;
  uint8_t *b;

  on_msg(m, &o->g);
  if (o->g.n % 2)
    return 0; /* not taken: the decoder gives it back */
  b = kcld_evs_decoder_take(o->d);
  assert_null(kcld_evs_decoder_take(o->d)); /* taken once */
  if (!b) {
    o->n_in_place++;
    return 0;
  }
  assert_true(o->n_kept < 256);
  /* The message's payload lies in the buffer taken. */
  assert_true(m->payload >= b && m->payload + m->payload_len <= b +
              s_vecs[vec].len);
  o->kept[o->n_kept] = b;
  o->kept_vec[o->n_kept++] = vec;
  return 0;
}

/* With an allocator, frames that arrive in pieces are gathered in its
 * buffers; the callback may take one and keep the whole frame, intact
 * after the decoder has gone on; what it does not take is given back; a
 * frame decoded in place has no buffer to take. */
static void test_own_buffers(void **state)
{
  struct owner o = {0};
  struct kcld_evs_alloc a = {own_alloc, own_release, &o};
  size_t pos = 0;

  (void)state;
  s_owner = &o;
  o.d = decoder(0, 0);
  kcld_evs_decoder_set_alloc(o.d, &a);
  assert_null(kcld_evs_decoder_take(o.d)); /* outside a callback */
  while (pos < s_stream_len) {
    size_t n = s_stream_len - pos < 100 ? s_stream_len - pos : 100;
    assert_int_equal(kcld_evs_decoder_feed(o.d, s_stream + pos, n, on_take,
                                           &o), 0);
    pos += n;
  }
  assert_int_equal(o.g.n, s_nvecs);
  assert_true(o.n_kept > 0);
  for (size_t i = 0; i < o.n_kept; i++) {
    const struct vec *v = &s_vecs[o.kept_vec[i]];
    assert_memory_equal(o.kept[i], v->frame, v->len);
    own_release(o.kept[i]);
  }
  /* Whole in one chunk: decoded in place, nothing to take. */
  size_t in_place = o.n_in_place;
  o.g = (struct got){0, 0, 0};
  o.g.n = 1; /* on_take takes at even counts: the next frame */
  assert_int_equal(kcld_evs_decoder_feed(o.d, s_vecs[0].frame, s_vecs[0].len,
                                         on_take, &o), 0);
  assert_int_equal(o.n_in_place, in_place + 1);
  kcld_evs_decoder_free(o.d);
  assert_true(o.allocs > 0);
  assert_int_equal(o.allocs, o.releases);
}

/* As the http client feeds a stream with a take: a chunk goes to
 * kcld_evs_decoder_gather() (inside curl: no callback), which stops at the
 * end of a frame it completes; kcld_evs_decoder_feed() then gets the rest
 * (maybe none) and first delivers that frame.  Some chunks are fed whole,
 * as when bytes were held.  Every frame arrives once, in order, and the
 * frames gathered are in the owner's buffers. */
static void test_gather_then_feed(void **state)
{
  struct kcld_evs_decoder *d = decoder(0, 0);
  struct owner o = {0};
  uint64_t rng = 0x9e3779b97f4a7c15ull;
  struct kcld_evs_alloc a = {own_alloc, own_release, &o};
  size_t gathered = 0;

  (void)state;
  s_owner = &o;
  o.d = d;
  kcld_evs_decoder_set_alloc(d, &a);
  for (int round = 0; round < 10; round++) {
    size_t pos = 0;
    while (pos < s_stream_len) {
      xorshift(&rng);
      size_t n = 1 + (size_t)(rng % (round % 2 ? 20000 : 200));
      if (n > s_stream_len - pos)
        n = s_stream_len - pos;
      size_t before = o.g.n, took = 0;
      if (rng % 5 != 0) { /* else: bytes were held, all go to feed */
        took = kcld_evs_decoder_gather(d, s_stream + pos, n);
        assert_true(took <= n);
        assert_int_equal(o.g.n, before); /* no callback inside gather */
        gathered += took;
      }
      assert_int_equal(kcld_evs_decoder_feed(d, s_stream + pos + took,
                                             n - took, on_take, &o), 0);
      pos += n;
    }
    assert_int_equal(kcld_evs_decoder_pending(d), 0);
    assert_int_equal(o.g.n, s_nvecs * (size_t)(round + 1));
  }
  assert_int_equal(kcld_evs_decoder_messages(d), s_nvecs * 10);
  assert_true(gathered > 5 * s_stream_len); /* the bulk went by gather */
  kcld_evs_decoder_free(d);
  /* The frames taken are whole; the rest went back to the owner. */
  assert_true(o.n_kept > 0);
  for (size_t i = 0; i < o.n_kept; i++) {
    const struct vec *v = &s_vecs[o.kept_vec[i]];
    assert_memory_equal(o.kept[i], v->frame, v->len);
    own_release(o.kept[i]);
  }
  assert_int_equal(o.allocs, o.releases);

  /* Gather stops at the end of the first frame; a bad prelude it meets is
   * reported by the next feed, after the frame before it; the bytes after
   * it are dropped, and nothing more is taken. */
  const struct vec *v = vec_named("records");
  uint8_t *two = malloc(2 * v->len);
  assert_non_null(two);
  memcpy(two, v->frame, v->len);
  memcpy(two + v->len, v->frame, v->len);
  two[v->len + 2] ^= 0x10;
  d = decoder(0, 0);
  struct got g = {0, (size_t)(v - s_vecs), 0};
  assert_int_equal(kcld_evs_decoder_gather(d, two, 2 * v->len), v->len);
  assert_int_equal(kcld_evs_decoder_gather(d, two + v->len, v->len), 0);
  assert_int_equal(kcld_evs_decoder_feed(d, "", 0, on_msg, &g), 0);
  assert_int_equal(g.n, 1);
  assert_int_equal(kcld_evs_decoder_gather(d, two + v->len, v->len), v->len);
  assert_int_equal(kcld_evs_decoder_feed(d, "", 0, on_msg, &g), KCLD_EPARSE);
  assert_int_equal(g.n, 1);
  assert_non_null(strstr(kcld_evs_decoder_error(d), "frame 2: prelude CRC"));
  assert_int_equal(kcld_evs_decoder_gather(d, two, v->len), 0);
  kcld_evs_decoder_free(d);

  /* A bad message CRC is found when the frame is delivered. */
  two[v->len + 2] ^= 0x10;
  two[v->len - 1] ^= 0x01;
  d = decoder(0, 0);
  g = (struct got){0, (size_t)(v - s_vecs), 0};
  assert_int_equal(kcld_evs_decoder_gather(d, two, 2 * v->len), v->len);
  assert_int_equal(kcld_evs_decoder_feed(d, "", 0, on_msg, &g), KCLD_EPARSE);
  assert_int_equal(g.n, 0);
  assert_non_null(strstr(kcld_evs_decoder_error(d), "frame 1: message CRC"));
  kcld_evs_decoder_free(d);
  free(two);
}

static int never(const struct kcld_evs_message *m, void *arg)
{
  (void)m;
  (void)arg;
  fail_msg("a corrupt frame was delivered");
  return 0;
}

/* ======== The gate ======== */

struct gated {
  struct owner o;
  int asked, refused;
  size_t last_len;         /* the frame length the gate was last asked */
};

/* Refuses every other frame the first time it is asked about it. */
static int gate_alternate(void *ctx, size_t frame_len)
{
  struct gated *t = ctx;
  int again = t->asked > 0 && t->last_len == frame_len &&
              t->refused == t->asked;
  t->asked++;
  t->last_len = frame_len;
  if (!again && t->asked % 2 == 0) {
    t->refused = t->asked;
    return 0;
  }
  return 1;
}

/* The gate is asked about every frame with its length, before any buffer
 * is made for it; a frame held back stops the feed right before it (at
 * most its prelude taken), and the bytes fed again go on from there: in
 * chunks of 100 and of 40000 bytes, every frame arrives once, in order.
 * Gathering (inside curl) never asks it and begins no frame. */
static void test_gate(void **state)
{
  (void)state;
  for (size_t chunk = 100; chunk <= 40000; chunk += 39900) {
    struct gated t = {0};
    struct kcld_evs_alloc a = {own_alloc, own_release, &t.o};
    size_t pos = 0;
    s_owner = &t.o;
    t.o.d = decoder(0, 0);
    kcld_evs_decoder_set_alloc(t.o.d, &a);
    kcld_evs_decoder_set_gate(t.o.d, gate_alternate, &t);
    while (pos < s_stream_len) {
      size_t n = s_stream_len - pos < chunk ? s_stream_len - pos : chunk;
      size_t taken = 0, frames = t.o.g.n;
      int allocs = t.o.allocs, refused = t.refused;
      assert_int_equal(kcld_evs_decoder_feed_some(t.o.d, s_stream + pos, n,
                                                  on_take, &t.o, &taken), 0);
      assert_true(taken <= n);
      if (taken < n) {
        /* Held back: asked with the next frame's length, nothing made. */
        assert_true(t.refused > refused);
        assert_int_equal(t.last_len, s_vecs[t.o.g.next % s_nvecs].len);
        assert_true(kcld_evs_decoder_pending(t.o.d) <= KCLD_EVS_PRELUDE_LEN);
        if (t.o.g.n == frames)
          assert_int_equal(t.o.allocs, allocs);
      }
      pos += taken;
    }
    assert_int_equal(t.o.g.n, s_nvecs);
    assert_int_equal(kcld_evs_decoder_pending(t.o.d), 0);
    assert_true(t.refused > 0);
    assert_true(t.asked >= (int)s_nvecs);
    for (size_t i = 0; i < t.o.n_kept; i++) {
      const struct vec *v = &s_vecs[t.o.kept_vec[i]];
      assert_memory_equal(t.o.kept[i], v->frame, v->len);
      own_release(t.o.kept[i]);
    }
    kcld_evs_decoder_free(t.o.d);
    assert_int_equal(t.o.allocs, t.o.releases);
  }
  /* Under a gate, gather stops after the first prelude: no buffer, no
   * question; the feed that follows asks and delivers everything. */
  struct gated t = {0};
  struct kcld_evs_alloc a = {own_alloc, own_release, &t.o};
  size_t took, taken = 0;
  s_owner = &t.o;
  t.o.d = decoder(0, 0);
  kcld_evs_decoder_set_alloc(t.o.d, &a);
  kcld_evs_decoder_set_gate(t.o.d, gate_alternate, &t);
  took = kcld_evs_decoder_gather(t.o.d, s_stream, s_stream_len);
  assert_true(took <= KCLD_EVS_PRELUDE_LEN);
  assert_int_equal(t.asked, 0);
  assert_int_equal(t.o.allocs, 0);
  for (size_t pos = took; pos < s_stream_len; pos += taken)
    assert_int_equal(kcld_evs_decoder_feed_some(t.o.d, s_stream + pos,
                                                s_stream_len - pos, on_take,
                                                &t.o, &taken), 0);
  assert_int_equal(t.o.g.n, s_nvecs);
  for (size_t i = 0; i < t.o.n_kept; i++)
    own_release(t.o.kept[i]);
  kcld_evs_decoder_free(t.o.d);
  assert_int_equal(t.o.allocs, t.o.releases);
}

/* Feeds `frame` (whole or byte by byte) and expects a refusal whose text
 * holds `why`; then the decoder takes nothing more. */
/* Feeds `frame` whole (chunk 0) or `chunk` bytes at a time (gathered):
 * refused, for `why`. */
static void expect_refused(const uint8_t *frame, size_t len, size_t max_msg,
                           size_t max_hdr, size_t chunk, const char *why)
{
  struct kcld_evs_decoder *d = decoder(max_msg, max_hdr);
  int rc = 0;

  if (chunk) {
    for (size_t i = 0; i < len && rc == 0; i += chunk)
      rc = kcld_evs_decoder_feed(d, frame + i,
                                 len - i < chunk ? len - i : chunk, never,
                                 NULL);
  } else {
    rc = kcld_evs_decoder_feed(d, frame, len, never, NULL);
  }
  assert_int_equal(rc, KCLD_EPARSE);
  if (!strstr(kcld_evs_decoder_error(d), why))
    fail_msg("error \"%s\" does not say \"%s\"", kcld_evs_decoder_error(d),
             why);
  assert_int_equal(kcld_evs_decoder_feed(d, s_vecs[0].frame, s_vecs[0].len,
                                         never, NULL), KCLD_EINVAL);
  kcld_evs_decoder_free(d);
}


static void test_bad_crcs(void **state)
{
  (void)state;
  for (size_t i = 0; i < s_nvecs; i++) {
    const struct vec *v = &s_vecs[i];
    uint8_t *f = malloc(v->len);
    assert_non_null(f);
    size_t step = v->len > 4096 ? v->len / 61 : 1;
    for (size_t k = 0; k < v->len; k += (k < 12 ? 1 : step)) {
      memcpy(f, v->frame, v->len);
      f[k] ^= (uint8_t)(1u << (k % 8));
      /* A prelude byte breaks the prelude CRC, any later one the message
       * CRC; whole, or gathered byte by byte (a large frame: in 4093-byte
       * chunks), nothing is delivered. */
      expect_refused(f, v->len, 0, 0, 0,
                     k < 12 ? "prelude CRC" : "message CRC");
      expect_refused(f, v->len, 0, 0, v->len < 600 ? 1 : 4093,
                     k < 12 ? "prelude CRC" : "message CRC");
    }
    free(f);
  }
  /* The frame before a corrupt one is delivered, the corrupt one not. */
  const struct vec *a = vec_named("records"), *b = vec_named("child-shards");
  uint8_t *two = malloc(a->len + b->len);
  assert_non_null(two);
  memcpy(two, a->frame, a->len);
  memcpy(two + a->len, b->frame, b->len);
  two[a->len + b->len - 1] ^= 0x40;
  struct kcld_evs_decoder *d = decoder(0, 0);
  struct got g = {0, (size_t)(a - s_vecs), 0};
  assert_int_equal(kcld_evs_decoder_feed(d, two, a->len + b->len, on_msg, &g),
                   KCLD_EPARSE);
  assert_int_equal(g.n, 1);
  assert_non_null(strstr(kcld_evs_decoder_error(d), "frame 2: message CRC"));
  kcld_evs_decoder_free(d);
  free(two);
}

static void test_truncated(void **state)
{
  (void)state;
  for (size_t i = 0; i < s_nvecs; i++) {
    const struct vec *v = &s_vecs[i];
    for (size_t cut = 1; cut <= 13 && cut <= v->len; cut++) {
      struct kcld_evs_decoder *d = decoder(0, 0);
      assert_int_equal(kcld_evs_decoder_feed(d, v->frame, v->len - cut, never,
                                             NULL), 0);
      assert_int_equal(kcld_evs_decoder_pending(d), v->len - cut);
      assert_int_equal(kcld_evs_decoder_messages(d), 0);
      kcld_evs_decoder_free(d);
    }
  }
}

/* ======== Frames built here, with good CRCs ======== */

static void put32(uint8_t *p, uint32_t v)
{
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

/* A frame with the given header block and payload; `total_override` and
 * `hl_override` (when non-zero) replace the true lengths in the prelude,
 * whose CRC is then computed over them. */
static uint8_t *build(const void *hdrs, size_t hl, const void *payload,
                      size_t pl, uint32_t total_override,
                      uint32_t hl_override, size_t *len)
{
  size_t total = 16 + hl + pl;
  uint8_t *f = malloc(total);
  assert_non_null(f);
  put32(f, total_override ? total_override : (uint32_t)total);
  put32(f + 4, hl_override ? hl_override : (uint32_t)hl);
  put32(f + 8, libdeflate_crc32(0, f, 8));
  if (hl)
    memcpy(f + 12, hdrs, hl);
  if (pl)
    memcpy(f + 12 + hl, payload, pl);
  put32(f + total - 4, libdeflate_crc32(0, f, total - 4));
  *len = total;
  return f;
}

static int count_only(const struct kcld_evs_message *m, void *arg)
{
  (void)m;
  ++*(int *)arg;
  return 0;
}

static void test_limits(void **state)
{
  size_t len;
  uint8_t *f;

  (void)state;
  /* Over 16 MiB: refused from the 12 prelude bytes alone. */
  f = build(NULL, 0, "x", 1, (16u << 20) + 1, 0, &len);
  expect_refused(f, 12, 0, 0, 0, "total length 16777217 is over the limit");
  expect_refused(f, 12, 0, 0, 1, "over the limit");
  free(f);
  /* Exactly at a lowered limit is fine, one byte over is not. */
  f = build(NULL, 0, "abcd", 4, 0, 0, &len);
  {
    struct kcld_evs_decoder *d = decoder(20, 0);
    int n = 0;
    assert_int_equal(kcld_evs_decoder_feed(d, f, len, count_only, &n), 0);
    assert_int_equal(n, 1);
    kcld_evs_decoder_free(d);
  }
  free(f);
  f = build(NULL, 0, "abcde", 5, 0, 0, &len);
  expect_refused(f, len, 20, 0, 0, "total length 21 is over the limit of 20");
  free(f);
  /* Header block over its limit, or longer than the frame allows. */
  uint8_t hdr[] = {1, 'a', 0};
  f = build(hdr, sizeof(hdr), NULL, 0, 0, 0, &len);
  expect_refused(f, len, 0, 2, 0, "headers length 3 is over the limit of 2");
  free(f);
  f = build(hdr, sizeof(hdr), NULL, 0, 0, 4, &len);
  expect_refused(f, len, 0, 0, 0, "headers length 4 does not fit");
  free(f);
  /* Below the minimum frame. */
  f = build(NULL, 0, NULL, 0, 15, 0, &len);
  expect_refused(f, 12, 0, 0, 0, "below the minimum");
  free(f);
  f = build(NULL, 0, NULL, 0, 0xffffffffu, 0, &len);
  expect_refused(f, 12, 0, 0, 0, "over the limit");
  free(f);
  /* A limit below the smallest frame is refused. */
  struct kcld_evs_decoder *d = NULL;
  struct kcld_evs_limits lim = {15, 0};
  assert_int_equal(kcld_evs_decoder_new(&lim, &d), KCLD_EINVAL);
  assert_null(d);
}

static void test_bad_headers(void **state)
{
  static const struct {
    const char *why;
    uint8_t h[40];
    size_t n;
  } cases[] = {
    {"unknown value type 10", {1, 'a', 10}, 3},
    {"unknown value type 255", {1, 'a', 255}, 3},
    {"empty name", {0, 0}, 2},
    {"name runs past", {5, 'a', 'b'}, 3},
    {"has no value type", {2, 'a', 'b'}, 3},
    {"value runs past", {1, 'a', 4, 0, 0, 0}, 6},
    {"value runs past", {1, 'a', 9, 1, 2, 3}, 6},
    {"value length runs past", {1, 'a', 7, 0}, 4},
    {"value runs past", {1, 'a', 7, 0, 3, 'x', 'y'}, 7},
    {"name holds a NUL", {2, 'a', 0, 0}, 4},
    {"header :event-type has value type 4, not string",
     {11, ':', 'e', 'v', 'e', 'n', 't', '-', 't', 'y', 'p', 'e', 4, 0, 0, 0,
      1}, 17},
    {"header :event-type appears twice",
     {11, ':', 'e', 'v', 'e', 'n', 't', '-', 't', 'y', 'p', 'e', 7, 0, 1, 'x',
      11, ':', 'e', 'v', 'e', 'n', 't', '-', 't', 'y', 'p', 'e', 7, 0, 1, 'y'},
     32},
    {"header :event-type value holds a NUL byte",
     {11, ':', 'e', 'v', 'e', 'n', 't', '-', 't', 'y', 'p', 'e', 7, 0, 2, 'x',
      0}, 17},
  };

  (void)state;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    size_t len;
    uint8_t *f = build(cases[i].h, cases[i].n, "p", 1, 0, 0, &len);
    expect_refused(f, len, 0, 0, 0, cases[i].why);
    expect_refused(f, len, 0, 0, 1, cases[i].why);
    free(f);
  }
}

/* A string header that is not a well-known one may hold NUL bytes; the
 * header lookup finds the first of a name; other names repeat freely. */
static int check_lookup(const struct kcld_evs_message *m, void *arg)
{
  const struct kcld_evs_header *h = kcld_evs_message_header(m, "k");
  assert_non_null(h);
  assert_int_equal(h->value_len, 3);
  assert_memory_equal(h->value, "a\0b", 4);
  assert_int_equal(m->n_headers, 2);
  assert_int_equal(m->headers[1].type, KCLD_EVS_FALSE);
  assert_null(kcld_evs_message_header(m, "nope"));
  assert_null(m->message_type);
  ++*(int *)arg;
  return 0;
}

static void test_header_lookup(void **state)
{
  uint8_t hdr[] = {1, 'k', 7, 0, 3, 'a', 0, 'b', 1, 'k', 1};
  size_t len;
  uint8_t *f = build(hdr, sizeof(hdr), NULL, 0, 0, 0, &len);
  struct kcld_evs_decoder *d = decoder(0, 0);
  int n = 0;

  (void)state;
  assert_int_equal(kcld_evs_decoder_feed(d, f, len, check_lookup, &n), 0);
  assert_int_equal(n, 1);
  kcld_evs_decoder_free(d);
  free(f);
  /* A frame of nothing but its prelude and CRC. */
  f = build(NULL, 0, NULL, 0, 0, 0, &len);
  assert_int_equal(len, 16);
  d = decoder(0, 0);
  n = 0;
  assert_int_equal(kcld_evs_decoder_feed(d, f, len, count_only, &n), 0);
  assert_int_equal(n, 1);
  kcld_evs_decoder_free(d);
  free(f);
}

/* The callback stops the stream: the frames after it are not delivered,
 * whole or gathered, and the decoder takes nothing more. */
static void test_stop(void **state)
{
  (void)state;
  for (int bytewise = 0; bytewise < 2; bytewise++) {
    struct kcld_evs_decoder *d = decoder(0, 0);
    struct got g = {0, 0, 3};
    int rc = 0;
    if (bytewise) {
      for (size_t i = 0; i < s_stream_len && rc == 0; i++)
        rc = kcld_evs_decoder_feed(d, s_stream + i, 1, on_msg, &g);
    } else {
      rc = kcld_evs_decoder_feed(d, s_stream, s_stream_len, on_msg, &g);
    }
    assert_int_equal(rc, 99);
    assert_int_equal(g.n, 3);
    assert_int_equal(kcld_evs_decoder_feed(d, s_stream, 16, on_msg, &g),
                     KCLD_EINVAL);
    kcld_evs_decoder_free(d);
  }
  assert_int_equal(kcld_evs_decoder_new(NULL, NULL), KCLD_EINVAL);
  kcld_evs_decoder_free(NULL);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_vectors_whole),
    cmocka_unit_test(test_split_every_boundary),
    cmocka_unit_test(test_stream_chunks),
    cmocka_unit_test(test_gather_then_feed),
    cmocka_unit_test(test_bad_crcs),
    cmocka_unit_test(test_truncated),
    cmocka_unit_test(test_limits),
    cmocka_unit_test(test_bad_headers),
    cmocka_unit_test(test_header_lookup),
    cmocka_unit_test(test_stop),
    cmocka_unit_test(test_own_buffers),
    cmocka_unit_test(test_gate),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
