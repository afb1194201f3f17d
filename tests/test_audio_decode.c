/* Decoding users' audio (io/audio_decode.h) and the audio_prompt field
 * (service/audio_prompt.h): every container at several rates, mono and
 * stereo, to the expected length and close to the source; the limits; bad
 * input of every kind, each an MG_ERR_INVALID naming audio_prompt. */
#include <lame/lame.h>
#include <math.h>
#include <sndfile.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "io/audio.h"
#include "io/audio_decode.h"
#include "io/resample.h"
#include "service/audio_prompt.h"
#include "service/base64.h"
#include "sndfile_encode.h"

#define RATE  32000
#define FIELD "audio_prompt"

/* The test signal: sines of 440 Hz (left) and 660 Hz (right) at half scale. */
static float tone(int channel, size_t i, int rate)
{
    return (float)(0.5 * sin(2.0 * M_PI * (channel ? 660.0 : 440.0) * (double)i / rate));
}

static float *make_tone(size_t frames, int channels, int rate)
{
    float *x = malloc(frames * (size_t)channels * sizeof *x);
    for (size_t i = 0; x && i < frames; i++)
        for (int c = 0; c < channels; c++)
            x[i * (size_t)channels + (size_t)c] = tone(c, i, rate);
    return x;
}

/* libsndfile's own reading of a file (through a temporary file, not the
 * memory reader under test): interleaved floats, *frames of them. */
static float *sf_decode(const uint8_t *bytes, size_t len, int channels, size_t *frames)
{
    FILE *tmp = tmpfile();
    if (!tmp)
        return NULL;
    float *out = NULL;
    SF_INFO info;
    memset(&info, 0, sizeof info);
    SNDFILE *sf = fwrite(bytes, 1, len, tmp) == len && fflush(tmp) == 0 &&
                  fseek(tmp, 0, SEEK_SET) == 0 ? sf_open_fd(fileno(tmp), SFM_READ, &info, 0)
                                              : NULL;
    if (sf && info.channels == channels && info.frames > 0 &&
        (out = malloc((size_t)info.frames * (size_t)channels * sizeof *out)))
        *frames = (size_t)sf_readf_float(sf, out, info.frames);
    if (sf)
        sf_close(sf);
    fclose(tmp);
    return out;
}

