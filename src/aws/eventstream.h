/* eventstream.h — a strict, incremental decoder of AWS event-stream frames
 * (application/vnd.amazon.eventstream), the framing of SubscribeToShard.
 *
 * A frame ("message") is:
 *   total length   u32 big-endian, the whole frame, 16 .. max_message
 *   headers length u32 big-endian, 0 .. max_headers, and at most
 *                  total - 16
 *   prelude CRC    u32, CRC32 of the 8 bytes above
 *   headers        headers-length bytes of typed headers, each
 *                  name length (u8, >= 1), name (no NUL byte),
 *                  value type (u8) and value:
 *                    0 true, 1 false (no bytes), 2 byte (i8), 3 short (i16),
 *                    4 integer (i32), 5 long (i64), 6 byte array and
 *                    7 string (u16 length, then the bytes), 8 timestamp
 *                    (i64 milliseconds since the epoch), 9 UUID (16 bytes)
 *   payload        the rest
 *   message CRC    u32, CRC32 of everything before it
 *
 * The decoder is fed the bytes as they arrive, in chunks of any size, and
 * calls back once per complete frame whose CRCs and headers check out.  A
 * frame it cannot accept (a CRC mismatch, a length over a limit, a header
 * running past its block, an unknown value type, a duplicate or non-string
 * `:message-type`, `:event-type`, `:exception-type` or `:content-type`) is
 * an error, and the decoder takes nothing more: with no way to find the
 * next frame boundary for sure, the stream is over.
 *
 * Memory: a frame that arrives whole inside one chunk is decoded where it
 * lies; otherwise its bytes are gathered in a buffer of the frame's size,
 * from the owner's allocator if it set one, else from malloc, given back
 * after the frame's callback.  The callback may take that buffer and keep
 * the frame without copying it (kcld_evs_decoder_take).  An owner that
 * must not act where it reads (inside curl) gathers there
 * (kcld_evs_decoder_gather), and feeds later to have the frames delivered.
 * Not thread-safe: one owner. */
#ifndef KCLD_AWS_EVENTSTREAM_H
#define KCLD_AWS_EVENTSTREAM_H

#include <stddef.h>
#include <stdint.h>

#define KCLD_EVS_PRELUDE_LEN 12u
#define KCLD_EVS_MIN_MESSAGE 16u
/* The limits of the AWS event-stream libraries. */
#define KCLD_EVS_DEFAULT_MAX_MESSAGE ((size_t)16 << 20)
#define KCLD_EVS_DEFAULT_MAX_HEADERS ((size_t)128 << 10)

enum kcld_evs_type {
  KCLD_EVS_TRUE = 0,
  KCLD_EVS_FALSE = 1,
  KCLD_EVS_BYTE = 2,
  KCLD_EVS_SHORT = 3,
  KCLD_EVS_INT = 4,
  KCLD_EVS_LONG = 5,
  KCLD_EVS_BYTES = 6,
  KCLD_EVS_STRING = 7,
  KCLD_EVS_TIMESTAMP = 8,
  KCLD_EVS_UUID = 9
};

struct kcld_evs_header {
  const char *name;         /* NUL-terminated */
  size_t name_len;
  enum kcld_evs_type type;
  int64_t num;              /* TRUE 1, FALSE 0, BYTE, SHORT, INT, LONG,
                               TIMESTAMP (ms); 0 for the others */
  const uint8_t *value;     /* BYTES, STRING (NUL-terminated; may hold NUL
                               bytes before value_len), UUID (16 bytes);
                               NULL for the others */
  size_t value_len;
};

/* One decoded frame.  Valid only during the callback it is given to. */
struct kcld_evs_message {
  const struct kcld_evs_header *headers; /* in frame order */
  size_t n_headers;
  const uint8_t *payload;
  size_t payload_len;
  /* The well-known string headers, NULL when absent. */
  const char *message_type;   /* :message-type: "event", "exception",
                                 "error" */
  const char *event_type;     /* :event-type */
  const char *exception_type; /* :exception-type */
  const char *content_type;   /* :content-type */
  const char *error_code;     /* :error-code (message type "error") */
  const char *error_message;  /* :error-message */
};

struct kcld_evs_limits {
  size_t max_message; /* 0 = KCLD_EVS_DEFAULT_MAX_MESSAGE; at least 16 */
  size_t max_headers; /* 0 = KCLD_EVS_DEFAULT_MAX_HEADERS */
};

struct kcld_evs_decoder;

/* Where the decoder gathers frames. */
struct kcld_evs_alloc {
  void *(*alloc)(void *ctx, size_t size); /* >= size bytes, or NULL */
  void (*release)(void *p);               /* an alloc()ed buffer */
  void *ctx;
};

