/* Analysis (mood, energy, genres, tempo, style, vocals, instruments) to a
 * MusicGen prompt: table look-ups, then a fixed list of phrases trimmed to
 * 10..25 words. See prompt.h for the layout. */
#include "service/prompt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MIN_WORDS   10
#define MAX_WORDS   25
#define MAX_NAMES   12   /* names + synonyms per table row */
#define CLEAN_WORDS 3    /* words kept from a free-text value */
#define CLEAN_CAP   48   /* bytes kept from a free-text value, NUL included */
#define MAX_INSTR   3

/* ---- tables ---- */

typedef struct {
    const char *names[MAX_NAMES]; /* cleaned form: lower case, single spaces */
    const char *words;            /* descriptors put in the prompt */
} mood_entry;

static const mood_entry moods[] = {
    { { "joyful", "happy", "cheerful", "joy", "playful", "fun", "upbeat", "bright", "glad",
        "delighted", "excited" }, "uplifting cheerful" },
    { { "sad", "melancholic", "melancholy", "sorrowful", "gloomy", "depressed", "lonely",
        "heartbroken", "somber", "sombre", "grief" }, "melancholic emotional" },
    { { "calm", "peaceful", "serene", "relaxed", "relaxing", "tranquil", "chill", "soothing",
        "quiet", "gentle" }, "peaceful serene" },
    { { "energetic", "energized", "lively", "vibrant", "dynamic" }, "energetic exciting" },
    { { "romantic", "love", "loving", "tender", "sensual", "intimate" }, "romantic tender" },
    { { "dark", "mysterious", "ominous", "eerie", "spooky", "sinister", "creepy", "haunting" },
      "dark mysterious" },
    { { "angry", "aggressive", "furious", "rage", "fierce" }, "aggressive intense" },
    { { "epic", "heroic", "triumphant", "majestic", "grand", "powerful" }, "epic triumphant" },
    { { "nostalgic", "wistful", "sentimental", "bittersweet" }, "nostalgic wistful" },
    { { "dreamy", "ethereal", "magical", "whimsical", "surreal" }, "dreamy ethereal" },
    { { "hopeful", "inspiring", "inspirational", "optimistic", "uplifting", "motivational" },
      "hopeful inspiring" },
    { { "tense", "anxious", "suspenseful", "nervous", "dramatic" }, "tense suspenseful" },
    { { "contemplative", "reflective", "thoughtful", "pensive", "introspective",
        "meditative" }, "reflective contemplative" },
};

typedef struct {
    const char *name;             /* as written in the prompt */
    const char *names[MAX_NAMES]; /* synonyms, cleaned form */
    const char *instruments[MAX_INSTR];
} genre_entry;

static const genre_entry genres[] = {
    { "electronic", { "electronic", "edm", "electro", "electronica", "dance", "techno", "house",
                      "trance", "synthwave", "dubstep" },
      { "synthesizers", "electronic drums", "bass" } },
    { "pop", { "pop", "k-pop", "kpop", "synthpop", "synth-pop", "dance-pop" },
      { "piano", "synthesizers", "drums" } },
    { "rock", { "rock", "alternative", "indie", "punk", "grunge" },
      { "electric guitar", "bass guitar", "drums" } },
    { "metal", { "metal", "heavy metal", "metalcore", "thrash" },
      { "distorted guitars", "bass guitar", "double kick drums" } },
    { "jazz", { "jazz", "swing", "bebop", "smooth jazz" },
      { "piano", "upright bass", "brushed drums" } },
    { "blues", { "blues" }, { "electric guitar", "harmonica", "bass" } },
    { "classical", { "classical", "orchestral", "symphonic", "baroque", "chamber" },
      { "strings", "piano", "woodwinds" } },
    { "cinematic", { "cinematic", "soundtrack", "film score", "score", "trailer" },
      { "orchestra", "choir", "timpani" } },
    { "hip hop", { "hip hop", "hip-hop", "hiphop", "rap", "trap" },
      { "808 bass", "drum machine", "samples" } },
    { "r&b", { "r&b", "rnb", "r and b", "soul", "neo soul" },
      { "electric piano", "bass", "drums" } },
    { "funk", { "funk", "disco", "funky" }, { "slap bass", "rhythm guitar", "brass" } },
    { "folk", { "folk", "acoustic", "singer-songwriter", "americana" },
      { "acoustic guitar", "fiddle", "light percussion" } },
    { "country", { "country", "bluegrass" }, { "acoustic guitar", "pedal steel", "fiddle" } },
    { "reggae", { "reggae", "ska", "dub" }, { "offbeat guitar", "bass", "drums" } },
    { "ambient", { "ambient", "new age", "drone", "chillout" },
      { "synth pads", "soft piano", "textures" } },
    { "lo-fi", { "lo-fi", "lofi", "lo fi", "chillhop" },
      { "mellow piano", "vinyl crackle", "soft drums" } },
    { "latin", { "latin", "salsa", "bossa nova", "samba", "reggaeton", "flamenco" },
      { "nylon guitar", "congas", "piano" } },
};

