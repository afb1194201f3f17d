/* CPU convolutions, padding and transposes for the EnCodec decoder (its
 * LSTM: cpu_lstm.c).
 *
 * Every op splits its output into independent pieces (a block of output
 * channels x a tile of time, one row), and each piece is always
 * computed by the same loop in the same order, so results do not depend on the
 * thread count. The portable convolutions run in register blocks of CO_BLK
 * output channels x MB samples that -O2 vectorises; blocks at the edges of
 * the signal read a small zero-padded copy of the input. With AVX-512 the
 * blocked kernels below take over (conv1d with optional residual/ELU
 * epilogues, the transposed conv with all stride phases in one block). */
#include "cpu/cpu_impl.h"
#include "io/safetensors.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum {
    CO_BLK = 4,   /* output channels per block: each input load feeds 4 multiply-adds */
    MB     = 16,  /* samples per register block: CO_BLK x MB sums stay in registers */
    CI_BLK = 32,  /* input channels per pass over a tile: their rows stay in L1 */
    TILE   = 128, /* conv1d output samples per work item */
    QT     = 64,  /* transposed-conv input positions per work item */
    WIN    = 64   /* widest zero-padded input window for blocks at the edges */
};

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* --------------------------------------------------- AVX-512 blocked path
 * Both convolutions as matrix products without im2col: an output block of
 * VB channels x VT·16 samples lives in VB·VT = 24 zmm accumulators; each
 * (input channel, tap) step loads VT input vectors and broadcasts VB weights
 * (24 FMAs per 11 loads, so the FMA units, not the loads, set the pace).
 * The sum over (ci, tap) always runs in the same order, so an output does not
 * depend on the block, the tile or the thread that computed it. Ragged time
 * tails are masked (no window copies); ragged channel blocks use smaller VB. */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define CONV_X86 1
#define TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
#define TARGET_AVX512BF16 \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,avx512bf16")))
#define INLINE static inline __attribute__((always_inline))
#include "cpu/cpu_exp_avx512.h"

enum { VB = 8, VT = 3, VS = VT * 16, VTILE = 4 * VS /* samples per work item */ };

typedef struct {
    const float *x;              /* input at the block's first sample, channel 0, tap 0 */
    int64_t      x_ci, x_tap;
    const float *w;              /* weight of the block's first channel, ci 0, tap 0 */
    int64_t      w_co, w_ci, w_tap;
    int64_t      n_ci, n_tap;
    float       *y;              /* output of the first channel at the block's first sample */
    int64_t      y_co, y_t;      /* channel and sample strides of y */
    const float *bias;           /* bias of the first channel (or NULL) */
    const float *res;            /* epilogue (y_t = 1 only): residual laid out as y, or NULL */
    int          elu;            /*   and 1: ELU of the sum */
} vblock;

/* ELU as mg_cpu_elu's AVX-512 kernel computes it (the same bits). */
INLINE TARGET_AVX512 __m512 elu_avx512(__m512 x)
{
    __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
    return neg ? _mm512_mask_mov_ps(x, neg, expm1_neg_avx512(x)) : x;
}

/* acc[o][v] += Σ_ci Σ_tap w · x over the block (F32 weights and inputs). */
INLINE TARGET_AVX512 void vconv_sums_f32(const vblock *a, const __mmask16 *m, const int nco,
                                         __m512 acc[VB][VT])
{
    for (int64_t ci = 0; ci < a->n_ci; ci++) {
        const float *xc = a->x + ci * a->x_ci, *wc = a->w + ci * a->w_ci;
        for (int64_t tap = 0; tap < a->n_tap; tap++) {
            const float *xs = xc + tap * a->x_tap, *ws = wc + tap * a->w_tap;
            __m512 xv[VT];
            _Pragma("GCC unroll 8") for (int v = 0; v < VT; v++)
                xv[v] = _mm512_maskz_loadu_ps(m[v], xs + 16 * v);
            _Pragma("GCC unroll 8") for (int o = 0; o < nco; o++) {
                __m512 wv = _mm512_set1_ps(ws[o * a->w_co]);
                _Pragma("GCC unroll 8") for (int v = 0; v < VT; v++)
                    acc[o][v] = _mm512_fmadd_ps(wv, xv[v], acc[o][v]);
            }
        }
    }
}

/* The same with BF16 pairs (see "BF16 convolutions" below): a 32-bit
 * element of x and w holds channels 2c and 2c+1, so "ci" counts pairs and
 * one vdpbf16ps adds both channels' products. */
INLINE TARGET_AVX512BF16 void vconv_sums_bf16(const vblock *a, const __mmask16 *m, const int nco,
                                              __m512 acc[VB][VT])
{
    const uint32_t *x = (const uint32_t *)a->x, *w = (const uint32_t *)a->w;
    for (int64_t ci = 0; ci < a->n_ci; ci++) {
        const uint32_t *xc = x + ci * a->x_ci, *wc = w + ci * a->w_ci;
        for (int64_t tap = 0; tap < a->n_tap; tap++) {
            const uint32_t *xs = xc + tap * a->x_tap, *ws = wc + tap * a->w_tap;
            __m512bh xv[VT];
            _Pragma("GCC unroll 8") for (int v = 0; v < VT; v++)
                xv[v] = (__m512bh)_mm512_maskz_loadu_epi32(m[v], xs + 16 * v);
            _Pragma("GCC unroll 8") for (int o = 0; o < nco; o++) {
                __m512bh wv = (__m512bh)_mm512_set1_epi32((int)ws[o * a->w_co]);
                _Pragma("GCC unroll 8") for (int v = 0; v < VT; v++)
                    acc[o][v] = _mm512_dpbf16_ps(acc[o][v], wv, xv[v]);
            }
        }
    }
}

/* Bias, the optional residual and ELU, and the store of a block's sums. */
INLINE TARGET_AVX512 void vconv_store(const vblock *a, const __mmask16 *m, const int nco,
                                      __m512 acc[VB][VT])
{
    __m512i lanes = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5,
                                                        4, 3, 2, 1, 0),
                                       _mm512_set1_epi32((int)a->y_t));
    _Pragma("GCC unroll 8") for (int o = 0; o < nco; o++) {
        __m512 b = _mm512_set1_ps(a->bias ? a->bias[o] : 0.0f);
        _Pragma("GCC unroll 8") for (int v = 0; v < VT; v++) {
            float *yo = a->y + o * a->y_co + 16 * v * a->y_t;
            __m512 r = _mm512_add_ps(acc[o][v], b);
            if (a->res)
                r = _mm512_add_ps(_mm512_maskz_loadu_ps(m[v], a->res + o * a->y_co + 16 * v), r);
            if (a->elu)
                r = elu_avx512(r);
            if (a->y_t == 1)
                _mm512_mask_storeu_ps(yo, m[v], r);
            else
                _mm512_mask_i32scatter_ps(yo, m[v], lanes, r, 4);
        }
    }
}

#define VCONV_BLOCK_N(name, target, sums)                                                  \
    INLINE target void name(const vblock *a, const __mmask16 *m, const int nco)            \
    {                                                                                      \
        __m512 acc[VB][VT];                                                                \
        _Pragma("GCC unroll 8") for (int o = 0; o < VB; o++)                               \
            _Pragma("GCC unroll 8") for (int v = 0; v < VT; v++) acc[o][v] =               \
                _mm512_setzero_ps();                                                       \
        sums(a, m, nco, acc);                                                              \
        vconv_store(a, m, nco, acc);                                                       \
    }
