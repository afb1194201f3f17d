/* MusicGen decoder forward pass:
 *   x = Σ_k E_k[ids_k] + pos
 *   per layer: x += SelfAttn(LN1 x) (causal, cached); x += CrossAttn(LN2 x, enc);
 *              x += fc2 gelu(fc1 LN3 x)
 *   logits_k = head_k(LN x) */
#include "model/decoder.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEC "decoder.model.decoder."

void mg_decoder_sinusoids(float *table, int n_pos, int dim)
{
    int half = dim / 2;
    float step = (float)log(10000.0) / (float)(half - 1);
    for (int t = 0; t < n_pos; t++)
        for (int i = 0; i < half; i++) {
            float f = expf((float)i * -step), a = (float)t * f;
            table[(int64_t)t * dim + i] = cosf(a);
            table[(int64_t)t * dim + half + i] = sinf(a);
        }
}

static void free_layer(mg_dec_layer *L)
{
    mg_tensor *all[] = {L->ln1_w, L->ln1_b, L->q, L->k, L->v, L->o, L->ln2_w, L->ln2_b,
                        L->cq, L->ck, L->cv, L->co, L->ln3_w, L->ln3_b, L->fc1, L->fc2};
    for (size_t j = 0; j < sizeof all / sizeof all[0]; j++)
        mg_tensor_free(all[j]);
}

void mg_decoder_free(mg_decoder *dec)
{
    const mg_config *c = dec->cfg;
    if (!c)
        return;
    for (int k = 0; k < c->num_codebooks; k++) {
        if (dec->embed)
            mg_tensor_free(dec->embed[k]);
        if (dec->heads)
            mg_tensor_free(dec->heads[k]);
    }
    if (dec->layers)
        for (int i = 0; i < c->dec_layers; i++)
            free_layer(&dec->layers[i]);
    free(dec->embed);
    free(dec->heads);
    free(dec->layers);
    mg_tensor_free(dec->pos);
    mg_tensor_free(dec->ln_w);
    mg_tensor_free(dec->ln_b);
    mg_tensor_free(dec->proj_w);
    mg_tensor_free(dec->proj_b);
    memset(dec, 0, sizeof *dec);
}