/* Unknown genre, or none: neutral instruments. */
static const char *const default_instruments[MAX_INSTR] = { "piano", "bass", "drums" };

typedef struct {
    const char *names[MAX_NAMES];
    const char *words, *shorter;  /* shorter: NULL when there is none */
} vocal_entry;

static const vocal_entry vocals[] = {
    { { "instrumental", "none", "no vocals", "no vocal", "without vocals", "no", "no voice" },
      "instrumental, no vocals", "instrumental" },
    { { "male and female", "mixed", "duet", "both" }, "male and female vocals", NULL },
    { { "male", "male vocals", "male vocal", "man", "men", "baritone", "tenor" },
      "male vocals", NULL },
    { { "female", "female vocals", "female vocal", "woman", "women", "soprano" },
      "female vocals", NULL },
    { { "choir", "choral", "chorus", "choir vocals" }, "choir vocals", NULL },
    { { "rap", "rapping", "rapper", "rap vocals" }, "rap vocals", NULL },
    { { "humming", "hum" }, "soft humming vocals", "humming vocals" },
    { { "whisper", "whispered", "whispering" }, "whispered vocals", NULL },
    { { "spoken", "spoken word", "narration" }, "spoken word vocals", "spoken vocals" },
    /* generic: last, matched on the whole text only (see plan_vocal) */
    { { "vocals", "vocal", "singing", "sung", "voice", "lyrics" }, "lead vocals", NULL },
};

/* Bands: the first row with value < upto. */
typedef struct {
    float       upto;
    const char *words, *shorter;
} band;

static const band tempo_bands[] = {
    { 60,       "very slow tempo",        "slow tempo" },
    { 80,       "slow tempo",             NULL },
    { 100,      "relaxed moderate tempo", "moderate tempo" },
    { 120,      "moderate tempo",         NULL },
    { 140,      "moderate upbeat tempo",  "upbeat tempo" },
    { 165,      "fast tempo",             NULL },
    { INFINITY, "very fast tempo",        "fast tempo" },
};

static const band energy_bands[] = {
    { 2.5f,     "soft gentle dynamics",           NULL },
    { 4.5f,     "calm restrained dynamics",       "restrained dynamics" },
    { 6.5f,     "balanced dynamics",              NULL },
    { 8.5f,     "powerful driving dynamics",      "driving dynamics" },
    { INFINITY, "explosive high energy dynamics", "explosive dynamics" },
};

/* Mood words when no mood is given, by energy. */
static const band energy_moods[] = {
    { 2.5f,     "calm gentle",       NULL },
    { 4.5f,     "relaxed mellow",    NULL },
    { 6.5f,     "warm balanced",     NULL },
    { 8.5f,     "energetic lively",  NULL },
    { INFINITY, "intense energetic", NULL },
};

typedef struct {
    float       upto;
    const char *era, *production, *shorter;
} style_band;

