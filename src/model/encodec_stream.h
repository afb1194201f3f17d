/* EnCodec decoding as a stream: frames of codes go in as they become known,
 * audio comes out as soon as it is final, and every sample is bit for bit
 * what one pass over the whole signal gives (mg_encodec_decode is itself a
 * stream pushed in chunks).
 *
 * Each layer keeps what its future outputs still need: a stride-1 conv its
 * last (k-1)*dilation input columns (fewer before its first output), a
 * transposed conv the input columns that overlap its next outputs, a
 * residual block its inputs whose sums are not out yet, the LSTM its h and c
 * per layer and item. A layer's output t is computed once every input it
 * reads is known, from those same inputs in the same order as in one pass,
 * so no chunk recomputes earlier audio. Reflect padding is applied at the
 * signal's start as one pass does, and at its true end by finish. */
#ifndef MG_ENCODEC_STREAM_H
#define MG_ENCODEC_STREAM_H
#include "model/encodec.h"

typedef struct mg_encodec_stream mg_encodec_stream;

/* Receives samples [offset, offset + n) of every channel of every item,
 * host float laid out [rows, n] (rows = batch items x the model's
 * audio_channels: [batch, channels, n]), in order and exactly once each; an error it returns ends the
 * push that called it. */
typedef mg_code (*mg_encodec_audio_fn)(void *ud, const float *audio, int batch, int64_t offset,
                                       int64_t n, mg_error *err);

/* A stream of batch items over ec (which must outlive it). On a backend
 * without caps.lstm_state pushes only collect codes and finish decodes them
 * all (the LSTM runs over the whole sequence in one call). */
mg_code mg_encodec_stream_open(mg_encodec_stream **out, mg_encodec *ec, int batch,
                               mg_encodec_audio_fn on_audio, void *ud, mg_error *err);
/* The next n frames: codes[(b*K + q)*frame_stride + t] for item b,
 * codebook q, frame t < n (frame_stride >= n; K = the model's decoder
 * codebooks, a stereo model's interleaved as in encodec.h),
 * each in [0, codebook_size). Hands on every sample that is now final. */
mg_code mg_encodec_stream_push(mg_encodec_stream *s, const int32_t *codes, int n,
                               int64_t frame_stride, mg_error *err);
/* The end of the codes: hands on the rest of the audio (reflect padding at
 * the true end). A stream takes no push after finish. */
mg_code mg_encodec_stream_finish(mg_encodec_stream *s, mg_error *err);
void    mg_encodec_stream_free(mg_encodec_stream *s);
/* Frames pushed, and samples per item handed on so far. */
int64_t mg_encodec_stream_frames(const mg_encodec_stream *s);
int64_t mg_encodec_stream_samples(const mg_encodec_stream *s);

/* The look-ahead: the audio of frame f is final (and handed on) once frames
 * up to f + mg_encodec_lookahead_frames(ec) have been pushed. Derived from
 * the layer shapes: the right context of every conv (half its (k-1)*dilation
 * span), carried back through each transposed conv to the frame rate. */
int     mg_encodec_lookahead_frames(const mg_encodec *ec);
#endif