/* Largest |a - b| over frames [from, to) of two interleaved buffers. */
static double max_diff(const float *a, const float *b, size_t from, size_t to, int channels)
{
    double m = 0;
    for (size_t i = from * (size_t)channels; i < to * (size_t)channels; i++)
        m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

/* Every sample of a lossy decode against the tone at 32 kHz, allowing for a
 * codec delay of up to max_lag frames: the best lag's largest error. */
static double lossy_error(const mg_decoded_audio *a, size_t max_lag)
{
    double best = INFINITY;
    size_t from = 4000, to = a->frames > 4000 + max_lag ? a->frames - 4000 - max_lag : 0;
    for (size_t lag = 0; lag <= max_lag && to > from; lag++) {
        double m = 0;
        for (size_t i = from; i < to && m < best; i++)
            for (int c = 0; c < a->channels; c++)
                m = fmax(m, fabs(a->samples[(i + lag) * (size_t)a->channels + (size_t)c] -
                                 tone(c, i, RATE)));
        best = fmin(best, m);
    }
    return best;
}

typedef enum { ENC_WAV, ENC_FLAC, ENC_OPUS, ENC_VORBIS, ENC_MP3 } encoding;
static const char *const enc_name[] = { "wav", "flac", "ogg/opus", "ogg/vorbis", "mp3" };

static uint8_t *encode(encoding enc, const float *x, size_t frames, int channels, int rate,
                       size_t *len)
{
    static const mg_audio_format fmt[] = { MG_AUDIO_WAV, MG_AUDIO_FLAC, MG_AUDIO_OGG, 0,
                                           MG_AUDIO_MP3 };
    static const int sf_fmt[] = {
        SF_FORMAT_WAV | SF_FORMAT_PCM_16, SF_FORMAT_FLAC | SF_FORMAT_PCM_16,
        SF_FORMAT_OGG | SF_FORMAT_OPUS, SF_FORMAT_OGG | SF_FORMAT_VORBIS,
        SF_FORMAT_MPEG | SF_FORMAT_MPEG_LAYER_III,
    };
    if (channels == 1 && enc != ENC_VORBIS) {  /* the project's own encoder */
        uint8_t *out = NULL;
        mg_error e;
        return mg_audio_encode(x, frames, rate, fmt[enc], &out, len, &e) == MG_OK ? out : NULL;
    }
    return sf_encode(x, frames, channels, rate, sf_fmt[enc], len);
}

/* Each container, rate and channel count: the length, the channels, and the
 * samples (exact to 16-bit rounding for WAV and FLAC, whose resampled form
 * is compared with mg_resample of the source; codec tolerance for lossy). */
static void test_formats(void)
{
    static const int rates[] = { 32000, 44100, 48000 };
    for (int enc = ENC_WAV; enc <= ENC_MP3; enc++)
        for (size_t ri = 0; ri < 3; ri++)
            for (int ch = 1; ch <= 2; ch++) {
                int rate = rates[ri];
                if (enc == ENC_OPUS && rate != 48000 && ch == 2)
                    continue;  /* Opus runs at 48 kHz; libsndfile does not resample */
                size_t frames = (size_t)rate;  /* 1 s */
                float *x = make_tone(frames, ch, rate);
                size_t len = 0;
                uint8_t *file = x ? encode(enc, x, frames, ch, rate, &len) : NULL;
                CHECK(file != NULL, "%s %d Hz %d ch: encoding failed", enc_name[enc], rate, ch);
                mg_decoded_audio a;
                mg_error e;
                mg_code rc = file ? mg_audio_decode(file, len, RATE, FIELD, &a, &e) : MG_ERR_IO;
                CHECK(rc == MG_OK, "%s %d Hz %d ch: %s", enc_name[enc], rate, ch,
                      rc == MG_OK ? "" : e.msg);
                if (rc != MG_OK) {
                    free(x);
                    free(file);
                    continue;
                }
                /* MP3 without a LAME/Xing tag (the project's streaming encoder
                 * writes none: it cannot seek back) decodes with the codec's
                 * delay and last-frame padding, under two 1152-sample frames
                 * at the source rate */
                size_t slack = enc == ENC_MP3 ? (size_t)2 * 1152 * RATE / rate + 1 : 0;
                CHECK(a.frames >= RATE && a.frames <= RATE + slack && a.channels == ch &&
                          a.rate == RATE,
                      "%s %d Hz %d ch: %zu frames (%d..%zu), %d channels", enc_name[enc], rate,
                      ch, a.frames, RATE, RATE + slack, a.channels);
                if (enc == ENC_WAV || enc == ENC_FLAC) {
                    /* exactly libsndfile's reading, resampled channel by channel;
                     * within 16-bit rounding (times the filter's gain) of the source */
                    size_t got = 0;
                    float *raw = sf_decode(file, len, ch, &got);
                    float *want = malloc(RATE * (size_t)ch * sizeof *want);
                    float *near = malloc(RATE * (size_t)ch * sizeof *near);
                    float *one = malloc(frames * sizeof *one);
                    int    made = raw && want && near && one && got == frames;
                    for (int c = 0; made && c < ch; c++)
                        for (int pass = 0; pass < 2; pass++) {
                            const float *src = pass ? x : raw;
                            for (size_t i = 0; i < frames; i++)
                                one[i] = src[i * (size_t)ch + (size_t)c];
                            float *y = NULL, *dst = pass ? near : want;
                            size_t n = 0;
                            made = mg_resample(one, frames, rate, RATE, &y, &n, &e) == MG_OK &&
                                   n == RATE;
                            for (size_t i = 0; made && i < n; i++)
                                dst[i * (size_t)ch + (size_t)c] = y[i];
                            free(y);
                        }
                    CHECK(made, "%s %d Hz %d ch: no reference", enc_name[enc], rate, ch);
                    double d = made ? max_diff(a.samples, want, 0, RATE, ch) : 1;
                    CHECK(d == 0, "%s %d Hz %d ch: differs from libsndfile's reading by %g",
                          enc_name[enc], rate, ch, d);
                    d = made ? max_diff(a.samples, near, 0, RATE, ch) : 1;
                    CHECK(d < 1e-4, "%s %d Hz %d ch: differs from the source by %g",
                          enc_name[enc], rate, ch, d);
                    free(raw);
                    free(want);
                    free(near);
                    free(one);
                } else {
                    /* lossy: every sample within 5% of full scale of the tone */
                    double d = lossy_error(&a, 2048);
                    CHECK(d < 0.05, "%s %d Hz %d ch: differs from the tone by %g",
                          enc_name[enc], rate, ch, d);
                }
                mg_decoded_audio_free(&a);
                free(x);
                free(file);
            }
}

/* Stereo to mono is the mean of the channels. */
static void test_downmix(void)
{
    float *x = make_tone(RATE / 2, 2, RATE);
    size_t len = 0;
    uint8_t *file = x ? sf_encode(x, RATE / 2, 2, RATE, SF_FORMAT_WAV | SF_FORMAT_FLOAT, &len)
                      : NULL;
    mg_decoded_audio a;
    mg_error e;
    mg_code rc = file ? mg_audio_decode(file, len, RATE, FIELD, &a, &e) : MG_ERR_IO;
    CHECK(rc == MG_OK && a.channels == 2, "float stereo wav: %s", rc ? e.msg : "");
    if (rc == MG_OK) {
        CHECK(max_diff(a.samples, x, 0, RATE / 2, 2) == 0, "float WAV at the model rate is exact");
        mg_audio_downmix(&a);
        double m = 0;
        for (size_t i = 0; i < a.frames; i++)
            m = fmax(m, fabs(a.samples[i] - (x[2 * i] + x[2 * i + 1]) / 2));
        CHECK(a.channels == 1 && a.frames == RATE / 2 && m < 1e-7, "downmix: %g", m);
        mg_audio_downmix(&a);  /* mono stays mono */
        CHECK(a.channels == 1, "downmix of mono");
        mg_decoded_audio_free(&a);
        CHECK(!a.samples && !a.frames, "free zeroes");
        mg_decoded_audio_free(&a);
    }
    free(file);
    free(x);
}

static void expect_invalid(const uint8_t *bytes, size_t len, const char *what, const char *msg)
{
    mg_decoded_audio a;
    mg_error e = { 0 };
    mg_code rc = mg_audio_decode(bytes, len, RATE, FIELD, &a, &e);
    CHECK(rc == MG_ERR_INVALID && strcmp(e.field, FIELD) == 0 && strstr(e.msg, msg),
          "%s: code %d field \"%s\" message \"%s\" (want \"%s\")", what, rc, e.field, e.msg, msg);
    CHECK(!a.samples && !a.frames, "%s: left something", what);
    if (rc == MG_OK)
        mg_decoded_audio_free(&a);
}

static void test_bad_audio(void)
{
    static const uint8_t garbage[] = "this is not an audio file at all, just text";
    expect_invalid(garbage, sizeof garbage, "text", "not an audio file");
    expect_invalid(garbage, 0, "empty", "empty");
    static const uint8_t png[] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13 };
    expect_invalid(png, sizeof png, "png", "not an audio file");
    static const uint8_t avi[] = { 'R', 'I', 'F', 'F', 4, 0, 0, 0, 'A', 'V', 'I', ' ' };
    expect_invalid(avi, sizeof avi, "avi", "not an audio file");
    static const uint8_t ogg_junk[] = { 'O', 'g', 'g', 'S', 0, 2, 1, 2, 3, 4, 5, 6, 7, 8 };
    expect_invalid(ogg_junk, sizeof ogg_junk, "Ogg junk", "damaged Ogg");
    static const uint8_t id3_only[] = { 'I', 'D', '3', 4, 0, 0, 0, 0, 0, 2, 0, 0 };
    expect_invalid(id3_only, sizeof id3_only, "ID3 tag alone", "not an audio file");

    /* truncated inside the header; a zero-frame file; NaN samples */
    float *x = make_tone(RATE, 1, RATE);
    uint8_t *wav = NULL, *file = NULL;
    size_t wav_len = 0, len = 0;
    mg_error e;
    CHECK(x && mg_audio_encode(x, RATE, RATE, MG_AUDIO_WAV, &wav, &wav_len, &e) == MG_OK, "wav");
    if (wav) {
        expect_invalid(wav, 30, "WAV cut in its header", "damaged WAV");
        /* cut in the data: the samples present decode (what a truncated download holds) */
        mg_decoded_audio a;
        CHECK(mg_audio_decode(wav, 44 + 2 * 1000 + 1, RATE, FIELD, &a, &e) == MG_OK &&
              a.frames == 1000, "WAV cut in its data: %s", e.msg);
        mg_decoded_audio_free(&a);
    }
    free(wav);
    CHECK(mg_audio_encode(x, 0, RATE, MG_AUDIO_WAV, &wav, &wav_len, &e) == MG_OK, "empty wav");
    expect_invalid(wav, wav_len, "WAV of no samples", "holds no audio");
    free(wav);
    if (x)
        x[100] = NAN;
    file = x ? sf_encode(x, RATE, 1, RATE, SF_FORMAT_WAV | SF_FORMAT_FLOAT, &len) : NULL;
    expect_invalid(file, len, "NaN", "non-finite");
    free(file);
    /* past the level bound (huge values would overflow the resampler's sums:
     * a fuzzer's find); at the bound, accepted */
    if (x)
        x[100] = 3e38f;
    file = x ? sf_encode(x, RATE, 1, 44100, SF_FORMAT_WAV | SF_FORMAT_FLOAT, &len) : NULL;
    expect_invalid(file, len, "3e38", "far beyond full scale");
    free(file);
    if (x)
        x[100] = -(float)MG_AUDIO_DECODE_MAX_LEVEL;
    file = x ? sf_encode(x, RATE, 1, 44100, SF_FORMAT_WAV | SF_FORMAT_FLOAT, &len) : NULL;
    mg_decoded_audio loud;
    CHECK(file && mg_audio_decode(file, len, RATE, FIELD, &loud, &e) == MG_OK,
          "a sample at the level bound: %s", e.msg);
    mg_decoded_audio_free(&loud);
    free(file);
    free(x);

    /* three channels are refused */
    float *x3 = calloc(3 * 1000, sizeof *x3);
    file = x3 ? sf_encode(x3, 1000, 3, RATE, SF_FORMAT_WAV | SF_FORMAT_PCM_16, &len) : NULL;
    expect_invalid(file, len, "3 channels", "3 channels");
    free(file);
    free(x3);

    /* 61 s at 8 kHz: too long; 60 s at 8 kHz: accepted */
    size_t n61 = 61 * 8000;
    float *silence = calloc(n61, sizeof *silence);
    file = silence ? sf_encode(silence, n61, 1, 8000, SF_FORMAT_WAV | SF_FORMAT_PCM_U8, &len)
                   : NULL;
    expect_invalid(file, len, "61 s", "too long");
    free(file);
    file = silence ? sf_encode(silence, 60 * 8000, 1, 8000, SF_FORMAT_WAV | SF_FORMAT_PCM_U8,
                               &len) : NULL;
    mg_decoded_audio a;
    CHECK(file && mg_audio_decode(file, len, RATE, FIELD, &a, &e) == MG_OK &&
          a.frames == 60 * RATE, "60 s is the limit: %s", e.msg);
    mg_decoded_audio_free(&a);
    free(file);
    free(silence);

    /* a file past the byte limit is refused before libsndfile sees it */
    uint8_t *huge = calloc(MG_AUDIO_DECODE_MAX_BYTES + 1, 1);
    if (huge) {
        memcpy(huge, "RIFF\xff\xff\xff\xffWAVE", 12);
        expect_invalid(huge, MG_AUDIO_DECODE_MAX_BYTES + 1, "huge", "too large");
    }
    free(huge);

    /* an odd rate (44101/32000 in lowest terms) converts too: libsoxr takes
     * any pair of rates; 4410 frames make ceil(4410 * 32000 / 44101) */
    float *y = make_tone(4410, 1, 44101);
    file = y ? sf_encode(y, 4410, 1, 44101, SF_FORMAT_WAV | SF_FORMAT_PCM_16, &len) : NULL;
    mg_decoded_audio odd;
    mg_error oe;
    mg_code orc = file ? mg_audio_decode(file, len, RATE, FIELD, &odd, &oe) : MG_ERR_IO;
    CHECK(orc == MG_OK && odd.frames == 3200 && odd.rate == RATE, "44101 Hz: %s, %zu frames",
          orc == MG_OK ? "decoded" : oe.msg, orc == MG_OK ? odd.frames : 0);
    if (orc == MG_OK)
        mg_decoded_audio_free(&odd);
    free(file);
    free(y);
}

