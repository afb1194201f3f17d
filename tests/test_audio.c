/* Audio encoding (WAV/FLAC/Ogg-Opus/MP3 through libsndfile virtual I/O), the
 * resampler, base64 and data URLs. Encoded files are read back from memory. */
#include <math.h>
#include <sndfile.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/audio.h"
#include "io/audio_stream.h"
#include "service/base64.h"
#include "check.h"
#include "io/resample.h"

#define RATE 32000

/* ---- reading an encoded file back from memory ---- */

typedef struct {
    const uint8_t *p;
    size_t         len, pos;
} reader;

static sf_count_t rd_len(void *u) { return (sf_count_t)((reader *)u)->len; }
static sf_count_t rd_tell(void *u) { return (sf_count_t)((reader *)u)->pos; }
static sf_count_t rd_write(const void *p, sf_count_t n, void *u) { return 0; }

static sf_count_t rd_seek(sf_count_t off, int whence, void *u)
{
    reader *r = u;
    sf_count_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? (sf_count_t)r->pos
                                                                   : (sf_count_t)r->len;
    if (base + off < 0)
        return -1;
    r->pos = (size_t)(base + off);
    return (sf_count_t)r->pos;
}

static sf_count_t rd_read(void *p, sf_count_t n, void *u)
{
    reader *r = u;
    if (n <= 0 || r->pos >= r->len)
        return 0;
    size_t k = r->len - r->pos < (size_t)n ? r->len - r->pos : (size_t)n;
    memcpy(p, r->p + r->pos, k);
    r->pos += k;
    return (sf_count_t)k;
}

/* Decodes bytes to float samples; returns frame count or -1 (message printed). */
static long decode(const uint8_t *bytes, size_t len, SF_INFO *info, float **samples)
{
    reader r = { bytes, len, 0 };
    SF_VIRTUAL_IO vio = { rd_len, rd_seek, rd_read, rd_write, rd_tell };
    memset(info, 0, sizeof *info);
    *samples = NULL;
    SNDFILE *sf = sf_open_virtual(&vio, SFM_READ, info, &r);
    if (!sf) {
        printf("decode: %s\n", sf_strerror(NULL));
        return -1;
    }
    /* Frame counts of lossy streams are estimates; read until the end. */
    size_t cap = 4096, n = 0;
    float *buf = malloc(cap * sizeof *buf * (size_t)info->channels);
    for (;;) {
        if (!buf) {
            sf_close(sf);
            return -1;
        }
        if (n + 1024 > cap) {
            float *nb = realloc(buf, 2 * cap * sizeof *buf * (size_t)info->channels);
            if (!nb) {
                free(buf);
                sf_close(sf);
                return -1;
            }
            buf = nb;
            cap *= 2;
        }
        sf_count_t got = sf_readf_float(sf, buf + n * (size_t)info->channels, 1024);
        if (got <= 0)
            break;
        n += (size_t)got;
    }
    sf_close(sf);
    *samples = buf;
    return (long)n;
}

static void sine(float *x, size_t n, double rate, double freq, double amp)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(amp * sin(2 * M_PI * freq * (double)i / rate));
}

/* Amplitude of the freq component over x[from..to), phase independent. */
static double tone_amp(const float *x, size_t from, size_t to, double rate, double freq)
{
    double s = 0, c = 0;
    for (size_t i = from; i < to; i++) {
        double w = 2 * M_PI * freq * (double)i / rate;
        s += x[i] * sin(w);
        c += x[i] * cos(w);
    }
    return 2 * sqrt(s * s + c * c) / (double)(to - from);
}

/* ---- tests ---- */

static void test_base64(void)
{
    static const char *vec[][2] = {
        { "", "" },         { "f", "Zg==" },        { "fo", "Zm8=" },
        { "foo", "Zm9v" },  { "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" },
        { "foobar", "Zm9vYmFy" },
    };
    for (size_t i = 0; i < sizeof vec / sizeof vec[0]; i++) {
        size_t n = strlen(vec[i][0]);
        char out[32];
        memset(out, 'X', sizeof out);
        CHECK(mg_base64_len(n) == strlen(vec[i][1]), "base64 len(%zu)", n);
        mg_base64_encode((const uint8_t *)vec[i][0], n, out);
        CHECK(strcmp(out, vec[i][1]) == 0, "base64(\"%s\") = \"%s\", want \"%s\"", vec[i][0],
              out, vec[i][1]);
    }
    /* every byte value, both high-bit and the '+' '/' end of the alphabet */
    const uint8_t hi[] = { 0xfb, 0xff, 0xbf, 0x00 };
    char out[16];
    mg_base64_encode(hi, sizeof hi, out);
    CHECK(strcmp(out, "+/+/AA==") == 0, "base64 high bytes: %s", out);
    CHECK(mg_base64_len(SIZE_MAX) == (size_t)-1, "base64 len overflow");
}

