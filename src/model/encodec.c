/* EnCodec 32 kHz decoder: codes -> waveform.
 *
 *   x = Σ_q codebook_q[codes[q]]                        [B, hidden, T]
 *   layers.0   conv  hidden -> C0 = filters·2^n, kernel_size
 *   layers.1   LSTM  (num_lstm_layers, residual: lstm(x) + x)
 *   per upsampling ratio r (channels C -> C/2, time T -> T·r):
 *              ELU; ConvTranspose1d(k = 2r, stride r);
 *              num_residual_layers × ResnetBlock(x + conv1x1(elu(conv_k(elu(x)))))
 *   ELU; conv filters -> 1, last_kernel_size
 *
 * Convs are non-causal with reflect padding: k_eff = (k-1)·dil + 1, total =
 * k_eff - 1 (stride 1), right = total/2, left = total - right. Transposed
 * convs trim k - stride samples, right = trim/2, left = the rest. All
 * arithmetic runs in backend ops; this file only plans shapes and buffers. */
#include "model/encodec_impl.h"
#include "backend/layout.h"
#include "io/safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ load */

/* Weight norm: w[i] = g[i] · v[i] / ||v[i]||, the norm over all dims but 0
 * (for ConvTranspose1d dim 0 is the input channel). torch computes it as
 * v * (g / norm); g may be negative. */
static void fold_weight_norm(float *w, const float *g, const float *v, int64_t d0, int64_t per)
{
    for (int64_t i = 0; i < d0; i++) {
        const float *vi = v + i * per;
        double ss = 0;
        for (int64_t j = 0; j < per; j++)
            ss += (double)vi[j] * vi[j];
        float s = g[i] / (float)sqrt(ss);
        for (int64_t j = 0; j < per; j++)
            w[i * per + j] = vi[j] * s;
    }
}

/* With compressed weights (bf16, q8) and a backend with BF16 convolution
 * kernels, the folded weight goes up as BF16 pairs: EnCodec's convolutions
 * are bound by multiply-adds, and BF16 dot products do twice as many per
 * instruction. Inputs round to BF16 as well, the sums stay F32. Audio
 * against the F32 model (tests/test_encodec.c prints the SNR): ~44 dB on the
 * musicgen-small-shaped bench model, far below what EnCodec's own 4-codebook
 * reconstruction changes. The F32 model keeps F32 (exact) weights. */
static int conv_wants_bf16(const mg_loader *ld, int c_in)
{
    mg_backend_caps caps;
    mg_backend_get_caps(ld->be, &caps);
    return caps.weight_dtype != MG_DT_F32 && c_in % 2 == 0 && caps.conv_bf16;
}

static mg_code upload_bf16_pairs(mg_backend *be, const float *w, int64_t d0, int64_t d1,
                                 int64_t k, int transposed, mg_tensor **out, mg_error *err)
{
    uint32_t *p = calloc((size_t)(d0 * d1 * k / 2), sizeof *p);
    if (!p)
        return mg_fail(err, MG_ERR_NOMEM, "encodec: out of memory converting a conv weight");
    for (int64_t a = 0; a < d0; a++)
        for (int64_t b = 0; b < d1; b++)
            for (int64_t j = 0; j < k; j++) {
                int half;
                int64_t wd = mg_conv_bf16_pair_word(a, b, j, d1, k, transposed, &half);
                p[wd] |= (uint32_t)mg_f32_to_bf16(w[(a * d1 + b) * k + j]) << (16 * half);
            }
    mg_code rc = mg_tensor_new(out, be, MG_DT_BF16, 3, (int64_t[]){d0, d1, k}, err);
    if (rc == MG_OK)
        rc = be->ops->upload(be, *out, 0, p, (size_t)(d0 * d1 * k / 2) * sizeof *p, err);
    free(p);
    return rc;
}

