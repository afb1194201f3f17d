/* The CPU LSTM of EnCodec's decoder (two layers over every frame).
 *
 * The input projections of all steps are one 1x1 convolution; the steps
 * then run one after the other, each in two parallel passes: the recurrent
 * pre-activations (W_hh·h_{t-1}, split by gate rows) and the cell update
 * (split by unit). Each row and unit is always computed by the same loop in
 * the same order, so results do not depend on the thread count. With
 * AVX-512 the recurrent step runs several rows x batch items per pass, over
 * F32 or (bf16/q8 models) BF16 recurrent weights; Q8 recurrent weights go
 * through linear(). */
#include "cpu/cpu_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define LSTM_X86 1
#define TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
#define INLINE static inline __attribute__((always_inline))
#include "cpu/cpu_exp_avx512.h"
#else
#define LSTM_X86 0
#endif

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

static float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

typedef struct {
    float       *h;        /* [B*T, H] output, row b*T + t */
    const float *h0;       /* [B, H] h before step 0 (a carried state), or NULL: zeros */
    const float *x;        /* [B*T, I] */
    const float *w_hh, *b_ih, *b_hh;
    const uint16_t *w_hh_bf16; /* w_hh as BF16 rows instead (or NULL) */
    const float *rec;      /* [B, 4H] W_hh·h_{t-1} of step t when computed by
                            * linear() (Q8 W_hh), else NULL */
    float       *gx;       /* [B, 4H, T] input projections + both biases */
    float       *cell;     /* [B, H] cell state */
    float       *gates;    /* [B, 4H] pre-activations of step t */
    int64_t      B, T, I, H, t;
    int          avx512;
    mg_cpu_dot_fn dot;     /* the portable dot product at the backend's kernel level */
    int          reduced;  /* W_hh BF16 or Q8: the cell's vector activations */
} lstm_ctx;

static inline float bf16_to_f32(uint16_t v)
{
    uint32_t bits = (uint32_t)v << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* mg_cpu_dot with a BF16 row a (the interleaved layout of lstm_bf16),
 * widened exactly: the sums of lstm_dots_bf16_n. */
static float lstm_dot_bf16(const uint16_t *a, const float *b, int64_t n)
{
    float acc[16] = {0};
    int64_t k = 0;
    for (; k + 16 <= n; k += 16)
        for (int j = 0; j < 16; j++)
            acc[j] += bf16_to_f32(a[mg_bf16_pair_index(k + j, n)]) * b[k + j];
    float s = 0;
    for (int j = 0; j < 16; j++)
        s += acc[j];
    for (; k < n; k++)
        s += bf16_to_f32(a[k]) * b[k];
    return s;
}

#if LSTM_X86
enum { LSTM_MAX_ACC = 16 };

/* The 16 lane sums of v added in order, as the plain dot products end. */
INLINE TARGET_AVX512 float lanes_in_order(__m512 v)
{
    float lanes[16], s = 0;
    _mm512_storeu_ps(lanes, v);
    for (int j = 0; j < 16; j++)
        s += lanes[j];
    return s;
}

/* Recurrent pre-activations out[b·n_rows + r] = W_hh[row r]·h_{t-1}[b]
 * for n_rows rows and B batch items, each dot summed exactly as mg_cpu_dot
 * does (16 lane sums of separate multiply and add, the lanes added in order,
 * then the tail): the result is bitwise that of the plain loop. The vector
 * version runs several rows and batch items at once: one lane sum alone is a
 * chain of dependent adds, and W_hh (16 MB) streams from L3 once per step. */
INLINE TARGET_AVX512 void lstm_dots_n(float *out, const float *const *w, int nr,
                                      const float *const *h, int nb, int64_t n)
{
    __m512 acc[LSTM_MAX_ACC];
    _Pragma("GCC unroll 16") for (int i = 0; i < nr * nb; i++) acc[i] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) {
        __m512 hv[4];
        _Pragma("GCC unroll 4") for (int b = 0; b < nb; b++) hv[b] = _mm512_loadu_ps(h[b] + k);
        _Pragma("GCC unroll 8") for (int r = 0; r < nr; r++) {
            __m512 wv = _mm512_loadu_ps(w[r] + k);
            _Pragma("GCC unroll 4") for (int b = 0; b < nb; b++)
                acc[r * nb + b] = _mm512_add_ps(acc[r * nb + b], _mm512_mul_ps(wv, hv[b]));
        }
    }
    for (int r = 0; r < nr; r++)
        for (int b = 0; b < nb; b++) {
            float s = lanes_in_order(acc[r * nb + b]);
            for (int64_t kk = k; kk < n; kk++)
                s += w[r][kk] * h[b][kk];
            out[b * nr + r] = s;
        }
}

