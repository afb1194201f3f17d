#include "io/channels.h"

void mg_channels_interleave(const float *planar, int channels, size_t n, size_t stride,
                            float *out)
{
    const size_t C = (size_t)channels;
    for (size_t c = 0; c < C; c++)
        for (size_t i = 0; i < n; i++)
            out[i * C + c] = planar[c * stride + i];
}

void mg_channels_to_planar(const float *in, int in_channels, size_t n, int out_channels,
                           float *out)
{
    const size_t C = (size_t)in_channels;
    if (in_channels == out_channels) {
        for (size_t c = 0; c < C; c++)
            for (size_t i = 0; i < n; i++)
                out[c * n + i] = in[i * C + c];
        return;
    }
    for (size_t i = 0; i < n; i++) {
        /* summed in channel order and divided, as mg_audio_downmix does */
        float sum = 0.0f;
        for (size_t c = 0; c < C; c++)
            sum += in[i * C + c];
        out[i] = sum / (float)C;
    }
    for (int c = 1; c < out_channels; c++)
        for (size_t i = 0; i < n; i++)
            out[(size_t)c * n + i] = out[i];
}
