/* MusicGen's codebook delay pattern: codebook k is shifted right by k+1
 * columns (column 0 is the start token for every codebook). */
#ifndef MG_DELAY_H
#define MG_DELAY_H
#include <stdint.h>

/* mask [K, total]: -1 where the model chooses, pad where the column is forced
 * (t <= k, or t >= total - K + 1 + k). */
void mg_delay_mask(int K, int total, int pad, int64_t *mask);
/* Forced value of (k, t), or -1 if free. */
int  mg_delay_forced(int K, int total, int pad, int k, int t);
/* Number of audio frames a sequence of `total` columns yields: total - K. */
int  mg_delay_frames(int K, int total);
/* seq [K, total] -> codes [K, frames]: frame j of codebook k is column j+k+1. */
void mg_delay_extract(int K, int total, const int32_t *seq, int32_t *codes);
#endif
