/* linear(): y[M,N] = x[M,K]·w[N,K]ᵀ + b.
 *
 * Decode steps have few rows (M = sequences), so the product is a stream
 * over the weights: one warp per output feature reads its weight row once in
 * 16-byte loads and applies it to up to MT input rows (matvec_kernel). With
 * more rows (T5, LSTM input projections, large batches) the work is a real
 * matrix product: tensor cores (wmma, bf16 in, f32 accumulate) for bf16
 * weights (sm_80+ wmma, no Hopper-only wgmma yet), and a tiled f32 FFMA kernel for f32 weights, which keeps fp32
 * mode exact to float rounding. */
#include "cuda_backend.h"

#include <mma.h>

enum { MV_WARPS = 4, SMALL_M = 16 };

__device__ __forceinline__ float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* 8 consecutive weights as floats from one 16-byte load. */
__device__ __forceinline__ void load8(const __nv_bfloat16 *p, float *f)
{
    uint4 u = *(const uint4 *)p;
    const __nv_bfloat162 *h = (const __nv_bfloat162 *)&u;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 t = __bfloat1622float2(h[i]);
        f[2 * i] = t.x;
        f[2 * i + 1] = t.y;
    }
}
__device__ __forceinline__ void load8(const float *p, float *f)
{
    float4 a = *(const float4 *)p, b = *(const float4 *)(p + 4);
    f[0] = a.x; f[1] = a.y; f[2] = a.z; f[3] = a.w;
    f[4] = b.x; f[5] = b.y; f[6] = b.z; f[7] = b.w;
}

/* One warp per output feature n, rows m0..m0+MT of x. vec: K % 8 == 0 and
 * every row 16-byte aligned, so each lane moves 8 values per load. */
template <typename W, int MT, bool VEC>
__global__ void __launch_bounds__(MV_WARPS * 32)
matvec_kernel(float *y, const float *x, const W *w, const float *b, int M, int N, int K)
{
    int n = blockIdx.x * MV_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    int m0 = blockIdx.y * MT;
    if (n >= N)
        return;
    const W *wr = w + (int64_t)n * K;
    float acc[MT];
#pragma unroll
    for (int i = 0; i < MT; i++)
        acc[i] = 0.0f;
    if (VEC) {
#pragma unroll 4
        for (int k = lane * 8; k < K; k += 32 * 8) {
            float wf[8];
            load8(wr + k, wf);
#pragma unroll
            for (int i = 0; i < MT; i++) {
                if (m0 + i < M) {
                    float xf[8];
                    load8(x + (int64_t)(m0 + i) * K + k, xf);
#pragma unroll
                    for (int j = 0; j < 8; j++)
                        acc[i] += wf[j] * xf[j];
                }
            }
        }
    } else {
        for (int k = lane; k < K; k += 32) {
            float wv = (float)wr[k];
#pragma unroll
            for (int i = 0; i < MT; i++)
                if (m0 + i < M)
                    acc[i] += wv * x[(int64_t)(m0 + i) * K + k];
        }
    }
    float bias = b ? b[n] : 0.0f;
#pragma unroll
    for (int i = 0; i < MT; i++) {
        float s = warp_sum(acc[i]);
        if (lane == 0 && m0 + i < M)
            y[(int64_t)(m0 + i) * N + n] = s + bias;
    }
}

template <typename W, int MT>
static void launch_matvec(mg_cuda_backend *cb, float *y, const float *x, const W *w,
                          const float *b, int M, int N, int K, bool vec)
{
    dim3 grid(cu_blocks(N, MV_WARPS), cu_blocks(M, MT));
    if (vec)
        matvec_kernel<W, MT, true><<<grid, MV_WARPS * 32, 0, cb->stream>>>(y, x, w, b, M, N, K);
    else
        matvec_kernel<W, MT, false><<<grid, MV_WARPS * 32, 0, cb->stream>>>(y, x, w, b, M, N, K);
}

template <typename W>
static void matvec(mg_cuda_backend *cb, float *y, const float *x, const W *w, const float *b,
                   int M, int N, int K)
{
    bool vec = K % 8 == 0 && ((uintptr_t)x % 16) == 0 && ((uintptr_t)w % 16) == 0;
    if (M == 1)
        launch_matvec<W, 1>(cb, y, x, w, b, M, N, K, vec);
    else if (M == 2)
        launch_matvec<W, 2>(cb, y, x, w, b, M, N, K, vec);
    else if (M <= 4)
        launch_matvec<W, 4>(cb, y, x, w, b, M, N, K, vec);
    else
        launch_matvec<W, 8>(cb, y, x, w, b, M, N, K, vec);
}

