/* EnCodec 32 kHz encoder: waveform -> codes.
 *
 *   layers.0   conv  1 -> filters, kernel_size
 *   per ratio, in reverse order (channels C -> 2C, time T -> ceil(T / r)):
 *              num_residual_layers x ResnetBlock(x + conv1x1(elu(conv_k(elu(x)))));
 *              ELU; conv C -> 2C, kernel 2r, stride r
 *   LSTM (num_lstm_layers, skip: lstm(x) + x); ELU; conv -> hidden, last_kernel_size
 *   residual VQ: per quantizer the nearest codeword to the residual, residual -= it
 *
 * Convs are non-causal with reflect padding: total = k_eff - stride, right =
 * total/2, left = the rest, plus extra right padding up to a whole number of
 * strides (HF's _get_extra_padding_for_conv1d).
 *
 * A strided conv runs as a stride-1 conv over its input's phases: with
 * x_p[c, q] = x[c, q·s + p], y[t] = Σ_c Σ_k w[c, k]·x[c, t·s + k] is, for
 * k = j·s + p, Σ_(c,p) Σ_j w[c, j·s + p]·x_p[c, t + j]: a conv of c·s input
 * channels and k/s taps, whose input is one transpose of the padded signal
 * (the backends' stride-1 convs are the fast ones). */
#include "model/encodec_encode.h"
#include "model/encodec_impl.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mg_ec_encoder {
    mg_backend *be;
    mg_config   cfg;          /* the model's shapes (a copy) */
    int         has_weights;
    int         c_last;       /* the LSTM's width */
    /* conv0; per level res_layers x (block.1, block.3), then the strided
     * conv (weight in the phase layout [c_out, c_in·s, k/s]); the last conv */
    ec_conv    *convs;
    int         n_convs;
    ec_lstm    *lstm;
    float      *codebooks;    /* host [n_q][codebook_size][hidden] */
    int64_t     halo_frames;  /* context each side of a chunk (stack_halo_frames) */
    int         chunk_frames;
};

/* ------------------------------------------------------------------ load */

void mg_ec_encoder_free(mg_ec_encoder *enc)
{
    if (!enc)
        return;
    for (int i = 0; enc->convs && i < enc->n_convs; i++) {
        mg_tensor_free(enc->convs[i].w);
        mg_tensor_free(enc->convs[i].b);
    }
    mg_ec_lstms_free(enc->lstm, enc->cfg.ec_lstm_layers);
    free(enc->convs);
    free(enc->lstm);
    free(enc->codebooks);
    free(enc);
}

static mg_code load_conv(mg_loader *ld, ec_conv *cv, const char *path, int c_in, int c_out,
                         int k, int dil, int stride, mg_error *err)
{
    *cv = (ec_conv){.c_in = c_in, .c_out = c_out, .k = k, .dil = dil, .stride = stride};
    snprintf(cv->path, sizeof cv->path, "%s", path);
    float *w = NULL, *ph = NULL;
    mg_code rc = mg_ec_fold_conv(ld, path, c_out, c_in, k, &w, err);
    if (rc != MG_OK || stride == 1) {
        if (rc == MG_OK)
            rc = mg_ec_upload_conv(ld, cv, w, c_out, c_in, k, err);
        free(w);
        return rc;
    }
    /* the phase layout: ph[co, ci·s + p, j] = w[co, ci, j·s + p] */
    int taps = k / stride;
    ph = malloc((size_t)c_out * c_in * k * sizeof *ph);
    if (!ph) {
        free(w);
        return mg_fail(err, MG_ERR_NOMEM, "encodec: out of memory rearranging %s", path);
    }
    for (int64_t co = 0; co < c_out; co++)
        for (int64_t ci = 0; ci < c_in; ci++)
            for (int64_t j = 0; j < taps; j++)
                for (int64_t p = 0; p < stride; p++)
                    ph[(co * c_in * stride + ci * stride + p) * taps + j] =
                        w[(co * c_in + ci) * k + j * stride + p];
    rc = mg_ec_upload_conv(ld, cv, ph, c_out, (int64_t)c_in * stride, taps, err);
    free(w);
    free(ph);
    return rc;
}

