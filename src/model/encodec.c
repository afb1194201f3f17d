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
#include "model/encodec.h"
#include "model/encodec_impl.h"
#include "backend/layout.h"
#include "io/safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The decode's scratch buffers (see plan_buffers) */
enum { EC_BUF_A, EC_BUF_B, EC_BUF_P, EC_BUF_H, EC_BUF_X, EC_N_BUFS };

struct mg_encodec {
    mg_backend *be;
    int         n_q, codebook_size, hidden, filters, c0, hop;
    int         n_ratios, ratios[MG_MAX_RATIOS], res_layers, n_lstm;
    mg_tensor **codebooks;   /* n_q x [codebook_size, hidden] */
    ec_lstm    *lstm;        /* n_lstm layers of width c0 */
    /* In layer order: input conv; per ratio the transposed conv and
     * res_layers x (block.1, block.3); output conv. */
    ec_conv    *convs;
    int         n_convs;
    int         chunk_frames; /* upsampling stack chunk (0: the whole signal) */
    /* Scratch kept from one decode to the next (decodes of one model never
     * overlap: the model's run lock): fresh buffers cost page faults and
     * zeroing on every decode. Sized by the largest decode so far, freed
     * after a decode that needed more than MG_ENCODEC_KEEP_BYTES. */
    mg_tensor  *ws[EC_N_BUFS];
    int64_t     ws_cap[EC_N_BUFS]; /* floats */
    mg_ec_encoder *enc;      /* the encoder (encodec_encode.c) */
};

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
    ec->n_q = cfg->num_codebooks;
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

/* ---------------------------------------------------------------- decode */

/* A [rows, cols] view at the start of a scratch buffer (rows*cols <= its size). */
static mg_tensor view(const mg_tensor *buf, int64_t rows, int64_t cols)
{
    mg_tensor v = mg_tensor_reshape2(buf, rows, cols);
    v.nbytes = (size_t)(rows * cols) * sizeof(float);
    return v;
}

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

static int conv_pad_total(const ec_conv *cv) { return (cv->k - 1) * cv->dil; }

/* Element counts of the four scratch roles for one decode:
 *   sig: the running signal x and conv outputs (ping-pong pair)
 *   pad: padded conv inputs, and every other LSTM layer's output
 *   hid: residual-block hidden activations, and the other LSTM outputs */
typedef struct {
    int64_t sig, pad, hid;
} ec_plan;

static ec_plan plan_buffers(const mg_encodec *ec, int64_t B, int64_t T)
{
    ec_plan p = {0};
    int64_t c = ec->c0;
    p.sig = B * T * max64(ec->hidden, c);
    p.pad = max64(B * ec->hidden * (T + conv_pad_total(&ec->convs[0])), B * T * c);
    p.hid = B * T * c;
    int ci = 1;
    for (int i = 0; i < ec->n_ratios; i++) {
        ci++; /* transposed conv: no padding */
        c /= 2;
        T *= ec->ratios[i];
        p.sig = max64(p.sig, B * c * T);
        for (int j = 0; j < ec->res_layers; j++, ci += 2) {
            p.pad = max64(p.pad, B * c * (T + conv_pad_total(&ec->convs[ci])));
            p.hid = max64(p.hid, B * ec->convs[ci].c_out * T);
        }
    }
    p.pad = max64(p.pad, B * c * (T + conv_pad_total(&ec->convs[ci])));
    return p;
}

/* y = conv(reflect_pad(x)) for a stride-1 conv, then y = residual + y
 * (residual not NULL; y itself only with conv1d_fused) and y = elu(y)
 * (elu_out). With elu_first
 * the ELU is applied to the padded copy, leaving x intact (ELU(0) = 0 and
 * reflection copies values, so padding and ELU commute exactly). Backends
 * with the fused ops do it in fewer passes over memory, bitwise the same. */
