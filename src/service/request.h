/* Generation requests: a JSON body (POST) or a URL-encoded query string (GET)
 * parsed and validated into an mg_request. Pure functions over a byte buffer
 * with an explicit length: no reads past len, no NUL terminator needed.
 *
 * Fields (JSON names; the query string uses the same names):
 *   prompt          string, 1..500 characters (code points) after trimming ASCII
 *                   whitespace; no control characters other than tab/CR/LF
 *   duration        number, lim->duration.min..max seconds (default lim->duration.dflt)
 *   temperature     number, 0.1..2
 *   top_k           integer, 0..lim->max_top_k (0: off)
 *   top_p           number, (0, 1]
 *   guidance_scale  number, 0..lim->max_guidance
 *   seed            integer, 0..2^53
 *   format          "wav" | "flac" | "ogg" ("opus") | "mp3", any case (default lim->default_format)
 *   audio_prompt    string: audio to continue, a "data:audio/...;base64," URL or bare
 *                   base64 of a WAV, FLAC, Ogg or MP3 file (audio_prompt.h); decoded
 *                   here, so bad audio is an error before any generation. JSON only:
 *                   in a query string it is an error (a file does not fit in a URL)
 *   extend_stride   number, (0, lim->duration.max] seconds: how far each long-form
 *                   window advances (the engine checks it against the model's window)
 *   model           string: one of lim->models' names, exactly as written (default
 *                   lim->default_model). The chosen model's limits replace lim's
 *                   duration, max_top_k and audio_rate for every other field; an
 *                   unknown name (or any name when lim has no models) is an error
 *                   naming "model" that lists the names there are
 * Analysis form (a photo front end's; turned into a prompt by prompt.h):
 *   mood            string          energy                number 0..10
 *   genres          array of strings (at most 8)
 *   tempo_bpm       number 20..300  (also "tempo" or "tempoBpm"; one of them)
 *   styleLevel      number 0..10    (also "style_level")
 *   vocalType       string          (also "vocal_type")
 *   instruments     array of strings (at most 8)
 * Analysis strings are 1..100 characters after trimming; list items too.
 * The analysis fields may instead sit in an "analysis" object (errors then name
 * "analysis.mood", ...); giving them both there and at the top level is an error.
 *
 * Decisions:
 *  - Sampling fields not given keep has_* = 0: the caller applies its own
 *    defaults (the model's generation config, nginx directives).
 *  - null counts as not given, for every field.
 *  - Both a prompt and analysis fields: the prompt wins and from_analysis is 0;
 *    the analysis fields are still validated (a bad value is still an error).
 *  - Neither: an error naming "prompt". An empty or blank prompt is always an
 *    error, even when analysis fields are present.
 *  - Duplicate keys are rejected (JSON: JSON_REJECT_DUPLICATES; query: a key
 *    given twice), and so are two spellings of one field ("tempo" and
 *    "tempo_bpm"); the error names the key.
 *  - Unknown keys are rejected, naming the key, so that typos ("temprature")
 *    do not pass silently. Only these known front-end extras are ignored, at
 *    the top level and inside "analysis": description, caption, title, colors,
 *    dominantColors, objects, scene, tags, confidence, timestamp, id, version,
 *    key. The query string also ignores "raw" (not even decoded).
 *  - Numbers: JSON numbers only (a numeric string in JSON is a type error);
 *    integers may be written 40 or 40.0. Query values use the JSON number
 *    grammar (no "nan", "inf", hex or leading '+'); anything non-finite is
 *    rejected. Query list fields are comma-separated ("genres=rock,jazz").
 *  - Query strings: '&' separates pairs, '+' is a space, %XX is a byte; a bad
 *    escape, %00, or invalid UTF-8 after decoding is an error naming the key.
 *
 * Errors are MG_ERR_INVALID with err->field set to the key at fault ("" when
 * the body is not JSON or not an object), or MG_ERR_NOMEM. */
#ifndef MG_REQUEST_H
#define MG_REQUEST_H
#include <stddef.h>
#include <stdint.h>
#include "io/audio.h"
#include "io/audio_decode.h"
#include "base/error.h"
#include "runtime/duration.h"

#define MG_PROMPT_MAX_CHARS 500
#define MG_SEED_MAX         9007199254740992.0  /* 2^53 */

/* A model a request may choose by name ("model"), with the limits that hold
 * when it is chosen (a front end serving several models side by side). */
typedef struct {
    const char       *name;            /* non-empty, unique within the list */
    mg_duration_range duration;        /* from mg_duration_limits with this model */
    int               max_top_k;       /* its vocabulary size; <= 0: 2048 */
    int               audio_rate;      /* its sample rate; <= 0: 32000 */
} mg_request_model;

typedef struct {
    mg_duration_range duration;        /* from mg_duration_limits: decided there alone */
    mg_audio_format default_format;
    int             max_top_k;         /* vocabulary size; <= 0: 2048 */
    float           max_guidance;      /* <= 0: 10 */
    int             audio_rate;        /* the model's sample rate, for audio_prompt; <= 0: 32000 */
    /* The models "model" chooses from; n_models 0: none (the field is then
     * refused, and duration, max_top_k and audio_rate above apply). With
     * models, those three are the chosen model's and the ones above are
     * unused. */
    const mg_request_model *models;
    size_t          n_models;
    size_t          default_model;     /* index of the model a request without "model" gets */
} mg_request_limits;

typedef struct {
    char           *prompt;          /* malloc'd, trimmed; from the analysis if from_analysis */
    int             from_analysis;
    float           duration;
    int             has_temperature;
    float           temperature;
    int             has_top_k;
    int             top_k;
    int             has_top_p;
    float           top_p;
    int             has_guidance;
    float           guidance_scale;
    int             has_seed;
    uint64_t        seed;
    mg_audio_format format;
    mg_decoded_audio audio_prompt;   /* samples NULL: none; else at lim->audio_rate, 1 or 2
                                        channels as in the file (mg_audio_downmix for mono) */
    uint64_t        audio_prompt_hash; /* FNV-1a of the prompt file's bytes (0: none), for the ETag */
    int             has_extend_stride;
    float           extend_stride;
    size_t          model;           /* index into lim->models of the chosen model (0 without) */
} mg_request;

/* body[0..len): a JSON object. On error *req holds nothing to free. */
mg_code mg_request_parse_json(const char *body, size_t len, const mg_request_limits *lim,
                              mg_request *req, mg_error *err);
/* args[0..len): "a=b&c=d" (no leading '?'), same fields and validation. */
mg_code mg_request_parse_query(const char *args, size_t len, const mg_request_limits *lim,
                               mg_request *req, mg_error *err);
/* Frees req->prompt and the prompt audio; safe on a zeroed or already-freed request. */
void    mg_request_free(mg_request *req);

#endif
