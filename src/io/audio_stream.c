#include "io/audio_stream.h"

#include <FLAC/stream_encoder.h>
#include <lame/lame.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/ogg_opus.h"
#include "io/resample.h"

/* Frames gathered before the level stage, resampler and codec run: fixed, so
 * the bytes never depend on how the caller split its writes; small, so the
 * first bytes leave early (64 ms at 32 kHz). */
#define BLOCK_FRAMES 2048
#define RESAMPLE_RATE 48000   /* for codecs that cannot take the input rate */
#define MAX_RATE 655350       /* WAV's and FLAC's headers hold any rate below */
#define FLAC_LEVEL 5          /* libFLAC's default compression (what flac(1) uses) */

/* WAV headers: RIFF + "fmt " (16 bytes of PCM format) + "data", and for
 * float the 18-byte "fmt " (cbSize 0) + "fact" that WAVE_FORMAT_IEEE_FLOAT
 * asks for. */
#define WAV_PCM_HEADER   44
#define WAV_FLOAT_HEADER 58

struct mg_audio_stream {
    mg_audio_stream_params p;
    mg_audio_sink_fn sink;
    void            *ud;
    int              codec_rate;
    size_t           written;       /* frames accepted */
    size_t           codec_frames;  /* frames the codec was given */
    uint64_t         bytes_out;     /* bytes the sink took */
    int              stopped;       /* the sink refused bytes */
    int              failed;        /* a call failed: only free is left */
    int              finished;
    float           *block;         /* BLOCK_FRAMES frames being gathered */
    size_t           fill;
    float           *leveled;       /* the level stage's output */
    mg_level_stage  *level;
    mg_resampler    *resampler;     /* NULL when the codec takes the rate */
    /* codecs: WAV writes pcm itself; FLAC through libFLAC; MP3 through LAME;
     * Ogg/Opus through libopus and libogg (ogg_opus.h) */
    uint8_t             *pcm;       /* WAV bytes of one conversion; MP3 frames */
    size_t               pcm_cap;
    FLAC__int32         *flac_pcm;
    FLAC__StreamEncoder *flac;
    mg_ogg_opus         *ogg;
    lame_t               lame;
    size_t               conv_frames;   /* frames pcm / flac_pcm hold */
};

/* ---- the sink ---- */

static int emit(mg_audio_stream *s, const void *bytes, size_t n)
{
    if (s->stopped)
        return -1;
    if (n && s->sink(s->ud, bytes, n) != 0) {
        s->stopped = 1;
        return -1;
    }
    s->bytes_out += n;
    return 0;
}

static int emit_cb(void *ud, const uint8_t *bytes, size_t n)
{
    return emit(ud, bytes, n);
}

static FLAC__StreamEncoderWriteStatus flac_write(const FLAC__StreamEncoder *enc,
                                                 const FLAC__byte buffer[], size_t bytes,
                                                 uint32_t samples, uint32_t frame, void *ud)
{
    return emit(ud, buffer, bytes) == 0 ? FLAC__STREAM_ENCODER_WRITE_STATUS_OK
                                        : FLAC__STREAM_ENCODER_WRITE_STATUS_FATAL_ERROR;
}

/* ---- sizes and headers ---- */

static int wav_is_float(mg_level l)
{
    return l == MG_LEVEL_OFF;
}

/* Bytes of audio data in a WAV of p, or 0 when it does not fit WAV's 32-bit
 * sizes (the answer for a valid zero-length stream is 0 too: callers check
 * frames). */
static uint64_t wav_data_bytes(const mg_audio_stream_params *p)
{
    uint64_t per_frame = (uint64_t)p->channels * (wav_is_float(p->level) ? 4 : 2);
    uint64_t header = wav_is_float(p->level) ? WAV_FLOAT_HEADER : WAV_PCM_HEADER;
    if ((uint64_t)p->frames > (UINT32_MAX - header) / per_frame)
        return UINT64_MAX;
    return (uint64_t)p->frames * per_frame;
}