VCONV_BLOCK_N(vconv_block_n, TARGET_AVX512, vconv_sums_f32)
VCONV_BLOCK_N(vconv_block_bf16_n, TARGET_AVX512BF16, vconv_sums_bf16)
#undef VCONV_BLOCK_N

/* Runs channels [0, nco) of a block in register blocks of 8, 4 and 1. */
#define VCONV_BLOCK(name, target, block_n)                                                 \
    target static void name(vblock a, const __mmask16 *m, int64_t nco)                     \
    {                                                                                      \
        for (int64_t o = 0; o < nco;) {                                                    \
            int64_t left = nco - o;                                                        \
            if (left >= 8)                                                                 \
                block_n(&a, m, 8);                                                         \
            else if (left >= 4)                                                            \
                block_n(&a, m, 4);                                                         \
            else                                                                           \
                block_n(&a, m, 1);                                                         \
            int64_t step = left >= 8 ? 8 : left >= 4 ? 4 : 1;                              \
            a.w += step * a.w_co;                                                          \
            a.y += step * a.y_co;                                                          \
            if (a.res)                                                                     \
                a.res += step * a.y_co;                                                    \
            if (a.bias)                                                                    \
                a.bias += step;                                                            \
            o += step;                                                                     \
        }                                                                                  \
    }
VCONV_BLOCK(vconv_block_f32, TARGET_AVX512, vconv_block_n)
VCONV_BLOCK(vconv_block_bf16, TARGET_AVX512BF16, vconv_block_bf16_n)
#undef VCONV_BLOCK

static void vconv_block(vblock a, const __mmask16 *m, int64_t nco, int bf16)
{
    if (bf16)
        vconv_block_bf16(a, m, nco);
    else
        vconv_block_f32(a, m, nco);
}

/* Lanes [lo, hi) of a block's VT vectors (relative to its first sample). */
static inline void block_masks(__mmask16 *m, int64_t lo, int64_t hi)
{
    for (int v = 0; v < VT; v++) {
        uint32_t bits = 0;
        for (int l = 0; l < 16; l++) {
            int64_t u = 16 * v + l;
            bits |= (uint32_t)(u >= lo && u < hi) << l;
        }
        m[v] = (__mmask16)bits;
    }
}

/* Work items walk the time tiles of one channel block (weights stay in
 * cache) when the weights are the larger operand, else the channel blocks of
 * one time tile (its input rows stay in cache): long signals with few
 * channels would otherwise stream their input from memory once per block. */
static inline void item_coords(int64_t item, int64_t n_tiles, int64_t n_coblk, int co_inner,
                               int64_t *tile, int64_t *co0, int64_t *b)
{
    int64_t per_b = n_tiles * n_coblk, i = item % per_b;
    *b = item / per_b;
    *tile = co_inner ? i / n_coblk : i % n_tiles;
    *co0 = (co_inner ? i % n_coblk : i / n_tiles) * VB;
}

static inline int any_lane(const __mmask16 *m)
{
    int any = 0;
    for (int v = 0; v < VT; v++)
        any |= m[v] != 0;
    return any;
}

typedef struct {
    float       *y;
    const float *x, *w, *b, *res;
    int64_t      c_in, c_out, t_in, t_out, k, n_tiles, n_coblk;
    int          dil, co_inner, elu;
    int          bf16;           /* x and w are BF16 pairs, c_in counts pairs */
} vconv_ctx;

/* A work item: VB output channels x VTILE samples of one batch item (stride 1). */
static void vconv1d_task(void *arg, int64_t i0, int64_t i1)
{
    const vconv_ctx *c = arg;
    for (int64_t item = i0; item < i1; item++) {
        int64_t tile, co0, b;
        item_coords(item, c->n_tiles, c->n_coblk, c->co_inner, &tile, &co0, &b);
        int64_t t0 = tile * VTILE, t1 = min64(t0 + VTILE, c->t_out);
        vblock a = {.x_ci = c->t_in, .x_tap = c->dil, .w = c->w + co0 * c->c_in * c->k,
                    .w_co = c->c_in * c->k, .w_ci = c->k, .w_tap = 1, .n_ci = c->c_in,
                    .n_tap = c->k, .y_co = c->t_out, .y_t = 1,
                    .bias = c->b ? c->b + co0 : NULL, .elu = c->elu};
        for (int64_t t = t0; t < t1; t += VS) {
            __mmask16 m[VT];
            block_masks(m, 0, t1 - t);
            a.x = c->x + b * c->c_in * c->t_in + t;
            a.y = c->y + (b * c->c_out + co0) * c->t_out + t;
            a.res = c->res ? c->res + (b * c->c_out + co0) * c->t_out + t : NULL;
            vconv_block(a, m, min64(VB, c->c_out - co0), c->bf16);
        }
    }
}

/* conv1d, stride 1, y [B·c_out, t_out], x [B·c_in, t_in ≥ t_out + (k-1)·dil]. */
static void vconv1d_run(mg_backend *be, vconv_ctx *c, int64_t batch)
{
    c->n_tiles = (c->t_out + VTILE - 1) / VTILE;
    c->n_coblk = (c->c_out + VB - 1) / VB;
    c->co_inner = c->c_out * c->k < c->t_in;
    mg_cpu_parallel(be, batch * c->n_coblk * c->n_tiles,
                    mg_cpu_macs_min(c->c_in * c->k * VB * VTILE), vconv1d_task, c);
}

typedef struct {
    float       *y;
    const float *xp, *w, *b;     /* xp: x, or (vconvt_task) x with pad zeros each side */
    int64_t      c_in, c_out, t_xp, pad, t_y, k, q_first, n_q, n_tiles, n_coblk;
    int          stride, trim_left, co_inner;
    int          bf16;           /* x and w are BF16 pairs, c_in counts pairs */
} vconvt_ctx;

/* A work item: VB channels x VTILE positions q, every phase (see convt_task). */
static void vconvt_task(void *arg, int64_t i0, int64_t i1)
{
    const vconvt_ctx *c = arg;
    const int64_t s = c->stride, K = c->k;
    for (int64_t item = i0; item < i1; item++) {
        int64_t tile, co0, b;
        item_coords(item, c->n_tiles, c->n_coblk, c->co_inner, &tile, &co0, &b);
        int64_t qa = c->q_first + tile * VTILE, qb = min64(qa + VTILE, c->q_first + c->n_q);
        for (int64_t r = 0; r < s; r++) {
            int64_t n_tap = r < K ? (K - r + s - 1) / s : 0;
            /* q whose output q·s + r - trim lands in [0, t_y) */
            int64_t qlo = (c->trim_left - r + s - 1 + s * K) / s - K;
            int64_t qhi = (c->t_y + c->trim_left - r + s - 1 + s * K) / s - K;
            vblock a = {.x_ci = c->t_xp, .x_tap = -1, .w = c->w + co0 * K + r, .w_co = K,
                        .w_ci = c->c_out * K, .w_tap = s, .n_ci = c->c_in, .n_tap = n_tap,
                        .y_co = c->t_y, .y_t = s, .bias = c->b ? c->b + co0 : NULL};
            for (int64_t q = qa; q < qb; q += VS) {
                __mmask16 m[VT];
                block_masks(m, qlo - q, min64(qhi, qb) - q);
                if (!any_lane(m))
                    continue;
                a.x = c->xp + b * c->c_in * c->t_xp + c->pad + q;
                a.y = c->y + (b * c->c_out + co0) * c->t_y + q * s + r - c->trim_left;
                vconv_block(a, m, min64(VB, c->c_out - co0), c->bf16);
            }
        }
    }
}

