/* libFuzzer target: the prompt builder over arbitrary analyses. The input is
 * split on '\n' into fields: flags byte, energy, tempo, style as decimal
 * text, then mood, vocal type, and the rest alternating genres/instruments. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "service/prompt.h"

#define MAX_FIELDS 24

static size_t count_words(const char *s)
{
    size_t n = 0;
    for (int in = 0; *s; s++) {
        if (*s != ' ' && !in)
            n++;
        in = *s != ' ';
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size + 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    copy[size] = '\0';
    char *fields[MAX_FIELDS];
    size_t n_fields = 0;
    for (char *p = copy; n_fields < MAX_FIELDS;) {
        fields[n_fields++] = p;
        char *nl = memchr(p, '\n', (size_t)(copy + size - p));
        if (!nl)
            break;
        *nl = '\0';
        p = nl + 1;
    }
    unsigned flags = n_fields > 0 && fields[0][0] ? (unsigned char)fields[0][0] : 0;
    const char *genres[MAX_FIELDS], *instruments[MAX_FIELDS];
    size_t n_genres = 0, n_instruments = 0;
    for (size_t i = 6; i < n_fields; i++) {
        if (i % 2)
            instruments[n_instruments++] = fields[i];
        else
            genres[n_genres++] = fields[i];
    }
    mg_analysis a = {
        .mood = (flags & 1) && n_fields > 4 ? fields[4] : NULL,
        .has_energy = (flags & 2) && n_fields > 1,
        .energy = n_fields > 1 ? strtof(fields[1], NULL) : 0,
        .has_tempo = (flags & 4) && n_fields > 2,
        .tempo_bpm = n_fields > 2 ? strtof(fields[2], NULL) : 0,
        .has_style = (flags & 8) && n_fields > 3,
        .style_level = n_fields > 3 ? strtof(fields[3], NULL) : 0,
        .vocal_type = (flags & 16) && n_fields > 5 ? fields[5] : NULL,
        .genres = n_genres ? genres : NULL,
        .n_genres = n_genres,
        .instruments = n_instruments ? instruments : NULL,
        .n_instruments = n_instruments,
    };
    char *prompt = NULL;
    mg_error err;
    if (mg_prompt_from_analysis(&a, &prompt, &err) == MG_OK) {
        size_t words = count_words(prompt);
        /* prompt.h promises 10 to 25 words of valid UTF-8 */
        if (words < 10 || words > 25)
            abort();
        size_t len = strlen(prompt);
        for (size_t i = 0; i < len;) {
            size_t l = mg_utf8_seq_len((const unsigned char *)prompt + i, len - i);
            if (!l)
                abort();
            i += l;
        }
        free(prompt);
    }
    free(copy);
    return 0;
}