static void conv_fwd(mg_backend *be, const ec_conv *cv, mg_tensor *y, const mg_tensor *x,
                     const mg_tensor *pad_buf, int batch, int elu_first,
                     const mg_tensor *residual, int elu_out)
{
    int total = conv_pad_total(cv);
    int right = total / 2, left = total - right;
    const mg_tensor *in = x;
    mg_tensor p;
    if (total != 0 || elu_first) {
        p = view(pad_buf, mg_tensor_rows(x), mg_tensor_cols(x) + total);
        if (elu_first && be->ops->pad_reflect_elu) {
            be->ops->pad_reflect_elu(be, &p, x, left, right);
        } else {
            be->ops->pad_reflect(be, &p, x, left, right);
            if (elu_first)
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

void mg_ec_conv_same(mg_backend *be, const ec_conv *cv, mg_tensor *y, const mg_tensor *x,
                     const mg_tensor *pad_buf, int batch, int elu_in, const mg_tensor *residual,
                     int elu_out)
{
    conv_fwd(be, cv, y, x, pad_buf, batch, elu_in, residual, elu_out);
}

typedef struct {
    mg_encodec_trace_fn fn;
    void               *ud;
    float              *host;
} tracer;

static mg_code emit(tracer *tr, const char *name, const mg_tensor *t, mg_error *err)
{
    if (!tr->fn)
        return MG_OK;
    mg_code rc = mg_tensor_download_f32(t, tr->host, err);
    if (rc != MG_OK)
        return rc;
    tr->fn(tr->ud, name, tr->host, mg_tensor_numel(t));
    return MG_OK;
}

static mg_code emit_layer(tracer *tr, int layer, const mg_tensor *t, mg_error *err)
{
    char name[48];
    snprintf(name, sizeof name, "decoder_layer_out.%02d", layer);
    return emit(tr, name, t, err);
}

/* Frames of context each side that make every sample of a chunk exact: walks
 * the upsampling stack from the output back to the frame rate, growing the
 * reach by each conv's wider padding side and, at a transposed conv of
 * stride r and kernel k, to the input samples that touch the needed outputs
 * (ceil((reach + k) / r)). Samples whose receptive field lies inside the
 * chunk's real input never see the reflect padding at the chunk's edges. */
static int64_t ec_halo_frames(const mg_encodec *ec)
{
    int64_t h = (conv_pad_total(&ec->convs[ec->n_convs - 1]) + 1) / 2;
    int ci = ec->n_convs - 2; /* the last residual conv */
    for (int i = ec->n_ratios - 1; i >= 0; i--) {
        for (int j = 0; j < 2 * ec->res_layers; j++, ci--)
            h += (conv_pad_total(&ec->convs[ci]) + 1) / 2;
        const ec_conv *up = &ec->convs[ci--];
        h = (h + up->k + up->stride - 1) / up->stride;
    }
    return h;
}

void mg_encodec_set_chunk(mg_encodec *ec, int frames) { ec->chunk_frames = frames > 0 ? frames : 0; }

/* Scratch buffer i with room for n floats: the kept one, or a new one. */
static mg_code ws_get(mg_encodec *ec, int i, int64_t n, mg_error *err)
{
    if (ec->ws[i] && ec->ws_cap[i] >= n)
        return MG_OK;
    mg_tensor_free(ec->ws[i]);
    ec->ws[i] = NULL;
    ec->ws_cap[i] = 0;
    mg_code rc = mg_tensor_new2(&ec->ws[i], ec->be, 1, n, err);
    if (rc == MG_OK)
        ec->ws_cap[i] = n;
    return rc;
}

/* Keeps the scratch for the next decode unless it grew past the bound. */
static void ws_trim(mg_encodec *ec, int drop)
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

/* The upsampling stack (per ratio: ELU, transposed conv, residual blocks;
 * then ELU and the output conv) on x [B*c0, T] channel-first, in place of
 * the buffers; returns the view of the output [B, T*hop] (in a or o). */
static mg_code ec_upsample(const mg_encodec *ec, mg_tensor *bufA, mg_tensor *bufB,
                           mg_tensor *bufP, mg_tensor *bufH, int64_t B, int64_t T, int *layer,
                           tracer *tr, mg_tensor *out, mg_error *err)
{
    mg_backend *be = ec->be;
    mg_tensor *a = bufA, *o = bufB, *swap;
    const ec_conv *cv = ec->convs + 1;
    int64_t c = ec->c0;
    mg_tensor x = view(a, B * c, T), y;
    mg_code rc;
    /* With conv1d_fused the residual conv adds into x in place, and without a
     * trace (it records x before the ELU) the last residual block of a stage
     * applies the next ELU in its epilogue. */
    int fused = be->ops->conv1d_fused != NULL;
    int fuse_elu = fused && !tr->fn && ec->res_layers > 0;
    for (int i = 0; i < ec->n_ratios; i++) {
        if (i == 0 || !fuse_elu)
            be->ops->elu(be, &x);
        if ((rc = emit_layer(tr, (*layer)++, &x, err)))
            return rc;
        int r = ec->ratios[i];
        int trim = cv->k - r, trim_right = trim / 2;
        c /= 2;
        y = view(o, B * c, T * r);
        be->ops->conv_transpose1d(be, &y, &x, cv->w, cv->b, (int)B, r, trim - trim_right);
        cv++;
        T *= r;
        swap = a, a = o, o = swap;
        x = view(a, B * c, T);
        if ((rc = emit_layer(tr, (*layer)++, &x, err)))
            return rc;
        for (int j = 0; j < ec->res_layers; j++, cv += 2) {
            mg_tensor h = view(bufH, B * cv[0].c_out, T);
            conv_fwd(be, &cv[0], &h, &x, bufP, (int)B, 1, NULL, 1);
            if (fused) {
                /* x += conv(h), in place */
                conv_fwd(be, &cv[1], &x, &h, bufP, (int)B, 0, &x,
                         fuse_elu && j == ec->res_layers - 1);
            } else {
                y = view(o, B * c, T);
                conv_fwd(be, &cv[1], &y, &h, bufP, (int)B, 0, NULL, 0);
                be->ops->add(be, &x, &y);
            }
            if ((rc = emit_layer(tr, (*layer)++, &x, err)))
                return rc;
        }
    }
    if (!fuse_elu)
        be->ops->elu(be, &x);
    if ((rc = emit_layer(tr, (*layer)++, &x, err)))
        return rc;
    *out = view(o, B, T);
    conv_fwd(be, cv, out, &x, bufP, (int)B, 0, NULL, 0);
    return emit_layer(tr, *layer, out, err);
}

mg_code mg_encodec_decode(mg_encodec *ec, const int32_t *codes, int batch, int frames,
                          float *audio, mg_encodec_trace_fn trace, void *trace_ud,
                          mg_error *err)
{
    if (batch < 1 || frames < 1)
        return mg_fail(err, MG_ERR_INVALID, "encodec: batch %d x %d frames", batch, frames);
    const int64_t B = batch, T0 = frames, K = ec->n_q;
    for (int64_t b = 0; b < B; b++)
        for (int64_t q = 0; q < K; q++)
            for (int64_t t = 0; t < T0; t++) {
                int32_t v = codes[(b * K + q) * T0 + t];
                if (v < 0 || v >= ec->codebook_size)
                    return mg_fail(err, MG_ERR_INVALID,
                                   "encodec: audio code %d at batch %lld, codebook %lld, frame %lld "
                                   "is outside [0, %d)",
                                   (int)v, (long long)b, (long long)q, (long long)t,
                                   ec->codebook_size);
            }

    /* The frame-rate part (codebooks, first conv, LSTM) runs over the whole
     * sequence: the LSTM carries state across it. The upsampling stack, where
     * activations are hop times longer (10 s of 32 kHz audio: ~300 MB), runs
     * chunk by chunk with ec_halo_frames of real context on each side, so
     * memory stays bounded and every sample is exact (the same ops on the
     * same inputs; tests/test_encodec.c compares with one whole-signal pass).
     * A trace needs whole tensors: one chunk. */
    int64_t halo = ec_halo_frames(ec);
    int64_t F = trace || ec->chunk_frames == 0 || ec->chunk_frames >= T0 ? T0 : ec->chunk_frames;
    int64_t T_sub = F + 2 * halo < T0 ? F + 2 * halo : T0;
    /* The upsampling stack runs one batch item at a time, so its buffers do
     * not grow with the batch (its weights are small next to its signals);
     * a trace wants the whole batch in one tensor. */
    int64_t B_up = trace ? B : 1;
    mg_backend *be = ec->be;
    int64_t c = ec->c0, hid = ec->hidden;
    ec_plan fp = {
        .sig = B * T0 * max64(hid, c),
        .pad = max64(B * hid * (T0 + conv_pad_total(&ec->convs[0])), B * T0 * c),
        .hid = B * T0 * c,
    };
    ec_plan plan = plan_buffers(ec, B_up, T_sub);
    plan.sig = max64(plan.sig, fp.sig);
    plan.pad = max64(plan.pad, fp.pad);
    plan.hid = max64(plan.hid, fp.hid);
    int32_t *ids = malloc((size_t)(B * T0) * sizeof *ids);
    tracer tr = { trace, trace_ud, NULL };
    mg_code rc = MG_OK;
    if (!ids || (trace && !(tr.host = malloc((size_t)max64(plan.sig, plan.hid) * sizeof(float))))) {
        rc = mg_fail(err, MG_ERR_NOMEM, "encodec: out of memory");
        goto done;
    }
    if ((rc = ws_get(ec, EC_BUF_A, plan.sig, err)) || (rc = ws_get(ec, EC_BUF_B, plan.sig, err)) ||
        (rc = ws_get(ec, EC_BUF_P, plan.pad, err)) || (rc = ws_get(ec, EC_BUF_H, plan.hid, err)) ||
        (rc = ws_get(ec, EC_BUF_X, B * T0 * c, err)))
        goto done;
    mg_tensor *bufA = ec->ws[EC_BUF_A], *bufB = ec->ws[EC_BUF_B], *bufP = ec->ws[EC_BUF_P];
    mg_tensor *bufH = ec->ws[EC_BUF_H], *bufX = ec->ws[EC_BUF_X];

    /* quantizer: emb[b*T + t, :] = Σ_q codebook_q[codes[b, q, t]], then channel-first */
    mg_tensor e = view(bufB, B * T0, hid);
    for (int64_t q = 0; q < K; q++) {
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = 0; t < T0; t++)
                ids[b * T0 + t] = codes[(b * K + q) * T0 + t];
        be->ops->embed(be, &e, ec->codebooks[q], ids, B * T0, q > 0);
    }
    mg_tensor x = view(bufA, B * hid, T0);
    be->ops->transpose(be, &x, &e, batch);
    if ((rc = emit(&tr, "quantizer_embeddings", &x, err)))
        goto done;

    int layer = 0;
    mg_tensor y = view(bufB, B * c, T0);
    conv_fwd(be, &ec->convs[0], &y, &x, bufP, batch, 0, NULL, 0);
    if ((rc = emit_layer(&tr, layer++, &y, err)))
        goto done;

    /* LSTM over time (rows = frames), residual: x + lstm(x); the result
     * stays time-major in bufX, where a chunk's frames are whole rows */
    mg_tensor xt = view(bufX, B * T0, c), hin = xt;
    be->ops->transpose(be, &xt, &y, batch);
    for (int l = 0; l < ec->n_lstm; l++) {
        mg_tensor hout = view(l % 2 ? bufP : bufH, B * T0, c);
        const ec_lstm *ls = &ec->lstm[l];
        be->ops->lstm(be, &hout, &hin, ls->w_ih, ls->w_hh, ls->b_ih, ls->b_hh, batch);
        hin = hout;
    }
    be->ops->add(be, &xt, &hin);
    if (tr.fn) {
        x = view(bufA, B * c, T0);
        be->ops->transpose(be, &x, &xt, batch);
        if ((rc = emit_layer(&tr, layer, &x, err)))
            goto done;
    }
    layer++;

    for (int64_t f0 = 0; f0 < T0; f0 += F) {
        int64_t f1 = T0 - f0 < F ? T0 : f0 + F;
        int64_t s0 = f0 - halo > 0 ? f0 - halo : 0, s1 = f1 + halo < T0 ? f1 + halo : T0, n = s1 - s0;
        for (int64_t b0 = 0; b0 < B; b0 += B_up) {
            /* the chunk's frames [s0, s1) of items [b0, b0 + B_up), channel-first */
            mg_tensor sub = view(bufB, B_up * n, c);
            mg_copy_row_blocks(be, &sub, 0, n, &xt, b0 * T0 + s0, T0, n, B_up);
            x = view(bufA, B_up * c, n);
            be->ops->transpose(be, &x, &sub, (int)B_up);
            int chunk_layer = layer;
            mg_tensor out;
            if ((rc = ec_upsample(ec, bufA, bufB, bufP, bufH, B_up, n, &chunk_layer, &tr, &out,
                                  err)) ||
                (rc = be->ops->sync(be, err)))
                goto done;
            for (int64_t b = 0; b < B_up && rc == MG_OK; b++)
                rc = be->ops->download(be, &out,
                                       (size_t)((b * n + (f0 - s0)) * ec->hop) * sizeof(float),
                                       audio + ((b0 + b) * T0 + f0) * ec->hop,
                                       (size_t)((f1 - f0) * ec->hop) * sizeof(float), err);
            if (rc != MG_OK)
                goto done;
        }
    }
done:
    ws_trim(ec, rc != MG_OK);
    free(ids);
    free(tr.host);
    if (rc != MG_OK) {
        /* an early exit leaves no op failure pending for the next job's sync */
        mg_error drained;
        be->ops->sync(be, &drained);
    }
    return rc;
}
