/* CPU reference ops: embeddings, norms, activations, row copies. Written to
 * read like the math; loops are shaped so the compiler can vectorise them. */
#include "cpu/cpu_impl.h"
#include "cpu/cpu_quant_impl.h"
#include "io/safetensors.h"

#include <float.h>
#include <math.h>
#include <string.h>

void mg_cpu_embed(mg_backend *be, mg_tensor *y, const mg_tensor *table, const int32_t *ids,
                  int64_t m, int accumulate)
{
    int64_t d = mg_tensor_cols(table);
    float *out = mg_cpu_f32(y);
    for (int64_t i = 0; i < m; i++)
        mg_cpu_matrix_row(table, ids[i], out + i * d, accumulate);
}

/* 16 independent partial sums: vectorisable without reassociating a scalar sum. */
MG_CPU_BODY float dot_body(const float *a, const float *b, int64_t n)
{
    float acc[16] = {0};
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) {
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++)
            acc[j] += a[k + j] * b[k + j];
    }
    float s = 0;
    for (int j = 0; j < 16; j++)
        s += acc[j];
    for (; k < n; k++)
        s += a[k] * b[k];
    return s;
}

MG_CPU_KERNEL(dot, float, (const float *a, const float *b, int64_t n), (a, b, n))

mg_cpu_dot_fn mg_cpu_dot_for(mg_cpu_isa isa) { return dot_for(isa); }

MG_CPU_BODY void add_rows_body(float *restrict a, const float *restrict b, int64_t n)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) /* whole vectors: -O2 vectorises fixed trip counts */
        for (int j = 0; j < 16; j++)
            a[i + j] += b[i + j];
    for (; i < n; i++)
        a[i] += b[i];
}

MG_CPU_KERNEL_VOID(add_rows, (float *restrict a, const float *restrict b, int64_t n), (a, b, n))

void mg_cpu_add(mg_backend *be, mg_tensor *y, const mg_tensor *x)
{
    add_rows_for(((mg_cpu_backend *)be)->isa)(mg_cpu_f32(y), mg_cpu_f32(x), mg_tensor_numel(y));
}

void mg_cpu_scale_rows(mg_backend *be, mg_tensor *y, const float *row_scale)
{
    int64_t rows = mg_tensor_rows(y), cols = mg_tensor_cols(y);
    float *a = mg_cpu_f32(y);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++)
            a[r * cols + j] *= row_scale[r];
}

/* One row, the sum of squares in 16 partial sums (vectorised; see
 * layer_norm_row). out may be x. */
MG_CPU_BODY void rms_norm_row_body(float *out, const float *x, const float *g, int64_t d, float eps)
{
    float acc[16] = {0}, ss = 0;
    int64_t k = 0;
    for (; k + 16 <= d; k += 16)
        for (int j = 0; j < 16; j++)
            acc[j] += x[k + j] * x[k + j];
    for (int j = 0; j < 16; j++)
        ss += acc[j];
    for (; k < d; k++)
        ss += x[k] * x[k];
    float inv = 1.0f / sqrtf(ss / (float)d + eps);
    for (k = 0; k < d; k++)
        out[k] = g[k] * (x[k] * inv);
}
MG_CPU_KERNEL_VOID(rms_norm_row, (float *out, const float *x, const float *g, int64_t d, float eps),
                   (out, x, g, d, eps))

/* One row: mean and variance each in 16 partial sums (vectorised, where a
 * single running sum was 2·d dependent adds: the batched decode step spent
 * more time in its norms than in attention's softmax). out may be x. */
MG_CPU_BODY void layer_norm_row_body(float *out, const float *x, const float *g, const float *beta,
                                     int64_t d, float eps)
{
    float acc[16] = {0}, mean = 0, var = 0;
    int64_t k = 0;
    for (; k + 16 <= d; k += 16)
        for (int j = 0; j < 16; j++)
            acc[j] += x[k + j];
    for (int j = 0; j < 16; j++)
        mean += acc[j];
    for (; k < d; k++)
        mean += x[k];
    mean /= (float)d;
    for (int j = 0; j < 16; j++)
        acc[j] = 0;
    for (k = 0; k + 16 <= d; k += 16)
        for (int j = 0; j < 16; j++)
            acc[j] += (x[k + j] - mean) * (x[k + j] - mean);
    for (int j = 0; j < 16; j++)
        var += acc[j];
    for (; k < d; k++)
        var += (x[k] - mean) * (x[k] - mean);
    float inv = 1.0f / sqrtf(var / (float)d + eps);
    for (k = 0; k < d; k++)
        out[k] = (x[k] - mean) * inv * g[k] + beta[k];
}
MG_CPU_KERNEL_VOID(layer_norm_row, (float *out, const float *x, const float *g, const float *beta,
                                    int64_t d, float eps), (out, x, g, beta, d, eps))

