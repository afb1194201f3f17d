#include "io/audio_decode.h"

#include <math.h>
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/resample.h"

#define READ_FRAMES   8192   /* frames per libsndfile read */
#define MIN_RATE      1000   /* below this it is not music (and not a real file) */

/* ---- sniffing ---- */

/* An MPEG audio frame header: sync, and no reserved version, layer, bitrate
 * or sample-rate index (so that random bytes starting with 0xFF rarely pass). */
static int is_mpeg_frame(const uint8_t *b, size_t len)
{
    return len >= 4 && b[0] == 0xff && (b[1] & 0xe0) == 0xe0 && ((b[1] >> 3) & 3) != 1 &&
           ((b[1] >> 1) & 3) != 0 && (b[2] >> 4) != 15 && ((b[2] >> 2) & 3) != 3;
}

/* The length of the ID3v2 tag at b (header, syncsafe size, optional footer),
 * 0 when there is none. */
static size_t id3v2_length(const uint8_t *b, size_t len)
{
    if (len < 10 || memcmp(b, "ID3", 3) != 0 || ((b[6] | b[7] | b[8] | b[9]) & 0x80))
        return 0;
    size_t size = (size_t)b[6] << 21 | (size_t)b[7] << 14 | (size_t)b[8] << 7 | b[9];
    return 10 + size + (b[5] & 0x10 ? 10 : 0);
}

mg_audio_container mg_audio_sniff(const uint8_t *bytes, size_t len)
{
    if (!bytes || len < 4)
        return MG_CONTAINER_NONE;
    if (len >= 12 && (!memcmp(bytes, "RIFF", 4) || !memcmp(bytes, "RIFX", 4) ||
                      !memcmp(bytes, "RF64", 4)) && !memcmp(bytes + 8, "WAVE", 4))
        return MG_CONTAINER_WAV;
    if (!memcmp(bytes, "OggS", 4))
        return MG_CONTAINER_OGG;
    size_t skip = id3v2_length(bytes, len);
    if (skip >= len)
        return MG_CONTAINER_NONE;
    const uint8_t *b = bytes + skip;
    len -= skip;
    if (len >= 4 && !memcmp(b, "fLaC", 4))
        return MG_CONTAINER_FLAC;
    if (is_mpeg_frame(b, len))
        return MG_CONTAINER_MP3;
    return MG_CONTAINER_NONE;
}

const char *mg_audio_container_name(mg_audio_container c)
{
    switch (c) {
    case MG_CONTAINER_WAV:  return "WAV";
    case MG_CONTAINER_FLAC: return "FLAC";
    case MG_CONTAINER_OGG:  return "Ogg";
    case MG_CONTAINER_MP3:  return "MP3";
    case MG_CONTAINER_NONE: break;
    }
    return "unknown";
}

/* Whether libsndfile's reading of the file is the container we sniffed (a
 * file whose first bytes say WAV must not be decoded as something else). */
static int major_matches(int sf_format, mg_audio_container c)
{
    int major = sf_format & SF_FORMAT_TYPEMASK;
    switch (c) {
    case MG_CONTAINER_WAV:  return major == SF_FORMAT_WAV || major == SF_FORMAT_WAVEX ||
                                   major == SF_FORMAT_RF64;
    case MG_CONTAINER_FLAC: return major == SF_FORMAT_FLAC;
    case MG_CONTAINER_OGG:  return major == SF_FORMAT_OGG;
    case MG_CONTAINER_MP3:  return major == SF_FORMAT_MPEG;
    case MG_CONTAINER_NONE: break;
    }
    return 0;
}

/* Whether libsndfile's frame count for a file of this container is what the
 * file says it holds, known before decoding: WAV's data chunk (cut to the
 * bytes present), FLAC's STREAMINFO, Ogg's last granule position. An MP3's
 * is that only when it carries a Xing/Info tag; without one mpg123 guesses
 * from the first frame's bitrate (a VBR file that opens quietly reads as
 * several times its length), so an MP3 is measured by decoding it. */
static int frames_known_up_front(mg_audio_container c, sf_count_t frames)
{
    return c != MG_CONTAINER_MP3 && frames > 0 && frames != SF_COUNT_MAX;
}

/* ---- a read-only memory file for SF_VIRTUAL_IO ---- */

typedef struct {
    const uint8_t *data;
    sf_count_t     len, pos;
} memfile;

static sf_count_t mf_length(void *u) { return ((memfile *)u)->len; }
static sf_count_t mf_position(void *u) { return ((memfile *)u)->pos; }
static sf_count_t mf_no_write(const void *p, sf_count_t n, void *u) { return 0; }