static int pad_total(const ec_conv *cv) { return (cv->k - 1) * cv->dil + 1 - cv->stride; }

/* Samples of context each side that make every frame of a chunk exact,
 * walked from the stack's output back to the waveform: output t of a conv
 * of stride s reads inputs t·s - left .. t·s - left + k_eff - 1, so r outputs
 * of context need r·s plus the wider padding side (left = ceil((k_eff - s) /
 * 2)) of inputs. Chunks start at whole frames, so every level's stride grid
 * is the whole signal's; outputs whose receptive field lies inside the
 * chunk's real input never see the reflect padding at the chunk's edges. */
static int64_t stack_halo_frames(const mg_ec_encoder *enc)
{
    int64_t r = 0;
    for (int i = enc->n_convs - 2; i >= 0; i--) {
        const ec_conv *cv = &enc->convs[i];
        r = r * cv->stride + (pad_total(cv) + 1) / 2;
    }
    return (r + enc->cfg.hop - 1) / enc->cfg.hop;
}

/* Whether the checkpoint has an encoder (HF's two weight-norm spellings). */
static int has_encoder(mg_loader *ld)
{
    return mg_st_find(&ld->st, "audio_encoder.encoder.layers.0.conv.weight_g") ||
           mg_st_find(&ld->st, "audio_encoder.encoder.layers.0.conv.parametrizations.weight.original0");
}

static mg_code load_weights(mg_ec_encoder *enc, mg_loader *ld, const mg_config *cfg,
                            mg_error *err)
{
    char name[256];
    mg_code rc = MG_OK;
    int64_t cb = (int64_t)enc->cfg.ec_codebook_size * enc->cfg.ec_hidden;
    for (int q = 0; q < enc->cfg.ec_codebooks && rc == MG_OK; q++) {
        float *h = NULL;
        snprintf(name, sizeof name, "audio_encoder.quantizer.layers.%d.codebook.embed", q);
        rc = mg_loader_host(ld, name, MG_SHAPE(2, enc->cfg.ec_codebook_size, enc->cfg.ec_hidden), &h, err);
        if (rc == MG_OK)
            memcpy(enc->codebooks + q * cb, h, (size_t)cb * sizeof *h);
        free(h);
    }
    /* the module list as EncodecEncoder builds it (ELUs are layers too) */
    int layer = 0, ci = 0, c = cfg->ec_filters;
    if (rc == MG_OK) {
        snprintf(name, sizeof name, "encoder.layers.%d.conv", layer++);
        rc = load_conv(ld, &enc->convs[ci++], name, 1, c, cfg->ec_kernel, 1, 1, err);
    }
    for (int i = enc->cfg.ec_n_ratios - 1; i >= 0 && rc == MG_OK; i--) {
        int dil = 1;
        for (int j = 0; j < enc->cfg.ec_res_layers && rc == MG_OK; j++, dil *= cfg->ec_dilation_growth) {
            int hid = c / cfg->ec_compress;
            snprintf(name, sizeof name, "encoder.layers.%d.block.1.conv", layer);
            rc = load_conv(ld, &enc->convs[ci++], name, c, hid, cfg->ec_res_kernel, dil, 1, err);
            if (rc != MG_OK)
                break;
            snprintf(name, sizeof name, "encoder.layers.%d.block.3.conv", layer++);
            rc = load_conv(ld, &enc->convs[ci++], name, hid, c, 1, 1, 1, err);
        }
        layer++; /* ELU */
        snprintf(name, sizeof name, "encoder.layers.%d.conv", layer++);
        if (rc == MG_OK)
            rc = load_conv(ld, &enc->convs[ci++], name, c, 2 * c, 2 * enc->cfg.ec_ratios[i], 1,
                           enc->cfg.ec_ratios[i], err);
        c *= 2;
    }
    if (rc == MG_OK)
        rc = mg_ec_load_lstms(ld, enc->lstm, "encoder", layer, enc->cfg.ec_lstm_layers, c, err);
    layer += 2; /* LSTM, ELU */
    if (rc == MG_OK) {
        snprintf(name, sizeof name, "encoder.layers.%d.conv", layer);
        rc = load_conv(ld, &enc->convs[ci++], name, c, enc->cfg.ec_hidden, cfg->ec_last_kernel, 1, 1,
                       err);
    }
    return rc;
}