/* lstm_dots_n with BF16 rows (the interleaved layout of lstm_bf16): each
 * weight widened to F32 exactly, then the same sums (bitwise lstm_dot_bf16's). */
INLINE TARGET_AVX512 void lstm_dots_bf16_n(float *out, const uint16_t *const *w, int nr,
                                           const float *const *h, int nb, int64_t n)
{
    __m512 acc[LSTM_MAX_ACC];
    _Pragma("GCC unroll 16") for (int i = 0; i < nr * nb; i++) acc[i] = _mm512_setzero_ps();
    int64_t k = 0;
    /* whole 32-column chunks: lane j holds columns k + j (low half) and
     * k + 16 + j (high half), summed in that order */
    for (; k + 32 <= n; k += 32) {
        __m512 hv[4], hw[4];
        _Pragma("GCC unroll 4") for (int b = 0; b < nb; b++) {
            hv[b] = _mm512_loadu_ps(h[b] + k);
            hw[b] = _mm512_loadu_ps(h[b] + k + 16);
        }
        _Pragma("GCC unroll 8") for (int r = 0; r < nr; r++) {
            __m512i raw = _mm512_loadu_si512((const void *)(w[r] + k));
            __m512 lo = _mm512_castsi512_ps(_mm512_slli_epi32(raw, 16));
            __m512 hi = _mm512_castsi512_ps(_mm512_and_si512(raw, _mm512_set1_epi32((int)0xffff0000u)));
            _Pragma("GCC unroll 4") for (int b = 0; b < nb; b++) {
                acc[r * nb + b] = _mm512_add_ps(acc[r * nb + b], _mm512_mul_ps(lo, hv[b]));
                acc[r * nb + b] = _mm512_add_ps(acc[r * nb + b], _mm512_mul_ps(hi, hw[b]));
            }
        }
    }
    for (; k + 16 <= n; k += 16) {
        __m512 hv[4];
        _Pragma("GCC unroll 4") for (int b = 0; b < nb; b++) hv[b] = _mm512_loadu_ps(h[b] + k);
        _Pragma("GCC unroll 8") for (int r = 0; r < nr; r++) {
            __m256i raw = _mm256_loadu_si256((const __m256i *)(w[r] + k));
            __m512 wv = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
            _Pragma("GCC unroll 4") for (int b = 0; b < nb; b++)
                acc[r * nb + b] = _mm512_add_ps(acc[r * nb + b], _mm512_mul_ps(wv, hv[b]));
        }
    }
    for (int r = 0; r < nr; r++)
        for (int b = 0; b < nb; b++) {
            float s = lanes_in_order(acc[r * nb + b]);
            for (int64_t kk = k; kk < n; kk++)
                s += bf16_to_f32(w[r][kk]) * h[b][kk];
            out[b * nr + r] = s;
        }
}

/* dots[b·nr + r] = w[r]·h[b] for nr <= 8 rows and nb <= 4 items (nr·nb <= 16):
 * the shapes the gate pass uses, each with its loops fully unrolled. */
