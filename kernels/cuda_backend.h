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
#include "backend.h"
}

struct mg_cuda_backend {
    mg_backend   base;
    int          device;
    int          sm_count;
    size_t       smem_optin;     /* max dynamic shared memory per block */
    mg_dtype     matrix_dtype;   /* MG_DT_F32 or MG_DT_BF16 */
    cudaStream_t stream;
    /* first failure since the last sync */
    int          failed;
    char         fail_msg[400];
    /* Host arrays (ids, masks, row scales) travel through a pinned ring: a
     * slice is filled on the host and copied on the stream; when the ring is
     * full, the stream is drained so that the slices can be reused. */
    char        *stage_host;
    char        *stage_dev;
    size_t       stage_cap, stage_off;
    /* Grow-only device scratch, one slot per user so that no op resizes a
     * buffer another op still holds: 0 weight conversion, LSTM gates, sampled
     * scores; 1 attention chunks; 2 LSTM cell state; 3 split-K slices. */
    void        *scratch[4];
    size_t       scratch_cap[4];
    int32_t     *tokens_host;    /* pinned, for select_tokens */
    int32_t     *tokens_dev;
    size_t       tokens_cap;
};

static inline mg_cuda_backend *cu_of(mg_backend *be) { return (mg_cuda_backend *)be; }

/* Records the first error (printf-style context); returns 1 if e failed. */
int  cu_check(mg_cuda_backend *cb, cudaError_t e, const char *what);
void cu_fail(mg_cuda_backend *cb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Checks the launch just made. */
static inline int cu_launched(mg_cuda_backend *cb, const char *kernel)
{
    return cu_check(cb, cudaGetLastError(), kernel);
}
/* Copies n host bytes to device memory on the stream; NULL (error recorded) on failure. */
void *cu_stage(mg_cuda_backend *cb, const void *host, size_t n);
/* Device scratch slot `which` (see above) with at least n bytes. */
void *cu_scratch(mg_cuda_backend *cb, int which, size_t n);
/* Makes the backend's device current for this thread (nginx thread pools). */
static inline void cu_enter(mg_cuda_backend *cb)
{
    if (cb->device != 0)
        cudaSetDevice(cb->device);
}

static inline float *cu_f32(const mg_tensor *t) { return (float *)t->data; }
static inline unsigned cu_blocks(int64_t n, int per) { return (unsigned)((n + per - 1) / per); }

/* matvec.cu */
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
void cu_lstm(mg_backend *be, mg_tensor *h_out, const mg_tensor *x, const mg_tensor *w_ih,
             const mg_tensor *w_hh, const mg_tensor *b_ih, const mg_tensor *b_hh, int batch);
/* sampling.cu */
mg_code cu_select_tokens(mg_backend *be, const mg_tensor *logits, int rows, int V,
                         const mg_sampling *s, uint64_t seed, uint64_t step, float *scores,
                         int32_t *tokens, mg_error *err);
/* cuda_backend.cu: reports and clears the recorded failure (after draining the stream). */
mg_code cu_sync(mg_backend *be, mg_error *err);
#endif