mg_code mg_ec_encoder_load(mg_ec_encoder **out, mg_loader *ld, const mg_config *cfg,
                           mg_error *err)
{
    *out = NULL;
    mg_ec_encoder *enc = calloc(1, sizeof *enc);
    if (!enc)
        return mg_fail(err, MG_ERR_NOMEM, "encodec encoder: out of memory");
    enc->be = ld->be;
    enc->cfg = *cfg;
    enc->c_last = cfg->ec_filters << cfg->ec_n_ratios;
    enc->chunk_frames = MG_ENCODEC_ENCODE_CHUNK_FRAMES;
    if (!has_encoder(ld)) {
        *out = enc;
        return MG_OK;
    }
    enc->n_convs = 2 + enc->cfg.ec_n_ratios * (1 + 2 * enc->cfg.ec_res_layers);
    enc->convs = calloc((size_t)enc->n_convs, sizeof *enc->convs);
    enc->lstm = calloc((size_t)enc->cfg.ec_lstm_layers, sizeof *enc->lstm);
    enc->codebooks = malloc((size_t)enc->cfg.ec_codebooks * enc->cfg.ec_codebook_size * enc->cfg.ec_hidden *
                            sizeof *enc->codebooks);
    mg_code rc = enc->convs && enc->lstm && enc->codebooks
                     ? load_weights(enc, ld, cfg, err)
                     : mg_fail(err, MG_ERR_NOMEM, "encodec encoder: out of memory");
    if (rc != MG_OK) {
        mg_ec_encoder_free(enc);
        return mg_fail_context(err, "encodec encoder");
    }
    enc->has_weights = 1;
    enc->halo_frames = stack_halo_frames(enc);
    *out = enc;
    return MG_OK;
}

int64_t mg_encodec_encode_frames(const mg_encodec *ec, int64_t n_samples)
{
    const mg_ec_encoder *enc = mg_ec_encoder_of(ec);
    return n_samples < 1 ? 0 : (n_samples - 1) / enc->cfg.hop + 1;
}

void mg_encodec_set_encode_chunk(mg_encodec *ec, int frames)
{
    mg_ec_encoder_of(ec)->chunk_frames = frames > 0 ? frames : 0;
}

/* ---------------------------------------------------------------- encode */

/* A [rows, cols] view at the start of a scratch tensor. */
static mg_tensor span(const mg_tensor *buf, int64_t rows, int64_t cols)
{
    mg_tensor v = mg_tensor_reshape2(buf, rows, cols);
    v.nbytes = (size_t)(rows * cols) * sizeof(float);
    return v;
}

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* Samples a stride-s conv's output has for an input of n: ceil(n / s). */
static int64_t strided_len(int64_t n, int s) { return (n + s - 1) / s; }

/* Scratch of the downsampling stack, in floats per role:
 *   sig: the signal and conv outputs (a ping-pong pair)
 *   pad: padded conv inputs
 *   phase: a strided conv's input rearranged by phase
 *   hid: residual-block hidden activations */
typedef struct {
    int64_t sig, pad, phase, hid;
} stack_plan;

