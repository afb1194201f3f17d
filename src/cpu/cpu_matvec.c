/* linear(): y[M,N] = x[M,K] · w[N,K]ᵀ + b for F32, BF16 and Q8 weights, with
 * kernels per ISA (AVX-512 + VNNI, AVX-512, AVX2 + FMA, portable C).
 *
 * The decode step is M = 2 (guidance) and reads every weight once, so the
 * kernels are shaped for small M: a tile is NR = 4 weight rows x up to MR = 4
 * activation rows, each weight vector loaded once feeds MR multiply-adds, and
 * every (m, n) result has its own accumulator that sees the same operations
 * in the same order whatever the tile, the pass or the thread: results do not
 * depend on the thread count. Larger M (T5, teacher forcing) walks the M
 * tiles under one weight tile while it sits in L1/L2 (a blocked product).
 *
 * Q8 with VNNI quantises each activation row per 32-block to int8 (scale
 * max|x|/127) in the weights' group layout (cpu_quant.h) and multiplies
 * (q+128) x int8 with vpdpbusd: each int32 lane sums one block over a whole
 * group, starting from -128·Σx of that block (which removes the +128), and
 * is converted and scaled once per group. Without VNNI the weights are
 * dequantised to float a group at a time and activations stay float. */
#include <math.h>
#include <string.h>

#include "cpu/cpu_impl.h"
#include "cpu/cpu_quant_impl.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define MG_X86 1
#define TARGET_AVX2 __attribute__((target("avx2,fma")))
#define TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
#define TARGET_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma")))
#else
#define MG_X86 0
#endif
#define INLINE static inline __attribute__((always_inline))

enum { NR = 4, MR = 4 };

typedef struct {
    float         *y;
    const float   *x, *bias;
    int64_t        m, n, k;
    int64_t        m0, m1;      /* rows of this pass */
    const float   *w;           /* F32 [N,K] */
    mg_bf16_matrix bf16;        /* BF16 panels */
    mg_q8_matrix   q8;          /* Q8 panels */
    int64_t        stride;      /* Q8: K rounded up to 32, the prepared rows' length */
    /* Q8 activations of the pass, row i = m - m0 (prepare_*) */
    const int8_t  *xq;          /* [rows, stride] int8 in group layout (VNNI) */
    const float   *xscale;      /* [rows, stride/32] block scales (VNNI) */
    const int32_t *xcorr;       /* [rows, stride/32] -128·Σ block quants (VNNI) */
    const float   *xpad;        /* [rows, stride] float, zero-padded (dequantising kernels) */
} mv_args;

typedef void (*tile_fn)(const mv_args *a, int64_t n0, int64_t m0, int mr);

static inline const float *row_f32(const mv_args *a, int64_t n)
{
    return a->w + (n < a->n ? n : a->n - 1) * a->k;
}

static inline void store(const mv_args *a, int64_t m, int64_t n, float v)
{
    if (n < a->n)
        a->y[m * a->n + n] = v + (a->bias ? a->bias[n] : 0.0f);
}

/* ------------------------------------------------------------ portable C */

/* 8 partial sums per (m, n) as the SIMD kernels keep: vectorisable and the
 * same arithmetic whatever the tile. */
static void f32_tile_scalar(const mv_args *a, int64_t n0, int64_t m0, int mr)
{
    for (int j = 0; j < NR; j++) {
        const float *w = row_f32(a, n0 + j);
        for (int i = 0; i < mr; i++) {
            const float *x = a->x + (m0 + i) * a->k;
            float acc[8] = {0};
            int64_t k = 0;
            for (; k + 8 <= a->k; k += 8)
                for (int l = 0; l < 8; l++)
                    acc[l] += x[k + l] * w[k + l];
            for (int l = 0; k + l < a->k; l++)
                acc[l] += x[k + l] * w[k + l];
            float s = 0;
            for (int l = 0; l < 8; l++)
                s += acc[l];
            store(a, m0 + i, n0 + j, s);
        }
    }
}

static void bf16_tile_scalar(const mv_args *a, int64_t n0, int64_t m0, int mr)
{
    for (int j = 0; j < NR; j++) {
        for (int i = 0; i < mr; i++) {
            const float *x = a->x + (m0 + i) * a->k;
            float acc[8] = {0};
            for (int64_t k = 0; k < a->k; k++) {
                uint32_t bits = (uint32_t)mg_bf16_chunk(&a->bf16, n0 + j, k / MG_BF16_CHUNK)
                                    [k % MG_BF16_CHUNK] << 16;
                float wf;
                memcpy(&wf, &bits, 4);
                acc[k % 8] += x[k] * wf;
            }
            float s = 0;
            for (int l = 0; l < 8; l++)
                s += acc[l];
            store(a, m0 + i, n0 + j, s);
        }
    }
}

/* Q8 without VNNI: per block Σ q·x in float, then times the block scale. */
static void q8_tile_scalar(const mv_args *a, int64_t n0, int64_t m0, int mr)
{
    int64_t nb = a->stride / MG_Q8_BLOCK;
    for (int j = 0; j < NR; j++) {
        for (int i = 0; i < mr; i++) {
            const float *x = a->xpad + (m0 + i - a->m0) * a->stride;
            float s = 0;
            for (int64_t b = 0; b < nb; b++) {
                int8_t w[MG_Q8_BLOCK];
                float scale;
                mg_q8_get_block(&a->q8, n0 + j, b, w, &scale);
                float blk = 0;
                for (int l = 0; l < MG_Q8_BLOCK; l++)
                    blk += (float)w[l] * x[b * MG_Q8_BLOCK + l];
                s += blk * scale;
            }
            store(a, m0 + i, n0 + j, s);
        }
    }
}


