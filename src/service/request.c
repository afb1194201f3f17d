/* Request parsing: JSON body or query string -> validated mg_request. Both
 * forms become a JSON object first (the query string is converted with the
 * field table's types), then one validator walks it. See request.h. */
#include "service/request.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "service/audio_prompt.h"
#include "service/prompt.h"

#define ANALYSIS_MAX_CHARS 100
#define ANALYSIS_MAX_ITEMS 8
#define DEFAULT_MAX_TOP_K  2048
#define DEFAULT_MAX_GUIDE  10.0
#define DEFAULT_AUDIO_RATE 32000

/* K_AUDIO: a string too long for a URL, JSON bodies only */
typedef enum { K_STRING, K_NUMBER, K_INTEGER, K_LIST, K_OBJECT, K_AUDIO } kind;

typedef enum {
    F_PROMPT, F_DURATION, F_TEMPERATURE, F_TOP_K, F_TOP_P, F_GUIDANCE, F_SEED, F_FORMAT,
    F_ANALYSIS, F_MOOD, F_ENERGY, F_GENRES, F_TEMPO, F_STYLE, F_VOCAL, F_INSTRUMENTS,
    F_EXTEND_STRIDE, F_AUDIO_PROMPT, F_MODEL, N_FIELDS
} field_id;

/* Ranges of numbers; the limits give duration's range and hi for top_k and
 * guidance_scale (see field_range). lo_open: lo itself is excluded. */
static const struct {
    field_id    id;
    const char *names[3];   /* accepted spellings; the first is the canonical one */
    kind        kind;
    int         analysis;   /* may sit inside "analysis" */
    double      lo, hi;
    int         lo_open;
} fields[] = {
    { F_PROMPT,      { "prompt" },                          K_STRING,  0, 0, 0, 0 },
    { F_DURATION,    { "duration" },                        K_NUMBER,  0, 0, 0, 0 },
    { F_TEMPERATURE, { "temperature" },                     K_NUMBER,  0, 0.1, 2, 0 },
    { F_TOP_K,       { "top_k" },                           K_INTEGER, 0, 0, 0, 0 },
    { F_TOP_P,       { "top_p" },                           K_NUMBER,  0, 0, 1, 1 },
    { F_GUIDANCE,    { "guidance_scale" },                  K_NUMBER,  0, 0, 0, 0 },
    { F_SEED,        { "seed" },                            K_INTEGER, 0, 0, MG_SEED_MAX, 0 },
    { F_FORMAT,      { "format" },                          K_STRING,  0, 0, 0, 0 },
    { F_ANALYSIS,    { "analysis" },                        K_OBJECT,  0, 0, 0, 0 },
    { F_MOOD,        { "mood" },                            K_STRING,  1, 0, 0, 0 },
    { F_ENERGY,      { "energy" },                          K_NUMBER,  1, 0, 10, 0 },
    { F_GENRES,      { "genres" },                          K_LIST,    1, 0, 0, 0 },
    { F_TEMPO,       { "tempo_bpm", "tempo", "tempoBpm" },  K_NUMBER,  1, 20, 300, 0 },
    { F_STYLE,       { "styleLevel", "style_level" },       K_NUMBER,  1, 0, 10, 0 },
    { F_VOCAL,       { "vocalType", "vocal_type" },         K_STRING,  1, 0, 0, 0 },
    { F_INSTRUMENTS, { "instruments" },                     K_LIST,    1, 0, 0, 0 },
    { F_EXTEND_STRIDE, { "extend_stride" },                 K_NUMBER,  0, 0, 0, 1 },
    { F_AUDIO_PROMPT, { MG_AUDIO_PROMPT_FIELD },            K_AUDIO,   0, 0, 0, 0 },
    { F_MODEL,       { "model" },                           K_STRING,  0, 0, 0, 0 },
};

/* Known front-end extras: accepted and ignored (request.h). */
static const char *const ignored_keys[] = {
    "description", "caption", "title", "colors", "dominantColors", "objects", "scene", "tags",
    "confidence", "timestamp", "id", "version", "key",
};