mg_code mg_ec_fold_conv(mg_loader *ld, const char *path, int64_t d0, int64_t d1, int64_t k,
                        float **out, mg_error *err)
{
    char names[512];
    float *g = NULL, *v = NULL, *w = NULL;
    *out = NULL;
    snprintf(names, sizeof names,
             "audio_encoder.%s.weight_g|audio_encoder.%s.parametrizations.weight.original0",
             path, path);
    mg_code rc = mg_loader_host(ld, names, MG_SHAPE(3, d0, 1, 1), &g, err);
    if (rc != MG_OK)
        goto done;
    snprintf(names, sizeof names,
             "audio_encoder.%s.weight_v|audio_encoder.%s.parametrizations.weight.original1",
             path, path);
    rc = mg_loader_host(ld, names, MG_SHAPE(3, d0, d1, k), &v, err);
    if (rc != MG_OK)
        goto done;
    w = malloc((size_t)(d0 * d1 * k) * sizeof *w);
    if (!w) {
        rc = mg_fail(err, MG_ERR_NOMEM, "encodec: out of memory folding %s", path);
        goto done;
    }
    fold_weight_norm(w, g, v, d0, d1 * k);
    *out = w;
    w = NULL;
done:
    free(g);
    free(v);
    free(w);
    return rc;
}

mg_code mg_ec_upload_conv(mg_loader *ld, ec_conv *cv, const float *w, int64_t d0, int64_t d1,
                          int64_t k, mg_error *err)
{
    char name[256];
    mg_code rc;
    if (conv_wants_bf16(ld, (int)(cv->transposed ? d0 : d1)))
        rc = upload_bf16_pairs(ld->be, w, d0, d1, k, cv->transposed, &cv->w, err);
    else
        rc = mg_loader_from_host(ld->be, w, MG_SHAPE(3, d0, d1, k), &cv->w, err);
    if (rc != MG_OK)
        return rc;
    snprintf(name, sizeof name, "audio_encoder.%s.bias", cv->path);
    return mg_loader_tensor(ld, name, MG_SHAPE(1, cv->c_out), &cv->b, err);
}

static mg_code load_conv(mg_loader *ld, ec_conv *cv, const char *path, int c_in, int c_out,
                         int k, int dil, int stride, int transposed, mg_error *err)
{
    snprintf(cv->path, sizeof cv->path, "%s", path);
    cv->c_in = c_in;
    cv->c_out = c_out;
    cv->k = k;
    cv->dil = dil;
    cv->stride = stride;
    cv->transposed = transposed;
    int64_t d0 = transposed ? c_in : c_out, d1 = transposed ? c_out : c_in;
    float *w = NULL;
    mg_code rc = mg_ec_fold_conv(ld, path, d0, d1, k, &w, err);
    if (rc == MG_OK)
        rc = mg_ec_upload_conv(ld, cv, w, d0, d1, k, err);
    free(w);
    return rc;
}

/* With compressed weights the recurrent weight W_hh is kept compressed: one
 * LSTM step streams all of it (16 MB in F32 for musicgen-small) from L3 and
 * a single request's decode waits on that, frame after frame. bf16 models
 * keep it in BF16 (only the weights round, relative 2^-9; products and sums
 * F32; audio SNR against the F32 model 86 dB on the golden models, 87 dB on
 * the bench model, this alone). q8 models load it as a Q8 matrix
 * whose products are linear()'s, h rounded to 8 bits per 32 values too: a
 * quarter of the F32 bytes, 10 s of EnCodec on the bench model ~17 % faster
 * than with BF16, the audio's SNR unchanged at 44.4 dB (the BF16 convs'
 * rounding dominates). The F32 model keeps F32 (exact) weights. */