#if MG_X86
/* ------------------------------------------------------------------ AVX2 */

TARGET_AVX2 static inline float hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

TARGET_AVX2 static inline __m256i tail_mask256(int64_t n)
{
    static const int32_t ones[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256((const __m256i *)(ones + 8 - n));
}

/* W(j, k) yields 8 weights of row j at k as floats; TAIL(j, k, mask) the
 * last ragged ones. Shared by the F32 and BF16 kernels. */
#define AVX2_TILE_BODY(LOAD, LOAD_TAIL)                                                  \
    __m256 acc[MR][NR];                                                                  \
    _Pragma("GCC unroll 4") for (int i = 0; i < MR; i++)                                 \
        _Pragma("GCC unroll 4") for (int j = 0; j < NR; j++) acc[i][j] = _mm256_setzero_ps(); \
    int64_t k = 0;                                                                       \
    for (; k + 8 <= K; k += 8) {                                                         \
        __m256 wv[NR];                                                                   \
        _Pragma("GCC unroll 4") for (int j = 0; j < NR; j++) wv[j] = LOAD(j, k);         \
        _Pragma("GCC unroll 4") for (int i = 0; i < mr; i++) {                           \
            __m256 xv = _mm256_loadu_ps(x[i] + k);                                       \
            _Pragma("GCC unroll 4") for (int j = 0; j < NR; j++)                         \
                acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);                       \
        }                                                                                \
    }                                                                                    \
    if (k < K) {                                                                         \
        __m256i mask = tail_mask256(K - k);                                              \
        __m256 wv[NR];                                                                   \
        _Pragma("GCC unroll 4") for (int j = 0; j < NR; j++) wv[j] = LOAD_TAIL(j, k, mask); \
        _Pragma("GCC unroll 4") for (int i = 0; i < mr; i++) {                           \
            __m256 xv = _mm256_maskload_ps(x[i] + k, mask);                              \
            _Pragma("GCC unroll 4") for (int j = 0; j < NR; j++)                         \
                acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);                       \
        }                                                                                \
    }                                                                                    \
    _Pragma("GCC unroll 4") for (int i = 0; i < mr; i++)                                 \
        _Pragma("GCC unroll 4") for (int j = 0; j < NR; j++)                             \
            store(a, m0 + i, n0 + j, hsum256(acc[i][j]));

TARGET_AVX2 static inline __m256 bf16x8_avx2(const uint16_t *p)
{
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

/* x[k, k+8) with zeros past K (BF16 and Q8 rows are zero-padded, x is not) */
TARGET_AVX2 static inline __m256 x8_avx2(const float *x, int64_t k, int64_t K)
{
    if (K - k >= 8)
        return _mm256_loadu_ps(x + k);
    if (K - k <= 0)
        return _mm256_setzero_ps();
    return _mm256_maskload_ps(x + k, tail_mask256(K - k));
}

INLINE TARGET_AVX2 void bf16_tile_avx2_mr(const mv_args *a, int64_t n0, int64_t m0, const int mr)
{
    const int64_t K = a->k;
    const uint16_t *pb = mg_bf16_chunk(&a->bf16, n0, 0);
    const float *x[MR];
    for (int i = 0; i < mr; i++)
        x[i] = a->x + (m0 + i) * K;
    __m256 acc[MR][NR];
    _Pragma("GCC unroll 4") for (int i = 0; i < MR; i++)
        _Pragma("GCC unroll 4") for (int j = 0; j < NR; j++) acc[i][j] = _mm256_setzero_ps();
    for (int64_t c = 0; c < a->bf16.stride / MG_BF16_CHUNK; c++) {
        const uint16_t *wc = pb + c * NR * MG_BF16_CHUNK;
        _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++) {
            int64_t k = c * MG_BF16_CHUNK + 8 * q;
            __m256 wv[NR];
            _Pragma("GCC unroll 4") for (int j = 0; j < NR; j++)
                wv[j] = bf16x8_avx2(wc + j * MG_BF16_CHUNK + 8 * q);
            _Pragma("GCC unroll 4") for (int i = 0; i < mr; i++) {
                __m256 xv = x8_avx2(x[i], k, K);
                _Pragma("GCC unroll 4") for (int j = 0; j < NR; j++)
                    acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
            }
        }
    }
    _Pragma("GCC unroll 4") for (int i = 0; i < mr; i++)
        _Pragma("GCC unroll 4") for (int j = 0; j < NR; j++)
            store(a, m0 + i, n0 + j, hsum256(acc[i][j]));
}

/* ---------------------------------------------------------------- AVX-512 */

TARGET_AVX512 static inline __m512 x16_avx512(const float *x, int64_t k, int64_t K)
{
    if (K - k >= 16)
        return _mm512_loadu_ps(x + k);
    if (K - k <= 0)
        return _mm512_setzero_ps();
    return _mm512_maskz_loadu_ps((__mmask16)((1u << (K - k)) - 1), x + k);
}

