/* The index map of the CUDA backend's BF16 convolutions as implicit matrix
 * products (conv.cu: conv_mma_kernel), shared by that kernel and a host test
 * (tests/test_conv_mma.c) that runs the same map against the CPU backend's
 * convolutions, so the map is checked on machines without a GPU too.
 *
 * Rows m are output samples of every batch item (m = b·per_item + u),
 * columns n output channels, and the reduction index kk = ci·taps + j walks
 * input channels and taps:
 *   conv1d:           A[m][kk] = x[b, ci, u·stride + j·dil], B[n][kk] = w[n, ci, j],
 *                     y[b, n, u]
 *   conv_transpose1d: one stride phase r per product, q = q_first + u,
 *                     A[m][kk] = x[b, ci, q - j], B[n][kk] = w[ci, n, r + j·stride]
 *                     (zero past the kernel or the signal), y[b, n, q·stride + r - trim_left]
 * (full output f = q·s + r, as the CPU's transposed conv). Weights are BF16
 * in the pair layout of caps.conv_bf16 (backend/layout.h). Plain C, also compiled as
 * CUDA device code. */
#ifndef MG_CONV_MMA_H
#define MG_CONV_MMA_H
#include <stdint.h>

#ifdef __CUDACC__
#define MG_HD static __host__ __device__ __forceinline__
#else
#define MG_HD static inline
#endif

typedef struct {
    float          *y;
    const float    *x;
    const uint32_t *w;      /* BF16 pairs */
    const float    *bias;
    int             c_in, c_out, k_taps, t_in, t_y;
    int             stride, dil, transposed;
    int             taps;     /* reduction taps per input channel (per phase: transposed) */
    int             per_item; /* rows per batch item */
    int             rows;     /* batch · per_item */
    int             q_first, trim_left;
    int             pad_;     /* no padding bytes: recorded launches compare arguments */
} mg_conv_mma_args;

/* Fills the map's shape fields: conv1d (transposed = 0, arg = dilation) or
 * conv_transpose1d (transposed = 1, arg = trim_left: `stride` products, one
 * per phase, rows over the q = f / stride that cover y, f = oy + trim_left). */
MG_HD void mg_conv_mma_shape(mg_conv_mma_args *a, int transposed, int batch, int c_in, int c_out,
                             int k_taps, int t_in, int t_y, int stride, int arg)
{
    a->c_in = c_in;
    a->c_out = c_out;
    a->k_taps = k_taps;
    a->t_in = t_in;
    a->t_y = t_y;
    a->stride = stride;
    a->transposed = transposed;
    a->dil = transposed ? 1 : arg;
    a->trim_left = transposed ? arg : 0;
    a->taps = transposed ? (k_taps + stride - 1) / stride : k_taps;
    a->q_first = transposed ? arg / stride : 0;
    a->per_item = transposed ? (arg + t_y - 1) / stride - a->q_first + 1 : t_y;
    a->rows = batch * a->per_item;
}

/* Row m: its batch item and its position (conv1d: first input sample;
 * transposed: q). */
MG_HD void mg_conv_mma_row(const mg_conv_mma_args *a, int m, int *b, int *pos)
{
    int u = m % a->per_item;
    *b = m / a->per_item;
    *pos = a->transposed ? a->q_first + u : u * a->stride;
}

/* A[m][kk] for row (b, pos), not yet rounded to BF16; kk < c_in·taps. */
MG_HD float mg_conv_mma_x(const mg_conv_mma_args *a, int phase, int b, int pos, int kk)
{
    int ci = kk / a->taps, j = kk % a->taps, t;
    if (a->transposed) {
        if (phase + j * a->stride >= a->k_taps)
            return 0.0f;
        t = pos - j;
    } else {
        t = pos + j * a->dil;
    }
    if (t < 0 || t >= a->t_in)
        return 0.0f;
    return a->x[((int64_t)b * a->c_in + ci) * a->t_in + t];
}

/* B[n][kk]: the weight's BF16 bits in the high half of a float's (the rest
 * zero, so the float is the BF16 value); kk < c_in·taps, n < c_out. */
MG_HD uint32_t mg_conv_mma_w(const mg_conv_mma_args *a, int phase, int n, int kk)
{
    int ci = kk / a->taps, j = kk % a->taps;
    int64_t word;
    if (a->transposed) {
        int tap = phase + j * a->stride;
        if (tap >= a->k_taps)
            return 0;
        word = ((int64_t)(ci / 2) * a->c_out + n) * a->k_taps + tap;
    } else {
        word = ((int64_t)n * (a->c_in / 2) + ci / 2) * a->k_taps + j;
    }
    uint32_t v = a->w[word];
    return ci % 2 ? v & 0xffff0000u : v << 16;
}

/* The output sample of row position pos in phase `phase`, or -1 when it lies
 * outside y. */
MG_HD int mg_conv_mma_oy(const mg_conv_mma_args *a, int phase, int pos)
{
    int oy = a->transposed ? pos * a->stride + phase - a->trim_left : pos / a->stride;
    return oy >= 0 && oy < a->t_y ? oy : -1;
}
#endif