static const style_band style_bands[] = {
    { 2.5f,     "vintage",      "warm lo-fi analog texture",                     "lo-fi texture" },
    { 4.5f,     "retro",        "warm analog recording",                         "analog warmth" },
    { 6.5f,     "contemporary", "clean balanced mix",                            "clean mix" },
    { 8.5f,     "modern",       "pristine clarity with professional mastering",
      "professional mastering" },
    { INFINITY, "futuristic",   "cutting-edge polished sound design",            "polished sound" },
};

static const char quality_marker[] = "high quality production";

/* Added in order while the prompt has fewer than MIN_WORDS words. */
static const char *const fillers[] = {
    "clear stereo mix", "rich full sound", "well balanced arrangement", "smooth transitions",
};

/* ---- the phrase plan and its reductions ---- */

enum { S_GENRE, S_MOOD, S_TEMPO, S_INSTR, S_PRODUCTION, S_VOCAL, S_ENERGY, S_QUALITY, N_SLOTS };

typedef enum { R_SHORTEN, R_DROP, R_INSTRUMENTS } reduce_kind;

/* Applied in order, while the prompt has more than MAX_WORDS words. After the
 * last one the longest possible prompt is era + 3-word genre, one mood word,
 * "with" + one 3-word instrument and the quality marker: 12 words. */
static const struct {
    reduce_kind kind;
    int         arg;   /* slot, or instrument count */
} reductions[] = {
    { R_SHORTEN,     S_VOCAL },
    { R_SHORTEN,     S_GENRE },   /* drops the second genre */
    { R_INSTRUMENTS, 2 },
    { R_SHORTEN,     S_PRODUCTION },
    { R_SHORTEN,     S_ENERGY },
    { R_DROP,        S_ENERGY },
    { R_DROP,        S_PRODUCTION },
    { R_INSTRUMENTS, 1 },
    { R_SHORTEN,     S_TEMPO },
    { R_SHORTEN,     S_MOOD },    /* first word only */
    { R_DROP,        S_TEMPO },
    { R_DROP,        S_VOCAL },
};

typedef struct {
    const char *text[N_SLOTS];     /* NULL: left out; S_INSTR is built from instr[] */
    const char *shorter[N_SLOTS];  /* NULL: cannot be shortened */
    char        instr[MAX_INSTR][CLEAN_CAP];
    int         n_instr, instr_limit;
    char        genre[4 * CLEAN_CAP], genre_short[2 * CLEAN_CAP];
    char        mood[2 * CLEAN_CAP], mood_short[CLEAN_CAP];
    char        vocal[2 * CLEAN_CAP];
} plan;

/* ---- helpers ---- */

size_t mg_utf8_seq_len(const unsigned char *s, size_t len)
{
    if (len == 0)
        return 0;
    unsigned c = s[0];
    size_t n;
    unsigned min;
    if (c < 0x80)
        return 1;
    else if ((c & 0xe0) == 0xc0)
        n = 2, min = 0x80, c &= 0x1f;
    else if ((c & 0xf0) == 0xe0)
        n = 3, min = 0x800, c &= 0x0f;
    else if ((c & 0xf8) == 0xf0)
        n = 4, min = 0x10000, c &= 0x07;
    else
        return 0;
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    return n;
}

static int is_word_byte(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '&' || c == '-' || c == '\'';
}

static int is_edge_punct(char c) { return c == '&' || c == '-' || c == '\''; }

/* Appends word w[0..n) (edge punctuation stripped) to out (cap bytes) if it
 * fits; returns 1 if a word was added. */
static int add_word(char *out, size_t cap, size_t *olen, const char *w, size_t n)
{
    while (n > 0 && is_edge_punct(w[0]))
        w++, n--;
    while (n > 0 && is_edge_punct(w[n - 1]))
        n--;
    if (n == 0)
        return 0;
    size_t need = n + (*olen ? 1 : 0);
    if (*olen + need >= cap)
        return 0;
    if (*olen)
        out[(*olen)++] = ' ';
    memcpy(out + *olen, w, n);
    *olen += n;
    out[*olen] = '\0';
    return 1;
}

/* Cleans free text into out[cap]: ASCII lower-cased; words of letters,
 * digits, & - ' and valid UTF-8; anything else separates words; at most
 * max_words words, whole words only. Returns the number of words. */