static void test_data_url(void)
{
    mg_error err = { 0 };
    char *url = NULL;
    size_t len = 0;
    CHECK(mg_audio_data_url((const uint8_t *)"foobar", 6, MG_AUDIO_WAV, &url, &len, &err) ==
              MG_OK, "data url: %s", err.msg);
    CHECK(url && strcmp(url, "data:audio/wav;base64,Zm9vYmFy") == 0, "data url: %s",
          url ? url : "(null)");
    CHECK(url && len == strlen(url), "data url length");
    free(url);
    CHECK(mg_audio_data_url(NULL, 0, MG_AUDIO_MP3, &url, &len, &err) == MG_OK, "empty url");
    CHECK(url && strcmp(url, "data:audio/mpeg;base64,") == 0, "empty data url: %s",
          url ? url : "(null)");
    free(url);
    CHECK(mg_audio_data_url(NULL, 3, MG_AUDIO_WAV, &url, &len, &err) == MG_ERR_INVALID,
          "data url NULL bytes");
}

static void test_format_names(void)
{
    mg_error err = { 0 };
    mg_audio_format f = MG_AUDIO_MP3;
    CHECK(mg_audio_format_parse("wav", 3, &f, &err) == MG_OK && f == MG_AUDIO_WAV, "wav");
    CHECK(mg_audio_format_parse("flac", 4, &f, &err) == MG_OK && f == MG_AUDIO_FLAC, "flac");
    CHECK(mg_audio_format_parse("ogg", 3, &f, &err) == MG_OK && f == MG_AUDIO_OGG, "ogg");
    CHECK(mg_audio_format_parse("MP3", 3, &f, &err) == MG_OK && f == MG_AUDIO_MP3, "MP3");
    /* the length bounds the name: no NUL needed */
    CHECK(mg_audio_format_parse("flac\"}", 4, &f, &err) == MG_OK && f == MG_AUDIO_FLAC,
          "unterminated name");

    CHECK(mg_audio_format_parse("aac", 3, &f, &err) == MG_ERR_INVALID, "aac rejected");
    CHECK(strstr(err.msg, "\"aac\"") != NULL, "error names the value: %s", err.msg);
    CHECK(mg_audio_format_parse("wave", 4, &f, &err) == MG_ERR_INVALID, "wave rejected");
    CHECK(mg_audio_format_parse("wa", 2, &f, &err) == MG_ERR_INVALID, "prefix rejected");
    CHECK(mg_audio_format_parse("", 0, &f, &err) == MG_ERR_INVALID, "empty rejected");
    CHECK(mg_audio_format_parse(NULL, 0, &f, &err) == MG_ERR_INVALID, "NULL rejected");
    CHECK(mg_audio_format_parse("w\nav", 4, &f, &err) == MG_ERR_INVALID &&
              strchr(err.msg, '\n') == NULL, "control characters not echoed: %s", err.msg);
    char longname[200];
    memset(longname, 'x', sizeof longname);
    CHECK(mg_audio_format_parse(longname, sizeof longname, &f, &err) == MG_ERR_INVALID &&
              strlen(err.msg) < 120, "long value bounded: %s", err.msg);

    const mg_audio_format all[] = { MG_AUDIO_WAV, MG_AUDIO_FLAC, MG_AUDIO_OGG, MG_AUDIO_MP3 };
    const char *mime[] = { "audio/wav", "audio/flac", "audio/ogg", "audio/mpeg" };
    for (int i = 0; i < 4; i++) {
        const char *name = mg_audio_format_name(all[i]);
        CHECK(mg_audio_format_parse(name, strlen(name), &f, &err) == MG_OK && f == all[i],
              "round trip %s", name);
        CHECK(strcmp(mg_audio_mime(all[i]), mime[i]) == 0, "mime %s", mime[i]);
    }
}

/* WAV and FLAC are lossless at 16 bits: every sample within quantisation. */
static void test_lossless(mg_audio_format f, int major)
{
    const char *name = mg_audio_format_name(f);
    float x[RATE];
    sine(x, RATE, RATE, 440, 0.8);
    mg_error err = { 0 };
    uint8_t *bytes = NULL;
    size_t len = 0;
    mg_code rc = mg_audio_encode(x, RATE, RATE, f, &bytes, &len, &err);
    CHECK(rc == MG_OK, "%s encode: %s", name, err.msg);
    if (rc != MG_OK)
        return;
    SF_INFO info;
    float *y = NULL;
    long frames = decode(bytes, len, &info, &y);
    CHECK(frames == RATE, "%s frames %ld", name, frames);
    CHECK(info.samplerate == RATE, "%s rate %d", name, info.samplerate);
    CHECK(info.channels == 1, "%s channels %d", name, info.channels);
    CHECK((info.format & SF_FORMAT_TYPEMASK) == major, "%s major %x", name, info.format);
    CHECK((info.format & SF_FORMAT_SUBMASK) == SF_FORMAT_PCM_16, "%s 16-bit %x", name,
          info.format);
    if (frames == RATE) {
        double worst = 0;
        for (int i = 0; i < RATE; i++)
            worst = fmax(worst, fabs((double)y[i] - x[i]));
        CHECK(worst <= 1.0 / 32768, "%s max error %g", name, worst);
    }
    free(y);
    free(bytes);

    /* n == 0: a valid file with no audio */
    rc = mg_audio_encode(NULL, 0, RATE, f, &bytes, &len, &err);
    CHECK(rc == MG_OK && bytes && len > 0, "%s empty encode: %s", name, err.msg);
    if (rc == MG_OK) {
        frames = decode(bytes, len, &info, &y);
        CHECK(frames == 0 && info.samplerate == RATE, "%s empty: %ld frames", name, frames);
        free(y);
        free(bytes);
    }
}