INLINE TARGET_AVX512 void bf16_tile_avx512_mr(const mv_args *a, int64_t n0, int64_t m0, const int mr)
{
    const int64_t K = a->k;
    const uint16_t *pb = mg_bf16_chunk(&a->bf16, n0, 0);
    const float *x[MR];
    for (int i = 0; i < mr; i++)
        x[i] = a->x + (m0 + i) * K;
    __m512 acc[MR][NR];
    _Pragma("GCC unroll 4") for (int i = 0; i < MR; i++)
        _Pragma("GCC unroll 4") for (int j = 0; j < NR; j++) acc[i][j] = _mm512_setzero_ps();
    for (int64_t c = 0; c < a->bf16.stride / MG_BF16_CHUNK; c++) {
        const uint16_t *wc = pb + c * NR * MG_BF16_CHUNK;
        _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {
            int64_t k = c * MG_BF16_CHUNK + 16 * h;
            __m512 wv[NR];
            _Pragma("GCC unroll 4") for (int j = 0; j < NR; j++) {
                __m512i v = _mm512_cvtepu16_epi32(
                    _mm256_loadu_si256((const __m256i *)(wc + j * MG_BF16_CHUNK + 16 * h)));
                wv[j] = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
            }
            _Pragma("GCC unroll 4") for (int i = 0; i < mr; i++) {
                __m512 xv = x16_avx512(x[i], k, K);
                _Pragma("GCC unroll 4") for (int j = 0; j < NR; j++)
                    acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
            }
        }
    }
    _Pragma("GCC unroll 4") for (int i = 0; i < mr; i++)
        _Pragma("GCC unroll 4") for (int j = 0; j < NR; j++)
            store(a, m0 + i, n0 + j, _mm512_reduce_add_ps(acc[i][j]));
}

/* The next unit's group g into L2 while the first row tile of this one
 * computes: the L2 streamer left the weights' DRAM reads and the VNNI work
 * one after the other (fc2 at 8 rows, one thread: 0.52 ms = 0.235 ms of
 * reads + 0.29 ms of compute; with this 0.31 ms). Only inside the matrix. */
INLINE TARGET_VNNI void q8_prefetch_next_unit(const mv_args *a, int64_t n0, int64_t m0,
                                              const uint8_t *wq)
{
    if (m0 != a->m0 || n0 + NR >= a->n)
        return;
    for (int l = 0; l < MG_Q8_GROUP_BYTES / 64; l++)
        _mm_prefetch((const char *)wq + a->q8.panel_bytes + 64 * l, _MM_HINT_T2);
}

/* Q8 x int8 activations with VNNI over the group layout: lane b of an int32
 * accumulator is block b of the group; 8 vpdpbusd (one per 4-byte piece)
 * finish it, then one convert, one multiply by the two scales and one FMA
 * per 16 blocks. Activation rows go two at a time (8 integer + 8 float
 * accumulators + 4 weight vectors fit the 32 registers). */
INLINE TARGET_VNNI void q8_pair_vnni(const mv_args *a, int64_t n0, int64_t m0, const int mr)
{
    const int8_t *xq[2];
    const float *xs[2];
    const int32_t *xc[2];
    for (int i = 0; i < mr; i++) {
        int64_t r = m0 + i - a->m0;
        xq[i] = a->xq + r * a->stride;
        xs[i] = a->xscale + r * (a->stride / MG_Q8_BLOCK);
        xc[i] = a->xcorr + r * (a->stride / MG_Q8_BLOCK);
    }
    __m512 acc[2][NR];
    _Pragma("GCC unroll 2") for (int i = 0; i < 2; i++)
        _Pragma("GCC unroll 4") for (int j = 0; j < NR; j++) acc[i][j] = _mm512_setzero_ps();
    const int64_t ng = mg_q8_groups(&a->q8);
    for (int64_t g = 0; g < ng; g++) {
        const int nb = mg_q8_group_blocks(&a->q8, g);
        const __mmask16 mask = (__mmask16)((1u << nb) - 1);
        const uint8_t *wq = mg_q8_group(&a->q8, n0, g);  /* [piece][row j][nb·4] */
        q8_prefetch_next_unit(a, n0, m0, wq);
        const float *ws = mg_q8_group_scales(&a->q8, n0, g); /* rows j at j·nb */
        __m512i d[2][NR];
        _Pragma("GCC unroll 2") for (int i = 0; i < mr; i++) {
            __m512i c = _mm512_maskz_loadu_epi32(mask, xc[i] + g * MG_Q8_GBLOCKS);
            _Pragma("GCC unroll 4") for (int j = 0; j < NR; j++) d[i][j] = c;
        }
        _Pragma("GCC unroll 8") for (int p = 0; p < MG_Q8_PIECES; p++) {
            __m512i wv[NR];
            _Pragma("GCC unroll 4") for (int j = 0; j < NR; j++)
                wv[j] = _mm512_maskz_loadu_epi32(mask, wq + (p * NR + j) * nb * 4);
            _Pragma("GCC unroll 2") for (int i = 0; i < mr; i++) {
                __m512i xv = _mm512_maskz_loadu_epi32(mask, xq[i] + g * MG_Q8_GROUP + p * nb * 4);
                _Pragma("GCC unroll 4") for (int j = 0; j < NR; j++)
                    d[i][j] = _mm512_dpbusd_epi32(d[i][j], wv[j], xv);
            }
        }
        __m512 wsv[NR];
        _Pragma("GCC unroll 4") for (int j = 0; j < NR; j++)
            wsv[j] = _mm512_maskz_loadu_ps(mask, ws + j * nb);
        _Pragma("GCC unroll 2") for (int i = 0; i < mr; i++) {
            __m512 sv = _mm512_maskz_loadu_ps(mask, xs[i] + g * MG_Q8_GBLOCKS);
            _Pragma("GCC unroll 4") for (int j = 0; j < NR; j++)
                acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d[i][j]), _mm512_mul_ps(sv, wsv[j]),
                                            acc[i][j]);
        }
    }
    _Pragma("GCC unroll 2") for (int i = 0; i < mr; i++)
        _Pragma("GCC unroll 4") for (int j = 0; j < NR; j++)
            store(a, m0 + i, n0 + j, _mm512_reduce_add_ps(acc[i][j]));
}