size_t mg_audio_stream_size(const mg_audio_stream_params *p)
{
    if (!p || p->format != MG_AUDIO_WAV || p->channels < 1 || p->channels > 2 ||
        (unsigned)p->level > MG_LEVEL_OFF)
        return 0;
    uint64_t data = wav_data_bytes(p);
    if (data == UINT64_MAX)
        return 0;
    return (size_t)(data + (wav_is_float(p->level) ? WAV_FLOAT_HEADER : WAV_PCM_HEADER));
}

static uint8_t *put16(uint8_t *b, unsigned v)
{
    b[0] = (uint8_t)v;
    b[1] = (uint8_t)(v >> 8);
    return b + 2;
}

static uint8_t *put32(uint8_t *b, uint32_t v)
{
    b[0] = (uint8_t)v;
    b[1] = (uint8_t)(v >> 8);
    b[2] = (uint8_t)(v >> 16);
    b[3] = (uint8_t)(v >> 24);
    return b + 4;
}

static uint8_t *put_tag(uint8_t *b, const char tag[4])
{
    memcpy(b, tag, 4);
    return b + 4;
}

static int wav_header(mg_audio_stream *s)
{
    const mg_audio_stream_params *p = &s->p;
    const int fl = wav_is_float(p->level);
    const unsigned bytes = fl ? 4 : 2, align = bytes * (unsigned)p->channels;
    const uint32_t data = (uint32_t)wav_data_bytes(p);
    uint8_t h[WAV_FLOAT_HEADER], *b = h;
    b = put_tag(b, "RIFF");
    b = put32(b, (uint32_t)((fl ? WAV_FLOAT_HEADER : WAV_PCM_HEADER) - 8) + data);
    b = put_tag(b, "WAVE");
    b = put_tag(b, "fmt ");
    b = put32(b, fl ? 18 : 16);
    b = put16(b, fl ? 3 : 1);   /* WAVE_FORMAT_IEEE_FLOAT, WAVE_FORMAT_PCM */
    b = put16(b, (unsigned)p->channels);
    b = put32(b, (uint32_t)p->sample_rate);
    b = put32(b, (uint32_t)p->sample_rate * align);
    b = put16(b, align);
    b = put16(b, 8 * bytes);
    if (fl) {
        b = put16(b, 0);        /* cbSize */
        b = put_tag(b, "fact");
        b = put32(b, 4);
        b = put32(b, (uint32_t)p->frames);
    }
    b = put_tag(b, "data");
    b = put32(b, data);
    return emit(s, h, (size_t)(b - h));
}

/* ---- the codecs ---- */

/* libsndfile's float -> 16-bit rule (scale by 32768, saturate, round to
 * nearest), kept so the WAV and FLAC samples stay what they were. */
static int32_t to_pcm16(float v)
{
    float x = v * 32768.0f;
    if (!(x < 32767.0f))
        return isnan(x) ? 0 : 32767;
    if (x <= -32768.0f)
        return -32768;
    return (int32_t)lrintf(x);
}

static int is_opus_rate(int rate)
{
    return rate == 8000 || rate == 12000 || rate == 16000 || rate == 24000 || rate == 48000;
}

/* MPEG-1/2/2.5 Layer III rates. Checked here rather than left to libsndfile:
 * 1.2.0 leaks the LAME encoder when it rejects a rate. */
static int is_mp3_rate(int rate)
{
    return rate == 8000 || rate == 11025 || rate == 12000 || rate == 16000 || rate == 22050 ||
           rate == 24000 || rate == 32000 || rate == 44100 || rate == 48000;
}

static mg_code stopped_or(mg_audio_stream *s, mg_error *err, mg_code code, const char *what,
                          const char *why)
{
    const char *name = mg_audio_format_name(s->p.format);
    if (s->stopped)
        return mg_fail(err, MG_ERR_CANCELLED, "stream %s: the receiver stopped the stream", name);
    return mg_fail(err, code, "stream %s: %s: %s", name, what, why);
}

