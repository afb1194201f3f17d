/* Byte layouts of the BF16 weights the backends' fast paths read (see
 * mg_backend_caps: conv_bf16, lstm_bf16). The model code writes weights in
 * them at load time and tests read them back; the index arithmetic lives
 * here so that writers, readers and kernels share one definition. */
#ifndef MG_BACKEND_LAYOUT_H
#define MG_BACKEND_LAYOUT_H
#include <stdint.h>

/* Conv weights in BF16 pairs (caps.conv_bf16): the input channel (dim 1 of
 * a conv [c_out][c_in][k], dim 0 of a transposed conv [c_in][c_out][k])
 * pairs up, so element [.., c, ..] of the F32 layout with c counting pairs
 * is a 32-bit word holding channel 2c in its low half and 2c+1 in its high
 * half: the kernels then run unchanged over "channels" that are pairs.
 * Returns where weight (a, b, j) of a [d0][d1][k] weight lives: the 32-bit
 * word, and in *half which 16-bit half of it (0: low). */
static inline int64_t mg_conv_bf16_pair_word(int64_t a, int64_t b, int64_t j, int64_t d1,
                                             int64_t k, int transposed, int *half)
{
    int64_t ci = transposed ? a : b;
    *half = (int)(ci % 2);
    return transposed ? ((ci / 2) * d1 + b) * k + j : (a * (d1 / 2) + ci / 2) * k + j;
}

/* A conv weight in that pair layout back in its F32 layout [d0][d1][k]. */
void mg_conv_bf16_pairs_to_f32(const uint32_t *pairs, int64_t d0, int64_t d1, int64_t k,
                               int transposed, float *out);

/* Recurrent LSTM weights in BF16 rows (caps.lstm_bf16): each whole
 * 32-column chunk of a row is stored pairwise interleaved, columns (c, c+16)
 * side by side, so one 32-bit lane widens to two floats with a shift and a
 * mask; columns past the last whole chunk stay in order. Returns where
 * column k of a row of n columns lives. */
static inline int64_t mg_bf16_pair_index(int64_t k, int64_t n)
{
    int64_t base = k & ~(int64_t)31, i = k & 31;
    if (base + 32 > n)
        return k;
    return base + (i < 16 ? 2 * i : 2 * (i - 16) + 1);
}
#endif
