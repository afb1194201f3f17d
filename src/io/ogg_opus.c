#include "io/ogg_opus.h"

#include <ogg/ogg.h>
#include <opus/opus.h>
#include <stdlib.h>
#include <string.h>

#define SERIAL 0x6d67            /* any fixed number: one logical stream per file */
#define FRAME_MS 20
#define PACKETS_PER_PAGE 10      /* 200 ms of audio a page: early bytes, small overhead */
#define MAX_PACKET 4000          /* libopus's recommended output buffer */

struct mg_ogg_opus {
    OpusEncoder     *enc;
    ogg_stream_state os;
    int              os_ready;
    int              channels;
    int              frame;        /* samples per channel in one Opus frame */
    int              to48k;        /* granule positions count 48 kHz samples */
    int              pre_skip;     /* the encoder's look-ahead, at the codec rate */
    float           *buf;          /* one frame being gathered */
    int              fill;
    uint64_t         written;      /* samples per channel the caller gave */
    uint64_t         encoded;      /* samples per channel encoded, padding included */
    int64_t          packetno;
    int              in_page;      /* packets since the last page went out */
    int            (*emit)(void *, const uint8_t *, size_t);
    void            *ud;
    unsigned char    packet[MAX_PACKET];
};

static mg_code send_pages(mg_ogg_opus *o, mg_error *err)
{
    ogg_page pg;
    while (ogg_stream_flush(&o->os, &pg)) {
        if (o->emit(o->ud, pg.header, (size_t)pg.header_len) != 0 ||
            o->emit(o->ud, pg.body, (size_t)pg.body_len) != 0)
            return mg_fail(err, MG_ERR_CANCELLED, "ogg: the receiver stopped the stream");
    }
    o->in_page = 0;
    return MG_OK;
}

/* Queues a packet; pages go out at the end of a header, at the end of the
 * stream and every PACKETS_PER_PAGE audio packets. */
static mg_code put_packet(mg_ogg_opus *o, unsigned char *data, size_t len, int64_t granule,
                          int bos, int eos, int header, mg_error *err)
{
    ogg_packet op = { .packet = data, .bytes = (long)len, .b_o_s = bos, .e_o_s = eos,
                      .granulepos = granule, .packetno = o->packetno++ };
    if (ogg_stream_packetin(&o->os, &op) != 0)
        return mg_fail(err, MG_ERR_NOMEM, "ogg: out of memory");
    if (header || eos || ++o->in_page == PACKETS_PER_PAGE)
        return send_pages(o, err);
    return MG_OK;
}

static unsigned char *le16(unsigned char *b, unsigned v)
{
    b[0] = (unsigned char)v;
    b[1] = (unsigned char)(v >> 8);
    return b + 2;
}

static unsigned char *le32(unsigned char *b, uint32_t v)
{
    b = le16(b, v & 0xffff);
    return le16(b, v >> 16);
}

void mg_ogg_opus_free(mg_ogg_opus *o)
{
    if (!o)
        return;
    if (o->enc)
        opus_encoder_destroy(o->enc);
    if (o->os_ready)
        ogg_stream_clear(&o->os);
    free(o->buf);
    free(o);
}