/* ---- small helpers ---- */

static int find_field(const char *key)
{
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        for (int j = 0; j < 3 && fields[i].names[j]; j++)
            if (strcmp(fields[i].names[j], key) == 0)
                return (int)i;
    return -1;
}

static int is_ignored(const char *key)
{
    for (size_t i = 0; i < sizeof ignored_keys / sizeof ignored_keys[0]; i++)
        if (strcmp(ignored_keys[i], key) == 0)
            return 1;
    return 0;
}

/* A request-supplied name, safe to print: printable ASCII, at most 40 bytes. */
static void show(const char *s, size_t n, char *out, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 4 < cap && k < 40; i++)
        out[k++] = s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"' ? s[i] : '?';
    if (k < n && k + 4 < cap) {
        memcpy(out + k, "...", 3);
        k += 3;
    }
    out[k] = '\0';
}

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* "FIELD: WHAT", naming FIELD. */
static mg_code invalid(mg_error *err, const char *field, const char *what)
{
    return mg_fail_field(err, MG_ERR_INVALID, field, "%s: %s", field, what);
}

/* ---- the collected fields of one request ---- */

typedef struct {
    const json_t *v[N_FIELDS];        /* NULL: not given (null counts as not given) */
    char          name[N_FIELDS][64]; /* the key as written, "analysis." prefixed inside it */
    int           top_analysis, wrapped_analysis;
} collected;

static mg_code collect(const json_t *obj, int wrapped, collected *c, mg_error *err);

static mg_code collect_one(const char *key, const json_t *val, int wrapped, collected *c,
                           mg_error *err)
{
    char name[64], shown[48];
    if (!key[0])
        return mg_fail_field(err, MG_ERR_INVALID, "", "request has an empty key");
    show(key, strlen(key), shown, sizeof shown);
    snprintf(name, sizeof name, "%s%s", wrapped ? "analysis." : "", shown);
    int i = find_field(key);
    if (i < 0) {
        if (is_ignored(key))
            return MG_OK;
        return invalid(err, name, "unknown field");
    }
    field_id id = fields[i].id;
    if (wrapped && !fields[i].analysis)
        return invalid(err, name, "not an analysis field, cannot be inside \"analysis\"");
    if (c->name[id][0]) {
        return mg_fail_field(err, MG_ERR_INVALID, name, "%s: given twice (as \"%s\" and \"%s\")",
                             name, c->name[id], name);
    }
    snprintf(c->name[id], sizeof c->name[id], "%s", name);
    if (json_is_null(val))
        return MG_OK;
    if (id == F_ANALYSIS) {
        if (!json_is_object(val))
            return invalid(err, name, "must be an object");
        return collect(val, 1, c, err);
    }
    c->v[id] = val;
    if (fields[i].analysis)
        *(wrapped ? &c->wrapped_analysis : &c->top_analysis) = 1;
    return MG_OK;
}

static mg_code collect(const json_t *obj, int wrapped, collected *c, mg_error *err)
{
    const char *key;
    json_t     *val;
    json_object_foreach((json_t *)obj, key, val) {
        mg_code rc = collect_one(key, val, wrapped, c, err);
        if (rc)
            return rc;
    }
    return MG_OK;
}

/* ---- value checks ---- */

static void field_range(field_id id, const mg_request_limits *lim, double *lo, double *hi,
                        int *lo_open)
{
    *lo = fields[id].lo, *hi = fields[id].hi, *lo_open = fields[id].lo_open;
    if (id == F_DURATION)
        *lo = lim->duration.min, *hi = lim->duration.max;
    else if (id == F_EXTEND_STRIDE)  /* the engine checks it against the window */
        *hi = lim->duration.max;
    else if (id == F_TOP_K)
        *hi = lim->max_top_k > 0 ? lim->max_top_k : DEFAULT_MAX_TOP_K;
    else if (id == F_GUIDANCE)
        *hi = lim->max_guidance > 0 ? lim->max_guidance : DEFAULT_MAX_GUIDE;
}