/* Opus and MP3 are lossy: length roughly right and the 440 Hz tone intact. */
static void test_lossy(mg_audio_format f, int major, int want_rate)
{
    const char *name = mg_audio_format_name(f);
    float x[RATE];
    sine(x, RATE, RATE, 440, 0.5);
    mg_error err = { 0 };
    uint8_t *bytes = NULL;
    size_t len = 0;
    mg_code rc = mg_audio_encode(x, RATE, RATE, f, &bytes, &len, &err);
    if (rc == MG_ERR_UNSUPPORTED) {
        SKIP("%s: this libsndfile cannot encode it: %s", name, err.msg);
        return;
    }
    CHECK(rc == MG_OK, "%s encode: %s", name, err.msg);
    if (rc != MG_OK)
        return;
    SF_INFO info;
    float *y = NULL;
    long frames = decode(bytes, len, &info, &y);
    if (frames < 0) {
        SKIP("%s: this libsndfile cannot decode it", name);
        free(bytes);
        return;
    }
    CHECK(info.samplerate == want_rate, "%s rate %d, want %d", name, info.samplerate,
          want_rate);
    CHECK(info.channels == 1, "%s channels %d", name, info.channels);
    CHECK((info.format & SF_FORMAT_TYPEMASK) == major, "%s major %x", name, info.format);
    /* codec delay and frame padding: allow 5% */
    CHECK(labs(frames - want_rate) <= want_rate / 20, "%s frames %ld, want ~%d", name, frames,
          want_rate);
    if (frames > want_rate / 2) {
        size_t from = (size_t)frames / 4, to = (size_t)frames * 3 / 4;
        double a = tone_amp(y, from, to, info.samplerate, 440);
        double off = tone_amp(y, from, to, info.samplerate, 3000);
        CHECK(fabs(a - 0.5) < 0.05, "%s 440 Hz amplitude %g, want 0.5", name, a);
        CHECK(off < 0.01, "%s spurious 3 kHz amplitude %g", name, off);
    }
    free(y);
    free(bytes);

    rc = mg_audio_encode(NULL, 0, RATE, f, &bytes, &len, &err);
    CHECK(rc == MG_OK && bytes && len > 0, "%s empty encode: %s", name, err.msg);
    if (rc == MG_OK) {
        frames = decode(bytes, len, &info, &y);
        CHECK(frames >= 0 && frames < want_rate / 10, "%s empty: %ld frames", name, frames);
        free(y);
        free(bytes);
    }
}

static void test_clipping(mg_audio_format f)
{
    const char *name = mg_audio_format_name(f);
    const float x[] = { 2.0f, -3.0f, 0.5f, NAN, INFINITY, -INFINITY, 1.0f, -1.0f };
    const short want[] = { 32767, -32768, 16384, 0, 32767, -32768, 32767, -32768 };
    const int n = sizeof x / sizeof x[0];
    mg_error err = { 0 };
    uint8_t *bytes = NULL;
    size_t len = 0;
    mg_code rc = mg_audio_encode_level(x, (size_t)n, RATE, f, MG_LEVEL_CLIP, &bytes, &len, &err);
    CHECK(rc == MG_OK, "%s clip encode: %s", name, err.msg);
    if (rc != MG_OK)
        return;
    reader r = { bytes, len, 0 };
    SF_VIRTUAL_IO vio = { rd_len, rd_seek, rd_read, rd_write, rd_tell };
    SF_INFO info = { 0 };
    SNDFILE *sf = sf_open_virtual(&vio, SFM_READ, &info, &r);
    CHECK(sf != NULL, "%s clip decode: %s", name, sf_strerror(NULL));
    if (sf) {
        short y[8] = { 0 };
        CHECK(sf_readf_short(sf, y, n) == n, "%s clip frames", name);
        for (int i = 0; i < n; i++)
            CHECK(y[i] == want[i], "%s clip sample %d: %d, want %d", name, i, y[i], want[i]);
        sf_close(sf);
    }
    free(bytes);
}

