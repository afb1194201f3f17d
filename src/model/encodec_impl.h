/* The EnCodec model's layout and what its parts share: the loader
 * (encodec.c), the decoder (encodec_stream.c) and the encoder
 * (encodec_encode.c): the conv and LSTM weight records, the loaders that fold
 * weight norm and pick the weight format, the decoder's scratch, and the
 * encoder's handle. Internal to src/model/. */
#ifndef MG_ENCODEC_IMPL_H
#define MG_ENCODEC_IMPL_H
#include <stdint.h>
#include "model/encodec.h"

typedef struct {
    char       path[64];  /* module path, e.g. "decoder.layers.4.block.1.conv" */
    mg_tensor *w, *b;     /* folded weight ([out, in, k], transposed: [in, out, k]) and bias */
    int        c_in, c_out, k, dil, stride, transposed;
} ec_conv;

typedef struct {
    mg_tensor *w_ih, *w_hh, *b_ih, *b_hh;
} ec_lstm;

/* The weight-norm folded weight of audio_encoder.<path> ([d0, d1, k] as
 * stored), malloc'd on the host. */
mg_code mg_ec_fold_conv(mg_loader *ld, const char *path, int64_t d0, int64_t d1, int64_t k,
                        float **out, mg_error *err);
/* Uploads a folded weight [d0, d1, k] as cv->w (BF16 pairs where the backend
 * and the weight format want them) and audio_encoder.<cv->path>.bias as
 * cv->b; cv->path, c_out and transposed must be set. */
mg_code mg_ec_upload_conv(mg_loader *ld, ec_conv *cv, const float *w, int64_t d0, int64_t d1,
                          int64_t k, mg_error *err);
/* n_layers LSTM layers of audio_encoder.<stack>.layers.<layer_index>.lstm
 * (stack "encoder" or "decoder") in the format the backend runs fastest for
 * the model's weight format. */
mg_code mg_ec_load_lstms(mg_loader *ld, ec_lstm *l, const char *stack, int layer_index,
                         int n_layers, int width, mg_error *err);
void    mg_ec_lstms_free(ec_lstm *l, int n_layers);

/* y = conv(reflect_pad(x)) for a stride-1 conv (the ELU applied to the
 * padded copy with elu_in), then y = residual + y (residual may be y) and
 * y = elu(y) (elu_out), fused where the backend can; pad_buf holds the
 * padded input. */
void mg_ec_conv_same(mg_backend *be, const ec_conv *cv, mg_tensor *y, const mg_tensor *x,
                     const mg_tensor *pad_buf, int batch, int elu_in, const mg_tensor *residual,
                     int elu_out);

/* The encoder (encodec_encode.c): loaded with the decoder; a model without
 * encoder weights gets one that only knows its shapes. */
typedef struct mg_ec_encoder mg_ec_encoder;
mg_code mg_ec_encoder_load(mg_ec_encoder **out, mg_loader *ld, const mg_config *cfg,
                           mg_error *err);
void    mg_ec_encoder_free(mg_ec_encoder *enc);
mg_ec_encoder *mg_ec_encoder_of(const mg_encodec *ec);

/* The decoder's scratch buffers, by role (see encodec_stream.c): the
 * running signal (ping-pong pair A/B), padded conv inputs (P), residual
 * hidden activations and LSTM outputs (H), the LSTM's time-major signal (X),
 * a conv's kept columns followed by its new ones (W), and the frame-rate
 * part's output (C). */
enum { EC_BUF_A, EC_BUF_B, EC_BUF_P, EC_BUF_H, EC_BUF_X, EC_BUF_W, EC_BUF_C, EC_N_BUFS };

struct mg_encodec {
    mg_backend *be;
    int         n_q, codebook_size, hidden, filters, c0, hop;
    /* audio channels, each decoded as an item of its own from its n_q of
     * the model's interleaved codebooks (mg_ec_code_row) */
    int         channels;
    int         n_ratios, ratios[MG_MAX_RATIOS], res_layers, n_lstm;
    mg_tensor **codebooks;   /* n_q x [codebook_size, hidden] */
    ec_lstm    *lstm;        /* n_lstm layers of width c0 */
    /* In layer order: input conv; per ratio the transposed conv and
     * res_layers x (block.1, block.3); output conv. */
    ec_conv    *convs;
    int         n_convs;
    int         chunk_frames; /* frames per decode pass of mg_encodec_decode (0: all) */
    /* Scratch kept from one decode pass to the next (passes over one model
     * never overlap: the model's run lock; a stream keeps its own state
     * elsewhere): fresh buffers cost page faults and zeroing on every pass.
     * Sized by the largest pass so far, freed after a pass that needed more
     * than MG_ENCODEC_KEEP_BYTES. */
    mg_tensor  *ws[EC_N_BUFS];
    int64_t     ws_cap[EC_N_BUFS]; /* floats */
    mg_ec_encoder *enc;      /* the encoder (encodec_encode.c) */
};

/* Scratch buffer i with room for n floats: the kept one, or a new one (the
 * old contents are lost). */
mg_code mg_ec_ws_get(mg_encodec *ec, int i, int64_t n, mg_error *err);
/* Keeps the scratch for the next pass unless it grew past the bound (or drop). */
void    mg_ec_ws_trim(mg_encodec *ec, int drop);
/* Row of the model's codes [batch, n_q * channels, frames] that holds
 * codebook q of EnCodec item i (item b * channels + ch: batch item b's
 * channel ch); the decoder interleaves channels codebook by codebook. */
static inline int64_t mg_ec_code_row(const mg_encodec *ec, int64_t i, int64_t q)
{
    return (i / ec->channels) * ec->n_q * ec->channels + q * ec->channels + i % ec->channels;
}

#endif
