/* Encoding audio as a stream: samples go in as they are made, the encoded
 * file's bytes leave through a sink as soon as the codec emits them.
 *
 * Bytes reach the sink strictly in order and are never revised (the writer
 * never seeks back), so what a seekable writer fills in at close stays as it
 * was first written:
 *   WAV   nothing: the header states the exact length up front (frames).
 *   FLAC  STREAMINFO carries the exact total sample count (from frames) but
 *         no MD5 signature (all zero: "not computed") and no minimum/maximum
 *         frame sizes (0: "unknown"); no seek table.
 *   Ogg   nothing (Ogg is a streaming container).
 *   MP3   no Xing/LAME info frame (gapless length and VBR seek table): the
 *         stream is plain MPEG frames, see audio_stream.c.
 * The bytes depend only on the samples and the parameters, never on how the
 * samples are split into writes (they are re-blocked to fixed blocks before
 * the level stage, the resampler and the codec), so a stream collected in
 * memory is the file mg_audio_encode_level returns. */
#ifndef MG_AUDIO_STREAM_H
#define MG_AUDIO_STREAM_H
#include <stddef.h>
#include <stdint.h>
#include "base/error.h"
#include "io/audio.h"
#include "io/level.h"

/* Receives the next n encoded bytes. Non-zero stops the stream: the write
 * (or finish) that called it fails with MG_ERR_CANCELLED. */
typedef int (*mg_audio_sink_fn)(void *ud, const uint8_t *bytes, size_t n);

typedef struct {
    mg_audio_format format;
    int             sample_rate;   /* of the samples written */
    int             channels;      /* 1 or 2, samples interleaved */
    size_t          frames;        /* samples per channel the stream will carry: exact (WAV
                                      puts it in its header; finish fails if the count differs) */
    mg_level        level;
} mg_audio_stream_params;

typedef struct mg_audio_stream mg_audio_stream;

/* Opens a stream and sends what the format writes before any audio (WAV's
 * header, FLAC's metadata). Formats and rates as mg_audio_encode: Opus gets
 * 48 kHz unless the rate is an Opus rate, MP3 48 kHz unless an MPEG one
 * (libsoxr resamples). Level off is refused for FLAC (16-bit integers
 * cannot carry samples beyond full scale: use clip, or WAV for float) with
 * MG_ERR_INVALID naming the field "level". */
mg_code mg_audio_stream_open(mg_audio_stream **out, const mg_audio_stream_params *p,
                             mg_audio_sink_fn sink, void *ud, mg_error *err);
/* Appends frames (samples[0 .. frames * channels)). Writing past the frame
 * count announced at open fails with MG_ERR_INVALID. After any failure the
 * stream only accepts mg_audio_stream_free. */
mg_code mg_audio_stream_write(mg_audio_stream *s, const float *samples, size_t frames,
                              mg_error *err);
/* Flushes the level stage's look-ahead, the resampler and the codec; fails
 * (MG_ERR_INVALID) when fewer frames than announced were written. */
mg_code mg_audio_stream_finish(mg_audio_stream *s, mg_error *err);
/* Frees a stream in any state, finished or not. */
void    mg_audio_stream_free(mg_audio_stream *s);
/* The exact byte length of the stream when the format's size follows from
 * the frame count (WAV, for every level), else 0 (FLAC, Ogg, MP3; and a WAV
 * too long for its 32-bit sizes, which open refuses). */
size_t  mg_audio_stream_size(const mg_audio_stream_params *p);

#endif
