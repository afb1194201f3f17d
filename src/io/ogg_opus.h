/* An Ogg/Opus writer (RFC 7845) that only appends: libopus frames of 20 ms,
 * libogg pages flushed every 200 ms of audio, a fixed stream serial number,
 * so the bytes depend only on the samples (libsndfile's writer picks a
 * random serial number per file). The last page's granule position trims
 * the padding, so a decoder returns exactly the samples written. */
#ifndef MG_OGG_OPUS_H
#define MG_OGG_OPUS_H
#include <stddef.h>
#include <stdint.h>
#include "base/error.h"

typedef struct mg_ogg_opus mg_ogg_opus;

/* emit receives the pages in order; non-zero from it fails the call that fed
 * it with MG_ERR_CANCELLED. rate must be an Opus rate (8, 12, 16, 24 or 48
 * kHz). Sends the two header pages. */
mg_code mg_ogg_opus_open(mg_ogg_opus **out, int rate, int channels,
                         int (*emit)(void *ud, const uint8_t *bytes, size_t n), void *ud,
                         mg_error *err);
/* Encodes frames x[0 .. frames * channels), interleaved, nominally in [-1, 1]. */
mg_code mg_ogg_opus_write(mg_ogg_opus *o, const float *x, size_t frames, mg_error *err);
/* Pads the last Opus frame, encodes the encoder's look-ahead and sends the
 * last page (end of stream). */
mg_code mg_ogg_opus_finish(mg_ogg_opus *o, mg_error *err);
void    mg_ogg_opus_free(mg_ogg_opus *o);

#endif