/* ---- tensor cores: bf16 weights. Each activation is split into two bf16
 * parts (hi + lo, ~16 significant bits), so the only rounding left is the
 * weights' own; the second product is cheap next to loading the tiles.
 *
 * Both matrix kernels may split K across blocks (blockIdx.z) when the output
 * has too few tiles to fill the GPU; the slices are then summed in a fixed
 * order by reduce_splits_kernel, so results stay deterministic. */

enum { TM = 64, TN = 64, TK = 32, TPAD = 8, WM_THREADS = 128 };

struct gemm_args {
    float       *y;     /* output, or the split slices [splits, M, N] */
    const float *x;
    const void  *w;
    const float *b;     /* applied only when not split */
    int          M, N, K, k_chunk;
};

__global__ void __launch_bounds__(WM_THREADS) wmma_gemm_kernel(gemm_args g)
{
    using namespace nvcuda;
    __shared__ __align__(32) __nv_bfloat16 Ah[TM][TK + TPAD];
    __shared__ __align__(32) __nv_bfloat16 Al[TM][TK + TPAD];
    __shared__ __align__(32) __nv_bfloat16 Bs[TN][TK + TPAD];
    __shared__ __align__(32) float Cs[TM][TN + 4];
    const __nv_bfloat16 *w = (const __nv_bfloat16 *)g.w;
    int m0 = blockIdx.y * TM, n0 = blockIdx.x * TN;
    int kb = blockIdx.z * g.k_chunk, ke = min(g.K, kb + g.k_chunk);
    int warp = threadIdx.x / 32, wm = (warp / 2) * 32, wn = (warp % 2) * 32;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 2; j++)
            wmma::fill_fragment(acc[i][j], 0.0f);
    for (int k0 = kb; k0 < ke; k0 += TK) {
        for (int e = threadIdx.x; e < TM * TK; e += WM_THREADS) {
            int r = e / TK, c = e % TK, m = m0 + r, k = k0 + c;
            float v = m < g.M && k < ke ? g.x[(int64_t)m * g.K + k] : 0.0f;
            __nv_bfloat16 hi = __float2bfloat16_rn(v);
            Ah[r][c] = hi;
            Al[r][c] = __float2bfloat16_rn(v - __bfloat162float(hi));
            int n = n0 + r;
            Bs[r][c] = n < g.N && k < ke ? w[(int64_t)n * g.K + k] : __float2bfloat16_rn(0.0f);
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < TK; kk += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fh[2], fl[2];
            wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fb[2];
#pragma unroll
            for (int i = 0; i < 2; i++) {
                wmma::load_matrix_sync(fh[i], &Ah[wm + 16 * i][kk], TK + TPAD);
                wmma::load_matrix_sync(fl[i], &Al[wm + 16 * i][kk], TK + TPAD);
            }
#pragma unroll
            for (int j = 0; j < 2; j++)
                wmma::load_matrix_sync(fb[j], &Bs[wn + 16 * j][kk], TK + TPAD);
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
                for (int j = 0; j < 2; j++) {
                    wmma::mma_sync(acc[i][j], fl[i], fb[j], acc[i][j]);
                    wmma::mma_sync(acc[i][j], fh[i], fb[j], acc[i][j]);
                }
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 2; j++)
            wmma::store_matrix_sync(&Cs[wm + 16 * i][wn + 16 * j], acc[i][j], TN + 4,
                                    wmma::mem_row_major);
    __syncthreads();
    float *y = g.y + (int64_t)blockIdx.z * g.M * g.N;
    for (int e = threadIdx.x; e < TM * TN; e += WM_THREADS) {
        int r = e / TN, c = e % TN, m = m0 + r, n = n0 + c;
        if (m < g.M && n < g.N)
            y[(int64_t)m * g.N + n] = Cs[r][c] + (g.b ? g.b[n] : 0.0f);
    }
}

/* ---- f32 weights: 64x64 tiles, 256 threads, 4x4 outputs per thread */

enum { SK = 16, S_THREADS = 256 };

