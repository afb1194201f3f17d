/* CPU reference ops: dense layers, norms, activations, attention. Written to
 * read like the math; loops are shaped so the compiler can vectorise them. */
#include "cpu/cpu.h"
#include "cpu/cpu_quant.h"

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
MG_CPU_ISA_CLONES
float mg_cpu_dot(const float *a, const float *b, int64_t n)
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

void mg_cpu_add(mg_backend *be, mg_tensor *y, const mg_tensor *x)
{
    float *a = mg_cpu_f32(y);
    const float *b = mg_cpu_f32(x);
    int64_t n = mg_tensor_numel(y);
    for (int64_t i = 0; i < n; i++)
        a[i] += b[i];
}

void mg_cpu_scale_rows(mg_backend *be, mg_tensor *y, const float *row_scale)
{
    int64_t rows = mg_tensor_rows(y), cols = mg_tensor_cols(y);
    float *a = mg_cpu_f32(y);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++)
            a[r * cols + j] *= row_scale[r];
}

void mg_cpu_rms_norm(mg_backend *be, mg_tensor *y, const mg_tensor *x, const mg_tensor *w,
                     float eps)
{
    int64_t rows = mg_tensor_rows(x), d = mg_tensor_cols(x);
    const float *in = mg_cpu_f32(x), *g = mg_cpu_f32(w);
    float *out = mg_cpu_f32(y);
    for (int64_t r = 0; r < rows; r++) {
        const float *xi = in + r * d;
        float ss = 0;
        for (int64_t j = 0; j < d; j++)
            ss += xi[j] * xi[j];
        float inv = 1.0f / sqrtf(ss / (float)d + eps);
        for (int64_t j = 0; j < d; j++)
            out[r * d + j] = g[j] * (xi[j] * inv);
    }
}

void mg_cpu_layer_norm(mg_backend *be, mg_tensor *y, const mg_tensor *x, const mg_tensor *w,
                       const mg_tensor *b, float eps)
{
    int64_t rows = mg_tensor_rows(x), d = mg_tensor_cols(x);
    const float *in = mg_cpu_f32(x), *g = mg_cpu_f32(w), *beta = mg_cpu_f32(b);
    float *out = mg_cpu_f32(y);
    for (int64_t r = 0; r < rows; r++) {
        const float *xi = in + r * d;
        float mean = 0, var = 0;
        for (int64_t j = 0; j < d; j++)
            mean += xi[j];
        mean /= (float)d;
        for (int64_t j = 0; j < d; j++)
            var += (xi[j] - mean) * (xi[j] - mean);
        float inv = 1.0f / sqrtf(var / (float)d + eps);
        for (int64_t j = 0; j < d; j++)
            out[r * d + j] = (xi[j] - mean) * inv * g[j] + beta[j];
    }
}

static void relu_task(void *arg, int64_t i0, int64_t i1)
{
    float *a = arg;
    for (int64_t i = i0; i < i1; i++)
        a[i] = a[i] > 0 ? a[i] : 0;
}

/* Elementwise ops run on the workers once there is enough to share. */
enum { ELEMWISE_MIN = 1 << 14 };

void mg_cpu_relu(mg_backend *be, mg_tensor *y)
{
    mg_cpu_parallel(be, mg_tensor_numel(y), ELEMWISE_MIN, relu_task, mg_cpu_f32(y));
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
#include <immintrin.h>
#define OPS_X86 1
#define TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))

/* expm1 for x <= 0, within ~2 ulp of expm1f: x = n·ln2 + r, |r| <= ln2/2,
 * expm1(x) = 2^n·expm1(r) + (2^n - 1) with a degree-7 Taylor polynomial for
 * expm1(r) (its truncation error is below float rounding), so small |x|
 * keep their relative precision (n = 0 gives expm1(r) itself). libm's
 * scalar expm1f was 15 % of EnCodec. */
/* expm1(r) for |r| <= ln2/2, and n with x = n·ln2 + r. */
TARGET_AVX512 static inline __m512 expm1_reduced_avx512(__m512 x, __m512 *n_out)
{
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145752f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860677e-06f), r);
    *n_out = n;
    __m512 p = _mm512_set1_ps(1.0f / 5040);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    return _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r);
}