static int clean_words(const char *s, char *out, size_t cap, int max_words)
{
    char   w[CLEAN_CAP];
    size_t wlen = 0, olen = 0, len = s ? strlen(s) : 0;
    int    words = 0;
    out[0] = '\0';
    for (size_t i = 0; i <= len && words < max_words;) {
        const unsigned char *p = (const unsigned char *)s + i;
        size_t k = i < len ? mg_utf8_seq_len(p, len - i) : 0;
        if (i < len && (k > 1 || (k == 1 && is_word_byte(p[0])))) {
            if (wlen + k < sizeof w) {
                for (size_t j = 0; j < k; j++)
                    w[wlen++] = (char)(p[j] >= 'A' && p[j] <= 'Z' ? p[j] + 32 : p[j]);
            }
            i += k;
            continue;
        }
        words += add_word(out, cap, &olen, w, wlen);
        wlen = 0;
        i += k ? k : 1;
    }
    return words;
}

static int names_match(const char *const *names, const char *s)
{
    for (int i = 0; i < MAX_NAMES && names[i]; i++)
        if (strcmp(names[i], s) == 0)
            return 1;
    return 0;
}

static int find_mood(const char *s)
{
    for (size_t i = 0; i < sizeof moods / sizeof moods[0]; i++)
        if (names_match(moods[i].names, s))
            return (int)i;
    return -1;
}

static int find_genre(const char *s)
{
    for (size_t i = 0; i < sizeof genres / sizeof genres[0]; i++)
        if (names_match(genres[i].names, s))
            return (int)i;
    return -1;
}

static int find_vocal(const char *s)
{
    for (size_t i = 0; i < sizeof vocals / sizeof vocals[0]; i++)
        if (names_match(vocals[i].names, s))
            return (int)i;
    return -1;
}

/* The table row for cleaned text: the whole text, else its first word that
 * names a row; -1 if none does. */
static int lookup(const char *clean, int (*find)(const char *))
{
    int r = find(clean);
    for (const char *p = clean; r < 0 && *p;) {
        const char *e = strchr(p, ' ');
        size_t      n = e ? (size_t)(e - p) : strlen(p);
        char        w[CLEAN_CAP];
        memcpy(w, p, n);
        w[n] = '\0';
        r = find(w);
        p += n + (e ? 1 : 0);
    }
    return r;
}

static const band *pick_band(const band *b, size_t n, float v)
{
    for (size_t i = 0; i + 1 < n; i++)
        if (v < b[i].upto)
            return &b[i];
    return &b[n - 1];
}

static const style_band *pick_style(float v)
{
    size_t n = sizeof style_bands / sizeof style_bands[0];
    for (size_t i = 0; i + 1 < n; i++)
        if (v < style_bands[i].upto)
            return &style_bands[i];
    return &style_bands[n - 1];
}

static float clamp_level(int has, float v)
{
    if (!has || isnan(v))
        return 5.0f;
    return v < 0 ? 0 : v > 10 ? 10 : v;
}

/* Copies the first word of s into out[cap]. */
static void first_word(const char *s, char *out, size_t cap)
{
    size_t n = strcspn(s, " ,");
    if (n >= cap)
        n = cap - 1;
    memcpy(out, s, n);
    out[n] = '\0';
}

static int add_instrument(plan *p, const char *clean)
{
    if (!clean[0] || p->n_instr >= MAX_INSTR)
        return 0;
    for (int i = 0; i < p->n_instr; i++)
        if (strcmp(p->instr[i], clean) == 0)
            return 0;
    snprintf(p->instr[p->n_instr++], CLEAN_CAP, "%s", clean);
    return 1;
}

/* ---- building ---- */

