/* The compute backend: every heavy op the model code needs, behind one table of
 * function pointers. The CPU backend (src/cpu/) and the CUDA backend (kernels/)
 * implement it. Tensors are opaque to the model code: data may live on a
 * device, so model code never dereferences mg_tensor.data; it moves bytes
 * with upload/download only.
 *
 * Conventions: row-major, ne[ndim-1] innermost. Activations are F32. Compute
 * ops return nothing; a backend that can fail asynchronously (CUDA) records
 * the first failure and reports it from sync(). Small per-row metadata (ids,
 * masks) is passed as host arrays; the backend copies it where it needs it. */
#ifndef MG_BACKEND_H
#define MG_BACKEND_H
#include <stddef.h>
#include <stdint.h>
#include "base/error.h"
#include "io/safetensors.h"
#include "model/sampling.h"

#define MG_MAX_DIMS 4

typedef struct mg_backend mg_backend;

typedef enum { MG_WEIGHT_PLAIN, MG_WEIGHT_MATRIX } mg_weight_kind;

typedef struct mg_tensor {
    mg_backend *be;
    mg_dtype    dtype;
    int         ndim;
    int64_t     ne[MG_MAX_DIMS];
    void       *data;    /* backend memory; NULL until allocated */
    size_t      nbytes;
    int         owns;    /* 0 for views and for weights used in place */
} mg_tensor;

/* One sequence of an attention call: its keys/values (rows = positions,
 * columns = heads*head_dim) and what each query may see. */
typedef struct {
    const mg_tensor *k, *v;
    int64_t          k_row0;   /* first row of this sequence inside k and v */
    int              n_keys;
    const uint8_t   *key_mask; /* host, n_keys entries, 0 = masked; NULL = none */
    int              q_pos;    /* absolute position of this sequence's first query (causal) */
} mg_attn_seq;

typedef struct {
    int              heads, head_dim;
    float            scale;     /* applied to q·k */
    int              causal;    /* query at position p sees keys at positions <= p */
    const mg_tensor *pos_bias;  /* [heads, q_per_seq, n_keys] added to scores, or NULL */
} mg_attn_params;

/* One token selection of select_tokens_many (its own logits, rows, sampling,
 * seed and step; tokens: a host array of rows entries). */
typedef struct {
    const mg_tensor   *logits;
    int                rows;
    const mg_sampling *s;
    uint64_t           seed, step;
    int32_t           *tokens;
} mg_select_call;