mg_code mg_decoder_load(mg_decoder *dec, mg_loader *ld, const mg_config *c, mg_error *err)
{
    memset(dec, 0, sizeof *dec);
    dec->cfg = c;
    dec->be = ld->be;
    int64_t H = c->dec_hidden, V = c->dec_vocab, F = c->dec_ffn, K = c->num_codebooks;
    char name[256];
    mg_code rc = MG_OK;
    dec->embed = calloc((size_t)K, sizeof *dec->embed);
    dec->heads = calloc((size_t)K, sizeof *dec->heads);
    dec->layers = calloc((size_t)c->dec_layers, sizeof *dec->layers);
    if (!dec->embed || !dec->heads || !dec->layers)
        rc = mg_fail(err, MG_ERR_NOMEM, "decoder: out of memory");
    for (int k = 0; rc == MG_OK && k < K; k++) {
        snprintf(name, sizeof name, DEC "embed_tokens.%d.weight", k);
        rc = mg_loader_matrix(ld, name, MG_SHAPE(2, V + 1, H), &dec->embed[k], err);
        if (rc == MG_OK) {
            snprintf(name, sizeof name, "decoder.lm_heads.%d.weight", k);
            rc = mg_loader_matrix(ld, name, MG_SHAPE(2, V, H), &dec->heads[k], err);
        }
    }
#define LOAD_AS(load, field, suffix, ...)                                               \
    if (rc == MG_OK) {                                                                  \
        snprintf(name, sizeof name, DEC "layers.%d.%s", i, suffix);                     \
        rc = load(ld, name, __VA_ARGS__, &L->field, err);                               \
    }
#define LOAD(field, suffix, ...) LOAD_AS(mg_loader_tensor, field, suffix, __VA_ARGS__)
#define LOAD_MATRIX(field, suffix, ...) LOAD_AS(mg_loader_matrix, field, suffix, __VA_ARGS__)
    for (int i = 0; rc == MG_OK && i < c->dec_layers; i++) {
        mg_dec_layer *L = &dec->layers[i];
        LOAD(ln1_w, "self_attn_layer_norm.weight", MG_SHAPE(1, H));
        LOAD(ln1_b, "self_attn_layer_norm.bias", MG_SHAPE(1, H));
        LOAD_MATRIX(q, "self_attn.q_proj.weight", MG_SHAPE(2, H, H));
        LOAD_MATRIX(k, "self_attn.k_proj.weight", MG_SHAPE(2, H, H));
        LOAD_MATRIX(v, "self_attn.v_proj.weight", MG_SHAPE(2, H, H));
        LOAD_MATRIX(o, "self_attn.out_proj.weight", MG_SHAPE(2, H, H));
        LOAD(ln2_w, "encoder_attn_layer_norm.weight", MG_SHAPE(1, H));
        LOAD(ln2_b, "encoder_attn_layer_norm.bias", MG_SHAPE(1, H));
        LOAD_MATRIX(cq, "encoder_attn.q_proj.weight", MG_SHAPE(2, H, H));
        LOAD_MATRIX(ck, "encoder_attn.k_proj.weight", MG_SHAPE(2, H, H));
        LOAD_MATRIX(cv, "encoder_attn.v_proj.weight", MG_SHAPE(2, H, H));
        LOAD_MATRIX(co, "encoder_attn.out_proj.weight", MG_SHAPE(2, H, H));
        LOAD(ln3_w, "final_layer_norm.weight", MG_SHAPE(1, H));
        LOAD(ln3_b, "final_layer_norm.bias", MG_SHAPE(1, H));
        LOAD_MATRIX(fc1, "fc1.weight", MG_SHAPE(2, F, H));
        LOAD_MATRIX(fc2, "fc2.weight", MG_SHAPE(2, H, F));
    }
#undef LOAD
#undef LOAD_MATRIX
#undef LOAD_AS
    if (rc == MG_OK)
        rc = mg_loader_tensor(ld, DEC "layer_norm.weight", MG_SHAPE(1, H), &dec->ln_w, err);
    if (rc == MG_OK)
        rc = mg_loader_tensor(ld, DEC "layer_norm.bias", MG_SHAPE(1, H), &dec->ln_b, err);
    /* The sinusoid table is a deterministic buffer: use the stored one when
     * present, else compute the same formula. */
    if (rc == MG_OK) {
        if (mg_st_find(&ld->st, DEC "embed_positions.weights")) {
            rc = mg_loader_tensor(ld, DEC "embed_positions.weights",
                                  MG_SHAPE(2, c->max_positions, H), &dec->pos, err);
        } else {
            float *tab = malloc((size_t)c->max_positions * (size_t)H * sizeof *tab);
            if (!tab)
                rc = mg_fail(err, MG_ERR_NOMEM, "decoder: out of memory");
            else
                mg_decoder_sinusoids(tab, c->max_positions, (int)H);
            if (rc == MG_OK)
                rc = mg_loader_from_host(ld->be, tab, MG_SHAPE(2, c->max_positions, H), &dec->pos, err);
            free(tab);
        }
    }
    if (rc == MG_OK && c->t5_d_model != c->dec_hidden) {
        rc = mg_loader_matrix(ld, "enc_to_dec_proj.weight", MG_SHAPE(2, H, c->t5_d_model),
                              &dec->proj_w, err);
        if (rc == MG_OK)
            rc = mg_loader_tensor(ld, "enc_to_dec_proj.bias", MG_SHAPE(1, H), &dec->proj_b, err);
    }
    if (rc != MG_OK)
        mg_decoder_free(dec);
    return rc;
}

mg_code mg_decoder_project(mg_decoder *dec, const mg_tensor *enc, const uint8_t *mask,
                           mg_tensor *out, mg_error *err)
{
    const mg_backend_ops *op = dec->be->ops;
    int64_t rows = mg_tensor_rows(enc);
    if (dec->proj_w)
        op->linear(dec->be, out, enc, dec->proj_w, dec->proj_b);
    else
        op->copy_rows(dec->be, out, 0, enc, 0, rows);
    float *scale = malloc((size_t)rows * sizeof *scale + 1);
    if (!scale)
        return mg_fail(err, MG_ERR_NOMEM, "decoder: out of memory");
    for (int64_t r = 0; r < rows; r++)
        scale[r] = mask[r] ? 1.0f : 0.0f;
    op->scale_rows(dec->be, out, scale);
    mg_code rc = op->sync(dec->be, err);
    free(scale);
    return rc;
}