mg_code mg_ogg_opus_open(mg_ogg_opus **out, int rate, int channels,
                         int (*emit)(void *ud, const uint8_t *bytes, size_t n), void *ud,
                         mg_error *err)
{
    if (!out || !emit)
        return mg_fail(err, MG_ERR_INVALID, "ogg: NULL argument");
    *out = NULL;
    if (rate != 8000 && rate != 12000 && rate != 16000 && rate != 24000 && rate != 48000)
        return mg_fail(err, MG_ERR_INVALID, "ogg: %d Hz is not an Opus rate", rate);
    if (channels < 1 || channels > 2)
        return mg_fail(err, MG_ERR_INVALID, "ogg: %d channels (1 or 2)", channels);
    mg_ogg_opus *o = calloc(1, sizeof *o);
    if (!o)
        return mg_fail(err, MG_ERR_NOMEM, "ogg: out of memory");
    o->channels = channels;
    o->frame = rate / 1000 * FRAME_MS;
    o->to48k = 48000 / rate;
    o->emit = emit;
    o->ud = ud;
    o->buf = malloc((size_t)o->frame * (size_t)channels * sizeof *o->buf);
    int e = OPUS_OK;
    o->enc = opus_encoder_create(rate, channels, OPUS_APPLICATION_AUDIO, &e);
    if (!o->buf || !o->enc) {
        mg_ogg_opus_free(o);
        return e == OPUS_ALLOC_FAIL || e == OPUS_OK
                   ? mg_fail(err, MG_ERR_NOMEM, "ogg: out of memory")
                   : mg_fail(err, MG_ERR_UNSUPPORTED, "ogg: libopus: %s", opus_strerror(e));
    }
    /* ~64 kbps a channel pair's worth for mono music, 96 for stereo */
    opus_encoder_ctl(o->enc, OPUS_SET_BITRATE(channels == 1 ? 64000 : 96000));
    opus_int32 lookahead = 0;
    opus_encoder_ctl(o->enc, OPUS_GET_LOOKAHEAD(&lookahead));
    o->pre_skip = (int)lookahead;
    if (ogg_stream_init(&o->os, SERIAL) != 0) {
        mg_ogg_opus_free(o);
        return mg_fail(err, MG_ERR_NOMEM, "ogg: out of memory");
    }
    o->os_ready = 1;

    /* RFC 7845 5.1: identification header, then comment header, each on its
     * own page */
    unsigned char head[19], *b = head;
    memcpy(b, "OpusHead", 8);
    b += 8;
    *b++ = 1;                                   /* version */
    *b++ = (unsigned char)channels;
    b = le16(b, (unsigned)(o->pre_skip * o->to48k));
    /* the "original" rate, which decoders (libsndfile's) take as the rate
     * to decode at: the encoder's own, since resampling came before it */
    b = le32(b, (uint32_t)rate);
    b = le16(b, 0);                             /* output gain */
    *b++ = 0;                                   /* mapping family: mono/stereo */
    const char *vendor = opus_get_version_string();
    size_t vlen = strlen(vendor);
    unsigned char *tags = malloc(8 + 4 + vlen + 4);
    mg_code rc = MG_OK;
    if (!tags) {
        rc = mg_fail(err, MG_ERR_NOMEM, "ogg: out of memory");
    } else {
        unsigned char *t = tags;
        memcpy(t, "OpusTags", 8);
        t = le32(t + 8, (uint32_t)vlen);
        memcpy(t, vendor, vlen);
        t = le32(t + vlen, 0);                  /* no user comments */
        rc = put_packet(o, head, sizeof head, 0, 1, 0, 1, err);
        if (rc == MG_OK)
            rc = put_packet(o, tags, (size_t)(t - tags), 0, 0, 0, 1, err);
        free(tags);
    }
    if (rc != MG_OK) {
        mg_ogg_opus_free(o);
        return rc;
    }
    *out = o;
    return MG_OK;
}

/* Encodes the gathered frame; the last one ends the stream at the exact
 * length written. */
static mg_code encode_frame(mg_ogg_opus *o, int last, mg_error *err)
{
    opus_int32 n = opus_encode_float(o->enc, o->buf, o->frame, o->packet, MAX_PACKET);
    if (n < 0)
        return mg_fail(err, MG_ERR_IO, "ogg: libopus: %s", opus_strerror(n));
    o->encoded += (uint64_t)o->frame;
    o->fill = 0;
    uint64_t end = last ? o->written + (uint64_t)o->pre_skip : o->encoded;
    return put_packet(o, o->packet, (size_t)n, (int64_t)(end * (uint64_t)o->to48k), 0, last, 0,
                      err);
}

mg_code mg_ogg_opus_write(mg_ogg_opus *o, const float *x, size_t frames, mg_error *err)
{
    const size_t C = (size_t)o->channels;
    o->written += frames;
    while (frames) {
        size_t k = (size_t)(o->frame - o->fill);
        if (k > frames)
            k = frames;
        memcpy(o->buf + (size_t)o->fill * C, x, k * C * sizeof *x);
        o->fill += (int)k;
        x += k * C;
        frames -= k;
        if (o->fill == o->frame) {
            mg_code rc = encode_frame(o, 0, err);
            if (rc != MG_OK)
                return rc;
        }
    }
    return MG_OK;
}

mg_code mg_ogg_opus_finish(mg_ogg_opus *o, mg_error *err)
{
    /* the decoder drops pre_skip samples first: encode that much past the end */
    const uint64_t target = o->written + (uint64_t)o->pre_skip;
    const size_t C = (size_t)o->channels;
    for (;;) {
        memset(o->buf + (size_t)o->fill * C, 0,
               (size_t)(o->frame - o->fill) * C * sizeof *o->buf);
        o->fill = o->frame;
        int last = o->encoded + (uint64_t)o->frame >= target;
        mg_code rc = encode_frame(o, last, err);
        if (rc != MG_OK || last)
            return rc;
    }
}
