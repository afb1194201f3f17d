/* Attention over cached keys/values: softmax(q·kᵀ·scale + bias + mask)·v per
 * head, for every query of every sequence. K/V rows are heads·head_dim wide
 * and stored as F32, BF16 or Q8ROW (the attention caches of compressed
 * models, see mg_dec_state_init).
 *
 * Masked scores get finfo(float32).min added, as the reference does: a fully
 * masked row then softmaxes to a uniform distribution, never 0/0. */
#include "cpu/cpu_impl.h"
#include "cpu/cpu_quant_impl.h"
#include "io/safetensors.h"

#include <float.h>
#include <math.h>
#include <string.h>

typedef struct {
    float                *out;
    const float          *q;
    int                   q_per_seq, heads, dh;
    const mg_attn_seq    *seqs;
    const mg_attn_params *p;
    int                   max_keys;
    int                   splits; /* tasks per query row (blocked kernel: head-group ranges) */
    mg_cpu_isa            isa;    /* the backend's kernel level */
} attn_ctx;

/* y += a·x, per kernel level like the dot product (attention's value sums). */
MG_CPU_BODY void axpy_body(float *y, float a, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += a * x[i];
}
MG_CPU_KERNEL_VOID(axpy, (float *y, float a, const float *x, int64_t n), (y, a, x, n))

/* Row j's n values from column col of a K/V tensor as floats: in place for
 * F32, converted into tmp for BF16 and Q8ROW. */
static const float *kv_row(const mg_tensor *t, int64_t row, int64_t col, int n, float *tmp)
{
    int64_t cols = mg_tensor_cols(t);
    if (t->dtype == MG_DT_Q8ROW) {
        mg_q8row_dequantize((const char *)t->data + row * (int64_t)mg_dtype_row_bytes(t->dtype, cols),
                            cols, col, n, tmp);
        return tmp;
    }
    if (t->dtype != MG_DT_BF16)
        return mg_cpu_f32(t) + row * cols + col;
    const uint16_t *h = (const uint16_t *)t->data + row * cols + col;
    for (int d = 0; d < n; d++)
        tmp[d] = mg_bf16_to_f32(h[d]);
    return tmp;
}

static void attn_task(void *arg, int64_t i0, int64_t i1)
{
    const attn_ctx *c = arg;
    float scores[c->max_keys > 0 ? c->max_keys : 1], tmp[c->dh];
    const mg_cpu_dot_fn dot = mg_cpu_dot_for(c->isa);
    void (*const axpy)(float *, float, const float *, int64_t) = axpy_for(c->isa);
    for (int64_t task = i0; task < i1; task++) {
        int s = (int)(task / c->heads), h = (int)(task % c->heads);
        const mg_attn_seq *sq = &c->seqs[s];
        int64_t hd = (int64_t)c->heads * c->dh, col = (int64_t)h * c->dh;
        const float *bias = c->p->pos_bias ? mg_cpu_f32(c->p->pos_bias) : NULL;
        for (int i = 0; i < c->q_per_seq; i++) {
            int64_t row = (int64_t)s * c->q_per_seq + i;
            const float *qi = c->q + row * hd + col;
            float mx = -FLT_MAX;
            for (int j = 0; j < sq->n_keys; j++) {
                const float *kr = kv_row(sq->k, sq->k_row0 + j, col, c->dh, tmp);
                float sc = dot(qi, kr, c->dh) * c->p->scale;
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
            float *o = c->out + row * hd + col;
            for (int d = 0; d < c->dh; d++)
                o[d] = 0;
            for (int j = 0; j < sq->n_keys; j++)
                axpy(o, scores[j] / sum, kv_row(sq->v, sq->k_row0 + j, col, c->dh, tmp), c->dh);
        }
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#define ATTN_X86 1
#include "cpu/cpu_exp_avx512.h"
#define INLINE static inline __attribute__((always_inline))
#define TARGET_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma")))

/* attn_task for F32 K/V with head_dim a multiple of 16 up to 256: the query
 * and the output row stay in registers across the keys, the softmax
 * exponentials go 16 at a time. The blocked kernel below covers the decoder
 * shapes; this one the rest. */
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
            /* no keys: a zero output, as the generic kernel gives (not 0/0) */
            float total = _mm512_reduce_add_ps(sumv);
            __m512 inv = _mm512_set1_ps(sq->n_keys > 0 ? 1.0f / total : 0.0f);
            float *o = c->out + row * hd + h * c->dh;
            for (int v = 0; v < nv; v++)
                _mm512_storeu_ps(o + 16 * v, _mm512_mul_ps(ov[v], inv));
        }
    }
}