#define LSTM_DOTS_DISPATCH(name, kernel, wtype)                                          \
    TARGET_AVX512 static void name(float *out, const wtype *const *w, int nr,            \
                                   const float *const *h, int nb, int64_t n)             \
    {                                                                                    \
        if (nr == 8 && nb == 2)                                                          \
            kernel(out, w, 8, h, 2, n);                                                  \
        else if (nr == 8 && nb == 1)                                                     \
            kernel(out, w, 8, h, 1, n);                                                  \
        else if (nr == 4 && nb == 4)                                                     \
            kernel(out, w, 4, h, 4, n);                                                  \
        else if (nr == 4 && nb == 3)                                                     \
            kernel(out, w, 4, h, 3, n);                                                  \
        else if (nr == 4 && nb == 2)                                                     \
            kernel(out, w, 4, h, 2, n);                                                  \
        else                                                                             \
            kernel(out, w, 4, h, 1, n);                                                  \
    }
LSTM_DOTS_DISPATCH(lstm_dots_bf16, lstm_dots_bf16_n, uint16_t)
LSTM_DOTS_DISPATCH(lstm_dots, lstm_dots_n, float)
#endif

/* Pass 1 of a step: gates[b·4H + n] = gx + W_hh[n]·h_{t-1}[b] for rows
 * [n0, n1). Each thread streams one contiguous slice of W_hh (per-unit work,
 * 4 rows 4 MB apart, measured slower), each row read once for all batch
 * items. */
static void lstm_gates_task(void *arg, int64_t n0, int64_t n1)
{
    const lstm_ctx *c = arg;
    const int64_t H = c->H, T = c->T, t = c->t;
    for (int64_t b0 = 0; b0 < c->B; b0 += 4) {
        int nb = (int)min64(4, c->B - b0);
        const float *h[4] = {NULL, NULL, NULL, NULL};
        /* a step without h_{t-1} (zeros) adds no recurrent products at all */
        int rec = t > 0 || c->h0;
        for (int b = 0; b < nb && rec; b++)
            h[b] = t > 0 ? c->h + ((b0 + b) * T + t - 1) * H : c->h0 + (b0 + b) * H;
        for (int64_t n = n0; n < n1;) {
            /* 8 rows at a time where the accumulators allow it */
            int nr = nb <= 2 && n1 - n >= 8 ? 8 : (int)min64(4, n1 - n);
            float d[16];
            const float *w[8];
            const uint16_t *wh[8];
            for (int r = 0; r < nr; r++) {
                w[r] = c->w_hh ? c->w_hh + (n + r) * H : NULL;
                wh[r] = c->w_hh_bf16 ? c->w_hh_bf16 + (n + r) * H : NULL;
            }
            if (rec && c->rec) {
                for (int b = 0; b < nb; b++)
                    for (int r = 0; r < nr; r++)
                        d[b * nr + r] = c->rec[(b0 + b) * 4 * H + n + r];
            } else if (rec && c->w_hh_bf16) {
#if LSTM_X86
                if (c->avx512 && nr >= 4)
                    lstm_dots_bf16(d, wh, nr, h, nb, H);
                else
#endif
                    for (int b = 0; b < nb; b++)
                        for (int r = 0; r < nr; r++)
                            d[b * nr + r] = lstm_dot_bf16(wh[r], h[b], H);
            } else if (rec) {
#if LSTM_X86
                /* one item: W_hh streams at L3 speed whatever the kernel,
                 * and one row at a time streams best */
                if (c->avx512 && nr >= 4 && c->B > 1)
                    lstm_dots(d, w, nr, h, nb, H);
                else
#endif
                    for (int b = 0; b < nb; b++)
                        for (int r = 0; r < nr; r++)
                            d[b * nr + r] = c->dot(w[r], h[b], H);
            }
            for (int b = 0; b < nb; b++)
                for (int r = 0; r < nr; r++) {
                    float v = c->gx[((b0 + b) * 4 * H + n + r) * T + t];
                    if (rec)
                        v += d[b * nr + r];
                    c->gates[(b0 + b) * 4 * H + n + r] = v;
                }
            n += nr;
        }
    }
}

