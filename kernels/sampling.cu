/* Token selection on the device, one block per row: guidance mixing,
 * temperature, top-k, top-p, softmax and the inverse-CDF draw with the same
 * counter-based uniform as src/model/sampling.c, so a CPU and a GPU run draw the
 * same numbers. Only the chosen tokens (and, when asked, the processed
 * scores) come back to the host.
 *
 * Mixing and temperature use explicitly rounded operations (no fused
 * multiply-add) so that they match the CPU bit for bit; reductions run in a
 * different order than the CPU's loops and may differ in the last bits. */
#include "cuda_backend.h"

#include <float.h>
#include <string.h>

enum { SEL_THREADS = 512 };

static __device__ uint64_t splitmix64_d(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* mg_rng_uniform */
static __device__ double rng_uniform_d(uint64_t seed, uint64_t step, uint64_t row)
{
    uint64_t h = splitmix64_d(splitmix64_d(splitmix64_d(seed) ^ step) ^ row);
    return (double)(h >> 11) * (1.0 / 9007199254740992.0);
}

static __device__ float red_max(float v, float *red)
{
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads();
    if (threadIdx.x % 32 == 0)
        red[threadIdx.x / 32] = v;
    __syncthreads();
    v = threadIdx.x % 32 < blockDim.x / 32 ? red[threadIdx.x % 32] : -INFINITY;
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

static __device__ float red_sum(float v, float *red)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads();
    if (threadIdx.x % 32 == 0)
        red[threadIdx.x / 32] = v;
    __syncthreads();
    v = threadIdx.x % 32 < blockDim.x / 32 ? red[threadIdx.x % 32] : 0.0f;
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* First index of the maximum (mg_argmax). */
static __device__ int red_argmax(const float *x, int n, float *redv, int *redi)
{
    float best = -INFINITY;
    int bi = -1;
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        if (bi < 0 || x[i] > best) {
            best = x[i];
            bi = i;
        }
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, best, o);
        int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (oi >= 0 && (bi < 0 || ov > best || (ov == best && oi < bi))) {
            best = ov;
            bi = oi;
        }
    }
    __syncthreads();
    if (threadIdx.x % 32 == 0) {
        redv[threadIdx.x / 32] = best;
        redi[threadIdx.x / 32] = bi;
    }
    __syncthreads();
    if (threadIdx.x < 32) {
        int l = threadIdx.x;
        best = l < (int)blockDim.x / 32 ? redv[l] : -INFINITY;
        bi = l < (int)blockDim.x / 32 ? redi[l] : -1;
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, best, o);
            int oi = __shfl_xor_sync(0xffffffffu, bi, o);
            if (oi >= 0 && (bi < 0 || ov > best || (ov == best && oi < bi))) {
                best = ov;
                bi = oi;
            }
        }
        if (l == 0)
            redi[0] = bi < 0 ? 0 : bi;
    }
    __syncthreads();
    int r = redi[0];
    __syncthreads();
    return r;
}

/* Descending bitonic sort of p (a power of two) floats in shared memory. */
static __device__ void sort_desc(float *buf, int p)
{
    for (int k = 2; k <= p; k <<= 1)
        for (int j = k >> 1; j > 0; j >>= 1) {
            for (int i = threadIdx.x; i < p; i += blockDim.x) {
                int ixj = i ^ j;
                if (ixj > i) {
                    float a = buf[i], b = buf[ixj];
                    bool desc = (i & k) == 0;
                    if (desc ? a < b : a > b) {
                        buf[i] = b;
                        buf[ixj] = a;
                    }
                }
            }
            __syncthreads();
        }
}

/* probs = softmax(sc) as mg_softmax (removed entries -> 0). */
static __device__ void softmax_d(const float *sc, float *probs, int n, float *red)
{
    float mx = -INFINITY;
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        mx = fmaxf(mx, sc[i]);
    mx = red_max(mx, red);
    float s = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float e = sc[i] == -INFINITY ? 0.0f : expf(sc[i] - mx);
        probs[i] = e;
        s += e;
    }
    s = red_sum(s, red);
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        probs[i] = probs[i] / s;
    __syncthreads();
}

struct select_args {
    const float *logits;
    float       *scores;  /* [rows, V] or NULL */
    int32_t     *tokens;
    int          rows, V, p2;
    int          guided, do_sample, top_k;
    float        g, temperature, top_p;
    uint64_t     seed, step;
};