TARGET_AVX512 static inline __m512 expm1_neg_avx512(__m512 x)
{
    x = _mm512_max_ps(x, _mm512_set1_ps(-88.0f)); /* expm1 is -1 in float below */
    __m512 n, p = expm1_reduced_avx512(x, &n);
    __m512 two_n = _mm512_scalef_ps(_mm512_set1_ps(1.0f), n);
    return _mm512_fmadd_ps(p, two_n, _mm512_sub_ps(two_n, _mm512_set1_ps(1.0f)));
}

/* exp(x) for x <= 0 (softmax), 0 below -104 as expf gives (masked keys). */
TARGET_AVX512 static inline __m512 exp_neg_avx512(__m512 x)
{
    x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
    __m512 n, p = expm1_reduced_avx512(x, &n);
    return _mm512_scalef_ps(_mm512_add_ps(p, _mm512_set1_ps(1.0f)), n);
}

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
    memcpy(mg_cpu_f32(dst) + dst_row * cols, mg_cpu_f32(src) + src_row * cols,
           (size_t)(n * cols) * sizeof(float));
}

/* y += a·x, cloned per ISA like the dot product (attention's value sums). */
MG_CPU_ISA_CLONES
static void axpy(float *y, float a, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += a * x[i];
}

typedef struct {
    float                *out;
    const float          *q;
    int                   q_per_seq, heads, dh;
    const mg_attn_seq    *seqs;
    const mg_attn_params *p;
    int                   max_keys;
} attn_ctx;

/* Masked scores get finfo(float32).min added, as the reference does: a fully
 * masked row then softmaxes to a uniform distribution, never 0/0. */
static void attn_task(void *arg, int64_t i0, int64_t i1)
{
    const attn_ctx *c = arg;
    int hd = c->heads * c->dh;
    float scores[c->max_keys > 0 ? c->max_keys : 1];
    for (int64_t task = i0; task < i1; task++) {
        int s = (int)(task / c->heads), h = (int)(task % c->heads);
        const mg_attn_seq *sq = &c->seqs[s];
        const float *kb = mg_cpu_f32(sq->k) + sq->k_row0 * hd + h * c->dh;
        const float *vb = mg_cpu_f32(sq->v) + sq->k_row0 * hd + h * c->dh;
        const float *bias = c->p->pos_bias ? mg_cpu_f32(c->p->pos_bias) : NULL;
        for (int i = 0; i < c->q_per_seq; i++) {
            int64_t row = (int64_t)s * c->q_per_seq + i;
            const float *qi = c->q + row * hd + h * c->dh;
            float mx = -FLT_MAX;
            for (int j = 0; j < sq->n_keys; j++) {
                float sc = mg_cpu_dot(qi, kb + (int64_t)j * hd, c->dh) * c->p->scale;
                if (bias)
                    sc += bias[((int64_t)h * c->q_per_seq + i) * sq->n_keys + j];
                int masked = (sq->key_mask && !sq->key_mask[j]) ||
                             (c->p->causal && j > sq->q_pos + i);
                if (masked)
                    sc += -FLT_MAX;
                scores[j] = sc;
                if (sc > mx)
                    mx = sc;
            }
            float sum = 0;
            for (int j = 0; j < sq->n_keys; j++) {
                scores[j] = expf(scores[j] - mx);
                sum += scores[j];
            }
            float *o = c->out + row * hd + h * c->dh;
            for (int d = 0; d < c->dh; d++)
                o[d] = 0;
            for (int j = 0; j < sq->n_keys; j++)
                axpy(o, scores[j] / sum, vb + (int64_t)j * hd, c->dh);
        }
    }
}

#if OPS_X86
/* attn_task for head_dim a multiple of 16 up to 256: the query and the
 * output row stay in registers across the keys (the generic loop called a
 * dot and an axpy per key and reloaded the output each time: a fifth of a
 * decode step), the softmax exponentials go 16 at a time. */
