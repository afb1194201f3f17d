#include "model/delay.h"

#include <stddef.h>

int mg_delay_forced_prompt(int K, int total, int pad, int k, int t, const int32_t *row,
                           int prompt_frames)
{
    if (t <= k || t >= total - K + 1 + k)
        return pad;
    if (t <= k + prompt_frames)
        return row[t - k - 1];
    return -1;
}

int mg_delay_forced(int K, int total, int pad, int k, int t)
{
    return mg_delay_forced_prompt(K, total, pad, k, t, NULL, 0);
}

void mg_delay_mask_prompt(int K, int total, int pad, const int32_t *prompt,
                          int64_t prompt_stride, int prompt_frames, int64_t *mask)
{
    for (int k = 0; k < K; k++)
        for (int t = 0; t < total; t++)
            mask[(int64_t)k * total + t] = mg_delay_forced_prompt(
                K, total, pad, k, t, prompt ? prompt + k * prompt_stride : NULL, prompt_frames);
}

void mg_delay_mask(int K, int total, int pad, int64_t *mask)
{
    mg_delay_mask_prompt(K, total, pad, NULL, 0, 0, mask);
}

int mg_delay_frames(int K, int total) { return total > K ? total - K : 0; }

void mg_delay_extract_frames(int K, int total, const int32_t *seq, int first, int n,
                             int32_t *codes, int64_t stride)
{
    for (int k = 0; k < K; k++)
        for (int j = 0; j < n; j++)
            codes[(int64_t)k * stride + j] = seq[(int64_t)k * total + first + j + k + 1];
}

void mg_delay_extract(int K, int total, const int32_t *seq, int32_t *codes)
{
    int frames = mg_delay_frames(K, total);
    mg_delay_extract_frames(K, total, seq, 0, frames, codes, frames);
}
