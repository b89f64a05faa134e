/* test_base64.c — base64: the RFC 4648 test vectors both ways, strict
 * decoding (white space, '=' inside, excess padding, a length not a multiple
 * of 4 and characters outside the alphabet refused, with the offset of the
 * first bad one), every byte value round-tripping at every length mod 3,
 * and input longer than one OpenSSL block call coded the same as in one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "base/base64.h"

static const char *const k_plain[] = {"", "f", "fo", "foo", "foob", "fooba",
                                      "foobar"};
static const char *const k_b64[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==",
                                    "Zm9vYmE=", "Zm9vYmFy"};

static void test_vectors(void **state)
{
  char out[16];
  uint8_t bin[16];
  size_t n, bad;
  (void)state;
  for (size_t i = 0; i < 7; i++) {
    size_t len = strlen(k_plain[i]);
    assert_int_equal(kcld_base64_encoded_len(len), strlen(k_b64[i]));
    assert_int_equal(kcld_base64_encode(out, k_plain[i], len),
                     strlen(k_b64[i]));
    assert_string_equal(out, k_b64[i]);
    char *heap = kcld_base64_encode_new(k_plain[i], len, &n);
    assert_non_null(heap);
    assert_int_equal(n, strlen(k_b64[i]));
    assert_string_equal(heap, k_b64[i]);
    free(heap);
    assert_int_equal(kcld_base64_decode(k_b64[i], strlen(k_b64[i]), bin, &n,
                                        &bad), 0);
    assert_int_equal(n, len);
    assert_memory_equal(bin, k_plain[i], len);
  }
  assert_int_equal(kcld_base64_decoded_max(8), 6);
}

static void test_strict(void **state)
{
  static const struct {
    const char *text;
    size_t bad;
  } k_bad[] = {
    {"Zm9", 3},        /* length */
    {"Zm9vY", 5},
    {"Zm 9", 2},       /* white space */
    {"Zm9v\nYmFy", 9},  /* (length first) */
    {"Zm9v\nYmF", 4},
    {"Zg==Zg==", 2},   /* '=' inside */
    {"Z===", 1},       /* excess padding */
    {"====", 0},
    {"Zm9-", 3},       /* URL alphabet */
    {"Zm9_", 3},
    {"Zm\x80v", 2},
  };
  uint8_t bin[16];
  size_t n, bad;
  (void)state;
  for (size_t i = 0; i < sizeof(k_bad) / sizeof(k_bad[0]); i++) {
    size_t len = strlen(k_bad[i].text);
    n = 99;
    if (kcld_base64_decode(k_bad[i].text, len, bin, &n, &bad) != -1 ||
        bad != k_bad[i].bad || n != 0)
      fail_msg("\"%s\": bad %zu (want %zu), n %zu", k_bad[i].text, bad,
               k_bad[i].bad, n);
  }
}

static void test_round_trip(void **state)
{
  uint8_t in[256 + 2], bin[260];
  char text[400];
  size_t n, bad;
  (void)state;
  for (size_t i = 0; i < sizeof(in); i++)
    in[i] = (uint8_t)i;
  for (size_t len = 256; len <= sizeof(in); len++) {
    size_t t = kcld_base64_encode(text, in, len);
    assert_int_equal(kcld_base64_decode(text, t, bin, &n, &bad), 0);
    assert_int_equal(n, len);
    assert_memory_equal(bin, in, len);
  }
}

static void test_long_input(void **state)
{
  size_t len = (3u << 20) * 2 + 7; /* over two block calls */
  uint8_t *in = malloc(len), *back = malloc(len);
  size_t tlen = kcld_base64_encoded_len(len), n, bad;
  char *mine = malloc(tlen + 1), *ref = malloc(tlen + 1);
  (void)state;
  assert_non_null(in);
  assert_non_null(back);
  assert_non_null(mine);
  assert_non_null(ref);
  for (size_t i = 0; i < len; i++)
    in[i] = (uint8_t)(i * 131 + (i >> 9));
  assert_int_equal(EVP_EncodeBlock((unsigned char *)ref, in, (int)len),
                   (int)tlen);
  assert_int_equal(kcld_base64_encode(mine, in, len), tlen);
  assert_memory_equal(mine, ref, tlen + 1);
  assert_int_equal(kcld_base64_decode(mine, tlen, back, &n, &bad), 0);
  assert_int_equal(n, len);
  assert_memory_equal(back, in, len);
  free(in);
  free(back);
  free(mine);
  free(ref);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_vectors),
    cmocka_unit_test(test_strict),
    cmocka_unit_test(test_round_trip),
    cmocka_unit_test(test_long_input),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