__global__ void __launch_bounds__(S_THREADS) sgemm_kernel(gemm_args g)
{
    __shared__ float As[SK][TM + 4];
    __shared__ float Bs[SK][TN + 4];
    const float *w = (const float *)g.w;
    int m0 = blockIdx.y * TM, n0 = blockIdx.x * TN;
    int kb = blockIdx.z * g.k_chunk, ke = min(g.K, kb + g.k_chunk);
    int tr = threadIdx.x / 16, tc = threadIdx.x % 16;
    float acc[4][4] = {{0}};
    for (int k0 = kb; k0 < ke; k0 += SK) {
        for (int e = threadIdx.x; e < TM * SK; e += S_THREADS) {
            int r = e / SK, c = e % SK, k = k0 + c;
            As[c][r] = m0 + r < g.M && k < ke ? g.x[(int64_t)(m0 + r) * g.K + k] : 0.0f;
            Bs[c][r] = n0 + r < g.N && k < ke ? w[(int64_t)(n0 + r) * g.K + k] : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < SK; kk++) {
            float a[4], bb[4];
#pragma unroll
            for (int i = 0; i < 4; i++) {
                a[i] = As[kk][tr + 16 * i];
                bb[i] = Bs[kk][tc + 16 * i];
            }
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++)
                    acc[i][j] += a[i] * bb[j];
        }
        __syncthreads();
    }
    float *y = g.y + (int64_t)blockIdx.z * g.M * g.N;
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int m = m0 + tr + 16 * i, n = n0 + tc + 16 * j;
            if (m < g.M && n < g.N)
                y[(int64_t)m * g.N + n] = acc[i][j] + (g.b ? g.b[n] : 0.0f);
        }
}

__global__ void reduce_splits_kernel(float *y, const float *part, const float *b, int64_t mn,
                                     int n, int splits)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= mn)
        return;
    float s = b ? b[i % n] : 0.0f;
    for (int z = 0; z < splits; z++)
        s += part[z * mn + i];
    y[i] = s;
}

void cu_linear_raw(mg_cuda_backend *cb, float *y, const float *x, const void *w, int w_bf16,
                   const float *b, int64_t M, int64_t N, int64_t K)
{
    if (M <= 0 || N <= 0)
        return;
    if (M > INT32_MAX / 2 || N > INT32_MAX / 2 || K > INT32_MAX / 2) {
        cu_fail(cb, "cuda: linear of %lld x %lld x %lld is too large", (long long)M,
                (long long)N, (long long)K);
        return;
    }
    int m = (int)M, n = (int)N, k = (int)K;
    if (M <= SMALL_M) {
        if (w_bf16)
            matvec<__nv_bfloat16>(cb, y, x, (const __nv_bfloat16 *)w, b, m, n, k);
        else
            matvec<float>(cb, y, x, (const float *)w, b, m, n, k);
        cu_launched(cb, "linear");
        return;
    }
    /* split K while the tiles alone would leave SMs idle (>= 256 of K per split) */
    int64_t tiles = (int64_t)cu_blocks(N, TN) * cu_blocks(M, TM);
    int splits = 1;
    while (tiles * splits * 2 <= 2 * (int64_t)cb->sm_count && (int64_t)splits * 2 * 256 <= K)
        splits *= 2;
    gemm_args g = {y, x, w, b, m, n, k, k};
    if (splits > 1) {
        g.k_chunk = (int)(((K + splits - 1) / splits + TK - 1) / TK * TK);
        splits = (int)((K + g.k_chunk - 1) / g.k_chunk);
        g.y = (float *)cu_scratch(cb, 3, (size_t)splits * M * N * sizeof(float));
        g.b = NULL;
        if (!g.y)
            return;
    }
    dim3 grid(cu_blocks(N, TN), cu_blocks(M, TM), (unsigned)splits);
    if (w_bf16)
        wmma_gemm_kernel<<<grid, WM_THREADS, 0, cb->stream>>>(g);
    else
        sgemm_kernel<<<grid, S_THREADS, 0, cb->stream>>>(g);
    if (cu_launched(cb, "linear") || splits == 1)
        return;
    reduce_splits_kernel<<<cu_blocks(M * N, 256), 256, 0, cb->stream>>>(y, g.y, b, M * N, n, splits);
    cu_launched(cb, "linear split reduce");
}

void cu_linear(mg_backend *be, mg_tensor *y, const mg_tensor *x, const mg_tensor *w,
               const mg_tensor *bias)
{
    mg_cuda_backend *cb = cu_of(be);
    cu_enter(cb);
    cu_linear_raw(cb, cu_f32(y), cu_f32(x), w->data, w->dtype == MG_DT_BF16,
                  bias ? cu_f32(bias) : NULL, mg_tensor_rows(x), mg_tensor_rows(w),
                  mg_tensor_cols(x));
}
