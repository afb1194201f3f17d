/* Attention over a KV cache (decoder self-attention), over the cached text
 * keys (cross-attention) and inside T5 (position bias, key masks).
 *
 * One block handles one (query row, head) and a chunk of CHUNK keys: scores
 * go to shared memory, then softmax statistics and the weighted sum of values.
 * Long caches are split across blocks (more SMs busy at batch 1), and a second
 * kernel merges the chunks with the usual max/sum rescaling. Masked keys get
 * -FLT_MAX added, as on the CPU, so a fully masked row averages every value. */
#include "cuda_backend.h"

#include <float.h>

enum { ATT_THREADS = 128, CHUNK = 256 }; /* 64 measured no faster on an H100 */

struct attn_seq_dev {
    const void  *k, *v;   /* F32, or BF16 with kv_bf16 */
    int64_t      k_row0;
    int          n_keys, q_pos;
    int64_t      mask_off; /* into the mask bytes; -1: no mask */
};

struct attn_args {
    float                *out;
    const float          *q;
    const attn_seq_dev   *seqs;
    const uint8_t        *masks;
    const float          *bias;   /* [heads, q_per_seq, n_keys] or NULL */
    float                *part_o; /* [rowheads, n_split, dh] */
    float                *part_ml;/* [rowheads, n_split, 2] */
    int                  *counters; /* [rowheads], zero between launches */
    int                   q_per_seq, heads, dh, causal, n_split;
    int                   vec;    /* dh % 4 == 0 and every key row 16-byte aligned */
    int                   kv_bf16; /* keys/values stored as BF16 (the backend's kv_bf16) */
    float                 scale;
};

static __device__ float block_reduce(float v, float *red, bool is_max)
{
    for (int o = 16; o > 0; o >>= 1) {
        float u = __shfl_xor_sync(0xffffffffu, v, o);
        v = is_max ? fmaxf(v, u) : v + u;
    }
    int w = threadIdx.x / 32, l = threadIdx.x % 32, nw = blockDim.x / 32;
    __syncthreads();
    if (l == 0)
        red[w] = v;
    __syncthreads();
    v = l < nw ? red[l] : (is_max ? -INFINITY : 0.0f);
    for (int o = 16; o > 0; o >>= 1) {
        float u = __shfl_xor_sync(0xffffffffu, v, o);
        v = is_max ? fmaxf(v, u) : v + u;
    }
    return v;
}

/* Four consecutive key/value entries from element index i (a multiple of 4)
 * of a cache row block: one 16-byte load of F32, one 8-byte load of BF16
 * (widened exactly). */
template <bool BF16>
static __device__ __forceinline__ float4 kv_load4(const void *base, int64_t i)
{
    if (!BF16)
        return *((const float4 *)base + i / 4);
    uint2 u = *((const uint2 *)base + i / 4);
    return make_float4(__uint_as_float(u.x << 16), __uint_as_float(u.x & 0xffff0000u),
                       __uint_as_float(u.y << 16), __uint_as_float(u.y & 0xffff0000u));
}
template <bool BF16> static __device__ __forceinline__ float kv_load1(const void *base, int64_t i)
{
    return BF16 ? __bfloat162float(((const __nv_bfloat16 *)base)[i]) : ((const float *)base)[i];
}

/* dynamic smem: dh floats of q, CHUNK scores, 4*ATT_THREADS partial outputs;
 * BF: keys/values in BF16 (a.kv_bf16) */
