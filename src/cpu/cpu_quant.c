/* Conversions into and out of the CPU backend's BF16 and Q8 weight formats
 * (see cpu_quant.h). They run once per weight at load, one panel of rows per
 * piece of work on all workers, with loops the compiler vectorises per
 * kernel level (MG_CPU_KERNEL). */
#include "cpu/cpu_quant_impl.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "cpu/cpu_impl.h"

/* One block of n <= 32 floats -> 32 quants (zero-padded) and its scale. */
MG_CPU_BODY void q8_quantize_block_body(const float *x, int64_t n, int8_t *q, float *scale)
{
    float amax = 0;
    for (int64_t i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        amax = a > amax ? a : amax;
    }
    /* an all-zero block gets scale 0 and zeros; inv is never inf */
    float inv = amax > 0 ? 127.0f / amax : 0.0f;
    *scale = amax / 127.0f;
    for (int64_t i = 0; i < n; i++)
        q[i] = (int8_t)rintf(x[i] * inv);
    for (int64_t i = n; i < MG_Q8_BLOCK; i++)
        q[i] = 0;
}
MG_CPU_KERNEL_VOID(q8_quantize_block, (const float *x, int64_t n, int8_t *q, float *scale),
                   (x, n, q, scale))

static inline uint16_t bf16_round(float f)
{
    uint32_t bits;
    memcpy(&bits, &f, 4);
    uint32_t nan = (bits & 0x7fffffffu) > 0x7f800000u;
    uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
    return (uint16_t)(nan ? (bits >> 16) | 0x40u : rounded);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* bf16_round 16 lanes at a time (-O2 leaves the scalar loop alone); the KV
 * cache rows of every decode step go through here */
__attribute__((target("avx512f,avx512bw,avx512vl"))) static void bf16_row_avx512(const float *x,
                                                                            uint16_t *y, int64_t n)
{
    const __m512i one = _mm512_set1_epi32(1), half = _mm512_set1_epi32(0x7fff);
    const __m512i abs = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
    const __m512i quiet = _mm512_set1_epi32(0x40);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512i b = _mm512_castps_si512(_mm512_maskz_loadu_ps(m, x + i));
        __m512i hi = _mm512_srli_epi32(b, 16);
        __m512i r = _mm512_srli_epi32(
            _mm512_add_epi32(_mm512_add_epi32(b, half), _mm512_and_si512(hi, one)), 16);
        __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(b, abs), inf);
        r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(hi, quiet));
        _mm256_mask_storeu_epi16(y + i, m, _mm512_cvtepi32_epi16(r));
    }
}
#endif

void mg_bf16_row_from_f32(mg_cpu_isa isa, const float *x, uint16_t *y, int64_t n)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (isa >= MG_CPU_ISA_AVX512) {
        bf16_row_avx512(x, y, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++)
        y[i] = bf16_round(x[i]);
}

/* Q8ROW (safetensors.h): per 64-block scale max|x|/127, quants rounded to
 * nearest even (rintf; cvtps in MXCSR's default mode) and stored + 128. */
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f,avx512bw,avx512vl"))) static void q8row_avx512(const float *x,
                                                                          int64_t cols, void *row)
{
    uint8_t *u = row;
    float *sc = mg_q8row_scales(row, cols);
    for (int64_t b = 0; b < cols / MG_Q8ROW_BLOCK; b++) {
        const float *xb = x + b * MG_Q8ROW_BLOCK;
        __m512 v[4], m = _mm512_setzero_ps();
        for (int i = 0; i < 4; i++) {
            v[i] = _mm512_loadu_ps(xb + 16 * i);
            m = _mm512_max_ps(m, _mm512_abs_ps(v[i]));
        }
        float amax = _mm512_reduce_max_ps(m);
        float inv = amax > 127.0f / FLT_MAX ? 127.0f / amax : 0.0f; /* never inf */
        sc[b] = amax / 127.0f;
        __m512 iv = _mm512_set1_ps(inv);
        for (int i = 0; i < 4; i++) {
            __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(v[i], iv)), _mm512_set1_epi32(128));
            _mm_storeu_si128((__m128i *)(u + b * MG_Q8ROW_BLOCK + 16 * i), _mm512_cvtepi32_epi8(q));
        }
    }
}
#endif

void mg_q8row_quantize(mg_cpu_isa isa, const float *x, int64_t cols, void *row)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (isa >= MG_CPU_ISA_AVX512) {
        q8row_avx512(x, cols, row);
        return;
    }
#endif
    uint8_t *u = row;
    float *sc = mg_q8row_scales(row, cols);
    for (int64_t b = 0; b < cols / MG_Q8ROW_BLOCK; b++) {
        const float *xb = x + b * MG_Q8ROW_BLOCK;
        float amax = 0;
        for (int i = 0; i < MG_Q8ROW_BLOCK; i++)
            amax = fabsf(xb[i]) > amax ? fabsf(xb[i]) : amax;
        float inv = amax > 127.0f / FLT_MAX ? 127.0f / amax : 0.0f; /* never inf */
        sc[b] = amax / 127.0f;
        for (int i = 0; i < MG_Q8ROW_BLOCK; i++)
            u[b * MG_Q8ROW_BLOCK + i] = (uint8_t)((int)rintf(xb[i] * inv) + 128);
    }
}

