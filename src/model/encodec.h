/* EnCodec decoder (codes -> waveform) as MusicGen uses it: residual-VQ
 * codebook sum, then the SEANet decoder (conv, LSTM, per upsampling ratio
 * ELU + transposed conv + residual blocks, ELU, conv), matching Hugging Face
 * transformers' EncodecModel.decode. Weight norm is folded at load. */
#ifndef MG_ENCODEC_H
#define MG_ENCODEC_H
#include <stdint.h>
#include "backend/backend.h"
#include "io/config.h"
#include "base/error.h"
#include "io/loader.h"

typedef struct mg_encodec mg_encodec;

/* Loads audio_encoder.quantizer.layers.{q}.codebook.embed and every
 * audio_encoder.decoder.* weight the config implies onto ld->be. The loader
 * (its mmap) must outlive the model. */
mg_code mg_encodec_load(mg_encodec **out, mg_loader *ld, const mg_config *cfg, mg_error *err);
void    mg_encodec_free(mg_encodec *ec);

/* Optional observer of intermediate tensors (golden checks): name as in the
 * golden file ("quantizer_embeddings", "decoder_layer_out.00".."15"), data on
 * the host, laid out [batch, channels, time]. */
typedef void (*mg_encodec_trace_fn)(void *ud, const char *name, const float *data, int64_t n);

/* codes: host int32 [batch, K, frames] (K = cfg->num_codebooks: a stereo
 * model's codebook q * 2 + ch is channel ch's codebook q), each in
 * [0, codebook_size); audio: host float [batch, channels, frames*hop]
 * (channels = cfg->audio_channels, each decoded alone, left first). An EnCodec
 * stream (model/encodec_stream.h) pushed MG_ENCODEC_CHUNK_FRAMES at a time;
 * with a trace, one pass. */
mg_code mg_encodec_decode(mg_encodec *ec, const int32_t *codes, int batch, int frames,
                          float *audio, mg_encodec_trace_fn trace, void *trace_ud,
                          mg_error *err);

/* Frames of codes (shared among a batch's items) the upsampling stack
 * decodes per pass: bounds EnCodec's activations, which are hop (640) times
 * longer than the codes, whatever the duration. Passes carry each layer's
 * state (model/encodec_stream.h), so no context is decoded twice. 0 = the
 * whole signal in one pass; the result is the same either way. */
enum { MG_ENCODEC_CHUNK_FRAMES = 128 };
/* Scratch a model keeps between decodes (larger scratch is freed after the
 * decode that needed it): covers musicgen-small's decodes of one item of any
 * length (~80 MB with 128-frame chunks, allocated during every decode anyway)
 * and of 4 items up to ~20 s. */
#define MG_ENCODEC_KEEP_BYTES ((int64_t)96 << 20)
void mg_encodec_set_chunk(mg_encodec *ec, int frames);

/* Host copy (malloc'd, caller frees) of an effective (weight-norm folded) conv
 * weight by module path, e.g. "decoder.layers.0.conv" or
 * "decoder.layers.4.block.1.conv"; *n = element count. */
mg_code mg_encodec_folded_weight(const mg_encodec *ec, const char *path, float **out,
                                 int64_t *n, mg_error *err);
#endif
