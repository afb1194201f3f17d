/* linear(): y[M,N] = x[M,K]·w[N,K]ᵀ + b.
 *
 * Up to LIN_MAX_ROWS rows (decode steps, batched steps up to 128 requests
 * with guidance, T5 over short prompts) the product is a stream over the
 * weights, read once per 128 rows:
 *  - bf16 weights with K % 32 == 0 (every musicgen matrix): mma_linear_kernel,
 *    tensor-core mma.m16n8k16 with the weights fed straight from 16-byte
 *    global loads and each activation split into two bf16 parts (hi + lo, ~16
 *    significant bits) so that the only rounding left is the weights' own;
 *  - otherwise (f32 weights: exact mode; odd K): matvec_kernel, one warp per
 *    output feature, f32 FMAs.
 * BATCH INDEPENDENCE: on both paths a row's result depends only on that row,
 * the weights and K (the split of K over warps is fixed by K alone), never on
 * how many rows share the call or where the row sits in it, so a request's
 * logits are bit-identical whatever its batch mates. Above LIN_MAX_ROWS the
 * tiled matrix kernels below take over; their bits (split-K depends on the
 * tile count, wmma vs mma order) differ from the stream kernels', so a row
 * may change in its last bits when a call crosses LIN_MAX_ROWS rows.
 *
 * Recording (cuda_backend.h) lets a linear absorb what follows it: an
 * activation of its output, an add of its output into another tensor (the
 * residual), a row copy of its output (KV cache append, LM-head scatter),
 * and further linears on the same input (q/k/v, the K LM heads) as members
 * of one launch. Each fused result is the same float operations in the same
 * order as the separate ops, so fusion changes no bits. */
#include "cuda_backend.h"

#include <mma.h>

enum { MV_WARPS = 4, LIN_MAX = 4, LIN_MAX_ROWS = 256, LN_FUSE_ROWS = 4 };

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

/* One output of a linear group: value v = x·w_n + b_n, then act, then
 * y = v (unless a later member overwrites the same y), res += v, and the
 * fused row copy y2[map(m)] = v. */
struct lin_member {
    const void      *w;
    const float     *b;
    float           *y, *res, *y2;
    const float     *y2_end;  /* end of y2's tensor (overlap checks only) */
    const cu_rowmap *map2;    /* device (metadata arena) */
    const cu_scat_ent *scat;  /* fused scatter: per output row (arena), dst NULL = none */
    int              n, act, write_y, tile0;
    int              rng0, rng_n; /* the scatter's destination ranges (cb->rng) */
};
struct lin_args {
    const float *x;
    int          M, K, n_members;
    lin_member   mb[LIN_MAX];
    /* An absorbed layer/RMS norm x = norm(ln_x) (mma kernel, few rows):
     * every block recomputes its rows' statistics, the first column of
     * blocks also writes x, and the products use the normalised values. */
    const float *ln_x, *ln_g, *ln_b;
    float       *ln_y;
    float        ln_eps;
    int          ln_rms;
};

__device__ __forceinline__ void lin_store(const lin_member &mb, int m, int n, float v)
{
    if (mb.b)
        v += mb.b[n];
    if (mb.act)
        v = cu_act(v, mb.act);
    int64_t i = (int64_t)m * mb.n + n;
    if (mb.write_y)
        mb.y[i] = v;
    if (mb.res)
        mb.res[i] += v;
    if (mb.scat) {
        cu_scat_ent e = mb.scat[m];
        if (e.dst)
            e.dst[e.dst_row * mb.n + n] = v;
    }
    if (mb.y2) {
        const cu_rowmap *p = mb.map2;
        int64_t r = m - p->src_row;
        if (r >= 0) {
            int64_t blk = r / p->src_step, j = r % p->src_step;
            if (blk < p->count && j < p->n)
                mb.y2[(p->dst_row + blk * p->dst_step + j) * mb.n + n] = v;
        }
    }
}

__device__ __forceinline__ int lin_member_of(const lin_args &a, int tile)
{
    int mi = 0;
#pragma unroll
    for (int i = 1; i < LIN_MAX; i++)
        if (i < a.n_members && tile >= a.mb[i].tile0)
            mi = i;
    return mi;
}

/* ---- f32 FMAs: one warp per output feature n, rows m0..m0+MT of x. VEC:
 * K % 8 == 0 and every row 16-byte aligned (8 values per lane per load). */
