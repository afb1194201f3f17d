/* What encodec.c (the decoder and the weight loading) shares with
 * encodec_encode.c (the encoder): the conv and LSTM weight records, the
 * loaders that fold weight norm and pick the weight format, and the
 * encoder's handle inside mg_encodec. Internal to src/model/. */
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
#endif