static mg_code codec_open(mg_audio_stream *s, mg_error *err)
{
    const mg_audio_stream_params *p = &s->p;
    switch (p->format) {
    case MG_AUDIO_WAV:
        return wav_header(s) == 0 ? MG_OK : stopped_or(s, err, MG_ERR_IO, "header", "");
    case MG_AUDIO_FLAC: {
        s->flac = FLAC__stream_encoder_new();
        if (!s->flac)
            return mg_fail(err, MG_ERR_NOMEM, "stream flac: out of memory");
        FLAC__bool ok = FLAC__stream_encoder_set_channels(s->flac, (uint32_t)p->channels) &&
                        FLAC__stream_encoder_set_bits_per_sample(s->flac, 16) &&
                        FLAC__stream_encoder_set_sample_rate(s->flac, (uint32_t)p->sample_rate) &&
                        FLAC__stream_encoder_set_compression_level(s->flac, FLAC_LEVEL) &&
                        /* STREAMINFO goes out first and is never patched: it
                         * states the exact length now */
                        FLAC__stream_encoder_set_total_samples_estimate(s->flac, p->frames);
        if (!ok)
            return mg_fail(err, MG_ERR_INVALID, "stream flac: libFLAC refused the parameters");
        /* no seek and tell callbacks: libFLAC then never rewrites what it sent */
        FLAC__StreamEncoderInitStatus st =
            FLAC__stream_encoder_init_stream(s->flac, flac_write, NULL, NULL, NULL, s);
        if (st != FLAC__STREAM_ENCODER_INIT_STATUS_OK)
            return stopped_or(s, err, MG_ERR_IO, "libFLAC",
                              FLAC__StreamEncoderInitStatusString[st]);
        return MG_OK;
    }
    case MG_AUDIO_MP3: {
        s->lame = lame_init();
        if (!s->lame)
            return mg_fail(err, MG_ERR_NOMEM, "stream mp3: out of memory");
        /* Constant bit rate: without the Xing/LAME info frame (which only a
         * writer that seeks back can fill) a VBR stream's duration is
         * guessed wrong by players and decoders; a CBR one's follows from
         * its size. 96 kbps mono at the MPEG-1 rates (less below), 5/3 of it
         * for joint stereo. */
        int mono_kbps = s->codec_rate >= 32000 ? 96 : s->codec_rate >= 16000 ? 64 : 32;
        int kbps = p->channels == 1 ? mono_kbps : mono_kbps * 5 / 3;
        /* no ID3 tags: nothing to say, and a v1 tag would trail the audio */
        lame_set_write_id3tag_automatic(s->lame, 0);
        int ok = lame_set_in_samplerate(s->lame, s->codec_rate) == 0 &&
                 lame_set_out_samplerate(s->lame, s->codec_rate) == 0 &&
                 lame_set_num_channels(s->lame, p->channels) == 0 &&
                 lame_set_mode(s->lame, p->channels == 1 ? MONO : JOINT_STEREO) == 0 &&
                 lame_set_VBR(s->lame, vbr_off) == 0 &&
                 lame_set_brate(s->lame, kbps) == 0 &&
                 lame_set_bWriteVbrTag(s->lame, 0) == 0 && lame_init_params(s->lame) >= 0;
        if (!ok)
            return mg_fail(err, MG_ERR_UNSUPPORTED, "stream mp3 at %d Hz: LAME refused the "
                           "parameters", s->codec_rate);
        /* LAME's bound on what one call can emit: 1.25 bytes a sample + 7200 */
        s->pcm_cap = BLOCK_FRAMES * 5 / 4 + 7200;
        s->pcm = malloc(s->pcm_cap);
        if (!s->pcm)
            return mg_fail(err, MG_ERR_NOMEM, "stream mp3: out of memory");
        return MG_OK;
    }
    case MG_AUDIO_OGG: {
        mg_code rc = mg_ogg_opus_open(&s->ogg, s->codec_rate, p->channels, emit_cb, s, err);
        return rc == MG_ERR_CANCELLED ? stopped_or(s, err, rc, "", "") : rc;
    }
    }
    return mg_fail(err, MG_ERR_INVALID, "stream: bad audio format %d", (int)p->format);
}

