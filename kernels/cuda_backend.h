/* CUDA backend internals (C++ only): the backend struct, error recording,
 * host-metadata staging, and the op implementations split by family
 * (matvec.cu: linear, norm.cu: norms/elementwise/embed, attention.cu,
 * conv.cu: EnCodec ops, sampling.cu: select_tokens).
 *
 * Every op runs asynchronously on the backend's one stream. Ops cannot return
 * an error, so a failed launch or allocation is recorded in the struct and the
 * next sync() (or download) reports it; later ops still run but their results
 * are never trusted because the job has already failed. */
#ifndef MG_CUDA_BACKEND_H
#define MG_CUDA_BACKEND_H
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <stdint.h>

extern "C" {
#include "backend/backend.h"
}

/* One recorded kernel launch. Ops do not launch: they append commands (and
 * their host metadata, see cu_stage) to the pending segment, which cu_flush
 * launches: sync(), downloads, uploads, frees and anything that must order
 * against host memory flush first. A segment whose commands (kernels, launch
 * shapes and every argument byte) equal a recently seen one is replayed from
 * an instantiated CUDA graph; its metadata still travels in one copy per
 * segment into the same device arena, so graphs stay valid while ids,
 * positions and masks change. Recording also allows peephole fusion
 * (matvec.cu, norm.cu): an add, activation or row copy that consumes the
 * output of the linear just recorded becomes its epilogue, linears sharing an
 * input become one launch, and consecutive embeds one kernel. */
enum { CU_MAX_ARGS = 16 };
struct cu_cmd {
    const void *func;
    dim3        grid, block;
    uint32_t    smem;
    uint32_t    nargs;
    uint32_t    argoff[CU_MAX_ARGS]; /* offsets into the segment's argument blob */
    int32_t     kind;                /* CU_K_*: which peephole rules may touch it */
};
enum { CU_K_PLAIN, CU_K_LINEAR, CU_K_EMBED, CU_K_NORM };

/* Host-side byte ranges a fused scatter writes (fusion checks), per segment. */
struct cu_range {
    const char *lo, *hi;
};

struct cu_graph_entry {
    cu_cmd          *cmds;
    char            *blob;
    size_t           n_cmds, blob_len;
    cudaGraphExec_t  exec;   /* NULL until the segment is seen a second time */
    uint64_t         used;
};
enum { CU_GRAPHS = 8, CU_GRAPH_MAX_CMDS = 4096 };

struct mg_cuda_backend {
    mg_backend   base;
    int          device;
    int          sm_count;
    size_t       smem_optin;     /* max dynamic shared memory per block */
    mg_dtype     matrix_dtype;   /* MG_DT_F32 or MG_DT_BF16 */
    cudaStream_t stream;
    /* first failure since the last sync */
    int          failed;
    int          lost;           /* a sticky (context-killing) error was seen */
    char         fail_msg[400];
    /* Host metadata arena: per segment, host arrays (ids, masks, row maps,
     * attention tables) are packed into a pinned host buffer and go up in
     * one copy at flush into stage_dev, whose address never changes (so
     * graphs may hold it). Two host buffers alternate; an event says when
     * the copy out of one has finished so that it can be refilled. */
    char        *stage_host[2];
    cudaEvent_t  stage_ev[2];
    int          stage_busy[2];
    int          stage_cur;
    char        *stage_dev;
    size_t       stage_cap, stage_off;
    /* the pending segment */
    cu_cmd      *cmds;
    size_t       n_cmds, cmds_cap;
    char        *blob;
    size_t       blob_len, blob_cap;
    int          use_graphs, use_fusion, wide, pdl, fuse_norm;
    int          conv_bf16;      /* caps.conv_bf16 (conv.cu) */
    int          kv_bf16;        /* caps.kv_bf16: attention.cu reads BF16 caches */
    int          select_many;    /* select_tokens_many in one wait (sampling.cu) */
    size_t       mma_smem_raised; /* dynamic shared memory opted in (matvec.cu) */
    cu_range    *rng;            /* see cu_range */
    int          n_rng, cap_rng;
    cu_graph_entry graphs[CU_GRAPHS];
    uint64_t     flushes;
    /* counters for the bench: launches made, graph replays */
    uint64_t     n_launch, n_replay, n_direct;
    /* options.cuda_profile: no graphs; every launch timed with events,
     * summed per kernel and printed to stderr by mg_cuda_profile_dump */
    int          profile;
    struct cu_prof *prof;
    int          n_prof, cap_prof;
    cudaEvent_t *prof_ev;
    int          n_ev, cap_ev;
    const void **prof_fn;
    /* Grow-only device scratch, one slot per user so that no op resizes a
     * buffer another op still holds: 0 weight conversion, LSTM gates, sampled
     * scores; 1 attention chunks; 2 LSTM cell state; 3 split-K slices. */
    void        *scratch[4];
    size_t       scratch_cap[4];
    int         *counters;       /* zeroed ints for in-kernel merges (attention) */
    size_t       counters_cap;
    int32_t     *tokens_host;    /* pinned, for select_tokens */
    int32_t     *tokens_dev;
    size_t       tokens_cap;
};