void mg_q8row_dequantize(const void *row, int64_t cols, int64_t c0, int64_t n, float *out)
{
    const uint8_t *u = row;
    const float *sc = mg_q8row_scales((void *)row, cols);
    for (int64_t i = 0; i < n; i++)
        out[i] = (float)((int)u[c0 + i] - 128) * sc[(c0 + i) / MG_Q8ROW_BLOCK];
}

void mg_bf16_row_to_f32(const uint16_t *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        uint32_t bits = (uint32_t)x[i] << 16;
        memcpy(&y[i], &bits, 4);
    }
}

size_t mg_cpu_matrix_nbytes(mg_dtype dtype, int64_t rows, int64_t cols)
{
    switch (dtype) {
    case MG_DT_Q8:   return mg_q8_nbytes(rows, cols);
    case MG_DT_BF16: return mg_bf16_nbytes(rows, cols);
    default:         return (size_t)(rows * cols) * sizeof(float);
    }
}

typedef struct {
    mg_dtype     dtype;
    const float *src;
    int64_t      rows, cols;
    void        *dst;
    mg_cpu_isa   isa;
} convert_ctx;

/* Panels [p0, p1): each row's chunks go to their interleaved places; rows
 * past the end and columns past cols become zeros. */
static void convert_task(void *arg, int64_t p0, int64_t p1)
{
    const convert_ctx *c = arg;
    static const float zeros[MG_Q8_BLOCK];
    for (int64_t r = p0 * MG_PANEL_ROWS; r < p1 * MG_PANEL_ROWS; r++) {
        const float *row = r < c->rows ? c->src + r * c->cols : NULL;
        if (c->dtype == MG_DT_BF16) {
            mg_bf16_matrix m = mg_bf16_layout(c->rows, c->cols, c->dst);
            for (int64_t k = 0; k < m.stride; k += MG_BF16_CHUNK) {
                int64_t n = row ? (c->cols - k < MG_BF16_CHUNK ? c->cols - k : MG_BF16_CHUNK) : 0;
                uint16_t *out = mg_bf16_chunk(&m, r, k / MG_BF16_CHUNK);
                mg_bf16_row_from_f32(c->isa, row ? row + k : zeros, out, n);
                memset(out + n, 0, (size_t)(MG_BF16_CHUNK - n) * sizeof *out);
            }
        } else {
            mg_q8_matrix m = mg_q8_layout(c->rows, c->cols, c->dst);
            for (int64_t blk = 0; blk < m.nblocks; blk++) {
                int64_t k = blk * MG_Q8_BLOCK, n = row ? c->cols - k : 0;
                n = n < 0 ? 0 : n > MG_Q8_BLOCK ? MG_Q8_BLOCK : n;
                int8_t q[MG_Q8_BLOCK];
                int64_t g = blk / MG_Q8_GBLOCKS;
                int nb = mg_q8_group_blocks(&m, g), b = (int)(blk % MG_Q8_GBLOCKS);
                q8_quantize_block_for(c->isa)(row ? row + k : zeros, n, q,
                                              mg_q8_group_scales(&m, r, g) + b);
                uint8_t *dst = mg_q8_group(&m, r, g);
                for (int i = 0; i < MG_Q8_BLOCK; i++)
                    dst[mg_q8_piece_offset(nb, MG_PANEL_ROWS, (int)(r % MG_PANEL_ROWS), b, i)] =
                        (uint8_t)(q[i] + 128);
            }
        }
    }
}

void mg_cpu_convert_matrix(mg_backend *be, mg_dtype dtype, const float *src, int64_t rows,
                           int64_t cols, void *dst)
{
    convert_ctx c = {.dtype = dtype, .src = src, .rows = rows, .cols = cols, .dst = dst,
                     .isa = ((mg_cpu_backend *)be)->isa};
    int64_t panels = (rows + MG_PANEL_ROWS - 1) / MG_PANEL_ROWS;
    /* ~64k weights per piece keeps both workers busy on every matrix */
    int64_t per_panel = MG_PANEL_ROWS * (cols > 0 ? cols : 1);
    mg_cpu_parallel(be, panels, per_panel >= 65536 ? 1 : 65536 / per_panel, convert_task, &c);
}

void mg_cpu_matrix_row(const mg_tensor *t, int64_t r, float *out, int accumulate)
{
    int64_t d = mg_tensor_cols(t);
    if (t->dtype == MG_DT_F32) {
        const float *row = mg_cpu_f32(t) + r * d;
        if (accumulate)
            for (int64_t j = 0; j < d; j++)
                out[j] += row[j];
        else
            memcpy(out, row, (size_t)d * sizeof *out);
        return;
    }
    /* a block at a time: no scratch memory needed */
    float tmp[MG_Q8_BLOCK];
    for (int64_t k = 0; k < d; k += MG_Q8_BLOCK) {
        int64_t n = d - k < MG_Q8_BLOCK ? d - k : MG_Q8_BLOCK;
        if (t->dtype == MG_DT_Q8) {
            mg_q8_matrix m = mg_q8_view(t);
            int8_t q[MG_Q8_BLOCK];
            float s;
            mg_q8_get_block(&m, r, k / MG_Q8_BLOCK, q, &s);
            for (int64_t j = 0; j < n; j++)
                tmp[j] = s * (float)q[j];
        } else {
            mg_bf16_matrix m = mg_bf16_view(t);
            mg_bf16_row_to_f32(mg_bf16_chunk(&m, r, k / MG_BF16_CHUNK), tmp, n);
        }
        for (int64_t j = 0; j < n; j++)
            out[k + j] = accumulate ? out[k + j] + tmp[j] : tmp[j];
    }
}
