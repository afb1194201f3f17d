/* Row norms (one block per row), elementwise activations, embedding lookups
 * and the f32 -> bf16 weight conversion. */
#include "cuda_backend.h"

#include <float.h>
#include <string.h>

enum { EW = 256 };


/* Two passes over the row (mean, then centred variance) as the CPU does,
 * one block per row. Rows up to CU_LN_REG * CU_LN_THREADS values stay in
 * registers between the passes (cu_ln_stats, shared with the linear that
 * may absorb this norm); longer ones take the loop below, same arithmetic.
 * In place (y == x) is safe: each thread writes only what it read. */
__global__ void layer_norm_kernel(float *y, const float *x, const float *g, const float *b,
                                  int64_t d, float eps, int rms)
{
    cu_pdl_wait();
    __shared__ float red[32];
    const float *xi = x + blockIdx.x * d;
    float *yi = y + blockIdx.x * d;
    if (d <= (int64_t)CU_LN_REG * blockDim.x) {
        float v[CU_LN_REG], mean, inv;
        cu_ln_stats(xi, d, eps, rms, red, v, &mean, &inv);
#pragma unroll
        for (int r = 0; r < CU_LN_REG; r++) {
            int64_t j = threadIdx.x + (int64_t)r * blockDim.x;
            if (j < d)
                yi[j] = cu_ln_apply(v[r], mean, inv, g[j], rms ? 0.0f : b[j], rms);
        }
        return;
    }
    float mean = 0.0f;
    if (!rms) {
        float s = 0.0f;
        for (int64_t j = threadIdx.x; j < d; j += blockDim.x)
            s = __fadd_rn(s, xi[j]);
        mean = cu_block_sum(s, red) / (float)d;
    }
    float ss = 0.0f;
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
        float c = __fsub_rn(xi[j], mean);
        ss = __fadd_rn(ss, __fmul_rn(c, c));
    }
    float inv = 1.0f / sqrtf(__fadd_rn(cu_block_sum(ss, red) / (float)d, eps));
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x)
        yi[j] = cu_ln_apply(xi[j], mean, inv, g[j], rms ? 0.0f : b[j], rms);
}

void cu_rms_norm(mg_backend *be, mg_tensor *y, const mg_tensor *x, const mg_tensor *w, float eps)
{
    mg_cuda_backend *cb = cu_of(be);
    cu_enter(cb);
    int64_t rows = mg_tensor_rows(x);
    if (rows <= 0)
        return;
    cu_launch_k(cb, CU_K_NORM, layer_norm_kernel, (unsigned)rows, CU_LN_THREADS, 0, cu_f32(y),
                cu_f32(x), cu_f32(w), (const float *)NULL, mg_tensor_cols(x), eps, 1);
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
    cu_launch_k(cb, CU_K_NORM, layer_norm_kernel, (unsigned)rows, CU_LN_THREADS, 0, cu_f32(y),
                cu_f32(x), cu_f32(w), cu_f32(b), mg_tensor_cols(x), eps, 0);
    cu_launched(cb, "layer_norm");
}

__global__ void add_kernel(float *y, const float *x, int64_t n)
{
    cu_pdl_wait();
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        y[i] += x[i];
}

void cu_add(mg_backend *be, mg_tensor *y, const mg_tensor *x)
{
    mg_cuda_backend *cb = cu_of(be);
    cu_enter(cb);
    int64_t n = mg_tensor_numel(y);
    if (n <= 0 || cu_fuse_add(cb, y, x))
        return;
    cu_launch(cb, add_kernel, cu_blocks(n, EW), EW, 0, cu_f32(y), cu_f32(x), n);
    cu_launched(cb, "add");
}

__global__ void scale_rows_kernel(float *y, const float *s, int64_t cols, int64_t n)
{
    cu_pdl_wait();
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
    cu_launch(cb, scale_rows_kernel, cu_blocks(n, EW), EW, 0, cu_f32(y), s, cols, n);
    cu_launched(cb, "scale_rows");
}

