/* EnCodec decoder ops: 1-D convolutions and transposed convolutions (tiled in
 * shared memory: a block computes CO_T output channels x T_T samples, reading
 * CI_T input channels of signal window and weights per pass), reflect
 * padding, batched transposes and the LSTM (input projections as one matrix
 * product, then one kernel per time step). cuDNN is not used: these direct
 * kernels keep the build free of it; no measurement has yet shown it faster.
 *
 * BF16 weights (caps.conv_bf16, the pair layout of backend/layout.h): inputs round
 * to BF16 as on the CPU, products are exact and sums F32. Those convolutions
 * run as implicit matrix products on the tensor cores (conv_mma_kernel), the
 * direct kernels (templated on BF) only where c_out is too small to fill an
 * mma tile. */
#include "cuda_backend.h"
#include "conv_mma.h"

#include <limits.h>
#include <string.h>

#include <mma.h>

enum { CO_T = 32, T_T = 64, CI_T = 8, CONV_THREADS = 256 };

static int64_t div_floor(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

/* Weight (a, b, tap) of a [d0][d1][k] conv weight: F32 as stored, or BF16
 * from the pair layout (the input channel pairs up: b for conv1d, a for a
 * transposed conv). */
template <bool BF>
static __device__ __forceinline__ float conv_w(const void *w, int64_t a, int64_t b, int tap,
                                               int64_t d1, int k_taps, bool transposed)
{
    if (!BF)
        return ((const float *)w)[(a * d1 + b) * k_taps + tap];
    int64_t ci = transposed ? a : b;
    int64_t word = transposed ? ((ci / 2) * d1 + b) * k_taps + tap
                              : (a * (d1 / 2) + ci / 2) * k_taps + tap;
    uint32_t v = ((const uint32_t *)w)[word];
    return __uint_as_float(ci % 2 ? v & 0xffff0000u : v << 16);
}

/* An input value as the conv multiplies it (BF16-rounded with BF16 weights). */
template <bool BF> static __device__ __forceinline__ float conv_x(float v)
{
    return BF ? __bfloat162float(__float2bfloat16_rn(v)) : v;
}

/* y[b, co, t] = bias[co] + Σ_ci Σ_k w[co, ci, k] · x[b, ci, t·stride + k·dil] */
template <bool BF>
__global__ void __launch_bounds__(CONV_THREADS)
conv1d_kernel(float *y, const float *x, const void *w, const float *bias, int c_in, int c_out,
              int k_taps, int t_in, int t_out, int stride, int dil, int win)
{
    cu_pdl_wait();
    extern __shared__ float sm[];
    float *xs = sm, *ws = sm + CI_T * win;
    int b = blockIdx.z, co0 = blockIdx.y * CO_T, t0 = blockIdx.x * T_T;
    int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
    const float *xb = x + (int64_t)b * c_in * t_in;
    float acc[2][4] = {{0}};
    for (int ci0 = 0; ci0 < c_in; ci0 += CI_T) {
        for (int e = threadIdx.x; e < CI_T * win; e += CONV_THREADS) {
            int ci = ci0 + e / win, u = t0 * stride + e % win;
            xs[e] = ci < c_in && u < t_in ? conv_x<BF>(xb[(int64_t)ci * t_in + u]) : 0.0f;
        }
        for (int e = threadIdx.x; e < CO_T * CI_T * k_taps; e += CONV_THREADS) {
            int o = e / (CI_T * k_taps), rest = e % (CI_T * k_taps);
            int ci = ci0 + rest / k_taps, k = rest % k_taps;
            ws[e] = co0 + o < c_out && ci < c_in
                        ? conv_w<BF>(w, co0 + o, ci, k, c_in, k_taps, false) : 0.0f;
        }
        __syncthreads();
        for (int ci = 0; ci < CI_T; ci++)
            for (int k = 0; k < k_taps; k++) {
                float wv0 = ws[(ty * CI_T + ci) * k_taps + k];
                float wv1 = ws[((ty + 16) * CI_T + ci) * k_taps + k];
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    float xv = xs[ci * win + (tx + 16 * j) * stride + k * dil];
                    acc[0][j] += wv0 * xv;
                    acc[1][j] += wv1 * xv;
                }
            }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 2; i++) {
        int co = co0 + ty + 16 * i;
        if (co >= c_out)
            continue;
        float bv = bias ? bias[co] : 0.0f;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int t = t0 + tx + 16 * j;
            if (t < t_out)
                y[((int64_t)b * c_out + co) * t_out + t] = acc[i][j] + bv;
        }
    }
}

