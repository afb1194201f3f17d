#include "io/audio.h"

#include <limits.h>
#include <math.h>
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "io/resample.h"

#define CHUNK 4096       /* samples clipped and written per libsndfile call */
#define RESAMPLE_RATE 48000  /* for codecs that cannot take the input rate */

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
    /* Echo the value back, printable ASCII only and bounded, since it comes
     * straight from a request. */
    char shown[40];
    size_t k = 0;
    for (size_t i = 0; name && i < len && k < sizeof shown - 4; i++)
        shown[k++] = name[i] >= 0x20 && name[i] < 0x7f ? name[i] : '?';
    if (name && len > k)
        k += (size_t)snprintf(shown + k, sizeof shown - k, "...");
    shown[k] = '\0';
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

/* ---- growable memory file for SF_VIRTUAL_IO ---- */

typedef struct {
    uint8_t *data;
    size_t   len;   /* file length */
    size_t   cap;
    size_t   pos;   /* current offset; may lie beyond len after a seek */
    int      oom;   /* a write failed for lack of memory */
} membuf;

static sf_count_t mem_filelen(void *user)
{
    return (sf_count_t)((membuf *)user)->len;
}

static sf_count_t mem_seek(sf_count_t offset, int whence, void *user)
{
    membuf *m = user;
    sf_count_t base;
    switch (whence) {
    case SEEK_SET: base = 0; break;
    case SEEK_CUR: base = (sf_count_t)m->pos; break;
    case SEEK_END: base = (sf_count_t)m->len; break;
    default: return -1;
    }
    if ((offset < 0 && base + offset < 0) || (offset > 0 && offset > INT64_MAX - base))
        return -1;
    m->pos = (size_t)(base + offset);
    return (sf_count_t)m->pos;
}

static sf_count_t mem_read(void *ptr, sf_count_t count, void *user)
{
    membuf *m = user;
    if (count <= 0 || m->pos >= m->len)
        return 0;
    size_t k = m->len - m->pos;
    if ((uint64_t)count < k)
        k = (size_t)count;
    memcpy(ptr, m->data + m->pos, k);
    m->pos += k;
    return (sf_count_t)k;
}

static sf_count_t mem_write(const void *ptr, sf_count_t count, void *user)
{
    membuf *m = user;
    if (count <= 0)
        return 0;
    if ((uint64_t)count > SIZE_MAX - m->pos)
        return 0;
    size_t end = m->pos + (size_t)count;
    if (end > m->cap) {
        size_t cap = m->cap ? m->cap : 65536;
        while (cap < end)
            cap = cap > SIZE_MAX / 2 ? end : cap * 2;
        uint8_t *p = realloc(m->data, cap);
        if (!p) {
            m->oom = 1;
            return 0;   /* libsndfile reports a short write */
        }
        m->data = p;
        m->cap = cap;
    }
    if (m->pos > m->len) /* a seek past the end leaves a hole: zero it */
        memset(m->data + m->len, 0, m->pos - m->len);
    memcpy(m->data + m->pos, ptr, (size_t)count);
    m->pos = end;
    if (end > m->len)
        m->len = end;
    return count;
}

static sf_count_t mem_tell(void *user)
{
    return (sf_count_t)((membuf *)user)->pos;
}

/* ---- encoding ---- */

