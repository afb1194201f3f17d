/* A MusicGen text prompt from a photo front end's analysis (mood, energy,
 * genres, tempo, style level, vocal type, instruments). Pure and
 * table-driven: the same analysis always gives the same prompt.
 *
 * The prompt is a comma-separated list of phrases, in this order:
 *   "<era> <genre>[ with <genre2> influences]"   style level -> era word
 *   mood descriptors                               mood table (with synonyms)
 *   tempo words                                    BPM bands (omitted if no tempo)
 *   "with <instrument>, <instrument>, ..."         given, else the genres' defaults
 *   production quality                             style level bands
 *   vocal words                                    vocal type table (omitted if none)
 *   dynamics                                       energy bands
 *   "high quality production"                      quality marker, always
 * It has 10 to 25 words (words = runs of non-spaces) and no phrase twice: when
 * too long, phrases are shortened or dropped in a fixed order (see
 * reductions[] in prompt.c); when too short, neutral filler phrases are added.
 *
 * Unknown moods, genres and vocal types still give a sensible prompt: the
 * text is cleaned (lower-cased ASCII, letters/digits/UTF-8 kept, other
 * punctuation dropped, at most 3 words) and used as it is; a known word inside
 * it ("very happy", "progressive rock") selects that table entry. Missing
 * energy and style level count as 5 (the middle); missing or empty genres
 * give "music" with neutral instruments; missing mood is taken from energy. */
#ifndef MG_PROMPT_H
#define MG_PROMPT_H
#include <stddef.h>
#include "base/error.h"

typedef struct {
    const char        *mood;          /* NULL: not given */
    int                has_energy;
    float              energy;        /* 0..10 (clamped) */
    const char *const *genres;        /* n_genres strings; the first two are used */
    size_t             n_genres;
    int                has_tempo;
    float              tempo_bpm;     /* beats per minute */
    int                has_style;
    float              style_level;   /* 0 (vintage, lo-fi) .. 10 (futuristic, polished) */
    const char        *vocal_type;    /* NULL: not given; "instrumental", "male", ... */
    const char *const *instruments;   /* n_instruments strings; the first three are used */
    size_t             n_instruments;
} mg_analysis;

/* On success *prompt is a malloc'd NUL-terminated string (caller frees).
 * Strings must be NUL-terminated; invalid UTF-8 bytes in them are dropped.
 * NaN numbers count as not given. Errors: NULL arguments, out of memory. */
mg_code mg_prompt_from_analysis(const mg_analysis *a, char **prompt, mg_error *err);

/* Length of the valid UTF-8 sequence (shortest form, no surrogates, at most
 * U+10FFFF) starting at s[0] within s[0..len), or 0 if it is not valid. */
size_t mg_utf8_seq_len(const unsigned char *s, size_t len);

#endif