static mg_code load_lstm(mg_loader *ld, ec_lstm *l, const char *stack, int layer_index, int n,
                         int width, mg_error *err)
{
    char name[256], pre[64];
    snprintf(pre, sizeof pre, "audio_encoder.%s.layers", stack);
    mg_code rc;
    snprintf(name, sizeof name, "%s.%d.lstm.weight_ih_l%d", pre, layer_index, n);
    if ((rc = mg_loader_tensor(ld, name, MG_SHAPE(2, 4 * width, width), &l->w_ih, err)))
        return rc;
    snprintf(name, sizeof name, "%s.%d.lstm.weight_hh_l%d", pre, layer_index, n);
    /* q8 models: a Q8 matrix (caps.lstm_q8 in backend.h); bf16: lstm_weight_bf16 */
    mg_backend_caps caps;
    mg_backend_get_caps(ld->be, &caps);
    if (caps.weight_dtype == MG_DT_Q8 && caps.lstm_q8)
        rc = mg_loader_matrix(ld, name, MG_SHAPE(2, 4 * width, width), &l->w_hh, err);
    else
        rc = mg_loader_tensor(ld, name, MG_SHAPE(2, 4 * width, width), &l->w_hh, err);
    if (rc)
        return rc;
    snprintf(name, sizeof name, "%s.%d.lstm.bias_ih_l%d", pre, layer_index, n);
    if ((rc = mg_loader_tensor(ld, name, MG_SHAPE(1, 4 * width), &l->b_ih, err)))
        return rc;
    snprintf(name, sizeof name, "%s.%d.lstm.bias_hh_l%d", pre, layer_index, n);
    return mg_loader_tensor(ld, name, MG_SHAPE(1, 4 * width), &l->b_hh, err);
}

/* An LSTM weight [rows][cols] in BF16 in place of its F32 tensor: rows in
 * the interleaved layout of caps.lstm_bf16 (W_hh), or in order (W_ih: with BF16
 * convolutions (conv_wants_bf16) the backend's LSTM runs the input
 * projections of all steps as one 1x1 convolution, bound by multiply-adds
 * like the other convs, and a 1x1 conv's pair layout is row-major). */
static mg_code lstm_weight_bf16(mg_backend *be, mg_tensor **w, int interleaved, mg_error *err)
{
    int64_t n = mg_tensor_numel(*w), cols = mg_tensor_cols(*w);
    float *f = malloc((size_t)n * sizeof *f);
    uint16_t *h = malloc((size_t)n * sizeof *h);
    mg_tensor *t = NULL;
    mg_code rc = f && h ? mg_tensor_download_f32(*w, f, err)
                        : mg_fail(err, MG_ERR_NOMEM, "encodec: out of memory converting an LSTM weight");
    for (int64_t i = 0; rc == MG_OK && i < n; i++)
        h[interleaved ? i - i % cols + mg_bf16_pair_index(i % cols, cols) : i] = mg_f32_to_bf16(f[i]);
    if (rc == MG_OK && (rc = mg_tensor_new(&t, be, MG_DT_BF16, (*w)->ndim, (*w)->ne, err)) == MG_OK &&
        (rc = be->ops->upload(be, t, 0, h, (size_t)n * sizeof *h, err)) == MG_OK) {
        mg_tensor_free(*w);
        *w = t;
        t = NULL;
    }
    mg_tensor_free(t);
    free(f);
    free(h);
    return rc;
}

mg_code mg_ec_load_lstms(mg_loader *ld, ec_lstm *l, const char *stack, int layer_index,
                         int n_layers, int width, mg_error *err)
{
    mg_backend_caps caps;
    mg_backend_get_caps(ld->be, &caps);
    mg_code rc = MG_OK;
    for (int i = 0; i < n_layers && rc == MG_OK; i++) {
        rc = load_lstm(ld, &l[i], stack, layer_index, i, width, err);
        if (rc == MG_OK && l[i].w_hh->dtype == MG_DT_F32 && caps.weight_dtype != MG_DT_F32 &&
            caps.lstm_bf16)
            rc = lstm_weight_bf16(ld->be, &l[i].w_hh, 1, err);
        if (rc == MG_OK && caps.lstm_bf16 && conv_wants_bf16(ld, width))
            rc = lstm_weight_bf16(ld->be, &l[i].w_ih, 0, err);
    }
    return rc;
}