static inline mg_cuda_backend *cu_of(mg_backend *be) { return (mg_cuda_backend *)be; }

/* Records the first error (printf-style context); returns 1 if e failed. */
int  cu_check(mg_cuda_backend *cb, cudaError_t e, const char *what);
void cu_fail(mg_cuda_backend *cb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Launch errors surface when the segment is flushed; kept for call sites. */
static inline int cu_launched(mg_cuda_backend *cb, const char *kernel)
{
    (void)kernel;
    return cb->failed;
}
/* Packs n host bytes into the segment's metadata arena and returns the
 * device address they will have when the segment's commands run (they are
 * uploaded by the flush that launches them); NULL (error recorded) on failure.
 * May flush the pending segment when the arena is full. */
void *cu_stage(mg_cuda_backend *cb, const void *host, size_t n);
/* Launches the pending segment (graph replay when it repeats); no wait. */
void  cu_flush(mg_cuda_backend *cb);

/* Command recording (see cu_cmd). cu_cmd_begin returns the command's index. */
size_t cu_cmd_begin(mg_cuda_backend *cb, const void *func, dim3 grid, dim3 block, size_t smem,
                    int kind);
void  *cu_cmd_arg(mg_cuda_backend *cb, size_t cmd, const void *v, size_t size, size_t align);
/* The last pending command when it is of `kind`, else NULL. */
static inline cu_cmd *cu_last_cmd(mg_cuda_backend *cb, int kind)
{
    if (!cb->use_fusion || cb->n_cmds == 0 || cb->cmds[cb->n_cmds - 1].kind != kind)
        return NULL;
    return &cb->cmds[cb->n_cmds - 1];
}
static inline void *cu_cmd_argp(mg_cuda_backend *cb, const cu_cmd *c, int i)
{
    return cb->blob + c->argoff[i];
}
template <typename P> static inline void cu_push_arg(mg_cuda_backend *cb, size_t cmd, P v)
{
    cu_cmd_arg(cb, cmd, &v, sizeof v, alignof(P));
}
/* Records kernel<<<grid, block, smem>>>(args...) on the backend's stream.
 * Struct arguments must be zero-filled before their fields are set, so that
 * their padding bytes compare equal between segments. */
template <typename... P, typename... A>
static inline void cu_launch_k(mg_cuda_backend *cb, int kind, void (*k)(P...), dim3 grid,
                               dim3 block, size_t smem, A... a)
{
    static_assert(sizeof...(P) == sizeof...(A), "argument count");
    static_assert(sizeof...(P) <= CU_MAX_ARGS, "too many kernel arguments");
    size_t c = cu_cmd_begin(cb, (const void *)k, grid, block, smem, kind);
    (cu_push_arg<P>(cb, c, (P)a), ...);
}
template <typename... P, typename... A>
static inline void cu_launch(mg_cuda_backend *cb, void (*k)(P...), dim3 grid, dim3 block,
                             size_t smem, A... a)
{
    cu_launch_k(cb, CU_K_PLAIN, k, grid, block, smem, a...);
}
/* Device scratch slot `which` (see above) with at least n bytes. */
void *cu_scratch(mg_cuda_backend *cb, int which, size_t n);
/* At least n zeroed ints that users return to zero; NULL (recorded) on failure. */
int  *cu_counters(mg_cuda_backend *cb, int64_t n);
/* Makes the backend's device current for this thread (nginx thread pools). */
static inline void cu_enter(mg_cuda_backend *cb)
{
    if (cb->device != 0)
        cudaSetDevice(cb->device);
}

static inline float *cu_f32(const mg_tensor *t) { return (float *)t->data; }
static inline unsigned cu_blocks(int64_t n, int per) { return (unsigned)((n + per - 1) / per); }

/* Rows copied by copy_rows_strided (and a fused copy epilogue). */
struct cu_rowmap {
    int64_t dst_row, dst_step, src_row, src_step, n, count;
};

/* One row of copy_rows_scatter: dst_row of tensor dst (device arena). */
struct cu_scat_ent {
    float  *dst;
    int64_t dst_row;
};

/* matvec.cu: peephole fusion into the linear just recorded; 1 when fused. */
int  cu_fuse_scatter(mg_cuda_backend *cb, mg_tensor *const *dst, const int64_t *dst_rows,
                     const mg_tensor *src, const int64_t *src_rows, int n);
int  cu_fuse_copy(mg_cuda_backend *cb, mg_tensor *dst, const mg_tensor *src, const cu_rowmap *m);
int  cu_fuse_add(mg_cuda_backend *cb, mg_tensor *y, const mg_tensor *x);
enum { CU_ACT_NONE, CU_ACT_RELU, CU_ACT_GELU, CU_ACT_ELU };
int  cu_fuse_act(mg_cuda_backend *cb, mg_tensor *y, int act);
/* First statement of every kernel launched through cu_launch: with
 * programmatic dependent launch (Hopper, cb->pdl) the next kernel of the
 * stream is launched as soon as every block of this one has started, and
 * waits here until this one has finished and its writes are visible; the
 * launch latency hides behind the running kernel. Without PDL (or before
 * sm_90) both instructions are no-ops. PDL is opt-in (options.cuda_pdl): on
 * an H100 it made graph-replayed decode steps slower (1.74 vs 1.60 ms). */
static __device__ __forceinline__ void cu_pdl_wait()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
/* ---- layer/RMS norm of one row, shared by layer_norm_kernel and the
 * tensor-core linear that absorbs a norm (matvec.cu), so that both give the
 * same bits: the whole block (CU_LN_THREADS threads) owns the row, thread t
 * holds values t, t + CU_LN_THREADS, ... in registers (rows up to
 * CU_LN_REG * CU_LN_THREADS values), sums run in that order then across the
 * block, and every multiply/add is explicitly rounded (no contraction). */
enum { CU_LN_THREADS = 256, CU_LN_REG = 8 };

static __device__ __forceinline__ float cu_block_sum(float v, float *red)
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

/* Loads the row into v and computes mean (0 for RMS) and 1/sqrt(var + eps). */
static __device__ __forceinline__ void cu_ln_stats(const float *xi, int64_t d, float eps, int rms,
                                                   float *red, float *v, float *mean_out,
                                                   float *inv_out)
{
#pragma unroll
    for (int r = 0; r < CU_LN_REG; r++) {
        int64_t j = threadIdx.x + (int64_t)r * blockDim.x;
        v[r] = j < d ? xi[j] : 0.0f;
    }
    float mean = 0.0f;
    if (!rms) {
        float s = 0.0f;
#pragma unroll
        for (int r = 0; r < CU_LN_REG; r++)
            if (threadIdx.x + (int64_t)r * blockDim.x < d)
                s = __fadd_rn(s, v[r]);
        mean = cu_block_sum(s, red) / (float)d;
    }
    float ss = 0.0f;
#pragma unroll
    for (int r = 0; r < CU_LN_REG; r++)
        if (threadIdx.x + (int64_t)r * blockDim.x < d) {
            float c = __fsub_rn(v[r], mean);
            ss = __fadd_rn(ss, __fmul_rn(c, c));
        }
    *mean_out = mean;
    *inv_out = 1.0f / sqrtf(__fadd_rn(cu_block_sum(ss, red) / (float)d, eps));
}

static __device__ __forceinline__ float cu_ln_apply(float v, float mean, float inv, float g,
                                                    float b, int rms)
{
    return rms ? __fmul_rn(g, __fmul_rn(v, inv))
               : __fadd_rn(__fmul_rn(__fmul_rn(__fsub_rn(v, mean), inv), g), b);
}

/* The activations, shared by the elementwise kernel and fused epilogues. */
static __device__ __forceinline__ float cu_act(float v, int act)
{
    if (act == CU_ACT_RELU)
        v = v > 0 ? v : 0.0f;
    else if (act == CU_ACT_GELU)
        v = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    else if (act == CU_ACT_ELU)
        v = v > 0 ? v : expm1f(v);
    return v;
}

void cu_linear(mg_backend *be, mg_tensor *y, const mg_tensor *x, const mg_tensor *w,
               const mg_tensor *bias);
/* y[M,N] = x[M,K]·w[N,K]ᵀ + b on raw device pointers (w f32 or bf16). */
void cu_linear_raw(mg_cuda_backend *cb, float *y, const float *x, const void *w, int w_bf16,
                   const float *b, int64_t M, int64_t N, int64_t K);
/* norm.cu */
void cu_embed(mg_backend *be, mg_tensor *y, const mg_tensor *table, const int32_t *ids,
              int64_t m, int accumulate);
void cu_add(mg_backend *be, mg_tensor *y, const mg_tensor *x);
void cu_scale_rows(mg_backend *be, mg_tensor *y, const float *row_scale);
void cu_rms_norm(mg_backend *be, mg_tensor *y, const mg_tensor *x, const mg_tensor *w, float eps);
void cu_layer_norm(mg_backend *be, mg_tensor *y, const mg_tensor *x, const mg_tensor *w,
                   const mg_tensor *b, float eps);
void cu_relu(mg_backend *be, mg_tensor *y);
void cu_gelu(mg_backend *be, mg_tensor *y);
void cu_elu(mg_backend *be, mg_tensor *y);
void cu_f32_to_bf16(mg_cuda_backend *cb, __nv_bfloat16 *dst, const float *src, int64_t n);
/* attention.cu */
void cu_attention(mg_backend *be, mg_tensor *out, const mg_tensor *q, int n_seq, int q_per_seq,
                  const mg_attn_seq *seqs, const mg_attn_params *p);
/* conv.cu */
void cu_conv1d(mg_backend *be, mg_tensor *y, const mg_tensor *x, const mg_tensor *w,
               const mg_tensor *bias, int batch, int stride, int dilation);
void cu_conv_transpose1d(mg_backend *be, mg_tensor *y, const mg_tensor *x, const mg_tensor *w,
                         const mg_tensor *bias, int batch, int stride, int trim_left);
void cu_pad_reflect(mg_backend *be, mg_tensor *y, const mg_tensor *x, int left, int right);
void cu_transpose(mg_backend *be, mg_tensor *y, const mg_tensor *x, int batch);
int  cu_conv_bf16_fits(mg_backend *be);
void cu_lstm(mg_backend *be, mg_tensor *h_out, const mg_tensor *x, const mg_tensor *w_ih,
             const mg_tensor *w_hh, const mg_tensor *b_ih, const mg_tensor *b_hh, int batch);
/* sampling.cu */
mg_code cu_select_tokens(mg_backend *be, const mg_tensor *logits, int rows, int V,
                         const mg_sampling *s, uint64_t seed, uint64_t step, float *scores,
                         int32_t *tokens, mg_error *err);
mg_code cu_select_tokens_many(mg_backend *be, int n, const mg_select_call *calls, int V,
                              mg_error *err);
/* cuda_backend.cu: reports and clears the recorded failure (after draining the stream). */
mg_code cu_sync(mg_backend *be, mg_error *err);
#endif