/* libsndfile's own frame count for a file (its length as it opens, before
 * any decoding), -1 when it does not open. */
static long long sf_frames_up_front(const uint8_t *bytes, size_t len)
{
    FILE *tmp = tmpfile();
    if (!tmp)
        return -1;
    SF_INFO info;
    memset(&info, 0, sizeof info);
    SNDFILE *sf = fwrite(bytes, 1, len, tmp) == len && fflush(tmp) == 0 &&
                  fseek(tmp, 0, SEEK_SET) == 0 ? sf_open_fd(fileno(tmp), SFM_READ, &info, 0)
                                              : NULL;
    long long frames = sf ? (long long)info.frames : -1;
    if (sf)
        sf_close(sf);
    fclose(tmp);
    return frames;
}

/* A VBR MP3 without a Xing tag (what a streaming encoder writes), opening
 * with `quiet` frames of silence before noise: mpg123 estimates its length
 * from the first frame's low bitrate, several times too long. */
static uint8_t *vbr_mp3_untagged(size_t frames, size_t quiet, int rate, size_t *len)
{
    float *x = calloc(frames, sizeof *x);
    size_t cap = frames * 5 / 4 + 7200;
    uint8_t *out = malloc(cap);
    lame_t g = lame_init();
    int n = -1;
    if (x && out && g) {
        uint32_t seed = 1;
        for (size_t i = quiet; i < frames; i++) {
            seed = seed * 1664525u + 1013904223u;
            x[i] = (float)(1.6 * ((double)(seed >> 8) / (1 << 24) - 0.5));
        }
        lame_set_in_samplerate(g, rate);
        lame_set_num_channels(g, 1);
        lame_set_mode(g, MONO);
        lame_set_VBR(g, vbr_default);
        lame_set_VBR_quality(g, 0);
        lame_set_bWriteVbrTag(g, 0);
        if (lame_init_params(g) == 0 &&
            (n = lame_encode_buffer_ieee_float(g, x, x, (int)frames, out, (int)cap)) >= 0) {
            int m = lame_encode_flush(g, out + n, (int)(cap - (size_t)n));
            n = m >= 0 ? n + m : -1;
        }
    }
    if (g)
        lame_close(g);
    free(x);
    if (n <= 0) {
        free(out);
        return NULL;
    }
    *len = (size_t)n;
    return out;
}