void mg_ec_lstms_free(ec_lstm *l, int n_layers)
{
    for (int i = 0; l && i < n_layers; i++) {
        mg_tensor_free(l[i].w_ih);
        mg_tensor_free(l[i].w_hh);
        mg_tensor_free(l[i].b_ih);
        mg_tensor_free(l[i].b_hh);
    }
}

mg_ec_encoder *mg_ec_encoder_of(const mg_encodec *ec) { return ec->enc; }

void mg_encodec_free(mg_encodec *ec)
{
    if (!ec)
        return;
    if (ec->codebooks)
        for (int q = 0; q < ec->n_q; q++)
            mg_tensor_free(ec->codebooks[q]);
    mg_ec_lstms_free(ec->lstm, ec->n_lstm);
    if (ec->convs)
        for (int i = 0; i < ec->n_convs; i++) {
            mg_tensor_free(ec->convs[i].w);
            mg_tensor_free(ec->convs[i].b);
        }
    for (int i = 0; i < EC_N_BUFS; i++)
        mg_tensor_free(ec->ws[i]);
    mg_ec_encoder_free(ec->enc);
    free(ec->codebooks);
    free(ec->lstm);
    free(ec->convs);
    free(ec);
}

mg_code mg_encodec_load(mg_encodec **out, mg_loader *ld, const mg_config *cfg, mg_error *err)
{
    *out = NULL;
    if (cfg->ec_lstm_layers < 1)
        return mg_fail(err, MG_ERR_UNSUPPORTED, "encodec: num_lstm_layers must be at least 1");
    if (cfg->ec_n_ratios < 1 || cfg->ec_n_ratios > MG_MAX_RATIOS)
        return mg_fail(err, MG_ERR_CORRUPT, "encodec: %d upsampling ratios", cfg->ec_n_ratios);
    if (cfg->ec_filters / cfg->ec_compress < 1)
        return mg_fail(err, MG_ERR_UNSUPPORTED,
                       "encodec: num_filters %d / compress %d leaves no residual channels",
                       cfg->ec_filters, cfg->ec_compress);
    /* the largest residual dilation must stay a sane int */
    int64_t max_dil = 1;
    for (int j = 1; j < cfg->ec_res_layers; j++)
        if ((max_dil *= cfg->ec_dilation_growth) > (1 << 20))
            return mg_fail(err, MG_ERR_UNSUPPORTED,
                           "encodec: dilation growth %d ^ %d is too large",
                           cfg->ec_dilation_growth, cfg->ec_res_layers - 1);

    mg_encodec *ec = calloc(1, sizeof *ec);
    if (!ec)
        return mg_fail(err, MG_ERR_NOMEM, "encodec: out of memory");
    ec->be = ld->be;
    ec->n_q = cfg->ec_codebooks;
    ec->channels = cfg->audio_channels;
    ec->codebook_size = cfg->ec_codebook_size;
    ec->hidden = cfg->ec_hidden;
    ec->filters = cfg->ec_filters;
    ec->n_ratios = cfg->ec_n_ratios;
    memcpy(ec->ratios, cfg->ec_ratios, sizeof ec->ratios);
    ec->res_layers = cfg->ec_res_layers;
    ec->n_lstm = cfg->ec_lstm_layers;
    ec->c0 = cfg->ec_filters << cfg->ec_n_ratios;
    ec->hop = 1;
    for (int i = 0; i < ec->n_ratios; i++)
        ec->hop *= ec->ratios[i];
    ec->n_convs = 2 + ec->n_ratios * (1 + 2 * ec->res_layers);
    ec->chunk_frames = MG_ENCODEC_CHUNK_FRAMES;
    ec->codebooks = calloc((size_t)ec->n_q, sizeof *ec->codebooks);
    ec->lstm = calloc((size_t)ec->n_lstm, sizeof *ec->lstm);
    ec->convs = calloc((size_t)ec->n_convs, sizeof *ec->convs);
    if (!ec->codebooks || !ec->lstm || !ec->convs) {
        mg_encodec_free(ec);
        return mg_fail(err, MG_ERR_NOMEM, "encodec: out of memory");
    }

    mg_code rc = MG_OK;
    char name[256];
    for (int q = 0; q < ec->n_q && rc == MG_OK; q++) {
        snprintf(name, sizeof name, "audio_encoder.quantizer.layers.%d.codebook.embed", q);
        rc = mg_loader_tensor(ld, name, MG_SHAPE(2, ec->codebook_size, ec->hidden),
                              &ec->codebooks[q], err);
    }

    /* Walk the module list the way EncodecDecoder builds it, counting layer
     * indices (ELUs are layers too, with no weights). */
    int layer = 0, ci = 0, c = ec->c0;
    if (rc == MG_OK) {
        snprintf(name, sizeof name, "decoder.layers.%d.conv", layer++);
        rc = load_conv(ld, &ec->convs[ci++], name, ec->hidden, c, cfg->ec_kernel, 1, 1, 0, err);
    }
    if (rc == MG_OK)
        rc = mg_ec_load_lstms(ld, ec->lstm, "decoder", layer, ec->n_lstm, c, err);
    layer++;
    for (int i = 0; i < ec->n_ratios && rc == MG_OK; i++) {
        int r = ec->ratios[i];
        layer++; /* ELU */
        snprintf(name, sizeof name, "decoder.layers.%d.conv", layer++);
        rc = load_conv(ld, &ec->convs[ci++], name, c, c / 2, 2 * r, 1, r, 1, err);
        c /= 2;
        int dil = 1;
        for (int j = 0; j < ec->res_layers && rc == MG_OK; j++, dil *= cfg->ec_dilation_growth) {
            int hid = c / cfg->ec_compress;
            snprintf(name, sizeof name, "decoder.layers.%d.block.1.conv", layer);
            rc = load_conv(ld, &ec->convs[ci++], name, c, hid, cfg->ec_res_kernel, dil, 1, 0, err);
            if (rc != MG_OK)
                break;
            snprintf(name, sizeof name, "decoder.layers.%d.block.3.conv", layer++);
            rc = load_conv(ld, &ec->convs[ci++], name, hid, c, 1, 1, 1, 0, err);
        }
    }
    if (rc == MG_OK) {
        layer++; /* ELU */
        snprintf(name, sizeof name, "decoder.layers.%d.conv", layer);
        rc = load_conv(ld, &ec->convs[ci++], name, ec->filters, 1, cfg->ec_last_kernel, 1, 1, 0,
                       err);
    }
    if (rc == MG_OK)
        rc = mg_ec_encoder_load(&ec->enc, ld, cfg, err);
    if (rc != MG_OK) {
        mg_encodec_free(ec);
        return mg_fail_context(err, "encodec");
    }
    *out = ec;
    return MG_OK;
}

