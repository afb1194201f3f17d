/* Audio formats, and encoding float audio (mono or stereo) into an in-memory file (WAV,
 * FLAC, Ogg/Opus, MP3): the stream of audio_stream.h collected in memory;
 * nothing touches the filesystem. */
#ifndef MG_AUDIO_H
#define MG_AUDIO_H
#include <stddef.h>
#include <stdint.h>
#include "base/error.h"
#include "io/level.h"

typedef enum { MG_AUDIO_WAV, MG_AUDIO_FLAC, MG_AUDIO_OGG, MG_AUDIO_MP3 } mg_audio_format;

/* Parses name[0..len) (not necessarily NUL-terminated), case-insensitive:
 * "wav", "flac", "ogg" (Ogg/Opus; "opus" is accepted too), "mp3".
 * The error message names the rejected value. */
mg_code mg_audio_format_parse(const char *name, size_t len, mg_audio_format *out, mg_error *err);
/* "wav", "flac", "ogg", "mp3" ("unknown" for anything else). */
const char *mg_audio_format_name(mg_audio_format f);
/* audio/wav, audio/flac, audio/ogg, audio/mpeg. */
const char *mg_audio_mime(mg_audio_format f);

/* Encodes samples[0..n) (mono, sample_rate Hz) as format f, through the
 * level stage `level` (see level.h): the bytes of an mg_audio_stream of the
 * same parameters, collected in memory (see audio_stream.h for the formats).
 *   WAV:  16-bit PCM (level off: 32-bit float).   FLAC: 16-bit.
 *   OGG:  Opus; audio is resampled to 48 kHz unless already at an Opus rate
 *         (8/12/16/24/48 kHz), see resample.h.
 *   MP3:  MPEG Layer III (VBR) at the given rate if MPEG has it (32 kHz
 *         does), else resampled to 48 kHz.
 * n == 0 gives a valid file with no audio (Opus and MP3: one silent
 * sample). On success *out is malloc'd (*out_len bytes, caller frees). A
 * codec this libsndfile build cannot write gives MG_ERR_UNSUPPORTED with
 * libsndfile's message. */
mg_code mg_audio_encode_level(const float *samples, size_t n, int sample_rate, mg_audio_format f,
                              mg_level level, uint8_t **out, size_t *out_len, mg_error *err);
/* The same for planar audio [channels, n] (1 or 2 channels, left first, as
 * the engine makes it): a stereo file of n frames, the level stage linked
 * across the channels (one gain for both, so the stereo image stays). */
mg_code mg_audio_encode_planar(const float *samples, int channels, size_t n, int sample_rate,
                               mg_audio_format f, mg_level level, uint8_t **out,
                               size_t *out_len, mg_error *err);
/* mg_audio_encode_level at the default level, limit. */
mg_code mg_audio_encode(const float *samples, size_t n, int sample_rate, mg_audio_format f,
                        uint8_t **out, size_t *out_len, mg_error *err);
/* The length of the file mg_audio_encode_level makes of n samples, for the
 * formats whose size the sample count decides (WAV: a 44-byte header and 2
 * bytes a sample; at level off a 58-byte header and 4 bytes a sample); 0 for
 * FLAC, Ogg and MP3, whose size depends on the audio itself. A front end
 * answers a HEAD's Content-Length with it, so it must stay what the encoder
 * writes (tests/test_audio.c compares the two). */
size_t  mg_audio_encoded_size_level(size_t n, mg_audio_format f, mg_level level);
/* mg_audio_encoded_size_level at the default level, limit. */
size_t  mg_audio_encoded_size(size_t n, mg_audio_format f);

#endif