/* ------------------------------------------------------------- row-wise
 * The decoder's shape: heads a multiple of 4, head_dim <= 64. A task is one
 * query row and a range of head groups (4 heads); it reads each key/value
 * row once, front to back, for all its heads: one sequential stream. The
 * per-head loop above read a 256-byte slice of each row (rows are
 * heads·head_dim floats, a page for MusicGen), a page-strided pattern the
 * prefetchers do not follow (~10 GB/s on one core against ~16 here; key
 * blocks walked head group by head group, with software prefetch, were
 * slower than plain rows). The 4 heads' dot products are summed in one
 * shuffle tree, scores are kept key-major ([key][head]) so the softmax runs
 * over all heads at once. Every head's arithmetic is the same whatever the
 * task split, so results do not depend on the thread count. */
enum { ATTN_GROUP = 4, ATTN_SCORE_CAP = 1 << 16 /* floats of scores on the stack */ };

/* Bytes [off, off + len) of cache row j + ATTN_PF_ROWS fetched while row j
 * computes. Q8ROW rows (1088 B for MusicGen, scales at the end read first)
 * stalled on the first touch of every row: 8 rows x 250 keys x 24 layers on
 * two cores 4.5-4.7 -> 3.4-3.6 ms (2, 4 or 8 rows ahead alike). Whole BF16
 * and F32 rows stream well without it (it cost 3-10 %), but a row split
 * over threads reads a slice of each row: 1 row, 2 threads, 250 keys x 24
 * layers BF16 0.98 -> 0.58 ms. */
enum { ATTN_PF_ROWS = 4 };
INLINE void prefetch_row_ahead(const void *base, int j, int nk, int64_t row_bytes, int64_t off,
                               int64_t len)
{
    if (j + ATTN_PF_ROWS >= nk)
        return;
    const char *r = (const char *)base + (int64_t)(j + ATTN_PF_ROWS) * row_bytes + off;
    for (int64_t b = 0; b < len; b += 64)
        _mm_prefetch(r + b, _MM_HINT_T0);
}

TARGET_AVX512 INLINE __m512 kv_load(const void *base, int64_t off, const int bf16)
{
    if (bf16)
        return _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)((const uint16_t *)base + off))), 16));
    return _mm512_loadu_ps((const float *)base + off);
}

/* lane h (0..3) of the result = the sum of the 16 lanes of a_h */
TARGET_AVX512 INLINE __m128 hsum4(__m512 a0, __m512 a1, __m512 a2, __m512 a3)
{
    __m512 a01 = _mm512_add_ps(_mm512_shuffle_f32x4(a0, a1, 0x44), _mm512_shuffle_f32x4(a0, a1, 0xEE));
    __m512 a23 = _mm512_add_ps(_mm512_shuffle_f32x4(a2, a3, 0x44), _mm512_shuffle_f32x4(a2, a3, 0xEE));
    __m512 t = _mm512_add_ps(_mm512_shuffle_f32x4(a01, a23, 0x88), _mm512_shuffle_f32x4(a01, a23, 0xDD));
    t = _mm512_add_ps(t, _mm512_permute_ps(t, 0x4E));
    t = _mm512_add_ps(t, _mm512_permute_ps(t, 0xB1));
    return _mm512_castps512_ps128(
        _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), t));
}

/* How many leading keys query i of sq can give weight to: past its own
 * position a causal query sees only masked keys, whose scores get -FLT_MAX
 * and softmax to exactly 0 (exp_neg_avx512 is 0 below -104), adding exact
 * zeros to the sums: skipping them changes no bit and halves a prefill's
 * work. Unless every key up to its position is masked too: then the
 * reference's uniform distribution spans all the keys. */
static inline int keys_seen(const mg_attn_seq *sq, const mg_attn_params *p, int i)
{
    int64_t last = (int64_t)sq->q_pos + i;
    if (!p->causal || last + 1 >= sq->n_keys)
        return sq->n_keys;
    if (sq->key_mask) {
        int any = 0;
        for (int64_t j = 0; j <= last && !any; j++)
            any = sq->key_mask[j] != 0;
        if (!any)
            return sq->n_keys;
    }
    return last < 0 ? sq->n_keys : (int)(last + 1);
}

/* Task t of a row-wise kernel: query row `row` (query i of sequence sq),
 * heads [h0, h1) (the row's head groups split c->splits ways). */
typedef struct {
    int64_t            row;
    int                i, h0, h1;
    const mg_attn_seq *sq;
} row_task;

static inline row_task row_task_of(const attn_ctx *c, int64_t task)
{
    const int groups = c->heads / ATTN_GROUP, sp = (int)(task % c->splits);
    row_task t = {.row = task / c->splits};
    t.i = (int)(t.row % c->q_per_seq);
    t.sq = &c->seqs[t.row / c->q_per_seq];
    t.h0 = sp * groups / c->splits * ATTN_GROUP;
    t.h1 = (sp + 1) * groups / c->splits * ATTN_GROUP;
    return t;
}