/* Past the 60 s limit: WAV, FLAC and Ogg are refused from the length their
 * headers give, before decoding (the message says the file's length, which
 * decoding up to the limit cannot know); an MP3's length before decoding is
 * an estimate, so an MP3 within the limit is accepted whatever the estimate
 * and one past it is refused when its decoding reaches the limit. */
static void test_length_limit(void)
{
    /* ten minutes of 8 kHz mono WAV: 9.6 MB, within the byte limit */
    size_t n600 = 600 * 8000;
    float *silence = calloc(n600, sizeof *silence);
    size_t len = 0;
    uint8_t *file = silence ? sf_encode(silence, n600, 1, 8000, SF_FORMAT_WAV | SF_FORMAT_PCM_16,
                                        &len) : NULL;
    CHECK(file && len <= MG_AUDIO_DECODE_MAX_BYTES, "a 10-minute WAV within the byte limit");
    expect_invalid(file, len, "10-minute WAV", "too long (the WAV file holds 600.0 s of audio");
    free(file);

    /* 61 s of FLAC, Ogg/Vorbis and Ogg/Opus (8 kHz: Opus takes no odd rate) */
    static const struct { int format; const char *msg; } over[] = {
        { SF_FORMAT_FLAC | SF_FORMAT_PCM_16, "too long (the FLAC file holds 61.0 s" },
        { SF_FORMAT_OGG | SF_FORMAT_VORBIS, "too long (the Ogg file holds 61.0 s" },
        { SF_FORMAT_OGG | SF_FORMAT_OPUS, "too long (the Ogg file holds 61.0 s" },
    };
    float *x = make_tone(61 * 8000, 1, 8000);
    for (size_t i = 0; i < sizeof over / sizeof over[0]; i++) {
        file = x ? sf_encode(x, 61 * 8000, 1, 8000, over[i].format, &len) : NULL;
        CHECK(file != NULL, "61 s, format %#x: encoding failed", over[i].format);
        expect_invalid(file, len, over[i].msg, over[i].msg);
        free(file);
    }

    /* a FLAC cut after its first 5 s whose header still says 61 s: refused
     * from the header (decoding would have found 5 s) */
    file = x ? sf_encode(x, 61 * 8000, 1, 8000, SF_FORMAT_FLAC | SF_FORMAT_PCM_16, &len) : NULL;
    if (file && len > 12)
        expect_invalid(file, len / 12, "FLAC cut short", "too long (the FLAC file holds 61.0 s");

    /* MP3 of 61 s: refused once its decoding passes the limit */
    free(file);
    file = x ? sf_encode(x, 61 * 8000, 1, 8000, SF_FORMAT_MPEG | SF_FORMAT_MPEG_LAYER_III, &len)
             : NULL;
    CHECK(file != NULL, "61 s MP3: encoding failed");
    expect_invalid(file, len, "61 s MP3", "too long (more than 60 s of audio)");
    free(file);
    free(x);

    /* 30 s of MP3 whose length estimate is past the limit: accepted, all of it */
    file = vbr_mp3_untagged(30 * RATE, RATE, RATE, &len);
    long long guess = file ? sf_frames_up_front(file, len) : -1;
    CHECK(guess > 60LL * RATE, "the untagged VBR MP3's estimate is past the limit (%lld frames "
          "for %d)", guess, 30 * RATE);
    mg_decoded_audio a;
    mg_error e;
    mg_code rc = file ? mg_audio_decode(file, len, RATE, FIELD, &a, &e) : MG_ERR_IO;
    CHECK(rc == MG_OK && a.frames >= (size_t)30 * RATE && a.frames <= (size_t)30 * RATE + 2 * 1152,
          "an untagged VBR MP3 of 30 s: %s, %zu frames", rc == MG_OK ? "decoded" : e.msg,
          rc == MG_OK ? a.frames : 0);
    if (rc == MG_OK)
        mg_decoded_audio_free(&a);
    free(file);
    free(silence);
}