/* The transposed conv with every phase in one register block: for stride s
 * and k = r + j·s, phase r of output position q reads x[q - j], so the
 * x vectors of a tap j serve all s phases and the NCO channels of a block,
 * and one (ci, co) step uses all K weights of its (contiguous) row, where the
 * per-phase block above re-read every weight row once per phase. The sum over
 * (ci, j) runs in the order of vconvt_task: outputs are bitwise the same.
 * Taps past either end of x are masked loads (zeros, as the padded copy the
 * per-phase path makes): mx holds PT_TAPS x 4 masks, tap-major. */
enum { PT_Q = 4,     /* register blocks of positions per work item */
       PT_TAPS = 4 }; /* most taps per phase (ceil(k / stride)) */

/* acc[o][r][v] += Σ_ci Σ_j w[ci, o, r + j·P] · x[ci, q - j] (F32). */
INLINE TARGET_AVX512 void vconvt_sums_f32(const vconvt_ctx *c, const float *xq, const float *w,
                                          __mmask16 const *mx, const int P, const int NCO,
                                          const int NV, __m512 acc[4][8][4])
{
    const int64_t K = c->k, n_j = (K + P - 1) / P, w_ci = c->c_out * K;
    for (int64_t ci = 0; ci < c->c_in; ci++) {
        const float *xc = xq + ci * c->t_xp, *wc = w + ci * w_ci;
        for (int64_t j = 0; j < n_j; j++) {
            __m512 xv[4];
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)
                xv[v] = _mm512_maskz_loadu_ps(mx[j * 4 + v], xc - j + 16 * v);
            _Pragma("GCC unroll 4") for (int o = 0; o < NCO; o++)
                _Pragma("GCC unroll 8") for (int r = 0; r < P; r++) {
                    int64_t k = r + j * P;
                    if (k >= K)
                        continue;
                    __m512 wv = _mm512_set1_ps(wc[o * K + k]);
                    _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)
                        acc[o][r][v] = _mm512_fmadd_ps(wv, xv[v], acc[o][r][v]);
                }
        }
    }
}

/* The same over BF16 pairs of input channels (ci counts pairs). */
INLINE TARGET_AVX512BF16 void vconvt_sums_bf16(const vconvt_ctx *c, const float *xq,
                                               const float *w, __mmask16 const *mx, const int P,
                                               const int NCO, const int NV, __m512 acc[4][8][4])
{
    const int64_t K = c->k, n_j = (K + P - 1) / P, w_ci = c->c_out * K;
    const uint32_t *x2 = (const uint32_t *)xq, *w2 = (const uint32_t *)w;
    for (int64_t ci = 0; ci < c->c_in; ci++) {
        const uint32_t *xc = x2 + ci * c->t_xp, *wc = w2 + ci * w_ci;
        for (int64_t j = 0; j < n_j; j++) {
            __m512bh xv[4];
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)
                xv[v] = (__m512bh)_mm512_maskz_loadu_epi32(mx[j * 4 + v], xc - j + 16 * v);
            _Pragma("GCC unroll 4") for (int o = 0; o < NCO; o++)
                _Pragma("GCC unroll 8") for (int r = 0; r < P; r++) {
                    int64_t k = r + j * P;
                    if (k >= K)
                        continue;
                    __m512bh wv = (__m512bh)_mm512_set1_epi32((int)wc[o * K + k]);
                    _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)
                        acc[o][r][v] = _mm512_dpbf16_ps(acc[o][r][v], wv, xv[v]);
                }
        }
    }
}

/* Bias and the store of a block's sums, phases interleaved back into y. */
INLINE TARGET_AVX512 void vconvt_store(const vconvt_ctx *c, float *yq, const float *bias,
                                       const __mmask16 *mr, const int P, const int NCO,
                                       const int NV, __m512 acc[4][8][4])
{
    int full = 1;
    for (int i = 0; i < P * NV; i++)
        full &= mr[i] == 0xffff;
    if (P == 4 && full) {
        /* interleave the 4 phases in registers: 4 contiguous stores per
         * vector of positions instead of 4 scatters */
        _Pragma("GCC unroll 4") for (int o = 0; o < NCO; o++) {
            __m512 b = _mm512_set1_ps(bias ? bias[o] : 0.0f);
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) {
                __m512 p0 = _mm512_add_ps(acc[o][0][v], b), p1 = _mm512_add_ps(acc[o][1][v], b);
                __m512 p2 = _mm512_add_ps(acc[o][2 % P][v], b);
                __m512 p3 = _mm512_add_ps(acc[o][3 % P][v], b);
                /* per 128-bit lane L (positions 4L..4L+3): [p0 p1 p2 p3] of each */
                __m512d lo01 = _mm512_castps_pd(_mm512_unpacklo_ps(p0, p1));
                __m512d hi01 = _mm512_castps_pd(_mm512_unpackhi_ps(p0, p1));
                __m512d lo23 = _mm512_castps_pd(_mm512_unpacklo_ps(p2, p3));
                __m512d hi23 = _mm512_castps_pd(_mm512_unpackhi_ps(p2, p3));
                __m512 q0 = _mm512_castpd_ps(_mm512_unpacklo_pd(lo01, lo23)); /* q 0,4,8,12 */
                __m512 q1 = _mm512_castpd_ps(_mm512_unpackhi_pd(lo01, lo23)); /* q 1,5,9,13 */
                __m512 q2 = _mm512_castpd_ps(_mm512_unpacklo_pd(hi01, hi23));
                __m512 q3 = _mm512_castpd_ps(_mm512_unpackhi_pd(hi01, hi23));
                __m512 t0 = _mm512_shuffle_f32x4(q0, q1, 0x44), t1 = _mm512_shuffle_f32x4(q2, q3, 0x44);
                __m512 t2 = _mm512_shuffle_f32x4(q0, q1, 0xEE), t3 = _mm512_shuffle_f32x4(q2, q3, 0xEE);
                float *yo = yq + o * c->t_y + 16 * v * P;
                _mm512_storeu_ps(yo, _mm512_shuffle_f32x4(t0, t1, 0x88));
                _mm512_storeu_ps(yo + 16, _mm512_shuffle_f32x4(t0, t1, 0xDD));
                _mm512_storeu_ps(yo + 32, _mm512_shuffle_f32x4(t2, t3, 0x88));
                _mm512_storeu_ps(yo + 48, _mm512_shuffle_f32x4(t2, t3, 0xDD));
            }
        }
        return;
    }
    __m512i lanes = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5,
                                                        4, 3, 2, 1, 0),
                                       _mm512_set1_epi32(P));
    _Pragma("GCC unroll 4") for (int o = 0; o < NCO; o++) {
        __m512 b = _mm512_set1_ps(bias ? bias[o] : 0.0f);
        _Pragma("GCC unroll 8") for (int r = 0; r < P; r++)
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)
                _mm512_mask_i32scatter_ps(yq + o * c->t_y + 16 * v * P + r, mr[r * NV + v],
                                          lanes, _mm512_add_ps(acc[o][r][v], b), 4);
    }
}