static stack_plan plan_stack(const mg_ec_encoder *enc, int64_t B, int64_t n)
{
    const ec_conv *cv = enc->convs;
    stack_plan p = {.sig = B * max64(1, cv->c_out) * n, .pad = B * (n + pad_total(cv))};
    cv++;
    for (int i = 0; i < enc->cfg.ec_n_ratios; i++) {
        for (int j = 0; j < enc->cfg.ec_res_layers; j++, cv += 2) {
            p.pad = max64(p.pad, B * cv->c_in * (n + pad_total(cv)));
            p.hid = max64(p.hid, B * cv->c_out * n);
        }
        int64_t out = strided_len(n, cv->stride);
        int64_t padded = (out - 1) * cv->stride + cv->k;
        p.pad = max64(p.pad, B * cv->c_in * padded);
        p.phase = max64(p.phase, B * cv->c_in * padded);
        p.sig = max64(p.sig, B * cv->c_out * out);
        n = out;
        cv++;
    }
    return p;
}

/* The trace's callback and its host copy of a tensor. */
typedef struct {
    mg_encodec_trace_fn fn;
    void               *ud;
    float              *host;
} tracer;

/* Shows t to the trace as "encoder_layer_out.<layer>", or as "embeddings"
 * for layer < 0. */
static mg_code emit_layer(const tracer *tr, int layer, const mg_tensor *t, mg_error *err)
{
    char name[48] = "embeddings";
    mg_code rc = MG_OK;
    if (layer >= 0)
        snprintf(name, sizeof name, "encoder_layer_out.%02d", layer);
    if (tr->fn && (rc = mg_tensor_download_f32(t, tr->host, err)) == MG_OK)
        tr->fn(tr->ud, name, tr->host, mg_tensor_numel(t));
    return rc;
}

/* ELU, then the strided conv (cv, stride s, kernel k = taps·s) on x [B·c, n]:
 * reflect padding up to a whole number of strides, the phases of the padded
 * signal as channels (a transpose of [B·c·q, s] blocks), a stride-1 conv. */
static mg_code conv_down(mg_backend *be, const ec_conv *cv, mg_tensor *y, mg_tensor *x,
                         const mg_tensor *pad_buf, const mg_tensor *phase_buf, int64_t B,
                         tracer *tr, int layer, mg_error *err)
{
    const int64_t s = cv->stride, n = mg_tensor_cols(x), out = strided_len(n, cv->stride);
    const int64_t q = out - 1 + cv->k / s; /* padded length / s */
    const int total = cv->k - cv->stride, right = total / 2;
    const int extra = (int)(out * s - n);
    mg_tensor p = span(pad_buf, B * cv->c_in, q * s);
    mg_code rc;
    if (tr->fn || !be->ops->pad_reflect_elu) {
        be->ops->elu(be, x);
        if ((rc = emit_layer(tr, layer, x, err)))
            return rc;
        be->ops->pad_reflect(be, &p, x, total - right, right + extra);
    } else {
        be->ops->pad_reflect_elu(be, &p, x, total - right, right + extra);
    }
    mg_tensor pr = span(pad_buf, B * cv->c_in * q, s);
    mg_tensor ph = span(phase_buf, B * cv->c_in * s, q);
    be->ops->transpose(be, &ph, &pr, (int)(B * cv->c_in));
    *y = span(y, B * cv->c_out, out);
    be->ops->conv1d(be, y, &ph, cv->w, cv->b, (int)B, 1, 1);
    return emit_layer(tr, layer + 1, y, err);
}

typedef struct {
    mg_tensor *sig[2], *pad, *phase, *hid;
} stack_bufs;

/* The downsampling stack (layers 0 .. the last strided conv) on audio x
 * [B, n] in bufs->sig[0]; *out: its output [B·c_last, ceil(n / hop)], a view
 * of one of the signal buffers. */