/* Gives the codec frames x[0..k), k <= conv_frames. */
static mg_code codec_chunk(mg_audio_stream *s, const float *x, size_t k, mg_error *err)
{
    const size_t C = (size_t)s->p.channels;
    switch (s->p.format) {
    case MG_AUDIO_WAV: {
        uint8_t *b = s->pcm;
        for (size_t i = 0; i < k * C; i++) {
            if (wav_is_float(s->p.level)) {
                uint32_t u;
                memcpy(&u, &x[i], sizeof u);
                b = put32(b, u);
            } else {
                b = put16(b, (unsigned)(uint16_t)to_pcm16(x[i]));
            }
        }
        return emit(s, s->pcm, (size_t)(b - s->pcm)) == 0 ? MG_OK
                                                           : stopped_or(s, err, MG_ERR_IO, "", "");
    }
    case MG_AUDIO_FLAC:
        for (size_t i = 0; i < k * C; i++)
            s->flac_pcm[i] = to_pcm16(x[i]);
        if (!FLAC__stream_encoder_process_interleaved(s->flac, s->flac_pcm, (uint32_t)k))
            return stopped_or(s, err, MG_ERR_IO, "libFLAC",
                              FLAC__stream_encoder_get_resolved_state_string(s->flac));
        return MG_OK;
    case MG_AUDIO_MP3: {
        int got = C == 1 ? lame_encode_buffer_ieee_float(s->lame, x, x, (int)k, s->pcm,
                                                         (int)s->pcm_cap)
                         : lame_encode_buffer_interleaved_ieee_float(s->lame, x, (int)k, s->pcm,
                                                                     (int)s->pcm_cap);
        if (got < 0)
            return mg_fail(err, MG_ERR_IO, "stream mp3: LAME error %d", got);
        return emit(s, s->pcm, (size_t)got) == 0 ? MG_OK : stopped_or(s, err, MG_ERR_IO, "", "");
    }
    case MG_AUDIO_OGG: {
        mg_code rc = mg_ogg_opus_write(s->ogg, x, k, err);
        return rc == MG_ERR_CANCELLED ? stopped_or(s, err, rc, "", "") : rc;
    }
    }
    return MG_OK;
}

/* Gives the codec frames x[0..n), in pieces its buffers hold. */
static mg_code codec_write(mg_audio_stream *s, const float *x, size_t n, mg_error *err)
{
    s->codec_frames += n;
    while (n) {
        size_t k = n < s->conv_frames ? n : s->conv_frames;
        mg_code rc = codec_chunk(s, x, k, err);
        if (rc != MG_OK)
            return rc;
        x += k * (size_t)s->p.channels;
        n -= k;
    }
    return MG_OK;
}

static mg_code codec_finish(mg_audio_stream *s, mg_error *err)
{
    switch (s->p.format) {
    case MG_AUDIO_WAV:
        return MG_OK;
    case MG_AUDIO_FLAC: {
        FLAC__bool ok = FLAC__stream_encoder_finish(s->flac);
        if (!ok)
            return stopped_or(s, err, MG_ERR_IO, "libFLAC",
                              FLAC__stream_encoder_get_resolved_state_string(s->flac));
        return MG_OK;
    }
    case MG_AUDIO_MP3:
    case MG_AUDIO_OGG: {
        if (s->codec_frames == 0) {
            /* Lossy streams with no audio packet at all are rejected by
             * decoders (libsndfile's included); one frame of silence is the
             * nearest valid "empty" file. */
            static const float silence[2] = { 0.0f, 0.0f };
            mg_code rc = codec_write(s, silence, 1, err);
            if (rc != MG_OK)
                return rc;
        }
        if (s->p.format == MG_AUDIO_MP3) {
            int got = lame_encode_flush(s->lame, s->pcm, (int)s->pcm_cap);
            if (got < 0)
                return mg_fail(err, MG_ERR_IO, "stream mp3: LAME error %d", got);
            if (emit(s, s->pcm, (size_t)got) != 0)
                return stopped_or(s, err, MG_ERR_IO, "", "");
            return MG_OK;
        }
        mg_code rc = mg_ogg_opus_finish(s->ogg, err);
        return rc == MG_ERR_CANCELLED ? stopped_or(s, err, rc, "", "") : rc;
    }
    }
    return MG_OK;
}

/* ---- the pipeline: level stage -> resampler -> codec ---- */

