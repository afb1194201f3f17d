/* Row norms (one block per row), elementwise activations, embedding lookups
 * and the f32 -> bf16 weight conversion. */
#include "cuda_backend.h"

#include <float.h>

enum { EW = 256, NORM_THREADS = 256 };

/* Sum over the block; every thread gets the result. red: 32 floats of smem. */
static __device__ float block_sum(float v, float *red)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    int w = threadIdx.x / 32, l = threadIdx.x % 32, nw = (blockDim.x + 31) / 32;
    __syncthreads(); /* red may still be read by a previous call */
    if (l == 0)
        red[w] = v;
    __syncthreads();
    v = l < nw ? red[l] : 0.0f;
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Two passes over the row (mean, then centred variance) as the CPU does:
 * in place (y == x) is safe because each thread writes only what it read. */
__global__ void layer_norm_kernel(float *y, const float *x, const float *g, const float *b,
                                  int64_t d, float eps, int rms)
{
    __shared__ float red[32];
    const float *xi = x + blockIdx.x * d;
    float *yi = y + blockIdx.x * d;
    float mean = 0.0f;
    if (!rms) {
        float s = 0.0f;
        for (int64_t j = threadIdx.x; j < d; j += blockDim.x)
            s += xi[j];
        mean = block_sum(s, red) / (float)d;
    }
    float ss = 0.0f;
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
        float c = xi[j] - mean;
        ss += c * c;
    }
    float inv = 1.0f / sqrtf(block_sum(ss, red) / (float)d + eps);
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
        if (rms)
            yi[j] = g[j] * (xi[j] * inv);
        else
            yi[j] = (xi[j] - mean) * inv * g[j] + b[j];
    }
}

void cu_rms_norm(mg_backend *be, mg_tensor *y, const mg_tensor *x, const mg_tensor *w, float eps)
{
    mg_cuda_backend *cb = cu_of(be);
    cu_enter(cb);
    int64_t rows = mg_tensor_rows(x);
    if (rows <= 0)
        return;
    layer_norm_kernel<<<(unsigned)rows, NORM_THREADS, 0, cb->stream>>>(
        cu_f32(y), cu_f32(x), cu_f32(w), NULL, mg_tensor_cols(x), eps, 1);
    cu_launched(cb, "rms_norm");
}

void cu_layer_norm(mg_backend *be, mg_tensor *y, const mg_tensor *x, const mg_tensor *w,
                   const mg_tensor *b, float eps)
{
    mg_cuda_backend *cb = cu_of(be);
    cu_enter(cb);
    int64_t rows = mg_tensor_rows(x);
    if (rows <= 0)
        return;
    layer_norm_kernel<<<(unsigned)rows, NORM_THREADS, 0, cb->stream>>>(
        cu_f32(y), cu_f32(x), cu_f32(w), cu_f32(b), mg_tensor_cols(x), eps, 0);
    cu_launched(cb, "layer_norm");
}

__global__ void add_kernel(float *y, const float *x, int64_t n)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        y[i] += x[i];
}

void cu_add(mg_backend *be, mg_tensor *y, const mg_tensor *x)
{
    mg_cuda_backend *cb = cu_of(be);
    cu_enter(cb);
    int64_t n = mg_tensor_numel(y);
    if (n <= 0)
        return;
    add_kernel<<<cu_blocks(n, EW), EW, 0, cb->stream>>>(cu_f32(y), cu_f32(x), n);
    cu_launched(cb, "add");
}

__global__ void scale_rows_kernel(float *y, const float *s, int64_t cols, int64_t n)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        y[i] *= s[i / cols];
}

void cu_scale_rows(mg_backend *be, mg_tensor *y, const float *row_scale)
{
    mg_cuda_backend *cb = cu_of(be);
    cu_enter(cb);
    int64_t rows = mg_tensor_rows(y), cols = mg_tensor_cols(y), n = rows * cols;
    if (n <= 0)
        return;
    const float *s = (const float *)cu_stage(cb, row_scale, (size_t)rows * sizeof(float));
    if (!s)
        return;
    scale_rows_kernel<<<cu_blocks(n, EW), EW, 0, cb->stream>>>(cu_f32(y), s, cols, n);
    cu_launched(cb, "scale_rows");
}

enum { ACT_RELU, ACT_GELU, ACT_ELU };

__global__ void act_kernel(float *y, int64_t n, int act)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    float v = y[i];
    if (act == ACT_RELU)
        v = v > 0 ? v : 0.0f;
    else if (act == ACT_GELU)
        v = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    else
        v = v > 0 ? v : expm1f(v);
    y[i] = v;
}

static void act(mg_backend *be, mg_tensor *y, int kind, const char *name)
{
    mg_cuda_backend *cb = cu_of(be);
    cu_enter(cb);
    int64_t n = mg_tensor_numel(y);
    if (n <= 0)
        return;
    act_kernel<<<cu_blocks(n, EW), EW, 0, cb->stream>>>(cu_f32(y), n, kind);
    cu_launched(cb, name);
}

void cu_relu(mg_backend *be, mg_tensor *y) { act(be, y, ACT_RELU, "relu"); }
void cu_gelu(mg_backend *be, mg_tensor *y) { act(be, y, ACT_GELU, "gelu"); }
void cu_elu(mg_backend *be, mg_tensor *y) { act(be, y, ACT_ELU, "elu"); }

/* One block row per id; tables may be stored bf16 (matrix weights). */
template <typename T>
__global__ void embed_kernel(float *y, const T *table, const int32_t *ids, int64_t d,
                             int accumulate)
{
    const T *row = table + (int64_t)ids[blockIdx.x] * d;
    float *o = y + blockIdx.x * d;
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
        float v = (float)row[j];
        o[j] = accumulate ? o[j] + v : v;
    }
}

void cu_embed(mg_backend *be, mg_tensor *y, const mg_tensor *table, const int32_t *ids,
              int64_t m, int accumulate)
{
    mg_cuda_backend *cb = cu_of(be);
    cu_enter(cb);
    if (m <= 0)
        return;
    const int32_t *dids = (const int32_t *)cu_stage(cb, ids, (size_t)m * sizeof(int32_t));
    if (!dids)
        return;
    int64_t d = mg_tensor_cols(table);
    int threads = d >= 256 ? 256 : 64;
    if (table->dtype == MG_DT_BF16)
        embed_kernel<__nv_bfloat16><<<(unsigned)m, threads, 0, cb->stream>>>(
            cu_f32(y), (const __nv_bfloat16 *)table->data, dids, d, accumulate);
    else
        embed_kernel<float><<<(unsigned)m, threads, 0, cb->stream>>>(cu_f32(y), cu_f32(table),
                                                                     dids, d, accumulate);
    cu_launched(cb, "embed");
}

__global__ void to_bf16_kernel(__nv_bfloat16 *dst, const float *src, int64_t n)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        dst[i] = __float2bfloat16_rn(src[i]);
}

void cu_f32_to_bf16(mg_cuda_backend *cb, __nv_bfloat16 *dst, const float *src, int64_t n)
{
    if (n <= 0)
        return;
    to_bf16_kernel<<<cu_blocks(n, EW), EW, 0, cb->stream>>>(dst, src, n);
    cu_launched(cb, "f32 to bf16");
}