static void free_tensor_array(mg_tensor **a, int n)
{
    if (a)
        for (int i = 0; i < n; i++)
            mg_tensor_free(a[i]);
    free(a);
}

static void free_scratch(mg_dec_state *st)
{
    mg_tensor *s[] = {st->x, st->h, st->q, st->kn, st->vn, st->a, st->f, st->xl, st->hl};
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++)
        mg_tensor_free(s[i]);
    st->x = st->h = st->q = st->kn = st->vn = st->a = st->f = st->xl = st->hl = NULL;
    st->scratch_rows = 0;
}

void mg_dec_state_drop_scratch(mg_dec_state *st) { free_scratch(st); }

void mg_dec_state_free(mg_decoder *dec, mg_dec_state *st)
{
    int n = dec->cfg->dec_layers;
    free_tensor_array(st->k_cache, n);
    free_tensor_array(st->v_cache, n);
    free_tensor_array(st->ck, n);
    free_tensor_array(st->cv, n);
    free(st->enc_mask);
    free(st->self_seqs);
    free(st->cross_seqs);
    free(st->pos_ids);
    free_scratch(st);
    memset(st, 0, sizeof *st);
}

mg_code mg_dec_state_init(mg_decoder *dec, mg_dec_state *st, int n_seq, int cap,
                          const mg_tensor *enc, const uint8_t *enc_mask, int enc_len,
                          mg_error *err)
{
    const mg_config *c = dec->cfg;
    memset(st, 0, sizeof *st);
    if (cap > c->max_positions)
        return mg_fail(err, MG_ERR_INVALID,
                       "decoder: %d positions requested, the model has %d", cap, c->max_positions);
    st->n_seq = n_seq;
    st->cap = cap;
    st->enc_len = enc_len;
    int n = c->dec_layers;
    int64_t H = c->dec_hidden;
    st->k_cache = calloc((size_t)n, sizeof *st->k_cache);
    st->v_cache = calloc((size_t)n, sizeof *st->v_cache);
    st->ck = calloc((size_t)n, sizeof *st->ck);
    st->cv = calloc((size_t)n, sizeof *st->cv);
    st->enc_mask = malloc((size_t)n_seq * (size_t)enc_len + 1);
    st->self_seqs = calloc((size_t)n_seq, sizeof *st->self_seqs);
    st->cross_seqs = calloc((size_t)n_seq, sizeof *st->cross_seqs);
    if (!st->k_cache || !st->v_cache || !st->ck || !st->cv || !st->enc_mask || !st->self_seqs ||
        !st->cross_seqs) {
        mg_dec_state_free(dec, st);
        return mg_fail(err, MG_ERR_NOMEM, "decoder: out of memory for the decoding state");
    }
    memcpy(st->enc_mask, enc_mask, (size_t)n_seq * (size_t)enc_len);
    /* the trailing sequences that see no text at all */
    for (st->n_cross = n_seq; st->n_cross > 0; st->n_cross--) {
        const uint8_t *m = enc_mask + (int64_t)(st->n_cross - 1) * enc_len;
        int any = 0;
        for (int j = 0; j < enc_len; j++)
            any |= m[j] != 0;
        if (any)
            break;
    }
    mg_code rc = MG_OK;
    const mg_backend_ops *op = dec->be->ops;
    /* Self-attention caches in 8 bits for Q8 weights, BF16 for BF16 weights,
     * where the backend can: they are a decode step's other big read (24
     * layers x 2 x 4 KB per position and sequence in F32; 4 requests of
     * 10 s read up to ~400 MB of BF16 caches per step beside 405 MB of Q8
     * weights). 8 bits where a head is one Q8ROW block and the backend's
     * fast kernel takes the shape (the CPU's VNNI kernel). Their rounding
     * is of the order of the weights' own (test_generate measures it); F32
     * weights keep exact F32 caches. */
    int64_t kv_ne[2] = {(int64_t)n_seq * cap, H};
    mg_backend_caps caps;
    mg_backend_get_caps(dec->be, &caps);
    mg_dtype wdt = caps.weight_dtype;
    int head_dim = (int)(H / c->dec_heads);
    int q8row = wdt == MG_DT_Q8 && head_dim == MG_Q8ROW_BLOCK && caps.kv_q8row_fits &&
                caps.kv_q8row_fits(dec->be, c->dec_heads, head_dim, cap);
    mg_dtype kv_dt = q8row                            ? MG_DT_Q8ROW
                   : wdt != MG_DT_F32 && caps.kv_bf16 ? MG_DT_BF16
                                                      : MG_DT_F32;
    /* cross-attention keys/values depend only on the text: computed once */
    for (int l = 0; rc == MG_OK && l < n; l++) {
        rc = mg_tensor_new(&st->k_cache[l], dec->be, kv_dt, 2, kv_ne, err);
        if (rc == MG_OK) rc = mg_tensor_new(&st->v_cache[l], dec->be, kv_dt, 2, kv_ne, err);
        if (rc == MG_OK) rc = mg_tensor_new2(&st->ck[l], dec->be, (int64_t)n_seq * enc_len, H, err);
        if (rc == MG_OK) rc = mg_tensor_new2(&st->cv[l], dec->be, (int64_t)n_seq * enc_len, H, err);
        if (rc == MG_OK) {
            op->linear(dec->be, st->ck[l], enc, dec->layers[l].ck, NULL);
            op->linear(dec->be, st->cv[l], enc, dec->layers[l].cv, NULL);
        }
    }
    if (rc == MG_OK)
        rc = op->sync(dec->be, err);
    if (rc != MG_OK)
        mg_dec_state_free(dec, st);
    return rc;
}