static sf_count_t mf_seek(sf_count_t offset, int whence, void *u)
{
    memfile   *f = u;
    sf_count_t from = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? f->pos
                    : whence == SEEK_END ? f->len : -1;
    /* positions stay within [0, len]: no overflow, reads past the end are empty */
    if (from < 0 || offset < -from || offset > f->len - from)
        return -1;
    f->pos = from + offset;
    return f->pos;
}

static sf_count_t mf_read(void *dst, sf_count_t n, void *u)
{
    memfile *f = u;
    if (n <= 0)
        return 0;
    if (n > f->len - f->pos)
        n = f->len - f->pos;
    memcpy(dst, f->data + f->pos, (size_t)n);
    f->pos += n;
    return n;
}

/* ---- decoding ---- */

/* Reads every frame of sf (interleaved, channels wide) into *out, failing
 * once there are more than max_frames. */
static mg_code read_all(SNDFILE *sf, int channels, size_t max_frames, const char *field,
                        float **out, size_t *frames, mg_error *err)
{
    size_t cap = 0, n = 0;
    float *buf = NULL;
    for (;;) {
        if (n + READ_FRAMES > cap) {
            size_t want = cap ? cap * 2 : 4 * READ_FRAMES;
            if (want > max_frames + READ_FRAMES)
                want = max_frames + READ_FRAMES;  /* room for one read past the limit */
            float *p = realloc(buf, want * (size_t)channels * sizeof *p);
            if (!p) {
                free(buf);
                return mg_fail(err, MG_ERR_NOMEM, "%s: out of memory decoding audio", field);
            }
            buf = p;
            cap = want;
        }
        sf_count_t got = sf_readf_float(sf, buf + n * (size_t)channels, READ_FRAMES);
        if (got <= 0)
            break;
        n += (size_t)got;
        if (n > max_frames) {
            free(buf);
            return mg_fail_field(err, MG_ERR_INVALID, field,
                                 "%s: too long (more than %d s of audio)", field,
                                 MG_AUDIO_DECODE_MAX_SECONDS);
        }
    }
    *out = buf;
    *frames = n;
    return MG_OK;
}

/* Resamples each channel of in[frames * channels] to rate and interleaves
 * the result into *out. */
static mg_code resample_channels(const float *in, size_t frames, int channels, int in_rate,
                                 int rate, const char *field, float **out, size_t *out_frames,
                                 mg_error *err)
{
    float *one = malloc(frames * sizeof *one), *res = NULL, *y = NULL;
    if (!one)
        return mg_fail(err, MG_ERR_NOMEM, "%s: out of memory resampling audio", field);
    mg_code rc = MG_OK;
    size_t  n = 0;
    for (int c = 0; c < channels && rc == MG_OK; c++) {
        for (size_t i = 0; i < frames; i++)
            one[i] = in[i * (size_t)channels + (size_t)c];
        rc = mg_resample(one, frames, in_rate, rate, &res, &n, err);
        if (rc != MG_OK) {
            /* a rate the resampler cannot convert is the file's fault */
            if (rc != MG_ERR_NOMEM) {
                char why[sizeof err->msg];
                snprintf(why, sizeof why, "%s", err ? err->msg : "");
                rc = mg_fail_field(err, MG_ERR_INVALID, field, "%s: unsupported sample rate "
                                   "%d Hz (%.300s)", field, in_rate, why);
            }
            break;
        }
        if (!y && !(y = malloc(n * (size_t)channels * sizeof *y))) {
            rc = mg_fail(err, MG_ERR_NOMEM, "%s: out of memory resampling audio", field);
        } else {
            for (size_t i = 0; i < n; i++)
                y[i * (size_t)channels + (size_t)c] = res[i];
        }
        free(res);
        res = NULL;
    }
    free(one);
    if (rc != MG_OK) {
        free(y);
        return rc;
    }
    *out = y;
    *out_frames = n;
    return MG_OK;
}