/* The norms' rows, each on one thread (its result does not depend on the
 * split; a batched step's 73 norms of 8 rows took 0.3 ms on one). */
typedef struct {
    float       *y;
    const float *x, *g, *beta; /* beta NULL: RMS norm */
    int64_t      d;
    float        eps;
    mg_cpu_isa   isa;
} norm_ctx;

static void norm_task(void *arg, int64_t r0, int64_t r1)
{
    const norm_ctx *c = arg;
    for (int64_t r = r0; r < r1; r++) {
        if (c->beta)
            layer_norm_row_for(c->isa)(c->y + r * c->d, c->x + r * c->d, c->g, c->beta, c->d,
                                       c->eps);
        else
            rms_norm_row_for(c->isa)(c->y + r * c->d, c->x + r * c->d, c->g, c->d, c->eps);
    }
}

static void norm_rows(mg_backend *be, mg_tensor *y, const mg_tensor *x, const mg_tensor *w,
                      const mg_tensor *b, float eps)
{
    int64_t d = mg_tensor_cols(x);
    norm_ctx c = {.y = mg_cpu_f32(y), .x = mg_cpu_f32(x), .g = mg_cpu_f32(w),
                  .beta = b ? mg_cpu_f32(b) : NULL, .d = d, .eps = eps,
                  .isa = ((mg_cpu_backend *)be)->isa};
    mg_cpu_parallel(be, mg_tensor_rows(x), mg_cpu_rows_min(d), norm_task, &c);
}

void mg_cpu_rms_norm(mg_backend *be, mg_tensor *y, const mg_tensor *x, const mg_tensor *w,
                     float eps)
{
    norm_rows(be, y, x, w, NULL, eps);
}

void mg_cpu_layer_norm(mg_backend *be, mg_tensor *y, const mg_tensor *x, const mg_tensor *w,
                       const mg_tensor *b, float eps)
{
    norm_rows(be, y, x, w, b, eps);
}

/* (16 at a time: -O2 vectorises fixed trip counts into selects; the scalar
 * loop branched on random signs and cost T5 1.5 ms) */
MG_CPU_BODY void relu_task_body(void *arg, int64_t i0, int64_t i1)
{
    float *a = arg;
    int64_t i = i0;
    for (; i + 16 <= i1; i += 16)
        for (int j = 0; j < 16; j++)
            a[i + j] = a[i + j] > 0 ? a[i + j] : 0;
    for (; i < i1; i++)
        a[i] = a[i] > 0 ? a[i] : 0;
}
MG_CPU_KERNEL_VOID(relu_task, (void *arg, int64_t i0, int64_t i1), (arg, i0, i1))

/* Elementwise ops run on the workers once there is enough to share. */
enum { ELEMWISE_MIN = 1 << 14 };

void mg_cpu_relu(mg_backend *be, mg_tensor *y)
{
    mg_cpu_task_fn relu = relu_task_for(((mg_cpu_backend *)be)->isa);
    mg_cpu_parallel(be, mg_tensor_numel(y), ELEMWISE_MIN, relu, mg_cpu_f32(y));
}

static void gelu_task(void *arg, int64_t i0, int64_t i1)
{
    float *a = arg;
    for (int64_t i = i0; i < i1; i++)
        a[i] = 0.5f * a[i] * (1.0f + erff(a[i] * (float)M_SQRT1_2));
}

#if defined(__x86_64__) && defined(__GNUC__)
static void gelu_task_avx512(void *arg, int64_t i0, int64_t i1);
#endif

void mg_cpu_gelu(mg_backend *be, mg_tensor *y)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (((mg_cpu_backend *)be)->isa >= MG_CPU_ISA_AVX512) {
        mg_cpu_parallel(be, mg_tensor_numel(y), 4096, gelu_task_avx512, mg_cpu_f32(y));
        return;
    }
#endif
    mg_cpu_parallel(be, mg_tensor_numel(y), 4096, gelu_task, mg_cpu_f32(y));
}

static void elu_task(void *arg, int64_t i0, int64_t i1)
{
    float *a = arg;
    for (int64_t i = i0; i < i1; i++)
        a[i] = a[i] > 0 ? a[i] : expm1f(a[i]);
}

#if defined(__x86_64__) && defined(__GNUC__)
#define OPS_X86 1
#include "cpu/cpu_exp_avx512.h"

/* GELU(x) = x/2 · (1 + erf(x/√2)), erf by Abramowitz-Stegun 7.1.26
 * (absolute error <= 1.5e-7, below float rounding of the result's scale):
 * libm's scalar erff was most of the op in a decode step. */
