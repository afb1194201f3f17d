/* MusicGen's codebook delay pattern: codebook k is shifted right by
 * k / C + 1 columns, C being the model's audio channels (column 0 is the
 * start token for every codebook). A mono model's codebook k is delayed by
 * k; a stereo model interleaves its channels (codebook 2c + ch is channel
 * ch's EnCodec codebook c) and delays both 2c and 2c + 1 by c, so D = K / C
 * codebook delays span a window. A sequence may begin with a code prompt
 * (continuation): codebook k's prompt frames then lie in columns
 * k / C + 1 .. k / C + prompt_frames, forced like the pads. */
#ifndef MG_DELAY_H
#define MG_DELAY_H
#include <stdint.h>

/* mask [K, total]: -1 where the model chooses, pad where the column is forced
 * (t <= d, or t >= total - D + 1 + d, d = k / C). */
void mg_delay_mask(int K, int C, int total, int pad, int64_t *mask);
/* The same for a sequence that begins with a prompt: prompt [K, prompt_frames]
 * (undelayed, row k at prompt + k * prompt_stride) where it lies, as Hugging
 * Face's build_delay_pattern_mask lays out cat([start], prompt). */
void mg_delay_mask_prompt(int K, int C, int total, int pad, const int32_t *prompt,
                          int64_t prompt_stride, int prompt_frames, int64_t *mask);
/* Forced value of (k, t), or -1 if free. */
int  mg_delay_forced(int K, int C, int total, int pad, int k, int t);
/* Forced value of (k, t) when codebook k's prompt is `row` (prompt_frames
 * codes; NULL with 0 frames: no prompt): the pads win over the prompt (as in
 * the reference, where a prompt reaches the closing pads). */
int  mg_delay_forced_prompt(int K, int C, int total, int pad, int k, int t, const int32_t *row,
                            int prompt_frames);
/* Number of audio frames a sequence of `total` columns yields: total - K / C. */
int  mg_delay_frames(int K, int C, int total);
/* seq [K, total] -> codes [K, frames]: frame j of codebook k is column j + k / C + 1. */
void mg_delay_extract(int K, int C, int total, const int32_t *seq, int32_t *codes);
/* Frames [first, first + n) of seq [K, total] into codes, codebook k's at
 * codes + k * stride (a window's frames into a longer clip's codes). */
void mg_delay_extract_frames(int K, int C, int total, const int32_t *seq, int first, int n,
                             int32_t *codes, int64_t stride);
#endif