static void test_sniff(void)
{
    static const struct { const char *bytes; size_t len; mg_audio_container want; } cases[] = {
        { "RIFF\0\0\0\0WAVEfmt ", 16, MG_CONTAINER_WAV },
        { "RF64\0\0\0\0WAVEds64", 16, MG_CONTAINER_WAV },
        { "RIFF\0\0\0\0AVI LIST", 16, MG_CONTAINER_NONE },
        { "fLaC\0\0\0\x22", 8, MG_CONTAINER_FLAC },
        { "OggS\0\x02", 6, MG_CONTAINER_OGG },
        { "\xff\xfb\x90\x64", 4, MG_CONTAINER_MP3 },       /* MPEG-1 layer III, 128 kbps */
        { "\xff\xfb\xf0\x64", 4, MG_CONTAINER_NONE },      /* bad bitrate index */
        { "\xff\xf9\x90\x64", 4, MG_CONTAINER_NONE },      /* reserved layer */
        { "ID3\x04\0\0\0\0\0\x02\0\0\xff\xfb\x90\x64", 16, MG_CONTAINER_MP3 },
        { "ID3\x04\0\0\0\0\0\0" "fLaC", 14, MG_CONTAINER_FLAC },
        { "ID3\x04\0\0\x7f\x7f\x7f\x7f", 10, MG_CONTAINER_NONE },  /* tag longer than the file */
        { "fLa", 3, MG_CONTAINER_NONE },
        { "", 0, MG_CONTAINER_NONE },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *b = malloc(cases[i].len + 1);  /* exact size: ASan sees overreads */
        if (b)
            memcpy(b, cases[i].bytes, cases[i].len);
        mg_audio_container c = b ? mg_audio_sniff(b, cases[i].len) : MG_CONTAINER_NONE;
        CHECK(c == cases[i].want, "sniff %zu: %s, want %s", i, mg_audio_container_name(c),
              mg_audio_container_name(cases[i].want));
        free(b);
    }
}