static mg_code ensure_scratch(mg_decoder *dec, mg_dec_state *st, int rows, mg_error *err)
{
    if (rows <= st->scratch_rows)
        return MG_OK;
    free_scratch(st);
    free(st->pos_ids);
    const mg_config *c = dec->cfg;
    int64_t H = c->dec_hidden;
    mg_backend *be = dec->be;
    mg_code rc = mg_tensor_new2(&st->x, be, rows, H, err);
    if (rc == MG_OK) rc = mg_tensor_new2(&st->h, be, rows, H, err);
    if (rc == MG_OK) rc = mg_tensor_new2(&st->q, be, rows, H, err);
    if (rc == MG_OK) rc = mg_tensor_new2(&st->kn, be, rows, H, err);
    if (rc == MG_OK) rc = mg_tensor_new2(&st->vn, be, rows, H, err);
    if (rc == MG_OK) rc = mg_tensor_new2(&st->a, be, rows, H, err);
    if (rc == MG_OK) rc = mg_tensor_new2(&st->f, be, rows, c->dec_ffn, err);
    if (rc == MG_OK) rc = mg_tensor_new2(&st->xl, be, rows, H, err);
    if (rc == MG_OK) rc = mg_tensor_new2(&st->hl, be, rows, c->dec_vocab, err);
    st->pos_ids = malloc((size_t)rows * sizeof *st->pos_ids);
    if (rc == MG_OK && !st->pos_ids)
        rc = mg_fail(err, MG_ERR_NOMEM, "decoder: out of memory");
    if (rc != MG_OK) {
        free_scratch(st);
        return rc;
    }
    st->scratch_rows = rows;
    return MG_OK;
}

/* The rows of one decoder pass and where layer l's attention looks. Rows
 * are n_seq sequences x q_per_seq queries; the first n_cross sequences (and
 * so the first n_cross * q_per_seq rows) are the ones with text. */
typedef struct {
    mg_tensor   *x, *h, *q, *kn, *vn, *a, *f;
    int          n_seq, q_per_seq, n_cross;
    mg_attn_seq *self, *cross;
    /* appends the new K/V (kn, vn) to the caches of layer l and fills
     * self[0..n_seq) and cross[0..n_cross) for it */
    void       (*attach)(void *ud, int l);
    void        *ud;
} dec_pass;

/* One pre-norm decoder layer on every row of the pass:
 *   x += o(self_attn(ln1(x)));  x += co(cross_attn(ln2(x))) (text rows);
 *   x += fc2(gelu(fc1(ln3(x)))) */