/* smem: SEL_THREADS doubles, then sc[V], a[p2], b[p2] floats */
__global__ void __launch_bounds__(SEL_THREADS) select_kernel(select_args a)
{
    extern __shared__ __align__(16) unsigned char smraw[];
    __shared__ float red[32];
    __shared__ int redi[32];
    int V = a.V, r = blockIdx.x;
    double *part = (double *)smraw;
    float *sc = (float *)(part + SEL_THREADS), *bufa = sc + V, *bufb = bufa + a.p2;
    const float *cond = a.logits + (int64_t)r * V, *unc = a.logits + (int64_t)(a.rows + r) * V;
    for (int i = threadIdx.x; i < V; i += blockDim.x)
        sc[i] = a.guided ? __fadd_rn(unc[i], __fmul_rn(__fsub_rn(cond[i], unc[i]), a.g)) : cond[i];
    __syncthreads();
    int token;
    if (!a.do_sample) {
        token = red_argmax(sc, V, red, redi);
    } else {
        if (a.temperature != 1.0f)
            for (int i = threadIdx.x; i < V; i += blockDim.x)
                sc[i] = __fdiv_rn(sc[i], a.temperature);
        __syncthreads();
        if (a.top_k > 0 && a.top_k < V) {
            for (int i = threadIdx.x; i < a.p2; i += blockDim.x)
                bufa[i] = i < V ? sc[i] : -INFINITY;
            __syncthreads();
            sort_desc(bufa, a.p2);
            float kth = bufa[a.top_k - 1];
            for (int i = threadIdx.x; i < V; i += blockDim.x)
                if (sc[i] < kth)
                    sc[i] = -INFINITY;
            __syncthreads();
        }
        if (a.top_p < 1.0f) {
            softmax_d(sc, bufa, V, red);
            for (int i = threadIdx.x; i < a.p2; i += blockDim.x)
                bufb[i] = i < V ? bufa[i] : -INFINITY;
            __syncthreads();
            sort_desc(bufb, a.p2);
            /* the CPU's sequential scan from the least likely token, in its order */
            if (threadIdx.x == 0) {
                float cum = 0, cut = -1.0f;
                for (int i = V - 1; i > 0; i--) {
                    if (cum + bufb[i] > 1.0f - a.top_p)
                        break;
                    cum += bufb[i];
                    cut = bufb[i];
                }
                red[0] = cut;
            }
            __syncthreads();
            float cut = red[0];
            int keep = red_argmax(bufa, V, red, redi);
            if (cut >= 0)
                for (int i = threadIdx.x; i < V; i += blockDim.x)
                    if (bufa[i] <= cut && i != keep)
                        sc[i] = -INFINITY;
            __syncthreads();
        }
        softmax_d(sc, bufa, V, red);
        /* inverse CDF: each thread owns a contiguous slice; prefix sums in double */
        int per = (V + blockDim.x - 1) / blockDim.x, i0 = threadIdx.x * per;
        int i1 = min(V, i0 + per);
        double s = 0;
        int last = -1;
        for (int i = i0; i < i1; i++)
            if (bufa[i] > 0) {
                s += bufa[i];
                last = i;
            }
        part[threadIdx.x] = s;
        __syncthreads();
        for (int o = 1; o < (int)blockDim.x; o <<= 1) {
            double v = threadIdx.x >= (unsigned)o ? part[threadIdx.x - o] : 0.0;
            __syncthreads();
            part[threadIdx.x] += v;
            __syncthreads();
        }
        double cum = part[threadIdx.x] - s, u = rng_uniform_d(a.seed, a.step, (uint64_t)r);
        int found = INT_MAX;
        for (int i = i0; i < i1; i++)
            if (bufa[i] > 0) {
                cum += bufa[i];
                if (u < cum) {
                    found = i;
                    break;
                }
            }
        __syncthreads();
        /* first hit, else the last token with mass (rounding left u above the total) */
        int *hit = (int *)part;
        if (threadIdx.x == 0) {
            hit[0] = INT_MAX;
            hit[1] = 0;
        }
        __syncthreads();
        if (found != INT_MAX)
            atomicMin(&hit[0], found);
        if (last >= 0)
            atomicMax(&hit[1], last);
        __syncthreads();
        token = hit[0] != INT_MAX ? hit[0] : hit[1];
    }
    if (a.scores)
        for (int i = threadIdx.x; i < V; i += blockDim.x)
            a.scores[(int64_t)r * V + i] = sc[i];
    if (threadIdx.x == 0)
        a.tokens[r] = token;
}

/* Grows the pinned/device token buffers to hold `rows` tokens; 0 on failure
 * (recorded). */
static int token_buffers(mg_cuda_backend *cb, size_t rows)
{
    if (rows <= cb->tokens_cap)
        return 1;
    cudaFreeHost(cb->tokens_host);
    cudaFree(cb->tokens_dev);
    cb->tokens_host = NULL;
    cb->tokens_dev = NULL;
    cb->tokens_cap = 0;
    if (cu_check(cb, cudaMallocHost((void **)&cb->tokens_host, rows * 4), "token buffer") ||
        cu_check(cb, cudaMalloc((void **)&cb->tokens_dev, rows * 4), "token buffer"))
        return 0;
    cb->tokens_cap = rows;
    return 1;
}

/* Launches one selection (rows blocks) writing its tokens to tokens_dev and,
 * when scores_dev is not NULL, its processed scores there; 0 on failure
 * (recorded). */