/* ---- the audio_prompt field ---- */

static mg_code prompt_parse(const char *s, size_t n, mg_decoded_audio *a, uint64_t *hash,
                            mg_error *e)
{
    char *b = malloc(n ? n : 1);  /* exact size, no terminator */
    if (!b)
        return MG_ERR_NOMEM;
    memcpy(b, s, n);
    memset(e, 0, sizeof *e);
    mg_code rc = mg_audio_prompt_parse(b, n, RATE, a, hash, e);
    free(b);
    return rc;
}

static void test_audio_prompt(void)
{
    float *x = make_tone(RATE / 4, 1, RATE);
    uint8_t *flac = NULL;
    size_t flac_len = 0;
    mg_error e;
    CHECK(x && mg_audio_encode(x, RATE / 4, RATE, MG_AUDIO_FLAC, &flac, &flac_len, &e) == MG_OK,
          "flac");
    char *url = NULL;
    size_t url_len = 0;
    CHECK(flac && mg_audio_data_url(flac, flac_len, MG_AUDIO_FLAC, &url, &url_len, &e) == MG_OK,
          "data url");
    if (!url) {
        free(x);
        free(flac);
        return;
    }
    const char *b64 = strchr(url, ',') + 1;
    size_t b64_len = url_len - (size_t)(b64 - url);
    mg_decoded_audio a;
    uint64_t h1 = 0, h2 = 0, h3 = 0;

    CHECK(prompt_parse(url, url_len, &a, &h1, &e) == MG_OK && a.frames == RATE / 4 &&
          a.channels == 1 && a.container == MG_CONTAINER_FLAC, "data URL: %s", e.msg);
    mg_decoded_audio_free(&a);
    CHECK(prompt_parse(b64, b64_len, &a, &h2, &e) == MG_OK && a.frames == RATE / 4,
          "bare base64: %s", e.msg);
    mg_decoded_audio_free(&a);
    CHECK(h1 != 0 && h1 == h2, "the hash is of the file, however it is given");

    /* line-wrapped (MIME style), unpadded, and with another media type */
    char *wrapped = malloc(b64_len + b64_len / 76 * 2 + 64);
    if (wrapped) {
        size_t k = 0;
        for (size_t i = 0; i < b64_len; i++) {
            wrapped[k++] = b64[i];
            if (i % 76 == 75)
                wrapped[k++] = '\r', wrapped[k++] = '\n';
        }
        while (k > 0 && wrapped[k - 1] == '=')
            k--;
        CHECK(prompt_parse(wrapped, k, &a, &h3, &e) == MG_OK && h3 == h1, "wrapped: %s", e.msg);
        mg_decoded_audio_free(&a);
        int m = snprintf(wrapped, 64, "DATA:Audio/X-Flac; name=a.flac;BASE64,");
        memcpy(wrapped + m, b64, b64_len);
        CHECK(prompt_parse(wrapped, (size_t)m + b64_len, &a, &h3, &e) == MG_OK, "media type "
              "parameters: %s", e.msg);
        mg_decoded_audio_free(&a);
        m = snprintf(wrapped, 64, "data:application/octet-stream;base64,");
        memcpy(wrapped + m, b64, b64_len);
        CHECK(prompt_parse(wrapped, (size_t)m + b64_len, &a, &h3, &e) == MG_OK,
              "octet-stream: %s", e.msg);
        mg_decoded_audio_free(&a);
    }
    free(wrapped);

    static const struct { const char *in, *msg; } bad[] = {
        { "", "empty" },
        { "  \n ", "empty" },
        { "data:audio/wav;base64,", "empty" },
        { "data:audio/wav;base64", "','" },
        { "data:audio/wav,UklGRg==", "must be base64" },
        { "data:;base64,UklGRg==", "not audio" },
        { "data:audio/;base64,UklGRg==", "not audio" },
        { "data:image/png;base64,iVBORw0KGgo=", "not audio" },
        { "data:text/plain;base64,aGVsbG8=", "not audio" },
        { "UklGR-==", "not valid base64" },
        { "UklGRg=A", "not valid base64" },
        { "U===", "not valid base64" },
        { "UklGR", "middle of a byte" },
        { "aGVsbG8gd29ybGQh", "not an audio file" },
        { "UklGRgAAAABXQVZF", "damaged WAV" },  /* "RIFF\0\0\0\0WAVE" */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t h = 1;
        mg_code rc = prompt_parse(bad[i].in, strlen(bad[i].in), &a, &h, &e);
        CHECK(rc == MG_ERR_INVALID && strcmp(e.field, FIELD) == 0 && strstr(e.msg, bad[i].msg) &&
              !a.samples && h == 0, "bad prompt %zu (%s): code %d \"%s\" (want \"%s\")", i,
              bad[i].in, rc, e.msg, bad[i].msg);
    }

    /* too large: judged from the base64's length, before decoding */
    size_t big = (MG_AUDIO_DECODE_MAX_BYTES / 3 + 2) * 4;
    char *huge = malloc(big);
    if (huge) {
        memset(huge, '!', big);  /* not even base64: the size check comes first */
        uint64_t h;
        mg_code rc = prompt_parse(huge, big, &a, &h, &e);
        CHECK(rc == MG_ERR_INVALID && strstr(e.msg, "too large"), "huge: %s", e.msg);
    }
    free(huge);
    free(url);
    free(flac);
    free(x);
}

