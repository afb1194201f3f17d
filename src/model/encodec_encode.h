/* EnCodec encoder (waveform -> codes) as MusicGen uses it to turn a user's
 * audio into a code prompt: the SEANet encoder (conv; per downsampling ratio
 * residual blocks, ELU and a strided conv; LSTM with its skip; ELU; conv),
 * then residual vector quantisation, matching Hugging Face transformers'
 * EncodecModel.encode (non-causal convs with reflect padding, weight norm
 * folded at load). */
#ifndef MG_ENCODEC_ENCODE_H
#define MG_ENCODEC_ENCODE_H
#include <stdint.h>
#include "model/encodec.h"

/* Frames of codes n_samples of audio give: ceil(n_samples / hop) (hop = 640
 * for the 32 kHz EnCodec); 0 for n_samples < 1. */
int64_t mg_encodec_encode_frames(const mg_encodec *ec, int64_t n_samples);

/* audio: host float [batch, channels, n_samples] at the model's sample rate
 * (channels = the model's audio_channels; each channel is encoded alone);
 * codes: host int32 [batch, K, frames] (K = the model's decoder codebooks,
 * channel ch's codebook q at row q * channels + ch; frames =
 * mg_encodec_encode_frames(ec, n_samples)), *frames set to that count. Each
 * code is the nearest codeword (squared Euclidean distance, ties to the lower
 * index) to what the quantizers before it left. trace (may be NULL) sees
 * "encoder_layer_out.00".."15" and "embeddings" [batch, channels, time]
 * (the downsampling stack's layers, up to .12, only when the encode runs
 * in one pass: mg_encodec_set_encode_chunk(ec, 0) or a short input).
 * Errors: MG_ERR_UNSUPPORTED when the model has no encoder weights;
 * MG_ERR_INVALID for batch < 1, n_samples < 1, too many samples, or a NaN or
 * infinite sample (it would make every code of the item meaningless).
 * Runs on the model's backend: calls must not overlap with each other or
 * with the model's other work (hold the model's run lock, as decodes do);
 * its scratch is allocated per call (~105 MB for musicgen-small) and freed. */
mg_code mg_encodec_encode(mg_encodec *ec, const float *audio, int batch, int64_t n_samples,
                          int32_t *codes, int *frames, mg_encodec_trace_fn trace,
                          void *trace_ud, mg_error *err);

/* Frames of codes the encoder's downsampling stack runs at a time (plus one
 * frame of context each side on the 32 kHz shapes); 0 = the whole signal in
 * one pass. The codes are the same either way. musicgen-small's shapes, q8,
 * 30 s of audio: ~105 MB of scratch in 64-frame chunks (~160 MB in 128),
 * ~1.2 GB and about 3x the time in one pass. */
enum { MG_ENCODEC_ENCODE_CHUNK_FRAMES = 64 };
void mg_encodec_set_encode_chunk(mg_encodec *ec, int frames);
#endif