static void test_encode_errors(void)
{
    mg_error err = { 0 };
    uint8_t *bytes = (uint8_t *)&err;   /* must be reset to NULL on failure */
    size_t len = 7;
    float x[4] = { 0 };
    CHECK(mg_audio_encode(x, 4, 0, MG_AUDIO_WAV, &bytes, &len, &err) == MG_ERR_INVALID,
          "rate 0 rejected");
    CHECK(bytes == NULL && len == 0, "outputs cleared on failure");
    CHECK(mg_audio_encode(x, 4, RATE, (mg_audio_format)42, &bytes, &len, &err) ==
              MG_ERR_INVALID, "bad format rejected");
    CHECK(mg_audio_encode(NULL, 4, RATE, MG_AUDIO_WAV, &bytes, &len, &err) == MG_ERR_INVALID,
          "NULL samples rejected");
}

/* What a HEAD promises as Content-Length is what the encoder writes: for WAV
 * at every length tried (empty, odd, more than a write chunk, at two rates);
 * for the compressed formats nothing is promised. */
static void test_encoded_size(void)
{
    static const size_t lengths[] = { 0, 1, 7, 4096, 4097, 32640 };
    static const int rates[] = { RATE, 24000 };
    float *x = calloc(32640, sizeof *x);
    CHECK(x != NULL, "encoded size: allocation");
    if (!x)
        return;
    sine(x, 32640, RATE, 440, 0.5);
    for (size_t r = 0; r < sizeof rates / sizeof rates[0]; r++) {
        for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
            mg_error err = { 0 };
            uint8_t *bytes = NULL;
            size_t len = 0;
            size_t n = lengths[i];
            CHECK(mg_audio_encode(x, n, rates[r], MG_AUDIO_WAV, &bytes, &len, &err) == MG_OK,
                  "wav of %zu samples at %d Hz: %s", n, rates[r], err.msg);
            CHECK(len == mg_audio_encoded_size(n, MG_AUDIO_WAV),
                  "wav of %zu samples at %d Hz: %zu bytes, predicted %zu", n, rates[r], len,
                  mg_audio_encoded_size(n, MG_AUDIO_WAV));
            free(bytes);
        }
    }
    free(x);
    CHECK(mg_audio_encoded_size(32000, MG_AUDIO_WAV) == 64044, "one second at 32 kHz: 64044");
    CHECK(mg_audio_encoded_size(32000, MG_AUDIO_FLAC) == 0, "flac: size not known up front");
    CHECK(mg_audio_encoded_size(32000, MG_AUDIO_OGG) == 0, "ogg: size not known up front");
    CHECK(mg_audio_encoded_size(32000, MG_AUDIO_MP3) == 0, "mp3: size not known up front");
    CHECK(mg_audio_encoded_size(SIZE_MAX / 2, MG_AUDIO_WAV) == 0, "wav too long to size: 0");
}

/* Rates a codec lacks are resampled to 48 kHz rather than refused. */
static void test_odd_rate(mg_audio_format f, int major)
{
    const char *name = mg_audio_format_name(f);
    enum { N = 7000 };
    float x[N];
    sine(x, N, N, 440, 0.5);
    mg_error err = { 0 };
    uint8_t *bytes = NULL;
    size_t len = 0;
    mg_code rc = mg_audio_encode(x, N, N, f, &bytes, &len, &err);
    if (rc == MG_ERR_UNSUPPORTED) {
        SKIP("%s: this libsndfile cannot encode it: %s", name, err.msg);
        return;
    }
    CHECK(rc == MG_OK, "%s at 7 kHz: %s", name, err.msg);
    if (rc != MG_OK)
        return;
    SF_INFO info;
    float *y = NULL;
    long frames = decode(bytes, len, &info, &y);
    CHECK(info.samplerate == 48000 && (info.format & SF_FORMAT_TYPEMASK) == major,
          "%s at 7 kHz: read back at %d Hz", name, info.samplerate);
    CHECK(labs(frames - 48000) <= 2400, "%s at 7 kHz: %ld frames, want ~48000", name, frames);
    if (frames > 24000) {
        double a = tone_amp(y, (size_t)frames / 4, (size_t)frames * 3 / 4, 48000, 440);
        CHECK(fabs(a - 0.5) < 0.05, "%s at 7 kHz: 440 Hz amplitude %g", name, a);
    }
    free(y);
    free(bytes);
}