/* Softmax over the keys of scores kept [key][HS], every head lane at once
 * (lanes outside heads [h0, h1) masked off): sc becomes the exponentials,
 * inv[h] = 1 / Σ_j of them. */
TARGET_AVX512 INLINE void softmax_keys(float *sc, int nk, int HS, int h0, int h1, float *inv)
{
    __m512 mx[4], sum[4];
    __mmask16 lanes[4];
    for (int z = 0; z < HS / 16; z++) {
        uint32_t m = 0;
        for (int b = 0; b < 16; b++)
            if (16 * z + b >= h0 && 16 * z + b < h1)
                m |= 1u << b;
        lanes[z] = (__mmask16)m;
        mx[z] = _mm512_set1_ps(-FLT_MAX);
        sum[z] = _mm512_setzero_ps();
    }
    for (int j = 0; j < nk; j++)
        for (int z = 0; z < HS / 16; z++)
            mx[z] = _mm512_max_ps(mx[z], _mm512_maskz_loadu_ps(lanes[z], sc + (int64_t)j * HS + 16 * z));
    for (int j = 0; j < nk; j++)
        for (int z = 0; z < HS / 16; z++) {
            float *sj = sc + (int64_t)j * HS + 16 * z;
            __m512 e = exp_neg_avx512(_mm512_sub_ps(_mm512_maskz_loadu_ps(lanes[z], sj), mx[z]));
            e = _mm512_maskz_mov_ps(lanes[z], e);
            _mm512_mask_storeu_ps(sj, lanes[z], e);
            sum[z] = _mm512_add_ps(sum[z], e);
        }
    for (int z = 0; z < HS / 16; z++)
        _mm512_storeu_ps(inv + 16 * z, _mm512_div_ps(_mm512_set1_ps(1.0f), sum[z]));
}

/* o_h *= inv[h] for the heads [h0, h1) of an output row */
TARGET_AVX512 INLINE void normalise(float *o, int dh, int h0, int h1, const float *inv)
{
    for (int h = h0; h < h1; h++)
        for (int v = 0; v < dh / 16; v++)
            _mm512_storeu_ps(o + h * dh + 16 * v,
                             _mm512_mul_ps(_mm512_loadu_ps(o + h * dh + 16 * v), _mm512_set1_ps(inv[h])));
}

TARGET_AVX512 INLINE void attn_rows(const attn_ctx *c, int64_t task, float *sc, const int nv,
                                    const int bf16)
{
    const int H = c->heads, dh = c->dh, hd = H * dh, HS = (H + 15) / 16 * 16;
    const row_task t = row_task_of(c, task);
    const int64_t row = t.row;
    const int i = t.i, g0 = t.h0 / ATTN_GROUP, g1 = t.h1 / ATTN_GROUP;
    const mg_attn_seq *sq = t.sq;
    const int nk = keys_seen(sq, c->p, i), nk_all = sq->n_keys;
    const int64_t row_bytes = (int64_t)hd * (bf16 ? 2 : 4), es = bf16 ? 2 : 4;
    const int64_t slice0 = (int64_t)g0 * ATTN_GROUP * dh * es, slice_len = (int64_t)(g1 - g0) * ATTN_GROUP * dh * es;
    const char *kb = (const char *)sq->k->data + sq->k_row0 * row_bytes;
    const char *vb = (const char *)sq->v->data + sq->k_row0 * row_bytes;
    const float *qi = c->q + row * hd, *bias = c->p->pos_bias ? mg_cpu_f32(c->p->pos_bias) : NULL;
    const __m128 scale = _mm_set1_ps(c->p->scale), masked_add = _mm_set1_ps(-FLT_MAX);
    float *o = c->out + row * hd;
    if (nk == 0) { /* no keys: a zero output, as the generic kernel gives */
        memset(o + t.h0 * dh, 0, (size_t)(t.h1 - t.h0) * dh * sizeof *o);
        return;
    }

    /* scores[j][h] = q_h·k_jh·scale (+ bias) (+ mask) */
    for (int j = 0; j < nk; j++) {
        const void *kr = kb + (int64_t)j * row_bytes;
        if (c->splits > 1)
            prefetch_row_ahead(kb, j, nk, row_bytes, slice0, slice_len);
        int masked = (sq->key_mask && !sq->key_mask[j]) || (c->p->causal && j > sq->q_pos + i);
        for (int g = g0; g < g1; g++) {
            __m512 acc[ATTN_GROUP];
            for (int h = 0; h < ATTN_GROUP; h++) {
                int64_t base = (int64_t)(g * ATTN_GROUP + h) * dh;
                acc[h] = _mm512_mul_ps(_mm512_loadu_ps(qi + base), kv_load(kr, base, bf16));
                for (int v = 1; v < nv; v++)
                    acc[h] = _mm512_fmadd_ps(_mm512_loadu_ps(qi + base + 16 * v),
                                             kv_load(kr, base + 16 * v, bf16), acc[h]);
            }
            __m128 r = _mm_mul_ps(hsum4(acc[0], acc[1], acc[2], acc[3]), scale);
            if (bias) {
                const float *b = bias + ((int64_t)g * ATTN_GROUP * c->q_per_seq + i) * nk_all + j;
                int64_t hs = (int64_t)c->q_per_seq * nk_all;
                r = _mm_add_ps(r, _mm_setr_ps(b[0], b[hs], b[2 * hs], b[3 * hs]));
            }
            if (masked)
                r = _mm_add_ps(r, masked_add);
            _mm_storeu_ps(sc + (int64_t)j * HS + g * ATTN_GROUP, r);
        }
    }

    float inv[64];
    softmax_keys(sc, nk, HS, g0 * ATTN_GROUP, g1 * ATTN_GROUP, inv);
    /* o_h = Σ_j e[j][h]·v_jh / Σ_j e[j][h], accumulated in o (L1) */
    for (int h = g0 * ATTN_GROUP; h < g1 * ATTN_GROUP; h++)
        memset(o + h * dh, 0, (size_t)dh * sizeof *o);
    for (int j = 0; j < nk; j++) {
        const void *vr = vb + (int64_t)j * row_bytes;
        if (c->splits > 1)
            prefetch_row_ahead(vb, j, nk, row_bytes, slice0, slice_len);
        for (int h = g0 * ATTN_GROUP; h < g1 * ATTN_GROUP; h++) {
            __m512 pj = _mm512_set1_ps(sc[(int64_t)j * HS + h]);
            for (int v = 0; v < nv; v++) {
                float *oh = o + h * dh + 16 * v;
                _mm512_storeu_ps(oh, _mm512_fmadd_ps(pj, kv_load(vr, (int64_t)h * dh + 16 * v, bf16),
                                                     _mm512_loadu_ps(oh)));
            }
        }
    }
    normalise(o, dh, g0 * ATTN_GROUP, g1 * ATTN_GROUP, inv);
}