/* Asked before the decoder takes in each frame, once the frame's prelude
 * (and so its length, frame_len) is in and checked: 1 takes the frame, 0
 * holds it back.  A frame held back stops kcld_evs_decoder_feed_some()
 * before it: nothing of it is gathered beyond its 12-byte prelude and no
 * buffer is allocated for it; feed the bytes not taken again once the gate
 * would say yes (it is asked again).  kcld_evs_decoder_gather() never asks
 * it (it runs where the owner must not act): under a gate it begins no
 * frame, and stops where one begins. */
typedef int (*kcld_evs_gate_cb)(void *ctx, size_t frame_len);

/* Called once per frame, in order.  Returns 0 to go on, or any other value
 * to stop: kcld_evs_decoder_feed() then returns that value at once, the
 * rest of its chunk is dropped and the decoder takes nothing more. */
typedef int (*kcld_evs_message_cb)(const struct kcld_evs_message *msg,
                                   void *arg);

/* Creates a decoder (lim may be NULL).  Returns 0, KCLD_EINVAL (a
 * max_message below 16) or KCLD_ENOMEM. */
int kcld_evs_decoder_new(const struct kcld_evs_limits *lim,
                         struct kcld_evs_decoder **out);

/* Gathers the frames to come in buffers from `a` (copied; NULL, or one
 * without both functions: malloc and free again). */
void kcld_evs_decoder_set_alloc(struct kcld_evs_decoder *d,
                                const struct kcld_evs_alloc *a);

/* Sets the gate every frame passes (NULL: none, every frame is taken). */
void kcld_evs_decoder_set_gate(struct kcld_evs_decoder *d,
                               kcld_evs_gate_cb gate, void *ctx);

/* Only inside the callback: the buffer its frame was gathered in, now the
 * caller's, or NULL when the frame was decoded where it lay in the fed
 * chunk (copy what you keep then).  The buffer holds the whole frame from
 * its prelude on, so the message's pointers into it stay valid until the
 * caller gives it back: with the allocator's release, or free() when none
 * was set. */
void *kcld_evs_decoder_take(struct kcld_evs_decoder *d);

/* Frees the decoder.  NULL is ignored. */
void kcld_evs_decoder_free(struct kcld_evs_decoder *d);

/* Feeds `len` bytes (any split of the stream) and calls cb for every frame
 * they complete.  Returns 0 when every byte was taken (or, with a gate set,
 * when the gate held a frame back: use kcld_evs_decoder_feed_some());
 * KCLD_EPARSE when a
 * frame is refused (kcld_evs_decoder_error() says why); the callback's
 * non-zero value when it stopped; KCLD_ENOMEM; KCLD_EINVAL once the decoder
 * has failed or stopped, or for NULL data with len > 0. */
int kcld_evs_decoder_feed(struct kcld_evs_decoder *d, const void *data,
                          size_t len, kcld_evs_message_cb cb, void *arg);

/* kcld_evs_decoder_feed() for a decoder with a gate: the same, and
 * *taken gets how many bytes were taken, fewer than len (with 0 returned)
 * only when the gate held a frame back; the rest is for a later call. */
int kcld_evs_decoder_feed_some(struct kcld_evs_decoder *d, const void *data,
                               size_t len, kcld_evs_message_cb cb, void *arg,
                               size_t *taken);

/* Gathers bytes into frames and never calls back: for an owner that must
 * not act on a frame where it reads (inside curl's write callback).  Each
 * frame is checked by its prelude and gathered in its own buffer; it takes
 * bytes up to the end of the first frame it completes, which then waits
 * for the next kcld_evs_decoder_feed() (with more bytes or none): that
 * delivers it before anything else, and checks it then.  So an owner that
 * pauses on a frame has not taken more.  A fault met here (a bad prelude,
 * no memory) is reported by that feed after the frame before it; the
 * bytes after it are dropped (all are taken).  Returns how many bytes it
 * took, from the front: 0 while a frame it completed waits, inside a
 * callback of feed (whose bytes come first), or once the decoder has
 * failed or stopped.  With a gate set it begins no frame: it stops after a
 * frame's prelude, and the next feed asks the gate. */
size_t kcld_evs_decoder_gather(struct kcld_evs_decoder *d, const void *data,
                               size_t len);

/* Bytes of an unfinished frame held: non-zero at the end of a stream means
 * the stream was cut mid-frame. */
size_t kcld_evs_decoder_pending(const struct kcld_evs_decoder *d);

/* Frames delivered so far. */
uint64_t kcld_evs_decoder_messages(const struct kcld_evs_decoder *d);

/* Why the decoder failed: one line naming the frame (by its number) and
 * the fault, e.g. "frame 3: message CRC 0x1a2b3c4d, computed 0x...";
 * "" while it has not. */
const char *kcld_evs_decoder_error(const struct kcld_evs_decoder *d);

/* The first header named `name` in msg, or NULL. */
const struct kcld_evs_header *
kcld_evs_message_header(const struct kcld_evs_message *msg, const char *name);

#endif