#define VCONVT_PHASES_N(name, target, sums)                                                 \
    INLINE target void name(const vconvt_ctx *c, const float *xq, const float *w, float *yq,   \
                            const float *bias, const __mmask16 *mr, __mmask16 const *mx,       \
                            const int P, const int NCO, const int NV)                          \
    {                                                                                          \
        __m512 acc[4][8][4]; /* [co][phase][vector] */                                         \
        _Pragma("GCC unroll 4") for (int o = 0; o < NCO; o++)                                  \
            _Pragma("GCC unroll 8") for (int r = 0; r < P; r++)                                \
                _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) acc[o][r][v] =            \
                    _mm512_setzero_ps();                                                       \
        sums(c, xq, w, mx, P, NCO, NV, acc);                                                   \
        vconvt_store(c, yq, bias, mr, P, NCO, NV, acc);                                        \
    }
VCONVT_PHASES_N(vconvt_phases_n, TARGET_AVX512, vconvt_sums_f32)
VCONVT_PHASES_N(vconvt_phases_bf16_n, TARGET_AVX512BF16, vconvt_sums_bf16)
#undef VCONVT_PHASES_N

/* One register block: NCO channels (or fewer, one at a time) x NV·16 positions. */
#define VCONVT_PHASES(name, target, block_n, P, NCO, NV)                                       \
    target static void name(const vconvt_ctx *c, const float *xq, const float *w, float *yq,   \
                            const float *bias, const __mmask16 *mr, const __mmask16 *mx,       \
                            int64_t nco)                                                       \
    {                                                                                          \
        if (nco == NCO) {                                                                      \
            block_n(c, xq, w, yq, bias, mr, mx, P, NCO, NV);                                   \
            return;                                                                            \
        }                                                                                      \
        for (int64_t o = 0; o < nco; o++)                                                      \
            block_n(c, xq, w + o * c->k, yq + o * c->t_y, bias ? bias + o : NULL, mr, mx, P,   \
                    1, NV);                                                                    \
    }
/* stride: channels x vectors per block, NCO·stride·NV <= 24 accumulators */
#define VCONVT_PHASES_BOTH(P, NCO, NV)                                                         \
    VCONVT_PHASES(vconvt_phases_##P, TARGET_AVX512, vconvt_phases_n, P, NCO, NV)               \
    VCONVT_PHASES(vconvt_phases_bf16_##P, TARGET_AVX512BF16, vconvt_phases_bf16_n, P, NCO, NV)
VCONVT_PHASES_BOTH(2, 4, 3)
VCONVT_PHASES_BOTH(3, 2, 4)
VCONVT_PHASES_BOTH(4, 2, 3)
VCONVT_PHASES_BOTH(5, 1, 4)
VCONVT_PHASES_BOTH(6, 1, 4)
VCONVT_PHASES_BOTH(8, 1, 3)
#undef VCONVT_PHASES_BOTH
#undef VCONVT_PHASES

typedef void (*vconvt_phases_fn)(const vconvt_ctx *, const float *, const float *, float *,
                                 const float *, const __mmask16 *, const __mmask16 *, int64_t);

/* The block shape of a stride (0 channels: no all-phases kernel). */
static vconvt_phases_fn phases_kernel(int stride, int bf16, int *nco, int *nv)
{
#define PK(P, NCO, NV) *nco = NCO, *nv = NV; return bf16 ? vconvt_phases_bf16_##P : vconvt_phases_##P
    switch (stride) {
    case 2: PK(2, 4, 3);
    case 3: PK(3, 2, 4);
    case 4: PK(4, 2, 3);
    case 5: PK(5, 1, 4);
    case 6: PK(6, 1, 4);
    case 8: PK(8, 1, 3);
    default: *nco = 0, *nv = 0; return NULL;
    }
#undef PK
}

/* Lanes [lo, hi) of nv vectors. */
static inline void lane_masks(__mmask16 *m, int nv, int64_t lo, int64_t hi)
{
    for (int v = 0; v < nv; v++) {
        int64_t a = lo - 16 * v, b = hi - 16 * v;
        a = a < 0 ? 0 : a > 16 ? 16 : a;
        b = b < 0 ? 0 : b > 16 ? 16 : b;
        m[v] = b > a ? (__mmask16)(((1u << b) - 1) & ~((1u << a) - 1)) : 0;
    }
}

/* A work item: NCO channels x PT_Q register blocks of positions q, all phases. */
static void vconvt_phases_task(void *arg, int64_t i0, int64_t i1)
{
    const vconvt_ctx *c = arg;
    const int64_t s = c->stride;
    int nco_blk, nv;
    vconvt_phases_fn fn = phases_kernel(c->stride, c->bf16, &nco_blk, &nv);
    const int64_t qs = 16 * nv, qtile = PT_Q * qs;
    for (int64_t item = i0; item < i1; item++) {
        int64_t per_b = c->n_tiles * c->n_coblk, i = item % per_b, b = item / per_b;
        int64_t tile = c->co_inner ? i / c->n_coblk : i % c->n_tiles;
        int64_t co0 = (c->co_inner ? i % c->n_coblk : i / c->n_tiles) * nco_blk;
        int64_t nco = min64(nco_blk, c->c_out - co0);
        int64_t qa = c->q_first + tile * qtile, qb = min64(qa + qtile, c->q_first + c->n_q);
        for (int64_t q = qa; q < qb; q += qs) {
            __mmask16 mr[8 * 4], mq[4] = {0}, mx[PT_TAPS * 4];
            for (int64_t r = 0; r < s; r++) {
                /* q whose output q·s + r - trim lands in [0, t_y) */
                int64_t qlo = (c->trim_left - r + s - 1 + s * c->k) / s - c->k;
                int64_t qhi = (c->t_y + c->trim_left - r + s - 1 + s * c->k) / s - c->k;
                lane_masks(mr + r * nv, nv, qlo - q, min64(qhi, qb) - q);
                for (int v = 0; v < nv; v++)
                    mq[v] |= mr[r * nv + v];
            }
            int any = 0;
            for (int v = 0; v < nv; v++)
                any |= mq[v] != 0;
            if (!any)
                continue;
            /* tap j reads x[q + u - j]: lanes u with 0 <= q + u - j < t_in */
            for (int64_t j = 0; j < (c->k + s - 1) / s; j++) {
                lane_masks(mx + j * 4, nv, j - q, c->t_xp + j - q);
                for (int v = 0; v < nv; v++)
                    mx[j * 4 + v] &= mq[v];
            }
            fn(c, c->xp + b * c->c_in * c->t_xp + q, c->w + co0 * c->k,
               c->y + (b * c->c_out + co0) * c->t_y + q * s - c->trim_left,
               c->b ? c->b + co0 : NULL, mr, mx, nco);
        }
    }
}

typedef struct {
    float       *y;
    const float *x;
    int64_t      t, t_y, left;
} pad_rows_ctx;
static void pad_rows_task(void *arg, int64_t r0, int64_t r1);
#else
#define CONV_X86 0
#endif

/* The inner kernel of both convolutions: for CO_BLK output channels o and
 * MB consecutive outputs i,
 *   out[o·out_stride + i] += Σ_ci Σ_tap w[o][ci·w_ci + tap·w_tap] · x[ci·x_ci + tap·x_tap + i].
 * Unrolling i lets the compiler keep all CO_BLK·MB sums in vector registers. */
typedef struct {
    const float *x;
    int64_t      x_ci, x_tap;
    const float *w[CO_BLK];
    int64_t      w_ci, w_tap;
    int64_t      n_ci, n_tap;
} block_args;

MG_CPU_BODY void conv_block_body(float *out, int64_t out_stride, const block_args *a)
{
    float acc[CO_BLK][MB] = {{0}};
    for (int64_t ci = 0; ci < a->n_ci; ci++) {
        for (int64_t tap = 0; tap < a->n_tap; tap++) {
            const float *xs = a->x + ci * a->x_ci + tap * a->x_tap;
            int64_t wo = ci * a->w_ci + tap * a->w_tap;
            float w0 = a->w[0][wo], w1 = a->w[1][wo], w2 = a->w[2][wo], w3 = a->w[3][wo];
            _Pragma("GCC unroll 16")
            for (int i = 0; i < MB; i++) {
                float xv = xs[i];
                acc[0][i] += w0 * xv;
                acc[1][i] += w1 * xv;
                acc[2][i] += w2 * xv;
                acc[3][i] += w3 * xv;
            }
        }
    }
    for (int o = 0; o < CO_BLK; o++)
        for (int i = 0; i < MB; i++)
            out[o * out_stride + i] += acc[o][i];
}
MG_CPU_KERNEL_VOID(conv_block, (float *out, int64_t out_stride, const block_args *a),
                   (out, out_stride, a))
typedef void (*conv_block_fn)(float *out, int64_t out_stride, const block_args *a);

/* win[ci·width + u] = x[ci·x_ci + t0 + u], zero outside [0, t_in): lets blocks
 * that reach past either end of the input run the same kernel. */
static void fill_window(float *win, int64_t width, const float *x, int64_t x_ci, int64_t n_ci,
                        int64_t t0, int64_t t_in)
{
    for (int64_t ci = 0; ci < n_ci; ci++)
        for (int64_t u = 0; u < width; u++) {
            int64_t t = t0 + u;
            win[ci * width + u] = t >= 0 && t < t_in ? x[ci * x_ci + t] : 0.0f;
        }
}

/* ------------------------------------------------------ BF16 convolutions
 * Models with compressed weights keep EnCodec's conv weights as BF16 where
 * the CPU has AVX512-BF16 (mg_cpu_conv_bf16_fits): the convolutions are
 * bound by multiply-adds, and one vdpbf16ps does 32 where one FMA does 16.
 * Weights and inputs round to BF16 (relative 2^-9); products and sums stay
 * F32. A 32-bit element holds input channels 2c (low half) and 2c+1, so the
 * kernels above run unchanged over "channels" that are pairs: conv1d weights
 * [c_out][c_in/2][k], transposed-conv weights [c_in/2][c_out][k], inputs
 * [B·c_in/2][t], packed per call into the backend's conv scratch. */

int mg_cpu_conv_bf16_fits(mg_backend *be)
{
#if CONV_X86
    return ((mg_cpu_backend *)be)->isa >= MG_CPU_ISA_AVX512 && mg_cpu_has_avx512bf16();
#else
    (void)be;
    return 0;
#endif
}

typedef struct {
    uint32_t    *y;
    const float *x;
    int64_t      t;
} pack_ctx;

#if CONV_X86
/* Row r of y = rows 2r (low halves) and 2r+1 of x, rounded to BF16. */
TARGET_AVX512BF16 static void pack_pairs_task(void *arg, int64_t r0, int64_t r1)
{
    const pack_ctx *c = arg;
    for (int64_t r = r0; r < r1; r++) {
        const float *a = c->x + 2 * r * c->t, *b = a + c->t;
        uint32_t *y = c->y + r * c->t;
        for (int64_t i = 0; i < c->t; i += 16) {
            __mmask16 m = c->t - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (c->t - i)) - 1);
            __m512i lo = _mm512_cvtepu16_epi32(
                (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, a + i)));
            __m512i hi = _mm512_cvtepu16_epi32(
                (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, b + i)));
            _mm512_mask_storeu_epi32(y + i, m, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
        }
    }
}