#define ROWS_TASK(name, nv, bf16)                                                  \
    TARGET_AVX512 static void name(void *arg, int64_t i0, int64_t i1)                 \
    {                                                                                 \
        const attn_ctx *c = arg;                                                      \
        float sc[(int64_t)(c->max_keys > 0 ? c->max_keys : 1) * ((c->heads + 15) / 16 * 16)]; \
        for (int64_t t = i0; t < i1; t++)                                             \
            attn_rows(c, t, sc, nv, bf16);                                         \
    }
ROWS_TASK(attn_rows_f32_1, 1, 0)
ROWS_TASK(attn_rows_f32_2, 2, 0)
ROWS_TASK(attn_rows_f32_3, 3, 0)
ROWS_TASK(attn_rows_f32_4, 4, 0)
ROWS_TASK(attn_rows_bf16_1, 1, 1)
ROWS_TASK(attn_rows_bf16_2, 2, 1)
ROWS_TASK(attn_rows_bf16_3, 3, 1)
ROWS_TASK(attn_rows_bf16_4, 4, 1)

/* Q8ROW keys and values with VNNI, head_dim 64 (one Q8ROW block per head):
 * half the bytes of BF16, which a batched step is bound by. The query row
 * is quantised per head as cache rows are and made signed (q), so a
 * key-head score is one vpdpbusd of the stored u = k + 128 with q:
 * Σu·q = Σk·q + 128·Σq, the second term taken off once per head (integer
 * sums below 2^24: exact in float), then times the two scales and the
 * softmax scale. Values: u ^ 0x80 is the signed quant, widened to float,
 * times p·scale per key-head. */
enum { ATTN_Q8_DH = 64 };