static void dec_layer(mg_decoder *dec, int l, const dec_pass *p)
{
    const mg_config *c = dec->cfg;
    const mg_backend_ops *op = dec->be->ops;
    mg_backend *be = dec->be;
    mg_dec_layer *L = &dec->layers[l];
    int64_t H = c->dec_hidden;
    mg_attn_params self_p = {.heads = c->dec_heads, .head_dim = (int)(H / c->dec_heads),
                             .scale = 1.0f / sqrtf((float)(H / c->dec_heads)), .causal = 1};
    mg_attn_params cross_p = self_p;
    cross_p.causal = 0;

    op->layer_norm(be, p->h, p->x, L->ln1_w, L->ln1_b, 1e-5f);
    mg_tensor *qkv[3] = {p->q, p->kn, p->vn};
    const mg_tensor *wqkv[3] = {L->q, L->k, L->v};
    mg_linear_many(be, 3, qkv, p->h, wqkv);
    p->attach(p->ud, l);
    op->attention(be, p->a, p->q, p->n_seq, p->q_per_seq, p->self, &self_p);
    op->linear(be, p->h, p->a, L->o, NULL);
    op->add(be, p->x, p->h);
    if (p->n_cross > 0) {
        int64_t rc = (int64_t)p->n_cross * p->q_per_seq;
        mg_tensor xc = mg_tensor_rows_view(p->x, 0, rc), hc = mg_tensor_rows_view(p->h, 0, rc);
        mg_tensor qc = mg_tensor_rows_view(p->q, 0, rc), ac = mg_tensor_rows_view(p->a, 0, rc);
        op->layer_norm(be, &hc, &xc, L->ln2_w, L->ln2_b, 1e-5f);
        op->linear(be, &qc, &hc, L->cq, NULL);
        op->attention(be, &ac, &qc, p->n_cross, p->q_per_seq, p->cross, &cross_p);
        op->linear(be, &hc, &ac, L->co, NULL);
        op->add(be, &xc, &hc);
    }
    op->layer_norm(be, p->h, p->x, L->ln3_w, L->ln3_b, 1e-5f);
    op->linear(be, p->f, p->h, L->fc1, NULL);
    op->gelu(be, p->f);
    op->linear(be, p->h, p->f, L->fc2, NULL);
    op->add(be, p->x, p->h);
}

typedef struct {
    mg_decoder   *dec;
    mg_dec_state *st;
    const mg_tensor *kn, *vn;
    int           n_new;
} forward_attach;

/* mg_decoder_forward's caches: each sequence's n_new rows after its past */
static void attach_forward(void *ud, int l)
{
    forward_attach *f = ud;
    mg_dec_state *st = f->st;
    mg_backend *be = f->dec->be;
    mg_copy_row_blocks(be, st->k_cache[l], st->past, st->cap, f->kn, 0, f->n_new, f->n_new, st->n_seq);
    mg_copy_row_blocks(be, st->v_cache[l], st->past, st->cap, f->vn, 0, f->n_new, f->n_new, st->n_seq);
    for (int s = 0; s < st->n_seq; s++)
        st->self_seqs[s] = (mg_attn_seq){.k = st->k_cache[l], .v = st->v_cache[l],
                                         .k_row0 = (int64_t)s * st->cap,
                                         .n_keys = st->past + f->n_new, .q_pos = st->past};
    for (int s = 0; s < st->n_cross; s++)
        st->cross_seqs[s] = (mg_attn_seq){.k = st->ck[l], .v = st->cv[l],
                                          .k_row0 = (int64_t)s * st->enc_len,
                                          .n_keys = st->enc_len,
                                          .key_mask = st->enc_mask + (int64_t)s * st->enc_len};
}