/* x [rows, t] (rows even) as BF16 pairs in the conv scratch; NULL (and the
 * op failed) without memory. */
static const float *pack_pairs(mg_backend *be, const mg_tensor *x)
{
    mg_cpu_backend *cpu = (mg_cpu_backend *)be;
    int64_t rows = mg_tensor_rows(x), t = mg_tensor_cols(x);
    size_t need = (size_t)(rows / 2 * t) * sizeof(uint32_t);
    if (need > cpu->conv_scratch_cap) {
        void *p = NULL;
        if (posix_memalign(&p, 64, need) != 0) {
            mg_cpu_fail(be, MG_ERR_NOMEM, "BF16 conv scratch");
            return NULL;
        }
        free(cpu->conv_scratch);
        cpu->conv_scratch = p;
        cpu->conv_scratch_cap = need;
    }
    pack_ctx c = {.y = cpu->conv_scratch, .x = mg_cpu_f32(x), .t = t};
    mg_cpu_parallel(be, rows / 2, mg_cpu_macs_min(t * 8), pack_pairs_task, &c);
    return (const float *)cpu->conv_scratch;
}
#endif

/* For kernels without BF16 (a lowered ISA after load): the same rounded
 * values as F32, weights back in their F32 layout (transposed: dim 0 is the
 * input channel), through the F32 path; sums round in another order. */
static int bf16_as_f32(const mg_tensor *x, const mg_tensor *w, int transposed, mg_tensor *xf,
                       mg_tensor *wf)
{
    int64_t rows = mg_tensor_rows(x), t = mg_tensor_cols(x);
    int64_t d0 = w->ne[0], d1 = w->ne[1], k = w->ndim > 2 ? w->ne[2] : 1;
    float *xv = malloc((size_t)(rows * t) * sizeof *xv + 1);
    float *wv = malloc((size_t)(d0 * d1 * k) * sizeof *wv + 1);
    if (!xv || !wv) {
        free(xv);
        free(wv);
        return 0;
    }
    const float *xs = mg_cpu_f32(x);
    for (int64_t i = 0; i < rows * t; i++)
        xv[i] = mg_bf16_to_f32(mg_f32_to_bf16(xs[i]));
    mg_conv_bf16_pairs_to_f32((const uint32_t *)w->data, d0, d1, k, transposed, wv);
    *xf = *x;
    xf->data = xv;
    xf->owns = 0;
    *wf = *w;
    wf->dtype = MG_DT_F32;
    wf->data = wv;
    wf->owns = 0;
    wf->nbytes = (size_t)(d0 * d1 * k) * sizeof *wv;
    return 1;
}

/* ---------------------------------------------------------------- conv1d */

typedef struct {
    float       *y;
    const float *x, *w, *b;
    int64_t      c_in, c_out, t_in, t_out, k, n_tiles, n_coblk;
    int          stride, dil;
    conv_block_fn block;   /* conv_block at the backend's kernel level */
} conv_ctx;

/* y[co, t] = b[co] + Σ_ci Σ_k w[co, ci, k] · x[ci, t·stride + k·dil]
 * A work item is CO_BLK channels x TILE samples, summed CI_BLK input channels
 * at a time in register blocks (stride 1; the ragged tail through a window).
 * Other strides, and tails with a kernel span wider than WIN, take the plain
 * loop. */