static mg_code to_codec(mg_audio_stream *s, const float *x, size_t n, mg_error *err)
{
    if (!s->resampler)
        return codec_write(s, x, n, err);
    const float *y = NULL;
    size_t m = 0;
    mg_code rc = mg_resampler_process(s->resampler, x, n, &y, &m, err);
    return rc != MG_OK ? rc : codec_write(s, y, m, err);
}

static mg_code run_block(mg_audio_stream *s, const float *x, size_t n, mg_error *err)
{
    size_t k = mg_level_stage_process(s->level, x, n, s->leveled);
    return to_codec(s, s->leveled, k, err);
}

mg_code mg_audio_stream_open(mg_audio_stream **out, const mg_audio_stream_params *p,
                             mg_audio_sink_fn sink, void *ud, mg_error *err)
{
    if (!out || !p || !sink)
        return mg_fail(err, MG_ERR_INVALID, "stream: NULL argument");
    *out = NULL;
    if ((unsigned)p->format > MG_AUDIO_MP3)
        return mg_fail(err, MG_ERR_INVALID, "stream: bad audio format %d", (int)p->format);
    const char *name = mg_audio_format_name(p->format);
    if ((unsigned)p->level > MG_LEVEL_OFF)
        return mg_fail_field(err, MG_ERR_INVALID, "level", "level: bad value %d", (int)p->level);
    if (p->sample_rate <= 0 || p->sample_rate > MAX_RATE)
        return mg_fail(err, MG_ERR_INVALID, "stream %s: bad sample rate %d", name,
                       p->sample_rate);
    if (p->channels < 1 || p->channels > 2)
        return mg_fail(err, MG_ERR_INVALID, "stream %s: %d channels (1 or 2)", name,
                       p->channels);
    if ((uint64_t)p->frames > (uint64_t)INT64_MAX / 2)
        return mg_fail(err, MG_ERR_INVALID, "stream %s: %zu frames is too many", name,
                       p->frames);
    if (p->format == MG_AUDIO_WAV && wav_data_bytes(p) == UINT64_MAX)
        return mg_fail(err, MG_ERR_INVALID, "stream wav: %zu frames do not fit a WAV file",
                       p->frames);
    if (p->format == MG_AUDIO_FLAC && p->level == MG_LEVEL_OFF)
        return mg_fail_field(err, MG_ERR_INVALID, "level",
                             "level: off keeps samples beyond full scale, which 16-bit FLAC "
                             "cannot hold (use limit or clip, or WAV for float samples)");

    mg_audio_stream *s = calloc(1, sizeof *s);
    if (!s)
        return mg_fail(err, MG_ERR_NOMEM, "stream %s: out of memory", name);
    s->p = *p;
    s->sink = sink;
    s->ud = ud;
    s->codec_rate = p->sample_rate;
    if ((p->format == MG_AUDIO_OGG && !is_opus_rate(p->sample_rate)) ||
        (p->format == MG_AUDIO_MP3 && !is_mp3_rate(p->sample_rate)))
        s->codec_rate = RESAMPLE_RATE;

    const size_t C = (size_t)p->channels;
    mg_code rc = mg_level_stage_open(&s->level, p->level, p->sample_rate, p->channels, err);
    if (rc != MG_OK)
        goto fail;
    size_t delay = mg_level_stage_delay(s->level);
    size_t leveled = delay > BLOCK_FRAMES ? delay : BLOCK_FRAMES;
    s->block = malloc(BLOCK_FRAMES * C * sizeof *s->block);
    s->leveled = malloc(leveled * C * sizeof *s->leveled);
    s->conv_frames = BLOCK_FRAMES;
    if (p->format == MG_AUDIO_WAV)
        s->pcm = malloc(BLOCK_FRAMES * C * 4);
    if (p->format == MG_AUDIO_FLAC)
        s->flac_pcm = malloc(BLOCK_FRAMES * C * sizeof *s->flac_pcm);
    if (!s->block || !s->leveled || (p->format == MG_AUDIO_WAV && !s->pcm) ||
        (p->format == MG_AUDIO_FLAC && !s->flac_pcm)) {
        rc = mg_fail(err, MG_ERR_NOMEM, "stream %s: out of memory", name);
        goto fail;
    }
    if (s->codec_rate != p->sample_rate) {
        rc = mg_resampler_open(&s->resampler, p->sample_rate, s->codec_rate, p->channels, err);
        if (rc != MG_OK)
            goto fail;
    }
    rc = codec_open(s, err);
    if (rc != MG_OK)
        goto fail;
    *out = s;
    return MG_OK;

fail:
    mg_audio_stream_free(s);
    return rc;
}

