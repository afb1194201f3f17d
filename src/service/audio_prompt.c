#include "service/audio_prompt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "service/base64.h"

#define FIELD MG_AUDIO_PROMPT_FIELD

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static int has_prefix(const char *s, size_t n, const char *prefix)
{
    size_t k = strlen(prefix);
    return n >= k && strncasecmp(s, prefix, k) == 0;
}

/* The media type of a data URL's header (before ";base64") is one an audio
 * file may carry. */
static int audio_media_type(const char *type, size_t n)
{
    size_t end = 0;
    while (end < n && type[end] != ';')
        end++;
    while (end > 0 && is_space((unsigned char)type[end - 1]))
        end--;
    if (has_prefix(type, end, "audio/"))
        return end > 6;
    return (end == 15 && has_prefix(type, end, "application/ogg")) ||
           (end == 24 && has_prefix(type, end, "application/octet-stream"));
}

/* Strips a data URL's header from value[0..*len), leaving the base64 part. */
static mg_code data_url_payload(const char **value, size_t *len, mg_error *err)
{
    const char *s = *value;
    size_t      n = *len;
    if (!has_prefix(s, n, "data:"))
        return MG_OK;  /* bare base64 */
    const char *comma = memchr(s, ',', n);
    if (!comma)
        return mg_fail_field(err, MG_ERR_INVALID, FIELD, FIELD ": a data URL needs a ',' "
                             "before its data");
    const char *type = s + 5;
    size_t      tlen = (size_t)(comma - type);
    if (tlen < 7 || strncasecmp(comma - 7, ";base64", 7) != 0)
        return mg_fail_field(err, MG_ERR_INVALID, FIELD, FIELD ": a data URL must be base64 "
                             "(\"data:audio/...;base64,\")");
    if (!audio_media_type(type, tlen - 7)) {
        char   shown[48];
        size_t k = 0;
        for (size_t i = 0; i < tlen - 7 && type[i] != ';' && k < 40; i++)
            shown[k++] = type[i] >= 0x20 && type[i] < 0x7f && type[i] != '"' ? type[i] : '?';
        shown[k] = '\0';
        return mg_fail_field(err, MG_ERR_INVALID, FIELD, FIELD ": the data URL's type \"%s\" is "
                             "not audio (expected audio/...)", shown);
    }
    *value = comma + 1;
    *len = n - (size_t)(comma + 1 - s);
    return MG_OK;
}

static uint64_t fnv1a64(const uint8_t *b, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

mg_code mg_audio_prompt_parse(const char *value, size_t len, int rate, mg_decoded_audio *out,
                              uint64_t *hash, mg_error *err)
{
    if (!out || !hash || (len && !value))
        return mg_fail(err, MG_ERR_INVALID, FIELD ": NULL argument");
    memset(out, 0, sizeof *out);
    *hash = 0;
    mg_code rc = data_url_payload(&value, &len, err);
    if (rc)
        return rc;
    size_t sig = 0;  /* base64 characters, whitespace aside */
    for (size_t i = 0; i < len; i++)
        sig += !is_space((unsigned char)value[i]);
    if (sig == 0)
        return mg_fail_field(err, MG_ERR_INVALID, FIELD, FIELD ": empty (no audio data)");
    if (sig / 4 * 3 > MG_AUDIO_DECODE_MAX_BYTES)
        return mg_fail_field(err, MG_ERR_INVALID, FIELD, FIELD ": too large (about %zu bytes "
                             "of audio file, at most %u)", sig / 4 * 3, MG_AUDIO_DECODE_MAX_BYTES);
    uint8_t *bytes = malloc(mg_base64_decoded_max(sig));
    if (!bytes)
        return mg_fail(err, MG_ERR_NOMEM, FIELD ": out of memory");
    size_t n = 0, bad = 0;
    if (mg_base64_decode(value, len, bytes, &n, &bad) != 0) {
        free(bytes);
        if (bad >= len)
            return mg_fail_field(err, MG_ERR_INVALID, FIELD, FIELD ": not valid base64 (it "
                                 "ends in the middle of a byte)");
        return mg_fail_field(err, MG_ERR_INVALID, FIELD, FIELD ": not valid base64 (byte 0x%02x "
                             "at offset %zu of the data)", (unsigned char)value[bad], bad);
    }
    rc = mg_audio_decode(bytes, n, rate, FIELD, out, err);
    if (rc == MG_OK)
        *hash = fnv1a64(bytes, n);
    free(bytes);
    return rc;
}