template <bool BF> static __device__ __forceinline__ void attn_chunk_body(const attn_args &a)
{
    extern __shared__ float sm[];
    __shared__ float red[32];
    float *qs = sm, *sc = sm + a.dh, *po = sc + CHUNK;
    int rowhead = blockIdx.x, split = blockIdx.y;
    int h = rowhead % a.heads, row = rowhead / a.heads;
    int s = row / a.q_per_seq, i = row % a.q_per_seq;
    attn_seq_dev sq = a.seqs[s];
    int hd = a.heads * a.dh, j0 = split * CHUNK;
    int j1 = min(sq.n_keys, j0 + CHUNK);
    int64_t part = (int64_t)rowhead * a.n_split + split;
    if (j0 >= j1) { /* this sequence has fewer keys than the longest one */
        for (int d = threadIdx.x; d < a.dh; d += blockDim.x)
            a.part_o[part * a.dh + d] = 0.0f;
        if (threadIdx.x == 0) {
            a.part_ml[2 * part] = -INFINITY;
            a.part_ml[2 * part + 1] = 0.0f;
        }
        return;
    }
    for (int d = threadIdx.x; d < a.dh; d += blockDim.x)
        qs[d] = a.q[(int64_t)row * hd + (int64_t)h * a.dh + d];
    __syncthreads();
    /* element index of this sequence's and head's first key/value */
    const int64_t kv0 = sq.k_row0 * hd + (int64_t)h * a.dh;
    /* one key per thread: its row in 16-byte loads, all independent, while q
     * is a shared-memory broadcast (a warp-per-key loop waited on each load) */
    for (int j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
        const int64_t kj = kv0 + (int64_t)j * hd;
        float dot = 0.0f;
        if (a.vec) {
            for (int d = 0; d < a.dh; d += 4) {
                float4 kv = kv_load4<BF>(sq.k, kj + d);
                dot += qs[d] * kv.x;
                dot += qs[d + 1] * kv.y;
                dot += qs[d + 2] * kv.z;
                dot += qs[d + 3] * kv.w;
            }
        } else {
            for (int d = 0; d < a.dh; d++)
                dot += qs[d] * kv_load1<BF>(sq.k, kj + d);
        }
        float v = dot * a.scale;
        if (a.bias)
            v += a.bias[((int64_t)h * a.q_per_seq + i) * sq.n_keys + j];
        bool masked = (sq.mask_off >= 0 && !a.masks[sq.mask_off + j]) ||
                      (a.causal && j > sq.q_pos + i);
        if (masked)
            v += -FLT_MAX;
        sc[j - j0] = v;
    }
    __syncthreads();
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < j1 - j0; j += blockDim.x)
        mx = fmaxf(mx, sc[j]);
    mx = block_reduce(mx, red, true);
    float sum = 0.0f;
    for (int j = threadIdx.x; j < j1 - j0; j += blockDim.x) {
        float e = expf(sc[j] - mx);
        sc[j] = e;
        sum += e;
    }
    sum = block_reduce(sum, red, false); /* its barriers also publish sc */
    bool last = a.n_split == 1;
    if (a.vec && a.dh / 4 <= (int)blockDim.x) {
        /* groups of dh/4 threads, 4 outputs each (16-byte loads of v), each
         * group summing every ng-th key; then the groups in order */
        int tpg = a.dh / 4, ng = (int)blockDim.x / tpg, g = threadIdx.x / tpg;
        int d4 = (threadIdx.x % tpg) * 4;
        float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (g < ng) {
#pragma unroll 4
            for (int j = j0 + g; j < j1; j += ng) {
                float p = sc[j - j0];
                float4 v = kv_load4<BF>(sq.v, kv0 + (int64_t)j * hd + d4);
                acc.x += p * v.x;
                acc.y += p * v.y;
                acc.z += p * v.z;
                acc.w += p * v.w;
            }
        }
        float4 *po4 = (float4 *)po;
        po4[threadIdx.x] = acc;
        __syncthreads();
        for (int dd = threadIdx.x; dd < a.dh; dd += blockDim.x) {
            float o = 0.0f;
            for (int gg = 0; gg < ng; gg++)
                o += po[(gg * tpg + dd / 4) * 4 + dd % 4];
            if (last)
                a.out[(int64_t)row * hd + (int64_t)h * a.dh + dd] = o / sum;
            else
                a.part_o[part * a.dh + dd] = o;
        }
        __syncthreads();
    } else {
        /* groups of dh threads each sum every n_groups-th key */
        int n_groups = a.dh <= (int)blockDim.x ? (int)blockDim.x / a.dh : 1;
        int g = threadIdx.x / a.dh;
        for (int d0 = 0; d0 < a.dh; d0 += blockDim.x) {
            int d = n_groups > 1 ? threadIdx.x % a.dh : d0 + threadIdx.x;
            float acc = 0.0f;
            if (g < n_groups && d < a.dh) {
                int step = n_groups;
#pragma unroll 8
                for (int j = j0 + (n_groups > 1 ? g : 0); j < j1; j += step)
                    acc += sc[j - j0] * kv_load1<BF>(sq.v, kv0 + (int64_t)j * hd + d);
            }
            po[threadIdx.x] = acc;
            __syncthreads();
            if (threadIdx.x < min(a.dh - d0, n_groups > 1 ? a.dh : (int)blockDim.x)) {
                int dd = n_groups > 1 ? threadIdx.x : d0 + threadIdx.x;
                float o = 0.0f;
                for (int gg = 0; gg < n_groups; gg++)
                    o += po[gg * (n_groups > 1 ? a.dh : 0) + threadIdx.x];
                if (last)
                    a.out[(int64_t)row * hd + (int64_t)h * a.dh + dd] = o / sum;
                else
                    a.part_o[part * a.dh + dd] = o;
            }
            __syncthreads();
            if (n_groups > 1)
                break;
        }
    }
    if (!last && threadIdx.x == 0) {
        a.part_ml[2 * part] = mx;
        a.part_ml[2 * part + 1] = sum;
    }
}