/* A BF16-pair conv weight back in the F32 layout (the values the model uses). */
static mg_code bf16_pairs_to_f32(const ec_conv *cv, float *out, mg_error *err)
{
    const mg_tensor *t = cv->w;
    int64_t d0 = t->ne[0], d1 = t->ne[1], k = t->ne[2];
    uint32_t *p = malloc(t->nbytes + 1);
    if (!p)
        return mg_fail(err, MG_ERR_NOMEM, "encodec: out of memory copying %s", cv->path);
    mg_code rc = t->be->ops->download(t->be, t, 0, p, t->nbytes, err);
    if (rc == MG_OK)
        mg_conv_bf16_pairs_to_f32(p, d0, d1, k, cv->transposed, out);
    free(p);
    return rc;
}

mg_code mg_encodec_folded_weight(const mg_encodec *ec, const char *path, float **out,
                                 int64_t *n, mg_error *err)
{
    *out = NULL;
    *n = 0;
    for (int i = 0; i < ec->n_convs; i++) {
        const ec_conv *cv = &ec->convs[i];
        if (strcmp(cv->path, path) != 0)
            continue;
        int64_t cnt = mg_tensor_numel(cv->w);
        float *h = malloc((size_t)cnt * sizeof *h);
        if (!h)
            return mg_fail(err, MG_ERR_NOMEM, "encodec: out of memory copying %s", path);
        mg_code rc = cv->w->dtype == MG_DT_BF16 ? bf16_pairs_to_f32(cv, h, err)
                                                : mg_tensor_download_f32(cv->w, h, err);
        if (rc != MG_OK) {
            free(h);
            return rc;
        }
        *out = h;
        *n = cnt;
        return MG_OK;
    }
    return mg_fail(err, MG_ERR_NOT_FOUND, "encodec: no conv module '%s'", path);
}