template <typename W, int MT, bool VEC>
__global__ void __launch_bounds__(MV_WARPS * 32) matvec_kernel(lin_args a)
{
    cu_pdl_wait();
    int mi = lin_member_of(a, blockIdx.x);
    const lin_member &mb = a.mb[mi];
    int n = (blockIdx.x - mb.tile0) * MV_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    int m0 = blockIdx.y * MT, M = a.M, K = a.K;
    if (n >= mb.n)
        return;
    const W *wr = (const W *)mb.w + (int64_t)n * K;
    const float *x = a.x;
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
#pragma unroll
    for (int i = 0; i < MT; i++) {
        float s = warp_sum(acc[i]);
        if (lane == 0 && m0 + i < M)
            lin_store(mb, m0 + i, n, s);
    }
}

/* ---- bf16 tensor cores for the stream: a block of KW warps owns 8*NT
 * outputs and up to 16*MT rows; warp w takes a fixed slice of K (chunks of
 * 32), then the KW partial tiles are summed in warp order. Per chunk a lane
 * loads 16 bytes of one weight row (k = 8*(lane%4) .. +8) and the matching
 * 8 activations of rows lane/4 and lane/4+8; the k order inside a chunk is
 * permuted identically for A and B, which a dot product does not see. */
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi)
{
    __nv_bfloat162 t = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&t;
}
__device__ __forceinline__ void mma_bf16(float *d, const uint32_t *a, uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

template <int MT, int NT, int KW>
__global__ void __launch_bounds__(KW * 32) mma_linear_kernel(lin_args a)
{
    cu_pdl_wait();
    /* the KW partial tiles (dynamic: up to 67 KB for MT = NT = 4) */
    extern __shared__ float red_dyn[];
    float (*red)[MT * 16][NT * 8 + 1] = (float (*)[MT * 16][NT * 8 + 1])red_dyn;
    int mi = lin_member_of(a, blockIdx.x);
    const lin_member &mb = a.mb[mi];
    int n0 = (blockIdx.x - mb.tile0) * 8 * NT, N = mb.n, M = a.M, K = a.K;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, tg = lane & 3;
    int m_base = blockIdx.y * 16 * MT;
    const __nv_bfloat16 *W = (const __nv_bfloat16 *)mb.w;
    const float *x = a.x;
    int nch = K / 32, per = (nch + KW - 1) / KW, c0 = warp * per, c1 = min(nch, c0 + per);
    float acc[MT][NT][4];
#pragma unroll
    for (int t = 0; t < MT; t++)
#pragma unroll
        for (int j = 0; j < NT; j++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                acc[t][j][e] = 0.0f;
    const __nv_bfloat16 *wrow[NT];
    bool wok[NT];
#pragma unroll
    for (int j = 0; j < NT; j++) {
        int n = n0 + j * 8 + g;
        wok[j] = n < N;
        wrow[j] = W + (int64_t)(wok[j] ? n : 0) * K + tg * 8;
    }
    __shared__ float ln_mean[MT * 16], ln_inv[MT * 16], ln_red[32];
    const bool ln = MT == 1 && a.ln_x; /* only the few-row kernel absorbs norms */
    if (ln) { /* (uniform) an absorbed norm: statistics of this block's rows */
        for (int r = 0; r < MT * 16 && m_base + r < M; r++) {
            float v[CU_LN_REG], mean, inv;
            cu_ln_stats(a.ln_x + (int64_t)(m_base + r) * K, K, a.ln_eps, a.ln_rms, ln_red, v,
                        &mean, &inv);
            if (threadIdx.x == 0) {
                ln_mean[r] = mean;
                ln_inv[r] = inv;
            }
            if (blockIdx.x == 0) {
                float *yi = a.ln_y + (int64_t)(m_base + r) * K;
#pragma unroll
                for (int q = 0; q < CU_LN_REG; q++) {
                    int64_t j = threadIdx.x + (int64_t)q * blockDim.x;
                    if (j < K)
                        yi[j] = cu_ln_apply(v[q], mean, inv, a.ln_g[j], a.ln_rms ? 0.0f : a.ln_b[j],
                                            a.ln_rms);
                }
            }
        }
        __syncthreads();
    }
    int mt_used = min(MT, (M - m_base + 15) / 16);
    enum { U = NT >= 4 ? 2 : 4 }; /* chunks whose weights are in flight together */
    for (int cu0 = c0; cu0 < c1; cu0 += U) {
        uint4 wv[U][NT];
#pragma unroll
        for (int u = 0; u < U; u++)
#pragma unroll
            for (int j = 0; j < NT; j++)
                wv[u][j] = wok[j] && cu0 + u < c1 ? __ldg((const uint4 *)(wrow[j] + (cu0 + u) * 32))
                                                  : make_uint4(0, 0, 0, 0);
#pragma unroll
        for (int u = 0; u < U; u++) {
            if (cu0 + u >= c1)
                break;
            int k = (cu0 + u) * 32 + tg * 8;
#pragma unroll
            for (int t = 0; t < MT; t++) {
                if (t >= mt_used)
                    break;
                int r0 = m_base + t * 16 + g, r1 = r0 + 8;
                float xa[8], xb[8];
                const float *xs = ln ? a.ln_x : x;
                if (r0 < M) {
                    load8(xs + (int64_t)r0 * K + k, xa);
                } else {
#pragma unroll
                    for (int e = 0; e < 8; e++)
                        xa[e] = 0.0f;
                }
                if (r1 < M) {
                    load8(xs + (int64_t)r1 * K + k, xb);
                } else {
#pragma unroll
                    for (int e = 0; e < 8; e++)
                        xb[e] = 0.0f;
                }
                if (ln) {
                    float gg[8], bb[8];
                    load8(a.ln_g + k, gg);
                    if (a.ln_rms) {
#pragma unroll
                        for (int e = 0; e < 8; e++)
                            bb[e] = 0.0f;
                    } else {
                        load8(a.ln_b + k, bb);
                    }
                    int q0 = r0 - m_base, q1 = r1 - m_base;
#pragma unroll
                    for (int e = 0; e < 8; e++) {
                        if (r0 < M)
                            xa[e] = cu_ln_apply(xa[e], ln_mean[q0], ln_inv[q0], gg[e], bb[e], a.ln_rms);
                        if (r1 < M)
                            xb[e] = cu_ln_apply(xb[e], ln_mean[q1], ln_inv[q1], gg[e], bb[e], a.ln_rms);
                    }
                }
                float ha[8], la[8], hb[8], lb[8];
#pragma unroll
                for (int e = 0; e < 8; e++) {
                    ha[e] = __bfloat162float(__float2bfloat16_rn(xa[e]));
                    la[e] = xa[e] - ha[e];
                    hb[e] = __bfloat162float(__float2bfloat16_rn(xb[e]));
                    lb[e] = xb[e] - hb[e];
                }
#pragma unroll
                for (int h = 0; h < 2; h++) { /* physical k 4h .. 4h+3 of this lane */
                    uint32_t ah[4] = {pack_bf16(ha[4 * h], ha[4 * h + 1]), pack_bf16(hb[4 * h], hb[4 * h + 1]),
                                      pack_bf16(ha[4 * h + 2], ha[4 * h + 3]), pack_bf16(hb[4 * h + 2], hb[4 * h + 3])};
                    uint32_t al[4] = {pack_bf16(la[4 * h], la[4 * h + 1]), pack_bf16(lb[4 * h], lb[4 * h + 1]),
                                      pack_bf16(la[4 * h + 2], la[4 * h + 3]), pack_bf16(lb[4 * h + 2], lb[4 * h + 3])};
#pragma unroll
                    for (int j = 0; j < NT; j++) {
                        uint32_t b0 = h ? wv[u][j].z : wv[u][j].x, b1 = h ? wv[u][j].w : wv[u][j].y;
                        mma_bf16(acc[t][j], al, b0, b1);
                        mma_bf16(acc[t][j], ah, b0, b1);
                    }
                }
            }
        }
    }
#pragma unroll
    for (int t = 0; t < MT; t++)
#pragma unroll
        for (int j = 0; j < NT; j++) {
            red[warp][t * 16 + g][j * 8 + tg * 2] = acc[t][j][0];
            red[warp][t * 16 + g][j * 8 + tg * 2 + 1] = acc[t][j][1];
            red[warp][t * 16 + g + 8][j * 8 + tg * 2] = acc[t][j][2];
            red[warp][t * 16 + g + 8][j * 8 + tg * 2 + 1] = acc[t][j][3];
        }
    __syncthreads();
    for (int e = threadIdx.x; e < MT * 16 * NT * 8; e += KW * 32) {
        int r = e / (NT * 8), col = e % (NT * 8), m = m_base + r, n = n0 + col;
        if (m >= M || n >= N)
            continue;
        float s = red[0][r][col];
#pragma unroll
        for (int w = 1; w < KW; w++)
            s += red[w][r][col];
        lin_store(mb, m, n, s);
    }
}

/* The stream kernel for a call: function, block size, outputs per block
 * (one grid column) and rows per grid row. Depends on M only through MT
 * (rows per block), which does not change a row's arithmetic. */
struct lin_pick {
    const void *func;
    int         threads, outs, rows;
    size_t      smem;
};

template <int MT, int NT, int KW> static void mma_pick(mg_cuda_backend *cb, lin_pick *p)
{
    p->func = (const void *)mma_linear_kernel<MT, NT, KW>;
    p->threads = KW * 32;
    p->outs = 8 * NT;
    p->rows = 16 * MT;
    p->smem = (size_t)KW * MT * 16 * (NT * 8 + 1) * sizeof(float);
    /* more than 48 KB of dynamic shared memory needs an opt-in, per context */
    if (p->smem > 48 * 1024 && p->smem > cb->mma_smem_raised) {
        cu_check(cb, cudaFuncSetAttribute(mma_linear_kernel<MT, NT, KW>,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          (int)p->smem), "linear shared memory");
        cb->mma_smem_raised = p->smem; /* the only kernel above 48 KB */
    }
}

/* wide: batched calls give each block more outputs (NT n8-tiles per warp),
 * so that the activations are read from L2 once per 8*NT outputs rather than
 * once per 8; MG_CUDA_WIDE=0 keeps one n8-tile per warp. The K split (KW = 8
 * warps, fixed) and so every row's bits are the same either way. */
static lin_pick pick_stream(mg_cuda_backend *cb, int w_bf16, int M, int K, bool x_al, bool w_al,
                            int wide)
{
    lin_pick p;
    p.smem = 0;
    if (w_bf16 && K % 32 == 0 && x_al && w_al) {
        /* measured on an H100 (decode steps): wide tiles pay above 64 rows
         * (x64 requests 5.58 -> 4.70 ms) and cost a little at 64 (3.55 vs
         * 3.67 ms); (2, 2) is kept for MG_CUDA_WIDE=2 experiments */
        if (M <= 16)
            mma_pick<1, 1, 8>(cb, &p);
        else if (wide == 2 && M <= 32)
            mma_pick<2, 2, 8>(cb, &p);
        else if (wide && M > 64)
            mma_pick<4, 4, 8>(cb, &p);
        else if (M <= 32)
            mma_pick<2, 1, 8>(cb, &p);
        else if (M <= 64)
            mma_pick<4, 1, 8>(cb, &p);
        else
            mma_pick<8, 1, 8>(cb, &p);
        return p;
    }
    bool vec = K % 8 == 0 && x_al && w_al;
    int mt = M == 1 ? 1 : M == 2 ? 2 : M <= 4 ? 4 : 8;
    p.threads = MV_WARPS * 32;
    p.outs = MV_WARPS;
    p.rows = mt;
#define MV_CASE(W_, MT_)                                                                       \
    if (mt == MT_)                                                                             \
        p.func = vec ? (const void *)matvec_kernel<W_, MT_, true> : (const void *)matvec_kernel<W_, MT_, false>;
    if (w_bf16) {
        MV_CASE(__nv_bfloat16, 1) MV_CASE(__nv_bfloat16, 2) MV_CASE(__nv_bfloat16, 4) MV_CASE(__nv_bfloat16, 8)
    } else {
        MV_CASE(float, 1) MV_CASE(float, 2) MV_CASE(float, 4) MV_CASE(float, 8)
    }
#undef MV_CASE
    return p;
}

static bool overlap(const void *a, const void *a_end, const void *b, const void *b_end)
{
    return (const char *)a < (const char *)b_end && (const char *)b < (const char *)a_end;
}

/* Byte ranges a group writes, for the fusion checks. */
static bool hits_scatter(const mg_cuda_backend *cb, const lin_member *mb, const void *p,
                         const void *p_end)
{
    for (int r = mb->rng0; mb->scat && r < mb->rng0 + mb->rng_n; r++)
        if (overlap(p, p_end, cb->rng[r].lo, cb->rng[r].hi))
            return true;
    return false;
}

/* Byte ranges a group writes, for the fusion checks. */
static bool hits_writes(const mg_cuda_backend *cb, const lin_args *a, const void *p,
                        const void *p_end, int skip_y_of)
{
    for (int i = 0; i < a->n_members; i++) {
        const lin_member *mb = &a->mb[i];
        size_t bytes = (size_t)a->M * mb->n * sizeof(float);
        if (i != skip_y_of && overlap(p, p_end, mb->y, (const char *)mb->y + bytes))
            return true;
        if (mb->res && overlap(p, p_end, mb->res, (const char *)mb->res + bytes))
            return true;
        if (mb->y2 && overlap(p, p_end, mb->y2, mb->y2_end))
            return true;
        if (hits_scatter(cb, mb, p, p_end))
            return true;
    }
    return false;
}

static bool hits_input(const lin_args *a, const void *p, const void *p_end)
{
    return overlap(p, p_end, a->x, a->x + (size_t)a->M * a->K) ||
           (a->ln_x && overlap(p, p_end, a->ln_x, a->ln_x + (size_t)a->M * a->K));
}

/* The last pending linear group and its member that last wrote y (whole). */
static lin_args *last_writer(mg_cuda_backend *cb, const void *y, int64_t numel, int *j)
{
    cu_cmd *c = cu_last_cmd(cb, CU_K_LINEAR);
    if (!c)
        return NULL;
    lin_args *a = (lin_args *)cu_cmd_argp(cb, c, 0);
    for (int i = a->n_members - 1; i >= 0; i--)
        if (a->mb[i].y == y) {
            if ((int64_t)a->M * a->mb[i].n != numel)
                return NULL;
            *j = i;
            return a;
        }
    return NULL;
}

int cu_fuse_act(mg_cuda_backend *cb, mg_tensor *y, int act)
{
    int j;
    lin_args *a = last_writer(cb, y->data, mg_tensor_numel(y), &j);
    if (!a)
        return 0;
    lin_member *mb = &a->mb[j];
    if (mb->act || mb->res || mb->y2 || mb->scat)
        return 0;
    mb->act = act;
    return 1;
}

int cu_fuse_add(mg_cuda_backend *cb, mg_tensor *y, const mg_tensor *x)
{
    int j;
    int64_t n = mg_tensor_numel(y);
    lin_args *a = last_writer(cb, x->data, mg_tensor_numel(x), &j);
    if (!a || n != mg_tensor_numel(x) || a->mb[j].res)
        return 0;
    const char *p = (const char *)y->data, *e = p + (size_t)n * sizeof(float);
    if (hits_input(a, p, e) || hits_writes(cb, a, p, e, -1))
        return 0;
    a->mb[j].res = (float *)y->data;
    return 1;
}

int cu_fuse_copy(mg_cuda_backend *cb, mg_tensor *dst, const mg_tensor *src, const cu_rowmap *m)
{
    int j;
    cu_cmd *c = cu_last_cmd(cb, CU_K_LINEAR);
    if (!c)
        return 0;
    lin_args *a = (lin_args *)cu_cmd_argp(cb, c, 0);
    j = -1;
    for (int i = a->n_members - 1; i >= 0 && j < 0; i--)
        if (a->mb[i].y == src->data)
            j = i;
    if (j < 0 || a->mb[j].y2 || a->mb[j].scat || mg_tensor_cols(src) != a->mb[j].n || m->src_row < 0 ||
        m->src_step < m->n || m->src_row + (m->count - 1) * m->src_step + m->n > a->M)
        return 0;
    const char *p = (const char *)dst->data, *e = p + dst->nbytes;
    if (hits_input(a, p, e) || hits_writes(cb, a, p, e, -1))
        return 0;
    /* staging must not flush the group away (a full arena): then do not fuse */
    if (cb->stage_off + 16 + sizeof *m > cb->stage_cap)
        return 0;
    const cu_rowmap *dm = (const cu_rowmap *)cu_stage(cb, m, sizeof *m);
    if (!dm)
        return 1; /* error recorded */
    a->mb[j].y2 = (float *)dst->data;
    a->mb[j].y2_end = (const float *)e;
    a->mb[j].map2 = dm;
    return 1;
}

/* ---- large M (> LIN_MAX_ROWS rows: T5 over long prompts, EnCodec LSTM input
 * projections): tiled matrix products. Tensor cores: bf16 weights. Each activation is split into two bf16
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
    cu_pdl_wait();
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
    cu_pdl_wait();
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
    cu_pdl_wait();
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= mn)
        return;
    float s = b ? b[i % n] : 0.0f;
    for (int z = 0; z < splits; z++)
        s += part[z * mn + i];
    y[i] = s;
}

int cu_fuse_scatter(mg_cuda_backend *cb, mg_tensor *const *dst, const int64_t *dst_rows,
                    const mg_tensor *src, const int64_t *src_rows, int n)
{
    cu_cmd *c = cu_last_cmd(cb, CU_K_LINEAR);
    if (!c)
        return 0;
    lin_args *a = (lin_args *)cu_cmd_argp(cb, c, 0);
    int j = -1;
    for (int i = a->n_members - 1; i >= 0 && j < 0; i--)
        if (a->mb[i].y == src->data)
            j = i;
    if (j < 0 || a->mb[j].y2 || a->mb[j].scat || mg_tensor_cols(src) != a->mb[j].n || n > a->M)
        return 0;
    size_t table = (size_t)a->M * sizeof(cu_scat_ent);
    if (cb->stage_off + 16 + table > cb->stage_cap)
        return 0;
    cu_scat_ent *t = (cu_scat_ent *)calloc((size_t)a->M, sizeof *t);
    if (!t)
        return 0;
    int ok = 1, rng_n = 0;
    for (int i = 0; i < n && ok; i++) {
        int64_t r = src_rows[i];
        const char *p = (const char *)dst[i]->data, *e = p + dst[i]->nbytes;
        ok = r >= 0 && r < a->M && !t[r].dst && mg_tensor_cols(dst[i]) == a->mb[j].n &&
             !hits_input(a, p, e) && !hits_writes(cb, a, p, e, -1);
        if (ok) {
            t[r].dst = cu_f32(dst[i]);
            t[r].dst_row = dst_rows[i];
        }
    }
    if (ok) { /* the destination ranges, for later checks (consecutive repeats once) */
        if (cb->n_rng + n > cb->cap_rng) {
            int cap = 2 * (cb->n_rng + n) + 64;
            cu_range *p = (cu_range *)realloc(cb->rng, (size_t)cap * sizeof *p);
            if (!p)
                ok = 0;
            else {
                cb->rng = p;
                cb->cap_rng = cap;
            }
        }
        for (int i = 0; i < n && ok; i++) {
            const char *p = (const char *)dst[i]->data;
            if (rng_n && cb->rng[cb->n_rng + rng_n - 1].lo == p)
                continue;
            cb->rng[cb->n_rng + rng_n++] = {p, p + dst[i]->nbytes};
        }
    }
    const cu_scat_ent *d = ok ? (const cu_scat_ent *)cu_stage(cb, t, table) : NULL;
    free(t);
    if (!ok)
        return 0;
    if (!d)
        return 1; /* error recorded */
    a->mb[j].scat = d;
    a->mb[j].rng0 = cb->n_rng;
    a->mb[j].rng_n = rng_n;
    cb->n_rng += rng_n;
    return 1;
}