/* Merges the n_split chunks of one (row, head) with the usual max/sum
 * rescaling, in chunk order; the chunks come from other blocks of the same
 * grid, so they are read past L1. */
static __device__ void attn_merge_row(const attn_args &a, int rowhead)
{
    int h = rowhead % a.heads, row = rowhead / a.heads;
    const float *ml = a.part_ml + (int64_t)rowhead * a.n_split * 2;
    float M = -INFINITY;
    for (int s = 0; s < a.n_split; s++)
        M = fmaxf(M, __ldcg(&ml[2 * s]));
    float L = 0.0f;
    for (int s = 0; s < a.n_split; s++)
        if (__ldcg(&ml[2 * s + 1]) > 0)
            L += __ldcg(&ml[2 * s + 1]) * expf(__ldcg(&ml[2 * s]) - M);
    for (int d = threadIdx.x; d < a.dh; d += blockDim.x) {
        float o = 0.0f;
        for (int s = 0; s < a.n_split; s++)
            if (__ldcg(&ml[2 * s + 1]) > 0)
                o += __ldcg(&a.part_o[((int64_t)rowhead * a.n_split + s) * a.dh + d]) *
                     expf(__ldcg(&ml[2 * s]) - M);
        a.out[(int64_t)row * a.heads * a.dh + (int64_t)h * a.dh + d] = o / L;
    }
}

/* One block per (row, head, chunk of keys). With several chunks the last
 * block of a (row, head) to finish merges them (a counter per (row, head),
 * reset by that block for the next launch): no second kernel. */
template <bool BF> __global__ void __launch_bounds__(ATT_THREADS) attn_chunk_kernel(attn_args a)
{
    cu_pdl_wait();
    attn_chunk_body<BF>(a);
    if (a.n_split == 1)
        return;
    __shared__ int is_last;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0)
        is_last = atomicAdd(&a.counters[blockIdx.x], 1) == a.n_split - 1;
    __syncthreads();
    if (!is_last)
        return;
    __threadfence();
    attn_merge_row(a, blockIdx.x);
    if (threadIdx.x == 0)
        a.counters[blockIdx.x] = 0;
}