/* ---------------------------------------------------------------- scratch */

void mg_encodec_set_chunk(mg_encodec *ec, int frames) { ec->chunk_frames = frames > 0 ? frames : 0; }

mg_code mg_ec_ws_get(mg_encodec *ec, int i, int64_t n, mg_error *err)
{
    if (ec->ws[i] && ec->ws_cap[i] >= n)
        return MG_OK;
    mg_tensor_free(ec->ws[i]);
    ec->ws[i] = NULL;
    ec->ws_cap[i] = 0;
    mg_code rc = mg_tensor_new2(&ec->ws[i], ec->be, 1, n > 0 ? n : 1, err);
    if (rc == MG_OK)
        ec->ws_cap[i] = n > 0 ? n : 1;
    return rc;
}

void mg_ec_ws_trim(mg_encodec *ec, int drop)
{
    int64_t bytes = 0;
    for (int i = 0; i < EC_N_BUFS; i++)
        bytes += ec->ws_cap[i] * (int64_t)sizeof(float);
    if (!drop && bytes <= MG_ENCODEC_KEEP_BYTES)
        return;
    for (int i = 0; i < EC_N_BUFS; i++) {
        mg_tensor_free(ec->ws[i]);
        ec->ws[i] = NULL;
        ec->ws_cap[i] = 0;
    }
}

/* ------------------------------------------------- shared with the encoder */

/* y = conv(reflect_pad(x)) for a stride-1 conv over whole signals (the
 * encoder's layers; the decoder's stream keeps its own halos), with the ELU
 * on the padded copy (elu_in: padding and ELU commute exactly, ELU(0) = 0),
 * then residual and ELU, fused where the backend can, bitwise the same. */
void mg_ec_conv_same(mg_backend *be, const ec_conv *cv, mg_tensor *y, const mg_tensor *x,
                     const mg_tensor *pad_buf, int batch, int elu_in, const mg_tensor *residual,
                     int elu_out)
{
    int total = (cv->k - 1) * cv->dil;
    int right = total / 2, left = total - right;
    const mg_tensor *in = x;
    mg_tensor p;
    if (total != 0 || elu_in) {
        p = mg_tensor_reshape2(pad_buf, mg_tensor_rows(x), mg_tensor_cols(x) + total);
        p.nbytes = (size_t)(mg_tensor_rows(x) * (mg_tensor_cols(x) + total)) * sizeof(float);
        if (elu_in && be->ops->pad_reflect_elu) {
            be->ops->pad_reflect_elu(be, &p, x, left, right);
        } else {
            be->ops->pad_reflect(be, &p, x, left, right);
            if (elu_in)
                be->ops->elu(be, &p);
        }
        in = &p;
    }
    if (be->ops->conv1d_fused && (residual || elu_out)) {
        be->ops->conv1d_fused(be, y, in, cv->w, cv->b, batch, cv->dil, residual, elu_out);
        return;
    }
    be->ops->conv1d(be, y, in, cv->w, cv->b, batch, 1, cv->dil);
    if (residual)
        be->ops->add(be, y, residual);
    if (elu_out)
        be->ops->elu(be, y);
}