/* ---- BF16 convolutions as implicit matrix products on the tensor cores
 * (the index map: conv_mma.h). Inputs round to BF16 as they enter the tile,
 * so the values multiplied are the CPU's; sums are F32 in tile order. Rows
 * span grid x (batch x time exceeds grid y's 65535 tiles), output channels
 * grid y, transposed-conv phases grid z. */
enum { CM_TM = 64, CM_TN = 64, CM_TK = 32, CM_PAD = 8, CM_THREADS = 128,
       CM_MIN_COUT = 16 /* narrower outputs take the direct kernels */ };

static_assert(sizeof(mg_conv_mma_args) == 4 * sizeof(void *) + 14 * sizeof(int),
              "mg_conv_mma_args without padding bytes");

__global__ void __launch_bounds__(CM_THREADS) conv_mma_kernel(mg_conv_mma_args a)
{
    cu_pdl_wait();
    using namespace nvcuda;
    __shared__ __align__(32) __nv_bfloat16 As[CM_TM][CM_TK + CM_PAD];
    __shared__ __align__(32) __nv_bfloat16 Bs[CM_TN][CM_TK + CM_PAD];
    __shared__ __align__(32) float Cs[CM_TM][CM_TN + 4];
    static_assert(CM_TM == CM_TN && CM_THREADS % CM_TM == 0, "one tile row per thread");
    const int m0 = blockIdx.x * CM_TM, n0 = blockIdx.y * CM_TN, phase = blockIdx.z;
    const int K = a.c_in * a.taps;
    /* every thread fills one row of each tile (r: a sample of A, a channel of
     * B), columns c0, c0 + CM_THREADS/CM_TM, ... */
    const int r = threadIdx.x % CM_TM, c0 = threadIdx.x / CM_TM;
    const int m = m0 + r, n = n0 + r;
    const bool m_ok = m < a.rows, n_ok = n < a.c_out;
    int b = 0, pos = 0;
    if (m_ok)
        mg_conv_mma_row(&a, m, &b, &pos);
    const int warp = threadIdx.x / 32, wm = (warp / 2) * 32, wn = (warp % 2) * 32;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 2; j++)
            wmma::fill_fragment(acc[i][j], 0.0f);
    for (int k0 = 0; k0 < K; k0 += CM_TK) {
        for (int c = c0; c < CM_TK; c += CM_THREADS / CM_TM) {
            int kk = k0 + c;
            float xv = m_ok && kk < K ? mg_conv_mma_x(&a, phase, b, pos, kk) : 0.0f;
            uint32_t wv = n_ok && kk < K ? mg_conv_mma_w(&a, phase, n, kk) : 0u;
            As[r][c] = __float2bfloat16_rn(xv);
            Bs[r][c] = __float2bfloat16_rn(__uint_as_float(wv)); /* exact: already BF16 */
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < CM_TK; kk += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa[2];
            wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fb[2];
#pragma unroll
            for (int i = 0; i < 2; i++)
                wmma::load_matrix_sync(fa[i], &As[wm + 16 * i][kk], CM_TK + CM_PAD);
#pragma unroll
            for (int j = 0; j < 2; j++)
                wmma::load_matrix_sync(fb[j], &Bs[wn + 16 * j][kk], CM_TK + CM_PAD);
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
                for (int j = 0; j < 2; j++)
                    wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 2; j++)
            wmma::store_matrix_sync(&Cs[wm + 16 * i][wn + 16 * j], acc[i][j], CM_TN + 4,
                                    wmma::mem_row_major);
    __syncthreads();
    const int oy = m_ok ? mg_conv_mma_oy(&a, phase, pos) : -1;
    if (oy < 0)
        return;
    /* consecutive threads hold consecutive samples of one channel row of y */
    for (int c = c0; c < CM_TN; c += CM_THREADS / CM_TM) {
        int co = n0 + c;
        if (co < a.c_out)
            a.y[((int64_t)b * a.c_out + co) * a.t_y + oy] = Cs[r][c] + (a.bias ? a.bias[co] : 0.0f);
    }
}

