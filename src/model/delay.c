#include "model/delay.h"

#include <stddef.h>

int mg_delay_forced_prompt(int K, int C, int total, int pad, int k, int t, const int32_t *row,
                           int prompt_frames)
{
    int d = k / C, D = K / C;
    if (t <= d || t >= total - D + 1 + d)
        return pad;
    if (t <= d + prompt_frames)
        return row[t - d - 1];
    return -1;
}

int mg_delay_forced(int K, int C, int total, int pad, int k, int t)
{
    return mg_delay_forced_prompt(K, C, total, pad, k, t, NULL, 0);
}

void mg_delay_mask_prompt(int K, int C, int total, int pad, const int32_t *prompt,
                          int64_t prompt_stride, int prompt_frames, int64_t *mask)
{
    for (int k = 0; k < K; k++)
        for (int t = 0; t < total; t++)
            mask[(int64_t)k * total + t] = mg_delay_forced_prompt(
                K, C, total, pad, k, t, prompt ? prompt + k * prompt_stride : NULL,
                prompt_frames);
}

void mg_delay_mask(int K, int C, int total, int pad, int64_t *mask)
{
    mg_delay_mask_prompt(K, C, total, pad, NULL, 0, 0, mask);
}

int mg_delay_frames(int K, int C, int total) { return total > K / C ? total - K / C : 0; }

void mg_delay_extract_frames(int K, int C, int total, const int32_t *seq, int first, int n,
                             int32_t *codes, int64_t stride)
{
    for (int k = 0; k < K; k++)
        for (int j = 0; j < n; j++)
            codes[(int64_t)k * stride + j] = seq[(int64_t)k * total + first + j + k / C + 1];
}

void mg_delay_extract(int K, int C, int total, const int32_t *seq, int32_t *codes)
{
    int frames = mg_delay_frames(K, C, total);
    mg_delay_extract_frames(K, C, total, seq, 0, frames, codes, frames);
}
