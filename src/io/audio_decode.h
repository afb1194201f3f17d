/* Decoding a user's audio file (WAV, FLAC, Ogg Vorbis or Opus, MP3) from
 * memory into float samples at the model's rate, for continuation prompts.
 *
 * The container is sniffed from its first bytes before libsndfile sees it:
 * only these four are accepted, so libsndfile's many other readers (and their
 * bugs) are out of reach of a request, and anything else is "not audio".
 *
 * Limits, all checked here:
 *   - at most MG_AUDIO_DECODE_MAX_BYTES of file: 60 s of 16-bit stereo WAV
 *     at 48 kHz (11.5 MB) fits, with room for 24-bit;
 *   - at most MG_AUDIO_DECODE_MAX_SECONDS of audio: longer than any MusicGen
 *     window (a prompt longer than the window minus a stride is cut to its
 *     end anyway), and it bounds the decoded memory: at most 60 s x 192 kHz x
 *     2 channels of float at the source rate (92 MB) while decoding, 15 MB
 *     at 32 kHz after. WAV, FLAC and Ogg say their length in their headers
 *     and are refused from it before any decoding; an MP3's length is only
 *     an estimate without a Xing tag, so its decoding stops at the limit;
 *   - a source rate of 1 kHz .. MG_AUDIO_DECODE_MAX_RATE;
 *   - mono or stereo: more channels are refused rather than guessed at (a
 *     surround downmix has conventions the user should choose);
 *   - at least one frame, every sample finite and within
 *     +-MG_AUDIO_DECODE_MAX_LEVEL (36 dB above full scale: only a float file
 *     can go past 1, loud real mixes peak near 2, and beyond the bound it is
 *     not audio; it also keeps the resampler's sums far from overflowing).
 * Errors are MG_ERR_INVALID naming the field the caller gives (e.g.
 * "audio_prompt"; a sample rate the resampler cannot convert is one too),
 * or MG_ERR_NOMEM. */
#ifndef MG_AUDIO_DECODE_H
#define MG_AUDIO_DECODE_H
#include <stddef.h>
#include <stdint.h>
#include "base/error.h"

#define MG_AUDIO_DECODE_MAX_BYTES   (16u << 20)
#define MG_AUDIO_DECODE_MAX_SECONDS 60
#define MG_AUDIO_DECODE_MAX_RATE    192000
#define MG_AUDIO_DECODE_MAX_LEVEL   64

typedef enum {
    MG_CONTAINER_NONE, MG_CONTAINER_WAV, MG_CONTAINER_FLAC, MG_CONTAINER_OGG, MG_CONTAINER_MP3
} mg_audio_container;

typedef struct {
    float             *samples;     /* frames * channels, interleaved; malloc'd */
    size_t             frames;
    int                channels;    /* 1 or 2 */
    int                rate;        /* Hz of samples (the rate asked for) */
    int                source_rate; /* Hz of the file */
    mg_audio_container container;
} mg_decoded_audio;

/* The container bytes[0..len) starts with (an ID3v2 tag is skipped for FLAC
 * and MP3); MG_CONTAINER_NONE when it is none of the four. */
mg_audio_container mg_audio_sniff(const uint8_t *bytes, size_t len);
/* "WAV", "FLAC", "Ogg", "MP3" ("unknown" for NONE). */
const char *mg_audio_container_name(mg_audio_container c);

/* Decodes the file bytes[0..len) and resamples it to rate Hz (channels
 * kept). field names the request field in errors. On error *out holds
 * nothing to free. */
mg_code mg_audio_decode(const uint8_t *bytes, size_t len, int rate, const char *field,
                        mg_decoded_audio *out, mg_error *err);
/* Averages the channels in place into mono (channels becomes 1). */
void    mg_audio_downmix(mg_decoded_audio *a);
/* Frees a->samples; safe on a zeroed or already-freed value. */
void    mg_decoded_audio_free(mg_decoded_audio *a);

#endif