static mg_code get_number(const collected *c, field_id id, const mg_request_limits *lim,
                          double *out, mg_error *err)
{
    const json_t *v = c->v[id];
    const char   *name = c->name[id];
    int integer = fields[id].kind == K_INTEGER;
    if (!json_is_number(v))
        return invalid(err, name, integer ? "must be an integer" : "must be a number");
    double x = json_number_value(v);
    if (!isfinite(x))
        return invalid(err, name, "must be a finite number");
    if (integer && json_is_real(v) && x != floor(x))
        return invalid(err, name, "must be an integer");
    /* exact for integers past 2^53, where the double would round into range */
    if (json_is_integer(v) && (json_integer_value(v) > (json_int_t)MG_SEED_MAX ||
                               json_integer_value(v) < -(json_int_t)MG_SEED_MAX))
        return mg_fail_field(err, MG_ERR_INVALID, name, "%s: out of range: must be at most "
                             "%.16g (got %" JSON_INTEGER_FORMAT ")", name, MG_SEED_MAX,
                             json_integer_value(v));
    double lo, hi;
    int    lo_open;
    field_range(id, lim, &lo, &hi, &lo_open);
    if (!((lo_open ? x > lo : x >= lo) && x <= hi))
        return mg_fail_field(err, MG_ERR_INVALID, name, "%s: must be %s %.16g and at most %.16g "
                             "(got %.16g)", name, lo_open ? "above" : "at least", lo, hi, x);
    *out = x;
    return MG_OK;
}

/* A string value, trimmed of ASCII whitespace: 1..max_chars code points, no
 * control characters but tab, CR and LF. label names it in messages. */
static mg_code get_text(const json_t *v, const char *field, const char *label, size_t max_chars,
                        const char **s, size_t *n, mg_error *err)
{
    if (!json_is_string(v))
        return mg_fail_field(err, MG_ERR_INVALID, field, "%s: must be a string", label);
    const char *p = json_string_value(v);
    size_t      len = json_string_length(v);
    while (len > 0 && is_space((unsigned char)p[0]))
        p++, len--;
    while (len > 0 && is_space((unsigned char)p[len - 1]))
        len--;
    if (len == 0)
        return mg_fail_field(err, MG_ERR_INVALID, field, "%s: must not be empty or blank", label);
    size_t chars = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char b = (unsigned char)p[i];
        if ((b < 0x20 && b != '\t' && b != '\n' && b != '\r') || b == 0x7f)
            return mg_fail_field(err, MG_ERR_INVALID, field,
                                 "%s: must not contain control characters", label);
        chars += (b & 0xc0) != 0x80;  /* valid UTF-8 (jansson, or checked): count lead bytes */
    }
    if (chars > max_chars)
        return mg_fail_field(err, MG_ERR_INVALID, field,
                             "%s: too long (%zu characters, at most %zu)", label, chars, max_chars);
    *s = p;
    *n = len;
    return MG_OK;
}

/* An analysis list: up to ANALYSIS_MAX_ITEMS strings into items[]. */
static mg_code get_list(const collected *c, field_id id, const char **items, size_t *n,
                        mg_error *err)
{
    const json_t *v = c->v[id];
    const char   *name = c->name[id];
    if (!json_is_array(v))
        return invalid(err, name, "must be an array of strings");
    if (json_array_size(v) > ANALYSIS_MAX_ITEMS)
        return mg_fail_field(err, MG_ERR_INVALID, name, "%s: too many items (%zu, at most %d)",
                             name, json_array_size(v), ANALYSIS_MAX_ITEMS);
    *n = 0;
    for (size_t i = 0; i < json_array_size(v); i++) {
        char        label[96];
        const char *s;
        size_t      len;
        snprintf(label, sizeof label, "%s[%zu]", name, i);
        mg_code rc = get_text(json_array_get(v, i), name, label, ANALYSIS_MAX_CHARS, &s, &len, err);
        if (rc)
            return rc;
        items[(*n)++] = json_string_value(json_array_get(v, i));
    }
    return MG_OK;
}