typedef struct mg_backend_ops {
    const char *name;
    void    (*destroy)(mg_backend *be);
    /* t->nbytes of zero-filled memory (model code relies on zeros for the
     * unconditional half of guidance). */
    mg_code (*alloc)(mg_backend *be, mg_tensor *t, mg_error *err);
    void    (*release)(mg_backend *be, mg_tensor *t);
    /* Copies host bytes into t at a byte offset. */
    mg_code (*upload)(mg_backend *be, mg_tensor *t, size_t offset, const void *host, size_t n,
                      mg_error *err);
    mg_code (*download)(mg_backend *be, const mg_tensor *t, size_t offset, void *host, size_t n,
                        mg_error *err);
    /* Makes t a weight holding host data (already t->dtype) that outlives the
     * backend (an mmap); a host backend may use it in place. A MG_WEIGHT_MATRIX
     * weight is only ever passed to linear() as w or to embed() as table, so
     * the backend may store it in its own compressed format (bf16, q8, ...),
     * setting t->dtype to match; MG_WEIGHT_PLAIN weights stay as given. */
    mg_code (*weight)(mg_backend *be, mg_tensor *t, const void *host, mg_weight_kind kind,
                      mg_error *err);
    /* Waits for queued work; returns the first error since the last sync. */
    mg_code (*sync)(mg_backend *be, mg_error *err);

    /* y[m,:] = table[ids[m],:] (+ y[m,:] if accumulate); ids on the host. */
    void (*embed)(mg_backend *be, mg_tensor *y, const mg_tensor *table, const int32_t *ids,
                  int64_t m, int accumulate);
    /* y[M,N] = x[M,K] · w[N,K]ᵀ + bias[N] (bias may be NULL). */
    void (*linear)(mg_backend *be, mg_tensor *y, const mg_tensor *x, const mg_tensor *w,
                   const mg_tensor *bias);
    void (*add)(mg_backend *be, mg_tensor *y, const mg_tensor *x);        /* y += x */
    void (*scale_rows)(mg_backend *be, mg_tensor *y, const float *row_scale); /* y[m,:] *= s[m] */
    void (*rms_norm)(mg_backend *be, mg_tensor *y, const mg_tensor *x, const mg_tensor *w,
                     float eps);
    void (*layer_norm)(mg_backend *be, mg_tensor *y, const mg_tensor *x, const mg_tensor *w,
                       const mg_tensor *b, float eps);
    void (*relu)(mg_backend *be, mg_tensor *y);
    void (*gelu)(mg_backend *be, mg_tensor *y);   /* exact erf form */
    void (*elu)(mg_backend *be, mg_tensor *y);    /* alpha = 1 */
    /* out/q: [n_seq * q_per_seq, heads*head_dim]. */
    void (*attention)(mg_backend *be, mg_tensor *out, const mg_tensor *q, int n_seq,
                      int q_per_seq, const mg_attn_seq *seqs, const mg_attn_params *p);
    /* Copies n rows of src starting at src_row into dst starting at dst_row
     * (F32 into a BF16 dst rounds to nearest even where kv_bf16 is set, into
     * a Q8ROW dst quantises where kv_q8row is). */
    void (*copy_rows)(mg_backend *be, mg_tensor *dst, int64_t dst_row, const mg_tensor *src,
                      int64_t src_row, int64_t n);

    /* 1-D convolution on channel-first signals, x [B*C_in, T_in] already padded,
     * w [C_out, C_in, K], y [B*C_out, T_out] with T_out = (T_in - dil*(K-1) - 1)/stride + 1. */
    void (*conv1d)(mg_backend *be, mg_tensor *y, const mg_tensor *x, const mg_tensor *w,
                   const mg_tensor *bias, int batch, int stride, int dilation);
    /* Transposed conv, w [C_in, C_out, K], x [B*C_in, T]: the full output
     * ((T-1)*stride + K) with trim_left samples dropped at the start and the
     * rest at the end so that y is [B*C_out, T_y]. */
    void (*conv_transpose1d)(mg_backend *be, mg_tensor *y, const mg_tensor *x,
                             const mg_tensor *w, const mg_tensor *bias, int batch, int stride,
                             int trim_left);
    /* Reflect padding as EnCodec does it (zero-extends inputs too short to
     * reflect, then trims): y [R, T+left+right], x [R, T]. */
    void (*pad_reflect)(mg_backend *be, mg_tensor *y, const mg_tensor *x, int left, int right);
    /* y [R, C] = xᵀ for x [C, R], for each of batch items (B*C rows <-> B*R rows). */
    void (*transpose)(mg_backend *be, mg_tensor *y, const mg_tensor *x, int batch);
    /* One LSTM layer over time, PyTorch gate order i,f,g,o, zero initial state:
     * x [B*T, I], h_out [B*T, H], w_ih [4H, I], w_hh [4H, H]. */
    void (*lstm)(mg_backend *be, mg_tensor *h_out, const mg_tensor *x, const mg_tensor *w_ih,
                 const mg_tensor *w_hh, const mg_tensor *b_ih, const mg_tensor *b_hh, int batch);

    /* Token selection for one decode step (see sampling.h): logits [rows or
     * 2*rows (guidance), V] on the backend; scores (may be NULL) and tokens
     * are host arrays. */
    mg_code (*select_tokens)(mg_backend *be, const mg_tensor *logits, int rows, int V,
                             const mg_sampling *s, uint64_t seed, uint64_t step, float *scores,
                             int32_t *tokens, mg_error *err);

    /* Optional (NULL: mg_copy_row_blocks loops over copy_rows): count blocks of
     * n rows; block i goes from src row src_row + i*src_step to dst row
     * dst_row + i*dst_step (steps >= n). One call where a device would
     * otherwise pay one launch per sequence. */
    void (*copy_rows_strided)(mg_backend *be, mg_tensor *dst, int64_t dst_row, int64_t dst_step,
                              const mg_tensor *src, int64_t src_row, int64_t src_step, int64_t n,
                              int64_t count);
    /* Optional (NULL: mg_copy_rows_scatter loops over copy_rows): n one-row
     * copies, src row src_rows[i] into dst[i] at row dst_rows[i] (host
     * arrays). A batched decode step appends each sequence's K/V to its own
     * cache this way: one call per layer instead of one per sequence. */
    void (*copy_rows_scatter)(mg_backend *be, mg_tensor *const *dst, const int64_t *dst_rows,
                              const mg_tensor *src, const int64_t *src_rows, int n);
    /* Optional (NULL: mg_linear_many calls linear n times): y[i] = x · w[i]ᵀ
     * for n matrices with the same input (Q, K and V; the codebook heads),
     * each y[i] as linear() computes it: the input is prepared once and the
     * matrices share one pass of the workers. */
    void (*linear_many)(mg_backend *be, int n, mg_tensor *const *y, const mg_tensor *x,
                        const mg_tensor *const *w);
    /* Optional (NULL: no converted-weights cache): bytes of a [rows, cols]
     * matrix weight in format dt, for a backend that keeps converted weights
     * in host memory and whose weight() also takes a MATRIX weight already in
     * that format (t->dtype = dt, t->nbytes = this size) and uses it in place. */
    size_t (*matrix_nbytes)(mg_backend *be, mg_dtype dt, int64_t rows, int64_t cols);
    /* With matrix_nbytes: names the byte layout of converted matrices, and
     * changes whenever it does, so a cache of another layout is never used. */
    const char *matrix_layout;
    /* Optional (NULL: never): 1 once the device failed in a way no later call
     * recovers from (every op fails until the backend is re-created). */
    int (*lost)(mg_backend *be);
    /* Optional (NULL: conv1d, then add, then elu): a stride-1 conv1d whose
     * outputs pass an epilogue before they are stored,
     *   y = conv(x) + bias; y = residual + y (residual not NULL); y = elu(y) (elu_out),
     * bitwise as those ops one after another; residual may be y itself. Saves
     * the passes over memory of the separate ops. */
    void (*conv1d_fused)(mg_backend *be, mg_tensor *y, const mg_tensor *x, const mg_tensor *w,
                         const mg_tensor *bias, int batch, int dilation,
                         const mg_tensor *residual, int elu_out);
    /* Optional (NULL: pad_reflect, then elu): elu(pad_reflect(x)) in one pass. */
    void (*pad_reflect_elu)(mg_backend *be, mg_tensor *y, const mg_tensor *x, int left,
                            int right);
    /* 1: lstm() also takes w_hh as BF16 rows ([4H, H], row-major), the
     * recurrent products then read half the bytes (their sums stay F32).
     * Each whole 32-column chunk of a row is stored pairwise interleaved,
     * columns (c, c+16) side by side (mg_bf16_pair_index), so one 32-bit lane
     * widens to two floats with a shift and a mask; columns past the last
     * whole chunk stay in order. With conv_bf16_fits, lstm() also takes w_ih
     * as BF16 rows in order (its input projections are a 1x1 conv1d). */
    int lstm_bf16;
    /* 1: lstm() also takes w_hh as a Q8 matrix (the format linear() reads,
     * from the loader's matrix conversion): the recurrent products are then
     * linear()'s, a quarter of the F32 bytes. */
    int lstm_q8;
    /* Optional (NULL: never): 1 when attention() has its fast kernel for
     * Q8ROW caches of this shape (else the decoder keeps BF16 caches, which
     * stay fast where 8-bit ones would take the generic path). */
    int (*kv_q8row_fits)(mg_backend *be, int heads, int head_dim, int max_keys);
    /* Optional (NULL: never): 1 when conv1d, conv1d_fused and
     * conv_transpose1d take BF16 weights at full speed, stored as pairs of
     * input channels: element [.., c, ..] of the F32 layout with c counting
     * pairs is a 32-bit word, channel 2c in the low half (conv1d
     * [c_out][c_in/2][k], conv_transpose1d [c_in/2][c_out][k]; c_in even).
     * Inputs and weights then round to BF16; sums stay F32. */
    int (*conv_bf16_fits)(mg_backend *be);
    /* Optional (NULL: select_tokens once per call): n token selections over
     * one vocabulary size, each exactly as select_tokens makes it (without
     * scores), with one wait for all: the scheduler's generations select
     * together after a batched step instead of paying a device round trip
     * each. */
    mg_code (*select_tokens_many)(mg_backend *be, int n, const mg_select_call *calls, int V,
                                  mg_error *err);
} mg_backend_ops;