/* Error of the resampled sine against the exact one, away from the edges. */
static double resample_error(int in_rate, int out_rate, double freq, size_t *out_n)
{
    size_t n = (size_t)in_rate / 2;
    float *x = malloc(n * sizeof *x), *y = NULL;
    if (!x)
        return 1e9;
    sine(x, n, in_rate, freq, 0.9);
    mg_error err = { 0 };
    mg_code rc = mg_resample(x, n, in_rate, out_rate, &y, out_n, &err);
    free(x);
    if (rc != MG_OK) {
        printf("resample: %s\n", err.msg);
        return 1e9;
    }
    double worst = 0;
    for (size_t i = *out_n / 10; i < *out_n * 9 / 10; i++)
        worst = fmax(worst, fabs(y[i] - 0.9 * sin(2 * M_PI * freq * (double)i / out_rate)));
    free(y);
    return worst;
}

/* Amplitude at probe_freq after resampling a tone at freq. */
static double resample_leak(int in_rate, int out_rate, double freq, double probe_freq)
{
    size_t n = (size_t)in_rate / 2, m = 0;
    float *x = malloc(n * sizeof *x), *y = NULL;
    if (!x)
        return 1e9;
    sine(x, n, in_rate, freq, 1.0);
    mg_error err = { 0 };
    mg_code rc = mg_resample(x, n, in_rate, out_rate, &y, &m, &err);
    free(x);
    if (rc != MG_OK)
        return 1e9;
    double a = tone_amp(y, m / 10, m * 9 / 10, out_rate, probe_freq);
    free(y);
    return a;
}

static void test_resample(void)
{
    size_t m = 0;
    double e = resample_error(32000, 48000, 440, &m);
    CHECK(m == 24000, "32k->48k length %zu", m);
    CHECK(e < 1e-4, "32k->48k 440 Hz error %g", e);
    e = resample_error(32000, 48000, 12000, &m);
    CHECK(e < 0.01, "32k->48k 12 kHz (passband) error %g", e);
    e = resample_error(48000, 32000, 1000, &m);
    CHECK(m == 16000 && e < 1e-4, "48k->32k 1 kHz error %g (%zu samples)", e, m);
    e = resample_error(44100, 48000, 440, &m);
    CHECK(e < 1e-4, "44.1k->48k error %g", e);
    /* upsampling images: a 10 kHz tone must not show up at 32k-10k = 22 kHz */
    double img = resample_leak(32000, 48000, 10000, 22000);
    CHECK(img < 1e-3, "32k->48k image at 22 kHz: %g", img);
    /* downsampling aliases: 20 kHz at 48k folds to 12 kHz at 32k */
    double alias = resample_leak(48000, 32000, 20000, 12000);
    CHECK(alias < 1e-3, "48k->32k alias at 12 kHz: %g", alias);

    float *y = (float *)&m;
    mg_error err = { 0 };
    CHECK(mg_resample(NULL, 0, 32000, 48000, &y, &m, &err) == MG_OK && y == NULL && m == 0,
          "empty resample");
    float x[3] = { 0 };
    CHECK(mg_resample(x, 3, 0, 48000, &y, &m, &err) == MG_ERR_INVALID, "rate 0 rejected");
    CHECK(mg_resample(x, 3, 32000, 48001, &y, &m, &err) == MG_ERR_UNSUPPORTED,
          "huge ratio rejected: %s", err.msg);
    CHECK(mg_resample(x, 3, 32000, 32000, &y, &m, &err) == MG_OK && m == 3, "same rate");
    free(y);
}

/* ---- streams ---- */

/* A sink collecting the stream; stops (returns non-zero) once it holds
 * stop_after bytes or more, when stop_after is non-zero. */
typedef struct {
    uint8_t *data;
    size_t   len, cap, stop_after;
    int      calls;
} collected;

static int collect(void *ud, const uint8_t *bytes, size_t n)
{
    collected *c = ud;
    if (c->stop_after && c->len >= c->stop_after)
        return 1;
    if (c->len + n > c->cap) {
        size_t cap = (c->len + n) * 2;
        uint8_t *p = realloc(c->data, cap);
        if (!p)
            return 1;
        c->data = p;
        c->cap = cap;
    }
    memcpy(c->data + c->len, bytes, n);
    c->len += n;
    c->calls++;
    return 0;
}

/* Loud test music: a 2.0 sine with transients at 3.0 and a little noise,
 * per channel a different tone. */
static void loud_signal(float *x, size_t frames, int channels, int rate)
{
    uint32_t seed = 12345;
    for (size_t i = 0; i < frames; i++) {
        for (int c = 0; c < channels; c++) {
            seed = seed * 1664525u + 1013904223u;
            double noise = ((double)(seed >> 8) / (1 << 24) - 0.5) * 0.05;
            double v = 2.0 * sin(2 * M_PI * (220.0 + 110.0 * c) * (double)i / rate) + noise;
            if (i % 3000 < 40)
                v += i % 2 ? 1.0 : -1.0;
            x[i * (size_t)channels + (size_t)c] = (float)v;
        }
    }
}

/* Streams x through the split pattern `split` (the size of write k is
 * split(k), at least 1); returns the bytes (NULL on failure, printed). */