__global__ void act_kernel(float *y, int64_t n, int act)
{
    cu_pdl_wait();
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        y[i] = cu_act(y[i], act);
}

static void act(mg_backend *be, mg_tensor *y, int kind, const char *name)
{
    mg_cuda_backend *cb = cu_of(be);
    cu_enter(cb);
    int64_t n = mg_tensor_numel(y);
    if (n <= 0 || cu_fuse_act(cb, y, kind))
        return;
    cu_launch(cb, act_kernel, cu_blocks(n, EW), EW, 0, cu_f32(y), n, kind);
}

void cu_relu(mg_backend *be, mg_tensor *y) { act(be, y, CU_ACT_RELU, "relu"); }
void cu_gelu(mg_backend *be, mg_tensor *y) { act(be, y, CU_ACT_GELU, "gelu"); }
void cu_elu(mg_backend *be, mg_tensor *y) { act(be, y, CU_ACT_ELU, "elu"); }

/* One block per row: y[m] = (accumulate ? y[m] : 0) + table_0[ids_0[m]] +
 * table_1[ids_1[m]] + ..., added in that order; consecutive accumulating
 * embeds into the same rows (the K codebooks, then positions) are merged
 * into one launch. Tables may be stored bf16 (matrix weights). */
enum { EMB_MAX = 8 };
struct embed_args {
    float         *y;
    int64_t        d, m;
    int            n_tab, accumulate;
    const void    *tab[EMB_MAX];
    const int32_t *ids[EMB_MAX];
    int            bf16[EMB_MAX];
};

__global__ void embed_kernel(embed_args a)
{
    cu_pdl_wait();
    float *o = a.y + blockIdx.x * a.d;
    for (int64_t j = threadIdx.x; j < a.d; j += blockDim.x) {
        float v = 0.0f;
        for (int t = 0; t < a.n_tab; t++) {
            int64_t at = (int64_t)a.ids[t][blockIdx.x] * a.d + j;
            float e = a.bf16[t] ? __bfloat162float(((const __nv_bfloat16 *)a.tab[t])[at])
                                : ((const float *)a.tab[t])[at];
            v = t == 0 && !a.accumulate ? e : (t == 0 ? o[j] : v) + e;
        }
        o[j] = v;
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
    int bf16 = table->dtype == MG_DT_BF16;
    cu_cmd *c = accumulate ? cu_last_cmd(cb, CU_K_EMBED) : NULL;
    if (c) {
        embed_args *a = (embed_args *)cu_cmd_argp(cb, c, 0);
        if (a->y == cu_f32(y) && a->d == d && a->m == m && a->n_tab < EMB_MAX) {
            a->tab[a->n_tab] = table->data;
            a->ids[a->n_tab] = dids;
            a->bf16[a->n_tab++] = bf16;
            return;
        }
    }
    embed_args a;
    memset(&a, 0, sizeof a);
    a.y = cu_f32(y);
    a.d = d;
    a.m = m;
    a.n_tab = 1;
    a.accumulate = accumulate;
    a.tab[0] = table->data;
    a.ids[0] = dids;
    a.bf16[0] = bf16;
    cu_launch_k(cb, CU_K_EMBED, embed_kernel, (unsigned)m, d >= 256 ? 256 : 64, 0, a);
}

__global__ void to_bf16_kernel(__nv_bfloat16 *dst, const float *src, int64_t n)
{
    cu_pdl_wait();
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        dst[i] = __float2bfloat16_rn(src[i]);
}

void cu_f32_to_bf16(mg_cuda_backend *cb, __nv_bfloat16 *dst, const float *src, int64_t n)
{
    if (n <= 0)
        return;
    cu_launch(cb, to_bf16_kernel, cu_blocks(n, EW), EW, 0, dst, src, n);
    cu_launched(cb, "f32 to bf16");
}
