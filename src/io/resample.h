/* Sample-rate conversion for mono float audio (used to feed Opus, which only
 * takes 8/12/16/24/48 kHz, from the model's 32 kHz output).
 *
 * Method: rational polyphase resampling with a Kaiser-windowed sinc low-pass
 * (beta 8.6, 32 input-rate zero crossings per side at the narrower of the two
 * rates). The cutoff sits at 90% of the lower Nyquist frequency, so for
 * 32 -> 48 kHz the passband is flat to about 13 kHz and images/aliases above
 * 16 kHz are rejected by roughly 80 dB. Each polyphase branch is normalised to
 * unity DC gain. Input outside [0, n) is taken as silence. */
#ifndef MG_RESAMPLE_H
#define MG_RESAMPLE_H
#include <stddef.h>
#include "base/error.h"

/* Resamples in[0..n) from in_rate to out_rate Hz. On success *out is a
 * malloc'd array of *out_n = ceil(n * out_rate / in_rate) samples (NULL when
 * n == 0). Rates whose reduced ratio needs more than 4096 filter phases are
 * rejected as unsupported. */
mg_code mg_resample(const float *in, size_t n, int in_rate, int out_rate,
                    float **out, size_t *out_n, mg_error *err);

/* A streaming resampler (libsoxr, high quality: 0.1 dB passband to 91% of
 * the lower Nyquist frequency, 125 dB stopband) for interleaved frames of 1
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
