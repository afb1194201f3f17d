/* libFuzzer target: the audio_prompt path. The first byte picks the entry:
 * even, the rest is the request field's string (data URL or base64 parsing,
 * then container sniffing, libsndfile decoding from memory, resampling);
 * odd, the rest is an audio file's bytes, decoded directly (so mutations of
 * a container's binary layout are not lost to base64), resampled to 32 kHz
 * or, when bit 1 is set, to 48 kHz. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/audio_decode.h"
#include "service/audio_prompt.h"

static int zeroed(const mg_decoded_audio *a)
{
    return !a->samples && !a->frames && !a->channels;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int      mode = data[0], rate = mode & 2 ? 48000 : 32000;
    size_t   n = size - 1;
    /* a copy of exactly n bytes: no terminator, so overreads are caught */
    uint8_t *rest = malloc(n ? n : 1);
    if (!rest)
        return 0;
    memcpy(rest, data + 1, n);
    mg_decoded_audio a;
    mg_error         err;
    uint64_t         hash = 0;
    mg_code          rc = mode & 1 ? mg_audio_decode(rest, n, rate, "audio_prompt", &a, &err)
                                   : mg_audio_prompt_parse((const char *)rest, n, rate, &a,
                                                           &hash, &err);
    if (rc == MG_OK) {
        /* a decoded prompt is non-empty, mono or stereo, finite, bounded */
        if (!a.samples || a.frames == 0 || a.channels < 1 || a.channels > 2 || a.rate != rate ||
            a.frames > (size_t)(MG_AUDIO_DECODE_MAX_SECONDS + 1) * (size_t)rate)
            abort();
        for (size_t i = 0; i < a.frames * (size_t)a.channels; i++)
            if (!isfinite(a.samples[i]))
                abort();
        mg_audio_downmix(&a);
        if (a.channels != 1)
            abort();
        mg_decoded_audio_free(&a);
    } else if (!zeroed(&a) || (rc == MG_ERR_INVALID && strcmp(err.field, "audio_prompt") != 0)) {
        abort(); /* on error nothing to free, and bad audio names the field */
    }
    free(rest);
    return 0;
}