static mg_code run_stack(const mg_ec_encoder *enc, const stack_bufs *bufs, int64_t B, int64_t n,
                         tracer *tr, mg_tensor *out, mg_error *err)
{
    mg_backend *be = enc->be;
    const ec_conv *cv = enc->convs;
    int a = 0, layer = 0;
    mg_tensor x = span(bufs->sig[0], B, n);
    mg_tensor y = span(bufs->sig[1], B * cv->c_out, n);
    mg_code rc;
    mg_ec_conv_same(be, cv++, &y, &x, bufs->pad, (int)B, 0, NULL, 0);
    a = 1;
    x = y;
    if ((rc = emit_layer(tr, layer++, &x, err)))
        return rc;
    int fused = be->ops->conv1d_fused != NULL;
    for (int i = 0; i < enc->cfg.ec_n_ratios; i++) {
        for (int j = 0; j < enc->cfg.ec_res_layers; j++, cv += 2) {
            mg_tensor h = span(bufs->hid, B * cv[0].c_out, n);
            mg_ec_conv_same(be, &cv[0], &h, &x, bufs->pad, (int)B, 1, NULL, 1);
            if (fused) {
                mg_ec_conv_same(be, &cv[1], &x, &h, bufs->pad, (int)B, 0, &x, 0);
            } else {
                y = span(bufs->sig[1 - a], B * cv[1].c_out, n);
                mg_ec_conv_same(be, &cv[1], &y, &h, bufs->pad, (int)B, 0, NULL, 0);
                be->ops->add(be, &x, &y);
            }
            if ((rc = emit_layer(tr, layer++, &x, err)))
                return rc;
        }
        y = *bufs->sig[1 - a];
        if ((rc = conv_down(be, cv, &y, &x, bufs->pad, bufs->phase, B, tr, layer, err)))
            return rc;
        layer += 2;
        n = mg_tensor_cols(&y);
        a = 1 - a;
        x = y;
        cv++;
    }
    *out = x;
    return MG_OK;
}

/* The nearest codeword of each quantizer in turn, for every frame of emb
 * [B, hidden, T] (channel-first, host; row b is item b / channels' channel
 * b % channels), into codes [B / channels, K * channels, T] with channel ch's
 * codebook q at row q * channels + ch (the decoder's interleaving). Distances are summed in eight
 * interleaved partial sums, which compilers vectorise without reordering
 * anything the source does not spell. */
static void quantize(const mg_ec_encoder *enc, const float *emb, int64_t B, int64_t T,
                     int32_t *codes, float *res)
{
    const int64_t D = enc->cfg.ec_hidden, K = enc->cfg.ec_codebooks, V = enc->cfg.ec_codebook_size;
    const int64_t C = enc->cfg.audio_channels;
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) {
            for (int64_t d = 0; d < D; d++)
                res[d] = emb[(b * D + d) * T + t];
            for (int64_t q = 0; q < K; q++) {
                const float *cb = enc->codebooks + q * V * D;
                int64_t best = 0;
                float best_d = INFINITY;
                for (int64_t v = 0; v < V; v++) {
                    const float *e = cb + v * D;
                    float acc[8] = {0};
                    int64_t d = 0;
                    for (; d + 8 <= D; d += 8)
                        for (int l = 0; l < 8; l++) {
                            float u = res[d + l] - e[d + l];
                            acc[l] += u * u;
                        }
                    for (; d < D; d++) {
                        float u = res[d] - e[d];
                        acc[0] += u * u;
                    }
                    float dist = ((acc[0] + acc[1]) + (acc[2] + acc[3])) +
                                 ((acc[4] + acc[5]) + (acc[6] + acc[7]));
                    if (dist < best_d) {
                        best_d = dist;
                        best = v;
                    }
                }
                codes[((b / C) * K * C + q * C + b % C) * T + t] = (int32_t)best;
                for (int64_t d = 0; d < D; d++)
                    res[d] -= cb[best * D + d];
            }
        }
}

