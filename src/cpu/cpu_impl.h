/* CPU backend internals: the backend struct, its worker pool, and the op
 * implementations split by family (cpu_ops.c: norms/attention, cpu_matvec.c:
 * linear, cpu_quant.c: weight formats, cpu_conv.c: convolutions, cpu_lstm.c:
 * the LSTM). */
#ifndef MG_CPU_IMPL_H
#define MG_CPU_IMPL_H
#include <pthread.h>
#include "backend/backend.h"
#include "backend/layout.h"
#include "cpu/cpu_backend.h"
#include "cpu/cpu_kernel.h"
#include "cpu/cpu_isa.h"
#include "cpu/cpu_pool.h"

typedef struct {
    mg_backend  base;
    mg_cpu_pool pool;
    mg_cpu_isa  isa;      /* kernels linear() and friends run */
    mg_dtype    weight_dtype; /* format MATRIX weights are converted to (caps) */
    int         kv_q8row;     /* options.kv_q8row: 8-bit caches offered (caps) */
    /* Activation rows prepared for compressed weights (quantised or padded),
     * sized at weight load so linear() never allocates. */
    void       *xbuf;
    size_t      xbuf_cap;
    /* A conv input packed into BF16 pairs (cpu_conv.c), kept between calls */
    void       *conv_scratch;
    size_t      conv_scratch_cap;
    /* The first failure of an op since the last sync (ops return nothing):
     * ops run one caller at a time (the model's run lock), sync reports it. */
    mg_code     failed;
    const char *failed_what;
} mg_cpu_backend;

/* Records an op's failure for the next sync (the first one wins). */
void mg_cpu_fail(mg_backend *be, mg_code code, const char *what);

/* Rows of activations linear() prepares per pass (larger M runs in passes). */
enum { MG_CPU_LINEAR_ROWS = 64 };
/* Bytes of xbuf one prepared activation row of cols inputs needs. */
size_t mg_cpu_xbuf_row_bytes(int64_t cols);


/* min_per_thread for row-wise ops over rows of `cols` values (norms, the
 * activation quantisation of linear(), quantising cache appends): ~4k values
 * per thread pay the hand-off, so a batched step's 8 rows of 1024 use both
 * threads and a decode step's 2 rows stay on the caller. */
static inline int64_t mg_cpu_rows_min(int64_t cols)
{
    return (4096 + cols - 1) / (cols > 0 ? cols : 1);
}

/* min_per_thread for ops whose work items cost macs_per_item multiply-adds
 * (the convolutions, the LSTM): ~64k per thread pay the hand-off. */
static inline int64_t mg_cpu_macs_min(int64_t macs_per_item)
{
    return macs_per_item >= 65536 ? 1 : 65536 / (macs_per_item > 0 ? macs_per_item : 1);
}


static inline float *mg_cpu_f32(const mg_tensor *t) { return (float *)t->data; }

/* cpu_ops.c */
/* a·b in 16 lane sums added in order, then the tail: the sums the SIMD dot
 * products elsewhere reproduce bit for bit */
typedef float (*mg_cpu_dot_fn)(const float *a, const float *b, int64_t n);
mg_cpu_dot_fn mg_cpu_dot_for(mg_cpu_isa isa);
void mg_cpu_embed(mg_backend *be, mg_tensor *y, const mg_tensor *table, const int32_t *ids,
                  int64_t m, int accumulate);
/* cpu_matvec.c: any weight format (F32, BF16, Q8), kernels per isa */
void mg_cpu_linear(mg_backend *be, mg_tensor *y, const mg_tensor *x, const mg_tensor *w,
                   const mg_tensor *bias);
enum { MG_CPU_LINEAR_MANY = 4 }; /* matrices one parallel region takes */
void mg_cpu_linear_many(mg_backend *be, int n, mg_tensor *const *y, const mg_tensor *x,
                        const mg_tensor *const *w);
void mg_cpu_add(mg_backend *be, mg_tensor *y, const mg_tensor *x);
void mg_cpu_scale_rows(mg_backend *be, mg_tensor *y, const float *row_scale);
void mg_cpu_rms_norm(mg_backend *be, mg_tensor *y, const mg_tensor *x, const mg_tensor *w,
                     float eps);
void mg_cpu_layer_norm(mg_backend *be, mg_tensor *y, const mg_tensor *x, const mg_tensor *w,
                       const mg_tensor *b, float eps);
void mg_cpu_relu(mg_backend *be, mg_tensor *y);
void mg_cpu_gelu(mg_backend *be, mg_tensor *y);
void mg_cpu_elu(mg_backend *be, mg_tensor *y);
int  mg_cpu_attention_q8row_fits(mg_backend *be, int heads, int head_dim, int max_keys);
void mg_cpu_attention(mg_backend *be, mg_tensor *out, const mg_tensor *q, int n_seq,
                      int q_per_seq, const mg_attn_seq *seqs, const mg_attn_params *p);
void mg_cpu_copy_rows_scatter(mg_backend *be, mg_tensor *const *dst, const int64_t *dst_rows,
                              const mg_tensor *src, const int64_t *src_rows, int n);
void mg_cpu_copy_rows(mg_backend *be, mg_tensor *dst, int64_t dst_row, const mg_tensor *src,
                      int64_t src_row, int64_t n);

/* cpu_conv.c */
void mg_cpu_conv1d(mg_backend *be, mg_tensor *y, const mg_tensor *x, const mg_tensor *w,
                   const mg_tensor *bias, int batch, int stride, int dilation);
void mg_cpu_conv1d_fused(mg_backend *be, mg_tensor *y, const mg_tensor *x, const mg_tensor *w,
                         const mg_tensor *bias, int batch, int dilation,
                         const mg_tensor *residual, int elu_out);
void mg_cpu_pad_reflect_elu(mg_backend *be, mg_tensor *y, const mg_tensor *x, int left,
                            int right);
/* 1 when the convolutions have BF16 kernels here (conv weights may then be
 * BF16 pairs: see cpu_conv.c); otherwise such weights take a slow F32 path. */
int mg_cpu_conv_bf16_fits(mg_backend *be);
void mg_cpu_conv_transpose1d(mg_backend *be, mg_tensor *y, const mg_tensor *x,
                             const mg_tensor *w, const mg_tensor *bias, int batch, int stride,
                             int trim_left);
void mg_cpu_pad_reflect(mg_backend *be, mg_tensor *y, const mg_tensor *x, int left, int right);
void mg_cpu_transpose(mg_backend *be, mg_tensor *y, const mg_tensor *x, int batch);
/* cpu_lstm.c */
void mg_cpu_lstm(mg_backend *be, mg_tensor *h_out, const mg_tensor *x, const mg_tensor *w_ih,
                 const mg_tensor *w_hh, const mg_tensor *b_ih, const mg_tensor *b_hh, int batch);
void mg_cpu_lstm_state(mg_backend *be, mg_tensor *h_out, const mg_tensor *x,
                       const mg_tensor *w_ih, const mg_tensor *w_hh, const mg_tensor *b_ih,
                       const mg_tensor *b_hh, int batch, const mg_tensor *state_in,
                       mg_tensor *state_out);
#endif