mg_code mg_decoder_forward(mg_decoder *dec, mg_dec_state *st, const int32_t *ids, int n_new,
                           int last_only, mg_tensor *logits, mg_trace_fn trace, void *ud,
                           mg_error *err)
{
    const mg_config *c = dec->cfg;
    const mg_backend_ops *op = dec->be->ops;
    mg_backend *be = dec->be;
    int K = c->num_codebooks, S = st->n_seq, rows = S * n_new;
    if (n_new < 1 || st->past + n_new > st->cap)
        return mg_fail(err, MG_ERR_INVALID, "decoder: %d new positions after %d exceed the capacity %d",
                       n_new, st->past, st->cap);
    for (int i = 0; i < S * K * n_new; i++)
        if (ids[i] < 0 || ids[i] > c->dec_vocab)
            return mg_fail(err, MG_ERR_INVALID, "decoder: code %d is outside [0, %d]", ids[i], c->dec_vocab);
    mg_code rc = ensure_scratch(dec, st, rows, err);
    if (rc != MG_OK)
        return rc;
    mg_tensor x = mg_tensor_rows_view(st->x, 0, rows), h = mg_tensor_rows_view(st->h, 0, rows);
    mg_tensor q = mg_tensor_rows_view(st->q, 0, rows), kn = mg_tensor_rows_view(st->kn, 0, rows);
    mg_tensor vn = mg_tensor_rows_view(st->vn, 0, rows), a = mg_tensor_rows_view(st->a, 0, rows);
    mg_tensor f = mg_tensor_rows_view(st->f, 0, rows);

    /* x[s*n_new + t] = Σ_k E_k[ids[s,k,t]] + pos[past + t] */
    int32_t *col = st->pos_ids;
    for (int k = 0; k < K; k++) {
        for (int s = 0; s < S; s++)
            for (int t = 0; t < n_new; t++)
                col[s * n_new + t] = ids[((int64_t)s * K + k) * n_new + t];
        op->embed(be, &x, dec->embed[k], col, rows, k > 0);
    }
    for (int s = 0; s < S; s++)
        for (int t = 0; t < n_new; t++)
            col[s * n_new + t] = st->past + t;
    op->embed(be, &x, dec->pos, col, rows, 1);
    if (trace)
        trace(ud, "decoder_hidden_states.0", &x);

    char name[64];
    forward_attach fa = {.dec = dec, .st = st, .kn = &kn, .vn = &vn, .n_new = n_new};
    dec_pass pass = {.x = &x, .h = &h, .q = &q, .kn = &kn, .vn = &vn, .a = &a, .f = &f,
                     .n_seq = S, .q_per_seq = n_new, .n_cross = st->n_cross,
                     .self = st->self_seqs, .cross = st->cross_seqs,
                     .attach = attach_forward, .ud = &fa};
    for (int l = 0; l < c->dec_layers; l++) {
        dec_layer(dec, l, &pass);
        if (trace && l + 1 < c->dec_layers) {
            snprintf(name, sizeof name, "decoder_hidden_states.%d", l + 1);
            trace(ud, name, &x);
        }
    }
    op->layer_norm(be, &x, &x, dec->ln_w, dec->ln_b, 1e-5f);
    if (trace) {
        snprintf(name, sizeof name, "decoder_hidden_states.%d", c->dec_layers);
        trace(ud, name, &x);
    }
    st->past += n_new;

    /* LM heads: logits row (s*K + k)*n_out + t */
    int n_out = last_only ? 1 : n_new;
    mg_tensor src = x;
    if (last_only) {
        src = mg_tensor_rows_view(st->xl, 0, S);
        mg_copy_row_blocks(be, &src, 0, 1, &x, n_new - 1, n_new, 1, S);
    }
    mg_tensor hl = mg_tensor_rows_view(st->hl, 0, (int64_t)S * n_out);
    for (int k = 0; k < K; k++) {
        op->linear(be, &hl, &src, dec->heads[k], NULL);
        mg_copy_row_blocks(be, logits, (int64_t)k * n_out, (int64_t)K * n_out, &hl, 0, n_out,
                           n_out, S);
    }
    return op->sync(be, err);
}

void mg_dec_batch_free(mg_dec_batch *wb)
{
    mg_tensor *t[] = {wb->x, wb->h, wb->q, wb->kn, wb->vn, wb->a, wb->f, wb->hl};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        mg_tensor_free(t[i]);
    free(wb->col);
    free(wb->row_of);
    free(wb->seqs);
    free(wb->cseqs);
    free(wb->dst);
    free(wb->dst_row);
    free(wb->src_row);
    memset(wb, 0, sizeof *wb);
}