TARGET_VNNI INLINE void attn_row_q8(const attn_ctx *c, int64_t task, float *sc)
{
    enum { D = ATTN_Q8_DH };
    const int H = c->heads, hd = H * D, HS = (H + 15) / 16 * 16;
    const row_task t = row_task_of(c, task);
    const int64_t row = t.row;
    const int i = t.i, h0 = t.h0, h1 = t.h1, nh = h1 - h0;
    const int g0 = h0 / ATTN_GROUP, g1 = h1 / ATTN_GROUP;
    const mg_attn_seq *sq = t.sq;
    const int nk = keys_seen(sq, c->p, i), nk_all = sq->n_keys;
    const int64_t row_bytes = (int64_t)mg_dtype_row_bytes(MG_DT_Q8ROW, hd);
    const uint8_t *kb = (const uint8_t *)sq->k->data + sq->k_row0 * row_bytes;
    const uint8_t *vb = (const uint8_t *)sq->v->data + sq->k_row0 * row_bytes;
    const float *qi = c->q + row * hd, *bias = c->p->pos_bias ? mg_cpu_f32(c->p->pos_bias) : NULL;
    const __m128 masked_add = _mm_set1_ps(-FLT_MAX);
    float *o = c->out + row * hd;
    if (nk == 0) {
        memset(o + h0 * D, 0, (size_t)nh * D * sizeof *o);
        return;
    }

    /* the query's heads [h0, h1): signed quants, 128·Σq and scale·softmax scale */
    /* (a union: the scales are floats after the quants) */
    _Alignas(64) union {
        uint8_t b[64 * D + 64 * sizeof(float)];
        float   f[64 * D / sizeof(float) + 64];
    } qbuf;
    uint8_t *qrow = qbuf.b;
    mg_q8row_quantize(c->isa, qi + h0 * D, nh * D, qrow);
    const float *qscale = mg_q8row_scales(qrow, nh * D);
    float corr[64], qs[64];
    for (int h = 0; h < nh; h++) {
        __m512i q = _mm512_xor_si512(_mm512_loadu_si512(qrow + h * D), _mm512_set1_epi8((char)0x80));
        _mm512_storeu_si512(qrow + h * D, q);
        corr[h] = 128.0f * (float)_mm512_reduce_add_epi32(_mm512_dpbusd_epi32(
                      _mm512_setzero_si512(), _mm512_set1_epi8(1), q));
        qs[h] = qscale[h] * c->p->scale;
    }

    for (int j = 0; j < nk; j++) {
        const uint8_t *kr = kb + (int64_t)j * row_bytes;
        const float *ks = (const float *)(kr + hd);
        prefetch_row_ahead(kb, j, nk, row_bytes, 0, row_bytes);
        int masked = (sq->key_mask && !sq->key_mask[j]) || (c->p->causal && j > sq->q_pos + i);
        for (int g = g0; g < g1; g++) {
            const int hg = g * ATTN_GROUP;
            __m512 acc[ATTN_GROUP];
            for (int h = 0; h < ATTN_GROUP; h++)
                acc[h] = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(
                    _mm512_setzero_si512(), _mm512_loadu_si512(kr + (hg + h) * D),
                    _mm512_loadu_si512(qrow + (hg + h - h0) * D)));
            __m128 r = _mm_sub_ps(hsum4(acc[0], acc[1], acc[2], acc[3]), _mm_loadu_ps(corr + hg - h0));
            r = _mm_mul_ps(r, _mm_mul_ps(_mm_loadu_ps(qs + hg - h0), _mm_loadu_ps(ks + hg)));
            if (bias) {
                const float *b = bias + ((int64_t)hg * c->q_per_seq + i) * nk_all + j;
                int64_t bs = (int64_t)c->q_per_seq * nk_all;
                r = _mm_add_ps(r, _mm_setr_ps(b[0], b[bs], b[2 * bs], b[3 * bs]));
            }
            if (masked)
                r = _mm_add_ps(r, masked_add);
            _mm_storeu_ps(sc + (int64_t)j * HS + hg, r);
        }
    }

    float inv[64];
    softmax_keys(sc, nk, HS, h0, h1, inv);

    memset(o + h0 * D, 0, (size_t)nh * D * sizeof *o);
    const __m128i flip = _mm_set1_epi8((char)0x80);
    for (int j = 0; j < nk; j++) {
        const uint8_t *vr = vb + (int64_t)j * row_bytes;
        const float *vs = (const float *)(vr + hd);
        prefetch_row_ahead(vb, j, nk, row_bytes, 0, row_bytes);
        for (int h = h0; h < h1; h++) {
            __m512 pj = _mm512_set1_ps(sc[(int64_t)j * HS + h] * vs[h]);
            for (int v = 0; v < D / 16; v++) {
                float *oh = o + h * D + 16 * v;
                __m128i u = _mm_loadu_si128((const __m128i *)(vr + h * D + 16 * v));
                __m512 x = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_xor_si128(u, flip)));
                _mm512_storeu_ps(oh, _mm512_fmadd_ps(pj, x, _mm512_loadu_ps(oh)));
            }
        }
    }
    normalise(o, D, h0, h1, inv);
}

TARGET_VNNI static void attn_rows_q8(void *arg, int64_t i0, int64_t i1)
{
    const attn_ctx *c = arg;
    float sc[(int64_t)(c->max_keys > 0 ? c->max_keys : 1) * ((c->heads + 15) / 16 * 16)];
    for (int64_t t = i0; t < i1; t++)
        attn_row_q8(c, t, sc);
}