/* Records conv_mma_kernel over the map in a (shape fields set, rows checked
 * by the caller); `phases` products. */
static void conv_mma(mg_cuda_backend *cb, const mg_conv_mma_args *a, const mg_tensor *y,
                     const mg_tensor *x, const mg_tensor *w, const mg_tensor *bias, int phases)
{
    mg_conv_mma_args g = *a;
    g.y = cu_f32(y);
    g.x = cu_f32(x);
    g.w = (const uint32_t *)w->data;
    g.bias = bias ? cu_f32(bias) : NULL;
    dim3 grid(cu_blocks(g.rows, CM_TM), cu_blocks(g.c_out, CM_TN), (unsigned)phases);
    cu_launch(cb, conv_mma_kernel, grid, CM_THREADS, 0, g);
    cu_launched(cb, "conv mma");
}

/* 1 when the map's int rows and reduction index hold the shape. */
static int conv_mma_fits(int64_t batch, int64_t per_item, int64_t c_in, int64_t taps, int c_out)
{
    return batch * per_item <= INT_MAX - CM_TM && c_in * taps <= INT_MAX - CM_TK &&
           cu_blocks(c_out, CM_TN) <= 65535;
}

void cu_conv1d(mg_backend *be, mg_tensor *y, const mg_tensor *x, const mg_tensor *w,
               const mg_tensor *bias, int batch, int stride, int dilation)
{
    mg_cuda_backend *cb = cu_of(be);
    cu_enter(cb);
    int c_out = (int)w->ne[0], c_in = (int)w->ne[1], k = w->ndim > 2 ? (int)w->ne[2] : 1;
    int t_in = (int)mg_tensor_cols(x), t_out = (int)mg_tensor_cols(y);
    if (batch <= 0 || t_out <= 0)
        return;
    int bf = w->dtype == MG_DT_BF16;
    if (bf && c_in % 2) {
        cu_fail(cb, "cuda: conv1d with BF16 weights needs an even c_in (pairs), got %d", c_in);
        return;
    }
    if (bf && c_out >= CM_MIN_COUT && conv_mma_fits(batch, t_out, c_in, k, c_out)) {
        mg_conv_mma_args a;
        memset(&a, 0, sizeof a); /* padding bytes compare equal between segments */
        mg_conv_mma_shape(&a, 0, batch, c_in, c_out, k, t_in, t_out, stride, dilation);
        conv_mma(cb, &a, y, x, w, bias, 1);
        return;
    }
    int win = (T_T - 1) * stride + (k - 1) * dilation + 1;
    size_t smem = ((size_t)CI_T * win + (size_t)CO_T * CI_T * k) * sizeof(float);
    if (smem > 48 * 1024) {
        cu_fail(cb, "cuda: conv1d with kernel %d, stride %d, dilation %d is not supported "
                "(shared-memory window too large)", k, stride, dilation);
        return;
    }
    dim3 grid(cu_blocks(t_out, T_T), cu_blocks(c_out, CO_T), (unsigned)batch);
    cu_launch(cb, bf ? conv1d_kernel<true> : conv1d_kernel<false>, grid, CONV_THREADS, smem,
        cu_f32(y), cu_f32(x), (const void *)w->data, bias ? cu_f32(bias) : NULL, c_in, c_out, k,
        t_in, t_out, stride, dilation, win);
    cu_launched(cb, "conv1d");
}

/* Full output f = oy + trim_left: yf[co, f] = b[co] + Σ_ci Σ_j w[ci, co, r + j·s] · x[ci, q - j]
 * with f = q·s + r. The block's window holds x[t] for t in [tbase, tbase + win),
 * zero outside the signal. */