/* The cell's activations with BF16 or Q8 recurrent weights (a reduced-
 * precision model already; see load_lstm in src/model/encodec.c): vectorised
 * from the ~2 ulp exponentials of cpu_exp_avx512.h instead of libm's scalar
 * calls (a few % of a decode). The scalar versions spell out the same
 * operations (fmaf where the vector code fuses), so every kernel level
 * gives the same bits. */
static float expm1_reduced_r(float x, float *n_out)
{
    float n = rintf(x * 1.44269504f);
    float r = fmaf(-n, 0.693145752f, x);
    r = fmaf(-n, 1.42860677e-06f, r);
    *n_out = n;
    float p = 1.0f / 5040;
    p = fmaf(p, r, 1.0f / 720);
    p = fmaf(p, r, 1.0f / 120);
    p = fmaf(p, r, 1.0f / 24);
    p = fmaf(p, r, 1.0f / 6);
    p = fmaf(p, r, 0.5f);
    return fmaf(p * r, r, r);
}

static float sigmoid_r(float x)
{
    float n, a = fmaxf(-fabsf(x), -104.0f), p = expm1_reduced_r(a, &n);
    float e = ldexpf(p + 1.0f, (int)n), d = 1.0f + e;
    return x < 0 ? e / d : 1.0f / d;
}

static float tanh_r(float x)
{
    float n, a = fmaxf(-2.0f * fabsf(x), -88.0f), p = expm1_reduced_r(a, &n);
    float two_n = ldexpf(1.0f, (int)n), m = fmaf(p, two_n, two_n - 1.0f);
    return copysignf(-m / (2.0f + m), x);
}

#if LSTM_X86
TARGET_AVX512 static inline __m512 sigmoid_avx512(__m512 x)
{
    __m512 e = exp_neg_avx512(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_abs_ps(x)));
    __m512 d = _mm512_add_ps(_mm512_set1_ps(1.0f), e);
    __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
    return _mm512_mask_div_ps(_mm512_div_ps(_mm512_set1_ps(1.0f), d), neg, e, d);
}

TARGET_AVX512 static inline __m512 tanh_avx512(__m512 x)
{
    __m512 m = expm1_neg_avx512(_mm512_mul_ps(_mm512_set1_ps(-2.0f), _mm512_abs_ps(x)));
    __m512 t = _mm512_div_ps(_mm512_sub_ps(_mm512_setzero_ps(), m),
                             _mm512_add_ps(_mm512_set1_ps(2.0f), m));
    __m512i sign = _mm512_set1_epi32((int)0x80000000u);
    return _mm512_castsi512_ps(_mm512_or_si512(
        _mm512_andnot_si512(sign, _mm512_castps_si512(t)),
        _mm512_and_si512(sign, _mm512_castps_si512(x))));
}

TARGET_AVX512 static void lstm_cell_r_avx512(const lstm_ctx *c, int64_t b, int64_t j0, int64_t j1)
{
    int64_t H = c->H;
    const float *g = c->gates + b * 4 * H;
    float *cs = c->cell + b * H, *h = c->h + (b * c->T + c->t) * H;
    for (int64_t j = j0; j < j1; j += 16) {
        __mmask16 m = j1 - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (j1 - j)) - 1);
        __m512 gi = _mm512_maskz_loadu_ps(m, g + j), gf = _mm512_maskz_loadu_ps(m, g + H + j);
        __m512 gg = _mm512_maskz_loadu_ps(m, g + 2 * H + j);
        __m512 go = _mm512_maskz_loadu_ps(m, g + 3 * H + j);
        __m512 cell = _mm512_add_ps(_mm512_mul_ps(sigmoid_avx512(gf), _mm512_maskz_loadu_ps(m, cs + j)),
                                    _mm512_mul_ps(sigmoid_avx512(gi), tanh_avx512(gg)));
        _mm512_mask_storeu_ps(h + j, m, _mm512_mul_ps(sigmoid_avx512(go), tanh_avx512(cell)));
        _mm512_mask_storeu_ps(cs + j, m, cell);
    }
}
#endif