static void plan_genre(plan *p, const mg_analysis *a, const style_band *style, int *rows)
{
    char names[2][CLEAN_CAP];
    int  n = 0;
    for (size_t i = 0; i < a->n_genres && n < 2; i++) {
        char c[CLEAN_CAP];
        if (!a->genres || !a->genres[i] || clean_words(a->genres[i], c, sizeof c, CLEAN_WORDS) == 0)
            continue;
        int r = lookup(c, find_genre);
        /* a known name is written the table's way; unknown text as cleaned
         * (it keeps "progressive" in "progressive rock", the row gives drums) */
        const char *name = r >= 0 && find_genre(c) >= 0 ? genres[r].name : c;
        if (n == 1 && strcmp(names[0], name) == 0)
            continue;
        snprintf(names[n], CLEAN_CAP, "%s", name);
        rows[n++] = r;
    }
    if (n == 0)
        snprintf(names[n++], CLEAN_CAP, "music");
    snprintf(p->genre_short, sizeof p->genre_short, "%s %s", style->era, names[0]);
    if (n == 2)
        snprintf(p->genre, sizeof p->genre, "%s with %s influences", p->genre_short, names[1]);
    else
        snprintf(p->genre, sizeof p->genre, "%s", p->genre_short);
    p->text[S_GENRE] = p->genre;
    p->shorter[S_GENRE] = n == 2 ? p->genre_short : NULL;
}

static void plan_instruments(plan *p, const mg_analysis *a, const int *rows)
{
    for (size_t i = 0; a->instruments && i < a->n_instruments && p->n_instr < MAX_INSTR; i++) {
        char c[CLEAN_CAP];
        if (a->instruments[i] && clean_words(a->instruments[i], c, sizeof c, CLEAN_WORDS) > 0)
            add_instrument(p, c);
    }
    if (p->n_instr == 0) {
        /* the genres' defaults, interleaved: g1[0], g2[0], g1[1], g2[1], ... */
        for (int k = 0; k < MAX_INSTR; k++)
            for (int g = 0; g < 2; g++) {
                const char *const *set = rows[g] >= 0 ? genres[rows[g]].instruments
                                                      : default_instruments;
                if (g == 0 || rows[g] != -2)
                    add_instrument(p, set[k]);
            }
    }
    p->instr_limit = p->n_instr;
    p->text[S_INSTR] = "";  /* built in render() */
}

static void plan_mood(plan *p, const mg_analysis *a, float energy)
{
    char c[CLEAN_CAP];
    if (a->mood && clean_words(a->mood, c, sizeof c, CLEAN_WORDS) > 0) {
        int r = lookup(c, find_mood);
        if (r >= 0)
            snprintf(p->mood, sizeof p->mood, "%s", moods[r].words);
        else
            snprintf(p->mood, sizeof p->mood, "%s atmosphere", c);
    } else {
        snprintf(p->mood, sizeof p->mood, "%s",
                 pick_band(energy_moods, sizeof energy_moods / sizeof energy_moods[0],
                           energy)->words);
    }
    first_word(p->mood, p->mood_short, sizeof p->mood_short);
    p->text[S_MOOD] = p->mood;
    p->shorter[S_MOOD] = p->mood_short;
}

static void plan_vocal(plan *p, const mg_analysis *a)
{
    char c[CLEAN_CAP];
    if (!a->vocal_type || clean_words(a->vocal_type, c, sizeof c, CLEAN_WORDS) == 0)
        return;
    /* "robotic vocals" is its own kind, not the generic last row */
    int r = lookup(c, find_vocal);
    if (r == (int)(sizeof vocals / sizeof vocals[0]) - 1 && find_vocal(c) < 0)
        r = -1;
    if (r >= 0) {
        p->text[S_VOCAL] = vocals[r].words;
        p->shorter[S_VOCAL] = vocals[r].shorter;
        return;
    }
    const char *last = strrchr(c, ' ');
    last = last ? last + 1 : c;
    if (strcmp(last, "vocals") == 0 || strcmp(last, "voice") == 0)
        snprintf(p->vocal, sizeof p->vocal, "%s", c);
    else
        snprintf(p->vocal, sizeof p->vocal, "%s vocals", c);
    p->text[S_VOCAL] = p->vocal;
}

static void append(char *buf, size_t cap, size_t *len, const char *s)
{
    int n = snprintf(buf + *len, cap - *len, "%s", s);
    if (n > 0)
        *len += (size_t)n < cap - *len ? (size_t)n : cap - *len - 1;
}