/* Where weight (a, b, j) of a [d0][d1][k] conv weight lives in the BF16
 * pair layout of conv_bf16_fits (the input channel, dim 1 of a conv and dim
 * 0 of a transposed one, pairs up): the 32-bit word, and in *half which
 * 16-bit half of it (0: low). */
static inline int64_t mg_conv_bf16_pair_word(int64_t a, int64_t b, int64_t j, int64_t d1,
                                             int64_t k, int transposed, int *half)
{
    int64_t ci = transposed ? a : b;
    *half = (int)(ci % 2);
    return transposed ? ((ci / 2) * d1 + b) * k + j : (a * (d1 / 2) + ci / 2) * k + j;
}

/* A conv weight in that pair layout back in its F32 layout [d0][d1][k]. */
void mg_conv_bf16_pairs_to_f32(const uint32_t *pairs, int64_t d0, int64_t d1, int64_t k,
                               int transposed, float *out);

/* Where column k of a row of n columns lives in the interleaved BF16 layout
 * of lstm_bf16. */
static inline int64_t mg_bf16_pair_index(int64_t k, int64_t n)
{
    int64_t base = k & ~(int64_t)31, i = k & 31;
    if (base + 32 > n)
        return k;
    return base + (i < 16 ? 2 * i : 2 * (i - 16) + 1);
}