/* Many queries per sequence (a prefill: a long-form window's prompt is
 * ~1150 positions), Q8ROW, VNNI, head_dim 64. attn_row_q8 reads the whole
 * cache once per query and adds each value row into the output row in
 * memory: a 1150-query prompt spent longer in it than in all its matrix
 * products. A task here is ATTN_QT consecutive queries of one sequence and
 * one head group: each key and value slice is loaded once for the tile and
 * converted once, and a head's output rows stay in registers across the
 * keys. Each (query, head) sees the same operations in the same order as in
 * attn_row_q8 (scores, the max, the exponentials, the sums in key order, the
 * value sums key by key; keys a query does not see add exact zeros), so the
 * result is the row kernel's bit for bit, whatever the tiling. */
enum { ATTN_QT = 4 };

/* scores of one query, [key][ATTN_GROUP] -> exponentials (zero from n to
 * n_all), inv[h] = 1 / Σ_j e[j][h] */
TARGET_AVX512 INLINE void softmax_group(float *sc, int n, int n_all, float *inv)
{
    __m128 mx = _mm_set1_ps(-FLT_MAX), sum = _mm_setzero_ps();
    for (int j = 0; j < n; j++)
        mx = _mm_max_ps(mx, _mm_loadu_ps(sc + 4 * j));
    const __m512 mx4 = _mm512_broadcast_f32x4(mx);
    for (int j = 0; j < n; j += 4) {
        __mmask16 m = n - j >= 4 ? (__mmask16)0xffff : (__mmask16)((1u << (4 * (n - j))) - 1);
        __m512 e = exp_neg_avx512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, sc + 4 * j), mx4));
        _mm512_mask_storeu_ps(sc + 4 * j, m, e);
    }
    for (int j = 0; j < n; j++)
        sum = _mm_add_ps(sum, _mm_loadu_ps(sc + 4 * j));
    _mm_storeu_ps(inv, _mm_div_ps(_mm_set1_ps(1.0f), sum));
    memset(sc + 4 * (int64_t)n, 0, (size_t)(n_all - n) * 4 * sizeof *sc);
}