/* Four activation rows per weight load (batched steps): 16 integer sums, 4
 * activation vectors and one weight vector stay in registers, the float sums
 * (updated once per group) are left to the stack. Per piece 8 loads feed 16
 * vpdpbusd where the pair kernel's 6 fed 8, and Zen 4 loads one zmm per
 * cycle. The same operations per (m, n) as q8_pair_vnni. */
INLINE TARGET_VNNI void q8_quad_vnni(const mv_args *a, int64_t n0, int64_t m0)
{
    enum { Q = 4 };
    const int8_t *xq[Q];
    const float *xs[Q];
    const int32_t *xc[Q];
    for (int i = 0; i < Q; i++) {
        int64_t r = m0 + i - a->m0;
        xq[i] = a->xq + r * a->stride;
        xs[i] = a->xscale + r * (a->stride / MG_Q8_BLOCK);
        xc[i] = a->xcorr + r * (a->stride / MG_Q8_BLOCK);
    }
    __m512 acc[Q][NR];
    _Pragma("GCC unroll 4") for (int i = 0; i < Q; i++)
        _Pragma("GCC unroll 4") for (int j = 0; j < NR; j++) acc[i][j] = _mm512_setzero_ps();
    const int64_t ng = mg_q8_groups(&a->q8);
    for (int64_t g = 0; g < ng; g++) {
        const int nb = mg_q8_group_blocks(&a->q8, g);
        const __mmask16 mask = (__mmask16)((1u << nb) - 1);
        const uint8_t *wq = mg_q8_group(&a->q8, n0, g);
        q8_prefetch_next_unit(a, n0, m0, wq);
        const float *ws = mg_q8_group_scales(&a->q8, n0, g);
        __m512i d[Q][NR];
        _Pragma("GCC unroll 4") for (int i = 0; i < Q; i++) {
            __m512i c = _mm512_maskz_loadu_epi32(mask, xc[i] + g * MG_Q8_GBLOCKS);
            _Pragma("GCC unroll 4") for (int j = 0; j < NR; j++) d[i][j] = c;
        }
        _Pragma("GCC unroll 8") for (int p = 0; p < MG_Q8_PIECES; p++) {
            __m512i xv[Q];
            _Pragma("GCC unroll 4") for (int i = 0; i < Q; i++)
                xv[i] = _mm512_maskz_loadu_epi32(mask, xq[i] + g * MG_Q8_GROUP + p * nb * 4);
            _Pragma("GCC unroll 4") for (int j = 0; j < NR; j++) {
                __m512i wv = _mm512_maskz_loadu_epi32(mask, wq + (p * NR + j) * nb * 4);
                _Pragma("GCC unroll 4") for (int i = 0; i < Q; i++)
                    d[i][j] = _mm512_dpbusd_epi32(d[i][j], wv, xv[i]);
            }
        }
        _Pragma("GCC unroll 4") for (int j = 0; j < NR; j++) {
            __m512 wsv = _mm512_maskz_loadu_ps(mask, ws + j * nb);
            _Pragma("GCC unroll 4") for (int i = 0; i < Q; i++) {
                __m512 sv = _mm512_maskz_loadu_ps(mask, xs[i] + g * MG_Q8_GBLOCKS);
                acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d[i][j]), _mm512_mul_ps(sv, wsv),
                                            acc[i][j]);
            }
        }
    }
    _Pragma("GCC unroll 4") for (int i = 0; i < Q; i++)
        _Pragma("GCC unroll 4") for (int j = 0; j < NR; j++)
            store(a, m0 + i, n0 + j, _mm512_reduce_add_ps(acc[i][j]));
}

INLINE TARGET_VNNI void q8_tile_vnni_mr(const mv_args *a, int64_t n0, int64_t m0, const int mr)
{
    if (mr == 4) {
        q8_quad_vnni(a, n0, m0);
        return;
    }
    if (mr >= 2)
        q8_pair_vnni(a, n0, m0, 2);
    if (mr == 3)
        q8_pair_vnni(a, n0, m0 + 2, 1);
    else if (mr == 1)
        q8_pair_vnni(a, n0, m0, 1);
}

/* -------------------------------------------- K-blocked F32 (and dequantised Q8)
 * A unit of NR weight rows runs over all activation rows of the pass, K in
 * chunks: the chunk of the weight rows (F32 in place, or Q8 dequantised once
 * per group) and of the activation rows stay in L1 while every MR-row tile
 * uses them, and each (m, n) keeps a full-width vector accumulator in memory
 * between chunks. T5 (M = 20) was L2-bound re-reading 4 weight rows of up to
 * 12 KB per tile. Each (m, n) sums lane l over k ≡ l in increasing k and then
 * reduces, whatever M, the tile or the thread: a row's result does not depend
 * on the rows batched with it. */
