/* T5 encoder: x = E[ids]; per block x += Attn(RMS(x)), x += Wo relu(Wi RMS(x));
 * final RMS. Attention is unscaled and biased by relative-position buckets
 * that block 0 owns and every block reuses. */
#include "model/t5.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T5 "text_encoder.encoder."

mg_code mg_t5_load(mg_t5 *t5, mg_loader *ld, const mg_config *c, mg_error *err)
{
    memset(t5, 0, sizeof *t5);
    t5->cfg = c;
    t5->be = ld->be;
    int64_t d = c->t5_d_model, inner = (int64_t)c->t5_heads * c->t5_d_kv, ff = c->t5_d_ff;
    mg_code rc = mg_loader_matrix(ld, "text_encoder.shared.weight|" T5 "embed_tokens.weight",
                                  MG_SHAPE(2, c->t5_vocab, d), &t5->embed, err);
    if (rc == MG_OK)
        rc = mg_loader_host(ld, T5 "block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                            MG_SHAPE(2, c->t5_num_buckets, c->t5_heads), &t5->rel_bias, err);
    if (rc == MG_OK)
        rc = mg_loader_tensor(ld, T5 "final_layer_norm.weight", MG_SHAPE(1, d), &t5->ln_final, err);
    if (rc == MG_OK && !(t5->layers = calloc((size_t)c->t5_layers, sizeof *t5->layers)))
        rc = mg_fail(err, MG_ERR_NOMEM, "t5: out of memory");
    char name[256];
#define LOAD_AS(load, field, suffix, ...)                                                  \
    if (rc == MG_OK) {                                                                     \
        snprintf(name, sizeof name, T5 "block.%d.layer.%s", i, suffix);                    \
        rc = load(ld, name, __VA_ARGS__, &L->field, err);                                  \
    }
#define LOAD(field, suffix, ...) LOAD_AS(mg_loader_tensor, field, suffix, __VA_ARGS__)
#define LOAD_MATRIX(field, suffix, ...) LOAD_AS(mg_loader_matrix, field, suffix, __VA_ARGS__)
    for (int i = 0; rc == MG_OK && i < c->t5_layers; i++) {
        mg_t5_layer *L = &t5->layers[i];
        LOAD(ln_attn, "0.layer_norm.weight", MG_SHAPE(1, d));
        LOAD_MATRIX(q, "0.SelfAttention.q.weight", MG_SHAPE(2, inner, d));
        LOAD_MATRIX(k, "0.SelfAttention.k.weight", MG_SHAPE(2, inner, d));
        LOAD_MATRIX(v, "0.SelfAttention.v.weight", MG_SHAPE(2, inner, d));
        LOAD_MATRIX(o, "0.SelfAttention.o.weight", MG_SHAPE(2, d, inner));
        LOAD(ln_ff, "1.layer_norm.weight", MG_SHAPE(1, d));
        LOAD_MATRIX(wi, "1.DenseReluDense.wi.weight", MG_SHAPE(2, ff, d));
        LOAD_MATRIX(wo, "1.DenseReluDense.wo.weight", MG_SHAPE(2, d, ff));
    }
#undef LOAD
#undef LOAD_MATRIX
#undef LOAD_AS
    if (rc != MG_OK)
        mg_t5_free(t5);
    return rc;
}

void mg_t5_free(mg_t5 *t5)
{
    if (t5->layers) {
        for (int i = 0; i < t5->cfg->t5_layers; i++) {
            mg_t5_layer *L = &t5->layers[i];
            mg_tensor *all[] = {L->ln_attn, L->q, L->k, L->v, L->o, L->ln_ff, L->wi, L->wo};
            for (size_t j = 0; j < sizeof all / sizeof all[0]; j++)
                mg_tensor_free(all[j]);
        }
    }
    free(t5->layers);
    mg_tensor_free(t5->embed);
    mg_tensor_free(t5->ln_final);
    free(t5->rel_bias);
    memset(t5, 0, sizeof *t5);
}

int mg_t5_bucket(int rel, int num_buckets, int max_distance)
{
    int nb = num_buckets / 2, bucket = rel > 0 ? nb : 0, n = abs(rel), exact = nb / 2;
    if (n < exact)
        return bucket + n;
    /* float32 log ratio, truncated toward zero, as the reference computes it */
    float f = logf((float)n / (float)exact) / (float)log((double)max_distance / exact) *
              (float)(nb - exact);
    int large = f >= 0 && f < (float)nb ? exact + (int)f : nb - 1;
    return bucket + (large < nb - 1 ? large : nb - 1);
}

mg_code mg_t5_encode(mg_t5 *t5, const int32_t *ids, const uint8_t *mask, int batch, int len,
                     mg_tensor *out, mg_trace_fn trace, void *ud, mg_error *err)
{
    const mg_config *c = t5->cfg;
    mg_backend *be = t5->be;
    const mg_backend_ops *op = be->ops;
    int64_t rows = (int64_t)batch * len, d = c->t5_d_model, inner = (int64_t)c->t5_heads * c->t5_d_kv;
    for (int64_t i = 0; i < rows; i++)
        if (ids[i] < 0 || ids[i] >= c->t5_vocab)
            return mg_fail(err, MG_ERR_INVALID, "t5: token id %d at %lld is outside the vocabulary of %d",
                           ids[i], (long long)i, c->t5_vocab);

    mg_tensor *h = NULL, *q = NULL, *k = NULL, *v = NULL, *a = NULL, *f = NULL, *bias = NULL;
    float *bias_host = NULL;
    mg_attn_seq *seqs = NULL;
    mg_code rc = mg_tensor_new2(&h, be, rows, d, err);
    if (rc == MG_OK) rc = mg_tensor_new2(&q, be, rows, inner, err);
    if (rc == MG_OK) rc = mg_tensor_new2(&k, be, rows, inner, err);
    if (rc == MG_OK) rc = mg_tensor_new2(&v, be, rows, inner, err);
    if (rc == MG_OK) rc = mg_tensor_new2(&a, be, rows, inner, err);
    if (rc == MG_OK) rc = mg_tensor_new2(&f, be, rows, c->t5_d_ff, err);
    if (rc == MG_OK) rc = mg_tensor_new(&bias, be, MG_DT_F32, 3,
                                        (const int64_t[]){c->t5_heads, len, len}, err);
    if (rc != MG_OK)
        goto done;
    bias_host = malloc((size_t)c->t5_heads * len * len * sizeof *bias_host);
    seqs = calloc((size_t)batch, sizeof *seqs);
    if (!bias_host || !seqs) {
        rc = mg_fail(err, MG_ERR_NOMEM, "t5: out of memory");
        goto done;
    }
    /* position_bias[h, i, j] = table[bucket(j - i), h] */
    for (int i = 0; i < len; i++)
        for (int j = 0; j < len; j++) {
            int b = mg_t5_bucket(j - i, c->t5_num_buckets, c->t5_max_distance);
            for (int hh = 0; hh < c->t5_heads; hh++)
                bias_host[((int64_t)hh * len + i) * len + j] = t5->rel_bias[b * c->t5_heads + hh];
        }
    if ((rc = mg_tensor_upload_f32(bias, bias_host, err)) != MG_OK)
        goto done;
    for (int s = 0; s < batch; s++)
        seqs[s] = (mg_attn_seq){.k = k, .v = v, .k_row0 = (int64_t)s * len, .n_keys = len,
                                .key_mask = mask + (int64_t)s * len};
    mg_attn_params ap = {.heads = c->t5_heads, .head_dim = c->t5_d_kv, .scale = 1.0f,
                         .pos_bias = bias};
    char name[64];

    op->embed(be, out, t5->embed, ids, rows, 0);
    if (trace) {
        trace(ud, "hidden_states.0", out);
        trace(ud, "position_bias", bias);
    }
    for (int l = 0; l < c->t5_layers; l++) {
        mg_t5_layer *L = &t5->layers[l];
        op->rms_norm(be, h, out, L->ln_attn, c->t5_eps);
        mg_tensor *qkv[3] = {q, k, v};
        const mg_tensor *wqkv[3] = {L->q, L->k, L->v};
        mg_linear_many(be, 3, qkv, h, wqkv);
        op->attention(be, a, q, batch, len, seqs, &ap);
        op->linear(be, h, a, L->o, NULL);
        op->add(be, out, h);
        op->rms_norm(be, h, out, L->ln_ff, c->t5_eps);
        op->linear(be, f, h, L->wi, NULL);
        op->relu(be, f);
        op->linear(be, h, f, L->wo, NULL);
        op->add(be, out, h);
        if (trace && l + 1 < c->t5_layers) {
            snprintf(name, sizeof name, "hidden_states.%d", l + 1);
            trace(ud, name, out);
        }
    }
    op->rms_norm(be, out, out, t5->ln_final, c->t5_eps);
    if (trace) {
        snprintf(name, sizeof name, "hidden_states.%d", c->t5_layers);
        trace(ud, name, out);
        trace(ud, "last_hidden_state", out);
    }
    rc = op->sync(be, err);
done:
    mg_tensor_free(h); mg_tensor_free(q); mg_tensor_free(k); mg_tensor_free(v);
    mg_tensor_free(a); mg_tensor_free(f); mg_tensor_free(bias);
    free(bias_host);
    free(seqs);
    return rc;
}