/* The caller's range, not a second decision: one that mg_duration_limits could not give. */
static mg_code check_range(const mg_duration_range *d, const char *whose, mg_error *err)
{
    if (!(d->min > 0 && d->min <= d->dflt && d->dflt <= d->max) || !isfinite(d->max))
        return mg_fail(err, MG_ERR_INVALID, "request limits: the duration range%s%s is not one "
                       "from mg_duration_limits", whose ? " of model " : "", whose ? whose : "");
    return MG_OK;
}

static mg_code check_limits(const mg_request_limits *lim, mg_error *err)
{
    if (!lim)
        return mg_fail(err, MG_ERR_INVALID, "request: NULL limits");
    if (lim->n_models == 0)
        return check_range(&lim->duration, NULL, err);
    if (!lim->models || lim->default_model >= lim->n_models)
        return mg_fail(err, MG_ERR_INVALID, "request limits: default_model %zu is not one of "
                       "the %zu models", lim->default_model, lim->n_models);
    for (size_t i = 0; i < lim->n_models; i++) {
        if (!lim->models[i].name || !lim->models[i].name[0])
            return mg_fail(err, MG_ERR_INVALID, "request limits: model %zu has no name", i);
        mg_code rc = check_range(&lim->models[i].duration, lim->models[i].name, err);
        if (rc)
            return rc;
    }
    return MG_OK;
}

/* "a, b, c" into out (cut with "..." when it does not fit): the names an
 * unknown model's error offers. */
static void model_names(const mg_request_limits *lim, char *out, size_t cap)
{
    size_t k = 0;
    out[0] = '\0';
    for (size_t i = 0; i < lim->n_models; i++) {
        int n = snprintf(out + k, cap - k, "%s%s", i ? ", " : "", lim->models[i].name);
        if (n < 0 || (size_t)n >= cap - k) {
            snprintf(out + (cap > 4 ? cap - 4 : 0), cap > 4 ? 4 : cap, "...");
            return;
        }
        k += (size_t)n;
    }
}

/* The model the request chooses ("model", else the default) into
 * req->model, and the limits every other field is checked against: the
 * chosen model's. */
static mg_code choose_model(const collected *c, const mg_request_limits *lim, mg_request *req,
                            mg_request_limits *eff, mg_error *err)
{
    const json_t *v = c->v[F_MODEL];
    const char   *name = c->name[F_MODEL];
    *eff = *lim;
    req->model = 0;
    if (lim->n_models == 0) {
        if (v)
            return invalid(err, name, "this server does not choose models by name (leave it out)");
        return MG_OK;
    }
    req->model = lim->default_model;
    if (v) {
        if (!json_is_string(v))
            return invalid(err, name, "must be a string (the name of a model)");
        const char *s = json_string_value(v);
        size_t      n = json_string_length(v);
        size_t      i;
        for (i = 0; i < lim->n_models; i++)
            if (strlen(lim->models[i].name) == n && memcmp(lim->models[i].name, s, n) == 0)
                break;
        if (i == lim->n_models) {
            char shown[48], names[256];
            show(s, n, shown, sizeof shown);
            model_names(lim, names, sizeof names);
            return mg_fail_field(err, MG_ERR_INVALID, name, "%s: unknown model \"%s\" (this "
                                 "server has: %s)", name, shown, names);
        }
        req->model = i;
    }
    const mg_request_model *m = &lim->models[req->model];
    eff->duration = m->duration;
    eff->max_top_k = m->max_top_k;
    eff->audio_rate = m->audio_rate;
    return MG_OK;
}