static mg_code batch_reserve(mg_decoder *dec, mg_dec_batch *wb, int rows, mg_error *err)
{
    if (rows <= wb->rows)
        return MG_OK;
    mg_dec_batch_free(wb);
    const mg_config *c = dec->cfg;
    int64_t H = c->dec_hidden;
    mg_code rc = mg_tensor_new2(&wb->x, dec->be, rows, H, err);
    if (rc == MG_OK) rc = mg_tensor_new2(&wb->h, dec->be, rows, H, err);
    if (rc == MG_OK) rc = mg_tensor_new2(&wb->q, dec->be, rows, H, err);
    if (rc == MG_OK) rc = mg_tensor_new2(&wb->kn, dec->be, rows, H, err);
    if (rc == MG_OK) rc = mg_tensor_new2(&wb->vn, dec->be, rows, H, err);
    if (rc == MG_OK) rc = mg_tensor_new2(&wb->a, dec->be, rows, H, err);
    if (rc == MG_OK) rc = mg_tensor_new2(&wb->f, dec->be, rows, c->dec_ffn, err);
    if (rc == MG_OK)
        rc = mg_tensor_new2(&wb->hl, dec->be, (int64_t)c->num_codebooks * rows, c->dec_vocab, err);
    wb->col = malloc((size_t)rows * sizeof *wb->col);
    wb->row_of = malloc((size_t)rows * sizeof *wb->row_of);
    wb->seqs = malloc((size_t)rows * sizeof *wb->seqs);
    wb->cseqs = malloc((size_t)rows * sizeof *wb->cseqs);
    wb->dst = malloc((size_t)rows * sizeof *wb->dst);
    wb->dst_row = malloc((size_t)rows * sizeof *wb->dst_row);
    wb->src_row = malloc((size_t)rows * sizeof *wb->src_row);
    if (rc == MG_OK && (!wb->col || !wb->row_of || !wb->seqs || !wb->cseqs || !wb->dst || !wb->dst_row ||
                        !wb->src_row))
        rc = mg_fail(err, MG_ERR_NOMEM, "decoder: out of memory for a batched step");
    if (rc != MG_OK) {
        mg_dec_batch_free(wb);
        return rc;
    }
    wb->rows = rows;
    return MG_OK;
}

typedef struct {
    mg_decoder          *dec;
    mg_dec_batch        *wb;
    mg_dec_state *const *st;
    int                  n, R;
    const mg_tensor     *kn, *vn;
} step_attach;

/* mg_decoder_step's caches: row wb->row_of[first + s] is sequence s of
 * state j; its new K/V go to the end of that sequence's own cache */
static void attach_step(void *ud, int l)
{
    step_attach *a = ud;
    mg_dec_batch *wb = a->wb;
    for (int kv = 0; kv < 2; kv++) {
        for (int j = 0, first = 0; j < a->n; first += a->st[j]->n_seq, j++)
            for (int s = 0; s < a->st[j]->n_seq; s++) {
                int row = wb->row_of[first + s];
                wb->dst[row] = kv ? a->st[j]->v_cache[l] : a->st[j]->k_cache[l];
                wb->dst_row[row] = (int64_t)s * a->st[j]->cap + a->st[j]->past;
                wb->src_row[row] = row;
            }
        mg_copy_rows_scatter(a->dec->be, wb->dst, wb->dst_row, kv ? a->vn : a->kn, wb->src_row,
                             a->R);
    }
    for (int j = 0, first = 0; j < a->n; first += a->st[j]->n_seq, j++)
        for (int s = 0; s < a->st[j]->n_seq; s++) {
            const mg_dec_state *sj = a->st[j];
            int row = wb->row_of[first + s];
            wb->seqs[row] = (mg_attn_seq){.k = sj->k_cache[l], .v = sj->v_cache[l],
                                          .k_row0 = (int64_t)s * sj->cap,
                                          .n_keys = sj->past + 1, .q_pos = sj->past};
            if (s < sj->n_cross)
                wb->cseqs[row] = (mg_attn_seq){.k = sj->ck[l], .v = sj->cv[l],
                                               .k_row0 = (int64_t)s * sj->enc_len,
                                               .n_keys = sj->enc_len,
                                               .key_mask = sj->enc_mask + (int64_t)s * sj->enc_len};
        }
}