static void conv1d_task(void *arg, int64_t i0, int64_t i1)
{
    const conv_ctx *c = arg;
    float acc[CO_BLK][TILE], win[CI_BLK * WIN];
    const int64_t span = (c->k - 1) * c->dil, width = MB + span;
    for (int64_t item = i0; item < i1; item++) {
        int64_t tile = item % c->n_tiles, rest = item / c->n_tiles;
        int64_t co0 = (rest % c->n_coblk) * CO_BLK, b = rest / c->n_coblk;
        int64_t nco = min64(CO_BLK, c->c_out - co0);
        int64_t t0 = tile * TILE, t1 = min64(t0 + TILE, c->t_out);
        /* register blocks cover [t0, tb); a ragged tail up to t1 through the window */
        int64_t tb = t0, tw = t0;
        if (c->stride == 1) {
            tb = t0 + (t1 - t0) / MB * MB;
            tw = tb < t1 && width <= WIN ? t1 : tb;
        }
        const float *xb = c->x + b * c->c_in * c->t_in;
        const float *w[CO_BLK];
        /* channels missing from a ragged block reuse row co0 and are never stored */
        for (int o = 0; o < CO_BLK; o++)
            w[o] = c->w + (co0 + (o < nco ? o : 0)) * c->c_in * c->k;
        memset(acc, 0, sizeof acc);
        for (int64_t ci0 = 0; ci0 < c->c_in && tw > t0; ci0 += CI_BLK) {
            block_args a = { .x_ci = c->t_in, .x_tap = c->dil, .w_ci = c->k, .w_tap = 1,
                             .n_ci = min64(CI_BLK, c->c_in - ci0), .n_tap = c->k };
            for (int o = 0; o < CO_BLK; o++)
                a.w[o] = w[o] + ci0 * c->k;
            for (int64_t t = t0; t < tb; t += MB) {
                a.x = xb + ci0 * c->t_in + t;
                c->block(&acc[0][t - t0], TILE, &a);
            }
            if (tw > tb) {
                fill_window(win, width, xb + ci0 * c->t_in, c->t_in, a.n_ci, tb, c->t_in);
                a.x = win;
                a.x_ci = width;
                c->block(&acc[0][tb - t0], TILE, &a);
            }
        }
        for (int64_t o = 0; o < nco; o++) {
            float bias = c->b ? c->b[co0 + o] : 0.0f;
            float *yr = c->y + (b * c->c_out + co0 + o) * c->t_out;
            for (int64_t t = t0; t < tw; t++)
                yr[t] = acc[o][t - t0] + bias;
            for (int64_t t = tw; t < t1; t++) {
                float s = 0;
                for (int64_t ci = 0; ci < c->c_in; ci++)
                    for (int64_t kk = 0; kk < c->k; kk++)
                        s += w[o][ci * c->k + kk] * xb[ci * c->t_in + t * c->stride + kk * c->dil];
                yr[t] = s + bias;
            }
        }
    }
}

/* conv1d (and its fused epilogue) with BF16-pair weights. */
static void conv1d_bf16(mg_backend *be, mg_tensor *y, const mg_tensor *x, const mg_tensor *w,
                        const mg_tensor *bias, int batch, int stride, int dilation,
                        const mg_tensor *residual, int elu_out)
{
#if CONV_X86
    if (stride == 1 && mg_cpu_conv_bf16_fits(be)) {
        const float *x2 = pack_pairs(be, x);
        if (!x2)
            return;
        vconv_ctx v = {.y = mg_cpu_f32(y), .x = x2, .w = (const float *)w->data,
                       .b = bias ? mg_cpu_f32(bias) : NULL,
                       .res = residual ? mg_cpu_f32(residual) : NULL,
                       .c_out = w->ne[0], .c_in = w->ne[1] / 2, .k = w->ndim > 2 ? w->ne[2] : 1,
                       .t_in = mg_tensor_cols(x), .t_out = mg_tensor_cols(y),
                       .dil = dilation, .elu = elu_out, .bf16 = 1};
        vconv1d_run(be, &v, batch);
        return;
    }
#endif
    mg_tensor xf, wf;
    if (!bf16_as_f32(x, w, 0, &xf, &wf)) {
        mg_cpu_fail(be, MG_ERR_NOMEM, "conv1d BF16 weights as F32");
        return;
    }
    if (stride == 1)
        mg_cpu_conv1d_fused(be, y, &xf, &wf, bias, batch, dilation, residual, elu_out);
    else
        mg_cpu_conv1d(be, y, &xf, &wf, bias, batch, stride, dilation);
    free(xf.data);
    free(wf.data);
}

void mg_cpu_conv1d(mg_backend *be, mg_tensor *y, const mg_tensor *x, const mg_tensor *w,
                   const mg_tensor *bias, int batch, int stride, int dilation)
{
    if (w->dtype == MG_DT_BF16) {
        conv1d_bf16(be, y, x, w, bias, batch, stride, dilation, NULL, 0);
        return;
    }
    conv_ctx c = {
        .y = mg_cpu_f32(y), .x = mg_cpu_f32(x), .w = mg_cpu_f32(w),
        .b = bias ? mg_cpu_f32(bias) : NULL,
        .c_out = w->ne[0], .c_in = w->ne[1], .k = w->ndim > 2 ? w->ne[2] : 1,
        .t_in = mg_tensor_cols(x), .t_out = mg_tensor_cols(y),
        .stride = stride, .dil = dilation,
        .block = conv_block_for(((mg_cpu_backend *)be)->isa),
    };
#if CONV_X86
    if (stride == 1 && ((mg_cpu_backend *)be)->isa >= MG_CPU_ISA_AVX512) {
        vconv_ctx v = {.y = c.y, .x = c.x, .w = c.w, .b = c.b, .c_in = c.c_in,
                       .c_out = c.c_out, .t_in = c.t_in, .t_out = c.t_out, .k = c.k,
                       .dil = dilation};
        vconv1d_run(be, &v, batch);
        return;
    }
#endif
    c.n_tiles = (c.t_out + TILE - 1) / TILE;
    c.n_coblk = (c.c_out + CO_BLK - 1) / CO_BLK;
    int64_t items = (int64_t)batch * c.n_coblk * c.n_tiles;
    mg_cpu_parallel(be, items, mg_cpu_macs_min(c.c_in * c.k * CO_BLK * TILE), conv1d_task, &c);
}

void mg_cpu_conv1d_fused(mg_backend *be, mg_tensor *y, const mg_tensor *x, const mg_tensor *w,
                         const mg_tensor *bias, int batch, int dilation,
                         const mg_tensor *residual, int elu_out)
{
    if (w->dtype == MG_DT_BF16) {
        conv1d_bf16(be, y, x, w, bias, batch, 1, dilation, residual, elu_out);
        return;
    }
#if CONV_X86
    if (((mg_cpu_backend *)be)->isa >= MG_CPU_ISA_AVX512) {
        vconv_ctx v = {.y = mg_cpu_f32(y), .x = mg_cpu_f32(x), .w = mg_cpu_f32(w),
                       .b = bias ? mg_cpu_f32(bias) : NULL,
                       .res = residual ? mg_cpu_f32(residual) : NULL,
                       .c_out = w->ne[0], .c_in = w->ne[1], .k = w->ndim > 2 ? w->ne[2] : 1,
                       .t_in = mg_tensor_cols(x), .t_out = mg_tensor_cols(y),
                       .dil = dilation, .elu = elu_out};
        vconv1d_run(be, &v, batch);
        return;
    }
#endif
    /* the ops one by one; in place (residual is y) the conv goes to scratch
     * first, or it would overwrite the residual it is added to */
    if (residual && residual->data == y->data) {
        mg_tensor t = *y;
        t.data = malloc(y->nbytes + 1);
        t.owns = 0;
        if (!t.data) {
            mg_cpu_fail(be, MG_ERR_NOMEM, "conv1d scratch");
            return;
        }
        mg_cpu_conv1d(be, &t, x, w, bias, batch, 1, dilation);
        mg_cpu_add(be, y, &t);
        free(t.data);
    } else {
        mg_cpu_conv1d(be, y, x, w, bias, batch, 1, dilation);
        if (residual)
            mg_cpu_add(be, y, residual);
    }
    if (elu_out)
        mg_cpu_elu(be, y);
}