struct mg_backend {
    const mg_backend_ops *ops;
    int                   n_threads;
    /* Format the backend stores MG_WEIGHT_MATRIX weights in: MG_DT_F32 (as
     * given), MG_DT_BF16 or MG_DT_Q8. Set before loading weights; a backend
     * without the format keeps F32. */
    mg_dtype              weight_dtype;
    /* 1: attention() reads BF16 keys/values and copy_rows() rounds F32 rows
     * into BF16 tensors, so models with compressed weights keep their
     * attention caches in BF16 (half the bytes a decode step reads). */
    int                   kv_bf16;
    /* 1: attention() also reads Q8ROW keys/values and copy_rows() quantises
     * F32 rows into Q8ROW tensors, so models with Q8 weights keep their
     * attention caches in 8 bits (a batched step's largest read after the
     * weights: 24 layers x 2 x 1.06 KB per position and sequence, against
     * 2 KB in BF16), where kv_q8row_fits also takes the shape. Clearing it
     * keeps BF16 caches (tests and benchmarks compare the two). */
    int                   kv_q8row;
    /* 1: the scheduler decodes the audio of generations that finish in the
     * same step as one EnCodec batch (a GPU runs a batch of 64 in about the
     * time of a few single decodes); 0: each on its own, so the first
     * response is not held back (the CPU, where batching saved ~5 %). */
    int                   encodec_batch_jobs;
};

/* Creates the CPU backend with n_threads workers (<= 0: all cores). */
mg_code mg_backend_cpu_create(mg_backend **out, int n_threads, mg_error *err);

#ifdef MG_HAVE_CUDA
/* The CUDA backend (kernels/) on GPU `device`, matrix weights stored as
 * matrix_dtype (MG_DT_F32 exact, or MG_DT_BF16). Fails, naming the reason,
 * when no usable GPU is present (no driver, no device, too old). */
mg_code mg_backend_cuda_create(mg_backend **out, int device, mg_dtype matrix_dtype,
                               mg_error *err);
/* Checks that `device` is usable; its name goes to name and its peak memory
 * bandwidth in bytes/s to peak_bw (either may be NULL). */
mg_code mg_cuda_probe(int device, char *name, size_t name_cap, double *peak_bw, mg_error *err);
#endif

/* --- tensor helpers over the ops (src/tensor.c) --- */
mg_code mg_tensor_new(mg_tensor **out, mg_backend *be, mg_dtype dt, int ndim,
                      const int64_t *ne, mg_error *err);
mg_code mg_tensor_new2(mg_tensor **out, mg_backend *be, int64_t rows, int64_t cols,
                       mg_error *err); /* F32 [rows, cols] */
void    mg_tensor_free(mg_tensor *t);
int64_t mg_tensor_numel(const mg_tensor *t);
int64_t mg_tensor_rows(const mg_tensor *t); /* product of all dims but the last */
int64_t mg_tensor_cols(const mg_tensor *t);
/* A view of rows [row0, row0+n) of a 2-D-like tensor (no copy, does not own). */
mg_tensor mg_tensor_rows_view(const mg_tensor *t, int64_t row0, int64_t n);
/* A view reshaped to [rows, cols] (same number of elements). */
mg_tensor mg_tensor_reshape2(const mg_tensor *t, int64_t rows, int64_t cols);
mg_code mg_tensor_upload_f32(mg_tensor *t, const float *host, mg_error *err);
/* copy_rows_strided through the backend, or a loop of copy_rows without it. */
void    mg_copy_row_blocks(mg_backend *be, mg_tensor *dst, int64_t dst_row, int64_t dst_step,
                           const mg_tensor *src, int64_t src_row, int64_t src_step, int64_t n,
                           int64_t count);
mg_code mg_tensor_download_f32(const mg_tensor *t, float *host, mg_error *err);
void    mg_copy_rows_scatter(mg_backend *be, mg_tensor *const *dst, const int64_t *dst_rows,
                             const mg_tensor *src, const int64_t *src_rows, int n);
/* select_tokens_many through the backend, or n calls of select_tokens. */
mg_code mg_select_tokens_many(mg_backend *be, int n, const mg_select_call *calls, int V,
                              mg_error *err);
/* linear_many through the backend, or n calls of linear without it. */
void    mg_linear_many(mg_backend *be, int n, mg_tensor *const *y, const mg_tensor *x,
                       const mg_tensor *const *w);
#endif
