#include "service/base64.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t mg_base64_len(size_t n)
{
    size_t groups = n / 3 + (n % 3 != 0);
    if (groups > SIZE_MAX / 4)
        return (size_t)-1;
    return groups * 4;
}

void mg_base64_encode(const uint8_t *in, size_t n, char *out)
{
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *out++ = alphabet[v >> 18 & 63];
        *out++ = alphabet[v >> 12 & 63];
        *out++ = alphabet[v >> 6 & 63];
        *out++ = alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        *out++ = alphabet[v >> 18 & 63];
        *out++ = alphabet[v >> 12 & 63];
        *out++ = '=';
        *out++ = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        *out++ = alphabet[v >> 18 & 63];
        *out++ = alphabet[v >> 12 & 63];
        *out++ = alphabet[v >> 6 & 63];
        *out++ = '=';
    }
    *out = '\0';
}

size_t mg_base64_decoded_max(size_t n)
{
    return n / 4 * 3 + 3;
}

static int base64_value(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' : c >= 'a' && c <= 'z' ? c - 'a' + 26
         : c >= '0' && c <= '9' ? c - '0' + 52 : c == '+' ? 62 : c == '/' ? 63 : -1;
}

int mg_base64_decode(const char *in, size_t n, uint8_t *out, size_t *out_n, size_t *bad)
{
    uint32_t bits = 0;
    size_t   k = 0, sextets = 0;
    int      padded = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v')
            continue;
        if (c == '=') {
            /* padding completes a group of 2 or 3 characters, never starts one */
            if (!padded && sextets % 4 < 2) {
                *bad = i;
                return -1;
            }
            padded = 1;
            continue;
        }
        int v = base64_value(c);
        if (v < 0 || padded) {
            *bad = i;
            return -1;
        }
        bits = bits << 6 | (uint32_t)v;
        if (++sextets % 4 == 0) {
            out[k++] = (uint8_t)(bits >> 16);
            out[k++] = (uint8_t)(bits >> 8);
            out[k++] = (uint8_t)bits;
            bits = 0;
        }
    }
    switch (sextets % 4) {
    case 1: /* 6 bits cannot make a byte */
        *bad = n;
        return -1;
    case 2:
        out[k++] = (uint8_t)(bits >> 4);
        break;
    case 3:
        out[k++] = (uint8_t)(bits >> 10);
        out[k++] = (uint8_t)(bits >> 2);
        break;
    }
    *out_n = k;
    return 0;
}

mg_code mg_audio_data_url(const uint8_t *bytes, size_t n, mg_audio_format f, char **url,
                          size_t *url_len, mg_error *err)
{
    if (!url || !url_len || (n && !bytes))
        return mg_fail(err, MG_ERR_INVALID, "data url: NULL argument");
    *url = NULL;
    *url_len = 0;
    char prefix[64];
    int plen = snprintf(prefix, sizeof prefix, "data:%s;base64,", mg_audio_mime(f));
    if (plen < 0 || (size_t)plen >= sizeof prefix)
        return mg_fail(err, MG_ERR_INVALID, "data url: bad mime type");
    size_t blen = mg_base64_len(n);
    if (blen == (size_t)-1 || blen > SIZE_MAX - (size_t)plen - 1)
        return mg_fail(err, MG_ERR_INVALID, "data url: %zu bytes is too large", n);
    size_t total = (size_t)plen + blen;
    char *s = malloc(total + 1);
    if (!s)
        return mg_fail(err, MG_ERR_NOMEM, "data url: out of memory for %zu bytes", total + 1);
    memcpy(s, prefix, (size_t)plen);
    mg_base64_encode(bytes, n, s + plen);
    *url = s;
    *url_len = total;
    return MG_OK;
}