enum { ATTN_MAX_V = 16, ATTN_PF = 8 /* keys prefetched ahead */ };
TARGET_AVX512 static void attn_task_avx512(void *arg, int64_t i0, int64_t i1)
{
    const attn_ctx *c = arg;
    const int hd = c->heads * c->dh, nv = c->dh / 16;
    float scores[c->max_keys > 0 ? c->max_keys + 16 : 16];
    for (int64_t task = i0; task < i1; task++) {
        int s = (int)(task / c->heads), h = (int)(task % c->heads);
        const mg_attn_seq *sq = &c->seqs[s];
        const float *kb = mg_cpu_f32(sq->k) + sq->k_row0 * hd + h * c->dh;
        const float *vb = mg_cpu_f32(sq->v) + sq->k_row0 * hd + h * c->dh;
        const float *bias = c->p->pos_bias ? mg_cpu_f32(c->p->pos_bias) : NULL;
        for (int i = 0; i < c->q_per_seq; i++) {
            int64_t row = (int64_t)s * c->q_per_seq + i;
            const float *qi = c->q + row * hd + h * c->dh;
            __m512 qv[ATTN_MAX_V], ov[ATTN_MAX_V];
            for (int v = 0; v < nv; v++)
                qv[v] = _mm512_loadu_ps(qi + 16 * v);
            float mx = -FLT_MAX;
            for (int j = 0; j < sq->n_keys; j++) {
                const float *kr = kb + (int64_t)j * hd;
                /* rows are a page apart (hd·4 bytes): the hardware prefetcher
                 * does not cross pages, so fetch a few keys ahead */
                if (j + ATTN_PF < sq->n_keys)
                    for (int v = 0; v < nv; v++)
                        _mm_prefetch((const char *)(kr + ATTN_PF * hd + 16 * v), _MM_HINT_T0);
                __m512 acc = _mm512_mul_ps(qv[0], _mm512_loadu_ps(kr));
                for (int v = 1; v < nv; v++)
                    acc = _mm512_fmadd_ps(qv[v], _mm512_loadu_ps(kr + 16 * v), acc);
                float sc = _mm512_reduce_add_ps(acc) * c->p->scale;
                if (bias)
                    sc += bias[((int64_t)h * c->q_per_seq + i) * sq->n_keys + j];
                int masked = (sq->key_mask && !sq->key_mask[j]) ||
                             (c->p->causal && j > sq->q_pos + i);
                if (masked)
                    sc += -FLT_MAX;
                scores[j] = sc;
                if (sc > mx)
                    mx = sc;
            }
            __m512 sumv = _mm512_setzero_ps(), mxv = _mm512_set1_ps(mx);
            for (int j = 0; j < sq->n_keys; j += 16) {
                int left = sq->n_keys - j;
                __mmask16 m = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
                __m512 e = exp_neg_avx512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, scores + j), mxv));
                e = _mm512_maskz_mov_ps(m, e);
                _mm512_storeu_ps(scores + j, e);
                sumv = _mm512_add_ps(sumv, e);
            }
            for (int v = 0; v < nv; v++)
                ov[v] = _mm512_setzero_ps();
            for (int j = 0; j < sq->n_keys; j++) {
                const float *vr = vb + (int64_t)j * hd;
                if (j + ATTN_PF < sq->n_keys)
                    for (int v = 0; v < nv; v++)
                        _mm_prefetch((const char *)(vr + ATTN_PF * hd + 16 * v), _MM_HINT_T0);
                __m512 pj = _mm512_set1_ps(scores[j]);
                for (int v = 0; v < nv; v++)
                    ov[v] = _mm512_fmadd_ps(pj, _mm512_loadu_ps(vr + 16 * v), ov[v]);
            }
            __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sumv));
            float *o = c->out + row * hd + h * c->dh;
            for (int v = 0; v < nv; v++)
                _mm512_storeu_ps(o + 16 * v, _mm512_mul_ps(ov[v], inv));
        }
    }
}
#endif

void mg_cpu_attention(mg_backend *be, mg_tensor *out, const mg_tensor *q, int n_seq,
                      int q_per_seq, const mg_attn_seq *seqs, const mg_attn_params *p)
{
    attn_ctx c = {
        .out = mg_cpu_f32(out), .q = mg_cpu_f32(q), .q_per_seq = q_per_seq,
        .heads = p->heads, .dh = p->head_dim, .seqs = seqs, .p = p,
    };
    for (int s = 0; s < n_seq; s++)
        if (seqs[s].n_keys > c.max_keys)
            c.max_keys = seqs[s].n_keys;
#if OPS_X86
    if (((mg_cpu_backend *)be)->isa >= MG_CPU_ISA_AVX512 && p->head_dim % 16 == 0 &&
        p->head_dim / 16 <= ATTN_MAX_V) {
        mg_cpu_parallel(be, (int64_t)n_seq * p->heads, 1, attn_task_avx512, &c);
        return;
    }
#endif
    mg_cpu_parallel(be, (int64_t)n_seq * p->heads, 1, attn_task, &c);
}