template <bool BF>
__global__ void __launch_bounds__(CONV_THREADS)
convt_kernel(float *y, const float *x, const void *w, const float *bias, int c_in, int c_out,
             int k_taps, int t_in, int t_y, int stride, int trim_left, int win)
{
    cu_pdl_wait();
    extern __shared__ float sm[];
    float *xs = sm, *ws = sm + CI_T * win;
    int b = blockIdx.z, co0 = blockIdx.y * CO_T, f0 = blockIdx.x * T_T + trim_left;
    int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
    int tbase = f0 - (k_taps - 1);
    tbase = tbase >= 0 ? tbase / stride : -((-tbase + stride - 1) / stride);
    const float *xb = x + (int64_t)b * c_in * t_in;
    float acc[2][4] = {{0}};
    for (int ci0 = 0; ci0 < c_in; ci0 += CI_T) {
        for (int e = threadIdx.x; e < CI_T * win; e += CONV_THREADS) {
            int ci = ci0 + e / win, t = tbase + e % win;
            xs[e] = ci < c_in && t >= 0 && t < t_in ? conv_x<BF>(xb[(int64_t)ci * t_in + t]) : 0.0f;
        }
        for (int e = threadIdx.x; e < CO_T * CI_T * k_taps; e += CONV_THREADS) {
            int o = e / (CI_T * k_taps), rest = e % (CI_T * k_taps);
            int ci = ci0 + rest / k_taps, k = rest % k_taps;
            ws[e] = co0 + o < c_out && ci < c_in
                        ? conv_w<BF>(w, ci, co0 + o, k, c_out, k_taps, true) : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int f = f0 + tx + 16 * j, q = f / stride, r = f % stride;
            for (int ci = 0; ci < CI_T; ci++) {
                const float *w0 = ws + (ty * CI_T + ci) * k_taps;
                const float *w1 = ws + ((ty + 16) * CI_T + ci) * k_taps;
                const float *xc = xs + ci * win - tbase;
                for (int k = r, t = q; k < k_taps; k += stride, t--) {
                    float xv = xc[t];
                    acc[0][j] += w0[k] * xv;
                    acc[1][j] += w1[k] * xv;
                }
            }
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 2; i++) {
        int co = co0 + ty + 16 * i;
        if (co >= c_out)
            continue;
        float bv = bias ? bias[co] : 0.0f;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int oy = f0 - trim_left + tx + 16 * j;
            if (oy < t_y)
                y[((int64_t)b * c_out + co) * t_y + oy] = acc[i][j] + bv;
        }
    }
}

void cu_conv_transpose1d(mg_backend *be, mg_tensor *y, const mg_tensor *x, const mg_tensor *w,
                         const mg_tensor *bias, int batch, int stride, int trim_left)
{
    mg_cuda_backend *cb = cu_of(be);
    cu_enter(cb);
    int c_in = (int)w->ne[0], c_out = (int)w->ne[1], k = (int)w->ne[2];
    int t_in = (int)mg_tensor_cols(x), t_y = (int)mg_tensor_cols(y);
    if (batch <= 0 || t_y <= 0)
        return;
    int bf = w->dtype == MG_DT_BF16;
    if (bf && c_in % 2) {
        cu_fail(cb, "cuda: conv_transpose1d with BF16 weights needs an even c_in (pairs), got %d",
                c_in);
        return;
    }
    if (bf && c_out >= CM_MIN_COUT && stride > 0 && stride <= 65535 &&
        conv_mma_fits(batch, (trim_left + (int64_t)t_y - 1) / stride + 1, c_in,
                      (k + stride - 1) / stride, c_out)) {
        mg_conv_mma_args a;
        memset(&a, 0, sizeof a);
        mg_conv_mma_shape(&a, 1, batch, c_in, c_out, k, t_in, t_y, stride, trim_left);
        conv_mma(cb, &a, y, x, w, bias, stride);
        return;
    }
    /* t spans [floor((f0-K+1)/s), floor((f0+T_T-1)/s)] for any block start f0 */
    int64_t span = div_floor(T_T - 1, stride) - div_floor(-(k - 1), stride) + 2;
    int win = (int)span;
    size_t smem = ((size_t)CI_T * win + (size_t)CO_T * CI_T * k) * sizeof(float);
    if (smem > 48 * 1024) {
        cu_fail(cb, "cuda: conv_transpose1d with kernel %d is not supported (window too large)", k);
        return;
    }
    dim3 grid(cu_blocks(t_y, T_T), cu_blocks(c_out, CO_T), (unsigned)batch);
    cu_launch(cb, bf ? convt_kernel<true> : convt_kernel<false>, grid, CONV_THREADS, smem,
        cu_f32(y), cu_f32(x), (const void *)w->data, bias ? cu_f32(bias) : NULL, c_in, c_out, k,
        t_in, t_y, stride, trim_left, win);
    cu_launched(cb, "conv_transpose1d");
}