enum { KC_F32 = 256, PF_CHUNKS = 1 /* how far ahead prefetch_next reads */ };

INLINE TARGET_AVX512 void chunk_avx512(const float *const *w, const float *x, int64_t xs,
                                       int64_t n, __m512 (*acc)[NR], int first, const int mr,
                                       const int nr)
{
    __m512 c[MR][NR];
    _Pragma("GCC unroll 4") for (int i = 0; i < mr; i++)
        _Pragma("GCC unroll 4") for (int j = 0; j < nr; j++)
            c[i][j] = first ? _mm512_setzero_ps() : acc[i][j];
    for (int64_t k = 0; k < n; k += 16) {
        __mmask16 mask = n - k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - k)) - 1);
        __m512 wv[NR];
        _Pragma("GCC unroll 4") for (int j = 0; j < nr; j++) wv[j] = _mm512_maskz_loadu_ps(mask, w[j] + k);
        _Pragma("GCC unroll 4") for (int i = 0; i < mr; i++) {
            __m512 xv = _mm512_maskz_loadu_ps(mask, x + i * xs + k);
            _Pragma("GCC unroll 4") for (int j = 0; j < nr; j++)
                c[i][j] = _mm512_fmadd_ps(xv, wv[j], c[i][j]);
        }
    }
    _Pragma("GCC unroll 4") for (int i = 0; i < mr; i++)
        _Pragma("GCC unroll 4") for (int j = 0; j < nr; j++) acc[i][j] = c[i][j];
}

INLINE TARGET_AVX2 void chunk_avx2(const float *const *w, const float *x, int64_t xs, int64_t n,
                                   __m256 (*acc)[NR], int first, const int mr, const int nr)
{
    __m256 c[MR][NR];
    _Pragma("GCC unroll 4") for (int i = 0; i < mr; i++)
        _Pragma("GCC unroll 4") for (int j = 0; j < nr; j++)
            c[i][j] = first ? _mm256_setzero_ps() : acc[i][j];
    for (int64_t k = 0; k < n; k += 8) {
        __m256 wv[NR], xv;
        if (n - k >= 8) {
            _Pragma("GCC unroll 4") for (int j = 0; j < nr; j++) wv[j] = _mm256_loadu_ps(w[j] + k);
        } else {
            __m256i mask = tail_mask256(n - k);
            _Pragma("GCC unroll 4") for (int j = 0; j < nr; j++) wv[j] = _mm256_maskload_ps(w[j] + k, mask);
        }
        _Pragma("GCC unroll 4") for (int i = 0; i < mr; i++) {
            xv = n - k >= 8 ? _mm256_loadu_ps(x + i * xs + k)
                            : _mm256_maskload_ps(x + i * xs + k, tail_mask256(n - k));
            _Pragma("GCC unroll 4") for (int j = 0; j < nr; j++)
                c[i][j] = _mm256_fmadd_ps(xv, wv[j], c[i][j]);
        }
    }
    _Pragma("GCC unroll 4") for (int i = 0; i < mr; i++)
        _Pragma("GCC unroll 4") for (int j = 0; j < nr; j++) acc[i][j] = c[i][j];
}

/* F32 rows are 4 separate streams the prefetcher follows poorly (T5
 * computes ~20 rows per weight and leaves it long gaps): part `part` of
 * `parts` of the chunk PF_CHUNKS ahead (in this unit or the next ones) is
 * fetched before each row tile, spread out so the misses do not queue up in
 * one burst. */
static inline void prefetch_next(const mv_args *a, int64_t n0, int64_t k0, int64_t part,
                                 int64_t parts)
{
    int64_t nchunks = (a->k + KC_F32 - 1) / KC_F32, t = k0 / KC_F32 + PF_CHUNKS;
    int64_t nk = t % nchunks * KC_F32, nn = n0 + t / nchunks * NR;
    int64_t lines = ((a->k - nk < KC_F32 ? a->k - nk : KC_F32) * (int64_t)sizeof(float) + 63) / 64;
    for (int64_t l = part * NR * lines / parts; l < (part + 1) * NR * lines / parts; l++) {
        int64_t j = l / lines;
        if (nn + j < a->n)
            __builtin_prefetch((const char *)(a->w + (nn + j) * a->k + nk) + l % lines * 64);
    }
}

/* Group g of the NR rows of a unit as floats in natural order (the
 * dequantising kernels): 4 quants (one piece of one block) per step. */
INLINE TARGET_AVX2 void q8_dequant_group(const mv_args *a, int64_t n0, int64_t g,
                                         float (*w)[MG_Q8_GROUP])
{
    int nb = mg_q8_group_blocks(&a->q8, g);
    const uint8_t *q = mg_q8_group(&a->q8, n0, g);
    const __m128i off = _mm_set1_epi32(128);
    for (int j = 0; j < NR; j++) {
        const float *sc = mg_q8_group_scales(&a->q8, n0 + j, g);
        for (int p = 0; p < MG_Q8_PIECES; p++) {
            const uint8_t *qp = q + (p * NR + j) * nb * 4;
            for (int b = 0; b < nb; b++) {
                int32_t four;
                memcpy(&four, qp + 4 * b, 4);
                __m128i v = _mm_sub_epi32(_mm_cvtepu8_epi32(_mm_cvtsi32_si128(four)), off);
                _mm_storeu_ps(w[j] + b * MG_Q8_BLOCK + 4 * p,
                              _mm_mul_ps(_mm_cvtepi32_ps(v), _mm_set1_ps(sc[b])));
            }
        }
    }
}