/* The analysis fields into a prompt (only called when there is no prompt). */
static mg_code analysis_prompt(const collected *c, const mg_request_limits *lim, char **out,
                               mg_error *err)
{
    const char *genres[ANALYSIS_MAX_ITEMS], *instruments[ANALYSIS_MAX_ITEMS];
    mg_analysis a;
    memset(&a, 0, sizeof a);
    a.mood = c->v[F_MOOD] ? json_string_value(c->v[F_MOOD]) : NULL;
    a.vocal_type = c->v[F_VOCAL] ? json_string_value(c->v[F_VOCAL]) : NULL;
    double x;
    mg_code rc = MG_OK;
    if (c->v[F_ENERGY] && !(rc = get_number(c, F_ENERGY, lim, &x, err)))
        a.has_energy = 1, a.energy = (float)x;
    if (!rc && c->v[F_TEMPO] && !(rc = get_number(c, F_TEMPO, lim, &x, err)))
        a.has_tempo = 1, a.tempo_bpm = (float)x;
    if (!rc && c->v[F_STYLE] && !(rc = get_number(c, F_STYLE, lim, &x, err)))
        a.has_style = 1, a.style_level = (float)x;
    if (!rc && c->v[F_GENRES] && !(rc = get_list(c, F_GENRES, genres, &a.n_genres, err)))
        a.genres = genres;
    if (!rc && c->v[F_INSTRUMENTS] &&
        !(rc = get_list(c, F_INSTRUMENTS, instruments, &a.n_instruments, err)))
        a.instruments = instruments;
    if (rc)
        return rc;
    return mg_prompt_from_analysis(&a, out, err);
}

/* req->prompt: the prompt field, else the prompt built from the analysis. */
static mg_code text_prompt(const collected *c, const mg_request_limits *lim, mg_request *req,
                           mg_error *err)
{
    const char *s;
    size_t      n;
    mg_code     rc;
    char *analysis = NULL;
    int   has_analysis = c->top_analysis || c->wrapped_analysis;
    if (has_analysis && (rc = analysis_prompt(c, lim, &analysis, err)))
        return rc;
    if (c->v[F_PROMPT]) {
        free(analysis);  /* the prompt wins */
        if ((rc = get_text(c->v[F_PROMPT], "prompt", "prompt", MG_PROMPT_MAX_CHARS, &s, &n, err)))
            return rc;
        if (!(req->prompt = strndup(s, n)))
            return mg_fail(err, MG_ERR_NOMEM, "request: out of memory");
        return MG_OK;
    }
    if (!has_analysis)
        return mg_fail_field(err, MG_ERR_INVALID, "prompt",
                             "prompt: required (or give analysis fields such as mood and genres)");
    req->prompt = analysis;
    req->from_analysis = 1;
    return MG_OK;
}