/* Pass 2: the cell update of units [j0, j1). */
static void lstm_cell_task(void *arg, int64_t j0, int64_t j1)
{
    const lstm_ctx *c = arg;
    int64_t H = c->H, T = c->T, t = c->t;
    if (c->reduced) {
        for (int64_t b = 0; b < c->B; b++) {
#if LSTM_X86
            if (c->avx512) {
                lstm_cell_r_avx512(c, b, j0, j1);
                continue;
            }
#endif
            const float *g = c->gates + b * 4 * H;
            for (int64_t j = j0; j < j1; j++) {
                float cell = sigmoid_r(g[H + j]) * c->cell[b * H + j] +
                             sigmoid_r(g[j]) * tanh_r(g[2 * H + j]);
                c->h[(b * T + t) * H + j] = sigmoid_r(g[3 * H + j]) * tanh_r(cell);
                c->cell[b * H + j] = cell;
            }
        }
        return;
    }
    for (int64_t b = 0; b < c->B; b++) {
        const float *g = c->gates + b * 4 * H;
        for (int64_t j = j0; j < j1; j++) {
            float cell = sigmoid(g[H + j]) * c->cell[b * H + j] + sigmoid(g[j]) * tanhf(g[2 * H + j]);
            c->h[(b * T + t) * H + j] = sigmoid(g[3 * H + j]) * tanhf(cell);
            c->cell[b * H + j] = cell;
        }
    }
}

/* With a carried state step 0 reads h and c from state_in as step t reads
 * step t-1's; without one it skips the recurrent products (as lstm() always
 * did). Every step's sums are those of a step inside one long call (the
 * input projections are a 1x1 convolution, whose outputs do not depend on
 * where the signal starts), so pieces give the bits of one pass. */