static mg_code check_usable(mg_audio_stream *s, mg_error *err)
{
    if (s->failed)
        return mg_fail(err, MG_ERR_INVALID, "stream %s: used after a failure",
                       mg_audio_format_name(s->p.format));
    if (s->finished)
        return mg_fail(err, MG_ERR_INVALID, "stream %s: used after finish",
                       mg_audio_format_name(s->p.format));
    return MG_OK;
}

mg_code mg_audio_stream_write(mg_audio_stream *s, const float *samples, size_t frames,
                              mg_error *err)
{
    if (!s || (frames && !samples))
        return mg_fail(err, MG_ERR_INVALID, "stream: NULL argument");
    mg_code rc = check_usable(s, err);
    if (rc != MG_OK)
        return rc;
    if (frames > s->p.frames - s->written) {
        s->failed = 1;
        return mg_fail(err, MG_ERR_INVALID, "stream %s: %zu frames written, more than the %zu "
                       "announced", mg_audio_format_name(s->p.format), s->written + frames,
                       s->p.frames);
    }
    const size_t C = (size_t)s->p.channels;
    while (frames) {
        size_t k = BLOCK_FRAMES - s->fill;
        if (k > frames)
            k = frames;
        memcpy(s->block + s->fill * C, samples, k * C * sizeof *samples);
        s->fill += k;
        s->written += k;
        samples += k * C;
        frames -= k;
        if (s->fill == BLOCK_FRAMES) {
            s->fill = 0;
            rc = run_block(s, s->block, BLOCK_FRAMES, err);
            if (rc != MG_OK) {
                s->failed = 1;
                return rc;
            }
        }
    }
    return MG_OK;
}

mg_code mg_audio_stream_finish(mg_audio_stream *s, mg_error *err)
{
    if (!s)
        return mg_fail(err, MG_ERR_INVALID, "stream: NULL argument");
    mg_code rc = check_usable(s, err);
    if (rc != MG_OK)
        return rc;
    s->failed = 1;   /* until everything below succeeds */
    if (s->written != s->p.frames)
        return mg_fail(err, MG_ERR_INVALID, "stream %s: %zu frames written, %zu announced",
                       mg_audio_format_name(s->p.format), s->written, s->p.frames);
    if (s->fill && (rc = run_block(s, s->block, s->fill, err)) != MG_OK)
        return rc;
    s->fill = 0;
    size_t k = mg_level_stage_flush(s->level, s->leveled);
    if ((rc = to_codec(s, s->leveled, k, err)) != MG_OK)
        return rc;
    if (s->resampler) {
        for (;;) {
            const float *y = NULL;
            size_t m = 0;
            if ((rc = mg_resampler_flush(s->resampler, &y, &m, err)) != MG_OK)
                return rc;
            if (m == 0)
                break;
            if ((rc = codec_write(s, y, m, err)) != MG_OK)
                return rc;
        }
    }
    if ((rc = codec_finish(s, err)) != MG_OK)
        return rc;
    s->failed = 0;
    s->finished = 1;
    return MG_OK;
}

void mg_audio_stream_free(mg_audio_stream *s)
{
    if (!s)
        return;
    if (s->flac) {
        /* finishing an unfinished encoder would write through the sink: stop
         * it first so nothing more goes out */
        s->stopped = 1;
        FLAC__stream_encoder_delete(s->flac);
    }
    mg_ogg_opus_free(s->ogg);
    if (s->lame)
        lame_close(s->lame);
    mg_resampler_free(s->resampler);
    mg_level_stage_free(s->level);
    free(s->block);
    free(s->leveled);
    free(s->pcm);
    free(s->flac_pcm);
    free(s);
}