/* Walks a parsed request object into *req. */
static mg_code from_object(const json_t *root, const mg_request_limits *all, mg_request *req,
                           mg_error *err)
{
    collected c;
    memset(&c, 0, sizeof c);
    mg_code rc = collect(root, 0, &c, err);
    if (rc)
        return rc;
    /* first: the other fields' limits are the chosen model's */
    mg_request_limits  chosen;
    const mg_request_limits *lim = &chosen;
    if ((rc = choose_model(&c, all, req, &chosen, err)))
        return rc;
    if (c.top_analysis && c.wrapped_analysis)
        return mg_fail_field(err, MG_ERR_INVALID, "analysis", "analysis: analysis fields are "
                             "given both at the top level and inside \"analysis\"");

    /* every given field is checked, whichever form wins */
    const char *s;
    size_t      n;
    if (c.v[F_MOOD] && (rc = get_text(c.v[F_MOOD], c.name[F_MOOD], c.name[F_MOOD],
                                      ANALYSIS_MAX_CHARS, &s, &n, err)))
        return rc;
    if (c.v[F_VOCAL] && (rc = get_text(c.v[F_VOCAL], c.name[F_VOCAL], c.name[F_VOCAL],
                                       ANALYSIS_MAX_CHARS, &s, &n, err)))
        return rc;
    double v[F_SEED + 1] = {0};
    static const field_id numeric[] = {F_DURATION, F_TEMPERATURE, F_TOP_K, F_TOP_P, F_GUIDANCE, F_SEED};
    for (size_t i = 0; i < sizeof numeric / sizeof numeric[0]; i++)
        if (c.v[numeric[i]] && (rc = get_number(&c, numeric[i], lim, &v[numeric[i]], err)))
            return rc;
    req->duration = (float)(c.v[F_DURATION] ? v[F_DURATION] : lim->duration.dflt);
    if ((req->has_temperature = c.v[F_TEMPERATURE] != NULL))
        req->temperature = (float)v[F_TEMPERATURE];
    if ((req->has_top_k = c.v[F_TOP_K] != NULL))
        req->top_k = (int)v[F_TOP_K];
    if ((req->has_top_p = c.v[F_TOP_P] != NULL))
        req->top_p = (float)v[F_TOP_P];
    if ((req->has_guidance = c.v[F_GUIDANCE] != NULL))
        req->guidance_scale = (float)v[F_GUIDANCE];
    if ((req->has_seed = c.v[F_SEED] != NULL))
        req->seed = (uint64_t)v[F_SEED];
    req->format = lim->default_format;
    if (c.v[F_FORMAT]) {
        const char *name = c.name[F_FORMAT];
        if (!json_is_string(c.v[F_FORMAT]))
            return invalid(err, name, "must be a string");
        rc = mg_audio_format_parse(json_string_value(c.v[F_FORMAT]),
                                   json_string_length(c.v[F_FORMAT]), &req->format, err);
        if (rc) {
            if (err)
                snprintf(err->field, sizeof err->field, "%s", name);
            return rc;
        }
    }

    double stride;
    if (c.v[F_EXTEND_STRIDE] && (rc = get_number(&c, F_EXTEND_STRIDE, lim, &stride, err)))
        return rc;
    if ((req->has_extend_stride = c.v[F_EXTEND_STRIDE] != NULL))
        req->extend_stride = (float)stride;
    if ((rc = text_prompt(&c, lim, req, err)))
        return rc;
    /* last: the costly check, once everything cheap has passed */
    const json_t *audio = c.v[F_AUDIO_PROMPT];
    if (!audio)
        return MG_OK;
    if (!json_is_string(audio))
        return invalid(err, c.name[F_AUDIO_PROMPT], "must be a string (a data URL or base64)");
    return mg_audio_prompt_parse(json_string_value(audio), json_string_length(audio),
                                 lim->audio_rate > 0 ? lim->audio_rate : DEFAULT_AUDIO_RATE,
                                 &req->audio_prompt, &req->audio_prompt_hash, err);
}

static mg_code finish(mg_code rc, mg_request *req)
{
    if (rc)
        mg_request_free(req);
    return rc;
}

/* ---- JSON ---- */

/* jansson's duplicate-key message ends in: near '"KEY"' */
static void duplicate_key(const char *text, char *out, size_t cap)
{
    const char *p = strstr(text, "near '\"");
    out[0] = '\0';
    if (!p)
        return;
    p += 7;
    size_t n = strlen(p);
    if (n >= 2 && p[n - 1] == '\'' && p[n - 2] == '"')
        n -= 2;
    show(p, n, out, cap);
}

/* What both parsers do first: an empty request, and limits that make sense. */
static mg_code parse_begin(const mg_request_limits *lim, mg_request *req, mg_error *err)
{
    if (!req)
        return mg_fail(err, MG_ERR_INVALID, "request: NULL argument");
    memset(req, 0, sizeof *req);
    return check_limits(lim, err);
}

