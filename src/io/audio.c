#include "io/audio.h"
#include "io/channels.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "io/audio_stream.h"
#include "io/echo_impl.h"

/* ---- format names ---- */

static const struct {
    const char     *name;
    mg_audio_format fmt;
} format_names[] = {
    { "wav", MG_AUDIO_WAV }, { "flac", MG_AUDIO_FLAC }, { "ogg", MG_AUDIO_OGG },
    { "opus", MG_AUDIO_OGG }, { "mp3", MG_AUDIO_MP3 },
};

mg_code mg_audio_format_parse(const char *name, size_t len, mg_audio_format *out, mg_error *err)
{
    if (!out)
        return mg_fail(err, MG_ERR_INVALID, "format: NULL argument");
    if (name) {
        for (size_t i = 0; i < sizeof format_names / sizeof format_names[0]; i++) {
            const char *cand = format_names[i].name;
            if (strlen(cand) == len && strncasecmp(cand, name, len) == 0) {
                *out = format_names[i].fmt;
                return MG_OK;
            }
        }
    }
    char shown[40];
    mg_echo_value(shown, sizeof shown, name, len);
    return mg_fail(err, MG_ERR_INVALID,
                   "format: unknown audio format \"%s\" (expected wav, flac, ogg or mp3)", shown);
}

const char *mg_audio_format_name(mg_audio_format f)
{
    switch (f) {
    case MG_AUDIO_WAV:  return "wav";
    case MG_AUDIO_FLAC: return "flac";
    case MG_AUDIO_OGG:  return "ogg";
    case MG_AUDIO_MP3:  return "mp3";
    }
    return "unknown";
}

const char *mg_audio_mime(mg_audio_format f)
{
    switch (f) {
    case MG_AUDIO_WAV:  return "audio/wav";
    case MG_AUDIO_FLAC: return "audio/flac";
    case MG_AUDIO_OGG:  return "audio/ogg";
    case MG_AUDIO_MP3:  return "audio/mpeg";
    }
    return "application/octet-stream";
}

/* ---- in memory: the stream collected ---- */

typedef struct {
    uint8_t *data;
    size_t   len, cap;
    int      oom;
} membuf;

static int mem_sink(void *ud, const uint8_t *bytes, size_t n)
{
    membuf *m = ud;
    if (n > SIZE_MAX - m->len) {
        m->oom = 1;
        return -1;
    }
    if (m->len + n > m->cap) {
        size_t cap = m->cap ? m->cap : 65536;
        while (cap < m->len + n)
            cap = cap > SIZE_MAX / 2 ? m->len + n : cap * 2;
        uint8_t *p = realloc(m->data, cap);
        if (!p) {
            m->oom = 1;
            return -1;
        }
        m->data = p;
        m->cap = cap;
    }
    memcpy(m->data + m->len, bytes, n);
    m->len += n;
    return 0;
}

size_t mg_audio_encoded_size_level(size_t n, mg_audio_format f, mg_level level)
{
    mg_audio_stream_params p = { .format = f, .sample_rate = 1, .channels = 1, .frames = n,
                                 .level = level };
    return mg_audio_stream_size(&p);
}

size_t mg_audio_encoded_size(size_t n, mg_audio_format f)
{
    return mg_audio_encoded_size_level(n, f, MG_LEVEL_LIMIT);
}

mg_code mg_audio_encode_level(const float *samples, size_t n, int sample_rate, mg_audio_format f,
                              mg_level level, uint8_t **out, size_t *out_len, mg_error *err)
{
    return mg_audio_encode_planar(samples, 1, n, sample_rate, f, level, out, out_len, err);
}

mg_code mg_audio_encode_planar(const float *samples, int channels, size_t n, int sample_rate,
                               mg_audio_format f, mg_level level, uint8_t **out,
                               size_t *out_len, mg_error *err)
{
    if (!out || !out_len || (n && !samples))
        return mg_fail(err, MG_ERR_INVALID, "encode: NULL argument");
    *out = NULL;
    *out_len = 0;
    if (channels < 1 || channels > 2)
        return mg_fail(err, MG_ERR_INVALID, "encode: %d channels (1 or 2)", channels);
    membuf mem = { 0 };
    mg_audio_stream_params p = { .format = f, .sample_rate = sample_rate, .channels = channels,
                                 .frames = n, .level = level };
    /* the stream takes interleaved frames: stereo goes through a copy */
    float *frames = channels > 1 ? malloc(n * (size_t)channels * sizeof *frames + 1) : NULL;
    if (channels > 1 && !frames)
        return mg_fail(err, MG_ERR_NOMEM, "encode %s: out of memory", mg_audio_format_name(f));
    if (frames)
        mg_channels_interleave(samples, channels, n, n, frames);
    mg_audio_stream *s = NULL;
    mg_code rc = mg_audio_stream_open(&s, &p, mem_sink, &mem, err);
    if (rc == MG_OK)
        rc = mg_audio_stream_write(s, frames ? frames : samples, n, err);
    free(frames);
    if (rc == MG_OK)
        rc = mg_audio_stream_finish(s, err);
    mg_audio_stream_free(s);
    if (rc != MG_OK) {
        free(mem.data);
        if (mem.oom)
            return mg_fail(err, MG_ERR_NOMEM, "encode %s: out of memory",
                           mg_audio_format_name(f));
        return rc;
    }
    *out = mem.data;
    *out_len = mem.len;
    return MG_OK;
}

mg_code mg_audio_encode(const float *samples, size_t n, int sample_rate, mg_audio_format f,
                        uint8_t **out, size_t *out_len, mg_error *err)
{
    return mg_audio_encode_level(samples, n, sample_rate, f, MG_LEVEL_LIMIT, out, out_len, err);
}