void cu_attention(mg_backend *be, mg_tensor *out, const mg_tensor *q, int n_seq, int q_per_seq,
                  const mg_attn_seq *seqs, const mg_attn_params *p)
{
    mg_cuda_backend *cb = cu_of(be);
    cu_enter(cb);
    if (n_seq <= 0 || q_per_seq <= 0)
        return;
    /* one host block: the per-sequence table, then the key masks */
    int max_keys = 0;
    size_t mask_bytes = 0;
    for (int s = 0; s < n_seq; s++) {
        if (seqs[s].n_keys > max_keys)
            max_keys = seqs[s].n_keys;
        if (seqs[s].key_mask)
            mask_bytes += (size_t)seqs[s].n_keys;
    }
    if (max_keys <= 0) {
        cu_fail(cb, "cuda: attention with no keys");
        return;
    }
    /* one storage format per call: F32, or BF16 (kv_bf16 caches) */
    mg_dtype kv_dt = seqs[0].k->dtype;
    for (int s = 0; s < n_seq; s++)
        if (seqs[s].k->dtype != kv_dt || seqs[s].v->dtype != kv_dt ||
            (kv_dt != MG_DT_F32 && kv_dt != MG_DT_BF16)) {
            cu_fail(cb, "cuda: attention keys/values must all be F32 or all BF16 (sequence %d: "
                    "%s/%s)", s, mg_dtype_name(seqs[s].k->dtype), mg_dtype_name(seqs[s].v->dtype));
            return;
        }
    /* scratch first: growing it flushes the segment, which must not happen
     * between staging this op's metadata and recording its launch */
    int n_split = (max_keys + CHUNK - 1) / CHUNK;
    int64_t rowheads = (int64_t)n_seq * q_per_seq * p->heads;
    float *part = NULL;
    int *counters = NULL;
    if (n_split > 1 &&
        (!(part = (float *)cu_scratch(cb, 1, (size_t)rowheads * n_split * (p->head_dim + 2) * 4)) ||
         !(counters = cu_counters(cb, rowheads))))
        return;
    size_t table = (size_t)n_seq * sizeof(attn_seq_dev), total = table + mask_bytes;
    char *host = (char *)malloc(total);
    if (!host) {
        cu_fail(cb, "cuda: out of memory for attention metadata");
        return;
    }
    memset(host, 0, total);
    attn_seq_dev *hs = (attn_seq_dev *)host;
    size_t off = 0;
    for (int s = 0; s < n_seq; s++) {
        hs[s].k = seqs[s].k->data;
        hs[s].v = seqs[s].v->data;
        hs[s].k_row0 = seqs[s].k_row0;
        hs[s].n_keys = seqs[s].n_keys;
        hs[s].q_pos = seqs[s].q_pos;
        hs[s].mask_off = -1;
        if (seqs[s].key_mask) {
            memcpy(host + table + off, seqs[s].key_mask, (size_t)seqs[s].n_keys);
            hs[s].mask_off = (int64_t)off;
            off += (size_t)seqs[s].n_keys;
        }
    }
    char *dev = (char *)cu_stage(cb, host, total);
    free(host);
    if (!dev)
        return;
    attn_args a;
    memset(&a, 0, sizeof a);
    a.out = cu_f32(out);
    a.q = cu_f32(q);
    a.seqs = (const attn_seq_dev *)dev;
    a.masks = (const uint8_t *)(dev + table);
    a.bias = p->pos_bias ? cu_f32(p->pos_bias) : NULL;
    a.q_per_seq = q_per_seq;
    a.heads = p->heads;
    a.dh = p->head_dim;
    a.causal = p->causal;
    a.scale = p->scale;
    a.n_split = n_split;
    a.kv_bf16 = kv_dt == MG_DT_BF16;
    a.vec = p->head_dim % 4 == 0 && (p->heads * p->head_dim) % 4 == 0;
    for (int s = 0; s < n_seq && a.vec; s++)
        a.vec = (uintptr_t)seqs[s].k->data % 16 == 0 && (uintptr_t)seqs[s].v->data % 16 == 0;
    a.part_o = part;
    a.part_ml = part ? part + rowheads * a.n_split * a.dh : NULL;
    a.counters = counters;
    size_t smem = ((size_t)a.dh + CHUNK + 4 * ATT_THREADS) * sizeof(float);
    if (smem > 48 * 1024) {
        cu_fail(cb, "cuda: attention head_dim %d is not supported (at most %d)", a.dh,
                48 * 1024 / 4 - CHUNK - 4 * ATT_THREADS);
        return;
    }
    cu_launch(cb, a.kv_bf16 ? attn_chunk_kernel<true> : attn_chunk_kernel<false>, dim3((unsigned)rowheads, (unsigned)a.n_split), ATT_THREADS,
              smem, a);

}