static uint8_t *stream_split(const mg_audio_stream_params *p, const float *x,
                             size_t (*split)(size_t k), size_t *len)
{
    collected c = { 0 };
    mg_error err = { 0 };
    mg_audio_stream *s = NULL;
    mg_code rc = mg_audio_stream_open(&s, p, collect, &c, &err);
    size_t done = 0;
    for (size_t k = 0; rc == MG_OK && done < p->frames; k++) {
        size_t n = split(k);
        if (n > p->frames - done)
            n = p->frames - done;
        rc = mg_audio_stream_write(s, x + done * (size_t)p->channels, n, &err);
        done += n;
    }
    if (rc == MG_OK)
        rc = mg_audio_stream_finish(s, &err);
    mg_audio_stream_free(s);
    if (rc != MG_OK) {
        printf("stream %s: %s\n", mg_audio_format_name(p->format), err.msg);
        free(c.data);
        return NULL;
    }
    *len = c.len;
    return c.data;
}

static size_t split_all(size_t k) { return SIZE_MAX; }
static size_t split_one(size_t k) { return 1; }
static size_t split_seven(size_t k) { return 7; }
static size_t split_block(size_t k) { return k % 2 ? 1 : 2047; }
static size_t split_ragged(size_t k)
{
    uint32_t h = (uint32_t)k * 2654435761u;
    return 1 + (h >> 20) % 5000;
}

/* The bytes never depend on how the samples were split into writes: every
 * format, level and channel count, against one write. The frame count is
 * not a multiple of the internal block. */
static void test_stream_splits(void)
{
    enum { FRAMES = 10001 };
    static const mg_audio_format formats[] = { MG_AUDIO_WAV, MG_AUDIO_FLAC, MG_AUDIO_OGG,
                                               MG_AUDIO_MP3 };
    static const mg_level levels[] = { MG_LEVEL_LIMIT, MG_LEVEL_CLIP, MG_LEVEL_OFF };
    static size_t (*const splits[])(size_t) = { split_one, split_seven, split_block,
                                                split_ragged };
    static const char *const split_names[] = { "1", "7", "2047+1", "ragged" };
    float *x = malloc(FRAMES * 2 * sizeof *x);
    CHECK(x != NULL, "stream splits: allocation");
    if (!x)
        return;
    for (int ch = 1; ch <= 2; ch++) {
        loud_signal(x, FRAMES, ch, RATE);
        for (size_t f = 0; f < 4; f++) {
            for (size_t l = 0; l < 3; l++) {
                if (formats[f] == MG_AUDIO_FLAC && levels[l] == MG_LEVEL_OFF)
                    continue;   /* refused, test_stream_errors */
                mg_audio_stream_params p = { formats[f], RATE, ch, FRAMES, levels[l] };
                const char *name = mg_audio_format_name(formats[f]);
                const char *level = mg_level_name(levels[l]);
                size_t ref_len = 0;
                uint8_t *ref = stream_split(&p, x, split_all, &ref_len);
                CHECK(ref != NULL, "%s %s %d ch: one write", name, level, ch);
                if (!ref)
                    continue;
                if (formats[f] == MG_AUDIO_WAV)
                    CHECK(ref_len == mg_audio_stream_size(&p), "%s %s %d ch: %zu bytes, size "
                          "says %zu", name, level, ch, ref_len, mg_audio_stream_size(&p));
                else
                    CHECK(mg_audio_stream_size(&p) == 0, "%s: size not known up front", name);
                for (size_t k = 0; k < sizeof splits / sizeof splits[0]; k++) {
                    size_t len = 0;
                    uint8_t *b = stream_split(&p, x, splits[k], &len);
                    CHECK(b && len == ref_len && memcmp(b, ref, len) == 0,
                          "%s %s %d ch, writes of %s: %zu bytes differ from one write's %zu",
                          name, level, ch, split_names[k], len, ref_len);
                    free(b);
                }
                /* the mono in-memory encoder is the same stream */
                if (ch == 1) {
                    uint8_t *b = NULL;
                    size_t len = 0;
                    mg_error err = { 0 };
                    mg_code rc = mg_audio_encode_level(x, FRAMES, RATE, formats[f], levels[l],
                                                       &b, &len, &err);
                    CHECK(rc == MG_OK && len == ref_len && memcmp(b, ref, len) == 0,
                          "%s %s: mg_audio_encode_level differs from the stream", name, level);
                    free(b);
                }
                /* it decodes, with every channel, at the codec's rate */
                SF_INFO info;
                float *y = NULL;
                long frames = decode(ref, ref_len, &info, &y);
                CHECK(frames > 0 && info.channels == ch, "%s %s %d ch: decodes (%ld frames, "
                      "%d channels)", name, level, ch, frames, info.channels);
                if (formats[f] == MG_AUDIO_WAV || formats[f] == MG_AUDIO_FLAC)
                    CHECK(frames == FRAMES, "%s %s %d ch: %ld frames, want %d", name, level, ch,
                          frames, FRAMES);
                free(y);
                free(ref);
            }
        }
    }
    free(x);
}