mg_code mg_audio_decode(const uint8_t *bytes, size_t len, int rate, const char *field,
                        mg_decoded_audio *out, mg_error *err)
{
    if (!field)
        field = "audio";
    if (!out || (len && !bytes))
        return mg_fail(err, MG_ERR_INVALID, "audio decode: NULL argument");
    memset(out, 0, sizeof *out);
    if (rate < MIN_RATE || rate > MG_AUDIO_DECODE_MAX_RATE)
        return mg_fail(err, MG_ERR_INVALID, "audio decode: bad target rate %d Hz", rate);
    if (len == 0)
        return mg_fail_field(err, MG_ERR_INVALID, field, "%s: empty (no bytes)", field);
    if (len > MG_AUDIO_DECODE_MAX_BYTES)
        return mg_fail_field(err, MG_ERR_INVALID, field, "%s: too large (%zu bytes, at most %u)",
                             field, len, MG_AUDIO_DECODE_MAX_BYTES);
    mg_audio_container c = mg_audio_sniff(bytes, len);
    if (c == MG_CONTAINER_NONE)
        return mg_fail_field(err, MG_ERR_INVALID, field,
                             "%s: not an audio file (expected WAV, FLAC, Ogg or MP3)", field);
    const char *cname = mg_audio_container_name(c);

    memfile       mf = { bytes, (sf_count_t)len, 0 };
    SF_VIRTUAL_IO vio = { mf_length, mf_seek, mf_read, mf_no_write, mf_position };
    SF_INFO       info;
    memset(&info, 0, sizeof info);
    SNDFILE *sf = sf_open_virtual(&vio, SFM_READ, &info, &mf);
    if (!sf)
        return mg_fail_field(err, MG_ERR_INVALID, field, "%s: unsupported codec or damaged %s "
                             "file (libsndfile: %s)", field, cname, sf_strerror(NULL));
    mg_code rc = MG_OK;
    float  *raw = NULL;
    size_t  frames = 0;
    if (!major_matches(info.format, c)) {
        rc = mg_fail_field(err, MG_ERR_INVALID, field, "%s: not a valid %s file", field, cname);
    } else if (info.channels < 1 || info.channels > 2) {
        rc = mg_fail_field(err, MG_ERR_INVALID, field, "%s: %d channels (only mono and stereo "
                           "audio is supported)", field, info.channels);
    } else if (info.samplerate < MIN_RATE || info.samplerate > MG_AUDIO_DECODE_MAX_RATE) {
        rc = mg_fail_field(err, MG_ERR_INVALID, field, "%s: unsupported sample rate %d Hz "
                           "(%d..%d)", field, info.samplerate, MIN_RATE, MG_AUDIO_DECODE_MAX_RATE);
    } else if (frames_known_up_front(c, info.frames) &&
               info.frames > (sf_count_t)MG_AUDIO_DECODE_MAX_SECONDS * info.samplerate) {
        /* refused from the header: decoding up to the limit first would cost
         * as much as the longest file accepted */
        rc = mg_fail_field(err, MG_ERR_INVALID, field, "%s: too long (the %s file holds %.1f s "
                           "of audio, at most %d s)", field, cname,
                           (double)info.frames / info.samplerate, MG_AUDIO_DECODE_MAX_SECONDS);
    } else {
        size_t max_frames = (size_t)MG_AUDIO_DECODE_MAX_SECONDS * (size_t)info.samplerate;
        rc = read_all(sf, info.channels, max_frames, field, &raw, &frames, err);
        if (rc == MG_OK && sf_error(sf) != SF_ERR_NO_ERROR)
            rc = mg_fail_field(err, MG_ERR_INVALID, field, "%s: damaged %s file (libsndfile: "
                               "%s)", field, cname, sf_strerror(sf));
    }
    sf_close(sf);
    if (rc == MG_OK && frames == 0)
        rc = mg_fail_field(err, MG_ERR_INVALID, field, "%s: the %s file holds no audio", field,
                           cname);
    for (size_t i = 0; rc == MG_OK && i < frames * (size_t)info.channels; i++) {
        if (!isfinite(raw[i]))
            rc = mg_fail_field(err, MG_ERR_INVALID, field, "%s: the audio has non-finite "
                               "samples (NaN or infinity)", field);
        else if (fabsf(raw[i]) > MG_AUDIO_DECODE_MAX_LEVEL)
            rc = mg_fail_field(err, MG_ERR_INVALID, field, "%s: the audio has samples far "
                               "beyond full scale (%g; at most %d)", field, (double)raw[i],
                               MG_AUDIO_DECODE_MAX_LEVEL);
    }
    if (rc == MG_OK && info.samplerate != rate) {
        float *y = NULL;
        size_t n = 0;
        rc = resample_channels(raw, frames, info.channels, info.samplerate, rate, field, &y, &n,
                               err);
        free(raw);
        raw = y;
        frames = n;
    }
    if (rc != MG_OK) {
        free(raw);
        return rc;
    }
    out->samples = raw;
    out->frames = frames;
    out->channels = info.channels;
    out->rate = rate;
    out->source_rate = info.samplerate;
    out->container = c;
    return MG_OK;
}

void mg_audio_downmix(mg_decoded_audio *a)
{
    if (!a || !a->samples || a->channels <= 1)
        return;
    size_t ch = (size_t)a->channels;
    for (size_t i = 0; i < a->frames; i++) {
        float sum = 0.0f;
        for (size_t c = 0; c < ch; c++)
            sum += a->samples[i * ch + c];
        a->samples[i] = sum / (float)ch;
    }
    a->channels = 1;
}

void mg_decoded_audio_free(mg_decoded_audio *a)
{
    if (!a)
        return;
    free(a->samples);
    memset(a, 0, sizeof *a);
}