/* ------------------------------------------------------ conv_transpose1d */

typedef struct {
    float       *y;
    const float *x, *w, *b;
    int64_t      c_in, c_out, t_in, t_y, k, q_first, n_q, n_tiles, n_coblk;
    int          stride, trim_left;
    conv_block_fn block;   /* conv_block at the backend's kernel level */
} convt_ctx;

/* The full output is yf[co, f] = b[co] + Σ_ci Σ_k w[ci, co, k] · x[ci, t] over
 * f = t·stride + k. Writing f = q·stride + r (phase r < stride) and
 * k = r + j·stride makes each phase a plain correlation over q:
 *   yf[co, q·stride + r] = b[co] + Σ_ci Σ_j w[ci, co, r + j·stride] · x[ci, q - j]
 * A work item is CO_BLK channels x QT positions q, all phases, in register
 * blocks of MB q; blocks that reach past either end of x read a zero-padded
 * window (or, for more than WIN - MB + 1 taps, take the plain loop). */
static void convt_task(void *arg, int64_t i0, int64_t i1)
{
    const convt_ctx *c = arg;
    const int64_t s = c->stride, K = c->k;
    float acc[CO_BLK][QT], win[CI_BLK * WIN];
    for (int64_t item = i0; item < i1; item++) {
        int64_t tile = item % c->n_tiles, rest = item / c->n_tiles;
        int64_t co0 = (rest % c->n_coblk) * CO_BLK, b = rest / c->n_coblk;
        int64_t nco = min64(CO_BLK, c->c_out - co0);
        int64_t qa = c->q_first + tile * QT, qb = min64(qa + QT, c->q_first + c->n_q);
        const float *xb = c->x + b * c->c_in * c->t_in;
        float *yb = c->y + (b * c->c_out + co0) * c->t_y;
        for (int64_t r = 0; r < s; r++) {
            int64_t n_tap = r < K ? (K - r + s - 1) / s : 0; /* taps k = r + j·stride < K */
            int64_t width = MB + n_tap - 1;
            const float *w[CO_BLK];
            for (int o = 0; o < CO_BLK; o++)
                w[o] = c->w + (co0 + (o < nco ? o : 0)) * K + r;
            memset(acc, 0, sizeof acc);
            for (int64_t ci0 = 0; ci0 < c->c_in; ci0 += CI_BLK) {
                int64_t n_ci = min64(CI_BLK, c->c_in - ci0);
                block_args a = { .x_ci = c->t_in, .x_tap = -1, .w_ci = c->c_out * K,
                                 .w_tap = s, .n_ci = n_ci, .n_tap = n_tap };
                for (int o = 0; o < CO_BLK; o++)
                    a.w[o] = w[o] + ci0 * a.w_ci;
                const float *xc = xb + ci0 * c->t_in;
                for (int64_t q0 = qa; q0 < qb; q0 += MB) {
                    if (q0 - (n_tap - 1) >= 0 && q0 + MB <= c->t_in) {
                        a.x = xc + q0;
                        a.x_ci = c->t_in;
                    } else if (width <= WIN) {
                        /* window position u holds x[q0 - (n_tap-1) + u] */
                        fill_window(win, width, xc, c->t_in, n_ci, q0 - (n_tap - 1), c->t_in);
                        a.x = win + (n_tap - 1);
                        a.x_ci = width;
                    } else {
                        for (int o = 0; o < CO_BLK; o++)
                            for (int64_t q = q0; q < min64(q0 + MB, qb); q++)
                                for (int64_t ci = 0; ci < n_ci; ci++)
                                    for (int64_t j = 0; j < n_tap; j++) {
                                        int64_t t = q - j;
                                        if (t >= 0 && t < c->t_in)
                                            acc[o][q - qa] += a.w[o][ci * a.w_ci + j * s] *
                                                              xc[ci * c->t_in + t];
                                    }
                        continue;
                    }
                    c->block(&acc[0][q0 - qa], QT, &a);
                }
            }
            /* scatter the phase back and drop the trimmed samples */
            for (int64_t o = 0; o < nco; o++) {
                float bias = c->b ? c->b[co0 + o] : 0.0f;
                for (int64_t q = qa; q < qb; q++) {
                    int64_t oy = q * s + r - c->trim_left;
                    if (oy >= 0 && oy < c->t_y)
                        yb[o * c->t_y + oy] = acc[o][q - qa] + bias;
                }
            }
        }
    }
}

void mg_cpu_conv_transpose1d(mg_backend *be, mg_tensor *y, const mg_tensor *x,
                             const mg_tensor *w, const mg_tensor *bias, int batch, int stride,
                             int trim_left)
{
    int bf16 = w->dtype == MG_DT_BF16;
    if (bf16 && !mg_cpu_conv_bf16_fits(be)) {
        mg_tensor xf, wf;
        if (!bf16_as_f32(x, w, 1, &xf, &wf)) {
            mg_cpu_fail(be, MG_ERR_NOMEM, "conv_transpose1d BF16 weights as F32");
            return;
        }
        mg_cpu_conv_transpose1d(be, y, &xf, &wf, bias, batch, stride, trim_left);
        free(xf.data);
        free(wf.data);
        return;
    }
    convt_ctx c = {
        .y = mg_cpu_f32(y), .x = mg_cpu_f32(x), .w = mg_cpu_f32(w),
        .b = bias ? mg_cpu_f32(bias) : NULL,
        .c_in = w->ne[0], .c_out = w->ne[1], .k = w->ne[2],
        .t_in = mg_tensor_cols(x), .t_y = mg_tensor_cols(y),
        .stride = stride, .trim_left = trim_left,
        .block = conv_block_for(((mg_cpu_backend *)be)->isa),
    };
    if (c.t_y <= 0)
        return;
    /* the range of q = f / stride that covers y */
    c.q_first = trim_left / stride;
    c.n_q = (trim_left + c.t_y - 1) / stride - c.q_first + 1;
#if CONV_X86
    if (((mg_cpu_backend *)be)->isa >= MG_CPU_ISA_AVX512) {
        if (bf16) {
            /* the same loops over pairs of input channels */
            if (!(c.x = pack_pairs(be, x)))
                return;
            c.c_in /= 2;
        }
        vconvt_ctx v = {.y = c.y, .w = c.w, .b = c.b, .c_in = c.c_in, .c_out = c.c_out,
                        .t_y = c.t_y, .k = c.k, .q_first = c.q_first, .n_q = c.n_q,
                        .stride = stride, .trim_left = trim_left, .bf16 = bf16};
        v.co_inner = c.c_out * c.k < c.t_in;
        int nco, nv;
        if (phases_kernel(stride, bf16, &nco, &nv) && (c.k + stride - 1) / stride <= PT_TAPS) {
            /* reads x in place: masked loads give the zeros past its ends */
            int64_t qtile = PT_Q * 16 * nv;
            v.xp = c.x;
            v.t_xp = c.t_in;
            v.n_tiles = (c.n_q + qtile - 1) / qtile;
            v.n_coblk = (c.c_out + nco - 1) / nco;
            mg_cpu_parallel(be, batch * v.n_coblk * v.n_tiles,
                            mg_cpu_macs_min(c.c_in * c.k * nco * qtile), vconvt_phases_task, &v);
            return;
        }
        /* x padded with zeros on both sides, so taps past either end read 0 */
        v.pad = (c.k + stride - 1) / stride;
        v.t_xp = v.pad + (c.t_in > c.q_first + c.n_q ? c.t_in : c.q_first + c.n_q) + v.pad;
        float *xp = malloc((size_t)(batch * c.c_in * v.t_xp) * sizeof *xp);
        if (!xp) {
            /* not the portable path instead: its sums round differently, and
             * a seeded request's audio must not depend on memory pressure */
            mg_cpu_fail(be, MG_ERR_NOMEM, "conv_transpose1d scratch");
            return;
        }
        pad_rows_ctx pr = {.y = xp, .x = c.x, .t = c.t_in, .t_y = v.t_xp, .left = v.pad};
        mg_cpu_parallel(be, batch * c.c_in, mg_cpu_macs_min(v.t_xp), pad_rows_task, &pr);
        v.xp = xp;
        v.n_tiles = (c.n_q + VTILE - 1) / VTILE;
        v.n_coblk = (c.c_out + VB - 1) / VB;
        mg_cpu_parallel(be, batch * v.n_coblk * v.n_tiles,
                        mg_cpu_macs_min(c.c_in * c.k * VB * VTILE / stride), vconvt_task, &v);
        free(xp);
        return;
    }
#endif
    c.n_tiles = (c.n_q + QT - 1) / QT;
    c.n_coblk = (c.c_out + CO_BLK - 1) / CO_BLK;
    int64_t items = (int64_t)batch * c.n_coblk * c.n_tiles;
    mg_cpu_parallel(be, items, mg_cpu_macs_min(c.c_in * c.k * CO_BLK * QT), convt_task, &c);
}