TARGET_AVX512 static void gelu_task_avx512(void *arg, int64_t i0, int64_t i1)
{
    float *a = arg;
    for (int64_t i = i0; i < i1; i += 16) {
        __mmask16 m = i1 - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (i1 - i)) - 1);
        __m512 x = _mm512_maskz_loadu_ps(m, a + i);
        __m512 z = _mm512_abs_ps(_mm512_mul_ps(x, _mm512_set1_ps(0.707106781f)));
        __m512 t = _mm512_div_ps(_mm512_set1_ps(1.0f),
                                 _mm512_fmadd_ps(z, _mm512_set1_ps(0.3275911f), _mm512_set1_ps(1.0f)));
        __m512 p = _mm512_set1_ps(1.061405429f);
        p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.453152027f));
        p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.421413741f));
        p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.284496736f));
        p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.254829592f));
        p = _mm512_mul_ps(p, t);
        __m512 e = exp_neg_avx512(_mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), z), z));
        __m512 erf_abs = _mm512_fnmadd_ps(p, e, _mm512_set1_ps(1.0f)); /* erf(|z|) */
        /* 1 + erf(x/√2): erf is odd */
        __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
        __m512 one_plus = _mm512_mask_sub_ps(_mm512_add_ps(_mm512_set1_ps(1.0f), erf_abs), neg,
                                             _mm512_set1_ps(1.0f), erf_abs);
        _mm512_mask_storeu_ps(a + i, m, _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x), one_plus));
    }
}

TARGET_AVX512 static void elu_task_avx512(void *arg, int64_t i0, int64_t i1)
{
    float *a = arg;
    for (int64_t i = i0; i < i1; i += 16) {
        __mmask16 m = i1 - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (i1 - i)) - 1);
        __m512 x = _mm512_maskz_loadu_ps(m, a + i);
        __mmask16 neg = _mm512_mask_cmp_ps_mask(m, x, _mm512_setzero_ps(), _CMP_LT_OQ);
        if (neg)
            _mm512_mask_storeu_ps(a + i, neg, expm1_neg_avx512(x));
    }
}
#else
#define OPS_X86 0
#endif

/* EnCodec runs ELU over whole 32 kHz signals: worth the worker pool. */
void mg_cpu_elu(mg_backend *be, mg_tensor *y)
{
#if OPS_X86
    if (((mg_cpu_backend *)be)->isa >= MG_CPU_ISA_AVX512) {
        mg_cpu_parallel(be, mg_tensor_numel(y), 1 << 14, elu_task_avx512, mg_cpu_f32(y));
        return;
    }
#endif
    mg_cpu_parallel(be, mg_tensor_numel(y), 1 << 14, elu_task, mg_cpu_f32(y));
}

void mg_cpu_copy_rows(mg_backend *be, mg_tensor *dst, int64_t dst_row, const mg_tensor *src,
                      int64_t src_row, int64_t n)
{
    int64_t cols = mg_tensor_cols(src);
    const float *from = mg_cpu_f32(src) + src_row * cols;
    if (dst->dtype == MG_DT_Q8ROW) {
        size_t rb = mg_dtype_row_bytes(MG_DT_Q8ROW, cols);
        for (int64_t r = 0; r < n; r++)
            mg_q8row_quantize(((mg_cpu_backend *)be)->isa, from + r * cols, cols,
                              (char *)dst->data + (size_t)(dst_row + r) * rb);
        return;
    }
    if (dst->dtype == MG_DT_BF16) {
        mg_bf16_row_from_f32(((mg_cpu_backend *)be)->isa, from,
                             (uint16_t *)dst->data + dst_row * cols, n * cols);
        return;
    }
    memcpy(mg_cpu_f32(dst) + dst_row * cols, from, (size_t)(n * cols) * sizeof(float));
}

typedef struct {
    mg_backend      *be;
    mg_tensor *const *dst;
    const int64_t   *dst_rows, *src_rows;
    const mg_tensor *src;
} scatter_ctx;

static void scatter_task(void *arg, int64_t i0, int64_t i1)
{
    const scatter_ctx *c = arg;
    for (int64_t i = i0; i < i1; i++)
        mg_cpu_copy_rows(c->be, c->dst[i], c->dst_rows[i], c->src, c->src_rows[i], 1);
}

/* Rows that are quantised (the Q8ROW attention caches: a batched step
 * appends 8 rows of 1024 to K and to V in every layer) go to both threads;
 * plain copies stay on the caller. */
void mg_cpu_copy_rows_scatter(mg_backend *be, mg_tensor *const *dst, const int64_t *dst_rows,
                              const mg_tensor *src, const int64_t *src_rows, int n)
{
    int quantise = n > 0 && dst[0]->dtype == MG_DT_Q8ROW;
    scatter_ctx c = {.be = be, .dst = dst, .dst_rows = dst_rows, .src_rows = src_rows, .src = src};
    mg_cpu_parallel(be, n, quantise ? mg_cpu_rows_min(mg_tensor_cols(src)) : n, scatter_task, &c);
}