void mg_cpu_lstm_state(mg_backend *be, mg_tensor *h_out, const mg_tensor *x,
                       const mg_tensor *w_ih, const mg_tensor *w_hh, const mg_tensor *b_ih,
                       const mg_tensor *b_hh, int batch, const mg_tensor *state_in,
                       mg_tensor *state_out)
{
    lstm_ctx c = {
        .h0 = state_in ? mg_cpu_f32(state_in) : NULL,
        .h = mg_cpu_f32(h_out), .x = mg_cpu_f32(x),
        .w_hh = w_hh->dtype == MG_DT_F32 ? mg_cpu_f32(w_hh) : NULL,
        .w_hh_bf16 = w_hh->dtype == MG_DT_BF16 ? (const uint16_t *)w_hh->data : NULL,
        .reduced = w_hh->dtype != MG_DT_F32,
        .b_ih = mg_cpu_f32(b_ih), .b_hh = mg_cpu_f32(b_hh),
        .B = batch, .H = mg_tensor_cols(h_out), .I = mg_tensor_cols(x),
    };
    if (batch <= 0)
        return;
    int64_t B = c.B, T = mg_tensor_rows(x) / batch, I = c.I, H4 = 4 * c.H;
    c.T = T;
    /* The input projections of all steps are one 1x1 convolution over the
     * channel-first input: it reads w_ih once instead of once per step. */
    size_t n_xt = (size_t)(B * I * T), n_gx = (size_t)(B * H4 * T);
    int q8 = w_hh->dtype == MG_DT_Q8;
    size_t n_q8 = q8 ? (size_t)(B * H4 + B * c.H) : 0;   /* products, h_{t-1} rows */
    float *scratch = malloc((n_xt + n_gx + (size_t)H4 + (size_t)(B * c.H) + (size_t)(B * H4) +
                             n_q8) * sizeof *scratch);
    if (!scratch) {
        mg_cpu_fail(be, MG_ERR_NOMEM, "lstm scratch");
        return;
    }
    float *xt = scratch, *bias = scratch + n_xt + n_gx;
    c.gx = scratch + n_xt;
    c.cell = bias + H4;
    c.gates = c.cell + B * c.H;
#if LSTM_X86
    c.avx512 = ((mg_cpu_backend *)be)->isa >= MG_CPU_ISA_AVX512;
#endif
    c.dot = mg_cpu_dot_for(((mg_cpu_backend *)be)->isa);
    if (state_in)
        memcpy(c.cell, c.h0 + B * c.H, (size_t)(B * c.H) * sizeof *c.cell);
    else
        memset(c.cell, 0, (size_t)(B * c.H) * sizeof *c.cell);
    for (int64_t n = 0; n < H4; n++)
        bias[n] = c.b_ih[n] + c.b_hh[n];
    mg_tensor gx = {.be = be, .dtype = MG_DT_F32, .ndim = 2, .ne = {B * H4, T}, .data = c.gx};
    mg_tensor xtt = {.be = be, .dtype = MG_DT_F32, .ndim = 2, .ne = {B * I, T}, .data = xt};
    mg_cpu_transpose(be, &xtt, x, (int)B);
    /* F32, or BF16 in a 1x1 conv's pair layout (row-major) */
    mg_tensor wih = {.be = be, .dtype = w_ih->dtype, .ndim = 2, .ne = {H4, I}, .data = w_ih->data};
    mg_tensor bt = {.be = be, .dtype = MG_DT_F32, .ndim = 1, .ne = {H4}, .data = bias};
    mg_cpu_conv1d(be, &gx, &xtt, &wih, &bt, (int)B, 1, 1);
    /* Q8 W_hh: the recurrent products of a step are one linear() of the
     * items' h_{t-1} rows (gathered: an item's rows are T apart) */
    float *rec = c.gates + B * H4, *hprev = rec + B * H4;
    mg_tensor rec_t = {.be = be, .dtype = MG_DT_F32, .ndim = 2, .ne = {B, H4}, .data = rec};
    mg_tensor hprev_t = {.be = be, .dtype = MG_DT_F32, .ndim = 2, .ne = {B, c.H}, .data = hprev};
    /* the steps are sequential; units within a step are independent */
    for (c.t = 0; c.t < T; c.t++)
    {
        if (q8 && (c.t > 0 || c.h0)) {
            for (int64_t b = 0; b < B; b++)
                memcpy(hprev + b * c.H,
                       c.t > 0 ? c.h + (b * T + c.t - 1) * c.H : c.h0 + b * c.H,
                       (size_t)c.H * sizeof *hprev);
            mg_cpu_linear(be, &rec_t, &hprev_t, w_hh, NULL);
            c.rec = rec;
        }
        mg_cpu_parallel(be, H4, mg_cpu_macs_min(B * c.H), lstm_gates_task, &c);
        mg_cpu_parallel(be, c.H, mg_cpu_macs_min(B * 64), lstm_cell_task, &c);
    }
    if (state_out && T > 0) {
        float *so = mg_cpu_f32(state_out);
        for (int64_t b = 0; b < B; b++)
            memcpy(so + b * c.H, c.h + (b * T + T - 1) * c.H, (size_t)c.H * sizeof *so);
        memcpy(so + B * c.H, c.cell, (size_t)(B * c.H) * sizeof *so);
    }
    free(scratch);
}

void mg_cpu_lstm(mg_backend *be, mg_tensor *h_out, const mg_tensor *x, const mg_tensor *w_ih,
                 const mg_tensor *w_hh, const mg_tensor *b_ih, const mg_tensor *b_hh, int batch)
{
    mg_cpu_lstm_state(be, h_out, x, w_ih, w_hh, b_ih, b_hh, batch, NULL, NULL);
}