/* The float weight rows of chunk [k0, k0 + n) of unit n0: F32 in place, Q8
 * dequantised into buf (its chunks are its groups). Returns n. */
INLINE TARGET_AVX2 int64_t unit_chunk(const mv_args *a, int64_t n0, int64_t k0,
                                 float (*buf)[MG_Q8_GROUP], const float **w)
{
    if (a->w) {
        for (int j = 0; j < NR; j++)
            w[j] = row_f32(a, n0 + j) + k0;
        return a->k - k0 < KC_F32 ? a->k - k0 : KC_F32;
    }
    q8_dequant_group(a, n0, k0 / MG_Q8_GROUP, buf);
    for (int j = 0; j < NR; j++)
        w[j] = buf[j];
    return (int64_t)mg_q8_group_blocks(&a->q8, k0 / MG_Q8_GROUP) * MG_Q8_BLOCK;
}

#define UNIT_DRIVER(name, target, vec, chunk, reduce)                                       \
    target static void name(const mv_args *a, int64_t n0)                                  \
    {                                                                                      \
        const int64_t rows = a->m1 - a->m0, kend = a->w ? a->k : a->stride;                \
        const int64_t kc = a->w ? KC_F32 : MG_Q8_GROUP;                                    \
        const float *x = a->w ? a->x + a->m0 * a->k : a->xpad;                             \
        const int64_t xs = a->w ? a->k : a->stride;                                        \
        float buf[NR][MG_Q8_GROUP] __attribute__((aligned(64)));                           \
        vec acc[MG_CPU_LINEAR_ROWS][NR];                                                   \
        if (a->w && rows <= MR) {                                                          \
            /* few rows (decode): one weight row at a time over all of K, a   \
             * single sequential stream; the same sums as the chunked path */ \
            for (int j = 0; j < NR; j++) {                                                 \
                const float *wj = row_f32(a, n0 + j);                                      \
                vec(*aj)[NR] = (vec(*)[NR]) & acc[0][j];                                   \
                switch (rows) {                                                            \
                case 1: chunk(&wj, x, xs, a->k, aj, 1, 1, 1); break;                       \
                case 2: chunk(&wj, x, xs, a->k, aj, 1, 2, 1); break;                       \
                case 3: chunk(&wj, x, xs, a->k, aj, 1, 3, 1); break;                       \
                default: chunk(&wj, x, xs, a->k, aj, 1, 4, 1); break;                      \
                }                                                                          \
            }                                                                              \
        } else                                                                             \
        for (int64_t k0 = 0; k0 < kend; k0 += kc) {                                        \
            const float *w[NR];                                                            \
            int64_t n = unit_chunk(a, n0, k0, buf, w);                                     \
            for (int64_t m = 0; m < rows; m += MR) {                                       \
                const float *xm = x + m * xs + k0;                                         \
                if (a->w)                                                                  \
                    prefetch_next(a, n0, k0, m / MR, (rows + MR - 1) / MR);                \
                switch (rows - m < MR ? rows - m : MR) {                                   \
                case 1: chunk(w, xm, xs, n, acc + m, k0 == 0, 1, NR); break;               \
                case 2: chunk(w, xm, xs, n, acc + m, k0 == 0, 2, NR); break;               \
                case 3: chunk(w, xm, xs, n, acc + m, k0 == 0, 3, NR); break;               \
                default: chunk(w, xm, xs, n, acc + m, k0 == 0, 4, NR); break;              \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
        for (int64_t m = 0; m < rows; m++)                                                 \
            for (int j = 0; j < NR; j++)                                                   \
                store(a, a->m0 + m, n0 + j, reduce(acc[m][j]));                            \
    }
UNIT_DRIVER(unit_avx512, TARGET_AVX512, __m512, chunk_avx512, _mm512_reduce_add_ps)
UNIT_DRIVER(unit_avx2, TARGET_AVX2, __m256, chunk_avx2, hsum256)

/* Each kernel specialised for mr = 1..4 (mr is a compile-time constant inside). */
#define MR_DISPATCH(name, target)                                                        \
    target static void name(const mv_args *a, int64_t n0, int64_t m0, int mr)            \
    {                                                                                    \
        switch (mr) {                                                                    \
        case 1: name##_mr(a, n0, m0, 1); break;                                          \
        case 2: name##_mr(a, n0, m0, 2); break;                                          \
        case 3: name##_mr(a, n0, m0, 3); break;                                          \
        default: name##_mr(a, n0, m0, 4); break;                                         \
        }                                                                                \
    }
MR_DISPATCH(bf16_tile_avx2, TARGET_AVX2)
MR_DISPATCH(bf16_tile_avx512, TARGET_AVX512)
MR_DISPATCH(q8_tile_vnni, TARGET_VNNI)
#endif /* MG_X86 */

/* ------------------------------------------------- activation preparation */

size_t mg_cpu_xbuf_row_bytes(int64_t cols)
{
    /* float padded row (4·stride) covers the VNNI layout too (1.25·stride) */
    return (size_t)mg_round_up(cols > 0 ? cols : 1, MG_Q8_BLOCK) * sizeof(float);
}

#if MG_X86
/* Row r of the pass: int8 quants in the weights' group layout, block scales
 * and -128·Σ of each block's quants. The same formulas as cpu_quant.c's
 * q8_quantize_block (scale max|x|/127, round to nearest even), 16 lanes at
 * a time (the scalar version kept the other worker waiting). */
typedef struct {
    const mv_args *a;
    int8_t        *xq;
    float         *xs;
    int32_t       *xc;
} prep_ctx;

TARGET_VNNI static void prepare_vnni_task(void *arg, int64_t r0, int64_t r1)
{
    const prep_ctx *c = arg;
    const mv_args *a = c->a;
    int64_t stride = a->stride, nblk = stride / MG_Q8_BLOCK;
    int8_t *xq = c->xq;
    float *xs = c->xs;
    int32_t *xc = c->xc;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = a->x + (a->m0 + r) * a->k;
        for (int64_t blk = 0; blk < nblk; blk++) {
            int64_t k = blk * MG_Q8_BLOCK, n = a->k - k;
            __mmask16 m0 = n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
            __mmask16 m1 = n >= 32 ? (__mmask16)0xffff : n > 16 ? (__mmask16)((1u << (n - 16)) - 1) : 0;
            __m512 v0 = _mm512_maskz_loadu_ps(m0, x + k), v1 = _mm512_maskz_loadu_ps(m1, x + k + 16);
            float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
            float inv = amax > 0 ? 127.0f / amax : 0.0f;
            xs[r * nblk + blk] = amax / 127.0f;
            __m512 iv = _mm512_set1_ps(inv);
            __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, iv)); /* MXCSR: nearest even */
            __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, iv));
            xc[r * nblk + blk] = -128 * _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
            uint32_t piece[MG_Q8_PIECES];
            _mm_storeu_si128((__m128i *)piece, _mm512_cvtsepi32_epi8(q0));
            _mm_storeu_si128((__m128i *)(piece + 4), _mm512_cvtsepi32_epi8(q1));
            int64_t g = blk / MG_Q8_GBLOCKS;
            int nb = mg_q8_group_blocks(&a->q8, g), b = (int)(blk % MG_Q8_GBLOCKS);
            int8_t *dst = xq + r * stride + g * MG_Q8_GROUP;
            for (int p = 0; p < MG_Q8_PIECES; p++)
                memcpy(dst + mg_q8_piece_offset(nb, 1, 0, b, 4 * p), &piece[p], 4);
        }
    }
}

