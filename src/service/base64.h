/* Base64 (RFC 4648, standard alphabet, '=' padding) and audio data URLs. */
#ifndef MG_BASE64_H
#define MG_BASE64_H
#include <stddef.h>
#include <stdint.h>
#include "io/audio.h"
#include "base/error.h"

/* Characters mg_base64_encode writes for n input bytes, excluding the NUL;
 * (size_t)-1 if that would overflow size_t. */
size_t mg_base64_len(size_t n);
/* Writes mg_base64_len(n) characters plus a terminating NUL to out. */
void mg_base64_encode(const uint8_t *in, size_t n, char *out);

/* Bytes mg_base64_decode may write for n input characters (an upper bound). */
size_t mg_base64_decoded_max(size_t n);
/* Decodes in[0..n) into out (room for mg_base64_decoded_max(n) bytes).
 * ASCII whitespace is skipped (line-wrapped base64 decodes); '=' padding is
 * optional, but nothing other than whitespace and '=' may follow it. Returns
 * 0 with *out_n the byte count, or -1 with *bad the offset of the first
 * character that is not valid there (n when the input ends mid-byte). */
int    mg_base64_decode(const char *in, size_t n, uint8_t *out, size_t *out_n, size_t *bad);

/* Builds "data:<mime>;base64,<bytes>" for audio format f. On success *url is
 * malloc'd and NUL-terminated (caller frees) and *url_len is its strlen. */
mg_code mg_audio_data_url(const uint8_t *bytes, size_t n, mg_audio_format f, char **url,
                          size_t *url_len, mg_error *err);

#endif