static int already_has(const char *const *done, int n, const char *s)
{
    for (int i = 0; i < n; i++)
        if (strcasecmp(done[i], s) == 0)
            return 1;
    return 0;
}

/* Joins the plan's phrases (and n_fill fillers) into buf; returns the word count. */
static int render(const plan *p, int n_fill, char *buf, size_t cap)
{
    char        instr[4 * CLEAN_CAP];
    const char *done[N_SLOTS + sizeof fillers / sizeof fillers[0]];
    int         n_done = 0;
    size_t      len = 0, ilen = 0;
    buf[0] = instr[0] = '\0';
    append(instr, sizeof instr, &ilen, "with ");
    for (int i = 0; i < p->instr_limit; i++) {
        append(instr, sizeof instr, &ilen, i ? ", " : "");
        append(instr, sizeof instr, &ilen, p->instr[i]);
    }
    for (int s = 0; s < N_SLOTS + n_fill; s++) {
        const char *t = s >= N_SLOTS ? fillers[s - N_SLOTS] : s == S_INSTR && p->text[s] ? instr
                                                                                        : p->text[s];
        if (!t || !t[0] || already_has(done, n_done, t))
            continue;
        append(buf, cap, &len, n_done ? ", " : "");
        append(buf, cap, &len, t);
        done[n_done++] = t;
    }
    int words = 0;
    for (const char *c = buf; *c; c++)
        if (*c != ' ' && (c == buf || c[-1] == ' '))
            words++;
    return words;
}

mg_code mg_prompt_from_analysis(const mg_analysis *a, char **prompt, mg_error *err)
{
    if (!a || !prompt)
        return mg_fail(err, MG_ERR_INVALID, "prompt_from_analysis: NULL argument");
    *prompt = NULL;

    plan p;
    memset(&p, 0, sizeof p);
    float energy = clamp_level(a->has_energy, a->energy);
    const style_band *style = pick_style(clamp_level(a->has_style, a->style_level));
    int rows[2] = { -1, -2 };  /* genre table rows; -1 unknown, -2 no second genre */

    plan_genre(&p, a, style, rows);
    plan_mood(&p, a, energy);
    if (a->has_tempo && a->tempo_bpm > 0) {  /* NaN fails the test */
        const band *t = pick_band(tempo_bands, sizeof tempo_bands / sizeof tempo_bands[0],
                                  a->tempo_bpm);
        p.text[S_TEMPO] = t->words;
        p.shorter[S_TEMPO] = t->shorter;
    }
    plan_instruments(&p, a, rows);
    p.text[S_PRODUCTION] = style->production;
    p.shorter[S_PRODUCTION] = style->shorter;
    plan_vocal(&p, a);
    const band *e = pick_band(energy_bands, sizeof energy_bands / sizeof energy_bands[0], energy);
    p.text[S_ENERGY] = e->words;
    p.shorter[S_ENERGY] = e->shorter;
    p.text[S_QUALITY] = quality_marker;

    char   buf[1024];
    int    words = render(&p, 0, buf, sizeof buf);
    size_t r = 0;
    while (words > MAX_WORDS && r < sizeof reductions / sizeof reductions[0]) {
        int arg = reductions[r].arg;
        switch (reductions[r++].kind) {
        case R_SHORTEN:
            if (p.shorter[arg])
                p.text[arg] = p.shorter[arg];
            break;
        case R_DROP:
            p.text[arg] = NULL;
            break;
        case R_INSTRUMENTS:
            if (p.instr_limit > arg)
                p.instr_limit = arg;
            break;
        }
        words = render(&p, 0, buf, sizeof buf);
    }
    for (int f = 1; words < MIN_WORDS && f <= (int)(sizeof fillers / sizeof fillers[0]); f++)
        words = render(&p, f, buf, sizeof buf);

    *prompt = strdup(buf);
    if (!*prompt)
        return mg_fail(err, MG_ERR_NOMEM, "prompt_from_analysis: out of memory");
    return MG_OK;
}