/* Rows in parallel once there are several (batched steps quantise 8 rows
 * of up to 4096 before every product; one thread doing it left the other
 * waiting ~1 ms a step; with 8k values per thread the 8 rows of 1024 still
 * went to one thread, 0.8 ms of each 8-row step). */
static void prepare_vnni_avx512(mg_backend *be, mv_args *a, void *buf)
{
    int64_t rows = a->m1 - a->m0, stride = a->stride, nblk = stride / MG_Q8_BLOCK;
    prep_ctx c = {.a = a, .xq = buf};
    c.xs = (float *)(c.xq + rows * stride);
    c.xc = (int32_t *)(c.xs + rows * nblk);
    mg_cpu_parallel(be, rows, mg_cpu_rows_min(a->k), prepare_vnni_task, &c);
    a->xq = c.xq;
    a->xscale = c.xs;
    a->xcorr = c.xc;
}
#endif

static void prepare_padded(mv_args *a, void *buf)
{
    int64_t rows = a->m1 - a->m0;
    float *xp = buf;
    for (int64_t r = 0; r < rows; r++) {
        memcpy(xp + r * a->stride, a->x + (a->m0 + r) * a->k, (size_t)a->k * sizeof *xp);
        memset(xp + r * a->stride + a->k, 0, (size_t)(a->stride - a->k) * sizeof *xp);
    }
    a->xpad = xp;
}

/* ------------------------------------------------------------- dispatch */

typedef void (*unit_fn)(const mv_args *a, int64_t n0);

/* The units (NR weight rows) of up to MG_CPU_LINEAR_MANY matrices that
 * share their input, numbered one after the other: one parallel region. */
typedef struct {
    const mv_args *a[MG_CPU_LINEAR_MANY];
    int64_t        end[MG_CPU_LINEAR_MANY]; /* first unit past matrix i */
    int            n;
    tile_fn        tile;
    unit_fn        unit;  /* all rows of the pass at once (K-blocked kernels), or NULL */
} task_ctx;

static void linear_task(void *arg, int64_t u0, int64_t u1)
{
    const task_ctx *c = arg;
    int i = 0;
    for (int64_t u = u0; u < u1; u++) {
        while (u >= c->end[i])
            i++;
        const mv_args *a = c->a[i];
        int64_t n0 = (u - (i ? c->end[i - 1] : 0)) * NR;
        if (c->unit) {
            c->unit(a, n0);
            continue;
        }
        for (int64_t m = a->m0; m < a->m1; m += MR) {
            int64_t mr = a->m1 - m < MR ? a->m1 - m : MR;
            c->tile(a, n0, m, (int)mr);
        }
    }
}

typedef enum { PREP_NONE, PREP_VNNI, PREP_PADDED } prep_kind;