mg_code mg_decoder_step(mg_decoder *dec, mg_dec_batch *wb, mg_dec_state *const *st, int n,
                        const int32_t *const *ids, mg_tensor *const *logits, mg_error *err)
{
    const mg_config *c = dec->cfg;
    const mg_backend_ops *op = dec->be->ops;
    mg_backend *be = dec->be;
    int K = c->num_codebooks, R = 0, R_cross = 0;
    for (int j = 0; j < n; j++) {
        if (st[j]->past + 1 > st[j]->cap)
            return mg_fail(err, MG_ERR_INVALID, "decoder: position %d exceeds the capacity %d",
                           st[j]->past, st[j]->cap);
        for (int i = 0; i < st[j]->n_seq * K; i++)
            if (ids[j][i] < 0 || ids[j][i] > c->dec_vocab)
                return mg_fail(err, MG_ERR_INVALID, "decoder: code %d is outside [0, %d]",
                               ids[j][i], c->dec_vocab);
        R += st[j]->n_seq;
        R_cross += st[j]->n_cross;
    }
    mg_code rc = batch_reserve(dec, wb, R, err);
    if (rc != MG_OK)
        return rc;
    /* rows: every state's text-bearing sequences, then all the others */
    int r_cross = 0, r_rest = R_cross;
    for (int j = 0, first = 0; j < n; first += st[j]->n_seq, j++)
        for (int s = 0; s < st[j]->n_seq; s++)
            wb->row_of[first + s] = s < st[j]->n_cross ? r_cross++ : r_rest++;
#define FOR_ROWS(...)                                                                     \
    for (int j = 0, first = 0; j < n; first += st[j]->n_seq, j++)                         \
        for (int s = 0; s < st[j]->n_seq; s++) {                                          \
            int row = wb->row_of[first + s];                                              \
            (void)row;                                                                    \
            __VA_ARGS__;                                                                  \
        }
    mg_tensor x = mg_tensor_rows_view(wb->x, 0, R), h = mg_tensor_rows_view(wb->h, 0, R);
    mg_tensor q = mg_tensor_rows_view(wb->q, 0, R), kn = mg_tensor_rows_view(wb->kn, 0, R);
    mg_tensor vn = mg_tensor_rows_view(wb->vn, 0, R), a = mg_tensor_rows_view(wb->a, 0, R);
    mg_tensor f = mg_tensor_rows_view(wb->f, 0, R);

    /* x[row] = Σ_k E_k[id] + pos[past of its state] */
    for (int k = 0; k < K; k++) {
        FOR_ROWS(wb->col[row] = ids[j][s * K + k]);
        op->embed(be, &x, dec->embed[k], wb->col, R, k > 0);
    }
    FOR_ROWS(wb->col[row] = st[j]->past);
    op->embed(be, &x, dec->pos, wb->col, R, 1);

    step_attach sa = {.dec = dec, .wb = wb, .st = st, .n = n, .R = R, .kn = &kn, .vn = &vn};
    dec_pass pass = {.x = &x, .h = &h, .q = &q, .kn = &kn, .vn = &vn, .a = &a, .f = &f,
                     .n_seq = R, .q_per_seq = 1, .n_cross = R_cross,
                     .self = wb->seqs, .cross = wb->cseqs, .attach = attach_step, .ud = &sa};
    for (int l = 0; l < c->dec_layers; l++)
        dec_layer(dec, l, &pass);
    op->layer_norm(be, &x, &x, dec->ln_w, dec->ln_b, 1e-5f);
    /* the codebook heads into hl rows [k*R, (k+1)*R), then each row to its
     * state's logits [n_seq * K, V] */
    mg_tensor hk[MG_MAX_CODEBOOKS], *hkp[MG_MAX_CODEBOOKS];
    for (int k = 0; k < K; k++) {
        hk[k] = mg_tensor_rows_view(wb->hl, (int64_t)k * R, R);
        hkp[k] = &hk[k];
    }
    mg_linear_many(be, K, hkp, &x, (const mg_tensor *const *)dec->heads);
    for (int k = 0; k < K; k++) {
        FOR_ROWS({
            wb->dst[row] = logits[j];
            wb->dst_row[row] = (int64_t)s * K + k;
            wb->src_row[row] = row;
        });
        mg_copy_rows_scatter(be, wb->dst, wb->dst_row, &hk[k], wb->src_row, R);
    }
#undef FOR_ROWS
    for (int j = 0; j < n; j++)
        st[j]->past++;
    return op->sync(be, err);
}