static int launch_select(mg_cuda_backend *cb, const mg_tensor *logits, int rows, int V,
                         const mg_sampling *s, uint64_t seed, uint64_t step, float *scores_dev,
                         int32_t *tokens_dev)
{
    select_args a;
    memset(&a, 0, sizeof a);
    a.logits = cu_f32(logits);
    a.scores = scores_dev;
    a.tokens = tokens_dev;
    a.rows = rows;
    a.V = V;
    a.p2 = 1;
    while (a.p2 < V)
        a.p2 <<= 1;
    a.guided = s->guidance_scale > 1.0f;
    a.g = s->guidance_scale;
    a.do_sample = s->do_sample;
    a.top_k = s->top_k;
    a.temperature = s->temperature;
    a.top_p = s->top_p;
    a.seed = seed;
    a.step = step;
    size_t smem = ((size_t)V + 2 * (size_t)a.p2) * sizeof(float) + SEL_THREADS * sizeof(double);
    if (smem > cb->smem_optin) {
        cu_fail(cb, "cuda: select_tokens over %d entries per row is not supported (at most %zu "
                "bytes of shared memory)", V, cb->smem_optin);
        return 0;
    }
    if (smem > 48 * 1024 &&
        cu_check(cb, cudaFuncSetAttribute(select_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          (int)smem), "select_tokens"))
        return 0;
    select_kernel<<<(unsigned)rows, SEL_THREADS, smem, cb->stream>>>(a);
    return !cu_check(cb, cudaGetLastError(), "select_tokens");
}

mg_code cu_select_tokens(mg_backend *be, const mg_tensor *logits, int rows, int V,
                         const mg_sampling *s, uint64_t seed, uint64_t step, float *scores,
                         int32_t *tokens, mg_error *err)
{
    mg_cuda_backend *cb = cu_of(be);
    cu_enter(cb);
    cu_flush(cb); /* this op launches directly (it ends in a wait anyway) */
    if (rows <= 0 || V <= 0)
        return cu_sync(be, err);
    float *scores_dev = NULL;
    if (!token_buffers(cb, (size_t)rows) ||
        (scores && !(scores_dev = (float *)cu_scratch(cb, 0, (size_t)rows * V * sizeof(float)))) ||
        !launch_select(cb, logits, rows, V, s, seed, step, scores_dev, cb->tokens_dev))
        return cu_sync(be, err);
    cu_check(cb, cudaMemcpyAsync(cb->tokens_host, cb->tokens_dev, (size_t)rows * 4,
                                 cudaMemcpyDeviceToHost, cb->stream), "select_tokens copy");
    if (scores)
        cu_check(cb, cudaMemcpyAsync(scores, scores_dev, (size_t)rows * V * sizeof(float),
                                     cudaMemcpyDeviceToHost, cb->stream), "select_tokens copy");
    mg_code rc = cu_sync(be, err);
    if (rc == MG_OK)
        memcpy(tokens, cb->tokens_host, (size_t)rows * 4);
    return rc;
}

/* Every call's kernel back to back into one token buffer, then one copy and
 * one wait (select_tokens per generation paid a round trip each). */
mg_code cu_select_tokens_many(mg_backend *be, int n, const mg_select_call *calls, int V,
                              mg_error *err)
{
    mg_cuda_backend *cb = cu_of(be);
    cu_enter(cb);
    if (!cb->select_many) { /* opt-in (mg_backend_cuda_create): one call at a time */
        for (int i = 0; i < n; i++) {
            mg_code rc = cu_select_tokens(be, calls[i].logits, calls[i].rows, V, calls[i].s,
                                          calls[i].seed, calls[i].step, NULL, calls[i].tokens, err);
            if (rc != MG_OK)
                return rc;
        }
        return MG_OK;
    }
    cu_flush(cb);
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += calls[i].rows > 0 ? (size_t)calls[i].rows : 0;
    if (total == 0 || V <= 0)
        return cu_sync(be, err);
    if (!token_buffers(cb, total))
        return cu_sync(be, err);
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        if (calls[i].rows <= 0)
            continue;
        if (!launch_select(cb, calls[i].logits, calls[i].rows, V, calls[i].s, calls[i].seed,
                           calls[i].step, NULL, cb->tokens_dev + off))
            return cu_sync(be, err);
        off += (size_t)calls[i].rows;
    }
    cu_check(cb, cudaMemcpyAsync(cb->tokens_host, cb->tokens_dev, total * 4,
                                 cudaMemcpyDeviceToHost, cb->stream), "select_tokens copy");
    mg_code rc = cu_sync(be, err);
    off = 0;
    for (int i = 0; rc == MG_OK && i < n; i++) {
        if (calls[i].rows <= 0)
            continue;
        memcpy(calls[i].tokens, cb->tokens_host + off, (size_t)calls[i].rows * 4);
        off += (size_t)calls[i].rows;
    }
    return rc;
}