TARGET_VNNI INLINE void attn_tile_q8(const attn_ctx *c, int64_t task, float *sc)
{
    enum { D = ATTN_Q8_DH, G = ATTN_GROUP, QT = ATTN_QT };
    const int H = c->heads, hd = H * D, groups = H / G, tiles = (c->q_per_seq + QT - 1) / QT;
    /* the last tiles see the most keys: hand them out first */
    const int g = (int)(task % groups), tile = tiles - 1 - (int)(task / groups % tiles);
    const mg_attn_seq *sq = &c->seqs[task / groups / tiles];
    const int64_t row0 = task / groups / tiles * c->q_per_seq + (int64_t)tile * QT;
    const int i0 = tile * QT, nq = c->q_per_seq - i0 < QT ? c->q_per_seq - i0 : QT, hg = g * G;
    const int nk_all = sq->n_keys;
    const int64_t row_bytes = (int64_t)mg_dtype_row_bytes(MG_DT_Q8ROW, hd);
    const uint8_t *kb = (const uint8_t *)sq->k->data + sq->k_row0 * row_bytes;
    const uint8_t *vb = (const uint8_t *)sq->v->data + sq->k_row0 * row_bytes;
    const float *bias = c->p->pos_bias ? mg_cpu_f32(c->p->pos_bias) : NULL;
    if (nk_all == 0) {
        for (int q = 0; q < nq; q++)
            memset(c->out + (row0 + q) * hd + hg * D, 0, (size_t)G * D * sizeof(float));
        return;
    }
    int nk[QT] = {0}, nk_max = 0;
    for (int q = 0; q < nq; q++) {
        nk[q] = keys_seen(sq, c->p, i0 + q);
        nk_max = nk[q] > nk_max ? nk[q] : nk_max;
    }

    /* the queries' heads: signed quants, 128·Σq and scale·softmax scale */
    _Alignas(64) uint8_t qq[QT][G * D];
    float corr[QT][G], qs[QT][G], inv[QT][G];
    memset(qq, 0, sizeof qq);
    for (int q = 0; q < nq; q++) {
        _Alignas(64) union {
            uint8_t b[G * D + G * sizeof(float)];
            float   f[G * D / sizeof(float) + G];
        } qbuf;
        mg_q8row_quantize(c->isa, c->q + (row0 + q) * hd + hg * D, G * D, qbuf.b);
        const float *qscale = mg_q8row_scales(qbuf.b, G * D);
        for (int h = 0; h < G; h++) {
            __m512i v = _mm512_xor_si512(_mm512_loadu_si512(qbuf.b + h * D), _mm512_set1_epi8((char)0x80));
            _mm512_storeu_si512(qq[q] + h * D, v);
            corr[q][h] = 128.0f * (float)_mm512_reduce_add_epi32(_mm512_dpbusd_epi32(
                             _mm512_setzero_si512(), _mm512_set1_epi8(1), v));
            qs[q][h] = qscale[h] * c->p->scale;
        }
    }

    /* scores[q][j][h], as attn_row_q8 computes them */
    const __m128 masked_add = _mm_set1_ps(-FLT_MAX);
    for (int j = 0; j < nk_max; j++) {
        const uint8_t *kr = kb + (int64_t)j * row_bytes;
        prefetch_row_ahead(kb, j, nk_max, row_bytes, (int64_t)hg * D, G * D);
        prefetch_row_ahead(kb, j, nk_max, row_bytes, hd + hg * (int64_t)sizeof(float), G * sizeof(float));
        __m512i kv[G];
        _Pragma("GCC unroll 4") for (int h = 0; h < G; h++)
            kv[h] = _mm512_loadu_si512(kr + (hg + h) * D);
        const __m128 ks = _mm_loadu_ps((const float *)(kr + hd) + hg);
        const int key_masked = sq->key_mask && !sq->key_mask[j];
        for (int q = 0; q < nq; q++) {
            if (j >= nk[q])
                continue;
            const int i = i0 + q;
            __m512 acc[G];
            _Pragma("GCC unroll 4") for (int h = 0; h < G; h++)
                acc[h] = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(
                    _mm512_setzero_si512(), kv[h], _mm512_load_si512(qq[q] + h * D)));
            __m128 r = _mm_sub_ps(hsum4(acc[0], acc[1], acc[2], acc[3]), _mm_loadu_ps(corr[q]));
            r = _mm_mul_ps(r, _mm_mul_ps(_mm_loadu_ps(qs[q]), ks));
            if (bias) {
                const float *b = bias + ((int64_t)hg * c->q_per_seq + i) * nk_all + j;
                int64_t bs = (int64_t)c->q_per_seq * nk_all;
                r = _mm_add_ps(r, _mm_setr_ps(b[0], b[bs], b[2 * bs], b[3 * bs]));
            }
            if (key_masked || (c->p->causal && j > sq->q_pos + i))
                r = _mm_add_ps(r, masked_add);
            _mm_storeu_ps(sc + ((int64_t)q * nk_max + j) * G, r);
        }
    }
    for (int q = 0; q < nq; q++)
        softmax_group(sc + (int64_t)q * nk_max * G, nk[q], nk_max, inv[q]);
    for (int q = nq; q < QT; q++) /* absent queries weigh nothing */
        memset(sc + (int64_t)q * nk_max * G, 0, (size_t)nk_max * G * sizeof *sc);

    /* o = Σ_j e[j][h]·v_jh key by key, each head's tile in registers */
    const __m128i flip = _mm_set1_epi8((char)0x80);
    for (int h = 0; h < G; h++) {
        __m512 o[QT][D / 16];
        _Pragma("GCC unroll 4") for (int q = 0; q < QT; q++)
            _Pragma("GCC unroll 4") for (int v = 0; v < D / 16; v++)
                o[q][v] = _mm512_setzero_ps();
        const int64_t col = (int64_t)(hg + h) * D;
        for (int j = 0; j < nk_max; j++) {
            const uint8_t *vr = vb + (int64_t)j * row_bytes;
            prefetch_row_ahead(vb, j, nk_max, row_bytes, col, D);
            const float vs = ((const float *)(vr + hd))[hg + h];
            __m512 x[D / 16];
            _Pragma("GCC unroll 4") for (int v = 0; v < D / 16; v++)
                x[v] = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                    _mm_xor_si128(_mm_loadu_si128((const __m128i *)(vr + col + 16 * v)), flip)));
            _Pragma("GCC unroll 4") for (int q = 0; q < QT; q++) {
                __m512 pj = _mm512_set1_ps(sc[((int64_t)q * nk_max + j) * G + h] * vs);
                _Pragma("GCC unroll 4") for (int v = 0; v < D / 16; v++)
                    o[q][v] = _mm512_fmadd_ps(pj, x[v], o[q][v]);
            }
        }
        _Pragma("GCC unroll 4") for (int q = 0; q < QT; q++)
            _Pragma("GCC unroll 4") for (int v = 0; v < D / 16; v++)
                if (q < nq)
                    _mm512_storeu_ps(c->out + (row0 + q) * hd + col + 16 * v,
                                 _mm512_mul_ps(o[q][v], _mm512_set1_ps(inv[q][h])));
    }
}

TARGET_VNNI static void attn_tiles_q8(void *arg, int64_t t0, int64_t t1)
{
    const attn_ctx *c = arg;
    float sc[(int64_t)ATTN_QT * (c->max_keys > 0 ? c->max_keys : 1) * ATTN_GROUP];
    for (int64_t t = t0; t < t1; t++)
        attn_tile_q8(c, t, sc);
}

/* Whether the tiled kernel takes this call: a Q8ROW call the row kernel
 * takes, with enough queries per sequence to fill tiles */