static mg_code check_input(const mg_ec_encoder *enc, const float *audio, int batch,
                           int64_t n_samples, mg_error *err)
{
    if (!enc->has_weights)
        return mg_fail(err, MG_ERR_UNSUPPORTED, "the model has no EnCodec encoder weights");
    if (batch < 1)
        return mg_fail_field(err, MG_ERR_INVALID, "batch", "encodec encode: batch %d", batch);
    if (n_samples < 1)
        return mg_fail_field(err, MG_ERR_INVALID, "n_samples",
                             "encodec encode: %lld samples (at least 1 is needed)",
                             (long long)n_samples);
    if ((n_samples - 1) / enc->cfg.hop + 1 > INT_MAX / 2 / batch)
        return mg_fail_field(err, MG_ERR_INVALID, "n_samples",
                             "encodec encode: %lld samples are too many", (long long)n_samples);
    for (int64_t b = 0; b < batch; b++)
        for (int64_t i = 0; i < n_samples; i++)
            if (!isfinite(audio[b * n_samples + i]))
                return mg_fail_field(err, MG_ERR_INVALID, "audio",
                                     "encodec encode: sample %lld of item %lld is %s", (long long)i,
                                     (long long)b,
                                     isnan(audio[b * n_samples + i]) ? "NaN" : "infinite");
    return MG_OK;
}

static void free_all(mg_tensor **t, int n)
{
    for (int i = 0; i < n; i++)
        mg_tensor_free(t[i]);
}