/* BF16 EnCodec weights for bf16 models: opt-in (options.cuda_conv_bf16, see
 * mg_backend_cuda_create); the contract is the CPU backend's (its audio:
 * ~44 dB SNR against F32, tests/test_encodec.c). */
int cu_conv_bf16_fits(mg_backend *be)
{
    return cu_of(be)->conv_bf16;
}

__global__ void pad_kernel(float *y, const float *x, int64_t rows, int64_t t, int64_t t_ext,
                           int64_t t_y, int left)
{
    cu_pdl_wait();
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * t_y)
        return;
    int64_t r = i / t_y, o = i % t_y, p = o - left;
    if (p < 0)
        p = -p;
    if (p >= t_ext)
        p = 2 * (t_ext - 1) - p;
    y[i] = p < t ? x[r * t + p] : 0.0f;
}

void cu_pad_reflect(mg_backend *be, mg_tensor *y, const mg_tensor *x, int left, int right)
{
    mg_cuda_backend *cb = cu_of(be);
    cu_enter(cb);
    int64_t t = mg_tensor_cols(x), rows = mg_tensor_rows(x);
    int64_t max_pad = left > right ? left : right;
    int64_t extra = t <= max_pad ? max_pad - t + 1 : 0; /* as the CPU: HF zero-extends short inputs */
    int64_t t_y = t + left + right;
    if (rows * t_y <= 0)
        return;
    cu_launch(cb, pad_kernel, cu_blocks(rows * t_y, 256), 256, 0, cu_f32(y), cu_f32(x), rows, t,
                                                                   t + extra, t_y, left);
    cu_launched(cb, "pad_reflect");
}

/* y[b, i, j] = x[b, j, i]: x [C, R], y [R, C] per batch item, 32x32 tiles. */
__global__ void transpose_kernel(float *y, const float *x, int64_t c, int64_t r)
{
    cu_pdl_wait();
    __shared__ float tile[32][33];
    int64_t b = blockIdx.z;
    const float *xb = x + b * c * r;
    float *yb = y + b * r * c;
    int64_t j0 = (int64_t)blockIdx.y * 32, i0 = (int64_t)blockIdx.x * 32; /* j: rows of x, i: cols */
    for (int k = threadIdx.y; k < 32; k += blockDim.y) {
        int64_t j = j0 + k, i = i0 + threadIdx.x;
        if (j < c && i < r)
            tile[k][threadIdx.x] = xb[j * r + i];
    }
    __syncthreads();
    for (int k = threadIdx.y; k < 32; k += blockDim.y) {
        int64_t i = i0 + k, j = j0 + threadIdx.x;
        if (i < r && j < c)
            yb[i * c + j] = tile[threadIdx.x][k];
    }
}

void cu_transpose(mg_backend *be, mg_tensor *y, const mg_tensor *x, int batch)
{
    mg_cuda_backend *cb = cu_of(be);
    cu_enter(cb);
    int64_t c = mg_tensor_cols(y), r = mg_tensor_cols(x);
    if (batch <= 0 || c <= 0 || r <= 0)
        return;
    dim3 grid(cu_blocks(r, 32), cu_blocks(c, 32), (unsigned)batch);
    cu_launch(cb, transpose_kernel, grid, dim3(32, 8), 0, cu_f32(y), cu_f32(x), c, r);
    cu_launched(cb, "transpose");
}

enum { LSTM_WARPS = 8, LSTM_BT = 8 };

static __device__ float sigmoidf_(float v) { return 1.0f / (1.0f + expf(-v)); }

/* Step t for every batch item: one warp per hidden unit j reads its 4 rows
 * of w_hh once per group of LSTM_BT batch items.
 *   gates = gx[b, t] + b_hh + W_hh h_{t-1};  c = σ(f)c + σ(i)tanh(g);  h = σ(o)tanh(c) */