static int tiles_fit(const attn_ctx *c, mg_dtype dt, mg_cpu_isa isa)
{
    return dt == MG_DT_Q8ROW && isa >= MG_CPU_ISA_AVX512_VNNI && c->dh == ATTN_Q8_DH &&
           c->heads % ATTN_GROUP == 0 && c->q_per_seq >= ATTN_QT &&
           (int64_t)ATTN_QT * ATTN_GROUP * (c->max_keys > 0 ? c->max_keys : 1) <= ATTN_SCORE_CAP;
}

/* Whether the row-wise kernels take this shape (their stack buffers) */
static int rows_fit(int heads, int dh, int max_keys)
{
    int64_t hs = (heads + 15) / 16 * 16;
    return heads % ATTN_GROUP == 0 && heads <= 64 && dh % 16 == 0 && dh <= 64 &&
           (int64_t)(max_keys > 0 ? max_keys : 1) * hs <= ATTN_SCORE_CAP;
}

/* The row-wise kernel for K/V format dt at kernel level isa, or NULL */
static mg_cpu_task_fn pick_rows(const attn_ctx *c, mg_dtype dt, mg_cpu_isa isa)
{
    static const mg_cpu_task_fn fns[2][4] = {
        {attn_rows_f32_1, attn_rows_f32_2, attn_rows_f32_3, attn_rows_f32_4},
        {attn_rows_bf16_1, attn_rows_bf16_2, attn_rows_bf16_3, attn_rows_bf16_4}};
    if (isa < MG_CPU_ISA_AVX512 || !rows_fit(c->heads, c->dh, c->max_keys))
        return NULL;
    if (dt == MG_DT_Q8ROW)
        return isa >= MG_CPU_ISA_AVX512_VNNI && c->dh == ATTN_Q8_DH ? attn_rows_q8 : NULL;
    return fns[dt == MG_DT_BF16][c->dh / 16 - 1];
}
#else
#define ATTN_X86 0
#endif

int mg_cpu_attention_q8row_fits(mg_backend *be, int heads, int head_dim, int max_keys)
{
#if ATTN_X86
    attn_ctx c = {.heads = heads, .dh = head_dim, .max_keys = max_keys};
    return pick_rows(&c, MG_DT_Q8ROW, ((mg_cpu_backend *)be)->isa) != NULL;
#else
    (void)be, (void)heads, (void)head_dim, (void)max_keys;
    return 0;
#endif
}

void mg_cpu_attention(mg_backend *be, mg_tensor *out, const mg_tensor *q, int n_seq,
                      int q_per_seq, const mg_attn_seq *seqs, const mg_attn_params *p)
{
    attn_ctx c = {
        .out = mg_cpu_f32(out), .q = mg_cpu_f32(q), .q_per_seq = q_per_seq,
        .heads = p->heads, .dh = p->head_dim, .seqs = seqs, .p = p, .splits = 1,
        .isa = ((mg_cpu_backend *)be)->isa,
    };
    /* (the fast kernels take one K/V format per call; the decoder never mixes them) */
    int n_same = 0;
    for (int s = 0; s < n_seq; s++) {
        if (seqs[s].n_keys > c.max_keys)
            c.max_keys = seqs[s].n_keys;
        n_same += seqs[s].k->dtype == seqs[0].k->dtype && seqs[s].v->dtype == seqs[0].k->dtype;
    }
#if ATTN_X86
    mg_cpu_isa isa = ((mg_cpu_backend *)be)->isa;
    mg_dtype dt = n_seq > 0 && n_same == n_seq ? seqs[0].k->dtype : MG_DT_OTHER;
    mg_cpu_task_fn fn = dt != MG_DT_OTHER ? pick_rows(&c, dt, isa) : NULL;
    if (dt != MG_DT_OTHER && tiles_fit(&c, dt, isa)) {
        int64_t tiles = (q_per_seq + ATTN_QT - 1) / ATTN_QT;
        mg_cpu_parallel(be, (int64_t)n_seq * tiles * (c.heads / ATTN_GROUP), 1, attn_tiles_q8, &c);
        return;
    }
    if (fn) {
        /* enough tasks for every thread: split the head groups of a row */
        int64_t rows = (int64_t)n_seq * q_per_seq, groups = c.heads / ATTN_GROUP;
        if (rows == 0)
            return;
        int64_t want = (be->n_threads + rows - 1) / rows;
        c.splits = (int)(want < groups ? want : groups);
        mg_cpu_parallel(be, rows * c.splits, 1, fn, &c);
        return;
    }
    if (isa >= MG_CPU_ISA_AVX512 && dt == MG_DT_F32 && p->head_dim % 16 == 0 &&
        p->head_dim / 16 <= ATTN_MAX_V) {
        mg_cpu_parallel(be, (int64_t)n_seq * p->heads, 1, attn_task_avx512, &c);
        return;
    }
#endif
    mg_cpu_parallel(be, (int64_t)n_seq * p->heads, 1, attn_task, &c);
}