static int sf_format_of(mg_audio_format f)
{
    switch (f) {
    case MG_AUDIO_WAV:  return SF_FORMAT_WAV | SF_FORMAT_PCM_16;
    case MG_AUDIO_FLAC: return SF_FORMAT_FLAC | SF_FORMAT_PCM_16;
    case MG_AUDIO_OGG:  return SF_FORMAT_OGG | SF_FORMAT_OPUS;
    case MG_AUDIO_MP3:  return SF_FORMAT_MPEG | SF_FORMAT_MPEG_LAYER_III;
    }
    return 0;
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

/* Lossy codecs depend on optional libsndfile components: failing to open
 * them means this build cannot write them. */
static mg_code open_fail_code(mg_audio_format f)
{
    return f == MG_AUDIO_OGG || f == MG_AUDIO_MP3 ? MG_ERR_UNSUPPORTED : MG_ERR_IO;
}

/* libsndfile's canonical header for 16-bit PCM mono: RIFF, "fmt " and
 * "data" chunks, nothing else (no PEAK chunk: that is for float data). */
#define WAV_HEADER_BYTES 44

size_t mg_audio_encoded_size(size_t n, mg_audio_format f)
{
    if (f != MG_AUDIO_WAV || n > (SIZE_MAX - WAV_HEADER_BYTES) / 2)
        return 0;
    return WAV_HEADER_BYTES + 2 * n;
}

mg_code mg_audio_encode(const float *samples, size_t n, int sample_rate, mg_audio_format f,
                        uint8_t **out, size_t *out_len, mg_error *err)
{
    if (!out || !out_len || (n && !samples))
        return mg_fail(err, MG_ERR_INVALID, "encode: NULL argument");
    *out = NULL;
    *out_len = 0;
    int sf_fmt = sf_format_of(f);
    if (!sf_fmt)
        return mg_fail(err, MG_ERR_INVALID, "encode: bad audio format %d", (int)f);
    if (sample_rate <= 0 || sample_rate > 655350)
        return mg_fail(err, MG_ERR_INVALID, "encode: bad sample rate %d", sample_rate);
    if (n > (size_t)INT64_MAX)
        return mg_fail(err, MG_ERR_INVALID, "encode: %zu samples is too many", n);

    /* Opus and MP3 only run at a few rates; bring anything else to 48 kHz. */
    float *resampled = NULL;
    if ((f == MG_AUDIO_OGG && !is_opus_rate(sample_rate)) ||
        (f == MG_AUDIO_MP3 && !is_mp3_rate(sample_rate))) {
        mg_code rc = mg_resample(samples, n, sample_rate, RESAMPLE_RATE, &resampled, &n, err);
        if (rc != MG_OK) {
            mg_fail_context(err, "encode %s", mg_audio_format_name(f));
            return rc;
        }
        samples = resampled;
        sample_rate = RESAMPLE_RATE;
    }

    membuf mem = { 0 };
    SF_VIRTUAL_IO vio = { mem_filelen, mem_seek, mem_read, mem_write, mem_tell };
    SF_INFO info = { .samplerate = sample_rate, .channels = 1, .format = sf_fmt };
    mg_code rc = MG_OK;

    SNDFILE *sf = sf_open_virtual(&vio, SFM_WRITE, &info, &mem);
    if (!sf) {
        rc = mem.oom ? mg_fail(err, MG_ERR_NOMEM, "encode %s: out of memory",
                               mg_audio_format_name(f))
                     : mg_fail(err, open_fail_code(f), "encode %s at %d Hz: libsndfile: %s",
                               mg_audio_format_name(f), sample_rate, sf_strerror(NULL));
        goto done;
    }
    /* Belt and braces: we clip below too, but this makes libsndfile's own
     * float->int conversion saturate instead of wrapping. */
    sf_command(sf, SFC_SET_CLIPPING, NULL, SF_TRUE);
    /* libsndfile's lossy defaults are thin for music (~60 kbps MP3, ~40 kbps
     * Opus, mono). Level 0 is best quality, 1 smallest; these give roughly
     * 80 kbps VBR MP3 and 70 kbps Opus for mono music. Failure is harmless. */
    double level = f == MG_AUDIO_MP3 ? 0.2 : f == MG_AUDIO_OGG ? 0.6 : -1.0;
    if (level >= 0.0)
        sf_command(sf, SFC_SET_COMPRESSION_LEVEL, &level, sizeof level);

    float chunk[CHUNK];
    if (n == 0 && f == MG_AUDIO_FLAC) {
        /* libFLAC starts the stream on the first write; force the header out
         * so an empty input still gives a decodable (zero-sample) file. */
        sf_command(sf, SFC_UPDATE_HEADER_NOW, NULL, 0);
    } else if (n == 0 && (f == MG_AUDIO_OGG || f == MG_AUDIO_MP3)) {
        /* Lossy streams with no audio packet at all are rejected by decoders
         * (libsndfile included); one sample of silence is the nearest valid
         * "empty" file. */
        static const float silence[1] = { 0.0f };
        samples = silence;
        n = 1;
    }
    for (size_t off = 0; off < n; off += CHUNK) {
        size_t k = n - off < CHUNK ? n - off : CHUNK;
        for (size_t i = 0; i < k; i++) {
            float v = samples[off + i];
            chunk[i] = isnan(v) ? 0.0f : v > 1.0f ? 1.0f : v < -1.0f ? -1.0f : v;
        }
        if (sf_writef_float(sf, chunk, (sf_count_t)k) != (sf_count_t)k) {
            rc = mem.oom ? mg_fail(err, MG_ERR_NOMEM, "encode %s: out of memory",
                                   mg_audio_format_name(f))
                         : mg_fail(err, MG_ERR_IO, "encode %s: libsndfile: %s",
                                   mg_audio_format_name(f), sf_strerror(sf));
            sf_close(sf);
            goto done;
        }
    }
    /* Closing flushes the encoder and patches the header; it can fail too. */
    int cerr = sf_close(sf);
    if (cerr != 0 || mem.oom) {
        rc = mem.oom ? mg_fail(err, MG_ERR_NOMEM, "encode %s: out of memory",
                               mg_audio_format_name(f))
                     : mg_fail(err, MG_ERR_IO, "encode %s: libsndfile: %s",
                               mg_audio_format_name(f), sf_error_number(cerr));
        goto done;
    }
    if (mem.len == 0) { /* never hand back a NULL buffer on success */
        rc = mg_fail(err, MG_ERR_IO, "encode %s: libsndfile wrote nothing",
                     mg_audio_format_name(f));
        goto done;
    }
    *out = mem.data;
    *out_len = mem.len;
    mem.data = NULL;

done:
    free(mem.data);
    free(resampled);
    return rc;
}