mg_code mg_request_parse_json(const char *body, size_t len, const mg_request_limits *lim,
                              mg_request *req, mg_error *err)
{
    mg_code rc = parse_begin(lim, req, err);
    if (rc)
        return rc;
    if (len == 0 || !body)
        return mg_fail_field(err, MG_ERR_INVALID, "", "request body is empty");

    /* \u0000 is parsed so that the validators can name the field it is in */
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!root) {
        if (json_error_code(&je) == json_error_duplicate_key) {
            char key[64];
            duplicate_key(je.text, key, sizeof key);
            return mg_fail_field(err, MG_ERR_INVALID, key,
                                 "%s: duplicate key (each field may appear once)", key);
        }
        if (json_error_code(&je) == json_error_out_of_memory)
            return mg_fail(err, MG_ERR_NOMEM, "request: out of memory");
        return mg_fail_field(err, MG_ERR_INVALID, "", "request body is not valid JSON: %s "
                             "(line %d, column %d)", je.text, je.line, je.column);
    }
    if (!json_is_object(root))
        rc = mg_fail_field(err, MG_ERR_INVALID, "", "request body must be a JSON object");
    else
        rc = from_object(root, lim, req, err);
    json_decref(root);
    return finish(rc, req);
}

/* ---- query string ---- */

static int hex(unsigned char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Decodes s[0..n) ('+' and %XX) into a malloc'd NUL-terminated string.
 * Returns MG_OK, or an error naming field (label starts the message). */
static mg_code url_decode(const char *s, size_t n, const char *field, const char *label,
                          char **out, size_t *out_len, mg_error *err)
{
    char *d = malloc(n + 1);
    if (!d)
        return mg_fail(err, MG_ERR_NOMEM, "request: out of memory");
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+') {
            d[k++] = ' ';
        } else if (s[i] == '%') {
            if (n - i < 3 || hex((unsigned char)s[i + 1]) < 0 || hex((unsigned char)s[i + 2]) < 0) {
                free(d);
                return mg_fail_field(err, MG_ERR_INVALID, field,
                                     "%s: bad %%-escape in the query string", label);
            }
            d[k++] = (char)(hex((unsigned char)s[i + 1]) * 16 + hex((unsigned char)s[i + 2]));
            i += 2;
        } else {
            d[k++] = s[i];
        }
    }
    d[k] = '\0';
    for (size_t i = 0; i < k;) {
        size_t m = d[i] ? mg_utf8_seq_len((const unsigned char *)d + i, k - i) : 0;
        if (m == 0) {
            const char *what = d[i] ? "invalid UTF-8" : "NUL byte (%00)";
            free(d);
            return mg_fail_field(err, MG_ERR_INVALID, field, "%s: %s in the query string", label,
                                 what);
        }
        i += m;
    }
    *out = d;
    *out_len = k;
    return MG_OK;
}

/* JSON number grammar: -?D+(.D+)?([eE][+-]?D+)? */
static int number_syntax(const char *s, size_t n, int *integral)
{
    size_t i = 0, d;
    *integral = 1;
    if (i < n && s[i] == '-')
        i++;
    for (d = i; i < n && s[i] >= '0' && s[i] <= '9'; i++) {}
    if (i == d)
        return 0;
    if (i < n && s[i] == '.') {
        *integral = 0;
        for (d = ++i; i < n && s[i] >= '0' && s[i] <= '9'; i++) {}
        if (i == d)
            return 0;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        *integral = 0;
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        for (d = i; i < n && s[i] >= '0' && s[i] <= '9'; i++) {}
        if (i == d)
            return 0;
    }
    return i == n;
}