/* Bytes leave while samples arrive: after half the frames, every format has
 * sent audio beyond its header. */
static void test_stream_early_bytes(void)
{
    enum { FRAMES = 3 * RATE };
    static const mg_audio_format formats[] = { MG_AUDIO_WAV, MG_AUDIO_FLAC, MG_AUDIO_OGG,
                                               MG_AUDIO_MP3 };
    float *x = malloc(FRAMES * sizeof *x);
    CHECK(x != NULL, "early bytes: allocation");
    if (!x)
        return;
    sine(x, FRAMES, RATE, 440, 0.5);
    for (size_t f = 0; f < 4; f++) {
        const char *name = mg_audio_format_name(formats[f]);
        mg_audio_stream_params p = { formats[f], RATE, 1, FRAMES, MG_LEVEL_LIMIT };
        collected c = { 0 };
        mg_error err = { 0 };
        mg_audio_stream *s = NULL;
        mg_code rc = mg_audio_stream_open(&s, &p, collect, &c, &err);
        CHECK(rc == MG_OK, "%s open: %s", name, err.msg);
        size_t at_open = c.len;
        if (rc == MG_OK)
            rc = mg_audio_stream_write(s, x, FRAMES / 2, &err);
        size_t at_half = c.len;
        /* a second of audio at ~70 kbps or more is over 8 KB in any format */
        CHECK(rc == MG_OK && at_half > at_open + 8000, "%s: %zu bytes at open, %zu after 1.5 s",
              name, at_open, at_half);
        if (rc == MG_OK)
            rc = mg_audio_stream_write(s, x + FRAMES / 2, FRAMES - FRAMES / 2, &err);
        if (rc == MG_OK)
            rc = mg_audio_stream_finish(s, &err);
        CHECK(rc == MG_OK && c.len > at_half, "%s finish: %s", name, err.msg);
        mg_audio_stream_free(s);
        free(c.data);
    }
    free(x);
}

/* A receiver that stops: the call that fed it fails as cancelled, and the
 * stream frees cleanly in that state; wrong frame counts; refused levels. */
static void test_stream_errors(void)
{
    enum { FRAMES = 20000 };
    static const mg_audio_format formats[] = { MG_AUDIO_WAV, MG_AUDIO_FLAC, MG_AUDIO_OGG,
                                               MG_AUDIO_MP3 };
    float *x = malloc(FRAMES * sizeof *x);
    CHECK(x != NULL, "stream errors: allocation");
    if (!x)
        return;
    sine(x, FRAMES, RATE, 440, 0.5);
    for (size_t f = 0; f < 4; f++) {
        const char *name = mg_audio_format_name(formats[f]);
        mg_audio_stream_params p = { formats[f], RATE, 1, FRAMES, MG_LEVEL_CLIP };
        collected c = { .stop_after = 2000 };
        mg_error err = { 0 };
        mg_audio_stream *s = NULL;
        mg_code rc = mg_audio_stream_open(&s, &p, collect, &c, &err);
        CHECK(rc == MG_OK, "%s open: %s", name, err.msg);
        for (size_t i = 0; rc == MG_OK && i < FRAMES; i += 1000)
            rc = mg_audio_stream_write(s, x + i, 1000, &err);
        if (rc == MG_OK)
            rc = mg_audio_stream_finish(s, &err);
        CHECK(rc == MG_ERR_CANCELLED, "%s: a stopping receiver cancels (%s: %s)", name,
              mg_code_name(rc), err.msg);
        if (s) {
            CHECK(mg_audio_stream_write(s, x, 1, &err) == MG_ERR_INVALID,
                  "%s: no write after a failure", name);
        }
        mg_audio_stream_free(s);
        free(c.data);

        /* fewer frames than announced; then more */
        collected d = { 0 };
        s = NULL;
        rc = mg_audio_stream_open(&s, &p, collect, &d, &err);
        if (rc == MG_OK)
            rc = mg_audio_stream_write(s, x, FRAMES - 1, &err);
        CHECK(rc == MG_OK, "%s short: %s", name, err.msg);
        CHECK(s && mg_audio_stream_finish(s, &err) == MG_ERR_INVALID, "%s: a short stream "
              "fails at finish", name);
        mg_audio_stream_free(s);
        free(d.data);
        collected e = { 0 };
        s = NULL;
        rc = mg_audio_stream_open(&s, &p, collect, &e, &err);
        if (rc == MG_OK)
            rc = mg_audio_stream_write(s, x, FRAMES - 1, &err);
        CHECK(rc == MG_OK && mg_audio_stream_write(s, x, 2, &err) == MG_ERR_INVALID,
              "%s: writing past the announced frames fails", name);
        mg_audio_stream_free(s);
        free(e.data);
    }
    collected c = { 0 };
    mg_audio_stream *s = (mg_audio_stream *)&c;
    mg_error err = { 0 };
    mg_audio_stream_params p = { MG_AUDIO_FLAC, RATE, 1, 10, MG_LEVEL_OFF };
    CHECK(mg_audio_stream_open(&s, &p, collect, &c, &err) == MG_ERR_INVALID && s == NULL &&
          strcmp(err.field, "level") == 0, "flac refuses level off, naming the field: %s",
          err.msg);
    p = (mg_audio_stream_params){ MG_AUDIO_WAV, RATE, 3, 10, MG_LEVEL_CLIP };
    CHECK(mg_audio_stream_open(&s, &p, collect, &c, &err) == MG_ERR_INVALID, "3 channels");
    p = (mg_audio_stream_params){ MG_AUDIO_WAV, 0, 1, 10, MG_LEVEL_CLIP };
    CHECK(mg_audio_stream_open(&s, &p, collect, &c, &err) == MG_ERR_INVALID, "rate 0");
    p = (mg_audio_stream_params){ MG_AUDIO_WAV, RATE, 1, 10, (mg_level)7 };
    CHECK(mg_audio_stream_open(&s, &p, collect, &c, &err) == MG_ERR_INVALID, "level 7");
    p = (mg_audio_stream_params){ MG_AUDIO_WAV, RATE, 2, SIZE_MAX / 8, MG_LEVEL_OFF };
    CHECK(mg_audio_stream_open(&s, &p, collect, &c, &err) == MG_ERR_INVALID &&
          mg_audio_stream_size(&p) == 0, "a WAV too long for its header is refused");
    CHECK(c.len == 0, "refused streams send nothing");
    free(x);
}

