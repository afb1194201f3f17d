/* Sample-rate conversion on libsoxr (the Ogg/Opus and MP3 output at rates
 * those codecs lack, users' audio prompts at any rate). libsoxr replaced a
 * hand-written polyphase resampler after a measurement (bench_resample,
 * docs/PERFORMANCE.md): faster, a wider flat passband and a deeper stopband.
 * Quality is libsoxr's HQ preset: flat to about 91% of the lower Nyquist
 * frequency, images and aliases more than 130 dB down, linear phase, its
 * delay compensated (output sample 0 is input sample 0). */
#ifndef MG_RESAMPLE_H
#define MG_RESAMPLE_H
#include <stddef.h>
#include "base/error.h"

/* Resamples mono in[0..n) from in_rate to out_rate Hz in one call. On success
 * *out is a malloc'd array of *out_n = ceil(n * out_rate / in_rate) samples
 * (NULL when n == 0); equal rates copy the samples exactly. Any pair of
 * positive rates works. */
mg_code mg_resample(const float *in, size_t n, int in_rate, int out_rate,
                    float **out, size_t *out_n, mg_error *err);

/* A streaming resampler (libsoxr HQ, as above) for interleaved frames of 1
 * or 2 channels. Its output depends only on the sequence of input blocks the
 * caller gives; callers that need output independent of how their input was
 * split re-block it first. */
typedef struct mg_resampler mg_resampler;

mg_code mg_resampler_open(mg_resampler **out, int in_rate, int out_rate, int channels,
                          mg_error *err);
/* Resamples in[0..n) frames. *out points to the output frames available now
 * (*out_n of them), valid until the next call on r. */
mg_code mg_resampler_process(mg_resampler *r, const float *in, size_t n, const float **out,
                             size_t *out_n, mg_error *err);
/* At the end of the input: the output the filter still holds. Call until
 * *out_n is 0. */
mg_code mg_resampler_flush(mg_resampler *r, const float **out, size_t *out_n, mg_error *err);
void    mg_resampler_free(mg_resampler *r);

#endif