__global__ void __launch_bounds__(LSTM_WARPS * 32)
lstm_step_kernel(float *h, float *cell, const float *gx, const float *w_hh, const float *b_hh,
                 int B, int T, int H, int t)
{
    cu_pdl_wait();
    int j = blockIdx.x * LSTM_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (j >= H)
        return;
    for (int b0 = 0; b0 < B; b0 += LSTM_BT) {
        float acc[4][LSTM_BT];
#pragma unroll
        for (int q = 0; q < 4; q++)
#pragma unroll
            for (int i = 0; i < LSTM_BT; i++)
                acc[q][i] = 0.0f;
        if (t > 0)
            for (int k = lane; k < H; k += 32) {
                float wv[4];
#pragma unroll
                for (int q = 0; q < 4; q++)
                    wv[q] = w_hh[((int64_t)q * H + j) * H + k];
#pragma unroll
                for (int i = 0; i < LSTM_BT; i++) {
                    if (b0 + i < B) {
                        float hv = h[((int64_t)(b0 + i) * T + t - 1) * H + k];
#pragma unroll
                        for (int q = 0; q < 4; q++)
                            acc[q][i] += wv[q] * hv;
                    }
                }
            }
#pragma unroll
        for (int i = 0; i < LSTM_BT; i++) {
            float g[4];
#pragma unroll
            for (int q = 0; q < 4; q++) {
                float v = acc[q][i];
                for (int o = 16; o > 0; o >>= 1)
                    v += __shfl_xor_sync(0xffffffffu, v, o);
                g[q] = v;
            }
            int b = b0 + i;
            if (lane == 0 && b < B) {
                int64_t row = (int64_t)b * T + t;
                for (int q = 0; q < 4; q++)
                    g[q] += gx[row * 4 * H + (int64_t)q * H + j] + b_hh[q * H + j];
                float c_prev = t > 0 ? cell[(int64_t)b * H + j] : 0.0f;
                float c = sigmoidf_(g[1]) * c_prev + sigmoidf_(g[0]) * tanhf(g[2]);
                cell[(int64_t)b * H + j] = c;
                h[row * H + j] = sigmoidf_(g[3]) * tanhf(c);
            }
        }
    }
}

void cu_lstm(mg_backend *be, mg_tensor *h_out, const mg_tensor *x, const mg_tensor *w_ih,
             const mg_tensor *w_hh, const mg_tensor *b_ih, const mg_tensor *b_hh, int batch)
{
    mg_cuda_backend *cb = cu_of(be);
    cu_enter(cb);
    if (batch <= 0)
        return;
    int64_t H = mg_tensor_cols(h_out), I = mg_tensor_cols(x), rows = mg_tensor_rows(x);
    int64_t T = rows / batch;
    if (T <= 0)
        return;
    float *gx = (float *)cu_scratch(cb, 0, (size_t)(rows * 4 * H) * sizeof(float));
    float *cell = (float *)cu_scratch(cb, 2, (size_t)(batch * H) * sizeof(float));
    if (!gx || !cell)
        return;
    /* input projections of every step at once, gx [B*T, 4H] = x W_ihᵀ + b_ih,
     * one product per batch item: a call's kernel (and its bits) depends on
     * its row count (matvec.cu), and an item's audio must not depend on its
     * batch mates (generations that end together share one EnCodec batch) */
    for (int b = 0; b < batch; b++)
        cu_linear_raw(cb, gx + (int64_t)b * T * 4 * H, cu_f32(x) + (int64_t)b * T * I, w_ih->data,
                      w_ih->dtype == MG_DT_BF16, cu_f32(b_ih), T, 4 * H, I);
    unsigned blocks = cu_blocks(H, LSTM_WARPS);
    for (int64_t t = 0; t < T; t++) {
        cu_launch(cb, lstm_step_kernel, blocks, LSTM_WARPS * 32, 0,
            cu_f32(h_out), cell, gx, cu_f32(w_hh), cu_f32(b_hh), batch, (int)T, (int)H, (int)t);
        if (cu_launched(cb, "lstm step"))
            return;
    }
}