/* Level off: a float WAV that keeps every value, above full scale too, in
 * the layout players accept (fmt of IEEE float, cbSize 0, fact chunk). */
static void test_float_wav(void)
{
    enum { FRAMES = 5000 };
    float x[FRAMES];
    loud_signal(x, FRAMES, 1, RATE);
    uint8_t *b = NULL;
    size_t len = 0;
    mg_error err = { 0 };
    mg_code rc = mg_audio_encode_level(x, FRAMES, RATE, MG_AUDIO_WAV, MG_LEVEL_OFF, &b, &len,
                                       &err);
    CHECK(rc == MG_OK && len == 58 + 4 * FRAMES &&
              len == mg_audio_encoded_size_level(FRAMES, MG_AUDIO_WAV, MG_LEVEL_OFF),
          "float wav: %zu bytes: %s", len, err.msg);
    if (rc != MG_OK)
        return;
    CHECK(memcmp(b, "RIFF", 4) == 0 && memcmp(b + 8, "WAVEfmt ", 8) == 0 && b[16] == 18 &&
              b[20] == 3 && b[34] == 32 && memcmp(b + 38, "fact", 4) == 0 &&
              memcmp(b + 50, "data", 4) == 0, "float wav: header layout");
    SF_INFO info;
    float *y = NULL;
    long frames = decode(b, len, &info, &y);
    CHECK(frames == FRAMES && (info.format & SF_FORMAT_SUBMASK) == SF_FORMAT_FLOAT,
          "float wav: libsndfile reads %ld float frames (format %x)", frames, info.format);
    /* libsndfile normalises nothing for float: the values come back */
    int same = frames == FRAMES, over = 0;
    for (long i = 0; same && i < frames; i++) {
        same = y[i] == x[i];
        over += fabsf(y[i]) > 1.5f;
    }
    CHECK(same && over > 0, "float wav: every value kept, %d beyond 1.5", over);
    free(y);
    free(b);
}

int main(void)
{
    test_base64();
    test_data_url();
    test_format_names();
    test_lossless(MG_AUDIO_WAV, SF_FORMAT_WAV);
    test_lossless(MG_AUDIO_FLAC, SF_FORMAT_FLAC);
    test_lossy(MG_AUDIO_OGG, SF_FORMAT_OGG, 48000);
    test_lossy(MG_AUDIO_MP3, SF_FORMAT_MPEG, RATE);
    test_clipping(MG_AUDIO_WAV);
    test_clipping(MG_AUDIO_FLAC);
    test_encode_errors();
    test_encoded_size();
    test_odd_rate(MG_AUDIO_OGG, SF_FORMAT_OGG);
    test_odd_rate(MG_AUDIO_MP3, SF_FORMAT_MPEG);
    test_resample();
    test_stream_splits();
    test_stream_early_bytes();
    test_stream_errors();
    test_float_wav();
    printf("libsndfile: %s\n", sf_version_string());
    return check_summary("audio");
}
