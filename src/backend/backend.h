/* The compute backend, shaped like ggml's backend interface: one table of
 * function pointers (the ops every backend implements, then optional ones a
 * backend may leave NULL, each with the fallback the helpers below take),
 * what a backend can do beyond them asked with one call (mg_backend_caps),
 * and options given once, at creation (backend/options.h). The CPU backend
 * (src/cpu/) and the CUDA backend (kernels/) implement it. Model code adapts
 * to the capabilities, never to which backend it runs on. Weight layouts
 * the fast paths read are in backend/layout.h.
 *
 * Tensors are opaque to the model code: data may live on a device, so model
 * code never dereferences mg_tensor.data; it moves bytes with upload/download
 * only. Conventions: row-major, ne[ndim-1] innermost. Activations are F32.
 * Compute ops return nothing; a backend that can fail asynchronously (CUDA)
 * records the first failure and reports it from sync(). Small per-row
 * metadata (ids, masks) is passed as host arrays; the backend copies it
 * where it needs it. */
#ifndef MG_BACKEND_H
#define MG_BACKEND_H
#include <stddef.h>
#include <stdint.h>
#include "backend/options.h"
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

/* What a backend can do beyond the mandatory ops. A fact of the backend as
 * created (its options, its weight format, the machine), asked with
 * mg_backend_get_caps rather than kept in fields the model code reads one
 * by one, so that the answer has one place. */
typedef struct mg_backend_caps {
    /* Format MATRIX weights are stored in: MG_DT_F32 (as given), MG_DT_BF16
     * or MG_DT_Q8 (chosen at creation). The model's choices that follow the
     * weight format (attention caches, EnCodec's weights) read it here. */
    mg_dtype    weight_dtype;
    /* With the matrix_nbytes op: names the byte layout of converted
     * matrices, and changes whenever it does, so a weights cache of another
     * layout is never used. NULL without matrix_nbytes. */
    const char *matrix_layout;
    /* 1: lstm() also takes w_hh as BF16 rows in the interleaved layout of
     * mg_bf16_pair_index (layout.h): the recurrent products then read half
     * the bytes (their sums stay F32). With conv_bf16, lstm() also takes
     * w_ih as BF16 rows in order (its input projections are a 1x1 conv1d). */
    int         lstm_bf16;
    /* 1: lstm() also takes w_hh as a Q8 matrix (the format linear() reads,
     * from the loader's matrix conversion): the recurrent products are then
     * linear()'s, a quarter of the F32 bytes. */
    int         lstm_q8;
    /* 1: conv1d, conv1d_fused and conv_transpose1d take BF16 weights at full
     * speed, in the pair layout of mg_conv_bf16_pair_word (layout.h; c_in
     * even). Inputs and weights then round to BF16; sums stay F32. */
    int         conv_bf16;
    /* 1: attention() reads BF16 keys/values and copy_rows() rounds F32 rows
     * into BF16 tensors, so models with compressed weights keep their
     * attention caches in BF16 (half the bytes a decode step reads). */
    int         kv_bf16;
    /* Non-NULL: attention() also reads Q8ROW keys/values and copy_rows()
     * quantises F32 rows into Q8ROW tensors, fast for the shapes where this
     * returns 1 (elsewhere the decoder keeps BF16 caches, which stay fast
     * where 8-bit ones would take a generic path). 8 bits per value make a
     * batched step's largest read after the weights smaller: 24 layers x 2 x
     * 1.06 KB per position and sequence, against 2 KB in BF16. */
    int       (*kv_q8row_fits)(mg_backend *be, int heads, int head_dim, int max_keys);
    /* 1: a batch of EnCodec decodes costs about what one does (a GPU runs 64
     * in about the time of a few single ones); 0: it costs about the sum of
     * them (the CPU, where batching saved ~5 %). The runtime decides from
     * this whether generations ending together share one EnCodec batch. */
    int         batched_encodec_cheap;
    /* 1: the lstm_state op is there, so EnCodec can decode a stream chunk
     * by chunk, carrying the LSTM's state between chunks. 0 (the CUDA
     * backend until its kernel carries state): the runtime decodes EnCodec
     * once, after the last step. */
    int         lstm_state;
} mg_backend_caps;

typedef struct mg_backend_ops {
    /* ---- mandatory ---- */
    const char *name;
    void    (*destroy)(mg_backend *be);
    /* Sets the fields of caps that apply to this backend (mg_backend_get_caps
     * zeroes the others first: "cannot"). */
    void    (*get_caps)(mg_backend *be, mg_backend_caps *caps);
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
     * (F32 into a BF16 dst rounds to nearest even where caps.kv_bf16 is set,
     * into a Q8ROW dst quantises where caps.kv_q8row_fits is). */
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

    /* ---- optional: NULL takes the fallback each names ---- */
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
    /* Optional (NULL: select_tokens once per call): n token selections over
     * one vocabulary size, each exactly as select_tokens makes it (without
     * scores), with one wait for all: the scheduler's generations select
     * together after a batched step instead of paying a device round trip
     * each. */
    mg_code (*select_tokens_many)(mg_backend *be, int n, const mg_select_call *calls, int V,
                                  mg_error *err);
    /* Optional (NULL: caps.lstm_state is 0): lstm() continuing from a carried
     * state, state [2*B, H] (rows 0..B-1 h, rows B..2B-1 the cell c of each
     * item). state_in: the state before the first step (NULL: zeros, exactly
     * lstm()); state_out: the state after the last step (NULL: not kept; may
     * be state_in). Each step's arithmetic is lstm()'s whatever the number
     * of steps per call, so running a sequence in pieces gives the bits of
     * one call over all of it. */
    void (*lstm_state)(mg_backend *be, mg_tensor *h_out, const mg_tensor *x,
                       const mg_tensor *w_ih, const mg_tensor *w_hh, const mg_tensor *b_ih,
                       const mg_tensor *b_hh, int batch, const mg_tensor *state_in,
                       mg_tensor *state_out);
} mg_backend_ops;

struct mg_backend {
    const mg_backend_ops *ops;
    int                   n_threads;
};

/* The backend's capabilities (every field; zero where it has none). */
void mg_backend_get_caps(mg_backend *be, mg_backend_caps *caps);

/* Creates the CPU backend with n_threads workers (<= 0: all cores), MATRIX
 * weights stored as weight_dtype (MG_DT_F32, MG_DT_BF16 or MG_DT_Q8);
 * opt NULL: mg_backend_options_default. */
mg_code mg_backend_cpu_create(mg_backend **out, int n_threads, mg_dtype weight_dtype,
                              const mg_backend_options *opt, mg_error *err);

#ifdef MG_HAVE_CUDA
/* The CUDA backend (kernels/) on GPU `device`, matrix weights stored as
 * matrix_dtype (MG_DT_F32 exact, or MG_DT_BF16); opt NULL:
 * mg_backend_options_default. Fails, naming the reason, when no usable GPU
 * is present (no driver, no device, too old). */
mg_code mg_backend_cuda_create(mg_backend **out, int device, mg_dtype matrix_dtype,
                               const mg_backend_options *opt, mg_error *err);
/* Checks that `device` is usable; its name goes to name and its peak memory
 * bandwidth in bytes/s to peak_bw (either may be NULL). */
mg_code mg_cuda_probe(int device, char *name, size_t name_cap, double *peak_bw, mg_error *err);
#endif

/* --- tensor helpers over the ops (backend/tensor.c) --- */
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