/* base64 decoding round trips what mg_base64_encode writes, every length */
static void test_base64(void)
{
    uint8_t in[64], out[64 + 3];
    char enc[100];
    int bad = 0;
    for (size_t n = 0; n <= sizeof in; n++) {
        for (size_t i = 0; i < n; i++)
            in[i] = (uint8_t)(i * 37 + n);
        mg_base64_encode(in, n, enc);
        size_t got = 0, where = 0;
        if (mg_base64_decode(enc, strlen(enc), out, &got, &where) != 0 || got != n ||
            memcmp(in, out, n) != 0)
            bad++;
    }
    CHECK(bad == 0, "base64 round trip: %d lengths fail", bad);
    size_t got, where = 99;
    CHECK(mg_base64_decode("QUJD\nRA", 7, out, &got, &where) == 0 && got == 4 &&
          !memcmp(out, "ABCD", 4), "whitespace and no padding");
    CHECK(mg_base64_decode("QU#D", 4, out, &got, &where) == -1 && where == 2, "bad character at 2");
    CHECK(mg_base64_decode("QUJDR", 5, out, &got, &where) == -1 && where == 5, "ends mid-byte");
}

int main(void)
{
    test_sniff();
    test_base64();
    test_formats();
    test_downmix();
    test_bad_audio();
    test_length_limit();
    test_audio_prompt();
    return check_summary("audio_decode");
}
