/* The MusicGen decoder: a pre-LN transformer over the sum of K codebook
 * embeddings, cross-attending to the (projected) text encoding, with one LM
 * head per codebook. */
#ifndef MG_DECODER_H
#define MG_DECODER_H
#include "model/t5.h"

typedef struct {
    mg_tensor *ln1_w, *ln1_b, *q, *k, *v, *o;       /* self-attention */
    mg_tensor *ln2_w, *ln2_b, *cq, *ck, *cv, *co;   /* cross-attention */
    mg_tensor *ln3_w, *ln3_b, *fc1, *fc2;           /* feed-forward */
} mg_dec_layer;

typedef struct {
    const mg_config *cfg;
    mg_backend      *be;
    mg_tensor      **embed;      /* K x [V+1, hidden] */
    mg_tensor       *pos;        /* [max_positions, hidden] sinusoids */
    mg_dec_layer    *layers;
    mg_tensor       *ln_w, *ln_b;
    mg_tensor      **heads;      /* K x [V, hidden] */
    mg_tensor       *proj_w, *proj_b; /* enc_to_dec_proj, NULL when widths match */
} mg_decoder;

/* The decoding state of n_seq sequences that advance together: self-attention
 * KV cache (cap positions each) and the cross-attention K/V of the text. */
typedef struct {
    int         n_seq, cap, past, enc_len;
    mg_tensor **k_cache, **v_cache; /* per layer [n_seq*cap, hidden] */
    mg_tensor **ck, **cv;           /* per layer [n_seq*enc_len, hidden] */
    uint8_t    *enc_mask;           /* host [n_seq*enc_len] */
    /* Sequences [n_cross, n_seq) have every text key masked (the
     * unconditional half of guidance): their cross-attention adds exactly 0
     * (softmax over masked keys averages V = v_proj(0) = 0), so it is skipped. */
    int         n_cross;
    mg_attn_seq *self_seqs, *cross_seqs;
    int32_t    *pos_ids;
    /* scratch sized for rows = n_seq*max_rows_per_seq */
    int         scratch_rows;
    mg_tensor  *x, *h, *q, *kn, *vn, *a, *f, *xl, *hl;
} mg_dec_state;

/* Work space of batched decode steps: tensors and host arrays for up to
 * `rows` sequences (one new column each). */
typedef struct {
    int          rows;
    mg_tensor   *x, *h, *q, *kn, *vn, *a, *f, *hl;
    int32_t     *col;      /* per-row ids / positions handed to embed */
    int         *row_of;   /* row of sequence s of state j: row_of[first(j) + s] */
    mg_attn_seq *seqs, *cseqs; /* per row: self- and cross-attention of the layer */
    mg_tensor  **dst;      /* one-row scatter copies: targets and rows */
    int64_t     *dst_row, *src_row;
} mg_dec_batch;

mg_code mg_decoder_load(mg_decoder *dec, mg_loader *ld, const mg_config *cfg, mg_error *err);
void    mg_decoder_free(mg_decoder *dec);

/* Sinusoidal table: cos first, then sin, f_i = exp(-i*ln(10000)/(half-1)). */
void    mg_decoder_sinusoids(float *table, int n_pos, int dim);

/* enc [rows, t5_d_model] -> out [rows, hidden]: projection if the model has
 * one, then rows with mask 0 set to exactly 0. */
mg_code mg_decoder_project(mg_decoder *dec, const mg_tensor *enc, const uint8_t *mask,
                           mg_tensor *out, mg_error *err);

/* enc: [n_seq*enc_len, hidden] (already projected and masked). */
mg_code mg_dec_state_init(mg_decoder *dec, mg_dec_state *st, int n_seq, int cap,
                          const mg_tensor *enc, const uint8_t *enc_mask, int enc_len,
                          mg_error *err);
void    mg_dec_state_free(mg_decoder *dec, mg_dec_state *st);
/* Frees the scratch mg_decoder_forward sized for its widest call (a
 * prefill's: sequences x prompt columns, ~94 MB for musicgen-small); the
 * next forward allocates what it needs again. Batched steps use their own
 * work space. */
void    mg_dec_state_drop_scratch(mg_dec_state *st);

/* One decode step for several decoding states at once, each at its own
 * position with its own caches (continuous batching): ids[j] host
 * [n_seq_j, K] is state j's new column, logits[j] [n_seq_j*K, V] receives
 * its next-column logits laid out like mg_decoder_forward's last_only. The
 * rows of every state's text-bearing sequences go first so that one
 * cross-attention pass covers them; each row's arithmetic is the same as in a
 * step of its state alone. */
mg_code mg_decoder_step(mg_decoder *dec, mg_dec_batch *wb, mg_dec_state *const *st, int n,
                        const int32_t *const *ids, mg_tensor *const *logits, mg_error *err);
void    mg_dec_batch_free(mg_dec_batch *wb);

/* Teacher forcing for the golden checks (several columns per call, traces,
 * every column's logits); generation uses mg_decoder_step.
 * Runs n_new new columns for every sequence: ids host [n_seq, K, n_new].
 * logits: [n_seq*K*n_new, V] laid out [n_seq, K, n_new, V], or with
 * last_only [n_seq*K, V] for the last new column. Trace names follow
 * golden_decoder_tf ("decoder_hidden_states.i"). */
mg_code mg_decoder_forward(mg_decoder *dec, mg_dec_state *st, const int32_t *ids, int n_new,
                           int last_only, mg_tensor *logits, mg_trace_fn trace, void *ud,
                           mg_error *err);
#endif