/* A decoded query value to JSON by the field's kind; *out NULL + MG_OK never. */
static mg_code query_value(int fi, const char *name, const char *v, size_t n, json_t **out,
                           mg_error *err)
{
    *out = NULL;
    switch (fields[fi].kind) {
    case K_STRING:
        *out = json_stringn(v, n);
        break;
    case K_NUMBER:
    case K_INTEGER: {
        int integral;
        if (!number_syntax(v, n, &integral)) {
            char shown[48];
            show(v, n, shown, sizeof shown);
            return mg_fail_field(err, MG_ERR_INVALID, name, "%s: must be %s (got \"%s\")", name,
                                 fields[fi].kind == K_INTEGER ? "an integer" : "a number", shown);
        }
        errno = 0;
        if (integral && n <= 18) {
            *out = json_integer(strtoll(v, NULL, 10));
        } else {
            double x = strtod(v, NULL);  /* v is NUL-terminated (url_decode) */
            if (!isfinite(x))
                return invalid(err, name, "must be a finite number");
            *out = json_real(x);
        }
        break;
    }
    case K_LIST: {
        json_t *arr = json_array();
        if (!arr)
            break;
        for (size_t i = 0; n > 0 && i <= n;) {
            size_t e = i;
            while (e < n && v[e] != ',')
                e++;
            if (json_array_append_new(arr, json_stringn(v + i, e - i))) {
                json_decref(arr);
                arr = NULL;
                break;
            }
            i = e + 1;
        }
        *out = arr;
        break;
    }
    case K_OBJECT:
        return invalid(err, name, "cannot be given in a query string; give the analysis "
                       "fields directly");
    case K_AUDIO:
        return invalid(err, name, "cannot be given in a query string (an audio file is too "
                       "long for a URL); POST it in a JSON body");
    }
    if (!*out)
        return mg_fail(err, MG_ERR_NOMEM, "request: out of memory");
    return MG_OK;
}

/* One "key=value" pair into obj. */
static mg_code query_pair(const char *p, size_t n, json_t *obj, mg_error *err)
{
    const char *eq = memchr(p, '=', n);
    size_t      klen = eq ? (size_t)(eq - p) : n;
    char       *key, *val = NULL, name[48];
    size_t      kdec, vdec;
    mg_code     rc = url_decode(p, klen, "", "query string key", &key, &kdec, err);
    if (rc)
        return rc;
    show(key, kdec, name, sizeof name);
    if (strcmp(key, "raw") == 0 && !json_object_get(obj, key)) {
        /* accepted and ignored; kept as null so a second "raw" is a duplicate */
        rc = json_object_set_new(obj, key, json_null()) ? MG_ERR_NOMEM : MG_OK;
        free(key);
        return rc ? mg_fail(err, rc, "request: out of memory") : MG_OK;
    }
    if (json_object_get(obj, key)) {
        free(key);
        return mg_fail_field(err, MG_ERR_INVALID, name, "%s: given more than once", name);
    }
    json_t *jv = NULL;
    int     fi = find_field(key);
    if (fi < 0) {
        jv = json_null();  /* from_object ignores it or reports it as unknown */
    } else {
        const char *v = eq ? eq + 1 : p + n;
        if (!(rc = url_decode(v, (size_t)(p + n - v), name, name, &val, &vdec, err)))
            rc = query_value(fi, name, val, vdec, &jv, err);
    }
    if (!rc && json_object_set_new(obj, key, jv))
        rc = mg_fail(err, MG_ERR_NOMEM, "request: out of memory");
    free(key);
    free(val);
    return rc;
}

mg_code mg_request_parse_query(const char *args, size_t len, const mg_request_limits *lim,
                               mg_request *req, mg_error *err)
{
    mg_code rc = parse_begin(lim, req, err);
    if (rc)
        return rc;
    if (!args)
        len = 0;
    json_t *obj = json_object();
    if (!obj)
        return mg_fail(err, MG_ERR_NOMEM, "request: out of memory");
    for (size_t i = 0; i < len && !rc;) {
        const char *amp = memchr(args + i, '&', len - i);
        size_t      e = amp ? (size_t)(amp - args) : len;
        if (e > i)
            rc = query_pair(args + i, e - i, obj, err);
        i = e + 1;
    }
    if (!rc) {
        json_object_del(obj, "raw");
        rc = from_object(obj, lim, req, err);
    }
    json_decref(obj);
    return finish(rc, req);
}

void mg_request_free(mg_request *req)
{
    if (!req)
        return;
    free(req->prompt);
    req->prompt = NULL;
    mg_decoded_audio_free(&req->audio_prompt);
}