static tile_fn pick_tile(mg_cpu_isa isa, mg_dtype dt, prep_kind *prep, unit_fn *unit)
{
    *prep = PREP_NONE;
    *unit = NULL;
#if MG_X86
    unit_fn u = isa >= MG_CPU_ISA_AVX512 ? unit_avx512 : isa >= MG_CPU_ISA_AVX2 ? unit_avx2 : NULL;
    if (dt == MG_DT_Q8) {
        *prep = isa >= MG_CPU_ISA_AVX512_VNNI ? PREP_VNNI : PREP_PADDED;
        if (isa >= MG_CPU_ISA_AVX512_VNNI)
            return q8_tile_vnni;
        *unit = u;
        return q8_tile_scalar;
    }
    if (dt == MG_DT_BF16)
        return isa >= MG_CPU_ISA_AVX512 ? bf16_tile_avx512
             : isa >= MG_CPU_ISA_AVX2   ? bf16_tile_avx2 : bf16_tile_scalar;
    *unit = u;
    return f32_tile_scalar;
#else
    (void)isa;
    if (dt == MG_DT_Q8) {
        *prep = PREP_PADDED;
        return q8_tile_scalar;
    }
    return dt == MG_DT_BF16 ? bf16_tile_scalar : f32_tile_scalar;
#endif
}

/* y_i = x · w_iᵀ (+ bias) for matrices of one format and one input width:
 * the activations are prepared once and all rows run in one parallel region. */
static void linear_many(mg_backend *be, int n, mg_tensor *const *y, const mg_tensor *x,
                        const mg_tensor *const *w, const mg_tensor *bias)
{
    mg_cpu_backend *cpu = (mg_cpu_backend *)be;
    mv_args args[MG_CPU_LINEAR_MANY];
    task_ctx c = {.n = n};
    prep_kind prep;
    mg_dtype dt = w[0]->dtype;
    c.tile = pick_tile(cpu->isa, dt, &prep, &c.unit);
    int64_t units = 0, m = mg_tensor_rows(x), k = mg_tensor_cols(x), pass = MG_CPU_LINEAR_ROWS;
    for (int i = 0; i < n; i++) {
        mv_args *a = &args[i];
        *a = (mv_args){
            .y = mg_cpu_f32(y[i]), .x = mg_cpu_f32(x), .bias = bias ? mg_cpu_f32(bias) : NULL,
            .m = m, .n = mg_tensor_rows(w[i]), .k = k,
            .w = dt == MG_DT_F32 ? mg_cpu_f32(w[i]) : NULL,
        };
        if (dt == MG_DT_BF16)
            a->bf16 = mg_bf16_view(w[i]);
        if (dt == MG_DT_Q8) {
            a->q8 = mg_q8_view(w[i]);
            a->stride = a->q8.nblocks * MG_Q8_BLOCK;
        }
        units += (a->n + NR - 1) / NR;
        c.a[i] = a;
        c.end[i] = units;
    }
    if (m == 0 || units == 0)
        return;
    if (dt == MG_DT_Q8) {
        /* the weight op sized xbuf for this width; cap the pass to it anyway */
        int64_t fit = (int64_t)(cpu->xbuf_cap / mg_cpu_xbuf_row_bytes(k));
        pass = fit < pass ? fit : pass;
        if (pass < 1)
            return; /* unreachable: weight() reserved the buffer or failed */
    }
    for (int64_t m0 = 0, m1; m0 < m; m0 = m1) {
        m1 = m - m0 < pass ? m : m0 + pass;
        mv_args *a = &args[0];
        a->m0 = m0;
        a->m1 = m1;
#if MG_X86
        if (prep == PREP_VNNI)
            prepare_vnni_avx512(be, a, cpu->xbuf);
        else
#endif
        if (prep == PREP_PADDED)
            prepare_padded(a, cpu->xbuf);
        for (int i = 1; i < n; i++) {
            args[i].m0 = m0;
            args[i].m1 = m1;
            args[i].xq = a->xq;
            args[i].xscale = a->xscale;
            args[i].xcorr = a->xcorr;
            args[i].xpad = a->xpad;
        }
        /* a unit (NR rows) is NR·K·rows multiply-adds; ~32k per thread pays the wake-up */
        int64_t macs = NR * k * (m1 - m0);
        mg_cpu_parallel(be, units, macs >= 32768 ? 1 : 32768 / macs, linear_task, &c);
    }
}

void mg_cpu_linear(mg_backend *be, mg_tensor *y, const mg_tensor *x, const mg_tensor *w,
                   const mg_tensor *bias)
{
    linear_many(be, 1, &y, x, &w, bias);
}

void mg_cpu_linear_many(mg_backend *be, int n, mg_tensor *const *y, const mg_tensor *x,
                        const mg_tensor *const *w)
{
    for (int i0 = 0; i0 < n; i0 += MG_CPU_LINEAR_MANY) {
        int cnt = n - i0 < MG_CPU_LINEAR_MANY ? n - i0 : MG_CPU_LINEAR_MANY, same = 1;
        for (int i = 1; i < cnt; i++)
            same &= w[i0 + i]->dtype == w[i0]->dtype;
        if (same) {
            linear_many(be, cnt, y + i0, x, w + i0, NULL);
            continue;
        }
        for (int i = 0; i < cnt; i++)
            linear_many(be, 1, y + i0 + i, x, w + i0 + i, NULL);
    }
}