/* Records a stream linear (M <= LIN_MAX_ROWS), joining the pending group
 * when it reads the same input. */
static void stream_linear(mg_cuda_backend *cb, float *y, const float *x, const void *w,
                          int w_bf16, const float *b, int M, int N, int K)
{
    bool x_al = (uintptr_t)x % 16 == 0 && K % 4 == 0;
    bool w_al = (uintptr_t)w % 16 == 0 && K % 8 == 0;
    lin_pick p = pick_stream(cb, w_bf16, M, K, x_al, w_al, cb->wide);
    lin_member mb;
    memset(&mb, 0, sizeof mb);
    mb.w = w;
    mb.b = b;
    mb.y = y;
    mb.n = N;
    mb.write_y = 1;
    unsigned tiles = cu_blocks(N, p.outs), rows = cu_blocks(M, p.rows);
    cu_cmd *c = cu_last_cmd(cb, CU_K_LINEAR);
    if (c && c->func == p.func && c->grid.y == rows) {
        lin_args *a = (lin_args *)cu_cmd_argp(cb, c, 0);
        const char *ye = (const char *)(y + (size_t)M * N);
        bool ok = a->x == x && a->M == M && a->K == K && a->n_members < LIN_MAX &&
                  !hits_input(a, y, ye);
        for (int i = 0; ok && i < a->n_members; i++) {
            const lin_member *o = &a->mb[i];
            size_t bytes = (size_t)M * o->n * sizeof(float);
            if (o->res && overlap(y, ye, o->res, (const char *)o->res + bytes))
                ok = false;
            if (o->y2 && overlap(y, ye, o->y2, o->y2_end))
                ok = false;
            if (hits_scatter(cb, o, y, ye))
                ok = false;
            if (overlap(y, ye, o->y, (const char *)o->y + bytes) && !(o->y == y && o->n == N))
                ok = false;
        }
        if (ok) {
            for (int i = 0; i < a->n_members; i++)
                if (a->mb[i].y == y)
                    a->mb[i].write_y = 0; /* overwritten by the new member */
            mb.tile0 = (int)c->grid.x;
            a->mb[a->n_members++] = mb;
            c->grid.x += tiles;
            return;
        }
    }
    lin_args a;
    memset(&a, 0, sizeof a);
    a.x = x;
    a.M = M;
    a.K = K;
    a.n_members = 1;
    a.mb[0] = mb;
    /* Absorb the norm that just produced x (few rows only: each block
     * recomputes the statistics of its rows, M block reductions). Not in
     * place, exactly these M rows, a row that fits the registers. Opt-in
     * (MG_CUDA_FUSE_NORM=1): same bits, but on an H100 the decode step went
     * from 1.60 to 1.90 ms, the statistics lengthening every linear more
     * than the norm's own launch cost. */
    cu_cmd *nc = cb->fuse_norm ? cu_last_cmd(cb, CU_K_NORM) : NULL;
    if (nc && M <= LN_FUSE_ROWS && p.threads == CU_LN_THREADS && p.rows >= M &&
        p.func == (const void *)mma_linear_kernel<1, 1, 8> && K <= CU_LN_REG * CU_LN_THREADS &&
        nc->grid.x == (unsigned)M) {
        float *ny = *(float **)cu_cmd_argp(cb, nc, 0);
        const float *nx = *(const float **)cu_cmd_argp(cb, nc, 1);
        int64_t nd = *(int64_t *)cu_cmd_argp(cb, nc, 4);
        const char *ye = (const char *)(ny + (size_t)M * K);
        if (ny == x && nd == K && !overlap(ny, ye, nx, nx + (size_t)M * K) &&
            !overlap(y, (const char *)(y + (size_t)M * N), nx, nx + (size_t)M * K)) {
            a.ln_x = nx;
            a.ln_y = ny;
            a.ln_g = *(const float **)cu_cmd_argp(cb, nc, 2);
            a.ln_b = *(const float **)cu_cmd_argp(cb, nc, 3);
            a.ln_eps = *(float *)cu_cmd_argp(cb, nc, 5);
            a.ln_rms = *(int *)cu_cmd_argp(cb, nc, 6);
            /* drop the norm's command: it is the last one, its arguments the blob's tail */
            cb->blob_len = nc->argoff[0];
            cb->n_cmds--;
        }
    }
    size_t ci = cu_cmd_begin(cb, p.func, dim3(tiles, rows), p.threads, p.smem, CU_K_LINEAR);
    cu_cmd_arg(cb, ci, &a, sizeof a, alignof(lin_args));
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
    if (M <= LIN_MAX_ROWS) {
        stream_linear(cb, y, x, w, w_bf16, b, m, n, k);
        return;
    }
    /* split K while the tiles alone would leave SMs idle (>= 256 of K per split) */
    int64_t tiles = (int64_t)cu_blocks(N, TN) * cu_blocks(M, TM);
    int splits = 1;
    while (tiles * splits * 2 <= 2 * (int64_t)cb->sm_count && (int64_t)splits * 2 * 256 <= K)
        splits *= 2;
    gemm_args g;
    memset(&g, 0, sizeof g);
    g.y = y;
    g.x = x;
    g.w = w;
    g.b = b;
    g.M = m;
    g.N = n;
    g.K = k;
    g.k_chunk = k;
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
        cu_launch(cb, wmma_gemm_kernel, grid, WM_THREADS, 0, g);
    else
        cu_launch(cb, sgemm_kernel, grid, S_THREADS, 0, g);
    if (splits > 1)
        cu_launch(cb, reduce_splits_kernel, cu_blocks(M * N, 256), 256, 0, y, (const float *)g.y, b,
                  M * N, n, splits);
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