#if CONV_X86
/* y[r] = left zeros, x[r], zeros up to t_y */
static void pad_rows_task(void *arg, int64_t r0, int64_t r1)
{
    const pad_rows_ctx *c = arg;
    for (int64_t r = r0; r < r1; r++) {
        float *yr = c->y + r * c->t_y;
        memset(yr, 0, (size_t)c->left * sizeof *yr);
        memcpy(yr + c->left, c->x + r * c->t, (size_t)c->t * sizeof *yr);
        memset(yr + c->left + c->t, 0, (size_t)(c->t_y - c->left - c->t) * sizeof *yr);
    }
}
#endif

/* ----------------------------------------------------------- pad_reflect */

typedef struct {
    float       *y;
    const float *x;
    int64_t      t, t_ext, t_y;
    int          left;
} pad_ctx;

/* Reflection of the signal zero-extended to t_ext samples (t_ext > both pads,
 * so one reflection always lands inside). */
static inline float pad_at(const pad_ctx *c, const float *xr, int64_t o)
{
    int64_t p = o - c->left;
    if (p < 0)
        p = -p;
    if (p >= c->t_ext)
        p = 2 * (c->t_ext - 1) - p;
    return p < c->t ? xr[p] : 0.0f;
}

static void pad_task(void *arg, int64_t r0, int64_t r1)
{
    const pad_ctx *c = arg;
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = c->x + r * c->t;
        float *yr = c->y + r * c->t_y;
        /* the reflected edges one by one, the signal itself in one copy */
        int64_t lo = c->left, hi = c->left + c->t;
        for (int64_t o = 0; o < lo; o++)
            yr[o] = pad_at(c, xr, o);
        memcpy(yr + lo, xr, (size_t)c->t * sizeof *yr);
        for (int64_t o = hi; o < c->t_y; o++)
            yr[o] = pad_at(c, xr, o);
    }
}

#if CONV_X86
/* pad_task, then each row's ELU while the row is still in cache */
TARGET_AVX512 static void pad_elu_task(void *arg, int64_t r0, int64_t r1)
{
    const pad_ctx *c = arg;
    for (int64_t r = r0; r < r1; r++) {
        pad_task(arg, r, r + 1);
        float *yr = c->y + r * c->t_y;
        for (int64_t i = 0; i < c->t_y; i += 16) {
            __mmask16 m = c->t_y - i >= 16 ? (__mmask16)0xffff
                                           : (__mmask16)((1u << (c->t_y - i)) - 1);
            _mm512_mask_storeu_ps(yr + i, m, elu_avx512(_mm512_maskz_loadu_ps(m, yr + i)));
        }
    }
}
#endif

void mg_cpu_pad_reflect_elu(mg_backend *be, mg_tensor *y, const mg_tensor *x, int left, int right)
{
#if CONV_X86
    if (((mg_cpu_backend *)be)->isa >= MG_CPU_ISA_AVX512) {
        int64_t t = mg_tensor_cols(x), max_pad = left > right ? left : right;
        int64_t extra = t <= max_pad ? max_pad - t + 1 : 0;
        pad_ctx c = {.y = mg_cpu_f32(y), .x = mg_cpu_f32(x), .t = t, .t_ext = t + extra,
                     .t_y = t + left + right, .left = left};
        mg_cpu_parallel(be, mg_tensor_rows(x), mg_cpu_macs_min(c.t_y), pad_elu_task, &c);
        return;
    }
#endif
    mg_cpu_pad_reflect(be, y, x, left, right);
    mg_cpu_elu(be, y);
}

void mg_cpu_pad_reflect(mg_backend *be, mg_tensor *y, const mg_tensor *x, int left, int right)
{
    int64_t t = mg_tensor_cols(x);
    int64_t max_pad = left > right ? left : right;
    /* HF: inputs no longer than the pad are zero-extended on the right by
     * extra = max_pad - t + 1, reflect-padded, and the last `extra` samples dropped */
    int64_t extra = t <= max_pad ? max_pad - t + 1 : 0;
    pad_ctx c = {
        .y = mg_cpu_f32(y), .x = mg_cpu_f32(x), .t = t, .t_ext = t + extra,
        .t_y = t + left + right, .left = left,
    };
    mg_cpu_parallel(be, mg_tensor_rows(x), mg_cpu_macs_min(c.t_y), pad_task, &c);
}

/* ------------------------------------------------------------- transpose */

enum { TB = 32 }; /* transpose block */

typedef struct {
    float       *y;
    const float *x;
    int64_t      c, r, n_rblk;
} tr_ctx;

/* y[b, i, j] = x[b, j, i] with x [C, R] and y [R, C] per batch item, in TB x TB blocks. */
static void transpose_task(void *arg, int64_t i0, int64_t i1)
{
    const tr_ctx *c = arg;
    for (int64_t item = i0; item < i1; item++) {
        int64_t b = item / c->n_rblk, r0 = (item % c->n_rblk) * TB;
        int64_t r1 = min64(r0 + TB, c->r);
        const float *xb = c->x + b * c->c * c->r;
        float *yb = c->y + b * c->r * c->c;
        for (int64_t c0 = 0; c0 < c->c; c0 += TB) {
            int64_t c1 = min64(c0 + TB, c->c);
            for (int64_t i = r0; i < r1; i++)
                for (int64_t j = c0; j < c1; j++)
                    yb[i * c->c + j] = xb[j * c->r + i];
        }
    }
}

void mg_cpu_transpose(mg_backend *be, mg_tensor *y, const mg_tensor *x, int batch)
{
    tr_ctx c = { .y = mg_cpu_f32(y), .x = mg_cpu_f32(x), .c = mg_tensor_cols(y),
                 .r = mg_tensor_cols(x) };
    c.n_rblk = (c.r + TB - 1) / TB;
    mg_cpu_parallel(be, (int64_t)batch * c.n_rblk, mg_cpu_macs_min(c.c * TB), transpose_task, &c);
}
