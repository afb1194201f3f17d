#include "model/delay.h"

int mg_delay_forced(int K, int total, int pad, int k, int t)
{
    if (t <= k || t >= total - K + 1 + k)
        return pad;
    return -1;
}

void mg_delay_mask(int K, int total, int pad, int64_t *mask)
{
    for (int k = 0; k < K; k++)
        for (int t = 0; t < total; t++)
            mask[(int64_t)k * total + t] = mg_delay_forced(K, total, pad, k, t);
}

int mg_delay_frames(int K, int total) { return total > K ? total - K : 0; }

void mg_delay_extract(int K, int total, const int32_t *seq, int32_t *codes)
{
    int frames = mg_delay_frames(K, total);
    for (int k = 0; k < K; k++)
        for (int j = 0; j < frames; j++)
            codes[(int64_t)k * frames + j] = seq[(int64_t)k * total + j + k + 1];
}