mg_code mg_encodec_encode(mg_encodec *ec, const float *audio, int batch, int64_t n_samples,
                          int32_t *codes, int *frames, mg_encodec_trace_fn trace,
                          void *trace_ud, mg_error *err)
{
    mg_ec_encoder *enc = mg_ec_encoder_of(ec);
    if (batch < 1 || batch > INT_MAX / 2)
        return mg_fail_field(err, MG_ERR_INVALID, "batch", "encodec encode: batch %d", batch);
    /* each channel is encoded as an item of its own */
    batch *= enc->cfg.audio_channels;
    mg_code rc = check_input(enc, audio, batch, n_samples, err);
    if (rc != MG_OK)
        return rc;
    mg_backend *be = enc->be;
    const int64_t B = batch, T = mg_encodec_encode_frames(ec, n_samples), hop = enc->cfg.hop;
    const int64_t C = enc->c_last, D = enc->cfg.ec_hidden;
    const ec_conv *last = &enc->convs[enc->n_convs - 1];
    *frames = (int)T;

    /* The downsampling stack, where activations are up to filters times
     * longer than the waveform (30 s of musicgen-small's EnCodec: ~250 MB a
     * tensor), runs chunk by chunk with halo_frames of real context each
     * side and one batch item at a time, so memory stays bounded; the frame
     * rate part (LSTM, last conv) runs over the whole sequence (the LSTM
     * carries state across it). The stack's layers are traced only in one
     * pass (whole tensors, the whole batch). */
    int64_t F = enc->chunk_frames == 0 || enc->chunk_frames >= T ? T : enc->chunk_frames;
    int64_t n_sub = F == T ? n_samples : (F + 2 * enc->halo_frames) * hop;
    if (n_sub > n_samples)
        n_sub = n_samples;
    tracer tr = {trace, trace_ud, NULL}, tr_stack = {F == T ? trace : NULL, trace_ud, NULL};
    const int64_t B_up = tr_stack.fn ? B : 1;
    stack_plan sp = plan_stack(enc, B_up, n_sub);
    /* frame-rate buffers: the stack's output time-major (x), LSTM outputs,
     * and the padded input of the last conv */
    enum { SIG0, SIG1, PAD, PHASE, HID, X, L0, L1, FPAD, N_BUFS };
    int64_t size[N_BUFS] = {
        [SIG0] = max64(sp.sig, B_up * n_sub), [SIG1] = sp.sig, [PAD] = sp.pad,
        [PHASE] = max64(sp.phase, 1), [HID] = max64(sp.hid, 1), [X] = B * T * C,
        [L0] = B * T * max64(C, D), [L1] = B * T * C, [FPAD] = B * C * (T + pad_total(last)),
    };
    mg_tensor *buf[N_BUFS] = {0};
    float *emb = malloc((size_t)(B * D * T) * sizeof *emb);
    float *res = malloc((size_t)D * sizeof *res);
    int64_t trace_n = max64(max64(sp.sig, sp.hid), B * T * max64(C, D));
    if (!emb || !res || (trace && !(tr.host = malloc((size_t)trace_n * sizeof(float))))) {
        rc = mg_fail(err, MG_ERR_NOMEM, "encodec encode: out of memory");
        goto done;
    }
    for (int i = 0; i < N_BUFS && rc == MG_OK; i++)
        rc = mg_tensor_new2(&buf[i], be, 1, size[i], err);
    if (rc != MG_OK)
        goto done;
    stack_bufs sb = {{buf[SIG0], buf[SIG1]}, buf[PAD], buf[PHASE], buf[HID]};
    tr_stack.host = tr.host;
    mg_tensor xt = span(buf[X], B * T, C);

    for (int64_t f0 = 0; f0 < T; f0 += F) {
        int64_t f1 = T - f0 < F ? T : f0 + F;
        int64_t s0 = max64(f0 - enc->halo_frames, 0);
        int64_t s1 = f1 + enc->halo_frames < T ? f1 + enc->halo_frames : T;
        int64_t a0 = s0 * hop, a1 = s1 == T ? n_samples : s1 * hop, n = a1 - a0;
        for (int64_t b0 = 0; b0 < B; b0 += B_up) {
            /* samples [a0, a1) of items [b0, b0 + B_up) */
            mg_tensor in = span(buf[SIG0], B_up, n), out;
            for (int64_t b = 0; b < B_up && rc == MG_OK; b++)
                rc = be->ops->upload(be, &in, (size_t)(b * n) * sizeof(float),
                                     audio + (b0 + b) * n_samples + a0,
                                     (size_t)n * sizeof(float), err);
            if (rc != MG_OK || (rc = run_stack(enc, &sb, B_up, n, &tr_stack, &out, err)))
                goto done;
            /* frames [f0, f1) of the chunk, time-major, into x */
            mg_tensor *spare = out.data == buf[SIG0]->data ? buf[SIG1] : buf[SIG0];
            mg_tensor tm = span(spare, B_up * (s1 - s0), C);
            be->ops->transpose(be, &tm, &out, (int)B_up);
            mg_copy_row_blocks(be, &xt, b0 * T + f0, T, &tm, f0 - s0, s1 - s0, f1 - f0, B_up);
        }
    }

    int layer = 1 + enc->cfg.ec_n_ratios * (enc->cfg.ec_res_layers + 2);
    mg_tensor hin = xt;
    for (int l = 0; l < enc->cfg.ec_lstm_layers; l++) {
        mg_tensor hout = span(buf[l % 2 ? L1 : L0], B * T, C);
        const ec_lstm *ls = &enc->lstm[l];
        be->ops->lstm(be, &hout, &hin, ls->w_ih, ls->w_hh, ls->b_ih, ls->b_hh, batch);
        hin = hout;
    }
    be->ops->add(be, &xt, &hin);
    mg_tensor x = span(buf[L1], B * C, T);
    be->ops->transpose(be, &x, &xt, batch);
    if ((rc = emit_layer(&tr, layer++, &x, err)))
        goto done;
    be->ops->elu(be, &x);
    if ((rc = emit_layer(&tr, layer++, &x, err)))
        goto done;
    mg_tensor e = span(buf[L0], B * D, T);
    mg_ec_conv_same(be, last, &e, &x, buf[FPAD], batch, 0, NULL, 0);
    if ((rc = emit_layer(&tr, layer, &e, err)) || (rc = emit_layer(&tr, -1, &e, err)) ||
        (rc = mg_tensor_download_f32(&e, emb, err)))
        goto done;
    quantize(enc, emb, B, T, codes, res);
done:
    free_all(buf, N_BUFS);
    free(emb);
    free(res);
    free(tr.host);
    if (rc != MG_OK) {
        /* an early exit leaves no op failure pending for the next job's sync */
        mg_error drained;
        be->ops->sync(be, &drained);
    }
    return rc;
}
